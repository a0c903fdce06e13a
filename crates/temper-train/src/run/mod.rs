//! A whole training run from [`RunSettings`]: data loaded and tokenised with the model's own
//! tokenizer, the model (with fresh LoRA adapters, or resumed from a checkpoint), the DPO
//! reference log-probs (from the cache or scored once), then the step loop with metrics rows,
//! evaluations, checkpoints and their rotation, and the final model in `OUTPUT/`.
//!
//! Order at the end of step `k`: the metrics row (every `logging_steps`), the evaluation
//! (every `eval_steps`), the checkpoint (every `save_steps`), as transformers' Trainer does.

mod data;
mod models;
mod output_dir;
mod steps;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use temper_data::ChatTokenizer;
use temper_kernels::AutodiffKernelBackend;
use temper_model::ModelConfig;

use crate::checkpoint::CheckpointError;
use crate::config::{Method, RunSettings};
use crate::grpo::{GrpoSettings, GrpoTrainer};
use crate::metrics::METRICS_FILE;
use crate::objective::Objective;
use crate::offline::OfflineTrainer;
use crate::output::{self, OutputError, Overlap};
use crate::ppo::{PpoSettings, PpoTrainer};
use crate::progress::Display;
use crate::reference::CacheError;
use crate::rl::{RlInputs, RlTrainer};
use crate::rollout::Prompts;
use crate::trainer::{StepLog, TrainError, Trainer};
use data::{LoadedData, load_files, rl_data};
use models::{
    initial_model, model_error, model_stops, objective_references, rl_reference, value_model,
};
use output_dir::{prepare_output_dir, prepare_resume};
use steps::drive;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Records that cannot be used, one line each (file, line or record, field).
    #[error("{}", .0.join("\n"))]
    InvalidRecords(Vec<String>),
    /// Data that cannot be used (wrong kind, format not told, nothing left to train).
    #[error("{0}")]
    Data(String),
    /// A data file that cannot be read.
    #[error("{0}")]
    DataFile(String),
    #[error("{0}")]
    Model(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{error}; the last good state is saved in {}; the batch: {}", saved.display(), origins.join(", "))]
    Stopped {
        error: TrainError,
        saved: PathBuf,
        /// `file: record N` of each example in the failed batch.
        origins: Vec<String>,
    },
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl RunError {
    /// Whether the run failed on its input (data, values that make training diverge) rather
    /// than on files, models or devices: exit code 1 rather than 2 for the command.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            RunError::InvalidRecords(_)
                | RunError::Data(_)
                | RunError::Stopped { .. }
                | RunError::Train(_)
        )
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the reference log-probs came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceOrigin {
    /// Read from this cache file.
    Cached(PathBuf),
    /// Scored before training and stored in this cache file.
    Computed(PathBuf),
    /// Scored every step by a reference model kept in memory.
    PerStep,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub steps: usize,
    /// The final model (HF directory or PEFT adapter); `None` for `max_steps` 0.
    pub final_model: Option<PathBuf>,
    pub metrics_file: PathBuf,
    /// The last training metrics row.
    pub last_train_row: Option<Map<String, Value>>,
    /// The last evaluation (metric names without the `eval_` prefix).
    pub eval: Option<Vec<(String, f64)>>,
    pub train_examples: usize,
    pub eval_examples: usize,
    /// Records skipped as invalid (`skip_invalid`), one line each.
    pub skipped: Vec<String>,
    pub reference: Option<ReferenceOrigin>,
    /// Where the checkpoints after the resumed one were moved, if there were any.
    pub abandoned: Option<PathBuf>,
}

/// Runs the training `settings` describe on `device`.
pub fn run<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    display: Display,
    device: &B::Device,
) -> Result<RunReport, RunError> {
    let tokenizer = ChatTokenizer::from_dir(&settings.model, None)
        .map_err(|e| model_error(&settings.model, e))?;
    // Before any data is read: a tokenizer larger than the embedding table would otherwise
    // stop the run inside the backend at the first id past it.
    let model_config = std::fs::read_to_string(settings.model.join("config.json"))
        .ok()
        .and_then(|text| ModelConfig::from_json(&text).ok());
    if let Some(config) = model_config {
        tokenizer
            .check_fits(config.vocab_size)
            .map_err(|e| model_error(&settings.model, e))?;
    }
    let pad_id = tokenizer
        .pad_id()
        .or_else(|| tokenizer.eos_id().ok())
        .unwrap_or(0);
    let train = load_files(&settings.data, settings, &tokenizer)?;
    let eval = if settings.eval_data.is_empty() {
        None
    } else {
        Some(load_files(&settings.eval_data, settings, &tokenizer)?)
    };
    output::refuse_overlap(
        &settings.model,
        &settings.output_dir,
        "model",
        &[Overlap::Same],
    )?;
    // Held until the run returns; the OS releases it if the process is killed.
    let _lock = output::lock(&settings.output_dir)?;
    let abandoned = prepare_resume(settings)?;
    prepare_output_dir(settings)?;
    let mut report = RunReport {
        abandoned,
        steps: 0,
        final_model: None,
        metrics_file: settings.output_dir.join(METRICS_FILE),
        last_train_row: None,
        eval: None,
        train_examples: train.examples.len(),
        eval_examples: eval.as_ref().map_or(0, |e| e.examples.len()),
        skipped: train
            .skipped
            .iter()
            .chain(eval.iter().flat_map(|e| &e.skipped))
            .cloned()
            .collect(),
        reference: None,
    };
    let launch: Launch<'_, B> = Launch {
        settings,
        pad_id,
        display,
        device,
        train,
        eval,
    };
    match &settings.method {
        Method::Objective(objective) => run_objective(launch, objective, &mut report)?,
        Method::Grpo(grpo) => run_grpo(launch, grpo, tokenizer, &mut report)?,
        Method::Ppo(ppo) => run_ppo(launch, ppo, tokenizer, &mut report)?,
    }
    Ok(report)
}

