//! When to accept: the listener's readiness, the per-turn batch and the back-off after resource
//! errors (spec §15.4).
//!
//! Edge-triggered epoll reports a listener once per transition, so a listener with a backlog left
//! over (batch exhausted, or accept failing with EMFILE) never raises another event; each
//! listener remembers it (`listeners.rs`). After a resource error the loop must not retry at once (the listener stays ready
//! and the loop would spin), so accepting pauses for an exponentially growing delay, and a timer
//! is the only wake-up.

use std::io;

use log::warn;

use super::warnings::RateLimiter;
use crate::clock::Millis;

/// First back-off after an accept error.
const BACKOFF_MIN_MS: u64 = 5;
/// Longest back-off.
const BACKOFF_MAX_MS: u64 = 1_000;
/// At most one warning per this interval while accept keeps failing.
const WARN_INTERVAL_MS: u64 = 5_000;

/// Accept bookkeeping.
#[derive(Debug)]
pub struct AcceptState {
    /// Accepting is paused until the retry timer fires.
    backing_off: bool,
    /// The next back-off delay (0 = not failing).
    next_backoff_ms: u64,
    warnings: RateLimiter,
}

impl Default for AcceptState {
    fn default() -> AcceptState {
        AcceptState {
            backing_off: false,
            next_backoff_ms: 0,
            warnings: RateLimiter::new(WARN_INTERVAL_MS),
        }
    }
}

impl AcceptState {
    /// Whether an accept should be attempted now, given whether a listener may have
    /// connections waiting.
    pub fn can_accept_now(&self, pending: bool) -> bool {
        pending && !self.backing_off
    }

    /// An accept succeeded: the error streak is over.
    pub fn succeeded(&mut self) {
        self.next_backoff_ms = 0;
    }

    /// An accept failed. Returns the delay after which to retry, if accepting must pause.
    pub fn failed(&mut self, error: &io::Error, now: Millis) -> Option<u64> {
        match error.kind() {
            // The listener's backlog is empty (the listener notes it).
            io::ErrorKind::WouldBlock => None,
            // The peer gave up before we accepted, or a signal interrupted us: just go on.
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted => None,
            // Descriptor or memory exhaustion and anything unexpected: back off.
            _ => {
                let delay = self.next_backoff_ms.max(BACKOFF_MIN_MS);
                self.next_backoff_ms = (delay * 2).min(BACKOFF_MAX_MS);
                self.backing_off = true;
                if let Some(suppressed) = self.warnings.admit(now) {
                    warn!("accept failed: {error}; retrying in {delay} ms{suppressed}");
                }
                Some(delay)
            }
        }
    }

    /// The back-off delay passed.
    pub fn retry_due(&mut self) {
        self.backing_off = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_back_off_exponentially_up_to_a_second() {
        let mut state = AcceptState::default();
        let emfile = io::Error::from_raw_os_error(24);
        let delays: Vec<u64> = (0..10)
            .map(|_| {
                let delay = state.failed(&emfile, Millis(0)).unwrap();
                assert!(!state.can_accept_now(true), "accepting while backing off");
                state.retry_due();
                delay
            })
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        state.succeeded();
        assert_eq!(state.failed(&emfile, Millis(0)), Some(5));
    }

    #[test]
    fn aborts_are_skipped_without_backing_off() {
        let mut state = AcceptState::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(state.failed(&aborted, Millis(0)), None);
        assert!(state.can_accept_now(true));
        assert!(!state.can_accept_now(false));
    }
}
