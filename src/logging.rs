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
//! and needs no lock. Two formats ([`LogFormat`]): text, `<RFC 3339 UTC time> [<LEVEL>]
//! <message> key=value ...`, and JSON, one object per line with `ts`, `level`, `msg` and the
//! record's key-value fields (`info!(peer = %addr; "...")`), for log shippers.
//!
//! The logging thread touches nothing but the queue, the drop counter and the sink.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use log::kv::{self, VisitSource};
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
    /// Starts the logging thread, which writes to `sink`; the queue holds `capacity` lines. The
    /// thread's own line (lines dropped) is written in `format`.
    pub fn start<W: Write + Send + 'static>(
        capacity: usize,
        sink: W,
        format: LogFormat,
    ) -> io::Result<LogQueue> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        thread::Builder::new()
            .name("log".into())
            .spawn(move || drain(&receiver, &counter, sink, format))?;
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
fn drain<W: Write>(
    receiver: &Receiver<Message>,
    dropped: &AtomicU64,
    mut sink: W,
    format: LogFormat,
) {
    loop {
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                report_dropped(dropped, &mut sink, format);
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
                report_dropped(dropped, &mut sink, format);
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Writes `N log lines dropped` if lines were dropped since the last report.
fn report_dropped<W: Write>(dropped: &AtomicU64, sink: &mut W, format: LogFormat) {
    let count = dropped.swap(0, Ordering::Relaxed);
    if count > 0 {
        let message = format_args!("{count} log lines dropped");
        let line = format_line(format, Level::Warn, message, &NO_FIELDS);
        let _ = sink.write_all(line.as_bytes());
    }
}

/// Fields of a line that has none.
const NO_FIELDS: [(&str, &str); 0] = [];

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `<RFC 3339 UTC time> [<LEVEL>] <message> key=value ...`
    #[default]
    Text,
    /// `{"ts":"<RFC 3339 UTC time>","level":"<level>","msg":"<message>","key":value,...}`
    Json,
}

/// One log line as the server writes it, in `format`, with `fields` after the message.
pub fn format_line(
    format: LogFormat,
    level: Level,
    message: fmt::Arguments<'_>,
    fields: &dyn kv::Source,
) -> String {
    let now = OffsetDateTime::now_utc();
    // Rfc3339 fails only for years outside 0..=9999.
    let time = now.format(&Rfc3339).unwrap_or_default();
    match format {
        LogFormat::Text => {
            let mut line = format!("{time} [{level}] {message}");
            let _ = fields.visit(&mut TextFields(&mut line));
            line.push('\n');
            line
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("ts".into(), time.into());
            object.insert("level".into(), level.as_str().to_ascii_lowercase().into());
            object.insert("msg".into(), message.to_string().into());
            let _ = fields.visit(&mut JsonFields(&mut object));
            let mut line = serde_json::Value::Object(object).to_string();
            line.push('\n');
            line
        }
    }
}

/// Appends ` key=value` per field; values with spaces or quotes are quoted.
struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let text = value.to_string();
        if text.is_empty() || text.contains([' ', '"', '=']) {
            let _ = write!(self.0, " {key}={text:?}");
        } else {
            let _ = write!(self.0, " {key}={text}");
        }
        Ok(())
    }
}

/// Adds each field to a JSON object: numbers and booleans as such, anything else as a string.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(x) = value.to_f64() {
            x.into()
        } else {
            value.to_string().into()
        };
        // The fixed keys come first and win: a field cannot overwrite them.
        self.0.entry(key.as_str().to_owned()).or_insert(json);
        Ok(())
    }
}

/// The process-wide [`Log`] implementation in front of a [`LogQueue`].
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    format: LogFormat,
    queue: LogQueue,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // rustls narrates every handshake at debug level; keep --debug about our own requests.
        metadata.level() <= self.level && !metadata.target().starts_with("rustls")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format_line(
                self.format,
                record.level(),
                *record.args(),
                record.key_values(),
            );
            self.queue.push(line);
        }
    }

    fn flush(&self) {
        self.queue.flush(FLUSH_WAIT);
    }
}

/// Installs a [`Logger`] at `level` that writes to stderr in `format` through a queue of
/// [`QUEUE_CAPACITY`] lines. Call once, at start-up; call `log::logger().flush()` before exiting
/// so the last lines are written.
pub fn init(level: LevelFilter, format: LogFormat) -> io::Result<()> {
    let queue = LogQueue::start(QUEUE_CAPACITY, io::stderr(), format)?;
    // The logger lives as long as the process.
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        level,
        format,
        queue,
    }));
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
        let queue = LogQueue::start(4, sink, LogFormat::Text).unwrap();
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
        let queue = LogQueue::start(2, sink, LogFormat::Text).unwrap();
        queue.push("stuck\n".into());
        write_started.recv().unwrap();
        let flushing = Instant::now();
        assert!(!queue.flush(Duration::from_millis(100)));
        let took = flushing.elapsed();
        assert!(took < Duration::from_secs(2), "flush waited {took:?}");
    }

    #[test]
    fn lines_carry_an_rfc3339_utc_time_and_the_level() {
        let line = format_line(
            LogFormat::Text,
            Level::Info,
            format_args!("hello {}", 7),
            &[("n", kv::Value::from(1u64))],
        );
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "[INFO] hello 7 n=1\n");
        let year: i32 = time[..4].parse().unwrap();
        assert_eq!(year, OffsetDateTime::now_utc().year(), "{time}");
        assert_eq!(&time[10..11], "T", "{time}");
        assert!(time.ends_with('Z'), "{time}");
    }

    #[test]
    fn text_lines_append_fields_and_quote_the_ones_with_spaces() {
        let fields = [
            ("peer", kv::Value::from("127.0.0.1:5123")),
            ("reason", kv::Value::from("idle timeout")),
            ("ms", kv::Value::from(12u64)),
        ];
        let line = format_line(
            LogFormat::Text,
            Level::Info,
            format_args!("closed"),
            &fields,
        );
        let (_, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "[INFO] closed peer=127.0.0.1:5123 reason=\"idle timeout\" ms=12\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_typed_fields() {
        let fields = [
            ("conn", kv::Value::from(7u64)),
            ("tls", kv::Value::from(true)),
            ("msg", kv::Value::from("cannot replace the message")),
            ("peer", kv::Value::from("[::1]:80 \"x\"\n")),
        ];
        let line = format_line(
            LogFormat::Json,
            Level::Warn,
            format_args!("a \"b\"\n"),
            &fields,
        );
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "warn");
        assert_eq!(value["msg"], "a \"b\"\n");
        assert_eq!(value["conn"], 7);
        assert_eq!(value["tls"], true);
        assert_eq!(value["peer"], "[::1]:80 \"x\"\n");
        assert!(value["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
    }
}
