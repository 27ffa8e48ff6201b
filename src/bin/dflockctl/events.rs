//! `dflockctl events`: prints the lock events of a server started with `--lock-events`, one
//! per line, as they happen.

use dflockd::client::{Client, Signal};
use dflockd::protocol::Namespace;
use dflockd::protocol::events::{EventPayload, parse_event_channel};
use serde_json::{Map, Value};

use crate::Failure;
use crate::signals::print_signals;

/// What `events` listens to without patterns: every event of both namespaces.
pub(crate) const ALL_EVENTS: [&str; 2] = ["$lock.>", "$sem.>"];

pub(crate) fn events(
    client: &Client,
    patterns: &[String],
    json: bool,
    count: Option<u64>,
) -> Result<u8, Failure> {
    let defaults = ALL_EVENTS.map(str::to_owned);
    let patterns = if patterns.is_empty() {
        &defaults[..]
    } else {
        patterns
    };
    let line = if json { json_line } else { text_line };
    print_signals(client, patterns, None, count, line)
}

/// `EVENT NS KEY field=value...`, e.g. `granted lock jobs fence=18ebc16ce40e4eb1 conn=7
/// peer=127.0.0.1:5123 waited_ms=0 waiters=0`. A signal that is not an event (a pattern given on the command line
/// may match ordinary channels) is printed as `listen` prints it.
pub(crate) fn text_line(signal: &Signal) -> String {
    let parsed = parse_event_channel(&signal.channel)
        .zip(serde_json::from_str::<EventPayload<'_>>(&signal.payload).ok());
    let Some(((ns, event), payload)) = parsed else {
        return format!("{} {}", signal.channel, signal.payload);
    };
    let mut line = format!("{} {} {}", event.name(), ns_name(ns), payload.key);
    if let Some(fence) = payload.fence {
        line.push_str(&format!(" fence={fence}"));
    }
    line.push_str(&format!(" conn={}", payload.conn));
    if let Some(peer) = payload.peer {
        line.push_str(&format!(" peer={peer}"));
    }
    let numbers = [
        ("waited_ms", payload.waited_ms),
        ("held_ms", payload.held_ms),
        ("waiters", Some(payload.waiters)),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={value}"));
        }
    }
    line
}

/// The event's payload with `event` and `ns` added, as one JSON object; a signal that
/// is not an event becomes `{"channel": ..., "payload": ...}`.
pub(crate) fn json_line(signal: &Signal) -> String {
    let parsed = parse_event_channel(&signal.channel)
        .zip(serde_json::from_str::<Map<String, Value>>(&signal.payload).ok());
    let object = match parsed {
        Some(((ns, event), payload)) => {
            let mut object = Map::new();
            object.insert("event".into(), event.name().into());
            object.insert("ns".into(), ns_name(ns).into());
            object.extend(payload);
            object
        }
        None => Map::from_iter([
            ("channel".to_owned(), signal.channel.clone().into()),
            ("payload".to_owned(), signal.payload.clone().into()),
        ]),
    };
    Value::Object(object).to_string()
}

fn ns_name(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Lock => "lock",
        Namespace::Semaphore => "semaphore",
    }
}
