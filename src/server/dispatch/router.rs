//! Routing the engine's effects (replies, grants, pushes, evictions) into the connections'
//! outputs, with the output limits and the accounting that go with them.

use super::*;
use crate::engine::signal::SubscriptionLimit;

/// Splits the dispatcher into the engine and a router over the connections, so the engine can
/// be called with the router as its outbox.
pub(super) fn split<'t, T>(
    engine: &'t mut Engine,
    queues: &'t mut Queues,
    conns: &'t mut Connections<T>,
    now: Millis,
) -> (&'t mut Engine, Router<'t, T>) {
    (engine, Router { conns, queues, now })
}

/// Moves the pushes held back during a `stats` listing into the output, after its line.
pub(super) fn release_held_pushes<T>(q: &mut Queues, conn: &mut Connection<T>) {
    let Some(mut held_pushes) = conn.held_pushes.take() else {
        return;
    };
    let held = held_pushes.len();
    conn.output.append_output(&mut held_pushes, &mut q.pool);
    conn.push_bytes += held;
    q.push_bytes += held;
    q.pushes.push(conn);
}

/// A waiting request was answered: the next request may be processed, and its first line is
/// read from now on.
pub(super) fn end_wait<T>(ready: &mut IdQueue, conn: &mut Connection<T>, now: Millis) {
    if conn.phase == Phase::Waiting {
        conn.phase = Phase::Open;
        conn.line_started = now;
        ready.push(conn);
    }
}

/// Marks `conn` as having a response to write and applies the soft limit.
pub(super) fn after_output<T>(q: &mut Queues, conn: &mut Connection<T>, open: usize) {
    q.dirty.push(conn);
    pause_if_backlogged(q, conn, open);
}

/// Stops processing `conn`'s requests while its unsent output is at the soft limit (or its
/// fair share of the server's total, while that is exceeded).
fn pause_if_backlogged<T>(q: &Queues, conn: &mut Connection<T>, open: usize) {
    let len = conn.output.len();
    // Below the smallest limit either could be: the request path's one comparison.
    if len >= q.limits.soft_output.min(MIN_OUTPUT_SHARE) && len >= q.soft_limit(open) {
        conn.paused = true;
    }
}

/// The least a connection's fair share of `--max-total-output` can be, however many
/// connections there are: a connection holding less is never paused or dropped for the total.
const MIN_OUTPUT_SHARE: usize = 64 * 1024;

impl Queues {
    /// Bytes of output the server holds: owned bytes plus shared push lines, each counted once.
    pub(super) fn output_memory(&self) -> usize {
        self.owned_output + self.line_gauge.bytes()
    }

    /// `base`, or the fair share of `--max-total-output` among `open` connections if that is
    /// less and the total is exceeded.
    pub(super) fn output_limit(&self, base: usize, open: usize) -> usize {
        if self.output_memory() <= self.limits.total_output {
            return base;
        }
        let share = (self.limits.total_output / open.max(1)).max(MIN_OUTPUT_SHARE);
        base.min(share)
    }

    /// Pending output at which a connection's requests pause.
    pub(super) fn soft_limit(&self, open: usize) -> usize {
        self.output_limit(self.limits.soft_output, open)
    }
}

/// Routes engine effects into connection buffers.
pub(super) struct Router<'t, T> {
    conns: &'t mut Connections<T>,
    queues: &'t mut Queues,
    now: Millis,
}

/// A rate-limited warning that a limit refused `conn`'s request with `status`.
#[cold]
fn warn_at_limit<T>(q: &mut Queues, conn: &Connection<T>, status: Status, now: Millis) {
    let (kind, flag) = match status {
        Status::ErrorMaxLocks => (WarnKind::MaxLocks, "--max-locks"),
        _ => (WarnKind::MaxWaiters, "--max-waiters"),
    };
    warn_refused(q, conn, kind, flag, now);
}

