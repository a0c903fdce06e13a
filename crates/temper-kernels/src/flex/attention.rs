//! Fused causal attention for burn-flex, forward and backward, in f32.
//!
//! Layout: `q`, `out`, `dout` and `dq` are `[B, Tq, Hq, D]`, `k`, `v`, `dk` and `dv` are
//! `[B, Tk, Hk, D]`, all kept as they are: one head's rows are `H·D` elements apart, and the
//! matrix products ([`gemm`]) read and write those strided views directly, so no tensor is ever
//! transposed or copied head by head, and K/V are never repeated for grouped-query heads. K and
//! V may also be the first `Tk` positions of a longer buffer (a decoding KV cache), read in
//! place ([`batch_strided`]).
//!
//! Work is cut into *row blocks*: up to [`QUERY_BLOCK`] consecutive queries of one head, or,
//! when decoding (`Tq = 1`), the `n_rep` query heads that share a kv head, stacked as the rows
//! of one matrix so that K and V are read once for all of them. A block only multiplies against
//! the keys some of its rows may see (the causal limit of its last row, the window of its
//! first, and the span between the batch row's first and last tokens), so a causal prefill
//! skips about half of the products.
//!
//! Forward: per block, `S = scale·Q·Kᵀ`, a masked softmax row by row (its logsumexp kept for
//! the backward), then `O = P·V`. Backward: per `(batch, kv head)` group, for each of its
//! blocks in a fixed order, `P` is recomputed from `S` and the logsumexp (never stored), then
//! `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(dO ⊙ O))`, `dQ = scale·dS·K` and
//! `dK += scale·dSᵀ·Q`. A group owns its kv head's `dK`/`dV` rows, so they accumulate in one
//! task, in one order.
//!
//! A query with no visible key matches the plain path, which fills every score with `f32::MIN`:
//! its softmax is uniform over all `Tk` keys, so its output is the mean of V, its gradient
//! reaches V only (`dout / Tk` for every key), and neither Q nor K. Its logsumexp is stored as
//! `ln Tk`; the backward recognises such rows from the mask, not from that value.
//!
//! Determinism: blocks are fixed by the shapes alone, every product runs single-threaded inside
//! its rayon task (`Parallelism::None`), every reduction runs in a fixed order, and tasks write
//! disjoint rows, so the result is the same bits for any thread count.

use std::ops::Range;

use burn::backend::flex::FlexTensor;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::math::exp;
use super::{all_f32, contiguous, dims, new_tensor, values};

/// Queries of one head per row block: enough rows for the matrix products to run at speed,
/// few enough that a block's scores (`QUERY_BLOCK × Tk`) stay in cache-friendly scratch and
/// that the causal limit trims the key range finely.
const QUERY_BLOCK: usize = 64;

/// `(q [B, Tq, Hq, D], k [B, Tk, Hk, D], v [B, Tk, Hk, D], padding [B, Tk], window)` →
/// `(out [B, Tq, Hq, D], logsumexp [B, Hq, Tq])`, or `None` for inputs that are not f32 or
/// whose shapes do not fit together (the plain path then runs, and reports the latter).
pub(crate) fn forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    padding: FlexTensor,
    window: Option<usize>,
) -> Option<(FlexTensor, FlexTensor)> {
    if !all_f32(&[&q, &k, &v, &padding]) {
        return None;
    }
    let mut shape = Shape::new(&q, &k, &v, &padding, window)?;
    let (q, padding) = (contiguous(q), contiguous(padding));
    let (k, v, kv_batch_stride) = batch_strided(k, v, &shape);
    shape.kv_batch_stride = kv_batch_stride;
    let keys = Keys::new(values(&padding), &shape);
    let inputs = Inputs {
        shape: &shape,
        keys: &keys,
        q: values(&q),
        k: strided_values(&k),
        v: strided_values(&v),
    };
    let mut out = vec![0.0f32; shape.query_len()];
    let mut lse = vec![0.0f32; shape.batch * shape.heads * shape.queries];
    let (out_ptr, lse_ptr) = (SharedMut(out.as_mut_ptr()), SharedMut(lse.as_mut_ptr()));
    // Blocks are independent in the forward pass: each writes only its own rows.
    let blocks: Vec<RowBlock> = shape
        .groups()
        .flat_map(|(b, g)| shape.blocks(b, g))
        .collect();
    blocks.par_iter().for_each_init(Vec::new, |scores, block| {
        // SAFETY: `out` and `lse` outlive the loop, and each block writes only its own
        // rows of them (`RowBlock` rows never overlap between blocks).
        unsafe { forward_block(&inputs, block, scores, out_ptr, lse_ptr) }
    });
    let (b, tq, hq, d) = (shape.batch, shape.queries, shape.heads, shape.dim);
    Some((
        new_tensor(out, [b, tq, hq, d]),
        new_tensor(lse, [b, hq, tq]),
    ))
}

