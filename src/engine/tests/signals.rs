//! Signals through the engine (§13).

use super::harness::{Harness, config, granted};
use crate::engine::ClientId;
use crate::protocol::Response;

#[test]
fn listen_unlisten_and_signal_answer_as_specified() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, p] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "a.b", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "a.b", ""), Response::Ok);
    assert_eq!(h.ask(b, "listen", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(c, "listen", ">", "g"), Response::Ok);
    assert_eq!(h.ask(d, "listen", ">", "g"), Response::Ok);
    assert_eq!(h.ask(a, "listen", "a*", ""), Response::Error);
    assert_eq!(h.ask(a, "unlisten", "a.>.b", ""), Response::Error);
    assert_eq!(h.engine.counts().3, 4);

    assert_eq!(
        h.ask(p, "signal", "a.b", "  hello world "),
        Response::Delivered { count: 3 }
    );
    let payload = "  hello world ".to_string();
    assert_eq!(
        h.pushes(),
        vec![
            (a, "a.b".to_string(), payload.clone()),
            (b, "a.b".to_string(), payload.clone()),
            (c, "a.b".to_string(), payload.clone()),
        ]
    );
    // The group takes turns.
    assert_eq!(
        h.ask(p, "signal", "a.b", "again"),
        Response::Delivered { count: 3 }
    );
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![a, b, d]);

    assert_eq!(h.ask(b, "unlisten", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(b, "unlisten", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(a, "unlisten", "a.b", "g"), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "a.c", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes().len(), 1);
    // Only the `>` group matches here.
    assert_eq!(
        h.ask(p, "signal", "nobody.else", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes().len(), 1);
    // The publisher is not excluded; the `>` group (its turn is c's) gets its copy too.
    assert_eq!(h.ask(p, "listen", "self", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "self", "me"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(
        h.pushes(),
        vec![
            (p, "self".to_string(), "me".to_string()),
            (c, "self".to_string(), "me".to_string()),
        ]
    );
    h.finish();
}

#[test]
fn pushes_arrive_in_publish_order_even_while_waiting() {
    let mut h = Harness::with_defaults();
    let [a, p] = [h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "jobs", ""), Response::Ok);
    let tp = granted(h.ask(p, "l", "k", "0"), 33);
    h.block(a, "l", "k", "10");
    for n in 1..=3 {
        assert_eq!(
            h.ask(p, "signal", "jobs", &n.to_string()),
            Response::Delivered { count: 1 }
        );
    }
    let payloads: Vec<String> = h.pushes().into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(payloads, ["1", "2", "3"]);
    h.quiet(a);
    assert_eq!(h.ask(p, "r", "k", &tp.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    h.finish();
}

#[test]
fn a_subscriber_without_room_is_evicted_through_the_outbox() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, p] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    for x in [a, b] {
        assert_eq!(h.ask(x, "listen", "ch", ""), Response::Ok);
    }
    for x in [c, d] {
        assert_eq!(h.ask(x, "listen", "ch", "g"), Response::Ok);
    }
    // `sig ch x\n` is 9 bytes: room for exactly one.
    h.set_room(a, 9);
    h.set_room(b, 8);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(h.evictions(), vec![b]);
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![a, c]);
    // The server disconnects the slow consumer; until then it stays subscribed.
    h.disconnect(b);

    // a is full now; d is the group's turn but full, so c takes it.
    h.set_room(d, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.evictions(), vec![a]);
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![c]);
    h.disconnect(a);

    // Every member full: the member tried first (c, by turn) is evicted, nothing is counted.
    h.set_room(c, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.evictions(), vec![c]);
    assert!(h.pushes().is_empty());
    h.finish();
}

#[test]
fn a_slow_consumer_is_evicted_once_per_signal() {
    let mut h = Harness::with_defaults();
    let [a, p] = [h.client(), h.client()];
    for (pattern, group) in [("ch", ""), (">", ""), ("ch", "g"), ("*", "h")] {
        assert_eq!(h.ask(a, "listen", pattern, group), Response::Ok);
    }
    h.set_room(a, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.evictions(), vec![a]);
    h.disconnect(a);
    h.finish();
}

#[test]
fn max_subscriptions_caps_new_pairs_per_client() {
    let mut h = Harness::new(config(|c| c.subscriptions.per_client = 2));
    let [a, b, p] = [h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "y", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "z", ""), Response::Error);
    assert_eq!(h.ask(a, "listen", "x", "g"), Response::Error);
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "z", "1"),
        Response::Delivered { count: 0 }
    );
    // The cap is per client.
    assert_eq!(h.ask(b, "listen", "z", ""), Response::Ok);
    assert_eq!(h.ask(b, "listen", "x", ""), Response::Ok);
    // Unlisten frees a unit.
    assert_eq!(h.ask(a, "unlisten", "y", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "z", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "z", "1"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(
        h.ask(p, "signal", "y", "1"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.pushes().len(), 2);
    h.finish();
}

#[test]
fn stats_lists_signal_channels_until_their_listeners_leave() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    for x in [a, b] {
        assert_eq!(h.ask(x, "listen", "events.>", ""), Response::Ok);
        assert_eq!(h.ask(x, "listen", "jobs.*", "workers"), Response::Ok);
    }
    assert_eq!(h.ask(c, "listen", "jobs.*", "other"), Response::Ok);
    assert_eq!(h.ask(c, "listen", "jobs.*", ""), Response::Ok);
    let channels = |h: &Harness| {
        let mut lines: Vec<String> = h.stats_value()["signal_channels"]
            .as_array()
            .expect("signal_channels")
            .iter()
            .map(|entry| entry.to_string())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        channels(&h),
        [
            r#"{"group":"other","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"group":"workers","listeners":2,"pattern":"jobs.*"}"#,
            r#"{"listeners":1,"pattern":"jobs.*"}"#,
            r#"{"listeners":2,"pattern":"events.>"}"#,
        ]
    );
    h.disconnect(b);
    assert_eq!(h.ask(c, "unlisten", "jobs.*", ""), Response::Ok);
    assert_eq!(
        channels(&h),
        [
            r#"{"group":"other","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"group":"workers","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"listeners":1,"pattern":"events.>"}"#,
        ]
    );
    h.disconnect(a);
    h.disconnect(c);
    assert!(channels(&h).is_empty());
    h.finish();
}
