//! PPO with a value head and GAE, as TRL's `PPOTrainer` runs it (RLHF with a reward model, or
//! Tülu 3's RLVR with the verifiers): one completion per prompt, per-token rewards of
//! `−kl_coef · KL` plus the score at the last token, GAE advantages (whitened) and returns,
//! then `num_ppo_epochs × num_mini_batches` updates of the policy (clipped surrogate) and the
//! value model (clipped value loss) together.

mod update;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use temper_data::batch::{BatchOrder, batch_indices};
use temper_kernels::AutodiffKernelBackend;
use temper_model::{CausalLm, SaveOptions, ScoreHeadInit, load_reward_model, save_model};
pub use temper_objectives::ppo::KlEstimator;
use temper_objectives::ppo::{ShapedRewards, gae, masked_whiten, shape_rewards};

use crate::checkpoint::{CheckpointError, OPTIMIZER_FILE, TrainerState};
use crate::engine::{UpdateEngine, step_seed};
use crate::optimizer::AdamW;
use crate::rl::{
    RlInputs, RlTrainer, Round, RoundSteps, Rounds, load_round, save_round, tokens_seen,
    with_round_metrics,
};
use crate::rollout::{
    Prompts, Rollout, Sampling, StepTiming, completion_log_probs, padded_rows, score_completions,
};
use crate::trainer::{StepLog, TrainError, Trainer, TrainingArgs};
use update::{PpoUpdate, completion_scores};

/// PPO's settings (TRL's `PPOConfig` names and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct PpoSettings {
    pub sampling: crate::rollout::Sampling,
    pub num_ppo_epochs: usize,
    pub num_mini_batches: usize,
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub cliprange: f64,
    pub vf_coef: f64,
    pub cliprange_value: f64,
    pub gamma: f64,
    pub lam: f64,
    pub whiten_rewards: bool,
    /// Subtracted from the score of a completion that did not end at eos.
    pub missing_eos_penalty: Option<f64>,
}

/// Where a PPO checkpoint keeps the value model and its optimizer.
pub const VALUE_MODEL_DIR: &str = "value_model";

/// One completion of a PPO round with everything its updates need: the [`Rollout`] (its
/// `reward` is the score, the missing-eos penalty applied; `old_logps` the sampling policy's
/// log-probs and `ref_logps` the reference's, per completion token) and, per completion token,
/// the value model's values at sampling time, the whitened advantages and the returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoRollout {
    pub rollout: Rollout,
    pub values: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
}

/// A PPO round: its completions with values, advantages and returns.
pub type PpoRound = Round<PpoRollout>;

/// A policy and its value model trained with PPO, as TRL's `PPOTrainer`, with these
/// differences:
///
/// - Rewards, values, advantages and the value loss live on the completion tokens: the score is
///   added at each completion's last token. TRL adds it one position past the last token that
///   is not padding, and keeps the value there in its value loss (`padding_mask_p1`).
/// - Each step logs its own mini-batch's `policy/*`, `loss/*` and `val/*` metrics (micro-batch
///   means), where TRL logs their mean over the whole round once; `policy/approxkl_avg`,
///   `policy/entropy_avg` and `val/ratio` are means over completion tokens, where TRL's include
///   padding positions.
/// - The policy loss and `vf_coef ×` the value loss are backpropagated through each model on
///   its own (the gradients are those of their sum, as the two models share no parameters), so
///   gradient checkpointing and LoRA dropout work as in the other trainers; clipping takes the
///   global norm over both, and each model has its own AdamW at the same learning rate (which
///   is one AdamW over both parameter sets).
/// - Each epoch's prompts are cut into rounds with the last, incomplete one dropped (as TRL's
///   dataloader), and each round's rows are reshuffled every PPO epoch from a permutation seeded
///   by (seed, round, epoch).
pub struct PpoTrainer<B: AutodiffKernelBackend> {
    /// Trains the policy (model 0) and the value model (model 1).
    engine: UpdateEngine<B>,
    reference: CausalLm<B::InnerBackend>,
    rounds: Rounds,
    settings: PpoSettings,
    args: TrainingArgs,
    round: Option<PpoRound>,
    /// Where the value model's config and tokenizer files are copied from when it is saved.
    value_model_source: Option<PathBuf>,
    timing: StepTiming,
}

