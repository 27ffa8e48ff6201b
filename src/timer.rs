//! Hierarchical timer wheel: owns the armed timers (each a deadline plus a small `Copy` payload)
//! and hands the payloads back once their deadline has passed. It must not read a clock, do I/O or
//! interpret payloads: every instant is an argument, and a payload is an id that the caller checks
//! (generation, serial) when it fires.
//!
//! # Geometry
//!
//! The wheel has 9 levels of 64 slots. A slot on level 0 spans 1 ms and a slot on level `n` spans
//! `64^n` ms, so a whole level spans exactly one slot of the level above. Nine levels of 6 bits
//! cover 54 bits: 2^54 ms, about 570 000 years. The wheel's time stops there: a deadline or a
//! `now` past [`END_OF_TIME`] counts as that instant, so a timer set for
//! [`Millis::MAX`] ("never") is armed but never fires in practice. The protocol's longest lease
//! (9 223 372 036 s) is 2^43 ms, far inside the range.
//!
//! The wheel keeps its own time, `elapsed`. A timer due at `when > elapsed` is filed on level `n`,
//! where `n` is the highest group of 6 bits in which `when` and `elapsed` differ, in the slot given
//! by `when`'s bits in that group. Hence every timer on level `n` lies in the same run of 64
//! level-`n` slots as `elapsed`, in a slot strictly after `elapsed`'s own, and is due before any
//! timer on level `n + 1`. The next slot to process is thus the lowest set bit of the lowest
//! non-empty level's `occupied` bitmap: finding it costs O(levels), and idle time, however long, is
//! skipped without visiting empty slots.
//!
//! When time reaches the start of an occupied slot the slot is emptied: timers due at that instant
//! become ready, and the others are filed again relative to the new time, which puts them on a
//! lower level (cascading). A timer is therefore moved at most once per level before it fires, plus
//! once per lazy extension (below).
//!
//! # Lazy extension
//!
//! A timer may stay in its slot as long as its deadline is not before the slot's start. So
//! [`TimerWheel::reschedule`] to a later deadline (a renewed lease, a refreshed idle timeout) is a
//! single field write: the old slot now comes due early, and when it does the timer is found not
//! due and is filed again for its new deadline. Rescheduling to an earlier deadline relinks the
//! timer unless the new deadline still lies at or after its slot's start.
//!
//! # Polling, order and `next_deadline`
//!
//! [`TimerWheel::poll`] removes one due timer per call, so the caller can bound its work per turn.
//! Emptying a slot is spread over calls too: the slot's list is detached whole (O(1)) and then
//! re-filed at most `CASCADE_STEP` timers per call; while that is unfinished, `poll` may return
//! `None` with timers still due, and `next_deadline` reports the wheel's time so the caller comes
//! back at once. Each timer is moved at most once per level.
//! Timers come out in non-decreasing order of their *effective deadline*: the deadline itself, or,
//! for a deadline that was already past when it was set, the wheel's time at that moment (such a
//! timer is due at once and fires at the next poll, after timers that were already due). The
//! wheel's time is the latest `now` given to `poll`, except while due timers are being drained,
//! when it is the deadline of the batch being drained. Timers with the same effective deadline
//! come out in the order they were filed into their final slot (or into the list of due timers),
//! which depends on the sequence of operations only.
//!
//! [`TimerWheel::next_deadline`] is a lower bound, never later than the earliest deadline: it is
//! the start of the next slot to process, which can be earlier than every deadline when that slot
//! only cascades or holds a lazily extended timer. Polling at that time may therefore return
//! nothing, but it always makes progress: once `poll(now)` has returned `None`,
//! `next_deadline()` is `None` or later than `now`.
//!
//! # Storage
//!
//! Timers live in a [`Slots`] slab. Each slot (and the list of ready timers) is a doubly linked list
//! threaded through the entries with `u32` indices and a NIL sentinel, so insert, cancel and
//! relinking are O(1), use no `unsafe`, and allocate nothing while the slab has room. An entry is
//! 20 bytes of bookkeeping plus the payload, padded to 8 bytes: the deadline shares one word with
//! the entry's level and slot (the 54 bits of time leave 10 bits for them), so a 4-byte payload
//! makes a 24-byte entry and an 8-byte payload a 32-byte one. The slab adds no tag because the
//! non-zero generation gives the compiler a niche. A million timers with 4-byte payloads take
//! 24 MB; the engine arms one per held lease, so every byte here is a byte per lock.

