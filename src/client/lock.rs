//! Locks and semaphores as a holder sees them: acquire (blocking, try-once or two-phase), a
//! [`Guard`] that renews the lease in the background and releases on drop, and prompt news of
//! a lost lease ([`Loss`]).
//!
//! A grant is held on its own connection, whose session pump does the renewing: at a fraction
//! of the lease (0.5 by default, up to 10 % earlier at random so many holders do not renew in
//! step), resetting the lease to its full length each time. The holder is told of a loss when a
//! renewal is refused, when the lease runs out without one, or when the connection ends (the
//! pump is always reading, so a server that closes the connection is noticed at once). With
//! [`Lock::watch_events`], a server running with `--lock-events` also tells it: the guard's
//! connection listens to the `expired` and `evicted` events of its key, and the event naming
//! its fence is the loss, the moment the server decides it. This module decides *when* to renew
//! and what counts as lost; the wire exchanges live in the conn module.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::{self, Connection, Grant, parse_renewed, renew_request, token_text};
use super::error::{Error, Result};
use super::session::{Hooks, Link, Session};
use super::{Client, Kind, Signal};
use crate::protocol::Request;
use crate::protocol::events::{EventPayload, LockEvent, event_channel, parse_event_channel};
use crate::protocol::request::Subscription;
use crate::token::{LeaseToken, TOKEN_LEN};

/// Renewal at half the lease unless told otherwise.
const DEFAULT_RENEW_AT: f64 = 0.5;
/// Renewals come up to this fraction of their interval early, at random.
const RENEW_JITTER: f64 = 0.1;

/// Why a holder no longer holds its lock or slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The server refused a renewal: the lease had expired, or someone released the token.
    Refused,
    /// The lease ran out without a renewal (renewal off, or no answer in time), by the local
    /// clock or by the server's `expired` event ([`Lock::watch_events`]).
    Expired,
    /// The server took the lease away (its `evicted` event, [`Lock::watch_events`]).
    Evicted,
    /// The connection ended (the text says how); with auto-release on, as servers run by
    /// default, the server released the lock when it noticed.
    Disconnected(String),
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Refused => f.write_str("the server refused to renew the lease"),
            Loss::Expired => f.write_str("the lease expired without renewal"),
            Loss::Evicted => f.write_str("the server evicted the holder"),
            Loss::Disconnected(why) => write!(f, "the connection ended: {why}"),
        }
    }
}

/// What to acquire and how to hold it; shared by [`Lock`] and [`Semaphore`].
#[derive(Clone, Debug)]
struct Resource {
    client: Client,
    kind: Kind,
    key: String,
    lease_s: Option<u64>,
    /// Fraction of the lease after which to renew; `None`: no background renewal.
    renew_at: Option<f64>,
    /// Whether the guard listens to the server's lock events about its lease.
    watch_events: bool,
}

impl Resource {
    fn new(client: Client, kind: Kind, key: &str) -> Resource {
        Resource {
            client,
            kind,
            key: key.to_owned(),
            lease_s: None,
            renew_at: Some(DEFAULT_RENEW_AT),
            watch_events: false,
        }
    }

    fn check(&self) -> Result<()> {
        match self.renew_at {
            Some(f) if !(f > 0.0 && f < 1.0) => Err(Error::InvalidInput(format!(
                "renewal must come at a fraction of the lease between 0 and 1, not {f}"
            ))),
            _ => Ok(()),
        }
    }

    fn acquire(&self, timeout: Duration) -> Result<Guard> {
        self.check()?;
        let mut conn = self.client.connect_for(&self.key)?;
        let grant = conn.acquire(self.kind, &self.key, timeout, self.lease_s)?;
        Guard::start(conn, grant, self.clone())
    }

    fn try_acquire(&self) -> Result<Option<Guard>> {
        match self.acquire(Duration::ZERO) {
            Err(Error::Timeout) => Ok(None),
            other => other.map(Some),
        }
    }

    fn enqueue(&self) -> Result<Enqueued> {
        self.check()?;
        let mut conn = self.client.connect_for(&self.key)?;
        Ok(match conn.enqueue(self.kind, &self.key, self.lease_s)? {
            Some(grant) => Enqueued::Acquired(Guard::start(conn, grant, self.clone())?),
            None => Enqueued::Queued(Waiting {
                conn,
                resource: self.clone(),
            }),
        })
    }
}

