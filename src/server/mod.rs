//! The event loop: one thread, one `mio::Poll`, every connection in one table.
//!
//! One turn of [`Server::run`]:
//! 1. poll, with a timeout from the nearest engine or I/O deadline (zero while work is queued);
//! 2. record readiness per connection and put readable ones on the ready queue;
//! 3. run due engine timers (lease expiry, wait timeouts, idle GC) and I/O timers (read and
//!    write deadlines, lingering closes, accept retries, the shutdown deadline);
//! 4. serve the ready queue: at most one read per connection per turn, whose complete requests
//!    are answered at once (so a flood from one client cannot starve the others), and at most
//!    [`HANDSHAKES_PER_TURN`] reads that advance a TLS handshake;
//! 5. accept at most `--accept-batch` new connections, taking turns between the listeners (TCP
//!    and Unix sockets: `listeners.rs`);
//! 6. write every connection that got output this turn, once, and finish closes (whose released
//!    locks may produce grants, which are written in the same pass).
//!
//! Sockets are registered once for both readable and writable and never re-registered; readiness
//! is tracked in flags of the connection (edge-triggered epoll reports each transition once).
//!
//! # Layers
//!
//! A request passes through each file once: this loop turns readiness events into
//! `Dispatcher::handle_readiness` calls; `io.rs` reads the connection's byte stream
//! (`transport/`: plain TCP, a Unix socket, or TLS); `dispatch.rs` frames and parses the requests,
//! applies them to the engine and routes the engine's effects into the connections' output
//! (`output.rs`); `io.rs` writes that output and moves closes along; this loop finally
//! deregisters the sockets of removed connections. Everything but this file is generic over the
//! byte stream, so tests and fuzz targets run it over in-memory streams with an explicit clock.
//! A connection (`connection.rs`) is one struct with one state machine, from
//! open through waiting to the stages of its close.
//!
//! # Per-turn budgets
//!
//! In a lock server a long turn is an outage: while the loop is busy no lease can be renewed.
//! So everything whose cost grows with client input stops at one of these budgets and goes on
//! in the next turn, from where it stopped; the poll does not sleep while such work is left.
//! Each is one constant in [`crate::budget`]; the README's Architecture section lists them with
//! the longest turn measured for each kind of bulk work.
//!
//! | constant | per turn | bounds |
//! |---|---|---|
//! | [`EVENT_CAPACITY`] | 1 024 events | readiness events taken from one poll |
//! | [`READ_CHUNK`] | 64 KiB per connection | one read per connection |
//! | [`READS_PER_TURN`] | 256 connections | connections read (or resumed) from the ready queue |
//! | [`REQUESTS_PER_TURN`] | 512 per connection | requests one pipelining connection has served |
//! | [`TURN_REQUESTS`] | 1 024 in all | requests of all connections together |
//! | [`HANDSHAKES_PER_TURN`] | 4 | reads that advance a TLS handshake |
//! | [`CLOSES_PER_TURN`] | 32 | connections closed (engine cleanup, deregistration, `close`) |
//! | [`EXPIRE_BUDGET`] | 1 024 + 1 024 | due timers and departed clients' releases; leases released by the turn's disconnects |
//! | [`SIGNAL_BUDGET`] | 8 192 units | signal matching, copies offered and placed, departed subscriptions reclaimed |
//! | [`STATS_STEP`] x [`STATS_STEPS_PER_TURN`] | 4 x 1 024 slots | `stats` listings, oldest first; each `info`, `q` and `sq` request takes a step |
//! | [`PUSH_WRITES_PER_TURN`] | 32 connections | connections whose signal pushes are written |
//! | [`WRITE_BYTES_PER_TURN`] | 256 KiB per connection | bytes written to one connection |
//! | [`TRIM_BUDGET`] | 4 096 entries | slab entries trimmed to give memory back after a spike |
//! | [`RESIZE_BUDGET`] | 1 024 entries | entries moved to finish a hash-table resize the traffic left halfway |
//!
//! The timer wheel bounds its own cascades (`CASCADE_STEP` in `timer.rs`), and
//! [`FANOUT_BACKLOG_BYTES`] holds publishers back while pushes wait to be written, so placing
//! copies cannot outrun writing them.
//!
//! [`EVENT_CAPACITY`]: crate::budget::EVENT_CAPACITY
//! [`RESIZE_BUDGET`]: crate::budget::RESIZE_BUDGET
//! [`READ_CHUNK`]: crate::budget::READ_CHUNK
//! [`READS_PER_TURN`]: crate::budget::READS_PER_TURN
//! [`REQUESTS_PER_TURN`]: crate::budget::REQUESTS_PER_TURN
//! [`TURN_REQUESTS`]: crate::budget::TURN_REQUESTS
//! [`HANDSHAKES_PER_TURN`]: crate::budget::HANDSHAKES_PER_TURN
//! [`CLOSES_PER_TURN`]: crate::budget::CLOSES_PER_TURN
//! [`EXPIRE_BUDGET`]: crate::budget::EXPIRE_BUDGET
//! [`SIGNAL_BUDGET`]: crate::budget::SIGNAL_BUDGET
//! [`STATS_STEP`]: crate::budget::STATS_STEP
//! [`STATS_STEPS_PER_TURN`]: crate::budget::STATS_STEPS_PER_TURN
//! [`PUSH_WRITES_PER_TURN`]: crate::budget::PUSH_WRITES_PER_TURN
//! [`WRITE_BYTES_PER_TURN`]: crate::budget::WRITE_BYTES_PER_TURN
//! [`TRIM_BUDGET`]: crate::budget::TRIM_BUDGET
//! [`FANOUT_BACKLOG_BYTES`]: crate::budget::FANOUT_BACKLOG_BYTES

