//! Pub/sub signals over the wire (spec §7.10–7.12, §13): pattern matching, de-duplication,
//! delivery counts, queue-group round robin, the subscription cap, verbatim payloads, pushes
//! interleaved with responses, and cleanup when a connection ends (slow consumers have their own
//! module).
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
pub(crate) fn listen(c: &mut Client, pattern: &str, group: &str) {
    assert_eq!(
        c.request("listen", pattern, group),
        "ok",
        "listen {pattern:?} {group:?}"
    );
}

/// `signal` that must succeed; returns the delivery count of its `ok <n>`.
pub(crate) fn publish(c: &mut Client, channel: &str, payload: &str) -> u64 {
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
pub(crate) fn payloads(c: &mut Client, channel: &str) -> Vec<String> {
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
pub(crate) fn spaced_payload(len: usize) -> String {
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
    // The operator learns which cap refused it (one line per second at most).
    server.wait_for_log("refused, --max-subscriptions reached", REPLY_TIMEOUT);
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
