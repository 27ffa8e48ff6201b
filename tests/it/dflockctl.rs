//! The `dflockctl` binary against the real server: `run` serialising concurrent invocations,
//! passing on the command's exit status, releasing however the command ends, stopping it when
//! the lock is lost, and failing with its documented statuses; `stats`, `emit`, `listen` and
//! `ping`; authentication settings from flags, files and the environment; TLS server names and
//! timeouts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dflockd::client::Client;

use crate::support::{TempDir, TestServer, lock_waiters, stats_entry, wait_until};

const PROMPTLY: Duration = Duration::from_secs(5);

/// `dflockctl` aimed at `servers`, with none of the test process's `DFLOCKD_*` variables.
fn dflockctl(servers: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dflockctl"));
    for (name, _) in std::env::vars() {
        if name.starts_with("DFLOCKD_") {
            command.env_remove(name);
        }
    }
    command.env("DFLOCKD_SERVERS", servers).stdin(Stdio::null());
    command
}

fn output(command: &mut Command) -> Output {
    command.output().expect("run dflockctl")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits for `child` to exit (panics after `timeout`), returning its exit code.
fn wait_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(start.elapsed() < timeout, "dflockctl did not exit in time");
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_free(server: &TestServer, key: &str) -> bool {
    Client::new([server.addr.to_string()])
        .expect("valid")
        .lock(key)
        .try_acquire()
        .expect("try_acquire")
        .is_some()
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Starts `dflockctl ARGS` (a `listen`) against `server` with its stdout piped, and returns once
/// the server lists a subscription to `pattern`.
fn listen_in_background(server: &TestServer, args: &[&str], pattern: &str) -> Child {
    let listener = dflockctl(&server.addr.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    wait_until("the listener subscribes", PROMPTLY, || {
        server.stats()["signal_channels"]
            .as_array()
            .is_some_and(|channels| channels.iter().any(|c| c["pattern"] == pattern))
    });
    listener
}

#[test]
fn run_serialises_concurrent_invocations() {
    let server = TestServer::start(&[]);
    let dir = TempDir::new();
    let log = dir.path("log");
    let script = format!("echo start >> {log}; sleep 1.5; echo end >> {log}");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            dflockctl(&server.addr.to_string())
                .args(["run", "--lease", "1", "shared", "--", "sh", "-c", &script])
                .spawn()
                .expect("spawn dflockctl")
        })
        .collect();
    for mut child in children {
        assert_eq!(wait_code(&mut child, Duration::from_secs(10)), Some(0));
    }
    assert_eq!(lines(&log), ["start", "end", "start", "end"]);
    assert!(is_free(&server, "shared"));
}

#[test]
fn run_with_a_limit_admits_that_many_commands_at_once() {
    let server = TestServer::start(&[]);
    let dir = TempDir::new();
    let log = dir.path("log");
    let script = format!("echo start >> {log}; sleep 1; echo end >> {log}");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            dflockctl(&server.addr.to_string())
                .args(["run", "--limit", "2", "pool", "sh", "-c", &script])
                .spawn()
                .expect("spawn dflockctl")
        })
        .collect();
    for mut child in children {
        assert_eq!(wait_code(&mut child, Duration::from_secs(10)), Some(0));
    }
    assert_eq!(lines(&log), ["start", "start", "end", "end"]);
}

