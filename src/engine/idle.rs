//! Scheduling of idle GC (spec §8.7): a pass every `--gc-interval`, armed only while some resource
//! is idle, so an engine with nothing to collect has no timer armed.

use super::{Due, Engine};
use crate::clock::Millis;

impl Engine {
    /// Puts `resource` on or off the idle list to match its state, and makes sure a GC pass is
    /// scheduled while any resource is idle. Call after a resource's holders or waiters change.
    pub(super) fn settle(&mut self, now: Millis, resource: u32) {
        self.keys.settle(resource);
        if self.keys.has_idle() && self.gc_timer.is_none() {
            self.arm_gc(self.next_gc_tick(now));
        }
    }

    /// Runs a GC pass removing at most `budget` resources; returns how many it removed. If the
    /// budget ran out the pass continues on the next call of [`Engine::expire`].
    pub(super) fn on_idle_gc(&mut self, now: Millis, budget: usize) -> usize {
        self.gc_timer = None;
        let delays = &self.delays;
        let removed = self
            .keys
            .collect_idle(now, self.config.gc_max_idle_ms, budget, |r| {
                !delays.is_empty() && delays.contains_key(&r)
            });
        if removed == budget {
            self.arm_gc(now);
        } else if self.keys.has_idle() {
            self.arm_gc(self.next_gc_tick(now));
        }
        removed
    }

    /// GC passes run on multiples of the interval since the engine's origin, like a ticker
    /// started with the server.
    fn next_gc_tick(&self, now: Millis) -> Millis {
        let interval = self.config.gc_interval_ms;
        Millis(
            (now.0 / interval)
                .saturating_add(1)
                .saturating_mul(interval),
        )
    }

    fn arm_gc(&mut self, at: Millis) {
        self.gc_timer = Some(self.timers.insert(at, Due::IdleGc.pack()));
    }
}
