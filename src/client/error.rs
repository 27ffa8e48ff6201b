//! The client's error type: every failure a caller can see, from a refused connection to each
//! `error_*` status of spec §4.
//!
//! This module only names and describes failures; it decides nothing about retrying.

use std::fmt;
use std::io;

use rustls::CertificateError;

/// Everything that can go wrong talking to a dflockd server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An acquire or wait ran out of time without a grant (status `timeout`).
    Timeout,
    /// The server answered plain `error`: a rejected argument, a token it does not hold (for
    /// example a renewal after the lease expired), an invalid pattern, a full subscription list,
    /// or a wait cancelled by shutdown.
    Rejected,
    /// The server refused the auth token, or wanted one and got none (`error_auth`).
    Auth,
    /// Creating the key would exceed the server's `--max-locks` (`error_max_locks`).
    MaxLocks,
    /// The key's queue is full (`error_max_waiters`).
    MaxWaiters,
    /// The semaphore exists with another limit (`error_limit_mismatch`).
    LimitMismatch,
    /// This connection is already enqueued for the key (`error_already_enqueued`).
    AlreadyEnqueued,
    /// A wait without a matching enqueue on this connection (`error_not_enqueued`).
    NotEnqueued,
    /// The grant's lease ran out before it could be handed over (`error_lease_expired`).
    LeaseExpired,
    /// The server is shutting down and closes the connection (`error_draining`).
    Draining,
    /// The connection failed: refused, reset, TLS handshake failure, write timeout, ...
    Io(io::Error),
    /// No response arrived within the I/O timeout; the connection is closed, since a late
    /// response could no longer be matched to its request.
    NoResponse,
    /// The connection is closed (by the server, or earlier by this client after a failure).
    Closed,
    /// The server sent something the protocol does not allow here.
    Protocol(String),
    /// The caller passed a value the protocol cannot carry (a key with white space, a payload
    /// with a line feed, a bad option, ...); nothing was sent.
    InvalidInput(String),
    /// TLS could not be set up: an unreadable CA file, no usable root certificate, a server
    /// address that is not a valid TLS name.
    Tls(String),
    /// The TLS handshake failed because the server's certificate was rejected; the text is one
    /// sentence saying why, with a hint on how to fix it.
    Certificate(String),
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error a non-success status line stands for, or `None` if `line` is not one of the
    /// error statuses of spec §4.
    pub(crate) fn from_status(line: &str) -> Option<Error> {
        Some(match line {
            "timeout" => Error::Timeout,
            "error" => Error::Rejected,
            "error_auth" => Error::Auth,
            "error_max_locks" => Error::MaxLocks,
            "error_max_waiters" => Error::MaxWaiters,
            "error_limit_mismatch" => Error::LimitMismatch,
            "error_already_enqueued" => Error::AlreadyEnqueued,
            "error_not_enqueued" => Error::NotEnqueued,
            "error_lease_expired" => Error::LeaseExpired,
            "error_draining" => Error::Draining,
            _ => return None,
        })
    }

    /// The error for a response `line` that `request` does not allow: a known error status
    /// maps to its variant, anything else is a protocol violation.
    pub(crate) fn unexpected(request: &str, line: &str) -> Error {
        Error::from_status(line).unwrap_or_else(|| {
            Error::Protocol(format!("unexpected response to {request}: {line:?}"))
        })
    }

    /// The error for a failed TLS handshake with the server expected to be `name`: a rejected
    /// certificate becomes [`Error::Certificate`], anything else goes through `From<io::Error>`.
    pub(crate) fn from_handshake(error: io::Error, name: &str) -> Error {
        let rejected = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rejected {
            Some(rustls::Error::InvalidCertificate(why)) => {
                Error::Certificate(describe_certificate_error(why, name))
            }
            _ => Error::from(error),
        }
    }

    /// Whether this is a socket read timing out (platforms report it as either kind).
    pub(crate) fn is_timeout(error: &io::Error) -> bool {
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out waiting for the grant"),
            Error::Rejected => f.write_str("the server rejected the request (`error`)"),
            Error::Auth => f.write_str("authentication failed (`error_auth`)"),
            Error::MaxLocks => {
                f.write_str("the server's lock limit is reached (`error_max_locks`)")
            }
            Error::MaxWaiters => f.write_str("the key's queue is full (`error_max_waiters`)"),
            Error::LimitMismatch => {
                f.write_str("the semaphore exists with another limit (`error_limit_mismatch`)")
            }
            Error::AlreadyEnqueued => {
                f.write_str("already enqueued for this key (`error_already_enqueued`)")
            }
            Error::NotEnqueued => f.write_str("not enqueued for this key (`error_not_enqueued`)"),
            Error::LeaseExpired => {
                f.write_str("the lease expired before the grant (`error_lease_expired`)")
            }
            Error::Draining => f.write_str("the server is shutting down (`error_draining`)"),
            Error::Io(e) => write!(f, "connection failed: {e}"),
            Error::NoResponse => f.write_str("no response within the I/O timeout"),
            Error::Closed => f.write_str("the connection is closed"),
            Error::Protocol(what) => write!(f, "protocol violation: {what}"),
            Error::InvalidInput(what) => write!(f, "invalid input: {what}"),
            Error::Tls(what) => write!(f, "TLS setup failed: {what}"),
            Error::Certificate(what) => f.write_str(what),
        }
    }
}

