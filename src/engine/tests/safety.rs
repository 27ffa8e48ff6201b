//! Lock safety extensions: `check`/`scheck` answers around expiry and release, `q`/`sq`,
//! `--lock-delay`, and `evict`/`sevict` by an admin and by anyone else.

use super::harness::{Harness, acquired, config, granted};
use crate::engine::ClientId;
use crate::protocol::Namespace::{Lock, Semaphore};
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

/// A harness with one admin client (who has sent the admin token) and the clients asked for.
fn with_admin(h: &mut Harness) -> ClientId {
    let admin = h.client();
    h.engine.grant_admin(admin);
    admin
}

fn evicted(count: u64) -> Response {
    Response::Evicted { count }
}

#[test]
fn evicting_a_lock_holder_grants_the_next_waiter_and_kills_its_token() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60 5");
    h.block(c, "l", "k", "60 5");
    h.at(1_000);

    assert_eq!(h.ask(admin, "evict", "k", &ta.to_string()), evicted(1));
    let tb = granted(h.reply(b), 5);
    h.quiet(c);
    // The evicted token is dead, as after an expiry.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "n", "k", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "check", "k", &ta.to_string()), Response::Stale);
    assert_eq!(h.ask(a, "check", "k", &fence_text(ta)), Response::Stale);
    assert_eq!(
        h.ask(a, "check", "k", &tb.to_string()),
        checked(tb.fence, 5_000)
    );
    // Evicting it again matches nothing.
    assert_eq!(h.ask(admin, "evict", "k", &ta.to_string()), evicted(0));
    h.quiet(c);
    assert_eq!(h.engine.metrics().ns(Lock).evictions_total(), 1);
    assert_eq!(h.engine.metrics().ns(Lock).releases_total(), 0);
    h.finish();
}

#[test]
fn evicting_by_fence_ends_the_holder_with_that_fence() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "pool", "0 2"), 33);
    let tb = granted(h.ask(b, "sl", "pool", "0 2"), 33);
    assert_eq!(h.ask(admin, "sevict", "pool", &fence_text(ta)), evicted(1));
    assert_eq!(h.ask(a, "scheck", "pool", &ta.to_string()), Response::Stale);
    assert_eq!(
        h.ask(b, "sn", "pool", &tb.to_string()),
        Response::Renewed { lease_s: 33 }
    );
    // The namespace and the key must match.
    assert_eq!(h.ask(admin, "evict", "pool", &fence_text(tb)), evicted(0));
    assert_eq!(h.ask(admin, "sevict", "other", &fence_text(tb)), evicted(0));
    assert_eq!(h.ask(admin, "sevict", "nothing", "*"), evicted(0));
    assert_eq!(h.ask(b, "sr", "pool", &tb.to_string()), Response::Ok);
    h.finish();
}

#[test]
fn evicting_every_holder_of_a_semaphore_grants_as_many_waiters_in_fifo_order() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let holders = [h.client(), h.client(), h.client()];
    let waiters = [h.client(), h.client(), h.client(), h.client()];
    let held: Vec<LeaseToken> = holders
        .iter()
        .map(|&c| granted(h.ask(c, "sl", "pool", "0 3 60"), 60))
        .collect();
    for &w in &waiters {
        h.block(w, "sl", "pool", "60 3 10");
    }
    assert_eq!(h.ask(admin, "sevict", "pool", "*"), evicted(3));
    // The first three waiters, in arrival order: fences grow with every grant.
    let fences: Vec<u64> = waiters[..3]
        .iter()
        .map(|&w| granted(h.reply(w), 10).fence)
        .collect();
    assert!(fences.is_sorted(), "{fences:?}");
    h.quiet(waiters[3]);
    for (&c, token) in holders.iter().zip(&held) {
        assert_eq!(h.ask(c, "sr", "pool", &token.to_string()), Response::Error);
    }
    assert_eq!(h.ask(admin, "sq", "pool", ""), queue_state(3, 3, 1, 0));
    assert_eq!(h.engine.metrics().ns(Semaphore).evictions_total(), 3);
    h.finish();
}

