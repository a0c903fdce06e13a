//! `temper sft|dpo|orpo|simpo|rm`: flags with TRL's option names (kebab-case), a `--config` file
//! with the same keys (snake_case), flags over the file; then a temper-train run on the chosen
//! backend. `temper export`: a checkpoint without its training state, adapters merged or not.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value, json};
use temper_train::config::{ComputeBackend, TrainConfig, TrainerKind, read_config_file};
use temper_train::export::Exported;
use temper_train::progress::Display;
use temper_train::run::{ReferenceOrigin, RunReport};

use crate::Outcome;
use crate::backend::BackendName;

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
    /// Compute backend (default flex; key `backend` in the config file).
    #[arg(long, value_enum)]
    backend: Option<BackendName>,
    #[command(flatten)]
    options: TrainFlags,
}

/// Every option of [`TrainConfig`], as flags. Field names are the config keys.
#[derive(Args, Serialize, Default)]
pub struct TrainFlags {
    /// Hugging Face model directory to train (weights, config, tokenizer).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training data file(s) (JSONL, JSON or Parquet; any temper-data format), repeated or
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    data: Option<Vec<PathBuf>>,
    /// The data's format (default: detected).
    #[arg(long)]
    data_format: Option<String>,
    /// Where checkpoints, metrics.jsonl and the final model go.
    #[arg(long = "output", visible_alias = "output-dir")]
    output_dir: Option<PathBuf>,
    /// Start a new run in an output directory that holds an earlier one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    overwrite_output_dir: Option<bool>,
    /// Skip invalid records (reported and counted) instead of stopping.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    skip_invalid: Option<bool>,
    /// DPO reference model (default: the initial policy; with LoRA, the base model).
    #[arg(long)]
    ref_model: Option<PathBuf>,
    /// Held-out data evaluated every --eval-steps and at the end (file(s), as --data).
    #[arg(long, value_delimiter = ',')]
    eval_data: Option<Vec<PathBuf>>,
    /// Optimizer steps (-1: use --num-train-epochs; 0: evaluate the initial model only).
    #[arg(long, allow_negative_numbers = true)]
    max_steps: Option<i64>,
    #[arg(long, value_parser = finite_number)]
    num_train_epochs: Option<f64>,
    #[arg(long)]
    per_device_train_batch_size: Option<usize>,
    #[arg(long)]
    per_device_eval_batch_size: Option<usize>,
    #[arg(long)]
    gradient_accumulation_steps: Option<usize>,
    #[arg(long, value_parser = finite_number)]
    learning_rate: Option<f64>,
    /// constant, constant_with_warmup, linear or cosine.
    #[arg(long)]
    lr_scheduler_type: Option<String>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long, value_parser = finite_number)]
    warmup_ratio: Option<f64>,
    #[arg(long, value_parser = finite_number)]
    weight_decay: Option<f64>,
    #[arg(long, value_parser = finite_number)]
    adam_beta1: Option<f64>,
    #[arg(long, value_parser = finite_number)]
    adam_beta2: Option<f64>,
    #[arg(long, value_parser = finite_number)]
    adam_epsilon: Option<f64>,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, value_parser = finite_number)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// DPO/ORPO/SimPO β.
    #[arg(long, value_parser = finite_number)]
    beta: Option<f64>,
    /// DPO loss type(s), e.g. sigmoid, ipo, hinge, robust, sigmoid_norm (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    loss_type: Option<Vec<String>>,
    /// One weight per loss type.
    #[arg(long, value_parser = finite_number, value_delimiter = ',')]
    loss_weights: Option<Vec<f64>>,
    #[arg(long, value_parser = finite_number)]
    label_smoothing: Option<f64>,
    /// DPO: add this times the chosen NLL (RPO).
    #[arg(long, value_parser = finite_number)]
    rpo_alpha: Option<f64>,
    /// SimPO's target margin γ.
    #[arg(long, value_parser = finite_number)]
    simpo_gamma: Option<f64>,
    /// SimPO: weight of the chosen NLL (TRL's CPO `cpo_alpha`).
    #[arg(long, value_parser = finite_number)]
    cpo_alpha: Option<f64>,
    /// ORPO's NLL over `prompt_and_completion` (TRL) or `completion` (LLaMA-Factory).
    #[arg(long)]
    orpo_nll_span: Option<String>,
    /// Reward models: weight of the penalty pushing rewards towards zero mean (TRL suggests 0.01).
    #[arg(long, value_parser = finite_number)]
    center_rewards_coefficient: Option<f64>,
    /// DPO: score the reference once before training (default true) or every step.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    precompute_ref_log_probs: Option<bool>,
    /// Where precomputed reference log-probs are kept (default OUTPUT/reference_logps).
    #[arg(long)]
    reference_cache_dir: Option<PathBuf>,
    #[arg(long)]
    max_length: Option<usize>,
    #[arg(long)]
    max_prompt_length: Option<usize>,
    /// SFT: completion, prompt, all-assistant or last-turn.
    #[arg(long)]
    loss_mask: Option<String>,
    /// keep_start or keep_end.
    #[arg(long)]
    truncation_mode: Option<String>,
    #[arg(long)]
    logging_steps: Option<usize>,
    #[arg(long)]
    eval_steps: Option<usize>,
    #[arg(long)]
    save_steps: Option<usize>,
    #[arg(long)]
    save_total_limit: Option<usize>,
    /// A checkpoint-N directory of this run to continue from.
    #[arg(long)]
    resume_from_checkpoint: Option<PathBuf>,
    /// Train LoRA adapters instead of every weight.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    use_peft: Option<bool>,
    #[arg(long)]
    lora_r: Option<usize>,
    #[arg(long, value_parser = finite_number)]
    lora_alpha: Option<f64>,
    #[arg(long, value_parser = finite_number)]
    lora_dropout: Option<f64>,
    /// Projections to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear).
    #[arg(long, value_delimiter = ',')]
    lora_target_modules: Option<Vec<String>>,
    /// Save the final model with the adapters merged (else a PEFT adapter).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    merge_lora: Option<bool>,
    /// Recompute each layer's activations in the backward pass (less memory, more time).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    gradient_checkpointing: Option<bool>,
    /// GRPO: completions sampled per prompt (the group).
    #[arg(long)]
    num_generations: Option<usize>,
    /// GRPO/PPO: the longest completion sampled, in tokens.
    #[arg(long)]
    max_completion_length: Option<usize>,
    /// GRPO/PPO: sampling temperature (GRPO 1.0, PPO 0.7).
    #[arg(long, value_parser = finite_number)]
    temperature: Option<f64>,
    /// GRPO/PPO: nucleus sampling threshold (1: off).
    #[arg(long, value_parser = finite_number)]
    top_p: Option<f64>,
    /// GRPO/PPO: sample among the k likeliest tokens only (0: off).
    #[arg(long)]
    top_k: Option<usize>,
    /// GRPO/PPO: CTRL's penalty on tokens already present (1: off).
    #[arg(long, value_parser = finite_number)]
    repetition_penalty: Option<f64>,
    /// GRPO: the std dividing the advantages: group, batch or none (Dr. GRPO).
    #[arg(long)]
    scale_rewards: Option<String>,
    /// GRPO: the clipping range ε.
    #[arg(long, value_parser = finite_number)]
    epsilon: Option<f64>,
    /// GRPO: the upper clipping range (DAPO's clip-higher; default ε).
    #[arg(long, value_parser = finite_number)]
    epsilon_high: Option<f64>,
    /// GRPO: optimizer steps per round of completions.
    #[arg(long)]
    num_iterations: Option<usize>,
    /// GRPO/PPO: a reward model (from `temper rm`) scoring completions, added to the verifiers.
    #[arg(long)]
    reward_model: Option<PathBuf>,
    /// GRPO/PPO: each verifier's score times this (open-instruct's default 10).
    #[arg(long, value_parser = finite_number)]
    verification_reward: Option<f64>,
    /// GRPO/PPO: give completions cut off before eos the reward `--non-stop-penalty-value`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    non_stop_penalty: Option<bool>,
    #[arg(long, value_parser = finite_number)]
    non_stop_penalty_value: Option<f64>,
    /// PPO: passes over each batch of rollouts.
    #[arg(long)]
    num_ppo_epochs: Option<usize>,
    /// PPO: mini-batches per pass (one optimizer step each).
    #[arg(long)]
    num_mini_batches: Option<usize>,
    /// PPO: weight of the per-token KL penalty in the reward.
    #[arg(long, value_parser = finite_number)]
    kl_coef: Option<f64>,
    /// PPO: k1 or k3.
    #[arg(long)]
    kl_estimator: Option<String>,
    /// PPO: the policy's clipping range.
    #[arg(long, value_parser = finite_number)]
    cliprange: Option<f64>,
    /// PPO: weight of the value loss.
    #[arg(long, value_parser = finite_number)]
    vf_coef: Option<f64>,
    /// PPO: the value's clipping range.
    #[arg(long, value_parser = finite_number)]
    cliprange_value: Option<f64>,
    /// PPO: discount.
    #[arg(long, value_parser = finite_number)]
    gamma: Option<f64>,
    /// PPO: GAE's λ.
    #[arg(long, value_parser = finite_number)]
    lam: Option<f64>,
    /// PPO: whiten the per-token rewards before GAE.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    whiten_rewards: Option<bool>,
    /// PPO: subtracted from the score of a completion that does not end at eos.
    #[arg(long, value_parser = finite_number)]
    missing_eos_penalty: Option<f64>,
    /// PPO: the value model (default: the reward model, else the policy with a fresh head).
    #[arg(long)]
    value_model: Option<PathBuf>,
}

