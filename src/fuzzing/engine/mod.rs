//! The `engine` target: operation sequences from several clients against the pure [`Engine`],
//! checked against a shadow model built only from what the engine tells its clients.
//!
//! The model cannot see everything: a two-phase waiter (`e` answered `queued`) is granted
//! silently, and its lease only shows once `w` collects it. So the model keeps, per resource, the
//! queue of waiters in request order and infers silent grants from FIFO order: when a waiter is
//! seen granted, every waiter ahead of it must have been granted before it, which is only
//! possible silently for two-phase waiters nobody waits on; any other waiter ahead of it is a FIFO
//! violation. Lease ends are tracked as an interval (`Expiry`): exact for leases whose grant was
//! seen, bounded by the enqueue and inference times for silent ones. Every check only asserts
//! what holds for all states the engine could be in given what the model has seen, so a failure
//! is a real violation.

use std::collections::{BTreeMap, VecDeque};

use super::subject::valid_pattern;
use super::{Input, engine_config};
use crate::clock::Millis;
use crate::engine::signal::SubscriptionLimits;
use crate::engine::{ClientId, Engine, EngineConfig, Outbox, Outcome, Push, ServerFigures};
use crate::protocol::{MAX_SECONDS, Namespace, Request, Response};
use crate::token::{LeaseToken, TOKEN_LEN, TokenIssuer};

const SLOTS: usize = 4;
const KEYS: [&[u8]; 3] = [b"a", b"b", b"c"];
const LEASES: [Option<u64>; 5] = [None, Some(1), Some(2), Some(7), Some(MAX_SECONDS)];
const TIMEOUTS: [u64; 5] = [0, 1, 3, 60, MAX_SECONDS];
const LIMITS: [u64; 3] = [1, 2, 3];
const PATTERNS: [&[u8]; 7] = [b"a", b"a.b", b"a.*", b"a.>", b">", b"*", b"a*"];
const GROUPS: [&[u8]; 3] = [b"", b"g", b"h"];
const CHANNELS: [&[u8]; 4] = [b"a", b"a.b", b"b.c", b"a.b.c"];
/// Tokens that match no lease: malformed, and well-formed but never issued.
const UNKNOWN_TOKENS: [&[u8]; 2] = [b"nope", b"00000000000000000000000000000000"];
/// Further ahead than any deadline the vocabulary can set (MAX_SECONDS is 9.2e15 ms).
const FAR_MS: u64 = 10_000_000_000_000_000;
/// Small clock steps, in milliseconds, around the vocabulary's lease and timeout lengths.
const SMALL_STEPS_MS: [u64; 8] = [0, 1, 999, 1_000, 1_001, 2_000, 7_000, 61_000];

type Resource = (Namespace, &'static [u8]);
type TokenText = [u8; TOKEN_LEN];

/// The connection number a client is registered with, unique per (slot, generation).
fn serial_of(client: ClientId) -> u64 {
    u64::from(client.generation) * SLOTS as u64 + u64::from(client.index)
}

fn text_of(token: LeaseToken) -> TokenText {
    let mut text = [0; TOKEN_LEN];
    token.encode(&mut text);
    text
}

/// When a lease ends, as far as the model knows: not before `lo`, not after `hi`.
#[derive(Clone, Copy, Debug)]
struct Expiry {
    lo: Millis,
    hi: Millis,
}

impl Expiry {
    fn exact(at: Millis) -> Expiry {
        Expiry { lo: at, hi: at }
    }
}

/// A lease the model knows exists (or existed until some point inside its expiry interval).
#[derive(Debug)]
struct Holder {
    resource: Resource,
    /// `None` once the owner left with auto-release off.
    owner: Option<ClientId>,
    /// The owner's connection number, which `stats` shows even after it left.
    serial: u64,
    limit: u64,
    lease_s: u64,
    expiry: Expiry,
    /// `None` for a silent two-phase grant whose token nobody has seen yet.
    token: Option<TokenText>,
    /// The owner's two-phase state for the resource refers to this lease (not collected by `w`).
    two_phase: bool,
    /// False for a lease that may never have been granted: a two-phase waiter whose owner left
    /// (auto-release off) may have been granted silently first, leaving an orphaned lease.
    certain: bool,
}

impl Holder {
    /// A lease the engine has just granted to `client` (and answered with `token`).
    fn granted(
        resource: Resource,
        client: ClientId,
        limit: u64,
        lease_s: u64,
        now: Millis,
        token: LeaseToken,
        two_phase: bool,
    ) -> Holder {
        Holder {
            resource,
            owner: Some(client),
            serial: serial_of(client),
            limit,
            lease_s,
            expiry: Expiry::exact(now.plus_secs(lease_s)),
            token: Some(text_of(token)),
            two_phase,
            certain: true,
        }
    }

    /// Whether the engine certainly holds this lease at `now`.
    fn certainly_live(&self, now: Millis) -> bool {
        self.certain && self.expiry.lo > now
    }
}

/// A queued request, in the order the engine must grant it.
#[derive(Debug)]
struct Waiter {
    client: ClientId,
    /// Queued by `e`/`se`.
    two_phase: bool,
    /// A request (`l`, `sl`, `w`, `sw`) is blocked on it and will be answered.
    blocked: bool,
    lease_s: u64,
    limit: u64,
    /// When it joined the queue; a silent grant cannot be earlier.
    since: Millis,
    /// When its blocked request times out.
    deadline: Millis,
}

/// A client's request waiting in the engine.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// A blocking acquire or wait on this resource.
    Wait(Resource),
    /// A `listen` or `unlisten` queued behind a publish that spans turns; `valid` tells whether
    /// its pattern is.
    Subscription { valid: bool },
    /// A `signal` queued or in progress.
    Publish,
}

