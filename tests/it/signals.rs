//! Pub/sub signals over the wire (spec §7.10–7.12, §13): pattern matching, de-duplication,
//! delivery counts, queue-group round robin, the subscription cap, verbatim payloads, slow
//! consumers, pushes interleaved with responses, and cleanup when a connection ends.
//!
//! Whether a connection was pushed something is observed without sleeping: a `ping` sent to it
//! after the publisher's `ok <n>` arrived is answered after every push that signal queued, so
//! the lines before that `ok` are exactly the pushes it got.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::support::{Client, REPLY_TIMEOUT, TestServer, grant, lock_waiters, wait_until};

/// How long a test waits for the server to notice a closed connection.
const SETTLE: Duration = Duration::from_secs(3);

/// `listen` that must succeed.
fn listen(c: &mut Client, pattern: &str, group: &str) {
    assert_eq!(
        c.request("listen", pattern, group),
        "ok",
        "listen {pattern:?} {group:?}"
    );
}

/// `signal` that must succeed; returns the delivery count of its `ok <n>`.
fn publish(c: &mut Client, channel: &str, payload: &str) -> u64 {
    count(&c.request("signal", channel, payload))
}

/// The `n` of an `ok <n>` reply.
fn count(line: &str) -> u64 {
    line.strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a delivery count: {line:?}"))
}

/// Every push queued for `c` so far, in order (see the module documentation).
fn pushes(c: &mut Client) -> Vec<String> {
    c.send("ping", "_", "");
    let mut lines = Vec::new();
    loop {
        let line = c.read_line();
        if line == "ok" {
            return lines;
        }
        assert!(line.starts_with("sig "), "not a push: {line:?}");
        lines.push(line);
    }
}

/// The payloads of `pushes(c)`, checking that each came from `channel`.
fn payloads(c: &mut Client, channel: &str) -> Vec<String> {
    let prefix = format!("sig {channel} ");
    pushes(c)
        .into_iter()
        .map(|line| match line.strip_prefix(&prefix) {
            Some(payload) => payload.to_string(),
            None => panic!("push not from {channel:?}: {line:?}"),
        })
        .collect()
}

/// `stats.signal_channels` as a set of (pattern, group, listeners).
fn channels(c: &mut Client) -> BTreeSet<(String, Option<String>, u64)> {
    let stats = c.stats();
    stats["signal_channels"]
        .as_array()
        .unwrap_or_else(|| panic!("signal_channels is not an array: {stats}"))
        .iter()
        .map(|entry| {
            (
                entry["pattern"].as_str().expect("pattern").to_string(),
                entry
                    .get("group")
                    .map(|g| g.as_str().expect("group").to_string()),
                entry["listeners"].as_u64().expect("listeners"),
            )
        })
        .collect()
}

/// One `signal_channels` entry.
fn channel(pattern: &str, group: Option<&str>, listeners: u64) -> (String, Option<String>, u64) {
    (pattern.to_string(), group.map(str::to_string), listeners)
}

/// A payload of exactly `len` bytes with spaces inside and at both ends.
fn spaced_payload(len: usize) -> String {
    let body: String = "lorem ipsum  dolor\tsit amet "
        .chars()
        .cycle()
        .take(len - 2)
        .collect();
    format!(" {body} ")
}

/// Channels published to in the matching table: single tokens, empty tokens, several depths.
const CHANNELS: &[&str] = &[
    "a", "b", "a.b", "a.c", "a.b.c", "a..b", "a.", ".a", "x.b.c", "a.b.",
];

/// Each pattern with the channels of [`CHANNELS`] it must match (spec §13.2).
const MATCHES: &[(&str, &[&str])] = &[
    ("a", &["a"]),
    ("a.b", &["a.b"]),
    ("a..b", &["a..b"]),
    ("a.", &["a."]),
    ("*", &["a", "b"]),
    ("a.*", &["a.b", "a.c", "a."]),
    ("*.b", &["a.b"]),
    (".*", &[".a"]),
    ("*.*", &["a.b", "a.c", "a.", ".a"]),
    ("a.*.c", &["a.b.c"]),
    ("a.*.b", &["a..b"]),
    ("a.>", &["a.b", "a.c", "a.b.c", "a..b", "a.", "a.b."]),
    (
        "*.>",
        &["a.b", "a.c", "a.b.c", "a..b", "a.", ".a", "x.b.c", "a.b."],
    ),
    ("*.b.>", &["a.b.c", "x.b.c", "a.b."]),
    (">", CHANNELS),
];

