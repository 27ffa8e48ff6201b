//! The monitoring endpoint (`--metrics-addr`): a TCP listener and its HTTP connections, driven
//! by the same event loop as the lock protocol and kept apart from it.
//!
//! HTTP connections have their own table, their own cap (`--metrics-max-connections`), their
//! own per-turn budget and the same read timeout as protocol connections, so a scraper, a
//! slowloris or a flood of requests on this port costs lock clients at most one budget per
//! turn. Requests are read by [`crate::http`]; the answers (the metrics text, health,
//! readiness) come from the server through a callback, so this module knows nothing of what
//! it serves.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::accept::AcceptState;
use crate::budget::{HTTP_ACCEPTS_PER_TURN, HTTP_REQUESTS_PER_TURN};
use crate::clock::Millis;
use crate::http::{self, MAX_HEAD, Parsed, Route, Status};
use crate::slots::Slots;
use crate::timer::{TimerId, TimerWheel};

/// Tokens of HTTP connections start here: above the reserved tokens, below every protocol
/// connection's (whose generation fills the high 32 bits).
const TOKEN_BASE: usize = 1 << 20;

/// Unsent response bytes past which a connection's further requests wait: a client that
/// pipelines requests and never reads cannot make the server hold more than this for it.
const MAX_PENDING_OUTPUT: usize = 256 * 1024;

/// What the server answers to a routed request.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: Status,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body (sent for GET, left out for HEAD).
    pub body: Vec<u8>,
}

/// Counters the endpoint keeps about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonitorCounters {
    /// HTTP requests answered.
    pub requests: u64,
    /// HTTP connections refused at the cap.
    pub refused: u64,
}

/// One HTTP connection.
#[derive(Debug)]
struct HttpConn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Written bytes at the front of `output`.
    sent: usize,
    /// Close once `output` is written (the client asked, or its input cannot be read further).
    closing: bool,
    /// The client sent FIN: what it sent is answered, then the connection closes.
    eof: bool,
    /// On the ready list.
    queued: bool,
    /// The idle timer and when the connection times out.
    timer: TimerId,
    deadline: Millis,
}

/// The listener and its connections.
#[derive(Debug)]
pub struct Monitor {
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Slots<HttpConn>,
    timers: TimerWheel<usize>,
    /// Connections with readiness or unread input.
    ready: Vec<usize>,
    acceptable: bool,
    /// Back-off after accept errors (descriptor exhaustion), as for the protocol listener.
    accepting: AcceptState,
    /// When accepting resumes after such an error.
    accept_retry: Option<Millis>,
    max_connections: usize,
    read_timeout_ms: u64,
    counters: MonitorCounters,
}

