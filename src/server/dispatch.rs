//! The request path without sockets: bytes a connection sent become frames, requests, engine
//! calls and response bytes queued on the right connections.
//!
//! [`Dispatcher`] owns the engine and everything the request path shares between connections
//! (buffer pool, ready queue, dirty list, close list, counters). Connections live in a table the
//! caller owns ([`SessionTable`]): the event loop's connection slab, or a plain slab of
//! [`Session`]s in tests and fuzz targets. The caller reads bytes from wherever they come from
//! and hands them to [`Dispatcher::receive`]; it writes out what the session's output holds and
//! reports it through [`Dispatcher::wrote`]. Nothing here blocks, reads the clock or touches a
//! socket.
//!
//! Work that could take long is spread over loop turns so no request waits behind it:
//! - Responses (and grants) go on the *dirty* list, written every turn. Signal pushes go on the
//!   *push* list, of which the caller writes a bounded number of connections per turn; a fan-out
//!   to ten thousand subscribers thus takes several turns. While more than
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

use std::collections::VecDeque;

use log::{debug, warn};
use subtle::ConstantTimeEq;

use super::bufpool::BufPool;
use super::session::{AuthState, CloseReason, Phase, Session};
use super::warnings::{PeerWarnings, Suppressed, WarnKind};
use crate::budget::{
    FANOUT_BACKLOG_BYTES, REQUESTS_PER_TURN, STATS_STEP, STATS_STEPS_PER_TURN, TURN_REQUESTS,
};
use crate::clock::Millis;
use crate::engine::push_line::LineGauge;
use crate::engine::{ClientId, Engine, Outbox, Outcome, Push, ServerFigures, StatsCursor};
use crate::protocol::frame::{Decoded, Frame};
use crate::protocol::{Request, Response, request, response};
use crate::slots::Slots;

/// Connections by id, as the dispatcher needs them.
pub trait SessionTable {
    /// The session of `id`, unless it has gone (a stale id: its slot is empty or reused).
    fn session(&mut self, id: ClientId) -> Option<&mut Session>;
    /// Number of open connections, for `stats`.
    fn open_count(&self) -> usize;
}

impl<S: AsMut<Session>> SessionTable for Slots<S> {
    fn session(&mut self, id: ClientId) -> Option<&mut Session> {
        self.get_mut(id.index as usize)
            .map(AsMut::as_mut)
            .filter(|session| session.id == id)
    }

    fn open_count(&self) -> usize {
        self.len()
    }
}

/// Per-connection limits of the request path.
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
}

/// Plain event counters (one thread: no atomics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests parsed (valid or not).
    pub requests: u64,
    /// Requests answered `error` because they did not parse.
    pub protocol_errors: u64,
    /// Subscribers disconnected because their output was full.
    pub slow_consumers: u64,
    /// Effects addressed to a connection that had already gone.
    pub stale_ids: u64,
}

/// The shared part of the request path. See the module documentation.
#[derive(Debug)]
pub struct Dispatcher {
    /// The lock, semaphore and signal state.
    pub engine: Engine,
    /// The shared secret, if authentication is on.
    auth_token: Option<Box<[u8]>>,
    /// Shutdown has begun: every further request is answered `error_draining`.
    draining: bool,
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
    /// What routing engine effects into sessions needs; kept apart from `engine` so both can be
    /// borrowed at once.
    queues: Queues,
}

/// A `stats` listing in progress.
#[derive(Debug)]
struct StatsJob {
    client: ClientId,
    cursor: StatsCursor,
    /// The next piece of the response line, moved into the session's output after each step.
    line: Vec<u8>,
}

