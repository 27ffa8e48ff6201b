//! The harness every scenario test runs on: a recording [`Outbox`], an [`Engine`] with an explicit
//! clock and connected clients, and the checks it makes after every step (see the parent module).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::clock::Millis;
use crate::engine::{ClientId, Engine, EngineConfig, Outbox, Outcome, Push, ServerFigures};
use crate::protocol::Response;
use crate::protocol::frame::{Decoded, FrameDecoder};
use crate::protocol::request::parse;
use crate::token::{LeaseToken, TokenIssuer};

/// What the engine sent during one step, plus the per-client room for signal pushes.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) replies: Vec<(ClientId, Response)>,
    pub(super) pushes: Vec<(ClientId, String, String)>,
    pub(super) evictions: Vec<ClientId>,
    /// Bytes of pushes each client can still take; a client missing here has unlimited room.
    pub(super) room: HashMap<ClientId, usize>,
    /// Clients that have left: like the server, the recorder says they have no room and ignores
    /// their eviction.
    pub(super) gone: HashSet<ClientId>,
    /// Replies and pushes in the order they were sent, as wire-like text.
    pub(super) trace: Vec<(ClientId, String)>,
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
pub(super) struct Harness {
    pub(super) engine: Engine,
    pub(super) out: Recorder,
    pub(super) now: Millis,
    pub(super) next_index: u32,
    pub(super) connected: HashSet<ClientId>,
    /// Clients whose request waits in the engine (no reply yet).
    pub(super) waiting: HashSet<ClientId>,
    pub(super) inbox: HashMap<ClientId, VecDeque<Response>>,
    /// Every token seen in a reply, by fence: a fence always names the same token.
    pub(super) tokens: HashMap<u64, LeaseToken>,
}

