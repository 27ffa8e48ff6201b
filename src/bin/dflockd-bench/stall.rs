//! The `stall` subcommand: a probe connection sends `ping` in a closed loop for the whole
//! run while one scenario makes the server do bulk work; the report compares the probe's
//! latency before, during the set-up and during the bulk work. It owns the scenarios and
//! their timing; it must not look at server internals, only at what the wire shows.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};
use dflockd::client::{Client, Connection, Error as ClientError};

use self::bulk::{disconnect, expiry, fanout, orphan, stats_reply, sweep};
use self::report::{render_json, render_text};
use super::IO_GRACE;
use super::stats::{self, Summary};

mod attacks;
mod bulk;
mod report;
mod rss;

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
    sweep: pipelined `sl` taking the SIZE slots of one semaphore `stall-sem` (lease --lease); \
    from the first lease falling due until the last fell due plus 2 s, a second connection \
    sends try-locks on it one at a time (each sweeps passed holders first);\n  \
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

    /// Keys, slots, subscribers, patterns or connections [default: expiry, sweep, disconnect and
    /// orphan 1000000; fanout 10000; stats and stats-flood 100000; deep-patterns, auth-fail and
    /// tls-hello 2000; storm 1000; group-leave 10000].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    size: Option<usize>,

    /// Lease of the expiry and sweep scenarios' locks and slots, in seconds.
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
    /// Many holders of one semaphore falling due while a client keeps asking for a slot.
    Sweep,
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
            Scenario::Sweep => "sweep",
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
            Scenario::Expiry | Scenario::Sweep | Scenario::Disconnect | Scenario::Orphan => {
                1_000_000
            }
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
        Scenario::Sweep => connect().and_then(|c| sweep(addr, size, args.lease, c)),
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
