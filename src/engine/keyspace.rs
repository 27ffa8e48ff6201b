//! Resources by key: the lock and semaphore namespaces, the `--max-locks` budget and idle GC.
//!
//! A resource is created on demand by an acquire or enqueue and lives until idle GC removes it
//! (spec §8.6, §8.7). Resources with no holders and no waiters sit on an *idle list* ordered by
//! last activity, so a GC pass touches only the entries it removes (or the first one it keeps),
//! never the whole keyspace. Resources with waiters sit on their namespace's *waited list*
//! instead, so ranking the most contended keys looks only at keys that can rank. A resource is
//! never on both (one with waiters is not idle), so both lists run through the same link.
//!
//! Each key is stored once, in its resource; the index is a hash table of resource slots (4 bytes
//! per entry) whose hashes are computed from the resources themselves. It resizes incrementally
//! ([`IncrementalTable`]), so neither a million new keys nor their collection stalls a turn. Keys
//! come from clients, so they are hashed with std's randomly keyed SipHash, which resists hash
//! flooding.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::num::NonZeroU64;

use super::list::{Link, List};
use crate::clock::Millis;
use crate::protocol::Namespace;
use crate::slots::Slots;
use crate::table::IncrementalTable;

/// A key as clients send it. Keys of up to 16 bytes (most of them) are stored inline: a separate
/// heap block would cost more than the key itself.
pub type Key = smallvec::SmallVec<[u8; 16]>;

/// The capacity field of a lock. No semaphore has it: a limit is at most `i64::MAX`.
const LOCK_CAPACITY: NonZeroU64 = NonZeroU64::MAX;

/// The capacity field of a semaphore of `limit` holders. The protocol admits limits of 1 to
/// `i64::MAX`; the engine's own callers (tests, fuzz targets) are held to the same range.
fn semaphore_capacity(limit: u64) -> NonZeroU64 {
    debug_assert!((1..=i64::MAX as u64).contains(&limit), "limit {limit}");
    NonZeroU64::new(limit.clamp(1, i64::MAX as u64)).unwrap_or(NonZeroU64::MIN)
}

/// One lock or semaphore.
#[derive(Debug)]
pub struct Resource {
    /// The key as the client sent it; kept for `stats` and to leave the key index on removal.
    pub key: Key,
    /// The capacity, which also tells the namespace: [`LOCK_CAPACITY`] stands for a lock
    /// (capacity 1, lock namespace), anything else is a semaphore's limit. One field rather than
    /// two keeps a resource at 72 bytes, which matters with a million keys, and its never-zero
    /// type gives the slab's vacant/occupied tag a niche, so a slab entry is 72 bytes too. Read
    /// it through [`Resource::ns`] and [`Resource::limit`].
    capacity: NonZeroU64,
    /// Current holders (leases), in grant order.
    pub holders: List,
    /// Waiters, strictly FIFO: blocking acquires and two-phase enqueues share one queue.
    pub queue: List,
    /// Last activity in the sense of spec §8.7; drives idle GC.
    pub last_activity: Millis,
    /// Position in the idle list while the resource has no holders and no waiters, or in its
    /// namespace's waited list while it has waiters.
    pub list_link: Link,
}

impl Resource {
    /// Which namespace the key lives in.
    pub fn ns(&self) -> Namespace {
        if self.capacity == LOCK_CAPACITY {
            Namespace::Lock
        } else {
            Namespace::Semaphore
        }
    }

    /// Capacity: 1 for locks, fixed by the creating request for semaphores.
    pub fn limit(&self) -> u64 {
        match self.capacity {
            LOCK_CAPACITY => 1,
            limit => limit.get(),
        }
    }

    /// No holders and no waiters: only idle GC is interested in it.
    pub fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }
}

/// Random SipHash keys, one per namespace (by `Namespace as usize`).
type KeyHashers = [RandomState; 2];

/// The index hash of (`ns`, `key`): one SipHash pass over the key bytes, keyed by the
/// namespace's own random keys. The key is the only input, so it needs no length prefix (which
/// hashing a slice or a tuple would add), and the namespace costs no extra write: both would be
/// paid on every request.
fn key_hash(hashers: &KeyHashers, ns: Namespace, key: &[u8]) -> u64 {
    let mut state = hashers[ns as usize].build_hasher();
    state.write(key);
    state.finish()
}

