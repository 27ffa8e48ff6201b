//! Fuzz harnesses over the real request path: framing, parsing, the engine, the socket-free
//! dispatcher, the signal index and the timer wheel. Each public function takes arbitrary bytes,
//! decodes them into a deterministic sequence of operations, runs it and panics (naming the broken
//! property) as soon as a property fails.
//!
//! The `fuzz/` crate's targets are one-line calls into this module, and `tests/it/fuzz_replay.rs`
//! replays every committed seed and regression input through the same functions under plain
//! `cargo test`, so the harnesses compile and run on the stable toolchain. The module is always
//! compiled and hidden from the documentation; the server never calls it.
//!
//! Harnesses must be deterministic: the same input always runs the same operations with the same
//! lease tokens ([`TokenIssuer::deterministic`]) and the same clock, and keeps no state between
//! runs, so any failure reproduces from its input alone. They must not read the OS clock, touch a
//! socket or depend on hash-map iteration order.
//!
//! [`TokenIssuer::deterministic`]: crate::token::TokenIssuer::deterministic

mod engine;
mod frame;
mod lines;
mod session;
mod subject;
mod timer;

pub use self::engine::engine;
pub use self::frame::{frame, request};
pub use self::session::session;
pub use self::subject::subject;
pub use self::timer::timer;

use crate::engine::EngineConfig;
use crate::engine::signal::SubscriptionLimits;
use crate::protocol::MAX_SECONDS;

/// The fuzz input, read front to back. Reading past the end yields zeros, so every decoder
/// terminates and any prefix of an input is itself a valid input.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A little-endian number from the next `N` bytes.
    fn number<const N: usize>(&mut self) -> u64 {
        (0..N).fold(0, |acc, i| acc | u64::from(self.byte()) << (8 * i))
    }

    fn u16(&mut self) -> u16 {
        self.number::<2>() as u16
    }

    /// A number below `n` (> 0), from one byte (two when `n` needs them).
    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// Everything not read yet.
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// An engine configuration from the input: small caps and short intervals, so that the limits,
/// idle GC and both disconnect policies are all reachable within a few operations. With
/// `lock_delay`, the input may turn `--lock-delay` on as well (the engine target's model
/// grants freed capacity at once and does not know it; the engine's own invariants check
/// that no grant happens while a delay is in force).
fn engine_config(input: &mut Input<'_>, lock_delay: bool) -> EngineConfig {
    let flags = input.byte();
    EngineConfig {
        default_lease_s: *input.pick(&[1, 5, 33, MAX_SECONDS]),
        max_locks: *input.pick(&[1, 2, 3, 1024]),
        max_waiters: *input.pick(&[0, 0, 1, 2]),
        subscriptions: SubscriptionLimits {
            per_client: *input.pick(&[0, 0, 1, 2]),
            bytes_per_client: *input.pick(&[0, 0, 4, 16]),
            total: *input.pick(&[0, 0, 2, 5]),
        },
        gc_interval_ms: *input.pick(&[1, 700, 5_000]),
        gc_max_idle_ms: *input.pick(&[0, 1_500, 60_000]),
        auto_release_on_disconnect: flags & 1 == 0,
        lock_delay_ms: match (lock_delay, flags >> 1 & 3) {
            (false, _) | (true, 0 | 1) => 0,
            (true, 2) => 1,
            (true, _) => 700,
        },
        lock_events: flags & 8 != 0,
    }
}

/// Escape byte of [`expand`].
const RUN_ESCAPE: u8 = 0x1b;
/// Bytes per unit of a run's length in [`expand`].
const RUN_UNIT: usize = 300;

/// Turns a compact stream into the bytes it stands for, so that lines longer than a small fuzz
/// input (up to and past the 64 KiB payload limit) are reachable: `ESC 0` is a literal `ESC`,
/// `ESC n b` (n > 0) is `n * 300` copies of byte `b`, and every other byte stands for itself.
fn expand(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len());
    let mut input = Input::new(compact);
    while !input.is_empty() {
        match input.byte() {
            RUN_ESCAPE => match input.byte() {
                0 => out.push(RUN_ESCAPE),
                units => {
                    let fill = input.byte();
                    out.resize(out.len() + usize::from(units) * RUN_UNIT, fill);
                }
            },
            byte => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_reads_zeros_past_the_end() {
        let mut input = Input::new(&[7, 1, 2]);
        assert_eq!(input.byte(), 7);
        assert_eq!(input.u16(), 0x0201);
        assert!(input.is_empty());
        assert_eq!(input.byte(), 0);
        assert_eq!(input.below(5), 0);
        assert_eq!(input.bytes(4), b"");
    }

    #[test]
    fn expand_writes_runs_and_literal_escapes() {
        assert_eq!(expand(b"ab"), b"ab");
        assert_eq!(expand(&[RUN_ESCAPE, 0, b'x']), [RUN_ESCAPE, b'x']);
        let run = expand(&[b'<', RUN_ESCAPE, 2, b'z', b'>']);
        assert_eq!(run.len(), 2 + 2 * RUN_UNIT);
        assert!(run[1..=2 * RUN_UNIT].iter().all(|&b| b == b'z'));
        assert_eq!(run.last(), Some(&b'>'));
    }
}
