//! The monitoring endpoint as an HTTP server: methods and paths, and abuse (garbage, huge heads,
//! slowloris, connection floods, pipelining) that must never affect lock clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::metrics::{Http, SETTLE, exposition, scrape, start, value};
use crate::support::{Client, wait_until};

#[test]
fn head_unknown_paths_and_other_methods() {
    let server = start(&[]);
    let mut http = Http::connect(server.metrics_addr());
    // HEAD: a GET's headers, no body (the next response follows at once on the connection).
    let head = http.request("HEAD", "/metrics");
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(head.header("content-length").parse::<usize>().unwrap() > 1000);
    let head = http.request("HEAD", "/healthz");
    assert_eq!((head.status, head.header("content-length")), (200, "3"));
    let missing = http.request("GET", "/varz");
    assert_eq!(missing.status, 404);
    // Without a body the framing is intact: 405 and the connection stays open.
    let post = http.request("POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), "GET, HEAD");
    exposition(&http.request("GET", "/metrics?name[]=x"));
    // With a body: 400, and the connection closes (the body is never read as a request).
    http.send(b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    let post = http.read_response(false);
    assert_eq!(post.status, 400);
    assert_eq!(post.header("connection"), "close");
    http.expect_closed();
    // HTTP/1.0 closes after its answer unless asked otherwise.
    let mut old = Http::connect(server.metrics_addr());
    old.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(old.read_response(false).status, 200);
    old.expect_closed();
}

/// A lock client making round trips on its own thread until stopped, each on a fresh
/// connection (so a short `--read-timeout` never cuts it off between rounds). Panics (failing
/// the join) if a round trip fails or takes longer than `SLOW`.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

/// The slowest round of `l`, `r` and `ping` a prober accepts. Generous: the machine is shared
/// and loaded; a starved lock client would take the read timeout or forever.
const SLOW: Duration = Duration::from_secs(3);

impl Prober {
    fn start(addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut rounds = 0;
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut c = Client::connect(addr);
                let token = c.lock("probe", "5");
                assert_eq!(c.request("r", "probe", &token), "ok");
                assert_eq!(c.request("ping", "_", "_"), "ok");
                let took = started.elapsed();
                assert!(took < SLOW, "a lock round trip took {took:?}");
                rounds += 1;
                thread::sleep(Duration::from_millis(20));
            }
            rounds
        });
        Prober { stop, thread }
    }

    /// Stops the prober; returns its rounds, at least one.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.thread.join().expect("the lock client failed");
        assert!(rounds > 0, "the lock client made no round trip");
        rounds
    }
}

