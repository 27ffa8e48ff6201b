//! The lock, semaphore and signal state machine: pure, single-threaded, driven by an explicit clock.
//!
//! The engine owns every resource, holder, waiter, two-phase state and subscription, plus a timer
//! wheel for lease expiry, wait timeouts and idle GC. It never touches a socket and never reads
//! the clock: each entry point takes `now`, and every effect (a response to the requester, a grant
//! to a waiter on another connection, a signal push, a slow-consumer eviction) goes out through
//! the [`Outbox`] the caller passes in. The event loop implements `Outbox` by writing into
//! connection buffers; tests and fuzz targets implement it by recording.
//!
//! Clients are identified by [`ClientId`]; the engine learns of them through
//! [`Engine::connect`] and forgets them in [`Engine::disconnect`], which removes everything they
//! wait for and subscribe to (and, with auto-release, everything they hold).

mod clients;
mod events;
mod fences;
mod idle;
mod invariants;
mod keyspace;
mod list;
mod locking;
mod metrics;
mod publishing;
pub mod push_line;
mod safety;
pub mod signal;
mod stats;
#[cfg(test)]
mod tests;
mod trim;

use hashbrown::DefaultHashBuilder;

use self::clients::Clients;
use self::fences::FenceIndex;
use self::keyspace::Keyspace;
use self::list::{Link, List};
use self::metrics::GrantStamp;
pub use self::metrics::{ContendedKey, EngineMetrics, NsGauges, NsMetrics};
use self::publishing::{Change, SignalWork};
use self::push_line::LineGauge;
pub use self::push_line::{Push, PushLine};
use self::signal::{SignalIndex, SubscriptionLimits};
pub use self::stats::{ServerFigures, StatsCursor};
use crate::budget::{EXPIRE_BUDGET, SWEEP_BUDGET, TRIM_BUDGET};
use crate::clock::Millis;
use crate::protocol::{Request, Response};
use crate::slots::Slots;
use crate::table::IncrementalMap;
use crate::timer::{TimerId, TimerWheel};
use crate::token::{LeaseToken, TokenIssuer};

/// Identifies a connected client: its slot index in the server's connection table plus a
/// generation, so a recycled slot never receives a departed client's grant or signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    /// Slot in the connection table; dense, so the engine can index by it.
    pub index: u32,
    /// Distinguishes successive occupants of the same slot; never 0 for a real client.
    pub generation: u32,
}

/// The settings the engine obeys (a subset of the server configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Lease used when a request names none (`--default-lease-ttl`).
    pub default_lease_s: u64,
    /// Most resources (locks and semaphores together) that may exist (`--max-locks`). A limit
    /// only: the indexes grow with what exists, not with this.
    pub max_locks: u64,
    /// Most waiters per resource; 0 = unlimited (`--max-waiters`).
    pub max_waiters: u64,
    /// Caps on signal subscriptions (`--max-subscriptions`, `--max-subscription-bytes`,
    /// `--max-total-subscriptions`).
    pub subscriptions: SubscriptionLimits,
    /// Period of idle GC passes (`--gc-interval`), in milliseconds, > 0.
    pub gc_interval_ms: u64,
    /// How long a resource must be idle before GC removes it (`--gc-max-idle`), in milliseconds.
    pub gc_max_idle_ms: u64,
    /// Whether a departing client's holdings are released (`--auto-release-on-disconnect`).
    pub auto_release_on_disconnect: bool,
    /// How long a slot lost uncleanly (lease expiry, release by disconnect) stays ungranted, in
    /// milliseconds; 0 = off (`--lock-delay`).
    pub lock_delay_ms: u64,
    /// Whether lock and semaphore changes are published on reserved `$lock.`/`$sem.` channels,
    /// with the `$` rule in force (`--lock-events`).
    pub lock_events: bool,
}

impl Default for EngineConfig {
    /// The server defaults of spec §17.2.
    fn default() -> EngineConfig {
        EngineConfig {
            default_lease_s: 33,
            max_locks: 1024,
            max_waiters: 0,
            subscriptions: SubscriptionLimits::default(),
            gc_interval_ms: 5_000,
            gc_max_idle_ms: 60_000,
            auto_release_on_disconnect: true,
            lock_delay_ms: 0,
            lock_events: false,
        }
    }
}