/// Buffers, queues and counters shared by all sessions.
#[derive(Debug)]
struct Queues {
    limits: SessionLimits,
    pool: BufPool,
    /// Sessions that may be able to make progress (input to read or process).
    ready: VecDeque<ClientId>,
    /// Sessions with a new response to write.
    dirty: Vec<ClientId>,
    /// Sessions with new signal pushes to write.
    pushes: VecDeque<ClientId>,
    /// Bytes of pushes placed in outputs and not yet written (the sum of `Session::push_bytes`).
    push_bytes: usize,
    /// Bytes the outputs own (copied into them, not shared), held pushes included.
    owned_output: usize,
    /// The engine's count of shared push lines alive.
    line_gauge: LineGauge,
    /// Sessions holding back a `signal` request until `push_bytes` drops below
    /// [`FANOUT_BACKLOG_BYTES`].
    fanout_waiters: Vec<ClientId>,
    /// Sessions that entered [`Phase::Closing`] and still need [`Dispatcher::disconnect`].
    closing: Vec<ClientId>,
    counters: Counters,
    /// Rate limits of the warnings peers can trigger.
    warnings: PeerWarnings,
}

impl Dispatcher {
    /// A dispatcher around `engine`. With `auth_token` set, every connection must authenticate
    /// first (spec §14).
    pub fn new(engine: Engine, limits: SessionLimits, auth_token: Option<&[u8]>) -> Dispatcher {
        let line_gauge = engine.line_gauge().clone();
        Dispatcher {
            engine,
            auth_token: auth_token.map(Box::from),
            draining: false,
            stats_jobs: VecDeque::new(),
            turn_requests: TURN_REQUESTS,
            stats_steps: STATS_STEPS_PER_TURN,
            stats_runnable: false,
            queues: Queues {
                limits,
                pool: BufPool::default(),
                ready: VecDeque::new(),
                dirty: Vec::new(),
                pushes: VecDeque::new(),
                push_bytes: 0,
                owned_output: 0,
                line_gauge,
                fanout_waiters: Vec::new(),
                closing: Vec::new(),
                counters: Counters::default(),
                warnings: PeerWarnings::default(),
            },
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.queues.limits
    }

    /// Event counters.
    pub fn counters(&self) -> &Counters {
        &self.queues.counters
    }

    /// Counts an event or effect that arrived for a connection that had already gone.
    pub fn count_stale_id(&mut self) {
        self.queues.counters.stale_ids += 1;
    }

    /// A warning of `kind` a peer triggered at `now`: `Some` (to be appended to the line) if it
    /// may be logged, `None` while its kind is rate-limited.
    pub fn admit_warning(&mut self, kind: WarnKind, now: Millis) -> Option<Suppressed> {
        self.queues.warnings.admit(kind, now)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Creates the session of a newly accepted connection and registers it with the engine.
    pub fn open(
        &mut self,
        id: ClientId,
        serial: u64,
        peer: std::net::SocketAddr,
        now: Millis,
    ) -> Session {
        self.engine.connect(id, serial);
        let auth = if self.auth_token.is_some() {
            AuthState::Required
        } else {
            AuthState::Open
        };
        Session::new(id, serial, peer, auth, now)
    }

    /// How many more input bytes `id` may buffer now; 0 means reading should stop (the bytes
    /// stay in the kernel, which pushes back on the peer).
    pub fn input_room<T: SessionTable>(&mut self, table: &mut T, id: ClientId) -> usize {
        match table.session(id) {
            Some(s) if s.paused => 0,
            Some(s) => self.queues.limits.max_input.saturating_sub(s.input.len()),
            None => 0,
        }
    }

    /// Takes bytes the peer sent and processes every complete request they finish.
    pub fn receive<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        bytes: &[u8],
    ) {
        let Some(session) = table.session(id) else {
            return;
        };
        if session.close_reason().is_some() {
            return; // lingering before close: input is discarded
        }
        if session.input.is_empty() && session.accepts_requests() {
            // Common case: parse straight out of the caller's buffer and keep only a remainder.
            let used = self.process(table, id, now, bytes);
            if let Some(session) = table.session(id) {
                if used < bytes.len() && session.close_reason().is_none() {
                    self.queues
                        .pool
                        .ensure(&mut session.input)
                        .extend_from_slice(&bytes[used..]);
                }
            }
        } else {
            self.queues
                .pool
                .ensure(&mut session.input)
                .extend_from_slice(bytes);
            self.resume(table, id, now);
            return;
        }
        self.check_input(table, id, now);
    }

    /// Processes requests already buffered for `id` (after its wait ended or its output drained).
    pub fn resume<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        let Some(session) = table.session(id) else {
            return;
        };
        if session.accepts_requests() && !session.input.is_empty() {
            let mut input = std::mem::take(&mut session.input);
            let used = self.process(table, id, now, &input);
            input.drain(..used);
            match table.session(id) {
                Some(session) if session.close_reason().is_none() => session.input = input,
                _ => input.clear(),
            }
        }
        if let Some(session) = table.session(id) {
            self.queues.pool.release_if_empty(&mut session.input);
        }
        self.check_input(table, id, now);
    }

