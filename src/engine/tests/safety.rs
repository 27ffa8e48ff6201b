//! Lock safety extensions: `check`/`scheck` answers around expiry and release.

use super::harness::{Harness, acquired, config, granted};
use crate::protocol::Response;
use crate::token::LeaseToken;

fn checked(fence: u64, remaining_ms: u64) -> Response {
    Response::Checked {
        fence,
        remaining_ms,
    }
}

fn fence_text(token: LeaseToken) -> String {
    format!("{:016x}", token.fence)
}

#[test]
fn check_answers_the_remaining_lease_until_the_deadline_then_stale() {
    let mut h = Harness::with_defaults();
    let [a, observer] = [h.client(), h.client()];
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let (tok, fence) = (token.to_string(), fence_text(token));

    assert_eq!(
        h.ask(observer, "check", "k", &tok),
        checked(token.fence, 5_000)
    );
    h.at(1_234);
    assert_eq!(
        h.ask(observer, "check", "k", &fence),
        checked(token.fence, 3_766)
    );
    h.at(4_999);
    assert_eq!(h.ask(observer, "check", "k", &tok), checked(token.fence, 1));
    // The lease has passed before its timer is handled: already stale.
    h.skip_to(5_000);
    assert_eq!(h.ask(observer, "check", "k", &tok), Response::Stale);
    assert_eq!(h.ask(observer, "check", "k", &fence), Response::Stale);
    h.run_due();
    assert_eq!(h.ask(observer, "check", "k", &tok), Response::Stale);
    h.finish();
}

#[test]
fn check_follows_renewals_and_releases() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let tok = token.to_string();
    h.at(4_000);
    assert_eq!(
        h.ask(a, "n", "k", &format!("{tok} 10")),
        Response::Renewed { lease_s: 10 }
    );
    assert_eq!(h.ask(a, "check", "k", &tok), checked(token.fence, 10_000));
    assert_eq!(h.ask(a, "r", "k", &tok), Response::Ok);
    assert_eq!(h.ask(a, "check", "k", &tok), Response::Stale);
    h.finish();
}

#[test]
fn check_matches_key_namespace_and_the_whole_token() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let forged = LeaseToken {
        random: token.random ^ 1,
        ..token
    };
    assert_eq!(
        h.ask(a, "check", "other", &token.to_string()),
        Response::Stale
    );
    assert_eq!(h.ask(a, "scheck", "k", &token.to_string()), Response::Stale);
    assert_eq!(h.ask(a, "check", "k", &forged.to_string()), Response::Stale);
    let never = format!("{:016x}", token.fence + 1000);
    assert_eq!(h.ask(a, "check", "k", &never), Response::Stale);
    h.finish();
}

#[test]
fn scheck_sees_every_holder_of_a_semaphore_and_a_two_phase_grant() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "pool", "0 2 5"), 5);
    h.at(1_000);
    let tb = acquired(h.ask(b, "se", "pool", "2 7"), 7);
    assert_eq!(
        h.ask(c, "scheck", "pool", &ta.to_string()),
        checked(ta.fence, 4_000)
    );
    assert_eq!(
        h.ask(c, "scheck", "pool", &fence_text(tb)),
        checked(tb.fence, 7_000)
    );
    // A lock of the same name is another resource.
    assert_eq!(h.ask(c, "check", "pool", &ta.to_string()), Response::Stale);
    h.at(5_000);
    assert_eq!(h.ask(c, "scheck", "pool", &ta.to_string()), Response::Stale);
    assert_eq!(
        h.ask(c, "scheck", "pool", &tb.to_string()),
        checked(tb.fence, 3_000)
    );
    h.finish();
}

#[test]
fn check_does_not_count_as_activity() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(a, "r", "k", &token.to_string()), Response::Ok);
    // Idle from 0: gone at the first GC pass 60 s later, however often it is checked.
    for t in (5_000..=60_000).step_by(5_000) {
        h.at(t);
        assert_eq!(h.ask(a, "check", "k", &token.to_string()), Response::Stale);
    }
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

