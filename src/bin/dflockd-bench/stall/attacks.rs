//! Stall scenarios that reproduce what a hostile or careless client can make the server do:
//! match signals against deep wildcard patterns, fail authentication, start TLS handshakes,
//! ask for huge `stats` replies it never reads, flood subscribers that never read, and leave
//! a queue group all at once. Each scenario bounds its request count and its time; it owns
//! its connections and closes them before it returns. It speaks only raw protocol bytes (and
//! one pre-recorded ClientHello), never anything but the server it is given.

use std::io::{self, ErrorKind as IoKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::bulk::{Raw, Subscribers, create_idle_keys, raise_fd_limit, subscribe};
use super::{BATCH, CHANNEL, DELIVERY_DEADLINE, Work};
use dflockd::client::Connection;

/// Leading tokens of a deep pattern that are each empty or `*`.
const WILD_TOKENS: u32 = 17;
/// Tokens of a deep pattern, the final `>` included: 17 + 217 + 1. With 234 dots, 17 stars
/// at most and the `>`, a pattern is at most 252 bytes, under the 256-byte key limit.
const DEEP_TOKENS: usize = 235;
/// An odd multiplier: `i * SCATTER mod 2^17` is a bijection on 17-bit numbers, so distinct
/// pattern indices give distinct star masks, spread over the whole range.
const SCATTER: u32 = 0x9E37_79B1;
/// How long auth-fail waits for the server to close every connection, and tls-hello for
/// every first answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);
/// The token auth-fail presents; the server must be configured with another one.
const WRONG_TOKEN: &str = "dflockd-bench-wrong-token";
/// File descriptors stats-flood leaves free for the probe, the helpers and the runtime.
const FD_MARGIN: u64 = 64;
/// storm subscribers that read their pushes; the others never read.
const STORM_READERS: usize = 5;
/// storm publisher connections, each sending one signal at a time.
const STORM_PUBLISHERS: usize = 5;
/// storm payload bytes; with the channel, a push stays under the 64 KiB line limit.
const STORM_PAYLOAD: usize = 60 * 1024;
/// The queue group group-leave's members join.
const GROUP: &str = "stall";

/// Pattern `index` of deep-patterns: 17 tokens empty or `*` (the bits of a scattered
/// index), 217 empty tokens, then `>`. It matches [`deep_channel`].
fn deep_pattern(index: u32) -> String {
    let mask = index.wrapping_mul(SCATTER) & ((1 << WILD_TOKENS) - 1);
    let mut tokens: Vec<&str> = (0..WILD_TOKENS)
        .map(|bit| if mask >> bit & 1 == 1 { "*" } else { "" })
        .collect();
    tokens.resize(DEEP_TOKENS - 1, "");
    tokens.push(">");
    tokens.join(".")
}

/// The channel every deep pattern matches: 235 empty tokens, one more than the tokens before
/// the patterns' `>`, which needs at least one.
fn deep_channel() -> String {
    ".".repeat(DEEP_TOKENS - 1)
}

/// `size` distinct deep patterns spread over `conns` subscriber connections, then `signals`
/// pipelined signals that each match all of them, answered within 30 s or not counted.
pub fn deep_patterns(
    addr: &str,
    size: usize,
    conns: usize,
    signals: usize,
) -> Result<Work, String> {
    if size > 1 << WILD_TOKENS {
        return Err(format!(
            "deep-patterns has {} distinct patterns",
            1 << WILD_TOKENS
        ));
    }
    let conns = conns.min(size);
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let streams = (0..conns)
        .map(|c| listen_deep(addr, (c..size).step_by(conns)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut subscribers = Subscribers::new(streams)?;
    let mut publisher = Raw::connect(addr)?;
    let triggered = Instant::now();
    let channel = deep_channel();
    let expected = format!("ok {conns}");
    let deadline = triggered + ANSWER_DEADLINE;
    let stop = AtomicBool::new(false);
    let mut errors = 0;
    let (replies, read) = thread::scope(|scope| {
        // Subscribers read their pushes, so none is cut off as a slow consumer.
        let reader = scope.spawn(|| subscribers.drain(&stop));
        let mut replies = Ok(0);
        for first in (0..signals).step_by(BATCH) {
            let batch = first..signals.min(first + BATCH);
            let requests: String = batch
                .clone()
                .map(|n| format!("signal\n{channel}\nd{n}\n"))
                .collect();
            let answered =
                publisher.batch_by(requests.as_bytes(), batch.len(), Some(deadline), |reply| {
                    if reply == expected {
                        Ok(())
                    } else if reply == "error" {
                        // The server gave up on the connection; it closes next.
                        errors += 1;
                        Ok(())
                    } else {
                        Err(format!("signal answered {reply:?}, expected {expected:?}"))
                    }
                });
            let full = matches!(answered, Ok(n) if n == batch.len());
            replies = replies.and_then(|done| answered.map(|n| done + n));
            if !full {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        (
            replies,
            reader.join().expect("the push reader does not panic"),
        )
    });
    let replies = replies?;
    read?;
    let ended = Instant::now();
    let longest = (0..size as u32).map(|i| deep_pattern(i).len()).max();
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, ended),
        facts: vec![
            ("patterns", size as f64),
            ("subscriber_conns", conns as f64),
            ("longest_pattern_bytes", longest.unwrap_or(0) as f64),
            ("signals", signals as f64),
            ("replies_within_30s", replies as f64),
            ("error_replies", errors as f64),
            (
                "pushes_read",
                subscribers.lines.iter().sum::<usize>() as f64,
            ),
            ("replies_s", (ended - triggered).as_secs_f64()),
        ],
    })
}

/// One connection subscribed to the deep patterns `indices`, all replies read.
fn listen_deep(addr: &str, indices: impl Iterator<Item = usize>) -> Result<TcpStream, String> {
    let mut raw = Raw::connect(addr)?;
    let indices: Vec<usize> = indices.collect();
    for chunk in indices.chunks(BATCH) {
        let requests: String = chunk
            .iter()
            .map(|&i| format!("listen\n{}\n\n", deep_pattern(i as u32)))
            .collect();
        raw.batch(requests.as_bytes(), chunk.len(), |reply| match reply {
            "ok" => Ok(()),
            _ => Err(format!("listen answered {reply:?}")),
        })?;
    }
    Ok(raw.into_stream())
}

/// `size` connections each send a wrong `auth`; the server answers `error_auth` and closes
/// them about 100 ms later.
pub fn auth_fail(addr: &str, size: usize) -> Result<Work, String> {
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let mut conns = connect_many(addr, size)?;
    let triggered = Instant::now();
    let request = format!("auth\n_\n{WRONG_TOKEN}\n");
    for conn in &mut conns {
        conn.write_all(request.as_bytes())
            .map_err(|e| format!("auth: {e}"))?;
    }
    let deadline = triggered + ANSWER_DEADLINE;
    let (mut refused, mut closed) = (0, 0);
    for conn in &mut conns {
        match read_until_close(conn, deadline) {
            Ok(reply) => {
                closed += 1;
                refused += usize::from(reply.starts_with(b"error_auth\n"));
            }
            // Past the deadline every later read would time out at once.
            Err(e) if timed_out(&e) => break,
            Err(e) => return Err(format!("auth reply: {e}")),
        }
    }
    let ended = Instant::now();
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, ended),
        facts: vec![
            ("connections", size as f64),
            ("refused", refused as f64),
            ("closed_by_server", closed as f64),
            ("closed_within_s", (ended - triggered).as_secs_f64()),
        ],
    })
}

