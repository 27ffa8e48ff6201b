//! Lock events (`--lock-events`): the reserved channels on which the server publishes what
//! happens to locks and semaphores, and the JSON payload each event carries.
//!
//! Shared by the server, which writes them, and the client, which subscribes to them, so both
//! spell the channels the same way. A reserved channel is one whose first token starts with `$`:
//! with lock events on, clients may not `signal` on one, and a pattern whose first token is a
//! wildcard never matches one (the `$` rule), so `>` and `*` subscribers see nothing new.
//!
//! An event on `key` goes to `$lock.<event>.<key>` (`$sem.` for a semaphore) when the key can be
//! a channel's last tokens (see [`event_channel`]), and to `$lock.<event>` otherwise; the payload's
//! `key` field always names it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{MAX_LINE, Namespace};

/// The first byte of a reserved channel.
pub const RESERVED_MARK: u8 = b'$';

/// What happened to a lock or semaphore slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockEvent {
    /// A lease was granted: at once, or to a waiter (also when a lock-delay ends).
    Granted,
    /// The holder released it with `r`/`sr`.
    Released,
    /// The lease ran out without a release: the holder lost it.
    Expired,
    /// The holder's connection ended and the server released the lease (auto-release).
    Disconnected,
    /// An operator took the lease away from its holder.
    Evicted,
    /// A waiter joined the queue.
    Queued,
    /// A waiter's wait (or a try-lock) ran out without a grant.
    Timeout,
}

impl LockEvent {
    /// Every event, in the order the README lists them.
    pub const ALL: [LockEvent; 7] = [
        LockEvent::Granted,
        LockEvent::Released,
        LockEvent::Expired,
        LockEvent::Disconnected,
        LockEvent::Evicted,
        LockEvent::Queued,
        LockEvent::Timeout,
    ];

    /// The event's channel token.
    pub fn name(self) -> &'static str {
        match self {
            LockEvent::Granted => "granted",
            LockEvent::Released => "released",
            LockEvent::Expired => "expired",
            LockEvent::Disconnected => "disconnected",
            LockEvent::Evicted => "evicted",
            LockEvent::Queued => "queued",
            LockEvent::Timeout => "timeout",
        }
    }

    /// The event whose channel token is `name`.
    pub fn from_name(name: &str) -> Option<LockEvent> {
        LockEvent::ALL
            .into_iter()
            .find(|event| event.name() == name)
    }
}

/// The first channel token of the events of namespace `ns`.
pub fn namespace_token(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Lock => "$lock",
        Namespace::Semaphore => "$sem",
    }
}

/// The namespace and event of an event channel (`$lock.granted.jobs`, `$sem.timeout`), or
/// `None` if `channel` is not one.
pub fn parse_event_channel(channel: &str) -> Option<(Namespace, LockEvent)> {
    let mut tokens = channel.splitn(3, '.');
    let ns = match tokens.next()? {
        "$lock" => Namespace::Lock,
        "$sem" => Namespace::Semaphore,
        _ => return None,
    };
    Some((ns, LockEvent::from_name(tokens.next()?)?))
}

/// Whether `channel` is reserved for the server's events: its first token starts with `$`.
pub fn is_reserved_channel(channel: &[u8]) -> bool {
    channel.first() == Some(&RESERVED_MARK)
}

/// Writes into `out` (emptied first) the channel of `event` on `key` in namespace `ns`:
/// `$lock.<event>.<key>` if that is a channel a client could also name in a literal `listen`
/// (the key holds no `*` or `>`, and the whole fits a protocol line), else `$lock.<event>`.
pub fn event_channel(ns: Namespace, event: LockEvent, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(namespace_token(ns).as_bytes());
    out.push(b'.');
    out.extend_from_slice(event.name().as_bytes());
    let suffix_fits = out.len() + 1 + key.len() <= MAX_LINE;
    if suffix_fits && !key.iter().any(|&b| b == b'*' || b == b'>') {
        out.push(b'.');
        out.extend_from_slice(key);
    }
}

