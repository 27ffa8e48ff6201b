//! Work queues of connections, each connection at most once per queue.
//!
//! A queue's membership is a bit in the connection ([`Marks`]), so that "already queued?" costs
//! no search, and [`IdQueue`] is the only code that sets or clears it: a bit is set exactly while
//! the connection's id is on that queue. A connection that closes while queued leaves a stale id
//! behind, which [`IdQueue::pop`] reports as gone (the generation check of
//! [`Connections::get`]).

use std::collections::VecDeque;

use crate::engine::ClientId;

use super::connection::{Connection, Connections};

/// One queue's bit in [`Marks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(u8);

/// Connections that may be able to make progress (input to read or process).
pub const READY: Mark = Mark(1);
/// Connections with a new response to write this turn.
pub const DIRTY: Mark = Mark(1 << 1);
/// Connections with new signal pushes to write (a bounded number per turn).
pub const PUSHES: Mark = Mark(1 << 2);
/// Connections holding back a `signal` request until the fan-out backlog drains.
pub const FANOUT: Mark = Mark(1 << 3);
/// Connections to write again next turn: the turn's write quota cut their last write short while
/// the stream still had room.
pub const WRITE_BACKLOG: Mark = Mark(1 << 4);

/// The queues a connection is on, one bit per queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks(u8);

impl Marks {
    /// Whether the connection is on the queue of `mark`.
    #[inline]
    pub fn contains(self, mark: Mark) -> bool {
        self.0 & mark.0 != 0
    }
}

/// A first-in first-out queue of connections; see the module documentation.
#[derive(Debug)]
pub struct IdQueue {
    ids: VecDeque<ClientId>,
    mark: Mark,
}

impl IdQueue {
    /// An empty queue whose membership is `mark`.
    pub const fn new(mark: Mark) -> IdQueue {
        IdQueue {
            ids: VecDeque::new(),
            mark,
        }
    }

    /// Number of ids queued, stale ones included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends `conn` unless it is queued already.
    #[inline]
    pub fn push<T>(&mut self, conn: &mut Connection<T>) {
        if !conn.marks.contains(self.mark) {
            conn.marks.0 |= self.mark.0;
            self.ids.push_back(conn.id);
        }
    }

    /// Takes the oldest id, with its connection (now off this queue) unless that has gone.
    #[inline]
    pub fn pop<'c, T>(
        &mut self,
        conns: &'c mut Connections<T>,
    ) -> Option<(ClientId, Option<&'c mut Connection<T>>)> {
        let id = self.ids.pop_front()?;
        let mut conn = conns.get(id);
        if let Some(conn) = conn.as_mut() {
            conn.marks.0 &= !self.mark.0;
        }
        Some((id, conn))
    }
}
