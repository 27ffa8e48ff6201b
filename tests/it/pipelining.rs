//! Pipelining (spec §2.4): many requests in one write, requests queued behind a blocking
//! command, requests split across writes, and output backpressure against a client that sends
//! without reading.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::{Client, TestServer, grant, lock_waiters, stats_entry, wait_until};

#[test]
fn a_thousand_pipelined_requests_get_a_thousand_replies_in_order() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    // Each request asks for a different lease, which its reply echoes: the order is visible.
    let mut batch = Vec::new();
    for i in 1..=1000 {
        batch.extend_from_slice(format!("l\nkey{i}\n0 {i}\n").as_bytes());
    }
    c.send_raw(&batch);
    for i in 1..=1000 {
        assert_eq!(grant(&c.read_line()).1, i);
    }
    assert_eq!(c.stats()["locks"].as_array().map(Vec::len), Some(1000));
}

#[test]
fn requests_behind_a_blocking_acquire_wait_for_it() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut c = server.connect();
    c.send_raw(b"l\nk\n10\nl\nbehind\n0\nping\n_\n\n");
    wait_until(
        "the blocking acquire queues",
        Duration::from_secs(2),
        || lock_waiters(&server, "k") == 1,
    );
    // The pipelined `l behind` has not run: no such lock exists.
    let stats = server.stats();
    assert!(stats_entry(&stats, "locks", "behind").is_none(), "{stats}");
    assert!(
        stats_entry(&stats, "idle_locks", "behind").is_none(),
        "{stats}"
    );
    // And nothing was answered. (A short quiet period: proving something does not happen.)
    c.expect_silence(Duration::from_millis(200));
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&c.read_line());
    grant(&c.read_line());
    assert_eq!(c.read_line(), "ok");
}

#[test]
fn a_request_split_at_any_byte_gets_the_same_reply() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let token = c.lock("k", "0");
    let request = format!("n\r\nk\r\n{token}  7\r\n").into_bytes();
    for split in 1..request.len() {
        c.send_raw(&request[..split]);
        c.send_raw(&request[split..]);
        assert_eq!(c.read_line(), "ok 7", "split at {split}");
    }
    // One write per byte, with the requests back to back.
    let both = [&request[..], b"ping\n_\n\n"].concat();
    for byte in &both {
        c.send_raw(std::slice::from_ref(byte));
    }
    assert_eq!(c.read_line(), "ok 7");
    assert_eq!(c.read_line(), "ok");
}

/// Makes `stats` expensive to answer: 1000 locks with long keys, about 260 KB of JSON. The
/// returned connection holds them.
fn make_stats_large(server: &TestServer) -> Client {
    let mut setup = server.connect();
    let long = "x".repeat(200);
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend_from_slice(format!("l\n{long}{i:04}\n0\n").as_bytes());
    }
    setup.send_raw(&batch);
    for _ in 0..1000 {
        grant(&setup.read_line());
    }
    let stats_len = setup.request("stats", "_", "_").len();
    assert!(stats_len > 250_000, "stats is {stats_len} bytes");
    setup
}

