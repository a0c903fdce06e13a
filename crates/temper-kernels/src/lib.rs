//! Fused kernels for the hot paths of a decoder step, with their own backward, as a Burn
//! backend extension.
//!
//! Under `Autodiff`, Burn 0.21 decomposes softmax, attention and every norm into basic ops, each
//! of which keeps its own intermediates for the backward pass and walks memory once more. This
//! crate gives each hot path one function:
//!
//! - [`rms_norm`], [`swiglu`], [`rope`] (Hugging Face's half rotation), [`attention`] (causal,
//!   padding and sliding-window masks, grouped-query heads without repeating K/V), and
//!   [`lm_head_log_probs`] (final hidden states × head weight → each label's log-probability,
//!   with entropy, top-1 and mean logit on request, never holding `[positions, vocab]` whole);
//! - [`adamw_update`]: one parameter's AdamW step (decay, both moments, the update) in one pass
//!   over memory instead of a dozen;
//! - [`linear`] and [`transposed_product`]: a projection or a tied LM head; one row (decoding
//!   at batch 1) takes a matrix-vector kernel that streams the weight once;
//! - [`write_positions`]: new keys or values written into a KV-cache buffer in place (Burn's
//!   `slice_assign` copies the whole buffer on burn-flex).
//!
//! Each has a plain-op twin in [`plain`], which every backend runs unless it has a fused kernel:
//! burn-ndarray and burn-cuda compute exactly what they computed before this crate existed.
//! burn-flex, the default CPU backend, has fused forward and backward kernels ([`flex`]); under
//! `Autodiff<Flex>` they are registered as single graph nodes with their own backward. The tests
//! hold each fused kernel to its plain twin, forward and backward.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//!
//! let device = Default::default();
//! let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
//! let weight = Tensor::<Flex, 1>::ones([2], &device);
//! let y = temper_kernels::rms_norm(x, weight, 1e-6);
//! assert_eq!(y.dims(), [2, 2]);
//! ```
//!
//! Determinism: every fused kernel reduces in a fixed order, and threads split independent rows
//! or heads only, so the same inputs give the same bits whatever the thread count.

mod autodiff;
pub mod flex;
pub mod plain;
pub mod precision;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// Which keys each query may attend to: earlier or same position, not padding, and within the
/// window when the layer slides. Queries are the last `Tq` of the `Tk` keys (a KV cache holds
/// the earlier ones); indices count padding, as transformers' masks do.
#[derive(Clone, Debug)]
pub struct AttentionMask<B: Backend> {
    /// `[batch, Tk]`: 1 for a token, 0 for padding.
    pub padding: Tensor<B, 2>,
    /// Sliding window: key `j` is visible to query `i` only when `i − j < window`.
    pub window: Option<usize>,
}

/// What [`lm_head_log_probs`] returns for each position, `[N]` each (`D = 1`; callers that
/// lay positions out as `[batch, seq]` reshape to `D = 2`). Only `log_probs` carries a gradient.
#[derive(Clone, Debug)]
pub struct HeadLogProbs<B: Backend, const D: usize = 1> {
    /// `log softmax(scale · h·Wᵀ)[label]`.
    pub log_probs: Tensor<B, D>,
    /// Token statistics, when asked for.
    pub stats: Option<HeadStats<B, D>>,
}

/// Statistics of the predicted distribution at each position, detached.
#[derive(Clone, Debug)]
pub struct HeadStats<B: Backend, const D: usize = 1> {
    /// `−Σ p log p`.
    pub entropy: Tensor<B, D>,
    /// 1 where the label is the arg-max (the first one, on ties), else 0.
    pub is_top1: Tensor<B, D>,
    /// The mean (scaled) logit over the vocabulary.
    pub mean_logit: Tensor<B, D>,
}

impl<B: Backend> HeadLogProbs<B> {
    /// The `[N]` outputs as `[batch, seq]` with `batch · seq = N`.
    pub fn into_rows(self, batch: usize, seq: usize) -> HeadLogProbs<B, 2> {
        let rows = |t: Tensor<B, 1>| t.reshape([batch, seq]);
        HeadLogProbs {
            log_probs: rows(self.log_probs),
            stats: self.stats.map(|s| HeadStats {
                entropy: rows(s.entropy),
                is_top1: rows(s.is_top1),
                mean_logit: rows(s.mean_logit),
            }),
        }
    }
}

