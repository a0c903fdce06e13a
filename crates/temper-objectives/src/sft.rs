//! Supervised fine-tuning: masked cross-entropy, and the token statistics TRL logs beside it.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape, check_setting};
use crate::logprobs::TokenStats;
use crate::metrics::{LossOutput, Metrics};

/// Masked cross-entropy `−Σ log p(y_t) / N` over per-token log-probs `[B, T]` (zero where masked).
///
/// `N` is the number of unmasked tokens of the *whole accumulated batch*: pass
/// `Some(total_tokens)` when one optimiser step accumulates several micro-batches, so that the
/// summed gradients equal one big batch's (transformers' `num_items_in_batch`). With `None`, `N`
/// is this micro-batch's own count. An empty mask gives a loss of 0, never NaN.
pub fn sft_loss<B: Backend>(
    token_log_probs: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    total_tokens: Option<f64>,
) -> Result<LossOutput<B>, ObjectiveError> {
    check_same_shape("loss mask", &token_log_probs.dims(), &mask.dims())?;
    let summed = (token_log_probs * mask.clone()).sum().neg();
    let loss = match total_tokens {
        Some(total) => {
            check_setting("total_tokens", total, total >= 0.0, "a token count is >= 0")?;
            summed.div_scalar(total.max(1.0))
        }
        None => summed / mask.sum().clamp_min(1.0),
    };
    let mut metrics = Metrics::new();
    metrics.push("loss", loss.clone());
    Ok(LossOutput { loss, metrics })
}

/// TRL's `mean_token_accuracy` and `entropy`: token-weighted means over the unmasked tokens.
pub fn token_metrics<B: Backend>(stats: &TokenStats<B>, mask: &Tensor<B, 2>) -> Metrics<B> {
    let tokens = mask.clone().sum().clamp_min(1.0);
    let mut metrics = Metrics::new();
    metrics.push(
        "mean_token_accuracy",
        stats.is_top1.clone().sum() / tokens.clone(),
    );
    metrics.push("entropy", stats.entropy.clone().sum() / tokens);
    metrics
}
