//! Hash tables that grow and shrink a little at a time, so that no single insert or remove stalls
//! the event loop.
//!
//! A plain hash table grows by moving every entry into a table twice the size in one go: with a
//! million entries that is one insert costing milliseconds. [`IncrementalTable`] instead keeps
//! two tables while it resizes. The new one takes every insert; each insert or remove also moves
//! a bounded batch of entries out of the old one (at most `MOVES_PER_STEP` entries, at most
//! `VISITS_PER_STEP` buckets looked at), and lookups try the new table first and the old one
//! only while it still holds entries. The same mechanism shrinks a table that has become mostly
//! empty, so memory comes back after a spike. Outside a resize a lookup is one probe of one
//! table, as with a plain table.
//!
//! Why a wrapper of `hashbrown::HashTable` rather than the `griddle` crate, which spreads
//! hashbrown's resize over inserts: griddle 0.6 is built on hashbrown 0.14 (a second copy of
//! hashbrown plus ahash in the build), offers only `HashMap`/`HashSet` with an owned key and a
//! stored hasher (the key and fence indexes store 4-byte slots and hash them through the resource
//! or lease they point to, which needs `HashTable`'s external-hash API), and never shrinks. The
//! wrapper below takes about a hundred lines over the hashbrown already in use and keeps the
//! call sites' shape: `find(hash, eq)`, `insert_unique(hash, value, hasher)`,
//! `remove(hash, eq, hasher)`. Remove takes a hasher too because it may move entries.
//!
//! [`IncrementalMap`] adds owned keys and a stored hasher on top, for what would otherwise be a
//! `std::collections::HashMap`.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};
use std::mem;

use hashbrown::HashTable;

/// Most entries one insert or remove moves from the old table to the new one during a resize.
/// Moving an entry rehashes it (for the key index: SipHash of the key plus a cache miss to
/// reach it), about 0.1 µs. A turn may insert or remove a thousand entries (a budget of lease
/// releases), so this stays small: the resize of a million entries then spreads over a hundred
/// turns of about a millisecond instead of a few turns of tens. Two would be enough to finish a
/// resize before the table fills again.
const MOVES_PER_STEP: usize = 8;

/// Most buckets of the old table one step looks at. Bounds the step when the old table is mostly
/// empty (a shrink), where finding entries costs more than moving them.
const VISITS_PER_STEP: usize = 64;

/// Capacity of a table's first allocation, and the least a shrink leaves.
const MIN_CAPACITY: usize = 16;

/// A table shrinks once fewer than one bucket in this many holds an entry...
const SHRINK_RATIO: usize = 8;

/// ...and only if it has more buckets than this: below it, the memory is not worth a resize.
const SHRINK_MIN_BUCKETS: usize = 64;

/// A hash table of `T` with externally computed hashes (the shape of `hashbrown::HashTable`) that
/// resizes incrementally: no insert or remove moves more than `MOVES_PER_STEP` entries.
///
/// Every method that takes a `hasher` must be given one that agrees with the hashes passed to
/// [`IncrementalTable::insert_unique`]; it is called on entries being moved.
#[derive(Debug)]
pub struct IncrementalTable<T> {
    /// Where inserts go; outside a resize, the only table that holds entries. During a resize its
    /// spare capacity exceeds the number of steps the resize still needs, so it never grows
    /// (and never rehashes in one go) itself.
    main: HashTable<T>,
    /// The table being emptied into `main`. A resize is in progress exactly while it holds
    /// entries; it holds no allocation otherwise.
    old: HashTable<T>,
    /// Buckets of `old` below this index hold no entry.
    cursor: usize,
}

impl<T> Default for IncrementalTable<T> {
    fn default() -> Self {
        IncrementalTable::new()
    }
}

impl<T> IncrementalTable<T> {
    /// An empty table; it allocates on the first insert.
    pub const fn new() -> Self {
        IncrementalTable {
            main: HashTable::new(),
            old: HashTable::new(),
            cursor: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.main.len() + self.old.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry with `hash` for which `eq` holds, if any.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        match self.main.find(hash, &mut eq) {
            None if !self.old.is_empty() => self.old.find(hash, eq),
            found => found,
        }
    }

    /// The entry with `hash` for which `eq` holds, if any, for changes that keep its hash.
    #[inline]
    pub fn find_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        if let Some(index) = self.main.find_bucket_index(hash, &mut eq) {
            return self.main.get_bucket_mut(index);
        }
        if self.old.is_empty() {
            None
        } else {
            self.old.find_mut(hash, eq)
        }
    }

