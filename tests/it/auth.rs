//! Authentication when a token is configured (spec §7.9, §14, §17.3): the first request must be
//! a matching `auth`; anything else is answered `error_auth` and closed about 100 ms later. Also
//! where the token comes from, the start-up errors a bad token causes, and that it is never
//! logged.

use std::time::{Duration, Instant};

use crate::support::{Client, TempDir, TestServer, start_up_error};

const TOKEN: &str = "s3cret";

/// Command-line arguments of one server start.
type Args<'a> = &'a [&'a str];
/// Environment variables of one server start.
type Env<'a> = &'a [(&'a str, &'a str)];

/// `auth` with `token` must be accepted.
fn accepted(server: &TestServer, token: &str) {
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", token), "ok", "token {token:?}");
    assert_eq!(c.request("ping", "_", ""), "ok");
}

/// `auth` with `token` must be refused.
fn refused(server: &TestServer, token: &str) {
    let mut c = server.connect();
    assert_eq!(
        c.request("auth", "_", token),
        "error_auth",
        "token {token:?}"
    );
}

/// Reads the reply to a first request that must fail authentication, then checks that the
/// connection is closed, and not at once: the spec asks for a pause of about 100 ms.
fn expect_auth_failure(c: &mut Client, what: &str) {
    assert_eq!(c.read_line(), "error_auth", "{what}");
    let replied = Instant::now();
    c.expect_closed();
    let pause = replied.elapsed();
    assert!(
        pause >= Duration::from_millis(50),
        "{what}: closed {pause:?} after error_auth, expected about 100 ms"
    );
}

#[test]
fn a_matching_auth_opens_the_connection() {
    let server = TestServer::start(&["--auth-token", TOKEN]);
    let mut c = server.connect();
    // The offered token is trimmed of surrounding white space; the key line is ignored.
    assert_eq!(c.request("auth", "", &format!("  {TOKEN}\t")), "ok");
    assert_eq!(c.request("ping", "_", ""), "ok");
    c.lock("k", "0");
    // Authentication happens once; a second `auth` is an ordinary error.
    assert_eq!(c.request("auth", "_", TOKEN), "error");
    assert_eq!(c.request("auth", "_", "wrong"), "error");
    assert_eq!(c.request("ping", "_", ""), "ok");
    // CRLF line endings work for `auth` as for every request.
    let mut crlf = server.connect();
    assert_eq!(crlf.request_raw(b"auth\r\n_\r\ns3cret\r\n"), "ok");
    // Other connections still have to authenticate.
    let mut other = server.connect();
    other.send("ping", "_", "");
    expect_auth_failure(&mut other, "ping on a second connection");
}

#[test]
fn anything_but_a_matching_auth_first_is_error_auth_then_close() {
    let server = TestServer::start(&["--auth-token", TOKEN]);
    let long = "x".repeat(300);
    let too_long_token = "t".repeat(65_537);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("wrong token", b"auth\n_\nwrong\n".to_vec()),
        ("empty token", b"auth\n_\n\n".to_vec()),
        ("token with a suffix", b"auth\n_\ns3cret2\n".to_vec()),
        ("token prefix", b"auth\n_\ns3cre\n".to_vec()),
        ("differently cased", b"auth\n_\nS3CRET\n".to_vec()),
        ("ping first", b"ping\n_\n\n".to_vec()),
        ("stats first", b"stats\n_\n_\n".to_vec()),
        ("lock first", b"l\nk\n0\n".to_vec()),
        ("unknown command", b"nope\n_\n\n".to_vec()),
        ("malformed lock", b"l\n\nx\n".to_vec()),
        ("`auth` misspelled", b"Auth\n_\ns3cret\n".to_vec()),
        ("over-long command line", format!("{long}\n").into_bytes()),
        (
            "over-long key line",
            format!("ping\n{long}\n\n").into_bytes(),
        ),
        (
            "over-long token line",
            format!("auth\n_\n{too_long_token}\n").into_bytes(),
        ),
        // A correct `auth` pipelined behind a failed first request is never looked at.
        (
            "ping, then the right token",
            format!("ping\n_\n\nauth\n_\n{TOKEN}\nping\n_\n\n").into_bytes(),
        ),
    ];
    // One thread per connection, so each reply is read (and the pause timed) as it arrives.
    std::thread::scope(|scope| {
        for (what, bytes) in &cases {
            let mut c = server.connect();
            scope.spawn(move || {
                c.send_raw(bytes);
                expect_auth_failure(&mut c, what);
            });
        }
    });
    // Nothing the refused requests asked for happened.
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", TOKEN), "ok");
    assert_eq!(c.stats()["locks"], serde_json::json!([]));
}

