//! Lock events (`--lock-events`): what is published, on which channel, in which order, and the
//! `$` rule that keeps them from wildcard-first patterns.

use serde_json::Value;

use super::harness::{Harness, config, granted};
use crate::engine::ClientId;
use crate::protocol::Response;

/// An engine with lock events on, and a client listening to `patterns`.
fn with_listener(patterns: &[&str]) -> (Harness, ClientId) {
    let mut h = Harness::new(config(|c| c.lock_events = true));
    let listener = h.client();
    for pattern in patterns {
        assert_eq!(h.ask(listener, "listen", pattern, ""), Response::Ok);
    }
    (h, listener)
}

/// The events pushed since the last call, as (channel, payload), all to `listener`.
fn events(h: &mut Harness, listener: ClientId) -> Vec<(String, Value)> {
    h.pushes()
        .into_iter()
        .map(|(to, channel, payload)| {
            assert_eq!(to, listener, "event on {channel} to another client");
            let payload = serde_json::from_str(&payload).expect("an event payload is JSON");
            (channel, payload)
        })
        .collect()
}

/// The channels of the events pushed since the last call.
fn channels(h: &mut Harness, listener: ClientId) -> Vec<String> {
    events(h, listener).into_iter().map(|(c, _)| c).collect()
}

fn fence_of(response: Response) -> String {
    format!("{:016x}", granted(response, 33).fence)
}

#[test]
fn a_release_is_published_before_the_grant_it_makes() {
    let (mut h, listener) = with_listener(&["$lock.>"]);
    let [a, b] = [h.client(), h.client()];
    let token = granted(h.ask(a, "l", "k", "0"), 33);
    let first = format!("{:016x}", token.fence);
    h.advance(250);
    h.block(b, "l", "k", "10");
    h.advance(1_000);
    assert_eq!(h.ask(a, "r", "k", &token.to_string()), Response::Ok);
    let second = fence_of(h.reply(b));
    let got = events(&mut h, listener);
    let names: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "$lock.granted.k",
            "$lock.queued.k",
            "$lock.released.k",
            "$lock.granted.k"
        ]
    );
    let [grant, queued, released, regrant] = [&got[0].1, &got[1].1, &got[2].1, &got[3].1];
    assert_eq!(grant["key"], "k");
    assert_eq!(grant["fence"], first.as_str());
    assert_eq!(grant["conn"], 101);
    assert_eq!(grant["waited_ms"], 0);
    assert_eq!(grant["waiters"], 0);
    assert!(grant.get("held_ms").is_none() && grant.get("peer").is_none());
    assert_eq!(queued["conn"], 102);
    assert_eq!(queued["waiters"], 1);
    assert!(queued.get("fence").is_none() && queued.get("waited_ms").is_none());
    assert_eq!(released["fence"], first.as_str());
    assert_eq!(released["held_ms"], 1_250);
    assert_eq!(released["waiters"], 1);
    assert_eq!(regrant["fence"], second.as_str());
    assert_eq!(regrant["conn"], 102);
    assert_eq!(regrant["waited_ms"], 1_000);
    assert_eq!(regrant["waiters"], 0);
    h.finish();
}

#[test]
fn expiry_disconnect_and_release_are_told_apart() {
    let (mut h, listener) = with_listener(&["$lock.*.k"]);
    let [a, b, c] = [h.client(), h.client(), h.client()];
    h.engine.label_client(b, "unix:uid=1,pid=2".into());
    let _ = h.ask(a, "l", "k", "0 1");
    h.advance(1_000);
    let _ = h.ask(b, "l", "k", "0 5");
    h.advance(300);
    h.disconnect(b);
    let token = granted(h.ask(c, "l", "k", "0"), 33);
    assert_eq!(h.ask(c, "r", "k", &token.to_string()), Response::Ok);
    let got = events(&mut h, listener);
    let summary: Vec<(&str, &Value, &Value)> = got
        .iter()
        .map(|(c, p)| (c.as_str(), &p["held_ms"], &p["conn"]))
        .collect();
    assert_eq!(
        summary,
        [
            ("$lock.granted.k", &Value::Null, &Value::from(101)),
            ("$lock.expired.k", &Value::from(1_000), &Value::from(101)),
            ("$lock.granted.k", &Value::Null, &Value::from(102)),
            ("$lock.disconnected.k", &Value::from(300), &Value::from(102)),
            ("$lock.granted.k", &Value::Null, &Value::from(103)),
            ("$lock.released.k", &Value::from(0), &Value::from(103)),
        ]
    );
    // The label names b while it is connected; once it has left the server knows no peer.
    assert_eq!(got[2].1["peer"], "unix:uid=1,pid=2");
    assert!(got[3].1.get("peer").is_none());
    h.finish();
}

