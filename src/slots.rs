//! A slab that gives its memory back after a spike, a bounded piece at a time.
//!
//! [`Slots`] is what `slab::Slab` is to the engine: values addressed by a stable `usize` key,
//! vacant entries reused last-freed first, so that the hot path is one vector access and a list
//! push or pop. It differs in one respect: a slab that was filled by a spike (a client taking a
//! million locks) and then emptied can hand the memory back without moving a live entry.
//!
//! `slab::Slab` cannot do that within a loop turn. Its vacant entries form a singly linked list,
//! so its `shrink_to_fit` must rebuild the whole list after popping the vacant tail: O(capacity),
//! several milliseconds for a million entries, all in one call. Here the list is doubly linked,
//! so any vacant entry leaves it in O(1), and [`Slots::trim`] pops vacant entries off the end of
//! the vector, at most a budget of them per call. Once the part of the allocation no entry uses
//! reaches an eighth of it (or 1 MiB), that part goes back to the allocator (`Vec::shrink_to`;
//! glibc and jemalloc shrink a large block in place, so nothing is copied).
//!
//! Popping the tail is not enough while other clients keep working: last-freed-first reuse hands
//! them the entries freed last, which after a spike are near the end, so the end is never vacant
//! when the trim looks. So trimming goes in rounds. A round picks a *boundary*, half the current
//! length; from then on an entry freed at or above it goes on a second vacant list, used only
//! when the first runs dry, and the round sweeps the entries between the boundary and the end
//! (a budget per call), moving the vacant ones there to the second list. New entries then land
//! below the boundary, the entries above it empty as their owners finish, and the tail is popped
//! down to the boundary, which ends the round. The next round, if the slab is still sparse,
//! halves again. A round also ends if the slab fills up below its boundary: the second list then
//! serves inserts as the first did. Outside a round the hot path pays one comparison with the
//! boundary per remove.
//!
//! Trimming is left to an owner that calls [`Slots::trim`] once per turn while
//! [`Slots::wants_trim`] holds, rather than done inside [`Slots::remove`]: the entries of a
//! spike are usually released oldest first, lowest keys first, so the end of the vector empties
//! last, after the final remove, when no remove is left to carry the work.
//!
//! What cannot be given back: keys stay valid, so an occupied entry is never moved, and the
//! vector ends at its highest live entry. A lease held for hours at the top of a million-entry
//! slab keeps the slab at a million entries until it is released.

use std::fmt;
use std::mem;
use std::ops::{Index, IndexMut};

/// End of a vacant list, and "no round under way" for the boundary. Keys stay below it (checked
/// on insert).
const NIL: u32 = u32::MAX;

/// Slabs of this many entries or fewer are never trimmed: below it the memory is not worth the
/// bookkeeping, and a small slab that fills and empties with every burst of traffic should keep
/// its room.
pub(crate) const TRIM_FLOOR: usize = 1024;

/// A slab is trimmed while fewer than one entry in this many is occupied. The gap to a full slab
/// keeps a slab whose load swings by a factor of two or three from shrinking and growing again.
pub(crate) const SPARSE_RATIO: usize = 4;

/// The allocation shrinks once its unused part reaches an eighth of it or this many bytes,
/// whichever is less. Handing memory back costs the kernel about 0.3 µs per 4 KiB page it
/// unmaps, so a step of 1 MiB keeps each shrink near 80 µs where an eighth of a 72 MB slab would
/// take 800 µs in one turn.
const SHRINK_STEP_BYTES: usize = 1 << 20;

/// Links of a vacant entry in its doubly linked vacant list.
#[derive(Clone, Copy, Debug)]
struct Vacant {
    /// The previous vacant entry; not kept up to date for a list's head, whose predecessor is
    /// known to be none (this saves a write per insert).
    prev: u32,
    /// The next vacant entry, or NIL.
    next: u32,
}

#[derive(Debug)]
enum Entry<T> {
    Vacant(Vacant),
    Occupied(T),
}

