//! Training step time and peak memory on the CPU: DPO next to SFT on the same model and data,
//! DPO with the reference log-probs precomputed (the cache) and with the reference model run
//! every step, with and without per-layer activation checkpointing, full fine-tuning and LoRA.
//! Prints one table.
//!
//!     cargo run --release --example bench_train [-- --steps N] [-- --layers N] [-- --dump-pairs FILE]
//!
//! `--dump-pairs` writes the tokenised pairs and the model config as JSON for the TRL anchor
//! (`examples/anchors/trl_train_bench.py`), which times the same work with TRL on the same machine.
//!
//! The model is a randomly initialised Qwen2-shaped decoder (hidden 256, 4 layers by default)
//! with the bundled 2048-token tokenizer; the data are temper-data's synthetic conversational
//! preference pairs (SFT trains on their chosen answers), batch 4, up to 256 tokens.

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use peak_alloc::PeakAlloc;
use temper::data::tokenize::{TokenizedPair, TokenizedSequence, tokenize};
use temper::data::{ChatTokenizer, Format, TokenizeOptions, Tokenized, synthetic};
use temper::model::{CausalLm, LoraConfig, ModelConfig, add_lora, random_model};
use temper::objectives::preference::{DpoConfig, PreferenceLoss};
use temper::train::{Objective, Reference, Trainer, TrainingArgs, reference_scores};

/// Counts live and peak heap bytes (ndarray allocates every tensor on the heap).
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

type Cpu = NdArray<f32>;
type Grad = Autodiff<Cpu>;

const PAIRS: usize = 32;
const BATCH: usize = 4;

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn config_json(layers: usize) -> String {
    format!(
        r#"{{"model_type": "qwen2", "vocab_size": 2048, "hidden_size": 256,
        "intermediate_size": 704, "num_hidden_layers": {layers}, "num_attention_heads": 8,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "tie_word_embeddings": true}}"#
    )
}

fn config(layers: usize) -> ModelConfig {
    ModelConfig::from_json(&config_json(layers)).expect("a valid config")
}

/// What one configuration of a run costs.
struct Row {
    name: &'static str,
    seconds_per_step: f64,
    tokens_per_second: f64,
    peak_mib: f64,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

struct Setup {
    lora: bool,
    checkpointing: bool,
}

fn args(steps: usize, checkpointing: bool) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(steps + 1),
        per_device_train_batch_size: BATCH,
        learning_rate: 1e-4,
        gradient_checkpointing: checkpointing,
        ..TrainingArgs::default()
    }
}

fn model(config: &ModelConfig, lora: bool) -> CausalLm<Grad> {
    let device = Default::default();
    let model = random_model::<Grad>(config, &device);
    if lora {
        let lora = LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..LoraConfig::default()
        };
        add_lora(model, &lora, &device)
    } else {
        model
    }
}

/// Times `steps` updates after one warm-up update; peak heap over the timed steps.
fn measure(
    name: &'static str,
    mut trainer: Trainer<Grad>,
    steps: usize,
    tokens_per_step: usize,
) -> Row {
    trainer.step().expect("a finite warm-up step");
    HEAP.reset_peak_usage();
    let start = Instant::now();
    for _ in 0..steps {
        trainer.step().expect("a finite step");
    }
    let seconds_per_step = start.elapsed().as_secs_f64() / steps as f64;
    Row {
        name,
        seconds_per_step,
        tokens_per_second: tokens_per_step as f64 / seconds_per_step,
        peak_mib: mib(HEAP.peak_usage()),
    }
}