#[test]
fn run_passes_on_the_exit_status_and_releases() {
    let server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let status = output(dflockctl(&addr).args(["run", "k", "--", "sh", "-c", "exit 7"]));
    assert_eq!(status.status.code(), Some(7), "{}", stderr(&status));
    assert!(is_free(&server, "k"));

    let killed = output(dflockctl(&addr).args(["run", "k", "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(killed.status.code(), Some(128 + 9));
    assert!(
        is_free(&server, "k"),
        "released after the command was killed"
    );

    let missing = output(dflockctl(&addr).args(["run", "k", "--", "/nonexistent/command"]));
    assert_eq!(missing.status.code(), Some(127));
    assert!(is_free(&server, "k"));
}

#[test]
fn run_times_out_with_its_own_status() {
    let server = TestServer::start(&[]);
    let client = Client::new([server.addr.to_string()]).expect("valid");
    let _held = client.lock("k").acquire(Duration::ZERO).expect("acquire");
    let dir = TempDir::new();
    let marker = dir.path("ran");
    let start = Instant::now();
    let out = output(dflockctl(&server.addr.to_string()).args([
        "run",
        "--timeout",
        "1",
        "k",
        "--",
        "touch",
        &marker,
    ]));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not acquired within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the command must not run"
    );

    // Units round up to the protocol's whole seconds; the status can be chosen.
    let out = output(dflockctl(&server.addr.to_string()).args([
        "run",
        "--timeout",
        "500ms",
        "--conflict-exit-code",
        "9",
        "k",
        "-c",
        &format!("touch {marker}"),
    ]));
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not acquired within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(!std::path::Path::new(&marker).exists());
}

#[test]
fn run_fails_cleanly_when_the_server_is_down() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let dir = TempDir::new();
    let marker = dir.path("ran");
    let out = output(dflockctl(&format!("127.0.0.1:{port}")).args(["run", "k", "touch", &marker]));
    assert_eq!(out.status.code(), Some(69));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the command must not run"
    );
}

