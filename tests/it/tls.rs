//! TLS transport (spec §1, §15.1): the protocol unchanged inside TLS, the handshake deadline,
//! plaintext clients on a TLS port, TLS with authentication, and start-up errors for a bad
//! certificate configuration.
//!
//! The client is a blocking rustls connection over a std socket; the server's certificate is
//! made at test time and is the client's only trust anchor.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::support::{
    REPLY_TIMEOUT, TempDir, TestServer, grant, start_up_error, stats_entry, wait_until,
};

/// The name the test certificate is issued for.
const SERVER_NAME: &str = "localhost";
/// TLS record content type of an alert.
const ALERT: u8 = 0x15;
/// How long a test waits for the server to notice something a peer did.
const SETTLE: Duration = Duration::from_secs(3);

/// A certificate and key made for one test, as files the server reads.
struct Pki {
    _dir: TempDir,
    cert: String,
    key: String,
    client: Arc<ClientConfig>,
}

impl Pki {
    fn new() -> Pki {
        let issued = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .expect("generate a certificate");
        let dir = TempDir::new();
        let cert = dir.file("cert.pem", issued.cert.pem().as_bytes());
        let key = dir.file("key.pem", issued.signing_key.serialize_pem().as_bytes());
        let mut roots = RootCertStore::empty();
        roots
            .add(issued.cert.der().clone())
            .expect("trust the test certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            _dir: dir,
            cert,
            key,
            client: Arc::new(client),
        }
    }

    /// A server using this certificate, with `args` added.
    fn start(&self, args: &[&str]) -> TestServer {
        let mut all = vec![
            "--tls-cert",
            self.cert.as_str(),
            "--tls-key",
            self.key.as_str(),
        ];
        all.extend_from_slice(args);
        TestServer::start(&all)
    }

    /// A client connection that has completed its handshake.
    fn connect(&self, server: &TestServer) -> TlsClient {
        TlsClient::connect(server.addr, self.client.clone())
    }

    /// Waiters queued on lock `key` according to `stats` (asked over a new TLS connection).
    fn waiters(&self, server: &TestServer, key: &str) -> u64 {
        let line = self.connect(server).request("stats", "_", "_");
        let json = line.strip_prefix("ok ").expect("a stats reply");
        let stats: serde_json::Value = serde_json::from_str(json).expect("stats JSON");
        stats_entry(&stats, "locks", key).map_or(0, |entry| {
            entry["waiters"].as_u64().expect("waiters is an integer")
        })
    }

    /// The first flight of a client handshake (its ClientHello records).
    fn client_hello(&self) -> Vec<u8> {
        let mut tls =
            ClientConnection::new(self.client.clone(), server_name()).expect("client connection");
        let mut hello = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut hello).expect("write to a Vec");
        }
        hello
    }
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("valid name")
}

/// A plain socket with the tests' read timeout and no Nagle delay.
fn tcp(addr: SocketAddr) -> TcpStream {
    let socket = TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    socket.set_nodelay(true).unwrap();
    socket
}

/// Reads a plain socket until the server closes it; returns what arrived first.
fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
            // A read with a timeout is not restarted after a signal handler ran.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("connection not closed within {REPLY_TIMEOUT:?}: {e}"),
        }
    }
}

/// Asserts that `bytes` hold no protocol reply: nothing at all, or a TLS alert record.
fn assert_no_protocol_reply(bytes: &[u8], what: &str) {
    assert!(
        bytes.is_empty() || bytes[0] == ALERT,
        "{what}: expected nothing or a TLS alert, got {:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// A protocol client over TLS.
struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsClient {
        let mut socket = tcp(addr);
        let mut tls = ClientConnection::new(config, server_name()).expect("client connection");
        while tls.is_handshaking() {
            tls.complete_io(&mut socket).expect("TLS handshake");
        }
        TlsClient {
            stream: StreamOwned::new(tls, socket),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    fn send(&mut self, cmd: &str, key: &str, arg: &str) {
        self.send_raw(format!("{cmd}\n{key}\n{arg}\n").as_bytes());
    }

    fn request(&mut self, cmd: &str, key: &str, arg: &str) -> String {
        self.send(cmd, key, arg);
        self.read_line()
    }

    fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        match self.stream.read_until(b'\n', &mut line) {
            Ok(0) => panic!("connection closed while a line was expected"),
            Ok(_) => {
                assert_eq!(line.pop(), Some(b'\n'), "line cut short: {line:?}");
                String::from_utf8(line).expect("utf-8 reply")
            }
            Err(e) => panic!("no reply within {REPLY_TIMEOUT:?}: {e}"),
        }
    }

    /// Asserts that the server ends the stream without sending anything more.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => panic!("connection not closed within {REPLY_TIMEOUT:?}: {e}"),
        }
        assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}");
    }
}