#[test]
fn an_eviction_is_published_before_the_grants_it_makes() {
    let (mut h, listener) = with_listener(&["$sem.*.pool"]);
    let admin = h.client();
    h.engine.grant_admin(admin);
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let held = fence_of(h.ask(a, "sl", "pool", "0 1"));
    h.block(b, "sl", "pool", "60 1");
    h.block(c, "sl", "pool", "60 1");
    h.advance(400);
    assert_eq!(
        h.ask(admin, "sevict", "pool", "*"),
        Response::Evicted { count: 1 }
    );
    let next = fence_of(h.reply(b));
    let got = events(&mut h, listener);
    let summary: Vec<(&str, &Value, &Value)> = got
        .iter()
        .map(|(c, p)| (c.as_str(), &p["fence"], &p["waiters"]))
        .collect();
    let (held, next) = (Value::from(held), Value::from(next));
    assert_eq!(
        summary,
        [
            ("$sem.granted.pool", &held, &Value::from(0)),
            ("$sem.queued.pool", &Value::Null, &Value::from(1)),
            ("$sem.queued.pool", &Value::Null, &Value::from(2)),
            ("$sem.evicted.pool", &held, &Value::from(2)),
            ("$sem.granted.pool", &next, &Value::from(1)),
        ]
    );
    assert_eq!(got[3].1["held_ms"], 400);
    assert_eq!(
        got[3].1["conn"], 102,
        "the holder's connection, not the admin's"
    );
    h.disconnect(c);
    h.finish();
}

#[test]
fn waits_that_run_out_publish_timeout() {
    let (mut h, listener) = with_listener(&["$lock.queued.>", "$lock.timeout.>", "$sem.>"]);
    let [a, b] = [h.client(), h.client()];
    let _ = h.ask(a, "l", "k", "0");
    h.block(b, "l", "k", "2");
    h.advance(2_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.ask(b, "l", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.advance(40);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::Timeout);
    let got = events(&mut h, listener);
    let summary: Vec<(&str, &Value, &Value)> = got
        .iter()
        .map(|(c, p)| (c.as_str(), &p["waited_ms"], &p["waiters"]))
        .collect();
    assert_eq!(
        summary,
        [
            ("$lock.queued.k", &Value::Null, &Value::from(1)),
            ("$lock.timeout.k", &Value::from(2_000), &Value::from(0)),
            ("$lock.timeout.k", &Value::from(0), &Value::from(0)),
            ("$lock.queued.k", &Value::Null, &Value::from(1)),
            ("$lock.timeout.k", &Value::from(40), &Value::from(0)),
        ]
    );
    // Semaphores have channels of their own.
    let _ = h.ask(a, "sl", "pool", "0 1");
    assert_eq!(h.ask(b, "sl", "pool", "0 1"), Response::Timeout);
    assert_eq!(
        channels(&mut h, listener),
        ["$sem.granted.pool", "$sem.timeout.pool"]
    );
    h.finish();
}

#[test]
fn a_key_that_cannot_end_a_channel_is_published_on_the_bare_event_channel() {
    let (mut h, listener) = with_listener(&["$lock.granted", "$lock.granted.>"]);
    let a = h.client();
    for key in ["a*b", "x.>", "a.b"] {
        let _ = h.ask(a, "l", key, "0");
    }
    let got = events(&mut h, listener);
    let summary: Vec<(&str, &Value)> = got.iter().map(|(c, p)| (c.as_str(), &p["key"])).collect();
    assert_eq!(
        summary,
        [
            ("$lock.granted", &Value::from("a*b")),
            ("$lock.granted", &Value::from("x.>")),
            ("$lock.granted.a.b", &Value::from("a.b")),
        ]
    );
    h.finish();
}

#[test]
fn nothing_changes_with_events_off() {
    let mut h = Harness::with_defaults();
    let [listener, a] = [h.client(), h.client()];
    assert_eq!(h.ask(listener, "listen", "$lock.>", ""), Response::Ok);
    assert_eq!(h.ask(listener, "listen", ">", ""), Response::Ok);
    let token = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &token.to_string()), Response::Ok);
    assert!(h.pushes().is_empty());
    // `$` channels are ordinary channels, as in 1.x: anyone may publish, `>` matches them.
    assert_eq!(
        h.ask(a, "signal", "$lock.granted.k", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes().len(), 1);
    h.finish();
}

