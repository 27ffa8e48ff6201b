//! Tests of flag, variable and default resolution, validation, `--help` and the man page.

use std::collections::HashMap;
use std::iter;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::resolve::*;
use super::settings::*;
use super::*;

mod secrets;

/// Resolves `args` (without the program name) against an environment holding only `env`.
fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let argv = iter::once("dflockd").chain(args.iter().copied());
    Config::from_args_and_env(argv, &|name| env.get(name).cloned())
}

fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
    match load(args, env) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("{args:?} {env:?} should be valid: {error}"),
    }
}

fn invalid(args: &[&str], env: &[(&str, &str)]) -> (Origin, String) {
    match load(args, env) {
        Err(ConfigError::Invalid { origin, problem }) => (origin, problem),
        other => panic!("{args:?} {env:?} should be an invalid value, got {other:?}"),
    }
}

fn conflict(args: &[&str], env: &[(&str, &str)]) -> String {
    match load(args, env) {
        Err(ConfigError::Conflict(message)) => message,
        other => panic!("{args:?} {env:?} should be a conflict, got {other:?}"),
    }
}

fn cli_error(args: &[&str]) -> clap::Error {
    match load(args, &[]) {
        Err(ConfigError::Cli(error)) => error,
        other => panic!("{args:?} should be a command-line error, got {other:?}"),
    }
}

/// The field a flag sets, as text, so one table can drive the tests for every setting.
fn field(config: &Config, flag: &str) -> String {
    match flag {
        "host" => config.host.clone(),
        "port" => config.port.to_string(),
        "tcp" => config.tcp.to_string(),
        "unix-socket" => config
            .unix_socket
            .as_ref()
            .map_or_else(|| "unset".to_owned(), |path| path.display().to_string()),
        "unix-socket-mode" => format!("0{:03o}", config.unix_socket_mode),
        "unix-allow-uid" => ids(&config.unix_allow_uid),
        "unix-allow-gid" => ids(&config.unix_allow_gid),
        "unix-peer-auth" => config.unix_peer_auth.to_string(),
        "default-lease-ttl" => config.default_lease_s.to_string(),
        "lease-sweep-interval" => config.lease_sweep_interval_s.to_string(),
        "gc-interval" => config.gc_interval_s.to_string(),
        "gc-max-idle" => config.gc_max_idle_s.to_string(),
        "max-locks" => config.max_locks.to_string(),
        "max-connections" => config.max_connections.to_string(),
        "max-connections-per-ip" => config.max_connections_per_ip.to_string(),
        "max-waiters" => config.max_waiters.to_string(),
        "lock-delay" => config.lock_delay_ms.to_string(),
        "lock-events" => config.lock_events.to_string(),
        "max-subscriptions" => config.max_subscriptions.to_string(),
        "max-subscription-bytes" => config.max_subscription_bytes.to_string(),
        "max-total-subscriptions" => config.max_total_subscriptions.to_string(),
        "read-timeout" => config.read_timeout_s.to_string(),
        "write-timeout" => config.write_timeout_s.to_string(),
        "shutdown-timeout" => config.shutdown_timeout_s.to_string(),
        "auto-release-on-disconnect" => config.auto_release_on_disconnect.to_string(),
        "tls-handshake-timeout" => config.tls_handshake_timeout_s.to_string(),
        "debug" => config.debug.to_string(),
        "max-input-buffer" => config.max_input_buffer.to_string(),
        "max-pending-output" => config.max_pending_output.to_string(),
        "max-output-buffer" => config.max_output_buffer.to_string(),
        "max-total-output" => config.max_total_output.to_string(),
        "accept-batch" => config.accept_batch.to_string(),
        "cpu" => config
            .cpu
            .map_or_else(|| "unset".to_owned(), |cpu| cpu.to_string()),
        "busy-poll" => config.busy_poll.to_string(),
        "log-connections" => config.log_connections.to_string(),
        "log-format" => format!("{:?}", config.log_format).to_lowercase(),
        "metrics-addr" => config
            .metrics_addr
            .clone()
            .unwrap_or_else(|| "unset".to_owned()),
        "metrics-max-connections" => config.metrics_max_connections.to_string(),
        _ => panic!("no field for --{flag}"),
    }
}

