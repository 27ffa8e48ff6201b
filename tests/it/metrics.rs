//! The monitoring endpoint (`--metrics-addr`) and the `info` command, over real TCP against the
//! real binary: every scrape is read by the strict exposition parser, counters move by exactly
//! what the traffic implies, readiness follows the drain, HTTP abuse leaves lock clients alone,
//! and `info` ranks the most contended keys.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dflockd::client::Info;
use dflockd::metrics::Kind;
use dflockd::metrics::check::{self, Exposition};

use crate::support::{Client, REPLY_TIMEOUT, TestServer, grant, stats_entry, wait_until};

/// Generous bound for state the server reaches on its own (an expiry, a disconnect noticed).
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// Every `command` label value: the protocol's commands and `other`.
const COMMANDS: [&str; 24] = [
    "l", "r", "n", "e", "w", "sl", "sr", "sn", "se", "sw", "stats", "ping", "auth", "listen",
    "unlisten", "signal", "info", "check", "scheck", "q", "sq", "evict", "sevict", "other",
];

/// Every `status` label value: the first words of responses.
const STATUSES: [&str; 14] = [
    "ok",
    "acquired",
    "queued",
    "timeout",
    "error",
    "error_auth",
    "error_max_locks",
    "error_max_waiters",
    "error_limit_mismatch",
    "error_already_enqueued",
    "error_not_enqueued",
    "error_lease_expired",
    "error_draining",
    "stale",
];

/// Every `reason` label value of `dflockd_connections_rejected_total`.
const REASONS: [&str; 5] = [
    "max_connections",
    "max_connections_per_ip",
    "auth",
    "tls_handshake",
    "unix_peer",
];

/// The families labelled by namespace, other than the histograms.
const NS_FAMILIES: [(&str, Kind); 9] = [
    ("dflockd_keys", Kind::Gauge),
    ("dflockd_holders", Kind::Gauge),
    ("dflockd_waiters", Kind::Gauge),
    ("dflockd_grants_total", Kind::Counter),
    ("dflockd_releases_total", Kind::Counter),
    ("dflockd_lease_expirations_total", Kind::Counter),
    ("dflockd_disconnect_releases_total", Kind::Counter),
    ("dflockd_evictions_total", Kind::Counter),
    ("dflockd_acquire_timeouts_total", Kind::Counter),
];

/// The families without labels.
const SINGLES: [(&str, Kind); 12] = [
    ("dflockd_connections", Kind::Gauge),
    ("dflockd_connections_accepted_total", Kind::Counter),
    ("dflockd_auth_failures_total", Kind::Counter),
    ("dflockd_tls_handshake_failures_total", Kind::Counter),
    ("dflockd_read_timeouts_total", Kind::Counter),
    ("dflockd_bytes_read_total", Kind::Counter),
    ("dflockd_bytes_written_total", Kind::Counter),
    ("dflockd_slow_consumers_disconnected_total", Kind::Counter),
    ("dflockd_subscriptions", Kind::Gauge),
    ("dflockd_signals_published_total", Kind::Counter),
    ("dflockd_signal_deliveries_total", Kind::Counter),
    ("dflockd_lock_events_dropped_total", Kind::Counter),
];

/// A server with the monitoring endpoint on an ephemeral loopback port, plus `extra` flags.
pub(crate) fn start(extra: &[&str]) -> TestServer {
    let mut args = vec!["--metrics-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// One HTTP response, as read off the wire.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive); panics if it is missing.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// An HTTP/1.1 client connection to the monitoring endpoint, with read timeouts so a missing
/// answer fails the test instead of hanging it.
pub(crate) struct Http {
    pub(crate) reader: BufReader<TcpStream>,
}

impl Http {
    pub(crate) fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            reader: BufReader::new(stream),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Sends `method path` and reads the answer.
    pub(crate) fn request(&mut self, method: &str, path: &str) -> Response {
        self.send(format!("{method} {path} HTTP/1.1\r\nHost: dflockd\r\n\r\n").as_bytes());
        self.read_response(method == "HEAD")
    }

    /// Reads one response; its body is `Content-Length` bytes unless it answers a HEAD.
    pub(crate) fn read_response(&mut self, head_only: bool) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {line:?}"));
        assert!(line.ends_with("\r\n"), "status line without CRLF: {line:?}");
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header line");
            let header = line
                .strip_suffix("\r\n")
                .unwrap_or_else(|| panic!("header without CRLF: {line:?}"));
            if header.is_empty() {
                break;
            }
            let (name, value) = header
                .split_once(": ")
                .unwrap_or_else(|| panic!("malformed header {header:?}"));
            headers.push((name.to_owned(), value.to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = response
            .header("content-length")
            .parse()
            .expect("numeric Content-Length");
        if !head_only {
            response.body = vec![0; len];
            self.reader
                .read_exact(&mut response.body)
                .expect("the whole body");
        }
        response
    }

    /// Asserts that the server closes the connection without sending anything (more).
    pub(crate) fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed within {REPLY_TIMEOUT:?}: {e}"),
        }
    }
}

/// `GET path` on a fresh connection.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Response {
    Http::connect(addr).request("GET", path)
}