    /// The peer will send nothing more (EOF or half-close).
    pub fn peer_finished<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        if let Some(session) = table.session(id) {
            session.eof = true;
        }
        self.check_input(table, id, now);
    }

    /// The read deadline of `id` passed: `error` (or `error_auth` before authentication), then
    /// close (spec §2.5, §14).
    pub fn read_timed_out<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        let Some(session) = table.session(id) else {
            return;
        };
        debug!(
            "conn {} {}: read deadline expired",
            session.serial, session.peer
        );
        if session.auth == AuthState::Required {
            self.fail_auth(table, id, now);
        } else {
            self.answer_and_close(table, id, now, Response::Error, CloseReason::ProtocolError);
        }
    }

    /// Closes `id` for a reason found outside the request path (I/O failure, shutdown deadline).
    pub fn close<T: SessionTable>(&mut self, table: &mut T, id: ClientId, reason: CloseReason) {
        if let Some(session) = table.session(id) {
            if session.close_reason().is_none() {
                session.phase = Phase::Closing(reason);
                self.queues.closing.push(id);
            }
        }
    }

    /// Begins a graceful shutdown (spec §16): every waiting request is answered `error`, and
    /// every later request `error_draining` (followed by a close).
    pub fn begin_drain<T: SessionTable>(&mut self, table: &mut T, now: Millis) {
        self.draining = true;
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, table, now);
        engine.cancel_waits(now, &mut router);
    }

    /// Starts a loop turn: refills the turn's budgets and runs due engine work (lease expiry,
    /// wait timeouts, idle GC, signal work). Returns `true` if more is due and the caller should
    /// call again without sleeping.
    pub fn start_turn<T: SessionTable>(&mut self, table: &mut T, now: Millis) -> bool {
        self.turn_requests = TURN_REQUESTS;
        self.stats_steps = STATS_STEPS_PER_TURN;
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, table, now);
        engine.expire(now, &mut router)
    }

    /// The next session that entered [`Phase::Closing`], for the caller to close its socket
    /// (after [`Dispatcher::disconnect`]).
    pub fn next_closing(&mut self) -> Option<ClientId> {
        self.queues.closing.pop()
    }

    /// Releases what a closing connection holds in the engine (spec §11); grants go to others.
    pub fn disconnect<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        if let Some(session) = table.session(id) {
            self.queues.push_bytes -= std::mem::take(&mut session.push_bytes);
        }
        let (engine, mut router) = split(&mut self.engine, &mut self.queues, table, now);
        engine.disconnect(now, id, &mut router);
    }

    /// The connection of `session` is closed and its session about to be dropped: what its
    /// output still held no longer counts against the server's total.
    pub fn release(&mut self, session: &mut Session) {
        let q = &mut self.queues;
        q.owned_output -= session.output.clear(&mut q.pool)
            + session
                .held_pushes
                .take()
                .map_or(0, |mut held| held.clear(&mut q.pool));
    }

    /// Bytes the sessions' outputs own (shared push lines excluded): the sum of
    /// [`Session::owned_output`] over the sessions not yet released.
    pub fn owned_output(&self) -> usize {
        self.queues.owned_output
    }

    /// The next session that may be able to make progress.
    pub fn next_ready<T: SessionTable>(&mut self, table: &mut T) -> Option<ClientId> {
        let id = self.queues.ready.pop_front()?;
        if let Some(session) = table.session(id) {
            session.queued = false;
        }
        Some(id)
    }

    /// Queues `id` as able to make progress (its socket became readable).
    pub fn schedule<T: SessionTable>(&mut self, table: &mut T, id: ClientId) {
        if let Some(session) = table.session(id) {
            schedule(&mut self.queues.ready, session);
        }
    }

    /// Number of sessions on the ready queue.
    pub fn ready_len(&self) -> usize {
        self.queues.ready.len()
    }

    /// Appends the ids of sessions with new output to `into`.
    pub fn append_dirty<T: SessionTable>(&mut self, table: &mut T, into: &mut Vec<ClientId>) {
        for id in self.queues.dirty.drain(..) {
            if let Some(session) = table.session(id) {
                session.dirty = false;
                into.push(id);
            }
        }
    }

    /// Appends to `into` up to `budget` sessions with signal pushes to write, oldest first, and
    /// lets held-back publishers go once the backlog is small again.
    pub fn take_pushes<T: SessionTable>(
        &mut self,
        table: &mut T,
        into: &mut Vec<ClientId>,
        budget: usize,
    ) {
        let q = &mut self.queues;
        for _ in 0..budget {
            let Some(id) = q.pushes.pop_front() else {
                break;
            };
            if let Some(session) = table.session(id) {
                session.pushes_queued = false;
                into.push(id);
            }
        }
        if q.push_bytes < FANOUT_BACKLOG_BYTES {
            for id in q.fanout_waiters.drain(..) {
                if let Some(session) = table.session(id) {
                    session.fanout_wait = false;
                    schedule(&mut q.ready, session);
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

    /// Whether any session has a response queued since the last [`Dispatcher::append_dirty`].
    pub fn has_dirty(&self) -> bool {
        !self.queues.dirty.is_empty()
    }

    /// Continues the `stats` listings in progress, each in turn, with the steps left in this
    /// turn, answering those that finish. A listing whose requester has not read what it was
    /// sent waits without taking a step.
    pub fn continue_stats<T: SessionTable>(&mut self, table: &mut T, now: Millis) {
        self.stats_runnable = false;
        for _ in 0..self.stats_jobs.len() {
            let Some(mut job) = self.stats_jobs.pop_front() else {
                return;
            };
            match self.step_stats(table, now, &mut job) {
                Listing::Over => {}
                Listing::Going => {
                    self.stats_jobs.push_back(job);
                    self.stats_runnable = true;
                }
                Listing::Parked => self.stats_jobs.push_back(job),
            }
        }
    }

    /// Whether this turn's request budget is spent: the caller should leave the rest of the
    /// ready queue for the next turn.
    pub fn turn_is_full(&self) -> bool {
        self.turn_requests == 0
    }

    /// One step of a listing, if the turn has one left and the requester's output is below the
    /// soft limit, moved into that output; the line's end answers the request.
    fn step_stats<T: SessionTable>(
        &mut self,
        table: &mut T,
        now: Millis,
        job: &mut StatsJob,
    ) -> Listing {
        let open = table.open_count();
        let soft_output = self.queues.soft_limit(open);
        match table.session(job.client) {
            Some(session) if session.close_reason().is_none() => {
                if session.output.len() >= soft_output {
                    return Listing::Parked;
                }
                if self.stats_steps == 0 {
                    return Listing::Going;
                }
            }
            _ => return Listing::Over,
        }
        self.stats_steps -= 1;
        let done = self
            .engine
            .write_stats_step(now, &mut job.cursor, &mut job.line, STATS_STEP);
        let Some(session) = table.session(job.client) else {
            return Listing::Over;
        };
        let q = &mut self.queues;
        if done {
            response::end_stats(&mut job.line);
        }
        // Handed over rather than copied when the output is empty.
        q.owned_output += job.line.len();
        session.output.append_vec(&mut job.line, &mut q.pool);
        session.listing = !done;
        if done {
            release_held_pushes(q, session);
            end_wait(&mut q.ready, session, now);
        }
        after_output(q, session, open);
        if done { Listing::Over } else { Listing::Going }
    }

    /// `n` bytes of `id`'s output reached the socket. Unpauses the session once its output
    /// drains below half the soft limit.
    pub fn wrote<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis, n: usize) {
        let open = table.open_count();
        let Some(session) = table.session(id) else {
            return;
        };
        let q = &mut self.queues;
        q.owned_output -= session.output.consume(n, &mut q.pool);
        let pushes_written = n.min(session.push_bytes);
        session.push_bytes -= pushes_written;
        q.push_bytes -= pushes_written;
        if session.phase != Phase::Waiting && !session.paused {
            return; // the request path: nothing waits for this output to drain
        }
        let soft_output = q.soft_limit(open);
        if session.phase == Phase::Waiting && session.output.len() < soft_output {
            // A listing parked on this output may go on.
            self.stats_runnable = true;
        }
        // Rounded up so that a soft limit of 1 byte still resumes once the output is empty.
        if session.paused && session.output.len() < soft_output.div_ceil(2) {
            session.paused = false;
            session.line_started = now;
            schedule(&mut self.queues.ready, session);
        }
    }

    /// Processes complete requests at the start of `input` while the session accepts them;
    /// returns how many bytes were consumed.
    fn process<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        input: &[u8],
    ) -> usize {
        let mut used = 0;
        let mut handled = 0;
        loop {
            let Some(session) = table.session(id) else {
                return input.len();
            };
            if !session.accepts_requests() {
                return used;
            }
            if handled == REQUESTS_PER_TURN || self.turn_requests == 0 {
                // The rest waits in the input for the next turn.
                schedule(&mut self.queues.ready, session);
                return used;
            }
            match session.decoder.decode(&input[used..]) {
                Decoded::Frame { frame, consumed } => {
                    if frame.cmd == b"signal" && self.queues.push_bytes >= FANOUT_BACKLOG_BYTES {
                        // Hold the publisher until the fan-out already queued is written. The
                        // decoder has reset, and the frame stays in the input for later.
                        session.fanout_wait = true;
                        self.queues.fanout_waiters.push(id);
                        return used;
                    }
                    used += consumed;
                    handled += 1;
                    self.turn_requests -= 1;
                    session.lines = 0;
                    session.line_started = now;
                    self.handle(table, id, now, &frame);
                }
                Decoded::Partial { lines } => {
                    if lines > session.lines {
                        session.lines = lines;
                        session.line_started = now;
                    }
                    return used;
                }
                Decoded::TooLong => {
                    debug!("conn {} {}: line too long", session.serial, session.peer);
                    self.queues.counters.protocol_errors += 1;
                    if session.auth == AuthState::Required {
                        self.fail_auth(table, id, now);
                    } else {
                        self.answer_and_close(
                            table,
                            id,
                            now,
                            Response::Error,
                            CloseReason::ProtocolError,
                        );
                    }
                    return input.len();
                }
            }
        }
    }

    /// Executes one framed request.
    fn handle<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        frame: &Frame<'_>,
    ) {
        self.queues.counters.requests += 1;
        let parsed = request::parse(frame);
        let Some(session) = table.session(id) else {
            return;
        };
        if self.draining {
            self.answer_and_close(
                table,
                id,
                now,
                Response::ErrorDraining,
                CloseReason::Draining,
            );
            return;
        }
        if session.auth == AuthState::Required {
            self.authenticate(table, id, now, &parsed);
            return;
        }
        let request = match parsed {
            Ok(request) => request,
            Err(error) => {
                debug!(
                    "conn {} {}: invalid request (code {})",
                    session.serial,
                    session.peer,
                    error.code()
                );
                self.queues.counters.protocol_errors += 1;
                self.answer(table, id, now, Response::Error);
                return;
            }
        };
        if log::log_enabled!(log::Level::Debug) {
            debug!(
                "conn {} {}: {}",
                session.serial,
                session.peer,
                describe(&request)
            );
        }
        match request {
            Request::Stats => self.start_stats(table, id, now),
            Request::Ping => self.answer(table, id, now, Response::Ok),
            // Not configured, or already authenticated: `auth` is not an operation (spec §7.9).
            Request::Auth(_) => self.answer(table, id, now, Response::Error),
            _ => {
                let (engine, mut router) = split(&mut self.engine, &mut self.queues, table, now);
                if engine.apply(now, id, &request, &mut router) == Outcome::Waiting {
                    // Unless the request closed the session: a publisher whose own subscription
                    // had no room is evicted by its publish.
                    if let Some(session) = table.session(id).filter(|s| s.close_reason().is_none())
                    {
                        session.phase = Phase::Waiting;
                    }
                }
            }
        }
    }

    /// The first request of a connection when a token is configured (spec §14). The comparison
    /// runs in constant time, and runs even when the request is not `auth`, so timing does not
    /// tell a wrong token from a wrong command.
    fn authenticate<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        parsed: &Result<Request<'_>, crate::protocol::ProtoError>,
    ) {
        let offered: &[u8] = match parsed {
            Ok(Request::Auth(request::Auth { token })) => token,
            _ => b"",
        };
        let expected = self.auth_token.as_deref().unwrap_or_default();
        let matches = bool::from(offered.ct_eq(expected)) && matches!(parsed, Ok(Request::Auth(_)));
        if matches {
            if let Some(session) = table.session(id) {
                session.auth = AuthState::Open;
            }
            self.answer(table, id, now, Response::Ok);
        } else {
            self.fail_auth(table, id, now);
        }
    }

    fn fail_auth<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        if let Some(session) = table.session(id) {
            if let Some(suppressed) = self.queues.warnings.admit(WarnKind::AuthFailure, now) {
                warn!(
                    "conn {} {}: authentication failed{suppressed}",
                    session.serial, session.peer
                );
            }
        }
        self.answer_and_close(table, id, now, Response::ErrorAuth, CloseReason::AuthFailed);
    }

    fn answer<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        response: Response,
    ) {
        let (_, mut router) = split(&mut self.engine, &mut self.queues, table, now);
        router.reply(id, response);
    }

    fn answer_and_close<T: SessionTable>(
        &mut self,
        table: &mut T,
        id: ClientId,
        now: Millis,
        response: Response,
        reason: CloseReason,
    ) {
        self.answer(table, id, now, response);
        self.close(table, id, reason);
    }

    /// Starts a `stats` listing; a small one is answered at once, a large one over several
    /// turns while the requester waits.
    fn start_stats<T: SessionTable>(&mut self, table: &mut T, id: ClientId, now: Millis) {
        let figures = ServerFigures {
            connections: table.open_count() as u64,
            slow_consumers_disconnected: self.queues.counters.slow_consumers,
        };
        let mut job = StatsJob {
            client: id,
            cursor: StatsCursor::new(figures),
            line: Vec::new(),
        };
        response::begin_stats(&mut job.line);
        if let Some(session) = table.session(id) {
            session.phase = Phase::Waiting;
        }
        if self.step_stats(table, now, &mut job) != Listing::Over {
            self.stats_jobs.push_back(job);
            self.stats_runnable = true;
        }
    }

    /// After processing: a peer that finished sending is closed once nothing more can be
    /// answered, and a waiting request of a vanished peer is cancelled (spec §2.4). Also enforces
    /// the input cap while a request waits.
    fn check_input<T: SessionTable>(&mut self, table: &mut T, id: ClientId, _now: Millis) {
        let Some(session) = table.session(id) else {
            return;
        };
        let reason = match session.phase {
            // A blocking acquire or wait whose peer stopped sending is cancelled (spec §2.4); a
            // `stats` listing in progress is not: its reply, and those of requests behind it,
            // still go out before the close.
            Phase::Waiting if session.eof && self.engine.is_waiting(id) => {
                Some(CloseReason::PeerFinished)
            }
            Phase::Waiting if session.input.len() >= self.queues.limits.max_input => {
                Some(CloseReason::InputOverflow)
            }
            Phase::Open if session.eof && !session.paused && !session.fanout_wait => {
                Some(CloseReason::PeerFinished)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            self.close(table, id, reason);
        }
    }
}

