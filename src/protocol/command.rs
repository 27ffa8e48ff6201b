//! The command table: every command name the protocol knows, the namespace it addresses and the
//! longest arg line it accepts. Framing needs the limits before a request is parsed, and parsing
//! needs the names, so both read this table and neither depends on the other.

use super::{MAX_LINE, MAX_PAYLOAD_LINE, Namespace};

/// A command name on the wire, with the namespace it addresses where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `l` / `sl`.
    Acquire(Namespace),
    /// `r` / `sr`.
    Release(Namespace),
    /// `n` / `sn`.
    Renew(Namespace),
    /// `e` / `se`.
    Enqueue(Namespace),
    /// `w` / `sw`.
    Wait(Namespace),
    /// `stats`.
    Stats,
    /// `ping`.
    Ping,
    /// `auth`.
    Auth,
    /// `listen`.
    Listen,
    /// `unlisten`.
    Unlisten,
    /// `signal`.
    Signal,
    /// `info`: counters, gauges and the most contended keys (an extension; 1.x clients never
    /// send it).
    Info,
    /// `check` / `scheck`: whether a token or fence belongs to a current holder (an extension).
    Check(Namespace),
    /// `q` / `sq`: holders, limit, waiters and the sender's place in the queue (an extension).
    Queue(Namespace),
    /// `evict` / `sevict`: end holders' leases now, on an admin connection (an extension).
    Evict(Namespace),
}

/// How many commands the protocol has.
pub const COMMAND_COUNT: usize = 23;

/// Every command and its exact, case-sensitive name: the one place command names are spelled.
/// Listed in [`Command::index`] order.
pub(super) const COMMANDS: [(&str, Command); COMMAND_COUNT] = [
    ("l", Command::Acquire(Namespace::Lock)),
    ("r", Command::Release(Namespace::Lock)),
    ("n", Command::Renew(Namespace::Lock)),
    ("e", Command::Enqueue(Namespace::Lock)),
    ("w", Command::Wait(Namespace::Lock)),
    ("sl", Command::Acquire(Namespace::Semaphore)),
    ("sr", Command::Release(Namespace::Semaphore)),
    ("sn", Command::Renew(Namespace::Semaphore)),
    ("se", Command::Enqueue(Namespace::Semaphore)),
    ("sw", Command::Wait(Namespace::Semaphore)),
    ("stats", Command::Stats),
    ("ping", Command::Ping),
    ("auth", Command::Auth),
    ("listen", Command::Listen),
    ("unlisten", Command::Unlisten),
    ("signal", Command::Signal),
    ("info", Command::Info),
    ("check", Command::Check(Namespace::Lock)),
    ("scheck", Command::Check(Namespace::Semaphore)),
    ("q", Command::Queue(Namespace::Lock)),
    ("sq", Command::Queue(Namespace::Semaphore)),
    ("evict", Command::Evict(Namespace::Lock)),
    ("sevict", Command::Evict(Namespace::Semaphore)),
];

impl Command {
    /// The command whose name is exactly `name` (no trimming, no case folding).
    ///
    /// A match rather than a search of the command table: it runs twice per request (framing and
    /// parsing), and the compiler turns it into a switch on the length and a few compares. A
    /// test checks it against the table.
    #[inline]
    pub fn from_name(name: &[u8]) -> Option<Command> {
        use Namespace::{Lock, Semaphore};
        Some(match name {
            b"l" => Command::Acquire(Lock),
            b"r" => Command::Release(Lock),
            b"n" => Command::Renew(Lock),
            b"e" => Command::Enqueue(Lock),
            b"w" => Command::Wait(Lock),
            b"sl" => Command::Acquire(Semaphore),
            b"sr" => Command::Release(Semaphore),
            b"sn" => Command::Renew(Semaphore),
            b"se" => Command::Enqueue(Semaphore),
            b"sw" => Command::Wait(Semaphore),
            b"stats" => Command::Stats,
            b"ping" => Command::Ping,
            b"auth" => Command::Auth,
            b"listen" => Command::Listen,
            b"unlisten" => Command::Unlisten,
            b"signal" => Command::Signal,
            b"info" => Command::Info,
            b"check" => Command::Check(Lock),
            b"scheck" => Command::Check(Semaphore),
            b"q" => Command::Queue(Lock),
            b"sq" => Command::Queue(Semaphore),
            b"evict" => Command::Evict(Lock),
            b"sevict" => Command::Evict(Semaphore),
            _ => return None,
        })
    }

    /// The command's place in the command table: a dense index for per-command counters,
    /// below [`COMMAND_COUNT`].
    pub fn index(self) -> usize {
        let ns = |ns: Namespace| match ns {
            Namespace::Lock => 0,
            Namespace::Semaphore => 5,
        };
        match self {
            Command::Acquire(n) => ns(n),
            Command::Release(n) => 1 + ns(n),
            Command::Renew(n) => 2 + ns(n),
            Command::Enqueue(n) => 3 + ns(n),
            Command::Wait(n) => 4 + ns(n),
            Command::Stats => 10,
            Command::Ping => 11,
            Command::Auth => 12,
            Command::Listen => 13,
            Command::Unlisten => 14,
            Command::Signal => 15,
            Command::Info => 16,
            Command::Check(Namespace::Lock) => 17,
            Command::Check(Namespace::Semaphore) => 18,
            Command::Queue(Namespace::Lock) => 19,
            Command::Queue(Namespace::Semaphore) => 20,
            Command::Evict(Namespace::Lock) => 21,
            Command::Evict(Namespace::Semaphore) => 22,
        }
    }

    /// Every command, in index order (see [`Command::index`]).
    pub fn all() -> impl Iterator<Item = Command> {
        COMMANDS.iter().map(|&(_, command)| command)
    }

    /// The command's name as sent on the wire.
    pub fn name(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|&&(_, command)| command == self)
            .map(|&(name, _)| name)
            .expect("COMMANDS lists every command")
    }

    /// The longest arg line this command accepts, CRs included: only the `signal` payload and
    /// the `auth` token may be longer than an ordinary line (spec §2.2).
    pub fn arg_limit(self) -> usize {
        match self {
            Command::Signal | Command::Auth => MAX_PAYLOAD_LINE,
            _ => MAX_LINE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_table_and_names_round_trip() {
        for (i, (name, command)) in COMMANDS.iter().enumerate() {
            assert_eq!(command.index(), i, "{name}");
            assert_eq!(Command::from_name(name.as_bytes()), Some(*command));
            assert_eq!(command.name(), *name);
        }
        assert_eq!(Command::all().count(), COMMAND_COUNT);
    }
}
