//! One published signal's push line, encoded once and shared by every subscriber it reaches.
//!
//! Each subscriber's output holds a reference to the one [`PushLine`] rather than a copy, so a
//! signal of 64 KiB delivered to ten thousand subscribers costs O(payload) memory however wide the
//! fan-out, not ten thousand copies. Outputs still count the line's full length against
//! their own limits (a slow subscriber pins it), but the server-wide output budget counts each
//! line once, through the engine's [`LineGauge`].

use std::cell::OnceCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::protocol::response;

/// Bytes of the push lines alive that an engine created (held by a publish in progress, a
/// queued publish, or an output that has not written them yet), each counted once. Clones
/// share the count.
///
/// Atomic only so that a server can be built on one thread and run on another; every line is
/// created and dropped on the thread running the loop, so the counter is never contended.
#[derive(Clone, Debug, Default)]
pub struct LineGauge(Arc<AtomicUsize>);

impl LineGauge {
    /// The bytes counted now.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The line `sig <channel> <payload>\n` of one publish. Cloning shares it.
#[derive(Clone, Debug)]
pub struct PushLine(Arc<Line>);

#[derive(Debug)]
struct Line {
    bytes: Box<[u8]>,
    channel_len: usize,
    gauge: LineGauge,
}

impl Drop for Line {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

impl PushLine {
    /// Encodes the push line of a signal on `channel` carrying `payload`, counted by `gauge`
    /// until the last clone is dropped.
    pub fn new(channel: &[u8], payload: &[u8], gauge: &LineGauge) -> PushLine {
        let mut bytes = Vec::with_capacity(response::push_len(channel, payload));
        response::encode_push(channel, payload, &mut bytes);
        gauge.0.fetch_add(bytes.len(), Ordering::Relaxed);
        PushLine(Arc::new(Line {
            bytes: bytes.into_boxed_slice(),
            channel_len: channel.len(),
            gauge: gauge.clone(),
        }))
    }

    /// The whole line, LF included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The line's length, LF included.
    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    /// Never true: a line has at least its prefix and LF (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
    }

    /// The channel the signal was published on.
    pub fn channel(&self) -> &[u8] {
        &self.0.bytes[response::PUSH_PREFIX.len()..][..self.0.channel_len]
    }

    /// The signal's payload.
    pub fn payload(&self) -> &[u8] {
        let start = response::PUSH_PREFIX.len() + self.0.channel_len + 1;
        &self.0.bytes[start..self.0.bytes.len() - 1]
    }
}

/// The push of a publish as the engine offers it to each subscriber: the channel and payload,
/// and the shared [`PushLine`], made the first time an output asks for it. A publish whose
/// subscribers all copy its (short) line allocates nothing.
#[derive(Debug)]
pub struct Push<'a> {
    channel: &'a [u8],
    payload: &'a [u8],
    gauge: &'a LineGauge,
    line: OnceCell<PushLine>,
}

impl<'a> Push<'a> {
    /// The push of a signal on `channel` carrying `payload`; its line, if made, counts in
    /// `gauge`.
    pub fn new(channel: &'a [u8], payload: &'a [u8], gauge: &'a LineGauge) -> Push<'a> {
        Push {
            channel,
            payload,
            gauge,
            line: OnceCell::new(),
        }
    }

    /// The push of a line made earlier (a publish that spans turns).
    pub fn of_line(line: &'a PushLine) -> Push<'a> {
        Push {
            channel: line.channel(),
            payload: line.payload(),
            gauge: &line.0.gauge,
            line: OnceCell::from(line.clone()),
        }
    }

    /// The line's length, LF included.
    pub fn len(&self) -> usize {
        response::push_len(self.channel, self.payload)
    }

    /// Never true (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The channel the signal was published on.
    pub fn channel(&self) -> &[u8] {
        self.channel
    }

    /// The signal's payload.
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// Appends a copy of the line to `out`.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        response::encode_push(self.channel, self.payload, out);
    }

    /// The shared line, made on first use.
    pub fn shared(&self) -> &PushLine {
        self.line
            .get_or_init(|| PushLine::new(self.channel, self.payload, self.gauge))
    }

    /// The shared line, to keep after the publish's borrowed parts are gone.
    pub fn into_line(self) -> PushLine {
        self.shared();
        self.line.into_inner().expect("made above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_back_into_its_channel_and_payload() {
        let line = PushLine::new(b"jobs.eu", b" two  words ", &LineGauge::default());
        assert_eq!(line.as_bytes(), b"sig jobs.eu  two  words \n");
        assert_eq!(line.channel(), b"jobs.eu");
        assert_eq!(line.payload(), b" two  words ");
        assert_eq!(line.len(), line.as_bytes().len());
    }

    #[test]
    fn a_push_makes_its_shared_line_once_and_only_when_asked() {
        let gauge = LineGauge::default();
        let push = Push::new(b"c", b"payload", &gauge);
        let mut copy = Vec::new();
        push.copy_to(&mut copy);
        assert_eq!(
            (copy.len(), push.len()),
            (b"sig c payload\n".len(), copy.len())
        );
        assert_eq!(gauge.bytes(), 0, "copying makes no line");
        let at = push.shared().as_bytes().as_ptr();
        assert_eq!(push.shared().as_bytes().as_ptr(), at, "made once");
        assert_eq!(push.shared().as_bytes(), copy);
        let line = push.into_line();
        assert_eq!((line.as_bytes().as_ptr(), gauge.bytes()), (at, copy.len()));
        let again = Push::of_line(&line);
        assert_eq!(
            (again.channel(), again.payload()),
            (&b"c"[..], &b"payload"[..])
        );
        assert_eq!(again.shared().as_bytes().as_ptr(), at, "the same line");
    }

    #[test]
    fn a_shared_line_is_counted_once_until_its_last_holder_lets_go() {
        let gauge = LineGauge::default();
        let line = PushLine::new(b"c", &[b'x'; 1000], &gauge);
        let other = PushLine::new(b"c", b"p", &gauge);
        let copies: Vec<PushLine> = (0..100).map(|_| line.clone()).collect();
        assert_eq!(gauge.bytes(), line.len() + other.len());
        let len = line.len();
        drop(line);
        assert_eq!(gauge.bytes(), len + other.len(), "copies still hold it");
        drop(copies);
        assert_eq!(gauge.bytes(), other.len());
    }
}
