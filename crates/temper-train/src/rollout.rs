//! Rollouts: completions sampled from the policy for RL, and the tensors that score them again.
//!
//! Sampling runs on the policy's own weights: `model.valid()` of the autodiff model shares its
//! parameter tensors (no copy is made), and generation uses temper-model's batched KV-cache
//! decoding with every prompt of a round in one left-padded batch. Training then scores each
//! prompt + completion in one forward pass ([`CompletionBatch`], [`completion_token_stats`]),
//! with the logits divided by the sampling temperature, as TRL's GRPOTrainer does, so that
//! the log-probs of the policy, of the policy that sampled and of the reference compare alike.

use std::time::{Duration, Instant};

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use temper_data::batch::{BatchOrder, batch_indices};
use temper_data::{Examples, RlvrPrompt, TokenizedSet};
use temper_kernels::KernelBackend;
use temper_model::{CausalLm, Decoding, GenerationConfig, HeadInput, generate};
use temper_objectives::ObjectiveError;
use temper_objectives::logprobs::TokenStats;

use crate::batch::ModelInputs;
use crate::engine::step_seed;

/// The prompts of a run: each data row with its tokenised prompt.
#[derive(Clone, Debug, Default)]
pub struct Prompts {
    pub rows: Vec<RlvrPrompt>,
    pub ids: Vec<Vec<u32>>,
}

impl Prompts {
    /// The RLVR rows of `examples` with their tokenised prompts (`tokenized`'s `i`-th from
    /// `examples`' `i`-th); empty unless they are RLVR rows and prompts.
    pub fn from_examples(examples: &Examples, tokenized: &TokenizedSet) -> Self {
        let (Examples::Rlvr(rows), TokenizedSet::Prompts(tokenized)) = (examples, tokenized) else {
            return Self::default();
        };
        let pairs = rows.iter().zip(tokenized);
        Self {
            rows: pairs.clone().map(|(row, _)| row.clone()).collect(),
            ids: pairs.map(|(_, prompt)| prompt.prompt_ids.clone()).collect(),
        }
    }
}

/// Where the time of the last step went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTiming {
    /// Sampling the round's completions (zero on steps that reuse a round).
    pub generation: Duration,
    /// Decoding and rewarding them, and advantages.
    pub scoring: Duration,
    /// Old and reference log-probs (and values), forward and backward passes, the update.
    pub training: Duration,
    /// Completion tokens sampled.
    pub completion_tokens: usize,
}

/// Which prompts each round of an RL run takes, and the seed it samples with: functions of the
/// round's index and the run's seed alone, so a resumed run samples what the uninterrupted run
/// sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundPlan {
    pub prompts_per_round: usize,
    /// Rounds per pass over the prompts.
    pub rounds_per_epoch: usize,
    /// Whether each epoch's last, incomplete round is dropped (PPO, as TRL's dataloader).
    pub drop_last: bool,
    pub seed: u64,
}

impl RoundPlan {
    pub fn new(prompt_count: usize, prompts_per_round: usize, drop_last: bool, seed: u64) -> Self {
        let prompts_per_round = prompts_per_round.max(1);
        let rounds_per_epoch = if drop_last {
            prompt_count / prompts_per_round
        } else {
            prompt_count.div_ceil(prompts_per_round)
        };
        Self {
            prompts_per_round,
            rounds_per_epoch,
            drop_last,
            seed,
        }
    }

    /// The prompts (indices) of round `index`: the `index mod u`-th group of a seeded order of
    /// the prompts, reshuffled every epoch of `u` rounds.
    pub fn prompts(&self, index: usize, prompts: &Prompts) -> Vec<usize> {
        let rounds = self.rounds_per_epoch.max(1);
        let lengths: Vec<usize> = prompts.ids.iter().map(Vec::len).collect();
        let groups = batch_indices(
            &lengths,
            self.prompts_per_round,
            BatchOrder::Shuffled,
            self.seed,
            (index / rounds) as u64,
            self.drop_last,
        );
        groups.get(index % rounds).cloned().unwrap_or_default()
    }

