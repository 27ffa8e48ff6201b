//! The client library (`dflockd::client`) against the real server: renewal keeping locks past
//! their lease, guards releasing on drop, holders learning of lost leases, two-phase flows,
//! semaphores, sharding over three servers, signals (queue groups, pushes between responses,
//! heartbeats), authentication, TLS and the error statuses.

use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use dflockd::client::{Client, Enqueued, Error, Kind, Loss, Signal, shard_index};

use crate::support::{TempDir, TestServer, lock_waiters, stats_entry, wait_until};

/// Generous bound for anything that should happen "promptly".
const PROMPTLY: Duration = Duration::from_secs(5);

fn client(server: &TestServer) -> Client {
    Client::new([server.addr.to_string()]).expect("valid client settings")
}

/// Whether `key` can be locked right now by a fresh connection (released again at once).
fn is_free(client: &Client, key: &str) -> bool {
    client
        .lock(key)
        .try_acquire()
        .expect("try_acquire")
        .is_some()
}

#[test]
fn renewal_holds_a_lock_past_several_leases() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(1)
        .acquire(Duration::from_secs(1))
        .expect("acquire");
    assert_eq!(guard.lease(), Duration::from_secs(1));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        assert!(
            !is_free(&client, "k"),
            "the lock was free {:?} into a 1 s lease",
            start.elapsed()
        );
        assert_eq!(guard.loss(), None);
        thread::sleep(Duration::from_millis(200));
    }
    let fence = guard.fence();
    drop(guard);
    let next = client
        .lock("k")
        .try_acquire()
        .expect("try_acquire")
        .expect("dropping the guard released the lock");
    assert!(next.fence() > fence, "fences increase with every grant");
}

#[test]
fn release_and_drop_free_the_lock_at_once() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let lock = client.lock("k");
    let guard = lock.acquire(Duration::from_secs(1)).expect("acquire");
    assert!(lock.try_acquire().expect("try_acquire").is_none());
    guard.release().expect("release");
    let guard = lock.try_acquire().expect("try_acquire").expect("released");

    // A waiter blocked behind the guard gets the lock as soon as the guard is dropped.
    let waiter = {
        let lock = lock.clone();
        thread::spawn(move || {
            let start = Instant::now();
            let granted = lock.acquire(Duration::from_secs(10)).map(|g| g.fence());
            (granted, start.elapsed())
        })
    };
    wait_until("the waiter queues", PROMPTLY, || {
        lock_waiters(&server, "k") == 1
    });
    let fence = guard.fence();
    drop(guard);
    let (granted, waited) = waiter.join().expect("waiter thread");
    assert!(granted.expect("granted") > fence);
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[test]
fn a_low_level_connection_acquires_renews_and_releases() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let mut conn = client.connect_for("k").expect("connect");
    let grant = conn
        .acquire(Kind::Lock, "k", Duration::ZERO, Some(7))
        .expect("acquire");
    assert_eq!(grant.lease_s, 7);
    assert_eq!(
        conn.renew(Kind::Lock, "k", &grant.token, Some(9)).ok(),
        Some(9)
    );
    assert!(matches!(
        conn.acquire(Kind::Lock, "k", Duration::ZERO, None),
        Err(Error::Timeout)
    ));
    conn.release(Kind::Lock, "k", &grant.token)
        .expect("release");
    assert!(matches!(
        conn.release(Kind::Lock, "k", &grant.token),
        Err(Error::Rejected)
    ));
    conn.ping().expect("ping");
}

#[test]
fn the_holder_learns_when_the_server_closes_its_connection() {
    let server = TestServer::start(&["--read-timeout", "1"]);
    // No heartbeat within the server's read timeout, and renewals far apart: the server
    // closes the idle connection after a second.
    let client = Client::builder([server.addr.to_string()])
        .heartbeat(Duration::from_secs(60))
        .build()
        .expect("valid");
    let guard = client
        .lock("k")
        .lease(60)
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    match lost.recv_timeout(PROMPTLY) {
        Ok(Loss::Disconnected(why)) => assert!(why.contains("error"), "{why}"),
        other => panic!("expected a disconnection, got {other:?}"),
    }
    assert!(guard.is_lost());
    assert!(is_free(&client, "k"), "the server released the lock");
    assert!(guard.release().is_err(), "nothing left to release");
}