    /// Inserts `value`, whose hash is `hash`. The caller guarantees that no equal entry is in
    /// the table. May start a resize or take a step of one.
    pub fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) -> &mut T {
        if !self.old.is_empty() {
            self.step(&hasher);
        } else if self.main.len() == self.main.capacity() {
            self.start_resize(&hasher);
        }
        self.main.insert_unique(hash, value, hasher).into_mut()
    }

    /// Removes and returns the entry with `hash` for which `eq` holds, if any. May start a
    /// shrink or take a step of a resize.
    pub fn remove(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Option<T> {
        let removed = match self.main.find_entry(hash, &mut eq) {
            Ok(entry) => entry.remove().0,
            Err(_) if self.old.is_empty() => return None,
            Err(_) => self.old.find_entry(hash, eq).ok()?.remove().0,
        };
        if !self.old.is_empty() {
            self.step(&hasher);
        } else if self.is_sparse() {
            self.start_resize(&hasher);
        } else {
            // Removing the old table's last entry may have ended a resize.
            self.finish_if_done();
        }
        Some(removed)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.main.iter().chain(self.old.iter())
    }

    /// Whether `main` is big and mostly empty, so worth shrinking.
    fn is_sparse(&self) -> bool {
        let buckets = self.main.num_buckets();
        buckets > SHRINK_MIN_BUCKETS && self.main.len() * SHRINK_RATIO < buckets
    }

    /// Moves `main` aside as the old table and replaces it with one sized for twice its entries
    /// (a grow when it is full, a shrink when it is sparse), then takes the first step.
    fn start_resize(&mut self, hasher: &impl Fn(&T) -> u64) {
        debug_assert!(self.old.is_empty(), "resize during a resize");
        let len = self.main.len();
        // Each step is followed by at most one insert, so the new table must also have room for
        // one insert per step the resize can take.
        let steps =
            len.div_ceil(MOVES_PER_STEP) + self.main.num_buckets().div_ceil(VISITS_PER_STEP);
        let capacity = (2 * len).max(len + steps + 1).max(MIN_CAPACITY);
        self.old = mem::replace(&mut self.main, HashTable::with_capacity(capacity));
        self.cursor = 0;
        self.step(hasher);
    }

    /// Whether a resize is under way: the old table still holds entries (and memory).
    pub fn is_resizing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Takes resize steps, without an insert or remove to carry them, until about `budget`
    /// units of work are done or the resize has ended; returns the units used. A moved entry is
    /// one unit, and so is each step, which also pays for the buckets it looked at.
    ///
    /// Inserts and removes alone finish a resize only if they keep coming: a table that grew
    /// in a burst of a million keys would otherwise keep its old half (megabytes) until the
    /// next burst. The engine calls this once per turn while a resize is under way.
    pub fn advance(&mut self, budget: usize, hasher: impl Fn(&T) -> u64) -> usize {
        let mut used = 0;
        while used < budget && self.is_resizing() {
            used += self.step(&hasher) + 1;
        }
        used
    }

    /// Moves up to [`MOVES_PER_STEP`] entries from `old` to `main`, looking at up to
    /// [`VISITS_PER_STEP`] buckets; frees `old` once it is empty. Returns the entries moved.
    fn step(&mut self, hasher: &impl Fn(&T) -> u64) -> usize {
        let end = (self.cursor + VISITS_PER_STEP).min(self.old.num_buckets());
        let mut moved = 0;
        while self.cursor < end && moved < MOVES_PER_STEP {
            if let Ok(entry) = self.old.get_bucket_entry(self.cursor) {
                let (value, _) = entry.remove();
                self.main.insert_unique(hasher(&value), value, hasher);
                moved += 1;
            }
            self.cursor += 1;
        }
        self.finish_if_done();
        moved
    }

    /// Frees the old table if it holds no entry any more.
    fn finish_if_done(&mut self) {
        if self.old.is_empty() && self.old.allocation_size() > 0 {
            self.old = HashTable::new();
            self.cursor = 0;
        }
    }
}

/// A map with owned keys and a stored hasher over an [`IncrementalTable`]: what
/// `std::collections::HashMap` offers for the operations the server needs, without a long
/// insert when the map doubles.
#[derive(Debug)]
pub struct IncrementalMap<K, V, S = RandomState> {
    table: IncrementalTable<(K, V)>,
    hasher: S,
}