/// What wiring any trainer needs: the run's settings, its padding id, display and device, and
/// its data.
struct Launch<'a, B: AutodiffKernelBackend> {
    settings: &'a RunSettings,
    pad_id: u32,
    display: Display,
    device: &'a B::Device,
    train: LoadedData,
    eval: Option<LoadedData>,
}

/// SFT, the preference objectives and reward models.
fn run_objective<B: AutodiffKernelBackend>(
    launch: Launch<'_, B>,
    objective: &Objective,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let Launch {
        settings,
        pad_id,
        display,
        device,
        train,
        eval,
    } = launch;
    let references =
        objective_references::<B>(objective, settings, &train, eval.as_ref(), display, device)?;
    report.reference = references.origin;
    let model = initial_model::<B>(settings, pad_id, device)?;
    let mut trainer = OfflineTrainer::new(
        model,
        objective.clone(),
        settings.args.clone(),
        train.examples,
        references.train,
        pad_id,
        device.clone(),
    )?;
    let unlogged = resume(&mut trainer, settings)?;
    let evaluate = |trainer: &OfflineTrainer<B>| match &eval {
        Some(eval) => trainer
            .evaluate(
                &eval.examples,
                &references.eval,
                settings.per_device_eval_batch_size,
            )
            .map(Some),
        None => Ok(None),
    };
    drive(
        &mut trainer,
        settings,
        display,
        &train.origins,
        unlogged,
        evaluate,
        report,
    )
}

/// GRPO.
fn run_grpo<B: AutodiffKernelBackend>(
    launch: Launch<'_, B>,
    grpo: &GrpoSettings,
    tokenizer: ChatTokenizer,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let (settings, pad_id, device) = (launch.settings, launch.pad_id, launch.device);
    run_rl(launch, tokenizer, grpo.beta != 0.0, report, |inputs| {
        let model = initial_model::<B>(settings, pad_id, device)?;
        let args = settings.args.clone();
        Ok(GrpoTrainer::new(
            model,
            grpo.clone(),
            args,
            inputs,
            device.clone(),
        )?)
    })
}