#[test]
fn patterns_match_channels_token_by_token() {
    let server = TestServer::start(&[]);
    let mut subscribers: Vec<Client> = MATCHES
        .iter()
        .map(|(pattern, _)| {
            let mut c = server.connect();
            listen(&mut c, pattern, "");
            c
        })
        .collect();
    let mut publisher = server.connect();
    for &ch in CHANNELS {
        let matching = MATCHES.iter().filter(|(_, m)| m.contains(&ch)).count();
        assert_eq!(
            publish(&mut publisher, ch, &format!("to {ch}")),
            matching as u64,
            "deliveries for channel {ch:?}"
        );
    }
    for ((pattern, matched), c) in MATCHES.iter().zip(&mut subscribers) {
        let expected: Vec<String> = CHANNELS
            .iter()
            .filter(|ch| matched.contains(ch))
            .map(|ch| format!("sig {ch} to {ch}"))
            .collect();
        assert_eq!(pushes(c), expected, "pattern {pattern:?}");
    }
}

#[test]
fn invalid_patterns_and_wildcard_channels_are_plain_errors() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    for pattern in [
        "a*", "*a", "a.b*", "a.**", "a.>.b", ">.a", "a.b>", ">>", "a.>b", "*>", "a.>.",
    ] {
        for cmd in ["listen", "unlisten"] {
            for group in ["", "g"] {
                assert_eq!(
                    c.request(cmd, pattern, group),
                    "error",
                    "{cmd} {pattern:?} {group:?}"
                );
            }
        }
    }
    for ch in ["*", ">", "a.*", "a.>", "*.a", "a*", "a>b", "a.b.>"] {
        assert_eq!(c.request("signal", ch, "x"), "error", "signal {ch:?}");
    }
    // Ordinary errors: the connection stays open and nothing was subscribed.
    assert_eq!(c.request("ping", "_", ""), "ok");
    assert_eq!(c.stats()["signal_channels"], json!([]));
    listen(&mut c, "a.>", "");
    assert_eq!(publish(&mut server.connect(), "a.b", "x"), 1);
}

#[test]
fn a_connection_gets_one_non_grouped_copy_plus_one_per_group() {
    let server = TestServer::start(&[]);
    let mut s = server.connect();
    for pattern in ["a.b", "a.*", "a.>", ">", "*.b"] {
        listen(&mut s, pattern, "");
    }
    let mut p = server.connect();
    assert_eq!(publish(&mut p, "a.b", "once"), 1);
    assert_eq!(pushes(&mut s), ["sig a.b once"]);
    // Queue groups are separate deliveries, even to a connection that already got a copy.
    listen(&mut s, "a.b", "g1");
    listen(&mut s, "a.>", "g2");
    assert_eq!(publish(&mut p, "a.b", "thrice"), 3);
    assert_eq!(pushes(&mut s), ["sig a.b thrice"; 3]);
    assert_eq!(publish(&mut p, "a.c", "twice"), 2);
    assert_eq!(pushes(&mut s), ["sig a.c twice"; 2]);
    assert_eq!(publish(&mut p, "q", "only >"), 1);
    assert_eq!(pushes(&mut s), ["sig q only >"]);
}

#[test]
fn the_count_is_one_per_connection_plus_one_per_group() {
    let server = TestServer::start(&[]);
    let mut plain: Vec<Client> = ["orders.new", "orders.*", "orders.>"]
        .iter()
        .map(|pattern| {
            let mut c = server.connect();
            listen(&mut c, pattern, "");
            c
        })
        .collect();
    let mut members: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "orders.*", "billing");
            c
        })
        .collect();
    let mut p = server.connect();
    assert_eq!(publish(&mut p, "orders.new", "o1"), 4);
    for c in &mut plain {
        assert_eq!(pushes(c), ["sig orders.new o1"]);
    }
    let group_copies: usize = members.iter_mut().map(|c| pushes(c).len()).sum();
    assert_eq!(group_copies, 1, "a queue group delivers one copy");
    assert_eq!(publish(&mut p, "orders.new.eu", "o2"), 1);
    assert_eq!(pushes(&mut plain[2]), ["sig orders.new.eu o2"]);
    assert_eq!(publish(&mut p, "invoices.new", "o3"), 0);
    for c in plain.iter_mut().chain(&mut members) {
        assert_eq!(pushes(c), Vec::<String>::new());
    }
}

