//! What the engine counts for monitoring: per-namespace counters, gauges and wait and hold
//! histograms, signal counts, and the most contended keys.
//!
//! Everything is kept incrementally on the paths that change it (a few additions per grant,
//! release or queue change), so reading it is O(1) and the request path pays only those
//! additions. Counts the engine keeps anyway are not duplicated: the holders of a namespace are
//! its grants minus its lease ends, keys are counted by the keyspace, subscriptions by the
//! signal index.

use super::{ClientId, Engine};
use crate::budget::CONTENDED_SCAN;
use crate::clock::Millis;
use crate::metrics::Histogram;
use crate::protocol::Namespace;

/// Counters and histograms of one namespace (`ns="lock"` or `ns="semaphore"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsMetrics {
    /// Lease ends by [`LeaseEnd`]: an array, so counting an end is one indexed addition.
    ends: [u64; 4],
    acquire_timeouts: u64,
    wait: Histogram,
    hold: Histogram,
    /// Waiters queued now (gauge).
    pub(super) waiters: u64,
}

impl NsMetrics {
    /// Leases granted: at once, or to a waiter (a two-phase one included, when it is granted,
    /// not when `w` collects it). Every grant records its wait, so this is the wait
    /// histogram's count rather than a counter of its own.
    pub fn grants_total(&self) -> u64 {
        self.wait.count()
    }

    /// Leases ended by `r`/`sr` (an expired lease not yet swept included: the release
    /// succeeds).
    pub fn releases_total(&self) -> u64 {
        self.ends[LeaseEnd::Release as usize]
    }

    /// Leases that ran out without a release: their expiry, found by the timer or by a later
    /// request that met them (an acquire, `n`/`sn`, `w`/`sw`). Lost locks.
    pub fn lease_expirations_total(&self) -> u64 {
        self.ends[LeaseEnd::Expiry as usize]
    }

    /// Leases released because their owner's connection ended (auto-release on).
    pub fn disconnect_releases_total(&self) -> u64 {
        self.ends[LeaseEnd::Disconnect as usize]
    }

    /// Leases an admin ended with `evict`/`sevict`.
    pub fn evictions_total(&self) -> u64 {
        self.ends[LeaseEnd::Evict as usize]
    }

    /// `l`/`sl`/`w`/`sw` answered `timeout`: a wait that timed out, or a try (timeout 0) that
    /// found no free capacity.
    pub fn acquire_timeouts_total(&self) -> u64 {
        self.acquire_timeouts
    }

    /// Time from joining the queue to being granted; 0 for a grant at once.
    pub fn wait(&self) -> &Histogram {
        &self.wait
    }

    /// Time from grant to release, expiry, disconnect release or eviction.
    pub fn hold(&self) -> &Histogram {
        &self.hold
    }

    /// Leases held now: every grant not yet ended (each lease ends exactly once).
    pub fn holders(&self) -> u64 {
        self.grants_total() - self.ends.iter().sum::<u64>()
    }

    /// Waiters queued now: blocking acquires and two-phase entries not yet granted.
    pub fn waiters(&self) -> u64 {
        self.waiters
    }

    pub(super) fn count_timeout(&mut self) {
        self.acquire_timeouts += 1;
    }
}

/// The engine's monitoring counts, read through [`Engine::metrics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Indexed by `Namespace as usize`.
    namespaces: [NsMetrics; 2],
    signals_published: u64,
    signal_deliveries: u64,
    lock_events_dropped: u64,
    /// Recovers the grant time of a lease from its fence and low bits; see [`GrantStamp`].
    grant_epochs: GrantEpochs,
}

impl EngineMetrics {
    /// The counts of namespace `ns`.
    pub fn ns(&self, ns: Namespace) -> &NsMetrics {
        &self.namespaces[ns as usize]
    }

    /// `signal` requests accepted (each counts once, whether it reached anyone or not).
    pub fn signals_published_total(&self) -> u64 {
        self.signals_published
    }

    /// Signal pushes handed to subscribers' outputs.
    pub fn signal_deliveries_total(&self) -> u64 {
        self.signal_deliveries
    }

    /// Lock events dropped because too many signal operations were waiting
    /// ([`EVENT_BACKLOG`](crate::budget::EVENT_BACKLOG)).
    pub fn lock_events_dropped_total(&self) -> u64 {
        self.lock_events_dropped
    }

    pub(super) fn count_dropped_event(&mut self) {
        self.lock_events_dropped += 1;
    }

    /// When the lease with `stamp` and `fence` was granted.
    pub(super) fn granted_at(&self, stamp: GrantStamp, fence: u64) -> Millis {
        self.grant_epochs.granted_at(stamp, fence)
    }

    pub(super) fn ns_mut(&mut self, ns: Namespace) -> &mut NsMetrics {
        &mut self.namespaces[ns as usize]
    }

    pub(super) fn count_publish(&mut self) {
        self.signals_published += 1;
    }

    /// The count of copies placed, for the publish code to add to as it delivers.
    pub(super) fn deliveries_mut(&mut self) -> &mut u64 {
        &mut self.signal_deliveries
    }

