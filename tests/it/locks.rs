//! Locks and semaphores across real connections: FIFO order, release and renewal by any
//! connection, lease expiry handing the lock on, two-phase acquisition, namespaces and limits.

use std::time::{Duration, Instant};

use crate::support::{TestServer, grant, lock_waiters, stats_entry, wait_until};

/// How long a test waits for the server to register a queued waiter.
const SETTLE: Duration = Duration::from_secs(2);

/// The `owner_conn_id` of lock `key` in `stats`.
fn owner(server: &TestServer, key: &str) -> u64 {
    let stats = server.stats();
    let entry = stats_entry(&stats, "locks", key)
        .unwrap_or_else(|| panic!("lock {key:?} not in stats: {stats}"));
    entry["owner_conn_id"].as_u64().expect("owner_conn_id")
}

#[test]
fn waiters_are_granted_in_fifo_order_across_connections() {
    let server = TestServer::start(&[]);
    // Connection ids count from 1 in accept order.
    let mut a = server.connect();
    let token_a = a.lock("k", "0");
    let mut b = server.connect();
    b.send("l", "k", "10");
    wait_until("b queues", SETTLE, || lock_waiters(&server, "k") == 1);
    let mut c = server.connect();
    c.send("l", "k", "10");
    wait_until("c queues", SETTLE, || lock_waiters(&server, "k") == 2);
    assert_eq!(owner(&server, "k"), 1);

    assert_eq!(a.request("r", "k", &token_a), "ok");
    let (token_b, lease) = grant(&b.read_line());
    assert_eq!(lease, 33);
    assert_eq!(lock_waiters(&server, "k"), 1, "c still waits");
    assert_eq!(owner(&server, "k"), 2, "b (connection 2) holds k");

    assert_eq!(b.request("r", "k", &token_b), "ok");
    let (token_c, _) = grant(&c.read_line());
    assert_ne!(token_c, token_b);
    assert_ne!(token_c, token_a);
    assert_eq!(c.request("r", "k", &token_c), "ok");
}

#[test]
fn any_connection_may_release_or_renew_a_token() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let mut b = server.connect();
    let token = a.lock("k", "0 5");
    assert_eq!(b.request("n", "k", &format!("{token} 7")), "ok 7");
    assert_eq!(b.request("n", "k", &token), "ok 33");
    assert_eq!(b.request("r", "k", &token), "ok");
    assert_eq!(a.request("r", "k", &token), "error");
    assert_eq!(a.request("n", "k", &token), "error");
    let mut c = server.connect();
    c.lock("k", "0");
}

#[test]
fn a_release_by_another_connection_grants_the_next_waiter() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut waiter = server.connect();
    waiter.send("l", "k", "10");
    wait_until("the waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    let mut third = server.connect();
    assert_eq!(third.request("r", "k", &token), "ok");
    grant(&waiter.read_line());
}

#[test]
fn renew_resets_the_lease_rather_than_extending_it() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let token = a.lock("k", "0 100");
    assert_eq!(a.request("n", "k", &format!("{token} 2")), "ok 2");
    let stats = a.stats();
    let left = stats_entry(&stats, "locks", "k").expect("k is held")["lease_expires_in_s"]
        .as_f64()
        .expect("lease_expires_in_s");
    assert!(
        left > 1.0 && left <= 2.0,
        "lease left after renew to 2 s: {left}"
    );
}

#[test]
fn an_expired_lease_passes_the_lock_to_the_next_waiter() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0 1");
    let mut waiter = server.connect();
    let start = Instant::now();
    // Granted when the 1 s lease runs out, not at the 5 s timeout.
    let (_, lease) = grant(&waiter.request("l", "k", "5"));
    let waited = start.elapsed();
    assert_eq!(lease, 33);
    assert!(waited < Duration::from_secs(3), "granted after {waited:?}");
    // The expired holder's token is dead.
    assert_eq!(holder.request("n", "k", &token), "error");
    assert_eq!(holder.request("r", "k", &token), "error");
}

#[test]
fn the_default_lease_ttl_applies_when_none_is_given() {
    let server = TestServer::start(&["--default-lease-ttl", "1"]);
    let mut holder = server.connect();
    let (token, lease) = grant(&holder.request("l", "k", "0"));
    assert_eq!(lease, 1);
    let mut waiter = server.connect();
    let (_, lease) = grant(&waiter.request("l", "k", "5"));
    assert_eq!(lease, 1);
    assert_eq!(holder.request("r", "k", &token), "error");
    assert_eq!(
        holder.request("e", "k2", "").split(' ').nth(2),
        Some("1"),
        "e uses the default lease too"
    );
}

#[test]
fn a_try_lock_never_jumps_the_queue_and_locks_are_not_reentrant() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    assert_eq!(holder.request("l", "k", "0"), "timeout", "not re-entrant");
    let mut waiter = server.connect();
    waiter.send("l", "k", "10");
    wait_until("the waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    let mut other = server.connect();
    assert_eq!(other.request("l", "k", "0"), "timeout");
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&waiter.read_line());
    assert_eq!(other.request("l", "k", "0"), "timeout");
}