#[test]
fn a_queue_group_rotates_over_its_members_in_join_order() {
    let server = TestServer::start(&[]);
    let mut members: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "jobs.*", "workers");
            c
        })
        .collect();
    let mut p = server.connect();
    for i in 0..30 {
        assert_eq!(publish(&mut p, "jobs.run", &i.to_string()), 1, "signal {i}");
    }
    let mut receiver = [usize::MAX; 30];
    for (m, c) in members.iter_mut().enumerate() {
        let got = payloads(c, "jobs.run");
        assert_eq!(got.len(), 10, "member {m} got {got:?}");
        for payload in got {
            let i: usize = payload.parse().expect("payload is a number");
            assert_eq!(receiver[i], usize::MAX, "signal {i} delivered twice");
            receiver[i] = m;
        }
    }
    for i in 0..30 {
        assert_eq!(
            receiver[i],
            (receiver[0] + i) % 3,
            "signal {i}: receivers {receiver:?} do not rotate in join order"
        );
    }
    // A member that leaves is skipped; the rest keep alternating.
    assert_eq!(members[1].request("unlisten", "jobs.*", "workers"), "ok");
    for i in 0..10 {
        assert_eq!(publish(&mut p, "jobs.run", &format!("late {i}")), 1);
    }
    let first = payloads(&mut members[0], "jobs.run");
    let third = payloads(&mut members[2], "jobs.run");
    assert!(payloads(&mut members[1], "jobs.run").is_empty());
    assert_eq!((first.len(), third.len()), (5, 5), "{first:?} {third:?}");
    let mut merged: Vec<&String> = first.iter().chain(&third).collect();
    merged.sort_by_key(|payload| payload[5..].parse::<u32>().expect("numbered"));
    let alternates = merged
        .windows(2)
        .all(|pair| first.contains(pair[0]) != first.contains(pair[1]));
    assert!(alternates, "{first:?} {third:?}");
}

#[test]
fn groups_are_identified_by_pattern_and_name() {
    let server = TestServer::start(&[]);
    // Two groups on one pattern: each delivers one copy.
    let mut a: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    let mut b: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for c in &mut a {
        listen(c, "jobs.*", "a");
    }
    for c in &mut b {
        listen(c, "jobs.*", "b");
    }
    // One name under two patterns: two groups.
    let mut star = server.connect();
    let mut rest = server.connect();
    listen(&mut star, "tasks.*", "w");
    listen(&mut rest, "tasks.>", "w");

    let mut p = server.connect();
    for i in 0..4 {
        assert_eq!(publish(&mut p, "jobs.x", &i.to_string()), 2);
    }
    for group in [&mut a, &mut b] {
        let mut got: Vec<String> = group
            .iter_mut()
            .flat_map(|c| payloads(c, "jobs.x"))
            .collect();
        got.sort();
        assert_eq!(
            got,
            ["0", "1", "2", "3"],
            "each group gets every signal once"
        );
    }
    // A group name keeps its inner spaces; only the ends are trimmed.
    let mut spaced = server.connect();
    listen(&mut spaced, "spaced", "  my  group ");
    listen(&mut spaced, "spaced", "my  group");
    assert_eq!(publish(&mut p, "spaced", "s"), 1);
    assert_eq!(pushes(&mut spaced), ["sig spaced s"]);
    assert_eq!(publish(&mut p, "tasks.x", "both"), 2);
    assert_eq!(pushes(&mut star), ["sig tasks.x both"]);
    assert_eq!(pushes(&mut rest), ["sig tasks.x both"]);
    assert_eq!(publish(&mut p, "tasks.x.y", "deep"), 1);
    assert_eq!(pushes(&mut rest), ["sig tasks.x.y deep"]);
    assert!(pushes(&mut star).is_empty());
    assert_eq!(
        channels(&mut p),
        BTreeSet::from([
            channel("jobs.*", Some("a"), 2),
            channel("jobs.*", Some("b"), 2),
            channel("tasks.*", Some("w"), 1),
            channel("tasks.>", Some("w"), 1),
            channel("spaced", Some("my  group"), 1),
        ])
    );
}

#[test]
fn a_subscribed_publisher_receives_its_own_signal() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    listen(&mut c, "chat.*", "");
    c.send("signal", "chat.room", "hi there");
    let mut lines = [c.read_line(), c.read_line()];
    lines.sort();
    assert_eq!(lines, ["ok 1", "sig chat.room hi there"]);
}

