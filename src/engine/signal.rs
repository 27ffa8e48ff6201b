//! The signal subscription index: which clients listen to which channels and patterns, alone or in
//! queue groups, and which of them a published signal is offered to, in what order (spec §13).
//!
//! It owns pattern syntax ([`classify_pattern`]), the subscription tables, queue-group round robin and
//! the per-client subscription lists that make a disconnect cost O(that client's subscriptions). It must
//! not do I/O, read the clock, build push lines or judge output buffers: [`SignalIndex::publish`] hands
//! every copy to a [`DeliverySink`], which owns the connections, says who has room, and disconnects slow
//! consumers afterwards (the index only promises not to offer an evicted client anything more in the same
//! publish).
//!
//! Layout, chosen so that a publish costs O(channel tokens + matching subscriptions), never O(all
//! subscriptions):
//! - every subscribed pattern, literal or wildcard, has one entry found by its bytes. A channel never
//!   contains `*` or `>`, so looking the channel up there finds exactly its literal subscribers;
//! - wildcard patterns are also threaded into a token trie: edges are literal tokens or `*`, and a node
//!   can end a pattern itself or with a trailing `>`. Matching walks the channel's tokens once, following
//!   at most a literal edge and the `*` edge from each live node;
//! - a pattern entry holds its non-grouped members and its queue groups, each group an ordered member list
//!   with a round-robin turn counter;
//! - each client with subscriptions has an entry here, reached in O(1) through the [`ClientSubscriptions`]
//!   handle the engine keeps for it. The entry lists the client's subscriptions and carries the per-publish
//!   stamps that de-duplicate non-grouped copies and remember evictions, so publishing needs no set;
//! - empty client entries, groups, patterns and trie nodes are removed as soon as they empty, so
//!   [`SignalIndex::is_empty`] holds again once every client has left.

use std::collections::HashMap;
use std::mem;

use slab::Slab;

use super::ClientId;

/// Separates the tokens of channels and patterns.
const SEPARATOR: u8 = b'.';
/// The pattern token that matches any one token.
const ANY_TOKEN: &[u8] = b"*";
/// The final pattern token that matches one or more remaining tokens.
const REST_TOKEN: &[u8] = b">";

/// The two kinds of valid pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// No wildcard: matches only the channel spelled the same way.
    Literal,
    /// Contains `*` tokens and/or a final `>`.
    Wildcard,
}

/// Validates a `listen`/`unlisten` pattern (spec §13.2) and says whether it is literal.
///
/// `None` means invalid: a token containing `*` must be exactly `*`, a token containing `>` must be exactly
/// `>`, and `>` may only be the last token. Empty tokens (`a..b`, `a.`) are legal. The caller has already
/// checked the key rules (non-empty, no white space).
pub fn classify_pattern(pattern: &[u8]) -> Option<PatternKind> {
    let mut kind = PatternKind::Literal;
    let mut tokens = pattern.split(is_separator).peekable();
    while let Some(token) = tokens.next() {
        if !token.iter().any(|&b| b == b'*' || b == b'>') {
            continue;
        }
        let is_last = tokens.peek().is_none();
        if token == ANY_TOKEN || (token == REST_TOKEN && is_last) {
            kind = PatternKind::Wildcard;
        } else {
            return None;
        }
    }
    Some(kind)
}

/// Reference matcher, written for obviousness rather than speed (it allocates): does the valid `pattern`
/// match `channel`? The index never calls it; tests and the differential fuzz target compare the index
/// against it.
///
/// Token by token: a literal token must be equal, `*` matches any single (possibly empty) token, `>`
/// matches when at least one channel token remains at its position; otherwise the token counts must be
/// equal.
pub fn pattern_matches(pattern: &[u8], channel: &[u8]) -> bool {
    let pattern: Vec<&[u8]> = pattern.split(is_separator).collect();
    let channel: Vec<&[u8]> = channel.split(is_separator).collect();
    for (position, &token) in pattern.iter().enumerate() {
        if token == REST_TOKEN {
            return channel.len() > position;
        }
        match channel.get(position) {
            Some(&offered) if token == ANY_TOKEN || token == offered => {}
            _ => return false,
        }
    }
    pattern.len() == channel.len()
}

fn is_separator(byte: &u8) -> bool {
    *byte == SEPARATOR
}

/// Result of [`SignalIndex::listen`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenOutcome {
    /// A new (pattern, group) subscription was recorded.
    Added,
    /// The client already held this (pattern, group); nothing changed (`ok` even at the cap, §13.7).
    AlreadySubscribed,
    /// The client already holds `max_subscriptions` subscriptions; nothing changed.
    LimitReached,
    /// The pattern fails [`classify_pattern`]; nothing changed.
    InvalidPattern,
}

