//! The few Python `str` methods and `re` character classes that the reference verifiers rely
//! on, reproduced exactly: verdicts hinge on them (`str.strip()` also strips `\x1c`..`\x1f`,
//! `\w` is letters, numbers and `_` but not combining marks, `isupper()` needs a cased letter).

use std::sync::LazyLock;

use regex::Regex;

/// The most backtracking steps one `fancy_regex` search may take: a pathological pattern in a
/// user's kwargs fails the search instead of running for minutes.
const BACKTRACK_LIMIT: usize = 100_000;

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

/// Python's `\w` for one character.
pub fn is_word(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    static NON_ASCII_WORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[\p{L}\p{N}]$").expect("valid class"));
    let mut buffer = [0u8; 4];
    NON_ASCII_WORD.is_match(c.encode_utf8(&mut buffer))
}

/// Python's `\d` (Unicode decimal digits, `Nd`).
pub fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    static ND: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Nd}$").expect("valid class"));
    let mut buffer = [0u8; 4];
    ND.is_match(c.encode_utf8(&mut buffer))
}

/// `str.isdigit()` for one character: decimal digits plus the superscript and subscript
/// digits (Numeric_Type=Digit); the rarer Digit characters (circled numbers) are not listed.
pub fn is_digit(c: char) -> bool {
    is_decimal(c) || matches!(c, '²' | '³' | '¹' | '⁰' | '⁴'..='⁹' | '₀'..='₉')
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

/// `str.isupper()`: no lowercase or titlecase character and at least one uppercase one.
pub fn is_upper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

/// `str.islower()`: no uppercase or titlecase character and at least one lowercase one.
pub fn is_lower(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_uppercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_lowercase();
    }
    cased
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

/// Rewrite a Python `re` pattern for `fancy_regex`: Python's `\w \W \s \S \b \B`, `$` as
/// "end, or before a final newline" (or a line end with `multiline`), `\Z`, and the class
/// characters Rust reads as set operators (`&&`, `--`, `~~`, a nested `[`) taken literally.
pub fn translate(pattern: &str, multiline: bool) -> String {
    let boundary = format!("(?:(?<={WORD})(?!{WORD})|(?<!{WORD})(?={WORD}))");
    let not_boundary = format!("(?:(?<={WORD})(?={WORD})|(?<!{WORD})(?!{WORD}))");
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push_str("\\\\");
                    break;
                };
                match (next, in_class) {
                    ('w', false) => out.push_str(WORD),
                    ('w', true) => out.push_str(r"\p{L}\p{N}_"),
                    ('W', false) => out.push_str(NON_WORD),
                    ('s', false) => out.push_str(SPACE),
                    ('s', true) => out.push_str(r"\s\x1c-\x1f"),
                    ('S', false) => out.push_str(NON_SPACE),
                    ('b', false) => out.push_str(&boundary),
                    ('B', false) => out.push_str(&not_boundary),
                    ('Z', _) => out.push_str(r"\z"),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str(r"\]");
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.peek() == Some(&'-') => out.push_str(r"\-"),
            '$' if !in_class => out.push_str(if multiline { "(?m:$)" } else { r"(?=\n?\z)" }),
            '^' if !in_class && multiline => out.push_str("(?m:^)"),
            _ => out.push(c),
        }
    }
    out
}

/// Compile a Python pattern (`re.IGNORECASE` with `ignore_case`); `None` where Python's syntax
/// has no Rust equivalent or the pattern is invalid.
pub fn compile(pattern: &str, ignore_case: bool, multiline: bool) -> Option<fancy_regex::Regex> {
    let translated = translate(pattern, multiline);
    let full = if ignore_case {
        format!("(?i){translated}")
    } else {
        translated
    };
    fancy_regex::RegexBuilder::new(&full)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .ok()
}

/// Like [`compile`], and where that fails the pattern is taken literally (Python would raise
/// `re.error`; a reward function has to answer something).
pub fn compile_or_literal(pattern: &str, ignore_case: bool, multiline: bool) -> fancy_regex::Regex {
    compile(pattern, ignore_case, multiline).unwrap_or_else(|| {
        let literal = regex::escape(pattern);
        let full = if ignore_case {
            format!("(?i){literal}")
        } else {
            literal
        };
        fancy_regex::Regex::new(&full).expect("an escaped literal is a valid pattern")
    })
}

/// `len(re.findall(...))`: matches counted until the first search that hits the backtrack
/// limit.
pub fn count_matches(regex: &fancy_regex::Regex, text: &str) -> usize {
    regex.find_iter(text).take_while(Result::is_ok).count()
}

/// `re.search(...)` is not None (a search over the backtrack limit counts as no match).
pub fn search(regex: &fancy_regex::Regex, text: &str) -> bool {
    regex.is_match(text).unwrap_or(false)
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

    #[test]
    fn translated_patterns_keep_python_meaning() {
        let re = compile(r"\bcat\b", true, false).unwrap();
        assert!(search(&re, "A CAT.") && !search(&re, "concatenate"));
        let end = compile(r"end$", false, false).unwrap();
        assert!(search(&end, "the end\n") && !search(&end, "the end\nmore"));
        let class = compile(r"[a&&b]", false, false).unwrap();
        assert!(search(&class, "&"));
        assert!(compile("(unclosed", false, false).is_none());
        assert!(search(
            &compile_or_literal("(unclosed", false, false),
            "an (unclosed one"
        ));
    }
}
