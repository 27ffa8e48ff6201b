use super::*;
use crate::test_rng::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

fn id(index: u32) -> ClientId {
    ClientId {
        index,
        generation: 1,
    }
}

/// Records what a publish did and enforces the [`DeliverySink`] contract on the index.
#[derive(Default)]
struct Recorder {
    /// Copies each client can still take; absent clients have unlimited room.
    room: HashMap<ClientId, usize>,
    /// The client whose `has_room` last answered true, which alone may be delivered to next.
    approved: Option<ClientId>,
    delivered: Vec<ClientId>,
    evicted: Vec<ClientId>,
}

impl DeliverySink for Recorder {
    fn has_room(&mut self, client: ClientId) -> bool {
        assert!(
            !self.evicted.contains(&client),
            "{client:?} offered after its eviction"
        );
        let room = self.room.get(&client).is_none_or(|&left| left > 0);
        self.approved = room.then_some(client);
        room
    }

    fn deliver(&mut self, client: ClientId) {
        assert_eq!(self.approved.take(), Some(client), "delivered without room");
        if let Some(left) = self.room.get_mut(&client) {
            *left -= 1;
        }
        self.delivered.push(client);
    }

    fn evict(&mut self, client: ClientId) {
        assert!(!self.evicted.contains(&client), "{client:?} evicted twice");
        self.evicted.push(client);
    }
}

/// What one publish did, with clients given by index.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    count: u64,
    delivered: Vec<u32>,
    evicted: Vec<u32>,
}

/// An index plus the per-client handles the engine would keep; checks invariants after every call.
#[derive(Default)]
struct Harness {
    index: SignalIndex,
    handles: HashMap<u32, ClientSubscriptions>,
}

impl Harness {
    fn listen_limited(
        &mut self,
        client: u32,
        pattern: &str,
        group: &str,
        limits: SubscriptionLimits,
    ) -> ListenOutcome {
        let subs = self.handles.entry(client).or_default();
        let outcome = self.index.listen(
            id(client),
            subs,
            pattern.as_bytes(),
            group.as_bytes(),
            &limits,
        );
        self.index.check_invariants();
        outcome
    }

    fn listen_capped(
        &mut self,
        client: u32,
        pattern: &str,
        group: &str,
        cap: u64,
    ) -> ListenOutcome {
        let limits = SubscriptionLimits {
            per_client: cap,
            ..SubscriptionLimits::default()
        };
        self.listen_limited(client, pattern, group, limits)
    }

    fn listen(&mut self, client: u32, pattern: &str, group: &str) -> ListenOutcome {
        self.listen_capped(client, pattern, group, 0)
    }

    fn subscribe(&mut self, client: u32, pattern: &str, group: &str) {
        assert_eq!(self.listen(client, pattern, group), ListenOutcome::Added);
    }

    fn unlisten(&mut self, client: u32, pattern: &str, group: &str) -> UnlistenOutcome {
        let subs = self.handles.entry(client).or_default();
        let outcome = self
            .index
            .unlisten(id(client), subs, pattern.as_bytes(), group.as_bytes());
        self.index.check_invariants();
        outcome
    }

    fn remove_client(&mut self, client: u32) {
        let subs = self.handles.entry(client).or_default();
        self.index.remove_client(id(client), subs);
        assert!(subs.is_empty());
        self.index.check_invariants();
        // Reclaimed in small steps, checking the tables between them.
        while !self.index.reclaim(&mut 2) {
            self.index.check_invariants();
        }
        self.index.check_invariants();
    }

    fn count(&self, client: u32) -> usize {
        self.handles
            .get(&client)
            .map_or(0, |subs| self.index.subscription_count(subs))
    }

    /// Publishes with `room[(client, copies)]` limiting some clients' room.
    fn publish_with_room(&mut self, channel: &str, room: &[(u32, usize)]) -> Outcome {
        let mut sink = Recorder {
            room: room
                .iter()
                .map(|&(client, left)| (id(client), left))
                .collect(),
            ..Recorder::default()
        };
        let count = self.index.publish(channel.as_bytes(), &mut sink);
        self.index.check_invariants();
        assert_eq!(
            count,
            sink.delivered.len() as u64,
            "count differs from copies delivered"
        );
        Outcome {
            count,
            delivered: sink.delivered.iter().map(|c| c.index).collect(),
            evicted: sink.evicted.iter().map(|c| c.index).collect(),
        }
    }

