//! Request parsing: turns a [`Frame`] into a typed [`Request`], checking everything a parser can
//! check (spec §3, §7) in the order spec §5 prescribes, so that each request is validated exactly
//! once and later stages trust its fields.
//!
//! This module owns the argument syntax: white-space tokenisation on the Unicode `White_Space` set
//! over raw bytes, trimming and integers; the command table it looks names up in is shared with
//! framing (`command.rs`). It does not validate signal patterns (the signal index does), check
//! tokens against leases, or know about authentication state; it never allocates.

use super::frame::Frame;
use super::response::push_len;
use super::{MAX_PAYLOAD_LINE, MAX_SECONDS, Namespace, ProtoError, Request};
use crate::token::{LeaseToken, TOKEN_LEN, parse_fence};

pub use super::command::Command;

/// `l` (limit 1) or `sl`: acquire, waiting up to `timeout_s` seconds (0 = try once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquire<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// How long to wait in the queue, 0 ..= [`MAX_SECONDS`].
    pub timeout_s: u64,
    /// Capacity: 1 for `l`, N for `sl`.
    pub limit: u64,
    /// Lease length, or `None` for the server default.
    pub lease_s: Option<u64>,
}

/// `r` / `sr`: release the holder with this token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// The token as sent, trimmed of surrounding white space; never empty.
    pub token: &'a [u8],
}

/// `n` / `sn`: reset the lease of the holder with this token to now + lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renew<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// The token as sent; never empty.
    pub token: &'a [u8],
    /// New lease length, or `None` for the server default.
    pub lease_s: Option<u64>,
}

/// `e` (limit 1) or `se`: join the queue now (two-phase acquire, phase 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueue<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// Capacity: 1 for `e`, N for `se`.
    pub limit: u64,
    /// Lease length, or `None` for the server default.
    pub lease_s: Option<u64>,
}

/// `w` / `sw`: wait for the grant of an earlier `e`/`se` (phase 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// How long to wait, 0 ..= [`MAX_SECONDS`].
    pub timeout_s: u64,
}

/// What `check` / `scheck` asks about: a whole token, or only its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckTarget {
    /// A 32-digit token: matches only the holder with exactly this token.
    Token(LeaseToken),
    /// A 16-digit fence: matches the holder whose token starts with it.
    Fence(u64),
}

impl From<LeaseToken> for CheckTarget {
    fn from(token: LeaseToken) -> CheckTarget {
        CheckTarget::Token(token)
    }
}

impl From<u64> for CheckTarget {
    /// A fence.
    fn from(fence: u64) -> CheckTarget {
        CheckTarget::Fence(fence)
    }
}

/// `check` / `scheck`: whether a token or fence belongs to a current holder of the key (an
/// extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// The token or fence asked about.
    pub target: CheckTarget,
}

/// `q` / `sq`: the key's holders, limit and waiters, and the sender's place among the waiters
/// (an extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// `sq` only: the limit to report when the semaphore does not exist (an existing one reports
    /// its own). Always `None` for `q`.
    pub limit: Option<u64>,
}

/// `auth`: the shared secret, trimmed of surrounding white space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    /// The token as sent (may be empty).
    pub token: &'a [u8],
}

/// `listen` / `unlisten`: one subscription, a pattern and its queue group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// A valid key; validated as a pattern by the signal index.
    pub pattern: &'a [u8],
    /// The queue group, trimmed; empty = not grouped.
    pub group: &'a [u8],
}

/// `signal`: publish a payload on a literal channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal<'a> {
    /// A valid key without `*` or `>`.
    pub channel: &'a [u8],
    /// The arg line verbatim (only trailing CRs removed); not blank; fits a 64 KiB push line.
    pub payload: &'a [u8],
}

impl Request<'_> {
    /// The command this request was (or would be) sent as.
    pub fn command(&self) -> Command {
        match *self {
            Request::Acquire(Acquire { ns, .. }) => Command::Acquire(ns),
            Request::Release(Release { ns, .. }) => Command::Release(ns),
            Request::Renew(Renew { ns, .. }) => Command::Renew(ns),
            Request::Enqueue(Enqueue { ns, .. }) => Command::Enqueue(ns),
            Request::Wait(Wait { ns, .. }) => Command::Wait(ns),
            Request::Stats => Command::Stats,
            Request::Info => Command::Info,
            Request::Check(Check { ns, .. }) => Command::Check(ns),
            Request::Queue(Queue { ns, .. }) => Command::Queue(ns),
            Request::Ping => Command::Ping,
            Request::Auth(_) => Command::Auth,
            Request::Listen(_) => Command::Listen,
            Request::Unlisten(_) => Command::Unlisten,
            Request::Signal(_) => Command::Signal,
        }
    }
}

