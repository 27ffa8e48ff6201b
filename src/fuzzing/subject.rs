//! The `subject` target: the [`SignalIndex`] against a model built on the naive matcher
//! [`pattern_matches_with_rule`] and a restatement of the pattern rules of spec §13.2, with or
//! without the `$` rule of lock events.

use std::collections::{BTreeMap, BTreeSet};

use super::Input;
use crate::engine::ClientId;
use crate::engine::signal::{
    ChannelCursor, ClientSubscriptions, DeliverySink, ListenOutcome, SignalIndex,
    SubscriptionLimit, SubscriptionLimits, UnlistenOutcome, pattern_matches_with_rule,
};
use crate::protocol::events::is_reserved_channel;

/// Clients taking part; each slot gets a new generation whenever its client leaves.
const CLIENTS: usize = 5;
/// Pattern tokens: literals, the empty token, both wildcards, two invalid mixtures and a
/// reserved token (first in a channel, it makes the channel one the `$` rule guards).
const PATTERN_TOKENS: [&[u8]; 9] = [b"a", b"b", b"", b"*", b">", b"a*", b"ab", b"b>", b"$a"];
/// Channel tokens: the literals above (channels never hold wildcards).
const CHANNEL_TOKENS: [&[u8]; 5] = [b"a", b"b", b"", b"ab", b"$a"];
const GROUPS: [&[u8]; 3] = [b"", b"g", b"h"];

/// A (pattern, group) pair; an empty group means not grouped.
type Subscription = (Vec<u8>, Vec<u8>);

/// A queue group as the spec describes it: members in join order and a turn counter.
#[derive(Default)]
struct Group {
    members: Vec<ClientId>,
    turn: u64,
}

#[derive(Default)]
struct Model {
    subscriptions: BTreeMap<ClientId, BTreeSet<Subscription>>,
    groups: BTreeMap<Subscription, Group>,
    limits: SubscriptionLimits,
    /// Whether the `$` rule is in force.
    dollar_rule: bool,
}

/// Spec §13.2: a token holding `*` must be `*`, one holding `>` must be `>` and come last.
pub(super) fn valid_pattern(pattern: &[u8]) -> bool {
    let tokens: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    tokens.iter().enumerate().all(|(i, &token)| {
        let star = token.contains(&b'*');
        let rest = token.contains(&b'>');
        (!star || token == b"*") && (!rest || (token == b">" && i == tokens.len() - 1))
    })
}

impl Model {
    fn listen(&mut self, client: ClientId, pattern: &[u8], group: &[u8]) -> ListenOutcome {
        if !valid_pattern(pattern) {
            return ListenOutcome::InvalidPattern;
        }
        let held = self.subscriptions.entry(client).or_default();
        let subscription = (pattern.to_vec(), group.to_vec());
        if held.contains(&subscription) {
            return ListenOutcome::AlreadySubscribed;
        }
        let limits = &self.limits;
        let bytes: usize = held.iter().map(|(p, g)| p.len() + g.len()).sum();
        let over_count = limits.per_client != 0 && held.len() as u64 >= limits.per_client;
        let over_bytes = limits.bytes_per_client != 0
            && (bytes + pattern.len() + group.len()) as u64 > limits.bytes_per_client;
        let total: usize = self.subscriptions.values().map(BTreeSet::len).sum();
        let over_total = limits.total != 0 && total as u64 >= limits.total;
        // The index names the first cap it checks that would be passed, in this order.
        let over = [
            (over_count, SubscriptionLimit::PerClient),
            (over_bytes, SubscriptionLimit::BytesPerClient),
            (over_total, SubscriptionLimit::Total),
        ];
        if let Some(&(_, limit)) = over.iter().find(|(over, _)| *over) {
            return ListenOutcome::LimitReached(limit);
        }
        let held = self.subscriptions.entry(client).or_default();
        held.insert(subscription.clone());
        if !group.is_empty() {
            self.groups
                .entry(subscription)
                .or_default()
                .members
                .push(client);
        }
        ListenOutcome::Added
    }

