//! One row times a weight matrix: a decoding step at batch 1, where every projection and the LM
//! head is a matrix-vector product whose time is reading the weight once. gemm's one-row path
//! reads weights at about 10 GB/s on this machine's two cores; streaming each weight in the order
//! it lies in memory reads it at 13–17 GB/s (measured standalone on the Qwen2.5-0.5B shapes
//! before this kernel was written; `bench_model` shows what it buys end to end).
//!
//! Two layouts, each read in place:
//! - rows contiguous (a `Linear` weight `[in, out]`): `y += x[k] · W[k, ·]`, [`ROWS_AT_ONCE`]
//!   input rows per pass over a block of [`COLUMN_BLOCK`] outputs that stays in cache;
//! - columns contiguous (a tied embedding `[vocab, hidden]` seen through its transpose): each
//!   output is one dot product over contiguous memory, in [`LANES`] partial sums.
//!
//! Determinism: each output is summed in an order fixed by the input width alone: not by the
//! thread count, the split into blocks, or the instruction set (there is no fused multiply-add,
//! and the lanes are fixed), so the bits are the same on every run and with any number of
//! threads. They are not gemm's bits (gemm sums in its own order): the tests hold the two within
//! 1e-5. Only the forward exists: decoding computes no gradient, and a product under `Autodiff`
//! takes the plain path.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::matrix::Matrix;
use super::{all_f32, contiguous, dims, new_tensor, values};

/// Outputs per task when rows are contiguous: their partial sums (2 KiB) stay in L1 while the
/// weight streams through, and a `[896, 896]` projection still splits over two cores.
const COLUMN_BLOCK: usize = 512;

/// Weight rows folded into the partial sums per pass: each pass loads and stores the sums once
/// for this many rows read.
const ROWS_AT_ONCE: usize = 4;

/// Outputs per task when columns are contiguous.
const DOT_BLOCK: usize = 256;

/// Independent partial sums of one dot product (so that the loop vectorises).
const LANES: usize = 16;

/// `(x [1, K], weight [K, N], bias [N])` → `x · weight + bias` `[1, N]`; `None` unless `x` is one
/// f32 row and the weight an f32 matrix with contiguous rows or contiguous columns (it is never
/// copied: a copy would cost more than the product).
pub(crate) fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
) -> Option<FlexTensor> {
    let (x_dims, weight_dims) = (dims(&x), dims(&weight));
    let [1, k] = x_dims[..] else {
        return None;
    };
    let [k_weight, n] = weight_dims[..] else {
        return None;
    };
    let tensors: Vec<&FlexTensor> = [Some(&x), Some(&weight), bias.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    if k != k_weight || k == 0 || n == 0 || !all_f32(&tensors) {
        return None;
    }
    if bias.as_ref().is_some_and(|b| dims(b) != [n]) {
        return None;
    }
    // One of the strides is 1 (rows or columns contiguous), as `Matrix` reads no other layout.
    let weight = Matrix::read_in_place(weight).ok()?;
    let x = contiguous(x);
    let x = values(&x);
    let mut y = vec![0.0f32; n];
    if weight.cs == 1 {
        y.par_chunks_mut(COLUMN_BLOCK)
            .enumerate()
            .for_each(|(block, out)| rows_block(x, &weight, block * COLUMN_BLOCK, out));
    } else {
        y.par_chunks_mut(DOT_BLOCK)
            .enumerate()
            .for_each(|(block, out)| columns_block(x, &weight, block * DOT_BLOCK, out));
    }
    if let Some(bias) = bias {
        let bias = contiguous(bias);
        for (y, b) in y.iter_mut().zip(values(&bias)) {
            *y += b;
        }
    }
    Some(new_tensor(y, [1, n]))
}

/// `out = x · weight[·, j0..j0 + out.len()]` for a weight with contiguous rows.
fn rows_block(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::rows_block(x, weight, j0, out) };
    }
    rows_block_portable(x, weight, j0, out)
}

/// `out[j] = x · weight[·, j0 + j]` for a weight with contiguous columns.
fn columns_block(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::columns_block(x, weight, j0, out) };
    }
    columns_block_portable(x, weight, j0, out)
}

/// The same code compiled for AVX2, chosen at run time (the crate is built for baseline x86-64).
/// Same operations in the same order, so the same bits.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Matrix;

    #[target_feature(enable = "avx2")]
    pub(super) fn rows_block(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
        super::rows_block_portable(x, weight, j0, out)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn columns_block(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
        super::columns_block_portable(x, weight, j0, out)
    }
}

#[inline(always)]
fn rows_block_portable(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
    let storage = weight.storage();
    let width = out.len();
    let row = |k: usize| {
        let start = weight.offset + k * weight.rs as usize + j0;
        &storage[start..start + width]
    };
    out.fill(0.0);
    let mut k = 0;
    while k + ROWS_AT_ONCE <= x.len() {
        let [r0, r1, r2, r3] = [row(k), row(k + 1), row(k + 2), row(k + 3)];
        let [x0, x1, x2, x3] = [x[k], x[k + 1], x[k + 2], x[k + 3]];
        for j in 0..width {
            // One row after another, as the one-row loop below adds them.
            let mut sum = out[j];
            sum += x0 * r0[j];
            sum += x1 * r1[j];
            sum += x2 * r2[j];
            sum += x3 * r3[j];
            out[j] = sum;
        }
        k += ROWS_AT_ONCE;
    }
    for (k, &xk) in x.iter().enumerate().skip(k) {
        for (sum, &w) in out.iter_mut().zip(row(k)) {
            *sum += xk * w;
        }
    }
}

#[inline(always)]
fn columns_block_portable(x: &[f32], weight: &Matrix, j0: usize, out: &mut [f32]) {
    let storage = weight.storage();
    for (j, y) in out.iter_mut().enumerate() {
        let start = weight.offset + (j0 + j) * weight.cs as usize;
        let column = &storage[start..start + x.len()];
        let mut lanes = [0.0f32; LANES];
        let (xs, ws) = (x.chunks_exact(LANES), column.chunks_exact(LANES));
        let (x_rest, w_rest) = (xs.remainder(), ws.remainder());
        for (xs, ws) in xs.zip(ws) {
            for lane in 0..LANES {
                lanes[lane] += xs[lane] * ws[lane];
            }
        }
        let mut sum = lanes.iter().sum::<f32>();
        for (a, b) in x_rest.iter().zip(w_rest) {
            sum += a * b;
        }
        *y = sum;
    }
}
