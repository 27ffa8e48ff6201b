//! The protocol state of one connection, without its socket: unprocessed input, pending output,
//! whether a request is waiting in the engine, authentication and closing state.
//!
//! Keeping this free of sockets lets the request path (see [`super::dispatch`]) run unchanged in
//! the event loop, in unit tests and in the `session` fuzz target.

use std::net::SocketAddr;

use crate::clock::Millis;
use crate::engine::ClientId;
use crate::protocol::frame::FrameDecoder;

use super::output::Output;

/// Why a connection is being closed, which decides how (spec §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or reset the connection, or vanished while a request waited.
    PeerGone,
    /// The peer finished sending and every complete request has been answered.
    PeerFinished,
    /// `error` was sent for an over-long line or an expired read deadline.
    ProtocolError,
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
                | CloseReason::AuthFailed
                | CloseReason::Draining
        )
    }
}

/// Where a connection's request processing stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading and answering requests.
    Open,
    /// The current request waits (in the engine for `l`, `sl`, `w`, `sw`; for a large `stats`
    /// listing to be written); later requests wait behind it.
    Waiting,
    /// Closing; no more requests are processed and no more responses or pushes are queued.
    Closing(CloseReason),
}

/// Whether the connection has proved it knows the shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthState {
    /// No token configured, or the connection authenticated.
    Open,
    /// A token is configured and the first request must be `auth`.
    Required,
}

/// Socket-free state of one connection.
#[derive(Debug)]
pub struct Session {
    /// The engine's name for this connection.
    pub id: ClientId,
    /// The connection number, counted from 1 per accepted connection (for logs and `stats`).
    pub serial: u64,
    /// The peer's address (for logs and the per-IP cap).
    pub peer: SocketAddr,
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
    /// Output queued but not yet written. Unallocated while empty.
    pub(super) output: Output,
    /// Request processing state.
    pub(super) phase: Phase,
    /// Authentication state.
    pub(super) auth: AuthState,
    /// Output passed the soft limit: requests are not processed (and input stays in the kernel)
    /// until it drains below half of it.
    pub(super) paused: bool,
    /// The peer has finished sending (EOF or half-close).
    pub(super) eof: bool,
    /// On the dispatcher's ready queue.
    pub(super) queued: bool,
    /// On the dispatcher's dirty list (has a new response to write).
    pub(super) dirty: bool,
    /// On the dispatcher's push list (has new signal pushes to write).
    pub(super) pushes_queued: bool,
    /// Bytes of signal pushes in `output` not yet written, part of the dispatcher's total of
    /// pushes pending. Written bytes count as pushes first, so this may fall a little short of
    /// the truth when replies are mixed in; it is an estimate for holding publishers back, not a
    /// bound.
    pub(super) push_bytes: usize,
    /// Signal pushes held back while a `stats` listing is being written into `output` piece by
    /// piece (a push must not land inside its line); they follow the listing.
    /// Boxed: only a subscriber that asks for `stats` ever has one.
    pub(super) held_pushes: Option<Box<Output>>,
    /// A `stats` listing has started in `output` and not ended.
    pub(super) listing: bool,
    /// Holds back a `signal` request until the server has written out the pushes already
    /// queued (see [`super::dispatch`]): a publisher cannot outrun its fan-out.
    pub(super) fanout_wait: bool,
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(
        id: ClientId,
        serial: u64,
        peer: SocketAddr,
        auth: AuthState,
        now: Millis,
    ) -> Session {
        Session {
            id,
            serial,
            peer,
            input: Vec::new(),
            decoder: FrameDecoder::default(),
            lines: 0,
            line_started: now,
            output: Output::default(),
            phase: Phase::Open,
            auth,
            paused: false,
            eof: false,
            queued: false,
            dirty: false,
            pushes_queued: false,
            push_bytes: 0,
            held_pushes: None,
            listing: false,
            fanout_wait: false,
        }
    }

    /// Request processing state.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How many bytes wait to be written to the peer.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Bytes of pending output (held pushes included) this session owns, shared signal lines
    /// excluded: its part of [`super::dispatch::Dispatcher::owned_output`].
    pub fn owned_output(&self) -> usize {
        self.output.owned_len() + self.held_pushes.as_ref().map_or(0, |held| held.owned_len())
    }

    /// Bytes of pushes held back behind a `stats` listing.
    pub(super) fn held_len(&self) -> usize {
        self.held_pushes.as_ref().map_or(0, |held| held.len())
    }

    /// Appends to `into` the first `max` bytes waiting to be written to the peer (tests and
    /// fuzz targets read what a session would send with this).
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

    /// Whether the peer has finished sending.
    pub fn peer_finished(&self) -> bool {
        self.eof
    }

    /// Records that the peer will send nothing more.
    pub(super) fn mark_peer_finished(&mut self) {
        self.eof = true;
    }

    /// Whether output passed the soft limit and request processing is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Why the session is closing, if it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closing(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether requests could be processed now (given input).
    pub(super) fn accepts_requests(&self) -> bool {
        self.phase == Phase::Open && !self.paused && !self.fanout_wait
    }

    /// When the read deadline of the line being read passes, if one is running: only while the
    /// connection is waiting for the peer's next bytes (not while a request waits in the engine,
    /// output backpressure has paused it, or a `signal` waits for the fan-out to drain).
    pub fn read_deadline(&self, read_timeout_ms: u64) -> Option<Millis> {
        (self.accepts_requests() && !self.eof).then(|| self.line_started.plus_ms(read_timeout_ms))
    }
}

impl AsMut<Session> for Session {
    fn as_mut(&mut self) -> &mut Session {
        self
    }
}