/// The methods [`Lock`] and [`Semaphore`] share, written once.
macro_rules! acquire_methods {
    () => {
        /// The key.
        pub fn key(&self) -> &str {
            &self.0.key
        }

        /// Asks for a lease of `seconds` (1 or more) instead of the server's default; renewals
        /// ask for the same.
        pub fn lease(mut self, seconds: u64) -> Self {
            self.0.lease_s = Some(seconds);
            self
        }

        /// Renews after this fraction of the lease (strictly between 0 and 1; 0.5 by default),
        /// up to 10 % earlier at random.
        pub fn renew_at(mut self, fraction: f64) -> Self {
            self.0.renew_at = Some(fraction);
            self
        }

        /// Also learns of a lost grant from the server's lock events (servers started with
        /// `--lock-events`): the guard's connection listens to the `expired` and `evicted`
        /// events of the key, and one naming the guard's fence is reported as
        /// [`Loss::Expired`] or [`Loss::Evicted`] as soon as it arrives, instead of at the next
        /// renewal. A server without lock events sends none, and losses are found by renewal
        /// as usual; the two subscriptions count against the server's subscription limits.
        pub fn watch_events(mut self) -> Self {
            self.0.watch_events = true;
            self
        }

        /// Turns background renewal off: the grant lasts one lease unless renewed by hand with
        /// [`Guard::renew`], and the guard reports [`Loss::Expired`] when it runs out.
        pub fn no_renewal(mut self) -> Self {
            self.0.renew_at = None;
            self
        }

        /// Waits in the server's FIFO queue up to `timeout` (rounded up to whole seconds) for
        /// the grant; [`Error::Timeout`] if it does not come.
        pub fn acquire(&self, timeout: Duration) -> Result<Guard> {
            self.0.acquire(timeout)
        }

        /// Takes the grant only if it is free now and nobody is queued: `None` otherwise.
        pub fn try_acquire(&self) -> Result<Option<Guard>> {
            self.0.try_acquire()
        }

        /// Two-phase acquire, phase 1: joins the queue without waiting. The returned
        /// [`Waiting`] (unless the grant came at once) waits for it later; meanwhile the
        /// place in the queue is kept.
        pub fn enqueue(&self) -> Result<Enqueued> {
            self.0.enqueue()
        }
    };
}

/// A lock: one holder at a time, FIFO among waiters. From [`Client::lock`].
///
/// ```no_run
/// use std::time::Duration;
/// use dflockd::client::Client;
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::new(["127.0.0.1:6388"])?;
/// let lock = client.lock("invoices").lease(20);
/// if let Some(guard) = lock.try_acquire()? {
///     println!("got it, fence {}", guard.fence());
/// } // released here
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Lock(Resource);

impl Lock {
    pub(crate) fn new(client: Client, key: &str) -> Lock {
        Lock(Resource::new(client, Kind::Lock, key))
    }

    acquire_methods!();
}

/// A counting semaphore: up to `limit` holders at once, FIFO among waiters. From
/// [`Client::semaphore`].
///
/// ```no_run
/// use std::time::Duration;
/// use dflockd::client::Client;
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::new(["127.0.0.1:6388"])?;
/// let slot = client.semaphore("gpu", 4).acquire(Duration::from_secs(60))?;
/// // one of four slots is ours until `slot` is dropped
/// # drop(slot);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Semaphore(Resource);

impl Semaphore {
    pub(crate) fn new(client: Client, key: &str, limit: u64) -> Semaphore {
        Semaphore(Resource::new(client, Kind::Semaphore { limit }, key))
    }

    /// How many holders the semaphore admits.
    pub fn limit(&self) -> u64 {
        match self.0.kind {
            Kind::Semaphore { limit } => limit,
            Kind::Lock => 1,
        }
    }

    acquire_methods!();
}

/// The outcome of [`Lock::enqueue`] or [`Semaphore::enqueue`].
#[derive(Debug)]
pub enum Enqueued {
    /// The resource was free: it is held already.
    Acquired(Guard),
    /// In the queue; call [`Waiting::wait`].
    Queued(Waiting),
}