/// A list of ids as the flags take it, or `unset`.
fn ids(list: &[u32]) -> String {
    if list.is_empty() {
        return "unset".to_owned();
    }
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// (flag, variable, documented default, two distinct non-default values) for every setting with a
/// plain value; TLS and the auth and admin tokens have their own tests.
#[rustfmt::skip]
const CASES: &[(&str, &str, &str, &str, &str)] = &[
    ("host", "DFLOCKD_HOST", "127.0.0.1", "::1", "example.org"),
    ("port", "DFLOCKD_PORT", "6388", "0", "7000"),
    ("unix-socket", "DFLOCKD_UNIX_SOCKET", "unset", "/run/dflockd/dflockd.sock", "s.sock"),
    ("unix-socket-mode", "DFLOCKD_UNIX_SOCKET_MODE", "0660", "0600", "0777"),
    ("unix-allow-uid", "DFLOCKD_UNIX_ALLOW_UID", "unset", "0", "1000,4294967295"),
    ("unix-allow-gid", "DFLOCKD_UNIX_ALLOW_GID", "unset", "10001", "0,1"),
    ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "33", "1", "600"),
    ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S", "1", "2", "3"),
    ("gc-interval", "DFLOCKD_GC_INTERVAL_S", "5", "1", "9223372036"),
    ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S", "60", "0", "120"),
    ("max-locks", "DFLOCKD_MAX_LOCKS", "1024", "1", "1000000"),
    ("max-connections", "DFLOCKD_MAX_CONNECTIONS", "0", "1", "50000"),
    ("max-connections-per-ip", "DFLOCKD_MAX_CONNECTIONS_PER_IP", "0", "1", "8"),
    ("max-waiters", "DFLOCKD_MAX_WAITERS", "0", "1", "100"),
    ("lock-delay", "DFLOCKD_LOCK_DELAY_MS", "0", "1", "9223372036000"),
    ("max-subscriptions", "DFLOCKD_MAX_SUBSCRIPTIONS", "0", "1", "16"),
    ("max-subscription-bytes", "DFLOCKD_MAX_SUBSCRIPTION_BYTES", "1048576", "0", "4096"),
    ("max-total-subscriptions", "DFLOCKD_MAX_TOTAL_SUBSCRIPTIONS", "1000000", "0", "10"),
    ("read-timeout", "DFLOCKD_READ_TIMEOUT_S", "23", "1", "3600"),
    ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S", "5", "0", "60"),
    ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S", "30", "0", "5"),
    ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S", "10", "1", "30"),
    ("max-input-buffer", "DFLOCKD_MAX_INPUT_BUFFER", "131072", "66051", "1048576"),
    ("max-pending-output", "DFLOCKD_MAX_PENDING_OUTPUT", "262144", "1", "4194304"),
    ("max-output-buffer", "DFLOCKD_MAX_OUTPUT_BUFFER", "4194304", "262144", "16777216"),
    ("max-total-output", "DFLOCKD_MAX_TOTAL_OUTPUT", "268435456", "1048576", "67108864"),
    ("accept-batch", "DFLOCKD_ACCEPT_BATCH", "64", "1", "1024"),
    ("cpu", "DFLOCKD_CPU", "unset", "0", "3"),
    ("log-format", "DFLOCKD_LOG_FORMAT", "text", "json", "text"),
    ("metrics-addr", "DFLOCKD_METRICS_ADDR", "unset", "127.0.0.1:9388", "[::1]:0"),
    ("metrics-max-connections", "DFLOCKD_METRICS_MAX_CONNECTIONS", "64", "1", "1000"),
];

