//! Idle GC (§8.7).

use super::harness::{Harness, config, granted, renew_arg};
use crate::protocol::Response;
use crate::token::LeaseToken;

#[test]
fn idle_gc_removes_an_entry_at_the_first_tick_after_max_idle() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    h.at(1_000);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // Idle since 2 000: 60 s have passed at 62 000, but ticks fall on multiples of 5 s.
    h.at(60_000);
    assert_eq!(h.resources(), 1);
    h.at(64_999);
    assert_eq!(h.resources(), 1);
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn activity_postpones_idle_gc() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(30_000);
    let tb = granted(h.ask(b, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    h.at(89_999);
    assert_eq!(h.resources(), 1);
    h.at(90_000);
    assert_eq!(h.resources(), 0);

    // A wait that times out is activity too (at its end).
    let tk = granted(h.ask(a, "l", "k", "0 20"), 20);
    h.block(b, "l", "k", "10");
    h.at(100_000);
    assert_eq!(h.reply(b), Response::Timeout);
    h.at(105_000);
    assert_eq!(h.ask(a, "r", "k", &tk.to_string()), Response::Ok);
    h.at(164_999);
    assert_eq!(h.resources(), 1);
    h.at(165_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn an_entry_with_holders_or_waiters_is_never_collected() {
    let mut h = Harness::new(config(|c| c.gc_max_idle_ms = 0));
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 100"), 100);
    h.block(b, "l", "k", "90");
    h.at(89_999);
    assert_eq!(h.resources(), 1);
    h.at(90_000);
    assert_eq!(h.reply(b), Response::Timeout);
    h.at(99_999);
    assert_eq!(h.resources(), 1);
    h.at(105_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn gc_max_idle_zero_removes_at_the_next_tick() {
    let mut h = Harness::new(config(|c| c.gc_max_idle_ms = 0));
    let a = h.client();
    h.at(2_000);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(4_999);
    assert_eq!(h.resources(), 1);
    h.at(5_000);
    assert_eq!(h.resources(), 0);
    // Idle right after the tick at 5 000: collected at the next one.
    let tj = granted(h.ask(a, "sl", "j", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "j", &tj.to_string()), Response::Ok);
    h.at(9_999);
    assert_eq!(h.resources(), 1);
    h.at(10_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn gc_interval_sets_the_ticks() {
    let mut h = Harness::new(config(|c| {
        c.gc_interval_ms = 3_000;
        c.gc_max_idle_ms = 4_000;
    }));
    let a = h.client();
    h.at(500);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // Idle since 500: old enough from 4 500; the next tick is 6 000.
    h.at(5_999);
    assert_eq!(h.resources(), 1);
    h.at(6_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn failed_release_or_renew_is_not_activity() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(30_000);
    let forged = LeaseToken {
        fence: ta.fence,
        random: ta.random.wrapping_add(1),
    };
    for (cmd, arg) in [
        ("r", ta.to_string()),
        ("n", ta.to_string()),
        ("r", forged.to_string()),
        ("n", format!("{forged} 10")),
        ("r", ta.to_string().to_uppercase()),
        ("n", "junk".to_string()),
    ] {
        assert_eq!(h.ask(b, cmd, "k", &arg), Response::Error, "{cmd} k {arg}");
    }
    h.at(64_999);
    assert_eq!(h.resources(), 1);
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn successful_renew_is_activity() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 100"), 100);
    h.at(40_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(1))),
        Response::Renewed { lease_s: 1 }
    );
    // Expiry at 41 000 is the last activity.
    h.at(100_999);
    assert_eq!(h.resources(), 1);
    h.at(105_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn stats_lists_idle_entries_with_their_idle_time() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let tk = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &tk.to_string()), Response::Ok);
    h.at(3_000);
    let ts = granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "s", &ts.to_string()), Response::Ok);
    h.at(32_500);
    let stats = h.stats();
    assert_eq!(
        stats,
        r#"{"connections":1,"locks":[],"semaphores":[],"idle_locks":[{"key":"k","idle_s":30.5}],"idle_semaphores":[{"key":"s","idle_s":29.5}],"signal_channels":[],"slow_consumers_disconnected":0}"#
    );
    h.finish();
}