/// Result of [`SignalIndex::unlisten`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnlistenOutcome {
    /// The subscription existed and is gone.
    Removed,
    /// The client held no such (pattern, group); nothing changed (still `ok` on the wire).
    NotSubscribed,
    /// The pattern fails [`classify_pattern`]; nothing changed.
    InvalidPattern,
}

/// Where [`SignalIndex::publish`] sends the copies of one signal; implemented by the server side, which
/// owns the connections and their output buffers.
pub trait DeliverySink {
    /// Whether `client` can take one more copy of this signal without exceeding its output bound.
    fn has_room(&mut self, client: ClientId) -> bool;
    /// Queue one copy of the signal for `client` (only called after `has_room` returned true).
    fn deliver(&mut self, client: ClientId);
    /// `client` is a slow consumer: the server will disconnect it. Called at most once per client per
    /// publish; the index must not offer that client further copies of THIS signal.
    fn evict(&mut self, client: ClientId);
}

/// Where a walk over the `signal_channels` lines stands (see [`SignalIndex::channels_step`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCursor {
    /// Past the patterns, walking the queue groups.
    in_groups: bool,
    /// Next table slot to look at.
    next: usize,
}

/// One line of the `stats` reply's `signal_channels` array (spec §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelStat<'a> {
    /// The exact channel or wildcard pattern subscribed to.
    pub pattern: &'a [u8],
    /// The queue group, or `None` for the pattern's non-grouped subscribers.
    pub group: Option<&'a [u8]>,
    /// Number of clients subscribed to this (pattern, group).
    pub listeners: u64,
}

/// A client's handle on its subscriptions in a [`SignalIndex`]. The engine keeps one per client, passes it
/// to every index call about that client, and never shares it between clients. It is empty (the default)
/// whenever the client holds no subscription, so it costs nothing for lock-only clients.
#[derive(Debug, Default)]
pub struct ClientSubscriptions {
    /// Slot of the client's entry in `SignalIndex::clients`.
    slot: Option<u32>,
}

impl ClientSubscriptions {
    /// True when the client holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.slot.is_none()
    }
}

/// Every signal subscription of every client, indexed for publishing (see the module docs).
#[derive(Debug, Default)]
pub struct SignalIndex {
    /// Every subscribed pattern, literal or wildcard, to its slot in `patterns`.
    pattern_slots: HashMap<Box<[u8]>, u32>,
    patterns: Slab<PatternEntry>,
    /// Queue groups by [`group_key`]; the pattern slot in the key keeps equal names under different
    /// patterns apart (they are different groups, §13.4).
    group_slots: HashMap<Box<[u8]>, u32>,
    groups: Slab<QueueGroup>,
    /// (client slot, target) to subscription slot: `listen` and `unlisten` find an existing subscription in
    /// O(1) instead of scanning a client's or a target's list, either of which can be long.
    memberships: HashMap<(u32, Target), u32>,
    subscriptions: Slab<Subscription>,
    clients: Slab<ClientEntry>,
    /// The wildcard trie; `root` is `None` whenever no wildcard pattern is subscribed.
    nodes: Slab<Node>,
    root: Option<u32>,
    /// Number of the current (or last) publish. Client entries record it instead of a per-publish set, so
    /// nothing needs clearing between publishes.
    epoch: u64,
    scratch: Scratch,
}

/// Buffers reused across calls so that a steady-state publish (and most lookups) allocate nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// Trie nodes alive after the channel tokens seen so far, and those after the next token.
    frontier: Vec<u32>,
    next_frontier: Vec<u32>,
    /// Wildcard pattern slots matching the channel being published.
    matched: Vec<u32>,
    /// Trie nodes from the root to a pattern's end, for pruning.
    path: Vec<u32>,
    /// A [`group_key`] being looked up.
    group_key: Vec<u8>,
}

/// A subscribed pattern and everyone subscribed to it. It exists while `plain` or `groups` is non-empty.
#[derive(Debug)]
struct PatternEntry {
    pattern: Box<[u8]>,
    kind: PatternKind,
    /// Non-grouped subscribers, in no particular order (swap-removed).
    plain: Vec<Member>,
    /// Slots in `SignalIndex::groups` of this pattern's queue groups, in no particular order.
    groups: Vec<u32>,
}

/// A queue group: a (pattern, name) pair whose members share each signal, one copy per signal.
#[derive(Debug)]
struct QueueGroup {
    /// Slot of the pattern entry this group hangs from.
    pattern: u32,
    name: Box<[u8]>,
    /// Members in join order, which round robin follows, so removal shifts the later members down.
    members: Vec<Member>,
    /// Signals offered to this group so far; `turn mod members.len()` is tried first.
    turn: u64,
    /// Position of this group in its pattern entry's `groups`.
    in_pattern: u32,
}

/// What a subscription is a member of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    /// The non-grouped subscribers of the pattern entry in this slot.
    Plain(u32),
    /// The queue group in this slot.
    Group(u32),
}