#[test]
fn unlisten_removes_exactly_one_subscription() {
    let server = TestServer::start(&[]);
    let mut s = server.connect();
    let mut p = server.connect();
    listen(&mut s, "ch", "");
    listen(&mut s, "ch", "g");
    assert_eq!(publish(&mut p, "ch", "1"), 2);
    assert_eq!(pushes(&mut s), ["sig ch 1", "sig ch 1"]);
    // The group is named by its trimmed arg line.
    assert_eq!(s.request("unlisten", "ch", "  g "), "ok");
    assert_eq!(publish(&mut p, "ch", "2"), 1);
    assert_eq!(pushes(&mut s), ["sig ch 2"]);
    assert_eq!(channels(&mut p), BTreeSet::from([channel("ch", None, 1)]));
    assert_eq!(s.request("unlisten", "ch", ""), "ok");
    assert_eq!(publish(&mut p, "ch", "3"), 0);
    assert!(pushes(&mut s).is_empty());
    // Unsubscribing from something not subscribed is fine too.
    assert_eq!(s.request("unlisten", "ch", ""), "ok");
    assert_eq!(s.request("unlisten", "other.>", "g"), "ok");
    assert_eq!(p.stats()["signal_channels"], json!([]));
}

#[test]
fn max_subscriptions_caps_distinct_pattern_group_pairs() {
    let server = TestServer::start(&["--max-subscriptions", "2"]);
    let mut c = server.connect();
    let mut p = server.connect();
    listen(&mut c, "a", "");
    listen(&mut c, "b", "g");
    // At the cap: renewing a held subscription is fine, a new one is refused.
    listen(&mut c, "a", "");
    listen(&mut c, "b", " g ");
    assert_eq!(c.request("listen", "c", ""), "error");
    assert_eq!(c.request("listen", "a", "g"), "error");
    assert_eq!(c.request("listen", "b", ""), "error");
    assert_eq!(
        publish(&mut p, "c", "x"),
        0,
        "a refused listen subscribes nothing"
    );
    // Unsubscribing from something not held frees nothing.
    assert_eq!(c.request("unlisten", "zzz", ""), "ok");
    assert_eq!(c.request("listen", "c", ""), "error");
    // Unsubscribing a held one frees a unit.
    assert_eq!(c.request("unlisten", "a", ""), "ok");
    listen(&mut c, "c", "");
    assert_eq!(c.request("listen", "a", ""), "error");
    assert_eq!(publish(&mut p, "c", "y"), 1);
    assert_eq!(pushes(&mut c), ["sig c y"]);
    // The cap is per connection.
    listen(&mut p, "a", "");
    listen(&mut p, "d", "");
    assert_eq!(p.request("listen", "e", ""), "error");
}

#[test]
fn payloads_are_delivered_verbatim() {
    let server = TestServer::start(&[]);
    let ch = "events.user.login";
    let mut s = server.connect();
    listen(&mut s, ch, "");
    let mut p = server.connect();
    let big = spaced_payload(60 * 1024);
    for payload in [
        "  leading",
        "trailing  ",
        "  both  ",
        "inner   spaces\tand a tab",
        "x",
        "{\"user\": \"alice\", \"n\": [1, 2]}",
        "ünïcödé ✓",
        "mid\rcarriage",
        &big,
    ] {
        assert_eq!(publish(&mut p, ch, payload), 1);
        assert_eq!(s.read_line(), format!("sig {ch} {payload}"));
    }
    // Only trailing CRs are stripped.
    p.send_raw(format!("signal\n{ch}\n with cr \r\r\n").as_bytes());
    assert_eq!(count(&p.read_line()), 1);
    assert_eq!(s.read_line(), format!("sig {ch}  with cr "));

    // The longest payload whose push is a 64 KiB line, and one byte more.
    let limit = 65_536 - 5 - ch.len();
    let longest = spaced_payload(limit);
    assert_eq!(publish(&mut p, ch, &longest), 1);
    let push = s.read_line();
    assert_eq!(push.len(), 65_536);
    assert_eq!(push, format!("sig {ch} {longest}"));
    let too_long = spaced_payload(limit + 1);
    assert_eq!(p.request("signal", ch, &too_long), "error");
    // An ordinary error: the connection stays open, and nothing was pushed.
    assert_eq!(p.request("ping", "_", ""), "ok");
    assert_eq!(publish(&mut p, ch, "after"), 1);
    assert_eq!(s.read_line(), format!("sig {ch} after"));
}