use std::fmt;
use std::num::NonZeroU32;

use crate::clock::Millis;
use crate::slots::Slots;

/// Levels in the wheel: 9 × 6 bits cover the `TIME_BITS` of the wheel's time.
const LEVELS: usize = 9;
/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Bits of a deadline the wheel keeps; later instants count as [`END_OF_TIME`].
const TIME_BITS: u32 = LEVELS as u32 * SLOT_BITS;
/// The latest instant the wheel tells apart, as a raw millisecond count.
const MAX_TIME: u64 = (1 << TIME_BITS) - 1;
/// The last instant a [`TimerWheel`] tells apart, 2^54 - 1 ms (about 570 000 years) after
/// [`Millis::ZERO`]: later deadlines and times count as this one.
pub const END_OF_TIME: Millis = Millis(MAX_TIME);
/// Bits of [`Place`] that hold the level (`READY` included) above the time bits.
const LEVEL_BITS: u32 = 4;
/// Slots per level; one `u64` bitmap tracks which are occupied.
const SLOTS: usize = 1 << SLOT_BITS;
/// End-of-list marker for the `u32` links. Slab indices stay below it (checked in `insert`).
const NIL: u32 = u32::MAX;
/// Value of `Entry::level` for a timer in the ready list rather than in a slot.
const READY: u8 = LEVELS as u8;
/// Most timers one [`TimerWheel::poll`] call re-files out of a cascading slot. A slot can hold
/// millions of timers (a million leases granted in the same second); moving them all in one call
/// would stall the event loop, so the rest wait for the next call.
const CASCADE_STEP: usize = 4096;

/// Handle to a timer in a [`TimerWheel`].
///
/// After the timer fires or is cancelled the handle is stale, and every method treats it as
/// absent, even once its slab index has been reused by a newer timer: the generation tells them
/// apart. Generations come from a wheel-wide 32-bit counter that skips zero, so a stale handle
/// could only match again if its index came back after exactly a multiple of 2^32 - 1 insertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: NonZeroU32,
}

/// One armed timer; 20 bytes plus the payload, padded to 8-byte alignment.
struct Entry<T> {
    /// When the timer is due, and which list holds it.
    place: Place,
    /// Previous entry in the same list, or NIL at the head.
    prev: u32,
    /// Next entry in the same list, or NIL at the tail.
    next: u32,
    /// Tells this timer apart from earlier ones at the same index. Non-zero so that the slab's
    /// vacant/occupied enum can use it as a niche instead of adding a tag.
    generation: NonZeroU32,
    /// What `poll` or `cancel` hands back.
    payload: T,
}

/// A timer's deadline and the list holding it, packed into one word: the deadline in the low
/// `TIME_BITS` bits, then `LEVEL_BITS` of level (`READY` for the ready list) and 6 bits of slot
/// (0 in the ready list). Separate fields would cost the entry 8 bytes of padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place(u64);

impl Place {
    /// Not yet in any list, due at `deadline` (at most `MAX_TIME`).
    fn unfiled(deadline: u64) -> Place {
        Place::new(deadline, READY, 0)
    }

    fn new(deadline: u64, level: u8, slot: u8) -> Place {
        debug_assert!(deadline <= MAX_TIME && level <= READY && usize::from(slot) < SLOTS);
        Place(
            deadline | u64::from(level) << TIME_BITS | u64::from(slot) << (TIME_BITS + LEVEL_BITS),
        )
    }

    /// When the timer is due. Never before the start of the slot holding the entry, but possibly
    /// after its end (lazy extension).
    fn deadline(self) -> u64 {
        self.0 & MAX_TIME
    }

    /// Level of the list holding the entry, or `READY`.
    fn level(self) -> u8 {
        ((self.0 >> TIME_BITS) & ((1 << LEVEL_BITS) - 1)) as u8
    }

    /// Slot of that list within its level; 0 in the ready list.
    fn slot(self) -> u8 {
        (self.0 >> (TIME_BITS + LEVEL_BITS)) as u8
    }

    /// The same list, due at `deadline` instead.
    fn with_deadline(self, deadline: u64) -> Place {
        Place::new(deadline, self.level(), self.slot())
    }

    /// The same deadline, in the list of `level` and `slot`.
    fn in_list(self, level: u8, slot: u8) -> Place {
        Place::new(self.deadline(), level, slot)
    }
}