/// A number flag's value: finite, because a config table has no NaN or infinity to pass on
/// (they would read as "unset" and leave the default in place without a word).
fn finite_number(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("must be a finite number, not {text}"))
    }
}

/// The flags as a config table (only those given).
fn flag_table(flags: &TrainFlags) -> Map<String, Value> {
    match serde_json::to_value(flags) {
        Ok(Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}

pub fn run(kind: TrainerKind, args: TrainArgs) -> Outcome {
    let mut table = Map::new();
    if let Some(path) = &args.config {
        match read_config_file(path) {
            Ok(file) => table = file,
            Err(error) => {
                eprintln!("error: {error}");
                return match error {
                    temper_train::config::ConfigFileError::Io { .. } => Outcome::Failure,
                    _ => Outcome::Invalid,
                };
            }
        }
    }
    table.extend(flag_table(&args.options));
    let settings = match TrainConfig::from_map(table).and_then(|config| config.resolve(kind)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return Outcome::Invalid;
        }
    };
    // The flag over the file's `backend` key.
    let backend = args
        .backend
        .or(settings.config.backend.map(|name| match name {
            ComputeBackend::Flex => BackendName::Flex,
            ComputeBackend::Ndarray => BackendName::Ndarray,
            ComputeBackend::Cuda => BackendName::Cuda,
        }));
    let display = if args.quiet {
        Display::Quiet
    } else {
        Display::Auto
    };
    let result = match backend.unwrap_or_default() {
        BackendName::Flex => {
            type B = burn::backend::Autodiff<burn::backend::Flex>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        BackendName::Ndarray => {
            type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        #[cfg(feature = "cuda")]
        BackendName::Cuda => {
            type B = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;
            temper_train::run::<B>(&settings, display, &Default::default())
        }
        #[cfg(not(feature = "cuda"))]
        BackendName::Cuda => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag is a config key: a table of all of them is a valid configuration.
    #[test]
    fn every_flag_names_a_config_key() {
        let flags = TrainFlags::default();
        let all: Map<String, Value> = match serde_json::to_value(&flags) {
            Ok(Value::Object(map)) => map,
            _ => panic!("flags serialise to a table"),
        };
        // `backend` has its flag beside the run's (`TrainArgs::backend`).
        let keys: Vec<String> = TrainConfig::keys()
            .into_iter()
            .filter(|key| key != "backend")
            .collect();
        for key in all.keys() {
            assert!(keys.contains(key), "flag `{key}` is not a config key");
        }
        assert_eq!(all.len(), keys.len(), "every config key has a flag");
    }
}
