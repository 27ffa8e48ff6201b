//! `dflockctl emit` and `dflockctl listen`: publish a signal, print signals as they arrive.

use std::io::{self, Read, Write};

use dflockd::client::{Client, Signal};
use dflockd::protocol::MAX_PAYLOAD_LINE;

use crate::{Failure, exit};

pub(crate) fn emit(client: &Client, channel: &str, payload: &str) -> Result<u8, Failure> {
    let payload = match payload {
        "-" => payload_from_stdin()?,
        literal => literal.to_owned(),
    };
    let delivered = client
        .emit(channel, &payload)
        .map_err(|e| Failure::client(channel, &e))?;
    println!("{delivered}");
    Ok(0)
}

/// One line from stdin, its line feed removed. A payload is checked by the client (one line,
/// within the protocol's limit), so reading one byte beyond the limit is enough to refuse an
/// oversized one; anything after a line feed in the middle is kept so that check sees it.
pub(crate) fn payload_from_stdin() -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let limit = MAX_PAYLOAD_LINE as u64 + 2;
    io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot read the payload: {e}")))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    String::from_utf8(bytes)
        .map_err(|_| Failure::new(exit::USAGE, "the payload on stdin is not UTF-8"))
}

pub(crate) fn listen(
    client: &Client,
    patterns: &[String],
    group: Option<&str>,
    count: Option<u64>,
) -> Result<u8, Failure> {
    print_signals(client, patterns, group, count, |signal| {
        format!("{} {}", signal.channel, signal.payload)
    })
}

/// Listens to `patterns` (in `group`, if any) on the first server and prints each signal as
/// `line` writes it, until `count` are printed or the reader goes away (success), or the
/// connection ends (failure).
pub(crate) fn print_signals(
    client: &Client,
    patterns: &[String],
    group: Option<&str>,
    count: Option<u64>,
    line: impl Fn(&Signal) -> String,
) -> Result<u8, Failure> {
    let server = &client.servers()[0];
    let signals = client.signals().map_err(|e| Failure::client(server, &e))?;
    for pattern in patterns {
        signals
            .listen(pattern, group)
            .map_err(|e| Failure::client(pattern, &e))?;
    }
    let mut stdout = io::stdout().lock();
    let mut left = count.unwrap_or(u64::MAX);
    for signal in signals.iter() {
        let printed = writeln!(stdout, "{}", line(&signal)).and_then(|()| stdout.flush());
        left -= 1;
        if printed.is_err() || left == 0 {
            // Enough signals, or the reader went away (a closed pipe): nothing more to do.
            return Ok(0);
        }
    }
    let why = signals
        .closed_reason()
        .unwrap_or_else(|| "the connection ended".to_owned());
    Err(Failure::new(exit::UNAVAILABLE, format!("{server}: {why}")))
}
