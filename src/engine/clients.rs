//! What the engine knows about each connected client, so that a disconnect costs O(what the
//! client has), not O(everything).

use super::ClientId;
use super::list::List;
use super::signal::ClientSubscriptions;

/// Per-client bookkeeping.
#[derive(Debug)]
pub struct ClientState {
    /// The full id, to reject a stale id whose slot has been reused.
    pub id: ClientId,
    /// Connection number for `stats` (`owner_conn_id`).
    pub serial: u64,
    /// Leases this client owns (through `Lease::owner_link`).
    pub leases: List,
    /// Waiters this client has queued (through `Waiter::client_link`).
    pub waiters: List,
    /// The waiter the client's current request is blocked on, if any.
    pub blocked: Option<u32>,
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
            leases: List::default(),
            waiters: List::default(),
            blocked: None,
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
}