/// Splits the dispatcher into the engine and a router over `table`, so the engine can be called
/// with the router as its outbox.
fn split<'t, T: SessionTable>(
    engine: &'t mut Engine,
    queues: &'t mut Queues,
    table: &'t mut T,
    now: Millis,
) -> (&'t mut Engine, Router<'t, T>) {
    (engine, Router { table, queues, now })
}

/// Where a `stats` listing stands after [`Dispatcher::step_stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// It can take another step.
    Going,
    /// It waits for its requester to read what it was sent.
    Parked,
    /// Answered, or its requester has gone.
    Over,
}

/// Moves the pushes held back during a `stats` listing into the output, after its line.
fn release_held_pushes(q: &mut Queues, session: &mut Session) {
    let Some(mut held_pushes) = session.held_pushes.take() else {
        return;
    };
    let held = held_pushes.len();
    session.output.append_output(&mut held_pushes, &mut q.pool);
    session.push_bytes += held;
    q.push_bytes += held;
    if !session.pushes_queued {
        session.pushes_queued = true;
        q.pushes.push_back(session.id);
    }
}

/// Puts `session` on the ready queue unless it is already there.
fn schedule(ready: &mut VecDeque<ClientId>, session: &mut Session) {
    if !session.queued {
        session.queued = true;
        ready.push_back(session.id);
    }
}