#[test]
fn the_heartbeat_keeps_an_idle_holder_connected() {
    let server = TestServer::start(&["--read-timeout", "1"]);
    let client = Client::builder([server.addr.to_string()])
        .heartbeat(Duration::from_millis(300))
        .build()
        .expect("valid");
    let guard = client
        .lock("k")
        .lease(60)
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    assert_eq!(
        lost.recv_timeout(Duration::from_secs(3)),
        Err(RecvTimeoutError::Timeout),
        "lost the lock although pings kept the connection busy"
    );
    assert!(!is_free(&client, "k"));
    guard.release().expect("release");
}

#[test]
fn the_holder_learns_when_the_server_goes_away() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(30)
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    let start = Instant::now();
    drop(server);
    assert!(matches!(
        lost.recv_timeout(PROMPTLY),
        Ok(Loss::Disconnected(_))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_holder_learns_when_another_client_releases_its_token() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(2)
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    client
        .connect(0)
        .expect("connect")
        .release(Kind::Lock, "k", &guard.token())
        .expect("any connection may release a token");
    // The next renewal, about a second later, is refused.
    assert_eq!(lost.recv_timeout(PROMPTLY), Ok(Loss::Refused));
    assert!(matches!(guard.renew(), Err(Error::Rejected)));
    assert!(matches!(guard.release(), Err(Error::Rejected)));
}

#[test]
fn without_renewal_the_lease_expires_and_the_holder_is_told() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(1)
        .no_renewal()
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    assert_eq!(lost.recv_timeout(PROMPTLY), Ok(Loss::Expired));
    let next = client
        .lock("k")
        .acquire(Duration::from_secs(3))
        .expect("the server expired the lease");
    assert!(next.fence() > guard.fence());
}

/// Shortens the lease of `token` on `key` to one second from now, from another connection (any
/// connection may renew a token): the holder's own renewal is then many seconds away.
fn cut_lease(client: &Client, kind: Kind, key: &str, token: &dflockd::token::LeaseToken) {
    let renewed = client
        .connect(0)
        .expect("connect")
        .renew(kind, key, token, Some(1))
        .expect("renew");
    assert_eq!(renewed, 1);
}

#[test]
fn a_guard_watching_events_learns_of_an_expiry_as_the_server_decides_it() {
    let server = TestServer::start(&["--lock-events"]);
    let client = client(&server);
    let watching = client
        .lock("k")
        .lease(30)
        .watch_events()
        .acquire(Duration::ZERO)
        .expect("acquire");
    let slot = client
        .semaphore("pool", 2)
        .lease(30)
        .watch_events()
        .acquire(Duration::ZERO)
        .expect("acquire a slot");
    // Another holder of the same pool is not concerned by the first slot's events.
    let other_slot = client
        .semaphore("pool", 2)
        .lease(30)
        .watch_events()
        .acquire(Duration::ZERO)
        .expect("acquire a second slot");
    wait_until("both guards listen", PROMPTLY, || {
        server.stats()["signal_channels"]
            .as_array()
            .is_some_and(|channels| channels.len() == 4)
    });
    let (lost, lost_slot) = (watching.loss_channel(), slot.loss_channel());
    let cut = Instant::now();
    cut_lease(&client, Kind::Lock, "k", &watching.token());
    cut_lease(&client, Kind::Semaphore { limit: 2 }, "pool", &slot.token());
    assert_eq!(lost.recv_timeout(PROMPTLY), Ok(Loss::Expired));
    assert_eq!(lost_slot.recv_timeout(PROMPTLY), Ok(Loss::Expired));
    // At the server's expiry, a second after the cut, not at the next renewal 15 s away.
    let took = cut.elapsed();
    assert!(took < Duration::from_secs(3), "told after {took:?}");
    assert!(!other_slot.is_lost());
}

#[test]
fn a_guard_watching_events_learns_of_an_eviction_at_once() {
    let server = TestServer::start(&["--lock-events", "--admin-token", "adm1n"]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(30)
        .watch_events()
        .acquire(Duration::ZERO)
        .expect("acquire");
    wait_until("the guard listens", PROMPTLY, || {
        server.stats()["signal_channels"]
            .as_array()
            .is_some_and(|channels| channels.len() == 2)
    });
    let lost = guard.loss_channel();
    let mut admin = server.connect();
    assert_eq!(admin.request("auth", "_", "adm1n"), "ok");
    assert_eq!(admin.request("evict", "k", "*"), "ok 1");
    assert_eq!(lost.recv_timeout(PROMPTLY), Ok(Loss::Evicted));
    assert!(guard.is_lost());
}

#[test]
fn a_guard_watching_events_on_a_server_without_them_relies_on_renewal() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(30)
        .watch_events()
        .acquire(Duration::ZERO)
        .expect("acquire");
    let lost = guard.loss_channel();
    cut_lease(&client, Kind::Lock, "k", &guard.token());
    // The lease runs out at the server, which says nothing: the holder only learns it when it
    // renews next.
    assert_eq!(
        lost.recv_timeout(Duration::from_secs(2)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(matches!(guard.renew(), Err(Error::Rejected)));
    assert_eq!(lost.recv_timeout(PROMPTLY), Ok(Loss::Refused));
}

#[test]
fn manual_renewal_extends_a_lease_without_background_renewal() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let guard = client
        .lock("k")
        .lease(1)
        .no_renewal()
        .acquire(Duration::ZERO)
        .expect("acquire");
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(500));
        assert_eq!(guard.renew().ok(), Some(1));
    }
    assert_eq!(guard.loss(), None);
    assert!(!is_free(&client, "k"));
}

