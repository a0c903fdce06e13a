//! One PPO update's loss: per micro-batch, the policy's clipped surrogate (model 0) and
//! `vf_coef ×` the value model's clipped loss (model 1), on the round's stored terms.

use burn::tensor::Tensor;
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::HeadInput;
use temper_objectives::ObjectiveError;
use temper_objectives::metrics::Metrics;
use temper_objectives::ppo::{ppo_policy_loss, ppo_value_loss};

use super::{PpoRollout, PpoSettings};
use crate::batch::ModelInputs;
use crate::engine::MicroBatchLoss;
use crate::rollout::{CompletionBatch, Rollout, completion_positions, completion_token_stats};

/// The micro-batches of one PPO update and how each is scored by the policy (model 0) and the
/// value model (model 1).
pub(super) struct PpoUpdate<'a, B: AutodiffKernelBackend> {
    pub micro_batches: Vec<&'a [&'a PpoRollout]>,
    pub settings: &'a PpoSettings,
    /// Each micro-batch's losses are means: each counts 1/n of the update.
    pub scale: f64,
    pub pad_id: u32,
    pub device: B::Device,
}

/// A micro-batch's per-token terms `[rows, C]` of PPO's two losses.
pub(super) struct PpoTerms<B: KernelBackend> {
    old_logps: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
}

impl<B: AutodiffKernelBackend> MicroBatchLoss<B> for PpoUpdate<'_, B> {
    type Batch = (CompletionBatch<B>, PpoTerms<B>);

    fn micro_batches(&self) -> usize {
        self.micro_batches.len()
    }

    fn batch(&self, index: usize) -> (Self::Batch, ModelInputs<B>) {
        let micro = self.micro_batches[index];
        let rows: Vec<&Rollout> = micro.iter().map(|r| &r.rollout).collect();
        let batch = CompletionBatch::<B>::new(&rows, self.pad_id, &self.device);
        let per_token = |pick: fn(&PpoRollout) -> &[f32]| {
            let values: Vec<&[f32]> = micro.iter().map(|&r| pick(r)).collect();
            batch.per_token(&values, &self.device)
        };
        let terms = PpoTerms {
            old_logps: per_token(|r| r.rollout.old_logps.as_deref().unwrap_or(&[])),
            advantages: per_token(|r| r.advantages.as_slice()),
            old_values: per_token(|r| r.values.as_slice()),
            returns: per_token(|r| r.returns.as_slice()),
        };
        let inputs = batch.inputs();
        ((batch, terms), inputs)
    }

    fn loss(
        &self,
        model: usize,
        head: &HeadInput<'_, B>,
        (batch, terms): &Self::Batch,
    ) -> Result<(Tensor<B, 1>, Metrics<B>), ObjectiveError> {
        let mask = batch.completion_mask.clone();
        if model == 0 {
            let stats = completion_token_stats(head, batch, self.settings.sampling.temperature)?;
            let output = ppo_policy_loss(
                stats.log_probs,
                terms.old_logps.clone(),
                terms.advantages.clone(),
                stats.entropy,
                mask,
                self.settings.cliprange,
            )?;
            Ok((output.loss.mul_scalar(self.scale), output.metrics))
        } else {
            let output = ppo_value_loss(
                completion_scores(head.logits(), batch),
                terms.old_values.clone(),
                terms.returns.clone(),
                mask,
                self.settings.cliprange_value,
            )?;
            let weight = self.settings.vf_coef * self.scale;
            Ok((output.loss.mul_scalar(weight), output.metrics))
        }
    }
}

/// The value model's outputs `[rows, C]` at the positions predicting each completion token,
/// from its scores `[rows, P + C, 1]`.
pub(super) fn completion_scores<B: KernelBackend>(
    scores: Tensor<B, 3>,
    batch: &CompletionBatch<B>,
) -> Tensor<B, 2> {
    let positions = completion_positions(scores, batch);
    let [rows, width, _] = positions.dims();
    positions.reshape([rows, width])
}
