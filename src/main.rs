//! The `dflockd` binary: parse the configuration, bind, run the event loop.

use std::process::ExitCode;
use std::sync::Arc;

use dflockd::config::{Config, ConfigError, Loaded};
use dflockd::server::{Server, load_tls};
use log::{LevelFilter, error, info, warn};
use rustix::thread::{CpuSet, sched_setaffinity};

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
    if let Err(e) = dflockd::logging::init(level) {
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
    let address = config.bind_address();
    let listener = std::net::TcpListener::bind(&address)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let mut server =
        Server::new(config, listener, tls).map_err(|e| format!("cannot start: {e}"))?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    info!(
        "dflockd {} listening on {} (default lease {}s, max locks {}, read timeout {}s, \
         auto-release {}, auth {}, tls {}, cpu {}, busy-poll {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
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
        if config.tls.is_some() { "on" } else { "off" },
        config
            .cpu
            .map_or("any".to_string(), |core| core.to_string()),
        if config.busy_poll { "on" } else { "off" },
    );
    server.run().map_err(|e| format!("event loop failed: {e}"))
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
