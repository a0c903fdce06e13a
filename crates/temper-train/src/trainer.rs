//! What every trainer shares: the run's settings with transformers' names ([`TrainingArgs`]),
//! what a step logs ([`StepLog`]), how training fails ([`TrainError`]), and what the run loop
//! asks of a trainer ([`Trainer`]).

use std::path::Path;

use temper_data::batch::BatchOrder;
use temper_kernels::AutodiffKernelBackend;
use temper_model::CausalLm;
use temper_objectives::ObjectiveError;

use crate::checkpoint::{CheckpointError, TrainerState};
use crate::config::{KeyValues, TrainerKind};
use crate::engine::UpdateEngine;
use crate::optimizer::AdamW;
use crate::optimizer::AdamWConfig;
use crate::schedule::{Schedule, ScheduleKind};

/// The run's settings, with transformers' `TrainingArguments` names; their defaults are the
/// keys' (config/keys.rs: TRL's).
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
    /// SFT's settings ([`TrainingArgs::for_trainer`]); the trainers differ in the learning rate
    /// only.
    fn default() -> Self {
        Self::for_trainer(TrainerKind::Sft)
    }
}

impl TrainingArgs {
    /// The settings the keys declare for `kind`'s trainer when none is given.
    pub fn for_trainer(kind: TrainerKind) -> Self {
        Self::from_values(&KeyValues::defaults(kind), kind)
    }

    /// The settings of a run's key values for `kind` (`max_steps` -1: none, train by epochs).
    pub(crate) fn from_values(values: &KeyValues, kind: TrainerKind) -> Self {
        Self {
            max_steps: usize::try_from(values.max_steps).ok(),
            num_train_epochs: values.num_train_epochs,
            per_device_train_batch_size: values.per_device_train_batch_size,
            gradient_accumulation_steps: values.gradient_accumulation_steps,
            learning_rate: values.learning_rate,
            lr_scheduler_type: values.lr_scheduler_type,
            warmup_steps: values.warmup_steps,
            warmup_ratio: values.warmup_ratio,
            optimizer: AdamWConfig {
                beta1: values.adam_beta1,
                beta2: values.adam_beta2,
                epsilon: values.adam_epsilon,
                weight_decay: values.weight_decay,
            },
            max_grad_norm: values.max_grad_norm,
            seed: values.seed,
            // KTO samples in order (TRL's `train_sampling_strategy="sequential"`): its KL
            // completions are paired within the batches that order makes.
            batch_order: if kind == TrainerKind::Kto {
                BatchOrder::Sequential
            } else {
                BatchOrder::Shuffled
            },
            gradient_checkpointing: values.gradient_checkpointing,
        }
    }

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

/// What the run loop ([`crate::run`]) and checkpoints need of a trainer:
/// [`crate::offline::OfflineTrainer`] (SFT and the preference objectives),
/// [`crate::grpo::GrpoTrainer`] and [`crate::ppo::PpoTrainer`]. Each makes its updates through
/// an [`UpdateEngine`], which holds the policy, its optimizer and the run's position.
pub trait Trainer<B: AutodiffKernelBackend> {
    /// Makes the next optimizer update and returns what it logged.
    fn step(&mut self) -> Result<StepLog, TrainError>;

    fn engine(&self) -> &UpdateEngine<B>;

    /// Optimizer steps the run makes in all.
    fn total_steps(&self) -> usize {
        self.engine().total_steps()
    }

    /// Updates done so far.
    fn steps_done(&self) -> usize {
        self.engine().steps_done()
    }

    /// Fractional epochs done.
    fn epochs_done(&self) -> f64 {
        self.engine().epochs_done()
    }

    /// The policy: the model the run outputs.
    fn model(&self) -> &CausalLm<B> {
        self.engine().model(0)
    }

    /// The policy's optimizer.
    fn optimizer(&self) -> &AdamW<B::InnerBackend> {
        self.engine().optimizer(0)
    }

    /// Writes into a checkpoint directory what resuming exactly needs besides the policy's
    /// weights and the position: the optimizer state, and a trainer's own state (a round of
    /// rollouts under way, a value model).
    fn save_state(&self, dir: &Path) -> Result<(), CheckpointError> {
        self.engine().save_state(dir)
    }

    /// Reads back what [`Trainer::save_state`] wrote and continues from the checkpoint's step;
    /// returns the checkpoint's position.
    fn load_state(&mut self, dir: &Path) -> Result<TrainerState, CheckpointError>;
}
