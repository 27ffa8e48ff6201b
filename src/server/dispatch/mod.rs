//! The request path: bytes a connection sent become frames, requests, engine calls and response
//! bytes queued on the right connections.
//!
//! [`Dispatcher`] owns the engine, every connection (one [`Connections`] table) and everything
//! the request path shares between connections (buffer pool, work queues, counters). Bytes come
//! in through [`Dispatcher::receive`] and leave as the connections' output; what was written is
//! reported through [`Dispatcher::wrote`]. Nothing here blocks, reads the clock or touches a
//! socket: the byte streams are driven by `io.rs`, and the `session` fuzz target drives this
//! file's entry points directly.
//!
//! Work that could take long is spread over loop turns so no request waits behind it:
//! - Responses (and grants) go on the *dirty* queue, written every turn. Signal pushes go on the
//!   *push* queue, of which a bounded number of connections is written per turn; a fan-out to
//!   ten thousand subscribers thus takes several turns. While more than
//!   [`FANOUT_BACKLOG_BYTES`] of pushes wait to be written, across all connections, a `signal`
//!   request is held back (its publisher paused), so publishers cannot outrun delivery; below
//!   it publishers go on, and the pushes that pile up for a subscriber leave in one write.
//! - Each turn serves at most [`REQUESTS_PER_TURN`] requests of one connection and
//!   [`TURN_REQUESTS`] of all connections together; the rest wait in their inputs for the next
//!   turn, in the order of the ready queue.
//! - `stats` listings are written in steps of [`STATS_STEP`] table slots, at most
//!   [`STATS_STEPS_PER_TURN`] steps per turn in all, taking turns; their requesters wait. A
//!   step goes straight into the requester's output, and only while that output is below the
//!   soft limit, so a client that does not read holds one step of its listing, not all of it;
//!   pushes for it are held back until the listing's line ends.

mod listing;
mod router;

use self::listing::StatsJob;
use self::router::{after_output, end_wait, release_held_pushes, split};

use std::collections::VecDeque;

use log::{debug, info, warn};
use subtle::ConstantTimeEq;

use super::bufpool::BufPool;
use super::conn_id::Generations;
use super::connection::{AuthState, CloseReason, Connection, Connections, Phase};
use super::monitor::MonitorCounters;
use super::peer::Peer;
use super::queue::{DIRTY, FANOUT, IdQueue, PUSHES, READY, WRITE_BACKLOG};
use super::report::{LoopFigures, Sources};
use super::transport::Stream;
use super::warnings::{PeerWarnings, Suppressed, WarnKind};
use super::words;
use crate::budget::{
    FANOUT_BACKLOG_BYTES, READ_CHUNK, REQUESTS_PER_TURN, STATS_STEP, STATS_STEPS_PER_TURN,
    TURN_REQUESTS,
};
use crate::clock::Millis;
use crate::engine::push_line::LineGauge;
use crate::engine::{ClientId, Engine, Outbox, Outcome, Push, ServerFigures, StatsCursor};
use crate::protocol::frame::{Decoded, Frame};
use crate::protocol::response::Status;
use crate::protocol::{COMMAND_COUNT, Command, Request, Response, request, response};
use crate::timer::TimerWheel;

/// Per-connection limits and deadlines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most bytes of unprocessed input a connection may buffer (`--max-input-buffer`).
    pub max_input: usize,
    /// Pending output at which request processing pauses (`--max-pending-output`).
    pub soft_output: usize,
    /// Pending output a signal push may not exceed (`--max-output-buffer`).
    pub hard_output: usize,
    /// Memory all pending output together may take (`--max-total-output`): owned bytes plus
    /// shared push lines, each counted once. Past it, connections holding more than their fair
    /// share are paused or, as subscribers, dropped as slow consumers.
    pub total_output: usize,
    /// Per-line read deadline (`--read-timeout`), in milliseconds.
    pub read_timeout_ms: u64,
    /// How long pending output may make no progress (`--write-timeout`), in milliseconds; 0 for
    /// no limit.
    pub write_timeout_ms: u64,
    /// How long a TLS handshake may take (`--tls-handshake-timeout`), in milliseconds.
    pub tls_handshake_timeout_ms: u64,
}