/// Fused forward and backward kernels of one backend, at the level of its primitives. Each
/// forward returns `None` for inputs it does not handle (another float type, say); the caller
/// then takes the plain path. A backward is only ever called on what its forward returned.
// Each field's signature is the documentation of its kernel: aliases would hide it.
#[allow(clippy::type_complexity)]
pub struct FusedKernels<B: Backend> {
    /// `(x [.., D], w [D], eps)` → `(y, 1/rms [rows])`.
    pub rms_norm:
        fn(FloatTensor<B>, FloatTensor<B>, f64) -> Option<(FloatTensor<B>, FloatTensor<B>)>,
    /// `(dy, x, w, 1/rms)` → `(dx, dw)`.
    pub rms_norm_backward: fn(
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>),
    /// `(gate, up)` → `silu(gate)·up`.
    pub swiglu: fn(FloatTensor<B>, FloatTensor<B>) -> Option<FloatTensor<B>>,
    /// `(dy, gate, up)` → `(dgate, dup)`.
    pub swiglu_backward:
        fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>),
    /// `(x [B, T, H, D], cos [B, T, D], sin [B, T, D])` → rotated `x`.
    pub rope: fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> Option<FloatTensor<B>>,
    /// `(dy, cos, sin)` → `dx`.
    pub rope_backward: fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
    /// `(q [B, Tq, Hq, D], k [B, Tk, Hk, D], v, padding [B, Tk], window)` →
    /// `(out [B, Tq, Hq, D], logsumexp [B, Hq, Tq])`.
    pub attention: fn(
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        Option<usize>,
    ) -> Option<(FloatTensor<B>, FloatTensor<B>)>,
    /// `(dout, q, k, v, padding, window, out, logsumexp)` → `(dq, dk, dv)`.
    pub attention_backward: fn(
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        Option<usize>,
        FloatTensor<B>,
        FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>),
    /// `(hidden [N, H], weight [V, H], labels [N], scale, stats)` →
    /// `(log_probs [N], logsumexp [N], stats [N, 3] as entropy, top-1, mean logit)`.
    pub lm_head: fn(
        FloatTensor<B>,
        FloatTensor<B>,
        IntTensor<B>,
        f64,
        bool,
    ) -> Option<(FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>)>,
    /// `(x [1, K], weight [K, N], bias [N])` → `x · weight + bias` `[1, N]`, the weight read in
    /// place (forward only: decoding computes no gradient).
    pub row_product:
        fn(FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) -> Option<FloatTensor<B>>,
    /// `(buffer [B, C, H, D], start, new [B, N, H, D])` → the buffer with positions
    /// `start..start + N` replaced by `new`, written in place; the buffer back untouched
    /// (`Err`) when it is shared or of another type (the caller then copies it with
    /// `slice_assign`).
    pub write_positions:
        fn(FloatTensor<B>, usize, FloatTensor<B>) -> Result<FloatTensor<B>, FloatTensor<B>>,
    /// `(parameter, gradient, exp_avg, exp_avg_sq, step)`, all flat and of one length →
    /// the three updated (in place in the buffers held once); the four inputs back untouched
    /// (`Err`) when the kernel does not take them.
    pub adamw:
        fn(
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            &AdamWStep,
        )
            -> Result<(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>), Box<[FloatTensor<B>; 4]>>,
    /// `(dlog_probs [N], hidden, weight, labels, logsumexp, scale, weight_grad)` →
    /// `(dhidden, dweight)`, `dweight` only when `weight_grad` (a frozen head skips it).
    pub lm_head_backward: fn(
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        IntTensor<B>,
        FloatTensor<B>,
        f64,
        bool,
    ) -> (FloatTensor<B>, Option<FloatTensor<B>>),
}

/// A Burn backend with temper's fused operations. Every method has a default in plain ops
/// (the [`plain`] twins, or the backend's fused forward where it has one); `Autodiff` overrides
/// them to put a fused kernel into the graph as one node with its own backward.
pub trait KernelBackend: Backend {
    /// This backend's fused kernels, if it has any.
    fn fused_kernels() -> Option<FusedKernels<Self>> {
        None
    }

