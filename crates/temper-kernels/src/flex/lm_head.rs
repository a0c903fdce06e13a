//! The LM head's label log-probabilities, `log softmax(scale · hidden·weightᵀ)[label]`, without
//! ever holding the `[N, V]` logits. The logits are made tile by tile: blocks of up to
//! [`ROW_BLOCK`] positions times tiles of the vocabulary, `rows · cols ≤` [`TILE_ELEMENTS`], each
//! by one gemm into a reused buffer. Each position carries an online softmax across the tiles of
//! its block (running max, sum of exponentials, the label's logit, the statistics), folded in
//! tile order. The backward recomputes each tile's logits, turns them into `dlogits` in place,
//! and adds `dlogits · weight[tile]` to the block's `dhidden` and `dlogitsᵀ · hidden[block]` to
//! the tile's `dweight`, tiles and blocks in a fixed order.
//!
//! Tiling the vocabulary (rather than taking a few positions with the whole vocabulary) lets
//! each gemm see hundreds of positions: the weight is packed and `dweight` written once per
//! block of positions, not once per handful, which is what keeps this as fast as the plain
//! product.
//!
//! The backward skips the positions that contribute nothing (a label outside the vocabulary,
//! as masked prompt tokens have, or a zero incoming gradient): only the others, gathered into
//! a compact `[active, H]` copy, go through the products.
//!
//! Extra memory is one tile buffer (at most `TILE_ELEMENTS` floats), a few `[N, H]` and `[N]`
//! vectors, and the outputs: `dweight` `[V, H]` is the largest of them.
//!
//! The weight is read where it lies: an embedding `[V, H]` as stored, or an untied head's
//! `[H, V]` weight seen through its transpose (strides `[1, V]`); both go to gemm as strides,
//! uncopied. Other layouts (negative or two non-unit strides) are made contiguous first.
//!
//! Determinism: the tiling depends on `N` and `V` only; gemm splits only output tiles across
//! threads (its `k` loop is sequential); each position is reduced on one thread in a fixed
//! order; and the accumulations into `dhidden` and `dweight` follow the tile order. The bits do
//! not depend on the thread count.

use burn::backend::flex::FlexTensor;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::math::exp;
use super::matrix::Matrix;
use super::{all_f32, contiguous, dims, new_tensor, rows_per_task, values};

/// Logits held at once, in floats (16 MiB).
const TILE_ELEMENTS: usize = 4 << 20;

/// Positions per block: enough for gemm to amortise packing a weight tile, few enough that a
/// vocabulary tile stays wide (`TILE_ELEMENTS / ROW_BLOCK` = 4096 columns).
const ROW_BLOCK: usize = 1024;

/// Lanes of the row reductions (independent accumulators, so that the loops vectorise; the
/// order of additions is fixed by the lane count, not by the machine).
const LANES: usize = 8;

