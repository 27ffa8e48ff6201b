//! The `engine` target's checks of each answer against the model: waits, replies to requests,
//! asynchronous answers and `stats` snapshots.

use super::model::{Expiry, Holder, KeyStats, Pending, Resource, Waiter, text_of};
use super::ops::{KEYS, Op};
use super::{Call, Harness};
use crate::clock::Millis;
use crate::engine::signal::SubscriptionLimits;
use crate::engine::{ClientId, ServerFigures};
use crate::fuzzing::subject::valid_pattern;
use crate::protocol::events::is_reserved_channel;
use crate::protocol::request::{Acquire, Release, Renew};
use crate::protocol::{Namespace, Request, Response};

impl Harness {
    /// Whether the engine certainly had free capacity and an empty queue for the request being
    /// applied, with `limit`: the model says so and the request could sweep every passed holder.
    fn certainly_free(&self, resource: Resource, limit: u64) -> bool {
        self.sweep_complete && self.model.certainly_free(resource, limit, self.now)
    }

    /// A reply to a request that was waiting: a grant, a timeout (only from `expire`) or an
    /// `error` (only from `cancel_waits`).
    pub(super) fn async_answer(&mut self, call: Call, client: ClientId, response: Response) {
        let slot = client.index as usize;
        let pending = self.pending[slot]
            .take()
            .unwrap_or_else(|| panic!("unsolicited {response:?} to {client:?}"));
        let resource = match pending {
            Pending::Wait(resource) => resource,
            Pending::Subscription { valid } => {
                assert!(call == Call::Expire, "signal work outside expire");
                let expected = [Response::Ok, Response::Error];
                assert!(
                    expected.contains(&response),
                    "queued listen answered {response:?}"
                );
                assert!(
                    valid || response == Response::Error,
                    "invalid pattern accepted"
                );
                return;
            }
            Pending::Publish => {
                assert!(call == Call::Expire, "signal work outside expire");
                let Response::Delivered { count } = response else {
                    panic!("queued signal answered {response:?}");
                };
                // Publishes of publishers that left may have run since the last answer; their
                // pushes are mixed in, so the count can only be checked without them.
                let mut silent = false;
                while let Some(publisher) = self.publishes.pop_front() {
                    if publisher == client {
                        break;
                    }
                    silent = true;
                }
                // Subscribers that left while it was on its way are counted but sent nothing.
                assert!(
                    silent || count >= self.unanswered_pushes,
                    "count below the pushes"
                );
                self.unanswered_pushes = 0;
                return;
            }
        };
        let position = self
            .model
            .position(resource, |w| w.client == client && w.blocked)
            .expect("a waiting request has its waiter");
        let now = self.now;
        match response {
            Response::Granted { token, lease_s } => {
                self.model.granted_up_to(resource, position, now);
                let waiter = self.model.queue(resource).remove(0);
                assert_eq!(lease_s, waiter.lease_s, "granted lease");
                self.model.add_holder(Holder::granted(
                    resource,
                    client,
                    waiter.limit,
                    lease_s,
                    now,
                    token,
                    false,
                ));
            }
            Response::Timeout => {
                assert!(call == Call::Expire, "timeout outside expire");
                let waiter = self.model.queue(resource).remove(position);
                assert!(now >= waiter.deadline, "timed out early");
            }
            Response::Error => {
                assert!(call == Call::Cancel, "error to a waiting request");
                self.model.queue(resource).remove(position);
            }
            other => panic!("{other:?} ended a wait"),
        }
    }

    /// The request of `slot` waits: a blocking acquire or wait with a timeout, only if the
    /// resource was not certainly free; or a signal operation behind a publish in progress.
    pub(super) fn waits(&mut self, slot: usize, op: &Op) {
        match op.request() {
            Request::Signal(_) => {
                self.publishes.push_back(self.ids[slot]);
                // Unless its own publish evicted the publisher: then nobody waits.
                if self.connected(slot) {
                    self.pending[slot] = Some(Pending::Publish);
                }
            }
            Request::Listen(sub) | Request::Unlisten(sub) => {
                let valid = valid_pattern(sub.pattern);
                self.pending[slot] = Some(Pending::Subscription { valid });
            }
            _ => self.waits_for_resource(slot, op),
        }
    }

