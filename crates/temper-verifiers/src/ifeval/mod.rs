//! IFEval: the 25 verifiable instructions of Zhou et al. (2023), with the official code's
//! semantics, strict and loose.
//!
//! - [`checkers`]: one [`Checker`] per instruction id, built from IFEval's kwargs.
//! - [`punkt`] and [`words`]: NLTK's sentence and word tokenisation, as IFEval counts.
//! - [`language`]: langdetect's answers from `whatlang`.
//! - [`report`]: the official report's prompt- and instruction-level accuracies.
//! - [`IfEvalVerifier`]: open-instruct's `ifeval` reward (mean of the instructions followed).

pub mod checkers;
pub mod language;
pub mod literal;
pub mod punkt;
pub mod pyjson;
pub mod report;
pub mod words;

use std::borrow::Cow;

use serde_json::{Map, Value, json};

pub use crate::error::InstructionError;
use crate::error::VerifyError;
use crate::format::remove_thinking_section;
use crate::python;
use crate::verifier::{Verdict, Verifier};
pub use checkers::{Checker, Relation};

/// Every instruction id IFEval defines, in its registry's order.
pub const INSTRUCTION_IDS: [&str; 25] = [
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "startend:quotation",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
];

/// The instructions of one IFEval prompt, built once.
#[derive(Debug)]
pub struct Instructions {
    ids: Vec<String>,
    checkers: Vec<Checker>,
}

/// Which instructions a response follows, strict and loose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Following {
    pub strict: Vec<bool>,
    pub loose: Vec<bool>,
}

impl Instructions {
    /// From an `instruction_id_list` and its `kwargs` (one object, or null, per id).
    pub fn new(ids: &[String], kwargs: &[Value]) -> Result<Self, InstructionError> {
        if ids.len() != kwargs.len() {
            return Err(InstructionError::LengthMismatch {
                ids: ids.len(),
                kwargs: kwargs.len(),
            });
        }
        let empty = Map::new();
        let checkers = ids
            .iter()
            .zip(kwargs)
            .map(|(id, kwargs)| match kwargs {
                Value::Object(map) => Checker::new(id, map),
                Value::Null => Checker::new(id, &empty),
                _ => Err(InstructionError::BadKwarg {
                    id: id.clone(),
                    kwarg: "kwargs",
                    reason: "must be an object".to_string(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Instructions {
            ids: ids.to_vec(),
            checkers,
        })
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// `test_instruction_following_strict`: each instruction on the response as it is (an
    /// all-whitespace response follows nothing).
    pub fn strict(&self, response: &str) -> Vec<bool> {
        let nonblank = !python::strip(response).is_empty();
        self.checkers
            .iter()
            .map(|c| nonblank && c.check(response))
            .collect()
    }

    /// `test_instruction_following_loose`: followed if any of eight variants follows it
    /// (first line, last line or both removed, asterisks removed).
    pub fn loose(&self, response: &str) -> Vec<bool> {
        self.following(response).loose
    }

    /// Strict and loose together. The first loose variant is the response itself, so its
    /// verdicts are the strict ones: each checker runs once on the response and then only on
    /// the other variants, and only where the response does not already follow it (the other
    /// variants are only made then).
    pub fn following(&self, response: &str) -> Following {
        let strict = self.strict(response);
        let mut others: Option<Vec<Cow<'_, str>>> = None;
        let mut loose = strict.clone();
        for (checker, followed) in self.checkers.iter().zip(&mut loose) {
            if !*followed {
                let others = others.get_or_insert_with(|| other_loose_variants(response));
                *followed = others.iter().any(|v| checker.check(v));
            }
        }
        Following { strict, loose }
    }
}

/// The loose variants besides the response itself, each once, blank ones dropped: a checker
/// is a function of the text, and a blank variant follows nothing.
fn other_loose_variants(response: &str) -> Vec<Cow<'_, str>> {
    let mut others: Vec<Cow<'_, str>> = Vec::with_capacity(7);
    for variant in loose_variant_texts(response).into_iter().skip(1) {
        if variant != response && !python::strip(&variant).is_empty() && !others.contains(&variant)
        {
            others.push(variant);
        }
    }
    others
}

/// The eight responses of IFEval's loose mode, in its order.
pub fn loose_variants(response: &str) -> [String; 8] {
    loose_variant_texts(response).map(Cow::into_owned)
}

/// [`loose_variants`], borrowed from the response where a variant is a slice of it: lines
/// split at `\n` and joined back with `\n` are the text between the first and the last.
fn loose_variant_texts(response: &str) -> [Cow<'_, str>; 8] {
    let first_newline = response.find('\n');
    let last_newline = response.rfind('\n');
    let remove_first = python::strip(first_newline.map_or("", |i| &response[i + 1..]));
    let remove_last = python::strip(last_newline.map_or("", |i| &response[..i]));
    let remove_both = python::strip(match (first_newline, last_newline) {
        (Some(first), Some(last)) if first < last => &response[first + 1..last],
        _ => "",
    });
    [
        Cow::Borrowed(response),
        without_stars(response),
        Cow::Borrowed(remove_first),
        Cow::Borrowed(remove_last),
        Cow::Borrowed(remove_both),
        without_stars(remove_first),
        without_stars(remove_last),
        without_stars(remove_both),
    ]
}

fn without_stars(text: &str) -> Cow<'_, str> {
    if text.contains('*') {
        Cow::Owned(text.replace('*', ""))
    } else {
        Cow::Borrowed(text)
    }
}

/// open-instruct's `ifeval` reward: the ground truth holds `instruction_id` and `kwargs`
/// (a Python repr of a one-element list of dicts, a JSON string, or the object itself); the
/// score is the fraction of instructions followed (strict) by the response with its thinking
/// section removed.
pub struct IfEvalVerifier;

impl IfEvalVerifier {
    /// `ast.literal_eval(label)[0]`, then `json.loads` if that is a string; an already
    /// parsed list or object is taken as the reference would see it after `literal_eval`.
    fn constraint(ground_truth: &Value) -> Result<Value, VerifyError> {
        let bad = |reason: &str| VerifyError::BadGroundTruth {
            verifier: "ifeval",
            reason: reason.to_string(),
        };
        let parsed = match ground_truth {
            Value::String(text) => {
                literal::literal_eval(text).ok_or_else(|| bad("is not a Python literal"))?
            }
            other => other.clone(),
        };
        let first = match parsed {
            Value::Array(items) => items
                .into_iter()
                .next()
                .ok_or_else(|| bad("is an empty list"))?,
            object @ Value::Object(_) => object,
            _ => return Err(bad("must be a list holding instruction_id and kwargs")),
        };
        match first {
            Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| bad(&format!("holds a string that is not JSON: {e}"))),
            other => Ok(other),
        }
    }
}

impl IfEvalVerifier {
    /// The instructions an open-instruct `ifeval` row's ground truth names, as the reward reads
    /// them (its ids and kwargs zipped: extra kwargs are ignored, missing ones end the list),
    /// for IFEval's official report over the same rows.
    pub fn instructions(ground_truth: &Value) -> Result<(Vec<String>, Instructions), VerifyError> {
        let (mut ids, instructions) = Self::read(ground_truth)?;
        ids.truncate(instructions.checkers.len());
        Ok((ids, instructions))
    }

    /// The ground truth's ids (all of them) and its zipped instructions.
    fn read(ground_truth: &Value) -> Result<(Vec<String>, Instructions), VerifyError> {
        let constraint = Self::constraint(ground_truth)?;
        let bad = |reason: &str| VerifyError::BadGroundTruth {
            verifier: "ifeval",
            reason: reason.to_string(),
        };
        let ids: Vec<String> = constraint
            .get("instruction_id")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("lacks an instruction_id list"))?
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("has a non-string instruction id"))
            })
            .collect::<Result<_, _>>()?;
        let kwargs = constraint
            .get("kwargs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("lacks a kwargs list"))?;
        // open-instruct zips the two lists: extra kwargs are ignored, missing ones end the list.
        let n = ids.len().min(kwargs.len());
        let instructions = Instructions::new(&ids[..n], &kwargs[..n])?;
        Ok((ids, instructions))
    }
}