/// `(hidden [N, H], weight [V, H], labels [N], scale, stats)` → `(log_probs [N], logsumexp [N],
/// stats [N, 3] as entropy, top-1, mean logit)`; `None` unless `hidden` and `weight` are f32
/// matrices of matching width with one label per position.
pub(crate) fn forward(
    hidden: FlexTensor,
    weight: FlexTensor,
    labels: FlexTensor,
    scale: f64,
    stats: bool,
) -> Option<(FlexTensor, FlexTensor, Option<FlexTensor>)> {
    let (n, h, v) = sizes(&hidden, &weight, &labels)?;
    let hidden = Matrix::new(hidden);
    let weight = Matrix::new(weight);
    let labels = read_labels(labels);
    let scale = scale as f32;
    let tiling = Tiling::new(n, v);

    let mut states = vec![RowState::default(); n];
    let mut buffer = vec![0.0f32; tiling.buffer_len()];
    for (r0, rows) in spans(n, tiling.rows) {
        for (t0, cols) in spans(v, tiling.cols) {
            let logits = &mut buffer[..rows * cols];
            // SAFETY: `logits` is `[rows, cols]`, the spans lie in `[0, n)` and `[0, v)`, and
            // `Matrix` checked that every element it addresses lies in its storage.
            unsafe { logits_tile(logits, &hidden, &weight, (r0, rows), (t0, cols), h) };
            logits
                .par_chunks_mut(cols)
                .zip(states[r0..r0 + rows].par_iter_mut())
                .zip(labels[r0..r0 + rows].par_iter())
                .with_min_len(rows_per_task(cols))
                .for_each(|((z, state), &label)| state.absorb(z, t0, scale, label, stats));
        }
    }
    drop(buffer);

    let mut log_probs = Vec::with_capacity(n);
    let mut lse = Vec::with_capacity(n);
    let mut head_stats = Vec::with_capacity(if stats { n * 3 } else { 0 });
    for (state, &label) in states.iter().zip(&labels) {
        let row = state.finish(label, v);
        log_probs.push(row.log_prob);
        lse.push(row.lse);
        if stats {
            head_stats.extend_from_slice(&row.stats);
        }
    }
    Some((
        new_tensor(log_probs, [n]),
        new_tensor(lse, [n]),
        stats.then(|| new_tensor(head_stats, [n, 3])),
    ))
}

/// `(dlog_probs [N], hidden, weight, labels, logsumexp, scale)` → `(dhidden [N, H],
/// dweight [V, H])`, both contiguous.
pub(crate) fn backward(
    grad: FlexTensor,
    hidden: FlexTensor,
    weight: FlexTensor,
    labels: FlexTensor,
    lse: FlexTensor,
    scale: f64,
    weight_grad: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let (n, h, v) = sizes(&hidden, &weight, &labels).expect("the forward pass accepted these");
    let hidden = Matrix::new(hidden);
    let weight = Matrix::new(weight);
    let labels = read_labels(labels);
    let grad = contiguous(grad);
    let grad = values(&grad);
    let lse = contiguous(lse);
    let lse = values(&lse);
    assert_eq!(grad.len(), n, "one gradient per position");
    assert_eq!(lse.len(), n, "one logsumexp per position");

    // Positions whose label lies outside the vocabulary (masked prompt tokens, padding) or
    // whose gradient is 0 contribute nothing: only the others go through the products.
    let active: Vec<usize> = (0..n)
        .filter(|&r| (0..v as i64).contains(&labels[r]) && grad[r] != 0.0)
        .collect();
    if active.len() == n {
        let (dhidden, dweight) =
            backward_rows(&hidden, &weight, &labels, grad, lse, scale, v, weight_grad);
        return (
            new_tensor(dhidden, [n, h]),
            dweight.map(|d| new_tensor(d, [v, h])),
        );
    }
    let mut compact = Vec::with_capacity(active.len() * h);
    for &r in &active {
        compact.extend((0..h).map(|j| hidden.get(r, j)));
    }
    let compact = Matrix::new(new_tensor(compact, [active.len(), h]));
    let pick_i64 = |x: &[i64]| active.iter().map(|&r| x[r]).collect::<Vec<_>>();
    let pick = |x: &[f32]| active.iter().map(|&r| x[r]).collect::<Vec<_>>();
    let (dcompact, dweight) = backward_rows(
        &compact,
        &weight,
        &pick_i64(&labels),
        &pick(grad),
        &pick(lse),
        scale,
        v,
        weight_grad,
    );
    let mut dhidden = vec![0.0f32; n * h];
    for (i, &r) in active.iter().enumerate() {
        dhidden[r * h..(r + 1) * h].copy_from_slice(&dcompact[i * h..(i + 1) * h]);
    }
    (
        new_tensor(dhidden, [n, h]),
        dweight.map(|d| new_tensor(d, [v, h])),
    )
}

