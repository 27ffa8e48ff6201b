//! Byte transport of one connection: reads and writes that report what happened as an action for
//! the event loop, so `io::ErrorKind::WouldBlock` never leaks into protocol code.
//!
//! [`Stream`] is what a connection needs from its byte stream. [`Transport`] (plain TCP, a Unix
//! stream socket, or TLS over TCP: [`tls`]) is the event loop's; [`memory::MemoryStream`] stands in for it in tests and
//! fuzz targets.

pub mod memory;
pub mod tls;

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};

use mio::net::{TcpStream, UnixStream};

use self::tls::TlsConn;

/// Most runs of output (replies, shared signal lines) one vectored write sends.
pub const WRITE_SLICES: usize = 64;

/// What a read did.
#[derive(Debug)]
pub enum ReadOutcome {
    /// `len` bytes were read. `drained` means the socket's receive queue is known to be empty
    /// now, so no further read is needed until the next readiness event.
    Data {
        /// Bytes read into the buffer.
        len: usize,
        /// Whether the receive queue was emptied.
        drained: bool,
    },
    /// Nothing to read until the next readiness event.
    WouldBlock,
    /// The peer will send nothing more.
    Eof,
    /// The connection failed (reset, ...).
    Failed(io::Error),
}

/// What a write did.
#[derive(Debug)]
pub enum WriteOutcome {
    /// `n` bytes were accepted (possibly fewer than offered).
    Wrote(usize),
    /// The socket buffer is full until the next writable event.
    WouldBlock,
    /// The connection failed.
    Failed(io::Error),
}

/// A connection's byte stream.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// A Unix stream socket (never TLS: the peer is on this host).
    Unix(UnixStream),
    /// TLS over TCP (boxed: the rustls state is large, plain connections stay small).
    Tls(Box<TlsConn>),
}

/// A connection's byte stream as the connection drives it: non-blocking calls whose outcomes say
/// what happened.
pub trait Stream {
    /// Whether a TLS handshake is still in progress.
    fn is_handshaking(&self) -> bool;

    /// Whether bytes the stream produced itself (TLS records) still wait for the socket.
    fn has_pending_output(&self) -> bool;

    /// Sends what the stream has queued itself (TLS handshake flights, alerts).
    fn flush_pending(&mut self) -> WriteOutcome;

    /// Best effort, never blocking: tells a TLS peer the stream ends (`close_notify`) before the
    /// socket is dropped.
    fn close_notify(&mut self);

    /// Reads once into `buf` (which must not be empty: a zero-length read is indistinguishable
    /// from EOF). `trust_short_reads` allows reporting the receive queue as drained after a short
    /// read: sound for plain TCP under edge-triggered epoll, where new data raises a new event,
    /// but not when the event already announced a closed read side (the FIN would be missed).
    fn read(&mut self, buf: &mut [u8], trust_short_reads: bool) -> ReadOutcome;

    /// Writes as much of `buf` as the socket takes in one call.
    fn write(&mut self, buf: &[u8]) -> WriteOutcome;

