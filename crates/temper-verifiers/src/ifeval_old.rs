//! `ifeval_old`: open-instruct's Tülu 3 form of the 25 IFEval checks, a ground truth like
//! `{"func_name": "validate_word_constraint", "N": 50, "quantifier": "at least"}` naming one
//! function of its `if_functions.py`. These are simpler than IFEval's own checkers (words are
//! whitespace-separated, sentences split by a regex, keywords are substrings); each function
//! here does what the one of the same name does there.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::error::VerifyError;
use crate::format::remove_thinking_section;
use crate::ifeval::{language, pyjson};
use crate::python;
use crate::verifier::{Verdict, Verifier};

/// Every `func_name` of `IF_FUNCTIONS_MAP`.
pub const FUNCTION_NAMES: [&str; 25] = [
    "verify_keywords",
    "verify_keyword_frequency",
    "validate_forbidden_words",
    "verify_letter_frequency",
    "validate_response_language",
    "verify_paragraph_count",
    "validate_word_constraint",
    "verify_sentence_constraint",
    "validate_paragraphs",
    "verify_postscript",
    "validate_placeholders",
    "verify_bullet_points",
    "validate_title",
    "validate_choice",
    "validate_highlighted_sections",
    "validate_sections",
    "validate_json_format",
    "validate_repeat_prompt",
    "validate_two_responses",
    "validate_uppercase",
    "validate_lowercase",
    "validate_frequency_capital_words",
    "validate_end",
    "validate_quotation",
    "validate_no_commas",
];

/// The words of `re.findall(r"\b\w+\b", text)`: maximal runs of Python word characters.
fn word_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !python::is_word(c))
        .filter(|run| !run.is_empty())
}

/// `len(re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?|!)\s", text))`: whitespace after
/// `.`, `?` or `!`, except after an abbreviation like "e.g." or "Mr.".
fn regex_sentence_count(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let mut splits = 0;
    for i in 1..chars.len() {
        if !python::is_space(chars[i]) || !matches!(chars[i - 1], '.' | '?' | '!') {
            continue;
        }
        let dotted_abbreviation = i >= 4
            && python::is_word(chars[i - 4])
            && chars[i - 3] == '.'
            && python::is_word(chars[i - 2])
            && chars[i - 1] != '\n';
        let title = i >= 3
            && chars[i - 3].is_ascii_uppercase()
            && chars[i - 2].is_ascii_lowercase()
            && chars[i - 1] == '.';
        if !dotted_abbreviation && !title {
            splits += 1;
        }
    }
    splits + 1
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"\[(.*?)\]"));
static TITLE: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"<<(.*?)>>"));
static HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| python::fixed(r"\*(.*?)\*"));

/// Python's `round()` (half to even) of `n × 0.1`, at least 1: the "around" tolerance.
fn tolerance(n: f64) -> f64 {
    (n * 0.1).round_ties_even().max(1.0)
}

fn quantified(actual: usize, n: f64, quantifier: &str, around: f64) -> bool {
    let actual = actual as f64;
    match quantifier {
        "at least" => actual >= n,
        "at most" => actual <= n,
        "around" => (actual - n).abs() <= around,
        _ => false,
    }
}

/// The arguments of one call, by the Python parameter names.
struct Args<'a> {
    func: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    fn bad(&self, reason: String) -> VerifyError {
        VerifyError::BadGroundTruth {
            verifier: "ifeval_old",
            reason: format!("{}: {reason}", self.func),
        }
    }

    fn value(&self, name: &str) -> Result<&'a Value, VerifyError> {
        self.map
            .get(name)
            .ok_or_else(|| self.bad(format!("missing argument `{name}`")))
    }

    fn string(&self, name: &str) -> Result<&'a str, VerifyError> {
        self.value(name)?
            .as_str()
            .ok_or_else(|| self.bad(format!("`{name}` must be a string")))
    }

    fn number(&self, name: &str) -> Result<f64, VerifyError> {
        self.value(name)?
            .as_f64()
            .ok_or_else(|| self.bad(format!("`{name}` must be a number")))
    }

    fn strings(&self, name: &str) -> Result<Vec<&'a str>, VerifyError> {
        let list = self
            .value(name)?
            .as_array()
            .ok_or_else(|| self.bad(format!("`{name}` must be a list")))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.bad(format!("`{name}` must hold strings")))
            })
            .collect()
    }

    /// Refuse arguments the Python function does not take (it would raise `TypeError`).
    fn only(&self, names: &[&str]) -> Result<(), VerifyError> {
        match self.map.keys().find(|key| !names.contains(&key.as_str())) {
            Some(key) => Err(self.bad(format!("unexpected argument `{key}`"))),
            None => Ok(()),
        }
    }
}

