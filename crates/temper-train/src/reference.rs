//! DPO's reference log-probs: scored once before training without autodiff (so the policy and
//! the reference are never both in autodiff memory) and kept on disk under a hash of the
//! reference weights and the tokenised pairs, or scored batch by batch from a reference model
//! kept beside the policy (TRL's `precompute_ref_log_probs=False`).

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temper_data::TokenizedSet;
use temper_data::tokenize::TokenizedPair;
use temper_kernels::KernelBackend;
use temper_model::{CausalLm, ScoredSequence, score_sequences};
use temper_objectives::PairLogProbs;

use crate::checkpoint::sha256_hex;

/// A reference model's summed log-probs and token counts of one pair's completions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceScores {
    pub chosen: f64,
    pub chosen_tokens: usize,
    pub rejected: f64,
    pub rejected_tokens: usize,
}

/// Where a preference objective's reference log-probs come from.
pub enum Reference<B: KernelBackend> {
    /// The objective needs none (SFT, ORPO, SimPO).
    None,
    /// One entry per example, in example order.
    Precomputed(Vec<ReferenceScores>),
    /// Scored per batch (no autodiff: the inner backend's model). Boxed: a model is large
    /// next to the other variants.
    Model(Box<CausalLm<B>>),
}

impl<B: KernelBackend> Reference<B> {
    /// The scores of `examples[indices]`; `None` for an objective without a reference. Only a
    /// reference model needs the pairs themselves.
    pub(crate) fn scores(
        &self,
        examples: &TokenizedSet,
        indices: &[usize],
        device: &B::Device,
    ) -> Option<Vec<ReferenceScores>> {
        match self {
            Reference::None => None,
            Reference::Precomputed(all) => Some(indices.iter().map(|&i| all[i]).collect()),
            Reference::Model(model) => {
                let pairs: Vec<TokenizedPair> = match examples {
                    TokenizedSet::Pairs(pairs) => {
                        indices.iter().map(|&i| pairs[i].clone()).collect()
                    }
                    TokenizedSet::Unpaired(all) => {
                        indices.iter().map(|&i| all[i].as_pair()).collect()
                    }
                    _ => Vec::new(),
                };
                Some(reference_scores(model, &pairs, pairs.len() * 2, device))
            }
        }
    }
}

/// Scores as the loss takes them, on any backend.
pub(crate) fn pair_log_probs<B: KernelBackend>(
    scores: &[ReferenceScores],
    device: &B::Device,
) -> Option<PairLogProbs<B>> {
    let column = |f: fn(&ReferenceScores) -> f64| {
        let values: Vec<f32> = scores.iter().map(|r| f(r) as f32).collect();
        Tensor::from_data(TensorData::new(values, [scores.len()]), device)
    };
    PairLogProbs::new(
        column(|r| r.chosen),
        column(|r| r.chosen_tokens as f64),
        column(|r| r.rejected),
        column(|r| r.rejected_tokens as f64),
    )
    .ok()
}

/// Each pair's chosen then rejected completion after its prompt, completion tokens scored.
pub(crate) fn completion_sequences(pairs: &[TokenizedPair]) -> Vec<ScoredSequence> {
    pairs
        .iter()
        .flat_map(|pair| {
            [&pair.chosen_ids, &pair.rejected_ids]
                .map(|answer| ScoredSequence::completion(&pair.prompt_ids, answer))
        })
        .collect()
}