/// [`backward`] over the positions of `hidden` (`[n, h]`), each with its label, incoming
/// gradient and logsumexp: `(dhidden [n, h], dweight [v, h])`, `dweight` only when
/// `weight_grad` (a frozen head, as under LoRA, skips its product and its buffer).
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    hidden: &Matrix,
    weight: &Matrix,
    labels: &[i64],
    grad: &[f32],
    lse: &[f32],
    scale: f64,
    v: usize,
    weight_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (n, h) = (labels.len(), hidden.cols);
    let scale = scale as f32;
    let tiling = Tiling::new(n, v);

    let mut dhidden = vec![0.0f32; n * h];
    let mut dweight = if weight_grad {
        vec![0.0f32; v * h]
    } else {
        Vec::new()
    };
    let mut buffer = vec![0.0f32; tiling.buffer_len()];
    for (block, (r0, rows)) in spans(n, tiling.rows).enumerate() {
        for (tile, (t0, cols)) in spans(v, tiling.cols).enumerate() {
            let dlogits = &mut buffer[..rows * cols];
            // SAFETY: as in `forward`.
            unsafe { logits_tile(dlogits, hidden, weight, (r0, rows), (t0, cols), h) };
            dlogits
                .par_chunks_mut(cols)
                .zip(labels[r0..r0 + rows].par_iter())
                .zip(grad[r0..r0 + rows].par_iter())
                .zip(lse[r0..r0 + rows].par_iter())
                .with_min_len(rows_per_task(cols))
                .for_each(|(((z, &label), &g), &lse)| row_backward(z, t0, v, scale, label, g, lse));
            let dh = &mut dhidden[r0 * h..(r0 + rows) * h];
            // SAFETY: `dh` is `[rows, h]`, `dlogits` `[rows, cols]`, `dw` `[cols, h]`; the
            // matrices' elements lie in their storage (checked by `Matrix`).
            unsafe {
                // dhidden[block] += dlogits · weight[tile]
                gemm(
                    rows,
                    h,
                    cols,
                    dh.as_mut_ptr(),
                    1,
                    h as isize,
                    tile > 0,
                    dlogits.as_ptr(),
                    1,
                    cols as isize,
                    weight.at(t0),
                    weight.cs,
                    weight.rs,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(0),
                );
            }
            if !weight_grad {
                continue;
            }
            let dw = &mut dweight[t0 * h..(t0 + cols) * h];
            // SAFETY: as above.
            unsafe {
                // dweight[tile] += dlogitsᵀ · hidden[block]
                gemm(
                    cols,
                    h,
                    rows,
                    dw.as_mut_ptr(),
                    1,
                    h as isize,
                    block > 0,
                    dlogits.as_ptr(),
                    cols as isize,
                    1,
                    hidden.at(r0),
                    hidden.cs,
                    hidden.rs,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::Rayon(0),
                );
            }
        }
    }
    drop(buffer);
    (dhidden, weight_grad.then_some(dweight))
}

/// `(N, H, V)` when the inputs are what the kernel handles.
fn sizes(
    hidden: &FlexTensor,
    weight: &FlexTensor,
    labels: &FlexTensor,
) -> Option<(usize, usize, usize)> {
    if !all_f32(&[hidden, weight]) {
        return None;
    }
    let (hd, wd, ld) = (dims(hidden), dims(weight), dims(labels));
    match (hd.as_slice(), wd.as_slice(), ld.as_slice()) {
        (&[n, h], &[v, hw], &[nl]) if h == hw && n == nl && v > 0 => Some((n, h, v)),
        _ => None,
    }
}

/// How the `[N, V]` logits are cut: blocks of `rows` positions, tiles of `cols` vocabulary
/// entries, `rows · cols ≤ TILE_ELEMENTS` (or one element when one alone is more).
struct Tiling {
    rows: usize,
    cols: usize,
    /// Rows of the first block (`rows`, or fewer positions, or none).
    first_rows: usize,
}

