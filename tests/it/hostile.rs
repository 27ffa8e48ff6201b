//! Hostile clients over real TCP (spec §2, §6, §11, §13.8, §14, §15): input one byte at a time or
//! ten thousand requests in one write, a subscriber that never reads, resets while holding or
//! waiting, half-closes, clients that vanish while their replies are written, thousands of
//! connections, storms above the connection cap, descriptor exhaustion, slowloris and auth
//! guessing. Each time the server must answer correctly, clean up
//! after the offender and keep serving everyone else.
//!
//! Some of these tests are about time passing (slowloris, exhaustion), so they pace themselves
//! with sleeps.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    Client, REPLY_TIMEOUT, TestServer, grant, lock_waiters, stats_entry, wait_until,
};

/// How long a test waits for the server to notice a closed connection or a queued waiter.
const SETTLE: Duration = Duration::from_secs(3);

/// Sends `bytes` one byte per write, pausing after each so that every byte reaches the server in
/// a segment (and usually a read) of its own.
fn trickle(c: &mut Client, bytes: &[u8]) {
    for byte in bytes {
        c.send_raw(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// One request sent a byte at a time, and its reply.
fn trickle_request(c: &mut Client, request: &str) -> String {
    trickle(c, request.as_bytes());
    c.read_line()
}

#[test]
fn a_whole_session_sent_one_byte_at_a_time_gets_every_reply_right() {
    let server = TestServer::start(&[]);
    let mut subscriber = server.connect();
    assert_eq!(subscriber.request("listen", "news.*", ""), "ok");
    let mut waiter = server.connect();
    let mut c = server.connect();

    assert_eq!(trickle_request(&mut c, "ping\n_\n\n"), "ok");
    let (token, lease) = grant(&trickle_request(&mut c, "l\r\nk\r\n0 30\r\n"));
    assert_eq!(lease, 30);
    waiter.send("l", "k", "10");
    wait_until("the waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    assert_eq!(
        trickle_request(&mut c, &format!("n\nk\n{token} 40\n")),
        "ok 40"
    );
    let stats = trickle_request(&mut c, "stats\n_\n_\n");
    let stats: serde_json::Value =
        serde_json::from_str(stats.strip_prefix("ok ").expect("a stats reply")).expect("JSON");
    let entry = stats_entry(&stats, "locks", "k").expect("k is held");
    assert!(entry["lease_expires_in_s"].as_f64() > Some(35.0), "{stats}");
    assert_eq!(entry["waiters"], 1);

    // A signal to itself and to the subscriber: its own push and its reply come in either order.
    assert_eq!(trickle_request(&mut c, "listen\nnews.>\n\n"), "ok");
    trickle(&mut c, b"signal\nnews.today\n hello  world \r\n");
    let mut lines = [c.read_line(), c.read_line()];
    lines.sort();
    assert_eq!(lines, ["ok 2", "sig news.today  hello  world "]);
    assert_eq!(subscriber.read_line(), "sig news.today  hello  world ");

    // Two-phase and semaphore commands.
    let (acquired, _) = grant(&trickle_request(&mut c, "e\ntwo\n7\n"));
    assert_eq!(
        trickle_request(&mut c, "w\ntwo\n5\n"),
        format!("ok {acquired} 7")
    );
    let (slot, _) = grant(&trickle_request(&mut c, "sl\npool\n0 2\n"));
    assert_eq!(
        trickle_request(&mut c, &format!("sr\npool\n{slot}\n")),
        "ok"
    );

    // The release hands k to the waiter.
    assert_eq!(trickle_request(&mut c, &format!("r\nk\n{token}\n")), "ok");
    grant(&waiter.read_line());
    assert_eq!(trickle_request(&mut c, "unlisten\nnews.>\n\n"), "ok");
    assert_eq!(trickle_request(&mut c, "bogus\n_\n_\n"), "error");
    assert_eq!(trickle_request(&mut c, "ping\n_\n\n"), "ok");
}

/// What one of the pipelined requests must be answered with.
enum Expected {
    /// `ok <token> <lease>` with this lease.
    Grant(u64),
    /// Exactly this line.
    Line(&'static str),
}

#[test]
fn ten_thousand_requests_in_one_write_are_all_answered_in_order() {
    const REQUESTS: usize = 10_000;
    let server = TestServer::start(&["--max-locks", "4000"]);
    let mut c = server.connect();
    let mut batch = Vec::new();
    let mut expected = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let key = format!("key{}", i / 5);
        let (request, reply) = match i % 5 {
            // The lease is the request number: the reply says which request it answers.
            0 => (
                format!("l\n{key}\n0 {}\n", i + 1),
                Expected::Grant(i as u64 + 1),
            ),
            // A try-lock queues behind the holder (itself) and gives up at once.
            1 => (format!("l\n{key}\n0\n"), Expected::Line("timeout")),
            2 => (format!("signal\nnobody.{i}\nx\n"), Expected::Line("ok 0")),
            3 => ("bogus\n_\n_\n".to_string(), Expected::Line("error")),
            _ => ("ping\n_\n\n".to_string(), Expected::Line("ok")),
        };
        batch.extend_from_slice(request.as_bytes());
        expected.push(reply);
    }
    // A thread makes the single write, so replies can be read while the server takes it in.
    let mut stream = c.stream().try_clone().expect("clone the socket");
    let writer = std::thread::spawn(move || stream.write_all(&batch));

    let mut last_fence = 0;
    for (i, want) in expected.iter().enumerate() {
        let line = c.read_line();
        match want {
            Expected::Grant(lease) => {
                let (token, got) = grant(&line);
                assert_eq!(got, *lease, "reply {i} out of order: {line:?}");
                // Grants on one connection are made in order: their fences increase.
                let fence = u64::from_str_radix(&token[..16], 16).expect("hex fence");
                assert!(fence > last_fence, "fence went backwards at reply {i}");
                last_fence = fence;
            }
            Expected::Line(want) => assert_eq!(line, *want, "reply {i}"),
        }
    }
    writer.join().expect("writer").expect("the write completes");
    let stats = c.stats();
    assert_eq!(stats["locks"].as_array().map(Vec::len), Some(REQUESTS / 5));
    assert_eq!(stats["connections"], 1);
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off_while_everyone_else_carries_on() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    // The hog subscribes and holds a lock that someone waits for; then it never reads again.
    let mut hog = server.connect();
    assert_eq!(hog.request("listen", "hose.>", ""), "ok");
    hog.lock("hog-held", "0");
    let mut heir = server.connect();
    heir.send("l", "hog-held", "30");
    wait_until("the heir queues", SETTLE, || {
        lock_waiters(&server, "hog-held") == 1
    });

    // A reader on a thread of its own reports each push it gets.
    let mut reader = server.connect();
    assert_eq!(reader.request("listen", "hose.a", ""), "ok");
    let (progress, got) = mpsc::channel();
    let reader_thread = std::thread::spawn(move || {
        loop {
            let line = reader.read_line();
            let payload = line.strip_prefix("sig hose.a ").expect("a push");
            if payload == "end" {
                return reader;
            }
            let n: usize = payload[..payload.find(' ').expect("numbered")]
                .parse()
                .expect("a number");
            progress.send(n).expect("the test listens");
        }
    });

    let filler = "x".repeat(32 * 1024);
    let mut publisher = server.connect();
    let mut counts = Vec::new();
    let mut slowest = Duration::ZERO;
    // The hog's socket buffers take a few MiB; after that its copy has no room and it is cut off.
    // Ten signals more show that the publisher and the reader are unaffected.
    while counts.iter().filter(|&&n| n == 1).count() < 10 {
        assert!(counts.len() < 2_000, "the hog was never cut off");
        let i = counts.len();
        let start = Instant::now();
        let reply = publisher.request("signal", "hose.a", &format!("{i} {filler}"));
        slowest = slowest.max(start.elapsed());
        counts.push(
            reply
                .strip_prefix("ok ")
                .expect("a count")
                .parse::<u64>()
                .expect("count"),
        );
        // Keep the reader's backlog to one signal, so that only the hog can fall behind.
        assert_eq!(
            got.recv_timeout(REPLY_TIMEOUT),
            Ok(i),
            "the reader missed signal {i}"
        );
    }
    let cut = counts.iter().position(|&n| n == 1).expect("a count of 1");
    assert!(
        cut > 0 && counts[..cut].iter().all(|&n| n == 2) && counts[cut..].iter().all(|&n| n == 1),
        "the count must drop from 2 to 1 once, when the hog is cut off: {counts:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a publish took {slowest:?}"
    );
    assert_eq!(publisher.request("signal", "hose.a", "end"), "ok 1");
    let _reader = reader_thread.join().expect("the reader got every push");

    // Disconnect cleanup ran for the hog: its lock went to the heir, its subscription is gone.
    grant(&heir.read_line());
    let stats = publisher.stats();
    assert_eq!(stats["slow_consumers_disconnected"], 1, "{stats}");
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "hose.a", "listeners": 1}])
    );
    assert_eq!(stats["connections"], 3, "{stats}");
    // The hog finds whatever reached its socket (replies and pushes), then the end.
    let mut rest = Vec::new();
    let mut stream = hog.stream();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the hog's connection was not closed: {e}"),
    }
    let received = String::from_utf8_lossy(&rest);
    for line in received.split_terminator('\n') {
        assert!(line.starts_with("sig hose.a "), "unexpected line {line:?}");
    }
}

