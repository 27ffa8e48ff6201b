//! `--max-locks` and `--max-waiters` (§8.3, §8.6).

use super::harness::{Harness, config, granted};
use crate::protocol::Response;

#[test]
fn max_locks_counts_both_namespaces_and_spares_existing_keys() {
    let mut h = Harness::new(config(|c| c.max_locks = 2));
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "a", "0"), 33);
    let tsa = granted(h.ask(a, "sl", "a", "0 2"), 33);
    assert_eq!(h.ask(b, "l", "b", "0"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "l", "b", "10"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "sl", "b", "0 2"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "e", "b", ""), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "se", "b", "2"), Response::ErrorMaxLocks);
    assert_eq!(h.resources(), 2);

    // Existing keys keep working at the cap.
    assert_eq!(h.ask(b, "l", "a", "0"), Response::Timeout);
    assert_eq!(h.ask(b, "e", "a", ""), Response::Queued);
    let tsb = granted(h.ask(b, "sl", "a", "0 2"), 33);
    assert_eq!(h.ask(a, "r", "a", &ta.to_string()), Response::Ok);
    let tb = granted(h.ask(b, "w", "a", "0"), 33);
    for (cmd, token) in [("r", tb), ("sr", tsa), ("sr", tsb)] {
        assert_eq!(h.ask(b, cmd, "a", &token.to_string()), Response::Ok);
    }

    // Released entries keep their budget until idle GC removes them.
    assert_eq!(h.ask(c, "l", "b", "0"), Response::ErrorMaxLocks);
    h.at(60_000);
    assert_eq!(h.resources(), 0);
    granted(h.ask(c, "l", "b", "0"), 33);
    h.finish();
}

#[test]
fn max_waiters_refuses_blocking_try_and_two_phase_requests() {
    let mut h = Harness::new(config(|c| c.max_waiters = 1));
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0"), 33);
    h.block(b, "l", "k", "10");
    assert_eq!(h.ask(c, "l", "k", "10"), Response::ErrorMaxWaiters);
    // Even a try-lock reports the full queue rather than `timeout`.
    assert_eq!(h.ask(c, "l", "k", "0"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "e", "k", ""), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.waiters(), 1);

    granted(h.ask(a, "sl", "s", "0 2"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(d, "se", "s", "2"), Response::Queued);
    assert_eq!(h.ask(c, "sl", "s", "5 2"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "sl", "s", "0 2"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "se", "s", "2"), Response::ErrorMaxWaiters);
    assert_eq!(h.waiters(), 2);

    // Once b's wait ends the queue has room again.
    h.at(10_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(c, "e", "k", ""), Response::Queued);
    h.finish();
}

#[test]
fn leases_and_waiters_stay_within_what_a_timer_can_name() {
    let mut h = Harness::new(config(|_| {}));
    // The real bound is 2^30 - 1 entries, far beyond a test; the check is the same at 3.
    h.engine.max_timed = 3;
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.block(b, "l", "k", "10");
    assert_eq!(h.ask(c, "e", "k", ""), Response::Queued);
    // Two waiters and a lease: any new grant or waiter is refused, on any key.
    for (cmd, key, arg) in [("l", "other", "0"), ("sl", "s", "0 2"), ("l", "k", "10")] {
        assert_eq!(h.ask(a, cmd, key, arg), Response::ErrorMaxLocks);
    }
    assert_eq!(h.resources(), 1);
    // A release that hands the lock on ends a lease and turns a waiter into one: one entry
    // comes free, and only one.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 33);
    granted(h.ask(a, "l", "other", "0"), 33);
    assert_eq!(h.ask(a, "l", "third", "0"), Response::ErrorMaxLocks);
    h.finish();
}

#[test]
fn max_locks_past_what_a_timer_can_name_counts_as_that() {
    let h = Harness::new(config(|c| c.max_locks = u64::MAX));
    assert_eq!(
        h.engine.config().max_locks,
        crate::engine::MAX_TIMED_ENTRIES as u64
    );
}
