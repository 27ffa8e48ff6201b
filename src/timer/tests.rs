//! Tests of the timer wheel: ordering, cascades, cancellation and randomised runs against a model.

use super::*;
use crate::test_rng::Rng;

/// Where an entry is linked: `(level, slot)`, level `READY` for the ready list.
fn position(wheel: &TimerWheel<u64>, id: TimerId) -> (u8, u8) {
    let place = wheel.entries[id.index as usize].place;
    (place.level(), place.slot())
}

/// Polls at `now` until nothing is due; returns the payloads in firing order. An empty poll
/// with `next_deadline` at or before `now` is a cascade cut short, so it polls again.
fn drain(wheel: &mut TimerWheel<u64>, now: u64) -> Vec<u64> {
    let mut fired = Vec::new();
    loop {
        match wheel.poll(Millis(now)) {
            Some((_, payload)) => fired.push(payload),
            None if wheel.next_deadline().is_some_and(|Millis(at)| at <= now) => {}
            None => return fired,
        }
    }
}

/// Sleeps until `next_deadline` and drains, as an event loop would, until the wheel is empty.
/// Returns `(time, payload)` for every timer fired and the number of wake-ups needed, checking
/// at each wake-up that nothing was due one millisecond earlier.
fn drive(wheel: &mut TimerWheel<u64>) -> (Vec<(u64, u64)>, usize) {
    let mut fired = Vec::new();
    let mut wakeups = 0;
    while let Some(Millis(at)) = wheel.next_deadline() {
        wakeups += 1;
        if at > 0 {
            assert_eq!(wheel.poll(Millis(at - 1)), None, "fired before {at}");
        }
        fired.extend(drain(wheel, at).into_iter().map(|payload| (at, payload)));
        wheel.check_invariants();
    }
    (fired, wakeups)
}

#[test]
fn level_and_slot_arithmetic() {
    assert_eq!(level_for(0, 0), 0);
    assert_eq!(level_for(0, 63), 0);
    assert_eq!(level_for(0, 64), 1);
    assert_eq!(level_for(0, 4095), 1);
    assert_eq!(level_for(0, 4096), 2);
    assert_eq!(level_for(100, 127), 0);
    assert_eq!(level_for(100, 128), 1);
    assert_eq!(level_for(0, 1 << 50), 8);
    assert_eq!(level_for(0, MAX_TIME), 8);
    assert_eq!(level_for(MAX_TIME - 1, MAX_TIME), 0);
    assert_eq!(slot_for(4095, 1), 63);
    assert_eq!(slot_for(MAX_TIME, 8), 63);
    assert_eq!(slot_start(5000, 1, 10), 4096 + 640);
    assert_eq!(slot_start(5000, 0, 10), 4992 + 10);
    assert_eq!(slot_start(MAX_TIME, 8, 15), 15 << 48);
    assert_eq!(slot_start(MAX_TIME, 7, 63), MAX_TIME - (1 << 42) + 1);
}

#[test]
fn entries_are_small() {
    // The non-zero generation lets the slab's vacant links share space with the entry, and the
    // level and slot share the deadline's word: a 4-byte payload fills the entry exactly.
    assert_eq!(size_of::<Entry<u32>>(), 24);
    assert_eq!(Slots::<Entry<u32>>::ENTRY_SIZE, 24);
    assert_eq!(size_of::<Entry<u64>>(), 32);
    assert_eq!(Slots::<Entry<u64>>::ENTRY_SIZE, 32);
    assert_eq!(size_of::<Option<TimerId>>(), 8);
}

#[test]
fn cancelled_timers_give_their_memory_back_when_trimmed() {
    let mut wheel = TimerWheel::new();
    let ids: Vec<TimerId> = (0..20_000).map(|i| wheel.insert(Millis(i), i)).collect();
    let kept = ids[100];
    for &id in ids.iter().filter(|&&id| id != kept) {
        wheel.cancel(id);
    }
    assert!(wheel.wants_trim());
    while wheel.wants_trim() {
        assert!(wheel.trim(4096) <= 4096);
        wheel.check_invariants();
    }
    assert!(wheel.capacity() <= 2048, "capacity {}", wheel.capacity());
    // The handle survives, and the wheel still fires it at its deadline.
    assert_eq!(wheel.payload(kept), Some(100));
    assert_eq!(wheel.poll(Millis(1_000)), Some((kept, 100)));
    assert!(wheel.is_empty());
}

