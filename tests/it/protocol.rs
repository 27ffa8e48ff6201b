//! The wire format over TCP: the exact response line of every command, every parse error (which
//! keeps the connection open), line endings, odd keys, integer and white-space syntax, and the
//! per-line length limits (which close the connection).

use crate::support::{Client, TestServer, stats_entry};

/// Whether `token` looks like a lease token: 32 lower-case hex digits.
fn is_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Asserts a grant line with the given status and lease and returns its token.
fn expect_grant(line: &str, status: &str, lease: u64) -> String {
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "grant {line:?}");
    assert_eq!(fields[0], status, "grant {line:?}");
    assert!(is_token(fields[1]), "token in {line:?}");
    assert_eq!(fields[2], lease.to_string(), "lease in {line:?}");
    fields[1].to_string()
}

/// The three lines of a request as raw bytes, each terminated by LF.
fn frame(cmd: &[u8], key: &[u8], arg: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(cmd.len() + key.len() + arg.len() + 3);
    for line in [cmd, key, arg] {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    bytes
}

/// Asserts the connection still answers requests.
fn expect_open(client: &mut Client) {
    assert_eq!(
        client.request("ping", "_", ""),
        "ok",
        "connection should stay open"
    );
}

#[test]
fn lock_commands_answer_the_example_session_lines() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let token = expect_grant(&c.request("l", "my-key", "10"), "ok", 33);
    assert_eq!(c.request("n", "my-key", &token), "ok 33");
    assert_eq!(c.request("n", "my-key", &format!("{token} 60")), "ok 60");
    assert_eq!(c.request("r", "my-key", &token), "ok");
    assert_eq!(c.request("r", "my-key", &token), "error");
    assert_eq!(c.request("n", "my-key", &token), "error");

    let token = expect_grant(&c.request("e", "job", ""), "acquired", 33);
    assert_eq!(expect_grant(&c.request("w", "job", "10"), "ok", 33), token);
    assert_eq!(c.request("w", "job", "10"), "error_not_enqueued");
    expect_grant(&c.request("e", "job2", "12"), "acquired", 12);
    assert_eq!(c.request("e", "job2", "12"), "error_already_enqueued");

    let mut other = server.connect();
    assert_eq!(other.request("l", "job", "0"), "timeout");
    assert_eq!(other.request("e", "job", ""), "queued");
    assert_eq!(other.request("w", "job", "0"), "timeout");
    assert_eq!(other.request("w", "job", "0"), "error_not_enqueued");
}

#[test]
fn semaphore_commands_answer_the_example_session_lines() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let token = expect_grant(&c.request("sl", "pool", "10 3 60"), "ok", 60);
    assert_eq!(c.request("sl", "pool", "0 4"), "error_limit_mismatch");
    assert_eq!(c.request("se", "pool", "4"), "error_limit_mismatch");
    assert_eq!(c.request("sn", "pool", &token), "ok 33");
    assert_eq!(c.request("sn", "pool", &format!("{token} 5")), "ok 5");
    assert_eq!(c.request("sr", "pool", &token), "ok");
    assert_eq!(c.request("sr", "pool", &token), "error");
    assert_eq!(c.request("sn", "pool", &token), "error");

    let token = expect_grant(&c.request("se", "pool", "3"), "acquired", 33);
    assert_eq!(c.request("se", "pool", "3"), "error_already_enqueued");
    assert_eq!(expect_grant(&c.request("sw", "pool", "0"), "ok", 33), token);
    assert_eq!(c.request("sw", "pool", "0"), "error_not_enqueued");
    expect_grant(&c.request("se", "pool", "3 7"), "acquired", 7);

    let mut other = server.connect();
    expect_grant(&other.request("sl", "pool", "0 3"), "ok", 33);
    assert_eq!(other.request("sl", "pool", "0 3"), "timeout");
    assert_eq!(other.request("se", "pool", "3"), "queued");
    assert_eq!(other.request("sw", "pool", "0"), "timeout");
}

