//! One connection as the event loop sees it: the socket-free [`Session`] plus its transport,
//! readiness flags and deadlines.

use crate::clock::Millis;
use crate::server::session::Session;
use crate::server::transport::Transport;
use crate::timer::TimerId;

/// How long a server-initiated close keeps reading (and discarding) after sending FIN, so that
/// unread input does not make the kernel answer with a reset that destroys the final line.
pub const LINGER_MS: u64 = 1_000;
/// Pause between `error_auth` and the close (spec §14).
pub const AUTH_FAILURE_DELAY_MS: u64 = 100;

/// Progress of a graceful close (one that delivers pending output first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Output is still being flushed; FIN goes out once it is empty and `not_before` has passed.
    Flushing {
        /// Earliest time to send FIN (the `error_auth` delay).
        not_before: Millis,
    },
    /// FIN sent; reading and discarding until EOF or `until`.
    Lingering {
        /// When to stop waiting for the peer's EOF.
        until: Millis,
    },
}

/// A connection.
#[derive(Debug)]
pub struct Conn {
    /// Protocol state.
    pub session: Session,
    /// The byte stream.
    pub transport: Transport,
    /// A read may return data (set by readable events, cleared when a read drained the socket).
    pub read_ready: bool,
    /// The last readiness event said the read side is closed: short reads prove nothing then.
    pub read_closed_hint: bool,
    /// A write may make progress (set by writable events, cleared on `WouldBlock`).
    pub write_ready: bool,
    /// On the server's list of connections to write again next turn, because the turn's write
    /// quota cut the last write short while the socket still had room.
    pub write_deferred: bool,
    /// Since when pending output has been stuck (for the write deadline).
    pub write_stalled_since: Option<Millis>,
    /// Graceful close in progress.
    pub closing: Option<Closing>,
    /// When an unfinished TLS handshake gets the connection dropped (`--tls-handshake-timeout`);
    /// cleared once the handshake completes.
    pub handshake_deadline: Option<Millis>,
    /// The one I/O timer this connection has armed, and when it fires. Deadlines only ever move
    /// later in the common case (a new line, a write that made progress), so the timer is left in
    /// place and re-armed when it fires early, which keeps the wheel out of the per-request path.
    pub timer: Option<(TimerId, Millis)>,
}

impl AsMut<Session> for Conn {
    fn as_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(session: Session, transport: Transport) -> Conn {
        Conn {
            session,
            transport,
            read_ready: false,
            read_closed_hint: false,
            write_ready: true,
            write_deferred: false,
            write_stalled_since: None,
            closing: None,
            handshake_deadline: None,
            timer: None,
        }
    }

    /// Output not yet on the wire: the session's, or records the transport queued itself.
    pub fn has_pending_output(&self) -> bool {
        self.session.output_len() > 0 || self.transport.has_pending_output()
    }

    /// Stops the handshake deadline once the TLS handshake is done.
    pub fn note_handshake_progress(&mut self) {
        if self.handshake_deadline.is_some() && !self.transport.is_handshaking() {
            self.handshake_deadline = None;
        }
    }

    /// The earliest deadline this connection has running, if any. None while a close is queued
    /// but not started: the loop starts it later in the same turn.
    pub fn next_deadline(&self, read_timeout_ms: u64, write_timeout_ms: u64) -> Option<Millis> {
        if self.closing.is_none() && self.session.close_reason().is_some() {
            return None;
        }
        let write = match self.write_stalled_since {
            Some(since) if write_timeout_ms > 0 && self.has_pending_output() => {
                Some(since.plus_ms(write_timeout_ms))
            }
            _ => None,
        };
        let other = match self.closing {
            Some(Closing::Flushing { not_before }) if !self.has_pending_output() => {
                Some(not_before)
            }
            Some(Closing::Flushing { .. }) => None,
            Some(Closing::Lingering { until }) => Some(until),
            None if self.session.close_reason().is_none() => {
                self.session.read_deadline(read_timeout_ms)
            }
            None => None,
        };
        // Plain matches rather than an iterator chain: this runs after every request.
        Millis::earliest(Millis::earliest(write, other), self.handshake_deadline)
    }
}
