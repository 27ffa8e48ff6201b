//! The bulk-work scenarios of `stall`: many leases expiring together, a connection holding many
//! locks leaving, `stats` listing many keys, a signal fanned out to many subscribers. Each uses
//! pipelined raw connections for its set-up and returns when its work happened.

use std::io::{BufRead, BufReader, ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::{io, thread};

use dflockd::client::{Connection, Error as ClientError, Kind};
use mio::{Events, Interest, Poll, Token};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::{
    BATCH, CHANNEL, DELIVERY_DEADLINE, EXPIRY_GRACE, ORPHAN_WINDOW, PATTERN, SIGNALS,
    STATS_REQUESTS, Work,
};
use crate::IO_GRACE;

/// A plain TCP connection for pipelined requests.
pub(super) struct Raw {
    pub(super) writer: TcpStream,
    pub(super) reader: BufReader<TcpStream>,
    pub(super) line: String,
}

impl Raw {
    pub(super) fn connect(addr: &str) -> Result<Raw, String> {
        let open = || -> io::Result<Raw> {
            let writer = TcpStream::connect(addr)?;
            writer.set_nodelay(true)?;
            writer.set_read_timeout(Some(IO_GRACE))?;
            let reader = BufReader::new(writer.try_clone()?);
            Ok(Raw {
                writer,
                reader,
                line: String::new(),
            })
        };
        open().map_err(|e| format!("cannot connect to {addr}: {e}"))
    }

    /// The socket, for reading pushes elsewhere once every reply has been read.
    pub(super) fn into_stream(self) -> TcpStream {
        debug_assert!(
            self.reader.buffer().is_empty(),
            "bytes after the last reply"
        );
        self.writer
    }

    /// Writes `requests` at once, then reads one reply per request and hands it to `check`.
    pub(super) fn batch(
        &mut self,
        requests: &[u8],
        count: usize,
        check: impl FnMut(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        self.batch_by(requests, count, None, check).map(drop)
    }

    /// As [`Raw::batch`]; with a `deadline`, reading stops there or at the server's close
    /// instead of failing, and the result is the number of replies read.
    pub(super) fn batch_by(
        &mut self,
        requests: &[u8],
        count: usize,
        deadline: Option<Instant>,
        mut check: impl FnMut(&str) -> Result<(), String>,
    ) -> Result<usize, String> {
        self.writer
            .write_all(requests)
            .map_err(|e| format!("write: {e}"))?;
        for done in 0..count {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(done);
                }
                self.writer
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("read timeout: {e}"))?;
            }
            self.line.clear();
            match self.reader.read_line(&mut self.line) {
                Ok(0) if deadline.is_some() => return Ok(done),
                Ok(0) => return Err("the server closed the connection".to_owned()),
                Ok(_) => check(self.line.trim_end())?,
                // A socket read timeout reports `WouldBlock` on Unix.
                Err(e) if deadline.is_some() && e.kind() == IoKind::WouldBlock => return Ok(done),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(count)
    }
}

/// Acquires keys `stall-<first>..stall-<end>` in one batch; returns their tokens.
pub(super) fn acquire_batch(
    raw: &mut Raw,
    keys: std::ops::Range<usize>,
    lease: u64,
) -> Result<Vec<String>, String> {
    let requests: String = keys
        .clone()
        .map(|i| format!("l\nstall-{i}\n0 {lease}\n"))
        .collect();
    let mut tokens = Vec::with_capacity(keys.len());
    raw.batch(requests.as_bytes(), keys.len(), |reply| {
        let mut fields = reply.split(' ');
        match (fields.next(), fields.next()) {
            (Some("ok"), Some(token)) => {
                tokens.push(token.to_owned());
                Ok(())
            }
            _ => Err(format!("acquire answered {reply:?}")),
        }
    })?;
    Ok(tokens)
}

/// Many leases falling due within the time it took to grant them.
pub(super) fn expiry(addr: &str, size: usize, lease_s: u64) -> Result<Work, String> {
    let mut raw = Raw::connect(addr)?;
    let start = Instant::now();
    for first in (0..size).step_by(BATCH) {
        acquire_batch(&mut raw, first..size.min(first + BATCH), lease_s)?;
    }
    let granted = Instant::now();
    let lease = Duration::from_secs(lease_s);
    // Every grant happened between `start` and `granted`, so that is when leases fall due.
    let bulk = (start + lease, granted + lease + EXPIRY_GRACE);
    // The connection stays open: closing it would release the locks before they expire.
    thread::sleep(bulk.1.saturating_duration_since(Instant::now()));
    drop(raw);
    let spread = (granted - start).as_secs_f64();
    Ok(Work {
        setup: (start, granted),
        bulk,
        facts: vec![("leases", size as f64), ("leases_due_over_s", spread)],
    })
}

/// Key of the sweep scenario's semaphore.
const SWEEP_KEY: &str = "stall-sem";

/// Many holders of one semaphore falling due at once while another client keeps asking for a
/// slot: each of its acquires first ends holders whose lease has passed (spec §8.3), which the
/// server bounds per turn.
pub(super) fn sweep(
    addr: &str,
    size: usize,
    lease_s: u64,
    mut asker: Connection,
) -> Result<Work, String> {
    let mut raw = Raw::connect(addr)?;
    let start = Instant::now();
    let request = format!("sl\n{SWEEP_KEY}\n0 {size} {lease_s}\n");
    for first in (0..size).step_by(BATCH) {
        let count = BATCH.min(size - first);
        raw.batch(
            request.repeat(count).as_bytes(),
            count,
            |reply| match reply.starts_with("ok ") {
                true => Ok(()),
                false => Err(format!("acquire answered {reply:?}")),
            },
        )?;
    }
    let granted = Instant::now();
    let lease = Duration::from_secs(lease_s);
    let bulk = (start + lease, granted + lease + EXPIRY_GRACE);
    thread::sleep(bulk.0.saturating_duration_since(Instant::now()));
    let kind = Kind::Semaphore { limit: size as u64 };
    let mut acquires = 0;
    while Instant::now() < bulk.1 {
        // Granted or not, every try sweeps first; a slot it gets goes straight back.
        match asker.acquire(kind, SWEEP_KEY, Duration::ZERO, None) {
            Ok(grant) => asker
                .release(kind, SWEEP_KEY, &grant.token)
                .map_err(|e| format!("release: {e}"))?,
            Err(ClientError::Timeout) => {}
            Err(e) => return Err(format!("try-lock of {SWEEP_KEY}: {e}")),
        }
        acquires += 1;
    }
    // The connection stays open until now: closing it would release the holders instead.
    drop(raw);
    Ok(Work {
        setup: (start, granted),
        bulk,
        facts: vec![
            ("holders", size as f64),
            ("holders_due_over_s", (granted - start).as_secs_f64()),
            ("acquires_meanwhile", acquires as f64),
        ],
    })
}

/// One connection holding many locks goes away; the server releases them all.
pub(super) fn disconnect(addr: &str, size: usize, mut watcher: Connection) -> Result<Work, String> {
    let (start, triggered) = hold_and_leave(addr, size)?;
    // Locks are released in grant order, so the last key is free once all of them are.
    let last = format!("stall-{}", size - 1);
    loop {
        match watcher.acquire(Kind::Lock, &last, Duration::ZERO, None) {
            Ok(grant) => {
                watcher
                    .release(Kind::Lock, &last, &grant.token)
                    .map_err(|e| format!("release: {e}"))?;
                break;
            }
            Err(ClientError::Timeout) if triggered.elapsed() < DELIVERY_DEADLINE => {}
            Err(e) => return Err(format!("try-lock of {last}: {e}")),
        }
    }
    let released = Instant::now();
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, released),
        facts: vec![
            ("locks", size as f64),
            ("all_released_s", (released - triggered).as_secs_f64()),
        ],
    })
}

