//! A blocking client for dflockd (and dflockd 1.x servers): locks and semaphores with
//! background lease renewal, pub/sub signals, `stats`, TLS and authentication, over std
//! networking and plain threads — no async runtime.
//!
//! Everything starts from a [`Client`]: the list of servers and the connection options. Keys
//! are spread over the servers by the sharding rule every official client uses (spec §18,
//! [`shard_index`]), so a key lands on the same server from Rust, Go, Python and TypeScript.
//!
//! ```no_run
//! use std::time::Duration;
//! use dflockd::client::Client;
//!
//! # fn main() -> Result<(), dflockd::client::Error> {
//! let client = Client::new(["10.0.0.1:6388", "10.0.0.2:6388"])?;
//! let guard = client.lock("reports/daily").lease(30).acquire(Duration::from_secs(10))?;
//! // The lease is renewed in the background while `guard` lives.
//! println!("holding with fence {}", guard.fence());
//! let lost = guard.loss_channel();
//! // ... do the work, checking `lost.try_recv()` (or `guard.is_lost()`) between steps ...
//! # drop(lost);
//! guard.release()?; // dropping the guard releases too
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - this file: [`Client`], its builder and the options every connection shares;
//! - [`Lock`], [`Semaphore`] and their [`Guard`] (lock module): acquiring, renewing, releasing,
//!   learning of a lost lease;
//! - [`Signals`] (signals module): subscriptions, publishing, the stream of incoming signals;
//! - [`Connection`] (conn module): one synchronous connection, and the request/response
//!   exchanges everything else is built from; the safety module adds its `queue` and `evict`;
//! - the session module: the background thread of a long-lived connection (routing responses
//!   and pushes, heartbeats, periodic work);
//! - the transport module: TCP and TLS; [`Stats`] and friends: the typed `stats` payload;
//! - [`Error`]: every failure, one variant per `error_*` status.
//!
//! This module must not depend on the server's internals: it speaks only the wire protocol,
//! through the `protocol` module's canonical request encoder.

mod conn;
mod error;
mod info;
mod lock;
mod safety;
mod session;
mod shard;
mod signals;
mod stats;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::protocol::request::{CheckTarget, EvictTarget};
pub use conn::{Checked, Connection, Grant};
pub use error::{Error, Result};
pub use info::{Contended, Info, NamespaceInfo};
pub use lock::{Enqueued, Guard, Lock, Loss, Semaphore, Waiting};
pub use safety::QueueState;
pub use shard::{crc32, shard_index};
pub use signals::Signals;
pub use stats::{ChannelStats, IdleStats, LockStats, SemaphoreStats, Stats};
pub use transport::DEFAULT_PORT;

use crate::protocol::Namespace;

/// How long connecting to a server may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to answer a request that does not wait (and a write may block),
/// by default. Waiting requests get their own timeout on top.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a long-lived connection may stay silent before it sends `ping`, by default: well
/// inside the server's default 23 s read timeout, as the official clients do (spec §12).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// A lock (capacity 1) or a semaphore (capacity `limit`): the two namespaces of spec §8.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `l r n e w`.
    Lock,
    /// `sl sr sn se sw` with the semaphore's capacity, which every acquire must repeat.
    Semaphore {
        /// How many holders at once, 1 or more.
        limit: u64,
    },
}

impl Kind {
    pub(crate) fn namespace(self) -> Namespace {
        match self {
            Kind::Lock => Namespace::Lock,
            Kind::Semaphore { .. } => Namespace::Semaphore,
        }
    }

    /// The capacity to send, checked against the protocol's range (1 ..= 2^63 - 1).
    fn checked_limit(self) -> Result<u64> {
        match self {
            Kind::Lock => Ok(1),
            Kind::Semaphore { limit } if limit >= 1 && i64::try_from(limit).is_ok() => Ok(limit),
            Kind::Semaphore { limit } => Err(Error::InvalidInput(format!(
                "a semaphore limit must be 1 to {}, not {limit}",
                i64::MAX
            ))),
        }
    }
}

/// A signal delivered to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The literal channel it was published on (never the pattern that matched).
    pub channel: String,
    /// The payload as published; bytes that are not UTF-8 are replaced by U+FFFD.
    pub payload: String,
}

/// Where TLS trust comes from.
#[derive(Clone, Debug)]
enum Trust {
    CaFile(PathBuf),
    System,
    Config(Arc<rustls::ClientConfig>),
}

/// Settings shared by every connection of a [`Client`].
#[derive(Clone)]
struct Options {
    connect_timeout: Duration,
    io_timeout: Duration,
    heartbeat: Duration,
    auth_token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    tls_server_name: Option<String>,
}

