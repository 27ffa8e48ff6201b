//! A connection's queued output: appended at the back, written from the front.

use super::bufpool::BufPool;

/// Bytes queued for one peer.
///
/// A write advances a cursor instead of moving the unwritten rest to the front, so a reply of
/// megabytes that leaves in many pieces is not shifted once per piece. The written front is
/// reclaimed when everything is out, or by an append that finds it at least as long as what is
/// left, so that each byte is moved at most once on average.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    /// How much of `buf` has been written.
    sent: usize,
}

impl Output {
    /// The bytes not written yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// How many bytes are not written yet.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer to append to, holding an allocation (from `pool` if it had none).
    #[inline]
    pub fn append(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.sent > 0 && self.sent >= self.len() {
            self.reclaim_front();
        }
        pool.ensure(&mut self.buf)
    }

    /// Moves the unwritten bytes to the front. Only after a partial write, so off the
    /// request path.
    #[cold]
    fn reclaim_front(&mut self) {
        self.buf.drain(..self.sent);
        self.sent = 0;
    }

    /// Appends `bytes`, taking over their allocation instead of copying when nothing is
    /// pending (a `stats` listing can be megabytes).
    pub fn append_vec(&mut self, bytes: &mut Vec<u8>, pool: &mut BufPool) {
        if self.is_empty() {
            // Nothing pending means `buf` is empty (`consume` clears it), so only its
            // allocation, if any, is left to hand back.
            pool.release_if_empty(&mut self.buf);
            self.buf = std::mem::take(bytes);
        } else {
            self.append(pool).extend_from_slice(bytes);
            bytes.clear();
        }
    }

    /// `n` bytes were written; the buffer goes back to `pool` once everything is out.
    pub fn consume(&mut self, n: usize, pool: &mut BufPool) {
        debug_assert!(n <= self.len(), "wrote more than was pending");
        self.sent = (self.sent + n).min(self.buf.len());
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            pool.release_if_empty(&mut self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_bytes_leave_from_the_front_in_order() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        out.append(&mut pool).extend_from_slice(b"abcdef");
        out.consume(2, &mut pool);
        assert_eq!(out.pending(), b"cdef");
        out.append(&mut pool).extend_from_slice(b"gh");
        assert_eq!(out.pending(), b"cdefgh");
        out.consume(6, &mut pool);
        assert!(out.is_empty());
        assert_eq!(out.buf.capacity(), 0, "an empty output holds no buffer");
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
        assert_eq!(out.pending()[29..], [8, 9]);
    }

    #[test]
    fn a_vector_is_taken_over_when_nothing_is_pending() {
        let mut pool = BufPool::default();
        let mut out = Output::default();
        let mut listing = b"stats".to_vec();
        let at = listing.as_ptr();
        out.append_vec(&mut listing, &mut pool);
        assert_eq!((out.pending(), out.pending().as_ptr()), (&b"stats"[..], at));
        let mut more = b"!".to_vec();
        out.append_vec(&mut more, &mut pool);
        assert_eq!(out.pending(), b"stats!");
        assert!(more.is_empty());
    }
}
