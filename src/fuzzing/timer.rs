//! The `timer` target: [`TimerWheel`] against a sorted-map model of the armed timers.

use std::collections::BTreeMap;

use super::Input;
use crate::clock::Millis;
use crate::timer::{END_OF_TIME, TimerId, TimerWheel};

/// A timer as the model sees it.
struct Armed {
    id: TimerId,
    deadline: u64,
    /// Bounds of the order key: the deadline, or the wheel's time when the timer was set if that
    /// is later (a timer set in the past is due at once, after those already due).
    effective: (u64, u64),
}

/// The reference: armed timers by payload (a unique serial) and the two clocks of the wheel's
/// documented semantics.
#[derive(Default)]
struct Model {
    armed: BTreeMap<u64, Armed>,
    /// Latest `now` given to `poll`.
    now: u64,
    /// Bounds of the wheel's time: `now` after a poll that found nothing due, else the latest
    /// deadline fired; only known to lie between the two while a slot's cascade is unfinished.
    wheel_time: (u64, u64),
    /// Handles of fired and cancelled timers, which must stay dead.
    stale: Vec<TimerId>,
    next_payload: u64,
}

/// What a `poll` that returned nothing meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Empty {
    /// Nothing is due: `next_deadline` is later than `now`.
    NothingDue,
    /// The call re-filed its quota of a cascading slot: `next_deadline` is at or before `now`,
    /// and the caller should poll again.
    CascadeUnfinished,
}

/// Consecutive unfinished cascades allowed before a drain is declared stuck: each re-files
/// thousands of timers, and no input arms that many times nine levels.
const CASCADE_ROUNDS: usize = 64;

/// An instant as the wheel keeps it: times past its end count as the end.
fn on_wheel(time: u64) -> u64 {
    time.min(END_OF_TIME.0)
}

impl Model {
    fn arm(&mut self, id: TimerId, payload: u64, deadline: u64) {
        let deadline = on_wheel(deadline);
        let (lo, hi) = self.wheel_time;
        let effective = (deadline.max(lo), deadline.max(hi));
        self.armed.insert(
            payload,
            Armed {
                id,
                deadline,
                effective,
            },
        );
    }

    fn earliest(&self) -> Option<u64> {
        self.armed.values().map(|t| t.deadline).min()
    }

    /// Picks an armed timer by position; `None` when nothing is armed.
    fn pick(&self, input: &mut Input<'_>) -> Option<u64> {
        if self.armed.is_empty() {
            return None;
        }
        let position = input.below(self.armed.len());
        self.armed.keys().nth(position).copied()
    }

    /// Checks one result of `poll(self.now)` and updates the model; says what an empty result
    /// meant.
    fn polled(&mut self, got: Option<(TimerId, u64)>, wheel: &TimerWheel<u64>) -> Option<Empty> {
        let Some((id, payload)) = got else {
            if wheel
                .next_deadline()
                .is_some_and(|Millis(next)| next <= self.now)
            {
                // The wheel stands somewhere inside the slot it is cascading.
                self.wheel_time.1 = self.now;
                return Some(Empty::CascadeUnfinished);
            }
            assert!(
                self.armed.values().all(|t| t.deadline > self.now),
                "poll({}) returned nothing with a timer due",
                self.now
            );
            self.wheel_time = (self.now, self.now);
            return Some(Empty::NothingDue);
        };
        let timer = self
            .armed
            .remove(&payload)
            .unwrap_or_else(|| panic!("fired payload {payload}, which is not armed"));
        assert_eq!(timer.id, id, "payload {payload} fired under another id");
        assert!(
            timer.deadline <= self.now,
            "fired deadline {} at {}",
            timer.deadline,
            self.now
        );
        let latest_allowed = self.armed.values().map(|t| t.effective.1).min();
        assert!(
            latest_allowed.is_none_or(|e| timer.effective.0 <= e),
            "fired effective deadline {:?} after one of {latest_allowed:?}",
            timer.effective
        );
        let (lo, hi) = self.wheel_time;
        self.wheel_time = (lo.max(timer.deadline), hi.max(timer.deadline));
        self.stale.push(id);
        None
    }

    /// Polls at `now` until nothing is due, or `budget` times.
    fn drain(&mut self, wheel: &mut TimerWheel<u64>, now: u64, budget: usize) {
        let mut unfinished = 0;
        for _ in 0..budget {
            let got = wheel.poll(Millis(now));
            match self.polled(got, wheel) {
                None => unfinished = 0,
                Some(Empty::NothingDue) => return,
                Some(Empty::CascadeUnfinished) => {
                    unfinished += 1;
                    assert!(unfinished <= CASCADE_ROUNDS, "a cascade never finishes");
                }
            }
        }
    }

    fn check(&self, wheel: &TimerWheel<u64>) {
        wheel.check_invariants();
        assert_eq!(wheel.len(), self.armed.len(), "timer count");
        match (wheel.next_deadline(), self.earliest()) {
            (None, None) => {}
            (Some(Millis(next)), Some(earliest)) => {
                assert!(next <= earliest, "next_deadline {next} after {earliest}")
            }
            (next, earliest) => panic!("next_deadline {next:?} with earliest {earliest:?}"),
        }
    }
}