/// A waiting request was answered: the next request may be processed, and its first line is
/// read from now on.
fn end_wait(ready: &mut VecDeque<ClientId>, session: &mut Session, now: Millis) {
    if session.phase == Phase::Waiting {
        session.phase = Phase::Open;
        session.line_started = now;
        schedule(ready, session);
    }
}

/// Marks `session` as having a response to write and applies the soft limit.
fn after_output(q: &mut Queues, session: &mut Session, open: usize) {
    if !session.dirty {
        session.dirty = true;
        q.dirty.push(session.id);
    }
    pause_if_backlogged(q, session, open);
}

/// Stops processing `session`'s requests while its unsent output is at the soft limit (or its
/// fair share of the server's total, while that is exceeded).
fn pause_if_backlogged(q: &Queues, session: &mut Session, open: usize) {
    let len = session.output.len();
    // Below the smallest limit either could be: the request path's one comparison.
    if len >= q.limits.soft_output.min(MIN_OUTPUT_SHARE) && len >= q.soft_limit(open) {
        session.paused = true;
    }
}

/// The least a connection's fair share of `--max-total-output` can be, however many
/// connections there are: a connection holding less is never paused or dropped for the total.
const MIN_OUTPUT_SHARE: usize = 64 * 1024;

impl Queues {
    /// Bytes of output the server holds: owned bytes plus shared push lines, each counted once.
    fn output_memory(&self) -> usize {
        self.owned_output + self.line_gauge.bytes()
    }

