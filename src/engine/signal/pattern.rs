//! Channel and pattern syntax (spec §13.2): validation, the matcher the index uses, and a
//! reference matcher written for obviousness that tests and fuzz targets compare it with.
//!
//! With lock events on, the `$` rule applies on top (as in MQTT): a pattern whose first token is
//! a wildcard never matches a reserved channel, one whose first token starts with `$`. So `>`
//! and `*.granted.k` see no lock event, while `$lock.>` and `$lock.*.k` do.

use crate::protocol::events::is_reserved_channel;

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

/// Whether the `$` rule keeps the valid `pattern` from matching `channel`: the channel is
/// reserved and the pattern starts with a wildcard token. A valid pattern whose first byte is
/// `*` or `>` has that wildcard as its whole first token, so one byte decides.
#[inline]
pub(super) fn hidden_by_dollar_rule(pattern: &[u8], channel: &[u8]) -> bool {
    is_reserved_channel(channel) && matches!(pattern.first(), Some(b'*' | b'>'))
}

/// Reference matcher under the `$` rule (see the module docs) when `dollar_rule` is set, and
/// [`pattern_matches`] otherwise. Like it, written for obviousness: the index never calls it.
pub fn pattern_matches_with_rule(pattern: &[u8], channel: &[u8], dollar_rule: bool) -> bool {
    let first_pattern_token = tokens(pattern).next().unwrap_or_default();
    let first_channel_token = tokens(channel).next().unwrap_or_default();
    let wildcard_first = first_pattern_token == ANY_TOKEN || first_pattern_token == REST_TOKEN;
    if dollar_rule && wildcard_first && first_channel_token.starts_with(b"$") {
        return false;
    }
    pattern_matches(pattern, channel)
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

    #[test]
    fn the_dollar_rule_hides_reserved_channels_from_wildcard_first_patterns_only() {
        let patterns = [
            ">",
            "*",
            "*.granted.k",
            "*.>",
            "$lock.>",
            "$lock.*.k",
            "$lock.granted.k",
            "a.>",
        ];
        let channels = ["$lock.granted.k", "$lock", "a.$x", "a.b", "$", "x"];
        for pattern in patterns {
            for channel in channels {
                let (p, c) = (pattern.as_bytes(), channel.as_bytes());
                let fast = wildcard_matches(p, c) && !hidden_by_dollar_rule(p, c);
                let literal = classify_pattern(p) == Some(PatternKind::Literal);
                if !literal {
                    assert_eq!(
                        fast,
                        pattern_matches_with_rule(p, c, true),
                        "{pattern} on {channel}"
                    );
                }
                assert_eq!(
                    pattern_matches_with_rule(p, c, false),
                    pattern_matches(p, c)
                );
            }
        }
        assert!(!pattern_matches_with_rule(b">", b"$lock.granted.k", true));
        assert!(!pattern_matches_with_rule(
            b"*.granted.k",
            b"$lock.granted.k",
            true
        ));
        assert!(pattern_matches_with_rule(
            b"$lock.>",
            b"$lock.granted.k",
            true
        ));
        assert!(pattern_matches_with_rule(
            b"$lock.*.k",
            b"$lock.granted.k",
            true
        ));
        assert!(pattern_matches_with_rule(b"a.>", b"a.$x", true));
        assert!(pattern_matches_with_rule(b">", b"$lock.granted.k", false));
    }
}
