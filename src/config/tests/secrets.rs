//! The auth and admin tokens' sources, trimming and checks, and the TLS files: settings whose
//! values are secrets or files.

use super::*;

#[test]
fn auth_token_sources_follow_the_documented_precedence() {
    let cli_file = TempFile::with(b"from-cli-file");
    let env_file = TempFile::with(b"from-env-file");
    let all_env = [
        ("DFLOCKD_AUTH_TOKEN", "from-env"),
        ("DFLOCKD_AUTH_TOKEN_FILE", env_file.path()),
    ];
    let cli_token = ["--auth-token", "from-cli"];
    let cli_file_args = ["--auth-token-file", cli_file.path()];

    let both_flags = [cli_token.as_slice(), cli_file_args.as_slice()].concat();
    assert_eq!(token(&both_flags, &all_env).as_deref(), Some("from-cli"));
    assert_eq!(
        token(&cli_file_args, &all_env).as_deref(),
        Some("from-cli-file")
    );
    assert_eq!(token(&[], &all_env).as_deref(), Some("from-env"));
    assert_eq!(token(&[], &all_env[1..]).as_deref(), Some("from-env-file"));
    assert_eq!(token(&[], &[]), None);
}

#[test]
fn explicitly_empty_or_blank_token_flags_are_errors() {
    let file = TempFile::with(b"from-file");
    let env = [("DFLOCKD_AUTH_TOKEN", "from-env")];
    for (args, flag) in [
        (&["--auth-token="][..], "auth-token"),
        (&["--auth-token", " \t "], "auth-token"),
        (
            &["--auth-token=", "--auth-token-file", file.path()],
            "auth-token",
        ),
        (&["--auth-token-file="], "auth-token-file"),
    ] {
        let (origin, problem) = invalid(args, &env);
        assert_eq!(origin, Origin::Flag(flag), "{args:?}");
        assert!(
            problem.contains("empty") && problem.contains("without authentication"),
            "{args:?}: {problem}"
        );
    }
}

#[test]
fn empty_token_variables_are_unset_and_blank_ones_are_errors() {
    assert_eq!(token(&[], &[("DFLOCKD_AUTH_TOKEN", "")]), None);
    let (origin, problem) = invalid(&[], &[("DFLOCKD_AUTH_TOKEN", "  ")]);
    assert_eq!(origin, Origin::Env("DFLOCKD_AUTH_TOKEN"));
    assert!(problem.contains("empty or blank"), "{problem}");
}

#[test]
fn auth_tokens_are_trimmed() {
    assert_eq!(
        token(&["--auth-token", "  tok en \t"], &[]).as_deref(),
        Some("tok en")
    );
    assert_eq!(
        token(&[], &[("DFLOCKD_AUTH_TOKEN", " tok ")]).as_deref(),
        Some("tok")
    );
    let file = TempFile::with(b"\n  s3cret\r\n\n");
    assert_eq!(
        token(&["--auth-token-file", file.path()], &[]).as_deref(),
        Some("s3cret")
    );
}

#[test]
fn unusable_auth_tokens_are_errors_that_do_not_reveal_them() {
    let empty = TempFile::with(b"");
    let blank = TempFile::with(b" \r\n\t\n");
    let broken = TempFile::with(b"first-half\r\nsecond-half\n");
    let binary = TempFile::with(b"\xff\xfe-half");
    let long = TempFile::with("x".repeat(MAX_AUTH_TOKEN_BYTES + 1).as_bytes());
    let missing = std::env::temp_dir().join("dflockd-config-no-such-token-file");
    let missing = missing.to_str().expect("UTF-8 path");
    let failures = [
        (vec!["--auth-token", "   "], Origin::Flag("auth-token")),
        (
            vec!["--auth-token", "first-half\nsecond-half"],
            Origin::Flag("auth-token"),
        ),
        (
            vec!["--auth-token", "first-half\rsecond-half"],
            Origin::Flag("auth-token"),
        ),
        (
            vec!["--auth-token-file", empty.path()],
            Origin::Flag("auth-token-file"),
        ),
        (
            vec!["--auth-token-file", blank.path()],
            Origin::Flag("auth-token-file"),
        ),
        (
            vec!["--auth-token-file", broken.path()],
            Origin::Flag("auth-token-file"),
        ),
        (
            vec!["--auth-token-file", binary.path()],
            Origin::Flag("auth-token-file"),
        ),
        (
            vec!["--auth-token-file", long.path()],
            Origin::Flag("auth-token-file"),
        ),
        (
            vec!["--auth-token-file", missing],
            Origin::Flag("auth-token-file"),
        ),
    ];
    for (args, expected) in failures {
        let (origin, problem) = invalid(&args, &[]);
        assert_eq!(origin, expected, "{args:?}");
        assert!(!problem.contains("half"), "{problem}");
    }
    let (origin, _) = invalid(&[], &[("DFLOCKD_AUTH_TOKEN_FILE", missing)]);
    assert_eq!(origin, Origin::Env("DFLOCKD_AUTH_TOKEN_FILE"));
}

