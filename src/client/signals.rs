//! Pub/sub signals (spec §13) as a subscriber sees them: subscriptions with optional queue
//! groups, publishing, and the stream of incoming signals.
//!
//! A [`Signals`] owns one connection driven by a session pump: the pump forwards every `sig`
//! push into a channel the owner reads, and sends `ping` whenever the connection has been
//! silent for the heartbeat interval, so an idle subscriber outlives the server's read timeout.
//! Matching patterns and choosing group members is the server's business, not this module's.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::Signal;
use super::conn::{self, Connection};
use super::error::Result;
use super::session::{Hooks, Link, Session};

/// A subscriber connection: listen to patterns, publish, and receive signals.
///
/// Signals arrive in a channel read with [`Signals::recv`], [`Signals::recv_timeout`] or
/// [`Signals::iter`]; it ends when the connection does. The channel is unbounded: read it
/// promptly, or use the server's slow-consumer limit as the bound.
///
/// ```no_run
/// use dflockd::client::Client;
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::new(["127.0.0.1:6388"])?;
/// let signals = client.signals()?;
/// signals.listen("orders.>", None)?;
/// signals.listen("jobs.*", Some("workers"))?; // one member of "workers" gets each job
/// for signal in signals.iter() {
///     println!("{}: {}", signal.channel, signal.payload);
/// }
/// println!("connection ended: {:?}", signals.closed_reason());
/// # Ok(())
/// # }
/// ```
pub struct Signals {
    session: Session,
    incoming: Receiver<Signal>,
}

impl Signals {
    /// Starts the pump on `conn`.
    pub(crate) fn start(
        conn: Connection,
        io_timeout: Duration,
        heartbeat: Duration,
    ) -> Result<Signals> {
        let (sender, incoming) = mpsc::channel();
        let session = Session::start(conn, io_timeout, heartbeat, Forward(sender))?;
        Ok(Signals { session, incoming })
    }

    /// Subscribes to `pattern` (a channel, or NATS-style wildcards: `*` for one token, `>`
    /// for the rest), as a member of queue `group` if given (then each signal goes to one
    /// member of the group). Subscribing twice to the same (pattern, group) is harmless.
    pub fn listen(&self, pattern: &str, group: Option<&str>) -> Result<()> {
        conn::subscription(&mut &self.session, true, pattern, group)
    }

    /// Drops the subscription with exactly this (pattern, group), if there is one.
    pub fn unlisten(&self, pattern: &str, group: Option<&str>) -> Result<()> {
        conn::subscription(&mut &self.session, false, pattern, group)
    }

    /// Publishes `payload` on `channel` (no wildcards); returns the number of deliveries
    /// (subscribers plus queue groups). This connection's own subscriptions count too.
    pub fn emit(&self, channel: &str, payload: &str) -> Result<u64> {
        conn::emit(&mut &self.session, channel, payload)
    }

    /// A round trip to the server.
    pub fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        conn::ping(&mut &self.session)?;
        Ok(start.elapsed())
    }

    /// The next signal, waiting as long as it takes; `None` once the connection has ended and
    /// every received signal was read.
    pub fn recv(&self) -> Option<Signal> {
        self.incoming.recv().ok()
    }

    /// The next signal, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Signal, RecvTimeoutError> {
        self.incoming.recv_timeout(timeout)
    }

    /// Incoming signals until the connection ends.
    pub fn iter(&self) -> impl Iterator<Item = Signal> + '_ {
        self.incoming.iter()
    }

    /// Why the connection ended, or `None` while it is open.
    pub fn closed_reason(&self) -> Option<String> {
        self.session.closed_reason()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed_reason().is_some()
    }

    /// Closes the connection (dropping does the same).
    pub fn close(mut self) {
        self.session.close();
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("closed", &self.closed_reason())
            .finish_non_exhaustive()
    }
}

/// The session hooks of a subscriber: pushes go to the channel; there is no periodic work
/// beyond the session's own heartbeat.
struct Forward(Sender<Signal>);

impl Hooks for Forward {
    fn due(&self) -> Option<Instant> {
        None
    }

    fn tick(&mut self, _now: Instant, _link: &Link) {}

    fn reply(&mut self, _line: &str) {}

    fn push(&mut self, signal: Signal) {
        // A receiver that is gone wants no more signals.
        let _ = self.0.send(signal);
    }

    fn closed(&mut self, _why: &str) {
        // The sender goes away with the pump thread, which ends the receiver's stream.
    }
}