/// One sentence on why the certificate of the server expected to be `name` was refused, with
/// the fix for the mistakes people make with self-made certificates.
fn describe_certificate_error(error: &CertificateError, name: &str) -> String {
    match error {
        CertificateError::Other(other) if is_ca_used_as_end_entity(other) => {
            "the server's certificate is a CA certificate, not a server certificate \
             (basicConstraints CA:TRUE); make a leaf certificate with \
             -addext basicConstraints=critical,CA:FALSE"
                .to_owned()
        }
        CertificateError::UnknownIssuer => {
            "the server's certificate is not signed by a trusted CA (unknown issuer); trust the \
             CA that signed it, or a self-signed certificate itself (--tls-ca, tls_ca_file)"
                .to_owned()
        }
        CertificateError::BadSignature => {
            "the server's certificate is not signed by the trusted certificate of that name (bad \
             signature; two self-signed certificates share a subject?); trust the certificate or \
             CA the server actually uses (--tls-ca, tls_ca_file)"
                .to_owned()
        }
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for {name:?}; connect by a name in its \
             subjectAltName or set that name with --tls-server-name (tls_server_name)"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is not valid for {name:?} (it names {}); connect by one \
             of those names or set it with --tls-server-name (tls_server_name)",
            presented.join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired; renew it (or check this machine's clock)"
                .to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet; check the clocks of this machine and \
             of the machine that made it"
                .to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for TLS servers; make it with \
             -addext extendedKeyUsage=serverAuth"
                .to_owned()
        }
        other => format!("the server's certificate was rejected: {other}"),
    }
}

/// rustls reports a CA certificate presented as the server's own only as webpki's error,
/// wrapped in [`CertificateError::Other`].
fn is_ca_used_as_end_entity(other: &rustls::OtherError) -> bool {
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        if Error::is_timeout(&e) {
            Error::NoResponse
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Closed
        } else {
            Error::Io(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_status_of_the_spec_maps_to_its_variant() {
        let cases = [
            ("timeout", "Timeout"),
            ("error", "Rejected"),
            ("error_auth", "Auth"),
            ("error_max_locks", "MaxLocks"),
            ("error_max_waiters", "MaxWaiters"),
            ("error_limit_mismatch", "LimitMismatch"),
            ("error_already_enqueued", "AlreadyEnqueued"),
            ("error_not_enqueued", "NotEnqueued"),
            ("error_lease_expired", "LeaseExpired"),
            ("error_draining", "Draining"),
        ];
        for (status, variant) in cases {
            let error = Error::from_status(status).expect(status);
            assert_eq!(format!("{error:?}"), variant);
        }
        for other in ["ok", "queued", "error_other", "Error", ""] {
            assert!(Error::from_status(other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn unexpected_lines_that_are_not_statuses_are_protocol_errors() {
        assert!(matches!(Error::unexpected("l", "error"), Error::Rejected));
        let Error::Protocol(what) = Error::unexpected("l", "ok x") else {
            panic!("not a protocol error");
        };
        assert!(what.contains("\"ok x\""), "{what}");
    }

    #[test]
    fn read_timeouts_and_eof_get_their_own_variants() {
        let timeout = Error::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(matches!(timeout, Error::NoResponse));
        let eof = Error::from(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(eof, Error::Closed));
        let reset = Error::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(reset, Error::Io(_)));
    }

    /// The message a handshake failing with `why` turns into.
    fn handshake_message(why: CertificateError) -> String {
        let failure = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(why),
        );
        match Error::from_handshake(failure, "locks.internal") {
            Error::Certificate(text) => text,
            other => panic!("not a certificate error: {other:?}"),
        }
    }

    #[test]
    fn rejected_certificates_are_explained_with_a_hint() {
        let ca = CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        assert_eq!(
            handshake_message(ca),
            "the server's certificate is a CA certificate, not a server certificate \
             (basicConstraints CA:TRUE); make a leaf certificate with \
             -addext basicConstraints=critical,CA:FALSE"
        );
        let cases = [
            (CertificateError::UnknownIssuer, "unknown issuer"),
            (
                CertificateError::NotValidForName,
                "not valid for \"locks.internal\"",
            ),
            (CertificateError::Expired, "has expired"),
            (CertificateError::NotValidYet, "not valid yet"),
            (
                CertificateError::InvalidPurpose,
                "extendedKeyUsage=serverAuth",
            ),
            (CertificateError::BadSignature, "bad signature"),
            (CertificateError::Revoked, "rejected: "),
        ];
        for (why, needle) in cases {
            let text = handshake_message(why);
            assert!(text.contains(needle), "{needle:?} not in {text:?}");
            assert!(!text.contains('\n'), "one line: {text:?}");
        }
        let named = handshake_message(CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("locks.internal").expect("name"),
            presented: vec!["DNS:localhost".to_owned()],
        });
        assert!(named.contains("(it names DNS:localhost)"), "{named}");
    }

    #[test]
    fn other_handshake_failures_stay_connection_errors() {
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert!(matches!(Error::from_handshake(other, "x"), Error::Io(_)));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(matches!(Error::from_handshake(eof, "x"), Error::Closed));
    }
}
