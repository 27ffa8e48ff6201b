//! A randomized chaos test (spec §8, §9, §11, §13): dozens of clients lock, take semaphore slots,
//! enqueue and wait, renew, release, subscribe and signal at random, disconnect at random (cleanly,
//! with a FIN, with a reset, with a request in flight) and come back. Every reply is checked as it
//! arrives; afterwards the grants the clients saw are checked for mutual exclusion, and the
//! server must have forgotten everything.
//!
//! What an outside observer can assert. The server grants and releases at instants nobody
//! outside sees. A client knows that its grant happened after it sent the request (`asked`) and
//! before the reply arrived (`granted`), and that the server let the hold go only after the
//! client sent its release or closed the connection (`let_go`). Fences increase with every grant,
//! so they give the order in which the server granted. When hold `j` of a key was granted, at
//! most `limit - 1` holds of that key granted before it can still have been held; an earlier hold
//! `i` certainly still was if its client let go no earlier than `j`'s grant arrived
//! (`let_go_i >= granted_j`): the server released `i` after `let_go_i` and granted `j` before
//! `granted_j`. Leases are far longer than the run, so no hold ends any other way. Grants the
//! clients never saw (a request in flight when the client tore its connection down) only leave
//! gaps in the fence sequence.
//!
//! The seed is printed on failure; `CHAOS_SEED=<seed>` replays the same choices (the timing, and
//! so the interleaving, differs from run to run).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Client, TestServer, grant};

/// Concurrent clients.
const CLIENTS: usize = 24;
/// How long they run amok.
const RUN_FOR: Duration = Duration::from_secs(5);
/// Lock keys: few, so that clients contend.
const LOCK_KEYS: &[&str] = &["chaos-a", "chaos-b", "chaos-c"];
/// Semaphore keys, each with [`SEM_LIMIT`] slots.
const SEM_KEYS: &[&str] = &["chaos-pool", "chaos-tank"];
const SEM_LIMIT: usize = 3;
/// Channels signals are published to, and the patterns and groups clients listen with.
const CHANNELS: &[&str] = &["chaos.x", "chaos.y", "chaos.z"];
const PATTERNS: &[&str] = &["chaos.x", "chaos.y", "chaos.*", "chaos.>", ">"];
const GROUPS: &[&str] = &["", "", "workers", "others"];
/// Acquire and wait timeouts, in seconds: mostly try-locks, some short waits.
const TIMEOUTS: &[u64] = &[0, 0, 1];

/// Lock or semaphore namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Ns {
    Lock,
    Sem,
}

impl Ns {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Ns::Lock => LOCK_KEYS,
            Ns::Sem => SEM_KEYS,
        }
    }

    fn limit(self) -> usize {
        match self {
            Ns::Lock => 1,
            Ns::Sem => SEM_LIMIT,
        }
    }

    /// The command in this namespace: `verb` is one of `l r n e w`.
    fn command(self, verb: &str) -> String {
        match self {
            Ns::Lock => verb.to_string(),
            Ns::Sem => format!("s{verb}"),
        }
    }

    /// The arg line of an acquire (`timeout` given) or an enqueue (`timeout` absent).
    fn acquire_arg(self, timeout: Option<u64>, lease: u64) -> String {
        let limit = match self {
            Ns::Lock => String::new(),
            Ns::Sem => format!("{SEM_LIMIT} "),
        };
        match timeout {
            Some(t) => format!("{t} {limit}{lease}"),
            None => format!("{limit}{lease}"),
        }
    }
}

/// splitmix64: small, fast and good enough to drive choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One grant a client saw, and when it let go of it.
#[derive(Clone, Debug)]
struct Hold {
    ns: Ns,
    key: &'static str,
    token: String,
    fence: u64,
    client: usize,
    /// Sent the request that led to the grant.
    asked: Instant,
    /// Received the grant.
    granted: Instant,
    /// Sent the release, or closed the connection.
    let_go: Option<Instant>,
    /// The release was acknowledged (`ok`), so the token is dead for everyone from then on.
    released_by_ack: bool,
}

