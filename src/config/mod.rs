//! Start-up configuration: turns command-line flags and `DFLOCKD_*` environment variables into one validated
//! [`Config`] (protocol spec §17). This module owns every flag and variable name, every default, the precedence
//! rule (explicit flag, then non-empty variable, then default) and all validation, including reading the auth
//! and admin token files. It must not print, log or exit the process (warnings and errors are returned to
//! `main`), and only [`Config::from_process`] may look at the real process arguments and environment.
//!
//! Environment variables are resolved here rather than by clap's `env` support for two reasons: clap treats an
//! empty variable as a given (empty) value, or as an error for switches, where the spec says an empty variable
//! counts as unset; and clap reads the process environment directly, which would make tests share global state.
//! The variable names still appear in `--help` because each help line is generated from the same `Setting`
//! table that drives resolution, so names and defaults are written down exactly once.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use resolve::{Resolver, process_env, read_timeout_warning};
pub use resolve::{SAME_SECRETS, admin_token_from_file, auth_token_from_file};
use settings::{PRINT_MAN, command, man_page, unknown_variable_warnings};

pub mod env;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;

/// Largest accepted value for any seconds setting, the same bound as on the wire. Bounding every duration
/// here lets the rest of the server convert seconds to milliseconds or nanoseconds without overflow.
pub use crate::logging::LogFormat;
pub use crate::protocol::MAX_SECONDS;

/// Validated server settings.
///
/// Every `*_s` field is in seconds and at most [`MAX_SECONDS`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Host to bind: a name or an IP literal; IPv6 literals are stored without brackets.
    pub host: String,
    /// TCP port to bind; 0 lets the OS pick an ephemeral port.
    pub port: u16,
    /// Whether to serve TCP on `host:port` (`--no-tcp` turns it off).
    pub tcp: bool,
    /// Path of the Unix stream socket to serve beside (or, with `tcp` off, instead of) TCP.
    pub unix_socket: Option<PathBuf>,
    /// Permission bits given to the Unix socket file after binding; at most `0o777`.
    pub unix_socket_mode: u32,
    /// User ids a Unix-socket peer may have; empty = no uid list.
    pub unix_allow_uid: Vec<u32>,
    /// Primary group ids a Unix-socket peer may have; empty = no gid list. With both lists empty
    /// every peer is admitted; otherwise a peer matching either list is.
    pub unix_allow_gid: Vec<u32>,
    /// Whether an admitted Unix-socket peer skips `auth` when a token is configured.
    pub unix_peer_auth: bool,
    /// Lease granted when an acquire names none; > 0.
    pub default_lease_s: u64,
    /// Accepted for compatibility with the reference server and validated (> 0), but it has no effect: leases
    /// expire on their own timers rather than in periodic sweeps.
    pub lease_sweep_interval_s: u64,
    /// Interval between passes that drop idle lock and semaphore entries; > 0.
    pub gc_interval_s: u64,
    /// How long an unused entry survives before a pass may drop it; 0 = at the next pass.
    pub gc_max_idle_s: u64,
    /// Cap on lock plus semaphore entries together; > 0.
    pub max_locks: u64,
    /// Cap on open connections; 0 = unlimited.
    pub max_connections: u64,
    /// Cap on open connections per remote IP address; 0 = unlimited.
    pub max_connections_per_ip: u64,
    /// Cap on queued waiters per key; 0 = unlimited.
    pub max_waiters: u64,
    /// How long a slot lost uncleanly (lease expiry, release by disconnect) stays ungranted, in
    /// milliseconds; 0 = off.
    pub lock_delay_ms: u64,
    /// Whether lock and semaphore events are published on the reserved `$lock.`/`$sem.` signal
    /// channels (which clients may then not publish on).
    pub lock_events: bool,
    /// Cap on signal subscriptions per connection; 0 = unlimited.
    pub max_subscriptions: u64,
    /// Most bytes of patterns and group names one connection may subscribe to; 0 = unlimited.
    pub max_subscription_bytes: u64,
    /// Most signal subscriptions of all connections together; 0 = unlimited.
    pub max_total_subscriptions: u64,
    /// Deadline for receiving each request line; > 0.
    pub read_timeout_s: u64,
    /// Deadline for each write; 0 = none.
    pub write_timeout_s: u64,
    /// How long graceful shutdown waits for connections to end; 0 = wait forever.
    pub shutdown_timeout_s: u64,
    /// Whether a disconnecting client's locks and slots are released rather than left to their leases.
    pub auto_release_on_disconnect: bool,
    /// Certificate and key when TLS is on; they are only ever configured together.
    pub tls: Option<TlsFiles>,
    /// Deadline for completing a TLS handshake; > 0.
    pub tls_handshake_timeout_s: u64,
    /// Shared secret required by `auth` (trimmed, non-empty, no CR or LF); `None` = authentication off.
    pub auth_token: Option<Secret>,
    /// The file the auth token was read from, if it came from one: SIGHUP reads it again.
    pub auth_token_file: Option<PathBuf>,
    /// Secret whose `auth` makes a connection an admin, allowed to `evict` (checked like
    /// `auth_token`, and never equal to it); `None` = no connection is an admin.
    pub admin_token: Option<Secret>,
    /// The file the admin token was read from, if it came from one: SIGHUP reads it again.
    pub admin_token_file: Option<PathBuf>,
    /// Whether debug-level logging is on.
    pub debug: bool,
    /// Where the monitoring endpoint listens (`HOST:PORT`), if anywhere.
    pub metrics_addr: Option<String>,
    /// Open HTTP connections the monitoring endpoint allows.
    pub metrics_max_connections: usize,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Whether connection opens and closes are logged at info level.
    pub log_connections: bool,
    /// Bytes of unprocessed input a connection may buffer; at least the longest legal request (66 051).
    pub max_input_buffer: usize,
    /// Soft output limit: a connection with this many unsent bytes has its requests paused until it drains
    /// below half of it; > 0.
    pub max_pending_output: usize,
    /// Hard output limit: a signal push that would take a subscriber past it disconnects the subscriber as a
    /// slow consumer; at least `max_pending_output` and at least 65 537.
    pub max_output_buffer: usize,
    /// Memory all connections' unsent output may take together (a shared signal line counted
    /// once); past it, connections holding more than their share are paused, or dropped as slow
    /// consumers if they are subscribers. At least 1 MiB.
    pub max_total_output: usize,
    /// Connections accepted per event-loop turn, so a connection flood cannot starve existing clients; >= 1.
    pub accept_batch: usize,
    /// Core to pin the event loop to; checked against the machine when the server starts, not here.
    pub cpu: Option<u32>,
    /// Whether the event loop polls without sleeping.
    pub busy_poll: bool,
}

