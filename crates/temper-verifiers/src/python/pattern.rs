//! Python `re` patterns from user kwargs (IFEval keywords, markers, section splitters), read
//! with Python's meaning and compiled once: a process-wide cache keeps each compiled pattern,
//! as Python's `re` module does, because RL rollouts check the same kwargs again and again.
//! Patterns without lookarounds run on the `regex` crate (linear time); the rest on
//! `fancy_regex` with a backtracking limit.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::{NON_SPACE, NON_WORD, SPACE, WORD, is_word};

/// The most backtracking steps one `fancy_regex` search may take: a pathological pattern in a
/// user's kwargs fails the search instead of running for minutes.
const BACKTRACK_LIMIT: usize = 100_000;
/// Compiled patterns kept; the cache starts over when it is full.
const CACHE_SIZE: usize = 4_096;

/// A compiled Python pattern.
#[derive(Debug)]
pub enum Pattern {
    Plain(regex::Regex),
    Fancy(fancy_regex::Regex),
    /// A literal between `\b`s: candidates from `regex`, word boundaries checked by hand.
    WordBounded(regex::Regex),
}

impl Pattern {
    /// `re.search(...)` is not None (a search over the backtracking limit counts as none).
    pub fn search(&self, text: &str) -> bool {
        match self {
            Pattern::Plain(regex) => regex.is_match(text),
            Pattern::Fancy(regex) => regex.is_match(text).unwrap_or(false),
            Pattern::WordBounded(regex) => {
                let boundary = |at: usize| {
                    let before = text[..at].chars().next_back().is_some_and(is_word);
                    let after = text[at..].chars().next().is_some_and(is_word);
                    before != after
                };
                let mut start = 0;
                while let Some(found) = regex.find_at(text, start) {
                    if boundary(found.start()) && boundary(found.end()) {
                        return true;
                    }
                    let step = text[found.start()..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    start = found.start() + step;
                    if start > text.len() {
                        break;
                    }
                }
                false
            }
        }
    }

    /// `len(re.findall(...))` (the fancy engine counts until a search over its limit).
    pub fn count(&self, text: &str) -> usize {
        match self {
            Pattern::Plain(regex) | Pattern::WordBounded(regex) => regex.find_iter(text).count(),
            Pattern::Fancy(regex) => regex.find_iter(text).take_while(Result::is_ok).count(),
        }
    }
}

type Key = (String, bool, bool, bool);

static CACHE: LazyLock<Mutex<HashMap<Key, Arc<Pattern>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn cached(key: Key, build: impl FnOnce() -> Option<Pattern>) -> Option<Arc<Pattern>> {
    if let Some(found) = CACHE.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
        return Some(found);
    }
    let pattern = Arc::new(build()?);
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&pattern));
    }
    Some(pattern)
}

/// A pattern written in this crate (not from user input), for `LazyLock` statics.
pub fn fixed(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("a fixed pattern")
}

/// No regex metacharacter: the pattern matches itself.
fn is_literal(pattern: &str) -> bool {
    !pattern.contains([
        '\\', '.', '^', '$', '*', '+', '?', '{', '}', '[', ']', '|', '(', ')',
    ])
}

fn with_flags(pattern: &str, ignore_case: bool) -> String {
    if ignore_case {
        format!("(?i){pattern}")
    } else {
        pattern.to_string()
    }
}

/// Compile a Python pattern (`re.IGNORECASE` with `ignore_case`, `re.MULTILINE` with
/// `multiline`); `None` where it is invalid or uses syntax Rust's engines lack.
pub fn compile(pattern: &str, ignore_case: bool, multiline: bool) -> Option<Arc<Pattern>> {
    cached((pattern.to_string(), ignore_case, multiline, false), || {
        let translated = with_flags(&translate(pattern, multiline), ignore_case);
        if let Ok(plain) = regex::Regex::new(&translated) {
            return Some(Pattern::Plain(plain));
        }
        fancy_regex::RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .ok()
            .map(Pattern::Fancy)
    })
}

/// Like [`compile`], and where that fails the pattern is taken literally (Python would raise
/// `re.error`; a reward function has to answer something). `None` only for a literal beyond
/// the regex engine's size limit (megabytes of kwarg).
pub fn compile_or_literal(
    pattern: &str,
    ignore_case: bool,
    multiline: bool,
) -> Option<Arc<Pattern>> {
    compile(pattern, ignore_case, multiline).or_else(|| {
        regex::Regex::new(&with_flags(&regex::escape(pattern), ignore_case))
            .ok()
            .map(|literal| Arc::new(Pattern::Plain(literal)))
    })
}

/// `r"\b" + word + r"\b"` (IFEval's forbidden words): a literal word is matched by `regex`
/// with the boundaries checked by hand; any other pattern goes through [`compile_or_literal`].
/// `None` as there.
pub fn word_bounded(word: &str, ignore_case: bool) -> Option<Arc<Pattern>> {
    if !is_literal(word) || word.is_empty() {
        return compile_or_literal(&format!(r"\b{word}\b"), ignore_case, false);
    }
    cached((word.to_string(), ignore_case, false, true), || {
        regex::Regex::new(&with_flags(&regex::escape(word), ignore_case))
            .ok()
            .map(Pattern::WordBounded)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translated_patterns_keep_python_meaning() {
        let re = compile(r"\bcat\b", true, false).unwrap();
        assert!(re.search("A CAT.") && !re.search("concatenate"));
        assert!(matches!(*re, Pattern::Fancy(_)));
        let end = compile(r"end$", false, false).unwrap();
        assert!(end.search("the end\n") && !end.search("the end\nmore"));
        let class = compile(r"[a&&b]", false, false).unwrap();
        assert!(class.search("&"));
        assert!(compile("(unclosed", false, false).is_none());
        let literal = compile_or_literal("(unclosed", false, false).unwrap();
        assert!(literal.search("an (unclosed one"));
        let word = word_bounded("cat", true).unwrap();
        assert!(word.search("a Cat!") && word.search("concat cat") && !word.search("concatenate"));
        assert!(matches!(*word, Pattern::WordBounded(_)));
        assert_eq!(compile("a", false, false).unwrap().count("banana"), 3);
    }

    #[test]
    fn a_literal_past_the_size_limit_is_refused_not_a_panic() {
        let huge = "x".repeat(600_000);
        assert!(compile_or_literal(&huge, true, false).is_none());
        assert!(word_bounded(&huge, true).is_none());
    }
}
