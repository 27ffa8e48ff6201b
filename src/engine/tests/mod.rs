//! Scenario tests of the whole engine (spec §7-11, §13), driven the way the server drives it:
//! requests are parsed from wire text, time is an explicit clock, and every effect lands in a
//! recording [`Outbox`].
//!
//! The harness checks more than each test asserts. After every step (request, clock move,
//! disconnect, shutdown cancel) it runs the engine's invariant check and enforces the reply
//! discipline of spec §2.3: a request the engine answers gets exactly one reply, a request that
//! waits gets none until a grant, timeout or cancel delivers exactly one, nobody else is ever
//! answered, and nothing reaches a client that has left. It also requires every test to read each
//! reply before the client's next request, so no response goes unchecked.

mod signal_turns;

use std::collections::{HashMap, HashSet, VecDeque};

use super::{ClientId, Engine, EngineConfig, Outbox, Outcome, Push, ServerFigures};
use crate::budget::{EXPIRE_BUDGET, TRIM_BUDGET};
use crate::clock::Millis;
use crate::protocol::Response;
use crate::protocol::frame::{Decoded, FrameDecoder};
use crate::protocol::request::parse;
use crate::token::{LeaseToken, TokenIssuer};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// What the engine sent during one step, plus the per-client room for signal pushes.
#[derive(Default)]
struct Recorder {
    replies: Vec<(ClientId, Response)>,
    pushes: Vec<(ClientId, String, String)>,
    evictions: Vec<ClientId>,
    /// Bytes of pushes each client can still take; a client missing here has unlimited room.
    room: HashMap<ClientId, usize>,
    /// Clients that have left: like the server, the recorder says they have no room and ignores
    /// their eviction.
    gone: HashSet<ClientId>,
    /// Replies and pushes in the order they were sent, as wire-like text.
    trace: Vec<(ClientId, String)>,
}

impl Outbox for Recorder {
    fn reply(&mut self, client: ClientId, response: Response) {
        self.trace.push((client, format!("{response:?}")));
        self.replies.push((client, response));
    }

    fn has_room(&mut self, client: ClientId, line_len: usize) -> bool {
        !self.gone.contains(&client) && self.room.get(&client).is_none_or(|&left| left >= line_len)
    }

    fn push(&mut self, client: ClientId, line: &Push<'_>) {
        if let Some(left) = self.room.get_mut(&client) {
            assert!(*left >= line.len(), "push to {client:?} without room");
            *left -= line.len();
        }
        let (channel, payload) = (
            String::from_utf8_lossy(line.channel()).into_owned(),
            String::from_utf8_lossy(line.payload()).into_owned(),
        );
        self.trace
            .push((client, format!("sig {channel} {payload}")));
        self.pushes.push((client, channel, payload));
    }

    fn evict(&mut self, client: ClientId) {
        if !self.gone.contains(&client) {
            self.evictions.push(client);
        }
    }
}

/// An engine, a clock, connected clients and the replies they have not read yet.
struct Harness {
    engine: Engine,
    out: Recorder,
    now: Millis,
    next_index: u32,
    connected: HashSet<ClientId>,
    /// Clients whose request waits in the engine (no reply yet).
    waiting: HashSet<ClientId>,
    inbox: HashMap<ClientId, VecDeque<Response>>,
    /// Every token seen in a reply, by fence: a fence always names the same token.
    tokens: HashMap<u64, LeaseToken>,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        let mut harness = Harness {
            engine: Engine::new(config, TokenIssuer::deterministic(7)),
            out: Recorder::default(),
            now: Millis::ZERO,
            next_index: 0,
            connected: HashSet::new(),
            waiting: HashSet::new(),
            inbox: HashMap::new(),
            tokens: HashMap::new(),
        };
        harness.check(None);
        harness
    }

    fn with_defaults() -> Harness {
        Harness::new(EngineConfig::default())
    }

    /// Connects a new client whose connection serial is `serial`.
    fn client_with_serial(&mut self, serial: u64) -> ClientId {
        let client = ClientId {
            index: self.next_index,
            generation: 1,
        };
        self.next_index += 1;
        self.connect(client, serial);
        client
    }

    /// Connects a new client; its serial is 100 + its slot.
    fn client(&mut self) -> ClientId {
        self.client_with_serial(100 + u64::from(self.next_index))
    }

    fn connect(&mut self, client: ClientId, serial: u64) {
        assert!(self.connected.insert(client), "{client:?} connected twice");
        self.engine.connect(client, serial);
        self.check(None);
    }

    /// Sends the request `cmd` / `key` / `arg` (three wire lines) from `client`.
    fn req(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Outcome {
        assert!(
            self.connected.contains(&client),
            "{client:?} is not connected"
        );
        assert!(
            !self.waiting.contains(&client),
            "{client:?} sent a request while waiting"
        );
        assert!(
            self.inbox.get(&client).is_none_or(VecDeque::is_empty),
            "{client:?} has unread replies {:?}",
            self.inbox[&client]
        );
        let outcome = self.apply(client, cmd, key, arg);
        self.check(Some((client, outcome)));
        outcome
    }

    /// Parses the request and applies it, without checking anything afterwards.
    fn apply(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Outcome {
        let wire = format!("{cmd}\n{key}\n{arg}\n");
        let Decoded::Frame { frame, consumed } = FrameDecoder::default().decode(wire.as_bytes())
        else {
            panic!("{wire:?} is not one request");
        };
        assert_eq!(consumed, wire.len(), "{wire:?} is not exactly one request");
        let request = parse(&frame).unwrap_or_else(|e| panic!("{wire:?} does not parse: {e:?}"));
        self.engine.apply(self.now, client, &request, &mut self.out)
    }

    /// Try-locks every key in `keys` for `client`, all of which must be granted, and returns the
    /// tokens. The engine is checked once at the end: a full check after each of thousands of
    /// requests would take minutes.
    fn lock_all(&mut self, client: ClientId, keys: &[String]) -> Vec<LeaseToken> {
        for key in keys {
            assert_eq!(self.apply(client, "l", key, "0"), Outcome::Answered);
        }
        let replies = std::mem::take(&mut self.out.replies);
        assert_eq!(replies.len(), keys.len(), "one reply per request");
        self.check(None);
        let tokens = replies.into_iter().map(|(to, response)| {
            assert_eq!(to, client, "reply to another client");
            granted(response, self.engine.config().default_lease_s)
        });
        tokens.collect()
    }

    /// Sends a request that must be answered at once, and returns the answer.
    fn ask(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Response {
        let outcome = self.req(client, cmd, key, arg);
        assert_eq!(outcome, Outcome::Answered, "{cmd} {key} {arg} waits");
        self.reply(client)
    }

    /// Sends a request that must wait.
    fn block(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) {
        let outcome = self.req(client, cmd, key, arg);
        if outcome != Outcome::Waiting {
            panic!(
                "{cmd} {key} {arg} was answered at once: {:?}",
                self.reply(client)
            );
        }
    }

    /// The one unread reply of `client`.
    fn reply(&mut self, client: ClientId) -> Response {
        let inbox = self.inbox.entry(client).or_default();
        let response = inbox
            .pop_front()
            .unwrap_or_else(|| panic!("no reply for {client:?}"));
        assert!(inbox.is_empty(), "more than one reply for {client:?}");
        response
    }

    /// Asserts that `client` has no unread reply.
    fn quiet(&self, client: ClientId) {
        assert!(
            self.inbox.get(&client).is_none_or(VecDeque::is_empty),
            "unexpected reply for {client:?}: {:?}",
            self.inbox[&client]
        );
    }

    /// Moves the clock to `t` ms the way a punctual event loop does: it wakes at every
    /// [`Engine::next_deadline`] on the way and handles what is due then, so every timer is
    /// handled at its own deadline.
    fn at(&mut self, t: u64) {
        assert!(t >= self.now.0, "time runs forward");
        loop {
            self.run_due();
            match self.engine.next_deadline() {
                Some(next) if next.0 <= t => {
                    assert!(next > self.now, "next_deadline does not move forward");
                    self.now = next;
                }
                _ => break,
            }
        }
        self.now = Millis(t);
        self.run_due();
    }

    /// Moves the clock by `ms` like [`Harness::at`].
    fn advance(&mut self, ms: u64) {
        self.at(self.now.0 + ms);
    }

    /// Moves the clock to `t` ms in one go and only then handles what is due: a loop that woke
    /// late, so every timer due on the way is handled at `t`.
    fn jump_to(&mut self, t: u64) {
        self.skip_to(t);
        self.run_due();
    }

    /// Calls [`Engine::expire`] until it has nothing more due at the current time.
    fn run_due(&mut self) {
        while self.engine.expire(self.now, &mut self.out) {
            self.check(None);
        }
        self.check(None);
    }

    /// Moves the clock to `t` ms without running timers: the next request arrives before the loop
    /// has handled what became due (a loaded server, or expiry spread over several turns).
    fn skip_to(&mut self, t: u64) {
        assert!(t >= self.now.0, "time runs forward");
        self.now = Millis(t);
    }

    fn disconnect(&mut self, client: ClientId) {
        assert!(
            self.connected.remove(&client),
            "{client:?} is not connected"
        );
        self.waiting.remove(&client);
        self.inbox.remove(&client);
        self.out.room.remove(&client);
        self.out.gone.insert(client);
        self.engine.disconnect(self.now, client, &mut self.out);
        self.check(None);
    }

    /// Server shutdown: every waiting request is cancelled.
    fn cancel_waits(&mut self) {
        self.engine.cancel_waits(self.now, &mut self.out);
        self.check(None);
    }

    /// The `stats` JSON, with `connections` = the number of connected clients.
    fn stats(&self) -> String {
        let mut json = Vec::new();
        self.engine.write_stats(
            self.now,
            ServerFigures {
                connections: self.connected.len() as u64,
                slow_consumers_disconnected: 0,
            },
            &mut json,
        );
        String::from_utf8(json).expect("stats JSON is UTF-8")
    }

    fn stats_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.stats()).expect("stats is valid JSON")
    }

    /// Resources (both namespaces) that exist.
    fn resources(&self) -> usize {
        self.engine.counts().0
    }

    /// Holders of all resources.
    fn holders(&self) -> usize {
        self.engine.counts().1
    }

    /// Queued waiters of all resources.
    fn waiters(&self) -> usize {
        self.engine.counts().2
    }

    /// Signal pushes sent since the last call, as (client, channel, payload).
    fn pushes(&mut self) -> Vec<(ClientId, String, String)> {
        std::mem::take(&mut self.out.pushes)
    }

    /// Slow-consumer evictions requested since the last call.
    fn evictions(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.out.evictions)
    }

    /// Limits the bytes of pushes `client` can still take.
    fn set_room(&mut self, client: ClientId, bytes: usize) {
        self.out.room.insert(client, bytes);
    }

    /// Ends a test with a leak check: every reply must have been read; then every client leaves,
    /// an hour passes (all leases run out, idle GC collects everything) and the engine must hold
    /// nothing at all.
    fn finish(mut self) {
        for (client, inbox) in &self.inbox {
            assert!(inbox.is_empty(), "unread replies for {client:?}: {inbox:?}");
        }
        let mut clients: Vec<ClientId> = self.connected.iter().copied().collect();
        clients.sort();
        for client in clients {
            self.disconnect(client);
        }
        self.advance(3_600_000);
        assert!(
            self.engine.is_empty(),
            "state left behind: {:?}",
            self.engine.counts()
        );
    }

    /// Checks the engine and files the replies of the step that just ran. `request` is the client
    /// whose request was just applied, with the outcome the engine returned.
    fn check(&mut self, request: Option<(ClientId, Outcome)>) {
        self.engine.check_invariants();
        let mut answered = false;
        for (client, response) in std::mem::take(&mut self.out.replies) {
            assert!(
                self.connected.contains(&client),
                "reply {response:?} sent to departed {client:?}"
            );
            if let Response::Granted { token, .. } | Response::Acquired { token, .. } = response {
                let known = *self.tokens.entry(token.fence).or_insert(token);
                assert_eq!(known, token, "two tokens with one fence");
            }
            match request {
                Some((requester, Outcome::Answered)) if requester == client && !answered => {
                    answered = true;
                }
                _ => assert!(
                    self.waiting.remove(&client),
                    "reply {response:?} to {client:?}, which asked nothing"
                ),
            }
            self.inbox.entry(client).or_default().push_back(response);
        }
        match request {
            Some((client, Outcome::Answered)) => {
                assert!(
                    answered,
                    "request of {client:?} answered Answered without reply"
                );
            }
            Some((client, Outcome::Waiting)) => {
                assert!(!answered);
                self.waiting.insert(client);
            }
            None => {}
        }
        for &client in &self.connected {
            assert_eq!(
                self.engine.is_waiting(client) || self.engine.awaits_signal_work(client),
                self.waiting.contains(&client),
                "engine and harness disagree on whether {client:?} waits"
            );
        }
        for (client, ..) in &self.out.pushes {
            assert!(
                self.connected.contains(client),
                "push to departed {client:?}"
            );
        }
        for client in &self.out.evictions {
            assert!(
                self.connected.contains(client),
                "eviction of departed {client:?}"
            );
        }
    }
}

