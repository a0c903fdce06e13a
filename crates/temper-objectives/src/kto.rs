//! KTO (Ethayarajh et al. 2024): unpaired completions labelled desirable or undesirable, each
//! judged against a detached estimate of the policy's KL from the reference, as TRL's `KTOTrainer`.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};
use crate::metrics::{LossOutput, Metrics};
use crate::stable::sigmoid;

/// TRL's KTO `loss_type`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KtoLoss {
    /// `λ_D(1 − σ(β(ρ − z₀)))` and `λ_U(1 − σ(β(z₀ − ρ)))`.
    Kto,
    /// APO-zero on unpaired data: `1 − σ(βρ)` and `σ(βρ)`, no KL term.
    ApoZeroUnpaired,
}

impl KtoLoss {
    pub const ALL: [KtoLoss; 2] = [KtoLoss::Kto, KtoLoss::ApoZeroUnpaired];

    /// TRL's name.
    pub fn name(self) -> &'static str {
        match self {
            KtoLoss::Kto => "kto",
            KtoLoss::ApoZeroUnpaired => "apo_zero_unpaired",
        }
    }

    /// Whether the loss takes the KL estimate (TRL's `calculate_KL`).
    pub fn uses_kl(self) -> bool {
        self == KtoLoss::Kto
    }
}

/// Settings of [`kto_loss`]; the defaults are TRL's `KTOConfig` defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct KtoConfig {
    pub beta: f64,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
    pub loss: KtoLoss,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            loss: KtoLoss::Kto,
        }
    }
}

/// The KL estimate `z₀ = max(0, mean(log π(y'|x) − log π_ref(y'|x)))` over mismatched
/// prompt/completion pairs `y'`, detached (KTO does not back-propagate through it). `[1]`.
pub fn kto_kl<B: Backend>(
    kl_logps: Tensor<B, 1>,
    ref_kl_logps: Tensor<B, 1>,
) -> Result<Tensor<B, 1>, ObjectiveError> {
    check_same_shape(
        "reference KL log-probs",
        &kl_logps.dims(),
        &ref_kl_logps.dims(),
    )?;
    if kl_logps.dims()[0] == 0 {
        return Ok(Tensor::zeros([1], &kl_logps.device()));
    }
    Ok((kl_logps - ref_kl_logps).detach().mean().clamp_min(0.0))
}

/// The mean KTO loss over all `N` completions, from summed log-probs `[N]` of the policy and the
/// reference, the labels (`true` = desirable), and `kl` from [`kto_kl`] (ignored by
/// `apo_zero_unpaired`; pass `None` to use 0, as TRL without `calculate_KL`).
///
/// Metrics with TRL's names: `kl`, and where the batch has such completions, `rewards/chosen`,
/// `logps/chosen` (desirable), `rewards/rejected`, `logps/rejected`, `rewards/margins`.
pub fn kto_loss<B: Backend>(
    config: &KtoConfig,
    logps: Tensor<B, 1>,
    ref_logps: Tensor<B, 1>,
    desirable: &[bool],
    kl: Option<Tensor<B, 1>>,
) -> Result<LossOutput<B>, ObjectiveError> {
    check_setting("beta", config.beta, config.beta > 0.0, "β must be > 0")?;
    check_setting("desirable_weight", config.desirable_weight, true, "finite")?;
    check_setting(
        "undesirable_weight",
        config.undesirable_weight,
        true,
        "finite",
    )?;
    let n = logps.dims()[0];
    check_same_shape("reference log-probs", &[n], &ref_logps.dims())?;
    check_same_shape("labels", &[n], &[desirable.len()])?;
    let device = logps.device();
    if let Some(kl) = &kl {
        check_same_shape("KL estimate (a scalar)", &[1], &kl.dims())?;
    }
    if n == 0 {
        let mut metrics = Metrics::new();
        metrics.push("kl", kl.unwrap_or_else(|| Tensor::zeros([1], &device)));
        return Ok(LossOutput {
            loss: Tensor::zeros([1], &device),
            metrics,
        });
    }
    let kl = match (config.loss, kl) {
        (KtoLoss::Kto, Some(kl)) => kl.detach(),
        _ => Tensor::zeros([1], &device),
    };
    let is_desirable =
        Tensor::<B, 1, Bool>::from_data(TensorData::new(desirable.to_vec(), [n]), &device);
    let ratio = logps.clone() - ref_logps.detach();
    let beta = config.beta;
    let (desirable_loss, undesirable_loss) = match config.loss {
        KtoLoss::Kto => {
            let kl = kl.clone().expand([n]);
            // 1 − σ(x) = σ(−x), exact in the tail.
            (
                sigmoid((ratio.clone() - kl.clone()).mul_scalar(-beta)),
                sigmoid((kl - ratio.clone()).mul_scalar(-beta)),
            )
        }
        KtoLoss::ApoZeroUnpaired => (
            sigmoid(ratio.clone().mul_scalar(-beta)),
            sigmoid(ratio.clone().mul_scalar(beta)),
        ),
    };
    let losses = undesirable_loss
        .mul_scalar(config.undesirable_weight)
        .mask_where(
            is_desirable.clone(),
            desirable_loss.mul_scalar(config.desirable_weight),
        );
    let loss = losses.mean();

    let mut metrics = Metrics::new();
    metrics.push("kl", kl);
    let rewards = ratio.mul_scalar(beta).detach();
    let chosen_count = desirable.iter().filter(|d| **d).count();
    let rejected_count = n - chosen_count;
    let side_mean = |values: Tensor<B, 1>, mask: Tensor<B, 1, Bool>, count: usize| {
        values
            .mask_fill(mask.bool_not(), 0.0)
            .sum()
            .div_scalar(count as f64)
    };
    let mut side = |name_rewards, name_logps, mask: Tensor<B, 1, Bool>, count| {
        let reward = side_mean(rewards.clone(), mask.clone(), count);
        metrics.push(name_rewards, reward.clone());
        metrics.push(name_logps, side_mean(logps.clone(), mask, count));
        reward
    };
    let chosen = (chosen_count > 0).then(|| {
        side(
            "rewards/chosen",
            "logps/chosen",
            is_desirable.clone(),
            chosen_count,
        )
    });
    let rejected = (rejected_count > 0).then(|| {
        side(
            "rewards/rejected",
            "logps/rejected",
            is_desirable.bool_not(),
            rejected_count,
        )
    });
    if let (Some(chosen), Some(rejected)) = (chosen, rejected) {
        metrics.push("rewards/margins", chosen - rejected);
    }
    Ok(LossOutput { loss, metrics })
}
