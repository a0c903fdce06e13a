//! `temper init`: a model with random weights (transformers' initialisation) for a
//! `config.json`, saved as an HF directory with a tokenizer's files: the start of a model
//! pre-trained from scratch (the bundled base model is made this way, then trained with
//! `temper sft`).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use clap::Args;
use temper_model::save::COPIED_FILES;
use temper_model::{ModelConfig, SaveOptions, random_model, save_model};

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
            println!(
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
    // save_model takes config.json and the tokenizer files from a source directory: stage
    // them beside the output (copying a file onto itself would truncate it).
    let staging = args.output.join(".init-staging");
    std::fs::create_dir_all(&staging)
        .map_err(|e| failure(&format!("{}: {e}", staging.display())))?;
    std::fs::copy(&args.config, staging.join("config.json"))
        .map_err(|e| failure(&format!("{}: {e}", args.config.display())))?;
    for file in COPIED_FILES {
        let from = args.tokenizer.join(file);
        if from.is_file() {
            std::fs::copy(&from, staging.join(file))
                .map_err(|e| failure(&format!("{}: {e}", from.display())))?;
        }
    }
    let device = Default::default();
    B::seed(&device, args.seed);
    let model = random_model::<B>(&config, &device);
    let parameters = burn::module::Module::num_params(&model);
    save_model(&model, &staging, &args.output, &SaveOptions::default()).map_err(|e| failure(&e))?;
    std::fs::remove_dir_all(&staging)
        .map_err(|e| failure(&format!("{}: {e}", staging.display())))?;
    Ok(parameters)
}
