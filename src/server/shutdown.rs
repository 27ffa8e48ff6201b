//! Stopping the server from another thread (tests, embedders). SIGINT and SIGTERM arrive through
//! `signal-hook-mio` on the loop's own poller; this handle is the only object shared across
//! threads, and it holds no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::Waker;

/// Starts a graceful shutdown of a running [`super::Server`], as SIGTERM would.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub(super) fn new(requested: Arc<AtomicBool>, waker: Arc<Waker>) -> ShutdownHandle {
        ShutdownHandle { requested, waker }
    }

    /// Asks the server to drain and stop (spec §16). Returns at once.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        // Waking fails only if the poller is gone, i.e. the server has already stopped.
        let _ = self.waker.wake();
    }
}
