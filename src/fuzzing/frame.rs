//! The `frame` and `request` targets, and the reference framer the `session` target also uses.
//!
//! The reference framer ([`naive_frame`]) restates spec §2.1-2.2 as plainly as possible: find
//! each LF, compare each line's length with its limit. The incremental [`FrameDecoder`] must agree
//! with it after every call, whatever the chunking.

use super::{Input, expand};
use crate::protocol::frame::{Decoded, Frame, FrameDecoder};
use crate::protocol::request::parse;
use crate::protocol::request::{
    Acquire, Auth, Check, Enqueue, Evict, Queue, Release, Renew, Signal, Subscription, Wait,
};
use crate::protocol::response::{encode_request, push_len};
use crate::protocol::{MAX_LINE, MAX_PAYLOAD_LINE, MAX_SECONDS, Namespace, Request};

/// What the reference framer finds at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Naive<'a> {
    /// A complete request occupying the first `consumed` bytes.
    Frame {
        /// The three lines, trailing CRs removed.
        frame: Frame<'a>,
        /// Bytes the request occupies, LFs included.
        consumed: usize,
    },
    /// This many lines are complete and the next one is within its limit so far.
    Partial(u8),
    /// A line is longer than its limit.
    TooLong,
}

/// Frames the request at the start of `buf` from the spec's rules alone.
pub(super) fn naive_frame(buf: &[u8]) -> Naive<'_> {
    let mut lines: [&[u8]; 3] = [b""; 3];
    let mut start = 0;
    for index in 0..3 {
        // Only `signal` and `auth`, as received after CR stripping, get a long arg line.
        let long_arg = index == 2 && matches!(strip_crs(lines[0]), b"signal" | b"auth");
        let limit = if long_arg { MAX_PAYLOAD_LINE } else { MAX_LINE };
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(len) if len <= limit => {
                lines[index] = &rest[..len];
                start += len + 1;
            }
            Some(_) => return Naive::TooLong,
            None if rest.len() > limit => return Naive::TooLong,
            None => return Naive::Partial(index as u8),
        }
    }
    let [cmd, key, arg] = lines.map(strip_crs);
    Naive::Frame {
        frame: Frame { cmd, key, arg },
        consumed: start,
    }
}

fn strip_crs(line: &[u8]) -> &[u8] {
    let mut line = line;
    while let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

/// What the decoder produced over a whole stream: the frames (owned) and how it ended.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    frames: Vec<[Vec<u8>; 3]>,
    end: Option<Naive<'static>>,
}

impl Transcript {
    fn record(&mut self, frame: &Frame<'_>) {
        self.frames
            .push([frame.cmd.to_vec(), frame.key.to_vec(), frame.arg.to_vec()]);
    }
}

/// Above this buffer size the per-call comparison with the reference framer is skipped: it
/// rescans the whole buffer, so a long line fed in small chunks would cost quadratic time.
const NAIVE_CHECK_LIMIT: usize = 1024;
/// Streams up to this size are also fed byte by byte.
const BYTE_BY_BYTE_LIMIT: usize = 2048;

/// Decodes one call's worth and checks it against the reference framer.
fn decode_checked<'b>(decoder: &mut FrameDecoder, buf: &'b [u8]) -> Decoded<'b> {
    let decoded = decoder.decode(buf);
    match decoded {
        Decoded::Frame { frame, consumed } => {
            assert!(
                (3..=buf.len()).contains(&consumed),
                "consumed {consumed} of {}",
                buf.len()
            );
            assert_eq!(*decoder, FrameDecoder::default(), "decoder not reset");
            for line in [frame.cmd, frame.key, frame.arg] {
                assert!(!line.contains(&b'\n'), "LF inside a line");
                assert!(!line.ends_with(b"\r"), "trailing CR left");
            }
        }
        Decoded::Partial { lines } => {
            assert!(lines <= 2, "{lines} complete lines but no frame");
            assert_eq!(decoder.lines(), lines, "lines() disagrees with Partial");
        }
        Decoded::TooLong => {}
    }
    if buf.len() <= NAIVE_CHECK_LIMIT {
        let expected = match naive_frame(buf) {
            Naive::Frame { frame, consumed } => Decoded::Frame { frame, consumed },
            Naive::Partial(lines) => Decoded::Partial { lines },
            Naive::TooLong => Decoded::TooLong,
        };
        assert_eq!(decoded, expected, "decoder and reference framer disagree");
    }
    decoded
}