/// What the engine's clients have been told, arranged to predict what they may be told next.
#[derive(Default)]
struct Model {
    holders: Vec<Holder>,
    queues: BTreeMap<Resource, Vec<Waiter>>,
    /// Every token seen in a reply.
    seen: Vec<TokenText>,
}

impl Model {
    fn queue(&mut self, resource: Resource) -> &mut Vec<Waiter> {
        self.queues.entry(resource).or_default()
    }

    /// The position of the first waiter on `resource` matching `which`.
    fn position(&self, resource: Resource, which: impl Fn(&Waiter) -> bool) -> Option<usize> {
        self.queues.get(&resource)?.iter().position(which)
    }

    /// A new lease was seen granted. Tokens are never issued twice.
    fn add_holder(&mut self, holder: Holder) {
        if let Some(token) = holder.token {
            assert!(!self.seen.contains(&token), "token issued twice");
            self.seen.push(token);
        }
        self.holders.push(holder);
    }

    /// The waiter at `position` of `resource`'s queue was granted: everything ahead of it was
    /// granted before it, which can only have happened silently, to two-phase waiters on which no
    /// request waits. Those become holders with a lease between their enqueue and now.
    fn granted_up_to(&mut self, resource: Resource, position: usize, now: Millis) {
        let ahead: Vec<Waiter> = self.queue(resource).drain(..position).collect();
        for waiter in ahead {
            assert!(
                waiter.two_phase && !waiter.blocked,
                "FIFO violated on {resource:?}: granted past the waiting request of {:?}",
                waiter.client
            );
            self.holders.push(Holder {
                resource,
                owner: Some(waiter.client),
                serial: serial_of(waiter.client),
                limit: waiter.limit,
                lease_s: waiter.lease_s,
                expiry: Expiry {
                    lo: waiter.since.plus_secs(waiter.lease_s),
                    hi: now.plus_secs(waiter.lease_s),
                },
                token: None,
                two_phase: true,
                certain: true,
            });
        }
    }

    /// The resource gave a lease without queueing: its queue must have been empty.
    fn granted_at_once(&mut self, resource: Resource, now: Millis) {
        let len = self.queue(resource).len();
        self.granted_up_to(resource, len, now);
    }

    fn holder_by_token(&self, token: &[u8]) -> Option<usize> {
        self.holders
            .iter()
            .position(|h| h.token.is_some_and(|t| t == token))
    }

    /// The two-phase lease of `client` on `resource`, if the model has one.
    fn two_phase_holder(&self, client: ClientId, resource: Resource) -> Option<usize> {
        self.holders
            .iter()
            .position(|h| h.two_phase && h.owner == Some(client) && h.resource == resource)
    }

    /// Whether the engine certainly had free capacity and an empty queue for a request with
    /// `limit` at `now`, after evicting expired holders.
    fn certainly_free(&self, resource: Resource, limit: u64, now: Millis) -> bool {
        let queued = self.queues.get(&resource).is_some_and(|q| !q.is_empty());
        let maybe_held = self
            .holders
            .iter()
            .filter(|h| h.resource == resource && h.expiry.hi > now)
            .count() as u64;
        !queued && maybe_held < limit
    }

    /// The limit of `resource` if it certainly exists: someone waits on it or certainly holds it.
    fn certain_limit(&self, resource: Resource, now: Millis) -> Option<u64> {
        let waiting = self.queues.get(&resource).into_iter().flatten().find(|w| {
            // An unblocked two-phase waiter may have been granted silently, but then its lease
            // runs at least until `since + lease`.
            w.blocked || w.since.plus_secs(w.lease_s) > now
        });
        let holding = self
            .holders
            .iter()
            .find(|h| h.resource == resource && h.certainly_live(now));
        waiting.map(|w| w.limit).or(holding.map(|h| h.limit))
    }

    /// The waiters on `key` (both namespaces) that certainly wait, and those that may have been
    /// granted silently (unblocked two-phase waiters).
    fn queued_on(&self, key: &[u8]) -> (u64, u64) {
        let waiting = [Namespace::Lock, Namespace::Semaphore]
            .iter()
            .filter_map(|&ns| self.queues.get(&(ns, key)))
            .flatten();
        waiting.fold((0, 0), |(blocked, undecided), w| {
            if w.blocked {
                (blocked + 1, undecided)
            } else {
                (blocked, undecided + 1)
            }
        })
    }

    /// How many leases on `key` (both namespaces) the engine may hold: at least the certainly
    /// live ones, at most every one not known to be gone plus every silent grant not inferred.
    fn holder_bounds(&self, key: &[u8], now: Millis) -> (u64, u64) {
        let ours = || self.holders.iter().filter(|h| h.resource.1 == key);
        let live = ours().filter(|h| h.certainly_live(now)).count() as u64;
        let (_, undecided) = self.queued_on(key);
        (live, ours().count() as u64 + undecided)
    }

    fn waiter_bounds(&self, key: &[u8]) -> (u64, u64) {
        let (blocked, undecided) = self.queued_on(key);
        (blocked, blocked + undecided)
    }

    /// `(owner serial, seconds left)` of each limit-1 lease on `key` that is certainly live and
    /// whose end is known exactly: it is the only holder of its resource, so `stats` lists it.
    fn certain_lock_holders(&self, key: &[u8], now: Millis) -> Vec<(u64, f64)> {
        self.holders
            .iter()
            .filter(|h| h.resource.1 == key && h.limit == 1)
            .filter(|h| h.expiry.lo == h.expiry.hi && h.certainly_live(now))
            .map(|h| (h.serial, h.expiry.lo.secs_since(now)))
            .collect()
    }

