//! Incremental framing: finds the three LF-terminated lines of a request in a byte buffer and
//! enforces the per-line length limits while scanning (spec §2.1, §2.2).
//!
//! [`FrameDecoder`] remembers how far it has looked into the current request, so a request that
//! arrives a byte at a time is scanned once in total, and an over-long line is reported as soon
//! as it passes its limit, without waiting for its LF. The decoder only borrows the caller's
//! buffer: it never copies, owns or consumes bytes, and it does not interpret lines beyond
//! choosing the arg-line limit (that is [`super::request`]'s job).

use super::MAX_LINE;
use super::command::Command;

/// The three lines of one request, each without its LF and without any trailing CRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Line 1: the command name.
    pub cmd: &'a [u8],
    /// Line 2: the key (or channel, pattern, or an ignored placeholder); may be empty.
    pub key: &'a [u8],
    /// Line 3: the arguments; may be empty.
    pub arg: &'a [u8],
}

/// What [`FrameDecoder::decode`] found at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete request. Its bytes are the first `consumed` bytes of the buffer
    /// (`3 <= consumed <= buf.len()`); the decoder is reset for the request that follows.
    Frame {
        /// The three lines, borrowed from the buffer.
        frame: Frame<'a>,
        /// How many bytes of the buffer the request occupied, LFs included.
        consumed: usize,
    },
    /// The request is not complete yet; call again once more bytes have arrived.
    Partial {
        /// How many of the three lines are complete (0, 1 or 2). The per-line read deadline is
        /// re-armed whenever this grows.
        lines: u8,
    },
    /// A line passed its length limit. The connection must be answered `error` and closed; the
    /// decoder keeps answering `TooLong` until it is reset.
    TooLong,
}

/// Per-connection framing state for the request at the front of the input buffer.
///
/// `FrameDecoder::default()` is the state before the first byte of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameDecoder {
    /// Bytes at the start of the buffer already searched for an LF: they are never looked at again.
    scanned: usize,
    /// Offsets of the LFs ending the command line and the key line, once found.
    line_ends: [usize; 2],
    /// Lines complete so far (0, 1 or 2 between calls).
    lines: u8,
    /// Limit of the arg line, fixed by the command line once it is complete.
    arg_limit: usize,
}

impl FrameDecoder {
    /// How many lines of the current request are complete (0, 1 or 2).
    pub fn lines(&self) -> u8 {
        self.lines
    }

    /// Looks for one complete request at the start of `buf`.
    ///
    /// `buf` must begin with the first byte of the current request and hold every byte passed in
    /// earlier calls for this request, unchanged (the buffer may have moved in memory); new bytes
    /// may follow. After [`Decoded::Frame`] the caller drops `consumed` bytes from the front of
    /// its buffer before the next call. Each byte is examined once however the request is split
    /// across calls.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decoded<'a> {
        debug_assert!(
            buf.len() >= self.scanned,
            "the buffer lost bytes the decoder already scanned"
        );
        loop {
            let line_start = self.line_start();
            let limit = self.limit();
            // One byte past the longest allowed content: an LF there still ends a legal line,
            // any other byte there proves the line too long.
            let window_end = buf.len().min(line_start + limit + 1);
            let from = self.scanned;
            // A plain byte search; `memchr` would be faster on long payload lines, at the cost of
            // a dependency.
            let Some(offset) = buf[from..window_end].iter().position(|&b| b == b'\n') else {
                self.scanned = window_end;
                return if window_end - line_start > limit {
                    Decoded::TooLong
                } else {
                    Decoded::Partial { lines: self.lines }
                };
            };
            // `lf` indexes `buf`, so `consumed = lf + 1` never exceeds `buf.len()`.
            let lf = from + offset;
            self.scanned = lf + 1;
            if self.lines == 2 {
                let [cmd_end, key_end] = self.line_ends;
                *self = FrameDecoder::default();
                let frame = Frame {
                    cmd: strip_crs(&buf[..cmd_end]),
                    key: strip_crs(&buf[cmd_end + 1..key_end]),
                    arg: strip_crs(&buf[key_end + 1..lf]),
                };
                return Decoded::Frame {
                    frame,
                    consumed: lf + 1,
                };
            }
            if self.lines == 0 {
                self.arg_limit =
                    Command::from_name(strip_crs(&buf[..lf])).map_or(MAX_LINE, Command::arg_limit);
            }
            self.line_ends[usize::from(self.lines)] = lf;
            self.lines += 1;
        }
    }

    /// Offset of the first byte of the line being scanned.
    fn line_start(&self) -> usize {
        match self.lines {
            0 => 0,
            n => self.line_ends[usize::from(n) - 1] + 1,
        }
    }

    /// Longest content allowed for the line being scanned, CRs included.
    fn limit(&self) -> usize {
        match self.lines {
            2 => self.arg_limit,
            _ => MAX_LINE,
        }
    }
}