    /// The blocking acquire or wait of `slot` waits, only if the resource was not certainly free.
    pub(super) fn waits_for_resource(&mut self, slot: usize, op: &Op) {
        let client = self.ids[slot];
        let resource = op.resource();
        let now = self.now;
        assert!(op.timeout_s > 0, "{op:?} waits with timeout 0");
        let deadline = now.plus_secs(op.timeout_s);
        match op.request() {
            Request::Acquire(Acquire { limit, lease_s, .. }) => {
                assert!(
                    !self.certainly_free(resource, limit),
                    "acquire waits on a free resource"
                );
                self.model.queue(resource).push(Waiter {
                    client,
                    two_phase: false,
                    blocked: true,
                    lease_s: lease_s.unwrap_or(self.config.default_lease_s),
                    limit,
                    since: now,
                    deadline,
                    maybe_gone: false,
                });
            }
            Request::Wait(_) => {
                let position = self
                    .model
                    .position(resource, |w| w.client == client && w.two_phase)
                    .expect("wait blocks without an enqueue");
                let waiter = &mut self.model.queue(resource)[position];
                waiter.blocked = true;
                waiter.deadline = deadline;
            }
            _ => panic!("{op:?} waits"),
        }
        self.pending[slot] = Some(Pending::Wait(resource));
    }

    pub(super) fn answered(&mut self, slot: usize, op: &Op, response: Response, pushes: usize) {
        let request = op.request();
        match request {
            Request::Acquire(_) => self.acquire_answered(slot, op, response),
            Request::Release(Release { token, .. }) => self.release_answered(op, token, response),
            Request::Renew(Renew { token, lease_s, .. }) => {
                self.renew_answered(op, token, lease_s, response)
            }
            Request::Enqueue(_) => self.enqueue_answered(slot, op, response),
            Request::Wait(_) => self.wait_answered(slot, op, response),
            Request::Listen(sub) | Request::Unlisten(sub) => {
                let listen = matches!(request, Request::Listen(_));
                let expected = if !valid_pattern(sub.pattern) {
                    Some(Response::Error)
                } else if !listen || self.config.subscriptions == SubscriptionLimits::default() {
                    Some(Response::Ok)
                } else {
                    None // depends on the subscription count, which the subject target checks
                };
                assert!(
                    matches!(response, Response::Ok | Response::Error),
                    "{response:?}"
                );
                if let Some(expected) = expected {
                    assert_eq!(response, expected, "{request:?}");
                }
            }
            Request::Signal(signal)
                if self.config.lock_events && is_reserved_channel(signal.channel) =>
            {
                assert_eq!(response, Response::Error, "a signal on a reserved channel");
            }
            Request::Signal(_) => {
                // Answered at once: no subscriber left while it was on its way.
                assert_eq!(
                    response,
                    Response::Delivered {
                        count: pushes as u64
                    },
                    "delivery count"
                );
                // Answered at once means the queue was empty: whatever came before was the
                // silent publishes of publishers that left.
                for publisher in self.publishes.drain(..) {
                    let slot = publisher.index as usize;
                    assert!(
                        self.ids[slot] != publisher || self.out.connected[slot].is_none(),
                        "a publish answered before an earlier one"
                    );
                }
                self.unanswered_pushes = 0;
            }
            Request::Stats | Request::Ping | Request::Auth(_) | Request::Info => {
                unreachable!("not generated")
            }
            Request::Check(check) => self.check_answered(check, response),
            Request::Queue(_) => self.queue_answered(slot, op, response),
            Request::Evict(_) => self.evict_answered(response),
        }
    }

    /// Answers shared by `l`/`sl` and `e`/`se` about the resource itself.
    pub(super) fn resource_refusal(&self, op: &Op, response: Response) {
        let resource = op.resource();
        let now = self.now;
        let known = self.model.certain_limit(resource, now);
        match response {
            Response::ErrorMaxLocks => {
                assert!(known.is_none(), "error_max_locks for an existing resource")
            }
            Response::ErrorMaxWaiters => {
                let max = self.config.max_waiters;
                let queued = self.model.queues.get(&resource).map_or(0, Vec::len) as u64;
                assert!(max > 0 && queued >= max, "error_max_waiters below the cap");
            }
            Response::ErrorLimitMismatch => {
                assert_eq!(op.ns, Namespace::Semaphore, "limit mismatch on a lock");
                assert_ne!(known, Some(op.limit), "limit mismatch on the same limit");
            }
            other => panic!("{op:?} answered {other:?}"),
        }
    }

