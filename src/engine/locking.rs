//! Locks and semaphores: acquire, release, renew, two-phase enqueue/wait, FIFO granting, lease
//! expiry, wait timeouts and disconnect cleanup (spec §7.1-7.6, §8, §9, §11).
//!
//! A lock is a resource of capacity 1 in its own namespace; everything below treats both kinds
//! alike. The invariant every operation preserves: a resource with waiters has no free capacity
//! (freed capacity is granted to the head of the queue at once).

use super::keyspace::KeyError;
use super::list::{Link, List};
use super::metrics::LeaseEnd;
use super::{ClientId, Due, Engine, Lease, LockDelay, Outbox, Outcome, Owner, TwoPhase, Waiter};
use crate::clock::Millis;
use crate::protocol::events::LockEvent;
use crate::protocol::request::{Acquire, Enqueue, Release, Renew, Wait};
use crate::protocol::{Namespace, Response};
use crate::timer::TimerId;
use crate::token::LeaseToken;

fn holder_link(lease: &mut Lease) -> &mut Link {
    &mut lease.holder_link
}

/// The link of a lease in its owner's lease list, or in the release queue once its owner left.
pub(super) fn owner_link(lease: &mut Lease) -> &mut Link {
    &mut lease.owner_link
}

fn queue_link(waiter: &mut Waiter) -> &mut Link {
    &mut waiter.queue_link
}

fn client_link(waiter: &mut Waiter) -> &mut Link {
    &mut waiter.client_link
}

fn key_error_response(error: KeyError) -> Response {
    match error {
        KeyError::MaxLocks => Response::ErrorMaxLocks,
        KeyError::LimitMismatch => Response::ErrorLimitMismatch,
    }
}

/// How a new waiter will be answered.
#[derive(Clone, Copy)]
enum WaitMode {
    /// `l`/`sl`: the request blocks until granted or timed out.
    Blocking { deadline: Millis },
    /// `e`/`se`: answered `queued` now; a later `w`/`sw` collects the grant.
    TwoPhase,
}

impl Engine {
    /// `l` / `sl` (spec §8.3).
    pub(super) fn acquire(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Acquire<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Acquire {
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
        } = cmd;
        let lease_s = lease_s.unwrap_or(self.config.default_lease_s);
        let resource = match self.open_resource(now, ns, key, limit, out) {
            Ok(resource) => resource,
            Err(response) => return self.answer(client, response, out),
        };
        let response = if self.can_grant_now(resource) {
            let lease = self.new_lease(now, resource, client, lease_s, false, now, out);
            Response::Granted {
                token: self.leases[lease as usize].token,
                lease_s,
            }
        } else if self.queue_is_full(resource) {
            Response::ErrorMaxWaiters
        } else if timeout_s == 0 {
            // A try-lock never jumps the queue: it would have joined at the tail, so it fails.
            self.metrics.ns_mut(ns).count_timeout();
            if self.events_wanted() {
                self.wait_event(now, LockEvent::Timeout, resource, client, now, out);
            }
            Response::Timeout
        } else {
            let deadline = now.plus_secs(timeout_s);
            let mode = WaitMode::Blocking { deadline };
            self.add_waiter(now, resource, client, lease_s, mode, out);
            self.settle(now, resource);
            return Outcome::Waiting;
        };
        self.settle(now, resource);
        self.answer(client, response, out)
    }

    /// `r` / `sr` (spec §7.2): any connection may release any token.
    pub(super) fn release(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Release<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Release { ns, key, token } = cmd;
        let response = match self.find_lease(ns, key, token) {
            Some(lease) => {
                // An expired lease that has not been swept yet is still released (spec §8.5).
                self.end_lease(now, lease, LeaseEnd::Release, out);
                Response::Ok
            }
            None => Response::Error,
        };
        self.answer(client, response, out)
    }

    /// `n` / `sn` (spec §7.3): resets the lease to now + L; an expired lease is evicted instead.
    pub(super) fn renew(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Renew<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Renew {
            ns,
            key,
            token,
            lease_s,
        } = cmd;
        let lease_s = lease_s.unwrap_or(self.config.default_lease_s);
        let response = match self.find_lease(ns, key, token) {
            Some(lease) if self.expiry(lease) <= now => {
                self.end_lease(now, lease, LeaseEnd::Expiry, out);
                Response::Error
            }
            Some(lease) => {
                self.extend_lease(now, lease, lease_s);
                Response::Renewed { lease_s }
            }
            None => Response::Error,
        };
        self.answer(client, response, out)
    }

