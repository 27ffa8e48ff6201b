//! The lock safety extensions beyond `check`: `q`/`sq` (a key's queue) and `evict`/`sevict`
//! (an admin ends leases now), as [`Connection`] methods. A 1.x server answers both `error`
//! ([`Error::Rejected`]).

use std::time::Duration;

use serde::Serialize;

use super::Kind;
use super::conn::{Connection, Exchange, check_key, parse_count, parse_number};
use super::error::{Error, Result};
use crate::protocol::Request;
use crate::protocol::request::{Evict, EvictTarget, Queue};

/// A key's queue, as `q` / `sq` describe it (a dflockd extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QueueState {
    /// Current holders.
    pub holders: u64,
    /// The key's capacity: 1 for a lock; for a semaphore its limit, 0 if none of that name
    /// exists.
    pub limit: u64,
    /// Waiters in its queue.
    pub waiters: u64,
    /// The asking connection's 1-based place among the waiters, 0 if it does not wait there
    /// (only a two-phase waiter can ask: see [`Connection::enqueue`]).
    pub position: u64,
}

impl Connection {
    /// The holders, capacity and waiters of `key`, and this connection's place in its queue.
    /// Asking changes nothing. A semaphore's limit in `kind` is not sent: one that does not
    /// exist reports limit 0.
    pub fn queue(&mut self, kind: Kind, key: &str) -> Result<QueueState> {
        queue(self, kind, key)
    }

    /// Ends now the leases of `key` that `target` names (a token, a fence, or
    /// [`EvictTarget::All`]) and returns how many; 0 when none matched. The freed capacity goes
    /// to the queue in FIFO order, as after a release. Only a connection authenticated with the
    /// server's admin token may evict: any other gets [`Error::Rejected`]. A dflockd extension
    /// (`evict` / `sevict`).
    pub fn evict(&mut self, kind: Kind, key: &str, target: impl Into<EvictTarget>) -> Result<u64> {
        evict(self, kind, key, target.into())
    }
}

/// `q` / `sq`.
fn queue(ex: &mut impl Exchange, kind: Kind, key: &str) -> Result<QueueState> {
    check_key("a key", key)?;
    let request = Request::Queue(Queue {
        ns: kind.namespace(),
        key: key.as_bytes(),
        limit: None,
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    parse_queue(&line).ok_or_else(|| Error::unexpected(request.command().name(), &line))
}

/// `ok <holders> <limit> <waiters> <position>` with exactly these fields.
fn parse_queue(line: &str) -> Option<QueueState> {
    let mut fields = line.strip_prefix("ok ")?.split(' ').map(parse_number);
    let state = QueueState {
        holders: fields.next()??,
        limit: fields.next()??,
        waiters: fields.next()??,
        position: fields.next()??,
    };
    fields.next().is_none().then_some(state)
}

/// `evict` / `sevict`: how many leases ended.
fn evict(ex: &mut impl Exchange, kind: Kind, key: &str, target: EvictTarget) -> Result<u64> {
    check_key("a key", key)?;
    let request = Request::Evict(Evict {
        ns: kind.namespace(),
        key: key.as_bytes(),
        target,
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    parse_count(request.command().name(), &line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_answers_parse_only_with_four_numbers() {
        assert_eq!(
            parse_queue("ok 1 3 12 0"),
            Some(QueueState {
                holders: 1,
                limit: 3,
                waiters: 12,
                position: 0
            })
        );
        for bad in [
            "ok 1 3 12",
            "ok 1 3 12 0 5",
            "ok 1 x 12 0",
            "ok",
            "error",
            "ok 1  3 12",
        ] {
            assert_eq!(parse_queue(bad), None, "{bad}");
        }
    }
}
