//! Where an RLVR run's rewards come from: the verifiers each row names (open-instruct's
//! `dataset` column, with its reward shaping), a reward function a library user writes in Rust,
//! or a reward model trained by `temper rm`. A run may sum several, each with a weight, as TRL's
//! `reward_funcs` with `reward_weights`.
//!
//! Every source returns, per completion, its reward and the parts it was made of (one part per
//! verifier, or the function's own name), which become TRL's `rewards/{name}/mean` metrics; a
//! part is absent for a completion it does not apply to (a row that names another verifier), as
//! TRL's reward functions return `None` there.

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};
use temper_data::RlvrPrompt;
use temper_kernels::KernelBackend;
use temper_model::CausalLm;
use temper_verifiers::registry::{Registry, Row};
use temper_verifiers::shaping::Shaping;

/// One completion to score.
#[derive(Clone, Copy, Debug)]
pub struct RewardInput<'a> {
    /// The data row the prompt came from (messages, ground truth, verifier names, extra columns).
    pub row: &'a RlvrPrompt,
    /// The completion decoded to text, special tokens left out.
    pub completion: &'a str,
    pub prompt_ids: &'a [u32],
    pub completion_ids: &'a [u32],
    /// Whether generation stopped at an eos token (else it reached `max_completion_length`).
    pub finished: bool,
}

/// What a reward source says about a batch of completions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RewardBatch {
    /// The reward of each completion.
    pub rewards: Vec<f64>,
    /// Each named part's value per completion (`None`: does not apply to it).
    pub parts: BTreeMap<String, Vec<Option<f64>>>,
    /// Whether each completion was judged correct, where the source can tell (verifiers: every
    /// verifier the row names gives full marks); `None` for sources without a notion of it.
    pub correct: Vec<Option<bool>>,
}

#[derive(Debug, thiserror::Error)]
#[error("reward {source_name}: completion {index}: {reason}")]
pub struct RewardError {
    pub source_name: String,
    pub index: usize,
    pub reason: String,
}