#[test]
fn locks_work_over_tls() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    let mut a = pki.connect(&server);
    let mut b = pki.connect(&server);
    let (token, lease) = grant(&a.request("l", "k", "0"));
    assert_eq!(lease, 33);
    assert_eq!(b.request("l", "k", "0"), "timeout");
    // A blocking acquire is granted over TLS when the holder releases.
    b.send("l", "k", "10");
    assert_eq!(a.request("r", "k", &token), "ok");
    let (token, _) = grant(&b.read_line());
    assert_eq!(b.request("n", "k", &format!("{token} 60")), "ok 60");
    assert_eq!(b.request("r", "k", &token), "ok");
    assert_eq!(a.request("ping", "_", ""), "ok");
    let stats = a.request("stats", "_", "_");
    assert!(stats.starts_with("ok {\"connections\":2"), "{stats}");
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order_over_tls() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    let mut c = pki.connect(&server);
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend_from_slice(
            match i % 3 {
                0 => b"ping\n_\n\n".to_vec(),
                1 => format!("signal\nnobody.{i}\npayload {i}\n").into_bytes(),
                _ => format!("l\nkey{i}\n0\n").into_bytes(),
            }
            .as_slice(),
        );
    }
    c.send_raw(&batch);
    for i in 0..300 {
        let line = c.read_line();
        match i % 3 {
            0 => assert_eq!(line, "ok", "request {i}"),
            1 => assert_eq!(line, "ok 0", "request {i}"),
            _ => {
                grant(&line);
            }
        }
    }
}

#[test]
fn signals_are_pushed_over_tls_up_to_64_kib() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    let mut subscriber = pki.connect(&server);
    assert_eq!(subscriber.request("listen", "events.>", ""), "ok");
    let mut publisher = pki.connect(&server);
    assert_eq!(
        publisher.request("signal", "events.login", " hello  world "),
        "ok 1"
    );
    assert_eq!(subscriber.read_line(), "sig events.login  hello  world ");
    // The largest push spans several TLS records.
    let channel = "events.big";
    let payload: String = "0123456789 abcdef "
        .chars()
        .cycle()
        .take(65_536 - 5 - channel.len())
        .collect();
    assert_eq!(publisher.request("signal", channel, &payload), "ok 1");
    let push = subscriber.read_line();
    assert_eq!(push.len(), 65_536);
    assert_eq!(push, format!("sig {channel} {payload}"));
    assert_eq!(subscriber.request("ping", "_", ""), "ok");
}

#[test]
fn a_tls_peer_that_goes_away_while_waiting_leaves_the_queue() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    let mut holder = pki.connect(&server);
    let token = grant(&holder.request("l", "k", "0")).0;
    // One waiter ends its TLS stream properly (close_notify), one just half-closes TCP.
    let mut polite = pki.connect(&server);
    let mut abrupt = pki.connect(&server);
    for c in [&mut polite, &mut abrupt] {
        c.send("l", "k", "30");
    }
    wait_until("both requests queue", SETTLE, || {
        pki.waiters(&server, "k") == 2
    });
    polite.stream.conn.send_close_notify();
    polite.stream.flush().expect("send close_notify");
    wait_until("the closed stream's waiter leaves", SETTLE, || {
        pki.waiters(&server, "k") == 1
    });
    abrupt
        .stream
        .sock
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    wait_until("the half-closed waiter leaves", SETTLE, || {
        pki.waiters(&server, "k") == 0
    });
    // Neither got the lock: a new request does, as soon as the holder releases.
    let mut next = pki.connect(&server);
    next.send("l", "k", "10");
    wait_until("the new request queues", SETTLE, || {
        pki.waiters(&server, "k") == 1
    });
    assert_eq!(holder.request("r", "k", &token), "ok");
    grant(&next.read_line());
}