fn queue_state(holders: u32, limit: u64, waiters: u32, position: u32) -> Response {
    Response::QueueState {
        holders,
        limit,
        waiters,
        position,
    }
}

#[test]
fn q_reports_the_queue_and_each_waiters_place_as_those_ahead_leave() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, observer] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 10"), 10);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.block(c, "l", "k", "60");
    assert_eq!(h.ask(d, "e", "k", ""), Response::Queued);

    assert_eq!(h.ask(observer, "q", "k", ""), queue_state(1, 1, 3, 0));
    assert_eq!(h.ask(a, "q", "k", ""), queue_state(1, 1, 3, 0));
    assert_eq!(h.ask(b, "q", "k", ""), queue_state(1, 1, 3, 1));
    assert_eq!(h.ask(d, "q", "k", ""), queue_state(1, 1, 3, 3));
    // The same key in the other namespace is another resource.
    assert_eq!(h.ask(d, "sq", "k", ""), queue_state(0, 0, 0, 0));

    // b gives up its place (a zero wait leaves the queue): d moves up.
    assert_eq!(h.ask(b, "w", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(d, "q", "k", ""), queue_state(1, 1, 2, 2));
    assert_eq!(h.ask(b, "q", "k", ""), queue_state(1, 1, 2, 0));
    // a releases: c is granted, d is first.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    let tc = granted(h.reply(c), 33);
    assert_eq!(h.ask(d, "q", "k", ""), queue_state(1, 1, 1, 1));
    assert_eq!(h.ask(c, "r", "k", &tc.to_string()), Response::Ok);
    // d's grant is waiting for its `w`: it holds and no longer queues.
    assert_eq!(h.ask(d, "q", "k", ""), queue_state(1, 1, 0, 0));
    granted(h.ask(d, "w", "k", "0"), 33);
    h.finish();
}

#[test]
fn sq_reports_the_semaphore_limit_and_a_missing_key_answers_empty() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "q", "nothing", ""), queue_state(0, 1, 0, 0));
    assert_eq!(h.ask(a, "sq", "nothing", ""), queue_state(0, 0, 0, 0));
    assert_eq!(h.ask(a, "sq", "nothing", "5"), queue_state(0, 5, 0, 0));
    // Asking creates nothing.
    assert_eq!(h.resources(), 0);

    granted(h.ask(a, "sl", "pool", "0 2"), 33);
    acquired(h.ask(b, "se", "pool", "2"), 33);
    assert_eq!(h.ask(c, "se", "pool", "2"), Response::Queued);
    // An existing semaphore reports its own limit, whatever the request names.
    assert_eq!(h.ask(c, "sq", "pool", "9"), queue_state(2, 2, 1, 1));
    assert_eq!(h.ask(b, "sq", "pool", ""), queue_state(2, 2, 1, 0));
    h.finish();
}

fn with_lock_delay(ms: u64) -> Harness {
    Harness::new(config(|c| c.lock_delay_ms = ms))
}

#[test]
fn an_expired_lease_rests_for_the_lock_delay_before_the_next_grant() {
    let mut h = with_lock_delay(250);
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "10 5");
    h.at(1_000);
    assert_eq!(h.holders(), 0);
    assert_eq!(h.ask(a, "check", "k", &ta.to_string()), Response::Stale);
    h.at(1_249);
    h.quiet(b);
    h.at(1_250);
    granted(h.reply(b), 5);
    h.finish();
}

#[test]
fn an_explicit_release_never_delays() {
    let mut h = with_lock_delay(250);
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "10 5");
    h.at(100);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 5);
    h.finish();
}

#[test]
fn a_release_by_disconnect_delays() {
    let mut h = with_lock_delay(250);
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "10 5");
    h.at(100);
    h.disconnect(a);
    h.at(349);
    h.quiet(b);
    h.at(350);
    granted(h.reply(b), 5);
    h.finish();
}