    fn publish(&mut self, channel: &str) -> Outcome {
        self.publish_with_room(channel, &[])
    }

    fn stats(&self) -> BTreeSet<(String, Option<String>, u64)> {
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        let mut lines = BTreeSet::new();
        let mut cursor = ChannelCursor::default();
        // A small budget, so the walk resumes many times.
        while !self.index.channels_step(&mut cursor, 2, |stat| {
            lines.insert((text(stat.pattern), stat.group.map(text), stat.listeners));
        }) {}
        lines
    }
}

fn sorted(mut clients: Vec<u32>) -> Vec<u32> {
    clients.sort_unstable();
    clients
}

/// Whether the index delivers a signal on `channel` to a lone non-grouped subscriber of `pattern`.
fn index_matches(pattern: &str, channel: &str) -> bool {
    let mut harness = Harness::default();
    harness.subscribe(1, pattern, "");
    harness.publish(channel).count == 1
}

#[test]
fn classifies_patterns() {
    use PatternKind::{Literal, Wildcard};
    let table: &[(&str, Option<PatternKind>)] = &[
        ("a", Some(Literal)),
        ("a.b.c", Some(Literal)),
        ("a..b", Some(Literal)),
        ("a.", Some(Literal)),
        (".", Some(Literal)),
        ("*", Some(Wildcard)),
        (">", Some(Wildcard)),
        ("a.*", Some(Wildcard)),
        ("*.*", Some(Wildcard)),
        ("a.>", Some(Wildcard)),
        ("*.>", Some(Wildcard)),
        ("a..*", Some(Wildcard)),
        (".>", Some(Wildcard)),
        ("a*", None),
        ("*a", None),
        ("a.b>", None),
        (">.a", None),
        ("a.>.b", None),
        (">>", None),
        ("**", None),
        ("*>", None),
        (">.>", None),
    ];
    for &(pattern, expected) in table {
        assert_eq!(classify_pattern(pattern.as_bytes()), expected, "{pattern}");
    }
}

#[test]
fn matches_the_spec_table() {
    let table: &[(&str, &str, bool)] = &[
        ("a.*", "a.b", true),
        ("a.*", "a", false),
        ("a.*", "a.b.c", false),
        ("a.*", "a.", true),
        ("a.>", "a.b", true),
        ("a.>", "a.b.c", true),
        ("a.>", "a", false),
        ("a.>", "a.", true),
        ("a.>", "b.c", false),
        (">", "a", true),
        (">", "a.b.c", true),
        (">", ".", true),
        ("*", "a", true),
        ("*", "a.b", false),
        ("*", ".", false),
        ("a..b", "a..b", true),
        ("a..b", "a.b", false),
        ("a.*.b", "a..b", true),
        ("a.", "a.", true),
        ("a.", "a", false),
        ("a", "a", true),
        ("a", "a.b", false),
        ("a", "b", false),
        ("*.b", "a.b", true),
        ("*.b", "a.c", false),
        ("*.>", "a", false),
        ("*.>", "a.b", true),
    ];
    for &(pattern, channel, expected) in table {
        assert_eq!(
            pattern_matches(pattern.as_bytes(), channel.as_bytes()),
            expected,
            "naive: {pattern} vs {channel}"
        );
        assert_eq!(
            index_matches(pattern, channel),
            expected,
            "index: {pattern} vs {channel}"
        );
    }
}

#[test]
fn rejects_invalid_patterns_without_changing_anything() {
    let mut harness = Harness::default();
    for pattern in ["a*", "a.b>", ">.a", "a.>.b", "*a", ">>"] {
        assert_eq!(
            harness.listen(1, pattern, ""),
            ListenOutcome::InvalidPattern
        );
        assert_eq!(
            harness.listen(1, pattern, "g"),
            ListenOutcome::InvalidPattern
        );
        assert_eq!(
            harness.unlisten(1, pattern, ""),
            UnlistenOutcome::InvalidPattern
        );
    }
    assert!(harness.index.is_empty());
    assert_eq!(harness.count(1), 0);
}

