//! What a trainer minimises: the objective of each trainer (SFT, DPO family, ORPO, SimPO) from
//! the logits of one padded batch, with TRL's metrics. The formulas live in temper-objectives;
//! this module picks the tokens and sequences each one needs.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use temper_objectives::logprobs::{
    PairLogProbs, SequenceLogProbs, next_token_targets, token_log_probs, token_stats,
};
use temper_objectives::orpo::{OrpoNll, orpo_loss};
use temper_objectives::preference::{DpoConfig, dpo_loss, logit_metrics};
use temper_objectives::sft::{sft_loss, token_metrics};
use temper_objectives::simpo::{SimpoConfig, simpo_loss};
use temper_objectives::{LossOutput, ObjectiveError};

use crate::batch::DeviceBatch;

/// Which tokens ORPO's NLL term averages over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NllSpan {
    /// TRL: every token of the chosen sequences after the first, prompt included.
    #[default]
    PromptAndCompletion,
    /// LLaMA-Factory: the chosen completion only.
    Completion,
}

/// The objective of a run.
#[derive(Clone, Debug)]
pub enum Objective {
    /// Cross-entropy over the loss mask (completion-only for prompt/completion data).
    Sft,
    /// The DPO family against reference log-probs.
    Dpo(DpoConfig),
    /// ORPO: NLL plus the odds-ratio term, reference-free.
    Orpo { beta: f64, nll: NllSpan },
    /// SimPO (TRL's CPO trainer with `loss_type="simpo"`), plus `cpo_alpha` times the NLL of
    /// the chosen completions.
    Simpo { config: SimpoConfig, cpo_alpha: f64 },
}

impl Objective {
    /// Whether batches hold preference pairs (chosen rows, then rejected rows).
    pub fn is_preference(&self) -> bool {
        !matches!(self, Objective::Sft)
    }

    /// Whether the loss needs a reference model's log-probs.
    pub fn needs_reference(&self) -> bool {
        matches!(self, Objective::Dpo(_))
    }

    /// The loss and metrics of one batch from its logits `[rows, seq, vocab]`.
    ///
    /// `reference`: the reference model's summed log-probs of this batch's pairs (DPO).
    /// `sft_tokens`: the trained-token count of the whole accumulated batch, so that SFT's
    /// micro-batch losses add up to the big batch's (transformers' `num_items_in_batch`).
    pub fn loss<B: Backend>(
        &self,
        logits: Tensor<B, 3>,
        batch: &DeviceBatch<B>,
        reference: Option<&PairLogProbs<B>>,
        sft_tokens: Option<f64>,
    ) -> Result<LossOutput<B>, ObjectiveError> {
        let (logits, targets, mask) =
            next_token_targets(logits, batch.input_ids.clone(), batch.loss_mask.clone());
        let stats = token_stats(logits.clone(), targets.clone(), mask.clone(), None)?;
        if let Objective::Sft = self {
            let mut output = sft_loss(stats.log_probs.clone(), mask.clone(), sft_tokens)?;
            output.metrics.extend(token_metrics(&stats, &mask));
            return Ok(output);
        }
        let policy =
            SequenceLogProbs::from_tokens(stats.log_probs.clone(), mask.clone()).split_pairs()?;
        let rows = mask.dims()[0];
        let half = rows / 2;
        let side = |t: Tensor<B, 2>, start: usize| t.narrow(0, start, half);
        let logit_metrics = logit_metrics(
            side(stats.mean_logit.clone(), 0),
            side(mask.clone(), 0),
            side(stats.mean_logit.clone(), half),
            side(mask.clone(), half),
        );
        // TRL's NLL over the chosen rows' every attended token after the first.
        let chosen_full = || -> Result<SequenceLogProbs<B>, ObjectiveError> {
            let attended = side(batch.attention_mask.clone().narrow(1, 1, mask.dims()[1]), 0);
            let per_token = token_log_probs(
                logits.clone().narrow(0, 0, half),
                targets.clone().narrow(0, 0, half),
                attended.clone(),
            )?;
            Ok(SequenceLogProbs::from_tokens(per_token, attended))
        };
        let mut output = match self {
            Objective::Sft => unreachable!("handled above"),
            Objective::Dpo(config) => {
                let reference = reference.ok_or_else(|| {
                    ObjectiveError::Batch("DPO needs the reference model's log-probs".into())
                })?;
                dpo_loss(config, &policy, reference)?
            }
            Objective::Orpo { beta, nll } => match nll {
                NllSpan::PromptAndCompletion => {
                    let full = chosen_full()?;
                    orpo_loss(*beta, &policy, OrpoNll::PromptAndCompletion(&full))?
                }
                NllSpan::Completion => orpo_loss(*beta, &policy, OrpoNll::Completion)?,
            },
            Objective::Simpo { config, cpo_alpha } => {
                let mut output = simpo_loss(config, &policy)?;
                if *cpo_alpha != 0.0 {
                    // TRL's CPO: one token mean over the chosen completions.
                    let chosen = &policy.chosen;
                    let nll =
                        chosen.sum.clone().sum().neg() / chosen.tokens.clone().sum().clamp_min(1.0);
                    output.metrics.push("nll_loss", nll.clone());
                    output.loss = output.loss + nll.mul_scalar(*cpo_alpha);
                }
                output
            }
        };
        output.metrics.extend(logit_metrics);
        Ok(output)
    }
}
