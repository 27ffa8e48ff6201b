//! `dflockctl`: dflockd from the shell. Runs a command while holding a lock or a semaphore
//! slot (renewing it, and stopping the command if the lock is lost), shows server state,
//! publishes and prints signals, and pings servers.
//!
//! It owns argument handling, process supervision and output formatting; every byte on the
//! wire goes through the crate's client library (`dflockd::client`).

use std::ffi::{OsString, c_int};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use dflockd::client::{
    Client, Connection, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, Enqueued, Error, Guard, Stats,
};
use dflockd::config;
use dflockd::protocol::{MAX_PAYLOAD_LINE, MAX_SECONDS};

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
}

/// How often `run` checks on the command, the lock and caught signals.
const POLL: Duration = Duration::from_millis(50);
/// How often the queue-wait indicator is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// The "Exit status" table at the end of `--help`.
fn exit_status_help() -> String {
    let rows = [
        ("0".to_owned(), "success"),
        (
            "1-255".to_owned(),
            "run: the command's own exit status (128+N when signal N ended it)",
        ),
        (
            exit::USAGE.to_string(),
            "invalid command line or settings (unreadable token or CA file, bad payload, ...)",
        ),
        (
            exit::REFUSED.to_string(),
            "the server refused the request (error_limit_mismatch, error_max_locks,\n\
             error_max_waiters; listen: an invalid pattern)",
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
    /// Comma-separated server addresses (host:port). Keys are sharded over them in this order,
    /// as every dflockd client does; signals and emit use the first.
    #[arg(
        long,
        global = true,
        env = "DFLOCKD_SERVERS",
        value_name = "HOST:PORT,...",
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
    /// environment. If the lock is lost while the command runs (renewal refused, server gone),
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
    /// Check that every server answers, printing the round-trip time.
    Ping,
    /// Print a shell completion script for dflockctl (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `dflockctl completions bash > /etc/bash_completion.d/dflockctl`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The lock (or semaphore) key.
    key: String,

    /// Give up after this long in the queue (exit 75): `500ms`, `1.5s`, `2m`, `1h` or plain
    /// seconds, rounded up to whole seconds (the protocol's unit); 0 tries once. Default: wait
    /// as long as it takes.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,

    /// The exit status when the lock is not acquired within --timeout (like `flock -E`).
    #[arg(long, value_name = "N", default_value_t = exit::NOT_ACQUIRED)]
    conflict_exit_code: u8,

    /// Lease to ask for, in seconds (renewed at half of it); default: the server's.
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    lease: Option<u64>,

    /// Take a slot of a semaphore admitting N holders instead of a lock.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    limit: Option<u64>,

    /// Seconds between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long, value_name = "S", default_value_t = 10)]
    grace: u64,

    /// Run this shell command line with `sh -c` instead of COMMAND (like `flock -c`).
    #[arg(short = 'c', value_name = "SHELL COMMAND", conflicts_with = "command")]
    shell: Option<String>,

    /// The command and its arguments (after `--` if they start with a dash). Without one (and
    /// without -c), hold the lock until SIGINT or SIGTERM.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

/// `--timeout`: a decimal number with an optional unit (`ms`, `s`, `m`, `h`; seconds without
/// one), rounded up to whole seconds since the protocol counts in seconds. Exact decimal
/// arithmetic, so `0.3m` is 18 s and not 19.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 500ms, 1.5s, 2m or 30");
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 18 || fraction.contains('.') {
        return Err(invalid());
    }
    let parse = |digits: &str| -> Result<u128, String> {
        if digits.is_empty() {
            Ok(0)
        } else {
            digits.parse().map_err(|_| invalid())
        }
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let nanos = parse(whole)?
        .checked_mul(unit_nanos)
        .ok_or_else(invalid)?
        .saturating_add((parse(fraction)? * unit_nanos).div_ceil(scale));
    let seconds = nanos.div_ceil(1_000_000_000);
    match u64::try_from(seconds) {
        Ok(seconds) if seconds <= MAX_SECONDS => Ok(Duration::from_secs(seconds)),
        _ => Err(format!("{text:?} is longer than {MAX_SECONDS} seconds")),
    }
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
        Cmd::Ping => client().and_then(|client| ping(&client)),
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

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

fn run(client: &Client, args: RunArgs) -> Result<u8, Failure> {
    // From here on SIGINT, SIGTERM and SIGHUP no longer end dflockctl by themselves: every
    // phase below looks at `caught` and ends (or passes the signal on) in its own way.
    let caught = catch_signals()?;
    let guard = acquire(client, &args, &caught)?;
    let outcome = match command_for(&args) {
        Some(mut command) => spawn(command.envs(lock_env(&guard))).and_then(|mut child| {
            supervise(&mut child, &guard, &caught, Duration::from_secs(args.grace))
        }),
        None => hold(&guard, &caught),
    };
    let released = guard.release();
    let status = outcome?;
    if let Err(e) = released {
        eprintln!(
            "dflockctl: {}: the release was not confirmed: {e}",
            args.key
        );
    }
    Ok(status)
}

/// Catches SIGINT, SIGTERM and SIGHUP; the last one caught is left in the returned cell (0
/// until then).
fn catch_signals() -> Result<Arc<AtomicUsize>, Failure> {
    let caught = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot handle signals: {e}")))?;
    }
    Ok(caught)
}

/// Joins the queue and waits for the grant, under a [`Watch`].
fn acquire(client: &Client, args: &RunArgs, caught: &Arc<AtomicUsize>) -> Result<Guard, Failure> {
    let timeout = args.timeout.unwrap_or(Duration::from_secs(MAX_SECONDS));
    let server = &client.servers()[client.server_index(&args.key)];
    let failed = |e: Error| match e {
        Error::Timeout => Failure::new(
            args.conflict_exit_code,
            format!("{}: not acquired within {}s", args.key, timeout.as_secs()),
        ),
        e => Failure::client(&format!("{} on {server}", args.key), &e),
    };
    let _watch = Watch::start(&args.key, caught);
    match enqueue(client, args).map_err(failed)? {
        Enqueued::Acquired(guard) => Ok(guard),
        Enqueued::Queued(waiting) => waiting.wait(timeout).map_err(failed),
    }
}

fn enqueue(client: &Client, args: &RunArgs) -> Result<Enqueued, Error> {
    match args.limit {
        Some(limit) => {
            let semaphore = client.semaphore(&args.key, limit);
            match args.lease {
                Some(lease) => semaphore.lease(lease).enqueue(),
                None => semaphore.enqueue(),
            }
        }
        None => {
            let lock = client.lock(&args.key);
            match args.lease {
                Some(lease) => lock.lease(lease).enqueue(),
                None => lock.enqueue(),
            }
        }
    }
}

/// Watches the wait for a grant on its own thread while it lives: redraws the "waiting for
/// KEY: 12.3s" line in place when stderr is a terminal, and ends dflockctl with 128+N when
/// signal N arrives meanwhile, after erasing that line. Exiting is safe then: nothing is held
/// yet, and the server forgets a waiter (or frees a grant) whose connection closes.
struct Watch {
    stop: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
}

impl Watch {
    fn start(key: &str, caught: &Arc<AtomicUsize>) -> Watch {
        let (stop, stopped) = mpsc::channel();
        let key = key.to_owned();
        let caught = Arc::clone(caught);
        let ticker = thread::spawn(move || {
            let mut progress = Progress::new(&key);
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
                let signal = caught.load(Ordering::Relaxed);
                if signal != 0 {
                    progress.erase();
                    eprintln!("dflockctl: {key}: interrupted while waiting; not acquired");
                    std::process::exit(signal_status(signal).into());
                }
                progress.tick();
            }
            progress.erase();
        });
        Watch {
            stop: Some((stop, ticker)),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some((stop, ticker)) = self.stop.take() {
            drop(stop);
            let _ = ticker.join();
        }
    }
}

/// The "waiting for KEY: 12.3s" line on stderr, only on a terminal. Invariant: `drawn` says
/// whether the cursor is at the end of that line, so erasing leaves a clean line.
struct Progress<'a> {
    key: &'a str,
    terminal: bool,
    start: Instant,
    next_draw: Instant,
    drawn: bool,
}

impl<'a> Progress<'a> {
    fn new(key: &'a str) -> Progress<'a> {
        let start = Instant::now();
        Progress {
            key,
            terminal: io::stderr().is_terminal(),
            start,
            next_draw: start + PROGRESS_TICK,
            drawn: false,
        }
    }

    /// Redraws the line if a tick has passed since the last drawing.
    fn tick(&mut self) {
        let now = Instant::now();
        if self.terminal && now >= self.next_draw {
            let waited = (now - self.start).as_secs_f64();
            eprint!("\rdflockctl: waiting for {}: {waited:.1}s", self.key);
            self.drawn = true;
            self.next_draw = now + PROGRESS_TICK;
        }
    }

    /// Erases the line (and a `^C` the terminal echoed on it) so later output starts clean.
    fn erase(&mut self) {
        if std::mem::take(&mut self.drawn) {
            eprint!("\r\x1b[K");
        }
    }
}

/// What `run` runs: `sh -c LINE` for `-c`, else COMMAND; `None` for neither (hold the lock).
fn command_for(args: &RunArgs) -> Option<Command> {
    if let Some(line) = &args.shell {
        let mut command = Command::new("sh");
        command.arg("-c").arg(line);
        return Some(command);
    }
    let (program, rest) = args.command.split_first()?;
    let mut command = Command::new(program);
    command.args(rest);
    Some(command)
}

/// What the command learns of its grant, so it can pass the fence on to storage.
fn lock_env(guard: &Guard) -> [(&'static str, String); 4] {
    [
        ("DFLOCKD_LOCK_KEY", guard.key().to_owned()),
        ("DFLOCKD_LOCK_TOKEN", guard.token().to_string()),
        ("DFLOCKD_LOCK_FENCE", guard.fence().to_string()),
        ("DFLOCKD_LOCK_LEASE", guard.lease().as_secs().to_string()),
    ]
}

fn spawn(command: &mut Command) -> Result<Child, Failure> {
    command.spawn().map_err(|e| {
        let status = if e.kind() == io::ErrorKind::NotFound {
            exit::NOT_FOUND
        } else {
            exit::CANNOT_EXECUTE
        };
        let program = command.get_program().to_string_lossy();
        Failure::new(status, format!("cannot run {program}: {e}"))
    })
}

/// Waits for the command to exit, passing on SIGTERM and SIGHUP (SIGINT reaches it from the
/// terminal already) and stopping it if the lock is lost. Returns the exit status to report.
fn supervise(
    child: &mut Child,
    guard: &Guard,
    caught: &AtomicUsize,
    grace: Duration,
) -> Result<u8, Failure> {
    let lost = guard.loss_channel();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| {
            Failure::new(exit::SOFTWARE, format!("cannot wait for the command: {e}"))
        })? {
            return Ok(exit_code(status));
        }
        match caught.swap(0, Ordering::Relaxed) {
            0 => {}
            signal if signal == SIGINT as usize => {}
            signal => send_signal(child, signal as c_int),
        }
        match lost.recv_timeout(POLL) {
            Ok(loss) => {
                eprintln!(
                    "dflockctl: lost the lock on {}: {loss}; terminating the command",
                    guard.key()
                );
                terminate(child, grace);
                return Err(Failure::new(
                    exit::LOST,
                    format!(
                        "{}: the command was stopped because the lock was lost",
                        guard.key()
                    ),
                ));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Only a release disconnects the channel, and the guard is held here.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
    }
}

/// Holds the lock without a command: prints "KEY TOKEN FENCE" and waits for a signal (then
/// returns 0, and the caller releases) or the loss of the lock.
fn hold(guard: &Guard, caught: &AtomicUsize) -> Result<u8, Failure> {
    let mut stdout = io::stdout().lock();
    // A reader that went away changes nothing: the lock is held until a signal says otherwise.
    let _ = writeln!(
        stdout,
        "{} {} {}",
        guard.key(),
        guard.token(),
        guard.fence()
    )
    .and_then(|()| stdout.flush());
    let lost = guard.loss_channel();
    while caught.load(Ordering::Relaxed) == 0 {
        match lost.recv_timeout(POLL) {
            Ok(loss) => {
                return Err(Failure::new(
                    exit::LOST,
                    format!("lost the lock on {}: {loss}", guard.key()),
                ));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Only a release disconnects the channel, and the guard is held here.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
    }
    Ok(0)
}

/// Sends `signal` to the command. Its pid cannot belong to another process: the child has not
/// been reaped, since only this thread waits on its `Child`.
fn send_signal(child: &Child, signal: c_int) {
    // The signals passed here are the named ones caught or sent above; a failure means the
    // command has already exited, which the caller's next wait reports.
    if let Some(signal) = Signal::from_named_raw(signal) {
        let _ = kill_process(Pid::from_child(child), signal);
    }
}

/// SIGTERM, then SIGKILL if the command is still running after `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    send_signal(child, SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The shell's convention: the exit code, or 128 + the signal that ended the process.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => signal_status(signal as usize),
        (None, None) => 1,
    }
}

/// The shell's status for "ended by signal N": 128 + N.
fn signal_status(signal: usize) -> u8 {
    128u8.wrapping_add(signal as u8)
}

// ---------------------------------------------------------------------------------------------
// stats, emit, listen, ping
// ---------------------------------------------------------------------------------------------

/// Asks every server, reporting the ones that fail on stderr without hiding the others; the
/// status is the first failure's.
fn stats(client: &Client, json: bool) -> Result<u8, Failure> {
    let mut status = 0;
    let mut by_server = serde_json::Map::new();
    for (index, server) in client.servers().iter().enumerate() {
        let asked = client.connect(index).and_then(|mut conn| {
            if json {
                by_server.insert(server.clone(), stats_value(&mut conn)?);
            } else {
                print!("{}", render_stats(server, &conn.stats()?));
            }
            Ok(())
        });
        if let Err(e) = asked {
            let failure = Failure::client(server, &e);
            eprintln!("dflockctl: {}", failure.message);
            if status == 0 {
                status = failure.status;
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(by_server));
    }
    Ok(status)
}

/// The server's `stats` payload as JSON, unchanged.
fn stats_value(conn: &mut Connection) -> Result<serde_json::Value, Error> {
    let payload = conn.stats_json()?;
    serde_json::from_str(&payload)
        .map_err(|e| Error::Protocol(format!("a stats payload that is not JSON: {e}")))
}

/// Aligned columns under a header row.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

fn render_stats(server: &str, stats: &Stats) -> String {
    let mut out = format!("{server}: {} connections\n", stats.connections);
    let seconds = |s: f64| format!("{s:.1}s");
    let mut section = |title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        if !rows.is_empty() {
            let _ = write!(out, "{title}\n{}", table(header, &rows));
        }
    };
    section(
        "locks",
        &["KEY", "OWNER", "LEASE LEFT", "WAITERS"],
        stats
            .locks
            .iter()
            .map(|l| {
                vec![
                    l.key.clone(),
                    l.owner_conn_id.to_string(),
                    seconds(l.lease_expires_in_s),
                    l.waiters.to_string(),
                ]
            })
            .collect(),
    );
    section(
        "semaphores",
        &["KEY", "LIMIT", "HOLDERS", "WAITERS"],
        stats
            .semaphores
            .iter()
            .map(|s| {
                vec![
                    s.key.clone(),
                    s.limit.to_string(),
                    s.holders.to_string(),
                    s.waiters.to_string(),
                ]
            })
            .collect(),
    );
    let idle = |kind: &str, entries: &[dflockd::client::IdleStats]| {
        entries
            .iter()
            .map(|i| vec![i.key.clone(), kind.to_owned(), seconds(i.idle_s)])
            .collect::<Vec<_>>()
    };
    let mut idle_rows = idle("lock", &stats.idle_locks);
    idle_rows.extend(idle("semaphore", &stats.idle_semaphores));
    section("idle", &["KEY", "KIND", "IDLE"], idle_rows);
    section(
        "signal subscriptions",
        &["PATTERN", "GROUP", "LISTENERS"],
        stats
            .signal_channels
            .iter()
            .map(|c| {
                vec![
                    c.pattern.clone(),
                    c.group.clone().unwrap_or_else(|| "-".to_owned()),
                    c.listeners.to_string(),
                ]
            })
            .collect(),
    );
    out
}

fn emit(client: &Client, channel: &str, payload: &str) -> Result<u8, Failure> {
    let payload = match payload {
        "-" => payload_from_stdin()?,
        literal => literal.to_owned(),
    };
    let delivered = client
        .emit(channel, &payload)
        .map_err(|e| Failure::client(channel, &e))?;
    println!("{delivered}");
    Ok(0)
}

/// One line from stdin, its line feed removed. A payload is checked by the client (one line,
/// within the protocol's limit), so reading one byte beyond the limit is enough to refuse an
/// oversized one; anything after a line feed in the middle is kept so that check sees it.
fn payload_from_stdin() -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let limit = MAX_PAYLOAD_LINE as u64 + 2;
    io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read the payload: {e}")))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    String::from_utf8(bytes)
        .map_err(|_| Failure::new(exit::USAGE, "the payload on stdin is not UTF-8"))
}

fn listen(
    client: &Client,
    patterns: &[String],
    group: Option<&str>,
    count: Option<u64>,
) -> Result<u8, Failure> {
    let server = &client.servers()[0];
    let signals = client.signals().map_err(|e| Failure::client(server, &e))?;
    for pattern in patterns {
        signals
            .listen(pattern, group)
            .map_err(|e| Failure::client(pattern, &e))?;
    }
    let mut stdout = io::stdout().lock();
    let mut left = count.unwrap_or(u64::MAX);
    for signal in signals.iter() {
        let printed =
            writeln!(stdout, "{} {}", signal.channel, signal.payload).and_then(|()| stdout.flush());
        left -= 1;
        if printed.is_err() || left == 0 {
            // Enough signals, or the reader went away (a closed pipe): nothing more to do.
            return Ok(0);
        }
    }
    let why = signals
        .closed_reason()
        .unwrap_or_else(|| "the connection ended".to_owned());
    Err(Failure::new(exit::UNAVAILABLE, format!("{server}: {why}")))
}

fn ping(client: &Client) -> Result<u8, Failure> {
    let mut status = 0;
    for (index, server) in client.servers().iter().enumerate() {
        match client.ping(index) {
            Ok(rtt) => println!("{server}: ok ({:.2} ms)", rtt.as_secs_f64() * 1e3),
            Err(e) => {
                println!("{server}: {e}");
                status = exit::UNAVAILABLE;
            }
        }
    }
    Ok(status)
}

fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "dflockctl", &mut io::stdout());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dflockctl").chain(argv.iter().copied()))
    }

    #[test]
    fn run_takes_the_command_after_its_options() {
        let cli =
            parse(&["run", "--timeout", "3", "k", "--", "sh", "-c", "exit 3"]).expect("valid");
        let Cmd::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.key, "k");
        assert_eq!(args.timeout, Some(Duration::from_secs(3)));
        assert_eq!(args.command, ["sh", "-c", "exit 3"]);
        let cli = parse(&["run", "k", "ls", "-l"]).expect("valid without --");
        let Cmd::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.command, ["ls", "-l"]);
        assert!(parse(&["run", "--limit", "0", "k", "true"]).is_err());
        assert!(parse(&["run", "--lease", "0", "k", "true"]).is_err());
    }

    #[test]
    fn run_takes_a_shell_line_or_no_command_at_all() {
        for argv in [
            &["run", "k", "-c", "a | b"][..],
            &["run", "-c", "a | b", "k"][..],
        ] {
            let Cmd::Run(args) = parse(argv).expect("valid").command else {
                panic!("not run");
            };
            assert_eq!(args.shell.as_deref(), Some("a | b"), "{argv:?}");
            assert!(args.command.is_empty(), "{argv:?}");
            let command = command_for(&args).expect("a command");
            assert_eq!(command.get_program(), "sh");
            assert_eq!(command.get_args().collect::<Vec<_>>(), ["-c", "a | b"]);
        }
        let Cmd::Run(args) = parse(&["run", "k"]).expect("valid").command else {
            panic!("not run");
        };
        assert!(command_for(&args).is_none(), "no command: hold the lock");
        assert!(parse(&["run", "k", "-c", "x", "--", "ls"]).is_err());
    }

    #[test]
    fn timeouts_take_units_and_round_up_to_whole_seconds() {
        let secs = |text: &str| parse_timeout(text).map(|d| d.as_secs());
        assert_eq!(secs("500ms"), Ok(1));
        assert_eq!(secs("1000ms"), Ok(1));
        assert_eq!(secs("1001ms"), Ok(2));
        assert_eq!(secs("1.5s"), Ok(2));
        assert_eq!(secs("2m"), Ok(120));
        assert_eq!(secs("0.3m"), Ok(18));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("30"), Ok(30));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs(".5"), Ok(1));
        assert_eq!(secs(&MAX_SECONDS.to_string()), Ok(MAX_SECONDS));
        for bad in [
            "",
            ".",
            "1.2.3",
            "5x",
            "-1",
            "1 s",
            "s",
            "99999999999999999999999",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert!(parse_timeout(&format!("{}", MAX_SECONDS + 1)).is_err());
    }

    #[test]
    fn client_errors_map_to_their_exit_class() {
        let cases = [
            (Error::InvalidInput("x".into()), exit::USAGE),
            (Error::Tls("x".into()), exit::USAGE),
            (Error::LimitMismatch, exit::REFUSED),
            (Error::MaxLocks, exit::REFUSED),
            (Error::MaxWaiters, exit::REFUSED),
            (Error::Rejected, exit::REFUSED),
            (Error::Draining, exit::UNAVAILABLE),
            (Error::Closed, exit::UNAVAILABLE),
            (Error::Certificate("x".into()), exit::UNAVAILABLE),
            (Error::Protocol("x".into()), exit::SOFTWARE),
        ];
        for (error, status) in cases {
            assert_eq!(error_class(&error), status, "{error:?}");
        }
    }

    #[test]
    fn help_lists_every_exit_status() {
        let help = exit_status_help();
        for code in [
            exit::USAGE,
            exit::REFUSED,
            exit::UNAVAILABLE,
            exit::SOFTWARE,
            exit::NOT_ACQUIRED,
            exit::LOST,
            exit::CANNOT_EXECUTE,
            exit::NOT_FOUND,
        ] {
            assert!(
                help.contains(&format!("\n  {code} ")),
                "{code} missing:\n{help}"
            );
        }
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = parse(&["ping", "--servers", "a:1,b:2"]).expect("valid");
        assert_eq!(cli.connection.servers, ["a:1", "b:2"]);
        assert!(parse(&["--tls", "--tls-ca", "ca.pem", "ping"]).is_err());
    }

    #[test]
    fn the_shared_list_names_exactly_the_variables_read() {
        fn variables(command: &clap::Command) -> Vec<String> {
            let own = command
                .get_arguments()
                .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned));
            let nested = command.get_subcommands().flat_map(variables);
            let mut all: Vec<String> = own.chain(nested).collect();
            all.sort();
            all.dedup();
            all
        }
        let mut listed = config::env::DFLOCKCTL_VARIABLES.to_vec();
        listed.sort_unstable();
        assert_eq!(variables(&Cli::command()), listed);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(
            exit_code(ExitStatus::from_raw(signal_hook::consts::SIGKILL)),
            137
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["orders".to_owned(), "3".to_owned()],
            vec!["a".to_owned(), "12".to_owned()],
        ];
        assert_eq!(
            table(&["KEY", "N"], &rows),
            "  KEY     N\n  orders  3\n  a       12\n"
        );
    }

    #[test]
    fn stats_render_only_busy_sections() {
        let stats: Stats = serde_json::from_str(
            r#"{"connections":2,"locks":[{"key":"k","owner_conn_id":1,"lease_expires_in_s":3.25,"waiters":1}],"semaphores":[],"idle_locks":[],"idle_semaphores":[{"key":"s","idle_s":1.0}],"signal_channels":[]}"#,
        )
        .expect("valid");
        assert_eq!(
            render_stats("h:1", &stats),
            "h:1: 2 connections\nlocks\n  KEY  OWNER  LEASE LEFT  WAITERS\n  k    1      3.2s        1\n\
             idle\n  KEY  KIND       IDLE\n  s    semaphore  1.0s\n"
        );
    }
}
