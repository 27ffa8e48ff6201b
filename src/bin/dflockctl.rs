//! `dflockctl`: dflockd from the shell. Runs a command while holding a lock or a semaphore
//! slot (renewing it, and stopping the command if the lock is lost), shows server state,
//! publishes and prints signals, and pings servers.
//!
//! It owns argument handling, process supervision and output formatting; every byte on the
//! wire goes through the crate's client library (`dflockd::client`).

use std::ffi::{OsString, c_int};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, IsTerminal, Write};
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
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::low_level::emulate_default_handler;

use dflockd::client::{
    Client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, Enqueued, Error, Guard, Stats,
};
use dflockd::config;
use dflockd::protocol::MAX_SECONDS;

/// The command line could not be used (also clap's own status for usage errors).
const EXIT_USAGE: u8 = 2;
/// A server could not be reached, refused the request or broke the protocol.
const EXIT_UNAVAILABLE: u8 = 69;
/// `run`: not acquired within `--timeout`.
const EXIT_TIMEOUT: u8 = 75;
/// `run`: the lock was lost while the command ran; the command was terminated.
const EXIT_LOST: u8 = 76;
/// `run`: the command exists but could not be started.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// `run`: the command was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// How often `run` checks on the command and the lock, and, while it waits in the queue, on
/// interrupts.
const POLL: Duration = Duration::from_millis(50);

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0        success
  1-255    run: the command's own exit status (128+N when signal N ended it)
  2        invalid command line or settings (unreadable token or CA file, ...)
  69       a server could not be reached or failed the request (connection, TLS,
           authentication or protocol error); listen: the connection ended
  75       run: the lock was not acquired within --timeout
  76       run: the lock was lost while the command ran; the command was terminated
  126      run: the command could not be started
  127      run: the command was not found";

/// Command line of `dflockctl`.
#[derive(Parser, Debug)]
#[command(
    name = "dflockctl",
    version,
    about = "Use dflockd locks, semaphores and signals from the shell",
    after_help = EXIT_STATUS_HELP
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
    /// Run a command while holding a lock (a semaphore slot with --limit).
    ///
    /// Waits in the key's FIFO queue (showing the time waited when stderr is a terminal), runs
    /// the command while renewing the lease in the background, releases when the command
    /// exits, and exits with the command's status. If the lock is lost while the command runs
    /// (renewal refused, server gone), the command gets SIGTERM, then SIGKILL after --grace
    /// seconds, and dflockctl exits with 76. SIGTERM and SIGHUP sent to dflockctl are passed on
    /// to the command; Ctrl-C reaches the command from the terminal, and dflockctl waits for it
    /// to exit before releasing.
    Run(RunArgs),
    /// Show each server's locks, semaphores and subscriptions.
    Stats {
        /// Print the raw JSON payload instead, one line per server.
        #[arg(long)]
        json: bool,
    },
    /// Publish PAYLOAD on CHANNEL (through the first server) and print the number of
    /// deliveries.
    Emit {
        /// A literal channel (no wildcards).
        channel: String,
        /// The payload, one line.
        payload: String,
    },
    /// Print signals matching the patterns as they arrive ("CHANNEL PAYLOAD" per line),
    /// from the first server, until the connection ends.
    Listen {
        /// Channels or wildcard patterns (`*` one token, `>` the rest).
        #[arg(required = true)]
        patterns: Vec<String>,
        /// Join this queue group: each signal goes to one member of the group.
        #[arg(long, value_name = "G")]
        group: Option<String>,
    },
    /// Check that every server answers, printing the round-trip time.
    Ping,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The lock (or semaphore) key.
    key: String,

    /// Give up after this many seconds in the queue (exit 75); 0 tries once. Default: wait as
    /// long as it takes.
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    timeout: Option<u64>,

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

    /// The command and its arguments (after `--` if they start with a dash).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
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

    /// A client error: settings problems are usage errors, the rest mean the server failed.
    fn client(context: &str, error: &Error) -> Failure {
        let status = match error {
            Error::InvalidInput(_) | Error::Tls(_) => EXIT_USAGE,
            _ => EXIT_UNAVAILABLE,
        };
        Failure::new(status, format!("{context}: {error}"))
    }
}