#[test]
fn a_holder_that_resets_hands_its_locks_slots_and_subscriptions_on() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    holder.lock("lock", "0");
    grant(&holder.request("sl", "pool", "0 2"));
    grant(&holder.request("sl", "pool", "0 2"));
    assert!(holder.request("e", "two", "").starts_with("acquired "));
    assert_eq!(holder.request("listen", "chan", ""), "ok");

    let mut lock_waiter = server.connect();
    lock_waiter.send("l", "lock", "10");
    let mut pool_waiters: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for w in &mut pool_waiters {
        w.send("sl", "pool", "10 2");
    }
    let mut two_waiter = server.connect();
    assert_eq!(two_waiter.request("e", "two", ""), "queued");
    two_waiter.send("w", "two", "10");
    wait_until("every waiter queues", SETTLE, || {
        let stats = server.stats();
        let waiters = |array, key| stats_entry(&stats, array, key).map(|e| e["waiters"].clone());
        waiters("locks", "lock") == Some(json!(1))
            && waiters("semaphores", "pool") == Some(json!(2))
            && waiters("locks", "two") == Some(json!(1))
    });

    holder.reset();
    grant(&lock_waiter.read_line());
    for w in &mut pool_waiters {
        grant(&w.read_line());
    }
    grant(&two_waiter.read_line());
    let stats = lock_waiter.stats();
    assert_eq!(stats["signal_channels"], json!([]));
    assert_eq!(stats["connections"], 4);
}

