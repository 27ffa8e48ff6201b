//! `dflockctl`: dflockd from the shell. Runs a command while holding a lock or a semaphore
//! slot (renewing it, and stopping the command if the lock is lost), shows server state and a
//! key's queue, checks and evicts holders, publishes and prints signals, and pings servers.
//!
//! It owns argument handling, process supervision and output formatting; every byte on the
//! wire goes through the crate's client library (`dflockd::client`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use std::{fs, io};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dflockd::client::{Client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, Error};
use dflockd::config;
use dflockd::protocol::MAX_SECONDS;

use crate::events::events;
use crate::inspect::{ping, stats};
use crate::run::{RunArgs, run};
use crate::safety::{check, evict, queue};
use crate::signals::{emit, listen};
use crate::top::top;

mod events;
mod inspect;
mod run;
mod safety;
mod signals;
#[cfg(test)]
mod tests;
mod top;

/// Exit statuses by class, after sysexits(3) where one fits: the only place they are
/// defined. `--help` shows them from [`exit_status_help`], the README has the same table.
mod exit {
    /// The command line or the settings cannot be used (also clap's own usage errors).
    pub const USAGE: u8 = 64;
    /// The server refused the request itself (a limit, a mismatch, an invalid pattern).
    pub const REFUSED: u8 = 65;
    /// A server could not be reached or used: connection, TLS, authentication, draining.
    pub const UNAVAILABLE: u8 = 69;
    /// Anything unexpected: a protocol violation, a local system call failing.
    pub const SOFTWARE: u8 = 70;
    /// `run`: not acquired within `--timeout` (unless `--conflict-exit-code` says otherwise).
    pub const NOT_ACQUIRED: u8 = 75;
    /// `run`: the lock was lost while the command ran (or while it was held).
    pub const LOST: u8 = 76;
    /// `run`: the command exists but could not be started.
    pub const CANNOT_EXECUTE: u8 = 126;
    /// `run`: the command was not found.
    pub const NOT_FOUND: u8 = 127;
    /// `check`: the token or fence is not a current holder's.
    pub const STALE: u8 = 1;
}

/// The "Exit status" table at the end of `--help`.
fn exit_status_help() -> String {
    let rows = [
        ("0".to_owned(), "success"),
        (
            "1-255".to_owned(),
            "run: the command's own exit status (128+N when signal N ended it)",
        ),
        (
            exit::STALE.to_string(),
            "check: the token or fence is stale (not a current holder's)",
        ),
        (
            exit::USAGE.to_string(),
            "invalid command line or settings (unreadable token or CA file, bad payload, ...)",
        ),
        (
            exit::REFUSED.to_string(),
            "the server refused the request (error_limit_mismatch, error_max_locks,\n\
             error_max_waiters; listen: an invalid pattern; evict: not an admin)",
        ),
        (
            exit::UNAVAILABLE.to_string(),
            "a server could not be reached or used (connection, TLS, authentication,\n\
             error_draining); listen: the connection ended",
        ),
        (
            exit::SOFTWARE.to_string(),
            "an unexpected failure (a protocol violation, a failing system call)",
        ),
        (
            exit::NOT_ACQUIRED.to_string(),
            "run: the lock was not acquired within --timeout (see --conflict-exit-code)",
        ),
        (
            exit::LOST.to_string(),
            "run: the lock was lost; the command was terminated",
        ),
        (
            exit::CANNOT_EXECUTE.to_string(),
            "run: the command could not be started",
        ),
        (
            exit::NOT_FOUND.to_string(),
            "run: the command was not found",
        ),
        (
            "128+N".to_owned(),
            "run: signal N arrived while waiting in the queue",
        ),
    ];
    let mut help = String::from("Exit status:");
    for (code, text) in rows {
        let text = text.replace('\n', "\n           ");
        let _ = write!(help, "\n  {code:<8} {text}");
    }
    help
}

/// Command line of `dflockctl`.
#[derive(Parser, Debug)]
#[command(
    name = "dflockctl",
    version,
    about = "Use dflockd locks, semaphores and signals from the shell",
    after_help = exit_status_help()
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    command: Cmd,
}

