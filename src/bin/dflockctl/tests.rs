//! Tests of argument parsing, exit statuses and output formatting.

use super::inspect::*;
use super::run::*;
use super::*;
use std::process::ExitStatus;

use dflockd::client::Stats;

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("dflockctl").chain(argv.iter().copied()))
}

#[test]
fn run_takes_the_command_after_its_options() {
    let cli = parse(&["run", "--timeout", "3", "k", "--", "sh", "-c", "exit 3"]).expect("valid");
    let Cmd::Run(args) = cli.command else {
        panic!("not run");
    };
    assert_eq!(args.key, "k");
    assert_eq!(args.timeout, Some(Duration::from_secs(3)));
    assert_eq!(args.command, ["sh", "-c", "exit 3"]);
    let cli = parse(&["run", "k", "ls", "-l"]).expect("valid without --");
    let Cmd::Run(args) = cli.command else {
        panic!("not run");
    };
    assert_eq!(args.command, ["ls", "-l"]);
    assert!(parse(&["run", "--limit", "0", "k", "true"]).is_err());
    assert!(parse(&["run", "--lease", "0", "k", "true"]).is_err());
}

#[test]
fn run_takes_a_shell_line_or_no_command_at_all() {
    for argv in [
        &["run", "k", "-c", "a | b"][..],
        &["run", "-c", "a | b", "k"][..],
    ] {
        let Cmd::Run(args) = parse(argv).expect("valid").command else {
            panic!("not run");
        };
        assert_eq!(args.shell.as_deref(), Some("a | b"), "{argv:?}");
        assert!(args.command.is_empty(), "{argv:?}");
        let command = command_for(&args).expect("a command");
        assert_eq!(command.get_program(), "sh");
        assert_eq!(command.get_args().collect::<Vec<_>>(), ["-c", "a | b"]);
    }
    let Cmd::Run(args) = parse(&["run", "k"]).expect("valid").command else {
        panic!("not run");
    };
    assert!(command_for(&args).is_none(), "no command: hold the lock");
    assert!(parse(&["run", "k", "-c", "x", "--", "ls"]).is_err());
}

#[test]
fn timeouts_take_units_and_round_up_to_whole_seconds() {
    let secs = |text: &str| parse_timeout(text).map(|d| d.as_secs());
    assert_eq!(secs("500ms"), Ok(1));
    assert_eq!(secs("1000ms"), Ok(1));
    assert_eq!(secs("1001ms"), Ok(2));
    assert_eq!(secs("1.5s"), Ok(2));
    assert_eq!(secs("2m"), Ok(120));
    assert_eq!(secs("0.3m"), Ok(18));
    assert_eq!(secs("1h"), Ok(3600));
    assert_eq!(secs("30"), Ok(30));
    assert_eq!(secs("0"), Ok(0));
    assert_eq!(secs(".5"), Ok(1));
    assert_eq!(secs(&MAX_SECONDS.to_string()), Ok(MAX_SECONDS));
    for bad in [
        "",
        ".",
        "1.2.3",
        "5x",
        "-1",
        "1 s",
        "s",
        "99999999999999999999999",
    ] {
        assert!(parse_timeout(bad).is_err(), "{bad:?}");
    }
    assert!(parse_timeout(&format!("{}", MAX_SECONDS + 1)).is_err());
}

#[test]
fn client_errors_map_to_their_exit_class() {
    let cases = [
        (Error::InvalidInput("x".into()), exit::USAGE),
        (Error::Tls("x".into()), exit::USAGE),
        (Error::LimitMismatch, exit::REFUSED),
        (Error::MaxLocks, exit::REFUSED),
        (Error::MaxWaiters, exit::REFUSED),
        (Error::Rejected, exit::REFUSED),
        (Error::Draining, exit::UNAVAILABLE),
        (Error::Closed, exit::UNAVAILABLE),
        (Error::Certificate("x".into()), exit::UNAVAILABLE),
        (Error::Protocol("x".into()), exit::SOFTWARE),
    ];
    for (error, status) in cases {
        assert_eq!(error_class(&error), status, "{error:?}");
    }
}

#[test]
fn help_lists_every_exit_status() {
    let help = exit_status_help();
    for code in [
        exit::USAGE,
        exit::REFUSED,
        exit::UNAVAILABLE,
        exit::SOFTWARE,
        exit::NOT_ACQUIRED,
        exit::LOST,
        exit::CANNOT_EXECUTE,
        exit::NOT_FOUND,
    ] {
        assert!(
            help.contains(&format!("\n  {code} ")),
            "{code} missing:\n{help}"
        );
    }
}