/// One to four of `tokens`, joined with dots.
fn dotted(rng: &mut Rng, tokens: &[&str]) -> String {
    let count = 1 + rng.index(4);
    (0..count)
        .map(|_| *rng.pick(tokens))
        .collect::<Vec<_>>()
        .join(".")
}

const CHANNEL_TOKENS: &[&str] = &["", "a", "b", "ab"];
const PATTERN_TOKENS: &[&str] = &["", "a", "b", "ab", "*", "*", ">", ">"];

fn random_pattern(rng: &mut Rng) -> String {
    loop {
        let pattern = dotted(rng, PATTERN_TOKENS);
        if classify_pattern(pattern.as_bytes()).is_some() {
            return pattern;
        }
    }
}

#[test]
fn index_agrees_with_the_reference_matcher() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        let mut harness = Harness::default();
        let patterns: Vec<String> = (0..12).map(|_| random_pattern(&mut rng)).collect();
        for (client, pattern) in patterns.iter().enumerate() {
            let outcome = harness.listen(client as u32, pattern, "");
            assert_eq!(outcome, ListenOutcome::Added);
        }
        for _ in 0..20 {
            let channel = dotted(&mut rng, CHANNEL_TOKENS);
            let expected: Vec<u32> = (0..patterns.len() as u32)
                .filter(|&c| pattern_matches(patterns[c as usize].as_bytes(), channel.as_bytes()))
                .collect();
            let outcome = harness.publish(&channel);
            assert_eq!(
                sorted(outcome.delivered),
                expected,
                "channel {channel:?} vs {patterns:?}"
            );
        }
    }
}

/// Random listen/unlisten/remove/publish sequences against a plain model of the subscriptions.
#[test]
fn random_operations_agree_with_a_model() {
    let groups = ["", "", "g", "h"];
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    let mut harness = Harness::default();
    let mut model: BTreeSet<(u32, String, String)> = BTreeSet::new();
    for _ in 0..4000 {
        let client = rng.below(6) as u32;
        let pattern = random_pattern(&mut rng);
        let group = rng.pick(&groups).to_string();
        match rng.below(10) {
            0..=3 => {
                let added = model.insert((client, pattern.clone(), group.clone()));
                let expected = if added {
                    ListenOutcome::Added
                } else {
                    ListenOutcome::AlreadySubscribed
                };
                assert_eq!(harness.listen(client, &pattern, &group), expected);
            }
            4..=5 => {
                // Unlisten something the client probably holds.
                let held: Vec<_> = model.iter().filter(|s| s.0 == client).cloned().collect();
                let (pattern, group) = match held.get(rng.index(held.len() + 1)) {
                    Some((_, pattern, group)) => (pattern.clone(), group.clone()),
                    None => (pattern, group),
                };
                let removed = model.remove(&(client, pattern.clone(), group.clone()));
                let expected = if removed {
                    UnlistenOutcome::Removed
                } else {
                    UnlistenOutcome::NotSubscribed
                };
                assert_eq!(harness.unlisten(client, &pattern, &group), expected);
            }
            6 => {
                harness.remove_client(client);
                model.retain(|s| s.0 != client);
            }
            _ => check_publish(&mut harness, &model, &dotted(&mut rng, CHANNEL_TOKENS)),
        }
        assert_eq!(harness.index.len(), model.len());
        assert_eq!(
            harness.count(client),
            model.iter().filter(|s| s.0 == client).count()
        );
    }
    for client in 0..6 {
        harness.remove_client(client);
    }
    assert!(harness.index.is_empty());
}

