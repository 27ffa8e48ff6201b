//! The shadow model of the `engine` target: what the engine's clients have been told, arranged to
//! predict what they may be told next (see the parent module for what it can and cannot see).

use std::collections::BTreeMap;

use super::ops::SLOTS;
use crate::clock::Millis;
use crate::engine::ClientId;
use crate::protocol::Namespace;
use crate::token::{LeaseToken, TOKEN_LEN};

pub(super) type Resource = (Namespace, &'static [u8]);
pub(super) type TokenText = [u8; TOKEN_LEN];

/// The connection number a client is registered with, unique per (slot, generation).
pub(super) fn serial_of(client: ClientId) -> u64 {
    u64::from(client.generation) * SLOTS as u64 + u64::from(client.index)
}

pub(super) fn text_of(token: LeaseToken) -> TokenText {
    let mut text = [0; TOKEN_LEN];
    token.encode(&mut text);
    text
}

/// When a lease ends, as far as the model knows: not before `lo`, not after `hi`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expiry {
    pub(super) lo: Millis,
    pub(super) hi: Millis,
}

impl Expiry {
    pub(super) fn exact(at: Millis) -> Expiry {
        Expiry { lo: at, hi: at }
    }
}

/// A lease the model knows exists (or existed until some point inside its expiry interval).
#[derive(Debug)]
pub(super) struct Holder {
    pub(super) resource: Resource,
    /// `None` once the owner left with auto-release off.
    pub(super) owner: Option<ClientId>,
    /// The owner's connection number, which `stats` shows even after it left.
    pub(super) serial: u64,
    pub(super) limit: u64,
    pub(super) lease_s: u64,
    pub(super) expiry: Expiry,
    /// `None` for a silent two-phase grant whose token nobody has seen yet.
    pub(super) token: Option<TokenText>,
    /// The owner's two-phase state for the resource refers to this lease (not collected by `w`).
    pub(super) two_phase: bool,
    /// False for a lease that may never have been granted: a two-phase waiter whose owner left
    /// (auto-release off) may have been granted silently first, leaving an orphaned lease.
    pub(super) certain: bool,
}

impl Holder {
    /// A lease the engine has just granted to `client` (and answered with `token`).
    pub(super) fn granted(
        resource: Resource,
        client: ClientId,
        limit: u64,
        lease_s: u64,
        now: Millis,
        token: LeaseToken,
        two_phase: bool,
    ) -> Holder {
        Holder {
            resource,
            owner: Some(client),
            serial: serial_of(client),
            limit,
            lease_s,
            expiry: Expiry::exact(now.plus_secs(lease_s)),
            token: Some(text_of(token)),
            two_phase,
            certain: true,
        }
    }

    /// The lease `waiter` of `resource` may have been granted silently (a two-phase waiter not
    /// blocked on): some time between joining the queue and `now`, with a token nobody saw.
    pub(super) fn silent_grant(resource: Resource, waiter: &Waiter, now: Millis) -> Holder {
        Holder {
            resource,
            owner: Some(waiter.client),
            serial: serial_of(waiter.client),
            limit: waiter.limit,
            lease_s: waiter.lease_s,
            expiry: Expiry {
                lo: waiter.since.plus_secs(waiter.lease_s),
                hi: now.plus_secs(waiter.lease_s),
            },
            token: None,
            two_phase: true,
            certain: !waiter.maybe_gone,
        }
    }

    /// Whether the engine certainly holds this lease at `now`.
    pub(super) fn certainly_live(&self, now: Millis) -> bool {
        self.certain && self.expiry.lo > now
    }
}

/// A queued request, in the order the engine must grant it.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) client: ClientId,
    /// Queued by `e`/`se`.
    pub(super) two_phase: bool,
    /// A request (`l`, `sl`, `w`, `sw`) is blocked on it and will be answered.
    pub(super) blocked: bool,
    pub(super) lease_s: u64,
    pub(super) limit: u64,
    /// When it joined the queue; a silent grant cannot be earlier.
    pub(super) since: Millis,
    /// When its blocked request times out.
    pub(super) deadline: Millis,
    /// An admin evicted every holder of the resource while this two-phase waiter was queued
    /// unblocked: it may have been granted silently before, and then evicted, so it may be
    /// gone. Nothing certain is concluded from it any more.
    pub(super) maybe_gone: bool,
}

impl Waiter {
    /// Whether the engine certainly still has this entry, queued or granted silently: blocked
    /// on, or a two-phase one whose silent lease (if any) cannot have ended yet.
    pub(super) fn certainly_exists(&self, now: Millis) -> bool {
        self.blocked || (!self.maybe_gone && self.since.plus_secs(self.lease_s) > now)
    }
}