/// One connection holding many locks goes away; the server keeps them held.
pub(super) fn orphan(addr: &str, size: usize, mut watcher: Connection) -> Result<Work, String> {
    let (start, triggered) = hold_and_leave(addr, size)?;
    thread::sleep(ORPHAN_WINDOW);
    let ended = Instant::now();
    let last = format!("stall-{}", size - 1);
    match watcher.acquire(Kind::Lock, &last, Duration::ZERO, None) {
        Err(ClientError::Timeout) => {}
        Ok(_) => {
            return Err(format!(
                "{last} was released: run the server with --no-auto-release-on-disconnect"
            ));
        }
        Err(e) => return Err(format!("try-lock of {last}: {e}")),
    }
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, ended),
        facts: vec![("locks", size as f64)],
    })
}

/// Takes `size` locks on one connection and closes it; returns when the set-up started
/// and when the connection was closed.
pub(super) fn hold_and_leave(addr: &str, size: usize) -> Result<(Instant, Instant), String> {
    const LONG_LEASE: u64 = 3600;
    let mut raw = Raw::connect(addr)?;
    let start = Instant::now();
    for first in (0..size).step_by(BATCH) {
        acquire_batch(&mut raw, first..size.min(first + BATCH), LONG_LEASE)?;
    }
    let triggered = Instant::now();
    drop(raw);
    Ok((start, triggered))
}