    /// Samples round `index` with `model` (the policy's `valid()` copy, which shares its
    /// weights), returning its completions and the generation time.
    pub fn sample<B: KernelBackend>(
        &self,
        index: usize,
        model: &CausalLm<B>,
        prompts: &Prompts,
        sampling: &Sampling,
        stops: &Stops,
        device: &B::Device,
    ) -> (Vec<Rollout>, StepTiming) {
        let started = Instant::now();
        let chosen: Vec<(usize, Vec<u32>)> = self
            .prompts(index, prompts)
            .into_iter()
            .map(|i| (i, prompts.ids[i].clone()))
            .collect();
        let seed = step_seed(self.seed, index as u64).wrapping_add(0x5eed);
        let rollouts = sample(model, &chosen, sampling, stops, seed, device);
        let timing = StepTiming {
            generation: started.elapsed(),
            completion_tokens: rollouts.iter().map(|r| r.completion_ids.len()).sum(),
            ..StepTiming::default()
        };
        (rollouts, timing)
    }
}

/// How completions are sampled (TRL's `GRPOConfig` names): the run's settings. Where they stop
/// is the model's ([`Stops`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Completions per prompt (the group of GRPO).
    pub num_generations: usize,
    pub max_completion_length: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub repetition_penalty: f64,
}

/// Where a model's completions stop and how its rows are padded: the model's and tokenizer's
/// ids, not settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Stops {
    /// Generation stops at any of these (the token is kept in the completion).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: u32,
}

impl Stops {
    /// Where the model's own generation stops — `generation_config.json`'s eos ids (else
    /// `config.json`'s) plus the tokenizer's eos — with rows padded by `pad_id`.
    pub fn of_model(
        model_dir: &std::path::Path,
        config: &temper_model::ModelConfig,
        tokenizer: &temper_data::ChatTokenizer,
        pad_id: u32,
    ) -> Self {
        let mut eos = GenerationConfig::for_model_dir(model_dir, config).eos_token_ids;
        if let Ok(id) = tokenizer.eos_id()
            && !eos.contains(&id)
        {
            eos.push(id);
        }
        Self {
            eos_token_ids: eos,
            pad_token_id: pad_id,
        }
    }
}

/// One sampled completion and what the run computed of it when it was sampled: all that the
/// updates reusing it need, so a checkpoint taken between them can hold the round and resume
/// it exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The training example (prompt row) it answers.
    pub prompt_index: usize,
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// Whether generation stopped at an eos token.
    pub finished: bool,
    pub reward: f64,
    /// GRPO: the group-relative advantage of the completion.
    pub advantage: f64,
    /// Per completion token: log-probs under the policy that sampled it (`None` when each
    /// round is used for one update only: the ratio is then 1 and TRL skips this pass).
    #[serde(default)]
    pub old_logps: Option<Vec<f32>>,
    /// Per completion token: log-probs under the reference model (when β ≠ 0).
    #[serde(default)]
    pub ref_logps: Option<Vec<f32>>,
}

impl Rollout {
    /// A completion not yet rewarded or scored.
    pub fn new(
        prompt_index: usize,
        prompt_ids: Vec<u32>,
        completion_ids: Vec<u32>,
        finished: bool,
    ) -> Self {
        Self {
            prompt_index,
            prompt_ids,
            completion_ids,
            finished,
            reward: 0.0,
            advantage: 0.0,
            old_logps: None,
            ref_logps: None,
        }
    }
}

/// Samples `sampling.num_generations` completions of each prompt (`(example index, ids)`) in
/// one batch, `seed` fixing every draw. Rows come out prompt by prompt, each prompt's group
/// together, as TRL lays out a generation batch. Rewards and advantages are left at 0.
pub fn sample<B: KernelBackend>(
    model: &CausalLm<B>,
    prompts: &[(usize, Vec<u32>)],
    sampling: &Sampling,
    stops: &Stops,
    seed: u64,
    device: &B::Device,
) -> Vec<Rollout> {
    let repeated: Vec<(usize, &Vec<u32>)> = prompts
        .iter()
        .flat_map(|(index, ids)| std::iter::repeat_n((*index, ids), sampling.num_generations))
        .collect();
    let inputs: Vec<Vec<u32>> = repeated.iter().map(|(_, ids)| (*ids).clone()).collect();
    let config = GenerationConfig {
        max_new_tokens: sampling.max_completion_length,
        decoding: Decoding::Sample {
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
        },
        repetition_penalty: sampling.repetition_penalty,
        eos_token_ids: stops.eos_token_ids.clone(),
        pad_token_id: stops.pad_token_id,
        seed,
        use_cache: true,
    };
    let generated = generate(model, &inputs, &config, device);
    repeated
        .into_iter()
        .zip(generated.tokens)
        .zip(generated.stopped_at_eos)
        .map(|(((prompt_index, prompt_ids), completion_ids), finished)| {
            Rollout::new(prompt_index, prompt_ids.clone(), completion_ids, finished)
        })
        .collect()
}

