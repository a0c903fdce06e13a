//! GRPO step time on the CPU: `GrpoTrainer` on the task fixture model, with and without the KL
//! term (β 0.04 scores every round with a reference model). Prints one table: where a step's
//! time goes (sampling the completions, rewarding them, the update), completion tokens per step
//! and the rollout speed.
//!
//!     cargo run --release --example bench_rlvr [-- --steps N] [-- --repeats N]
//!         [-- --python /root/.cache/temper-trl-venv/bin/python]
//!
//! With `--python`, the anchor runs right after on the same machine and its rows and the
//! Temper ÷ TRL step-time ratios join the table.
//!
//! The same work as `examples/anchors/trl_grpo_bench.py` (TRL's GRPOTrainer): the model
//! `fixtures/models/task-base` (Qwen2, 254k parameters) in f32; the first 16 rows of
//! `fixtures/task/rlvr_train.jsonl` as prompts, in the model's chat template; rewards from the
//! verifiers the rows name (open-instruct's `ifeval_old`, verification reward 10); 8 completions
//! of 4 prompts per step (per-device batch 32, no accumulation, one iteration per round) of up to
//! 32 tokens at temperature 1; the DAPO loss with ε 0.2, group reward scaling; AdamW at 1e-5,
//! linear decay without warm-up, no weight decay, gradients clipped to norm 1, seed 42.
//!
//! Each row builds a fresh trainer, makes one warm-up step (not timed), then `--steps` timed
//! steps (default 5); with `--repeats N` it does so N times. The table gives medians over all
//! timed steps; rollout tokens/s is all completion tokens over all generation seconds.

#[path = "common/flags.rs"]
mod flags;

use flags::{arg, text_arg};
use std::path::Path;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use temper::data::dataset;
use temper::data::tokenize::tokenize;
use temper::data::{ChatTokenizer, Examples, TokenizeOptions, Tokenized, TokenizedSet};
use temper::model::{ModelConfig, load_model};
use temper::objectives::grpo::RewardScaling;
use temper::train::config::GrpoLoss;
use temper::train::grpo::{GrpoSettings, GrpoTrainer, Prompts, RlInputs, StepTiming};
use temper::train::rewards::Rewards;
use temper::train::rollout::{Sampling, Stops};
use temper::train::{ScheduleKind, Trainer, TrainingArgs};
use temper::verifiers::Shaping;

type Cpu = Flex;
type Grad = Autodiff<Cpu>;

const MODEL: &str = "fixtures/models/task-base";
const DATA: &str = "fixtures/task/rlvr_train.jsonl";
const PROMPTS: usize = 16;
const NUM_GENERATIONS: usize = 8;
const BATCH: usize = 32;
const MAX_COMPLETION_LENGTH: usize = 32;
const LEARNING_RATE: f64 = 1e-5;
const SEED: u64 = 42;

/// The first `PROMPTS` rows of the data file with their prompts in the model's chat template.
fn prompts(tokenizer: &ChatTokenizer) -> Prompts {
    let data = dataset::load(Path::new(DATA), None, false).expect("the RLVR fixture loads");
    let Examples::Rlvr(mut rows) = data.examples else {
        panic!("{DATA} holds RLVR rows");
    };
    rows.truncate(PROMPTS);
    let tokenized: Vec<Tokenized> = rows
        .iter()
        .map(|row| {
            tokenize(tokenizer, row, &TokenizeOptions::default())
                .expect("the fixture rows tokenise")
                .tokenized
        })
        .collect();
    let tokenized = TokenizedSet::new(tokenized).expect("the rows are all prompts");
    Prompts::from_examples(&Examples::Rlvr(rows), &tokenized)
}

fn sampling() -> Sampling {
    Sampling {
        num_generations: NUM_GENERATIONS,
        max_completion_length: MAX_COMPLETION_LENGTH,
        temperature: 1.0,
        top_p: None,
        top_k: None,
        repetition_penalty: 1.0,
    }
}

