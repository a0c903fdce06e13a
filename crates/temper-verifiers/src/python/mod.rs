//! The few Python `str` methods and `re` character classes that the reference verifiers rely
//! on, reproduced exactly: verdicts hinge on them (`str.strip()` also strips `\x1c`..`\x1f`,
//! `\w` is letters, numbers and `_` but not combining marks, `isupper()` needs a cased letter).

mod pattern;
mod tables;

pub use pattern::{Pattern, compile, compile_or_literal, fixed, translate, word_bounded};

/// Python's `\w` for `str` patterns, as a Rust regex class.
pub const WORD: &str = r"[\p{L}\p{N}_]";
/// Python's `\W`.
pub const NON_WORD: &str = r"[^\p{L}\p{N}_]";
/// Python's `\s` (`str.isspace()`): Unicode White_Space plus the separators `\x1c`..`\x1f`.
pub const SPACE: &str = r"[\s\x1c-\x1f]";
/// Python's `\S`.
pub const NON_SPACE: &str = r"[^\s\x1c-\x1f]";

/// `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn in_table(table: &[(char, char)], c: char) -> bool {
    table
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `\w` for one character (`str.isalnum()` or `_`).
pub fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        in_table(tables::WORD, c)
    }
}

/// Python's `\d` (`str.isdecimal()`).
pub fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_table(tables::DECIMAL, c)
    }
}

/// `str.isdigit()` for one character.
pub fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_table(tables::DIGIT, c)
    }
}

/// `str.isdigit()`: at least one character and all digits.
pub fn str_is_digit(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_digit)
}

/// `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `str.split()` with no argument.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|piece| !piece.is_empty())
}

/// Unicode titlecase letters (general category Lt), which `isupper()`/`islower()` reject.
fn is_titlecase(c: char) -> bool {
    matches!(
        c,
        'ǅ' | 'ǈ' | 'ǋ' | 'ǲ' | 'ᾈ'..='ᾏ' | 'ᾘ'..='ᾟ' | 'ᾨ'..='ᾯ' | 'ᾼ' | 'ῌ' | 'ῼ'
    )
}

/// `str.isupper()` (`upper`) or `str.islower()`: no character of the other case or titlecase,
/// and at least one of the asked case.
fn is_cased(s: &str, upper: bool) -> bool {
    let mut cased = false;
    for c in s.chars() {
        let (wanted, other) = if upper {
            (c.is_uppercase(), c.is_lowercase())
        } else {
            (c.is_lowercase(), c.is_uppercase())
        };
        if other || is_titlecase(c) {
            return false;
        }
        cased |= wanted;
    }
    cased
}

/// `str.isupper()`.
pub fn is_upper(s: &str) -> bool {
    is_cased(s, true)
}

/// `str.islower()`.
pub fn is_lower(s: &str) -> bool {
    is_cased(s, false)
}

/// `char.isupper()` for the first character of a token (Punkt's `first_upper`).
pub fn char_is_upper(c: char) -> bool {
    c.is_uppercase() && !is_titlecase(c)
}

/// `char.islower()`.
pub fn char_is_lower(c: char) -> bool {
    c.is_lowercase() && !is_titlecase(c)
}

/// Python's `len()`: code points.
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// `int(s)` succeeds: optional whitespace, sign, decimal digits with single underscores.
pub fn int_parses(s: &str) -> bool {
    let s = strip(s);
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c == '_' || is_decimal(c))
}

/// `str.splitlines()`: the line boundaries Python recognises, ends dropped.
pub fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().map(|&(_, n)| n) == Some('\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_string_predicates() {
        assert_eq!(strip("\x1c a \u{a0}"), "a");
        assert!(is_upper("HELLO, WORLD 1"));
        assert!(!is_upper("123"));
        assert!(is_lower("hello 1"));
        assert!(!is_lower("ǅ"));
        assert!(is_word('é') && is_word('_') && is_word('٣') && !is_word('\u{301}'));
        assert!(int_parses(" -1_000 ") && !int_parses("1__0") && !int_parses("x"));
        assert_eq!(splitlines("a\r\nb\n\nc"), vec!["a", "b", "", "c"]);
        assert_eq!(
            split_whitespace(" a  b\tc ").collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
    }
}