    /// `e` / `se` (spec §9): joins the queue, or takes the resource at once.
    pub(super) fn enqueue(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Enqueue<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Enqueue {
            ns,
            key,
            limit,
            lease_s,
        } = cmd;
        let lease_s = lease_s.unwrap_or(self.config.default_lease_s);
        if let Some(resource) = self.keys.find(ns, key) {
            if self.two_phase.contains_key(&(client, resource)) {
                return self.answer(client, Response::ErrorAlreadyEnqueued, out);
            }
        }
        let resource = match self.open_resource(now, ns, key, limit, out) {
            Ok(resource) => resource,
            Err(response) => return self.answer(client, response, out),
        };
        let response = if self.can_grant_now(resource) {
            let lease = self.new_lease(now, resource, client, lease_s, true, now, out);
            self.two_phase
                .insert((client, resource), TwoPhase::Granted { lease, lease_s });
            Response::Acquired {
                token: self.leases[lease as usize].token,
                lease_s,
            }
        } else if self.queue_is_full(resource) {
            Response::ErrorMaxWaiters
        } else {
            let mode = WaitMode::TwoPhase;
            let waiter = self.add_waiter(now, resource, client, lease_s, mode, out);
            self.two_phase
                .insert((client, resource), TwoPhase::Queued(waiter));
            Response::Queued
        };
        self.settle(now, resource);
        self.answer(client, response, out)
    }

    /// `w` / `sw` (spec §9): collects the grant of an earlier `e`/`se`, waiting up to T.
    pub(super) fn wait(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Wait<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Wait { ns, key, timeout_s } = cmd;
        let Some(resource) = self.keys.find(ns, key) else {
            return self.answer(client, Response::ErrorNotEnqueued, out);
        };
        if !self.two_phase.contains_key(&(client, resource)) {
            return self.answer(client, Response::ErrorNotEnqueued, out);
        }
        self.keys.touch(resource, now);
        let mut state = self.two_phase.get(&(client, resource)).copied();
        if let Some(TwoPhase::Queued(_)) = state {
            // A grant that is due (an expired holder not swept yet) is given before we look.
            self.evict_expired_holders(now, resource, out);
            state = self.two_phase.get(&(client, resource)).copied();
        }
        let response = match state {
            Some(TwoPhase::Granted { lease, lease_s }) => {
                self.two_phase.remove(&(client, resource));
                self.leases[lease as usize].two_phase = false;
                if self.expiry(lease) > now {
                    self.extend_lease(now, lease, lease_s);
                    Response::Granted {
                        token: self.leases[lease as usize].token,
                        lease_s,
                    }
                } else {
                    self.end_lease(now, lease, LeaseEnd::Expiry, out);
                    Response::ErrorLeaseExpired
                }
            }
            Some(TwoPhase::Queued(waiter)) if timeout_s == 0 => {
                self.time_out(now, waiter, out);
                Response::Timeout
            }
            Some(TwoPhase::Queued(waiter)) => {
                self.block_on(waiter, now.plus_secs(timeout_s));
                return Outcome::Waiting;
            }
            // Only an eviction of another holder ran above, and it cannot end a queued state
            // except by granting it.
            None => Response::ErrorNotEnqueued,
        };
        self.answer(client, response, out)
    }

    /// A lease's timer fired.
    pub(super) fn on_lease_expiry(
        &mut self,
        now: Millis,
        timer: TimerId,
        lease: u32,
        out: &mut impl Outbox,
    ) {
        if self
            .leases
            .get(lease as usize)
            .is_some_and(|l| l.timer == timer)
        {
            debug_assert!(self.expiry(lease) <= now, "lease fired early");
            self.end_lease(now, lease, LeaseEnd::Expiry, out);
        } else {
            debug_assert!(false, "stale lease timer {lease}");
        }
    }

    /// A holder of `resource` was lost uncleanly: the old holder may still be at work, so its
    /// slot rests for `--lock-delay` before anyone else gets it. Kept out of line: with the
    /// delay off (the default) it never runs, and the release path stays as small as before.
    #[cold]
    #[inline(never)]
    fn start_lock_delay(&mut self, now: Millis, resource: u32) {
        let until = now.plus_ms(self.config.lock_delay_ms);
        let delay = self
            .delays
            .entry(resource)
            .or_insert(LockDelay { slots: 0, until });
        delay.slots += 1;
        delay.until = until;
        self.timers
            .insert(until, Due::LockDelayEnd(resource).pack());
    }

