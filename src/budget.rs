//! Every bound on the work of one event-loop turn, in one place.
//!
//! In a lock server a long turn is an outage: while the loop is busy no lease can be renewed.
//! So everything whose cost grows with client input stops at one of these budgets and goes on
//! in the next turn, from where it stopped; the poll does not sleep while such work is left.
//!
//! The table of them, with what each bounds, is in the [`server`](crate::server) module's
//! documentation, next to the turn it bounds.

/// Readiness events fetched per poll.
pub const EVENT_CAPACITY: usize = 1024;

/// Size of the loop-wide read buffer: one read per connection per turn takes at most this much.
pub const READ_CHUNK: usize = 64 * 1024;

/// Connections served from the ready queue per turn (a read, or the resumption of requests
/// already read); the rest stay queued for the next turn. A read costs a few microseconds of
/// kernel time, so thousands of clients sending at once are read over several short turns.
pub const READS_PER_TURN: usize = 256;

/// Requests of one connection processed per turn; a client that pipelines thousands is served in
/// slices, taking turns with everyone else.
pub const REQUESTS_PER_TURN: usize = 512;

/// Requests of all connections together processed per turn. A request costs a few microseconds
/// (a `signal` more only within [`SIGNAL_BUDGET`]), so a turn's request work stays near a
/// millisecond however many connections pipeline; the rest of the ready queue waits a turn.
pub const TURN_REQUESTS: usize = 1024;

/// TLS handshake steps (reads of a connection still handshaking, each of which may run rustls'
/// key exchange and signature, about 0.3 ms of CPU) per turn. Connections beyond it stay on the
/// ready queue for the next turn, so a burst of ClientHellos spreads over turns of about a
/// millisecond instead of one turn of hundreds; their handshake deadlines keep running.
pub const HANDSHAKES_PER_TURN: usize = 4;

/// Connections whose close starts per turn: each releases its engine state (itself bounded by
/// the budgets here), leaves the poll and is closed, about 10-20 µs with the kernel's TCP work, so
/// ten thousand clients leaving at once are let go over many short turns.
pub const CLOSES_PER_TURN: usize = 32;

/// Most timers the engine handles per turn, so that a mass expiry is spread over turns. Also the
/// most leases of departed clients released per turn from the release queue, and the most that
/// all disconnects of one turn release themselves. Releasing a lease of a million costs about a
/// microsecond (cache misses), so a turn spends about a millisecond on each at most.
pub const EXPIRE_BUDGET: usize = 1024;

/// Holders that acquires, enqueues and waits look at per turn, all together, for leases that have
/// passed while their timers wait behind a mass expiry (spec §8.3 has a request end those first).
/// Without it, an acquire on a semaphore with a million overdue holders ended them all in one
/// request, about 0.8 s. Past it, a request answers on the holders as they stand, and the timers
/// end the rest within the next turns: a grant comes a few turns later, never too early.
pub const SWEEP_BUDGET: usize = 1024;

/// Units of signal work per turn: a unit is a wildcard pattern looked at (plus one per 12 bytes
/// of it), a subscriber offered a copy, or a departed client's subscription removed; a copy
/// placed costs one more plus one per 128 bytes of its line. About 0.8 ms of work. A
/// publish that does not fit continues next turn while its publisher waits.
pub const SIGNAL_BUDGET: u64 = 8_192;

/// Signal operations waiting behind a publish at which lock events (`--lock-events`) are
/// dropped, and counted, rather than queued. Requests that queue there have a client waiting
/// for each, but events have no publisher to hold back, and a busy server with many event
/// subscribers could make them faster than a turn's [`SIGNAL_BUDGET`] delivers them. About
/// 300 bytes each while they wait: 5 MB at most.
pub const EVENT_BACKLOG: usize = 16_384;

/// Table slots a step of a `stats` listing looks at: about 40 KB of JSON, a fraction of a
/// millisecond.
pub const STATS_STEP: usize = 1024;

/// Steps of `stats` listings per turn, all listings together, the oldest listing first. An `info`,
/// `q` or `sq` request (a bounded walk of the contended keys or of a queue) takes one step too.
pub const STATS_STEPS_PER_TURN: usize = 4;

/// Connections whose signal pushes are written per turn (responses are always written). A
/// loopback write costs about 12 µs of kernel time, so a turn spends well under a millisecond on
/// pushes, and the pushes that pile up for a subscriber meanwhile leave in one write.
pub const PUSH_WRITES_PER_TURN: usize = 32;

/// Most bytes written to one connection per turn: a reply of megabytes (a large `stats` listing)
/// leaves in pieces over several turns instead of delaying everyone else while the kernel copies
/// it.
pub const WRITE_BYTES_PER_TURN: usize = 256 * 1024;

/// Bytes of signal pushes waiting to be written, over all connections, at which `signal`
/// requests are held back until writes bring it down.
pub const FANOUT_BACKLOG_BYTES: usize = 4 << 20;

/// Slab entries trimmed per turn (popped off the end, or swept above a trimming round's
/// boundary), all slabs of the engine together and again for the server's connections and I/O
/// timers, once a slab is mostly empty after a spike (see `slots.rs`). Each unlinks an entry from
/// a vacant list, at worst two cache misses (0.2 µs): a 1M-entry slab measured at most 0.35 ms
/// per call, and gives its memory back within 250 to 500 turns.
pub const TRIM_BUDGET: usize = 4096;

/// Units of work per turn spent finishing a hash-table resize that inserts and removes left
/// halfway (see `table.rs`): a unit is one entry moved, which rehashes it (SipHash of its key
/// for the key index) and costs about 0.1 µs, so a turn spends about 0.1 ms. The old table of a
/// million keys (5 MB) then goes back within about a thousand turns of the burst that grew it.
pub const RESIZE_BUDGET: usize = 1024;

/// Keys with waiters examined per namespace when ranking the most contended keys
/// (`Engine::contended`). Each costs a couple of cache misses (the resource and its first
/// waiter), so both namespaces together stay within about a millisecond, like a `stats` step.
pub const CONTENDED_SCAN: usize = 1024;

/// HTTP connections accepted by the monitoring endpoint per turn.
pub const HTTP_ACCEPTS_PER_TURN: usize = 16;

/// HTTP requests the monitoring endpoint answers per turn, all its connections together. A
/// `/metrics` answer is a few kilobytes encoded from counters (no per-key series), so this
/// bounds the endpoint's share of a turn.
pub const HTTP_REQUESTS_PER_TURN: usize = 8;