/// The token of `ok <tok> <lease_s>`.
#[track_caller]
fn granted(response: Response, lease_s: u64) -> LeaseToken {
    match response {
        Response::Granted { token, lease_s: l } if l == lease_s => token,
        other => panic!("expected `ok <tok> {lease_s}`, got {other:?}"),
    }
}

/// The token of `acquired <tok> <lease_s>`.
#[track_caller]
fn acquired(response: Response, lease_s: u64) -> LeaseToken {
    match response {
        Response::Acquired { token, lease_s: l } if l == lease_s => token,
        other => panic!("expected `acquired <tok> {lease_s}`, got {other:?}"),
    }
}

/// `n`/`sn` arguments: the token, then the lease if any.
fn renew_arg(token: LeaseToken, lease_s: Option<u64>) -> String {
    match lease_s {
        Some(lease_s) => format!("{token} {lease_s}"),
        None => token.to_string(),
    }
}

/// A configuration with the given tweak applied to the defaults.
fn config(tweak: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut config = EngineConfig::default();
    tweak(&mut config);
    config
}

// ---------------------------------------------------------------------------------------------
// FIFO granting (§8.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn release_grants_blocking_and_two_phase_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60 11");
    assert_eq!(h.ask(c, "e", "k", "12"), Response::Queued);
    h.block(d, "l", "k", "60 13");
    assert_eq!(h.ask(e, "e", "k", "14"), Response::Queued);
    assert_eq!(h.waiters(), 4);

    h.at(1_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    let tb = granted(h.reply(b), 11);
    assert!(tb.fence > ta.fence);
    [c, d, e].iter().for_each(|&x| h.quiet(x));

    // The two-phase waiter is granted silently; its `w` collects the grant.
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    h.quiet(d);
    let tc = granted(h.ask(c, "w", "k", "0"), 12);
    assert!(tc.fence > tb.fence);

    assert_eq!(h.ask(c, "r", "k", &tc.to_string()), Response::Ok);
    let td = granted(h.reply(d), 13);
    assert!(td.fence > tc.fence);
    h.quiet(e);

    assert_eq!(h.ask(d, "r", "k", &td.to_string()), Response::Ok);
    let te = granted(h.ask(e, "w", "k", "5"), 14);
    assert!(te.fence > td.fence);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

#[test]
fn expiry_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "60 2");
    assert_eq!(h.ask(c, "e", "k", "3"), Response::Queued);
    h.block(d, "l", "k", "60 4");

    h.at(999);
    h.quiet(b);
    h.at(1_000);
    let tb = granted(h.reply(b), 2);
    assert!(tb.fence > ta.fence);

    // b's lease runs 1 000 .. 3 000; then c is granted silently (lease 3 000 .. 6 000).
    h.at(2_999);
    assert_eq!(h.holders(), 1);
    h.at(3_000);
    h.quiet(d);
    h.at(6_000);
    let td = granted(h.reply(d), 4);
    // c's grant (fence between b's and d's) has been swept, and its state with it.
    assert_eq!(td.fence, tb.fence + 2);
    assert_eq!(h.ask(c, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.at(10_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn disconnect_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60 5");
    assert_eq!(h.ask(c, "e", "k", "6"), Response::Queued);
    h.block(d, "l", "k", "60 7");

    h.at(100);
    h.disconnect(a);
    let tb = granted(h.reply(b), 5);
    assert!(tb.fence > ta.fence);
    h.disconnect(b);
    h.quiet(d);
    let tc = granted(h.ask(c, "w", "k", "0"), 6);
    assert!(tc.fence > tb.fence);
    h.disconnect(c);
    let td = granted(h.reply(d), 7);
    assert!(td.fence > tc.fence);
    h.finish();
}

#[test]
fn renew_of_an_expired_lease_grants_waiters_in_arrival_order() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "8"), Response::Queued);
    h.block(c, "l", "k", "60 9");
    h.block(d, "l", "k", "60 10");

    // The renewal arrives after the deadline, before the expiry timer has been handled.
    h.skip_to(1_500);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(30))),
        Response::Error
    );
    [c, d].iter().for_each(|&x| h.quiet(x));
    let tb = granted(h.ask(b, "w", "k", "0"), 8);
    assert!(tb.fence > ta.fence);
    h.at(1_500);

    // b's lease is 1 500 + 8 s; a late renewal of it hands the lock to c, not d.
    h.skip_to(9_500);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(tb, None)), Response::Error);
    let tc = granted(h.reply(c), 9);
    assert!(tc.fence > tb.fence);
    h.quiet(d);
    h.at(9_500);
    h.at(18_500);
    let td = granted(h.reply(d), 10);
    assert!(td.fence > tc.fence);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Lease expiry and timeouts (§8.3, §8.5)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_lease_ends_exactly_at_its_deadline_and_the_next_lease_starts_at_the_grant() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "10 5"), 5);
    h.block(b, "l", "k", "10 7");

    h.at(4_999);
    assert_eq!(h.holders(), 1);
    h.quiet(b);
    h.at(5_000);
    let tb = granted(h.reply(b), 7);
    assert_eq!(h.holders(), 1);
    assert_eq!(h.waiters(), 0);

    // b's lease runs from its grant at 5 000, not from its request at 0.
    h.at(11_999);
    assert_eq!(h.holders(), 1);
    h.at(12_000);
    assert_eq!(h.holders(), 0);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Error);
    h.finish();
}

#[test]
fn grant_beats_timeout_in_the_same_millisecond_lease_timer_set_first() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    // The holder's expiry timer is set before the waiter's timeout; both fall due at 5 000.
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "5 9");
    h.at(4_999);
    h.quiet(b);
    h.at(5_000);
    granted(h.reply(b), 9);
    h.finish();
}