    /// A slot of `resource` comes out of its lock-delay: the head of the queue may have it.
    pub(super) fn on_lock_delay_end(&mut self, now: Millis, resource: u32, out: &mut impl Outbox) {
        let Some(delay) = self.delays.get_mut(&resource) else {
            debug_assert!(false, "lock-delay end without a delay on {resource}");
            return;
        };
        delay.slots -= 1;
        if delay.slots == 0 {
            self.delays.remove(&resource);
        }
        // A holder whose lease ran out in the same instant frees its slot (into a delay of its
        // own) before the queue looks.
        self.evict_expired_holders(now, resource, out);
        self.grant_waiters(now, resource, out);
        self.settle(now, resource);
    }

    /// A waiter's timeout fired.
    pub(super) fn on_wait_timeout(
        &mut self,
        now: Millis,
        timer: TimerId,
        waiter: u32,
        out: &mut impl Outbox,
    ) {
        let is_current = |engine: &Engine| {
            engine
                .waiters
                .get(waiter as usize)
                .is_some_and(|w| w.timer == Some(timer))
        };
        if !is_current(self) {
            debug_assert!(false, "stale wait timer {waiter}");
            return;
        }
        // If a holder's lease ran out in the same instant, the grant wins over the timeout.
        let resource = self.waiters[waiter as usize].resource;
        self.evict_expired_holders(now, resource, out);
        if is_current(self) {
            let client = self.time_out(now, waiter, out);
            out.reply(client, Response::Timeout);
        }
    }

    /// Takes a waiter whose wait ran out out of its queue, counting the timeout; returns its
    /// client, whose request the caller answers `timeout`.
    fn time_out(&mut self, now: Millis, waiter: u32, out: &mut impl Outbox) -> ClientId {
        let w = self.remove_waiter(now, waiter);
        let ns = self.keys.resources[w.resource as usize].ns();
        self.metrics.ns_mut(ns).count_timeout();
        if self.events_wanted() {
            let event = LockEvent::Timeout;
            self.wait_event(now, event, w.resource, w.client, w.enqueued_at, out);
        }
        w.client
    }

    /// Drops every waiter of a departing client.
    pub(super) fn drop_waiters_of(&mut self, now: Millis, client: ClientId) {
        while let Some(waiter) = self.clients.get(client).and_then(|c| c.waiters.head()) {
            self.remove_waiter(now, waiter);
        }
    }

    /// Unregisters a departing client and releases (auto-release) or orphans its leases.
    ///
    /// Disconnects between two calls of [`Engine::expire`] release at most
    /// [`EXPIRE_BUDGET`](super::EXPIRE_BUDGET) leases together; the rest are left on `releasing`
    /// for `expire`, so that many clients leaving in the same loop turn cannot add up to a stall
    /// either. Orphaning costs nothing per lease: a lease whose owner is no longer registered is
    /// orphaned by definition (see [`Owner`]) and keeps that owner's two-phase entry until it
    /// ends, since no later client can have the same id.
    pub(super) fn unregister(&mut self, now: Millis, client: ClientId, out: &mut impl Outbox) {
        // Unregistered first: `end_lease` finds the leases of an absent owner on `releasing`.
        let Some(mut state) = self.clients.remove(client) else {
            return;
        };
        if self.config.auto_release_on_disconnect {
            // Behind any leases still queued from earlier departures, keeping grant order.
            self.releasing
                .append(&mut state.leases, &mut self.leases, owner_link);
        }
        let released = self.release_departed(now, self.disconnect_budget, out);
        self.disconnect_budget -= released;
    }

    /// Releases up to `budget` leases of departed clients, oldest departure first; returns how
    /// many it released.
    pub(super) fn release_departed(
        &mut self,
        now: Millis,
        budget: usize,
        out: &mut impl Outbox,
    ) -> usize {
        let mut released = 0;
        while released < budget {
            let Some(lease) = self.releasing.head() else {
                break;
            };
            self.end_lease(now, lease, LeaseEnd::Disconnect, out);
            released += 1;
        }
        released
    }

    fn answer(&mut self, client: ClientId, response: Response, out: &mut impl Outbox) -> Outcome {
        out.reply(client, response);
        Outcome::Answered
    }