/// Run `func` of `if_functions.py` on `text` with `args` (None-valued arguments dropped).
pub fn call(func: &str, text: &str, args: &Map<String, Value>) -> Result<bool, VerifyError> {
    let a = Args { func, map: args };
    let lower = || text.to_lowercase();
    let result = match func {
        "verify_keywords" => {
            a.only(&["keyword_list"])?;
            let text = lower();
            a.strings("keyword_list")?
                .iter()
                .all(|k| text.contains(&k.to_lowercase()))
        }
        "verify_keyword_frequency" => {
            a.only(&["word", "N"])?;
            let keyword = a.string("word")?.to_lowercase();
            let n = a.number("N")?;
            let text = lower();
            let count = word_runs(&text).filter(|word| *word == keyword).count();
            count as f64 == n
        }
        "validate_forbidden_words" => {
            a.only(&["forbidden_words"])?;
            let text = lower();
            !a.strings("forbidden_words")?
                .iter()
                .any(|w| text.contains(&w.to_lowercase()))
        }
        "verify_letter_frequency" => {
            a.only(&["letter", "N"])?;
            let letter = a.string("letter")?;
            if python::len(letter) != 1 {
                return Err(a.bad("letter must be a single character".to_string()));
            }
            text.matches(letter).count() as f64 == a.number("N")?
        }
        "validate_response_language" => {
            a.only(&["language"])?;
            // The reference raises on text without letters; such a response fails here.
            language::detect(text) == Some(a.string("language")?)
        }
        "verify_paragraph_count" => {
            a.only(&["N"])?;
            let lines: Vec<&str> = python::splitlines(text)
                .into_iter()
                .map(python::strip)
                .collect();
            let cleaned = lines.join("\n");
            let paragraphs: Vec<&str> = python::strip(&cleaned).split("* * *").collect();
            let all_nonblank = paragraphs.iter().all(|p| !python::strip(p).is_empty());
            all_nonblank && paragraphs.len() as f64 == a.number("N")?
        }
        "validate_word_constraint" => {
            a.only(&["N", "quantifier"])?;
            let n = a.number("N")?;
            quantified(
                python::split_whitespace(text).count(),
                n,
                a.string("quantifier")?,
                tolerance(n),
            )
        }
        "verify_sentence_constraint" => {
            a.only(&["N", "quantifier"])?;
            let sentences = regex_sentence_count(text);
            quantified(sentences, a.number("N")?, a.string("quantifier")?, 1.0)
        }
        "validate_paragraphs" => {
            a.only(&["N", "first_word", "i"])?;
            let paragraphs: Vec<&str> = text.split("\n\n").collect();
            if paragraphs.len() as f64 != a.number("N")? {
                return Ok(false);
            }
            let i = a.number("i")?;
            if i.fract() != 0.0 {
                return Err(a.bad("`i` must be an integer".to_string()));
            }
            // Python indexing: paragraphs[i - 1], negative from the end.
            let index = i as i64 - 1;
            let index = if index < 0 {
                index + paragraphs.len() as i64
            } else {
                index
            };
            let Some(paragraph) = usize::try_from(index).ok().and_then(|k| paragraphs.get(k))
            else {
                return Err(
                    a.bad("`i` is out of range (the reference raises IndexError)".to_string())
                );
            };
            python::strip(paragraph).starts_with(a.string("first_word")?)
        }
        "verify_postscript" => {
            a.only(&["postscript_marker"])?;
            let marker = a.string("postscript_marker")?;
            match text.find(marker) {
                Some(at) => python::len(python::strip(&text[at..])) > python::len(marker),
                None => false,
            }
        }
        "validate_placeholders" => {
            a.only(&["N"])?;
            PLACEHOLDER.find_iter(text).count() as f64 >= a.number("N")?
        }
        "verify_bullet_points" => {
            a.only(&["N"])?;
            let bullets = text
                .split('\n')
                .filter(|line| python::strip(line).starts_with(['*', '-']))
                .count();
            bullets as f64 == a.number("N")?
        }
        "validate_title" => {
            a.only(&[])?;
            TITLE.is_match(text)
        }
        "validate_choice" => {
            a.only(&["options"])?;
            a.strings("options")?
                .iter()
                .any(|option| text.contains(option))
        }
        "validate_highlighted_sections" => {
            a.only(&["N"])?;
            HIGHLIGHT.find_iter(text).count() as f64 >= a.number("N")?
        }
        "validate_sections" => {
            a.only(&["N", "section_splitter"])?;
            let splitter = regex::escape(a.string("section_splitter")?);
            let pattern =
                python::compile_or_literal(&format!(r"\s?{splitter}\s?\d+\s?"), true, false)
                    .ok_or_else(|| a.bad("section_splitter is too long to match".into()))?;
            pattern.count(text) as f64 >= a.number("N")?
        }
        "validate_json_format" => {
            a.only(&[])?;
            pyjson::python_json_loads_ok(text)
        }
        "validate_repeat_prompt" => {
            a.only(&["original_prompt"])?;
            text.starts_with(a.string("original_prompt")?)
        }
        "validate_two_responses" => {
            a.only(&[])?;
            text.matches("******").count() == 1 && {
                let (first, second) = text.split_once("******").expect("one separator");
                python::strip(first) != python::strip(second)
            }
        }
        "validate_uppercase" => {
            a.only(&[])?;
            text == text.to_uppercase()
        }
        "validate_lowercase" => {
            a.only(&[])?;
            text == text.to_lowercase()
        }
        "validate_frequency_capital_words" => {
            a.only(&["N", "quantifier"])?;
            let n = a.number("N")?;
            quantified(
                word_runs(text)
                    .filter(|w| w.bytes().all(|b| b.is_ascii_uppercase()))
                    .count(),
                n,
                a.string("quantifier")?,
                tolerance(n),
            )
        }
        "validate_end" => {
            a.only(&["end_phrase"])?;
            text.ends_with(a.string("end_phrase")?)
        }
        "validate_quotation" => {
            a.only(&[])?;
            text.starts_with('"') && text.ends_with('"')
        }
        "validate_no_commas" => {
            a.only(&[])?;
            !text.contains(',')
        }
        other => {
            return Err(VerifyError::BadGroundTruth {
                verifier: "ifeval_old",
                reason: format!("unknown func_name `{other}`"),
            });
        }
    };
    Ok(result)
}

/// open-instruct's `IFEvalVerifierOld`.
pub struct IfEvalOld;

impl Verifier for IfEvalOld {
    fn name(&self) -> &'static str {
        "ifeval_old"
    }

    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError> {
        let bad = |reason: &str| VerifyError::BadGroundTruth {
            verifier: "ifeval_old",
            reason: reason.to_string(),
        };
        let constraint = match ground_truth {
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| bad(&format!("is not JSON: {e}")))?,
            other => other.clone(),
        };
        let Value::Object(mut constraint) = constraint else {
            return Err(bad("must be an object with func_name"));
        };
        let Some(func) = constraint.remove("func_name") else {
            return Ok(Verdict::new(0.0, json!({"missing": "func_name"})));
        };
        let func = func
            .as_str()
            .ok_or_else(|| bad("func_name must be a string"))?
            .to_string();
        // With no other keys the reference checks the raw response, thinking section included.
        let text = if constraint.is_empty() {
            Cow::Borrowed(response)
        } else {
            Cow::Owned(remove_thinking_section(response))
        };
        constraint.retain(|_, v| !v.is_null());
        let followed = call(&func, &text, &constraint)?;
        Ok(Verdict::pass_fail(followed, json!({"func_name": func})))
    }
}