impl Harness {
    pub(super) fn new(config: EngineConfig) -> Harness {
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

    pub(super) fn with_defaults() -> Harness {
        Harness::new(EngineConfig::default())
    }

    /// Connects a new client whose connection serial is `serial`.
    pub(super) fn client_with_serial(&mut self, serial: u64) -> ClientId {
        let client = ClientId {
            index: self.next_index,
            generation: 1,
        };
        self.next_index += 1;
        self.connect(client, serial);
        client
    }

    /// Connects a new client; its serial is 100 + its slot.
    pub(super) fn client(&mut self) -> ClientId {
        self.client_with_serial(100 + u64::from(self.next_index))
    }

    pub(super) fn connect(&mut self, client: ClientId, serial: u64) {
        assert!(self.connected.insert(client), "{client:?} connected twice");
        self.engine.connect(client, serial);
        self.check(None);
    }

    /// Sends the request `cmd` / `key` / `arg` (three wire lines) from `client`.
    pub(super) fn req(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Outcome {
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
    pub(super) fn apply(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Outcome {
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
    pub(super) fn lock_all(&mut self, client: ClientId, keys: &[String]) -> Vec<LeaseToken> {
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
    pub(super) fn ask(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) -> Response {
        let outcome = self.req(client, cmd, key, arg);
        assert_eq!(outcome, Outcome::Answered, "{cmd} {key} {arg} waits");
        self.reply(client)
    }

    /// Sends a request that must wait.
    pub(super) fn block(&mut self, client: ClientId, cmd: &str, key: &str, arg: &str) {
        let outcome = self.req(client, cmd, key, arg);
        if outcome != Outcome::Waiting {
            panic!(
                "{cmd} {key} {arg} was answered at once: {:?}",
                self.reply(client)
            );
        }
    }

    /// The one unread reply of `client`.
    pub(super) fn reply(&mut self, client: ClientId) -> Response {
        let inbox = self.inbox.entry(client).or_default();
        let response = inbox
            .pop_front()
            .unwrap_or_else(|| panic!("no reply for {client:?}"));
        assert!(inbox.is_empty(), "more than one reply for {client:?}");
        response
    }

    /// Asserts that `client` has no unread reply.
    pub(super) fn quiet(&self, client: ClientId) {
        assert!(
            self.inbox.get(&client).is_none_or(VecDeque::is_empty),
            "unexpected reply for {client:?}: {:?}",
            self.inbox[&client]
        );
    }

    /// Moves the clock to `t` ms the way a punctual event loop does: it wakes at every
    /// [`Engine::next_deadline`] on the way and handles what is due then, so every timer is
    /// handled at its own deadline.
    pub(super) fn at(&mut self, t: u64) {
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
    pub(super) fn advance(&mut self, ms: u64) {
        self.at(self.now.0 + ms);
    }

    /// Moves the clock to `t` ms in one go and only then handles what is due: a loop that woke
    /// late, so every timer due on the way is handled at `t`.
    pub(super) fn jump_to(&mut self, t: u64) {
        self.skip_to(t);
        self.run_due();
    }

    /// Calls [`Engine::expire`] until it has nothing more due at the current time.
    pub(super) fn run_due(&mut self) {
        while self.engine.expire(self.now, &mut self.out) {
            self.check(None);
        }
        self.check(None);
    }

    /// Moves the clock to `t` ms without running timers: the next request arrives before the loop
    /// has handled what became due (a loaded server, or expiry spread over several turns).
    pub(super) fn skip_to(&mut self, t: u64) {
        assert!(t >= self.now.0, "time runs forward");
        self.now = Millis(t);
    }

    pub(super) fn disconnect(&mut self, client: ClientId) {
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
    pub(super) fn cancel_waits(&mut self) {
        self.engine.cancel_waits(self.now, &mut self.out);
        self.check(None);
    }

    /// The `stats` JSON, with `connections` = the number of connected clients.
    pub(super) fn stats(&self) -> String {
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

    pub(super) fn stats_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.stats()).expect("stats is valid JSON")
    }

    /// Resources (both namespaces) that exist.
    pub(super) fn resources(&self) -> usize {
        self.engine.counts().0
    }

    /// Holders of all resources.
    pub(super) fn holders(&self) -> usize {
        self.engine.counts().1
    }

    /// Queued waiters of all resources.
    pub(super) fn waiters(&self) -> usize {
        self.engine.counts().2
    }

    /// Signal pushes sent since the last call, as (client, channel, payload).
    pub(super) fn pushes(&mut self) -> Vec<(ClientId, String, String)> {
        std::mem::take(&mut self.out.pushes)
    }

    /// Slow-consumer evictions requested since the last call.
    pub(super) fn evictions(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.out.evictions)
    }

    /// Limits the bytes of pushes `client` can still take.
    pub(super) fn set_room(&mut self, client: ClientId, bytes: usize) {
        self.out.room.insert(client, bytes);
    }

    /// Ends a test with a leak check: every reply must have been read; then every client leaves,
    /// an hour passes (all leases run out, idle GC collects everything) and the engine must hold
    /// nothing at all.
    pub(super) fn finish(mut self) {
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
    pub(super) fn check(&mut self, request: Option<(ClientId, Outcome)>) {
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
pub(super) fn granted(response: Response, lease_s: u64) -> LeaseToken {
    match response {
        Response::Granted { token, lease_s: l } if l == lease_s => token,
        other => panic!("expected `ok <tok> {lease_s}`, got {other:?}"),
    }
}

/// The token of `acquired <tok> <lease_s>`.
#[track_caller]
pub(super) fn acquired(response: Response, lease_s: u64) -> LeaseToken {
    match response {
        Response::Acquired { token, lease_s: l } if l == lease_s => token,
        other => panic!("expected `acquired <tok> {lease_s}`, got {other:?}"),
    }
}

/// `n`/`sn` arguments: the token, then the lease if any.
pub(super) fn renew_arg(token: LeaseToken, lease_s: Option<u64>) -> String {
    match lease_s {
        Some(lease_s) => format!("{token} {lease_s}"),
        None => token.to_string(),
    }
}

/// A configuration with the given tweak applied to the defaults.
pub(super) fn config(tweak: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut config = EngineConfig::default();
    tweak(&mut config);
    config
}