/// Parses and validates one request.
///
/// The checks run in the order of spec §5: command lookup; then `stats`, `ping` and `auth`
/// return without looking at the key; then the key; then the command's arguments as §7 lists
/// them: the field count, then each field left to right, its syntax before its range. The first
/// failure decides the error, so its numeric code is deterministic.
pub fn parse<'a>(frame: &Frame<'a>) -> Result<Request<'a>, ProtoError> {
    parse_as(Command::from_name(frame.cmd), frame)
}

/// [`parse`] for a caller that already looked the command name up (`None`: unknown).
pub fn parse_as<'a>(
    command: Option<Command>,
    frame: &Frame<'a>,
) -> Result<Request<'a>, ProtoError> {
    let command = command.ok_or(ProtoError::UnknownCommand)?;
    let arg = frame.arg;
    match command {
        Command::Stats => Ok(Request::Stats),
        Command::Info => Ok(Request::Info),
        Command::Ping => Ok(Request::Ping),
        Command::Auth => Ok(Request::Auth(Auth { token: trim(arg) })),
        Command::Acquire(ns) => acquire(ns, key(frame.key)?, arg),
        Command::Release(ns) => Ok(Request::Release(Release {
            ns,
            key: key(frame.key)?,
            token: non_empty_token(trim(arg))?,
        })),
        Command::Renew(ns) => renew(ns, key(frame.key)?, arg),
        Command::Enqueue(ns) => enqueue(ns, key(frame.key)?, arg),
        Command::Wait(ns) => wait(ns, key(frame.key)?, arg),
        Command::Listen => Ok(Request::Listen(subscription(frame)?)),
        Command::Unlisten => Ok(Request::Unlisten(subscription(frame)?)),
        Command::Signal => signal(key(frame.key)?, arg),
        Command::Check(ns) => check(ns, key(frame.key)?, arg),
        Command::Queue(ns) => queue(ns, key(frame.key)?, arg),
    }
}

/// `q`: the arg line is ignored; `sq`: the whole trimmed arg is an optional limit.
fn queue<'a>(ns: Namespace, key: &'a [u8], arg: &[u8]) -> Result<Request<'a>, ProtoError> {
    let limit = match ns {
        Namespace::Lock => None,
        Namespace::Semaphore => {
            let limit = trim(arg);
            (!limit.is_empty())
                .then(|| limit_field(limit))
                .transpose()?
        }
    };
    Ok(Request::Queue(Queue { ns, key, limit }))
}

/// `check` / `scheck`: the trimmed arg is a token (32 lower-case hex digits) or a fence (16).
fn check<'a>(ns: Namespace, key: &'a [u8], arg: &[u8]) -> Result<Request<'a>, ProtoError> {
    let text = non_empty_token(trim(arg))?;
    let target = match text.len() {
        TOKEN_LEN => LeaseToken::parse(text).map(CheckTarget::Token),
        16 => parse_fence(text).map(CheckTarget::Fence),
        _ => None,
    };
    Ok(Request::Check(Check {
        ns,
        key,
        target: target.ok_or(ProtoError::BadArguments)?,
    }))
}

/// `l`: `T [L]`; `sl`: `T N [L]`.
fn acquire<'a>(ns: Namespace, key: &'a [u8], arg: &'a [u8]) -> Result<Request<'a>, ProtoError> {
    let (timeout_s, limit, lease) = match ns {
        Namespace::Lock => {
            let [Some(timeout), lease] = fields(arg)? else {
                return Err(ProtoError::BadArguments);
            };
            (timeout_field(timeout)?, 1, lease)
        }
        Namespace::Semaphore => {
            let [Some(timeout), Some(limit), lease] = fields(arg)? else {
                return Err(ProtoError::BadArguments);
            };
            (timeout_field(timeout)?, limit_field(limit)?, lease)
        }
    };
    Ok(Request::Acquire(Acquire {
        ns,
        key,
        timeout_s,
        limit,
        lease_s: lease.map(lease_field).transpose()?,
    }))
}

/// `n` / `sn`: `tok [L]`. A field is never empty, so the token is not either.
fn renew<'a>(ns: Namespace, key: &'a [u8], arg: &'a [u8]) -> Result<Request<'a>, ProtoError> {
    let [Some(token), lease] = fields(arg)? else {
        return Err(ProtoError::BadArguments);
    };
    Ok(Request::Renew(Renew {
        ns,
        key,
        token,
        lease_s: lease.map(lease_field).transpose()?,
    }))
}

/// `e`: the whole trimmed arg is an optional lease (so `30 junk` is a bad integer);
/// `se`: `N [L]`.
fn enqueue<'a>(ns: Namespace, key: &'a [u8], arg: &'a [u8]) -> Result<Request<'a>, ProtoError> {
    let (limit, lease) = match ns {
        Namespace::Lock => {
            let lease = trim(arg);
            (1, (!lease.is_empty()).then_some(lease))
        }
        Namespace::Semaphore => {
            let [Some(limit), lease] = fields(arg)? else {
                return Err(ProtoError::BadArguments);
            };
            (limit_field(limit)?, lease)
        }
    };
    Ok(Request::Enqueue(Enqueue {
        ns,
        key,
        limit,
        lease_s: lease.map(lease_field).transpose()?,
    }))
}