    /// Forgets leases that have certainly ended: after the engine has handled every timer due at
    /// `now`, no lease ending at or before `now` is left.
    fn sweep(&mut self, now: Millis) {
        self.holders.retain(|h| h.expiry.hi > now);
    }

    /// At most `limit` certain holders per resource, all created with the same limit.
    fn check_capacity(&self, now: Millis) {
        let mut per_resource: BTreeMap<Resource, (u64, u64)> = BTreeMap::new();
        for holder in self.holders.iter().filter(|h| h.certainly_live(now)) {
            let (count, limit) = per_resource
                .entry(holder.resource)
                .or_insert((0, holder.limit));
            assert_eq!(*limit, holder.limit, "two limits on {:?}", holder.resource);
            *count += 1;
            assert!(
                *count <= *limit,
                "{count} holders of {:?} with limit {limit}",
                holder.resource
            );
        }
    }
}

/// What a `stats` snapshot says about one key, for both namespaces together.
#[derive(Debug, Default)]
struct KeyStats {
    holders: u64,
    waiters: u64,
    /// Limits of the semaphores listed (limit 1 ones are listed as locks).
    semaphore_limits: Vec<u64>,
    /// `(owner_conn_id, lease_expires_in_s)` of the limit-1 resources listed.
    locks: Vec<(u64, f64)>,
}

impl KeyStats {
    fn read(stats: &serde_json::Value, key: &[u8]) -> KeyStats {
        let name = std::str::from_utf8(key).expect("vocabulary keys are ASCII");
        let entries = |section: &str| {
            let all = stats[section]
                .as_array()
                .unwrap_or_else(|| panic!("stats without {section}"));
            all.iter()
                .filter(move |e| e["key"] == name)
                .collect::<Vec<_>>()
        };
        let field = |entry: &serde_json::Value, name: &str| {
            entry[name]
                .as_u64()
                .unwrap_or_else(|| panic!("stats entry without {name}"))
        };
        let mut shown = KeyStats::default();
        for entry in entries("locks") {
            shown.holders += 1;
            shown.waiters += field(entry, "waiters");
            let expires_in = entry["lease_expires_in_s"]
                .as_f64()
                .expect("lock entry without lease_expires_in_s");
            shown
                .locks
                .push((field(entry, "owner_conn_id"), expires_in));
        }
        for entry in entries("semaphores") {
            shown.holders += field(entry, "holders");
            shown.waiters += field(entry, "waiters");
            shown.semaphore_limits.push(field(entry, "limit"));
        }
        shown
    }
}

/// One request to apply, owning its token bytes.
#[derive(Debug)]
struct Op {
    kind: u8,
    ns: Namespace,
    key: &'static [u8],
    timeout_s: u64,
    limit: u64,
    lease_s: Option<u64>,
    token: Vec<u8>,
    /// Picks the pattern of `listen`/`unlisten` and the channel of `signal`.
    text: usize,
    group: &'static [u8],
}

impl Op {
    /// Ten bytes, always (so a mutation of one field leaves the rest of the input in place):
    /// kind, namespace, key, timeout, limit, lease, token choice, unknown token, pattern or
    /// channel, group.
    fn read(input: &mut Input<'_>, seen: &[TokenText]) -> Op {
        let kind = input.byte() % 12;
        let ns = if input.flag() {
            Namespace::Semaphore
        } else {
            Namespace::Lock
        };
        let key = *input.pick(&KEYS);
        let timeout_s = *input.pick(&TIMEOUTS);
        let limit = match (ns, *input.pick(&LIMITS)) {
            (Namespace::Lock, _) => 1,
            (Namespace::Semaphore, limit) => limit,
        };
        let lease_s = *input.pick(&LEASES);
        let choice = usize::from(input.byte());
        let unknown = *input.pick(&UNKNOWN_TOKENS);
        let token = match seen.len() {
            // Mostly recent tokens: those are the ones still held.
            n if n > 0 && choice >= 32 => seen[n - 1 - choice % n].to_vec(),
            _ => unknown.to_vec(),
        };
        let text = usize::from(input.byte());
        let group = *input.pick(&GROUPS);
        Op {
            kind,
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
            token,
            text,
            group,
        }
    }

    fn resource(&self) -> Resource {
        (self.ns, self.key)
    }

    fn request(&self) -> Request<'_> {
        let (ns, key) = (self.ns, self.key);
        match self.kind {
            0 | 1 => Request::Acquire {
                ns,
                key,
                timeout_s: self.timeout_s,
                limit: self.limit,
                lease_s: self.lease_s,
            },
            2 | 3 => Request::Release {
                ns,
                key,
                token: &self.token,
            },
            4 => Request::Renew {
                ns,
                key,
                token: &self.token,
                lease_s: self.lease_s,
            },
            5 => Request::Enqueue {
                ns,
                key,
                limit: self.limit,
                lease_s: self.lease_s,
            },
            6 | 7 => Request::Wait {
                ns,
                key,
                timeout_s: self.timeout_s,
            },
            8 => Request::Listen {
                pattern: PATTERNS[self.text % PATTERNS.len()],
                group: self.group,
            },
            9 => Request::Unlisten {
                pattern: PATTERNS[self.text % PATTERNS.len()],
                group: self.group,
            },
            _ => Request::Signal {
                channel: CHANNELS[self.text % CHANNELS.len()],
                payload: b"p",
            },
        }
    }
}