/// A place in the queue (two-phase acquire between its phases).
///
/// The place is tied to this connection: dropping the `Waiting` gives it up. The connection is
/// idle until [`Waiting::wait`], so wait before the server's read timeout (23 s by default)
/// closes it.
///
/// ```no_run
/// use std::time::Duration;
/// use dflockd::client::{Client, Enqueued};
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::new(["127.0.0.1:6388"])?;
/// let guard = match client.lock("deploy").enqueue()? {
///     Enqueued::Acquired(guard) => guard,
///     Enqueued::Queued(waiting) => {
///         println!("queued; telling the others we are next in line");
///         waiting.wait(Duration::from_secs(30))?
///     }
/// };
/// # drop(guard);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Waiting {
    conn: Connection,
    resource: Resource,
}

impl Waiting {
    /// Two-phase acquire, phase 2: waits up to `timeout` for the grant. On
    /// [`Error::Timeout`] the place in the queue is gone.
    pub fn wait(mut self, timeout: Duration) -> Result<Guard> {
        let Resource { kind, key, .. } = &self.resource;
        let grant = self.conn.wait(*kind, key, timeout)?;
        Guard::start(self.conn, grant, self.resource)
    }
}

/// A held lock or semaphore slot. The lease is renewed in the background while the guard
/// lives; dropping it releases (as [`Guard::release`] does, ignoring failures).
///
/// A guard also knows when the grant is gone before it was released: [`Guard::is_lost`],
/// [`Guard::loss`], or a [`Guard::loss_channel`] to block on or poll.
pub struct Guard {
    session: Session,
    state: Arc<Mutex<Holding>>,
    resource: Resource,
    grant: Grant,
    released: bool,
}

impl Guard {
    /// Starts holding `grant`, received on `conn` just now.
    fn start(conn: Connection, grant: Grant, resource: Resource) -> Result<Guard> {
        let mut holding = Holding::new();
        // The lease started when the server sent the grant, a little before now: the local
        // view of the expiry is late by at most the one-way network delay.
        holding.renewed(Instant::now(), grant.lease_s, resource.renew_at);
        let state = Arc::new(Mutex::new(holding));
        let keeper = Keeper {
            state: Arc::clone(&state),
            kind: resource.kind,
            key: resource.key.clone(),
            token: token_text(&grant.token),
            fence: grant.fence(),
            lease_s: resource.lease_s,
            renew_at: resource.renew_at,
            events: if resource.watch_events {
                Watch::Wanted(Instant::now())
            } else {
                Watch::Off
            },
        };
        let options = resource.client.options();
        let session = Session::start(conn, options.io_timeout, options.heartbeat, keeper)?;
        Ok(Guard {
            session,
            state,
            resource,
            grant,
            released: false,
        })
    }

    /// The key held.
    pub fn key(&self) -> &str {
        &self.resource.key
    }

    /// The lease token (bearer credential: any connection may release or renew with it).
    pub fn token(&self) -> LeaseToken {
        self.grant.token
    }

    /// The fencing token: the first 16 hex digits of the token. Each grant a server makes gets
    /// a larger fence, so a resource that remembers the largest fence it has seen can refuse a
    /// holder that lost its lease without noticing.
    pub fn fence(&self) -> u64 {
        self.grant.fence()
    }

