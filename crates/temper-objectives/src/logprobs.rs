//! Token log-probabilities from logits, and their per-sequence sums, means and token counts.
//!
//! Every function takes labels *aligned* with the logits: position `t` of `logits` scores
//! `labels[t]`. For a causal LM that means logits `[:, :-1]` against `input_ids[:, 1:]`;
//! [`next_token_targets`] does that shift. Masked positions may hold any label (e.g. `-100`).

use burn::tensor::{Int, Tensor, activation::log_softmax, backend::Backend};

use crate::error::{ObjectiveError, check_same_shape};

/// Shifts a causal LM's inputs so logits at `t` score token `t + 1`:
/// `(logits[:, :-1], input_ids[:, 1:], loss_mask[:, 1:])`.
pub fn next_token_targets<B: Backend>(
    logits: Tensor<B, 3>,
    input_ids: Tensor<B, 2, Int>,
    loss_mask: Tensor<B, 2>,
) -> (Tensor<B, 3>, Tensor<B, 2, Int>, Tensor<B, 2>) {
    let [batch, seq, vocab] = logits.dims();
    let keep = seq.saturating_sub(1);
    (
        logits.slice([0..batch, 0..keep, 0..vocab]),
        input_ids.slice([0..batch, 1..seq]),
        loss_mask.slice([0..batch, 1..seq]),
    )
}

/// Per-token log-probabilities `[B, T]` of `labels` under `softmax(logits)` `[B, T, V]`,
/// zero where `mask` `[B, T]` is 0. Stable: a log-softmax, then a gather.
pub fn token_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, ObjectiveError> {
    check_inputs(&logits, &labels, &mask)?;
    Ok(gather_log_probs(logits, labels, mask))
}

/// [`token_log_probs`] a slice of `chunk_len` positions at a time: the `[B, T, V]` log-softmax
/// is never built whole, so the extra memory is `[B, chunk_len, V]`. Same results.
///
/// The bound holds without autodiff: reference-model and rollout log-probs, evaluation. Under
/// an autodiff backend every chunk's intermediates are kept for the backward pass, so training
/// memory is still `O(B·T·V)`.
pub fn token_log_probs_chunked<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    chunk_len: usize,
) -> Result<Tensor<B, 2>, ObjectiveError> {
    check_inputs(&logits, &labels, &mask)?;
    let chunks = sequence_chunks(logits.dims()[1], chunk_len)?
        .into_iter()
        .map(|range| {
            let [batch, _, vocab] = logits.dims();
            gather_log_probs(
                logits.clone().slice([0..batch, range.clone(), 0..vocab]),
                labels.clone().slice([0..batch, range.clone()]),
                mask.clone().slice([0..batch, range]),
            )
        })
        .collect();
    Ok(Tensor::cat(chunks, 1))
}

/// Log-probabilities with the statistics TRL logs beside them, all `[B, T]` and zero where the
/// mask is 0. Only `log_probs` carries a gradient.
#[derive(Clone, Debug)]
pub struct TokenStats<B: Backend> {
    pub log_probs: Tensor<B, 2>,
    /// Entropy of the predicted distribution, `−Σ p log p`.
    pub entropy: Tensor<B, 2>,
    /// 1 where the label is the arg-max prediction.
    pub is_top1: Tensor<B, 2>,
    /// The mean logit over the vocabulary (TRL's `logits/chosen` averages it over tokens).
    pub mean_logit: Tensor<B, 2>,
}

impl<B: Backend> TokenStats<B> {
    /// Statistics computed elsewhere (e.g. by the fused LM-head kernel, which never builds the
    /// logits), with every masked position set to zero as [`token_stats`] leaves it.
    pub fn masked(
        log_probs: Tensor<B, 2>,
        entropy: Tensor<B, 2>,
        is_top1: Tensor<B, 2>,
        mean_logit: Tensor<B, 2>,
        mask: &Tensor<B, 2>,
    ) -> Self {
        Self {
            log_probs: zero_where_masked(log_probs, mask),
            entropy: zero_where_masked(entropy, mask),
            is_top1: zero_where_masked(is_top1, mask),
            mean_logit: zero_where_masked(mean_logit, mask),
        }
    }
}