#[test]
fn two_phase_acquire_queues_then_waits() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let lock = client.lock("job");
    let Enqueued::Acquired(holder) = lock.enqueue().expect("enqueue") else {
        panic!("a free lock is acquired at once");
    };
    let Enqueued::Queued(waiting) = lock.enqueue().expect("enqueue") else {
        panic!("a held lock queues");
    };
    assert_eq!(lock_waiters(&server, "job"), 1);
    let fence = holder.fence();
    drop(holder);
    let guard = waiting.wait(Duration::from_secs(5)).expect("granted");
    assert!(guard.fence() > fence);

    let Enqueued::Queued(late) = lock.enqueue().expect("enqueue") else {
        panic!("still held");
    };
    assert!(matches!(
        late.wait(Duration::from_secs(1)),
        Err(Error::Timeout)
    ));
    assert_eq!(
        lock_waiters(&server, "job"),
        0,
        "a timed-out wait leaves the queue"
    );
}

#[test]
fn two_phase_state_is_per_connection() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let mut conn = client.connect(0).expect("connect");
    let grant = conn
        .enqueue(Kind::Lock, "k", None)
        .expect("enqueue")
        .expect("free, so acquired");
    assert!(matches!(
        conn.enqueue(Kind::Lock, "k", None),
        Err(Error::AlreadyEnqueued)
    ));
    assert!(matches!(
        client
            .connect(0)
            .expect("connect")
            .wait(Kind::Lock, "k", Duration::ZERO),
        Err(Error::NotEnqueued)
    ));
    assert_eq!(conn.wait(Kind::Lock, "k", Duration::ZERO).ok(), Some(grant));
}

#[test]
fn semaphores_admit_their_limit() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let pool = client.semaphore("pool", 2);
    assert_eq!(pool.limit(), 2);
    let first = pool.acquire(Duration::ZERO).expect("slot 1");
    let second = pool.try_acquire().expect("try").expect("slot 2");
    assert!(pool.try_acquire().expect("try").is_none(), "only two slots");
    assert!(matches!(
        client.semaphore("pool", 3).try_acquire(),
        Err(Error::LimitMismatch)
    ));
    // Locks live in their own namespace.
    let lock = client.lock("pool").try_acquire().expect("try");
    assert!(lock.is_some());
    let stats = client.stats(0).expect("stats");
    let entry = stats
        .semaphores
        .iter()
        .find(|s| s.key == "pool")
        .expect("listed");
    assert_eq!((entry.limit, entry.holders, entry.waiters), (2, 2, 0));
    drop(first);
    let third = pool.try_acquire().expect("try").expect("a slot was freed");
    assert_ne!(third.token(), second.token());

    // Two-phase on a semaphore.
    let Enqueued::Queued(waiting) = pool.enqueue().expect("enqueue") else {
        panic!("both slots are taken");
    };
    drop(second);
    waiting.wait(Duration::from_secs(5)).expect("granted");
}

#[test]
fn semaphore_slots_are_renewed_too() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let pool = client.semaphore("pool", 1).lease(1);
    let slot = pool.acquire(Duration::ZERO).expect("slot");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(slot.loss(), None);
    assert!(pool.try_acquire().expect("try").is_none());
}