/// K and V as the forward pass reads them: `[B, Tk, Hk, D]` with positions, heads and elements
/// laid out contiguously, and any distance (returned) between batch rows. A prefix of a
/// preallocated KV cache `[B, capacity, Hk, D]` is such a view and is read in place; anything
/// else, or a K and V that differ in that distance, is copied to contiguous.
fn batch_strided(k: FlexTensor, v: FlexTensor, shape: &Shape) -> (FlexTensor, FlexTensor, usize) {
    let inner = [(shape.kv_heads * shape.dim) as isize, shape.dim as isize, 1];
    let batch_stride = |t: &FlexTensor| {
        let strides = t.layout().strides();
        (strides[1..] == inner && strides[0] >= 0).then_some(strides[0] as usize)
    };
    match (batch_stride(&k), batch_stride(&v)) {
        (Some(ks), Some(vs)) if ks == vs && (shape.batch == 1 || ks >= shape.keys_per_batch()) => {
            (k, v, ks)
        }
        _ => (k.to_contiguous(), v.to_contiguous(), shape.keys_per_batch()),
    }
}

/// The elements of a [`batch_strided`] tensor from its first one on (batch row `b` starts
/// `b` batch strides later).
fn strided_values(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[t.layout().start_offset()..]
}

/// `(dout [B, Tq, Hq, D], q, k, v, padding, window, out, logsumexp)` → `(dq, dk, dv)`, shaped as
/// `q`, `k` and `v`. Only called on what [`forward`] accepted and returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    grad: FlexTensor,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    padding: FlexTensor,
    window: Option<usize>,
    out: FlexTensor,
    lse: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape =
        Shape::new(&q, &k, &v, &padding, window).expect("the forward pass accepted these shapes");
    debug_assert!(all_f32(&[&grad, &out, &lse]));
    let (q, k, v, padding) = (
        contiguous(q),
        contiguous(k),
        contiguous(v),
        contiguous(padding),
    );
    let (grad, out, lse) = (contiguous(grad), contiguous(out), contiguous(lse));
    let keys = Keys::new(values(&padding), &shape);
    let inputs = Inputs {
        shape: &shape,
        keys: &keys,
        q: values(&q),
        k: values(&k),
        v: values(&v),
    };
    let saved = Saved {
        dout: values(&grad),
        out: values(&out),
        lse: values(&lse),
    };
    assert_eq!(saved.dout.len(), shape.query_len(), "dout is shaped as q");
    let mut dq = vec![0.0f32; shape.query_len()];
    let mut dk = vec![0.0f32; shape.key_len()];
    let mut dv = vec![0.0f32; shape.key_len()];
    let grads = Grads {
        dq: SharedMut(dq.as_mut_ptr()),
        dk: SharedMut(dk.as_mut_ptr()),
        dv: SharedMut(dv.as_mut_ptr()),
    };
    // One task per (batch, kv head): it alone accumulates that kv head's dK and dV.
    let groups: Vec<(usize, usize)> = shape.groups().collect();
    groups.par_iter().for_each(|&(b, g)| {
        // SAFETY: the gradients outlive the loop; group (b, g) writes only the dq rows of its
        // own query heads and the dk/dv rows of kv head g in batch b.
        unsafe { backward_group(&inputs, &saved, b, g, grads) }
    });
    (
        new_tensor(dq, dims(&q)),
        new_tensor(dk, dims(&k)),
        new_tensor(dv, dims(&v)),
    )
}

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug)]
struct Shape {
    batch: usize,
    queries: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    /// Query heads per kv head.
    n_rep: usize,
    /// Elements between consecutive batch rows of `k` and `v` (`Tk·Hk·D` unless the forward
    /// pass reads a [`batch_strided`] view); `dk` and `dv` are always contiguous, and the
    /// backward pass reads contiguous copies of `k` and `v`.
    kv_batch_stride: usize,
    /// `1/√D`, rounded as the plain path rounds it.
    scale: f32,
    window: Option<usize>,
}