/// [`token_log_probs`] with entropy, top-1 agreement and mean logit, optionally in chunks of
/// `chunk_len` positions (`None`: all at once).
pub fn token_stats<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    chunk_len: Option<usize>,
) -> Result<TokenStats<B>, ObjectiveError> {
    check_inputs(&logits, &labels, &mask)?;
    let [batch, seq, vocab] = logits.dims();
    let ranges = match chunk_len {
        Some(len) => sequence_chunks(seq, len)?,
        None => std::iter::once(0..seq).collect(),
    };
    let mut parts = Vec::with_capacity(ranges.len());
    for range in ranges {
        let logits = logits.clone().slice([0..batch, range.clone(), 0..vocab]);
        let labels = labels.clone().slice([0..batch, range.clone()]);
        let mask = mask.clone().slice([0..batch, range]);
        parts.push(chunk_stats(logits, labels, mask));
    }
    let cat =
        |pick: fn(&TokenStats<B>) -> Tensor<B, 2>| Tensor::cat(parts.iter().map(pick).collect(), 1);
    Ok(TokenStats {
        log_probs: cat(|s| s.log_probs.clone()),
        entropy: cat(|s| s.entropy.clone()),
        is_top1: cat(|s| s.is_top1.clone()),
        mean_logit: cat(|s| s.mean_logit.clone()),
    })
}

/// Per-sequence totals over the loss mask: the summed log-probability and the token count.
#[derive(Clone, Debug)]
pub struct SequenceLogProbs<B: Backend> {
    /// `Σ_t log p(y_t)`, shape `[N]`.
    pub sum: Tensor<B, 1>,
    /// Unmasked tokens per sequence, shape `[N]`.
    pub tokens: Tensor<B, 1>,
}

impl<B: Backend> SequenceLogProbs<B> {
    /// Sums masked per-token log-probs `[N, T]` (zero where masked) over each sequence.
    pub fn from_tokens(per_token: Tensor<B, 2>, mask: Tensor<B, 2>) -> Self {
        Self {
            sum: per_token.sum_dim(1).squeeze_dim(1),
            tokens: mask.sum_dim(1).squeeze_dim(1),
        }
    }

    /// The mean log-probability per token; a sequence with no tokens averages to 0 (TRL's
    /// `clamp(min=1)` on the count).
    pub fn mean(&self) -> Tensor<B, 1> {
        self.sum.clone() / self.tokens.clone().clamp_min(1.0)
    }

    /// Splits a `[2B]` batch laid out chosen-first (as `temper-data`'s pair batches) into halves.
    pub fn split_pairs(&self) -> Result<PairLogProbs<B>, ObjectiveError> {
        let n = self.sum.dims()[0];
        if n == 0 || !n.is_multiple_of(2) {
            return Err(ObjectiveError::Batch(format!(
                "a pair batch holds chosen then rejected sequences, so its size must be even and positive; got {n}"
            )));
        }
        let half = n / 2;
        Ok(PairLogProbs {
            chosen: Self {
                sum: self.sum.clone().narrow(0, 0, half),
                tokens: self.tokens.clone().narrow(0, 0, half),
            },
            rejected: Self {
                sum: self.sum.clone().narrow(0, half, half),
                tokens: self.tokens.clone().narrow(0, half, half),
            },
        })
    }

    /// The sequences with their gradients cut, e.g. for a reference model.
    pub fn detach(&self) -> Self {
        Self {
            sum: self.sum.clone().detach(),
            tokens: self.tokens.clone(),
        }
    }
}

/// Chosen and rejected completions of the same `B` pairs.
#[derive(Clone, Debug)]
pub struct PairLogProbs<B: Backend> {
    pub chosen: SequenceLogProbs<B>,
    pub rejected: SequenceLogProbs<B>,
}

