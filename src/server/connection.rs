//! One connection: the request path's state (unprocessed input, framing, pending output,
//! authentication, where its requests stand) and its byte stream's (readiness, deadlines), in one
//! struct with one close state machine, kept in one table.
//!
//! The struct is generic over the byte stream: the event loop keeps a
//! [`Transport`](super::transport::Transport) in it, tests and fuzz targets an in-memory stream,
//! so everything above the socket runs unchanged without one.

use crate::clock::Millis;
use crate::engine::ClientId;
use crate::protocol::frame::FrameDecoder;
use crate::slots::Slots;
use crate::timer::TimerId;

use super::output::Output;
use super::peer::Peer;
use super::queue::{FANOUT, Marks};
use super::transport::Stream;

/// How long a server-initiated close keeps reading (and discarding) after sending FIN, so that
/// unread input does not make the kernel answer with a reset that destroys the final line.
pub const LINGER_MS: u64 = 1_000;
/// Pause between `error_auth` and the close (spec §14).
pub const AUTH_FAILURE_DELAY_MS: u64 = 100;

/// Why a connection is being closed, which decides how (spec §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or reset the connection, or vanished while a request waited.
    PeerGone,
    /// The peer finished sending and every complete request has been answered.
    PeerFinished,
    /// `error` was sent for an over-long line.
    ProtocolError,
    /// `error` was sent because a request did not arrive within the read deadline.
    ReadTimeout,
    /// `error_auth` was sent; the close follows about 100 ms later.
    AuthFailed,
    /// `error_draining` was sent during shutdown.
    Draining,
    /// A signal push found the output buffer full.
    SlowConsumer,
    /// A write failed or made no progress within the write deadline.
    WriteFailed,
    /// More input arrived behind a waiting request than the input buffer may hold.
    InputOverflow,
    /// The shutdown deadline passed.
    ShutdownDeadline,
}

impl CloseReason {
    /// Whether pending output (the final error line, replies to pipelined requests) is still
    /// delivered before the socket closes. The others close at once, silently.
    pub fn flushes(self) -> bool {
        matches!(
            self,
            CloseReason::PeerFinished
                | CloseReason::ProtocolError
                | CloseReason::ReadTimeout
                | CloseReason::AuthFailed
                | CloseReason::Draining
        )
    }

    /// The reason in words, for logs.
    pub fn words(self) -> &'static str {
        match self {
            CloseReason::PeerGone => "peer closed the connection",
            CloseReason::PeerFinished => "peer finished sending",
            CloseReason::ProtocolError => "line too long",
            CloseReason::ReadTimeout => "read timeout",
            CloseReason::AuthFailed => "authentication failed",
            CloseReason::Draining => "server draining",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::WriteFailed => "write failed or stalled",
            CloseReason::InputOverflow => "input overflow",
            CloseReason::ShutdownDeadline => "shutdown deadline",
        }
    }
}

/// Where a connection stands: the one state machine from accept to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading and answering requests.
    Open,
    /// The current request waits (in the engine for `l`, `sl`, `w`, `sw`; for a large `stats`
    /// listing to be written); later requests wait behind it.
    Waiting,
    /// Closing: no more requests are processed and no more responses or pushes are queued.
    Closing {
        /// Why, which decides whether pending output is still delivered.
        reason: CloseReason,
        /// How far the close has come.
        stage: CloseStage,
    },
}

/// Progress of a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseStage {
    /// On the close list: the connection still holds its engine state, which is released when
    /// the close starts (a bounded number per turn).
    Pending,
    /// Engine state released; output is still being delivered. FIN goes out once it is empty
    /// and `not_before` has passed.
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

/// Whether the connection has proved it knows the shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthState {
    /// No token configured, or the connection authenticated.
    Open,
    /// A token is configured and the first request must be `auth`.
    Required,
}