#[test]
fn a_waiter_that_resets_leaves_the_queue_and_the_next_one_is_granted() {
    let server = TestServer::start(&[]);
    let mut holder = server.connect();
    let token = holder.lock("k", "0");
    let mut blocking = server.connect();
    blocking.send("l", "k", "30");
    wait_until("the blocking waiter queues", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    let mut enqueued = server.connect();
    assert_eq!(enqueued.request("e", "k", ""), "queued");
    let mut last = server.connect();
    last.send("l", "k", "30");
    wait_until("three waiters", SETTLE, || lock_waiters(&server, "k") == 3);

    blocking.reset();
    enqueued.reset();
    wait_until("the reset waiters leave the queue", SETTLE, || {
        lock_waiters(&server, "k") == 1
    });
    assert_eq!(holder.request("r", "k", &token), "ok");
    let (token, _) = grant(&last.read_line());
    assert_eq!(last.request("r", "k", &token), "ok");
    // Nobody else was granted k on the way: it is free now.
    let stats = holder.stats();
    assert_eq!(stats["locks"], json!([]), "{stats}");
    assert_eq!(stats["connections"], 2);
}

/// A new connection that holds `count` locks named `<prefix><n>`, taken with one pipelined
/// write (a thread writes while the grants are read).
fn hold_locks(server: &TestServer, prefix: &str, count: usize) -> Client {
    let mut c = server.connect();
    let mut batch = Vec::new();
    for i in 0..count {
        batch.extend_from_slice(format!("l\n{prefix}{i:05}\n0\n").as_bytes());
    }
    let mut stream = c.stream().try_clone().expect("clone the socket");
    let writer = std::thread::spawn(move || stream.write_all(&batch));
    for _ in 0..count {
        grant(&c.read_line());
    }
    writer.join().expect("writer").expect("the write completes");
    c
}

/// Sends `stats` and `ping`, half-closes and reads only after the server had ample time to see
/// the end of the requests: both replies arrive, then the close (spec §2.3, §2.4: only a
/// blocking acquire or wait is cancelled by a half-close).
fn half_close_after_stats(server: &TestServer, locks: usize) {
    let mut c = server.connect();
    c.send_raw(b"stats\n_\n_\nping\n_\n\n");
    c.shutdown_write();
    std::thread::sleep(Duration::from_millis(300));
    let line = c
        .try_read_line()
        .unwrap_or_else(|| panic!("closed without the stats reply ({locks} locks)"));
    let stats: serde_json::Value =
        serde_json::from_str(line.strip_prefix("ok ").expect("a stats reply")).expect("JSON");
    assert_eq!(stats["locks"].as_array().map(Vec::len), Some(locks));
    assert_eq!(c.read_line(), "ok");
    c.expect_closed();
}

#[test]
fn a_half_close_right_after_a_request_still_gets_the_reply_then_the_close() {
    let server = TestServer::start(&["--max-locks", "6000"]);
    // A lock request on a free key: the grant arrives although the client sends nothing more.
    let mut c = server.connect();
    c.send_raw(b"l\nfree\n10 7\n");
    c.shutdown_write();
    assert_eq!(grant(&c.read_line()).1, 7);
    c.expect_closed();

    // A `stats` listing small enough to be written at once, then one the server writes over
    // several loop turns.
    let mut few = hold_locks(&server, &"y".repeat(200), 400);
    half_close_after_stats(&server, 400);
    let _many = hold_locks(&server, "many-", 4_600);
    half_close_after_stats(&server, 5_000);
    // The first client's lock went with it.
    assert_eq!(few.lock("free", "0 5").len(), 32);
}

/// A client that asks for far more than the socket buffers hold, half-closes, then vanishes (its
/// unread data turns its close into a reset): the server's next write fails and the connection
/// must be closed then (spec §2.6, §6 item 5), not kept until some deadline — here there is none.
#[test]
fn a_client_that_vanishes_while_its_replies_are_flushed_is_closed() {
    let server = TestServer::start(&[
        "--write-timeout",
        "0",
        "--max-pending-output",
        "16777216",
        "--max-output-buffer",
        "16777216",
    ]);
    // 1000 locks with long keys make each `stats` about 300 KB (still written at once).
    let _setup = hold_locks(&server, &"z".repeat(250), 1_000);
    // Thirty of them (about 10 MB, below the output limits) and the end of the requests.
    let c = server.connect();
    let mut stream = c.stream();
    stream
        .write_all(&b"stats\n_\n_\n".repeat(30))
        .expect("send");
    c.shutdown_write();
    // The first bytes of the reply prove the requests were read; the EOF right behind them is
    // read in the same or the next turn.
    let mut first = [0u8; 4096];
    stream.read_exact(&mut first).expect("the reply starts");
    assert!(first.starts_with(b"ok {"));
    std::thread::sleep(Duration::from_millis(200));
    c.reset();

    let mut observer = server.connect();
    wait_until(
        "the server drops the connection whose writes fail",
        SETTLE,
        || observer.stats()["connections"] == 2,
    );
}

/// Clients that send an over-long line and reset at once: the server reads the line, queues
/// `error` and begins a graceful close, and its write of `error` fails. Each connection must be
/// dropped then (spec §6 items 1 and 5), or anyone could use up the connection slots this way.
#[test]
fn clients_that_reset_right_after_an_over_long_line_are_forgotten() {
    const ATTEMPTS: usize = 20;
    let server = TestServer::start(&[]);
    let mut line = vec![b'x'; 300];
    line.push(b'\n');
    for _ in 0..ATTEMPTS {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream.write_all(&line).expect("send");
        crate::support::reset(stream);
    }
    let mut observer = server.connect();
    wait_until(
        "the server drops every connection whose peer reset",
        SETTLE,
        || observer.stats()["connections"] == 1,
    );
}

/// Raises this process's soft descriptor limit to its hard limit (servers started afterwards
/// inherit it); fails if even that is below `needed`.
fn raise_descriptor_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to an rlimit on the stack.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.rlim_max >= needed,
            "this test needs {needed} descriptors but the hard RLIMIT_NOFILE is {}: raise it \
             (e.g. `ulimit -Hn {needed}` as root) and rerun",
            limit.rlim_max
        );
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
                0,
                "setrlimit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[test]
