//! Channel and pattern syntax (spec §13.2): validation, the matcher the index uses, and a
//! reference matcher written for obviousness that tests and fuzz targets compare it with.

/// Separates the tokens of channels and patterns.
pub(super) const SEPARATOR: u8 = b'.';
/// The pattern token that matches any one token.
pub(super) const ANY_TOKEN: &[u8] = b"*";
/// The final pattern token that matches one or more remaining tokens.
pub(super) const REST_TOKEN: &[u8] = b">";

/// The two kinds of valid pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// No wildcard: matches only the channel spelled the same way.
    Literal,
    /// Contains `*` tokens and/or a final `>`.
    Wildcard,
}

/// Validates a `listen`/`unlisten` pattern (spec §13.2) and says whether it is literal.
///
/// `None` means invalid: a token containing `*` must be exactly `*`, a token containing `>` must be exactly
/// `>`, and `>` may only be the last token. Empty tokens (`a..b`, `a.`) are legal. The caller has already
/// checked the key rules (non-empty, no white space).
pub fn classify_pattern(pattern: &[u8]) -> Option<PatternKind> {
    let mut kind = PatternKind::Literal;
    let mut tokens = tokens(pattern).peekable();
    while let Some(token) = tokens.next() {
        if !token.iter().any(|&b| b == b'*' || b == b'>') {
            continue;
        }
        let is_last = tokens.peek().is_none();
        if token == ANY_TOKEN || (token == REST_TOKEN && is_last) {
            kind = PatternKind::Wildcard;
        } else {
            return None;
        }
    }
    Some(kind)
}

/// Whether the valid wildcard `pattern` matches `channel`, in one pass over both and without
/// allocating: what the index runs for every candidate pattern of a publish.
pub(super) fn wildcard_matches(pattern: &[u8], channel: &[u8]) -> bool {
    let mut wanted = tokens(pattern);
    let mut offered = tokens(channel);
    loop {
        match (wanted.next(), offered.next()) {
            // Validation put `>` last; it needs one channel token at its position, and has it.
            (Some(REST_TOKEN), Some(_)) => return true,
            (Some(token), Some(given)) if token == ANY_TOKEN || token == given => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Reference matcher, written for obviousness rather than speed (it allocates): does the valid `pattern`
/// match `channel`? The index never calls it; tests and the differential fuzz target compare the index
/// against it.
///
/// Token by token: a literal token must be equal, `*` matches any single (possibly empty) token, `>`
/// matches when at least one channel token remains at its position; otherwise the token counts must be
/// equal.
pub fn pattern_matches(pattern: &[u8], channel: &[u8]) -> bool {
    let pattern: Vec<&[u8]> = tokens(pattern).collect();
    let channel: Vec<&[u8]> = tokens(channel).collect();
    for (position, &token) in pattern.iter().enumerate() {
        if token == REST_TOKEN {
            return channel.len() > position;
        }
        match channel.get(position) {
            Some(&offered) if token == ANY_TOKEN || token == offered => {}
            _ => return false,
        }
    }
    pattern.len() == channel.len()
}

/// The dot-separated tokens of a channel or pattern; always at least one (possibly empty).
pub(super) fn tokens(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&byte| byte == SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_matcher_agrees_with_the_reference() {
        let patterns = [
            "*", ">", "a.*", "a.>", "*.b", "*.*", "..>", "*..", "a.*.c.>", "*.>",
        ];
        let channels = [
            "a", "b", "", ".", "..", "a.b", "a.b.c", "a.b.c.d", "x.b", "a..c.d",
        ];
        for pattern in patterns {
            for channel in channels {
                assert_eq!(
                    wildcard_matches(pattern.as_bytes(), channel.as_bytes()),
                    pattern_matches(pattern.as_bytes(), channel.as_bytes()),
                    "{pattern} on {channel}"
                );
            }
        }
    }
}
