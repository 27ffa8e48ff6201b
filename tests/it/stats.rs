//! The `stats` reply (spec §10), parsed as JSON: its six arrays, their fields, and how
//! resources are classified. Besides the spec's fields this server reports one counter of its
//! own, `slow_consumers_disconnected` (clients ignore fields they do not know).

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, grant, stats_entry, wait_until};

/// The sorted field names of a JSON object.
fn fields(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn a_fresh_server_reports_empty_arrays() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let line = c.request("stats", "_", "");
    let stats: Value = serde_json::from_str(line.strip_prefix("ok ").expect("ok prefix")).unwrap();
    assert_eq!(
        stats,
        json!({
            "connections": 1,
            "locks": [],
            "semaphores": [],
            "idle_locks": [],
            "idle_semaphores": [],
            "signal_channels": [],
            "slow_consumers_disconnected": 0,
        })
    );
    // The arrays are written as `[]`, never `null`, and in the reference server's order.
    assert!(line.starts_with(
        r#"ok {"connections":1,"locks":[],"semaphores":[],"idle_locks":[],"idle_semaphores":[],"signal_channels":[]"#
    ), "{line}");
}

#[test]
fn stats_describes_locks_semaphores_idle_entries_and_subscriptions() {
    let server = TestServer::start(&[]);
    let mut c1 = server.connect();
    let mut c2 = server.connect();
    let mut c3 = server.connect();
    let mut c4 = server.connect();
    let mut c5 = server.connect();

    c1.lock("held", "0 10");
    c2.send("l", "held", "30");
    grant(&c1.request("sl", "pool", "0 2"));
    grant(&c1.request("sl", "pool", "0 2"));
    c3.send("sl", "pool", "30 2");
    grant(&c1.request("sl", "single", "0 1"));
    let idle = c1.lock("idle", "0");
    assert_eq!(c1.request("r", "idle", &idle), "ok");
    let (idle_sem, _) = grant(&c1.request("sl", "idle-sem", "0 3"));
    assert_eq!(c1.request("sr", "idle-sem", &idle_sem), "ok");
    assert_eq!(c4.request("listen", "events.>", ""), "ok");
    assert_eq!(c5.request("listen", "events.>", ""), "ok");
    assert_eq!(c4.request("listen", "jobs.>", "workers"), "ok");
    assert_eq!(c5.request("listen", "jobs.>", " workers "), "ok");
    assert_eq!(c5.request("listen", "jobs.one", ""), "ok");

    let mut stats = Value::Null;
    wait_until(
        "both blocking waiters queue",
        Duration::from_secs(2),
        || {
            stats = c1.stats();
            stats_entry(&stats, "locks", "held").is_some_and(|e| e["waiters"] == 1)
                && stats_entry(&stats, "semaphores", "pool").is_some_and(|e| e["waiters"] == 1)
        },
    );

    assert_eq!(
        fields(&stats),
        [
            "connections",
            "idle_locks",
            "idle_semaphores",
            "locks",
            "semaphores",
            "signal_channels",
            "slow_consumers_disconnected"
        ]
    );
    assert_eq!(stats["connections"], 5);

    // Locks, including the limit-1 semaphore (classified by limit, not namespace).
    assert_eq!(stats["locks"].as_array().map(Vec::len), Some(2), "{stats}");
    let held = stats_entry(&stats, "locks", "held").unwrap();
    assert_eq!(
        fields(held),
        ["key", "lease_expires_in_s", "owner_conn_id", "waiters"]
    );
    assert_eq!(held["owner_conn_id"], 1);
    assert_eq!(held["waiters"], 1);
    let left = held["lease_expires_in_s"].as_f64().expect("a number");
    assert!(left > 8.0 && left <= 10.0, "lease_expires_in_s {left}");
    let single = stats_entry(&stats, "locks", "single").expect("limit-1 semaphore under locks");
    assert_eq!(single["owner_conn_id"], 1);
    assert_eq!(single["waiters"], 0);

    assert_eq!(
        stats["semaphores"],
        json!([{"key": "pool", "limit": 2, "holders": 2, "waiters": 1}])
    );

    let idle_locks = stats["idle_locks"].as_array().expect("idle_locks");
    assert_eq!(idle_locks.len(), 1, "{stats}");
    assert_eq!(fields(&idle_locks[0]), ["idle_s", "key"]);
    assert_eq!(idle_locks[0]["key"], "idle");
    let idle_s = idle_locks[0]["idle_s"].as_f64().expect("a number");
    assert!((0.0..5.0).contains(&idle_s), "idle_s {idle_s}");
    let idle_sems = stats["idle_semaphores"]
        .as_array()
        .expect("idle_semaphores");
    assert_eq!(idle_sems.len(), 1, "{stats}");
    assert_eq!(idle_sems[0]["key"], "idle-sem");
    assert!(idle_sems[0]["idle_s"].is_number());

    let mut channels = stats["signal_channels"]
        .as_array()
        .expect("signal_channels")
        .clone();
    channels.sort_by_key(|c| (c["pattern"].to_string(), c["group"].to_string()));
    assert_eq!(
        channels,
        [
            json!({"pattern": "events.>", "listeners": 2}),
            json!({"pattern": "jobs.>", "group": "workers", "listeners": 2}),
            json!({"pattern": "jobs.one", "listeners": 1}),
        ]
    );

    // Leaving connections disappear from every array.
    drop(c2);
    drop(c3);
    drop(c4);
    drop(c5);
    wait_until(
        "the departures are processed",
        Duration::from_secs(2),
        || {
            stats = c1.stats();
            stats["connections"] == 1
        },
    );
    assert_eq!(stats["signal_channels"], json!([]));
    assert_eq!(stats_entry(&stats, "locks", "held").unwrap()["waiters"], 0);
    assert_eq!(
        stats_entry(&stats, "semaphores", "pool").unwrap()["waiters"],
        0
    );
}

