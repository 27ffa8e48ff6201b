//! Lease expiry and wait timeouts (§8.3, §8.5), and which wins when both fall in one millisecond.

use super::harness::{Harness, granted};
use crate::protocol::Response;

#[test]
fn a_lease_ends_exactly_at_its_deadline_and_the_next_lease_starts_at_the_grant() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "10 5"), 5);
    h.block(b, "l", "k", "10 7");

    h.at(4_999);
    assert_eq!(h.holders(), 1);
    h.quiet(b);
    h.at(5_000);
    let tb = granted(h.reply(b), 7);
    assert_eq!(h.holders(), 1);
    assert_eq!(h.waiters(), 0);

    // b's lease runs from its grant at 5 000, not from its request at 0.
    h.at(11_999);
    assert_eq!(h.holders(), 1);
    h.at(12_000);
    assert_eq!(h.holders(), 0);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Error);
    h.finish();
}

#[test]
fn grant_beats_timeout_in_the_same_millisecond_lease_timer_set_first() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    // The holder's expiry timer is set before the waiter's timeout; both fall due at 5 000.
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "5 9");
    h.at(4_999);
    h.quiet(b);
    h.at(5_000);
    granted(h.reply(b), 9);
    h.finish();
}

#[test]
fn grant_beats_timeout_in_the_same_millisecond_wait_timer_set_first() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "60 4");
    // c's timeout (due at 5 000) is set now; b's lease timer, also due at 5 000, only at 1 000.
    h.block(c, "l", "k", "5 9");
    h.at(1_000);
    granted(h.reply(b), 4);
    h.at(4_999);
    h.quiet(c);
    h.at(5_000);
    granted(h.reply(c), 9);
    h.finish();
}

#[test]
fn grant_beats_timeout_when_the_clock_jumps_past_both_deadlines() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "5 9");
    h.jump_to(7_000);
    granted(h.reply(b), 9);
    // The grant happened when the engine saw it: at 7 000, so the lease ends at 16 000.
    h.at(15_999);
    assert_eq!(h.holders(), 1);
    h.at(16_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn grant_beats_timeout_of_a_two_phase_wait() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    assert_eq!(h.ask(b, "e", "k", "6"), Response::Queued);
    h.block(b, "w", "k", "5");
    h.at(5_000);
    granted(h.reply(b), 6);
    h.finish();
}

#[test]
fn in_the_same_millisecond_only_the_waiters_reached_by_the_grant_win() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "60");
    h.block(c, "l", "k", "5");
    h.at(5_000);
    granted(h.reply(b), 33);
    assert_eq!(h.reply(c), Response::Timeout);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

#[test]
fn semaphore_slots_freed_in_the_same_millisecond_beat_both_timeouts() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    granted(h.ask(b, "sl", "s", "0 2 5"), 5);
    h.block(c, "sl", "s", "5 2 8");
    h.block(d, "sl", "s", "5 2 9");
    h.at(5_000);
    let tc = granted(h.reply(c), 8);
    let td = granted(h.reply(d), 9);
    assert!(td.fence > tc.fence);
    h.finish();
}

#[test]
fn blocking_acquire_times_out_exactly_at_its_deadline_and_leaves_the_queue() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.block(b, "l", "k", "1");
    h.block(c, "l", "k", "10");
    h.at(999);
    h.quiet(b);
    h.at(1_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    h.quiet(c);

    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    h.finish();
}

#[test]
fn try_lock_never_jumps_the_queue() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    // Free and unqueued: a try-lock succeeds.
    granted(h.ask(a, "l", "k", "0 5"), 5);
    // Held: it fails at once and leaves nothing behind.
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    assert_eq!(h.waiters(), 0);

    h.block(b, "l", "k", "60");
    // a's lease passes at 5 000; the try-lock arrives before the expiry is handled. The freed
    // lock goes to b, who queued first.
    h.skip_to(5_000);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    let tb = granted(h.reply(b), 33);
    h.at(5_000);

    // Same with the expiry handled first.
    h.block(a, "l", "k", "60");
    h.at(6_000);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    h.finish();
}

#[test]
fn locks_are_not_reentrant() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "l", "k", "0 3"), 3);
    h.block(a, "l", "k", "1");
    h.at(1_000);
    assert_eq!(h.reply(a), Response::Timeout);
    // Waiting behind itself, it gets the lock once its own lease runs out.
    h.block(a, "l", "k", "5 4");
    h.at(3_000);
    let t2 = granted(h.reply(a), 4);
    assert!(t2.fence > t1.fence);
    assert_eq!(h.ask(a, "r", "k", &t1.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &t2.to_string()), Response::Ok);
    h.finish();
}