    /// Looks up or creates the resource for an acquire or enqueue, counts the attempt as
    /// activity and evicts holders whose lease has already passed (spec §8.3 steps 1-2).
    fn open_resource(
        &mut self,
        now: Millis,
        ns: Namespace,
        key: &[u8],
        limit: u64,
        out: &mut impl Outbox,
    ) -> Result<u32, Response> {
        // Every lease starts as an immediate grant or as a waiter (whose grant frees it first),
        // so checking here keeps both below what a timer's payload can name.
        if self.leases.len() + self.waiters.len() >= self.max_timed {
            return Err(Response::ErrorMaxLocks);
        }
        let resource = self
            .keys
            .find_or_create(ns, key, limit, self.config.max_locks, now)
            .map_err(key_error_response)?;
        self.keys.touch(resource, now);
        self.evict_expired_holders(now, resource, out);
        Ok(resource)
    }

    #[inline]
    fn can_grant_now(&self, resource: u32) -> bool {
        self.keys.resources[resource as usize].queue.is_empty() && self.has_free_slot(resource)
    }

    /// Whether one more holder fits: holders and slots in a lock-delay leave room.
    #[inline]
    fn has_free_slot(&self, resource: u32) -> bool {
        let r = &self.keys.resources[resource as usize];
        u64::from(r.holders.len()) + u64::from(self.delayed_slots(resource)) < r.limit()
    }

    /// How long the lock-delay of `resource` lasts from `now` (until its last delayed slot is
    /// free); 0 without one.
    pub(super) fn lock_delay_left(&self, now: Millis, resource: u32) -> u64 {
        if self.delays.is_empty() {
            0
        } else {
            self.delays
                .get(&resource)
                .map_or(0, |delay| delay.until.since(now))
        }
    }

    /// How many slots of `resource` are in a lock-delay.
    #[inline]
    pub(super) fn delayed_slots(&self, resource: u32) -> u32 {
        if self.delays.is_empty() {
            0
        } else {
            self.delays.get(&resource).map_or(0, |delay| delay.slots)
        }
    }

    fn queue_is_full(&self, resource: u32) -> bool {
        let max = self.config.max_waiters;
        max > 0 && u64::from(self.keys.resources[resource as usize].queue.len()) >= max
    }

    /// The lease of (`ns`, `key`) holding `token`, if any. The fence finds the only candidate,
    /// so the key is compared with the lease's resource instead of being looked up: that saves a
    /// keyed hash of the key on every release and renew.
    fn find_lease(&self, ns: Namespace, key: &[u8], token: &[u8]) -> Option<u32> {
        let token = LeaseToken::parse(token)?;
        let leases = &self.leases;
        let lease = self
            .by_fence
            .find(token.fence, |slot| leases[slot as usize].token.fence)?;
        let l = &leases[lease as usize];
        let resource = &self.keys.resources[l.resource as usize];
        (l.token == token && resource.ns() == ns && *resource.key == *key).then_some(lease)
    }

    /// Creates a holder of `resource` for `owner`, with its expiry timer. `enqueued_at` is when
    /// the grant was asked for: `now` for a grant at once, else when the waiter joined the queue.
    #[allow(clippy::too_many_arguments)] // each is a fact of the grant; a struct would only rename them
    fn new_lease(
        &mut self,
        now: Millis,
        resource: u32,
        owner: ClientId,
        lease_s: u64,
        two_phase: bool,
        enqueued_at: Millis,
        out: &mut impl Outbox,
    ) -> u32 {
        let token = self.tokens.issue();
        let ns = self.keys.resources[resource as usize].ns();
        let granted = self
            .metrics
            .on_grant(ns, now, token.fence, now.since(enqueued_at));
        let expires = now.plus_secs(lease_s);
        let entry = self.leases.vacant_entry();
        let lease = entry.key() as u32;
        let timer = self.timers.insert(expires, Due::LeaseExpiry(lease).pack());
        entry.insert(Lease {
            token,
            resource,
            owner: Owner {
                client: owner,
                serial: 0, // set below, with the owner's lease list
            },
            timer,
            two_phase,
            granted,
            holder_link: Link::DETACHED,
            owner_link: Link::DETACHED,
        });
        let leases = &self.leases;
        self.by_fence
            .insert(token.fence, lease, |slot| leases[slot as usize].token.fence);
        self.keys.resources[resource as usize].holders.push_back(
            &mut self.leases,
            lease,
            holder_link,
        );
        if let Some(state) = self.clients.get_mut(owner) {
            state.leases.push_back(&mut self.leases, lease, owner_link);
            self.leases[lease as usize].owner.serial = state.serial;
        } else {
            debug_assert!(false, "lease granted to unknown client {owner:?}");
        }
        self.keys.touch(resource, now);
        if self.events_wanted() {
            self.grant_event(now, lease, enqueued_at, out);
        }
        lease
    }

