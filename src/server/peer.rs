//! Who is on the other end of a connection: a TCP address, or the credentials the kernel
//! reports for a Unix-socket peer (`SO_PEERCRED`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The peer of a connection, as logs and `stats` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer: its address and port.
    Tcp(SocketAddr),
    /// A Unix-socket peer: the credentials of the process that connected.
    Unix {
        /// Effective user id.
        uid: u32,
        /// Effective (primary) group id.
        gid: u32,
        /// Process id, as seen from this process's pid namespace (0 if it has none there).
        pid: i32,
    },
}

/// What `--max-connections-per-ip` counts connections by: the address of a TCP peer, the user
/// id of a Unix-socket peer (every local peer shares one address, but not one uid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// A TCP peer's IP address.
    Ip(IpAddr),
    /// A Unix-socket peer's user id.
    Uid(u32),
}

impl Peer {
    /// The key its connections are counted under for the per-peer cap.
    pub fn key(&self) -> PeerKey {
        match *self {
            Peer::Tcp(addr) => PeerKey::Ip(addr.ip()),
            Peer::Unix { uid, .. } => PeerKey::Uid(uid),
        }
    }

    /// Whether the peer connected over a Unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self, Peer::Unix { .. })
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Tcp(addr)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix { uid, pid, .. } => write!(f, "unix:uid={uid},pid={pid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_display_and_key_by_address_or_uid() {
        let tcp = Peer::from(SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert_eq!(tcp.to_string(), "127.0.0.1:4000");
        assert_eq!(tcp.key(), PeerKey::Ip(IpAddr::from([127, 0, 0, 1])));
        let unix = Peer::Unix {
            uid: 1000,
            gid: 100,
            pid: 42,
        };
        assert_eq!(unix.to_string(), "unix:uid=1000,pid=42");
        assert_eq!(unix.key(), PeerKey::Uid(1000));
        assert!(unix.is_unix() && !tcp.is_unix());
    }
}
