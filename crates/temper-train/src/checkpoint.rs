//! Run checkpoints: `OUTPUT/checkpoint-N/` holds the model as an HF directory, the optimizer's
//! state (`optimizer.safetensors`) and `trainer_state.json` (`global_step`). A checkpoint is
//! written into a hidden `.checkpoint-N.partial` directory and renamed into place once
//! complete, so a process killed at any moment leaves the previous checkpoints loadable and
//! never a half-written `checkpoint-N`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use temper_model::{SaveOptions, save_model};

use crate::optimizer::AdamW;
use crate::trainer::Trainer;

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `output_dir/checkpoint-N` for the trainer's current step. `base_dir` is the model
/// directory the run started from (its config and tokenizer files are copied).
pub fn save_checkpoint<B: AutodiffBackend>(
    trainer: &Trainer<B>,
    base_dir: &Path,
    output_dir: &Path,
) -> Result<PathBuf, CheckpointError> {
    let step = trainer.steps_done();
    let done = output_dir.join(format!("checkpoint-{step}"));
    let partial = output_dir.join(format!(".checkpoint-{step}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    save_model(trainer.model(), base_dir, &partial, &SaveOptions::default())?;
    trainer.optimizer().save(&partial.join(OPTIMIZER_FILE))?;
    let state = json!({"global_step": step}).to_string();
    std::fs::write(partial.join(STATE_FILE), state).map_err(io(&partial))?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(io(&done))?;
    }
    std::fs::rename(&partial, &done).map_err(io(&done))?;
    Ok(done)
}

/// The optimizer state and step count saved in `checkpoint_dir` (its model is loaded with
/// `temper_model::load_model`, as any HF directory).
pub fn load_training_state<B: burn::tensor::backend::Backend>(
    checkpoint_dir: &Path,
    device: &B::Device,
) -> Result<(AdamW<B>, usize), CheckpointError> {
    let optimizer = AdamW::load(&checkpoint_dir.join(OPTIMIZER_FILE), device)?;
    let path = checkpoint_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let step = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|state| state["global_step"].as_u64())
        .ok_or_else(|| CheckpointError::State {
            path: path.clone(),
            reason: "no global_step".into(),
        })?;
    Ok((optimizer, step as usize))
}
