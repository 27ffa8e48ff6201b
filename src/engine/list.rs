//! Doubly linked lists threaded through slab entries by `u32` index.
//!
//! The engine keeps several orders at once over the same entries (a lease sits in its resource's
//! holder list and in its owner's lease list; a waiter in its resource's FIFO queue and in its
//! client's waiter list). Storing `prev`/`next` indices inside the entries makes insertion and
//! removal from the middle O(1) without `unsafe` and without allocating; a [`List`] only holds the
//! ends and the length. The caller says which [`Link`] of an entry a list uses through an accessor
//! function, so one entry can belong to several lists.

use crate::slots::Slots;

/// Index value meaning "no entry".
pub const NIL: u32 = u32::MAX;

/// The neighbours of one entry in one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    prev: u32,
    next: u32,
}

impl Link {
    /// A link that is in no list.
    pub const DETACHED: Link = Link {
        prev: NIL,
        next: NIL,
    };

    /// Whether the entry has no neighbours: it is in no list, or alone in one (only the list's
    /// head tells which).
    pub fn is_detached(&self) -> bool {
        *self == Link::DETACHED
    }

    /// The next entry, if any; for readers that hold only a shared borrow of the slab.
    pub fn next(&self) -> Option<u32> {
        (self.next != NIL).then_some(self.next)
    }

    /// The previous entry, if any; for readers that hold only a shared borrow of the slab.
    pub fn prev(&self) -> Option<u32> {
        (self.prev != NIL).then_some(self.prev)
    }
}

/// The two ends of a list and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// Selects which link of a slab entry a list runs through.
pub type LinkOf<T> = fn(&mut T) -> &mut Link;

impl List {
    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first entry, if any.
    pub fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends `index` (which must be in no list through `link`).
    pub fn push_back<T>(&mut self, slab: &mut Slots<T>, index: u32, link: LinkOf<T>) {
        let old_tail = self.tail;
        *link(&mut slab[index as usize]) = Link {
            prev: old_tail,
            next: NIL,
        };
        if old_tail == NIL {
            self.head = index;
        } else {
            link(&mut slab[old_tail as usize]).next = index;
        }
        self.tail = index;
        self.len += 1;
    }

    /// Unlinks `index` (which must be in this list through `link`).
    pub fn remove<T>(&mut self, slab: &mut Slots<T>, index: u32, link: LinkOf<T>) {
        let Link { prev, next } =
            std::mem::replace(link(&mut slab[index as usize]), Link::DETACHED);
        if prev == NIL {
            debug_assert_eq!(self.head, index, "entry without prev is not the head");
            self.head = next;
        } else {
            link(&mut slab[prev as usize]).next = next;
        }
        if next == NIL {
            debug_assert_eq!(self.tail, index, "entry without next is not the tail");
            self.tail = prev;
        } else {
            link(&mut slab[next as usize]).prev = prev;
        }
        self.len -= 1;
    }

    /// Moves every entry of `other` to the end of this list in O(1), leaving `other` empty.
    /// Both lists must run through `link`.
    pub fn append<T>(&mut self, other: &mut List, slab: &mut Slots<T>, link: LinkOf<T>) {
        let other = std::mem::take(other);
        if other.is_empty() {
            return;
        }
        if self.tail == NIL {
            self.head = other.head;
        } else {
            link(&mut slab[self.tail as usize]).next = other.head;
            link(&mut slab[other.head as usize]).prev = self.tail;
        }
        self.tail = other.tail;
        self.len += other.len;
    }

    /// The entry after `index` in the list `link` selects.
    pub fn next_of<T>(slab: &mut Slots<T>, index: u32, link: LinkOf<T>) -> Option<u32> {
        let next = link(&mut slab[index as usize]).next;
        (next != NIL).then_some(next)
    }

    /// Collects the indices in order into `out` (cleared first). Used where the caller must
    /// mutate the slab while visiting, and by invariant checks.
    pub fn collect_into<T>(&self, slab: &mut Slots<T>, link: LinkOf<T>, out: &mut Vec<u32>) {
        out.clear();
        let mut cursor = self.head();
        while let Some(index) = cursor {
            out.push(index);
            cursor = List::next_of(slab, index, link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        a: Link,
        b: Link,
    }

    fn link_a(item: &mut Item) -> &mut Link {
        &mut item.a
    }

    fn link_b(item: &mut Item) -> &mut Link {
        &mut item.b
    }

    fn contents(list: &List, slab: &mut Slots<Item>, link: LinkOf<Item>) -> Vec<u32> {
        let mut out = Vec::new();
        list.collect_into(slab, link, &mut out);
        out
    }

    #[test]
    fn entries_live_in_two_lists_and_leave_from_anywhere() {
        let mut slab = Slots::new();
        let ids: Vec<u32> = (0..4)
            .map(|_| {
                slab.insert(Item {
                    a: Link::DETACHED,
                    b: Link::DETACHED,
                }) as u32
            })
            .collect();
        let (mut first, mut second) = (List::default(), List::default());
        for &id in &ids {
            first.push_back(&mut slab, id, link_a);
        }
        for &id in ids.iter().rev() {
            second.push_back(&mut slab, id, link_b);
        }
        first.remove(&mut slab, ids[2], link_a);
        second.remove(&mut slab, ids[0], link_b);
        assert_eq!(contents(&first, &mut slab, link_a), vec![0, 1, 3]);
        assert_eq!(contents(&second, &mut slab, link_b), vec![3, 2, 1]);
        first.remove(&mut slab, ids[0], link_a);
        first.remove(&mut slab, ids[3], link_a);
        assert_eq!(contents(&first, &mut slab, link_a), vec![1]);
        assert_eq!(first.head(), Some(1));
        first.remove(&mut slab, ids[1], link_a);
        assert!(first.is_empty());
        assert_eq!(first, List::default());
        assert_eq!(second.len(), 3);
    }
}
