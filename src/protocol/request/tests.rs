//! Parsing tests: every command's accepted and rejected forms, with their error codes.

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

fn renew<'a>(ns: Namespace, key: &'a [u8], token: &'a [u8], lease_s: Option<u64>) -> Request<'a> {
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
        // Trailing white space of each length, after an ASCII or a multi-byte character.
        (
            b"l\nk\n10 33\xc2\xa0\xc2\x85\n",
            acquire(Lock, b"k", 10, 1, Some(33)),
        ),
        (
            b"l\nk\n10\xc2\xa0\xe3\x80\x80 \t\n",
            acquire(Lock, b"k", 10, 1, None),
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
        // evict / sevict: `*`, a token or a fence, trimmed.
        (
            b"evict\nk\n * \n",
            Request::Evict(Evict {
                ns: Lock,
                key: b"k",
                target: EvictTarget::All,
            }),
        ),
        (
            b"sevict\npool\n00000000000000ff\n",
            Request::Evict(Evict {
                ns: Semaphore,
                key: b"pool",
                target: EvictTarget::Holder(CheckTarget::Fence(255)),
            }),
        ),
        (
            b"evict\nk\n0123456789abcdeffedcba9876543210\n",
            Request::Evict(Evict {
                ns: Lock,
                key: b"k",
                target: EvictTarget::Holder(CheckTarget::Token(LeaseToken {
                    fence: 0x0123_4567_89ab_cdef,
                    random: 0xfedc_ba98_7654_3210,
                })),
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
        // evict / sevict: the key (5), an empty arg (7), or neither `*`, a token nor a fence (8).
        (b"evict\n\n*\n", 5),
        (b"evict\nk\n\n", 7),
        (b"sevict\nk\n**\n", 8),
        (b"evict\nk\n* 0000000000000001\n", 8),
        (b"evict\nk\nall\n", 8),
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