/// How many signals a flooding publisher may run ahead of the subscriber that reads. A reader
/// left behind by more than its socket buffers and the output limit would be dropped as a slow
/// consumer itself; keeping the lead small makes that impossible however the threads are
/// scheduled.
const MAX_LEAD: usize = 8;

/// A subscriber read on a thread of its own. Its pushes carry payloads `<n> ...` (or `end`,
/// which stops it); it reports each `n` so the publisher can pace itself.
struct Reader {
    progress: std::sync::mpsc::Receiver<usize>,
    newest: Option<usize>,
    thread: std::thread::JoinHandle<(Vec<String>, Client)>,
}

impl Reader {
    fn spawn(mut c: Client, channel: &str) -> Reader {
        let prefix = format!("sig {channel} ");
        let (report, progress) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let line = c.read_line();
                let payload = line.strip_prefix(&prefix).expect("a push");
                if payload == "end" {
                    // The connection (and its subscription) outlives the thread.
                    return (got, c);
                }
                let n = payload.split(' ').next().and_then(|n| n.parse().ok());
                let _ = report.send(n.expect("a numbered payload"));
                got.push(payload.to_string());
            }
        });
        Reader {
            progress,
            newest: None,
            thread,
        }
    }

    /// Blocks until the reader has received signal `n` or a later one.
    fn wait_for(&mut self, n: usize) {
        while self.newest.is_none_or(|newest| newest < n) {
            let got = self.progress.recv_timeout(REPLY_TIMEOUT);
            self.newest = Some(got.unwrap_or_else(|e| panic!("reader stuck before {n}: {e}")));
        }
    }

    /// The payloads received before `end`, and the connection.
    fn finish(self) -> (Vec<String>, Client) {
        self.thread.join().expect("the reader got its pushes")
    }
}

#[test]
fn a_subscriber_that_never_reads_is_dropped_without_stalling_the_publisher() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let mut slow = server.connect();
    listen(&mut slow, "flood", "");
    let mut reader = server.connect();
    listen(&mut reader, "flood", "");
    let mut reader = Reader::spawn(reader, "flood");

    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    // The slow subscriber's socket buffers fill after a few MiB; then its next copy is refused.
    let counts = flood(&mut p, &mut reader, &filler, 5_000, |counts| {
        counts.iter().filter(|&&n| n == 1).count() >= 20
    });
    let drop_at = counts.iter().position(|&n| n == 1).expect("a count of 1");
    assert!(
        drop_at > 0,
        "the first signal had room for both subscribers"
    );
    assert!(
        counts[..drop_at].iter().all(|&n| n == 2) && counts[drop_at..].iter().all(|&n| n == 1),
        "counts must drop from 2 to 1 once, at the eviction: {counts:?}"
    );
    assert_eq!(publish(&mut p, "flood", "end"), 1);
    let _reader = expect_every_signal(reader, counts.len(), &filler);

    // The slow subscriber's connection is closed: whatever reached its socket, then EOF.
    expect_dropped(&slow);
    let stats = p.stats();
    assert!(
        stats["slow_consumers_disconnected"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "flood", "listeners": 1}])
    );
}

/// Publishes signals `<i><filler>` on `flood`, never more than [`MAX_LEAD`] ahead of `reader`,
/// until `enough` holds for the counts so far; returns the counts. Panics after `limit` signals.
fn flood(
    p: &mut Client,
    reader: &mut Reader,
    filler: &str,
    limit: usize,
    enough: impl Fn(&[u64]) -> bool,
) -> Vec<u64> {
    let mut counts = Vec::new();
    while !enough(&counts) {
        assert!(
            counts.len() < limit,
            "the subscribers that never read were never dropped: {counts:?}"
        );
        let i = counts.len();
        if let Some(behind) = i.checked_sub(MAX_LEAD) {
            reader.wait_for(behind);
        }
        counts.push(publish(p, "flood", &format!("{i}{filler}")));
    }
    counts
}

/// Ends `reader` (after an `end` signal) and checks it got the `count` signals of [`flood`], in
/// order and unaltered; returns its connection, still subscribed.
fn expect_every_signal(reader: Reader, count: usize, filler: &str) -> Client {
    let (got, client) = reader.finish();
    assert_eq!(got.len(), count, "the reading subscriber missed signals");
    for (i, line) in got.iter().enumerate() {
        assert!(
            *line == format!("{i}{filler}"),
            "push {i} out of order or altered: {:?}",
            &line[..line.len().min(40)]
        );
    }
    client
}

