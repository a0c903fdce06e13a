//! A Hugging Face model directory's weights as a set of named tensors: `model.safetensors`, or the
//! shards listed by `model.safetensors.index.json`, memory-mapped (nothing is read into memory
//! until a tensor is used, so loading never holds the file and the model twice).
//!
//! [`expected_tensors`] lists the HF names and shapes a config implies; [`WeightFiles::verify`]
//! reports every missing, unexpected and mis-shaped tensor by name before any weight is loaded.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::config::{HeadKind, ModelConfig, NormPlacement, QkNorm};
use crate::hf_names as names;

/// Why a model directory's weights cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{dir}: no model.safetensors or model.safetensors.index.json")]
    NotFound { dir: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("{dir}: the weights do not match config.json: {details}")]
    Mismatch { dir: PathBuf, details: String },
}

/// A stored tensor's element type and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// The file (shard) that holds it.
    pub file: usize,
    /// Its bytes within that file.
    pub bytes: std::ops::Range<usize>,
}

/// Memory-mapped safetensors files and where each tensor lives.
pub struct WeightFiles {
    dir: PathBuf,
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, StoredTensor>,
}

/// Tensors older models' files carry that the model recomputes.
const IGNORED_SUFFIXES: [&str; 1] = ["rotary_emb.inv_freq"];

impl WeightFiles {
    /// Opens `dir/model.safetensors`, or every shard named by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self, WeightsError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let shard_names = if index_path.is_file() {
            shards_of(&index_path)?
        } else if single.is_file() {
            vec!["model.safetensors".to_string()]
        } else {
            return Err(WeightsError::NotFound {
                dir: dir.to_path_buf(),
            });
        };
        Self::open_shards(dir, &shard_names)
    }

    fn open_shards(dir: &Path, shard_names: &[String]) -> Result<Self, WeightsError> {
        let mut files = Vec::with_capacity(shard_names.len());
        let mut tensors = BTreeMap::new();
        for (file_index, name) in shard_names.iter().enumerate() {
            let path = dir.join(name);
            let map = map_file(&path)?;
            let parsed = SafeTensors::deserialize(&map).map_err(|e| WeightsError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for (tensor_name, view) in parsed.tensors() {
                let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
                let stored = StoredTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    file: file_index,
                    bytes: start..start + view.data().len(),
                };
                if tensors.insert(tensor_name.clone(), stored).is_some() {
                    return Err(WeightsError::Index {
                        path: path.clone(),
                        reason: format!("tensor `{tensor_name}` is stored in two shards"),
                    });
                }
            }
            files.push((path, map));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            tensors,
        })
    }

    /// Opens one safetensors file (e.g. a PEFT `adapter_model.safetensors`).
    pub fn open_file(path: &Path) -> Result<Self, WeightsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name =
            path.file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| WeightsError::NotFound {
                    dir: path.to_path_buf(),
                })?;
        Self::open_shards(dir, &[name.to_string()])
    }

    /// One tensor's values as f32 (converted from F32, BF16 or F16), with its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let problem = |details: String| WeightsError::Mismatch {
            dir: self.dir.clone(),
            details,
        };
        let stored = self
            .tensors
            .get(name)
            .ok_or_else(|| problem(format!("missing {name}")))?;
        let bytes = self
            .bytes(name)
            .ok_or_else(|| problem(format!("{name} is unreadable")))?;
        let values = to_f32(stored.dtype, bytes).ok_or_else(|| {
            problem(format!(
                "{name} is stored as {:?}; supported: F32, BF16, F16",
                stored.dtype
            ))
        })?;
        Ok((values, stored.shape.clone()))
    }

    /// The directory the weight files were opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every stored tensor, by name.
    pub fn tensors(&self) -> &BTreeMap<String, StoredTensor> {
        &self.tensors
    }

    /// The raw little-endian bytes of one tensor, borrowed from the memory map.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let stored = self.tensors.get(name)?;
        let (_, map) = &self.files[stored.file];
        map.get(stored.bytes.clone())
    }

    /// Checks the stored tensors against what `config` needs: every missing, unexpected and
    /// mis-shaped tensor is named in one error.
    pub fn verify(&self, config: &ModelConfig) -> Result<(), WeightsError> {
        let expected: HashMap<String, Vec<usize>> = expected_tensors(config).into_iter().collect();
        let mut missing: Vec<&str> = expected
            .keys()
            .filter(|name| !self.tensors.contains_key(*name))
            .map(String::as_str)
            .collect();
        missing.sort_unstable();
        let unexpected: Vec<&str> = self
            .tensors
            .keys()
            .filter(|name| !expected.contains_key(*name))
            .filter(|name| !IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)))
            // A tied head may still be stored; a sequence-classification model has none
            // (transformers ignores one left in a model's files).
            .filter(|name| {
                let headless = config.tie_word_embeddings || config.head != HeadKind::LanguageModel;
                !(headless && name.strip_suffix(".weight") == Some(names::LM_HEAD))
            })
            .map(String::as_str)
            .collect();
        let misshaped: Vec<String> = self
            .tensors
            .iter()
            .filter_map(|(name, stored)| {
                let want = expected.get(name)?;
                (want != &stored.shape)
                    .then(|| format!("{name} is {:?}, expected {want:?}", stored.shape))
            })
            .collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", missing.join(", ")));
        }
        if !unexpected.is_empty() {
            problems.push(format!("unexpected {}", unexpected.join(", ")));
        }
        if !misshaped.is_empty() {
            problems.push(format!("wrong shape: {}", misshaped.join("; ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Mismatch {
                dir: self.dir.clone(),
                details: problems.join("; "),
            })
        }
    }
}

