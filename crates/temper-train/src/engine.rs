//! The update engine: how every trainer turns the losses of an update's micro-batches into one
//! optimizer update, as Burn splits a `TrainStep` from its optimiser.
//!
//! A trainer says only what one micro-batch costs ([`MicroBatchLoss`]: the offline objectives,
//! a GRPO round's completions, PPO's policy and value losses). The engine owns everything else
//! and does it one way for all of them: the generator's seed for the step, the forward and
//! backward pass of each trained model (with activation checkpointing when asked), gradient
//! accumulation, clipping by the global norm over every trained model, the non-finite guard
//! (the update is not made, the models are left as they were), AdamW at the schedule's rate,
//! the step count, and the [`StepLog`] with the micro-batches' mean metrics.

use std::path::Path;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{CausalLm, GradientCheckpointing, HeadInput, loss_and_gradients};
use temper_objectives::ObjectiveError;
use temper_objectives::metrics::Metrics;

use crate::batch::ModelInputs;
use crate::checkpoint::{CheckpointError, OPTIMIZER_FILE, TrainerState, load_training_state};
use crate::clip::clip_global_norm_of;
use crate::optimizer::AdamW;
use crate::schedule::Schedule;
use crate::trainer::{StepLog, TrainError, TrainingArgs};

/// What a trainer computes: the loss and metrics of one micro-batch of an update, for each
/// model it trains (the policy is model 0; PPO's value model is model 1).
pub trait MicroBatchLoss<B: AutodiffKernelBackend> {
    /// One micro-batch, collated on the device.
    type Batch;

    /// The micro-batches of this update.
    fn micro_batches(&self) -> usize;

    /// Micro-batch `index`, with the inputs every trained model reads.
    fn batch(&self, index: usize) -> (Self::Batch, ModelInputs<B>);

    /// Model `model`'s loss on `batch`, already scaled for accumulation (the update's gradient
    /// is the sum over micro-batches), and its metrics, unscaled.
    fn loss(
        &self,
        model: usize,
        head: &HeadInput<'_, B>,
        batch: &Self::Batch,
    ) -> Result<(Tensor<B, 1>, Metrics<B>), ObjectiveError>;
}

/// One trained model and its optimizer.
struct Trained<B: AutodiffKernelBackend> {
    /// `None` only inside [`UpdateEngine::update`], between the backward pass and AdamW.
    model: Option<CausalLm<B>>,
    optimizer: AdamW<B::InnerBackend>,
}

/// The models being trained, their optimizers and the run's position.
pub struct UpdateEngine<B: AutodiffKernelBackend> {
    trained: Vec<Trained<B>>,
    schedule: Schedule,
    seed: u64,
    max_grad_norm: f64,
    checkpointing: GradientCheckpointing,
    updates_per_epoch: usize,
    step: usize,
    device: B::Device,
}

