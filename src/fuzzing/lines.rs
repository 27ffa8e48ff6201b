//! Reads back the lines a connection receives, from the spec's grammar (§2.3, §4, §13.1) rather
//! than from the encoder, so that a misspelt or malformed line is caught.

use crate::protocol::Response;
use crate::token::LeaseToken;

/// One line the server wrote, LF removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// `sig <channel> <payload>`, well formed.
    Push,
    /// A response.
    Reply(Reply),
}

/// A response line, as far as its shape tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// `ok`.
    Ok,
    /// `ok <token> <lease_s>`.
    Granted(LeaseToken, u64),
    /// `acquired <token> <lease_s>`.
    Acquired(LeaseToken, u64),
    /// `ok <n>`: a renewed lease or a delivery count.
    Number(u64),
    /// `ok <json object>`.
    Stats,
    /// `ok <fence as 16 hex digits> <remaining_ms>`: a `check`/`scheck` that found a holder.
    Checked(u64, u64),
    /// `ok <holders> <limit> <waiters> <position>`: a `q`/`sq`.
    Queue([u64; 4]),
    /// A status without fields (`queued`, `timeout`, `error`, `error_*`).
    Bare(Response),
}

/// The statuses without fields, as spec §4 spells them.
const BARE: [(&str, Response); 12] = [
    ("queued", Response::Queued),
    ("timeout", Response::Timeout),
    ("error", Response::Error),
    ("error_auth", Response::ErrorAuth),
    ("error_max_locks", Response::ErrorMaxLocks),
    ("error_max_waiters", Response::ErrorMaxWaiters),
    ("error_limit_mismatch", Response::ErrorLimitMismatch),
    ("error_already_enqueued", Response::ErrorAlreadyEnqueued),
    ("error_not_enqueued", Response::ErrorNotEnqueued),
    ("error_lease_expired", Response::ErrorLeaseExpired),
    ("error_draining", Response::ErrorDraining),
    ("stale", Response::Stale),
];