#[test]
fn grant_beats_timeout_in_the_same_millisecond_wait_timer_set_first() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "60 4");
    // c's timeout (due at 5 000) is set now; b's lease timer, also due at 5 000, only at 1 000.
    h.block(c, "l", "k", "5 9");
    h.at(1_000);
    granted(h.reply(b), 4);
    h.at(4_999);
    h.quiet(c);
    h.at(5_000);
    granted(h.reply(c), 9);
    h.finish();
}

#[test]
fn grant_beats_timeout_when_the_clock_jumps_past_both_deadlines() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "5 9");
    h.jump_to(7_000);
    granted(h.reply(b), 9);
    // The grant happened when the engine saw it: at 7 000, so the lease ends at 16 000.
    h.at(15_999);
    assert_eq!(h.holders(), 1);
    h.at(16_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn grant_beats_timeout_of_a_two_phase_wait() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    assert_eq!(h.ask(b, "e", "k", "6"), Response::Queued);
    h.block(b, "w", "k", "5");
    h.at(5_000);
    granted(h.reply(b), 6);
    h.finish();
}

#[test]
fn in_the_same_millisecond_only_the_waiters_reached_by_the_grant_win() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "60");
    h.block(c, "l", "k", "5");
    h.at(5_000);
    granted(h.reply(b), 33);
    assert_eq!(h.reply(c), Response::Timeout);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

#[test]
fn semaphore_slots_freed_in_the_same_millisecond_beat_both_timeouts() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    granted(h.ask(b, "sl", "s", "0 2 5"), 5);
    h.block(c, "sl", "s", "5 2 8");
    h.block(d, "sl", "s", "5 2 9");
    h.at(5_000);
    let tc = granted(h.reply(c), 8);
    let td = granted(h.reply(d), 9);
    assert!(td.fence > tc.fence);
    h.finish();
}

#[test]
fn blocking_acquire_times_out_exactly_at_its_deadline_and_leaves_the_queue() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.block(b, "l", "k", "1");
    h.block(c, "l", "k", "10");
    h.at(999);
    h.quiet(b);
    h.at(1_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    h.quiet(c);

    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    h.finish();
}

#[test]
fn try_lock_never_jumps_the_queue() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    // Free and unqueued: a try-lock succeeds.
    granted(h.ask(a, "l", "k", "0 5"), 5);
    // Held: it fails at once and leaves nothing behind.
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    assert_eq!(h.waiters(), 0);

    h.block(b, "l", "k", "60");
    // a's lease passes at 5 000; the try-lock arrives before the expiry is handled. The freed
    // lock goes to b, who queued first.
    h.skip_to(5_000);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    let tb = granted(h.reply(b), 33);
    h.at(5_000);

    // Same with the expiry handled first.
    h.block(a, "l", "k", "60");
    h.at(6_000);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    h.finish();
}

#[test]
fn locks_are_not_reentrant() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "l", "k", "0 3"), 3);
    h.block(a, "l", "k", "1");
    h.at(1_000);
    assert_eq!(h.reply(a), Response::Timeout);
    // Waiting behind itself, it gets the lock once its own lease runs out.
    h.block(a, "l", "k", "5 4");
    h.at(3_000);
    let t2 = granted(h.reply(a), 4);
    assert!(t2.fence > t1.fence);
    assert_eq!(h.ask(a, "r", "k", &t1.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &t2.to_string()), Response::Ok);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Renew (§7.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn renew_resets_the_lease_to_now_plus_l() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 10"), 10);
    h.at(4_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(10))),
        Response::Renewed { lease_s: 10 }
    );
    // Not additive: 4 000 + 10 s, not 0 + 20 s.
    h.at(13_999);
    assert_eq!(h.holders(), 1);
    h.at(14_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_without_a_lease_uses_the_default() {
    let mut h = Harness::new(config(|c| c.default_lease_s = 7));
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.at(1_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, None)),
        Response::Renewed { lease_s: 7 }
    );
    h.at(7_999);
    assert_eq!(h.holders(), 1);
    h.at(8_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_can_move_a_lease_earlier() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60");
    h.at(1_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(2))),
        Response::Renewed { lease_s: 2 }
    );
    h.at(2_999);
    h.quiet(b);
    h.at(3_000);
    granted(h.reply(b), 33);
    h.finish();
}

#[test]
fn any_client_can_renew_any_token() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    h.at(4_000);
    assert_eq!(
        h.ask(b, "sn", "s", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    h.at(8_999);
    assert_eq!(h.holders(), 1);
    h.at(9_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_rejects_tokens_that_do_not_hold_the_key() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    let tb = granted(h.ask(b, "l", "other", "0 30"), 30);
    let ts = granted(h.ask(b, "sl", "k", "0 2 30"), 30);
    let forged = LeaseToken {
        fence: ta.fence,
        random: ta.random ^ 1,
    };
    let upper = ta.to_string().to_uppercase();
    for (cmd, arg) in [
        ("n", forged.to_string()),
        ("n", tb.to_string()),
        ("n", ts.to_string()),
        ("n", upper.clone()),
        ("n", format!("{ta}0")),
        ("sn", ta.to_string()),
    ] {
        assert_eq!(h.ask(a, cmd, "k", &arg), Response::Error, "{cmd} k {arg}");
    }
    assert_eq!(h.ask(a, "n", "missing", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "n", "k", &ta.to_string()), Response::Error);
    // Nothing of it lives on.
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn renew_of_an_expired_unswept_lease_fails_and_hands_the_slot_on() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "60 6");
    h.skip_to(5_200);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(ta, Some(5))), Response::Error);
    granted(h.reply(b), 6);
    h.at(5_200);
    // b's lease runs from the grant at 5 200.
    h.at(11_199);
    assert_eq!(h.holders(), 1);
    h.at(11_200);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_of_a_lease_exactly_at_its_deadline_fails() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.skip_to(4_999);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    // Now due at 9 999; a renewal in that very millisecond is too late.
    h.skip_to(9_999);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(ta, Some(5))), Response::Error);
    assert_eq!(h.holders(), 0);
    h.at(9_999);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Release (§7.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn any_client_can_release_any_token() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.block(c, "l", "k", "10");
    assert_eq!(h.ask(b, "r", "k", &ta.to_string()), Response::Ok);
    let tc = granted(h.reply(c), 33);
    // Releasing twice fails.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Error);
    // A token with surrounding white space is trimmed.
    assert_eq!(h.ask(a, "r", "k", &format!("  {tc} ")), Response::Ok);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn release_respects_namespaces() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let lock = granted(h.ask(a, "l", "k", "0"), 33);
    let sem = granted(h.ask(a, "sl", "k", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "k", &lock.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &sem.to_string()), Response::Error);
    assert_eq!(h.holders(), 2);
    assert_eq!(h.ask(a, "r", "k", &lock.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "sr", "k", &sem.to_string()), Response::Ok);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn release_rejects_unknown_keys_other_keys_and_case_changes() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    granted(h.ask(a, "l", "j", "0"), 33);
    assert_eq!(h.ask(a, "r", "j", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "nope", &ta.to_string()), Response::Error);
    let upper = ta.to_string().to_uppercase();
    assert_ne!(upper, ta.to_string(), "the token has letters");
    assert_eq!(h.ask(a, "r", "k", &upper), Response::Error);
    assert_eq!(h.ask(a, "r", "k", "not-a-token"), Response::Error);
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn release_after_the_sweep_fails_but_before_it_succeeds() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.at(5_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Error);

    // Passed but not swept yet: still released with `ok`, and the waiter gets the lock.
    let tb = granted(h.ask(b, "l", "k", "0 5"), 5);
    h.block(a, "l", "k", "60");
    h.skip_to(10_500);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    h.at(10_500);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Two-phase acquisition (§9)
// ---------------------------------------------------------------------------------------------

#[test]
fn enqueue_acquired_then_wait_resets_the_lease_even_with_zero_timeout() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let te = acquired(h.ask(a, "e", "k", "10"), 10);
    h.at(4_000);
    let tw = granted(h.ask(a, "w", "k", "0"), 10);
    assert_eq!(tw, te);
    h.at(13_999);
    assert_eq!(h.holders(), 1);
    h.at(14_000);
    assert_eq!(h.holders(), 0);
    // The state was cleared by the `w`: a new `e` is accepted.
    acquired(h.ask(a, "e", "k", ""), 33);
    h.finish();
}