fn main() -> ExitCode {
    let matches =
        config::env::ignore_empty_variables(Cli::command(), |name| std::env::var_os(name))
            .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let outcome = build_client(&cli.connection, &matches).and_then(|client| match cli.command {
        Cmd::Run(args) => run(&client, args),
        Cmd::Stats { json } => stats(&client, json),
        Cmd::Emit { channel, payload } => emit(&client, &channel, &payload),
        Cmd::Listen { patterns, group } => listen(&client, &patterns, group.as_deref()),
        Cmd::Ping => ping(&client),
    });
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("dflockctl: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
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
                EXIT_USAGE,
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
    let guard = acquire(client, &args)?;
    let mut child = spawn(&args.command)?;
    let outcome = supervise(&mut child, &guard, Duration::from_secs(args.grace));
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

/// Joins the queue and waits for the grant, showing the time waited on a terminal.
fn acquire(client: &Client, args: &RunArgs) -> Result<Guard, Failure> {
    let timeout = Duration::from_secs(args.timeout.unwrap_or(MAX_SECONDS));
    let enqueued = match args.limit {
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
    };
    let server = &client.servers()[client.server_index(&args.key)];
    let failed = |e: Error| match e {
        Error::Timeout => Failure::new(
            EXIT_TIMEOUT,
            format!("{}: not acquired within {}s", args.key, timeout.as_secs()),
        ),
        e => Failure::client(&format!("{} on {server}", args.key), &e),
    };
    match enqueued.map_err(failed)? {
        Enqueued::Acquired(guard) => Ok(guard),
        Enqueued::Queued(waiting) => {
            let progress = Progress::start(&args.key);
            let granted = waiting.wait(timeout);
            drop(progress);
            granted.map_err(failed)
        }
    }
}

/// The "waiting for KEY: 12.3s" line on stderr, redrawn in place while it lives; only on a
/// terminal. The line is erased when it is dropped and when SIGINT, SIGTERM or SIGHUP ends
/// dflockctl during the wait, so the shell's prompt never lands after it.
struct Progress {
    ticker: Option<Ticker>,
}

/// The thread that draws the progress line, and the signal handlers that tell it to stop.
struct Ticker {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
    handlers: Vec<SigId>,
}

/// The signals that end dflockctl while it waits in the queue.
const INTERRUPTS: [c_int; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Erases the current terminal line.
const ERASE_LINE: &str = "\r\x1b[K";

impl Progress {
    fn start(key: &str) -> Progress {
        if !io::stderr().is_terminal() {
            return Progress { ticker: None };
        }
        // The handlers only record the signal; the drawing thread erases the line, then ends
        // the process as the signal's default action would (and with the same status).
        let caught = Arc::new(AtomicUsize::new(0));
        let handlers = INTERRUPTS
            .iter()
            .filter_map(|&signal| {
                signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize).ok()
            })
            .collect();
        let (stop, stopped) = mpsc::channel();
        let key = key.to_owned();
        let start = Instant::now();
        let thread = thread::spawn(move || {
            // Checked every POLL, so an interrupt is acted on within 50 ms.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
                let signal = caught.load(Ordering::Relaxed);
                if signal != 0 {
                    eprint!("{ERASE_LINE}");
                    let _ = emulate_default_handler(signal as c_int);
                }
                let waited = start.elapsed().as_secs_f64();
                eprint!("\rdflockctl: waiting for {key}: {waited:.1}s");
            }
            eprint!("{ERASE_LINE}");
        });
        Progress {
            ticker: Some(Ticker {
                stop,
                thread,
                handlers,
            }),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            // signal-hook does not restore the default action when the last handler goes, so
            // until `supervise` installs its own these signals are ignored: for the time it
            // takes to spawn the command, which must never run without the lock anyway.
            for handler in ticker.handlers {
                signal_hook::low_level::unregister(handler);
            }
            drop(ticker.stop);
            let _ = ticker.thread.join();
        }
    }
}

fn spawn(command: &[OsString]) -> Result<Child, Failure> {
    let (program, args) = command
        .split_first()
        .expect("clap requires at least one COMMAND word");
    Command::new(program).args(args).spawn().map_err(|e| {
        let status = if e.kind() == io::ErrorKind::NotFound {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_EXECUTE
        };
        Failure::new(
            status,
            format!("cannot run {}: {e}", program.to_string_lossy()),
        )
    })
}

/// Waits for the command to exit, passing on SIGTERM and SIGHUP and stopping it if the lock
/// is lost. Returns the exit status to report.
fn supervise(child: &mut Child, guard: &Guard, grace: Duration) -> Result<u8, Failure> {
    let forwarded = forward_signals()?;
    let lost = guard.loss_channel();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| {
            Failure::new(
                EXIT_UNAVAILABLE,
                format!("cannot wait for the command: {e}"),
            )
        })? {
            return Ok(exit_code(status));
        }
        let signal = forwarded.swap(0, Ordering::Relaxed);
        if signal != 0 {
            send_signal(child, signal as c_int);
        }
        match lost.recv_timeout(POLL) {
            Ok(loss) => {
                eprintln!(
                    "dflockctl: lost the lock on {}: {loss}; terminating the command",
                    guard.key()
                );
                terminate(child, grace);
                return Err(Failure::new(
                    EXIT_LOST,
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

/// Catches SIGTERM and SIGHUP (to pass on) and SIGINT (which the terminal already delivers to
/// the command itself); the last one caught is left in the returned cell.
fn forward_signals() -> Result<Arc<AtomicUsize>, Failure> {
    let caught = Arc::new(AtomicUsize::new(0));
    let ignored = Arc::new(AtomicUsize::new(0));
    let register = |signal: c_int, cell: &Arc<AtomicUsize>| {
        signal_hook::flag::register_usize(signal, Arc::clone(cell), signal as usize)
            .map(drop)
            .map_err(|e| Failure::new(EXIT_UNAVAILABLE, format!("cannot handle signals: {e}")))
    };
    register(SIGTERM, &caught)?;
    register(SIGHUP, &caught)?;
    register(SIGINT, &ignored)?;
    Ok(caught)
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
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// stats, emit, listen, ping
// ---------------------------------------------------------------------------------------------

fn stats(client: &Client, json: bool) -> Result<u8, Failure> {
    for (index, server) in client.servers().iter().enumerate() {
        let mut conn = client
            .connect(index)
            .map_err(|e| Failure::client(server, &e))?;
        if json {
            let payload = conn.stats_json().map_err(|e| Failure::client(server, &e))?;
            println!("{payload}");
        } else {
            let stats = conn.stats().map_err(|e| Failure::client(server, &e))?;
            print!("{}", render_stats(server, &stats));
        }
    }
    Ok(0)
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
    let delivered = client
        .emit(channel, payload)
        .map_err(|e| Failure::client(channel, &e))?;
    println!("{delivered}");
    Ok(0)
}

fn listen(client: &Client, patterns: &[String], group: Option<&str>) -> Result<u8, Failure> {
    let server = &client.servers()[0];
    let signals = client.signals().map_err(|e| Failure::client(server, &e))?;
    for pattern in patterns {
        signals
            .listen(pattern, group)
            .map_err(|e| Failure::client(pattern, &e))?;
    }
    let mut stdout = io::stdout().lock();
    for signal in signals.iter() {
        let printed =
            writeln!(stdout, "{} {}", signal.channel, signal.payload).and_then(|()| stdout.flush());
        if printed.is_err() {
            // The reader went away (a closed pipe): nothing more to do.
            return Ok(0);
        }
    }
    let why = signals
        .closed_reason()
        .unwrap_or_else(|| "the connection ended".to_owned());
    Err(Failure::new(EXIT_UNAVAILABLE, format!("{server}: {why}")))
}

fn ping(client: &Client) -> Result<u8, Failure> {
    let mut status = 0;
    for (index, server) in client.servers().iter().enumerate() {
        match client.ping(index) {
            Ok(rtt) => println!("{server}: ok ({:.2} ms)", rtt.as_secs_f64() * 1e3),
            Err(e) => {
                println!("{server}: {e}");
                status = EXIT_UNAVAILABLE;
            }
        }
    }
    Ok(status)
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
        assert_eq!(args.timeout, Some(3));
        assert_eq!(args.command, ["sh", "-c", "exit 3"]);
        let cli = parse(&["run", "k", "ls", "-l"]).expect("valid without --");
        let Cmd::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.command, ["ls", "-l"]);
        assert!(parse(&["run", "k"]).is_err(), "a command is required");
        assert!(parse(&["run", "--limit", "0", "k", "true"]).is_err());
        assert!(parse(&["run", "--lease", "0", "k", "true"]).is_err());
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
        use signal_hook::consts::SIGKILL;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(SIGKILL)), 137);
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