impl Shape {
    /// The sizes, or `None` when the tensors do not fit together (or hold nothing to compute).
    fn new(
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        padding: &FlexTensor,
        window: Option<usize>,
    ) -> Option<Self> {
        let (q, k, v, padding) = (dims(q), dims(k), dims(v), dims(padding));
        let [batch, queries, heads, dim] = q[..] else {
            return None;
        };
        let [kv_batch, keys, kv_heads, kv_dim] = k[..] else {
            return None;
        };
        let fits = v == k
            && kv_batch == batch
            && kv_dim == dim
            && padding[..] == [batch, keys]
            && queries <= keys
            && dim > 0
            && kv_heads > 0
            && heads % kv_heads == 0;
        fits.then(|| Self {
            batch,
            queries,
            keys,
            heads,
            kv_heads,
            dim,
            n_rep: heads / kv_heads,
            kv_batch_stride: keys * kv_heads * dim,
            scale: (dim as f64).powf(-0.5) as f32,
            window,
        })
    }

    /// Elements of `q` (and `out`, `dout`, `dq`).
    fn query_len(&self) -> usize {
        self.batch * self.queries * self.heads * self.dim
    }

    /// Elements of `k` (and `v`, `dk`, `dv`) when contiguous.
    fn key_len(&self) -> usize {
        self.batch * self.keys_per_batch()
    }

    /// Elements of one batch row of contiguous `k`.
    fn keys_per_batch(&self) -> usize {
        self.keys * self.kv_heads * self.dim
    }

    /// Elements between consecutive positions of one kv head.
    fn kv_stride(&self) -> usize {
        self.kv_heads * self.dim
    }

    /// Offset of kv head `g`'s first key in batch row `b`, in `k`, `v`, `dk` and `dv`.
    fn kv_base(&self, b: usize, g: usize) -> usize {
        b * self.kv_batch_stride + g * self.dim
    }

    /// Every `(batch, kv head)` group, in order.
    fn groups(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.batch).flat_map(move |b| (0..self.kv_heads).map(move |g| (b, g)))
    }

    /// The row blocks of group `(b, g)`, in the fixed order the backward accumulates them.
    fn blocks(&self, b: usize, g: usize) -> Vec<RowBlock> {
        let (tq, hq, d) = (self.queries, self.heads, self.dim);
        let first_head = g * self.n_rep;
        if tq == 1 {
            // Decoding: the group's query heads are adjacent in memory, `D` apart, and all ask
            // about the same position: one block whose rows are heads.
            return vec![RowBlock {
                batch: b,
                kv_head: g,
                row_offset: (b * hq + first_head) * d,
                row_stride: d,
                lse_offset: (b * hq + first_head) * tq,
                lse_stride: tq,
                first_query: 0,
                query_step: 0,
                rows: self.n_rep,
            }];
        }
        let mut blocks = Vec::with_capacity(self.n_rep * tq.div_ceil(QUERY_BLOCK));
        for h in first_head..first_head + self.n_rep {
            for first_query in (0..tq).step_by(QUERY_BLOCK) {
                blocks.push(RowBlock {
                    batch: b,
                    kv_head: g,
                    row_offset: ((b * tq + first_query) * hq + h) * d,
                    row_stride: hq * d,
                    lse_offset: (b * hq + h) * tq + first_query,
                    lse_stride: 1,
                    first_query,
                    query_step: 1,
                    rows: QUERY_BLOCK.min(tq - first_query),
                });
            }
        }
        blocks
    }
}

