//! Lock safety extensions: `check`/`scheck` answers around expiry and release.

use super::harness::{Harness, acquired, granted};
use crate::protocol::Response;
use crate::token::LeaseToken;

fn checked(fence: u64, remaining_ms: u64) -> Response {
    Response::Checked {
        fence,
        remaining_ms,
    }
}

fn fence_text(token: LeaseToken) -> String {
    format!("{:016x}", token.fence)
}

#[test]
fn check_answers_the_remaining_lease_until_the_deadline_then_stale() {
    let mut h = Harness::with_defaults();
    let [a, observer] = [h.client(), h.client()];
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let (tok, fence) = (token.to_string(), fence_text(token));

    assert_eq!(
        h.ask(observer, "check", "k", &tok),
        checked(token.fence, 5_000)
    );
    h.at(1_234);
    assert_eq!(
        h.ask(observer, "check", "k", &fence),
        checked(token.fence, 3_766)
    );
    h.at(4_999);
    assert_eq!(h.ask(observer, "check", "k", &tok), checked(token.fence, 1));
    // The lease has passed before its timer is handled: already stale.
    h.skip_to(5_000);
    assert_eq!(h.ask(observer, "check", "k", &tok), Response::Stale);
    assert_eq!(h.ask(observer, "check", "k", &fence), Response::Stale);
    h.run_due();
    assert_eq!(h.ask(observer, "check", "k", &tok), Response::Stale);
    h.finish();
}

#[test]
fn check_follows_renewals_and_releases() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let tok = token.to_string();
    h.at(4_000);
    assert_eq!(
        h.ask(a, "n", "k", &format!("{tok} 10")),
        Response::Renewed { lease_s: 10 }
    );
    assert_eq!(h.ask(a, "check", "k", &tok), checked(token.fence, 10_000));
    assert_eq!(h.ask(a, "r", "k", &tok), Response::Ok);
    assert_eq!(h.ask(a, "check", "k", &tok), Response::Stale);
    h.finish();
}

#[test]
fn check_matches_key_namespace_and_the_whole_token() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 5"), 5);
    let forged = LeaseToken {
        random: token.random ^ 1,
        ..token
    };
    assert_eq!(
        h.ask(a, "check", "other", &token.to_string()),
        Response::Stale
    );
    assert_eq!(h.ask(a, "scheck", "k", &token.to_string()), Response::Stale);
    assert_eq!(h.ask(a, "check", "k", &forged.to_string()), Response::Stale);
    let never = format!("{:016x}", token.fence + 1000);
    assert_eq!(h.ask(a, "check", "k", &never), Response::Stale);
    h.finish();
}

#[test]
fn scheck_sees_every_holder_of_a_semaphore_and_a_two_phase_grant() {
    let mut h = Harness::with_defaults();
    let [a, b, c] = [h.client(), h.client(), h.client()];
    let ta = granted(h.ask(a, "sl", "pool", "0 2 5"), 5);
    h.at(1_000);
    let tb = acquired(h.ask(b, "se", "pool", "2 7"), 7);
    assert_eq!(
        h.ask(c, "scheck", "pool", &ta.to_string()),
        checked(ta.fence, 4_000)
    );
    assert_eq!(
        h.ask(c, "scheck", "pool", &fence_text(tb)),
        checked(tb.fence, 7_000)
    );
    // A lock of the same name is another resource.
    assert_eq!(h.ask(c, "check", "pool", &ta.to_string()), Response::Stale);
    h.at(5_000);
    assert_eq!(h.ask(c, "scheck", "pool", &ta.to_string()), Response::Stale);
    assert_eq!(
        h.ask(c, "scheck", "pool", &tb.to_string()),
        checked(tb.fence, 3_000)
    );
    h.finish();
}

#[test]
fn check_does_not_count_as_activity() {
    let mut h = Harness::with_defaults();
    let a = h.client();
    let token = granted(h.ask(a, "l", "k", "0 1"), 1);
    assert_eq!(h.ask(a, "r", "k", &token.to_string()), Response::Ok);
    // Idle from 0: gone at the first GC pass 60 s later, however often it is checked.
    for t in (5_000..=60_000).step_by(5_000) {
        h.at(t);
        assert_eq!(h.ask(a, "check", "k", &token.to_string()), Response::Stale);
    }
    h.at(65_000);
    assert_eq!(h.resources(), 0);
    h.finish();
}
