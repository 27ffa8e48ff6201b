//! The event loop: one thread, one `mio::Poll`, every connection in one slab.
//!
//! One turn of [`Server::run`]:
//! 1. poll, with a timeout from the nearest engine or I/O deadline (zero while work is queued);
//! 2. record readiness per connection and put readable ones on the ready queue;
//! 3. run due engine timers (lease expiry, wait timeouts, idle GC) and I/O timers (read and
//!    write deadlines, lingering closes, accept retries, the shutdown deadline);
//! 4. serve the ready queue: at most one read per connection per turn, whose complete requests
//!    are answered at once (so a flood from one client cannot starve the others), and at most
//!    `HANDSHAKES_PER_TURN` reads that advance a TLS handshake;
//! 5. accept at most `--accept-batch` new connections;
//! 6. write every connection that got output this turn, once, and finish closes (whose released
//!    locks may produce grants, which are written in the same pass).
//!
//! Sockets are registered once for both readable and writable and never re-registered; readiness
//! is tracked in `Conn` flags (edge-triggered epoll reports each transition once).

mod accept;
mod bufpool;
mod conn;
mod conn_id;
pub mod dispatch;
mod output;
pub mod session;
mod shutdown;
mod tls;
mod transport;
pub mod warnings;

pub use self::output::SHARE_MIN;

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Waker};

use self::accept::AcceptState;
use self::conn::{AUTH_FAILURE_DELAY_MS, Closing, Conn, LINGER_MS};
use self::conn_id::{Generations, LISTENER, SIGNALS, WAKER, id_of, token_of};
use self::dispatch::{Dispatcher, SessionLimits};
use self::session::CloseReason;
pub use self::shutdown::ShutdownHandle;
use self::tls::TlsConn;
pub use self::tls::load_server_config as load_tls;
use self::transport::{ReadOutcome, Transport, WRITE_SLICES, WriteOutcome};
use self::warnings::WarnKind;
use crate::budget::{
    CLOSES_PER_TURN, EVENT_CAPACITY, EXPIRE_BUDGET, HANDSHAKES_PER_TURN, PUSH_WRITES_PER_TURN,
    READ_CHUNK, READS_PER_TURN, TRIM_BUDGET, WRITE_BYTES_PER_TURN,
};
use crate::clock::{Clock, Millis};
use crate::config::Config;
use crate::engine::signal::SubscriptionLimits;
use crate::engine::{ClientId, Engine, EngineConfig};
use crate::slots::Slots;
use crate::table::IncrementalMap;
use crate::timer::TimerWheel;
use crate::token::TokenIssuer;

/// What an I/O timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoTimer {
    /// A connection's nearest deadline (read, write, close).
    Conn(ClientId),
    /// Retry accepting after a resource error.
    AcceptRetry,
    /// `--shutdown-timeout` passed.
    ShutdownDeadline,
}

/// Timeouts and caps the loop enforces.
#[derive(Clone, Debug)]
struct Settings {
    read_timeout_ms: u64,
    write_timeout_ms: u64,
    shutdown_timeout_ms: u64,
    max_connections: u64,
    max_connections_per_ip: u64,
    accept_batch: usize,
    tls_handshake_timeout_ms: u64,
    /// Never sleep in poll (`--busy-poll`).
    busy_poll: bool,
}

/// The server: owns the listener, every connection and the engine.
pub struct Server {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// Set when every connection must speak TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    shutdown_requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
    clock: Clock,
    conns: Slots<Conn>,
    dispatcher: Dispatcher,
    io_timers: TimerWheel<IoTimer>,
    generations: Generations,
    /// Connection numbers, counted from 1 per accepted connection (spec §1).
    accepted: u64,
    /// Open connections per peer address, kept only when `--max-connections-per-ip` is set.
    per_ip: IncrementalMap<IpAddr, u64>,
    accept: AcceptState,
    settings: Settings,
    /// Loop-wide read buffer; connections keep only unprocessed remainders.
    scratch: Box<[u8]>,
    /// Reused list of connections to write this turn.
    to_flush: Vec<ClientId>,
    /// Connections to write next turn: their socket can take more than the turn's quota.
    write_backlog: Vec<ClientId>,
    /// Whether engine timers were left due by the last turn (spread over turns).
    engine_backlog: bool,
    draining: bool,
}

