//! Response encoding: every line the server writes — responses, `stats` and `sig` pushes — is
//! spelled here (spec §2.3, §4, §13.1), together with the canonical request encoding clients and
//! round-trip tests use.
//!
//! Encoders append to a caller's `Vec<u8>` and allocate nothing else: numbers are formatted on
//! the stack. Nothing here decides *which* response a request gets, and nothing reads responses
//! back.

use super::request::{
    Acquire, Auth, Check, CheckTarget, Enqueue, Evict, EvictTarget, Queue, Release, Renew, Signal,
    Wait,
};
use super::{Namespace, Request, Response};
use crate::token::{LeaseToken, TOKEN_LEN, encode_fence};

/// What follows the status word of a response line.
enum Tail {
    /// Nothing: `ok`, `queued`, `error`, ...
    Bare,
    /// ` <n>`.
    Number(u64),
    /// ` <token> <lease_s>`.
    Grant(LeaseToken, u64),
    /// ` <fence as 16 hex digits> <n>`.
    Fence(u64, u64),
    /// ` <holders> <limit> <waiters> <position>`.
    Queue([u64; 4]),
}

/// The first word of a response line: what `dflockd_responses_total{status}` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `ok`, with or without fields (grants, renewals, deliveries, `stats`).
    Ok,
    /// `acquired`.
    Acquired,
    /// `queued`.
    Queued,
    /// `timeout`.
    Timeout,
    /// `error`.
    Error,
    /// `error_auth`.
    ErrorAuth,
    /// `error_max_locks`.
    ErrorMaxLocks,
    /// `error_max_waiters`.
    ErrorMaxWaiters,
    /// `error_limit_mismatch`.
    ErrorLimitMismatch,
    /// `error_already_enqueued`.
    ErrorAlreadyEnqueued,
    /// `error_not_enqueued`.
    ErrorNotEnqueued,
    /// `error_lease_expired`.
    ErrorLeaseExpired,
    /// `error_draining`.
    ErrorDraining,
    /// `stale` (an extension: `check`/`scheck` found no current holder).
    Stale,
}

impl Status {
    /// Every status, in the order of their discriminants.
    pub const ALL: [Status; 14] = [
        Status::Ok,
        Status::Acquired,
        Status::Queued,
        Status::Timeout,
        Status::Error,
        Status::ErrorAuth,
        Status::ErrorMaxLocks,
        Status::ErrorMaxWaiters,
        Status::ErrorLimitMismatch,
        Status::ErrorAlreadyEnqueued,
        Status::ErrorNotEnqueued,
        Status::ErrorLeaseExpired,
        Status::ErrorDraining,
        Status::Stale,
    ];

    /// The word as sent: the single table of response strings.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Acquired => "acquired",
            Status::Queued => "queued",
            Status::Timeout => "timeout",
            Status::Error => "error",
            Status::ErrorAuth => "error_auth",
            Status::ErrorMaxLocks => "error_max_locks",
            Status::ErrorMaxWaiters => "error_max_waiters",
            Status::ErrorLimitMismatch => "error_limit_mismatch",
            Status::ErrorAlreadyEnqueued => "error_already_enqueued",
            Status::ErrorNotEnqueued => "error_not_enqueued",
            Status::ErrorLeaseExpired => "error_lease_expired",
            Status::ErrorDraining => "error_draining",
            Status::Stale => "stale",
        }
    }
}

impl Response {
    /// The response's first word.
    pub fn status(&self) -> Status {
        parts(self).0
    }
}