/// `w` / `sw`: the whole trimmed arg is the timeout (so `1 2` is a bad integer).
fn wait<'a>(ns: Namespace, key: &'a [u8], arg: &[u8]) -> Result<Request<'a>, ProtoError> {
    let timeout = trim(arg);
    if timeout.is_empty() {
        return Err(ProtoError::BadArguments);
    }
    Ok(Request::Wait(Wait {
        ns,
        key,
        timeout_s: timeout_field(timeout)?,
    }))
}

/// `listen` / `unlisten`: the pattern in the key line, the trimmed group in the arg line.
fn subscription<'a>(frame: &Frame<'a>) -> Result<Subscription<'a>, ProtoError> {
    Ok(Subscription {
        pattern: key(frame.key)?,
        group: trim(frame.arg),
    })
}

/// `signal`: a literal channel and the arg line verbatim as the payload.
fn signal<'a>(channel: &'a [u8], payload: &'a [u8]) -> Result<Request<'a>, ProtoError> {
    if channel.iter().any(|&b| b == b'*' || b == b'>') {
        return Err(ProtoError::BadKey);
    }
    // The push line `sig <channel> <payload>` must fit the 64 KiB line every client accepts.
    if trim(payload).is_empty() || push_len(channel, payload) > MAX_PAYLOAD_LINE + 1 {
        return Err(ProtoError::BadArguments);
    }
    Ok(Request::Signal(Signal { channel, payload }))
}

/// A key (spec §3.1): non-empty, without SP, TAB, CR or LF. Every other byte is allowed.
fn key(key: &[u8]) -> Result<&[u8], ProtoError> {
    let bad = key.is_empty()
        || key
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if bad {
        Err(ProtoError::BadKey)
    } else {
        Ok(key)
    }
}

fn non_empty_token(token: &[u8]) -> Result<&[u8], ProtoError> {
    if token.is_empty() {
        Err(ProtoError::EmptyToken)
    } else {
        Ok(token)
    }
}

/// A wait or acquire timeout: 0 ..= [`MAX_SECONDS`].
fn timeout_field(field: &[u8]) -> Result<u64, ProtoError> {
    seconds(field, 0, ProtoError::TimeoutOutOfRange)
}

/// A lease TTL: 1 ..= [`MAX_SECONDS`].
fn lease_field(field: &[u8]) -> Result<u64, ProtoError> {
    seconds(field, 1, ProtoError::LeaseOutOfRange)
}

fn seconds(field: &[u8], min: u64, out_of_range: ProtoError) -> Result<u64, ProtoError> {
    let value = integer(field).ok_or(ProtoError::BadInteger)?;
    u64::try_from(value)
        .ok()
        .filter(|s| (min..=MAX_SECONDS).contains(s))
        .ok_or(out_of_range)
}

/// A semaphore limit: 1 ..= `i64::MAX`.
fn limit_field(field: &[u8]) -> Result<u64, ProtoError> {
    let value = integer(field).ok_or(ProtoError::BadInteger)?;
    u64::try_from(value)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(ProtoError::BadLimit)
}

/// A decimal integer (spec §3.3): an optional `+` or `-`, then one or more ASCII digits (leading
/// zeros allowed), and the value must fit an `i64`. Nothing else: no spaces, `_`, `.` or exponent.
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |acc, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })?;
    if negative {
        // Accumulating the magnitude in a u64 lets `i64::MIN` through, as it should.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Splits `arg` into at most `N` fields (spec §3.2), filling the slots in order; unused slots
/// are `None`. More than `N` fields is a wrong field count. Callers require their mandatory
/// fields by pattern-matching `Some` in the leading slots.
fn fields<const N: usize>(arg: &[u8]) -> Result<[Option<&[u8]>; N], ProtoError> {
    let mut slots = [None; N];
    for (i, field) in Fields(arg).enumerate() {
        *slots.get_mut(i).ok_or(ProtoError::BadArguments)? = Some(field);
    }
    Ok(slots)
}

/// The fields of an arg line: maximal runs of bytes that are not white space, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = trim_start(self.0);
        if rest.is_empty() {
            return None;
        }
        // Testing every offset finds exactly the white space a UTF-8 decoder would: each
        // white-space sequence starts with ASCII or a lead byte, which is never inside another
        // well-formed character, and a decoder resynchronises at every lead byte.
        let end = (0..rest.len())
            .find(|&i| space_len_at(&rest[i..]) > 0)
            .unwrap_or(rest.len());
        let (field, tail) = rest.split_at(end);
        self.0 = tail;
        Some(field)
    }
}