impl<B: AutodiffKernelBackend> PpoTrainer<B> {
    /// A trainer at step 0. `value_model` has a score head with one label; `inputs.reference`
    /// is required: the initial policy (the KL penalty's reference), as TRL's `ref_model`.
    pub fn new(
        policy: CausalLm<B>,
        value_model: CausalLm<B>,
        settings: PpoSettings,
        args: TrainingArgs,
        inputs: RlInputs<B::InnerBackend>,
        device: B::Device,
    ) -> Result<Self, TrainError> {
        if value_model.num_labels() != Some(1) {
            return Err(TrainError::Settings(
                "PPO's value model needs a score head with one label".into(),
            ));
        }
        if settings.sampling.num_generations != 1 {
            return Err(TrainError::Settings(format!(
                "PPO samples one completion per prompt; num_generations is {}",
                settings.sampling.num_generations
            )));
        }
        if settings.num_ppo_epochs == 0
            || settings.num_mini_batches == 0
            || settings.sampling.max_completion_length == 0
            || args.per_device_train_batch_size == 0
            || args.gradient_accumulation_steps == 0
        {
            return Err(TrainError::Settings(
                "num_ppo_epochs, num_mini_batches, max_completion_length, \
                 per_device_train_batch_size and gradient_accumulation_steps must be at least 1"
                    .into(),
            ));
        }
        let prompts_per_round = args.per_device_train_batch_size
            * args.gradient_accumulation_steps
            * settings.num_mini_batches;
        // TRL's dataloader drops the last, incomplete batch of each epoch.
        let (rounds, reference) =
            inputs.into_rounds("PPO", &policy, prompts_per_round, true, args.seed)?;
        if rounds.prompts.rows.len() < prompts_per_round {
            return Err(TrainError::Settings(format!(
                "a PPO round takes per_device_train_batch_size × gradient_accumulation_steps × \
                 num_mini_batches = {prompts_per_round} prompts; the data holds {}",
                rounds.prompts.rows.len()
            )));
        }
        let reference = reference.ok_or_else(|| {
            TrainError::Settings("PPO needs a reference model for its KL penalty".into())
        })?;
        let steps_per_epoch =
            rounds.plan.rounds_per_epoch * settings.num_ppo_epochs * settings.num_mini_batches;
        Ok(Self {
            engine: UpdateEngine::new(vec![policy, value_model], &args, steps_per_epoch, device),
            reference,
            rounds,
            settings,
            args,
            round: None,
            value_model_source: None,
            timing: StepTiming::default(),
        })
    }

    /// Where the value model came from (its `config.json` and tokenizer files are copied into
    /// checkpoints beside its weights); checkpoints need it.
    pub fn with_value_model_source(mut self, dir: impl Into<PathBuf>) -> Self {
        self.value_model_source = Some(dir.into());
        self
    }

    pub fn value_model(&self) -> &CausalLm<B> {
        self.engine.model(1)
    }

    pub fn value_optimizer(&self) -> &AdamW<B::InnerBackend> {
        self.engine.optimizer(1)
    }

    /// The round the next steps train on, if one is under way.
    pub fn round(&self) -> Option<&PpoRound> {
        self.round.as_ref()
    }

    pub fn last_timing(&self) -> StepTiming {
        self.timing
    }

    /// The prompts (example indices) of round `index` (see [`RoundPlan::prompts`]; an epoch's
    /// last, incomplete round is dropped, as TRL's dataloader drops it).
    pub fn round_prompts(&self, index: usize) -> Vec<usize> {
        self.rounds.plan.prompts(index, &self.rounds.prompts)
    }

