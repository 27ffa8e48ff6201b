//! Start-up configuration: turns command-line flags and `DFLOCKD_*` environment variables into one validated
//! [`Config`] (protocol spec §17). This module owns every flag and variable name, every default, the precedence
//! rule (explicit flag, then non-empty variable, then default) and all validation, including reading the auth
//! token file. It must not print, log or exit the process (warnings and errors are returned to `main`), and
//! only [`Config::from_process`] may look at the real process arguments and environment.
//!
//! Environment variables are resolved here rather than by clap's `env` support for two reasons: clap treats an
//! empty variable as a given (empty) value, or as an error for switches, where the spec says an empty variable
//! counts as unset; and clap reads the process environment directly, which would make tests share global state.
//! The variable names still appear in `--help` because each help line is generated from the same `Setting`
//! table that drives resolution, so names and defaults are written down exactly once.

use std::collections::HashMap;
use std::env::VarError;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Read;
use std::iter;
use std::num::ParseIntError;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Arg, ArgAction, ArgMatches, Command};
use clap_mangen::Man;

use crate::protocol::{MAX_PAYLOAD_LINE, MAX_REQUEST};

pub mod env;

/// Largest accepted value for any seconds setting, the same bound as on the wire. Bounding every duration
/// here lets the rest of the server convert seconds to milliseconds or nanoseconds without overflow.
pub use crate::protocol::MAX_SECONDS;

/// An input buffer smaller than the longest legal request (spec §2.2) could not hold one.
const MIN_INPUT_BUFFER: usize = MAX_REQUEST;

/// The longest single push line a subscriber can be sent is bounded by the 64 KiB signal payload; a hard
/// output limit below one such line would disconnect a subscriber for receiving a single legal signal.
const MIN_OUTPUT_BUFFER: usize = MAX_PAYLOAD_LINE + 1;
/// The least `--max-total-output`: a few connections' worth.
const MIN_TOTAL_OUTPUT: usize = 1 << 20;

/// A client can present at most a 65 536-byte arg line to `auth` (spec §2.2), so a longer token could never be
/// matched.
const MAX_AUTH_TOKEN_BYTES: usize = MAX_PAYLOAD_LINE;

/// Official clients send `ping` on signal connections every 15 s (spec §12). A read timeout must exceed
/// that, with a second to spare for the ping's trip, or the server cuts idle subscribers off between
/// pings; shorter timeouts are allowed (the spec only requires > 0) but get a start-up warning.
const MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S: u64 = 16;

/// A token file holds a token and perhaps some white space; bounding the read keeps a mistaken path such as
/// `/dev/zero` from exhausting memory at start-up.
const MAX_AUTH_TOKEN_FILE_BYTES: u64 = 1 << 20;

/// Validated server settings.
///
/// Every `*_s` field is in seconds and at most [`MAX_SECONDS`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Host to bind: a name or an IP literal; IPv6 literals are stored without brackets.
    pub host: String,
    /// TCP port to bind; 0 lets the OS pick an ephemeral port.
    pub port: u16,
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
    /// Whether debug-level logging is on.
    pub debug: bool,
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
/// status 1. Messages never contain the auth token.
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

/// One configurable setting: how it is named on the command line and in the environment, and its default.
struct Setting {
    /// Long flag name without dashes; also the clap argument id.
    flag: &'static str,
    /// Variable consulted when the flag is absent.
    env: &'static str,
    /// Older variable consulted after `env`; using it produces a warning.
    deprecated_env: Option<&'static str>,
    /// Placeholder shown in `--help`.
    value_name: &'static str,
    /// Default as it would be typed, parsed like any other value; `None` = unset.
    default: Option<&'static str>,
    /// One-line description for `--help`.
    help: &'static str,
    /// For a boolean switch, the name of its negated flag (`no-debug`); `None` for settings taking a value.
    negated: Option<&'static str>,
}

impl Setting {
    /// A setting taking a value, with no deprecated variable.
    const fn value(
        flag: &'static str,
        env: &'static str,
        value_name: &'static str,
        default: Option<&'static str>,
        help: &'static str,
    ) -> Self {
        Self {
            flag,
            env,
            deprecated_env: None,
            value_name,
            default,
            help,
            negated: None,
        }
    }

    /// A boolean switch: `--flag`, `--flag=BOOL` and `--{negated}`.
    const fn switch(
        flag: &'static str,
        negated: &'static str,
        env: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            flag,
            env,
            deprecated_env: None,
            value_name: "BOOL",
            default: Some(default),
            help,
            negated: Some(negated),
        }
    }

    /// The same setting with a deprecated variable consulted after the canonical one.
    const fn deprecated_env(self, alias: &'static str) -> Self {
        Self {
            deprecated_env: Some(alias),
            ..self
        }
    }

    /// Adds this setting's arguments to `command`.
    fn add_to(&self, command: Command) -> Command {
        let arg = Arg::new(self.flag)
            .long(self.flag)
            .value_name(self.value_name)
            .action(ArgAction::Set)
            // `--max-locks -1` must reach validation (and fail there, naming the flag) rather
            // than be taken for an unknown flag `-1`.
            .allow_negative_numbers(true)
            .help(self.help_line());
        let Some(negated) = self.negated else {
            return command.arg(arg);
        };
        // `require_equals` makes `--debug false` a usage error rather than an ambiguity: the value form is
        // `--debug=false`, as the spec prescribes.
        let arg = arg
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true");
        let negation = Arg::new(negated)
            .long(negated)
            .action(ArgAction::SetTrue)
            .overrides_with(self.flag)
            .help(format!("Same as --{}=false", self.flag));
        command.arg(arg).arg(negation)
    }

    /// The help text followed by the variable names and the default, in clap's bracket style.
    fn help_line(&self) -> String {
        let mut line = format!("{}\n[env: {}", self.help, self.env);
        if let Some(alias) = self.deprecated_env {
            // Writing to a String cannot fail.
            let _ = write!(line, ", deprecated: {alias}");
        }
        line.push(']');
        if let Some(default) = self.default {
            let _ = write!(line, " [default: {default}]");
        }
        line
    }
}

