//! Scenarios of the dispatcher and its connections over in-memory streams with an explicit clock:
//! the event loop's turn without sockets, so every step and every deadline is deterministic.

use std::net::SocketAddr;

use super::connection::{AUTH_FAILURE_DELAY_MS, CloseReason, CloseStage, Connection, Phase};
use super::dispatch::{Dispatcher, SessionLimits};
use super::io::Readiness;
use super::transport::memory::MemoryStream;
use crate::budget::{STATS_STEP, STATS_STEPS_PER_TURN};
use crate::clock::Millis;
use crate::config::Config;
use crate::engine::{ClientId, Engine};
use crate::token::TokenIssuer;

/// The event loop over in-memory streams.
struct Harness {
    dispatcher: Dispatcher<MemoryStream>,
    now: Millis,
    /// Connections removed, with what their peer received.
    removed: Vec<Connection<MemoryStream>>,
}

const READABLE: Readiness = Readiness {
    readable: true,
    read_closed: false,
    writable: false,
};

impl Harness {
    /// Default limits but for a soft output limit of `soft_output` bytes.
    fn new(soft_output: usize, auth: Option<&[u8]>) -> Harness {
        let config = Config::default();
        let engine = Engine::new(super::engine_config(&config), TokenIssuer::deterministic(7));
        let limits = SessionLimits {
            max_input: config.max_input_buffer,
            soft_output,
            hard_output: config.max_output_buffer,
            total_output: config.max_total_output,
            read_timeout_ms: 60_000,
            write_timeout_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
        };
        Harness {
            dispatcher: Dispatcher::new(engine, limits, auth),
            now: Millis(1_000),
            removed: Vec::new(),
        }
    }

    fn connect(&mut self) -> ClientId {
        let id = self.dispatcher.next_id();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + id.index as u16));
        self.dispatcher
            .open(id, peer.into(), MemoryStream::default(), self.now);
        id
    }

    fn conn(&mut self, id: ClientId) -> &mut Connection<MemoryStream> {
        self.dispatcher.conns.get(id).expect("connection open")
    }

    fn is_open(&self, id: ClientId) -> bool {
        self.dispatcher.connections().get_ref(id).is_some()
    }

    /// The peer sends `bytes`: they land in the kernel buffer, and a readable edge follows.
    fn send(&mut self, id: ClientId, bytes: &[u8]) {
        self.conn(id).stream.inbound.extend(bytes);
        self.dispatcher.handle_readiness(id, READABLE);
    }

    /// The peer shuts down its sending side.
    fn send_fin(&mut self, id: ClientId) {
        self.conn(id).stream.peer_fin = true;
        let closed = Readiness {
            read_closed: true,
            ..READABLE
        };
        self.dispatcher.handle_readiness(id, closed);
    }

    /// The peer lets the socket take `n` more bytes: a writable edge.
    fn open_window(&mut self, id: ClientId, n: usize) {
        let stream = &mut self.conn(id).stream;
        stream.window = stream.window.saturating_add(n);
        let writable = Readiness {
            writable: true,
            ..Readiness::default()
        };
        self.dispatcher.handle_readiness(id, writable);
    }

    /// One turn of the loop, at the current time.
    fn turn(&mut self) {
        let now = self.now;
        let d = &mut self.dispatcher;
        d.start_turn(now);
        d.expire_io(now);
        d.serve_ready(now);
        d.continue_stats(now);
        d.write_and_close(now);
        self.removed.extend(d.take_removed());
    }

    /// Turns until the loop would sleep.
    fn settle(&mut self) {
        for _ in 0..1_000 {
            self.turn();
            if !self.dispatcher.is_busy() {
                return;
            }
        }
        panic!("the loop never went quiet");
    }

    /// Moves the clock on by `ms` and runs a turn.
    fn sleep(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.turn();
    }

    /// Takes what the peer of `id` received so far (open or removed).
    fn received(&mut self, id: ClientId) -> String {
        let stream = match self.dispatcher.conns.get(id) {
            Some(conn) => &mut conn.stream,
            None => {
                &mut self
                    .removed
                    .iter_mut()
                    .find(|c| c.id == id)
                    .expect("a removed connection")
                    .stream
            }
        };
        String::from_utf8(std::mem::take(&mut stream.written)).expect("text")
    }

    fn removed(&self, id: ClientId) -> &Connection<MemoryStream> {
        self.removed
            .iter()
            .find(|c| c.id == id)
            .expect("a removed connection")
    }
}