/// Plain event counters (one thread: no atomics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests parsed (valid or not).
    pub requests: u64,
    /// Requests by command ([`Command::index`]); the last entry counts unknown commands.
    pub commands: [u64; COMMAND_COUNT + 1],
    /// Response lines by status word ([`Status`] order); pushes are not responses.
    pub responses: [u64; Status::ALL.len()],
    /// Connections closed for a wrong or missing `auth`.
    pub auth_failures: u64,
    /// TLS handshakes that failed or ran out of time.
    pub tls_handshake_failures: u64,
    /// Connections whose read deadline passed mid-request.
    pub read_timeouts: u64,
    /// Bytes read from connections (after TLS decryption).
    pub bytes_read: u64,
    /// Bytes of responses and pushes written to connections (before TLS encryption).
    pub bytes_written: u64,
    /// Requests answered `error` because they did not parse.
    pub protocol_errors: u64,
    /// Subscribers disconnected because their output was full.
    pub slow_consumers: u64,
    /// Effects addressed to a connection that had already gone.
    pub stale_ids: u64,
    /// Unix-socket peers closed at accept: not in the allow-lists, or credentials unknown.
    pub refused_unix_peers: u64,
}

/// The engine and every connection. See the module documentation.
#[derive(Debug)]
pub struct Dispatcher<T> {
    /// The lock, semaphore and signal state.
    pub engine: Engine,
    /// Every connection.
    pub(super) conns: Connections<T>,
    /// The shared secret, if authentication is on.
    auth_token: Option<Box<[u8]>>,
    /// The secret whose `auth` makes a connection an admin, if one is configured; never equal
    /// to `auth_token`.
    admin_token: Option<Box<[u8]>>,
    /// Log each connection's open and close at info level (`--log-connections`).
    pub(super) log_connections: bool,
    /// The start of the current turn: for durations in log lines, where no `now` is passed.
    pub(super) turn_started: Millis,
    /// Unix-socket peers skip `auth` (`--unix-peer-auth`).
    unix_peer_auth: bool,
    /// Shutdown has begun: every further request is answered `error_draining`.
    draining: bool,
    /// Generations of connection ids.
    generations: Generations,
    /// Connections accepted so far: the serial number of the last one.
    accepted: u64,
    /// `stats` listings being written, oldest first.
    stats_jobs: VecDeque<StatsJob>,
    /// Requests this turn may still process ([`TURN_REQUESTS`] at the start of a turn).
    turn_requests: usize,
    /// Steps of `stats` listings this turn may still take.
    stats_steps: usize,
    /// Some listing can take a step: one not yet tried, or whose requester's output drained
    /// below the soft limit. Listings waiting for their requester to read do not keep the loop
    /// from sleeping.
    stats_runnable: bool,
    /// The loop's own figures (accepted and refused connections, turn durations), kept here
    /// so that `info` and the monitoring endpoint read them from one place.
    pub(super) figures: LoopFigures,
    /// What routing engine effects into connections needs; kept apart from `engine` and
    /// `conns` so all three can be borrowed at once.
    pub(super) queues: Queues,
    /// The connections' I/O deadlines: one timer each at most (see [`Connection`]), whose
    /// payload is the connection's slot. A 4-byte payload makes the wheel's entry 24 bytes, and
    /// the timer's own handle, kept by the connection, tells which occupant of the slot armed it.
    pub(super) io_timers: TimerWheel<u32>,
    /// Loop-wide read buffer; connections keep only unprocessed remainders.
    pub(super) scratch: Box<[u8]>,
    /// Connections taken out of the table whose streams the owner still has to release
    /// (deregister the socket); see [`Dispatcher::take_removed`].
    pub(super) removed: Vec<Connection<T>>,
}

