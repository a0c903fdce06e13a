//! The plain-op twin of every kernel: what each computes, written in Burn tensor ops, as
//! transformers computes it. Backends without fused kernels run these (under `Autodiff`, Burn
//! differentiates them op by op); the fused kernels are tested against them.

use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::precision::{narrowed, widened};
use crate::{AdamWState, AdamWStep, AttentionMask, HeadLogProbs, HeadStats};

/// See [`crate::rms_norm`].
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = widened(x);
    let mean_square = x.clone().square().mean_dim(D - 1);
    // A division, not `* sqrt(..).recip()`: burn-ndarray's SIMD reciprocal is approximate
    // (about 1e-4 relative) on aligned data, which made results depend on allocation.
    let normalized = narrowed(x / mean_square.add_scalar(eps).sqrt(), dtype);
    let width = weight.dims()[0];
    let mut shape = [1; D];
    shape[D - 1] = width;
    normalized * weight.reshape(shape)
}

/// See [`crate::swiglu`].
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// See [`crate::rope`].
pub fn rope<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 3>, sin: Tensor<B, 3>) -> Tensor<B, 4> {
    let [batch, seq, heads, dim] = x.dims();
    let half = dim / 2;
    let first = x.clone().slice([0..batch, 0..seq, 0..heads, 0..half]);
    let second = x.clone().slice([0..batch, 0..seq, 0..heads, half..dim]);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos.unsqueeze_dim::<4>(2) + rotated * sin.unsqueeze_dim::<4>(2)
}

/// See [`crate::attention`].
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    let [batch, queries, heads, dim] = q.dims();
    let kv_heads = k.dims()[2];
    let allowed = allowed_keys(mask.padding.clone(), mask.window, queries);
    let q = q.swap_dims(1, 2);
    let k = repeat_kv(k.swap_dims(1, 2), heads / kv_heads);
    let v = repeat_kv(v.swap_dims(1, 2), heads / kv_heads);
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar((dim as f64).powf(-0.5));
    // Softmax in f32 also under half precision (transformers' eager attention), where
    // f32::MIN is a finite "minus infinity" that keeps fully masked rows free of NaN.
    let scores = widened(scores).mask_fill(allowed.bool_not(), f32::MIN);
    let context = narrowed(softmax(scores, 3), v.dtype()).matmul(v);
    let out = context.swap_dims(1, 2);
    debug_assert_eq!(out.dims(), [batch, queries, heads, dim]);
    out
}

/// `[batch, kv_heads, seq, dim]` → `[batch, kv_heads · n_rep, seq, dim]`, each kv head repeated
/// for its `n_rep` query heads in turn (transformers' `repeat_kv`).
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [batch, kv_heads, seq, dim] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, n_rep)
        .reshape([batch, kv_heads * n_rep, seq, dim])
}

/// Which keys the last `queries` tokens may attend to, `[batch, 1, queries, total]`: earlier
/// or same index, not padding (`padding` `[batch, total]` is 0 there), and within `window`
/// indices when the layer slides.
pub fn allowed_keys<B: Backend>(
    padding: Tensor<B, 2>,
    window: Option<usize>,
    queries: usize,
) -> Tensor<B, 4, Bool> {
    let [batch, total] = padding.dims();
    let device = padding.device();
    let start = (total - queries) as i64;
    let query = Tensor::<B, 1, Int>::arange(start..total as i64, &device)
        .float()
        .reshape([queries, 1]);
    let key = Tensor::<B, 1, Int>::arange(0..total as i64, &device)
        .float()
        .reshape([1, total]);
    let offset = query - key; // q_idx − kv_idx
    let mut allowed = offset.clone().greater_equal_elem(0.0);
    if let Some(window) = window {
        allowed = allowed.bool_and(offset.lower_elem(window as f64));
    }
    let keys = padding.greater_elem(0.0).reshape([batch, 1, 1, total]);
    allowed
        .reshape([1, 1, queries, total])
        .expand([batch, 1, queries, total])
        .bool_and(keys.expand([batch, 1, queries, total]))
}

/// See [`crate::lm_head_log_probs`]: the logits whole, then a stable log-softmax and a gather.
pub fn lm_head_log_probs<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    scale: f64,
    stats: bool,
) -> HeadLogProbs<B> {
    let vocab = weight.dims()[0];
    let logits = hidden.matmul(weight.transpose());
    let logits = if scale == 1.0 {
        logits
    } else {
        logits.mul_scalar(scale)
    };
    let outside = labels
        .clone()
        .lower_elem(0)
        .bool_or(labels.clone().greater_equal_elem(vocab as i64));
    let safe = labels.mask_fill(outside.clone(), 0);
    let log_softmax = log_softmax(logits.clone(), 1);
    let log_probs = log_softmax
        .clone()
        .gather(1, safe.clone().unsqueeze_dim(1))
        .squeeze_dim::<1>(1)
        .mask_fill(outside, 0.0);
    let stats = stats.then(|| {
        let detached = log_softmax.detach();
        let entropy = (detached.clone().exp() * detached)
            .sum_dim(1)
            .squeeze_dim::<1>(1)
            .neg();
        let logits = logits.detach();
        let is_top1 = logits
            .clone()
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(safe)
            .float();
        HeadStats {
            entropy,
            is_top1,
            mean_logit: logits.mean_dim(1).squeeze_dim(1),
        }
    });
    HeadLogProbs { log_probs, stats }
}

/// See [`crate::linear`].
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    burn::tensor::module::linear(x, weight, bias)
}

/// See [`crate::transposed_product`]. As `(table · xᵀ)ᵀ`: `x · tableᵀ` would have burn-ndarray
/// copy the transposed table on every call.
pub fn transposed_product<B: Backend>(x: Tensor<B, 2>, table: Tensor<B, 2>) -> Tensor<B, 2> {
    table.matmul(x.transpose()).transpose()
}

/// See [`crate::write_positions`].
pub fn write_positions<B: Backend>(
    buffer: Tensor<B, 4>,
    start: usize,
    new: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [batch, n, heads, dim] = new.dims();
    buffer.slice_assign([0..batch, start..start + n, 0..heads, 0..dim], new)
}

/// See [`crate::adamw_update`].
pub fn adamw_update<B: Backend>(
    state: AdamWState<B>,
    gradient: Tensor<B, 1>,
    step: &AdamWStep,
) -> AdamWState<B> {
    let c = step.scalars();
    let AdamWState {
        parameter,
        exp_avg,
        exp_avg_sq,
    } = state;
    let parameter = parameter.mul_scalar(c.decay);
    let exp_avg = exp_avg.clone() + (gradient.clone() - exp_avg).mul_scalar(c.one_minus_beta1);
    let exp_avg_sq =
        exp_avg_sq.mul_scalar(c.beta2) + gradient.square().mul_scalar(c.one_minus_beta2);
    let denominator = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(c.bias_correction2_sqrt)
        .add_scalar(c.epsilon);
    let parameter = parameter - (exp_avg.clone() / denominator).mul_scalar(c.step_size);
    AdamWState {
        parameter,
        exp_avg,
        exp_avg_sq,
    }
}
