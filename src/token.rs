//! Lease tokens that double as fencing tokens, and the sources they are drawn from.
//!
//! A token is 32 lower-case hex digits: the first 16 are a 64-bit *fence* that strictly increases
//! with every grant the server makes, the last 16 are random. dflockd 1.x clients treat the whole
//! string as opaque, so they see nothing new; a resource server that wants to reject stale holders
//! compares fences (see the README, "Fencing tokens").
//!
//! The fence never goes backwards, not even across restarts: [`FenceCounter::from_wall_clock`]
//! seeds it with the wall-clock time in nanoseconds, and since the server cannot grant more than one
//! lock per nanosecond, every fence it issues stays below the wall-clock reading at the moment of
//! issue, hence below the seed of any later run (as long as the system clock is not set back).
//!
//! The random half comes from the OS CSPRNG in batches ([`RandomSource::os`]), so a grant costs no
//! system call; fuzz targets and tests use [`RandomSource::seeded`] for reproducible runs.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Number of characters of a token on the wire.
pub const TOKEN_LEN: usize = 32;

/// A lease token: a fence (strictly increasing per grant) and a random part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// Strictly increasing across grants (and restarts); the first 16 hex digits.
    pub fence: u64,
    /// Unpredictable bits that make the token a bearer credential; the last 16 hex digits.
    pub random: u64,
}

impl LeaseToken {
    /// Parses the wire form: exactly 32 lower-case hex digits. Anything else (upper case included,
    /// since tokens match case-sensitively) is `None` and can match no lease.
    #[inline(always)]
    pub fn parse(text: &[u8]) -> Option<LeaseToken> {
        if text.len() != TOKEN_LEN {
            return None;
        }
        let (fence, random) = text.split_at(16);
        Some(LeaseToken {
            fence: parse_hex_u64(fence)?,
            random: parse_hex_u64(random)?,
        })
    }

    /// Writes the 32-character wire form into `out`.
    pub fn encode(&self, out: &mut [u8; TOKEN_LEN]) {
        write_hex_u64(self.fence, &mut out[..16]);
        write_hex_u64(self.random, &mut out[16..]);
    }
}

/// Parses a fence on its own, as `check` / `scheck` accept it: exactly 16 lower-case hex digits
/// (the first half of a token).
pub fn parse_fence(text: &[u8]) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    parse_hex_u64(text)
}

/// Writes the 16-digit wire form of a fence into `out`.
pub fn encode_fence(fence: u64, out: &mut [u8; 16]) {
    write_hex_u64(fence, out);
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.fence, self.random)
    }
}

/// The digits of the wire form, lower case only.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Value of each byte as a hex digit; [`NOT_HEX`] for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Marks a byte that is not a digit; no digit value has this bit.
const NOT_HEX: u8 = 0x80;

/// The two digits of each byte value, so encoding takes one lookup per byte, not per digit.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Table-driven and branch-free (one check at the end): tokens are parsed on every release and
/// renew.
fn parse_hex_u64(digits: &[u8]) -> Option<u64> {
    let (mut value, mut flags) = (0u64, 0u8);
    for &b in digits {
        let v = HEX_VALUE[usize::from(b)];
        flags |= v;
        value = value << 4 | u64::from(v & 0xf);
    }
    (flags & NOT_HEX == 0).then_some(value)
}

/// Writes the 16 digits of `value` into `out` (16 bytes), most significant first.
fn write_hex_u64(value: u64, out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(value.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
}

/// The fence half of the tokens: a counter that only moves forward.
#[derive(Debug, Clone)]
pub struct FenceCounter {
    last: u64,
}

impl FenceCounter {
    /// Starts after `last`: the first fence issued is `last + 1`.
    pub fn starting_after(last: u64) -> FenceCounter {
        FenceCounter { last }
    }

    /// Seeds the counter with the current wall-clock time in nanoseconds since the Unix epoch, so
    /// that fences keep increasing across restarts (see the module documentation).
    pub fn from_wall_clock() -> FenceCounter {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
            .unwrap_or(0);
        FenceCounter::starting_after(nanos)
    }

    /// The next fence. Saturates at `u64::MAX` (reached only after 584 years of nanosecond grants).
    pub fn next_fence(&mut self) -> u64 {
        self.last = self.last.saturating_add(1);
        self.last
    }
}

/// How many random words are fetched from the OS per refill.
const RANDOM_BATCH: usize = 256;

/// Where the random half of tokens comes from.
pub struct RandomSource {
    kind: RandomKind,
}

enum RandomKind {
    /// Words from the OS CSPRNG, fetched `RANDOM_BATCH` at a time; `next` indexes the unused part.
    Os {
        batch: Box<[u64; RANDOM_BATCH]>,
        next: usize,
    },
    /// A deterministic generator (SplitMix64) for tests and fuzzing. Not secret.
    Seeded { state: u64 },
}

impl RandomSource {
    /// The OS CSPRNG, buffered so that most tokens cost no system call.
    pub fn os() -> RandomSource {
        RandomSource {
            kind: RandomKind::Os {
                batch: Box::new([0; RANDOM_BATCH]),
                next: RANDOM_BATCH,
            },
        }
    }

    /// A reproducible, non-secret sequence for tests and fuzz targets.
    pub fn seeded(seed: u64) -> RandomSource {
        RandomSource {
            kind: RandomKind::Seeded { state: seed },
        }
    }

    /// The next random word.
    pub fn next_u64(&mut self) -> u64 {
        match &mut self.kind {
            RandomKind::Os { batch, next } => {
                if *next == RANDOM_BATCH {
                    refill_from_os(batch);
                    *next = 0;
                }
                let word = batch[*next];
                *next += 1;
                word
            }
            RandomKind::Seeded { state } => {
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
        }
    }
}

impl fmt::Debug for RandomSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print buffered random words: they become tokens.
        let kind = match self.kind {
            RandomKind::Os { .. } => "os",
            RandomKind::Seeded { .. } => "seeded",
        };
        f.debug_struct("RandomSource").field("kind", &kind).finish()
    }
}