impl Server {
    /// A server that will serve `listener` (already bound) with `config`; with `tls` (see
    /// [`load_tls`]) every connection must speak TLS.
    pub fn new(
        config: &Config,
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let engine = Engine::new(engine_config(config), TokenIssuer::for_server());
        let limits = SessionLimits {
            max_input: config.max_input_buffer,
            soft_output: config.max_pending_output,
            hard_output: config.max_output_buffer,
            total_output: config.max_total_output,
            read_timeout_ms: config.read_timeout_s.saturating_mul(1000),
        };
        let auth = config.auth_token.as_ref().map(|t| t.expose().as_bytes());
        Ok(Server {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            listener: Some(listener),
            local_addr,
            tls,
            signals: None,
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            waker,
            clock: Clock::start(),
            conns: Slots::new(),
            dispatcher: Dispatcher::new(engine, limits, auth),
            io_timers: TimerWheel::new(),
            generations: Generations::default(),
            accepted: 0,
            per_ip: IncrementalMap::default(),
            accept: AcceptState::default(),
            settings: Settings {
                read_timeout_ms: config.read_timeout_s.saturating_mul(1000),
                write_timeout_ms: config.write_timeout_s.saturating_mul(1000),
                shutdown_timeout_ms: config.shutdown_timeout_s.saturating_mul(1000),
                max_connections: config.max_connections,
                max_connections_per_ip: config.max_connections_per_ip,
                accept_batch: config.accept_batch.max(1),
                tls_handshake_timeout_ms: config.tls_handshake_timeout_s.saturating_mul(1000),
                busy_poll: config.busy_poll,
            },
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            to_flush: Vec::new(),
            write_backlog: Vec::new(),
            engine_backlog: false,
            draining: false,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Begins a graceful shutdown on SIGINT or SIGTERM. Only the binary calls this; servers
    /// embedded in tests are stopped through [`Server::shutdown_handle`].
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// A handle that starts a graceful shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.shutdown_requested.clone(), self.waker.clone())
    }

    /// Runs until a graceful shutdown completes (spec §16).
    pub fn run(mut self) -> io::Result<()> {
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = self.clock.now();
            self.take_events();
            if self.shutdown_requested.load(Ordering::Acquire) {
                self.begin_shutdown(now);
            }
            self.run_timers(now);
            self.serve_ready(now);
            self.dispatcher.continue_stats(&mut self.conns, now);
            self.accept_connections(now);
            self.write_and_close(now);
            // Once a crowd of connections has left, their slots go back a budget per turn.
            let left = TRIM_BUDGET - self.conns.trim(TRIM_BUDGET);
            self.io_timers.trim(left);
            if self.draining && self.conns.is_empty() {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Zero while work is queued (always, with `--busy-poll`); otherwise until the nearest
    /// deadline, or forever.
    fn poll_timeout(&self) -> Option<std::time::Duration> {
        let busy = self.settings.busy_poll
            || self.dispatcher.ready_len() > 0
            || self.dispatcher.has_pending_work()
            || self.engine_backlog
            || self.conns.wants_trim()
            || self.io_timers.wants_trim()
            || !self.write_backlog.is_empty()
            || self.accept.can_accept_now(self.listener.is_some());
        if busy {
            return Some(std::time::Duration::ZERO);
        }
        let next = match (
            self.dispatcher.engine.next_deadline(),
            self.io_timers.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| self.clock.until(at))
    }

    fn take_events(&mut self) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept.pending = true,
                SIGNALS => self.on_signal(),
                WAKER => {} // the shutdown flag is checked after every poll
                token => match id_of(token) {
                    Some(id) => self.on_conn_event(id, event),
                    None => debug!("event for unknown token {token:?}"),
                },
            }
        }
        self.events = events;
    }

    fn on_signal(&mut self) {
        if let Some(signals) = self.signals.as_mut() {
            for signal in signals.pending() {
                info!("received signal {signal}, shutting down");
                self.shutdown_requested.store(true, Ordering::Release);
            }
        }
    }

    fn on_conn_event(&mut self, id: ClientId, event: &Event) {
        let Some(conn) = self.conns.session_conn(id) else {
            // An event for a connection that closed earlier in this batch or whose slot was
            // reused: the generation does not match.
            self.dispatcher.count_stale_id();
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.read_ready = true;
            conn.read_closed_hint |= event.is_read_closed() || event.is_error();
            self.dispatcher.schedule(&mut self.conns, id);
        }
        if event.is_writable() || event.is_write_closed() {
            let conn = &mut self.conns[id.index as usize];
            conn.write_ready = true;
            if conn.has_pending_output() {
                self.to_flush.push(id);
            }
        }
    }

    fn run_timers(&mut self, now: Millis) {
        self.engine_backlog = self.dispatcher.start_turn(&mut self.conns, now);
        // Bounded like engine timers, so that no burst of deadlines (or a timer re-armed in the
        // past) can keep the loop from serving anyone else.
        for _ in 0..EXPIRE_BUDGET {
            let Some((_, timer)) = self.io_timers.poll(now) else {
                break;
            };
            match timer {
                IoTimer::Conn(id) => self.on_conn_timer(id, now),
                IoTimer::AcceptRetry => self.accept.retry_due(),
                IoTimer::ShutdownDeadline => self.force_close_all(now),
            }
        }
    }

    fn on_conn_timer(&mut self, id: ClientId, now: Millis) {
        let (read_timeout, write_timeout) = (
            self.settings.read_timeout_ms,
            self.settings.write_timeout_ms,
        );
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        conn.timer = None;
        let write_expired = conn
            .write_stalled_since
            .is_some_and(|since| write_timeout > 0 && since.plus_ms(write_timeout) <= now)
            && conn.has_pending_output();
        let handshake_expired =
            conn.handshake_deadline.is_some_and(|at| at <= now) && conn.transport.is_handshaking();
        if write_expired || handshake_expired {
            let what = if write_expired {
                "write"
            } else {
                "TLS handshake"
            };
            debug!(
                "conn {} {}: {what} deadline expired",
                conn.session.serial, conn.session.peer
            );
            if conn.closing.is_some() {
                // A graceful close that cannot deliver its last words: give up on them.
                self.remove(id);
                return;
            }
            let reason = if write_expired {
                CloseReason::WriteFailed
            } else {
                CloseReason::PeerGone
            };
            self.dispatcher.close(&mut self.conns, id, reason);
        } else if conn.closing.is_some() {
            self.advance_close(id, now);
        } else if conn
            .session
            .read_deadline(read_timeout)
            .is_some_and(|at| at <= now)
        {
            self.dispatcher.read_timed_out(&mut self.conns, id, now);
        }
        self.refresh_timer(id);
    }

    /// Serves the connections queued at the start of this phase; ones re-queued while serving
    /// wait for the next turn, which bounds the work per turn.
    fn serve_ready(&mut self, now: Millis) {
        let mut handshakes = HANDSHAKES_PER_TURN;
        for _ in 0..self.dispatcher.ready_len().min(READS_PER_TURN) {
            if self.dispatcher.turn_is_full() {
                // The rest stay queued, so the next poll does not sleep.
                break;
            }
            let Some(id) = self.dispatcher.next_ready(&mut self.conns) else {
                break;
            };
            self.serve(id, now, &mut handshakes);
            self.refresh_timer(id);
        }
    }

    /// One read (if the socket may have data and there is room for it) and the processing of
    /// whatever requests are complete. A read that would advance a TLS handshake takes one of
    /// the turn's `handshakes`; with none left, the connection is served next turn.
    fn serve(&mut self, id: ClientId, now: Millis, handshakes: &mut usize) {
        let room = self.dispatcher.input_room(&mut self.conns, id);
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        if conn.read_ready && conn.transport.is_handshaking() {
            if *handshakes == 0 {
                // Still readable, so back on the ready queue, which keeps the next poll from
                // sleeping.
                self.dispatcher.schedule(&mut self.conns, id);
                return;
            }
            *handshakes -= 1;
        }
        if conn.closing.is_some() || conn.session.close_reason().is_some() {
            self.discard_input(id, now);
            return;
        }
        if !conn.read_ready || room == 0 {
            self.dispatcher.resume(&mut self.conns, id, now);
            // Processing may have made room while the socket still holds data it will not
            // announce again (edge-triggered): come back for it next turn.
            let readable = self.conns.session_conn(id).is_some_and(|c| c.read_ready);
            if readable && self.dispatcher.input_room(&mut self.conns, id) > 0 {
                self.dispatcher.schedule(&mut self.conns, id);
            }
            return;
        }
        let want = room.min(self.scratch.len());
        let trust_short = !conn.read_closed_hint;
        let outcome = conn.transport.read(&mut self.scratch[..want], trust_short);
        if conn.transport.has_pending_output() {
            // TLS records produced while reading (a handshake flight, an alert) that the socket
            // did not take yet.
            self.to_flush.push(id);
        }
        match outcome {
            ReadOutcome::Data { len, drained } => {
                conn.read_ready = !drained;
                conn.note_handshake_progress();
                self.dispatcher
                    .receive(&mut self.conns, id, now, &self.scratch[..len]);
                if !drained {
                    // More may be waiting: come back next turn, after everyone else.
                    self.dispatcher.schedule(&mut self.conns, id);
                }
            }
            ReadOutcome::WouldBlock => {
                conn.read_ready = false;
                conn.note_handshake_progress();
                self.dispatcher.resume(&mut self.conns, id, now);
            }
            ReadOutcome::Eof => {
                conn.read_ready = false;
                self.dispatcher.resume(&mut self.conns, id, now);
                self.dispatcher.peer_finished(&mut self.conns, id, now);
            }
            ReadOutcome::Failed(e) => {
                debug!(
                    "conn {} {}: read failed: {e}",
                    conn.session.serial, conn.session.peer
                );
                conn.read_ready = false;
                self.dispatcher
                    .close(&mut self.conns, id, CloseReason::PeerGone);
            }
        }
    }

    /// Reads and drops input of a closing connection; EOF ends a lingering close.
    fn discard_input(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        if !conn.read_ready {
            return;
        }
        match conn.transport.read(&mut self.scratch, false) {
            ReadOutcome::Data { .. } => self.dispatcher.schedule(&mut self.conns, id),
            ReadOutcome::WouldBlock => conn.read_ready = false,
            ReadOutcome::Eof | ReadOutcome::Failed(_) => {
                conn.read_ready = false;
                conn.session.mark_peer_finished();
                if matches!(conn.closing, Some(Closing::Lingering { .. })) {
                    self.remove(id);
                } else {
                    self.advance_close(id, now);
                }
            }
        }
    }

    fn accept_connections(&mut self, now: Millis) {
        let mut budget = self.settings.accept_batch;
        while budget > 0 && self.accept.can_accept_now(self.listener.is_some()) {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    budget -= 1;
                    self.accept.succeeded();
                    self.admit(stream, peer, now);
                }
                Err(e) => {
                    if let Some(retry_in) = self.accept.failed(&e, now) {
                        self.io_timers
                            .insert(now.plus_ms(retry_in), IoTimer::AcceptRetry);
                    }
                }
            }
        }
    }

    /// Takes a new connection into the loop, or closes it at once (no bytes) if a cap is hit.
    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: SocketAddr, now: Millis) {
        let caps = &self.settings;
        if caps.max_connections > 0 && self.conns.len() as u64 >= caps.max_connections {
            self.warn_refused(
                now,
                format_args!("{peer}: refused, --max-connections reached"),
            );
            return;
        }
        if caps.max_connections_per_ip > 0 {
            let open = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if open >= caps.max_connections_per_ip {
                self.warn_refused(
                    now,
                    format_args!("{peer}: refused, --max-connections-per-ip reached"),
                );
                return;
            }
            self.per_ip.insert(peer.ip(), open + 1);
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: set_nodelay failed: {e}");
        }
        let entry = self.conns.vacant_entry();
        let id = ClientId {
            index: entry.key() as u32,
            generation: self.generations.next_generation(),
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.warn_refused(now, format_args!("{peer}: cannot register connection: {e}"));
            self.forget_ip(peer.ip());
            return;
        }
        let (transport, handshake_deadline) = match &self.tls {
            None => (Transport::Plain(stream), None),
            Some(config) => match TlsConn::new(stream, config.clone()) {
                Ok(tls) => (
                    Transport::Tls(Box::new(tls)),
                    Some(now.plus_ms(self.settings.tls_handshake_timeout_ms)),
                ),
                Err(e) => {
                    self.warn_refused(now, format_args!("{peer}: cannot start TLS: {e}"));
                    self.forget_ip(peer.ip());
                    return;
                }
            },
        };
        self.accepted += 1;
        let session = self.dispatcher.open(id, self.accepted, peer, now);
        debug!("conn {} {peer}: accepted", self.accepted);
        let mut conn = Conn::new(session, transport);
        conn.handshake_deadline = handshake_deadline;
        entry.insert(conn);
        self.refresh_timer(id);
    }

    /// Logs why a connection was refused, rate-limited: a peer can arrange for every one of its
    /// connections to be refused.
    fn warn_refused(&mut self, now: Millis, why: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.dispatcher.admit_warning(WarnKind::Refused, now) {
            warn!("{why}{suppressed}");
        }
    }

    /// Writes every connection that got a response this turn, those left with output by the
    /// last turn's write quota and a bounded number of those with signal pushes (one write call
    /// each, unless the socket takes only part), then closes connections that asked for it.
    /// Closing releases locks, which may grant them to others, so the two repeat until nothing
    /// is left.
    fn write_and_close(&mut self, now: Millis) {
        let mut push_budget = PUSH_WRITES_PER_TURN;
        let mut closes = CLOSES_PER_TURN;
        for id in self.write_backlog.drain(..) {
            if let Some(conn) = self.conns.session_conn(id) {
                conn.write_deferred = false;
                self.to_flush.push(id);
            }
        }
        loop {
            let mut batch = std::mem::take(&mut self.to_flush);
            self.dispatcher.append_dirty(&mut self.conns, &mut batch);
            self.dispatcher.take_pushes(
                &mut self.conns,
                &mut batch,
                std::mem::take(&mut push_budget),
            );
            for &id in &batch {
                self.flush(id, now);
            }
            batch.clear();
            // Closes started below may queue more ids in `to_flush`; keep them.
            batch.append(&mut self.to_flush);
            self.to_flush = batch;
            let mut closed_any = false;
            while closes > 0 {
                let Some(id) = self.dispatcher.next_closing() else {
                    break;
                };
                closes -= 1;
                closed_any = true;
                self.start_close(id, now);
            }
            if !closed_any && !self.dispatcher.has_dirty() && self.to_flush.is_empty() {
                return;
            }
        }
    }

    fn flush(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        let mut written = 0;
        let mut failure = None;
        let output = &conn.session.output;
        let quota = output.len().min(WRITE_BYTES_PER_TURN);
        while conn.write_ready && written < quota {
            let (outcome, offered) = match output.contiguous() {
                Some(bytes) => (
                    conn.transport.write(&bytes[written..quota]),
                    quota - written,
                ),
                None => {
                    let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                    let filled = output.gather(written, quota - written, &mut slices);
                    let offered = slices[..filled].iter().map(|s| s.len()).sum();
                    let slices = &mut slices[..filled];
                    (conn.transport.write_vectored(slices), offered)
                }
            };
            match outcome {
                WriteOutcome::Wrote(n) => {
                    written += n;
                    // A short write means the socket buffer is full (for TLS: the transport hit
                    // WouldBlock); edge-triggered epoll reports when it drains, so trying again
                    // now would only cost a system call that returns WouldBlock.
                    if n < offered {
                        conn.write_ready = false;
                    }
                }
                WriteOutcome::WouldBlock => conn.write_ready = false,
                WriteOutcome::Failed(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && conn.write_ready && conn.transport.has_pending_output() {
            match conn.transport.flush_pending() {
                WriteOutcome::Wrote(_) => {}
                WriteOutcome::WouldBlock => conn.write_ready = false,
                WriteOutcome::Failed(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            debug!(
                "conn {} {}: write failed: {e}",
                conn.session.serial, conn.session.peer
            );
            if conn.closing.is_some() {
                // A graceful close whose last words cannot be delivered: nothing is left to do.
                self.remove(id);
            } else {
                self.dispatcher
                    .close(&mut self.conns, id, CloseReason::WriteFailed);
            }
            return;
        }
        let pending = conn.session.output_len() > written || conn.transport.has_pending_output();
        if pending && conn.write_ready && !conn.write_deferred {
            // No writable edge will come for a socket that still has room: come back next turn.
            conn.write_deferred = true;
            self.write_backlog.push(id);
        }
        match (pending, written > 0) {
            (false, _) => conn.write_stalled_since = None,
            // Progress restarts the write deadline: it bounds a stall, not a slow drain.
            (true, true) => conn.write_stalled_since = Some(now),
            (true, false) => {
                conn.write_stalled_since.get_or_insert(now);
            }
        }
        if written > 0 {
            self.dispatcher.wrote(&mut self.conns, id, now, written);
        }
        if self
            .conns
            .session_conn(id)
            .is_some_and(|c| c.closing.is_some())
        {
            self.advance_close(id, now);
        }
        self.refresh_timer(id);
    }

    /// A session entered its closing phase: release its engine state, then close the socket now
    /// or after delivering pending output.
    fn start_close(&mut self, id: ClientId, now: Millis) {
        self.dispatcher.disconnect(&mut self.conns, id, now);
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        let reason = conn.session.close_reason().unwrap_or(CloseReason::PeerGone);
        debug!(
            "conn {} {}: closing ({reason:?})",
            conn.session.serial, conn.session.peer
        );
        if !reason.flushes() {
            self.remove(id);
            return;
        }
        let not_before = if reason == CloseReason::AuthFailed {
            now.plus_ms(AUTH_FAILURE_DELAY_MS)
        } else {
            now
        };
        conn.closing = Some(Closing::Flushing { not_before });
        if conn.session.output_len() > 0 {
            self.to_flush.push(id);
        }
        self.advance_close(id, now);
        self.refresh_timer(id);
    }

    /// Moves a graceful close along: FIN once output is out (and the auth delay passed), then
    /// linger until the peer's EOF or the linger deadline.
    fn advance_close(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        match conn.closing {
            Some(Closing::Flushing { not_before }) => {
                if conn.has_pending_output() || now < not_before {
                    return;
                }
                conn.transport.shutdown_write();
                if conn.session.peer_finished() {
                    self.remove(id);
                } else {
                    conn.closing = Some(Closing::Lingering {
                        until: now.plus_ms(LINGER_MS),
                    });
                    self.dispatcher.schedule(&mut self.conns, id);
                }
            }
            Some(Closing::Lingering { until }) if now >= until => self.remove(id),
            _ => {}
        }
    }

    /// Drops a connection: deregisters and closes the socket, cancels its timer.
    fn remove(&mut self, id: ClientId) {
        let Some(mut conn) = self.conns.try_remove_conn(id) else {
            return;
        };
        if let Some((timer, _)) = conn.timer.take() {
            self.io_timers.cancel(timer);
        }
        conn.transport.close_notify();
        if let Err(e) = self.poll.registry().deregister(conn.transport.socket()) {
            debug!("conn {}: deregister failed: {e}", conn.session.serial);
        }
        self.dispatcher.release(&mut conn.session);
        self.forget_ip(conn.session.peer.ip());
        debug!("conn {} {}: closed", conn.session.serial, conn.session.peer);
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        if self.settings.max_connections_per_ip == 0 {
            return;
        }
        if let Some(open) = self.per_ip.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Keeps the connection's one I/O timer at or before its nearest deadline. A deadline that
    /// moved later leaves the timer where it is; it fires early and is re-armed.
    fn refresh_timer(&mut self, id: ClientId) {
        let (read_timeout, write_timeout) = (
            self.settings.read_timeout_ms,
            self.settings.write_timeout_ms,
        );
        let Some(conn) = self.conns.session_conn(id) else {
            return;
        };
        let wanted = conn.next_deadline(read_timeout, write_timeout);
        match (conn.timer, wanted) {
            (Some((_, at)), Some(deadline)) if at <= deadline => {}
            (current, wanted) => {
                if let Some((timer, _)) = current {
                    self.io_timers.cancel(timer);
                }
                conn.timer = wanted
                    .map(|deadline| (self.io_timers.insert(deadline, IoTimer::Conn(id)), deadline));
            }
        }
    }

    fn begin_shutdown(&mut self, now: Millis) {
        if self.draining {
            return;
        }
        self.draining = true;
        info!(
            "draining: listener closed, {} connection(s) open",
            self.conns.len()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.dispatcher.begin_drain(&mut self.conns, now);
        if self.settings.shutdown_timeout_ms > 0 {
            self.io_timers.insert(
                now.plus_ms(self.settings.shutdown_timeout_ms),
                IoTimer::ShutdownDeadline,
            );
        }
    }

    fn force_close_all(&mut self, now: Millis) {
        info!(
            "shutdown timeout: closing {} connection(s)",
            self.conns.len()
        );
        let ids: Vec<ClientId> = self.conns.iter().map(|(_, c)| c.session.id).collect();
        for id in ids {
            // Also ends graceful closes that are still flushing or lingering.
            self.dispatcher
                .close(&mut self.conns, id, CloseReason::ShutdownDeadline);
            self.dispatcher.disconnect(&mut self.conns, id, now);
            self.remove(id);
        }
    }
}

/// Engine settings from the server configuration.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        default_lease_s: config.default_lease_s,
        max_locks: config.max_locks,
        max_waiters: config.max_waiters,
        subscriptions: SubscriptionLimits {
            per_client: config.max_subscriptions,
            bytes_per_client: config.max_subscription_bytes,
            total: config.max_total_subscriptions,
        },
        gc_interval_ms: config.gc_interval_s.saturating_mul(1000).max(1),
        gc_max_idle_ms: config.gc_max_idle_s.saturating_mul(1000),
        auto_release_on_disconnect: config.auto_release_on_disconnect,
    }
}

/// Connection lookup by id, with the generation check.
trait ConnTable {
    fn session_conn(&mut self, id: ClientId) -> Option<&mut Conn>;
    fn try_remove_conn(&mut self, id: ClientId) -> Option<Conn>;
}

impl ConnTable for Slots<Conn> {
    fn session_conn(&mut self, id: ClientId) -> Option<&mut Conn> {
        self.get_mut(id.index as usize)
            .filter(|conn| conn.session.id == id)
    }

    fn try_remove_conn(&mut self, id: ClientId) -> Option<Conn> {
        self.session_conn(id)?;
        self.try_remove(id.index as usize)
    }
}
