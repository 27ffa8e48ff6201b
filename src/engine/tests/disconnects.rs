//! Disconnect (§11) and shutdown (§16).

use super::harness::{Harness, acquired, config, granted, renew_arg};
use crate::budget::{EXPIRE_BUDGET, RESIZE_BUDGET, TRIM_BUDGET};
use crate::clock::Millis;
use crate::engine::{ClientId, Engine, EngineConfig, Outcome};
use crate::protocol::Response;

#[test]
fn disconnect_with_auto_release_frees_everything_the_client_had() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e, f, g] = [
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
    ];
    let tbc = granted(h.ask(b, "l", "c", "0"), 33);
    let tbd = granted(h.ask(b, "l", "d", "0"), 33);
    granted(h.ask(b, "sl", "s", "0 2"), 33);
    // a holds a lock, a semaphore slot and a two-phase grant, queues two-phase behind b,
    // subscribes, and finally blocks behind b.
    granted(h.ask(a, "l", "a", "0"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    acquired(h.ask(a, "e", "b", ""), 33);
    assert_eq!(h.ask(a, "e", "c", ""), Response::Queued);
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    h.block(c, "l", "a", "10");
    h.block(d, "l", "b", "10");
    h.block(e, "sl", "s", "10 2");
    h.block(f, "l", "c", "10");
    h.block(a, "l", "d", "10");
    h.block(g, "l", "d", "10");

    h.at(500);
    h.disconnect(a);
    granted(h.reply(c), 33);
    granted(h.reply(d), 33);
    granted(h.reply(e), 33);
    h.quiet(f);
    h.quiet(g);
    assert_eq!(
        h.ask(b, "signal", "x", "anyone?"),
        Response::Delivered { count: 0 }
    );
    assert!(h.pushes().is_empty());
    // a's queued `e` and blocked `l` are gone: f and g are next.
    assert_eq!(h.ask(b, "r", "c", &tbc.to_string()), Response::Ok);
    granted(h.reply(f), 33);
    assert_eq!(h.ask(b, "r", "d", &tbd.to_string()), Response::Ok);
    granted(h.reply(g), 33);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

/// Thousands of keys, leases and two-phase states make the key, fence and two-phase indexes
/// resize (grow, then shrink as everything goes) a few entries per request; every entry stays
/// reachable in the middle of each resize.
#[test]
fn indexes_stay_consistent_while_they_resize() {
    const N: usize = 3_000;
    let mut h = Harness::new(EngineConfig {
        max_locks: N as u64,
        ..EngineConfig::default()
    });
    let [a, b] = [h.client(), h.client()];
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(h.apply(a, "e", key, ""), Outcome::Answered);
        assert_eq!(h.apply(b, "e", key, ""), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    let mut tokens = Vec::new();
    for pair in replies.chunks(2) {
        assert_eq!(pair[0].0, a);
        tokens.push(acquired(pair[0].1, 33));
        assert_eq!(pair[1], (b, Response::Queued));
    }
    // a collects and releases every grant; each release grants b's queued entry.
    for (i, (key, token)) in keys.iter().zip(&tokens).enumerate() {
        assert_eq!(h.apply(a, "w", key, "0"), Outcome::Answered);
        assert_eq!(h.apply(a, "r", key, &token.to_string()), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    for (pair, token) in replies.chunks(2).zip(&tokens) {
        assert_eq!(
            pair[0],
            (
                a,
                Response::Granted {
                    token: *token,
                    lease_s: 33
                }
            )
        );
        assert_eq!(pair[1], (a, Response::Ok));
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(h.apply(b, "w", key, "0"), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    assert_eq!(replies.len(), N);
    for (to, response) in replies {
        assert_eq!(to, b);
        assert!(
            !tokens.contains(&granted(response, 33)),
            "a token granted twice"
        );
    }
    assert_eq!(h.holders(), N);
    h.finish();
}

#[test]
fn a_client_holding_many_leases_is_released_in_slices_in_grant_order() {
    let count = 2 * EXPIRE_BUDGET + 10;
    let mut h = Harness::new(EngineConfig {
        max_locks: count as u64,
        ..EngineConfig::default()
    });
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let keys: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
    let tokens = h.lock_all(a, &keys);
    h.block(b, "l", &keys[0], "10");
    h.block(c, "l", &keys[count - 1], "10");

    // The disconnect itself releases one budget's worth, oldest grant first.
    h.disconnect(a);
    granted(h.reply(b), 33);
    h.quiet(c);
    assert_eq!(h.holders(), count - EXPIRE_BUDGET + 1);
    assert_eq!(h.engine.next_deadline(), Some(Millis::ZERO), "work is left");
    // A lease still queued for release can be released by token meanwhile.
    let queued = count - 2;
    assert_eq!(
        h.ask(d, "r", &keys[queued], &tokens[queued].to_string()),
        Response::Ok
    );
    // Each expire call releases one more budget's worth.
    assert!(h.engine.expire(h.now, &mut h.out), "more to release");
    h.check(None);
    h.quiet(c);
    assert_eq!(h.holders(), count - 2 * EXPIRE_BUDGET);
    // The next call releases the rest (and may ask to be called again, to give back the
    // memory the leases took).
    h.engine.expire(h.now, &mut h.out);
    h.check(None);
    granted(h.reply(c), 33);
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn an_index_resize_left_halfway_by_a_burst_is_finished_by_the_turns_after_it() {
    let mut h = Harness::new(config(|c| c.max_locks = 100_000));
    let a = h.client();
    // Take locks until the key and fence indexes are both halfway through growing with more
    // than a turn's budget left to move, then stop: no insert or remove is left to carry the
    // resizes on. (Unchecked requests: a full check after each would take minutes.)
    let mut keys = Vec::new();
    while !(h.engine.tables_resizing() && keys.len() > RESIZE_BUDGET) {
        let key = format!("k{}", keys.len());
        assert_eq!(h.apply(a, "l", &key, "0 60"), Outcome::Answered);
        keys.push(key);
    }
    assert!(h.engine.keys.index_resizing() && h.engine.by_fence.is_resizing());
    assert_eq!(h.out.replies.len(), keys.len());
    h.out.replies.clear();
    h.check(None);
    let mut turns = 0;
    while h.engine.tables_resizing() {
        assert_eq!(
            h.engine.next_deadline(),
            Some(Millis::ZERO),
            "a resize is work"
        );
        h.engine.expire(h.now, &mut h.out);
        turns += 1;
        assert!(turns < 100, "the resizes did not end");
    }
    assert!(turns > 1, "a bounded batch per turn, not all at once");
    h.check(None);
    // Nothing else to do: the loop may sleep until the first lease expires.
    assert!(h.engine.next_deadline() > Some(h.now));
    for key in keys.iter().step_by(97) {
        assert_eq!(
            h.ask(a, "q", key, ""),
            Response::QueueState {
                holders: 1,
                limit: 1,
                waiters: 0,
                position: 0
            }
        );
    }
    h.finish();
}

#[test]
fn the_memory_of_a_departed_clients_locks_is_given_back_a_budget_per_turn() {
    const N: usize = 3 * TRIM_BUDGET;
    let mut h = Harness::new(EngineConfig {
        max_locks: N as u64 + 1,
        gc_interval_ms: 1_000,
        gc_max_idle_ms: 0,
        ..EngineConfig::default()
    });
    let (a, b) = (h.client(), h.client());
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    h.lock_all(a, &keys);
    let capacities = |e: &Engine| {
        [
            e.leases.capacity(),
            e.timers.capacity(),
            e.keys.resources.capacity(),
        ]
    };
    assert!(capacities(&h.engine).iter().all(|&c| c >= N));
    h.disconnect(a);
    // Release everything first (a budget per turn), then count the turns of trimming alone.
    while !h.engine.releasing.is_empty() {
        h.engine.expire(h.now, &mut h.out);
    }
    h.check(None);
    // Meanwhile another client holds a lock, released and taken again between turns: its lease
    // and timer must not keep the slabs' ends from emptying.
    let mut token = granted(h.ask(b, "l", "other", "0 10"), 10);
    let mut turns = 0;
    while capacities(&h.engine)[..2].iter().any(|&c| c > 2048) {
        assert!(
            h.engine.wants_trim(),
            "trimming stalled: {:?}",
            capacities(&h.engine)
        );
        assert_eq!(
            h.engine.next_deadline(),
            Some(Millis::ZERO),
            "trimming is work"
        );
        h.engine.expire(h.now, &mut h.out);
        assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
        token = granted(h.ask(b, "l", "other", "0 10"), 10);
        turns += 1;
    }
    h.check(None);
    // Leases and timers each left N - 1024 vacant entries to drop, a budget per turn.
    assert!(
        turns >= 2 * (N - 1024) / TRIM_BUDGET,
        "trimmed in {turns} turns"
    );
    assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
    // The idle resources go at the next GC pass and their slab follows, while the other client
    // keeps taking its lock.
    for _ in 0..4 {
        h.advance(500);
        let token = granted(h.ask(b, "l", "other", "0 10"), 10);
        assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
    }
    assert_eq!(h.resources(), 1);
    assert!(!h.engine.wants_trim());
    let resources = h.engine.keys.resources.capacity();
    assert!(resources <= 2048, "left: {resources} resources");
    h.finish();
}

#[test]
fn disconnects_in_one_turn_share_one_release_budget() {
    let half = EXPIRE_BUDGET / 2;
    let mut h = Harness::new(EngineConfig {
        max_locks: 3 * half as u64,
        ..EngineConfig::default()
    });
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let keys: Vec<String> = (0..3 * half).map(|i| format!("k{i}")).collect();
    for (owner, keys) in [a, b, c].into_iter().zip(keys.chunks(half)) {
        h.lock_all(owner, keys);
    }
    h.block(d, "l", &keys[2 * half - 1], "10");
    h.block(e, "l", &keys[2 * half], "10");

    // a and b use up the budget between them; c's leases wait for the next expire call.
    h.disconnect(a);
    h.disconnect(b);
    granted(h.reply(d), 33);
    h.disconnect(c);
    h.quiet(e);
    assert_eq!(h.holders(), half + 1);
    assert_eq!(h.engine.next_deadline(), Some(Millis::ZERO), "work is left");
    assert!(!h.engine.expire(h.now, &mut h.out), "all released");
    h.check(None);
    granted(h.reply(e), 33);
    // The expire call restored the budget: a departure now releases at once again.
    h.disconnect(d);
    assert_eq!(h.holders(), 1);
    h.finish();
}

#[test]
fn disconnect_without_auto_release_keeps_holdings_but_drops_waits() {
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let [a, b, c, d, e, f] = [
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
    ];
    let tbc = granted(h.ask(b, "l", "c", "0"), 33);
    let tbd = granted(h.ask(b, "l", "d", "0"), 33);
    let ta = granted(h.ask(a, "l", "a", "0 10"), 10);
    acquired(h.ask(a, "e", "b", "10"), 10);
    assert_eq!(h.ask(a, "e", "c", ""), Response::Queued);
    assert_eq!(h.ask(a, "listen", "x", "grp"), Response::Ok);
    h.block(c, "l", "a", "30");
    h.block(d, "l", "b", "30");
    h.block(e, "l", "c", "30");
    h.block(a, "l", "d", "30");
    h.block(f, "l", "d", "30");

    h.at(1_000);
    h.disconnect(a);
    h.quiet(c);
    h.quiet(d);
    // c, d, e and f still wait; a's own `e` and `l` left their queues.
    assert_eq!((h.holders(), h.waiters()), (4, 4));
    assert_eq!(
        h.ask(b, "signal", "x", "anyone?"),
        Response::Delivered { count: 0 }
    );
    // Another client may release a's lock by token.
    assert_eq!(h.ask(b, "r", "a", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    // a's two-phase grant on b stays held until its lease runs out.
    h.at(9_999);
    h.quiet(d);
    h.at(10_000);
    granted(h.reply(d), 33);
    // a's waits are gone.
    assert_eq!(h.ask(b, "r", "c", &tbc.to_string()), Response::Ok);
    granted(h.reply(e), 33);
    assert_eq!(h.ask(b, "r", "d", &tbd.to_string()), Response::Ok);
    granted(h.reply(f), 33);

    // A new client in a's slot inherits nothing.
    let a2 = ClientId {
        index: a.index,
        generation: a.generation + 1,
    };
    h.connect(a2, 999);
    assert_eq!(h.ask(a2, "w", "b", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a2, "e", "b", ""), Response::Queued);
    h.finish();
}

#[test]
fn an_orphaned_lease_still_expires_and_can_be_renewed_by_token() {
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    h.disconnect(a);
    h.at(4_000);
    assert_eq!(
        h.ask(b, "sn", "s", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    h.at(8_999);
    assert_eq!(h.holders(), 1);
    h.at(9_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn a_departing_client_is_never_granted_the_lock_it_releases() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0"), 33);
    acquired(h.ask(a, "se", "s", "1"), 33);
    assert_eq!(h.ask(b, "se", "s", "1"), Response::Queued);
    h.block(a, "l", "k", "10");
    h.block(b, "l", "k", "10");
    // a's own waiter sits ahead of b's; it must go before a's holdings (lock and two-phase
    // semaphore grant) are released, or a would be granted its own lock after leaving.
    h.disconnect(a);
    granted(h.reply(b), 33);
    granted(h.ask(b, "sw", "s", "0"), 33);
    h.finish();
}

#[test]
fn stats_keeps_the_owner_of_a_holding_left_behind_without_auto_release() {
    // §10: `owner_conn_id` is the connection id of the holder. With auto-release off the
    // departed connection still holds the lock until expiry or release by token (§11), so its
    // id stays on show (the reference keeps it in the holder record).
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let a = h.client_with_serial(77);
    granted(h.ask(a, "l", "k", "0 10"), 10);
    h.disconnect(a);
    assert_eq!(
        h.stats_value()["locks"],
        serde_json::json!([{"key": "k", "owner_conn_id": 77, "lease_expires_in_s": 10.0, "waiters": 0}])
    );
    h.finish();
}

#[test]
fn cancel_waits_answers_every_waiting_request_and_keeps_queued_enqueues() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    h.block(b, "l", "k", "10");
    assert_eq!(h.ask(c, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(d, "e", "k", ""), Response::Queued);
    h.block(d, "w", "k", "10");
    h.block(e, "sl", "s", "10 2");

    h.at(500);
    h.cancel_waits();
    assert_eq!(h.reply(b), Response::Error);
    assert_eq!(h.reply(d), Response::Error);
    assert_eq!(h.reply(e), Response::Error);
    h.quiet(c);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(d, "w", "k", "0"), Response::ErrorNotEnqueued);
    // c's enqueue survived and is still first in line.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.ask(c, "w", "k", "0"), 33);
    // Nothing is left to cancel.
    h.cancel_waits();
    h.finish();
}

#[test]
fn server_level_requests_are_refused_by_the_engine() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    assert_eq!(h.ask(a, "stats", "_", ""), Response::Error);
    assert_eq!(h.ask(a, "ping", "_", ""), Response::Error);
    assert_eq!(h.ask(a, "auth", "_", "secret"), Response::Error);
    h.finish();
}
