//! Training step time and peak memory on the CPU: DPO next to SFT on the same model and data,
//! DPO with the reference log-probs precomputed (the cache) and with the reference model run
//! every step, with and without per-layer activation checkpointing, full fine-tuning and LoRA;
//! on burn-flex (the default backend, with temper-kernels' fused kernels) and burn-ndarray, and,
//! with `--python`, TRL's own trainers on the same model config and token ids, in the same run.
//! Prints one table.
//!
//!     cargo run --release --example bench_train -- [--steps N] [--layers N] [--shape a|b|c]
//!         [--backends flex,ndarray] [--python /root/.cache/temper-trl-venv/bin/python]
//!         [--pairs N] [--batch N] [--seq N] [--only ROW_SUBSTRING] [--dump-pairs FILE]
//!
//! `--python` runs `examples/anchors/trl_train_bench.py` on the pairs this run tokenised (each
//! row in a fresh process) and adds its columns and the Temper ÷ TRL ratios. `--dump-pairs`
//! only writes the tokenised pairs and the model config as JSON for running the anchor by hand.
//!
//! Shape A (default): a randomly initialised 4-layer Qwen2-shaped decoder (hidden 256, 8 heads,
//! 2 KV heads, vocabulary 2048). Shape B: SmolLM2-135M's architecture (Llama, 30 layers, hidden
//! 576, 9 heads / 3 KV heads, intermediate 1536, vocabulary 49,152, tied embeddings), random
//! weights. The data are temper-data's synthetic conversational preference pairs tokenised with
//! the bundled 2048-token tokenizer (SFT trains on their chosen answers): 32 pairs, batch 4, up
//! to 256 tokens. Times are medians over the timed steps, after one warm-up step.
//!
//! Shape C, for memory: Qwen2.5-0.5B's architecture (vocabulary 151,936), random weights; 2
//! pairs, batch 1, each pair's prompt lengthened (`--seq`) so that its longer side is 1024
//! tokens, one timed step, only "DPO, full, reference cached" (`--only`) on burn-flex
//! (`--backends flex`): the peak of a DPO step where the logits `[2, 1024, 151936]` would be
//! 1.2 GiB. `--pairs`, `--batch`, `--seq` and `--only` override any shape's defaults.

#[path = "common/flags.rs"]
mod flags;

use flags::{arg, text_arg};
use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use peak_alloc::PeakAlloc;
use temper::data::tokenize::{TokenizedPair, TokenizedSequence, tokenize};
use temper::data::{ChatTokenizer, Format, TokenizeOptions, Tokenized, TokenizedSet, synthetic};
use temper::kernels::AutodiffKernelBackend;
use temper::model::{CausalLm, LoraConfig, ModelConfig, add_lora, random_model};
use temper::objectives::preference::{DpoConfig, PreferenceLoss};
use temper::train::{Objective, OfflineTrainer, Reference, TrainingArgs, reference_scores};

/// Counts live and peak heap bytes (both CPU backends allocate every tensor on the heap).
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// The model config of a shape, as HF `config.json` text.
fn config_json(shape: &str, layers: Option<usize>) -> String {
    match shape {
        "c" => format!(
            r#"{{"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": {}, "num_attention_heads": 14,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "max_position_embeddings": 32768, "tie_word_embeddings": true}}"#,
            layers.unwrap_or(24)
        ),
        "b" => format!(
            r#"{{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
            "intermediate_size": 1536, "num_hidden_layers": {}, "num_attention_heads": 9,
            "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "max_position_embeddings": 8192, "tie_word_embeddings": true}}"#,
            layers.unwrap_or(30)
        ),
        _ => format!(
            r#"{{"model_type": "qwen2", "vocab_size": 2048, "hidden_size": 256,
            "intermediate_size": 704, "num_hidden_layers": {}, "num_attention_heads": 8,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "max_position_embeddings": 512, "tie_word_embeddings": true}}"#,
            layers.unwrap_or(4)
        ),
    }
}

/// What one configuration of a run costs.
struct Row {
    name: &'static str,
    seconds_per_step: f64,
    peak_mib: f64,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

struct Setup {
    lora: bool,
    checkpointing: bool,
}

fn args(steps: usize, batch: usize, checkpointing: bool) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(steps + 1),
        per_device_train_batch_size: batch,
        learning_rate: 1e-4,
        gradient_checkpointing: checkpointing,
        ..TrainingArgs::default()
    }
}

fn model<Grad: AutodiffBackend>(config: &ModelConfig, lora: bool) -> CausalLm<Grad> {
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

/// Times `steps` updates after one warm-up update (the median step); peak heap over the timed
/// steps.
fn measure<Grad: AutodiffKernelBackend>(
    name: &'static str,
    mut trainer: OfflineTrainer<Grad>,
    steps: usize,
) -> Row {
    trainer.step().expect("a finite warm-up step");
    HEAP.reset_peak_usage();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        trainer.step().expect("a finite step");
        times.push(start.elapsed().as_secs_f64());
    }
    let seconds_per_step = median(&mut times);
    Row {
        name,
        seconds_per_step,
        peak_mib: mib(HEAP.peak_usage()),
    }
}