/// Reads `c` until the server closes it, discarding what arrives; panics if it stays open.
fn expect_dropped(c: &Client) {
    assert_eq!(drain(c), None, "the connection was not closed");
}

/// Sends `ping` on a connection nothing was read from yet and reads until its `ok` arrives (the
/// bytes before it are returned) or the server closes the connection (`None`).
fn drain(c: &Client) -> Option<Vec<u8>> {
    let mut stream = c.stream();
    // The connection may already be closed: a failed send shows in the reads below.
    let _ = stream.write_all(b"ping\n_\n\n");
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            // A read with a timeout is not restarted after a signal handler ran.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("neither a reply nor a close: {e}"),
        }
        if received.ends_with(b"\nok\n") || received == b"ok\n" {
            received.truncate(received.len() - 3);
            return Some(received);
        }
    }
}

#[test]
fn a_queue_group_passes_over_a_full_member_without_dropping_it() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let mut stuck = server.connect();
    listen(&mut stuck, "work", "g");
    let mut worker = server.connect();
    listen(&mut worker, "work", "g");
    let mut worker = Reader::spawn(worker, "work");
    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    // Enough for the member that never reads to fill its socket buffers and output.
    let sent: Vec<String> = (0..1_000).map(|i| format!("{i}{filler}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        // Of any two consecutive signals the reading member gets at least one.
        if let Some(behind) = i.checked_sub(MAX_LEAD) {
            worker.wait_for(behind);
        }
        assert_eq!(publish(&mut p, "work", payload), 1, "signal {i}");
    }
    // Round robin sends at least one of two to the member that reads.
    assert_eq!(publish(&mut p, "work", "end"), 1);
    assert_eq!(publish(&mut p, "work", "end"), 1);
    let (to_worker, _worker) = worker.finish();
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], 0, "{stats}");
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "work", "group": "g", "listeners": 2}])
    );
    // The member that fell behind still gets what it was given once it reads.
    let to_stuck: Vec<String> = payloads(&mut stuck, "work")
        .into_iter()
        .filter(|payload| payload != "end")
        .collect();
    assert!(
        to_worker.len() > sent.len() / 2 + 100,
        "the member that never read was not passed over: it got {} of {}",
        to_stuck.len(),
        sent.len()
    );
    let mut all: Vec<&String> = to_stuck.iter().chain(&to_worker).collect();
    all.sort_by_key(|payload| {
        let digits = payload.find(' ').expect("numbered payload");
        payload[..digits].parse::<usize>().expect("number")
    });
    assert!(
        all.len() == sent.len() && all.iter().zip(&sent).all(|(got, sent)| *got == sent),
        "every signal goes to exactly one member ({} + {} deliveries for {} signals)",
        to_stuck.len(),
        to_worker.len(),
        sent.len()
    );
}

#[test]
fn a_queue_group_with_every_member_full_drops_one_member() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let members: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "work", "g");
            c
        })
        .collect();
    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    let mut sent = 0;
    loop {
        assert!(sent < 5_000, "no member was ever dropped");
        let n = publish(&mut p, "work", &format!("{sent}{filler}"));
        sent += 1;
        match n {
            1 => {}
            0 => break,
            _ => panic!("a queue group delivers at most one copy, got {n}"),
        }
    }
    // The copy nobody had room for is not counted, and one member is gone.
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], 1, "{stats}");
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "work", "group": "g", "listeners": 1}])
    );
    // Exactly one of them was disconnected; the other still answers once drained.
    let drained: Vec<Option<Vec<u8>>> = members.iter().map(drain).collect();
    let survivor = match &drained[..] {
        [None, Some(_)] => 1,
        [Some(_), None] => 0,
        _ => panic!("expected exactly one member to be dropped"),
    };
    // The one dropped was the one the round robin tried first for the last signal. Which one
    // that is follows from who was tried first for signal 0, when both still had room.
    let survivor_got_first = drained[survivor]
        .as_deref()
        .expect("the survivor's pushes")
        .starts_with(b"sig work 0 ");
    let first_tried_for_0 = if survivor_got_first {
        survivor
    } else {
        1 - survivor
    };
    assert_eq!(
        1 - survivor,
        (first_tried_for_0 + sent - 1) % 2,
        "the member dropped for signal {} was not the one tried first",
        sent - 1
    );
    assert_eq!(publish(&mut p, "work", "after"), 1);
}

