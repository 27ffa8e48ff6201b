//! The `session` target: virtual clients' byte streams through the socket-free request path the
//! server uses ([`Dispatcher`]'s request entry points over in-memory connections), driven turn
//! by turn the way the event loop drives it.
//!
//! The harness plays both the event loop and the peers. A peer composes requests (from protocol
//! words, random bytes, CRLF variants and over-long lines), hands them to its kernel buffer in
//! arbitrary pieces, reads the server's output at its own pace (or not at all) and may half-close
//! or reset. The loop's turn is mirrored step for step: run timers (engine, read deadlines), serve
//! the ready queue with at most one read per connection, continue `stats` listings, write
//! responses and a bounded number of push connections, then finish closes, which may free locks
//! for others. Time only jumps while the loop would sleep (nothing ready, nothing to write).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::frame::{Naive, naive_frame};
use super::lines::{Line, Reply, parse_line};
use super::{Input, engine_config};
use crate::budget::{PUSH_WRITES_PER_TURN, READ_CHUNK};
use crate::clock::Millis;
use crate::engine::{ClientId, Engine, EngineConfig};
use crate::protocol::events::is_reserved_channel;
use crate::protocol::frame::Frame;
use crate::protocol::request::parse;
use crate::protocol::request::{Acquire, Auth, CheckTarget, Enqueue, Renew};
use crate::protocol::{MAX_LINE, MAX_PAYLOAD_LINE, Namespace, Request, Response};
use crate::server::connection::{CloseReason, Phase};
use crate::server::dispatch::{Dispatcher, SessionLimits};
use crate::server::transport::memory::MemoryStream;
use crate::token::{TOKEN_LEN, TokenIssuer};

/// Peers taking part at once.
mod peer;

use self::peer::{Peer, Rules};

const PEERS: usize = 3;
/// The shared secret when authentication is on.
const SECRET: &[u8] = b"s3cret";
/// The admin secret when an admin token is configured.
const ADMIN_SECRET: &[u8] = b"adm1n";
/// Further ahead than any deadline the vocabulary can set (9.2e12 ms), yet small enough that the
/// final jumps stay far inside the timer wheels' range (2^54 ms).
const FAR_MS: u64 = 1 << 44;
/// Busy turns in a row without progress after which the loop is declared stuck.
const QUIET_TURNS: usize = 64;
/// Turns after which a loop that keeps making progress is declared stuck all the same (far more
/// than the requests any input can send).
const SETTLE_TURNS: usize = 1 << 20;

const COMMANDS: [&[u8]; 26] = [
    b"l",
    b"r",
    b"n",
    b"e",
    b"w",
    b"sl",
    b"sr",
    b"sn",
    b"se",
    b"sw",
    b"stats",
    b"ping",
    b"auth",
    b"listen",
    b"unlisten",
    b"signal",
    b"check",
    b"scheck",
    b"q",
    b"sq",
    b"evict",
    b"sevict",
    b"L",
    b"l ",
    b"",
    b"x",
];
/// `$lock.>` and `$lock.*.a` receive lock events (`--lock-events`), which `>` and `a.*` must not.
const KEYS: [&[u8]; 10] = [
    b"a",
    b"b",
    b"a.b",
    b"a.*",
    b"a.>",
    b">",
    b"k k",
    b"",
    b"$lock.>",
    b"$lock.*.a",
];
const FIELDS: [&[u8]; 16] = [
    b"0",
    b"1",
    b"2",
    b"5",
    b"60",
    b"-1",
    b"+3",
    b"9223372036",
    b"9223372037",
    b"x",
    b"g",
    b"p",
    b"hello world",
    SECRET,
    ADMIN_SECRET,
    b"*",
];
const ENDINGS: [&[u8]; 3] = [b"\n", b"\r\n", b"\r\r\n"];
const SEPARATORS: [&[u8]; 3] = [b" ", b"\t", b"  "];
/// Line lengths at and around the limits.
const LONG_LINES: [usize; 5] = [
    MAX_LINE,
    MAX_LINE + 1,
    // A payload long enough to be shared between outputs rather than copied.
    crate::server::SHARE_MIN,
    MAX_PAYLOAD_LINE,
    MAX_PAYLOAD_LINE + 1,
];

