//! `stats` listings, written a step at a time while their requesters read, and `info`, answered
//! at once from the same sources as the monitoring endpoint.

use super::*;

/// A `stats` listing in progress.
#[derive(Debug)]
pub(super) struct StatsJob {
    client: ClientId,
    cursor: StatsCursor,
    /// The next piece of the response line, moved into the connection's output after each step.
    line: Vec<u8>,
}

/// Where a `stats` listing stands after [`Dispatcher::step_stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// It can take another step.
    Going,
    /// It waits for its requester to read what it was sent.
    Parked,
    /// Answered, or its requester has gone.
    Over,
}

impl<T: Stream> Dispatcher<T> {
    /// Continues the `stats` listings in progress, each in turn, with the steps left in this
    /// turn, answering those that finish. A listing whose requester has not read what it was
    /// sent waits without taking a step.
    pub fn continue_stats(&mut self, now: Millis) {
        self.stats_runnable = false;
        for _ in 0..self.stats_jobs.len() {
            let Some(mut job) = self.stats_jobs.pop_front() else {
                return;
            };
            match self.step_stats(now, &mut job) {
                Listing::Over => {}
                Listing::Going => {
                    self.stats_jobs.push_back(job);
                    self.stats_runnable = true;
                }
                Listing::Parked => self.stats_jobs.push_back(job),
            }
        }
    }

    /// One step of a listing, if the turn has one left and the requester's output is below the
    /// soft limit, moved into that output; the line's end answers the request.
    fn step_stats(&mut self, now: Millis, job: &mut StatsJob) -> Listing {
        let open = self.conns.len();
        let soft_output = self.queues.soft_limit(open);
        match self.conns.get(job.client) {
            Some(conn) if conn.close_reason().is_none() => {
                if conn.output.len() >= soft_output {
                    return Listing::Parked;
                }
                if self.stats_steps == 0 {
                    return Listing::Going;
                }
            }
            _ => return Listing::Over,
        }
        self.stats_steps -= 1;
        let done = self
            .engine
            .write_stats_step(now, &mut job.cursor, &mut job.line, STATS_STEP);
        let Some(conn) = self.conns.get(job.client) else {
            return Listing::Over;
        };
        let q = &mut self.queues;
        if done {
            response::end_json(&mut job.line);
        }
        // Handed over rather than copied when the output is empty.
        q.owned_output += job.line.len();
        conn.output.append_vec(&mut job.line, &mut q.pool);
        if done {
            release_held_pushes(q, conn);
            end_wait(&mut q.ready, conn, now);
        } else {
            // The line is open: pushes wait until it ends.
            conn.held_pushes.get_or_insert_default();
        }
        after_output(q, conn, open);
        if done { Listing::Over } else { Listing::Going }
    }

    /// What reports read, with the monitoring endpoint's `http` counters.
    pub(in crate::server) fn sources(&self, now: Millis, http: MonitorCounters) -> Sources<'_, T> {
        Sources {
            engine: &self.engine,
            conns: &self.conns,
            counters: &self.queues.counters,
            figures: &self.figures,
            http,
            now,
        }
    }

    /// `info`: one `ok <json>` line of counters, gauges and the most contended keys. Bounded
    /// work (see `report.rs`), so it is answered at once, unlike a `stats` listing.
    pub(super) fn info(&mut self, id: ClientId, now: Millis) {
        let info = self.sources(now, MonitorCounters::default()).info();
        let mut line = Vec::with_capacity(4096);
        response::begin_json(&mut line);
        // Plain structs of numbers and strings always serialise.
        let _ = serde_json::to_writer(&mut line, &info);
        response::end_json(&mut line);
        self.queues.counters.responses[Status::Ok as usize] += 1;
        let open = self.conns.len();
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let q = &mut self.queues;
        q.owned_output += line.len();
        conn.output.append_vec(&mut line, &mut q.pool);
        after_output(q, conn, open);
    }

    /// Starts a `stats` listing; a small one is answered at once, a large one over several
    /// turns while the requester waits.
    pub(super) fn start_stats(&mut self, id: ClientId, now: Millis) {
        // The listing is written in steps, not through `Router::reply`: count its `ok` here.
        self.queues.counters.responses[Status::Ok as usize] += 1;
        let figures = ServerFigures {
            connections: self.conns.len() as u64,
            slow_consumers_disconnected: self.queues.counters.slow_consumers,
        };
        let mut job = StatsJob {
            client: id,
            cursor: StatsCursor::new(figures),
            line: Vec::new(),
        };
        response::begin_json(&mut job.line);
        if let Some(conn) = self.conns.get(id) {
            conn.phase = Phase::Waiting;
        }
        if self.step_stats(now, &mut job) != Listing::Over {
            self.stats_jobs.push_back(job);
            self.stats_runnable = true;
        }
    }
}