#[test]
fn enqueue_queued_then_wait_blocks_until_granted() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", "7"), Response::Queued);
    h.at(1_000);
    h.block(b, "w", "k", "10");
    h.at(3_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    let tb = granted(h.reply(b), 7);
    assert!(tb.fence > ta.fence);
    // The lease runs from the grant: 3 000 + 7 s.
    h.at(9_999);
    assert_eq!(h.holders(), 1);
    h.at(10_000);
    assert_eq!(h.holders(), 0);
    // The state is gone with the grant.
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn granted_before_wait_the_wait_collects_and_resets_the_lease() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", "7"), Response::Queued);
    h.at(1_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.quiet(b);
    assert_eq!(h.holders(), 1);
    // Granted at 1 000 (lease to 8 000); the `w` at 5 000 resets it to 12 000.
    h.at(5_000);
    let tb = granted(h.ask(b, "w", "k", "0"), 7);
    assert!(tb.fence > ta.fence);
    h.at(11_999);
    assert_eq!(h.holders(), 1);
    h.at(12_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn wait_timeout_removes_the_waiter_and_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.block(c, "l", "k", "30");
    h.block(b, "w", "k", "2");
    h.at(1_999);
    h.quiet(b);
    h.at(2_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);

    // b left the queue: c is next.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    // And b may enqueue again.
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.finish();
}

#[test]
fn wait_with_zero_timeout_on_a_queued_state_times_out_and_clears_it() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.block(c, "l", "k", "30");
    assert_eq!(h.ask(b, "w", "k", "0"), Response::Timeout);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    h.finish();
}

#[test]
fn wait_with_zero_timeout_collects_a_grant_that_is_due_but_unswept() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 2"), 2);
    assert_eq!(h.ask(b, "e", "k", "4"), Response::Queued);
    h.skip_to(2_500);
    granted(h.ask(b, "w", "k", "0"), 4);
    h.at(2_500);
    h.at(6_499);
    assert_eq!(h.holders(), 1);
    h.at(6_500);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn second_enqueue_is_refused_whether_acquired_or_queued() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = acquired(h.ask(a, "e", "k", ""), 33);
    assert_eq!(h.ask(a, "e", "k", ""), Response::ErrorAlreadyEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(b, "e", "k", "5"), Response::ErrorAlreadyEnqueued);
    // Nothing else happened: one holder, one waiter.
    assert_eq!((h.holders(), h.waiters()), (1, 1));
    // The other namespace is a different key; blocking acquires are not restricted.
    acquired(h.ask(a, "se", "k", "2"), 33);
    assert_eq!(h.ask(a, "l", "k", "0"), Response::Timeout);
    // The two-phase state of a still works.
    assert_eq!(granted(h.ask(a, "w", "k", "0"), 33), ta);
    h.finish();
}

#[test]
fn wait_without_a_matching_enqueue_is_refused() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    assert_eq!(h.ask(a, "w", "k", "5"), Response::ErrorNotEnqueued);
    acquired(h.ask(a, "e", "k", ""), 33);
    // Another client's state, and the other namespace, do not count.
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a, "sw", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(a, "sw", "k", "5"), Response::ErrorNotEnqueued);
    // A blocking acquire creates no two-phase state.
    granted(h.ask(b, "l", "j", "0"), 33);
    assert_eq!(h.ask(b, "w", "j", "0"), Response::ErrorNotEnqueued);
    h.finish();
}

#[test]
fn granted_before_wait_then_expired_and_swept_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    h.at(1_000);
    h.quiet(b);
    assert_eq!(h.holders(), 1);
    h.at(3_000);
    assert_eq!(h.holders(), 0);
    assert_eq!(h.ask(b, "w", "k", "0"), Response::ErrorNotEnqueued);
    acquired(h.ask(b, "e", "k", "2"), 2);
    h.finish();
}

#[test]
fn wait_after_the_granted_lease_passed_but_before_the_sweep_is_lease_expired() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(b, "e", "k", "2"), Response::Queued);
    h.block(c, "l", "k", "60");
    h.at(1_000);
    h.quiet(b);
    h.quiet(c);
    h.skip_to(3_000);
    assert_eq!(h.ask(b, "w", "k", "5"), Response::ErrorLeaseExpired);
    granted(h.reply(c), 33);
    h.at(3_000);
    assert_eq!(h.ask(b, "w", "k", "5"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(b, "e", "k", ""), Response::Queued);
    h.finish();
}

#[test]
fn acquired_then_expired_before_wait_is_lease_expired_or_not_enqueued() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    acquired(h.ask(a, "e", "k", "1"), 1);
    acquired(h.ask(b, "e", "j", "1"), 1);
    // Unswept at the `w`: error_lease_expired.
    h.skip_to(1_000);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::ErrorLeaseExpired);
    // Swept first: the state went with the holder.
    h.at(1_000);
    assert_eq!(h.ask(b, "w", "j", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn releasing_a_token_held_by_two_phase_state_clears_the_state() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = acquired(h.ask(a, "e", "k", ""), 33);
    assert_eq!(h.ask(b, "r", "k", &ta.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::ErrorNotEnqueued);
    acquired(h.ask(a, "e", "k", ""), 33);

    // Same for a waiter granted before its `w`.
    let [c, d] = [h.client(), h.client()];
    let tc = granted(h.ask(c, "l", "j", "0"), 33);
    assert_eq!(h.ask(d, "e", "j", ""), Response::Queued);
    assert_eq!(h.ask(c, "r", "j", &tc.to_string()), Response::Ok);
    h.quiet(d);
    let granted_to_d = h.stats_value()["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .any(|lock| lock["key"] == "j" && lock["owner_conn_id"] == 103);
    assert!(granted_to_d, "j is held by d: {}", h.stats());
    h.finish();
}

#[test]
fn semaphore_two_phase_follows_the_same_rules() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = acquired(h.ask(a, "se", "s", "2 5"), 5);
    acquired(h.ask(b, "se", "s", "2"), 33);
    assert_eq!(h.ask(c, "se", "s", "3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(c, "se", "s", "2 6"), Response::Queued);
    assert_eq!(h.ask(c, "se", "s", "2"), Response::ErrorAlreadyEnqueued);
    h.block(c, "sw", "s", "10");
    h.at(2_000);
    assert_eq!(
        h.ask(a, "sw", "s", "0"),
        Response::Granted {
            token: ta,
            lease_s: 5
        }
    );
    // a's lease now ends at 7 000, and c gets the slot then.
    h.at(6_999);
    h.quiet(c);
    h.at(7_000);
    granted(h.reply(c), 6);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Semaphores (§8.1, §8.8, §8.9)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_semaphore_admits_limit_holders_and_queues_the_next() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "sl", "s", "0 3 10"), 10);
    let tb = granted(h.ask(b, "sl", "s", "0 3"), 33);
    granted(h.ask(c, "sl", "s", "0 3"), 33);
    assert_eq!(h.ask(d, "sl", "s", "0 3"), Response::Timeout);
    h.block(d, "sl", "s", "10 3 4");
    let semaphores = &h.stats_value()["semaphores"];
    assert_eq!(
        semaphores,
        &serde_json::json!([{"key": "s", "limit": 3, "holders": 3, "waiters": 1}])
    );
    assert_eq!(h.ask(a, "sr", "s", &tb.to_string()), Response::Ok);
    granted(h.reply(d), 4);
    assert_eq!(h.holders(), 3);
    h.finish();
}

#[test]
fn semaphore_limit_must_match_while_the_entry_exists_even_idle() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(b, "sl", "s", "5 3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(b, "se", "s", "3"), Response::ErrorLimitMismatch);
    assert_eq!((h.holders(), h.waiters()), (1, 0));
    assert_eq!(h.ask(a, "sr", "s", &ta.to_string()), Response::Ok);
    // Idle but not collected: the limit still holds.
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    // A lock of the same name is another resource.
    granted(h.ask(b, "l", "s", "0"), 33);

    // Idle since 0: collected at the tick at 60 s; then the key is free for any limit.
    h.at(59_999);
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    h.at(60_000);
    assert_eq!(h.resources(), 1);
    granted(h.ask(b, "sl", "s", "0 3"), 33);
    assert_eq!(h.ask(a, "sl", "s", "0 2"), Response::ErrorLimitMismatch);
    h.finish();
}

#[test]
fn one_client_may_hold_several_slots_of_a_semaphore() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    let t2 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    let t3 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    assert!(t1.fence < t2.fence && t2.fence < t3.fence);
    assert_eq!(h.ask(a, "sl", "s", "0 3"), Response::Timeout);
    assert_eq!(h.ask(a, "sr", "s", &t2.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "sr", "s", &t2.to_string()), Response::Error);
    granted(h.ask(a, "sl", "s", "0 3"), 33);
    assert_eq!(h.holders(), 3);
    h.finish();
}

#[test]
fn a_limit_one_semaphore_is_listed_under_locks() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(9);
    let ts = granted(h.ask(a, "sl", "s", "0 1 20"), 20);
    granted(h.ask(a, "l", "s", "0 10"), 10);
    let stats = h.stats_value();
    let mut locks = stats["locks"].as_array().expect("locks").clone();
    locks.sort_by(|x, y| {
        x["lease_expires_in_s"]
            .as_f64()
            .partial_cmp(&y["lease_expires_in_s"].as_f64())
            .expect("numbers")
    });
    assert_eq!(
        serde_json::Value::Array(locks),
        serde_json::json!([
            {"key": "s", "owner_conn_id": 9, "lease_expires_in_s": 10.0, "waiters": 0},
            {"key": "s", "owner_conn_id": 9, "lease_expires_in_s": 20.0, "waiters": 0},
        ])
    );
    assert_eq!(stats["semaphores"], serde_json::json!([]));
    assert_eq!(h.ask(a, "sr", "s", &ts.to_string()), Response::Ok);
    assert_eq!(
        h.stats_value()["idle_locks"],
        serde_json::json!([{"key": "s", "idle_s": 0.0}])
    );
    assert_eq!(h.stats_value()["idle_semaphores"], serde_json::json!([]));
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// --max-locks and --max-waiters (§8.3, §8.6)
// ---------------------------------------------------------------------------------------------

#[test]
fn max_locks_counts_both_namespaces_and_spares_existing_keys() {
    let mut h = Harness::new(config(|c| c.max_locks = 2));
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "a", "0"), 33);
    let tsa = granted(h.ask(a, "sl", "a", "0 2"), 33);
    assert_eq!(h.ask(b, "l", "b", "0"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "l", "b", "10"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "sl", "b", "0 2"), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "e", "b", ""), Response::ErrorMaxLocks);
    assert_eq!(h.ask(b, "se", "b", "2"), Response::ErrorMaxLocks);
    assert_eq!(h.resources(), 2);

    // Existing keys keep working at the cap.
    assert_eq!(h.ask(b, "l", "a", "0"), Response::Timeout);
    assert_eq!(h.ask(b, "e", "a", ""), Response::Queued);
    let tsb = granted(h.ask(b, "sl", "a", "0 2"), 33);
    assert_eq!(h.ask(a, "r", "a", &ta.to_string()), Response::Ok);
    let tb = granted(h.ask(b, "w", "a", "0"), 33);
    for (cmd, token) in [("r", tb), ("sr", tsa), ("sr", tsb)] {
        assert_eq!(h.ask(b, cmd, "a", &token.to_string()), Response::Ok);
    }

    // Released entries keep their budget until idle GC removes them.
    assert_eq!(h.ask(c, "l", "b", "0"), Response::ErrorMaxLocks);
    h.at(60_000);
    assert_eq!(h.resources(), 0);
    granted(h.ask(c, "l", "b", "0"), 33);
    h.finish();
}