/// (flag, negated flag, variable, default) for every boolean switch.
#[rustfmt::skip]
const SWITCHES: &[(&str, &str, &str, bool)] = &[
    ("auto-release-on-disconnect", "no-auto-release-on-disconnect", "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", true),
    ("debug", "no-debug", "DFLOCKD_DEBUG", false),
    ("lock-events", "no-lock-events", "DFLOCKD_LOCK_EVENTS", false),
    ("tcp", "no-tcp", "DFLOCKD_TCP", true),
    ("unix-peer-auth", "no-unix-peer-auth", "DFLOCKD_UNIX_PEER_AUTH", false),
    ("busy-poll", "no-busy-poll", "DFLOCKD_BUSY_POLL", false),
    ("log-connections", "no-log-connections", "DFLOCKD_LOG_CONNECTIONS", false),
];

/// (flag, variable, an unparsable or out-of-range value) covering every validation rule.
#[rustfmt::skip]
const BAD_VALUES: &[(&str, &str, &str)] = &[
    ("host", "DFLOCKD_HOST", "[]"),
    ("port", "DFLOCKD_PORT", "65536"),
    ("port", "DFLOCKD_PORT", "-1"),
    ("port", "DFLOCKD_PORT", " 6388"),
    ("tcp", "DFLOCKD_TCP", "maybe"),
    ("unix-socket-mode", "DFLOCKD_UNIX_SOCKET_MODE", "0800"),
    ("unix-socket-mode", "DFLOCKD_UNIX_SOCKET_MODE", "1777"),
    ("unix-socket-mode", "DFLOCKD_UNIX_SOCKET_MODE", "rw-rw----"),
    ("unix-allow-uid", "DFLOCKD_UNIX_ALLOW_UID", "1000,alice"),
    ("unix-allow-uid", "DFLOCKD_UNIX_ALLOW_UID", "1000,"),
    ("unix-allow-gid", "DFLOCKD_UNIX_ALLOW_GID", "-1"),
    ("unix-peer-auth", "DFLOCKD_UNIX_PEER_AUTH", "2"),
    ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "0"),
    ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S", "1.5"),
    ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S", "0"),
    ("gc-interval", "DFLOCKD_GC_INTERVAL_S", "0"),
    ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S", "-1"),
    ("max-locks", "DFLOCKD_MAX_LOCKS", "0"),
    ("max-connections", "DFLOCKD_MAX_CONNECTIONS", "lots"),
    ("max-connections-per-ip", "DFLOCKD_MAX_CONNECTIONS_PER_IP", "-1"),
    ("max-waiters", "DFLOCKD_MAX_WAITERS", "18446744073709551616"),
    ("lock-delay", "DFLOCKD_LOCK_DELAY_MS", "-1"),
    ("lock-delay", "DFLOCKD_LOCK_DELAY_MS", "9223372036001"),
    ("lock-delay", "DFLOCKD_LOCK_DELAY_MS", "1.5"),
    ("max-subscriptions", "DFLOCKD_MAX_SUBSCRIPTIONS", "1e3"),
    ("read-timeout", "DFLOCKD_READ_TIMEOUT_S", "0"),
    ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S", "5s"),
    ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S", "forever"),
    ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S", "0"),
    ("max-input-buffer", "DFLOCKD_MAX_INPUT_BUFFER", "66050"),
    ("max-pending-output", "DFLOCKD_MAX_PENDING_OUTPUT", "0"),
    ("max-output-buffer", "DFLOCKD_MAX_OUTPUT_BUFFER", "65536"),
    ("max-total-output", "DFLOCKD_MAX_TOTAL_OUTPUT", "1048575"),
    ("accept-batch", "DFLOCKD_ACCEPT_BATCH", "0"),
    ("cpu", "DFLOCKD_CPU", "-1"),
    ("cpu", "DFLOCKD_CPU", "4294967296"),
    ("auto-release-on-disconnect", "DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "maybe"),
    ("debug", "DFLOCKD_DEBUG", "on"),
    ("lock-events", "DFLOCKD_LOCK_EVENTS", "yes please"),
    ("busy-poll", "DFLOCKD_BUSY_POLL", "2"),
    ("log-connections", "DFLOCKD_LOG_CONNECTIONS", "sometimes"),
    ("log-format", "DFLOCKD_LOG_FORMAT", "xml"),
    ("metrics-addr", "DFLOCKD_METRICS_ADDR", "9388"),
    ("metrics-addr", "DFLOCKD_METRICS_ADDR", "::1:9388"),
    ("metrics-max-connections", "DFLOCKD_METRICS_MAX_CONNECTIONS", "0"),
];