/// Values addressed by stable keys; see the module documentation.
pub struct Slots<T> {
    entries: Vec<Entry<T>>,
    /// Occupied entries.
    len: usize,
    /// Head of the vacant list that inserts use first (the entry freed there last), or NIL.
    free: u32,
    /// Head of the vacant list of entries at or above `boundary`, or NIL. Empty outside a round.
    high: u32,
    /// During a trimming round, the key from which freed entries go on the `high` list; NIL
    /// outside a round. A round ends when the slab's end comes down to it, or when the `free`
    /// list runs dry (then `high` takes its place).
    boundary: u32,
    /// During a round, where the sweep stands: every vacant entry from here to the end is on the
    /// `high` list. Between `boundary` and the length.
    sweep: u32,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T> Slots<T> {
    /// Bytes one entry takes, occupied or vacant: the size of `T`, plus a tag unless `T` has a
    /// niche for it.
    pub const ENTRY_SIZE: usize = size_of::<Entry<T>>();

    /// An empty slab; it allocates on the first insert.
    pub const fn new() -> Self {
        Slots::with_entries(Vec::new())
    }

    /// An empty slab with room for `capacity` values before it allocates.
    pub fn with_capacity(capacity: usize) -> Self {
        Slots::with_entries(Vec::with_capacity(capacity))
    }

    const fn with_entries(entries: Vec<Entry<T>>) -> Self {
        Slots {
            entries,
            len: 0,
            free: NIL,
            high: NIL,
            boundary: NIL,
            sweep: NIL,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the current allocation has room for; every key is below it.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The key the next [`Slots::insert`] will use.
    pub fn vacant_key(&self) -> usize {
        if self.free != NIL {
            self.free as usize
        } else if self.high != NIL {
            self.high as usize
        } else {
            self.entries.len()
        }
    }

    /// Stores `value` and returns its key: the entry freed last (below the boundary of a
    /// trimming round if there is one), or a new one at the end.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` entries are already in use.
    #[inline]
    pub fn insert(&mut self, value: T) -> usize {
        let mut key = self.free;
        if key == NIL {
            if self.high == NIL {
                let key = self.entries.len();
                assert!(
                    key < NIL as usize,
                    "a slab holds fewer than u32::MAX entries"
                );
                self.entries.push(Entry::Occupied(value));
                self.len += 1;
                return key;
            }
            self.end_round();
            key = self.free;
        }
        let entry = &mut self.entries[key as usize];
        let Entry::Vacant(links) = *entry else {
            unreachable!("the vacant list holds an occupied entry");
        };
        self.free = links.next;
        *entry = Entry::Occupied(value);
        self.len += 1;
        key as usize
    }

    /// Ends a trimming round whose low list ran dry: the slab filled up below the boundary, so
    /// there is nothing to keep new entries away from. The high list becomes the only one.
    #[cold]
    fn end_round(&mut self) {
        debug_assert_eq!(self.free, NIL, "ending a round with low entries left");
        self.free = mem::replace(&mut self.high, NIL);
        self.boundary = NIL;
        self.sweep = NIL;
    }

    /// The key the next insert will use, and a handle that inserts there: for values that must
    /// know their own key.
    pub fn vacant_entry(&mut self) -> VacantEntry<'_, T> {
        VacantEntry {
            key: self.vacant_key(),
            slots: self,
        }
    }

    /// Removes and returns the value at `key`.
    ///
    /// # Panics
    ///
    /// If `key` holds no value.
    #[track_caller]
    pub fn remove(&mut self, key: usize) -> T {
        self.try_remove(key).expect("invalid slab key")
    }

    /// Removes and returns the value at `key`, if any.
    #[inline]
    pub fn try_remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if let Entry::Vacant(_) = entry {
            return None;
        }
        let key = key as u32;
        // Outside a trimming round the boundary is NIL, above every key.
        let list = if key < self.boundary {
            &mut self.free
        } else {
            &mut self.high
        };
        let head = mem::replace(list, key);
        let Entry::Occupied(value) = mem::replace(
            entry,
            Entry::Vacant(Vacant {
                prev: NIL,
                next: head,
            }),
        ) else {
            unreachable!("checked above");
        };
        if let Some(Entry::Vacant(links)) = self.entries.get_mut(head as usize) {
            links.prev = key;
        }
        self.len -= 1;
        Some(value)
    }

    /// Puts the vacant entry `key` in front of the list whose head is `head`; returns the new
    /// head, `key`.
    #[inline]
    fn push_vacant(&mut self, key: u32, head: u32) -> u32 {
        if let Entry::Vacant(links) = &mut self.entries[key as usize] {
            links.next = head;
        }
        if let Some(Entry::Vacant(links)) = self.entries.get_mut(head as usize) {
            links.prev = key;
        }
        key
    }

    /// The value at `key`, if any.
    #[inline]
    pub fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// The value at `key`, if any.
    #[inline]
    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Every value with its key, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(key, entry)| match entry {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// More than `TRIM_FLOOR` entries, fewer than one in `SPARSE_RATIO` of them occupied.
    fn is_sparse(&self) -> bool {
        let end = self.entries.len();
        end > TRIM_FLOOR && self.len < end / SPARSE_RATIO
    }

    /// Whether [`Slots::trim`] has work: the slab is sparse (more than `TRIM_FLOOR` entries,
    /// fewer than one in `SPARSE_RATIO` of them occupied), and a round is to start, its sweep is
    /// unfinished, or the last entry is vacant. False while a live entry at the end holds the
    /// round up, so that its owner does not spin. O(1).
    pub fn wants_trim(&self) -> bool {
        self.is_sparse()
            && (self.boundary == NIL
                || self.sweep > self.boundary
                || matches!(self.entries.last(), Some(Entry::Vacant(_))))
    }

    /// Does up to `budget` units of trimming: an entry popped off the end or swept. Pops the
    /// vacant tail; while the last entry is live, sweeps the entries above the round's boundary
    /// instead. Gives the allocation's unused part back once it is an eighth of it or 1 MiB.
    /// Returns the units done: less than `budget` when [`Slots::wants_trim`] stopped holding.
    /// Each unit costs a list unlink (up to two cache misses), so a budget of a few thousand
    /// stays well under a millisecond.
    pub fn trim(&mut self, budget: usize) -> usize {
        if !self.wants_trim() {
            // The common case, once per turn: keep it to the check.
            return 0;
        }
        if self.boundary == NIL {
            let end = self.entries.len();
            self.boundary = (end / 2).max(TRIM_FLOOR) as u32;
            self.sweep = end as u32;
        }
        let mut done = 0;
        while done < budget && self.is_sparse() {
            if let Some(Entry::Vacant(links)) = self.entries.last() {
                let (key, links) = (self.entries.len() as u32 - 1, *links);
                self.unlink(key, links);
                self.entries.pop();
                self.sweep = self.sweep.min(key);
            } else if self.sweep > self.boundary {
                self.sweep -= 1;
                let key = self.sweep;
                if let Entry::Vacant(links) = self.entries[key as usize] {
                    self.unlink(key, links);
                    self.high = self.push_vacant(key, self.high);
                }
            } else {
                break;
            }
            done += 1;
        }
        let end = self.entries.len();
        if end <= self.boundary as usize {
            // Everything from the boundary up is gone, the high list with it.
            debug_assert_eq!(self.high, NIL, "the high list outlived its round");
            self.boundary = NIL;
            self.sweep = NIL;
        }
        let capacity = self.entries.capacity();
        let step = (capacity / 8).min(SHRINK_STEP_BYTES / Self::ENTRY_SIZE.max(1));
        if capacity - end >= step {
            self.entries.shrink_to(end);
        }
        done
    }

    /// Takes the vacant entry `key`, whose links are `links`, off whichever list holds it.
    fn unlink(&mut self, key: u32, links: Vacant) {
        if self.free == key {
            self.free = links.next;
        } else if self.high == key {
            self.high = links.next;
        } else if let Some(Entry::Vacant(prev)) = self.entries.get_mut(links.prev as usize) {
            prev.next = links.next;
        }
        if let Some(Entry::Vacant(next)) = self.entries.get_mut(links.next as usize) {
            next.prev = links.prev;
        }
    }

    /// Walks the vacant list starting at `head`; returns its keys. Panics on a broken link.
    fn walk(&self, head: u32) -> Vec<u32> {
        let vacant = self.entries.len() - self.len;
        let (mut keys, mut prev, mut cursor) = (Vec::new(), NIL, head);
        while cursor != NIL {
            assert!(keys.len() < vacant, "a vacant list has a cycle");
            let Some(Entry::Vacant(links)) = self.entries.get(cursor as usize) else {
                panic!("a vacant list reaches {cursor}, which is not a vacant entry");
            };
            if prev != NIL {
                assert_eq!(links.prev, prev, "entry {cursor}: broken back link");
            }
            keys.push(cursor);
            (prev, cursor) = (cursor, links.next);
        }
        keys
    }

    /// Panics if the vacant lists and the entries disagree: every vacant entry is on exactly one
    /// list, the links agree in both directions, the counts add up, and the round's lists and
    /// sweep are where they should be. O(entries); for tests and fuzz targets.
    pub fn check_invariants(&self) {
        let occupied = self
            .entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Occupied(_)))
            .count();
        assert_eq!(occupied, self.len, "occupied entries against the count");
        let low = self.walk(self.free);
        let high = self.walk(self.high);
        assert_eq!(
            low.len() + high.len(),
            self.entries.len() - self.len,
            "vacant entries missing from the vacant lists"
        );
        if self.boundary == NIL {
            assert!(high.is_empty(), "a high list outside a round");
            return;
        }
        let end = self.entries.len() as u32;
        assert!(
            self.boundary < end,
            "a round whose boundary is past the end"
        );
        assert!(
            (self.boundary..=end).contains(&self.sweep),
            "sweep {} outside [{}, {end}]",
            self.sweep,
            self.boundary
        );
        assert!(
            high.iter().all(|&key| key >= self.boundary),
            "a high-list entry below the boundary"
        );
        assert!(
            low.iter().all(|&key| key < self.sweep),
            "a swept entry on the low list"
        );
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = T;

    #[inline]
    #[track_caller]
    fn index(&self, key: usize) -> &T {
        match self.entries.get(key) {
            Some(Entry::Occupied(value)) => value,
            _ => panic!("invalid slab key {key}"),
        }
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    #[inline]
    #[track_caller]
    fn index_mut(&mut self, key: usize) -> &mut T {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => value,
            _ => panic!("invalid slab key {key}"),
        }
    }
}

/// A vacant entry of a [`Slots`], from [`Slots::vacant_entry`].
pub struct VacantEntry<'a, T> {
    slots: &'a mut Slots<T>,
    key: usize,
}

