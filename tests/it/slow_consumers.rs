//! Slow consumers over the wire (spec §7.12): a subscriber that stops reading is dropped without
//! stalling publishers or readers, queue groups pass over full members, and the server-wide output
//! budget drops the subscribers holding the most.

use std::io::{Read, Write};

use serde_json::json;

use crate::signals::{listen, payloads, publish, spaced_payload};
use crate::support::{Client, REPLY_TIMEOUT, TestServer};

/// How many signals a flooding publisher may run ahead of the subscriber that reads. A reader
/// left behind by more than its socket buffers and the output limit would be dropped as a slow
/// consumer itself; keeping the lead small makes that impossible however the threads are
/// scheduled.
const MAX_LEAD: usize = 8;

/// A subscriber read on a thread of its own. Its pushes carry payloads `<n> ...` (or `end`,
/// which stops it); it reports each `n` so the publisher can pace itself.
struct Reader {
    progress: std::sync::mpsc::Receiver<usize>,
    newest: Option<usize>,
    thread: std::thread::JoinHandle<(Vec<String>, Client)>,
}

impl Reader {
    fn spawn(mut c: Client, channel: &str) -> Reader {
        let prefix = format!("sig {channel} ");
        let (report, progress) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let line = c.read_line();
                let payload = line.strip_prefix(&prefix).expect("a push");
                if payload == "end" {
                    // The connection (and its subscription) outlives the thread.
                    return (got, c);
                }
                let n = payload.split(' ').next().and_then(|n| n.parse().ok());
                let _ = report.send(n.expect("a numbered payload"));
                got.push(payload.to_string());
            }
        });
        Reader {
            progress,
            newest: None,
            thread,
        }
    }

    /// Blocks until the reader has received signal `n` or a later one.
    fn wait_for(&mut self, n: usize) {
        while self.newest.is_none_or(|newest| newest < n) {
            let got = self.progress.recv_timeout(REPLY_TIMEOUT);
            self.newest = Some(got.unwrap_or_else(|e| panic!("reader stuck before {n}: {e}")));
        }
    }

    /// The payloads received before `end`, and the connection.
    fn finish(self) -> (Vec<String>, Client) {
        self.thread.join().expect("the reader got its pushes")
    }
}

#[test]
fn a_subscriber_that_never_reads_is_dropped_without_stalling_the_publisher() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let mut slow = server.connect();
    listen(&mut slow, "flood", "");
    let mut reader = server.connect();
    listen(&mut reader, "flood", "");
    let mut reader = Reader::spawn(reader, "flood");

    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    // The slow subscriber's socket buffers fill after a few MiB; then its next copy is refused.
    let counts = flood(&mut p, &mut reader, &filler, 5_000, |counts| {
        counts.iter().filter(|&&n| n == 1).count() >= 20
    });
    let drop_at = counts.iter().position(|&n| n == 1).expect("a count of 1");
    assert!(
        drop_at > 0,
        "the first signal had room for both subscribers"
    );
    assert!(
        counts[..drop_at].iter().all(|&n| n == 2) && counts[drop_at..].iter().all(|&n| n == 1),
        "counts must drop from 2 to 1 once, at the eviction: {counts:?}"
    );
    assert_eq!(publish(&mut p, "flood", "end"), 1);
    let _reader = expect_every_signal(reader, counts.len(), &filler);

    // The slow subscriber's connection is closed: whatever reached its socket, then EOF.
    expect_dropped(&slow);
    let stats = p.stats();
    assert!(
        stats["slow_consumers_disconnected"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "flood", "listeners": 1}])
    );
}

/// Publishes signals `<i><filler>` on `flood`, never more than [`MAX_LEAD`] ahead of `reader`,
/// until `enough` holds for the counts so far; returns the counts. Panics after `limit` signals.
fn flood(
    p: &mut Client,
    reader: &mut Reader,
    filler: &str,
    limit: usize,
    enough: impl Fn(&[u64]) -> bool,
) -> Vec<u64> {
    let mut counts = Vec::new();
    while !enough(&counts) {
        assert!(
            counts.len() < limit,
            "the subscribers that never read were never dropped: {counts:?}"
        );
        let i = counts.len();
        if let Some(behind) = i.checked_sub(MAX_LEAD) {
            reader.wait_for(behind);
        }
        counts.push(publish(p, "flood", &format!("{i}{filler}")));
    }
    counts
}

/// Ends `reader` (after an `end` signal) and checks it got the `count` signals of [`flood`], in
/// order and unaltered; returns its connection, still subscribed.
fn expect_every_signal(reader: Reader, count: usize, filler: &str) -> Client {
    let (got, client) = reader.finish();
    assert_eq!(got.len(), count, "the reading subscriber missed signals");
    for (i, line) in got.iter().enumerate() {
        assert!(
            *line == format!("{i}{filler}"),
            "push {i} out of order or altered: {:?}",
            &line[..line.len().min(40)]
        );
    }
    client
}

/// Reads `c` until the server closes it, discarding what arrives; panics if it stays open.
fn expect_dropped(c: &Client) {
    assert_eq!(drain(c), None, "the connection was not closed");
}

/// Sends `ping` on a connection nothing was read from yet and reads until its `ok` arrives (the
/// bytes before it are returned) or the server closes the connection (`None`).
fn drain(c: &Client) -> Option<Vec<u8>> {
    let mut stream = c.stream();
    // The connection may already be closed: a failed send shows in the reads below.
    let _ = stream.write_all(b"ping\n_\n\n");
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            // A read with a timeout is not restarted after a signal handler ran.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("neither a reply nor a close: {e}"),
        }
        if received.ends_with(b"\nok\n") || received == b"ok\n" {
            received.truncate(received.len() - 3);
            return Some(received);
        }
    }
}