/// Two-phase state of a connection for one key (spec §9).
#[derive(Clone, Copy, Debug)]
enum TwoPhase {
    /// `queued`: a waiter is in the queue (it may have been granted since).
    Queued { asked: Instant, lease: u64 },
    /// `acquired`: the connection holds `hold` and `w` returns its token.
    Acquired { hold: usize, lease: u64 },
}

/// One connection of a chaos client.
struct Conn {
    client: Client,
    /// Which of the client's connections this is (names it as a publisher).
    number: usize,
    /// Holds (indexes into [`Worker::holds`]) this connection has.
    held: Vec<usize>,
    two_phase: HashMap<(Ns, &'static str), TwoPhase>,
    /// Signals published so far on this connection.
    published: u64,
    /// The newest signal number received from each publisher: a publisher's signals arrive in
    /// publish order (spec §13.6; a connection may get several copies of one).
    newest: HashMap<String, u64>,
}

/// How a connection ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `ping`, half-close, then every remaining line up to EOF is checked.
    Graceful,
    /// Close (FIN) without reading what is left.
    Drop,
    /// Reset (RST).
    Reset,
    /// A blocking request sent, then a close.
    DropInFlight,
    /// A blocking request sent, then a reset.
    ResetInFlight,
}

/// One chaos client: a thread that runs random operations over a series of connections.
struct Worker {
    index: usize,
    rng: Rng,
    addr: SocketAddr,
    conn: Option<Conn>,
    connections: usize,
    holds: Vec<Hold>,
}

