//! One training forward and backward pass, with per-layer activation checkpointing switchable.
//!
//! Off, autodiff keeps every intermediate of every layer until the backward pass: at sequence
//! length 512 that is most of the memory a step needs. Per layer, the forward pass keeps only
//! each decoder layer's input; the backward pass then walks the layers from the top, recomputing
//! one layer's forward under autodiff and backpropagating the gradient that arrived from above
//! through it (HF's `gradient_checkpointing`, torch's `checkpoint`). Burn 0.21 only offers
//! backend-wide checkpointing strategies, hence this layer-level form written with public APIs:
//! a segment's gradient is the backward pass of `Σ segment(x) ⊙ upstream`.
//!
//! LoRA dropout draws masks from the backend's generator; so that the recomputation sees the
//! masks the first pass saw, every layer reseeds the generator with its own seed in both passes
//! (and in the plain pass too, so that switching checkpointing on changes no gradient).

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor};
use temper_kernels::{AutodiffKernelBackend, KernelBackend};

use crate::attention::Rotary;
use crate::model::{CausalLm, DecoderLayer, HeadInput};

/// Where the backward pass gets each layer's activations from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientCheckpointing {
    /// Kept from the forward pass: fastest, most memory.
    #[default]
    Off,
    /// Recomputed layer by layer: one more forward pass of the decoder layers, and the memory
    /// of one layer's activations plus each layer's input instead of all of them.
    PerLayer,
}

/// What a training pass returns.
pub struct Backward<B: AutodiffBackend, O> {
    /// The loss, detached.
    pub loss: Tensor<B::InnerBackend, 1>,
    /// Whatever else the loss function returned (metrics, detached tensors).
    pub output: O,
    /// Gradients of every parameter that requires them.
    pub gradients: GradientsParams,
}

