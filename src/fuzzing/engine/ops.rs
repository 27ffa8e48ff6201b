//! The `engine` target's vocabulary and the decoder that turns input bytes into requests over it.

use super::model::{Resource, TokenText};
use crate::clock::Millis;
use crate::fuzzing::Input;
use crate::protocol::request::{
    Acquire, Check, CheckTarget, Enqueue, Evict, EvictTarget, Queue, Release, Renew, Signal,
    Subscription, Wait,
};
use crate::protocol::{MAX_SECONDS, Namespace, Request};
use crate::token::LeaseToken;

pub(super) const SLOTS: usize = 4;
pub(super) const KEYS: [&[u8]; 3] = [b"a", b"b", b"c"];
pub(super) const LEASES: [Option<u64>; 5] = [None, Some(1), Some(2), Some(7), Some(MAX_SECONDS)];
pub(super) const TIMEOUTS: [u64; 5] = [0, 1, 3, 60, MAX_SECONDS];
pub(super) const LIMITS: [u64; 3] = [1, 2, 3];
/// With lock events on, the last two receive events and the wildcard-first ones must not.
pub(super) const PATTERNS: [&[u8]; 9] = [
    b"a",
    b"a.b",
    b"a.*",
    b"a.>",
    b">",
    b"*",
    b"a*",
    b"$lock.>",
    b"$sem.*.a",
];
pub(super) const GROUPS: [&[u8]; 3] = [b"", b"g", b"h"];
/// The last is reserved: refused with lock events on, an ordinary channel without.
pub(super) const CHANNELS: [&[u8]; 5] = [b"a", b"a.b", b"b.c", b"a.b.c", b"$lock.x"];
/// Tokens that match no lease: malformed, and well-formed but never issued.
pub(super) const UNKNOWN_TOKENS: [&[u8]; 2] = [b"nope", b"00000000000000000000000000000000"];
/// Further ahead than any deadline the vocabulary can set (MAX_SECONDS is 9.2e12 ms), yet small
/// enough that the final jumps stay far inside the timer wheel's range (2^54 ms).
pub(super) const FAR_MS: u64 = 1 << 44;
/// Where the input's large clock steps stop: every deadline set before the final jumps of
/// [`FAR_MS`] then lies inside the timer wheel's range ([`crate::timer::END_OF_TIME`]).
pub(super) const LARGE_STEPS_END: Millis = Millis(1 << 52);
/// Small clock steps, in milliseconds, around the vocabulary's lease and timeout lengths.
pub(super) const SMALL_STEPS_MS: [u64; 8] = [0, 1, 999, 1_000, 1_001, 2_000, 7_000, 61_000];

/// One request to apply, owning its token bytes.
#[derive(Debug)]
pub(super) struct Op {
    pub(super) kind: u8,
    pub(super) ns: Namespace,
    pub(super) key: &'static [u8],
    pub(super) timeout_s: u64,
    pub(super) limit: u64,
    pub(super) lease_s: Option<u64>,
    pub(super) token: Vec<u8>,
    /// Picks the pattern of `listen`/`unlisten` and the channel of `signal`; whether `check`
    /// and `evict` name a token or its fence (or everyone), and whether `sq` names a limit.
    pub(super) text: usize,
    pub(super) group: &'static [u8],
}

impl Op {
    /// Ten bytes, always (so a mutation of one field leaves the rest of the input in place):
    /// kind, namespace, key, timeout, limit, lease, token choice, unknown token, pattern or
    /// channel, group.
    pub(super) fn read(input: &mut Input<'_>, seen: &[TokenText]) -> Op {
        let kind = input.byte() % 16;
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

    pub(super) fn resource(&self) -> Resource {
        (self.ns, self.key)
    }

    pub(super) fn request(&self) -> Request<'_> {
        let (ns, key) = (self.ns, self.key);
        match self.kind {
            0 | 1 => Request::Acquire(Acquire {
                ns,
                key,
                timeout_s: self.timeout_s,
                limit: self.limit,
                lease_s: self.lease_s,
            }),
            2 | 3 => Request::Release(Release {
                ns,
                key,
                token: &self.token,
            }),
            4 => Request::Renew(Renew {
                ns,
                key,
                token: &self.token,
                lease_s: self.lease_s,
            }),
            5 => Request::Enqueue(Enqueue {
                ns,
                key,
                limit: self.limit,
                lease_s: self.lease_s,
            }),
            6 | 7 => Request::Wait(Wait {
                ns,
                key,
                timeout_s: self.timeout_s,
            }),
            8 => Request::Listen(Subscription {
                pattern: PATTERNS[self.text % PATTERNS.len()],
                group: self.group,
            }),
            9 => Request::Unlisten(Subscription {
                pattern: PATTERNS[self.text % PATTERNS.len()],
                group: self.group,
            }),
            10 | 11 => Request::Signal(Signal {
                channel: CHANNELS[self.text % CHANNELS.len()],
                payload: b"p",
            }),
            12 => Request::Check(Check {
                ns,
                key,
                target: self.holder(),
            }),
            13 => Request::Queue(Queue {
                ns,
                key,
                limit: (ns == Namespace::Semaphore && self.text % 2 == 1).then_some(self.limit),
            }),
            _ => Request::Evict(Evict {
                ns,
                key,
                target: match self.text % 3 {
                    0 => EvictTarget::All,
                    _ => EvictTarget::Holder(self.holder()),
                },
            }),
        }
    }

    /// The token as `check` and `evict` name a holder: whole, or only its fence. A token that
    /// does not parse stands for the all-zero one, which is never issued.
    pub(super) fn holder(&self) -> CheckTarget {
        let token = LeaseToken::parse(&self.token).unwrap_or(LeaseToken {
            fence: 0,
            random: 0,
        });
        match self.text % 2 {
            0 => CheckTarget::Token(token),
            _ => CheckTarget::Fence(token.fence),
        }
    }
}