/// Every seconds setting, for the upper bound.
#[rustfmt::skip]
const SECONDS_FLAGS: &[(&str, &str)] = &[
    ("default-lease-ttl", "DFLOCKD_DEFAULT_LEASE_TTL_S"),
    ("lease-sweep-interval", "DFLOCKD_LEASE_SWEEP_INTERVAL_S"),
    ("gc-interval", "DFLOCKD_GC_INTERVAL_S"),
    ("gc-max-idle", "DFLOCKD_GC_MAX_IDLE_S"),
    ("read-timeout", "DFLOCKD_READ_TIMEOUT_S"),
    ("write-timeout", "DFLOCKD_WRITE_TIMEOUT_S"),
    ("shutdown-timeout", "DFLOCKD_SHUTDOWN_TIMEOUT_S"),
    ("tls-handshake-timeout", "DFLOCKD_TLS_HANDSHAKE_TIMEOUT_S"),
];

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(content: &[u8]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dflockd-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, content).expect("temporary directory is writable");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temporary paths are UTF-8 here")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn token(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    config(args, env)
        .auth_token
        .map(|secret| secret.expose().to_owned())
}

#[test]
fn command_is_well_formed() {
    command().debug_assert();
}

#[test]
fn tables_cover_every_setting() {
    let mut tested: Vec<&str> = CASES.iter().map(|case| case.0).collect();
    tested.extend(SWITCHES.iter().map(|switch| switch.0));
    tested.extend([
        "tls-cert",
        "tls-key",
        "auth-token",
        "auth-token-file",
        "admin-token",
        "admin-token-file",
    ]);
    tested.sort_unstable();
    let mut all: Vec<&str> = SETTINGS.iter().map(|setting| setting.flag).collect();
    all.sort_unstable();
    assert_eq!(tested, all);
    for (flag, env, ..) in CASES {
        let setting = SETTINGS
            .iter()
            .find(|setting| setting.flag == *flag)
            .expect("listed above");
        assert_eq!(setting.env, *env, "--{flag}");
    }
}

#[test]
fn negated_flags_are_named_after_their_switch() {
    for setting in SETTINGS {
        if let Some(negated) = setting.negated {
            assert_eq!(negated, format!("no-{}", setting.flag));
        }
    }
}

#[test]
fn defaults_match_the_documented_values() {
    let defaults = Config::default();
    for (flag, _, default, ..) in CASES {
        assert_eq!(field(&defaults, flag), *default, "--{flag}");
    }
    for (flag, _, _, default) in SWITCHES {
        assert_eq!(field(&defaults, flag), default.to_string(), "--{flag}");
    }
    assert!(defaults.tls.is_none());
    assert!(defaults.auth_token.is_none());
    assert!(defaults.admin_token.is_none() && defaults.admin_token_file.is_none());
    assert_eq!(defaults.bind_address(), "127.0.0.1:6388");
}

