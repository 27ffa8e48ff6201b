//! Lock events (`--lock-events`) over the wire: who receives them, what they carry, and the
//! reserved channels clients may no longer publish on.

use serde_json::Value;

use crate::signals::{listen, payloads};
use crate::support::{Client, TestServer, grant};

/// The event pushes `c` got so far (see `signals::payloads`), as (channel, payload).
fn events(c: &mut Client) -> Vec<(String, Value)> {
    c.send("ping", "_", "");
    let mut got = Vec::new();
    loop {
        let line = c.read_line();
        if line == "ok" {
            return got;
        }
        let push = line.strip_prefix("sig ").expect("a push");
        let (channel, payload) = push.split_once(' ').expect("channel and payload");
        let payload = serde_json::from_str(payload).expect("an event payload is one JSON object");
        got.push((channel.to_owned(), payload));
    }
}

#[test]
fn events_reach_dollar_patterns_and_no_wildcard_first_pattern() {
    let server = TestServer::start(&["--lock-events"]);
    let [mut reserved, mut all, mut star, mut holder] = [(); 4].map(|()| server.connect());
    listen(&mut reserved, "$lock.>", "");
    listen(&mut all, ">", "");
    listen(&mut star, "*.granted.jobs", "");
    let peer = holder
        .stream()
        .local_addr()
        .expect("local address")
        .to_string();
    let (token, _) = grant(&holder.request("l", "jobs", "0"));
    let conn = server.stats()["locks"][0]["owner_conn_id"].clone();
    assert_eq!(holder.request("r", "jobs", &token), "ok");

    let got = events(&mut reserved);
    let channels: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, ["$lock.granted.jobs", "$lock.released.jobs"]);
    let (granted, released) = (&got[0].1, &got[1].1);
    for payload in [granted, released] {
        assert_eq!(payload["key"], "jobs");
        assert_eq!(payload["fence"], &token[..16]);
        assert_eq!(payload["conn"], conn);
        assert_eq!(payload["waiters"], 0);
        assert_eq!(payload["peer"], peer.as_str(), "the holder's address");
    }
    assert_eq!(granted["waited_ms"], 0);
    assert!(granted.get("held_ms").is_none());
    assert!(released["held_ms"].is_u64());
    assert!(released.get("waited_ms").is_none());

    assert!(payloads(&mut all, "-").is_empty(), "`>` saw an event");
    assert!(
        payloads(&mut star, "-").is_empty(),
        "`*.granted.jobs` saw an event"
    );
}

#[test]
fn a_lease_that_runs_out_is_published_as_expired() {
    let server = TestServer::start(&["--lock-events"]);
    let [mut watcher, mut holder] = [(); 2].map(|()| server.connect());
    listen(&mut watcher, "$lock.expired.short", "");
    let (token, _) = grant(&holder.request("l", "short", "0 1"));
    // The push arrives on its own when the lease runs out, a second from now.
    let line = watcher.read_line();
    let payload = line
        .strip_prefix("sig $lock.expired.short ")
        .unwrap_or_else(|| panic!("not the expiry: {line:?}"));
    let payload: Value = serde_json::from_str(payload).expect("JSON");
    assert_eq!(payload["fence"], &token[..16]);
    let held = payload["held_ms"].as_u64().expect("held_ms");
    assert!((1_000..1_500).contains(&held), "held {held} ms");
    assert_eq!(holder.request("n", "short", &token), "error");
}

#[test]
fn clients_may_not_publish_on_reserved_channels_while_events_are_on() {
    let server = TestServer::start(&["--lock-events"]);
    let mut c = server.connect();
    assert_eq!(c.request("signal", "$lock.granted.x", "forged"), "error");
    assert_eq!(c.request("signal", "$anything", "forged"), "error");
    assert_eq!(c.request("signal", "a.$b", "fine"), "ok 0");
    assert_eq!(c.request("ping", "_", ""), "ok");

    // Without the flag a `$` channel is an ordinary 1.x channel.
    let plain = TestServer::start(&[]);
    let [mut publisher, mut all] = [(); 2].map(|()| plain.connect());
    listen(&mut all, ">", "");
    assert_eq!(publisher.request("signal", "$lock.granted.x", "p"), "ok 1");
    assert_eq!(payloads(&mut all, "$lock.granted.x"), ["p"]);
}