    fn unlisten(&mut self, client: ClientId, pattern: &[u8], group: &[u8]) -> UnlistenOutcome {
        if !valid_pattern(pattern) {
            return UnlistenOutcome::InvalidPattern;
        }
        let subscription = (pattern.to_vec(), group.to_vec());
        let removed = self
            .subscriptions
            .get_mut(&client)
            .is_some_and(|held| held.remove(&subscription));
        if !removed {
            return UnlistenOutcome::NotSubscribed;
        }
        self.leave_group(client, subscription);
        UnlistenOutcome::Removed
    }

    fn leave_group(&mut self, client: ClientId, subscription: Subscription) {
        if subscription.1.is_empty() {
            return;
        }
        let group = self
            .groups
            .get_mut(&subscription)
            .expect("a grouped subscription has its group");
        group.members.retain(|&member| member != client);
        if group.members.is_empty() {
            self.groups.remove(&subscription);
        }
    }

    fn remove_client(&mut self, client: ClientId) {
        for subscription in self.subscriptions.remove(&client).unwrap_or_default() {
            self.leave_group(client, subscription);
        }
    }

    fn count(&self, client: ClientId) -> usize {
        self.subscriptions.get(&client).map_or(0, BTreeSet::len)
    }

    fn total(&self) -> usize {
        self.subscriptions.values().map(BTreeSet::len).sum()
    }
}

/// Records one publish. Room is fixed per client for the whole publish, which makes the outcome
/// independent of the (unspecified) order in which subscribers are offered the signal.
struct Recorder<'r> {
    room: &'r [bool; CLIENTS],
    copies: BTreeMap<ClientId, u64>,
    evicted: BTreeSet<ClientId>,
}

impl DeliverySink for Recorder<'_> {
    fn has_room(&mut self, client: ClientId) -> bool {
        assert!(
            !self.evicted.contains(&client),
            "evicted {client:?} offered again"
        );
        self.room[client.index as usize]
    }

    fn deliver(&mut self, client: ClientId) {
        assert!(self.room[client.index as usize], "delivered without room");
        assert!(!self.evicted.contains(&client), "delivered after eviction");
        *self.copies.entry(client).or_default() += 1;
    }

    fn evict(&mut self, client: ClientId) {
        assert!(!self.room[client.index as usize], "evicted with room");
        assert!(self.evicted.insert(client), "evicted twice in one publish");
    }
}

/// What a publish must do according to spec §13.4-13.5, given who has room.
struct Expected {
    copies: BTreeMap<ClientId, u64>,
    /// Non-grouped subscribers without room: each must be evicted.
    must_evict: BTreeSet<ClientId>,
    /// Matching groups in which nobody has room: at least one member of each must be evicted.
    full_groups: Vec<Vec<ClientId>>,
}

impl Model {
    /// Computes the expected outcome of publishing on `channel` and advances the matching groups'
    /// turns.
    fn publish(&mut self, channel: &[u8], room: &[bool; CLIENTS]) -> Expected {
        let has_room = |client: &ClientId| room[client.index as usize];
        let rule = self.dollar_rule;
        let pattern_matches =
            |pattern: &[u8], channel| pattern_matches_with_rule(pattern, channel, rule);
        let mut expected = Expected {
            copies: BTreeMap::new(),
            must_evict: BTreeSet::new(),
            full_groups: Vec::new(),
        };
        for (&client, held) in &self.subscriptions {
            let plain_match = held
                .iter()
                .any(|(pattern, group)| group.is_empty() && pattern_matches(pattern, channel));
            if plain_match && has_room(&client) {
                expected.copies.insert(client, 1);
            } else if plain_match {
                expected.must_evict.insert(client);
            }
        }
        for ((pattern, _), group) in self.groups.iter_mut() {
            if !pattern_matches(pattern, channel) {
                continue;
            }
            let size = group.members.len();
            let start = (group.turn % size as u64) as usize;
            group.turn += 1;
            let taker = (0..size)
                .map(|step| group.members[(start + step) % size])
                .find(has_room);
            match taker {
                Some(client) => *expected.copies.entry(client).or_default() += 1,
                None => expected.full_groups.push(group.members.clone()),
            }
        }
        expected
    }
}

