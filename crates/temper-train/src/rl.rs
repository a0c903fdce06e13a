//! What the RL trainers (GRPO, PPO) share: the prompts and the plan that draws each round's
//! from them, the reward sources and the tokenizer that decodes completions for them, rounds
//! made from completions given rather than sampled, and the held-out evaluation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use temper_data::ChatTokenizer;
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{CausalLm, Decoding, GenerationConfig, generate};

use crate::checkpoint::CheckpointError;
use crate::engine::step_seed;
use crate::rewards::{RewardBatch, RewardInput, Rewards};
use crate::rollout::{Prompts, Rollout, RoundPlan, Sampling, StepTiming, Stops};
use crate::trainer::{StepLog, TrainError, Trainer};

/// An RL trainer: what the run loop needs of it beside [`Trainer`].
pub trait RlTrainer<B: AutodiffKernelBackend>: Trainer<B> {
    /// [`evaluate_policy`] on the policy, with the run's rewards and sampling limits.
    fn evaluate(
        &self,
        prompts: &Prompts,
        batch_size: usize,
    ) -> Result<Vec<(String, f64)>, TrainError>;
}

/// How GRPO and PPO make their steps: each round of completions feeds `steps_per_round`
/// updates, and the step that needs a new round samples it first.
pub(crate) trait RoundSteps<B: AutodiffKernelBackend>: Trainer<B> {
    /// Optimizer steps made from one round.
    fn steps_per_round(&self) -> usize;
    /// The index of the round held, if any.
    fn held_round(&self) -> Option<usize>;
    fn rounds(&self) -> &Rounds;
    fn sampling(&self) -> &Sampling;
    /// Rewards and scores a round's completions and holds it.
    fn start_round(
        &mut self,
        index: usize,
        rollouts: Vec<Rollout>,
        timing: &mut StepTiming,
    ) -> Result<(), TrainError>;
    /// One optimizer step from the held round; `first_of_round` logs the round's metrics.
    fn update(&mut self, first_of_round: bool) -> Result<StepLog, TrainError>;
    fn set_timing(&mut self, timing: StepTiming);

    /// The next update, sampling a new round first when the held one is used up.
    fn round_step(&mut self) -> Result<StepLog, TrainError> {
        let step = self.steps_done();
        let per_round = self.steps_per_round();
        let round_index = step / per_round;
        let mut timing = StepTiming::default();
        if self.held_round() != Some(round_index) {
            let (rollouts, sampled) = self.rounds().plan.sample(
                round_index,
                &self.model().valid(),
                &self.rounds().prompts,
                self.sampling(),
                &self.rounds().stops,
                self.engine().device(),
            );
            timing = sampled;
            self.start_round(round_index, rollouts, &mut timing)?;
        }
        let started = Instant::now();
        // TRL logs a round's metrics with the step that made it.
        let log = self.update(step.is_multiple_of(per_round))?;
        timing.training += started.elapsed();
        self.set_timing(timing);
        Ok(log)
    }

    /// The next round from completions given rather than sampled (`(prompt index, completion
    /// ids, stopped at eos)`, in group order): rewarded and scored as sampled ones would be.
    fn give_round(&mut self, completions: Vec<(usize, Vec<u32>, bool)>) -> Result<(), TrainError> {
        let index = self.steps_done() / self.steps_per_round();
        let rollouts = self.rounds().given(completions)?;
        self.start_round(index, rollouts, &mut StepTiming::default())
    }
}

/// What an RL trainer samples from, rewards with and decodes with, beside the models it trains.
pub struct RlInputs<B: Backend> {
    pub prompts: Prompts,
    pub rewards: Rewards,
    /// The reference model of the KL term (the initial policy, as TRL's `ref_model`).
    pub reference: Option<CausalLm<B>>,
    pub tokenizer: ChatTokenizer,
    /// Where the policy's completions stop.
    pub stops: Stops,
}