/// Runs `model` on a batch, applies `loss_fn` to the final hidden states and head (a
/// [`HeadInput`]: the logits, or the fused log-prob path), and backpropagates the loss it
/// returns.
pub fn loss_and_gradients<B: AutodiffKernelBackend, O>(
    model: &CausalLm<B>,
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2>,
    position_ids: Tensor<B, 2, Int>,
    checkpointing: GradientCheckpointing,
    loss_fn: impl FnOnce(HeadInput<'_, B>) -> (Tensor<B, 1>, O),
) -> Backward<B, O> {
    let device = input_ids.device();
    let rotary = Rotary::new(position_ids, model.inverse_frequencies.clone());
    let seeds = dropout_seeds(model, &device);
    let layers = Layers {
        rotary: &rotary,
        mask: &attention_mask,
        seeds: seeds.as_deref(),
        device: &device,
    };
    match checkpointing {
        GradientCheckpointing::Off => {
            let mut x = model.embed_tokens.forward(input_ids);
            for (index, layer) in model.layers.iter().enumerate() {
                x = layers.forward(index, layer, x);
            }
            let (loss, output) = loss_fn(HeadInput::new(model, x));
            let gradients = GradientsParams::from_grads(loss.backward(), model);
            Backward {
                loss: loss.inner(),
                output,
                gradients,
            }
        }
        GradientCheckpointing::PerLayer => recomputing(model, input_ids, &layers, loss_fn),
    }
}

/// The per-layer pass: a forward pass without a graph that keeps each layer's input, then the
/// head's backward, then each layer's recomputation and backward from the top, then the
/// embeddings'.
fn recomputing<B: AutodiffKernelBackend, O>(
    model: &CausalLm<B>,
    input_ids: Tensor<B, 2, Int>,
    layers: &Layers<'_, B>,
    loss_fn: impl FnOnce(HeadInput<'_, B>) -> (Tensor<B, 1>, O),
) -> Backward<B, O> {
    // Untracked parameters and input: autodiff records nothing, yet dropout stays active
    // (it would not on the inner backend), so this pass matches the recomputation.
    let untracked = model.clone().no_grad();
    let mut x = untracked.embed_tokens.forward(input_ids.clone()).detach();
    let mut layer_inputs = Vec::with_capacity(model.layers.len());
    for (index, layer) in untracked.layers.iter().enumerate() {
        layer_inputs.push(x.clone());
        x = layers.forward(index, layer, x);
    }
    drop(untracked);

    let mut accumulated = GradientsAccumulator::<CausalLm<B>>::new();
    let top = x.require_grad();
    let (loss, output) = loss_fn(HeadInput::new(model, top.clone()));
    let mut upstream = backward_segment(model, loss.clone(), &top, &mut accumulated);

    for (index, (layer, input)) in model.layers.iter().zip(layer_inputs).enumerate().rev() {
        let input = input.require_grad();
        let recomputed = layers.forward(index, layer, input.clone());
        let surrogate = (recomputed * Tensor::from_inner(upstream)).sum();
        upstream = backward_segment(model, surrogate, &input, &mut accumulated);
    }

    if model.embed_tokens.weight.is_require_grad() {
        let embedded = model.embed_tokens.forward(input_ids);
        let surrogate = (embedded * Tensor::from_inner(upstream)).sum();
        accumulated.accumulate(
            model,
            GradientsParams::from_grads(surrogate.backward(), model),
        );
    }
    Backward {
        loss: loss.inner(),
        output,
        gradients: accumulated.grads(),
    }
}

/// Backpropagates `scalar`, adds its parameter gradients to `accumulated`, and returns the
/// gradient that reached `input` (zeros where the scalar does not depend on it).
fn backward_segment<B: AutodiffBackend>(
    model: &CausalLm<B>,
    scalar: Tensor<B, 1>,
    input: &Tensor<B, 3>,
    accumulated: &mut GradientsAccumulator<CausalLm<B>>,
) -> Tensor<B::InnerBackend, 3> {
    let mut grads = scalar.backward();
    let upstream = input
        .grad_remove(&mut grads)
        .unwrap_or_else(|| input.clone().inner().zeros_like());
    accumulated.accumulate(model, GradientsParams::from_grads(grads, model));
    upstream
}

/// What every decoder layer of one pass shares.
struct Layers<'a, B: Backend> {
    rotary: &'a Rotary<B>,
    mask: &'a Tensor<B, 2>,
    /// One generator seed per layer when some adapter has dropout; `None` otherwise.
    seeds: Option<&'a [u64]>,
    device: &'a B::Device,
}

impl<B: KernelBackend> Layers<'_, B> {
    fn forward(&self, index: usize, layer: &DecoderLayer<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(seeds) = self.seeds {
            B::seed(self.device, seeds[index]);
        }
        layer.forward(x, self.rotary, self.mask, None)
    }
}

/// A seed per layer, drawn from the backend's generator (so a seeded run stays reproducible),
/// when some enabled adapter applies dropout.
fn dropout_seeds<B: Backend>(model: &CausalLm<B>, device: &B::Device) -> Option<Vec<u64>> {
    let dropout = model.layers.iter().any(|layer| {
        layer.projections().iter().any(|(_, projection)| {
            projection
                .lora
                .as_ref()
                .is_some_and(|lora| lora.enabled && lora.dropout.prob > 0.0)
        })
    });
    if !dropout {
        return None;
    }
    // Two uniform draws of 24 bits each per layer (f32 holds 24 exactly).
    let scale = f64::from(1u32 << 24);
    let draws = Tensor::<B, 2>::random(
        [model.layers.len(), 2],
        Distribution::Uniform(0.0, scale),
        device,
    )
    .floor()
    .into_data()
    .convert::<f64>()
    .to_vec::<f64>()
    .expect("a float tensor converts to f64");
    Some(
        draws
            .chunks(2)
            .map(|pair| ((pair[0] as u64) << 24) | pair[1] as u64)
            .collect(),
    )
}