/// `line` without its trailing CRs (all of them: `abc\r\r` is `abc`). CRs elsewhere are data.
fn strip_crs(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MAX_PAYLOAD_LINE, MAX_REQUEST};
    use std::time::{Duration, Instant};

    fn frame<'a>(cmd: &'a [u8], key: &'a [u8], arg: &'a [u8]) -> Frame<'a> {
        Frame { cmd, key, arg }
    }

    /// Decodes `wire` in one call with a fresh decoder.
    fn decode_once(wire: &[u8]) -> Decoded<'_> {
        FrameDecoder::default().decode(wire)
    }

    /// `n` copies of `byte`.
    fn run(byte: u8, n: usize) -> Vec<u8> {
        vec![byte; n]
    }

    fn request(cmd: &[u8], key: &[u8], arg: &[u8]) -> Vec<u8> {
        [cmd, b"\n", key, b"\n", arg, b"\n"].concat()
    }

    #[test]
    fn a_complete_request_is_one_frame() {
        let wire = b"l\nmy-key\n10 33\n";
        assert_eq!(
            decode_once(wire),
            Decoded::Frame {
                frame: frame(b"l", b"my-key", b"10 33"),
                consumed: wire.len()
            }
        );
    }

    #[test]
    fn trailing_crs_are_stripped_and_inner_crs_kept() {
        let cases: &[(&[u8], Frame<'_>)] = &[
            (b"l\r\nk\r\n10\r\n", frame(b"l", b"k", b"10")),
            (b"abc\r\r\nk\r\r\r\n\r\n", frame(b"abc", b"k", b"")),
            (
                b"a\rb\nk\rey\nx\r y\r\n",
                frame(b"a\rb", b"k\rey", b"x\r y"),
            ),
            (b"\r\r\n\r\n\r\n", frame(b"", b"", b"")),
        ];
        for &(wire, expected) in cases {
            assert_eq!(
                decode_once(wire),
                Decoded::Frame {
                    frame: expected,
                    consumed: wire.len()
                },
                "{wire:?}"
            );
        }
    }

    #[test]
    fn key_and_arg_lines_may_be_empty() {
        assert_eq!(
            decode_once(b"ping\n\n\n"),
            Decoded::Frame {
                frame: frame(b"ping", b"", b""),
                consumed: 7
            }
        );
        assert_eq!(
            decode_once(b"\n\n\n"),
            Decoded::Frame {
                frame: frame(b"", b"", b""),
                consumed: 3
            }
        );
    }

    #[test]
    fn partial_reports_the_number_of_complete_lines() {
        let cases: &[(&[u8], u8)] = &[
            (b"", 0),
            (b"sig", 0),
            (b"signal", 0),
            (b"signal\r", 0),
            (b"signal\n", 1),
            (b"signal\nchan", 1),
            (b"signal\nchan\n", 2),
            (b"signal\nchan\npayload", 2),
            (b"signal\nchan\npayload\r", 2),
        ];
        for &(wire, lines) in cases {
            let mut decoder = FrameDecoder::default();
            assert_eq!(decoder.decode(wire), Decoded::Partial { lines }, "{wire:?}");
            assert_eq!(decoder.lines(), lines);
        }
    }

    #[test]
    fn every_split_point_gives_the_same_frame() {
        let wire = b"sl\r\npool\n  10 3\t60 \r\n";
        let expected = Decoded::Frame {
            frame: frame(b"sl", b"pool", b"  10 3\t60 "),
            consumed: wire.len(),
        };
        for split in 0..wire.len() {
            let mut decoder = FrameDecoder::default();
            let lines_before_split = wire[..split].iter().filter(|&&b| b == b'\n').count();
            assert_eq!(
                decoder.decode(&wire[..split]),
                Decoded::Partial {
                    lines: lines_before_split as u8
                },
                "split at {split}"
            );
            assert_eq!(decoder.decode(wire), expected, "split at {split}");
        }
    }

    #[test]
    fn growing_prefixes_one_byte_at_a_time() {
        let wire = b"listen\r\njobs.>\nworkers\n";
        let mut decoder = FrameDecoder::default();
        let mut seen_lines = 0;
        for end in 0..wire.len() {
            match decoder.decode(&wire[..end]) {
                Decoded::Partial { lines } => {
                    assert!(lines >= seen_lines, "line count went backwards at {end}");
                    seen_lines = lines;
                }
                other => panic!("unexpected {other:?} at {end}"),
            }
        }
        assert_eq!(seen_lines, 2);
        assert_eq!(
            decoder.decode(wire),
            Decoded::Frame {
                frame: frame(b"listen", b"jobs.>", b"workers"),
                consumed: wire.len()
            }
        );
        assert_eq!(decoder, FrameDecoder::default());
    }

    #[test]
    fn pipelined_requests_come_out_one_at_a_time() {
        let wire = b"ping\n_\n\nl\nk\n10\r\nr\nk\ntok\nstats\n_";
        let mut decoder = FrameDecoder::default();
        let mut rest: &[u8] = wire;
        let mut frames = Vec::new();
        loop {
            match decoder.decode(rest) {
                Decoded::Frame { frame, consumed } => {
                    frames.push(frame);
                    rest = &rest[consumed..];
                }
                Decoded::Partial { lines } => {
                    assert_eq!(lines, 1);
                    break;
                }
                Decoded::TooLong => panic!("no line is too long"),
            }
        }
        assert_eq!(
            frames,
            [
                frame(b"ping", b"_", b""),
                frame(b"l", b"k", b"10"),
                frame(b"r", b"k", b"tok"),
            ]
        );
        assert_eq!(rest, b"stats\n_");
    }

    #[test]
    fn lines_of_exactly_the_limit_are_accepted() {
        let long = run(b'x', MAX_LINE);
        let cases = [
            request(&long, b"k", b"a"),
            request(b"l", &long, b"a"),
            request(b"l", b"k", &long),
            request(b"nosuchcommand", b"k", &long),
        ];
        for wire in &cases {
            assert!(
                matches!(decode_once(wire), Decoded::Frame { consumed, .. } if consumed == wire.len())
            );
        }
    }

    #[test]
    fn crs_count_towards_the_limit() {
        let mut line = run(b'k', MAX_LINE - 2);
        line.extend_from_slice(b"\r\r");
        let wire = request(b"l", &line, b"1");
        assert_eq!(
            decode_once(&wire),
            Decoded::Frame {
                frame: frame(b"l", &line[..MAX_LINE - 2], b"1"),
                consumed: wire.len()
            }
        );
        line.push(b'\r');
        assert_eq!(decode_once(&request(b"l", &line, b"1")), Decoded::TooLong);
    }

    #[test]
    fn a_line_one_byte_over_the_limit_is_too_long_for_each_line() {
        let long = run(b'x', MAX_LINE + 1);
        let cases = [
            request(&long, b"k", b"a"),
            request(b"l", &long, b"a"),
            request(b"l", b"k", &long),
            request(b"stats", b"_", &long),
            request(b"signal ", b"chan", &long),
            request(b"Signal", b"chan", &long),
        ];
        for wire in &cases {
            assert_eq!(decode_once(wire), Decoded::TooLong);
        }
    }

    #[test]
    fn too_long_is_reported_before_the_lf_arrives() {
        let long = run(b'x', MAX_LINE + 1);
        let prefixes = [
            long.clone(),
            [b"l\n".as_slice(), &long].concat(),
            [b"l\nk\n".as_slice(), &long].concat(),
        ];
        for wire in &prefixes {
            let mut decoder = FrameDecoder::default();
            assert_eq!(
                decoder.decode(&wire[..wire.len() - 1]),
                Decoded::Partial {
                    lines: decoder.lines()
                }
            );
            assert_eq!(decoder.decode(wire), Decoded::TooLong);
            assert_eq!(decoder.decode(wire), Decoded::TooLong, "TooLong is sticky");
        }
    }

    #[test]
    fn signal_and_auth_arg_lines_may_be_64_kib() {
        for cmd in [b"signal".as_slice(), b"auth", b"signal\r", b"auth\r\r"] {
            let ok = request(cmd, b"chan", &run(b'p', MAX_PAYLOAD_LINE));
            assert!(
                matches!(decode_once(&ok), Decoded::Frame { frame, consumed }
                    if consumed == ok.len() && frame.arg.len() == MAX_PAYLOAD_LINE),
                "{cmd:?}"
            );
            let too_long = request(cmd, b"chan", &run(b'p', MAX_PAYLOAD_LINE + 1));
            assert_eq!(decode_once(&too_long), Decoded::TooLong, "{cmd:?}");
        }
    }

    #[test]
    fn the_64_kib_limit_applies_to_the_arg_line_only() {
        let long = run(b'x', MAX_LINE + 1);
        assert_eq!(
            decode_once(&request(b"signal", &long, b"p")),
            Decoded::TooLong
        );
        assert_eq!(
            decode_once(&request(b"auth", &long, b"p")),
            Decoded::TooLong
        );
    }

    #[test]
    fn a_partial_request_never_fills_a_buffer_of_max_request_bytes() {
        // The longest request there is: every line at its limit.
        let cmd = [b"signal".as_slice(), &run(b'\r', MAX_LINE - 6)].concat();
        let mut wire = request(&cmd, &run(b'k', MAX_LINE), &run(b'p', MAX_PAYLOAD_LINE));
        assert_eq!(wire.len(), MAX_REQUEST);
        let last = wire.pop();
        assert_eq!(last, Some(b'\n'));
        assert_eq!(decode_once(&wire), Decoded::Partial { lines: 2 });
        wire.push(b'\n');
        assert!(
            matches!(decode_once(&wire), Decoded::Frame { frame, consumed }
                if consumed == MAX_REQUEST && frame.cmd == b"signal")
        );
    }

    #[test]
    fn a_64_kib_payload_fed_byte_by_byte_is_scanned_once() {
        let wire = request(b"signal", b"chan", &run(b'p', MAX_PAYLOAD_LINE));
        let started = Instant::now();
        let mut decoder = FrameDecoder::default();
        for end in 0..wire.len() {
            assert!(matches!(
                decoder.decode(&wire[..end]),
                Decoded::Partial { .. }
            ));
        }
        assert!(
            matches!(decoder.decode(&wire), Decoded::Frame { consumed, .. } if consumed == wire.len())
        );
        // Rescanning from the start on every byte would take billions of steps here.
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn strip_crs_removes_only_trailing_crs() {
        assert_eq!(strip_crs(b"abc\r\r"), b"abc");
        assert_eq!(strip_crs(b"a\rc"), b"a\rc");
        assert_eq!(strip_crs(b"\r\r"), b"");
        assert_eq!(strip_crs(b""), b"");
    }
}
