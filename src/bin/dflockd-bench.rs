//! `dflockd-bench`: the project's closed-loop benchmark client for lock servers.
//!
//! It opens persistent connections (TCP, or TLS with `--tls-ca`) to one or more servers, runs a
//! fixed number of acquire+release rounds per worker thread on a private key, and reports
//! throughput and the latency distribution of one acquire+release pair. It owns load
//! generation, timing and reporting only: it must not depend on server internals, and it speaks
//! the wire protocol only through the crate's client library (`dflockd::client`).
//!
//! The `stall` subcommand instead measures head-of-line blocking: how much bulk work on the
//! server (mass lease expiry, a signal fanned out to many subscribers, a huge `stats` reply)
//! delays an unrelated `ping`. The client library runs one request at a time per connection,
//! so that mode writes raw protocol lines where it needs pipelining or thousands of sockets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use dflockd::client::{Client, Connection, Error as ClientError, Kind, shard_index};
use dflockd::protocol::{MAX_LINE as MAX_KEY_LEN, MAX_SECONDS};
use stats::Summary;

/// Slack added to the acquire timeout before a silent server is reported as unresponsive.
const IO_GRACE: Duration = Duration::from_secs(10);
/// How many worker failures are printed before the rest are only counted.
const MAX_REPORTED_FAILURES: usize = 5;

/// Command line of `dflockd-bench`.
#[derive(Parser, Debug)]
#[command(
    name = "dflockd-bench",
    version,
    about = "Benchmark a dflockd server with concurrent acquire+release rounds",
    long_about = "Benchmark a dflockd server with concurrent acquire+release rounds.\n\n\
        Each worker is a thread that runs ROUNDS rounds of `l` (acquire) followed by `r` \
        (release) on its own key `<PREFIX>-<worker>`, so workers never contend for a lock. \
        A worker's key is routed to a server by the client sharding rule: CRC-32/IEEE of the \
        key's bytes modulo the number of servers, in the order given by --servers.\n\n\
        All connections are opened (with TCP_NODELAY) and warm-up rounds are run before the \
        clock starts. One op is one acquire+release pair; its latency is measured from just \
        before the worker asks for its connection until the release response has been read. \
        The report gives total ops, wall time, throughput (ops/s) and mean, min, max, p50, \
        p99 (linear interpolation between closest ranks) and sample standard deviation of one \
        op in milliseconds.\n\n\
        Any unexpected response, connection failure or acquire timeout stops the run; the \
        errors are printed to stderr and the exit status is 1 (2 for invalid arguments).",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Another measurement instead of the acquire+release benchmark.
    #[command(subcommand)]
    mode: Option<Mode>,

    /// Number of worker threads; each uses its own key `<PREFIX>-<worker>`.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    workers: usize,

    /// Measured acquire+release rounds per worker.
    #[arg(long, value_name = "R", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    rounds: usize,

    /// Unmeasured acquire+release rounds per worker, run before the clock starts.
    #[arg(long, value_name = "R", default_value_t = 0,
          value_parser = RangedU64ValueParser::<usize>::new())]
    warmup: usize,

    /// Comma-separated server addresses (host:port); keys are sharded over them in this order.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        default_value = "127.0.0.1:6388"
    )]
    servers: Vec<String>,

    /// Key prefix; worker i locks `<PREFIX>-<i>`.
    #[arg(long = "key", value_name = "PREFIX", default_value = "bench")]
    key: String,

    /// Lease TTL requested with every acquire, in seconds (1-9223372036).
    #[arg(long, value_name = "S", default_value_t = 33,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    lease: u64,

    /// Acquire timeout sent with every acquire, in seconds (0 = try once, up to 9223372036).
    /// A `timeout` response is reported as an error.
    #[arg(long, value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    timeout: u64,

    /// Connections opened per server, 1 to WORKERS [default: WORKERS]. Workers routed to a
    /// server share its connections round-robin; a shared connection carries one
    /// acquire+release at a time, so sharing serialises those workers (their waiting time is
    /// part of the measured latency). A server never gets more connections than workers
    /// routed to it.
    #[arg(long, value_name = "C", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    connections: Option<usize>,

    /// Print the result as one JSON object on one line instead of the text report.
    #[arg(long)]
    json: bool,

    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Authenticate every connection with this token (servers started with --auth-token).
    #[arg(long, value_name = "TOKEN")]
    auth_token: Option<String>,
}

/// Measurements other than the default acquire+release benchmark.
#[derive(Subcommand, Debug)]
enum Mode {
    /// Measure how long bulk work on one server delays an unrelated `ping`.
    Stall(stall::StallArgs),
}

/// Validated run settings derived from [`Args`].
#[derive(Debug)]
struct Settings {
    servers: Vec<String>,
    prefix: String,
    rounds: usize,
    warmup: usize,
    lease_s: u64,
    timeout_s: u64,
    /// Upper bound on connections per server.
    connections: usize,
    /// One entry per worker, in worker order.
    jobs: Vec<Job>,
    /// Connections actually opened to each server, in server order.
    conns_per_server: Vec<usize>,
    json: bool,
    tls_ca: Option<PathBuf>,
    auth_token: Option<String>,
}

/// What one worker does: which key it locks and which connection it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    key: String,
    server: usize,
    /// Index into the server's connection list.
    conn: usize,
}

impl Settings {
    /// Checks the arguments the parser cannot check alone and plans the worker routes.
    fn from_args(args: Args) -> Result<Self, String> {
        let servers: Vec<String> = args.servers.iter().map(|s| s.trim().to_owned()).collect();
        if servers.iter().any(String::is_empty) {
            return Err("--servers contains an empty address".to_owned());
        }
        let connections = args.connections.unwrap_or(args.workers);
        if connections > args.workers {
            return Err(format!(
                "--connections {connections} exceeds --workers {}",
                args.workers
            ));
        }
        validate_prefix(&args.key, args.workers)?;
        let keys: Vec<String> = (0..args.workers)
            .map(|i| worker_key(&args.key, i))
            .collect();
        let (jobs, conns_per_server) = plan_routes(keys, servers.len(), connections);
        Ok(Self {
            servers,
            prefix: args.key,
            rounds: args.rounds,
            warmup: args.warmup,
            lease_s: args.lease,
            timeout_s: args.timeout,
            connections,
            jobs,
            conns_per_server,
            json: args.json,
            tls_ca: args.tls_ca,
            auth_token: args.auth_token,
        })
    }

