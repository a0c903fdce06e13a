//! GRPO (Shao et al. 2024) and its descendants (Dr. GRPO, DAPO) as TRL's `GRPOTrainer`: group
//! advantages, the clipped surrogate with asymmetric ε, the k3 KL estimator, and TRL's four
//! ways of turning per-token losses into one number.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};
use crate::metrics::{LossOutput, Metrics};
pub use crate::twin::{Aggregation, RewardScaling};

pub use crate::twin::MAX_LOG_RATIO;

/// Added to the standard deviation before dividing, as TRL.
pub const ADVANTAGE_STD_EPS: f64 = 1e-4;

/// Group-relative advantages `[G·k]` from rewards `[G·k]` laid out group after group (`k =
/// group_size` completions per prompt): `(r − mean_group(r)) / (std + 1e-4)` with the unbiased
/// std of the group (`Group`), of the batch (`Batch`), or no division (`None`, Dr. GRPO).
/// A group of one has std 0, as TRL. Advantages sum to zero within each group.
pub fn group_advantages<B: Backend>(
    rewards: Tensor<B, 1>,
    group_size: usize,
    scaling: RewardScaling,
) -> Result<Tensor<B, 1>, ObjectiveError> {
    let n = rewards.dims()[0];
    if group_size == 0 || !n.is_multiple_of(group_size) {
        return Err(ObjectiveError::Batch(format!(
            "{n} rewards do not split into groups of {group_size} completions"
        )));
    }
    let rewards = rewards.detach();
    let grouped = rewards.clone().reshape([n / group_size, group_size]);
    let centred = (grouped.clone() - grouped.clone().mean_dim(1)).reshape([n]);
    let std = match scaling {
        RewardScaling::None => return Ok(centred),
        RewardScaling::Group if group_size > 1 => {
            grouped.var(1).sqrt().repeat_dim(1, group_size).reshape([n])
        }
        RewardScaling::Batch if n > 1 => rewards
            .reshape([1, n])
            .var(1)
            .sqrt()
            .reshape([1])
            .expand([n]),
        _ => Tensor::zeros([n], &centred.device()),
    };
    Ok(centred / std.add_scalar(ADVANTAGE_STD_EPS))
}

/// The k3 estimator of `KL(π ‖ π_ref)` per token (Schulman 2020), unbiased and ≥ 0:
/// `e^{d} − d − 1` with `d = ref − logp`, capped at [`MAX_LOG_RATIO`] first (verl's
/// `low_var_kl` clamps likewise) so one token the policy has all but ruled out cannot overflow
/// the loss. Below the cap (every `d < 20`) value and gradient are exactly TRL's.
pub fn k3_kl<B: Backend, const D: usize>(
    logps: Tensor<B, D>,
    ref_logps: Tensor<B, D>,
) -> Tensor<B, D> {
    let d = (ref_logps - logps).clamp_max(MAX_LOG_RATIO);
    (d.clone().exp() - d).sub_scalar(1.0)
}

/// The clipped surrogate per token, `−min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A)` with importance
/// ratio `ρ = e^{logp − old}` `[B, T]` (its log capped at [`MAX_LOG_RATIO`] by [`grpo_loss`])
/// and advantages `[B, 1]` or `[B, T]`.
pub fn clipped_surrogate<B: Backend>(
    ratio: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    epsilon_low: f64,
    epsilon_high: f64,
) -> Tensor<B, 2> {
    let clipped = ratio.clone().clamp(1.0 - epsilon_low, 1.0 + epsilon_high);
    let unclipped_term = ratio * advantages.clone();
    let clipped_term = clipped * advantages;
    unclipped_term.min_pair(clipped_term).neg()
}

/// Reduces per-token losses `[B, T]` under a 0/1 mask as TRL's `loss_type`. The `Grpo`, `Bnpo`
/// and `DrGrpo` results are per micro-batch: a trainer accumulating `k` of them divides by `k`.
pub fn aggregate<B: Backend>(
    per_token: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    aggregation: Aggregation,
) -> Tensor<B, 1> {
    let [batch, _] = per_token.dims();
    let masked = per_token * mask.clone();
    match aggregation {
        Aggregation::Grpo => (masked.sum_dim(1) / mask.sum_dim(1).clamp_min(1.0)).mean(),
        Aggregation::Bnpo => masked.sum() / mask.sum().clamp_min(1.0),
        Aggregation::DrGrpo {
            max_completion_length,
        } => masked
            .sum()
            .div_scalar((batch * max_completion_length).max(1) as f64),
        Aggregation::Dapo { total_tokens } => masked.sum().div_scalar(total_tokens.max(1.0)),
    }
}

/// Settings of [`grpo_loss`]; the defaults are TRL's `GRPOConfig` defaults except the
/// aggregation, whose DAPO default needs the accumulated token count.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpoConfig {
    /// The KL weight β (TRL's default 0: no reference model).
    pub beta: f64,
    pub epsilon_low: f64,
    /// DAPO's clip-higher; TRL defaults it to `epsilon_low`.
    pub epsilon_high: f64,
    pub aggregation: Aggregation,
    /// Multiply the per-token KL by the importance ratio (TRL's `use_bias_correction_kl`).
    pub bias_corrected_kl: bool,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.0,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            aggregation: Aggregation::Bnpo,
            bias_corrected_kl: true,
        }
    }
}

