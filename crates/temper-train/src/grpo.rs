//! Reinforcement learning with verifiable rewards: GRPO as TRL's `GRPOTrainer` runs it.
//!
//! A run goes in rounds. Each round takes the next prompts of a seeded order, samples
//! `num_generations` completions of each with the policy ([`crate::rollout`]), scores them
//! ([`crate::rewards`]: the verifiers each row names, a Rust function, a reward model), turns
//! rewards into group-relative advantages, and, when the round is reused (`num_iterations`
//! above 1) or the loss has a KL term, scores the completions once more with the sampling policy
//! and the reference model, without autodiff. The round then feeds `num_iterations` optimizer
//! steps, each over all its completions in micro-batches of `per_device_train_batch_size`
//! (TRL's generation batch is `per_device_train_batch_size × gradient_accumulation_steps`
//! completions), with the clipped surrogate, the k3 KL and TRL's loss aggregation from
//! `temper_objectives::grpo`.
//!
//! A round is a function of the step and the seed (prompt order, sampling seed), and a
//! checkpoint taken inside a round holds the round itself, so a resumed run continues exactly.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, TensorData};
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{CausalLm, HeadInput};
use temper_objectives::ObjectiveError;
use temper_objectives::grpo::{
    Aggregation, GrpoConfig, GrpoInputs, RewardScaling, group_advantages, grpo_loss,
};
use temper_objectives::metrics::Metrics;

use crate::batch::ModelInputs;
use crate::checkpoint::{CheckpointError, TrainerState};
pub use crate::config::GrpoLoss;
use crate::engine::{MicroBatchLoss, UpdateEngine};
use crate::rewards::RewardBatch;
pub use crate::rl::{RlInputs, evaluate_policy};
use crate::rl::{
    RlTrainer, Round, RoundSteps, Rounds, load_round, save_round, tokens_seen, with_round_metrics,
};
use crate::rollout::{
    CompletionBatch, Rollout, Sampling, completion_log_probs, completion_token_stats,
};
pub use crate::rollout::{Prompts, StepTiming};
use crate::trainer::{StepLog, TrainError, Trainer, TrainingArgs};

/// GRPO's settings (TRL's `GRPOConfig` names).
#[derive(Clone, Debug, PartialEq)]
pub struct GrpoSettings {
    pub sampling: Sampling,
    /// The KL weight β; 0: no reference model.
    pub beta: f64,
    /// The importance ratio is clipped to [1 − `epsilon_low`, 1 + `epsilon_high`].
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    /// How the token losses become the step's loss.
    pub loss_type: GrpoLoss,
    /// The KL estimate weighted by the importance ratio (TRL's `use_bias_correction_kl`).
    pub bias_corrected_kl: bool,
    pub scale_rewards: RewardScaling,
    /// Optimizer steps per round of completions.
    pub num_iterations: usize,
}

/// A GRPO round: its completions with rewards, advantages and scored log-probs.
pub type GrpoRound = Round<Rollout>;

/// A policy trained with GRPO.
pub struct GrpoTrainer<B: AutodiffKernelBackend> {
    engine: UpdateEngine<B>,
    reference: Option<CausalLm<B::InnerBackend>>,
    rounds: Rounds,
    settings: GrpoSettings,
    args: TrainingArgs,
    round: Option<GrpoRound>,
    timing: StepTiming,
}

impl<B: AutodiffKernelBackend> GrpoTrainer<B> {
    /// A trainer at step 0. `inputs.reference` is needed when β ≠ 0.
    pub fn new(
        model: CausalLm<B>,
        settings: GrpoSettings,
        args: TrainingArgs,
        inputs: RlInputs<B::InnerBackend>,
        device: B::Device,
    ) -> Result<Self, TrainError> {
        let generations = settings.sampling.num_generations;
        let per_round = args.per_device_train_batch_size * args.gradient_accumulation_steps;
        if generations < 2 || !per_round.is_multiple_of(generations) {
            return Err(TrainError::Settings(format!(
                "num_generations must be at least 2 and divide the completions of a step \
                 (per_device_train_batch_size × gradient_accumulation_steps = {per_round}); it is {generations}"
            )));
        }
        if settings.num_iterations == 0 || settings.sampling.max_completion_length == 0 {
            return Err(TrainError::Settings(
                "num_iterations and max_completion_length must be at least 1".into(),
            ));
        }
        let (rounds, reference) =
            inputs.into_rounds("GRPO", &model, per_round / generations, false, args.seed)?;
        if settings.beta != 0.0 && reference.is_none() {
            return Err(TrainError::Settings(
                "GRPO with beta != 0 needs a reference model".into(),
            ));
        }
        let updates_per_epoch = rounds.plan.rounds_per_epoch * settings.num_iterations;
        Ok(Self {
            engine: UpdateEngine::new(vec![model], &args, updates_per_epoch, device),
            reference,
            rounds,
            settings,
            args,
            round: None,
            timing: StepTiming::default(),
        })
    }

