//! The `info` payload: a server's counters, gauges and most contended keys, as one JSON object
//! after `ok `. The server writes these structs and the client reads them, so the two cannot
//! drift apart. Unknown fields are ignored and missing ones read as zero or empty, so a newer
//! server's payload still parses.

use serde::{Deserialize, Serialize};

/// What `info` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    /// The server's version.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Open connections, the one that asked included.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused since start (every cap, failed auth, failed TLS handshakes).
    pub connections_rejected: u64,
    /// Requests read since start.
    pub requests: u64,
    /// Lock state and counters.
    pub lock: NamespaceInfo,
    /// Semaphore state and counters.
    pub semaphore: NamespaceInfo,
    /// Current signal subscriptions.
    pub subscriptions: u64,
    /// Signals published since start.
    pub signals_published: u64,
    /// Signal deliveries (one per receiving subscriber) since start.
    pub signal_deliveries: u64,
    /// Subscribers dropped for not reading their signals.
    pub slow_consumers_disconnected: u64,
}

/// State and counters of one namespace (locks or semaphores).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceInfo {
    /// Keys that exist (held, waited for, or idle until collected).
    pub keys: u64,
    /// Current holders.
    pub holders: u64,
    /// Current waiters (blocking acquires and two-phase enqueues).
    pub waiters: u64,
    /// Grants since start.
    pub grants: u64,
    /// Explicit releases since start.
    pub releases: u64,
    /// Leases that ran out without a release: locks lost by their holders.
    pub lease_expirations: u64,
    /// Holds released because the holder's connection ended.
    pub disconnect_releases: u64,
    /// Holds ended by an admin's `evict` / `sevict`.
    pub evictions: u64,
    /// Acquires and waits that timed out.
    pub acquire_timeouts: u64,
    /// The most contended keys: most waiters first, then the longest current wait.
    pub contended: Vec<Contended>,
}

/// A key with waiters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contended {
    /// The key.
    pub key: String,
    /// The connection id of the (longest-standing) holder, 0 if nobody holds it.
    pub holder_conn_id: u64,
    /// The holder's peer address (`ip:port`, or `unix:uid=U,pid=P`), empty if none is known.
    pub holder_peer: String,
    /// Milliseconds the holder has held it.
    pub held_ms: u64,
    /// Queued waiters.
    pub waiters: u64,
    /// Milliseconds the oldest waiter has waited.
    pub oldest_wait_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_written_and_tolerates_other_versions() {
        let info = Info {
            version: "1.2.3".into(),
            uptime_s: 4.5,
            connections: 2,
            lock: NamespaceInfo {
                keys: 1,
                holders: 1,
                waiters: 3,
                contended: vec![Contended {
                    key: "orders".into(),
                    holder_conn_id: 7,
                    holder_peer: "127.0.0.1:5123".into(),
                    held_ms: 1200,
                    waiters: 3,
                    oldest_wait_ms: 800,
                }],
                ..NamespaceInfo::default()
            },
            ..Info::default()
        };
        let json = serde_json::to_string(&info).expect("serialise");
        assert_eq!(serde_json::from_str::<Info>(&json).ok(), Some(info));
        let sparse: Info =
            serde_json::from_str(r#"{"version":"9","future":{"x":1},"lock":{"keys":4}}"#)
                .expect("parse");
        assert_eq!((sparse.lock.keys, sparse.semaphore.keys), (4, 0));
        assert!(sparse.lock.contended.is_empty());
    }
}