/// Where the engine sends its effects. Implemented by the event loop (connection buffers) and by
/// test recorders.
pub trait Outbox {
    /// The response to `client`'s current request. Each request gets exactly one, possibly long
    /// after [`Engine::apply`] returned [`Outcome::Waiting`].
    fn reply(&mut self, client: ClientId, response: Response);
    /// Whether `client` can take `line_len` more bytes of signal pushes without passing its
    /// output bound.
    fn has_room(&mut self, client: ClientId, line_len: usize) -> bool;
    /// Queues the push `sig <channel> <payload>` for `client`. The same push goes to every
    /// subscriber of one publish: copy a short line, share a long one ([`Push::shared`]).
    fn push(&mut self, client: ClientId, push: &Push<'_>);
    /// `client` is a slow consumer; the caller must disconnect it (and then call
    /// [`Engine::disconnect`]). Called at most once per client per signal.
    fn evict(&mut self, client: ClientId);
    /// `client`'s `listen` was refused at `limit`; its reply, a plain `error` as the protocol
    /// wants, follows. For the operator's log; nothing to do by default.
    fn listen_refused(&mut self, client: ClientId, limit: signal::SubscriptionLimit) {
        let _ = (client, limit);
    }
    /// The peer address of `client` while it is connected, for lock events; `None` if unknown.
    fn peer(&self, client: ClientId) -> Option<String> {
        let _ = client;
        None
    }
}

/// What became of a request handed to [`Engine::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response has been sent to the outbox.
    Answered,
    /// The client waits (in `l`, `sl`, `w` or `sw`); its response will come through the outbox
    /// later, from a grant, a timeout or [`Engine::cancel_waits`]. Until then the client's next
    /// request must not be applied.
    Waiting,
}

/// A holder of a resource.
#[derive(Debug)]
struct Lease {
    token: LeaseToken,
    resource: u32,
    owner: Owner,
    /// The expiry timer; its deadline is the lease's expiry (kept once, in the wheel).
    timer: TimerId,
    /// Whether the owner's two-phase state for the resource refers to this lease (granted by
    /// `e`/`se`, not yet collected by `w`/`sw`).
    two_phase: bool,
    /// When it was granted, for the hold time; kept in the struct's padding (see
    /// [`GrantStamp`]).
    granted: GrantStamp,
    holder_link: Link,
    owner_link: Link,
}

/// Who holds a lease: the client that acquired it, and that connection's number for `stats`.
///
/// While the client is connected the lease is on its lease list. Once the client has left, the
/// lease is on `Engine::releasing` waiting to be released (auto-release on) or on no list at
/// all (auto-release off: it stays held until it expires or someone releases it by token), so
/// a departure never has to visit the leases it leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    client: ClientId,
    /// The connection number, kept with the lease because it outlives the client's state.
    serial: u64,
}

/// A queued request for a resource.
#[derive(Debug)]
struct Waiter {
    resource: u32,
    client: ClientId,
    lease_s: u64,
    /// Queued by `e`/`se` (the client's two-phase state refers to it) rather than `l`/`sl`.
    two_phase: bool,
    /// A request of the client is blocked on this waiter and must be answered when it is granted.
    /// Always true for `l`/`sl`; true for `e`/`se` while a `w`/`sw` waits.
    answer_on_grant: bool,
    /// The wait timeout, while a request waits with T > 0.
    timer: Option<TimerId>,
    /// When it joined the queue, for the wait time and the contended-keys view.
    enqueued_at: Millis,
    queue_link: Link,
    client_link: Link,
}

/// Where a client's two-phase state for one resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TwoPhase {
    /// Still in the queue, as this waiter.
    Queued(u32),
    /// Granted, as this lease; `w` collects it and resets its lease to `lease_s` from then.
    Granted {
        /// The lease slot.
        lease: u32,
        /// The lease length the `e`/`se` asked for.
        lease_s: u64,
    },
}

/// What a timer in the engine's wheel is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    LeaseExpiry(u32),
    WaitTimeout(u32),
    IdleGc,
    /// One slot of this resource comes out of its lock-delay.
    LockDelayEnd(u32),
}

