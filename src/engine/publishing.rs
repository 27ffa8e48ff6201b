//! Signal operations (`listen`, `unlisten`, `signal`, a subscriber leaving) in arrival order, with
//! the work of each turn bounded.
//!
//! A publish may match many patterns and reach many subscribers, so it runs in units
//! ([`SIGNAL_BUDGET`] per call of [`Engine::expire`], shared by the publishes of the requests in
//! between) and may span loop turns. Its publisher waits for `ok <count>` meanwhile, like a blocked
//! acquire, so its later requests stay behind it. The index must not change while a publish is in
//! progress, so every signal operation that arrives meanwhile is queued and applied in arrival order
//! once the publish completes: each publish sees exactly the subscriptions it would have seen had it
//! run in one go at the moment it arrived, and signals reach every subscriber in the order they were
//! accepted. The requester of a queued operation waits for its answer. Departed subscribers' entries
//! are reclaimed with the units left over. Lock events (`events.rs`) are publishes without a
//! publisher and take their turn in the same queue.

use std::collections::{HashSet, VecDeque};

use super::push_line::{LineGauge, Push, PushLine};
use super::signal::{self, ClientSubscriptions, ListenOutcome, UnlistenOutcome};
use super::{ClientId, Engine, Outbox, Outcome};
use crate::budget::SIGNAL_BUDGET;
use crate::protocol::Response;
use crate::protocol::events::is_reserved_channel;
use crate::protocol::request::{Signal, Subscription};

/// A signal operation waiting for the publish in progress.
#[derive(Debug)]
pub(super) enum SignalOp {
    Publish {
        /// Who waits for `ok <count>`; `None` once that client has left, and for a lock event.
        client: Option<ClientId>,
        line: PushLine,
    },
    Subscription {
        change: Change,
        client: ClientId,
        pattern: Vec<u8>,
        group: Vec<u8>,
    },
    /// A client left; its subscriptions go once the operations before this one are done.
    Depart {
        client: ClientId,
        subs: ClientSubscriptions,
    },
}

/// What a `listen` or `unlisten` does to a (pattern, group) subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Listen,
    Unlisten,
}

/// The publish in progress: who asked and what its copies carry.
#[derive(Debug)]
struct Current {
    /// Who waits for `ok <count>`; `None` once that client has left, and for a lock event.
    publisher: Option<ClientId>,
    line: PushLine,
}

/// The queue of signal operations and the units left in this turn.
#[derive(Debug)]
pub(super) struct SignalWork {
    current: Option<Current>,
    queue: VecDeque<SignalOp>,
    /// Clients whose [`SignalOp::Depart`] is queued. The publishes ahead of it count them as
    /// subscribers with room, as they would have had they run at once, but send them nothing.
    departed: HashSet<ClientId>,
    units: u64,
    budget: u64,
}

impl Default for SignalWork {
    fn default() -> SignalWork {
        SignalWork {
            current: None,
            queue: VecDeque::new(),
            departed: HashSet::new(),
            units: SIGNAL_BUDGET,
            budget: SIGNAL_BUDGET,
        }
    }
}

impl SignalWork {
    /// Whether new signal operations must queue: a publish is in progress or others wait.
    fn busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Whether `client` waits for the answer to a signal operation.
    fn awaits(&self, client: ClientId) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.publisher == Some(client))
            || self.queue.iter().any(|op| match op {
                SignalOp::Publish { client: c, .. } => *c == Some(client),
                SignalOp::Subscription { client: c, .. } => *c == client,
                SignalOp::Depart { .. } => false,
            })
    }
}

/// Units a delivered copy of a push line of `line_len` bytes costs on top of the offer: the
/// bytes copied into the subscriber's output.
fn copy_cost(line_len: usize) -> u64 {
    1 + line_len as u64 / 128
}

impl Engine {
    /// The gauge of the push lines this engine's publishes created and someone still holds:
    /// the memory of shared signal payloads, each counted once.
    pub fn line_gauge(&self) -> &LineGauge {
        &self.line_gauge
    }

    /// Sets the units of signal work per turn (tests and fuzz targets use small ones to make
    /// publishes span turns); [`SIGNAL_BUDGET`] by default.
    #[doc(hidden)]
    pub fn set_signal_budget(&mut self, units: u64) {
        let work = &mut self.signal_work;
        work.budget = units.max(1);
        work.units = work.units.min(work.budget);
    }

