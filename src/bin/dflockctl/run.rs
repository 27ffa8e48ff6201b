//! `dflockctl run`: waits for a lock or semaphore slot, runs the command (or holds the lock) while
//! the lease is renewed, passes signals on, and stops the command if the lock is lost.

use std::ffi::{OsString, c_int};
use std::io::{self, IsTerminal, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use dflockd::client::{Client, Enqueued, Error, Guard};
use dflockd::protocol::MAX_SECONDS;
use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{Failure, exit};

/// How often `run` checks on the command, the lock and caught signals.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// How often the queue-wait indicator is redrawn.
pub(crate) const PROGRESS_TICK: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The lock (or semaphore) key.
    pub(crate) key: String,

    /// Give up after this long in the queue (exit 75): `500ms`, `1.5s`, `2m`, `1h` or plain
    /// seconds, rounded up to whole seconds (the protocol's unit); 0 tries once. Default: wait
    /// as long as it takes.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,

    /// The exit status when the lock is not acquired within --timeout (like `flock -E`).
    #[arg(long, value_name = "N", default_value_t = exit::NOT_ACQUIRED)]
    pub(crate) conflict_exit_code: u8,

    /// Lease to ask for, in seconds (renewed at half of it); default: the server's.
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub(crate) lease: Option<u64>,

    /// Take a slot of a semaphore admitting N holders instead of a lock.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub(crate) limit: Option<u64>,

    /// Seconds between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub(crate) grace: u64,

    /// Run this shell command line with `sh -c` instead of COMMAND (like `flock -c`).
    #[arg(short = 'c', value_name = "SHELL COMMAND", conflicts_with = "command")]
    pub(crate) shell: Option<String>,

    /// The command and its arguments (after `--` if they start with a dash). Without one (and
    /// without -c), hold the lock until SIGINT or SIGTERM.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<OsString>,
}

/// `--timeout`: a decimal number with an optional unit (`ms`, `s`, `m`, `h`; seconds without
/// one), rounded up to whole seconds since the protocol counts in seconds. Exact decimal
/// arithmetic, so `0.3m` is 18 s and not 19.
pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
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

pub(crate) fn run(client: &Client, args: RunArgs) -> Result<u8, Failure> {
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
pub(crate) fn catch_signals() -> Result<Arc<AtomicUsize>, Failure> {
    let caught = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot handle signals: {e}")))?;
    }
    Ok(caught)
}

/// Joins the queue and waits for the grant, under a [`Watch`].
pub(crate) fn acquire(
    client: &Client,
    args: &RunArgs,
    caught: &Arc<AtomicUsize>,
) -> Result<Guard, Failure> {
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

/// Joins the queue of the lock or semaphore. The guard watches the server's lock events, so a
/// server with `--lock-events` reports a lost lease at once rather than at the next renewal.
pub(crate) fn enqueue(client: &Client, args: &RunArgs) -> Result<Enqueued, Error> {
    match args.limit {
        Some(limit) => {
            let semaphore = client.semaphore(&args.key, limit).watch_events();
            match args.lease {
                Some(lease) => semaphore.lease(lease).enqueue(),
                None => semaphore.enqueue(),
            }
        }
        None => {
            let lock = client.lock(&args.key).watch_events();
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
pub(crate) struct Watch {
    pub(crate) stop: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
}

impl Watch {
    pub(crate) fn start(key: &str, caught: &Arc<AtomicUsize>) -> Watch {
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
pub(crate) struct Progress<'a> {
    pub(crate) key: &'a str,
    pub(crate) terminal: bool,
    pub(crate) start: Instant,
    pub(crate) next_draw: Instant,
    pub(crate) drawn: bool,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(key: &'a str) -> Progress<'a> {
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
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        if self.terminal && now >= self.next_draw {
            let waited = (now - self.start).as_secs_f64();
            eprint!("\rdflockctl: waiting for {}: {waited:.1}s", self.key);
            self.drawn = true;
            self.next_draw = now + PROGRESS_TICK;
        }
    }

    /// Erases the line (and a `^C` the terminal echoed on it) so later output starts clean.
    pub(crate) fn erase(&mut self) {
        if std::mem::take(&mut self.drawn) {
            eprint!("\r\x1b[K");
        }
    }
}

/// What `run` runs: `sh -c LINE` for `-c`, else COMMAND; `None` for neither (hold the lock).
pub(crate) fn command_for(args: &RunArgs) -> Option<Command> {
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
pub(crate) fn lock_env(guard: &Guard) -> [(&'static str, String); 4] {
    [
        ("DFLOCKD_LOCK_KEY", guard.key().to_owned()),
        ("DFLOCKD_LOCK_TOKEN", guard.token().to_string()),
        ("DFLOCKD_LOCK_FENCE", guard.fence().to_string()),
        ("DFLOCKD_LOCK_LEASE", guard.lease().as_secs().to_string()),
    ]
}

pub(crate) fn spawn(command: &mut Command) -> Result<Child, Failure> {
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
pub(crate) fn supervise(
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
pub(crate) fn hold(guard: &Guard, caught: &AtomicUsize) -> Result<u8, Failure> {
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
pub(crate) fn send_signal(child: &Child, signal: c_int) {
    // The signals passed here are the named ones caught or sent above; a failure means the
    // command has already exited, which the caller's next wait reports.
    if let Some(signal) = Signal::from_named_raw(signal) {
        let _ = kill_process(Pid::from_child(child), signal);
    }
}

/// SIGTERM, then SIGKILL if the command is still running after `grace`.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
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
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => signal_status(signal as usize),
        (None, None) => 1,
    }
}

/// The shell's status for "ended by signal N": 128 + N.
pub(crate) fn signal_status(signal: usize) -> u8 {
    128u8.wrapping_add(signal as u8)
}