impl<B: Backend> RlInputs<B> {
    /// The rounds of `trainer`'s run over these inputs, `prompts_per_round` prompts each
    /// (`drop_last`: an epoch's last, incomplete round is skipped), and the reference model.
    /// Refuses inputs without prompts, and a policy with a score head.
    pub(crate) fn into_rounds<P: Backend>(
        self,
        trainer: &str,
        policy: &CausalLm<P>,
        prompts_per_round: usize,
        drop_last: bool,
        seed: u64,
    ) -> Result<(Rounds, Option<CausalLm<B>>), TrainError> {
        let RlInputs {
            prompts,
            rewards,
            reference,
            tokenizer,
            stops,
        } = self;
        if prompts.rows.is_empty() || prompts.rows.len() != prompts.ids.len() {
            return Err(TrainError::NoData);
        }
        if policy.is_score_model() {
            return Err(TrainError::Settings(format!(
                "{trainer} trains a causal LM policy; this model has a score head (a reward model)"
            )));
        }
        let plan = RoundPlan::new(prompts.rows.len(), prompts_per_round, drop_last, seed);
        let rounds = Rounds {
            prompts,
            rewards,
            tokenizer,
            stops,
            plan,
        };
        Ok((rounds, reference))
    }
}

/// One round of an RL run: its index, its completions with what the updates need of each
/// (`R`), and the metrics logged with its first step. A checkpoint taken inside a round holds
/// it (`rollouts.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round<R> {
    pub index: usize,
    pub rollouts: Vec<R>,
    /// TRL's round metrics (rewards, lengths), logged with the round's first step.
    pub metrics: Vec<(String, f64)>,
    /// Prompt and completion tokens seen by the run up to and including this round (TRL's
    /// `num_tokens`).
    pub tokens_seen: usize,
}

/// The prompts of an RL run, the plan that draws each round's prompts, and how completions
/// are rewarded.
pub(crate) struct Rounds {
    pub(crate) prompts: Prompts,
    pub(crate) rewards: Rewards,
    pub(crate) tokenizer: ChatTokenizer,
    pub(crate) stops: Stops,
    pub(crate) plan: RoundPlan,
}

impl Rounds {
    /// A round's rollouts from completions given rather than sampled: `(prompt index,
    /// completion ids, stopped at eos)`, in group order.
    pub(crate) fn given(
        &self,
        completions: Vec<(usize, Vec<u32>, bool)>,
    ) -> Result<Vec<Rollout>, TrainError> {
        completions
            .into_iter()
            .map(|(prompt_index, completion_ids, finished)| {
                let prompt_ids = self.prompts.ids.get(prompt_index).cloned().ok_or_else(|| {
                    TrainError::Record {
                        index: prompt_index,
                        reason: "no such prompt".into(),
                    }
                })?;
                Ok(Rollout::new(
                    prompt_index,
                    prompt_ids,
                    completion_ids,
                    finished,
                ))
            })
            .collect()
    }

    /// [`evaluate_policy`] with this run's rewards, tokenizer and stops.
    pub(crate) fn evaluate<B: KernelBackend>(
        &self,
        policy: &CausalLm<B>,
        prompts: &Prompts,
        max_completion_length: usize,
        batch_size: usize,
    ) -> Result<Vec<(String, f64)>, TrainError> {
        evaluate_policy(
            policy,
            prompts,
            &self.rewards,
            &self.tokenizer,
            &self.stops,
            max_completion_length,
            batch_size,
        )
    }

    /// Every reward source's rewards of `rollouts`.
    pub(crate) fn score(&self, rollouts: &[Rollout]) -> Result<RewardBatch, TrainError> {
        let completions = rollouts
            .iter()
            .map(|r| (r.prompt_index, r.completion_ids.as_slice(), r.finished));
        score(&self.tokenizer, &self.rewards, &self.prompts, completions)
    }
}

/// `log` with a round's metrics in front: TRL logs them with the round's first step.
pub(crate) fn with_round_metrics(mut log: StepLog, round_metrics: &[(String, f64)]) -> StepLog {
    log.metrics = round_metrics.iter().cloned().chain(log.metrics).collect();
    log
}

/// Where a checkpoint keeps the round of rollouts under way.
pub const ROUND_FILE: &str = "rollouts.json";