/// One copy per matching non-grouped client plus one per matching group, each group's copy going to
/// one of its members.
fn check_publish(harness: &mut Harness, model: &BTreeSet<(u32, String, String)>, channel: &str) {
    let matching = model
        .iter()
        .filter(|(_, pattern, _)| pattern_matches(pattern.as_bytes(), channel.as_bytes()));
    let mut plain = BTreeSet::new();
    let mut groups: BTreeMap<(&str, &str), BTreeSet<u32>> = BTreeMap::new();
    for (client, pattern, group) in matching {
        if group.is_empty() {
            plain.insert(*client);
        } else {
            groups.entry((pattern, group)).or_default().insert(*client);
        }
    }
    let outcome = harness.publish(channel);
    assert_eq!(
        outcome.count,
        (plain.len() + groups.len()) as u64,
        "{channel:?}"
    );
    let mut copies: BTreeMap<u32, usize> = BTreeMap::new();
    for client in outcome.delivered {
        *copies.entry(client).or_default() += 1;
    }
    for (client, got) in copies {
        let grouped = groups
            .values()
            .filter(|members| members.contains(&client))
            .count();
        assert!(
            got <= usize::from(plain.contains(&client)) + grouped,
            "{channel:?}"
        );
    }
}

#[test]
fn non_grouped_copies_are_deduplicated() {
    let mut harness = Harness::default();
    harness.subscribe(1, "a.b", "");
    harness.subscribe(1, "a.*", "");
    harness.subscribe(1, "a.>", "");
    harness.subscribe(1, ">", "");
    harness.subscribe(2, "*.b", "");
    harness.subscribe(3, "a.c", "");
    let outcome = harness.publish("a.b");
    assert_eq!(outcome.count, 2);
    assert_eq!(
        outcome.delivered,
        vec![1, 2],
        "exact subscribers come first"
    );
    assert_eq!(harness.publish("x").delivered, vec![1]);
    assert_eq!(harness.publish("zzz.q.r").count, 1);
    assert_eq!(sorted(harness.publish("q.b").delivered), vec![1, 2]);
}

#[test]
fn groups_are_independent_of_each_other_and_of_non_grouped_delivery() {
    let mut harness = Harness::default();
    harness.subscribe(1, "jobs.a", "");
    harness.subscribe(1, "jobs.a", "g");
    harness.subscribe(1, "jobs.*", "h");
    harness.subscribe(1, "jobs.>", "");
    let outcome = harness.publish("jobs.a");
    assert_eq!(outcome.count, 3);
    assert_eq!(outcome.delivered, vec![1, 1, 1]);
    assert_eq!(harness.publish("jobs.b").count, 2);
}

#[test]
fn delivery_follows_the_four_steps_in_order() {
    let mut harness = Harness::default();
    harness.subscribe(4, "a.*", "w");
    harness.subscribe(3, "a.*", "");
    harness.subscribe(2, "a.b", "q");
    harness.subscribe(1, "a.b", "");
    assert_eq!(harness.publish("a.b").delivered, vec![1, 2, 3, 4]);
}

#[test]
fn queue_group_round_robin_is_exact() {
    let mut harness = Harness::default();
    for client in [7, 3, 5] {
        harness.subscribe(client, "work.*", "pool");
    }
    let mut received = Vec::new();
    for _ in 0..300 {
        let outcome = harness.publish("work.item");
        assert_eq!(outcome.count, 1);
        received.extend(outcome.delivered);
    }
    let expected: Vec<u32> = [7, 3, 5].into_iter().cycle().take(300).collect();
    assert_eq!(received, expected, "members take turns in join order");
}

#[test]
fn two_groups_on_one_pattern_each_deliver_once() {
    let mut harness = Harness::default();
    harness.subscribe(1, "q", "x");
    harness.subscribe(2, "q", "x");
    harness.subscribe(3, "q", "y");
    harness.subscribe(4, "q", "y");
    harness.subscribe(5, "q", "y");
    let mut per_client: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..6 {
        let outcome = harness.publish("q");
        assert_eq!(outcome.count, 2);
        for client in outcome.delivered {
            *per_client.entry(client).or_default() += 1;
        }
    }
    let expected = BTreeMap::from([(1, 3), (2, 3), (3, 2), (4, 2), (5, 2)]);
    assert_eq!(per_client, expected);
}