    /// Whether `client` waits for the answer to a `signal`, `listen` or `unlisten` queued behind a
    /// publish. Unlike [`Engine::is_waiting`], such a request is never cancelled: its answer
    /// comes within a few turns. O(queued operations); for tests.
    #[doc(hidden)]
    pub fn awaits_signal_work(&self, client: ClientId) -> bool {
        self.signal_work.awaits(client)
    }

    /// Whether signal work is left for the next call of [`Engine::expire`].
    pub(super) fn signal_work_pending(&self) -> bool {
        self.signal_work.busy() || self.signals.has_departed()
    }

    /// `listen` or `unlisten`, now or (if the index is busy) in turn.
    pub(super) fn change_subscription(
        &mut self,
        change: Change,
        client: ClientId,
        cmd: Subscription<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Subscription { pattern, group } = cmd;
        if self.signal_work.busy() {
            let (pattern, group) = (pattern.to_vec(), group.to_vec());
            return self.queue_signal_op(SignalOp::Subscription {
                change,
                client,
                pattern,
                group,
            });
        }
        self.apply_subscription(change, client, pattern, group, out);
        Outcome::Answered
    }

    /// `signal`: publishes now if the index is free and this turn's units suffice; otherwise the
    /// publisher waits for its count. With lock events on, reserved channels (`$...`) are the
    /// server's own: publishing on one is `error`.
    pub(super) fn signal(
        &mut self,
        client: ClientId,
        cmd: Signal<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let Signal { channel, payload } = cmd;
        if self.config.lock_events && is_reserved_channel(channel) {
            out.reply(client, Response::Error);
            return Outcome::Answered;
        }
        self.metrics.count_publish();
        match self.publish(Some(client), channel, payload, out) {
            Some(count) => {
                out.reply(client, Response::Delivered { count });
                Outcome::Answered
            }
            None => Outcome::Waiting,
        }
    }

    /// Publishes `payload` on `channel`: now if the index is free, returning the delivery count
    /// if this turn's units suffice; otherwise it continues (or waits its turn) in later calls of
    /// [`Engine::expire`], which answer `publisher` (none for a lock event) with the count.
    pub(super) fn publish(
        &mut self,
        publisher: Option<ClientId>,
        channel: &[u8],
        payload: &[u8],
        out: &mut impl Outbox,
    ) -> Option<u64> {
        let push = Push::new(channel, payload, &self.line_gauge);
        let work = &mut self.signal_work;
        if work.busy() {
            work.queue.push_back(SignalOp::Publish {
                client: publisher,
                line: push.into_line(),
            });
            return None;
        }
        self.signals.begin_publish(channel);
        let delivered = self.metrics.deliveries_mut();
        if let Some(count) = continue_publish(&mut self.signals, work, &push, delivered, out) {
            return Some(count);
        }
        self.signal_work.current = Some(Current {
            publisher,
            line: push.into_line(),
        });
        None
    }

    /// Signal operations waiting behind the publish in progress.
    pub(super) fn signal_work_backlog(&self) -> usize {
        self.signal_work.queue.len()
    }

    /// Takes a departing client's subscriptions out of the index, or queues that behind the
    /// operations in progress. Its own queued `listen`/`unlisten` are dropped; its publishes
    /// still go out (they were accepted before it left), unanswered.
    pub(super) fn drop_subscriptions(&mut self, client: ClientId, subs: &mut ClientSubscriptions) {
        let work = &mut self.signal_work;
        if !work.busy() {
            self.signals.remove_client(client, subs);
            return;
        }
        if let Some(current) = work
            .current
            .as_mut()
            .filter(|c| c.publisher == Some(client))
        {
            current.publisher = None;
        }
        work.queue.retain_mut(|op| match op {
            SignalOp::Subscription { client: c, .. } => *c != client,
            SignalOp::Publish { client: c, .. } => {
                if *c == Some(client) {
                    *c = None;
                }
                true
            }
            SignalOp::Depart { .. } => true,
        });
        if !subs.is_empty() {
            let subs = std::mem::take(subs);
            work.departed.insert(client);
            work.queue.push_back(SignalOp::Depart { client, subs });
        }
    }

    /// One turn of signal work: continues the publish in progress, then applies queued operations in
    /// order, then reclaims departed subscriptions, until this turn's units run out. Returns `true`
    /// if work is left.
    pub(super) fn run_signal_work(&mut self, out: &mut impl Outbox) -> bool {
        self.signal_work.units = self.signal_work.budget;
        loop {
            if let Some(current) = self.signal_work.current.take() {
                let push = Push::of_line(&current.line);
                let work = &mut self.signal_work;
                let delivered = self.metrics.deliveries_mut();
                let Some(count) = continue_publish(&mut self.signals, work, &push, delivered, out)
                else {
                    self.signal_work.current = Some(current);
                    return true;
                };
                answer_publish(current.publisher, count, out);
            }
            if self.signal_work.units == 0 {
                return self.signal_work_pending();
            }
            match self.signal_work.queue.pop_front() {
                Some(op) => self.apply_queued(op, out),
                None => {
                    let units = &mut self.signal_work.units;
                    return !self.signals.reclaim(units);
                }
            }
        }
    }

