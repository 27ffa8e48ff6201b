//! A virtual client of the `session` target, and the rules that decide which answers it may get.

use super::*;

/// One virtual client: what it has sent and received, and the server's view of its socket.
pub(super) struct Peer {
    pub(super) id: ClientId,
    /// Composed but not handed to the kernel yet.
    pub(super) outgoing: Vec<u8>,
    /// In the server's kernel receive buffer.
    pub(super) unsent: VecDeque<u8>,
    /// The peer shut down its sending side after `unsent`; `fin_read` once the server saw it.
    pub(super) fin: bool,
    pub(super) fin_read: bool,
    /// The loop's readiness flag for the socket (edge-triggered: set by events).
    pub(super) read_ready: bool,
    /// Bytes the peer will still read (its receive window).
    pub(super) window: usize,
    /// Bytes handed to the dispatcher, in order.
    pub(super) delivered: Vec<u8>,
    /// Bytes the server wrote to the peer.
    pub(super) received: Vec<u8>,
    /// `received` is parsed into lines up to here.
    pub(super) parsed: usize,
    /// Complete requests in `delivered` not answered yet, oldest first; framing has reached
    /// `framed` (and stopped for good at an over-long line).
    pub(super) unanswered: VecDeque<[Vec<u8>; 3]>,
    pub(super) framed: usize,
    pub(super) framing_over: bool,
    /// Requests the dispatcher has processed: `delivered[..processed]` holds `processed_count`.
    pub(super) processed: usize,
    pub(super) processed_count: usize,
    /// Responses received (push lines not counted), and whether the last was a closing error
    /// that answered no request.
    pub(super) answered: usize,
    pub(super) terminal: bool,
    /// The peer sent the admin token and was answered `ok`: it may evict.
    pub(super) admin: bool,
    /// Whether a `listen` for a pattern starting with `$` was sent: only such a pattern may
    /// receive a lock event.
    pub(super) reserved_listener: bool,
}

impl Peer {
    pub(super) fn new(id: ClientId) -> Peer {
        Peer {
            id,
            outgoing: Vec::new(),
            unsent: VecDeque::new(),
            fin: false,
            fin_read: false,
            read_ready: false,
            window: usize::MAX,
            delivered: Vec::new(),
            received: Vec::new(),
            parsed: 0,
            unanswered: VecDeque::new(),
            framed: 0,
            framing_over: false,
            processed: 0,
            processed_count: 0,
            answered: 0,
            terminal: false,
            admin: false,
            reserved_listener: false,
        }
    }

    /// Whether a read would return something (data or EOF).
    pub(super) fn readable(&self) -> bool {
        !self.unsent.is_empty() || (self.fin && !self.fin_read)
    }

    /// Frames the complete requests delivered so far.
    pub(super) fn frame_delivered(&mut self) {
        while !self.framing_over {
            match naive_frame(&self.delivered[self.framed..]) {
                Naive::Frame { frame, consumed } => {
                    if let Ok(Request::Listen(sub)) = parse(&frame) {
                        self.reserved_listener |= is_reserved_channel(sub.pattern);
                    }
                    self.unanswered.push_back([
                        frame.cmd.to_vec(),
                        frame.key.to_vec(),
                        frame.arg.to_vec(),
                    ]);
                    self.framed += consumed;
                }
                Naive::Partial(_) => return,
                Naive::TooLong => self.framing_over = true,
            }
        }
    }

    /// Counts the requests in `delivered[..upto]`, which must be whole requests.
    pub(super) fn count_processed(&mut self, upto: usize) {
        assert!(upto >= self.processed, "processed input went backwards");
        while self.processed < upto {
            match naive_frame(&self.delivered[self.processed..upto]) {
                Naive::Frame { consumed, .. } => {
                    self.processed += consumed;
                    self.processed_count += 1;
                }
                other => panic!("processed input ends inside a request: {other:?}"),
            }
        }
    }
}

/// What the harness knows that decides which responses are valid.
pub(super) struct Rules {
    pub(super) config: EngineConfig,
    pub(super) auth: bool,
    /// An admin token is configured.
    pub(super) admin: bool,
    pub(super) draining: bool,
}

