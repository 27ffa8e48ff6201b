//! `dflockctl check`, `dflockctl queue` and `dflockctl evict`: the lock safety extensions from
//! the shell, each on the server the key is sharded to.

use std::time::Duration;

use dflockd::client::{CheckTarget, Client, Connection, EvictTarget, Kind};
use dflockd::token::{LeaseToken, TOKEN_LEN, parse_fence};

use crate::{Failure, exit};

/// Which namespace a key is in: `--semaphore` picks the semaphore of that name.
fn kind(semaphore: bool) -> Kind {
    if semaphore {
        // The limit is not sent by `check`, `queue` or `evict`.
        Kind::Semaphore { limit: 1 }
    } else {
        Kind::Lock
    }
}

/// A token (32 lower-case hex digits) or a fence (its first 16), as the server takes them.
fn holder(text: &str) -> Result<CheckTarget, Failure> {
    let bytes = text.as_bytes();
    let target = match bytes.len() {
        TOKEN_LEN => LeaseToken::parse(bytes).map(CheckTarget::Token),
        16 => parse_fence(bytes).map(CheckTarget::Fence),
        _ => None,
    };
    target.ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!(
                "{text:?} is neither a token (32 lower-case hex digits) nor a fence (the first 16)"
            ),
        )
    })
}

fn connect(client: &Client, key: &str) -> Result<Connection, Failure> {
    client
        .connect_for(key)
        .map_err(|e| Failure::client("cannot connect", &e))
}

/// Prints `current FENCE REMAINING` (0) or `stale` ([`exit::STALE`]).
pub(crate) fn check(
    client: &Client,
    key: &str,
    target: &str,
    semaphore: bool,
) -> Result<u8, Failure> {
    let target = holder(target)?;
    let checked = connect(client, key)?
        .check(kind(semaphore), key, target)
        .map_err(|e| Failure::client("check", &e))?;
    match checked {
        Some(current) => {
            println!(
                "current {:016x} {}",
                current.fence,
                seconds(current.remaining)
            );
            Ok(0)
        }
        None => {
            println!("stale");
            Ok(exit::STALE)
        }
    }
}

/// Prints the key's holders, capacity and waiters, or one JSON object with `--json`.
pub(crate) fn queue(
    client: &Client,
    key: &str,
    semaphore: bool,
    json: bool,
) -> Result<u8, Failure> {
    let state = connect(client, key)?
        .queue(kind(semaphore), key)
        .map_err(|e| Failure::client("queue", &e))?;
    if json {
        let mut value = serde_json::json!({ "key": key });
        if let (Some(object), Ok(serde_json::Value::Object(fields))) =
            (value.as_object_mut(), serde_json::to_value(state))
        {
            object.extend(fields);
        }
        println!("{value}");
    } else {
        let capacity = match state.limit {
            0 => "no such semaphore".to_owned(),
            limit => format!("{}/{limit} held", state.holders),
        };
        println!("{key}: {capacity}, {} waiting", state.waiters);
    }
    Ok(0)
}

/// Ends the leases `target` names (`*`: every holder) and prints how many.
pub(crate) fn evict(
    client: &Client,
    key: &str,
    target: &str,
    semaphore: bool,
) -> Result<u8, Failure> {
    let target = match target {
        "*" => EvictTarget::All,
        holder_text => EvictTarget::Holder(holder(holder_text)?),
    };
    let evicted = connect(client, key)?
        .evict(kind(semaphore), key, target)
        .map_err(|e| match e {
            dflockd::client::Error::Rejected => Failure::new(
                exit::REFUSED,
                "evict: refused; only a connection authenticated with the server's admin \
                 token may evict (--auth-token or --auth-token-file with the admin token)",
            ),
            e => Failure::client("evict", &e),
        })?;
    println!("{evicted}");
    Ok(0)
}

/// A duration as seconds with milliseconds, as `check` reports the lease left.
fn seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}
