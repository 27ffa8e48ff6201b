//! The binary's configuration surface (spec §17): `--help`, `--version`, start-up errors that
//! name the bad flag or variable, and the precedence flag > environment > default.

use std::time::Duration;

use crate::support::{TestServer, grant, run_dflockd};

/// The lease `l` grants without an explicit one, i.e. the effective `--default-lease-ttl`.
fn default_lease(server: &TestServer) -> u64 {
    grant(&server.connect().request("l", "k", "0")).1
}

#[test]
fn help_prints_usage_and_exits_zero() {
    let out = run_dflockd(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--host",
        "--port",
        "--default-lease-ttl",
        "--max-locks",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-waiters",
        "--read-timeout",
        "--shutdown-timeout",
        "--auto-release-on-disconnect",
        "--auth-token",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn version_prints_the_version_and_exits_zero() {
    let out = run_dflockd(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text:?}");
}

#[test]
fn an_invalid_environment_variable_is_a_start_up_error_naming_it() {
    for (name, value) in [
        ("DFLOCKD_PORT", "x"),
        ("DFLOCKD_PORT", "65536"),
        ("DFLOCKD_MAX_LOCKS", "0"),
        ("DFLOCKD_READ_TIMEOUT_S", "9223372037"),
        ("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "maybe"),
    ] {
        let out = run_dflockd(&["--host", "127.0.0.1"], &[(name, value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}={value}: {stderr}");
        assert!(
            stderr.starts_with("configuration error: ") && stderr.contains(name),
            "{name}={value}: {stderr}"
        );
    }
}

#[test]
fn an_invalid_flag_is_a_start_up_error_naming_it() {
    for args in [
        &["--read-timeout", "0"][..],
        &["--default-lease-ttl", "x"],
        &["--shutdown-timeout", "9223372037"],
        &["--max-locks=-1"],
    ] {
        let out = run_dflockd(args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: {stderr}"
        );
        let flag = args[0].split('=').next().unwrap_or_default();
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    let out = run_dflockd(&["--no-such-flag"], &[]);
    assert!(matches!(out.status.code(), Some(1 | 2)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn a_negative_value_given_as_a_separate_argument_is_reported_against_its_flag() {
    // `--name value` is a supported form (spec §17.1), so `-1` here is the flag's value, not
    // an option of its own.
    let out = run_dflockd(&["--max-locks", "-1"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{stderr}");
    assert!(
        stderr.contains("--max-locks"),
        "the message should name --max-locks: {stderr}"
    );
}

#[test]
fn the_command_line_beats_the_environment_which_beats_the_default() {
    let env = [("DFLOCKD_DEFAULT_LEASE_TTL_S", "50")];
    assert_eq!(default_lease(&TestServer::start(&[])), 33);
    assert_eq!(default_lease(&TestServer::start_with_env(&[], &env)), 50);
    let both = TestServer::start_with_env(&["--default-lease-ttl", "7"], &env);
    assert_eq!(default_lease(&both), 7);
    let attached = TestServer::start_with_env(&["--default-lease-ttl=8"], &env);
    assert_eq!(default_lease(&attached), 8);
    // An empty variable counts as unset.
    let empty = TestServer::start_with_env(&[], &[("DFLOCKD_DEFAULT_LEASE_TTL_S", "")]);
    assert_eq!(default_lease(&empty), 33);
}

#[test]
fn boolean_settings_take_flags_and_variables() {
    // With auto-release off, a departed holder's lock stays held.
    let holder_leaves = |server: &TestServer| {
        server.connect().lock("k", "0 30");
        let mut other = server.connect();
        // The server may need a moment to notice the holder left; a short wait suffices.
        other.request("l", "k", "1")
    };
    let off = TestServer::start_with_env(&[], &[("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "No")]);
    assert_eq!(holder_leaves(&off), "timeout");
    let flag_wins = TestServer::start_with_env(
        &["--auto-release-on-disconnect=true"],
        &[("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "0")],
    );
    assert!(holder_leaves(&flag_wins).starts_with("ok "));
    let negated = TestServer::start_with_env(
        &["--no-auto-release-on-disconnect"],
        &[("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "yes")],
    );
    assert_eq!(holder_leaves(&negated), "timeout");
}

#[test]
fn deprecated_variables_and_http_flags_start_with_a_warning() {
    let server = TestServer::start_with_env(
        &["--http-port", "8080"],
        &[
            ("DFLOCKD_GC_LOOP_SLEEP", "2"),
            ("DFLOCKD_GC_MAX_UNUSED_TIME", "3"),
        ],
    );
    let wait = std::time::Duration::from_secs(5);
    server.wait_for_log("DFLOCKD_GC_LOOP_SLEEP", wait);
    server.wait_for_log("DFLOCKD_GC_MAX_UNUSED_TIME", wait);
    server.wait_for_log("--http-port", wait);
    assert_eq!(server.connect().request("ping", "_", ""), "ok");
}

#[test]
fn a_misspelt_variable_is_a_warning_naming_the_real_one() {
    let server = TestServer::start_with_env(&[], &[("DFLOCKD_DEFAULT_LEASE_TTL", "50")]);
    server.wait_for_log(
        "[WARN] DFLOCKD_DEFAULT_LEASE_TTL is not a dflockd setting and is ignored; \
         did you mean DFLOCKD_DEFAULT_LEASE_TTL_S?",
        Duration::from_secs(5),
    );
    // Ignored, as the warning says.
    assert_eq!(default_lease(&server), 33);
}

#[test]
fn a_read_timeout_that_cuts_off_pinging_clients_is_a_warning() {
    let short = TestServer::start(&["--read-timeout", "10"]);
    short.wait_for_log("read timeout of 10s is below 16s", Duration::from_secs(5));
    let default = TestServer::start(&[]);
    assert!(
        !default.log().iter().any(|line| line.contains("[WARN]")),
        "{:?}",
        default.log()
    );
}

#[test]
fn an_empty_token_flag_is_a_start_up_error() {
    for args in [&["--auth-token", ""][..], &["--auth-token-file="]] {
        let out = run_dflockd(args, &[("DFLOCKD_AUTH_TOKEN", "from-env")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("configuration error: --auth-token")
                && stderr.contains("without authentication"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn print_man_writes_a_man_page_and_exits_zero() {
    let out = run_dflockd(&["--print-man"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    // roff's set-up for apostrophes (`.ie`/`.el`) precedes the title.
    let title = page
        .lines()
        .find(|line| !line.starts_with(".ie ") && !line.starts_with(".el "));
    assert!(
        title.is_some_and(|line| line.starts_with(".TH dflockd 1")),
        "{page}"
    );
    assert!(page.contains(r"\-\-max\-locks"), "{page}");
}