#[test]
fn the_dollar_rule_keeps_events_from_wildcard_first_patterns() {
    let mut h = Harness::new(config(|c| c.lock_events = true));
    let [all, star, reserved, a] = [h.client(), h.client(), h.client(), h.client()];
    assert_eq!(h.ask(all, "listen", ">", ""), Response::Ok);
    assert_eq!(h.ask(star, "listen", "*.granted.k", ""), Response::Ok);
    assert_eq!(h.ask(star, "listen", "*", "g"), Response::Ok);
    // Patterns under `$lock` itself may be wildcards anywhere after the first token.
    for pattern in ["$lock.>", "$lock.*.k", "$lock.granted.k"] {
        assert_eq!(h.ask(reserved, "listen", pattern, ""), Response::Ok);
    }
    let _ = h.ask(a, "l", "k", "0");
    let got = h.pushes();
    assert_eq!(got.len(), 1, "one copy to the `$lock` subscriber: {got:?}");
    assert_eq!(got[0].0, reserved);
    // Clients may not publish on reserved channels; ordinary ones still reach `>`.
    assert_eq!(h.ask(a, "signal", "$lock.granted.k", "x"), Response::Error);
    assert_eq!(h.ask(a, "signal", "$other", "x"), Response::Error);
    assert_eq!(
        h.ask(a, "signal", "a.$lock", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes()[0].0, all);
    h.finish();
}

#[test]
fn a_grant_held_back_by_lock_delay_is_published_when_it_happens() {
    let mut h = Harness::new(config(|c| {
        c.lock_events = true;
        c.lock_delay_ms = 500;
    }));
    let [listener, a, b] = [h.client(), h.client(), h.client()];
    assert_eq!(h.ask(listener, "listen", "$lock.>", ""), Response::Ok);
    let _ = h.ask(a, "l", "k", "0 1");
    h.block(b, "l", "k", "10");
    h.advance(1_000);
    assert_eq!(
        channels(&mut h, listener),
        ["$lock.granted.k", "$lock.queued.k", "$lock.expired.k"]
    );
    h.advance(499);
    assert!(h.pushes().is_empty());
    h.advance(1);
    let _ = granted(h.reply(b), 33);
    let got = events(&mut h, listener);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "$lock.granted.k");
    assert_eq!(got[0].1["waited_ms"], 1_500);
    h.finish();
}

#[test]
fn events_keep_their_order_behind_a_publish_that_spans_turns() {
    let (mut h, listener) = with_listener(&["$lock.>", "x"]);
    let [p, a] = [h.client(), h.client()];
    h.engine.set_signal_budget(1);
    // The signal takes several turns; the events made meanwhile wait their turn behind it.
    h.block(p, "signal", "x", "payload");
    let token = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &token.to_string()), Response::Ok);
    h.run_due();
    assert_eq!(h.reply(p), Response::Delivered { count: 1 });
    let pushed: Vec<(ClientId, String)> =
        h.pushes().into_iter().map(|(to, c, _)| (to, c)).collect();
    let expected = ["x", "$lock.granted.k", "$lock.released.k"];
    assert_eq!(pushed, expected.map(|c| (listener, c.to_owned())));
    h.finish();
}

#[test]
fn events_beyond_the_backlog_are_dropped_and_counted() {
    let mut h = Harness::new(config(|c| {
        c.lock_events = true;
        c.max_locks = 20_000;
    }));
    let [listener, a] = [h.client(), h.client()];
    assert_eq!(h.ask(listener, "listen", "$lock.>", ""), Response::Ok);
    h.engine.set_signal_budget(1);
    let backlog = crate::budget::EVENT_BACKLOG;
    let keys: Vec<String> = (0..backlog + 10).map(|i| format!("k{i}")).collect();
    h.lock_all(a, &keys);
    // The first started and is in progress, the next EVENT_BACKLOG queue; the rest are dropped.
    assert_eq!(h.engine.metrics().lock_events_dropped_total(), 9);
    h.engine.set_signal_budget(crate::budget::SIGNAL_BUDGET);
    h.run_due();
    assert_eq!(h.pushes().len(), backlog + 1);
    h.finish();
}
