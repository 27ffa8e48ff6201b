//! The signal subscription index: which clients listen to which channels and patterns, alone or in
//! queue groups, and which of them a published signal is offered to, in what order (spec §13).
//!
//! It owns pattern syntax ([`classify_pattern`]), the subscription tables, queue-group round robin and
//! the per-client subscription lists. It must not do I/O, read the clock, build push lines or judge
//! output buffers: a publish hands every copy to a [`DeliverySink`], which owns the connections, says
//! who has room, and disconnects slow consumers afterwards (the index only promises not to offer an
//! evicted client anything more in the same publish).
//!
//! Every operation whose cost grows with client input is cut into *units* the caller grants, so
//! the event loop can spread it over turns:
//! - a publish ([`SignalIndex::begin_publish`], [`SignalIndex::continue_publish`], `publish.rs`) finds the matching
//!   wildcard patterns with `Wildcards` (`wildcards.rs`) and offers copies member by member. While it is in progress the
//!   index must not change (the engine queues other signal operations behind it), so the result is
//!   exactly that of one uninterrupted publish;
//! - a departing client ([`SignalIndex::remove_client`]) leaves its queue groups at once, O(log n) each,
//!   since round robin counts members; it is skipped by every later publish, and its other entries are
//!   reclaimed by [`SignalIndex::reclaim`].
//!
//! Layout:
//! - every subscribed pattern, literal or wildcard, has one entry found by its bytes. A channel never
//!   contains `*` or `>`, so looking the channel up there finds exactly its literal subscribers;
//! - wildcard patterns are also filed in `Wildcards` (`wildcards.rs`);
//! - a pattern entry holds its non-grouped members and its queue groups, each group a `JoinOrder` (`order.rs`) with a
//!   round-robin turn counter;
//! - each client with subscriptions has an entry, reached in O(1) through the [`ClientSubscriptions`]
//!   handle the engine keeps for it. The entry lists the client's subscriptions and carries the per-publish
//!   stamps that de-duplicate non-grouped copies and remember evictions, so publishing needs no set;
//! - empty client entries, groups and patterns are removed as soon as they empty (a departed client's
//!   once reclaimed), so [`SignalIndex::is_empty`] holds again once every client has left.

mod invariants;
mod order;
mod pattern;
mod publish;
#[cfg(test)]
mod tests;
mod wildcards;

use std::collections::VecDeque;
use std::mem;

use self::order::JoinOrder;
pub use self::pattern::{
    PatternKind, classify_pattern, pattern_matches, pattern_matches_with_rule,
};
use self::publish::Publishing;
use self::wildcards::{Anchor, Wildcards};
use super::ClientId;
use crate::protocol::events::is_reserved_channel;
use crate::slots::Slots;
use crate::table::IncrementalMap;

/// Caps on subscriptions, each 0 for unlimited (spec §13.7 and this server's own limits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionLimits {
    /// Distinct (pattern, group) pairs per client (`--max-subscriptions`).
    pub per_client: u64,
    /// Bytes of patterns and group names per client (`--max-subscription-bytes`).
    pub bytes_per_client: u64,
    /// Subscriptions of all clients together (`--max-total-subscriptions`).
    pub total: u64,
}

impl SubscriptionLimits {
    /// Whether a client holding `held` subscriptions of `bytes` bytes in all, in an index holding
    /// `total`, may add one of `more` bytes: `Err` names the first cap it would pass.
    fn admit(
        &self,
        held: usize,
        bytes: usize,
        more: usize,
        total: usize,
    ) -> Result<(), SubscriptionLimit> {
        let within = |used: usize, cap: u64| cap == 0 || (used as u64) < cap;
        if !within(held, self.per_client) {
            Err(SubscriptionLimit::PerClient)
        } else if self.bytes_per_client != 0 && (bytes + more) as u64 > self.bytes_per_client {
            Err(SubscriptionLimit::BytesPerClient)
        } else if !within(total, self.total) {
            Err(SubscriptionLimit::Total)
        } else {
            Ok(())
        }
    }
}