#[test]
fn run_stops_the_command_when_the_lock_is_lost() {
    let server = TestServer::start(&[]);
    let dir = TempDir::new();
    let marker = dir.path("terminated");
    // The command notes SIGTERM and exits; without it, it would run for a minute.
    let script = format!("trap 'echo term > {marker}; kill $!; exit 0' TERM; sleep 60 & wait");
    let mut child = dflockctl(&server.addr.to_string())
        .args([
            "run", "--lease", "2", "--grace", "5", "k", "sh", "-c", &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dflockctl");
    wait_until("the lock is held", PROMPTLY, || {
        stats_entry(&server.stats(), "locks", "k").is_some()
    });
    // Let the shell install its trap before the server goes away.
    thread::sleep(Duration::from_millis(300));
    drop(server);
    assert_eq!(wait_code(&mut child, Duration::from_secs(10)), Some(76));
    assert_eq!(lines(&marker), ["term"]);
    let mut message = String::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines() {
        message.push_str(&line.expect("stderr line"));
    }
    assert!(message.contains("lost the lock on k"), "{message}");
}

#[test]
fn run_stops_the_command_as_soon_as_the_server_reports_the_lease_expired() {
    let server = TestServer::start(&["--lock-events"]);
    let dir = TempDir::new();
    let (token_file, marker) = (dir.path("token"), dir.path("terminated"));
    let script = format!(
        "echo $DFLOCKD_LOCK_TOKEN > {token_file}; \
         trap 'echo term > {marker}; kill $!; exit 0' TERM; sleep 60 & wait"
    );
    let mut child = dflockctl(&server.addr.to_string())
        .args(["run", "--lease", "30", "k", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dflockctl");
    wait_until("the command runs and the guard listens", PROMPTLY, || {
        let listening = server.stats()["signal_channels"]
            .as_array()
            .is_some_and(|channels| channels.len() == 2);
        listening && lines(&token_file).len() == 1
    });
    // Let the shell install its trap, then cut the lease to a second from another connection:
    // dflockctl's own renewal is 15 s away, and its clock still says the lease runs for 30.
    thread::sleep(Duration::from_millis(300));
    let token =
        dflockd::token::LeaseToken::parse(lines(&token_file)[0].as_bytes()).expect("a token");
    let cut = Instant::now();
    Client::new([server.addr.to_string()])
        .expect("valid")
        .connect(0)
        .expect("connect")
        .renew(dflockd::client::Kind::Lock, "k", &token, Some(1))
        .expect("renew");
    assert_eq!(wait_code(&mut child, Duration::from_secs(10)), Some(76));
    let took = cut.elapsed();
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(lines(&marker), ["term"]);
    let mut message = String::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines() {
        message.push_str(&line.expect("stderr line"));
    }
    assert!(message.contains("the lease expired"), "{message}");
}

#[test]
fn stats_emit_listen_and_ping() {
    let server = TestServer::start(&[]);
    let addr = server.addr.to_string();

    let ping = output(dflockctl(&addr).arg("ping"));
    assert_eq!(ping.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ping.stdout).starts_with(&format!("{addr}: ok")));

    let mut listener = listen_in_background(&server, &["listen", "a.>", "--group", "g"], "a.>");

    let table = output(dflockctl(&addr).arg("stats"));
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("signal subscriptions"), "{table}");
    assert!(table.contains("a.>"), "{table}");
    let json = output(dflockctl(&addr).args(["stats", "--json"]));
    let parsed: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("stats --json prints one JSON object");
    assert_eq!(parsed[&addr]["signal_channels"][0]["group"], "g");

    let emitted = output(dflockctl(&addr).args(["emit", "a.b", "hello world"]));
    assert_eq!(String::from_utf8_lossy(&emitted.stdout), "1\n");
    let mut received = String::new();
    BufReader::new(listener.stdout.take().expect("piped"))
        .read_line(&mut received)
        .expect("read a signal");
    assert_eq!(received, "a.b hello world\n");
    listener.kill().expect("kill listen");
    let _ = listener.wait();

    drop(server);
    let down = output(dflockctl(&addr).arg("ping"));
    assert_eq!(down.status.code(), Some(69));
}

#[test]
fn auth_tokens_come_from_flags_files_and_the_environment() {
    let server = TestServer::start(&["--auth-token", "s3cret"]);
    let addr = server.addr.to_string();
    let dir = TempDir::new();
    let file = dir.file("token", b"s3cret\n");

    let from_flag = output(dflockctl(&addr).args(["ping", "--auth-token", "s3cret"]));
    assert_eq!(from_flag.status.code(), Some(0));
    let from_file = output(dflockctl(&addr).args(["--auth-token-file", &file, "ping"]));
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr(&from_file));
    let from_env = output(
        dflockctl(&addr)
            .env("DFLOCKD_AUTH_TOKEN", "s3cret")
            .arg("ping"),
    );
    assert_eq!(from_env.status.code(), Some(0));
    // An explicit file wins over the environment's token, as for the server.
    let file_over_env = output(dflockctl(&addr).env("DFLOCKD_AUTH_TOKEN", "wrong").args([
        "--auth-token-file",
        &file,
        "ping",
    ]));
    assert_eq!(file_over_env.status.code(), Some(0));

    let wrong = output(dflockctl(&addr).args(["run", "--auth-token", "guess", "k", "true"]));
    assert_eq!(wrong.status.code(), Some(69));
    assert!(
        stderr(&wrong).contains("authentication"),
        "{}",
        stderr(&wrong)
    );
    let missing_file = output(dflockctl(&addr).args(["--auth-token-file", "/nonexistent", "ping"]));
    assert_eq!(missing_file.status.code(), Some(64));
}

#[test]
fn empty_variables_are_unset_and_empty_tokens_are_errors() {
    let server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let empty_env = output(
        dflockctl(&addr)
            .env("DFLOCKD_TLS", "")
            .env("DFLOCKD_CONNECT_TIMEOUT", "")
            .env("DFLOCKD_AUTH_TOKEN", "")
            .arg("ping"),
    );
    assert_eq!(empty_env.status.code(), Some(0), "{}", stderr(&empty_env));

    let dir = TempDir::new();
    let blank_file = dir.file("token", b" \n");
    let blank_sources: [(&[&str], &str); 4] = [
        (&["--auth-token", ""], ""),
        (&["--auth-token", " \t"], ""),
        (&[], "  "),
        (&["--auth-token-file", &blank_file], ""),
    ];
    for (args, env_token) in blank_sources {
        let blank = output(
            dflockctl(&addr)
                .env("DFLOCKD_AUTH_TOKEN", env_token)
                .args(args)
                .arg("ping"),
        );
        assert_eq!(blank.status.code(), Some(64), "{}", stderr(&blank));
        assert!(
            stderr(&blank).contains("auth token is empty"),
            "{}",
            stderr(&blank)
        );
    }
}

#[test]
fn help_documents_the_exit_statuses() {
    let help = output(dflockctl("127.0.0.1:1").arg("--help"));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in ["Exit status", "64", "65", "69", "70", "75", "76", "127"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn tls_with_a_server_name_other_than_the_address() {
    // The certificate names a host, not the address dflockctl connects to.
    let dir = TempDir::new();
    let issued = rcgen::generate_simple_self_signed(vec!["locks.internal".to_owned()])
        .expect("generate a certificate");
    let cert = dir.file("cert.pem", issued.cert.pem().as_bytes());
    let key = dir.file("key.pem", issued.signing_key.serialize_pem().as_bytes());
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let addr = server.addr.to_string();

    let by_address = output(dflockctl(&addr).args(["--tls-ca", &cert, "ping"]));
    assert_eq!(
        by_address.status.code(),
        Some(69),
        "{}",
        stderr(&by_address)
    );
    let named = output(dflockctl(&addr).args([
        "--tls-ca",
        &cert,
        "--tls-server-name",
        "locks.internal",
        "ping",
    ]));
    assert_eq!(named.status.code(), Some(0), "{}", stderr(&named));
    let from_env = output(
        dflockctl(&addr)
            .env("DFLOCKD_TLS_CA", &cert)
            .env("DFLOCKD_TLS_SERVER_NAME", "locks.internal")
            .arg("ping"),
    );
    assert_eq!(from_env.status.code(), Some(0), "{}", stderr(&from_env));
}

#[test]
fn io_timeout_bounds_the_wait_for_a_silent_server() {
    // Accepts connections (the kernel does, from the backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let ping = output(dflockctl(&addr).args(["--io-timeout", "1", "ping"]));
    assert_eq!(ping.status.code(), Some(69), "{}", stderr(&ping));
    // Well before the 10 s default would have given up.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let rejected = output(dflockctl(&addr).args(["--io-timeout", "0", "ping"]));
    assert_eq!(rejected.status.code(), Some(64), "{}", stderr(&rejected));
}

/// The `openssl req` command of the README's TLS recipe, continuation lines joined.
fn readme_certificate_recipe() -> String {
    let readme = include_str!("../../README.md");
    let mut lines = readme
        .lines()
        .skip_while(|line| !line.starts_with("openssl req -x509"));
    let mut command = String::new();
    for line in lines.by_ref() {
        match line.strip_suffix('\\') {
            Some(continued) => command.push_str(continued),
            None => {
                command.push_str(line);
                return command;
            }
        }
    }
    panic!("the README has no complete `openssl req -x509` recipe");
}

#[test]
fn the_readme_certificate_recipe_makes_a_certificate_clients_accept() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: the `openssl` binary is not installed; the README recipe was not run");
        return;
    }
    let dir = TempDir::new();
    let made = Command::new("sh")
        .args(["-c", &readme_certificate_recipe()])
        .current_dir(dir.path(""))
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    assert!(
        made.status.success(),
        "the recipe failed: {}",
        stderr(&made)
    );
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let ping = output(dflockctl(&server.addr.to_string()).args([
        "--tls-ca",
        &cert,
        "--tls-server-name",
        "localhost",
        "ping",
    ]));
    assert_eq!(ping.status.code(), Some(0), "{}", stderr(&ping));
    // The address itself is in the certificate too.
    let by_address = output(dflockctl(&server.addr.to_string()).args(["--tls-ca", &cert, "ping"]));
    assert_eq!(by_address.status.code(), Some(0), "{}", stderr(&by_address));
}

#[test]
fn a_ca_certificate_on_the_server_is_explained() {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("certificate params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let signing_key = rcgen::KeyPair::generate().expect("generate a key");
    let issued = params.self_signed(&signing_key).expect("self-sign");
    let dir = TempDir::new();
    let cert = dir.file("cert.pem", issued.pem().as_bytes());
    let key = dir.file("key.pem", signing_key.serialize_pem().as_bytes());
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let ping = output(dflockctl(&server.addr.to_string()).args([
        "--tls-ca",
        &cert,
        "--tls-server-name",
        "localhost",
        "ping",
    ]));
    assert_eq!(ping.status.code(), Some(69), "{}", stderr(&ping));
    let said = String::from_utf8_lossy(&ping.stdout);
    assert!(
        said.contains("is a CA certificate, not a server certificate")
            && said.contains("basicConstraints=critical,CA:FALSE"),
        "{said}"
    );
}

/// A port nothing listens on (bound and released again).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Sends `signal` to a child that has not been waited for.
fn send_signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
fn run_tells_the_command_about_its_lock() {
    let server = TestServer::start(&[]);
    let out = output(dflockctl(&server.addr.to_string()).args([
        "run",
        "--lease",
        "7",
        "orders",
        "-c",
        "echo \"$DFLOCKD_LOCK_KEY $DFLOCKD_LOCK_TOKEN $DFLOCKD_LOCK_FENCE $DFLOCKD_LOCK_LEASE\" | cat",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [key, token, fence, lease] = fields[..] else {
        panic!("four values expected: {text:?}");
    };
    assert_eq!(key, "orders");
    assert_eq!(token.len(), 32, "{token}");
    let expected_fence = u64::from_str_radix(&token[..16], 16).expect("hex token");
    assert_eq!(fence.parse::<u64>().expect("decimal fence"), expected_fence);
    assert_eq!(lease, "7");
    assert!(is_free(&server, "orders"));
}

#[test]
fn run_exits_65_when_the_server_refuses_the_request() {
    let server = TestServer::start(&[]);
    let client = Client::new([server.addr.to_string()]).expect("valid");
    let _slot = client
        .semaphore("pool", 2)
        .acquire(Duration::ZERO)
        .expect("acquire");
    let out =
        output(dflockctl(&server.addr.to_string()).args(["run", "--limit", "3", "pool", "true"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error_limit_mismatch"),
        "{}",
        stderr(&out)
    );

    let listen = output(dflockctl(&server.addr.to_string()).args(["listen", ">.a"]));
    assert_eq!(listen.status.code(), Some(65), "{}", stderr(&listen));
}

#[test]
fn run_without_a_command_holds_until_sigterm() {
    let server = TestServer::start(&[]);
    let mut holder = dflockctl(&server.addr.to_string())
        .args(["run", "held"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dflockctl");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read the held line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [key, token, fence] = fields[..] else {
        panic!("KEY TOKEN FENCE expected: {line:?}");
    };
    assert_eq!(key, "held");
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(
        fence.parse::<u64>().ok(),
        u64::from_str_radix(&token[..16], 16).ok()
    );
    assert!(!is_free(&server, "held"), "held once the line is printed");
    send_signal(&holder, libc::SIGTERM);
    assert_eq!(wait_code(&mut holder, PROMPTLY), Some(0));
    assert!(is_free(&server, "held"), "released on SIGTERM");
}

#[test]
fn sigint_while_waiting_ends_the_wait() {
    let server = TestServer::start(&[]);
    let client = Client::new([server.addr.to_string()]).expect("valid");
    let _held = client.lock("k").acquire(Duration::ZERO).expect("acquire");
    let mut waiter = dflockctl(&server.addr.to_string())
        .args(["run", "k", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dflockctl");
    wait_until("dflockctl waits in the queue", PROMPTLY, || {
        lock_waiters(&server, "k") == 1
    });
    send_signal(&waiter, libc::SIGINT);
    assert_eq!(wait_code(&mut waiter, PROMPTLY), Some(128 + libc::SIGINT));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut waiter.stderr.take().expect("piped"), &mut said)
        .expect("read stderr");
    assert_eq!(
        said,
        "dflockctl: k: interrupted while waiting; not acquired\n"
    );
    wait_until("the server forgets the waiter", PROMPTLY, || {
        lock_waiters(&server, "k") == 0
    });
}

#[test]
fn stats_reports_an_unreachable_server_without_hiding_the_others() {
    let server = TestServer::start(&[]);
    let client = Client::new([server.addr.to_string()]).expect("valid");
    let _held = client.lock("k").acquire(Duration::ZERO).expect("acquire");
    let up = server.addr.to_string();
    let down = format!("127.0.0.1:{}", closed_port());
    let servers = format!("{down},{up}");

    let table = output(dflockctl(&servers).arg("stats"));
    assert_eq!(table.status.code(), Some(69));
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(shown.starts_with(&format!("{up}: ")), "{shown}");
    assert!(shown.contains("locks"), "{shown}");
    let said = stderr(&table);
    assert!(said.contains(&down) && said.contains("refused"), "{said}");

    let json = output(dflockctl(&servers).args(["stats", "--json"]));
    assert_eq!(json.status.code(), Some(69));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    let keys: Vec<&String> = parsed.as_object().expect("an object").keys().collect();
    assert_eq!(keys, [&up]);
    assert_eq!(parsed[&up]["locks"][0]["key"], "k");
    assert!(stderr(&json).contains(&down), "{}", stderr(&json));
}

/// `dflockctl emit CHANNEL -` with `input` on stdin.
fn emit_stdin(addr: &str, channel: &str, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut emit = dflockctl(addr)
        .args(["emit", channel, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emit");
    let mut stdin = emit.stdin.take().expect("piped");
    // The payload may be refused before all of it is read; a broken pipe is fine then.
    let _ = stdin.write_all(input);
    drop(stdin);
    emit.wait_with_output().expect("emit output")
}

#[test]
fn emit_reads_the_payload_from_stdin_and_listen_stops_after_count() {
    let server = TestServer::start(&[]);
    let addr = server.addr.to_string();
    let mut listener = listen_in_background(&server, &["listen", "--count", "2", "news"], "news");

    let first = emit_stdin(&addr, "news", b"hello from stdin\n");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "1\n");
    let two_lines = emit_stdin(&addr, "news", b"one\ntwo\n");
    assert_eq!(two_lines.status.code(), Some(64), "{}", stderr(&two_lines));
    assert!(
        stderr(&two_lines).contains("single line"),
        "{}",
        stderr(&two_lines)
    );
    let too_long = emit_stdin(&addr, "news", &vec![b'x'; 70_000]);
    assert_eq!(too_long.status.code(), Some(64), "{}", stderr(&too_long));
    let second = emit_stdin(&addr, "news", b"no line feed");
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));

    assert_eq!(wait_code(&mut listener, PROMPTLY), Some(0), "exits after 2");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut listener.stdout.take().expect("piped"), &mut printed)
        .expect("read listen output");
    assert_eq!(printed, "news hello from stdin\nnews no line feed\n");
}

#[test]
fn completions_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(dflockctl("127.0.0.1:1").args(["completions", shell]));
        assert_eq!(
            script.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&script)
        );
        let text = String::from_utf8_lossy(&script.stdout);
        assert!(
            text.contains("dflockctl")
                && text.contains("listen")
                && text.contains("conflict-exit-code"),
            "{shell}: {text}"
        );
    }
    let unknown = output(dflockctl("127.0.0.1:1").args(["completions", "tcsh"]));
    assert_eq!(unknown.status.code(), Some(64));
}

#[test]
fn top_shows_servers_side_by_side_with_rates_and_contended_keys() {
    let a = TestServer::start(&[]);
    let b = TestServer::start(&[]);
    let servers = format!("{},{}", a.addr, b.addr);
    // A held key with one waiter on server a.
    let mut holder = a.connect();
    holder.lock("busy", "0");
    let mut waiter = a.connect();
    waiter.send("l", "busy", "60");
    crate::support::wait_until("the waiter is queued", Duration::from_secs(5), || {
        crate::support::lock_waiters(&a, "busy") == 1
    });

    let once = output(dflockctl(&servers).args(["top", "--once", "--interval", "0.2"]));
    assert_eq!(once.status.code(), Some(0), "{once:?}");
    let text = String::from_utf8_lossy(&once.stdout).into_owned();
    let header = text.lines().next().expect("a header row");
    assert!(header.contains(&a.addr.to_string()) && header.contains(&b.addr.to_string()));
    assert!(
        text.lines()
            .any(|l| l.contains("grants") && l.contains("/s")),
        "{text}"
    );
    assert!(text.contains("most contended lock keys"), "{text}");
    assert!(text.contains("busy"), "{text}");

    let json = output(dflockctl(&servers).args(["top", "--once", "--json", "--interval", "0.1"]));
    let parsed: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("top --json prints one JSON object");
    assert_eq!(parsed[a.addr.to_string()]["lock"]["waiters"], 1);
    assert_eq!(
        parsed[a.addr.to_string()]["lock"]["contended"][0]["key"],
        "busy"
    );
    assert_eq!(parsed[b.addr.to_string()]["lock"]["holders"], 0);

    drop(b);
    let down = output(dflockctl(&servers).args(["top", "--once", "--interval", "0.1"]));
    assert_eq!(down.status.code(), Some(69));
    let text = String::from_utf8_lossy(&down.stdout);
    assert!(
        text.contains(&a.addr.to_string()),
        "the live server is still shown: {text}"
    );
}

#[test]
fn check_queue_and_evict_a_key_with_the_admin_token() {
    let server = TestServer::start(&["--auth-token", "s3cret", "--admin-token", "adm1n"]);
    let addr = server.addr.to_string();
    let mut holder = server.connect();
    assert_eq!(holder.request("auth", "_", "s3cret"), "ok");
    let token = holder.lock("k", "0 60");
    let mut waiter = server.connect();
    assert_eq!(waiter.request("auth", "_", "s3cret"), "ok");
    waiter.send("l", "k", "60");
    wait_until("the waiter queues", PROMPTLY, || {
        holder.request("q", "k", "") == "ok 1 1 1 0"
    });
    let as_user = |args: &[&str]| output(dflockctl(&addr).arg("--auth-token=s3cret").args(args));
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let queued = as_user(&["queue", "k"]);
    assert_eq!(
        stdout(&queued),
        "k: 1/1 held, 1 waiting\n",
        "{}",
        stderr(&queued)
    );
    let json = as_user(&["queue", "pool", "--semaphore", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["key"], "pool");
    assert_eq!(
        (value["holders"].as_u64(), value["limit"].as_u64()),
        (Some(0), Some(0))
    );

    let current = as_user(&["check", "k", &token]);
    assert_eq!(current.status.code(), Some(0));
    assert!(
        stdout(&current).starts_with(&format!("current {} ", &token[..16])),
        "{}",
        stdout(&current)
    );
    let bad = as_user(&["check", "k", "xyz"]);
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));

    let refused = as_user(&["evict", "k"]);
    assert_eq!(refused.status.code(), Some(65));
    assert!(
        stderr(&refused).contains("admin token"),
        "{}",
        stderr(&refused)
    );
    let evicted =
        output(dflockctl(&addr).args(["--auth-token", "adm1n", "evict", "k", &token[..16]]));
    assert_eq!(evicted.status.code(), Some(0), "{}", stderr(&evicted));
    assert_eq!(stdout(&evicted), "1\n");
    assert!(waiter.read_line().starts_with("ok "));

    let stale = as_user(&["check", "k", &token]);
    assert_eq!(
        (stale.status.code(), stdout(&stale)),
        (Some(1), "stale\n".to_owned())
    );
    let everyone = output(
        dflockctl(&addr)
            .env("DFLOCKD_AUTH_TOKEN", "adm1n")
            .args(["evict", "k"]),
    );
    assert_eq!(stdout(&everyone), "1\n", "{}", stderr(&everyone));
}

#[test]
fn events_prints_lock_events_as_they_happen() {
    let server = TestServer::start(&["--lock-events"]);
    let mut text = listen_in_background(&server, &["events", "--count", "3"], "$sem.>");
    let mut json = listen_in_background(
        &server,
        &["events", "--json", "--count", "1", "$lock.released.>"],
        "$lock.released.>",
    );
    let client = Client::new([server.addr.to_string()]).expect("valid");
    let guard = client.lock("jobs").acquire(PROMPTLY).expect("lock");
    let fence = format!("{:016x}", guard.fence());
    guard.release().expect("release");
    let slot = client.semaphore("pool", 2).acquire(PROMPTLY).expect("slot");
    drop(slot);

    assert_eq!(wait_code(&mut text, PROMPTLY), Some(0), "exits after 3");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut text.stdout.take().expect("piped"), &mut printed)
        .expect("read events output");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(
        lines[0].starts_with(&format!("granted lock jobs fence={fence} conn=")),
        "{printed}"
    );
    assert!(lines[0].contains(" peer=127.0.0.1:"), "{printed}");
    assert!(lines[0].ends_with(" waited_ms=0 waiters=0"), "{printed}");
    assert!(
        lines[1].starts_with(&format!("released lock jobs fence={fence} ")),
        "{printed}"
    );
    assert!(lines[1].contains(" held_ms="), "{printed}");
    assert!(lines[2].starts_with("granted semaphore pool "), "{printed}");

    assert_eq!(wait_code(&mut json, PROMPTLY), Some(0), "exits after 1");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut json.stdout.take().expect("piped"), &mut printed)
        .expect("read events output");
    let event: serde_json::Value = serde_json::from_str(printed.trim_end()).expect("one JSON line");
    assert_eq!(event["event"], "released");
    assert_eq!(event["ns"], "lock");
    assert_eq!(event["key"], "jobs");
    assert_eq!(event["fence"], fence.as_str());
}