#[test]
fn waiters_keep_their_order_and_nobody_jumps_the_delay() {
    let mut h = with_lock_delay(500);
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "10 2");
    h.at(1_000);
    // During the delay a try-lock fails and a new waiter queues behind b.
    assert_eq!(h.ask(d, "l", "k", "0"), Response::Timeout);
    h.block(c, "l", "k", "10 2");
    assert_eq!(h.ask(d, "q", "k", ""), queue_state(0, 1, 2, 0));
    h.at(1_500);
    let tb = granted(h.reply(b), 2);
    h.quiet(c);
    // b's lease also runs out: c waits out a delay of its own.
    h.at(3_500);
    assert_eq!(h.ask(d, "check", "k", &tb.to_string()), Response::Stale);
    h.at(3_999);
    h.quiet(c);
    h.at(4_000);
    granted(h.reply(c), 2);
    h.finish();
}

#[test]
fn a_semaphore_delays_only_the_slot_lost_uncleanly() {
    let mut h = with_lock_delay(250);
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "sl", "pool", "0 2 1"), 1);
    let tb = granted(h.ask(b, "sl", "pool", "0 2 60"), 60);
    h.block(c, "sl", "pool", "10 2 2");
    h.block(d, "sl", "pool", "10 2 2");
    h.at(1_000);
    h.quiet(c);
    // b's explicit release frees its slot at once, for the head of the queue.
    h.at(1_100);
    assert_eq!(h.ask(b, "sr", "pool", &tb.to_string()), Response::Ok);
    granted(h.reply(c), 2);
    h.at(1_249);
    h.quiet(d);
    h.at(1_250);
    granted(h.reply(d), 2);
    h.finish();
}

#[test]
fn a_key_in_a_lock_delay_is_not_collected_and_free_keys_wait_for_it() {
    let mut h = Harness::new(config(|c| {
        c.lock_delay_ms = 1_000;
        c.gc_interval_ms = 100;
        c.gc_max_idle_ms = 0;
    }));
    let a = h.client();
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.at(1_000);
    h.at(1_900);
    // Still there: a fresh resource of the same name would not know about the delay.
    assert_eq!(h.resources(), 1);
    assert_eq!(h.ask(a, "l", "k", "0"), Response::Timeout);
    h.at(2_000);
    let t = granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(a, "r", "k", &t.to_string()), Response::Ok);
    h.at(2_100);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn a_grant_collected_after_its_lease_passed_still_delays() {
    let mut h = with_lock_delay(300);
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    assert_eq!(h.ask(b, "e", "k", "1"), Response::Queued);
    h.block(c, "l", "k", "60 5");
    h.at(100);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // b's grant (lease 1 s) runs out uncollected; c waits out the delay after it.
    h.at(1_100);
    h.quiet(c);
    h.at(1_399);
    h.quiet(c);
    h.at(1_400);
    granted(h.reply(c), 5);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn stats_shows_a_lock_delay_only_while_one_is_in_force() {
    let mut h = with_lock_delay(400);
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    granted(h.ask(a, "sl", "pool", "0 2 1"), 1);
    h.block(b, "l", "k", "10");
    assert!(!h.stats().contains("lock_delay_ms"), "{}", h.stats());
    h.at(1_100);
    let stats = h.stats_value();
    assert_eq!(stats["locks"][0]["key"], "k");
    assert_eq!(stats["locks"][0]["lock_delay_ms"], 300);
    assert_eq!(stats["locks"][0]["waiters"], 1);
    assert_eq!(stats["idle_semaphores"][0]["key"], "pool");
    assert_eq!(stats["idle_semaphores"][0]["lock_delay_ms"], 300);
    h.at(1_400);
    granted(h.reply(b), 33);
    assert!(!h.stats().contains("lock_delay_ms"), "{}", h.stats());
    h.finish();
}
