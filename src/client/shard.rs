//! The client sharding rule shared by every dflockd client (spec §18): a key lives on server
//! `CRC-32/IEEE(key) mod N`, indexing the server list in the order given, so Rust, Go, Python
//! and TypeScript clients configured with the same list agree on where each key lives.
//!
//! Pure functions only; nothing here knows about connections.

/// CRC-32/IEEE of `bytes`, as zlib's `crc32` computes it (initial value and final XOR
/// `0xFFFFFFFF`).
///
/// ```
/// assert_eq!(dflockd::client::crc32(b"my-key"), 3_605_215_937);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    // crc32fast computes exactly this checksum (reflected polynomial 0xEDB88320), with SIMD where
    // the CPU has it; the spec vectors below pin the result.
    crc32fast::hash(bytes)
}

/// Index of the server that owns `key` in a list of `servers` servers.
///
/// # Panics
///
/// If `servers` is zero: there is no server to pick.
///
/// ```
/// use dflockd::client::shard_index;
/// assert_eq!(shard_index(b"my-key", 3), 2);
/// assert_eq!(shard_index(b"bar", 2), 0);
/// ```
pub fn shard_index(key: &[u8], servers: usize) -> usize {
    assert!(servers > 0, "sharding needs at least one server");
    // u32 -> usize is lossless on every target with 32-bit or wider pointers.
    crc32(key) as usize % servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_spec_vectors() {
        assert_eq!(crc32(b"my-key"), 3_605_215_937);
        assert_eq!(crc32(b"foo"), 2_356_372_769);
        assert_eq!(crc32(b"bar"), 1_996_459_178);
        assert_eq!(crc32(b""), 0);
        // The standard CRC-32 check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn shard_index_matches_the_spec_examples() {
        assert_eq!(shard_index(b"my-key", 3), 2);
        assert_eq!(shard_index(b"my-key", 2), 1);
        assert_eq!(shard_index(b"foo", 3), 2);
        assert_eq!(shard_index(b"bar", 3), 2);
        assert_eq!(shard_index(b"bar", 2), 0);
        assert_eq!(shard_index(b"anything", 1), 0);
    }
}