impl Rules {
    /// Panics unless `reply` is a valid answer to the request framed as `frame`, the
    /// `index`-th request of its connection; `admin` is whether the connection is an admin,
    /// which an `auth` with the admin token makes it.
    pub(super) fn check_answer(
        &self,
        frame: &[Vec<u8>; 3],
        index: usize,
        reply: Reply,
        admin: &mut bool,
    ) {
        let shown = || {
            let text: Vec<String> = frame
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            format!("{reply:?} answered {text:?}")
        };
        if reply == Reply::Bare(Response::ErrorDraining) {
            assert!(
                self.draining,
                "error_draining before the drain: {}",
                shown()
            );
            return;
        }
        let framed = Frame {
            cmd: &frame[0],
            key: &frame[1],
            arg: &frame[2],
        };
        let parsed = parse(&framed);
        let offered = match parsed {
            Ok(Request::Auth(Auth { token })) => Some(token),
            _ => None,
        };
        let admin_token = self.admin && offered == Some(ADMIN_SECRET);
        if self.auth && index == 0 {
            let authenticated = offered == Some(SECRET) || admin_token;
            let expected = if authenticated {
                Reply::Ok
            } else {
                Reply::Bare(Response::ErrorAuth)
            };
            assert_eq!(reply, expected, "authentication: {}", shown());
            *admin = admin_token;
            return;
        }
        if offered.is_some() {
            // Past the handshake only the admin token is accepted, once (spec §7.9 otherwise).
            let expected = if admin_token && !*admin {
                Reply::Ok
            } else {
                Reply::Bare(Response::Error)
            };
            assert_eq!(reply, expected, "auth after the handshake: {}", shown());
            *admin |= admin_token;
            return;
        }
        let valid = match parsed {
            Err(_) => reply == Reply::Bare(Response::Error),
            Ok(Request::Evict(_)) if !*admin => reply == Reply::Bare(Response::Error),
            Ok(request) => self.fits(&request, reply),
        };
        assert!(valid, "invalid response: {}", shown());
    }

    pub(super) fn fits(&self, request: &Request<'_>, reply: Reply) -> bool {
        use Response as R;
        let default = self.config.default_lease_s;
        let cancelled = self.draining && reply == Reply::Bare(R::Error);
        let refusal = |semaphore: bool| match reply {
            Reply::Bare(R::ErrorMaxLocks | R::ErrorMaxWaiters) => true,
            Reply::Bare(R::ErrorLimitMismatch) => semaphore,
            _ => false,
        };
        match *request {
            Request::Acquire(Acquire { ns, lease_s, .. }) => {
                let lease = lease_s.unwrap_or(default);
                matches!(reply, Reply::Granted(_, l) if l == lease)
                    || reply == Reply::Bare(R::Timeout)
                    || cancelled
                    || refusal(ns == Namespace::Semaphore)
            }
            Request::Release(_) => matches!(reply, Reply::Ok | Reply::Bare(R::Error)),
            Request::Renew(Renew { lease_s, .. }) => {
                reply == Reply::Number(lease_s.unwrap_or(default)) || reply == Reply::Bare(R::Error)
            }
            Request::Enqueue(Enqueue { ns, lease_s, .. }) => {
                let lease = lease_s.unwrap_or(default);
                matches!(reply, Reply::Acquired(_, l) if l == lease)
                    || matches!(reply, Reply::Bare(R::Queued | R::ErrorAlreadyEnqueued))
                    || refusal(ns == Namespace::Semaphore)
            }
            Request::Wait(_) => {
                matches!(reply, Reply::Granted(..))
                    || matches!(
                        reply,
                        Reply::Bare(R::Timeout | R::ErrorNotEnqueued | R::ErrorLeaseExpired)
                    )
                    || cancelled
            }
            // Both answer `ok <json>`.
            Request::Stats | Request::Info => reply == Reply::Stats,
            Request::Ping => reply == Reply::Ok,
            Request::Auth(_) => reply == Reply::Bare(R::Error),
            Request::Listen(_) | Request::Unlisten(_) => {
                matches!(reply, Reply::Ok | Reply::Bare(R::Error))
            }
            Request::Signal(signal)
                if self.config.lock_events && is_reserved_channel(signal.channel) =>
            {
                reply == Reply::Bare(R::Error)
            }
            Request::Signal(_) => matches!(reply, Reply::Number(_)),
            Request::Check(check) => match reply {
                Reply::Checked(fence, _) => match check.target {
                    CheckTarget::Token(token) => fence == token.fence,
                    CheckTarget::Fence(asked) => fence == asked,
                },
                other => other == Reply::Bare(R::Stale),
            },
            // An admin's (any other is answered `error`, before this).
            Request::Evict(_) => matches!(reply, Reply::Number(_)),
            Request::Queue(_) => match reply {
                Reply::Queue([holders, limit, waiters, position]) => {
                    holders <= limit.max(1) && position <= waiters
                }
                _ => false,
            },
        }
    }
}
