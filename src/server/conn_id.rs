//! Mapping between connection ids and mio tokens.
//!
//! A [`ClientId`] packs the connection's slab index (low 32 bits) and a generation (high 32 bits)
//! into a `mio::Token`. Slab reuses freed indices at once, so an event, timer or grant still in
//! flight for a closed connection could otherwise land on its successor; the generation makes
//! such strays detectable. Generation 0 never names a connection, which leaves the small tokens
//! free for the listener, the signal pipe and the waker.

use mio::Token;

use crate::engine::ClientId;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("dflockd packs a 32-bit index and a 32-bit generation into a mio Token (usize)");

/// The first listening socket's token; listener `i` has `LISTENERS + i`.
const LISTENERS: usize = 0x1_0000;
/// Most listening sockets the tokens leave room for.
const MAX_LISTENERS: usize = 0x1_0000;
/// SIGINT / SIGTERM delivery.
pub const SIGNALS: Token = Token(1);
/// Wake-ups from a [`super::ShutdownHandle`] on another thread.
pub const WAKER: Token = Token(2);
/// The monitoring endpoint's listener (its connections have tokens of their own, see
/// `monitor.rs`).
pub const MONITOR: Token = Token(3);

/// The token listener `index` is registered under.
pub fn listener_token(index: usize) -> Token {
    assert!(index < MAX_LISTENERS, "too many listening sockets");
    Token(LISTENERS + index)
}

/// The listener a token names, if it names one.
pub fn listener_of(token: Token) -> Option<usize> {
    token
        .0
        .checked_sub(LISTENERS)
        .filter(|index| *index < MAX_LISTENERS)
}

/// The token a connection is registered under.
pub fn token_of(id: ClientId) -> Token {
    debug_assert_ne!(id.generation, 0, "generation 0 is reserved");
    Token(((id.generation as usize) << 32) | id.index as usize)
}

/// The connection a token names, or `None` for the reserved tokens.
pub fn id_of(token: Token) -> Option<ClientId> {
    let generation = (token.0 >> 32) as u32;
    (generation != 0).then_some(ClientId {
        index: token.0 as u32,
        generation,
    })
}

/// Hands out generations: increments per accepted connection, wraps, and skips 0.
#[derive(Debug, Default)]
pub struct Generations {
    last: u32,
}

impl Generations {
    /// The next generation, never 0.
    pub fn next_generation(&mut self) -> u32 {
        self.last = self.last.wrapping_add(1).max(1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reserved_tokens_name_no_connection() {
        let id = ClientId {
            index: 7,
            generation: u32::MAX,
        };
        assert_eq!(id_of(token_of(id)), Some(id));
        for reserved in [
            listener_token(0),
            listener_token(9),
            SIGNALS,
            WAKER,
            MONITOR,
        ] {
            assert_eq!(id_of(reserved), None);
        }
        assert_eq!(listener_of(listener_token(9)), Some(9));
        assert_eq!(listener_of(SIGNALS), None);
        assert_eq!(listener_of(token_of(id)), None);
    }

    #[test]
    fn generations_skip_zero_when_wrapping() {
        let mut generations = Generations { last: u32::MAX - 1 };
        assert_eq!(generations.next_generation(), u32::MAX);
        assert_eq!(generations.next_generation(), 1);
    }
}
