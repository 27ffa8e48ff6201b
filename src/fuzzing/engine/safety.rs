//! The `engine` target's checks of the lock safety extensions: `check`/`scheck` against the
//! model's holders, `q`/`sq` within the model's bounds, and `evict`/`sevict`, which an admin may
//! use to end leases (the model follows, including what it can no longer be sure of) and which
//! changes nothing at all for anyone else.

use super::Harness;
use super::model::{Resource, text_of};
use super::ops::Op;
use crate::engine::{EngineMetrics, ServerFigures};
use crate::protocol::request::{Check, CheckTarget, EvictTarget};
use crate::protocol::{Namespace, Request, Response};

/// What an `evict` is expected to do, worked out before it is applied.
pub(super) enum EvictPlan {
    /// Not an admin: an `error`, and the engine exactly as it was.
    Refused {
        stats: Vec<u8>,
        metrics: Box<EngineMetrics>,
    },
    /// An admin: `ok <n>` with `n` in `least..=most`.
    Count { least: u64, most: u64 },
}

impl Harness {
    /// The engine's state as far as the outside can see it: its `stats` listing and counters.
    fn observable(&self) -> (Vec<u8>, Box<EngineMetrics>) {
        let mut stats = Vec::new();
        let figures = ServerFigures {
            connections: 0,
            slow_consumers_disconnected: 0,
        };
        self.engine.write_stats(self.now, figures, &mut stats);
        (stats, Box::new(self.engine.metrics().clone()))
    }

    /// Prepares the model for `op` from `slot` if it is an `evict`: the leases it ends leave
    /// the model now (whatever happens, they are gone after the call), and the count it may
    /// answer is bounded by what the model knew before.
    pub(super) fn plan_evict(&mut self, slot: usize, op: &Op) -> Option<EvictPlan> {
        let Request::Evict(evict) = op.request() else {
            return None;
        };
        if !self.admins[slot] {
            let (stats, metrics) = self.observable();
            return Some(EvictPlan::Refused { stats, metrics });
        }
        let resource = op.resource();
        Some(match evict.target {
            EvictTarget::Holder(target) => self.plan_evict_holder(resource, target),
            EvictTarget::All => self.plan_evict_all(resource),
        })
    }

    /// The one known lease `target` names is ended: counted if it is certainly live, perhaps
    /// if it may be, not if it has certainly ended (the engine ends it as an expiry then).
    fn plan_evict_holder(&mut self, resource: Resource, target: CheckTarget) -> EvictPlan {
        let now = self.now;
        let named = self
            .model
            .holders
            .iter()
            .position(|h| h.resource == resource && names(target, h.token.as_ref()));
        let Some(i) = named else {
            return EvictPlan::Count { least: 0, most: 0 };
        };
        let holder = self.model.holders.remove(i);
        let least = u64::from(holder.certainly_live(now));
        let most = u64::from(holder.expiry.hi > now);
        EvictPlan::Count { least, most }
    }

    /// Every lease of the resource is ended. Unblocked two-phase waiters may have been granted
    /// silently and so be among them: from now on the model is not sure they still exist.
    fn plan_evict_all(&mut self, resource: Resource) -> EvictPlan {
        let now = self.now;
        // Leases that have passed are ended as expiries first, and not counted.
        let (least, most) = self.model.resource_holder_bounds(resource, now, false);
        self.model.holders.retain(|h| h.resource != resource);
        for waiter in self.model.queue(resource).iter_mut() {
            if !waiter.blocked {
                waiter.maybe_gone = true;
            }
        }
        EvictPlan::Count { least, most }
    }

    /// The answer to an `evict`, against the plan made before it was applied.
    pub(super) fn evict_answered(&mut self, response: Response) {
        match self.evict_plan.take().expect("an evict was planned") {
            EvictPlan::Refused { stats, metrics } => {
                assert_eq!(response, Response::Error, "evict by a non-admin");
                let (now_stats, now_metrics) = self.observable();
                assert!(
                    now_stats == stats && now_metrics == metrics,
                    "evict by a non-admin changed the engine"
                );
            }
            EvictPlan::Count { least, most } => {
                let Response::Evicted { count } = response else {
                    panic!("evict by an admin answered {response:?}");
                };
                assert!(
                    (least..=most).contains(&count),
                    "evicted {count}, not {least}..={most}"
                );
            }
        }
    }

    /// `ok <fence> <ms>` only for a lease the model knows may be live, with the lease it has
    /// left; `stale` never for one the model knows is live.
    pub(super) fn check_answered(&self, check: Check<'_>, response: Response) {
        let now = self.now;
        let resource = (check.ns, check.key);
        let known = self
            .model
            .holders
            .iter()
            .find(|h| h.resource == resource && names(check.target, h.token.as_ref()));
        match response {
            Response::Checked {
                fence,
                remaining_ms,
            } => {
                let holder = known.expect("check reports a lease the model does not know");
                assert!(holder.expiry.hi > now, "check reports an ended lease");
                let token = holder.token.expect("a named holder has a token");
                assert_eq!(format!("{fence:016x}").as_bytes(), &token[..16], "fence");
                assert!(remaining_ms > 0, "check reports no lease left");
                if holder.expiry.lo == holder.expiry.hi {
                    assert_eq!(now.plus_ms(remaining_ms), holder.expiry.lo, "lease left");
                }
            }
            Response::Stale => {
                assert!(
                    !known.is_some_and(|h| h.certainly_live(now)),
                    "check calls a live lease stale"
                );
            }
            other => panic!("check answered {other:?}"),
        }
    }

    /// Holders and waiters within the model's bounds, the limit the resource has, and a place
    /// in the queue only for a client that may wait in it.
    pub(super) fn queue_answered(&self, slot: usize, op: &Op, response: Response) {
        let Response::QueueState {
            holders,
            limit,
            waiters,
            position,
        } = response
        else {
            panic!("q answered {response:?}");
        };
        let (resource, now, client) = (op.resource(), self.now, self.ids[slot]);
        // A lease that has passed stays a holder until its timer runs.
        let (least, most) = self.model.resource_holder_bounds(resource, now, true);
        assert!(
            (least..=most).contains(&u64::from(holders)),
            "q shows {holders} holders, not {least}..={most}"
        );
        let queue = self.model.queues.get(&resource);
        let blocked = queue.into_iter().flatten().filter(|w| w.blocked).count();
        let queued = queue.map_or(0, Vec::len);
        assert!(
            (blocked..=queued).contains(&(waiters as usize)),
            "q shows {waiters} waiters, not {blocked}..={queued}"
        );
        assert!(position <= waiters, "place {position} of {waiters}");
        if position > 0 {
            assert!(
                queue.is_some_and(|q| q.iter().any(|w| w.client == client && w.two_phase)),
                "a place in a queue the client is not in"
            );
        }
        match (op.ns, self.model.certain_limit(resource, now)) {
            (Namespace::Lock, _) => assert_eq!(limit, 1, "q limit"),
            (Namespace::Semaphore, Some(known)) => assert_eq!(limit, known, "sq limit"),
            (Namespace::Semaphore, None) => {}
        }
        assert!(
            limit == 0 || u64::from(holders) <= limit,
            "{holders} holders of {limit}"
        );
    }
}

/// Whether `target` names the lease with `token`.
fn names(target: CheckTarget, token: Option<&[u8; crate::token::TOKEN_LEN]>) -> bool {
    let Some(token) = token else {
        return false;
    };
    match target {
        CheckTarget::Token(t) => text_of(t) == *token,
        CheckTarget::Fence(fence) => format!("{fence:016x}").as_bytes() == &token[..16],
    }
}
