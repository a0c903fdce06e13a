//! Training on a fixed dataset: SFT, the DPO family, ORPO, SimPO and reward models, with the
//! Trainer's loss normalisation over accumulated micro-batches.
//!
//! Which batches update `k` uses is a function of `k` and the seed alone (epoch `k / u`, the
//! `k mod u`-th group of micro-batches of that epoch's seeded order, `u` updates per epoch), so a
//! run resumed at step `k` sees exactly the batches the uninterrupted run would have.

use std::path::Path;

use burn::module::AutodiffModule;
use temper_data::TokenizedSet;
use temper_data::batch::batch_indices;
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{CausalLm, HeadInput};
use temper_objectives::metrics::Metrics;
use temper_objectives::{ObjectiveError, PairLogProbs};

use crate::batch::DeviceBatch;
use crate::batch::ModelInputs;
use crate::checkpoint::{CheckpointError, TrainerState};
use crate::engine::{MetricSums, MicroBatchLoss, UpdateEngine, scalar};
use crate::objective::Objective;
use crate::reference::{Reference, pair_log_probs};
use crate::trainer::{StepLog, TrainError, Trainer, TrainingArgs};

impl<B: AutodiffKernelBackend> Trainer<B> for OfflineTrainer<B> {
    fn step(&mut self) -> Result<StepLog, TrainError> {
        OfflineTrainer::step(self)
    }
    fn engine(&self) -> &UpdateEngine<B> {
        &self.engine
    }
    fn load_state(&mut self, dir: &Path) -> Result<TrainerState, CheckpointError> {
        self.engine.load_state(dir)
    }
}

/// A model trained on a fixed dataset with an [`Objective`].
pub struct OfflineTrainer<B: AutodiffKernelBackend> {
    engine: UpdateEngine<B>,
    objective: Objective,
    args: TrainingArgs,
    examples: TokenizedSet,
    lengths: Vec<usize>,
    reference: Reference<B::InnerBackend>,
    pad_id: u32,
    updates_per_epoch: usize,
}

/// The micro-batches of one offline update and how each is scored.
struct OfflineUpdate<'a, B: AutodiffKernelBackend> {
    objective: &'a Objective,
    examples: &'a TokenizedSet,
    reference: &'a Reference<B::InnerBackend>,
    pad_id: u32,
    device: B::Device,
    micro_batches: Vec<Vec<usize>>,
    /// SFT: the trained-token count of the whole update (transformers' `num_items_in_batch`).
    sft_tokens: Option<f64>,
    /// Preference losses are batch means: each micro-batch counts 1/n of the update.
    scale: f64,
}

impl<B: AutodiffKernelBackend> MicroBatchLoss<B> for OfflineUpdate<'_, B> {
    type Batch = (DeviceBatch<B>, Option<PairLogProbs<B>>);

    fn micro_batches(&self) -> usize {
        self.micro_batches.len()
    }

    fn batch(&self, index: usize) -> (Self::Batch, ModelInputs<B>) {
        let indices = &self.micro_batches[index];
        let batch = DeviceBatch::collate(self.examples, indices, self.pad_id, &self.device);
        // The reference model's scores of these pairs, as the loss takes them.
        let reference = self
            .reference
            .scores(self.examples, indices, &self.device)
            .and_then(|scores| pair_log_probs(&scores, &self.device));
        let inputs = batch.inputs();
        ((batch, reference), inputs)
    }

    fn loss(
        &self,
        _model: usize,
        head: &HeadInput<'_, B>,
        (batch, reference): &Self::Batch,
    ) -> Result<(burn::tensor::Tensor<B, 1>, Metrics<B>), ObjectiveError> {
        let output = self
            .objective
            .loss(head, batch, reference.as_ref(), self.sft_tokens)?;
        Ok((output.loss.mul_scalar(self.scale), output.metrics))
    }
}

