//! A free list of byte buffers, so that connections hold buffers only while they have bytes in
//! flight and steady-state traffic allocates nothing.
//!
//! An idle connection keeps neither an input nor an output buffer: it takes one from the pool when
//! a request arrives split across reads or when output cannot be written at once, and gives it
//! back as soon as the buffer is empty again.

/// Capacity of a freshly allocated buffer: a few responses. Small on purpose: when thousands of
/// connections send a request in the same turn, each holds a buffer until the turn's writes, and
/// a buffer that needs more grows on demand.
const FRESH_CAPACITY: usize = 256;
/// Buffers that grew beyond this (a large signal payload, a slow subscriber's backlog) are freed
/// rather than kept, so a burst does not pin memory for the rest of the server's life.
const KEEP_CAPACITY: usize = 64 * 1024;
/// Most buffers kept for reuse.
const KEEP_COUNT: usize = 256;

/// Reusable `Vec<u8>` buffers.
#[derive(Debug, Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
}

impl BufPool {
    /// An empty buffer, reused if one is available.
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(FRESH_CAPACITY))
    }

    /// Returns `buf` (which is emptied) for reuse, or frees it.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > KEEP_CAPACITY || self.free.len() >= KEEP_COUNT {
            return;
        }
        buf.clear();
        self.free.push(buf);
    }

    /// Makes sure `buf` owns an allocation (taking a pooled one if it has none) and returns it.
    pub fn ensure<'b>(&mut self, buf: &'b mut Vec<u8>) -> &'b mut Vec<u8> {
        if buf.capacity() == 0 {
            *buf = self.take();
        }
        buf
    }

    /// Gives `buf`'s allocation back if the buffer is empty, leaving an unallocated `Vec`.
    pub fn release_if_empty(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() && buf.capacity() > 0 {
            self.give(std::mem::take(buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_big_ones_dropped() {
        let mut pool = BufPool::default();
        let mut buf = Vec::new();
        pool.ensure(&mut buf).extend_from_slice(b"abc");
        let ptr = buf.as_ptr();
        buf.clear();
        pool.release_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 0);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the freed buffer is handed out again");
        assert!(again.is_empty());
        pool.give(Vec::with_capacity(KEEP_CAPACITY + 1));
        assert!(pool.free.is_empty(), "oversized buffers are not kept");
    }
}