/// A client's request waiting in the engine.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pending {
    /// A blocking acquire or wait on this resource.
    Wait(Resource),
    /// A `listen` or `unlisten` queued behind a publish that spans turns; `valid` tells whether
    /// its pattern is.
    Subscription { valid: bool },
    /// A `signal` queued or in progress.
    Publish,
}

/// What the engine's clients have been told, arranged to predict what they may be told next.
#[derive(Default)]
pub(super) struct Model {
    pub(super) holders: Vec<Holder>,
    pub(super) queues: BTreeMap<Resource, Vec<Waiter>>,
    /// Every token seen in a reply.
    pub(super) seen: Vec<TokenText>,
}

impl Model {
    pub(super) fn queue(&mut self, resource: Resource) -> &mut Vec<Waiter> {
        self.queues.entry(resource).or_default()
    }

    /// The position of the first waiter on `resource` matching `which`.
    pub(super) fn position(
        &self,
        resource: Resource,
        which: impl Fn(&Waiter) -> bool,
    ) -> Option<usize> {
        self.queues.get(&resource)?.iter().position(which)
    }

    /// A new lease was seen granted. Tokens are never issued twice.
    pub(super) fn add_holder(&mut self, holder: Holder) {
        if let Some(token) = holder.token {
            assert!(!self.seen.contains(&token), "token issued twice");
            self.seen.push(token);
        }
        self.holders.push(holder);
    }

    /// The waiter at `position` of `resource`'s queue was granted: everything ahead of it was
    /// granted before it, which can only have happened silently, to two-phase waiters on which no
    /// request waits. Those become holders with a lease between their enqueue and now.
    pub(super) fn granted_up_to(&mut self, resource: Resource, position: usize, now: Millis) {
        let ahead: Vec<Waiter> = self.queue(resource).drain(..position).collect();
        for waiter in ahead {
            assert!(
                waiter.two_phase && !waiter.blocked,
                "FIFO violated on {resource:?}: granted past the waiting request of {:?}",
                waiter.client
            );
            self.holders
                .push(Holder::silent_grant(resource, &waiter, now));
        }
    }

    /// The resource gave a lease without queueing: its queue must have been empty.
    pub(super) fn granted_at_once(&mut self, resource: Resource, now: Millis) {
        let len = self.queue(resource).len();
        self.granted_up_to(resource, len, now);
    }

    pub(super) fn holder_by_token(&self, token: &[u8]) -> Option<usize> {
        self.holders
            .iter()
            .position(|h| h.token.is_some_and(|t| t == token))
    }

    /// The two-phase lease of `client` on `resource`, if the model has one.
    pub(super) fn two_phase_holder(&self, client: ClientId, resource: Resource) -> Option<usize> {
        self.holders
            .iter()
            .position(|h| h.two_phase && h.owner == Some(client) && h.resource == resource)
    }

    /// Whether the engine certainly had free capacity and an empty queue for a request with
    /// `limit` at `now`, after evicting expired holders.
    pub(super) fn certainly_free(&self, resource: Resource, limit: u64, now: Millis) -> bool {
        let queued = self.queues.get(&resource).is_some_and(|q| !q.is_empty());
        let maybe_held = self
            .holders
            .iter()
            .filter(|h| h.resource == resource && h.expiry.hi > now)
            .count() as u64;
        !queued && maybe_held < limit
    }

    /// The limit of `resource` if it certainly exists: someone waits on it or certainly holds it.
    pub(super) fn certain_limit(&self, resource: Resource, now: Millis) -> Option<u64> {
        // An unblocked two-phase waiter may have been granted silently, but then its lease
        // runs at least until `since + lease` (unless an eviction may have ended it).
        let waiting = self
            .queues
            .get(&resource)
            .into_iter()
            .flatten()
            .find(|w| w.certainly_exists(now));
        let holding = self
            .holders
            .iter()
            .find(|h| h.resource == resource && h.certainly_live(now));
        waiting.map(|w| w.limit).or(holding.map(|h| h.limit))
    }

    /// The waiters on `key` (both namespaces) that certainly wait, and those that may have been
    /// granted silently (unblocked two-phase waiters).
    pub(super) fn queued_on(&self, key: &[u8]) -> (u64, u64) {
        let waiting = [Namespace::Lock, Namespace::Semaphore]
            .iter()
            .filter_map(|&ns| self.queues.get(&(ns, key)))
            .flatten();
        waiting.fold((0, 0), |(blocked, undecided), w| {
            if w.blocked {
                (blocked + 1, undecided)
            } else {
                (blocked, undecided + 1)
            }
        })
    }