fn main() {
    let steps = arg("--steps").unwrap_or(3);
    let layers = arg("--layers").unwrap_or(4);
    let config = config(layers);
    let device = Default::default();
    let tokenizer = ChatTokenizer::from_dir(std::path::Path::new("fixtures/tokenizer"), None)
        .expect("tokenizer");
    let options = TokenizeOptions {
        max_length: Some(256),
        ..TokenizeOptions::default()
    };
    let pairs: Vec<TokenizedPair> = synthetic::preference_records(PAIRS, 0)
        .iter()
        .flat_map(|record| {
            Format::TrlPreference
                .parse(record)
                .expect("synthetic records parse")
        })
        .filter_map(
            |example| match tokenize(&tokenizer, &example, &options).ok()?.tokenized {
                Tokenized::Pair(pair) => Some(pair),
                _ => None,
            },
        )
        .collect();
    // SFT trains on each pair's prompt and chosen answer.
    let sequences: Vec<Tokenized> = pairs
        .iter()
        .map(|pair| {
            let input_ids: Vec<u32> = pair
                .prompt_ids
                .iter()
                .chain(&pair.chosen_ids)
                .copied()
                .collect();
            let loss_mask = (0..input_ids.len())
                .map(|i| i >= pair.prompt_ids.len())
                .collect();
            Tokenized::Sequence(TokenizedSequence {
                input_ids,
                loss_mask,
                prompt_len: pair.prompt_ids.len(),
            })
        })
        .collect();
    let pair_examples: Vec<Tokenized> = pairs.iter().cloned().map(Tokenized::Pair).collect();
    let mean_pair_tokens: f64 = pairs
        .iter()
        .map(|p| 2 * p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len())
        .sum::<usize>() as f64
        / pairs.len() as f64;
    let sft_tokens_per_step = (mean_pair_tokens / 2.0 * BATCH as f64) as usize;
    let dpo_tokens_per_step = (mean_pair_tokens * BATCH as f64) as usize;
    let pad = tokenizer.pad_id().unwrap_or(0);
    let args_list: Vec<String> = std::env::args().collect();
    if let Some(path) = args_list
        .iter()
        .position(|a| a == "--dump-pairs")
        .and_then(|i| args_list.get(i + 1))
    {
        let dump = serde_json::json!({
            "config": serde_json::from_str::<serde_json::Value>(&config_json(layers)).expect("JSON"),
            "pad_token_id": pad,
            "batch_size": BATCH,
            "pairs": pairs.iter().map(|p| serde_json::json!({
                "prompt_input_ids": p.prompt_ids,
                "chosen_input_ids": p.chosen_ids,
                "rejected_input_ids": p.rejected_ids,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, dump.to_string()).expect("the dump file is writable");
        println!("wrote {path}");
    }
    let dpo = Objective::Dpo(DpoConfig::single(PreferenceLoss::Sigmoid, 0.1));

    println!(
        "{layers}-layer Qwen2-shaped random model (hidden 256), burn-ndarray f32, {} threads; \
         {} synthetic pairs, batch {BATCH}, {:.0} tokens per pair (both sides); {steps} timed steps \
         after one warm-up",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        pairs.len(),
        mean_pair_tokens
    );

    // The reference cache: every pair scored once before training, without autodiff.
    let reference_model = model(&config, false).valid();
    let start = Instant::now();
    let scores = reference_scores(&reference_model, &pairs, 2 * BATCH, &device);
    let scoring = start.elapsed().as_secs_f64();
    drop(reference_model);

    let mut rows = Vec::new();
    let setups = [
        (
            "SFT, full",
            false,
            Setup {
                lora: false,
                checkpointing: false,
            },
        ),
        (
            "SFT, full, checkpointing",
            false,
            Setup {
                lora: false,
                checkpointing: true,
            },
        ),
        (
            "SFT, LoRA r16",
            false,
            Setup {
                lora: true,
                checkpointing: false,
            },
        ),
        (
            "DPO, full, reference cached",
            true,
            Setup {
                lora: false,
                checkpointing: false,
            },
        ),
        (
            "DPO, full, reference every step",
            true,
            Setup {
                lora: false,
                checkpointing: false,
            },
        ),
        (
            "DPO, full, cached, checkpointing",
            true,
            Setup {
                lora: false,
                checkpointing: true,
            },
        ),
        (
            "DPO, LoRA r16, reference cached",
            true,
            Setup {
                lora: true,
                checkpointing: false,
            },
        ),
    ];
    for (name, is_dpo, setup) in setups {
        HEAP.reset_peak_usage();
        let policy = model(&config, setup.lora);
        let (objective, examples, reference, tokens) = if !is_dpo {
            (
                Objective::Sft,
                sequences.clone(),
                Reference::None,
                sft_tokens_per_step,
            )
        } else if name.contains("every step") {
            let reference = model(&config, false).valid();
            (
                dpo.clone(),
                pair_examples.clone(),
                Reference::Model(Box::new(reference)),
                dpo_tokens_per_step,
            )
        } else {
            (
                dpo.clone(),
                pair_examples.clone(),
                Reference::Precomputed(scores.clone()),
                dpo_tokens_per_step,
            )
        };
        let trainer = Trainer::new(
            policy,
            objective,
            args(steps, setup.checkpointing),
            examples,
            reference,
            pad,
            device,
        )
        .expect("a valid trainer");
        rows.push(measure(name, trainer, steps, tokens));
    }

    println!();
    println!("| run | s/step | tokens/s | peak heap (MiB) |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.3} | {:.0} | {:.0} |",
            row.name, row.seconds_per_step, row.tokens_per_second, row.peak_mib
        );
    }
    println!();
    println!(
        "Reference cache: scoring all {} pairs once took {scoring:.2} s ({:.3} s per batch of {BATCH}).",
        pairs.len(),
        scoring / (pairs.len() as f64 / BATCH as f64)
    );
}
