//! Monitoring counts: every counter moves by exactly what the operations imply, the wait and
//! hold histograms see the times the clock implies, the gauges return to 0 once everything is
//! gone, and the contended-keys view ranks and bounds as documented. (The harness's invariant
//! check also compares the gauges with the state after every step.)

use super::harness::{Harness, acquired, config, granted, renew_arg};
use crate::budget::CONTENDED_SCAN;
use crate::engine::{ClientId, Lease, NsGauges, NsMetrics, Outcome, Waiter};
use crate::metrics::{BUCKETS, bucket_index};
use crate::protocol::Namespace::{self, Lock, Semaphore};
use crate::protocol::Response;

impl Harness {
    fn m(&self, ns: Namespace) -> &NsMetrics {
        self.engine.metrics().ns(ns)
    }

    fn gauges(&self, ns: Namespace) -> NsGauges {
        self.engine.gauges(ns)
    }
}

/// The per-bucket counts of a histogram that saw exactly `ms` (each in milliseconds).
fn buckets_of(ms: &[u64]) -> [u64; BUCKETS] {
    let mut buckets = [0; BUCKETS];
    for &ms in ms {
        buckets[bucket_index(ms * 1000)] += 1;
    }
    buckets
}

/// `(grants, releases, expirations, disconnect releases, timeouts)` of `ns`.
fn counters(h: &Harness, ns: Namespace) -> (u64, u64, u64, u64, u64) {
    let m = h.m(ns);
    (
        m.grants_total(),
        m.releases_total(),
        m.lease_expirations_total(),
        m.disconnect_releases_total(),
        m.acquire_timeouts_total(),
    )
}

#[test]
fn a_lease_a_resource_and_a_waiter_stay_within_their_byte_budgets() {
    use crate::engine::keyspace::Resource;
    use crate::slots::Slots;
    // The grant time lives in the lease's padding; a whole `Millis` would make it 72 bytes.
    assert_eq!(size_of::<Lease>(), 64);
    // An inline key costs 24 bytes only with smallvec's `union` feature; without it the
    // inline/heap tag takes a word of its own and a resource is 80 bytes.
    assert_eq!(size_of::<Resource>(), 72);
    assert_eq!(size_of::<Waiter>(), 56);
    // Their slab entries need no tag of their own.
    assert_eq!(Slots::<Lease>::ENTRY_SIZE, 64);
    assert_eq!(Slots::<Resource>::ENTRY_SIZE, 72);
}

#[test]
fn a_timer_payload_is_four_bytes_and_names_every_index_below_the_cap() {
    use crate::engine::{Due, MAX_TIMED_ENTRIES, PackedDue};
    // Four bytes make the wheel's entry 24 bytes: one per held lease.
    assert_eq!(size_of::<PackedDue>(), 4);
    let last = MAX_TIMED_ENTRIES as u32 - 1;
    for index in [0, 1, 12_345, last] {
        for due in [
            Due::LeaseExpiry(index),
            Due::WaitTimeout(index),
            Due::LockDelayEnd(index),
        ] {
            assert_eq!(due.pack().unpack(), due);
        }
    }
    assert_eq!(Due::IdleGc.pack().unpack(), Due::IdleGc);
}

#[test]
fn lock_counters_move_by_exactly_what_each_operation_implies() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    assert_eq!(counters(&h, Lock), (0, 0, 0, 0, 0));

    // An immediate grant waited 0.
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    assert_eq!(counters(&h, Lock), (1, 0, 0, 0, 0));
    // A try while held times out at once; a blocking acquire queues.
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    assert_eq!(counters(&h, Lock), (1, 0, 0, 0, 1));
    h.block(b, "l", "k", "60 5");
    let g = h.gauges(Lock);
    assert_eq!(
        (g.keys, g.holders, g.waiters, g.contended_keys),
        (1, 1, 1, 1)
    );

    // Released after 2.5 s: b is granted after waiting 2.5 s.
    h.at(2_500);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 5);
    assert_eq!(counters(&h, Lock), (2, 1, 0, 0, 1));
    assert_eq!(h.gauges(Lock).waiters, 0);
    assert_eq!(h.gauges(Lock).contended_keys, 0);

    // b's 5 s lease runs out: a lost lock.
    h.at(7_500);
    assert_eq!(counters(&h, Lock), (2, 1, 1, 0, 1));

    // c waits 1 s in vain behind a new holder a, which then disconnects.
    granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(c, "l", "k", "1");
    h.at(8_500);
    assert_eq!(h.reply(c), Response::Timeout);
    assert_eq!(counters(&h, Lock), (3, 1, 1, 0, 2));
    h.at(9_000);
    h.disconnect(a);
    assert_eq!(counters(&h, Lock), (3, 1, 1, 1, 2));

    let m = h.m(Lock);
    assert_eq!(m.wait().buckets(), &buckets_of(&[0, 2_500, 0]));
    assert_eq!(m.wait().sum_us(), 2_500_000);
    assert_eq!(m.hold().buckets(), &buckets_of(&[2_500, 5_000, 1_500]));
    assert_eq!(m.hold().sum_us(), 9_000_000);
    assert_eq!(counters(&h, Semaphore), (0, 0, 0, 0, 0));
    let g = h.gauges(Lock);
    assert_eq!(
        (g.keys, g.holders, g.waiters, g.contended_keys),
        (1, 0, 0, 0)
    );
    // Idle GC removes the key: every gauge is back at 0.
    h.advance(120_000);
    assert_eq!(h.gauges(Lock), NsGauges::default());
    h.finish();
}

