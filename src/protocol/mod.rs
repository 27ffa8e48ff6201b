//! The wire protocol: three-line requests in, one-line responses and `sig` pushes out.
//!
//! - [`frame`] splits raw bytes into requests of three lines, enforcing the line limits while it
//!   scans (spec §2).
//! - [`request`] turns a frame into a typed [`Request`], validating every field once (spec §3, §7).
//! - [`response`] turns a [`Response`] or a signal push into bytes. Every wire string lives there.
//! - [`events`] names the reserved channels and payload of lock events (`--lock-events`).
//! - The command table ([`request::Command`]: names, namespaces, arg line limits) is read by both
//!   framing and parsing, so neither depends on the other.
//!
//! Nothing here touches sockets or the clock.

mod command;
pub mod events;
pub mod frame;
pub mod request;
pub mod response;

pub use self::command::{COMMAND_COUNT, Command};
use crate::token::LeaseToken;
use request::{
    Acquire, Auth, Check, Enqueue, Evict, Queue, Release, Renew, Signal, Subscription, Wait,
};

/// Longest command line, key line and ordinary arg line, in bytes before the LF, CRs included.
pub const MAX_LINE: usize = 256;
/// Longest arg line of `signal` and `auth` (the payload and the token).
pub const MAX_PAYLOAD_LINE: usize = 65_536;
/// Largest value of any seconds field on the wire: the largest whole number of seconds a signed
/// 64-bit nanosecond duration can hold.
pub const MAX_SECONDS: u64 = 9_223_372_036;
/// The longest a complete request can be: three lines with their LFs.
pub const MAX_REQUEST: usize = (MAX_LINE + 1) * 2 + MAX_PAYLOAD_LINE + 1;

/// Locks and semaphores live in separate namespaces: `l foo` and `sl foo 0 3` name two different
/// resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// `l r n e w`: resources of capacity 1.
    Lock,
    /// `sl sr sn se sw`: resources whose capacity is fixed by the first request.
    Semaphore,
}