/// The event loop and its peers.
struct World {
    dispatcher: Dispatcher<MemoryStream>,
    peers: [Option<Peer>; PEERS],
    rules: Rules,
    read_timeout_ms: u64,
    now: Millis,
    /// Engine timers left due by the last turn.
    backlog: bool,
    /// Sessions whose peer read more, to write this turn.
    to_flush: Vec<ClientId>,
    /// Tokens seen in grants, reused in later requests.
    tokens: Vec<[u8; TOKEN_LEN]>,
}

fn slot_of(peers: &[Option<Peer>; PEERS], id: ClientId) -> Option<usize> {
    peers
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p.id == id))
}

impl World {
    fn new(input: &mut Input<'_>) -> World {
        let config = engine_config(input, true);
        let soft_output = *input.pick(&[1, 64, 4096, 262_144]);
        let hard_output = soft_output + *input.pick(&[0, 40, 65_537]);
        let limits = SessionLimits {
            max_input: *input.pick(&[66_051, 1 << 20]),
            soft_output,
            hard_output,
            // Tiny totals put every session over the server-wide budget at once.
            total_output: *input.pick(&[1, 100_000, 1 << 28]),
            read_timeout_ms: *input.pick(&[1_000, 23_000]),
            // The harness plays the byte streams itself; these deadlines are never armed.
            write_timeout_ms: 0,
            tls_handshake_timeout_ms: 0,
        };
        // One byte: bit 0 turns authentication on, bit 1 configures an admin token.
        let secrets = input.byte();
        let (auth, admin) = (secrets & 1 == 1, secrets & 2 == 2);
        let read_timeout_ms = limits.read_timeout_ms;
        let mut engine = Engine::new(config.clone(), TokenIssuer::deterministic(0x5e55));
        // Small budgets make publishes span turns, with requests of others arriving meanwhile.
        engine.set_signal_budget(*input.pick(&[1, 3, 16, crate::budget::SIGNAL_BUDGET]));
        World {
            dispatcher: World::dispatcher(engine, limits, auth, admin),
            peers: [None, None, None],
            rules: Rules {
                config,
                auth,
                admin,
                draining: false,
            },
            read_timeout_ms,
            now: Millis(0),
            backlog: false,
            to_flush: Vec::new(),
            tokens: Vec::new(),
        }
    }

    fn dispatcher(
        engine: Engine,
        limits: SessionLimits,
        auth: bool,
        admin: bool,
    ) -> Dispatcher<MemoryStream> {
        let mut dispatcher = Dispatcher::new(engine, limits, auth.then_some(SECRET));
        if admin {
            let distinct = dispatcher.replace_secrets(None, Some(ADMIN_SECRET));
            assert!(distinct.is_ok(), "the two secrets differ");
        }
        dispatcher
    }

    fn connect(&mut self, slot: usize) {
        if self.peers[slot].is_some() || self.rules.draining {
            return; // the listener closes when the drain begins
        }
        let id = self.dispatcher.next_id();
        let peer_addr = SocketAddr::from(([127, 0, 0, 1], 40_000 + slot as u16));
        let stream = MemoryStream::default();
        self.dispatcher.open(id, peer_addr.into(), stream, self.now);
        self.peers[slot] = Some(Peer::new(id));
    }

    /// Appends generated bytes to what the peer will send.
    fn compose(&mut self, slot: usize, input: &mut Input<'_>) {
        let tokens = &self.tokens;
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        let out = &mut peer.outgoing;
        match input.byte() % 8 {
            0 => {
                let len = 1 + input.below(16);
                out.extend_from_slice(input.bytes(len));
            }
            1 => {
                // An over-long (or exactly maximal) key line or arg line.
                let len = *input.pick(&LONG_LINES);
                let cmd = *input.pick(&[b"l".as_slice(), b"signal", b"auth"]);
                out.extend_from_slice(cmd);
                out.push(b'\n');
                if input.flag() {
                    out.resize(out.len() + len.min(MAX_LINE + 1), b'k');
                    out.extend_from_slice(b"\n1\n");
                } else {
                    out.extend_from_slice(b"a\n");
                    out.resize(out.len() + len, b'p');
                    out.push(b'\n');
                }
            }
            _ => {
                let ending = |input: &mut Input<'_>| *input.pick(&ENDINGS);
                out.extend_from_slice(input.pick::<&[u8]>(&COMMANDS));
                out.extend_from_slice(ending(input));
                out.extend_from_slice(input.pick::<&[u8]>(&KEYS));
                out.extend_from_slice(ending(input));
                let fields = input.below(4);
                for i in 0..fields {
                    if i > 0 {
                        out.extend_from_slice(input.pick::<&[u8]>(&SEPARATORS));
                    }
                    let choice = input.byte();
                    match tokens.len() {
                        n if n > 0 && choice < 96 => {
                            out.extend_from_slice(&tokens[n - 1 - usize::from(choice) % n])
                        }
                        _ => out.extend_from_slice(FIELDS[usize::from(choice) % FIELDS.len()]),
                    }
                }
                out.extend_from_slice(ending(input));
            }
        }
    }