/// An effect the engine produced.
#[derive(Debug)]
enum Event {
    Reply(ClientId, Response),
    Push(ClientId),
    Evict(ClientId),
}

/// Records effects; knows who is connected and how many pushes each client can take.
struct Recorder {
    events: Vec<Event>,
    connected: [Option<ClientId>; SLOTS],
    room: [u32; SLOTS],
    /// Clients evicted and not yet disconnected (the harness disconnects them after the call).
    /// Like the server's closing connections, they have no room, and evicting one again (a
    /// later publish of the same call) is ignored.
    evicted: Vec<ClientId>,
}

impl Recorder {
    fn check_connected(&self, client: ClientId, what: &str) {
        assert_eq!(
            self.connected.get(client.index as usize).copied().flatten(),
            Some(client),
            "{what} for {client:?}, which is not connected"
        );
    }
}

impl Outbox for Recorder {
    fn reply(&mut self, client: ClientId, response: Response) {
        self.check_connected(client, "reply");
        self.events.push(Event::Reply(client, response));
    }

    fn has_room(&mut self, client: ClientId, _line_len: usize) -> bool {
        self.check_connected(client, "room asked");
        self.room[client.index as usize] > 0 && !self.evicted.contains(&client)
    }

    fn push(&mut self, client: ClientId, line: &Push<'_>) {
        self.check_connected(client, "push");
        assert_eq!(line.payload(), b"p", "push payload");
        let channel = line.channel();
        assert!(CHANNELS.contains(&channel), "push on channel {channel:?}");
        let room = &mut self.room[client.index as usize];
        assert!(*room > 0, "push to {client:?} without room");
        *room -= 1;
        self.events.push(Event::Push(client));
    }

    fn evict(&mut self, client: ClientId) {
        self.check_connected(client, "eviction");
        if !self.evicted.contains(&client) {
            self.evicted.push(client);
            self.events.push(Event::Evict(client));
        }
    }
}

/// What one engine call produced for its caller, once checked.
struct Settled {
    /// The reply to the requester of an `apply`.
    answer: Option<Response>,
    /// Signal pushes delivered.
    pushes: usize,
}

/// Which engine call produced the events being checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Apply(ClientId),
    Expire,
    Cancel,
    Disconnect,
}