/// Runs the decoder the way a connection does: bytes arrive in `chunks`, the buffer starts at
/// the current request and grows by appending, and a frame's bytes are dropped once decoded.
fn decode_in_chunks(stream: &[u8], chunks: &[usize]) -> Transcript {
    let mut transcript = Transcript::default();
    let mut decoder = FrameDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut offset = 0;
    let mut sizes = chunks.iter().cycle();
    while offset < stream.len() {
        let size = sizes.next().copied().unwrap_or(stream.len());
        let end = stream.len().min(offset + size);
        buf.extend_from_slice(&stream[offset..end]);
        offset = end;
        loop {
            match decode_checked(&mut decoder, &buf) {
                Decoded::Frame { frame, consumed } => {
                    transcript.record(&frame);
                    buf.drain(..consumed);
                }
                Decoded::Partial { .. } => break,
                Decoded::TooLong => {
                    // The connection is closed: nothing after this is read.
                    assert_eq!(
                        decoder.decode(&buf),
                        Decoded::TooLong,
                        "TooLong is not sticky"
                    );
                    transcript.end = Some(Naive::TooLong);
                    return transcript;
                }
            }
        }
    }
    transcript.end = Some(match decoder.decode(&buf) {
        Decoded::Partial { lines } => Naive::Partial(lines),
        other => panic!("no progress after the stream ended: {other:?}"),
    });
    transcript
}

/// Chunk sizes from the input: up to eight sizes used in turn, from one byte to 38 KiB.
fn read_chunks(input: &mut Input<'_>) -> Vec<usize> {
    let count = input.below(9);
    (0..count)
        .map(|_| match input.byte() {
            0 => 1,
            small @ 1..200 => usize::from(small),
            large => usize::from(large - 199) * 700,
        })
        .collect()
}

/// The `frame` target: arbitrary bytes through the framing layer in arbitrary chunkings.
///
/// Input: a count and up to eight chunk sizes, then a compact stream (see `expand`). Checks:
/// after every call the decoder agrees with the reference framer on the buffer it was given
/// (frame and consumed length, lines complete, or too long); `consumed` stays within the buffer;
/// the same frames come out whether the stream arrives in one piece, in the chosen chunks or (for
/// short streams) byte by byte; a stream that ends mid-request yields `Partial`.
pub fn frame(data: &[u8]) {
    let mut input = Input::new(data);
    let chunks = read_chunks(&mut input);
    let stream = expand(input.rest());
    let whole = decode_in_chunks(&stream, &[]);
    let chunked = decode_in_chunks(&stream, &chunks);
    assert_eq!(whole, chunked, "chunking changed the frames");
    if stream.len() <= BYTE_BY_BYTE_LIMIT {
        assert_eq!(
            whole,
            decode_in_chunks(&stream, &[1]),
            "byte-by-byte feeding changed the frames"
        );
    }
}

/// The `request` target: framing plus request parsing.
///
/// Input: a compact stream (see `expand`). Every frame is parsed; every request that parses
/// must respect the field rules of spec §3 and §7, and must survive `encode_request` -> frame ->
/// parse unchanged, with the canonical encoding framing to exactly one request.
pub fn request(data: &[u8]) {
    let stream = expand(data);
    let mut rest: &[u8] = &stream;
    let mut decoder = FrameDecoder::default();
    while let Decoded::Frame { frame, consumed } = decoder.decode(rest) {
        rest = &rest[consumed..];
        if let Ok(request) = parse(&frame) {
            check_fields(&request);
            check_round_trip(&request);
        }
    }
}

fn check_round_trip(request: &Request<'_>) {
    let mut wire = Vec::new();
    encode_request(request, &mut wire);
    match FrameDecoder::default().decode(&wire) {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, wire.len(), "canonical encoding is not one frame");
            assert_eq!(
                parse(&frame),
                Ok(*request),
                "round trip changed the request"
            );
        }
        other => panic!("canonical encoding of {request:?} does not frame: {other:?}"),
    }
}