fn five_thousand_concurrent_connections_are_all_served() {
    const CONNECTIONS: usize = 5_000;
    // Both ends live in one process here; tests running alongside need a few hundred more.
    raise_descriptor_limit(CONNECTIONS as u64 + 1_000);
    let server = TestServer::start(&[]);
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send("ping", "_", "");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read_line(), "ok", "connection {i}");
    }
    assert_eq!(clients[0].stats()["connections"], CONNECTIONS);
    drop(clients);
    let mut observer = server.connect();
    wait_until(
        "every connection is closed",
        Duration::from_secs(10),
        || observer.stats()["connections"] == 1,
    );
}

/// How a connection to a server at its connection cap fared.
enum Fate {
    /// Admitted: its `ping` was answered (the connection stays open).
    Served(TcpStream),
    /// Closed without a byte (EOF or a reset).
    Refused,
}

/// Sends `ping` on `stream` and waits for the reply or the close.
fn ping_or_close(mut stream: TcpStream) -> Fate {
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    // A refused connection may already be closed: the reads below tell.
    let _ = stream.write_all(b"ping\n_\n\n");
    let mut received = Vec::new();
    let mut chunk = [0u8; 16];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            // A read with a timeout is not restarted after a signal handler ran.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("neither a reply nor a close: {e}"),
        }
        if received == b"ok\n" {
            return Fate::Served(stream);
        }
    }
    assert!(received.is_empty(), "a refused connection got {received:?}");
    Fate::Refused
}

