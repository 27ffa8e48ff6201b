//! Lock safety extensions: `check`/`scheck` (is this token or fence a current holder's?),
//! `q`/`sq` (the queue and the sender's place in it) and `evict`/`sevict` (an admin ends
//! leases now).
//!
//! Nothing here changes what a 1.x request sees: these are new commands, answered from the same
//! state the 1.x commands keep. Eviction ends a lease through the same path as a release or an
//! expiry, so the freed capacity goes to the queue in FIFO order; it adds nothing to the acquire
//! and release paths.

use super::metrics::LeaseEnd;
use super::{ClientId, Engine, Outbox, Outcome, TwoPhase};
use crate::clock::Millis;
use crate::protocol::request::{Check, CheckTarget, Evict, EvictTarget, Queue};
use crate::protocol::{Namespace, Response};

/// Most queue entries one `q`/`sq` visits to find the sender's place: half of them walking
/// towards the head, half towards the tail. A waiter within this many entries of either end
/// (every waiter, in a queue up to this long) gets its exact place; one further from both ends
/// of a longer queue is reported at `POSITION_WALK / 2 + 1`, meaning "at least that far back".
pub const POSITION_WALK: u32 = 100_000;

impl Engine {
    /// `check` / `scheck`: `ok <fence> <remaining_ms>` if the token or fence belongs to a holder
    /// of the key whose lease has not passed, else `stale`. Looks only; changes nothing (not even
    /// the key's last activity), so asking cannot keep a resource alive.
    pub(super) fn check(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Check<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let response = match self.current_holder(now, cmd) {
            Some((fence, expires)) => Response::Checked {
                fence,
                remaining_ms: expires.since(now),
            },
            None => Response::Stale,
        };
        out.reply(client, response);
        Outcome::Answered
    }

    /// The fence and expiry of the holder `cmd` names, if it holds `cmd`'s key and its lease has
    /// not passed. A holder whose lease passed but whose timer has not been handled yet is
    /// already stale. Public for the fuzz targets' invariants.
    #[doc(hidden)]
    pub fn current_holder(&self, now: Millis, cmd: Check<'_>) -> Option<(u64, Millis)> {
        let Check { ns, key, target } = cmd;
        let lease = self.lease_named(ns, key, target)?;
        let expires = self.expiry(lease);
        (expires > now).then_some((self.leases[lease as usize].token.fence, expires))
    }

    /// The lease of (`ns`, `key`) that `target` names, whether or not its lease has passed.
    fn lease_named(&self, ns: Namespace, key: &[u8], target: CheckTarget) -> Option<u32> {
        let fence = match target {
            CheckTarget::Token(token) => token.fence,
            CheckTarget::Fence(fence) => fence,
        };
        let leases = &self.leases;
        let lease = self
            .by_fence
            .find(fence, |slot| leases[slot as usize].token.fence)?;
        let l = &leases[lease as usize];
        let resource = &self.keys.resources[l.resource as usize];
        let same_token = match target {
            CheckTarget::Token(token) => l.token == token,
            CheckTarget::Fence(_) => true,
        };
        (same_token && resource.ns() == ns && *resource.key == *key).then_some(lease)
    }

    /// Marks `client` as an admin: it sent the admin token, so it may `evict`. Lasts until it
    /// disconnects.
    pub fn grant_admin(&mut self, client: ClientId) {
        if let Some(state) = self.clients.get_mut(client) {
            state.admin = true;
        }
    }

    /// Whether `client` may `evict`.
    pub fn is_admin(&self, client: ClientId) -> bool {
        self.clients.get(client).is_some_and(|state| state.admin)
    }

    /// `evict` / `sevict`: `ok <n>`, having ended the `n` leases of the key that `cmd` names
    /// (0 if none matched), or `error` without changing anything if `client` is not an admin.
    ///
    /// Each lease ends as a release would, so waiters are granted in FIFO order at once: an
    /// eviction never starts a lock-delay (see [`LeaseEnd::delays`]). A holder whose lease has
    /// already passed is ended as an expiry first, and is not counted.
    pub(super) fn evict(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Evict<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        if !self.is_admin(client) {
            out.reply(client, Response::Error);
            return Outcome::Answered;
        }
        let Evict { ns, key, target } = cmd;
        let count = match self.keys.find(ns, key) {
            None => 0,
            Some(resource) => self.evict_from(now, resource, ns, key, target, out),
        };
        out.reply(client, Response::Evicted { count });
        Outcome::Answered
    }