const HOST: Setting = Setting::value(
    "host",
    "DFLOCKD_HOST",
    "HOST",
    Some("127.0.0.1"),
    "Address to bind: host name or IP literal (IPv6 without brackets)",
);
const PORT: Setting = Setting::value(
    "port",
    "DFLOCKD_PORT",
    "PORT",
    Some("6388"),
    "TCP port to listen on; 0 = ephemeral",
);
const DEFAULT_LEASE_TTL: Setting = Setting::value(
    "default-lease-ttl",
    "DFLOCKD_DEFAULT_LEASE_TTL_S",
    "SECONDS",
    Some("33"),
    "Lease for acquires that do not name one (> 0)",
);
const LEASE_SWEEP_INTERVAL: Setting = Setting::value(
    "lease-sweep-interval",
    "DFLOCKD_LEASE_SWEEP_INTERVAL_S",
    "SECONDS",
    Some("1"),
    "Accepted for compatibility; no effect, leases expire on exact timers (> 0)",
);
const GC_INTERVAL: Setting = Setting::value(
    "gc-interval",
    "DFLOCKD_GC_INTERVAL_S",
    "SECONDS",
    Some("5"),
    "Interval between passes that drop idle lock and semaphore entries (> 0)",
)
.deprecated_env("DFLOCKD_GC_LOOP_SLEEP");
const GC_MAX_IDLE: Setting = Setting::value(
    "gc-max-idle",
    "DFLOCKD_GC_MAX_IDLE_S",
    "SECONDS",
    Some("60"),
    "Idle time after which an unused entry is dropped; 0 = at the next pass",
)
.deprecated_env("DFLOCKD_GC_MAX_UNUSED_TIME");
const MAX_LOCKS: Setting = Setting::value(
    "max-locks",
    "DFLOCKD_MAX_LOCKS",
    "N",
    Some("1024"),
    "Maximum lock and semaphore entries together (> 0)",
);
const MAX_CONNECTIONS: Setting = Setting::value(
    "max-connections",
    "DFLOCKD_MAX_CONNECTIONS",
    "N",
    Some("0"),
    "Maximum open connections; 0 = unlimited",
);
const MAX_CONNECTIONS_PER_IP: Setting = Setting::value(
    "max-connections-per-ip",
    "DFLOCKD_MAX_CONNECTIONS_PER_IP",
    "N",
    Some("0"),
    "Maximum open connections per remote IP address; 0 = unlimited",
);
const MAX_WAITERS: Setting = Setting::value(
    "max-waiters",
    "DFLOCKD_MAX_WAITERS",
    "N",
    Some("0"),
    "Maximum queued waiters per key; 0 = unlimited",
);
const MAX_SUBSCRIPTIONS: Setting = Setting::value(
    "max-subscriptions",
    "DFLOCKD_MAX_SUBSCRIPTIONS",
    "N",
    Some("0"),
    "Maximum signal subscriptions per connection; 0 = unlimited",
);
const MAX_SUBSCRIPTION_BYTES: Setting = Setting::value(
    "max-subscription-bytes",
    "DFLOCKD_MAX_SUBSCRIPTION_BYTES",
    "BYTES",
    Some("1048576"),
    "Maximum bytes of patterns and group names one connection may subscribe to; 0 = unlimited",
);
const MAX_TOTAL_SUBSCRIPTIONS: Setting = Setting::value(
    "max-total-subscriptions",
    "DFLOCKD_MAX_TOTAL_SUBSCRIPTIONS",
    "N",
    Some("1000000"),
    "Maximum signal subscriptions of all connections together; 0 = unlimited",
);
const READ_TIMEOUT: Setting = Setting::value(
    "read-timeout",
    "DFLOCKD_READ_TIMEOUT_S",
    "SECONDS",
    Some("23"),
    "Deadline for receiving each request line (> 0)",
);
const WRITE_TIMEOUT: Setting = Setting::value(
    "write-timeout",
    "DFLOCKD_WRITE_TIMEOUT_S",
    "SECONDS",
    Some("5"),
    "Deadline for each write; 0 = none",
);
const SHUTDOWN_TIMEOUT: Setting = Setting::value(
    "shutdown-timeout",
    "DFLOCKD_SHUTDOWN_TIMEOUT_S",
    "SECONDS",
    Some("30"),
    "Time connections get to end after SIGINT/SIGTERM; 0 = wait forever",
);
const AUTO_RELEASE_ON_DISCONNECT: Setting = Setting::switch(
    "auto-release-on-disconnect",
    "no-auto-release-on-disconnect",
    "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT",
    "true",
    "Release a client's locks and slots when it disconnects",
);
const TLS_CERT: Setting = Setting::value(
    "tls-cert",
    "DFLOCKD_TLS_CERT",
    "PATH",
    None,
    "PEM certificate chain; TLS is on when this and --tls-key are set",
);
const TLS_KEY: Setting = Setting::value(
    "tls-key",
    "DFLOCKD_TLS_KEY",
    "PATH",
    None,
    "PEM private key for --tls-cert",
);
const TLS_HANDSHAKE_TIMEOUT: Setting = Setting::value(
    "tls-handshake-timeout",
    "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S",
    "SECONDS",
    Some("10"),
    "Deadline for completing a TLS handshake (> 0)",
);
const AUTH_TOKEN: Setting = Setting::value(
    "auth-token",
    "DFLOCKD_AUTH_TOKEN",
    "TOKEN",
    None,
    "Shared secret clients must send with `auth` (visible in process lists:\nprefer --auth-token-file)",
);
const AUTH_TOKEN_FILE: Setting = Setting::value(
    "auth-token-file",
    "DFLOCKD_AUTH_TOKEN_FILE",
    "PATH",
    None,
    "File holding the shared secret (surrounding white space is ignored)",
);
const DEBUG: Setting = Setting::switch(
    "debug",
    "no-debug",
    "DFLOCKD_DEBUG",
    "false",
    "Log at debug level",
);
const MAX_INPUT_BUFFER: Setting = Setting::value(
    "max-input-buffer",
    "DFLOCKD_MAX_INPUT_BUFFER",
    "BYTES",
    Some("131072"),
    "Unprocessed input a connection may buffer (>= 66051, the longest legal request)",
);
const MAX_PENDING_OUTPUT: Setting = Setting::value(
    "max-pending-output",
    "DFLOCKD_MAX_PENDING_OUTPUT",
    "BYTES",
    Some("262144"),
    "Unsent output at which a connection's requests pause until it drains\nbelow half (> 0)",
);
const MAX_OUTPUT_BUFFER: Setting = Setting::value(
    "max-output-buffer",
    "DFLOCKD_MAX_OUTPUT_BUFFER",
    "BYTES",
    Some("4194304"),
    "Unsent output past which a subscriber is dropped as a slow consumer\n(>= 65537 and >= --max-pending-output)",
);
const MAX_TOTAL_OUTPUT: Setting = Setting::value(
    "max-total-output",
    "DFLOCKD_MAX_TOTAL_OUTPUT",
    "BYTES",
    Some("268435456"),
    "Unsent output of all connections together (a shared signal counted once)\npast which connections holding more than their share are paused, or\ndropped as slow consumers if subscribers (>= 1048576)",
);
const ACCEPT_BATCH: Setting = Setting::value(
    "accept-batch",
    "DFLOCKD_ACCEPT_BATCH",
    "N",
    Some("64"),
    "Connections accepted per event-loop turn (>= 1)",
);
const CPU: Setting = Setting::value(
    "cpu",
    "DFLOCKD_CPU",
    "CORE",
    None,
    "Pin the event loop to this CPU core index",
);
const BUSY_POLL: Setting = Setting::switch(
    "busy-poll",
    "no-busy-poll",
    "DFLOCKD_BUSY_POLL",
    "false",
    "Poll without sleeping: lower latency, one core kept busy",
);

/// Every setting, in `--help` order.
const SETTINGS: &[&Setting] = &[
    &HOST,
    &PORT,
    &DEFAULT_LEASE_TTL,
    &LEASE_SWEEP_INTERVAL,
    &GC_INTERVAL,
    &GC_MAX_IDLE,
    &MAX_LOCKS,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_IP,
    &MAX_WAITERS,
    &MAX_SUBSCRIPTIONS,
    &MAX_SUBSCRIPTION_BYTES,
    &MAX_TOTAL_SUBSCRIPTIONS,
    &READ_TIMEOUT,
    &WRITE_TIMEOUT,
    &SHUTDOWN_TIMEOUT,
    &AUTO_RELEASE_ON_DISCONNECT,
    &TLS_CERT,
    &TLS_KEY,
    &TLS_HANDSHAKE_TIMEOUT,
    &AUTH_TOKEN,
    &AUTH_TOKEN_FILE,
    &DEBUG,
    &MAX_INPUT_BUFFER,
    &MAX_PENDING_OUTPUT,
    &MAX_OUTPUT_BUFFER,
    &MAX_TOTAL_OUTPUT,
    &ACCEPT_BATCH,
    &CPU,
    &BUSY_POLL,
];

/// HTTP-API flags of the reference server. This server has no HTTP API; they are accepted (hidden from
/// `--help`, values unchecked) so deployment scripts written for the reference keep working, and using one
/// yields a warning. Their `DFLOCKD_HTTP_*` variables are never read.
const IGNORED_HTTP_FLAGS: &[&str] = &[
    "http-port",
    "http-host",
    "http-session-idle-timeout",
    "http-max-sessions",
    "http-max-sessions-per-ip",
    "http-max-connections-per-ip",
    "http-rate-limit-per-ip",
    "http-rate-limit-burst",
    "http-sse-ping-interval",
    "http-cors-allowed-origins",
];

