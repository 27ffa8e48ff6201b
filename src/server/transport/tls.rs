//! TLS with rustls, pumped by hand inside the event loop.
//!
//! Every socket call is non-blocking and every boundary stays visible: ciphertext is pulled with
//! `read_tls`, decrypted by `process_new_packets`, and plaintext drained from `reader()`; output
//! goes into `writer()` (which may take less than offered, keeping the rest in the connection's
//! own buffer) and out with `write_tls` until the socket would block. Handshake flights and
//! alerts are produced while *reading*, so every read ends by flushing what rustls wants to send.
//! `rustls::Stream` and `complete_io` are not used: they hide `WouldBlock` and EOF.

use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use super::{ReadOutcome, WriteOutcome};

/// Builds the server's TLS configuration from PEM files: TLS 1.2 and 1.3, no client
/// certificates, the `ring` provider.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: invalid certificate PEM: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: invalid private key PEM: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))?;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A TLS connection: the socket and the rustls state machine.
#[derive(Debug)]
pub struct TlsConn {
    socket: TcpStream,
    tls: ServerConnection,
}

impl TlsConn {
    /// Starts the server side of a handshake on `socket`.
    pub fn new(socket: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsConn> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsConn { socket, tls })
    }

    /// The socket, for registration.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Whether rustls holds TLS records that still have to reach the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Reads plaintext into `buf`: drains what rustls has decrypted, otherwise pulls and
    /// decrypts more ciphertext, until there is plaintext, the socket would block, or the stream
    /// ends.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            match self.tls.reader().read(buf) {
                Ok(0) => return ReadOutcome::Eof, // close_notify received
                Ok(len) => {
                    return ReadOutcome::Data {
                        len,
                        drained: false,
                    };
                }
                // TCP EOF without close_notify: our framing detects truncation itself, so this
                // is an ordinary disconnect.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return ReadOutcome::Eof,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
            match self.tls.read_tls(&mut self.socket) {
                // EOF is recorded by rustls; the reader reports it on the next pass.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return match self.flush() {
                        WriteOutcome::Failed(e) => ReadOutcome::Failed(e),
                        _ => ReadOutcome::WouldBlock,
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Failed(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Last gasp: let the alert rustls queued reach the peer before we close.
                let _ = self.flush();
                return ReadOutcome::Failed(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if let WriteOutcome::Failed(e) = self.flush() {
                return ReadOutcome::Failed(e);
            }
        }
    }

    /// Encrypts as much of `buf` as rustls buffers and sends records until the socket would
    /// block. Returns how many plaintext bytes rustls took.
    pub fn write(&mut self, buf: &[u8]) -> WriteOutcome {
        self.write_vectored(&mut [IoSlice::new(buf)])
    }

    /// Like [`TlsConn::write`] for several runs of bytes, in order; `slices` is scratch space.
    pub fn write_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> WriteOutcome {
        let mut taken = 0;
        loop {
            if !slices.is_empty() {
                match self.tls.writer().write_vectored(slices) {
                    Ok(n) => {
                        taken += n;
                        IoSlice::advance_slices(&mut slices, n);
                    }
                    Err(e) => return WriteOutcome::Failed(e),
                }
            }
            match self.flush() {
                WriteOutcome::Wrote(_) if slices.is_empty() => return WriteOutcome::Wrote(taken),
                // rustls made room: feed it more.
                WriteOutcome::Wrote(_) => {}
                WriteOutcome::WouldBlock if taken > 0 => return WriteOutcome::Wrote(taken),
                outcome => return outcome,
            }
        }
    }

    /// Sends every record rustls has queued, until the socket would block.
    pub fn flush(&mut self) -> WriteOutcome {
        let mut sent = 0;
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return WriteOutcome::Failed(e),
            }
        }
        WriteOutcome::Wrote(sent)
    }

    /// Queues `close_notify` and sends what can be sent.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush();
    }
}