impl<'a, T> VacantEntry<'a, T> {
    /// The key the value will have.
    pub fn key(&self) -> usize {
        self.key
    }

    /// Stores `value` at [`VacantEntry::key`] and returns it.
    pub fn insert(self, value: T) -> &'a mut T {
        let key = self.slots.insert(value);
        debug_assert_eq!(key, self.key, "the vacant key changed under the handle");
        &mut self.slots[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `n` entries holding their own key.
    fn filled(n: usize) -> Slots<u64> {
        let mut slots = Slots::new();
        for key in 0..n {
            assert_eq!(slots.insert(key as u64), key);
        }
        slots
    }

    /// Trims with `budget` per call until there is nothing left to trim; returns the calls.
    fn trim_all(slots: &mut Slots<u64>, budget: usize) -> usize {
        let mut calls = 0;
        while slots.wants_trim() {
            let dropped = slots.trim(budget);
            assert!(dropped <= budget);
            calls += 1;
            slots.check_invariants();
        }
        calls
    }

    #[test]
    fn keys_are_reused_last_freed_first() {
        let mut slots = filled(4);
        assert_eq!(slots.remove(1), 1);
        assert_eq!(slots.remove(3), 3);
        slots.check_invariants();
        assert_eq!(slots.vacant_key(), 3);
        assert_eq!(slots.insert(30), 3);
        assert_eq!(slots.insert(10), 1);
        assert_eq!(slots.insert(4), 4);
        assert_eq!(slots.try_remove(7), None);
        assert_eq!(slots.try_remove(2), Some(2));
        assert_eq!(slots.try_remove(2), None);
        assert_eq!(slots.get(2), None);
        assert_eq!(slots[3], 30);
        assert_eq!(slots.len(), 4);
        slots.check_invariants();
        let entry = slots.vacant_entry();
        assert_eq!(entry.key(), 2);
        assert_eq!(*entry.insert(20), 20);
        let listed: Vec<_> = slots.iter().map(|(key, &value)| (key, value)).collect();
        assert_eq!(listed, [(0, 0), (1, 10), (2, 20), (3, 30), (4, 4)]);
    }

    #[test]
    fn an_emptied_slab_shrinks_in_bounded_steps() {
        const N: usize = 100_000;
        let mut slots = filled(N);
        let full = slots.capacity();
        // Released oldest first, as a departed client's leases are: the end empties last.
        for key in 0..N {
            slots.remove(key);
        }
        assert!(slots.wants_trim());
        let calls = trim_all(&mut slots, 1000);
        assert!(
            calls >= (N - TRIM_FLOOR) / 1000,
            "{calls} calls of 1000 trimmed {N} entries"
        );
        assert!(
            slots.capacity() <= TRIM_FLOOR * 8 / 7 + 1,
            "capacity {} of {full} left",
            slots.capacity()
        );
        // The vacant list still serves every key below the floor, then the slab grows.
        for key in (0..TRIM_FLOOR).rev() {
            assert_eq!(slots.insert(0), key);
        }
        assert_eq!(slots.insert(0), TRIM_FLOOR);
        slots.check_invariants();
    }

    #[test]
    fn trimming_stops_at_a_live_entry_and_keeps_keys() {
        let mut slots = filled(50_000);
        for key in (0..50_000).filter(|&key| key != 20_000 && key != 10) {
            slots.remove(key);
        }
        trim_all(&mut slots, 4096);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[20_000], 20_000);
        assert_eq!(slots[10], 10);
        assert!(slots.capacity() < 20_000 * 8 / 7 + 2);
        // Once the high entry leaves, the rest can go.
        slots.remove(20_000);
        assert!(slots.wants_trim());
        trim_all(&mut slots, 4096);
        assert!(slots.capacity() <= TRIM_FLOOR * 8 / 7 + 1);
        assert_eq!(slots[10], 10);
    }