    /// Number of workers routed to each server, in server order.
    fn workers_per_server(&self) -> Vec<usize> {
        let mut counts = vec![0; self.servers.len()];
        for job in &self.jobs {
            counts[job.server] += 1;
        }
        counts
    }
}

/// The key worker `index` locks.
fn worker_key(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// Rejects prefixes that would make a key the server refuses (forbidden bytes or too long).
fn validate_prefix(prefix: &str, workers: usize) -> Result<(), String> {
    if prefix
        .bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Err("--key must not contain space, tab, CR or LF".to_owned());
    }
    let longest = worker_key(prefix, workers - 1).len();
    if longest > MAX_KEY_LEN {
        return Err(format!(
            "--key is too long: key of the last worker is {longest} bytes (limit {MAX_KEY_LEN})"
        ));
    }
    Ok(())
}

/// Routes each key to its shard and, within a shard, to connection `n mod C'` where `n` counts
/// the workers already routed there and `C'` is `min(cap, workers routed there)`.
///
/// Returns the jobs in key order and the number of connections to open per server.
fn plan_routes(keys: Vec<String>, servers: usize, cap: usize) -> (Vec<Job>, Vec<usize>) {
    let shards: Vec<usize> = keys
        .iter()
        .map(|k| shard_index(k.as_bytes(), servers))
        .collect();
    let mut routed = vec![0; servers];
    for &s in &shards {
        routed[s] += 1;
    }
    let conns: Vec<usize> = routed.iter().map(|&n: &usize| n.min(cap)).collect();
    let mut seen = vec![0; servers];
    let jobs = keys
        .into_iter()
        .zip(shards)
        .map(|(key, server)| {
            let conn = seen[server] % conns[server];
            seen[server] += 1;
            Job { key, server, conn }
        })
        .collect();
    (jobs, conns)
}