#[test]
fn ping_stats_and_unknown_commands() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.request("ping", "_", ""), "ok");
    assert_eq!(c.request("ping", "", ""), "ok");
    assert_eq!(c.request("ping", "any key at all", "any arg"), "ok");
    for (key, arg) in [("_", "_"), ("_", ""), ("", ""), ("x y", "a b c")] {
        let line = c.request("stats", key, arg);
        assert!(line.starts_with("ok {"), "stats reply {line:?}");
        assert!(line.ends_with('}'), "stats reply {line:?}");
    }
    assert_eq!(c.request("L", "k", "1"), "error");
    assert_eq!(c.request("pong", "_", ""), "error");
    expect_open(&mut c);
}

#[test]
fn auth_is_an_error_when_no_token_is_configured() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.request("auth", "_", "secret"), "error");
    assert_eq!(c.request("auth", "_", ""), "error");
    expect_open(&mut c);
}

#[test]
fn every_parse_error_answers_error_and_keeps_the_connection_open() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let cases: &[(&str, &str, &str)] = &[
        // Unknown commands (code 3): exact, case-sensitive match, no surrounding white space.
        ("L", "k", "1"),
        ("l ", "k", "1"),
        (" l", "k", "1"),
        ("", "k", "1"),
        ("lock", "k", "1"),
        ("PING", "_", ""),
        ("Stats", "_", ""),
        ("sig", "ch", "x"),
        // Bad keys (code 5): empty, or containing SP, TAB or an inner CR.
        ("l", "", "1"),
        ("l", "a b", "1"),
        ("l", "a\tb", "1"),
        ("l", "a\rb", "1"),
        ("l", " ", "1"),
        ("r", "", "tok"),
        ("n", "", "tok"),
        ("e", "", ""),
        ("w", "a b", "1"),
        ("sl", "", "0 2"),
        ("sr", "\t", "tok"),
        ("sn", "", "tok"),
        ("se", "a b", "2"),
        ("sw", "", "1"),
        ("listen", "", ""),
        ("unlisten", "a b", ""),
        ("signal", "", "x"),
        // The key is checked before the arguments.
        ("l", "", "not a number"),
        // `l`: 1 or 2 fields, integers, timeout 0..=9223372036, lease 1..=9223372036.
        ("l", "k", ""),
        ("l", "k", "   "),
        ("l", "k", "1 2 3"),
        ("l", "k", "x"),
        ("l", "k", "1.5"),
        ("l", "k", "1e3"),
        ("l", "k", "1_0"),
        ("l", "k", "0x10"),
        ("l", "k", "++1"),
        ("l", "k", "-"),
        ("l", "k", "+"),
        ("l", "k", "- 1"),
        ("l", "k", "-1"),
        ("l", "k", "9223372037"),
        ("l", "k", "9223372036854775808"),
        ("l", "k", "99999999999999999999"),
        ("l", "k", "0 0"),
        ("l", "k", "0 -1"),
        ("l", "k", "0 x"),
        ("l", "k", "0 9223372037"),
        // `r`/`sr`: an empty token.
        ("r", "k", ""),
        ("r", "k", "   "),
        ("sr", "k", ""),
        // `n`/`sn`: 1 or 2 fields, lease in range.
        ("n", "k", ""),
        ("n", "k", "tok 5 6"),
        ("n", "k", "tok 0"),
        ("n", "k", "tok x"),
        ("n", "k", "tok 9223372037"),
        ("sn", "k", ""),
        ("sn", "k", "tok 1 2"),
        ("sn", "k", "tok -5"),
        // `e`: the trimmed arg is one optional lease.
        ("e", "k", "30 junk"),
        ("e", "k", "0"),
        ("e", "k", "-3"),
        ("e", "k", "x"),
        ("e", "k", "9223372037"),
        // `w`/`sw`: one timeout, required.
        ("w", "k", ""),
        ("w", "k", "  "),
        ("w", "k", "1 2"),
        ("w", "k", "-1"),
        ("w", "k", "x"),
        ("w", "k", "9223372037"),
        ("sw", "k", ""),
        ("sw", "k", "1 2"),
        ("sw", "k", "-1"),
        // `sl`: 2 or 3 fields, limit > 0.
        ("sl", "k", ""),
        ("sl", "k", "0"),
        ("sl", "k", "0 2 5 7"),
        ("sl", "k", "0 0"),
        ("sl", "k", "0 -2"),
        ("sl", "k", "0 x"),
        ("sl", "k", "-1 2"),
        ("sl", "k", "0 2 0"),
        ("sl", "k", "0 99999999999999999999"),
        // `se`: 1 or 2 fields, limit > 0, lease in range.
        ("se", "k", ""),
        ("se", "k", "2 5 7"),
        ("se", "k", "0"),
        ("se", "k", "x"),
        ("se", "k", "2 0"),
        // `signal`: literal channel, non-blank payload.
        ("signal", "a.*", "x"),
        ("signal", "a.>", "x"),
        ("signal", "ch", ""),
        ("signal", "ch", " \t "),
        // `listen`/`unlisten`: invalid patterns.
        ("listen", "a*", ""),
        ("listen", "a.>.b", ""),
        ("unlisten", ">.a", ""),
    ];
    for &(cmd, key, arg) in cases {
        assert_eq!(c.request(cmd, key, arg), "error", "{cmd:?} {key:?} {arg:?}");
    }
    // None of the requests above created anything.
    let stats = c.stats();
    for array in [
        "locks",
        "semaphores",
        "idle_locks",
        "idle_semaphores",
        "signal_channels",
    ] {
        assert_eq!(stats[array], serde_json::json!([]), "{array} in {stats}");
    }
}