impl<B: AutodiffKernelBackend> UpdateEngine<B> {
    /// An engine at step 0 over `models` (the policy first), each with a fresh AdamW, with the
    /// schedule of a run of `updates_per_epoch` updates an epoch.
    pub fn new(
        models: Vec<CausalLm<B>>,
        args: &TrainingArgs,
        updates_per_epoch: usize,
        device: B::Device,
    ) -> Self {
        Self {
            trained: models
                .into_iter()
                .map(|model| Trained {
                    model: Some(model),
                    optimizer: AdamW::new(args.optimizer),
                })
                .collect(),
            schedule: args.schedule(updates_per_epoch),
            seed: args.seed,
            max_grad_norm: args.max_grad_norm,
            checkpointing: if args.gradient_checkpointing {
                GradientCheckpointing::PerLayer
            } else {
                GradientCheckpointing::Off
            },
            updates_per_epoch: updates_per_epoch.max(1),
            step: 0,
            device,
        }
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

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Trained model `index` (0: the policy).
    pub fn model(&self, index: usize) -> &CausalLm<B> {
        self.trained[index]
            .model
            .as_ref()
            .expect("a model is only taken during an update")
    }

    /// The optimizer of trained model `index`.
    pub fn optimizer(&self, index: usize) -> &AdamW<B::InnerBackend> {
        &self.trained[index].optimizer
    }

    /// Puts a resumed model and its optimizer state in place of trained model `index`.
    pub fn restore(&mut self, index: usize, model: CausalLm<B>, optimizer: AdamW<B::InnerBackend>) {
        self.trained[index] = Trained {
            model: Some(model),
            optimizer,
        };
    }

    /// Continues at `steps_done` with the policy's optimizer state `optimizer`.
    pub fn resume(&mut self, optimizer: AdamW<B::InnerBackend>, steps_done: usize) {
        self.trained[0].optimizer = optimizer;
        self.step = steps_done;
    }

    /// Writes the policy's optimizer state into checkpoint directory `dir`.
    pub fn save_state(&self, dir: &Path) -> Result<(), CheckpointError> {
        Ok(self.optimizer(0).save(&dir.join(OPTIMIZER_FILE))?)
    }

    /// Reads back what [`UpdateEngine::save_state`] and the checkpoint's `trainer_state.json`
    /// hold, and continues from there.
    pub fn load_state(&mut self, dir: &Path) -> Result<TrainerState, CheckpointError> {
        let (optimizer, state) = load_training_state::<B::InnerBackend>(dir, &self.device)?;
        self.resume(optimizer, state.global_step);
        Ok(state)
    }

    /// Makes the next update from `loss`'s micro-batches; `records` are the examples it trains
    /// on (named by the non-finite guard and logged). A non-finite loss or gradient norm, or a
    /// loss that fails, stops before the update, leaving every model as it was.
    pub fn update<L: MicroBatchLoss<B>>(
        &mut self,
        loss: &L,
        records: Vec<usize>,
    ) -> Result<StepLog, TrainError> {
        let step = self.step;
        B::seed(&self.device, step_seed(self.seed, step as u64));
        let models: Vec<CausalLm<B>> = self
            .trained
            .iter_mut()
            .map(|t| {
                t.model
                    .take()
                    .expect("a model is only taken during an update")
            })
            .collect();
        let Passes {
            loss: total_loss,
            metrics,
            mut gradients,
        } = match self.backward(loss, &models) {
            Ok(passes) => passes,
            Err(error) => {
                self.put_back(models);
                return Err(error);
            }
        };
        let mut pairs: Vec<(&CausalLm<B>, &mut GradientsParams)> =
            models.iter().zip(gradients.iter_mut()).collect();
        let grad_norm = clip_global_norm_of::<B, _>(&mut pairs, self.max_grad_norm);
        if let Err(error) = check_finite(step, total_loss, grad_norm, &records) {
            self.put_back(models);
            return Err(error);
        }
        let learning_rate = self.schedule.learning_rate(step);
        for ((trained, model), gradients) in self.trained.iter_mut().zip(models).zip(gradients) {
            trained.model = Some(trained.optimizer.step(model, gradients, learning_rate));
        }
        self.step += 1;
        Ok(StepLog {
            step: self.step,
            epoch: self.epochs_done(),
            loss: total_loss,
            learning_rate,
            grad_norm,
            metrics,
            records,
        })
    }

    /// Every micro-batch's forward and backward pass through every model.
    fn backward<L: MicroBatchLoss<B>>(
        &self,
        loss: &L,
        models: &[CausalLm<B>],
    ) -> Result<Passes, TrainError> {
        let count = loss.micro_batches();
        let mut accumulated: Vec<GradientsAccumulator<CausalLm<B>>> =
            models.iter().map(|_| GradientsAccumulator::new()).collect();
        let mut total = 0.0;
        let mut sums = MetricSums::default();
        for index in 0..count {
            let (batch, inputs) = loss.batch(index);
            let mut micro_loss = 0.0;
            for (which, model) in models.iter().enumerate() {
                let pass = loss_and_gradients(
                    model,
                    inputs.input_ids.clone(),
                    inputs.attention_mask.clone(),
                    inputs.position_ids.clone(),
                    self.checkpointing,
                    |head| match loss.loss(which, &head, &batch) {
                        Ok((value, metrics)) => (value, Ok(metrics)),
                        Err(error) => (Tensor::zeros([1], &self.device), Err(error)),
                    },
                );
                let metrics = pass.output?.to_f64();
                micro_loss += scalar(pass.loss);
                for (name, value) in metrics.into_iter().filter(|(name, _)| *name != "loss") {
                    sums.add(name, value);
                }
                accumulated[which].accumulate(model, pass.gradients);
            }
            total += micro_loss;
        }
        Ok(Passes {
            loss: total,
            metrics: sums.means(count.max(1) as f64),
            gradients: accumulated.into_iter().map(|mut a| a.grads()).collect(),
        })
    }

    fn put_back(&mut self, models: Vec<CausalLm<B>>) {
        for (trained, model) in self.trained.iter_mut().zip(models) {
            trained.model = Some(model);
        }
    }
}

/// What an update's passes leave before clipping and AdamW.
struct Passes {
    /// The sum of every micro-batch's (scaled) losses over every model.
    loss: f64,
    /// The micro-batches' mean metrics, the objectives' `loss` entry left out (the loss is
    /// logged on its own).
    metrics: Vec<(String, f64)>,
    /// Each model's accumulated gradients.
    gradients: Vec<GradientsParams>,
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

/// The non-finite guard: an error naming update `step` (0-based) and its records when the loss
/// or the gradient norm is not finite, so the update is not made.
fn check_finite(
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