/// The payload of an event: one JSON object on one line.
///
/// `fence` is present for events about a lease (not `queued`, nor `timeout`); `waited_ms` for
/// `granted` and `timeout`; `held_ms` for the events that end a lease; `peer` while the
/// connection is still open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload<'a> {
    /// The key, as the client sent it (invalid UTF-8 replaced by U+FFFD).
    pub key: Cow<'a, str>,
    /// The lease's fence: 16 lower-case hex digits, as tokens start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Cow<'a, str>>,
    /// The connection number of the holder or waiter (`owner_conn_id` in `stats`).
    pub conn: u64,
    /// The connection's peer (`127.0.0.1:5123`, `unix:uid=1000,pid=4242`) while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Cow<'a, str>>,
    /// How long the grant was waited for, or how long the wait lasted before it timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// How long the lease was held before it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_ms: Option<u64>,
    /// Waiters left in the key's queue after the event.
    pub waiters: u64,
}

impl EventPayload<'_> {
    /// The fence as a number, if the payload has a well-formed one.
    pub fn fence_value(&self) -> Option<u64> {
        let text = self.fence.as_deref()?;
        (text.len() == 16)
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
    }
}

/// The 16-digit text of a fence, as the payload's `fence` carries it.
pub fn fence_text(fence: u64) -> String {
    format!("{fence:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(ns: Namespace, event: LockEvent, key: &[u8]) -> String {
        let mut out = Vec::new();
        event_channel(ns, event, key, &mut out);
        String::from_utf8(out).expect("test keys are UTF-8")
    }

    #[test]
    fn keys_are_appended_only_when_a_literal_listen_could_name_the_channel() {
        let (lock, sem) = (Namespace::Lock, Namespace::Semaphore);
        assert_eq!(
            channel(lock, LockEvent::Granted, b"jobs.a"),
            "$lock.granted.jobs.a"
        );
        assert_eq!(channel(sem, LockEvent::Timeout, b"p"), "$sem.timeout.p");
        assert_eq!(channel(lock, LockEvent::Expired, b"a*"), "$lock.expired");
        assert_eq!(channel(lock, LockEvent::Queued, b"x.>"), "$lock.queued");
        let longest = vec![b'k'; MAX_LINE - "$lock.released.".len()];
        assert_eq!(channel(lock, LockEvent::Released, &longest).len(), MAX_LINE);
        let too_long = vec![b'k'; longest.len() + 1];
        assert_eq!(
            channel(lock, LockEvent::Released, &too_long),
            "$lock.released"
        );
    }

    #[test]
    fn names_round_trip_and_reserved_channels_start_with_a_dollar() {
        for event in LockEvent::ALL {
            assert_eq!(LockEvent::from_name(event.name()), Some(event));
        }
        assert_eq!(LockEvent::from_name("lost"), None);
        assert!(is_reserved_channel(b"$lock.granted.k"));
        assert!(is_reserved_channel(b"$"));
        assert!(!is_reserved_channel(b"a.$lock"));
        let parsed = |channel| parse_event_channel(channel);
        assert_eq!(
            parsed("$lock.granted.a.b"),
            Some((Namespace::Lock, LockEvent::Granted))
        );
        assert_eq!(
            parsed("$sem.timeout"),
            Some((Namespace::Semaphore, LockEvent::Timeout))
        );
        for other in ["$lock", "$lock.lost.k", "lock.granted.k", "$semx.granted"] {
            assert_eq!(parsed(other), None, "{other}");
        }
    }

    #[test]
    fn a_payload_is_one_line_of_json_and_reads_back() {
        let payload = EventPayload {
            key: "a\nb\"c".into(),
            fence: Some(fence_text(0x18eb).into()),
            conn: 7,
            peer: None,
            waited_ms: None,
            held_ms: Some(12),
            waiters: 1,
        };
        let text = serde_json::to_string(&payload).expect("serialises");
        assert!(!text.contains('\n'));
        assert_eq!(
            text,
            r#"{"key":"a\nb\"c","fence":"00000000000018eb","conn":7,"held_ms":12,"waiters":1}"#
        );
        let back: EventPayload<'_> = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, payload);
        assert_eq!(back.fence_value(), Some(0x18eb));
    }
}
