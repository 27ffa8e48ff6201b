//! The table of settings: each flag's name, environment variable, default and help line, written down
//! once and used both to build the command line (`--help`, the man page) and to resolve values.

use std::fmt::Write as _;
use std::iter;

use clap::{Arg, ArgAction, Command};
use clap_mangen::Man;

use super::env;

/// One configurable setting: how it is named on the command line and in the environment, and its default.
pub(super) struct Setting {
    /// Long flag name without dashes; also the clap argument id.
    pub(super) flag: &'static str,
    /// Variable consulted when the flag is absent.
    pub(super) env: &'static str,
    /// Older variable consulted after `env`; using it produces a warning.
    pub(super) deprecated_env: Option<&'static str>,
    /// Placeholder shown in `--help`.
    pub(super) value_name: &'static str,
    /// Default as it would be typed, parsed like any other value; `None` = unset.
    pub(super) default: Option<&'static str>,
    /// One-line description for `--help`.
    pub(super) help: &'static str,
    /// For a boolean switch, the name of its negated flag (`no-debug`); `None` for settings taking a value.
    pub(super) negated: Option<&'static str>,
}

impl Setting {
    /// A setting taking a value, with no deprecated variable.
    pub(super) const fn value(
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
    pub(super) const fn switch(
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
    pub(super) const fn deprecated_env(self, alias: &'static str) -> Self {
        Self {
            deprecated_env: Some(alias),
            ..self
        }
    }

    /// Adds this setting's arguments to `command`.
    pub(super) fn add_to(&self, command: Command) -> Command {
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
    pub(super) fn help_line(&self) -> String {
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

pub(super) const HOST: Setting = Setting::value(
    "host",
    "DFLOCKD_HOST",
    "HOST",
    Some("127.0.0.1"),
    "Address to bind: host name or IP literal (IPv6 without brackets)",
);
pub(super) const PORT: Setting = Setting::value(
    "port",
    "DFLOCKD_PORT",
    "PORT",
    Some("6388"),
    "TCP port to listen on; 0 = ephemeral",
);
pub(super) const TCP: Setting = Setting::switch(
    "tcp",
    "no-tcp",
    "DFLOCKD_TCP",
    "true",
    "Serve TCP on --host/--port; --no-tcp serves only the Unix socket",
);
pub(super) const UNIX_SOCKET: Setting = Setting::value(
    "unix-socket",
    "DFLOCKD_UNIX_SOCKET",
    "PATH",
    None,
    "Also serve on a Unix stream socket at this path (same protocol and\nlimits; no TLS); a stale socket file is replaced, a live one is an error",
);
pub(super) const UNIX_SOCKET_MODE: Setting = Setting::value(
    "unix-socket-mode",
    "DFLOCKD_UNIX_SOCKET_MODE",
    "OCTAL",
    Some("0660"),
    "Permission bits of the Unix socket file (octal, at most 0777)",
);
pub(super) const UNIX_ALLOW_UID: Setting = Setting::value(
    "unix-allow-uid",
    "DFLOCKD_UNIX_ALLOW_UID",
    "LIST",
    None,
    "Admit only Unix-socket peers with one of these user ids (comma-separated;\nwith --unix-allow-gid, a match in either list admits)",
);
pub(super) const UNIX_ALLOW_GID: Setting = Setting::value(
    "unix-allow-gid",
    "DFLOCKD_UNIX_ALLOW_GID",
    "LIST",
    None,
    "Admit only Unix-socket peers whose primary group id is in this\ncomma-separated list",
);
pub(super) const UNIX_PEER_AUTH: Setting = Setting::switch(
    "unix-peer-auth",
    "no-unix-peer-auth",
    "DFLOCKD_UNIX_PEER_AUTH",
    "false",
    "Unix-socket peers (admitted by the allow-lists) need no `auth` even\nwhen a token is configured",
);
pub(super) const DEFAULT_LEASE_TTL: Setting = Setting::value(
    "default-lease-ttl",
    "DFLOCKD_DEFAULT_LEASE_TTL_S",
    "SECONDS",
    Some("33"),
    "Lease for acquires that do not name one (> 0)",
);
pub(super) const LEASE_SWEEP_INTERVAL: Setting = Setting::value(
    "lease-sweep-interval",
    "DFLOCKD_LEASE_SWEEP_INTERVAL_S",
    "SECONDS",
    Some("1"),
    "Accepted for compatibility; no effect, leases expire on exact timers (> 0)",
);
pub(super) const GC_INTERVAL: Setting = Setting::value(
    "gc-interval",
    "DFLOCKD_GC_INTERVAL_S",
    "SECONDS",
    Some("5"),
    "Interval between passes that drop idle lock and semaphore entries (> 0)",
)
.deprecated_env("DFLOCKD_GC_LOOP_SLEEP");
pub(super) const GC_MAX_IDLE: Setting = Setting::value(
    "gc-max-idle",
    "DFLOCKD_GC_MAX_IDLE_S",
    "SECONDS",
    Some("60"),
    "Idle time after which an unused entry is dropped; 0 = at the next pass",
)
.deprecated_env("DFLOCKD_GC_MAX_UNUSED_TIME");
pub(super) const MAX_LOCKS: Setting = Setting::value(
    "max-locks",
    "DFLOCKD_MAX_LOCKS",
    "N",
    Some("1024"),
    "Maximum lock and semaphore entries together (> 0)",
);
pub(super) const MAX_CONNECTIONS: Setting = Setting::value(
    "max-connections",
    "DFLOCKD_MAX_CONNECTIONS",
    "N",
    Some("0"),
    "Maximum open connections; 0 = unlimited",
);
pub(super) const MAX_CONNECTIONS_PER_IP: Setting = Setting::value(
    "max-connections-per-ip",
    "DFLOCKD_MAX_CONNECTIONS_PER_IP",
    "N",
    Some("0"),
    "Maximum open connections per remote IP address; 0 = unlimited",
);
pub(super) const MAX_WAITERS: Setting = Setting::value(
    "max-waiters",
    "DFLOCKD_MAX_WAITERS",
    "N",
    Some("0"),
    "Maximum queued waiters per key; 0 = unlimited",
);
pub(super) const LOCK_DELAY: Setting = Setting::value(
    "lock-delay",
    "DFLOCKD_LOCK_DELAY_MS",
    "MS",
    Some("0"),
    "After a holder is lost uncleanly (lease expiry, disconnect), its slot is not granted again for MS milliseconds; 0 = off",
);
pub(super) const LOCK_EVENTS: Setting = Setting::switch(
    "lock-events",
    "no-lock-events",
    "DFLOCKD_LOCK_EVENTS",
    "false",
    "Publish lock and semaphore events (granted, released, expired, ...) on the reserved signal channels $lock.<event>.<key> and $sem.<event>.<key>; clients may then not signal on $ channels, and patterns starting with a wildcard do not match them",
);
pub(super) const MAX_SUBSCRIPTIONS: Setting = Setting::value(
    "max-subscriptions",
    "DFLOCKD_MAX_SUBSCRIPTIONS",
    "N",
    Some("0"),
    "Maximum signal subscriptions per connection; 0 = unlimited",
);
pub(super) const MAX_SUBSCRIPTION_BYTES: Setting = Setting::value(
    "max-subscription-bytes",
    "DFLOCKD_MAX_SUBSCRIPTION_BYTES",
    "BYTES",
    Some("1048576"),
    "Maximum bytes of patterns and group names one connection may subscribe to; 0 = unlimited",
);
pub(super) const MAX_TOTAL_SUBSCRIPTIONS: Setting = Setting::value(
    "max-total-subscriptions",
    "DFLOCKD_MAX_TOTAL_SUBSCRIPTIONS",
    "N",
    Some("1000000"),
    "Maximum signal subscriptions of all connections together; 0 = unlimited",
);
pub(super) const READ_TIMEOUT: Setting = Setting::value(
    "read-timeout",
    "DFLOCKD_READ_TIMEOUT_S",
    "SECONDS",
    Some("23"),
    "Deadline for receiving each request line (> 0)",
);
pub(super) const WRITE_TIMEOUT: Setting = Setting::value(
    "write-timeout",
    "DFLOCKD_WRITE_TIMEOUT_S",
    "SECONDS",
    Some("5"),
    "Deadline for each write; 0 = none",
);
pub(super) const SHUTDOWN_TIMEOUT: Setting = Setting::value(
    "shutdown-timeout",
    "DFLOCKD_SHUTDOWN_TIMEOUT_S",
    "SECONDS",
    Some("30"),
    "Time connections get to end after SIGINT/SIGTERM; 0 = wait forever",
);
pub(super) const AUTO_RELEASE_ON_DISCONNECT: Setting = Setting::switch(
    "auto-release-on-disconnect",
    "no-auto-release-on-disconnect",
    "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT",
    "true",
    "Release a client's locks and slots when it disconnects",
);
pub(super) const TLS_CERT: Setting = Setting::value(
    "tls-cert",
    "DFLOCKD_TLS_CERT",
    "PATH",
    None,
    "PEM certificate chain; TLS is on when this and --tls-key are set",
);
pub(super) const TLS_KEY: Setting = Setting::value(
    "tls-key",
    "DFLOCKD_TLS_KEY",
    "PATH",
    None,
    "PEM private key for --tls-cert",
);
pub(super) const TLS_HANDSHAKE_TIMEOUT: Setting = Setting::value(
    "tls-handshake-timeout",
    "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S",
    "SECONDS",
    Some("10"),
    "Deadline for completing a TLS handshake (> 0)",
);
pub(super) const AUTH_TOKEN: Setting = Setting::value(
    "auth-token",
    "DFLOCKD_AUTH_TOKEN",
    "TOKEN",
    None,
    "Shared secret clients must send with `auth` (visible in process lists:\nprefer --auth-token-file)",
);
pub(super) const AUTH_TOKEN_FILE: Setting = Setting::value(
    "auth-token-file",
    "DFLOCKD_AUTH_TOKEN_FILE",
    "PATH",
    None,
    "File holding the shared secret (surrounding white space is ignored)",
);
pub(super) const ADMIN_TOKEN: Setting = Setting::value(
    "admin-token",
    "DFLOCKD_ADMIN_TOKEN",
    "TOKEN",
    None,
    "Secret whose `auth` makes a connection an admin, allowed to `evict`\n(must differ from --auth-token; visible in process lists: prefer\n--admin-token-file)",
);
pub(super) const ADMIN_TOKEN_FILE: Setting = Setting::value(
    "admin-token-file",
    "DFLOCKD_ADMIN_TOKEN_FILE",
    "PATH",
    None,
    "File holding the admin secret (surrounding white space is ignored;\nread again on SIGHUP)",
);
pub(super) const DEBUG: Setting = Setting::switch(
    "debug",
    "no-debug",
    "DFLOCKD_DEBUG",
    "false",
    "Log at debug level",
);
pub(super) const METRICS_ADDR: Setting = Setting::value(
    "metrics-addr",
    "DFLOCKD_METRICS_ADDR",
    "HOST:PORT",
    None,
    "Serve /metrics, /healthz and /readyz over plain HTTP here (off when unset; keep it on loopback or a private network)",
);
pub(super) const METRICS_MAX_CONNECTIONS: Setting = Setting::value(
    "metrics-max-connections",
    "DFLOCKD_METRICS_MAX_CONNECTIONS",
    "N",
    Some("64"),
    "Open HTTP connections the monitoring endpoint allows; more are closed at once (>= 1)",
);
pub(super) const LOG_FORMAT: Setting = Setting::value(
    "log-format",
    "DFLOCKD_LOG_FORMAT",
    "FORMAT",
    Some("text"),
    "Log lines as `text` (time [LEVEL] message key=value...) or `json` (one object per line)",
);
pub(super) const LOG_CONNECTIONS: Setting = Setting::switch(
    "log-connections",
    "no-log-connections",
    "DFLOCKD_LOG_CONNECTIONS",
    "false",
    "Log each connection's open and close (peer, duration, close reason) at info level",
);
pub(super) const MAX_INPUT_BUFFER: Setting = Setting::value(
    "max-input-buffer",
    "DFLOCKD_MAX_INPUT_BUFFER",
    "BYTES",
    Some("131072"),
    "Unprocessed input a connection may buffer (>= 66051, the longest legal request)",
);
pub(super) const MAX_PENDING_OUTPUT: Setting = Setting::value(
    "max-pending-output",
    "DFLOCKD_MAX_PENDING_OUTPUT",
    "BYTES",
    Some("262144"),
    "Unsent output at which a connection's requests pause until it drains\nbelow half (> 0)",
);
pub(super) const MAX_OUTPUT_BUFFER: Setting = Setting::value(
    "max-output-buffer",
    "DFLOCKD_MAX_OUTPUT_BUFFER",
    "BYTES",
    Some("4194304"),
    "Unsent output past which a subscriber is dropped as a slow consumer\n(>= 65537 and >= --max-pending-output)",
);
pub(super) const MAX_TOTAL_OUTPUT: Setting = Setting::value(
    "max-total-output",
    "DFLOCKD_MAX_TOTAL_OUTPUT",
    "BYTES",
    Some("268435456"),
    "Unsent output of all connections together (a shared signal counted once)\npast which connections holding more than their share are paused, or\ndropped as slow consumers if subscribers (>= 1048576)",
);
pub(super) const ACCEPT_BATCH: Setting = Setting::value(
    "accept-batch",
    "DFLOCKD_ACCEPT_BATCH",
    "N",
    Some("64"),
    "Connections accepted per event-loop turn (>= 1)",
);
pub(super) const CPU: Setting = Setting::value(
    "cpu",
    "DFLOCKD_CPU",
    "CORE",
    None,
    "Pin the event loop to this CPU core index",
);
pub(super) const BUSY_POLL: Setting = Setting::switch(
    "busy-poll",
    "no-busy-poll",
    "DFLOCKD_BUSY_POLL",
    "false",
    "Poll without sleeping: lower latency, one core kept busy",
);

/// Every setting, in `--help` order.
pub(super) const SETTINGS: &[&Setting] = &[
    &HOST,
    &PORT,
    &TCP,
    &UNIX_SOCKET,
    &UNIX_SOCKET_MODE,
    &UNIX_ALLOW_UID,
    &UNIX_ALLOW_GID,
    &UNIX_PEER_AUTH,
    &DEFAULT_LEASE_TTL,
    &LEASE_SWEEP_INTERVAL,
    &GC_INTERVAL,
    &GC_MAX_IDLE,
    &MAX_LOCKS,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_IP,
    &MAX_WAITERS,
    &LOCK_DELAY,
    &LOCK_EVENTS,
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
    &ADMIN_TOKEN,
    &ADMIN_TOKEN_FILE,
    &DEBUG,
    &METRICS_ADDR,
    &METRICS_MAX_CONNECTIONS,
    &LOG_FORMAT,
    &LOG_CONNECTIONS,
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
pub(super) const IGNORED_HTTP_FLAGS: &[&str] = &[
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
pub(super) const PRINT_MAN: &str = "print-man";

pub(super) const ABOUT: &str =
    "Distributed lock server: FIFO locks with leases, semaphores and pub/sub signals over TCP";

pub(super) const AFTER_HELP: &str = "\
Each setting comes from its flag if given, else from its environment variable if set and
non-empty, else from its default. Boolean variables take 1/yes/true or 0/no/false (any case).
The --http-* flags of other dflockd servers are accepted and ignored: there is no HTTP API.";

/// The clap command: the CLI layer only, without defaults or environment, so that a value present in the
/// matches was given on the command line.
pub(super) fn command() -> Command {
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
pub(super) fn server_variables() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .flat_map(|setting| iter::once(setting.env).chain(setting.deprecated_env))
}

/// Warnings for the `DFLOCKD_*` names in `present` that neither the server nor `dflockctl` reads.
pub(super) fn unknown_variable_warnings<'a>(
    present: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let known: Vec<&str> = server_variables()
        .chain(env::DFLOCKCTL_VARIABLES.iter().copied())
        .collect();
    env::unknown_variable_warnings(present, &known)
}

/// The roff man page for `dflockd(1)`, from the same command definition as `--help`.
pub(super) fn man_page() -> String {
    let mut page = Vec::new();
    Man::new(command())
        .render(&mut page)
        .expect("writing to memory cannot fail");
    String::from_utf8(page).expect("clap_mangen writes UTF-8")
}