/// Which [`SubscriptionLimits`] cap refused a `listen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionLimit {
    /// `--max-subscriptions`: subscriptions per connection.
    PerClient,
    /// `--max-subscription-bytes`: pattern and group bytes per connection.
    BytesPerClient,
    /// `--max-total-subscriptions`: subscriptions of all connections together.
    Total,
}

impl SubscriptionLimit {
    /// The flag that sets the cap, for the operator reading why a `listen` was refused.
    pub fn flag(self) -> &'static str {
        match self {
            SubscriptionLimit::PerClient => "--max-subscriptions",
            SubscriptionLimit::BytesPerClient => "--max-subscription-bytes",
            SubscriptionLimit::Total => "--max-total-subscriptions",
        }
    }
}

/// Result of [`SignalIndex::listen`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenOutcome {
    /// A new (pattern, group) subscription was recorded.
    Added,
    /// The client already held this (pattern, group); nothing changed (`ok` even at the cap, §13.7).
    AlreadySubscribed,
    /// A [`SubscriptionLimits`] cap, the one named, would be passed; nothing changed.
    LimitReached(SubscriptionLimit),
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

/// Where a publish sends the copies of one signal; implemented by the server side, which owns the
/// connections and their output buffers.
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
    pattern_slots: IncrementalMap<Box<[u8]>, u32>,
    patterns: Slots<PatternEntry>,
    /// Queue groups by [`group_key`]; the pattern slot in the key keeps equal names under different
    /// patterns apart (they are different groups, §13.4).
    group_slots: IncrementalMap<Box<[u8]>, u32>,
    groups: Slots<QueueGroup>,
    /// (client slot, target) to subscription slot: `listen` and `unlisten` find an existing subscription in
    /// O(1) instead of scanning a client's or a target's list, either of which can be long.
    memberships: IncrementalMap<(u32, Target), u32>,
    subscriptions: Slots<Subscription>,
    clients: Slots<ClientEntry>,
    wildcards: Wildcards,
    /// Entries of departed clients whose subscriptions [`SignalIndex::reclaim`] has still to remove,
    /// oldest first.
    departing: VecDeque<u32>,
    /// Subscriptions of departed clients not yet reclaimed.
    departed_subscriptions: usize,
    /// Number of the current (or last) publish. Client entries record it instead of a per-publish set, so
    /// nothing needs clearing between publishes.
    epoch: u64,
    /// The publish in progress, if any.
    publishing: Option<Publishing>,
    /// A [`group_key`] being looked up.
    group_key: Vec<u8>,
    /// Buffers of the last publish, kept for the next one.
    spare: Publishing,
    /// Whether the `$` rule is in force (lock events on): see `pattern.rs`.
    dollar_rule: bool,
    /// Under the `$` rule, the pattern entries whose pattern starts with `$` (`$lock.>`): the
    /// only ones a reserved channel can reach, so none means a lock event need not even be
    /// written. Always 0 without the rule.
    reserved_patterns: usize,
}

/// A subscribed pattern and everyone subscribed to it. It exists while `plain` or `groups` is non-empty.
#[derive(Debug)]
struct PatternEntry {
    pattern: Box<[u8]>,
    kind: PatternKind,
    /// Where `Wildcards` (`wildcards.rs`) files it (wildcard patterns only).
    anchor: Option<Anchor>,
    /// Non-grouped subscribers, in no particular order (swap-removed).
    plain: Vec<Member>,
    /// How many of `plain` are departed clients not yet reclaimed.
    departed_plain: u32,
    /// Slots in `SignalIndex::groups` of this pattern's queue groups, in no particular order.
    groups: Vec<u32>,
}