mod accept;
mod bufpool;
mod conn_id;
pub(crate) mod connection;
pub(crate) mod dispatch;
mod io;
pub mod listeners;
mod monitor;
mod output;
pub mod peer;
mod queue;
mod reload;
mod report;
mod shutdown;
#[cfg(test)]
mod tests;
pub(crate) mod transport;
mod warnings;
mod words;

pub(crate) use self::output::SHARE_MIN;

use std::io as stdio;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, info, warn};
use mio::event::Event;
use mio::{Events, Interest, Poll, Waker};

use self::accept::AcceptState;
use self::conn_id::{MONITOR, SIGNALS, WAKER, id_of, token_of};
use self::dispatch::{Dispatcher, SessionLimits};
use self::io::Readiness;
use self::listeners::{Accepted, Listeners};
use self::monitor::{Answer, Monitor};
use self::peer::{Peer, PeerKey};
pub use self::reload::ReloadSources;
use self::reload::Reloader;
use self::report::Sources;
pub use self::shutdown::ShutdownHandle;
use self::transport::Transport;
use self::transport::tls::TlsConn;
pub use self::transport::tls::load_server_config as load_tls;
use self::warnings::WarnKind;
use crate::budget::EVENT_CAPACITY;
use crate::clock::{Clock, Millis};
use crate::config::{Config, Secret};
use crate::engine::signal::SubscriptionLimits;
use crate::engine::{Engine, EngineConfig};
use crate::http::{Route, Status};
use crate::systemd::{Notice, Notifier};
use crate::table::IncrementalMap;
use crate::token::TokenIssuer;

/// Caps and timeouts the loop itself enforces.
#[derive(Clone, Debug)]
struct Settings {
    shutdown_timeout_ms: u64,
    max_connections: u64,
    max_connections_per_ip: u64,
    accept_batch: usize,
    /// Never sleep in poll (`--busy-poll`).
    busy_poll: bool,
    /// Unix-socket peers admitted by user id (`--unix-allow-uid`); empty = no list.
    unix_allow_uid: Vec<u32>,
    /// Unix-socket peers admitted by primary group id (`--unix-allow-gid`); empty = no list.
    unix_allow_gid: Vec<u32>,
}

impl Settings {
    /// Whether a Unix-socket peer with these credentials may connect: every peer when neither
    /// list is set, otherwise one whose uid or gid is listed.
    fn admits_unix(&self, uid: u32, gid: u32) -> bool {
        (self.unix_allow_uid.is_empty() && self.unix_allow_gid.is_empty())
            || self.unix_allow_uid.contains(&uid)
            || self.unix_allow_gid.contains(&gid)
    }
}