#[test]
fn semantic_errors_keep_the_connection_open() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let lock = c.lock("k", "0");
    let sem = expect_grant(&c.request("sl", "k", "0 2"), "ok", 33);
    assert_eq!(
        c.request("r", "k", "0123456789abcdef0123456789abcdef"),
        "error"
    );
    assert_eq!(c.request("r", "nosuch", &lock), "error");
    // An inner space makes it a different token.
    assert_eq!(
        c.request("r", "k", &format!("{} {}", &lock[..16], &lock[16..])),
        "error"
    );
    // Tokens are case-sensitive.
    assert_eq!(c.request("r", "k", &lock.to_uppercase()), "error");
    // Tokens are bound to their namespace.
    assert_eq!(c.request("r", "k", &sem), "error");
    assert_eq!(c.request("n", "k", &sem), "error");
    assert_eq!(c.request("sr", "k", &lock), "error");
    assert_eq!(c.request("sn", "k", &lock), "error");
    assert_eq!(c.request("w", "k", "1"), "error_not_enqueued");
    assert_eq!(c.request("sw", "k", "1"), "error_not_enqueued");
    // Surrounding white space around a token is trimmed.
    assert_eq!(c.request("r", "k", &format!("  {lock}\t")), "ok");
    assert_eq!(c.request("sr", "k", &format!(" {sem} ")), "ok");
    expect_open(&mut c);
}

#[test]
fn integer_and_white_space_syntax() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let cases: &[(&str, &str, u64)] = &[
        ("k1", "05", 33),
        ("k2", "+0 +7", 7),
        ("k3", "-0", 33),
        ("k4", "  0    7  ", 7),
        ("k5", "0\t8", 8),
        ("k6", "0\u{a0}9", 9),
        ("k7", "0\u{3000}6", 6),
        ("k8", "0\u{2028}\u{2009}4", 4),
        ("k9", "0 0009223372036", 9_223_372_036),
        ("k10", "9223372036 3", 3),
        ("k11", "0\u{b}\u{c}2", 2),
    ];
    for &(key, arg, lease) in cases {
        expect_grant(&c.request("l", key, arg), "ok", lease);
    }
    expect_grant(&c.request("e", "e1", " 12 "), "acquired", 12);
    expect_grant(&c.request("w", "e1", " +0 "), "ok", 12);
    expect_grant(&c.request("sl", "s1", "0\u{85}2\u{a0}11"), "ok", 11);
    expect_grant(&c.request("se", "s2", " 2   13 "), "acquired", 13);
}

#[test]
fn crlf_line_endings_are_accepted_and_replies_use_lf_only() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let line = c.request_raw(b"l\r\nk\r\n0 5\r\n");
    let token = expect_grant(&line, "ok", 5);
    assert_eq!(c.request_raw(b"ping\r\r\n_\r\n\r\r\r\n"), "ok");
    assert_eq!(
        c.request_raw(format!("n\r\nk\r\n{token} 9\r\n").as_bytes()),
        "ok 9"
    );
    let stats = c.stats();
    assert!(
        stats_entry(&stats, "locks", "k").is_some(),
        "key without CR: {stats}"
    );
    assert_eq!(
        c.request_raw(format!("r\r\nk\r\n{token}\r\n").as_bytes()),
        "ok"
    );
    // A CR inside a line is data: in a key it is invalid.
    assert_eq!(c.request_raw(b"l\r\na\rb\r\n0\r\n"), "error");
    expect_open(&mut c);
}