/// One (client, pattern, group) subscription, with back-pointers into the two lists that hold it so it
/// can be unlinked from both without a search.
#[derive(Clone, Copy, Debug)]
struct Subscription {
    client: u32,
    target: Target,
    /// Position in the client entry's `subscriptions`.
    in_client: u32,
    /// Position in the target's member list.
    in_target: u32,
}

/// An element of a member list. It repeats the client slot so publishing needs no detour through the
/// subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    client: u32,
    subscription: u32,
}

/// A client holding at least one subscription.
#[derive(Debug)]
struct ClientEntry {
    id: ClientId,
    /// Its subscription slots, in no particular order (swap-removed).
    subscriptions: Vec<u32>,
    /// Epoch of the last publish that gave this client its non-grouped copy (the de-duplication stamp).
    copied_in: u64,
    /// Epoch of the last publish in which this client was evicted.
    evicted_in: u64,
}

/// A wildcard trie node: the pattern prefix spelled by the edges from the root.
#[derive(Debug, Default)]
struct Node {
    /// Children along literal tokens.
    literal: HashMap<Box<[u8]>, u32>,
    /// Child along a `*` token.
    any: Option<u32>,
    /// The pattern that is exactly this prefix (it contains a `*`, or it would not be in the trie).
    ends_here: Option<u32>,
    /// The pattern that is this prefix followed by `>`.
    rest: Option<u32>,
}

impl Node {
    fn child(&self, token: &[u8]) -> Option<u32> {
        if token == ANY_TOKEN {
            self.any
        } else {
            self.literal.get(token).copied()
        }
    }

    fn unlink(&mut self, token: &[u8]) {
        if token == ANY_TOKEN {
            self.any = None;
        } else {
            self.literal.remove(token);
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.any.is_none()
            && self.ends_here.is_none()
            && self.rest.is_none()
    }
}

impl SignalIndex {
    /// An empty index.
    pub fn new() -> SignalIndex {
        SignalIndex::default()
    }

    /// Subscribes `client` to `pattern` as a member of `group` (empty = non-grouped), spec §7.10 and §13.3.
    ///
    /// `max_subscriptions` caps the client's distinct (pattern, group) pairs (0 = unlimited); re-listening
    /// to a pair the client already holds is [`ListenOutcome::AlreadySubscribed`], even at the cap. `subs`
    /// must be `client`'s own handle. A new queue-group member joins at the end of the group's order.
    pub fn listen(
        &mut self,
        client: ClientId,
        subs: &mut ClientSubscriptions,
        pattern: &[u8],
        group: &[u8],
        max_subscriptions: u64,
    ) -> ListenOutcome {
        let Some(kind) = classify_pattern(pattern) else {
            return ListenOutcome::InvalidPattern;
        };
        let target = self.find_target(pattern, group);
        let held_already = target
            .zip(self.owned_slot(client, subs))
            .is_some_and(|(target, slot)| self.memberships.contains_key(&(slot, target)));
        if held_already {
            return ListenOutcome::AlreadySubscribed;
        }
        let held = self.subscription_count(subs) as u64;
        if max_subscriptions != 0 && held >= max_subscriptions {
            return ListenOutcome::LimitReached;
        }
        let target = match target {
            Some(target) => target,
            None => self.insert_target(pattern, kind, group),
        };
        let slot = match subs.slot {
            Some(slot) => slot,
            None => self.insert_client(client, subs),
        };
        self.attach(slot, target);
        ListenOutcome::Added
    }

    /// Removes `client`'s subscription to exactly (`pattern`, `group`), spec §7.11. `subs` must be
    /// `client`'s own handle; it becomes empty with the client's last subscription.
    pub fn unlisten(
        &mut self,
        client: ClientId,
        subs: &mut ClientSubscriptions,
        pattern: &[u8],
        group: &[u8],
    ) -> UnlistenOutcome {
        if classify_pattern(pattern).is_none() {
            return UnlistenOutcome::InvalidPattern;
        }
        let Some(slot) = self.owned_slot(client, subs) else {
            return UnlistenOutcome::NotSubscribed;
        };
        let Some(target) = self.find_target(pattern, group) else {
            return UnlistenOutcome::NotSubscribed;
        };
        let Some(&subscription) = self.memberships.get(&(slot, target)) else {
            return UnlistenOutcome::NotSubscribed;
        };
        let removed = self.detach(subscription);
        let entry = &mut self.clients[slot as usize];
        let at = removed.in_client as usize;
        entry.subscriptions.swap_remove(at);
        if let Some(&moved) = entry.subscriptions.get(at) {
            self.subscriptions[moved as usize].in_client = removed.in_client;
        }
        if entry.subscriptions.is_empty() {
            self.clients.remove(slot as usize);
            subs.slot = None;
        }
        UnlistenOutcome::Removed
    }

