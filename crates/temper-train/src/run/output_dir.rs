//! What a run does to its output directory: refuse to mix with an earlier run, move an
//! abandoned continuation aside on resume, record the configuration, and publish the final
//! model whole (see [`crate::output`] for the primitives).

use std::path::PathBuf;

use burn::module::AutodiffModule;
use temper_kernels::AutodiffKernelBackend;
use temper_model::{CausalLm, merge_adapters};

use super::{RunError, io};
use crate::checkpoint::{CONFIG_FILE, RunOrigin, Weights, checkpoints, saved_state};
use crate::config::RunSettings;
use crate::metrics::METRICS_FILE;
use crate::output::{self, Overlap};

/// Refuses to start a new run over an earlier run's checkpoints or metrics, unless told to
/// overwrite it: then the earlier run's checkpoints and metrics are deleted first, so that
/// checkpoint rotation and resuming never mix the two runs.
pub(super) fn prepare_output_dir(settings: &RunSettings) -> Result<(), RunError> {
    if settings.resume_from_checkpoint.is_some() {
        return Ok(());
    }
    let earlier = checkpoints(&settings.output_dir)?;
    let metrics = settings.output_dir.join(METRICS_FILE);
    if settings.config.overwrite_output_dir == Some(true) {
        for (_, path) in &earlier {
            // Overwriting must not delete the model this run starts from.
            output::refuse_overlap(
                &settings.model,
                path,
                "model",
                &[Overlap::Same, Overlap::Contains],
            )?;
        }
        for (_, path) in &earlier {
            output::remove_dir(path)?;
        }
        if metrics.exists() {
            std::fs::remove_file(&metrics).map_err(io(&metrics))?;
        }
        return Ok(());
    }
    if let Some((_, path)) = earlier.last() {
        return Err(RunError::Data(format!(
            "{} holds an earlier run ({}); resume it with resume_from_checkpoint, pick another output_dir, or set overwrite_output_dir",
            settings.output_dir.display(),
            path.display()
        )));
    }
    if metrics.exists() {
        return Err(RunError::Data(format!(
            "{} holds an earlier run's {METRICS_FILE}; pick another output_dir or set overwrite_output_dir",
            settings.output_dir.display()
        )));
    }
    Ok(())
}

/// Refuses to resume a checkpoint that another trainer or another base model wrote, and moves
/// the checkpoints after the resumed one (an abandoned continuation) into
/// `OUTPUT/abandoned-<unix seconds>/`, so that the resumed run's checkpoints never sit beside
/// them and rotation never mixes the two. Returns where they went, if anywhere.
pub(super) fn prepare_resume(settings: &RunSettings) -> Result<Option<PathBuf>, RunError> {
    let Some(checkpoint) = &settings.resume_from_checkpoint else {
        return Ok(None);
    };
    let saved = saved_state(checkpoint)?;
    let here = RunOrigin::new(settings.kind.command(), &settings.model);
    if let Some(why) = saved.origin.as_ref().and_then(|saved| here.mismatch(saved)) {
        return Err(RunError::Data(format!(
            "cannot resume from {}: {why}",
            checkpoint.display()
        )));
    }
    let later: Vec<PathBuf> = checkpoints(&settings.output_dir)?
        .into_iter()
        .filter(|(step, path)| {
            *step > saved.global_step && output::overlap(path, checkpoint) != Some(Overlap::Same)
        })
        .map(|(_, path)| path)
        .collect();
    if later.is_empty() {
        return Ok(None);
    }
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = settings.output_dir.join(format!("abandoned-{seconds}"));
    std::fs::create_dir_all(&aside).map_err(io(&aside))?;
    for path in later {
        let to = aside.join(path.file_name().unwrap_or_default());
        std::fs::rename(&path, &to).map_err(io(&path))?;
    }
    Ok(Some(aside))
}

/// The run's final model in `OUTPUT/`: full weights, a PEFT adapter, or (LoRA with `merge`)
/// the base with its adapters merged. Written into `OUTPUT/.final-model.partial` and moved into
/// place file by file once complete, so a killed save never leaves a file cut short.
pub(super) fn save_final<B: AutodiffKernelBackend>(
    model: &CausalLm<B>,
    settings: &RunSettings,
) -> Result<PathBuf, RunError> {
    let dir = &settings.output_dir;
    let staged = dir.join(".final-model.partial");
    output::fresh_dir(&staged)?;
    match &settings.peft {
        Some(peft) if peft.merge => {
            let merged = merge_adapters(model.clone().valid());
            Weights::Full {
                base_dir: &settings.model,
            }
            .save(&merged, &staged)?;
        }
        Some(peft) => Weights::Adapter {
            base_dir: &settings.model,
            lora: &peft.lora,
        }
        .save(model, &staged)?,
        None => Weights::Full {
            base_dir: &settings.model,
        }
        .save(model, &staged)?,
    }
    output::publish_files(&staged, dir)?;
    Ok(dir.clone())
}

/// Writes the run's configuration as `OUTPUT/training_config.json` and returns it (every
/// checkpoint saves a copy). The model's path is made absolute, so that `temper export` finds a
/// LoRA run's base from anywhere.
pub(super) fn write_run_config(settings: &RunSettings) -> Result<serde_json::Value, RunError> {
    let mut recorded = settings.config.clone();
    recorded.model = std::fs::canonicalize(&settings.model)
        .ok()
        .or(recorded.model);
    let config = serde_json::to_value(&recorded).unwrap_or_default();
    let path = settings.output_dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(config)
}
