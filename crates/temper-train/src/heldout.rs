//! Held-out measures that compare any models on the same data without a reference model: the
//! mean completion NLL per token (what SFT lowers) and, on preference pairs, how often the
//! chosen completion has the higher mean log-prob per token and by how much (what preference
//! optimisation raises). The main job's before/after table is made of these.

use temper_data::tokenize::{TokenizedPair, TokenizedSequence};
use temper_kernels::KernelBackend;
use temper_model::{CausalLm, ScoredSequence, score_sequences};

use crate::reference::completion_sequences;

/// Mean negative log-likelihood per trained token (the loss mask's tokens) over `sequences`.
pub fn completion_nll<B: KernelBackend>(
    model: &CausalLm<B>,
    sequences: &[TokenizedSequence],
    batch_size: usize,
    device: &B::Device,
) -> f64 {
    let scored: Vec<ScoredSequence> = sequences
        .iter()
        .map(|sequence| ScoredSequence {
            ids: sequence.input_ids.clone(),
            scored: sequence.loss_mask.clone(),
        })
        .collect();
    let (sum, tokens) = score_sequences(model, &scored, batch_size, device)
        .into_iter()
        .fold((0.0, 0), |(sum, tokens), (s, t)| (sum + s, tokens + t));
    -sum / tokens.max(1) as f64
}

/// Preference accuracy and margin on held-out pairs, by mean log-prob per completion token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PreferenceScore {
    /// Fraction of pairs whose chosen completion scores higher.
    pub accuracy: f64,
    /// Mean over pairs of (chosen − rejected) mean log-prob per token.
    pub margin: f64,
}

pub fn preference_score<B: KernelBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    batch_size: usize,
    device: &B::Device,
) -> PreferenceScore {
    let sequences = completion_sequences(pairs);
    let per_token = |(sum, tokens): (f64, usize)| sum / tokens.max(1) as f64;
    let margins: Vec<f64> = score_sequences(model, &sequences, batch_size, device)
        .chunks(2)
        .map(|sides| per_token(sides[0]) - per_token(sides[1]))
        .collect();
    let count = margins.len().max(1) as f64;
    PreferenceScore {
        accuracy: margins.iter().filter(|&&m| m > 0.0).count() as f64 / count,
        margin: margins.iter().sum::<f64>() / count,
    }
}