/// The index hash of the resource in `slot`, for entries the index moves while it resizes.
fn slot_hash(hashers: &KeyHashers, resources: &Slots<Resource>, slot: u32) -> u64 {
    let r = &resources[slot as usize];
    key_hash(hashers, r.ns(), &r.key)
}

fn list_link(resource: &mut Resource) -> &mut Link {
    &mut resource.list_link
}

/// Why a resource could not be looked up or created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Creating it would exceed `--max-locks`.
    MaxLocks,
    /// It exists as a semaphore with another limit.
    LimitMismatch,
}

/// Every resource, addressable by (namespace, key) and by index.
#[derive(Debug, Default)]
pub struct Keyspace {
    /// Resource entries; indices are stable while the resource lives.
    pub resources: Slots<Resource>,
    /// Slots of `resources`, found by the hash of (namespace, key).
    index: IncrementalTable<u32>,
    hashers: KeyHashers,
    /// Idle resources, oldest activity first.
    idle: List,
    /// Resources with waiters, by `Namespace as usize`, in the order they gained their first
    /// waiter (the longest contended first).
    waited: [List; 2],
    /// Resources by `Namespace as usize`.
    counts: [u64; 2],
}

impl Keyspace {
    fn hash(&self, ns: Namespace, key: &[u8]) -> u64 {
        key_hash(&self.hashers, ns, key)
    }

    /// Number of resources (both namespaces); what `--max-locks` counts.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Number of resources of namespace `ns`.
    pub fn count(&self, ns: Namespace) -> u64 {
        self.counts[ns as usize]
    }

    /// The resource for `key`, if it exists.
    pub fn find(&self, ns: Namespace, key: &[u8]) -> Option<u32> {
        let resources = &self.resources;
        self.index
            .find(self.hash(ns, key), |&slot| {
                let r = &resources[slot as usize];
                r.ns() == ns && *r.key == *key
            })
            .copied()
    }

    /// The resource for `key`, created with `limit` if missing. An existing semaphore must have
    /// the same limit (spec §8.8); locks always have limit 1.
    pub fn find_or_create(
        &mut self,
        ns: Namespace,
        key: &[u8],
        limit: u64,
        max_resources: u64,
        now: Millis,
    ) -> Result<u32, KeyError> {
        if let Some(index) = self.find(ns, key) {
            return if self.resources[index as usize].limit() == limit {
                Ok(index)
            } else {
                Err(KeyError::LimitMismatch)
            };
        }
        if self.resources.len() as u64 >= max_resources {
            return Err(KeyError::MaxLocks);
        }
        self.counts[ns as usize] += 1;
        let entry = self.resources.vacant_entry();
        let index = entry.key() as u32;
        entry.insert(Resource {
            key: Key::from_slice(key),
            capacity: match ns {
                Namespace::Lock => LOCK_CAPACITY,
                Namespace::Semaphore => semaphore_capacity(limit),
            },
            holders: List::default(),
            queue: List::default(),
            last_activity: now,
            list_link: Link::DETACHED,
        });
        let (hashers, resources) = (&self.hashers, &self.resources);
        self.index
            .insert_unique(key_hash(hashers, ns, key), index, |&slot| {
                slot_hash(hashers, resources, slot)
            });
        Ok(index)
    }

    /// Records activity on `index` at `now`, and takes it off the idle list: its place there is
    /// stale now. [`Keyspace::settle`] must follow before the engine operation ends; it puts the
    /// resource back at the young end if it is still idle. Nearly every touched resource is about
    /// to gain a holder or waiter, so this costs one unlink where moving it to the young end on
    /// every touch would cost an unlink and a link, undone again by the settle.
    pub fn touch(&mut self, index: u32, now: Millis) {
        self.resources[index as usize].last_activity = now;
        if self.is_listed(index) {
            self.idle.remove(&mut self.resources, index, list_link);
        }
    }