    #[test]
    fn entries_in_use_while_trimming_move_below_the_boundary() {
        const N: usize = 100_000;
        let mut slots = filled(N);
        // Twenty clients each hold an entry taken during the spike, above all of its entries.
        let mut held: Vec<usize> = (0..20).map(|i| slots.insert(i)).collect();
        for key in 0..N {
            slots.remove(key);
        }
        // Each turn every client gives its entry back and takes another, as a lock is released
        // and acquired again; then the turn's trim runs with the entries held. Last-freed-first
        // reuse alone would hand each client back the entry it just freed, at the end of the
        // slab, and the end would never be vacant when the trim looks.
        // A live entry at the end pauses trimming (no work is wanted) until it is released.
        let mut turns = 0;
        while slots.capacity() > TRIM_FLOOR * 8 / 7 + 1 {
            for key in held.iter_mut() {
                let value = slots.remove(*key);
                *key = slots.insert(value);
            }
            slots.trim(4096);
            slots.check_invariants();
            turns += 1;
            assert!(
                turns < 100,
                "{} entries left after {turns} turns",
                slots.capacity()
            );
        }
        assert!(!slots.wants_trim());
        // Popping 100 000 entries and sweeping half of each round's takes about 50 turns of
        // 4 096 (58 here): the held entries never kept the end from emptying for long.
        assert!(turns <= 64, "{turns} turns");
        for (value, &key) in held.iter().enumerate() {
            assert_eq!(slots[key], value as u64);
        }
    }