/// Per-token log-probs a GRPO step needs, each `[B, T]`.
#[derive(Clone, Debug)]
pub struct GrpoInputs<B: Backend> {
    /// The policy now (with gradient).
    pub logps: Tensor<B, 2>,
    /// The policy that sampled the completions; `None` when this is its first update (ρ = 1).
    pub old_logps: Option<Tensor<B, 2>>,
    /// The reference model; needed when `beta ≠ 0`.
    pub ref_logps: Option<Tensor<B, 2>>,
    /// Completion tokens (tool outputs and padding masked out).
    pub mask: Tensor<B, 2>,
    /// One advantage per completion, `[B]`.
    pub advantages: Tensor<B, 1>,
}

/// The GRPO loss with TRL's metrics: `kl` (when β ≠ 0), `clip_ratio/low_mean`,
/// `clip_ratio/high_mean`, `clip_ratio/region_mean` (token means), `clip_ratio/low_min`,
/// `clip_ratio/high_max` (over per-sequence means).
pub fn grpo_loss<B: Backend>(
    config: &GrpoConfig,
    inputs: &GrpoInputs<B>,
) -> Result<LossOutput<B>, ObjectiveError> {
    check_setting("beta", config.beta, config.beta >= 0.0, "β must be >= 0")?;
    check_setting(
        "epsilon_low",
        config.epsilon_low,
        (0.0..1.0).contains(&config.epsilon_low),
        "0 <= ε_low < 1",
    )?;
    check_setting(
        "epsilon_high",
        config.epsilon_high,
        config.epsilon_high >= 0.0,
        "ε_high >= 0",
    )?;
    let dims = inputs.logps.dims();
    if dims[0] == 0 {
        return Err(ObjectiveError::Batch(
            "GRPO needs at least one completion".into(),
        ));
    }
    check_same_shape("completion mask", &dims, &inputs.mask.dims())?;
    check_same_shape("advantages [B]", &dims[..1], &inputs.advantages.dims())?;
    let old = match &inputs.old_logps {
        Some(old) => {
            check_same_shape("old log-probs", &dims, &old.dims())?;
            old.clone().detach()
        }
        None => inputs.logps.clone().detach(),
    };
    let advantages = inputs.advantages.clone().detach().unsqueeze_dim::<2>(1);
    let ratio = (inputs.logps.clone() - old).clamp_max(MAX_LOG_RATIO).exp();
    let mut per_token = clipped_surrogate(
        ratio.clone(),
        advantages.clone(),
        config.epsilon_low,
        config.epsilon_high,
    );
    let mut metrics = Metrics::new();
    let mask = inputs.mask.clone();
    let token_mean = |x: Tensor<B, 2>| (x * mask.clone()).sum() / mask.clone().sum().clamp_min(1.0);
    if config.beta != 0.0 {
        let reference = inputs.ref_logps.as_ref().ok_or_else(|| {
            ObjectiveError::Batch("GRPO with beta != 0 needs reference log-probs".into())
        })?;
        check_same_shape("reference log-probs", &dims, &reference.dims())?;
        let mut kl = k3_kl(inputs.logps.clone(), reference.clone().detach());
        if config.bias_corrected_kl {
            kl = kl * ratio.clone();
        }
        metrics.push("kl", token_mean(kl.clone()));
        per_token = per_token + kl.mul_scalar(config.beta);
    }
    let loss = aggregate(per_token, mask.clone(), config.aggregation);

    let ratio = ratio.detach();
    let advantages = advantages.expand(dims);
    let low = ratio
        .clone()
        .lower_elem(1.0 - config.epsilon_low)
        .bool_and(advantages.clone().lower_elem(0.0));
    let high = ratio
        .greater_elem(1.0 + config.epsilon_high)
        .bool_and(advantages.greater_elem(0.0));
    let region = low.clone().bool_or(high.clone());
    let (low, high) = (low.float(), high.float());
    let sequence_mean = |x: Tensor<B, 2>| {
        ((x * mask.clone()).sum_dim(1) / mask.clone().sum_dim(1)).squeeze_dim::<1>(1)
    };
    metrics.push("clip_ratio/low_mean", token_mean(low.clone()));
    metrics.push("clip_ratio/high_mean", token_mean(high.clone()));
    metrics.push("clip_ratio/region_mean", token_mean(region.float()));
    metrics.push("clip_ratio/low_min", nan_to(sequence_mean(low), 1.0).min());
    metrics.push(
        "clip_ratio/high_max",
        nan_to(sequence_mean(high), 0.0).max(),
    );
    Ok(LossOutput { loss, metrics })
}

/// Sequences without tokens give 0/0 in the per-sequence clip means; TRL's `nanmin`/`nanmax`
/// skip them, as does filling them with a value that cannot win (1 for a min, 0 for a max).
fn nan_to<B: Backend>(x: Tensor<B, 1>, neutral: f64) -> Tensor<B, 1> {
    let nan = x.clone().is_nan();
    x.mask_fill(nan, neutral)
}
