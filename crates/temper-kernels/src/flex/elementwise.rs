//! SwiGLU's gate and RoPE, forward and backward, in one pass each.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::math::sigmoid;
use super::{ROWS_PER_TASK_ELEMENTS, all_f32, contiguous, dims, new_tensor, rows_per_task, values};

/// `silu(gate) ⊙ up`.
pub(crate) fn swiglu(gate: FlexTensor, up: FlexTensor) -> Option<FlexTensor> {
    if !all_f32(&[&gate, &up]) || dims(&gate) != dims(&up) {
        return None;
    }
    let shape = dims(&gate);
    let (gate, up) = (contiguous(gate), contiguous(up));
    let (gs, us) = (values(&gate), values(&up));
    let mut y = vec![0.0f32; gs.len()];
    y.par_chunks_mut(ROWS_PER_TASK_ELEMENTS)
        .zip(gs.par_chunks(ROWS_PER_TASK_ELEMENTS))
        .zip(us.par_chunks(ROWS_PER_TASK_ELEMENTS))
        .for_each(|((y, g), u)| {
            for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
                *y = g * sigmoid(*g) * u;
            }
        });
    Some(new_tensor(y, shape))
}

/// `(dy, gate, up)` → `(dy ⊙ up ⊙ s(1 + gate(1 − s)), dy ⊙ gate ⊙ s)` with `s = σ(gate)`.
pub(crate) fn swiglu_backward(
    grad: FlexTensor,
    gate: FlexTensor,
    up: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape = dims(&gate);
    let (grad, gate, up) = (contiguous(grad), contiguous(gate), contiguous(up));
    let (dy, gs, us) = (values(&grad), values(&gate), values(&up));
    let mut dgate = vec![0.0f32; gs.len()];
    let mut dup = vec![0.0f32; gs.len()];
    dgate
        .par_chunks_mut(ROWS_PER_TASK_ELEMENTS)
        .zip(dup.par_chunks_mut(ROWS_PER_TASK_ELEMENTS))
        .zip(dy.par_chunks(ROWS_PER_TASK_ELEMENTS))
        .zip(
            gs.par_chunks(ROWS_PER_TASK_ELEMENTS)
                .zip(us.par_chunks(ROWS_PER_TASK_ELEMENTS)),
        )
        .for_each(|(((dgate, dup), dy), (g, u))| {
            for ((((dgate, dup), dy), g), u) in dgate.iter_mut().zip(dup).zip(dy).zip(g).zip(u) {
                let s = sigmoid(*g);
                *dgate = dy * u * s * (1.0 + g * (1.0 - s));
                *dup = dy * g * s;
            }
        });
    (new_tensor(dgate, shape.clone()), new_tensor(dup, shape))
}

/// RoPE on `x` `[B, T, H, D]` with `cos`, `sin` `[B, T, D]`.
pub(crate) fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> Option<FlexTensor> {
    // HF's rotation needs an even head dimension (as every supported family has).
    if !all_f32(&[&x, &cos, &sin]) || !dims(&x)[3].is_multiple_of(2) {
        return None;
    }
    Some(rotate(x, cos, sin, 1.0))
}

/// The gradient of [`rope`]: the rotation by the opposite angle.
pub(crate) fn rope_backward(grad: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
    rotate(grad, cos, sin, -1.0)
}

/// `y_i = x_i cos_i − x_{i+½} sin_i` (first half), `y_i = x_i cos_i + x_{i−½} sin_i` (second
/// half); with `direction = −1`, the transpose: `y_i = x_i cos_i + x_{i+½} sin_{i+½}` and
/// `y_i = x_i cos_i − x_{i−½} sin_{i−½}` (cos and sin repeat across halves in HF's layout, but
/// the transpose is written for any tables).
fn rotate(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, direction: f32) -> FlexTensor {
    let shape = dims(&x);
    let (heads, dim) = (shape[2], shape[3]);
    let half = dim / 2;
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
    let (xs, cs, ss) = (values(&x), values(&cos), values(&sin));
    let mut y = vec![0.0f32; xs.len()];
    let row = heads * dim;
    let per_task = rows_per_task(row);
    y.par_chunks_mut(per_task * row)
        .zip(xs.par_chunks(per_task * row))
        .zip(
            cs.par_chunks(per_task * dim)
                .zip(ss.par_chunks(per_task * dim)),
        )
        .for_each(|((y, x), (c, s))| {
            for ((y, x), (c, s)) in y
                .chunks_mut(row)
                .zip(x.chunks(row))
                .zip(c.chunks(dim).zip(s.chunks(dim)))
            {
                for (y, x) in y.chunks_mut(dim).zip(x.chunks(dim)) {
                    for i in 0..half {
                        let (a, b) = (x[i], x[i + half]);
                        if direction > 0.0 {
                            y[i] = a * c[i] - b * s[i];
                            y[i + half] = b * c[i + half] + a * s[i + half];
                        } else {
                            y[i] = a * c[i] + b * s[i + half];
                            y[i + half] = b * c[i + half] - a * s[i];
                        }
                    }
                }
            }
        });
    new_tensor(y, shape)
}
