//! RMSNorm forward and backward over the last dimension, one pass per row.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{all_f32, contiguous, dims, new_tensor, rows_per_task, values};

/// `(x [.., D], w [D], eps)` → `(w ⊙ x / sqrt(mean(x²) + ε), 1/rms [rows])`.
pub(crate) fn forward(x: FlexTensor, w: FlexTensor, eps: f64) -> Option<(FlexTensor, FlexTensor)> {
    if !all_f32(&[&x, &w]) {
        return None;
    }
    let shape = dims(&x);
    let (x, w) = (contiguous(x), contiguous(w));
    let (xs, ws) = (values(&x), values(&w));
    let width = ws.len();
    let rows = xs.len() / width.max(1);
    let mut y = vec![0.0f32; xs.len()];
    let mut inverse = vec![0.0f32; rows];
    let per_task = rows_per_task(width);
    y.par_chunks_mut(per_task * width)
        .zip(inverse.par_chunks_mut(per_task))
        .zip(xs.par_chunks(per_task * width))
        .for_each(|((y, inverse), x)| {
            for ((y, inverse), x) in y.chunks_mut(width).zip(inverse).zip(x.chunks(width)) {
                let r = inverse_rms(x, eps);
                *inverse = r;
                for ((y, x), w) in y.iter_mut().zip(x).zip(ws) {
                    *y = x * r * w;
                }
            }
        });
    Some((new_tensor(y, shape), new_tensor(inverse, [rows])))
}

/// `(dy, x, w, 1/rms)` → `(dx, dw)`: with `r = 1/rms` and `u = dy ⊙ w`,
/// `dx = r·u − r³·x·mean(u ⊙ x)` and `dw = Σ_rows dy ⊙ x·r`.
pub(crate) fn backward(
    grad: FlexTensor,
    x: FlexTensor,
    w: FlexTensor,
    inverse: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape = dims(&x);
    let (grad, x, w, inverse) = (
        contiguous(grad),
        contiguous(x),
        contiguous(w),
        contiguous(inverse),
    );
    let (gs, xs, ws, rs) = (values(&grad), values(&x), values(&w), values(&inverse));
    let width = ws.len();
    let mut dx = vec![0.0f32; xs.len()];
    // dw: partial sums over fixed blocks of rows, added in block order, so the result does
    // not depend on how rayon schedules the blocks.
    let per_task = rows_per_task(width);
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(per_task * width)
        .zip(gs.par_chunks(per_task * width))
        .zip(xs.par_chunks(per_task * width))
        .zip(rs.par_chunks(per_task))
        .map(|(((dx, g), x), r)| {
            let mut dw = vec![0.0f32; width];
            for (((dx, g), x), r) in dx
                .chunks_mut(width)
                .zip(g.chunks(width))
                .zip(x.chunks(width))
                .zip(r)
            {
                let mut dot = 0.0f64;
                for ((g, x), w) in g.iter().zip(x).zip(ws) {
                    dot += f64::from(g * w * x);
                }
                let mean = (dot / width as f64) as f32;
                let r3 = r * r * r;
                for ((((dx, g), x), w), dw) in
                    dx.iter_mut().zip(g).zip(x).zip(ws).zip(dw.iter_mut())
                {
                    *dx = r * g * w - r3 * x * mean;
                    *dw += g * x * r;
                }
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; width];
    for partial in partials {
        for (total, value) in dw.iter_mut().zip(partial) {
            *total += value;
        }
    }
    (new_tensor(dx, shape), new_tensor(dw, [width]))
}

/// `1 / sqrt(mean(x²) + ε)` of one row, accumulated in f64.
fn inverse_rms(x: &[f32], eps: f64) -> f32 {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    (1.0 / (sum / x.len() as f64 + eps).sqrt()) as f32
}
