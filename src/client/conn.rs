//! One connection to one server: reading response lines (telling `sig` pushes apart), the
//! typed request/response exchanges every other part of the client is built from, and
//! [`Connection`], which runs them synchronously on the caller's thread.
//!
//! Requests are written with the protocol module's canonical encoder and every response is
//! parsed strictly (spec §18): a field too many or a malformed token is a protocol error, not a
//! guess. Nothing here starts a thread; long-lived connections hand their halves to the session
//! module instead.

use std::io::{self, BufRead, BufReader};
use std::time::Duration;

use super::error::{Error, Result};
use super::info::Info;
use super::stats::Stats;
use super::transport::{self, Reader, Writer};
use super::{Kind, Options, Signal};
use crate::protocol::request::{
    self, Acquire, Auth, Check, CheckTarget, Enqueue, Release, Renew, Subscription, Wait,
};
use crate::protocol::response::encode_request;
use crate::protocol::{MAX_LINE, MAX_PAYLOAD_LINE, MAX_SECONDS, Request};
use crate::token::{LeaseToken, TOKEN_LEN};

/// Longest line accepted from a server. `stats` has no size cap (spec §10), so this is only a
/// guard against a peer that is not a lock server streaming bytes without a line feed.
const MAX_INCOMING_LINE: usize = 64 * 1024 * 1024;

/// What a server sent: a push or the response to the oldest outstanding request.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// `sig <channel> <payload>`.
    Push(Signal),
    /// Any other line, without its line feed.
    Reply(String),
}

/// Reads whole lines, keeping a partial line across read timeouts so a caller may use the
/// timeout as a clock tick without losing bytes.
pub(crate) struct Lines {
    reader: BufReader<Reader>,
    partial: Vec<u8>,
}

impl Lines {
    pub fn new(reader: Reader) -> Lines {
        Lines {
            reader: BufReader::new(reader),
            partial: Vec::new(),
        }
    }

    /// Sets how long [`Lines::next`] may block (`None`: indefinitely).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_timeout(timeout)
    }

    /// The next line. A read timeout is [`Error::NoResponse`] and keeps any partial line; end
    /// of stream is [`Error::Closed`].
    pub fn next(&mut self) -> Result<Incoming> {
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                return Err(Error::Closed);
            }
            let (taken, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(lf) => (lf + 1, true),
                None => (available.len(), false),
            };
            self.partial.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            if self.partial.len() > MAX_INCOMING_LINE + 1 {
                return Err(Error::Protocol(format!(
                    "a line longer than {MAX_INCOMING_LINE} bytes"
                )));
            }
            if complete {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                return classify(line);
            }
        }
    }
}

/// Splits pushes from responses by the `sig ` prefix alone (spec §13.6).
fn classify(mut line: Vec<u8>) -> Result<Incoming> {
    // Servers end lines with a bare LF; tolerate a CR the way the other clients do.
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    if let Some(rest) = line.strip_prefix(b"sig ") {
        let (channel, payload) = match rest.iter().position(|&b| b == b' ') {
            Some(space) => (&rest[..space], &rest[space + 1..]),
            None => (rest, &b""[..]),
        };
        return Ok(Incoming::Push(Signal {
            channel: String::from_utf8_lossy(channel).into_owned(),
            payload: String::from_utf8_lossy(payload).into_owned(),
        }));
    }
    String::from_utf8(line)
        .map(Incoming::Reply)
        .map_err(|e| Error::Protocol(format!("a response that is not UTF-8: {e}")))
}

/// Sends one request and returns its response line. `wait` is how long the server may
/// legitimately take on top of the I/O timeout (the timeout of a blocking acquire).
pub(crate) trait Exchange {
    /// One request, one response.
    fn exchange(&mut self, request: &Request<'_>, wait: Duration) -> Result<String>;
}

/// A granted lock or semaphore slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The lease token: releases and renews the grant, and carries its fence.
    pub token: LeaseToken,
    /// The lease the server granted, in whole seconds.
    pub lease_s: u64,
}