/// `text` without leading and trailing white space. Internal white space is kept.
fn trim(text: &[u8]) -> &[u8] {
    trim_end(trim_start(text))
}

fn trim_start(mut text: &[u8]) -> &[u8] {
    loop {
        match space_len_at(text) {
            0 => return text,
            n => text = &text[n..],
        }
    }
}

fn trim_end(mut text: &[u8]) -> &[u8] {
    loop {
        match space_len_before(text) {
            0 => return text,
            n => text = &text[..text.len() - n],
        }
    }
}

/// Length of the white-space character `text` starts with, or 0 if it starts with anything else.
///
/// White space is the Unicode `White_Space` set (what the reference server's tokeniser uses):
/// ASCII TAB, LF, VT, FF, CR and SP, plus the UTF-8 encodings of U+0085, U+00A0, U+1680,
/// U+2000 ..= U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Only those exact, well-formed
/// byte sequences count; invalid UTF-8 is never white space.
fn space_len_at(text: &[u8]) -> usize {
    match text {
        [0x09..=0x0d | b' ', ..] => 1,
        [0xc2, 0x85 | 0xa0, ..] => 2,
        [0xe1, 0x9a, 0x80, ..]
        | [0xe2, 0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf, ..]
        | [0xe2, 0x81, 0x9f, ..]
        | [0xe3, 0x80, 0x80, ..] => 3,
        _ => 0,
    }
}