impl Options {
    fn dial(&self) -> transport::Dial<'_> {
        transport::Dial {
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            tls: self
                .tls
                .as_ref()
                .map(|config| (config, self.tls_server_name.as_deref())),
        }
    }
}

/// Entry point: a list of servers and how to talk to them. Cheap to clone; share it freely
/// between threads.
///
/// Locks and semaphores go to the server their key shards to. Signals have no key to shard
/// by: [`Client::signals`] and [`Client::emit`] use the first server, so publishers and
/// subscribers configured with the same list meet there.
///
/// ```no_run
/// use std::time::Duration;
/// use dflockd::client::Client;
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::builder(["locks.internal:6388"])
///     .tls_ca_file("/etc/dflockd/ca.pem")
///     .auth_token("s3cret")
///     .io_timeout(Duration::from_secs(5))
///     .build()?;
/// println!("{} connections", client.stats(0)?.connections);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Shared>,
}

/// What every clone of a [`Client`] shares.
struct Shared {
    servers: Vec<String>,
    options: Options,
}

impl Client {
    /// A client for `servers` (`host:port`, a bare host meaning port 6388, or `unix:/path` for a
    /// Unix socket on this host) without TLS, with default timeouts and no authentication.
    pub fn new<I, S>(servers: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::builder(servers).build()
    }