/// `size` connections each send the same ClientHello; then either every one waits for the
/// server's first answer and they all close (`drop_after` is `None`), or they close at once
/// and the run watches for `drop_after`.
pub fn tls_hello(addr: &str, size: usize, drop_after: Option<Duration>) -> Result<Work, String> {
    let hello = client_hello()?;
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let mut conns = connect_many(addr, size)?;
    let triggered = Instant::now();
    for conn in &mut conns {
        conn.write_all(&hello)
            .map_err(|e| format!("ClientHello: {e}"))?;
    }
    let mut facts = vec![
        ("connections", size as f64),
        ("client_hello_bytes", hello.len() as f64),
    ];
    if let Some(watch) = drop_after {
        drop(conns);
        thread::sleep(watch);
    } else {
        let deadline = triggered + ANSWER_DEADLINE;
        let mut buf = [0; 4096];
        let mut answered = 0;
        for conn in &mut conns {
            match read_by(conn, &mut buf, deadline) {
                Ok(n) => answered += usize::from(n > 0),
                // Past the deadline every later read would time out at once.
                Err(e) if timed_out(&e) => break,
                Err(_) => {}
            }
        }
        facts.extend([
            ("answered", answered as f64),
            ("answered_within_s", triggered.elapsed().as_secs_f64()),
        ]);
    }
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, Instant::now()),
        facts,
    })
}