/// Rollouts as model inputs: each prompt left-padded to the longest prompt, each completion
/// right-padded to the longest completion, `[rows, P + C]`, with the completions alone
/// `[rows, C]` for the loss.
#[derive(Clone, Debug)]
pub struct CompletionBatch<B: KernelBackend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2>,
    pub position_ids: Tensor<B, 2, Int>,
    pub completion_ids: Tensor<B, 2, Int>,
    /// 1 on completion tokens, 0 on their padding.
    pub completion_mask: Tensor<B, 2>,
    /// `P`: where the completions start.
    pub prompt_width: usize,
    /// `C`.
    pub completion_width: usize,
}

impl<B: KernelBackend> CompletionBatch<B> {
    /// What the model reads of this batch.
    pub fn inputs(&self) -> ModelInputs<B> {
        ModelInputs {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            position_ids: self.position_ids.clone(),
        }
    }

    pub fn new(rows: &[&Rollout], pad_id: u32, device: &B::Device) -> Self {
        let prompt_width = rows.iter().map(|r| r.prompt_ids.len()).max().unwrap_or(0);
        let completion_width = rows
            .iter()
            .map(|r| r.completion_ids.len())
            .max()
            .unwrap_or(0);
        let width = prompt_width + completion_width;
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        let mut completion_ids = Vec::with_capacity(rows.len() * completion_width);
        let mut completion_mask = Vec::with_capacity(rows.len() * completion_width);
        for row in rows {
            let left = prompt_width - row.prompt_ids.len();
            let right = completion_width - row.completion_ids.len();
            let pad = i64::from(pad_id);
            ids.extend(std::iter::repeat_n(pad, left));
            ids.extend(row.prompt_ids.iter().map(|&t| i64::from(t)));
            ids.extend(row.completion_ids.iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(pad, right));
            mask.extend(std::iter::repeat_n(0.0f32, left));
            mask.extend(std::iter::repeat_n(1.0f32, width - left - right));
            mask.extend(std::iter::repeat_n(0.0f32, right));
            completion_ids.extend(row.completion_ids.iter().map(|&t| i64::from(t)));
            completion_ids.extend(std::iter::repeat_n(pad, right));
            completion_mask.extend(std::iter::repeat_n(1.0f32, row.completion_ids.len()));
            completion_mask.extend(std::iter::repeat_n(0.0f32, right));
        }
        let rows = rows.len();
        let attention_mask = Tensor::from_data(TensorData::new(mask, [rows, width]), device);
        Self {
            input_ids: Tensor::from_data(TensorData::new(ids, [rows, width]), device),
            position_ids: CausalLm::<B>::positions_from_mask(&attention_mask),
            attention_mask,
            completion_ids: Tensor::from_data(
                TensorData::new(completion_ids, [rows, completion_width]),
                device,
            ),
            completion_mask: Tensor::from_data(
                TensorData::new(completion_mask, [rows, completion_width]),
                device,
            ),
            prompt_width,
            completion_width,
        }
    }

    /// Per-token values `[rows][len]` as a `[rows, C]` tensor, zero on padding.
    pub fn per_token(&self, values: &[&[f32]], device: &B::Device) -> Tensor<B, 2> {
        padded_rows(values, self.completion_width, device)
    }
}

/// Rows of per-token values right-padded with 0 (or cut) to `width`, as `[rows, width]`.
pub fn padded_rows<B: KernelBackend>(
    rows: &[&[f32]],
    width: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend(row.iter().take(width).copied());
        flat.extend(std::iter::repeat_n(0.0f32, width.saturating_sub(row.len())));
    }
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// The model's outputs `[rows, C, D]` at the positions that predict the completion tokens, from
/// its outputs `[rows, P + C, D]` over the whole batch: position `P + t − 1` predicts
/// completion token `t` (TRL's `[:, context_length - 1 : -1]`).
pub fn completion_positions<B: KernelBackend>(
    outputs: Tensor<B, 3>,
    batch: &CompletionBatch<B>,
) -> Tensor<B, 3> {
    let [rows, _, width] = outputs.dims();
    let start = batch.prompt_width.saturating_sub(1);
    outputs.slice([0..rows, start..start + batch.completion_width, 0..width])
}