/// `sd_notify` from the loop: readiness, stopping, and the watchdog (see [`crate::systemd`]).
#[derive(Debug)]
struct Notify {
    notifier: Notifier,
    /// Milliseconds between `WATCHDOG=1` notices, if the service manager watches.
    watchdog_ms: Option<u64>,
    /// When the next `WATCHDOG=1` is due: a loop deadline, so a loop that stops turning stops
    /// sending and is restarted.
    watchdog_due: Option<Millis>,
}

impl Notify {
    fn send(&self, notice: Notice) {
        if let Err(e) = self.notifier.notify(notice) {
            warn!("cannot notify the service manager ({notice:?}): {e}");
        }
    }
}

/// The server: owns the listeners, every connection and the engine.
pub struct Server {
    poll: Poll,
    events: Events,
    /// Closed (emptied) when the drain starts.
    listeners: Listeners,
    /// The first TCP listener's address, if there is one.
    local_addr: Option<SocketAddr>,
    /// The listeners' names as they were at start.
    listener_names: Vec<String>,
    /// Set when every connection must speak TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    shutdown_requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
    clock: Clock,
    /// The engine and every connection.
    dispatcher: Dispatcher<Transport>,
    /// Open connections per peer address (per uid for Unix-socket peers), kept only when
    /// `--max-connections-per-ip` is set.
    per_ip: IncrementalMap<PeerKey, u64>,
    /// Notices to the service manager, when there is one.
    notify: Option<Notify>,
    accept: AcceptState,
    /// When accepting resumes after a resource error.
    accept_retry: Option<Millis>,
    /// When the drain gives up on the connections left (`--shutdown-timeout`).
    shutdown_deadline: Option<Millis>,
    settings: Settings,
    /// Whether engine timers were left due by the last turn (spread over turns).
    engine_backlog: bool,
    draining: bool,
    /// The monitoring endpoint, when `--metrics-addr` is set.
    monitor: Option<Monitor>,
    /// Open HTTP connections the monitoring endpoint allows.
    metrics_max_connections: usize,
    /// What SIGHUP reloads, once [`Server::reload_on_sighup`] set it.
    reloader: Option<Reloader>,
}