impl Grant {
    /// The fencing token: the first 16 hex digits of the token as a number. It increases with
    /// every grant a server makes, so a resource can refuse writes carrying an older fence.
    pub fn fence(&self) -> u64 {
        self.token.fence
    }
}

/// A current holder, as `check` / `scheck` describe it (a dflockd extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The holder's fence.
    pub fence: u64,
    /// How long its lease has left, at the server, when it answered.
    pub remaining: Duration,
}

/// The wire form of a timeout: whole seconds rounded up (so 1 ms still waits), capped at the
/// protocol's largest value.
pub(crate) fn wire_seconds(timeout: Duration) -> u64 {
    let whole = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    whole.min(MAX_SECONDS)
}

/// Rejects keys the server would refuse or that would break the framing (spec §3.1).
pub(crate) fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_LINE {
        return Err(Error::InvalidInput(format!(
            "{what} must be 1 to {MAX_LINE} bytes long"
        )));
    }
    if key
        .bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Err(Error::InvalidInput(format!(
            "{what} {key:?} contains white space"
        )));
    }
    Ok(())
}

/// Rejects values that would not fit one request line of at most `max` bytes.
pub(crate) fn check_line(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max || value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(Error::InvalidInput(format!(
            "{what} must be a single line of at most {max} bytes"
        )));
    }
    Ok(())
}

fn check_lease(lease_s: Option<u64>) -> Result<()> {
    match lease_s {
        Some(0) => Err(Error::InvalidInput("a lease must be at least 1 s".into())),
        Some(s) if s > MAX_SECONDS => Err(Error::InvalidInput(format!(
            "a lease must be at most {MAX_SECONDS} s"
        ))),
        _ => Ok(()),
    }
}

/// A decimal integer made of digits only (no sign, as servers write them).
pub(crate) fn parse_number(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// `<status> <token> <lease>` with exactly these three fields, a well-formed token and a lease
/// of at least one second.
fn parse_grant(request: &str, status: &str, line: &str) -> Result<Grant> {
    let mut fields = line.split(' ');
    let grant = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(s), Some(token), Some(lease), None) if s == status => {
            LeaseToken::parse(token.as_bytes())
                .zip(parse_number(lease).filter(|&lease_s| lease_s >= 1))
        }
        _ => None,
    };
    grant
        .map(|(token, lease_s)| Grant { token, lease_s })
        .ok_or_else(|| Error::unexpected(request, line))
}

/// `ok <n>`.
pub(crate) fn parse_count(request: &str, line: &str) -> Result<u64> {
    line.strip_prefix("ok ")
        .and_then(parse_number)
        .ok_or_else(|| Error::unexpected(request, line))
}

/// Exactly `ok`.
fn expect_ok(request: &str, line: &str) -> Result<()> {
    if line == "ok" {
        Ok(())
    } else {
        Err(Error::unexpected(request, line))
    }
}

/// The 32-character wire form of `token`.
pub(crate) fn token_text(token: &LeaseToken) -> [u8; TOKEN_LEN] {
    let mut text = [0; TOKEN_LEN];
    token.encode(&mut text);
    text
}

/// `l` / `sl`.
pub(crate) fn acquire(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    timeout: Duration,
    lease_s: Option<u64>,
) -> Result<Grant> {
    check_key("a key", key)?;
    check_lease(lease_s)?;
    let request = Request::Acquire(Acquire {
        ns: kind.namespace(),
        key: key.as_bytes(),
        timeout_s: wire_seconds(timeout),
        limit: kind.checked_limit()?,
        lease_s,
    });
    let line = ex.exchange(&request, timeout)?;
    parse_grant(request.command().name(), "ok", &line)
}