#[test]
fn http_abuse_never_affects_lock_clients() {
    let server = start(&["--metrics-max-connections", "64"]);
    let addr = server.metrics_addr();
    let prober = Prober::start(server.addr);
    let mut holder = server.connect();
    let token = holder.lock("held", "0");

    // Garbage: a TLS ClientHello, protocol lines, binary noise. 400, then close.
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"l\nk\n0\n\n\n",
        b"\x00\xff\xfe\r\n\r\n",
    ] {
        let mut http = Http::connect(addr);
        http.send(garbage);
        http.send(b"\r\n\r\n");
        let answer = http.read_response(false);
        assert_eq!(answer.status, 400, "{garbage:?}");
        http.expect_closed();
    }

    // A 100 KB header: 431 once the head passes 8 KiB, then the connection closes.
    let mut http = Http::connect(addr);
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(100 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    // The server stops reading after 8 KiB, so the rest may meet a closed socket.
    let _ = http.reader.get_mut().write_all(&huge);
    let answer = http.read_response(false);
    assert_eq!(answer.status, 431);
    assert_eq!(answer.header("connection"), "close");

    // Pipelined requests, more than one turn's budget, in one write: answered in order.
    let paths = ["/healthz", "/readyz", "/metrics", "/nope"];
    let mut batch = Vec::new();
    for i in 0..20 {
        let path = paths[i % paths.len()];
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let mut pipelined = Http::connect(addr);
    pipelined.send(&batch);
    for i in 0..20 {
        let answer = pipelined.read_response(false);
        match paths[i % paths.len()] {
            "/healthz" => assert_eq!((answer.status, answer.text()), (200, "ok\n")),
            "/readyz" => assert_eq!((answer.status, answer.text()), (200, "ready\n")),
            "/metrics" => drop(exposition(&answer)),
            _ => assert_eq!(answer.status, 404),
        }
    }

    // 1,000 idle connections against a cap of 64 (one place taken by `pipelined`): the ones
    // past the cap are closed at once.
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    wait_until("all but the 63 admitted are closed", SETTLE, || {
        idle.retain(|stream| {
            let mut byte = [0u8; 1];
            match (&*stream).read(&mut byte) {
                Ok(0) => false,
                Ok(_) => panic!("an idle connection received a byte"),
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        idle.len() <= 63
    });
    // The admitted ones stay until the read timeout; meanwhile a scraper finds no room.
    assert_eq!(idle.len(), 63);
    let mut crowded_out = Http::connect(addr);
    // (The server may close it before the request is sent.)
    let _ = crowded_out
        .reader
        .get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    crowded_out.expect_closed();
    drop(idle);
    drop(pipelined);
    // Once they are gone, a scrape gets through again and counts the refusals.
    wait_until("a scrape gets through after the flood", SETTLE, || {
        let mut http = Http::connect(addr);
        http.send(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut first = [0u8; 1];
        matches!(http.reader.get_mut().peek(&mut first), Ok(1))
    });
    let m = scrape(addr);
    assert!(value(&m, "dflockd_http_connections_rejected_total", &[]) >= 936.0);

    // Through all of it, the lock clients were served.
    let rounds = prober.finish();
    assert_eq!(holder.request("r", "held", &token), "ok");
    assert_eq!(holder.request("ping", "_", "_"), "ok");
    let m = scrape(addr);
    assert!(value(&m, "dflockd_grants_total", &[("ns", "lock")]) >= rounds as f64 + 1.0);
}

#[test]
fn a_slowloris_is_cut_off_after_the_read_timeout() {
    let server = start(&["--read-timeout", "1"]);
    let addr = server.metrics_addr();
    let prober = Prober::start(server.addr);

    // An idle connection and one trickling a header a byte at a time, neither ever finishing
    // a request: both are closed once the read timeout passes, however the bytes trickle.
    let mut idle = Http::connect(addr);
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let cut_off = loop {
        thread::sleep(Duration::from_millis(100));
        if stream.write_all(b"a").is_err() {
            break started.elapsed();
        }
        let mut byte = [0u8; 1];
        stream.set_nonblocking(true).unwrap();
        let read = stream.read(&mut byte);
        stream.set_nonblocking(false).unwrap();
        match read {
            Ok(0) => break started.elapsed(),
            Ok(_) => panic!("the slowloris got an answer"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break started.elapsed(),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slowloris is still connected"
        );
    };
    assert!(
        cut_off >= Duration::from_millis(900),
        "cut off after {cut_off:?}"
    );
    idle.expect_closed();
    // A complete request restarts the timeout: a client that asks is served as usual.
    exposition(&Http::connect(addr).request("GET", "/metrics"));
    prober.finish();
}

#[test]
fn connections_past_the_http_cap_are_closed_at_once() {
    // No other traffic: the refusals must not wait for an unrelated event to wake the loop.
    let server = start(&["--metrics-max-connections", "2"]);
    let addr = server.metrics_addr();
    let _a = Http::connect(addr);
    let _b = Http::connect(addr);
    let extra: Vec<Http> = (0..40).map(|_| Http::connect(addr)).collect();
    for mut http in extra {
        http.expect_closed();
    }
}
