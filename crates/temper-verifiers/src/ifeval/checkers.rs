//! The 25 IFEval checkers with the semantics of IFEval's official `instructions.py`
//! (`check_following`), each built from its kwargs once and then run on any number of
//! responses (loose mode runs it on eight variants of one response).
//!
//! Kwargs that IFEval would fill with a random value (a missing or negative count, a missing
//! word) are errors here: a reward has to be reproducible.

use std::sync::LazyLock;

use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use super::{InstructionError, language, punkt, pyjson, words};
use crate::python::{self, Pattern};

/// IFEval's `_COMPARISON_RELATION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    LessThan,
    AtLeast,
}

impl Relation {
    fn holds(self, actual: usize, threshold: i64) -> bool {
        let actual = i64::try_from(actual).unwrap_or(i64::MAX);
        match self {
            Relation::LessThan => actual < threshold,
            Relation::AtLeast => actual >= threshold,
        }
    }
}

/// One instruction, ready to check responses.
#[derive(Debug)]
pub enum Checker {
    KeywordsExistence(Vec<Arc<Pattern>>),
    KeywordFrequency {
        keyword: Arc<Pattern>,
        frequency: i64,
        relation: Relation,
    },
    ForbiddenWords(Vec<Arc<Pattern>>),
    LetterFrequency {
        letter: char,
        frequency: i64,
        relation: Relation,
    },
    ResponseLanguage(String),
    NumberSentences {
        num_sentences: i64,
        relation: Relation,
    },
    NumberParagraphs(i64),
    NumberWords {
        num_words: i64,
        relation: Relation,
    },
    NthParagraphFirstWord {
        num_paragraphs: i64,
        nth_paragraph: usize,
        first_word: String,
    },
    NumberPlaceholders(i64),
    Postscript(Arc<Pattern>),
    NumberBulletLists(i64),
    ConstrainedResponse,
    NumberHighlightedSections(i64),
    MultipleSections {
        splitter: Arc<Pattern>,
        num_sections: i64,
    },
    JsonFormat,
    Title,
    TwoResponses,
    RepeatPrompt(String),
    EndChecker(String),
    Quotation,
    CapitalWordFrequency {
        frequency: i64,
        relation: Relation,
    },
    EnglishCapital,
    EnglishLowercase,
    NoComma,
}

/// IFEval's `_CONSTRAINED_RESPONSE_OPTIONS`.
const CONSTRAINED_RESPONSES: [&str; 3] = [
    "My answer is yes.",
    "My answer is no.",
    "My answer is maybe.",
];

/// Reads the kwargs of one instruction; `null` counts as absent (Hugging Face's IFEval rows
/// list every kwarg of every instruction, most of them null).
struct Kwargs<'a> {
    id: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Kwargs<'a> {
    fn get(&self, name: &'static str) -> Option<&'a Value> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    fn missing(&self, name: &'static str) -> InstructionError {
        InstructionError::MissingKwarg {
            id: self.id.to_string(),
            kwarg: name,
        }
    }

    fn bad(&self, name: &'static str, reason: &str) -> InstructionError {
        InstructionError::BadKwarg {
            id: self.id.to_string(),
            kwarg: name,
            reason: reason.to_string(),
        }
    }

    fn string(&self, name: &'static str) -> Result<&'a str, InstructionError> {
        match self.get(name) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(self.bad(name, "expected a string")),
            None => Err(self.missing(name)),
        }
    }

    /// A non-empty string (IFEval picks a random one for a missing or empty value).
    fn nonempty_string(&self, name: &'static str) -> Result<&'a str, InstructionError> {
        let text = self.string(name)?;
        if text.is_empty() {
            Err(self.bad(name, "must not be empty"))
        } else {
            Ok(text)
        }
    }

    fn strings(&self, name: &'static str) -> Result<Vec<&'a str>, InstructionError> {
        let Some(value) = self.get(name) else {
            return Err(self.missing(name));
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.bad(name, "expected a list of strings"))?;
        if items.is_empty() {
            return Err(self.bad(name, "must not be empty"));
        }
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| self.bad(name, "expected a list of strings"))
            })
            .collect()
    }

    /// An integer (a float with an integral value is accepted, as Python compares them).
    fn integer(&self, name: &'static str) -> Result<i64, InstructionError> {
        let Some(value) = self.get(name) else {
            return Err(self.missing(name));
        };
        let number = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        number.ok_or_else(|| self.bad(name, "expected an integer"))
    }

    /// A count IFEval would replace by a random one when negative.
    fn count(&self, name: &'static str) -> Result<i64, InstructionError> {
        let value = self.integer(name)?;
        if value < 0 {
            Err(self.bad(name, "must not be negative"))
        } else {
            Ok(value)
        }
    }

    /// A pattern built from kwarg `name`, or the error of one too long to compile.
    fn pattern(
        &self,
        name: &'static str,
        pattern: Option<Arc<Pattern>>,
    ) -> Result<Arc<Pattern>, InstructionError> {
        pattern.ok_or_else(|| self.bad(name, "is too long to match as a pattern"))
    }

    fn relation(&self, name: &'static str) -> Result<Relation, InstructionError> {
        match self.string(name)? {
            "less than" => Ok(Relation::LessThan),
            "at least" => Ok(Relation::AtLeast),
            _ => Err(self.bad(name, "must be \"less than\" or \"at least\"")),
        }
    }
}