#[test]
fn a_connection_storm_above_the_cap_admits_exactly_the_cap() {
    const CAP: usize = 50;
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let server = TestServer::start(&["--max-connections", "50"]);
    let barrier = Arc::new(Barrier::new(THREADS));
    let storm: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            let addr = server.addr;
            std::thread::spawn(move || {
                barrier.wait();
                let streams: Vec<TcpStream> = (0..PER_THREAD)
                    .map(|_| TcpStream::connect(addr).expect("connect"))
                    .collect();
                streams.into_iter().map(ping_or_close).collect::<Vec<_>>()
            })
        })
        .collect();
    let fates: Vec<Fate> = storm
        .into_iter()
        .flat_map(|t| t.join().expect("a storm thread"))
        .collect();
    // Served connections are still open, so no slot freed up during the storm.
    let mut served: Vec<TcpStream> = fates
        .into_iter()
        .filter_map(|fate| match fate {
            Fate::Served(stream) => Some(stream),
            Fate::Refused => None,
        })
        .collect();
    assert_eq!(served.len(), CAP, "admitted connections");

    // The admitted ones keep being served.
    for stream in &mut served {
        stream.write_all(b"ping\n_\n\n").expect("send");
    }
    for stream in served.iter_mut() {
        let mut reply = [0u8; 3];
        stream.read_exact(&mut reply).expect("a reply");
        assert_eq!(&reply, b"ok\n");
    }
    // Freed slots are taken again.
    served.truncate(CAP - 10);
    let mut newcomer = None;
    wait_until("a freed slot admits a newcomer", SETTLE, || {
        match ping_or_close(TcpStream::connect(server.addr).expect("connect")) {
            Fate::Served(stream) => newcomer = Some(Client::from_stream(stream)),
            Fate::Refused => {}
        }
        newcomer.is_some()
    });
    let mut newcomer = newcomer.expect("admitted");
    assert_eq!(newcomer.stats()["connections"], CAP - 9);
    drop(served);
    wait_until("the storm is over", SETTLE, || {
        newcomer.stats()["connections"] == 1
    });
}

