//! Run checkpoints. `OUTPUT/checkpoint-N/` holds the weights (an HF model directory, or a PEFT
//! adapter directory with the tokenizer files for LoRA runs), the optimizer's state
//! (`optimizer.safetensors`), `trainer_state.json` (the step, and the steps logged since the
//! last metrics row) and `training_config.json` (the run's configuration). The schedule, the
//! data order and the dropout generator are functions of the step and the seed, so nothing
//! else is needed to continue exactly.
//!
//! A checkpoint is written into a hidden `.checkpoint-N.partial` directory, synced, and renamed
//! into place once complete; rotation renames a checkpoint away before deleting it. A process
//! killed at any moment leaves the previous checkpoints loadable and never a half-written or
//! half-deleted `checkpoint-N` (see [`crate::output`]).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temper_kernels::AutodiffKernelBackend;
use temper_model::{LoraConfig, SaveOptions, save_adapter, save_model};

use crate::optimizer::AdamW;
use crate::output::{OutputError, fresh_dir, publish_dir, remove_dir};
use crate::trainer::{StepLog, Trainer};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
pub const CONFIG_FILE: &str = "training_config.json";
const PREFIX: &str = "checkpoint-";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Save(#[from] temper_model::SaveError),
    #[error(transparent)]
    Optimizer(#[from] crate::optimizer::OptimizerStateError),
    #[error("{path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error(transparent)]
    Output(#[from] OutputError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a run saves of its model.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    /// Every weight, as an HF model directory; `base_dir` is where the run's model came from
    /// (its config, tokenizer and generation files are copied).
    Full { base_dir: &'a Path },
    /// The LoRA adapters only, as a PEFT directory, with the tokenizer files of `base_dir`.
    Adapter {
        base_dir: &'a Path,
        lora: &'a LoraConfig,
    },
}

impl Weights<'_> {
    /// Writes the model's weights to `dir`.
    pub fn save<B: Backend>(
        &self,
        model: &temper_model::CausalLm<B>,
        dir: &Path,
    ) -> Result<(), CheckpointError> {
        match *self {
            Weights::Full { base_dir } => {
                save_model(model, base_dir, dir, &SaveOptions::default())?
            }
            Weights::Adapter { base_dir, lora } => {
                save_adapter(model, lora, &base_model_class(base_dir), dir)?;
                record_base_model(dir, base_dir)?;
                for file in temper_model::save::COPIED_FILES {
                    let from = base_dir.join(file);
                    if from.is_file() {
                        std::fs::copy(&from, dir.join(file)).map_err(io(&from))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes the base model's absolute path as the adapter's `base_model_name_or_path`, so that
/// PEFT's `AutoPeftModel` classes find the base.
fn record_base_model(adapter_dir: &Path, base_dir: &Path) -> Result<(), CheckpointError> {
    let path = adapter_dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let Ok(serde_json::Value::Object(mut config)) = serde_json::from_str(&text) else {
        return Ok(());
    };
    let base = std::fs::canonicalize(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    config.insert(
        "base_model_name_or_path".into(),
        serde_json::Value::String(base.to_string_lossy().into_owned()),
    );
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(io(&path))
}

/// The `architectures[0]` of the model in `dir` (PEFT records it in the adapter config).
pub fn base_model_class(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|config| config["architectures"][0].as_str().map(String::from))
        .unwrap_or_default()
}

/// The run's position: what `trainer_state.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: usize,
    /// Steps done since the last metrics row (averaged into the next one).
    #[serde(default)]
    pub unlogged: Vec<StepLog>,
    /// What the run started from (absent in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RunOrigin>,
}

/// What a run started from: a run may resume a checkpoint only from the same trainer and base
/// model, or its steps would continue someone else's optimizer state on other weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrigin {
    /// The trainer's command (`sft`, `dpo`, ...).
    pub trainer: String,
    /// The base model's directory, absolute.
    pub model: PathBuf,
    /// SHA-256 of the base model's `config.json` and of its tensors' names, types and shapes
    /// (the weights themselves are not read: a moved copy of a model is the same model).
    pub model_fingerprint: String,
}

impl RunOrigin {
    pub fn new(trainer: &str, model_dir: &Path) -> Self {
        Self {
            trainer: trainer.to_string(),
            model: std::fs::canonicalize(model_dir).unwrap_or_else(|_| model_dir.to_path_buf()),
            model_fingerprint: model_fingerprint(model_dir),
        }
    }

    /// Why a run from `self` may not resume a checkpoint that a run from `saved` wrote.
    pub fn mismatch(&self, saved: &RunOrigin) -> Option<String> {
        if self.trainer != saved.trainer {
            return Some(format!(
                "it was written by `temper {}`, not `temper {}`",
                saved.trainer, self.trainer
            ));
        }
        (self.model_fingerprint != saved.model_fingerprint).then(|| {
            format!(
                "it was trained from the model {}, and {} is a different model",
                saved.model.display(),
                self.model.display()
            )
        })
    }
}

/// See [`RunOrigin::model_fingerprint`]. What cannot be read hashes as absent: loading the
/// model reports it.
fn model_fingerprint(model_dir: &Path) -> String {
    let mut hasher = Sha256::new();
    if let Ok(config) = std::fs::read(model_dir.join("config.json")) {
        hasher.update((config.len() as u64).to_le_bytes());
        hasher.update(&config);
    }
    if let Ok(files) = temper_model::WeightFiles::open(model_dir) {
        for (name, tensor) in files.tensors() {
            hasher.update(format!("{name}:{:?}:{:?};", tensor.dtype, tensor.shape).as_bytes());
        }
    }
    sha256_hex(hasher)
}

/// The digest as lowercase hex, as `sha256sum` prints it.
pub(crate) fn sha256_hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The position and origin a checkpoint recorded, without its optimizer state.
pub fn saved_state(checkpoint_dir: &Path) -> Result<TrainerState, CheckpointError> {
    let path = checkpoint_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::State {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// Writes `output_dir/checkpoint-N` for the trainer's current step.
pub fn save_checkpoint<B: AutodiffKernelBackend>(
    trainer: &impl Trainer<B>,
    weights: Weights<'_>,
    state: &TrainerState,
    config: &serde_json::Value,
    output_dir: &Path,
) -> Result<PathBuf, CheckpointError> {
    let step = trainer.steps_done();
    let done = output_dir.join(format!("{PREFIX}{step}"));
    let partial = output_dir.join(format!(".{PREFIX}{step}.partial"));
    fresh_dir(&partial)?;
    weights.save(trainer.model(), &partial)?;
    trainer.save_state(&partial)?;
    for (file, value) in [
        (STATE_FILE, serde_json::to_value(state).unwrap_or_default()),
        (CONFIG_FILE, config.clone()),
    ] {
        let text = serde_json::to_string_pretty(&value).unwrap_or_default() + "\n";
        std::fs::write(partial.join(file), text).map_err(io(&partial))?;
    }
    publish_dir(&partial, &done)?;
    Ok(done)
}

/// The optimizer state and run position saved in `checkpoint_dir` (its weights load with
/// `temper_model::load_model` or `load_adapter`, as any HF or PEFT directory).
pub fn load_training_state<B: Backend>(
    checkpoint_dir: &Path,
    device: &B::Device,
) -> Result<(AdamW<B>, TrainerState), CheckpointError> {
    let optimizer = AdamW::load(&checkpoint_dir.join(OPTIMIZER_FILE), device)?;
    Ok((optimizer, saved_state(checkpoint_dir)?))
}

/// The complete checkpoints in `output_dir`, by step, oldest first.
pub fn checkpoints(output_dir: &Path) -> Result<Vec<(usize, PathBuf)>, CheckpointError> {
    let entries = match std::fs::read_dir(output_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: output_dir.to_path_buf(),
                source,
            });
        }
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let step = name.strip_prefix(PREFIX)?.parse().ok()?;
            entry.path().is_dir().then(|| (step, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Deletes the oldest checkpoints beyond `limit` (transformers' `save_total_limit`), never the
/// one at `keep` (the one being resumed from or just written).
pub fn rotate_checkpoints(
    output_dir: &Path,
    limit: usize,
    keep: &Path,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let all = checkpoints(output_dir)?;
    let excess = all.len().saturating_sub(limit);
    let mut deleted = Vec::new();
    for (_, path) in all
        .into_iter()
        .filter(|(_, path)| path != keep)
        .take(excess)
    {
        remove_dir(&path)?;
        deleted.push(path);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_and_the_protected_one() {
        let dir = tempfile::tempdir().unwrap();
        for step in [10, 20, 30, 40] {
            std::fs::create_dir(dir.path().join(format!("checkpoint-{step}"))).unwrap();
        }
        std::fs::create_dir(dir.path().join(".checkpoint-50.partial")).unwrap();
        let keep = dir.path().join("checkpoint-10");
        let deleted = rotate_checkpoints(dir.path(), 2, &keep).unwrap();
        assert_eq!(
            deleted,
            vec![
                dir.path().join("checkpoint-20"),
                dir.path().join("checkpoint-30")
            ]
        );
        let left: Vec<usize> = checkpoints(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(left, vec![10, 40]);
    }
}