fn pings(n: usize) -> Vec<u8> {
    b"ping\n\n\n".repeat(n)
}

#[test]
fn output_backpressure_pauses_requests_and_draining_resumes_them() {
    let mut h = Harness::new(64, None);
    let id = h.connect();
    h.conn(id).stream.window = 0;
    h.send(id, &pings(100));
    h.settle();
    // "ok\n" is 3 bytes: processing stops once 64 bytes wait, the rest stays in the input.
    let conn = h.conn(id);
    assert!(conn.is_paused(), "not paused at the soft limit");
    assert_eq!(conn.output_len(), 66);
    assert_eq!(conn.buffered_input(), (100 - 22) * 7);
    assert_eq!(
        conn.read_deadline(60_000),
        None,
        "a paused peer is not timed out"
    );
    // The peer reads everything it is sent: the output drains below half the soft limit,
    // processing resumes, and every request is answered, in order.
    h.open_window(id, usize::MAX);
    h.settle();
    assert!(!h.conn(id).is_paused());
    assert_eq!(h.conn(id).buffered_input(), 0);
    assert_eq!(h.received(id), "ok\n".repeat(100));
}

#[test]
fn pushes_wait_behind_an_unfinished_stats_line() {
    let mut h = Harness::new(1024, None);
    // More locks than one step of a listing covers, so that `stats` takes several steps.
    let holder = h.connect();
    let locks: Vec<u8> = (0..STATS_STEP + 100)
        .flat_map(|i| format!("l\nk{i}\n0\n").into_bytes())
        .collect();
    h.send(holder, &locks);
    h.settle();
    let subscriber = h.connect();
    h.send(subscriber, b"listen\nnews\n\n");
    h.settle();
    assert_eq!(h.received(subscriber), "ok\n");
    // The subscriber stops reading while its listing is written: the first step fills its
    // output past the soft limit, so the listing parks with its line unfinished.
    h.conn(subscriber).stream.window = 0;
    h.send(subscriber, b"stats\n\n\n");
    h.settle();
    assert_eq!(h.conn(subscriber).phase(), Phase::Waiting);
    let publisher = h.connect();
    h.send(publisher, b"signal\nnews\nhello\n");
    h.settle();
    assert_eq!(h.received(publisher), "ok 1\n");
    let conn = h.conn(subscriber);
    assert_eq!(conn.held_len(), b"sig news hello\n".len(), "push not held");
    let mut output = Vec::new();
    conn.copy_output(usize::MAX, &mut output);
    assert!(!output.ends_with(b"\n"), "the listing's line is unfinished");
    // Once the subscriber reads, the listing finishes and the push follows its line.
    h.open_window(subscriber, usize::MAX);
    h.settle();
    let received = h.received(subscriber);
    let lines: Vec<&str> = received.lines().collect();
    assert_eq!(lines.len(), 2, "{received}");
    assert!(lines[0].starts_with("ok {") && lines[0].ends_with('}'));
    assert_eq!(lines[1], "sig news hello");
    assert_eq!(h.conn(subscriber).phase(), Phase::Open);
}