impl Worker {
    fn new(index: usize, seed: u64, addr: SocketAddr) -> Worker {
        let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xd134_2543_de82_ef95));
        rng.next();
        Worker {
            index,
            rng,
            addr,
            conn: None,
            connections: 0,
            holds: Vec::new(),
        }
    }

    /// Runs random steps until `deadline`, then leaves; returns every hold it saw and how many
    /// connections it opened.
    fn run(mut self, deadline: Instant) -> (Vec<Hold>, usize) {
        while Instant::now() < deadline {
            self.step();
            std::thread::sleep(Duration::from_micros(self.rng.below(3_000) as u64));
        }
        if self.conn.is_some() && self.rng.below(2) == 0 {
            // Release explicitly; otherwise the close releases.
            while !self.conn().held.is_empty() {
                self.release();
            }
        }
        self.close(Ending::Graceful);
        (self.holds, self.connections)
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..20 => self.acquire(Ns::Lock),
            20..32 => self.acquire(Ns::Sem),
            32..37 => self.enqueue(Ns::Lock),
            37..42 => self.enqueue(Ns::Sem),
            42..52 => self.wait(),
            52..66 => self.release(),
            66..73 => self.renew(),
            73..76 => self.reuse_dead_token(),
            76..78 => self.misuse_two_phase(),
            78..82 => self.listen("listen"),
            82..84 => self.listen("unlisten"),
            84..92 => self.signal(),
            92..96 => assert_eq!(self.request("ping", "_", "").0, "ok"),
            _ => {
                let ending = self.rng.pick(&[
                    Ending::Graceful,
                    Ending::Drop,
                    Ending::Reset,
                    Ending::DropInFlight,
                    Ending::ResetInFlight,
                ]);
                self.close(ending);
            }
        }
    }

    /// The current connection, opened if there is none.
    fn conn(&mut self) -> &mut Conn {
        if self.conn.is_none() {
            self.connections += 1;
            self.conn = Some(Conn {
                client: Client::connect(self.addr),
                number: self.connections,
                held: Vec::new(),
                two_phase: HashMap::new(),
                published: 0,
                newest: HashMap::new(),
            });
        }
        self.conn.as_mut().expect("just opened")
    }

    /// Sends one request and returns its reply (pushes before it are checked and skipped) and
    /// when it arrived.
    fn request(&mut self, cmd: &str, key: &str, arg: &str) -> (String, Instant) {
        let conn = self.conn();
        conn.client.send(cmd, key, arg);
        let reply = conn.reply();
        (reply, Instant::now())
    }

    /// A key of `ns` this connection has no two-phase state for and, for a lock, does not hold
    /// (so that it does not queue behind itself).
    fn free_key(&mut self, ns: Ns) -> Option<&'static str> {
        let candidates: Vec<&'static str> = {
            let conn = self.conn.as_ref();
            ns.keys()
                .iter()
                .copied()
                .filter(|&key| {
                    conn.is_none_or(|c| {
                        !c.two_phase.contains_key(&(ns, key))
                            && (ns == Ns::Sem || !c.held.iter().any(|&h| self.holds[h].key == key))
                    })
                })
                .collect()
        };
        (!candidates.is_empty()).then(|| self.rng.pick(&candidates))
    }

    /// A timeout for a blocking request: only a connection that holds nothing (and has no
    /// enqueued waiter that may hold something, besides the `own` one the request waits for)
    /// may wait, so that holders keep moving and waits end in grants more often than not.
    fn timeout(&mut self, own: usize) -> u64 {
        let holds_nothing = self
            .conn
            .as_ref()
            .is_none_or(|c| c.held.is_empty() && c.two_phase.len() <= own);
        if holds_nothing {
            self.rng.pick(TIMEOUTS)
        } else {
            0
        }
    }

    fn acquire(&mut self, ns: Ns) {
        let Some(key) = self.free_key(ns) else {
            return;
        };
        let timeout = self.timeout(0);
        let lease = 60 + self.rng.below(60) as u64;
        let asked = Instant::now();
        let (reply, arrived) =
            self.request(&ns.command("l"), key, &ns.acquire_arg(Some(timeout), lease));
        if reply == "timeout" {
            return;
        }
        assert!(reply.starts_with("ok "), "acquire {ns:?} {key}: {reply:?}");
        self.record(ns, key, &reply, lease, asked, arrived);
    }

    fn enqueue(&mut self, ns: Ns) {
        let Some(key) = self.free_key(ns) else {
            return;
        };
        let lease = 60 + self.rng.below(60) as u64;
        let asked = Instant::now();
        let (reply, arrived) = self.request(&ns.command("e"), key, &ns.acquire_arg(None, lease));
        let state = if reply == "queued" {
            TwoPhase::Queued { asked, lease }
        } else {
            assert!(
                reply.starts_with("acquired "),
                "enqueue {ns:?} {key}: {reply:?}"
            );
            let hold = self.record(ns, key, &reply, lease, asked, arrived);
            TwoPhase::Acquired { hold, lease }
        };
        self.conn().two_phase.insert((ns, key), state);
    }

    fn wait(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let mut pending: Vec<(Ns, &'static str)> = conn.two_phase.keys().copied().collect();
        if pending.is_empty() {
            return;
        }
        pending.sort();
        let (ns, key) = self.rng.pick(&pending);
        let timeout = self.timeout(1);
        let (reply, arrived) = self.request(&ns.command("w"), key, &timeout.to_string());
        let state = self
            .conn()
            .two_phase
            .remove(&(ns, key))
            .expect("picked from the map");
        match state {
            TwoPhase::Acquired { hold, lease } => {
                let token = &self.holds[hold].token;
                assert_eq!(reply, format!("ok {token} {lease}"), "wait {ns:?} {key}");
            }
            TwoPhase::Queued { .. } if reply == "timeout" => {}
            TwoPhase::Queued { asked, lease } => {
                assert!(reply.starts_with("ok "), "wait {ns:?} {key}: {reply:?}");
                self.record(ns, key, &reply, lease, asked, arrived);
            }
        }
    }

    /// Records the grant `reply` (`ok|acquired <token> <lease>`); returns its index.
    fn record(
        &mut self,
        ns: Ns,
        key: &'static str,
        reply: &str,
        lease: u64,
        asked: Instant,
        granted: Instant,
    ) -> usize {
        let (token, echoed) = grant(reply);
        assert_eq!(echoed, lease, "{ns:?} {key}: lease echoed in {reply:?}");
        let fence = u64::from_str_radix(&token[..16], 16).expect("a hex fence");
        self.holds.push(Hold {
            ns,
            key,
            token,
            fence,
            client: self.index,
            asked,
            granted,
            let_go: None,
            released_by_ack: false,
        });
        let hold = self.holds.len() - 1;
        self.conn().held.push(hold);
        hold
    }

    /// A hold of the current connection, chosen at random.
    fn some_held(&mut self) -> Option<usize> {
        let held = &self.conn.as_ref()?.held;
        if held.is_empty() {
            return None;
        }
        let i = self.rng.below(held.len());
        Some(i)
    }

    fn release(&mut self) {
        let Some(i) = self.some_held() else {
            return;
        };
        let hold = self.conn().held.swap_remove(i);
        let (ns, key, token) = {
            let h = &self.holds[hold];
            (h.ns, h.key, h.token.clone())
        };
        let let_go = Instant::now();
        let (reply, _) = self.request(&ns.command("r"), key, &token);
        assert_eq!(reply, "ok", "release {ns:?} {key} of a held token");
        self.holds[hold].let_go = Some(let_go);
        self.holds[hold].released_by_ack = true;
        // Releasing the token of an `acquired` enqueue also ends that two-phase state (§9).
        let conn = self.conn();
        if let Some(TwoPhase::Acquired { hold: h, .. }) = conn.two_phase.get(&(ns, key)) {
            if *h == hold {
                conn.two_phase.remove(&(ns, key));
            }
        }
    }

    fn renew(&mut self) {
        let Some(i) = self.some_held() else {
            return;
        };
        let hold = self.conn().held[i];
        let (ns, key, token) = {
            let h = &self.holds[hold];
            (h.ns, h.key, h.token.clone())
        };
        let lease = 60 + self.rng.below(60);
        let (reply, _) = self.request(&ns.command("n"), key, &format!("{token} {lease}"));
        assert_eq!(
            reply,
            format!("ok {lease}"),
            "renew {ns:?} {key} of a held token"
        );
    }

    /// Releasing or renewing a token whose release was acknowledged fails, from any connection.
    fn reuse_dead_token(&mut self) {
        let dead: Vec<usize> = (0..self.holds.len())
            .filter(|&h| self.holds[h].released_by_ack)
            .collect();
        if dead.is_empty() {
            return;
        }
        let hold = &self.holds[self.rng.pick(&dead)];
        let (ns, key, token) = (hold.ns, hold.key, hold.token.clone());
        let verb = self.rng.pick(&["r", "n"]);
        let (reply, _) = self.request(&ns.command(verb), key, &token);
        assert_eq!(reply, "error", "{verb} {ns:?} {key} with a released token");
    }

    /// `e` twice, or `w` without `e`.
    fn misuse_two_phase(&mut self) {
        let ns = self.rng.pick(&[Ns::Lock, Ns::Sem]);
        let key = self.rng.pick(ns.keys());
        let enqueued = self
            .conn
            .as_ref()
            .is_some_and(|c| c.two_phase.contains_key(&(ns, key)));
        if enqueued {
            let (reply, _) = self.request(&ns.command("e"), key, &ns.acquire_arg(None, 60));
            assert_eq!(reply, "error_already_enqueued", "{ns:?} {key}");
        } else {
            let (reply, _) = self.request(&ns.command("w"), key, "0");
            assert_eq!(reply, "error_not_enqueued", "{ns:?} {key}");
        }
    }

    /// `listen` or `unlisten` with a random pattern and group.
    fn listen(&mut self, cmd: &str) {
        let pattern = self.rng.pick(PATTERNS);
        let group = self.rng.pick(GROUPS);
        assert_eq!(self.request(cmd, pattern, group).0, "ok", "{cmd} {pattern}");
    }

    fn signal(&mut self) {
        let channel = self.rng.pick(CHANNELS);
        let index = self.index;
        let conn = self.conn();
        conn.published += 1;
        let payload = format!("w{index}.c{}.{}", conn.number, conn.published);
        let (reply, _) = self.request("signal", channel, &payload);
        let count = reply
            .strip_prefix("ok ")
            .and_then(|n| n.parse::<u64>().ok());
        assert!(count.is_some(), "signal: {reply:?}");
    }

    /// Ends the current connection (if any) as `ending` says; its holds end with it.
    fn close(&mut self, ending: Ending) {
        if self.conn.is_none() {
            return;
        }
        if matches!(ending, Ending::DropInFlight | Ending::ResetInFlight) {
            // A request that may be waiting, or granted, when the connection goes.
            let ns = self.rng.pick(&[Ns::Lock, Ns::Sem]);
            let key = self.rng.pick(ns.keys());
            let arg = ns.acquire_arg(Some(1), 60);
            self.conn().client.send(&ns.command("l"), key, &arg);
        }
        let conn = self.conn.take().expect("checked above");
        let let_go = Instant::now();
        for &hold in &conn.held {
            self.holds[hold].let_go = Some(let_go);
        }
        match ending {
            Ending::Graceful => conn.finish(),
            Ending::Drop | Ending::DropInFlight => drop(conn),
            Ending::Reset | Ending::ResetInFlight => conn.client.reset(),
        }
    }
}