/// One connection over the byte stream `T`.
#[derive(Debug)]
pub struct Connection<T> {
    /// The engine's name for this connection.
    pub id: ClientId,
    /// The connection number, counted from 1 per accepted connection (for logs and `stats`).
    pub serial: u64,
    /// Who the peer is (for logs, `stats` and the per-peer cap).
    pub peer: Peer,
    /// The byte stream.
    pub stream: T,
    /// Input read but not yet processed, starting at the first byte of the current request.
    /// Unallocated while empty.
    pub(super) input: Vec<u8>,
    /// Scan position of the current request in `input`.
    pub(super) decoder: FrameDecoder,
    /// Complete lines of the current, partial request; the read deadline restarts each time a
    /// line completes (spec §2.5).
    pub(super) lines: u8,
    /// When the line currently being read started; the read deadline counts from here.
    pub(super) line_started: Millis,
    /// When the connection was accepted: for the duration in `--log-connections` lines.
    pub(super) opened: Millis,
    /// Output queued but not yet written. Unallocated while empty.
    pub(super) output: Output,
    /// Where the connection stands.
    pub(super) phase: Phase,
    /// Authentication state.
    pub(super) auth: AuthState,
    /// Output passed the soft limit: requests are not processed (and input stays in the kernel)
    /// until it drains below half of it.
    pub(super) paused: bool,
    /// The peer has finished sending (EOF or half-close).
    pub(super) eof: bool,
    /// The work queues this connection is on; written only by [`super::queue::IdQueue`].
    pub(super) marks: Marks,
    /// Bytes of signal pushes in `output` not yet written, part of the dispatcher's total of
    /// pushes pending. Written bytes count as pushes first, so this may fall a little short of
    /// the truth when replies are mixed in; it is an estimate for holding publishers back, not a
    /// bound.
    pub(super) push_bytes: usize,
    /// `Some` while a `stats` listing is being written into `output` piece by piece: the signal
    /// pushes held back meanwhile (a push must not land inside its line), which follow the
    /// listing. Boxed: only a subscriber that asks for a large `stats` ever has one.
    pub(super) held_pushes: Option<Box<Output>>,
    /// A read may return data (set by readable events, cleared when a read drained the stream).
    pub(super) read_ready: bool,
    /// The last readiness event said the read side is closed: short reads prove nothing then.
    pub(super) read_closed_hint: bool,
    /// A write may make progress (set by writable events, cleared on `WouldBlock`).
    pub(super) write_ready: bool,
    /// Since when pending output has been stuck (for the write deadline); [`Millis::MAX`] while
    /// it is not (a plain `Millis` rather than an `Option` keeps the connection 8 bytes
    /// smaller). Read it through [`Connection::write_stall`].
    pub(super) write_stalled_since: Millis,
    /// When an unfinished TLS handshake gets the connection dropped (`--tls-handshake-timeout`);
    /// [`Millis::MAX`] once the handshake completes, or when there is none.
    pub(super) handshake_deadline: Millis,
    /// The one I/O timer this connection has armed, and when it fires. Deadlines only ever move
    /// later in the common case (a new line, a write that made progress), so the timer is left in
    /// place and re-armed when it fires early, which keeps the wheel out of the per-request path.
    pub(super) timer: Option<(TimerId, Millis)>,
}

impl<T> Connection<T> {
    /// A connection accepted at `now`.
    pub(super) fn new(
        id: ClientId,
        serial: u64,
        peer: Peer,
        stream: T,
        auth: AuthState,
        now: Millis,
    ) -> Connection<T> {
        Connection {
            id,
            serial,
            peer,
            stream,
            input: Vec::new(),
            decoder: FrameDecoder::default(),
            lines: 0,
            line_started: now,
            opened: now,
            output: Output::default(),
            phase: Phase::Open,
            auth,
            paused: false,
            eof: false,
            marks: Marks::default(),
            push_bytes: 0,
            held_pushes: None,
            read_ready: false,
            read_closed_hint: false,
            write_ready: true,
            write_stalled_since: Millis::MAX,
            handshake_deadline: Millis::MAX,
            timer: None,
        }
    }

    /// Where the connection stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How many bytes wait to be written to the peer.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Bytes of pending output (held pushes included) this connection owns, shared signal lines
    /// excluded: its part of [`super::dispatch::Dispatcher::owned_output`].
    pub fn owned_output(&self) -> usize {
        self.output.owned_len() + self.held_pushes.as_ref().map_or(0, |held| held.owned_len())
    }

    /// Bytes of pushes held back behind a `stats` listing.
    pub(super) fn held_len(&self) -> usize {
        self.held_pushes.as_ref().map_or(0, |held| held.len())
    }

    /// Appends to `into` the first `max` bytes waiting to be written to the peer (tests and
    /// fuzz targets read what a connection would send with this).
    pub fn copy_output(&self, max: usize, into: &mut Vec<u8>) {
        let mut left = max;
        for run in self.output.runs() {
            let take = run.len().min(left);
            into.extend_from_slice(&run[..take]);
            left -= take;
        }
    }

    /// Bytes read but not yet processed.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Whether output passed the soft limit and request processing is paused.
    #[cfg(test)]
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Why the connection is closing, if it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closing { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether the close has started: engine state released, output flushing or lingering.
    pub(super) fn close_started(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing {
                stage: CloseStage::Flushing { .. } | CloseStage::Lingering { .. },
                ..
            }
        )
    }

    /// Enters the close list's stage with `reason`, unless already closing. Returns whether it
    /// did, in which case the caller puts the connection on the close list.
    pub(super) fn begin_close(&mut self, reason: CloseReason) -> bool {
        if self.close_reason().is_some() {
            return false;
        }
        self.phase = Phase::Closing {
            reason,
            stage: CloseStage::Pending,
        };
        true
    }