impl Checker {
    /// Build the checker of instruction `id` from its kwargs.
    pub fn new(id: &str, kwargs: &Map<String, Value>) -> Result<Self, InstructionError> {
        let k = Kwargs { id, map: kwargs };
        let checker = match id {
            "keywords:existence" => Checker::KeywordsExistence(
                k.strings("keywords")?
                    .into_iter()
                    .map(|w| k.pattern("keywords", python::compile_or_literal(w, true, false)))
                    .collect::<Result<_, _>>()?,
            ),
            "keywords:frequency" => Checker::KeywordFrequency {
                keyword: k.pattern(
                    "keyword",
                    python::compile_or_literal(
                        python::strip(k.nonempty_string("keyword")?),
                        true,
                        false,
                    ),
                )?,
                frequency: k.count("frequency")?,
                relation: k.relation("relation")?,
            },
            "keywords:forbidden_words" => Checker::ForbiddenWords(
                k.strings("forbidden_words")?
                    .into_iter()
                    .map(|w| k.pattern("forbidden_words", python::word_bounded(w, true)))
                    .collect::<Result<_, _>>()?,
            ),
            "keywords:letter_frequency" => {
                let letter = k.nonempty_string("letter")?;
                let mut chars = letter.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return Err(k.bad("letter", "must be one character"));
                };
                let lowered: Vec<char> = python::strip(&c.to_string())
                    .to_lowercase()
                    .chars()
                    .collect();
                let [letter] = lowered[..] else {
                    return Err(k.bad("letter", "must be one letter"));
                };
                Checker::LetterFrequency {
                    letter,
                    frequency: k.count("let_frequency")?,
                    relation: k.relation("let_relation")?,
                }
            }
            "language:response_language" => {
                Checker::ResponseLanguage(k.string("language")?.to_string())
            }
            "length_constraints:number_sentences" => Checker::NumberSentences {
                num_sentences: k.count("num_sentences")?,
                relation: k.relation("relation")?,
            },
            "length_constraints:number_paragraphs" => {
                Checker::NumberParagraphs(k.count("num_paragraphs")?)
            }
            "length_constraints:number_words" => Checker::NumberWords {
                num_words: k.count("num_words")?,
                relation: k.relation("relation")?,
            },
            "length_constraints:nth_paragraph_first_word" => {
                let num_paragraphs = k.count("num_paragraphs")?;
                let nth = k.integer("nth_paragraph")?;
                if nth <= 0 || nth > num_paragraphs {
                    return Err(k.bad("nth_paragraph", "must be between 1 and num_paragraphs"));
                }
                Checker::NthParagraphFirstWord {
                    num_paragraphs,
                    nth_paragraph: nth as usize,
                    first_word: k.string("first_word")?.to_lowercase(),
                }
            }
            "detectable_content:number_placeholders" => {
                Checker::NumberPlaceholders(k.count("num_placeholders")?)
            }
            "detectable_content:postscript" => {
                let marker = python::strip(k.string("postscript_marker")?);
                let pattern = match marker {
                    "P.P.S" => r"\s*p\.\s?p\.\s?s.*$".to_string(),
                    "P.S." => r"\s*p\.\s?s\..*$".to_string(),
                    other => format!(r"\s*{}.*$", other.to_lowercase()),
                };
                Checker::Postscript(k.pattern(
                    "postscript_marker",
                    python::compile_or_literal(&pattern, false, true),
                )?)
            }
            "detectable_format:number_bullet_lists" => {
                Checker::NumberBulletLists(k.count("num_bullets")?)
            }
            "detectable_format:constrained_response" => Checker::ConstrainedResponse,
            "detectable_format:number_highlighted_sections" => {
                Checker::NumberHighlightedSections(k.count("num_highlights")?)
            }
            "detectable_format:multiple_sections" => {
                let splitter = python::strip(k.string("section_spliter")?);
                Checker::MultipleSections {
                    splitter: k.pattern(
                        "section_spliter",
                        python::compile_or_literal(
                            &format!(r"\s?{splitter}\s?\d+\s?"),
                            false,
                            false,
                        ),
                    )?,
                    num_sections: k.count("num_sections")?,
                }
            }
            "detectable_format:json_format" => Checker::JsonFormat,
            "detectable_format:title" => Checker::Title,
            "combination:two_responses" => Checker::TwoResponses,
            "combination:repeat_prompt" => {
                let prompt_to_repeat = k.nonempty_string("prompt_to_repeat")?;
                Checker::RepeatPrompt(python::strip(prompt_to_repeat).to_lowercase())
            }
            "startend:end_checker" => Checker::EndChecker(
                python::strip(python::strip(k.string("end_phrase")?)).to_lowercase(),
            ),
            "startend:quotation" => Checker::Quotation,
            "change_case:capital_word_frequency" => Checker::CapitalWordFrequency {
                frequency: k.integer("capital_frequency")?,
                relation: k.relation("capital_relation")?,
            },
            "change_case:english_capital" => Checker::EnglishCapital,
            "change_case:english_lowercase" => Checker::EnglishLowercase,
            "punctuation:no_comma" => Checker::NoComma,
            other => return Err(InstructionError::UnknownInstruction(other.to_string())),
        };
        Ok(checker)
    }

    /// IFEval's `check_following(value)`.
    pub fn check(&self, value: &str) -> bool {
        match self {
            Checker::KeywordsExistence(keywords) => keywords.iter().all(|k| k.search(value)),
            Checker::KeywordFrequency {
                keyword,
                frequency,
                relation,
            } => relation.holds(keyword.count(value), *frequency),
            Checker::ForbiddenWords(words) => !words.iter().any(|w| w.search(value)),
            Checker::LetterFrequency {
                letter,
                frequency,
                relation,
            } => {
                let count = value.to_lowercase().chars().filter(|c| c == letter).count();
                relation.holds(count, *frequency)
            }
            Checker::ResponseLanguage(code) => {
                language::detect(value).is_none_or(|found| found == code)
            }
            Checker::NumberSentences {
                num_sentences,
                relation,
            } => relation.holds(punkt::count_sentences(value), *num_sentences),
            Checker::NumberParagraphs(expected) => number_paragraphs(value, *expected),
            Checker::NumberWords {
                num_words,
                relation,
            } => relation.holds(words::count_words(value), *num_words),
            Checker::NthParagraphFirstWord {
                num_paragraphs,
                nth_paragraph,
                first_word,
            } => nth_paragraph_first_word(value, *num_paragraphs, *nth_paragraph, first_word),
            Checker::NumberPlaceholders(minimum) => count(&PLACEHOLDER, value) as i64 >= *minimum,
            Checker::Postscript(pattern) => pattern.search(&value.to_lowercase()),
            Checker::NumberBulletLists(expected) => {
                (count(&STAR_BULLET, value) + count(&DASH_BULLET, value)) as i64 == *expected
            }
            Checker::ConstrainedResponse => {
                let value = python::strip(value);
                CONSTRAINED_RESPONSES
                    .iter()
                    .any(|option| value.contains(option))
            }
            Checker::NumberHighlightedSections(minimum) => {
                highlighted_sections(value) as i64 >= *minimum
            }
            Checker::MultipleSections {
                splitter,
                num_sections,
            } => splitter.count(value) as i64 >= *num_sections,
            Checker::JsonFormat => json_format(value),
            Checker::Title => TITLE.find_iter(value).any(|m| {
                !python::strip(m.as_str().trim_start_matches('<').trim_end_matches('>')).is_empty()
            }),
            Checker::TwoResponses => two_responses(value),
            Checker::RepeatPrompt(prompt) => python::strip(value)
                .to_lowercase()
                .starts_with(prompt.as_str()),
            Checker::EndChecker(phrase) => python::strip(value)
                .trim_matches('"')
                .to_lowercase()
                .ends_with(phrase.as_str()),
            Checker::Quotation => {
                let value = python::strip(value);
                python::len(value) > 1 && value.starts_with('"') && value.ends_with('"')
            }
            Checker::CapitalWordFrequency {
                frequency,
                relation,
            } => {
                let capital = words::word_tokenize(value)
                    .iter()
                    .filter(|w| python::is_upper(w))
                    .count();
                relation.holds(capital, *frequency)
            }
            Checker::EnglishCapital => {
                python::is_upper(value) && language::detect(value).is_none_or(|l| l == "en")
            }
            Checker::EnglishLowercase => {
                python::is_lower(value) && language::detect(value).is_none_or(|l| l == "en")
            }
            Checker::NoComma => !value.contains(','),
        }
    }
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"\[.*?\]"));
static STAR_BULLET: LazyLock<Regex> =
    LazyLock::new(|| python::fixed(r"(?m)^[\s\x1c-\x1f]*\*[^*].*$"));
