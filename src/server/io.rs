//! The connections' byte streams: readiness in, reads into the request path, writes of what it
//! queued, deadlines, and each connection's close from the close list to its removal.
//!
//! The owner of the streams (the event loop, or a test over in-memory streams) feeds inputs and
//! drains effects:
//! - in: [`Dispatcher::handle_readiness`] for readiness events, [`Dispatcher::expire_io`] for
//!   due deadlines, and the turn's phases [`Dispatcher::serve_ready`] (reads) and
//!   [`Dispatcher::write_and_close`] (writes and closes);
//! - out: [`Dispatcher::take_removed`], the connections whose stream the owner must now release
//!   (for a socket: deregister it), and [`Dispatcher::next_deadline`], when to come back.
//!
//! A close goes through the stages of [`CloseStage`]: the request path puts a connection on the
//! close list ([`CloseStage::Pending`]); [`Dispatcher::write_and_close`] releases its engine state
//! and either removes it at once or, if the reason delivers pending output, flushes it
//! ([`CloseStage::Flushing`], not before the `error_auth` delay), sends FIN and lingers
//! ([`CloseStage::Lingering`]) until the peer's EOF or [`LINGER_MS`].

use std::io::IoSlice;

use log::{debug, info, warn};

use super::connection::{
    AUTH_FAILURE_DELAY_MS, CloseReason, CloseStage, Connection, LINGER_MS, Phase,
};
use super::dispatch::{Dispatcher, Queues};
use super::transport::{ReadOutcome, Stream, WRITE_SLICES, WriteOutcome};
use super::warnings::WarnKind;
use crate::budget::{
    CLOSES_PER_TURN, EXPIRE_BUDGET, HANDSHAKES_PER_TURN, PUSH_WRITES_PER_TURN, READS_PER_TURN,
    TRIM_BUDGET, WRITE_BYTES_PER_TURN,
};
use crate::clock::Millis;
use crate::engine::ClientId;

/// What a readiness event reported for a connection's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read may return data, EOF or an error.
    pub readable: bool,
    /// The read side is closed (or failed): a short read proves nothing then.
    pub read_closed: bool,
    /// A write may make progress.
    pub writable: bool,
}

impl<T: Stream> Dispatcher<T> {
    /// A readiness event for `id`'s stream (edge-triggered: each transition is reported once).
    pub fn handle_readiness(&mut self, id: ClientId, ready: Readiness) {
        let Some(conn) = self.conns.get(id) else {
            // An event for a connection that closed earlier in this batch or whose slot was
            // reused: the generation does not match.
            self.queues.counters.stale_ids += 1;
            return;
        };
        if ready.readable {
            conn.read_ready = true;
            conn.read_closed_hint |= ready.read_closed;
            self.queues.ready.push(conn);
        }
        if ready.writable {
            conn.write_ready = true;
            if conn.has_pending_output() {
                self.queues.to_flush.push(id);
            }
        }
    }

