//! Stats (§10).

use super::harness::{Harness, granted};
use crate::protocol::request::Acquire;
use crate::protocol::{Namespace, Request, Response};

#[test]
fn stats_of_an_empty_engine_has_every_array() {
    let h = Harness::with_defaults();
    assert_eq!(
        h.stats(),
        r#"{"connections":0,"locks":[],"semaphores":[],"idle_locks":[],"idle_semaphores":[],"signal_channels":[],"slow_consumers_disconnected":0}"#
    );
    h.finish();
}

#[test]
fn stats_json_has_the_reference_fields_in_order() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(25);
    let b = h.client_with_serial(26);
    let c = h.client_with_serial(27);
    let d = h.client_with_serial(28);
    granted(h.ask(a, "l", "orders", "0 30"), 30);
    granted(h.ask(b, "sl", "pool", "0 2"), 33);
    granted(h.ask(c, "sl", "pool", "0 2"), 33);
    h.block(d, "sl", "pool", "60 2");
    let thc = granted(h.ask(b, "l", "hc", "0"), 33);
    assert_eq!(h.ask(b, "r", "hc", &thc.to_string()), Response::Ok);
    assert_eq!(h.ask(c, "listen", "events.>", ""), Response::Ok);
    assert_eq!(h.ask(a, "listen", "jobs.>", "workers"), Response::Ok);
    assert_eq!(h.ask(b, "listen", "jobs.>", " workers "), Response::Ok);
    h.at(300);

    let stats = h.stats();
    let head = r#"{"connections":4,"locks":[{"key":"orders","owner_conn_id":25,"lease_expires_in_s":29.7,"waiters":0}],"semaphores":[{"key":"pool","limit":2,"holders":2,"waiters":1}],"idle_locks":[{"key":"hc","idle_s":0.3}],"idle_semaphores":[],"signal_channels":["#;
    let plain = r#"{"pattern":"events.>","listeners":1}"#;
    let grouped = r#"{"pattern":"jobs.>","group":"workers","listeners":2}"#;
    let tail = r#","slow_consumers_disconnected":0}"#;
    assert!(
        stats == format!("{head}{plain},{grouped}]{tail}")
            || stats == format!("{head}{grouped},{plain}]{tail}"),
        "{stats}"
    );
    let value: serde_json::Value = serde_json::from_str(&stats).expect("valid JSON");
    assert_eq!(value["locks"][0]["lease_expires_in_s"].as_f64(), Some(29.7));
    assert!(value["locks"][0]["owner_conn_id"].is_u64());
    h.finish();
}

#[test]
fn stats_lease_expiry_is_fractional_and_clamped_at_zero() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(41);
    let b = h.client_with_serial(42);
    granted(h.ask(a, "l", "k", "0 1"), 1);
    h.block(b, "l", "k", "10");
    h.at(250);
    let lock = |h: &Harness| h.stats_value()["locks"][0].clone();
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 41, "lease_expires_in_s": 0.75, "waiters": 1})
    );
    // Passed but not swept: still listed, at 0.
    h.skip_to(1_500);
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 41, "lease_expires_in_s": 0.0, "waiters": 1})
    );
    h.at(1_500);
    granted(h.reply(b), 33);
    assert_eq!(
        lock(&h),
        serde_json::json!({"key": "k", "owner_conn_id": 42, "lease_expires_in_s": 33.0, "waiters": 0})
    );
    h.finish();
}

#[test]
fn stats_keys_with_invalid_utf8_are_replaced() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    // The wire accepts any byte but white space in a key; build one by hand.
    let key = [b'k', 0xff];
    let request = Request::Acquire(Acquire {
        ns: Namespace::Lock,
        key: &key,
        timeout_s: 0,
        limit: 1,
        lease_s: None,
    });
    let outcome = h.engine.apply(h.now, a, &request, &mut h.out);
    h.check(Some((a, outcome)));
    granted(h.reply(a), 33);
    assert_eq!(h.stats_value()["locks"][0]["key"], "k\u{fffd}");
    h.finish();
}