impl<B: Backend> PairLogProbs<B> {
    /// Pairs from per-pair tensors of summed log-probs and token counts, each `[B]`.
    pub fn new(
        chosen_sum: Tensor<B, 1>,
        chosen_tokens: Tensor<B, 1>,
        rejected_sum: Tensor<B, 1>,
        rejected_tokens: Tensor<B, 1>,
    ) -> Result<Self, ObjectiveError> {
        let dims = chosen_sum.dims();
        check_same_shape("chosen token counts", &dims, &chosen_tokens.dims())?;
        check_same_shape("rejected log-probs", &dims, &rejected_sum.dims())?;
        check_same_shape("rejected token counts", &dims, &rejected_tokens.dims())?;
        Ok(Self {
            chosen: SequenceLogProbs {
                sum: chosen_sum,
                tokens: chosen_tokens,
            },
            rejected: SequenceLogProbs {
                sum: rejected_sum,
                tokens: rejected_tokens,
            },
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.chosen.sum.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Both sides with their gradients cut.
    pub fn detach(&self) -> Self {
        Self {
            chosen: self.chosen.detach(),
            rejected: self.rejected.detach(),
        }
    }

    /// Chosen and rejected exchanged.
    pub fn swapped(&self) -> Self {
        Self {
            chosen: self.rejected.clone(),
            rejected: self.chosen.clone(),
        }
    }

    /// Checks that the batch is not empty and its four tensors have the same `[B]` shape (the
    /// fields are public, so [`PairLogProbs::new`] may have been bypassed).
    pub fn check(&self) -> Result<(), ObjectiveError> {
        let dims = self.chosen.sum.dims();
        if dims[0] == 0 {
            return Err(ObjectiveError::Batch(
                "a preference batch needs at least one pair".into(),
            ));
        }
        check_same_shape("chosen token counts", &dims, &self.chosen.tokens.dims())?;
        check_same_shape("rejected log-probs", &dims, &self.rejected.sum.dims())?;
        check_same_shape("rejected token counts", &dims, &self.rejected.tokens.dims())
    }

    pub(crate) fn check_matches(&self, other: &Self) -> Result<(), ObjectiveError> {
        other.check()?;
        check_same_shape(
            "reference pairs",
            &self.chosen.sum.dims(),
            &other.chosen.sum.dims(),
        )
    }
}

fn gather_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let labels = safe_labels(labels, &mask);
    // `x[label] − logsumexp(x)` with the row max shifted out: the same stable value as a
    // log-softmax followed by a gather, without materialising a second `[B, T, V]` tensor of
    // log-probabilities. The max is detached: the shift cancels, so its gradient is zero.
    let max = logits.clone().detach().max_dim(2);
    let shifted = logits - max;
    let picked = shifted.clone().gather(2, labels.unsqueeze_dim(2));
    let log_sum_exp = shifted.exp().sum_dim(2).log();
    zero_where_masked((picked - log_sum_exp).squeeze_dim(2), &mask)
}

/// Zeroes masked positions by selection, not multiplication: a masked position may score
/// `−∞` (e.g. a vocabulary-masked label 0), and `−∞ · 0` is NaN.
fn zero_where_masked<B: Backend>(values: Tensor<B, 2>, mask: &Tensor<B, 2>) -> Tensor<B, 2> {
    values.mask_fill(mask.clone().equal_elem(0.0), 0.0)
}

fn chunk_stats<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> TokenStats<B> {
    let labels = safe_labels(labels, &mask);
    let log_softmax = log_softmax(logits.clone(), 2);
    let log_probs = log_softmax
        .clone()
        .gather(2, labels.clone().unsqueeze_dim(2))
        .squeeze_dim(2);
    let detached = log_softmax.detach();
    let entropy = (detached.clone().exp() * detached)
        .sum_dim(2)
        .squeeze_dim::<2>(2)
        .neg();
    let logits = logits.detach();
    let is_top1 = logits
        .clone()
        .argmax(2)
        .squeeze_dim::<2>(2)
        .equal(labels)
        .float();
    let mean_logit = logits.mean_dim(2).squeeze_dim(2);
    TokenStats::masked(log_probs, entropy, is_top1, mean_logit, &mask)
}

/// Masked positions may hold `-100` or any other out-of-vocabulary id: gather label 0 there.
fn safe_labels<B: Backend>(labels: Tensor<B, 2, Int>, mask: &Tensor<B, 2>) -> Tensor<B, 2, Int> {
    labels.mask_fill(mask.clone().equal_elem(0.0), 0)
}

fn check_inputs<B: Backend>(
    logits: &Tensor<B, 3>,
    labels: &Tensor<B, 2, Int>,
    mask: &Tensor<B, 2>,
) -> Result<(), ObjectiveError> {
    let [batch, seq, _] = logits.dims();
    check_same_shape(
        "labels against logits [B, T]",
        &[batch, seq],
        &labels.dims(),
    )?;
    check_same_shape(
        "loss mask against logits [B, T]",
        &[batch, seq],
        &mask.dims(),
    )
}

fn sequence_chunks(
    seq: usize,
    chunk_len: usize,
) -> Result<Vec<std::ops::Range<usize>>, ObjectiveError> {
    if chunk_len == 0 {
        return Err(ObjectiveError::InvalidSetting {
            setting: "chunk_len",
            value: 0.0,
            reason: "a chunk holds at least one position",
        });
    }
    if seq == 0 {
        return Ok(std::iter::once(0..0).collect());
    }
    Ok((0..seq)
        .step_by(chunk_len)
        .map(|start| start..(start + chunk_len).min(seq))
        .collect())
}