/// Completions stop at the model's eos ids and pad with the tokenizer's pad, as `temper grpo`
/// does.
fn stops(tokenizer: &ChatTokenizer) -> Stops {
    let text = std::fs::read_to_string(Path::new(MODEL).join("config.json")).expect("config.json");
    let config = ModelConfig::from_json(&text).expect("a valid config.json");
    let pad = tokenizer
        .pad_id()
        .or_else(|| tokenizer.eos_id().ok())
        .unwrap_or(0);
    Stops::of_model(Path::new(MODEL), &config, tokenizer, pad)
}

fn settings(sampling: &Sampling, beta: f64) -> GrpoSettings {
    GrpoSettings {
        sampling: sampling.clone(),
        beta,
        epsilon_low: 0.2,
        epsilon_high: 0.2,
        loss_type: GrpoLoss::Dapo,
        // What `temper grpo` sets; with one iteration per round the ratio is 1.
        bias_corrected_kl: true,
        scale_rewards: RewardScaling::Group,
        num_iterations: 1,
    }
}

fn training_args(steps: usize) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(steps + 1),
        per_device_train_batch_size: BATCH,
        gradient_accumulation_steps: 1,
        learning_rate: LEARNING_RATE,
        lr_scheduler_type: ScheduleKind::Linear,
        warmup_steps: 0,
        warmup_ratio: 0.0,
        max_grad_norm: 1.0,
        seed: SEED,
        gradient_checkpointing: false,
        ..TrainingArgs::default()
    }
}

fn rewards() -> Rewards {
    Rewards::verifiers(Shaping::default())
}