    /// See [`rms_norm`].
    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        weight: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        if let Some(kernels) = Self::fused_kernels()
            && let Some((y, _)) = (kernels.rms_norm)(float(x.clone()), float(weight.clone()), eps)
        {
            return tensor(y);
        }
        plain::rms_norm(x, weight, eps)
    }

    /// See [`swiglu`].
    fn swiglu<const D: usize>(gate: Tensor<Self, D>, up: Tensor<Self, D>) -> Tensor<Self, D> {
        if let Some(kernels) = Self::fused_kernels()
            && let Some(y) = (kernels.swiglu)(float(gate.clone()), float(up.clone()))
        {
            return tensor(y);
        }
        plain::swiglu(gate, up)
    }

    /// See [`rope`].
    fn rope(x: Tensor<Self, 4>, cos: Tensor<Self, 3>, sin: Tensor<Self, 3>) -> Tensor<Self, 4> {
        if let Some(kernels) = Self::fused_kernels()
            && let Some(y) =
                (kernels.rope)(float(x.clone()), float(cos.clone()), float(sin.clone()))
        {
            return tensor(y);
        }
        plain::rope(x, cos, sin)
    }

    /// See [`attention`].
    fn attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: &AttentionMask<Self>,
    ) -> Tensor<Self, 4> {
        if let Some(kernels) = Self::fused_kernels()
            && let Some((out, _)) = (kernels.attention)(
                float(q.clone()),
                float(k.clone()),
                float(v.clone()),
                float(mask.padding.clone()),
                mask.window,
            )
        {
            return tensor(out);
        }
        plain::attention(q, k, v, mask)
    }

    /// See [`lm_head_log_probs`].
    fn lm_head_log_probs(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        labels: Tensor<Self, 1, Int>,
        scale: f64,
        stats: bool,
    ) -> HeadLogProbs<Self> {
        if let Some(kernels) = Self::fused_kernels()
            && let Some((log_probs, _, head_stats)) = (kernels.lm_head)(
                float(hidden.clone()),
                float(weight.clone()),
                labels.clone().into_primitive(),
                scale,
                stats,
            )
        {
            return HeadLogProbs {
                log_probs: tensor(log_probs),
                stats: head_stats.map(|s| split_stats(tensor(s))),
            };
        }
        plain::lm_head_log_probs(hidden, weight, labels, scale, stats)
    }
}

impl<B: KernelBackend> AdamWState<B> {
    /// See [`adamw_update`].
    fn update(self, gradient: Tensor<B, 1>, step: &AdamWStep) -> Self {
        let Some(kernels) = B::fused_kernels() else {
            return plain::adamw_update(self, gradient, step);
        };
        // Moved in, not cloned: the kernel updates the buffers in place only when it holds
        // their one handle.
        let inputs = [self.parameter, gradient, self.exp_avg, self.exp_avg_sq].map(float);
        let [parameter, gradient, exp_avg, exp_avg_sq] = inputs;
        match (kernels.adamw)(parameter, gradient, exp_avg, exp_avg_sq, step) {
            Ok((parameter, exp_avg, exp_avg_sq)) => Self {
                parameter: tensor(parameter),
                exp_avg: tensor(exp_avg),
                exp_avg_sq: tensor(exp_avg_sq),
            },
            Err(inputs) => {
                let [parameter, gradient, exp_avg, exp_avg_sq] = (*inputs).map(tensor);
                let state = Self {
                    parameter,
                    exp_avg,
                    exp_avg_sq,
                };
                plain::adamw_update(state, gradient, step)
            }
        }
    }
}

/// An autodiff backend whose inner backend has the kernels too (what a trainer needs: the
/// model is trained on `B` and evaluated on `B::InnerBackend`).
pub trait AutodiffKernelBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend
{
}

impl<B> AutodiffKernelBackend for B where
    B: burn::tensor::backend::AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend
{
}

/// `x · weight + bias` for `x` `[rows, in]` and a `Linear` weight `[in, out]`, as Burn's
/// `linear`; one row (a decoding step at batch 1) goes to the backend's matrix-vector kernel
/// where it has one, which streams the weight once in the order it lies in memory.
pub fn linear<B: KernelBackend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    one_row_product(&x, &weight, bias.as_ref()).unwrap_or_else(|| plain::linear(x, weight, bias))
}