fn read_pattern(input: &mut Input<'_>, tokens: &[&[u8]]) -> Vec<u8> {
    let count = 1 + input.below(4);
    let parts: Vec<&[u8]> = (0..count).map(|_| *input.pick(tokens)).collect();
    let joined = parts.join(&b'.');
    // A key is never empty (the parser rejects it before the index sees it).
    if joined.is_empty() {
        b"a".to_vec()
    } else {
        joined
    }
}

/// One client slot: its current id and its handle in the index.
struct Slot {
    id: ClientId,
    handle: ClientSubscriptions,
}

/// Reclaims departed clients' entries with a budget the input picks (none: leave them for later).
fn reclaim(input: &mut Input<'_>, index: &mut SignalIndex) {
    let mut units = input.below(8) as u64;
    let done = index.reclaim(&mut units);
    assert!(done || units == 0, "reclaim stopped with units left");
}

fn leave(index: &mut SignalIndex, model: &mut Model, slot: &mut Slot) {
    index.remove_client(slot.id, &mut slot.handle);
    assert!(
        slot.handle.is_empty(),
        "handle not emptied by remove_client"
    );
    model.remove_client(slot.id);
    slot.id.generation += 1;
}

fn publish(input: &mut Input<'_>, index: &mut SignalIndex, model: &mut Model, slots: &mut [Slot]) {
    let channel = read_pattern(input, &CHANNEL_TOKENS);
    let mask = input.byte();
    let room: [bool; CLIENTS] = std::array::from_fn(|i| mask & (1 << i) == 0);
    let expected = model.publish(&channel, &room);
    let mut sink = Recorder {
        room: &room,
        copies: BTreeMap::new(),
        evicted: BTreeSet::new(),
    };
    // Offered in slices of a few units, as a publish spread over loop turns is.
    let slice = input.below(8) as u64;
    index.begin_publish(&channel);
    let count = loop {
        let mut units = if slice == 0 { u64::MAX } else { slice };
        if let Some(count) = index.continue_publish(&mut units, input.below(3) as u64, &mut sink) {
            break count;
        }
        assert_eq!(units, 0, "a publish paused with units left");
        assert!(index.is_publishing());
    };
    assert!(!index.is_publishing());
    assert_eq!(sink.copies, expected.copies, "copies per client");
    assert_eq!(
        count,
        expected.copies.values().sum::<u64>(),
        "delivery count"
    );
    for client in &expected.must_evict {
        assert!(sink.evicted.contains(client), "slow {client:?} not evicted");
    }
    for members in &expected.full_groups {
        assert!(
            members.iter().any(|m| sink.evicted.contains(m)),
            "full group without an eviction"
        );
    }
    for client in &sink.evicted {
        let explained = expected.must_evict.contains(client)
            || expected.full_groups.iter().any(|m| m.contains(client));
        assert!(explained, "{client:?} evicted for no reason");
    }
    // The server disconnects every evicted client.
    for slot in slots.iter_mut() {
        if sink.evicted.contains(&slot.id) {
            leave(index, model, slot);
        }
    }
}

fn check(index: &SignalIndex, model: &Model, slots: &[Slot]) {
    index.check_invariants();
    assert_eq!(index.len(), model.total(), "subscription total");
    // Some subscribed pattern can reach a reserved channel exactly when the rule is in force
    // and a pattern starting with `$` is subscribed (counting departed ones not yet reclaimed).
    let reserved = model
        .subscriptions
        .values()
        .flatten()
        .any(|(pattern, _)| is_reserved_channel(pattern));
    if !index.has_departed() {
        assert_eq!(
            index.has_reserved_patterns(),
            model.dollar_rule && reserved,
            "reserved patterns"
        );
    }
    for slot in slots {
        assert_eq!(
            index.subscription_count(&slot.handle),
            model.count(slot.id),
            "subscriptions of {:?}",
            slot.id
        );
        assert_eq!(slot.handle.is_empty(), model.count(slot.id) == 0, "handle");
    }
    // Walked in small steps, as a large `stats` listing is.
    let mut listed: Vec<(Vec<u8>, Option<Vec<u8>>, u64)> = Vec::new();
    let mut cursor = ChannelCursor::default();
    while !index.channels_step(&mut cursor, 2, |c| {
        listed.push((c.pattern.to_vec(), c.group.map(<[u8]>::to_vec), c.listeners));
    }) {}
    listed.sort();
    let mut plain: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (pattern, _) in model
        .subscriptions
        .values()
        .flatten()
        .filter(|s| s.1.is_empty())
    {
        *plain.entry(pattern).or_default() += 1;
    }
    let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>, u64)> = plain
        .into_iter()
        .map(|(pattern, n)| (pattern.to_vec(), None, n))
        .chain(model.groups.iter().map(|((pattern, name), group)| {
            (
                pattern.clone(),
                Some(name.clone()),
                group.members.len() as u64,
            )
        }))
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "stats lines of the signal channels");
}