#[test]
fn a_non_admin_evict_is_an_error_and_changes_nothing() {
    let mut h = Harness::with_defaults();
    let [a, b, other] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60");
    let before = h.stats();
    for arg in [ta.to_string(), fence_text(ta), "*".to_owned()] {
        assert_eq!(h.ask(other, "evict", "k", &arg), Response::Error);
        assert_eq!(h.ask(a, "evict", "k", &arg), Response::Error);
    }
    assert_eq!(h.stats(), before);
    assert_eq!(h.engine.metrics().ns(Lock).evictions_total(), 0);
    h.quiet(b);
    assert_eq!(
        h.ask(a, "check", "k", &ta.to_string()),
        checked(ta.fence, 30_000)
    );
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 33);
    h.finish();
}

#[test]
fn an_eviction_does_not_start_a_lock_delay() {
    let mut h = with_lock_delay(250);
    let admin = with_admin(&mut h);
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "10 5");
    h.at(100);
    assert_eq!(h.ask(admin, "evict", "k", "*"), evicted(1));
    granted(h.reply(b), 5);
    assert!(!h.stats().contains("lock_delay_ms"), "{}", h.stats());
    h.finish();
}

#[test]
fn a_holder_whose_lease_passed_is_an_expiry_not_an_eviction() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    // Its timer has not run yet: the eviction finds it expired and does not count it.
    h.skip_to(1_000);
    assert_eq!(h.ask(admin, "evict", "k", &ta.to_string()), evicted(0));
    let m = h.engine.metrics().ns(Lock);
    assert_eq!((m.lease_expirations_total(), m.evictions_total()), (1, 0));
    h.finish();
}

#[test]
fn a_waiter_granted_by_an_evictions_expiry_sweep_keeps_its_grant() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "pool", "0 2 1"), 1);
    let tb = granted(h.ask(b, "sl", "pool", "0 2 30"), 30);
    h.block(c, "sl", "pool", "60 2 30");
    // a's lease has passed but its timer has not run: `evict *` ends it as an expiry, which
    // grants c; c was not a holder when the operator asked, so only b is evicted.
    h.skip_to(1_000);
    assert_eq!(h.ask(admin, "sevict", "pool", "*"), evicted(1));
    let tc = granted(h.reply(c), 30);
    assert_eq!(
        h.ask(c, "scheck", "pool", &tc.to_string()),
        checked(tc.fence, 30_000)
    );
    for dead in [ta, tb] {
        assert_eq!(
            h.ask(c, "scheck", "pool", &dead.to_string()),
            Response::Stale
        );
    }
    let m = h.engine.metrics().ns(Semaphore);
    assert_eq!((m.lease_expirations_total(), m.evictions_total()), (1, 1));
    h.finish();
}

#[test]
fn an_evicted_two_phase_grant_can_no_longer_be_collected() {
    let mut h = Harness::with_defaults();
    let admin = with_admin(&mut h);
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    assert_eq!(h.ask(b, "e", "k", "20"), Response::Queued);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // b was granted silently; the admin evicts everyone before b collects.
    assert_eq!(h.ask(admin, "evict", "k", "*"), evicted(1));
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn the_first_waiter_may_queue_on_a_key_whose_only_slot_rests() {
    let mut h = with_lock_delay(250);
    let [a, b, observer] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.at(1_000);
    // Nobody holds the key, yet it is taken: b is its first waiter, and it is contended.
    h.block(b, "l", "k", "10 5");
    assert_eq!(h.ask(observer, "q", "k", ""), queue_state(0, 1, 1, 0));
    let contended = h.engine.contended(Lock, 10, h.now);
    assert_eq!((contended.len(), contended[0].holder_serial), (1, 0));
    h.at(1_250);
    granted(h.reply(b), 5);
    h.finish();
}