#[test]
fn semaphore_counters_are_kept_apart_from_lock_counters() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "k", "0 2 30"), 30);
    granted(h.ask(b, "sl", "k", "0 2 30"), 30);
    h.block(c, "sl", "k", "60 2 30");
    h.block(d, "sl", "k", "60 2 30");
    let g = h.gauges(Semaphore);
    assert_eq!(
        (g.keys, g.holders, g.waiters, g.contended_keys),
        (1, 2, 2, 1)
    );
    // A lock of the same name is another key in another namespace.
    granted(h.ask(a, "l", "k", "0 30"), 30);
    assert_eq!(h.gauges(Lock).keys, 1);

    h.at(100);
    assert_eq!(h.ask(a, "sr", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 30);
    assert_eq!(h.gauges(Semaphore).waiters, 1);
    // b leaves: its lease goes to d.
    h.at(300);
    h.disconnect(b);
    granted(h.reply(d), 30);
    assert_eq!(counters(&h, Semaphore), (4, 1, 0, 1, 0));
    assert_eq!(counters(&h, Lock), (1, 0, 0, 0, 0));
    let m = h.m(Semaphore);
    assert_eq!(m.wait().buckets(), &buckets_of(&[0, 0, 100, 300]));
    assert_eq!(m.hold().buckets(), &buckets_of(&[100, 300]));
    let g = h.gauges(Semaphore);
    assert_eq!(
        (g.keys, g.holders, g.waiters, g.contended_keys),
        (1, 2, 0, 0)
    );
    h.finish();
}

#[test]
fn two_phase_waits_run_from_the_enqueue_and_timeouts_and_lost_grants_count() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    // Granted at once by `e`: a grant that waited 0, collected later by `w`.
    let ta = acquired(h.ask(a, "e", "k", "30"), 30);
    h.at(1_000);
    assert_eq!(granted(h.ask(a, "w", "k", "5"), 30), ta);
    // b queues at 1 s; a `w 0` while queued is a timeout; it stays queued.
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::Timeout);
    assert_eq!(counters(&h, Lock), (1, 0, 0, 0, 1));
    // b's `w 0` gave up its place; it queues again at 1 s, and c behind it.
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    assert_eq!(h.ask(c, "e", "k", "30"), Response::Queued);
    assert_eq!(h.gauges(Lock).waiters, 2);
    // a releases at 4 s: b is granted silently after waiting 3 s, and never collects it.
    h.at(4_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    assert_eq!(counters(&h, Lock), (2, 1, 0, 0, 1));
    // Its 2 s lease runs out at 6 s (a lost lease), granting c, which waited 5 s.
    h.at(6_000);
    assert_eq!(counters(&h, Lock), (3, 1, 1, 0, 1));
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    // c collects at 7 s and the timer restarts its lease there; its hold still counts from
    // the grant.
    h.at(7_000);
    let tc = granted(h.ask(c, "w", "k", "1"), 30);
    h.at(8_000);
    assert_eq!(h.ask(c, "r", "k", &tc.to_string()), Response::Ok);
    let m = h.m(Lock);
    assert_eq!(m.wait().buckets(), &buckets_of(&[0, 3_000, 5_000]));
    assert_eq!(m.wait().sum_us(), 8_000_000);
    assert_eq!(m.hold().buckets(), &buckets_of(&[4_000, 2_000, 2_000]));
    assert_eq!(m.hold().sum_us(), 8_000_000);
    assert_eq!(counters(&h, Lock), (3, 2, 1, 0, 1));
    h.finish();
}