    /// Resets a lease to expire `lease_s` from now.
    fn extend_lease(&mut self, now: Millis, lease: u32, lease_s: u64) {
        let l = &mut self.leases[lease as usize];
        let rescheduled = self.timers.reschedule(l.timer, now.plus_secs(lease_s));
        debug_assert!(rescheduled, "lease without a live timer");
        let resource = l.resource;
        self.keys.touch(resource, now);
    }

    /// Ends a holder (release, expiry, renew of an expired lease, disconnect, eviction) and
    /// passes the freed capacity to the queue.
    pub(super) fn end_lease(
        &mut self,
        now: Millis,
        lease: u32,
        end: LeaseEnd,
        out: &mut impl Outbox,
    ) {
        if self.events_wanted() {
            self.lease_end_event(now, lease, end, out);
        }
        let resource = self.leases[lease as usize].resource;
        let r = &mut self.keys.resources[resource as usize];
        r.holders.remove(&mut self.leases, lease, holder_link);
        let ns = r.ns();
        let owner = self.leases[lease as usize].owner.client;
        match self.clients.get_mut(owner) {
            Some(state) => state.leases.remove(&mut self.leases, lease, owner_link),
            // Its owner has gone: the lease was waiting on the release queue...
            None if self.config.auto_release_on_disconnect => {
                self.releasing.remove(&mut self.leases, lease, owner_link);
            }
            // ...or, orphaned, is on no list.
            None => {}
        }
        let l = self.leases.remove(lease as usize);
        self.metrics
            .on_lease_end(ns, end, now, l.granted, l.token.fence);
        self.timers.cancel(l.timer);
        let leases = &self.leases;
        self.by_fence.remove(l.token.fence, lease, |slot| {
            leases[slot as usize].token.fence
        });
        if l.two_phase {
            self.two_phase.remove(&(owner, resource));
        }
        if end.delays() && self.config.lock_delay_ms > 0 {
            self.start_lock_delay(now, resource);
        }
        self.keys.touch(resource, now);
        self.grant_waiters(now, resource, out);
        self.settle(now, resource);
    }

    /// Grants free capacity of `resource` to waiters, strictly from the head of its queue.
    /// Inlined into its callers: on the release path it is the tail of `end_lease`.
    #[inline(always)]
    fn grant_waiters(&mut self, now: Millis, resource: u32, out: &mut impl Outbox) {
        while self.has_free_slot(resource) {
            let Some(waiter) = self.keys.resources[resource as usize].queue.head() else {
                break;
            };
            let w = self.unlink_waiter(waiter);
            let collected = w.two_phase && !w.answer_on_grant;
            let lease = self.new_lease(
                now,
                resource,
                w.client,
                w.lease_s,
                collected,
                w.enqueued_at,
                out,
            );
            if w.two_phase {
                if collected {
                    let lease_s = w.lease_s;
                    self.two_phase
                        .insert((w.client, resource), TwoPhase::Granted { lease, lease_s });
                } else {
                    self.two_phase.remove(&(w.client, resource));
                }
            }
            if w.answer_on_grant {
                let token = self.leases[lease as usize].token;
                out.reply(
                    w.client,
                    Response::Granted {
                        token,
                        lease_s: w.lease_s,
                    },
                );
            }
        }
    }

    /// Queues a waiter for `client` at the tail of `resource`'s queue.
    fn add_waiter(
        &mut self,
        now: Millis,
        resource: u32,
        client: ClientId,
        lease_s: u64,
        mode: WaitMode,
        out: &mut impl Outbox,
    ) -> u32 {
        let waiter = self.waiters.insert(Waiter {
            resource,
            client,
            lease_s,
            two_phase: matches!(mode, WaitMode::TwoPhase),
            answer_on_grant: false,
            timer: None,
            enqueued_at: now,
            queue_link: Link::DETACHED,
            client_link: Link::DETACHED,
        }) as u32;
        let r = &mut self.keys.resources[resource as usize];
        r.queue.push_back(&mut self.waiters, waiter, queue_link);
        let (ns, first) = (r.ns(), r.queue.len() == 1);
        self.metrics.ns_mut(ns).waiters += 1;
        if first {
            debug_assert!(!self.has_free_slot(resource), "queued with a free slot");
            self.keys.gained_waiters(resource);
        }
        if let Some(state) = self.clients.get_mut(client) {
            state
                .waiters
                .push_back(&mut self.waiters, waiter, client_link);
        }
        if let WaitMode::Blocking { deadline } = mode {
            self.block_on(waiter, deadline);
        }
        if self.events_wanted() {
            self.wait_event(now, LockEvent::Queued, resource, client, now, out);
        }
        waiter
    }

