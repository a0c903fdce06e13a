//! Word counting as IFEval does it: `RegexpTokenizer(r"\w+")` for `number_words`, and NLTK's
//! `word_tokenize` (Punkt sentences, then the improved Treebank tokenizer of NLTK 3.9+) for
//! `capital_word_frequency`, where splitting "CAN'T" into "CA" and "N'T" changes the count.
//!
//! The Treebank rules are NLTK's regular expressions read with Python's meaning
//! ([`crate::python::translate`]); their lookarounds need `fancy_regex`.

use std::borrow::Cow;
use std::sync::LazyLock;

use fancy_regex::Regex;

use super::punkt;
use crate::python::{is_word, translate};

/// IFEval's `count_words`: runs of `\w` characters.
pub fn count_words(text: &str) -> usize {
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        let word = is_word(c);
        if word && !in_word {
            count += 1;
        }
        in_word = word;
    }
    count
}

/// The regex crate where the pattern allows (fast, no per-match overhead), `fancy_regex`
/// where it has lookarounds.
enum Pattern {
    Plain(regex::Regex),
    Fancy(Regex),
}

struct Rule {
    regex: Pattern,
    replacement: &'static str,
    /// Characters of which every match has one (`None` for none known): a rule is only run
    /// on text holding one of them.
    trigger: Option<CharSet>,
    /// Text the rule cannot match without (lowercase): lookaround patterns run on
    /// `fancy_regex`'s backtracking engine at every position, so they are skipped when it is
    /// absent.
    needle: Option<&'static str>,
}

/// A few characters, any of which a rule's matches need: the ASCII ones as a bit mask, the
/// others listed.
struct CharSet {
    ascii: u128,
    other: Vec<char>,
}

/// The ASCII characters a text holds, as a bit mask, and whether it holds any other: found in
/// one pass and kept until a rule changes the text, so that each rule's trigger test is a mask
/// intersection (testing each character against each rule's list took a quarter of IFEval's
/// word tokenisation).
struct CharsPresent {
    ascii: u128,
    non_ascii: bool,
}

impl CharsPresent {
    fn of(text: &str) -> Self {
        let mut present = CharsPresent {
            ascii: 0,
            non_ascii: false,
        };
        for b in text.bytes() {
            if b < 128 {
                present.ascii |= 1 << b;
            } else {
                present.non_ascii = true;
            }
        }
        present
    }
}

impl CharSet {
    fn new(chars: &str) -> Self {
        let mut set = CharSet {
            ascii: 0,
            other: Vec::new(),
        };
        for c in chars.chars() {
            if c.is_ascii() {
                set.ascii |= 1 << (c as u32);
            } else {
                set.other.push(c);
            }
        }
        set
    }

    /// Whether `text`, which holds `present`, holds one of the characters.
    fn any_in(&self, text: &str, present: &CharsPresent) -> bool {
        self.ascii & present.ascii != 0
            || (present.non_ascii && self.other.iter().any(|&c| text.contains(c)))
    }
}

/// The literal every match of a rule contains, for the rules whose lookarounds make them slow.
fn needle(pattern: &str) -> Option<&'static str> {
    const NEEDLES: [(&str, &str); 10] = [
        ("(can)(not)", "cannot"),
        ("(d)('ye)", "d'ye"),
        ("(gim)(me)", "gimme"),
        ("(gon)(na)", "gonna"),
        ("(got)(ta)", "gotta"),
        ("(lem)(me)", "lemme"),
        ("(more)('n)", "more'n"),
        ("(wan)(na)", "wanna"),
        ("('t)(is)", "'tis"),
        ("('t)(was)", "'twas"),
    ];
    NEEDLES
        .iter()
        .find(|(marker, _)| pattern.contains(marker))
        .map(|&(_, needle)| needle)
}

fn rules(table: &[(&str, &'static str, &'static str)]) -> Vec<Rule> {
    table
        .iter()
        .map(|&(pattern, replacement, trigger)| Rule {
            regex: {
                let translated = translate(pattern, false);
                match regex::Regex::new(&translated) {
                    Ok(plain) => Pattern::Plain(plain),
                    Err(_) => {
                        Pattern::Fancy(Regex::new(&translated).expect("NLTK's patterns are valid"))
                    }
                }
            },
            replacement,
            trigger: (!trigger.is_empty()).then(|| CharSet::new(trigger)),
            needle: needle(pattern),
        })
        .collect()
}

static STARTING_QUOTES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    rules(&[
        ("([«“‘„]|[`]+)", " ${1} ", "«“‘„`"),
        (r#"^""#, "``", "\""),
        ("(``)", " ${1} ", "`"),
        (r#"([ \(\[{<])("|'{2})"#, "${1} `` ", "\"'"),
    ])
});

