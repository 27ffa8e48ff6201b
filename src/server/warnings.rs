//! Rate limiting of the warnings a peer can trigger at will.
//!
//! A client that fails authentication a thousand times a second, or a crowd of subscribers too
//! slow to keep up, must not turn the log into a flood. Each kind of such warning passes at most
//! once per interval; the line that next gets through says how many of its kind were suppressed
//! in between. The limiters are plain data driven by an explicit `now`, owned by the loop.

use std::fmt;

use crate::clock::Millis;

/// How often a warning of one peer-triggered kind may be logged.
pub const PEER_WARNING_INTERVAL_MS: u64 = 1_000;

/// Lets one event through per interval and counts the ones it holds back.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    interval_ms: u64,
    /// When the last event got through.
    last: Option<Millis>,
    /// Events held back since then.
    suppressed: u64,
}

impl RateLimiter {
    /// A limiter that lets an event through at most every `interval_ms`.
    pub const fn new(interval_ms: u64) -> RateLimiter {
        RateLimiter {
            interval_ms,
            last: None,
            suppressed: 0,
        }
    }

    /// An event at `now`: `Some` (with the count of events held back since the last one that
    /// got through) if it may be logged, `None` if it is held back.
    pub fn admit(&mut self, now: Millis) -> Option<Suppressed> {
        if self
            .last
            .is_some_and(|last| now.since(last) < self.interval_ms)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(Suppressed(std::mem::take(&mut self.suppressed)))
    }
}

/// How many similar lines were held back before this one. Displays as nothing when none were,
/// else as ` (N similar suppressed)`, to be appended to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppressed(pub u64);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} similar suppressed)"),
        }
    }
}

/// The kinds of warning a peer can trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarnKind {
    /// A connection failed authentication.
    AuthFailure,
    /// A subscriber was disconnected as a slow consumer.
    SlowConsumer,
    /// A connection was dropped on arrival: it could not be registered or given a TLS session.
    Refused,
    /// A connection was refused at `--max-connections`.
    MaxConnections,
    /// A connection was refused at `--max-connections-per-ip`.
    MaxConnectionsPerIp,
    /// An acquire was refused at `--max-locks`.
    MaxLocks,
    /// An acquire was refused at `--max-waiters`.
    MaxWaiters,
    /// A `listen` was refused at one of the subscription caps.
    MaxSubscriptions,
    /// A TLS handshake failed or ran out of time.
    TlsHandshake,
    /// A connection was closed because a request did not arrive within the read timeout.
    ReadTimeout,
    /// A Unix-socket peer was refused by `--unix-allow-uid` / `--unix-allow-gid`.
    UnixPeer,
}

impl WarnKind {
    /// Number of kinds.
    const COUNT: usize = 11;
}

/// One [`RateLimiter`] per [`WarnKind`], at [`PEER_WARNING_INTERVAL_MS`].
#[derive(Clone, Debug)]
pub struct PeerWarnings([RateLimiter; WarnKind::COUNT]);

impl Default for PeerWarnings {
    fn default() -> PeerWarnings {
        PeerWarnings([const { RateLimiter::new(PEER_WARNING_INTERVAL_MS) }; WarnKind::COUNT])
    }
}

impl PeerWarnings {
    /// A warning of `kind` at `now`; see [`RateLimiter::admit`].
    pub fn admit(&mut self, kind: WarnKind, now: Millis) -> Option<Suppressed> {
        self.0[kind as usize].admit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_gets_through_and_reports_the_rest() {
        let mut limiter = RateLimiter::new(1_000);
        assert_eq!(limiter.admit(Millis(5_000)), Some(Suppressed(0)));
        for at in [5_000, 5_001, 5_500, 5_999] {
            assert_eq!(limiter.admit(Millis(at)), None, "at {at}");
        }
        assert_eq!(limiter.admit(Millis(6_000)), Some(Suppressed(4)));
        assert_eq!(limiter.admit(Millis(6_999)), None);
        // The count starts over after each report; a long silence reports nothing.
        assert_eq!(limiter.admit(Millis(7_000)), Some(Suppressed(1)));
        assert_eq!(limiter.admit(Millis(60_000)), Some(Suppressed(0)));
    }

    #[test]
    fn the_first_event_passes_even_at_time_zero() {
        let mut limiter = RateLimiter::new(5_000);
        assert_eq!(limiter.admit(Millis::ZERO), Some(Suppressed(0)));
        assert_eq!(limiter.admit(Millis(4_999)), None);
        assert_eq!(limiter.admit(Millis(5_000)), Some(Suppressed(1)));
    }

    #[test]
    fn kinds_are_limited_independently() {
        let mut warnings = PeerWarnings::default();
        let now = Millis(100);
        assert!(warnings.admit(WarnKind::AuthFailure, now).is_some());
        assert!(warnings.admit(WarnKind::AuthFailure, now).is_none());
        assert!(warnings.admit(WarnKind::SlowConsumer, now).is_some());
        assert!(warnings.admit(WarnKind::Refused, now).is_some());
        assert_eq!(
            warnings.admit(WarnKind::AuthFailure, now.plus_ms(1_000)),
            Some(Suppressed(1))
        );
    }

    #[test]
    fn suppressed_counts_display_only_when_nonzero() {
        assert_eq!(format!("x{}", Suppressed(0)), "x");
        assert_eq!(format!("x{}", Suppressed(37)), "x (37 similar suppressed)");
    }
}