    /// The rows (positions in the round) of the mini-batches of PPO epoch `epoch` of round
    /// `round`: a seeded permutation of the round's rows, fresh every epoch (TRL's
    /// `np.random.permutation`), cut into `num_mini_batches` parts.
    pub fn mini_batches(&self, round: usize, epoch: usize, rows: usize) -> Vec<Vec<usize>> {
        let seed = step_seed(self.args.seed, round as u64).wrapping_add(0x0550);
        let order = batch_indices(
            &vec![0; rows],
            rows.max(1),
            BatchOrder::Shuffled,
            seed,
            epoch as u64,
            false,
        )
        .into_iter()
        .next()
        .unwrap_or_default();
        let size = rows.div_ceil(self.settings.num_mini_batches).max(1);
        order.chunks(size).map(<[usize]>::to_vec).collect()
    }

    /// Makes the next round from completions given rather than sampled (`(prompt index,
    /// completion ids, stopped at eos)`): they are scored as sampled ones would be, and the
    /// round's `num_ppo_epochs × num_mini_batches` steps train on them.
    pub fn set_round_completions(
        &mut self,
        completions: Vec<(usize, Vec<u32>, bool)>,
    ) -> Result<(), TrainError> {
        self.give_round(completions)
    }

    /// Scores, log-probs, values, per-token rewards, advantages and returns of a round, and
    /// its metrics (all without autodiff).
    fn begin_round(
        &mut self,
        index: usize,
        rollouts: Vec<Rollout>,
        timing: &mut StepTiming,
    ) -> Result<(), TrainError> {
        if rollouts.is_empty() {
            return Err(TrainError::Settings("a PPO round needs completions".into()));
        }
        if let Some(empty) = rollouts.iter().find(|r| r.completion_ids.is_empty()) {
            return Err(TrainError::Record {
                index: empty.prompt_index,
                reason: "an empty completion has no token to put its score on".into(),
            });
        }
        let started = Instant::now();
        let scored = self.rounds.score(&rollouts)?;
        let scores: Vec<f64> = rollouts
            .iter()
            .zip(&scored.rewards)
            .map(|(r, &score)| match self.settings.missing_eos_penalty {
                Some(penalty) if !r.finished => score - penalty,
                _ => score,
            })
            .collect();
        timing.scoring = started.elapsed();

        let started = Instant::now();
        let device = self.engine.device().clone();
        let temperature = self.settings.sampling.temperature;
        let pad = self.rounds.stops.pad_token_id;
        let batch = self.args.per_device_train_batch_size;
        let rows: Vec<&Rollout> = rollouts.iter().collect();
        let policy = self.model().valid();
        let logps = completion_log_probs(&policy, &rows, temperature, pad, batch, &device)?;
        drop(policy);
        let ref_logps =
            completion_log_probs(&self.reference, &rows, temperature, pad, batch, &device)?;
        let value_model = self.value_model().valid();
        let Ok(values) =
            score_completions(&value_model, &rows, pad, batch, &device, |head, batch| {
                Ok::<_, std::convert::Infallible>(completion_scores(head.logits(), batch))
            });
        drop(value_model);

        // The round as [N, C] tensors, padding 0 and masked out.
        let lengths: Vec<usize> = rollouts.iter().map(|r| r.completion_ids.len()).collect();
        let width = lengths.iter().copied().max().unwrap_or(0);
        let n = rollouts.len();
        let padded = |rows: &[Vec<f32>]| -> Tensor<B::InnerBackend, 2> {
            let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            padded_rows(&rows, width, &device)
        };
        let mask = padded(&lengths.iter().map(|&l| vec![1.0f32; l]).collect::<Vec<_>>());
        let at_end = padded(
            &lengths
                .iter()
                .zip(&scores)
                .map(|(&l, &s)| {
                    let mut row = vec![0.0f32; l];
                    row[l - 1] = s as f32;
                    row
                })
                .collect::<Vec<_>>(),
        );
        let logp = padded(&logps);
        let values_t = padded(&values) * mask.clone();
        let ShapedRewards {
            rewards,
            kl,
            non_score,
        } = shape_rewards(
            logp.clone(),
            padded(&ref_logps),
            at_end,
            mask.clone(),
            self.settings.kl_coef,
            self.settings.kl_estimator,
            self.settings.whiten_rewards,
        )?;
        let (advantages, returns) = gae(rewards, values_t, self.settings.gamma, self.settings.lam)?;
        let advantages = masked_whiten(advantages, mask.clone(), true) * mask.clone();
        let rows_of = |t: Tensor<B::InnerBackend, 2>| -> Vec<Vec<f32>> {
            let flat: Vec<f32> = t.into_data().convert::<f32>().to_vec().unwrap_or_default();
            lengths
                .iter()
                .enumerate()
                .map(|(i, &l)| flat[i * width..i * width + l].to_vec())
                .collect()
        };
        let row_sums = |t: Tensor<B::InnerBackend, 2>| -> f64 {
            let flat: Vec<f64> = t.into_data().convert::<f64>().to_vec().unwrap_or_default();
            flat.iter().sum::<f64>() / n as f64
        };
        let mean_kl = row_sums(kl);
        let mean_non_score = row_sums(non_score);
        let mean_entropy = -row_sums(logp * mask);
        let advantages = rows_of(advantages);
        let returns = rows_of(returns);
        timing.training += started.elapsed();

        let mean_score = scores.iter().sum::<f64>() / n as f64;
        let eos = &self.rounds.stops.eos_token_ids;
        let eos_tokens = rollouts
            .iter()
            .flat_map(|r| &r.completion_ids)
            .filter(|t| eos.contains(t))
            .count();
        let tokens_seen = tokens_seen(self.round.as_ref().map_or(0, |r| r.tokens_seen), &rollouts);
        let metrics = vec![
            ("objective/kl".to_string(), mean_kl),
            ("objective/entropy".to_string(), mean_entropy),
            ("objective/non_score_reward".to_string(), mean_non_score),
            (
                "objective/rlhf_reward".to_string(),
                mean_non_score + mean_score,
            ),
            ("objective/scores".to_string(), mean_score),
            ("val/num_eos_tokens".to_string(), eos_tokens as f64),
            ("reward".to_string(), mean_score),
            (
                "completions/mean_length".to_string(),
                lengths.iter().sum::<usize>() as f64 / n as f64,
            ),
            ("num_tokens".to_string(), tokens_seen as f64),
        ];
        let rollouts = rollouts
            .into_iter()
            .zip(scores)
            .zip(logps)
            .zip(ref_logps)
            .zip(values)
            .zip(advantages.into_iter().zip(returns))
            .map(
                |(((((mut rollout, score), logps), ref_logps), values), (advantages, returns))| {
                    rollout.reward = score;
                    rollout.old_logps = Some(logps);
                    rollout.ref_logps = Some(ref_logps);
                    PpoRollout {
                        rollout,
                        values,
                        advantages,
                        returns,
                    }
                },
            )
            .collect();
        self.round = Some(Round {
            index,
            rollouts,
            metrics,
            tokens_seen,
        });
        Ok(())
    }