static PUNCTUATION: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    rules(&[
        (
            r#"([^\.])(\.)([\]\)}>"'»”’ ]*)\s*\z"#,
            "${1} ${2} ${3} ",
            ".",
        ),
        (r"([:,])([^\d])", " ${1} ${2}", ":,"),
        (r"([:,])(\n?)\z", " ${1} ${2}", ":,"),
        (r"\.{2,}", " ${0} ", "."),
        (r"[;@#\x24%&]", " ${0} ", ";@#$%&"),
        (
            r"[\u{2012}-\u{2015}]",
            " ${0} ",
            "\u{2012}\u{2013}\u{2014}\u{2015}",
        ),
        (r#"([^\.])(\.)([\]\)}>"']*)\s*\z"#, "${1} ${2}${3} ", "."),
        (r"[?!]", " ${0} ", "?!"),
        (r"([^'])' ", "${1} ' ", "'"),
        (r"[*]", " ${0} ", "*"),
        (r"[\]\[\(\)\{\}<>]", " ${0} ", "[](){}<>"),
        (r"--", " -- ", "-"),
    ])
});

static ENDING_QUOTES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    rules(&[
        ("([»”’])", " ${1} ", "»”’"),
        ("''", " '' ", "'"),
        ("\"", " '' ", "\""),
        (r"\s+", " ", ""),
        (r"([^' ])('[sS]|'[mM]|'[dD]|') ", "${1} ${2} ", "'"),
        (
            r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ",
            "${1} ${2} ",
            "'",
        ),
        (r"(?i)\b(can)(not)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(d)('ye)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(gim)(me)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(gon)(na)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(got)(ta)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(lem)(me)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(more)('n)\b", " ${1} ${2} ", ""),
        (r"(?i)\b(wan)(na)(?=\s)", " ${1} ${2} ", ""),
        (r"(?i) ('t)(is)\b", " ${1} ${2} ", ""),
        (r"(?i) ('t)(was)\b", " ${1} ${2} ", ""),
    ])
});

fn apply(rules: &[Rule], mut text: String) -> String {
    let mut present = CharsPresent::of(&text);
    let mut lowercase: Option<String> = None;
    for rule in rules {
        if rule
            .trigger
            .as_ref()
            .is_some_and(|trigger| !trigger.any_in(&text, &present))
        {
            continue;
        }
        if let Some(needle) = rule.needle {
            // Contractions only insert spaces, so the first lowercase copy serves them all.
            if !lowercase
                .get_or_insert_with(|| text.to_lowercase())
                .contains(needle)
            {
                continue;
            }
        }
        let replaced = match &rule.regex {
            Pattern::Plain(regex) => regex.replace_all(&text, rule.replacement),
            // A search over fancy_regex's backtrack limit leaves the text as it was.
            Pattern::Fancy(regex) => regex
                .try_replacen(&text, 0, rule.replacement)
                .unwrap_or(Cow::Borrowed(&text)),
        };
        if let Cow::Owned(replaced) = replaced {
            text = replaced;
            present = CharsPresent::of(&text);
        }
    }
    text
}

/// NLTK's `(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)` → `"' "`: an opening single
/// quote before a word (not a contraction like 's or 're) is split from it.
fn split_opening_quotes(text: &str) -> String {
    if !text.contains('\'') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        if c != '\''
            || (i > 0 && is_word(chars[i - 1]))
            || !chars.get(i + 1).is_some_and(|&n| is_word(n))
        {
            continue;
        }
        let contraction = ["re", "ve", "ll", "m", "t", "s", "d", "n"]
            .iter()
            .any(|suffix| {
                let n = suffix.len();
                chars.len() >= i + 1 + n
                    && chars[i + 1..i + 1 + n]
                        .iter()
                        .zip(suffix.chars())
                        .all(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
                    && !chars.get(i + 1 + n).is_some_and(|&next| is_word(next))
            });
        if !contraction {
            out.push(' ');
        }
    }
    out
}

/// `NLTKWordTokenizer().tokenize(sentence)`.
pub fn treebank_tokenize(sentence: &str) -> Vec<String> {
    let text = apply(&STARTING_QUOTES, sentence.to_string());
    let text = split_opening_quotes(&text);
    let text = apply(&PUNCTUATION, text);
    let text = apply(&ENDING_QUOTES, format!(" {text} "));
    crate::python::split_whitespace(&text)
        .map(str::to_string)
        .collect()
}

/// `nltk.word_tokenize(text)`.
pub fn word_tokenize(text: &str) -> Vec<String> {
    punkt::sentences(text)
        .into_iter()
        .flat_map(treebank_tokenize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nltk_word_tokenize_examples() {
        assert_eq!(
            word_tokenize("I CAN'T believe it's THE U.S.A. cannot (OK)"),
            vec![
                "I", "CA", "N'T", "believe", "it", "'s", "THE", "U.S.A.", "can", "not", "(", "OK",
                ")"
            ]
        );
        assert_eq!(count_words("Hello, world! It's 3pm."), 5);
    }
}