/// A source of rewards. Implement it to train on a reward of your own; [`FnReward`] wraps a
/// closure.
pub trait RewardFunction {
    /// The name metrics use for this source's parts.
    fn name(&self) -> &str;
    /// Scores `inputs`, one reward per input.
    fn score(&self, inputs: &[RewardInput<'_>]) -> Result<RewardBatch, RewardError>;
}

/// The verifiers each row names, with open-instruct's shaping: each verifier adds
/// `weight × score × verification_reward`, and a completion cut off before eos gets the non-stop
/// penalty instead when it is set. Verifiers run in parallel (rayon).
pub struct VerifierReward {
    pub registry: Registry,
    pub shaping: Shaping,
}

impl RewardFunction for VerifierReward {
    fn name(&self) -> &str {
        "verifiers"
    }

    fn score(&self, inputs: &[RewardInput<'_>]) -> Result<RewardBatch, RewardError> {
        let ground_truths: Vec<Vec<serde_json::Value>> = inputs
            .iter()
            .map(|input| ground_truths(input.row))
            .collect();
        let rows: Vec<Row<'_>> = inputs
            .iter()
            .zip(&ground_truths)
            .map(|(input, truths)| Row {
                response: input.completion,
                ground_truths: truths,
                datasets: &input.row.datasets,
                finished: input.finished,
            })
            .collect();
        let scored = self.registry.score_all(&rows, &self.shaping);
        let mut batch = RewardBatch::default();
        for (index, result) in scored.into_iter().enumerate() {
            let scored = result.map_err(|e| RewardError {
                source_name: self.name().to_string(),
                index,
                reason: e.to_string(),
            })?;
            batch.rewards.push(scored.reward);
            let full_marks: f64 = scored.parts.iter().map(|p| p.weight).sum();
            batch.correct.push(if scored.parts.is_empty() {
                None
            } else {
                Some(scored.score >= full_marks)
            });
            for part in &scored.parts {
                let values = batch
                    .parts
                    .entry(part.verifier.to_string())
                    .or_insert_with(|| vec![None; inputs.len()]);
                let value = part.weight * part.verdict.score * self.shaping.verification_reward;
                values[index] = Some(values[index].unwrap_or(0.0) + value);
            }
        }
        Ok(batch)
    }
}

/// A row's ground truths, one per verifier it names: open-instruct repeats a single ground
/// truth for every verifier, and gives a list when there is one per verifier.
fn ground_truths(row: &RlvrPrompt) -> Vec<serde_json::Value> {
    let count = row.datasets.len();
    match &row.ground_truth {
        Some(serde_json::Value::Array(items)) if items.len() == count && count > 1 => items.clone(),
        Some(truth) => vec![truth.clone(); count],
        None => vec![serde_json::Value::Null; count],
    }
}

/// A reward function written in Rust: a closure from one completion to its reward (`None`: the
/// function does not apply to this completion, which then gets 0 from it).
pub struct FnReward<F> {
    name: String,
    function: F,
}

impl<F: Fn(&RewardInput<'_>) -> Option<f64>> FnReward<F> {
    pub fn new(name: impl Into<String>, function: F) -> Self {
        Self {
            name: name.into(),
            function,
        }
    }
}

impl<F: Fn(&RewardInput<'_>) -> Option<f64>> RewardFunction for FnReward<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput<'_>]) -> Result<RewardBatch, RewardError> {
        let values: Vec<Option<f64>> = inputs.iter().map(|input| (self.function)(input)).collect();
        if let Some(index) = values
            .iter()
            .position(|v| v.is_some_and(|v| !v.is_finite()))
        {
            return Err(RewardError {
                source_name: self.name.clone(),
                index,
                reason: "the reward is not a finite number".into(),
            });
        }
        Ok(RewardBatch {
            rewards: values.iter().map(|v| v.unwrap_or(0.0)).collect(),
            correct: vec![None; inputs.len()],
            parts: BTreeMap::from([(self.name.clone(), values)]),
        })
    }
}

/// A reward model (a causal LM with a one-label score head, as `temper rm` trains): the reward
/// of a completion is the model's score at the last token of prompt + completion, in batches of
/// `batch_size`, without autodiff.
pub struct RewardModel<B: KernelBackend> {
    pub model: CausalLm<B>,
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: KernelBackend> RewardFunction for RewardModel<B> {
    fn name(&self) -> &str {
        "reward_model"
    }

    fn score(&self, inputs: &[RewardInput<'_>]) -> Result<RewardBatch, RewardError> {
        let mut rewards = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.batch_size.max(1)) {
            let sequences: Vec<Vec<u32>> = chunk
                .iter()
                .map(|input| [input.prompt_ids, input.completion_ids].concat())
                .collect();
            let (ids, mask) = right_padded::<B>(&sequences, &self.device);
            let positions = CausalLm::<B>::positions_from_mask(&mask);
            let scores = self
                .model
                .sequence_scores(ids, mask, positions)
                .ok_or_else(|| RewardError {
                    source_name: self.name().to_string(),
                    index: rewards.len(),
                    reason: "the reward model has no score head".into(),
                })?;
            let values: Vec<f32> = scores
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap_or_default();
            rewards.extend(values.into_iter().map(f64::from));
        }
        Ok(RewardBatch {
            parts: BTreeMap::from([(
                self.name().to_string(),
                rewards.iter().copied().map(Some).collect(),
            )]),
            correct: vec![None; inputs.len()],
            rewards,
        })
    }
}

/// Right-padded ids (padding id 0: the mask hides it, and the score is read at the last real
/// token) and the attention mask.
fn right_padded<B: KernelBackend>(
    sequences: &[Vec<u32>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
    let width = sequences.iter().map(Vec::len).max().unwrap_or(0);
    let rows = sequences.len();
    let mut ids = Vec::with_capacity(rows * width);
    let mut mask = Vec::with_capacity(rows * width);
    for sequence in sequences {
        ids.extend(sequence.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(0i64, width - sequence.len()));
        mask.extend(std::iter::repeat_n(1.0f32, sequence.len()));
        mask.extend(std::iter::repeat_n(0.0f32, width - sequence.len()));
    }
    (
        Tensor::from_data(TensorData::new(ids, [rows, width]), device),
        Tensor::from_data(TensorData::new(mask, [rows, width]), device),
    )
}

/// Several sources summed with weights (TRL's `reward_weights`); parts keep each source's
/// names. With `non_stop_penalty` set, a completion that did not end at eos gets that value as
/// its whole reward (open-instruct's `non_stop_penalty_value`).
pub struct Rewards {
    pub sources: Vec<(Box<dyn RewardFunction>, f64)>,
    pub non_stop_penalty: Option<f64>,
}

impl Rewards {
    /// The verifiers each row names, with `shaping`, as the only source.
    pub fn verifiers(shaping: Shaping) -> Self {
        Self::new(vec![(
            Box::new(VerifierReward {
                registry: Registry::default(),
                shaping,
            }),
            1.0,
        )])
    }

    /// Weighted sources without a non-stop penalty.
    pub fn new(sources: Vec<(Box<dyn RewardFunction>, f64)>) -> Self {
        Self {
            sources,
            non_stop_penalty: None,
        }
    }

    pub fn score(&self, inputs: &[RewardInput<'_>]) -> Result<RewardBatch, RewardError> {
        let mut total = RewardBatch {
            rewards: vec![0.0; inputs.len()],
            parts: BTreeMap::new(),
            correct: vec![None; inputs.len()],
        };
        for (source, weight) in &self.sources {
            let batch = source.score(inputs)?;
            if batch.rewards.len() != inputs.len() {
                return Err(RewardError {
                    source_name: source.name().to_string(),
                    index: batch.rewards.len().min(inputs.len()),
                    reason: format!(
                        "{} rewards for {} completions",
                        batch.rewards.len(),
                        inputs.len()
                    ),
                });
            }
            for (sum, reward) in total.rewards.iter_mut().zip(&batch.rewards) {
                *sum += weight * reward;
            }
            for (correct, judged) in total.correct.iter_mut().zip(&batch.correct) {
                if let Some(judged) = judged {
                    *correct = Some(correct.unwrap_or(true) && *judged);
                }
            }
            total.parts.extend(batch.parts);
        }
        if let Some(penalty) = self.non_stop_penalty {
            for (reward, input) in total.rewards.iter_mut().zip(inputs) {
                if !input.finished {
                    *reward = penalty;
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(truth: &str) -> RlvrPrompt {
        RlvrPrompt {
            prompt: temper_data::Turns::Text("p".into()),
            ground_truth: Some(json!(truth)),
            datasets: vec!["ifeval_old".into()],
            extra: Default::default(),
        }
    }

    fn input<'a>(row: &'a RlvrPrompt, text: &'a str, finished: bool) -> RewardInput<'a> {
        RewardInput {
            row,
            completion: text,
            prompt_ids: &[],
            completion_ids: &[],
            finished,
        }
    }

    #[test]
    fn verifiers_score_with_shaping_and_name_their_parts() {
        let no_commas = row("{\"func_name\": \"validate_no_commas\"}");
        let source = VerifierReward {
            registry: Registry::default(),
            shaping: Shaping {
                non_stop_penalty: Some(-1.0),
                ..Shaping::default()
            },
        };
        let batch = source
            .score(&[
                input(&no_commas, "no commas here", true),
                input(&no_commas, "a, b", true),
                input(&no_commas, "cut off", false),
            ])
            .unwrap();
        assert_eq!(batch.rewards, vec![10.0, 0.0, -1.0]);
        assert_eq!(batch.correct, vec![Some(true), Some(false), Some(true)]);
        assert_eq!(
            batch.parts["ifeval_old"],
            vec![Some(10.0), Some(0.0), Some(10.0)]
        );
    }

    #[test]
    fn weighted_sources_add_up_and_keep_their_parts() {
        let no_commas = row("{\"func_name\": \"validate_no_commas\"}");
        let rewards = Rewards::new(vec![
            (
                Box::new(VerifierReward {
                    registry: Registry::default(),
                    shaping: Shaping::unscaled(),
                }),
                1.0,
            ),
            (
                Box::new(FnReward::new("length", |i: &RewardInput<'_>| {
                    Some(i.completion.len() as f64)
                })),
                0.5,
            ),
        ]);
        let batch = rewards.score(&[input(&no_commas, "abcd", true)]).unwrap();
        assert_eq!(batch.rewards, vec![1.0 + 2.0]);
        assert_eq!(batch.parts["length"], vec![Some(4.0)]);
        assert_eq!(batch.correct, vec![Some(true)]);
    }

    #[test]
    fn a_non_finite_reward_is_an_error_naming_the_completion() {
        let r = row("x");
        let source = FnReward::new("bad", |i: &RewardInput<'_>| {
            Some(if i.finished { 1.0 } else { f64::NAN })
        });
        let error = source
            .score(&[input(&r, "a", true), input(&r, "b", false)])
            .unwrap_err();
        assert_eq!(error.index, 1);
        assert!(error.to_string().contains("reward bad: completion 1"));
    }
}