/// Writes `round` into checkpoint directory `dir`.
pub fn save_round<R: Serialize>(round: &R, dir: &Path) -> Result<(), CheckpointError> {
    let path = dir.join(ROUND_FILE);
    let text = serde_json::to_string(round).map_err(|e| CheckpointError::State {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|source| CheckpointError::Io { path, source })
}

/// The round a checkpoint holds, if it holds one.
pub fn load_round<R: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Option<R>, CheckpointError> {
    let path = dir.join(ROUND_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CheckpointError::State {
            path,
            reason: e.to_string(),
        })
}

/// Prompt and completion tokens seen by a run: `previous` and those of `rollouts` (TRL's
/// `num_tokens`).
pub(crate) fn tokens_seen(previous: usize, rollouts: &[Rollout]) -> usize {
    previous
        + rollouts
            .iter()
            .map(|r| r.prompt_ids.len() + r.completion_ids.len())
            .sum::<usize>()
}

/// The rewards of completions `(prompt index, completion ids, stopped at eos)`, decoded for
/// the verifiers; an error names the prompt whose completion could not be rewarded.
fn score<'a>(
    tokenizer: &ChatTokenizer,
    rewards: &Rewards,
    prompts: &Prompts,
    completions: impl Iterator<Item = (usize, &'a [u32], bool)>,
) -> Result<RewardBatch, TrainError> {
    let completions: Vec<(usize, &[u32], bool)> = completions.collect();
    let texts = decode_completions(tokenizer, &completions);
    score_decoded(rewards, prompts, &completions, &texts)
}

/// Each completion's text as the verifiers read it: special tokens left out.
fn decode_completions(
    tokenizer: &ChatTokenizer,
    completions: &[(usize, &[u32], bool)],
) -> Vec<String> {
    completions
        .iter()
        .map(|(_, tokens, _)| tokenizer.decode(tokens, true).unwrap_or_default())
        .collect()
}

/// [`score`] of completions already decoded (`texts[i]` is `completions[i]`'s text).
fn score_decoded(
    rewards: &Rewards,
    prompts: &Prompts,
    completions: &[(usize, &[u32], bool)],
    texts: &[String],
) -> Result<RewardBatch, TrainError> {
    let inputs: Vec<RewardInput<'_>> = completions
        .iter()
        .zip(texts)
        .map(|(&(i, tokens, finished), text)| RewardInput {
            row: &prompts.rows[i],
            completion: text,
            prompt_ids: &prompts.ids[i],
            completion_ids: tokens,
            finished,
        })
        .collect();
    rewards.score(&inputs).map_err(|e| TrainError::Record {
        index: completions.get(e.index).map_or(e.index, |c| c.0),
        reason: e.to_string(),
    })
}

/// One held-out prompt's completion and what the rewards made of it: a row of
/// [`evaluate_completions`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluatedCompletion {
    /// The prompt (row of [`Prompts`]) it answers.
    pub prompt_index: usize,
    /// The generated ids, the stopping eos included.
    pub completion_ids: Vec<u32>,
    /// The completion as the verifiers read it (special tokens left out).
    pub text: String,
    /// Whether generation stopped at an eos token (else it reached the token limit).
    pub finished: bool,
    pub reward: f64,
    /// Whether every verifier the row names gives full marks (`None`: no verifier judged it).
    pub correct: Option<bool>,
    /// Each reward part that applies to this completion (verifier name → its reward), as TRL's
    /// `rewards/{name}`.
    pub parts: BTreeMap<String, f64>,
}

/// A held-out evaluation: [`evaluate_policy`]'s metrics, each completion, and the time taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub metrics: Vec<(String, f64)>,
    /// In prompt order.
    pub completions: Vec<EvaluatedCompletion>,
    /// Generating the completions.
    pub generation: Duration,
    /// Decoding and rewarding them.
    pub scoring: Duration,
}

/// Verifier accuracy on held-out prompts: one greedy completion of each (in batches of
/// `batch_size`), rewarded as in training. Metrics: `reward`, `accuracy` (the share of
/// completions every named verifier passes, over those a verifier judges),
/// `rewards/{name}/mean`, `completions/mean_length`, `completions/clipped_ratio`. The trainers'
/// `evaluate` calls it on their policy; the pipeline compares models with it, and `temper eval`
/// is [`evaluate_completions`] with the same greedy settings.
pub fn evaluate_policy<B: KernelBackend>(
    model: &CausalLm<B>,
    prompts: &Prompts,
    rewards: &Rewards,
    tokenizer: &ChatTokenizer,
    stops: &Stops,
    max_completion_length: usize,
    batch_size: usize,
) -> Result<Vec<(String, f64)>, TrainError> {
    let config = greedy_evaluation(stops, max_completion_length);
    evaluate_completions(model, prompts, rewards, tokenizer, &config, batch_size)
        .map(|evaluation| evaluation.metrics)
}