    /// The round the next steps train on, if one is under way (saved with checkpoints).
    pub fn round(&self) -> Option<&GrpoRound> {
        self.round.as_ref()
    }

    /// Where the last step's time went.
    pub fn last_timing(&self) -> StepTiming {
        self.timing
    }

    /// The prompts (example indices) of round `index` (see [`RoundPlan::prompts`]).
    pub fn round_prompts(&self, index: usize) -> Vec<usize> {
        self.rounds.plan.prompts(index, &self.rounds.prompts)
    }

    /// Makes the next round from completions given rather than sampled (fixed rollouts:
    /// `(prompt index, completion ids, stopped at eos)` in group order): they are rewarded and
    /// scored as sampled ones would be, and the next `num_iterations` steps train on them.
    pub fn set_round_completions(
        &mut self,
        completions: Vec<(usize, Vec<u32>, bool)>,
    ) -> Result<(), TrainError> {
        self.give_round(completions)
    }

    /// Rewards, advantages, round metrics and the log-probs the updates need.
    fn begin_round(
        &mut self,
        index: usize,
        mut rollouts: Vec<Rollout>,
        timing: &mut StepTiming,
    ) -> Result<(), TrainError> {
        let generations = self.settings.sampling.num_generations;
        if rollouts.is_empty() || !rollouts.len().is_multiple_of(generations) {
            return Err(TrainError::Settings(format!(
                "a round holds whole groups of {generations} completions; got {}",
                rollouts.len()
            )));
        }
        let started = Instant::now();
        let scored = self.rounds.score(&rollouts)?;
        let device = self.engine.device().clone();
        let rewards = Tensor::<B::InnerBackend, 1>::from_data(
            TensorData::new(
                scored.rewards.iter().map(|&r| r as f32).collect(),
                [rollouts.len()],
            ),
            &device,
        );
        let advantages =
            group_advantages(rewards.clone(), generations, self.settings.scale_rewards)?;
        let advantages: Vec<f64> = advantages
            .into_data()
            .convert::<f64>()
            .to_vec()
            .unwrap_or_default();
        for ((rollout, reward), advantage) in
            rollouts.iter_mut().zip(&scored.rewards).zip(advantages)
        {
            rollout.reward = *reward;
            rollout.advantage = advantage;
        }
        let tokens_seen = tokens_seen(self.round.as_ref().map_or(0, |r| r.tokens_seen), &rollouts);
        let mut metrics =
            round_metrics(&rollouts, &scored, generations, self.settings.scale_rewards);
        metrics.push(("num_tokens".into(), tokens_seen as f64));
        timing.scoring = started.elapsed();

        let started = Instant::now();
        let temperature = self.settings.sampling.temperature;
        let pad = self.rounds.stops.pad_token_id;
        let batch = self.args.per_device_train_batch_size;
        let rows: Vec<&Rollout> = rollouts.iter().collect();
        let old = if self.settings.num_iterations > 1 {
            let policy = self.model().valid();
            Some(completion_log_probs(
                &policy,
                &rows,
                temperature,
                pad,
                batch,
                &device,
            )?)
        } else {
            None
        };
        let reference = match (&self.reference, self.settings.beta != 0.0) {
            (Some(reference), true) => Some(completion_log_probs(
                reference,
                &rows,
                temperature,
                pad,
                batch,
                &device,
            )?),
            _ => None,
        };
        drop(rows);
        for (i, rollout) in rollouts.iter_mut().enumerate() {
            rollout.old_logps = old.as_ref().map(|o| o[i].clone());
            rollout.ref_logps = reference.as_ref().map(|r| r[i].clone());
        }
        timing.training += started.elapsed();
        self.round = Some(Round {
            index,
            rollouts,
            metrics,
            tokens_seen,
        });
        Ok(())
    }

