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

use std::collections::VecDeque;

use self::model::{Holder, Model, Pending, serial_of};
use self::ops::{CHANNELS, FAR_MS, KEYS, LARGE_STEPS_END, Op, SLOTS, SMALL_STEPS_MS};
use self::safety::EvictPlan;
use crate::clock::Millis;
use crate::engine::{ClientId, Engine, EngineConfig, Outbox, Outcome, Push};
use crate::fuzzing::{Input, engine_config};
use crate::protocol::events::{EventPayload, LockEvent, event_channel, is_reserved_channel};
use crate::protocol::request::{Check, CheckTarget};
use crate::protocol::{Namespace, Request, Response};
use crate::token::{LeaseToken, TokenIssuer};

mod checks;
mod model;
mod ops;
mod safety;

/// An effect the engine produced.
#[derive(Debug)]
enum Event {
    Reply(ClientId, Response),
    Push(ClientId),
    /// A lock event pushed to this client (`--lock-events`).
    Announcement(ClientId),
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
    /// Whether lock events are on: pushes on reserved channels are then events.
    lock_events: bool,
    /// Whether the client in each slot has asked to listen to a pattern starting with `$`:
    /// under the `$` rule no other pattern can receive an event.
    reserved_listener: [bool; SLOTS],
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

impl Recorder {
    /// Panics unless a lock event went to a client that may receive it (the `$` rule) and its
    /// channel and payload name one of the vocabulary's keys.
    fn check_lock_event(&self, client: ClientId, channel: &[u8], payload: &[u8]) {
        assert!(
            self.reserved_listener[client.index as usize],
            "the $ rule: event on {channel:?} to {client:?}, which listens to no $ pattern"
        );
        let payload: EventPayload<'_> =
            serde_json::from_slice(payload).expect("an event payload is JSON");
        let key = KEYS
            .iter()
            .find(|key| **key == payload.key.as_bytes())
            .unwrap_or_else(|| panic!("event about unknown key {:?}", payload.key));
        let known = [Namespace::Lock, Namespace::Semaphore].iter().any(|&ns| {
            LockEvent::ALL.iter().any(|&event| {
                let mut expected = Vec::new();
                event_channel(ns, event, key, &mut expected);
                expected == channel
            })
        });
        assert!(known, "event channel {channel:?}");
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
        let room = &mut self.room[client.index as usize];
        assert!(*room > 0, "push to {client:?} without room");
        *room -= 1;
        let channel = line.channel();
        if self.lock_events && is_reserved_channel(channel) {
            self.check_lock_event(client, channel, line.payload());
            self.events.push(Event::Announcement(client));
            return;
        }
        assert_eq!(line.payload(), b"p", "push payload");
        assert!(CHANNELS.contains(&channel), "push on channel {channel:?}");
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
    /// The slots whose current client was made an admin.
    admins: [bool; SLOTS],
    /// What the `evict` being applied is expected to do.
    evict_plan: Option<EvictPlan>,
    /// Whether the request being applied could look at every holder of its resource for leases
    /// that have passed (the turn's sweep budget covers them all). If not, a slot freed by a
    /// passed lease may go unseen until the timers end it, and "certainly free" means nothing.
    sweep_complete: bool,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        let lock_events = config.lock_events;
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
            admins: [false; SLOTS],
            evict_plan: None,
            sweep_complete: true,
            out: Recorder {
                events: Vec::new(),
                connected: [None; SLOTS],
                room: [2; SLOTS],
                evicted: Vec::new(),
                lock_events,
                reserved_listener: [false; SLOTS],
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
        self.admins[slot] = false;
        self.out.reserved_listener[slot] = false;
    }

    /// The client of `slot` sent the admin token: it may evict until it leaves.
    fn make_admin(&mut self, slot: usize) {
        if self.connected(slot) {
            self.engine.grant_admin(self.ids[slot]);
            self.admins[slot] = true;
        }
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
                // Perhaps granted silently before the owner left, its lease outlives the owner.
                self.model.holders.push(Holder {
                    owner: None,
                    two_phase: false,
                    certain: false,
                    ..Holder::silent_grant(resource, waiter, now)
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
        self.evict_plan = self.plan_evict(slot, op);
        let (_, most_holders) = self
            .model
            .resource_holder_bounds(op.resource(), self.now, true);
        self.sweep_complete = self.engine.sweep_budget_left() as u64 >= most_holders;
        if let Request::Listen(sub) = request {
            self.out.reserved_listener[slot] |= is_reserved_channel(sub.pattern);
        }
        let outcome = self.engine.apply(self.now, client, &request, &mut self.out);
        let (settled, evicted) = self.take_events(Call::Apply(client));
        // The request's own effect enters the model first: a lock event it publishes may evict
        // its own sender as a slow consumer, whose departure must then take the new waiter or
        // holder with it.
        match (outcome, settled.answer) {
            (Outcome::Answered, Some(response)) => {
                self.answered(slot, op, response, settled.pushes)
            }
            (Outcome::Waiting, None) => self.waits(slot, op),
            (outcome, answer) => panic!("{op:?} gave {outcome:?} with answer {answer:?}"),
        }
        self.disconnect_evicted(evicted);
    }

    /// Checks the events of one engine call in order, then disconnects the clients it evicted,
    /// as the server does.
    fn settle(&mut self, call: Call) {
        let (_, evicted) = self.take_events(call);
        self.disconnect_evicted(evicted);
    }

    /// Checks the events of one engine call in order. The reply to the requester of an `apply` is
    /// handed back for [`Harness::answered`], which checks it once the call's other effects are
    /// accounted for, with the clients the call evicted (to disconnect after that).
    fn take_events(&mut self, call: Call) -> (Settled, Vec<ClientId>) {
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
                Event::Announcement(client) => {
                    assert!(!evicted.contains(&client), "event after eviction");
                }
                Event::Evict(client) => {
                    assert!(!evicted.contains(&client), "{client:?} evicted twice");
                    evicted.push(client);
                }
            }
        }
        self.out.evicted.clear();
        (settled, evicted)
    }

    /// Disconnects the clients a call evicted as slow consumers.
    fn disconnect_evicted(&mut self, evicted: Vec<ClientId>) {
        for client in evicted {
            let slot = client.index as usize;
            if self.ids[slot] == client {
                self.disconnect(slot);
            }
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

    /// What `check` would answer for every lease the model knows a token of: a live lease is
    /// current, with its own fence, and one that has certainly ended is stale.
    fn check_current_holders(&self) {
        for holder in &self.model.holders {
            let Some(token) = holder.token.as_ref().and_then(|t| LeaseToken::parse(t)) else {
                continue;
            };
            let (ns, key) = holder.resource;
            for target in [CheckTarget::Token(token), CheckTarget::Fence(token.fence)] {
                let found = self
                    .engine
                    .current_holder(self.now, Check { ns, key, target });
                if holder.certainly_live(self.now) {
                    assert_eq!(
                        found.map(|f| f.0),
                        Some(token.fence),
                        "check of a live lease"
                    );
                }
                if holder.expiry.hi <= self.now {
                    assert_eq!(found, None, "check of an ended lease");
                }
                if let Some((_, expires)) = found {
                    assert!(expires > self.now, "check reports a passed lease");
                }
            }
        }
    }

    fn check(&mut self) {
        self.engine.check_invariants();
        self.model.check_capacity(self.now);
        self.check_current_holders();
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
            200..=204 => self.now = self.now.plus_ms(input.number::<6>()).min(LARGE_STEPS_END),
            205..=224 => self.expire(input.flag()),
            225..=229 => self.cancel_waits(),
            230..=249 => self.out.room[slot] = u32::from(input.byte() % 4),
            _ => self.make_admin(slot),
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
/// tokens (reusing tokens actually granted, whole or as fences), patterns and channels,
/// `check`/`scheck`, `q`/`sq` and `evict`/`sevict` (from clients made admins by the input, and
/// from others), disconnects, shutdown cancels, and clock moves small and huge, with or without
/// running the timers.
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
/// wait behind a publish in progress and are answered by `expire`. `check` reports a fence only
/// for a lease the model knows may be live (never `stale` for a certainly live one); `q` stays
/// within the model's bounds; an admin's `evict` ends the leases it names, counts them within the
/// model's bounds and grants the freed capacity in FIFO order; anyone else's is `error` and
/// leaves `stats` and every counter exactly as they were. At the end every wait is answered
/// once time passes, and after every client leaves and the clock moves far ahead the engine is
/// empty.
pub fn engine(data: &[u8]) {
    let mut input = Input::new(data);
    let mut harness = Harness::new(engine_config(&mut input, false));
    // Small budgets make publishes span calls of `expire`, with requests arriving meanwhile.
    let budget = *input.pick(&[1, 4, 64, crate::budget::SIGNAL_BUDGET]);
    harness.engine.set_signal_budget(budget);
    while !input.is_empty() {
        harness.step(&mut input);
    }
    harness.finish();
}