#[test]
fn the_same_group_name_under_two_patterns_is_two_groups() {
    let mut harness = Harness::default();
    harness.subscribe(1, "jobs.a", "workers");
    harness.subscribe(2, "jobs.*", "workers");
    let outcome = harness.publish("jobs.a");
    assert_eq!(outcome.count, 2);
    assert_eq!(outcome.delivered, vec![1, 2]);
    let stats = harness.stats();
    assert!(stats.contains(&("jobs.a".into(), Some("workers".into()), 1)));
    assert!(stats.contains(&("jobs.*".into(), Some("workers".into()), 1)));
}

#[test]
fn a_non_grouped_subscriber_without_room_is_evicted_and_not_counted() {
    let mut harness = Harness::default();
    harness.subscribe(1, "news", "");
    harness.subscribe(2, "news", "");
    harness.subscribe(3, "*", "");
    let outcome = harness.publish_with_room("news", &[(2, 0)]);
    assert_eq!(outcome.count, 2);
    assert_eq!(sorted(outcome.delivered), vec![1, 3]);
    assert_eq!(outcome.evicted, vec![2]);
}

#[test]
fn a_full_group_member_passes_the_copy_on_and_a_full_group_evicts_the_first_tried() {
    let mut harness = Harness::default();
    for client in [1, 2, 3] {
        harness.subscribe(client, "t", "g");
    }
    // Turn 0 starts at 1, which is full: the next member with room takes it.
    let outcome = harness.publish_with_room("t", &[(1, 0), (2, 0)]);
    assert_eq!(
        (outcome.count, outcome.delivered, outcome.evicted),
        (1, vec![3], vec![])
    );
    // Turn 1 starts at 2 whatever happened at turn 0; it wraps past the end to 1.
    let outcome = harness.publish_with_room("t", &[(2, 0), (3, 0)]);
    assert_eq!(
        (outcome.count, outcome.delivered, outcome.evicted),
        (1, vec![1], vec![])
    );
    // Turn 2 starts at 3; nobody has room, so 3 is evicted.
    let outcome = harness.publish_with_room("t", &[(1, 0), (2, 0), (3, 0)]);
    assert_eq!(
        (outcome.count, outcome.delivered, outcome.evicted),
        (0, vec![], vec![3])
    );
}

#[test]
fn a_client_is_evicted_once_per_publish_and_then_skipped() {
    let mut harness = Harness::default();
    harness.subscribe(1, "s.x", "");
    harness.subscribe(1, "s.*", "");
    harness.subscribe(1, "s.x", "solo");
    harness.subscribe(1, "s.>", "pair");
    harness.subscribe(2, "s.>", "pair");
    let outcome = harness.publish_with_room("s.x", &[(1, 0)]);
    assert_eq!(outcome.evicted, vec![1]);
    // "solo" has no member left to offer to; "pair" skips 1 although its turn points at it.
    assert_eq!((outcome.count, outcome.delivered), (1, vec![2]));
}

#[test]
fn a_client_with_room_for_one_copy_gets_one_and_is_then_evicted() {
    let mut harness = Harness::default();
    harness.subscribe(1, "c", "");
    harness.subscribe(1, "c", "g");
    let outcome = harness.publish_with_room("c", &[(1, 1)]);
    assert_eq!(
        (outcome.count, outcome.delivered, outcome.evicted),
        (1, vec![1], vec![1])
    );
}

#[test]
fn unlisten_removes_exactly_one_subscription() {
    let mut harness = Harness::default();
    harness.subscribe(1, "a.*", "");
    harness.subscribe(1, "a.*", "g");
    harness.subscribe(2, "a.*", "");
    assert_eq!(
        harness.unlisten(1, "a.*", "h"),
        UnlistenOutcome::NotSubscribed
    );
    assert_eq!(
        harness.unlisten(1, "a.b", ""),
        UnlistenOutcome::NotSubscribed
    );
    assert_eq!(
        harness.unlisten(3, "a.*", ""),
        UnlistenOutcome::NotSubscribed
    );
    assert_eq!(harness.unlisten(1, "a.*", ""), UnlistenOutcome::Removed);
    assert_eq!(
        harness.unlisten(1, "a.*", ""),
        UnlistenOutcome::NotSubscribed
    );
    assert_eq!(
        harness.publish("a.b").delivered,
        vec![2, 1],
        "2 non-grouped, 1 via g"
    );
    assert_eq!(harness.unlisten(1, "a.*", "g"), UnlistenOutcome::Removed);
    assert!(harness.handles[&1].is_empty());
    assert_eq!(harness.unlisten(2, "a.*", ""), UnlistenOutcome::Removed);
    assert!(harness.index.is_empty());
}