/// A fresh trainer at step 0: the policy from the model directory, and for β ≠ 0 a second copy
/// of it as the reference.
fn trainer(sampling: &Sampling, beta: f64, steps: usize) -> GrpoTrainer<Grad> {
    let device = Default::default();
    let tokenizer = ChatTokenizer::from_dir(Path::new(MODEL), None).expect("the tokenizer loads");
    let (_, model) = load_model::<Grad>(Path::new(MODEL), &device).expect("the model loads");
    let reference = (beta != 0.0).then(|| {
        load_model::<Cpu>(Path::new(MODEL), &device)
            .expect("the model loads")
            .1
    });
    let inputs = RlInputs {
        prompts: prompts(&tokenizer),
        rewards: rewards(),
        reference,
        stops: stops(&tokenizer),
        tokenizer,
    };
    GrpoTrainer::new(
        model,
        settings(sampling, beta),
        training_args(steps),
        inputs,
        device,
    )
    .expect("a valid trainer")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians of the timed steps of one configuration.
struct Row {
    name: &'static str,
    generation: f64,
    scoring: f64,
    training: f64,
    total: f64,
    completion_tokens: f64,
    rollout_tokens_per_second: f64,
}

fn row(name: &'static str, timings: &[StepTiming]) -> Row {
    let secs = |pick: fn(&StepTiming) -> Duration| {
        median(timings.iter().map(|t| pick(t).as_secs_f64()).collect())
    };
    let tokens: usize = timings.iter().map(|t| t.completion_tokens).sum();
    let generation_seconds: f64 = timings.iter().map(|t| t.generation.as_secs_f64()).sum();
    Row {
        name,
        generation: secs(|t| t.generation),
        scoring: secs(|t| t.scoring),
        training: secs(|t| t.training),
        total: secs(|t| t.generation + t.scoring + t.training),
        completion_tokens: median(timings.iter().map(|t| t.completion_tokens as f64).collect()),
        rollout_tokens_per_second: tokens as f64 / generation_seconds,
    }
}

fn main() {
    let steps = arg("--steps").unwrap_or(5).max(1);
    let repeats = arg("--repeats").unwrap_or(1).max(1);
    let device = Default::default();
    let tokenizer = ChatTokenizer::from_dir(Path::new(MODEL), None).expect("the tokenizer loads");
    let sampling = sampling();
    let stops = stops(&tokenizer);
    let prompt_lengths: Vec<usize> = prompts(&tokenizer).ids.iter().map(Vec::len).collect();

    println!(
        "backend {}, {} rayon threads",
        <Grad as Backend>::name(&device),
        rayon::current_num_threads()
    );
    println!(
        "model {MODEL} (f32); prompts: the first {PROMPTS} rows of {DATA} in its chat template \
         ({}-{} tokens)",
        prompt_lengths.iter().min().unwrap_or(&0),
        prompt_lengths.iter().max().unwrap_or(&0)
    );
    println!(
        "GRPO: num_generations {NUM_GENERATIONS}, per_device_train_batch_size {BATCH} ({} prompts \
         per step), gradient_accumulation_steps 1, num_iterations 1, max_completion_length \
         {MAX_COMPLETION_LENGTH}, temperature 1.0, no top-p/top-k, repetition_penalty 1.0, eos {:?}, \
         pad {}; loss dapo, epsilon 0.2/0.2, scale_rewards group; rewards: the rows' verifiers \
         (ifeval_old, verification_reward 10); AdamW lr {LEARNING_RATE:e} linear, no warm-up, \
         weight_decay 0, max_grad_norm 1.0, seed {SEED}, no gradient checkpointing",
        BATCH / NUM_GENERATIONS,
        stops.eos_token_ids,
        stops.pad_token_id
    );
    println!(
        "{steps} timed steps after one warm-up step, {repeats} repeat(s); medians over the timed \
         steps"
    );

    let mut rows = Vec::new();
    for (name, beta) in [("beta 0", 0.0), ("beta 0.04 (reference, k3 KL)", 0.04)] {
        let mut timings = Vec::with_capacity(steps * repeats);
        for _ in 0..repeats {
            let mut trainer = trainer(&sampling, beta, steps);
            trainer.step().expect("a finite warm-up step");
            for _ in 0..steps {
                trainer.step().expect("a finite step");
                timings.push(trainer.last_timing());
            }
        }
        rows.push(row(name, &timings));
    }

    let trl = text_arg("--python").map(|python| {
        let json_file = std::env::temp_dir().join("temper_bench_trl_grpo.json");
        let status = std::process::Command::new(python)
            .arg("examples/anchors/trl_grpo_bench.py")
            .args(["--steps", &steps.to_string()])
            .args(["--repeats", &repeats.to_string()])
            .args(["--json", json_file.to_str().expect("a UTF-8 temp path")])
            .status()
            .expect("the anchor's Python runs");
        assert!(status.success(), "the TRL anchor failed");
        let text = std::fs::read_to_string(&json_file).expect("the anchor wrote its results");
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON results")
    });

    println!();
    println!(
        "| run | generation s/step | scoring s/step | training s/step | total s/step | completion tokens/step | rollout tokens/s | Temper ÷ TRL total |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // The anchor's rows, in the order of ours ("beta 0", "beta 0.04").
    let anchor_rows = ["beta 0", "beta 0.04"];
    for (row, anchor) in rows.iter().zip(anchor_rows) {
        let theirs = trl.as_ref().and_then(|t| t.get("medians")?.get(anchor));
        let ratio = theirs
            .and_then(|m| m.get("total")?.as_f64())
            .map_or(String::new(), |total| format!("{:.2}", row.total / total));
        println!(
            "| Temper, {} | {:.3} | {:.4} | {:.3} | {:.3} | {:.0} | {:.0} | {ratio} |",
            row.name,
            row.generation,
            row.scoring,
            row.training,
            row.total,
            row.completion_tokens,
            row.rollout_tokens_per_second
        );
    }
    for anchor in anchor_rows {
        let Some(m) = trl.as_ref().and_then(|t| t.get("medians")?.get(anchor)) else {
            continue;
        };
        let get = |key: &str| m.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "| TRL, {anchor} | {:.3} | {:.4} | {:.3} | {:.3} | {:.0} | {:.0} | |",
            get("generation"),
            get("scoring"),
            get("training"),
            get("total"),
            get("completion_tokens"),
            get("rollout_tokens_per_second")
        );
    }
}
