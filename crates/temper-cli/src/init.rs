//! `temper init`: a model with random weights (transformers' initialisation) for a
//! `config.json`, saved as an HF directory with a tokenizer's files: the start of a model
//! pre-trained from scratch (the bundled base model is made this way, then trained with
//! `temper sft`).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use clap::Args;
use temper_data::ChatTokenizer;
use temper_model::save::COPIED_FILES;
use temper_model::{ModelConfig, SaveOptions, random_model, save_model};
use temper_train::output::{fresh_dir, publish_files};

use crate::Outcome;

#[derive(Args)]
pub struct InitArgs {
    /// A transformers `config.json` of a supported family.
    #[arg(long)]
    config: PathBuf,
    /// Directory with the tokenizer's files (tokenizer.json, tokenizer_config.json, ...).
    #[arg(long)]
    tokenizer: PathBuf,
    /// The new model's directory.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: InitArgs) -> Outcome {
    match init(&args) {
        Ok(parameters) => {
            crate::out!(
                "initialised a {parameters}-parameter model in {}",
                args.output.display()
            );
            Outcome::Success
        }
        Err((outcome, message)) => {
            eprintln!("error: {message}");
            outcome
        }
    }
}

fn init(args: &InitArgs) -> Result<usize, (Outcome, String)> {
    type B = burn::backend::Flex;
    let failure = |e: &dyn std::fmt::Display| (Outcome::Failure, e.to_string());
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| failure(&format!("{}: {e}", args.config.display())))?;
    let config = ModelConfig::from_json(&text)
        .map_err(|e| (Outcome::Invalid, format!("{}: {e}", args.config.display())))?;
    // The tokenizer is opened, not only copied: a missing or empty directory would otherwise
    // make a model nothing can tokenise for.
    let tokenizer = ChatTokenizer::from_dir(&args.tokenizer, None)
        .map_err(|e| failure(&format!("{}: {e}", args.tokenizer.display())))?;
    tokenizer
        .check_fits(config.vocab_size)
        .map_err(|e| (Outcome::Invalid, format!("{}: {e}", args.config.display())))?;
    refuse_fitting_nowhere(&config)
        .map_err(|e| failure(&format!("{}: {e}", args.config.display())))?;
    refuse_existing(&args.output).map_err(|e| failure(&e))?;
    // save_model takes config.json and the tokenizer files from a source directory: stage
    // them inside the output, then write the model beside them and move it into place whole.
    let source = args.output.join(".init-source");
    let staged = args.output.join(".init.partial");
    for dir in [&source, &staged] {
        fresh_dir(dir).map_err(|e| failure(&e))?;
    }
    std::fs::copy(&args.config, source.join("config.json"))
        .map_err(|e| failure(&format!("{}: {e}", args.config.display())))?;
    for file in COPIED_FILES {
        let from = args.tokenizer.join(file);
        if from.is_file() {
            std::fs::copy(&from, source.join(file))
                .map_err(|e| failure(&format!("{}: {e}", from.display())))?;
        }
    }
    let device = Default::default();
    B::seed(&device, args.seed);
    let model = random_model::<B>(&config, &device);
    let parameters = burn::module::Module::num_params(&model);
    save_model(&model, &source, &staged, &SaveOptions::default()).map_err(|e| failure(&e))?;
    publish_files(&staged, &args.output).map_err(|e| failure(&e))?;
    std::fs::remove_dir_all(&source).map_err(|e| failure(&format!("{}: {e}", source.display())))?;
    Ok(parameters)
}

/// Refuses a model whose f32 weights, twice over (the model, then its bytes as it is saved),
/// exceed the memory this machine has available, before any is allocated: otherwise the
/// process would be killed part-way, or abort on a failed allocation.
fn refuse_fitting_nowhere(config: &ModelConfig) -> Result<(), String> {
    let needed = config.parameter_count().saturating_mul(4 * 2);
    match available_memory() {
        Some(available) if needed > available as u128 => Err(format!(
            "about {} parameters need {:.1} GB to initialise and save as f32; this machine has \
             {:.1} GB available",
            config.parameter_count(),
            needed as f64 / 1e9,
            available as f64 / 1e9
        )),
        _ => Ok(()),
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (Linux); `None` elsewhere. Read by hand: one
/// line of one file does not call for a system-information crate.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses an output directory that already holds anything (a model, a run): `init` would
/// replace its weights.
fn refuse_existing(output: &Path) -> Result<(), String> {
    let Ok(mut entries) = std::fs::read_dir(output) else {
        return Ok(());
    };
    if entries.next().is_some() {
        return Err(format!(
            "{}: not empty; `temper init` writes a new model into a new or empty directory",
            output.display()
        ));
    }
    Ok(())
}
