//! The Unix-socket listener against the real binary: the protocol over it (raw and through the
//! Rust client), `--no-tcp`, stale and live socket files, the file mode, removal at exit,
//! peer-credential allow-lists, peer auth, peers in logs and `stats`, socket activation and the
//! `sd_notify` datagrams.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dflockd::client::Client as LockClient;

use crate::support::{REPLY_TIMEOUT, TempDir, TestServer, start_up_error, wait_until};

const PROMPTLY: Duration = Duration::from_secs(5);

/// A raw protocol client over a Unix socket.
struct UnixClient {
    reader: BufReader<UnixStream>,
}

impl UnixClient {
    fn connect(path: &str) -> UnixClient {
        let stream = UnixStream::connect(path).expect("connect to the Unix socket");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        UnixClient {
            reader: BufReader::new(stream),
        }
    }

    fn request(&mut self, cmd: &str, key: &str, arg: &str) -> String {
        self.reader
            .get_mut()
            .write_all(format!("{cmd}\n{key}\n{arg}\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("reply in time");
        assert!(n > 0, "connection closed while a reply was expected");
        line.pop();
        line
    }

    fn stats(&mut self) -> serde_json::Value {
        let line = self.request("stats", "_", "");
        serde_json::from_str(line.strip_prefix("ok ").expect("ok reply")).expect("stats JSON")
    }

    /// Asserts the server closed the connection without a byte (or reset it).
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes before the close: {rest:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("not closed within {REPLY_TIMEOUT:?}: {e}"),
        }
    }
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

fn start_unix(dir: &TempDir, extra: &[&str]) -> (TestServer, String) {
    let path = dir.path("s.sock");
    let mut args = vec!["--unix-socket", &path];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    (server, path)
}

#[test]
fn locks_are_served_over_the_unix_socket_raw_and_through_the_client() {
    let dir = TempDir::new();
    let (server, path) = start_unix(&dir, &[]);
    server.wait_for_log(&format!("listening on unix:{path}"), PROMPTLY);

    let mut raw = UnixClient::connect(&path);
    let granted = raw.request("l", "k", "5");
    let token = granted
        .strip_prefix("ok ")
        .and_then(|rest| rest.split(' ').next())
        .expect("granted")
        .to_owned();
    // A second Unix peer waits behind the first, as over TCP.
    let mut other = UnixClient::connect(&path);
    assert_eq!(other.request("l", "k", "0"), "timeout");
    assert_eq!(raw.request("r", "k", &token), "ok");

    let client = LockClient::new([format!("unix:{path}")]).expect("client settings");
    let guard = client
        .lock("k")
        .acquire(Duration::from_secs(1))
        .expect("acquire over the Unix socket");
    let tcp = LockClient::new([server.addr.to_string()]).expect("client settings");
    assert!(
        tcp.lock("k").try_acquire().expect("try").is_none(),
        "TCP and Unix clients share one lock table"
    );
    drop(guard);
    assert!(tcp.lock("k").try_acquire().expect("try").is_some());
}

#[test]
fn no_tcp_serves_the_unix_socket_alone_and_removes_it_at_exit() {
    let dir = TempDir::new();
    let (mut server, path) = start_unix(&dir, &["--no-tcp", "--unix-socket-mode", "0600"]);
    server.wait_for_log(&format!("listening on unix:{path}"), PROMPTLY);
    assert!(
        server.log().iter().all(|line| !line.contains("127.0.0.1")),
        "no TCP listener: {:?}",
        server.log()
    );
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "--unix-socket-mode");
    let mut client = UnixClient::connect(&path);
    assert!(client.request("l", "k", "0").starts_with("ok "));
    drop(client);
    server.terminate();
    assert!(server.wait_exit(PROMPTLY).success());
    assert!(
        !Path::new(&path).exists(),
        "the socket file is removed at exit"
    );
}

#[test]
fn the_default_mode_is_0660() {
    let dir = TempDir::new();
    let (_server, path) = start_unix(&dir, &[]);
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn no_tcp_without_a_unix_socket_is_refused() {
    let stderr = start_up_error(&["--no-tcp"], &[]);
    assert!(stderr.contains("nothing to serve"), "{stderr}");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let dir = TempDir::new();
    let path = dir.path("s.sock");
    // A server that died without removing its socket: the file stays, nobody listens.
    drop(UnixListener::bind(&path).expect("bind"));
    let server = TestServer::start(&["--unix-socket", &path]);
    let mut client = UnixClient::connect(&path);
    assert_eq!(client.request("ping", "_", ""), "ok");

    // A second server must not take the live socket over.
    let stderr = start_up_error(&["--unix-socket", &path], &[]);
    assert!(stderr.contains("already listening"), "{stderr}");
    assert_eq!(
        client.request("ping", "_", ""),
        "ok",
        "the first still serves"
    );
    let mut again = UnixClient::connect(&path);
    assert_eq!(again.request("ping", "_", ""), "ok");
    drop(server);

    let file = dir.file("plain", b"not a socket");
    let stderr = start_up_error(&["--unix-socket", &file], &[]);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read(&file).expect("kept"), b"not a socket");
}

#[test]
fn the_allow_list_admits_the_own_uid_and_refuses_others() {
    let dir = TempDir::new();
    let me = uid().to_string();
    let (server, path) = start_unix(&dir, &["--unix-allow-uid", &format!("{me},4000000")]);
    let mut admitted = UnixClient::connect(&path);
    assert_eq!(admitted.request("ping", "_", ""), "ok");
    drop(server);

    let dir = TempDir::new();
    let other = (uid() + 1).to_string();
    let (server, path) = start_unix(&dir, &["--unix-allow-uid", &other]);
    let mut refused = UnixClient::connect(&path);
    refused.expect_closed();
    server.wait_for_log(
        &format!(
            "unix:uid={me},pid={}: refused, not in --unix-allow-uid",
            std::process::id()
        ),
        PROMPTLY,
    );
    // TCP peers are not subject to the Unix allow-lists.
    let mut tcp = server.connect();
    assert_eq!(tcp.request("ping", "_", ""), "ok");
}

#[test]
fn the_gid_list_admits_by_primary_group() {
    let dir = TempDir::new();
    let gid = rustix::process::getgid().as_raw().to_string();
    let (_server, path) = start_unix(
        &dir,
        &[
            "--unix-allow-uid",
            &(uid() + 1).to_string(),
            "--unix-allow-gid",
            &gid,
        ],
    );
    let mut client = UnixClient::connect(&path);
    assert_eq!(client.request("ping", "_", ""), "ok");
}

#[test]
fn peer_auth_lets_unix_peers_skip_auth_but_not_tcp_peers() {
    let dir = TempDir::new();
    let (server, path) = start_unix(&dir, &["--auth-token", "s3cret", "--unix-peer-auth"]);
    let mut local = UnixClient::connect(&path);
    assert!(local.request("l", "k", "0").starts_with("ok "));
    let mut tcp = server.connect();
    assert_eq!(tcp.request("l", "k2", "0"), "error_auth");

    // Without --unix-peer-auth a Unix peer authenticates like any other.
    let dir = TempDir::new();
    let (_server, path) = start_unix(&dir, &["--auth-token", "s3cret"]);
    let mut local = UnixClient::connect(&path);
    assert_eq!(local.request("l", "k", "0"), "error_auth");
    let mut local = UnixClient::connect(&path);
    assert_eq!(local.request("auth", "_", "s3cret"), "ok");
    assert!(local.request("l", "k", "0").starts_with("ok "));
}

#[test]
fn stats_and_logs_name_unix_peers_by_uid_and_pid() {
    let dir = TempDir::new();
    let (server, path) = start_unix(&dir, &["--log-connections"]);
    let mut holder = UnixClient::connect(&path);
    assert!(holder.request("l", "held", "0").starts_with("ok "));
    let mut tcp = server.connect();
    assert!(tcp.request("l", "tcp-held", "0").starts_with("ok "));
    let stats = holder.stats();
    let locks = stats["locks"].as_array().expect("locks");
    let entry = |key: &str| {
        locks
            .iter()
            .find(|lock| lock["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {stats}"))
            .clone()
    };
    let expected = format!("unix:uid={},pid={}", uid(), std::process::id());
    assert_eq!(entry("held")["owner_peer"], expected.as_str());
    assert!(
        entry("tcp-held").get("owner_peer").is_none(),
        "TCP holders are shown as before"
    );
}

#[test]
fn the_per_ip_cap_counts_unix_peers_per_uid() {
    let dir = TempDir::new();
    let (server, path) = start_unix(&dir, &["--max-connections-per-ip", "1"]);
    let mut first = UnixClient::connect(&path);
    assert_eq!(first.request("ping", "_", ""), "ok");
    let mut second = UnixClient::connect(&path);
    second.expect_closed();
    // The TCP peer's address has its own count.
    let mut tcp = server.connect();
    assert_eq!(tcp.request("ping", "_", ""), "ok");
    drop(first);
    wait_until("the uid's slot is free again", PROMPTLY, || {
        let mut next = UnixStream::connect(&path).expect("connect");
        next.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        next.write_all(b"ping\n_\n\n").expect("send");
        let mut reply = [0u8; 3];
        next.read_exact(&mut reply).is_ok() && &reply == b"ok\n"
    });
}

/// The notify socket a test plays service manager on.
fn notify_socket(dir: &TempDir) -> (UnixDatagram, String) {
    let path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (socket, path)
}

/// Datagrams received until `until` is among them or `timeout` passes.
fn notices_until(socket: &UnixDatagram, until: &str, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while start.elapsed() < timeout {
        if let Ok(n) = socket.recv(&mut buf) {
            let notice = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            let done = notice == until;
            seen.push(notice);
            if done {
                break;
            }
        }
    }
    seen
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = TempDir::new();
    let (manager, notify_path) = notify_socket(&dir);
    let mut server = TestServer::start_with(&[], |command| {
        command
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000");
    });
    let seen = notices_until(&manager, "READY=1", PROMPTLY);
    assert_eq!(seen.last().map(String::as_str), Some("READY=1"), "{seen:?}");
    // Half of 200 ms: several watchdog notices within a second.
    let start = Instant::now();
    let seen = notices_until(&manager, "WATCHDOG=1", Duration::from_secs(1));
    assert_eq!(
        seen.last().map(String::as_str),
        Some("WATCHDOG=1"),
        "{seen:?}"
    );
    let seen = notices_until(&manager, "WATCHDOG=1", Duration::from_secs(1));
    assert_eq!(
        seen.last().map(String::as_str),
        Some("WATCHDOG=1"),
        "{seen:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    server.terminate();
    let seen = notices_until(&manager, "STOPPING=1", PROMPTLY);
    assert!(seen.iter().any(|n| n == "STOPPING=1"), "{seen:?}");
    assert!(server.wait_exit(PROMPTLY).success());
}

#[test]
fn without_the_variables_nothing_is_sent() {
    // The notify socket exists, but the server is not told about it.
    let dir = TempDir::new();
    let (manager, _path) = notify_socket(&dir);
    let server = TestServer::start(&[]);
    let mut client = server.connect();
    assert_eq!(client.request("ping", "_", ""), "ok");
    let mut buf = [0u8; 64];
    assert!(manager.recv(&mut buf).is_err(), "nothing arrives");
}

#[test]
fn socket_activation_serves_the_handed_over_tcp_and_unix_listeners() {
    let tool = Path::new("/usr/bin/systemd-socket-activate");
    if !tool.exists() {
        eprintln!(
            "SKIPPED: {} is not installed; socket activation was not run",
            tool.display()
        );
        return;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let dir = TempDir::new();
    let path = dir.path("s.sock");
    let mut child = Command::new(tool)
        .args(["-l", &format!("127.0.0.1:{port}"), "-l", &path])
        .args(["-E", "DFLOCKD_LOG_FORMAT=text"])
        .arg(env!("CARGO_BIN_EXE_dflockd"))
        // The port it would bind: if activation were ignored it would fail to bind this one.
        .args(["--port", &port.to_string(), "--no-tcp"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            writer.lock().unwrap().push(line);
        }
    });
    wait_until("the socket file appears", PROMPTLY, || {
        Path::new(&path).exists()
    });
    // systemd-socket-activate starts the server on the first connection.
    let mut unix = UnixClient::connect(&path);
    assert!(unix.request("l", "k", "0").starts_with("ok "));
    let tcp = LockClient::new([format!("127.0.0.1:{port}")]).expect("client");
    assert!(
        tcp.lock("k").try_acquire().expect("try over TCP").is_none(),
        "the TCP listener serves the same lock table"
    );
    // The log is written by a thread of its own: wait for the line.
    wait_until("the activation is logged", PROMPTLY, || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("socket activation: 1 TCP and 1 Unix"))
    });
    // Drained at once: no connection left open.
    drop((unix, tcp));
    // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    assert!(
        Path::new(&path).exists(),
        "a handed-over socket's file belongs to the service manager and stays"
    );
}