#[test]
fn a_failed_authentication_closes_after_the_delay() {
    let mut h = Harness::new(1 << 20, Some(b"secret"));
    let id = h.connect();
    h.send(id, b"auth\nwrong\n\n");
    h.turn();
    assert_eq!(h.received(id), "error_auth\n");
    let Phase::Closing { reason, stage } = h.conn(id).phase() else {
        panic!("not closing");
    };
    assert_eq!(reason, CloseReason::AuthFailed);
    assert!(matches!(stage, CloseStage::Flushing { .. }));
    assert!(!h.conn(id).stream.fin_sent, "FIN before the delay");
    h.sleep(AUTH_FAILURE_DELAY_MS - 1);
    assert!(!h.conn(id).stream.fin_sent, "FIN before the delay");
    h.sleep(1);
    assert!(h.conn(id).stream.fin_sent, "no FIN after the delay");
    assert!(matches!(
        h.conn(id).phase(),
        Phase::Closing {
            stage: CloseStage::Lingering { .. },
            ..
        }
    ));
    // The peer's EOF ends the lingering close.
    h.send_fin(id);
    h.turn();
    assert!(!h.is_open(id));
}

#[test]
fn a_half_close_still_gets_the_pending_replies() {
    let mut h = Harness::new(1 << 20, None);
    let id = h.connect();
    h.conn(id).stream.window = 5;
    h.send(id, &pings(3));
    h.send_fin(id);
    h.settle();
    // Answered but not all written: the connection stays until its output is out.
    assert_eq!(h.received(id), "ok\nok");
    assert!(matches!(
        h.conn(id).phase(),
        Phase::Closing {
            reason: CloseReason::PeerFinished,
            stage: CloseStage::Flushing { .. }
        }
    ));
    assert!(!h.conn(id).stream.fin_sent);
    h.open_window(id, usize::MAX);
    h.settle();
    // The peer already finished, so there is nothing to linger for.
    assert!(!h.is_open(id));
    assert_eq!(h.received(id), "\nok\n");
    assert!(h.removed(id).stream.fin_sent);
}

#[test]
fn a_half_close_cancels_a_waiting_acquire() {
    let mut h = Harness::new(1 << 20, None);
    let holder = h.connect();
    h.send(holder, b"l\nk\n0\n");
    h.settle();
    assert!(h.received(holder).starts_with("ok "));
    let waiter = h.connect();
    h.send(waiter, b"l\nk\n30\n");
    h.settle();
    assert_eq!(h.conn(waiter).phase(), Phase::Waiting);
    h.send_fin(waiter);
    h.settle();
    assert!(!h.is_open(waiter));
    assert_eq!(h.received(waiter), "");
}

#[test]
fn the_drain_cancels_waits_and_refuses_later_requests() {
    let mut h = Harness::new(1 << 20, None);
    let holder = h.connect();
    h.send(holder, b"l\nk\n0\n");
    h.settle();
    h.received(holder);
    let waiter = h.connect();
    h.send(waiter, b"l\nk\n30\n");
    h.settle();
    h.dispatcher.begin_drain(h.now);
    h.settle();
    assert_eq!(h.received(waiter), "error\n");
    h.send(waiter, &pings(1));
    h.settle();
    assert_eq!(h.received(waiter), "error_draining\n");
    assert_eq!(
        h.conn(waiter).close_reason(),
        Some(CloseReason::Draining),
        "not closing after error_draining"
    );
    assert!(h.conn(waiter).stream.fin_sent);
    // The holder keeps its lock until it, too, sends a request.
    assert_eq!(h.conn(holder).phase(), Phase::Open);
}

#[test]
fn pipelined_info_and_queue_requests_share_the_turns_listing_steps() {
    let mut h = Harness::new(1 << 20, None);
    let id = h.connect();
    let requests = STATS_STEPS_PER_TURN * 3;
    let pipelined: Vec<u8> = (0..requests)
        .flat_map(|i| {
            if i % 2 == 0 {
                b"info\n_\n\n".to_vec()
            } else {
                b"q\nk\n\n".to_vec()
            }
        })
        .collect();
    h.send(id, &pipelined);
    h.turn();
    // One turn answers only as many as it has listing steps; the rest waits in the input.
    let first = h.received(id);
    assert_eq!(first.lines().count(), STATS_STEPS_PER_TURN, "{first}");
    h.settle();
    let rest = h.received(id);
    assert_eq!(rest.lines().count(), requests - STATS_STEPS_PER_TURN);
    assert!(
        first
            .lines()
            .chain(rest.lines())
            .all(|line| line.starts_with("ok ")),
        "{first}{rest}"
    );
}