    /// Drops every subscription of `client` (disconnect cleanup, spec §11 and §13.9) in O(its
    /// subscriptions), plus O(group size) for each queue group it leaves. `subs` is left empty.
    pub fn remove_client(&mut self, client: ClientId, subs: &mut ClientSubscriptions) {
        let Some(slot) = self.owned_slot(client, subs) else {
            return;
        };
        subs.slot = None;
        let entry = self.clients.remove(slot as usize);
        for subscription in entry.subscriptions {
            self.detach(subscription);
        }
    }

    /// Offers one signal on `channel` to every matching subscription, in the order of spec §13.4, and
    /// returns the delivery count of §13.5.
    ///
    /// Order: (1) literal non-grouped subscribers, (2) literal queue groups, (3) wildcard non-grouped
    /// subscribers, (4) wildcard queue groups. A client gets at most one copy through (1) and (3) together,
    /// plus one per group that picks it. A non-grouped subscriber without room is evicted and not counted. A
    /// group tries the member at `turn mod size` first (the turn advances once per signal), then the
    /// following members in order, wrapping; the first with room gets the copy, and if none has room the
    /// member tried first is evicted. A client evicted earlier in this publish is skipped from then on.
    ///
    /// `channel` is a valid key without `*` or `>`. Once the index has served a few publishes its scratch
    /// buffers are large enough and a publish allocates nothing.
    pub fn publish(&mut self, channel: &[u8], sink: &mut impl DeliverySink) -> u64 {
        self.epoch += 1;
        let mut matched = mem::take(&mut self.scratch.matched);
        matched.clear();
        self.match_wildcards(channel, &mut matched);
        // Only a literal entry can be spelled like a channel; the kind check keeps a channel that breaks
        // the no-wildcard rule from reaching wildcard subscribers twice.
        let literal = self
            .pattern_slots
            .get(channel)
            .copied()
            .filter(|&slot| self.patterns[slot as usize].kind == PatternKind::Literal);
        let mut copies = 0;
        if let Some(slot) = literal {
            copies += self.offer_plain(slot, sink);
            copies += self.offer_groups(slot, sink);
        }
        for &slot in &matched {
            copies += self.offer_plain(slot, sink);
        }
        for &slot in &matched {
            copies += self.offer_groups(slot, sink);
        }
        self.scratch.matched = matched;
        copies
    }

    /// Visits the `signal_channels` lines of `stats` (spec §10), in no particular order: one per
    /// pattern with non-grouped subscribers, then one per queue group. Resumable: visits at most
    /// `budget` table slots from `cursor`, advances it, and returns `true` once the walk is over,
    /// so a huge listing can be spread over several loop turns. Slots created or freed between
    /// calls may or may not be visited; none is visited twice.
    pub fn channels_step(
        &self,
        cursor: &mut ChannelCursor,
        budget: usize,
        mut visit: impl FnMut(ChannelStat<'_>),
    ) -> bool {
        let mut left = budget;
        if !cursor.in_groups {
            while cursor.next < self.patterns.capacity() {
                if left == 0 {
                    return false;
                }
                left -= 1;
                cursor.next += 1;
                match self.patterns.get(cursor.next - 1) {
                    Some(entry) if !entry.plain.is_empty() => visit(ChannelStat {
                        pattern: &entry.pattern,
                        group: None,
                        listeners: entry.plain.len() as u64,
                    }),
                    _ => {}
                }
            }
            *cursor = ChannelCursor {
                in_groups: true,
                next: 0,
            };
        }
        while cursor.next < self.groups.capacity() {
            if left == 0 {
                return false;
            }
            left -= 1;
            cursor.next += 1;
            if let Some(group) = self.groups.get(cursor.next - 1) {
                visit(ChannelStat {
                    pattern: &self.patterns[group.pattern as usize].pattern,
                    group: Some(&group.name),
                    listeners: group.members.len() as u64,
                });
            }
        }
        true
    }

    /// Number of subscriptions the client behind `subs` holds (what `max_subscriptions` counts).
    pub fn subscription_count(&self, subs: &ClientSubscriptions) -> usize {
        subs.slot
            .map_or(0, |slot| self.clients[slot as usize].subscriptions.len())
    }

    /// Total number of subscriptions of all clients.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// True when the index holds no subscription and no entry of any kind (clients, patterns, groups,
    /// trie nodes, map entries); the leak check of the fuzz targets. Buffer capacity may remain.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
            && self.memberships.is_empty()
            && self.clients.is_empty()
            && self.patterns.is_empty()
            && self.pattern_slots.is_empty()
            && self.groups.is_empty()
            && self.group_slots.is_empty()
            && self.nodes.is_empty()
            && self.root.is_none()
    }