    /// The peer hands `n` composed bytes (all with `n == 0`) to the kernel: a readable event.
    fn transmit(&mut self, slot: usize, n: usize) {
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        if peer.fin {
            return;
        }
        let n = if n == 0 {
            peer.outgoing.len()
        } else {
            n.min(peer.outgoing.len())
        };
        if n == 0 {
            return;
        }
        peer.unsent.extend(peer.outgoing.drain(..n));
        peer.read_ready = true;
        self.dispatcher.schedule(peer.id);
    }

    /// The peer shuts down its sending side once everything composed is sent.
    fn finish_sending(&mut self, slot: usize) {
        self.transmit(slot, 0);
        if let Some(peer) = self.peers[slot].as_mut() {
            peer.fin = true;
            peer.read_ready = true;
            self.dispatcher.schedule(peer.id);
        }
    }

    /// The peer reads `n` more bytes: a writable event if output is pending.
    fn open_window(&mut self, slot: usize, n: usize) {
        if let Some(peer) = self.peers[slot].as_mut() {
            peer.window = peer.window.saturating_add(n);
            self.to_flush.push(peer.id);
        }
    }

    /// An I/O failure the loop detects outside the request path.
    fn fail(&mut self, slot: usize, reason: CloseReason) {
        if let Some(peer) = &self.peers[slot] {
            self.dispatcher.close(peer.id, reason);
            self.write_and_close();
        }
    }

    fn begin_drain(&mut self) {
        if !self.rules.draining {
            self.rules.draining = true;
            self.dispatcher.begin_drain(self.now);
            self.write_and_close();
        }
    }

    /// Whether the loop would poll with a zero timeout: work queued, or engine work due now (a
    /// publish that a request of this turn started and the turn's units did not finish).
    fn busy(&self) -> bool {
        let due = self.dispatcher.engine.next_deadline();
        self.dispatcher.ready_len() > 0
            || self.dispatcher.has_pending_work()
            || self.backlog
            || due.is_some_and(|at| at <= self.now)
    }

    /// One turn of the event loop, after sleeping `sleep_ms` if it would sleep at all.
    fn turn(&mut self, sleep_ms: u64) {
        if !self.busy() {
            self.now = self.now.plus_ms(sleep_ms);
        }
        self.backlog = self.dispatcher.start_turn(self.now);
        self.read_deadlines();
        self.serve_ready();
        self.dispatcher.continue_stats(self.now);
        self.write_and_close();
    }

    fn read_deadlines(&mut self) {
        let expired: Vec<ClientId> = self
            .dispatcher
            .connections()
            .iter()
            .filter(|c| {
                c.read_deadline(self.read_timeout_ms)
                    .is_some_and(|at| at <= self.now)
            })
            .map(|c| c.id)
            .collect();
        for id in expired {
            self.dispatcher.read_timed_out(id, self.now);
        }
    }

    /// Serves the sessions queued at the start of the phase: one read each, or a resume.
    fn serve_ready(&mut self) {
        for _ in 0..self.dispatcher.ready_len() {
            if self.dispatcher.turn_is_full() {
                break;
            }
            let Some(id) = self.dispatcher.next_ready() else {
                break;
            };
            self.serve(id);
        }
    }