#[test]
fn the_longest_sendable_token_is_accepted() {
    let longest = "x".repeat(MAX_AUTH_TOKEN_BYTES);
    assert_eq!(
        token(&["--auth-token", &longest], &[]).map(|token| token.len()),
        Some(MAX_AUTH_TOKEN_BYTES)
    );
}

#[test]
fn debug_output_redacts_the_token() {
    let config = config(&["--auth-token", "hunter2-secret"], &[]);
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert_eq!(
        config.auth_token.as_ref().map(Secret::expose),
        Some("hunter2-secret")
    );
}

#[test]
fn tls_files_are_configured_together() {
    let tls = config(
        &["--tls-cert", "cert.pem"],
        &[("DFLOCKD_TLS_KEY", "key.pem")],
    )
    .tls;
    assert_eq!(
        tls,
        Some(TlsFiles {
            cert: "cert.pem".into(),
            key: "key.pem".into()
        })
    );
    let tls = config(
        &["--tls-cert=a.pem", "--tls-key=b.pem"],
        &[("DFLOCKD_TLS_CERT", "c.pem")],
    )
    .tls;
    assert_eq!(
        tls,
        Some(TlsFiles {
            cert: "a.pem".into(),
            key: "b.pem".into()
        })
    );

    let message = conflict(&["--tls-cert", "cert.pem"], &[]);
    assert!(
        message.contains("--tls-key") && message.contains("DFLOCKD_TLS_KEY"),
        "{message}"
    );
    let message = conflict(&[], &[("DFLOCKD_TLS_KEY", "key.pem")]);
    assert!(
        message.contains("DFLOCKD_TLS_KEY") && message.contains("--tls-cert"),
        "{message}"
    );
    assert_eq!(invalid(&["--tls-cert="], &[]).0, Origin::Flag("tls-cert"));
}

fn admin(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    config(args, env)
        .admin_token
        .map(|secret| secret.expose().to_owned())
}

#[test]
fn admin_token_sources_follow_the_auth_token_precedence() {
    let cli_file = TempFile::with(b" from-cli-file\n");
    let env_file = TempFile::with(b"from-env-file");
    let all_env = [
        ("DFLOCKD_ADMIN_TOKEN", "from-env"),
        ("DFLOCKD_ADMIN_TOKEN_FILE", env_file.path()),
    ];
    let cli_token = ["--admin-token", "from-cli"];
    let cli_file_args = ["--admin-token-file", cli_file.path()];
    let both_flags = [cli_token.as_slice(), cli_file_args.as_slice()].concat();
    assert_eq!(admin(&both_flags, &all_env).as_deref(), Some("from-cli"));
    assert_eq!(
        admin(&cli_file_args, &all_env).as_deref(),
        Some("from-cli-file")
    );
    assert_eq!(admin(&[], &all_env).as_deref(), Some("from-env"));
    assert_eq!(admin(&[], &all_env[1..]).as_deref(), Some("from-env-file"));
    assert_eq!(admin(&[], &[]), None);
    // Only a token read from a file is read again on SIGHUP.
    let from_file = config(&cli_file_args, &[]);
    assert_eq!(
        from_file.admin_token_file.as_deref(),
        Some(std::path::Path::new(cli_file.path()))
    );
    assert!(config(&cli_token, &all_env).admin_token_file.is_none());
    // Neither needs the other.
    let only_admin = config(&cli_token, &[]);
    assert!(only_admin.auth_token.is_none());
}

#[test]
fn unusable_admin_tokens_are_errors_that_name_the_admin_token() {
    let blank = TempFile::with(b" \r\n");
    for (args, flag) in [
        (vec!["--admin-token", "  "], "admin-token"),
        (vec!["--admin-token", "a\nb"], "admin-token"),
        (vec!["--admin-token-file", blank.path()], "admin-token-file"),
        (vec!["--admin-token-file="], "admin-token-file"),
    ] {
        let (origin, problem) = invalid(&args, &[]);
        assert_eq!(origin, Origin::Flag(flag), "{args:?}");
        assert!(problem.contains("admin token"), "{args:?}: {problem}");
    }
    let (origin, problem) = invalid(&[], &[("DFLOCKD_ADMIN_TOKEN", " ")]);
    assert_eq!(origin, Origin::Env("DFLOCKD_ADMIN_TOKEN"));
    assert!(problem.contains("without an admin token"), "{problem}");
}

#[test]
fn an_admin_token_equal_to_the_auth_token_is_refused_without_showing_it() {
    let file = TempFile::with(b"  same-secret \n");
    for (args, env) in [
        (
            vec![
                "--auth-token",
                "same-secret",
                "--admin-token",
                " same-secret",
            ],
            vec![],
        ),
        (
            vec!["--admin-token-file", file.path()],
            vec![("DFLOCKD_AUTH_TOKEN", "same-secret")],
        ),
    ] {
        let message = conflict(&args, &env);
        assert!(message.contains("admin token"), "{message}");
        assert!(!message.contains("same-secret"), "{message}");
    }
    let distinct = config(&["--auth-token", "a", "--admin-token", "b"], &[]);
    assert_eq!(distinct.admin_token.as_ref().map(Secret::expose), Some("b"));
    let debug = format!("{distinct:?}");
    assert!(!debug.contains("\"b\""), "{debug}");
}