    /// Panics unless every table agrees with every other (back-pointers, map entries, trie shape, no
    /// empty leftovers). For tests and fuzz targets; O(size of the index).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert_eq!(self.memberships.len(), self.subscriptions.len());
        for (slot, subscription) in &self.subscriptions {
            let slot = to_slot(slot);
            let client = &self.clients[subscription.client as usize];
            assert_eq!(client.subscriptions[subscription.in_client as usize], slot);
            let member = Member {
                client: subscription.client,
                subscription: slot,
            };
            assert_eq!(
                self.members(subscription.target)[subscription.in_target as usize],
                member
            );
            let key = (subscription.client, subscription.target);
            assert_eq!(self.memberships.get(&key), Some(&slot));
        }
        let listed: usize = self
            .clients
            .iter()
            .map(|(_, c)| c.subscriptions.len())
            .sum();
        assert_eq!(listed, self.subscriptions.len());
        assert!(
            self.clients
                .iter()
                .all(|(_, c)| !c.subscriptions.is_empty())
        );

        assert_eq!(self.group_slots.len(), self.groups.len());
        for (slot, group) in &self.groups {
            let slot = to_slot(slot);
            assert!(!group.members.is_empty() && !group.name.is_empty());
            let entry = &self.patterns[group.pattern as usize];
            assert_eq!(entry.groups[group.in_pattern as usize], slot);
            let mut key = Vec::new();
            let key = group_key(&mut key, group.pattern, &group.name);
            assert_eq!(self.group_slots.get(key), Some(&slot));
        }

        assert_eq!(self.pattern_slots.len(), self.patterns.len());
        let mut wildcards = 0;
        for (slot, entry) in &self.patterns {
            let slot = to_slot(slot);
            assert!(!entry.plain.is_empty() || !entry.groups.is_empty());
            assert_eq!(self.pattern_slots.get(&entry.pattern), Some(&slot));
            assert_eq!(classify_pattern(&entry.pattern), Some(entry.kind));
            if entry.kind == PatternKind::Wildcard {
                wildcards += 1;
                assert_eq!(self.trie_terminal(&entry.pattern), Some(slot));
            }
        }
        let (nodes, terminals) = self.trie_census();
        assert_eq!(nodes, self.nodes.len(), "unreachable trie nodes");
        assert_eq!(terminals, wildcards, "trie terminals without a pattern");
    }

    /// The client slot behind `subs`, checked (in debug builds) to belong to `client`.
    fn owned_slot(&self, client: ClientId, subs: &ClientSubscriptions) -> Option<u32> {
        let slot = subs.slot?;
        debug_assert_eq!(
            self.clients[slot as usize].id, client,
            "a ClientSubscriptions handle was used for another client"
        );
        Some(slot)
    }

    /// Gives `client` an entry for its first subscription and points its handle at it.
    fn insert_client(&mut self, client: ClientId, subs: &mut ClientSubscriptions) -> u32 {
        let slot = to_slot(self.clients.insert(ClientEntry {
            id: client,
            subscriptions: Vec::new(),
            copied_in: 0,
            evicted_in: 0,
        }));
        subs.slot = Some(slot);
        slot
    }

    /// The existing target for (`pattern`, `group`), if anyone subscribes to it.
    fn find_target(&mut self, pattern: &[u8], group: &[u8]) -> Option<Target> {
        let &pattern_slot = self.pattern_slots.get(pattern)?;
        if group.is_empty() {
            let entry = &self.patterns[pattern_slot as usize];
            (!entry.plain.is_empty()).then_some(Target::Plain(pattern_slot))
        } else {
            let key = group_key(&mut self.scratch.group_key, pattern_slot, group);
            self.group_slots.get(key).copied().map(Target::Group)
        }
    }

    /// Creates the target for (`pattern`, `group`), and the pattern entry if needed. The target has no
    /// member yet: the caller attaches one at once.
    fn insert_target(&mut self, pattern: &[u8], kind: PatternKind, group: &[u8]) -> Target {
        let pattern_slot = match self.pattern_slots.get(pattern) {
            Some(&slot) => slot,
            None => self.insert_pattern(pattern, kind),
        };
        if group.is_empty() {
            return Target::Plain(pattern_slot);
        }
        let entry = &mut self.patterns[pattern_slot as usize];
        let slot = to_slot(self.groups.insert(QueueGroup {
            pattern: pattern_slot,
            name: group.into(),
            members: Vec::new(),
            turn: 0,
            in_pattern: to_slot(entry.groups.len()),
        }));
        entry.groups.push(slot);
        let key = group_key(&mut self.scratch.group_key, pattern_slot, group);
        self.group_slots.insert(key.into(), slot);
        Target::Group(slot)
    }

    fn insert_pattern(&mut self, pattern: &[u8], kind: PatternKind) -> u32 {
        let slot = to_slot(self.patterns.insert(PatternEntry {
            pattern: pattern.into(),
            kind,
            plain: Vec::new(),
            groups: Vec::new(),
        }));
        self.pattern_slots.insert(pattern.into(), slot);
        if kind == PatternKind::Wildcard {
            self.trie_insert(pattern, slot);
        }
        slot
    }

