//! What a trainer minimises: the objective of each trainer (SFT, DPO family, ORPO, SimPO, reward
//! models) from the logits (a reward model's scores) of one padded batch, with TRL's metrics.
//! The formulas live in temper-objectives; this module picks the tokens and sequences each one
//! needs.

use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use temper_kernels::KernelBackend;
use temper_model::{CausalLm, HeadInput, last_token_rewards};
use temper_objectives::kto::{KtoConfig, kto_kl, kto_loss};
use temper_objectives::logprobs::{PairLogProbs, SequenceLogProbs, TokenStats};
use temper_objectives::orpo::{OrpoNll, orpo_loss};
use temper_objectives::preference::{DpoConfig, chosen_nll, dpo_loss, logit_metrics};
use temper_objectives::reward::reward_model_loss;
use temper_objectives::sft::{sft_loss, token_metrics};
use temper_objectives::simpo::{SimpoConfig, simpo_loss};
use temper_objectives::{LossOutput, ObjectiveError};

use crate::batch::DeviceBatch;

/// Which tokens ORPO's NLL term averages over.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
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
    /// A reward model (TRL's `RewardTrainer`): the Bradley–Terry loss `−log σ(r_c − r_r)`, mean
    /// over pairs, on the score of each chosen and rejected sequence at its last token, plus
    /// `center_rewards_coefficient · mean((r_c + r_r)²)` when set (TRL suggests 0.01). The model
    /// has a score head with one label (`temper_model::load_reward_model`); a row's reward is
    /// read where its score head's `pad_token_id` says, as transformers reads it
    /// (`temper_model::last_token_indices`). Metrics: TRL's `accuracy`, `margin`,
    /// `min_reward`, `mean_reward`, `max_reward`.
    Reward {
        center_rewards_coefficient: Option<f64>,
    },
    /// KTO (TRL's `KTOTrainer`): each completion against the reference, desirable or not,
    /// judged against the batch's detached KL estimate from mismatched completions (the
    /// batch's KL rows; see `TokenizedSet::pair_kl_completions`). Metrics: TRL's `kl`,
    /// `rewards/*`, `logps/*`, `logits/*` by label, and `entropy`.
    Kto(KtoConfig),
}

impl Objective {
    /// Whether batches hold preference pairs (chosen rows, then rejected rows).
    pub fn is_preference(&self) -> bool {
        !matches!(self, Objective::Sft)
    }

    /// Whether the loss needs a reference model's log-probs.
    pub fn needs_reference(&self) -> bool {
        matches!(self, Objective::Dpo(_) | Objective::Kto(_))
    }

    /// Whether the model trained is a reward model (a score head) rather than a causal LM.
    pub fn trains_reward_model(&self) -> bool {
        matches!(self, Objective::Reward { .. })
    }

    /// Whether `model` has the head this objective trains: a score head with one label for
    /// [`Objective::Reward`], the LM head for the others (a mismatch would read token ids as
    /// labels, or scores as logits).
    pub fn check_model<B: Backend>(&self, model: &CausalLm<B>) -> Result<(), ObjectiveError> {
        match (self.trains_reward_model(), model.num_labels()) {
            (true, Some(1)) | (false, None) => Ok(()),
            (true, Some(labels)) => Err(ObjectiveError::Batch(format!(
                "a reward model has one label; this model's score head has {labels}"
            ))),
            (true, None) => Err(ObjectiveError::Batch(
                "the reward objective trains a reward model (a score head, e.g. from \
                 temper_model::load_reward_model), not a causal LM"
                    .into(),
            )),
            (false, Some(_)) => Err(ObjectiveError::Batch(
                "this objective trains a causal LM; the model has a score head (a reward model)"
                    .into(),
            )),
        }
    }