/// Buffers, queues and counters shared by all connections.
#[derive(Debug)]
pub(super) struct Queues {
    pub(super) limits: SessionLimits,
    pool: BufPool,
    /// Connections that may be able to make progress (input to read or process).
    pub(super) ready: IdQueue,
    /// Connections with a new response to write.
    dirty: IdQueue,
    /// Connections with new signal pushes to write.
    pushes: IdQueue,
    /// Bytes of pushes placed in outputs and not yet written (the sum of
    /// `Connection::push_bytes`).
    push_bytes: usize,
    /// Bytes the outputs own (copied into them, not shared), held pushes included.
    owned_output: usize,
    /// The engine's count of shared push lines alive.
    line_gauge: LineGauge,
    /// Connections holding back a `signal` request until `push_bytes` drops below
    /// [`FANOUT_BACKLOG_BYTES`].
    fanout_waiters: IdQueue,
    /// Connections that entered [`Phase::Closing`] and still need [`Dispatcher::disconnect`].
    closing: Vec<ClientId>,
    /// Connections to write this turn whatever their output: their stream became writable, or
    /// produced records of its own.
    pub(super) to_flush: Vec<ClientId>,
    /// Connections to write next turn: the turn's write quota cut their last write short.
    pub(super) write_backlog: IdQueue,
    pub(super) counters: Counters,
    /// Rate limits of the warnings peers can trigger.
    pub(super) warnings: PeerWarnings,
}

impl<T: Stream> Dispatcher<T> {
    /// A dispatcher around `engine`, with no connection yet. With `auth_token` set, every
    /// connection must authenticate first (spec §14).
    pub fn new(engine: Engine, limits: SessionLimits, auth_token: Option<&[u8]>) -> Dispatcher<T> {
        let line_gauge = engine.line_gauge().clone();
        Dispatcher {
            engine,
            conns: Connections::new(),
            auth_token: auth_token.map(Box::from),
            admin_token: None,
            log_connections: false,
            turn_started: Millis::ZERO,
            unix_peer_auth: false,
            draining: false,
            generations: Generations::default(),
            accepted: 0,
            stats_jobs: VecDeque::new(),
            turn_requests: TURN_REQUESTS,
            stats_steps: STATS_STEPS_PER_TURN,
            stats_runnable: false,
            figures: LoopFigures::default(),
            queues: Queues {
                limits,
                pool: BufPool::default(),
                ready: IdQueue::new(READY),
                dirty: IdQueue::new(DIRTY),
                pushes: IdQueue::new(PUSHES),
                push_bytes: 0,
                owned_output: 0,
                line_gauge,
                fanout_waiters: IdQueue::new(FANOUT),
                closing: Vec::new(),
                to_flush: Vec::new(),
                write_backlog: IdQueue::new(WRITE_BACKLOG),
                counters: Counters::default(),
                warnings: PeerWarnings::default(),
            },
            io_timers: TimerWheel::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            removed: Vec::new(),
        }
    }