/// `e` / `se`: `Some` grant if acquired at once, `None` if queued.
pub(crate) fn enqueue(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    lease_s: Option<u64>,
) -> Result<Option<Grant>> {
    check_key("a key", key)?;
    check_lease(lease_s)?;
    let request = Request::Enqueue(Enqueue {
        ns: kind.namespace(),
        key: key.as_bytes(),
        limit: kind.checked_limit()?,
        lease_s,
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    if line == "queued" {
        return Ok(None);
    }
    parse_grant(request.command().name(), "acquired", &line).map(Some)
}

/// `w` / `sw`.
pub(crate) fn wait(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    timeout: Duration,
) -> Result<Grant> {
    check_key("a key", key)?;
    let request = Request::Wait(Wait {
        ns: kind.namespace(),
        key: key.as_bytes(),
        timeout_s: wire_seconds(timeout),
    });
    let line = ex.exchange(&request, timeout)?;
    parse_grant(request.command().name(), "ok", &line)
}

/// `n` / `sn`: the new lease in seconds.
pub(crate) fn renew(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    token: &LeaseToken,
    lease_s: Option<u64>,
) -> Result<u64> {
    check_key("a key", key)?;
    check_lease(lease_s)?;
    let text = token_text(token);
    let line = ex.exchange(&renew_request(kind, key, &text, lease_s), Duration::ZERO)?;
    parse_renewed(&line)
}

/// The `n` / `sn` request renewing the token written in `text`.
pub(crate) fn renew_request<'a>(
    kind: Kind,
    key: &'a str,
    text: &'a [u8; TOKEN_LEN],
    lease_s: Option<u64>,
) -> Request<'a> {
    Request::Renew(Renew {
        ns: kind.namespace(),
        key: key.as_bytes(),
        token: text,
        lease_s,
    })
}

/// The response to `n` / `sn`: the new lease in seconds.
pub(crate) fn parse_renewed(line: &str) -> Result<u64> {
    parse_count("renew", line)
}