/// The field rules a parsed request must satisfy (spec §3, §7).
fn check_fields(request: &Request<'_>) {
    match *request {
        Request::Acquire(Acquire {
            ns,
            key,
            timeout_s,
            limit,
            lease_s,
        }) => {
            check_key(key);
            assert!(timeout_s <= MAX_SECONDS, "timeout out of range");
            check_limit(ns, limit);
            check_lease(lease_s);
        }
        Request::Release(Release { key, token, .. }) => {
            check_key(key);
            check_trimmed(token);
        }
        Request::Renew(Renew {
            key,
            token,
            lease_s,
            ..
        }) => {
            check_key(key);
            check_trimmed(token);
            assert!(
                !token.iter().any(u8::is_ascii_whitespace),
                "token has space"
            );
            check_lease(lease_s);
        }
        Request::Enqueue(Enqueue {
            ns,
            key,
            limit,
            lease_s,
        }) => {
            check_key(key);
            check_limit(ns, limit);
            check_lease(lease_s);
        }
        Request::Wait(Wait { key, timeout_s, .. }) => {
            check_key(key);
            assert!(timeout_s <= MAX_SECONDS, "timeout out of range");
        }
        Request::Stats | Request::Ping | Request::Info => {}
        Request::Check(Check { key, .. }) | Request::Evict(Evict { key, .. }) => check_key(key),
        Request::Queue(Queue { ns, key, limit }) => {
            check_key(key);
            assert!(
                ns == Namespace::Semaphore || limit.is_none(),
                "q with a limit"
            );
            if let Some(limit) = limit {
                check_limit(ns, limit);
            }
        }
        Request::Auth(Auth { token }) => {
            if !token.is_empty() {
                check_trimmed(token);
            }
        }
        Request::Listen(sub) | Request::Unlisten(sub) => {
            let Subscription { pattern, group } = sub;
            check_key(pattern);
            if !group.is_empty() {
                check_trimmed(group);
            }
        }
        Request::Signal(Signal { channel, payload }) => {
            check_key(channel);
            assert!(
                !channel.iter().any(|&b| b == b'*' || b == b'>'),
                "wildcard in a signal channel"
            );
            assert!(
                payload.iter().any(|b| !b.is_ascii_whitespace()),
                "blank payload"
            );
            assert!(!payload.ends_with(b"\r"), "payload keeps a trailing CR");
            assert!(
                push_len(channel, payload) <= MAX_PAYLOAD_LINE + 1,
                "push line too long"
            );
        }
    }
}

fn check_key(key: &[u8]) {
    assert!(!key.is_empty(), "empty key");
    assert!(
        !key.iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
        "white space in key {key:?}"
    );
}

fn check_limit(ns: Namespace, limit: u64) {
    match ns {
        Namespace::Lock => assert_eq!(limit, 1, "lock with a limit"),
        Namespace::Semaphore => {
            assert!(
                (1..=i64::MAX as u64).contains(&limit),
                "limit {limit} out of range"
            )
        }
    }
}

fn check_lease(lease_s: Option<u64>) {
    if let Some(lease) = lease_s {
        assert!(
            (1..=MAX_SECONDS).contains(&lease),
            "lease {lease} out of range"
        );
    }
}

/// Non-empty and without ASCII white space at either end (the parser trims Unicode white space,
/// which includes ASCII's).
fn check_trimmed(field: &[u8]) {
    assert!(!field.is_empty(), "empty field");
    let edges = [field[0], field[field.len() - 1]];
    assert!(
        !edges
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')),
        "untrimmed field {field:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_frame_follows_the_spec() {
        assert_eq!(naive_frame(b"l\nk"), Naive::Partial(1));
        assert_eq!(
            naive_frame(b"l\r\nk\n1\r\rrest"),
            Naive::Partial(2),
            "no LF after the arg yet"
        );
        match naive_frame(b"l\r\nk\n1\r\n+") {
            Naive::Frame { frame, consumed } => {
                assert_eq!(consumed, 8);
                assert_eq!(
                    (frame.cmd, frame.key, frame.arg),
                    (&b"l"[..], &b"k"[..], &b"1"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(naive_frame(&long), Naive::TooLong);
        let signal = [b"signal\r\nc\n".as_slice(), &long, b"\n"].concat();
        assert!(matches!(naive_frame(&signal), Naive::Frame { .. }));
    }

    #[test]
    fn targets_accept_their_seeds_shapes() {
        frame(&[3, 1, 2, 250, b'l', b'\n', b'k', b'\n', b'1', b'\n']);
        request(b"sl\nk\n5 2 9\nr\nk\ntok\n");
        request(&[
            b's', b'i', b'g', b'n', b'a', b'l', b'\n', b'c', b'\n', 0x1b, 200, b'p', b'\n',
        ]);
    }
}