    fn queue_signal_op(&mut self, op: SignalOp) -> Outcome {
        self.signal_work.queue.push_back(op);
        Outcome::Waiting
    }

    /// Applies an operation that waited in the queue (the index is free).
    fn apply_queued(&mut self, op: SignalOp, out: &mut impl Outbox) {
        match op {
            SignalOp::Publish { client, line } => {
                self.signals.begin_publish(line.channel());
                let push = Push::of_line(&line);
                let (work, delivered) = (&mut self.signal_work, self.metrics.deliveries_mut());
                match continue_publish(&mut self.signals, work, &push, delivered, out) {
                    Some(count) => answer_publish(client, count, out),
                    None => {
                        self.signal_work.current = Some(Current {
                            publisher: client,
                            line,
                        })
                    }
                }
            }
            SignalOp::Subscription {
                change,
                client,
                pattern,
                group,
            } => self.apply_subscription(change, client, &pattern, &group, out),
            SignalOp::Depart { client, mut subs } => {
                self.signal_work.departed.remove(&client);
                self.signals.remove_client(client, &mut subs);
            }
        }
    }

    /// Applies `listen` (within `--max-subscriptions`) or `unlisten` and answers it: `error` for an
    /// invalid pattern or a listen at the cap, `ok` otherwise (spec §7.10, §7.11).
    fn apply_subscription(
        &mut self,
        change: Change,
        client: ClientId,
        pattern: &[u8],
        group: &[u8],
        out: &mut impl Outbox,
    ) {
        let limits = &self.config.subscriptions;
        let accepted = self.clients.get_mut(client).is_some_and(|state| {
            let subs = &mut state.subscriptions;
            match change {
                Change::Listen => match self.signals.listen(client, subs, pattern, group, limits) {
                    ListenOutcome::Added | ListenOutcome::AlreadySubscribed => true,
                    ListenOutcome::LimitReached(limit) => {
                        out.listen_refused(client, limit);
                        false
                    }
                    ListenOutcome::InvalidPattern => false,
                },
                Change::Unlisten => {
                    self.signals.unlisten(client, subs, pattern, group)
                        != UnlistenOutcome::InvalidPattern
                }
            }
        });
        out.reply(
            client,
            if accepted {
                Response::Ok
            } else {
                Response::Error
            },
        );
    }
}

/// Offers `push`, the publish in progress, with this turn's units, counting the copies placed
/// in `delivered`; `Some(count)` once it completes. A function of the fields it needs, so that
/// `push` may borrow the engine's line gauge meanwhile.
fn continue_publish(
    signals: &mut signal::SignalIndex,
    work: &mut SignalWork,
    push: &Push<'_>,
    delivered: &mut u64,
    out: &mut impl Outbox,
) -> Option<u64> {
    let mut sink = PushSink {
        out,
        departed: &work.departed,
        push,
        delivered,
    };
    signals.continue_publish(&mut work.units, copy_cost(push.len()), &mut sink)
}

/// Sends `ok <count>` to the publisher, unless it has left.
fn answer_publish(publisher: Option<ClientId>, count: u64, out: &mut impl Outbox) {
    if let Some(publisher) = publisher {
        out.reply(publisher, Response::Delivered { count });
    }
}

/// Adapts an [`Outbox`] to the signal index: offers one push line to each selected subscriber.
struct PushSink<'o, 'p, O: Outbox> {
    out: &'o mut O,
    /// See [`SignalWork::departed`].
    departed: &'p HashSet<ClientId>,
    push: &'p Push<'p>,
    /// The engine's count of copies placed.
    delivered: &'o mut u64,
}

impl<O: Outbox> signal::DeliverySink for PushSink<'_, '_, O> {
    fn has_room(&mut self, client: ClientId) -> bool {
        self.departed.contains(&client) || self.out.has_room(client, self.push.len())
    }

    fn deliver(&mut self, client: ClientId) {
        if !self.departed.contains(&client) {
            self.out.push(client, self.push);
            *self.delivered += 1;
        }
    }

    fn evict(&mut self, client: ClientId) {
        self.out.evict(client);
    }
}