/// A deadline relative to `now`: near, far, in the past, on slot boundaries, at the end of time.
fn deadline(input: &mut Input<'_>, now: u64) -> u64 {
    match input.byte() % 8 {
        0 => now.saturating_add(u64::from(input.byte())),
        1 => now.saturating_add(u64::from(input.u16()) << input.below(24)),
        2 => now.saturating_sub(u64::from(input.u16())),
        3 => u64::MAX - u64::from(input.byte()),
        4 => {
            let unit = 1u64 << (6 * (1 + input.below(10)));
            let boundary = (now / unit).saturating_add(1).saturating_mul(unit);
            boundary
                .saturating_add(input.below(3) as u64)
                .saturating_sub(1)
        }
        5 => now,
        6 => input.number::<8>(),
        _ => now.saturating_add(input.number::<5>()),
    }
}

/// The `now` of a poll: standing still or going back (no time passes), small steps, exactly the
/// next deadline or cascade point, large jumps, the end of time.
fn poll_time(input: &mut Input<'_>, model: &Model, wheel: &TimerWheel<u64>) -> u64 {
    let now = model.now;
    match input.byte() % 8 {
        0 => now,
        1 => now.saturating_sub(u64::from(input.u16())),
        2 => now.saturating_add(u64::from(input.byte())),
        3 => now.saturating_add(u64::from(input.u16()) * 64),
        4 => model.earliest().unwrap_or(now),
        5 => wheel.next_deadline().map_or(now, |Millis(next)| next),
        6 => now.saturating_add(input.number::<6>()),
        _ => u64::MAX - u64::from(input.byte() % 4),
    }
}

fn step(input: &mut Input<'_>, wheel: &mut TimerWheel<u64>, model: &mut Model) {
    match input.byte() % 8 {
        0 | 1 => {
            let at = deadline(input, model.now);
            let payload = model.next_payload;
            model.next_payload += 1;
            let id = wheel.insert(Millis(at), payload);
            model.arm(id, payload, at);
        }
        2 => {
            if let Some(payload) = model.pick(input) {
                let timer = model.armed.remove(&payload).expect("picked from the model");
                assert_eq!(wheel.cancel(timer.id), Some(payload), "cancel");
                model.stale.push(timer.id);
            }
        }
        3 => {
            if let Some(payload) = model.pick(input) {
                let timer = model.armed.remove(&payload).expect("picked from the model");
                let shift = 1u64 << (4 * input.below(12));
                let at = match input.byte() % 3 {
                    0 => timer.deadline.saturating_add(input.u16() as u64 % shift),
                    1 => timer.deadline.saturating_sub(input.u16() as u64 % shift),
                    _ => deadline(input, model.now),
                };
                assert!(wheel.reschedule(timer.id, Millis(at)), "reschedule live");
                model.arm(timer.id, payload, at);
            }
        }
        4 => {
            if !model.stale.is_empty() {
                let stale = *input.pick(&model.stale);
                assert_eq!(wheel.cancel(stale), None, "stale cancel");
                assert!(!wheel.reschedule(stale, Millis(model.now)), "stale move");
                assert_eq!(wheel.deadline(stale), None, "stale deadline");
                assert_eq!(wheel.payload(stale), None, "stale payload");
            }
        }
        5 => {
            for (&payload, timer) in &model.armed {
                assert_eq!(wheel.deadline(timer.id), Some(Millis(timer.deadline)));
                assert_eq!(wheel.payload(timer.id), Some(payload));
            }
        }
        _ => {
            let now = poll_time(input, model, wheel);
            model.now = model.now.max(on_wheel(now));
            // Sometimes stop early, as the engine does when its per-turn budget runs out.
            let budget = match input.byte() % 4 {
                0 => 1 + input.below(3),
                _ => usize::MAX,
            };
            model.drain(wheel, now, budget);
        }
    }
}

/// The `timer` target: arbitrary inserts, cancels, reschedules (earlier, later, into the past),
/// stale-handle operations and polls at arbitrary times (including backwards and past the end of
/// the wheel's time, where the model counts every later instant as the end).
///
/// Checks after every operation: the wheel's own invariants; the timer count; `next_deadline`
/// never later than the earliest deadline; polls fire only due timers, in order of effective
/// deadline, under their own handles; an empty poll either leaves `next_deadline` in the future
/// with nothing due, or (a cascade cut short) at or before `now`, and repeated polls finish the
/// cascade; stale handles stay dead. At the end of time every timer fires and the wheel is empty.
pub fn timer(data: &[u8]) {
    let mut input = Input::new(data);
    let mut wheel = TimerWheel::new();
    let mut model = Model::default();
    while !input.is_empty() {
        step(&mut input, &mut wheel, &mut model);
        model.check(&wheel);
    }
    model.now = on_wheel(u64::MAX);
    model.drain(&mut wheel, u64::MAX, usize::MAX);
    model.check(&wheel);
    assert!(wheel.is_empty(), "timers left at the end of time");
}