/// A queue group: a (pattern, name) pair whose members share each signal, one copy per signal.
#[derive(Debug)]
struct QueueGroup {
    /// Slot of the pattern entry this group hangs from.
    pattern: u32,
    name: Box<[u8]>,
    /// Current members in join order, which round robin follows.
    members: JoinOrder<Member>,
    /// Subscriptions attached to the group: its members plus departed members not yet reclaimed.
    /// The group exists while this is non-zero.
    attached: u32,
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
    /// Position in the target's member list (a `JoinOrder` (`order.rs`) slot for a group).
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
    /// Bytes of the patterns and group names of its subscriptions.
    bytes: usize,
    /// Epoch of the last publish that gave this client its non-grouped copy (the de-duplication stamp).
    copied_in: u64,
    /// Epoch of the last publish in which this client was evicted.
    evicted_in: u64,
    /// The client has left: it has no group membership any more, publishes skip it, and
    /// [`SignalIndex::reclaim`] removes what is left.
    departed: bool,
}

impl SignalIndex {
    /// An empty index.
    pub fn new() -> SignalIndex {
        SignalIndex::default()
    }

    /// An empty index with the `$` rule in force, as the server runs it with lock events on: a
    /// pattern whose first token is a wildcard never matches a channel whose first token starts
    /// with `$`.
    pub fn with_dollar_rule() -> SignalIndex {
        SignalIndex {
            dollar_rule: true,
            ..SignalIndex::default()
        }
    }

    /// Whether the `$` rule is in force and some pattern could match a reserved channel (one
    /// starting with `$`): O(1), so a lock event can be skipped before it is built when nobody
    /// could receive it. A departed client's patterns count until they are reclaimed.
    #[inline]
    pub fn has_reserved_patterns(&self) -> bool {
        self.reserved_patterns != 0
    }

    /// Whether `pattern` counts in `reserved_patterns`.
    fn counts_as_reserved(&self, pattern: &[u8]) -> bool {
        self.dollar_rule && is_reserved_channel(pattern)
    }

