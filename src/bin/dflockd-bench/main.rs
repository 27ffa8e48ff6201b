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
use serde::Serialize;
use stats::Summary;

mod stall;
mod stats;

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
        p99 (nearest rank) and standard deviation of one op in milliseconds, from an HDR \
        histogram keeping 3 significant digits.\n\n\
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

    /// Comma-separated server addresses (`host:port`, or `unix:/path` for a Unix socket); keys
    /// are sharded over them in this order.
    #[arg(
        long,
        value_name = "ADDR,...",
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

/// The machine-readable report: one JSON object on one line, fields in this order.
#[derive(Serialize)]
struct Report<'a> {
    servers: &'a [String],
    key: &'a str,
    workers: usize,
    rounds: usize,
    warmup: usize,
    lease_s: u64,
    timeout_s: u64,
    connections: usize,
    workers_per_server: Vec<usize>,
    conns_per_server: &'a [usize],
    total_ops: usize,
    wall_s: f64,
    ops_per_s: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    stdev_ms: f64,
}

fn render_json(settings: &Settings, wall: Duration, s: &Summary) -> String {
    let report = Report {
        servers: &settings.servers,
        key: &settings.prefix,
        workers: settings.jobs.len(),
        rounds: settings.rounds,
        warmup: settings.warmup,
        lease_s: settings.lease_s,
        timeout_s: settings.timeout_s,
        connections: settings.connections,
        workers_per_server: settings.workers_per_server(),
        conns_per_server: &settings.conns_per_server,
        total_ops: s.count,
        wall_s: wall.as_secs_f64(),
        // To 0.1 op/s, as the text report shows it.
        ops_per_s: (ops_per_second(s.count, wall) * 10.0).round() / 10.0,
        mean_ms: s.mean_ms,
        min_ms: s.min_ms,
        max_ms: s.max_ms,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        stdev_ms: s.stdev_ms,
    };
    serde_json::to_string(&report).expect("the report has string keys only")
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
    let outcome = match run(&settings, &conns) {
        Ok(o) => o,
        Err(failures) => {
            report_failures(&failures);
            return ExitCode::FAILURE;
        }
    };
    let summary = stats::summarize(&outcome.latencies_ns)
        .expect("rounds >= 1 and workers >= 1, so every successful run has samples");
    if settings.json {
        println!("{}", render_json(&settings, outcome.wall, &summary));
    } else {
        print!("{}", render_text(&settings, outcome.wall, &summary));
    }
    ExitCode::SUCCESS
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
        let s =
            settings(&["--workers", "2", "--key", "a\"b\u{1}", "--servers", "h:1"]).expect("valid");
        let summary = Summary {
            count: 4,
            mean_ms: 1.0,
            min_ms: 0.5,
            max_ms: 2.0,
            p50_ms: 1.0,
            p99_ms: 1.99,
            stdev_ms: 0.25,
        };
        let json = render_json(&s, Duration::from_millis(3), &summary);
        assert!(!json.contains('\n'), "{json}");
        assert!(json.starts_with(r#"{"servers":["h:1"],"key":"a\"b\u0001","workers":2,"#));
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(
            parsed,
            serde_json::json!({
                "servers": ["h:1"], "key": "a\"b\u{1}", "workers": 2, "rounds": 1000, "warmup": 0,
                "lease_s": 33, "timeout_s": 10, "connections": 2, "workers_per_server": [2],
                "conns_per_server": [2], "total_ops": 4, "wall_s": 0.003, "ops_per_s": 1333.3,
                "mean_ms": 1.0, "min_ms": 0.5, "max_ms": 2.0, "p50_ms": 1.0, "p99_ms": 1.99,
                "stdev_ms": 0.25
            })
        );
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