    /// One optimizer update of both models on one mini-batch of the current round.
    fn update_from_round(&mut self) -> Result<StepLog, TrainError> {
        let within = self.engine.steps_done() % self.steps_per_round();
        let (epoch, mini) = (
            within / self.settings.num_mini_batches,
            within % self.settings.num_mini_batches,
        );
        let round = self
            .round
            .as_ref()
            .expect("a round is made before its updates");
        let mini_batches = self.mini_batches(round.index, epoch, round.rollouts.len());
        let chosen: Vec<&PpoRollout> = mini_batches
            .get(mini)
            .map(|rows| rows.iter().map(|&i| &round.rollouts[i]).collect())
            .unwrap_or_default();
        let records: Vec<usize> = chosen.iter().map(|r| r.rollout.prompt_index).collect();
        let micro_batches: Vec<&[&PpoRollout]> = chosen
            .chunks(self.args.per_device_train_batch_size)
            .collect();
        let update = PpoUpdate {
            scale: 1.0 / micro_batches.len().max(1) as f64,
            micro_batches,
            settings: &self.settings,
            pad_id: self.rounds.stops.pad_token_id,
            device: self.engine.device().clone(),
        };
        let log = self.engine.update(&update, records)?;
        Ok(if within == 0 {
            with_round_metrics(log, &round.metrics)
        } else {
            log
        })
    }
}

