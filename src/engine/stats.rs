//! The `stats` payload (spec §10): a JSON object listing busy and idle resources and signal
//! subscriptions, built from the engine's state at one instant.
//!
//! The listing is O(resources + subscription entries): `stats` is an operator's tool, not a hot
//! path, and the spec asks for every key.

use std::borrow::Cow;

use serde::Serialize;

use super::{Engine, Owner};
use crate::clock::Millis;

/// Figures only the server knows, reported in the same `stats` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerFigures {
    /// Open connections, the caller's included.
    pub connections: u64,
    /// Subscribers disconnected so far because their output was full (not in dflockd 1.x; its
    /// clients ignore fields they do not know).
    pub slow_consumers_disconnected: u64,
}

/// The spec's fields, in the reference server's order, then this server's own counters.
#[derive(Serialize)]
struct Snapshot<'a> {
    connections: u64,
    locks: Vec<LockEntry<'a>>,
    semaphores: Vec<SemaphoreEntry<'a>>,
    idle_locks: Vec<IdleEntry<'a>>,
    idle_semaphores: Vec<IdleEntry<'a>>,
    signal_channels: Vec<ChannelEntry<'a>>,
    slow_consumers_disconnected: u64,
}

#[derive(Serialize)]
struct LockEntry<'a> {
    key: Cow<'a, str>,
    owner_conn_id: u64,
    lease_expires_in_s: f64,
    waiters: u64,
}

#[derive(Serialize)]
struct SemaphoreEntry<'a> {
    key: Cow<'a, str>,
    limit: u64,
    holders: u64,
    waiters: u64,
}

#[derive(Serialize)]
struct IdleEntry<'a> {
    key: Cow<'a, str>,
    idle_s: f64,
}

#[derive(Serialize)]
struct ChannelEntry<'a> {
    pattern: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Cow<'a, str>>,
    listeners: u64,
}

/// Keys are raw bytes; JSON wants text. Invalid UTF-8 becomes U+FFFD (spec §10).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

impl Engine {
    /// Appends the `stats` JSON object (without `ok ` or the newline) to `out`.
    pub fn write_stats(&self, now: Millis, server: ServerFigures, out: &mut Vec<u8>) {
        let mut snapshot = Snapshot {
            connections: server.connections,
            locks: Vec::new(),
            semaphores: Vec::new(),
            idle_locks: Vec::new(),
            idle_semaphores: Vec::new(),
            signal_channels: Vec::new(),
            slow_consumers_disconnected: server.slow_consumers_disconnected,
        };
        for (_, resource) in self.keys.resources.iter() {
            let key = text(&resource.key);
            let waiters = u64::from(resource.queue.len());
            if resource.is_idle() {
                let entry = IdleEntry {
                    key,
                    idle_s: now.secs_since(resource.last_activity),
                };
                if resource.limit == 1 {
                    snapshot.idle_locks.push(entry);
                } else {
                    snapshot.idle_semaphores.push(entry);
                }
            } else if resource.limit == 1 {
                let holder = resource
                    .holders
                    .head()
                    .map(|lease| &self.leases[lease as usize]);
                snapshot.locks.push(LockEntry {
                    key,
                    owner_conn_id: holder.map_or(0, |lease| match lease.owner {
                        Owner::Client(client) => self.clients.get(client).map_or(0, |c| c.serial),
                        Owner::Departed { serial } => serial,
                    }),
                    lease_expires_in_s: holder.map_or(0.0, |lease| lease.expires.secs_since(now)),
                    waiters,
                });
            } else {
                snapshot.semaphores.push(SemaphoreEntry {
                    key,
                    limit: resource.limit,
                    holders: u64::from(resource.holders.len()),
                    waiters,
                });
            }
        }
        snapshot.signal_channels = self
            .signals
            .channels()
            .map(|channel| ChannelEntry {
                pattern: text(channel.pattern),
                group: channel.group.map(text),
                listeners: channel.listeners,
            })
            .collect();
        // Serialising plain structs of strings and numbers into a Vec cannot fail.
        serde_json::to_writer(out, &snapshot).expect("stats serialisation");
    }
}
