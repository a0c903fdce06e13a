//! SimPO (Meng et al. 2024): reference-free preference optimisation on average log-probs with a
//! target margin γ, as TRL's CPO trainer computes it with `loss_type="simpo"` and
//! `cpo_alpha=0` (TRL's default `cpo_alpha=1` adds the chosen NLL: CPO-SimPO).

use burn::tensor::backend::Backend;

use crate::error::{ObjectiveError, check_setting};
use crate::logprobs::PairLogProbs;
use crate::metrics::LossOutput;
use crate::preference::{cdpo_loss, reward_metrics};

/// Settings of [`simpo_loss`]; defaults are TRL's `CPOConfig` with `loss_type="simpo"` and the
/// paper's β = 2.
#[derive(Clone, Debug, PartialEq)]
pub struct SimpoConfig {
    pub beta: f64,
    /// The target reward margin γ (TRL's `simpo_gamma`).
    pub gamma: f64,
    /// cDPO-style smoothing, 0 in the paper.
    pub label_smoothing: f64,
}

impl Default for SimpoConfig {
    fn default() -> Self {
        Self {
            beta: 2.0,
            gamma: 0.5,
            label_smoothing: 0.0,
        }
    }
}

/// `mean(−(1−ε) log σ(z) − ε log σ(−z))` with `z = β·(avg log π(y_c) − avg log π(y_r)) − γ`.
/// Metrics as TRL's CPO: `rewards/*` are `β · avg log-prob`; `logps/*` are the averages.
pub fn simpo_loss<B: Backend>(
    config: &SimpoConfig,
    policy: &PairLogProbs<B>,
) -> Result<LossOutput<B>, ObjectiveError> {
    check_setting("beta", config.beta, config.beta > 0.0, "β must be > 0")?;
    check_setting("gamma", config.gamma, true, "γ is finite")?;
    let eps = config.label_smoothing;
    check_setting(
        "label_smoothing",
        eps,
        (0.0..=0.5).contains(&eps),
        "0 <= ε <= 0.5",
    )?;
    policy.check()?;
    let avg_chosen = policy.chosen.mean();
    let avg_rejected = policy.rejected.mean();
    let z = (avg_chosen.clone() - avg_rejected.clone())
        .mul_scalar(config.beta)
        .sub_scalar(config.gamma);
    let loss = cdpo_loss(1.0, eps, z).mean();
    let mut metrics = reward_metrics(
        avg_chosen.clone().mul_scalar(config.beta),
        avg_rejected.clone().mul_scalar(config.beta),
    );
    metrics.push("logps/chosen", avg_chosen);
    metrics.push("logps/rejected", avg_rejected);
    Ok(LossOutput { loss, metrics })
}