/// Head and tail of an intrusive list. Appending at the tail keeps timers that share a deadline in
/// the order they were filed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    fn is_empty(&self) -> bool {
        self.head == NIL
    }

    fn push_back<T>(&mut self, entries: &mut Slots<Entry<T>>, index: u32) {
        let entry = &mut entries[index as usize];
        entry.prev = self.tail;
        entry.next = NIL;
        match self.tail {
            NIL => self.head = index,
            tail => entries[tail as usize].next = index,
        }
        self.tail = index;
    }

    fn unlink<T>(&mut self, entries: &mut Slots<Entry<T>>, index: u32) {
        let entry = &mut entries[index as usize];
        let (prev, next) = (entry.prev, entry.next);
        entry.prev = NIL;
        entry.next = NIL;
        match prev {
            NIL => self.head = next,
            prev => entries[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => entries[next as usize].prev = prev,
        }
    }
}

/// One level of the wheel.
struct Level {
    /// Bit `s` is set exactly when `slots[s]` is non-empty.
    occupied: u64,
    slots: [List; SLOTS],
}

impl Level {
    const EMPTY: Level = Level {
        occupied: 0,
        slots: [List::EMPTY; SLOTS],
    };
}

/// The level on which a timer due at `when` is filed when the wheel's time is `elapsed`: the
/// highest 6-bit group in which the two differ (level 0 if they differ only in the lowest group).
fn level_for(elapsed: u64, when: u64) -> usize {
    let differing = (elapsed ^ when) | (SLOTS as u64 - 1);
    let top_bit = u64::BITS - 1 - differing.leading_zeros();
    (top_bit / SLOT_BITS) as usize
}

/// The slot on `level` that covers `when`.
fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1)
}

/// First instant of `slot` on `level`, within the level-wide span that contains `elapsed`.
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let slot_width_bits = level as u32 * SLOT_BITS;
    let span_bits = slot_width_bits + SLOT_BITS;
    let span_start = match elapsed.checked_shr(span_bits) {
        Some(high) => high << span_bits,
        // The top level spans all of u64.
        None => 0,
    };
    span_start + ((slot as u64) << slot_width_bits)
}

/// A hierarchical timer wheel with 1 ms resolution; see the module documentation for the design.
pub struct TimerWheel<T> {
    entries: Slots<Entry<T>>,
    /// Boxed because 9 × 64 list heads take 4.6 kB, too much to move around by value.
    levels: Box<[Level; LEVELS]>,
    /// Timers already due, in the order `poll` returns them.
    ready: List,
    /// Timers of a slot being emptied, still to be filed again (see `CASCADE_STEP`). Their
    /// `level` and `slot` still name the slot they came from, `cascade_from`, which is the wheel
    /// time's own slot on that level, so no other timer can be filed there meanwhile.
    cascade: List,
    /// The slot `cascade` was taken from, while `cascade` is non-empty.
    cascade_from: (u8, u8),
    /// No ready timer is due before this; `u64::MAX` when `ready` is empty. A lower bound kept in
    /// O(1): cancelling or rescheduling a ready timer never raises it.
    ready_floor: u64,
    /// The wheel's time: every slot starting at or before it has been processed, and slots are
    /// placed relative to it. Never after `now`.
    elapsed: u64,
    /// Latest `now` given to `poll`. It never decreases: an older `now` counts as no time passing.
    now: u64,
    /// Generation for the next insert; wraps around, skipping zero.
    next_generation: NonZeroU32,
}