/// Rows of queries that are computed together: `rows` rows of `D` elements, `row_stride`
/// apart from `row_offset` in `q`, `out`, `dout` and `dq` alike, all reading kv head `kv_head`.
#[derive(Clone, Copy, Debug)]
struct RowBlock {
    batch: usize,
    kv_head: usize,
    row_offset: usize,
    row_stride: usize,
    /// Where row `r`'s logsumexp lives in `[B, Hq, Tq]`: `lse_offset + r·lse_stride`.
    lse_offset: usize,
    lse_stride: usize,
    /// Row `r` is query `first_query + r·query_step` (step 0: the rows are heads of one query).
    first_query: usize,
    query_step: usize,
    rows: usize,
}

/// The padding mask in the forms the kernels ask of it.
struct Keys {
    /// `[B, Tk]`: 1 for a token, 0 for padding (`padding > 0`, as the plain path tests it).
    token: Vec<f32>,
    /// `[B, Tk + 1]`: tokens before each index, to tell at once whether a span holds any.
    tokens_before: Vec<usize>,
    /// Per batch row, the span from its first token to past its last (empty when it has none).
    spans: Vec<Range<usize>>,
}

impl Keys {
    fn new(padding: &[f32], shape: &Shape) -> Self {
        let tk = shape.keys;
        let token: Vec<f32> = padding
            .iter()
            .map(|&p| if p > 0.0 { 1.0 } else { 0.0 })
            .collect();
        let mut tokens_before = Vec::with_capacity(shape.batch * (tk + 1));
        let mut spans = Vec::with_capacity(shape.batch);
        for row in token.chunks_exact(tk.max(1)).take(shape.batch) {
            let mut count = 0;
            tokens_before.push(0);
            for &t in row {
                count += (t > 0.0) as usize;
                tokens_before.push(count);
            }
            let first = row.iter().position(|&t| t > 0.0);
            let last = row.iter().rposition(|&t| t > 0.0);
            spans.push(match (first, last) {
                (Some(first), Some(last)) => first..last + 1,
                _ => 0..0,
            });
        }
        Self {
            token,
            tokens_before,
            spans,
        }
    }

    /// Whether batch row `b` has a token in `range`.
    fn any_token(&self, shape: &Shape, b: usize, range: &Range<usize>) -> bool {
        let before = &self.tokens_before[b * (shape.keys + 1)..];
        range.start < range.end && before[range.end] > before[range.start]
    }
}

/// The read-only inputs of both passes.
struct Inputs<'a> {
    shape: &'a Shape,
    keys: &'a Keys,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