/// The `subject` target: subscribe, unsubscribe, leave and publish in arbitrary order.
///
/// Input: whether the `$` rule is in force, the subscription cap, then operations on five clients over a small vocabulary of
/// tokens (so patterns overlap), with a per-publish mask of clients whose buffers are full and a
/// number of units per slice of the publish. Departed clients' entries are reclaimed when the
/// input says, a few units at a time, so publishes meet departed clients not yet reclaimed.
/// Checks against the model after every operation: listen and unlisten outcomes (validity, cap,
/// idempotence); each publish delivers one non-grouped copy to every matching client with room
/// and one copy per matching queue group to the first member with room in round-robin order from
/// the group's turn; the count equals the copies; slow non-grouped subscribers and one member of
/// each all-full group are evicted, nobody else, nobody twice and nobody offered anything after;
/// the index's own invariants, counts and `stats` lines. Under the `$` rule a pattern starting
/// with a wildcard must never receive a channel starting with `$` (the model's matcher says so
/// independently of the index's). At the end every client leaves and the index must be empty.
pub fn subject(data: &[u8]) {
    let mut input = Input::new(data);
    let dollar_rule = input.flag();
    let mut index = if dollar_rule {
        SignalIndex::with_dollar_rule()
    } else {
        SignalIndex::new()
    };
    let mut model = Model {
        dollar_rule,
        limits: SubscriptionLimits {
            per_client: *input.pick(&[0, 1, 2, 4]),
            bytes_per_client: *input.pick(&[0, 0, 3, 8]),
            total: *input.pick(&[0, 0, 3, 6]),
        },
        ..Model::default()
    };
    let mut slots: Vec<Slot> = (0..CLIENTS as u32)
        .map(|index| Slot {
            id: ClientId {
                index,
                generation: 1,
            },
            handle: ClientSubscriptions::default(),
        })
        .collect();
    while !input.is_empty() {
        let op = input.byte();
        let slot = input.below(CLIENTS);
        match op % 8 {
            0..=2 => {
                let pattern = read_pattern(&mut input, &PATTERN_TOKENS);
                let group = *input.pick(&GROUPS);
                let Slot { id, handle } = &mut slots[slot];
                let got = index.listen(*id, handle, &pattern, group, &model.limits);
                assert_eq!(
                    got,
                    model.listen(*id, &pattern, group),
                    "listen {pattern:?}"
                );
            }
            3 => {
                let pattern = read_pattern(&mut input, &PATTERN_TOKENS);
                let group = *input.pick(&GROUPS);
                let Slot { id, handle } = &mut slots[slot];
                let got = index.unlisten(*id, handle, &pattern, group);
                assert_eq!(got, model.unlisten(*id, &pattern, group), "unlisten");
            }
            4 => leave(&mut index, &mut model, &mut slots[slot]),
            5 => reclaim(&mut input, &mut index),
            _ => publish(&mut input, &mut index, &mut model, &mut slots),
        }
        check(&index, &model, &slots);
    }
    for slot in &mut slots {
        leave(&mut index, &mut model, slot);
    }
    check(&index, &model, &slots);
    let mut unlimited = u64::MAX;
    assert!(index.reclaim(&mut unlimited), "unlimited reclaim");
    assert!(index.is_empty(), "index not empty after every client left");
}