    /// Makes the waiter's client wait for it until `deadline`.
    fn block_on(&mut self, waiter: u32, deadline: Millis) {
        let timer = self
            .timers
            .insert(deadline, Due::WaitTimeout(waiter).pack());
        let w = &mut self.waiters[waiter as usize];
        w.answer_on_grant = true;
        w.timer = Some(timer);
        let client = w.client;
        if let Some(state) = self.clients.get_mut(client) {
            debug_assert!(state.blocked.is_none(), "client blocked twice");
            state.blocked = Some(waiter);
        }
    }

    /// Takes a waiter out of every list and the slab; its client no longer waits on it.
    fn unlink_waiter(&mut self, waiter: u32) -> Waiter {
        let resource = self.waiters[waiter as usize].resource;
        let client = self.waiters[waiter as usize].client;
        let r = &mut self.keys.resources[resource as usize];
        r.queue.remove(&mut self.waiters, waiter, queue_link);
        let (ns, last) = (r.ns(), r.queue.is_empty());
        self.metrics.ns_mut(ns).waiters -= 1;
        if last {
            self.keys.lost_waiters(resource);
        }
        if let Some(state) = self.clients.get_mut(client) {
            state.waiters.remove(&mut self.waiters, waiter, client_link);
            if state.blocked == Some(waiter) {
                state.blocked = None;
            }
        }
        let w = self.waiters.remove(waiter as usize);
        if let Some(timer) = w.timer {
            self.timers.cancel(timer);
        }
        w
    }

    /// Removes a waiter that will not be granted (timeout, cancel, disconnect) along with its
    /// two-phase state, and returns it.
    pub(super) fn remove_waiter(&mut self, now: Millis, waiter: u32) -> Waiter {
        let w = self.unlink_waiter(waiter);
        if w.two_phase {
            self.two_phase.remove(&(w.client, w.resource));
        }
        debug_assert!(
            self.keys.resources[w.resource as usize].queue.is_empty()
                || !self.has_free_slot(w.resource),
            "a queue with free capacity ahead of it"
        );
        self.keys.touch(w.resource, now);
        self.settle(now, w.resource);
        w
    }

    /// Evicts holders of `resource` whose lease has passed but whose timer has not been handled
    /// yet (only possible while expiry work is spread over several turns), granting what frees up.
    /// Looks at the oldest holders first, at most the turn's
    /// [`SWEEP_BUDGET`](crate::budget::SWEEP_BUDGET) of them; the timers end any it leaves.
    fn evict_expired_holders(&mut self, now: Millis, resource: u32, out: &mut impl Outbox) {
        // Holders first: the resource is at hand, while the wheel's next deadline looks at every
        // level, and an acquire of a free key (the common case) has no holder to look at.
        if self.keys.resources[resource as usize].holders.is_empty()
            || self.timers.next_deadline().is_none_or(|at| at > now)
        {
            return;
        }
        let mut expired = std::mem::take(&mut self.scratch);
        expired.clear();
        let mut cursor = self.keys.resources[resource as usize].holders.head();
        while let Some(lease) = cursor.filter(|_| self.sweep_budget > 0) {
            self.sweep_budget -= 1;
            if self.expiry(lease) <= now {
                expired.push(lease);
            }
            cursor = List::next_of(&mut self.leases, lease, holder_link);
        }
        for &lease in &expired {
            self.end_lease(now, lease, LeaseEnd::Expiry, out);
        }
        expired.clear();
        self.scratch = expired;
    }

    /// Collects the leases on a holder list, for invariant checks and `evict *`.
    pub(super) fn holders_of(&mut self, list: List, out: &mut Vec<u32>) {
        list.collect_into(&mut self.leases, holder_link, out);
    }

    /// Walks a queue for invariant checks.
    pub(super) fn queue_of(&mut self, list: List, out: &mut Vec<u32>) {
        list.collect_into(&mut self.waiters, queue_link, out);
    }
}