#[test]
fn a_wait_times_out_and_leaves_the_queue() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut waiter = server.connect();
    let start = Instant::now();
    assert_eq!(waiter.request("l", "k", "1"), "timeout");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "timed out early"
    );
    assert_eq!(lock_waiters(&server, "k"), 0);
    assert_eq!(holder.request("r", "k", &token), "ok");
    waiter.lock("k", "0");
}

#[test]
fn two_phase_acquisition_across_connections() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let token_a = a.lock("k", "0");
    let mut b = server.connect();
    let mut c = server.connect();
    assert_eq!(b.request("e", "k", "9"), "queued");
    assert_eq!(b.request("e", "k", "9"), "error_already_enqueued");
    assert_eq!(lock_waiters(&server, "k"), 1);
    // Two-phase state belongs to the connection that enqueued.
    assert_eq!(c.request("w", "k", "1"), "error_not_enqueued");

    b.send("w", "k", "10");
    assert_eq!(a.request("r", "k", &token_a), "ok");
    let (token_b, lease) = grant(&b.read_line());
    assert_eq!(lease, 9);
    assert_eq!(owner(&server, "k"), 2);
    assert_eq!(b.request("w", "k", "0"), "error_not_enqueued");

    // Granted before `w`: the grant waits in the state and `w` returns it at once.
    assert_eq!(c.request("e", "k", "4"), "queued");
    assert_eq!(b.request("r", "k", &token_b), "ok");
    let (token_c, lease) = grant(&c.request("w", "k", "0"));
    assert_eq!(lease, 4);
    assert_eq!(owner(&server, "k"), 3);

    // `r` of a token still held in two-phase state clears the state.
    assert_eq!(a.request("r", "k", &token_c), "ok");
    assert_eq!(c.request("w", "k", "0"), "error_not_enqueued");
    grant(&c.request("e", "k", ""));
}

#[test]
fn a_timed_out_two_phase_wait_leaves_the_queue() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let token = a.lock("k", "0");
    let mut b = server.connect();
    assert_eq!(b.request("e", "k", ""), "queued");
    assert_eq!(b.request("w", "k", "1"), "timeout");
    assert_eq!(lock_waiters(&server, "k"), 0);
    assert_eq!(b.request("w", "k", "0"), "error_not_enqueued");
    assert_eq!(b.request("e", "k", ""), "queued", "a new e is allowed");
    assert_eq!(a.request("r", "k", &token), "ok");
    grant(&b.request("w", "k", "5"));
}

#[test]
fn blocking_and_two_phase_waiters_share_one_queue() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let token_a = a.lock("k", "0");
    let mut b = server.connect();
    assert_eq!(b.request("e", "k", ""), "queued");
    let mut c = server.connect();
    c.send("l", "k", "10");
    wait_until("c queues", SETTLE, || lock_waiters(&server, "k") == 2);
    assert_eq!(a.request("r", "k", &token_a), "ok");
    // b was first in line: it holds the lock although it has not called `w` yet.
    assert_eq!(owner(&server, "k"), 2);
    assert_eq!(lock_waiters(&server, "k"), 1);
    let (token_b, _) = grant(&b.request("w", "k", "0"));
    assert_eq!(b.request("r", "k", &token_b), "ok");
    grant(&c.read_line());
}

#[test]
fn locks_and_semaphores_live_in_separate_namespaces() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let lock = a.lock("k", "0");
    let (sem, _) = grant(&a.request("sl", "k", "0 2"));
    let mut b = server.connect();
    assert_eq!(b.request("l", "k", "0"), "timeout");
    grant(&b.request("sl", "k", "0 2"));
    assert_eq!(b.request("sl", "k", "0 2"), "timeout");
    assert_eq!(b.request("r", "k", &sem), "error");
    assert_eq!(b.request("sr", "k", &lock), "error");
    let stats = b.stats();
    assert!(stats_entry(&stats, "locks", "k").is_some(), "{stats}");
    let sem_entry = stats_entry(&stats, "semaphores", "k").expect("semaphore k");
    assert_eq!(sem_entry["holders"], 2);
    assert_eq!(b.request("r", "k", &lock), "ok");
    assert_eq!(b.request("sr", "k", &sem), "ok");
}