/// User plus system CPU time the process `pid` has used so far (Linux `/proc`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may contain spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Whether a reply is waiting on `stream` right now (without blocking).
fn has_reply(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let ready = match stream.peek(&mut byte) {
        Ok(n) => n > 0,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("peek: {e}"),
    };
    stream.set_nonblocking(false).unwrap();
    ready
}

#[test]
fn descriptor_exhaustion_neither_spins_nor_sticks() {
    const CLIENTS: usize = 80;
    const SOFT_LIMIT: libc::rlim_t = 64;
    let server = TestServer::start_with(&[], |command: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the forked child before exec and only calls setrlimit, which
        // is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = SOFT_LIMIT;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    // Connections beyond what the server can accept complete their handshake in the kernel and
    // wait in the listen backlog, their `ping` unanswered.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send("ping", "_", "");
    }
    server.wait_for_log("accept failed", SETTLE);

    // While exhausted the server backs off instead of retrying in a loop.
    let before = cpu_time(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(server.pid()) - before;
    assert!(
        used < Duration::from_millis(250),
        "the server used {used:?} of CPU in one second while out of descriptors"
    );

    // The backlog is accepted in order: the answered connections come first.
    let answered = clients.iter().take_while(|c| has_reply(c.stream())).count();
    assert!(
        (CLIENTS / 2..CLIENTS).contains(&answered),
        "{answered} of {CLIENTS} connections answered with a limit of {SOFT_LIMIT} descriptors"
    );
    let mut waiting = clients.split_off(answered);
    for c in &waiting {
        assert!(!has_reply(c.stream()), "answered out of accept order");
    }
    for c in &mut clients {
        assert_eq!(c.read_line(), "ok");
    }

    // Closing the answered connections frees descriptors: the backlog is accepted and served.
    drop(clients);
    for c in &mut waiting {
        assert_eq!(c.read_line(), "ok");
    }
    let mut late = server.connect();
    assert_eq!(late.request("ping", "_", ""), "ok");
    wait_until("the closed connections are gone", SETTLE, || {
        late.stats()["connections"] == waiting.len() + 1
    });
    // The warning is rate limited (one per five seconds), not one per failed accept.
    let warnings = server
        .log()
        .iter()
        .filter(|line| line.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} accept warnings:\n{}",
        server.log().join("\n")
    );
}

