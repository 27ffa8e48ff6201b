//! Giving memory back after a spike: the engine's slabs (resources, leases, waiters, timers, the
//! signal index's, and the per-connection client table) keep the size of their largest load until trimmed, a budget of entries per
//! turn, once they are mostly empty. Its hash tables shrink on their own (`table.rs`).

use super::Engine;

impl Engine {
    /// Whether some slab is mostly empty and can give memory back: the caller should come back
    /// at once rather than sleep, as for due timers.
    pub(super) fn wants_trim(&self) -> bool {
        self.leases.wants_trim()
            || self.timers.wants_trim()
            || self.keys.wants_trim()
            || self.waiters.wants_trim()
            || self.signals.wants_trim()
            || self.clients.wants_trim()
    }

    /// Drops up to `budget` vacant slab entries, leases and their timers first (the slabs a
    /// departed client's locks filled); returns whether some are left for the next turn.
    pub(super) fn trim(&mut self, budget: usize) -> bool {
        let mut left = budget;
        left -= self.leases.trim(left);
        left -= self.timers.trim(left);
        left -= self.keys.trim(left);
        left -= self.waiters.trim(left);
        left -= self.signals.trim(left);
        left -= self.clients.trim(left);
        // A slab stops short of the budget only once it no longer wants trimming, so with budget
        // to spare every slab is done.
        left == 0 && self.wants_trim()
    }
}