#[test]
fn semaphores_grant_up_to_their_limit_in_fifo_order() {
    let server = TestServer::start(&[]);
    let mut holders: Vec<_> = (0..3).map(|_| server.connect()).collect();
    let tokens: Vec<String> = holders
        .iter_mut()
        .map(|c| grant(&c.request("sl", "pool", "0 3")).0)
        .collect();
    let mut d = server.connect();
    assert_eq!(d.request("sl", "pool", "0 3"), "timeout");
    assert_eq!(d.request("sl", "pool", "0 4"), "error_limit_mismatch");
    assert_eq!(d.request("se", "pool", "2"), "error_limit_mismatch");
    d.send("sl", "pool", "10 3");
    let mut e = server.connect();
    assert_eq!(e.request("se", "pool", "3"), "queued");
    wait_until("two semaphore waiters", SETTLE, || {
        let stats = server.stats();
        stats_entry(&stats, "semaphores", "pool").is_some_and(|p| p["waiters"] == 2)
    });
    assert_eq!(holders[0].request("sr", "pool", &tokens[0]), "ok");
    let (token_d, _) = grant(&d.read_line());
    assert_eq!(holders[1].request("sr", "pool", &tokens[1]), "ok");
    let (token_e, _) = grant(&e.request("sw", "pool", "0"));
    assert_ne!(token_d, token_e);
    let stats = server.stats();
    let pool = stats_entry(&stats, "semaphores", "pool").expect("pool");
    assert_eq!(pool["limit"], 3);
    assert_eq!(pool["holders"], 3);
    assert_eq!(pool["waiters"], 0);
}

#[test]
fn one_connection_may_hold_several_slots_of_a_semaphore() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let (first, _) = grant(&a.request("sl", "pool", "0 2"));
    let (second, _) = grant(&a.request("sl", "pool", "0 2"));
    assert_ne!(first, second);
    assert_eq!(a.request("sl", "pool", "0 2"), "timeout");
    assert_eq!(a.request("sr", "pool", &first), "ok");
    assert_eq!(a.request("sn", "pool", &format!("{second} 3")), "ok 3");
    assert_eq!(a.request("sr", "pool", &second), "ok");
}

#[test]
fn a_semaphore_lease_expiry_grants_the_next_waiter() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let (token, _) = grant(&a.request("sl", "pool", "0 2 1"));
    grant(&a.request("sl", "pool", "0 2 30"));
    let mut b = server.connect();
    let start = Instant::now();
    grant(&b.request("sl", "pool", "5 2"));
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(a.request("sr", "pool", &token), "error");
}

#[test]
fn a_granted_two_phase_slot_that_expires_before_w_clears_the_state() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let token = a.lock("k", "0");
    let mut b = server.connect();
    assert_eq!(b.request("e", "k", "1"), "queued");
    let mut c = server.connect();
    c.send("l", "k", "5");
    wait_until("c queues", SETTLE, || lock_waiters(&server, "k") == 2);
    // b is granted (lease 1 s) but never calls `w`; c gets the lock when that lease ends.
    assert_eq!(a.request("r", "k", &token), "ok");
    grant(&c.read_line());
    assert_eq!(b.request("w", "k", "0"), "error_not_enqueued");
    assert_eq!(b.request("e", "k", ""), "queued", "a new e is accepted");
}

#[test]
fn an_idle_semaphore_keeps_its_limit_until_it_is_collected() {
    let server = TestServer::start(&["--gc-interval", "1", "--gc-max-idle", "0"]);
    let mut a = server.connect();
    let (token, _) = grant(&a.request("sl", "pool", "0 2"));
    assert_eq!(a.request("sr", "pool", &token), "ok");
    // The entry is idle but still there; the idle GC drops it within a second or so.
    let mut mismatched = false;
    wait_until("idle GC forgets the limit", SETTLE, || {
        match a.request("sl", "pool", "0 3").as_str() {
            "error_limit_mismatch" => {
                mismatched = true;
                false
            }
            line => {
                grant(line);
                true
            }
        }
    });
    assert!(
        mismatched,
        "the idle entry should have kept limit 2 at first"
    );
}

#[test]
fn the_largest_timeout_waits_instead_of_overflowing() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut waiter = server.connect();
    waiter.send("l", "k", "9223372036 9223372036");
    wait_until("the waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    // Still waiting, not timed out at once. (A short quiet period: proving nothing happens.)
    waiter.expect_silence(Duration::from_millis(200));
    assert_eq!(holder.request("r", "k", &token), "ok");
    let (token, lease) = grant(&waiter.read_line());
    assert_eq!(lease, 9_223_372_036);
    assert_eq!(
        waiter.request("n", "k", &format!("{token} 9223372036")),
        "ok 9223372036"
    );

    let mut queued = server.connect();
    assert_eq!(queued.request("e", "k", ""), "queued");
    queued.send("w", "k", "9223372036");
    // Again a short quiet period: the longest wait must not end at once.
    queued.expect_silence(Duration::from_millis(200));
    assert_eq!(waiter.request("r", "k", &token), "ok");
    grant(&queued.read_line());
}

#[test]
fn concurrent_clients_never_hold_a_lock_at_the_same_time() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = Arc::new(TestServer::start(&[]));
    let inside = Arc::new(AtomicUsize::new(0));
    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (server, inside, granted) = (server.clone(), inside.clone(), granted.clone());
            std::thread::spawn(move || {
                let mut c = server.connect();
                for _ in 0..25 {
                    let token = c.lock("shared", "10");
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    granted.fetch_add(1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(c.request("r", "shared", &token), "ok");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    assert_eq!(granted.load(Ordering::SeqCst), 16 * 25);
}
