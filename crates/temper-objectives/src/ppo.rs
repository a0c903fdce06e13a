//! PPO's critic side (Schulman et al. 2017): generalised advantage estimation, masked
//! whitening, and the clipped value loss, as TRL's `PPOTrainer` computes them. The policy side
//! is [`crate::grpo::clipped_surrogate`] with [`crate::grpo::Aggregation::Bnpo`].

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};

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
pub fn ppo_value_loss<B: Backend>(
    values: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: f64,
) -> Result<Tensor<B, 1>, ObjectiveError> {
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
    let per_token = unclipped_error.max_pair(clipped_error);
    Ok(((per_token * mask.clone()).sum() / mask.sum().clamp_min(1.0)).mul_scalar(0.5))
}