    /// Counts a grant at `now` of a lease with fence `fence` that waited `waited_ms`, and
    /// returns the stamp the lease keeps to measure its hold time.
    #[inline]
    pub(super) fn on_grant(
        &mut self,
        ns: Namespace,
        now: Millis,
        fence: u64,
        waited_ms: u64,
    ) -> GrantStamp {
        self.ns_mut(ns).wait.observe_ms(waited_ms);
        self.grant_epochs.stamp(now, fence)
    }

    /// Counts the end at `now` of a lease granted with `stamp` and fence `fence`.
    #[inline]
    pub(super) fn on_lease_end(
        &mut self,
        ns: Namespace,
        end: LeaseEnd,
        now: Millis,
        stamp: GrantStamp,
        fence: u64,
    ) {
        let granted = self.grant_epochs.granted_at(stamp, fence);
        let m = &mut self.namespaces[ns as usize];
        m.ends[end as usize] += 1;
        m.hold.observe_ms(now.since(granted));
    }
}

/// Why a lease ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseEnd {
    /// `r`/`sr` with its token.
    Release = 0,
    /// Its lease ran out.
    Expiry = 1,
    /// Its owner's connection ended (auto-release).
    Disconnect = 2,
    /// An admin ended it with `evict`/`sevict`.
    Evict = 3,
}

impl LeaseEnd {
    /// Whether the slot rests for `--lock-delay` before its next grant: only when its holder
    /// was lost uncleanly and may still be writing. An explicit release never delays, and
    /// neither does an eviction: an operator evicts to unstick a key now, having decided the
    /// holder is gone (the holder learns of it at its next renewal, as after an expiry).
    #[inline]
    pub(super) fn delays(self) -> bool {
        matches!(self, LeaseEnd::Expiry | LeaseEnd::Disconnect)
    }
}

/// The low 24 bits of a lease's grant time in milliseconds.
///
/// A lease is 64 bytes with 3 bytes of padding, and a whole `Millis` would make it 72, so the
/// lease keeps only these bits; [`GrantEpochs`] supplies the rest from the lease's fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GrantStamp([u8; 3]);

impl GrantStamp {
    fn low_bits(self) -> u64 {
        let [a, b, c] = self.0;
        u64::from(u32::from_le_bytes([a, b, c, 0]))
    }
}

/// Bits of the grant time a [`GrantStamp`] keeps.
const STAMP_BITS: u32 = 24;

/// The high bits of grant times ("epochs" of 2^24 ms, about 4.7 hours), found again by fence.
///
/// Fences increase strictly with every grant, so the grants of one epoch are a range of fences.
/// Each time a grant falls in another epoch than the grant before, the epoch and its first
/// fence are recorded; a lease's epoch is then that of the last record at or below its fence.
/// The latest record is kept apart, so a grant and nearly every lease end (in the epoch of its
/// grant) compare with two fields and never touch the older records. One record per epoch in
/// which something was granted: about 1 900 a year.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct GrantEpochs {
    /// The epoch of the latest grant.
    epoch: u64,
    /// The first fence granted in `epoch`.
    first_fence: u64,
    /// `(epoch, first fence granted in it)` of the epochs before, in fence order.
    older: Vec<(u64, u64)>,
}

impl GrantEpochs {
    #[inline]
    fn stamp(&mut self, now: Millis, fence: u64) -> GrantStamp {
        let epoch = now.0 >> STAMP_BITS;
        if epoch != self.epoch {
            self.start_epoch(epoch, fence);
        }
        let [a, b, c, ..] = now.0.to_le_bytes();
        GrantStamp([a, b, c])
    }

    #[cold]
    fn start_epoch(&mut self, epoch: u64, fence: u64) {
        self.older.push((self.epoch, self.first_fence));
        self.epoch = epoch;
        self.first_fence = fence;
    }

    #[inline]
    fn granted_at(&self, stamp: GrantStamp, fence: u64) -> Millis {
        let epoch = if fence >= self.first_fence {
            self.epoch
        } else {
            self.older_epoch(fence)
        };
        Millis(epoch << STAMP_BITS | stamp.low_bits())
    }

    fn older_epoch(&self, fence: u64) -> u64 {
        let after = self.older.partition_point(|&(_, first)| first <= fence);
        // The first record is the starting state (epoch 0, fence 0), at or below every fence.
        after
            .checked_sub(1)
            .map_or(0, |record| self.older[record].0)
    }
}

/// The counts that are not counters: what exists now in one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsGauges {
    /// Resources (locks or semaphores) that exist, idle ones included.
    pub keys: u64,
    /// Leases held.
    pub holders: u64,
    /// Waiters queued.
    pub waiters: u64,
    /// Keys with at least one waiter: the candidates of [`Engine::contended`].
    pub contended_keys: u64,
}

