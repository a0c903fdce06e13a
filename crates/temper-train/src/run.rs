//! A whole training run from [`RunSettings`]: data loaded and tokenised with the model's own
//! tokenizer, the model (with fresh LoRA adapters, or resumed from a checkpoint), the DPO
//! reference log-probs (from the cache or scored once), then the step loop with metrics rows,
//! evaluations, checkpoints and their rotation, and the final model in `OUTPUT/`.
//!
//! Order at the end of step `k`: the metrics row (every `logging_steps`), the evaluation
//! (every `eval_steps`), the checkpoint (every `save_steps`), as transformers' Trainer does.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use serde_json::{Map, Value};
use temper_data::tokenize::{TokenizedPair, tokenize};
use temper_data::{ChatTokenizer, DataError, Example, Tokenized, dataset};
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{
    CausalLm, HeadKind, ModelConfig, ScoreHeadInit, add_lora, load_adapter, load_model,
    load_reward_model, merge_adapters,
};
use temper_verifiers::registry::Registry;
use temper_verifiers::shaping::Shaping;

use crate::checkpoint::{
    CONFIG_FILE, CheckpointError, RunOrigin, TrainerState, Weights, checkpoints,
    load_training_state, rotate_checkpoints, save_checkpoint, saved_state,
};
use crate::config::{Method, RunSettings, TrainerKind};
use crate::metrics::{METRICS_FILE, MetricsLog, eval_row, train_row};
use crate::objective::Objective;
use crate::output::{self, OutputError, Overlap};
use crate::ppo::{PpoSettings, PpoTrainer, load_value_state};
use crate::progress::{Display, Progress};
use crate::reference::{CacheError, Reference, ReferenceCache, cache_key, reference_scores};
use crate::rewards::{RewardModel, Rewards};
use crate::rlvr::{GrpoSettings, Prompts, RlvrTrainer, load_round};
use crate::rollout::Sampling;
use crate::trainer::{StepLog, Steps, TrainError, Trainer};

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
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

/// A run's examples from one or more files, tokenised and checked.
struct LoadedData {
    examples: Vec<Tokenized>,
    /// The parsed examples the tokenised ones came from (RL rewards read their rows).
    sources: Vec<Example>,
    /// Where each example came from: `file: record N`.
    origins: Vec<String>,
    skipped: Vec<String>,
}

fn load_files(
    paths: &[PathBuf],
    settings: &RunSettings,
    tokenizer: &ChatTokenizer,
) -> Result<LoadedData, RunError> {
    let mut all = LoadedData {
        examples: Vec::new(),
        sources: Vec::new(),
        origins: Vec::new(),
        skipped: Vec::new(),
    };
    for path in paths {
        let loaded = load_data(path, settings, tokenizer)?;
        all.examples.extend(loaded.examples);
        all.sources.extend(loaded.sources);
        all.origins.extend(loaded.origins);
        all.skipped.extend(loaded.skipped);
    }
    Ok(all)
}

fn load_data(
    path: &Path,
    settings: &RunSettings,
    tokenizer: &ChatTokenizer,
) -> Result<LoadedData, RunError> {
    let dataset = match dataset::load(path, settings.data_format, settings.skip_invalid) {
        Ok(dataset) => dataset,
        Err(DataError::InvalidRecords { errors }) => {
            return Err(RunError::InvalidRecords(
                errors.iter().map(ToString::to_string).collect(),
            ));
        }
        // A file that cannot be read at all is exit 2 here as in `temper data check`.
        Err(
            error @ (DataError::Io { .. }
            | DataError::Unreadable { .. }
            | DataError::ParquetDisabled { .. }),
        ) => {
            return Err(RunError::DataFile(error.to_string()));
        }
        Err(error) => return Err(RunError::Data(error.to_string())),
    };
    let wanted = settings.kind.data_kind();
    if let Some(kind) = dataset.kind().filter(|kind| *kind != wanted) {
        return Err(RunError::Data(format!(
            "{}: `temper {}` trains on {} data; this file holds {} records",
            path.display(),
            settings.kind.command(),
            wanted.as_str(),
            kind.as_str()
        )));
    }
    let mut skipped: Vec<String> = dataset.skipped.iter().map(ToString::to_string).collect();
    let mut invalid = Vec::new();
    let mut examples = Vec::with_capacity(dataset.examples.len());
    let mut sources = Vec::new();
    let mut origins = Vec::with_capacity(dataset.examples.len());
    for (example, record) in dataset.examples.iter().zip(&dataset.record_of_example) {
        let origin = format!("{}: record {record}", path.display());
        match tokenize(tokenizer, example, &settings.tokenize) {
            Ok(outcome) => match outcome.tokenized.nothing_to_train() {
                Some(reason) => invalid.push(format!("{origin}: {reason}")),
                None => {
                    examples.push(outcome.tokenized);
                    sources.push(example.clone());
                    origins.push(origin);
                }
            },
            Err(error) => invalid.push(format!("{origin}: {error}")),
        }
    }
    if !invalid.is_empty() {
        if !settings.skip_invalid {
            return Err(RunError::InvalidRecords(invalid));
        }
        skipped.extend(invalid);
    }
    if examples.is_empty() {
        return Err(RunError::Data(format!(
            "{}: no usable examples",
            path.display()
        )));
    }
    Ok(LoadedData {
        examples,
        sources,
        origins,
        skipped,
    })
}

