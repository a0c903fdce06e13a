//! MATH: open-instruct's `MathVerifier` and `StrictMathVerifier`, with sympy's `is_equiv`
//! replaced by [`eval::numerically_equal`].
//!
//! - [`extract`]: the candidate answers (last `\boxed{}`, Minerva's sentence, last `$...$`).
//! - [`normalize`]: Minerva's `normalize_final_answer` and Hendrycks' `strip_string`.
//! - [`eval`]: arithmetic over LaTeX, bounded in length, depth and exponent.

pub mod eval;
pub mod extract;
pub mod normalize;

use serde_json::{Value, json};

use crate::error::VerifyError;
use crate::verifier::{Verdict, Verifier, ground_truth_text};

/// The candidate answers open-instruct's `MathVerifier` compares, in its order.
pub fn candidates(response: &str) -> Vec<String> {
    let mut answers = Vec::new();
    if let Some(boxed) = extract::boxed_answer(response) {
        answers.push(boxed);
    }
    if let Some(minerva) = minerva_candidate(response) {
        answers.push(minerva);
    }
    if answers.is_empty()
        && let Some(dollar) = extract::last_dollar_answer(response)
    {
        answers.push(normalize::normalize_final_answer(dollar));
    }
    if answers.is_empty() {
        answers.push(normalize::normalize_final_answer(response));
        answers.push(response.to_string());
    }
    answers
}

/// The normalised Minerva answer, unless it is (or normalises to) "[invalidanswer]".
fn minerva_candidate(response: &str) -> Option<String> {
    let raw = extract::minerva_answer(response).unwrap_or_else(|| "[invalidanswer]".to_string());
    let normalised = normalize::normalize_final_answer(&raw);
    (normalised != "[invalidanswer]").then_some(normalised)
}

/// `is_equiv(a, b) or hendrycks_is_equiv(a, b)`, with numeric evaluation for `is_equiv`.
pub fn equivalent(answer: &str, ground_truth: &str) -> bool {
    normalize::hendrycks_is_equiv(answer, ground_truth)
        || eval::numerically_equal(answer, ground_truth)
}

/// MATH answer checking (`math`), or only Minerva's final-answer sentence (`strict_math`).
pub struct Math {
    pub strict: bool,
}

impl Verifier for Math {
    fn name(&self) -> &'static str {
        if self.strict { "strict_math" } else { "math" }
    }

    fn verify(&self, response: &str, ground_truth: &Value) -> Result<Verdict, VerifyError> {
        let label = ground_truth_text(ground_truth);
        let answers = if self.strict {
            vec![
                minerva_candidate(response)
                    .unwrap_or_else(|| normalize::normalize_final_answer(response)),
            ]
        } else {
            candidates(response)
        };
        let matched = answers.iter().find(|answer| equivalent(answer, &label));
        Ok(Verdict::pass_fail(
            matched.is_some(),
            json!({"candidates": answers, "matched": matched, "ground_truth": label}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_instruct_flow() {
        let math = Math { strict: false };
        let score = |r: &str, gt: &str| math.verify(r, &json!(gt)).unwrap().score;
        assert_eq!(
            score("So the answer is $\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}"),
            1.0
        );
        assert_eq!(
            score(
                "Final Answer: The final answer is $0.5$. I hope it is correct.",
                "\\frac12"
            ),
            1.0
        );
        assert_eq!(score("we get $x = 3$", "3"), 1.0);
        assert_eq!(score("The answer is 4", "5"), 0.0);
        let strict = Math { strict: true };
        assert_eq!(strict.verify("I think 4", &json!("4")).unwrap().score, 0.0);
        assert_eq!(strict.verify("\\boxed{4}", &json!("4")).unwrap().score, 1.0);
    }
}
