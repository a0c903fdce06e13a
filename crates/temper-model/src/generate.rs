//! Batched generation with left padding: greedy or sampled (temperature, top-k, top-p),
//! repetition penalty, eos stops, a seed, and the log-probability of every generated token
//! (GRPO and PPO need them). Decoding uses the KV cache unless told to recompute everything,
//! which exists to check the cache and to measure what it saves.

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use temper_kernels::KernelBackend;

use crate::model::{CausalLm, KvCache};

/// How the next token is chosen from the (penalised) logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decoding {
    /// The most likely token (the first, on ties), as transformers' greedy search.
    Greedy,
    /// Sampling after transformers' warpers in their order: temperature, top-k, top-p.
    Sample {
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
    },
}

/// A sampling setting that transformers' `GenerationConfig.validate` refuses, by its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSampling {
    pub key: &'static str,
    pub reason: String,
}

/// Checks sampling settings as transformers does: a temperature and a repetition penalty
/// are finite and > 0, and `top_p` lies in (0, 1] (`top_k` 0 means no top-k, as there).
pub fn check_sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    repetition_penalty: Option<f64>,
) -> Result<(), InvalidSampling> {
    let invalid = |key, reason: String| Err(InvalidSampling { key, reason });
    for (key, value) in [
        ("temperature", temperature),
        ("repetition_penalty", repetition_penalty),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return invalid(key, format!("must be > 0, not {v}"));
        }
    }
    if let Some(p) = top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return invalid("top_p", format!("must be in (0, 1], not {p}"));
    }
    Ok(())
}

/// Settings of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub decoding: Decoding,
    /// CTRL's penalty on tokens already in the sequence (1.0: off).
    pub repetition_penalty: f64,
    /// Generation stops for a row at any of these (the token is kept).
    pub eos_token_ids: Vec<u32>,
    /// Fills the left padding of shorter prompts.
    pub pad_token_id: u32,
    pub seed: u64,
    /// Decode with the KV cache (`false`: recompute the whole sequence every step).
    pub use_cache: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            decoding: Decoding::Greedy,
            repetition_penalty: 1.0,
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
            seed: 0,
            use_cache: true,
        }
    }
}

impl GenerationConfig {
    /// Stops and padding from a model directory: `generation_config.json`'s `eos_token_id`
    /// (an id or a list) and `pad_token_id`, else `config.json`'s eos ids; greedy otherwise.
    pub fn for_model_dir(dir: &std::path::Path, config: &crate::ModelConfig) -> Self {
        let generation: serde_json::Value =
            std::fs::read_to_string(dir.join("generation_config.json"))
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            match v {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_u64())
                    .map(|i| i as u32)
                    .collect(),
                other => other.as_u64().map(|i| vec![i as u32]).unwrap_or_default(),
            }
        };
        let mut eos_token_ids = ids(&generation["eos_token_id"]);
        if eos_token_ids.is_empty() {
            eos_token_ids = config.eos_token_ids.clone();
        }
        let pad_token_id = generation["pad_token_id"]
            .as_u64()
            .map(|p| p as u32)
            .or_else(|| eos_token_ids.first().copied())
            .unwrap_or(0);
        Self {
            eos_token_ids,
            pad_token_id,
            ..Self::default()
        }
    }
}

/// What [`generate`] returns, one entry per prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens, up to and including an eos token.
    pub tokens: Vec<Vec<u32>>,
    /// `log p(token)` under the model's own distribution (no temperature, penalty or filtering).
    pub log_probs: Vec<Vec<f32>>,
    /// Whether the row stopped at an eos token.
    pub stopped_at_eos: Vec<bool>,
    /// Whether the streaming callback stopped the row (e.g. at a stop string).
    pub stopped_by_caller: Vec<bool>,
}

/// Generates continuations of `prompts` (token ids, unpadded; left-padded together here) with a
/// causal LM (as [`crate::load_model`] gives; a reward model's scores are no next-token logits).
pub fn generate<B: KernelBackend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    device: &B::Device,
) -> Generation {
    generate_streaming(model, prompts, config, device, |_, _| true)
}