/// The status and the fields of `response`.
#[inline]
fn parts(response: &Response) -> (Status, Tail) {
    match *response {
        Response::Ok => (Status::Ok, Tail::Bare),
        Response::Granted { token, lease_s } => (Status::Ok, Tail::Grant(token, lease_s)),
        Response::Acquired { token, lease_s } => (Status::Acquired, Tail::Grant(token, lease_s)),
        Response::Renewed { lease_s } => (Status::Ok, Tail::Number(lease_s)),
        Response::Delivered { count } | Response::Evicted { count } => {
            (Status::Ok, Tail::Number(count))
        }
        Response::Queued => (Status::Queued, Tail::Bare),
        Response::Timeout => (Status::Timeout, Tail::Bare),
        Response::Error => (Status::Error, Tail::Bare),
        Response::ErrorAuth => (Status::ErrorAuth, Tail::Bare),
        Response::ErrorMaxLocks => (Status::ErrorMaxLocks, Tail::Bare),
        Response::ErrorMaxWaiters => (Status::ErrorMaxWaiters, Tail::Bare),
        Response::ErrorLimitMismatch => (Status::ErrorLimitMismatch, Tail::Bare),
        Response::ErrorAlreadyEnqueued => (Status::ErrorAlreadyEnqueued, Tail::Bare),
        Response::ErrorNotEnqueued => (Status::ErrorNotEnqueued, Tail::Bare),
        Response::ErrorLeaseExpired => (Status::ErrorLeaseExpired, Tail::Bare),
        Response::ErrorDraining => (Status::ErrorDraining, Tail::Bare),
        Response::Checked {
            fence,
            remaining_ms,
        } => (Status::Ok, Tail::Fence(fence, remaining_ms)),
        Response::Stale => (Status::Stale, Tail::Bare),
        Response::QueueState {
            holders,
            limit,
            waiters,
            position,
        } => (
            Status::Ok,
            Tail::Queue([
                u64::from(holders),
                limit,
                u64::from(waiters),
                u64::from(position),
            ]),
        ),
    }
}

/// Appends `response` to `out` as one line: `<status>[ <field>[ <field>]]\n`. Returns the
/// status word it wrote, for counting.
pub fn encode(response: &Response, out: &mut Vec<u8>) -> Status {
    let (status, tail) = parts(response);
    out.extend_from_slice(status.word().as_bytes());
    match tail {
        Tail::Bare => {}
        Tail::Number(n) => {
            out.push(b' ');
            out.extend_from_slice(Decimal::new(n).as_bytes());
        }
        Tail::Grant(token, lease_s) => {
            let mut text = [0; TOKEN_LEN];
            token.encode(&mut text);
            out.push(b' ');
            out.extend_from_slice(&text);
            out.push(b' ');
            out.extend_from_slice(Decimal::new(lease_s).as_bytes());
        }
        Tail::Fence(fence, n) => {
            let mut text = [0; 16];
            encode_fence(fence, &mut text);
            out.push(b' ');
            out.extend_from_slice(&text);
            out.push(b' ');
            out.extend_from_slice(Decimal::new(n).as_bytes());
        }
        Tail::Queue(numbers) => {
            for n in numbers {
                out.push(b' ');
                out.extend_from_slice(Decimal::new(n).as_bytes());
            }
        }
    }
    out.push(b'\n');
    status
}

/// How many bytes [`encode`] appends for `response`, LF included.
pub fn encoded_len(response: &Response) -> usize {
    let (status, tail) = parts(response);
    let tail_len = match tail {
        Tail::Bare => 0,
        Tail::Number(n) => 1 + Decimal::new(n).as_bytes().len(),
        Tail::Grant(_, lease_s) => 1 + TOKEN_LEN + 1 + Decimal::new(lease_s).as_bytes().len(),
        Tail::Fence(_, n) => 1 + 16 + 1 + Decimal::new(n).as_bytes().len(),
        Tail::Queue(numbers) => numbers
            .iter()
            .map(|&n| 1 + Decimal::new(n).as_bytes().len())
            .sum(),
    };
    status.word().len() + tail_len + 1
}

/// Starts an `ok <json>\n` response (`stats`, `info`) in `line`. The caller appends the JSON (which must
/// not contain an LF), possibly over several steps, then calls [`end_json`].
pub fn begin_json(line: &mut Vec<u8>) {
    line.extend_from_slice(STATS_PREFIX);
}

/// Ends an `ok <json>` line begun by [`begin_json`]; `line` holds the line's last piece (the rest
/// may have been sent already).
pub fn end_json(line: &mut Vec<u8>) {
    debug_assert!(!line.contains(&b'\n'), "stats JSON must fit on one line");
    line.push(b'\n');
}

const STATS_PREFIX: &[u8] = b"ok ";

/// Appends the push line `sig <channel> <payload>\n` delivering a signal.
pub fn encode_push(channel: &[u8], payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(PUSH_PREFIX);
    out.extend_from_slice(channel);
    out.push(b' ');
    out.extend_from_slice(payload);
    out.push(b'\n');
}

/// How many bytes [`encode_push`] appends, LF included.
pub fn push_len(channel: &[u8], payload: &[u8]) -> usize {
    PUSH_PREFIX.len() + channel.len() + 1 + payload.len() + 1
}