    /// A builder for a client of `servers`, to set TLS, authentication and timeouts.
    pub fn builder<I, S>(servers: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            servers: servers.into_iter().map(Into::into).collect(),
            options: Options {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                io_timeout: DEFAULT_IO_TIMEOUT,
                heartbeat: DEFAULT_HEARTBEAT,
                auth_token: None,
                tls: None,
                tls_server_name: None,
            },
            trust: None,
        }
    }

    /// The servers, in sharding order.
    pub fn servers(&self) -> &[String] {
        &self.inner.servers
    }

    /// The index of the server that owns `key`.
    pub fn server_index(&self, key: &str) -> usize {
        shard_index(key.as_bytes(), self.servers().len())
    }

    fn options(&self) -> &Options {
        &self.inner.options
    }

    fn server(&self, index: usize) -> Result<&str> {
        self.servers()
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| Error::InvalidInput(format!("there is no server {index}")))
    }

    /// A new connection to server `index`, ready for requests (TLS done, authenticated).
    pub fn connect(&self, index: usize) -> Result<Connection> {
        Connection::open(self.server(index)?, self.options())
    }

    /// A new connection to the server that owns `key`.
    pub fn connect_for(&self, key: &str) -> Result<Connection> {
        self.connect(self.server_index(key))
    }

    /// A lock on `key`, to acquire with [`Lock::acquire`] and friends.
    pub fn lock(&self, key: &str) -> Lock {
        Lock::new(self.clone(), key)
    }

    /// A semaphore on `key` admitting `limit` holders at once. Every user of the key must ask
    /// for the same limit while the server knows it ([`Error::LimitMismatch`] otherwise).
    pub fn semaphore(&self, key: &str, limit: u64) -> Semaphore {
        Semaphore::new(self.clone(), key, limit)
    }

    /// A subscriber connection to the first server (see the type's documentation).
    pub fn signals(&self) -> Result<Signals> {
        self.signals_on(0)
    }

    /// A subscriber connection to server `index`.
    pub fn signals_on(&self, index: usize) -> Result<Signals> {
        let options = self.options();
        Signals::start(
            Connection::open(self.server(index)?, options)?,
            options.io_timeout,
            options.heartbeat,
        )
    }

    /// Publishes `payload` on `channel` through the first server; returns the number of
    /// deliveries. Opens a connection for the call: keep a [`Signals`] or a [`Connection`] to
    /// publish often.
    pub fn emit(&self, channel: &str, payload: &str) -> Result<u64> {
        self.connect(0)?.emit(channel, payload)
    }

    /// The state of server `index`.
    pub fn stats(&self, index: usize) -> Result<Stats> {
        self.connect(index)?.stats()
    }

    /// Server `index`'s counters, gauges and most contended keys (see [`Info`]).
    pub fn info(&self, index: usize) -> Result<Info> {
        self.connect(index)?.info()
    }

    /// Checks that server `index` answers; returns the round-trip time of the `ping` (after
    /// connecting).
    pub fn ping(&self, index: usize) -> Result<Duration> {
        let mut conn = self.connect(index)?;
        let start = Instant::now();
        conn.ping()?;
        Ok(start.elapsed())
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.options();
        f.debug_struct("Client")
            .field("servers", &self.servers())
            .field("tls", &options.tls.is_some())
            .field("auth", &options.auth_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`]; from [`Client::builder`].
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    servers: Vec<String>,
    options: Options,
    trust: Option<Trust>,
}

impl ClientBuilder {
    /// Use TLS, trusting the CA certificates in the PEM file at `path` (read by
    /// [`ClientBuilder::build`]).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust = Some(Trust::CaFile(path.into()));
        self
    }

    /// Use TLS, trusting the operating system's root certificates.
    pub fn tls_system_roots(mut self) -> Self {
        self.trust = Some(Trust::System);
        self
    }

    /// Use TLS with a ready-made rustls configuration.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.trust = Some(Trust::Config(config));
        self
    }

    /// The name the servers' certificates must carry, instead of the host part of each
    /// address (for servers reached by IP address with a certificate for a name).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.options.tls_server_name = Some(name.into());
        self
    }

    /// Authenticate every connection with `token` (sent first, spec §14).
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.options.auth_token = Some(token.into());
        self
    }

    /// How long connecting (TCP and TLS handshake) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long a server may take to answer (beyond an acquire's own timeout), and a write
    /// may block.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.options.io_timeout = timeout;
        self
    }

    /// How long a lock holder or subscriber connection may stay silent before it sends `ping`,
    /// which keeps it inside the server's read timeout.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.options.heartbeat = interval;
        self
    }

    /// Checks the settings and loads the TLS trust anchors.
    pub fn build(self) -> Result<Client> {
        let ClientBuilder {
            servers,
            mut options,
            trust,
        } = self;
        if servers.is_empty() {
            return Err(Error::InvalidInput("no server given".into()));
        }
        for server in &servers {
            transport::Address::parse(server)?;
        }
        let durations = [
            options.connect_timeout,
            options.io_timeout,
            options.heartbeat,
        ];
        if durations.contains(&Duration::ZERO) {
            return Err(Error::InvalidInput(
                "timeouts and the heartbeat must be longer than zero".into(),
            ));
        }
        if let Some(token) = &options.auth_token {
            let trimmed = token.trim();
            if trimmed.is_empty() {
                return Err(Error::InvalidInput("the auth token is empty".into()));
            }
            conn::check_line("the auth token", trimmed, crate::protocol::MAX_PAYLOAD_LINE)?;
            options.auth_token = Some(trimmed.to_owned());
        }
        options.tls = match trust {
            None => None,
            Some(Trust::CaFile(path)) => Some(transport::config_with_ca_file(&path)?),
            Some(Trust::System) => Some(transport::config_with_system_roots()?),
            Some(Trust::Config(config)) => Some(config),
        };
        if options.tls.is_some() {
            if let Some(unix) = servers
                .iter()
                .find(|s| s.starts_with(transport::UNIX_PREFIX))
            {
                return Err(Error::InvalidInput(format!(
                    "{unix} is a Unix socket, which the server serves without TLS; \
                     list it in a client without TLS"
                )));
            }
        }
        Ok(Client {
            inner: Arc::new(Shared { servers, options }),
        })
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("servers", &self.servers)
            .field("tls", &self.trust)
            .field("auth", &self.options.auth_token.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_their_shard() {
        let client = Client::new(["a:1", "b:2", "c:3"]).expect("valid");
        assert_eq!(client.server_index("my-key"), 2);
        assert_eq!(client.server_index("foo"), 2);
        let two = Client::new(["a:1", "b:2"]).expect("valid");
        assert_eq!(two.server_index("my-key"), 1);
        assert_eq!(two.server_index("bar"), 0);
    }

    #[test]
    fn bad_settings_are_refused_before_connecting() {
        let none: [&str; 0] = [];
        assert!(Client::new(none).is_err());
        assert!(Client::new(["host:port"]).is_err());
        assert!(
            Client::builder(["h:1"])
                .io_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(Client::builder(["h:1"]).auth_token("  ").build().is_err());
        assert!(Client::builder(["h:1"]).auth_token("a\nb").build().is_err());
        assert!(matches!(
            Client::builder(["h:1"])
                .tls_ca_file("/nonexistent/ca.pem")
                .build(),
            Err(Error::Tls(_))
        ));
        assert!(Client::new(["unix:"]).is_err());
        assert!(Client::new(["unix:/run/dflockd.sock", "h:1"]).is_ok());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert!(matches!(
            Client::builder(["h:1", "unix:/run/dflockd.sock"])
                .tls_config(Arc::new(tls))
                .build(),
            Err(Error::InvalidInput(why)) if why.contains("unix:/run/dflockd.sock")
        ));
        assert!(Kind::Semaphore { limit: 0 }.checked_limit().is_err());
        assert!(Kind::Semaphore { limit: u64::MAX }.checked_limit().is_err());
        assert_eq!(Kind::Semaphore { limit: 3 }.checked_limit().ok(), Some(3));
    }
}