fn pairs(examples: &[Tokenized]) -> Vec<TokenizedPair> {
    examples
        .iter()
        .filter_map(|example| match example {
            Tokenized::Pair(pair) => Some(pair.clone()),
            _ => None,
        })
        .collect()
}

fn model_error(dir: &Path, error: impl std::fmt::Display) -> RunError {
    RunError::Model(format!("{}: {error}", dir.display()))
}

/// Reference scores for `examples` from the cache, or scored now and stored.
fn precomputed_reference<B: AutodiffKernelBackend>(
    reference_dir: &Path,
    examples: &[Tokenized],
    settings: &RunSettings,
    progress: &Progress,
    device: &B::Device,
) -> Result<(Reference<B::InnerBackend>, ReferenceOrigin), RunError> {
    let pairs = pairs(examples);
    let cache = ReferenceCache::new(&settings.reference_cache_dir);
    let key = cache_key(reference_dir, &pairs)?;
    if let Some(scores) = cache.load(&key, pairs.len())? {
        return Ok((
            Reference::Precomputed(scores),
            ReferenceOrigin::Cached(cache.path(&key)),
        ));
    }
    progress.message(&format!(
        "scoring {} pairs with the reference model {}",
        pairs.len(),
        reference_dir.display()
    ));
    let (_, model) = load_model::<B::InnerBackend>(reference_dir, device)
        .map_err(|e| model_error(reference_dir, e))?;
    let batch = settings.per_device_eval_batch_size * 2;
    let scores = reference_scores(&model, &pairs, batch, device);
    let path = cache.store(&key, &scores)?;
    Ok((
        Reference::Precomputed(scores),
        ReferenceOrigin::Computed(path),
    ))
}

/// The policy at the start of the run: resumed from a checkpoint, or the model with fresh
/// adapters for a LoRA run. A reward model run turns a causal LM into a reward model with a
/// fresh, seeded score head (or continues one) and reads rewards at `pad_id`'s rule.
fn initial_model<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    pad_id: u32,
    device: &B::Device,
) -> Result<CausalLm<B>, RunError> {
    let load = |dir: &Path| -> Result<CausalLm<B>, RunError> {
        let loaded = if settings.kind == TrainerKind::Reward {
            let init = ScoreHeadInit {
                num_labels: 1,
                pad_token_id: Some(pad_id),
                seed: settings.args.seed,
            };
            load_reward_model::<B>(dir, &init, device)
        } else {
            load_model::<B>(dir, device)
        };
        loaded
            .map(|(_, model)| model)
            .map_err(|e| model_error(dir, e))
    };
    match (&settings.resume_from_checkpoint, &settings.peft) {
        (Some(checkpoint), Some(_)) => load_adapter(load(&settings.model)?, checkpoint, device)
            .map(|(_, model)| model)
            .map_err(|e| model_error(checkpoint, e)),
        (Some(checkpoint), None) => load(checkpoint),
        (None, Some(peft)) => {
            let base = load(&settings.model)?;
            B::seed(device, settings.args.seed);
            Ok(add_lora(base, &peft.lora, device))
        }
        (None, None) => load(&settings.model),
    }
}