impl Monitor {
    /// An endpoint on `listener` (bound, non-blocking), registered under `token`.
    pub fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        token: Token,
        max_connections: usize,
        read_timeout_ms: u64,
    ) -> io::Result<Monitor> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Monitor {
            listener,
            local_addr,
            conns: Slots::new(),
            timers: TimerWheel::new(),
            ready: Vec::new(),
            acceptable: true,
            accepting: AcceptState::default(),
            accept_retry: None,
            max_connections,
            read_timeout_ms,
            counters: MonitorCounters::default(),
        })
    }

    /// Where the endpoint listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint's own counters.
    pub fn counters(&self) -> MonitorCounters {
        self.counters
    }

    /// The HTTP connection a token names, if it is one of this endpoint's.
    pub fn owns(token: Token) -> Option<usize> {
        (TOKEN_BASE..1 << 32)
            .contains(&token.0)
            .then(|| token.0 - TOKEN_BASE)
    }

    /// The listener has connections to accept.
    pub fn on_listener_event(&mut self) {
        self.acceptable = true;
    }

    /// A readiness event for connection `slot`.
    pub fn on_event(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            queue(&mut self.ready, conn, slot);
        }
    }

    /// Whether work is left for the next turn (the poll must not sleep). A listener that may
    /// hold connections counts at the cap too: `accept` refuses those by closing them, and the
    /// edge-triggered listener reports no event for connections already queued, so a sleeping
    /// loop would leave them hanging until some unrelated event.
    pub fn is_busy(&self) -> bool {
        !self.ready.is_empty() || self.accepting.can_accept_now(self.acceptable)
    }

    /// The nearest idle deadline, or the end of an accept back-off.
    pub fn next_deadline(&self) -> Option<Millis> {
        Millis::earliest(self.timers.next_deadline(), self.accept_retry)
    }

    /// One turn: closes idle connections, accepts, and serves ready connections, answering
    /// each routed request with `answer`. Bounded by [`HTTP_ACCEPTS_PER_TURN`] and
    /// [`HTTP_REQUESTS_PER_TURN`].
    pub fn turn(
        &mut self,
        now: Millis,
        registry: &Registry,
        mut answer: impl FnMut(Route) -> Answer,
    ) {
        self.expire(now, registry);
        self.accept(now, registry);
        let mut budget = HTTP_REQUESTS_PER_TURN;
        let ready = std::mem::take(&mut self.ready);
        for slot in ready {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            conn.queued = false;
            match serve(conn, &mut budget, &mut answer, &mut self.counters) {
                Ok(_) if conn.closing && conn.sent == conn.output.len() => {
                    self.close(slot, registry)
                }
                Ok(answered) => {
                    // The timeout bounds the wait for a complete request, however slowly its
                    // bytes trickle in: only an answered request restarts it.
                    if answered > 0 {
                        conn.deadline = now.plus_ms(self.read_timeout_ms);
                    }
                    if budget == 0 && has_request(conn) {
                        queue(&mut self.ready, conn, slot);
                    }
                }
                Err(e) => {
                    debug!("http {}: {e}", slot);
                    self.close(slot, registry);
                }
            }
        }
    }

    /// Closes connections idle past the read timeout.
    fn expire(&mut self, now: Millis, registry: &Registry) {
        while let Some((_, slot)) = self.timers.poll(now) {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.deadline <= now {
                self.close(slot, registry);
            } else {
                conn.timer = self.timers.insert(conn.deadline, slot);
            }
        }
    }

    fn accept(&mut self, now: Millis, registry: &Registry) {
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accepting.retry_due();
        }
        for _ in 0..HTTP_ACCEPTS_PER_TURN {
            if !self.accepting.can_accept_now(self.acceptable) {
                return;
            }
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.acceptable = false;
                    } else if let Some(delay) = self.accepting.failed(&e, now) {
                        self.accept_retry = Some(now.plus_ms(delay));
                    }
                    return;
                }
            };
            self.accepting.succeeded();
            if self.conns.len() >= self.max_connections {
                // Dropping the stream closes it; the client sees the connection end.
                self.counters.refused += 1;
                debug!("http {peer}: refused, --metrics-max-connections reached");
                continue;
            }
            let slot = self.conns.vacant_key();
            let token = Token(TOKEN_BASE + slot);
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                debug!("http {peer}: cannot register: {e}");
                continue;
            }
            let deadline = now.plus_ms(self.read_timeout_ms);
            let timer = self.timers.insert(deadline, slot);
            self.conns.insert(HttpConn {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                closing: false,
                eof: false,
                queued: false,
                timer,
                deadline,
            });
        }
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut conn) = self.conns.try_remove(slot) {
            self.timers.cancel(conn.timer);
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// Puts `conn` on the ready list unless it is there.
fn queue(ready: &mut Vec<usize>, conn: &mut HttpConn, slot: usize) {
    if !conn.queued {
        conn.queued = true;
        ready.push(slot);
    }
}

/// Whether `conn`'s input holds a complete request head.
fn has_request(conn: &HttpConn) -> bool {
    !conn.closing && matches!(http::parse(&conn.input), Parsed::Request(..))
}

/// Reads what the socket has, answers the complete requests within `budget`, and writes.
/// Returns the requests answered.
fn serve(
    conn: &mut HttpConn,
    budget: &mut usize,
    answer: &mut impl FnMut(Route) -> Answer,
    counters: &mut MonitorCounters,
) -> io::Result<usize> {
    read(conn)?;
    let mut answered = 0;
    while *budget > 0 && !conn.closing && conn.output.len() - conn.sent < MAX_PENDING_OUTPUT {
        let (request, len) = match http::parse(&conn.input) {
            Parsed::Partial => {
                // A partial head after FIN will never complete.
                conn.closing |= conn.eof;
                break;
            }
            Parsed::Request(request, len) => (request, len),
        };
        *budget -= 1;
        answered += 1;
        counters.requests += 1;
        conn.input.drain(..len);
        match request.target {
            Ok(route) => {
                let reply = answer(route);
                http::write_response(
                    &mut conn.output,
                    reply.status,
                    reply.content_type,
                    &reply.body,
                    request.head_only,
                    request.keep_alive,
                );
            }
            Err(status) => http::write_error(&mut conn.output, &request, status),
        }
        conn.closing = !request.keep_alive;
    }
    write(conn)?;
    Ok(answered)
}

/// Reads until the socket would block, keeping at most one head's worth of unread input.
fn read(conn: &mut HttpConn) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    while conn.input.len() <= MAX_HEAD && !conn.closing && !conn.eof {
        match conn.stream.read(&mut chunk) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes pending output until done or the socket would block.
fn write(conn: &mut HttpConn) -> io::Result<()> {
    while conn.sent < conn.output.len() {
        match conn.stream.write(&conn.output[conn.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.output.clear();
    conn.sent = 0;
    Ok(())
}
