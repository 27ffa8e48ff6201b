//! Leases by fence, so `r`/`n` find the holder of a token in O(1) however many holders a
//! semaphore has.
//!
//! Fences are unique per grant, so the fence alone identifies a lease; the caller still compares
//! the whole token. The table stores only lease slots (4 bytes each) and takes each fence from the
//! lease itself; it resizes incrementally ([`IncrementalTable`]), a few entries per grant or
//! release. Fences are issued by the server, not chosen by clients, so a fast hash without
//! flooding resistance is fine here.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::table::IncrementalTable;

/// Lease slots indexed by fence.
#[derive(Debug, Default)]
pub struct FenceIndex {
    table: IncrementalTable<u32>,
    hasher: DefaultHashBuilder,
}

impl FenceIndex {
    /// Records that `lease` holds `fence`. `fence_of` gives the fence of any indexed lease.
    pub fn insert(&mut self, fence: u64, lease: u32, fence_of: impl Fn(u32) -> u64) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(hasher.hash_one(fence), lease, |&slot| {
                hasher.hash_one(fence_of(slot))
            });
    }

    /// The lease holding `fence`, if any.
    pub fn find(&self, fence: u64, fence_of: impl Fn(u32) -> u64) -> Option<u32> {
        self.table
            .find(self.hasher.hash_one(fence), |&slot| fence_of(slot) == fence)
            .copied()
    }

    /// Forgets `lease`, which holds `fence`. `fence_of` gives the fence of any lease still
    /// indexed.
    pub fn remove(&mut self, fence: u64, lease: u32, fence_of: impl Fn(u32) -> u64) {
        let hasher = &self.hasher;
        self.table.remove(
            hasher.hash_one(fence),
            |&slot| slot == lease,
            |&slot| hasher.hash_one(fence_of(slot)),
        );
    }

    /// Whether the index is resizing (see [`IncrementalTable::is_resizing`]).
    pub fn is_resizing(&self) -> bool {
        self.table.is_resizing()
    }

    /// Advances a resize by about `budget` units (see [`IncrementalTable::advance`]).
    pub fn advance(&mut self, budget: usize, fence_of: impl Fn(u32) -> u64) -> usize {
        let hasher = &self.hasher;
        self.table
            .advance(budget, |&slot| hasher.hash_one(fence_of(slot)))
    }

    /// Number of indexed leases.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no lease is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}
