//! Clipping by the global gradient norm, as `torch.nn.utils.clip_grad_norm_` (the TRL default,
//! `max_grad_norm` 1.0): every gradient is scaled by `min(1, max / (‖g‖ + 1e-6))` where `‖g‖` is
//! the 2-norm over all parameters together. Burn's `GradientClipping::Norm` clips each tensor
//! by its own norm, which is not the same.

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use crate::parameters::{map_gradients, squared_norm};

/// Clips `gradients` in place and returns the global norm before clipping (what the Trainer
/// logs as `grad_norm`). `max_norm` ≤ 0 measures without clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    gradients: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    clip_global_norm_of::<B, M>(&mut [(model, gradients)], max_norm)
}

/// [`clip_global_norm`] over several models trained together (PPO's policy and value model,
/// as one optimizer over both): one norm over every gradient of every model.
pub fn clip_global_norm_of<B: AutodiffBackend, M: AutodiffModule<B>>(
    models: &mut [(&M, &mut GradientsParams)],
    max_norm: f64,
) -> f64 {
    let norm = models
        .iter()
        .map(|(model, gradients)| squared_norm::<B, M>(model, gradients))
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 {
        // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
        let coefficient = max_norm / (norm + 1e-6);
        if coefficient < 1.0 {
            for (model, gradients) in models.iter_mut() {
                map_gradients::<B, M>(model, gradients, |g| g.mul_scalar(coefficient));
            }
        }
    }
    norm
}
