//! Two-phase acquisition (§9): enqueue, then wait.

use super::harness::{Harness, acquired, granted};
use crate::protocol::Response;

#[test]
fn enqueue_acquired_then_wait_resets_the_lease_even_with_zero_timeout() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let te = acquired(h.ask(a, "e", "k", "10"), 10);
    h.at(4_000);
    let tw = granted(h.ask(a, "w", "k", "0"), 10);
    assert_eq!(tw, te);
    h.at(13_999);
    assert_eq!(h.holders(), 1);
    h.at(14_000);
    assert_eq!(h.holders(), 0);
    // The state was cleared by the `w`: a new `e` is accepted.
    acquired(h.ask(a, "e", "k", ""), 33);
    h.finish();
}

#[test]
fn enqueue_queued_then_wait_blocks_until_granted() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", "7"), Response::Queued);
    h.at(1_000);
    h.block(b, "w", "k", "10");
    h.at(3_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    let tb = granted(h.reply(b), 7);
    assert!(tb.fence > ta.fence);
    // The lease runs from the grant: 3 000 + 7 s.
    h.at(9_999);
    assert_eq!(h.holders(), 1);
    h.at(10_000);
    assert_eq!(h.holders(), 0);
    // The state is gone with the grant.
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn granted_before_wait_the_wait_collects_and_resets_the_lease() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", "7"), Response::Queued);
    h.at(1_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.quiet(b);
    assert_eq!(h.holders(), 1);
    // Granted at 1 000 (lease to 8 000); the `w` at 5 000 resets it to 12 000.
    h.at(5_000);
    let tb = granted(h.ask(b, "w", "k", "0"), 7);
    assert!(tb.fence > ta.fence);
    h.at(11_999);
    assert_eq!(h.holders(), 1);
    h.at(12_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn wait_timeout_removes_the_waiter_and_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.block(c, "l", "k", "30");
    h.block(b, "w", "k", "2");
    h.at(1_999);
    h.quiet(b);
    h.at(2_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);

    // b left the queue: c is next.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    // And b may enqueue again.
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.finish();
}

#[test]
fn wait_with_zero_timeout_on_a_queued_state_times_out_and_clears_it() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.block(c, "l", "k", "30");
    assert_eq!(h.ask(b, "w", "k", "0"), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    h.finish();
}

#[test]
fn wait_with_zero_timeout_collects_a_grant_that_is_due_but_unswept() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 2"), 2);
    assert_eq!(h.ask(b, "e", "k", "4"), Response::Queued);
    h.skip_to(2_500);
    granted(h.ask(b, "w", "k", "0"), 4);
    h.at(2_500);
    h.at(6_499);
    assert_eq!(h.holders(), 1);
    h.at(6_500);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn second_enqueue_is_refused_whether_acquired_or_queued() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = acquired(h.ask(a, "e", "k", ""), 33);
    assert_eq!(h.ask(a, "e", "k", ""), Response::ErrorAlreadyEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(b, "e", "k", "5"), Response::ErrorAlreadyEnqueued);
    // Nothing else happened: one holder, one waiter.
    assert_eq!((h.holders(), h.waiters()), (1, 1));
    // The other namespace is a different key; blocking acquires are not restricted.
    acquired(h.ask(a, "se", "k", "2"), 33);
    assert_eq!(h.ask(a, "l", "k", "0"), Response::Timeout);
    // The two-phase state of a still works.
    assert_eq!(granted(h.ask(a, "w", "k", "0"), 33), ta);
    h.finish();
}

#[test]
fn wait_without_a_matching_enqueue_is_refused() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    assert_eq!(h.ask(a, "w", "k", "5"), Response::ErrorNotEnqueued);
    acquired(h.ask(a, "e", "k", ""), 33);
    // Another client's state, and the other namespace, do not count.
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a, "sw", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(a, "sw", "k", "5"), Response::ErrorNotEnqueued);
    // A blocking acquire creates no two-phase state.
    granted(h.ask(b, "l", "j", "0"), 33);
    assert_eq!(h.ask(b, "w", "j", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn granted_before_wait_then_expired_and_swept_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    h.at(1_000);
    h.quiet(b);
    assert_eq!(h.holders(), 1);
    h.at(3_000);
    assert_eq!(h.holders(), 0);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    acquired(h.ask(b, "e", "k", "2"), 2);
    h.finish();
}

#[test]
fn wait_after_the_granted_lease_passed_but_before_the_sweep_is_lease_expired() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    h.block(c, "l", "k", "60");
    h.at(1_000);
    h.quiet(b);
    h.quiet(c);
    h.skip_to(3_000);
    assert_eq!(h.ask(b, "w", "k", "5"), Response::ErrorLeaseExpired);
    granted(h.reply(c), 33);
    h.at(3_000);
    assert_eq!(h.ask(b, "w", "k", "5"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.finish();
}

#[test]
fn acquired_then_expired_before_wait_is_lease_expired_or_not_enqueued() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    acquired(h.ask(a, "e", "k", "1"), 1);
    acquired(h.ask(b, "e", "j", "1"), 1);
    // Unswept at the `w`: error_lease_expired.
    h.skip_to(1_000);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::ErrorLeaseExpired);
    // Swept first: the state went with the holder.
    h.at(1_000);
    assert_eq!(h.ask(b, "w", "j", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn releasing_a_token_held_by_two_phase_state_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = acquired(h.ask(a, "e", "k", ""), 33);
    assert_eq!(h.ask(b, "r", "k", &ta.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::ErrorNotEnqueued);
    acquired(h.ask(a, "e", "k", ""), 33);

    // Same for a waiter granted before its `w`.
    let [c, d] = [h.client(), h.client()];
    let tc = granted(h.ask(c, "l", "j", "0"), 33);
    assert_eq!(h.ask(d, "e", "j", ""), Response::Queued);
    assert_eq!(h.ask(c, "r", "j", &tc.to_string()), Response::Ok);
    h.quiet(d);
    let granted_to_d = h.stats_value()["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .any(|lock| lock["key"] == "j" && lock["owner_conn_id"] == 103);
    assert!(granted_to_d, "j is held by d: {}", h.stats());
    h.finish();
}

#[test]
fn semaphore_two_phase_follows_the_same_rules() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = acquired(h.ask(a, "se", "s", "2 5"), 5);
    acquired(h.ask(b, "se", "s", "2"), 33);
    assert_eq!(h.ask(c, "se", "s", "3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(c, "se", "s", "2 6"), Response::Queued);
    assert_eq!(h.ask(c, "se", "s", "2"), Response::ErrorAlreadyEnqueued);
    h.block(c, "sw", "s", "10");
    h.at(2_000);
    assert_eq!(
        h.ask(a, "sw", "s", "0"),
        Response::Granted {
            token: ta,
            lease_s: 5
        }
    );
    // a's lease now ends at 7 000, and c gets the slot then.
    h.at(6_999);
    h.quiet(c);
    h.at(7_000);
    granted(h.reply(c), 6);
    h.finish();
}