#[test]
fn max_waiters_refuses_blocking_try_and_two_phase_requests() {
    let mut h = Harness::new(config(|c| c.max_waiters = 1));
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0"), 33);
    h.block(b, "l", "k", "10");
    assert_eq!(h.ask(c, "l", "k", "10"), Response::ErrorMaxWaiters);
    // Even a try-lock reports the full queue rather than `timeout`.
    assert_eq!(h.ask(c, "l", "k", "0"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "e", "k", ""), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "w", "k", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.waiters(), 1);

    granted(h.ask(a, "sl", "s", "0 2"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(d, "se", "s", "2"), Response::Queued);
    assert_eq!(h.ask(c, "sl", "s", "5 2"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "sl", "s", "0 2"), Response::ErrorMaxWaiters);
    assert_eq!(h.ask(c, "se", "s", "2"), Response::ErrorMaxWaiters);
    assert_eq!(h.waiters(), 2);

    // Once b's wait ends the queue has room again.
    h.at(10_000);
    assert_eq!(h.reply(b), Response::Timeout);
    assert_eq!(h.ask(c, "l", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(c, "e", "k", ""), Response::Queued);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Idle GC (§8.7)
// ---------------------------------------------------------------------------------------------

#[test]
fn idle_gc_removes_an_entry_at_the_first_tick_after_max_idle() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    h.at(1_000);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // Idle since 2 000: 60 s have passed at 62 000, but ticks fall on multiples of 5 s.
    h.at(60_000);
    assert_eq!(h.resources(), 1);
    h.at(64_999);
    assert_eq!(h.resources(), 1);
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn activity_postpones_idle_gc() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(30_000);
    let tb = granted(h.ask(b, "l", "k", "0"), 33);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    h.at(89_999);
    assert_eq!(h.resources(), 1);
    h.at(90_000);
    assert_eq!(h.resources(), 0);

    // A wait that times out is activity too (at its end).
    let tk = granted(h.ask(a, "l", "k", "0 20"), 20);
    h.block(b, "l", "k", "10");
    h.at(100_000);
    assert_eq!(h.reply(b), Response::Timeout);
    h.at(105_000);
    assert_eq!(h.ask(a, "r", "k", &tk.to_string()), Response::Ok);
    h.at(164_999);
    assert_eq!(h.resources(), 1);
    h.at(165_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn an_entry_with_holders_or_waiters_is_never_collected() {
    let mut h = Harness::new(config(|c| c.gc_max_idle_ms = 0));
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0 100"), 100);
    h.block(b, "l", "k", "90");
    h.at(89_999);
    assert_eq!(h.resources(), 1);
    h.at(90_000);
    assert_eq!(h.reply(b), Response::Timeout);
    h.at(99_999);
    assert_eq!(h.resources(), 1);
    h.at(105_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn gc_max_idle_zero_removes_at_the_next_tick() {
    let mut h = Harness::new(config(|c| c.gc_max_idle_ms = 0));
    let a = h.client();
    h.at(2_000);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(4_999);
    assert_eq!(h.resources(), 1);
    h.at(5_000);
    assert_eq!(h.resources(), 0);
    // Idle right after the tick at 5 000: collected at the next one.
    let tj = granted(h.ask(a, "sl", "j", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "j", &tj.to_string()), Response::Ok);
    h.at(9_999);
    assert_eq!(h.resources(), 1);
    h.at(10_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn gc_interval_sets_the_ticks() {
    let mut h = Harness::new(config(|c| {
        c.gc_interval_ms = 3_000;
        c.gc_max_idle_ms = 4_000;
    }));
    let a = h.client();
    h.at(500);
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    // Idle since 500: old enough from 4 500; the next tick is 6 000.
    h.at(5_999);
    assert_eq!(h.resources(), 1);
    h.at(6_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn failed_release_or_renew_is_not_activity() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    h.at(30_000);
    let forged = LeaseToken {
        fence: ta.fence,
        random: ta.random.wrapping_add(1),
    };
    for (cmd, arg) in [
        ("r", ta.to_string()),
        ("n", ta.to_string()),
        ("r", forged.to_string()),
        ("n", format!("{forged} 10")),
        ("r", ta.to_string().to_uppercase()),
        ("n", "junk".to_string()),
    ] {
        assert_eq!(h.ask(b, cmd, "k", &arg), Response::Error, "{cmd} k {arg}");
    }
    h.at(64_999);
    assert_eq!(h.resources(), 1);
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn successful_renew_is_activity() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 100"), 100);
    h.at(40_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(1))),
        Response::Renewed { lease_s: 1 }
    );
    // Expiry at 41 000 is the last activity.
    h.at(100_999);
    assert_eq!(h.resources(), 1);
    h.at(105_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}

#[test]
fn stats_lists_idle_entries_with_their_idle_time() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let tk = granted(h.ask(a, "l", "k", "0"), 33);
    h.at(2_000);
    assert_eq!(h.ask(a, "r", "k", &tk.to_string()), Response::Ok);
    h.at(3_000);
    let ts = granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "s", &ts.to_string()), Response::Ok);
    h.at(32_500);
    let stats = h.stats();
    assert_eq!(
        stats,
        r#"{"connections":1,"locks":[],"semaphores":[],"idle_locks":[{"key":"k","idle_s":30.5}],"idle_semaphores":[{"key":"s","idle_s":29.5}],"signal_channels":[],"slow_consumers_disconnected":0}"#
    );
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Disconnect (§11) and shutdown (§16)
// ---------------------------------------------------------------------------------------------

#[test]
fn disconnect_with_auto_release_frees_everything_the_client_had() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e, f, g] = [
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
    ];
    let tbc = granted(h.ask(b, "l", "c", "0"), 33);
    let tbd = granted(h.ask(b, "l", "d", "0"), 33);
    granted(h.ask(b, "sl", "s", "0 2"), 33);
    // a holds a lock, a semaphore slot and a two-phase grant, queues two-phase behind b,
    // subscribes, and finally blocks behind b.
    granted(h.ask(a, "l", "a", "0"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    acquired(h.ask(a, "e", "b", ""), 33);
    assert_eq!(h.ask(a, "e", "c", ""), Response::Queued);
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    h.block(c, "l", "a", "10");
    h.block(d, "l", "b", "10");
    h.block(e, "sl", "s", "10 2");
    h.block(f, "l", "c", "10");
    h.block(a, "l", "d", "10");
    h.block(g, "l", "d", "10");

    h.at(500);
    h.disconnect(a);
    granted(h.reply(c), 33);
    granted(h.reply(d), 33);
    granted(h.reply(e), 33);
    h.quiet(f);
    h.quiet(g);
    assert_eq!(
        h.ask(b, "signal", "x", "anyone?"),
        Response::Delivered { count: 0 }
    );
    assert!(h.pushes().is_empty());
    // a's queued `e` and blocked `l` are gone: f and g are next.
    assert_eq!(h.ask(b, "r", "c", &tbc.to_string()), Response::Ok);
    granted(h.reply(f), 33);
    assert_eq!(h.ask(b, "r", "d", &tbd.to_string()), Response::Ok);
    granted(h.reply(g), 33);
    assert_eq!(h.waiters(), 0);
    h.finish();
}

/// Thousands of keys, leases and two-phase states make the key, fence and two-phase indexes
/// resize (grow, then shrink as everything goes) a few entries per request; every entry stays
/// reachable in the middle of each resize.
#[test]
fn indexes_stay_consistent_while_they_resize() {
    const N: usize = 3_000;
    let mut h = Harness::new(EngineConfig {
        max_locks: N as u64,
        ..EngineConfig::default()
    });
    let [a, b] = [h.client(), h.client()];
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(h.apply(a, "e", key, ""), Outcome::Answered);
        assert_eq!(h.apply(b, "e", key, ""), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    let mut tokens = Vec::new();
    for pair in replies.chunks(2) {
        assert_eq!(pair[0].0, a);
        tokens.push(acquired(pair[0].1, 33));
        assert_eq!(pair[1], (b, Response::Queued));
    }
    // a collects and releases every grant; each release grants b's queued entry.
    for (i, (key, token)) in keys.iter().zip(&tokens).enumerate() {
        assert_eq!(h.apply(a, "w", key, "0"), Outcome::Answered);
        assert_eq!(h.apply(a, "r", key, &token.to_string()), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    for (pair, token) in replies.chunks(2).zip(&tokens) {
        assert_eq!(
            pair[0],
            (
                a,
                Response::Granted {
                    token: *token,
                    lease_s: 33
                }
            )
        );
        assert_eq!(pair[1], (a, Response::Ok));
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(h.apply(b, "w", key, "0"), Outcome::Answered);
        if i % 97 == 0 {
            h.engine.check_invariants();
        }
    }
    let replies = std::mem::take(&mut h.out.replies);
    assert_eq!(replies.len(), N);
    for (to, response) in replies {
        assert_eq!(to, b);
        assert!(
            !tokens.contains(&granted(response, 33)),
            "a token granted twice"
        );
    }
    assert_eq!(h.holders(), N);
    h.finish();
}

#[test]
fn a_client_holding_many_leases_is_released_in_slices_in_grant_order() {
    let count = 2 * EXPIRE_BUDGET + 10;
    let mut h = Harness::new(EngineConfig {
        max_locks: count as u64,
        ..EngineConfig::default()
    });
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    let keys: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
    let tokens = h.lock_all(a, &keys);
    h.block(b, "l", &keys[0], "10");
    h.block(c, "l", &keys[count - 1], "10");

    // The disconnect itself releases one budget's worth, oldest grant first.
    h.disconnect(a);
    granted(h.reply(b), 33);
    h.quiet(c);
    assert_eq!(h.holders(), count - EXPIRE_BUDGET + 1);
    assert_eq!(h.engine.next_deadline(), Some(Millis::ZERO), "work is left");
    // A lease still queued for release can be released by token meanwhile.
    let queued = count - 2;
    assert_eq!(
        h.ask(d, "r", &keys[queued], &tokens[queued].to_string()),
        Response::Ok
    );
    // Each expire call releases one more budget's worth.
    assert!(h.engine.expire(h.now, &mut h.out), "more to release");
    h.check(None);
    h.quiet(c);
    assert_eq!(h.holders(), count - 2 * EXPIRE_BUDGET);
    assert!(!h.engine.expire(h.now, &mut h.out), "all released");
    h.check(None);
    granted(h.reply(c), 33);
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn the_memory_of_a_departed_clients_locks_is_given_back_a_budget_per_turn() {
    const N: usize = 3 * TRIM_BUDGET;
    let mut h = Harness::new(EngineConfig {
        max_locks: N as u64 + 1,
        gc_interval_ms: 1_000,
        gc_max_idle_ms: 0,
        ..EngineConfig::default()
    });
    let (a, b) = (h.client(), h.client());
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    h.lock_all(a, &keys);
    let capacities = |e: &Engine| {
        [
            e.leases.capacity(),
            e.timers.capacity(),
            e.keys.resources.capacity(),
        ]
    };
    assert!(capacities(&h.engine).iter().all(|&c| c >= N));
    h.disconnect(a);
    // Release everything first (a budget per turn), then count the turns of trimming alone.
    while !h.engine.releasing.is_empty() {
        h.engine.expire(h.now, &mut h.out);
    }
    h.check(None);
    // Meanwhile another client holds a lock, released and taken again between turns: its lease
    // and timer must not keep the slabs' ends from emptying.
    let mut token = granted(h.ask(b, "l", "other", "0 10"), 10);
    let mut turns = 0;
    while capacities(&h.engine)[..2].iter().any(|&c| c > 2048) {
        assert!(
            h.engine.wants_trim(),
            "trimming stalled: {:?}",
            capacities(&h.engine)
        );
        assert_eq!(
            h.engine.next_deadline(),
            Some(Millis::ZERO),
            "trimming is work"
        );
        h.engine.expire(h.now, &mut h.out);
        assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
        token = granted(h.ask(b, "l", "other", "0 10"), 10);
        turns += 1;
    }
    h.check(None);
    // Leases and timers each left N - 1024 vacant entries to drop, a budget per turn.
    assert!(
        turns >= 2 * (N - 1024) / TRIM_BUDGET,
        "trimmed in {turns} turns"
    );
    assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
    // The idle resources go at the next GC pass and their slab follows, while the other client
    // keeps taking its lock.
    for _ in 0..4 {
        h.advance(500);
        let token = granted(h.ask(b, "l", "other", "0 10"), 10);
        assert_eq!(h.ask(b, "r", "other", &token.to_string()), Response::Ok);
    }
    assert_eq!(h.resources(), 1);
    assert!(!h.engine.wants_trim());
    let resources = h.engine.keys.resources.capacity();
    assert!(resources <= 2048, "left: {resources} resources");
    h.finish();
}

#[test]
fn disconnects_in_one_turn_share_one_release_budget() {
    let half = EXPIRE_BUDGET / 2;
    let mut h = Harness::new(EngineConfig {
        max_locks: 3 * half as u64,
        ..EngineConfig::default()
    });
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let keys: Vec<String> = (0..3 * half).map(|i| format!("k{i}")).collect();
    for (owner, keys) in [a, b, c].into_iter().zip(keys.chunks(half)) {
        h.lock_all(owner, keys);
    }
    h.block(d, "l", &keys[2 * half - 1], "10");
    h.block(e, "l", &keys[2 * half], "10");

    // a and b use up the budget between them; c's leases wait for the next expire call.
    h.disconnect(a);
    h.disconnect(b);
    granted(h.reply(d), 33);
    h.disconnect(c);
    h.quiet(e);
    assert_eq!(h.holders(), half + 1);
    assert_eq!(h.engine.next_deadline(), Some(Millis::ZERO), "work is left");
    assert!(!h.engine.expire(h.now, &mut h.out), "all released");
    h.check(None);
    granted(h.reply(e), 33);
    // The expire call restored the budget: a departure now releases at once again.
    h.disconnect(d);
    assert_eq!(h.holders(), 1);
    h.finish();
}

#[test]
fn disconnect_without_auto_release_keeps_holdings_but_drops_waits() {
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let [a, b, c, d, e, f] = [
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
        h.client(),
    ];
    let tbc = granted(h.ask(b, "l", "c", "0"), 33);
    let tbd = granted(h.ask(b, "l", "d", "0"), 33);
    let ta = granted(h.ask(a, "l", "a", "0 10"), 10);
    acquired(h.ask(a, "e", "b", "10"), 10);
    assert_eq!(h.ask(a, "e", "c", ""), Response::Queued);
    assert_eq!(h.ask(a, "listen", "x", "grp"), Response::Ok);
    h.block(c, "l", "a", "30");
    h.block(d, "l", "b", "30");
    h.block(e, "l", "c", "30");
    h.block(a, "l", "d", "30");
    h.block(f, "l", "d", "30");

    h.at(1_000);
    h.disconnect(a);
    h.quiet(c);
    h.quiet(d);
    // c, d, e and f still wait; a's own `e` and `l` left their queues.
    assert_eq!((h.holders(), h.waiters()), (4, 4));
    assert_eq!(
        h.ask(b, "signal", "x", "anyone?"),
        Response::Delivered { count: 0 }
    );
    // Another client may release a's lock by token.
    assert_eq!(h.ask(b, "r", "a", &ta.to_string()), Response::Ok);
    granted(h.reply(c), 33);
    // a's two-phase grant on b stays held until its lease runs out.
    h.at(9_999);
    h.quiet(d);
    h.at(10_000);
    granted(h.reply(d), 33);
    // a's waits are gone.
    assert_eq!(h.ask(b, "r", "c", &tbc.to_string()), Response::Ok);
    granted(h.reply(e), 33);
    assert_eq!(h.ask(b, "r", "d", &tbd.to_string()), Response::Ok);
    granted(h.reply(f), 33);

    // A new client in a's slot inherits nothing.
    let a2 = ClientId {
        index: a.index,
        generation: a.generation + 1,
    };
    h.connect(a2, 999);
    assert_eq!(h.ask(a2, "w", "b", "0"), Response::ErrorNotEnqueued);
    assert_eq!(h.ask(a2, "e", "b", ""), Response::Queued);
    h.finish();
}

#[test]
fn an_orphaned_lease_still_expires_and_can_be_renewed_by_token() {
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    h.disconnect(a);
    h.at(4_000);
    assert_eq!(
        h.ask(b, "sn", "s", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    h.at(8_999);
    assert_eq!(h.holders(), 1);
    h.at(9_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn a_departing_client_is_never_granted_the_lock_it_releases() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    granted(h.ask(a, "l", "k", "0"), 33);
    acquired(h.ask(a, "se", "s", "1"), 33);
    assert_eq!(h.ask(b, "se", "s", "1"), Response::Queued);
    h.block(a, "l", "k", "10");
    h.block(b, "l", "k", "10");
    // a's own waiter sits ahead of b's; it must go before a's holdings (lock and two-phase
    // semaphore grant) are released, or a would be granted its own lock after leaving.
    h.disconnect(a);
    granted(h.reply(b), 33);
    granted(h.ask(b, "sw", "s", "0"), 33);
    h.finish();
}

#[test]
fn stats_keeps_the_owner_of_a_holding_left_behind_without_auto_release() {
    // §10: `owner_conn_id` is the connection id of the holder. With auto-release off the
    // departed connection still holds the lock until expiry or release by token (§11), so its
    // id stays on show (the reference keeps it in the holder record).
    let mut h = Harness::new(config(|c| c.auto_release_on_disconnect = false));
    let a = h.client_with_serial(77);
    granted(h.ask(a, "l", "k", "0 10"), 10);
    h.disconnect(a);
    assert_eq!(
        h.stats_value()["locks"],
        serde_json::json!([{"key": "k", "owner_conn_id": 77, "lease_expires_in_s": 10.0, "waiters": 0}])
    );
    h.finish();
}

#[test]
fn cancel_waits_answers_every_waiting_request_and_keeps_queued_enqueues() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, e] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    granted(h.ask(a, "sl", "s", "0 2"), 33);
    h.block(b, "l", "k", "10");
    assert_eq!(h.ask(c, "e", "k", ""), Response::Queued);
    assert_eq!(h.ask(d, "e", "k", ""), Response::Queued);
    h.block(d, "w", "k", "10");
    h.block(e, "sl", "s", "10 2");

    h.at(500);
    h.cancel_waits();
    assert_eq!(h.reply(b), Response::Error);
    assert_eq!(h.reply(d), Response::Error);
    assert_eq!(h.reply(e), Response::Error);
    h.quiet(c);
    assert_eq!(h.waiters(), 1);
    assert_eq!(h.ask(d, "w", "k", "0"), Response::ErrorNotEnqueued);
    // c's enqueue survived and is still first in line.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.ask(c, "w", "k", "0"), 33);
    // Nothing is left to cancel.
    h.cancel_waits();
    h.finish();
}

#[test]
fn server_level_requests_are_refused_by_the_engine() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    assert_eq!(h.ask(a, "stats", "_", ""), Response::Error);
    assert_eq!(h.ask(a, "ping", "_", ""), Response::Error);
    assert_eq!(h.ask(a, "auth", "_", "secret"), Response::Error);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Stats (§10)
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_of_an_empty_engine_has_every_array() {
    let h = Harness::with_defaults();
    assert_eq!(
        h.stats(),
        r#"{"connections":0,"locks":[],"semaphores":[],"idle_locks":[],"idle_semaphores":[],"signal_channels":[],"slow_consumers_disconnected":0}"#
    );
    h.finish();
}

#[test]
fn stats_json_has_the_reference_fields_in_order() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(25);
    let b = h.client_with_serial(26);
    let c = h.client_with_serial(27);
    let d = h.client_with_serial(28);
    granted(h.ask(a, "l", "orders", "0 30"), 30);
    granted(h.ask(b, "sl", "pool", "0 2"), 33);
    granted(h.ask(c, "sl", "pool", "0 2"), 33);
    h.block(d, "sl", "pool", "60 2");
    let thc = granted(h.ask(b, "l", "hc", "0"), 33);
    assert_eq!(h.ask(b, "r", "hc", &thc.to_string()), Response::Ok);
    assert_eq!(h.ask(c, "listen", "events.>", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "jobs.>", "workers"), Response::Ok);
    assert_eq!(h.ask(b, "listen", "jobs.>", " workers "), Response::Ok);
    h.at(300);

    let stats = h.stats();
    let head = r#"{"connections":4,"locks":[{"key":"orders","owner_conn_id":25,"lease_expires_in_s":29.7,"waiters":0}],"semaphores":[{"key":"pool","limit":2,"holders":2,"waiters":1}],"idle_locks":[{"key":"hc","idle_s":0.3}],"idle_semaphores":[],"signal_channels":["#;
    let plain = r#"{"pattern":"events.>","listeners":1}"#;
    let grouped = r#"{"pattern":"jobs.>","group":"workers","listeners":2}"#;
    let tail = r#","slow_consumers_disconnected":0}"#;
    assert!(
        stats == format!("{head}{plain},{grouped}]{tail}")
            || stats == format!("{head}{grouped},{plain}]{tail}"),
        "{stats}"
    );
    let value: serde_json::Value = serde_json::from_str(&stats).expect("valid JSON");
    assert_eq!(value["locks"][0]["lease_expires_in_s"].as_f64(), Some(29.7));
    assert!(value["locks"][0]["owner_conn_id"].is_u64());
    h.finish();
}

#[test]
fn stats_lease_expiry_is_fractional_and_clamped_at_zero() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(41);
    let b = h.client_with_serial(42);
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "10");
    h.at(250);
    let lock = |h: &Harness| h.stats_value()["locks"][0].clone();
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 41, "lease_expires_in_s": 0.75, "waiters": 1})
    );
    // Passed but not swept: still listed, at 0.
    h.skip_to(1_500);
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 41, "lease_expires_in_s": 0.0, "waiters": 1})
    );
    h.at(1_500);
    granted(h.reply(b), 33);
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 42, "lease_expires_in_s": 33.0, "waiters": 0})
    );
    h.finish();
}