#[test]
fn empty_key_and_arg_lines_are_lines() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.request_raw(b"ping\n\n\n"), "ok");
    assert!(c.request_raw(b"stats\n\n\n").starts_with("ok {"));
    expect_grant(&c.request_raw(b"e\nk\n\n"), "acquired", 33);
    assert_eq!(c.request_raw(b"l\n\n0\n"), "error");
    assert_eq!(c.request_raw(b"\n\n\n"), "error");
    expect_open(&mut c);
}

#[test]
fn keys_may_hold_nul_and_unicode_spaces() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    let nul = expect_grant(&c.request_raw(&frame(b"l", b"a\0b", b"0")), "ok", 33);
    let nbsp = expect_grant(&c.request("l", "a\u{a0}b", "0"), "ok", 33);
    let vt = expect_grant(&c.request("l", "a\u{b}\u{c}b", "0"), "ok", 33);
    // Each is its own key, distinct from the plain one.
    let plain = expect_grant(&c.request("l", "ab", "0"), "ok", 33);
    assert_eq!(c.request_raw(&frame(b"l", b"a\0b", b"0")), "timeout");
    assert_eq!(c.request("l", "a\u{a0}b", "0"), "timeout");
    let stats = c.stats();
    assert!(stats_entry(&stats, "locks", "a\0b").is_some(), "{stats}");
    assert!(
        stats_entry(&stats, "locks", "a\u{a0}b").is_some(),
        "{stats}"
    );
    // Invalid UTF-8 in a key is accepted and shown as U+FFFD in stats.
    expect_grant(&c.request_raw(&frame(b"l", b"x\xffy", b"0")), "ok", 33);
    let stats = c.stats();
    assert!(
        stats_entry(&stats, "locks", "x\u{fffd}y").is_some(),
        "{stats}"
    );
    for (key, token) in [(&b"a\0b"[..], &nul), ("a\u{a0}b".as_bytes(), &nbsp)] {
        assert_eq!(c.request_raw(&frame(b"r", key, token.as_bytes())), "ok");
    }
    assert_eq!(c.request("r", "a\u{b}\u{c}b", &vt), "ok");
    assert_eq!(c.request("r", "ab", &plain), "ok");
}

/// A line of `len` bytes of `fill`.
fn line_of(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

#[test]
fn lines_of_256_bytes_are_accepted() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    // Command line: 256 bytes is read (an unknown command), the connection stays open.
    assert_eq!(
        c.request_raw(&frame(&line_of(256, b'x'), b"k", b"1")),
        "error"
    );
    // CRs count towards the limit but are stripped before the command is looked up.
    let mut ping = b"ping".to_vec();
    ping.extend(line_of(252, b'\r'));
    assert_eq!(c.request_raw(&frame(&ping, b"_", b"")), "ok");
    // Key line.
    let key = line_of(256, b'k');
    expect_grant(&c.request_raw(&frame(b"l", &key, b"0")), "ok", 33);
    let stats = c.stats();
    let key_text = String::from_utf8(key).unwrap();
    assert!(stats_entry(&stats, "locks", &key_text).is_some(), "{stats}");
    let mut key = line_of(255, b'j');
    key.push(b'\r');
    expect_grant(&c.request_raw(&frame(b"l", &key, b"0")), "ok", 33);
    // Arg line: "0", 254 spaces, "5".
    let mut arg = b"0".to_vec();
    arg.extend(line_of(254, b' '));
    arg.push(b'5');
    assert_eq!(arg.len(), 256);
    expect_grant(&c.request_raw(&frame(b"l", b"arg", &arg)), "ok", 5);
    let mut arg = b"0".to_vec();
    arg.extend(line_of(255, b'\r'));
    expect_grant(&c.request_raw(&frame(b"l", b"arg-cr", &arg)), "ok", 33);
    // Unknown commands and ignored lines are bound by the same limit but accepted at 256.
    assert_eq!(
        c.request_raw(&frame(b"nope", b"k", &line_of(256, b'a'))),
        "error"
    );
    assert!(
        c.request_raw(&frame(b"stats", &line_of(256, b'a'), &line_of(256, b'a')))
            .starts_with("ok {")
    );
    expect_open(&mut c);
}