/// How to reach the servers; every subcommand takes these.
#[derive(Args, Debug)]
#[command(next_help_heading = "Connection options")]
struct ConnectionArgs {
    /// Comma-separated server addresses: host:port, or unix:PATH for a server's Unix socket
    /// (the two mix in one list). Keys are sharded over them in this order, as every dflockd
    /// client does; signals and emit use the first.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_SERVERS",
        value_name = "HOST:PORT|unix:PATH,...",
        value_delimiter = ',',
        default_value = "127.0.0.1:6388"
    )]
    servers: Vec<String>,

    /// Connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, global = true, env = "DFLOCKD_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Connect with TLS, trusting the system's root certificates.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_TLS",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with = "tls_ca"
    )]
    tls: bool,

    /// The name the servers' certificates must carry, when it differs from the host in
    /// --servers (for servers reached by IP address). Default: the host part of each address.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    tls_server_name: Option<String>,

    /// Seconds connecting (TCP and TLS handshake) may take.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_CONNECT_TIMEOUT",
        value_name = "S",
        default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS)
    )]
    connect_timeout: u64,

    /// Seconds a server may take to answer (beyond a lock's own wait) before the request fails.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_IO_TIMEOUT",
        value_name = "S",
        default_value_t = DEFAULT_IO_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS)
    )]
    io_timeout: u64,

    /// Authenticate with this token.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,

    /// Authenticate with the token in this file (surrounding white space is ignored).
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_AUTH_TOKEN_FILE",
        value_name = "FILE"
    )]
    auth_token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a command while holding a lock (a semaphore slot with --limit), or just hold it.
    ///
    /// Waits in the key's FIFO queue (showing the time waited when stderr is a terminal), runs
    /// the command while renewing the lease in the background, releases when the command
    /// exits, and exits with the command's status. The command gets DFLOCKD_LOCK_KEY,
    /// DFLOCKD_LOCK_TOKEN, DFLOCKD_LOCK_FENCE (decimal) and DFLOCKD_LOCK_LEASE (seconds) in its
    /// environment. If the lock is lost while the command runs (renewal refused, server gone,
    /// or the lease expired or was evicted as a server with --lock-events reports at once),
    /// the command gets SIGTERM, then SIGKILL after --grace seconds, and dflockctl exits with
    /// 76. SIGTERM and SIGHUP sent to dflockctl are passed on to the command; Ctrl-C reaches the
    /// command from the terminal, and dflockctl waits for it to exit before releasing.
    ///
    /// Without a command, dflockctl holds the lock: it prints "KEY TOKEN FENCE" on one line
    /// and releases on SIGINT, SIGTERM or SIGHUP (exit 0), or exits 76 if the lock is lost.
    Run(RunArgs),
    /// Show each server's locks, semaphores and subscriptions. Servers that cannot be asked
    /// are reported on stderr (exit 69) after the others are shown.
    Stats {
        /// Print one JSON object instead, mapping each server's address to its stats payload.
        #[arg(long)]
        json: bool,
    },
    /// Publish PAYLOAD on CHANNEL (through the first server) and print the number of
    /// deliveries.
    Emit {
        /// A literal channel (no wildcards).
        channel: String,
        /// The payload, one line; `-` reads it from stdin (one line, its line feed removed).
        payload: String,
    },
    /// Print signals matching the patterns as they arrive ("CHANNEL PAYLOAD" per line),
    /// from the first server, until the connection ends (or --count signals arrived).
    Listen {
        /// Channels or wildcard patterns (`*` one token, `>` the rest).
        #[arg(required = true)]
        patterns: Vec<String>,
        /// Join this queue group: each signal goes to one member of the group.
        #[arg(long, value_name = "G")]
        group: Option<String>,
        /// Exit (0) after printing this many signals.
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Print lock and semaphore events as they happen, from the first server, until the
    /// connection ends (or --count events arrived). Needs a server started with --lock-events.
    ///
    /// One line per event: "EVENT NS KEY field=value...", for example "granted lock jobs
    /// fence=18ebc16ce40e4eb1 conn=7 peer=127.0.0.1:5123 waited_ms=0 waiters=0". Events are
    /// granted, released,
    /// expired, disconnected, evicted, queued and timeout; the fields are those of the event's
    /// JSON payload (see the README).
    Events {
        /// Event channels or patterns to follow (`$lock.expired.>`, `$sem.*.pool`). Default:
        /// every event, `$lock.>` and `$sem.>`.
        patterns: Vec<String>,
        /// Print each event as one JSON object: its payload plus "event" and "ns".
        #[arg(long)]
        json: bool,
        /// Exit (0) after printing this many events.
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Check that every server answers, printing the round-trip time.
    Ping,
    /// Ask whether a token or fence belongs to a current holder of KEY: prints "current FENCE
    /// LEASE-LEFT" (exit 0) or "stale" (exit 1).
    Check {
        /// The lock (or, with --semaphore, semaphore) key.
        key: String,
        /// A whole token (32 hex digits) or its fence (the first 16).
        target: String,
        /// KEY names a semaphore.
        #[arg(long)]
        semaphore: bool,
    },
    /// Show KEY's holders, capacity and waiters.
    Queue {
        /// The lock (or, with --semaphore, semaphore) key.
        key: String,
        /// KEY names a semaphore.
        #[arg(long)]
        semaphore: bool,
        /// Print one JSON object (key, holders, limit, waiters, position) instead.
        #[arg(long)]
        json: bool,
    },
    /// End leases of KEY now, as an operator: the holder with TOKEN or FENCE, or every holder
    /// (`*`, the default). The next waiters are granted at once; the evicted holders find out
    /// at their next renewal. Prints how many leases ended. Needs the server's admin token,
    /// given as the auth token (--auth-token, --auth-token-file or their variables); without
    /// it the server refuses (exit 65).
    Evict {
        /// The lock (or, with --semaphore, semaphore) key.
        key: String,
        /// A token (32 hex digits), a fence (16), or `*` for every holder.
        #[arg(default_value = "*")]
        target: String,
        /// KEY names a semaphore.
        #[arg(long)]
        semaphore: bool,
    },
    /// A live view of every server, side by side, redrawn each interval: rates of grants,
    /// releases, lost leases, timeouts and signals, the gauges, and each server's most
    /// contended keys (from the `info` command). Exits 69 if a server did not answer.
    Top {
        /// Take one sample (two, an interval apart, for the rates), print it and exit.
        #[arg(long)]
        once: bool,
        /// Print one JSON object per sample, mapping each server to its `info` payload.
        #[arg(long)]
        json: bool,
        /// Seconds between samples.
        #[arg(long, value_name = "S", default_value_t = 1.0,
              value_parser = parse_interval)]
        interval: f64,
    },
    /// Print a shell completion script for dflockctl (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `dflockctl completions bash > /etc/bash_completion.d/dflockctl`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// A failure with the exit status it maps to.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// A client error, with the exit status of its class.
    fn client(context: &str, error: &Error) -> Failure {
        Failure::new(error_class(error), format!("{context}: {error}"))
    }
}