impl Conn {
    /// The next line that is not a push; pushes are checked on the way.
    fn reply(&mut self) -> String {
        loop {
            let line = self.client.read_line();
            if !self.check_push(&line) {
                return line;
            }
        }
    }

    /// Whether `line` is a push; if so, checks it names one of the channels and that its
    /// publisher's signals arrive in order.
    fn check_push(&mut self, line: &str) -> bool {
        let Some(push) = line.strip_prefix("sig ") else {
            return false;
        };
        let (channel, payload) = push.split_once(' ').expect("sig <channel> <payload>");
        assert!(CHANNELS.contains(&channel), "push on {channel:?}");
        let (publisher, n) = payload.rsplit_once('.').expect("<publisher>.<n>");
        let n: u64 = n.parse().expect("a signal number");
        let newest = self.newest.entry(publisher.to_string()).or_insert(0);
        assert!(
            n >= *newest,
            "signal {n} from {publisher} after signal {newest}"
        );
        *newest = n;
        true
    }

    /// `ping`, half-close, then exactly one more reply (the `ok`), pushes, and EOF.
    fn finish(mut self) {
        self.client.send("ping", "_", "");
        self.client.shutdown_write();
        let mut replies = Vec::new();
        while let Some(line) = self.client.try_read_line() {
            if !self.check_push(&line) {
                replies.push(line);
            }
        }
        assert_eq!(replies, ["ok"], "the replies after the last request");
    }
}

