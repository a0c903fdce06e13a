//! Verifiers by dataset name, as open-instruct's `build_all_verifiers` maps them: an RLVR row
//! `{messages, ground_truth, dataset}` is scored by the verifier its `dataset` names (case
//! folded), and a row naming several (with as many ground truths) by their weighted sum.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::error::VerifyError;
use crate::gsm8k::Gsm8k;
use crate::ifeval::IfEvalVerifier;
use crate::ifeval_old::IfEvalOld;
use crate::math::Math;
use crate::shaping::Shaping;
use crate::verifier::{Verdict, Verifier};

/// A verifier and its weight in a row's sum (open-instruct's `VerifierFunction.weight`).
struct Entry {
    verifier: Box<dyn Verifier>,
    weight: f64,
}

/// Name → verifier.
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

/// One verifier's part in a row's reward.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Part {
    pub verifier: &'static str,
    pub weight: f64,
    pub verdict: Verdict,
}

/// The verdicts on one response and the reward they make.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowScore {
    /// Σ weight × score over the row's verifiers (in [0, 1] for one verifier of weight 1).
    pub score: f64,
    /// The shaped reward ([`Shaping::reward`]).
    pub reward: f64,
    pub parts: Vec<Part>,
}

/// One row to score: the response and what its dataset says about it.
#[derive(Clone, Debug)]
pub struct Row<'a> {
    pub response: &'a str,
    /// One ground truth per dataset name.
    pub ground_truths: &'a [Value],
    pub datasets: &'a [String],
    /// The response ended on a stop token (not cut off at the length limit).
    pub finished: bool,
}

impl Default for Registry {
    /// Every verifier of this crate: `gsm8k`, `gsm8k_strict`, `math`, `strict_math`,
    /// `ifeval`, `ifeval_old`.
    fn default() -> Self {
        let mut registry = Registry {
            entries: BTreeMap::new(),
        };
        registry.register(Box::new(Gsm8k { strict: false }), 1.0);
        registry.register(Box::new(Gsm8k { strict: true }), 1.0);
        registry.register(Box::new(Math { strict: false }), 1.0);
        registry.register(Box::new(Math { strict: true }), 1.0);
        registry.register(Box::new(IfEvalVerifier), 1.0);
        registry.register(Box::new(IfEvalOld), 1.0);
        registry
    }
}

impl Registry {
    /// Add (or replace) a verifier under its name.
    pub fn register(&mut self, verifier: Box<dyn Verifier>, weight: f64) {
        self.entries
            .insert(verifier.name().to_lowercase(), Entry { verifier, weight });
    }

    /// Make `alias` score with the verifier named `target` (open-instruct's `--remap_verifier`).
    pub fn alias(&mut self, alias: &str, target: &str) -> Result<(), VerifyError> {
        let name = self.resolve(target)?.verifier.name();
        let weight = self.resolve(target)?.weight;
        let verifier: Box<dyn Verifier> = match name {
            "gsm8k" => Box::new(Gsm8k { strict: false }),
            "gsm8k_strict" => Box::new(Gsm8k { strict: true }),
            "math" => Box::new(Math { strict: false }),
            "strict_math" => Box::new(Math { strict: true }),
            "ifeval" => Box::new(IfEvalVerifier),
            _ => Box::new(IfEvalOld),
        };
        self.entries
            .insert(alias.to_lowercase(), Entry { verifier, weight });
        Ok(())
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn resolve(&self, name: &str) -> Result<&Entry, VerifyError> {
        self.entries
            .get(&name.to_lowercase())
            .ok_or_else(|| VerifyError::UnknownVerifier(name.to_string()))
    }

    /// The verifier a dataset name selects.
    pub fn get(&self, name: &str) -> Result<&dyn Verifier, VerifyError> {
        Ok(self.resolve(name)?.verifier.as_ref())
    }

    /// Score one row: each dataset's verifier on its ground truth, summed with weights, then
    /// shaped. A single list-valued ground truth with a single dataset is one ground truth.
    pub fn score(&self, row: &Row, shaping: &Shaping) -> Result<RowScore, VerifyError> {
        if row.ground_truths.len() != row.datasets.len() {
            return Err(VerifyError::CountMismatch {
                ground_truths: row.ground_truths.len(),
                datasets: row.datasets.len(),
            });
        }
        let mut parts = Vec::with_capacity(row.datasets.len());
        for (dataset, ground_truth) in row.datasets.iter().zip(row.ground_truths) {
            let entry = self.resolve(dataset)?;
            let verdict = entry.verifier.verify(row.response, ground_truth)?;
            parts.push(Part {
                verifier: entry.verifier.name(),
                weight: entry.weight,
                verdict,
            });
        }
        let score = parts.iter().map(|p| p.weight * p.verdict.score).sum();
        Ok(RowScore {
            score,
            reward: shaping.reward(score, row.response, row.finished),
            parts,
        })
    }

    /// Score many rows on all cores, in order.
    pub fn score_all(&self, rows: &[Row], shaping: &Shaping) -> Vec<Result<RowScore, VerifyError>> {
        rows.par_iter()
            .map(|row| self.score(row, shaping))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_pick_their_verifiers() {
        let registry = Registry::default();
        let ground_truths = [
            json!("72"),
            json!("{\"func_name\": \"validate_no_commas\"}"),
        ];
        let datasets = ["GSM8K".to_string(), "ifeval_old".to_string()];
        let row = Row {
            response: "It is 72",
            ground_truths: &ground_truths,
            datasets: &datasets,
            finished: true,
        };
        let scored = registry.score(&row, &Shaping::default()).unwrap();
        assert_eq!(scored.score, 2.0);
        assert_eq!(scored.reward, 20.0);
        assert!(matches!(
            registry.get("nope"),
            Err(VerifyError::UnknownVerifier(_))
        ));
        let mismatch = Row {
            datasets: &datasets[..1],
            ..row
        };
        assert!(registry.score(&mismatch, &Shaping::default()).is_err());
    }
}