/// The flag that prints the man page instead of starting the server.
const PRINT_MAN: &str = "print-man";

const ABOUT: &str =
    "Distributed lock server: FIFO locks with leases, semaphores and pub/sub signals over TCP";

const AFTER_HELP: &str = "\
Each setting comes from its flag if given, else from its environment variable if set and
non-empty, else from its default. Boolean variables take 1/yes/true or 0/no/false (any case).
The --http-* flags of other dflockd servers are accepted and ignored: there is no HTTP API.";

/// The clap command: the CLI layer only, without defaults or environment, so that a value present in the
/// matches was given on the command line.
fn command() -> Command {
    let command = Command::new("dflockd")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(AFTER_HELP)
        // Without clap's terminal-size feature nothing wraps, so help lines carry their own breaks and each
        // description starts on its own line.
        .next_line_help(true)
        // Later occurrences win, so a script can append an override to a fixed argument list.
        .args_override_self(true);
    let command = SETTINGS
        .iter()
        .fold(command, |command, setting| setting.add_to(command));
    let command = command.arg(
        Arg::new(PRINT_MAN)
            .long(PRINT_MAN)
            .action(ArgAction::SetTrue)
            .help("Print this manual as a roff man page and exit"),
    );
    IGNORED_HTTP_FLAGS.iter().fold(command, |command, flag| {
        command.arg(
            Arg::new(*flag)
                .long(*flag)
                .value_name("VALUE")
                .action(ArgAction::Set)
                .hide(true),
        )
    })
}

/// Every variable the server reads, canonical names and deprecated aliases.
fn server_variables() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .flat_map(|setting| iter::once(setting.env).chain(setting.deprecated_env))
}

/// Warnings for the `DFLOCKD_*` names in `present` that neither the server nor `dflockctl` reads.
fn unknown_variable_warnings<'a>(present: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let known: Vec<&str> = server_variables()
        .chain(env::DFLOCKCTL_VARIABLES.iter().copied())
        .collect();
    env::unknown_variable_warnings(present, &known)
}

/// The roff man page for `dflockd(1)`, from the same command definition as `--help`.
fn man_page() -> String {
    let mut page = Vec::new();
    Man::new(command())
        .render(&mut page)
        .expect("writing to memory cannot fail");
    String::from_utf8(page).expect("clap_mangen writes UTF-8")
}

/// Snapshots the variables this module reads; one that is not valid UTF-8 is an error rather than a
/// silently mangled value.
fn process_env() -> Result<HashMap<&'static str, String>, ConfigError> {
    let names = server_variables();
    let mut vars = HashMap::new();
    for name in names {
        match std::env::var(name) {
            Ok(value) => {
                vars.insert(name, value);
            }
            Err(VarError::NotPresent) => {}
            Err(VarError::NotUnicode(_)) => {
                return Err(ConfigError::Invalid {
                    origin: Origin::Env(name),
                    problem: "value is not valid UTF-8".to_owned(),
                });
            }
        }
    }
    Ok(vars)
}

/// A setting's unparsed text and where it came from.
struct Raw {
    origin: Origin,
    text: String,
}

/// A parsed value and where it came from, kept for settings checked against each other.
struct Sourced<T> {
    value: T,
    origin: Origin,
}

/// Where the auth token is read from.
enum TokenSource {
    /// The token itself.
    Inline(Raw),
    /// The path of a file holding it.
    File(Raw),
}

/// Applies the precedence rule to each setting, collecting warnings on the way.
struct Resolver<'a> {
    matches: ArgMatches,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    /// Resolves every setting exactly once, so each deprecation warning appears once.
    fn config(&mut self) -> Result<Config, ConfigError> {
        let (max_pending_output, max_output_buffer) = self.output_limits()?;
        Ok(Config {
            host: self.get(&HOST, parse_host)?,
            port: self.get(&PORT, bounded(0, u16::MAX, "port number"))?,
            default_lease_s: self.get(&DEFAULT_LEASE_TTL, seconds(1))?,
            lease_sweep_interval_s: self.get(&LEASE_SWEEP_INTERVAL, seconds(1))?,
            gc_interval_s: self.get(&GC_INTERVAL, seconds(1))?,
            gc_max_idle_s: self.get(&GC_MAX_IDLE, seconds(0))?,
            max_locks: self.get(&MAX_LOCKS, count(1))?,
            max_connections: self.get(&MAX_CONNECTIONS, count(0))?,
            max_connections_per_ip: self.get(&MAX_CONNECTIONS_PER_IP, count(0))?,
            max_waiters: self.get(&MAX_WAITERS, count(0))?,
            max_subscriptions: self.get(&MAX_SUBSCRIPTIONS, count(0))?,
            max_subscription_bytes: self.get(&MAX_SUBSCRIPTION_BYTES, count(0))?,
            max_total_subscriptions: self.get(&MAX_TOTAL_SUBSCRIPTIONS, count(0))?,
            read_timeout_s: self.get(&READ_TIMEOUT, seconds(1))?,
            write_timeout_s: self.get(&WRITE_TIMEOUT, seconds(0))?,
            shutdown_timeout_s: self.get(&SHUTDOWN_TIMEOUT, seconds(0))?,
            auto_release_on_disconnect: self.get(&AUTO_RELEASE_ON_DISCONNECT, parse_bool)?,
            tls: self.tls()?,
            tls_handshake_timeout_s: self.get(&TLS_HANDSHAKE_TIMEOUT, seconds(1))?,
            auth_token: self.auth_token()?,
            debug: self.get(&DEBUG, parse_bool)?,
            max_input_buffer: self.get(&MAX_INPUT_BUFFER, bytes(MIN_INPUT_BUFFER))?,
            max_pending_output,
            max_output_buffer,
            max_total_output: self.get(&MAX_TOTAL_OUTPUT, bytes(MIN_TOTAL_OUTPUT))?,
            accept_batch: self.get(&ACCEPT_BATCH, bounded(1, usize::MAX, "number"))?,
            cpu: self
                .optional(&CPU, bounded(0, u32::MAX, "CPU core index"))?
                .map(|cpu| cpu.value),
            busy_poll: self.get(&BUSY_POLL, parse_bool)?,
        })
    }

    /// The value of a setting that has a default.
    fn get<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.required(setting, parse)?.value)
    }

    /// Like [`Resolver::get`], keeping the origin for cross-setting checks.
    fn required<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Sourced<T>, ConfigError> {
        let raw = self
            .raw(setting)
            .expect("settings read as required have a built-in default");
        parse_raw(raw, parse)
    }

    /// The value of a setting that may be unset.
    fn optional<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Sourced<T>>, ConfigError> {
        self.raw(setting)
            .map(|raw| parse_raw(raw, parse))
            .transpose()
    }

    /// Explicit flag, else non-empty variable, else default.
    fn raw(&mut self, setting: &Setting) -> Option<Raw> {
        self.flag_value(setting)
            .or_else(|| self.env_value(setting))
            .or_else(|| {
                setting.default.map(|text| Raw {
                    origin: Origin::Default,
                    text: text.to_owned(),
                })
            })
    }

    /// The setting's text if it was given on the command line; `--no-x` reads as `false`.
    fn flag_value(&self, setting: &Setting) -> Option<Raw> {
        // The flag and its negation override each other, so at most one of them is present.
        if let Some(negated) = setting
            .negated
            .filter(|negated| self.matches.get_flag(negated))
        {
            return Some(Raw {
                origin: Origin::Flag(negated),
                text: "false".to_owned(),
            });
        }
        let text = self.matches.get_one::<String>(setting.flag)?;
        Some(Raw {
            origin: Origin::Flag(setting.flag),
            text: text.clone(),
        })
    }

    /// The setting's non-empty variable, the canonical name first, then the deprecated one with a warning.
    fn env_value(&mut self, setting: &Setting) -> Option<Raw> {
        if let Some(text) = self.lookup(setting.env) {
            return Some(Raw {
                origin: Origin::Env(setting.env),
                text,
            });
        }
        let alias = setting.deprecated_env?;
        let text = self.lookup(alias)?;
        self.warnings.push(format!(
            "{alias} is deprecated; use {} or --{} instead",
            setting.env, setting.flag
        ));
        Some(Raw {
            origin: Origin::Env(alias),
            text,
        })
    }

    /// A variable's value; an empty one counts as unset.
    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|value| !value.is_empty())
    }

    /// The TLS files, which must be configured together.
    fn tls(&mut self) -> Result<Option<TlsFiles>, ConfigError> {
        let cert = self.optional(&TLS_CERT, parse_path)?;
        let key = self.optional(&TLS_KEY, parse_path)?;
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.value,
                key: key.value,
            })),
            (Some(cert), None) => Err(missing_partner(&cert.origin, &TLS_KEY)),
            (None, Some(key)) => Err(missing_partner(&key.origin, &TLS_CERT)),
        }
    }

    /// The soft and hard output limits; the hard one must leave room for the soft one.
    fn output_limits(&mut self) -> Result<(usize, usize), ConfigError> {
        let pending = self.required(&MAX_PENDING_OUTPUT, bytes(1))?;
        let hard = self.required(&MAX_OUTPUT_BUFFER, bytes(MIN_OUTPUT_BUFFER))?;
        if hard.value < pending.value {
            return Err(ConfigError::Conflict(format!(
                "{} sets the hard output limit to {}, below the soft limit of {} set by {}; \
                 --max-output-buffer must be at least --max-pending-output",
                hard.origin, hard.value, pending.value, pending.origin
            )));
        }
        Ok((pending.value, hard.value))
    }

    /// The auth token per spec §17.3; the token never appears in an error.
    fn auth_token(&mut self) -> Result<Option<Secret>, ConfigError> {
        let (origin, content) = match self.token_source() {
            None => return Ok(None),
            Some(TokenSource::Inline(raw)) => (raw.origin, raw.text),
            Some(TokenSource::File(raw)) => match read_token_file(&raw.text) {
                Ok(content) => (raw.origin, content),
                Err(problem) => {
                    return Err(ConfigError::Invalid {
                        origin: raw.origin,
                        problem,
                    });
                }
            },
        };
        let token = content.trim();
        check_token(token).map_err(|problem| ConfigError::Invalid { origin, problem })?;
        Ok(Some(Secret::new(token)))
    }

    /// First match of: explicit `--auth-token`, explicit `--auth-token-file`, non-empty
    /// `DFLOCKD_AUTH_TOKEN`, non-empty `DFLOCKD_AUTH_TOKEN_FILE`.
    ///
    /// Unlike spec §17.3, an explicit flag counts even when empty, and then fails validation: the same
    /// rule as for every other source (and for `dflockctl`), so `--auth-token "$UNSET"` stops the server
    /// instead of starting it with authentication off.
    fn token_source(&mut self) -> Option<TokenSource> {
        self.flag_value(&AUTH_TOKEN)
            .map(TokenSource::Inline)
            .or_else(|| self.flag_value(&AUTH_TOKEN_FILE).map(TokenSource::File))
            .or_else(|| self.env_value(&AUTH_TOKEN).map(TokenSource::Inline))
            .or_else(|| self.env_value(&AUTH_TOKEN_FILE).map(TokenSource::File))
    }

    /// Warns once for each ignored HTTP-API flag that was given.
    fn warn_about_ignored_flags(&mut self) {
        for flag in IGNORED_HTTP_FLAGS {
            if self.matches.contains_id(flag) {
                self.warnings.push(format!(
                    "--{flag} has no effect: this server has no HTTP API"
                ));
            }
        }
    }
}

