//! The Bradley–Terry reward-model loss (InstructGPT), with Llama 2's margin and the centering
//! term of Eisenstein et al. 2023, as TRL's `RewardTrainer`.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};
use crate::metrics::{LossOutput, Metrics};
use crate::stable::log_sigmoid;

/// `mean(−log σ(r_c − r_r − m)) + c · mean((r_c + r_r)²)` from scalar rewards `[B]` of the chosen
/// and rejected sequences, an optional per-pair margin `m` `[B]` and an optional centering
/// coefficient `c` (TRL's `center_rewards_coefficient`, e.g. 0.01).
///
/// Metrics with TRL's names: `accuracy`, `margin`, `min_reward`, `mean_reward`, `max_reward`.
pub fn reward_model_loss<B: Backend>(
    chosen: Tensor<B, 1>,
    rejected: Tensor<B, 1>,
    margin: Option<Tensor<B, 1>>,
    center_coefficient: Option<f64>,
) -> Result<LossOutput<B>, ObjectiveError> {
    let dims = chosen.dims();
    if dims[0] == 0 {
        return Err(ObjectiveError::Batch(
            "a reward-model batch needs at least one pair".into(),
        ));
    }
    check_same_shape("rejected rewards", &dims, &rejected.dims())?;
    let difference = chosen.clone() - rejected.clone();
    let shifted = match margin {
        Some(margin) => {
            check_same_shape("margins", &dims, &margin.dims())?;
            difference.clone() - margin
        }
        None => difference.clone(),
    };
    let mut loss = log_sigmoid(shifted).neg().mean();
    if let Some(coefficient) = center_coefficient {
        check_setting("center_rewards_coefficient", coefficient, true, "finite")?;
        let center = (chosen.clone() + rejected.clone()).square().mean();
        loss = loss + center.mul_scalar(coefficient);
    }
    let all = Tensor::cat(vec![chosen.clone(), rejected.clone()], 0).detach();
    let mut metrics = Metrics::new();
    metrics.push("accuracy", chosen.greater(rejected).float());
    metrics.push("margin", difference);
    metrics.push("min_reward", all.clone().min());
    metrics.push("mean_reward", all.clone());
    metrics.push("max_reward", all.max());
    Ok(LossOutput { loss, metrics })
}