impl Tiling {
    fn new(n: usize, v: usize) -> Self {
        let rows = n.clamp(1, ROW_BLOCK);
        let cols = (TILE_ELEMENTS / rows).clamp(1, v.max(1));
        Tiling {
            rows,
            cols,
            first_rows: rows.min(n),
        }
    }

    /// The buffer one tile's logits need.
    fn buffer_len(&self) -> usize {
        self.first_rows * self.cols
    }
}

/// `(start, len)` of the consecutive spans of at most `step` that cover `[0, total)`.
fn spans(total: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..total)
        .step_by(step)
        .map(move |start| (start, step.min(total - start)))
}

/// The labels as `i64`, whatever the integer type.
fn read_labels(labels: FlexTensor) -> Vec<i64> {
    labels.into_data().iter::<i64>().collect()
}

/// `logits [rows, cols] = hidden[r0..r0 + rows] · weight[t0..t0 + cols]ᵀ` (unscaled).
///
/// # Safety
/// `logits.len() == rows·cols`, the spans lie inside the matrices, and the matrices address
/// only their storage.
unsafe fn logits_tile(
    logits: &mut [f32],
    hidden: &Matrix,
    weight: &Matrix,
    (r0, rows): (usize, usize),
    (t0, cols): (usize, usize),
    h: usize,
) {
    debug_assert_eq!(logits.len(), rows * cols);
    unsafe {
        gemm(
            rows,
            cols,
            h,
            logits.as_mut_ptr(),
            1,
            cols as isize,
            false,
            hidden.at(r0),
            hidden.cs,
            hidden.rs,
            weight.at(t0),
            weight.rs,
            weight.cs,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}

/// One position's online softmax over the tiles seen so far.
#[derive(Clone, Debug)]
struct RowState {
    /// The largest logit.
    max: f32,
    /// `Σ e^(z − max)`.
    sum: f64,
    /// `Σ e^(z − max)·(z − max)` (≤ 0), with `stats`.
    tilted: f64,
    /// `Σ z`, with `stats`.
    total: f64,
    /// The first largest logit and its index, with `stats`.
    best: f32,
    best_index: usize,
    /// The label's logit, once its tile has been seen.
    label_logit: f32,
}

impl Default for RowState {
    fn default() -> Self {
        RowState {
            max: f32::NEG_INFINITY,
            sum: 0.0,
            tilted: 0.0,
            total: 0.0,
            best: f32::NEG_INFINITY,
            best_index: 0,
            label_logit: 0.0,
        }
    }
}

/// What one position's forward gives.
struct Row {
    log_prob: f32,
    lse: f32,
    /// Entropy, top-1, mean logit (zeros unless asked for).
    stats: [f32; 3],
}

impl RowState {
    /// Takes in the unscaled logits `z` of vocabulary entries `t0..t0 + z.len()` (scaled in
    /// place, as the plain path scales after the product).
    fn absorb(&mut self, z: &mut [f32], t0: usize, scale: f32, label: i64, stats: bool) {
        if scale != 1.0 {
            z.iter_mut().for_each(|x| *x *= scale);
        }
        let tile_max = row_max(z);
        let max = self.max.max(tile_max);
        let [sum, tilted, total] = if stats {
            blocked_sums(z, |x| {
                let shifted = x - max;
                let e = exp(shifted);
                [e, e * shifted, x]
            })
        } else {
            let [sum] = blocked_sums(z, |x| [exp(x - max)]);
            [sum, 0.0, 0.0]
        };
        if self.sum > 0.0 {
            // Re-base the earlier tiles on the new max: e^(z−m') = e^(m−m')·e^(z−m) and
            // (z−m') = (z−m) + (m−m').
            let shift = f64::from(self.max) - f64::from(max);
            let factor = shift.exp();
            self.tilted = factor * (self.tilted + shift * self.sum);
            self.sum *= factor;
        }
        self.max = max;
        self.sum += sum;
        self.tilted += tilted;
        self.total += total;
        if stats && tile_max > self.best {
            self.best = tile_max;
            self.best_index = t0 + z.iter().position(|&x| x == tile_max).unwrap_or(0);
        }
        if let Some(i) = label
            .checked_sub(t0 as i64)
            .filter(|i| (0..z.len() as i64).contains(i))
        {
            self.label_logit = z[i as usize];
        }
    }

    /// The position's outputs once every tile of the vocabulary `[0, v)` has been taken in.
    fn finish(&self, label: i64, v: usize) -> Row {
        let inside = (0..v as i64).contains(&label);
        let log_sum = self.sum.ln();
        let lse = (f64::from(self.max) + log_sum) as f32;
        // −Σ p log p = log Σe^(z−m) − Σ p·(z−m): two non-negative terms, no cancellation.
        let entropy = (log_sum - self.tilted / self.sum) as f32;
        let target = if inside { label as usize } else { 0 };
        Row {
            log_prob: if inside { self.label_logit - lse } else { 0.0 },
            lse,
            stats: [
                entropy,
                f32::from(u8::from(self.best_index == target)),
                (self.total / v as f64) as f32,
            ],
        }
    }
}

/// One position's backward over vocabulary entries `t0..t0 + z.len()`: its unscaled logits in
/// `z` become `dlogits = g·scale·(onehot(label) − softmax(scale·z))`, the gradient of the
/// unscaled logits (zero where the label is outside the vocabulary `[0, v)`).
fn row_backward(z: &mut [f32], t0: usize, v: usize, scale: f32, label: i64, g: f32, lse: f32) {
    if !(0..v as i64).contains(&label) || g == 0.0 {
        z.fill(0.0);
        return;
    }
    let a = g * scale;
    if scale != 1.0 {
        z.iter_mut().for_each(|x| *x = -a * exp(*x * scale - lse));
    } else {
        z.iter_mut().for_each(|x| *x = -a * exp(*x - lse));
    }
    if let Some(i) = (label as usize).checked_sub(t0).filter(|&i| i < z.len()) {
        z[i] += a;
    }
}

/// The largest element (exact, whatever the order).
fn row_max(z: &[f32]) -> f32 {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut lanes = z.chunks_exact(LANES);
    for block in &mut lanes {
        for i in 0..LANES {
            max[i] = max[i].max(block[i]);
        }
    }
    for (i, &x) in lanes.remainder().iter().enumerate() {
        max[i] = max[i].max(x);
    }
    max.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Elements per block of [`blocked_sums`].
const BLOCK: usize = 256;

/// `K` sums of `terms(x)` over the row, in a fixed order: within blocks of [`BLOCK`] elements in
/// f32 over [`LANES`] accumulators (so that the loop vectorises), across blocks in f64 (so that
/// a vocabulary of 10⁵ terms loses no more than a block does).
#[inline(always)]
fn blocked_sums<const K: usize>(z: &[f32], terms: impl Fn(f32) -> [f32; K]) -> [f64; K] {
    let mut totals = [0.0f64; K];
    for block in z.chunks(BLOCK) {
        let mut acc = [[0.0f32; LANES]; K];
        let mut lanes = block.chunks_exact(LANES);
        for group in &mut lanes {
            for i in 0..LANES {
                let t = terms(group[i]);
                for k in 0..K {
                    acc[k][i] += t[k];
                }
            }
        }
        for (i, &x) in lanes.remainder().iter().enumerate() {
            let t = terms(x);
            for k in 0..K {
                acc[k][i] += t[k];
            }
        }
        for k in 0..K {
            totals[k] += f64::from(fold(acc[k]));
        }
    }
    totals
}

/// The lanes' sum, in a fixed pairwise order.
fn fold(lanes: [f32; LANES]) -> f32 {
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}