/// The client for the configured servers, TLS and auth token; a silent server is reported
/// after the acquire timeout plus [`IO_GRACE`].
fn client(settings: &Settings) -> Result<Client, String> {
    let mut builder = Client::builder(settings.servers.iter().cloned())
        .connect_timeout(IO_GRACE)
        .io_timeout(IO_GRACE);
    if let Some(ca) = &settings.tls_ca {
        builder = builder.tls_ca_file(ca);
    }
    if let Some(token) = &settings.auth_token {
        builder = builder.auth_token(token);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Opens every planned connection, server by server.
fn open_connections(settings: &Settings) -> Result<Vec<Vec<Mutex<Connection>>>, String> {
    let client = client(settings)?;
    (0..settings.servers.len())
        .zip(&settings.conns_per_server)
        .map(|(index, &count)| {
            (0..count)
                .map(|_| {
                    client
                        .connect(index)
                        .map(Mutex::new)
                        .map_err(|e| format!("cannot connect to {}: {e}", settings.servers[index]))
                })
                .collect()
        })
        .collect()
}

/// Why a worker ended without its full set of latencies.
#[derive(Debug)]
enum WorkerError {
    /// Another worker failed first, so this one stopped early.
    Stopped,
    /// This worker's own request failed.
    Failed(ClientError),
}

/// The measured part of one worker's run.
struct Timed {
    start: Instant,
    end: Instant,
    latencies_ns: Vec<u64>,
}

/// Acquire and release parameters shared by every op.
#[derive(Clone, Copy)]
struct OpParams {
    timeout_s: u64,
    lease_s: u64,
}

/// One op: acquire `key` on `conn`, then release it with the granted token.
fn acquire_release(conn: &Mutex<Connection>, key: &str, op: OpParams) -> Result<(), ClientError> {
    // Poisoning needs a panicking worker, and a worker panic already aborts the run on join.
    let mut conn = conn
        .lock()
        .expect("connection mutex is poisoned only after a worker panic");
    let timeout = Duration::from_secs(op.timeout_s);
    let grant = conn.acquire(Kind::Lock, key, timeout, Some(op.lease_s))?;
    conn.release(Kind::Lock, key, &grant.token)
}

/// Runs `rounds` ops, passing each op's latency in nanoseconds to `record`. On failure it
/// raises `stop` so the other workers end early.
fn run_rounds(
    conn: &Mutex<Connection>,
    key: &str,
    op: OpParams,
    rounds: usize,
    stop: &AtomicBool,
    mut record: impl FnMut(u64),
) -> Result<(), WorkerError> {
    for _ in 0..rounds {
        if stop.load(Ordering::Relaxed) {
            return Err(WorkerError::Stopped);
        }
        let t0 = Instant::now();
        if let Err(e) = acquire_release(conn, key, op) {
            stop.store(true, Ordering::Relaxed);
            return Err(WorkerError::Failed(e));
        }
        // Saturates only after 584 years.
        record(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// One worker thread: warm up, wait for every worker to be ready, then run the measured rounds.
fn run_worker(
    settings: &Settings,
    job: &Job,
    conn: &Mutex<Connection>,
    ready: &Barrier,
    stop: &AtomicBool,
) -> Result<Timed, WorkerError> {
    let op = OpParams {
        timeout_s: settings.timeout_s,
        lease_s: settings.lease_s,
    };
    let warm = run_rounds(conn, &job.key, op, settings.warmup, stop, |_| {});
    // Every worker must reach the barrier, even after a failed warm-up, or the others hang.
    ready.wait();
    warm?;
    let mut latencies_ns = Vec::with_capacity(settings.rounds);
    let start = Instant::now();
    run_rounds(conn, &job.key, op, settings.rounds, stop, |ns| {
        latencies_ns.push(ns)
    })?;
    Ok(Timed {
        start,
        end: Instant::now(),
        latencies_ns,
    })
}

/// Result of a successful run.
struct Outcome {
    /// From the first worker's start to the last worker's end.
    wall: Duration,
    /// Every op's latency in nanoseconds.
    latencies_ns: Vec<u64>,
}

/// Runs every worker to completion and merges their measurements, or returns the failures.
fn run(settings: &Settings, conns: &[Vec<Mutex<Connection>>]) -> Result<Outcome, Vec<String>> {
    let ready = Barrier::new(settings.jobs.len());
    let stop = AtomicBool::new(false);
    let results: Vec<Result<Timed, WorkerError>> = thread::scope(|scope| {
        let handles: Vec<_> = settings
            .jobs
            .iter()
            .map(|job| {
                let conn = &conns[job.server][job.conn];
                let (ready, stop) = (&ready, &stop);
                scope.spawn(move || run_worker(settings, job, conn, ready, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker threads do not panic"))
            .collect()
    });
    merge(settings, results)
}

/// Combines worker results into one outcome, or lists the failures with their context.
fn merge(
    settings: &Settings,
    results: Vec<Result<Timed, WorkerError>>,
) -> Result<Outcome, Vec<String>> {
    let mut failures = Vec::new();
    let mut timed = Vec::with_capacity(results.len());
    for (index, (job, result)) in settings.jobs.iter().zip(results).enumerate() {
        match result {
            Ok(t) => timed.push(t),
            Err(WorkerError::Stopped) => {}
            Err(WorkerError::Failed(e)) => failures.push(format!(
                "worker {index} (key {}, server {}): {e}",
                job.key, settings.servers[job.server]
            )),
        }
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    let start = timed.iter().map(|t| t.start).min();
    let end = timed.iter().map(|t| t.end).max();
    let wall = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    let latencies_ns = timed.into_iter().flat_map(|t| t.latencies_ns).collect();
    Ok(Outcome { wall, latencies_ns })
}

/// Throughput in ops per second; zero when no time elapsed.
fn ops_per_second(ops: usize, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs > 0.0 { ops as f64 / secs } else { 0.0 }
}

/// The human-readable report.
fn render_text(settings: &Settings, wall: Duration, s: &Summary) -> String {
    format!(
        "  total ops : {}\n  wall time : {:.3}s\n  throughput: {:.1} ops/s\n{}\n  \
         mean      : {:.3} ms\n  min       : {:.3} ms\n  max       : {:.3} ms\n  \
         p50       : {:.3} ms\n  p99       : {:.3} ms\n  stdev     : {:.3} ms\n",
        s.count,
        wall.as_secs_f64(),
        ops_per_second(s.count, wall),
        sharding_line(settings),
        s.mean_ms,
        s.min_ms,
        s.max_ms,
        s.p50_ms,
        s.p99_ms,
        s.stdev_ms,
    )
}

/// One line describing how workers and connections are spread over the servers.
fn sharding_line(settings: &Settings) -> String {
    let per_server: Vec<String> = settings
        .servers
        .iter()
        .zip(settings.workers_per_server())
        .zip(&settings.conns_per_server)
        .map(|((addr, w), c)| format!("{addr} ({w} workers, {c} conns)"))
        .collect();
    format!("  servers   : {}\n", per_server.join(", "))
}

/// The header printed before a text-mode run starts.
fn render_header(settings: &Settings) -> String {
    format!(
        "dflockd-bench: {} workers x {} rounds (warmup {}), key prefix {:?}, lease {}s, \
         timeout {}s, up to {} connections/server\n",
        settings.jobs.len(),
        settings.rounds,
        settings.warmup,
        settings.prefix,
        settings.lease_s,
        settings.timeout_s,
        settings.connections,
    )
}

/// The machine-readable report: one JSON object on one line.
fn render_json(settings: &Settings, wall: Duration, s: &Summary) -> String {
    let servers: Vec<String> = settings.servers.iter().map(|a| json_string(a)).collect();
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    format!(
        "{{\"servers\":[{}],\"key\":{},\"workers\":{},\"rounds\":{},\"warmup\":{},\
         \"lease_s\":{},\"timeout_s\":{},\"connections\":{},\"workers_per_server\":[{}],\
         \"conns_per_server\":[{}],\"total_ops\":{},\"wall_s\":{:.6},\"ops_per_s\":{:.1},\
         \"mean_ms\":{:.3},\"min_ms\":{:.3},\"max_ms\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\
         \"stdev_ms\":{:.3}}}",
        servers.join(","),
        json_string(&settings.prefix),
        settings.jobs.len(),
        settings.rounds,
        settings.warmup,
        settings.lease_s,
        settings.timeout_s,
        settings.connections,
        join(&settings.workers_per_server()),
        join(&settings.conns_per_server),
        s.count,
        wall.as_secs_f64(),
        ops_per_second(s.count, wall),
        s.mean_ms,
        s.min_ms,
        s.max_ms,
        s.p50_ms,
        s.p99_ms,
        s.stdev_ms,
    )
}

/// Quotes `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints the failures, at most [`MAX_REPORTED_FAILURES`] of them in full.
fn report_failures(failures: &[String]) {
    for f in failures.iter().take(MAX_REPORTED_FAILURES) {
        eprintln!("dflockd-bench: {f}");
    }
    if failures.len() > MAX_REPORTED_FAILURES {
        eprintln!(
            "dflockd-bench: ... and {} more failed workers",
            failures.len() - MAX_REPORTED_FAILURES
        );
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Mode::Stall(stall_args)) = args.mode.take() {
        return stall::main(&stall_args);
    }
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(msg) => Args::command()
            .error(ErrorKind::ValueValidation, msg)
            .exit(),
    };
    if !settings.json {
        print!("{}", render_header(&settings));
    }
    let conns = match open_connections(&settings) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("dflockd-bench: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let mut outcome = match run(&settings, &conns) {
        Ok(o) => o,
        Err(failures) => {
            report_failures(&failures);
            return ExitCode::FAILURE;
        }
    };
    let summary = stats::summarize(&mut outcome.latencies_ns)
        .expect("rounds >= 1 and workers >= 1, so every successful run has samples");
    if settings.json {
        println!("{}", render_json(&settings, outcome.wall, &summary));
    } else {
        print!("{}", render_text(&settings, outcome.wall, &summary));
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Stall measurement.
// ---------------------------------------------------------------------------------------------

mod stall {
    //! The `stall` subcommand: a probe connection sends `ping` in a closed loop for the whole
    //! run while one scenario makes the server do bulk work; the report compares the probe's
    //! latency before, during the set-up and during the bulk work. It owns the scenarios and
    //! their timing; it must not look at server internals, only at what the wire shows.

    use std::io::{self, BufRead, BufReader, ErrorKind as IoKind, Read, Write};
    use std::net::TcpStream;
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use clap::builder::RangedU64ValueParser;
    use clap::{Args, ValueEnum};
    use mio::{Events, Interest, Poll, Token};

    use super::stats::{self, Summary};
    use super::{IO_GRACE, json_string};
    use dflockd::client::{Client, Connection, Error as ClientError, Kind};

    /// How long the probe runs before any bulk work, to give the baseline.
    const BASELINE: Duration = Duration::from_secs(1);
    /// Requests written before their replies are read. It keeps the replies of one batch
    /// (about 45 bytes each) below the server's default pending-output pause threshold
    /// (256 KiB), so a batch never waits on a server that waits on us.
    const BATCH: usize = 4096;
    /// Time after the last lease falls due that the expiry scenario still watches.
    const EXPIRY_GRACE: Duration = Duration::from_secs(2);
    /// Signals published in the fanout scenario, one at a time.
    const SIGNALS: usize = 21;
    /// How long the fanout scenario waits for every delivery.
    const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
    /// How long the orphan scenario watches after the close.
    const ORPHAN_WINDOW: Duration = Duration::from_millis(500);
    /// `stats` requests in the stats scenario, one at a time.
    const STATS_REQUESTS: usize = 5;
    /// Channel the fanout subscribers listen on and the signal's channel.
    const PATTERN: &str = "stall.>";
    const CHANNEL: &str = "stall.x";

    /// Arguments of `dflockd-bench stall`.
    #[derive(Args, Debug)]
    #[command(
        long_about = "Measure how long bulk work on one server delays an unrelated \
        request.\n\n\
        A probe connection sends `ping` one at a time for the whole run. After a one-second \
        baseline the scenario sets up and triggers its bulk work:\n  \
        expiry: pipelined `l` on SIZE unique keys `stall-<i>` (timeout 0, lease --lease), \
        then waits until the last lease fell due plus 2 s (the server needs --max-locks > SIZE);\n  \
        fanout: SIZE connections `listen stall.>`, then 21 `signal stall.x`, one at a time, \
        until every subscriber got all of them;\n  \
        stats: SIZE idle keys (pipelined `l` + `r`), then 5 `stats` requests, one at a time;\n  \
        disconnect: one connection holds SIZE locks `stall-<i>` (pipelined `l`, lease 3600 s) and \
        closes; the bulk work lasts until a try-lock of the last key succeeds (the server needs \
        --max-locks > SIZE);\n  \
        orphan: as disconnect, against a server run with --no-auto-release-on-disconnect; the \
        bulk work is the 0.5 s after the close, after which the last key must still be held.\n\n\
        The report gives the probe's ping latency (p50, p99, max) in three windows: the \
        baseline, the set-up and the bulk work. A ping counts for every window its round \
        trip overlaps. Plain TCP only, no auth."
    )]
    pub struct StallArgs {
        /// Which bulk work to trigger.
        #[arg(long, value_enum)]
        scenario: Scenario,

        /// The server (host:port).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6388")]
        servers: String,

        /// Keys or subscribers [default: expiry 1000000, fanout 10000, stats 100000,
        /// disconnect and orphan 1000000].
        #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        size: Option<usize>,

        /// Lease of the expiry scenario's locks, in seconds.
        #[arg(long, value_name = "S", default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        lease: u64,

        /// Print the result as one JSON object on one line.
        #[arg(long)]
        json: bool,
    }

    /// The bulk work a run triggers.
    #[derive(ValueEnum, Clone, Copy, Debug)]
    enum Scenario {
        /// Many leases falling due at once.
        Expiry,
        /// One signal delivered to many subscribers.
        Fanout,
        /// A `stats` reply listing many keys.
        Stats,
        /// A client holding many locks disconnects.
        Disconnect,
        /// A client holding many locks disconnects from a server that keeps them held.
        Orphan,
    }

    impl Scenario {
        fn name(self) -> &'static str {
            match self {
                Scenario::Expiry => "expiry",
                Scenario::Fanout => "fanout",
                Scenario::Stats => "stats",
                Scenario::Disconnect => "disconnect",
                Scenario::Orphan => "orphan",
            }
        }

        fn default_size(self) -> usize {
            match self {
                Scenario::Expiry | Scenario::Disconnect | Scenario::Orphan => 1_000_000,
                Scenario::Fanout => 10_000,
                Scenario::Stats => 100_000,
            }
        }
    }

    /// What a scenario did and when.
    struct Work {
        setup: (Instant, Instant),
        bulk: (Instant, Instant),
        /// Scenario-specific numbers for the report, in report order.
        facts: Vec<(&'static str, f64)>,
    }

    /// One probe round trip.
    struct Sample {
        sent: Instant,
        rtt: Duration,
    }

    /// Runs the subcommand and prints its report.
    pub fn main(args: &StallArgs) -> ExitCode {
        match run(args) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("dflockd-bench stall: {msg}");
                ExitCode::FAILURE
            }
        }
    }

    /// Probes through the baseline and the scenario, then renders the report.
    fn run(args: &StallArgs) -> Result<String, String> {
        let size = args.size.unwrap_or(args.scenario.default_size());
        let client = Client::builder([args.servers.clone()])
            .connect_timeout(IO_GRACE)
            .io_timeout(IO_GRACE)
            .build()
            .map_err(|e| e.to_string())?;
        let connect = || {
            client
                .connect(0)
                .map_err(|e| format!("cannot connect: {e}"))
        };
        let probe_conn = connect()?;
        let stop = AtomicBool::new(false);
        let (samples, baseline, work) = thread::scope(|scope| {
            let probe = scope.spawn(|| probe(probe_conn, &stop));
            let from = Instant::now();
            thread::sleep(BASELINE);
            let baseline = (from, Instant::now());
            let work = match args.scenario {
                Scenario::Expiry => expiry(&args.servers, size, args.lease),
                Scenario::Fanout => connect().and_then(|c| fanout(&args.servers, size, c)),
                Scenario::Stats => connect().and_then(|c| stats_reply(&args.servers, size, c)),
                Scenario::Disconnect => connect().and_then(|c| disconnect(&args.servers, size, c)),
                Scenario::Orphan => connect().and_then(|c| orphan(&args.servers, size, c)),
            };
            stop.store(true, Ordering::Relaxed);
            let samples = probe.join().expect("the probe thread does not panic");
            (samples, baseline, work)
        });
        let samples = samples.map_err(|e| format!("probe ping failed: {e}"))?;
        let work = work?;
        let windows = [
            ("baseline", baseline),
            ("setup", work.setup),
            ("bulk", work.bulk),
        ]
        .map(|(name, (from, to))| (name, to - from, window(&samples, from, to)));
        Ok(if args.json {
            render_json(args.scenario, size, &work.facts, &windows)
        } else {
            render_text(args, size, &work.facts, &windows)
        })
    }

    /// Pings one at a time until `stop` is raised.
    fn probe(mut conn: Connection, stop: &AtomicBool) -> Result<Vec<Sample>, ClientError> {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            conn.ping()?;
            samples.push(Sample {
                sent,
                rtt: sent.elapsed(),
            });
        }
        Ok(samples)
    }

    /// Latency summary of the pings whose round trip overlaps `[from, to]`, so a ping held up
    /// across a window's edge still counts in that window.
    fn window(samples: &[Sample], from: Instant, to: Instant) -> Option<Summary> {
        let mut ns: Vec<u64> = samples
            .iter()
            .filter(|s| s.sent <= to && s.sent + s.rtt >= from)
            .map(|s| u64::try_from(s.rtt.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        stats::summarize(&mut ns)
    }

    /// A plain TCP connection for pipelined requests.
    struct Raw {
        writer: TcpStream,
        reader: BufReader<TcpStream>,
        line: String,
    }

    impl Raw {
        fn connect(addr: &str) -> Result<Raw, String> {
            let open = || -> io::Result<Raw> {
                let writer = TcpStream::connect(addr)?;
                writer.set_nodelay(true)?;
                writer.set_read_timeout(Some(IO_GRACE))?;
                let reader = BufReader::new(writer.try_clone()?);
                Ok(Raw {
                    writer,
                    reader,
                    line: String::new(),
                })
            };
            open().map_err(|e| format!("cannot connect to {addr}: {e}"))
        }

        /// Writes `requests` at once, then reads one reply per request and hands it to `check`.
        fn batch(
            &mut self,
            requests: &[u8],
            count: usize,
            mut check: impl FnMut(&str) -> Result<(), String>,
        ) -> Result<(), String> {
            self.writer
                .write_all(requests)
                .map_err(|e| format!("write: {e}"))?;
            for _ in 0..count {
                self.line.clear();
                match self.reader.read_line(&mut self.line) {
                    Ok(0) => return Err("the server closed the connection".to_owned()),
                    Ok(_) => check(self.line.trim_end())?,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            Ok(())
        }
    }

    /// Acquires keys `stall-<first>..stall-<end>` in one batch; returns their tokens.
    fn acquire_batch(
        raw: &mut Raw,
        keys: std::ops::Range<usize>,
        lease: u64,
    ) -> Result<Vec<String>, String> {
        let requests: String = keys
            .clone()
            .map(|i| format!("l\nstall-{i}\n0 {lease}\n"))
            .collect();
        let mut tokens = Vec::with_capacity(keys.len());
        raw.batch(requests.as_bytes(), keys.len(), |reply| {
            let mut fields = reply.split(' ');
            match (fields.next(), fields.next()) {
                (Some("ok"), Some(token)) => {
                    tokens.push(token.to_owned());
                    Ok(())
                }
                _ => Err(format!("acquire answered {reply:?}")),
            }
        })?;
        Ok(tokens)
    }

    /// Many leases falling due within the time it took to grant them.
    fn expiry(addr: &str, size: usize, lease_s: u64) -> Result<Work, String> {
        let mut raw = Raw::connect(addr)?;
        let start = Instant::now();
        for first in (0..size).step_by(BATCH) {
            acquire_batch(&mut raw, first..size.min(first + BATCH), lease_s)?;
        }
        let granted = Instant::now();
        let lease = Duration::from_secs(lease_s);
        // Every grant happened between `start` and `granted`, so that is when leases fall due.
        let bulk = (start + lease, granted + lease + EXPIRY_GRACE);
        // The connection stays open: closing it would release the locks before they expire.
        thread::sleep(bulk.1.saturating_duration_since(Instant::now()));
        drop(raw);
        let spread = (granted - start).as_secs_f64();
        Ok(Work {
            setup: (start, granted),
            bulk,
            facts: vec![("leases", size as f64), ("leases_due_over_s", spread)],
        })
    }

    /// One connection holding many locks goes away; the server releases them all.
    fn disconnect(addr: &str, size: usize, mut watcher: Connection) -> Result<Work, String> {
        let (start, triggered) = hold_and_leave(addr, size)?;
        // Locks are released in grant order, so the last key is free once all of them are.
        let last = format!("stall-{}", size - 1);
        loop {
            match watcher.acquire(Kind::Lock, &last, Duration::ZERO, None) {
                Ok(grant) => {
                    watcher
                        .release(Kind::Lock, &last, &grant.token)
                        .map_err(|e| format!("release: {e}"))?;
                    break;
                }
                Err(ClientError::Timeout) if triggered.elapsed() < DELIVERY_DEADLINE => {}
                Err(e) => return Err(format!("try-lock of {last}: {e}")),
            }
        }
        let released = Instant::now();
        Ok(Work {
            setup: (start, triggered),
            bulk: (triggered, released),
            facts: vec![
                ("locks", size as f64),
                ("all_released_s", (released - triggered).as_secs_f64()),
            ],
        })
    }

    /// One connection holding many locks goes away; the server keeps them held.
    fn orphan(addr: &str, size: usize, mut watcher: Connection) -> Result<Work, String> {
        let (start, triggered) = hold_and_leave(addr, size)?;
        thread::sleep(ORPHAN_WINDOW);
        let ended = Instant::now();
        let last = format!("stall-{}", size - 1);
        match watcher.acquire(Kind::Lock, &last, Duration::ZERO, None) {
            Err(ClientError::Timeout) => {}
            Ok(_) => {
                return Err(format!(
                    "{last} was released: run the server with --no-auto-release-on-disconnect"
                ));
            }
            Err(e) => return Err(format!("try-lock of {last}: {e}")),
        }
        Ok(Work {
            setup: (start, triggered),
            bulk: (triggered, ended),
            facts: vec![("locks", size as f64)],
        })
    }

    /// Takes `size` locks on one connection and closes it; returns when the set-up started
    /// and when the connection was closed.
    fn hold_and_leave(addr: &str, size: usize) -> Result<(Instant, Instant), String> {
        const LONG_LEASE: u64 = 3600;
        let mut raw = Raw::connect(addr)?;
        let start = Instant::now();
        for first in (0..size).step_by(BATCH) {
            acquire_batch(&mut raw, first..size.min(first + BATCH), LONG_LEASE)?;
        }
        let triggered = Instant::now();
        drop(raw);
        Ok((start, triggered))
    }

    /// Many idle keys, then a few `stats` requests that must list them all.
    fn stats_reply(addr: &str, size: usize, mut conn: Connection) -> Result<Work, String> {
        let mut raw = Raw::connect(addr)?;
        let start = Instant::now();
        for first in (0..size).step_by(BATCH) {
            let keys = first..size.min(first + BATCH);
            let tokens = acquire_batch(&mut raw, keys.clone(), 60)?;
            let releases: String = keys
                .zip(&tokens)
                .map(|(i, token)| format!("r\nstall-{i}\n{token}\n"))
                .collect();
            raw.batch(releases.as_bytes(), tokens.len(), |reply| match reply {
                "ok" => Ok(()),
                _ => Err(format!("release answered {reply:?}")),
            })?;
        }
        let triggered = Instant::now();
        let (mut slowest, mut bytes) = (Duration::ZERO, 0);
        for _ in 0..STATS_REQUESTS {
            let sent = Instant::now();
            bytes = conn.stats_json().map_err(|e| format!("stats: {e}"))?.len();
            slowest = slowest.max(sent.elapsed());
        }
        Ok(Work {
            setup: (start, triggered),
            bulk: (triggered, Instant::now()),
            facts: vec![
                ("keys", size as f64),
                ("stats_requests", STATS_REQUESTS as f64),
                ("stats_reply_bytes", bytes as f64),
                ("slowest_stats_s", slowest.as_secs_f64()),
            ],
        })
    }

    /// Many subscribers, then signals published one at a time on `publisher`.
    fn fanout(addr: &str, size: usize, mut publisher: Connection) -> Result<Work, String> {
        raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
        let start = Instant::now();
        let (poll, subscribers) = subscribe(addr, size)?;
        let triggered = Instant::now();
        let (arrival, published) = thread::scope(|scope| {
            let counter = scope.spawn(move || count_deliveries(poll, subscribers));
            let published = (0..SIGNALS).try_for_each(|n| {
                match publisher.emit(CHANNEL, &format!("payload-{n}")) {
                    Ok(count) if count == size as u64 => Ok(()),
                    Ok(count) => Err(format!("signal reached {count} of {size} subscribers")),
                    Err(e) => Err(format!("signal: {e}")),
                }
            });
            let arrival = counter.join().expect("the delivery counter does not panic");
            (arrival, published)
        });
        published?;
        let (first, all) = arrival?;
        Ok(Work {
            setup: (start, triggered),
            bulk: (triggered, all),
            facts: vec![
                ("subscribers", size as f64),
                ("signals", SIGNALS as f64),
                (
                    "first_signal_delivered_s",
                    (first - triggered).as_secs_f64(),
                ),
                ("all_signals_delivered_s", (all - triggered).as_secs_f64()),
            ],
        })
    }

    /// Opens `size` connections subscribed to [`PATTERN`], registered for reading with a poll.
    fn subscribe(addr: &str, size: usize) -> Result<(Poll, Vec<mio::net::TcpStream>), String> {
        let failed = |e: io::Error| format!("subscriber set-up: {e}");
        let mut streams = Vec::with_capacity(size);
        let request = format!("listen\n{PATTERN}\n\n");
        // All requests first, all replies after: the server answers while we keep connecting.
        for _ in 0..size {
            let mut stream = TcpStream::connect(addr).map_err(failed)?;
            stream.write_all(request.as_bytes()).map_err(failed)?;
            streams.push(stream);
        }
        let poll = Poll::new().map_err(failed)?;
        let mut subscribers = Vec::with_capacity(size);
        for (i, mut stream) in streams.into_iter().enumerate() {
            let mut reply = [0; 3];
            stream.set_read_timeout(Some(IO_GRACE)).map_err(failed)?;
            stream.read_exact(&mut reply).map_err(failed)?;
            if &reply != b"ok\n" {
                return Err(format!(
                    "listen answered {:?}",
                    String::from_utf8_lossy(&reply)
                ));
            }
            stream.set_nonblocking(true).map_err(failed)?;
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .map_err(failed)?;
            subscribers.push(stream);
        }
        Ok((poll, subscribers))
    }

    /// Counts pushed lines until every subscriber has [`SIGNALS`] of them; returns when every
    /// subscriber had its first one and when all had arrived.
    fn count_deliveries(
        mut poll: Poll,
        mut subscribers: Vec<mio::net::TcpStream>,
    ) -> Result<(Instant, Instant), String> {
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        let mut lines = vec![0; subscribers.len()];
        let (mut reached, mut complete) = (0, 0);
        let mut first_all = None;
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0; 64 * 1024];
        while complete < subscribers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "only {complete} of {} subscribers got every signal within {}s",
                    subscribers.len(),
                    DELIVERY_DEADLINE.as_secs()
                ));
            }
            poll.poll(&mut events, Some(left))
                .map_err(|e| format!("poll: {e}"))?;
            for event in &events {
                let i = event.token().0;
                let before = lines[i];
                // Edge-triggered: drain the socket before waiting again.
                loop {
                    match subscribers[i].read(&mut buf) {
                        Ok(0) => return Err(format!("subscriber {i} was disconnected")),
                        Ok(n) => lines[i] += buf[..n].iter().filter(|&&b| b == b'\n').count(),
                        Err(e) if e.kind() == IoKind::WouldBlock => break,
                        Err(e) if e.kind() == IoKind::Interrupted => {}
                        Err(e) => return Err(format!("subscriber {i}: {e}")),
                    }
                }
                reached += usize::from(before == 0 && lines[i] > 0);
                complete += usize::from(before < SIGNALS && lines[i] >= SIGNALS);
            }
            if first_all.is_none() && reached == subscribers.len() {
                first_all = Some(Instant::now());
            }
        }
        let all = Instant::now();
        Ok((first_all.unwrap_or(all), all))
    }

    /// Lifts the soft open-file limit to the hard one: every subscriber is a socket.
    fn raise_fd_limit() -> io::Result<()> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: both calls only read or write the `rlimit` they are given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `value` to the microsecond, so it prints without float noise.
    fn rounded(value: f64) -> f64 {
        (value * 1e6).round() / 1e6
    }

    /// A report window: its name, length and probe latencies.
    type Window = (&'static str, Duration, Option<Summary>);

    fn render_text(
        args: &StallArgs,
        size: usize,
        facts: &[(&str, f64)],
        windows: &[Window],
    ) -> String {
        let mut out = format!(
            "dflockd-bench stall: scenario {}, size {size}, server {}\n",
            args.scenario.name(),
            args.servers
        );
        for (name, value) in facts {
            out += &format!("  {name:<25}: {}\n", rounded(*value));
        }
        out += "  probe ping     window_s  pings    p50_ms    p99_ms    max_ms";
        for (name, length, summary) in windows {
            out += &format!("\n  {name:<12} {:>10.3}", length.as_secs_f64());
            out += &match summary {
                Some(s) => format!(
                    " {:>6} {:>9.3} {:>9.3} {:>9.3}",
                    s.count, s.p50_ms, s.p99_ms, s.max_ms
                ),
                None => "      0         -         -         -".to_owned(),
            };
        }
        out
    }

    fn render_json(
        scenario: Scenario,
        size: usize,
        facts: &[(&str, f64)],
        windows: &[Window],
    ) -> String {
        let mut fields = vec![
            format!("\"scenario\":{}", json_string(scenario.name())),
            format!("\"size\":{size}"),
        ];
        fields.extend(
            facts
                .iter()
                .map(|(name, value)| format!("\"{name}\":{}", rounded(*value))),
        );
        fields.extend(windows.iter().map(|(name, length, summary)| {
            let latency = match summary {
                Some(s) => format!(
                    "\"pings\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}",
                    s.count, s.p50_ms, s.p99_ms, s.max_ms
                ),
                None => "\"pings\":0,\"p50_ms\":null,\"p99_ms\":null,\"max_ms\":null".to_owned(),
            };
            format!(
                "\"{name}\":{{\"window_s\":{:.6},{latency}}}",
                length.as_secs_f64()
            )
        }));
        format!("{{{}}}", fields.join(","))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_ping_counts_in_every_window_its_round_trip_overlaps() {
            let t0 = Instant::now();
            let ms = Duration::from_millis;
            let samples = [
                Sample {
                    sent: t0,
                    rtt: ms(1),
                },
                // Sent before the window at 10 ms, answered inside it.
                Sample {
                    sent: t0 + ms(5),
                    rtt: ms(7),
                },
                Sample {
                    sent: t0 + ms(12),
                    rtt: ms(2),
                },
                Sample {
                    sent: t0 + ms(30),
                    rtt: ms(1),
                },
            ];
            let inside = window(&samples, t0 + ms(10), t0 + ms(20)).expect("two pings overlap");
            assert_eq!(inside.count, 2);
            assert!((inside.max_ms - 7.0).abs() < 1e-9);
            assert!(window(&samples, t0 + ms(40), t0 + ms(50)).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics.
// ---------------------------------------------------------------------------------------------

mod stats {
    //! Latency summary over a sample of nanosecond durations. It owns the arithmetic only; it
    //! must not measure time or format output.

    /// Summary of one run's op latencies, in milliseconds.
    #[derive(Debug, PartialEq)]
    pub struct Summary {
        /// Number of samples.
        pub count: usize,
        /// Arithmetic mean.
        pub mean_ms: f64,
        /// Smallest sample.
        pub min_ms: f64,
        /// Largest sample.
        pub max_ms: f64,
        /// Median (linear interpolation between closest ranks).
        pub p50_ms: f64,
        /// 99th percentile (linear interpolation between closest ranks).
        pub p99_ms: f64,
        /// Sample standard deviation (n - 1 denominator); 0 for a single sample.
        pub stdev_ms: f64,
    }

    const NS_PER_MS: f64 = 1e6;

    /// Sorts `samples_ns` in place and summarises it; `None` when it is empty.
    pub fn summarize(samples_ns: &mut [u64]) -> Option<Summary> {
        let (&min, &max) = (samples_ns.iter().min()?, samples_ns.iter().max()?);
        samples_ns.sort_unstable();
        let n = samples_ns.len();
        // Summing in u128 keeps the mean exact however long the run.
        let total: u128 = samples_ns.iter().map(|&v| u128::from(v)).sum();
        let mean = total as f64 / n as f64;
        let stdev = if n > 1 {
            let squares: f64 = samples_ns.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Summary {
            count: n,
            mean_ms: mean / NS_PER_MS,
            min_ms: min as f64 / NS_PER_MS,
            max_ms: max as f64 / NS_PER_MS,
            p50_ms: percentile(samples_ns, 50.0) / NS_PER_MS,
            p99_ms: percentile(samples_ns, 99.0) / NS_PER_MS,
            stdev_ms: stdev / NS_PER_MS,
        })
    }

    /// The `pct`-th percentile (0-100) of a sorted, non-empty sample, interpolating linearly
    /// between the two closest ranks (rank = pct/100 * (n - 1)).
    pub fn percentile(sorted: &[u64], pct: f64) -> f64 {
        let rank = pct / 100.0 * (sorted.len() - 1) as f64;
        let lo = rank.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        let frac = rank - lo as f64;
        sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * frac
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn close(a: f64, b: f64) -> bool {
            (a - b).abs() < 1e-9
        }

        #[test]
        fn percentiles_interpolate_between_ranks() {
            let sample: Vec<u64> = (1..=100).collect();
            assert!(close(percentile(&sample, 50.0), 50.5));
            assert!(close(percentile(&sample, 99.0), 99.01));
            assert!(close(percentile(&sample, 0.0), 1.0));
            assert!(close(percentile(&sample, 100.0), 100.0));
            assert!(close(percentile(&[10, 20, 30, 40], 50.0), 25.0));
            assert!(close(percentile(&[7], 99.0), 7.0));
        }

        #[test]
        fn summary_of_known_sample() {
            // Unsorted on purpose: summarize must sort. Values in ms: 1, 2, 3, 4, 10.
            let mut sample = vec![4_000_000, 1_000_000, 10_000_000, 2_000_000, 3_000_000];
            let s = summarize(&mut sample).expect("non-empty");
            assert_eq!(s.count, 5);
            assert!(close(s.mean_ms, 4.0));
            assert!(close(s.min_ms, 1.0));
            assert!(close(s.max_ms, 10.0));
            assert!(close(s.p50_ms, 3.0));
            // rank 3.96 between 4 and 10.
            assert!(close(s.p99_ms, 9.76));
            // Squared deviations 9+4+1+0+36 = 50, / 4 = 12.5.
            assert!(close(s.stdev_ms, 12.5f64.sqrt()));
        }

        #[test]
        fn single_sample_has_zero_stdev() {
            let s = summarize(&mut [1_500_000]).expect("non-empty");
            assert!(close(s.stdev_ms, 0.0));
            assert!(close(s.p99_ms, 1.5));
        }

        #[test]
        fn empty_sample_has_no_summary() {
            assert!(summarize(&mut []).is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["dflockd-bench"];
        argv.extend_from_slice(extra);
        Settings::from_args(Args::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn defaults_match_reference_tool() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.servers, ["127.0.0.1:6388"]);
        assert_eq!(s.prefix, "bench");
        assert_eq!(
            (s.rounds, s.warmup, s.lease_s, s.timeout_s),
            (1000, 0, 33, 10)
        );
        assert_eq!(s.jobs.len(), 10);
        assert_eq!(s.connections, 10);
        assert_eq!(s.conns_per_server, [10]);
        let conns: Vec<usize> = s.jobs.iter().map(|j| j.conn).collect();
        assert_eq!(conns, (0..10).collect::<Vec<_>>());
        assert_eq!(s.jobs[3].key, "bench-3");
    }

    #[test]
    fn workers_share_connections_round_robin() {
        let s = settings(&["--workers", "5", "--connections", "2"]).expect("valid");
        let conns: Vec<usize> = s.jobs.iter().map(|j| j.conn).collect();
        assert_eq!(conns, [0, 1, 0, 1, 0]);
        assert_eq!(s.conns_per_server, [2]);
    }

    #[test]
    fn keys_are_routed_by_crc_and_connections_capped_per_server() {
        let keys: Vec<String> = ["my-key", "bar", "foo", "x"].map(String::from).into();
        let (jobs, conns) = plan_routes(keys, 2, 4);
        // "my-key" -> 1, "bar" -> 0, "foo" -> 2356372769 % 2 = 1, "x" -> crc % 2.
        let expected_x = shard_index(b"x", 2);
        let servers: Vec<usize> = jobs.iter().map(|j| j.server).collect();
        assert_eq!(servers, [1, 0, 1, expected_x]);
        let on_server_1 = servers.iter().filter(|&&s| s == 1).count();
        assert_eq!(conns, [4 - on_server_1, on_server_1]);
        // Workers on one server get distinct connections while the cap allows it.
        assert_eq!((jobs[0].conn, jobs[2].conn), (0, 1));
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        for argv in [
            &["--workers", "0"][..],
            &["--rounds", "0"],
            &["--workers", "2", "--connections", "3"],
            &["--connections", "0"],
            &["--lease", "0"],
            &["--lease", "9223372037"],
            &["--timeout", "9223372037"],
            &["--servers", "a:1,,b:2"],
            &["--key", "has space"],
            &["--key", &"k".repeat(255)],
        ] {
            assert!(settings(argv).is_err(), "accepted {argv:?}");
        }
        assert!(settings(&["--key", &"k".repeat(254)]).is_ok());
        assert!(settings(&["--timeout", "0", "--lease", "9223372036"]).is_ok());
    }

    #[test]
    fn json_report_is_one_escaped_line() {
        let s = settings(&["--workers", "2", "--key", "a\"b", "--servers", "h:1"]).expect("valid");
        let summary = Summary {
            count: 4,
            mean_ms: 1.0,
            min_ms: 0.5,
            max_ms: 2.0,
            p50_ms: 1.0,
            p99_ms: 1.99,
            stdev_ms: 0.25,
        };
        let json = render_json(&s, Duration::from_millis(2), &summary);
        assert_eq!(
            json,
            "{\"servers\":[\"h:1\"],\"key\":\"a\\\"b\",\"workers\":2,\"rounds\":1000,\
             \"warmup\":0,\"lease_s\":33,\"timeout_s\":10,\"connections\":2,\
             \"workers_per_server\":[2],\"conns_per_server\":[2],\"total_ops\":4,\
             \"wall_s\":0.002000,\"ops_per_s\":2000.0,\"mean_ms\":1.000,\"min_ms\":0.500,\
             \"max_ms\":2.000,\"p50_ms\":1.000,\"p99_ms\":1.990,\"stdev_ms\":0.250}"
        );
    }

    #[test]
    fn json_string_escapes_controls() {
        assert_eq!(json_string("a\\b\n\u{1}é"), "\"a\\\\b\\u000a\\u0001é\"");
    }

    #[test]
    fn failed_worker_fails_the_run() {
        let s = settings(&["--workers", "3"]).expect("valid");
        let ok = || {
            let now = Instant::now();
            Ok(Timed {
                start: now,
                end: now,
                latencies_ns: vec![1],
            })
        };
        let failures = merge(
            &s,
            vec![
                ok(),
                Err(WorkerError::Failed(ClientError::Closed)),
                Err(WorkerError::Stopped),
            ],
        )
        .err()
        .expect("a failure must fail the run");
        assert_eq!(
            failures,
            ["worker 1 (key bench-1, server 127.0.0.1:6388): the connection is closed"]
        );
        let merged = merge(&s, vec![ok(), ok(), ok()]).expect("all succeeded");
        assert_eq!(merged.latencies_ns, [1, 1, 1]);
    }
}