#[test]
fn a_tls_subscriber_that_never_reads_is_dropped() {
    let pki = Pki::new();
    let server = pki.start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let mut slow = pki.connect(&server);
    assert_eq!(slow.request("listen", "flood", ""), "ok");
    let filler: String = "x ".repeat(8 * 1024);
    let mut publisher = pki.connect(&server);
    let mut sent = 0;
    loop {
        assert!(sent < 5_000, "the slow subscriber was never dropped");
        let reply = publisher.request("signal", "flood", &format!("{sent} {filler}"));
        sent += 1;
        match reply.as_str() {
            "ok 1" => {}
            "ok 0" => break,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let stats = publisher.request("stats", "_", "_");
    assert!(stats.contains("\"signal_channels\":[]"), "{stats}");
    // What reached the subscriber's socket is readable, then the stream ends.
    let mut sink = Vec::new();
    match slow.stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => panic!("the slow subscriber was not disconnected: {e}"),
    }
    assert!(sink.starts_with(b"sig flood 0 "), "pushes came first");
}

#[test]
fn requests_sent_one_byte_per_record_are_understood() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    let mut c = pki.connect(&server);
    let bytes = b"l\nk\n0\nping\n_\n\nsignal\nch\na b\n";
    for byte in bytes {
        // Each flush sends the byte in a TLS record of its own.
        c.send_raw(std::slice::from_ref(byte));
    }
    grant(&c.read_line());
    assert_eq!(c.read_line(), "ok");
    assert_eq!(c.read_line(), "ok 0");
}

#[test]
fn a_stalled_handshake_is_dropped_at_the_handshake_deadline() {
    let pki = Pki::new();
    let server = pki.start(&["--tls-handshake-timeout", "1"]);
    let started = Instant::now();
    let mut silent = tcp(server.addr);
    let mut partial = tcp(server.addr);
    let hello = pki.client_hello();
    partial.write_all(&hello[..hello.len() / 2]).unwrap();
    // A client that finished its handshake is not subject to the deadline.
    let mut done = pki.connect(&server);

    for (what, socket) in [
        ("silent", &mut silent),
        ("partial ClientHello", &mut partial),
    ] {
        let received = read_until_closed(socket);
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "{what}: closed after {after:?}, before the 1 s deadline"
        );
        assert_no_protocol_reply(&received, what);
    }
    assert_eq!(done.request("ping", "_", ""), "ok");
}

/// Far more ClientHellos arrive together than the server handshakes in one loop turn: those it
/// defers to later turns are not lost, and every client completes its handshake and is served.
#[test]
fn a_burst_of_handshakes_beyond_one_turn_all_complete() {
    const CLIENTS: usize = 200;
    let pki = Pki::new();
    let server = pki.start(&[]);
    // Every ClientHello is sent before any client reads the server's answer, so they reach the
    // server together.
    let started: Vec<(ClientConnection, TcpStream)> = (0..CLIENTS)
        .map(|_| {
            let mut socket = tcp(server.addr);
            let mut tls = ClientConnection::new(pki.client.clone(), server_name())
                .expect("client connection");
            while tls.wants_write() {
                tls.write_tls(&mut socket).expect("send the ClientHello");
            }
            (tls, socket)
        })
        .collect();
    for (i, (mut tls, mut socket)) in started.into_iter().enumerate() {
        while tls.is_handshaking() {
            tls.complete_io(&mut socket)
                .unwrap_or_else(|e| panic!("client {i}: TLS handshake: {e}"));
        }
        let mut client = TlsClient {
            stream: StreamOwned::new(tls, socket),
        };
        grant(&client.request("l", &format!("k{i}"), "0"));
    }
}

#[test]
fn the_read_deadline_also_covers_the_handshake() {
    let pki = Pki::new();
    // The handshake deadline (10 s by default) is not the one that ends this wait.
    let server = pki.start(&["--read-timeout", "1"]);
    let started = Instant::now();
    let mut silent = tcp(server.addr);
    let received = read_until_closed(&mut silent);
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}, before the 1 s read deadline"
    );
    assert_no_protocol_reply(&received, "silent client");
}

#[test]
fn a_plaintext_client_gets_no_protocol_reply() {
    let pki = Pki::new();
    let server = pki.start(&[]);
    for request in [&b"ping\n_\n\n"[..], b"l\nk\n0\n", b"stats\n_\n_\n"] {
        let mut socket = tcp(server.addr);
        socket.write_all(request).unwrap();
        let received = read_until_closed(&mut socket);
        assert_no_protocol_reply(&received, &String::from_utf8_lossy(request));
    }
    // Nothing a plaintext request asked for happened.
    let mut c = pki.connect(&server);
    let stats = c.request("stats", "_", "_");
    assert!(stats.contains("\"locks\":[]"), "{stats}");
}