/// Refuses to start a new run over an earlier run's checkpoints or metrics, unless told to
/// overwrite it: then the earlier run's checkpoints and metrics are deleted first, so that
/// checkpoint rotation and resuming never mix the two runs.
fn prepare_output_dir(settings: &RunSettings) -> Result<(), RunError> {
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
fn prepare_resume(settings: &RunSettings) -> Result<Option<PathBuf>, RunError> {
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
    match &settings.method {
        Method::Objective(objective) => run_objective::<B>(
            settings,
            objective,
            pad_id,
            train,
            eval,
            display,
            device,
            &mut report,
        )?,
        Method::Grpo(grpo) => run_grpo::<B>(
            settings,
            grpo,
            tokenizer,
            pad_id,
            train,
            eval,
            display,
            device,
            &mut report,
        )?,
        Method::Ppo(ppo) => run_ppo::<B>(
            settings,
            ppo,
            tokenizer,
            pad_id,
            train,
            eval,
            display,
            device,
            &mut report,
        )?,
    }
    Ok(report)
}

/// Messages before the progress bar exists go out as lines.
fn setup_progress(display: Display) -> Progress {
    match display {
        Display::Quiet => Progress::new(Display::Quiet, 0, 0),
        _ => Progress::new(Display::Lines, 0, 0),
    }
}

/// SFT, the preference objectives and reward models.
#[allow(clippy::too_many_arguments)]
fn run_objective<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    objective: &Objective,
    pad_id: u32,
    train: LoadedData,
    eval: Option<LoadedData>,
    display: Display,
    device: &B::Device,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let setup = setup_progress(display);
    let reference_dir = settings.ref_model.as_ref().unwrap_or(&settings.model);
    let (reference, eval_reference, origin) = if !objective.needs_reference() {
        (Reference::None, Reference::None, None)
    } else if settings.precompute_ref_log_probs {
        let (reference, origin) =
            precomputed_reference::<B>(reference_dir, &train.examples, settings, &setup, device)?;
        let eval_reference = match &eval {
            Some(eval) => {
                precomputed_reference::<B>(reference_dir, &eval.examples, settings, &setup, device)?
                    .0
            }
            None => Reference::None,
        };
        (reference, eval_reference, Some(origin))
    } else {
        let (_, model) = load_model::<B::InnerBackend>(reference_dir, device)
            .map_err(|e| model_error(reference_dir, e))?;
        (
            Reference::Model(Box::new(model.clone())),
            Reference::Model(Box::new(model)),
            Some(ReferenceOrigin::PerStep),
        )
    };
    report.reference = origin;

    let model = initial_model::<B>(settings, pad_id, device)?;
    let mut objective = objective.clone();
    if let Objective::Reward { pad_token_id, .. } = &mut objective {
        *pad_token_id = Some(pad_id);
    }
    let mut trainer = Trainer::new(
        model,
        objective,
        settings.args.clone(),
        train.examples,
        reference,
        pad_id,
        device.clone(),
    )?;
    let mut unlogged = Vec::new();
    if let Some(checkpoint) = &settings.resume_from_checkpoint {
        let (optimizer, state) = load_training_state::<B::InnerBackend>(checkpoint, device)?;
        trainer.resume(optimizer, state.global_step);
        unlogged = state.unlogged;
    }
    let evaluate = |trainer: &Trainer<B>| match &eval {
        Some(eval) => trainer
            .evaluate(
                &eval.examples,
                &eval_reference,
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

/// The prompts of RL data: each row and its tokenised prompt, and the rows' origins. A row
/// naming a verifier the registry does not have is an invalid record (skipped and reported
/// with `skip_invalid`).
fn prompts(
    data: &LoadedData,
    settings: &RunSettings,
    skipped: &mut Vec<String>,
) -> Result<(Prompts, Vec<String>), RunError> {
    let registry = Registry::default();
    let mut prompts = Prompts {
        rows: Vec::with_capacity(data.sources.len()),
        ids: Vec::with_capacity(data.sources.len()),
    };
    let mut origins = Vec::with_capacity(data.sources.len());
    let mut invalid = Vec::new();
    for ((source, example), origin) in data.sources.iter().zip(&data.examples).zip(&data.origins) {
        if let (Example::Rlvr(row), Tokenized::Prompt(prompt)) = (source, example) {
            if let Some(unknown) = row.datasets.iter().find(|d| registry.get(d).is_err()) {
                invalid.push(format!(
                    "{origin}: dataset: no verifier is called `{unknown}` (known: {})",
                    registry.names().collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            prompts.rows.push(row.clone());
            prompts.ids.push(prompt.prompt_ids.clone());
            origins.push(origin.clone());
        }
    }
    if !invalid.is_empty() {
        if !settings.skip_invalid {
            return Err(RunError::InvalidRecords(invalid));
        }
        skipped.extend(invalid);
    }
    if prompts.rows.is_empty() {
        return Err(RunError::Data("no usable prompts".into()));
    }
    Ok((prompts, origins))
}

/// An RL run's reward sources: the verifiers the rows name, and the reward model when one is
/// given; a run with neither would learn nothing and is refused.
fn reward_sources<B: KernelBackend>(
    settings: &RunSettings,
    prompts: &Prompts,
    pad_id: u32,
    device: &B::Device,
) -> Result<Rewards, RunError> {
    if settings.rewards.reward_model.is_none() && prompts.rows.iter().all(|r| r.datasets.is_empty())
    {
        return Err(RunError::Data(
            "no rewards: the rows name no verifier (open-instruct's `dataset` column) and no reward_model is given".into(),
        ));
    }
    let shaping = Shaping {
        verification_reward: settings.rewards.verification_reward,
        ..Shaping::unscaled()
    };
    let mut rewards = Rewards::verifiers(shaping);
    rewards.non_stop_penalty = settings.rewards.non_stop_penalty;
    if let Some(dir) = &settings.rewards.reward_model {
        let config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| model_error(dir, e))
            .and_then(|text| ModelConfig::from_json(&text).map_err(|e| model_error(dir, e)))?;
        if !matches!(config.head, HeadKind::SequenceClassification { .. }) {
            return Err(model_error(
                dir,
                "reward_model: a causal LM, not a reward model (train one with `temper rm`)",
            ));
        }
        let init = ScoreHeadInit {
            num_labels: 1,
            pad_token_id: Some(pad_id),
            seed: 0,
        };
        let (_, model) =
            load_reward_model::<B>(dir, &init, device).map_err(|e| model_error(dir, e))?;
        rewards.sources.push((
            Box::new(RewardModel {
                model,
                batch_size: settings.per_device_eval_batch_size,
                device: device.clone(),
            }),
            1.0,
        ));
    }
    Ok(rewards)
}

/// `sampling` stopping and padding as the run's model does.
fn with_stops(
    sampling: &Sampling,
    settings: &RunSettings,
    tokenizer: &ChatTokenizer,
    pad_id: u32,
) -> Result<Sampling, RunError> {
    let config = std::fs::read_to_string(settings.model.join("config.json"))
        .map_err(|e| model_error(&settings.model, e))
        .and_then(|text| {
            ModelConfig::from_json(&text).map_err(|e| model_error(&settings.model, e))
        })?;
    Ok(sampling
        .clone()
        .with_model_stops(&settings.model, &config, tokenizer, pad_id))
}

/// The reference model of an RL run with a KL term: `ref_model`, else the initial policy (the
/// base, without adapters, for LoRA).
fn rl_reference<B: KernelBackend>(
    settings: &RunSettings,
    device: &B::Device,
) -> Result<CausalLm<B>, RunError> {
    let dir = settings.ref_model.as_ref().unwrap_or(&settings.model);
    load_model::<B>(dir, device)
        .map(|(_, model)| model)
        .map_err(|e| model_error(dir, e))
}

/// What GRPO and PPO runs train and evaluate on: the prompts (with their rows' origins), the
/// held-out prompts, and the reward sources.
struct RlData {
    prompts: Prompts,
    origins: Vec<String>,
    eval_prompts: Option<Prompts>,
    rewards: Rewards,
}

fn rl_data<B: KernelBackend>(
    settings: &RunSettings,
    train: &LoadedData,
    eval: Option<&LoadedData>,
    pad_id: u32,
    device: &B::Device,
    report: &mut RunReport,
) -> Result<RlData, RunError> {
    let (prompts, origins) = prompts(train, settings, &mut report.skipped)?;
    let eval_prompts = match eval {
        Some(eval) => Some(self::prompts(eval, settings, &mut report.skipped)?.0),
        None => None,
    };
    let rewards = reward_sources::<B>(settings, &prompts, pad_id, device)?;
    Ok(RlData {
        prompts,
        origins,
        eval_prompts,
        rewards,
    })
}

/// GRPO.
#[allow(clippy::too_many_arguments)]
fn run_grpo<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    grpo: &GrpoSettings,
    tokenizer: ChatTokenizer,
    pad_id: u32,
    train: LoadedData,
    eval: Option<LoadedData>,
    display: Display,
    device: &B::Device,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let grpo = GrpoSettings {
        sampling: with_stops(&grpo.sampling, settings, &tokenizer, pad_id)?,
        ..grpo.clone()
    };
    let reference = if grpo.loss.beta != 0.0 {
        Some(rl_reference::<B::InnerBackend>(settings, device)?)
    } else {
        None
    };
    let data = rl_data::<B::InnerBackend>(settings, &train, eval.as_ref(), pad_id, device, report)?;
    let model = initial_model::<B>(settings, pad_id, device)?;
    let mut trainer = RlvrTrainer::new(
        model,
        grpo,
        settings.args.clone(),
        data.prompts,
        data.rewards,
        reference,
        tokenizer,
        device.clone(),
    )?;
    let mut unlogged = Vec::new();
    if let Some(checkpoint) = &settings.resume_from_checkpoint {
        let (optimizer, state) = load_training_state::<B::InnerBackend>(checkpoint, device)?;
        let round = load_round(checkpoint)?;
        trainer.resume(optimizer, state.global_step, round);
        unlogged = state.unlogged;
    }
    let evaluate = |trainer: &RlvrTrainer<B>| match &data.eval_prompts {
        Some(prompts) => trainer
            .evaluate(prompts, settings.per_device_eval_batch_size)
            .map(Some),
        None => Ok(None),
    };
    drive(
        &mut trainer,
        settings,
        display,
        &data.origins,
        unlogged,
        evaluate,
        report,
    )
}

/// PPO: the policy (LoRA or full, resumed or not), a value model trained in full (`value_model`,
/// else the reward model, else the policy's own directory, with a fresh seeded score head on a
/// causal LM), the reference model for the KL penalty, and the reward sources.
#[allow(clippy::too_many_arguments)]
fn run_ppo<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    ppo: &PpoSettings,
    tokenizer: ChatTokenizer,
    pad_id: u32,
    train: LoadedData,
    eval: Option<LoadedData>,
    display: Display,
    device: &B::Device,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let ppo = PpoSettings {
        sampling: with_stops(&ppo.sampling, settings, &tokenizer, pad_id)?,
        ..ppo.clone()
    };
    let data = rl_data::<B::InnerBackend>(settings, &train, eval.as_ref(), pad_id, device, report)?;
    let reference = rl_reference::<B::InnerBackend>(settings, device)?;
    let value_dir = settings
        .value_model
        .as_ref()
        .or(settings.rewards.reward_model.as_ref())
        .unwrap_or(&settings.model)
        .clone();
    let init = ScoreHeadInit {
        num_labels: 1,
        pad_token_id: Some(pad_id),
        seed: settings.args.seed,
    };
    let (_, value_model) = load_reward_model::<B>(&value_dir, &init, device)
        .map_err(|e| model_error(&value_dir, e))?;
    let model = initial_model::<B>(settings, pad_id, device)?;
    let mut trainer = PpoTrainer::new(
        model,
        value_model,
        ppo,
        settings.args.clone(),
        data.prompts,
        data.rewards,
        reference,
        tokenizer,
        device.clone(),
    )?
    .with_value_model_source(&value_dir);
    let mut unlogged = Vec::new();
    if let Some(checkpoint) = &settings.resume_from_checkpoint {
        let (optimizer, state) = load_training_state::<B::InnerBackend>(checkpoint, device)?;
        let (value_model, value_optimizer) =
            load_value_state::<B>(checkpoint, Some(pad_id), device)?;
        let round = load_round(checkpoint)?;
        trainer.resume(
            optimizer,
            value_optimizer,
            value_model,
            state.global_step,
            round,
        );
        unlogged = state.unlogged;
    }
    let evaluate = |trainer: &PpoTrainer<B>| match &data.eval_prompts {
        Some(prompts) => trainer
            .evaluate(prompts, settings.per_device_eval_batch_size)
            .map(Some),
        None => Ok(None),
    };
    drive(
        &mut trainer,
        settings,
        display,
        &data.origins,
        unlogged,
        evaluate,
        report,
    )
}

/// The step loop shared by every trainer: a metrics row every `logging_steps`, evaluations,
/// checkpoints with rotation, the NaN guard, and the final model. `unlogged`: the steps a
/// resumed checkpoint had not logged yet.
fn drive<B: AutodiffKernelBackend, T: Steps<B>>(
    trainer: &mut T,
    settings: &RunSettings,
    display: Display,
    origins: &[String],
    mut unlogged: Vec<StepLog>,
    evaluate: impl Fn(&T) -> Result<Option<Vec<(String, f64)>>, TrainError>,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let resumed_step = settings
        .resume_from_checkpoint
        .as_ref()
        .map(|_| trainer.steps_done());
    let mut metrics =
        MetricsLog::open(&settings.output_dir, resumed_step).map_err(io(&settings.output_dir))?;
    // The model's absolute path, so that `temper export` finds a LoRA run's base from anywhere.
    let mut recorded = settings.config.clone();
    recorded.model = std::fs::canonicalize(&settings.model)
        .ok()
        .or(recorded.model);
    let config = serde_json::to_value(&recorded).unwrap_or_default();
    let config_path = settings.output_dir.join(CONFIG_FILE);
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(&config).unwrap_or_default() + "\n",
    )
    .map_err(io(&config_path))?;

    let origin = RunOrigin::new(settings.kind.command(), &settings.model);
    let total = trainer.total_steps();
    let progress = Progress::new(display, total, trainer.steps_done());
    let weights = match &settings.peft {
        Some(peft) => Weights::Adapter {
            base_dir: &settings.model,
            lora: &peft.lora,
        },
        None => Weights::Full {
            base_dir: &settings.model,
        },
    };
    let evaluate = |trainer: &T, metrics: &mut MetricsLog| -> Result<_, RunError> {
        let Some(values) = evaluate(trainer)? else {
            return Ok(None);
        };
        let row = eval_row(trainer.steps_done(), trainer.epochs_done(), &values);
        metrics.write(&row).map_err(io(metrics.path()))?;
        progress.row(&row);
        Ok(Some(values))
    };

    if total == 0 {
        report.eval = evaluate(trainer, &mut metrics)?;
    }
    while trainer.steps_done() < total {
        let log = match trainer.step() {
            Ok(log) => log,
            Err(TrainError::NonFinite {
                step,
                what,
                value,
                records,
            }) => {
                let origins = records
                    .iter()
                    .filter_map(|&i| origins.get(i).cloned())
                    .collect();
                let error = TrainError::NonFinite {
                    step,
                    what,
                    value,
                    records,
                };
                let state = TrainerState {
                    global_step: trainer.steps_done(),
                    unlogged,
                    origin: Some(origin.clone()),
                };
                let saved =
                    save_checkpoint(trainer, weights, &state, &config, &settings.output_dir)?;
                progress.finish();
                return Err(RunError::Stopped {
                    error,
                    saved,
                    origins,
                });
            }
            Err(error) => return Err(error.into()),
        };
        progress.step(log.step, log.loss);
        unlogged.push(log);
        let step = trainer.steps_done();
        if step % settings.logging_steps == 0 || step == total {
            let row = train_row(&unlogged);
            metrics.write(&row).map_err(io(metrics.path()))?;
            progress.row(&row);
            report.last_train_row = Some(row);
            unlogged.clear();
        }
        // The last step is always evaluated, before its checkpoint is saved: a run resumed from
        // its final checkpoint then has nothing left to do.
        if step == total || settings.eval_steps.is_some_and(|every| step % every == 0) {
            report.eval = evaluate(trainer, &mut metrics)?;
        }
        if step % settings.save_steps == 0 || step == total {
            let state = TrainerState {
                global_step: step,
                unlogged: unlogged.clone(),
                origin: Some(origin.clone()),
            };
            let saved = save_checkpoint(trainer, weights, &state, &config, &settings.output_dir)?;
            if let Some(limit) = settings.save_total_limit {
                rotate_checkpoints(&settings.output_dir, limit, &saved)?;
            }
            progress.message(&format!("saved {}", saved.display()));
        }
    }
    progress.finish();
    report.steps = trainer.steps_done();
    report.metrics_file = metrics.path().to_path_buf();
    if total > 0 {
        report.final_model = Some(save_final(trainer.model(), settings)?);
    }
    Ok(())
}

/// The run's final model in `OUTPUT/`: full weights, a PEFT adapter, or (LoRA with `merge`)
/// the base with its adapters merged. Written into `OUTPUT/.final-model.partial` and moved into
/// place file by file once complete, so a killed save never leaves a file cut short.
fn save_final<B: AutodiffKernelBackend>(
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
