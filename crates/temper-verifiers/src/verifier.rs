//! The `Verifier` trait: a response and a ground truth in, a score in [0, 1] with details out.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use crate::error::VerifyError;

/// What a verifier says of one response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// In [0, 1]: 1 for a correct answer or every instruction followed.
    pub score: f64,
    /// What was extracted and compared, per verifier (JSON so the CLI can print it as is).
    pub details: Value,
}

impl Verdict {
    pub fn new(score: f64, details: Value) -> Self {
        Verdict { score, details }
    }

    /// 1.0 or 0.0.
    pub fn pass_fail(passed: bool, details: Value) -> Self {
        Verdict {
            score: if passed { 1.0 } else { 0.0 },
            details,
        }
    }
}

/// A reward function of RLVR, looked up by the `dataset` name of a row.
pub trait Verifier: Send + Sync {
    /// The registry name (open-instruct's, lowercase).
    fn name(&self) -> &'static str;

    /// Score `response` against the row's `ground_truth` (a string, number, list or object
    /// as the dataset stores it). Errors are for ground truths the verifier cannot read, never
    /// for responses: any response gets a score.
    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError>;

    /// The score alone: what a trainer needs, without building the details. Verifiers whose
    /// details cost more than their check override it; the score is always `verify`'s.
    fn score(&self, response: &str, ground_truth: &Value) -> Result<f64, VerifyError> {
        self.verify(response, ground_truth)
            .map(|verdict| verdict.score)
    }
}

/// The ground truth as the string Python's `str(label)` would give (numbers keep their JSON
/// spelling, which is Python's for ints and for floats like `72.0`).
pub fn ground_truth_text(ground_truth: &Value) -> Cow<'_, str> {
    match ground_truth {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(other.to_string()),
    }
}