    /// Puts `index` on or off the idle list to match its state. Call after its holders or waiters
    /// change and after every [`Keyspace::touch`]. Every such change is activity (spec §8.7) and
    /// comes with a touch, which is what keeps an entry joining at the back in activity order.
    pub fn settle(&mut self, index: u32) {
        match (
            self.resources[index as usize].is_idle(),
            self.is_listed(index),
        ) {
            (true, false) => self.idle.push_back(&mut self.resources, index, list_link),
            (false, true) => self.idle.remove(&mut self.resources, index, list_link),
            _ => {}
        }
    }

    /// Whether `index` is on the idle list: linked to a neighbour, or the list's only entry.
    /// A resource with waiters is never on it (its link then serves the waited list).
    fn is_listed(&self, index: u32) -> bool {
        let resource = &self.resources[index as usize];
        (!resource.list_link.is_detached() || self.idle.head() == Some(index))
            && resource.queue.is_empty()
    }

    /// Call when `index`'s queue goes from empty to one waiter: puts it on its namespace's
    /// waited list. It was touched (so it is off the idle list) and has no free capacity: its
    /// slots are held or, under `--lock-delay`, resting (the engine checks that, since only it
    /// knows of delays).
    pub fn gained_waiters(&mut self, index: u32) {
        let resource = &self.resources[index as usize];
        debug_assert!(resource.queue.len() == 1);
        debug_assert!(resource.list_link.is_detached() && self.idle.head() != Some(index));
        let ns = resource.ns() as usize;
        self.waited[ns].push_back(&mut self.resources, index, list_link);
    }

    /// Call when `index`'s queue goes from one waiter to empty: takes it off its waited list.
    pub fn lost_waiters(&mut self, index: u32) {
        debug_assert!(self.resources[index as usize].queue.is_empty());
        let ns = self.resources[index as usize].ns() as usize;
        self.waited[ns].remove(&mut self.resources, index, list_link);
    }

    /// Resources of namespace `ns` with waiters, the longest contended first.
    pub fn waited(&self, ns: Namespace) -> List {
        self.waited[ns as usize]
    }

    /// The resource after `index` on its waited list.
    pub fn next_waited(&self, index: u32) -> Option<u32> {
        self.resources[index as usize].list_link.next()
    }

    /// Whether the resource slab is mostly empty and [`Keyspace::trim`] would give memory back.
    pub fn wants_trim(&self) -> bool {
        self.resources.wants_trim()
    }

    /// Drops up to `budget` vacant resource entries; returns how many. The key index shrinks by
    /// itself as keys leave it.
    pub fn trim(&mut self, budget: usize) -> usize {
        self.resources.trim(budget)
    }

    /// Whether the key index is resizing, holding its old table until the move ends.
    pub fn index_resizing(&self) -> bool {
        self.index.is_resizing()
    }

    /// Advances a resize of the key index by about `budget` units; returns how many were used.
    pub fn advance_index(&mut self, budget: usize) -> usize {
        let (hashers, resources) = (&self.hashers, &self.resources);
        self.index
            .advance(budget, |&slot| slot_hash(hashers, resources, slot))
    }

