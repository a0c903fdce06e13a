//! A run's data: every file loaded in its format, tokenised with the model's template, checked,
//! and each example's origin kept (`file: record N`) for messages; RL runs' prompts and their
//! reward sources' rows.

use temper_data::mixture::mixture_indices;
use temper_data::tokenize::tokenize;
use temper_data::{
    ChatTokenizer, DataError, DataKind, Example, Examples, MixedKinds, Tokenized, TokenizedSet,
    dataset,
};
use temper_kernels::KernelBackend;
use temper_verifiers::registry::Registry;

use super::models::reward_sources;
use super::{RunError, RunReport};
use crate::config::{DataFile, RunSettings, Take};
use crate::grpo::Prompts;
use crate::rewards::Rewards;

/// A run's examples from one or more files, tokenised and checked.
pub(super) struct LoadedData {
    pub(super) examples: TokenizedSet,
    /// The parsed examples the tokenised ones came from (RL rewards read their rows).
    pub(super) sources: Examples,
    /// Where each example came from: `file: record N`.
    pub(super) origins: Vec<String>,
    pub(super) skipped: Vec<String>,
}

pub(super) fn load_files(
    files: &[DataFile],
    settings: &RunSettings,
    tokenizer: &ChatTokenizer,
) -> Result<LoadedData, RunError> {
    let mut examples = Vec::new();
    let (mut sources, mut origins, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for file in files {
        let loaded = load_data(file, settings, tokenizer)?;
        examples.extend(loaded.examples);
        sources.extend(loaded.sources);
        origins.extend(loaded.origins);
        skipped.extend(loaded.skipped);
    }
    // Every file holds the trainer's kind of data (`load_data` checks), so one set holds all.
    let mixed = |mixed: MixedKinds| {
        let origin = origins.get(mixed.index).cloned().unwrap_or_default();
        RunError::Data(format!(
            "{origin}: not the kind of data the files before it hold"
        ))
    };
    let mut examples = TokenizedSet::new(examples).map_err(mixed)?;
    // KTO's KL completions, paired within the batches of its sequential order (for the
    // evaluation set too, as TRL pairs it with the training batch size).
    examples.pair_kl_completions(
        settings.args.per_device_train_batch_size,
        settings.tokenize.max_length,
    );
    let sources = Examples::new(sources).map_err(mixed)?;
    Ok(LoadedData {
        examples,
        sources,
        origins,
        skipped,
    })
}

/// One file's examples, before the files of a run are joined.
struct FileData {
    examples: Vec<Tokenized>,
    sources: Vec<Example>,
    origins: Vec<String>,
    skipped: Vec<String>,
}
fn load_data(
    file: &DataFile,
    settings: &RunSettings,
    tokenizer: &ChatTokenizer,
) -> Result<FileData, RunError> {
    let path = file.path.as_path();
    let loaded = dataset::load_mapped(path, file.format, &file.columns, settings.skip_invalid);
    let mut dataset = match loaded {
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
    // The file's share of a mixture (all of it unless `dataset_mixer_list` says otherwise),
    // before tokenising, as open-instruct selects records before its transforms.
    let available = dataset.examples.len();
    let mut chosen: Vec<usize> = match file.take {
        Take::All => (0..available).collect(),
        take => mixture_indices(available, take.count(available), settings.args.seed),
    };
    if wanted == DataKind::Unpaired && dataset.kind() == Some(DataKind::Preference) {
        // KTO reads the chosen pairs as two unpaired completions each, as TRL's KTOTrainer.
        dataset.keep(&chosen);
        dataset.unpair();
        chosen = (0..dataset.examples.len()).collect();
    }
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
    for index in chosen {
        let (Some(example), Some(record)) = (
            dataset.examples.get(index),
            dataset.record_of_example.get(index),
        ) else {
            continue;
        };
        let origin = format!("{}: record {record}", path.display());
        match tokenize(tokenizer, &example, &settings.tokenize) {
            Ok(outcome) => match outcome.tokenized.nothing_to_train() {
                Some(reason) => invalid.push(format!("{origin}: {reason}")),
                None => {
                    examples.push(outcome.tokenized);
                    sources.push(example.to_example());
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
    Ok(FileData {
        examples,
        sources,
        origins,
        skipped,
    })
}

/// The prompts of RL data: each row and its tokenised prompt, and the rows' origins. A row
/// naming a verifier the registry does not have is an invalid record (skipped and reported
/// with `skip_invalid`).
pub(super) fn prompts(
    data: &LoadedData,
    settings: &RunSettings,
    skipped: &mut Vec<String>,
) -> Result<(Prompts, Vec<String>), RunError> {
    let registry = Registry::default();
    let mut prompts = Prompts {
        rows: Vec::with_capacity(data.sources.len()),
        ids: Vec::with_capacity(data.sources.len()),
    };
    let (Examples::Rlvr(rows), TokenizedSet::Prompts(tokenized)) = (&data.sources, &data.examples)
    else {
        return Err(RunError::Data("RL trainers train on prompts".into()));
    };
    let mut origins = Vec::with_capacity(data.sources.len());
    let mut invalid = Vec::new();
    for ((row, prompt), origin) in rows.iter().zip(tokenized).zip(&data.origins) {
        let mut row = row.clone();
        if let Some(verifiers) = &settings.verifier {
            row.or_verifiers(verifiers);
        }
        if let Some(unknown) = row.datasets.iter().find(|d| registry.get(d).is_err()) {
            invalid.push(format!(
                "{origin}: dataset: no verifier is called `{unknown}` (known: {})",
                registry.names().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        prompts.rows.push(row);
        prompts.ids.push(prompt.prompt_ids.clone());
        origins.push(origin.clone());
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

/// What GRPO and PPO runs train and evaluate on: the prompts (with their rows' origins), the
/// held-out prompts, and the reward sources.
pub(super) struct RlData {
    pub(super) prompts: Prompts,
    pub(super) origins: Vec<String>,
    pub(super) eval_prompts: Option<Prompts>,
    pub(super) rewards: Rewards,
}

pub(super) fn rl_data<B: KernelBackend>(
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