    fn serve(&mut self, id: ClientId) {
        let room = self.dispatcher.input_room(id);
        let (Some(slot), Some(session)) = (
            slot_of(&self.peers, id),
            self.dispatcher.connections().get_ref(id),
        ) else {
            return;
        };
        if session.close_reason().is_some() {
            return;
        }
        let peer = self.peers[slot].as_mut().expect("slot_of found it");
        let now = self.now;
        if !peer.read_ready || room == 0 {
            self.dispatcher.resume(id, now);
            return;
        }
        if peer.unsent.is_empty() {
            // The read finds the end of the stream, or nothing at all.
            peer.read_ready = false;
            self.dispatcher.resume(id, now);
            if peer.fin && !std::mem::replace(&mut peer.fin_read, true) {
                self.dispatcher.peer_finished(id, now);
            }
            return;
        }
        let take = room.min(READ_CHUNK).min(peer.unsent.len());
        let bytes: Vec<u8> = peer.unsent.drain(..take).collect();
        peer.delivered.extend_from_slice(&bytes);
        let drained = !peer.readable();
        peer.read_ready = !drained;
        self.dispatcher.receive(id, now, &bytes);
        if !drained {
            self.dispatcher.schedule(id);
        }
    }

    /// Writes what each peer's window allows, then finishes closes, until nothing changes (a
    /// close may grant a lock to another session, whose response is written in the same pass).
    fn write_and_close(&mut self) {
        let mut push_budget = PUSH_WRITES_PER_TURN;
        loop {
            let mut batch = std::mem::take(&mut self.to_flush);
            self.dispatcher.append_dirty(&mut batch);
            self.dispatcher
                .take_pushes(&mut batch, std::mem::take(&mut push_budget));
            for id in batch {
                self.flush(id);
            }
            let mut closed_any = false;
            while let Some(id) = self.dispatcher.next_closing() {
                closed_any = true;
                self.close(id);
            }
            if !closed_any && !self.dispatcher.has_dirty() && self.to_flush.is_empty() {
                return;
            }
        }
    }

    fn flush(&mut self, id: ClientId) {
        let (Some(slot), Some(session)) = (
            slot_of(&self.peers, id),
            self.dispatcher.connections().get_ref(id),
        ) else {
            return;
        };
        let peer = self.peers[slot].as_mut().expect("slot_of found it");
        let n = peer.window.min(session.output_len());
        if n == 0 {
            return;
        }
        session.copy_output(n, &mut peer.received);
        peer.window -= n;
        self.dispatcher.wrote(id, self.now, n);
    }

    /// A session entered its closing phase: release its engine state, then deliver its last
    /// words if the reason calls for it (the peer is assumed to read them) and drop it.
    fn close(&mut self, id: ClientId) {
        self.dispatcher.disconnect(id, self.now);
        let Some(session) = self.dispatcher.connections().get_ref(id) else {
            return;
        };
        let reason = session.close_reason().expect("closing session");
        let slot = slot_of(&self.peers, id).expect("a session has its peer");
        let mut peer = self.peers[slot].take().expect("slot_of found it");
        if reason.flushes() {
            session.copy_output(usize::MAX, &mut peer.received);
        }
        self.dispatcher.drop_connection(id);
        self.read_lines(&mut peer, true);
        if peer.terminal {
            assert!(
                matches!(
                    reason,
                    CloseReason::ProtocolError | CloseReason::ReadTimeout | CloseReason::AuthFailed
                ),
                "a closing error line, then a close for {reason:?}"
            );
        }
    }

    /// Parses the lines `peer` received since last time and pairs each response with the
    /// oldest unanswered request.
    fn read_lines(&mut self, peer: &mut Peer, closed: bool) {
        peer.frame_delivered();
        while let Some(len) = peer.received[peer.parsed..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = &peer.received[peer.parsed..peer.parsed + len];
            peer.parsed += len + 1;
            let reply = match parse_line(line) {
                Line::Reply(reply) => reply,
                Line::Push => {
                    self.check_dollar_rule(peer, line);
                    continue;
                }
            };
            assert!(!peer.terminal, "a line after the closing error");
            if let Reply::Granted(token, _) | Reply::Acquired(token, _) = reply {
                let mut text = [0; TOKEN_LEN];
                token.encode(&mut text);
                self.tokens.push(text);
            }
            match peer.unanswered.pop_front() {
                Some(frame) => {
                    self.rules
                        .check_answer(&frame, peer.answered, reply, &mut peer.admin)
                }
                None => {
                    // An over-long line or an expired read deadline: `error` (`error_auth`
                    // before authentication), then the connection closes.
                    let auth_pending = self.rules.auth && peer.answered == 0;
                    let expected = if auth_pending {
                        Response::ErrorAuth
                    } else {
                        Response::Error
                    };
                    assert_eq!(reply, Reply::Bare(expected), "a response to no request");
                    peer.terminal = true;
                }
            }
            peer.answered += 1;
        }
        if !closed {
            assert!(!peer.terminal, "connection open after its closing error");
        }
    }