/// `r` / `sr`.
pub(crate) fn release(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    token: &LeaseToken,
) -> Result<()> {
    check_key("a key", key)?;
    let text = token_text(token);
    let request = Request::Release(Release {
        ns: kind.namespace(),
        key: key.as_bytes(),
        token: &text,
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    expect_ok(request.command().name(), &line)
}

/// `check` / `scheck`: `Some` if the token or fence is a current holder's, `None` if stale.
pub(crate) fn check(
    ex: &mut impl Exchange,
    kind: Kind,
    key: &str,
    target: CheckTarget,
) -> Result<Option<Checked>> {
    check_key("a key", key)?;
    let request = Request::Check(Check {
        ns: kind.namespace(),
        key: key.as_bytes(),
        target,
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    if line == "stale" {
        return Ok(None);
    }
    parse_checked(&line).ok_or_else(|| Error::unexpected(request.command().name(), &line))
}

/// `ok <16 hex digits> <ms>` with exactly these fields.
fn parse_checked(line: &str) -> Option<Option<Checked>> {
    let mut fields = line.split(' ');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some("ok"), Some(fence), Some(ms), None) => {
            let fence = crate::token::parse_fence(fence.as_bytes())?;
            let remaining = Duration::from_millis(parse_number(ms)?);
            Some(Some(Checked { fence, remaining }))
        }
        _ => None,
    }
}

/// `stats`: the JSON payload as the server wrote it.
pub(crate) fn stats_json(ex: &mut impl Exchange) -> Result<String> {
    json_reply(ex, &Request::Stats, "stats")
}

/// `info` (a dflockd extension).
pub(crate) fn info(ex: &mut impl Exchange) -> Result<Info> {
    let json = json_reply(ex, &Request::Info, "info")?;
    serde_json::from_str(&json).map_err(|e| Error::Protocol(format!("info JSON: {e}")))
}

/// The JSON of an `ok <json>` answer to `request`.
fn json_reply(ex: &mut impl Exchange, request: &Request<'_>, what: &str) -> Result<String> {
    let line = ex.exchange(request, Duration::ZERO)?;
    match line.strip_prefix("ok ") {
        Some(json) => Ok(json.to_owned()),
        None => Err(Error::unexpected(what, &line)),
    }
}

/// `ping`.
pub(crate) fn ping(ex: &mut impl Exchange) -> Result<()> {
    let line = ex.exchange(&Request::Ping, Duration::ZERO)?;
    expect_ok("ping", &line)
}

/// `auth`.
pub(crate) fn auth(ex: &mut impl Exchange, token: &str) -> Result<()> {
    check_line("an auth token", token, MAX_PAYLOAD_LINE)?;
    let request = Request::Auth(Auth {
        token: token.as_bytes(),
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    expect_ok("auth", &line)
}

/// `signal`: the number of deliveries.
pub(crate) fn emit(ex: &mut impl Exchange, channel: &str, payload: &str) -> Result<u64> {
    check_key("a channel", channel)?;
    if channel.contains(['*', '>']) {
        return Err(Error::InvalidInput(format!(
            "channel {channel:?} contains a wildcard"
        )));
    }
    // The push `sig <channel> <payload>` must fit a 64 KiB line (spec §7.12).
    check_line("a payload", payload, MAX_PAYLOAD_LINE - 5 - channel.len())?;
    if payload.trim().is_empty() {
        return Err(Error::InvalidInput("a payload must not be blank".into()));
    }
    let request = Request::Signal(request::Signal {
        channel: channel.as_bytes(),
        payload: payload.as_bytes(),
    });
    let line = ex.exchange(&request, Duration::ZERO)?;
    parse_count("signal", &line)
}

/// `listen` (`subscribe`) or `unlisten`, with an optional queue group.
pub(crate) fn subscription(
    ex: &mut impl Exchange,
    subscribe: bool,
    pattern: &str,
    group: Option<&str>,
) -> Result<()> {
    check_key("a pattern", pattern)?;
    let group = group.unwrap_or("");
    check_line("a group", group, MAX_LINE)?;
    let sub = Subscription {
        pattern: pattern.as_bytes(),
        group: group.as_bytes(),
    };
    let request = if subscribe {
        Request::Listen(sub)
    } else {
        Request::Unlisten(sub)
    };
    let line = ex.exchange(&request, Duration::ZERO)?;
    expect_ok(request.command().name(), &line)
}

/// A connection used synchronously: each call writes one request and reads its response on
/// the caller's thread. Obtained from [`Client::connect`](super::Client::connect).
///
/// Pushes cannot arrive (a `Connection` never subscribes); if a server sent one anyway it would
/// be skipped. After an I/O failure or a missing response the connection is closed and every
/// later call fails with [`Error::Closed`].
///
/// ```no_run
/// use std::time::Duration;
/// use dflockd::client::{Client, Kind};
///
/// # fn main() -> Result<(), dflockd::client::Error> {
/// let client = Client::new(["127.0.0.1:6388"])?;
/// let mut conn = client.connect_for("job-42")?;
/// let grant = conn.acquire(Kind::Lock, "job-42", Duration::from_secs(5), Some(30))?;
/// println!("fence {}", grant.fence());
/// conn.release(Kind::Lock, "job-42", &grant.token)?;
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    server: String,
    lines: Lines,
    writer: Writer,
    io_timeout: Duration,
    /// The read timeout last set on the socket, to skip redundant system calls.
    read_timeout: Duration,
    closed: bool,
    out: Vec<u8>,
}

impl Connection {
    /// Connects to `server`, completes TLS and authenticates as `options` say.
    pub(super) fn open(server: &str, options: &Options) -> Result<Connection> {
        let (reader, writer) = transport::connect(server, &options.dial())?;
        let mut conn = Connection {
            server: server.to_owned(),
            lines: Lines::new(reader),
            writer,
            io_timeout: options.io_timeout,
            read_timeout: options.io_timeout,
            closed: false,
            out: Vec::with_capacity(128),
        };
        if let Some(token) = &options.auth_token {
            auth(&mut conn, token)?;
        }
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Acquires a lock or a semaphore slot, waiting in the server's FIFO queue up to `timeout`
    /// (rounded up to whole seconds; zero tries once). [`Error::Timeout`] if it runs out.
    /// `lease_s` of `None` takes the server's default lease. No renewal happens: see
    /// [`Lock`](super::Lock) for that.
    pub fn acquire(
        &mut self,
        kind: Kind,
        key: &str,
        timeout: Duration,
        lease_s: Option<u64>,
    ) -> Result<Grant> {
        acquire(self, kind, key, timeout, lease_s)
    }

    /// Joins the queue without waiting (two-phase acquire, phase 1): `Some` grant when the
    /// resource was free, `None` when queued; then call [`Connection::wait`].
    pub fn enqueue(
        &mut self,
        kind: Kind,
        key: &str,
        lease_s: Option<u64>,
    ) -> Result<Option<Grant>> {
        enqueue(self, kind, key, lease_s)
    }

    /// Waits up to `timeout` for the grant of an earlier [`Connection::enqueue`] on this
    /// connection (phase 2).
    pub fn wait(&mut self, kind: Kind, key: &str, timeout: Duration) -> Result<Grant> {
        wait(self, kind, key, timeout)
    }

    /// Resets the lease of `token` to `lease_s` (or the server default) from now; returns the
    /// new lease in seconds. Any connection may renew any token.
    pub fn renew(
        &mut self,
        kind: Kind,
        key: &str,
        token: &LeaseToken,
        lease_s: Option<u64>,
    ) -> Result<u64> {
        renew(self, kind, key, token, lease_s)
    }

    /// Releases `token`. Any connection may release any token.
    pub fn release(&mut self, kind: Kind, key: &str, token: &LeaseToken) -> Result<()> {
        release(self, kind, key, token)
    }

    /// Asks whether `target` (a token, or a fence alone) belongs to a current holder of `key`
    /// whose lease has not passed: `Some` with its fence and remaining lease, or `None` when it
    /// is stale. A resource can validate a write with this instead of storing fences. A dflockd
    /// extension (`check` / `scheck`).
    pub fn check(
        &mut self,
        kind: Kind,
        key: &str,
        target: impl Into<CheckTarget>,
    ) -> Result<Option<Checked>> {
        check(self, kind, key, target.into())
    }

    /// The server's state, typed.
    pub fn stats(&mut self) -> Result<Stats> {
        let json = self.stats_json()?;
        serde_json::from_str(&json).map_err(|e| Error::Protocol(format!("stats JSON: {e}")))
    }

    /// The server's state as the JSON text it sent.
    pub fn stats_json(&mut self) -> Result<String> {
        stats_json(self)
    }

    /// The server's counters, gauges and most contended keys (`info`; a server without this
    /// extension answers `error`: [`Error::Rejected`]).
    pub fn info(&mut self) -> Result<Info> {
        info(self)
    }

    /// A round trip that does nothing; also keeps an idle connection open.
    pub fn ping(&mut self) -> Result<()> {
        ping(self)
    }

    /// Publishes `payload` on `channel` (no wildcards); returns how many subscribers or queue
    /// groups it was delivered to.
    pub fn emit(&mut self, channel: &str, payload: &str) -> Result<u64> {
        emit(self, channel, payload)
    }

    /// Gives the halves to a session, which reads from another thread.
    pub(crate) fn into_parts(self) -> (Lines, Writer) {
        (self.lines, self.writer)
    }

    /// Closes the connection after a failure that left it out of step with the server.
    fn fail(&mut self, error: Error) -> Error {
        self.closed = true;
        self.writer.close();
        error
    }

    fn read_reply(&mut self, wait: Duration) -> Result<String> {
        let timeout = self.io_timeout.saturating_add(wait);
        if timeout != self.read_timeout {
            self.lines.set_timeout(Some(timeout))?;
            self.read_timeout = timeout;
        }
        loop {
            if let Incoming::Reply(line) = self.lines.next()? {
                return Ok(line);
            }
        }
    }
}

impl Exchange for Connection {
    fn exchange(&mut self, request: &Request<'_>, wait: Duration) -> Result<String> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.out.clear();
        encode_request(request, &mut self.out);
        if let Err(e) = self.writer.send(&self.out) {
            return Err(self.fail(e.into()));
        }
        match self.read_reply(wait) {
            Ok(line) => {
                // The server closes the connection after these (spec §6).
                if line == "error_auth" || line == "error_draining" {
                    self.fail(Error::Closed);
                }
                Ok(line)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdeffedcba9876543210";

    #[test]
    fn grants_parse_strictly() {
        let grant = parse_grant("l", "ok", &format!("ok {TOKEN} 33")).expect("valid grant");
        assert_eq!(grant.lease_s, 33);
        assert_eq!(grant.fence(), 0x0123_4567_89ab_cdef);
        assert_eq!(grant.token.to_string(), TOKEN);
        let acquired = parse_grant("e", "acquired", &format!("acquired {TOKEN} 5"));
        assert_eq!(acquired.expect("valid").lease_s, 5);
        for line in [
            "ok".to_owned(),
            format!("ok {TOKEN}"),
            format!("ok {TOKEN} 33 extra"),
            format!("ok {TOKEN}  33"),
            format!("ok {TOKEN} 0"),
            format!("ok {TOKEN} +5"),
            format!("ok {TOKEN} 3x"),
            format!("ok {} 33", TOKEN.to_uppercase()),
            "ok short 33".to_owned(),
            format!("acquired {TOKEN} 33"),
            format!("OK {TOKEN} 33"),
            String::new(),
        ] {
            assert!(
                matches!(parse_grant("l", "ok", &line), Err(Error::Protocol(_))),
                "accepted {line:?}"
            );
        }
        assert!(matches!(
            parse_grant("l", "ok", "timeout"),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            parse_grant("l", "ok", "error_max_waiters"),
            Err(Error::MaxWaiters)
        ));
    }

    #[test]
    fn counts_and_oks_parse_strictly() {
        assert_eq!(parse_count("n", "ok 33").ok(), Some(33));
        assert_eq!(parse_count("signal", "ok 0").ok(), Some(0));
        for line in ["ok", "ok ", "ok -1", "ok 1 2", "ok x"] {
            assert!(parse_count("n", line).is_err(), "{line:?}");
        }
        assert!(expect_ok("r", "ok").is_ok());
        assert!(matches!(expect_ok("r", "error"), Err(Error::Rejected)));
        assert!(matches!(expect_ok("r", "ok 1"), Err(Error::Protocol(_))));
    }

    #[test]
    fn pushes_are_told_apart_by_their_prefix() {
        let Ok(Incoming::Push(signal)) = classify(b"sig a.b hello  world ".to_vec()) else {
            panic!("not a push");
        };
        assert_eq!(signal.channel, "a.b");
        assert_eq!(signal.payload, "hello  world ");
        assert!(matches!(
            classify(b"ok 3\r".to_vec()),
            Ok(Incoming::Reply(line)) if line == "ok 3"
        ));
        assert!(matches!(
            classify(b"signal".to_vec()),
            Ok(Incoming::Reply(line)) if line == "signal"
        ));
        assert!(matches!(classify(vec![0xff]), Err(Error::Protocol(_))));
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(wire_seconds(Duration::ZERO), 0);
        assert_eq!(wire_seconds(Duration::from_millis(1)), 1);
        assert_eq!(wire_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(wire_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(wire_seconds(Duration::MAX), MAX_SECONDS);
    }

    #[test]
    fn inputs_that_would_break_the_framing_are_refused() {
        assert!(check_key("a key", "k").is_ok());
        for key in ["", "a b", "a\tb", "a\nb", "a\rb", &"k".repeat(257)] {
            assert!(check_key("a key", key).is_err(), "{key:?}");
        }
        assert!(check_line("a group", "two words", MAX_LINE).is_ok());
        assert!(check_line("a group", "a\nb", MAX_LINE).is_err());
        assert!(check_lease(Some(0)).is_err());
        assert!(check_lease(Some(MAX_SECONDS + 1)).is_err());
        assert!(check_lease(None).is_ok());
    }
}