    /// Writes as much of `slices`, in order, as the socket takes in one call. `slices` is
    /// used as scratch space.
    fn write_vectored(&mut self, slices: &mut [IoSlice<'_>]) -> WriteOutcome;

    /// Ends the stream after everything written so far (`close_notify` first for TLS), then
    /// sends FIN; reading stays possible (for a lingering close).
    fn shutdown_write(&mut self);
}

impl Transport {
    /// The socket, for registration with the poller.
    pub fn socket(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Unix(stream) => stream,
            Transport::Tls(tls) => tls.socket(),
        }
    }
}

impl Stream for Transport {
    fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) | Transport::Unix(_) => false,
            Transport::Tls(tls) => tls.is_handshaking(),
        }
    }

    fn has_pending_output(&self) -> bool {
        match self {
            Transport::Plain(_) | Transport::Unix(_) => false,
            Transport::Tls(tls) => tls.wants_write(),
        }
    }

    fn flush_pending(&mut self) -> WriteOutcome {
        match self {
            Transport::Plain(_) | Transport::Unix(_) => WriteOutcome::Wrote(0),
            Transport::Tls(tls) => tls.flush(),
        }
    }

    fn close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.close_notify();
        }
    }

    fn read(&mut self, buf: &mut [u8], trust_short_reads: bool) -> ReadOutcome {
        debug_assert!(!buf.is_empty(), "zero-length read");
        // TCP and Unix sockets take the same calls: one code path on the descriptor.
        let fd = match self {
            Transport::Plain(stream) => (*stream).as_fd(),
            Transport::Unix(stream) => (*stream).as_fd(),
            // rustls reads about 4 KiB of ciphertext per call and buffers: a short read proves
            // nothing about the socket.
            Transport::Tls(tls) => return tls.read(buf),
        };
        read_socket(fd, buf, trust_short_reads)
    }

    fn write(&mut self, buf: &[u8]) -> WriteOutcome {
        let fd = match self {
            Transport::Plain(stream) => (*stream).as_fd(),
            Transport::Unix(stream) => (*stream).as_fd(),
            Transport::Tls(tls) => return tls.write(buf),
        };
        write_socket(fd, buf)
    }

    fn write_vectored(&mut self, slices: &mut [IoSlice<'_>]) -> WriteOutcome {
        let fd = match self {
            Transport::Plain(stream) => (*stream).as_fd(),
            Transport::Unix(stream) => (*stream).as_fd(),
            Transport::Tls(tls) => return tls.write_vectored(slices),
        };
        writev_socket(fd, slices)
    }

    fn shutdown_write(&mut self) {
        self.close_notify();
        // Fails only if the peer already reset the connection, which the next read reports.
        let _ = match self {
            Transport::Plain(stream) => stream.shutdown(Shutdown::Write),
            Transport::Unix(stream) => stream.shutdown(Shutdown::Write),
            Transport::Tls(tls) => tls.socket().shutdown(Shutdown::Write),
        };
    }
}

/// One read from a socket without TLS (TCP or Unix: the same calls on a descriptor).
#[inline]
fn read_socket(socket: BorrowedFd<'_>, buf: &mut [u8], trust_short_reads: bool) -> ReadOutcome {
    loop {
        match recv(socket, buf) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(len) => {
                return ReadOutcome::Data {
                    len,
                    drained: trust_short_reads && len < buf.len(),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return ReadOutcome::Failed(e),
        }
    }
}

/// One write to a socket without TLS.
#[inline]
fn write_socket(socket: BorrowedFd<'_>, buf: &[u8]) -> WriteOutcome {
    loop {
        match send(socket, buf) {
            Ok(0) if !buf.is_empty() => {
                return WriteOutcome::Failed(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => return WriteOutcome::Wrote(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return WriteOutcome::Failed(e),
        }
    }
}

/// One vectored write to a socket without TLS.
#[inline]
fn writev_socket(socket: BorrowedFd<'_>, slices: &mut [IoSlice<'_>]) -> WriteOutcome {
    loop {
        match rustix::io::writev(socket, slices) {
            Ok(0) if slices.iter().any(|s| !s.is_empty()) => {
                return WriteOutcome::Failed(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => return WriteOutcome::Wrote(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return WriteOutcome::Failed(e.into()),
        }
    }
}

/// `recv` on a plain socket. Made through rustix, whose system calls skip libc's thread
/// cancellation bookkeeping: the process has a logging thread, and libc's wrappers cost about a
/// hundred instructions more per call in a multi-threaded process.
fn recv(stream: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (len, _) = rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty())?;
    Ok(len)
}

/// `send` on a plain socket, through rustix for the reason given at [`recv`].
fn send(stream: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        stream,
        buf,
        rustix::net::SendFlags::empty(),
    )?)
}
