//! Leak check over a long mixed scenario: random traffic, then everyone leaves and the engine must
//! hold nothing.

use std::collections::HashMap;

use super::harness::{Harness, config};
use crate::engine::{ClientId, EngineConfig, Outcome};
use crate::protocol::Response;
use crate::test_rng::Rng;
use crate::token::LeaseToken;

/// Drives random traffic from a few clients over a few keys, with clock jumps, skipped timer
/// runs, reconnects, slow consumers and one shutdown cancel; then everyone leaves and the
/// engine must end up empty.
fn mixed_scenario(config: EngineConfig, seed: u64) {
    const KEYS: [&str; 3] = ["a", "b", "c"];
    const CHANNELS: [&str; 3] = ["a", "a.b", "b.c"];
    const PATTERNS: [&str; 5] = ["a", "a.b", "a.*", ">", "*.c"];
    let mut h = Harness::new(config);
    let mut rng = Rng::new(seed);
    let mut clients: Vec<ClientId> = (0..6).map(|_| h.client()).collect();
    // Tokens seen, with the namespace prefix ("" or "s") and key they were granted for.
    let mut tokens: Vec<(&str, &str, LeaseToken)> = Vec::new();
    // The (namespace prefix, key) of each client's latest request, to file the tokens of grants.
    let mut last: HashMap<ClientId, (&str, &str)> = HashMap::new();
    let mut generation = 1;
    for step in 0..4_000 {
        for client in h.evictions() {
            h.disconnect(client);
            let slot = clients.iter().position(|&x| x == client).expect("known");
            generation += 1;
            clients[slot] = ClientId {
                index: client.index,
                generation,
            };
            h.connect(clients[slot], u64::from(generation));
        }
        for &client in &clients {
            let inbox = h.inbox.entry(client).or_default();
            while let Some(response) = inbox.pop_front() {
                if let Response::Granted { token, .. } | Response::Acquired { token, .. } = response
                {
                    let (ns, key) = last[&client];
                    tokens.push((ns, key, token));
                    if tokens.len() > 32 {
                        tokens.remove(0);
                    }
                }
            }
        }
        h.pushes();
        if step == 2_000 {
            h.cancel_waits();
            continue;
        }
        match rng.below(20) {
            0..=2 => {
                let t = h.now.0 + rng.below(1_500);
                match rng.below(4) {
                    0 => h.skip_to(t),
                    1 => h.jump_to(t),
                    _ => h.at(t),
                }
                continue;
            }
            3 => {
                let client = clients[rng.index(clients.len())];
                h.disconnect(client);
                let slot = clients.iter().position(|&x| x == client).expect("known");
                generation += 1;
                clients[slot] = ClientId {
                    index: client.index,
                    generation,
                };
                h.connect(clients[slot], u64::from(generation));
                continue;
            }
            _ => {}
        }
        let idle: Vec<ClientId> = clients
            .iter()
            .copied()
            .filter(|c| !h.waiting.contains(c))
            .collect();
        let Some(&client) = (!idle.is_empty()).then(|| rng.pick(&idle)) else {
            continue;
        };
        let ns = *rng.pick(&["", "s"]);
        let key = *rng.pick(&KEYS);
        let limit = if ns == "s" {
            format!(" {}", 2 + rng.below(2))
        } else {
            String::new()
        };
        let lease = 1 + rng.below(3);
        let (cmd, arg) = match rng.below(10) {
            0 | 1 => ("l", format!("{}{limit} {lease}", rng.below(3))),
            2 | 3 => {
                let Some(&(tns, tkey, token)) = (!tokens.is_empty()).then(|| rng.pick(&tokens))
                else {
                    continue;
                };
                let cmd = if rng.below(2) == 0 { "r" } else { "n" };
                last.insert(client, (tns, tkey));
                let outcome = h.req(client, &format!("{tns}{cmd}"), tkey, &token.to_string());
                assert_eq!(outcome, Outcome::Answered);
                continue;
            }
            4 => ("e", format!("{} {lease}", limit.trim())),
            5 => ("w", rng.below(3).to_string()),
            6 => {
                let cmd = *rng.pick(&["listen", "unlisten"]);
                let group = *rng.pick(&["", "", "g"]);
                let pattern = *rng.pick(&PATTERNS);
                h.req(client, cmd, pattern, group);
                continue;
            }
            7 => {
                if rng.below(4) == 0 {
                    let slow = *rng.pick(&clients);
                    h.set_room(slow, 0);
                }
                let channel = *rng.pick(&CHANNELS);
                h.req(client, "signal", channel, "payload");
                continue;
            }
            _ => ("l", format!("0{limit}")),
        };
        last.insert(client, (ns, key));
        h.req(client, &format!("{ns}{cmd}"), key, arg.trim());
    }
    for client in h.evictions() {
        h.disconnect(client);
    }
    for inbox in h.inbox.values_mut() {
        inbox.clear();
    }
    h.finish();
}

#[test]
fn a_long_mixed_scenario_leaves_nothing_behind() {
    for seed in 1..=4 {
        mixed_scenario(EngineConfig::default(), seed);
    }
}

#[test]
fn a_long_mixed_scenario_with_caps_and_without_auto_release_leaves_nothing_behind() {
    for seed in 11..=14 {
        mixed_scenario(
            config(|c| {
                c.max_locks = 4;
                c.max_waiters = 2;
                c.subscriptions.per_client = 2;
                c.auto_release_on_disconnect = false;
                c.gc_max_idle_ms = 3_000;
                c.gc_interval_ms = 1_000;
            }),
            seed,
        );
    }
}
