//! Giving memory back after a spike: the engine's slabs (resources, leases, waiters, timers, the
//! signal index's, and the per-connection client table) keep the size of their largest load
//! until trimmed, a budget of entries per turn, once they are mostly empty. Its hash tables
//! resize on their own as entries come and go (`table.rs`); a resize that the traffic left
//! unfinished is moved along here, so the old table's memory does not wait for the next burst.

use super::Engine;
use crate::budget::RESIZE_BUDGET;

impl Engine {
    /// Whether some slab is mostly empty and can give memory back, or a hash table is halfway
    /// through a resize: the caller should come back at once rather than sleep, as for due
    /// timers.
    pub(super) fn wants_trim(&self) -> bool {
        self.leases.wants_trim()
            || self.timers.wants_trim()
            || self.keys.wants_trim()
            || self.waiters.wants_trim()
            || self.signals.wants_trim()
            || self.clients.wants_trim()
            || self.tables_resizing()
    }

    /// Whether the key, fence or two-phase index still holds an old table.
    pub(super) fn tables_resizing(&self) -> bool {
        self.keys.index_resizing() || self.by_fence.is_resizing() || self.two_phase.is_resizing()
    }

    /// Moves up to about [`RESIZE_BUDGET`] entries of the indexes that are resizing.
    fn advance_resizes(&mut self) {
        let mut left = RESIZE_BUDGET;
        left -= self.keys.advance_index(left).min(left);
        let leases = &self.leases;
        left -= self
            .by_fence
            .advance(left, |slot| leases[slot as usize].token.fence)
            .min(left);
        self.two_phase.advance(left);
    }

    /// Drops up to `budget` vacant slab entries, leases and their timers first (the slabs a
    /// departed client's locks filled), and moves a resizing index along; returns whether some
    /// of either is left for the next turn.
    pub(super) fn trim(&mut self, budget: usize) -> bool {
        let mut left = budget;
        left -= self.leases.trim(left);
        left -= self.timers.trim(left);
        left -= self.keys.trim(left);
        left -= self.waiters.trim(left);
        left -= self.signals.trim(left);
        self.clients.trim(left);
        self.advance_resizes();
        if left == budget {
            // The common case, once per turn: nothing was trimmed, and a slab that wants
            // trimming always trims something, so none wants it.
            self.tables_resizing()
        } else {
            // Asked again rather than inferred from the budget left: a slab that finishes a
            // round of trimming short of the budget may want another round at once.
            self.wants_trim()
        }
    }
}