/// Bound on the slab entries a [`PackedDue`] must name: leases and waiters together number at
/// most this many, and so do resources, so every index fits in its 30 bits. About 100 GB of state before it matters; past it an acquire
/// answers `error_max_locks`, and `--max-locks` above it counts as it.
pub(crate) const MAX_TIMED_ENTRIES: usize = (1 << PackedDue::INDEX_BITS) - 1;

/// A [`Due`] in 4 bytes, as the wheel keeps it: the kind in the top 2 bits, the slab index in
/// the other 30. The wheel holds one timer per held lease, and a 4-byte payload makes its entry
/// 24 bytes instead of 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedDue(u32);

impl PackedDue {
    const INDEX_BITS: u32 = 30;
    const INDEX_MASK: u32 = (1 << Self::INDEX_BITS) - 1;

    fn kind_and_index(kind: u32, index: u32) -> PackedDue {
        debug_assert!(
            index <= Self::INDEX_MASK,
            "slab index {index} past the packable range"
        );
        PackedDue(kind << Self::INDEX_BITS | index & Self::INDEX_MASK)
    }

    fn unpack(self) -> Due {
        let index = self.0 & Self::INDEX_MASK;
        match self.0 >> Self::INDEX_BITS {
            0 => Due::LeaseExpiry(index),
            1 => Due::WaitTimeout(index),
            2 => Due::IdleGc,
            _ => Due::LockDelayEnd(index),
        }
    }
}

impl Due {
    fn pack(self) -> PackedDue {
        match self {
            Due::LeaseExpiry(lease) => PackedDue::kind_and_index(0, lease),
            Due::WaitTimeout(waiter) => PackedDue::kind_and_index(1, waiter),
            Due::IdleGc => PackedDue::kind_and_index(2, 0),
            Due::LockDelayEnd(resource) => PackedDue::kind_and_index(3, resource),
        }
    }
}

/// The engine: every piece of lock, semaphore and signal state.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    tokens: TokenIssuer,
    keys: Keyspace,
    leases: Slots<Lease>,
    /// Lease by token fence (unique per grant), for `r`/`n` by token in O(1).
    by_fence: FenceIndex,
    waiters: Slots<Waiter>,
    /// Two-phase state by (client, resource). Both are server-assigned numbers, so a fast hash
    /// without flooding resistance is fine.
    two_phase: IncrementalMap<(ClientId, u32), TwoPhase, DefaultHashBuilder>,
    clients: Clients,
    /// Leases of departed clients (auto-release on) still to be released, in grant order,
    /// linked through `owner_link`: a client that held more than [`EXPIRE_BUDGET`] leases has
    /// the rest released over the next calls of [`Engine::expire`].
    releasing: List,
    /// How many leases disconnects may still release before the next call of
    /// [`Engine::expire`], which restores it to [`EXPIRE_BUDGET`].
    disconnect_budget: usize,
    /// How many holders requests may still look at for passed leases before the next call of
    /// [`Engine::expire`], which restores it to [`SWEEP_BUDGET`].
    sweep_budget: usize,
    timers: TimerWheel<PackedDue>,
    /// Most leases and waiters together; [`MAX_TIMED_ENTRIES`] but for tests.
    max_timed: usize,
    gc_timer: Option<TimerId>,
    signals: SignalIndex,
    /// Signal operations queued behind a publish that spans turns, and this turn's units.
    signal_work: SignalWork,
    /// Counts the bytes of the push lines this engine's publishes created, while any holder (a
    /// publish, an output) keeps them.
    line_gauge: LineGauge,
    /// Reused by operations that must walk a list while changing it.
    scratch: Vec<u32>,
    /// Counters, histograms and gauges for monitoring.
    metrics: EngineMetrics,
    /// Slots in a lock-delay, by resource (`--lock-delay`): each counts as held until its
    /// `Due::LockDelayEnd` fires. Empty unless the delay is on and a holder was lost uncleanly.
    delays: hashbrown::HashMap<u32, LockDelay, DefaultHashBuilder>,
}

/// The slots of one resource that are in a lock-delay.
#[derive(Clone, Copy, Debug)]
struct LockDelay {
    /// How many; each has its own `Due::LockDelayEnd` timer.
    slots: u32,
    /// When the last of them ends, for `stats`.
    until: Millis,
}