    /// The lease length the server granted.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.grant.lease_s)
    }

    /// Whether the grant is known to be gone.
    pub fn is_lost(&self) -> bool {
        lock(&self.state).loss.is_some()
    }

    /// Why the grant is gone, if it is.
    pub fn loss(&self) -> Option<Loss> {
        lock(&self.state).loss.clone()
    }

    /// A channel that receives the [`Loss`] once the grant is lost (at once if it already
    /// is). If the guard is released first, the channel disconnects without a message.
    pub fn loss_channel(&self) -> Receiver<Loss> {
        let (sender, receiver) = mpsc::channel();
        let mut state = lock(&self.state);
        match &state.loss {
            Some(loss) => {
                let _ = sender.send(loss.clone());
            }
            None if state.released => {}
            None => state.watchers.push(sender),
        }
        receiver
    }

    /// Renews now, whatever the background schedule; returns the new lease in seconds.
    pub fn renew(&self) -> Result<u64> {
        let Resource {
            kind, key, lease_s, ..
        } = &self.resource;
        let sent = Instant::now();
        match conn::renew(&mut &self.session, *kind, key, &self.grant.token, *lease_s) {
            Ok(lease_s) => {
                lock(&self.state).renewed(sent, lease_s, self.resource.renew_at);
                Ok(lease_s)
            }
            Err(Error::Rejected) => {
                lock(&self.state).lose(Loss::Refused);
                Err(Error::Rejected)
            }
            Err(e) => Err(e),
        }
    }

    /// Releases the grant and closes its connection. An error means the release was not
    /// confirmed (the grant may already have been lost).
    pub fn release(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.released = true;
        {
            let mut state = lock(&self.state);
            state.released = true;
            state.watchers.clear();
        }
        let Resource { kind, key, .. } = &self.resource;
        let result = conn::release(&mut &self.session, *kind, key, &self.grant.token);
        self.session.close();
        result
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.finish();
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("kind", &self.resource.kind)
            .field("key", &self.resource.key)
            .field("fence", &self.fence())
            .field("lease_s", &self.grant.lease_s)
            .field("loss", &self.loss())
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<Holding>) -> MutexGuard<'_, Holding> {
    // Every update below keeps the state consistent, so a panic elsewhere cannot leave it
    // half-changed.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The holder's view of its grant, shared by the guard and the session pump.
struct Holding {
    /// When the lease runs out unless renewed (local clock).
    expires: Instant,
    /// When to renew next; `None` with renewal off.
    next_renewal: Option<Instant>,
    /// When the renewal now awaiting its response was sent.
    renewing_since: Option<Instant>,
    loss: Option<Loss>,
    watchers: Vec<Sender<Loss>>,
    /// Set before the release is sent, so the refusals that may follow are not losses.
    released: bool,
}

impl Holding {
    /// A holding before its first grant is recorded: no renewal planned, no loss, no watchers.
    fn new() -> Holding {
        Holding {
            expires: Instant::now(),
            next_renewal: None,
            renewing_since: None,
            loss: None,
            watchers: Vec::new(),
            released: false,
        }
    }

    /// Records a renewal sent at `sent` that the server granted for `lease_s`.
    fn renewed(&mut self, sent: Instant, lease_s: u64, renew_at: Option<f64>) {
        let lease = Duration::from_secs(lease_s);
        self.expires = sent + lease;
        self.next_renewal = renew_at.map(|fraction| {
            let early = 1.0 - RENEW_JITTER * unit_random();
            sent + lease.mul_f64(fraction * early)
        });
    }

    fn lose(&mut self, loss: Loss) {
        if self.loss.is_some() || self.released {
            return;
        }
        for watcher in self.watchers.drain(..) {
            let _ = watcher.send(loss.clone());
        }
        self.loss = Some(loss);
    }
}

/// A number in [0, 1) that differs from call to call; std's per-map random hash keys are
/// enough for spreading renewals, which need no secrecy.
fn unit_random() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a guard's subscription to the lock events of its lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Not asked for ([`Lock::watch_events`]).
    Off,
    /// Asked for at this time; the pump sends the `listen`s at its first tick, before any
    /// renewal.
    Wanted(Instant),
    /// Sent; this many answers are still to come, before any renewal's.
    Listening(usize),
}

/// The events that tell a holder its lease is gone.
const LOSS_EVENTS: [LockEvent; 2] = [LockEvent::Expired, LockEvent::Evicted];

/// The session hooks of a guard: renewal and loss detection, on the pump thread.
struct Keeper {
    state: Arc<Mutex<Holding>>,
    kind: Kind,
    key: String,
    token: [u8; TOKEN_LEN],
    fence: u64,
    lease_s: Option<u64>,
    renew_at: Option<f64>,
    events: Watch,
}

impl Keeper {
    /// Listens to the loss events of the key on the guard's own connection. Their answers come
    /// before any renewal's, since renewals are only sent from later ticks.
    fn listen_to_events(&mut self, link: &Link) {
        let mut sent = 0;
        for event in LOSS_EVENTS {
            let mut channel = Vec::new();
            event_channel(
                self.kind.namespace(),
                event,
                self.key.as_bytes(),
                &mut channel,
            );
            let request = Request::Listen(Subscription {
                pattern: &channel,
                group: b"",
            });
            // A failed send shuts the connection down, and `closed` then reports the loss.
            if link.send(&request).is_ok() {
                sent += 1;
            }
        }
        self.events = Watch::Listening(sent);
    }