/// Shared signal lines are counted once against `--max-total-output`; past it, subscribers holding
/// more than their share are dropped as slow consumers long before their own limit.
#[test]
fn the_server_wide_output_budget_drops_the_subscribers_holding_the_most() {
    const SLOW: usize = 3;
    // A per-connection limit no subscriber reaches here: 1,500 signals of 16 KiB are 24 MiB.
    let server = TestServer::start(&[
        "--max-output-buffer",
        "67108864",
        "--max-total-output",
        "1048576",
    ]);
    let slow: Vec<Client> = (0..SLOW)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "flood", "");
            c
        })
        .collect();
    let mut reader = server.connect();
    listen(&mut reader, "flood", "");
    let mut reader = Reader::spawn(reader, "flood");

    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    let counts = flood(&mut p, &mut reader, &filler, 1_500, |counts| {
        counts.last() == Some(&1)
    });
    assert!(
        counts.windows(2).all(|w| w[1] <= w[0]) && counts[0] == SLOW as u64 + 1,
        "counts only fall, from every subscriber to the reader alone: {counts:?}"
    );
    assert_eq!(publish(&mut p, "flood", "end"), 1);
    let _reader = expect_every_signal(reader, counts.len(), &filler);
    for c in &slow {
        expect_dropped(c);
    }
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], SLOW, "{stats}");
}

#[test]
fn pushes_interleave_with_responses_without_disturbing_their_order() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    listen(&mut c, "ch", "");
    // Another publisher sends to the same channel at the same time.
    let addr = server.addr;
    let other = std::thread::spawn(move || {
        let mut q = Client::connect(addr);
        for i in 0..50 {
            assert_eq!(publish(&mut q, "ch", &format!("q{i}")), 1);
        }
    });
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(format!("signal\nch\np{i}\nping\n_\n\n").as_bytes());
        expected.extend(["ok 1", "ok"]);
        if i % 10 == 0 {
            batch.extend_from_slice(b"signal\nnobody\nx\nstats\n_\n_\n");
            expected.extend(["ok 0", "stats"]);
        }
    }
    c.send_raw(&batch);
    let mut responses = Vec::new();
    let mut own = Vec::new();
    let mut foreign = Vec::new();
    let mut sort = |line: String, responses: &mut Vec<String>| match line.strip_prefix("sig ch ") {
        Some(payload) if payload.starts_with('p') => own.push(payload.to_string()),
        Some(payload) => foreign.push(payload.to_string()),
        None => {
            assert!(!line.starts_with("sig "), "push from elsewhere: {line:?}");
            responses.push(line);
        }
    };
    while responses.len() < expected.len() {
        let line = c.read_line();
        sort(line, &mut responses);
    }
    other.join().expect("the other publisher finished");
    for line in pushes(&mut c) {
        sort(line, &mut responses);
    }
    let responses: Vec<&str> = responses
        .iter()
        .map(|r| if r.starts_with("ok {") { "stats" } else { r })
        .collect();
    assert_eq!(responses, expected);
    let numbered = |prefix: &str| (0..50).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    assert_eq!(own, numbered("p"));
    assert_eq!(foreign, numbered("q"));
}

#[test]
fn pushes_arrive_while_a_lock_request_waits() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut c = server.connect();
    listen(&mut c, "news", "");
    // A blocking acquire with a request pipelined behind it.
    c.send_raw(b"l\nk\n10\nping\n_\n\n");
    wait_until("the lock request queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    let mut p = server.connect();
    for i in 0..3 {
        assert_eq!(publish(&mut p, "news", &format!("n{i}")), 1);
    }
    for i in 0..3 {
        assert_eq!(c.read_line(), format!("sig news n{i}"));
    }
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&c.read_line());
    assert_eq!(c.read_line(), "ok");
}

