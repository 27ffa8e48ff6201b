//! FIFO granting (§8.4): whatever frees a lock (release, expiry, disconnect, a failed renew) grants
//! the waiters in arrival order.

use super::harness::{Harness, granted, renew_arg};
use crate::protocol::Response;

#[test]
fn release_grants_blocking_and_two_phase_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60 11");
    assert_eq!(h.ask(c, "e", "k", "12"), Response::Queued);
    h.block(d, "l", "k", "60 13");
    assert_eq!(h.ask(e, "e", "k", "14"), Response::Queued);
    assert_eq!(h.waiters(), 4);

    h.at(1_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    let tb = granted(h.reply(b), 11);
    assert!(tb.fence > ta.fence);
    [c, d, e].iter().for_each(|&x| h.quiet(x));

    // The two-phase waiter is granted silently; its `w` collects the grant.
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    h.quiet(d);
    let tc = granted(h.ask(c, "w", "k", "0"), 12);
    assert!(tc.fence > tb.fence);

    assert_eq!(h.ask(c, "r", "k", &tc.to_string()), Response::Ok);
    let td = granted(h.reply(d), 13);
    assert!(td.fence > tc.fence);
    h.quiet(e);

    assert_eq!(h.ask(d, "r", "k", &td.to_string()), Response::Ok);
    let te = granted(h.ask(e, "w", "k", "5"), 14);
    assert!(te.fence > td.fence);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

#[test]
fn expiry_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "60 2");
    assert_eq!(h.ask(c, "e", "k", "3"), Response::Queued);
    h.block(d, "l", "k", "60 4");

    h.at(999);
    h.quiet(b);
    h.at(1_000);
    let tb = granted(h.reply(b), 2);
    assert!(tb.fence > ta.fence);

    // b's lease runs 1 000 .. 3 000; then c is granted silently (lease 3 000 .. 6 000).
    h.at(2_999);
    assert_eq!(h.holders(), 1);
    h.at(3_000);
    h.quiet(d);
    h.at(6_000);
    let td = granted(h.reply(d), 4);
    // c's grant (fence between b's and d's) has been swept, and its state with it.
    assert_eq!(td.fence, tb.fence + 2);
    assert_eq!(h.ask(c, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.at(10_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn disconnect_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60 5");
    assert_eq!(h.ask(c, "e", "k", "6"), Response::Queued);
    h.block(d, "l", "k", "60 7");

    h.at(100);
    h.disconnect(a);
    let tb = granted(h.reply(b), 5);
    assert!(tb.fence > ta.fence);
    h.disconnect(b);
    h.quiet(d);
    let tc = granted(h.ask(c, "w", "k", "0"), 6);
    assert!(tc.fence > tb.fence);
    h.disconnect(c);
    let td = granted(h.reply(d), 7);
    assert!(td.fence > tc.fence);
    h.finish();
}

#[test]
fn renew_of_an_expired_lease_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "8"), Response::Queued);
    h.block(c, "l", "k", "60 9");
    h.block(d, "l", "k", "60 10");

    // The renewal arrives after the deadline, before the expiry timer has been handled.
    h.skip_to(1_500);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(30))),
        Response::Error
    );
    [c, d].iter().for_each(|&x| h.quiet(x));
    let tb = granted(h.ask(b, "w", "k", "0"), 8);
    assert!(tb.fence > ta.fence);
    h.at(1_500);

    // b's lease is 1 500 + 8 s; a late renewal of it hands the lock to c, not d.
    h.skip_to(9_500);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(tb, None)), Response::Error);
    let tc = granted(h.reply(c), 9);
    assert!(tc.fence > tb.fence);
    h.quiet(d);
    h.at(9_500);
    h.at(18_500);
    let td = granted(h.reply(d), 10);
    assert!(td.fence > tc.fence);
    h.finish();
}
