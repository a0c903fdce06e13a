//! `temper export`: a checkpoint's weights as a directory to publish or load elsewhere,
//! without the training state (optimizer, trainer state, run configuration). A LoRA
//! checkpoint exports as its PEFT adapter, or merged into its base model's weights.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use temper_model::{SaveOptions, load_adapter, load_model, merge_adapters, save_model};

use crate::checkpoint::{CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE};
use crate::output::{self, OutputError, Overlap};

/// Every way an output can overlap what is read: each would write over it.
const ANY_OVERLAP: [Overlap; 3] = [Overlap::Same, Overlap::Contains, Overlap::Inside];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Checkpoint(String),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// What was exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exported {
    /// A full model directory.
    Model,
    /// A PEFT adapter directory.
    Adapter,
    /// The adapter merged into its base: a full model directory.
    Merged,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh hidden directory inside `output` to write the export into before it is moved into
/// place (see [`output::publish_files`]).
fn staging(output: &Path) -> Result<PathBuf, ExportError> {
    let staged = output.join(".export.partial");
    output::fresh_dir(&staged)?;
    Ok(staged)
}

/// The model a LoRA checkpoint's run started from, as its `training_config.json` records it.
fn recorded_base(checkpoint: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(checkpoint.join(CONFIG_FILE)).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["model"].as_str().map(PathBuf::from)
}

/// Exports `checkpoint` to `output`. `merge_lora` merges a LoRA checkpoint into its base
/// model (`base`, or the model its run recorded).
pub fn export<B: Backend>(
    checkpoint: &Path,
    output: &Path,
    merge_lora: bool,
    base: Option<&Path>,
    device: &B::Device,
) -> Result<Exported, ExportError> {
    if !checkpoint.is_dir() {
        return Err(ExportError::Checkpoint(format!(
            "{}: not a directory",
            checkpoint.display()
        )));
    }
    output::refuse_overlap(checkpoint, output, "checkpoint", &ANY_OVERLAP)?;
    let is_adapter = checkpoint.join("adapter_config.json").is_file();
    if merge_lora && !is_adapter {
        return Err(ExportError::Checkpoint(format!(
            "{}: not a LoRA checkpoint (no adapter_config.json), so there is nothing to merge",
            checkpoint.display()
        )));
    }
    if merge_lora {
        let base = base
            .map(Path::to_path_buf)
            .or_else(|| recorded_base(checkpoint))
            .ok_or_else(|| {
                ExportError::Checkpoint(format!(
                    "{}: no base model recorded in {CONFIG_FILE}; pass the base model",
                    checkpoint.display()
                ))
            })?;
        output::refuse_overlap(&base, output, "base model", &ANY_OVERLAP)?;
        let failed = |e: &dyn std::fmt::Display| ExportError::Checkpoint(e.to_string());
        let (_, model) = load_model::<B>(&base, device).map_err(|e| failed(&e))?;
        let (_, model) = load_adapter(model, checkpoint, device).map_err(|e| failed(&e))?;
        let staged = staging(output)?;
        save_model(
            &merge_adapters(model),
            &base,
            &staged,
            &SaveOptions::default(),
        )
        .map_err(|e| failed(&e))?;
        output::publish_files(&staged, output)?;
        return Ok(Exported::Merged);
    }
    let staged = staging(output)?;
    for entry in std::fs::read_dir(checkpoint).map_err(io(checkpoint))? {
        let path = entry.map_err(io(checkpoint))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let model_file = name.ends_with(".safetensors")
            || name.ends_with(".json")
            || temper_model::save::COPIED_FILES.contains(&name);
        let training_state = [OPTIMIZER_FILE, STATE_FILE, CONFIG_FILE].contains(&name);
        if path.is_file() && model_file && !training_state {
            std::fs::copy(&path, staged.join(name)).map_err(io(&path))?;
        }
    }
    output::publish_files(&staged, output)?;
    Ok(if is_adapter {
        Exported::Adapter
    } else {
        Exported::Model
    })
}