    /// Whether any resource is idle (so a GC pass could have work).
    pub fn has_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// Removes up to `budget` idle resources whose last activity is at least `max_idle_ms` old.
    /// Returns how many were removed; fewer than `budget` means none is left to collect now.
    /// The pass stops at the first resource `pinned` keeps (one in a lock-delay), which holds
    /// back younger ones only until its delay ends.
    pub fn collect_idle(
        &mut self,
        now: Millis,
        max_idle_ms: u64,
        budget: usize,
        pinned: impl Fn(u32) -> bool,
    ) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some(index) = self.idle.head() else { break };
            if now.since(self.resources[index as usize].last_activity) < max_idle_ms
                || pinned(index)
            {
                break;
            }
            self.idle.remove(&mut self.resources, index, list_link);
            let resource = self.resources.remove(index as usize);
            self.counts[resource.ns() as usize] -= 1;
            let (hashers, resources) = (&self.hashers, &self.resources);
            self.index.remove(
                key_hash(hashers, resource.ns(), &resource.key),
                |&slot| slot == index,
                |&slot| slot_hash(hashers, resources, slot),
            );
            removed += 1;
        }
        removed
    }

    /// Panics if the index, the slab and the idle list disagree. For tests and fuzz targets.
    pub fn check_invariants(&mut self) {
        assert_eq!(
            self.index.len(),
            self.resources.len(),
            "key index and resource slab differ in size"
        );
        for (slot, resource) in self.resources.iter() {
            assert_eq!(
                self.find(resource.ns(), &resource.key),
                Some(slot as u32),
                "resource not found under its own key"
            );
            if resource.ns() == Namespace::Lock {
                assert_eq!(resource.limit(), 1, "lock with limit other than 1");
            }
        }
        let mut idle = Vec::new();
        self.idle
            .collect_into(&mut self.resources, list_link, &mut idle);
        let mut last = Millis::ZERO;
        for &index in &idle {
            let resource = &self.resources[index as usize];
            assert!(resource.is_idle(), "busy resource on the idle list");
            assert!(
                resource.last_activity >= last,
                "idle list out of activity order"
            );
            last = resource.last_activity;
        }
        let idle_count = self.resources.iter().filter(|(_, r)| r.is_idle()).count();
        assert_eq!(
            idle_count,
            idle.len(),
            "idle resource missing from the idle list"
        );
        let mut waited = Vec::new();
        for ns in [Namespace::Lock, Namespace::Semaphore] {
            self.waited[ns as usize].collect_into(&mut self.resources, list_link, &mut waited);
            for &index in &waited {
                let resource = &self.resources[index as usize];
                assert!(
                    resource.ns() == ns && !resource.queue.is_empty(),
                    "resource without waiters, or of the other namespace, on a waited list"
                );
            }
            let with_waiters = self
                .resources
                .iter()
                .filter(|(_, r)| r.ns() == ns && !r.queue.is_empty())
                .count();
            assert_eq!(
                with_waiters,
                waited.len(),
                "resource with waiters missing from the waited list"
            );
            let resources = self.resources.iter().filter(|(_, r)| r.ns() == ns).count();
            assert_eq!(self.count(ns), resources as u64, "resource count of {ns:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate_and_limits_must_match() {
        let mut keys = Keyspace::default();
        let lock = keys
            .find_or_create(Namespace::Lock, b"k", 1, 10, Millis(0))
            .unwrap();
        let sem = keys
            .find_or_create(Namespace::Semaphore, b"k", 3, 10, Millis(0))
            .unwrap();
        assert_ne!(lock, sem);
        assert_eq!(
            keys.find_or_create(Namespace::Semaphore, b"k", 4, 10, Millis(0)),
            Err(KeyError::LimitMismatch)
        );
        assert_eq!(keys.find(Namespace::Lock, b"k"), Some(lock));
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn the_budget_counts_both_namespaces() {
        let mut keys = Keyspace::default();
        keys.find_or_create(Namespace::Lock, b"a", 1, 2, Millis(0))
            .unwrap();
        keys.find_or_create(Namespace::Semaphore, b"a", 2, 2, Millis(0))
            .unwrap();
        assert_eq!(
            keys.find_or_create(Namespace::Lock, b"b", 1, 2, Millis(0)),
            Err(KeyError::MaxLocks)
        );
        // Existing entries stay reachable at the cap.
        assert!(
            keys.find_or_create(Namespace::Lock, b"a", 1, 2, Millis(0))
                .is_ok()
        );
    }

    #[test]
    fn gc_removes_the_oldest_idle_entries_first() {
        let mut keys = Keyspace::default();
        for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
            let index = keys
                .find_or_create(Namespace::Lock, *key, 1, 10, Millis(i as u64 * 10))
                .unwrap();
            keys.settle(index);
        }
        // Activity on "a" makes it the youngest.
        let a = keys.find(Namespace::Lock, b"a").unwrap();
        keys.touch(a, Millis(25));
        keys.settle(a);
        keys.check_invariants();
        assert_eq!(keys.collect_idle(Millis(30), 10, 100, |_| false), 2);
        assert!(keys.find(Namespace::Lock, b"b").is_none());
        assert!(keys.find(Namespace::Lock, b"c").is_none());
        assert_eq!(keys.collect_idle(Millis(34), 10, 100, |_| false), 0);
        assert_eq!(keys.collect_idle(Millis(35), 10, 100, |_| false), 1);
        assert_eq!(keys.len(), 0);
        assert!(!keys.has_idle());
        keys.check_invariants();
    }
}