/// A warning when `config`'s read timeout would cut off clients that ping at the official interval.
fn read_timeout_warning(config: &Config) -> Option<String> {
    (config.read_timeout_s < MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S).then(|| {
        format!(
            "the read timeout of {}s is below {MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S}s: official clients \
             ping every 15s, so idle signal subscribers and `dflockctl run` would be disconnected",
            config.read_timeout_s
        )
    })
}

/// Parses `raw.text`, attributing a failure to `raw.origin`.
fn parse_raw<T>(
    raw: Raw,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Sourced<T>, ConfigError> {
    match parse(&raw.text) {
        Ok(value) => Ok(Sourced {
            value,
            origin: raw.origin,
        }),
        Err(problem) => Err(ConfigError::Invalid {
            origin: raw.origin,
            problem,
        }),
    }
}

/// The error for one TLS file configured without the other.
fn missing_partner(origin: &Origin, missing: &Setting) -> ConfigError {
    ConfigError::Conflict(format!(
        "TLS needs both a certificate and a key: {origin} is set, but neither --{} nor {} is",
        missing.flag, missing.env
    ))
}

/// A parser for an integer in `min..=max`; `what` names the expected value in messages.
fn bounded<T>(min: T, max: T, what: &'static str) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + PartialOrd + fmt::Display + Copy,
{
    move |text| {
        let value: T = text
            .parse()
            .map_err(|error| format!("{text:?} is not a valid {what}: {error}"))?;
        if value < min {
            Err(format!("{value} is too small: the minimum is {min}"))
        } else if value > max {
            Err(format!("{value} is too large: the maximum is {max}"))
        } else {
            Ok(value)
        }
    }
}

/// A parser for whole seconds in `min..=MAX_SECONDS`.
fn seconds(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    bounded(min, MAX_SECONDS, "number of seconds")
}

/// A parser for a count of at least `min`.
fn count(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    bounded(min, u64::MAX, "number")
}

/// A parser for a byte size of at least `min`.
fn bytes(min: usize) -> impl Fn(&str) -> Result<usize, String> {
    bounded(min, usize::MAX, "number of bytes")
}

/// Booleans as the spec spells them, in any case.
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" => Ok(true),
        "0" | "no" | "false" => Ok(false),
        _ => Err(format!(
            "{text:?} is not a boolean: use true/false, yes/no or 1/0"
        )),
    }
}

/// A bind host; a bracketed IPv6 literal is accepted and stored without its brackets.
fn parse_host(text: &str) -> Result<String, String> {
    let host = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text);
    if host.is_empty() {
        return Err("the host must not be empty".to_owned());
    }
    Ok(host.to_owned())
}

/// A file path; an empty one is a mistake rather than "unset".
fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path must not be empty".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// The whole content of the token file at `path`, up to a sanity bound.
fn read_token_file(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err(
            "the auth token file path is empty; omit the setting to run without authentication"
                .to_owned(),
        );
    }
    let path = Path::new(path);
    let unreadable =
        |error: std::io::Error| format!("cannot read auth token file {}: {error}", path.display());
    let mut content = Vec::new();
    File::open(path)
        .and_then(|file| {
            file.take(MAX_AUTH_TOKEN_FILE_BYTES + 1)
                .read_to_end(&mut content)
        })
        .map_err(unreadable)?;
    if content.len() as u64 > MAX_AUTH_TOKEN_FILE_BYTES {
        return Err(format!(
            "auth token file {} is larger than {MAX_AUTH_TOKEN_FILE_BYTES} bytes",
            path.display()
        ));
    }
    String::from_utf8(content)
        .map_err(|_| format!("auth token file {} is not valid UTF-8", path.display()))
}