impl Verifier for IfEvalVerifier {
    fn name(&self) -> &'static str {
        "ifeval"
    }

    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError> {
        let (ids, instructions) = Self::read(ground_truth)?;
        let n = instructions.checkers.len();
        let answer = remove_thinking_section(response);
        if response.is_empty() || answer.is_empty() || n == 0 {
            return Ok(Verdict::new(
                0.0,
                json!({"instruction_id": ids, "followed": [], "empty": true}),
            ));
        }
        let nonblank = !python::strip(response).is_empty();
        let followed: Vec<bool> = instructions
            .checkers
            .iter()
            .map(|c| nonblank && c.check(&answer))
            .collect();
        let score = followed.iter().filter(|&&f| f).count() as f64 / n as f64;
        Ok(Verdict::new(
            score,
            json!({"instruction_id": &ids[..n], "followed": followed}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_variants_in_ifeval_order() {
        let v = loose_variants("Sure!\n*Hello* world\nBye");
        assert_eq!(v[0], "Sure!\n*Hello* world\nBye");
        assert_eq!(v[1], "Sure!\nHello world\nBye");
        assert_eq!(v[2], "*Hello* world\nBye");
        assert_eq!(v[3], "Sure!\n*Hello* world");
        assert_eq!(v[4], "*Hello* world");
        assert_eq!(v[5], "Hello world\nBye");
        assert_eq!(v[7], "Hello world");
        assert_eq!(
            loose_variants("One line *only*"),
            ["One line *only*", "One line only", "", "", "", "", "", ""]
        );
        assert_eq!(
            loose_variants(" a\n\n*b* \n"),
            [
                " a\n\n*b* \n",
                " a\n\nb \n",
                "*b*",
                "a\n\n*b*",
                "*b*",
                "b",
                "a\n\nb",
                "b"
            ]
        );
    }

    proptest::proptest! {
        /// The slices are IFEval's split, join and strip, spelled out as there.
        #[test]
        fn loose_variants_equal_split_and_join(response in "[ab* \n\t\u{1c}é]{0,16}") {
            let lines: Vec<&str> = response.split('\n').collect();
            let join = |lines: &[&str]| python::strip(&lines.join("\n")).to_string();
            let n = lines.len();
            let remove_first = join(&lines[1..]);
            let remove_last = join(&lines[..n - 1]);
            let remove_both = if n >= 2 { join(&lines[1..n - 1]) } else { String::new() };
            let no_stars = |s: &str| s.replace('*', "");
            let expected = [
                response.clone(),
                no_stars(&response),
                remove_first.clone(),
                remove_last.clone(),
                remove_both.clone(),
                no_stars(&remove_first),
                no_stars(&remove_last),
                no_stars(&remove_both),
            ];
            proptest::prop_assert_eq!(loose_variants(&response), expected);
        }
    }
}
