//! dflockd: a lightweight distributed lock server.
//!
//! Clients speak a three-line text protocol over TCP (`cmd\nkey\narg\n`, one response line each)
//! to take FIFO locks with leases, counting semaphores (also two-phase: enqueue now, wait later)
//! and to publish and subscribe to signals. The server is wire-compatible with dflockd 1.x
//! clients; the protocol contract is described in the README. Extensions that 1.x clients never
//! send add safety checks: `check`/`scheck` (is a token or fence current?), `q`/`sq` (a key's
//! queue), `--lock-delay`, and `evict`/`sevict`, with which a connection that authenticated with
//! the admin token (`--admin-token-file`) ends leases now.
//!
//! # Layout
//!
//! - [`config`]: command-line flags and `DFLOCKD_*` environment variables.
//! - [`protocol`]: framing, request parsing and response encoding; no I/O.
//! - [`engine`]: the lock, semaphore and signal state machine, pure and driven by an explicit
//!   clock; effects leave through an [`engine::Outbox`].
//! - [`metrics`]: histograms and the Prometheus text format; counters live with what they count.
//! - [`slots`]: the slab behind the engine's entries, which gives memory back a little per turn.
//! - [`systemd`]: socket activation and readiness/watchdog notifications.
//! - [`table`]: hash tables that resize a little per insert or remove, never all at once.
//! - [`timer`]: the hierarchical timer wheel used by the engine and the event loop.
//! - [`token`]: lease tokens that double as fencing tokens.
//! - [`server`]: the single-threaded mio event loop that owns every connection and the engine.
//! - [`clock`]: the only place that reads the OS clock (log lines aside, which carry their own
//!   timestamps).
//! - [`http`]: the HTTP/1.1 requests and responses of the monitoring endpoint; no I/O.
//! - [`logging`]: the process's logger; hands lines to a logging thread and never blocks.
//! - [`client`]: a blocking client (locks and semaphores with background renewal, signals,
//!   `stats`, TLS, auth, sharding over several servers); used by `dflockctl` and
//!   `dflockd-bench`.
//!
//! # How bytes flow
//!
//! ```text
//! socket --read--> loop-wide buffer --frame::decode--> Frame --request::parse--> Request
//!   --Engine::apply(now, client, request, outbox)--> replies, grants, pushes
//!   --response::encode--> each target connection's output --one write per turn--> socket
//! ```
//!
//! Timers feed the same path: `Engine::expire(now, outbox)` turns lease expiries and wait
//! timeouts into replies, and a departing connection's `Engine::disconnect` turns released
//! locks into grants for the next waiters.

#![warn(missing_docs)]

// Without the default `server` feature only the client library and what it shares with the
// server (the protocol and tokens) are built.

#[cfg(feature = "server")]
pub mod budget;
pub mod client;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod engine;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "server")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod slots;
#[cfg(feature = "server")]
pub mod systemd;
#[cfg(feature = "server")]
pub mod table;
#[cfg(all(test, feature = "server"))]
pub(crate) mod test_rng;
#[cfg(feature = "server")]
pub mod timer;
pub mod token;