#[test]
fn deadlines_around_level_boundaries() {
    let mut wheel = TimerWheel::new();
    let expected = [
        (63, (0, 63)),
        (64, (1, 1)),
        (65, (1, 1)),
        (4095, (1, 63)),
        (4096, (2, 1)),
    ];
    for (deadline, at) in expected {
        let id = wheel.insert(Millis(deadline), deadline);
        assert_eq!(position(&wheel, id), at, "deadline {deadline}");
    }
    wheel.check_invariants();
    let (fired, _) = drive(&mut wheel);
    let deadlines = expected.map(|(deadline, _)| deadline);
    assert_eq!(fired, deadlines.map(|deadline| (deadline, deadline)));
}

#[test]
fn top_level_holds_the_largest_deadlines() {
    let protocol_max = 9_223_372_036_854_775;
    let mut wheel = TimerWheel::new();
    let max = wheel.insert(Millis(MAX_TIME), MAX_TIME);
    let top = wheel.insert(Millis(1 << 50), 1 << 50);
    wheel.insert(Millis(protocol_max), protocol_max);
    assert_eq!(position(&wheel, max), (8, 63));
    assert_eq!(position(&wheel, top), (8, 4));
    wheel.check_invariants();
    let (fired, wakeups) = drive(&mut wheel);
    assert_eq!(
        fired,
        [
            (1 << 50, 1 << 50),
            (protocol_max, protocol_max),
            (MAX_TIME, MAX_TIME)
        ]
    );
    // Each timer cascades at most once per level; empty slots are never visited.
    assert!(wakeups <= 3 * LEVELS, "{wakeups} wake-ups");
}

#[test]
fn times_past_the_end_count_as_the_end() {
    let mut wheel = TimerWheel::new();
    let never = wheel.insert(Millis::MAX, 1);
    let end = wheel.insert(END_OF_TIME, 2);
    let moved = wheel.insert(Millis(10), 3);
    assert!(wheel.reschedule(moved, Millis(u64::MAX - 1)));
    for id in [never, end, moved] {
        assert_eq!(wheel.deadline(id), Some(END_OF_TIME));
    }
    assert_eq!(position(&wheel, never), (8, 63));
    assert_eq!(wheel.poll(Millis(MAX_TIME - 1)), None);
    wheel.check_invariants();
    // A `now` past the end reaches the end, and the timers there fire in filing order (the
    // rescheduled one was filed again when its early slot came due).
    assert_eq!(drain(&mut wheel, u64::MAX), [1, 2, 3]);
    assert!(wheel.is_empty());
    wheel.check_invariants();
}

#[test]
fn huge_jump_fires_in_order_and_skips_idle_time() {
    let mut wheel = TimerWheel::new();
    for deadline in [1_000_000_000_000, 3, 70_000, 999_999_999_999, 5_000_000] {
        wheel.insert(Millis(deadline), deadline);
    }
    assert_eq!(
        drain(&mut wheel, 1_000_000_000_000),
        [3, 70_000, 5_000_000, 999_999_999_999, 1_000_000_000_000]
    );
    wheel.check_invariants();

    let mut far = TimerWheel::new();
    far.insert(Millis(1_000_000_000_000), 1);
    let (fired, wakeups) = drive(&mut far);
    assert_eq!(fired, [(1_000_000_000_000, 1)]);
    assert!(wakeups <= LEVELS, "{wakeups} wake-ups");
}

#[test]
fn deadline_equal_to_now_fires() {
    let mut wheel = TimerWheel::new();
    wheel.insert(Millis(100), 100);
    assert_eq!(wheel.poll(Millis(99)), None);
    assert_eq!(wheel.next_deadline(), Some(Millis(100)));
    assert_eq!(drain(&mut wheel, 100), [100]);
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_deadline(), None);
}

#[test]
fn past_deadline_fires_at_next_poll_after_already_due_timers() {
    let mut wheel = TimerWheel::new();
    assert_eq!(wheel.poll(Millis(1000)), None);
    let past = wheel.insert(Millis(500), 500);
    let present = wheel.insert(Millis(1000), 1000);
    assert_eq!(position(&wheel, past), (READY, 0));
    assert_eq!(position(&wheel, present), (READY, 0));
    assert_eq!(wheel.next_deadline(), Some(Millis(500)));
    assert_eq!(drain(&mut wheel, 1000), [500, 1000]);

    wheel.insert(Millis(1500), 1500);
    wheel.insert(Millis(1600), 1600);
    assert_eq!(wheel.poll(Millis(2000)).map(|(_, p)| p), Some(1500));
    // Set while the wheel stands at 1500, so effectively due at 1500: before 1600.
    wheel.insert(Millis(100), 100);
    wheel.check_invariants();
    assert_eq!(drain(&mut wheel, 2000), [100, 1600]);
}