/// A key with waiters, as [`Engine::contended`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContendedKey {
    /// The key as clients sent it.
    pub key: Vec<u8>,
    /// The connection number (`owner_conn_id` in `stats`) of the longest-standing holder (a
    /// key with waiters always has a holder: free capacity goes to the queue at once).
    pub holder_serial: u64,
    /// That holder's client while it is still connected, so the server can name its peer
    /// address; `None` if it has left (auto-release off, or its release is still queued).
    pub holder: Option<ClientId>,
    /// How long that holder has held it, in milliseconds.
    pub held_ms: u64,
    /// Leases held on the key (1 for a lock).
    pub holders: u64,
    /// Waiters queued on the key.
    pub waiters: u64,
    /// How long the first waiter has waited, in milliseconds.
    pub oldest_wait_ms: u64,
}

impl Engine {
    /// The engine's counters and histograms.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// What exists now in namespace `ns`. O(1).
    pub fn gauges(&self, ns: Namespace) -> NsGauges {
        let m = self.metrics.ns(ns);
        NsGauges {
            keys: self.keys.count(ns),
            holders: m.holders(),
            waiters: m.waiters(),
            contended_keys: u64::from(self.keys.waited(ns).len()),
        }
    }

    /// Signal subscriptions that exist now. O(1).
    pub fn subscriptions(&self) -> u64 {
        self.signals.len() as u64
    }

    /// Up to `n` of the most contended keys of namespace `ns`: most waiters first, then the
    /// longest current wait, then by key; durations measured at `now`.
    ///
    /// Bounded work however many keys exist: only keys with waiters can rank, and the engine
    /// keeps those on a list of their own (in the order they gained their first waiter), of
    /// which at most [`CONTENDED_SCAN`] are examined. Past that many contended keys the ranking
    /// is among the ones contended longest without a break, which are where the longest waits
    /// are; [`NsGauges::contended_keys`] tells whether the cap was reached. A ranked structure
    /// kept up to date on every queue change would be exact, but would cost every contended
    /// acquire and grant a reordering to serve a call an operator makes once a second.
    pub fn contended(&self, ns: Namespace, n: usize, now: Millis) -> Vec<ContendedKey> {
        let resources = &self.keys.resources;
        let waited = self.keys.waited(ns);
        let mut candidates: Vec<(u32, u64, u32)> =
            Vec::with_capacity((waited.len() as usize).min(CONTENDED_SCAN));
        let mut cursor = waited.head();
        while let Some(resource) = cursor {
            if candidates.len() == CONTENDED_SCAN {
                break;
            }
            let r = &resources[resource as usize];
            let oldest = r
                .queue
                .head()
                .map_or(0, |w| now.since(self.waiters[w as usize].enqueued_at));
            candidates.push((r.queue.len(), oldest, resource));
            cursor = self.keys.next_waited(resource);
        }
        let rank = |a: &(u32, u64, u32), b: &(u32, u64, u32)| {
            b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then_with(|| {
                resources[a.2 as usize]
                    .key
                    .cmp(&resources[b.2 as usize].key)
            })
        };
        if candidates.len() > n && n > 0 {
            candidates.select_nth_unstable_by(n - 1, rank);
        }
        candidates.truncate(n);
        candidates.sort_unstable_by(rank);
        candidates
            .into_iter()
            .map(|(waiters, oldest_wait_ms, resource)| {
                let r = &resources[resource as usize];
                let head = r.holders.head().map(|lease| &self.leases[lease as usize]);
                ContendedKey {
                    key: r.key.to_vec(),
                    holder_serial: head.map_or(0, |l| l.owner.serial),
                    holder: head
                        .map(|l| l.owner.client)
                        .filter(|&client| self.clients.contains(client)),
                    held_ms: head.map_or(0, |l| {
                        let granted = self
                            .metrics
                            .grant_epochs
                            .granted_at(l.granted, l.token.fence);
                        now.since(granted)
                    }),
                    holders: u64::from(r.holders.len()),
                    waiters: u64::from(waiters),
                    oldest_wait_ms,
                }
            })
            .collect()
    }

    /// Panics if the gauges disagree with the state they summarise. For
    /// [`Engine::check_invariants`].
    pub(super) fn check_metrics(&self) {
        for ns in [Namespace::Lock, Namespace::Semaphore] {
            let resources = || {
                self.keys
                    .resources
                    .iter()
                    .filter(move |(_, r)| r.ns() == ns)
            };
            let gauges = self.gauges(ns);
            assert_eq!(gauges.keys, resources().count() as u64, "{ns:?} keys gauge");
            let holders: u64 = resources().map(|(_, r)| u64::from(r.holders.len())).sum();
            assert_eq!(gauges.holders, holders, "{ns:?} holders gauge");
            let waiters: u64 = resources().map(|(_, r)| u64::from(r.queue.len())).sum();
            assert_eq!(gauges.waiters, waiters, "{ns:?} waiters gauge");
            let contended = resources().filter(|(_, r)| !r.queue.is_empty()).count();
            assert_eq!(
                gauges.contended_keys, contended as u64,
                "{ns:?} contended keys"
            );
        }
        for (slot, lease) in self.leases.iter() {
            let granted = self
                .metrics
                .grant_epochs
                .granted_at(lease.granted, lease.token.fence);
            // Granted at some `now`, and every expiry since was set to a later `now` plus a lease.
            assert!(
                granted <= self.expiry(slot as u32),
                "lease {slot} granted after it expires"
            );
        }
    }
}