impl<K, V, S: Default> Default for IncrementalMap<K, V, S> {
    fn default() -> Self {
        IncrementalMap {
            table: IncrementalTable::new(),
            hasher: S::default(),
        }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> IncrementalMap<K, V, S> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value under `key` (or a borrowed form of it, as with `HashMap`), if any.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.table
            .find(self.hasher.hash_one(key), |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The value under `key`, if any, to change it.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.table
            .find_mut(self.hasher.hash_one(key), |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Whether a resize is under way (see [`IncrementalTable::is_resizing`]).
    pub fn is_resizing(&self) -> bool {
        self.table.is_resizing()
    }

    /// Advances a resize by about `budget` units (see [`IncrementalTable::advance`]).
    pub fn advance(&mut self, budget: usize) -> usize {
        let hasher = &self.hasher;
        self.table.advance(budget, |(k, _)| hasher.hash_one(k))
    }

    /// Puts `value` under `key`; returns the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        if let Some((_, slot)) = self.table.find_mut(hash, |(k, _)| *k == key) {
            return Some(mem::replace(slot, value));
        }
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
        None
    }

    /// Removes the value under `key` and returns it, if any.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let hasher = &self.hasher;
        self.table
            .remove(
                hasher.hash_one(key),
                |(k, _)| k.borrow() == key,
                |(k, _)| hasher.hash_one(k),
            )
            .map(|(_, v)| v)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::test_rng::Rng;

    /// Deterministic hash of a key, shared by inserts, lookups and moves.
    fn h(key: &u64) -> u64 {
        key.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
    }

    fn table_with(keys: std::ops::Range<u64>) -> IncrementalTable<u64> {
        let mut table = IncrementalTable::new();
        for key in keys {
            table.insert_unique(h(&key), key, h);
        }
        table
    }

    fn contains(table: &IncrementalTable<u64>, key: u64) -> bool {
        table.find(h(&key), |&k| k == key).is_some()
    }

    fn remove(table: &mut IncrementalTable<u64>, key: u64) -> Option<u64> {
        table.remove(h(&key), |&k| k == key, h)
    }

    #[test]
    fn random_operations_agree_with_std_hashmap() {
        for seed in 1..=8u64 {
            let mut rng = Rng::new(seed);
            let mut map: IncrementalMap<u64, u64> = IncrementalMap::default();
            let mut model = HashMap::new();
            // Phases of mostly inserts then mostly removes, to cross grows and shrinks.
            for phase in 0..6 {
                let insert_share = if phase % 2 == 0 { 80 } else { 20 };
                for _ in 0..20_000 {
                    let key = rng.below(8_000);
                    let roll = rng.below(100);
                    if roll < insert_share {
                        let value = rng.next_u64();
                        assert_eq!(map.insert(key, value), model.insert(key, value));
                    } else if roll < insert_share + 10 {
                        if let (Some(v), Some(m)) = (map.get_mut(&key), model.get_mut(&key)) {
                            *v = v.wrapping_add(1);
                            *m = m.wrapping_add(1);
                        }
                    } else {
                        assert_eq!(map.remove(&key), model.remove(&key));
                    }
                    assert_eq!(map.get(&key), model.get(&key));
                    assert_eq!(map.len(), model.len());
                }
                let mut all: Vec<_> = map.iter().map(|(&k, &v)| (k, v)).collect();
                let mut expected: Vec<_> = model.iter().map(|(&k, &v)| (k, v)).collect();
                all.sort_unstable();
                expected.sort_unstable();
                assert_eq!(all, expected, "seed {seed} phase {phase}");
            }
        }
    }

    #[test]
    fn growth_moves_a_bounded_batch_per_insert_and_finds_everything_meanwhile() {
        // Fill the first table exactly, so the next insert starts a resize.
        let mut table = table_with(0..0);
        let mut key = 0;
        loop {
            table.insert_unique(h(&key), key, h);
            key += 1;
            if table.main.len() == table.main.capacity() && key > 10_000 {
                break;
            }
        }
        assert!(table.old.is_empty());
        let before = table.main.num_buckets();
        table.insert_unique(h(&key), key, h);
        key += 1;
        assert_eq!(table.main.num_buckets(), 2 * before, "grows by doubling");
        assert!(!table.old.is_empty(), "resize spread over later inserts");
        assert!(table.main.len() <= MOVES_PER_STEP + 1);
        let capacity = table.main.capacity();
        let mut steps = 1;
        while !table.old.is_empty() {
            for k in 0..key {
                assert!(contains(&table, k), "key {k} lost during migration");
            }
            let moved_before = table.old.len();
            table.insert_unique(h(&key), key, h);
            key += 1;
            assert!(moved_before - table.old.len() <= MOVES_PER_STEP);
            assert_eq!(table.main.capacity(), capacity, "the new table grew itself");
            steps += 1;
        }
        assert_eq!(table.old.allocation_size(), 0, "old table freed");
        assert!(steps > 10);
        assert_eq!(table.len(), key as usize);
        assert!((0..key).all(|k| contains(&table, k)));
    }

    #[test]
    fn advance_finishes_a_resize_without_traffic_in_bounded_calls() {
        // Start a resize, then stop inserting: only `advance` can finish it.
        let mut table = table_with(0..0);
        let mut key = 0;
        while table.old.is_empty() || table.old.len() < 10_000 {
            table.insert_unique(h(&key), key, h);
            key += 1;
        }
        let budget = 100;
        let mut calls = 0;
        while table.is_resizing() {
            let left = table.old.len();
            let used = table.advance(budget, h);
            // A call stops within one step of its budget, and every unit moved an entry or
            // paid for a step.
            assert!(used <= budget + MOVES_PER_STEP, "used {used}");
            assert!(left - table.old.len() <= used);
            assert!((0..key).all(|k| contains(&table, k)), "a key was lost");
            calls += 1;
        }
        assert_eq!(table.old.allocation_size(), 0, "old table freed");
        assert!(calls >= 10_000 / (budget + MOVES_PER_STEP), "{calls} calls");
        assert_eq!(table.advance(budget, h), 0, "nothing left to do");
        assert_eq!(table.len(), key as usize);
    }

    #[test]
    fn removes_during_growth_reach_both_tables() {
        let mut table = table_with(0..0);
        let mut key = 0;
        while table.old.is_empty() || table.main.len() < 2 * MOVES_PER_STEP {
            table.insert_unique(h(&key), key, h);
            key += 1;
        }
        assert!(!table.old.is_empty());
        // The lowest keys are spread over both tables now; remove every other key.
        for k in (0..key).step_by(2) {
            assert_eq!(remove(&mut table, k), Some(k));
            assert_eq!(remove(&mut table, k), None);
        }
        for k in 0..key {
            assert_eq!(contains(&table, k), k % 2 == 1);
        }
        assert_eq!(table.len(), key as usize / 2);
    }

    #[test]
    fn a_mostly_empty_table_shrinks_incrementally_and_frees_memory() {
        let n = 100_000;
        let mut table = table_with(0..n);
        while !table.old.is_empty() {
            // Finish any resize still under way.
            table.insert_unique(h(&(n + 1)), n + 1, h);
            assert_eq!(remove(&mut table, n + 1), Some(n + 1));
        }
        let big = table.main.num_buckets();
        let mut removed = 0;
        while table.old.is_empty() {
            assert_eq!(remove(&mut table, removed), Some(removed));
            removed += 1;
        }
        let left = (n - removed) as usize;
        assert!(left * SHRINK_RATIO < big, "shrinks once sparse...");
        assert!((left + 1) * SHRINK_RATIO >= big, "...and not before");
        assert!(
            table.main.num_buckets() <= big / 2,
            "the new table is smaller"
        );
        // Lookups and inserts keep working mid-shrink, and later operations finish it.
        let mut steps = 0;
        let mut fresh = n + 10;
        while !table.old.is_empty() {
            assert!((removed..n).all(|k| contains(&table, k)));
            table.insert_unique(h(&fresh), fresh, h);
            fresh += 1;
            steps += 1;
            assert!(steps <= big / VISITS_PER_STEP + (n as usize) / MOVES_PER_STEP + 1);
        }
        assert_eq!(table.old.allocation_size(), 0);
        assert!(table.main.num_buckets() <= big / 2);
        assert_eq!(table.len(), left + (fresh - (n + 10)) as usize);
        assert!((removed..n).all(|k| contains(&table, k)));
        assert!((0..removed).all(|k| !contains(&table, k)));
    }

    #[test]
    fn emptying_a_table_shrinks_it_to_the_minimum() {
        let n = 50_000;
        let mut table = table_with(0..n);
        for k in 0..n {
            assert_eq!(remove(&mut table, k), Some(k));
        }
        assert!(table.is_empty());
        assert_eq!(table.old.allocation_size(), 0);
        assert!(table.main.num_buckets() <= SHRINK_MIN_BUCKETS);
    }
}
