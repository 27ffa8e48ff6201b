//! The per-line read deadline (spec §2.5) with `--read-timeout 1`: idle and half-sent requests
//! are answered `error` and closed; a deadline runs per line, not per request or per byte; it
//! does not run while a blocking command waits; `ping` keeps a connection alive.
//!
//! These tests are about time passing, so some of them pace their writes with sleeps.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{TestServer, grant};

/// The read timeout every test here configures, in the server's flag syntax and as a duration.
const READ_TIMEOUT: &str = "1";
const READ_TIMEOUT_DURATION: Duration = Duration::from_secs(1);

/// Asserts `elapsed` is the read timeout, give or take scheduling.
fn assert_about_read_timeout(elapsed: Duration) {
    assert!(
        elapsed >= READ_TIMEOUT_DURATION - Duration::from_millis(100)
            && elapsed < READ_TIMEOUT_DURATION * 3,
        "closed after {elapsed:?}"
    );
}

#[test]
fn an_idle_connection_is_answered_error_and_closed() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut c = server.connect();
    let start = Instant::now();
    assert_eq!(c.read_line(), "error");
    assert_about_read_timeout(start.elapsed());
    c.expect_closed();
}

#[test]
fn a_half_sent_request_is_answered_error_and_closed() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut c = server.connect();
    c.send_raw(b"l\nk\n");
    let start = Instant::now();
    assert_eq!(c.read_line(), "error");
    assert_about_read_timeout(start.elapsed());
    c.expect_closed();
    // Nothing was acquired.
    assert_eq!(server.stats()["locks"], serde_json::json!([]));
}

#[test]
fn each_line_gets_its_own_deadline() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut c = server.connect();
    let start = Instant::now();
    // Each line completes within 0.6 s of the previous one; the whole request takes 1.2 s.
    let pause = Duration::from_millis(600);
    c.send_raw(b"l\n");
    sleep(pause);
    c.send_raw(b"k\n");
    sleep(pause);
    c.send_raw(b"0 5\n");
    assert_eq!(grant(&c.read_line()).1, 5);
    assert!(start.elapsed() > READ_TIMEOUT_DURATION);
}

#[test]
fn the_deadline_is_not_refreshed_by_bytes_within_a_line() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut c = server.connect();
    let start = Instant::now();
    c.send_raw(b"pi");
    // More bytes of the same line, but no LF: the line's deadline stays where it was.
    sleep(Duration::from_millis(600));
    c.send_raw(b"n");
    assert_eq!(c.read_line(), "error");
    assert_about_read_timeout(start.elapsed());
    c.expect_closed();
}

#[test]
fn no_read_deadline_runs_while_a_blocking_acquire_waits() {
    // Without auto-release the holder's own read timeout does not free the lock.
    let server = TestServer::start(&[
        "--read-timeout",
        READ_TIMEOUT,
        "--no-auto-release-on-disconnect",
    ]);
    let mut holder = server.connect();
    holder.lock("k", "0 30");
    let mut waiter = server.connect();
    let start = Instant::now();
    assert_eq!(waiter.request("l", "k", "2"), "timeout");
    assert!(start.elapsed() >= Duration::from_millis(1900));
    // After the reply the connection reads again, under a fresh deadline.
    let start = Instant::now();
    assert_eq!(waiter.read_line(), "error");
    assert_about_read_timeout(start.elapsed());
    waiter.expect_closed();
}

#[test]
fn pings_keep_a_connection_alive() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut c = server.connect();
    let start = Instant::now();
    while start.elapsed() < READ_TIMEOUT_DURATION * 2 {
        assert_eq!(c.request("ping", "_", ""), "ok");
        sleep(Duration::from_millis(400));
    }
    assert_eq!(c.read_line(), "error", "idle again after the last ping");
    c.expect_closed();
}

#[test]
fn a_read_timeout_releases_the_locks_of_the_connection() {
    let server = TestServer::start(&["--read-timeout", READ_TIMEOUT]);
    let mut holder = server.connect();
    holder.lock("k", "0 30");
    let mut waiter = server.connect();
    waiter.send("l", "k", "5");
    assert_eq!(holder.read_line(), "error");
    grant(&waiter.read_line());
}