/// The engine under test, its clients and the model.
struct Harness {
    engine: Engine,
    config: EngineConfig,
    now: Millis,
    /// Current id of each slot (the generation grows on every reconnect).
    ids: [ClientId; SLOTS],
    pending: [Option<Pending>; SLOTS],
    model: Model,
    out: Recorder,
    /// Pushes since the last `ok <count>`: publishes run one after another, each answered after
    /// its pushes (unless its publisher left).
    unanswered_pushes: u64,
    /// Publishers of the `signal`s that wait behind or in a publish spanning calls, in the order
    /// they are answered; a publisher that left is never answered.
    publishes: VecDeque<ClientId>,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        Harness {
            engine: Engine::new(config.clone(), TokenIssuer::deterministic(0x5eed)),
            config,
            now: Millis(0),
            ids: std::array::from_fn(|index| ClientId {
                index: index as u32,
                generation: 0,
            }),
            pending: [None; SLOTS],
            model: Model::default(),
            unanswered_pushes: 0,
            publishes: VecDeque::new(),
            out: Recorder {
                events: Vec::new(),
                connected: [None; SLOTS],
                room: [2; SLOTS],
                evicted: Vec::new(),
            },
        }
    }

    fn connected(&self, slot: usize) -> bool {
        self.out.connected[slot].is_some()
    }

    fn connect(&mut self, slot: usize) {
        if self.connected(slot) {
            return;
        }
        let id = &mut self.ids[slot];
        id.generation += 1;
        self.engine.connect(*id, serial_of(*id));
        self.out.connected[slot] = Some(*id);
    }

    fn disconnect(&mut self, slot: usize) {
        if !self.connected(slot) {
            return;
        }
        let client = self.ids[slot];
        // The departing client's state goes first; the grants it frees follow as events.
        self.out.connected[slot] = None;
        self.pending[slot] = None;
        let auto_release = self.config.auto_release_on_disconnect;
        let now = self.now;
        for (&resource, queue) in self.model.queues.iter_mut() {
            for waiter in queue.iter().filter(|w| w.client == client) {
                if auto_release || waiter.blocked {
                    continue;
                }
                // Granted silently before the owner left, its lease outlives the owner.
                self.model.holders.push(Holder {
                    resource,
                    owner: None,
                    serial: serial_of(client),
                    limit: waiter.limit,
                    lease_s: waiter.lease_s,
                    expiry: Expiry {
                        lo: waiter.since.plus_secs(waiter.lease_s),
                        hi: now.plus_secs(waiter.lease_s),
                    },
                    token: None,
                    two_phase: false,
                    certain: false,
                });
            }
            queue.retain(|w| w.client != client);
        }
        self.model
            .holders
            .retain(|h| !(auto_release && h.owner == Some(client)));
        for holder in &mut self.model.holders {
            if holder.owner == Some(client) {
                holder.owner = None;
                holder.two_phase = false;
            }
        }
        self.engine.disconnect(self.now, client, &mut self.out);
        self.settle(Call::Disconnect);
    }

    fn apply(&mut self, slot: usize, op: &Op) {
        if !self.connected(slot) || self.pending[slot].is_some() {
            return; // a waiting client's next request is not read
        }
        let client = self.ids[slot];
        let request = op.request();
        let outcome = self.engine.apply(self.now, client, &request, &mut self.out);
        let settled = self.settle(Call::Apply(client));
        match (outcome, settled.answer) {
            (Outcome::Answered, Some(response)) => {
                self.answered(slot, op, response, settled.pushes)
            }
            (Outcome::Waiting, None) => self.waits(slot, op),
            (outcome, answer) => panic!("{op:?} gave {outcome:?} with answer {answer:?}"),
        }
    }

    /// Checks the events of one engine call in order. The reply to the requester of an `apply` is
    /// handed back for [`Harness::answered`], which checks it once the call's other effects are
    /// accounted for. Evicted clients are disconnected afterwards, as the server does.
    fn settle(&mut self, call: Call) -> Settled {
        let mut settled = Settled {
            answer: None,
            pushes: 0,
        };
        let mut evicted = Vec::new();
        for event in std::mem::take(&mut self.out.events) {
            match event {
                Event::Reply(client, response) if call == Call::Apply(client) => {
                    assert!(
                        settled.answer.is_none(),
                        "two replies to one request of {client:?}"
                    );
                    settled.answer = Some(response);
                }
                Event::Reply(client, response) => self.async_answer(call, client, response),
                Event::Push(client) => {
                    assert!(
                        matches!(call, Call::Apply(_) | Call::Expire),
                        "push outside a signal to {client:?}"
                    );
                    assert!(!evicted.contains(&client), "push after eviction");
                    settled.pushes += 1;
                    self.unanswered_pushes += 1;
                }
                Event::Evict(client) => {
                    assert!(!evicted.contains(&client), "{client:?} evicted twice");
                    evicted.push(client);
                }
            }
        }
        self.out.evicted.clear();
        for client in evicted {
            let slot = client.index as usize;
            if self.ids[slot] == client {
                self.disconnect(slot);
            }
        }
        settled
    }

    /// A reply to a request that was waiting: a grant, a timeout (only from `expire`) or an
    /// `error` (only from `cancel_waits`).
    fn async_answer(&mut self, call: Call, client: ClientId, response: Response) {
        let slot = client.index as usize;
        let pending = self.pending[slot]
            .take()
            .unwrap_or_else(|| panic!("unsolicited {response:?} to {client:?}"));
        let resource = match pending {
            Pending::Wait(resource) => resource,
            Pending::Subscription { valid } => {
                assert!(call == Call::Expire, "signal work outside expire");
                let expected = [Response::Ok, Response::Error];
                assert!(
                    expected.contains(&response),
                    "queued listen answered {response:?}"
                );
                assert!(
                    valid || response == Response::Error,
                    "invalid pattern accepted"
                );
                return;
            }
            Pending::Publish => {
                assert!(call == Call::Expire, "signal work outside expire");
                let Response::Delivered { count } = response else {
                    panic!("queued signal answered {response:?}");
                };
                // Publishes of publishers that left may have run since the last answer; their
                // pushes are mixed in, so the count can only be checked without them.
                let mut silent = false;
                while let Some(publisher) = self.publishes.pop_front() {
                    if publisher == client {
                        break;
                    }
                    silent = true;
                }
                // Subscribers that left while it was on its way are counted but sent nothing.
                assert!(
                    silent || count >= self.unanswered_pushes,
                    "count below the pushes"
                );
                self.unanswered_pushes = 0;
                return;
            }
        };
        let position = self
            .model
            .position(resource, |w| w.client == client && w.blocked)
            .expect("a waiting request has its waiter");
        let now = self.now;
        match response {
            Response::Granted { token, lease_s } => {
                self.model.granted_up_to(resource, position, now);
                let waiter = self.model.queue(resource).remove(0);
                assert_eq!(lease_s, waiter.lease_s, "granted lease");
                self.model.add_holder(Holder::granted(
                    resource,
                    client,
                    waiter.limit,
                    lease_s,
                    now,
                    token,
                    false,
                ));
            }
            Response::Timeout => {
                assert!(call == Call::Expire, "timeout outside expire");
                let waiter = self.model.queue(resource).remove(position);
                assert!(now >= waiter.deadline, "timed out early");
            }
            Response::Error => {
                assert!(call == Call::Cancel, "error to a waiting request");
                self.model.queue(resource).remove(position);
            }
            other => panic!("{other:?} ended a wait"),
        }
    }

    /// The request of `slot` waits: a blocking acquire or wait with a timeout, only if the
    /// resource was not certainly free; or a signal operation behind a publish in progress.
    fn waits(&mut self, slot: usize, op: &Op) {
        match op.request() {
            Request::Signal { .. } => {
                self.publishes.push_back(self.ids[slot]);
                // Unless its own publish evicted the publisher: then nobody waits.
                if self.connected(slot) {
                    self.pending[slot] = Some(Pending::Publish);
                }
            }
            Request::Listen { pattern, .. } | Request::Unlisten { pattern, .. } => {
                let valid = valid_pattern(pattern);
                self.pending[slot] = Some(Pending::Subscription { valid });
            }
            _ => self.waits_for_resource(slot, op),
        }
    }

    /// The blocking acquire or wait of `slot` waits, only if the resource was not certainly free.
    fn waits_for_resource(&mut self, slot: usize, op: &Op) {
        let client = self.ids[slot];
        let resource = op.resource();
        let now = self.now;
        assert!(op.timeout_s > 0, "{op:?} waits with timeout 0");
        let deadline = now.plus_secs(op.timeout_s);
        match op.request() {
            Request::Acquire { limit, lease_s, .. } => {
                assert!(
                    !self.model.certainly_free(resource, limit, now),
                    "acquire waits on a free resource"
                );
                self.model.queue(resource).push(Waiter {
                    client,
                    two_phase: false,
                    blocked: true,
                    lease_s: lease_s.unwrap_or(self.config.default_lease_s),
                    limit,
                    since: now,
                    deadline,
                });
            }
            Request::Wait { .. } => {
                let position = self
                    .model
                    .position(resource, |w| w.client == client && w.two_phase)
                    .expect("wait blocks without an enqueue");
                let waiter = &mut self.model.queue(resource)[position];
                waiter.blocked = true;
                waiter.deadline = deadline;
            }
            _ => panic!("{op:?} waits"),
        }
        self.pending[slot] = Some(Pending::Wait(resource));
    }

    fn answered(&mut self, slot: usize, op: &Op, response: Response, pushes: usize) {
        let request = op.request();
        match request {
            Request::Acquire { .. } => self.acquire_answered(slot, op, response),
            Request::Release { token, .. } => self.release_answered(op, token, response),
            Request::Renew { token, lease_s, .. } => {
                self.renew_answered(op, token, lease_s, response)
            }
            Request::Enqueue { .. } => self.enqueue_answered(slot, op, response),
            Request::Wait { .. } => self.wait_answered(slot, op, response),
            Request::Listen { pattern, .. } | Request::Unlisten { pattern, .. } => {
                let listen = matches!(request, Request::Listen { .. });
                let expected = if !valid_pattern(pattern) {
                    Some(Response::Error)
                } else if !listen || self.config.subscriptions == SubscriptionLimits::default() {
                    Some(Response::Ok)
                } else {
                    None // depends on the subscription count, which the subject target checks
                };
                assert!(
                    matches!(response, Response::Ok | Response::Error),
                    "{response:?}"
                );
                if let Some(expected) = expected {
                    assert_eq!(response, expected, "{request:?}");
                }
            }
            Request::Signal { .. } => {
                // Answered at once: no subscriber left while it was on its way.
                assert_eq!(
                    response,
                    Response::Delivered {
                        count: pushes as u64
                    },
                    "delivery count"
                );
                // Answered at once means the queue was empty: whatever came before was the
                // silent publishes of publishers that left.
                for publisher in self.publishes.drain(..) {
                    let slot = publisher.index as usize;
                    assert!(
                        self.ids[slot] != publisher || self.out.connected[slot].is_none(),
                        "a publish answered before an earlier one"
                    );
                }
                self.unanswered_pushes = 0;
            }
            Request::Stats | Request::Ping | Request::Auth { .. } => {
                unreachable!("not generated")
            }
        }
    }

    /// Answers shared by `l`/`sl` and `e`/`se` about the resource itself.
    fn resource_refusal(&self, op: &Op, response: Response) {
        let resource = op.resource();
        let now = self.now;
        let known = self.model.certain_limit(resource, now);
        match response {
            Response::ErrorMaxLocks => {
                assert!(known.is_none(), "error_max_locks for an existing resource")
            }
            Response::ErrorMaxWaiters => {
                let max = self.config.max_waiters;
                let queued = self.model.queues.get(&resource).map_or(0, Vec::len) as u64;
                assert!(max > 0 && queued >= max, "error_max_waiters below the cap");
            }
            Response::ErrorLimitMismatch => {
                assert_eq!(op.ns, Namespace::Semaphore, "limit mismatch on a lock");
                assert_ne!(known, Some(op.limit), "limit mismatch on the same limit");
            }
            other => panic!("{op:?} answered {other:?}"),
        }
    }

    fn check_limit_agrees(&self, op: &Op, response: Response) {
        if let Some(limit) = self.model.certain_limit(op.resource(), self.now) {
            let refused = matches!(
                response,
                Response::ErrorLimitMismatch | Response::ErrorAlreadyEnqueued
            );
            assert!(
                refused || limit == op.limit,
                "{op:?} with existing limit {limit} answered {response:?}"
            );
        }
    }

    fn acquire_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now) = (op.resource(), self.now);
        self.check_limit_agrees(op, response);
        let lease = op.lease_s.unwrap_or(self.config.default_lease_s);
        match response {
            Response::Granted { token, lease_s } => {
                assert_eq!(lease_s, lease, "granted lease");
                self.model.granted_at_once(resource, now);
                self.model.add_holder(Holder::granted(
                    resource,
                    self.ids[slot],
                    op.limit,
                    lease_s,
                    now,
                    token,
                    false,
                ));
            }
            Response::Timeout => {
                assert_eq!(op.timeout_s, 0, "immediate timeout with a wait time");
                assert!(
                    !self.model.certainly_free(resource, op.limit, now),
                    "try-lock failed on a free resource"
                );
            }
            other => self.resource_refusal(op, other),
        }
    }

    fn release_answered(&mut self, op: &Op, token: &[u8], response: Response) {
        let now = self.now;
        match self.model.holder_by_token(token) {
            Some(i) if self.model.holders[i].resource == op.resource() => {
                if self.model.holders[i].certainly_live(now) {
                    assert_eq!(response, Response::Ok, "release of a live lease");
                } else {
                    assert!(matches!(response, Response::Ok | Response::Error));
                }
                self.model.holders.remove(i);
            }
            _ => assert_eq!(response, Response::Error, "release of a lease not held"),
        }
    }

    fn renew_answered(&mut self, op: &Op, token: &[u8], lease_s: Option<u64>, response: Response) {
        let now = self.now;
        match self.model.holder_by_token(token) {
            Some(i) if self.model.holders[i].resource == op.resource() => {
                if self.model.holders[i].certainly_live(now) {
                    let lease_s = lease_s.unwrap_or(self.config.default_lease_s);
                    assert_eq!(response, Response::Renewed { lease_s }, "renew");
                    self.model.holders[i].expiry = Expiry::exact(now.plus_secs(lease_s));
                } else {
                    assert_eq!(response, Response::Error, "renew of an expired lease");
                    self.model.holders.remove(i);
                }
            }
            _ => assert_eq!(response, Response::Error, "renew of a lease not held"),
        }
    }

    fn enqueue_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now, client) = (op.resource(), self.now, self.ids[slot]);
        let queued = self
            .model
            .position(resource, |w| w.client == client && w.two_phase);
        let holder = self.model.two_phase_holder(client, resource);
        // Whether the earlier two-phase state certainly still exists: a queued entry (or the
        // silent lease it became) lives at least `lease` past its enqueue.
        let certain = match (queued, holder) {
            (Some(p), _) => {
                let w = &self.model.queues[&resource][p];
                w.since.plus_secs(w.lease_s) > now
            }
            (None, Some(h)) => self.model.holders[h].certainly_live(now),
            (None, None) => false,
        };
        if response == Response::ErrorAlreadyEnqueued {
            assert!(
                queued.is_some() || holder.is_some(),
                "error_already_enqueued without an enqueue"
            );
            return;
        }
        assert!(!certain, "second enqueue accepted on {resource:?}");
        // The earlier state is gone: its lease was granted silently and has run out.
        if let Some(p) = queued {
            self.model.granted_up_to(resource, p, now);
            self.model.queue(resource).remove(0);
        } else if let Some(h) = holder {
            self.model.holders.remove(h);
        }
        self.check_limit_agrees(op, response);
        let lease = op.lease_s.unwrap_or(self.config.default_lease_s);
        match response {
            Response::Acquired { token, lease_s } => {
                assert_eq!(lease_s, lease, "acquired lease");
                self.model.granted_at_once(resource, now);
                self.model.add_holder(Holder::granted(
                    resource, client, op.limit, lease_s, now, token, true,
                ));
            }
            Response::Queued => {
                assert!(
                    !self.model.certainly_free(resource, op.limit, now),
                    "queued on a free resource"
                );
                self.model.queue(resource).push(Waiter {
                    client,
                    two_phase: true,
                    blocked: false,
                    lease_s: lease,
                    limit: op.limit,
                    since: now,
                    deadline: Millis::MAX,
                });
            }
            other => self.resource_refusal(op, other),
        }
    }

    fn wait_answered(&mut self, slot: usize, op: &Op, response: Response) {
        let (resource, now, client) = (op.resource(), self.now, self.ids[slot]);
        if let Some(p) = self
            .model
            .position(resource, |w| w.client == client && w.two_phase)
        {
            let (since, lease) = {
                let w = &self.model.queues[&resource][p];
                (w.since, w.lease_s)
            };
            if response == Response::Timeout {
                assert_eq!(op.timeout_s, 0, "immediate timeout with a wait time");
                self.model.queue(resource).remove(p);
                return;
            }
            // Any other answer means the waiter was granted (silently, before or during `w`).
            self.model.granted_up_to(resource, p, now);
            let waiter = self.model.queue(resource).remove(0);
            match response {
                Response::Granted { token, lease_s } => {
                    assert_eq!(lease_s, lease, "collected lease");
                    self.model.add_holder(Holder::granted(
                        resource,
                        client,
                        waiter.limit,
                        lease_s,
                        now,
                        token,
                        false,
                    ));
                }
                Response::ErrorLeaseExpired | Response::ErrorNotEnqueued => {
                    assert!(
                        since.plus_secs(lease) <= now,
                        "{response:?} before the lease could end"
                    );
                }
                other => panic!("wait on a queued enqueue answered {other:?}"),
            }
            return;
        }
        let Some(h) = self.model.two_phase_holder(client, resource) else {
            assert_eq!(response, Response::ErrorNotEnqueued, "wait without enqueue");
            return;
        };
        let expiry = self.model.holders[h].expiry;
        match response {
            Response::Granted { token, lease_s } => {
                assert!(expiry.hi > now, "collected a lease that had run out");
                let holder = &mut self.model.holders[h];
                assert_eq!(lease_s, holder.lease_s, "collected lease");
                let text = text_of(token);
                match holder.token {
                    Some(known) => assert_eq!(known, text, "collected another token"),
                    None => {
                        holder.token = Some(text);
                        assert!(!self.model.seen.contains(&text), "token issued twice");
                        self.model.seen.push(text);
                    }
                }
                let holder = &mut self.model.holders[h];
                holder.two_phase = false;
                holder.expiry = Expiry::exact(now.plus_secs(lease_s));
            }
            Response::ErrorLeaseExpired | Response::ErrorNotEnqueued => {
                assert!(expiry.lo <= now, "{response:?} for a live lease");
                self.model.holders.remove(h);
            }
            other => panic!("wait on a granted enqueue answered {other:?}"),
        }
    }

    /// Runs due timers; with `fully`, until none is due, after which the model may forget leases
    /// that have certainly ended and no wait may be overdue.
    fn expire(&mut self, fully: bool) {
        loop {
            let more = self.engine.expire(self.now, &mut self.out);
            self.settle(Call::Expire);
            if !(more && fully) {
                break;
            }
        }
        if !fully {
            return;
        }
        self.model.sweep(self.now);
        for pending in self.pending.iter().flatten() {
            let Pending::Wait(resource) = pending else {
                panic!("signal work left after expiring fully");
            };
            let overdue = self.model.queues[resource]
                .iter()
                .any(|w| w.blocked && w.deadline <= self.now);
            assert!(!overdue, "a wait outlived its timeout");
        }
    }

    fn cancel_waits(&mut self) {
        self.engine.cancel_waits(self.now, &mut self.out);
        self.settle(Call::Cancel);
        // Signal operations are not waits: they are answered by the signal work that follows.
        assert!(
            !self
                .pending
                .iter()
                .any(|p| matches!(p, Some(Pending::Wait(_)))),
            "a wait survived cancel_waits"
        );
    }

    /// Compares a `stats` snapshot with the model, per key (a lock and a semaphore may share a
    /// key, and `stats` sorts limit-1 semaphores among the locks): holder and waiter counts within
    /// the model's bounds, the expiry and owner of every lock certainly held, semaphore limits.
    fn check_stats(&self) {
        let mut json = Vec::new();
        let figures = ServerFigures {
            connections: self.out.connected.iter().flatten().count() as u64,
            slow_consumers_disconnected: 0,
        };
        self.engine.write_stats(self.now, figures, &mut json);
        let stats: serde_json::Value =
            serde_json::from_slice(&json).unwrap_or_else(|e| panic!("stats JSON: {e}"));
        let now = self.now;
        for key in KEYS {
            let shown = KeyStats::read(&stats, key);
            let name = String::from_utf8_lossy(key);
            let (least, most) = self.model.holder_bounds(key, now);
            assert!(
                (least..=most).contains(&shown.holders),
                "stats shows {} holders of {name}, not {least}..={most}",
                shown.holders
            );
            let (least, most) = self.model.waiter_bounds(key);
            assert!(
                (least..=most).contains(&shown.waiters),
                "stats shows {} waiters on {name}, not {least}..={most}",
                shown.waiters
            );
            for holder in self.model.certain_lock_holders(key, now) {
                assert!(
                    shown.locks.contains(&holder),
                    "stats lists {:?} for {name}, not the holder {holder:?}",
                    shown.locks
                );
            }
            if let Some(limit) = self.model.certain_limit((Namespace::Semaphore, key), now) {
                assert!(
                    shown.semaphore_limits.iter().all(|&l| l == limit),
                    "stats shows limits {:?} for semaphore {name}, not {limit}",
                    shown.semaphore_limits
                );
            }
        }
    }

    fn check(&mut self) {
        self.engine.check_invariants();
        self.model.check_capacity(self.now);
        self.check_stats();
        for (slot, pending) in self.pending.iter().enumerate() {
            let id = self.ids[slot];
            let connected = self.connected(slot);
            assert_eq!(
                self.engine.is_waiting(id),
                matches!(pending, Some(Pending::Wait(_))) && connected,
                "waiting state of slot {slot}"
            );
            assert_eq!(
                self.engine.awaits_signal_work(id),
                matches!(
                    pending,
                    Some(Pending::Subscription { .. } | Pending::Publish)
                ) && connected,
                "signal work of slot {slot}"
            );
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let slot = input.below(SLOTS);
        match op {
            0..=19 => self.connect(slot),
            20..=29 => self.disconnect(slot),
            30..=169 => {
                let op = Op::read(input, &self.model.seen);
                self.apply(slot, &op);
            }
            170..=199 => self.now = self.now.plus_ms(*input.pick(&SMALL_STEPS_MS)),
            200..=204 => self.now = self.now.plus_ms(input.number::<6>()),
            205..=224 => self.expire(input.flag()),
            225..=229 => self.cancel_waits(),
            _ => self.out.room[slot] = u32::from(input.byte() % 4),
        }
        self.check();
    }

    /// Every waiting request is answered once time passes; then, with everyone gone and the clock
    /// far ahead, nothing may be left.
    fn finish(&mut self) {
        self.now = self.now.plus_ms(FAR_MS);
        self.expire(true);
        self.check();
        assert!(
            self.pending.iter().all(Option::is_none),
            "a wait was never answered"
        );
        for slot in 0..SLOTS {
            self.disconnect(slot);
        }
        for _ in 0..2 {
            self.now = self.now.plus_ms(FAR_MS);
            self.expire(true);
        }
        self.check();
        assert!(
            self.engine.is_empty(),
            "state left: {:?}",
            self.engine.counts()
        );
    }
}