#[test]
fn no_arguments_and_no_environment_give_the_defaults_without_warnings() {
    let loaded = load(&[], &[]).expect("defaults are valid");
    assert!(loaded.warnings.is_empty());
    let defaults = Config::default();
    for (flag, ..) in CASES {
        assert_eq!(
            field(&loaded.config, flag),
            field(&defaults, flag),
            "--{flag}"
        );
    }
}

#[test]
fn every_flag_takes_a_separate_or_attached_value() {
    for (flag, _, _, value, _) in CASES {
        let separate = config(&[&format!("--{flag}"), value], &[]);
        assert_eq!(field(&separate, flag), *value, "--{flag} {value}");
        let attached = config(&[&format!("--{flag}={value}")], &[]);
        assert_eq!(field(&attached, flag), *value, "--{flag}={value}");
    }
}

#[test]
fn every_variable_sets_its_setting() {
    for (flag, env, _, _, value) in CASES {
        assert_eq!(
            field(&config(&[], &[(env, value)]), flag),
            *value,
            "{env}={value}"
        );
    }
}

#[test]
fn an_explicit_flag_beats_the_variable() {
    for (flag, env, _, flag_value, env_value) in CASES {
        let both = config(&[&format!("--{flag}={flag_value}")], &[(env, env_value)]);
        assert_eq!(field(&both, flag), *flag_value, "--{flag} against {env}");
    }
}

#[test]
fn the_last_occurrence_of_a_flag_wins() {
    assert_eq!(config(&["--port", "1", "--port=2"], &[]).port, 2);
}

#[test]
fn empty_variables_count_as_unset() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|setting| setting.env).collect();
    names.extend(SETTINGS.iter().filter_map(|setting| setting.deprecated_env));
    let empty: Vec<(&str, &str)> = names.iter().map(|name| (*name, "")).collect();
    let loaded = load(&[], &empty).expect("empty variables are ignored");
    assert!(loaded.warnings.is_empty());
    let defaults = Config::default();
    for (flag, ..) in CASES {
        assert_eq!(
            field(&loaded.config, flag),
            field(&defaults, flag),
            "--{flag}"
        );
    }
    for (flag, ..) in SWITCHES {
        assert_eq!(
            field(&loaded.config, flag),
            field(&defaults, flag),
            "--{flag}"
        );
    }
    assert!(loaded.config.tls.is_none());
    assert!(loaded.config.auth_token.is_none());
}

#[test]
fn bad_values_are_errors_naming_their_variable_or_flag() {
    for (flag, env, bad) in BAD_VALUES {
        let (origin, problem) = invalid(&[], &[(env, bad)]);
        assert_eq!(origin, Origin::Env(env), "{env}={bad}");
        let message = ConfigError::Invalid { origin, problem }.to_string();
        assert!(message.contains(env), "{message}");

        let (origin, _) = invalid(&[&format!("--{flag}={bad}")], &[]);
        assert_eq!(origin, Origin::Flag(flag), "--{flag}={bad}");
    }
}

#[test]
fn unix_socket_modes_are_octal_and_id_lists_allow_spaces() {
    assert_eq!(
        config(&["--unix-socket-mode=600"], &[]).unix_socket_mode,
        0o600
    );
    assert_eq!(
        config(&["--unix-socket-mode=0o640"], &[]).unix_socket_mode,
        0o640
    );
    assert_eq!(
        config(&["--unix-allow-uid", "1, 2 ,3"], &[]).unix_allow_uid,
        [1, 2, 3]
    );
    let (_, problem) = invalid(&["--unix-socket="], &[]);
    assert!(problem.contains("empty"), "{problem}");
}

#[test]
fn a_flag_shadows_a_bad_variable() {
    // The variable is never consulted, so its value is never parsed.
    assert_eq!(
        config(&["--port", "1"], &[("DFLOCKD_PORT", "nope")]).port,
        1
    );
}

