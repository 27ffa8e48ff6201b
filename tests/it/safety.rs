//! Lock safety extensions over real connections: `check`/`scheck`, queue position (`q`/`sq`) and
//! `--lock-delay`.

use std::time::Duration;

use dflockd::client::{Client, Kind};
use dflockd::token::LeaseToken;

use crate::support::{TestServer, grant};

#[test]
fn check_tells_a_current_holder_from_a_stale_one() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let mut resource = server.connect();
    let token = holder.lock("k", "0 5");
    let fence = &token[..16];

    let line = resource.request("check", "k", &token);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!((fields[0], fields[1]), ("ok", fence));
    let remaining: u64 = fields[2].parse().expect("remaining ms");
    assert!((1..=5_000).contains(&remaining), "{line}");
    assert!(
        resource
            .request("check", "k", fence)
            .starts_with(&format!("ok {fence} "))
    );
    assert_eq!(resource.request("scheck", "k", &token), "stale");
    assert_eq!(resource.request("check", "other", fence), "stale");
    assert_eq!(resource.request("check", "k", "nonsense"), "error");

    assert_eq!(holder.request("r", "k", &token), "ok");
    assert_eq!(resource.request("check", "k", &token), "stale");
    assert_eq!(resource.request("check", "k", fence), "stale");

    let stats = server.stats();
    assert_eq!(stats["locks"].as_array().map(Vec::len), Some(0), "{stats}");
}

#[test]
fn the_client_library_checks_tokens_and_fences() {
    let server = TestServer::start(&[]);
    let client = Client::new([server.addr.to_string()]).expect("valid client settings");
    let mut conn = client.connect(0).expect("connect");
    let kind = Kind::Semaphore { limit: 2 };
    let grant = conn
        .acquire(kind, "pool", Duration::ZERO, Some(30))
        .expect("acquire");
    let checked = conn
        .check(kind, "pool", grant.token)
        .expect("check")
        .expect("current");
    assert_eq!(checked.fence, grant.fence());
    assert!(checked.remaining <= Duration::from_secs(30));
    assert!(checked.remaining > Duration::from_secs(20));
    let by_fence = conn.check(kind, "pool", grant.fence()).expect("check");
    assert_eq!(by_fence.map(|c| c.fence), Some(grant.fence()));
    conn.release(kind, "pool", &grant.token).expect("release");
    assert_eq!(conn.check(kind, "pool", grant.token).expect("check"), None);
    let never = LeaseToken {
        fence: grant.fence() + 1_000,
        random: 7,
    };
    assert_eq!(conn.check(Kind::Lock, "pool", never).expect("check"), None);
}

#[test]
fn an_old_holder_is_stale_once_its_lease_has_passed() {
    let server = TestServer::start(&[]);
    let mut a = server.connect();
    let mut b = server.connect();
    let token_a = a.lock("k", "0 1");
    b.send("l", "k", "10");
    let (token_b, _) = grant(&b.read_line());
    assert_eq!(b.request("check", "k", &token_a), "stale");
    assert!(b.request("check", "k", &token_b).starts_with("ok "));
}

#[test]
fn q_shows_a_two_phase_waiter_its_place() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let mut first = server.connect();
    let mut second = server.connect();
    let token = holder.lock("k", "0");
    assert_eq!(first.request("e", "k", ""), "queued");
    assert_eq!(second.request("e", "k", ""), "queued");
    assert_eq!(second.request("q", "k", ""), "ok 1 1 2 2");
    assert_eq!(first.request("q", "k", ""), "ok 1 1 2 1");
    assert_eq!(holder.request("q", "k", ""), "ok 1 1 2 0");
    assert_eq!(holder.request("q", "missing", ""), "ok 0 1 0 0");
    assert_eq!(holder.request("sq", "missing", "4"), "ok 0 4 0 0");
    assert_eq!(holder.request("sq", "missing", "zero"), "error");

    assert_eq!(holder.request("r", "k", &token), "ok");
    assert!(first.request("w", "k", "5").starts_with("ok "));
    assert_eq!(second.request("q", "k", ""), "ok 1 1 1 1");
}

#[test]
fn lock_delay_holds_back_the_next_grant_after_an_expiry_or_a_disconnect() {
    use std::time::Instant;
    let server = TestServer::start(&["--lock-delay", "300"]);
    let mut waiter = server.connect();

    // Expiry: the lease ends 1 s after the grant, the slot rests 300 ms more.
    let mut holder = server.connect();
    let start = Instant::now();
    holder.lock("k", "0 1");
    waiter.send("l", "k", "10");
    grant(&waiter.read_line());
    // The server counts whole milliseconds, so allow a few for rounding.
    assert!(
        start.elapsed() >= Duration::from_millis(1_290),
        "{:?}",
        start.elapsed()
    );

    // Disconnect: the slot rests 300 ms from when the server saw the connection end.
    let mut holder = server.connect();
    holder.lock("d", "0 60");
    let mut next = server.connect();
    next.send("l", "d", "10");
    crate::support::wait_until("the waiter queues", Duration::from_secs(2), || {
        crate::support::lock_waiters(&server, "d") == 1
    });
    let gone = Instant::now();
    drop(holder);
    grant(&next.read_line());
    assert!(
        gone.elapsed() >= Duration::from_millis(290),
        "{:?}",
        gone.elapsed()
    );
}

#[test]
fn an_explicit_release_is_never_delayed() {
    use std::time::Instant;
    let server = TestServer::start(&["--lock-delay", "10000"]);
    let mut holder = server.connect();
    let mut waiter = server.connect();
    let token = holder.lock("k", "0 60");
    waiter.send("l", "k", "30");
    crate::support::wait_until("the waiter queues", Duration::from_secs(2), || {
        crate::support::lock_waiters(&server, "k") == 1
    });
    let start = Instant::now();
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&waiter.read_line());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let stats = server.stats();
    assert!(!stats.to_string().contains("lock_delay_ms"), "{stats}");

    // An expiry does delay, and stats shows it while it lasts.
    holder.lock("x", "0 1");
    crate::support::wait_until("the delay shows", Duration::from_secs(5), || {
        let stats = server.stats();
        crate::support::stats_entry(&stats, "idle_locks", "x").is_some_and(|entry| {
            entry["lock_delay_ms"]
                .as_u64()
                .is_some_and(|ms| ms <= 10_000)
        })
    });
    assert_eq!(holder.request("l", "x", "0"), "timeout");
}