    /// Records a new subscription of the client in `client_slot` to `target`.
    fn attach(&mut self, client_slot: u32, target: Target) {
        let slot = to_slot(self.subscriptions.vacant_key());
        let client = &mut self.clients[client_slot as usize];
        let members = match target {
            Target::Plain(pattern) => &mut self.patterns[pattern as usize].plain,
            Target::Group(group) => &mut self.groups[group as usize].members,
        };
        self.subscriptions.insert(Subscription {
            client: client_slot,
            target,
            in_client: to_slot(client.subscriptions.len()),
            in_target: to_slot(members.len()),
        });
        client.subscriptions.push(slot);
        members.push(Member {
            client: client_slot,
            subscription: slot,
        });
        self.memberships.insert((client_slot, target), slot);
    }

    /// Removes a subscription from everything but its client's list (which the caller handles, or is
    /// discarding whole), dropping its group and pattern when they empty.
    fn detach(&mut self, slot: u32) -> Subscription {
        let removed = self.subscriptions.remove(slot as usize);
        self.memberships.remove(&(removed.client, removed.target));
        let at = removed.in_target as usize;
        match removed.target {
            Target::Plain(pattern) => {
                let plain = &mut self.patterns[pattern as usize].plain;
                plain.swap_remove(at);
                if let Some(moved) = plain.get(at) {
                    self.subscriptions[moved.subscription as usize].in_target = removed.in_target;
                }
                self.drop_pattern_if_unused(pattern);
            }
            Target::Group(group) => {
                // Round robin follows join order, so the later members each move down one place:
                // leaving a group costs O(group size).
                let members = &mut self.groups[group as usize].members;
                members.remove(at);
                for (position, member) in members.iter().enumerate().skip(at) {
                    self.subscriptions[member.subscription as usize].in_target = to_slot(position);
                }
                if members.is_empty() {
                    self.drop_group(group);
                }
            }
        }
        removed
    }

    fn drop_group(&mut self, slot: u32) {
        let group = self.groups.remove(slot as usize);
        let entry = &mut self.patterns[group.pattern as usize];
        let at = group.in_pattern as usize;
        entry.groups.swap_remove(at);
        if let Some(&moved) = entry.groups.get(at) {
            self.groups[moved as usize].in_pattern = group.in_pattern;
        }
        let key = group_key(&mut self.scratch.group_key, group.pattern, &group.name);
        self.group_slots.remove(key);
        self.drop_pattern_if_unused(group.pattern);
    }

    fn drop_pattern_if_unused(&mut self, slot: u32) {
        let entry = &self.patterns[slot as usize];
        if !entry.plain.is_empty() || !entry.groups.is_empty() {
            return;
        }
        let entry = self.patterns.remove(slot as usize);
        self.pattern_slots.remove(&entry.pattern);
        if entry.kind == PatternKind::Wildcard {
            self.trie_remove(&entry.pattern);
        }
    }

    /// Threads a valid wildcard pattern into the trie, creating the nodes it needs.
    fn trie_insert(&mut self, pattern: &[u8], pattern_slot: u32) {
        let mut node = match self.root {
            Some(root) => root,
            None => {
                let root = to_slot(self.nodes.insert(Node::default()));
                self.root = Some(root);
                root
            }
        };
        for token in pattern.split(is_separator) {
            if token == REST_TOKEN {
                // Validation put `>` last, so the pattern ends here.
                self.nodes[node as usize].rest = Some(pattern_slot);
                return;
            }
            node = match self.nodes[node as usize].child(token) {
                Some(child) => child,
                None => self.insert_child(node, token),
            };
        }
        self.nodes[node as usize].ends_here = Some(pattern_slot);
    }

    fn insert_child(&mut self, parent: u32, token: &[u8]) -> u32 {
        let child = to_slot(self.nodes.insert(Node::default()));
        let parent = &mut self.nodes[parent as usize];
        if token == ANY_TOKEN {
            parent.any = Some(child);
        } else {
            parent.literal.insert(token.into(), child);
        }
        child
    }

    /// Unthreads a stored wildcard pattern and prunes the nodes left empty, bottom-up.
    fn trie_remove(&mut self, pattern: &[u8]) {
        let mut path = mem::take(&mut self.scratch.path);
        path.clear();
        let mut node = self
            .root
            .expect("a stored wildcard pattern has a trie root");
        path.push(node);
        let mut ends_with_rest = false;
        for token in pattern.split(is_separator) {
            if token == REST_TOKEN {
                ends_with_rest = true;
                break;
            }
            node = self.nodes[node as usize]
                .child(token)
                .expect("a stored wildcard pattern has a trie path");
            path.push(node);
        }
        let end = &mut self.nodes[node as usize];
        if ends_with_rest {
            end.rest = None;
        } else {
            end.ends_here = None;
        }
        // Walking the path back up, `edges` yields the token of the edge into each node.
        let mut edges = pattern
            .rsplit(is_separator)
            .skip(usize::from(ends_with_rest));
        while let Some(node) = path.pop() {
            if !self.nodes[node as usize].is_empty() {
                break;
            }
            self.nodes.remove(node as usize);
            match path.last() {
                Some(&parent) => {
                    let token = edges.next().expect("one pattern token per trie edge");
                    self.nodes[parent as usize].unlink(token);
                }
                None => self.root = None,
            }
        }
        self.scratch.path = path;
    }

