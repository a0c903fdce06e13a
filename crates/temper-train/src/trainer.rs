//! The step loop every trainer shares: batches in a seeded order, gradient accumulation with
//! the Trainer's loss normalisation, clipping by the global norm, AdamW, the schedule, and the
//! metrics of each step with TRL's names.
//!
//! Which batches update `k` uses is a function of `k` and the seed alone (epoch `k / u`, the
//! `k mod u`-th group of micro-batches of that epoch's seeded order, `u` updates per epoch), so a
//! run resumed at step `k` sees exactly the batches the uninterrupted run would have.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use temper_data::Tokenized;
use temper_data::batch::{BatchOrder, batch_indices};
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{CausalLm, GradientCheckpointing, loss_and_gradients};
use temper_objectives::{ObjectiveError, PairLogProbs};

use crate::batch::DeviceBatch;
use crate::clip::clip_global_norm;
use crate::objective::Objective;
use crate::optimizer::{AdamW, AdamWConfig};
use crate::reference::{Reference, pair_log_probs};
use crate::schedule::{Schedule, ScheduleKind};

/// The run's settings, with transformers' `TrainingArguments` names and defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingArgs {
    /// Stop after this many optimizer steps (overrides `num_train_epochs`).
    pub max_steps: Option<usize>,
    pub num_train_epochs: f64,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub lr_scheduler_type: ScheduleKind,
    pub warmup_steps: usize,
    /// Used when `warmup_steps` is 0.
    pub warmup_ratio: f64,
    pub optimizer: AdamWConfig,
    /// Clip to this global gradient norm; 0 disables clipping.
    pub max_grad_norm: f64,
    pub seed: u64,
    pub batch_order: BatchOrder,
    pub gradient_checkpointing: bool,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        Self {
            max_steps: None,
            num_train_epochs: 3.0,
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 5e-5,
            lr_scheduler_type: ScheduleKind::Linear,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            optimizer: AdamWConfig::default(),
            max_grad_norm: 1.0,
            seed: 42,
            batch_order: BatchOrder::Shuffled,
            gradient_checkpointing: false,
        }
    }
}

impl TrainingArgs {
    /// The run's learning-rate schedule: `max_steps` updates, else `num_train_epochs` epochs of
    /// `updates_per_epoch`; warm-up from `warmup_steps`, else from `warmup_ratio`.
    pub fn schedule(&self, updates_per_epoch: usize) -> Schedule {
        let total_steps = self
            .max_steps
            .unwrap_or_else(|| (self.num_train_epochs * updates_per_epoch as f64).ceil() as usize);
        let warmup_steps = if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            Schedule::warmup_from_ratio(self.warmup_ratio, total_steps)
        };
        Schedule {
            kind: self.lr_scheduler_type,
            peak: self.learning_rate,
            warmup_steps,
            total_steps,
        }
    }
}

/// What one optimizer step logged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    /// 1-based: the number of updates done, as the Trainer's `global_step`.
    pub step: usize,
    /// Fractional epochs done after this update.
    pub epoch: f64,
    /// The loss of the batch used for this update, computed before it.
    pub loss: f64,
    /// The rate this update used.
    pub learning_rate: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The objective's metrics (TRL's names), averaged over the micro-batches.
    pub metrics: Vec<(String, f64)>,
    /// The examples this update trained on, in batch order.
    pub records: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the training data is empty")]
    NoData,
    #[error("record {index}: {reason}")]
    Record { index: usize, reason: String },
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Objective(#[from] ObjectiveError),
    #[error("step {step}: the {what} is {value} (records {records:?}); stopped before updating")]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f64,
        records: Vec<usize>,
    },
}

/// The seed of the backend's generator for update `step` (LoRA dropout draws from it), so that
/// a resumed run draws what the uninterrupted run drew; RL rounds derive their seeds likewise.
pub(crate) fn step_seed(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(step)
}

/// Sums of named metrics over an update's micro-batches (or an evaluation's batches), in the
/// order they first appear.
#[derive(Debug, Default)]
pub(crate) struct MetricSums(Vec<(String, f64)>);