    /// Panics if, with lock events on, a push on a reserved channel reached a peer that never
    /// asked to listen to a pattern starting with `$`: under the `$` rule no other can match.
    fn check_dollar_rule(&self, peer: &Peer, push: &[u8]) {
        let channel = push[b"sig ".len()..].split(|&b| b == b' ').next();
        if self.rules.config.lock_events && channel.is_some_and(is_reserved_channel) {
            assert!(
                peer.reserved_listener,
                "the $ rule: {:?} reached a peer without a $ pattern",
                String::from_utf8_lossy(push)
            );
        }
    }

    /// The per-connection properties, after every operation, and the engine's invariants (with
    /// `--lock-delay` on: a slot in its delay counts as taken, so nothing is granted meanwhile).
    fn check(&mut self) {
        self.dispatcher.engine.check_invariants();
        let owned: usize = self
            .dispatcher
            .connections()
            .iter()
            .map(|c| c.owned_output())
            .sum();
        assert_eq!(
            owned,
            self.dispatcher.owned_output(),
            "the server-wide output count drifted from its sessions'"
        );
        let limits = self.dispatcher.limits().clone();
        for slot in 0..PEERS {
            let Some(mut peer) = self.peers[slot].take() else {
                continue;
            };
            self.read_lines(&mut peer, false);
            let session = self
                .dispatcher
                .connections()
                .get_ref(peer.id)
                .expect("an open peer has its session");
            assert!(session.close_reason().is_none(), "a close not finished");
            assert!(
                session.buffered_input() <= limits.max_input,
                "input buffer past its cap"
            );
            let mut output = Vec::new();
            session.copy_output(usize::MAX, &mut output);
            let output = &output[..];
            let last_line = output[..output.len().saturating_sub(1)]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            assert!(
                last_line <= limits.hard_output,
                "output past its cap by more than one line: {}",
                output.len()
            );
            // One response per request processed, except the one still waiting.
            let waiting = usize::from(session.phase() == Phase::Waiting);
            let processed = peer.delivered.len() - session.buffered_input();
            let pending = [&peer.received[peer.parsed..], output].concat();
            let queued_replies = pending
                .split_inclusive(|&b| b == b'\n')
                .filter(|line| line.ends_with(b"\n") && !line.starts_with(b"sig "))
                .count();
            peer.count_processed(processed);
            assert_eq!(
                peer.answered + queued_replies + waiting,
                peer.processed_count,
                "responses vs requests processed"
            );
            self.peers[slot] = Some(peer);
        }
        assert_eq!(
            self.dispatcher.connections().len(),
            self.peers.iter().flatten().count(),
            "sessions without peers"
        );
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let slot = input.below(PEERS);
        match op {
            0..=9 => self.connect(slot),
            10..=89 => self.compose(slot, input),
            90..=139 => {
                let n = match input.byte() {
                    0..=127 => 0,
                    n => usize::from(n - 127),
                };
                self.transmit(slot, n);
            }
            140..=144 => self.finish_sending(slot),
            145..=159 => {
                let n = *input.pick(&[0, 1, 7, 100, 4096, usize::MAX]);
                if let Some(peer) = self.peers[slot].as_mut() {
                    peer.window = 0;
                }
                self.open_window(slot, n);
            }
            160..=162 => self.fail(slot, CloseReason::PeerGone),
            163 => self.fail(slot, CloseReason::WriteFailed),
            164 => self.begin_drain(),
            _ => {
                let sleep = *input.pick(&[0, 0, 1, 999, 1_000, 5_000, 30_000, 100_000]);
                self.turn(sleep);
            }
        }
        self.check();
    }