impl Engine {
    /// An empty engine.
    pub fn new(config: EngineConfig, tokens: TokenIssuer) -> Engine {
        debug_assert!(config.gc_interval_ms > 0, "gc interval must be positive");
        let config = EngineConfig {
            max_locks: config.max_locks.min(MAX_TIMED_ENTRIES as u64),
            ..config
        };
        let signals = if config.lock_events {
            SignalIndex::with_dollar_rule()
        } else {
            SignalIndex::default()
        };
        Engine {
            config,
            tokens,
            keys: Keyspace::default(),
            leases: Slots::new(),
            by_fence: FenceIndex::default(),
            waiters: Slots::new(),
            two_phase: IncrementalMap::default(),
            clients: Clients::default(),
            releasing: List::default(),
            disconnect_budget: EXPIRE_BUDGET,
            sweep_budget: SWEEP_BUDGET,
            timers: TimerWheel::new(),
            max_timed: MAX_TIMED_ENTRIES,
            gc_timer: None,
            signals,
            signal_work: SignalWork::default(),
            line_gauge: LineGauge::default(),
            scratch: Vec::new(),
            metrics: EngineMetrics::default(),
            delays: hashbrown::HashMap::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// How many holders requests may still look at for passed leases this turn (see
    /// [`SWEEP_BUDGET`]); for the fuzz harness, which must know when a request saw them all.
    pub(crate) fn sweep_budget_left(&self) -> usize {
        self.sweep_budget
    }

    /// When `lease` expires: its timer's deadline.
    fn expiry(&self, lease: u32) -> Millis {
        let timer = self.leases[lease as usize].timer;
        // Every lease keeps its timer armed until the lease ends, so the deadline exists.
        self.timers.deadline(timer).unwrap_or(Millis::ZERO)
    }

    /// Registers a client. `serial` is the connection number shown in `stats` (`owner_conn_id`).
    pub fn connect(&mut self, client: ClientId, serial: u64) {
        self.clients.insert(client, serial);
    }

    /// Names `client` in `stats` (`owner_peer` of the locks it holds) with `label`.
    pub fn label_client(&mut self, client: ClientId, label: Box<str>) {
        if let Some(state) = self.clients.get_mut(client) {
            state.label = Some(label);
        }
    }

    /// Applies one request of `client` at time `now`. `Stats`, `Info`, `Ping` and `Auth` are the
    /// server's business and are answered with `error` here.
    pub fn apply(
        &mut self,
        now: Millis,
        client: ClientId,
        request: &Request<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        if !self.clients.contains(client) {
            debug_assert!(false, "request from unknown client {client:?}");
            out.reply(client, Response::Error);
            return Outcome::Answered;
        }
        debug_assert!(
            self.clients
                .get(client)
                .is_some_and(|c| c.blocked.is_none()),
            "request from a client that is still waiting"
        );
        match *request {
            Request::Acquire(cmd) => self.acquire(now, client, cmd, out),
            Request::Release(cmd) => self.release(now, client, cmd, out),
            Request::Renew(cmd) => self.renew(now, client, cmd, out),
            Request::Enqueue(cmd) => self.enqueue(now, client, cmd, out),
            Request::Wait(cmd) => self.wait(now, client, cmd, out),
            Request::Listen(cmd) => self.change_subscription(Change::Listen, client, cmd, out),
            Request::Unlisten(cmd) => self.change_subscription(Change::Unlisten, client, cmd, out),
            Request::Signal(cmd) => self.signal(client, cmd, out),
            Request::Check(cmd) => self.check(now, client, cmd, out),
            Request::Queue(cmd) => self.queue_state(client, cmd, out),
            Request::Evict(cmd) => self.evict(now, client, cmd, out),
            Request::Stats | Request::Ping | Request::Auth(_) | Request::Info => {
                out.reply(client, Response::Error);
                Outcome::Answered
            }
        }
    }

    /// Handles timers that are due at `now`: lease expiries (granting freed capacity to waiters),
    /// wait timeouts and idle GC. Handles at most [`EXPIRE_BUDGET`] of them, then gives back the
    /// memory of up to [`TRIM_BUDGET`] slab entries left vacant by a spike. Returns `true` if
    /// more is due, in which case the caller should call again soon (next loop turn).
    pub fn expire(&mut self, now: Millis, out: &mut impl Outbox) -> bool {
        let signal_backlog = self.run_signal_work(out);
        self.disconnect_budget = EXPIRE_BUDGET;
        self.sweep_budget = SWEEP_BUDGET;
        let mut budget = EXPIRE_BUDGET - self.release_departed(now, EXPIRE_BUDGET, out);
        while budget > 0 {
            // `None` means nothing is due, or the wheel paused a large cascade: the check
            // below tells the two apart.
            let Some((id, due)) = self.timers.poll(now) else {
                break;
            };
            budget -= 1;
            match due.unpack() {
                Due::LeaseExpiry(lease) => self.on_lease_expiry(now, id, lease, out),
                Due::WaitTimeout(waiter) => self.on_wait_timeout(now, id, waiter, out),
                Due::IdleGc => budget -= self.on_idle_gc(now, budget),
                Due::LockDelayEnd(resource) => self.on_lock_delay_end(now, resource, out),
            }
        }
        let trim_left = self.trim(TRIM_BUDGET);
        signal_backlog
            || !self.releasing.is_empty()
            || self.timers.next_deadline().is_some_and(|at| at <= now)
            || trim_left
    }

    /// The earliest time at which [`Engine::expire`] may have work; `None` if no timer is armed
    /// and no departed client's lease waits for release, no signal work is queued and no slab
    /// is left to trim (otherwise [`Millis::ZERO`]: at once). May
    /// be earlier than any real deadline (the wheel's cascading points), never later.
    pub fn next_deadline(&self) -> Option<Millis> {
        if self.releasing.is_empty() && !self.signal_work_pending() && !self.wants_trim() {
            self.timers.next_deadline()
        } else {
            Some(Millis::ZERO)
        }
    }

    /// Forgets `client`: removes its subscriptions and waiters and, with auto-release on,
    /// releases what it holds, granting freed capacity to other clients (with auto-release off
    /// its leases stay held, orphaned). No response is sent to `client` itself. Disconnects
    /// release at most [`EXPIRE_BUDGET`] leases between two calls of [`Engine::expire`]; the
    /// rest are released in grant order by the next calls of `expire`, so that a client holding
    /// a million locks does not stall everyone else while they are released.
    pub fn disconnect(&mut self, now: Millis, client: ClientId, out: &mut impl Outbox) {
        let Some(state) = self.clients.get_mut(client) else {
            return;
        };
        let mut subs = std::mem::take(&mut state.subscriptions);
        self.drop_subscriptions(client, &mut subs);
        self.drop_waiters_of(now, client);
        self.unregister(now, client, out);
    }

    /// Cancels every request that is waiting (server shutdown, spec §16): each waiter leaves its
    /// queue and its request is answered `error`. Queued two-phase entries without a `w` in
    /// progress stay queued.
    pub fn cancel_waits(&mut self, now: Millis, out: &mut impl Outbox) {
        let blocked: Vec<(ClientId, u32)> = self.clients.blocked().collect();
        for (client, waiter) in blocked {
            self.remove_waiter(now, waiter);
            out.reply(client, Response::Error);
        }
    }

    /// Whether `client` has a request waiting in the engine.
    pub fn is_waiting(&self, client: ClientId) -> bool {
        self.clients
            .get(client)
            .is_some_and(|state| state.blocked.is_some())
    }

    /// Whether the engine holds no state at all: no resources, holders, waiters, two-phase
    /// states, clients, subscriptions or armed timers. What a leak check expects once every
    /// client has gone and the clock has moved far ahead.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
            && self.leases.is_empty()
            && self.waiters.is_empty()
            && self.by_fence.is_empty()
            && self.two_phase.is_empty()
            && self.clients.is_empty()
            && self.signals.is_empty()
            && self.timers.is_empty()
            && self.delays.is_empty()
    }

    /// Counts for logs and tests: (resources, holders, waiters, subscriptions).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.keys.len(),
            self.leases.len(),
            self.waiters.len(),
            self.signals.len(),
        )
    }
}
