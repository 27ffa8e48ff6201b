//! [`Wildcards`]: finds the wildcard patterns that match a channel by looking only at plausible
//! ones, in resumable steps, with a cache of recent answers.
//!
//! Each wildcard pattern is filed once, under one *anchor*: a (position, literal token) pair it
//! requires, or in the unanchored list when it has no literal token (only `*` and `>`: at most
//! two such patterns per token count). A channel can only match patterns filed under one of its
//! own (position, token) pairs, so a publish looks up one bucket per channel token and checks
//! each pattern found there with one pass over its bytes. Among a pattern's literal tokens the
//! anchor is the one whose bucket is smallest when the pattern arrives, which spreads
//! `orders.<id>.>`-style families over many buckets.
//!
//! The work of a publish is O(channel tokens + candidates x pattern bytes): a byte comparison per
//! candidate, where a token trie paid a hash lookup per token of every live path. Patterns are
//! stored once, in the index's pattern table; a bucket costs one key and four bytes per pattern.
//! The scan is cut into units ([`Wildcards::scan`]) so one publish can span loop turns, and a
//! small cache answers a repeated channel without scanning while no wildcard pattern has come
//! or gone.

use std::collections::HashMap;

use crate::protocol::events::is_reserved_channel;
use crate::table::IncrementalMap;

use super::pattern::{ANY_TOKEN, REST_TOKEN, hidden_by_dollar_rule, tokens, wildcard_matches};

/// Channels whose scan results are cached; the cache is emptied when full.
const CACHE_ENTRIES: usize = 256;
/// Scan results longer than this are not cached (they would pin memory for one channel).
const CACHE_MAX_MATCHES: usize = 1024;
/// `Anchor::position` of an unanchored pattern.
const UNANCHORED: u32 = u32::MAX;

/// Where a wildcard pattern is filed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Anchor {
    /// Token position of the literal it is filed under, or [`UNANCHORED`].
    position: u32,
    /// Its place in that bucket (or in the unanchored list).
    at: u32,
}

/// Where a scan stands: channel tokens before `position` are done, and so are the first `at`
/// patterns of the current list (the unanchored list comes first, at position `u32::MAX`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ScanCursor {
    position: u32,
    /// Byte offset of the channel token at `position`.
    offset: usize,
    at: usize,
}

impl Default for ScanCursor {
    fn default() -> ScanCursor {
        ScanCursor {
            position: UNANCHORED,
            offset: 0,
            at: 0,
        }
    }
}

/// A cached scan result, valid while `generation` is current.
#[derive(Debug)]
struct Cached {
    generation: u64,
    matched: Box<[u32]>,
}

/// The wildcard patterns of a [`SignalIndex`](super::SignalIndex), by anchor.
#[derive(Debug, Default)]
pub(super) struct Wildcards {
    /// Pattern slots by [`bucket_key`].
    buckets: IncrementalMap<Box<[u8]>, Vec<u32>>,
    /// Patterns without a literal token.
    unanchored: Vec<u32>,
    /// One past the highest position any pattern is anchored at: later channel tokens need no
    /// lookup.
    depth: u32,
    /// Changes whenever a pattern is filed or removed, which makes every cached result stale.
    generation: u64,
    cache: HashMap<Box<[u8]>, Cached>,
    /// A [`bucket_key`] being built.
    key: Vec<u8>,
}

impl Wildcards {
    /// Files the wildcard `pattern`, stored in `slot` of the pattern table.
    pub(super) fn insert(&mut self, pattern: &[u8], slot: u32) -> Anchor {
        self.generation += 1;
        let mut best: Option<(usize, u32)> = None;
        for (position, token) in tokens(pattern).enumerate() {
            if token == ANY_TOKEN || token == REST_TOKEN {
                continue;
            }
            let position = to_u32(position);
            let size = self
                .buckets
                .get(bucket_key(&mut self.key, position, token))
                .map_or(0, Vec::len);
            // Ties go to the later token: a pattern's later tokens tend to be the specific ones.
            if best.is_none_or(|(smallest, _)| size <= smallest) {
                best = Some((size, position));
            }
        }
        let Some((_, position)) = best else {
            self.unanchored.push(slot);
            return Anchor {
                position: UNANCHORED,
                at: to_u32(self.unanchored.len() - 1),
            };
        };
        self.depth = self.depth.max(position + 1);
        let token = token_at(pattern, position);
        let key = bucket_key(&mut self.key, position, token);
        let at = match self.buckets.get_mut(key) {
            Some(bucket) => {
                bucket.push(slot);
                bucket.len() - 1
            }
            None => {
                self.buckets.insert(key.into(), vec![slot]);
                0
            }
        };
        Anchor {
            position,
            at: to_u32(at),
        }
    }

    /// Unfiles `pattern`, filed at `anchor`. Returns the slot of the pattern that took its place
    /// in the list, whose anchor's `at` the caller must set to `anchor.at` with [`Anchor::moved_to`].
    pub(super) fn remove(&mut self, pattern: &[u8], anchor: Anchor) -> Option<u32> {
        self.generation += 1;
        let at = anchor.at as usize;
        if anchor.position == UNANCHORED {
            self.unanchored.swap_remove(at);
            return self.unanchored.get(at).copied();
        }
        let token = token_at(pattern, anchor.position);
        let key = bucket_key(&mut self.key, anchor.position, token);
        let bucket = self
            .buckets
            .get_mut(key)
            .expect("a filed pattern has its bucket");
        bucket.swap_remove(at);
        let moved = bucket.get(at).copied();
        if bucket.is_empty() {
            self.buckets.remove(key);
        }
        moved
    }