/// Checks a trimmed token; messages describe the problem without quoting the token.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        Err(
            "the auth token is empty or blank; omit the setting to run without authentication"
                .to_owned(),
        )
    } else if token.contains(['\r', '\n']) {
        Err("the auth token contains a line break (CR or LF)".to_owned())
    } else if token.len() > MAX_AUTH_TOKEN_BYTES {
        Err(format!(
            "the auth token is {} bytes long; clients can send at most {MAX_AUTH_TOKEN_BYTES}",
            token.len()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Resolves `args` (without the program name) against an environment holding only `env`.
    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let argv = iter::once("dflockd").chain(args.iter().copied());
        Config::from_args_and_env(argv, &|name| env.get(name).cloned())
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match load(args, env) {
            Ok(loaded) => loaded.config,
            Err(error) => panic!("{args:?} {env:?} should be valid: {error}"),
        }
    }

    fn invalid(args: &[&str], env: &[(&str, &str)]) -> (Origin, String) {
        match load(args, env) {
            Err(ConfigError::Invalid { origin, problem }) => (origin, problem),
            other => panic!("{args:?} {env:?} should be an invalid value, got {other:?}"),
        }
    }

    fn conflict(args: &[&str], env: &[(&str, &str)]) -> String {
        match load(args, env) {
            Err(ConfigError::Conflict(message)) => message,
            other => panic!("{args:?} {env:?} should be a conflict, got {other:?}"),
        }
    }

    fn cli_error(args: &[&str]) -> clap::Error {
        match load(args, &[]) {
            Err(ConfigError::Cli(error)) => error,
            other => panic!("{args:?} should be a command-line error, got {other:?}"),
        }
    }

    /// The field a flag sets, as text, so one table can drive the tests for every setting.
    fn field(config: &Config, flag: &str) -> String {
        match flag {
            "host" => config.host.clone(),
            "port" => config.port.to_string(),
            "default-lease-ttl" => config.default_lease_s.to_string(),
            "lease-sweep-interval" => config.lease_sweep_interval_s.to_string(),
            "gc-interval" => config.gc_interval_s.to_string(),
            "gc-max-idle" => config.gc_max_idle_s.to_string(),
            "max-locks" => config.max_locks.to_string(),
            "max-connections" => config.max_connections.to_string(),
            "max-connections-per-ip" => config.max_connections_per_ip.to_string(),
            "max-waiters" => config.max_waiters.to_string(),
            "max-subscriptions" => config.max_subscriptions.to_string(),
            "max-subscription-bytes" => config.max_subscription_bytes.to_string(),
            "max-total-subscriptions" => config.max_total_subscriptions.to_string(),
            "read-timeout" => config.read_timeout_s.to_string(),
            "write-timeout" => config.write_timeout_s.to_string(),
            "shutdown-timeout" => config.shutdown_timeout_s.to_string(),
            "auto-release-on-disconnect" => config.auto_release_on_disconnect.to_string(),
            "tls-handshake-timeout" => config.tls_handshake_timeout_s.to_string(),
            "debug" => config.debug.to_string(),
            "max-input-buffer" => config.max_input_buffer.to_string(),
            "max-pending-output" => config.max_pending_output.to_string(),
            "max-output-buffer" => config.max_output_buffer.to_string(),
            "max-total-output" => config.max_total_output.to_string(),
            "accept-batch" => config.accept_batch.to_string(),
            "cpu" => config
                .cpu
                .map_or_else(|| "unset".to_owned(), |cpu| cpu.to_string()),
            "busy-poll" => config.busy_poll.to_string(),
            _ => panic!("no field for --{flag}"),
        }
    }

    /// (flag, variable, documented default, two distinct non-default values) for every setting with a
    /// plain value; TLS and the auth token have their own tests.
    #[rustfmt::skip]
    const CASES: &[(&str, &str, &str, &str, &str)] = &[
        ("host", "DFLOCKD_HOST", "127.0.0.1", "::1", "example.org"),
        ("port", "DFLOCKD_PORT", "6388", "0", "7000"),
        ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "33", "1", "600"),
        ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S", "1", "2", "3"),
        ("gc-interval", "DFLOCKD_GC_INTERVAL_S", "5", "1", "9223372036"),
        ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S", "60", "0", "120"),
        ("max-locks", "DFLOCKD_MAX_LOCKS", "1024", "1", "1000000"),
        ("max-connections", "DFLOCKD_MAX_CONNECTIONS", "0", "1", "50000"),
        ("max-connections-per-ip", "DFLOCKD_MAX_CONNECTIONS_PER_IP", "0", "1", "8"),
        ("max-waiters", "DFLOCKD_MAX_WAITERS", "0", "1", "100"),
        ("max-subscriptions", "DFLOCKD_MAX_SUBSCRIPTIONS", "0", "1", "16"),
        ("max-subscription-bytes", "DFLOCKD_MAX_SUBSCRIPTION_BYTES", "1048576", "0", "4096"),
        ("max-total-subscriptions", "DFLOCKD_MAX_TOTAL_SUBSCRIPTIONS", "1000000", "0", "10"),
        ("read-timeout", "DFLOCKD_READ_TIMEOUT_S", "23", "1", "3600"),
        ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S", "5", "0", "60"),
        ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S", "30", "0", "5"),
        ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S", "10", "1", "30"),
        ("max-input-buffer", "DFLOCKD_MAX_INPUT_BUFFER", "131072", "66051", "1048576"),
        ("max-pending-output", "DFLOCKD_MAX_PENDING_OUTPUT", "262144", "1", "4194304"),
        ("max-output-buffer", "DFLOCKD_MAX_OUTPUT_BUFFER", "4194304", "262144", "16777216"),
        ("max-total-output", "DFLOCKD_MAX_TOTAL_OUTPUT", "268435456", "1048576", "67108864"),
        ("accept-batch", "DFLOCKD_ACCEPT_BATCH", "64", "1", "1024"),
        ("cpu", "DFLOCKD_CPU", "unset", "0", "3"),
    ];

    /// (flag, negated flag, variable, default) for every boolean switch.
    #[rustfmt::skip]
    const SWITCHES: &[(&str, &str, &str, bool)] = &[
        ("auto-release-on-disconnect", "no-auto-release-on-disconnect", "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", true),
        ("debug", "no-debug", "DFLOCKD_DEBUG", false),
        ("busy-poll", "no-busy-poll", "DFLOCKD_BUSY_POLL", false),
    ];

    /// (flag, variable, an unparsable or out-of-range value) covering every validation rule.
    #[rustfmt::skip]
    const BAD_VALUES: &[(&str, &str, &str)] = &[
        ("host", "DFLOCKD_HOST", "[]"),
        ("port", "DFLOCKD_PORT", "65536"),
        ("port", "DFLOCKD_PORT", "-1"),
        ("port", "DFLOCKD_PORT", " 6388"),
        ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "0"),
        ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "1.5"),
        ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S", "0"),
        ("gc-interval", "DFLOCKD_GC_INTERVAL_S", "0"),
        ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S", "-1"),
        ("max-locks", "DFLOCKD_MAX_LOCKS", "0"),
        ("max-connections", "DFLOCKD_MAX_CONNECTIONS", "lots"),
        ("max-connections-per-ip", "DFLOCKD_MAX_CONNECTIONS_PER_IP", "-1"),
        ("max-waiters", "DFLOCKD_MAX_WAITERS", "18446744073709551616"),
        ("max-subscriptions", "DFLOCKD_MAX_SUBSCRIPTIONS", "1e3"),
        ("read-timeout", "DFLOCKD_READ_TIMEOUT_S", "0"),
        ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S", "5s"),
        ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S", "forever"),
        ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S", "0"),
        ("max-input-buffer", "DFLOCKD_MAX_INPUT_BUFFER", "66050"),
        ("max-pending-output", "DFLOCKD_MAX_PENDING_OUTPUT", "0"),
        ("max-output-buffer", "DFLOCKD_MAX_OUTPUT_BUFFER", "65536"),
        ("max-total-output", "DFLOCKD_MAX_TOTAL_OUTPUT", "1048575"),
        ("accept-batch", "DFLOCKD_ACCEPT_BATCH", "0"),
        ("cpu", "DFLOCKD_CPU", "-1"),
        ("cpu", "DFLOCKD_CPU", "4294967296"),
        ("auto-release-on-disconnect", "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "maybe"),
        ("debug", "DFLOCKD_DEBUG", "on"),
        ("busy-poll", "DFLOCKD_BUSY_POLL", "2"),
    ];

    /// Every seconds setting, for the upper bound.
    #[rustfmt::skip]
    const SECONDS_FLAGS: &[(&str, &str)] = &[
        ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S"),
        ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S"),
        ("gc-interval", "DFLOCKD_GC_INTERVAL_S"),
        ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S"),
        ("read-timeout", "DFLOCKD_READ_TIMEOUT_S"),
        ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S"),
        ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S"),
        ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S"),
    ];

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn with(content: &[u8]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "dflockd-config-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, content).expect("temporary directory is writable");
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("temporary paths are UTF-8 here")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn token(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
        config(args, env)
            .auth_token
            .map(|secret| secret.expose().to_owned())
    }

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn tables_cover_every_setting() {
        let mut tested: Vec<&str> = CASES.iter().map(|case| case.0).collect();
        tested.extend(SWITCHES.iter().map(|switch| switch.0));
        tested.extend(["tls-cert", "tls-key", "auth-token", "auth-token-file"]);
        tested.sort_unstable();
        let mut all: Vec<&str> = SETTINGS.iter().map(|setting| setting.flag).collect();
        all.sort_unstable();
        assert_eq!(tested, all);
        for (flag, env, ..) in CASES {
            let setting = SETTINGS
                .iter()
                .find(|setting| setting.flag == *flag)
                .expect("listed above");
            assert_eq!(setting.env, *env, "--{flag}");
        }
    }

    #[test]
    fn negated_flags_are_named_after_their_switch() {
        for setting in SETTINGS {
            if let Some(negated) = setting.negated {
                assert_eq!(negated, format!("no-{}", setting.flag));
            }
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let defaults = Config::default();
        for (flag, _, default, ..) in CASES {
            assert_eq!(field(&defaults, flag), *default, "--{flag}");
        }
        for (flag, _, _, default) in SWITCHES {
            assert_eq!(field(&defaults, flag), default.to_string(), "--{flag}");
        }
        assert!(defaults.tls.is_none());
        assert!(defaults.auth_token.is_none());
        assert_eq!(defaults.bind_address(), "127.0.0.1:6388");
    }

    #[test]
    fn no_arguments_and_no_environment_give_the_defaults_without_warnings() {
        let loaded = load(&[], &[]).expect("defaults are valid");
        assert!(loaded.warnings.is_empty());
        let defaults = Config::default();
        for (flag, ..) in CASES {
            assert_eq!(
                field(&loaded.config, flag),
                field(&defaults, flag),
                "--{flag}"
            );
        }
    }

    #[test]
    fn every_flag_takes_a_separate_or_attached_value() {
        for (flag, _, _, value, _) in CASES {
            let separate = config(&[&format!("--{flag}"), value], &[]);
            assert_eq!(field(&separate, flag), *value, "--{flag} {value}");
            let attached = config(&[&format!("--{flag}={value}")], &[]);
            assert_eq!(field(&attached, flag), *value, "--{flag}={value}");
        }
    }

    #[test]
    fn every_variable_sets_its_setting() {
        for (flag, env, _, _, value) in CASES {
            assert_eq!(
                field(&config(&[], &[(env, value)]), flag),
                *value,
                "{env}={value}"
            );
        }
    }

    #[test]
    fn an_explicit_flag_beats_the_variable() {
        for (flag, env, _, flag_value, env_value) in CASES {
            let both = config(&[&format!("--{flag}={flag_value}")], &[(env, env_value)]);
            assert_eq!(field(&both, flag), *flag_value, "--{flag} against {env}");
        }
    }

    #[test]
    fn the_last_occurrence_of_a_flag_wins() {
        assert_eq!(config(&["--port", "1", "--port=2"], &[]).port, 2);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|setting| setting.env).collect();
        names.extend(SETTINGS.iter().filter_map(|setting| setting.deprecated_env));
        let empty: Vec<(&str, &str)> = names.iter().map(|name| (*name, "")).collect();
        let loaded = load(&[], &empty).expect("empty variables are ignored");
        assert!(loaded.warnings.is_empty());
        let defaults = Config::default();
        for (flag, ..) in CASES {
            assert_eq!(
                field(&loaded.config, flag),
                field(&defaults, flag),
                "--{flag}"
            );
        }
        for (flag, ..) in SWITCHES {
            assert_eq!(
                field(&loaded.config, flag),
                field(&defaults, flag),
                "--{flag}"
            );
        }
        assert!(loaded.config.tls.is_none());
        assert!(loaded.config.auth_token.is_none());
    }

    #[test]
    fn bad_values_are_errors_naming_their_variable_or_flag() {
        for (flag, env, bad) in BAD_VALUES {
            let (origin, problem) = invalid(&[], &[(env, bad)]);
            assert_eq!(origin, Origin::Env(env), "{env}={bad}");
            let message = ConfigError::Invalid { origin, problem }.to_string();
            assert!(message.contains(env), "{message}");

            let (origin, _) = invalid(&[&format!("--{flag}={bad}")], &[]);
            assert_eq!(origin, Origin::Flag(flag), "--{flag}={bad}");
        }
    }

    #[test]
    fn a_flag_shadows_a_bad_variable() {
        // The variable is never consulted, so its value is never parsed.
        assert_eq!(
            config(&["--port", "1"], &[("DFLOCKD_PORT", "nope")]).port,
            1
        );
    }

    #[test]
    fn seconds_are_bounded() {
        for (flag, env) in SECONDS_FLAGS {
            let at_bound = config(&[&format!("--{flag}={MAX_SECONDS}")], &[]);
            assert_eq!(field(&at_bound, flag), MAX_SECONDS.to_string());
            let over = (MAX_SECONDS + 1).to_string();
            assert_eq!(
                invalid(&[&format!("--{flag}"), &over], &[]).0,
                Origin::Flag(flag)
            );
            assert_eq!(invalid(&[], &[(env, &over)]).0, Origin::Env(env));
        }
    }

    #[test]
    fn switches_accept_every_flag_form() {
        for (flag, negated, _, default) in SWITCHES {
            let value = |args: &[&str]| config(args, &[]);
            assert_eq!(field(&value(&[]), flag), default.to_string());
            assert_eq!(field(&value(&[&format!("--{flag}")]), flag), "true");
            assert_eq!(field(&value(&[&format!("--{flag}=true")]), flag), "true");
            assert_eq!(field(&value(&[&format!("--{flag}=false")]), flag), "false");
            assert_eq!(field(&value(&[&format!("--{negated}")]), flag), "false");
            assert_eq!(
                field(
                    &value(&[&format!("--{flag}"), &format!("--{negated}")]),
                    flag
                ),
                "false"
            );
            assert_eq!(
                field(
                    &value(&[&format!("--{negated}"), &format!("--{flag}")]),
                    flag
                ),
                "true"
            );
        }
    }

    #[test]
    fn a_switch_value_must_be_attached() {
        let error = cli_error(&["--debug", "false"]);
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn negated_flags_beat_the_variable() {
        let auto = config(
            &["--no-auto-release-on-disconnect"],
            &[("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "1")],
        );
        assert!(!auto.auto_release_on_disconnect);
        let (origin, _) = invalid(&["--auto-release-on-disconnect=perhaps"], &[]);
        assert_eq!(origin, Origin::Flag("auto-release-on-disconnect"));
    }

    #[test]
    fn boolean_variables_accept_the_documented_spellings() {
        for (flag, _, env, _) in SWITCHES {
            for (text, expected) in [
                ("1", true),
                ("yes", true),
                ("TRUE", true),
                ("Yes", true),
                ("0", false),
                ("no", false),
                ("False", false),
                ("NO", false),
            ] {
                assert_eq!(
                    field(&config(&[], &[(env, text)]), flag),
                    expected.to_string(),
                    "{env}={text}"
                );
            }
            for text in ["on", "off", "y", "t", " true"] {
                assert_eq!(
                    invalid(&[], &[(env, text)]).0,
                    Origin::Env(env),
                    "{env}={text}"
                );
            }
        }
    }

    #[test]
    fn deprecated_gc_variables_work_with_a_warning() {
        let loaded = load(
            &[],
            &[
                ("DFLOCKD_GC_LOOP_SLEEP", "7"),
                ("DFLOCKD_GC_MAX_UNUSED_TIME", "8"),
            ],
        )
        .expect("aliases are valid");
        assert_eq!(loaded.config.gc_interval_s, 7);
        assert_eq!(loaded.config.gc_max_idle_s, 8);
        assert_eq!(loaded.warnings.len(), 2);
        assert!(loaded.warnings[0].contains("DFLOCKD_GC_LOOP_SLEEP is deprecated"));
        assert!(loaded.warnings[0].contains("DFLOCKD_GC_INTERVAL_S"));
        assert!(loaded.warnings[1].contains("DFLOCKD_GC_MAX_UNUSED_TIME is deprecated"));
        assert!(
            loaded
                .warnings
                .iter()
                .all(|warning| !warning.contains('\n'))
        );
    }

    #[test]
    fn canonical_gc_variables_and_flags_beat_the_aliases_silently() {
        let env = [
            ("DFLOCKD_GC_INTERVAL_S", "2"),
            ("DFLOCKD_GC_LOOP_SLEEP", "7"),
            ("DFLOCKD_GC_MAX_UNUSED_TIME", "8"),
        ];
        let loaded = load(&["--gc-max-idle", "3"], &env).expect("valid");
        assert_eq!(loaded.config.gc_interval_s, 2);
        assert_eq!(loaded.config.gc_max_idle_s, 3);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn an_empty_canonical_gc_variable_falls_back_to_the_alias() {
        let loaded = load(
            &[],
            &[
                ("DFLOCKD_GC_INTERVAL_S", ""),
                ("DFLOCKD_GC_LOOP_SLEEP", "9"),
            ],
        )
        .expect("valid");
        assert_eq!(loaded.config.gc_interval_s, 9);
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn a_bad_alias_value_names_the_alias() {
        assert_eq!(
            invalid(&[], &[("DFLOCKD_GC_LOOP_SLEEP", "0")]).0,
            Origin::Env("DFLOCKD_GC_LOOP_SLEEP")
        );
    }

    #[test]
    fn auth_token_sources_follow_the_documented_precedence() {
        let cli_file = TempFile::with(b"from-cli-file");
        let env_file = TempFile::with(b"from-env-file");
        let all_env = [
            ("DFLOCKD_AUTH_TOKEN", "from-env"),
            ("DFLOCKD_AUTH_TOKEN_FILE", env_file.path()),
        ];
        let cli_token = ["--auth-token", "from-cli"];
        let cli_file_args = ["--auth-token-file", cli_file.path()];

        let both_flags = [cli_token.as_slice(), cli_file_args.as_slice()].concat();
        assert_eq!(token(&both_flags, &all_env).as_deref(), Some("from-cli"));
        assert_eq!(
            token(&cli_file_args, &all_env).as_deref(),
            Some("from-cli-file")
        );
        assert_eq!(token(&[], &all_env).as_deref(), Some("from-env"));
        assert_eq!(token(&[], &all_env[1..]).as_deref(), Some("from-env-file"));
        assert_eq!(token(&[], &[]), None);
    }

    #[test]
    fn explicitly_empty_or_blank_token_flags_are_errors() {
        let file = TempFile::with(b"from-file");
        let env = [("DFLOCKD_AUTH_TOKEN", "from-env")];
        for (args, flag) in [
            (&["--auth-token="][..], "auth-token"),
            (&["--auth-token", " \t "], "auth-token"),
            (
                &["--auth-token=", "--auth-token-file", file.path()],
                "auth-token",
            ),
            (&["--auth-token-file="], "auth-token-file"),
        ] {
            let (origin, problem) = invalid(args, &env);
            assert_eq!(origin, Origin::Flag(flag), "{args:?}");
            assert!(
                problem.contains("empty") && problem.contains("without authentication"),
                "{args:?}: {problem}"
            );
        }
    }

    #[test]
    fn empty_token_variables_are_unset_and_blank_ones_are_errors() {
        assert_eq!(token(&[], &[("DFLOCKD_AUTH_TOKEN", "")]), None);
        let (origin, problem) = invalid(&[], &[("DFLOCKD_AUTH_TOKEN", "  ")]);
        assert_eq!(origin, Origin::Env("DFLOCKD_AUTH_TOKEN"));
        assert!(problem.contains("empty or blank"), "{problem}");
    }

    #[test]
    fn a_read_timeout_below_the_client_ping_interval_is_a_warning() {
        for seconds in ["1", "15"] {
            let loaded = load(&["--read-timeout", seconds], &[]).expect("valid");
            assert_eq!(loaded.warnings.len(), 1, "{seconds}");
            assert!(
                loaded.warnings[0].contains(&format!("read timeout of {seconds}s is below 16s")),
                "{:?}",
                loaded.warnings
            );
        }
        let env = [("DFLOCKD_READ_TIMEOUT_S", "10")];
        assert_eq!(load(&[], &env).expect("valid").warnings.len(), 1);
        assert!(
            load(&["--read-timeout", "16"], &[])
                .expect("valid")
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn variables_of_either_program_are_known_and_others_are_reported() {
        let mut known: Vec<&str> = server_variables().collect();
        known.extend(env::DFLOCKCTL_VARIABLES);
        assert!(unknown_variable_warnings(known.iter().copied()).is_empty());
        assert_eq!(
            unknown_variable_warnings(["DFLOCKD_DEFAULT_LEASE_TTL", "DFLOCKD_MAXLOCKS"]),
            [
                "DFLOCKD_DEFAULT_LEASE_TTL is not a dflockd setting and is ignored; \
                 did you mean DFLOCKD_DEFAULT_LEASE_TTL_S?",
                "DFLOCKD_MAXLOCKS is not a dflockd setting and is ignored; \
                 did you mean DFLOCKD_MAX_LOCKS?",
            ]
        );
    }

    #[test]
    fn auth_tokens_are_trimmed() {
        assert_eq!(
            token(&["--auth-token", "  tok en \t"], &[]).as_deref(),
            Some("tok en")
        );
        assert_eq!(
            token(&[], &[("DFLOCKD_AUTH_TOKEN", " tok ")]).as_deref(),
            Some("tok")
        );
        let file = TempFile::with(b"\n  s3cret\r\n\n");
        assert_eq!(
            token(&["--auth-token-file", file.path()], &[]).as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn unusable_auth_tokens_are_errors_that_do_not_reveal_them() {
        let empty = TempFile::with(b"");
        let blank = TempFile::with(b" \r\n\t\n");
        let broken = TempFile::with(b"first-half\r\nsecond-half\n");
        let binary = TempFile::with(b"\xff\xfe-half");
        let long = TempFile::with("x".repeat(MAX_AUTH_TOKEN_BYTES + 1).as_bytes());
        let missing = std::env::temp_dir().join("dflockd-config-no-such-token-file");
        let missing = missing.to_str().expect("UTF-8 path");
        let failures = [
            (vec!["--auth-token", "   "], Origin::Flag("auth-token")),
            (
                vec!["--auth-token", "first-half\nsecond-half"],
                Origin::Flag("auth-token"),
            ),
            (
                vec!["--auth-token", "first-half\rsecond-half"],
                Origin::Flag("auth-token"),
            ),
            (
                vec!["--auth-token-file", empty.path()],
                Origin::Flag("auth-token-file"),
            ),
            (
                vec!["--auth-token-file", blank.path()],
                Origin::Flag("auth-token-file"),
            ),
            (
                vec!["--auth-token-file", broken.path()],
                Origin::Flag("auth-token-file"),
            ),
            (
                vec!["--auth-token-file", binary.path()],
                Origin::Flag("auth-token-file"),
            ),
            (
                vec!["--auth-token-file", long.path()],
                Origin::Flag("auth-token-file"),
            ),
            (
                vec!["--auth-token-file", missing],
                Origin::Flag("auth-token-file"),
            ),
        ];
        for (args, expected) in failures {
            let (origin, problem) = invalid(&args, &[]);
            assert_eq!(origin, expected, "{args:?}");
            assert!(!problem.contains("half"), "{problem}");
        }
        let (origin, _) = invalid(&[], &[("DFLOCKD_AUTH_TOKEN_FILE", missing)]);
        assert_eq!(origin, Origin::Env("DFLOCKD_AUTH_TOKEN_FILE"));
    }

    #[test]
    fn the_longest_sendable_token_is_accepted() {
        let longest = "x".repeat(MAX_AUTH_TOKEN_BYTES);
        assert_eq!(
            token(&["--auth-token", &longest], &[]).map(|token| token.len()),
            Some(MAX_AUTH_TOKEN_BYTES)
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let config = config(&["--auth-token", "hunter2-secret"], &[]);
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert_eq!(
            config.auth_token.as_ref().map(Secret::expose),
            Some("hunter2-secret")
        );
    }

    #[test]
    fn tls_files_are_configured_together() {
        let tls = config(
            &["--tls-cert", "cert.pem"],
            &[("DFLOCKD_TLS_KEY", "key.pem")],
        )
        .tls;
        assert_eq!(
            tls,
            Some(TlsFiles {
                cert: "cert.pem".into(),
                key: "key.pem".into()
            })
        );
        let tls = config(
            &["--tls-cert=a.pem", "--tls-key=b.pem"],
            &[("DFLOCKD_TLS_CERT", "c.pem")],
        )
        .tls;
        assert_eq!(
            tls,
            Some(TlsFiles {
                cert: "a.pem".into(),
                key: "b.pem".into()
            })
        );

        let message = conflict(&["--tls-cert", "cert.pem"], &[]);
        assert!(
            message.contains("--tls-key") && message.contains("DFLOCKD_TLS_KEY"),
            "{message}"
        );
        let message = conflict(&[], &[("DFLOCKD_TLS_KEY", "key.pem")]);
        assert!(
            message.contains("DFLOCKD_TLS_KEY") && message.contains("--tls-cert"),
            "{message}"
        );
        assert_eq!(invalid(&["--tls-cert="], &[]).0, Origin::Flag("tls-cert"));
    }

    #[test]
    fn output_limits_must_be_ordered() {
        let message = conflict(&["--max-output-buffer", "100000"], &[]);
        assert!(
            message.contains("--max-output-buffer") && message.contains("262144"),
            "{message}"
        );
        let message = conflict(&[], &[("DFLOCKD_MAX_PENDING_OUTPUT", "5000000")]);
        assert!(message.contains("DFLOCKD_MAX_PENDING_OUTPUT"), "{message}");
        let equal = config(
            &["--max-pending-output=100000", "--max-output-buffer=100000"],
            &[],
        );
        assert_eq!(
            (equal.max_pending_output, equal.max_output_buffer),
            (100_000, 100_000)
        );
    }

    #[test]
    fn buffer_minimums_are_inclusive() {
        assert_eq!(
            config(&["--max-input-buffer=66051"], &[]).max_input_buffer,
            66_051
        );
        let limits = config(
            &["--max-pending-output=1", "--max-output-buffer=65537"],
            &[],
        );
        assert_eq!(
            (limits.max_pending_output, limits.max_output_buffer),
            (1, 65_537)
        );
    }

    #[test]
    fn bind_address_brackets_ipv6_literals() {
        let address = |host: &str| config(&["--host", host, "--port", "6388"], &[]).bind_address();
        assert_eq!(address("::1"), "[::1]:6388");
        assert_eq!(address("[::1]"), "[::1]:6388");
        assert_eq!(address("fe80::1%eth0"), "[fe80::1%eth0]:6388");
        assert_eq!(address("0.0.0.0"), "0.0.0.0:6388");
        assert_eq!(address("localhost"), "localhost:6388");
        assert_eq!(config(&["--host=[::]"], &[]).host, "::");
    }

    #[test]
    fn http_flags_are_accepted_and_ignored_with_a_warning() {
        let loaded = load(
            &["--http-port", "8080", "--http-cors-allowed-origins=*"],
            &[("DFLOCKD_HTTP_PORT", "x")],
        )
        .expect("HTTP flags are accepted");
        assert_eq!(loaded.warnings.len(), 2);
        assert!(loaded.warnings[0].starts_with("--http-port "));
        assert!(loaded.warnings[1].starts_with("--http-cors-allowed-origins "));
        assert_eq!(loaded.config.port, 6388);
    }

    #[test]
    fn help_and_version_exit_zero_and_usage_errors_exit_two() {
        for (args, kind, code) in [
            (&["--help"][..], clap::error::ErrorKind::DisplayHelp, 0),
            (&["-h"][..], clap::error::ErrorKind::DisplayHelp, 0),
            (
                &["--version"][..],
                clap::error::ErrorKind::DisplayVersion,
                0,
            ),
            (
                &["--no-such-flag"][..],
                clap::error::ErrorKind::UnknownArgument,
                2,
            ),
            (
                &["-port", "1"][..],
                clap::error::ErrorKind::UnknownArgument,
                2,
            ),
            (&["--port"][..], clap::error::ErrorKind::InvalidValue, 2),
        ] {
            let error = cli_error(args);
            assert_eq!((error.kind(), error.exit_code()), (kind, code), "{args:?}");
        }
        assert!(
            cli_error(&["--version"])
                .to_string()
                .contains(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn help_names_every_variable_and_hides_the_http_flags() {
        let help = command().render_help().to_string();
        for setting in SETTINGS {
            assert!(
                help.contains(&format!("--{} ", setting.flag))
                    || help.contains(&format!("--{}[", setting.flag))
            );
            assert!(
                help.contains(&format!("[env: {}", setting.env)),
                "{}",
                setting.env
            );
            if let Some(default) = setting.default {
                assert!(help.contains(&format!("[default: {default}]")));
            }
        }
        assert!(
            help.contains("DFLOCKD_GC_LOOP_SLEEP") && help.contains("DFLOCKD_GC_MAX_UNUSED_TIME")
        );
        assert!(help.contains("--no-auto-release-on-disconnect"));
        assert!(!help.contains("--http-port"));
    }

    #[test]
    fn print_man_renders_the_manual_whatever_the_other_settings() {
        let env = [("DFLOCKD_PORT", "not a port")];
        let page = match load(&["--print-man", "--max-locks=0"], &env) {
            Err(ConfigError::ManPage(page)) => page,
            other => panic!("--print-man should give the man page, got {other:?}"),
        };
        // The title and the flags are checked on the binary's output (tests/it/config.rs); here,
        // that the page comes from the settings table, variables included.
        assert!(page.contains("DFLOCKD_MAX_LOCKS"), "{page}");
        assert!(
            !page.contains(r"\-\-http\-port"),
            "hidden flags stay hidden: {page}"
        );
    }

    #[test]
    fn config_errors_display_their_origin() {
        let error = load(&[], &[("DFLOCKD_PORT", "x")]).expect_err("invalid port");
        assert!(
            error
                .to_string()
                .starts_with("environment variable DFLOCKD_PORT: "),
            "{error}"
        );
        let error = load(&["--port=x"], &[]).expect_err("invalid port");
        assert!(error.to_string().starts_with("--port: "), "{error}");
    }
}