#[test]
fn stats_keys_with_invalid_utf8_are_replaced() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    // The wire accepts any byte but white space in a key; build one by hand.
    let key = [b'k', 0xff];
    let request = crate::protocol::Request::Acquire {
        ns: crate::protocol::Namespace::Lock,
        key: &key,
        timeout_s: 0,
        limit: 1,
        lease_s: None,
    };
    let outcome = h.engine.apply(h.now, a, &request, &mut h.out);
    h.check(Some((a, outcome)));
    granted(h.reply(a), 33);
    assert_eq!(h.stats_value()["locks"][0]["key"], "k\u{fffd}");
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Signals through the engine (§13)
// ---------------------------------------------------------------------------------------------

#[test]
fn listen_unlisten_and_signal_answer_as_specified() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, p] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "a.b", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "a.b", ""), Response::Ok);
    assert_eq!(h.ask(b, "listen", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(c, "listen", ">", "g"), Response::Ok);
    assert_eq!(h.ask(d, "listen", ">", "g"), Response::Ok);
    assert_eq!(h.ask(a, "listen", "a*", ""), Response::Error);
    assert_eq!(h.ask(a, "unlisten", "a.>.b", ""), Response::Error);
    assert_eq!(h.engine.counts().3, 4);

    assert_eq!(
        h.ask(p, "signal", "a.b", "  hello world "),
        Response::Delivered { count: 3 }
    );
    let payload = "  hello world ".to_string();
    assert_eq!(
        h.pushes(),
        vec![
            (a, "a.b".to_string(), payload.clone()),
            (b, "a.b".to_string(), payload.clone()),
            (c, "a.b".to_string(), payload.clone()),
        ]
    );
    // The group takes turns.
    assert_eq!(
        h.ask(p, "signal", "a.b", "again"),
        Response::Delivered { count: 3 }
    );
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![a, b, d]);

    assert_eq!(h.ask(b, "unlisten", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(b, "unlisten", "a.*", ""), Response::Ok);
    assert_eq!(h.ask(a, "unlisten", "a.b", "g"), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "a.c", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes().len(), 1);
    // Only the `>` group matches here.
    assert_eq!(
        h.ask(p, "signal", "nobody.else", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.pushes().len(), 1);
    // The publisher is not excluded; the `>` group (its turn is c's) gets its copy too.
    assert_eq!(h.ask(p, "listen", "self", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "self", "me"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(
        h.pushes(),
        vec![
            (p, "self".to_string(), "me".to_string()),
            (c, "self".to_string(), "me".to_string()),
        ]
    );
    h.finish();
}

#[test]
fn pushes_arrive_in_publish_order_even_while_waiting() {
    let mut h = Harness::with_defaults();
    let [a, p] = [h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "jobs", ""), Response::Ok);
    let tp = granted(h.ask(p, "l", "k", "0"), 33);
    h.block(a, "l", "k", "10");
    for n in 1..=3 {
        assert_eq!(
            h.ask(p, "signal", "jobs", &n.to_string()),
            Response::Delivered { count: 1 }
        );
    }
    let payloads: Vec<String> = h.pushes().into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(payloads, ["1", "2", "3"]);
    h.quiet(a);
    assert_eq!(h.ask(p, "r", "k", &tp.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    h.finish();
}

#[test]
fn a_subscriber_without_room_is_evicted_through_the_outbox() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d, p] = [h.client(), h.client(), h.client(), h.client(), h.client()];
    for x in [a, b] {
        assert_eq!(h.ask(x, "listen", "ch", ""), Response::Ok);
    }
    for x in [c, d] {
        assert_eq!(h.ask(x, "listen", "ch", "g"), Response::Ok);
    }
    // `sig ch x\n` is 9 bytes: room for exactly one.
    h.set_room(a, 9);
    h.set_room(b, 8);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(h.evictions(), vec![b]);
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![a, c]);
    // The server disconnects the slow consumer; until then it stays subscribed.
    h.disconnect(b);

    // a is full now; d is the group's turn but full, so c takes it.
    h.set_room(d, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 1 }
    );
    assert_eq!(h.evictions(), vec![a]);
    let receivers: Vec<ClientId> = h.pushes().into_iter().map(|(x, ..)| x).collect();
    assert_eq!(receivers, vec![c]);
    h.disconnect(a);

    // Every member full: the member tried first (c, by turn) is evicted, nothing is counted.
    h.set_room(c, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.evictions(), vec![c]);
    assert!(h.pushes().is_empty());
    h.finish();
}