#[test]
fn slowloris_clients_are_cut_off_per_line_while_others_are_served() {
    const LORISES: usize = 20;
    let server = TestServer::start(&["--read-timeout", "1"]);
    let mut lorises: Vec<Client> = (0..LORISES).map(|_| server.connect()).collect();
    // Each sends its command line whole, then the key line one byte every 250 ms: the line
    // is still incomplete when its one-second deadline passes.
    for loris in &mut lorises {
        loris.send_raw(b"l\n");
    }
    let start = Instant::now();
    let streams: Vec<TcpStream> = lorises
        .iter()
        .map(|c| c.stream().try_clone().expect("clone"))
        .collect();
    let dribbler = std::thread::spawn(move || {
        // Stops at 1.5 s, well before the server's lingering close ends (a write after it
        // would draw a reset that could destroy the unread `error`).
        for byte in b"slowke" {
            std::thread::sleep(Duration::from_millis(250));
            for mut stream in &streams {
                let _ = stream.write_all(std::slice::from_ref(byte));
            }
        }
    });

    // A well-behaved client meanwhile: every request answered promptly.
    let mut good = server.connect();
    let mut serve_good_until = |until: Duration| {
        while start.elapsed() < until {
            let sent = Instant::now();
            let token = good.lock("good", "0");
            assert_eq!(good.request("r", "good", &token), "ok");
            assert_eq!(good.request("ping", "_", ""), "ok");
            let took = sent.elapsed();
            assert!(
                took < Duration::from_millis(500),
                "the good client waited {took:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    serve_good_until(Duration::from_millis(700));
    // Bytes keep arriving, but that does not restart a line's deadline; yet it has not passed.
    for loris in &lorises {
        assert!(!has_reply(loris.stream()), "a slowloris was cut off early");
    }
    serve_good_until(Duration::from_millis(1_600));
    for loris in &mut lorises {
        assert_eq!(loris.read_line(), "error");
    }
    let all_cut = start.elapsed();
    assert!(
        all_cut < Duration::from_millis(2_500),
        "the last slowloris was cut off after {all_cut:?}"
    );
    for loris in &mut lorises {
        loris.expect_closed();
    }
    dribbler.join().expect("dribbler");
    drop(lorises);
    wait_until("the slowloris connections are gone", SETTLE, || {
        good.stats()["connections"] == 1
    });
    // Their requests never ran.
    assert_eq!(good.stats()["locks"], json!([]));
}

#[test]
fn repeated_wrong_tokens_are_each_refused_while_a_correct_client_is_served() {
    const GUESSES: usize = 40;
    let server = TestServer::start(&["--auth-token", "s3cret"]);
    let mut good = server.connect();
    assert_eq!(good.request("auth", "_", "s3cret"), "ok");
    let token = good.lock("k", "0");

    // Guesses one after another, each answered at once; the good client's requests in between
    // wait for none of the 100 ms pauses that precede the guessers' closes.
    let mut guessers = Vec::new();
    let mut good_waited = Duration::ZERO;
    for i in 0..GUESSES {
        let mut c = server.connect();
        assert_eq!(c.request("auth", "_", &format!("guess{i}")), "error_auth");
        guessers.push(c);
        let sent = Instant::now();
        assert_eq!(good.request("ping", "_", ""), "ok");
        good_waited += sent.elapsed();
    }
    // A burst of guesses at once, some of them not even `auth`.
    let mut burst: Vec<Client> = (0..GUESSES).map(|_| server.connect()).collect();
    for (i, c) in burst.iter_mut().enumerate() {
        match i % 3 {
            0 => c.send("auth", "_", "s3cret-not"),
            1 => c.send("ping", "_", ""),
            _ => c.send("auth", "_", ""),
        }
    }
    let sent = Instant::now();
    let fresh = good.lock("fresh", "0");
    good_waited += sent.elapsed();
    assert!(
        good_waited < Duration::from_secs(1),
        "the authenticated client waited {good_waited:?} in all"
    );
    for c in &mut burst {
        assert_eq!(c.read_line(), "error_auth");
    }
    for c in guessers.iter_mut().chain(&mut burst) {
        c.expect_closed();
    }

    // A correct newcomer is let in at once, and the first client still holds its locks.
    let mut newcomer = server.connect();
    let sent = Instant::now();
    assert_eq!(newcomer.request("auth", "_", "s3cret"), "ok");
    assert!(sent.elapsed() < Duration::from_millis(500));
    assert_eq!(good.request("r", "k", &token), "ok");
    assert_eq!(good.request("r", "fresh", &fresh), "ok");
    drop(guessers);
    drop(burst);
    wait_until("the guessers are gone", SETTLE, || {
        newcomer.stats()["connections"] == 2
    });
}