#[test]
fn the_read_deadline_applies_over_tls() {
    let pki = Pki::new();
    let server = pki.start(&["--read-timeout", "1"]);
    let mut c = pki.connect(&server);
    assert_eq!(c.read_line(), "error");
    c.expect_closed();
}

#[test]
fn authentication_works_over_tls() {
    let pki = Pki::new();
    let server = pki.start(&["--auth-token", "tls-token"]);
    let mut c = pki.connect(&server);
    assert_eq!(c.request("auth", "_", "tls-token"), "ok");
    c.send("l", "k", "0");
    grant(&c.read_line());
    let mut wrong = pki.connect(&server);
    assert_eq!(wrong.request("auth", "_", "guess"), "error_auth");
    wrong.expect_closed();
    let mut unauthenticated = pki.connect(&server);
    assert_eq!(unauthenticated.request("ping", "_", ""), "error_auth");
    unauthenticated.expect_closed();
}

#[test]
fn an_incomplete_tls_configuration_is_a_start_up_error() {
    let pki = Pki::new();
    let stderr = start_up_error(&["--tls-cert", &pki.cert], &[]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let stderr = start_up_error(&["--tls-key", &pki.key], &[]);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    let stderr = start_up_error(&[], &[("DFLOCKD_TLS_CERT", &pki.cert)]);
    assert!(stderr.contains("tls"), "{stderr}");
}

#[test]
fn an_unusable_certificate_or_key_is_a_start_up_error() {
    let pki = Pki::new();
    let other = Pki::new();
    let dir = TempDir::new();
    let garbage = dir.file("garbage.pem", b"this is not a certificate\n");
    let truncated_cert = {
        let pem = std::fs::read_to_string(&pki.cert).unwrap();
        dir.file("truncated.pem", &pem.as_bytes()[..pem.len() / 2])
    };
    let missing = dir.path("missing.pem");
    let unreadable = dir.path(""); // a directory
    let cases: &[(&str, &str, &str)] = &[
        ("garbage certificate", &garbage, &pki.key),
        ("truncated certificate", &truncated_cert, &pki.key),
        ("missing certificate", &missing, &pki.key),
        ("certificate is a directory", &unreadable, &pki.key),
        ("garbage key", &pki.cert, &garbage),
        ("missing key", &pki.cert, &missing),
        ("key of another certificate", &pki.cert, &other.key),
    ];
    for &(what, cert, key) in cases {
        let stderr = start_up_error(&["--tls-cert", cert, "--tls-key", key], &[]);
        assert!(!stderr.is_empty(), "{what}: no message");
    }
}

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes_and_keeps_old_connections() {
    let old = Pki::new();
    let server = old.start(&[]);
    let mut holder = old.connect(&server);
    let token = grant(&holder.request("l", "k", "0")).0;

    let new = Pki::new();
    std::fs::copy(&new.cert, &old.cert).expect("replace the certificate");
    std::fs::copy(&new.key, &old.key).expect("replace the key");
    server.hangup();
    server.wait_for_log("new TLS handshakes use the new certificate", SETTLE);

    // New handshakes present the new certificate: trusted by the new roots only.
    let mut fresh = new.connect(&server);
    assert_eq!(
        fresh.request("l", "k", "0"),
        "timeout",
        "the old holder still holds"
    );
    let mut socket = tcp(server.addr);
    let mut stale = ClientConnection::new(old.client.clone(), server_name()).expect("client");
    let mut refused = false;
    while stale.is_handshaking() {
        if stale.complete_io(&mut socket).is_err() {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "a client trusting only the old certificate must fail its handshake"
    );

    // The connection made before the reload keeps its session and its lock.
    assert_eq!(holder.request("n", "k", &token), "ok 33");
    assert_eq!(holder.request("r", "k", &token), "ok");

    // A certificate that does not parse keeps the one in use.
    std::fs::write(&old.cert, "not a certificate").expect("write");
    server.hangup();
    server.wait_for_log("keeping the old TLS certificate", SETTLE);
    assert_eq!(new.connect(&server).request("ping", "_", ""), "ok");
}
