//! Disconnect cleanup (spec §11, §2.4): a departing holder's locks go to the next waiter (or stay
//! until their lease ends without auto-release); a waiter that closes or half-closes leaves the
//! queue at once; a half-close after non-blocking requests still gets every reply.

use std::time::{Duration, Instant};

use crate::support::{TestServer, grant, lock_waiters, stats_entry, wait_until};

/// How long a test gives the server to notice a closed connection. The spec wants it at once;
/// this only bounds the polling.
const NOTICE: Duration = Duration::from_secs(1);

#[test]
fn a_holder_that_disconnects_releases_to_the_next_waiter() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    holder.lock("lock", "0");
    grant(&holder.request("sl", "pool", "0 1"));
    grant(&holder.request("e", "fast", ""));
    let mut waiter = server.connect();
    waiter.send("l", "lock", "10");
    let mut sem_waiter = server.connect();
    sem_waiter.send("sl", "pool", "10 1");
    let mut fast_waiter = server.connect();
    assert_eq!(fast_waiter.request("e", "fast", ""), "queued");
    wait_until("both blocking waiters queue", NOTICE, || {
        lock_waiters(&server, "lock") == 1 && lock_waiters(&server, "pool") == 1
    });
    drop(holder);
    grant(&waiter.read_line());
    grant(&sem_waiter.read_line());
    grant(&fast_waiter.request("w", "fast", "5"));
}

#[test]
fn a_holder_of_thousands_of_locks_releases_them_all_across_loop_turns() {
    // More than one turn's release budget (4 096): the rest is released on the turns that
    // follow, which must come at once rather than at the next timer (the waiter's is 30 s out).
    const LOCKS: usize = 10_000;
    let server = TestServer::start(&["--max-locks", "20000"]);
    let mut holder = server.connect();
    let pipelined: String = (0..LOCKS).map(|i| format!("l\nk{i}\n0\n")).collect();
    holder.send_raw(pipelined.as_bytes());
    for _ in 0..LOCKS {
        grant(&holder.read_line());
    }
    let mut first = server.connect();
    first.send("l", "k0", "30");
    let mut last = server.connect();
    last.send("l", &format!("k{}", LOCKS - 1), "30");
    wait_until("both waiters queue", NOTICE, || {
        lock_waiters(&server, "k0") == 1 && lock_waiters(&server, &format!("k{}", LOCKS - 1)) == 1
    });
    let left = Instant::now();
    drop(holder);
    grant(&first.read_line());
    grant(&last.read_line());
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(server.stats()["locks"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_granted_but_unwaited_two_phase_slot_is_released_on_disconnect() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut queued = server.connect();
    assert_eq!(queued.request("e", "k", ""), "queued");
    let mut last = server.connect();
    last.send("l", "k", "10");
    wait_until("two waiters", NOTICE, || lock_waiters(&server, "k") == 2);
    assert_eq!(holder.request("r", "k", &token), "ok");
    // `queued` now holds k without having called `w`; leaving hands it on.
    drop(queued);
    grant(&last.read_line());
}

#[test]
fn without_auto_release_a_lock_stays_held_until_its_lease_ends() {
    let server = TestServer::start(&["--no-auto-release-on-disconnect"]);
    let mut holder = server.connect();
    let acquired = Instant::now();
    holder.lock("k", "0 2");
    let released_by_token = holder.lock("other", "0 30");
    drop(holder);
    let mut observer = server.connect();
    wait_until("the server notices the holder left", NOTICE, || {
        observer.stats()["connections"] == 1
    });
    let stats = observer.stats();
    let held = stats_entry(&stats, "locks", "k").unwrap_or_else(|| panic!("k held: {stats}"));
    assert_eq!(held["owner_conn_id"], 1, "the departed holder still owns k");
    assert_eq!(observer.request("l", "k", "0"), "timeout");
    // Granted when the 2 s lease ends.
    grant(&observer.request("l", "k", "5"));
    let waited = acquired.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "granted after {waited:?}"
    );
    // A held lock of a departed connection can still be released by its token.
    assert_eq!(observer.request("r", "other", &released_by_token), "ok");
}

/// A waiter between a holder and a second waiter goes away (closing or half-closing);
/// it must leave the queue at once, and the second waiter gets the lock on release.
fn departing_waiter_leaves_the_queue(args: &[&str], half_close: bool) {
    let server = TestServer::start(args);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut first = server.connect();
    first.send("l", "k", "30");
    wait_until("first queues", NOTICE, || lock_waiters(&server, "k") == 1);
    let mut second = server.connect();
    second.send("l", "k", "30");
    wait_until("second queues", NOTICE, || lock_waiters(&server, "k") == 2);
    if half_close {
        first.shutdown_write();
        // The wait is cancelled and the connection torn down without a reply.
        first.expect_closed();
    } else {
        drop(first);
    }
    wait_until("the queue shrinks", NOTICE, || {
        lock_waiters(&server, "k") == 1
    });
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&second.read_line());
    assert_eq!(lock_waiters(&server, "k"), 0);
}

#[test]
fn a_waiter_that_disconnects_leaves_the_queue_at_once() {
    departing_waiter_leaves_the_queue(&[], false);
}

#[test]
fn a_waiter_that_half_closes_leaves_the_queue_at_once() {
    departing_waiter_leaves_the_queue(&[], true);
}

#[test]
fn a_departing_waiter_leaves_the_queue_even_without_auto_release() {
    departing_waiter_leaves_the_queue(&["--no-auto-release-on-disconnect"], false);
}

#[test]
fn a_queued_two_phase_waiter_that_disconnects_leaves_the_queue() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut enqueued = server.connect();
    assert_eq!(enqueued.request("e", "k", ""), "queued");
    let mut second = server.connect();
    second.send("l", "k", "30");
    wait_until("two waiters", NOTICE, || lock_waiters(&server, "k") == 2);
    drop(enqueued);
    wait_until("the queue shrinks", NOTICE, || {
        lock_waiters(&server, "k") == 1
    });
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&second.read_line());
}

#[test]
fn a_half_close_after_non_blocking_requests_still_gets_every_reply() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let mut requests = Vec::new();
    for (cmd, key, arg) in [
        ("ping", "_", ""),
        ("l", "free", "10 7"),
        ("e", "two-phase", ""),
        ("nope", "_", ""),
        ("stats", "_", "_"),
    ] {
        requests.extend_from_slice(format!("{cmd}\n{key}\n{arg}\n").as_bytes());
    }
    c.send_raw(&requests);
    c.shutdown_write();
    assert_eq!(c.read_line(), "ok");
    assert_eq!(grant(&c.read_line()).1, 7);
    assert!(c.read_line().starts_with("acquired "));
    assert_eq!(c.read_line(), "error");
    assert!(c.read_line().starts_with("ok {"));
    c.expect_closed();
    // Its locks were released when it went.
    let mut other = server.connect();
    other.lock("free", "5");
    other.lock("two-phase", "5");
}

#[test]
fn a_half_close_in_the_middle_of_a_request_ends_the_connection_without_a_reply() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    c.send_raw(b"ping\n_\n\nl\nk\n");
    c.shutdown_write();
    assert_eq!(c.read_line(), "ok");
    let start = Instant::now();
    c.expect_closed();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "not closed promptly"
    );
    assert_eq!(server.stats()["locks"], serde_json::json!([]));
}
