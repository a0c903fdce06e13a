//! PPO (Schulman et al. 2017) as TRL's `PPOTrainer` computes it: the per-token rewards of a
//! round (KL penalty plus the score on the last token), generalised advantage estimation,
//! masked whitening, the clipped policy loss and the clipped value loss, each with TRL's
//! metrics.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};
use crate::grpo::{MAX_LOG_RATIO, clipped_surrogate, k3_kl};
use crate::metrics::{LossOutput, Metrics};

/// How the per-token KL penalty is estimated (TRL's `kl_estimator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum KlEstimator {
    /// `logp − ref` (unbiased, may be negative per token).
    K1,
    /// `e^{ref − logp} − (ref − logp) − 1` (unbiased, never negative).
    K3,
}

/// A round's per-token rewards `[B, T]` and the KL they were shaped with.
pub struct ShapedRewards<B: Backend> {
    /// `−kl_coef · KL_t`, plus the score at each completion's last token; whitened (mean kept)
    /// when asked.
    pub rewards: Tensor<B, 2>,
    /// The per-token KL estimate, 0 on padding.
    pub kl: Tensor<B, 2>,
    /// `−kl_coef · KL_t`, 0 on padding (TRL's `non_score_reward`).
    pub non_score: Tensor<B, 2>,
}

/// TRL's reward shaping: per completion token, `−kl_coef · KL(logp, ref)` under `estimator`,
/// plus `score_at_end` (each row's score at its last completion token, 0 elsewhere), then,
/// with `whiten`, [`masked_whiten`] keeping the mean and 0 on padding. All inputs `[B, T]`
/// with `mask` 1 on completion tokens.
pub fn shape_rewards<B: Backend>(
    logps: Tensor<B, 2>,
    ref_logps: Tensor<B, 2>,
    score_at_end: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    kl_coef: f64,
    estimator: KlEstimator,
    whiten: bool,
) -> Result<ShapedRewards<B>, ObjectiveError> {
    let dims = logps.dims();
    check_same_shape("reference log-probs", &dims, &ref_logps.dims())?;
    check_same_shape("scores", &dims, &score_at_end.dims())?;
    check_same_shape("mask", &dims, &mask.dims())?;
    let kl = match estimator {
        KlEstimator::K1 => logps - ref_logps,
        KlEstimator::K3 => k3_kl(logps, ref_logps),
    } * mask.clone();
    let non_score = kl.clone().mul_scalar(-kl_coef);
    let mut rewards = non_score.clone() + score_at_end;
    if whiten {
        rewards = masked_whiten(rewards, mask.clone(), false) * mask;
    }
    Ok(ShapedRewards {
        rewards,
        kl,
        non_score,
    })
}

/// Mean of `x` `[B, T]` over the positions where `mask` is 1.
fn masked_mean<B: Backend>(x: Tensor<B, 2>, mask: &Tensor<B, 2>) -> Tensor<B, 1> {
    (x * mask.clone()).sum() / mask.clone().sum().clamp_min(1.0)
}

/// PPO's clipped policy loss, the masked mean over completion tokens of
/// [`clipped_surrogate`] with ratio `ρ = e^{min(logp − old, 20)}` and per-token advantages,
/// all `[B, T]`. Metrics (TRL's names): `loss/policy_avg`, `policy/approxkl_avg`
/// (`½·mean((logp − old)²)`), `policy/clipfrac_avg` (the share of tokens whose clipped term is
/// the one taken), `policy/entropy_avg` (of `entropy`, the policy's per-token entropies) and
/// `val/ratio`.
pub fn ppo_policy_loss<B: Backend>(
    logps: Tensor<B, 2>,
    old_logps: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    entropy: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    cliprange: f64,
) -> Result<LossOutput<B>, ObjectiveError> {
    let dims = logps.dims();
    check_same_shape("old log-probs", &dims, &old_logps.dims())?;
    check_same_shape("advantages", &dims, &advantages.dims())?;
    check_same_shape("entropy", &dims, &entropy.dims())?;
    check_same_shape("mask", &dims, &mask.dims())?;
    check_setting("cliprange", cliprange, cliprange >= 0.0, "ε >= 0")?;
    let diff = logps - old_logps.detach();
    let ratio = diff.clone().clamp_max(MAX_LOG_RATIO).exp();
    let surrogate = clipped_surrogate(ratio.clone(), advantages.clone(), cliprange, cliprange);
    let loss = masked_mean(surrogate, &mask);
    let ratio = ratio.detach();
    let unclipped = (ratio.clone() * advantages.clone()).neg();
    let clipped = (ratio.clone().clamp(1.0 - cliprange, 1.0 + cliprange) * advantages).neg();
    let mut metrics = Metrics::new();
    metrics.push("loss/policy_avg", loss.clone());
    metrics.push(
        "policy/approxkl_avg",
        masked_mean(diff.detach().square(), &mask).mul_scalar(0.5),
    );
    metrics.push(
        "policy/clipfrac_avg",
        masked_mean(clipped.greater(unclipped).float(), &mask),
    );
    metrics.push("policy/entropy_avg", masked_mean(entropy, &mask));
    metrics.push("val/ratio", masked_mean(ratio, &mask));
    Ok(LossOutput { loss, metrics })
}

