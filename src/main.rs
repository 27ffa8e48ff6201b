//! The `dflockd` binary: parse the configuration, bind, run the event loop.

use std::process::ExitCode;

use dflockd::config::{Config, ConfigError, Loaded};
use dflockd::server::Server;
use log::{LevelFilter, error, info, warn};

fn main() -> ExitCode {
    let Loaded { config, warnings } = match Config::from_process() {
        Ok(loaded) => loaded,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(config.debug);
    for warning in &warnings {
        warn!("{warning}");
    }
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::from(1)
        }
    }
}

fn run(config: &Config) -> Result<(), String> {
    let address = config.bind_address();
    let listener = std::net::TcpListener::bind(&address)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let mut server = Server::new(config, listener).map_err(|e| format!("cannot start: {e}"))?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    info!(
        "dflockd {} listening on {} (default lease {}s, max locks {}, read timeout {}s, \
         auto-release {}, auth {}, tls {})",
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
    );
    server.run().map_err(|e| format!("event loop failed: {e}"))
}

/// Logs go to stderr as text: `info` by default, `debug` (per-request detail) with `--debug`.
fn init_logging(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        // rustls narrates every handshake at debug level; keep --debug about our own requests.
        .add_filter_ignore_str("rustls")
        .build();
    // Fails only if a logger is already installed, which cannot happen at start-up.
    let _ = simplelog::WriteLogger::init(level, config, std::io::stderr());
}
