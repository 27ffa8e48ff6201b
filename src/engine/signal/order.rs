//! [`JoinOrder`]: a queue group's members in join order, with leaving and "the k-th member" in
//! O(log n) instead of the O(n) shift of a plain vector.
//!
//! Round robin (spec §13.4) tries the member at `turn mod size` first, where a leaving member
//! shifts the later ones down. Members keep their slot for life, a leaver leaves a hole, and a
//! Fenwick tree over "slot is occupied" counts the members before any slot, so the k-th member is
//! found by one descent of the tree. Holes are squeezed out once they outnumber the members, an
//! O(n) pass paid for by the n leaves before it.

/// Members of one queue group in join order. `T` is what the group stores per member.
#[derive(Debug)]
pub(super) struct JoinOrder<T> {
    /// Members by slot; `None` is a member that left.
    slots: Vec<Option<T>>,
    /// Fenwick tree over occupancy: `tree[i]` (1-based) counts the members in slots
    /// `(i - lowbit(i), i]`; `tree[0]` is unused.
    tree: Vec<u32>,
    len: u32,
}

impl<T: Copy> JoinOrder<T> {
    /// An empty order.
    pub(super) fn new() -> JoinOrder<T> {
        JoinOrder {
            slots: Vec::new(),
            tree: vec![0],
            len: 0,
        }
    }

    /// Number of members.
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// True without members.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a member (it joined last) and returns its slot.
    pub(super) fn push(&mut self, member: T) -> u32 {
        self.slots.push(Some(member));
        let index = self.slots.len();
        // The new node covers (index - lowbit, index]: itself plus the nodes that tile the rest.
        let mut count = 1;
        let mut child = index - 1;
        let floor = index - lowbit(index);
        while child > floor {
            count += self.tree[child];
            child -= lowbit(child);
        }
        self.tree.push(count);
        self.len += 1;
        to_u32(index - 1)
    }

    /// Removes the member in `slot`, which must be occupied, and returns it.
    pub(super) fn remove(&mut self, slot: u32) -> T {
        let member = self.slots[slot as usize]
            .take()
            .expect("a member leaves its own slot once");
        let mut index = slot as usize + 1;
        while index < self.tree.len() {
            self.tree[index] -= 1;
            index += lowbit(index);
        }
        self.len -= 1;
        member
    }

    /// The member in `slot`, if it has not left.
    pub(super) fn get(&self, slot: u32) -> Option<T> {
        self.slots.get(slot as usize).copied().flatten()
    }

    /// The slot of the member with `rank` members before it in join order (`rank < len`).
    pub(super) fn slot_of_rank(&self, rank: usize) -> u32 {
        debug_assert!(rank < self.len());
        let mut index = 0;
        let mut left = rank as u32;
        let mut step = (self.tree.len() - 1)
            .checked_ilog2()
            .map_or(0, |log| 1 << log);
        while step > 0 {
            let next = index + step;
            if next < self.tree.len() && self.tree[next] <= left {
                index = next;
                left -= self.tree[next];
            }
            step >>= 1;
        }
        // `index` slots hold exactly `rank` members, so the wanted one is in the next slot.
        to_u32(index)
    }

    /// The occupied slots in join order starting at `first` (occupied) and wrapping around, each
    /// member once.
    pub(super) fn cycle_from(&self, first: u32) -> impl Iterator<Item = (u32, T)> + '_ {
        let (head, tail) = self.slots.split_at(first as usize);
        let first = first as usize;
        tail.iter()
            .enumerate()
            .map(move |(offset, member)| (first + offset, member))
            .chain(head.iter().enumerate())
            .filter_map(|(slot, member)| member.map(|member| (to_u32(slot), member)))
    }

    /// Squeezes out the holes once they outnumber the members, reporting each member that moves
    /// with its new slot. Call after removals.
    pub(super) fn compact_if_sparse(&mut self, mut moved: impl FnMut(T, u32)) {
        let holes = self.slots.len() - self.len();
        if holes <= self.len() + 8 {
            return;
        }
        let members: Vec<T> = self.slots.drain(..).flatten().collect();
        self.tree.clear();
        self.tree.push(0);
        self.len = 0;
        for member in members {
            let slot = self.push(member);
            moved(member, slot);
        }
    }
}

fn lowbit(index: usize) -> usize {
    index & index.wrapping_neg()
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("a queue group stays below 2^32 slots")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random joins and leaves against a plain vector, the order the spec describes.
    #[test]
    fn ranks_and_cycles_agree_with_a_vector() {
        let mut order = JoinOrder::new();
        let mut model: Vec<u32> = Vec::new();
        let mut slots = std::collections::HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for member in 0..4000_u32 {
            if next() % 3 == 0 && !model.is_empty() {
                let at = (next() % model.len() as u64) as usize;
                let gone = model.remove(at);
                assert_eq!(order.remove(slots[&gone]), gone);
                order.compact_if_sparse(|member, slot| {
                    slots.insert(member, slot);
                });
            } else {
                slots.insert(member, order.push(member));
                model.push(member);
            }
            assert_eq!(order.len(), model.len());
            if model.is_empty() {
                continue;
            }
            let rank = (next() % model.len() as u64) as usize;
            let first = order.slot_of_rank(rank);
            assert_eq!(order.get(first), Some(model[rank]));
            let cycled: Vec<u32> = order.cycle_from(first).map(|(_, m)| m).collect();
            let expected: Vec<u32> = model[rank..]
                .iter()
                .chain(&model[..rank])
                .copied()
                .collect();
            assert_eq!(cycled, expected);
        }
    }
}