/// The generation settings of [`evaluate_policy`]: greedy, at most `max_completion_length`
/// new tokens, stopping and padding as `stops` says.
pub fn greedy_evaluation(stops: &Stops, max_completion_length: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: max_completion_length,
        decoding: Decoding::Greedy,
        eos_token_ids: stops.eos_token_ids.clone(),
        pad_token_id: stops.pad_token_id,
        ..GenerationConfig::default()
    }
}

/// [`evaluate_policy`] with any generation settings (`config`: greedy or sampled; batch `k`
/// of a sampled evaluation draws with seed `config.seed` mixed with `k`), returning each
/// completion beside the metrics.
pub fn evaluate_completions<B: KernelBackend>(
    model: &CausalLm<B>,
    prompts: &Prompts,
    rewards: &Rewards,
    tokenizer: &ChatTokenizer,
    config: &GenerationConfig,
    batch_size: usize,
) -> Result<Evaluation, TrainError> {
    if prompts.rows.is_empty() {
        return Err(TrainError::NoData);
    }
    let started = Instant::now();
    // The model's own device: the evaluation computes where the policy lives.
    let device = model.devices().into_iter().next().unwrap_or_default();
    let mut rollouts = Vec::with_capacity(prompts.ids.len());
    let indices: Vec<usize> = (0..prompts.ids.len()).collect();
    for (k, chunk) in indices.chunks(batch_size.max(1)).enumerate() {
        let inputs: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts.ids[i].clone()).collect();
        let chunk_config = match config.decoding {
            Decoding::Greedy => config.clone(),
            _ => GenerationConfig {
                seed: step_seed(config.seed, k as u64),
                ..config.clone()
            },
        };
        let generated = generate(model, &inputs, &chunk_config, &device);
        for ((&i, tokens), finished) in chunk
            .iter()
            .zip(generated.tokens)
            .zip(generated.stopped_at_eos)
        {
            rollouts.push((i, tokens, finished));
        }
    }
    let generation = started.elapsed();
    let started = Instant::now();
    let completions: Vec<(usize, &[u32], bool)> = rollouts
        .iter()
        .map(|(i, tokens, finished)| (*i, tokens.as_slice(), *finished))
        .collect();
    let texts = decode_completions(tokenizer, &completions);
    let scored = score_decoded(rewards, prompts, &completions, &texts)?;
    let scoring = started.elapsed();
    let metrics = evaluation_metrics(&rollouts, &scored);
    let completions = rollouts
        .into_iter()
        .zip(texts)
        .enumerate()
        .map(
            |(row, ((prompt_index, completion_ids, finished), text))| EvaluatedCompletion {
                prompt_index,
                completion_ids,
                text,
                finished,
                reward: scored.rewards[row],
                correct: scored.correct[row],
                parts: scored
                    .parts
                    .iter()
                    .filter_map(|(name, values)| values[row].map(|v| (name.clone(), v)))
                    .collect(),
            },
        )
        .collect();
    Ok(Evaluation {
        metrics,
        completions,
        generation,
        scoring,
    })
}

/// [`evaluate_policy`]'s metrics of rewarded completions `(prompt index, ids, finished)`.
fn evaluation_metrics(
    rollouts: &[(usize, Vec<u32>, bool)],
    scored: &RewardBatch,
) -> Vec<(String, f64)> {
    let count = rollouts.len() as f64;
    let mut metrics = vec![(
        "reward".to_string(),
        scored.rewards.iter().sum::<f64>() / count,
    )];
    let judged: Vec<bool> = scored.correct.iter().flatten().copied().collect();
    if !judged.is_empty() {
        let right = judged.iter().filter(|c| **c).count() as f64;
        metrics.push(("accuracy".into(), right / judged.len() as f64));
    }
    for (name, values) in &scored.parts {
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        if !present.is_empty() {
            metrics.push((
                format!("rewards/{name}/mean"),
                present.iter().sum::<f64>() / present.len() as f64,
            ));
        }
    }
    let lengths: Vec<f64> = rollouts.iter().map(|(_, t, _)| t.len() as f64).collect();
    metrics.push((
        "completions/mean_length".into(),
        lengths.iter().sum::<f64>() / count,
    ));
    metrics.push((
        "completions/clipped_ratio".into(),
        rollouts.iter().filter(|(_, _, f)| !f).count() as f64 / count,
    ));
    metrics
}