/// `x · tableᵀ` for `x` `[rows, width]` and a table `[n, width]` (a tied LM head's embedding),
/// with the one-row kernel of [`linear`] reading the table as it is stored.
pub fn transposed_product<B: KernelBackend>(x: Tensor<B, 2>, table: Tensor<B, 2>) -> Tensor<B, 2> {
    one_row_product(&x, &table.clone().transpose(), None)
        .unwrap_or_else(|| plain::transposed_product(x, table))
}

/// The backend's one-row kernel on `x · weight + bias`, when `x` is one row and the kernel
/// takes it.
fn one_row_product<B: KernelBackend>(
    x: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, 2>> {
    if x.dims()[0] != 1 {
        return None;
    }
    let kernels = B::fused_kernels()?;
    let y = (kernels.row_product)(
        float(x.clone()),
        float(weight.clone()),
        bias.cloned().map(float),
    )?;
    Some(tensor(y))
}

/// `buffer` `[batch, capacity, heads, dim]` with positions `start..start + n` replaced by
/// `new` `[batch, n, heads, dim]`: a KV cache's write. In place where the backend has the
/// kernel and nothing else holds the buffer, so a decoding step costs its new positions, not
/// the whole cache.
pub fn write_positions<B: KernelBackend>(
    buffer: Tensor<B, 4>,
    start: usize,
    new: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [batch, capacity, heads, dim] = buffer.dims();
    let [new_batch, n, new_heads, new_dim] = new.dims();
    assert!(
        [new_batch, new_heads, new_dim] == [batch, heads, dim] && start + n <= capacity,
        "write_positions: {:?} at {start} does not fit in {:?}",
        new.dims(),
        buffer.dims()
    );
    match B::fused_kernels() {
        // The kernel needs the buffer's only handle: it is moved in, not cloned.
        Some(kernels) => {
            match (kernels.write_positions)(float(buffer), start, float(new.clone())) {
                Ok(written) => tensor(written),
                Err(buffer) => plain::write_positions(tensor(buffer), start, new),
            }
        }
        None => plain::write_positions(buffer, start, new),
    }
}

/// One AdamW step's settings, as `torch.optim.AdamW` takes them: learning rate, decoupled
/// weight decay, the moments' betas, ε, and the parameter's own step count (from 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub step: u64,
}

impl AdamWStep {
    /// The scalars of the update, computed in f64 on the host as torch does.
    pub fn scalars(&self) -> AdamWScalars<f64> {
        let t = self.step as i32;
        AdamWScalars {
            decay: 1.0 - self.lr * self.weight_decay,
            one_minus_beta1: 1.0 - self.beta1,
            beta2: self.beta2,
            one_minus_beta2: 1.0 - self.beta2,
            bias_correction2_sqrt: (1.0 - self.beta2.powi(t)).sqrt(),
            epsilon: self.epsilon,
            step_size: self.lr / (1.0 - self.beta1.powi(t)),
        }
    }
}

/// What an AdamW update multiplies and adds, per [`AdamWStep::scalars`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWScalars<T> {
    /// `1 − lr·λ`.
    pub decay: T,
    pub one_minus_beta1: T,
    pub beta2: T,
    pub one_minus_beta2: T,
    /// `√(1 − β₂ᵗ)`.
    pub bias_correction2_sqrt: T,
    pub epsilon: T,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: T,
}

impl AdamWScalars<f64> {
    /// Each rounded to f32, as burn's scalar ops on f32 tensors round them.
    pub fn to_f32(self) -> AdamWScalars<f32> {
        AdamWScalars {
            decay: self.decay as f32,
            one_minus_beta1: self.one_minus_beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: self.one_minus_beta2 as f32,
            bias_correction2_sqrt: self.bias_correction2_sqrt as f32,
            epsilon: self.epsilon as f32,
            step_size: self.step_size as f32,
        }
    }
}