#[test]
fn earlier_now_counts_as_no_time_passing() {
    let mut wheel = TimerWheel::new();
    for deadline in [100, 200, 300, 310] {
        wheel.insert(Millis(deadline), deadline);
    }
    assert_eq!(drain(&mut wheel, 150), [100]);
    assert_eq!(wheel.poll(Millis(10)), None);
    assert_eq!(wheel.next_deadline(), Some(Millis(192)));
    assert_eq!(wheel.poll(Millis(400)).map(|(_, p)| p), Some(200));
    // Mid-drain, an older `now` still sees the timers due by 400.
    assert_eq!(drain(&mut wheel, 0), [300, 310]);
    wheel.check_invariants();
}

#[test]
fn reschedule_later_is_lazy() {
    let mut wheel = TimerWheel::new();
    let id = wheel.insert(Millis(100), 7);
    assert_eq!(position(&wheel, id), (1, 1));
    assert!(wheel.reschedule(id, Millis(1_000_000)));
    assert_eq!(position(&wheel, id), (1, 1), "moved instead of extended");
    assert_eq!(wheel.deadline(id), Some(Millis(1_000_000)));
    // The old slot still comes due; next_deadline may be early but never late.
    assert_eq!(wheel.next_deadline(), Some(Millis(64)));
    assert_eq!(wheel.poll(Millis(64)), None);
    assert_ne!(position(&wheel, id), (1, 1), "not filed again");
    wheel.check_invariants();
    assert_eq!(wheel.poll(Millis(999_999)), None);
    assert_eq!(wheel.poll(Millis(1_000_000)), Some((id, 7)));
}

#[test]
fn reschedule_earlier_relinks_only_when_leaving_the_slot() {
    let mut wheel = TimerWheel::new();
    let id = wheel.insert(Millis(127), 1);
    assert_eq!(position(&wheel, id), (1, 1));
    assert!(wheel.reschedule(id, Millis(64)));
    assert_eq!(position(&wheel, id), (1, 1), "still within its slot");
    assert!(wheel.reschedule(id, Millis(63)));
    assert_eq!(position(&wheel, id), (0, 63));
    assert!(wheel.reschedule(id, Millis(0)));
    assert_eq!(position(&wheel, id), (READY, 0));
    wheel.check_invariants();
    assert_eq!(wheel.poll(Millis(0)), Some((id, 1)));
}

#[test]
fn cancel_and_reschedule_while_cascading() {
    let mut wheel = TimerWheel::new();
    let a = wheel.insert(Millis(5000), 5000);
    let b = wheel.insert(Millis(4196), 4196);
    let c = wheel.insert(Millis(6000), 6000);
    for id in [a, b, c] {
        assert_eq!(position(&wheel, id), (2, 1));
    }
    // The level-2 slot [4096, 8192) cascades without firing anything.
    assert_eq!(wheel.poll(Millis(4096)), None);
    assert_eq!(position(&wheel, a), (1, 14));
    assert_eq!(position(&wheel, b), (1, 1));
    assert_eq!(wheel.cancel(a), Some(5000));
    assert!(wheel.reschedule(b, Millis(10_000)));
    assert_eq!(position(&wheel, b), (1, 1), "extension relinked");
    assert!(wheel.reschedule(c, Millis(4100)));
    assert_eq!(position(&wheel, c), (0, 4));
    wheel.check_invariants();
    let (fired, _) = drive(&mut wheel);
    assert_eq!(fired, [(4100, 6000), (10_000, 4196)]);
}

