//! Every key of a training run, declared once: its type, doc, flag, the trainers that take
//! it, its default (TRL's, unless the `trl` note says otherwise) and its check. Relations
//! between keys (`lora_r` needs `use_peft`, ...) are checked in `resolve.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use temper_data::{FormatChoice, LossMask, TruncationSide};
use temper_objectives::grpo::RewardScaling;
use temper_objectives::kto::KtoLoss;
use temper_objectives::ppo::KlEstimator;
use temper_objectives::preference::PreferenceLoss;

use super::ComputeBackend;
use super::ConfigError;
use super::TrainerKind::{self, *};
use super::checks::*;
use super::declare::{Fallback, Fallback::*, KeySpec, declare_keys, foreign_key, resolve_key};
use super::loss_type::{GrpoLoss, LossType};
use crate::objective::NllSpan;
use crate::schedule::ScheduleKind;

const ALL: &[TrainerKind] = &TrainerKind::ALL;
/// The trainers that learn from fixed examples.
const OFFLINE: &[TrainerKind] = &[Sft, Dpo, Orpo, Simpo, Reward, Kto];
/// The trainers that learn from their own completions.
const RL: &[TrainerKind] = &[Grpo, Ppo];

/// A list key's value in a file: one value or a list, each item's error its own (an untagged
/// enum would only say that nothing matched).
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let item = |value: serde_json::Value| T::deserialize(value).map_err(D::Error::custom);
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(item)
            .collect::<Result<_, _>>()
            .map(Some),
        Some(one) => item(one).map(|value| Some(vec![value])),
    }
}