#[test]
fn a_collected_grant_that_ran_out_counts_as_an_expiration() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    assert_eq!(h.ask(b, "e", "k", "1"), Response::Queued);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // b's silent grant has run out by the time `w` arrives, before the timer was handled.
    h.skip_to(1_500);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorLeaseExpired);
    assert_eq!(counters(&h, Lock), (2, 1, 1, 0, 0));
    assert_eq!(h.m(Lock).hold().sum_us(), 1_500_000);
    h.finish();
}

#[test]
fn hold_times_stay_exact_across_many_hours_and_lease_lengths() {
    // Grant times are kept as 24 low bits (about 4.7 hours) plus an epoch found by fence; holds
    // spanning several epochs, granted in different epochs, must come out exact.
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let epoch = 1u64 << 24;
    let long = granted(h.ask(a, "l", "long", "0 100000"), 100_000);
    h.at(epoch - 1);
    let short = granted(h.ask(b, "l", "short", "0 100"), 100);
    h.at(epoch + 5);
    assert_eq!(h.ask(b, "r", "short", &short.to_string()), Response::Ok);
    h.at(3 * epoch + 7);
    // Renewed three times along the way would not change anything: hold counts from the grant.
    assert_eq!(
        h.ask(a, "n", "long", &renew_arg(long, Some(100_000))),
        Response::Renewed { lease_s: 100_000 }
    );
    h.at(5 * epoch + 11);
    assert_eq!(h.ask(a, "r", "long", &long.to_string()), Response::Ok);
    let hold = h.m(Lock).hold();
    assert_eq!(hold.count(), 2);
    assert_eq!(hold.sum_us(), (6 + 5 * epoch + 11) * 1000);
    assert_eq!(hold.buckets()[bucket_index(6_000)], 1);
    assert_eq!(hold.buckets()[BUCKETS - 1], 1);
    h.finish();
}

