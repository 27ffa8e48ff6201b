//! Long-lived connections (lock holders, signal subscribers): one background thread, the
//! *pump*, reads every line the server sends, hands `sig` pushes to the owner and each other
//! line to the oldest outstanding request, sends `ping` when the connection has been idle for a
//! heartbeat interval, and runs the owner's periodic work ([`Hooks`], e.g. lease renewal).
//!
//! Callers on other threads send requests directly, under a write lock that also records where
//! the response must go, so the queue of outstanding requests is always in wire order. The pump
//! never blocks forever: its reads carry a timeout up to the next due work, and closing the
//! session shuts the socket down, which ends the read at once. What the periodic work *is* and
//! what a push *means* belong to the owner, not to this module.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::Signal;
use super::conn::{Connection, Exchange, Incoming, Lines};
use super::error::{Error, Result};
use super::transport::{Socket, Writer};
use crate::protocol::Request;
use crate::protocol::response::encode_request;

/// What the owner of a session does on the pump thread.
pub(crate) trait Hooks: Send + 'static {
    /// When [`Hooks::tick`] should next run, if ever.
    fn due(&self) -> Option<Instant>;
    /// Periodic work, run at or after [`Hooks::due`]; may send requests with
    /// [`Link::send`], whose responses come back through [`Hooks::reply`].
    fn tick(&mut self, now: Instant, link: &Link);
    /// The response to a request this owner sent with [`Link::send`], in sending order.
    fn reply(&mut self, line: &str);
    /// A signal pushed by the server.
    fn push(&mut self, signal: Signal);
    /// The connection is gone; `why` says how. Called once, last.
    fn closed(&mut self, why: &str);
}

/// Where a response goes.
enum Route {
    /// A caller blocked in [`Session::exchange`].
    Caller(SyncSender<Result<String>>),
    /// The owner's [`Hooks::reply`].
    Hooks,
    /// A heartbeat `ping`: nothing to do.
    Heartbeat,
}

/// A request waiting for its response.
struct Pending {
    route: Route,
    sent: Instant,
}