/// GAE over per-token rewards and values `[B, T]`, scanning backwards:
/// `δ_t = r_t + γV_{t+1} − V_t`, `A_t = δ_t + γλA_{t+1}`, `V_T = 0`. Returns `(advantages,
/// returns = advantages + values)`, both detached. Mask rewards and values of padding to 0 first.
pub fn gae<B: Backend>(
    rewards: Tensor<B, 2>,
    values: Tensor<B, 2>,
    gamma: f64,
    lambda: f64,
) -> Result<(Tensor<B, 2>, Tensor<B, 2>), ObjectiveError> {
    check_same_shape("values", &rewards.dims(), &values.dims())?;
    check_setting("gamma", gamma, (0.0..=1.0).contains(&gamma), "0 <= γ <= 1")?;
    check_setting(
        "lambda",
        lambda,
        (0.0..=1.0).contains(&lambda),
        "0 <= λ <= 1",
    )?;
    let [batch, seq] = rewards.dims();
    let rewards = rewards.detach();
    let values = values.detach();
    let device = values.device();
    let column = |x: &Tensor<B, 2>, t: usize| x.clone().slice([0..batch, t..t + 1]);
    let mut next_value = Tensor::<B, 2>::zeros([batch, 1], &device);
    let mut next_advantage = Tensor::<B, 2>::zeros([batch, 1], &device);
    let mut reversed = Vec::with_capacity(seq);
    for t in (0..seq).rev() {
        let value = column(&values, t);
        let delta = column(&rewards, t) + next_value.mul_scalar(gamma) - value.clone();
        next_advantage = delta + next_advantage.mul_scalar(gamma * lambda);
        reversed.push(next_advantage.clone());
        next_value = value;
    }
    reversed.reverse();
    let advantages = if seq == 0 {
        values.clone()
    } else {
        Tensor::cat(reversed, 1)
    };
    let returns = advantages.clone() + values;
    Ok((advantages, returns))
}

/// Whitens `values` `[B, T]` over the unmasked positions, `(x − mean)/sqrt(var + 1e-8)` with the
/// unbiased variance, as TRL's `masked_whiten`; `shift_mean = false` adds the mean back.
pub fn masked_whiten<B: Backend>(
    values: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    shift_mean: bool,
) -> Tensor<B, 2> {
    let count = mask.clone().sum();
    let mean = (values.clone() * mask.clone()).sum() / count.clone().clamp_min(1.0);
    let centred = values - mean.clone().unsqueeze::<2>();
    let biased_var = (centred.clone().square() * mask).sum() / count.clone().clamp_min(1.0);
    let bessel = count.clone() / count.sub_scalar(1.0).clamp_min(1.0);
    // Divide rather than multiply by `recip()`: burn-ndarray's SIMD reciprocal is approximate.
    let std = (biased_var * bessel).add_scalar(1e-8).sqrt();
    let whitened = centred / std.unsqueeze::<2>();
    if shift_mean {
        whitened
    } else {
        whitened + mean.unsqueeze::<2>()
    }
}

/// PPO's clipped value loss, `½ · masked_mean(max((V − R)², (clip(V, V_old ± ε) − R)²))`, from
/// new values, the values at sampling time, returns and the completion mask, all `[B, T]`.
/// Metrics (TRL's names): `loss/value_avg` and `val/clipfrac_avg` (the share of tokens whose
/// clipped error is the larger).
pub fn ppo_value_loss<B: Backend>(
    values: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: f64,
) -> Result<LossOutput<B>, ObjectiveError> {
    let dims = values.dims();
    check_same_shape("old values", &dims, &old_values.dims())?;
    check_same_shape("returns", &dims, &returns.dims())?;
    check_same_shape("mask", &dims, &mask.dims())?;
    check_setting("cliprange_value", clip, clip >= 0.0, "ε >= 0")?;
    let old_values = old_values.detach();
    let returns = returns.detach();
    let low = old_values.clone().sub_scalar(clip);
    let high = old_values.add_scalar(clip);
    let clipped = values.clone().max_pair(low).min_pair(high);
    let unclipped_error = (values - returns.clone()).square();
    let clipped_error = (clipped - returns).square();
    let clip_taken = clipped_error
        .clone()
        .detach()
        .greater(unclipped_error.clone().detach())
        .float();
    let per_token = unclipped_error.max_pair(clipped_error);
    let loss = masked_mean(per_token, &mask).mul_scalar(0.5);
    let mut metrics = Metrics::new();
    metrics.push("loss/value_avg", loss.clone());
    metrics.push("val/clipfrac_avg", masked_mean(clip_taken, &mask));
    Ok(LossOutput { loss, metrics })
}