impl Server {
    /// A server that will serve `listener` (already bound) with `config`; with `tls` (see
    /// [`load_tls`]) every connection must speak TLS.
    pub fn new(
        config: &Config,
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> stdio::Result<Server> {
        let mut listeners = Listeners::default();
        listeners.add_tcp(listener)?;
        Server::with_listeners(config, listeners, tls)
    }

    /// A server that will serve `listeners` (TCP and Unix, already bound) with `config`; with
    /// `tls` every TCP connection must speak TLS (Unix-socket connections never do).
    pub fn with_listeners(
        config: &Config,
        mut listeners: Listeners,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> stdio::Result<Server> {
        let local_addr = listeners.tcp_addr();
        let listener_names = listeners.names().map(str::to_owned).collect();
        let poll = Poll::new()?;
        listeners.register(poll.registry())?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let engine = Engine::new(engine_config(config), TokenIssuer::for_server());
        let limits = SessionLimits {
            max_input: config.max_input_buffer,
            soft_output: config.max_pending_output,
            hard_output: config.max_output_buffer,
            total_output: config.max_total_output,
            read_timeout_ms: config.read_timeout_s.saturating_mul(1000),
            write_timeout_ms: config.write_timeout_s.saturating_mul(1000),
            tls_handshake_timeout_ms: config.tls_handshake_timeout_s.saturating_mul(1000),
        };
        let auth = config.auth_token.as_ref().map(|t| t.expose().as_bytes());
        let mut dispatcher = Dispatcher::new(engine, limits, auth);
        let admin = config.admin_token.as_ref().map(|t| t.expose().as_bytes());
        dispatcher
            .replace_secrets(None, admin)
            .map_err(|why| stdio::Error::new(stdio::ErrorKind::InvalidInput, why))?;
        dispatcher.figures.start_time_s = unix_time_s();
        dispatcher.log_connections = config.log_connections;
        dispatcher.set_unix_peer_auth(config.unix_peer_auth);
        Ok(Server {
            poll,
            events: Events::with_capacity(EVENT_CAPACITY),
            listeners,
            local_addr,
            listener_names,
            tls,
            signals: None,
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            waker,
            clock: Clock::start(),
            dispatcher,
            per_ip: IncrementalMap::default(),
            notify: None,
            accept: AcceptState::default(),
            accept_retry: None,
            shutdown_deadline: None,
            settings: Settings {
                shutdown_timeout_ms: config.shutdown_timeout_s.saturating_mul(1000),
                max_connections: config.max_connections,
                max_connections_per_ip: config.max_connections_per_ip,
                accept_batch: config.accept_batch.max(1),
                busy_poll: config.busy_poll,
                unix_allow_uid: config.unix_allow_uid.clone(),
                unix_allow_gid: config.unix_allow_gid.clone(),
            },
            engine_backlog: false,
            draining: false,
            monitor: None,
            metrics_max_connections: config.metrics_max_connections,
            reloader: None,
        })
    }

    /// Serves the monitoring endpoint (`/metrics`, `/healthz`, `/readyz`) on `listener`
    /// (already bound), from this loop.
    pub fn serve_metrics(&mut self, listener: std::net::TcpListener) -> stdio::Result<()> {
        let read_timeout_ms = self.dispatcher.limits().read_timeout_ms;
        let monitor = Monitor::new(
            listener,
            self.poll.registry(),
            MONITOR,
            self.metrics_max_connections,
            read_timeout_ms,
        )?;
        self.monitor = Some(monitor);
        Ok(())
    }

    /// Where the monitoring endpoint listens, if it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.monitor.as_ref().map(Monitor::local_addr)
    }

    /// The address of the first TCP listener, if the server has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Every listener, as `ADDR` for TCP and `unix:PATH` for a Unix socket.
    pub fn listener_names(&self) -> &[String] {
        &self.listener_names
    }

    /// Tells the service manager behind `notifier` when the loop serves (`READY=1`), when it
    /// starts draining (`STOPPING=1`) and, if it set a watchdog interval, that the loop is alive
    /// (`WATCHDOG=1`, sent by the loop itself).
    pub fn set_notifier(&mut self, notifier: Notifier) {
        let watchdog_ms = notifier
            .watchdog_interval
            .map(|interval| (interval.as_millis() as u64).max(1));
        self.notify = Some(Notify {
            notifier,
            watchdog_ms,
            watchdog_due: None,
        });
    }

    /// Begins a graceful shutdown on SIGINT or SIGTERM, and reloads on SIGHUP (see
    /// [`Server::reload_on_sighup`]; without it SIGHUP is logged and ignored). Only the binary
    /// calls this; servers embedded in tests are stopped through [`Server::shutdown_handle`].
    pub fn handle_signals(&mut self) -> stdio::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Has SIGHUP read `sources` again: the TLS certificate and key, the auth token file.
    pub fn reload_on_sighup(&mut self, sources: ReloadSources) {
        if !sources.is_empty() {
            self.reloader = Some(Reloader::new(sources));
        }
    }

    /// A handle that starts a graceful shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.shutdown_requested.clone(), self.waker.clone())
    }