impl Inputs<'_> {
    /// The keys any row of `block` may see: from the window start of its first query to the
    /// causal limit of its last, within the batch row's span of tokens. May be empty.
    fn block_keys(&self, block: &RowBlock) -> Range<usize> {
        let shape = self.shape;
        let offset = shape.keys - shape.queries;
        let first = block.first_query + offset;
        let last = block.first_query + block.query_step * (block.rows - 1) + offset;
        let span = &self.keys.spans[block.batch];
        let start = window_start(first, shape.window).max(span.start);
        let end = (last + 1).min(span.end);
        start..end.max(start)
    }

    /// The keys row `r` of `block` may see, relative to `keys` (the block's keys), or `None`
    /// when it may see none (then its softmax is uniform over all `Tk` keys).
    fn row_keys(&self, block: &RowBlock, keys: &Range<usize>, r: usize) -> Option<Range<usize>> {
        let shape = self.shape;
        let query = block.first_query + block.query_step * r + shape.keys - shape.queries;
        let start = window_start(query, shape.window).max(keys.start);
        let end = (query + 1).min(keys.end);
        let visible = start..end;
        self.keys
            .any_token(shape, block.batch, &visible)
            .then(|| start - keys.start..end - keys.start)
    }

    /// The padding mask (1/0) of the block's keys.
    fn tokens(&self, block: &RowBlock, keys: &Range<usize>) -> &[f32] {
        let base = block.batch * self.shape.keys;
        &self.keys.token[base + keys.start..base + keys.end]
    }

    /// The mean of kv head `block.kv_head`'s values over all `Tk` keys: the output of a query
    /// that may see no key.
    fn mean_value(&self, block: &RowBlock) -> Vec<f32> {
        let shape = self.shape;
        let base = shape.kv_base(block.batch, block.kv_head);
        let mut mean = vec![0.0f32; shape.dim];
        for j in 0..shape.keys {
            let row = &self.v[base + j * shape.kv_stride()..][..shape.dim];
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x);
        }
        let inverse = 1.0 / shape.keys as f32;
        mean.iter_mut().for_each(|m| *m *= inverse);
        mean
    }

    /// `scores[r, c] = scale · q_r · k_{keys.start + c}` for the block's rows, `keys.len()`
    /// elements per row of `scores`.
    ///
    /// # Safety
    /// `scores` holds at least `block.rows · keys.len()` elements.
    unsafe fn scores(&self, block: &RowBlock, keys: &Range<usize>, scores: &mut [f32]) {
        let shape = self.shape;
        let nk = keys.len();
        debug_assert!(scores.len() >= block.rows * nk);
        let kv = shape.kv_base(block.batch, block.kv_head) + keys.start * shape.kv_stride();
        // SAFETY: Q's rows are in bounds (RowBlock), K's rows `keys` of kv head `kv_head` are
        // in bounds (`keys` ⊂ 0..Tk), and `scores` is large enough (caller).
        unsafe {
            gemm(
                block.rows,
                nk,
                shape.dim,
                scores.as_mut_ptr(),
                1,
                nk as isize,
                false,
                self.q.as_ptr().add(block.row_offset),
                1,
                block.row_stride as isize,
                self.k.as_ptr().add(kv),
                shape.kv_stride() as isize,
                1,
                0.0,
                shape.scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
}

/// What the forward pass kept, for the backward.
struct Saved<'a> {
    dout: &'a [f32],
    out: &'a [f32],
    lse: &'a [f32],
}

/// The gradients being written, shared between tasks that write disjoint rows.
#[derive(Clone, Copy)]
struct Grads {
    dq: SharedMut,
    dk: SharedMut,
    dv: SharedMut,
}

/// A buffer that several rayon tasks write, each its own rows.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);

// SAFETY: the tasks that share a `SharedMut` write disjoint elements (see each use), and the
// buffer outlives them (rayon joins before the owner is touched again).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// The start of the window ending at `query`: keys `j` with `query − j < window`.
fn window_start(query: usize, window: Option<usize>) -> usize {
    window.map_or(0, |w| (query + 1).saturating_sub(w))
}

/// One block's forward pass: its output rows and logsumexps.
///
/// # Safety
/// `out` and `lse` point at the `[B, Tq, Hq, D]` and `[B, Hq, Tq]` buffers, and no other task
/// writes this block's rows at the same time.
unsafe fn forward_block(
    inputs: &Inputs,
    block: &RowBlock,
    scores: &mut Vec<f32>,
    out: SharedMut,
    lse: SharedMut,
) {
    let shape = inputs.shape;
    let keys = inputs.block_keys(block);
    let nk = keys.len();
    if scores.len() < block.rows * nk {
        scores.resize(block.rows * nk, 0.0);
    }
    if nk > 0 {
        // SAFETY: `scores` was just sized.
        unsafe { inputs.scores(block, &keys, scores) };
    }
    let tokens = inputs.tokens(block, &keys);
    let mut any_unseeing = false;
    for r in 0..block.rows {
        let row = &mut scores[r * nk..(r + 1) * nk];
        let logsumexp = match inputs.row_keys(block, &keys, r) {
            Some(visible) => softmax_row(row, tokens, visible),
            None => {
                row.fill(0.0);
                any_unseeing = true;
                (shape.keys as f32).ln()
            }
        };
        // SAFETY: row r's logsumexp belongs to this block (caller).
        unsafe { *lse.at(block.lse_offset + r * block.lse_stride) = logsumexp };
    }
    let kv = shape.kv_base(block.batch, block.kv_head) + keys.start * shape.kv_stride();
    if nk > 0 {
        // O = P·V, straight into the block's output rows.
        // SAFETY: the output rows are this block's (caller), V's rows `keys` are in bounds.
        unsafe {
            gemm(
                block.rows,
                shape.dim,
                nk,
                out.at(block.row_offset),
                1,
                block.row_stride as isize,
                false,
                scores.as_ptr(),
                1,
                nk as isize,
                inputs.v.as_ptr().add(kv),
                1,
                shape.kv_stride() as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
    if any_unseeing {
        let mean = inputs.mean_value(block);
        for r in 0..block.rows {
            if inputs.row_keys(block, &keys, r).is_none() {
                // SAFETY: the output rows are this block's (caller).
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.at(block.row_offset + r * block.row_stride),
                        shape.dim,
                    )
                };
                row.copy_from_slice(&mean);
            }
        }
    }
}

/// Turns one row of scores into softmax probabilities over the keys `visible` (relative to the
/// row) that are tokens, zero elsewhere; returns the logsumexp. `visible` holds a token.
fn softmax_row(row: &mut [f32], tokens: &[f32], visible: Range<usize>) -> f32 {
    let max = row[visible.clone()]
        .iter()
        .zip(&tokens[visible.clone()])
        .filter(|&(_, &t)| t > 0.0)
        .fold(f32::NEG_INFINITY, |max, (&s, _)| max.max(s));
    row[..visible.start].fill(0.0);
    row[visible.end..].fill(0.0);
    let probs = &mut row[visible.clone()];
    for (x, &t) in probs.iter_mut().zip(&tokens[visible]) {
        let e = exp(*x - max);
        *x = if t > 0.0 { e } else { 0.0 };
    }
    let sum = ordered_sum(probs);
    let inverse = 1.0 / sum;
    probs.iter_mut().for_each(|p| *p *= inverse);
    max + sum.ln()
}

/// Recomputes one row's probabilities from its scores and logsumexp (as [`softmax_row`] made
/// them, up to rounding).
fn probabilities_row(row: &mut [f32], tokens: &[f32], visible: Range<usize>, logsumexp: f32) {
    row[..visible.start].fill(0.0);
    row[visible.end..].fill(0.0);
    for (x, &t) in row[visible.clone()].iter_mut().zip(&tokens[visible]) {
        let p = exp(*x - logsumexp);
        *x = if t > 0.0 { p } else { 0.0 };
    }
}

/// A sum in eight interleaved lanes, added up in a fixed order: vectorisable, and the same bits
/// every time.
fn ordered_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &x)| *l += x);
    }
    lanes
        .iter_mut()
        .zip(chunks.remainder())
        .for_each(|(l, &x)| *l += x);
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// `Σ x·y` in a fixed order.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (mut xs, mut ys) = (x.chunks_exact(8), y.chunks_exact(8));
    for (cx, cy) in (&mut xs).zip(&mut ys) {
        for i in 0..8 {
            lanes[i] += cx[i] * cy[i];
        }
    }
    for (i, (&a, &b)) in xs.remainder().iter().zip(ys.remainder()).enumerate() {
        lanes[i] += a * b;
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// One `(batch, kv head)` group's backward pass: the dq rows of its query heads, and its kv
/// head's dk and dv rows, accumulated block by block in the order of [`Shape::blocks`].
///
/// # Safety
/// `grads` point at buffers shaped as q, k and v, and no other task writes this group's rows.
unsafe fn backward_group(inputs: &Inputs, saved: &Saved, b: usize, g: usize, grads: Grads) {
    let shape = inputs.shape;
    let (d, kv_stride) = (shape.dim, shape.kv_stride() as isize);
    let kv_base = shape.kv_base(b, g);
    let mut probs: Vec<f32> = Vec::new();
    let mut dprobs: Vec<f32> = Vec::new();
    // Σ dout over the rows that see no key: each of them sends dout / Tk to every value.
    let mut unseeing_dout = vec![0.0f32; d];
    let mut any_unseeing = false;
    for block in shape.blocks(b, g) {
        let keys = inputs.block_keys(&block);
        let nk = keys.len();
        let rows = block.rows;
        if probs.len() < rows * nk {
            probs.resize(rows * nk, 0.0);
            dprobs.resize(rows * nk, 0.0);
        }
        let tokens = inputs.tokens(&block, &keys);
        if nk > 0 {
            // SAFETY: `probs` was just sized.
            unsafe { inputs.scores(&block, &keys, &mut probs) };
        }
        let mut deltas = vec![0.0f32; rows];
        let mut seeing = vec![false; rows];
        for r in 0..rows {
            let row_offset = block.row_offset + r * block.row_stride;
            let dout_row = &saved.dout[row_offset..][..d];
            let row = &mut probs[r * nk..(r + 1) * nk];
            match inputs.row_keys(&block, &keys, r) {
                Some(visible) => {
                    let logsumexp = saved.lse[block.lse_offset + r * block.lse_stride];
                    probabilities_row(row, tokens, visible, logsumexp);
                    deltas[r] = dot(dout_row, &saved.out[row_offset..][..d]);
                    seeing[r] = true;
                }
                None => {
                    row.fill(0.0);
                    any_unseeing = true;
                    unseeing_dout
                        .iter_mut()
                        .zip(dout_row)
                        .for_each(|(s, &x)| *s += x);
                }
            }
        }
        if nk == 0 {
            // No row sees a key: dq stays zero, and dv is served below.
            continue;
        }
        let kv = kv_base + keys.start * shape.kv_stride();
        let dout = saved.dout[block.row_offset..].as_ptr();
        // SAFETY (all four products): Q, dO and dQ rows are this block's, in bounds
        // (RowBlock); K, V, dK and dV rows `keys` of kv head g are in bounds and this group's
        // alone (caller); `probs` and `dprobs` hold `rows · nk` elements.
        unsafe {
            // dV[keys] += Pᵀ·dO
            gemm(
                nk,
                d,
                rows,
                grads.dv.at(kv),
                1,
                kv_stride,
                true,
                probs.as_ptr(),
                nk as isize,
                1,
                dout,
                1,
                block.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
            // dP = dO·Vᵀ
            gemm(
                rows,
                nk,
                d,
                dprobs.as_mut_ptr(),
                1,
                nk as isize,
                false,
                dout,
                1,
                block.row_stride as isize,
                inputs.v.as_ptr().add(kv),
                kv_stride,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        // dS = P ⊙ (dP − Δ), in place of dP (zero on rows that see no key).
        for r in 0..rows {
            let ds = &mut dprobs[r * nk..(r + 1) * nk];
            if seeing[r] {
                let p = &probs[r * nk..(r + 1) * nk];
                let delta = deltas[r];
                ds.iter_mut()
                    .zip(p)
                    .for_each(|(ds, &p)| *ds = p * (*ds - delta));
            } else {
                ds.fill(0.0);
            }
        }
        unsafe {
            // dQ = scale·dS·K
            gemm(
                rows,
                d,
                nk,
                grads.dq.at(block.row_offset),
                1,
                block.row_stride as isize,
                false,
                dprobs.as_ptr(),
                1,
                nk as isize,
                inputs.k.as_ptr().add(kv),
                1,
                kv_stride,
                0.0,
                shape.scale,
                false,
                false,
                false,
                Parallelism::None,
            );
            // dK[keys] += scale·dSᵀ·Q
            gemm(
                nk,
                d,
                rows,
                grads.dk.at(kv),
                1,
                kv_stride,
                true,
                dprobs.as_ptr(),
                nk as isize,
                1,
                inputs.q[block.row_offset..].as_ptr(),
                1,
                block.row_stride as isize,
                1.0,
                shape.scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
    if any_unseeing {
        let inverse = 1.0 / shape.keys as f32;
        unseeing_dout.iter_mut().for_each(|s| *s *= inverse);
        for j in 0..shape.keys {
            // SAFETY: kv head g's dv rows in batch b are this group's alone (caller).
            let row = unsafe {
                std::slice::from_raw_parts_mut(grads.dv.at(kv_base + j * shape.kv_stride()), d)
            };
            row.iter_mut()
                .zip(&unseeing_dout)
                .for_each(|(x, &s)| *x += s);
        }
    }
}