impl MetricSums {
    pub(crate) fn add(&mut self, name: &str, value: f64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Each sum divided by `count`.
    pub(crate) fn means(self, count: f64) -> Vec<(String, f64)> {
        self.0
            .into_iter()
            .map(|(name, sum)| (name, sum / count))
            .collect()
    }
}

/// The NaN guard of every trainer: an error naming update `step` (0-based) and its records when
/// the loss or the gradient norm is not finite, so the update is not made.
pub(crate) fn check_finite(
    step: usize,
    loss: f64,
    grad_norm: f64,
    records: &[usize],
) -> Result<(), TrainError> {
    for (what, value) in [("loss", loss), ("gradient norm", grad_norm)] {
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                what,
                value,
                records: records.to_vec(),
            });
        }
    }
    Ok(())
}

/// A loss or metric tensor `[1]` as a number (NaN if it cannot be read).
pub(crate) fn scalar<B: KernelBackend>(value: Tensor<B, 1>) -> f64 {
    value
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// What the run loop ([`crate::run`]) and checkpoints need of a trainer: [`Trainer`] (SFT and
/// the preference objectives), [`crate::rlvr::RlvrTrainer`] (GRPO) and
/// [`crate::ppo::PpoTrainer`].
pub trait Steps<B: AutodiffKernelBackend> {
    /// Makes the next optimizer update and returns what it logged.
    fn step(&mut self) -> Result<StepLog, TrainError>;
    fn steps_done(&self) -> usize;
    fn total_steps(&self) -> usize;
    fn epochs_done(&self) -> f64;
    /// The policy (the model the run outputs).
    fn model(&self) -> &CausalLm<B>;
    fn optimizer(&self) -> &AdamW<B::InnerBackend>;
    /// Writes into a checkpoint directory whatever else resuming exactly needs (a round of
    /// rollouts under way, a value model).
    fn save_state(&self, _dir: &std::path::Path) -> Result<(), crate::checkpoint::CheckpointError> {
        Ok(())
    }
}

impl<B: AutodiffKernelBackend> Steps<B> for Trainer<B> {
    fn step(&mut self) -> Result<StepLog, TrainError> {
        Trainer::step(self)
    }
    fn steps_done(&self) -> usize {
        Trainer::steps_done(self)
    }
    fn total_steps(&self) -> usize {
        Trainer::total_steps(self)
    }
    fn epochs_done(&self) -> f64 {
        Trainer::epochs_done(self)
    }
    fn model(&self) -> &CausalLm<B> {
        Trainer::model(self)
    }
    fn optimizer(&self) -> &AdamW<B::InnerBackend> {
        Trainer::optimizer(self)
    }
}

/// A model being trained, with its optimizer and position in the run.
pub struct Trainer<B: AutodiffKernelBackend> {
    model: Option<CausalLm<B>>,
    optimizer: AdamW<B::InnerBackend>,
    objective: Objective,
    args: TrainingArgs,
    examples: Vec<Tokenized>,
    lengths: Vec<usize>,
    reference: Reference<B::InnerBackend>,
    pad_id: u32,
    schedule: Schedule,
    updates_per_epoch: usize,
    step: usize,
    device: B::Device,
}

impl<B: AutodiffKernelBackend> Trainer<B> {
    /// A trainer at step 0. `examples` must all be sequences (SFT) or all pairs (preference
    /// objectives); `reference` is needed by objectives with a reference model (DPO).
    pub fn new(
        model: CausalLm<B>,
        objective: Objective,
        args: TrainingArgs,
        examples: Vec<Tokenized>,
        reference: Reference<B::InnerBackend>,
        pad_id: u32,
        device: B::Device,
    ) -> Result<Self, TrainError> {
        if examples.is_empty() {
            return Err(TrainError::NoData);
        }
        objective.check_model(&model)?;
        if args.per_device_train_batch_size == 0 || args.gradient_accumulation_steps == 0 {
            return Err(TrainError::Settings(
                "per_device_train_batch_size and gradient_accumulation_steps must be at least 1"
                    .into(),
            ));
        }
        let lengths = example_lengths(&examples, &objective)?;
        check_reference(&objective, &reference, examples.len())?;
        let micro_per_epoch = examples.len().div_ceil(args.per_device_train_batch_size);
        let updates_per_epoch = micro_per_epoch.div_ceil(args.gradient_accumulation_steps);
        Ok(Self {
            model: Some(model),
            optimizer: AdamW::new(args.optimizer),
            schedule: args.schedule(updates_per_epoch),
            objective,
            args,
            examples,
            lengths,
            reference,
            pad_id,
            updates_per_epoch,
            step: 0,
            device,
        })
    }

    /// Optimizer steps the run makes in all.
    pub fn total_steps(&self) -> usize {
        self.schedule.total_steps
    }

    /// Updates done so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Fractional epochs done.
    pub fn epochs_done(&self) -> f64 {
        self.step as f64 / self.updates_per_epoch as f64
    }

    pub fn optimizer(&self) -> &AdamW<B::InnerBackend> {
        &self.optimizer
    }

    /// Continues a run: the optimizer state and step count saved with the model this trainer
    /// was built from (see [`crate::checkpoint`]).
    pub fn resume(&mut self, optimizer: AdamW<B::InnerBackend>, steps_done: usize) {
        self.optimizer = optimizer;
        self.step = steps_done;
    }

    pub fn model(&self) -> &CausalLm<B> {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// The micro-batches (example indices) of update `step`.
    pub fn micro_batches(&self, step: usize) -> Vec<Vec<usize>> {
        let epoch = step / self.updates_per_epoch;
        let within = step % self.updates_per_epoch;
        let accumulation = self.args.gradient_accumulation_steps;
        let batches = batch_indices(
            &self.lengths,
            self.args.per_device_train_batch_size,
            self.args.batch_order,
            self.args.seed,
            epoch as u64,
            false,
        );
        let start = within * accumulation;
        let end = (start + accumulation).min(batches.len());
        batches[start..end].to_vec()
    }

    /// Makes the next update and returns what it logged. A non-finite loss or gradient norm
    /// stops before the update, leaving the model as it was.
    pub fn step(&mut self) -> Result<StepLog, TrainError> {
        let step = self.step;
        let micro_batches = self.micro_batches(step);
        B::seed(&self.device, step_seed(self.args.seed, step as u64));
        let records: Vec<usize> = micro_batches.iter().flatten().copied().collect();
        let sft_tokens = match self.objective {
            Objective::Sft => Some(
                records
                    .iter()
                    .map(|&i| match &self.examples[i] {
                        // Targets start at the second token: the first is never predicted.
                        Tokenized::Sequence(s) => {
                            s.loss_mask.iter().skip(1).filter(|&&m| m).count()
                        }
                        _ => 0,
                    })
                    .sum::<usize>() as f64,
            ),
            _ => None,
        };
        // Preference losses are batch means: each micro-batch counts 1/n of the update.
        let scale = match self.objective {
            Objective::Sft => 1.0,
            _ => 1.0 / micro_batches.len() as f64,
        };
        let checkpointing = if self.args.gradient_checkpointing {
            GradientCheckpointing::PerLayer
        } else {
            GradientCheckpointing::Off
        };
        let model = self
            .model
            .take()
            .expect("the model is only taken during a step");
        let mut accumulated = GradientsAccumulator::<CausalLm<B>>::new();
        let mut loss = 0.0;
        let mut metric_sums = MetricSums::default();
        for indices in &micro_batches {
            let batch = DeviceBatch::collate(&self.examples, indices, self.pad_id, &self.device);
            let reference = self.reference_batch(indices);
            let objective = &self.objective;
            let backward = loss_and_gradients(
                &model,
                batch.input_ids.clone(),
                batch.attention_mask.clone(),
                batch.position_ids.clone(),
                checkpointing,
                |head| match objective.loss(&head, &batch, reference.as_ref(), sft_tokens) {
                    Ok(output) => (output.loss.clone().mul_scalar(scale), Ok(output.metrics)),
                    Err(error) => (Tensor::zeros([1], &batch.input_ids.device()), Err(error)),
                },
            );
            let metrics = match backward.output {
                Ok(metrics) => metrics.to_f64(),
                Err(error) => {
                    self.model = Some(model);
                    return Err(error.into());
                }
            };
            loss += scalar(backward.loss);
            for (name, value) in metrics.into_iter().filter(|(name, _)| *name != "loss") {
                metric_sums.add(name, value);
            }
            accumulated.accumulate(&model, backward.gradients);
        }
        let mut gradients: GradientsParams = accumulated.grads();
        let grad_norm = clip_global_norm::<B, _>(&model, &mut gradients, self.args.max_grad_norm);
        if let Err(error) = check_finite(step, loss, grad_norm, &records) {
            self.model = Some(model);
            return Err(error);
        }
        let learning_rate = self.schedule.learning_rate(step);
        self.model = Some(self.optimizer.step(model, gradients, learning_rate));
        self.step += 1;
        Ok(StepLog {
            step: self.step,
            epoch: self.epochs_done(),
            loss,
            learning_rate,
            grad_norm,
            metrics: metric_sums.means(micro_batches.len() as f64),
            records,
        })
    }

    /// The reference scores of the examples at `indices`, as the loss takes them.
    fn reference_batch(&self, indices: &[usize]) -> Option<PairLogProbs<B>> {
        let scores = self
            .reference
            .scores(&self.examples, indices, &self.device)?;
        pair_log_probs(&scores, &self.device)
    }

    /// The objective's loss and metrics on `examples` under the current weights, without
    /// autodiff, in batches of `batch_size` in order: each batch's values weighted by its
    /// example count (transformers' evaluation loop repeats each batch's loss per example), so
    /// a short last batch counts for what it holds. `reference` covers `examples` as
    /// [`Trainer::new`]'s covers the training examples.
    pub fn evaluate(
        &self,
        examples: &[Tokenized],
        reference: &Reference<B::InnerBackend>,
        batch_size: usize,
    ) -> Result<Vec<(String, f64)>, TrainError> {
        if examples.is_empty() {
            return Err(TrainError::NoData);
        }
        example_lengths(examples, &self.objective)?;
        check_reference(&self.objective, reference, examples.len())?;
        let model = self.model().valid();
        let indices: Vec<usize> = (0..examples.len()).collect();
        let mut sums = MetricSums::default();
        for chunk in indices.chunks(batch_size.max(1)) {
            let weight = chunk.len() as f64;
            let batch =
                DeviceBatch::<B::InnerBackend>::collate(examples, chunk, self.pad_id, &self.device);
            let scores = reference.scores(examples, chunk, &self.device);
            let reference = scores.and_then(|s| pair_log_probs(&s, &self.device));
            let head = model.head_input(
                batch.input_ids.clone(),
                batch.attention_mask.clone(),
                batch.position_ids.clone(),
            );
            let output = self
                .objective
                .loss(&head, &batch, reference.as_ref(), None)?;
            let loss = scalar(output.loss);
            let values = std::iter::once(("loss".to_string(), loss)).chain(
                output
                    .metrics
                    .to_f64()
                    .into_iter()
                    .filter(|(name, _)| *name != "loss")
                    .map(|(name, value)| (name.to_string(), value)),
            );
            for (name, value) in values {
                sums.add(&name, weight * value);
            }
        }
        Ok(sums.means(examples.len() as f64))
    }
}

/// Each example's length for length-grouped batching; an error names the first example of the
/// wrong kind for `objective`.
fn example_lengths(
    examples: &[Tokenized],
    objective: &Objective,
) -> Result<Vec<usize>, TrainError> {
    examples
        .iter()
        .enumerate()
        .map(
            |(index, example)| match (example, objective.is_preference()) {
                (Tokenized::Sequence(s), false) => Ok(s.input_ids.len()),
                (Tokenized::Pair(p), true) => {
                    Ok(p.prompt_ids.len() + p.chosen_ids.len().max(p.rejected_ids.len()))
                }
                _ => {
                    let wanted = if objective.is_preference() {
                        "a preference pair"
                    } else {
                        "an SFT sequence"
                    };
                    Err(TrainError::Record {
                        index,
                        reason: format!("this objective trains on {wanted}"),
                    })
                }
            },
        )
        .collect()
}

fn check_reference<B: KernelBackend>(
    objective: &Objective,
    reference: &Reference<B>,
    examples: usize,
) -> Result<(), TrainError> {
    match (objective.needs_reference(), reference) {
        (false, _) | (true, Reference::Model(_)) => Ok(()),
        (true, Reference::Precomputed(scores)) if scores.len() == examples => Ok(()),
        (true, Reference::Precomputed(scores)) => Err(TrainError::Settings(format!(
            "{} reference scores for {examples} pairs",
            scores.len()
        ))),
        (true, Reference::None) => Err(TrainError::Settings(
            "this objective needs a reference model".into(),
        )),
    }
}
