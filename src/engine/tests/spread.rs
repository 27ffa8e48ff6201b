//! Expiry spread over several loop turns, and extreme values.

use super::harness::{Harness, granted, renew_arg};
use crate::budget::{EXPIRE_BUDGET, SWEEP_BUDGET};
use crate::engine::ClientId;
use crate::protocol::Response;

/// `client` takes all `slots` of semaphore `s` with 1 s leases, then the clock moves past them
/// and the timers end holders, a turn's budget at a time, until `left` remain (all passed).
fn fill_and_let_pass(h: &mut Harness, client: ClientId, slots: usize, left: usize) {
    let arg = format!("0 {slots} 1");
    for _ in 0..slots {
        granted(h.ask(client, "sl", "s", &arg), 1);
    }
    h.skip_to(1_000);
    // Each call does a bounded amount of work (timer cascading included) and says whether
    // more is due.
    while h.holders() > left {
        assert!(h.engine.expire(h.now, &mut h.out), "more is due");
        h.check(None);
    }
    assert_eq!(h.holders(), left);
}

#[test]
fn a_mass_expiry_is_spread_over_calls_and_requests_in_between_evict_first() {
    let slots = EXPIRE_BUDGET + 4;
    let mut h = Harness::with_defaults();
    let [a, c] = [h.client(), h.client()];
    // The budget runs out with the last 4 holders still listed.
    fill_and_let_pass(&mut h, a, slots, 4);
    // A request on the semaphore evicts the passed holders the timers have not reached yet.
    granted(h.ask(c, "sl", "s", &format!("0 {slots} 1")), 1);
    assert_eq!(h.holders(), 1);
    assert!(!h.engine.expire(h.now, &mut h.out), "nothing left");
    h.check(None);
    h.finish();
}

#[test]
fn requests_sweep_a_bounded_number_of_passed_holders_per_turn() {
    // More passed holders than a turn's expiry and sweep budgets together.
    let slots = EXPIRE_BUDGET + SWEEP_BUDGET + 100;
    let mut h = Harness::with_defaults();
    let [a, c] = [h.client(), h.client()];
    fill_and_let_pass(&mut h, a, slots, SWEEP_BUDGET + 100);
    let arg = format!("0 {slots} 1");
    // The first request of the turn ends the oldest passed holders, as many as the budget.
    granted(h.ask(c, "sl", "s", &arg), 1);
    assert_eq!(h.holders(), 100 + 1);
    // The budget is spent: the next request of the same turn looks at none, and answers on the
    // holders as they stand (here there is room anyway).
    granted(h.ask(c, "sl", "s", &arg), 1);
    assert_eq!(h.holders(), 100 + 2);
    // The timers end the rest, and the next turn's requests sweep again.
    assert!(!h.engine.expire(h.now, &mut h.out), "nothing left");
    h.check(None);
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn a_sweep_cut_short_grants_late_never_early() {
    // A full semaphore one of whose holders has passed, unseen by a spent sweep: a blocking
    // acquire waits for the timers instead of being granted early.
    let slots = EXPIRE_BUDGET + SWEEP_BUDGET + 1;
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    fill_and_let_pass(&mut h, a, slots, SWEEP_BUDGET + 1);
    let arg = |timeout: u32| format!("{timeout} {slots} 1");
    // The first of these ends SWEEP_BUDGET passed holders; they fill the semaphore again.
    while h.holders() < slots {
        granted(h.ask(b, "sl", "s", &arg(0)), 1);
    }
    assert_eq!(h.engine.sweep_budget_left(), 0);
    // Full, and the turn's sweep is spent: a try-lock is refused and a blocking acquire waits,
    // although one holder has passed.
    assert_eq!(h.ask(c, "sl", "s", &arg(0)), Response::Timeout);
    h.block(c, "sl", "s", &arg(10));
    // The next turn's timers end the passed holder, and the waiter gets its slot then.
    assert!(!h.engine.expire(h.now, &mut h.out), "nothing left");
    h.check(None);
    granted(h.reply(c), 1);
    h.finish();
}

#[test]
fn the_largest_lease_and_timeout_are_accepted() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let max = crate::protocol::MAX_SECONDS;
    let ta = granted(h.ask(a, "l", "k", &format!("0 {max}")), max);
    h.block(b, "l", "k", &max.to_string());
    assert_eq!(
        h.stats_value()["locks"][0]["lease_expires_in_s"].as_f64(),
        Some(max as f64)
    );
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(max))),
        Response::Renewed { lease_s: max }
    );
    h.advance(86_400_000);
    h.quiet(b);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 33);
    h.finish();
}

#[test]
fn an_enqueue_behind_the_clients_own_lock_is_granted_when_it_lets_go() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "e", "k", "5"), Response::Queued);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(a, "e", "k", "5"), Response::Queued);
    assert_eq!(h.ask(a, "r", "k", &t1.to_string()), Response::Ok);
    let t2 = granted(h.ask(a, "w", "k", "1"), 5);
    assert!(t2.fence > t1.fence);
    h.finish();
}