fn main() {
    let shape = text_arg("--shape").unwrap_or_else(|| "a".into());
    let memory_shape = shape == "c";
    let steps = arg("--steps").unwrap_or(if memory_shape { 1 } else { 3 });
    let pair_count = arg("--pairs").unwrap_or(if memory_shape { 2 } else { 32 });
    let batch = arg("--batch").unwrap_or(if memory_shape { 1 } else { 4 });
    let min_length = arg("--seq").unwrap_or(if memory_shape { 1024 } else { 0 });
    let only = text_arg("--only").or_else(|| memory_shape.then(|| DPO_CACHED.to_string()));
    let config_text = config_json(&shape, arg("--layers"));
    let config = ModelConfig::from_json(&config_text).expect("a valid config");
    let tokenizer = ChatTokenizer::from_dir(std::path::Path::new("fixtures/tokenizer"), None)
        .expect("tokenizer");
    let options = TokenizeOptions {
        max_length: Some(256),
        ..TokenizeOptions::default()
    };
    let mut pairs: Vec<TokenizedPair> = synthetic::preference_records(pair_count, 0)
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
    lengthen_prompts(&mut pairs, min_length);
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
    let pad = tokenizer.pad_id().unwrap_or(0);
    let dump = |path: &str| {
        let dump = serde_json::json!({
            "config": serde_json::from_str::<serde_json::Value>(&config_text).expect("JSON"),
            "pad_token_id": pad,
            "batch_size": batch,
            "pairs": pairs.iter().map(|p| serde_json::json!({
                "prompt_input_ids": p.prompt_ids,
                "chosen_input_ids": p.chosen_ids,
                "rejected_input_ids": p.rejected_ids,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, dump.to_string()).expect("the dump file is writable");
    };
    if let Some(path) = text_arg("--dump-pairs") {
        dump(&path);
        println!("wrote {path}");
        return;
    }
    let work = Work {
        config,
        pairs: pairs.clone(),
        sequences,
        pair_examples,
        pad,
        steps,
        batch,
        only: only.clone(),
    };
    let backends = text_arg("--backends").unwrap_or_else(|| "flex,ndarray".into());
    let backends: Vec<&str> = backends.split(',').collect();
    println!(
        "{:?} random model (hidden {}, {} layers, vocabulary {}), f32, {} threads; {} synthetic \
         pairs, batch {batch}, {mean_pair_tokens:.0} tokens per pair (both sides); median of \
         {steps} timed steps after one warm-up",
        work.config.family,
        work.config.hidden_size,
        work.config.num_layers,
        work.config.vocab_size,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        work.pairs.len(),
    );
    let mut temper = Vec::new();
    for backend in &backends {
        let result = match *backend {
            "flex" => run_backend::<Autodiff<Flex>>(&work),
            "ndarray" => run_backend::<Autodiff<NdArray<f32>>>(&work),
            other => panic!("--backends: {other} is not flex or ndarray"),
        };
        temper.push((*backend, result));
    }
    let trl = text_arg("--python").map(|python| {
        let pairs_file = std::env::temp_dir().join("temper_bench_pairs.json");
        let json_file = std::env::temp_dir().join("temper_bench_trl.json");
        dump(pairs_file.to_str().expect("a UTF-8 temp path"));
        let mut command = std::process::Command::new(python);
        command
            .arg("examples/anchors/trl_train_bench.py")
            .args(["--pairs", pairs_file.to_str().unwrap()])
            .args(["--steps", &steps.to_string()])
            .args(["--json", json_file.to_str().unwrap()]);
        if let Some(only) = &only {
            command.args(["--only", only]);
        }
        let status = command.status().expect("the anchor's Python runs");
        assert!(status.success(), "the TRL anchor failed");
        let text = std::fs::read_to_string(&json_file).expect("the anchor wrote its results");
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON results")
    });
    print_table(&temper, trl.as_ref(), &work);
}

/// The row that shape C runs alone.
const DPO_CACHED: &str = "DPO, full, reference cached";

/// Prepends tokens of the other pairs' prompts (cycling through them) to each prompt until the
/// pair's longer side holds at least `min_length` tokens (0: unchanged): long sequences from
/// the same synthetic data.
fn lengthen_prompts(pairs: &mut [TokenizedPair], min_length: usize) {
    let filler: Vec<u32> = pairs.iter().flat_map(|p| p.prompt_ids.clone()).collect();
    if filler.is_empty() {
        return;
    }
    for pair in pairs.iter_mut() {
        let longest = pair.prompt_ids.len() + pair.chosen_ids.len().max(pair.rejected_ids.len());
        let missing = min_length.saturating_sub(longest);
        let mut prompt: Vec<u32> = filler.iter().cycle().take(missing).copied().collect();
        prompt.extend(&pair.prompt_ids);
        pair.prompt_ids = prompt;
    }
}

/// What every backend's runs share: the model config, the data, the settings.
struct Work {
    config: ModelConfig,
    pairs: Vec<TokenizedPair>,
    sequences: Vec<Tokenized>,
    pair_examples: Vec<Tokenized>,
    pad: u32,
    steps: usize,
    batch: usize,
    /// Run only the rows whose name contains this.
    only: Option<String>,
}

/// One backend's rows and its reference-cache scoring time (seconds for every pair).
struct BackendResult {
    rows: Vec<Row>,
    scoring: f64,
}

/// The seven runs on one backend.
fn run_backend<Grad: AutodiffKernelBackend>(work: &Work) -> BackendResult {
    let Work {
        config,
        pairs,
        sequences,
        pair_examples,
        pad,
        steps,
        batch,
        only,
    } = work;
    let (steps, pad, batch) = (*steps, *pad, *batch);
    let device = Default::default();
    let dpo = Objective::Dpo(DpoConfig::single(PreferenceLoss::Sigmoid, 0.1));

    // The reference cache: every pair scored once before training, without autodiff.
    let reference_model = model::<Grad>(config, false).valid();
    let start = Instant::now();
    let scores = reference_scores(&reference_model, pairs, 2 * batch, &device);
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
            DPO_CACHED,
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
    let chosen = setups.into_iter().filter(|(name, ..)| {
        only.as_ref()
            .is_none_or(|only| name.contains(only.as_str()))
    });
    for (name, is_dpo, setup) in chosen {
        HEAP.reset_peak_usage();
        let policy = model::<Grad>(config, setup.lora);
        let (objective, examples, reference) = if !is_dpo {
            (Objective::Sft, sequences.clone(), Reference::None)
        } else if name.contains("every step") {
            let reference = model::<Grad>(config, false).valid();
            (
                dpo.clone(),
                pair_examples.clone(),
                Reference::Model(Box::new(reference)),
            )
        } else {
            (
                dpo.clone(),
                pair_examples.clone(),
                Reference::Precomputed(scores.clone()),
            )
        };
        let trainer = OfflineTrainer::new(
            policy,
            objective,
            args(steps, batch, setup.checkpointing),
            TokenizedSet::new(examples).expect("examples of one kind"),
            reference,
            pad,
            device.clone(),
        )
        .expect("a valid trainer");
        rows.push(measure(name, trainer, steps));
    }
    BackendResult { rows, scoring }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// TRL's median of one measure over a row's runs, from the anchor's `--json` results.
fn trl_median(trl: &serde_json::Value, row: &str, key: &str) -> Option<f64> {
    let mut values: Vec<f64> = trl
        .get(row)?
        .as_array()?
        .iter()
        .filter_map(|run| run.get(key)?.as_f64())
        .collect();
    (!values.is_empty()).then(|| median(&mut values))
}

fn print_table(temper: &[(&str, BackendResult)], trl: Option<&serde_json::Value>, work: &Work) {
    let mut header = String::from("| run |");
    let mut rule = String::from("|---|");
    for (backend, _) in temper {
        header += &format!(" {backend} s/step | {backend} peak heap (MiB) |");
        rule += "---|---|";
    }
    if trl.is_some() {
        header += " TRL s/step | TRL peak RSS growth (MiB) |";
        rule += "---|---|";
        for (backend, _) in temper {
            header += &format!(" {backend} ÷ TRL time |");
            rule += "---|";
        }
    }
    println!("\n{header}\n{rule}");
    let Some((_, first)) = temper.first() else {
        return;
    };
    for (index, row) in first.rows.iter().enumerate() {
        let mut line = format!("| {} |", row.name);
        for (_, result) in temper {
            let row = &result.rows[index];
            line += &format!(" {:.3} | {:.0} |", row.seconds_per_step, row.peak_mib);
        }
        if let Some(trl) = trl {
            let seconds = trl_median(trl, row.name, "seconds_per_step");
            let memory = trl_median(trl, row.name, "peak_above_baseline_mib");
            let show = |v: Option<f64>, digits: usize| {
                v.map_or("failed".into(), |v| format!("{v:.digits$}"))
            };
            line += &format!(" {} | {} |", show(seconds, 3), show(memory, 0));
            for (_, result) in temper {
                let ratio = seconds.map(|s| result.rows[index].seconds_per_step / s);
                line += &format!(" {} |", show(ratio, 2));
            }
        }
        println!("{line}");
    }
    println!();
    let batch = work.batch;
    let batches = work.pairs.len() as f64 / batch as f64;
    for (backend, result) in temper {
        println!(
            "Reference cache on {backend}: scoring all {} pairs took {:.2} s ({:.3} s per batch of {batch}).",
            work.pairs.len(),
            result.scoring,
            result.scoring / batches
        );
    }
    if let Some(seconds) = trl.and_then(|t| trl_median(t, DPO_CACHED, "precompute_seconds")) {
        println!(
            "TRL's precompute_ref_log_probs pass: {seconds:.2} s ({:.3} s per batch of {batch}).",
            seconds / batches
        );
    }
}
