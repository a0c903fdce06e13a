//! Log-probability sums of chosen tokens of whole sequences: what `temper score` prints and what
//! DPO's reference model contributes. Sequences are right-padded into batches; token `t + 1` is
//! scored by the logits at `t`.

use burn::tensor::{Int, Tensor, TensorData};
use temper_kernels::KernelBackend;

use crate::model::CausalLm;

/// A sequence and which of its tokens are scored (the completion, for preference data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoredSequence {
    pub ids: Vec<u32>,
    pub scored: Vec<bool>,
}

impl ScoredSequence {
    /// `prompt + completion` with the completion's tokens scored (one side of a preference
    /// pair).
    pub fn completion(prompt: &[u32], completion: &[u32]) -> Self {
        Self {
            ids: prompt.iter().chain(completion).copied().collect(),
            scored: (0..prompt.len() + completion.len())
                .map(|i| i >= prompt.len())
                .collect(),
        }
    }
}

/// `Σ log p(token)` over the scored tokens of each sequence and how many there were, in input
/// order, `batch_size` sequences per forward pass. `model` is a causal LM (as [`crate::load_model`]
/// gives): a reward model has no token probabilities; its scores are
/// [`CausalLm::sequence_scores`].
///
/// # Panics
/// If `model` is a reward model (it has no LM head).
pub fn score_sequences<B: KernelBackend>(
    model: &CausalLm<B>,
    sequences: &[ScoredSequence],
    batch_size: usize,
    device: &B::Device,
) -> Vec<(f64, usize)> {
    sequences
        .chunks(batch_size.max(1))
        .flat_map(|batch| score_batch(model, batch, device))
        .collect()
}

fn score_batch<B: KernelBackend>(
    model: &CausalLm<B>,
    batch: &[ScoredSequence],
    device: &B::Device,
) -> Vec<(f64, usize)> {
    let rows = batch.len();
    let width = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    if width < 2 {
        return vec![(0.0, 0); rows];
    }
    let mut ids = vec![0i64; rows * width];
    let mut attention = vec![0.0f32; rows * width];
    let mut positions = vec![0i64; rows * width];
    let mut targets = vec![0i64; rows * (width - 1)];
    let mut scored = vec![0.0f32; rows * (width - 1)];
    for (r, sequence) in batch.iter().enumerate() {
        for (t, id) in sequence.ids.iter().enumerate() {
            ids[r * width + t] = *id as i64;
            attention[r * width + t] = 1.0;
            positions[r * width + t] = t as i64;
            if t > 0 {
                targets[r * (width - 1) + t - 1] = *id as i64;
                scored[r * (width - 1) + t - 1] =
                    sequence.scored.get(t).copied().unwrap_or(false) as u8 as f32;
            }
        }
    }
    let head = model.head_input(
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, width]), device),
        Tensor::from_data(TensorData::new(attention, [rows, width]), device),
        Tensor::from_data(TensorData::new(positions, [rows, width]), device),
    );
    let targets =
        Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [rows, width - 1]), device);
    let mask = Tensor::<B, 2>::from_data(TensorData::new(scored, [rows, width - 1]), device);
    let token_logps = head
        .token_log_probs(0, targets, 1.0, false)
        .expect("score_sequences takes a causal LM")
        .log_probs;
    let per_token: Vec<f32> = token_logps
        .mask_fill(mask.equal_elem(0.0), 0.0)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 log-probs");
    batch
        .iter()
        .enumerate()
        .map(|(r, sequence)| {
            let row = &per_token[r * (width - 1)..(r + 1) * (width - 1)];
            let count = sequence.scored.iter().skip(1).filter(|s| **s).count();
            (row.iter().map(|v| *v as f64).sum(), count)
        })
        .collect()
}
