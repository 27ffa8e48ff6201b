//! Graceful shutdown on SIGTERM (spec §16): blocked waits are cancelled with `error`, the
//! listener closes, later requests get `error_draining` and a close, idle connections are left
//! alone until `--shutdown-timeout`, and the process exits 0 once the last connection is gone.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{TestServer, grant, lock_waiters, wait_until};

/// How long a test waits for the process to exit once it should.
const EXIT: Duration = Duration::from_secs(5);

/// Waits until the server has begun its drain, which the closed listener shows.
fn wait_for_drain(server: &TestServer) {
    wait_until("the listener closes", EXIT, || {
        TcpStream::connect(server.addr).is_err()
    });
}

#[test]
fn sigterm_drains_connections_and_exits_zero_when_the_last_one_closes() {
    let mut server = TestServer::start(&[]);
    let mut idle = server.connect();
    let mut holder = server.connect();
    holder.lock("k", "0");
    let mut waiter = server.connect();
    waiter.send("l", "k", "30");
    wait_until("the waiter queues", Duration::from_secs(2), || {
        lock_waiters(&server, "k") == 1
    });
    assert_eq!(idle.request("ping", "_", ""), "ok");

    server.terminate();
    // The blocked acquire is cancelled; its connection stays open.
    assert_eq!(waiter.read_line(), "error");
    // The listener is closed.
    let refused = TcpStream::connect(server.addr)
        .map(|_| ())
        .map_err(|e| e.kind());
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    // Every later request is answered `error_draining`, then the connection closes.
    assert_eq!(idle.request("ping", "_", ""), "error_draining");
    idle.expect_closed();
    assert_eq!(waiter.request("l", "k2", "0"), "error_draining");
    waiter.expect_closed();
    // An idle connection is left alone (a short quiet period: proving nothing happens), and
    // the process waits for it.
    holder.expect_silence(Duration::from_millis(300));
    assert!(!server.has_exited(), "exited while a connection was open");
    drop(holder);
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigterm_or_sigint_with_no_connections_exits_zero() {
    let mut server = TestServer::start(&[]);
    server.terminate();
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");

    let mut server = TestServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.request("ping", "_", ""), "ok");
    server.interrupt();
    wait_for_drain(&server);
    assert_eq!(c.request("ping", "_", ""), "error_draining");
    c.expect_closed();
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn the_shutdown_timeout_force_closes_idle_connections() {
    let mut server = TestServer::start(&["--shutdown-timeout", "1"]);
    let mut idle = server.connect();
    let mut holder = server.connect();
    holder.lock("k", "0");
    assert_eq!(idle.request("ping", "_", ""), "ok");
    let start = Instant::now();
    server.terminate();
    // Closed without a message once the timeout passes.
    idle.expect_closed();
    holder.expect_closed();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn pipelined_requests_during_a_drain_get_one_error_draining() {
    let mut server = TestServer::start(&[]);
    let mut c = server.connect();
    let mut waiter = server.connect();
    c.lock("k", "0");
    waiter.send("l", "k", "30");
    wait_until("the waiter queues", Duration::from_secs(2), || {
        lock_waiters(&server, "k") == 1
    });
    server.terminate();
    assert_eq!(waiter.read_line(), "error");
    // Pipelined requests: the first gets `error_draining`, nothing after it is answered.
    c.send_raw(b"ping\n_\n\nping\n_\n\n");
    assert_eq!(c.read_line(), "error_draining");
    c.expect_closed();
    drop(waiter);
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn every_kind_of_blocked_wait_is_cancelled_with_error() {
    let mut server = TestServer::start(&[]);
    let mut holder = server.connect();
    holder.lock("k", "0");
    grant(&holder.request("sl", "pool", "0 1"));
    let mut lock_waiter = server.connect();
    lock_waiter.send("l", "k", "30");
    let mut sem_waiter = server.connect();
    sem_waiter.send("sl", "pool", "30 1");
    let mut two_phase = server.connect();
    assert_eq!(two_phase.request("e", "k", ""), "queued");
    two_phase.send("w", "k", "30");
    let mut sem_two_phase = server.connect();
    assert_eq!(sem_two_phase.request("se", "pool", "1"), "queued");
    sem_two_phase.send("sw", "pool", "30");
    // A request half sent when the signal arrives.
    let mut half_sent = server.connect();
    half_sent.send_raw(b"ping\n_\n");
    wait_until("all four wait", Duration::from_secs(2), || {
        lock_waiters(&server, "k") == 2 && lock_waiters(&server, "pool") == 2
    });
    server.terminate();
    for waiter in [
        &mut lock_waiter,
        &mut sem_waiter,
        &mut two_phase,
        &mut sem_two_phase,
    ] {
        assert_eq!(waiter.read_line(), "error");
    }
    half_sent.send_raw(b"\n");
    assert_eq!(half_sent.read_line(), "error_draining");
    half_sent.expect_closed();
    drop((holder, lock_waiter, sem_waiter, two_phase, sem_two_phase));
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn idle_connections_still_end_by_read_timeout_while_draining() {
    let mut server = TestServer::start(&["--read-timeout", "1", "--shutdown-timeout", "0"]);
    let mut idle = server.connect();
    assert_eq!(idle.request("ping", "_", ""), "ok");
    server.terminate();
    wait_for_drain(&server);
    assert_eq!(idle.read_line(), "error");
    idle.expect_closed();
    let status = server.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{status}");
}
