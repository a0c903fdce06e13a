//! `temper sft|dpo|orpo|simpo|rm|grpo|ppo`: flags with TRL's option names (kebab-case), a
//! `--config` file with the same keys (snake_case), flags over the file; then a temper-train run
//! on the chosen backend. `temper export`: a checkpoint without its training state, adapters
//! merged or not.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value, json};
use temper_train::config::{
    ComputeBackend, ConfigFileError, TrainConfig, TrainerKind, read_config_file,
};
use temper_train::export::Exported;
use temper_train::progress::Display;
use temper_train::run::{ReferenceOrigin, RunReport};

use crate::Outcome;

// Negative numbers are values (`--weight-decay -0.5`), not flags.
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// YAML, TOML or JSON file of options (snake_case keys); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print a JSON summary on stdout, nothing else; progress stays on stderr.
    #[arg(long)]
    json: bool,
    /// No progress bar or lines.
    #[arg(long)]
    quiet: bool,
    /// Every key of a run (temper-train's one declaration of them).
    #[command(flatten)]
    options: TrainConfig,
}

/// `temper KIND --help` for one trainer: the keys it does not take are hidden, and each
/// other key's help ends with its default for this trainer.
pub fn document_keys(kind: TrainerKind, mut command: clap::Command) -> clap::Command {
    for key in TrainConfig::KEYS {
        command = command.mut_arg(key.name, |arg| {
            if !key.trainers.contains(&kind) {
                return arg.hide(true);
            }
            let default = match (key.default)(kind).replace('`', "") {
                required if required == "required" => "[required]".to_string(),
                default => format!("[default: {default}]"),
            };
            let with_default = |help: &clap::builder::StyledStr| format!("{help} {default}");
            let long_help = arg.get_long_help().map(with_default);
            let arg = match arg.get_help().map(with_default) {
                Some(help) => arg.help(help),
                None => arg,
            };
            match long_help {
                Some(help) => arg.long_help(help),
                None => arg,
            }
        });
    }
    command
}

pub fn run(kind: TrainerKind, args: TrainArgs) -> Outcome {
    let mut file = TrainConfig::default();
    if let Some(path) = &args.config {
        let table = match read_config_file(path) {
            Ok(table) => table,
            Err(error) => {
                eprintln!("error: {error}");
                return match error {
                    ConfigFileError::Io { .. } => Outcome::Failure,
                    _ => Outcome::Invalid,
                };
            }
        };
        file = match TrainConfig::from_map(table) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("error: {error}");
                return Outcome::Invalid;
            }
        };
    }
    let settings = match file.overridden_by(&args.options).resolve(kind) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return Outcome::Invalid;
        }
    };
    let display = if args.quiet {
        Display::Quiet
    } else {
        Display::Auto
    };
    let result = match settings.backend {
        ComputeBackend::Flex => {
            type B = burn::backend::Autodiff<burn::backend::Flex>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        ComputeBackend::Ndarray => {
            type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        #[cfg(feature = "cuda")]
        ComputeBackend::Cuda => {
            type B = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        #[cfg(not(feature = "cuda"))]
        ComputeBackend::Cuda => {
            eprintln!(
                "error: --backend cuda needs the CUDA build of temper (cargo build --features cuda)"
            );
            return Outcome::Failure;
        }
    };
    match result {
        Ok(report) => {
            print_report(&report, args.json);
            Outcome::Success
        }
        Err(error) => {
            for line in error.to_string().lines() {
                eprintln!("error: {line}");
            }
            if error.is_invalid_input() {
                Outcome::Invalid
            } else {
                Outcome::Failure
            }
        }
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint-N directory (or a run's output directory).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where the exported model or adapter goes.
    #[arg(long)]
    output: PathBuf,
    /// Merge a LoRA checkpoint's adapters into its base model's weights.
    #[arg(long)]
    merge_lora: bool,
    /// The base model of a LoRA checkpoint (default: the one its run recorded).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> Outcome {
    type B = burn::backend::Flex;
    let exported = temper_train::export::export::<B>(
        &args.checkpoint,
        &args.output,
        args.merge_lora,
        args.model.as_deref(),
        &Default::default(),
    );
    match exported {
        Ok(kind) => {
            let what = match kind {
                Exported::Model => "model",
                Exported::Adapter => "PEFT adapter",
                Exported::Merged => "model with the LoRA adapters merged",
            };
            crate::out!("exported the {what} to {}", args.output.display());
            Outcome::Success
        }
        Err(error) => {
            eprintln!("error: {error}");
            Outcome::Failure
        }
    }
}

#[derive(Args)]
pub struct PlotArgs {
    /// A run's output directory (its metrics.jsonl), or a metrics.jsonl file.
    run: PathBuf,
    /// Where the PNG files go (default: RUN/plots).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn plot(args: PlotArgs) -> Outcome {
    let metrics = if args.run.is_dir() {
        args.run.join(temper_train::metrics::METRICS_FILE)
    } else {
        args.run.clone()
    };
    let output = args.output.unwrap_or_else(|| {
        metrics
            .parent()
            .map_or_else(|| PathBuf::from("plots"), |dir| dir.join("plots"))
    });
    match temper_plot::plot_run(&metrics, &output) {
        Ok(files) => {
            for file in files {
                crate::out!("{}", file.display());
            }
            Outcome::Success
        }
        Err(error) => {
            eprintln!("error: {error}");
            match error {
                temper_plot::PlotError::Parse { .. } | temper_plot::PlotError::NoMetrics { .. } => {
                    Outcome::Invalid
                }
                _ => Outcome::Failure,
            }
        }
    }
}

fn print_report(report: &RunReport, as_json: bool) {
    let mut out = std::io::stdout().lock();
    let reference = report.reference.as_ref().map(|origin| match origin {
        ReferenceOrigin::Cached(path) => json!({"source": "cache", "file": path}),
        ReferenceOrigin::Computed(path) => json!({"source": "computed", "file": path}),
        ReferenceOrigin::PerStep => json!({"source": "per_step"}),
    });
    let eval: Option<Map<String, Value>> = report.eval.as_ref().map(|values| {
        values
            .iter()
            .map(|(name, value)| (format!("eval_{name}"), json!(value)))
            .collect()
    });
    if as_json {
        let summary = json!({
            "steps": report.steps,
            "final_model": report.final_model,
            "metrics_file": report.metrics_file,
            "train_examples": report.train_examples,
            "eval_examples": report.eval_examples,
            "skipped": report.skipped.len(),
            "reference": reference,
            "abandoned_checkpoints": report.abandoned,
            "train": report.last_train_row,
            "eval": eval,
        });
        // A closed stdout (a pipe into `head`) must not turn a finished run into a panic.
        let _ = writeln!(out, "{summary}");
        return;
    }
    for line in &report.skipped {
        eprintln!("skipped: {line}");
    }
    if let Some(aside) = &report.abandoned {
        eprintln!(
            "moved the checkpoints after the resumed one to {}",
            aside.display()
        );
    }
    let _ = writeln!(
        out,
        "{} steps on {} examples; metrics in {}",
        report.steps,
        report.train_examples,
        report.metrics_file.display()
    );
    if let Some(row) = &report.last_train_row {
        let _ = writeln!(out, "last training row: {}", Value::Object(row.clone()));
    }
    if let Some(eval) = eval {
        let _ = writeln!(
            out,
            "evaluation ({} examples): {}",
            report.eval_examples,
            Value::Object(eval)
        );
    }
    let _ = match &report.final_model {
        Some(path) => writeln!(out, "final model: {}", path.display()),
        None => writeln!(out, "no training steps: nothing saved"),
    };
}