    /// Ends the leases of `resource` (which is (`ns`, `key`)) that `target` names; returns how
    /// many were live. One whose lease has passed (its timer not handled yet) ends as an expiry
    /// and is not counted.
    ///
    /// The holders are collected before any ends: the capacity each end frees goes to the
    /// queue, and a waiter granted by this very request keeps its grant rather than being
    /// evicted along with the holders the operator saw.
    fn evict_from(
        &mut self,
        now: Millis,
        resource: u32,
        ns: Namespace,
        key: &[u8],
        target: EvictTarget,
        out: &mut impl Outbox,
    ) -> u64 {
        let mut evicted = std::mem::take(&mut self.scratch);
        match target {
            EvictTarget::Holder(holder) => evicted.extend(self.lease_named(ns, key, holder)),
            EvictTarget::All => {
                let holders = self.keys.resources[resource as usize].holders;
                self.holders_of(holders, &mut evicted);
            }
        }
        let mut count = 0;
        for &lease in &evicted {
            let end = if self.expiry(lease) <= now {
                LeaseEnd::Expiry
            } else {
                count += 1;
                LeaseEnd::Evict
            };
            self.end_lease(now, lease, end, out);
        }
        evicted.clear();
        self.scratch = evicted;
        count
    }

    /// `q` / `sq`: `ok <holders> <limit> <waiters> <position>`, where position is `client`'s
    /// 1-based place among the key's waiters (0 if it does not wait there). A key that does not
    /// exist answers no holders and no waiters, with limit 1 for `q` and the limit the `sq`
    /// named (0 if none) for `sq`. Looks only, like `check`.
    pub(super) fn queue_state(
        &mut self,
        client: ClientId,
        cmd: Queue<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Queue { ns, key, limit } = cmd;
        let response = match self.keys.find(ns, key) {
            None => Response::QueueState {
                holders: 0,
                limit: match ns {
                    Namespace::Lock => 1,
                    Namespace::Semaphore => limit.unwrap_or(0),
                },
                waiters: 0,
                position: 0,
            },
            Some(resource) => {
                // Only a two-phase waiter can ask: a blocked `l`/`sl`/`w`/`sw` sends nothing
                // more until it is answered.
                let position = match self.two_phase.get(&(client, resource)) {
                    Some(&TwoPhase::Queued(waiter)) => self.position_of(waiter),
                    _ => 0,
                };
                let r = &self.keys.resources[resource as usize];
                Response::QueueState {
                    holders: r.holders.len(),
                    limit: r.limit(),
                    waiters: r.queue.len(),
                    position,
                }
            }
        };
        out.reply(client, response);
        Outcome::Answered
    }

    /// The 1-based place of `waiter` in its queue, walking from it towards both ends at once
    /// (whichever end it reaches first tells the place) for at most [`POSITION_WALK`] steps.
    fn position_of(&self, waiter: u32) -> u32 {
        let w = &self.waiters[waiter as usize];
        let len = self.keys.resources[w.resource as usize].queue.len();
        let (mut back, mut ahead) = (Some(waiter), Some(waiter));
        for steps in 0..POSITION_WALK / 2 {
            // `steps` entries walked in each direction so far.
            back = match back.and_then(|i| self.waiters[i as usize].queue_link.prev()) {
                None => return steps + 1,
                next => next,
            };
            ahead = match ahead.and_then(|i| self.waiters[i as usize].queue_link.next()) {
                None => return len - steps,
                next => next,
            };
        }
        POSITION_WALK / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Push};
    use crate::protocol::request::Enqueue;
    use crate::token::TokenIssuer;

    /// Keeps only the last reply.
    #[derive(Default)]
    struct Last(Option<Response>);

    impl Outbox for Last {
        fn reply(&mut self, _: ClientId, response: Response) {
            self.0 = Some(response);
        }
        fn has_room(&mut self, _: ClientId, _: usize) -> bool {
            true
        }
        fn push(&mut self, _: ClientId, _: &Push<'_>) {}
        fn evict(&mut self, _: ClientId) {}
    }

    fn position(engine: &mut Engine, client: ClientId) -> u32 {
        let mut out = Last::default();
        let request = Queue {
            ns: Namespace::Lock,
            key: b"k",
            limit: None,
        };
        engine.queue_state(client, request, &mut out);
        match out.0 {
            Some(Response::QueueState { position, .. }) => position,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_position_walk_is_exact_near_either_end_and_capped_in_the_middle() {
        let waiters = POSITION_WALK + 10;
        let mut engine = Engine::new(EngineConfig::default(), TokenIssuer::deterministic(1));
        let mut out = Last::default();
        let client = |i: u32| ClientId {
            index: i,
            generation: 1,
        };
        let enqueue = crate::protocol::Request::Enqueue(Enqueue {
            ns: Namespace::Lock,
            key: b"k",
            limit: 1,
            lease_s: None,
        });
        for i in 0..=waiters {
            engine.connect(client(i), u64::from(i));
            engine.apply(Millis::ZERO, client(i), &enqueue, &mut out);
        }
        // Client 0 holds; clients 1 ..= waiters queue in order.
        assert_eq!(position(&mut engine, client(0)), 0);
        assert_eq!(position(&mut engine, client(1)), 1);
        assert_eq!(position(&mut engine, client(2)), 2);
        assert_eq!(
            position(&mut engine, client(POSITION_WALK / 2)),
            POSITION_WALK / 2
        );
        assert_eq!(position(&mut engine, client(waiters)), waiters);
        assert_eq!(position(&mut engine, client(waiters - 7)), waiters - 7);
        let middle = client(waiters / 2);
        assert_eq!(position(&mut engine, middle), POSITION_WALK / 2 + 1);
    }
}
