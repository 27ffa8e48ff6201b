//! Server caps: `--max-locks`, `--max-waiters`, `--max-connections` and
//! `--max-connections-per-ip` (spec §8.6, §8.3, §15.3).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use crate::support::{TestServer, grant, lock_waiters, stats_entry, wait_until};

/// How long a test waits for the server to notice a connection or a queued waiter.
const SETTLE: Duration = Duration::from_secs(2);

#[test]
fn max_locks_counts_lock_and_semaphore_entries_together() {
    let server = TestServer::start(&["--max-locks", "2"]);
    let mut a = server.connect();
    let lock = a.lock("a", "0");
    let (sem, _) = grant(&a.request("sl", "a", "0 2"));
    let mut b = server.connect();
    assert_eq!(b.request("l", "b", "0"), "error_max_locks");
    assert_eq!(b.request("l", "b", "5"), "error_max_locks");
    assert_eq!(b.request("e", "b", ""), "error_max_locks");
    assert_eq!(b.request("sl", "b", "0 2"), "error_max_locks");
    assert_eq!(b.request("se", "b", "2"), "error_max_locks");
    // Existing entries are unaffected.
    assert_eq!(b.request("l", "a", "0"), "timeout");
    grant(&b.request("sl", "a", "0 2"));
    // A released entry keeps its budget until idle GC removes it.
    assert_eq!(a.request("r", "a", &lock), "ok");
    assert_eq!(a.request("sr", "a", &sem), "ok");
    assert_eq!(b.request("l", "b", "0"), "error_max_locks");
    b.lock("a", "0");
}

#[test]
fn idle_gc_frees_max_locks_budget() {
    let server = TestServer::start(&[
        "--max-locks",
        "1",
        "--gc-interval",
        "1",
        "--gc-max-idle",
        "0",
    ]);
    let mut a = server.connect();
    let token = a.lock("a", "0");
    assert_eq!(a.request("l", "b", "0"), "error_max_locks");
    assert_eq!(a.request("r", "a", &token), "ok");
    wait_until("idle GC drops lock a", Duration::from_secs(3), || {
        let stats = a.stats();
        stats["idle_locks"] == serde_json::json!([]) && stats["locks"] == serde_json::json!([])
    });
    a.lock("b", "0");
}

#[test]
fn max_waiters_caps_each_queue() {
    let server = TestServer::start(&["--max-waiters", "1"]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut waiter = server.connect();
    waiter.send("l", "k", "10");
    wait_until("the waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    let mut c = server.connect();
    assert_eq!(c.request("l", "k", "5"), "error_max_waiters");
    // Also for a try-lock and a two-phase enqueue.
    assert_eq!(c.request("l", "k", "0"), "error_max_waiters");
    assert_eq!(c.request("e", "k", ""), "error_max_waiters");
    // Other keys have their own queue.
    let other = c.lock("other", "0");
    let mut d = server.connect();
    assert_eq!(d.request("e", "other", ""), "queued");
    // Semaphores too.
    let mut sem_holder = server.connect();
    grant(&sem_holder.request("sl", "pool", "0 1"));
    assert_eq!(d.request("se", "pool", "1"), "queued");
    assert_eq!(c.request("sl", "pool", "0 1"), "error_max_waiters");

    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&waiter.read_line());
    // The queue is empty again: a new waiter fits.
    assert_eq!(c.request("e", "k", ""), "queued");
    assert_eq!(c.request("r", "other", &other), "ok");
}

#[test]
fn max_connections_refuses_extra_connections_without_a_byte() {
    let server = TestServer::start(&["--max-connections", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.request("ping", "_", ""), "ok");
    assert_eq!(b.request("ping", "_", ""), "ok");
    let mut refused = server.connect();
    refused.expect_closed();
    let mut refused = server.connect();
    refused.send("ping", "_", "");
    refused.expect_closed();

    drop(b);
    wait_until("the server notices b left", SETTLE, || {
        a.stats()["connections"] == 1
    });
    let mut c = server.connect();
    assert_eq!(c.request("ping", "_", ""), "ok");
    // Refused connections do not consume connection ids: a=1, b=2, c=3.
    c.lock("k", "0");
    let stats = c.stats();
    assert_eq!(
        stats_entry(&stats, "locks", "k").expect("k")["owner_conn_id"],
        3
    );
    assert_eq!(stats["connections"], 2);
}

#[test]
fn max_connections_per_ip_is_per_remote_address() {
    let server = TestServer::start(&["--max-connections-per-ip", "2"]);
    let local = Ipv4Addr::new(127, 0, 0, 1);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut a1 = server.connect_from(local);
    let mut a2 = server.connect_from(local);
    assert_eq!(a1.request("ping", "_", ""), "ok");
    assert_eq!(a2.request("ping", "_", ""), "ok");
    server.connect_from(local).expect_closed();

    // Another address has its own allowance.
    let mut b1 = server.connect_from(other);
    let mut b2 = server.connect_from(other);
    assert_eq!(b1.request("ping", "_", ""), "ok");
    assert_eq!(b2.request("ping", "_", ""), "ok");
    server.connect_from(other).expect_closed();
    assert_eq!(b1.stats()["connections"], 4);

    drop(a2);
    wait_until("the server notices a2 left", SETTLE, || {
        b1.stats()["connections"] == 3
    });
    let mut a3 = server.connect_from(local);
    assert_eq!(a3.request("ping", "_", ""), "ok");
    server.connect_from(local).expect_closed();
}

#[test]
fn a_connection_the_server_closes_frees_its_slot() {
    let server = TestServer::start(&["--max-connections", "1"]);
    let mut c = server.connect();
    c.send_raw(&[b'x'; 300]);
    c.send_raw(b"\n");
    assert_eq!(c.read_line(), "error");
    c.expect_closed();
    drop(c);
    // The server may still be finishing the close when the next client arrives; the slot
    // frees once it has.
    wait_until("a new connection is admitted", SETTLE, || {
        // A refused attempt may see a reset at any step; only a reply counts.
        let Ok(mut next) = TcpStream::connect(server.addr) else {
            return false;
        };
        let mut reply = [0u8; 3];
        next.set_read_timeout(Some(SETTLE)).unwrap();
        next.write_all(b"ping\n_\n\n").is_ok()
            && next.read_exact(&mut reply).is_ok()
            && &reply == b"ok\n"
    });
}

#[test]
fn max_connections_holds_under_a_burst_of_connects() {
    let server = TestServer::start(&["--max-connections", "5"]);
    let clients: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut served = 0;
    for mut client in clients {
        client.set_read_timeout(Some(SETTLE)).unwrap();
        let mut reply = [0u8; 3];
        // A refused connection sees EOF or a reset at either step; only a reply counts.
        let answered = client.write_all(b"ping\n_\n\n").is_ok()
            && client.read_exact(&mut reply).is_ok()
            && &reply == b"ok\n";
        served += usize::from(answered);
    }
    assert_eq!(served, 5);
}

#[test]
fn hundreds_of_connections_are_served() {
    let server = TestServer::start(&[]);
    let mut clients: Vec<_> = (0..300).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send("ping", "_", "");
    }
    for c in &mut clients {
        assert_eq!(c.read_line(), "ok");
    }
    assert_eq!(clients[0].stats()["connections"], 300);
}