/// A parsed, validated request. Borrowed fields point into the connection's input buffer.
///
/// Each command's fields travel together as one payload struct (see [`request`]), so a stage
/// that handles a command takes the payload whole instead of re-listing its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `l` (limit 1) or `sl`: acquire, waiting up to the timeout (0 = try once).
    Acquire(Acquire<'a>),
    /// `r` / `sr`: release the holder with this token.
    Release(Release<'a>),
    /// `n` / `sn`: reset the lease of the holder with this token to now + lease.
    Renew(Renew<'a>),
    /// `e` (limit 1) or `se`: join the queue now (two-phase acquire, phase 1).
    Enqueue(Enqueue<'a>),
    /// `w` / `sw`: wait for the grant of an earlier `e`/`se` (phase 2).
    Wait(Wait<'a>),
    /// `stats`: a JSON snapshot of the server.
    Stats,
    /// `ping`: answers `ok`; keeps an idle connection inside its read deadline.
    Ping,
    /// `auth`: the shared secret.
    Auth(Auth<'a>),
    /// `listen`: subscribe to a channel or pattern, optionally in a queue group.
    Listen(Subscription<'a>),
    /// `unlisten`: drop the subscription with exactly this (pattern, group).
    Unlisten(Subscription<'a>),
    /// `signal`: publish a payload on a literal channel.
    Signal(Signal<'a>),
    /// `info`: a JSON object of counters, gauges and the most contended keys (an extension).
    Info,
    /// `check` / `scheck`: is this token or fence a current holder's? (an extension).
    Check(Check<'a>),
    /// `q` / `sq`: holders, limit, waiters and the sender's queue position (an extension).
    Queue(Queue<'a>),
    /// `evict` / `sevict`: end holders' leases now; admin connections only (an extension).
    Evict(Evict<'a>),
}

/// Why a request was rejected while parsing. On the wire every one of them is `error` and the
/// connection stays open; the numeric code (spec §5) only appears in the debug log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// Code 3: not a command this server knows.
    UnknownCommand,
    /// Code 4: a field that should be an integer is not one (or does not fit an i64).
    BadInteger,
    /// Code 5: empty key, white space in the key, or a wildcard in a `signal` channel.
    BadKey,
    /// Code 6: timeout outside 0 ..= [`MAX_SECONDS`].
    TimeoutOutOfRange,
    /// Code 7: empty token.
    EmptyToken,
    /// Code 8: wrong number of fields, missing argument, or an empty or oversized payload.
    BadArguments,
    /// Code 9: lease outside 1 ..= [`MAX_SECONDS`].
    LeaseOutOfRange,
    /// Code 13: semaphore limit of zero or less.
    BadLimit,
}

impl ProtoError {
    /// The reference server's numeric code for this error, for logs.
    pub fn code(self) -> u8 {
        match self {
            ProtoError::UnknownCommand => 3,
            ProtoError::BadInteger => 4,
            ProtoError::BadKey => 5,
            ProtoError::TimeoutOutOfRange => 6,
            ProtoError::EmptyToken => 7,
            ProtoError::BadArguments => 8,
            ProtoError::LeaseOutOfRange => 9,
            ProtoError::BadLimit => 13,
        }
    }
}

/// One response line. Every request gets exactly one (spec §2.3), except a connection that is
/// torn down while its request waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// `ok`: release, listen, unlisten, ping, auth.
    Ok,
    /// `ok <token> <lease_s>`: granted by `l`, `sl`, `w`, `sw`.
    Granted {
        /// The holder's token.
        token: LeaseToken,
        /// The effective lease in whole seconds.
        lease_s: u64,
    },
    /// `acquired <token> <lease_s>`: `e`/`se` granted at once.
    Acquired {
        /// The holder's token.
        token: LeaseToken,
        /// The effective lease in whole seconds.
        lease_s: u64,
    },
    /// `ok <lease_s>`: renewed.
    Renewed {
        /// The new lease in whole seconds.
        lease_s: u64,
    },
    /// `ok <count>`: a signal was queued for this many deliveries.
    Delivered {
        /// Copies queued (one per connection or queue group).
        count: u64,
    },
    /// `queued`: `e`/`se` joined the queue.
    Queued,
    /// `timeout`: the wait ended without a grant.
    Timeout,
    /// `error`: parse errors, unknown token, invalid pattern, cancelled wait, ...
    Error,
    /// `error_auth`: authentication failed; the connection closes.
    ErrorAuth,
    /// `error_max_locks`: a new resource would exceed `--max-locks`.
    ErrorMaxLocks,
    /// `error_max_waiters`: the queue is at `--max-waiters`.
    ErrorMaxWaiters,
    /// `error_limit_mismatch`: the semaphore exists with another limit.
    ErrorLimitMismatch,
    /// `error_already_enqueued`: `e`/`se` while already enqueued for that key.
    ErrorAlreadyEnqueued,
    /// `error_not_enqueued`: `w`/`sw` without a matching `e`/`se`.
    ErrorNotEnqueued,
    /// `error_lease_expired`: the grant's lease ran out before the requester saw it.
    ErrorLeaseExpired,
    /// `error_draining`: the server is shutting down; the connection closes.
    ErrorDraining,
    /// `ok <fence> <remaining_ms>`: `check`/`scheck` found a current holder (an extension). The
    /// fence is written as 16 hex digits, like the first half of a token.
    Checked {
        /// The holder's fence.
        fence: u64,
        /// Milliseconds until its lease passes, at least 1.
        remaining_ms: u64,
    },
    /// `stale`: `check`/`scheck` found no current holder with that token or fence (an
    /// extension).
    Stale,
    /// `ok <holders> <limit> <waiters> <position>`: `q`/`sq` (an extension).
    QueueState {
        /// Current holders.
        holders: u32,
        /// The capacity: 1 for a lock.
        limit: u64,
        /// Waiters in the queue.
        waiters: u32,
        /// The asking connection's 1-based place among the waiters; 0 if it does not wait.
        position: u32,
    },
    /// `ok <count>`: `evict`/`sevict` ended this many leases (an extension).
    Evicted {
        /// Leases ended; 0 when nothing matched.
        count: u64,
    },
}
