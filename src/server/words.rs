//! Requests and responses in protocol words, for the debug log: `l k 0 33` and
//! `-> ok 00000000000004d2... 33`, as an operator would type and read them.
//!
//! Secrets stay out of the log: a lease token shows only its fence (the first 16 hex digits,
//! which are not secret) and the `auth` token not at all. Long signal payloads are cut.

use crate::protocol::frame::Frame;
use crate::token::TOKEN_LEN;

/// Bytes of a signal payload shown before it is cut.
const PAYLOAD_SHOWN: usize = 64;

/// A request's three lines on one line, separated by spaces.
pub fn request(frame: &Frame<'_>) -> String {
    let arg = if frame.cmd == b"auth" {
        "<redacted>".to_owned()
    } else if frame.cmd == b"signal" && frame.arg.len() > PAYLOAD_SHOWN {
        format!(
            "{}... ({} bytes)",
            String::from_utf8_lossy(&frame.arg[..PAYLOAD_SHOWN]),
            frame.arg.len()
        )
    } else {
        redact_tokens(frame.arg)
    };
    format!(
        "{} {} {arg}",
        String::from_utf8_lossy(frame.cmd),
        String::from_utf8_lossy(frame.key)
    )
    .trim_end()
    .to_owned()
}

/// A response line (without its line feed), tokens shortened to their fence.
pub fn response(line: &[u8]) -> String {
    format!(
        "-> {}",
        redact_tokens(line.strip_suffix(b"\n").unwrap_or(line))
    )
}

/// `text` with every word that looks like a lease token cut to its fence.
fn redact_tokens(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    text.split(' ')
        .map(|word| {
            let is_token = word.len() == TOKEN_LEN && word.bytes().all(|b| b.is_ascii_hexdigit());
            if is_token {
                format!("{}...", &word[..TOKEN_LEN / 2])
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(cmd: &'a str, key: &'a str, arg: &'a str) -> Frame<'a> {
        Frame {
            cmd: cmd.as_bytes(),
            key: key.as_bytes(),
            arg: arg.as_bytes(),
        }
    }

    #[test]
    fn requests_read_as_typed_with_secrets_left_out() {
        assert_eq!(request(&frame("l", "orders", "0 33")), "l orders 0 33");
        assert_eq!(request(&frame("ping", "_", "")), "ping _");
        let token = "00000000000004d2a1b2c3d4e5f60718";
        assert_eq!(
            request(&frame("r", "orders", token)),
            "r orders 00000000000004d2..."
        );
        assert_eq!(request(&frame("auth", "_", "s3cret")), "auth _ <redacted>");
        // An eviction names its lease by fence in the log, like a release.
        assert_eq!(
            request(&frame("evict", "orders", token)),
            "evict orders 00000000000004d2..."
        );
        assert_eq!(request(&frame("sevict", "pool", "*")), "sevict pool *");
        let long = "x".repeat(100);
        assert_eq!(
            request(&frame("signal", "ch", &long)),
            format!("signal ch {}... (100 bytes)", "x".repeat(64))
        );
    }

    #[test]
    fn responses_show_the_fence_of_a_token() {
        assert_eq!(
            response(b"ok 00000000000004d2a1b2c3d4e5f60718 33\n"),
            "-> ok 00000000000004d2... 33"
        );
        assert_eq!(response(b"error_max_locks\n"), "-> error_max_locks");
    }
}