/// Checks the holds of all clients against each other; see the module documentation.
fn check_holds(holds: &[Hold], epoch: Instant) {
    let at = |t: Instant| t.duration_since(epoch);
    let mut by_fence: Vec<&Hold> = holds.iter().collect();
    by_fence.sort_by_key(|h| h.fence);
    for pair in by_fence.windows(2) {
        assert!(
            pair[0].fence < pair[1].fence,
            "fence {:016x} granted twice: {pair:?}",
            pair[0].fence
        );
    }
    for h in &by_fence {
        assert!(h.let_go.is_some(), "never let go: {h:?}");
    }
    // Fence order is grant order: a grant with a lower fence was asked for before every grant
    // with a higher fence arrived.
    let mut latest_ask: Option<&Hold> = None;
    for h in &by_fence {
        if let Some(earlier) = latest_ask {
            assert!(
                earlier.asked < h.granted,
                "fence {:016x} (client {}) was asked for at {:?}, after fence {:016x} (client {}) \
                 had arrived at {:?}",
                earlier.fence,
                earlier.client,
                at(earlier.asked),
                h.fence,
                h.client,
                at(h.granted)
            );
        }
        if latest_ask.is_none_or(|l| h.asked > l.asked) {
            latest_ask = Some(h);
        }
    }
    // Mutual exclusion, per key in grant order.
    let mut by_key: BTreeMap<(Ns, &str), Vec<&Hold>> = BTreeMap::new();
    for h in &by_fence {
        by_key.entry((h.ns, h.key)).or_default().push(h);
    }
    for ((ns, key), grants) in &by_key {
        for (j, newer) in grants.iter().enumerate() {
            let still_held: Vec<&&Hold> = grants[..j]
                .iter()
                .filter(|older| older.let_go.expect("checked") >= newer.granted)
                .collect();
            assert!(
                still_held.len() < ns.limit(),
                "{ns:?} {key}: fence {:016x} (client {}) arrived at {:?} while {} earlier \
                 grant(s) were certainly still held: {:?}",
                newer.fence,
                newer.client,
                at(newer.granted),
                still_held.len(),
                still_held
                    .iter()
                    .map(|h| (
                        h.fence,
                        h.client,
                        at(h.granted),
                        at(h.let_go.expect("checked"))
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// Waits until the server holds nothing: no locks, slots, waiters, idle entries (collected by a
/// GC pass every second) or signal channels, and only the observer's connection.
fn wait_until_empty(server: &TestServer) {
    let mut observer = server.connect();
    let empty = json!([]);
    let start = Instant::now();
    loop {
        let stats = observer.stats();
        let clean = [
            "locks",
            "semaphores",
            "idle_locks",
            "idle_semaphores",
            "signal_channels",
        ]
        .iter()
        .all(|array| stats[array] == empty);
        if clean && stats["connections"] == 1 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the server still has state after every client left: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn random_clients_never_break_mutual_exclusion_and_leave_nothing_behind() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("CHAOS_SEED is a u64"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    // Captured by the test harness: shown only when the test fails.
    eprintln!("chaos seed {seed} (replay the choices with CHAOS_SEED={seed})");
    let server = TestServer::start(&["--gc-max-idle", "0", "--gc-interval", "1"]);
    let epoch = Instant::now();
    let deadline = epoch + RUN_FOR;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let worker = Worker::new(index, seed, server.addr);
            std::thread::spawn(move || worker.run(deadline))
        })
        .collect();
    let mut holds = Vec::new();
    let mut connections = 0;
    for (index, worker) in workers.into_iter().enumerate() {
        match worker.join() {
            Ok((mine, opened)) => {
                holds.extend(mine);
                connections += opened;
            }
            Err(_) => panic!("client {index} failed (seed {seed}); its panic is printed above"),
        }
    }
    let grants = |ns| holds.iter().filter(|h| h.ns == ns).count();
    let (locks, slots) = (grants(Ns::Lock), grants(Ns::Sem));
    let released = holds.iter().filter(|h| h.released_by_ack).count();
    eprintln!(
        "{locks} lock grants, {slots} slot grants, {released} released by `r`, {connections} \
         connections"
    );
    assert!(
        locks >= 100 && slots >= 100,
        "too little happened in the run (seed {seed})"
    );
    check_holds(&holds, epoch);
    wait_until_empty(&server);
}

/// The checker itself, on made-up histories: it must reject what a broken server could produce.
#[test]
fn the_hold_checker_rejects_overlaps_and_misordered_fences() {
    let epoch = Instant::now();
    let ms = |n: u64| epoch + Duration::from_millis(n);
    let hold = |ns, fence, asked, granted, let_go| Hold {
        ns,
        key: "k",
        token: format!("{fence:016x}{:016x}", 0),
        fence,
        client: 0,
        asked: ms(asked),
        granted: ms(granted),
        let_go: Some(ms(let_go)),
        released_by_ack: true,
    };
    let rejects =
        |holds: Vec<Hold>| std::panic::catch_unwind(|| check_holds(&holds, epoch)).is_err();
    // A lock handed over after its holder let go; then one granted while it was certainly held.
    let handover = vec![hold(Ns::Lock, 1, 0, 1, 5), hold(Ns::Lock, 2, 2, 6, 9)];
    assert!(!rejects(handover.clone()));
    let mut overlap = handover;
    overlap.push(hold(Ns::Lock, 3, 7, 8, 10));
    assert!(rejects(overlap));
    // Three slots of a semaphore at once are fine, a fourth is not.
    let three: Vec<Hold> = (1..=3).map(|f| hold(Ns::Sem, f, 0, f, 20)).collect();
    assert!(!rejects(three.clone()));
    let mut four = three;
    four.push(hold(Ns::Sem, 4, 0, 10, 20));
    assert!(rejects(four));
    // A lower fence asked for after a higher one arrived: fences are not in grant order.
    assert!(rejects(vec![
        hold(Ns::Lock, 2, 0, 1, 2),
        hold(Ns::Sem, 1, 3, 4, 5),
    ]));
    // A fence granted twice, and a hold never let go.
    assert!(rejects(vec![
        hold(Ns::Sem, 1, 0, 1, 2),
        hold(Ns::Sem, 1, 0, 1, 2)
    ]));
    let mut open = hold(Ns::Lock, 1, 0, 1, 2);
    open.let_go = None;
    assert!(rejects(vec![open]));
}