#[test]
fn a_read_timeout_before_auth_is_error_auth() {
    let server = TestServer::start(&["--auth-token", TOKEN, "--read-timeout", "1"]);
    let mut idle = server.connect();
    let mut half_sent = server.connect();
    half_sent.send_raw(b"auth\n_\n");
    std::thread::scope(|scope| {
        scope.spawn(|| expect_auth_failure(&mut idle, "idle before auth"));
        scope.spawn(|| expect_auth_failure(&mut half_sent, "half-sent auth"));
    });
}

#[test]
fn auth_is_an_ordinary_error_without_a_token() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", TOKEN), "error");
    assert_eq!(c.request("auth", "_", ""), "error");
    assert_eq!(c.request("ping", "_", ""), "ok");
}

#[test]
fn the_token_may_come_from_a_file_with_surrounding_white_space() {
    let dir = TempDir::new();
    let file = dir.file("token", b"\n  tok from file \t\r\n\n");
    let server = TestServer::start(&["--auth-token-file", &file]);
    accepted(&server, "tok from file");
    accepted(&server, " tok from file  ");
    refused(&server, "tok");
    refused(&server, "tok  from file");
}

#[test]
fn a_64_kib_token_fits_the_auth_line() {
    let dir = TempDir::new();
    let token = "k".repeat(65_536);
    let file = dir.file("token", token.as_bytes());
    let server = TestServer::start(&["--auth-token-file", &file]);
    accepted(&server, &token);
    refused(&server, &token[1..]);
}

#[test]
fn token_sources_take_precedence_in_order() {
    let dir = TempDir::new();
    let flag_file = dir.file("flag-token", b"from-flag-file\n");
    let env_file = dir.file("env-token", b"from-env-file\n");
    let every_env = [
        ("DFLOCKD_AUTH_TOKEN", "from-env"),
        ("DFLOCKD_AUTH_TOKEN_FILE", env_file.as_str()),
    ];
    let cases: &[(Args, Env, &str)] = &[
        (
            &["--auth-token", "from-flag", "--auth-token-file", &flag_file],
            &every_env,
            "from-flag",
        ),
        (
            &["--auth-token-file", &flag_file],
            &every_env,
            "from-flag-file",
        ),
        (&[], &every_env, "from-env"),
        (&[], &every_env[1..], "from-env-file"),
        // An empty variable counts as unset.
        (
            &[],
            &[("DFLOCKD_AUTH_TOKEN", ""), every_env[1]],
            "from-env-file",
        ),
    ];
    let all = ["from-flag", "from-flag-file", "from-env", "from-env-file"];
    for &(args, env, winner) in cases {
        let server = TestServer::start_with_env(args, env);
        accepted(&server, winner);
        for loser in all.iter().filter(|&&t| t != winner) {
            refused(&server, loser);
        }
    }
    // Empty variables only: authentication is off.
    let server = TestServer::start_with_env(
        &[],
        &[("DFLOCKD_AUTH_TOKEN", ""), ("DFLOCKD_AUTH_TOKEN_FILE", "")],
    );
    assert_eq!(server.connect().request("ping", "_", ""), "ok");
}