/// The PEM files that enable TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key for `cert`.
    pub key: PathBuf,
}

/// A secret string whose `Debug` output is redacted, so it cannot leak through logged configuration.
///
/// It deliberately implements neither `Display` nor `PartialEq`: comparisons against client input must be
/// constant-time and belong to the authentication code, which reaches the value through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call sites are easy to audit by searching for `expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A configuration plus the warnings its resolution produced (deprecated variables, ignored flags), which
/// the caller prints or logs.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// One-line warnings, in the order they arose.
    pub warnings: Vec<String>,
}

/// Where a setting's value came from; errors name it so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, by its long name without dashes (`no-debug` for `--no-debug`).
    Flag(&'static str),
    /// An environment variable, by name.
    Env(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "--{flag}"),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Default => f.write_str("the built-in default"),
        }
    }
}

/// Why no configuration could be produced.
///
/// `main` prints every variant except [`ConfigError::Cli`] as `configuration error: {error}` and exits with
/// status 1. Messages never contain the auth or admin token.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's verdict on the command line: a usage error (unknown flag, missing value), or a `--help` or
    /// `--version` request. `main` calls [`clap::Error::exit`], which prints clap's own output and exits
    /// with status 2 for usage errors and 0 for help and version.
    Cli(clap::Error),
    /// A value that does not parse or is out of range.
    Invalid {
        /// The flag or variable that supplied the value.
        origin: Origin,
        /// What is wrong with it.
        problem: String,
    },
    /// Values that are valid one by one but not together.
    Conflict(String),
    /// Not a failure: `--print-man` asked for the manual, a roff man page generated from the same
    /// definitions as `--help`. `main` prints it on stdout and exits with status 0.
    ManPage(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cli(error) => write!(f, "{error}"),
            Self::Invalid { origin, problem } => write!(f, "{origin}: {problem}"),
            Self::Conflict(message) => f.write_str(message),
            Self::ManPage(_) => f.write_str("--print-man: the man page was requested"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Cli(error) => Some(error),
            Self::Invalid { .. } | Self::Conflict(_) | Self::ManPage(_) => None,
        }
    }
}

impl Config {
    /// Resolves the configuration from `args` (including the program name, as `std::env::args_os` yields
    /// it) and from `env`, which returns an environment variable's value by name.
    pub fn from_args_and_env<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = command()
            .try_get_matches_from(args)
            .map_err(ConfigError::Cli)?;
        // Like --help, this ignores every other setting.
        if matches.get_flag(PRINT_MAN) {
            return Err(ConfigError::ManPage(man_page()));
        }
        let mut resolver = Resolver {
            matches,
            env,
            warnings: Vec::new(),
        };
        let config = resolver.config()?;
        resolver.warn_about_ignored_flags();
        resolver.warnings.extend(read_timeout_warning(&config));
        Ok(Loaded {
            config,
            warnings: resolver.warnings,
        })
    }

    /// Resolves the configuration from the process's arguments and environment, adding a warning for each
    /// `DFLOCKD_*` variable that is not a setting (a misspelt name would otherwise be silently ignored).
    pub fn from_process() -> Result<Loaded, ConfigError> {
        let env = process_env()?;
        let mut loaded =
            Self::from_args_and_env(std::env::args_os(), &|name| env.get(name).cloned())?;
        let present: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
        loaded.warnings.extend(unknown_variable_warnings(
            present.iter().filter_map(|name| name.to_str()),
        ));
        Ok(loaded)
    }

    /// The address to bind, `host:port`, with an IPv6 literal host in brackets (`[::1]:6388`).
    pub fn bind_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Default for Config {
    /// Every setting at its built-in default, taken from the same table that `--help` shows.
    fn default() -> Self {
        Self::from_args_and_env(["dflockd"], &|_| None)
            .expect("the built-in defaults are valid")
            .config
    }
}