/// [`generate`], calling `on_token(row, token)` as each token is chosen (streaming output,
/// stop strings); it returns whether that row goes on (`false` stops it, the token kept).
pub fn generate_streaming<B: KernelBackend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    device: &B::Device,
    mut on_token: impl FnMut(usize, u32) -> bool,
) -> Generation {
    let rows = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut sequences: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            std::iter::repeat_n(config.pad_token_id, width - p.len())
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    let mut mask: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            std::iter::repeat_n(0.0, width - p.len())
                .chain(std::iter::repeat_n(1.0, p.len()))
                .collect()
        })
        .collect();
    let mut out = Generation {
        tokens: vec![Vec::new(); rows],
        log_probs: vec![Vec::new(); rows],
        stopped_at_eos: vec![false; rows],
        stopped_by_caller: vec![false; rows],
    };
    let mut finished = vec![false; rows];
    if rows == 0 || width == 0 || config.max_new_tokens == 0 {
        return out;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut cache = KvCache::with_capacity(model.layers.len(), width + config.max_new_tokens);
    let mut fed = 0; // positions already in the cache
    for _ in 0..config.max_new_tokens {
        let logits = if config.use_cache {
            let step = step_inputs::<B>(&sequences, &mask, fed, device);
            fed = sequences[0].len();
            model.last_logits(step.0, step.1, step.2, Some(&mut cache))
        } else {
            let all = step_inputs::<B>(&sequences, &mask, 0, device);
            model.last_logits(all.0, all.1, all.2, None)
        };
        let vocab = logits.dims()[1];
        let last: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits");
        for (row, raw) in last.chunks(vocab).enumerate() {
            if finished[row] {
                sequences[row].push(config.pad_token_id);
                mask[row].push(1.0);
                continue;
            }
            let seen = sequences[row]
                .iter()
                .zip(&mask[row])
                .filter(|(_, m)| **m > 0.0)
                .map(|(t, _)| *t);
            let scores = penalised(raw, seen, config.repetition_penalty);
            let token = choose(&scores, config.decoding, &mut rng);
            out.log_probs[row].push(log_softmax_at(raw, token));
            out.tokens[row].push(token as u32);
            out.stopped_by_caller[row] = !on_token(row, token as u32);
            out.stopped_at_eos[row] = config.eos_token_ids.contains(&(token as u32));
            finished[row] = out.stopped_at_eos[row] || out.stopped_by_caller[row];
            sequences[row].push(token as u32);
            mask[row].push(1.0);
        }
        if finished.iter().all(|f| *f) {
            break;
        }
    }
    out
}

/// Ids, the full attention mask and the position ids of the tokens from `start` on.
fn step_inputs<B: KernelBackend>(
    sequences: &[Vec<u32>],
    mask: &[Vec<f32>],
    start: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2>, Tensor<B, 2, Int>) {
    let (rows, total) = (sequences.len(), sequences[0].len());
    let new = total - start;
    let ids: Vec<i64> = sequences
        .iter()
        .flat_map(|s| s[start..].iter().map(|t| *t as i64))
        .collect();
    let flat_mask: Vec<f32> = mask.iter().flatten().copied().collect();
    // Positions count real tokens only: 0 at each row's first token after the padding.
    let positions: Vec<i64> = mask
        .iter()
        .flat_map(|m| {
            let mut seen = 0i64;
            let all: Vec<i64> = m
                .iter()
                .map(|v| {
                    seen += (*v > 0.0) as i64;
                    (seen - 1).max(0)
                })
                .collect();
            all[start..].to_vec()
        })
        .collect();
    (
        Tensor::from_data(TensorData::new(ids, [rows, new]), device),
        Tensor::from_data(TensorData::new(flat_mask, [rows, total]), device),
        Tensor::from_data(TensorData::new(positions, [rows, new]), device),
    )
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: a seen token's logit is divided by the
/// penalty when positive and multiplied when negative.
fn penalised(raw: &[f32], seen: impl Iterator<Item = u32>, penalty: f64) -> Vec<f32> {
    let mut scores = raw.to_vec();
    if penalty != 1.0 {
        let penalty = penalty as f32;
        let mut done = vec![false; scores.len()];
        for token in seen {
            let t = token as usize;
            if t < scores.len() && !done[t] {
                done[t] = true;
                scores[t] = if scores[t] > 0.0 {
                    scores[t] / penalty
                } else {
                    scores[t] * penalty
                };
            }
        }
    }
    scores
}

fn choose(scores: &[f32], decoding: Decoding, rng: &mut ChaCha8Rng) -> usize {
    match decoding {
        Decoding::Greedy => argmax(scores),
        Decoding::Sample {
            temperature,
            top_k,
            top_p,
        } => {
            if temperature <= 0.0 {
                return argmax(scores);
            }
            let mut candidates: Vec<(usize, f64)> = scores
                .iter()
                .enumerate()
                .map(|(i, s)| (i, *s as f64 / temperature))
                .collect();
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if let Some(k) = top_k.filter(|k| *k > 0) {
                candidates.truncate(k);
            }
            let max = candidates[0].1;
            let mut weights: Vec<f64> = candidates.iter().map(|(_, s)| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            if let Some(p) = top_p.filter(|p| *p < 1.0) {
                // Keep the smallest prefix whose probability reaches `p` (at least one token).
                let mut cumulative = 0.0;
                let keep = weights
                    .iter()
                    .position(|w| {
                        cumulative += w / total;
                        cumulative >= p
                    })
                    .map_or(weights.len(), |i| i + 1);
                weights.truncate(keep);
            }
            let total: f64 = weights.iter().sum();
            let mut target = rng.random::<f64>() * total;
            for (i, w) in weights.iter().enumerate() {
                target -= w;
                if target <= 0.0 {
                    return candidates[i].0;
                }
            }
            candidates[weights.len() - 1].0
        }
    }
}

fn argmax(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if *s > best.1 { (i, *s) } else { best }
        })
        .0
}

fn log_softmax_at(raw: &[f32], token: usize) -> f32 {
    let max = raw.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x)) as f64;
    let log_sum = raw
        .iter()
        .map(|x| (*x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    (raw[token] as f64 - log_sum) as f32
}
