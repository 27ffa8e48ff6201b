//! Logging under pressure: a log sink that stops reading never stalls the event loop (lines that
//! cannot be queued are dropped and counted), and warnings a peer can trigger at will are
//! rate-limited to one line per second per kind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, REPLY_TIMEOUT, TestServer};

const TOKEN: &str = "s3cret";
/// Connections opened in parallel by the flood.
const FLOOD_THREADS: usize = 8;

/// Opens up to `attempts` connections one after another, each sending a wrong `auth` and closing
/// without waiting for the answer. Stops early if a connection cannot be made (a stalled server's
/// backlog is full). Returns how many wrong `auth` requests were sent.
fn fail_auth(addr: SocketAddr, attempts: usize) -> usize {
    let mut sent = 0;
    for _ in 0..attempts {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            break;
        };
        if stream.write_all(b"auth\n_\nwrong\n").is_ok() {
            sent += 1;
        }
    }
    sent
}

/// Runs [`fail_auth`] on [`FLOOD_THREADS`] threads; returns the total sent.
fn flood(addr: SocketAddr, attempts_per_thread: usize) -> usize {
    let threads: Vec<_> = (0..FLOOD_THREADS)
        .map(|_| thread::spawn(move || fail_auth(addr, attempts_per_thread)))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// An authenticated client is served promptly: `auth`, a lock and its release.
fn assert_served(addr: SocketAddr) {
    let asked = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).expect("connect");
    let mut c = Client::from_stream(stream);
    assert_eq!(c.request("auth", "_", TOKEN), "ok");
    let token = c.lock("k", "0");
    assert_eq!(c.request("r", "k", &token), "ok");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "served after {took:?}");
}

#[test]
fn a_stalled_log_sink_does_not_stall_the_server() {
    // --debug logs every connection several times: far more than the pipe and the queue hold.
    let (mut server, mut stderr) =
        TestServer::start_with_stalled_log(&["--auth-token", TOKEN, "--debug"]);
    let sent = flood(server.addr, 400);
    assert_served(server.addr);
    assert!(sent >= 1000, "only {sent} wrong auth requests got through");

    server.terminate();
    let mut log = String::new();
    stderr.read_to_string(&mut log).expect("read the log");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(log.contains(" log lines dropped"), "no drop count:\n{log}");
    // The lines queued at exit are written before the process ends.
    assert!(
        log.trim_end().ends_with("shutdown complete"),
        "last lines lost:\n{}",
        &log[log.len().saturating_sub(2000)..]
    );
}

/// How many failures a rate-limited `authentication failed` line stands for: itself and those
/// it says were suppressed before it.
fn failures_reported(line: &str) -> usize {
    let suppressed = line
        .split(" (")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(" similar suppressed)"))
        .map_or(0, |n| n.parse::<usize>().expect("a count"));
    1 + suppressed
}

#[test]
fn authentication_failures_are_logged_once_a_second_with_a_count() {
    let server = TestServer::start(&["--auth-token", TOKEN]);
    let started = Instant::now();
    let sent = flood(server.addr, 250);
    // After a quiet second, the next failure gets through and reports the rest.
    thread::sleep(Duration::from_millis(1100));
    let seconds = started.elapsed().as_secs() as usize;
    let last = fail_auth(server.addr, 1);
    let total = sent + last;
    server.wait_for_log("similar suppressed", REPLY_TIMEOUT);
    let reported = || -> Vec<String> {
        server
            .log()
            .into_iter()
            .filter(|line| line.contains("authentication failed"))
            .collect()
    };
    crate::support::wait_until("every failure reported", REPLY_TIMEOUT, || {
        reported()
            .iter()
            .map(|l| failures_reported(l))
            .sum::<usize>()
            >= total
    });
    let lines = reported();
    assert!(
        lines.len() <= seconds + 2,
        "{} lines for {total} failures in {seconds} s",
        lines.len()
    );
    let counted: usize = lines.iter().map(|l| failures_reported(l)).sum();
    assert_eq!(counted, total, "{lines:#?}");
    assert_served(server.addr);
}

#[test]
fn connections_and_requests_are_logged_in_words() {
    let server = TestServer::start(&["--log-connections", "--debug", "--read-timeout", "1"]);
    let mut c = server.connect();
    let port = c.stream().local_addr().expect("local address").port();
    let token = c.lock("orders", "0 33");
    assert_eq!(c.request("r", "orders", &token), "ok");
    server.wait_for_log(
        &format!("connection opened conn=1 peer=127.0.0.1:{port}"),
        REPLY_TIMEOUT,
    );
    server.wait_for_log(
        &format!("conn 1 127.0.0.1:{port}: l orders 0 33"),
        REPLY_TIMEOUT,
    );
    let fence = &token[..16];
    server.wait_for_log(&format!(": -> ok {fence}... 33"), REPLY_TIMEOUT);
    server.wait_for_log(&format!(": r orders {fence}..."), REPLY_TIMEOUT);
    assert!(
        server.log().iter().all(|line| !line.contains(&token[16..])),
        "the secret half of a token never reaches the log"
    );
    drop(c);
    server.wait_for_log("reason=\"peer finished sending\"", Duration::from_secs(5));
    // An idle connection is closed by the read timeout, and says so.
    let mut idle = server.connect();
    idle.send_raw(b"l\n");
    server.wait_for_log(
        "no complete request within the read timeout",
        Duration::from_secs(5),
    );
    server.wait_for_log("reason=\"read timeout\"", Duration::from_secs(5));
}

#[test]
fn json_log_lines_carry_the_connection_fields() {
    let server = TestServer::start(&["--log-connections", "--log-format", "json"]);
    drop(server.connect());
    server.wait_for_log("connection closed", REPLY_TIMEOUT);
    for line in server.log() {
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
        assert!(
            value["ts"].is_string() && value["level"].is_string(),
            "{line}"
        );
        if value["msg"] == "connection closed" {
            assert_eq!(value["conn"], 1);
            assert!(value["duration_ms"].is_u64(), "{line}");
            assert!(
                value["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:"))
            );
        }
    }
}