    /// `base`, or the fair share of `--max-total-output` among `open` connections if that is
    /// less and the total is exceeded.
    fn output_limit(&self, base: usize, open: usize) -> usize {
        if self.output_memory() <= self.limits.total_output {
            return base;
        }
        let share = (self.limits.total_output / open.max(1)).max(MIN_OUTPUT_SHARE);
        base.min(share)
    }

    /// Pending output at which a connection's requests pause.
    fn soft_limit(&self, open: usize) -> usize {
        self.output_limit(self.limits.soft_output, open)
    }
}

/// A one-line description of a request for the debug log (tokens and payloads abbreviated).
fn describe(request: &Request<'_>) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match request {
        Request::Acquire(request::Acquire {
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
        }) => {
            format!(
                "acquire {ns:?} {} timeout={timeout_s}s limit={limit} lease={lease_s:?}",
                text(key)
            )
        }
        Request::Release(request::Release { ns, key, .. }) => {
            format!("release {ns:?} {}", text(key))
        }
        Request::Renew(request::Renew {
            ns, key, lease_s, ..
        }) => format!("renew {ns:?} {} lease={lease_s:?}", text(key)),
        Request::Enqueue(request::Enqueue {
            ns,
            key,
            limit,
            lease_s,
        }) => {
            format!(
                "enqueue {ns:?} {} limit={limit} lease={lease_s:?}",
                text(key)
            )
        }
        Request::Wait(request::Wait { ns, key, timeout_s }) => {
            format!("wait {ns:?} {} timeout={timeout_s}s", text(key))
        }
        Request::Stats => "stats".into(),
        Request::Ping => "ping".into(),
        Request::Auth(_) => "auth".into(),
        Request::Listen(request::Subscription { pattern, group }) => {
            format!("listen {} group={}", text(pattern), text(group))
        }
        Request::Unlisten(request::Subscription { pattern, group }) => {
            format!("unlisten {} group={}", text(pattern), text(group))
        }
        Request::Signal(request::Signal { channel, payload }) => {
            format!("signal {} ({} bytes)", text(channel), payload.len())
        }
    }
}

