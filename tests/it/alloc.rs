//! Steady-state traffic allocates nothing on the event loop's thread.
//!
//! A counting allocator wraps the system allocator for this whole test binary, but counts only on
//! threads that opt in: the in-process server's thread does, the clients' threads do not. After a
//! warm-up that lets every table, queue and pooled buffer reach its working size, a few thousand
//! more requests of every steady-state kind (acquire, renew, release, two-phase, semaphores,
//! signal fan-out with pipelined publishing) must not allocate at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dflockd::config::Config;
use dflockd::server::Server;

use crate::support::{Client, grant};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only an
// atomic and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// One round of every steady-state request kind, on fixed keys.
struct Traffic {
    locker: Client,
    waiter: Client,
    publisher: Client,
    subscribers: Vec<Client>,
}

impl Traffic {
    fn new(server: std::net::SocketAddr) -> Traffic {
        let mut subscribers: Vec<Client> = (0..4).map(|_| Client::connect(server)).collect();
        for s in &mut subscribers {
            assert_eq!(s.request("listen", "events.>", ""), "ok");
        }
        Traffic {
            locker: Client::connect(server),
            waiter: Client::connect(server),
            publisher: Client::connect(server),
            subscribers,
        }
    }

    fn round(&mut self) {
        let locker = &mut self.locker;
        // Lock, renew, release.
        let (token, _) = grant(&locker.request("l", "alloc-lock", "5 30"));
        assert_eq!(
            locker.request("n", "alloc-lock", &format!("{token} 30")),
            "ok 30"
        );
        assert_eq!(locker.request("r", "alloc-lock", &token), "ok");
        // A hand-over: the waiter queues behind the locker and is granted on release.
        let (token, _) = grant(&locker.request("l", "alloc-handover", "5"));
        self.waiter.send("l", "alloc-handover", "5");
        assert_eq!(locker.request("r", "alloc-handover", &token), "ok");
        let (token, _) = grant(&self.waiter.read_line());
        assert_eq!(self.waiter.request("r", "alloc-handover", &token), "ok");
        // Two-phase, queued behind a holder, then waited for.
        let (token, _) = grant(&locker.request("e", "alloc-2p", ""));
        assert_eq!(self.waiter.request("e", "alloc-2p", ""), "queued");
        assert_eq!(
            locker.request("w", "alloc-2p", "1").split(' ').next(),
            Some("ok")
        );
        self.waiter.send("w", "alloc-2p", "5");
        assert_eq!(locker.request("r", "alloc-2p", &token), "ok");
        let (token, _) = grant(&self.waiter.read_line());
        assert_eq!(self.waiter.request("r", "alloc-2p", &token), "ok");
        // A semaphore slot.
        let (token, _) = grant(&locker.request("sl", "alloc-sem", "5 3"));
        assert_eq!(locker.request("sr", "alloc-sem", &token), "ok");
        // Eight pipelined signals fanned out to every subscriber.
        let mut burst = Vec::new();
        for i in 0..8 {
            burst.extend_from_slice(format!("signal\nevents.tick\npayload {i}\n").as_bytes());
        }
        self.publisher.send_raw(&burst);
        for _ in 0..8 {
            assert_eq!(self.publisher.read_line(), "ok 4");
        }
        for s in &mut self.subscribers {
            for i in 0..8 {
                assert_eq!(s.read_line(), format!("sig events.tick payload {i}"));
            }
        }
    }
}

#[test]
fn steady_state_requests_allocate_nothing_on_the_event_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(&Config::default(), listener, None).unwrap();
    let shutdown = server.shutdown_handle();
    let loop_thread = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        server.run().unwrap();
    });

    let mut traffic = Traffic::new(addr);
    for _ in 0..300 {
        traffic.round();
    }
    // Let any turn still in flight finish before taking the baseline.
    std::thread::sleep(Duration::from_millis(50));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(
        before > 0,
        "the counter does not see the event loop's thread"
    );
    const ROUNDS: usize = 200;
    for _ in 0..ROUNDS {
        traffic.round();
    }
    std::thread::sleep(Duration::from_millis(50));
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    // Each round is 17 requests and 32 deliveries.
    assert_eq!(
        after - before,
        0,
        "{} allocations on the event loop during {} requests",
        after - before,
        ROUNDS * 17
    );

    drop(traffic);
    shutdown.shutdown();
    loop_thread.join().unwrap();
}