static DASH_BULLET: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"(?m)^[\s\x1c-\x1f]*-.*$"));
static HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"\*[^\n*]*\*"));
static DOUBLE_HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"\*\*[^\n*]*\*\*"));
static DIVIDER: LazyLock<Regex> =
    LazyLock::new(|| python::fixed(r"[\s\x1c-\x1f]?\*\*\*[\s\x1c-\x1f]?"));
static TITLE: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"<<[^\n]+>>"));

fn count(regex: &Regex, value: &str) -> usize {
    regex.find_iter(value).count()
}

fn number_paragraphs(value: &str, expected: i64) -> bool {
    let paragraphs: Vec<&str> = DIVIDER.split(value).collect();
    let mut count = paragraphs.len() as i64;
    for (index, paragraph) in paragraphs.iter().enumerate() {
        if python::strip(paragraph).is_empty() {
            if index == 0 || index == paragraphs.len() - 1 {
                count -= 1;
            } else {
                return false;
            }
        }
    }
    count == expected
}

fn nth_paragraph_first_word(value: &str, expected: i64, nth: usize, first_word: &str) -> bool {
    let paragraphs: Vec<&str> = value.split("\n\n").collect();
    let count = paragraphs
        .iter()
        .filter(|p| !python::strip(p).is_empty())
        .count();
    if nth > count {
        return false;
    }
    let paragraph = python::strip(paragraphs[nth - 1]);
    let Some(word) = python::split_whitespace(paragraph).next() else {
        return false;
    };
    let word = python::strip(word)
        .trim_start_matches('\'')
        .trim_start_matches('"');
    let found: String = word
        .chars()
        .take_while(|c| !matches!(c, '.' | ',' | '?' | '!' | '\'' | '"'))
        .flat_map(char::to_lowercase)
        .collect();
    count as i64 == expected && found == first_word
}