    /// The nearest deadline of the engine or of a connection, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        Millis::earliest(self.engine.next_deadline(), self.io_timers.next_deadline())
    }

    /// Whether the owner should poll again without sleeping (besides engine work left due):
    /// requests or reads queued, output to write, closes to finish or memory to give back.
    pub fn is_busy(&self) -> bool {
        self.ready_len() > 0
            || self.has_pending_work()
            || !self.queues.write_backlog.is_empty()
            || self.conns.wants_trim()
            || self.io_timers.wants_trim()
    }

    /// Gives back memory of the connection table and the I/O timers after a spike, within the
    /// turn's [`TRIM_BUDGET`].
    pub fn trim(&mut self) {
        let left = self.conns.trim(TRIM_BUDGET);
        self.io_timers.trim(left);
    }

    /// The connections removed since the last call, for the owner to release their streams.
    pub fn take_removed(&mut self) -> std::vec::Drain<'_, Connection<T>> {
        self.removed.drain(..)
    }

    /// Handles the connections' due deadlines, at most [`EXPIRE_BUDGET`], so that no burst of
    /// deadlines (or a timer re-armed in the past) can keep the loop from serving anyone else.
    pub fn expire_io(&mut self, now: Millis) {
        for _ in 0..EXPIRE_BUDGET {
            let Some((timer, slot)) = self.io_timers.poll(now) else {
                break;
            };
            // A connection cancels its timer when it re-arms or goes, so the slot's connection
            // armed it; the handle check holds even if that ever changed.
            if let Some(id) = self.conns.with_timer(slot, timer).map(|conn| conn.id) {
                self.on_timer(id, now);
            }
        }
    }

    fn on_timer(&mut self, id: ClientId, now: Millis) {
        let limits = self.limits();
        let (read_timeout, write_timeout) = (limits.read_timeout_ms, limits.write_timeout_ms);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        conn.timer = None;
        let write_expired = conn
            .write_stall()
            .is_some_and(|since| write_timeout > 0 && since.plus_ms(write_timeout) <= now)
            && conn.has_pending_output();
        let handshake_expired = conn.handshake_deadline <= now && conn.stream.is_handshaking();
        if handshake_expired {
            let why = "TLS handshake timed out";
            note_handshake_failure(&mut self.queues, conn.serial, &conn.peer, why, now);
        }
        if write_expired || handshake_expired {
            let what = if write_expired {
                "write"
            } else {
                "TLS handshake"
            };
            debug!(
                "conn {} {}: {what} deadline expired",
                conn.serial, conn.peer
            );
            if conn.close_started() {
                // A graceful close that cannot deliver its last words: give up on them.
                self.remove(id);
                return;
            }
            let reason = if write_expired {
                CloseReason::WriteFailed
            } else {
                CloseReason::PeerGone
            };
            self.close(id, reason);
        } else if conn.close_started() {
            self.advance_close(id, now);
        } else if conn.read_deadline(read_timeout).is_some_and(|at| at <= now) {
            self.read_timed_out(id, now);
        }
        self.refresh_timer(id);
    }

    /// Serves the connections queued at the start of this phase, at most [`READS_PER_TURN`];
    /// ones re-queued while serving wait for the next turn, which bounds the work per turn.
    pub fn serve_ready(&mut self, now: Millis) {
        let mut handshakes = HANDSHAKES_PER_TURN;
        for _ in 0..self.ready_len().min(READS_PER_TURN) {
            if self.turn_is_full() {
                // The rest stay queued, so the next poll does not sleep.
                break;
            }
            let Some(id) = self.next_ready() else {
                break;
            };
            self.serve(id, now, &mut handshakes);
            self.refresh_timer(id);
        }
    }

    /// One read (if the stream may have data and there is room for it) and the processing of
    /// whatever requests are complete. A read that would advance a TLS handshake takes one of
    /// the turn's `handshakes`; with none left, the connection is served next turn.
    fn serve(&mut self, id: ClientId, now: Millis, handshakes: &mut usize) {
        let room = self.input_room(id);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.read_ready && conn.stream.is_handshaking() {
            if *handshakes == 0 {
                // Still readable, so back on the ready queue, which keeps the next poll from
                // sleeping.
                self.queues.ready.push(conn);
                return;
            }
            *handshakes -= 1;
        }
        if conn.close_reason().is_some() {
            self.discard_input(id, now);
            return;
        }
        if !conn.read_ready || room == 0 {
            self.resume(id, now);
            // Processing may have made room while the stream still holds data it will not
            // announce again (edge-triggered): come back for it next turn.
            let readable = self.conns.get(id).is_some_and(|c| c.read_ready);
            if readable && self.input_room(id) > 0 {
                self.schedule(id);
            }
            return;
        }
        let want = room.min(self.scratch.len());
        let trust_short = !conn.read_closed_hint;
        let outcome = conn.stream.read(&mut self.scratch[..want], trust_short);
        if conn.stream.has_pending_output() {
            // TLS records produced while reading (a handshake flight, an alert) that the socket
            // did not take yet.
            self.queues.to_flush.push(id);
        }
        match outcome {
            ReadOutcome::Data { len, drained } => {
                self.queues.counters.bytes_read += len as u64;
                conn.read_ready = !drained;
                conn.note_handshake_progress();
                let scratch = std::mem::take(&mut self.scratch);
                self.receive(id, now, &scratch[..len]);
                self.scratch = scratch;
                if !drained {
                    // More may be waiting: come back next turn, after everyone else.
                    self.schedule(id);
                }
            }
            ReadOutcome::WouldBlock => {
                conn.read_ready = false;
                conn.note_handshake_progress();
                self.resume(id, now);
            }
            ReadOutcome::Eof => {
                conn.read_ready = false;
                self.resume(id, now);
                self.peer_finished(id, now);
            }
            ReadOutcome::Failed(e) => {
                debug!("conn {} {}: read failed: {e}", conn.serial, conn.peer);
                if conn.stream.is_handshaking() {
                    let why = format!("TLS handshake failed: {e}");
                    note_handshake_failure(&mut self.queues, conn.serial, &conn.peer, &why, now);
                }
                conn.read_ready = false;
                self.close(id, CloseReason::PeerGone);
            }
        }
    }

    /// Reads and drops input of a closing connection; EOF ends a lingering close.
    fn discard_input(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if !conn.read_ready {
            return;
        }
        match conn.stream.read(&mut self.scratch, false) {
            ReadOutcome::Data { .. } => self.queues.ready.push(conn),
            ReadOutcome::WouldBlock => conn.read_ready = false,
            ReadOutcome::Eof | ReadOutcome::Failed(_) => {
                conn.read_ready = false;
                conn.eof = true;
                if matches!(
                    conn.phase,
                    Phase::Closing {
                        stage: CloseStage::Lingering { .. },
                        ..
                    }
                ) {
                    self.remove(id);
                } else {
                    self.advance_close(id, now);
                }
            }
        }
    }

    /// Writes every connection that got a response this turn, those left with output by the
    /// last turn's write quota and at most [`PUSH_WRITES_PER_TURN`] of those with signal pushes
    /// (one write call each, unless the stream takes only part), then starts at most
    /// [`CLOSES_PER_TURN`] closes. Closing releases locks, which may grant them to others, so
    /// the two repeat until nothing is left.
    pub fn write_and_close(&mut self, now: Millis) {
        let mut push_budget = PUSH_WRITES_PER_TURN;
        let mut closes = CLOSES_PER_TURN;
        let q = &mut self.queues;
        while let Some((id, conn)) = q.write_backlog.pop(&mut self.conns) {
            if conn.is_some() {
                q.to_flush.push(id);
            }
        }
        loop {
            let mut batch = std::mem::take(&mut self.queues.to_flush);
            self.append_dirty(&mut batch);
            self.take_pushes(&mut batch, std::mem::take(&mut push_budget));
            for &id in &batch {
                self.flush(id, now);
            }
            batch.clear();
            // Closes started below may queue more ids in `to_flush`; keep them.
            batch.append(&mut self.queues.to_flush);
            self.queues.to_flush = batch;
            let mut closed_any = false;
            while closes > 0 {
                let Some(id) = self.next_closing() else {
                    break;
                };
                closes -= 1;
                closed_any = true;
                self.start_close(id, now);
            }
            if !closed_any && !self.has_dirty() && self.queues.to_flush.is_empty() {
                return;
            }
        }
    }

    /// One write pass over `id`'s output, at most [`WRITE_BYTES_PER_TURN`].
    fn flush(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let mut written = 0;
        let mut failure = None;
        let output = &conn.output;
        let quota = output.len().min(WRITE_BYTES_PER_TURN);
        while conn.write_ready && written < quota {
            let (outcome, offered) = match output.contiguous() {
                Some(bytes) => (conn.stream.write(&bytes[written..quota]), quota - written),
                None => {
                    let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                    let filled = output.gather(written, quota - written, &mut slices);
                    let offered = slices[..filled].iter().map(|s| s.len()).sum();
                    let slices = &mut slices[..filled];
                    (conn.stream.write_vectored(slices), offered)
                }
            };
            match outcome {
                WriteOutcome::Wrote(n) => {
                    written += n;
                    // A short write means the socket buffer is full (for TLS: the transport hit
                    // WouldBlock); edge-triggered epoll reports when it drains, so trying again
                    // now would only cost a system call that returns WouldBlock.
                    if n < offered {
                        conn.write_ready = false;
                    }
                }
                WriteOutcome::WouldBlock => conn.write_ready = false,
                WriteOutcome::Failed(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && conn.write_ready && conn.stream.has_pending_output() {
            match conn.stream.flush_pending() {
                WriteOutcome::Wrote(_) => {}
                WriteOutcome::WouldBlock => conn.write_ready = false,
                WriteOutcome::Failed(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            debug!("conn {} {}: write failed: {e}", conn.serial, conn.peer);
            if conn.close_started() {
                // A graceful close whose last words cannot be delivered: nothing is left to do.
                self.remove(id);
            } else {
                self.close(id, CloseReason::WriteFailed);
            }
            return;
        }
        let pending = conn.output.len() > written || conn.stream.has_pending_output();
        if pending && conn.write_ready {
            // No writable edge will come for a stream that still has room: come back next turn.
            self.queues.write_backlog.push(conn);
        }
        match (pending, written > 0) {
            (false, _) => conn.write_stalled_since = Millis::MAX,
            // Progress restarts the write deadline: it bounds a stall, not a slow drain.
            (true, true) => conn.write_stalled_since = now,
            (true, false) => conn.write_stalled_since = conn.write_stalled_since.min(now),
        }
        let close_started = conn.close_started();
        if written > 0 {
            self.wrote(id, now, written);
        }
        if close_started {
            self.advance_close(id, now);
        }
        self.refresh_timer(id);
    }

    /// A connection's turn on the close list came: release its engine state, then close the
    /// stream now or after delivering pending output.
    fn start_close(&mut self, id: ClientId, now: Millis) {
        self.disconnect(id, now);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let reason = conn.close_reason().unwrap_or(CloseReason::PeerGone);
        debug!(
            "conn {} {}: closing: {}",
            conn.serial,
            conn.peer,
            reason.words()
        );
        if !reason.flushes() {
            self.remove(id);
            return;
        }
        let not_before = if reason == CloseReason::AuthFailed {
            now.plus_ms(AUTH_FAILURE_DELAY_MS)
        } else {
            now
        };
        conn.phase = Phase::Closing {
            reason,
            stage: CloseStage::Flushing { not_before },
        };
        if conn.output_len() > 0 {
            self.queues.to_flush.push(id);
        }
        self.advance_close(id, now);
        self.refresh_timer(id);
    }

    /// Moves a started close along: FIN once output is out (and the auth delay passed), then
    /// linger until the peer's EOF or the linger deadline.
    fn advance_close(&mut self, id: ClientId, now: Millis) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let Phase::Closing { reason, stage } = conn.phase else {
            return;
        };
        match stage {
            CloseStage::Flushing { not_before } => {
                if conn.has_pending_output() || now < not_before {
                    return;
                }
                conn.stream.shutdown_write();
                if conn.eof {
                    self.remove(id);
                } else {
                    conn.phase = Phase::Closing {
                        reason,
                        stage: CloseStage::Lingering {
                            until: now.plus_ms(LINGER_MS),
                        },
                    };
                    self.queues.ready.push(conn);
                }
            }
            CloseStage::Lingering { until } if now >= until => self.remove(id),
            _ => {}
        }
    }

    /// Takes a connection out (see [`Dispatcher::drop_connection`]) and hands its stream to the
    /// owner through [`Dispatcher::take_removed`], after a TLS `close_notify`.
    fn remove(&mut self, id: ClientId) {
        let Some(mut conn) = self.drop_connection(id) else {
            return;
        };
        conn.stream.close_notify();
        if self.log_connections {
            let reason = conn.close_reason().map_or("closed", CloseReason::words);
            info!(
                conn = conn.serial,
                peer:% = conn.peer,
                duration_ms = self.turn_started.since(conn.opened),
                reason;
                "connection closed"
            );
        } else {
            debug!("conn {} {}: closed", conn.serial, conn.peer);
        }
        self.removed.push(conn);
    }

    /// Keeps the connection's one I/O timer at or before its nearest deadline. A deadline that
    /// moved later leaves the timer where it is; it fires early and is re-armed.
    #[inline]
    pub(super) fn refresh_timer(&mut self, id: ClientId) {
        let limits = &self.queues.limits;
        let (read_timeout, write_timeout) = (limits.read_timeout_ms, limits.write_timeout_ms);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let wanted = conn.next_deadline(read_timeout, write_timeout);
        // After a request the read deadline only moves later: the armed timer stays (the common
        // case, kept small enough to inline), and the wheel is touched out of line.
        if let (Some((_, at)), Some(deadline)) = (conn.timer, wanted)
            && at <= deadline
        {
            return;
        }
        self.rearm_timer(id, wanted);
    }

    /// Moves `id`'s I/O timer to `wanted` (or cancels it).
    #[inline(never)]
    fn rearm_timer(&mut self, id: ClientId, wanted: Option<Millis>) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if let Some((timer, _)) = conn.timer {
            self.io_timers.cancel(timer);
        }
        conn.timer = wanted.map(|deadline| (self.io_timers.insert(deadline, id.index), deadline));
    }

    /// The shutdown deadline passed: every connection goes at once, graceful closes that are
    /// still flushing or lingering included.
    pub fn force_close_all(&mut self, now: Millis) {
        let ids: Vec<ClientId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            self.close(id, CloseReason::ShutdownDeadline);
            self.disconnect(id, now);
            self.remove(id);
        }
    }
}

/// Counts a failed TLS handshake and warns about it, rate-limited (a peer can fail handshakes
/// at will).
#[cold]
fn note_handshake_failure(
    queues: &mut Queues,
    serial: u64,
    peer: &impl std::fmt::Display,
    why: &str,
    now: Millis,
) {
    queues.counters.tls_handshake_failures += 1;
    if let Some(suppressed) = queues.warnings.admit(WarnKind::TlsHandshake, now) {
        warn!("conn {serial} {peer}: {why}{suppressed}");
    }
}