impl<B: AutodiffKernelBackend> RoundSteps<B> for PpoTrainer<B> {
    /// `num_ppo_epochs × num_mini_batches`.
    fn steps_per_round(&self) -> usize {
        self.settings.num_ppo_epochs * self.settings.num_mini_batches
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
    /// PPO logs a round's metrics with every step's own.
    fn update(&mut self, _first_of_round: bool) -> Result<StepLog, TrainError> {
        self.update_from_round()
    }
    fn set_timing(&mut self, timing: StepTiming) {
        self.timing = timing;
    }
}

impl<B: AutodiffKernelBackend> Trainer<B> for PpoTrainer<B> {
    /// The next update, sampling and scoring a new round first when the last one is used up.
    fn step(&mut self) -> Result<StepLog, TrainError> {
        self.round_step()
    }
    fn engine(&self) -> &UpdateEngine<B> {
        &self.engine
    }
    fn load_state(&mut self, dir: &Path) -> Result<TrainerState, CheckpointError> {
        let state = self.engine.load_state(dir)?;
        let (value_model, value_optimizer) = load_value_state::<B>(
            dir,
            Some(self.rounds.stops.pad_token_id),
            self.engine.device(),
        )?;
        self.engine.restore(1, value_model, value_optimizer);
        self.round = load_round(dir)?;
        Ok(state)
    }
    /// The policy's optimizer, the value model and its optimizer (`value_model/`), and the
    /// last round.
    fn save_state(&self, dir: &Path) -> Result<(), CheckpointError> {
        self.engine.save_state(dir)?;
        let source = self
            .value_model_source
            .as_ref()
            .ok_or_else(|| CheckpointError::State {
                path: dir.join(VALUE_MODEL_DIR),
                reason: "the value model's source directory is not known \
                         (PpoTrainer::with_value_model_source)"
                    .into(),
            })?;
        let value_dir = dir.join(VALUE_MODEL_DIR);
        save_model(
            self.value_model(),
            source,
            &value_dir,
            &SaveOptions::default(),
        )?;
        self.value_optimizer()
            .save(&value_dir.join(OPTIMIZER_FILE))?;
        // The last round: reused when the checkpoint falls inside it, and `num_tokens` counts
        // on from it.
        match &self.round {
            Some(round) => save_round(round, dir),
            None => Ok(()),
        }
    }
}

/// The value model and its optimizer state saved in a PPO checkpoint (`checkpoint_dir/value_model`).
pub fn load_value_state<B: AutodiffKernelBackend>(
    checkpoint_dir: &Path,
    pad_token_id: Option<u32>,
    device: &B::Device,
) -> Result<(CausalLm<B>, AdamW<B::InnerBackend>), CheckpointError> {
    let dir = checkpoint_dir.join(VALUE_MODEL_DIR);
    let init = ScoreHeadInit {
        num_labels: 1,
        pad_token_id,
        seed: 0,
    };
    let (_, model) =
        load_reward_model::<B>(&dir, &init, device).map_err(|e| CheckpointError::State {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
    let optimizer = AdamW::load(&dir.join(OPTIMIZER_FILE), device)?;
    Ok((model, optimizer))
}

impl<B: AutodiffKernelBackend> RlTrainer<B> for PpoTrainer<B> {
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