/// The first flight of a TLS client: one ClientHello. Nothing is verified because the
/// handshake never gets that far; every connection replays the same bytes.
fn client_hello() -> Result<Vec<u8>, String> {
    let config = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("localhost is a valid DNS name");
    let mut tls =
        ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS client: {e}"))?;
    let mut hello = Vec::new();
    tls.write_tls(&mut hello)
        .map_err(|e| format!("TLS client: {e}"))?;
    Ok(hello)
}

/// How stats-flood floods.
pub struct Flood {
    /// Connections asked for (capped by the open-file limit).
    pub conns: usize,
    /// `stats` requests pipelined on each.
    pub requests: usize,
    /// How long the connections stay open after their requests.
    pub hold: Duration,
}

/// `keys` idle keys, then many connections that each pipeline a few `stats` and never read.
pub fn stats_flood(addr: &str, keys: usize, flood: Flood) -> Result<Work, String> {
    let soft = raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let budget = usize::try_from(soft.saturating_sub(FD_MARGIN)).unwrap_or(usize::MAX);
    let conns = flood.conns.min(budget);
    if conns < flood.conns {
        eprintln!(
            "dflockd-bench stall: stats-flood uses {conns} connections, the open-file soft \
             limit {soft} minus {FD_MARGIN}"
        );
    }
    let start = Instant::now();
    create_idle_keys(addr, keys)?;
    let mut flooders = connect_many(addr, conns)?;
    let triggered = Instant::now();
    let requests = "stats\n_\n\n".repeat(flood.requests);
    for conn in &mut flooders {
        conn.write_all(requests.as_bytes())
            .map_err(|e| format!("stats: {e}"))?;
    }
    thread::sleep(flood.hold);
    drop(flooders);
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, Instant::now()),
        facts: vec![
            ("keys", keys as f64),
            ("flood_connections", conns as f64),
            ("stats_requests", (conns * flood.requests) as f64),
            ("hold_s", flood.hold.as_secs_f64()),
        ],
    })
}

/// What one storm publisher did.
#[derive(Default)]
struct Published {
    signals: usize,
    deliveries: u64,
    /// Delivery count of its last signal.
    last_count: u64,
}