#[test]
fn a_queue_group_passes_over_a_full_member_without_dropping_it() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let mut stuck = server.connect();
    listen(&mut stuck, "work", "g");
    let mut worker = server.connect();
    listen(&mut worker, "work", "g");
    let mut worker = Reader::spawn(worker, "work");
    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    // Enough for the member that never reads to fill its socket buffers and output.
    let sent: Vec<String> = (0..1_000).map(|i| format!("{i}{filler}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        // Of any two consecutive signals the reading member gets at least one.
        if let Some(behind) = i.checked_sub(MAX_LEAD) {
            worker.wait_for(behind);
        }
        assert_eq!(publish(&mut p, "work", payload), 1, "signal {i}");
    }
    // Round robin sends at least one of two to the member that reads.
    assert_eq!(publish(&mut p, "work", "end"), 1);
    assert_eq!(publish(&mut p, "work", "end"), 1);
    let (to_worker, _worker) = worker.finish();
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], 0, "{stats}");
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "work", "group": "g", "listeners": 2}])
    );
    // The member that fell behind still gets what it was given once it reads.
    let to_stuck: Vec<String> = payloads(&mut stuck, "work")
        .into_iter()
        .filter(|payload| payload != "end")
        .collect();
    assert!(
        to_worker.len() > sent.len() / 2 + 100,
        "the member that never read was not passed over: it got {} of {}",
        to_stuck.len(),
        sent.len()
    );
    let mut all: Vec<&String> = to_stuck.iter().chain(&to_worker).collect();
    all.sort_by_key(|payload| {
        let digits = payload.find(' ').expect("numbered payload");
        payload[..digits].parse::<usize>().expect("number")
    });
    assert!(
        all.len() == sent.len() && all.iter().zip(&sent).all(|(got, sent)| *got == sent),
        "every signal goes to exactly one member ({} + {} deliveries for {} signals)",
        to_stuck.len(),
        to_worker.len(),
        sent.len()
    );
}

#[test]
fn a_queue_group_with_every_member_full_drops_one_member() {
    let server = TestServer::start(&[
        "--max-output-buffer",
        "65537",
        "--max-pending-output",
        "65537",
    ]);
    let members: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "work", "g");
            c
        })
        .collect();
    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    let mut sent = 0;
    loop {
        assert!(sent < 5_000, "no member was ever dropped");
        let n = publish(&mut p, "work", &format!("{sent}{filler}"));
        sent += 1;
        match n {
            1 => {}
            0 => break,
            _ => panic!("a queue group delivers at most one copy, got {n}"),
        }
    }
    // The copy nobody had room for is not counted, and one member is gone.
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], 1, "{stats}");
    assert_eq!(
        stats["signal_channels"],
        json!([{"pattern": "work", "group": "g", "listeners": 1}])
    );
    // Exactly one of them was disconnected; the other still answers once drained.
    let drained: Vec<Option<Vec<u8>>> = members.iter().map(drain).collect();
    let survivor = match &drained[..] {
        [None, Some(_)] => 1,
        [Some(_), None] => 0,
        _ => panic!("expected exactly one member to be dropped"),
    };
    // The one dropped was the one the round robin tried first for the last signal. Which one
    // that is follows from who was tried first for signal 0, when both still had room.
    let survivor_got_first = drained[survivor]
        .as_deref()
        .expect("the survivor's pushes")
        .starts_with(b"sig work 0 ");
    let first_tried_for_0 = if survivor_got_first {
        survivor
    } else {
        1 - survivor
    };
    assert_eq!(
        1 - survivor,
        (first_tried_for_0 + sent - 1) % 2,
        "the member dropped for signal {} was not the one tried first",
        sent - 1
    );
    assert_eq!(publish(&mut p, "work", "after"), 1);
}

/// Shared signal lines are counted once against `--max-total-output`; past it, subscribers holding
/// more than their share are dropped as slow consumers long before their own limit.
#[test]
fn the_server_wide_output_budget_drops_the_subscribers_holding_the_most() {
    const SLOW: usize = 3;
    // A per-connection limit no subscriber reaches here: 1,500 signals of 16 KiB are 24 MiB.
    let server = TestServer::start(&[
        "--max-output-buffer",
        "67108864",
        "--max-total-output",
        "1048576",
    ]);
    let slow: Vec<Client> = (0..SLOW)
        .map(|_| {
            let mut c = server.connect();
            listen(&mut c, "flood", "");
            c
        })
        .collect();
    let mut reader = server.connect();
    listen(&mut reader, "flood", "");
    let mut reader = Reader::spawn(reader, "flood");

    let filler = spaced_payload(16 * 1024);
    let mut p = server.connect();
    let counts = flood(&mut p, &mut reader, &filler, 1_500, |counts| {
        counts.last() == Some(&1)
    });
    assert!(
        counts.windows(2).all(|w| w[1] <= w[0]) && counts[0] == SLOW as u64 + 1,
        "counts only fall, from every subscriber to the reader alone: {counts:?}"
    );
    assert_eq!(publish(&mut p, "flood", "end"), 1);
    let _reader = expect_every_signal(reader, counts.len(), &filler);
    for c in &slow {
        expect_dropped(c);
    }
    let stats = p.stats();
    assert_eq!(stats["slow_consumers_disconnected"], SLOW, "{stats}");
}