    /// The loss and metrics of one batch from the model's final hidden states and head: token
    /// log-probs through the fused LM-head path (no `[rows, seq, vocab]` logits), a reward
    /// model's scores through its score head.
    ///
    /// `reference`: the reference model's summed log-probs of this batch's pairs (DPO).
    /// `sft_tokens`: the trained-token count of the whole accumulated batch, so that SFT's
    /// micro-batch losses add up to the big batch's (transformers' `num_items_in_batch`).
    pub fn loss<B: KernelBackend>(
        &self,
        head: &HeadInput<'_, B>,
        batch: &DeviceBatch<B>,
        reference: Option<&PairLogProbs<B>>,
        sft_tokens: Option<f64>,
    ) -> Result<LossOutput<B>, ObjectiveError> {
        if let Objective::Reward {
            center_rewards_coefficient,
        } = self
        {
            return reward_loss(
                head.logits(),
                batch,
                *center_rewards_coefficient,
                head.score_pad_token_id(),
            );
        }
        // Position t scores token t + 1.
        let [rows, seq] = batch.input_ids.dims();
        let keep = seq.saturating_sub(1);
        let targets = batch.input_ids.clone().slice([0..rows, 1..seq]);
        let mask = batch.loss_mask.clone().slice([0..rows, 1..seq]);
        let tokens = head
            .token_log_probs(0, targets, 1.0, true)
            .ok_or_else(|| ObjectiveError::Batch("this objective trains a causal LM".into()))?;
        let statistics = tokens
            .stats
            .ok_or_else(|| ObjectiveError::Batch("token statistics were asked for".into()))?;
        let unmasked = tokens.log_probs;
        let stats = TokenStats::masked(
            unmasked.clone(),
            statistics.entropy,
            statistics.is_top1,
            statistics.mean_logit,
            &mask,
        );
        if let Objective::Sft = self {
            let mut output = sft_loss(stats.log_probs.clone(), mask.clone(), sft_tokens)?;
            output.metrics.extend(token_metrics(&stats, &mask));
            return Ok(output);
        }
        if let Objective::Kto(config) = self {
            return kto_batch_loss(config, &stats, &mask, reference, &batch.desirable);
        }
        let policy =
            SequenceLogProbs::from_tokens(stats.log_probs.clone(), mask.clone()).split_pairs()?;
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
            let attended = side(batch.attention_mask.clone().narrow(1, 1, keep), 0);
            let per_token =
                side(unmasked.clone(), 0).mask_fill(attended.clone().equal_elem(0.0), 0.0);
            Ok(SequenceLogProbs::from_tokens(per_token, attended))
        };
        let mut output = match self {
            Objective::Sft | Objective::Reward { .. } | Objective::Kto(_) => {
                unreachable!("handled above")
            }
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
                    let nll = chosen_nll(&policy.chosen);
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

/// TRL's `KTOTrainer._compute_loss` on a batch of `n` completion rows then their `n` KL rows.
fn kto_batch_loss<B: Backend>(
    config: &KtoConfig,
    stats: &TokenStats<B>,
    mask: &Tensor<B, 2>,
    reference: Option<&PairLogProbs<B>>,
    desirable: &[bool],
) -> Result<LossOutput<B>, ObjectiveError> {
    let reference = reference
        .ok_or_else(|| ObjectiveError::Batch("KTO needs the reference model's log-probs".into()))?;
    let rows =
        SequenceLogProbs::from_tokens(stats.log_probs.clone(), mask.clone()).split_pairs()?;
    let kl = if config.loss.uses_kl() {
        Some(kto_kl(rows.rejected.sum, reference.rejected.sum.clone())?)
    } else {
        None
    };
    let mut output = kto_loss(
        config,
        rows.chosen.sum,
        reference.chosen.sum.clone(),
        desirable,
        kl,
    )?;
    let n = desirable.len();
    let device = mask.device();
    let completions = |t: &Tensor<B, 2>| t.clone().narrow(0, 0, n);
    let labelled = |want: bool| {
        let rows: Vec<f32> = desirable.iter().map(|&d| f32::from(d == want)).collect();
        completions(mask) * Tensor::<B, 2>::from_data(TensorData::new(rows, [n, 1]), &device)
    };
    let (chosen_mask, rejected_mask) = (labelled(true), labelled(false));
    let mean_logit = completions(&stats.mean_logit);
    output.metrics.extend(logit_metrics(
        mean_logit.clone() * chosen_mask.clone(),
        chosen_mask,
        mean_logit * rejected_mask.clone(),
        rejected_mask,
    ));
    let entropy = (completions(&stats.entropy) * completions(mask)).sum()
        / completions(mask).sum().clamp_min(1.0);
    output.metrics.push("entropy", entropy);
    Ok(output)
}

/// TRL's `RewardTrainer.compute_loss`: the rows are `[chosen; rejected]`, each row's reward is its
/// score at its last token, and the loss is temper-objectives' Bradley–Terry loss of the halves.
fn reward_loss<B: KernelBackend>(
    scores: Tensor<B, 3>,
    batch: &DeviceBatch<B>,
    center_rewards_coefficient: Option<f64>,
    pad_token_id: Option<u32>,
) -> Result<LossOutput<B>, ObjectiveError> {
    let rewards = last_token_rewards(
        scores,
        batch.input_ids.clone(),
        batch.attention_mask.clone(),
        pad_token_id,
    )
    .map_err(|e| ObjectiveError::Batch(e.to_string()))?;
    let rows = rewards.dims()[0];
    if rows == 0 || !rows.is_multiple_of(2) {
        return Err(ObjectiveError::Batch(format!(
            "a pair batch holds chosen then rejected sequences, so its size must be even and positive; got {rows}"
        )));
    }
    let half = rows / 2;
    reward_model_loss(
        rewards.clone().narrow(0, 0, half),
        rewards.narrow(0, half, half),
        None,
        center_rewards_coefficient,
    )
}
