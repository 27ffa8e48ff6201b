//! Time as the server sees it: whole milliseconds since the server started.
//!
//! [`Clock`] is the only place in the crate that reads the OS clock. The event loop samples it once
//! per turn and hands the value to the engine and the timer wheels, which never read time
//! themselves; tests and fuzz targets pass whatever `Millis` they like.

use std::time::{Duration, Instant};

/// A point in time, in whole milliseconds since the server started (or since an arbitrary origin in
/// tests).
///
/// Arithmetic saturates instead of overflowing: a lease of 9 223 372 036 s (the protocol maximum)
/// must not wrap around and become a deadline in the past. The timer wheels tell instants apart up
/// to [`END_OF_TIME`](crate::timer::END_OF_TIME), 2^54 ms (about 570 000
/// years) after the origin, so a clock that starts at zero never reaches their end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// The origin.
    pub const ZERO: Millis = Millis(0);
    /// The end of time; used for "never".
    pub const MAX: Millis = Millis(u64::MAX);

    /// This instant plus `ms` milliseconds, saturating at [`Millis::MAX`].
    pub fn plus_ms(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// This instant plus `secs` whole seconds, saturating at [`Millis::MAX`].
    pub fn plus_secs(self, secs: u64) -> Millis {
        self.plus_ms(secs.saturating_mul(1000))
    }

    /// Milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The earlier of two optional deadlines; `None` means "no deadline", not "earliest".
    #[inline]
    pub fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Seconds from `earlier` to `self` as a fraction, or 0.0 if `earlier` is later; for `stats`.
    pub fn secs_since(self, earlier: Millis) -> f64 {
        self.since(earlier) as f64 / 1000.0
    }
}

/// Reads the monotonic OS clock and converts it to [`Millis`] since construction.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Microseconds since construction: for timing the loop's own turns.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The current time, rounded down to the millisecond.
    pub fn now(&self) -> Millis {
        Millis(self.origin.elapsed().as_millis() as u64)
    }

    /// How long from the current time until `deadline` (zero if it has passed). Not rounded: mio
    /// rounds poll timeouts up to whole milliseconds, so a poll never wakes just before a deadline.
    pub fn until(&self, deadline: Millis) -> Duration {
        let target = Duration::from_millis(deadline.0);
        target.saturating_sub(self.origin.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5).plus_secs(2), Millis(2005));
        assert_eq!(Millis(5).plus_secs(u64::MAX), Millis::MAX);
        assert_eq!(Millis::MAX.plus_ms(1), Millis::MAX);
        assert_eq!(Millis(3).since(Millis(10)), 0);
        assert_eq!(Millis(1500).secs_since(Millis(250)), 1.25);
    }

    #[test]
    fn earliest_ignores_missing_deadlines() {
        assert_eq!(Millis::earliest(None, None), None);
        assert_eq!(Millis::earliest(Some(Millis(7)), None), Some(Millis(7)));
        assert_eq!(Millis::earliest(None, Some(Millis(7))), Some(Millis(7)));
        assert_eq!(
            Millis::earliest(Some(Millis(9)), Some(Millis(4))),
            Some(Millis(4))
        );
    }
}