#[test]
fn subscriptions_end_with_their_connection() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let mut b = server.connect();
    let mut doomed = server.connect();
    for c in [&mut a, &mut b] {
        listen(c, "x.*", "");
        listen(c, "x.y", "g");
    }
    listen(&mut a, ">", "");
    listen(&mut doomed, "x.y", "");
    let mut p = server.connect();
    assert_eq!(
        channels(&mut p),
        BTreeSet::from([
            channel("x.*", None, 2),
            channel("x.y", Some("g"), 2),
            channel(">", None, 1),
            channel("x.y", None, 1),
        ])
    );
    // Closed by the client.
    drop(a);
    // Closed by the server (over-long line).
    doomed.send_raw(&[b'x'; 300]);
    doomed.send_raw(b"\n");
    assert_eq!(doomed.read_line(), "error");
    doomed.expect_closed();
    wait_until("the closed connections' subscriptions go", SETTLE, || {
        channels(&mut p) == BTreeSet::from([channel("x.*", None, 1), channel("x.y", Some("g"), 1)])
    });
    assert_eq!(publish(&mut p, "x.y", "left"), 2);
    assert_eq!(pushes(&mut b), ["sig x.y left", "sig x.y left"]);
    drop(b);
    wait_until("no subscription is left", SETTLE, || {
        p.stats()["signal_channels"] == json!([])
    });
    assert_eq!(publish(&mut p, "x.y", "gone"), 0);
}

/// A publish that matches a thousand deep patterns is spread over loop turns: a `ping` from
/// another client is answered while the publisher's pipelined signals are still being
/// delivered, and every signal still reaches the subscriber once, in order, with its count.
#[test]
fn a_ping_is_answered_while_a_long_publish_is_in_progress() {
    // More matching patterns than the server caches results for, so every signal scans them.
    const PATTERNS: usize = 1100;
    const SIGNALS: usize = 200;
    let server = TestServer::start(&[]);
    let mut subscriber = server.connect();
    // 11 leading tokens, each empty or `*`, tell the patterns apart; a long run of empty tokens
    // follows, and all of them match the channel of 230 dots.
    let tail = ".".repeat(200);
    for n in 0..PATTERNS {
        let head: Vec<&str> = (0..11)
            .map(|bit| if n >> bit & 1 == 1 { "*" } else { "" })
            .collect();
        subscriber.send("listen", &format!("{}{tail}.>", head.join(".")), "");
    }
    for _ in 0..PATTERNS {
        assert_eq!(subscriber.read_line(), "ok");
    }
    let channel = ".".repeat(230);
    let mut publisher = std::net::TcpStream::connect(server.addr).unwrap();
    let mut wire = String::new();
    for n in 0..SIGNALS {
        wire.push_str(&format!("signal\n{channel}\n{n}\n"));
    }
    publisher.write_all(wire.as_bytes()).unwrap();

    let mut bystander = server.connect();
    assert_eq!(bystander.request("ping", "_", ""), "ok");
    // By now only part of the signals can have been answered.
    publisher.set_nonblocking(true).unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Ok(n @ 1..) = publisher.read(&mut buf) {
        replies.extend_from_slice(&buf[..n]);
    }
    let answered = replies.iter().filter(|&&b| b == b'\n').count();
    assert!(
        answered < SIGNALS,
        "all {SIGNALS} signals were answered before the ping"
    );
    publisher.set_nonblocking(false).unwrap();
    publisher.set_read_timeout(Some(REPLY_TIMEOUT * 4)).unwrap();
    while replies.iter().filter(|&&b| b == b'\n').count() < SIGNALS {
        let n = publisher.read(&mut buf).expect("the remaining replies");
        assert!(n > 0, "publisher closed");
        replies.extend_from_slice(&buf[..n]);
    }
    let expected = "ok 1\n".repeat(SIGNALS);
    assert_eq!(String::from_utf8(replies).unwrap(), expected);
    let got = payloads(&mut subscriber, &channel);
    let sent: Vec<String> = (0..SIGNALS).map(|n| n.to_string()).collect();
    assert_eq!(got, sent, "one copy of each signal, in publish order");
}

/// `--max-subscription-bytes` caps what one connection subscribes to, and
/// `--max-total-subscriptions` what all of them do together; both answer a plain `error`.
#[test]
fn subscription_bytes_and_the_total_are_capped() {
    let server = TestServer::start(&[
        "--max-subscription-bytes",
        "13",
        "--max-total-subscriptions",
        "3",
    ]);
    let mut a = server.connect();
    listen(&mut a, "orders.eu", "");
    assert_eq!(
        a.request("listen", "orders.us", ""),
        "error",
        "13 bytes passed"
    );
    listen(&mut a, "o.us", "");
    let mut b = server.connect();
    listen(&mut b, "x", "");
    assert_eq!(
        b.request("listen", "y", ""),
        "error",
        "the fourth subscription"
    );
    drop(a);
    wait_until("a's subscriptions to go", SETTLE, || {
        b.request("listen", "y", "") == "ok"
    });
}