/// Clients tell pushes from responses by this prefix alone; no response starts with it.
pub const PUSH_PREFIX: &[u8] = b"sig ";

/// Appends the canonical three-line form of `request`.
///
/// Canonical means the shape official clients send (spec §18): every line ends with a bare LF;
/// the key line of `stats`, `ping` and `auth` is `_`; arguments a command ignores are sent as an
/// empty line; fields are separated by one space and optional fields are left out rather than sent
/// empty; numbers are plain decimal (no sign, no leading zeros); tokens, groups and payloads are
/// written as stored.
///
/// For every request that [`parse`](super::request::parse) returns, parsing the encoding gives the
/// same request back. Values `parse` never produces (a key with a space, a token with leading
/// white space, a lock request with a limit other than 1) are written as they are and do not
/// survive the round trip.
pub fn encode_request(request: &Request<'_>, out: &mut Vec<u8>) {
    line(out, request.command().name().as_bytes());
    match *request {
        Request::Acquire(Acquire {
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
        }) => {
            line(out, key);
            let mut arg = ArgLine::new(out);
            arg.number(timeout_s);
            arg.limit(ns, limit);
            arg.optional(lease_s);
            arg.finish();
        }
        Request::Release(Release { key, token, .. }) => {
            line(out, key);
            line(out, token);
        }
        Request::Renew(Renew {
            key,
            token,
            lease_s,
            ..
        }) => {
            line(out, key);
            let mut arg = ArgLine::new(out);
            arg.field(token);
            arg.optional(lease_s);
            arg.finish();
        }
        Request::Enqueue(Enqueue {
            ns,
            key,
            limit,
            lease_s,
        }) => {
            line(out, key);
            let mut arg = ArgLine::new(out);
            arg.limit(ns, limit);
            arg.optional(lease_s);
            arg.finish();
        }
        Request::Wait(Wait { key, timeout_s, .. }) => {
            line(out, key);
            let mut arg = ArgLine::new(out);
            arg.number(timeout_s);
            arg.finish();
        }
        Request::Stats | Request::Ping | Request::Info => {
            line(out, b"_");
            line(out, b"");
        }
        Request::Auth(Auth { token }) => {
            line(out, b"_");
            line(out, token);
        }
        Request::Listen(sub) | Request::Unlisten(sub) => {
            line(out, sub.pattern);
            line(out, sub.group);
        }
        Request::Signal(Signal { channel, payload }) => {
            line(out, channel);
            line(out, payload);
        }
        Request::Check(Check { key, target, .. }) => {
            line(out, key);
            target_line(out, target);
        }
        Request::Evict(Evict { key, target, .. }) => {
            line(out, key);
            match target {
                EvictTarget::Holder(target) => target_line(out, target),
                EvictTarget::All => line(out, b"*"),
            }
        }
        Request::Queue(Queue { key, limit, .. }) => {
            line(out, key);
            let mut arg = ArgLine::new(out);
            arg.optional(limit);
            arg.finish();
        }
    }
}

/// The arg line naming a holder: its whole token, or its fence alone.
fn target_line(out: &mut Vec<u8>, target: CheckTarget) {
    match target {
        CheckTarget::Token(token) => {
            let mut text = [0; TOKEN_LEN];
            token.encode(&mut text);
            line(out, &text);
        }
        CheckTarget::Fence(fence) => {
            let mut text = [0; 16];
            encode_fence(fence, &mut text);
            line(out, &text);
        }
    }
}