#[test]
fn cancel_and_reschedule_due_timers_before_they_are_returned() {
    let mut wheel = TimerWheel::new();
    let [x, y, z, w] = [1, 2, 3, 4].map(|payload| wheel.insert(Millis(100), payload));
    assert_eq!(wheel.poll(Millis(100)), Some((x, 1)));
    // y, z and w are due but still in the slot being emptied, which is re-filed one timer at
    // a time as `poll` goes.
    assert_eq!(wheel.cancel(y), Some(2));
    assert!(wheel.reschedule(z, Millis(200)));
    assert!(wheel.reschedule(w, Millis(90)));
    assert_eq!(position(&wheel, w), (READY, 0));
    assert!(wheel.next_deadline() <= Some(Millis(90)));
    wheel.check_invariants();
    assert_eq!(drain(&mut wheel, 100), [4]);
    // 200 sits in the level-1 slot [192, 256).
    assert_eq!(wheel.next_deadline(), Some(Millis(192)));
    assert_eq!(drain(&mut wheel, 200), [3]);
}

#[test]
fn a_huge_slot_is_emptied_in_bounded_steps() {
    let mut wheel = TimerWheel::new();
    let count = 3 * CASCADE_STEP + 5;
    for i in 0..count {
        // Spread over one level-2 slot [4096, 8192), none due at its start: all cascade
        // together.
        wheel.insert(Millis(4097 + (i as u64 % 4095)), i);
    }
    let mut fired = Vec::new();
    let mut calls_without_progress = 0;
    let now = Millis(9000);
    loop {
        match wheel.poll(now) {
            Some((_, payload)) => fired.push(payload),
            None if wheel.next_deadline().is_some_and(|at| at <= now) => {
                calls_without_progress += 1;
                wheel.check_invariants();
            }
            None => break,
        }
    }
    assert_eq!(fired.len(), count);
    assert!(calls_without_progress >= 2, "the cascade was not split");
    assert!(wheel.is_empty());
}

#[test]
fn stale_ids_are_no_ops() {
    let mut wheel = TimerWheel::new();
    let fired = wheel.insert(Millis(5), 1);
    assert_eq!(wheel.poll(Millis(5)), Some((fired, 1)));
    let cancelled = wheel.insert(Millis(50), 2);
    assert_eq!(wheel.cancel(cancelled), Some(2));
    // The slab reuses the freed index; the generation keeps the old ids apart.
    let reused = wheel.insert(Millis(70), 3);
    assert_eq!(reused.index, cancelled.index);
    for stale in [fired, cancelled] {
        assert_eq!(wheel.cancel(stale), None);
        assert!(!wheel.reschedule(stale, Millis(1)));
        assert_eq!(wheel.deadline(stale), None);
        assert_eq!(wheel.payload(stale), None);
        assert_eq!(wheel.payload_mut(stale), None);
    }
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.deadline(reused), Some(Millis(70)));
    *wheel.payload_mut(reused).expect("live") = 4;
    assert_eq!(wheel.payload(reused), Some(4));
    wheel.check_invariants();
    assert_eq!(wheel.poll(Millis(70)), Some((reused, 4)));
}

#[test]
fn steady_state_churn_does_not_grow_the_slab() {
    const LIVE: usize = 256;
    let mut rng = Rng::new(7);
    let mut wheel = TimerWheel::with_capacity(LIVE);
    let capacity = wheel.capacity();
    let mut ids = Vec::with_capacity(LIVE);
    let mut now = 0;
    for round in 0..20_000u64 {
        while ids.len() < LIVE {
            ids.push(wheel.insert(Millis(now + 1 + rng.below(100_000)), round));
        }
        let victim = ids.swap_remove(rng.below(LIVE as u64) as usize);
        assert!(wheel.cancel(victim).is_some());
        now += rng.below(50);
        while let Some((id, _)) = wheel.poll(Millis(now)) {
            let at = ids
                .iter()
                .position(|&live| live == id)
                .expect("fired an unknown id");
            ids.swap_remove(at);
        }
        assert_eq!(wheel.len(), ids.len());
    }
    assert_eq!(
        wheel.capacity(),
        capacity,
        "slab grew beyond the live count"
    );
    wheel.check_invariants();
}

/// Random operations against the sorted-map model of the `timer` fuzz target, which follows
/// the bounded-cascade contract (an empty poll with `next_deadline` at or before `now` means
/// "poll again"). Every `cargo test` runs it on fresh inputs beyond the committed corpus.
#[test]
fn matches_the_sorted_map_model_of_the_fuzz_target() {
    for seed in 0..1000 {
        let mut rng = Rng::new(seed);
        let input: Vec<u8> = (0..1 + rng.below(3000))
            .map(|_| rng.next_u64() as u8)
            .collect();
        crate::fuzzing::timer(&input);
    }
}