    /// How many leases on `resource` the engine may hold at `now`: at least the certainly live
    /// ones; at most every one the model has not forgotten (with `ended`, also those that have
    /// certainly ended but whose timer may not have run) plus every unblocked two-phase waiter
    /// (which may have been granted silently).
    pub(super) fn resource_holder_bounds(
        &self,
        resource: Resource,
        now: Millis,
        ended: bool,
    ) -> (u64, u64) {
        let ours = || self.holders.iter().filter(|h| h.resource == resource);
        let live = ours().filter(|h| h.certainly_live(now)).count() as u64;
        let maybe = ours().filter(|h| ended || h.expiry.hi > now).count() as u64;
        let undecided = self
            .queues
            .get(&resource)
            .into_iter()
            .flatten()
            .filter(|w| !w.blocked)
            .count() as u64;
        (live, maybe + undecided)
    }

    /// How many leases on `key` (both namespaces) the engine may hold: at least the certainly
    /// live ones, at most every one not known to be gone plus every silent grant not inferred.
    pub(super) fn holder_bounds(&self, key: &[u8], now: Millis) -> (u64, u64) {
        let ours = || self.holders.iter().filter(|h| h.resource.1 == key);
        let live = ours().filter(|h| h.certainly_live(now)).count() as u64;
        let (_, undecided) = self.queued_on(key);
        (live, ours().count() as u64 + undecided)
    }

    pub(super) fn waiter_bounds(&self, key: &[u8]) -> (u64, u64) {
        let (blocked, undecided) = self.queued_on(key);
        (blocked, blocked + undecided)
    }

    /// `(owner serial, seconds left)` of each limit-1 lease on `key` that is certainly live and
    /// whose end is known exactly: it is the only holder of its resource, so `stats` lists it.
    pub(super) fn certain_lock_holders(&self, key: &[u8], now: Millis) -> Vec<(u64, f64)> {
        self.holders
            .iter()
            .filter(|h| h.resource.1 == key && h.limit == 1)
            .filter(|h| h.expiry.lo == h.expiry.hi && h.certainly_live(now))
            .map(|h| (h.serial, h.expiry.lo.secs_since(now)))
            .collect()
    }

    /// Forgets leases that have certainly ended: after the engine has handled every timer due at
    /// `now`, no lease ending at or before `now` is left.
    pub(super) fn sweep(&mut self, now: Millis) {
        self.holders.retain(|h| h.expiry.hi > now);
    }

    /// At most `limit` certain holders per resource, all created with the same limit.
    pub(super) fn check_capacity(&self, now: Millis) {
        let mut per_resource: BTreeMap<Resource, (u64, u64)> = BTreeMap::new();
        for holder in self.holders.iter().filter(|h| h.certainly_live(now)) {
            let (count, limit) = per_resource
                .entry(holder.resource)
                .or_insert((0, holder.limit));
            assert_eq!(*limit, holder.limit, "two limits on {:?}", holder.resource);
            *count += 1;
            assert!(
                *count <= *limit,
                "{count} holders of {:?} with limit {limit}",
                holder.resource
            );
        }
    }
}

/// What a `stats` snapshot says about one key, for both namespaces together.
#[derive(Debug, Default)]
pub(super) struct KeyStats {
    pub(super) holders: u64,
    pub(super) waiters: u64,
    /// Limits of the semaphores listed (limit 1 ones are listed as locks).
    pub(super) semaphore_limits: Vec<u64>,
    /// `(owner_conn_id, lease_expires_in_s)` of the limit-1 resources listed.
    pub(super) locks: Vec<(u64, f64)>,
}

impl KeyStats {
    pub(super) fn read(stats: &serde_json::Value, key: &[u8]) -> KeyStats {
        let name = std::str::from_utf8(key).expect("vocabulary keys are ASCII");
        let entries = |section: &str| {
            let all = stats[section]
                .as_array()
                .unwrap_or_else(|| panic!("stats without {section}"));
            all.iter()
                .filter(move |e| e["key"] == name)
                .collect::<Vec<_>>()
        };
        let field = |entry: &serde_json::Value, name: &str| {
            entry[name]
                .as_u64()
                .unwrap_or_else(|| panic!("stats entry without {name}"))
        };
        let mut shown = KeyStats::default();
        for entry in entries("locks") {
            shown.holders += 1;
            shown.waiters += field(entry, "waiters");
            let expires_in = entry["lease_expires_in_s"]
                .as_f64()
                .expect("lock entry without lease_expires_in_s");
            shown
                .locks
                .push((field(entry, "owner_conn_id"), expires_in));
        }
        for entry in entries("semaphores") {
            shown.holders += field(entry, "holders");
            shown.waiters += field(entry, "waiters");
            shown.semaphore_limits.push(field(entry, "limit"));
        }
        shown
    }
}