    /// Appends to `matched` the slot of every wildcard pattern matching `channel`, each once (a node is
    /// reached by one path only, so no node enters a frontier twice).
    fn match_wildcards(&mut self, channel: &[u8], matched: &mut Vec<u32>) {
        let Some(root) = self.root else {
            return;
        };
        let Scratch {
            frontier,
            next_frontier,
            ..
        } = &mut self.scratch;
        frontier.clear();
        frontier.push(root);
        for token in channel.split(is_separator) {
            next_frontier.clear();
            for &node in frontier.iter() {
                let node = &self.nodes[node as usize];
                // `>` needs at least one token at its position, and `token` is one.
                matched.extend(node.rest);
                next_frontier.extend(node.literal.get(token).copied());
                next_frontier.extend(node.any);
            }
            mem::swap(frontier, next_frontier);
            if frontier.is_empty() {
                return;
            }
        }
        matched.extend(
            frontier
                .iter()
                .filter_map(|&node| self.nodes[node as usize].ends_here),
        );
    }

    /// Steps (1) and (3) of a publish for one pattern: every non-grouped member not yet served or evicted
    /// in this publish gets a copy, or is evicted if it has no room.
    fn offer_plain(&mut self, pattern: u32, sink: &mut impl DeliverySink) -> u64 {
        let epoch = self.epoch;
        let mut copies = 0;
        for member in &self.patterns[pattern as usize].plain {
            let client = &mut self.clients[member.client as usize];
            if client.copied_in == epoch || client.evicted_in == epoch {
                continue;
            }
            if sink.has_room(client.id) {
                sink.deliver(client.id);
                client.copied_in = epoch;
                copies += 1;
            } else {
                sink.evict(client.id);
                client.evicted_in = epoch;
            }
        }
        copies
    }

    /// Steps (2) and (4) of a publish for one pattern: each of its queue groups delivers at most one copy.
    fn offer_groups(&mut self, pattern: u32, sink: &mut impl DeliverySink) -> u64 {
        let mut copies = 0;
        for &group in &self.patterns[pattern as usize].groups {
            let group = &mut self.groups[group as usize];
            copies += u64::from(offer_to_group(group, &mut self.clients, self.epoch, sink));
        }
        copies
    }

    fn members(&self, target: Target) -> &[Member] {
        match target {
            Target::Plain(pattern) => &self.patterns[pattern as usize].plain,
            Target::Group(group) => &self.groups[group as usize].members,
        }
    }

    /// The pattern slot stored where `pattern` ends in the trie (invariant checks only).
    fn trie_terminal(&self, pattern: &[u8]) -> Option<u32> {
        let mut node = &self.nodes[self.root? as usize];
        for token in pattern.split(is_separator) {
            if token == REST_TOKEN {
                return node.rest;
            }
            node = &self.nodes[node.child(token)? as usize];
        }
        node.ends_here
    }

    /// Counts the trie nodes reachable from the root and the pattern ends they hold, checking on the way
    /// that none is empty (invariant checks only).
    fn trie_census(&self) -> (usize, usize) {
        let (mut nodes, mut terminals) = (0, 0);
        let mut pending: Vec<u32> = self.root.into_iter().collect();
        while let Some(slot) = pending.pop() {
            let node = &self.nodes[slot as usize];
            assert!(!node.is_empty(), "empty trie node {slot} was not pruned");
            nodes += 1;
            terminals += usize::from(node.ends_here.is_some()) + usize::from(node.rest.is_some());
            pending.extend(node.literal.values().copied().chain(node.any));
        }
        (nodes, terminals)
    }
}

/// Offers one signal to a queue group (see [`SignalIndex::publish`]); true if a member took it.
fn offer_to_group(
    group: &mut QueueGroup,
    clients: &mut Slab<ClientEntry>,
    epoch: u64,
    sink: &mut impl DeliverySink,
) -> bool {
    let size = group.members.len();
    let start = (group.turn % size as u64) as usize;
    group.turn = group.turn.wrapping_add(1);
    let mut tried_first = None;
    for step in 0..size {
        let slot = group.members[(start + step) % size].client as usize;
        let client = &clients[slot];
        if client.evicted_in == epoch {
            continue;
        }
        if sink.has_room(client.id) {
            sink.deliver(client.id);
            return true;
        }
        tried_first.get_or_insert(slot);
    }
    if let Some(slot) = tried_first {
        let client = &mut clients[slot];
        sink.evict(client.id);
        client.evicted_in = epoch;
    }
    false
}