impl<T: Copy> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.entries.len())
            .field("elapsed", &self.elapsed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<T: Copy> TimerWheel<T> {
    /// An empty wheel whose time is [`Millis::ZERO`].
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(capacity: usize) -> Self {
        TimerWheel {
            entries: Slots::with_capacity(capacity),
            levels: Box::new([Level::EMPTY; LEVELS]),
            ready: List::EMPTY,
            cascade: List::EMPTY,
            cascade_from: (0, 0),
            ready_floor: u64::MAX,
            elapsed: 0,
            now: 0,
            next_generation: NonZeroU32::MIN,
        }
    }

    /// Number of armed timers, including due ones not yet returned by [`poll`](Self::poll).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many timers fit before the wheel allocates again.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Whether [`trim`](Self::trim) would give memory back: the wheel held many more timers
    /// than it does now (see [`Slots::wants_trim`]).
    pub fn wants_trim(&self) -> bool {
        self.entries.wants_trim()
    }

    /// Gives back the memory of up to `budget` timers no longer armed; returns how many it
    /// dropped. Handles stay valid.
    pub fn trim(&mut self, budget: usize) -> usize {
        self.entries.trim(budget)
    }

    /// Arms a timer due at `deadline` and returns its handle. O(1).
    ///
    /// A deadline at or before the wheel's time is due at once: it fires at the next
    /// [`poll`](Self::poll), after timers that were already due. A deadline after
    /// [`END_OF_TIME`] is taken as that instant.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already armed (about 128 GiB of entries).
    pub fn insert(&mut self, deadline: Millis, payload: T) -> TimerId {
        let vacant = self.entries.vacant_key();
        let index = u32::try_from(vacant)
            .ok()
            .filter(|&index| index != NIL)
            .expect("timer wheel is limited to u32::MAX - 1 timers");
        let generation = self.next_generation;
        self.next_generation = generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        self.entries.insert(Entry {
            place: Place::unfiled(deadline.0.min(MAX_TIME)),
            prev: NIL,
            next: NIL,
            generation,
            payload,
        });
        self.file(index);
        TimerId { index, generation }
    }

    /// Disarms a timer and returns its payload, or `None` if `id` is stale. O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let index = self.live_index(id)?;
        self.detach(index);
        Some(self.entries.remove(index as usize).payload)
    }

    /// Moves a timer to `deadline`; returns `false` (and does nothing) if `id` is stale. O(1).
    ///
    /// Moving later only records the new deadline (lazy extension, see the module documentation);
    /// moving earlier relinks the timer if it has to leave its slot. A deadline at or before the
    /// wheel's time makes the timer due at once, as in [`insert`](Self::insert).
    pub fn reschedule(&mut self, id: TimerId, deadline: Millis) -> bool {
        let Some(index) = self.live_index(id) else {
            return false;
        };
        let deadline = deadline.0.min(MAX_TIME);
        let entry = &mut self.entries[index as usize];
        let place = entry.place;
        let can_stay = match place.level() {
            READY => deadline <= self.elapsed,
            level => deadline >= slot_start(self.elapsed, level as usize, place.slot() as usize),
        };
        entry.place = place.with_deadline(deadline);
        if can_stay {
            if place.level() == READY {
                self.ready_floor = self.ready_floor.min(deadline);
            }
        } else {
            self.detach(index);
            self.file(index);
        }
        true
    }

    /// The deadline of a timer (at most [`END_OF_TIME`]), or `None` if `id`
    /// is stale.
    pub fn deadline(&self, id: TimerId) -> Option<Millis> {
        let index = self.live_index(id)?;
        Some(Millis(self.entries[index as usize].place.deadline()))
    }

    /// The payload of a timer, or `None` if `id` is stale.
    pub fn payload(&self, id: TimerId) -> Option<T> {
        let index = self.live_index(id)?;
        Some(self.entries[index as usize].payload)
    }

    /// Mutable access to the payload of a timer, or `None` if `id` is stale.
    pub fn payload_mut(&mut self, id: TimerId) -> Option<&mut T> {
        let index = self.live_index(id)?;
        Some(&mut self.entries[index as usize].payload)
    }

    /// When [`poll`](Self::poll) must next be called, or `None` if no timer is armed. O(levels).
    ///
    /// Never later than the earliest deadline of an armed timer, but possibly earlier (the start of
    /// a slot that only cascades or holds a lazily extended timer), and in the past when timers are
    /// already due. Once `poll(now)` has returned `None`, this is `None` or later than `now`.
    pub fn next_deadline(&self) -> Option<Millis> {
        if !self.ready.is_empty() {
            return Some(Millis(self.ready_floor));
        }
        if !self.cascade.is_empty() {
            return Some(Millis(self.elapsed));
        }
        self.next_slot().map(|(_, _, start)| Millis(start))
    }

    /// Removes and returns one timer whose deadline is at or before `now`; `None` if none is due,
    /// or if this call has re-filed `CASCADE_STEP` timers of a cascading slot without finding
    /// one (then `next_deadline()` is at or before `now`: call again, typically next loop turn).
    ///
    /// Call it in a loop until it returns `None` (or until the turn's work budget is spent). Timers
    /// come out in the order described in the module documentation. A `now` earlier than one seen
    /// before counts as no time passing, and one after [`END_OF_TIME`] as that
    /// instant. Time jumps of any size cost O(levels) per occupied slot crossed, never per empty
    /// slot.
    pub fn poll(&mut self, now: Millis) -> Option<(TimerId, T)> {
        self.now = self.now.max(now.0.min(MAX_TIME));
        let mut refiled = 0;
        loop {
            if !self.ready.is_empty() {
                return Some(self.fire(self.ready.head));
            }
            if !self.cascade.is_empty() {
                if refiled == CASCADE_STEP {
                    return None;
                }
                let index = self.cascade.head;
                self.cascade.unlink(&mut self.entries, index);
                self.file(index);
                refiled += 1;
                continue;
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= self.now => {
                    self.process_slot(level, slot, start)
                }
                _ => {
                    // Nothing is due up to `now`: every slot starts later, so the wheel may
                    // stand at `now` without moving any timer.
                    self.elapsed = self.now;
                    return None;
                }
            }
        }
    }

    /// Walks the whole structure and panics with a message if anything is inconsistent: bitmaps
    /// against lists, list links, entry positions against the wheel's time, counts. O(slots + len);
    /// meant for tests and fuzzing.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert!(
            self.elapsed <= self.now,
            "wheel time {} is after the latest now {}",
            self.elapsed,
            self.now
        );
        let mut reachable = 0;
        for (level, lvl) in self.levels.iter().enumerate() {
            // Bitmaps of the non-empty heads and tails. A bare `while` because iterators are slow
            // in unoptimised builds, and the model test runs this after every operation.
            let (mut heads, mut tails) = (0u64, 0u64);
            let mut slot = 0;
            while slot < SLOTS {
                heads |= ((lvl.slots[slot].head != NIL) as u64) << slot;
                tails |= ((lvl.slots[slot].tail != NIL) as u64) << slot;
                slot += 1;
            }
            assert_eq!(
                heads, lvl.occupied,
                "level {level}: occupied bits disagree with the lists"
            );
            assert_eq!(
                heads, tails,
                "level {level}: a list has a head without a tail or back"
            );
            let mut occupied = lvl.occupied;
            while occupied != 0 {
                let slot = occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                let start = slot_start(self.elapsed, level, slot);
                assert!(
                    start > self.elapsed,
                    "level {level} slot {slot} starts at {start}, not after the wheel time {}",
                    self.elapsed
                );
                let list = &lvl.slots[slot];
                reachable += self.check_list(list, level as u8, slot as u8, |deadline| {
                    assert!(
                        deadline >= start,
                        "level {level} slot {slot} starting at {start} holds deadline {deadline}"
                    );
                });
            }
        }
        if !self.cascade.is_empty() {
            let (level, slot) = self.cascade_from;
            let start = self.elapsed;
            assert_eq!(
                slot_start(self.elapsed, level as usize, slot as usize),
                start,
                "cascading slot is not the wheel time's own slot"
            );
            reachable += self.check_list(&self.cascade, level, slot, |deadline| {
                assert!(
                    deadline >= start,
                    "cascading deadline {deadline} before {start}"
                );
            });
        }
        self.entries.check_invariants();
        reachable += self.check_list(&self.ready, READY, 0, |deadline| {
            assert!(
                self.ready_floor <= deadline && deadline <= self.elapsed,
                "ready deadline {deadline} outside [{}, {}]",
                self.ready_floor,
                self.elapsed
            );
        });
        if self.ready.is_empty() {
            assert_eq!(
                self.ready_floor,
                u64::MAX,
                "stale floor on an empty ready list"
            );
        }
        assert_eq!(
            reachable,
            self.entries.len(),
            "entries reachable from the lists vs entries in the slab"
        );
    }

    /// Checks the links and positions along one list and each deadline with `check_deadline`;
    /// returns the list's length.
    fn check_list(&self, list: &List, level: u8, slot: u8, check_deadline: impl Fn(u64)) -> usize {
        let mut count = 0;
        let mut prev = NIL;
        let mut cursor = list.head;
        while cursor != NIL {
            count += 1;
            assert!(
                count <= self.entries.len(),
                "list at level {level} slot {slot} has a cycle"
            );
            let entry = self.entries.get(cursor as usize).unwrap_or_else(|| {
                panic!("list at level {level} slot {slot} links to vacant {cursor}")
            });
            assert_eq!(entry.prev, prev, "entry {cursor}: prev link broken");
            assert_eq!(
                (entry.place.level(), entry.place.slot()),
                (level, slot),
                "entry {cursor}: recorded position differs from its list"
            );
            check_deadline(entry.place.deadline());
            prev = cursor;
            cursor = entry.next;
        }
        assert_eq!(
            list.tail, prev,
            "list at level {level} slot {slot}: tail mismatch"
        );
        count
    }

    /// The slab index of the live timer `id` refers to, or `None` if `id` is stale.
    fn live_index(&self, id: TimerId) -> Option<u32> {
        let entry = self.entries.get(id.index as usize)?;
        (entry.generation == id.generation).then_some(id.index)
    }

    /// Links an unlinked entry into the list its deadline calls for: the ready list if it is due
    /// at the wheel's time, otherwise the slot given by `level_for` and `slot_for`.
    fn file(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        let deadline = entry.place.deadline();
        if deadline <= self.elapsed {
            entry.place = entry.place.in_list(READY, 0);
            self.ready_floor = self.ready_floor.min(deadline);
            self.ready.push_back(&mut self.entries, index);
            return;
        }
        let level = level_for(self.elapsed, deadline);
        let slot = slot_for(deadline, level);
        debug_assert!(
            slot_start(self.elapsed, level, slot) > self.elapsed,
            "deadline {deadline} filed in the current slot of level {level} at time {}",
            self.elapsed
        );
        entry.place = entry.place.in_list(level as u8, slot as u8);
        let lvl = &mut self.levels[level];
        lvl.slots[slot].push_back(&mut self.entries, index);
        lvl.occupied |= 1 << slot;
    }

    /// Unlinks an entry from whichever list holds it, keeping bitmaps and the ready floor right.
    fn detach(&mut self, index: u32) {
        let place = self.entries[index as usize].place;
        let (level, slot) = (place.level(), place.slot() as usize);
        if level == READY {
            self.ready.unlink(&mut self.entries, index);
            if self.ready.is_empty() {
                self.ready_floor = u64::MAX;
            }
        } else if !self.cascade.is_empty() && (level, slot as u8) == self.cascade_from {
            self.cascade.unlink(&mut self.entries, index);
        } else {
            let lvl = &mut self.levels[level as usize];
            lvl.slots[slot].unlink(&mut self.entries, index);
            if lvl.slots[slot].is_empty() {
                lvl.occupied &= !(1 << slot);
            }
        }
    }

    /// Removes a ready timer from the wheel and returns it.
    fn fire(&mut self, index: u32) -> (TimerId, T) {
        debug_assert_eq!(
            self.entries[index as usize].place.level(),
            READY,
            "fired a timer that is not due"
        );
        self.detach(index);
        let entry = self.entries.remove(index as usize);
        let id = TimerId {
            index,
            generation: entry.generation,
        };
        (id, entry.payload)
    }

    /// The next slot to process as `(level, slot, start)`: the first occupied slot of the lowest
    /// non-empty level, which is due before anything on the levels above (see the geometry).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let (level, lvl) = self
            .levels
            .iter()
            .enumerate()
            .find(|(_, lvl)| lvl.occupied != 0)?;
        let slot = lvl.occupied.trailing_zeros() as usize;
        debug_assert!(
            slot > slot_for(self.elapsed, level),
            "level {level} has slot {slot} occupied at or before the wheel time {}",
            self.elapsed
        );
        Some((level, slot, slot_start(self.elapsed, level, slot)))
    }

    /// Advances the wheel's time to the start of a slot and detaches its list for re-filing:
    /// timers due then become ready, the others are filed again relative to the new time (a lower
    /// level, unless lazily extended beyond the slot). The re-filing happens in `poll`, in steps.
    fn process_slot(&mut self, level: usize, slot: usize, start: u64) {
        debug_assert!(
            start > self.elapsed && start <= self.now,
            "processing slot starting at {start} outside ({}, {}]",
            self.elapsed,
            self.now
        );
        debug_assert!(self.cascade.is_empty(), "a slot emptied during a cascade");
        self.elapsed = start;
        let lvl = &mut self.levels[level];
        self.cascade = std::mem::replace(&mut lvl.slots[slot], List::EMPTY);
        self.cascade_from = (level as u8, slot as u8);
        lvl.occupied &= !(1 << slot);
    }
}

#[cfg(test)]
mod tests;