/// A client that pipelines far more replies than any buffer holds, without reading, is paused:
/// the server neither buffers its output without bound nor stops serving others, and the flooder
/// gets every reply, in order, once it reads.
#[test]
fn a_client_that_does_not_read_is_paused_without_starving_others() {
    let server = TestServer::start(&[]);
    let _setup = make_stats_large(&server);
    let mut flooder = server.connect();
    let token = flooder.lock("marker", "0");
    // Rounds of `stats`, fifty pings and a renew whose reply numbers the round: 160 rounds ask
    // for about 40 MB of replies with 1.2 MB of requests.
    const ROUNDS: usize = 160;
    const PINGS: usize = 50;
    let mut flood = Vec::new();
    for round in 1..=ROUNDS {
        flood.extend_from_slice(b"stats\n_\n_\n");
        for _ in 0..PINGS {
            flood.extend_from_slice(b"ping\n_\n\n");
        }
        flood.extend_from_slice(format!("n\nmarker\n{token} {round}\n").as_bytes());
    }
    let baseline_kib = server.rss_kib();
    // A thread writes: once the server pauses the flooder, this write blocks until it reads.
    let mut writer_stream = flooder
        .stream()
        .try_clone()
        .expect("clone the flooder's socket");
    let writer = std::thread::spawn(move || writer_stream.write_all(&flood));

    // Others are served promptly meanwhile.
    let mut other = server.connect();
    for round in 0..20 {
        let start = Instant::now();
        assert_eq!(other.request("ping", "_", ""), "ok");
        let token = other.lock("other", "0");
        assert_eq!(other.request("r", "other", &token), "ok");
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "round {round} took {took:?}"
        );
        let grown_kib = server.rss_kib().saturating_sub(baseline_kib);
        assert!(
            grown_kib < 24 * 1024,
            "server grew by {grown_kib} KiB while the flooder did not read"
        );
    }

    // Now the flooder reads: everything, in order.
    for round in 1..=ROUNDS {
        let stats = flooder.read_line();
        assert!(
            stats.starts_with("ok {") && stats.len() > 250_000,
            "round {round}"
        );
        for _ in 0..PINGS {
            assert_eq!(flooder.read_line(), "ok", "round {round}");
        }
        assert_eq!(flooder.read_line(), format!("ok {round}"));
    }
    writer
        .join()
        .expect("writer thread")
        .expect("write the flood");
    assert_eq!(flooder.request("ping", "_", ""), "ok");
}

#[test]
fn flooding_behind_a_blocking_acquire_disconnects_the_client_and_frees_its_place() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut flooder = server.connect();
    flooder.send("l", "k", "30");
    let mut second = server.connect();
    wait_until("the flooder queues", Duration::from_secs(2), || {
        lock_waiters(&server, "k") == 1
    });
    second.send("l", "k", "30");
    wait_until("the second waiter queues", Duration::from_secs(2), || {
        lock_waiters(&server, "k") == 2
    });
    // Far more than any input buffer holds, queued behind the waiting acquire. A thread writes,
    // since the server may stop reading (or reset the connection) part way.
    let mut stream = flooder
        .stream()
        .try_clone()
        .expect("clone the flooder's socket");
    let writer = std::thread::spawn(move || {
        let flood = b"ping\n_\n\n".repeat(128 * 1024);
        let _ = stream.write_all(&flood);
    });
    flooder.expect_closed();
    wait_until(
        "the flooder leaves the queue",
        Duration::from_secs(2),
        || lock_waiters(&server, "k") == 1,
    );
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&second.read_line());
    writer.join().expect("writer thread");
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let server = TestServer::start(&["--write-timeout", "1"]);
    let mut observer = server.connect();
    let stalled = server.connect();
    // About 40 MB of replies that are never read: the server's writes stall.
    let mut stream = stalled.stream().try_clone().expect("clone the socket");
    let writer = std::thread::spawn(move || {
        let flood = b"stats\n_\n_\n".repeat(400_000);
        let _ = stream.write_all(&flood);
    });
    // The observer's own requests must keep being answered meanwhile (a reply that does not come
    // within the client's read timeout fails the test).
    wait_until(
        "the stalled client is dropped",
        Duration::from_secs(5),
        || observer.stats()["connections"] == 1,
    );
    drop(stalled);
    writer.join().expect("writer thread");
}

#[test]
fn a_flood_followed_by_a_half_close_still_gets_every_reply() {
    let server = TestServer::start(&[]);
    let _setup = make_stats_large(&server);
    let mut c = server.connect();
    let token = c.lock("marker", "0");
    // About 26 MB of replies, far more than the socket buffers and the server's output limit.
    const ROUNDS: usize = 100;
    let mut flood = Vec::new();
    for round in 1..=ROUNDS {
        flood.extend_from_slice(b"stats\n_\n_\n");
        flood.extend_from_slice(format!("n\nmarker\n{token} {round}\n").as_bytes());
    }
    c.send_raw(&flood);
    c.shutdown_write();
    for round in 1..=ROUNDS {
        assert!(c.read_line().starts_with("ok {"), "round {round}");
        assert_eq!(c.read_line(), format!("ok {round}"));
    }
    c.expect_closed();
}