#[test]
fn keys_land_on_the_server_of_their_shard() {
    let servers: Vec<TestServer> = (0..3).map(|_| TestServer::start(&[])).collect();
    let client =
        Client::new(servers.iter().map(|s| s.addr.to_string())).expect("valid client settings");
    // The spec's vectors: all three go to the third server of three.
    for key in ["my-key", "foo", "bar"] {
        assert_eq!(client.server_index(key), 2, "{key}");
    }
    let keys: Vec<String> = ["my-key", "foo", "bar"]
        .into_iter()
        .map(String::from)
        .chain((0..12).map(|i| format!("key-{i}")))
        .collect();
    let guards: Vec<_> = keys
        .iter()
        .map(|key| client.lock(key).acquire(Duration::ZERO).expect("acquire"))
        .collect();
    for (index, server) in servers.iter().enumerate() {
        let stats = server.stats();
        for key in &keys {
            let here = stats_entry(&stats, "locks", key).is_some();
            assert_eq!(
                here,
                shard_index(key.as_bytes(), 3) == index,
                "{key} on server {index}"
            );
        }
    }
    assert!(
        (0..3).all(|i| keys.iter().any(|k| shard_index(k.as_bytes(), 3) == i)),
        "every server got a key"
    );
    drop(guards);
}

fn expect_signal(signals: &dflockd::client::Signals, channel: &str, payload: &str) {
    let signal = signals.recv_timeout(PROMPTLY).expect("a signal");
    assert_eq!(
        signal,
        Signal {
            channel: channel.to_owned(),
            payload: payload.to_owned(),
        }
    );
}