    /// One optimizer step over the current round's completions.
    fn update_from_round(&mut self, first_of_round: bool) -> Result<StepLog, TrainError> {
        let round = self
            .round
            .as_ref()
            .expect("a round is made before its updates");
        let rows: Vec<&Rollout> = round.rollouts.iter().collect();
        let micro_batches: Vec<&[&Rollout]> =
            rows.chunks(self.args.per_device_train_batch_size).collect();
        let total_tokens: usize = rows.iter().map(|r| r.completion_ids.len()).sum();
        let settings = &self.settings;
        let aggregation = match settings.loss_type {
            GrpoLoss::Grpo => Aggregation::Grpo,
            GrpoLoss::Bnpo => Aggregation::Bnpo,
            GrpoLoss::DrGrpo => Aggregation::DrGrpo {
                max_completion_length: settings.sampling.max_completion_length,
            },
            GrpoLoss::Dapo => Aggregation::Dapo {
                total_tokens: total_tokens as f64,
            },
        };
        // DAPO divides by the whole step's tokens already; the others are per micro-batch means.
        let scale = match aggregation {
            Aggregation::Dapo { .. } => 1.0,
            _ => 1.0 / micro_batches.len() as f64,
        };
        let update = GrpoUpdate {
            micro_batches,
            config: GrpoConfig {
                beta: settings.beta,
                epsilon_low: settings.epsilon_low,
                epsilon_high: settings.epsilon_high,
                aggregation,
                bias_corrected_kl: settings.bias_corrected_kl,
            },
            scale,
            temperature: self.settings.sampling.temperature,
            pad_id: self.rounds.stops.pad_token_id,
            device: self.engine.device().clone(),
        };
        let records: Vec<usize> = round
            .rollouts
            .iter()
            .step_by(self.settings.sampling.num_generations)
            .map(|r| r.prompt_index)
            .collect();
        let log = self.engine.update(&update, records)?;
        Ok(if first_of_round {
            with_round_metrics(log, &round.metrics)
        } else {
            log
        })
    }
}

/// The micro-batches of one GRPO update and how each is scored.
struct GrpoUpdate<'a, B: AutodiffKernelBackend> {
    micro_batches: Vec<&'a [&'a Rollout]>,
    /// The loss, its aggregation filled in for this step.
    config: GrpoConfig,
    scale: f64,
    temperature: f64,
    pad_id: u32,
    device: B::Device,
}

impl<B: AutodiffKernelBackend> MicroBatchLoss<B> for GrpoUpdate<'_, B> {
    type Batch = (CompletionBatch<B>, GrpoTerms<B>);

    fn micro_batches(&self) -> usize {
        self.micro_batches.len()
    }

    fn batch(&self, index: usize) -> (Self::Batch, ModelInputs<B>) {
        let micro = self.micro_batches[index];
        let batch = CompletionBatch::<B>::new(micro, self.pad_id, &self.device);
        let per_token = |pick: fn(&Rollout) -> Option<&Vec<f32>>| {
            let values: Option<Vec<&[f32]>> =
                micro.iter().map(|r| pick(r).map(Vec::as_slice)).collect();
            values.map(|v| batch.per_token(&v, &self.device))
        };
        let terms = GrpoTerms {
            old_logps: per_token(|r| r.old_logps.as_ref()),
            ref_logps: per_token(|r| r.ref_logps.as_ref()),
            advantages: Tensor::from_data(
                TensorData::new(
                    micro.iter().map(|r| r.advantage as f32).collect(),
                    [micro.len()],
                ),
                &self.device,
            ),
        };
        let inputs = batch.inputs();
        ((batch, terms), inputs)
    }

    fn loss(
        &self,
        _model: usize,
        head: &HeadInput<'_, B>,
        (batch, terms): &Self::Batch,
    ) -> Result<(Tensor<B, 1>, Metrics<B>), ObjectiveError> {
        let stats = completion_token_stats(head, batch, self.temperature)?;
        let mask = batch.completion_mask.clone();
        let entropy =
            (stats.entropy.clone() * mask.clone()).sum() / mask.clone().sum().clamp_min(1.0);
        let inputs = GrpoInputs {
            logps: stats.log_probs,
            old_logps: terms.old_logps.clone(),
            ref_logps: terms.ref_logps.clone(),
            mask,
            advantages: terms.advantages.clone(),
        };
        let mut output = grpo_loss(&self.config, &inputs)?;
        output.metrics.push("entropy", entropy);
        Ok((output.loss.mul_scalar(self.scale), output.metrics))
    }
}

/// A micro-batch's per-completion terms of the GRPO loss.
struct GrpoTerms<B: KernelBackend> {
    /// The sampling policy's log-probs `[rows, C]` (rounds reused over several steps).
    old_logps: Option<Tensor<B, 2>>,
    /// The reference model's log-probs `[rows, C]` (β ≠ 0).
    ref_logps: Option<Tensor<B, 2>>,
    /// `[rows]`.
    advantages: Tensor<B, 1>,
}

impl<B: AutodiffKernelBackend> RoundSteps<B> for GrpoTrainer<B> {
    fn steps_per_round(&self) -> usize {
        self.settings.num_iterations
    }
    fn held_round(&self) -> Option<usize> {
        self.round.as_ref().map(|round| round.index)
    }
    fn rounds(&self) -> &Rounds {
        &self.rounds
    }
    fn sampling(&self) -> &Sampling {
        &self.settings.sampling
    }
    fn start_round(
        &mut self,
        index: usize,
        rollouts: Vec<Rollout>,
        timing: &mut StepTiming,
    ) -> Result<(), TrainError> {
        self.begin_round(index, rollouts, timing)
    }
    fn update(&mut self, first_of_round: bool) -> Result<StepLog, TrainError> {
        self.update_from_round(first_of_round)
    }
    fn set_timing(&mut self, timing: StepTiming) {
        self.timing = timing;
    }
}

