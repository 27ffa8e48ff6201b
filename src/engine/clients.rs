//! What the engine knows about each connected client, so that a disconnect costs O(what the
//! client has), not O(everything).

use super::ClientId;
use super::list::List;
use super::signal::ClientSubscriptions;
use crate::slots::{SPARSE_RATIO, TRIM_FLOOR};

/// Per-client bookkeeping.
#[derive(Debug)]
pub struct ClientState {
    /// The full id, to reject a stale id whose slot has been reused.
    pub id: ClientId,
    /// Connection number for `stats` (`owner_conn_id`).
    pub serial: u64,
    /// How `stats` names the client beside its serial, if it is told (a Unix-socket peer's
    /// credentials); `None` for TCP peers, whose `stats` entries stay as they were.
    pub label: Option<Box<str>>,
    /// Leases this client owns (through `Lease::owner_link`).
    pub leases: List,
    /// Waiters this client has queued (through `Waiter::client_link`).
    pub waiters: List,
    /// The waiter the client's current request is blocked on, if any.
    pub blocked: Option<u32>,
    /// Whether the client proved it holds the admin token, which lets it `evict`.
    pub admin: bool,
    /// The client's signal subscriptions.
    pub subscriptions: ClientSubscriptions,
}

/// Client states indexed by `ClientId::index`. Connection slots are dense (the server allocates
/// them from a slab), so a vector indexed by slot is both the smallest and the fastest map.
#[derive(Debug, Default)]
pub struct Clients {
    slots: Vec<Option<ClientState>>,
    count: usize,
}

impl Clients {
    /// Registers `id`, replacing any stale occupant of its slot.
    pub fn insert(&mut self, id: ClientId, serial: u64) {
        let slot = id.index as usize;
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        debug_assert!(
            self.slots[slot].is_none(),
            "client slot {slot} reused before its occupant disconnected"
        );
        if self.slots[slot].is_none() {
            self.count += 1;
        }
        self.slots[slot] = Some(ClientState {
            id,
            serial,
            label: None,
            leases: List::default(),
            waiters: List::default(),
            blocked: None,
            admin: false,
            subscriptions: ClientSubscriptions::default(),
        });
    }

    /// Removes and returns the state of `id`, if it is registered.
    pub fn remove(&mut self, id: ClientId) -> Option<ClientState> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.as_ref().is_some_and(|state| state.id == id) {
            self.count -= 1;
            slot.take()
        } else {
            None
        }
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: ClientId) -> bool {
        self.get(id).is_some()
    }

    /// The state of `id`, if registered.
    pub fn get(&self, id: ClientId) -> Option<&ClientState> {
        self.slots
            .get(id.index as usize)?
            .as_ref()
            .filter(|state| state.id == id)
    }

    /// The state of `id`, if registered.
    pub fn get_mut(&mut self, id: ClientId) -> Option<&mut ClientState> {
        self.slots
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|state| state.id == id)
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every client that has a request waiting, with the waiter it waits on.
    pub fn blocked(&self) -> impl Iterator<Item = (ClientId, u32)> + '_ {
        self.slots
            .iter()
            .flatten()
            .filter_map(|state| state.blocked.map(|waiter| (state.id, waiter)))
    }

    /// Every registered client.
    pub fn iter(&self) -> impl Iterator<Item = &ClientState> {
        self.slots.iter().flatten()
    }

    /// Whether the table outgrew its clients: many more slots than clients, ending in empty
    /// ones (the same rule as the engine's slabs, see `Slots::wants_trim`). A crowd of
    /// connections that has left leaves its slots behind until trimmed.
    pub fn wants_trim(&self) -> bool {
        let end = self.slots.len();
        end > TRIM_FLOOR
            && self.count < end / SPARSE_RATIO
            && matches!(self.slots.last(), Some(None))
    }

    /// Drops up to `budget` empty slots from the end, and gives the allocation's unused part back
    /// once it is an eighth of it; returns how many slots were dropped.
    pub fn trim(&mut self, budget: usize) -> usize {
        let mut dropped = 0;
        while dropped < budget && self.wants_trim() {
            self.slots.pop();
            dropped += 1;
        }
        let (end, capacity) = (self.slots.len(), self.slots.capacity());
        if dropped > 0 && capacity - end >= capacity / 8 {
            self.slots.shrink_to(end);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u32) -> ClientId {
        ClientId {
            index,
            generation: 1,
        }
    }

    #[test]
    fn the_slots_of_a_departed_crowd_are_trimmed_down_to_the_last_client() {
        let mut clients = Clients::default();
        for index in 0..10_000 {
            clients.insert(id(index), u64::from(index));
        }
        for index in (0..10_000).filter(|&index| index != 3_000) {
            clients.remove(id(index));
        }
        assert!(clients.wants_trim());
        let mut calls = 0;
        while clients.wants_trim() {
            assert!(clients.trim(1_000) <= 1_000);
            calls += 1;
        }
        assert_eq!(calls, 7, "7 000 empty slots at 1 000 per call");
        assert!(clients.slots.capacity() <= 3_001 * 8 / 7 + 1);
        assert!(clients.contains(id(3_000)));
        // Once the last one leaves, the table goes down to the floor, and slots above it come
        // back when a client needs them.
        clients.remove(id(3_000));
        clients.trim(usize::MAX);
        assert!(clients.slots.capacity() <= TRIM_FLOOR * 8 / 7 + 1);
        clients.insert(id(5_000), 1);
        assert!(clients.contains(id(5_000)));
        assert!(!clients.is_empty() && !clients.wants_trim());
    }
}