    /// Runs until a graceful shutdown completes (spec §16).
    pub fn run(mut self) -> stdio::Result<()> {
        // The listeners are registered: connections queue in their backlogs and the first turn
        // serves them.
        if let Some(notify) = self.notify.as_mut() {
            notify.send(Notice::Ready);
            notify.watchdog_due = notify.watchdog_ms.map(|ms| self.clock.now().plus_ms(ms));
        }
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == stdio::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let turn_start_us = self.clock.now_us();
            let now = Millis(turn_start_us / 1000);
            // A turn that handled an event or was polled without sleeping did work.
            let worked = !self.events.is_empty() || timeout == Some(std::time::Duration::ZERO);
            self.take_events();
            if self.shutdown_requested.load(Ordering::Acquire) {
                self.begin_shutdown(now);
            }
            if self.reloader.is_some() {
                self.apply_reload();
            }
            self.run_timers(now);
            self.dispatcher.serve_ready(now);
            self.reap();
            self.dispatcher.continue_stats(now);
            self.accept_connections(now);
            self.serve_monitor(now);
            self.dispatcher.write_and_close(now);
            self.reap();
            // Once a crowd of connections has left, their slots go back a budget per turn.
            self.dispatcher.trim();
            if worked {
                let took = self.clock.now_us().saturating_sub(turn_start_us);
                self.dispatcher.figures.turns.observe_us(took);
            }
            if self.draining && self.dispatcher.connections().is_empty() {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Zero while work is queued (always, with `--busy-poll`); otherwise until the nearest
    /// deadline, or forever.
    fn poll_timeout(&self) -> Option<std::time::Duration> {
        let busy = self.settings.busy_poll
            || self.engine_backlog
            || self.dispatcher.is_busy()
            || self.accept.can_accept_now(self.listeners.any_pending())
            || self.monitor.as_ref().is_some_and(Monitor::is_busy);
        if busy {
            return Some(std::time::Duration::ZERO);
        }
        let watchdog = self.notify.as_ref().and_then(|notify| notify.watchdog_due);
        let monitor = self.monitor.as_ref().and_then(Monitor::next_deadline);
        let loop_deadline = Millis::earliest(
            Millis::earliest(self.accept_retry, self.shutdown_deadline),
            Millis::earliest(watchdog, monitor),
        );
        Millis::earliest(self.dispatcher.next_deadline(), loop_deadline)
            .map(|at| self.clock.until(at))
    }

    fn take_events(&mut self) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                SIGNALS => self.on_signal(),
                WAKER => {} // the shutdown flag is checked after every poll
                MONITOR => {
                    if let Some(monitor) = self.monitor.as_mut() {
                        monitor.on_listener_event();
                    }
                }
                token => match id_of(token) {
                    Some(id) => self.dispatcher.handle_readiness(id, readiness(event)),
                    None => match (Monitor::owns(token), self.monitor.as_mut()) {
                        (Some(slot), Some(monitor)) => monitor.on_event(slot),
                        _ => {
                            if !self.listeners.on_event(token) {
                                debug!("event for unknown token {token:?}");
                            }
                        }
                    },
                },
            }
        }
        self.events = events;
    }

    fn on_signal(&mut self) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        for signal in signals.pending() {
            let name = match signal {
                SIGHUP => "SIGHUP",
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "an unexpected signal",
            };
            if signal != SIGHUP {
                info!("received {name}, shutting down");
                self.shutdown_requested.store(true, Ordering::Release);
            } else if let Some(reloader) = self.reloader.as_mut() {
                info!("received {name}, reloading the TLS certificate and the token files");
                reloader.request(&self.waker);
            } else {
                info!("received {name}: nothing to reload (no TLS, no token file)");
            }
        }
    }

    /// Takes a finished reload: what was read replaces the old setting, what failed keeps it.
    fn apply_reload(&mut self) {
        let Some(reloaded) = self
            .reloader
            .as_mut()
            .and_then(|reloader| reloader.poll(&self.waker))
        else {
            return;
        };
        match reloaded.tls {
            Some(Ok(tls)) => {
                self.tls = Some(tls);
                info!("reload: new TLS handshakes use the new certificate");
            }
            Some(Err(why)) => warn!("reload: keeping the old TLS certificate: {why}"),
            None => {}
        }
        let auth = read_secret("auth", reloaded.auth_token);
        let admin = read_secret("admin", reloaded.admin_token);
        let replaced = self.dispatcher.replace_secrets(
            auth.as_ref().map(|s| s.expose().as_bytes()),
            admin.as_ref().map(|s| s.expose().as_bytes()),
        );
        match replaced {
            Ok(()) => {
                if auth.is_some() {
                    info!("reload: new auth requests need the new token");
                }
                if admin.is_some() {
                    info!("reload: new admin auth requests need the new admin token");
                }
            }
            Err(why) => warn!("reload: keeping the old auth and admin tokens: {why}"),
        }
    }

    fn run_timers(&mut self, now: Millis) {
        self.engine_backlog = self.dispatcher.start_turn(now);
        self.dispatcher.expire_io(now);
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept.retry_due();
        }
        if self.shutdown_deadline.is_some_and(|at| at <= now) {
            self.shutdown_deadline = None;
            info!(
                "shutdown timeout: closing {} connection(s)",
                self.dispatcher.connections().len()
            );
            self.dispatcher.force_close_all(now);
        }
        if let Some(notify) = self.notify.as_mut() {
            if let (Some(due), Some(ms)) = (notify.watchdog_due, notify.watchdog_ms) {
                if due <= now {
                    notify.send(Notice::Watchdog);
                    notify.watchdog_due = Some(now.plus_ms(ms));
                }
            }
        }
        self.reap();
    }

    /// Releases the sockets of connections the dispatcher removed.
    fn reap(&mut self) {
        let registry = self.poll.registry();
        let per_ip = self.settings.max_connections_per_ip > 0;
        for mut conn in self.dispatcher.take_removed() {
            if let Err(e) = registry.deregister(conn.stream.socket()) {
                debug!("conn {}: deregister failed: {e}", conn.serial);
            }
            if per_ip {
                forget_ip(&mut self.per_ip, conn.peer.key());
            }
        }
    }

    fn accept_connections(&mut self, now: Millis) {
        let mut budget = self.settings.accept_batch;
        while budget > 0 && self.accept.can_accept_now(self.listeners.any_pending()) {
            match self.listeners.accept() {
                None => return,
                Some(Ok(accepted)) => {
                    budget -= 1;
                    self.accept.succeeded();
                    self.admit(accepted, now);
                }
                Some(Err(e)) => {
                    if let Some(retry_in) = self.accept.failed(&e, now) {
                        self.accept_retry = Some(now.plus_ms(retry_in));
                    }
                }
            }
        }
    }

    /// Takes a new connection into the loop, or closes it at once (no bytes) if a cap or the
    /// Unix allow-lists refuse it.
    fn admit(&mut self, accepted: Accepted, now: Millis) {
        let (mut transport, peer) = match accepted {
            Accepted::Tcp(stream, addr) => (Transport::Plain(stream), Peer::Tcp(addr)),
            Accepted::Unix(stream, Some(peer)) => (Transport::Unix(stream), peer),
            Accepted::Unix(_, None) => {
                self.refuse_unix(now, format_args!("unix peer: refused, credentials unknown"));
                return;
            }
        };
        if let Peer::Unix { uid, gid, .. } = peer {
            if !self.settings.admits_unix(uid, gid) {
                self.refuse_unix(
                    now,
                    format_args!("{peer}: refused, not in --unix-allow-uid/--unix-allow-gid"),
                );
                return;
            }
        }
        let caps = &self.settings;
        if caps.max_connections > 0
            && self.dispatcher.connections().len() as u64 >= caps.max_connections
        {
            self.dispatcher.figures.refused_max_connections += 1;
            self.warn_refused(
                now,
                WarnKind::MaxConnections,
                format_args!("{peer}: refused, --max-connections reached"),
            );
            return;
        }
        if caps.max_connections_per_ip > 0 {
            let open = self.per_ip.get(&peer.key()).copied().unwrap_or(0);
            if open >= caps.max_connections_per_ip {
                self.dispatcher.figures.refused_per_ip += 1;
                self.warn_refused(
                    now,
                    WarnKind::MaxConnectionsPerIp,
                    format_args!("{peer}: refused, --max-connections-per-ip reached"),
                );
                return;
            }
            self.per_ip.insert(peer.key(), open + 1);
        }
        if let Transport::Plain(stream) = &transport {
            if let Err(e) = stream.set_nodelay(true) {
                debug!("{peer}: set_nodelay failed: {e}");
            }
        }
        let id = self.dispatcher.next_id();
        if let Err(e) = self.poll.registry().register(
            transport.socket(),
            token_of(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.warn_refused(
                now,
                WarnKind::Refused,
                format_args!("{peer}: cannot register connection: {e}"),
            );
            self.forget_peer(peer.key());
            return;
        }
        // TLS is for TCP only: a Unix-socket peer is on this host.
        let transport = match (transport, &self.tls) {
            (Transport::Plain(stream), Some(config)) => {
                match TlsConn::new(stream, config.clone()) {
                    Ok(tls) => Transport::Tls(Box::new(tls)),
                    Err(e) => {
                        self.warn_refused(
                            now,
                            WarnKind::Refused,
                            format_args!("{peer}: cannot start TLS: {e}"),
                        );
                        self.forget_peer(peer.key());
                        return;
                    }
                }
            }
            (transport, _) => transport,
        };
        self.dispatcher.figures.accepted += 1;
        self.dispatcher.open(id, peer, transport, now);
    }

    /// A Unix-socket peer the allow-lists refuse: counted, and logged like other refusals.
    fn refuse_unix(&mut self, now: Millis, why: std::fmt::Arguments<'_>) {
        self.dispatcher.count_refused_unix_peer();
        self.warn_refused(now, WarnKind::UnixPeer, why);
    }

    /// Logs why a connection was refused, rate-limited: a peer can arrange for every one of its
    /// connections to be refused.
    fn warn_refused(&mut self, now: Millis, kind: WarnKind, why: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.dispatcher.admit_warning(kind, now) {
            warn!("{why}{suppressed}");
        }
    }

    fn forget_peer(&mut self, key: PeerKey) {
        if self.settings.max_connections_per_ip > 0 {
            forget_ip(&mut self.per_ip, key);
        }
    }

    /// Serves the monitoring endpoint's turn.
    fn serve_monitor(&mut self, now: Millis) {
        let Some(monitor) = self.monitor.as_mut() else {
            return;
        };
        let http = monitor.counters();
        let sources = self.dispatcher.sources(now, http);
        let draining = self.draining;
        monitor.turn(now, self.poll.registry(), |route| {
            answer(route, draining, &sources)
        });
    }

    fn begin_shutdown(&mut self, now: Millis) {
        if self.draining {
            return;
        }
        self.draining = true;
        info!(
            "draining: listener closed, {} connection(s) open",
            self.dispatcher.connections().len()
        );
        if let Some(notify) = self.notify.as_ref() {
            notify.send(Notice::Stopping);
        }
        self.listeners.close(self.poll.registry());
        self.dispatcher.begin_drain(now);
        if self.settings.shutdown_timeout_ms > 0 {
            self.shutdown_deadline = Some(now.plus_ms(self.settings.shutdown_timeout_ms));
        }
    }
}