/// Many idle keys, then a few `stats` requests that must list them all.
pub(super) fn stats_reply(addr: &str, size: usize, mut conn: Connection) -> Result<Work, String> {
    let start = Instant::now();
    create_idle_keys(addr, size)?;
    let triggered = Instant::now();
    let (mut slowest, mut bytes) = (Duration::ZERO, 0);
    for _ in 0..STATS_REQUESTS {
        let sent = Instant::now();
        bytes = conn.stats_json().map_err(|e| format!("stats: {e}"))?.len();
        slowest = slowest.max(sent.elapsed());
    }
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, Instant::now()),
        facts: vec![
            ("keys", size as f64),
            ("stats_requests", STATS_REQUESTS as f64),
            ("stats_reply_bytes", bytes as f64),
            ("slowest_stats_s", slowest.as_secs_f64()),
        ],
    })
}

/// Leaves `size` idle keys `stall-<i>` behind (pipelined `l` + `r`), which `stats` lists.
pub(super) fn create_idle_keys(addr: &str, size: usize) -> Result<(), String> {
    let mut raw = Raw::connect(addr)?;
    for first in (0..size).step_by(BATCH) {
        let keys = first..size.min(first + BATCH);
        let tokens = acquire_batch(&mut raw, keys.clone(), 60)?;
        let releases: String = keys
            .zip(&tokens)
            .map(|(i, token)| format!("r\nstall-{i}\n{token}\n"))
            .collect();
        raw.batch(releases.as_bytes(), tokens.len(), |reply| match reply {
            "ok" => Ok(()),
            _ => Err(format!("release answered {reply:?}")),
        })?;
    }
    Ok(())
}

/// Many subscribers, then signals published one at a time on `publisher`.
pub(super) fn fanout(addr: &str, size: usize, mut publisher: Connection) -> Result<Work, String> {
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let listen = format!("listen\n{PATTERN}\n\n");
    let mut subscribers = Subscribers::new(subscribe(addr, size, &listen)?)?;
    let triggered = Instant::now();
    let (arrival, published) = thread::scope(|scope| {
        let counter = scope.spawn(|| subscribers.await_lines(SIGNALS, DELIVERY_DEADLINE));
        let published =
            (0..SIGNALS).try_for_each(|n| match publisher.emit(CHANNEL, &format!("payload-{n}")) {
                Ok(count) if count == size as u64 => Ok(()),
                Ok(count) => Err(format!("signal reached {count} of {size} subscribers")),
                Err(e) => Err(format!("signal: {e}")),
            });
        let arrival = counter.join().expect("the delivery counter does not panic");
        (arrival, published)
    });
    published?;
    let (first, all) = arrival?;
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, all),
        facts: vec![
            ("subscribers", size as f64),
            ("signals", SIGNALS as f64),
            (
                "first_signal_delivered_s",
                (first - triggered).as_secs_f64(),
            ),
            ("all_signals_delivered_s", (all - triggered).as_secs_f64()),
        ],
    })
}

