//! A byte stream in memory, standing in for a socket where none is wanted: the peer's bytes wait
//! in a buffer, the peer takes the server's bytes within a window it sets.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::{ReadOutcome, Stream, WriteOutcome};

/// Both directions of a connection, as a kernel would hold them.
#[derive(Debug)]
pub struct MemoryStream {
    /// Bytes the peer sent that the server has not read.
    pub inbound: VecDeque<u8>,
    /// The peer shut down its sending side after `inbound`.
    pub peer_fin: bool,
    /// Bytes the stream still takes before a write would block.
    pub window: usize,
    /// Bytes the server wrote, oldest first.
    pub written: Vec<u8>,
    /// The server shut down its sending side.
    pub fin_sent: bool,
}

impl Default for MemoryStream {
    fn default() -> MemoryStream {
        MemoryStream {
            inbound: VecDeque::new(),
            peer_fin: false,
            window: usize::MAX,
            written: Vec::new(),
            fin_sent: false,
        }
    }
}

impl Stream for MemoryStream {
    fn is_handshaking(&self) -> bool {
        false
    }

    fn has_pending_output(&self) -> bool {
        false
    }

    fn flush_pending(&mut self) -> WriteOutcome {
        WriteOutcome::Wrote(0)
    }

    fn close_notify(&mut self) {}

    /// Like a plain TCP socket: a short read proves the buffer empty only if trusted.
    fn read(&mut self, buf: &mut [u8], trust_short_reads: bool) -> ReadOutcome {
        if self.inbound.is_empty() {
            return if self.peer_fin {
                ReadOutcome::Eof
            } else {
                ReadOutcome::WouldBlock
            };
        }
        let len = buf.len().min(self.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(self.inbound.drain(..len)) {
            *slot = byte;
        }
        ReadOutcome::Data {
            len,
            drained: trust_short_reads && len < buf.len(),
        }
    }

    fn write(&mut self, buf: &[u8]) -> WriteOutcome {
        self.write_vectored(&mut [IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, slices: &mut [IoSlice<'_>]) -> WriteOutcome {
        if self.window == 0 {
            return WriteOutcome::WouldBlock;
        }
        let mut taken = 0;
        for slice in slices.iter() {
            let n = slice.len().min(self.window);
            self.written.extend_from_slice(&slice[..n]);
            self.window -= n;
            taken += n;
        }
        WriteOutcome::Wrote(taken)
    }

    fn shutdown_write(&mut self) {
        self.fin_sent = true;
    }
}
