//! Lock events (`--lock-events`): what happens to locks and semaphores, published as signals on
//! reserved channels (`$lock.<event>.<key>`, `$sem.<event>.<key>`; see [`crate::protocol::events`]).
//!
//! An event is published where the state changes, through the same signal work as a `signal`
//! request without a publisher: at once when the index is free, else queued behind the publish in
//! progress, so events reach subscribers in the order the changes happened (a release before the
//! grant it frees) and a turn's signal units bound their fan-out like any other publish.
//!
//! The lock path pays one check per change, [`Engine::events_wanted`]: unless lock events are on
//! *and* some pattern could match a reserved channel, nothing is looked up or written. Everything
//! past that check is kept out of line.

use super::metrics::LeaseEnd;
use super::{ClientId, Engine, Outbox, Owner};
use crate::budget::EVENT_BACKLOG;
use crate::clock::Millis;
use crate::protocol::events::{EventPayload, LockEvent, event_channel, fence_text};

impl From<LeaseEnd> for LockEvent {
    fn from(end: LeaseEnd) -> LockEvent {
        match end {
            LeaseEnd::Release => LockEvent::Released,
            LeaseEnd::Expiry => LockEvent::Expired,
            LeaseEnd::Disconnect => LockEvent::Disconnected,
            LeaseEnd::Evict => LockEvent::Evicted,
        }
    }
}

/// Who is being talked about and what to say about them, before it is written out.
struct Facts {
    resource: u32,
    fence: Option<u64>,
    conn: u64,
    /// Names the peer while the client is connected.
    client: ClientId,
    waited_ms: Option<u64>,
    held_ms: Option<u64>,
}

impl Engine {
    /// Whether an event could reach anyone: lock events are on and some pattern could match a
    /// reserved channel (the index counts those only under the `$` rule, which lock events put
    /// in force). The one check the lock path makes.
    #[inline(always)]
    pub(super) fn events_wanted(&self) -> bool {
        self.signals.has_reserved_patterns()
    }

    /// Publishes `granted` for `lease`, just granted, which was asked for at `asked_at`.
    #[cold]
    #[inline(never)]
    pub(super) fn grant_event(
        &mut self,
        now: Millis,
        lease: u32,
        asked_at: Millis,
        out: &mut impl Outbox,
    ) {
        let facts = Facts {
            waited_ms: Some(now.since(asked_at)),
            ..self.lease_facts(lease)
        };
        self.publish_event(LockEvent::Granted, facts, out);
    }

    /// Publishes how `lease` ends (`released`, `expired`, ...), just before it does: its queue
    /// is as the end finds it, before the freed capacity is granted.
    #[cold]
    #[inline(never)]
    pub(super) fn lease_end_event(
        &mut self,
        now: Millis,
        lease: u32,
        end: LeaseEnd,
        out: &mut impl Outbox,
    ) {
        let l = &self.leases[lease as usize];
        let granted = self.metrics.granted_at(l.granted, l.token.fence);
        let facts = Facts {
            held_ms: Some(now.since(granted)),
            ..self.lease_facts(lease)
        };
        self.publish_event(end.into(), facts, out);
    }

    /// What every event about `lease` says.
    fn lease_facts(&self, lease: u32) -> Facts {
        let l = &self.leases[lease as usize];
        let Owner { client, serial } = l.owner;
        Facts {
            resource: l.resource,
            fence: Some(l.token.fence),
            conn: serial,
            client,
            waited_ms: None,
            held_ms: None,
        }
    }

    /// Publishes `event` (`queued` or `timeout`) about `client`'s wait for `resource`, which
    /// began at `since`.
    #[cold]
    #[inline(never)]
    pub(super) fn wait_event(
        &mut self,
        now: Millis,
        event: LockEvent,
        resource: u32,
        client: ClientId,
        since: Millis,
        out: &mut impl Outbox,
    ) {
        let facts = Facts {
            resource,
            fence: None,
            conn: self.clients.get(client).map_or(0, |state| state.serial),
            client,
            waited_ms: (event == LockEvent::Timeout).then(|| now.since(since)),
            held_ms: None,
        };
        self.publish_event(event, facts, out);
    }

    /// Writes the event's channel and payload and publishes them, unless so many operations
    /// already wait for the signal index that the event is dropped (and counted) instead: events
    /// have no publisher to hold back, so this is what bounds their backlog.
    fn publish_event(&mut self, event: LockEvent, facts: Facts, out: &mut impl Outbox) {
        if self.signal_work_backlog() >= EVENT_BACKLOG {
            self.metrics.count_dropped_event();
            return;
        }
        let r = &self.keys.resources[facts.resource as usize];
        let mut channel = Vec::new();
        event_channel(r.ns(), event, &r.key, &mut channel);
        let payload = EventPayload {
            key: super::stats::text(&r.key),
            fence: facts.fence.map(|fence| fence_text(fence).into()),
            conn: facts.conn,
            // A Unix-socket peer is labelled in the engine; the outbox knows any other.
            peer: self
                .clients
                .get(facts.client)
                .and_then(|state| state.label.as_deref())
                .map(Into::into)
                .or_else(|| out.peer(facts.client).map(Into::into)),
            waited_ms: facts.waited_ms,
            held_ms: facts.held_ms,
            waiters: u64::from(r.queue.len()),
        };
        // A struct of strings and numbers always serialises; were it ever not to, the event is
        // dropped like one past the backlog rather than take the loop down.
        let Ok(payload) = serde_json::to_vec(&payload) else {
            self.metrics.count_dropped_event();
            return;
        };
        self.publish(None, &channel, &payload, out);
    }
}
