//! A full consistency check of the engine's state, for unit tests and fuzz targets. O(state);
//! never called by the server.

use super::locking::owner_link;
use super::{Engine, TwoPhase};

impl Engine {
    /// Panics with a message if any internal invariant is broken: capacity and FIFO rules, list
    /// membership, two-phase bookkeeping, timers, the keyspace and the signal index.
    #[doc(hidden)]
    pub fn check_invariants(&mut self) {
        self.keys.check_invariants();
        self.keys.resources.check_invariants();
        self.leases.check_invariants();
        self.waiters.check_invariants();
        self.signals.check_invariants();
        let mut members = Vec::new();
        let indices: Vec<u32> = self.keys.resources.iter().map(|(i, _)| i as u32).collect();
        for resource in indices {
            let (limit, holders, queue) = {
                let r = &self.keys.resources[resource as usize];
                (r.limit(), r.holders, r.queue)
            };
            // Slots in a lock-delay count as taken.
            let taken = u64::from(holders.len()) + u64::from(self.delayed_slots(resource));
            assert!(
                taken <= limit,
                "more holders and delayed slots than the limit"
            );
            assert!(
                queue.is_empty() || taken == limit,
                "waiters queued while capacity is free"
            );
            self.holders_of(holders, &mut members);
            assert_eq!(members.len(), holders.len() as usize, "holder list length");
            for &lease in &members {
                assert_eq!(
                    self.leases[lease as usize].resource, resource,
                    "holder of another resource"
                );
            }
            self.queue_of(queue, &mut members);
            assert_eq!(members.len(), queue.len() as usize, "queue length");
            for &waiter in &members {
                assert_eq!(
                    self.waiters[waiter as usize].resource, resource,
                    "waiter of another resource"
                );
            }
        }
        let listed_holders: usize = self
            .keys
            .resources
            .iter()
            .map(|(_, r)| r.holders.len() as usize)
            .sum();
        for (&resource, delay) in self.delays.iter() {
            assert!(delay.slots > 0, "a lock-delay entry without delayed slots");
            assert!(
                self.keys.resources.get(resource as usize).is_some(),
                "a lock-delay on a resource that no longer exists"
            );
        }
        assert_eq!(
            listed_holders,
            self.leases.len(),
            "lease outside every holder list"
        );
        assert_eq!(
            self.by_fence.len(),
            self.leases.len(),
            "fence index out of step"
        );
        for (slot, lease) in self.leases.iter() {
            let leases = &self.leases;
            let found = self
                .by_fence
                .find(lease.token.fence, |s| leases[s as usize].token.fence);
            assert_eq!(found, Some(slot as u32), "lease not found by its fence");
        }
        self.check_clients();
        self.check_two_phase();
        self.check_timers();
        self.check_metrics();
    }

    fn check_clients(&mut self) {
        let mut connected = 0;
        for (_, lease) in self.leases.iter() {
            if let Some(owner) = self.clients.get(lease.owner.client) {
                assert_eq!(lease.owner.serial, owner.serial, "lease has a wrong serial");
                connected += 1;
            }
        }
        let listed: usize = self.clients.iter().map(|c| c.leases.len() as usize).sum();
        assert_eq!(
            connected, listed,
            "leases of connected clients differ from their lease lists"
        );
        let mut releasing = Vec::new();
        self.releasing
            .collect_into(&mut self.leases, owner_link, &mut releasing);
        for &lease in &releasing {
            let owner = self.leases[lease as usize].owner.client;
            assert!(
                !self.clients.contains(owner),
                "lease {lease} queued for release but not owned by a departed client"
            );
        }
        // With auto-release off, leases of departed clients are orphaned: on no list.
        let queued_for_release = if self.config.auto_release_on_disconnect {
            self.leases.len() - connected
        } else {
            0
        };
        assert_eq!(
            queued_for_release,
            releasing.len(),
            "release queue differs from the leases of departed clients"
        );
        let waiting: usize = self.clients.iter().map(|c| c.waiters.len() as usize).sum();
        assert_eq!(
            waiting,
            self.waiters.len(),
            "waiter outside its client's list"
        );
        for (index, waiter) in self.waiters.iter() {
            let client = self
                .clients
                .get(waiter.client)
                .expect("waiter of a departed client");
            let blocked_here = client.blocked == Some(index as u32);
            assert_eq!(
                blocked_here, waiter.answer_on_grant,
                "blocked flag and waiter disagree"
            );
            assert_eq!(
                blocked_here,
                waiter.timer.is_some(),
                "waiting request without timer"
            );
            if !waiter.two_phase {
                assert!(blocked_here, "a blocking waiter nobody waits on");
            }
        }
    }

    fn check_two_phase(&self) {
        let flagged_leases = self.leases.iter().filter(|(_, l)| l.two_phase).count();
        let queued = self.waiters.iter().filter(|(_, w)| w.two_phase).count();
        assert_eq!(
            flagged_leases + queued,
            self.two_phase.len(),
            "two-phase map out of step"
        );
        for (&(client, resource), &state) in self.two_phase.iter() {
            match state {
                TwoPhase::Queued(waiter) => {
                    let w = &self.waiters[waiter as usize];
                    assert!(w.two_phase && w.client == client && w.resource == resource);
                }
                TwoPhase::Granted { lease, .. } => {
                    let l = &self.leases[lease as usize];
                    assert!(l.two_phase && l.owner.client == client && l.resource == resource);
                }
            }
        }
    }

    fn check_timers(&self) {
        let waits = self
            .waiters
            .iter()
            .filter(|(_, w)| w.timer.is_some())
            .count();
        let gc = usize::from(self.gc_timer.is_some());
        let delays: usize = self.delays.values().map(|d| d.slots as usize).sum();
        assert_eq!(
            self.timers.len(),
            self.leases.len() + waits + gc + delays,
            "timer count"
        );
        assert!(
            !self.keys.has_idle() || self.gc_timer.is_some(),
            "idle resources without GC"
        );
        for (_, lease) in self.leases.iter() {
            assert!(
                self.timers.deadline(lease.timer).is_some(),
                "lease without a timer"
            );
        }
        self.timers.check_invariants();
    }
}