#[test]
fn leaving_a_group_shifts_the_later_members() {
    let mut harness = Harness::default();
    for client in [1, 2, 3] {
        harness.subscribe(client, "t", "g");
    }
    assert_eq!(harness.publish("t").delivered, vec![1]);
    assert_eq!(harness.unlisten(1, "t", "g"), UnlistenOutcome::Removed);
    // Members are now [2, 3] and the turn is 1.
    let received: Vec<u32> = (0..4)
        .flat_map(|_| harness.publish("t").delivered)
        .collect();
    assert_eq!(received, vec![3, 2, 3, 2]);
    harness.subscribe(1, "t", "g");
    // Members [2, 3, 1], turn 5.
    let received: Vec<u32> = (0..3)
        .flat_map(|_| harness.publish("t").delivered)
        .collect();
    assert_eq!(received, vec![1, 2, 3]);
}

#[test]
fn max_subscriptions_caps_new_pairs_but_not_relistens() {
    let mut harness = Harness::default();
    assert_eq!(harness.listen_capped(1, "a", "", 2), ListenOutcome::Added);
    assert_eq!(harness.listen_capped(1, "a", "g", 2), ListenOutcome::Added);
    assert_eq!(
        harness.listen_capped(1, "b", "", 2),
        ListenOutcome::LimitReached(SubscriptionLimit::PerClient)
    );
    assert_eq!(
        harness.listen_capped(1, "a", "h", 2),
        ListenOutcome::LimitReached(SubscriptionLimit::PerClient)
    );
    assert_eq!(
        harness.listen_capped(1, "a", "", 2),
        ListenOutcome::AlreadySubscribed
    );
    assert_eq!(
        harness.listen_capped(1, "a", "g", 2),
        ListenOutcome::AlreadySubscribed
    );
    assert_eq!(harness.count(1), 2);
    assert_eq!(
        harness.listen_capped(2, "b", "", 2),
        ListenOutcome::Added,
        "per client"
    );
    assert_eq!(harness.unlisten(1, "a", ""), UnlistenOutcome::Removed);
    assert_eq!(harness.listen_capped(1, "b", "", 2), ListenOutcome::Added);
    assert_eq!(
        harness.listen_capped(1, "c", "", 2),
        ListenOutcome::LimitReached(SubscriptionLimit::PerClient)
    );
    assert_eq!(
        harness.listen_capped(1, "c", "", 0),
        ListenOutcome::Added,
        "0 = unlimited"
    );
    assert_eq!(harness.count(1), 3);
}

#[test]
fn remove_client_leaves_nothing_behind() {
    let mut harness = Harness::default();
    let patterns = [
        "a", "a.b", "a.*", "*.b", "a.>", ">", "a..b", "*.*.c", "a.*.>",
    ];
    for (n, pattern) in patterns.iter().enumerate() {
        harness.subscribe(1, pattern, "");
        harness.subscribe(1, pattern, "g");
        harness.subscribe(2 + n as u32 % 2, pattern, "g");
    }
    harness.remove_client(2);
    assert_eq!(
        harness.publish("a.b").count,
        1 + 5,
        "one non-grouped copy, five groups"
    );
    harness.remove_client(1);
    harness.remove_client(3);
    assert!(harness.index.is_empty());
    assert_eq!(harness.index.len(), 0);
    assert_eq!(harness.stats(), BTreeSet::new());
    assert_eq!(harness.publish("a.b").count, 0);
    harness.remove_client(4);
}

