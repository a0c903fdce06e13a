//! Fused f32 kernels for burn-flex, the default CPU backend. Each reads its inputs as
//! contiguous `f32` slices (views are made contiguous once, at the kernel's edge), works on rows
//! or heads in parallel with rayon, reduces each row in a fixed order, and returns new
//! contiguous tensors. Other float types return `None` and take the plain path.

mod adamw;
mod attention;
mod cache;
mod elementwise;
mod lm_head;
mod math;
mod matrix;
mod rms_norm;
mod row_product;

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape, TensorMetadata};

use crate::{FusedKernels, KernelBackend};

impl KernelBackend for Flex {
    fn fused_kernels() -> Option<FusedKernels<Self>> {
        Some(FusedKernels {
            rms_norm: rms_norm::forward,
            rms_norm_backward: rms_norm::backward,
            swiglu: elementwise::swiglu,
            swiglu_backward: elementwise::swiglu_backward,
            rope: elementwise::rope,
            rope_backward: elementwise::rope_backward,
            attention: attention::forward,
            attention_backward: attention::backward,
            lm_head: lm_head::forward,
            lm_head_backward: lm_head::backward,
            row_product: row_product::forward,
            write_positions: cache::write_positions,
            adamw: adamw::update,
        })
    }
}

/// Whether every tensor holds f32 (the only type the fused kernels compute in).
pub(crate) fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// `t` with its elements contiguous in row-major order, as [`values`] reads them: no copy when
/// they already are, including a view at an offset into a larger buffer (a prefix of a KV
/// cache, one side of a batch), which `to_contiguous` would copy.
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// Whether `t` alone holds its buffer and covers all of it, contiguously from the start: then a
/// kernel may write it in place.
pub(crate) fn writable_in_place(t: &FlexTensor) -> bool {
    let n = t.layout().num_elements();
    t.is_unique()
        && t.layout().contiguous_offsets() == Some((0, n))
        && t.bytes().len() == n * t.dtype().size()
}

/// The elements of a contiguous f32 tensor (from [`contiguous`]).
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

/// A new contiguous f32 tensor.
pub(crate) fn new_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    let shape = shape.into();
    debug_assert_eq!(shape.num_elements(), values.len());
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// The dimensions of a tensor.
pub(crate) fn dims(t: &FlexTensor) -> Vec<usize> {
    t.shape().to_vec()
}

/// Rows of at most this many elements go to one rayon task: small enough to spread a
/// `[tokens, hidden]` activation over the cores, large enough that a task outweighs its cost.
pub(crate) const ROWS_PER_TASK_ELEMENTS: usize = 1 << 14;

/// How many rows of `width` elements make one parallel task.
pub(crate) fn rows_per_task(width: usize) -> usize {
    (ROWS_PER_TASK_ELEMENTS / width.max(1)).max(1)
}
