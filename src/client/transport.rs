//! Bytes to and from one server: TCP with optional TLS (rustls, `ring` provider), or a Unix
//! stream socket (`unix:/path`, for a server on the same host), split into a [`Reader`] and a
//! [`Writer`] that may live on different threads.
//!
//! Over TLS both halves share the rustls state behind a mutex, held only while records are
//! decrypted or encrypted, never while the socket blocks; so a thread blocked reading does not
//! stop another from sending. This module also builds TLS configurations (a CA file or the
//! system roots). It knows nothing of lines, requests or responses.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::error::{Error, Result};

/// The port used when a server address names only a host.
pub const DEFAULT_PORT: u16 = 6388;

/// Ciphertext read from the socket at a time; one full TLS record fits.
const CIPHER_CHUNK: usize = 16 * 1024 + 512;

/// rustls state shared by both halves of a TLS connection.
type SharedTls = Arc<Mutex<ClientConnection>>;

/// How to reach a server: timeouts and, for TLS, the configuration and an optional name to
/// verify instead of the address's host.
pub(crate) struct Dial<'a> {
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub tls: Option<(&'a Arc<ClientConfig>, Option<&'a str>)>,
}

/// Where a server listens, as written in a server list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Address<'a> {
    /// `host:port`, `[v6]:port`, or a bare host (port 6388).
    Tcp(&'a str, u16),
    /// `unix:/path/to.sock`: a Unix stream socket on this host.
    Unix(&'a Path),
}

/// The prefix that marks a Unix socket path in a server list.
pub(crate) const UNIX_PREFIX: &str = "unix:";

impl Address<'_> {
    /// Reads a server address: `unix:PATH`, or anything [`split_host_port`] accepts.
    pub(crate) fn parse(addr: &str) -> Result<Address<'_>> {
        match addr.strip_prefix(UNIX_PREFIX) {
            Some("") => Err(Error::InvalidInput(format!(
                "server address {addr:?} names no socket path"
            ))),
            Some(path) => Ok(Address::Unix(Path::new(path))),
            None => split_host_port(addr).map(|(host, port)| Address::Tcp(host, port)),
        }
    }
}

/// Opens a connection to `addr` (see [`Address::parse`]) and completes the TLS handshake if
/// `dial.tls` is set (TCP only: the caller checked that no Unix address is dialled with TLS).
pub(crate) fn connect(addr: &str, dial: &Dial<'_>) -> Result<(Reader, Writer)> {
    let (socket, tls) = match Address::parse(addr)? {
        Address::Unix(path) => (Socket::Unix(UnixStream::connect(path)?), None),
        Address::Tcp(host, port) => {
            let tcp = connect_tcp(host, port, dial.connect_timeout)?;
            tcp.set_nodelay(true)?;
            // The handshake is part of connecting; requests get the I/O timeout afterwards.
            tcp.set_read_timeout(Some(dial.connect_timeout))?;
            tcp.set_write_timeout(Some(dial.connect_timeout))?;
            let tls = match dial.tls {
                None => None,
                Some((config, name)) => Some(handshake(&tcp, config, name.unwrap_or(host))?),
            };
            (Socket::Tcp(tcp), tls)
        }
    };
    socket.set_read_timeout(Some(dial.io_timeout))?;
    socket.set_write_timeout(Some(dial.io_timeout))?;
    let reader = Reader {
        socket: socket.try_clone()?,
        tls: tls.clone(),
        cipher: vec![0; CIPHER_CHUNK].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    let writer = Writer {
        socket,
        tls,
        closed: false,
    };
    Ok((reader, writer))
}

/// A connected stream socket of either kind.
#[derive(Debug)]
pub(crate) enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Socket {
    /// A second handle on the same socket.
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(timeout),
            Socket::Unix(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match **self {
            Socket::Tcp(ref s) => Read::read(&mut &*s, buf),
            Socket::Unix(ref s) => Read::read(&mut &*s, buf),
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match **self {
            Socket::Tcp(ref s) => Write::write(&mut &*s, buf),
            Socket::Unix(ref s) => Write::write(&mut &*s, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits `host:port`; IPv6 literals need brackets (`[::1]:6388`). A bare host gets
/// [`DEFAULT_PORT`].
pub(crate) fn split_host_port(addr: &str) -> Result<(&str, u16)> {
    let invalid = || Error::InvalidInput(format!("server address {addr:?} is not host:port"));
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(invalid)?;
        return match tail.strip_prefix(':') {
            Some(port) => Ok((host, port.parse().map_err(|_| invalid())?)),
            None if tail.is_empty() => Ok((host, DEFAULT_PORT)),
            None => Err(invalid()),
        };
    }
    match addr.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(invalid()),
        Some((host, port)) if !host.is_empty() => Ok((host, port.parse().map_err(|_| invalid())?)),
        None if !addr.is_empty() => Ok((addr, DEFAULT_PORT)),
        _ => Err(invalid()),
    }
}

/// Tries every address `host` resolves to, each within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(Error::Io(last))
}

/// Runs the client side of the handshake on the blocking socket, verifying the certificate
/// against `name`.
fn handshake(tcp: &TcpStream, config: &Arc<ClientConfig>, name: &str) -> Result<SharedTls> {
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| Error::Tls(format!("{name:?} is not a valid TLS server name")))?;
    let mut tls = ClientConnection::new(Arc::clone(config), server_name)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut socket = tcp;
    tls.complete_io(&mut socket)
        .map_err(|e| Error::from_handshake(e, name))?;
    if tls.is_handshaking() {
        return Err(Error::Closed);
    }
    Ok(Arc::new(Mutex::new(tls)))
}

/// A TLS client configuration trusting the certificates of the PEM file `path`.
pub(crate) fn config_with_ca_file(path: &Path) -> Result<Arc<ClientConfig>> {
    let unreadable = |e: &dyn std::fmt::Display| Error::Tls(format!("{}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    config_with_roots(roots)
}

/// A TLS client configuration trusting the operating system's root certificates.
pub(crate) fn config_with_system_roots() -> Result<Arc<ClientConfig>> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // Stores routinely hold a few certificates rustls cannot parse; skipping them is what every
    // rustls user of the system store does.
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "the system store is empty".to_owned(), |e| e.to_string());
        return Err(Error::Tls(format!(
            "no usable system root certificate: {why}"
        )));
    }
    config_with_roots(roots)
}

fn config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn lock(tls: &SharedTls) -> MutexGuard<'_, ClientConnection> {
    // A panic while holding the lock leaves rustls in a state no caller can trust either way;
    // carrying on with it is no worse than failing every later read.
    tls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The receiving half: plaintext in, from the socket or through rustls.
pub(crate) struct Reader {
    socket: Socket,
    tls: Option<SharedTls>,
    /// Ciphertext read from the socket but not yet taken by rustls: `cipher[start..end]`.
    cipher: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Reader {
    /// Sets how long a read may block; `None` blocks indefinitely. Durations shorter than a
    /// millisecond are rounded up (a zero timeout is not allowed by the OS interface).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))
    }

    /// One TLS step: hand buffered ciphertext to rustls or, when none is left, read more from
    /// the socket (an empty read tells rustls the stream ended).
    fn feed_tls(&mut self, tls: &SharedTls) -> io::Result<()> {
        if self.start == self.end {
            self.end = (&self.socket).read(&mut self.cipher)?;
            self.start = 0;
        }
        let mut conn = lock(tls);
        let mut pending = &self.cipher[self.start..self.end];
        self.start += conn.read_tls(&mut pending)?;
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.clone() else {
            return (&self.socket).read(buf);
        };
        loop {
            match lock(&tls).reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Plaintext, a clean close (0), or the stream ending without close_notify.
                done => return done,
            }
            self.feed_tls(&tls)?;
        }
    }
}