impl<B: AutodiffKernelBackend> Trainer<B> for GrpoTrainer<B> {
    /// The next update, sampling a new round first when the last one is used up.
    fn step(&mut self) -> Result<StepLog, TrainError> {
        self.round_step()
    }
    fn engine(&self) -> &UpdateEngine<B> {
        &self.engine
    }
    /// The optimizer and the last round: the next step reuses the round when the checkpoint
    /// falls inside it (`num_iterations` above 1), and the next round counts `num_tokens` on
    /// from it.
    fn save_state(&self, dir: &Path) -> Result<(), CheckpointError> {
        self.engine.save_state(dir)?;
        match &self.round {
            Some(round) => save_round(round, dir),
            None => Ok(()),
        }
    }
    fn load_state(&mut self, dir: &Path) -> Result<TrainerState, CheckpointError> {
        let state = self.engine.load_state(dir)?;
        self.round = load_round(dir)?;
        Ok(state)
    }
}

/// TRL's metrics of a generation batch: completion lengths (all, and of those that ended at
/// eos), the share cut off, each reward part's mean and std over the completions it applies
/// to, the reward's mean and std, and the share of completions whose group (or batch, with
/// `scale_rewards = batch`) has rewards of std 0.
fn round_metrics(
    rollouts: &[Rollout],
    scored: &RewardBatch,
    generations: usize,
    scaling: RewardScaling,
) -> Vec<(String, f64)> {
    let lengths: Vec<f64> = rollouts
        .iter()
        .map(|r| r.completion_ids.len() as f64)
        .collect();
    let terminated: Vec<f64> = rollouts
        .iter()
        .filter(|r| r.finished)
        .map(|r| r.completion_ids.len() as f64)
        .collect();
    let (mean, min, max) = (
        |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        },
        |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min),
        |v: &[f64]| v.iter().copied().fold(0.0, f64::max),
    );
    let or_zero = |v: &[f64], f: &dyn Fn(&[f64]) -> f64| if v.is_empty() { 0.0 } else { f(v) };
    let mut metrics = vec![
        ("completions/mean_length".to_string(), mean(&lengths)),
        (
            "completions/min_length".to_string(),
            or_zero(&lengths, &min),
        ),
        ("completions/max_length".to_string(), max(&lengths)),
        (
            "completions/clipped_ratio".to_string(),
            1.0 - terminated.len() as f64 / lengths.len().max(1) as f64,
        ),
        (
            "completions/mean_terminated_length".to_string(),
            mean(&terminated),
        ),
        (
            "completions/min_terminated_length".to_string(),
            or_zero(&terminated, &min),
        ),
        (
            "completions/max_terminated_length".to_string(),
            max(&terminated),
        ),
    ];
    for (name, values) in &scored.parts {
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let (m, s) = if present.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (mean(&present), unbiased_std(&present))
        };
        if m.is_finite() {
            metrics.push((format!("rewards/{name}/mean"), m));
            metrics.push((format!("rewards/{name}/std"), s));
        }
    }
    metrics.push(("reward".into(), mean(&scored.rewards)));
    metrics.push(("reward_std".into(), unbiased_std(&scored.rewards)));
    let zero_std = match scaling {
        RewardScaling::Batch => {
            let flat = unbiased_std(&scored.rewards).abs() < 1e-8;
            if flat { 1.0 } else { 0.0 }
        }
        RewardScaling::Group | RewardScaling::None => {
            let groups: Vec<&[f64]> = scored.rewards.chunks(generations).collect();
            groups
                .iter()
                .filter(|g| unbiased_std(g).abs() < 1e-8)
                .count() as f64
                / groups.len().max(1) as f64
        }
    };
    metrics.push(("frac_reward_zero_std".into(), zero_std));
    metrics
}

/// torch's `std` (Bessel-corrected); NaN for fewer than two values, as torch.
fn unbiased_std(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return f64::NAN;
    }
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

impl<B: AutodiffKernelBackend> RlTrainer<B> for GrpoTrainer<B> {
    fn evaluate(
        &self,
        prompts: &Prompts,
        batch_size: usize,
    ) -> Result<Vec<(String, f64)>, TrainError> {
        let policy = self.model().valid();
        let max_completion_length = self.settings.sampling.max_completion_length;
        self.rounds
            .evaluate(&policy, prompts, max_completion_length, batch_size)
    }
}