fn line(out: &mut Vec<u8>, content: &[u8]) {
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Writes an arg line of space-separated fields, then its LF.
struct ArgLine<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> ArgLine<'o> {
    fn new(out: &'o mut Vec<u8>) -> ArgLine<'o> {
        ArgLine { out, empty: true }
    }

    fn field(&mut self, field: &[u8]) {
        if !self.empty {
            self.out.push(b' ');
        }
        self.out.extend_from_slice(field);
        self.empty = false;
    }

    fn number(&mut self, n: u64) {
        self.field(Decimal::new(n).as_bytes());
    }

    fn optional(&mut self, n: Option<u64>) {
        if let Some(n) = n {
            self.number(n);
        }
    }

    /// The semaphore limit field; lock commands have none (their limit is always 1).
    fn limit(&mut self, ns: Namespace, limit: u64) {
        if ns == Namespace::Semaphore {
            self.number(limit);
        }
    }

    fn finish(self) {
        self.out.push(b'\n');
    }
}

/// A `u64` in decimal, formatted on the stack.
struct Decimal {
    /// `u64::MAX` has 20 digits; they are right-aligned in the array.
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut n: u64) -> Decimal {
        let mut digits = [0; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return Decimal { digits, start };
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_listed_in_discriminant_order_with_distinct_words() {
        for (i, status) in Status::ALL.iter().enumerate() {
            assert_eq!(*status as usize, i);
        }
        let mut words: Vec<&str> = Status::ALL.iter().map(|s| s.word()).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), Status::ALL.len());
        assert_eq!(Response::ErrorMaxLocks.status().word(), "error_max_locks");
        assert_eq!(Response::Delivered { count: 3 }.status(), Status::Ok);
    }
    use crate::protocol::frame::{Decoded, FrameDecoder};
    use crate::protocol::request::{Subscription, parse};
    use crate::protocol::{MAX_PAYLOAD_LINE, MAX_SECONDS};

    fn encoded(response: Response) -> Vec<u8> {
        let mut out = b"prior ".to_vec();
        encode(&response, &mut out);
        assert!(out.starts_with(b"prior "), "encode must only append");
        assert_eq!(out.len() - 6, encoded_len(&response), "{response:?}");
        out.split_off(6)
    }

    const TOKEN: LeaseToken = LeaseToken {
        fence: 0x0123_4567_89ab_cdef,
        random: 0xfedc_ba98_7654_3210,
    };

    #[test]
    fn every_response_line() {
        let cases: &[(Response, &[u8])] = &[
            (Response::Ok, b"ok\n"),
            (
                Response::Granted {
                    token: TOKEN,
                    lease_s: 33,
                },
                b"ok 0123456789abcdeffedcba9876543210 33\n",
            ),
            (
                Response::Acquired {
                    token: TOKEN,
                    lease_s: MAX_SECONDS,
                },
                b"acquired 0123456789abcdeffedcba9876543210 9223372036\n",
            ),
            (
                Response::Granted {
                    token: LeaseToken {
                        fence: 0,
                        random: 1,
                    },
                    lease_s: 1,
                },
                b"ok 00000000000000000000000000000001 1\n",
            ),
            (Response::Renewed { lease_s: 60 }, b"ok 60\n"),
            (Response::Delivered { count: 0 }, b"ok 0\n"),
            (Response::Delivered { count: 10 }, b"ok 10\n"),
            (
                Response::Delivered { count: u64::MAX },
                b"ok 18446744073709551615\n",
            ),
            (Response::Queued, b"queued\n"),
            (Response::Timeout, b"timeout\n"),
            (Response::Error, b"error\n"),
            (Response::ErrorAuth, b"error_auth\n"),
            (Response::ErrorMaxLocks, b"error_max_locks\n"),
            (Response::ErrorMaxWaiters, b"error_max_waiters\n"),
            (Response::ErrorLimitMismatch, b"error_limit_mismatch\n"),
            (Response::ErrorAlreadyEnqueued, b"error_already_enqueued\n"),
            (Response::ErrorNotEnqueued, b"error_not_enqueued\n"),
            (Response::ErrorLeaseExpired, b"error_lease_expired\n"),
            (Response::ErrorDraining, b"error_draining\n"),
            (
                Response::Checked {
                    fence: 0x0123_4567_89ab_cdef,
                    remaining_ms: 1_500,
                },
                b"ok 0123456789abcdef 1500\n",
            ),
            (
                Response::Checked {
                    fence: 1,
                    remaining_ms: 1,
                },
                b"ok 0000000000000001 1\n",
            ),
            (Response::Stale, b"stale\n"),
            (Response::Evicted { count: 0 }, b"ok 0\n"),
            (Response::Evicted { count: 3 }, b"ok 3\n"),
            (
                Response::QueueState {
                    holders: 3,
                    limit: 3,
                    waiters: 12,
                    position: 0,
                },
                b"ok 3 3 12 0\n",
            ),
            (
                Response::QueueState {
                    holders: 1,
                    limit: u64::MAX,
                    waiters: u32::MAX,
                    position: 7,
                },
                b"ok 1 18446744073709551615 4294967295 7\n",
            ),
        ];
        for &(response, line) in cases {
            assert_eq!(encoded(response), line, "{response:?}");
            assert!(!line.starts_with(PUSH_PREFIX));
        }
    }

    #[test]
    fn decimals() {
        for (n, text) in [
            (0, "0"),
            (7, "7"),
            (10, "10"),
            (9_223_372_036, "9223372036"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(Decimal::new(n).as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn stats_line() {
        let mut out = Vec::new();
        begin_json(&mut out);
        out.extend_from_slice(br#"{"connections":1}"#);
        end_json(&mut out);
        assert_eq!(out, b"ok {\"connections\":1}\n");
    }

    #[test]
    fn push_lines_keep_the_payload_verbatim() {
        let mut out = b"ok 1\n".to_vec();
        encode_push(b"events.user.login", br#" {"user":"alice"} "#, &mut out);
        let expected: &[u8] = b"ok 1\nsig events.user.login  {\"user\":\"alice\"} \n";
        assert_eq!(out, expected);
        assert_eq!(
            push_len(b"events.user.login", br#" {"user":"alice"} "#),
            out.len() - 5
        );
    }

    #[test]
    fn the_largest_signal_push_is_a_64_kib_line() {
        let channel = vec![b'c'; 256];
        let payload = vec![b'p'; MAX_PAYLOAD_LINE - 5 - channel.len()];
        let mut out = Vec::new();
        encode_push(&channel, &payload, &mut out);
        assert_eq!(out.len(), MAX_PAYLOAD_LINE + 1);
    }

    fn encoded_request(request: &Request<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(request, &mut out);
        out
    }

    #[test]
    fn canonical_request_forms() {
        let cases: &[(Request<'_>, &[u8])] = &[
            (
                Request::Acquire(Acquire {
                    ns: Namespace::Lock,
                    key: b"key",
                    timeout_s: 10,
                    limit: 1,
                    lease_s: Some(33),
                }),
                b"l\nkey\n10 33\n",
            ),
            (
                Request::Acquire(Acquire {
                    ns: Namespace::Lock,
                    key: b"key",
                    timeout_s: 0,
                    limit: 1,
                    lease_s: None,
                }),
                b"l\nkey\n0\n",
            ),
            (
                Request::Acquire(Acquire {
                    ns: Namespace::Semaphore,
                    key: b"pool",
                    timeout_s: 10,
                    limit: 3,
                    lease_s: Some(60),
                }),
                b"sl\npool\n10 3 60\n",
            ),
            (
                Request::Release(Release {
                    ns: Namespace::Semaphore,
                    key: b"pool",
                    token: b"tok en",
                }),
                b"sr\npool\ntok en\n",
            ),
            (
                Request::Renew(Renew {
                    ns: Namespace::Lock,
                    key: b"k",
                    token: b"tok",
                    lease_s: None,
                }),
                b"n\nk\ntok\n",
            ),
            (
                Request::Enqueue(Enqueue {
                    ns: Namespace::Lock,
                    key: b"job",
                    limit: 1,
                    lease_s: None,
                }),
                b"e\njob\n\n",
            ),
            (
                Request::Enqueue(Enqueue {
                    ns: Namespace::Semaphore,
                    key: b"job",
                    limit: 2,
                    lease_s: Some(5),
                }),
                b"se\njob\n2 5\n",
            ),
            (
                Request::Wait(Wait {
                    ns: Namespace::Semaphore,
                    key: b"job",
                    timeout_s: 0,
                }),
                b"sw\njob\n0\n",
            ),
            (Request::Stats, b"stats\n_\n\n"),
            (Request::Ping, b"ping\n_\n\n"),
            (
                Request::Auth(Auth { token: b"s3cret" }),
                b"auth\n_\ns3cret\n",
            ),
            (
                Request::Listen(Subscription {
                    pattern: b"jobs.>",
                    group: b"",
                }),
                b"listen\njobs.>\n\n",
            ),
            (
                Request::Signal(Signal {
                    channel: b"a.b",
                    payload: b" x ",
                }),
                b"signal\na.b\n x \n",
            ),
            (
                Request::Check(Check {
                    ns: Namespace::Lock,
                    key: b"k",
                    target: CheckTarget::Token(TOKEN),
                }),
                b"check\nk\n0123456789abcdeffedcba9876543210\n",
            ),
            (
                Request::Check(Check {
                    ns: Namespace::Semaphore,
                    key: b"pool",
                    target: CheckTarget::Fence(0xab),
                }),
                b"scheck\npool\n00000000000000ab\n",
            ),
            (
                Request::Queue(Queue {
                    ns: Namespace::Lock,
                    key: b"k",
                    limit: None,
                }),
                b"q\nk\n\n",
            ),
            (
                Request::Queue(Queue {
                    ns: Namespace::Semaphore,
                    key: b"pool",
                    limit: Some(4),
                }),
                b"sq\npool\n4\n",
            ),
            (
                Request::Evict(Evict {
                    ns: Namespace::Lock,
                    key: b"k",
                    target: EvictTarget::All,
                }),
                b"evict\nk\n*\n",
            ),
            (
                Request::Evict(Evict {
                    ns: Namespace::Semaphore,
                    key: b"pool",
                    target: EvictTarget::Holder(CheckTarget::Fence(0xab)),
                }),
                b"sevict\npool\n00000000000000ab\n",
            ),
        ];
        for (request, wire) in cases {
            assert_eq!(encoded_request(request), *wire, "{request:?}");
        }
    }

    #[test]
    fn parse_inverts_encode_request() {
        let long_payload = vec![b'p'; MAX_PAYLOAD_LINE - 5 - 1];
        let requests = [
            Request::Acquire(Acquire {
                ns: Namespace::Lock,
                key: b"k\0\x0b\xc2\xa0",
                timeout_s: MAX_SECONDS,
                limit: 1,
                lease_s: Some(1),
            }),
            Request::Acquire(Acquire {
                ns: Namespace::Semaphore,
                key: b"pool",
                timeout_s: 0,
                limit: i64::MAX as u64,
                lease_s: None,
            }),
            Request::Release(Release {
                ns: Namespace::Lock,
                key: b"k",
                token: b"a \xc2\xa0b",
            }),
            Request::Renew(Renew {
                ns: Namespace::Semaphore,
                key: b"k",
                token: b"0123456789abcdeffedcba9876543210",
                lease_s: Some(MAX_SECONDS),
            }),
            Request::Check(Check {
                ns: Namespace::Lock,
                key: b"k",
                target: CheckTarget::Token(TOKEN),
            }),
            Request::Check(Check {
                ns: Namespace::Semaphore,
                key: b"k",
                target: CheckTarget::Fence(u64::MAX),
            }),
            Request::Queue(Queue {
                ns: Namespace::Lock,
                key: b"k",
                limit: None,
            }),
            Request::Queue(Queue {
                ns: Namespace::Semaphore,
                key: b"k",
                limit: Some(1),
            }),
            Request::Queue(Queue {
                ns: Namespace::Semaphore,
                key: b"k",
                limit: None,
            }),
            Request::Evict(Evict {
                ns: Namespace::Lock,
                key: b"k",
                target: EvictTarget::Holder(CheckTarget::Token(TOKEN)),
            }),
            Request::Evict(Evict {
                ns: Namespace::Semaphore,
                key: b"k",
                target: EvictTarget::All,
            }),
            Request::Enqueue(Enqueue {
                ns: Namespace::Lock,
                key: b"k",
                limit: 1,
                lease_s: Some(30),
            }),
            Request::Enqueue(Enqueue {
                ns: Namespace::Semaphore,
                key: b"k",
                limit: 4,
                lease_s: None,
            }),
            Request::Wait(Wait {
                ns: Namespace::Lock,
                key: b"k",
                timeout_s: 10,
            }),
            Request::Stats,
            Request::Ping,
            Request::Auth(Auth { token: b"" }),
            Request::Auth(Auth {
                token: b"two words",
            }),
            Request::Listen(Subscription {
                pattern: b"a.*.>",
                group: b"my group",
            }),
            Request::Unlisten(Subscription {
                pattern: b">",
                group: b"",
            }),
            Request::Signal(Signal {
                channel: b"c",
                payload: &long_payload,
            }),
            Request::Signal(Signal {
                channel: b"a..b",
                payload: b"  {\"k\": 1}\t",
            }),
        ];
        for request in &requests {
            let wire = encoded_request(request);
            match FrameDecoder::default().decode(&wire) {
                Decoded::Frame { frame, consumed } => {
                    assert_eq!(consumed, wire.len());
                    assert_eq!(parse(&frame).as_ref(), Ok(request));
                }
                other => panic!("{request:?} encodes to an incomplete frame: {other:?}"),
            }
        }
    }
}