#[test]
fn a_recycled_connection_slot_is_a_different_client() {
    let mut index = SignalIndex::new();
    let old = ClientId {
        index: 9,
        generation: 1,
    };
    let new = ClientId {
        index: 9,
        generation: 2,
    };
    let mut old_subs = ClientSubscriptions::default();
    let mut new_subs = ClientSubscriptions::default();
    assert_eq!(
        index.listen(
            old,
            &mut old_subs,
            b"x",
            b"",
            &SubscriptionLimits::default()
        ),
        ListenOutcome::Added
    );
    index.remove_client(old, &mut old_subs);
    assert_eq!(
        index.listen(
            new,
            &mut new_subs,
            b"x",
            b"",
            &SubscriptionLimits::default()
        ),
        ListenOutcome::Added
    );
    let mut sink = Recorder::default();
    assert_eq!(index.publish(b"x", &mut sink), 1);
    assert_eq!(sink.delivered, vec![new]);
}

#[test]
fn stats_aggregate_per_pattern_and_group() {
    let mut harness = Harness::default();
    harness.subscribe(1, "a.b", "");
    harness.subscribe(2, "a.b", "");
    harness.subscribe(1, "a.*", "");
    harness.subscribe(1, "a.b", "w");
    harness.subscribe(2, "a.b", "w");
    harness.subscribe(3, "a.b", "w");
    harness.subscribe(3, "a.*", "w");
    harness.subscribe(3, "a.*", "my group");
    let expected = BTreeSet::from([
        ("a.b".into(), None, 2),
        ("a.*".into(), None, 1),
        ("a.b".into(), Some("w".into()), 3),
        ("a.*".into(), Some("w".into()), 1),
        ("a.*".into(), Some("my group".into()), 1),
    ]);
    assert_eq!(harness.stats(), expected);
    assert_eq!(harness.unlisten(1, "a.*", ""), UnlistenOutcome::Removed);
    harness.remove_client(3);
    let expected = BTreeSet::from([("a.b".into(), None, 2), ("a.b".into(), Some("w".into()), 2)]);
    assert_eq!(harness.stats(), expected);
}

#[test]
fn a_channel_spelled_like_a_wildcard_pattern_is_not_an_exact_match() {
    let mut harness = Harness::default();
    harness.subscribe(1, "a.*", "");
    let literal_subscribers: HashSet<u32> = harness.publish("a.x").delivered.into_iter().collect();
    assert_eq!(literal_subscribers, HashSet::from([1]));
    // The caller rejects such channels; if one slipped through it would still be delivered once.
    assert_eq!(harness.publish("a.*").count, 1);
}

#[test]
fn subscription_bytes_and_the_total_are_capped() {
    let mut harness = Harness::default();
    // Bytes per client: pattern plus group name, freed again by unlisten.
    let bytes = SubscriptionLimits {
        bytes_per_client: 10,
        ..SubscriptionLimits::default()
    };
    assert_eq!(
        harness.listen_limited(1, "abcd", "ef", bytes),
        ListenOutcome::Added
    );
    assert_eq!(
        harness.listen_limited(1, "abcd", "", bytes),
        ListenOutcome::Added
    );
    assert_eq!(
        harness.listen_limited(1, "x", "", bytes),
        ListenOutcome::LimitReached(SubscriptionLimit::BytesPerClient)
    );
    assert_eq!(
        harness.listen_limited(1, "abcd", "ef", bytes),
        ListenOutcome::AlreadySubscribed
    );
    assert_eq!(
        harness.listen_limited(2, "abcdefghij", "", bytes),
        ListenOutcome::Added
    );
    assert_eq!(harness.unlisten(1, "abcd", ""), UnlistenOutcome::Removed);
    assert_eq!(
        harness.listen_limited(1, "wxyz", "", bytes),
        ListenOutcome::Added
    );
    // All clients together.
    let total = SubscriptionLimits {
        total: 4,
        ..SubscriptionLimits::default()
    };
    assert_eq!(
        harness.listen_limited(3, "a", "", total),
        ListenOutcome::Added
    );
    assert_eq!(
        harness.listen_limited(4, "b", "", total),
        ListenOutcome::LimitReached(SubscriptionLimit::Total)
    );
    harness.remove_client(2);
    assert_eq!(
        harness.listen_limited(4, "b", "", total),
        ListenOutcome::Added
    );
}