/// The sending half. Callers serialise whole requests themselves (one writer at a time).
/// Dropping it closes the connection.
pub(crate) struct Writer {
    socket: Socket,
    tls: Option<SharedTls>,
    closed: bool,
}

impl Writer {
    /// Writes all of `bytes`, encrypting them first over TLS.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return (&self.socket).write_all(bytes);
        };
        let records = {
            let mut conn = lock(tls);
            let mut records = Vec::with_capacity(bytes.len() + 64);
            let mut rest = bytes;
            while !rest.is_empty() {
                let taken = conn.writer().write(rest)?;
                // Draining after each chunk keeps rustls under its send-buffer limit.
                while conn.wants_write() {
                    conn.write_tls(&mut records)?;
                }
                if taken == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                rest = &rest[taken..];
            }
            records
        };
        // The socket write happens outside the rustls lock so a blocked send never stalls the
        // reader; record order is kept because callers send one at a time.
        (&self.socket).write_all(&records)
    }

    /// A second handle on the socket, for shutting it down from another thread.
    pub fn socket(&self) -> io::Result<Socket> {
        self.socket.try_clone()
    }

    /// Says goodbye (TLS close_notify, best effort) and shuts the socket down in both
    /// directions, which also wakes a reader blocked on it. Idempotent.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Some(tls) = &self.tls {
            let mut records = Vec::new();
            let mut conn = lock(tls);
            conn.send_close_notify();
            while conn.wants_write() && conn.write_tls(&mut records).is_ok() {}
            drop(conn);
            let _ = (&self.socket).write_all(&records);
        }
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:7000").ok(),
            Some(("127.0.0.1", 7000))
        );
        assert_eq!(
            split_host_port("locks.example").ok(),
            Some(("locks.example", 6388))
        );
        assert_eq!(split_host_port("[::1]:7000").ok(), Some(("::1", 7000)));
        assert_eq!(split_host_port("[::1]").ok(), Some(("::1", 6388)));
        for bad in [
            "",
            ":7000",
            "::1",
            "[::1",
            "[::1]x",
            "host:port",
            "host:70000",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unix_addresses_name_a_path() {
        assert_eq!(
            Address::parse("unix:/run/dflockd.sock").ok(),
            Some(Address::Unix(Path::new("/run/dflockd.sock")))
        );
        assert_eq!(
            Address::parse("unix:rel.sock").ok(),
            Some(Address::Unix(Path::new("rel.sock")))
        );
        assert_eq!(
            Address::parse("10.0.0.1:7000").ok(),
            Some(Address::Tcp("10.0.0.1", 7000))
        );
        assert!(Address::parse("unix:").is_err());
    }
}