/// Opens `size` connections that each send `request` (a `listen`) and checks every reply.
pub(super) fn subscribe(addr: &str, size: usize, request: &str) -> Result<Vec<TcpStream>, String> {
    let failed = |e: io::Error| format!("subscriber set-up: {e}");
    let mut streams = Vec::with_capacity(size);
    // All requests first, all replies after: the server answers while we keep connecting.
    for _ in 0..size {
        let mut stream = TcpStream::connect(addr).map_err(failed)?;
        stream.write_all(request.as_bytes()).map_err(failed)?;
        streams.push(stream);
    }
    for stream in &mut streams {
        let mut reply = [0; 3];
        stream.set_read_timeout(Some(IO_GRACE)).map_err(failed)?;
        stream.read_exact(&mut reply).map_err(failed)?;
        if &reply != b"ok\n" {
            return Err(format!(
                "listen answered {:?}",
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    Ok(streams)
}

/// Subscribed connections read through one poll; counts the lines pushed to each.
pub(super) struct Subscribers {
    pub(super) poll: Poll,
    pub(super) events: Events,
    pub(super) streams: Vec<mio::net::TcpStream>,
    /// Lines read so far, per subscriber.
    pub(super) lines: Vec<usize>,
    /// Subscribers the server disconnected; they are no longer registered.
    pub(super) gone: Vec<bool>,
    pub(super) buf: Vec<u8>,
}

impl Subscribers {
    /// Registers `streams`, whose replies have all been read, for reading.
    pub(super) fn new(streams: Vec<TcpStream>) -> Result<Subscribers, String> {
        let failed = |e: io::Error| format!("subscriber set-up: {e}");
        let poll = Poll::new().map_err(failed)?;
        let mut registered = Vec::with_capacity(streams.len());
        for (i, stream) in streams.into_iter().enumerate() {
            stream.set_nonblocking(true).map_err(failed)?;
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .map_err(failed)?;
            registered.push(stream);
        }
        let n = registered.len();
        Ok(Subscribers {
            poll,
            events: Events::with_capacity(1024),
            streams: registered,
            lines: vec![0; n],
            gone: vec![false; n],
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits at most `timeout` for pushes and counts what arrived; a subscriber that reaches
    /// end of stream or an error is marked gone.
    pub(super) fn pump(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == IoKind::Interrupted => return Ok(()),
            result => result.map_err(|e| format!("poll: {e}"))?,
        }
        for event in &self.events {
            let i = event.token().0;
            // Edge-triggered: drain the socket before waiting again.
            while !self.gone[i] {
                match self.streams[i].read(&mut self.buf) {
                    Ok(0) => self.gone[i] = true,
                    Ok(n) => self.lines[i] += self.buf[..n].iter().filter(|&&b| b == b'\n').count(),
                    Err(e) if e.kind() == IoKind::WouldBlock => break,
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(_) => self.gone[i] = true,
                }
            }
            if self.gone[i] {
                // Deregistering cannot fail for a registered socket; a failure would only
                // leave a spurious event behind, which the `gone` check absorbs.
                let _ = self.poll.registry().deregister(&mut self.streams[i]);
            }
        }
        Ok(())
    }

    /// Counts pushed lines until `stop` is raised.
    pub(super) fn drain(&mut self, stop: &AtomicBool) -> Result<(), String> {
        while !stop.load(Ordering::Relaxed) {
            self.pump(Duration::from_millis(10))?;
        }
        Ok(())
    }

    /// Counts pushed lines until every subscriber has `expected` of them; returns when every
    /// subscriber had its first one and when all had arrived.
    pub(super) fn await_lines(
        &mut self,
        expected: usize,
        limit: Duration,
    ) -> Result<(Instant, Instant), String> {
        let deadline = Instant::now() + limit;
        let mut first_all = None;
        while self.lines.iter().any(|&n| n < expected) {
            if let Some(i) = self.gone.iter().position(|&gone| gone) {
                return Err(format!("subscriber {i} was disconnected"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let complete = self.lines.iter().filter(|&&n| n >= expected).count();
                return Err(format!(
                    "only {complete} of {} subscribers got every signal within {}s",
                    self.lines.len(),
                    limit.as_secs()
                ));
            }
            self.pump(left)?;
            if first_all.is_none() && self.lines.iter().all(|&n| n > 0) {
                first_all = Some(Instant::now());
            }
        }
        let all = Instant::now();
        Ok((first_all.unwrap_or(all), all))
    }
}

/// Lifts the soft open-file limit to the hard one (every subscriber is a socket) and returns
/// the new soft limit, `u64::MAX` for unlimited.
pub(super) fn raise_fd_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            ..limit
        },
    )?;
    Ok(limit.maximum.unwrap_or(u64::MAX))
}