    /// The loss a pushed signal reports, if it is a loss event about this guard's lease.
    fn loss_in(&self, signal: &Signal) -> Option<Loss> {
        let (ns, event) = parse_event_channel(&signal.channel)?;
        let payload: EventPayload<'_> = serde_json::from_str(&signal.payload).ok()?;
        let ours = ns == self.kind.namespace()
            && payload.key == self.key.as_str()
            && payload.fence_value() == Some(self.fence);
        match event {
            LockEvent::Expired if ours => Some(Loss::Expired),
            LockEvent::Evicted if ours => Some(Loss::Evicted),
            _ => None,
        }
    }
}

impl Hooks for Keeper {
    fn due(&self) -> Option<Instant> {
        let state = lock(&self.state);
        if state.loss.is_some() || state.released {
            return None;
        }
        if let Watch::Wanted(since) = self.events {
            return Some(since);
        }
        match (state.renewing_since, state.next_renewal) {
            (None, Some(next)) => Some(next.min(state.expires)),
            _ => Some(state.expires),
        }
    }

    fn tick(&mut self, now: Instant, link: &Link) {
        if let Watch::Wanted(_) = self.events {
            self.listen_to_events(link);
        }
        {
            let mut state = lock(&self.state);
            if state.loss.is_some() || state.released {
                return;
            }
            if now >= state.expires {
                state.lose(Loss::Expired);
                return;
            }
            let renewal_due = state.next_renewal.is_some_and(|next| next <= now);
            if state.renewing_since.is_some() || !renewal_due {
                return;
            }
            state.renewing_since = Some(now);
        }
        // A failed send shuts the connection down, and `closed` then reports the loss.
        let _ = link.send(&renew_request(
            self.kind,
            &self.key,
            &self.token,
            self.lease_s,
        ));
    }

    fn reply(&mut self, line: &str) {
        if let Watch::Listening(due @ 1..) = self.events {
            // A refused `listen` (a subscription limit) leaves renewal to find losses.
            self.events = Watch::Listening(due - 1);
            return;
        }
        let mut state = lock(&self.state);
        let Some(sent) = state.renewing_since.take() else {
            return;
        };
        match parse_renewed(line) {
            Ok(lease_s) => state.renewed(sent, lease_s, self.renew_at),
            Err(_) => state.lose(Loss::Refused),
        }
    }

    fn push(&mut self, signal: Signal) {
        // The only subscriptions of a holder's connection are its loss events.
        if let Some(loss) = self.loss_in(&signal) {
            lock(&self.state).lose(loss);
        }
    }

    fn closed(&mut self, why: &str) {
        lock(&self.state).lose(Loss::Disconnected(why.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_come_at_the_fraction_with_early_jitter_only() {
        let sent = Instant::now();
        for _ in 0..100 {
            let mut state = Holding::new();
            state.renewed(sent, 10, Some(0.5));
            assert_eq!(state.expires, sent + Duration::from_secs(10));
            let next = state.next_renewal.expect("renewal on") - sent;
            assert!(next <= Duration::from_secs(5), "{next:?}");
            assert!(next >= Duration::from_millis(4500), "{next:?}");
        }
        let mut off = Holding::new();
        off.renewed(sent, 10, None);
        assert_eq!(off.next_renewal, None);
    }

    #[test]
    fn a_loss_is_reported_once_and_never_after_release() {
        let mut state = Holding::new();
        let (sender, receiver) = mpsc::channel();
        state.watchers.push(sender);
        state.lose(Loss::Refused);
        state.lose(Loss::Expired);
        assert_eq!(state.loss, Some(Loss::Refused));
        assert_eq!(receiver.try_recv().ok(), Some(Loss::Refused));
        assert!(receiver.try_recv().is_err());

        let mut released = Holding::new();
        released.released = true;
        released.lose(Loss::Expired);
        assert_eq!(released.loss, None);
    }
}