#[test]
fn seconds_are_bounded() {
    for (flag, env) in SECONDS_FLAGS {
        let at_bound = config(&[&format!("--{flag}={MAX_SECONDS}")], &[]);
        assert_eq!(field(&at_bound, flag), MAX_SECONDS.to_string());
        let over = (MAX_SECONDS + 1).to_string();
        assert_eq!(
            invalid(&[&format!("--{flag}"), &over], &[]).0,
            Origin::Flag(flag)
        );
        assert_eq!(invalid(&[], &[(env, &over)]).0, Origin::Env(env));
    }
}

#[test]
fn switches_accept_every_flag_form() {
    for (flag, negated, _, default) in SWITCHES {
        let value = |args: &[&str]| config(args, &[]);
        assert_eq!(field(&value(&[]), flag), default.to_string());
        assert_eq!(field(&value(&[&format!("--{flag}")]), flag), "true");
        assert_eq!(field(&value(&[&format!("--{flag}=true")]), flag), "true");
        assert_eq!(field(&value(&[&format!("--{flag}=false")]), flag), "false");
        assert_eq!(field(&value(&[&format!("--{negated}")]), flag), "false");
        assert_eq!(
            field(
                &value(&[&format!("--{flag}"), &format!("--{negated}")]),
                flag
            ),
            "false"
        );
        assert_eq!(
            field(
                &value(&[&format!("--{negated}"), &format!("--{flag}")]),
                flag
            ),
            "true"
        );
    }
}

#[test]
fn a_switch_value_must_be_attached() {
    let error = cli_error(&["--debug", "false"]);
    assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
}

#[test]
fn negated_flags_beat_the_variable() {
    let auto = config(
        &["--no-auto-release-on-disconnect"],
        &[("DFLOCKD_AUTO_RELEASE_ON_DISCONNECT", "1")],
    );
    assert!(!auto.auto_release_on_disconnect);
    let (origin, _) = invalid(&["--auto-release-on-disconnect=perhaps"], &[]);
    assert_eq!(origin, Origin::Flag("auto-release-on-disconnect"));
}

#[test]
fn boolean_variables_accept_the_documented_spellings() {
    for (flag, _, env, _) in SWITCHES {
        for (text, expected) in [
            ("1", true),
            ("yes", true),
            ("TRUE", true),
            ("Yes", true),
            ("0", false),
            ("no", false),
            ("False", false),
            ("NO", false),
        ] {
            assert_eq!(
                field(&config(&[], &[(env, text)]), flag),
                expected.to_string(),
                "{env}={text}"
            );
        }
        for text in ["on", "off", "y", "t", " true"] {
            assert_eq!(
                invalid(&[], &[(env, text)]).0,
                Origin::Env(env),
                "{env}={text}"
            );
        }
    }
}

#[test]
fn deprecated_gc_variables_work_with_a_warning() {
    let loaded = load(
        &[],
        &[
            ("DFLOCKD_GC_LOOP_SLEEP", "7"),
            ("DFLOCKD_GC_MAX_UNUSED_TIME", "8"),
        ],
    )
    .expect("aliases are valid");
    assert_eq!(loaded.config.gc_interval_s, 7);
    assert_eq!(loaded.config.gc_max_idle_s, 8);
    assert_eq!(loaded.warnings.len(), 2);
    assert!(loaded.warnings[0].contains("DFLOCKD_GC_LOOP_SLEEP is deprecated"));
    assert!(loaded.warnings[0].contains("DFLOCKD_GC_INTERVAL_S"));
    assert!(loaded.warnings[1].contains("DFLOCKD_GC_MAX_UNUSED_TIME is deprecated"));
    assert!(
        loaded
            .warnings
            .iter()
            .all(|warning| !warning.contains('\n'))
    );
}