    /// Whether requests could be processed now (given input).
    pub(super) fn accepts_requests(&self) -> bool {
        self.phase == Phase::Open && !self.paused && !self.marks.contains(FANOUT)
    }

    /// When the read deadline of the line being read passes, if one is running: only while the
    /// connection is waiting for the peer's next bytes (not while a request waits in the engine,
    /// output backpressure has paused it, or a `signal` waits for the fan-out to drain).
    pub fn read_deadline(&self, read_timeout_ms: u64) -> Option<Millis> {
        (self.accepts_requests() && !self.eof).then(|| self.line_started.plus_ms(read_timeout_ms))
    }
}

impl<T> Connection<T> {
    /// Since when pending output has been stuck, if it is.
    pub(super) fn write_stall(&self) -> Option<Millis> {
        (self.write_stalled_since != Millis::MAX).then_some(self.write_stalled_since)
    }
}

impl<T: Stream> Connection<T> {
    /// Output not yet on the wire: the connection's, or records the stream queued itself.
    pub(super) fn has_pending_output(&self) -> bool {
        !self.output.is_empty() || self.stream.has_pending_output()
    }

    /// Stops the handshake deadline once the TLS handshake is done.
    pub(super) fn note_handshake_progress(&mut self) {
        if self.handshake_deadline != Millis::MAX && !self.stream.is_handshaking() {
            self.handshake_deadline = Millis::MAX;
        }
    }

    /// The earliest deadline this connection has running, if any. None while on the close list:
    /// the close starts later in the same turn.
    pub(super) fn next_deadline(
        &self,
        read_timeout_ms: u64,
        write_timeout_ms: u64,
    ) -> Option<Millis> {
        let write = match self.write_stall() {
            Some(since) if write_timeout_ms > 0 && self.has_pending_output() => {
                Some(since.plus_ms(write_timeout_ms))
            }
            _ => None,
        };
        let other = match self.phase {
            Phase::Closing {
                stage: CloseStage::Pending,
                ..
            } => return None,
            Phase::Closing {
                stage: CloseStage::Flushing { not_before },
                ..
            } => (!self.has_pending_output()).then_some(not_before),
            Phase::Closing {
                stage: CloseStage::Lingering { until },
                ..
            } => Some(until),
            Phase::Open | Phase::Waiting => self.read_deadline(read_timeout_ms),
        };
        // Plain matches rather than an iterator chain: this runs after every request.
        let handshake = (self.handshake_deadline != Millis::MAX).then_some(self.handshake_deadline);
        Millis::earliest(Millis::earliest(write, other), handshake)
    }
}

/// Every connection, by id: the one table, with the one generation-checked lookup.
#[derive(Debug)]
pub struct Connections<T> {
    slots: Slots<Connection<T>>,
}

impl<T> Connections<T> {
    /// An empty table.
    pub(super) fn new() -> Connections<T> {
        Connections {
            slots: Slots::new(),
        }
    }

    /// The connection `id` names, unless it has gone (its slot is empty or reused).
    #[inline]
    pub fn get(&mut self, id: ClientId) -> Option<&mut Connection<T>> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|conn| conn.id == id)
    }

    /// The connection in `slot` whose I/O timer is `timer`, if any: how a fired timer, which
    /// carries only the slot, finds the connection that armed it.
    pub fn with_timer(&mut self, slot: u32, timer: TimerId) -> Option<&mut Connection<T>> {
        self.slots
            .get_mut(slot as usize)
            .filter(|conn| conn.timer.is_some_and(|(armed, _)| armed == timer))
    }

    /// Like [`Connections::get`], for reading.
    pub fn get_ref(&self, id: ClientId) -> Option<&Connection<T>> {
        self.slots
            .get(id.index as usize)
            .filter(|conn| conn.id == id)
    }

    /// Takes the connection `id` names out of the table.
    pub(super) fn remove(&mut self, id: ClientId) -> Option<Connection<T>> {
        self.get(id)?;
        self.slots.try_remove(id.index as usize)
    }

    /// The slot index the next [`Connections::insert`] uses.
    pub(super) fn vacant_index(&self) -> u32 {
        self.slots.vacant_key() as u32
    }

    /// Stores `conn`, whose id must name the vacant slot.
    pub(super) fn insert(&mut self, conn: Connection<T>) {
        debug_assert_eq!(conn.id.index, self.vacant_index(), "id of another slot");
        self.slots.insert(conn);
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = &Connection<T>> {
        self.slots.iter().map(|(_, conn)| conn)
    }

    /// Whether the slab should give memory back (see [`Slots::wants_trim`]).
    pub(super) fn wants_trim(&self) -> bool {
        self.slots.wants_trim()
    }

    /// Gives memory back, at most `budget` entries; returns what is left of the budget.
    pub(super) fn trim(&mut self, budget: usize) -> usize {
        budget - self.slots.trim(budget)
    }
}