/// Checks a `/metrics` answer (status, Content-Type) and parses its body strictly.
pub(crate) fn exposition(response: &Response) -> Exposition {
    assert_eq!(response.status, 200, "{response:?}");
    let content_type = response.header("content-type");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "Content-Type {content_type:?}"
    );
    check::parse(response.text())
        .unwrap_or_else(|e| panic!("malformed exposition: {e}\n{}", response.text()))
}

/// Scrapes `/metrics` on a fresh connection.
pub(crate) fn scrape(addr: SocketAddr) -> Exposition {
    exposition(&get(addr, "/metrics"))
}

/// The value of one series; panics if it is missing.
pub(crate) fn value(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .value(name, labels)
        .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
}

/// How much one series moved between two scrapes.
fn delta(before: &Exposition, after: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// Waits until the series `name{labels}` reads `wanted` on a fresh scrape.
fn wait_for_value(addr: SocketAddr, name: &str, labels: &[(&str, &str)], wanted: f64) {
    wait_until(&format!("{name}{labels:?} is {wanted}"), SETTLE, || {
        value(&scrape(addr), name, labels) == wanted
    });
}

/// `info`, sent as raw lines and read into the client library's struct.
fn info(client: &mut Client) -> Info {
    let line = client.request("info", "_", "");
    let json = line
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("not an info reply: {line:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("info is not an Info ({e}): {json}"))
}

#[test]
fn a_fresh_server_exports_every_known_label_value_at_zero() {
    let server = start(&[]);
    let m = scrape(server.metrics_addr());

    assert_eq!(
        value(
            &m,
            "dflockd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value(&m, "dflockd_start_time_seconds", &[]);
    assert!(
        (now - started).abs() < 300.0,
        "start time {started}, now {now}"
    );
    for (name, kind) in SINGLES {
        assert_eq!(m.families.get(name), Some(&kind), "{name}");
        assert_eq!(value(&m, name, &[]), 0.0, "{name}");
    }
    assert_eq!(
        m.families.get("dflockd_connections_rejected_total"),
        Some(&Kind::Counter)
    );
    for reason in REASONS {
        let labels = [("reason", reason)];
        assert_eq!(
            value(&m, "dflockd_connections_rejected_total", &labels),
            0.0
        );
    }
    for command in COMMANDS {
        let labels = [("command", command)];
        assert_eq!(
            value(&m, "dflockd_requests_total", &labels),
            0.0,
            "{command}"
        );
    }
    for status in STATUSES {
        let labels = [("status", status)];
        assert_eq!(
            value(&m, "dflockd_responses_total", &labels),
            0.0,
            "{status}"
        );
    }
    for ns in ["lock", "semaphore"] {
        for (name, kind) in NS_FAMILIES {
            assert_eq!(m.families.get(name), Some(&kind), "{name}");
            assert_eq!(value(&m, name, &[("ns", ns)]), 0.0, "{name} {ns}");
        }
        for name in ["dflockd_wait_seconds", "dflockd_hold_seconds"] {
            assert_eq!(m.families.get(name), Some(&Kind::Histogram), "{name}");
            assert_eq!(value(&m, &format!("{name}_count"), &[("ns", ns)]), 0.0);
            assert_eq!(value(&m, &format!("{name}_sum"), &[("ns", ns)]), 0.0);
            let buckets: Vec<f64> = m
                .samples
                .iter()
                .filter(|s| s.name == format!("{name}_bucket") && s.labels["ns"] == ns)
                .map(|s| s.value)
                .collect();
            // Log-spaced from 10 µs to past 5 min, plus +Inf.
            assert!(
                buckets.len() >= 20,
                "{name} {ns}: {} buckets",
                buckets.len()
            );
            assert!(
                buckets.iter().all(|&n| n == 0.0),
                "{name} {ns}: {buckets:?}"
            );
        }
    }
    let lowest = m
        .samples
        .iter()
        .find(|s| s.name == "dflockd_wait_seconds_bucket")
        .expect("a wait bucket");
    assert_eq!(lowest.labels["le"].parse::<f64>().ok(), Some(0.00001));
    assert_eq!(
        m.families.get("dflockd_loop_turn_seconds"),
        Some(&Kind::Histogram)
    );
    // No lock or key names leak into series: every label value is one known in advance.
    let known = |label: &str, v: &str| match label {
        "command" => COMMANDS.contains(&v),
        "status" => STATUSES.contains(&v),
        "reason" => REASONS.contains(&v),
        "ns" => v == "lock" || v == "semaphore",
        "le" | "version" => true,
        _ => false,
    };
    for sample in &m.samples {
        for (label, v) in &sample.labels {
            assert!(
                known(label, v),
                "unexpected label {label}={v:?} on {sample:?}"
            );
        }
    }
}

#[test]
fn lock_traffic_moves_each_counter_by_exactly_what_it_implies() {
    let server = start(&[]);
    let addr = server.metrics_addr();
    let before = scrape(addr);

    let mut a = server.connect();
    let mut b = server.connect();
    // A grant at once and its release.
    let t1 = a.lock("k1", "0");
    assert_eq!(a.request("r", "k1", &t1), "ok");
    // An acquire that times out against a held key, then one that waits and is granted.
    let t2 = b.lock("k2", "0");
    assert_eq!(a.request("l", "k2", "1"), "timeout");
    a.send("l", "k2", "30");
    wait_for_value(addr, "dflockd_waiters", &[("ns", "lock")], 1.0);
    assert_eq!(b.request("r", "k2", &t2), "ok");
    grant(&a.read_line());
    // A one-second lease that runs out: a lost lock.
    b.lock("k3", "0 1");
    wait_for_value(
        addr,
        "dflockd_lease_expirations_total",
        &[("ns", "lock")],
        1.0,
    );
    // A holder that disconnects.
    let mut c = server.connect();
    c.lock("k4", "0");
    drop(c);
    wait_for_value(
        addr,
        "dflockd_disconnect_releases_total",
        &[("ns", "lock")],
        1.0,
    );
    // Two-phase: acquired at `e`, collected by `w` (one grant, not two), released.
    let line = a.request("e", "k5", "");
    assert!(line.starts_with("acquired "), "{line}");
    let (t5, _) = grant(&a.request("w", "k5", "10"));
    assert_eq!(a.request("r", "k5", &t5), "ok");
    // Semaphores: a grant and its release; a timeout against a full one.
    let (ts, _) = grant(&a.request("sl", "s1", "0 2"));
    assert_eq!(a.request("sr", "s1", &ts), "ok");
    grant(&b.request("sl", "s2", "0 1"));
    assert_eq!(a.request("sl", "s2", "1 1"), "timeout");
    // An unknown command and a ping.
    assert_eq!(a.request("bogus", "_", "_"), "error");
    assert_eq!(a.request("ping", "_", "_"), "ok");

    let after = scrape(addr);
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let lock = [("ns", "lock")];
    let sem = [("ns", "semaphore")];

    let requests: [(&str, f64); 9] = [
        ("l", 6.0),
        ("r", 3.0),
        ("e", 1.0),
        ("w", 1.0),
        ("sl", 3.0),
        ("sr", 1.0),
        ("ping", 1.0),
        ("other", 1.0),
        ("stats", 0.0),
    ];
    for (command, n) in requests {
        assert_eq!(
            d("dflockd_requests_total", &[("command", command)]),
            n,
            "requests_total{{command={command}}}"
        );
    }
    let responses: [(&str, f64); 5] = [
        ("ok", 13.0),
        ("acquired", 1.0),
        ("timeout", 2.0),
        ("error", 1.0),
        ("queued", 0.0),
    ];
    for (status, n) in responses {
        assert_eq!(
            d("dflockd_responses_total", &[("status", status)]),
            n,
            "responses_total{{status={status}}}"
        );
    }
    assert_eq!(d("dflockd_grants_total", &lock), 6.0);
    assert_eq!(d("dflockd_releases_total", &lock), 3.0);
    assert_eq!(d("dflockd_lease_expirations_total", &lock), 1.0);
    assert_eq!(d("dflockd_disconnect_releases_total", &lock), 1.0);
    assert_eq!(d("dflockd_acquire_timeouts_total", &lock), 1.0);
    assert_eq!(d("dflockd_grants_total", &sem), 2.0);
    assert_eq!(d("dflockd_releases_total", &sem), 1.0);
    assert_eq!(d("dflockd_lease_expirations_total", &sem), 0.0);
    assert_eq!(d("dflockd_disconnect_releases_total", &sem), 0.0);
    assert_eq!(d("dflockd_acquire_timeouts_total", &sem), 1.0);
    // Every grant records its wait; every lease end (release, expiry, disconnect) its hold.
    assert_eq!(d("dflockd_wait_seconds_count", &lock), 6.0);
    assert_eq!(d("dflockd_wait_seconds_count", &sem), 2.0);
    assert_eq!(d("dflockd_hold_seconds_count", &lock), 5.0);
    assert_eq!(d("dflockd_hold_seconds_count", &sem), 1.0);
    // One grant waited (for `r` of k2, after a scrape saw the waiter); the 1 s lease was held
    // about a second.
    assert!(d("dflockd_wait_seconds_sum", &lock) > 0.0);
    assert!(d("dflockd_hold_seconds_sum", &lock) >= 0.9);
    // What is left: `a` holds k2, `b` holds s2; every key still exists (idle ones are
    // collected after a minute).
    assert_eq!(value(&after, "dflockd_holders", &lock), 1.0);
    assert_eq!(value(&after, "dflockd_holders", &sem), 1.0);
    assert_eq!(value(&after, "dflockd_waiters", &lock), 0.0);
    assert_eq!(value(&after, "dflockd_waiters", &sem), 0.0);
    assert_eq!(value(&after, "dflockd_keys", &lock), 5.0);
    assert_eq!(value(&after, "dflockd_keys", &sem), 2.0);
    assert_eq!(d("dflockd_connections_accepted_total", &[]), 3.0);
    assert_eq!(value(&after, "dflockd_connections", &[]), 2.0);
    assert!(d("dflockd_bytes_read_total", &[]) > 0.0);
    assert!(d("dflockd_bytes_written_total", &[]) > 0.0);
    assert!(d("dflockd_loop_turn_seconds_count", &[]) > 0.0);
    // Scrapes are not protocol traffic.
    for reason in REASONS {
        assert_eq!(
            d("dflockd_connections_rejected_total", &[("reason", reason)]),
            0.0
        );
    }
    assert!(value(&after, "dflockd_http_requests_total", &[]) >= 4.0);
}

#[test]
fn bytes_read_and_written_count_every_protocol_byte() {
    let server = start(&[]);
    let addr = server.metrics_addr();
    let before = scrape(addr);
    let mut c = server.connect();
    let (mut sent, mut received) = (0, 0);
    for (cmd, key, arg) in [("ping", "_", "_"), ("l", "k", "0"), ("bogus", "x", "")] {
        sent += cmd.len() + key.len() + arg.len() + 3;
        received += c.request(cmd, key, arg).len() + 1;
    }
    let after = scrape(addr);
    assert_eq!(
        delta(&before, &after, "dflockd_bytes_read_total", &[]),
        sent as f64
    );
    assert_eq!(
        delta(&before, &after, "dflockd_bytes_written_total", &[]),
        received as f64
    );
}

#[test]
fn refused_connections_are_counted_by_reason() {
    let server = start(&["--max-connections", "1"]);
    let addr = server.metrics_addr();
    let mut first = server.connect();
    assert_eq!(first.request("ping", "_", "_"), "ok");
    let mut second = server.connect();
    second.expect_closed();
    wait_for_value(
        addr,
        "dflockd_connections_rejected_total",
        &[("reason", "max_connections")],
        1.0,
    );
    let m = scrape(addr);
    assert_eq!(value(&m, "dflockd_connections_accepted_total", &[]), 1.0);
    assert_eq!(value(&m, "dflockd_connections", &[]), 1.0);
    for reason in [
        "max_connections_per_ip",
        "auth",
        "tls_handshake",
        "unix_peer",
    ] {
        let labels = [("reason", reason)];
        assert_eq!(
            value(&m, "dflockd_connections_rejected_total", &labels),
            0.0
        );
    }
    // The first connection is unaffected.
    assert_eq!(first.request("ping", "_", "_"), "ok");
}

#[test]
fn failed_authentication_is_counted_and_info_needs_auth() {
    let server = start(&["--auth-token", "s3cret"]);
    let addr = server.metrics_addr();
    let mut wrong = server.connect();
    assert_eq!(wrong.request("auth", "_", "nope"), "error_auth");
    wrong.expect_closed();
    // `info`, like `stats`, is refused before authentication.
    let mut early = server.connect();
    assert_eq!(early.request("info", "_", ""), "error_auth");
    early.expect_closed();
    let mut right = server.connect();
    assert_eq!(right.request("auth", "_", "s3cret"), "ok");
    let info = info(&mut right);
    assert_eq!(info.connections_rejected, 2);

    let m = scrape(addr);
    assert_eq!(value(&m, "dflockd_auth_failures_total", &[]), 2.0);
    let auth = [("reason", "auth")];
    assert_eq!(value(&m, "dflockd_connections_rejected_total", &auth), 2.0);
    let error_auth = [("status", "error_auth")];
    assert_eq!(value(&m, "dflockd_responses_total", &error_auth), 2.0);
    assert_eq!(
        value(&m, "dflockd_requests_total", &[("command", "auth")]),
        2.0
    );
    assert_eq!(
        value(&m, "dflockd_requests_total", &[("command", "info")]),
        2.0
    );
    assert_eq!(value(&m, "dflockd_connections_accepted_total", &[]), 3.0);
}

#[test]
fn gauges_follow_holders_waiters_subscriptions_and_signals() {
    let server = start(&[]);
    let addr = server.metrics_addr();
    let mut c1 = server.connect();
    let mut c2 = server.connect();
    let mut c3 = server.connect();
    let mut c4 = server.connect();
    c1.lock("a", "0");
    c2.lock("b", "0");
    c3.send("l", "a", "30");
    grant(&c1.request("sl", "pool", "0 2"));
    grant(&c2.request("sl", "pool", "0 2"));
    c4.send("sl", "pool", "30 2");
    wait_until("both waiters are queued", SETTLE, || {
        let m = scrape(addr);
        value(&m, "dflockd_waiters", &[("ns", "lock")]) == 1.0
            && value(&m, "dflockd_waiters", &[("ns", "semaphore")]) == 1.0
    });
    let mut sub = server.connect();
    assert_eq!(sub.request("listen", "jobs.eu", ""), "ok");
    assert_eq!(sub.request("listen", "jobs.>", ""), "ok");
    let mut other = server.connect();
    assert_eq!(other.request("listen", "jobs.*", ""), "ok");
    let mut publisher = server.connect();
    // One copy per connection however many of its patterns match: two deliveries.
    assert_eq!(publisher.request("signal", "jobs.eu", "hi"), "ok 2");
    assert_eq!(publisher.request("signal", "nobody.listens", "x"), "ok 0");
    assert_eq!(sub.read_line(), "sig jobs.eu hi");
    assert_eq!(other.read_line(), "sig jobs.eu hi");

    let m = scrape(addr);
    let lock = [("ns", "lock")];
    let sem = [("ns", "semaphore")];
    assert_eq!(value(&m, "dflockd_keys", &lock), 2.0);
    assert_eq!(value(&m, "dflockd_holders", &lock), 2.0);
    assert_eq!(value(&m, "dflockd_waiters", &lock), 1.0);
    assert_eq!(value(&m, "dflockd_keys", &sem), 1.0);
    assert_eq!(value(&m, "dflockd_holders", &sem), 2.0);
    assert_eq!(value(&m, "dflockd_waiters", &sem), 1.0);
    assert_eq!(value(&m, "dflockd_subscriptions", &[]), 3.0);
    assert_eq!(value(&m, "dflockd_signals_published_total", &[]), 2.0);
    assert_eq!(value(&m, "dflockd_signal_deliveries_total", &[]), 2.0);
    assert_eq!(value(&m, "dflockd_connections", &[]), 7.0);

    // The holder of `a` and the subscriber leave: the waiter is granted, and the subscriber's
    // subscriptions go.
    drop(c1);
    assert!(c3.read_line().starts_with("ok "));
    assert!(c4.read_line().starts_with("ok "));
    drop(sub);
    wait_until("the subscriber's subscriptions are gone", SETTLE, || {
        value(&scrape(addr), "dflockd_subscriptions", &[]) == 1.0
    });
    let m = scrape(addr);
    assert_eq!(value(&m, "dflockd_waiters", &lock), 0.0);
    assert_eq!(value(&m, "dflockd_holders", &lock), 2.0);
    assert_eq!(value(&m, "dflockd_holders", &sem), 2.0);
    assert_eq!(value(&m, "dflockd_disconnect_releases_total", &lock), 1.0);
    assert_eq!(value(&m, "dflockd_disconnect_releases_total", &sem), 1.0);
}

#[test]
fn readyz_turns_503_while_draining_and_healthz_stays_200() {
    let mut server = start(&["--shutdown-timeout", "60"]);
    let addr = server.metrics_addr();
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.text()), (200, "ready\n"));
    let health = get(addr, "/healthz");
    assert_eq!((health.status, health.text()), (200, "ok\n"));
    assert!(health.header("content-type").starts_with("text/plain"));

    // A client holding a lock keeps the drain going.
    let mut holder = server.connect();
    holder.lock("k", "0");
    server.terminate();
    wait_until("/readyz answers 503", SETTLE, || {
        get(addr, "/readyz").status == 503
    });
    let draining = get(addr, "/readyz");
    assert_eq!(draining.text(), "draining\n");
    assert_eq!(get(addr, "/healthz").status, 200);
    scrape(addr);
    // The protocol connection is still open: its next request is answered, with the drain.
    assert_eq!(holder.request("ping", "_", "_"), "error_draining");
    holder.expect_closed();
    assert!(server.wait_exit(SETTLE).success());
}

/// Holds `keys` (each from `holder`), then queues `waiters[i]` blocking acquires on `keys[i]`
/// from fresh connections, with `acquire` (`l` or `sl`) and `arg` for both. Returns the
/// waiting connections (dropping them ends the waits).
fn contend(
    server: &TestServer,
    holder: &mut Client,
    acquire: &str,
    keys: &[(&str, usize)],
    hold_arg: &str,
    wait_arg: &str,
) -> Vec<Client> {
    let mut waiting = Vec::new();
    for &(key, n) in keys {
        grant(&holder.request(acquire, key, hold_arg));
        for _ in 0..n {
            let mut c = server.connect();
            c.send(acquire, key, wait_arg);
            waiting.push(c);
        }
    }
    waiting
}

#[test]
fn info_ranks_the_most_contended_keys() {
    let server = start(&[]);
    let mut holder = server.connect();
    let mut asker = server.connect();

    // A key with one waiter that has waited longest, then keys with 3, 2 and 1 waiters.
    let mut waiting = contend(&server, &mut holder, "l", &[("old1", 1)], "0", "60");
    wait_until("the first waiter has waited a while", SETTLE, || {
        info(&mut asker)
            .lock
            .contended
            .first()
            .is_some_and(|key| key.oldest_wait_ms >= 50)
    });
    waiting.extend(contend(
        &server,
        &mut holder,
        "l",
        &[("three", 3), ("two", 2), ("new1", 1)],
        "0",
        "60",
    ));
    let mut sem_holder = server.connect();
    waiting.extend(contend(
        &server,
        &mut sem_holder,
        "sl",
        &[("s1", 1), ("s3", 3), ("s2", 2)],
        "0 1",
        "60 1",
    ));
    wait_until("every waiter is queued", SETTLE, || {
        let info = info(&mut asker);
        info.lock.waiters == 7 && info.semaphore.waiters == 6
    });
    let snapshot = info(&mut asker);

    let order = |ns: &dflockd::client::NamespaceInfo| -> Vec<(String, u64)> {
        ns.contended
            .iter()
            .map(|key| (key.key.clone(), key.waiters))
            .collect()
    };
    let expected: Vec<(String, u64)> = [("three", 3), ("two", 2), ("old1", 1), ("new1", 1)]
        .iter()
        .map(|&(k, n)| (k.to_owned(), n))
        .collect();
    assert_eq!(order(&snapshot.lock), expected);
    let expected: Vec<(String, u64)> = [("s3", 3), ("s2", 2), ("s1", 1)]
        .iter()
        .map(|&(k, n)| (k.to_owned(), n))
        .collect();
    assert_eq!(order(&snapshot.semaphore), expected);

    // The holder is named by its connection id (as `stats` reports it for locks) and its
    // address.
    let stats = server.stats();
    let lock_holder = snapshot.lock.contended[0].holder_conn_id;
    let sem_holder_id = snapshot.semaphore.contended[0].holder_conn_id;
    assert!(lock_holder != 0 && sem_holder_id != 0 && lock_holder != sem_holder_id);
    for key in &snapshot.lock.contended {
        let entry = stats_entry(&stats, "locks", &key.key).expect("listed by stats");
        assert_eq!(
            entry["owner_conn_id"].as_u64(),
            Some(key.holder_conn_id),
            "{stats}"
        );
    }
    for (ns, id, peer) in [
        (
            &snapshot.lock,
            lock_holder,
            holder.stream().local_addr().unwrap(),
        ),
        (
            &snapshot.semaphore,
            sem_holder_id,
            sem_holder.stream().local_addr().unwrap(),
        ),
    ] {
        for key in &ns.contended {
            assert_eq!(key.holder_conn_id, id, "{key:?}");
            assert_eq!(key.holder_peer, peer.to_string(), "{key:?}");
            assert!(key.oldest_wait_ms <= key.held_ms + 1000, "{key:?}");
        }
    }
    let old = &snapshot.lock.contended[2];
    let new = &snapshot.lock.contended[3];
    assert!(old.oldest_wait_ms > new.oldest_wait_ms, "{old:?} {new:?}");
    assert_eq!((snapshot.lock.holders, snapshot.semaphore.holders), (4, 3));
    assert_eq!(snapshot.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(snapshot.connections, 3 + 13);
    assert!(snapshot.uptime_s > 0.0);
    // The client library reads the same payload (times aside, which moved on).
    let client = dflockd::client::Client::new([server.addr.to_string()]).expect("client");
    let read = client.info(0).expect("info through the client library");
    let ranking = |ns: &dflockd::client::NamespaceInfo| -> Vec<(String, u64, u64, String)> {
        ns.contended
            .iter()
            .map(|k| {
                (
                    k.key.clone(),
                    k.waiters,
                    k.holder_conn_id,
                    k.holder_peer.clone(),
                )
            })
            .collect()
    };
    assert_eq!(ranking(&read.lock), ranking(&snapshot.lock));
    assert_eq!(ranking(&read.semaphore), ranking(&snapshot.semaphore));
    assert_eq!(read.lock.grants, snapshot.lock.grants);

    // Waiters leaving drop the key in the ranking.
    let three: Vec<Client> = waiting.drain(1..4).collect();
    drop(three);
    wait_until("the waiters of `three` are gone", SETTLE, || {
        let info = info(&mut asker);
        info.lock.waiters == 4 && info.lock.contended.first().map(|k| k.key.as_str()) == Some("two")
    });
}

#[test]
fn json_logs_parse_line_by_line() {
    let mut server = start(&["--log-format", "json", "--debug", "--log-connections"]);
    let addr = server.metrics_addr();
    let mut c = server.connect();
    let token = c.lock("k", "0");
    assert_eq!(c.request("r", "k", &token), "ok");
    assert_eq!(c.request("bogus", "_", "_"), "error");
    assert_eq!(c.request("info", "_", "").get(..3), Some("ok "));
    scrape(addr);
    drop(c);
    let mut wrong = server.connect();
    wrong.send_raw(b"\x16\x03\x01 not a request at all\n\n\n");
    assert_eq!(wrong.read_line(), "error");
    drop(wrong);
    server.terminate();
    assert!(server.wait_exit(SETTLE).success());

    let log = server.log();
    assert!(log.len() >= 5, "{log:#?}");
    for line in &log {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("a log line is not an object: {line}"));
        for field in ["ts", "level", "msg"] {
            assert!(
                object.get(field).is_some_and(serde_json::Value::is_string),
                "no string {field} in {line}"
            );
        }
    }
    let msgs: Vec<&str> = log
        .iter()
        .filter_map(|line| line.split("\"msg\":\"").nth(1))
        .collect();
    assert!(msgs.iter().any(|m| m.starts_with("metrics on http://")));
    assert!(msgs.iter().any(|m| m.starts_with("shutdown complete")));
}
