//! The HTTP/1.1 side of the monitoring endpoint (`--metrics-addr`): request heads read with
//! `httparse`, routed to the three paths the endpoint serves, and responses framed with a
//! `Content-Length`. No sockets: the event loop feeds the bytes a connection sent and writes
//! what comes back, so every rule here is tested without a server.
//!
//! Only what a scraper or an orchestrator's probe sends is accepted: `GET` and `HEAD` without a
//! body. Anything else gets its status code and, when the request's framing cannot be trusted
//! (a body, a head that is too long, bytes that are not HTTP), the connection is closed after
//! the answer, so a request body is never mistaken for the next request.

/// Longest request head accepted, request line and headers together. Scrapers send a few
/// hundred bytes; past this the answer is 431 and the connection closes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Headers parsed per request; more is treated like a head that is too long.
const MAX_HEADERS: usize = 32;

/// The paths the endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`: the Prometheus exposition.
    Metrics,
    /// `/healthz`: the loop is running.
    Healthz,
    /// `/readyz`: the server accepts new connections (not draining).
    Readyz,
}

impl Route {
    fn from_path(path: &str) -> Option<Route> {
        // A query string changes nothing for these paths.
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        match path {
            "/metrics" => Some(Route::Metrics),
            "/healthz" => Some(Route::Healthz),
            "/readyz" => Some(Route::Readyz),
            _ => None,
        }
    }
}

/// Response status codes the endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: not an HTTP request, or one with a body.
    BadRequest,
    /// 404: a path the endpoint does not serve.
    NotFound,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 431: the head is longer than [`MAX_HEAD`] or has too many headers.
    HeadTooLarge,
    /// 503: not ready (draining).
    Unavailable,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeadTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }
}

/// A complete request head, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to answer: a route to serve, or an error status.
    pub target: Result<Route, Status>,
    /// `HEAD`: the answer carries the headers of a `GET` and no body.
    pub head_only: bool,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A request whose head took this many bytes.
    Request(Request, usize),
    /// The head is not complete yet.
    Partial,
}

/// Reads the request head at the start of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(input);
    let len = match status {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD => return Parsed::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return refused(Status::HeadTooLarge),
        Err(_) => return refused(Status::BadRequest),
    };
    let http10 = request.version == Some(0);
    let mut keep_alive = !http10;
    let mut has_body = false;
    for header in request.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                keep_alive = false;
            } else if has_token(value, "keep-alive") {
                keep_alive = true;
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            || (header.name.eq_ignore_ascii_case("content-length") && value.trim_ascii() != b"0")
        {
            has_body = true;
        }
    }
    let method = request.method.unwrap_or_default();
    let head_only = method == "HEAD";
    let target = if has_body {
        Err(Status::BadRequest)
    } else if method != "GET" && !head_only {
        Err(Status::MethodNotAllowed)
    } else {
        Route::from_path(request.path.unwrap_or_default()).ok_or(Status::NotFound)
    };
    Parsed::Request(
        Request {
            target,
            head_only,
            // A body we will not read would be taken for the next request: close instead.
            keep_alive: keep_alive && !has_body,
        },
        len,
    )
}

/// An answer of `status` after which the connection closes: the input cannot be read further.
fn refused(status: Status) -> Parsed {
    Parsed::Request(
        Request {
            target: Err(status),
            head_only: false,
            keep_alive: false,
        },
        0,
    )
}

/// Whether the comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Appends a complete response to `out`: status line, `Content-Type`, `Content-Length`, the
/// connection's fate, and the body unless `head_only`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) {
    use std::io::Write as _;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        status.code(),
        status.reason(),
        body.len()
    );
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The plain-text answer to a request that has no route: its status, in words.
pub fn write_error(out: &mut Vec<u8>, request: &Request, status: Status) {
    let body = format!("{} {}\n", status.code(), status.reason());
    write_response(
        out,
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        request.head_only,
        request.keep_alive,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &str) -> (Request, usize) {
        match parse(input.as_bytes()) {
            Parsed::Request(request, len) => (request, len),
            Parsed::Partial => panic!("{input:?} is partial"),
        }
    }

    #[test]
    fn the_three_routes_answer_get_and_head() {
        let (get, len) = request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(len, 34);
        assert_eq!(get.target, Ok(Route::Metrics));
        assert!(!get.head_only && get.keep_alive);
        let (head, _) = request("HEAD /healthz HTTP/1.1\r\n\r\n");
        assert_eq!((head.target, head.head_only), (Ok(Route::Healthz), true));
        let (query, _) = request("GET /readyz?verbose=1 HTTP/1.1\r\n\r\n");
        assert_eq!(query.target, Ok(Route::Readyz));
    }

    #[test]
    fn other_paths_and_methods_get_their_status() {
        assert_eq!(
            request("GET /varz HTTP/1.1\r\n\r\n").0.target,
            Err(Status::NotFound)
        );
        let (delete, _) = request("DELETE /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(delete.target, Err(Status::MethodNotAllowed));
        assert!(delete.keep_alive, "a bodiless request keeps its framing");
        let (post, _) = request("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(post.target, Err(Status::BadRequest));
        assert!(!post.keep_alive, "an unread body ends the connection");
        let (chunked, _) = request("GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!chunked.keep_alive);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(!request("GET /metrics HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            request("GET /metrics HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !request("GET /metrics HTTP/1.1\r\nConnection: te, close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn incomplete_oversized_and_garbage_heads() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost:"), Parsed::Partial);
        assert_eq!(parse(b""), Parsed::Partial);
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse(huge.as_bytes()),
            Parsed::Request(
                Request {
                    target: Err(Status::HeadTooLarge),
                    head_only: false,
                    keep_alive: false
                },
                0
            )
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X{i}: y\r\n"))
            .collect();
        let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(request(&many).0.target, Err(Status::HeadTooLarge));
        let (garbage, _) = request("\x16\x03\x01 hello\r\n\r\n");
        assert_eq!(
            (garbage.target, garbage.keep_alive),
            (Err(Status::BadRequest), false)
        );
    }

    #[test]
    fn pipelined_requests_are_read_one_head_at_a_time() {
        let two = "GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n";
        let (first, len) = request(two);
        assert_eq!(first.target, Ok(Route::Healthz));
        assert_eq!(request(&two[len..]).0.target, Ok(Route::Readyz));
    }

    #[test]
    fn responses_carry_length_and_connection_and_head_omits_the_body() {
        let mut out = Vec::new();
        write_response(&mut out, Status::Ok, "text/plain", b"ok\n", false, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
        );
        out.clear();
        write_response(
            &mut out,
            Status::Unavailable,
            "text/plain",
            b"draining\n",
            true,
            false,
        );
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("Content-Length: 9\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "no body after HEAD");
        out.clear();
        let (delete, _) = request("DELETE /metrics HTTP/1.1\r\n\r\n");
        write_error(&mut out, &delete, Status::MethodNotAllowed);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        assert!(text.ends_with("405 Method Not Allowed\n"));
    }
}