impl<B: AutodiffKernelBackend> OfflineTrainer<B> {
    /// A trainer at step 0. `examples` are sequences (SFT) or pairs (preference objectives);
    /// `reference` is needed by objectives with a reference model (DPO).
    pub fn new(
        model: CausalLm<B>,
        objective: Objective,
        args: TrainingArgs,
        examples: TokenizedSet,
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
        if let Objective::Kto(config) = &objective
            && config.loss.uses_kl()
            && args.per_device_train_batch_size < 2
        {
            // TRL refuses it too: a batch of one pairs each prompt with its own completion.
            return Err(TrainError::Settings(
                "KTO's KL estimate needs per_device_train_batch_size of at least 2".into(),
            ));
        }
        check_reference(&objective, &reference, examples.len())?;
        let micro_per_epoch = examples.len().div_ceil(args.per_device_train_batch_size);
        let updates_per_epoch = micro_per_epoch.div_ceil(args.gradient_accumulation_steps);
        Ok(Self {
            engine: UpdateEngine::new(vec![model], &args, updates_per_epoch, device),
            objective,
            args,
            examples,
            lengths,
            reference,
            pad_id,
            updates_per_epoch,
        })
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
        let micro_batches = self.micro_batches(self.engine.steps_done());
        let records: Vec<usize> = micro_batches.iter().flatten().copied().collect();
        let sft_tokens = match (&self.objective, &self.examples) {
            (Objective::Sft, TokenizedSet::Sequences(sequences)) => Some(
                records
                    .iter()
                    // Targets start at the second token: the first is never predicted.
                    .map(|&i| {
                        sequences[i]
                            .loss_mask
                            .iter()
                            .skip(1)
                            .filter(|&&m| m)
                            .count()
                    })
                    .sum::<usize>() as f64,
            ),
            _ => None,
        };
        let scale = match self.objective {
            Objective::Sft => 1.0,
            _ => 1.0 / micro_batches.len() as f64,
        };
        let update = OfflineUpdate {
            objective: &self.objective,
            examples: &self.examples,
            reference: &self.reference,
            pad_id: self.pad_id,
            device: self.engine.device().clone(),
            micro_batches,
            sft_tokens,
            scale,
        };
        self.engine.update(&update, records)
    }

    /// The objective's loss and metrics on `examples` under the current weights, without
    /// autodiff, in batches of `batch_size` in order: each batch's values weighted by its
    /// example count (transformers' evaluation loop repeats each batch's loss per example), so
    /// a short last batch counts for what it holds. `reference` covers `examples` as
    /// [`Trainer::new`]'s covers the training examples.
    pub fn evaluate(
        &self,
        examples: &TokenizedSet,
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
            let device = self.engine.device();
            let batch =
                DeviceBatch::<B::InnerBackend>::collate(examples, chunk, self.pad_id, device);
            let scores = reference.scores(examples, chunk, device);
            let reference = scores.and_then(|s| pair_log_probs(&s, device));
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

/// Each example's length for length-grouped batching; an error when `examples` are not the
/// kind `objective` trains on.
fn example_lengths(
    examples: &TokenizedSet,
    objective: &Objective,
) -> Result<Vec<usize>, TrainError> {
    match (examples, objective) {
        (TokenizedSet::Sequences(sequences), Objective::Sft) => {
            Ok(sequences.iter().map(|s| s.input_ids.len()).collect())
        }
        (TokenizedSet::Unpaired(all), Objective::Kto(config)) => {
            if config.loss.uses_kl() && all.iter().any(|u| u.kl_completion_ids.is_empty()) {
                return Err(TrainError::Settings(
                    "KTO's KL estimate needs each example's mismatched completion: pair them \
                     with TokenizedSet::pair_kl_completions"
                        .into(),
                ));
            }
            Ok(all
                .iter()
                .map(|u| u.prompt_ids.len() + u.completion_ids.len().max(u.kl_completion_ids.len()))
                .collect())
        }
        (TokenizedSet::Pairs(pairs), objective)
            if objective.is_preference() && !matches!(objective, Objective::Kto(_)) =>
        {
            Ok(pairs
                .iter()
                .map(|p| p.prompt_ids.len() + p.chosen_ids.len().max(p.rejected_ids.len()))
                .collect())
        }
        (given, _) => {
            let wanted = match objective {
                Objective::Sft => "SFT sequences",
                Objective::Kto(_) => "unpaired completions",
                _ => "preference pairs",
            };
            let held = match given {
                TokenizedSet::Sequences(_) => "SFT sequences",
                TokenizedSet::Pairs(_) => "preference pairs",
                TokenizedSet::Unpaired(_) => "unpaired completions",
                TokenizedSet::Prompts(_) => "prompts",
            };
            Err(TrainError::Settings(format!(
                "this objective trains on {wanted}; the data holds {held}"
            )))
        }
    }
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
