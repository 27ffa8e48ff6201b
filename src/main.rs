//! The `dflockd` binary: parse the configuration, bind, run the event loop.

use std::process::ExitCode;
use std::sync::Arc;

use dflockd::config::{Config, ConfigError, Loaded};
use dflockd::server::listeners::{Listeners, bind_unix};
use dflockd::server::{ReloadSources, Server, load_tls};
use dflockd::systemd::{Activation, Notifier};
use log::{LevelFilter, error, info, warn};
use rustix::thread::{CpuSet, sched_setaffinity};

/// The allocator, chosen for giving memory back after a spike (a client taking a million locks
/// and leaving) without stalling the loop. Measured on that spike, RSS after the client left:
///
/// - glibc malloc keeps freed small blocks inside its heap: with 40-byte keys (one heap block
///   per key) about 50 MB stayed resident for good. `malloc_trim(0)` releases them but took
///   8 ms in one call on that heap, holding the arena lock all along, too long for a loop turn.
/// - mimalloc purges freed pages only on later allocations, so an idle server kept 170-260 MB;
///   purging at once (`purge_delay=0`) returned it, but its `realloc` copies large blocks, which
///   made turns of 200-450 ms while the slabs grew.
/// - jemalloc purges freed pages whatever their size (see [`JEMALLOC_CONF`] for when): RSS was
///   back within 8 MB of its start 1-3 s after the client left, with short or long keys (the
///   trims that free the slabs take that long), and the request path runs slightly fewer
///   instructions than with glibc. The cost: building it needs a C compiler and make (about
///   1.5 minutes), and a large `realloc` copies, so a slab doubling at a million entries takes
///   a 50-80 ms turn where glibc moves the pages.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation: a freed extent of pages goes back to the
/// OS at once (`dirty_decay_ms:0`) and is released outright (`MADV_DONTNEED`, `muzzy_decay_ms:0`)
/// rather than lazily (`MADV_FREE`, which would leave it in RSS until the kernel needs memory).
///
/// Why at once rather than after a delay, by a background thread: a slab that doubles frees its
/// old copy, and with a delay those copies stayed resident for about a second, so 10 000 locks
/// taken in a burst cost 385 B each instead of 202 B until the purge. Purging at once happens
/// on the loop thread, but only extents of whole pages are purged, and the request path frees
/// none: the lock path made no `madvise` call at all over 20 000 acquire+release pairs, and
/// 4 000 signals of 30 KiB made 33. The large frees that do purge (a slab's old copy, a shrink
/// step of a trim, a hash table's old half) are bounded by the budgets that bound that work,
/// and there is no purging thread to compete with the loop for a pinned core.
/// jemalloc looks this symbol up by name; the build prefixes its symbols with `_rjem_`.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 58] = b"background_thread:false,dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let Loaded { config, warnings } = match Config::from_process() {
        Ok(loaded) => loaded,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(ConfigError::ManPage(page)) => {
            print!("{page}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    // The certificate and key are part of the configuration: a problem with them is reported
    // like any other configuration error, before anything is bound.
    let tls = match &config.tls {
        Some(files) => match load_tls(&files.cert, &files.key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("configuration error: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    // Per-request detail only with --debug.
    let level = if config.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if let Err(e) = dflockd::logging::init(level, config.log_format) {
        eprintln!("cannot start logging: {e}");
        return ExitCode::from(1);
    }
    for warning in &warnings {
        warn!("{warning}");
    }
    let status = match run(&config, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::from(1)
        }
    };
    // The last lines (shutdown, or why the server could not start) are still queued.
    log::logger().flush();
    status
}

fn run(config: &Config, tls: Option<Arc<rustls::ServerConfig>>) -> Result<(), String> {
    if let Some(core) = config.cpu {
        pin_to_core(core)?;
    }
    let (listeners, metrics) = listen(config)?;
    let mut server =
        Server::with_listeners(config, listeners, tls).map_err(|e| format!("cannot start: {e}"))?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    server.reload_on_sighup(ReloadSources {
        tls: config.tls.clone(),
        auth_token_file: config.auth_token_file.clone(),
        admin_token_file: config.admin_token_file.clone(),
    });
    // The monitoring endpoint: on the socket the service manager handed over, else on
    // --metrics-addr.
    let metrics = match (metrics, &config.metrics_addr) {
        (Some(listener), _) => Some(listener),
        (None, Some(addr)) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?,
        ),
        (None, None) => None,
    };
    if let Some(listener) = metrics {
        server
            .serve_metrics(listener)
            .map_err(|e| format!("cannot serve metrics: {e}"))?;
    }
    if let Some(addr) = server.metrics_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    match Notifier::from_env() {
        Ok(Some(notifier)) => server.set_notifier(notifier),
        Ok(None) => {}
        // The service manager will time the start-up out; serving meanwhile does no harm.
        Err(e) => warn!("cannot reach the service manager's NOTIFY_SOCKET: {e}"),
    }
    let names = server.listener_names();
    info!(
        "dflockd {} listening on {} (default lease {}s, max locks {}, read timeout {}s, \
         auto-release {}, auth {}, admin {}, tls {}, cpu {}, busy-poll {})",
        env!("CARGO_PKG_VERSION"),
        names[0],
        config.default_lease_s,
        config.max_locks,
        config.read_timeout_s,
        if config.auto_release_on_disconnect {
            "on"
        } else {
            "off"
        },
        if config.auth_token.is_some() {
            "on"
        } else {
            "off"
        },
        if config.admin_token.is_some() {
            "on"
        } else {
            "off"
        },
        if config.tls.is_some() { "on" } else { "off" },
        config
            .cpu
            .map_or("any".to_string(), |core| core.to_string()),
        if config.busy_poll { "on" } else { "off" },
    );
    for name in &names[1..] {
        info!("listening on {name}");
    }
    server.run().map_err(|e| format!("event loop failed: {e}"))
}

/// The listeners to serve: the ones the service manager handed over (socket activation), or
/// else TCP on `--host`/`--port` (unless `--no-tcp`) and the `--unix-socket`. Also returns the
/// handed-over socket named `metrics`, for the monitoring endpoint.
fn listen(config: &Config) -> Result<(Listeners, Option<std::net::TcpListener>), String> {
    let mut listeners = Listeners::default();
    let added = |e: std::io::Error| format!("cannot use a listening socket: {e}");
    let activation = Activation::from_env().map_err(|e| format!("socket activation: {e}"))?;
    let metrics = match activation {
        Some(activation) => {
            info!(
                "socket activation: {} TCP and {} Unix listener(s) handed over; \
                 --host, --port, --no-tcp and --unix-socket are not used",
                activation.tcp.len(),
                activation.unix.len()
            );
            for listener in activation.tcp {
                listeners.add_tcp(listener).map_err(added)?;
            }
            for listener in activation.unix {
                listeners.add_unix(listener, None).map_err(added)?;
            }
            activation.metrics
        }
        None => {
            if config.tcp {
                let address = config.bind_address();
                let listener = std::net::TcpListener::bind(&address)
                    .map_err(|e| format!("cannot listen on {address}: {e}"))?;
                listeners.add_tcp(listener).map_err(added)?;
            }
            if let Some(path) = &config.unix_socket {
                let (listener, file) = bind_unix(path, config.unix_socket_mode)?;
                listeners.add_unix(listener, Some(file)).map_err(added)?;
            }
            None
        }
    };
    if listeners.is_empty() {
        return Err(
            "nothing to serve: --no-tcp needs --unix-socket (or sockets handed over by the \
             service manager)"
                .to_owned(),
        );
    }
    Ok((listeners, metrics))
}

/// Pins the calling thread (the event loop runs on it) to one CPU core.
fn pin_to_core(core: u32) -> Result<(), String> {
    let core = core as usize;
    // CpuSet::set panics on an index the set cannot hold.
    if core >= CpuSet::MAX_CPU {
        return Err(format!("--cpu {core}: no such CPU core"));
    }
    let mut set = CpuSet::new();
    set.set(core);
    sched_setaffinity(None, &set).map_err(|e| {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!("--cpu {core}: cannot pin to that core ({e}); this machine offers {cores} core(s)")
    })
}