/// Log-probs, entropies and the other token statistics `[rows, C]` of the completion tokens
/// under `softmax(logits / T)`, through the fused LM-head path of the model's final hidden
/// states over the whole batch.
pub fn completion_token_stats<B: KernelBackend>(
    head: &HeadInput<'_, B>,
    batch: &CompletionBatch<B>,
    temperature: f64,
) -> Result<TokenStats<B>, ObjectiveError> {
    let start = batch.prompt_width.saturating_sub(1);
    let tokens = head
        .token_log_probs(start, batch.completion_ids.clone(), 1.0 / temperature, true)
        .ok_or_else(not_a_causal_lm)?;
    let stats = tokens.stats.ok_or_else(not_a_causal_lm)?;
    Ok(TokenStats::masked(
        tokens.log_probs,
        stats.entropy,
        stats.is_top1,
        stats.mean_logit,
        &batch.completion_mask,
    ))
}

fn not_a_causal_lm() -> ObjectiveError {
    ObjectiveError::Batch("token log-probs need a causal LM; this model has a score head".into())
}

/// Per-token values `[rows, C]` that `per_batch` computes from `model`'s final hidden states
/// on each chunk of `batch_size` rollouts, without autodiff, one row per rollout trimmed to its
/// completion's length (what a round keeps of old and reference log-probs and of values).
pub fn score_completions<B: KernelBackend, E>(
    model: &CausalLm<B>,
    rows: &[&Rollout],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    per_batch: impl Fn(HeadInput<'_, B>, &CompletionBatch<B>) -> Result<Tensor<B, 2>, E>,
) -> Result<Vec<Vec<f32>>, E> {
    let mut all = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let batch = CompletionBatch::<B>::new(chunk, pad_id, device);
        let head = model.head_input(
            batch.input_ids.clone(),
            batch.attention_mask.clone(),
            batch.position_ids.clone(),
        );
        let values: Vec<f32> = per_batch(head, &batch)?
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        for (row, rollout) in chunk.iter().enumerate() {
            let from = row * batch.completion_width;
            let to = (from + rollout.completion_ids.len()).min(values.len());
            all.push(values[from.min(to)..to].to_vec());
        }
    }
    Ok(all)
}

/// The completion tokens' log-probs under `model` at `temperature`, one row per rollout (no
/// token statistics: the kernel skips them).
pub fn completion_log_probs<B: KernelBackend>(
    model: &CausalLm<B>,
    rows: &[&Rollout],
    temperature: f64,
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, ObjectiveError> {
    score_completions(model, rows, pad_id, batch_size, device, |head, batch| {
        let start = batch.prompt_width.saturating_sub(1);
        let tokens = head
            .token_log_probs(
                start,
                batch.completion_ids.clone(),
                1.0 / temperature,
                false,
            )
            .ok_or_else(not_a_causal_lm)?;
        Ok(tokens
            .log_probs
            .mask_fill(batch.completion_mask.clone().equal_elem(0.0), 0.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::NdArray;

    fn rollout(prompt: &[u32], completion: &[u32]) -> Rollout {
        Rollout::new(0, prompt.to_vec(), completion.to_vec(), true)
    }

    #[test]
    fn prompts_pad_left_and_completions_right() {
        let a = rollout(&[1, 2, 3], &[4]);
        let b = rollout(&[5], &[6, 7, 8]);
        let batch = CompletionBatch::<B>::new(&[&a, &b], 0, &Default::default());
        assert_eq!((batch.prompt_width, batch.completion_width), (3, 3));
        let ids: Vec<i64> = batch.input_ids.into_data().to_vec().unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8]);
        let mask: Vec<f32> = batch.attention_mask.into_data().to_vec().unwrap();
        assert_eq!(mask, vec![1., 1., 1., 1., 0., 0., 0., 0., 1., 1., 1., 1.]);
        let positions: Vec<i64> = batch.position_ids.into_data().to_vec().unwrap();
        assert_eq!(&positions[8..], &[0, 1, 2, 3]);
        let completion: Vec<f32> = batch.completion_mask.into_data().to_vec().unwrap();
        assert_eq!(completion, vec![1., 0., 0., 1., 1., 1.]);
    }
}
