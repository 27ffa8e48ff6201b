//! The `stats` payload (spec §10) as typed structs, for reading with serde.
//!
//! Only the shape of the data lives here; fetching it is the connection's job. Unknown fields
//! are ignored and a missing or `null` array reads as empty, so payloads of older and newer
//! servers parse too.

use serde::{Deserialize, Deserializer};

/// A server's state at one instant.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Stats {
    /// Open connections, the one that asked included.
    #[serde(default)]
    pub connections: u64,
    /// Locks (and limit-1 semaphores) with a holder or waiters.
    #[serde(default, deserialize_with = "list")]
    pub locks: Vec<LockStats>,
    /// Semaphores (limit above 1) with holders or waiters.
    #[serde(default, deserialize_with = "list")]
    pub semaphores: Vec<SemaphoreStats>,
    /// Limit-1 entries with nobody holding or waiting, until idle collection removes them.
    #[serde(default, deserialize_with = "list")]
    pub idle_locks: Vec<IdleStats>,
    /// Idle semaphore entries.
    #[serde(default, deserialize_with = "list")]
    pub idle_semaphores: Vec<IdleStats>,
    /// Signal subscriptions, aggregated per (pattern, group).
    #[serde(default, deserialize_with = "list")]
    pub signal_channels: Vec<ChannelStats>,
}

/// A busy lock.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LockStats {
    /// The key.
    pub key: String,
    /// The holder's connection id, 0 if nobody holds it.
    pub owner_conn_id: u64,
    /// Seconds left on the holder's lease (0 if none).
    pub lease_expires_in_s: f64,
    /// Queued waiters.
    pub waiters: u64,
}

/// A busy semaphore.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SemaphoreStats {
    /// The key.
    pub key: String,
    /// Holders admitted at once.
    pub limit: u64,
    /// Current holders.
    pub holders: u64,
    /// Queued waiters.
    pub waiters: u64,
}

/// An idle lock or semaphore entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IdleStats {
    /// The key.
    pub key: String,
    /// Seconds since its last activity.
    pub idle_s: f64,
}

/// Subscribers of one (pattern, group).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ChannelStats {
    /// The channel or wildcard pattern.
    pub pattern: String,
    /// The queue group, `None` for plain subscribers.
    #[serde(default)]
    pub group: Option<String>,
    /// Subscribing connections.
    pub listeners: u64,
}

/// A list that may be `null` (some 1.11 servers wrote that for an empty one).
fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_parses() {
        let json = r#"{"connections":3,"locks":[{"key":"orders","owner_conn_id":25,"lease_expires_in_s":29.699068385,"waiters":0}],"semaphores":[{"key":"pool","limit":2,"holders":2,"waiters":1}],"idle_locks":[{"key":"hc","idle_s":55.130683169}],"idle_semaphores":[],"signal_channels":[{"pattern":"events.>","listeners":1},{"pattern":"jobs.>","group":"workers","listeners":2}]}"#;
        let stats: Stats = serde_json::from_str(json).expect("valid stats");
        assert_eq!(stats.connections, 3);
        assert_eq!(stats.locks[0].key, "orders");
        assert_eq!(stats.locks[0].owner_conn_id, 25);
        assert_eq!(stats.semaphores[0].holders, 2);
        assert_eq!(stats.idle_locks[0].key, "hc");
        assert!(stats.idle_semaphores.is_empty());
        assert_eq!(stats.signal_channels[0].group, None);
        assert_eq!(stats.signal_channels[1].group.as_deref(), Some("workers"));
    }

    #[test]
    fn null_and_missing_lists_read_as_empty() {
        let stats: Stats =
            serde_json::from_str(r#"{"connections":1,"signal_channels":null,"extra":true}"#)
                .expect("valid stats");
        assert_eq!(stats.connections, 1);
        assert!(stats.signal_channels.is_empty() && stats.locks.is_empty());
    }
}