#[test]
fn canonical_gc_variables_and_flags_beat_the_aliases_silently() {
    let env = [
        ("DFLOCKD_GC_INTERVAL_S", "2"),
        ("DFLOCKD_GC_LOOP_SLEEP", "7"),
        ("DFLOCKD_GC_MAX_UNUSED_TIME", "8"),
    ];
    let loaded = load(&["--gc-max-idle", "3"], &env).expect("valid");
    assert_eq!(loaded.config.gc_interval_s, 2);
    assert_eq!(loaded.config.gc_max_idle_s, 3);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn an_empty_canonical_gc_variable_falls_back_to_the_alias() {
    let loaded = load(
        &[],
        &[
            ("DFLOCKD_GC_INTERVAL_S", ""),
            ("DFLOCKD_GC_LOOP_SLEEP", "9"),
        ],
    )
    .expect("valid");
    assert_eq!(loaded.config.gc_interval_s, 9);
    assert_eq!(loaded.warnings.len(), 1);
}

#[test]
fn a_bad_alias_value_names_the_alias() {
    assert_eq!(
        invalid(&[], &[("DFLOCKD_GC_LOOP_SLEEP", "0")]).0,
        Origin::Env("DFLOCKD_GC_LOOP_SLEEP")
    );
}

#[test]
fn a_read_timeout_below_the_client_ping_interval_is_a_warning() {
    for seconds in ["1", "15"] {
        let loaded = load(&["--read-timeout", seconds], &[]).expect("valid");
        assert_eq!(loaded.warnings.len(), 1, "{seconds}");
        assert!(
            loaded.warnings[0].contains(&format!("read timeout of {seconds}s is below 16s")),
            "{:?}",
            loaded.warnings
        );
    }
    let env = [("DFLOCKD_READ_TIMEOUT_S", "10")];
    assert_eq!(load(&[], &env).expect("valid").warnings.len(), 1);
    assert!(
        load(&["--read-timeout", "16"], &[])
            .expect("valid")
            .warnings
            .is_empty()
    );
}

#[test]
fn variables_of_either_program_are_known_and_others_are_reported() {
    let mut known: Vec<&str> = server_variables().collect();
    known.extend(env::DFLOCKCTL_VARIABLES);
    assert!(unknown_variable_warnings(known.iter().copied()).is_empty());
    assert_eq!(
        unknown_variable_warnings(["DFLOCKD_DEFAULT_LEASE_TTL", "DFLOCKD_MAXLOCKS"]),
        [
            "DFLOCKD_DEFAULT_LEASE_TTL is not a dflockd setting and is ignored; \
             did you mean DFLOCKD_DEFAULT_LEASE_TTL_S?",
            "DFLOCKD_MAXLOCKS is not a dflockd setting and is ignored; \
             did you mean DFLOCKD_MAX_LOCKS?",
        ]
    );
}

#[test]
fn output_limits_must_be_ordered() {
    let message = conflict(&["--max-output-buffer", "100000"], &[]);
    assert!(
        message.contains("--max-output-buffer") && message.contains("262144"),
        "{message}"
    );
    let message = conflict(&[], &[("DFLOCKD_MAX_PENDING_OUTPUT", "5000000")]);
    assert!(message.contains("DFLOCKD_MAX_PENDING_OUTPUT"), "{message}");
    let equal = config(
        &["--max-pending-output=100000", "--max-output-buffer=100000"],
        &[],
    );
    assert_eq!(
        (equal.max_pending_output, equal.max_output_buffer),
        (100_000, 100_000)
    );
}

#[test]
fn buffer_minimums_are_inclusive() {
    assert_eq!(
        config(&["--max-input-buffer=66051"], &[]).max_input_buffer,
        66_051
    );
    let limits = config(
        &["--max-pending-output=1", "--max-output-buffer=65537"],
        &[],
    );
    assert_eq!(
        (limits.max_pending_output, limits.max_output_buffer),
        (1, 65_537)
    );
}

#[test]
fn bind_address_brackets_ipv6_literals() {
    let address = |host: &str| config(&["--host", host, "--port", "6388"], &[]).bind_address();
    assert_eq!(address("::1"), "[::1]:6388");
    assert_eq!(address("[::1]"), "[::1]:6388");
    assert_eq!(address("fe80::1%eth0"), "[fe80::1%eth0]:6388");
    assert_eq!(address("0.0.0.0"), "0.0.0.0:6388");
    assert_eq!(address("localhost"), "localhost:6388");
    assert_eq!(config(&["--host=[::]"], &[]).host, "::");
}

#[test]
fn http_flags_are_accepted_and_ignored_with_a_warning() {
    let loaded = load(
        &["--http-port", "8080", "--http-cors-allowed-origins=*"],
        &[("DFLOCKD_HTTP_PORT", "x")],
    )
    .expect("HTTP flags are accepted");
    assert_eq!(loaded.warnings.len(), 2);
    assert!(loaded.warnings[0].starts_with("--http-port "));
    assert!(loaded.warnings[1].starts_with("--http-cors-allowed-origins "));
    assert_eq!(loaded.config.port, 6388);
}

#[test]
fn help_and_version_exit_zero_and_usage_errors_exit_two() {
    for (args, kind, code) in [
        (&["--help"][..], clap::error::ErrorKind::DisplayHelp, 0),
        (&["-h"][..], clap::error::ErrorKind::DisplayHelp, 0),
        (
            &["--version"][..],
            clap::error::ErrorKind::DisplayVersion,
            0,
        ),
        (
            &["--no-such-flag"][..],
            clap::error::ErrorKind::UnknownArgument,
            2,
        ),
        (
            &["-port", "1"][..],
            clap::error::ErrorKind::UnknownArgument,
            2,
        ),
        (&["--port"][..], clap::error::ErrorKind::InvalidValue, 2),
    ] {
        let error = cli_error(args);
        assert_eq!((error.kind(), error.exit_code()), (kind, code), "{args:?}");
    }
    assert!(
        cli_error(&["--version"])
            .to_string()
            .contains(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_names_every_variable_and_hides_the_http_flags() {
    let help = command().render_help().to_string();
    for setting in SETTINGS {
        assert!(
            help.contains(&format!("--{} ", setting.flag))
                || help.contains(&format!("--{}[", setting.flag))
        );
        assert!(
            help.contains(&format!("[env: {}", setting.env)),
            "{}",
            setting.env
        );
        if let Some(default) = setting.default {
            assert!(help.contains(&format!("[default: {default}]")));
        }
    }
    assert!(help.contains("DFLOCKD_GC_LOOP_SLEEP") && help.contains("DFLOCKD_GC_MAX_UNUSED_TIME"));
    assert!(help.contains("--no-auto-release-on-disconnect"));
    assert!(!help.contains("--http-port"));
}

#[test]
fn print_man_renders_the_manual_whatever_the_other_settings() {
    let env = [("DFLOCKD_PORT", "not a port")];
    let page = match load(&["--print-man", "--max-locks=0"], &env) {
        Err(ConfigError::ManPage(page)) => page,
        other => panic!("--print-man should give the man page, got {other:?}"),
    };
    // The title and the flags are checked on the binary's output (tests/it/config.rs); here,
    // that the page comes from the settings table, variables included.
    assert!(page.contains("DFLOCKD_MAX_LOCKS"), "{page}");
    assert!(
        !page.contains(r"\-\-http\-port"),
        "hidden flags stay hidden: {page}"
    );
}

#[test]
fn config_errors_display_their_origin() {
    let error = load(&[], &[("DFLOCKD_PORT", "x")]).expect_err("invalid port");
    assert!(
        error
            .to_string()
            .starts_with("environment variable DFLOCKD_PORT: "),
        "{error}"
    );
    let error = load(&["--port=x"], &[]).expect_err("invalid port");
    assert!(error.to_string().starts_with("--port: "), "{error}");
}