/// The HF tensor names and shapes (`[out, in]` for linear weights) a config implies: the LM
/// head `lm_head.weight` unless tied, or a sequence-classification model's `score.weight`.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let q = config.num_heads * config.head_dim;
    let kv = config.num_kv_heads * config.head_dim;
    let i = config.intermediate_size;
    let mut out = vec![
        (names::EMBED_TOKENS.to_string(), vec![config.vocab_size, h]),
        (names::FINAL_NORM.to_string(), vec![h]),
    ];
    match config.head {
        HeadKind::LanguageModel if !config.tie_word_embeddings => {
            out.push((
                format!("{}.weight", names::LM_HEAD),
                vec![config.vocab_size, h],
            ));
        }
        HeadKind::LanguageModel => {}
        HeadKind::SequenceClassification { num_labels } => {
            out.push((format!("{}.weight", names::SCORE), vec![num_labels, h]));
        }
    }
    let [q_proj, k_proj, v_proj, o_proj] = names::ATTENTION;
    let [gate_proj, up_proj, down_proj] = names::MLP;
    let post_norm = config.norm_placement == NormPlacement::Post;
    for layer in 0..config.num_layers {
        let mut add =
            |name: &str, shape: Vec<usize>| out.push((names::in_layer(layer, name), shape));
        for (proj, rows) in [(q_proj, q), (k_proj, kv), (v_proj, kv)] {
            add(&format!("{proj}.weight"), vec![rows, h]);
            if config.attention_bias {
                add(&format!("{proj}.bias"), vec![rows]);
            }
        }
        add(&format!("{o_proj}.weight"), vec![h, q]);
        if config.output_bias {
            add(&format!("{o_proj}.bias"), vec![h]);
        }
        match config.qk_norm {
            QkNorm::None => {}
            QkNorm::PerHead => {
                add(names::Q_NORM, vec![config.head_dim]);
                add(names::K_NORM, vec![config.head_dim]);
            }
            QkNorm::AllHeads => {
                add(names::Q_NORM, vec![q]);
                add(names::K_NORM, vec![kv]);
            }
        }
        for (proj, shape) in [
            (gate_proj, vec![i, h]),
            (up_proj, vec![i, h]),
            (down_proj, vec![h, i]),
        ] {
            let rows = shape[0];
            add(&format!("{proj}.weight"), shape);
            if config.mlp_bias {
                add(&format!("{proj}.bias"), vec![rows]);
            }
        }
        for norm in names::layer_norms(post_norm) {
            add(norm, vec![h]);
        }
    }
    out
}

/// Little-endian F32, BF16 or F16 bytes as f32 values.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::BF16 => Some(
            pairs()
                .map(|bits| half::bf16::from_bits(bits).to_f32())
                .collect(),
        ),
        Dtype::F16 => Some(
            pairs()
                .map(|bits| half::f16::from_bits(bits).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

fn map_file(path: &Path) -> Result<Mmap, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // Opening a directory succeeds on Unix, and mapping it then fails as "No such device".
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(WeightsError::Corrupt {
            path: path.to_path_buf(),
            reason: "a directory, not a file".into(),
        });
    }
    // SAFETY: the map is read-only and lives as long as the `WeightFiles`; a weight file
    // changed by another process while mapped is outside what any loader can guard against.
    unsafe { Mmap::map(&file) }.map_err(io)
}

/// The distinct shard file names of an index, in first-seen order.
fn shards_of(index_path: &Path) -> Result<Vec<String>, WeightsError> {
    let text = std::fs::read_to_string(index_path).map_err(|source| WeightsError::Io {
        path: index_path.to_path_buf(),
        source,
    })?;
    let bad = |reason: &str| WeightsError::Index {
        path: index_path.to_path_buf(),
        reason: reason.to_string(),
    };
    let index: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object"))?;
    let mut shards: Vec<String> = Vec::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("a `weight_map` value is not a file name"))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(bad("shard names must be plain file names"));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    Ok(shards)
}