    /// Runs turns until the loop would sleep. Backpressure can hold a connection to one request
    /// per turn (a soft output cap of a few bytes pauses it after every reply), so the number of
    /// turns is bounded only by what the peers sent; what must not happen is a run of
    /// [`QUIET_TURNS`] busy turns in which nothing moves.
    fn settle(&mut self) {
        let mut last = self.progress();
        let mut stalled = 0;
        for _ in 0..SETTLE_TURNS {
            if !self.busy() {
                return;
            }
            self.turn(0);
            self.check();
            let progress = self.progress();
            if progress == last {
                stalled += 1;
                assert!(
                    stalled < QUIET_TURNS,
                    "the loop stays busy but nothing moves"
                );
            } else {
                (last, stalled) = (progress, 0);
            }
        }
        panic!("the loop never went quiet");
    }

    /// What a busy turn must change: bytes the server took or wrote, requests processed,
    /// connections left.
    fn progress(&self) -> (usize, usize, u64, usize) {
        let peers = self.peers.iter().flatten();
        let (taken, written) = peers.fold((0, 0), |(taken, written), peer| {
            (taken + peer.delivered.len(), written + peer.received.len())
        });
        let requests = self.dispatcher.counters().requests;
        (
            taken,
            written,
            requests,
            self.dispatcher.connections().len(),
        )
    }

    /// Every peer sends what it composed and reads everything; time passes until no request
    /// waits; then every peer half-closes and every connection must end, leaving the engine
    /// empty once the clock is far ahead.
    fn finish(&mut self) {
        for slot in 0..PEERS {
            self.transmit(slot, 0);
            self.open_window(slot, usize::MAX);
        }
        self.settle();
        for _ in 0..QUIET_TURNS {
            let waiting = self
                .dispatcher
                .connections()
                .iter()
                .any(|c| c.phase() == Phase::Waiting);
            let unread = self.peers.iter().flatten().any(|p| p.readable());
            if !waiting && !unread {
                break;
            }
            // Bytes still in the kernel get a readable event, as new data would cause.
            for slot in 0..PEERS {
                self.transmit(slot, 0);
                if let Some(peer) = self.peers[slot].as_mut() {
                    if peer.readable() {
                        peer.read_ready = true;
                        self.dispatcher.schedule(peer.id);
                    }
                }
            }
            self.turn(FAR_MS);
            self.check();
            self.settle();
        }
        for slot in 0..PEERS {
            self.finish_sending(slot);
        }
        self.settle();
        let conns = self.dispatcher.connections();
        assert!(
            conns.is_empty(),
            "connections left after every peer left: {:?}",
            conns.iter().map(|c| c.phase()).collect::<Vec<_>>()
        );
        // Three jumps: a lease that runs out in the first starts its lock-delay from then, the
        // delay ends in the second and arms the idle GC, which collects the key in the third.
        for _ in 0..3 {
            self.now = self.now.plus_ms(FAR_MS);
            while self.dispatcher.start_turn(self.now) {}
        }
        let engine = &mut self.dispatcher.engine;
        engine.check_invariants();
        assert!(
            engine.is_empty(),
            "engine state left: {:?}",
            engine.counts()
        );
    }
}

/// The `session` target: three peers talk to the request path over the loop's turn structure.
///
/// Input: engine configuration (`--lock-delay` on or off), session limits (soft and hard output
/// caps from 1 byte up, so backpressure and slow consumers are reachable), authentication and an
/// admin token each on or off, then operations:
/// connect, compose requests (protocol words, random bytes, CRLF variants, lines at and past the
/// limits, harvested tokens), hand composed bytes to the kernel in arbitrary pieces, half-close,
/// set how much the peer reads, reset, begin the drain, and run a loop turn (sleeping if idle).
///
/// Checks after every operation: each response line is well formed and a valid answer to the
/// request it pairs with in order (lease echoes, authentication with either secret, an `auth`
/// with the admin token making a peer an admin, `evict` answered `error` on any other peer and
/// with a count on an admin, `check` reporting only the fence it was asked about, drain), at
/// most one closing
/// `error` answers no request; `sig` pushes are well formed; responses equal the requests
/// processed minus the one waiting; input within its cap; output within its cap but for one
/// line; closes finish; the engine's invariants, among them that no grant happens while a
/// lock-delay is in force. At the end every peer leaves, no connection is left, and the engine
/// is empty once the clock is far ahead.
pub fn session(data: &[u8]) {
    let mut input = Input::new(data);
    let mut world = World::new(&mut input);
    while !input.is_empty() {
        world.step(&mut input);
    }
    world.finish();
}