/// The monitoring endpoint's answer to `route`.
fn answer<T>(route: Route, draining: bool, sources: &Sources<'_, T>) -> Answer {
    let text = |status, body: &str| Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.as_bytes().to_vec(),
    };
    match route {
        Route::Healthz => text(Status::Ok, "ok\n"),
        Route::Readyz if draining => text(Status::Unavailable, "draining\n"),
        Route::Readyz => text(Status::Ok, "ready\n"),
        Route::Metrics => Answer {
            status: Status::Ok,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: sources.exposition(),
        },
    }
}

/// What a readiness event says about a connection's socket.
fn readiness(event: &Event) -> Readiness {
    Readiness {
        readable: event.is_readable() || event.is_read_closed() || event.is_error(),
        read_closed: event.is_read_closed() || event.is_error(),
        writable: event.is_writable() || event.is_write_closed(),
    }
}

/// Seconds since the Unix epoch, now: when the server started, for
/// `dflockd_start_time_seconds`.
/// The secret a reload read, if it read one; one it could not read keeps the old setting, and
/// the log says why (`which` names it).
fn read_secret(which: &str, reloaded: Option<Result<Secret, String>>) -> Option<Secret> {
    match reloaded? {
        Ok(secret) => Some(secret),
        Err(why) => {
            warn!("reload: keeping the old {which} token: {why}");
            None
        }
    }
}

fn unix_time_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One connection of `key` (an address, or a Unix peer's uid) fewer.
fn forget_ip(per_ip: &mut IncrementalMap<PeerKey, u64>, key: PeerKey) {
    if let Some(open) = per_ip.get_mut(&key) {
        *open -= 1;
        if *open == 0 {
            per_ip.remove(&key);
        }
    }
}

/// Engine settings from the server configuration.
fn engine_config(config: &Config) -> EngineConfig {
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
        lock_delay_ms: config.lock_delay_ms,
        lock_events: config.lock_events,
    }
}