/// Routes engine effects into connection buffers.
struct Router<'t, T> {
    table: &'t mut T,
    queues: &'t mut Queues,
    now: Millis,
}

/// The session `client` names if it can still take output; counts effects for departed ids.
fn open_session<'t, T: SessionTable>(
    table: &'t mut T,
    counters: &mut Counters,
    client: ClientId,
) -> Option<&'t mut Session> {
    match table.session(client) {
        Some(session) if session.close_reason().is_none() => Some(session),
        Some(_) => None,
        None => {
            counters.stale_ids += 1;
            None
        }
    }
}

impl<T: SessionTable> Outbox for Router<'_, T> {
    fn reply(&mut self, client: ClientId, reply: Response) {
        let open = self.table.open_count();
        let q = &mut *self.queues;
        let Some(session) = open_session(self.table, &mut q.counters, client) else {
            return;
        };
        let buf = session.output.append(&mut q.pool);
        let before = buf.len();
        response::encode(&reply, buf);
        q.owned_output += buf.len() - before;
        end_wait(&mut q.ready, session, self.now);
        after_output(q, session, open);
    }

    fn has_room(&mut self, client: ClientId, line_len: usize) -> bool {
        let open = self.table.open_count();
        let q = &mut *self.queues;
        open_session(self.table, &mut q.counters, client).is_some_and(|session| {
            let after = session.output.len() + session.held_len() + line_len;
            after <= q.limits.hard_output.min(MIN_OUTPUT_SHARE)
                || after <= q.output_limit(q.limits.hard_output, open)
        })
    }

    fn push(&mut self, client: ClientId, push: &Push<'_>) {
        let open = self.table.open_count();
        let q = &mut *self.queues;
        let Some(session) = open_session(self.table, &mut q.counters, client) else {
            return;
        };
        if session.listing {
            let held = session.held_pushes.get_or_insert_default();
            q.owned_output += held.append_push(push, &mut q.pool);
            return;
        }
        q.owned_output += session.output.append_push(push, &mut q.pool);
        session.push_bytes += push.len();
        q.push_bytes += push.len();
        if !session.pushes_queued {
            session.pushes_queued = true;
            q.pushes.push_back(session.id);
        }
        pause_if_backlogged(q, session, open);
    }

    fn evict(&mut self, client: ClientId) {
        let q = &mut *self.queues;
        let Some(session) = open_session(self.table, &mut q.counters, client) else {
            return;
        };
        if let Some(suppressed) = q.warnings.admit(WarnKind::SlowConsumer, self.now) {
            warn!(
                "conn {} {}: slow consumer ({} bytes of output pending), disconnecting{suppressed}",
                session.serial,
                session.peer,
                session.output.len()
            );
        }
        session.phase = Phase::Closing(CloseReason::SlowConsumer);
        q.closing.push(client);
        q.counters.slow_consumers += 1;
    }
}
