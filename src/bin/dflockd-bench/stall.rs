//! The `stall` subcommand: a probe connection sends `ping` in a closed loop for the whole
//! run while one scenario makes the server do bulk work; the report compares the probe's
//! latency before, during the set-up and during the bulk work. It owns the scenarios and
//! their timing; it must not look at server internals, only at what the wire shows.

use std::io::{self, BufRead, BufReader, ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};
use mio::{Events, Interest, Poll, Token};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::stats::{self, Summary};

mod attacks;
mod rss;
use super::IO_GRACE;
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
/// How long the probe keeps watching after the scenario ended (the `after` window).
const SETTLE: Duration = Duration::from_secs(1);
/// Default number of stats-flood connections.
const FLOOD_CONNS: usize = 5_000;

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
    bulk work is the 0.5 s after the close, after which the last key must still be held;\n  \
    deep-patterns: --conns connections (default 1) share SIZE distinct `listen` patterns of \
    235 tokens (17 tokens each empty or `*`, 217 empty ones, then `>`; at most 252 bytes, \
    under the 256-byte key limit), all matching the channel of 234 dots; then one publisher \
    pipelines --signals signals on that channel and the bulk work lasts until it read every \
    `ok` reply (at most 30 s; the subscribers read their pushes);\n  \
    auth-fail: SIZE connections each send a wrong `auth` (the server needs --auth-token; \
    give the right one to the probe with --token); the bulk work lasts until the server \
    closed them all (at most 30 s). For the stalled log sink variant start the server \
    with its stderr on a pipe nobody reads, e.g. `dflockd --auth-token s 2> >(sleep 600)` \
    or a fifo nobody opens for reading;\n  \
    tls-hello: SIZE connections each send a TLS ClientHello (against a TLS server; the \
    probe trusts --tls-ca) and wait for the server's answer (at most 30 s), then close; \
    with --drop they close right after the ClientHello and the bulk work is --duration \
    seconds;\n  \
    stats-flood: SIZE idle keys as in stats (the server needs --max-locks > SIZE), then \
    --conns connections (default 5000, capped at the open-file soft limit minus 64) each \
    pipeline --requests `stats` and never read; they stay open for --duration seconds;\n  \
    storm: SIZE connections `listen stall.x`, of which 5 read and the others never do; 5 \
    publishers send 60 KiB signals on stall.x one at a time for --duration seconds;\n  \
    group-leave: SIZE connections `listen stall.x stall` (one queue group) close at once; \
    the bulk work lasts until a `signal stall.x` reaches nobody.\n\n\
    The report gives the probe's ping latency (p50, p99, max) in four windows: the \
    baseline, the set-up, the bulk work and the second after it. A ping counts for every \
    window its round trip overlaps. A ping unanswered for 10 s ends the probe and is \
    reported as probe_failed_at_s (since the baseline started). With --server-pid the \
    report adds the server's resident memory (VmRSS) before the run, its highest sample \
    during the run (every 10 ms), after the last window, and the lifetime high-water mark \
    (VmHWM), in KiB. Every scenario's connections are plain TCP, except tls-hello's; \
    the probe uses TLS with --tls-ca and authenticates with --token."
)]
pub struct StallArgs {
    /// Which bulk work to trigger.
    #[arg(long, value_enum)]
    scenario: Scenario,

    /// The server (host:port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6388")]
    servers: String,

    /// Keys, subscribers, patterns or connections [default: expiry, disconnect and orphan
    /// 1000000; fanout 10000; stats and stats-flood 100000; deep-patterns, auth-fail and
    /// tls-hello 2000; storm 1000; group-leave 10000].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    size: Option<usize>,

    /// Lease of the expiry scenario's locks, in seconds.
    #[arg(long, value_name = "S", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease: u64,

    /// Connections of deep-patterns (subscribers) and stats-flood (flooders)
    /// [default: deep-patterns 1, stats-flood 5000].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    conns: Option<usize>,

    /// Signals the deep-patterns publisher pipelines.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    signals: usize,

    /// `stats` requests each stats-flood connection pipelines.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1000))]
    requests: usize,