/// `size` subscribers of [`CHANNEL`], of which only [`STORM_READERS`] read, and
/// [`STORM_PUBLISHERS`] publishers sending large signals one at a time for `length`.
pub fn storm(addr: &str, size: usize, length: Duration) -> Result<Work, String> {
    if size < STORM_READERS {
        return Err(format!("storm needs at least {STORM_READERS} subscribers"));
    }
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let listen = format!("listen\n{CHANNEL}\n\n");
    let mut readers = Subscribers::new(subscribe(addr, STORM_READERS, &listen)?)?;
    let idle = subscribe(addr, size - STORM_READERS, &listen)?;
    let publishers = (0..STORM_PUBLISHERS)
        .map(|_| Raw::connect(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let request = format!("signal\n{CHANNEL}\n{}\n", "s".repeat(STORM_PAYLOAD));
    let triggered = Instant::now();
    let end = triggered + length;
    let stop = AtomicBool::new(false);
    let (published, read) = thread::scope(|scope| {
        let reader = scope.spawn(|| readers.drain(&stop));
        let handles: Vec<_> = publishers
            .into_iter()
            .map(|raw| scope.spawn(|| publish_until(raw, &request, end)))
            .collect();
        let published: Result<Vec<Published>, String> = handles
            .into_iter()
            .map(|h| h.join().expect("publishers do not panic"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        (published, reader.join().expect("the reader does not panic"))
    });
    let published = published?;
    read?;
    let ended = Instant::now();
    drop(idle);
    let total = |f: fn(&Published) -> u64| published.iter().map(f).sum::<u64>() as f64;
    let last = published.iter().map(|p| p.last_count).min().unwrap_or(0);
    let cut_off = readers.gone.iter().filter(|&&gone| gone).count();
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, ended),
        facts: vec![
            ("subscribers", size as f64),
            ("payload_bytes", STORM_PAYLOAD as f64),
            ("signals", total(|p| p.signals as u64)),
            ("deliveries", total(|p| p.deliveries)),
            ("last_delivery_count", last as f64),
            ("readers_cut_off", cut_off as f64),
        ],
    })
}

/// Sends `request` (a `signal`) one at a time until `end`, reading each `ok <count>`.
fn publish_until(mut raw: Raw, request: &str, end: Instant) -> Result<Published, String> {
    let mut done = Published::default();
    while Instant::now() < end {
        raw.batch(request.as_bytes(), 1, |reply| {
            let count = reply
                .strip_prefix("ok ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("signal answered {reply:?}"))?;
            done.signals += 1;
            done.deliveries += count;
            done.last_count = count;
            Ok(())
        })?;
    }
    Ok(done)
}

/// `size` members of one queue group close at once; the bulk work lasts until a signal on
/// `watcher` finds the group gone.
pub fn group_leave(addr: &str, size: usize, mut watcher: Connection) -> Result<Work, String> {
    raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let start = Instant::now();
    let members = subscribe(addr, size, &format!("listen\n{CHANNEL}\n{GROUP}\n"))?;
    let triggered = Instant::now();
    drop(members);
    loop {
        match watcher.emit(CHANNEL, "leave") {
            Ok(0) => break,
            Ok(_) if triggered.elapsed() < DELIVERY_DEADLINE => {}
            Ok(_) => return Err("the group still had members after 60 s".to_owned()),
            Err(e) => return Err(format!("signal: {e}")),
        }
    }
    let left = Instant::now();
    Ok(Work {
        setup: (start, triggered),
        bulk: (triggered, left),
        facts: vec![
            ("members", size as f64),
            ("all_left_s", (left - triggered).as_secs_f64()),
        ],
    })
}

/// Opens `size` plain connections without sending anything.
fn connect_many(addr: &str, size: usize) -> Result<Vec<TcpStream>, String> {
    (0..size)
        .map(|_| TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}")))
        .collect()
}

/// Whether a read failed only because its time ran out (a socket read timeout reports
/// `WouldBlock` on Unix).
fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), IoKind::TimedOut | IoKind::WouldBlock)
}

/// One read that gives up at `deadline` (with `TimedOut` or `WouldBlock`).
fn read_by(conn: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(IoKind::TimedOut.into());
    }
    conn.set_read_timeout(Some(left))?;
    loop {
        match conn.read(buf) {
            Err(e) if e.kind() == IoKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Everything the server sends until it closes the connection (a reset counts as a close),
/// or `TimedOut` at `deadline`.
fn read_until_close(conn: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0; 256];
    loop {
        match read_by(conn, &mut buf, deadline) {
            Ok(0) => return Ok(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == IoKind::ConnectionReset => return Ok(received),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dflockd::engine::signal::pattern_matches;

    #[test]
    fn deep_patterns_are_distinct_fit_a_key_and_match_the_channel() {
        let channel = deep_channel();
        assert_eq!(channel.split('.').count(), 235);
        let patterns: Vec<String> = (0..1 << WILD_TOKENS).map(deep_pattern).collect();
        let distinct: std::collections::HashSet<&String> = patterns.iter().collect();
        assert_eq!(distinct.len(), patterns.len());
        for pattern in patterns.iter().step_by(97) {
            assert!(pattern.len() <= 256, "{} bytes", pattern.len());
            assert_eq!(pattern.split('.').count(), DEEP_TOKENS);
            assert!(pattern_matches(pattern.as_bytes(), channel.as_bytes()));
        }
        assert_eq!(patterns.iter().map(String::len).max(), Some(252));
    }
}