#[test]
fn a_lock_and_a_semaphore_with_the_same_key_are_two_entries() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    c.lock("k", "0");
    grant(&c.request("sl", "k", "0 1"));
    grant(&c.request("sl", "k2", "0 4"));
    c.lock("k2", "0");
    let stats = c.stats();
    let locks: Vec<&Value> = stats["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["key"] == "k")
        .collect();
    assert_eq!(locks.len(), 2, "{stats}");
    assert!(stats_entry(&stats, "semaphores", "k2").is_some());
    assert!(stats_entry(&stats, "locks", "k2").is_some());
}

/// Locks `count` keys `k0`... from `c` in one pipelined batch.
fn lock_many(c: &mut crate::support::Client, count: usize) {
    // In batches whose replies fit in the socket buffers, so the pipelining cannot deadlock.
    for start in (0..count).step_by(10_000) {
        let end = count.min(start + 10_000);
        let mut batch = Vec::new();
        for i in start..end {
            batch.extend_from_slice(format!("l\nk{i}\n0\n").as_bytes());
        }
        c.send_raw(&batch);
        for _ in start..end {
            grant(&c.read_line());
        }
    }
}

/// A listing far larger than the output limit is written as the client reads it: a client that
/// reads a little at a time still gets one complete, valid JSON line, a push that arrives
/// meanwhile follows the line instead of landing inside it, and a key created after the first
/// bytes were read is listed (the listing was not built before the client read).
#[test]
fn a_large_listing_reaches_a_slow_reader_whole_with_pushes_after_it() {
    // About 7 MB of JSON: more than the socket buffers take (the send buffer grows to 4 MiB), so
    // the listing is still being written when the late key is created.
    const KEYS: usize = 100_000;
    let server = TestServer::start(&["--max-locks", "200000", "--max-pending-output", "4096"]);
    let mut holder = server.connect();
    lock_many(&mut holder, KEYS);
    let mut reader = server.connect();
    assert_eq!(reader.request("listen", "news", ""), "ok");
    let mut socket = reader.stream().try_clone().unwrap();
    socket.write_all(b"stats\n_\n\n").unwrap();
    // Some of the listing has been sent, far from all of it: the server waits for the reader.
    let mut received = vec![0u8; 1024];
    socket.read_exact(&mut received).unwrap();
    assert!(received.starts_with(b"ok {\"connections\":2,"));
    let mut publisher = server.connect();
    assert_eq!(publisher.request("signal", "news", "hello"), "ok 1");
    publisher.lock("late", "0");
    let mut chunk = [0u8; 1024];
    while !received.ends_with(b"sig news hello\n") {
        let n = socket.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the push arrived");
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(received).unwrap();
    let (line, push) = text.split_once('\n').unwrap();
    assert_eq!(push, "sig news hello\n");
    let stats: Value = serde_json::from_str(line.strip_prefix("ok ").unwrap()).unwrap();
    let locks = stats["locks"].as_array().unwrap();
    assert_eq!(locks.len(), KEYS + 1);
    assert_eq!(locks[KEYS]["key"], "late");
}