#[test]
fn an_unusable_token_is_a_start_up_error() {
    let dir = TempDir::new();
    let empty = dir.file("empty", b"");
    let blank = dir.file("blank", b" \n\t\r\n");
    let inner_newline = dir.file("inner-newline", b"first\nsecond\n");
    let missing = dir.path("no-such-file");
    let cases: &[(Args, Env)] = &[
        (&["--auth-token-file", &empty], &[]),
        (&["--auth-token-file", &blank], &[]),
        (&["--auth-token-file", &inner_newline], &[]),
        (&["--auth-token-file", &missing], &[]),
        (&[], &[("DFLOCKD_AUTH_TOKEN_FILE", &missing)]),
        (&[], &[("DFLOCKD_AUTH_TOKEN_FILE", &empty)]),
        (&["--auth-token", "   "], &[]),
        (&["--auth-token", "bad\rtoken"], &[]),
        (&[], &[("DFLOCKD_AUTH_TOKEN", "bad\ntoken")]),
        (&[], &[("DFLOCKD_AUTH_TOKEN", "bad\rtoken")]),
        (&[], &[("DFLOCKD_AUTH_TOKEN", " \t ")]),
    ];
    for &(args, env) in cases {
        let stderr = start_up_error(args, env);
        assert!(
            stderr.contains("configuration error"),
            "{args:?} {env:?}: {stderr}"
        );
        // The message explains without repeating the secret.
        for secret in ["bad\ntoken", "bad\rtoken", "first", "second"] {
            assert!(!stderr.contains(secret), "{args:?} {env:?}: {stderr}");
        }
    }
}

#[test]
fn the_token_is_never_logged() {
    let secret = "hunter2-d9c1f0";
    let guess = "hunter3-guess";
    let server = TestServer::start(&["--debug", "--auth-token", secret]);
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", secret), "ok");
    assert_eq!(c.request("auth", "_", secret), "error");
    c.lock("k", "0");
    let mut wrong = server.connect();
    wrong.send("auth", "_", guess);
    expect_auth_failure(&mut wrong, "wrong token");
    let mut late = server.connect();
    late.send("ping", "_", secret);
    expect_auth_failure(&mut late, "ping carrying the token");
    // A request logged after the others shows the log has caught up.
    assert_eq!(c.request("signal", "log-marker", "x"), "ok 0");
    server.wait_for_log("log-marker", Duration::from_secs(5));
    let log = server.log();
    assert!(
        log.iter()
            .any(|line| line.contains("authentication failed")),
        "failed authentication is logged: {log:#?}"
    );
    for line in &log {
        assert!(
            !line.contains(secret) && !line.contains(guess),
            "a token reached the log: {line}"
        );
    }
}

#[test]
fn sighup_reads_the_token_file_again_without_dropping_anyone() {
    let dir = TempDir::new();
    let file = dir.file("token", b"first\n");
    let server = TestServer::start(&["--auth-token-file", &file]);
    let mut early = server.connect();
    assert_eq!(early.request("auth", "_", "first"), "ok");
    let lock = early.lock("k", "0");

    dir.file("token", b"second\n");
    server.hangup();
    server.wait_for_log(
        "new auth requests need the new token",
        Duration::from_secs(5),
    );
    refused(&server, "first");
    accepted(&server, "second");
    // Authenticated before the reload: still authenticated, still holding.
    assert_eq!(early.request("r", "k", &lock), "ok");

    // A file that no longer holds a usable token keeps the one in use.
    dir.file("token", b"  \n");
    server.hangup();
    server.wait_for_log("keeping the old auth token", Duration::from_secs(5));
    accepted(&server, "second");
}

#[test]
fn sighup_with_nothing_to_reload_keeps_serving() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let lock = c.lock("k", "0");
    server.hangup();
    server.wait_for_log("received SIGHUP: nothing to reload", Duration::from_secs(5));
    assert_eq!(c.request("r", "k", &lock), "ok");
}