/// Scores every pair under `reference` (no autodiff: pass the inner backend's model), in
/// batches of `batch_size` sequences.
pub fn reference_scores<B: KernelBackend>(
    reference: &CausalLm<B>,
    pairs: &[TokenizedPair],
    batch_size: usize,
    device: &B::Device,
) -> Vec<ReferenceScores> {
    score_sequences(reference, &completion_sequences(pairs), batch_size, device)
        .chunks(2)
        .map(|scores| ReferenceScores {
            chosen: scores[0].0,
            chosen_tokens: scores[0].1,
            rejected: scores[1].0,
            rejected_tokens: scores[1].1,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a reference cache file ({reason})")]
    Corrupt { path: PathBuf, reason: String },
}

/// Reference log-probs stored on disk, one file per (reference weights, tokenised pairs).
pub struct ReferenceCache {
    dir: PathBuf,
}

impl ReferenceCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file for `key` (see [`cache_key`]).
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The stored scores for `key`, if any and if they cover `expected` pairs.
    pub fn load(
        &self,
        key: &str,
        expected: usize,
    ) -> Result<Option<Vec<ReferenceScores>>, CacheError> {
        let path = self.path(key);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        let scores: Vec<ReferenceScores> =
            serde_json::from_str(&text).map_err(|e| CacheError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if scores.len() != expected {
            return Err(CacheError::Corrupt {
                path,
                reason: format!("{} entries for {expected} pairs", scores.len()),
            });
        }
        Ok(Some(scores))
    }

    /// Stores `scores` under `key`, atomically (a temporary file renamed into place).
    pub fn store(&self, key: &str, scores: &[ReferenceScores]) -> Result<PathBuf, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(key);
        let partial = self.dir.join(format!(".{key}.partial"));
        let text = serde_json::to_string(scores).map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&partial, text).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        Ok(path)
    }
}

/// The cache key of `pairs` scored by the model in `model_dir` (and, for LoRA reference runs,
/// nothing else: the reference is always base weights): SHA-256 over the model's `config.json`
/// and safetensors files and over every pair's token ids. The ids already reflect the data,
/// the chat template and every tokenisation setting.
pub fn cache_key(model_dir: &Path, pairs: &[TokenizedPair]) -> Result<String, CacheError> {
    let mut hasher = Sha256::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .map_err(|source| CacheError::Io {
            path: model_dir.to_path_buf(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "config.json" || name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    let mut buffer = vec![0u8; 1 << 20];
    for path in &files {
        hasher.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        let mut file = std::fs::File::open(path).map_err(|source| CacheError::Io {
            path: path.clone(),
            source,
        })?;
        loop {
            let read = file.read(&mut buffer).map_err(|source| CacheError::Io {
                path: path.clone(),
                source,
            })?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    for pair in pairs {
        for ids in [&pair.prompt_ids, &pair.chosen_ids, &pair.rejected_ids] {
            hasher.update((ids.len() as u64).to_le_bytes());
            for id in ids {
                hasher.update(id.to_le_bytes());
            }
        }
    }
    Ok(sha256_hex(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(prompt: &[u32]) -> TokenizedPair {
        TokenizedPair {
            prompt_ids: prompt.to_vec(),
            chosen_ids: vec![5, 6],
            rejected_ids: vec![7],
        }
    }

    #[test]
    fn the_key_changes_with_the_weights_and_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), [1u8, 2, 3]).unwrap();
        let first = cache_key(dir.path(), &[pair(&[1, 2])]).unwrap();
        assert_eq!(first, cache_key(dir.path(), &[pair(&[1, 2])]).unwrap());
        // Moving a token between prompt and completion changes the key.
        assert_ne!(first, cache_key(dir.path(), &[pair(&[1, 2, 5])]).unwrap());
        std::fs::write(dir.path().join("model.safetensors"), [1u8, 2, 4]).unwrap();
        assert_ne!(first, cache_key(dir.path(), &[pair(&[1, 2])]).unwrap());
    }

    #[test]
    fn stored_scores_load_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReferenceCache::new(dir.path().join("cache"));
        assert_eq!(cache.load("k", 1).unwrap(), None);
        let scores = vec![ReferenceScores {
            chosen: -12.345678901234567,
            chosen_tokens: 3,
            rejected: -0.1,
            rejected_tokens: 1,
        }];
        cache.store("k", &scores).unwrap();
        assert_eq!(cache.load("k", 1).unwrap(), Some(scores));
        assert!(matches!(
            cache.load("k", 2),
            Err(CacheError::Corrupt { .. })
        ));
    }
}