fn refill_from_os(batch: &mut [u64; RANDOM_BATCH]) {
    let mut bytes = [0u8; RANDOM_BATCH * 8];
    // The OS CSPRNG failing is not something a lock server can work around: handing out
    // predictable tokens would be worse than stopping.
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    for (word, chunk) in batch.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        *word = u64::from_le_bytes(le);
    }
}

/// Issues tokens: a fence counter plus a random source.
#[derive(Debug)]
pub struct TokenIssuer {
    fences: FenceCounter,
    random: RandomSource,
}

impl TokenIssuer {
    /// Combines a fence counter and a random source.
    pub fn new(fences: FenceCounter, random: RandomSource) -> TokenIssuer {
        TokenIssuer { fences, random }
    }

    /// The issuer a server uses: wall-clock-seeded fences and OS randomness.
    pub fn for_server() -> TokenIssuer {
        TokenIssuer::new(FenceCounter::from_wall_clock(), RandomSource::os())
    }

    /// A reproducible issuer for tests and fuzzing: fences start at 1.
    pub fn deterministic(seed: u64) -> TokenIssuer {
        TokenIssuer::new(FenceCounter::starting_after(0), RandomSource::seeded(seed))
    }

    /// A fresh token whose fence is greater than every fence issued before.
    pub fn issue(&mut self) -> LeaseToken {
        LeaseToken {
            fence: self.fences.next_fence(),
            random: self.random.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wire_form() {
        let token = LeaseToken {
            fence: 0x0123_4567_89ab_cdef,
            random: 0xfedc_ba98_7654_3210,
        };
        let mut text = [0u8; TOKEN_LEN];
        token.encode(&mut text);
        assert_eq!(&text, b"0123456789abcdeffedcba9876543210");
        assert_eq!(token.to_string().as_bytes(), &text);
        assert_eq!(LeaseToken::parse(&text), Some(token));
    }

    #[test]
    fn rejects_anything_but_32_lower_case_hex_digits() {
        assert_eq!(LeaseToken::parse(b"0123456789ABCDEFfedcba9876543210"), None);
        assert_eq!(LeaseToken::parse(b"0123456789abcdeffedcba987654321"), None);
        assert_eq!(
            LeaseToken::parse(b"0123456789abcdeffedcba98765432100"),
            None
        );
        assert_eq!(LeaseToken::parse(b"0123456789abcdeffedcba98765432 0"), None);
        assert_eq!(LeaseToken::parse(b""), None);
    }

    #[test]
    fn every_byte_outside_the_digits_is_rejected_in_every_position() {
        let valid = *b"0123456789abcdeffedcba9876543210";
        for byte in 0..=u8::MAX {
            let is_digit = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            for position in [0, 7, 15, 16, 31] {
                let mut text = valid;
                text[position] = byte;
                assert_eq!(
                    LeaseToken::parse(&text).is_some(),
                    is_digit,
                    "byte {byte:#04x} at {position}"
                );
            }
        }
    }

    #[test]
    fn fences_strictly_increase_and_os_randomness_varies() {
        let mut issuer = TokenIssuer::for_server();
        let first = issuer.issue();
        let tokens: Vec<LeaseToken> = (0..3 * RANDOM_BATCH).map(|_| issuer.issue()).collect();
        assert!(tokens.windows(2).all(|w| w[0].fence < w[1].fence));
        assert!(first.fence < tokens[0].fence);
        let distinct: std::collections::HashSet<u64> = tokens.iter().map(|t| t.random).collect();
        assert_eq!(distinct.len(), tokens.len(), "random halves repeat");
    }

    #[test]
    fn a_later_wall_clock_seed_is_above_every_fence_of_an_earlier_run() {
        let mut earlier = TokenIssuer::for_server();
        let last = (0..1000).map(|_| earlier.issue().fence).max().unwrap();
        let mut later = TokenIssuer::for_server();
        assert!(later.issue().fence > last);
    }

    #[test]
    fn seeded_sources_repeat() {
        let mut a = TokenIssuer::deterministic(7);
        let mut b = TokenIssuer::deterministic(7);
        for _ in 0..10 {
            assert_eq!(a.issue(), b.issue());
        }
    }
}
