//! The fused LM head's peak heap, forward and backward, at Qwen's vocabulary: a bound in bytes
//! (not time), measured with a counting global allocator in a test binary of its own.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use peak_alloc::PeakAlloc;
use temper_kernels::lm_head_log_probs;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

type Ad = Autodiff<Flex>;

/// `Σ w·log_probs` forward and backward through the fused head, the gradients held as a trainer
/// holds them: the peak heap growth in bytes over what the inputs already took.
fn forward_backward(n: usize, h: usize, v: usize) -> usize {
    let device = Default::default();
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let hidden = Tensor::<Ad, 2>::from_data(TensorData::new(values(n * h, 1), [n, h]), &device)
        .require_grad();
    let weight = Tensor::<Ad, 2>::from_data(TensorData::new(values(v * h, 2), [v, h]), &device)
        .require_grad();
    let labels: Vec<i64> = (0..n).map(|i| ((i * 104_729) % v) as i64).collect();
    let labels = Tensor::<Ad, 1, Int>::from_data(TensorData::new(labels, [n]), &device);
    let w = Tensor::<Ad, 1>::from_data(TensorData::new(values(n, 3), [n]), &device);
    // The inputs are not part of the kernel's cost: the peak is measured from here.
    PEAK.reset_peak_usage();
    let inputs = PEAK.current_usage();
    let out = lm_head_log_probs(hidden.clone(), weight.clone(), labels, 1.0 / 0.7, true);
    let grads = (out.log_probs * w).sum().backward();
    let dweight = weight.grad(&grads).expect("the weight has a gradient");
    let dhidden = hidden
        .grad(&grads)
        .expect("the hidden states have a gradient");
    assert_eq!(dhidden.dims(), [n, h]);
    assert_eq!(dweight.dims(), [v, h]);
    PEAK.peak_usage() - inputs
}

#[test]
fn fused_head_peak_heap_is_a_tenth_of_the_logits() {
    const N: usize = 1024;
    const H: usize = 16;
    const V: usize = 151_936;
    // Warm the lazily built state (rayon's pool, gemm's cache sizes) outside the measurement.
    forward_backward(4, H, 64);

    let peak = forward_backward(N, H, V);
    let logits_bytes = N * V * std::mem::size_of::<f32>();
    println!(
        "fused LM head, N = {N}, H = {H}, V = {V}: peak heap growth {peak} bytes ({:.1} MiB); \
         the plain path's logits alone are {logits_bytes} bytes ({:.1} MiB)",
        peak as f64 / (1 << 20) as f64,
        logits_bytes as f64 / (1 << 20) as f64,
    );
    assert!(
        peak * 10 <= logits_bytes,
        "peak {peak} bytes is more than a tenth of the logits' {logits_bytes} bytes"
    );
    // The measurement sees the kernel at all: its `dweight` alone is V·H floats (9.7 MB).
    assert!(
        peak >= V * H * std::mem::size_of::<f32>(),
        "peak {peak} bytes is implausibly small"
    );
}
