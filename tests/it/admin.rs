//! The admin token and `evict`/`sevict` over real TCP against the real binary: who may evict
//! (an admin connection only, never without an admin token), what an eviction does to holders
//! and waiters, that 1.x answers to `auth` do not change, the start-up refusal of an admin token
//! equal to the auth token, and the admin token file read again on SIGHUP.

use std::time::Duration;

use dflockd::client::Info;

use crate::support::{Client, TempDir, TestServer, grant, start_up_error};

const TOKEN: &str = "s3cret";
const ADMIN: &str = "adm1n-secret";

/// A connection authenticated with `token`.
fn authenticated(server: &TestServer, token: &str) -> Client {
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", token), "ok", "auth {token}");
    c
}

fn info(c: &mut Client) -> Info {
    let line = c.request("info", "_", "");
    let json = line.strip_prefix("ok ").expect("ok <json>");
    serde_json::from_str(json).expect("info JSON")
}

#[test]
fn only_a_connection_that_sent_the_admin_token_may_evict() {
    let server = TestServer::start(&["--auth-token", TOKEN, "--admin-token", ADMIN]);
    let mut holder = authenticated(&server, TOKEN);
    let mut waiter = authenticated(&server, TOKEN);
    let mut user = authenticated(&server, TOKEN);
    let token = holder.lock("k", "0 30");
    waiter.send("l", "k", "30 5");

    for arg in [token.as_str(), &token[..16], "*"] {
        assert_eq!(user.request("evict", "k", arg), "error", "{arg}");
    }
    assert!(user.request("check", "k", &token).starts_with("ok "));

    let mut admin = authenticated(&server, ADMIN);
    assert_eq!(admin.request("evict", "k", &token), "ok 1");
    let (granted, lease) = grant(&waiter.read_line());
    assert_eq!(lease, 5);
    assert_eq!(user.request("check", "k", &token), "stale");
    assert_eq!(holder.request("r", "k", &token), "error");
    assert_eq!(holder.request("n", "k", &token), "error");
    // Nothing left to match.
    assert_eq!(admin.request("evict", "k", &token), "ok 0");
    assert_eq!(admin.request("sevict", "k", "*"), "ok 0");
    assert_eq!(admin.request("evict", "k", "not-a-token"), "error");
    assert_eq!(waiter.request("r", "k", &granted), "ok");
    assert_eq!(info(&mut admin).lock.evictions, 1);

    // An authenticated connection becomes an admin by sending the admin token later; the
    // auth token a second time stays an error, as in 1.x.
    assert_eq!(user.request("auth", "_", TOKEN), "error");
    assert_eq!(user.request("auth", "_", "wrong"), "error");
    assert_eq!(user.request("auth", "_", ADMIN), "ok");
    assert_eq!(user.request("auth", "_", ADMIN), "error");
    let held = holder.lock("k", "0");
    assert_eq!(user.request("evict", "k", "*"), "ok 1");
    assert_eq!(holder.request("r", "k", &held), "error");
}

#[test]
fn without_an_admin_token_evict_is_always_an_error() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let token = c.lock("k", "0");
    assert_eq!(c.request("evict", "k", "*"), "error");
    assert_eq!(c.request("evict", "k", &token), "error");
    // `auth` is not an operation on a server without tokens (spec §7.9).
    assert_eq!(c.request("auth", "_", "anything"), "error");
    assert_eq!(c.request("evict", "k", "*"), "error");
    assert_eq!(c.request("r", "k", &token), "ok");

    let with_auth = TestServer::start(&["--auth-token", TOKEN]);
    let mut c = authenticated(&with_auth, TOKEN);
    c.lock("k", "0");
    assert_eq!(c.request("sevict", "k", "*"), "error");
    assert_eq!(c.request("evict", "k", "*"), "error");
}

#[test]
fn an_admin_token_alone_leaves_other_connections_open_as_before() {
    let server = TestServer::start(&["--debug", "--admin-token", ADMIN]);
    let mut user = server.connect();
    // No auth needed, and a wrong `auth` is the 1.x `error` with the connection kept.
    let token = user.lock("pool", "0");
    assert_eq!(user.request("auth", "_", "guess"), "error");
    assert_eq!(user.request("ping", "_", ""), "ok");
    assert_eq!(user.request("evict", "pool", "*"), "error");

    let mut admin = authenticated(&server, ADMIN);
    let sem: Vec<String> = (0..2)
        .map(|_| grant(&admin.request("sl", "sem", "0 2")).0)
        .collect();
    assert_eq!(admin.request("sevict", "sem", "*"), "ok 2");
    for token in &sem {
        assert_eq!(admin.request("scheck", "sem", token), "stale");
    }
    assert_eq!(admin.request("evict", "pool", &token[..16]), "ok 1");
    assert_eq!(user.request("r", "pool", &token), "error");
    let log_marker = admin.request("signal", "admin-log-marker", "x");
    assert_eq!(log_marker, "ok 0");
    server.wait_for_log("admin-log-marker", Duration::from_secs(5));
    for line in server.log() {
        assert!(
            !line.contains(ADMIN),
            "the admin token reached the log: {line}"
        );
    }
}

#[test]
fn an_admin_token_equal_to_the_auth_token_stops_the_server() {
    let error = start_up_error(&["--auth-token", TOKEN, "--admin-token", TOKEN], &[]);
    assert!(error.contains("admin token"), "{error}");
    assert!(!error.contains(TOKEN), "{error}");
}

#[test]
fn sighup_reads_the_admin_token_file_again() {
    let dir = TempDir::new();
    let file = dir.file("admin", b"first-admin\n");
    let server = TestServer::start(&["--auth-token", TOKEN, "--admin-token-file", &file]);
    let mut early = authenticated(&server, "first-admin");

    dir.file("admin", b"second-admin\n");
    server.hangup();
    server.wait_for_log("new admin auth requests", Duration::from_secs(5));
    let mut late = authenticated(&server, "second-admin");
    let token = late.lock("k", "0");
    // An admin before the reload stays one.
    assert_eq!(early.request("evict", "k", &token), "ok 1");
    let mut old = server.connect();
    assert_eq!(old.request("auth", "_", "first-admin"), "error_auth");

    // A file that would make the admin token the auth token keeps the old one.
    dir.file("admin", format!("{TOKEN}\n").as_bytes());
    server.hangup();
    server.wait_for_log(
        "keeping the old auth and admin tokens",
        Duration::from_secs(5),
    );
    let mut admin = authenticated(&server, "second-admin");
    assert_eq!(admin.request("evict", "k", "*"), "ok 0");
    let mut user = authenticated(&server, TOKEN);
    assert_eq!(user.request("evict", "k", "*"), "error");
}