declare_keys! {
    /// Hugging Face model directory: `config.json`, safetensors (sharded or not, f32/bf16/f16),
    /// tokenizer files with the chat template.
    #[arg(long)]
    model: PathBuf => PathBuf {
        trainers: ALL, default: Required(PathBuf::new()), check: any, trl: "scripts' `model_name_or_path`",
    }

    /// The `temper` command's compute backend (`cuda` needs the CUDA build). The library runs
    /// on its caller's backend and records the key.
    #[arg(long, value_enum)]
    backend: ComputeBackend => ComputeBackend {
        trainers: ALL, default: Value(ComputeBackend::default()), check: any, trl: "Temper's",
    }

    /// Training file(s) (JSONL, JSON or Parquet); several are concatenated in order.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    data: Vec<PathBuf> => Vec<PathBuf> {
        trainers: ALL, default: Absent(Vec::new(), "required (or `dataset_mixer_list` or `dataset`)"),
        check: not_empty, trl: "",
    }

    /// Training files with how much of each to take, instead of `data`: `[file, amount, ...]`.
    /// An amount with a `.` is a fraction of the file (above 1 repeats it), else a number of
    /// examples; whole repeats first, then a seeded sample without replacement.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    dataset_mixer_list: Vec<String> => Option<Vec<String>> {
        trainers: ALL, default: Absent(None, "none"), check: mixer_list,
        trl: "open-instruct's key; the examples a fraction samples differ from numpy's draw",
    }

    /// Which field of each record holds a format's field, as `field=column` pairs
    /// (`prompt=problem,ground_truth=answer`), for every file of `data` and `eval_data`.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    columns: Vec<String> => Option<Vec<String>> {
        trainers: ALL, default: Absent(None, "none"), check: column_pairs,
        trl: "LLaMA-Factory's `dataset_info.json` `columns`",
    }

    /// Dataset names defined in `dataset_dir`'s `dataset_info.json`, instead of `data`: each
    /// entry gives its file, format and columns (comma-separated names, read in order).
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    dataset: Vec<String> => Option<Vec<String>> {
        trainers: ALL, default: Absent(None, "none"), check: dataset_names,
        trl: "LLaMA-Factory's key",
    }

    /// Dataset names defined in `dataset_dir`'s `dataset_info.json` to evaluate on, instead of
    /// `eval_data` (LLaMA-Factory's `eval_dataset`).
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    eval_dataset: Vec<String> => Option<Vec<String>> {
        trainers: ALL, default: Absent(None, "none"), check: dataset_names,
        trl: "LLaMA-Factory's key",
    }

    /// The directory whose `dataset_info.json` defines `dataset`'s and `eval_dataset`'s
    /// names; its `file_name`s are relative to it.
    #[arg(long)]
    dataset_dir: PathBuf => PathBuf {
        trainers: ALL, default: Value(PathBuf::from("data")), check: any,
        trl: "LLaMA-Factory's key",
    }

    /// A dataset format, for every file of `data` and `eval_data`; `auto` detects each file's
    /// format from its first record.
    #[arg(long, value_enum)]
    data_format: FormatChoice => FormatChoice {
        trainers: ALL, default: Value(FormatChoice::default()), check: any, trl: "",
    }

    /// Where checkpoints, `metrics.jsonl` and the final model go.
    #[arg(long = "output", visible_alias = "output-dir")]
    output_dir: PathBuf => PathBuf {
        trainers: ALL, default: Required(PathBuf::new()), check: any, trl: "flag `--output`",
    }

    /// Start a new run in a directory that holds an earlier one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    overwrite_output_dir: bool => bool {
        trainers: ALL, default: Value(false), check: any,
        trl: "transformers 4.x key, gone in 5.x",
    }

    /// Skip invalid records, reporting and counting them, instead of stopping.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    skip_invalid: bool => bool {
        trainers: ALL, default: Value(false), check: any, trl: "Temper's",
    }

    /// The reference model directory (GRPO: used when `beta` ≠ 0).
    #[arg(long)]
    ref_model: PathBuf => Option<PathBuf> {
        trainers: &[Dpo, Kto, Grpo, Ppo],
        default: Absent(None, "the initial policy; with LoRA, the base model"),
        check: any, trl: "`DPOTrainer(ref_model=...)`",
    }

    /// Held-out file(s), evaluated every `eval_steps` and after the last step.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    eval_data: Vec<PathBuf> => Vec<PathBuf> {
        trainers: ALL, default: Absent(Vec::new(), "none"), check: any, trl: "",
    }

    /// Optimizer steps; `-1`: from `num_train_epochs`; `0`: evaluate the initial model only
    /// (needs `eval_data`).
    #[arg(long, allow_negative_numbers = true)]
    max_steps: i64 => i64 {
        trainers: ALL, default: Value(-1), check: steps_or_epochs, trl: "",
    }

    /// Epochs when `max_steps` is -1; fractions allowed; steps = ⌈epochs × updates per
    /// epoch⌉.
    #[arg(long)]
    num_train_epochs: f64 => f64 {
        trainers: ALL, default: Value(3.0), check: non_negative, trl: "",
    }

    /// Examples per micro-batch: sequences (SFT), pairs (preference trainers and reward
    /// models), completions (GRPO), prompts (PPO).
    #[arg(long)]
    per_device_train_batch_size: usize => usize {
        trainers: ALL, default: Value(8), check: at_least_one, trl: "",
    }

    /// Examples per evaluation batch; the DPO reference pass scores 2 × this many sequences at
    /// a time.
    #[arg(long)]
    per_device_eval_batch_size: usize => usize {
        trainers: ALL, default: Value(8), check: at_least_one, trl: "",
    }

    /// Micro-batches per optimizer step.
    #[arg(long)]
    gradient_accumulation_steps: usize => usize {
        trainers: ALL, default: Value(1), check: at_least_one, trl: "",
    }

    /// Peak learning rate.
    #[arg(long)]
    learning_rate: f64 => f64 {
        trainers: ALL, default: PerTrainer(TrainerKind::default_learning_rate),
        check: non_negative, trl: "TRL's per-trainer defaults (transformers' own is 5e-5)",
    }

    /// The learning-rate schedule, as `transformers.get_scheduler` (`constant` ignores warmup,
    /// as there).
    #[arg(long, value_enum)]
    lr_scheduler_type: ScheduleKind => ScheduleKind {
        trainers: ALL, default: Value(ScheduleKind::Linear), check: any,
        trl: "transformers has more",
    }

    /// Linear warmup steps.
    #[arg(long)]
    warmup_steps: usize => usize {
        trainers: ALL, default: Value(0), check: any,
        trl: "transformers 5.x also takes a float < 1 as a ratio; Temper takes an integer",
    }

    /// Used when `warmup_steps` is 0: warmup = ⌈ratio × total steps⌉; in [0, 1].
    #[arg(long)]
    warmup_ratio: f64 => f64 {
        trainers: ALL, default: Value(0.0), check: fraction,
        trl: "transformers 4.x key, gone in 5.x (use `warmup_steps` < 1 there)",
    }

    /// AdamW's decoupled decay, not applied to biases and norm weights (the Trainer's groups).
    #[arg(long)]
    weight_decay: f64 => f64 {
        trainers: ALL, default: Value(0.0), check: non_negative, trl: "",
    }

    /// AdamW's β₁, in [0, 1).
    #[arg(long)]
    adam_beta1: f64 => f64 {
        trainers: ALL, default: Value(0.9), check: below_one, trl: "",
    }

    /// AdamW's β₂, in [0, 1).
    #[arg(long)]
    adam_beta2: f64 => f64 {
        trainers: ALL, default: Value(0.999), check: below_one, trl: "",
    }

    /// AdamW's ε.
    #[arg(long)]
    adam_epsilon: f64 => f64 {
        trainers: ALL, default: Value(1e-8), check: non_negative, trl: "",
    }

    /// Clip the global L2 norm of all gradients to this (as `clip_grad_norm_`); 0: no
    /// clipping.
    #[arg(long)]
    max_grad_norm: f64 => f64 {
        trainers: ALL, default: Value(1.0), check: non_negative, trl: "",
    }

    /// Seeds the batch order, LoRA initialisation and dropout, sampling, and a fresh score
    /// head.
    #[arg(long)]
    seed: u64 => u64 {
        trainers: ALL, default: Value(42), check: any, trl: "",
    }

    /// β of the loss: > 0 (GRPO: ≥ 0, the KL weight).
    #[arg(long)]
    beta: f64 => f64 {
        trainers: &[Dpo, Orpo, Simpo, Kto, Grpo],
        default: PerTrainer(|kind| if kind == Grpo { 0.0 } else { 0.1 }),
        check: beta, trl: "",
    }

    /// DPO: one loss type or a list, weighted by `loss_weights` (`sigmoid_norm` is
    /// open-instruct's `dpo_norm`); KTO: `kto` or `apo_zero_unpaired`; GRPO: one of `grpo`,
    /// `bnpo`, `dr_grpo`, `dapo`.
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    loss_type: Vec<LossType> => Vec<LossType> {
        trainers: &[Dpo, Kto, Grpo],
        default: PerTrainer(|kind| match kind {
            Grpo => vec![LossType::Grpo(GrpoLoss::Dapo)],
            Kto => vec![LossType::Kto(KtoLoss::Kto)],
            _ => vec![LossType::Preference(PreferenceLoss::Sigmoid)],
        }),
        check: loss_types, trl: "",
    }

    /// One weight per `loss_type`.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    loss_weights: Vec<f64> => Option<Vec<f64>> {
        trainers: &[Dpo], default: Absent(None, "`1.0` each"), check: all_finite, trl: "",
    }

    /// Flip rate of `robust`, `aot`, `aot_pair`; target of `exo_pair`; SimPO's smoothing.
    #[arg(long)]
    label_smoothing: f64 => f64 {
        trainers: &[Dpo, Simpo], default: Value(0.0), check: fraction, trl: "",
    }

    /// Adds α × the chosen NLL (RPO).
    #[arg(long)]
    rpo_alpha: f64 => Option<f64> {
        trainers: &[Dpo], default: Absent(None, "none"), check: non_negative,
        trl: "older TRL's key; TRL 1.16 writes `loss_type: [sigmoid, sft]`, `loss_weights: [1, α]`",
    }

    /// KTO's weight λ_D of the desirable completions' losses.
    #[arg(long)]
    desirable_weight: f64 => f64 {
        trainers: &[Kto], default: Value(1.0), check: non_negative, trl: "",
    }

    /// KTO's weight λ_U of the undesirable completions' losses.
    #[arg(long)]
    undesirable_weight: f64 => f64 {
        trainers: &[Kto], default: Value(1.0), check: non_negative, trl: "",
    }

    /// SimPO's target margin γ.
    #[arg(long)]
    simpo_gamma: f64 => f64 {
        trainers: &[Simpo], default: Value(0.5), check: non_negative, trl: "",
    }

    /// Weight of the chosen completions' NLL.
    #[arg(long)]
    cpo_alpha: f64 => f64 {
        trainers: &[Simpo], default: Value(1.0), check: non_negative,
        trl: "CPOConfig's default (the SimPO paper uses 0)",
    }

    /// ORPO's NLL over prompt + completion (TRL) or the completion only (LLaMA-Factory).
    #[arg(long, value_enum)]
    orpo_nll_span: NllSpan => NllSpan {
        trainers: &[Orpo], default: Value(NllSpan::default()), check: any,
        trl: "Temper's",
    }

    /// Weight of mean((r_c + r_r)²), pushing rewards towards zero mean (TRL suggests 0.01).
    #[arg(long)]
    center_rewards_coefficient: f64 => Option<f64> {
        trainers: &[Reward], default: Absent(None, "none (off)"), check: non_negative, trl: "",
    }

    /// Score the reference once before training (cached) rather than every step.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    precompute_ref_log_probs: bool => bool {
        trainers: &[Dpo, Kto], default: Value(true), check: any, trl: "`false`",
    }

    /// Where precomputed reference log-probs are kept; runs that share it reuse each other's.
    #[arg(long)]
    reference_cache_dir: PathBuf => Option<PathBuf> {
        trainers: &[Dpo, Kto], default: Absent(None, "`OUTPUT/reference_logps`"), check: any,
        trl: "Temper's",
    }

    /// Longest sequence in tokens (prompt + completion; for pairs, prompt + the longer
    /// answer).
    #[arg(long)]
    max_length: usize => usize {
        trainers: OFFLINE, default: Value(1024), check: at_least_one, trl: "",
    }

    /// Longest prompt; longer prompts keep their end.
    #[arg(long)]
    max_prompt_length: usize => Option<usize> {
        trainers: ALL, default: Absent(None, "none"), check: at_least_one,
        trl: "older TRL's DPO key; TRL 1.16 has none",
    }

    /// Which tokens of an SFT example are trained: the completion (every assistant turn of a
    /// conversation), every token (`prompt`), every assistant turn including those inside a
    /// prompt, or the last assistant turn only.
    #[arg(long, value_enum)]
    loss_mask: LossMask => LossMask {
        trainers: &[Sft], default: Value(LossMask::default()), check: any,
        trl: "TRL: `completion_only_loss`, `assistant_only_loss`",
    }

    /// Which end of an over-long example is kept: `keep_start` cuts the end, `keep_end` the
    /// beginning.
    #[arg(long, value_enum)]
    truncation_mode: TruncationSide => TruncationSide {
        trainers: &[Sft, Dpo, Orpo, Simpo, Reward], default: Value(TruncationSide::default()),
        check: any, trl: "",
    }

    /// Completions sampled per prompt (the group); must divide
    /// `per_device_train_batch_size × gradient_accumulation_steps`.
    #[arg(long)]
    num_generations: usize => usize {
        trainers: &[Grpo], default: Value(8), check: at_least_two, trl: "",
    }

    /// The longest completion sampled, in tokens.
    #[arg(long)]
    max_completion_length: usize => usize {
        trainers: RL, default: PerTrainer(|kind| if kind == Ppo { 53 } else { 512 }),
        check: at_least_one, trl: "PPOConfig's `response_length`",
    }

    /// Sampling temperature; it also divides the logits of every log-prob.
    #[arg(long)]
    temperature: f64 => f64 {
        trainers: RL, default: PerTrainer(|kind| if kind == Ppo { 0.7 } else { 1.0 }),
        check: temperature, trl: "",
    }

    /// Nucleus sampling threshold (1: off).
    #[arg(long)]
    top_p: f64 => f64 {
        trainers: RL, default: Value(1.0), check: top_p, trl: "",
    }

    /// Sample among the k likeliest tokens only (0: off).
    #[arg(long)]
    top_k: usize => usize {
        trainers: RL, default: Value(0), check: any, trl: "",
    }

    /// CTRL's penalty on tokens already present (1: off).
    #[arg(long)]
    repetition_penalty: f64 => f64 {
        trainers: RL, default: Value(1.0), check: repetition_penalty, trl: "",
    }

    /// The std dividing the advantages: the group's, the batch's, or none (Dr. GRPO).
    #[arg(long, value_enum)]
    scale_rewards: RewardScaling => RewardScaling {
        trainers: &[Grpo], default: Value(RewardScaling::Group), check: any, trl: "",
    }

    /// The clipping range ε, in [0, 1).
    #[arg(long)]
    epsilon: f64 => f64 {
        trainers: &[Grpo], default: Value(0.2), check: below_one, trl: "",
    }

    /// The upper clipping range (DAPO's clip-higher).
    #[arg(long)]
    epsilon_high: f64 => Option<f64> {
        trainers: &[Grpo], default: Absent(None, "`epsilon`"), check: non_negative, trl: "",
    }

    /// Optimizer steps per round of completions (μ); the importance ratio matters from the
    /// second.
    #[arg(long)]
    num_iterations: usize => usize {
        trainers: &[Grpo], default: Value(1), check: at_least_one, trl: "",
    }

    /// A reward model (`temper rm`'s output) scoring completions, beside or instead of the
    /// verifiers the rows name.
    #[arg(long)]
    reward_model: PathBuf => Option<PathBuf> {
        trainers: RL, default: Absent(None, "none"), check: any, trl: "",
    }

    /// The verifiers that score RLVR rows naming none in a `dataset` column (a file of
    /// `problem` and `answer` columns read through `columns`, say): one name or a list.
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    verifier: Vec<String> => Option<Vec<String>> {
        trainers: RL, default: Absent(None, "none: each row's `dataset`"), check: verifier_names,
        trl: "Temper's",
    }

    /// Each verifier's score times this.
    #[arg(long)]
    verification_reward: f64 => f64 {
        trainers: RL, default: Value(10.0), check: finite, trl: "open-instruct's key",
    }

    /// A completion cut off before eos gets `non_stop_penalty_value` as its whole reward.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    non_stop_penalty: bool => bool {
        trainers: RL, default: Value(false), check: any, trl: "open-instruct's key",
    }

    /// The reward of a completion cut off before eos; needs `non_stop_penalty`.
    #[arg(long, allow_negative_numbers = true)]
    non_stop_penalty_value: f64 => f64 {
        trainers: RL, default: Value(0.0), check: finite, trl: "open-instruct's key",
    }

    /// Passes over each round of rollouts.
    #[arg(long)]
    num_ppo_epochs: usize => usize {
        trainers: &[Ppo], default: Value(4), check: at_least_one, trl: "",
    }

    /// Mini-batches per pass, one optimizer step each.
    #[arg(long)]
    num_mini_batches: usize => usize {
        trainers: &[Ppo], default: Value(1), check: at_least_one, trl: "",
    }

    /// Weight of the per-token KL penalty in the reward.
    #[arg(long)]
    kl_coef: f64 => f64 {
        trainers: &[Ppo], default: Value(0.05), check: non_negative, trl: "",
    }

    /// The per-token KL estimate: `k1` (`logp − ref`) or `k3` (never negative).
    #[arg(long, value_enum)]
    kl_estimator: KlEstimator => KlEstimator {
        trainers: &[Ppo], default: Value(KlEstimator::K1), check: any, trl: "",
    }

    /// The policy's clipping range.
    #[arg(long)]
    cliprange: f64 => f64 {
        trainers: &[Ppo], default: Value(0.2), check: non_negative, trl: "",
    }

    /// Weight of the value loss.
    #[arg(long)]
    vf_coef: f64 => f64 {
        trainers: &[Ppo], default: Value(0.1), check: non_negative, trl: "",
    }

    /// The value's clipping range.
    #[arg(long)]
    cliprange_value: f64 => f64 {
        trainers: &[Ppo], default: Value(0.2), check: non_negative, trl: "",
    }

    /// GAE's discount, in [0, 1].
    #[arg(long)]
    gamma: f64 => f64 {
        trainers: &[Ppo], default: Value(1.0), check: fraction, trl: "",
    }

    /// GAE's λ, in [0, 1].
    #[arg(long)]
    lam: f64 => f64 {
        trainers: &[Ppo], default: Value(0.95), check: fraction, trl: "",
    }

    /// Whiten the per-token rewards before GAE.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    whiten_rewards: bool => bool {
        trainers: &[Ppo], default: Value(false), check: any, trl: "",
    }

    /// Subtracted from the score of a completion that does not end at eos.
    #[arg(long, allow_negative_numbers = true)]
    missing_eos_penalty: f64 => Option<f64> {
        trainers: &[Ppo], default: Absent(None, "none"), check: finite, trl: "",
    }

    /// The value model: a model with a score head, or a causal LM given a fresh one.
    #[arg(long)]
    value_model: PathBuf => Option<PathBuf> {
        trainers: &[Ppo],
        default: Absent(None, "the reward model, else the policy with a fresh score head"),
        check: any, trl: "",
    }

    /// Steps per metrics row.
    #[arg(long)]
    logging_steps: usize => usize {
        trainers: ALL, default: Value(10), check: at_least_one, trl: "",
    }

    /// Steps between evaluations; needs `eval_data`.
    #[arg(long)]
    eval_steps: usize => Option<usize> {
        trainers: ALL, default: Absent(None, "none: evaluate after the last step only"),
        check: at_least_one, trl: "transformers' default is no evaluation",
    }

    /// Steps between checkpoints; the last step is always saved.
    #[arg(long)]
    save_steps: usize => usize {
        trainers: ALL, default: Value(500), check: at_least_one, trl: "",
    }

    /// Keep at most this many `checkpoint-N`.
    #[arg(long)]
    save_total_limit: usize => Option<usize> {
        trainers: ALL, default: Absent(None, "none (keep all)"), check: at_least_one, trl: "",
    }

    /// A `checkpoint-N` directory of this run to continue from.
    #[arg(long)]
    resume_from_checkpoint: PathBuf => Option<PathBuf> {
        trainers: ALL, default: Absent(None, "none"), check: any, trl: "",
    }

    /// Train LoRA adapters instead of every weight.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    use_peft: bool => bool {
        trainers: ALL, default: Value(false), check: any, trl: "TRL scripts' `ModelConfig`",
    }

    /// LoRA rank; needs `use_peft`.
    #[arg(long)]
    lora_r: usize => usize {
        trainers: ALL, default: Value(16), check: at_least_one, trl: "`ModelConfig`",
    }

    /// LoRA scaling α (the update is scaled by α/r).
    #[arg(long)]
    lora_alpha: f64 => f64 {
        trainers: ALL, default: Value(32.0), check: non_negative, trl: "`ModelConfig`",
    }

    /// Dropout on the adapters' input, in [0, 1).
    #[arg(long)]
    lora_dropout: f64 => f64 {
        trainers: ALL, default: Value(0.05), check: below_one,
        trl: "`ModelConfig`; TRL's DPO, ORPO, CPO and reward trainers then set every dropout to 0 (`disable_dropout=True`), LoRA's included",
    }

    /// Projections to adapt: any of `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`, or `all-linear` (all seven).
    #[arg(long, value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    lora_target_modules: Vec<String> => Vec<String> {
        trainers: ALL, default: Value(vec!["q_proj".to_string(), "v_proj".to_string()]),
        check: lora_targets, trl: "PEFT's default for Llama and Qwen2",
    }

    /// Save the final model with the adapters merged (else a PEFT adapter).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    merge_lora: bool => bool {
        trainers: ALL, default: Value(false), check: any, trl: "Temper's",
    }

    /// Recompute each layer's activations in the backward pass: less memory, one more forward
    /// pass; gradients are unchanged.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    gradient_checkpointing: bool => bool {
        trainers: ALL, default: Value(false), check: any, trl: "`true`",
    }
}