#[test]
fn a_slow_consumer_is_evicted_once_per_signal() {
    let mut h = Harness::with_defaults();
    let [a, p] = [h.client(), h.client()];
    for (pattern, group) in [("ch", ""), (">", ""), ("ch", "g"), ("*", "h")] {
        assert_eq!(h.ask(a, "listen", pattern, group), Response::Ok);
    }
    h.set_room(a, 0);
    assert_eq!(
        h.ask(p, "signal", "ch", "x"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.evictions(), vec![a]);
    h.disconnect(a);
    h.finish();
}

#[test]
fn max_subscriptions_caps_new_pairs_per_client() {
    let mut h = Harness::new(config(|c| c.subscriptions.per_client = 2));
    let [a, b, p] = [h.client(), h.client(), h.client()];
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "y", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "z", ""), Response::Error);
    assert_eq!(h.ask(a, "listen", "x", "g"), Response::Error);
    assert_eq!(h.ask(a, "listen", "x", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "z", "1"),
        Response::Delivered { count: 0 }
    );
    // The cap is per client.
    assert_eq!(h.ask(b, "listen", "z", ""), Response::Ok);
    assert_eq!(h.ask(b, "listen", "x", ""), Response::Ok);
    // Unlisten frees a unit.
    assert_eq!(h.ask(a, "unlisten", "y", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "z", ""), Response::Ok);
    assert_eq!(
        h.ask(p, "signal", "z", "1"),
        Response::Delivered { count: 2 }
    );
    assert_eq!(
        h.ask(p, "signal", "y", "1"),
        Response::Delivered { count: 0 }
    );
    assert_eq!(h.pushes().len(), 2);
    h.finish();
}

