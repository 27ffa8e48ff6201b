//! Logging that never blocks the event loop.
//!
//! The [`log`] macros anywhere in the process end in [`Logger`], which formats the record into a
//! finished line (timestamp, level, message) on the calling thread and hands it to a bounded
//! queue with `try_send`; a dedicated thread drains the queue into the sink (stderr). The caller
//! therefore never waits for the sink: when the sink stalls (a pipe whose reader paused) the
//! queue fills, and further lines are dropped and counted. Once the logging thread has caught up
//! (the queue is empty) it writes one `N log lines dropped` line.
//!
//! Lines are formatted by the caller, not by the logging thread, so their timestamp is the time
//! of the event even when the sink is seconds behind; that takes a clock read and one `String`,
//! and needs no lock. The format is `<RFC 3339 UTC time> [<LEVEL>] <message>`.
//!
//! The logging thread touches nothing but the queue, the drop counter and the sink.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Lines the queue holds; about 100 KB of typical lines.
pub const QUEUE_CAPACITY: usize = 1024;
/// How long [`Log::flush`] waits for the queued lines to reach the sink.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// What travels from the loggers to the logging thread.
enum Message {
    /// A finished line, with its newline.
    Line(String),
    /// Answer on the enclosed channel once everything sent before has been written.
    Flush(SyncSender<()>),
}

/// The sending end of the log queue. Cheap to share: sending never blocks.
#[derive(Debug)]
pub struct LogQueue {
    sender: SyncSender<Message>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    /// Starts the logging thread, which writes to `sink`; the queue holds `capacity` lines.
    pub fn start<W: Write + Send + 'static>(capacity: usize, sink: W) -> io::Result<LogQueue> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        thread::Builder::new()
            .name("log".into())
            .spawn(move || drain(&receiver, &counter, sink))?;
        Ok(LogQueue { sender, dropped })
    }

    /// Queues `line` (which ends in a newline), or drops and counts it if the queue is full.
    /// Never blocks.
    pub fn push(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Disconnected: the logging thread is gone (the sink failed for good); nothing to do.
    }

    /// Waits at most `wait` until every line queued so far has been written and the sink
    /// flushed. Returns whether that happened in time.
    pub fn flush(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let (done, finished) = mpsc::sync_channel(1);
        let mut marker = Message::Flush(done);
        loop {
            match self.sender.try_send(marker) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    marker = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The logging thread: writes lines until every sender is gone, and reports drops whenever it
/// has caught up.
fn drain<W: Write>(receiver: &Receiver<Message>, dropped: &AtomicU64, mut sink: W) {
    loop {
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                report_dropped(dropped, &mut sink);
                let _ = sink.flush();
                match receiver.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match message {
            // A failed write loses the line; there is nowhere else to report it.
            Message::Line(line) => drop(sink.write_all(line.as_bytes())),
            Message::Flush(done) => {
                report_dropped(dropped, &mut sink);
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Writes `N log lines dropped` if lines were dropped since the last report.
fn report_dropped<W: Write>(dropped: &AtomicU64, sink: &mut W) {
    let count = dropped.swap(0, Ordering::Relaxed);
    if count > 0 {
        let line = format_line(Level::Warn, format_args!("{count} log lines dropped"));
        let _ = sink.write_all(line.as_bytes());
    }
}

/// One log line as the server writes it: `<RFC 3339 UTC time> [<LEVEL>] <message>\n`.
pub fn format_line(level: Level, message: fmt::Arguments<'_>) -> String {
    let now = OffsetDateTime::now_utc();
    // Rfc3339 fails only for years outside 0..=9999.
    let time = now.format(&Rfc3339).unwrap_or_default();
    format!("{time} [{level}] {message}\n")
}

/// The process-wide [`Log`] implementation in front of a [`LogQueue`].
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    queue: LogQueue,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // rustls narrates every handshake at debug level; keep --debug about our own requests.
        metadata.level() <= self.level && !metadata.target().starts_with("rustls")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.queue.push(format_line(record.level(), *record.args()));
        }
    }

    fn flush(&self) {
        self.queue.flush(FLUSH_WAIT);
    }
}

/// Installs a [`Logger`] at `level` that writes to stderr through a queue of [`QUEUE_CAPACITY`]
/// lines. Call once, at start-up; call `log::logger().flush()` before exiting so the last lines
/// are written.
pub fn init(level: LevelFilter) -> io::Result<()> {
    let queue = LogQueue::start(QUEUE_CAPACITY, io::stderr())?;
    // The logger lives as long as the process.
    let logger: &'static Logger = Box::leak(Box::new(Logger { level, queue }));
    log::set_logger(logger).map_err(|e| io::Error::other(e.to_string()))?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink that blocks every write until the test lets it go, and keeps what it was given.
    #[derive(Clone)]
    struct GatedSink {
        written: Arc<Mutex<Vec<u8>>>,
        /// The sink announces each write here, then waits for a permit on `gate`.
        started: SyncSender<()>,
        gate: Arc<Mutex<Receiver<()>>>,
    }

    impl Write for GatedSink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.started.try_send(());
            let _ = self.gate.lock().unwrap().recv();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_beyond_a_full_queue_are_dropped_counted_and_reported() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (started, write_started) = mpsc::sync_channel(1);
        let (open, gate) = mpsc::channel();
        let sink = GatedSink {
            written: written.clone(),
            started,
            gate: Arc::new(Mutex::new(gate)),
        };
        let queue = LogQueue::start(4, sink).unwrap();
        queue.push("first\n".into());
        // The logging thread now holds "first" and is stuck in the sink.
        write_started.recv().unwrap();
        let pushing = Instant::now();
        for i in 0..10 {
            queue.push(format!("line {i}\n"));
        }
        assert!(pushing.elapsed() < Duration::from_secs(1), "push blocked");
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 6);
        for _ in 0..100 {
            open.send(()).unwrap();
        }
        assert!(queue.flush(Duration::from_secs(5)));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            ["first", "line 0", "line 1", "line 2", "line 3"]
        );
        assert!(lines[5].ends_with(" [WARN] 6 log lines dropped"), "{text}");
        assert_eq!(lines.len(), 6);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn flush_gives_up_after_its_wait_when_the_sink_is_stuck() {
        let (started, write_started) = mpsc::sync_channel(1);
        let (_never_opened, gate) = mpsc::channel();
        let sink = GatedSink {
            written: Arc::default(),
            started,
            gate: Arc::new(Mutex::new(gate)),
        };
        let queue = LogQueue::start(2, sink).unwrap();
        queue.push("stuck\n".into());
        write_started.recv().unwrap();
        let flushing = Instant::now();
        assert!(!queue.flush(Duration::from_millis(100)));
        let took = flushing.elapsed();
        assert!(took < Duration::from_secs(2), "flush waited {took:?}");
    }

    #[test]
    fn lines_carry_an_rfc3339_utc_time_and_the_level() {
        let line = format_line(Level::Info, format_args!("hello {}", 7));
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "[INFO] hello 7\n");
        let year: i32 = time[..4].parse().unwrap();
        assert_eq!(year, OffsetDateTime::now_utc().year(), "{time}");
        assert_eq!(&time[10..11], "T", "{time}");
        assert!(time.ends_with('Z'), "{time}");
    }
}