    #[test]
    fn a_busy_slab_is_not_trimmed() {
        let mut slots = filled(10_000);
        // Three in four vacant is not sparse enough; the end is vacant all the same.
        for key in (0..10_000).filter(|key| key % 4 != 0) {
            slots.remove(key);
        }
        assert!(!slots.wants_trim());
        assert_eq!(slots.trim(4096), 0);
        // Small slabs keep their room however empty they are.
        let mut small = filled(TRIM_FLOOR);
        for key in 0..TRIM_FLOOR {
            small.remove(key);
        }
        assert!(!small.wants_trim());
    }

    #[test]
    fn random_operations_keep_the_vacant_list_whole() {
        let mut slots = Slots::new();
        let mut live = Vec::new();
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for step in 0..200_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Phases of growth and of decline, so that trims happen between reuses.
            let growing = (step / 20_000) % 2 == 0;
            if live.is_empty() || (growing && state % 4 != 0) || (!growing && state % 4 == 0) {
                let key = slots.insert(step);
                live.push((key, step));
            } else {
                let (key, value) = live.swap_remove((state >> 8) as usize % live.len());
                assert_eq!(slots.remove(key), value);
            }
            if step % 97 == 0 {
                slots.trim(64);
            }
            if step % 9_973 == 0 {
                slots.check_invariants();
            }
        }
        slots.check_invariants();
        for &(key, value) in &live {
            assert_eq!(slots[key], value);
        }
        assert_eq!(slots.len(), live.len());
    }

    #[test]
    fn vacant_links_add_no_size() {
        // Eight bytes of links fit wherever `slab::Slab` puts its `usize`.
        assert_eq!(Slots::<u64>::ENTRY_SIZE, 16);
        assert_eq!(Slots::<[u64; 8]>::ENTRY_SIZE, 72);
    }
}