/// A parameter and its two AdamW moments, flattened to one dimension.
#[derive(Clone, Debug)]
pub struct AdamWState<B: Backend> {
    pub parameter: Tensor<B, 1>,
    pub exp_avg: Tensor<B, 1>,
    pub exp_avg_sq: Tensor<B, 1>,
}

/// One AdamW update of a parameter with its `gradient` (all flat, one length), as
/// `torch.optim.AdamW` computes it:
///
/// ```text
/// p ← p·(1 − lr·λ);  m ← m + (g − m)(1 − β₁);  v ← β₂·v + (1 − β₂)·g²
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// Each element is computed by the same f32 operations in the same order on every path, so the
/// fused kernel returns the plain twin's bits.
pub fn adamw_update<B: KernelBackend>(
    state: AdamWState<B>,
    gradient: Tensor<B, 1>,
    step: &AdamWStep,
) -> AdamWState<B> {
    state.update(gradient, step)
}

/// RMSNorm over the last dimension: `w ⊙ x / sqrt(mean(x²) + ε)` (normalised in f32 when `x`
/// is in half precision). `weight` `[width]`.
pub fn rms_norm<B: KernelBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    <B as KernelBackend>::rms_norm(x, weight, eps)
}

/// SwiGLU's gate: `silu(gate) ⊙ up`.
pub fn swiglu<B: KernelBackend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    <B as KernelBackend>::swiglu(gate, up)
}

/// RoPE in Hugging Face's half-rotation layout: `x·cos + rotate_half(x)·sin` with
/// `rotate_half([x₁, x₂]) = [−x₂, x₁]`. `x` `[batch, seq, heads, head_dim]`, `cos` and `sin`
/// `[batch, seq, head_dim]` (constants: no gradient flows into them).
pub fn rope<B: KernelBackend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
) -> Tensor<B, 4> {
    <B as KernelBackend>::rope(x, cos, sin)
}

/// Scaled dot-product attention with grouped-query heads: `q` `[batch, Tq, Hq, D]`, `k` and `v`
/// `[batch, Tk, Hk, D]` with `Hq` a multiple of `Hk` (query head `h` reads kv head
/// `h / (Hq / Hk)`), scale `1/√D`, softmax in f32. Returns `[batch, Tq, Hq, D]`. A query that
/// may attend to no key (padding) averages every value, as transformers' eager attention does.
pub fn attention<B: KernelBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    <B as KernelBackend>::attention(q, k, v, mask)
}

/// Each position's label log-probability under `softmax(scale · hidden · weightᵀ)`, from final
/// hidden states `[N, H]` and the head weight `[V, H]` (an embedding matrix as stored; an
/// untied `Linear`'s `[H, V]` weight transposed, which costs no copy on burn-flex). Labels
/// outside `[0, V)` give 0 and no gradient (masked positions may hold anything). The fused
/// kernel never holds more than a chunk of positions' logits, forward or backward.
pub fn lm_head_log_probs<B: KernelBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    scale: f64,
    stats: bool,
) -> HeadLogProbs<B> {
    <B as KernelBackend>::lm_head_log_probs(hidden, weight, labels, scale, stats)
}

/// `[N, 3]` statistics (entropy, top-1, mean logit) as [`HeadStats`].
pub(crate) fn split_stats<B: Backend>(stats: Tensor<B, 2>) -> HeadStats<B> {
    let column = |i: usize| stats.clone().narrow(1, i, 1).squeeze_dim::<1>(1);
    HeadStats {
        entropy: column(0),
        is_top1: column(1),
        mean_logit: column(2),
    }
}

pub(crate) fn float<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
    x.into_primitive().tensor()
}

pub(crate) fn tensor<B: Backend, const D: usize>(x: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

impl KernelBackend for burn::backend::NdArray<f32> {}
impl KernelBackend for burn::backend::NdArray<f64> {}

// burn-cuda in the float types the CLI offers: plain ops, which Burn's fusion fuses.
#[cfg(feature = "cuda")]
impl KernelBackend for burn::backend::Cuda<f32, i32> {}
#[cfg(feature = "cuda")]
impl KernelBackend for burn::backend::Cuda<burn::tensor::bf16, i32> {}
#[cfg(feature = "cuda")]
impl KernelBackend for burn::backend::Cuda<burn::tensor::f16, i32> {}