/// The `group_slots` key of queue group `name` under the pattern in `pattern_slot`, built in `buf`.
fn group_key<'a>(buf: &'a mut Vec<u8>, pattern_slot: u32, name: &[u8]) -> &'a [u8] {
    buf.clear();
    buf.extend_from_slice(&pattern_slot.to_le_bytes());
    buf.extend_from_slice(name);
    buf
}

/// Narrows a slab key to the `u32` the index stores (half the memory of `usize` in the per-subscription
/// records). Every slab entry costs well over 16 bytes, so 2^32 of them would need more than 64 GiB.
fn to_slot(key: usize) -> u32 {
    u32::try_from(key).expect("signal index tables stay below 2^32 entries")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

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
        fn listen_capped(
            &mut self,
            client: u32,
            pattern: &str,
            group: &str,
            cap: u64,
        ) -> ListenOutcome {
            let subs = self.handles.entry(client).or_default();
            let outcome =
                self.index
                    .listen(id(client), subs, pattern.as_bytes(), group.as_bytes(), cap);
            self.index.check_invariants();
            outcome
        }

        fn listen(&mut self, client: u32, pattern: &str, group: &str) -> ListenOutcome {
            self.listen_capped(client, pattern, group, 0)
        }

        fn subscribe(&mut self, client: u32, pattern: &str, group: &str) {
            assert_eq!(self.listen(client, pattern, group), ListenOutcome::Added);
        }

        fn unlisten(&mut self, client: u32, pattern: &str, group: &str) -> UnlistenOutcome {
            let subs = self.handles.entry(client).or_default();
            let outcome =
                self.index
                    .unlisten(id(client), subs, pattern.as_bytes(), group.as_bytes());
            self.index.check_invariants();
            outcome
        }

        fn remove_client(&mut self, client: u32) {
            let subs = self.handles.entry(client).or_default();
            self.index.remove_client(id(client), subs);
            assert!(subs.is_empty());
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

    /// Deterministic xorshift64* so the randomised tests are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }

        fn dotted(&mut self, tokens: &[&str]) -> String {
            let count = 1 + self.below(4);
            (0..count)
                .map(|_| self.pick(tokens))
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    const CHANNEL_TOKENS: &[&str] = &["", "a", "b", "ab"];
    const PATTERN_TOKENS: &[&str] = &["", "a", "b", "ab", "*", "*", ">", ">"];

    fn random_pattern(rng: &mut Rng) -> String {
        loop {
            let pattern = rng.dotted(PATTERN_TOKENS);
            if classify_pattern(pattern.as_bytes()).is_some() {
                return pattern;
            }
        }
    }

    #[test]
    fn index_agrees_with_the_reference_matcher() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200 {
            let mut harness = Harness::default();
            let patterns: Vec<String> = (0..12).map(|_| random_pattern(&mut rng)).collect();
            for (client, pattern) in patterns.iter().enumerate() {
                let outcome = harness.listen(client as u32, pattern, "");
                assert_eq!(outcome, ListenOutcome::Added);
            }
            for _ in 0..20 {
                let channel = rng.dotted(CHANNEL_TOKENS);
                let expected: Vec<u32> = (0..patterns.len() as u32)
                    .filter(|&c| {
                        pattern_matches(patterns[c as usize].as_bytes(), channel.as_bytes())
                    })
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
        let mut rng = Rng(0x0123_4567_89ab_cdef);
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
                    let (pattern, group) = match held.get(rng.below(held.len() + 1)) {
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
                _ => check_publish(&mut harness, &model, &rng.dotted(CHANNEL_TOKENS)),
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
    fn check_publish(
        harness: &mut Harness,
        model: &BTreeSet<(u32, String, String)>,
        channel: &str,
    ) {
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
            ListenOutcome::LimitReached
        );
        assert_eq!(
            harness.listen_capped(1, "a", "h", 2),
            ListenOutcome::LimitReached
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
            ListenOutcome::LimitReached
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
            index.listen(old, &mut old_subs, b"x", b"", 0),
            ListenOutcome::Added
        );
        index.remove_client(old, &mut old_subs);
        assert_eq!(
            index.listen(new, &mut new_subs, b"x", b"", 0),
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
        let expected =
            BTreeSet::from([("a.b".into(), None, 2), ("a.b".into(), Some("w".into()), 2)]);
        assert_eq!(harness.stats(), expected);
    }

    #[test]
    fn a_channel_spelled_like_a_wildcard_pattern_is_not_an_exact_match() {
        let mut harness = Harness::default();
        harness.subscribe(1, "a.*", "");
        let literal_subscribers: HashSet<u32> =
            harness.publish("a.x").delivered.into_iter().collect();
        assert_eq!(literal_subscribers, HashSet::from([1]));
        // The caller rejects such channels; if one slipped through it would still be delivered once.
        assert_eq!(harness.publish("a.*").count, 1);
    }
}