#[test]
fn a_257_byte_line_is_answered_error_and_closes_the_connection() {
    let server = TestServer::start(&[]);
    let long = line_of(257, b'x');
    let mut key_with_cr = line_of(256, b'k');
    key_with_cr.push(b'\r');
    let mut ping_with_crs = b"ping".to_vec();
    ping_with_crs.extend(line_of(253, b'\r'));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("command line", frame(&long, b"k", b"1")),
        ("command line of CRs", frame(&ping_with_crs, b"_", b"")),
        ("key line", frame(b"l", &long, b"0")),
        ("key line with CR", frame(b"l", &key_with_cr, b"0")),
        ("arg line", frame(b"l", b"k", &long)),
        ("ping arg line", frame(b"ping", b"_", &long)),
        ("stats key line", frame(b"stats", &long, b"_")),
        ("unknown command arg line", frame(b"nope", b"k", &long)),
        // Only `signal` exactly (after CR stripping) gets the 64 KiB arg limit.
        ("`signal ` arg line", frame(b"signal ", b"ch", &long)),
        ("listen arg line", frame(b"listen", b"ch", &long)),
        ("the spec's example", frame(&line_of(300, b'x'), b"k", b"1")),
    ];
    for (what, bytes) in cases {
        let mut c = server.connect();
        // A valid request first, pipelined with the bad one, is still answered.
        let mut both = frame(b"ping", b"_", b"");
        both.extend_from_slice(&bytes);
        // Requests after the bad line are never read.
        both.extend_from_slice(&frame(b"ping", b"_", b""));
        c.send_raw(&both);
        assert_eq!(c.read_line(), "ok", "{what}");
        assert_eq!(c.read_line(), "error", "{what}");
        c.expect_closed();
    }
    // The server itself is unaffected.
    expect_open(&mut server.connect());
}

#[test]
fn signal_and_auth_arg_lines_may_hold_64_kib() {
    let server = TestServer::start(&[]);
    let mut subscriber = server.connect();
    assert_eq!(subscriber.request("listen", "ch", ""), "ok");
    let mut c = server.connect();

    // The longest payload whose `sig ch <payload>` push fits in 64 KiB.
    let payload = line_of(65_536 - 5 - 2, b'p');
    assert_eq!(c.request_raw(&frame(b"signal", b"ch", &payload)), "ok 1");
    let push = subscriber.read_line();
    assert_eq!(push.len(), 65_536);
    assert_eq!(push.as_bytes(), [&b"sig ch "[..], &payload].concat());

    // One byte more: too long to push, refused, but the line itself was legal.
    let payload = line_of(65_536 - 5 - 1, b'p');
    assert_eq!(c.request_raw(&frame(b"signal", b"ch", &payload)), "error");
    assert_eq!(
        c.request_raw(&frame(b"signal", b"ch", &line_of(65_536, b'p'))),
        "error"
    );
    // A trailing CR on the command still selects the 64 KiB limit.
    assert_eq!(
        c.request_raw(&frame(b"signal\r", b"ch", &line_of(65_536, b'p'))),
        "error"
    );
    assert_eq!(
        c.request_raw(&frame(b"auth", b"_", &line_of(65_536, b'a'))),
        "error"
    );
    // None of the refused signals reached the subscriber: the next push it sees is this one.
    assert_eq!(c.request("signal", "ch", "last"), "ok 1");
    assert_eq!(subscriber.read_line(), "sig ch last");

    for cmd in [&b"signal"[..], b"auth"] {
        let mut c = server.connect();
        assert_eq!(
            c.request_raw(&frame(cmd, b"ch", &line_of(65_537, b'p'))),
            "error"
        );
        c.expect_closed();
    }
}

#[test]
fn pipelined_maximum_size_requests_are_all_answered() {
    let server = TestServer::start(&[]);
    let mut c = server.connect();
    // Ten of the longest legal requests in one write: about 650 KB, several input buffers' worth.
    let one = frame(b"signal", b"ch", &line_of(65_536 - 5 - 2, b'p'));
    c.send_raw(&one.repeat(10));
    for i in 0..10 {
        assert_eq!(c.read_line(), "ok 0", "request {i}");
    }
}
