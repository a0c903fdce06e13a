//! ORPO (Hong et al. 2024): the chosen NLL plus λ times an odds-ratio term on average
//! log-probs, reference-free.
//!
//! The anchors disagree on which tokens the NLL covers:
//! - TRL (`ORPOTrainer.concatenated_forward`): cross-entropy over the chosen sequence's prompt
//!   *and* completion (every attended token), one token mean over the whole batch;
//! - LLaMA-Factory (`odds_ratio_loss`): `−avg log π(y_c)` over completion tokens only, per
//!   sequence, then the batch mean.
//!
//! [`OrpoNll`] selects either; the odds-ratio term is the same in both.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_setting};
use crate::logprobs::{PairLogProbs, SequenceLogProbs};
use crate::metrics::LossOutput;
use crate::preference::{chosen_nll, reward_metrics};
use crate::stable::{log_sigmoid, log1mexp};
use crate::twin::ORPO_MAX_AVG_LOGP;

/// Which tokens ORPO's NLL term covers.
#[derive(Clone, Debug)]
pub enum OrpoNll<'a, B: Backend> {
    /// TRL: the chosen sequences' prompt and completion tokens, one token mean over the batch.
    /// Pass the log-probs summed over every attended token after the first.
    PromptAndCompletion(&'a SequenceLogProbs<B>),
    /// LLaMA-Factory: the per-sequence average over completion tokens, then the batch mean.
    Completion,
}

/// The log odds `log(p/(1−p))` of each pair's average log-probs, and `log σ` of their difference:
/// `(log σ(Δ), Δ)` with `Δ = log odds(y_c) − log odds(y_r)`, each `[B]`.
///
/// The average log-prob is capped at −1e-7 first: at 0 (a certain sequence, or an empty mask)
/// the odds are infinite; TRL returns inf/NaN there.
pub fn log_odds_ratio<B: Backend>(policy: &PairLogProbs<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let avg_c = policy.chosen.mean().clamp_max(ORPO_MAX_AVG_LOGP);
    let avg_r = policy.rejected.mean().clamp_max(ORPO_MAX_AVG_LOGP);
    let log_odds = (avg_c.clone() - avg_r.clone()) - (log1mexp(avg_c) - log1mexp(avg_r));
    (log_sigmoid(log_odds.clone()), log_odds)
}

/// `NLL − λ · mean(log σ(Δ))`, with TRL's ORPO metrics: `rewards/*` (`λ · avg log-prob`),
/// `logps/*` (averages), `nll_loss`, `log_odds_ratio` (mean `log σ(Δ)`), `log_odds_chosen`
/// (mean `Δ`).
pub fn orpo_loss<B: Backend>(
    beta: f64,
    policy: &PairLogProbs<B>,
    nll: OrpoNll<'_, B>,
) -> Result<LossOutput<B>, ObjectiveError> {
    check_setting("beta", beta, beta >= 0.0, "λ must be >= 0")?;
    policy.check()?;
    let nll_loss = match nll {
        OrpoNll::PromptAndCompletion(full) => chosen_nll(full),
        OrpoNll::Completion => policy.chosen.mean().neg().mean(),
    };
    let (ratio, log_odds) = log_odds_ratio(policy);
    let loss = nll_loss.clone() - ratio.clone().mean().mul_scalar(beta);
    let avg_chosen = policy.chosen.mean();
    let avg_rejected = policy.rejected.mean();
    let mut metrics = reward_metrics(
        avg_chosen.clone().mul_scalar(beta),
        avg_rejected.clone().mul_scalar(beta),
    );
    metrics.push("logps/chosen", avg_chosen);
    metrics.push("logps/rejected", avg_rejected);
    metrics.push("nll_loss", nll_loss);
    metrics.push("log_odds_ratio", ratio);
    metrics.push("log_odds_chosen", log_odds);
    Ok(LossOutput { loss, metrics })
}