    pub(super) fn check_limit_agrees(&self, op: &Op, response: Response) {
        if let Some(limit) = self.model.certain_limit(op.resource(), self.now) {
            let refused = matches!(
                response,
                Response::ErrorLimitMismatch | Response::ErrorAlreadyEnqueued
            );
            assert!(
                refused || limit == op.limit,
                "{op:?} with existing limit {limit} answered {response:?}"
            );
        }
    }

    pub(super) fn acquire_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now) = (op.resource(), self.now);
        self.check_limit_agrees(op, response);
        let lease = op.lease_s.unwrap_or(self.config.default_lease_s);
        match response {
            Response::Granted { token, lease_s } => {
                assert_eq!(lease_s, lease, "granted lease");
                self.model.granted_at_once(resource, now);
                self.model.add_holder(Holder::granted(
                    resource,
                    self.ids[slot],
                    op.limit,
                    lease_s,
                    now,
                    token,
                    false,
                ));
            }
            Response::Timeout => {
                assert_eq!(op.timeout_s, 0, "immediate timeout with a wait time");
                assert!(
                    !self.certainly_free(resource, op.limit),
                    "try-lock failed on a free resource"
                );
            }
            other => self.resource_refusal(op, other),
        }
    }

    pub(super) fn release_answered(&mut self, op: &Op, token: &[u8], response: Response) {
        let now = self.now;
        match self.model.holder_by_token(token) {
            Some(i) if self.model.holders[i].resource == op.resource() => {
                if self.model.holders[i].certainly_live(now) {
                    assert_eq!(response, Response::Ok, "release of a live lease");
                } else {
                    assert!(matches!(response, Response::Ok | Response::Error));
                }
                self.model.holders.remove(i);
            }
            _ => assert_eq!(response, Response::Error, "release of a lease not held"),
        }
    }

    pub(super) fn renew_answered(
        &mut self,
        op: &Op,
        token: &[u8],
        lease_s: Option<u64>,
        response: Response,
    ) {
        let now = self.now;
        match self.model.holder_by_token(token) {
            Some(i) if self.model.holders[i].resource == op.resource() => {
                if self.model.holders[i].certainly_live(now) {
                    let lease_s = lease_s.unwrap_or(self.config.default_lease_s);
                    assert_eq!(response, Response::Renewed { lease_s }, "renew");
                    self.model.holders[i].expiry = Expiry::exact(now.plus_secs(lease_s));
                } else {
                    assert_eq!(response, Response::Error, "renew of an expired lease");
                    self.model.holders.remove(i);
                }
            }
            _ => assert_eq!(response, Response::Error, "renew of a lease not held"),
        }
    }

    pub(super) fn enqueue_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now, client) = (op.resource(), self.now, self.ids[slot]);
        let queued = self
            .model
            .position(resource, |w| w.client == client && w.two_phase);
        let holder = self.model.two_phase_holder(client, resource);
        // Whether the earlier two-phase state certainly still exists: a queued entry (or the
        // silent lease it became) lives at least `lease` past its enqueue.
        let certain = match (queued, holder) {
            (Some(p), _) => self.model.queues[&resource][p].certainly_exists(now),
            (None, Some(h)) => self.model.holders[h].certainly_live(now),
            (None, None) => false,
        };
        if response == Response::ErrorAlreadyEnqueued {
            assert!(
                queued.is_some() || holder.is_some(),
                "error_already_enqueued without an enqueue"
            );
            return;
        }
        assert!(!certain, "second enqueue accepted on {resource:?}");
        // The earlier state is gone: its lease was granted silently and has run out.
        if let Some(p) = queued {
            self.model.granted_up_to(resource, p, now);
            self.model.queue(resource).remove(0);
        } else if let Some(h) = holder {
            self.model.holders.remove(h);
        }
        self.check_limit_agrees(op, response);
        let lease = op.lease_s.unwrap_or(self.config.default_lease_s);
        match response {
            Response::Acquired { token, lease_s } => {
                assert_eq!(lease_s, lease, "acquired lease");
                self.model.granted_at_once(resource, now);
                self.model.add_holder(Holder::granted(
                    resource, client, op.limit, lease_s, now, token, true,
                ));
            }
            Response::Queued => {
                assert!(
                    !self.certainly_free(resource, op.limit),
                    "queued on a free resource"
                );
                self.model.queue(resource).push(Waiter {
                    client,
                    two_phase: true,
                    blocked: false,
                    lease_s: lease,
                    limit: op.limit,
                    since: now,
                    deadline: Millis::MAX,
                    maybe_gone: false,
                });
            }
            other => self.resource_refusal(op, other),
        }
    }

    pub(super) fn wait_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now, client) = (op.resource(), self.now, self.ids[slot]);
        if let Some(p) = self
            .model
            .position(resource, |w| w.client == client && w.two_phase)
        {
            let (since, lease, maybe_gone) = {
                let w = &self.model.queues[&resource][p];
                (w.since, w.lease_s, w.maybe_gone)
            };
            if response == Response::Timeout {
                assert_eq!(op.timeout_s, 0, "immediate timeout with a wait time");
                self.model.queue(resource).remove(p);
                return;
            }
            // Any other answer means the waiter was granted (silently, before or during `w`).
            self.model.granted_up_to(resource, p, now);
            let waiter = self.model.queue(resource).remove(0);
            match response {
                Response::Granted { token, lease_s } => {
                    assert_eq!(lease_s, lease, "collected lease");
                    self.model.add_holder(Holder::granted(
                        resource,
                        client,
                        waiter.limit,
                        lease_s,
                        now,
                        token,
                        false,
                    ));
                }
                Response::ErrorLeaseExpired | Response::ErrorNotEnqueued => {
                    assert!(
                        since.plus_secs(lease) <= now || maybe_gone,
                        "{response:?} before the lease could end"
                    );
                }
                other => panic!("wait on a queued enqueue answered {other:?}"),
            }
            return;
        }
        let Some(h) = self.model.two_phase_holder(client, resource) else {
            assert_eq!(response, Response::ErrorNotEnqueued, "wait without enqueue");
            return;
        };
        let expiry = self.model.holders[h].expiry;
        match response {
            Response::Granted { token, lease_s } => {
                assert!(expiry.hi > now, "collected a lease that had run out");
                let holder = &mut self.model.holders[h];
                assert_eq!(lease_s, holder.lease_s, "collected lease");
                let text = text_of(token);
                match holder.token {
                    Some(known) => assert_eq!(known, text, "collected another token"),
                    None => {
                        holder.token = Some(text);
                        assert!(!self.model.seen.contains(&text), "token issued twice");
                        self.model.seen.push(text);
                    }
                }
                let holder = &mut self.model.holders[h];
                holder.two_phase = false;
                holder.expiry = Expiry::exact(now.plus_secs(lease_s));
            }
            Response::ErrorLeaseExpired | Response::ErrorNotEnqueued => {
                assert!(expiry.lo <= now, "{response:?} for a live lease");
                self.model.holders.remove(h);
            }
            other => panic!("wait on a granted enqueue answered {other:?}"),
        }
    }

    /// Compares a `stats` snapshot with the model, per key (a lock and a semaphore may share a
    /// key, and `stats` sorts limit-1 semaphores among the locks): holder and waiter counts within
    /// the model's bounds, the expiry and owner of every lock certainly held, semaphore limits.
    pub(super) fn check_stats(&self) {
        let mut json = Vec::new();
        let figures = ServerFigures {
            connections: self.out.connected.iter().flatten().count() as u64,
            slow_consumers_disconnected: 0,
        };
        self.engine.write_stats(self.now, figures, &mut json);
        let stats: serde_json::Value =
            serde_json::from_slice(&json).unwrap_or_else(|e| panic!("stats JSON: {e}"));
        let now = self.now;
        for key in KEYS {
            let shown = KeyStats::read(&stats, key);
            let name = String::from_utf8_lossy(key);
            let (least, most) = self.model.holder_bounds(key, now);
            assert!(
                (least..=most).contains(&shown.holders),
                "stats shows {} holders of {name}, not {least}..={most}",
                shown.holders
            );
            let (least, most) = self.model.waiter_bounds(key);
            assert!(
                (least..=most).contains(&shown.waiters),
                "stats shows {} waiters on {name}, not {least}..={most}",
                shown.waiters
            );
            for holder in self.model.certain_lock_holders(key, now) {
                assert!(
                    shown.locks.contains(&holder),
                    "stats lists {:?} for {name}, not the holder {holder:?}",
                    shown.locks
                );
            }
            if let Some(limit) = self.model.certain_limit((Namespace::Semaphore, key), now) {
                assert!(
                    shown.semaphore_limits.iter().all(|&l| l == limit),
                    "stats shows limits {:?} for semaphore {name}, not {limit}",
                    shown.semaphore_limits
                );
            }
        }
    }
}