fn highlighted_sections(value: &str) -> usize {
    let single = HIGHLIGHT
        .find_iter(value)
        .filter(|m| !python::strip(m.as_str().trim_matches('*')).is_empty())
        .count();
    let double = DOUBLE_HIGHLIGHT
        .find_iter(value)
        .filter(|m| {
            let inner = m.as_str();
            !python::strip(&inner[2..inner.len() - 2]).is_empty()
        })
        .count();
    single + double
}

fn json_format(value: &str) -> bool {
    let mut value = python::strip(value);
    for prefix in ["```json", "```Json", "```JSON", "```"] {
        value = value.strip_prefix(prefix).unwrap_or(value);
    }
    let value = python::strip(value.strip_suffix("```").unwrap_or(value));
    pyjson::python_json_loads_ok(value)
}

fn two_responses(value: &str) -> bool {
    let responses: Vec<&str> = value.split("******").collect();
    let mut valid = Vec::new();
    for (index, response) in responses.iter().enumerate() {
        if python::strip(response).is_empty() {
            if index != 0 && index != responses.len() - 1 {
                return false;
            }
        } else {
            valid.push(*response);
        }
    }
    valid.len() == 2 && python::strip(valid[0]) != python::strip(valid[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_keyword_too_long_to_compile_is_a_kwarg_error() {
        let huge = "x".repeat(600_000);
        let kwargs = json!({"forbidden_words": [huge]});
        let error = Checker::new("keywords:forbidden_words", kwargs.as_object().unwrap()).err();
        assert!(
            matches!(
                &error,
                Some(InstructionError::BadKwarg {
                    kwarg: "forbidden_words",
                    ..
                })
            ),
            "{error:?}"
        );
    }
}
