//! Renew (§7.3).

use super::harness::{Harness, config, granted, renew_arg};
use crate::protocol::Response;
use crate::token::LeaseToken;

#[test]
fn renew_resets_the_lease_to_now_plus_l() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 10"), 10);
    h.at(4_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(10))),
        Response::Renewed { lease_s: 10 }
    );
    // Not additive: 4 000 + 10 s, not 0 + 20 s.
    h.at(13_999);
    assert_eq!(h.holders(), 1);
    h.at(14_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_without_a_lease_uses_the_default() {
    let mut h = Harness::new(config(|c| c.default_lease_s = 7));
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.at(1_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, None)),
        Response::Renewed { lease_s: 7 }
    );
    h.at(7_999);
    assert_eq!(h.holders(), 1);
    h.at(8_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_can_move_a_lease_earlier() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    h.block(b, "l", "k", "60");
    h.at(1_000);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(2))),
        Response::Renewed { lease_s: 2 }
    );
    h.at(2_999);
    h.quiet(b);
    h.at(3_000);
    granted(h.reply(b), 33);
    h.finish();
}

#[test]
fn any_client_can_renew_any_token() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "s", "0 2 5"), 5);
    h.at(4_000);
    assert_eq!(
        h.ask(b, "sn", "s", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    h.at(8_999);
    assert_eq!(h.holders(), 1);
    h.at(9_000);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_rejects_tokens_that_do_not_hold_the_key() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 30"), 30);
    let tb = granted(h.ask(b, "l", "other", "0 30"), 30);
    let ts = granted(h.ask(b, "sl", "k", "0 2 30"), 30);
    let forged = LeaseToken {
        fence: ta.fence,
        random: ta.random ^ 1,
    };
    let upper = ta.to_string().to_uppercase();
    for (cmd, arg) in [
        ("n", forged.to_string()),
        ("n", tb.to_string()),
        ("n", ts.to_string()),
        ("n", upper.clone()),
        ("n", format!("{ta}0")),
        ("sn", ta.to_string()),
    ] {
        assert_eq!(h.ask(a, cmd, "k", &arg), Response::Error, "{cmd} k {arg}");
    }
    assert_eq!(h.ask(a, "n", "missing", &ta.to_string()), Response::Error);
    assert_eq!(h.ask(a, "r", "k", &ta.to_string()), Response::Ok);
    assert_eq!(h.ask(a, "n", "k", &ta.to_string()), Response::Error);
    // Nothing of it lives on.
    assert_eq!(h.holders(), 2);
    h.finish();
}

#[test]
fn renew_of_an_expired_unswept_lease_fails_and_hands_the_slot_on() {
    let mut h = Harness::with_defaults();
    let [a, b] = [h.client(), h.client()];
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.block(b, "l", "k", "60 6");
    h.skip_to(5_200);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(ta, Some(5))), Response::Error);
    granted(h.reply(b), 6);
    h.at(5_200);
    // b's lease runs from the grant at 5 200.
    h.at(11_199);
    assert_eq!(h.holders(), 1);
    h.at(11_200);
    assert_eq!(h.holders(), 0);
    h.finish();
}

#[test]
fn renew_of_a_lease_exactly_at_its_deadline_fails() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let ta = granted(h.ask(a, "l", "k", "0 5"), 5);
    h.skip_to(4_999);
    assert_eq!(
        h.ask(a, "n", "k", &renew_arg(ta, Some(5))),
        Response::Renewed { lease_s: 5 }
    );
    // Now due at 9 999; a renewal in that very millisecond is too late.
    h.skip_to(9_999);
    assert_eq!(h.ask(a, "n", "k", &renew_arg(ta, Some(5))), Response::Error);
    assert_eq!(h.holders(), 0);
    h.at(9_999);
    h.finish();
}
