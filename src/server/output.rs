//! A connection's queued output: appended at the back, written from the front.
//!
//! Most output is replies, appended in place to one buffer. A large signal push is not copied:
//! the output keeps a reference to the publish's shared [`PushLine`], and the writer sends the
//! pieces with one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::bufpool::BufPool;
use crate::engine::{Push, PushLine};

/// Push lines at least this long are shared rather than copied. A shared piece costs a queue
/// slot (32 bytes) and a vectored write; copying a short line costs less than that.
pub const SHARE_MIN: usize = 512;

/// Bytes queued for one peer.
///
/// A write advances a cursor instead of moving the unwritten rest to the front, so a reply of
/// megabytes that leaves in many pieces is not shifted once per piece. The written front is
/// reclaimed when everything is out, or by an append that finds it at least as long as what is
/// left, so that each byte is moved at most once on average.
#[derive(Debug, Default)]
pub struct Output {
    /// Output older than `tail`. None until a shared line is queued and again once the queue is
    /// written, so the request path appends to `tail` alone and an idle connection holds
    /// nothing here (boxed: most connections never have one).
    queue: Option<Box<Queue>>,
    /// The newest bytes, appended in place.
    tail: Vec<u8>,
    /// How much of the front (the first piece, or `tail` if there is none) has been written.
    sent: usize,
}

/// Runs of output queued ahead of the tail.
#[derive(Debug, Default)]
struct Queue {
    /// Oldest first; never empty while the queue exists.
    pieces: VecDeque<Piece>,
    /// Total length of `pieces`, written front included.
    len: usize,
}

/// A run of output older than the tail.
#[derive(Debug)]
enum Piece {
    /// Bytes this output owns (a former tail).
    Owned(Vec<u8>),
    /// A push line shared with other subscribers' outputs.
    Shared(PushLine),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Owned(bytes) => bytes,
            Piece::Shared(line) => line.as_bytes(),
        }
    }
}

impl Output {
    /// How many bytes are not written yet.
    pub fn len(&self) -> usize {
        self.queued() + self.tail.len() - self.sent
    }

