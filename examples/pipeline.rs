//! The main job: Tülu 3's three stages on the bundled task and tiny base model, on the CPU.
//! SFT on Alpaca and ShareGPT data → length-normalised DPO on preference pairs → GRPO on
//! prompts rewarded by the verifiers their rows name, with ORPO from the base model as the
//! single-stage alternative; then a before/after table on held-out data and a few greedy
//! samples. Each stage is `temper_train::run` with a config file from
//! `examples/configs/` (the same files `temper sft|dpo|orpo --config` takes).
//!
//! ```sh
//! cargo run --example pipeline            # all stages
//! cargo run --example pipeline -- --table # only the table, from the models of an earlier run
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use temper::data::tokenize::tokenize;
use temper::data::{
    ChatTokenizer, Examples, Preference, Role, TokenizeOptions, TokenizedSet, dataset,
};
use temper::model::{CausalLm, GenerationConfig, generate, load_model};
use temper::train::config::{TrainConfig, TrainerKind, read_config_file};
use temper::train::heldout::{completion_nll, preference_score};
use temper::train::progress::Display;
use temper::train::rewards::Rewards;
use temper::train::rl::evaluate_policy;
use temper::train::rollout::{Prompts, Stops};
use temper::verifiers::shaping::Shaping;

type B = Flex;
type Ad = Autodiff<B>;

const BASE: &str = "fixtures/models/task-base";
const SFT_EVAL: &str = "fixtures/task/sft_eval.jsonl";
const PAIRS_EVAL: &str = "fixtures/task/dpo_eval.jsonl";
const PROMPTS_EVAL: &str = "fixtures/task/rlvr_eval.jsonl";
const MAX_NEW_TOKENS: usize = 48;
const SAMPLE_PROMPTS: usize = 3;