#[test]
fn global_options_work_after_the_subcommand() {
    let cli = parse(&["ping", "--servers", "a:1,b:2"]).expect("valid");
    assert_eq!(cli.connection.servers, ["a:1", "b:2"]);
    assert!(parse(&["--tls", "--tls-ca", "ca.pem", "ping"]).is_err());
}

#[test]
fn the_shared_list_names_exactly_the_variables_read() {
    fn variables(command: &clap::Command) -> Vec<String> {
        let own = command
            .get_arguments()
            .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned));
        let nested = command.get_subcommands().flat_map(variables);
        let mut all: Vec<String> = own.chain(nested).collect();
        all.sort();
        all.dedup();
        all
    }
    let mut listed = config::env::DFLOCKCTL_VARIABLES.to_vec();
    listed.sort_unstable();
    assert_eq!(variables(&Cli::command()), listed);
}

#[test]
fn exit_codes_follow_the_shell() {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
    assert_eq!(
        exit_code(ExitStatus::from_raw(signal_hook::consts::SIGKILL)),
        137
    );
}

#[test]
fn tables_align_their_columns() {
    let rows = vec![
        vec!["orders".to_owned(), "3".to_owned()],
        vec!["a".to_owned(), "12".to_owned()],
    ];
    assert_eq!(
        table(&["KEY", "N"], &rows),
        "  KEY     N\n  orders  3\n  a       12\n"
    );
}

#[test]
fn stats_render_only_busy_sections() {
    let stats: Stats = serde_json::from_str(
        r#"{"connections":2,"locks":[{"key":"k","owner_conn_id":1,"lease_expires_in_s":3.25,"waiters":1}],"semaphores":[],"idle_locks":[],"idle_semaphores":[{"key":"s","idle_s":1.0}],"signal_channels":[]}"#,
    )
    .expect("valid");
    assert_eq!(
        render_stats("h:1", &stats),
        "h:1: 2 connections\nlocks\n  KEY  OWNER  LEASE LEFT  WAITERS\n  k    1      3.2s        1\n\
         idle\n  KEY  KIND       IDLE\n  s    semaphore  1.0s\n"
    );
}

#[test]
fn events_print_one_line_per_event_as_text_or_json() {
    use super::events::{json_line, text_line};
    use dflockd::client::Signal;

    let signal = |channel: &str, payload: &str| Signal {
        channel: channel.to_owned(),
        payload: payload.to_owned(),
    };
    let granted = signal(
        "$lock.granted.jobs",
        r#"{"key":"jobs","fence":"18ebc16ce40e4eb1","conn":7,"waited_ms":0,"waiters":2}"#,
    );
    assert_eq!(
        text_line(&granted),
        "granted lock jobs fence=18ebc16ce40e4eb1 conn=7 waited_ms=0 waiters=2"
    );
    let timeout = signal(
        "$sem.timeout",
        r#"{"key":"a*","conn":3,"peer":"unix:uid=1,pid=2","waited_ms":40,"waiters":0}"#,
    );
    assert_eq!(
        text_line(&timeout),
        "timeout semaphore a* conn=3 peer=unix:uid=1,pid=2 waited_ms=40 waiters=0"
    );
    let json: serde_json::Value = serde_json::from_str(&json_line(&granted)).expect("JSON");
    assert_eq!(json["event"], "granted");
    assert_eq!(json["ns"], "lock");
    assert_eq!(json["fence"], "18ebc16ce40e4eb1");
    // Anything else a pattern matched is shown as it came.
    let other = signal("news", "hello");
    assert_eq!(text_line(&other), "news hello");
    let json: serde_json::Value = serde_json::from_str(&json_line(&other)).expect("JSON");
    assert_eq!(json["payload"], "hello");
}

#[test]
fn events_take_optional_patterns() {
    let cli = parse(&["events"]).expect("no pattern needed");
    assert!(
        matches!(cli.command, Cmd::Events { ref patterns, json: false, count: None } if patterns.is_empty())
    );
    let cli = parse(&["events", "--json", "--count", "3", "$lock.expired.>"]).expect("valid");
    let Cmd::Events {
        patterns,
        json,
        count,
    } = cli.command
    else {
        panic!("not events");
    };
    assert_eq!(patterns, ["$lock.expired.>"]);
    assert!(json);
    assert_eq!(count, Some(3));
}