#[test]
fn signals_reach_subscribers_and_one_member_of_each_group() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let first = client.signals().expect("subscriber");
    let second = client.signals().expect("subscriber");
    first.listen("orders.*", None).expect("listen");
    first.listen("jobs.>", Some("workers")).expect("listen");
    second.listen("jobs.>", Some("workers")).expect("listen");

    assert_eq!(client.emit("orders.new", " spaced  payload").ok(), Some(1));
    expect_signal(&first, "orders.new", " spaced  payload");
    assert_eq!(client.emit("orders.new.deep", "x").ok(), Some(0));

    assert_eq!(client.emit("jobs.a", "j1").ok(), Some(1));
    assert_eq!(client.emit("jobs.b", "j2").ok(), Some(1));
    let got_first = first.recv_timeout(PROMPTLY).expect("round robin");
    let got_second = second.recv_timeout(PROMPTLY).expect("round robin");
    let mut payloads = [got_first.payload, got_second.payload];
    payloads.sort();
    assert_eq!(payloads, ["j1", "j2"]);

    let stats = client.stats(0).expect("stats");
    let group = stats
        .signal_channels
        .iter()
        .find(|c| c.group.as_deref() == Some("workers"))
        .expect("the group is listed");
    assert_eq!((group.pattern.as_str(), group.listeners), ("jobs.>", 2));

    first.unlisten("orders.*", None).expect("unlisten");
    assert_eq!(client.emit("orders.new", "x").ok(), Some(0));
    assert!(matches!(first.listen("a.>.b", None), Err(Error::Rejected)));
    assert!(matches!(
        first.emit("a.*", "x"),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn pushes_arriving_between_responses_go_to_the_stream() {
    let server = TestServer::start(&[]);
    let client = client(&server);
    let signals = client.signals().expect("subscriber");
    signals.listen("self.>", None).expect("listen");
    for i in 0..200 {
        assert_eq!(signals.emit("self.echo", &i.to_string()).ok(), Some(1));
        if i % 50 == 0 {
            signals.ping().expect("ping between pushes");
        }
    }
    for i in 0..200 {
        expect_signal(&signals, "self.echo", &i.to_string());
    }
}

#[test]
fn the_heartbeat_keeps_an_idle_subscriber_connected() {
    let server = TestServer::start(&["--read-timeout", "1"]);
    let client = Client::builder([server.addr.to_string()])
        .heartbeat(Duration::from_millis(300))
        .build()
        .expect("valid");
    let signals = client.signals().expect("subscriber");
    signals.listen("news", None).expect("listen");
    assert_eq!(
        signals.recv_timeout(Duration::from_secs(3)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(!signals.is_closed());
    assert_eq!(client.emit("news", "still here").ok(), Some(1));
    expect_signal(&signals, "news", "still here");
}

#[test]
fn without_a_heartbeat_the_server_drops_an_idle_subscriber() {
    let server = TestServer::start(&["--read-timeout", "1"]);
    let client = Client::builder([server.addr.to_string()])
        .heartbeat(Duration::from_secs(60))
        .build()
        .expect("valid");
    let signals = client.signals().expect("subscriber");
    signals.listen("news", None).expect("listen");
    assert_eq!(
        signals.recv_timeout(PROMPTLY),
        Err(RecvTimeoutError::Disconnected),
        "the stream ends with the connection"
    );
    assert!(signals.is_closed());
    assert!(matches!(signals.ping(), Err(Error::Closed)));
}

#[test]
fn authentication_uses_the_token_first() {
    let server = TestServer::start(&["--auth-token", "s3cret"]);
    let addr = server.addr.to_string();
    let good = Client::builder([addr.clone()])
        .auth_token(" s3cret\n")
        .build()
        .expect("valid");
    let guard = good.lock("k").acquire(Duration::ZERO).expect("acquire");
    assert_eq!(good.stats(0).expect("stats").locks.len(), 1);
    let signals = good.signals().expect("subscriber");
    signals.listen("a", None).expect("listen");
    drop(guard);

    let wrong = Client::builder([addr.clone()])
        .auth_token("guess")
        .build()
        .expect("valid");
    assert!(matches!(wrong.connect(0), Err(Error::Auth)));
    assert!(matches!(wrong.lock("k").try_acquire(), Err(Error::Auth)));
    let none = Client::new([addr]).expect("valid");
    assert!(matches!(none.stats(0), Err(Error::Auth)));
}

#[test]
fn server_limits_map_to_their_errors() {
    let server = TestServer::start(&["--max-locks", "1", "--max-waiters", "1"]);
    let client = client(&server);
    let held = client.lock("a").acquire(Duration::ZERO).expect("acquire");
    assert!(matches!(
        client.lock("b").try_acquire(),
        Err(Error::MaxLocks)
    ));
    let Enqueued::Queued(_queued) = client.lock("a").enqueue().expect("enqueue") else {
        panic!("held");
    };
    assert!(matches!(
        client.lock("a").try_acquire(),
        Err(Error::MaxWaiters)
    ));
    assert!(matches!(
        client.lock("has space").try_acquire(),
        Err(Error::InvalidInput(_))
    ));
    drop(held);
}

#[test]
fn an_unreachable_server_is_an_io_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let client = Client::new([format!("127.0.0.1:{port}")]).expect("valid");
    assert!(matches!(client.ping(0), Err(Error::Io(_))));
    assert!(matches!(
        client.lock("k").acquire(Duration::ZERO),
        Err(Error::Io(_))
    ));
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in `dir`.
fn self_signed(dir: &TempDir) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
    let cert = dir.file("cert.pem", certified.cert.pem().as_bytes());
    let key = dir.file("key.pem", certified.signing_key.serialize_pem().as_bytes());
    (cert, key)
}

#[test]
fn tls_carries_locks_renewals_and_signals() {
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir);
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let client = Client::builder([server.addr.to_string()])
        .tls_ca_file(&cert)
        .build()
        .expect("valid");
    client.ping(0).expect("ping over TLS");

    let guard = client
        .lock("k")
        .lease(1)
        .acquire(Duration::ZERO)
        .expect("acquire");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(guard.loss(), None, "renewed over TLS");
    assert!(!is_free(&client, "k"));

    let signals = client.signals().expect("subscriber");
    signals.listen("t.>", None).expect("listen");
    let payload = "p".repeat(20_000);
    assert_eq!(signals.emit("t.big", &payload).ok(), Some(1));
    expect_signal(&signals, "t.big", &payload);

    let by_name = Client::builder([format!("localhost:{}", server.addr.port())])
        .tls_ca_file(&cert)
        .build()
        .expect("valid");
    by_name
        .ping(0)
        .expect("the certificate names localhost too");
    drop(guard);
    assert!(is_free(&client, "k"));
}

#[test]
fn tls_refuses_an_untrusted_server_and_plain_clients_fail() {
    let dir = TempDir::new();
    let (cert, key) = self_signed(&dir);
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let other = TempDir::new();
    let (other_cert, _) = self_signed(&other);
    let untrusting = Client::builder([server.addr.to_string()])
        .tls_ca_file(&other_cert)
        .build()
        .expect("valid");
    match untrusting.ping(0) {
        // Both test certificates carry rcgen's default subject, so the trusted one is found by
        // name and its key does not match.
        Err(Error::Certificate(why)) => assert!(why.contains("is not signed by"), "{why}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let wrong_name = Client::builder([server.addr.to_string()])
        .tls_ca_file(&cert)
        .tls_server_name("locks.example")
        .build()
        .expect("valid");
    match wrong_name.ping(0) {
        Err(Error::Certificate(why)) => {
            assert!(why.contains("not valid for \"locks.example\""), "{why}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    let plain = Client::builder([server.addr.to_string()])
        .io_timeout(Duration::from_secs(2))
        .build()
        .expect("valid");
    assert!(plain.ping(0).is_err());
}
