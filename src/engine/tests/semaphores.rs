//! Semaphores (§8.1, §8.8, §8.9).

use super::harness::{Harness, granted};
use crate::protocol::Response;

#[test]
fn a_semaphore_admits_limit_holders_and_queues_the_next() {
    let mut h = Harness::with_defaults();
    let [a, b, c, d] = [h.client(), h.client(), h.client(), h.client()];
    granted(h.ask(a, "sl", "s", "0 3 10"), 10);
    let tb = granted(h.ask(b, "sl", "s", "0 3"), 33);
    granted(h.ask(c, "sl", "s", "0 3"), 33);
    assert_eq!(h.ask(d, "sl", "s", "0 3"), Response::Timeout);
    h.block(d, "sl", "s", "10 3 4");
    let semaphores = &h.stats_value()["semaphores"];
    assert_eq!(
        semaphores,
        &serde_json::json!([{"key": "s", "limit": 3, "holders": 3, "waiters": 1}])
    );
    assert_eq!(h.ask(a, "sr", "s", &tb.to_string()), Response::Ok);
    granted(h.reply(d), 4);
    assert_eq!(h.holders(), 3);
    h.finish();
}

#[test]
fn semaphore_limit_must_match_while_the_entry_exists_even_idle() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2"), 33);
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(b, "sl", "s", "5 3"), Response::ErrorLimitMismatch);
    assert_eq!(h.ask(b, "se", "s", "3"), Response::ErrorLimitMismatch);
    assert_eq!((h.holders(), h.waiters()), (1, 0));
    assert_eq!(h.ask(a, "sr", "s", &ta.to_string()), Response::Ok);
    // Idle but not collected: the limit still holds.
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    // A lock of the same name is another resource.
    granted(h.ask(b, "l", "s", "0"), 33);

    // Idle since 0: collected at the tick at 60 s; then the key is free for any limit.
    h.at(59_999);
    assert_eq!(h.ask(b, "sl", "s", "0 3"), Response::ErrorLimitMismatch);
    h.at(60_000);
    assert_eq!(h.resources(), 1);
    granted(h.ask(b, "sl", "s", "0 3"), 33);
    assert_eq!(h.ask(a, "sl", "s", "0 2"), Response::ErrorLimitMismatch);
    h.finish();
}

#[test]
fn one_client_may_hold_several_slots_of_a_semaphore() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let t1 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    let t2 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    let t3 = granted(h.ask(a, "sl", "s", "0 3"), 33);
    assert!(t1.fence < t2.fence && t2.fence < t3.fence);
    assert_eq!(h.ask(a, "sl", "s", "0 3"), Response::Timeout);
    assert_eq!(h.ask(a, "sr", "s", &t2.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "sr", "s", &t2.to_string()), Response::Error);
    granted(h.ask(a, "sl", "s", "0 3"), 33);
    assert_eq!(h.holders(), 3);
    h.finish();
}

#[test]
fn a_limit_one_semaphore_is_listed_under_locks() {
    let mut h = Harness::with_defaults();
    let a = h.client_with_serial(9);
    let ts = granted(h.ask(a, "sl", "s", "0 1 20"), 20);
    granted(h.ask(a, "l", "s", "0 10"), 10);
    let stats = h.stats_value();
    let mut locks = stats["locks"].as_array().expect("locks").clone();
    locks.sort_by(|x, y| {
        x["lease_expires_in_s"]
            .as_f64()
            .partial_cmp(&y["lease_expires_in_s"].as_f64())
            .expect("numbers")
    });
    assert_eq!(
        serde_json::Value::Array(locks),
        serde_json::json!([
            {"key": "s", "owner_conn_id": 9, "lease_expires_in_s": 10.0, "waiters": 0},
            {"key": "s", "owner_conn_id": 9, "lease_expires_in_s": 20.0, "waiters": 0},
        ])
    );
    assert_eq!(stats["semaphores"], serde_json::json!([]));
    assert_eq!(h.ask(a, "sr", "s", &ts.to_string()), Response::Ok);
    assert_eq!(
        h.stats_value()["idle_locks"],
        serde_json::json!([{"key": "s", "idle_s": 0.0}])
    );
    assert_eq!(h.stats_value()["idle_semaphores"], serde_json::json!([]));
    h.finish();
}
