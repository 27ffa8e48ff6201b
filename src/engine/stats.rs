//! The `stats` payload (spec §10): a JSON object listing busy and idle resources and signal
//! subscriptions.
//!
//! The listing is O(resources + subscription entries), so a server with a hundred thousand keys
//! must not produce it in one go: the event loop would stall for tens of milliseconds. It is
//! written in steps instead ([`Engine::write_stats_step`]), a bounded number of table slots per
//! call, resuming from a [`StatsCursor`]; the caller runs one step per loop turn. Each entry shows
//! its state at the moment it is listed, so a listing taken while the server is busy is a fuzzy
//! snapshot, like the reference server's under concurrent load.

use std::borrow::Cow;

use serde::Serialize;

use super::Engine;
use super::signal::{ChannelCursor, ChannelStat};
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

/// The arrays of the object, in the reference server's field order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Start,
    Locks,
    Semaphores,
    IdleLocks,
    IdleSemaphores,
    Channels,
    Done,
}

/// Where a `stats` listing stands between steps.
#[derive(Clone, Debug)]
pub struct StatsCursor {
    figures: ServerFigures,
    section: Section,
    /// Next resource slot to look at within a resource section.
    next: usize,
    /// No entry written yet in the current array (so no comma before the next).
    first: bool,
    channels: ChannelCursor,
}

impl StatsCursor {
    /// A listing that has not started; `figures` are the server's, taken now.
    pub fn new(figures: ServerFigures) -> StatsCursor {
        StatsCursor {
            figures,
            section: Section::Start,
            next: 0,
            first: true,
            channels: ChannelCursor::default(),
        }
    }

    /// Moves to the next array, writing the JSON between the two.
    fn open(&mut self, section: Section, out: &mut Vec<u8>) {
        let separator: &[u8] = match section {
            Section::Start => b"",
            Section::Locks => b"\"locks\":[",
            Section::Semaphores => b"],\"semaphores\":[",
            Section::IdleLocks => b"],\"idle_locks\":[",
            Section::IdleSemaphores => b"],\"idle_semaphores\":[",
            Section::Channels => b"],\"signal_channels\":[",
            Section::Done => b"],\"slow_consumers_disconnected\":",
        };
        out.extend_from_slice(separator);
        self.section = section;
        self.next = 0;
        self.first = true;
    }

    /// Appends one array element.
    fn entry(&mut self, out: &mut Vec<u8>, entry: &impl Serialize) {
        write_entry(&mut self.first, out, entry);
    }
}

/// Appends one array element, preceded by a comma unless it is the array's `first`.
fn write_entry(first: &mut bool, out: &mut Vec<u8>, entry: &impl Serialize) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    // Serialising plain structs of strings and numbers into a Vec cannot fail.
    serde_json::to_writer(out, entry).expect("stats entry serialisation");
}

#[derive(Serialize)]
struct LockEntry<'a> {
    key: Cow<'a, str>,
    owner_conn_id: u64,
    /// The holder's peer when it is labelled (a Unix-socket peer, `unix:uid=U,pid=P`); omitted
    /// otherwise, so TCP-only servers answer exactly as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_peer: Option<&'a str>,
    lease_expires_in_s: f64,
    waiters: u64,
    /// Milliseconds left of a lock-delay (`--lock-delay`) on the key; omitted when there is
    /// none, so servers without the flag answer exactly as before.
    #[serde(skip_serializing_if = "is_zero")]
    lock_delay_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct SemaphoreEntry<'a> {
    key: Cow<'a, str>,
    limit: u64,
    holders: u64,
    waiters: u64,
    /// As in [`LockEntry`].
    #[serde(skip_serializing_if = "is_zero")]
    lock_delay_ms: u64,
}

#[derive(Serialize)]
struct IdleEntry<'a> {
    key: Cow<'a, str>,
    idle_s: f64,
    /// As in [`LockEntry`].
    #[serde(skip_serializing_if = "is_zero")]
    lock_delay_ms: u64,
}

#[derive(Serialize)]
struct ChannelEntry<'a> {
    pattern: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Cow<'a, str>>,
    listeners: u64,
}

/// Keys are raw bytes; JSON wants text. Invalid UTF-8 becomes U+FFFD (spec §10).
pub(super) fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

impl Engine {
    /// Appends the whole `stats` JSON object (without `ok ` or the newline) to `out` at once.
    pub fn write_stats(&self, now: Millis, server: ServerFigures, out: &mut Vec<u8>) {
        let mut cursor = StatsCursor::new(server);
        while !self.write_stats_step(now, &mut cursor, out, usize::MAX) {}
    }