/// Classifies one line (without its LF); panics if it has no valid shape.
pub(super) fn parse_line(line: &[u8]) -> Line {
    assert!(!line.contains(&b'\n'), "LF inside a line");
    if let Some(push) = line.strip_prefix(b"sig ") {
        check_push(push);
        return Line::Push;
    }
    let shown = String::from_utf8_lossy(line);
    let (status, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    let reply = match (status, rest) {
        (b"ok", None) => Reply::Ok,
        (b"ok", Some(json)) if json.starts_with(b"{") => {
            let value: serde_json::Value = serde_json::from_slice(json)
                .unwrap_or_else(|e| panic!("stats is not JSON ({e}): {shown}"));
            assert!(value.is_object(), "stats is not an object: {shown}");
            Reply::Stats
        }
        (b"ok", Some(fields)) if fields.iter().filter(|&&b| b == b' ').count() == 3 => {
            let mut numbers = [0; 4];
            for (slot, field) in numbers.iter_mut().zip(fields.split(|&b| b == b' ')) {
                *slot = decimal(field).unwrap_or_else(|| panic!("malformed queue line: {shown}"));
            }
            Reply::Queue(numbers)
        }
        (b"ok", Some(fields)) => match (split_grant(fields), split_checked(fields)) {
            (Some((token, lease_s)), _) => Reply::Granted(token, lease_s),
            (None, Some((fence, remaining_ms))) => Reply::Checked(fence, remaining_ms),
            (None, None) => Reply::Number(
                decimal(fields).unwrap_or_else(|| panic!("malformed ok line: {shown}")),
            ),
        },
        (b"acquired", Some(fields)) => {
            let (token, lease_s) =
                split_grant(fields).unwrap_or_else(|| panic!("malformed acquired: {shown}"));
            Reply::Acquired(token, lease_s)
        }
        (word, None) => BARE
            .iter()
            .find(|(name, _)| name.as_bytes() == word)
            .map(|&(_, response)| Reply::Bare(response))
            .unwrap_or_else(|| panic!("unknown response line: {shown}")),
        _ => panic!("unknown response line: {shown}"),
    };
    Line::Reply(reply)
}

/// Panics unless a push's `<channel> <payload>` are both well formed.
fn check_push(push: &[u8]) {
    let space = push
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or_else(|| panic!("push without payload: {push:?}"));
    let (channel, payload) = (&push[..space], &push[space + 1..]);
    assert!(!channel.is_empty(), "push with empty channel");
    assert!(
        !channel
            .iter()
            .any(|b| matches!(b, b'\t' | b'\r' | b'*' | b'>')),
        "push channel {channel:?} is not a literal key"
    );
    assert!(
        payload.iter().any(|b| !b.is_ascii_whitespace()),
        "push with a blank payload"
    );
}

/// `<32 lower-case hex digits> <decimal>`.
fn split_grant(fields: &[u8]) -> Option<(LeaseToken, u64)> {
    let (token, lease) = (fields.get(..32)?, fields.get(32..)?);
    let lease = lease.strip_prefix(b" ")?;
    let lower_hex = token
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    assert!(lower_hex, "token {token:?} is not lower-case hex");
    let lease_s = decimal(lease)?;
    assert!(lease_s > 0, "grant with a zero lease");
    Some((LeaseToken::parse(token)?, lease_s))
}

/// `<16 lower-case hex digits> <decimal>`, the remaining lease at least 1 ms.
fn split_checked(fields: &[u8]) -> Option<(u64, u64)> {
    let (fence, rest) = (fields.get(..16)?, fields.get(16..)?);
    let remaining = rest.strip_prefix(b" ")?;
    let fence = crate::token::parse_fence(fence)?;
    let remaining_ms = decimal(remaining)?;
    assert!(remaining_ms > 0, "check answered with no lease left");
    Some((fence, remaining_ms))
}

/// A plain decimal: digits only, no sign, no leading zero (except `0` itself), fits a u64.
fn decimal(text: &[u8]) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.iter().all(u8::is_ascii_digit)
        && (text == b"0" || text[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_recognised() {
        let token = "0000000000000001ffffffffffffffff";
        let grant = format!("ok {token} 33");
        assert!(matches!(
            parse_line(grant.as_bytes()),
            Line::Reply(Reply::Granted(t, 33)) if t.fence == 1
        ));
        let acquired = format!("acquired {token} 5");
        assert!(matches!(
            parse_line(acquired.as_bytes()),
            Line::Reply(Reply::Acquired(_, 5))
        ));
        assert_eq!(parse_line(b"ok"), Line::Reply(Reply::Ok));
        assert_eq!(parse_line(b"ok 0"), Line::Reply(Reply::Number(0)));
        assert_eq!(parse_line(b"ok {\"a\":1}"), Line::Reply(Reply::Stats));
        assert_eq!(
            parse_line(b"ok 00000000000000ff 1500"),
            Line::Reply(Reply::Checked(255, 1500))
        );
        assert_eq!(
            parse_line(b"ok 1 2 3 4"),
            Line::Reply(Reply::Queue([1, 2, 3, 4]))
        );
        assert_eq!(
            parse_line(b"stale"),
            Line::Reply(Reply::Bare(Response::Stale))
        );
        assert_eq!(
            parse_line(b"error_not_enqueued"),
            Line::Reply(Reply::Bare(Response::ErrorNotEnqueued))
        );
        assert_eq!(parse_line(b"sig a.b hello world"), Line::Push);
    }

    #[test]
    #[should_panic(expected = "malformed ok line")]
    fn a_leading_zero_is_malformed() {
        parse_line(b"ok 07");
    }

    #[test]
    #[should_panic(expected = "unknown response line")]
    fn an_unknown_status_is_rejected() {
        parse_line(b"pong");
    }
}