    /// Length of storm's publishing, of stats-flood's hold and of tls-hello --drop's watch, in
    /// seconds.
    #[arg(long, value_name = "S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    duration: u64,

    /// tls-hello: close each connection right after its ClientHello.
    #[arg(long)]
    drop: bool,

    /// Authenticate the probe (and the helper connections) with this token.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,

    /// Connect the probe with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Report this server process's resident memory (read from /proc/PID/status).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

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
    /// Signals matched against many long wildcard patterns.
    DeepPatterns,
    /// Many failing authentications at once.
    AuthFail,
    /// Many TLS handshakes started at once.
    TlsHello,
    /// Many connections asking for a large `stats` reply they never read.
    StatsFlood,
    /// Large signals to many subscribers that never read.
    Storm,
    /// Many members of one queue group leaving at once.
    GroupLeave,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Expiry => "expiry",
            Scenario::Fanout => "fanout",
            Scenario::Stats => "stats",
            Scenario::Disconnect => "disconnect",
            Scenario::Orphan => "orphan",
            Scenario::DeepPatterns => "deep-patterns",
            Scenario::AuthFail => "auth-fail",
            Scenario::TlsHello => "tls-hello",
            Scenario::StatsFlood => "stats-flood",
            Scenario::Storm => "storm",
            Scenario::GroupLeave => "group-leave",
        }
    }

    fn default_size(self) -> usize {
        match self {
            Scenario::Expiry | Scenario::Disconnect | Scenario::Orphan => 1_000_000,
            Scenario::Fanout | Scenario::GroupLeave => 10_000,
            Scenario::Stats | Scenario::StatsFlood => 100_000,
            Scenario::DeepPatterns | Scenario::AuthFail | Scenario::TlsHello => 2_000,
            Scenario::Storm => 1_000,
        }
    }

    /// `--size`, or this scenario's default.
    fn size(self, args: &StallArgs) -> usize {
        args.size.unwrap_or(self.default_size())
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

/// Probes through the baseline, the scenario and the settling after it, then renders the
/// report.
fn run(args: &StallArgs) -> Result<String, String> {
    let size = args.scenario.size(args);
    let client = client(args)?;
    let connect = || {
        client
            .connect(0)
            .map_err(|e| format!("cannot connect: {e}"))
    };
    let probe_conn = connect()?;
    let memory = args.server_pid.map(rss::Sampler::start).transpose()?;
    let stop = AtomicBool::new(false);
    let (probed, [baseline, after], work) = thread::scope(|scope| {
        let probe = scope.spawn(|| probe(probe_conn, &stop));
        let from = Instant::now();
        thread::sleep(BASELINE);
        let baseline = (from, Instant::now());
        let work = scenario(args, size, connect);
        // The scenario's connections are closed by now; the probe watches the aftermath.
        let ended = Instant::now();
        thread::sleep(SETTLE);
        stop.store(true, Ordering::Relaxed);
        let probed = probe.join().expect("the probe thread does not panic");
        (probed, [baseline, (ended, Instant::now())], work)
    });
    let mut work = work?;
    if let Some(failure) = &probed.failure {
        eprintln!("dflockd-bench stall: probe ping failed: {}", failure.error);
        work.facts.extend([
            (
                "probe_failed_at_s",
                (failure.sent - baseline.0).as_secs_f64(),
            ),
            ("probe_unanswered_s", failure.waited.as_secs_f64()),
        ]);
    }
    if let Some(memory) = memory {
        work.facts.extend(memory.finish()?.facts());
    }
    let windows = [
        ("baseline", baseline),
        ("setup", work.setup),
        ("bulk", work.bulk),
        ("after", after),
    ]
    .map(|(name, (from, to))| (name, to - from, window(&probed.samples, from, to)));
    Ok(if args.json {
        render_json(args.scenario, size, &work.facts, &windows)
    } else {
        render_text(args, size, &work.facts, &windows)
    })
}

/// The client for the probe and the helper connections: TLS and token as given.
fn client(args: &StallArgs) -> Result<Client, String> {
    let mut builder = Client::builder([args.servers.clone()])
        .connect_timeout(IO_GRACE)
        .io_timeout(IO_GRACE);
    if let Some(ca) = &args.tls_ca {
        builder = builder.tls_ca_file(ca);
    }
    if let Some(token) = &args.token {
        builder = builder.auth_token(token);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Runs the chosen scenario; `connect` opens a helper connection like the probe's.
fn scenario(
    args: &StallArgs,
    size: usize,
    connect: impl Fn() -> Result<Connection, String>,
) -> Result<Work, String> {
    let addr = args.servers.as_str();
    let duration = Duration::from_secs(args.duration);
    match args.scenario {
        Scenario::Expiry => expiry(addr, size, args.lease),
        Scenario::Fanout => connect().and_then(|c| fanout(addr, size, c)),
        Scenario::Stats => connect().and_then(|c| stats_reply(addr, size, c)),
        Scenario::Disconnect => connect().and_then(|c| disconnect(addr, size, c)),
        Scenario::Orphan => connect().and_then(|c| orphan(addr, size, c)),
        Scenario::DeepPatterns => {
            attacks::deep_patterns(addr, size, args.conns.unwrap_or(1), args.signals)
        }
        Scenario::AuthFail => attacks::auth_fail(addr, size),
        Scenario::TlsHello => attacks::tls_hello(addr, size, args.drop.then_some(duration)),
        Scenario::StatsFlood => {
            let flood = attacks::Flood {
                conns: args.conns.unwrap_or(FLOOD_CONNS),
                requests: args.requests,
                hold: duration,
            };
            attacks::stats_flood(addr, size, flood)
        }
        Scenario::Storm => attacks::storm(addr, size, duration),
        Scenario::GroupLeave => connect().and_then(|c| attacks::group_leave(addr, size, c)),
    }
}

/// A ping that got no answer; it ended the probe.
struct ProbeFailure {
    sent: Instant,
    waited: Duration,
    error: ClientError,
}

/// What the probe saw: every answered ping and the failure that ended it early, if any.
struct Probed {
    samples: Vec<Sample>,
    failure: Option<ProbeFailure>,
}

/// Pings one at a time until `stop` is raised or a ping fails. A failure ends the probe
/// but not the run: a server stalled for longer than the I/O timeout is itself a result.
fn probe(mut conn: Connection, stop: &AtomicBool) -> Probed {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if let Err(error) = conn.ping() {
            let failure = ProbeFailure {
                sent,
                waited: sent.elapsed(),
                error,
            };
            return Probed {
                samples,
                failure: Some(failure),
            };
        }
        samples.push(Sample {
            sent,
            rtt: sent.elapsed(),
        });
    }
    Probed {
        samples,
        failure: None,
    }
}

/// Latency summary of the pings whose round trip overlaps `[from, to]`, so a ping held up
/// across a window's edge still counts in that window.
fn window(samples: &[Sample], from: Instant, to: Instant) -> Option<Summary> {
    let ns: Vec<u64> = samples
        .iter()
        .filter(|s| s.sent <= to && s.sent + s.rtt >= from)
        .map(|s| u64::try_from(s.rtt.as_nanos()).unwrap_or(u64::MAX))
        .collect();
    stats::summarize(&ns)
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

    /// The socket, for reading pushes elsewhere once every reply has been read.
    fn into_stream(self) -> TcpStream {
        debug_assert!(
            self.reader.buffer().is_empty(),
            "bytes after the last reply"
        );
        self.writer
    }

    /// Writes `requests` at once, then reads one reply per request and hands it to `check`.
    fn batch(
        &mut self,
        requests: &[u8],
        count: usize,
        check: impl FnMut(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        self.batch_by(requests, count, None, check).map(drop)
    }

    /// As [`Raw::batch`]; with a `deadline`, reading stops there or at the server's close
    /// instead of failing, and the result is the number of replies read.
    fn batch_by(
        &mut self,
        requests: &[u8],
        count: usize,
        deadline: Option<Instant>,
        mut check: impl FnMut(&str) -> Result<(), String>,
    ) -> Result<usize, String> {
        self.writer
            .write_all(requests)
            .map_err(|e| format!("write: {e}"))?;
        for done in 0..count {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(done);
                }
                self.writer
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("read timeout: {e}"))?;
            }
            self.line.clear();
            match self.reader.read_line(&mut self.line) {
                Ok(0) if deadline.is_some() => return Ok(done),
                Ok(0) => return Err("the server closed the connection".to_owned()),
                Ok(_) => check(self.line.trim_end())?,
                // A socket read timeout reports `WouldBlock` on Unix.
                Err(e) if deadline.is_some() && e.kind() == IoKind::WouldBlock => return Ok(done),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(count)
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
    let start = Instant::now();
    create_idle_keys(addr, size)?;
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

/// Leaves `size` idle keys `stall-<i>` behind (pipelined `l` + `r`), which `stats` lists.
fn create_idle_keys(addr: &str, size: usize) -> Result<(), String> {
    let mut raw = Raw::connect(addr)?;
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
    Ok(())
}

/// Many subscribers, then signals published one at a time on `publisher`.
fn fanout(addr: &str, size: usize, mut publisher: Connection) -> Result<Work, String> {
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let listen = format!("listen\n{PATTERN}\n\n");
    let mut subscribers = Subscribers::new(subscribe(addr, size, &listen)?)?;
    let triggered = Instant::now();
    let (arrival, published) = thread::scope(|scope| {
        let counter = scope.spawn(|| subscribers.await_lines(SIGNALS, DELIVERY_DEADLINE));
        let published =
            (0..SIGNALS).try_for_each(|n| match publisher.emit(CHANNEL, &format!("payload-{n}")) {
                Ok(count) if count == size as u64 => Ok(()),
                Ok(count) => Err(format!("signal reached {count} of {size} subscribers")),
                Err(e) => Err(format!("signal: {e}")),
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

/// Opens `size` connections that each send `request` (a `listen`) and checks every reply.
fn subscribe(addr: &str, size: usize, request: &str) -> Result<Vec<TcpStream>, String> {
    let failed = |e: io::Error| format!("subscriber set-up: {e}");
    let mut streams = Vec::with_capacity(size);
    // All requests first, all replies after: the server answers while we keep connecting.
    for _ in 0..size {
        let mut stream = TcpStream::connect(addr).map_err(failed)?;
        stream.write_all(request.as_bytes()).map_err(failed)?;
        streams.push(stream);
    }
    for stream in &mut streams {
        let mut reply = [0; 3];
        stream.set_read_timeout(Some(IO_GRACE)).map_err(failed)?;
        stream.read_exact(&mut reply).map_err(failed)?;
        if &reply != b"ok\n" {
            return Err(format!(
                "listen answered {:?}",
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    Ok(streams)
}

/// Subscribed connections read through one poll; counts the lines pushed to each.
struct Subscribers {
    poll: Poll,
    events: Events,
    streams: Vec<mio::net::TcpStream>,
    /// Lines read so far, per subscriber.
    lines: Vec<usize>,
    /// Subscribers the server disconnected; they are no longer registered.
    gone: Vec<bool>,
    buf: Vec<u8>,
}

impl Subscribers {
    /// Registers `streams`, whose replies have all been read, for reading.
    fn new(streams: Vec<TcpStream>) -> Result<Subscribers, String> {
        let failed = |e: io::Error| format!("subscriber set-up: {e}");
        let poll = Poll::new().map_err(failed)?;
        let mut registered = Vec::with_capacity(streams.len());
        for (i, stream) in streams.into_iter().enumerate() {
            stream.set_nonblocking(true).map_err(failed)?;
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .map_err(failed)?;
            registered.push(stream);
        }
        let n = registered.len();
        Ok(Subscribers {
            poll,
            events: Events::with_capacity(1024),
            streams: registered,
            lines: vec![0; n],
            gone: vec![false; n],
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits at most `timeout` for pushes and counts what arrived; a subscriber that reaches
    /// end of stream or an error is marked gone.
    fn pump(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == IoKind::Interrupted => return Ok(()),
            result => result.map_err(|e| format!("poll: {e}"))?,
        }
        for event in &self.events {
            let i = event.token().0;
            // Edge-triggered: drain the socket before waiting again.
            while !self.gone[i] {
                match self.streams[i].read(&mut self.buf) {
                    Ok(0) => self.gone[i] = true,
                    Ok(n) => self.lines[i] += self.buf[..n].iter().filter(|&&b| b == b'\n').count(),
                    Err(e) if e.kind() == IoKind::WouldBlock => break,
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(_) => self.gone[i] = true,
                }
            }
            if self.gone[i] {
                // Deregistering cannot fail for a registered socket; a failure would only
                // leave a spurious event behind, which the `gone` check absorbs.
                let _ = self.poll.registry().deregister(&mut self.streams[i]);
            }
        }
        Ok(())
    }

    /// Counts pushed lines until `stop` is raised.
    fn drain(&mut self, stop: &AtomicBool) -> Result<(), String> {
        while !stop.load(Ordering::Relaxed) {
            self.pump(Duration::from_millis(10))?;
        }
        Ok(())
    }

    /// Counts pushed lines until every subscriber has `expected` of them; returns when every
    /// subscriber had its first one and when all had arrived.
    fn await_lines(
        &mut self,
        expected: usize,
        limit: Duration,
    ) -> Result<(Instant, Instant), String> {
        let deadline = Instant::now() + limit;
        let mut first_all = None;
        while self.lines.iter().any(|&n| n < expected) {
            if let Some(i) = self.gone.iter().position(|&gone| gone) {
                return Err(format!("subscriber {i} was disconnected"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let complete = self.lines.iter().filter(|&&n| n >= expected).count();
                return Err(format!(
                    "only {complete} of {} subscribers got every signal within {}s",
                    self.lines.len(),
                    limit.as_secs()
                ));
            }
            self.pump(left)?;
            if first_all.is_none() && self.lines.iter().all(|&n| n > 0) {
                first_all = Some(Instant::now());
            }
        }
        let all = Instant::now();
        Ok((first_all.unwrap_or(all), all))
    }
}

/// Lifts the soft open-file limit to the hard one (every subscriber is a socket) and returns
/// the new soft limit, `u64::MAX` for unlimited.
fn raise_fd_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            ..limit
        },
    )?;
    Ok(limit.maximum.unwrap_or(u64::MAX))
}

/// `value` to the microsecond, so it prints without float noise.
fn rounded(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// A report window: its name, length and probe latencies.
type Window = (&'static str, Duration, Option<Summary>);

fn render_text(args: &StallArgs, size: usize, facts: &[(&str, f64)], windows: &[Window]) -> String {
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

/// One window of the JSON report; the latencies are `null` when no ping overlapped it.
#[derive(Serialize)]
struct WindowReport {
    window_s: f64,
    pings: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl WindowReport {
    fn new(length: Duration, summary: Option<&Summary>) -> Self {
        Self {
            window_s: length.as_secs_f64(),
            pings: summary.map_or(0, |s| s.count),
            p50_ms: summary.map(|s| s.p50_ms),
            p99_ms: summary.map(|s| s.p99_ms),
            max_ms: summary.map(|s| s.max_ms),
        }
    }
}

/// The report as one JSON object: scenario and size, then the facts and the windows as fields
/// named after them, in order.
struct StallReport<'a> {
    scenario: Scenario,
    size: usize,
    facts: &'a [(&'a str, f64)],
    windows: &'a [Window],
}

impl Serialize for StallReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("scenario", self.scenario.name())?;
        map.serialize_entry("size", &self.size)?;
        for (name, value) in self.facts {
            map.serialize_entry(name, &rounded(*value))?;
        }
        for (name, length, summary) in self.windows {
            map.serialize_entry(name, &WindowReport::new(*length, summary.as_ref()))?;
        }
        map.end()
    }
}

fn render_json(
    scenario: Scenario,
    size: usize,
    facts: &[(&str, f64)],
    windows: &[Window],
) -> String {
    let report = StallReport {
        scenario,
        size,
        facts,
        windows,
    };
    serde_json::to_string(&report).expect("the report has string keys only")
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
        // Within the histogram's 3 significant digits.
        assert!((inside.max_ms - 7.0).abs() < 7.0 * 1e-3, "{inside:?}");
        assert!(window(&samples, t0 + ms(40), t0 + ms(50)).is_none());
    }
}
