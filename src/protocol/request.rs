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

/// Whose leases `evict` / `sevict` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictTarget {
    /// The one holder a token or fence names, as `check` names it.
    Holder(CheckTarget),
    /// `*`: every holder of the key.
    All,
}

impl From<CheckTarget> for EvictTarget {
    fn from(holder: CheckTarget) -> EvictTarget {
        EvictTarget::Holder(holder)
    }
}

impl From<LeaseToken> for EvictTarget {
    fn from(token: LeaseToken) -> EvictTarget {
        EvictTarget::Holder(CheckTarget::Token(token))
    }
}

impl From<u64> for EvictTarget {
    /// A fence.
    fn from(fence: u64) -> EvictTarget {
        EvictTarget::Holder(CheckTarget::Fence(fence))
    }
}

/// `evict` / `sevict`: end the named leases of the key now, as an operator action (an
/// extension; only an admin connection may use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evict<'a> {
    /// Lock or semaphore namespace.
    pub ns: Namespace,
    /// The resource key.
    pub key: &'a [u8],
    /// Which holders.
    pub target: EvictTarget,
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
            Request::Evict(Evict { ns, .. }) => Command::Evict(ns),
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
        Command::Evict(ns) => evict(ns, key(frame.key)?, arg),
    }
}

/// `evict` / `sevict`: the trimmed arg is `*`, or a token or fence as `check` takes it.
fn evict<'a>(ns: Namespace, key: &'a [u8], arg: &[u8]) -> Result<Request<'a>, ProtoError> {
    let text = non_empty_token(trim(arg))?;
    let target = if text == b"*" {
        EvictTarget::All
    } else {
        EvictTarget::Holder(check_target(text)?)
    };
    Ok(Request::Evict(Evict { ns, key, target }))
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
    let target = check_target(non_empty_token(trim(arg))?)?;
    Ok(Request::Check(Check { ns, key, target }))
}

/// A token (32 lower-case hex digits) or a fence (16), as `check` and `evict` name a holder.
fn check_target(text: &[u8]) -> Result<CheckTarget, ProtoError> {
    let target = match text.len() {
        TOKEN_LEN => LeaseToken::parse(text).map(CheckTarget::Token),
        16 => parse_fence(text).map(CheckTarget::Fence),
        _ => None,
    };
    target.ok_or(ProtoError::BadArguments)
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
    match text.last() {
        None => 0,
        // A multi-byte character ends with a continuation byte (0x80 ..= 0xbf), so an ASCII last
        // byte (nearly every field) is white space on its own or not at all.
        Some(&last) if last.is_ascii() => space_len_at(&text[text.len() - 1..]),
        Some(_) => (2..=3)
            .find(|&n| n <= text.len() && space_len_at(&text[text.len() - n..]) == n)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests;