    /// The cached patterns matching `channel`, if a scan since the last change found them.
    pub(super) fn cached(&self, channel: &[u8]) -> Option<&[u32]> {
        self.cache
            .get(channel)
            .filter(|cached| cached.generation == self.generation)
            .map(|cached| &*cached.matched)
    }

    /// Remembers a complete scan of `channel`.
    pub(super) fn remember(&mut self, channel: &[u8], matched: &[u32]) {
        if matched.len() > CACHE_MAX_MATCHES {
            return;
        }
        if self.cache.len() >= CACHE_ENTRIES && !self.cache.contains_key(channel) {
            self.cache.clear();
        }
        let cached = Cached {
            generation: self.generation,
            matched: matched.into(),
        };
        self.cache.insert(channel.into(), cached);
    }

    /// Continues the scan of `channel` at `cursor`, appending the slot of each matching pattern to
    /// `matched` (each once) and spending a unit per lookup and [`candidate_cost`] per candidate. Returns `true` when the scan is complete, `false` when `units` ran out first.
    /// With `dollar_rule`, patterns starting with a wildcard do not match a reserved channel
    /// (see `pattern.rs`): the unanchored list, all such patterns, is skipped whole.
    /// The patterns must not change between the calls of one scan.
    pub(super) fn scan<'p>(
        &mut self,
        channel: &[u8],
        dollar_rule: bool,
        cursor: &mut ScanCursor,
        pattern_of: impl Fn(u32) -> &'p [u8],
        matched: &mut Vec<u32>,
        units: &mut u64,
    ) -> bool {
        let Wildcards {
            buckets,
            unanchored,
            depth,
            key,
            ..
        } = self;
        let hide_wildcard_first = dollar_rule && is_reserved_channel(channel);
        loop {
            let list: &[u32] = if cursor.position == UNANCHORED {
                if hide_wildcard_first { &[] } else { unanchored }
            } else if cursor.position >= *depth || cursor.offset > channel.len() {
                return true;
            } else {
                let token = next_token(channel, cursor.offset);
                match buckets.get(bucket_key(key, cursor.position, token)) {
                    Some(bucket) => bucket,
                    None => &[],
                }
            };
            while let Some(&slot) = list.get(cursor.at) {
                if *units == 0 {
                    return false;
                }
                let pattern = pattern_of(slot);
                spend(units, candidate_cost(pattern));
                cursor.at += 1;
                let hidden = hide_wildcard_first && hidden_by_dollar_rule(pattern, channel);
                if !hidden && wildcard_matches(pattern, channel) {
                    matched.push(slot);
                }
            }
            spend(units, 1);
            advance(channel, cursor);
        }
    }

    /// True when no pattern is filed (the leak check). The cache may still hold stale entries.
    pub(super) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.unanchored.is_empty()
    }

    /// Number of patterns filed (invariant checks).
    pub(super) fn len(&self) -> usize {
        let filed: usize = self.buckets.iter().map(|(_, bucket)| bucket.len()).sum();
        self.unanchored.len() + filed
    }

    /// The slot filed at `anchor` under `pattern` (invariant checks).
    pub(super) fn slot_at(&self, pattern: &[u8], anchor: Anchor) -> Option<u32> {
        let list = if anchor.position == UNANCHORED {
            &self.unanchored
        } else {
            let mut key = Vec::new();
            let token = token_at(pattern, anchor.position);
            self.buckets
                .get(bucket_key(&mut key, anchor.position, token))?
        };
        list.get(anchor.at as usize).copied()
    }
}

impl Anchor {
    /// This anchor after the pattern moved into the place `vacated` in the same list.
    pub(super) fn moved_to(self, vacated: Anchor) -> Anchor {
        debug_assert_eq!(self.position, vacated.position);
        Anchor {
            position: self.position,
            at: vacated.at,
        }
    }
}

/// Moves `cursor` to the start of the next channel token's bucket (from the unanchored list to
/// position 0).
fn advance(channel: &[u8], cursor: &mut ScanCursor) {
    if cursor.position == UNANCHORED {
        cursor.position = 0;
        cursor.offset = 0;
    } else {
        cursor.offset += next_token(channel, cursor.offset).len() + 1;
        cursor.position += 1;
    }
    cursor.at = 0;
}

/// The channel token starting at byte `offset`.
fn next_token(channel: &[u8], offset: usize) -> &[u8] {
    let rest = &channel[offset..];
    let end = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
    &rest[..end]
}

/// The token at `position` of a pattern known to have one there.
fn token_at(pattern: &[u8], position: u32) -> &[u8] {
    tokens(pattern)
        .nth(position as usize)
        .expect("an anchor names one of its pattern's tokens")
}

/// The bucket key of (`position`, `token`), built in `buf`.
fn bucket_key<'a>(buf: &'a mut Vec<u8>, position: u32, token: &[u8]) -> &'a [u8] {
    buf.clear();
    buf.extend_from_slice(&position.to_le_bytes());
    buf.extend_from_slice(token);
    buf
}

/// Units a candidate costs: checking it reads its bytes (about 5 ns each), and a unit is about
/// 60 ns of work.
fn candidate_cost(pattern: &[u8]) -> u64 {
    1 + pattern.len() as u64 / 12
}

fn spend(units: &mut u64, cost: u64) {
    *units = units.saturating_sub(cost);
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("wildcard tables stay below 2^32 entries")
}
