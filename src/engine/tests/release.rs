//! Release (§7.2).

use super::harness::{Harness, granted};
use crate::protocol::Response;

#[test]
fn any_client_can_release_any_token() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    h.block(c, "l", "k", "10");
    assert_eq!(h.ask(b, "r", "k", &ta.to_string()), Response::Ok);
    let tc = granted(h.reply(c), 33);
    // Releasing twice fails.
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Error);
    // A token with surrounding white space is trimmed.
    assert_eq!(h.ask(a, "r", "k", &format!("  {tc} ")), Response::Ok);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn release_respects_namespaces() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let lock = granted(h.ask(a, "l", "k", "0"), 33);
    let sem = granted(h.ask(a, "sl", "k", "0 2"), 33);
    assert_eq!(h.ask(a, "sr", "k", &lock.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &sem.to_string()), Response::Error);
    assert_eq!(h.holders(), 2);
    assert_eq!(h.ask(a, "r", "k", &lock.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "sr", "k", &sem.to_string()), Response::Ok);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn release_rejects_unknown_keys_other_keys_and_case_changes() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0"), 33);
    granted(h.ask(a, "l", "j", "0"), 33);
    assert_eq!(h.ask(a, "r", "j", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "nope", &ta.to_string()), Response::Error);
    let upper = ta.to_string().to_uppercase();
    assert_ne!(upper, ta.to_string(), "the token has letters");
    assert_eq!(h.ask(a, "r", "k", &upper), Response::Error);
    assert_eq!(h.ask(a, "r", "k", "not-a-token"), Response::Error);
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn release_after_the_sweep_fails_but_before_it_succeeds() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.at(5_000);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Error);

    // Passed but not swept yet: still released with `ok`, and the waiter gets the lock.
    let tb = granted(h.ask(b, "l", "k", "0 5"), 5);
    h.block(a, "l", "k", "60");
    h.skip_to(10_500);
    assert_eq!(h.ask(b, "r", "k", &tb.to_string()), Response::Ok);
    granted(h.reply(a), 33);
    h.at(10_500);
    h.finish();
}