#[test]
fn stats_lists_signal_channels_until_their_listeners_leave() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    for x in [a, b] {
        assert_eq!(h.ask(x, "listen", "events.>", ""), Response::Ok);
        assert_eq!(h.ask(x, "listen", "jobs.*", "workers"), Response::Ok);
    }
    assert_eq!(h.ask(c, "listen", "jobs.*", "other"), Response::Ok);
    assert_eq!(h.ask(c, "listen", "jobs.*", ""), Response::Ok);
    let channels = |h: &Harness| {
        let mut lines: Vec<String> = h.stats_value()["signal_channels"]
            .as_array()
            .expect("signal_channels")
            .iter()
            .map(|entry| entry.to_string())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        channels(&h),
        [
            r#"{"group":"other","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"group":"workers","listeners":2,"pattern":"jobs.*"}"#,
            r#"{"listeners":1,"pattern":"jobs.*"}"#,
            r#"{"listeners":2,"pattern":"events.>"}"#,
        ]
    );
    h.disconnect(b);
    assert_eq!(h.ask(c, "unlisten", "jobs.*", ""), Response::Ok);
    assert_eq!(
        channels(&h),
        [
            r#"{"group":"other","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"group":"workers","listeners":1,"pattern":"jobs.*"}"#,
            r#"{"listeners":1,"pattern":"events.>"}"#,
        ]
    );
    h.disconnect(a);
    h.disconnect(c);
    assert!(channels(&h).is_empty());
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Expiry spread over several loop turns, extreme values
// ---------------------------------------------------------------------------------------------

#[test]
fn a_mass_expiry_is_spread_over_calls_and_requests_in_between_evict_first() {
    let slots = super::EXPIRE_BUDGET + 4;
    let mut h = Harness::with_defaults();
    let [a, c] = [h.client(), h.client()];
    let arg = format!("0 {slots} 1");
    for _ in 0..slots {
        granted(h.ask(a, "sl", "s", &arg), 1);
    }
    h.skip_to(1_000);
    // Each call does a bounded amount of work (timer cascading included) and says whether
    // more is due; the budget runs out with the last 4 holders still listed.
    for _ in 0..3 {
        if h.holders() == 4 {
            break;
        }
        assert!(h.engine.expire(h.now, &mut h.out), "more is due");
        h.check(None);
    }
    assert_eq!(h.holders(), 4);
    // A request on the semaphore evicts the passed holders the sweep has not reached yet.
    granted(h.ask(c, "sl", "s", &arg), 1);
    assert_eq!(h.holders(), 1);
    assert!(!h.engine.expire(h.now, &mut h.out), "nothing left");
    h.check(None);
    h.finish();
}

#[test]
fn the_largest_lease_and_timeout_are_accepted() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let max = crate::protocol::MAX_SECONDS;
    let ta = granted(h.ask(a, "l", "k", &format!("0 {max}")), max);
    h.block(b, "l", "k", &max.to_string());
    assert_eq!(
        h.stats_value()["locks"][0]["lease_expires_in_s"].as_f64(),
        Some(max as f64)
    );
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(max))),
        Response::Renewed { lease_s: max }
    );
    h.advance(86_400_000);
    h.quiet(b);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    granted(h.reply(b), 33);
    h.finish();
}

#[test]
fn an_enqueue_behind_the_clients_own_lock_is_granted_when_it_lets_go() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "l", "k", "0"), 33);
    assert_eq!(h.ask(a, "e", "k", "5"), Response::Queued);
    assert_eq!(h.ask(a, "w", "k", "0"), Response::Timeout);
    assert_eq!(h.ask(a, "e", "k", "5"), Response::Queued);
    assert_eq!(h.ask(a, "r", "k", &t1.to_string()), Response::Ok);
    let t2 = granted(h.ask(a, "w", "k", "1"), 5);
    assert!(t2.fence > t1.fence);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Leak check over a long mixed scenario
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Drives random traffic from a few clients over a few keys, with clock jumps, skipped timer
/// runs, reconnects, slow consumers and one shutdown cancel; then everyone leaves and the
/// engine must end up empty.
fn mixed_scenario(config: EngineConfig, seed: u64) {
    const KEYS: [&str; 3] = ["a", "b", "c"];
    const CHANNELS: [&str; 3] = ["a", "a.b", "b.c"];
    const PATTERNS: [&str; 5] = ["a", "a.b", "a.*", ">", "*.c"];
    let mut h = Harness::new(config);
    let mut rng = Rng(seed);
    let mut clients: Vec<ClientId> = (0..6).map(|_| h.client()).collect();
    // Tokens seen, with the namespace prefix ("" or "s") and key they were granted for.
    let mut tokens: Vec<(&str, &str, LeaseToken)> = Vec::new();
    // The (namespace prefix, key) of each client's latest request, to file the tokens of grants.
    let mut last: HashMap<ClientId, (&str, &str)> = HashMap::new();
    let mut generation = 1;
    for step in 0..4_000 {
        for client in h.evictions() {
            h.disconnect(client);
            let slot = clients.iter().position(|&x| x == client).expect("known");
            generation += 1;
            clients[slot] = ClientId {
                index: client.index,
                generation,
            };
            h.connect(clients[slot], u64::from(generation));
        }
        for &client in &clients {
            let inbox = h.inbox.entry(client).or_default();
            while let Some(response) = inbox.pop_front() {
                if let Response::Granted { token, .. } | Response::Acquired { token, .. } = response
                {
                    let (ns, key) = last[&client];
                    tokens.push((ns, key, token));
                    if tokens.len() > 32 {
                        tokens.remove(0);
                    }
                }
            }
        }
        h.pushes();
        if step == 2_000 {
            h.cancel_waits();
            continue;
        }
        match rng.below(20) {
            0..=2 => {
                let t = h.now.0 + rng.below(1_500);
                match rng.below(4) {
                    0 => h.skip_to(t),
                    1 => h.jump_to(t),
                    _ => h.at(t),
                }
                continue;
            }
            3 => {
                let client = clients[rng.below(clients.len() as u64) as usize];
                h.disconnect(client);
                let slot = clients.iter().position(|&x| x == client).expect("known");
                generation += 1;
                clients[slot] = ClientId {
                    index: client.index,
                    generation,
                };
                h.connect(clients[slot], u64::from(generation));
                continue;
            }
            _ => {}
        }
        let idle: Vec<ClientId> = clients
            .iter()
            .copied()
            .filter(|c| !h.waiting.contains(c))
            .collect();
        let Some(&client) = (!idle.is_empty()).then(|| rng.pick(&idle)) else {
            continue;
        };
        let ns = *rng.pick(&["", "s"]);
        let key = *rng.pick(&KEYS);
        let limit = if ns == "s" {
            format!(" {}", 2 + rng.below(2))
        } else {
            String::new()
        };
        let lease = 1 + rng.below(3);
        let (cmd, arg) = match rng.below(10) {
            0 | 1 => ("l", format!("{}{limit} {lease}", rng.below(3))),
            2 | 3 => {
                let Some(&(tns, tkey, token)) = (!tokens.is_empty()).then(|| rng.pick(&tokens))
                else {
                    continue;
                };
                let cmd = if rng.below(2) == 0 { "r" } else { "n" };
                last.insert(client, (tns, tkey));
                let outcome = h.req(client, &format!("{tns}{cmd}"), tkey, &token.to_string());
                assert_eq!(outcome, Outcome::Answered);
                continue;
            }
            4 => ("e", format!("{} {lease}", limit.trim())),
            5 => ("w", rng.below(3).to_string()),
            6 => {
                let cmd = *rng.pick(&["listen", "unlisten"]);
                let group = *rng.pick(&["", "", "g"]);
                let pattern = *rng.pick(&PATTERNS);
                h.req(client, cmd, pattern, group);
                continue;
            }
            7 => {
                if rng.below(4) == 0 {
                    let slow = *rng.pick(&clients);
                    h.set_room(slow, 0);
                }
                let channel = *rng.pick(&CHANNELS);
                h.req(client, "signal", channel, "payload");
                continue;
            }
            _ => ("l", format!("0{limit}")),
        };
        last.insert(client, (ns, key));
        h.req(client, &format!("{ns}{cmd}"), key, arg.trim());
    }
    for client in h.evictions() {
        h.disconnect(client);
    }
    for inbox in h.inbox.values_mut() {
        inbox.clear();
    }
    h.finish();
}

#[test]
fn a_long_mixed_scenario_leaves_nothing_behind() {
    for seed in 1..=4 {
        mixed_scenario(EngineConfig::default(), seed);
    }
}

#[test]
fn a_long_mixed_scenario_with_caps_and_without_auto_release_leaves_nothing_behind() {
    for seed in 11..=14 {
        mixed_scenario(
            config(|c| {
                c.max_locks = 4;
                c.max_waiters = 2;
                c.subscriptions.per_client = 2;
                c.auto_release_on_disconnect = false;
                c.gc_max_idle_ms = 3_000;
                c.gc_interval_ms = 1_000;
            }),
            seed,
        );
    }
}