    /// Subscribes `client` to `pattern` as a member of `group` (empty = non-grouped), spec §7.10 and §13.3.
    ///
    /// `limits` caps the client's distinct (pattern, group) pairs, their bytes, and all subscriptions
    /// together; re-listening to a pair the client already holds is [`ListenOutcome::AlreadySubscribed`],
    /// even at a cap. `subs` must be `client`'s own handle. A new queue-group member joins at the end of the
    /// group's order.
    pub fn listen(
        &mut self,
        client: ClientId,
        subs: &mut ClientSubscriptions,
        pattern: &[u8],
        group: &[u8],
        limits: &SubscriptionLimits,
    ) -> ListenOutcome {
        debug_assert!(!self.is_publishing(), "listen during a publish");
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
        let bytes = subs
            .slot
            .map_or(0, |slot| self.clients[slot as usize].bytes);
        let more = pattern.len() + group.len();
        if let Err(limit) = limits.admit(self.subscription_count(subs), bytes, more, self.len()) {
            return ListenOutcome::LimitReached(limit);
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
        self.clients[slot as usize].bytes += more;
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
        debug_assert!(!self.is_publishing(), "unlisten during a publish");
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
        self.withdraw(subscription);
        self.detach(subscription);
        if self.clients[slot as usize].subscriptions.is_empty() {
            self.clients.remove(slot as usize);
            subs.slot = None;
        }
        UnlistenOutcome::Removed
    }

    /// Takes `client` out of every subscription (disconnect cleanup, spec §11 and §13.9): from now on no
    /// publish offers it anything and no queue group counts it. Costs O(its subscriptions), plus
    /// O(log group size) per group it leaves; the removal of its entries is left to
    /// [`SignalIndex::reclaim`]. `subs` is left empty.
    pub fn remove_client(&mut self, client: ClientId, subs: &mut ClientSubscriptions) {
        debug_assert!(!self.is_publishing(), "a client left during a publish");
        let Some(slot) = self.owned_slot(client, subs) else {
            return;
        };
        subs.slot = None;
        let mut subscriptions = mem::take(&mut self.clients[slot as usize].subscriptions);
        for &subscription in &subscriptions {
            self.withdraw(subscription);
        }
        self.departed_subscriptions += subscriptions.len();
        let entry = &mut self.clients[slot as usize];
        mem::swap(&mut entry.subscriptions, &mut subscriptions);
        entry.departed = true;
        self.departing.push_back(slot);
    }

    /// Removes the entries of departed clients, a unit per subscription, until `units` runs out.
    /// Returns `true` when nothing is left to reclaim. Must not run during a publish.
    pub fn reclaim(&mut self, units: &mut u64) -> bool {
        debug_assert!(!self.is_publishing(), "reclaim during a publish");
        while let Some(&slot) = self.departing.front() {
            while let Some(&subscription) = self.clients[slot as usize].subscriptions.last() {
                if *units == 0 {
                    return false;
                }
                *units -= 1;
                self.departed_subscriptions -= 1;
                self.detach(subscription);
            }
            self.clients.remove(slot as usize);
            self.departing.pop_front();
        }
        true
    }

    /// Whether departed clients' entries wait for [`SignalIndex::reclaim`].
    pub fn has_departed(&self) -> bool {
        !self.departing.is_empty()
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
                let Some(entry) = self.patterns.get(cursor.next - 1) else {
                    continue;
                };
                let listeners = entry.plain.len() as u64 - u64::from(entry.departed_plain);
                if listeners > 0 {
                    visit(ChannelStat {
                        pattern: &entry.pattern,
                        group: None,
                        listeners,
                    });
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
            match self.groups.get(cursor.next - 1) {
                Some(group) if !group.members.is_empty() => visit(ChannelStat {
                    pattern: &self.patterns[group.pattern as usize].pattern,
                    group: Some(&group.name),
                    listeners: group.members.len() as u64,
                }),
                _ => {}
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
        self.subscriptions.len() - self.departed_subscriptions
    }

    /// True when the index holds no subscription and no entry of any kind (clients, patterns, groups,
    /// filed wildcards, map entries); the leak check of the fuzz targets. Buffer capacity may remain.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
            && self.memberships.is_empty()
            && self.clients.is_empty()
            && self.patterns.is_empty()
            && self.pattern_slots.is_empty()
            && self.groups.is_empty()
            && self.group_slots.is_empty()
            && self.wildcards.is_empty()
            && self.departing.is_empty()
    }

    /// Whether [`SignalIndex::trim`] would give memory back: one of the slabs of subscriptions,
    /// clients, patterns or groups held many more entries than it does now.
    pub fn wants_trim(&self) -> bool {
        self.subscriptions.wants_trim()
            || self.clients.wants_trim()
            || self.patterns.wants_trim()
            || self.groups.wants_trim()
    }

    /// Drops up to `budget` vacant slab entries, giving their memory back; returns how many.
    pub fn trim(&mut self, budget: usize) -> usize {
        let mut left = budget;
        left -= self.subscriptions.trim(left);
        left -= self.clients.trim(left);
        left -= self.patterns.trim(left);
        left -= self.groups.trim(left);
        budget - left
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
            bytes: 0,
            copied_in: 0,
            evicted_in: 0,
            departed: false,
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
            let key = group_key(&mut self.group_key, pattern_slot, group);
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
            members: JoinOrder::new(),
            attached: 0,
            turn: 0,
            in_pattern: to_slot(entry.groups.len()),
        }));
        entry.groups.push(slot);
        let key = group_key(&mut self.group_key, pattern_slot, group);
        self.group_slots.insert(key.into(), slot);
        Target::Group(slot)
    }

    fn insert_pattern(&mut self, pattern: &[u8], kind: PatternKind) -> u32 {
        let slot = to_slot(self.patterns.vacant_key());
        let anchor = (kind == PatternKind::Wildcard).then(|| self.wildcards.insert(pattern, slot));
        self.patterns.insert(PatternEntry {
            pattern: pattern.into(),
            kind,
            anchor,
            plain: Vec::new(),
            departed_plain: 0,
            groups: Vec::new(),
        });
        self.pattern_slots.insert(pattern.into(), slot);
        self.reserved_patterns += usize::from(self.counts_as_reserved(pattern));
        slot
    }

    /// Records a new subscription of the client in `client_slot` to `target`.
    fn attach(&mut self, client_slot: u32, target: Target) {
        let slot = to_slot(self.subscriptions.vacant_key());
        let member = Member {
            client: client_slot,
            subscription: slot,
        };
        let in_target = match target {
            Target::Plain(pattern) => {
                let plain = &mut self.patterns[pattern as usize].plain;
                plain.push(member);
                to_slot(plain.len() - 1)
            }
            Target::Group(group) => {
                let group = &mut self.groups[group as usize];
                group.attached += 1;
                group.members.push(member)
            }
        };
        let client = &mut self.clients[client_slot as usize];
        self.subscriptions.insert(Subscription {
            client: client_slot,
            target,
            in_client: to_slot(client.subscriptions.len()),
            in_target,
        });
        client.subscriptions.push(slot);
        self.memberships.insert((client_slot, target), slot);
    }

    /// Takes a live client's subscription out of what publishes and `stats` see: out of its group's
    /// round robin (O(log group size)), or out of its pattern's count of non-grouped listeners. The
    /// subscription itself stays until [`SignalIndex::detach`].
    fn withdraw(&mut self, slot: u32) {
        let subscription = self.subscriptions[slot as usize];
        let group = match subscription.target {
            Target::Plain(pattern) => {
                self.patterns[pattern as usize].departed_plain += 1;
                return;
            }
            Target::Group(group) => &mut self.groups[group as usize],
        };
        group.members.remove(subscription.in_target);
        if group.members.is_empty() {
            // A group nobody is in starts afresh, as if it had been dropped.
            group.turn = 0;
        }
        let subscriptions = &mut self.subscriptions;
        group.members.compact_if_sparse(|member, moved_to| {
            subscriptions[member.subscription as usize].in_target = moved_to;
        });
    }

    /// Removes a subscription from every table, dropping its group and pattern when they empty. It must
    /// have been withdrawn already ([`SignalIndex::withdraw`]).
    fn detach(&mut self, slot: u32) {
        let removed = self.subscriptions.remove(slot as usize);
        let bytes = self.target_bytes(removed.target);
        self.clients[removed.client as usize].bytes -= bytes;
        self.memberships.remove(&(removed.client, removed.target));
        let subscriptions = &mut self.clients[removed.client as usize].subscriptions;
        let at = removed.in_client as usize;
        subscriptions.swap_remove(at);
        if let Some(&moved) = subscriptions.get(at) {
            self.subscriptions[moved as usize].in_client = removed.in_client;
        }
        match removed.target {
            Target::Plain(pattern) => {
                let at = removed.in_target as usize;
                let entry = &mut self.patterns[pattern as usize];
                entry.departed_plain -= 1;
                let plain = &mut entry.plain;
                plain.swap_remove(at);
                if let Some(moved) = plain.get(at) {
                    self.subscriptions[moved.subscription as usize].in_target = removed.in_target;
                }
                self.drop_pattern_if_unused(pattern);
            }
            Target::Group(group) => {
                let entry = &mut self.groups[group as usize];
                entry.attached -= 1;
                if entry.attached == 0 {
                    self.drop_group(group);
                }
            }
        }
    }

    /// Bytes a subscription to `target` counts against its client: pattern plus group name.
    fn target_bytes(&self, target: Target) -> usize {
        match target {
            Target::Plain(pattern) => self.patterns[pattern as usize].pattern.len(),
            Target::Group(group) => {
                let group = &self.groups[group as usize];
                self.patterns[group.pattern as usize].pattern.len() + group.name.len()
            }
        }
    }

    fn drop_group(&mut self, slot: u32) {
        let group = self.groups.remove(slot as usize);
        let entry = &mut self.patterns[group.pattern as usize];
        let at = group.in_pattern as usize;
        entry.groups.swap_remove(at);
        if let Some(&moved) = entry.groups.get(at) {
            self.groups[moved as usize].in_pattern = group.in_pattern;
        }
        let key = group_key(&mut self.group_key, group.pattern, &group.name);
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
        self.reserved_patterns -= usize::from(self.counts_as_reserved(&entry.pattern));
        if let Some(anchor) = entry.anchor {
            if let Some(moved) = self.wildcards.remove(&entry.pattern, anchor) {
                let moved = &mut self.patterns[moved as usize];
                moved.anchor = moved.anchor.map(|own| own.moved_to(anchor));
            }
        }
    }
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