#[test]
fn signals_count_publishes_and_copies_delivered() {
    let mut h = Harness::with_defaults();
    let [a, b, p] = [h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "x.*", ""), Response::Ok);
    assert_eq!(h.ask(b, "listen", "x.y", ""), Response::Ok);
    assert_eq!(h.engine.subscriptions(), 2);
    assert_eq!(
        h.ask(p, "signal", "x.y", "hi"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(
        h.ask(p, "signal", "nobody", "hi"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.pushes().len(), 2);
    let metrics = h.engine.metrics();
    assert_eq!(metrics.signals_published_total(), 2);
    assert_eq!(metrics.signal_deliveries_total(), 2);
    h.disconnect(a);
    h.run_due();
    assert_eq!(h.engine.subscriptions(), 1);
    h.finish();
}

/// Locks `key` for `holder` and queues `waiters` new clients behind it, at the current time.
fn contend(h: &mut Harness, holder: ClientId, key: &str, waiters: usize) -> Vec<ClientId> {
    granted(h.ask(holder, "l", key, "0 600"), 600);
    (0..waiters)
        .map(|_| {
            let waiter = h.client();
            h.block(waiter, "l", key, "600");
            waiter
        })
        .collect()
}

#[test]
fn contended_keys_rank_by_waiters_then_by_the_longest_wait() {
    let mut h = Harness::with_defaults();
    let holder = h.client_with_serial(42);
    // "b" has its first waiter since 0, "c" since 1 s, "a" since 2 s, "d" since 3 s; "b" and "c"
    // have two waiters, the others one. "free" is held without waiters and cannot rank.
    let mut first_waiters = contend(&mut h, holder, "b", 1);
    h.at(1_000);
    first_waiters.extend(&contend(&mut h, holder, "c", 2)[..1]);
    h.at(2_000);
    first_waiters.extend(contend(&mut h, holder, "a", 1));
    h.at(3_000);
    first_waiters.extend(contend(&mut h, holder, "d", 1));
    let extra = h.client();
    h.block(extra, "l", "b", "600");
    granted(h.ask(holder, "l", "free", "0"), 33);
    // A semaphore with waiters ranks in its own namespace only.
    let sem_holder = h.client();
    granted(h.ask(sem_holder, "sl", "s", "0 1 600"), 600);
    let sem_waiter = h.client();
    h.block(sem_waiter, "sl", "s", "600 1");
    h.at(5_000);

    let ranked = h.engine.contended(Lock, 10, h.now);
    let keys: Vec<&[u8]> = ranked.iter().map(|c| c.key.as_slice()).collect();
    assert_eq!(keys, [&b"b"[..], b"c", b"a", b"d"]);
    let b = &ranked[0];
    assert_eq!(
        (
            b.holder_serial,
            b.holder,
            b.held_ms,
            b.holders,
            b.waiters,
            b.oldest_wait_ms
        ),
        (42, Some(holder), 5_000, 1, 2, 5_000)
    );
    assert_eq!((ranked[1].waiters, ranked[1].oldest_wait_ms), (2, 4_000));
    assert_eq!(
        (ranked[3].held_ms, ranked[3].oldest_wait_ms),
        (2_000, 2_000)
    );
    let top2 = h.engine.contended(Lock, 2, h.now);
    assert_eq!(top2, ranked[..2]);
    assert!(h.engine.contended(Lock, 0, h.now).is_empty());
    let sems = h.engine.contended(Semaphore, 10, h.now);
    assert_eq!(sems.len(), 1);
    assert_eq!((sems[0].key.as_slice(), sems[0].waiters), (&b"s"[..], 1));
    assert_eq!(h.gauges(Lock).contended_keys, 4);

    // Once the holder leaves, every lock goes to its first waiter: "b" (extra, queued at 3 s)
    // and "c" (its second waiter, queued at 1 s) keep one waiter each, so the wait decides.
    h.at(6_000);
    h.disconnect(holder);
    for waiter in first_waiters {
        granted(h.reply(waiter), 33);
    }
    let ranked = h.engine.contended(Lock, 10, h.now);
    let keys: Vec<&[u8]> = ranked.iter().map(|c| c.key.as_slice()).collect();
    assert_eq!(keys, [&b"c"[..], b"b"]);
    assert_eq!((ranked[0].held_ms, ranked[0].oldest_wait_ms), (0, 5_000));
    assert_eq!((ranked[1].held_ms, ranked[1].oldest_wait_ms), (0, 3_000));
    assert!(ranked[0].holder.is_some_and(|c| c != holder));
    assert_eq!(h.gauges(Lock).contended_keys, 2);
    h.finish();
}

#[test]
fn a_departed_holder_is_reported_without_a_client() {
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let [a, b] = [h.client_with_serial(7), h.client()];
    contend(&mut h, a, "k", 0);
    h.block(b, "l", "k", "600");
    h.disconnect(a);
    let ranked = h.engine.contended(Lock, 10, h.now);
    assert_eq!((ranked[0].holder_serial, ranked[0].holder), (7, None));
    h.disconnect(b);
    h.finish();
}

#[test]
fn ranking_examines_at_most_the_scan_budget_of_keys_contended_longest() {
    let mut h = Harness::new(config(|c| c.max_locks = 10_000));
    let (holder, waiter) = (h.client(), h.client());
    let keys: Vec<String> = (0..CONTENDED_SCAN + 5)
        .map(|i| format!("k{i:05}"))
        .collect();
    h.lock_all(holder, &keys);
    // One two-phase waiter per key, each key contended 1 ms after the one before.
    for key in &keys {
        h.skip_to(h.now.0 + 1);
        assert_eq!(h.apply(waiter, "e", key, "600"), Outcome::Answered);
    }
    let replies = std::mem::take(&mut h.out.replies);
    assert!(replies.iter().all(|(_, r)| *r == Response::Queued));
    h.check(None);
    // The last key contended gets a second waiter: the most waiters of all, but past the scan
    // budget, so it does not rank.
    let late = h.client();
    h.block(late, "l", keys.last().unwrap(), "600");
    assert_eq!(h.gauges(Lock).contended_keys, (CONTENDED_SCAN + 5) as u64);
    let ranked = h.engine.contended(Lock, 10, h.now);
    let got: Vec<String> = ranked
        .iter()
        .map(|c| String::from_utf8(c.key.clone()).unwrap())
        .collect();
    assert_eq!(got, keys[..10], "one waiter each: the longest waits first");
    // Once the keys contended before it lose their waiters, it is within reach and ranks first.
    h.disconnect(waiter);
    let ranked = h.engine.contended(Lock, 10, h.now);
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].key, keys.last().unwrap().as_bytes());
    h.finish();
}