/// A rate-limited warning that the limit `flag` (of warning kind `kind`) refused `conn`'s
/// request.
#[cold]
fn warn_refused<T>(q: &mut Queues, conn: &Connection<T>, kind: WarnKind, flag: &str, now: Millis) {
    if let Some(suppressed) = q.warnings.admit(kind, now) {
        warn!(
            "conn {} {}: refused, {flag} reached{suppressed}",
            conn.serial, conn.peer
        );
    }
}

/// The connection `client` names if it can still take output; counts effects for departed ids.
fn open_connection<'t, T>(
    conns: &'t mut Connections<T>,
    counters: &mut Counters,
    client: ClientId,
) -> Option<&'t mut Connection<T>> {
    match conns.get(client) {
        Some(conn) if conn.close_reason().is_none() => Some(conn),
        Some(_) => None,
        None => {
            counters.stale_ids += 1;
            None
        }
    }
}

impl<T> Outbox for Router<'_, T> {
    fn reply(&mut self, client: ClientId, reply: Response) {
        let open = self.conns.len();
        let q = &mut *self.queues;
        let Some(conn) = open_connection(self.conns, &mut q.counters, client) else {
            return;
        };
        let buf = conn.output.append(&mut q.pool);
        let before = buf.len();
        let status = response::encode(&reply, buf);
        if log::log_enabled!(log::Level::Debug) {
            let line = words::response(&buf[before..]);
            debug!("conn {} {}: {line}", conn.serial, conn.peer);
        }
        q.owned_output += buf.len() - before;
        q.counters.responses[status as usize] += 1;
        if matches!(status, Status::ErrorMaxLocks | Status::ErrorMaxWaiters) {
            warn_at_limit(q, conn, status, self.now);
        }
        end_wait(&mut q.ready, conn, self.now);
        after_output(q, conn, open);
    }

    fn peer(&self, client: ClientId) -> Option<String> {
        self.conns.get_ref(client).map(|conn| conn.peer.to_string())
    }

    fn listen_refused(&mut self, client: ClientId, limit: SubscriptionLimit) {
        let q = &mut *self.queues;
        if let Some(conn) = open_connection(self.conns, &mut q.counters, client) {
            warn_refused(q, conn, WarnKind::MaxSubscriptions, limit.flag(), self.now);
        }
    }

    fn has_room(&mut self, client: ClientId, line_len: usize) -> bool {
        let open = self.conns.len();
        let q = &mut *self.queues;
        open_connection(self.conns, &mut q.counters, client).is_some_and(|conn| {
            let after = conn.output.len() + conn.held_len() + line_len;
            after <= q.limits.hard_output.min(MIN_OUTPUT_SHARE)
                || after <= q.output_limit(q.limits.hard_output, open)
        })
    }

    fn push(&mut self, client: ClientId, push: &Push<'_>) {
        let open = self.conns.len();
        let q = &mut *self.queues;
        let Some(conn) = open_connection(self.conns, &mut q.counters, client) else {
            return;
        };
        if let Some(held) = conn.held_pushes.as_mut() {
            q.owned_output += held.append_push(push, &mut q.pool);
            return;
        }
        q.owned_output += conn.output.append_push(push, &mut q.pool);
        conn.push_bytes += push.len();
        q.push_bytes += push.len();
        q.pushes.push(conn);
        pause_if_backlogged(q, conn, open);
    }

    fn evict(&mut self, client: ClientId) {
        let q = &mut *self.queues;
        let Some(conn) = open_connection(self.conns, &mut q.counters, client) else {
            return;
        };
        if let Some(suppressed) = q.warnings.admit(WarnKind::SlowConsumer, self.now) {
            warn!(
                "conn {} {}: slow consumer ({} bytes of output pending), disconnecting{suppressed}",
                conn.serial,
                conn.peer,
                conn.output.len()
            );
        }
        conn.begin_close(CloseReason::SlowConsumer);
        q.closing.push(client);
        q.counters.slow_consumers += 1;
    }
}
