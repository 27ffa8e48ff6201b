//! Signal work spread over turns (`SIGNAL_BUDGET`): a publish that does not fit in a turn's units
//! continues in the next calls of `expire`, and whatever arrives meanwhile waits its turn, so
//! replies and pushes are those of publishes run in one go in arrival order.

use std::collections::{HashMap, VecDeque};

use super::harness::Harness;
use crate::engine::ClientId;
use crate::protocol::Response;
use crate::test_rng::Rng;

/// Runs `expire` until the signal work is done (each call is one loop turn).
fn turns(h: &mut Harness) -> usize {
    let mut turns = 0;
    while h.engine.expire(h.now, &mut h.out) {
        h.check(None);
        turns += 1;
        assert!(turns < 10_000, "signal work never finishes");
    }
    h.check(None);
    turns
}

#[test]
fn a_publish_over_budget_spans_turns_and_what_arrives_meanwhile_waits_in_order() {
    let mut h = Harness::with_defaults();
    h.engine.set_signal_budget(3);
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let [p, q, r] = [h.client(), h.client(), h.client()];
    for subscriber in [a, b, c, d] {
        assert_eq!(h.ask(subscriber, "listen", "x", ""), Response::Ok);
    }
    h.block(p, "signal", "x", "first");
    assert_eq!(h.pushes().len(), 1, "the first turn's units cover one copy");
    // Arriving during the publish: a listen, another signal, and a subscriber leaving.
    h.block(q, "listen", "x", "");
    h.block(r, "signal", "x", "second");
    h.disconnect(b);
    assert!(turns(&mut h) > 2);

    // b left after both signals were accepted: each counts it, as had they run at once, but
    // nothing is sent to it. q's listen came before r's signal, so r reaches q too.
    assert_eq!(h.reply(p), Response::Delivered { count: 4 });
    assert_eq!(h.reply(q), Response::Ok);
    assert_eq!(h.reply(r), Response::Delivered { count: 5 });
    let pushes: Vec<(ClientId, String)> = h
        .pushes()
        .into_iter()
        .map(|(to, _, payload)| (to, payload))
        .collect();
    let first = |to| (to, "first".to_string());
    let second = |to| (to, "second".to_string());
    assert_eq!(
        pushes,
        vec![
            first(c),
            first(d),
            second(a),
            second(c),
            second(d),
            second(q)
        ]
    );
    // With the default budget, such a publish is answered at once again.
    h.engine.set_signal_budget(crate::budget::SIGNAL_BUDGET);
    turns(&mut h);
    assert_eq!(
        h.ask(p, "signal", "x", "third"),
        Response::Delivered { count: 4 }
    );
    h.pushes();
    h.finish();
}

/// Runs at most `n` turns of `expire`.
fn turns_of(h: &mut Harness, n: usize) {
    for _ in 0..n {
        let more = h.engine.expire(h.now, &mut h.out);
        h.check(None);
        if !more {
            break;
        }
    }
}

/// What each client saw: its replies and its pushes, in order (only replies for clients that left).
type Seen = HashMap<ClientId, Vec<String>>;

/// Plays one random script of listens, unlistens, signals and departures on an engine with
/// `budget` units per turn, one request per client at a time, a turn after each step.
fn play(seed: u64, budget: u64) -> Seen {
    const PATTERNS: [&str; 8] = ["a", "a.b", "a.*", "*.b", ">", "a.>", "*", "*.*.c"];
    const CHANNELS: [&str; 5] = ["a", "a.b", "b.b", "a.b.c", "x"];
    const GROUPS: [&str; 3] = ["", "", "g"];
    let mut h = Harness::with_defaults();
    h.engine.set_signal_budget(budget);
    let mut rng = Rng::new(seed);
    let mut clients: Vec<ClientId> = (0..6).map(|_| h.client()).collect();
    let mut seen = Seen::new();
    for step in 0..400 {
        let slot = rng.index(clients.len());
        let choice = rng.index(12);
        let (pattern, group) = (PATTERNS[rng.index(8)], GROUPS[rng.index(3)]);
        let channel = CHANNELS[rng.index(5)];
        let client = clients[slot];
        // The client's own earlier request is answered first (it cannot send while it waits);
        // everybody else's work may still be in progress.
        while h.waiting.contains(&client) {
            turns_of(&mut h, 1);
            record(&mut h, &mut seen);
        }
        match choice {
            0 => {
                h.disconnect(client);
                clients[slot] = h.client();
            }
            1..=4 => drop(h.req(client, "listen", pattern, group)),
            5 => drop(h.req(client, "unlisten", pattern, group)),
            _ => drop(h.req(client, "signal", channel, &format!("s{step}"))),
        }
        if rng.index(3) == 0 {
            turns_of(&mut h, 1);
        }
        record(&mut h, &mut seen);
    }
    turns(&mut h);
    record(&mut h, &mut seen);
    // A subscriber that left may miss pushes a publish running at once would have queued for it
    // just before it left (and that its closing connection would have dropped).
    for (client, lines) in &mut seen {
        if !h.connected.contains(client) {
            lines.retain(|line| !line.starts_with("sig "));
        }
    }
    seen
}

/// Moves what was sent since the last call into `seen` (the harness's inboxes are read too).
fn record(h: &mut Harness, seen: &mut Seen) {
    for (to, line) in h.out.trace.drain(..) {
        seen.entry(to).or_default().push(line);
    }
    h.pushes();
    h.inbox.values_mut().for_each(VecDeque::clear);
}

#[test]
fn any_budget_gives_the_replies_and_pushes_of_publishing_at_once() {
    for seed in 0..12 {
        let at_once = play(seed, u64::MAX);
        for budget in [1, 2, 5, 17] {
            assert_eq!(play(seed, budget), at_once, "seed {seed}, budget {budget}");
        }
    }
}