/// The exit status for a client error (see [`exit`]).
fn error_class(error: &Error) -> u8 {
    match error {
        Error::InvalidInput(_) | Error::Tls(_) => exit::USAGE,
        Error::Rejected | Error::MaxLocks | Error::MaxWaiters | Error::LimitMismatch => {
            exit::REFUSED
        }
        Error::Auth
        | Error::Draining
        | Error::Io(_)
        | Error::NoResponse
        | Error::Closed
        | Error::Certificate(_) => exit::UNAVAILABLE,
        _ => exit::SOFTWARE,
    }
}

fn main() -> ExitCode {
    let (cli, matches) = match parse_command_line() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let client = || build_client(&cli.connection, &matches);
    let outcome = match cli.command {
        Cmd::Run(args) => client().and_then(|client| run(&client, args)),
        Cmd::Stats { json } => client().and_then(|client| stats(&client, json)),
        Cmd::Emit { channel, payload } => {
            client().and_then(|client| emit(&client, &channel, &payload))
        }
        Cmd::Listen {
            patterns,
            group,
            count,
        } => client().and_then(|client| listen(&client, &patterns, group.as_deref(), count)),
        Cmd::Events {
            patterns,
            json,
            count,
        } => client().and_then(|client| events(&client, &patterns, json, count)),
        Cmd::Ping => client().and_then(|client| ping(&client)),
        Cmd::Check {
            key,
            target,
            semaphore,
        } => client().and_then(|client| check(&client, &key, &target, semaphore)),
        Cmd::Queue {
            key,
            semaphore,
            json,
        } => client().and_then(|client| queue(&client, &key, semaphore, json)),
        Cmd::Evict {
            key,
            target,
            semaphore,
        } => client().and_then(|client| evict(&client, &key, &target, semaphore)),
        Cmd::Top {
            once,
            json,
            interval,
        } => {
            client().and_then(|client| top(&client, once, json, Duration::from_secs_f64(interval)))
        }
        // Needs no server: the script comes from the command-line definition alone.
        Cmd::Completions { shell } => completions(shell),
    };
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("dflockctl: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// Parses the command line. On an error, `--help` or `--version` it prints clap's text and
/// returns the exit code: 0 for help and version, [`exit::USAGE`] for errors.
fn parse_command_line() -> Result<(Cli, ArgMatches), ExitCode> {
    config::env::ignore_empty_variables(Cli::command(), |name| std::env::var_os(name))
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)))
        .map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 })
        })
}

fn build_client(args: &ConnectionArgs, matches: &ArgMatches) -> Result<Client, Failure> {
    let servers: Vec<String> = args.servers.iter().map(|s| s.trim().to_owned()).collect();
    let mut builder = Client::builder(servers)
        .connect_timeout(Duration::from_secs(args.connect_timeout))
        .io_timeout(Duration::from_secs(args.io_timeout));
    if let Some(name) = &args.tls_server_name {
        builder = builder.tls_server_name(name);
    }
    if let Some(ca) = &args.tls_ca {
        builder = builder.tls_ca_file(ca);
    } else if args.tls {
        builder = builder.tls_system_roots();
    }
    if let Some(token) = auth_token(args, matches)? {
        builder = builder.auth_token(token);
    }
    builder
        .build()
        .map_err(|e| Failure::client("invalid settings", &e))
}

/// The auth token in the server's order of precedence (spec §17.3): a flag wins over an
/// environment variable, and for each the token wins over the file.
fn auth_token(args: &ConnectionArgs, matches: &ArgMatches) -> Result<Option<String>, Failure> {
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let file_first = from_flag("auth_token_file") && !from_flag("auth_token");
    match (&args.auth_token, &args.auth_token_file) {
        (Some(token), _) if !file_first => Ok(Some(token.clone())),
        (_, Some(path)) => fs::read_to_string(path).map(Some).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("cannot read the auth token file {}: {e}", path.display()),
            )
        }),
        (token, None) => Ok(token.clone()),
    }
}

fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "dflockctl", &mut io::stdout());
    Ok(0)
}

/// A refresh interval: 0.1 to 3600 seconds.
fn parse_interval(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{text} is not between 0.1 and 3600 seconds"))
    }
}
