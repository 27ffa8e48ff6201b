//! Scenario tests of the whole engine (spec §7-11, §13), driven the way the server drives it:
//! requests are parsed from wire text, time is an explicit clock, and every effect lands in a
//! recording [`Outbox`].
//!
//! The harness checks more than each test asserts. After every step (request, clock move,
//! disconnect, shutdown cancel) it runs the engine's invariant check and enforces the reply
//! discipline of spec §2.3: a request the engine answers gets exactly one reply, a request that
//! waits gets none until a grant, timeout or cancel delivers exactly one, nobody else is ever
//! answered, and nothing reaches a client that has left. It also requires every test to read each
//! reply before the client's next request, so no response goes unchecked.

mod disconnects;
mod events;
mod expiry;
mod fifo;
mod harness;
mod idle_gc;
mod limits;
mod metrics;
mod mixed;
mod release;
mod renew;
mod safety;
mod semaphores;
mod signal_turns;
mod signals;
mod spread;
mod stats;
mod two_phase;