fn main() {
    let table_only = std::env::args().any(|a| a == "--table");
    let started = Instant::now();
    let stages = [
        (TrainerKind::Sft, "examples/configs/sft.yaml"),
        (TrainerKind::Dpo, "examples/configs/dpo.yaml"),
        (TrainerKind::Grpo, "examples/configs/grpo.yaml"),
        (TrainerKind::Orpo, "examples/configs/orpo.yaml"),
    ];
    let mut outputs = Vec::new();
    for (kind, config) in stages {
        let settings = read_config_file(Path::new(config))
            .map_err(|e| e.to_string())
            .and_then(|table| TrainConfig::from_map(table).map_err(|e| e.to_string()))
            .and_then(|config| config.resolve(kind).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| fail(&e));
        outputs.push(settings.output_dir.clone());
        if table_only {
            continue;
        }
        let stage = Instant::now();
        eprintln!("== temper {} --config {config}", kind.command());
        let report = temper::train::run::<Ad>(&settings, Display::Lines, &Default::default())
            .unwrap_or_else(|e| fail(&e.to_string()));
        eprintln!(
            "== {} done: {} steps in {:.1} s",
            kind.command(),
            report.steps,
            stage.elapsed().as_secs_f64()
        );
    }
    let models = [
        ("base", PathBuf::from(BASE)),
        ("SFT", outputs[0].clone()),
        ("SFT → DPO (norm)", outputs[1].clone()),
        ("SFT → DPO → GRPO", outputs[2].clone()),
        ("ORPO (from base)", outputs[3].clone()),
    ];
    print_table(&models);
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// A file's examples tokenised with the base model's tokenizer.
fn tokenized(tokenizer: &ChatTokenizer, path: &str) -> (Examples, TokenizedSet) {
    let data = dataset::load(Path::new(path), None, false).unwrap_or_else(|e| fail(&e.to_string()));
    let tokenized = data
        .examples
        .iter()
        .map(|e| {
            tokenize(tokenizer, &e, &TokenizeOptions::default())
                .unwrap_or_else(|e| fail(&e.to_string()))
                .tokenized
        })
        .collect();
    let tokenized = TokenizedSet::new(tokenized).unwrap_or_else(|e| fail(&e.to_string()));
    (data.examples, tokenized)
}

fn print_table(models: &[(&str, PathBuf)]) {
    let device = Default::default();
    let tokenizer =
        ChatTokenizer::from_dir(Path::new(BASE), None).unwrap_or_else(|e| fail(&e.to_string()));
    let (_, TokenizedSet::Sequences(sequences)) = tokenized(&tokenizer, SFT_EVAL) else {
        fail(&format!("{SFT_EVAL}: not SFT data"))
    };
    let (Examples::Preference(pair_examples), TokenizedSet::Pairs(pairs)) =
        tokenized(&tokenizer, PAIRS_EVAL)
    else {
        fail(&format!("{PAIRS_EVAL}: not preference data"))
    };

    println!();
    println!(
        "Held-out: {} SFT examples ({SFT_EVAL}), {} preference pairs ({PAIRS_EVAL})",
        sequences.len(),
        pairs.len()
    );
    println!();
    let (prompt_examples, prompts) = tokenized(&tokenizer, PROMPTS_EVAL);
    let heldout = Prompts::from_examples(&prompt_examples, &prompts);
    let rows = &heldout.rows;
    println!(
        "Instructions followed: greedy answers to {} held-out prompts ({PROMPTS_EVAL}), checked by \
         the verifiers their rows name.",
        rows.len()
    );
    println!();
    println!(
        "| model | completion NLL/token ↓ | preference accuracy ↑ | margin (nats/token) ↑ | instructions followed ↑ |"
    );
    println!("|---|---|---|---|---|");
    let mut loaded: Vec<(&str, CausalLm<B>)> = Vec::new();
    for (name, dir) in models {
        let (_, model) = load_model::<B>(dir, &device).unwrap_or_else(|e| fail(&e.to_string()));
        let nll = completion_nll(&model, &sequences, 32, &device);
        let preference = preference_score(&model, &pairs, 32, &device);
        let followed = instructions_followed(&model, &tokenizer, &heldout);
        println!(
            "| {name} | {nll:.3} | {:.1}% | {:+.3} | {:.1}% |",
            preference.accuracy * 100.0,
            preference.margin,
            followed * 100.0
        );
        loaded.push((name, model));
    }

    println!();
    println!("Greedy samples on held-out prompts:");
    for (example, pair) in pair_examples.iter().zip(&pairs).take(SAMPLE_PROMPTS) {
        let prompt_text = match example {
            Preference::Chat { prompt, .. } => prompt
                .iter()
                .filter(|m| m.role == Role::User)
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let prompt_ids = pair.prompt_ids.clone();
        println!();
        println!("prompt: {prompt_text}");
        for (name, model) in &loaded {
            let generation = generate(
                model,
                std::slice::from_ref(&prompt_ids),
                &greedy(&tokenizer),
                &device,
            );
            let text = tokenizer
                .decode(&generation.tokens[0], true)
                .unwrap_or_else(|e| fail(&e.to_string()));
            println!("  {name:>18}: {}", text.trim().replace('\n', " ⏎ "));
        }
    }
}

fn greedy(tokenizer: &ChatTokenizer) -> GenerationConfig {
    let eos = tokenizer.eos_id().unwrap_or(0);
    GenerationConfig {
        max_new_tokens: MAX_NEW_TOKENS,
        eos_token_ids: vec![eos],
        pad_token_id: tokenizer.pad_id().unwrap_or(eos),
        ..GenerationConfig::default()
    }
}

/// The share of greedy answers to the held-out prompts that the verifiers their rows name
/// pass: the `eval_accuracy` a `temper grpo` run logs.
fn instructions_followed(model: &CausalLm<B>, tokenizer: &ChatTokenizer, prompts: &Prompts) -> f64 {
    let greedy = greedy(tokenizer);
    let stops = Stops {
        eos_token_ids: greedy.eos_token_ids,
        pad_token_id: greedy.pad_token_id,
    };
    let rewards = Rewards::verifiers(Shaping::default());
    let metrics = evaluate_policy(
        model,
        prompts,
        &rewards,
        tokenizer,
        &stops,
        MAX_NEW_TOKENS,
        prompts.ids.len(),
    )
    .unwrap_or_else(|e| fail(&e.to_string()));
    metrics
        .iter()
        .find(|(name, _)| name == "accuracy")
        .map_or(0.0, |(_, value)| *value)
}
