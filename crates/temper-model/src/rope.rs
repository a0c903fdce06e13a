//! Rotary position embedding frequencies as transformers computes them (`modeling_rope_utils`):
//! `θ^{−2i/d}` for `i < d/2`, optionally rescaled by Llama 3.x's `llama3` rule. The model
//! rotates in HF's half-rotation layout (first half against second half of each head), which
//! is why it does not use burn-nn's interleaved `RotaryEncoding`.

use std::f64::consts::PI;

use crate::config::{ModelConfig, RopeScaling};

/// The `head_dim / 2` inverse frequencies of a model.
pub fn inverse_frequencies(config: &ModelConfig) -> Vec<f64> {
    let base = default_frequencies(config.rope_theta, config.head_dim);
    match &config.rope_scaling {
        Some(scaling) => base
            .into_iter()
            .map(|f| llama3_scaled(f, scaling))
            .collect(),
        None => base,
    }
}

/// `1 / θ^{2i/d}` for `i = 0 .. d/2`.
pub fn default_frequencies(theta: f64, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect()
}

/// Llama 3.x: wavelengths shorter than `original / high_freq_factor` are kept, longer than
/// `original / low_freq_factor` divided by `factor`, and those between interpolated smoothly.
pub fn llama3_scaled(frequency: f64, scaling: &RopeScaling) -> f64 {
    let original = scaling.original_max_position_embeddings as f64;
    let low_freq_wavelen = original / scaling.low_freq_factor;
    let high_freq_wavelen = original / scaling.high_freq_factor;
    let wavelen = 2.0 * PI / frequency;
    if wavelen < high_freq_wavelen {
        frequency
    } else if wavelen > low_freq_wavelen {
        frequency / scaling.factor
    } else {
        let smooth = (original / wavelen - scaling.low_freq_factor)
            / (scaling.high_freq_factor - scaling.low_freq_factor);
        (1.0 - smooth) * frequency / scaling.factor + smooth * frequency
    }
}