    /// Length of the queue ahead of the tail, written front included.
    fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |queue| queue.len)
    }

    /// The pieces ahead of the tail, oldest first.
    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        self.queue.iter().flat_map(|queue| queue.pieces.iter())
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unwritten bytes if they are one run (no shared line queued): the common case, which
    /// takes a plain write.
    pub fn contiguous(&self) -> Option<&[u8]> {
        self.queue.is_none().then(|| &self.tail[self.sent..])
    }

    /// The unwritten bytes as runs, oldest first.
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> {
        let tail: &[u8] = &self.tail;
        self.pieces()
            .map(Piece::bytes)
            .chain(std::iter::once(tail))
            .enumerate()
            .map(|(i, run)| if i == 0 { &run[self.sent..] } else { run })
            .filter(|run| !run.is_empty())
    }

    /// Fills `slices` with the unwritten bytes after the first `skip`, at most `limit` of them;
    /// returns how many slices it filled.
    pub fn gather<'a>(&'a self, skip: usize, limit: usize, slices: &mut [IoSlice<'a>]) -> usize {
        let (mut skip, mut left, mut filled) = (skip, limit, 0);
        for run in self.runs() {
            if filled == slices.len() || left == 0 {
                break;
            }
            if skip >= run.len() {
                skip -= run.len();
                continue;
            }
            let run = &run[skip..];
            skip = 0;
            let take = run.len().min(left);
            slices[filled] = IoSlice::new(&run[..take]);
            filled += 1;
            left -= take;
        }
        filled
    }

    /// Unwritten bytes this output owns (shared lines excluded): what it adds to the server's
    /// memory beyond the lines themselves.
    pub fn owned_len(&self) -> usize {
        let shared: usize = self
            .pieces()
            .filter(|piece| matches!(piece, Piece::Shared(_)))
            .map(|piece| piece.bytes().len())
            .sum();
        let written_shared = match self.pieces().next() {
            Some(Piece::Shared(_)) => self.sent,
            _ => 0,
        };
        self.len() - (shared - written_shared)
    }

    /// The buffer to append to, holding an allocation (from `pool` if it had none).
    #[inline]
    pub fn append(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.sent > 0 && self.queue.is_none() && self.sent >= self.len() {
            self.reclaim_front();
        }
        pool.ensure(&mut self.tail)
    }

    /// Moves the unwritten bytes of the tail to its front. Only after a partial write, so off
    /// the request path.
    #[cold]
    fn reclaim_front(&mut self) {
        self.tail.drain(..self.sent);
        self.sent = 0;
    }

    /// Appends `bytes`, taking over their allocation instead of copying when nothing is
    /// pending (a `stats` listing can be megabytes).
    pub fn append_vec(&mut self, bytes: &mut Vec<u8>, pool: &mut BufPool) {
        if self.is_empty() {
            // Nothing pending means nothing is queued and the tail is empty (`consume` clears
            // it), so only its allocation, if any, is left to hand back.
            pool.release_if_empty(&mut self.tail);
            self.tail = std::mem::take(bytes);
        } else {
            self.append(pool).extend_from_slice(bytes);
            bytes.clear();
        }
    }

    /// Appends a push line: shared if it is long, copied if not. Returns how many bytes this
    /// output now owns beyond what it did.
    pub fn append_push(&mut self, push: &Push<'_>, pool: &mut BufPool) -> usize {
        let len = push.len();
        if len < SHARE_MIN {
            push.copy_to(self.append(pool));
            return len;
        }
        self.queue_shared(push.shared().clone());
        0
    }

    /// Queues `line` after everything pending, the tail's bytes included.
    fn queue_shared(&mut self, line: PushLine) {
        let queue = self.queue.get_or_insert_default();
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            queue.len += tail.len();
            queue.pieces.push_back(Piece::Owned(tail));
        }
        queue.len += line.len();
        queue.pieces.push_back(Piece::Shared(line));
    }

    /// Appends everything `other` holds (which must have written nothing), leaving it empty.
    pub fn append_output(&mut self, other: &mut Output, pool: &mut BufPool) {
        debug_assert_eq!(other.sent, 0, "appending an output that was written from");
        if self.is_empty() {
            pool.release_if_empty(&mut self.tail);
            std::mem::swap(self, other);
            return;
        }
        let pieces = other.queue.take().map(|queue| queue.pieces);
        for piece in pieces.into_iter().flatten() {
            match piece {
                Piece::Owned(mut bytes) => {
                    self.append(pool).extend_from_slice(&bytes);
                    bytes.clear();
                    pool.give(bytes);
                }
                Piece::Shared(line) => self.queue_shared(line),
            }
        }
        let mut tail = std::mem::take(&mut other.tail);
        self.append_vec(&mut tail, pool);
        pool.release_if_empty(&mut tail);
    }

    /// `n` bytes were written; buffers go back to `pool` once they are out. Returns how many of
    /// the `n` bytes were owned (not shared lines).
    #[inline]
    pub fn consume(&mut self, n: usize, pool: &mut BufPool) -> usize {
        debug_assert!(n <= self.len(), "wrote more than was pending");
        match self.queue.take() {
            None => {
                self.consume_tail(n, pool);
                n
            }
            Some(queue) => self.consume_queue(queue, n, pool),
        }
    }

    /// [`Output::consume`] from the tail alone.
    #[inline]
    fn consume_tail(&mut self, n: usize, pool: &mut BufPool) {
        self.sent = (self.sent + n).min(self.tail.len());
        if self.sent == self.tail.len() {
            self.tail.clear();
            self.sent = 0;
            pool.release_if_empty(&mut self.tail);
        }
    }

    /// [`Output::consume`] when pieces are queued (taken out of `self`): they go first, then
    /// the tail. The queue is put back unless it was all written.
    #[cold]
    fn consume_queue(&mut self, mut queue: Box<Queue>, n: usize, pool: &mut BufPool) -> usize {
        let (mut left, mut owned) = (n, 0);
        while let Some(front) = queue.pieces.front() {
            let size = front.bytes().len();
            let unsent = size - self.sent;
            let shared = matches!(front, Piece::Shared(_));
            if left < unsent {
                self.sent += left;
                self.queue = Some(queue);
                return owned + if shared { 0 } else { left };
            }
            left -= unsent;
            owned += if shared { 0 } else { unsent };
            self.sent = 0;
            queue.len -= size;
            if let Some(Piece::Owned(mut bytes)) = queue.pieces.pop_front() {
                bytes.clear();
                pool.give(bytes);
            }
        }
        self.consume_tail(left, pool);
        owned + left
    }

    /// Drops everything pending (the connection is gone); returns the owned bytes dropped.
    pub fn clear(&mut self, pool: &mut BufPool) -> usize {
        self.consume(self.len(), pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::push_line::LineGauge;

    fn pending(out: &Output) -> Vec<u8> {
        out.runs().flatten().copied().collect()
    }

    fn long_line(fill: u8) -> PushLine {
        PushLine::new(b"c", &[fill; SHARE_MIN], &LineGauge::default())
    }

    #[test]
    fn written_bytes_leave_from_the_front_in_order() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.append(&mut pool).extend_from_slice(b"abcdef");
        out.consume(2, &mut pool);
        assert_eq!(out.contiguous(), Some(&b"cdef"[..]));
        out.append(&mut pool).extend_from_slice(b"gh");
        assert_eq!(pending(&out), b"cdefgh");
        out.consume(6, &mut pool);
        assert!(out.is_empty());
        assert_eq!(out.tail.capacity(), 0, "an empty output holds no buffer");
    }

    #[test]
    fn an_append_reclaims_the_written_front_once_it_outweighs_the_rest() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.append(&mut pool).extend_from_slice(&[7; 100]);
        out.consume(40, &mut pool);
        out.append(&mut pool).push(8);
        assert_eq!(
            (out.sent, out.len()),
            (40, 61),
            "less written than pending: no move"
        );
        out.consume(31, &mut pool);
        out.append(&mut pool).push(9);
        assert_eq!(
            (out.sent, out.len()),
            (0, 31),
            "front reclaimed before the append"
        );
        assert_eq!(pending(&out)[29..], [8, 9]);
    }

    #[test]
    fn a_vector_is_taken_over_when_nothing_is_pending() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let mut listing = b"stats".to_vec();
        let at = listing.as_ptr();
        out.append_vec(&mut listing, &mut pool);
        let taken = out.contiguous().expect("one run");
        assert_eq!((taken, taken.as_ptr()), (&b"stats"[..], at));
        let mut more = b"!".to_vec();
        out.append_vec(&mut more, &mut pool);
        assert_eq!(pending(&out), b"stats!");
        assert!(more.is_empty());
    }

    #[test]
    fn short_push_lines_are_copied_and_long_ones_shared() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let short = PushLine::new(b"c", b"p", &LineGauge::default());
        assert_eq!(
            out.append_push(&Push::of_line(&short), &mut pool),
            short.len()
        );
        assert!(
            out.contiguous().is_some(),
            "a copied line stays in the tail"
        );
        let long = long_line(b'x');
        assert_eq!(
            out.append_push(&Push::of_line(&long), &mut pool),
            0,
            "nothing copied"
        );
        assert!(out.contiguous().is_none());
        assert_eq!(out.len(), short.len() + long.len());
        assert_eq!(out.owned_len(), short.len());
        let runs: Vec<&[u8]> = out.runs().collect();
        assert_eq!(runs, [short.as_bytes(), long.as_bytes()]);
        assert_eq!(
            runs[1].as_ptr(),
            long.as_bytes().as_ptr(),
            "the line itself"
        );
    }

    #[test]
    fn replies_and_shared_lines_leave_in_the_order_they_were_queued() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let (a, b) = (long_line(b'a'), long_line(b'b'));
        out.append(&mut pool).extend_from_slice(b"ok\n");
        out.append_push(&Push::of_line(&a), &mut pool);
        out.append_push(&Push::of_line(&b), &mut pool);
        out.append(&mut pool).extend_from_slice(b"ok 1\n");
        let expected = [b"ok\n", a.as_bytes(), b.as_bytes(), b"ok 1\n"].concat();
        assert_eq!(pending(&out), expected);
        // Written a few bytes at a time, across piece boundaries.
        let mut written = Vec::new();
        let mut owned = 0;
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let filled = out.gather(0, 7, &mut slices);
            let chunk: Vec<u8> = slices[..filled].iter().flat_map(|s| s.to_vec()).collect();
            assert!(chunk.len() <= 7);
            written.extend_from_slice(&chunk);
            owned += out.consume(chunk.len(), &mut pool);
        }
        assert_eq!(written, expected);
        assert_eq!(owned, b"ok\nok 1\n".len(), "shared bytes are not owned");
    }

    #[test]
    fn gather_skips_what_was_already_handed_to_the_socket() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let line = long_line(b'z');
        out.append(&mut pool).extend_from_slice(b"head");
        out.append_push(&Push::of_line(&line), &mut pool);
        out.append(&mut pool).extend_from_slice(b"end");
        let mut slices = [IoSlice::new(&[]); 8];
        let filled = out.gather(4 + line.len() - 2, 100, &mut slices);
        let rest: Vec<u8> = slices[..filled].iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(rest, b"z\nend");
        assert_eq!(out.gather(0, 100, &mut slices[..1]), 1, "slices run out");
    }

    #[test]
    fn appending_another_output_keeps_lines_shared() {
        let mut pool = BufPool::default();
        let (mut out, mut held) = (Output::default(), Output::default());
        let line = long_line(b'h');
        out.append(&mut pool).extend_from_slice(b"ok {}\n");
        held.append(&mut pool).extend_from_slice(b"sig c p\n");
        held.append_push(&Push::of_line(&line), &mut pool);
        out.append_output(&mut held, &mut pool);
        assert!(held.is_empty());
        assert_eq!(
            pending(&out),
            [b"ok {}\nsig c p\n", line.as_bytes()].concat()
        );
        assert_eq!(out.owned_len(), b"ok {}\nsig c p\n".len());
    }

    #[test]
    fn clearing_lets_go_of_shared_lines() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let line = long_line(b'q');
        out.append(&mut pool).extend_from_slice(b"ok\n");
        out.append_push(&Push::of_line(&line), &mut pool);
        out.consume(5, &mut pool);
        assert_eq!(out.owned_len(), 0, "only shared bytes left");
        assert_eq!(out.clear(&mut pool), 0);
        assert!(out.is_empty());
        assert!(out.queue.is_none());
    }
}