/// The `engine` target: several clients, arbitrary requests over a small vocabulary of keys,
/// tokens (reusing tokens actually granted), patterns and channels, disconnects, shutdown
/// cancels, and clock moves small and huge, with or without running the timers.
///
/// Checks after every step: the engine's own invariants; every reply goes to a connected client
/// with a request in progress, exactly once per request, and only a blocking `l`/`sl`/`w`/`sw`
/// may wait; grants follow FIFO order per resource; never more holders than the limit, and no
/// second limit for a resource; each response fits the model (lease lengths echoed, releases and
/// renewals of live and dead leases, two-phase state, limit mismatches, try-locks on free
/// resources, waits never outliving their timeout); `ok <count>` equals the pushes of a publish
/// answered at once (at least its pushes for one that spanned calls of `expire`, where departed
/// subscribers are counted but sent nothing), which only go to clients with room. The signal
/// budget is picked from the input (down to one unit), so `listen`, `unlisten` and `signal` also
/// wait behind a publish in progress and are answered by `expire`. At the end every wait is answered once time passes, and after every
/// client leaves and the clock moves far ahead the engine is empty.
pub fn engine(data: &[u8]) {
    let mut input = Input::new(data);
    let mut harness = Harness::new(engine_config(&mut input));
    // Small budgets make publishes span calls of `expire`, with requests arriving meanwhile.
    let budget = *input.pick(&[1, 4, 64, crate::budget::SIGNAL_BUDGET]);
    harness.engine.set_signal_budget(budget);
    while !input.is_empty() {
        harness.step(&mut input);
    }
    harness.finish();
}