/// PPO: the policy (LoRA or full, resumed or not) and its value model.
fn run_ppo<B: AutodiffKernelBackend>(
    launch: Launch<'_, B>,
    ppo: &PpoSettings,
    tokenizer: ChatTokenizer,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let (settings, pad_id, device) = (launch.settings, launch.pad_id, launch.device);
    run_rl(launch, tokenizer, true, report, |inputs| {
        let (value_model, value_dir) = value_model::<B>(settings, pad_id, device)?;
        let model = initial_model::<B>(settings, pad_id, device)?;
        let args = settings.args.clone();
        let trainer = PpoTrainer::new(
            model,
            value_model,
            ppo.clone(),
            args,
            inputs,
            device.clone(),
        )?;
        Ok(trainer.with_value_model_source(&value_dir))
    })
}

/// An RL run: its prompts, reward sources and stops, the reference model when `reference`
/// (loaded once the data is known to be good), the trainer `build` makes of them, and the step
/// loop.
fn run_rl<B: AutodiffKernelBackend, T: RlTrainer<B>>(
    launch: Launch<'_, B>,
    tokenizer: ChatTokenizer,
    reference: bool,
    report: &mut RunReport,
    build: impl FnOnce(RlInputs<B::InnerBackend>) -> Result<T, RunError>,
) -> Result<(), RunError> {
    let (mut inputs, rows) = rl_setup(&launch, tokenizer, report)?;
    if reference {
        inputs.reference = Some(rl_reference::<B::InnerBackend>(
            launch.settings,
            launch.device,
        )?);
    }
    let mut trainer = build(inputs)?;
    drive_rl(&mut trainer, &launch, &rows, report)
}

/// What the run loop knows of an RL run's rows: where each training prompt came from, and the
/// held-out prompts.
struct RlRows {
    origins: Vec<String>,
    held_out: Option<Prompts>,
}

/// An RL trainer's inputs without the reference model (the caller loads it, after the data is
/// known to be good): the prompts with their reward sources, where the model stops its
/// completions, and the tokenizer.
fn rl_setup<B: AutodiffKernelBackend>(
    launch: &Launch<'_, B>,
    tokenizer: ChatTokenizer,
    report: &mut RunReport,
) -> Result<(RlInputs<B::InnerBackend>, RlRows), RunError> {
    let Launch {
        settings,
        pad_id,
        device,
        ..
    } = *launch;
    let stops = model_stops(&settings.model, &tokenizer, pad_id)?;
    let data = rl_data::<B::InnerBackend>(
        settings,
        &launch.train,
        launch.eval.as_ref(),
        pad_id,
        device,
        report,
    )?;
    let inputs = RlInputs {
        prompts: data.prompts,
        rewards: data.rewards,
        reference: None,
        tokenizer,
        stops,
    };
    let rows = RlRows {
        origins: data.origins,
        held_out: data.eval_prompts,
    };
    Ok((inputs, rows))
}

/// The step loop of an RL trainer, evaluated on the held-out prompts when there are some.
fn drive_rl<B: AutodiffKernelBackend, T: RlTrainer<B>>(
    trainer: &mut T,
    launch: &Launch<'_, B>,
    rows: &RlRows,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let settings = launch.settings;
    let unlogged = resume(trainer, settings)?;
    let evaluate = |trainer: &T| match &rows.held_out {
        Some(prompts) => trainer
            .evaluate(prompts, settings.per_device_eval_batch_size)
            .map(Some),
        None => Ok(None),
    };
    drive(
        trainer,
        settings,
        launch.display,
        &rows.origins,
        unlogged,
        evaluate,
        report,
    )
}

/// Continues `trainer` from the run's checkpoint, if it resumes one; returns the steps the
/// checkpoint had not logged yet.
fn resume<B: AutodiffKernelBackend>(
    trainer: &mut impl Trainer<B>,
    settings: &RunSettings,
) -> Result<Vec<StepLog>, RunError> {
    match &settings.resume_from_checkpoint {
        Some(checkpoint) => Ok(trainer.load_state(checkpoint)?.unlogged),
        None => Ok(Vec::new()),
    }
}