    /// Appends the next part of a `stats` JSON object to `out`, looking at no more than `budget`
    /// table slots. Returns `true` once the object is complete.
    pub fn write_stats_step(
        &self,
        now: Millis,
        cursor: &mut StatsCursor,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> bool {
        let mut left = budget;
        loop {
            match cursor.section {
                Section::Start => {
                    out.extend_from_slice(b"{\"connections\":");
                    out.extend_from_slice(cursor.figures.connections.to_string().as_bytes());
                    out.push(b',');
                    cursor.open(Section::Locks, out);
                }
                Section::Channels => {
                    let first = &mut cursor.first;
                    let done = self
                        .signals
                        .channels_step(&mut cursor.channels, left, |stat| {
                            write_entry(first, out, &channel_entry(stat));
                        });
                    if !done {
                        return false;
                    }
                    cursor.open(Section::Done, out);
                    let count = cursor.figures.slow_consumers_disconnected;
                    out.extend_from_slice(count.to_string().as_bytes());
                    out.push(b'}');
                    return true;
                }
                Section::Done => return true,
                section => {
                    if !self.list_resources(now, cursor, out, &mut left) {
                        return false;
                    }
                    let next = match section {
                        Section::Locks => Section::Semaphores,
                        Section::Semaphores => Section::IdleLocks,
                        Section::IdleLocks => Section::IdleSemaphores,
                        _ => Section::Channels,
                    };
                    cursor.open(next, out);
                }
            }
        }
    }

    /// Lists the resources of the cursor's section, spending `left`; `true` once all are listed.
    fn list_resources(
        &self,
        now: Millis,
        cursor: &mut StatsCursor,
        out: &mut Vec<u8>,
        left: &mut usize,
    ) -> bool {
        let resources = &self.keys.resources;
        while cursor.next < resources.capacity() {
            if *left == 0 {
                return false;
            }
            *left -= 1;
            cursor.next += 1;
            let Some(resource) = resources.get(cursor.next - 1) else {
                continue;
            };
            let lock_delay_ms = self.lock_delay_left(now, cursor.next as u32 - 1);
            // Classification is by limit, not namespace (spec §10).
            let lock_like = resource.limit() == 1;
            let key = || text(&resource.key);
            match (cursor.section, resource.is_idle(), lock_like) {
                (Section::Locks, false, true) => {
                    let slot = resource.holders.head();
                    let holder = slot.map(|lease| &self.leases[lease as usize]);
                    let owner_conn_id = holder.map_or(0, |lease| lease.owner.serial);
                    let owner_peer = holder
                        .and_then(|lease| self.clients.get(lease.owner.client))
                        .and_then(|client| client.label.as_deref());
                    let entry = LockEntry {
                        key: key(),
                        owner_conn_id,
                        owner_peer,
                        lease_expires_in_s: slot
                            .map_or(0.0, |lease| self.expiry(lease).secs_since(now)),
                        waiters: u64::from(resource.queue.len()),
                        lock_delay_ms,
                    };
                    cursor.entry(out, &entry);
                }
                (Section::Semaphores, false, false) => {
                    let entry = SemaphoreEntry {
                        key: key(),
                        limit: resource.limit(),
                        holders: u64::from(resource.holders.len()),
                        waiters: u64::from(resource.queue.len()),
                        lock_delay_ms,
                    };
                    cursor.entry(out, &entry);
                }
                (Section::IdleLocks, true, true) | (Section::IdleSemaphores, true, false) => {
                    let entry = IdleEntry {
                        key: key(),
                        idle_s: now.secs_since(resource.last_activity),
                        lock_delay_ms,
                    };
                    cursor.entry(out, &entry);
                }
                _ => {}
            }
        }
        true
    }
}

fn channel_entry(stat: ChannelStat<'_>) -> ChannelEntry<'_> {
    ChannelEntry {
        pattern: text(stat.pattern),
        group: stat.group.map(text),
        listeners: stat.listeners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ClientId, EngineConfig, Outbox};
    use crate::protocol::request::{Acquire, Subscription};
    use crate::protocol::{Namespace, Request, Response};
    use crate::token::TokenIssuer;

    struct Discard;

    impl Outbox for Discard {
        fn reply(&mut self, _: ClientId, _: Response) {}
        fn has_room(&mut self, _: ClientId, _: usize) -> bool {
            true
        }
        fn push(&mut self, _: ClientId, _: &crate::engine::Push<'_>) {}
        fn evict(&mut self, _: ClientId) {}
    }

    #[test]
    fn a_listing_written_in_small_steps_equals_the_one_written_at_once() {
        let config = EngineConfig {
            max_locks: 10_000,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, TokenIssuer::deterministic(1));
        let client = ClientId {
            index: 0,
            generation: 1,
        };
        engine.connect(client, 1);
        for i in 0..300 {
            let key = format!("key-{i}");
            let (ns, limit) = if i % 3 == 0 {
                (Namespace::Semaphore, 4)
            } else {
                (Namespace::Lock, 1)
            };
            let acquire = Request::Acquire(Acquire {
                ns,
                key: key.as_bytes(),
                timeout_s: 0,
                limit,
                lease_s: Some(if i % 2 == 0 { 10 } else { 1 }),
            });
            engine.apply(Millis(0), client, &acquire, &mut Discard);
            let pattern = format!("chan.{}.>", i % 7);
            let group: &[u8] = if i % 2 == 0 { b"" } else { b"g" };
            let listen = Request::Listen(Subscription {
                pattern: pattern.as_bytes(),
                group,
            });
            engine.apply(Millis(0), client, &listen, &mut Discard);
        }
        // Let the 1-second leases expire, so every section has entries.
        while engine.expire(Millis(1_500), &mut Discard) {}
        let figures = ServerFigures {
            connections: 3,
            slow_consumers_disconnected: 2,
        };
        let mut whole = Vec::new();
        engine.write_stats(Millis(1_500), figures, &mut whole);
        let mut stepped = Vec::new();
        let mut cursor = StatsCursor::new(figures);
        let mut steps = 0;
        while !engine.write_stats_step(Millis(1_500), &mut cursor, &mut stepped, 7) {
            steps += 1;
        }
        assert!(steps > 40, "the listing was not split ({steps} steps)");
        assert_eq!(
            String::from_utf8(stepped).unwrap(),
            String::from_utf8(whole.clone()).unwrap()
        );
        let value: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(value["locks"].as_array().unwrap().len(), 100);
        assert_eq!(value["idle_locks"].as_array().unwrap().len(), 100);
        assert_eq!(value["semaphores"].as_array().unwrap().len(), 50);
        assert_eq!(value["idle_semaphores"].as_array().unwrap().len(), 50);
        assert_eq!(value["signal_channels"].as_array().unwrap().len(), 14);
        assert_eq!(value["slow_consumers_disconnected"], 2);
    }
}