/// Bookkeeping shared by callers and the pump.
struct Queue {
    pending: VecDeque<Pending>,
    /// The last time the server had nothing of ours to do: our last request or its last
    /// response. Its per-line read deadline runs from about then (spec §2.5).
    last_activity: Instant,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// The sending side, shared by callers and the pump.
pub(crate) struct Link {
    writer: Mutex<(Writer, Vec<u8>)>,
    queue: Mutex<Queue>,
    /// A handle on the socket that can shut it down while a writer is blocked.
    socket: Socket,
    io_timeout: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every await point of the code below (no panics
    // between paired updates), so a poisoned lock still holds usable state.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Link {
    /// Sends `request` for the owner's hooks; the response arrives in [`Hooks::reply`].
    pub fn send(&self, request: &Request<'_>) -> Result<()> {
        self.send_routed(request, Route::Hooks)
    }

    fn send_routed(&self, request: &Request<'_>, route: Route) -> Result<()> {
        let mut writer = lock(&self.writer);
        {
            let mut queue = lock(&self.queue);
            if queue.closed.is_some() {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            queue.pending.push_back(Pending { route, sent: now });
            queue.last_activity = now;
        }
        let (writer, out) = &mut *writer;
        out.clear();
        encode_request(request, out);
        writer.send(out).map_err(|e| {
            // The request may be half written: nothing later on this connection can be
            // trusted. The pump sees the shutdown and fails whatever is pending.
            self.shutdown();
            Error::from(e)
        })
    }

    fn shutdown(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// When the pump must act on its own: a heartbeat when idle, or giving up on a silent
    /// server when its own oldest request has waited an I/O timeout.
    fn deadline(&self, heartbeat: Duration) -> Instant {
        let queue = lock(&self.queue);
        match queue.pending.front() {
            None => queue.last_activity + heartbeat,
            // A caller enforces its own (possibly long) wait.
            Some(Pending {
                route: Route::Caller(_),
                ..
            }) => Instant::now() + heartbeat,
            Some(Pending { sent, .. }) => *sent + self.io_timeout,
        }
    }

    /// Marks the connection closed (keeping an earlier reason) and fails every caller still
    /// waiting; returns the reason.
    fn finish(&self, why: String) -> String {
        let (why, pending) = {
            let mut queue = lock(&self.queue);
            let why = queue.closed.get_or_insert(why).clone();
            (why, std::mem::take(&mut queue.pending))
        };
        for entry in pending {
            if let Route::Caller(reply) = entry.route {
                let _ = reply.send(Err(Error::Closed));
            }
        }
        why
    }
}

/// A connection whose lines are read by a background pump thread.
pub(crate) struct Session {
    link: Arc<Link>,
    pump: Option<JoinHandle<()>>,
}

impl Session {
    /// Hands `conn` to a new pump thread running `hooks`, pinging after `heartbeat` of idleness.
    pub fn start(
        conn: Connection,
        io_timeout: Duration,
        heartbeat: Duration,
        hooks: impl Hooks,
    ) -> Result<Session> {
        let (lines, writer) = conn.into_parts();
        let link = Arc::new(Link {
            socket: writer.socket()?,
            writer: Mutex::new((writer, Vec::with_capacity(128))),
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                last_activity: Instant::now(),
                closed: None,
            }),
            io_timeout,
        });
        let pump_link = Arc::clone(&link);
        let pump = thread::Builder::new()
            .name("dflockd-session".into())
            .spawn(move || pump(&pump_link, lines, hooks, heartbeat))?;
        Ok(Session {
            link,
            pump: Some(pump),
        })
    }

    /// Why the connection ended, or `None` while it is open.
    pub fn closed_reason(&self) -> Option<String> {
        lock(&self.link.queue).closed.clone()
    }

    /// Closes the connection and waits for the pump thread to finish.
    pub fn close(&mut self) {
        lock(&self.link.queue)
            .closed
            .get_or_insert_with(|| "closed by this client".to_owned());
        // A writer blocked on a full socket holds the lock; the shutdown below frees it.
        if let Ok(mut writer) = self.link.writer.try_lock() {
            writer.0.close();
        }
        self.link.shutdown();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

impl Exchange for &Session {
    fn exchange(&mut self, request: &Request<'_>, wait: Duration) -> Result<String> {
        let (reply, response) = mpsc::sync_channel(1);
        self.link.send_routed(request, Route::Caller(reply))?;
        match response.recv_timeout(self.link.io_timeout.saturating_add(wait)) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.link.shutdown();
                Err(Error::NoResponse)
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// The pump thread's loop: runs until the connection ends.
fn pump(link: &Link, mut lines: Lines, mut hooks: impl Hooks, heartbeat: Duration) {
    // The last line that answered no request: servers send `error` just before closing a
    // connection for a read timeout or an over-long line.
    let mut unsolicited: Option<String> = None;
    let error = loop {
        let now = Instant::now();
        let deadline = link.deadline(heartbeat);
        if deadline <= now {
            if !lock(&link.queue).pending.is_empty() {
                break Error::NoResponse;
            }
            let _ = link.send_routed(&Request::Ping, Route::Heartbeat);
        }
        if hooks.due().is_some_and(|due| due <= now) {
            hooks.tick(now, link);
        }
        let deadline = link.deadline(heartbeat);
        let wake = hooks.due().map_or(deadline, |due| due.min(deadline));
        if let Err(e) = lines.set_timeout(Some(wake.saturating_duration_since(Instant::now()))) {
            break e.into();
        }
        match lines.next() {
            Ok(Incoming::Push(signal)) => hooks.push(signal),
            Ok(Incoming::Reply(line)) => {
                let entry = {
                    let mut queue = lock(&link.queue);
                    queue.last_activity = Instant::now();
                    queue.pending.pop_front()
                };
                match entry.map(|e| e.route) {
                    Some(Route::Caller(reply)) => {
                        let _ = reply.send(Ok(line));
                    }
                    Some(Route::Hooks) => hooks.reply(&line),
                    Some(Route::Heartbeat) => {}
                    None => unsolicited = Some(line),
                }
            }
            Err(Error::NoResponse) => {}
            Err(e) => break e,
        }
    };
    link.shutdown();
    let why = match (unsolicited, error) {
        (Some(line), Error::Closed) => {
            format!("the server sent {line:?} unprompted and closed the connection")
        }
        (_, Error::Closed) => "the server closed the connection".to_owned(),
        (_, error) => error.to_string(),
    };
    let why = link.finish(why);
    hooks.closed(&why);
}