    /// Replaces the secrets later `auth` requests are compared with (at start-up for the admin
    /// token, on SIGHUP for both); `None` keeps a secret as it is. Connections that
    /// authenticated, or became admins, stay so. A pair in which the admin token would equal the
    /// auth token is refused, and neither changes.
    pub fn replace_secrets(
        &mut self,
        auth: Option<&[u8]>,
        admin: Option<&[u8]>,
    ) -> Result<(), &'static str> {
        let auth = auth.or(self.auth_token.as_deref());
        let admin = admin.or(self.admin_token.as_deref());
        if auth.is_some() && auth == admin {
            return Err(crate::config::SAME_SECRETS);
        }
        self.auth_token = auth.map(Box::from);
        self.admin_token = admin.map(Box::from);
        Ok(())
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.queues.limits
    }

    /// Event counters.
    pub fn counters(&self) -> &Counters {
        &self.queues.counters
    }

    /// Every connection.
    pub fn connections(&self) -> &Connections<T> {
        &self.conns
    }

    /// A warning of `kind` a peer triggered at `now`: `Some` (to be appended to the line) if it
    /// may be logged, `None` while its kind is rate-limited.
    pub fn admit_warning(&mut self, kind: WarnKind, now: Millis) -> Option<Suppressed> {
        self.queues.warnings.admit(kind, now)
    }

    /// Counts a Unix-socket peer refused at accept ([`Counters::refused_unix_peers`]).
    pub fn count_refused_unix_peer(&mut self) {
        self.queues.counters.refused_unix_peers += 1;
    }

    /// Lets Unix-socket peers skip `auth` when a token is configured (`--unix-peer-auth`): the
    /// kernel vouches for who they are, and the allow-lists decide whether they are welcome.
    pub fn set_unix_peer_auth(&mut self, on: bool) {
        self.unix_peer_auth = on;
    }

    /// The id the next [`Dispatcher::open`] is to use: the table's vacant slot and a fresh
    /// generation.
    pub fn next_id(&mut self) -> ClientId {
        ClientId {
            index: self.conns.vacant_index(),
            generation: self.generations.next_generation(),
        }
    }

    /// Takes in a newly accepted connection under `id` (from [`Dispatcher::next_id`], with no
    /// connection opened since) and registers it with the engine.
    pub fn open(&mut self, id: ClientId, peer: Peer, stream: T, now: Millis) {
        self.accepted += 1;
        let serial = self.accepted;
        self.engine.connect(id, serial);
        let unix = peer.is_unix();
        if unix {
            // `stats` names the holders that are local processes.
            self.engine.label_client(id, peer.to_string().into());
        }
        let auth = if self.auth_token.is_some() && !(unix && self.unix_peer_auth) {
            AuthState::Required
        } else {
            AuthState::Open
        };
        let mut conn = Connection::new(id, serial, peer, stream, auth, now);
        if conn.stream.is_handshaking() {
            conn.handshake_deadline = now.plus_ms(self.queues.limits.tls_handshake_timeout_ms);
        }
        if self.log_connections {
            info!(conn = serial, peer:% = peer; "connection opened");
        } else {
            debug!("conn {serial} {peer}: accepted");
        }
        self.conns.insert(conn);
        self.refresh_timer(id);
    }

    /// How many more input bytes `id` may buffer now; 0 means reading should stop (the bytes
    /// stay in the kernel, which pushes back on the peer).
    pub fn input_room(&mut self, id: ClientId) -> usize {
        match self.conns.get(id) {
            Some(s) if s.paused => 0,
            Some(s) => self.queues.limits.max_input.saturating_sub(s.input.len()),
            None => 0,
        }
    }

    /// Takes bytes the peer sent and processes every complete request they finish.
    pub fn receive(&mut self, id: ClientId, now: Millis, bytes: &[u8]) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.close_reason().is_some() {
            return; // lingering before close: input is discarded
        }
        if conn.input.is_empty() && conn.accepts_requests() {
            // Common case: parse straight out of the caller's buffer and keep only a remainder.
            let used = self.process(id, now, bytes);
            if let Some(conn) = self.conns.get(id) {
                if used < bytes.len() && conn.close_reason().is_none() {
                    self.queues
                        .pool
                        .ensure(&mut conn.input)
                        .extend_from_slice(&bytes[used..]);
                }
            }
        } else {
            self.queues
                .pool
                .ensure(&mut conn.input)
                .extend_from_slice(bytes);
            self.resume(id, now);
            return;
        }
        self.check_input(id, now);
    }

    /// Processes requests already buffered for `id` (after its wait ended or its output drained).
    pub fn resume(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.accepts_requests() && !conn.input.is_empty() {
            let mut input = std::mem::take(&mut conn.input);
            let used = self.process(id, now, &input);
            input.drain(..used);
            match self.conns.get(id) {
                Some(conn) if conn.close_reason().is_none() => conn.input = input,
                _ => input.clear(),
            }
        }
        if let Some(conn) = self.conns.get(id) {
            self.queues.pool.release_if_empty(&mut conn.input);
        }
        self.check_input(id, now);
    }

    /// The peer will send nothing more (EOF or half-close).
    pub fn peer_finished(&mut self, id: ClientId, now: Millis) {
        if let Some(conn) = self.conns.get(id) {
            conn.eof = true;
        }
        self.check_input(id, now);
    }

    /// The read deadline of `id` passed: `error` (or `error_auth` before authentication), then
    /// close (spec §2.5, §14).
    pub fn read_timed_out(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        self.queues.counters.read_timeouts += 1;
        if let Some(suppressed) = self.queues.warnings.admit(WarnKind::ReadTimeout, now) {
            warn!(
                "conn {} {}: no complete request within the read timeout, closing{suppressed}",
                conn.serial, conn.peer
            );
        }
        if conn.auth == AuthState::Required {
            self.fail_auth(id, now);
        } else {
            self.answer_and_close(id, now, Response::Error, CloseReason::ReadTimeout);
        }
    }

    /// Closes `id` for a reason found outside the request path (I/O failure, shutdown deadline).
    pub fn close(&mut self, id: ClientId, reason: CloseReason) {
        if let Some(conn) = self.conns.get(id) {
            if conn.begin_close(reason) {
                self.queues.closing.push(id);
            }
        }
    }

    /// Begins a graceful shutdown (spec §16): every waiting request is answered `error`, and
    /// every later request `error_draining` (followed by a close).
    pub fn begin_drain(&mut self, now: Millis) {
        self.draining = true;
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, &mut self.conns, now);
        engine.cancel_waits(now, &mut router);
    }

    /// Starts a loop turn: refills the turn's budgets and runs due engine work (lease expiry,
    /// wait timeouts, idle GC, signal work). Returns `true` if more is due and the caller should
    /// call again without sleeping.
    pub fn start_turn(&mut self, now: Millis) -> bool {
        self.turn_started = now;
        self.turn_requests = TURN_REQUESTS;
        self.stats_steps = STATS_STEPS_PER_TURN;
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, &mut self.conns, now);
        engine.expire(now, &mut router)
    }

    /// The next connection that entered [`Phase::Closing`], for the caller to close (after
    /// [`Dispatcher::disconnect`]).
    pub fn next_closing(&mut self) -> Option<ClientId> {
        self.queues.closing.pop()
    }

    /// Releases what a closing connection holds in the engine (spec §11); grants go to others.
    pub fn disconnect(&mut self, id: ClientId, now: Millis) {
        if let Some(conn) = self.conns.get(id) {
            self.queues.push_bytes -= std::mem::take(&mut conn.push_bytes);
        }
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, &mut self.conns, now);
        engine.disconnect(now, id, &mut router);
    }

    /// Takes connection `id` out of the table, with its I/O timer; what its output still held
    /// no longer counts against the server's total.
    pub fn drop_connection(&mut self, id: ClientId) -> Option<Connection<T>> {
        let mut conn = self.conns.remove(id)?;
        if let Some((timer, _)) = conn.timer.take() {
            self.io_timers.cancel(timer);
        }
        let q = &mut self.queues;
        q.owned_output -= conn.output.clear(&mut q.pool)
            + conn
                .held_pushes
                .take()
                .map_or(0, |mut held| held.clear(&mut q.pool));
        Some(conn)
    }

    /// Bytes the connections' outputs own (shared push lines excluded): the sum of
    /// [`Connection::owned_output`] over the connections not yet released.
    pub fn owned_output(&self) -> usize {
        self.queues.owned_output
    }

    /// The next connection that may be able to make progress (possibly one that has gone).
    pub fn next_ready(&mut self) -> Option<ClientId> {
        self.queues.ready.pop(&mut self.conns).map(|(id, _)| id)
    }

    /// Queues `id` as able to make progress (its stream became readable).
    pub fn schedule(&mut self, id: ClientId) {
        if let Some(conn) = self.conns.get(id) {
            self.queues.ready.push(conn);
        }
    }

    /// Number of connections on the ready queue.
    pub fn ready_len(&self) -> usize {
        self.queues.ready.len()
    }

    /// Appends the ids of connections with new output to `into`.
    pub fn append_dirty(&mut self, into: &mut Vec<ClientId>) {
        while let Some((id, conn)) = self.queues.dirty.pop(&mut self.conns) {
            if conn.is_some() {
                into.push(id);
            }
        }
    }

    /// Appends to `into` up to `budget` connections with signal pushes to write, oldest first, and
    /// lets held-back publishers go once the backlog is small again.
    pub fn take_pushes(&mut self, into: &mut Vec<ClientId>, budget: usize) {
        let q = &mut self.queues;
        for _ in 0..budget {
            let Some((id, conn)) = q.pushes.pop(&mut self.conns) else {
                break;
            };
            if conn.is_some() {
                into.push(id);
            }
        }
        if q.push_bytes < FANOUT_BACKLOG_BYTES {
            while let Some((_, conn)) = q.fanout_waiters.pop(&mut self.conns) {
                if let Some(conn) = conn {
                    q.ready.push(conn);
                }
            }
        }
    }

    /// Whether there is work the caller should come back for without sleeping: output to write,
    /// a `stats` listing to continue, or closes to finish.
    pub fn has_pending_work(&self) -> bool {
        !self.queues.dirty.is_empty()
            || !self.queues.pushes.is_empty()
            || self.stats_runnable
            || !self.queues.closing.is_empty()
    }

    /// Whether any connection has a response queued since the last [`Dispatcher::append_dirty`].
    pub fn has_dirty(&self) -> bool {
        !self.queues.dirty.is_empty()
    }

    /// Whether this turn's request budget is spent: the caller should leave the rest of the
    /// ready queue for the next turn.
    pub fn turn_is_full(&self) -> bool {
        self.turn_requests == 0
    }

    /// `n` bytes of `id`'s output reached the socket. Unpauses the connection once its output
    /// drains below half the soft limit.
    pub fn wrote(&mut self, id: ClientId, now: Millis, n: usize) {
        self.queues.counters.bytes_written += n as u64;
        let open = self.conns.len();
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let q = &mut self.queues;
        q.owned_output -= conn.output.consume(n, &mut q.pool);
        let pushes_written = n.min(conn.push_bytes);
        conn.push_bytes -= pushes_written;
        q.push_bytes -= pushes_written;
        if conn.phase != Phase::Waiting && !conn.paused {
            return; // the request path: nothing waits for this output to drain
        }
        let soft_output = q.soft_limit(open);
        if conn.phase == Phase::Waiting && conn.output.len() < soft_output {
            // A listing parked on this output may go on.
            self.stats_runnable = true;
        }
        // Rounded up so that a soft limit of 1 byte still resumes once the output is empty.
        if conn.paused && conn.output.len() < soft_output.div_ceil(2) {
            conn.paused = false;
            conn.line_started = now;
            self.queues.ready.push(conn);
        }
    }

    /// Processes complete requests at the start of `input` while the connection accepts them;
    /// returns how many bytes were consumed.
    fn process(&mut self, id: ClientId, now: Millis, input: &[u8]) -> usize {
        let mut used = 0;
        let mut handled = 0;
        loop {
            let Some(conn) = self.conns.get(id) else {
                return input.len();
            };
            if !conn.accepts_requests() {
                return used;
            }
            if handled == REQUESTS_PER_TURN || self.turn_requests == 0 {
                // The rest waits in the input for the next turn.
                self.queues.ready.push(conn);
                return used;
            }
            match conn.decoder.decode(&input[used..]) {
                Decoded::Frame { frame, consumed } => {
                    if frame.cmd == b"signal" && self.queues.push_bytes >= FANOUT_BACKLOG_BYTES {
                        // Hold the publisher until the fan-out already queued is written. The
                        // decoder has reset, and the frame stays in the input for later.
                        self.queues.fanout_waiters.push(conn);
                        return used;
                    }
                    if matches!(frame.cmd, b"info" | b"q" | b"sq") {
                        // These walk engine structures (the contended keys, a queue) a bounded
                        // but sizeable way: they share the turn's listing steps with `stats`,
                        // so pipelining them cannot lengthen a turn. The frame stays in the
                        // input for a later turn.
                        if self.stats_steps == 0 {
                            self.queues.ready.push(conn);
                            return used;
                        }
                        self.stats_steps -= 1;
                    }
                    used += consumed;
                    handled += 1;
                    self.turn_requests -= 1;
                    conn.lines = 0;
                    conn.line_started = now;
                    self.handle(id, now, &frame);
                }
                Decoded::Partial { lines } => {
                    if lines > conn.lines {
                        conn.lines = lines;
                        conn.line_started = now;
                    }
                    return used;
                }
                Decoded::TooLong => {
                    debug!("conn {} {}: line too long", conn.serial, conn.peer);
                    self.queues.counters.protocol_errors += 1;
                    if conn.auth == AuthState::Required {
                        self.fail_auth(id, now);
                    } else {
                        self.answer_and_close(id, now, Response::Error, CloseReason::ProtocolError);
                    }
                    return input.len();
                }
            }
        }
    }

    /// Executes one framed request.
    fn handle(&mut self, id: ClientId, now: Millis, frame: &Frame<'_>) {
        let command = Command::from_name(frame.cmd);
        let parsed = request::parse_as(command, frame);
        let counters = &mut self.queues.counters;
        counters.requests += 1;
        counters.commands[command.map_or(COMMAND_COUNT, Command::index)] += 1;
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if self.draining {
            self.answer_and_close(id, now, Response::ErrorDraining, CloseReason::Draining);
            return;
        }
        if conn.auth == AuthState::Required {
            self.authenticate(id, now, &parsed);
            return;
        }
        let request = match parsed {
            Ok(request) => request,
            Err(error) => {
                debug!(
                    "conn {} {}: invalid request (code {})",
                    conn.serial,
                    conn.peer,
                    error.code()
                );
                self.queues.counters.protocol_errors += 1;
                self.answer(id, now, Response::Error);
                return;
            }
        };
        if log::log_enabled!(log::Level::Debug) {
            debug!(
                "conn {} {}: {}",
                conn.serial,
                conn.peer,
                words::request(frame)
            );
        }
        match request {
            Request::Stats => self.start_stats(id, now),
            Request::Info => self.info(id, now),
            Request::Ping => self.answer(id, now, Response::Ok),
            Request::Auth(request::Auth { token }) => self.authenticate_admin(id, now, token),
            _ => {
                let (engine, mut router) =
                    split(&mut self.engine, &mut self.queues, &mut self.conns, now);
                if engine.apply(now, id, &request, &mut router) == Outcome::Waiting {
                    // Unless the request closed the connection: a publisher whose own
                    // subscription had no room is evicted by its publish.
                    if let Some(conn) = self.conns.get(id).filter(|s| s.close_reason().is_none()) {
                        conn.phase = Phase::Waiting;
                    }
                }
            }
        }
    }

    /// The first request of a connection when a token is configured (spec §14). The comparison
    /// runs in constant time, and runs even when the request is not `auth`, so timing does not
    /// tell a wrong token from a wrong command.
    fn authenticate(
        &mut self,
        id: ClientId,
        now: Millis,
        parsed: &Result<Request<'_>, crate::protocol::ProtoError>,
    ) {
        let offered: &[u8] = match parsed {
            Ok(Request::Auth(request::Auth { token })) => token,
            _ => b"",
        };
        let expected = self.auth_token.as_deref().unwrap_or_default();
        // Both comparisons always run, so timing does not tell which secret matched.
        let user = bool::from(offered.ct_eq(expected));
        let admin = self.is_admin_token(offered);
        if matches!(parsed, Ok(Request::Auth(_))) && (user | admin) {
            if let Some(conn) = self.conns.get(id) {
                conn.auth = AuthState::Open;
            }
            if admin {
                self.engine.grant_admin(id);
            }
            self.answer(id, now, Response::Ok);
        } else {
            self.fail_auth(id, now);
        }
    }

    /// `auth` on a connection past the handshake (or on a server without an auth token): the
    /// admin token makes it an admin (`ok`). Anything else keeps the 1.x answer, `error` with
    /// the connection left open (spec §7.9), so nothing changes for 1.x clients; a wrong token
    /// while an admin token is configured is logged, since it may be someone guessing it.
    fn authenticate_admin(&mut self, id: ClientId, now: Millis, offered: &[u8]) {
        let admin = self.is_admin_token(offered);
        if admin && !self.engine.is_admin(id) {
            self.engine.grant_admin(id);
            self.answer(id, now, Response::Ok);
            return;
        }
        if !admin && self.admin_token.is_some() {
            if let Some(conn) = self.conns.get_ref(id) {
                if let Some(suppressed) = self.queues.warnings.admit(WarnKind::AuthFailure, now) {
                    warn!(
                        "conn {} {}: admin authentication failed{suppressed}",
                        conn.serial, conn.peer
                    );
                }
            }
        }
        self.answer(id, now, Response::Error);
    }

    /// Whether `offered` is the admin token, compared in constant time.
    fn is_admin_token(&self, offered: &[u8]) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|admin| bool::from(offered.ct_eq(admin)))
    }

    fn fail_auth(&mut self, id: ClientId, now: Millis) {
        self.queues.counters.auth_failures += 1;
        if let Some(conn) = self.conns.get(id) {
            if let Some(suppressed) = self.queues.warnings.admit(WarnKind::AuthFailure, now) {
                warn!(
                    "conn {} {}: authentication failed{suppressed}",
                    conn.serial, conn.peer
                );
            }
        }
        self.answer_and_close(id, now, Response::ErrorAuth, CloseReason::AuthFailed);
    }

    fn answer(&mut self, id: ClientId, now: Millis, response: Response) {
        let (_, mut router) = split(&mut self.engine, &mut self.queues, &mut self.conns, now);
        router.reply(id, response);
    }

    fn answer_and_close(
        &mut self,
        id: ClientId,
        now: Millis,
        response: Response,
        reason: CloseReason,
    ) {
        self.answer(id, now, response);
        self.close(id, reason);
    }

    /// After processing: a peer that finished sending is closed once nothing more can be
    /// answered, and a waiting request of a vanished peer is cancelled (spec §2.4). Also enforces
    /// the input cap while a request waits.
    fn check_input(&mut self, id: ClientId, _now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let reason = match conn.phase {
            // A blocking acquire or wait whose peer stopped sending is cancelled (spec §2.4); a
            // `stats` listing in progress is not: its reply, and those of requests behind it,
            // still go out before the close.
            Phase::Waiting if conn.eof && self.engine.is_waiting(id) => {
                Some(CloseReason::PeerFinished)
            }
            Phase::Waiting if conn.input.len() >= self.queues.limits.max_input => {
                Some(CloseReason::InputOverflow)
            }
            Phase::Open if conn.eof && !conn.paused && !conn.marks.contains(FANOUT) => {
                Some(CloseReason::PeerFinished)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            self.close(id, reason);
        }
    }
}