/// Length of the white-space character `text` ends with, or 0.
fn space_len_before(text: &[u8]) -> usize {
    (1..=3)
        .find(|&n| n <= text.len() && space_len_at(&text[text.len() - n..]) == n)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_LINE;
    use crate::protocol::command::COMMANDS;
    use crate::protocol::frame::{Decoded, FrameDecoder};
    use Namespace::{Lock, Semaphore};

    /// Frames `wire` (which must hold exactly one request) and parses it.
    fn parse_wire(wire: &[u8]) -> Result<Request<'_>, ProtoError> {
        match FrameDecoder::default().decode(wire) {
            Decoded::Frame { frame, consumed } if consumed == wire.len() => parse(&frame),
            other => panic!(
                "{:?} is not exactly one request: {other:?}",
                wire.escape_ascii()
            ),
        }
    }

    fn acquire<'a>(
        ns: Namespace,
        key: &'a [u8],
        timeout_s: u64,
        limit: u64,
        lease_s: Option<u64>,
    ) -> Request<'a> {
        Request::Acquire(Acquire {
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
        })
    }

    fn release<'a>(ns: Namespace, key: &'a [u8], token: &'a [u8]) -> Request<'a> {
        Request::Release(Release { ns, key, token })
    }

    fn renew<'a>(
        ns: Namespace,
        key: &'a [u8],
        token: &'a [u8],
        lease_s: Option<u64>,
    ) -> Request<'a> {
        Request::Renew(Renew {
            ns,
            key,
            token,
            lease_s,
        })
    }

    fn enqueue(ns: Namespace, key: &[u8], limit: u64, lease_s: Option<u64>) -> Request<'_> {
        Request::Enqueue(Enqueue {
            ns,
            key,
            limit,
            lease_s,
        })
    }

    fn wait(ns: Namespace, key: &[u8], timeout_s: u64) -> Request<'_> {
        Request::Wait(Wait { ns, key, timeout_s })
    }

    fn listen<'a>(pattern: &'a [u8], group: &'a [u8]) -> Request<'a> {
        Request::Listen(Subscription { pattern, group })
    }

    fn signal<'a>(channel: &'a [u8], payload: &'a [u8]) -> Request<'a> {
        Request::Signal(Signal { channel, payload })
    }

    #[test]
    fn accepted_requests() {
        let cases: &[(&[u8], Request<'_>)] = &[
            // l
            (b"l\nmy-key\n10\n", acquire(Lock, b"my-key", 10, 1, None)),
            (b"l\nk\n10 33\n", acquire(Lock, b"k", 10, 1, Some(33))),
            (b"l\nk\n  5    7  \n", acquire(Lock, b"k", 5, 1, Some(7))),
            (b"l\nk\n5\t8\n", acquire(Lock, b"k", 5, 1, Some(8))),
            (b"l\nk\n0\n", acquire(Lock, b"k", 0, 1, None)),
            (b"l\nk\n-0 +1\n", acquire(Lock, b"k", 0, 1, Some(1))),
            (b"l\nk\n05 +5\n", acquire(Lock, b"k", 5, 1, Some(5))),
            (
                b"l\nk\n00000000000000000000000000000000007\n",
                acquire(Lock, b"k", 7, 1, None),
            ),
            (
                b"l\nk\n9223372036 9223372036\n",
                acquire(Lock, b"k", MAX_SECONDS, 1, Some(MAX_SECONDS)),
            ),
            (
                b"l\r\nk\r\n10 33\r\r\n",
                acquire(Lock, b"k", 10, 1, Some(33)),
            ),
            (b"l\nk\n\x0b1\x0c2\r \n", acquire(Lock, b"k", 1, 1, Some(2))),
            // Keys may hold any byte but SP, TAB, CR and LF.
            (
                b"l\nk\x0b\x0c\xc2\xa0\n1\n",
                acquire(Lock, b"k\x0b\x0c\xc2\xa0", 1, 1, None),
            ),
            (b"l\nk\0ey\n1\n", acquire(Lock, b"k\0ey", 1, 1, None)),
            (
                b"l\n\xff\xfe*>.\n1\n",
                acquire(Lock, b"\xff\xfe*>.", 1, 1, None),
            ),
            (b"l\na..b\n1\n", acquire(Lock, b"a..b", 1, 1, None)),
            // Unicode white space separates fields.
            (
                b"l\nk\n10\xc2\xa033\n",
                acquire(Lock, b"k", 10, 1, Some(33)),
            ),
            (
                b"l\nk\n10\xc2\x8533\n",
                acquire(Lock, b"k", 10, 1, Some(33)),
            ),
            (
                b"l\nk\n\xe3\x80\x8010\xe2\x80\xa833\xe2\x80\xa9\n",
                acquire(Lock, b"k", 10, 1, Some(33)),
            ),
            (
                b"l\nk\n\xe1\x9a\x801\xe2\x80\x802\xe2\x80\x8a\n",
                acquire(Lock, b"k", 1, 1, Some(2)),
            ),
            (
                b"l\nk\n1\xe2\x80\xaf2\xe2\x81\x9f\n",
                acquire(Lock, b"k", 1, 1, Some(2)),
            ),
            // check / scheck: a token or a fence, trimmed.
            (
                b"check\nk\n 0123456789abcdeffedcba9876543210\t\n",
                Request::Check(Check {
                    ns: Lock,
                    key: b"k",
                    target: CheckTarget::Token(LeaseToken {
                        fence: 0x0123_4567_89ab_cdef,
                        random: 0xfedc_ba98_7654_3210,
                    }),
                }),
            ),
            (
                b"scheck\npool\n00000000000000ff\n",
                Request::Check(Check {
                    ns: Semaphore,
                    key: b"pool",
                    target: CheckTarget::Fence(255),
                }),
            ),
            // q ignores its arg line; sq takes an optional limit.
            (
                b"q\nk\nanything at all\n",
                Request::Queue(Queue {
                    ns: Lock,
                    key: b"k",
                    limit: None,
                }),
            ),
            (
                b"sq\nk\n \n",
                Request::Queue(Queue {
                    ns: Semaphore,
                    key: b"k",
                    limit: None,
                }),
            ),
            (
                b"sq\nk\n 3 \n",
                Request::Queue(Queue {
                    ns: Semaphore,
                    key: b"k",
                    limit: Some(3),
                }),
            ),
            // r
            (b"r\nmy-key\n5f0c\n", release(Lock, b"my-key", b"5f0c")),
            (b"r\nk\n  a b  \n", release(Lock, b"k", b"a b")),
            (
                b"r\nk\n\xc2\xa0tok\xe3\x80\x80\t\n",
                release(Lock, b"k", b"tok"),
            ),
            (b"r\nk\n\xfftok\xc2\n", release(Lock, b"k", b"\xfftok\xc2")),
            (
                b"r\nk\n\xa0tok\xe2\x80\n",
                release(Lock, b"k", b"\xa0tok\xe2\x80"),
            ),
            // n
            (b"n\nmy-key\n5f0c\n", renew(Lock, b"my-key", b"5f0c", None)),
            (
                b"n\nmy-key\n5f0c 60\n",
                renew(Lock, b"my-key", b"5f0c", Some(60)),
            ),
            (b"n\nk\n  tok\t\t1  \n", renew(Lock, b"k", b"tok", Some(1))),
            // e
            (b"e\njob\n\n", enqueue(Lock, b"job", 1, None)),
            (b"e\njob\n \t \n", enqueue(Lock, b"job", 1, None)),
            (b"e\nk\n 30 \n", enqueue(Lock, b"k", 1, Some(30))),
            (b"e\nk\n+030\n", enqueue(Lock, b"k", 1, Some(30))),
            // w
            (b"w\njob\n10\n", wait(Lock, b"job", 10)),
            (b"w\nk\n 0 \n", wait(Lock, b"k", 0)),
            (b"w\nk\n-0\n", wait(Lock, b"k", 0)),
            // sl
            (
                b"sl\npool\n10 3 60\n",
                acquire(Semaphore, b"pool", 10, 3, Some(60)),
            ),
            (b"sl\npool\n0 4\n", acquire(Semaphore, b"pool", 0, 4, None)),
            (
                b"sl\nk\n0 9223372036854775807\n",
                acquire(Semaphore, b"k", 0, i64::MAX as u64, None),
            ),
            // sr, sn, se, sw
            (b"sr\nk\n tok \n", release(Semaphore, b"k", b"tok")),
            (b"sn\nk\ntok\n", renew(Semaphore, b"k", b"tok", None)),
            (b"sn\nk\ntok 5\n", renew(Semaphore, b"k", b"tok", Some(5))),
            (b"se\nk\n3\n", enqueue(Semaphore, b"k", 3, None)),
            (b"se\nk\n3 10\n", enqueue(Semaphore, b"k", 3, Some(10))),
            (b"sw\nk\n7\n", wait(Semaphore, b"k", 7)),
            // stats and ping ignore key and arg.
            (b"stats\n_\n_\n", Request::Stats),
            (b"stats\n_\n\n", Request::Stats),
            (b"stats\n\nanything goes\n", Request::Stats),
            (b"stats\na b\tc\r\n1 2 3\n", Request::Stats),
            (b"info\n_\n\n", Request::Info),
            (b"ping\n_\n\n", Request::Ping),
            (b"ping\n\n junk \n", Request::Ping),
            // auth ignores the key and trims the token.
            (
                b"auth\n_\nsecret\n",
                Request::Auth(Auth { token: b"secret" }),
            ),
            (
                b"auth\n\n  two words \r\n",
                Request::Auth(Auth {
                    token: b"two words",
                }),
            ),
            (b"auth\na b\n\n", Request::Auth(Auth { token: b"" })),
            (
                b"auth\n_\n\xe3\x80\x80\n",
                Request::Auth(Auth { token: b"" }),
            ),
            // listen / unlisten: the pattern is only checked as a key here.
            (b"listen\nevents.>\n\n", listen(b"events.>", b"")),
            (b"listen\njobs.>\nworkers\n", listen(b"jobs.>", b"workers")),
            (
                b"listen\na.*\n  my  group \t\n",
                listen(b"a.*", b"my  group"),
            ),
            (b"listen\na*\n\n", listen(b"a*", b"")),
            (
                b"unlisten\njobs.>\nworkers\n",
                Request::Unlisten(Subscription {
                    pattern: b"jobs.>",
                    group: b"workers",
                }),
            ),
            // signal: the payload is the arg line verbatim, minus trailing CRs.
            (
                b"signal\nevents.user.login\n{\"user\":\"alice\"}\n",
                signal(b"events.user.login", b"{\"user\":\"alice\"}"),
            ),
            (
                b"signal\nc\n  spaced  payload \t\n",
                signal(b"c", b"  spaced  payload \t"),
            ),
            (b"signal\nc\nx\r\r\n", signal(b"c", b"x")),
            (b"signal\na..b\n\xc2\xa0x\n", signal(b"a..b", b"\xc2\xa0x")),
            (b"signal\na.\n\xc2\n", signal(b"a.", b"\xc2")),
        ];
        for &(wire, expected) in cases {
            assert_eq!(parse_wire(wire), Ok(expected), "{:?}", wire.escape_ascii());
        }
    }

    #[test]
    fn rejected_requests_and_their_codes() {
        let cases: &[(&[u8], u8)] = &[
            // Unknown commands (3), checked before anything else.
            (b"L\nk\n1\n", 3),
            (b"l \nk\n1\n", 3),
            (b" l\nk\n1\n", 3),
            (b"PING\n_\n\n", 3),
            (b"lock\nk\n1\n", 3),
            (b"\n\n\n", 3),
            (b"nope\n\n\n", 3),
            (b"signal\xc2\xa0\nc\np\n", 3),
            // Keys (5), checked before the arguments.
            (b"l\n\n1\n", 5),
            (b"check\n\n0000000000000001\n", 5),
            // check / scheck: an empty arg (7), or neither a token nor a fence (8).
            (b"check\nk\n\n", 7),
            (b"scheck\nk\n  \n", 7),
            (b"check\nk\nabc\n", 8),
            (b"check\nk\n000000000000000A\n", 8),
            (b"check\nk\n00000000000000001\n", 8),
            (b"check\nk\n0000000000000001 0000000000000001\n", 8),
            (b"check\nk\n0123456789ABCDEFfedcba9876543210\n", 8),
            // sq: the optional limit's syntax (4), then its range (13).
            (b"q\n\n\n", 5),
            (b"sq\nk\n1 2\n", 4),
            (b"sq\nk\nx\n", 4),
            (b"sq\nk\n0\n", 13),
            (b"sq\nk\n-1\n", 13),
            (b"l\na b\n1\n", 5),
            (b"l\na\tb\n1\n", 5),
            (b"l\na\rb\n1\n", 5),
            (b"l\n\nnot a number\n", 5),
            (b"r\n\n\n", 5),
            (b"w\n \n\n", 5),
            (b"sl\n\t\n0 0\n", 5),
            (b"listen\n\n\n", 5),
            (b"listen\na b\ngroup\n", 5),
            (b"unlisten\n\ng\n", 5),
            (b"signal\n\nx\n", 5),
            // l: field count (8), then T syntax (4) and range (6), then L syntax (4) and range (9).
            (b"l\nk\n\n", 8),
            (b"l\nk\n   \n", 8),
            (b"l\nk\n1 2 3\n", 8),
            (b"l\nk\nx y z\n", 8),
            (b"l\nk\nx\n", 4),
            (b"l\nk\n1.5\n", 4),
            (b"l\nk\n1e3\n", 4),
            (b"l\nk\n1_000\n", 4),
            (b"l\nk\n0x10\n", 4),
            (b"l\nk\n+\n", 4),
            (b"l\nk\n-\n", 4),
            (b"l\nk\n--1\n", 4),
            (b"l\nk\n+-1\n", 4),
            (b"l\nk\n9223372036854775808\n", 4),
            (b"l\nk\nx -1\n", 4),
            (b"l\nk\n-1\n", 6),
            (b"l\nk\n9223372037\n", 6),
            (b"l\nk\n9223372036854775807\n", 6),
            (b"l\nk\n-9223372036854775808\n", 6),
            (b"l\nk\n-1 x\n", 6),
            (b"l\nk\n1 x\n", 4),
            (b"l\nk\n1 0\n", 9),
            (b"l\nk\n1 -5\n", 9),
            (b"l\nk\n1 9223372037\n", 9),
            // Not white space: lone or truncated UTF-8, other format and control characters.
            (b"l\nk\n1\xa02\n", 4),
            (b"l\nk\n1\xc0\xa02\n", 4),
            (b"l\nk\n1\xe2\x80 2\n", 4),
            (b"l\nk\n1\xe2\x80\x8b2\n", 4),
            (b"l\nk\n1\xe1\xa0\x8e2\n", 4),
            (b"l\nk\n1\xef\xbb\xbf2\n", 4),
            (b"l\nk\n1\x1c2\n", 4),
            (b"l\nk\n1\x002\n", 4),
            // r / sr: empty token (7).
            (b"r\nk\n\n", 7),
            (b"r\nk\n \t \n", 7),
            (b"r\nk\n\xc2\xa0\xe2\x80\x83\n", 7),
            (b"sr\nk\n\n", 7),
            // n / sn: 1 or 2 fields (8), then the lease.
            (b"n\nk\n\n", 8),
            (b"n\nk\n  \n", 8),
            (b"n\nk\na b c\n", 8),
            (b"n\nk\ntok 0\n", 9),
            (b"n\nk\ntok x\n", 4),
            (b"sn\nk\n\n", 8),
            (b"sn\nk\ntok 1 2\n", 8),
            (b"sn\nk\ntok -1\n", 9),
            // e: the trimmed arg is one lease.
            (b"e\nk\n30 junk\n", 4),
            (b"e\nk\n1 2\n", 4),
            (b"e\nk\n0\n", 9),
            (b"e\nk\n-1\n", 9),
            (b"e\nk\n9223372037\n", 9),
            // w / sw: the trimmed arg is one timeout, and must be there.
            (b"w\nk\n\n", 8),
            (b"w\nk\n \xe3\x80\x80 \n", 8),
            (b"w\nk\n1 2\n", 4),
            (b"w\nk\nsoon\n", 4),
            (b"w\nk\n-1\n", 6),
            (b"w\nk\n9223372037\n", 6),
            (b"sw\nk\n\n", 8),
            (b"sw\nk\n-1\n", 6),
            // sl: 2 or 3 fields, then T, N (4/13), L.
            (b"sl\nk\n10\n", 8),
            (b"sl\nk\n1 2 3 4\n", 8),
            (b"sl\nk\n-1 x\n", 6),
            (b"sl\nk\nx 0\n", 4),
            (b"sl\nk\n1 x\n", 4),
            (b"sl\nk\n10 0\n", 13),
            (b"sl\nk\n10 -3\n", 13),
            (b"sl\nk\n10 -9223372036854775808\n", 13),
            (b"sl\nk\n10 9223372036854775808\n", 4),
            (b"sl\nk\n1 0 x\n", 13),
            (b"sl\nk\n1 2 x\n", 4),
            (b"sl\nk\n1 2 0\n", 9),
            // se: 1 or 2 fields, then N, L.
            (b"se\nk\n\n", 8),
            (b"se\nk\n1 2 3\n", 8),
            (b"se\nk\nx\n", 4),
            (b"se\nk\n0\n", 13),
            (b"se\nk\n0 x\n", 13),
            (b"se\nk\n2 0\n", 9),
            // signal: channel wildcards (5), then a blank (8) or oversized (8) payload.
            (b"signal\na.*\nx\n", 5),
            (b"signal\na.>\nx\n", 5),
            (b"signal\n*\n\n", 5),
            (b"signal\nc\n\n", 8),
            (b"signal\nc\n   \n", 8),
            (b"signal\nc\n\xe2\x80\x83\xc2\x85\t\n", 8),
        ];
        for &(wire, code) in cases {
            let result = parse_wire(wire).map_err(ProtoError::code);
            assert_eq!(result, Err(code), "{:?}", wire.escape_ascii());
        }
    }

    #[test]
    fn signal_payload_must_fit_a_64_kib_push_line() {
        let limit = |channel: &[u8]| MAX_PAYLOAD_LINE - "sig ".len() - channel.len() - " ".len();
        for channel in [b"c".to_vec(), vec![b'c'; MAX_LINE]] {
            let fits = vec![b'p'; limit(&channel)];
            let frame = Frame {
                cmd: b"signal",
                key: &channel,
                arg: &fits,
            };
            assert_eq!(parse(&frame), Ok(signal(&channel, &fits)));
            let too_big = vec![b'p'; limit(&channel) + 1];
            let frame = Frame {
                arg: &too_big,
                ..frame
            };
            assert_eq!(parse(&frame), Err(ProtoError::BadArguments));
        }
        assert_eq!(limit(b"c"), 65_530);
    }

    #[test]
    fn auth_accepts_a_64_kib_token() {
        let token = vec![b't'; MAX_PAYLOAD_LINE];
        let frame = Frame {
            cmd: b"auth",
            key: b"_",
            arg: &token,
        };
        assert_eq!(parse(&frame), Ok(Request::Auth(Auth { token: &token })));
    }

    #[test]
    fn integers() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"-0", Some(0)),
            (b"+0", Some(0)),
            (b"05", Some(5)),
            (b"+5", Some(5)),
            (b"-17", Some(-17)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"0009223372036854775807", Some(i64::MAX)),
            (b"9223372036854775808", None),
            (b"-9223372036854775809", None),
            (b"99999999999999999999999", None),
            (b"", None),
            (b"+", None),
            (b"-", None),
            (b"+-1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"1_0", None),
            (b"1.0", None),
            (b"1e2", None),
            (b"\xef\xbc\x91", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(integer(text), expected, "{:?}", text.escape_ascii());
        }
    }

    #[test]
    fn fields_split_on_runs_of_white_space() {
        let collect = |arg: &'static [u8]| Fields(arg).collect::<Vec<_>>();
        assert_eq!(collect(b"  5    7  "), [b"5".as_slice(), b"7"]);
        assert_eq!(collect(b"5\t8"), [b"5".as_slice(), b"8"]);
        assert_eq!(collect(b"a\xc2\xa0\xc2\x85b"), [b"a".as_slice(), b"b"]);
        assert_eq!(collect(b"\xe2\x80\x8a"), Vec::<&[u8]>::new());
        assert_eq!(collect(b""), Vec::<&[u8]>::new());
        assert_eq!(collect(b"\xe2\xe2\x80\x80x"), [b"\xe2".as_slice(), b"x"]);
        assert_eq!(
            collect(b"\xc3\xa9 \xf0\x9f\x98\x80"),
            [b"\xc3\xa9".as_slice(), b"\xf0\x9f\x98\x80"]
        );
    }

    #[test]
    fn trim_matches_white_space_at_both_ends() {
        assert_eq!(trim(b" \t a b \r\x0b\x0c"), b"a b");
        assert_eq!(trim(b"\xe3\x80\x80a\xe2\x80\x80"), b"a");
        assert_eq!(trim(b"\xe2\xe2\x80\x80"), b"\xe2");
        assert_eq!(trim(b"\xc2\xa0"), b"");
        assert_eq!(trim(b"a\xa0"), b"a\xa0");
        assert_eq!(trim(b"a\x80\x80"), b"a\x80\x80");
    }

    #[test]
    fn white_space_is_exactly_the_unicode_white_space_set() {
        // `char::is_whitespace` is the Unicode `White_Space` property.
        for c in (0..=0x10_ffff_u32).filter_map(char::from_u32) {
            let mut utf8 = [0; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            let expected = if c.is_whitespace() { encoded.len() } else { 0 };
            assert_eq!(space_len_at(encoded), expected, "{c:?}");
            assert_eq!(space_len_before(encoded), expected, "{c:?}");
        }
    }

    #[test]
    fn command_names_round_trip() {
        for (name, command) in COMMANDS {
            assert_eq!(Command::from_name(name.as_bytes()), Some(command));
            assert_eq!(command.name(), name);
        }
        assert_eq!(Command::from_name(b"signal\r"), None);
        assert_eq!(Command::Signal.arg_limit(), MAX_PAYLOAD_LINE);
        assert_eq!(Command::Auth.arg_limit(), MAX_PAYLOAD_LINE);
        assert_eq!(Command::Listen.arg_limit(), MAX_LINE);
    }
}
