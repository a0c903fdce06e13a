//! The model on the CPU at a real shape: a randomly initialised Qwen2.5-0.5B (494M parameters,
//! the hub config's shapes; `--shape c`, the default) or SmolLM2-135M (`--shape b`) on
//! burn-flex f32 with temper-kernels' fused kernels. Prints one
//! table: forward + backward tokens/s and peak heap memory at sequence length 512 (with and
//! without per-layer activation checkpointing), and generation tokens/s with and without the
//! KV cache (one prompt, and eight at once with the cache); with `--python`, transformers'
//! numbers on the same work beside them (`examples/anchors/torch_model_bench.py`, same
//! machine, same run).
//!
//!     cargo run --release --example bench_model [-- --shape b|c] [-- --layers N]
//!         [-- --new-tokens N] [-- --python /root/.cache/temper-trl-venv/bin/python]
//!
//! `--layers` shrinks the depth on both sides for a quick look (the full model needs about 8 GB
//! and minutes).

#[path = "common/flags.rs"]
mod flags;

use flags::{arg, text_arg};
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor};
use peak_alloc::PeakAlloc;
use temper::model::{
    GenerationConfig, GradientCheckpointing, ModelConfig, generate, loss_and_gradients,
    random_model,
};

/// Counts live and peak heap bytes (the CPU backends allocate every tensor on the heap).
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

type Cpu = Flex;
type CpuGrad = Autodiff<Cpu>;

/// Qwen/Qwen2.5-0.5B's config.json (the shapes that matter).
const QWEN25_05B: &str = r#"{"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
  "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "max_position_embeddings": 32768, "tie_word_embeddings": true, "eos_token_id": 151643}"#;

/// HuggingFaceTB/SmolLM2-135M's config.json (the shapes that matter).
const SMOLLM2_135M: &str = r#"{"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
  "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
  "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
  "max_position_embeddings": 8192, "tie_word_embeddings": true, "eos_token_id": 0}"#;

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn main() {
    let shape = text_arg("--shape").unwrap_or_else(|| "c".into());
    let (name, config_text) = match shape.as_str() {
        "b" => ("SmolLM2-135M", SMOLLM2_135M),
        "c" => ("Qwen2.5-0.5B", QWEN25_05B),
        other => panic!("--shape: {other} is not b or c"),
    };
    let mut config = ModelConfig::from_json(config_text).expect("valid config");
    if let Some(layers) = arg("--layers") {
        config.num_layers = layers;
        config.layer_windows.truncate(layers);
    }
    let seq = 512;
    let new_tokens = arg("--new-tokens").unwrap_or(32);
    let device = Default::default();

    let model = random_model::<CpuGrad>(&config, &device);
    let params: usize = {
        let (h, i, v, l) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
            config.num_layers,
        );
        let kv = config.num_kv_heads * config.head_dim;
        v * h + l * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * kv + h + 2 * h) + h
    };
    println!(
        "{name}-shaped random model: {} layers, {:.0}M parameters, burn-flex f32, {} threads",
        config.num_layers,
        params as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Forward + backward of the token log-prob loss at sequence length 512, with each layer's
    // activations kept and with them recomputed.
    let ids =
        Tensor::<CpuGrad, 2, Int>::random([1, seq], Distribution::Uniform(0.0, 32000.0), &device);
    let mask = Tensor::<CpuGrad, 2>::ones([1, seq], &device);
    let positions = Tensor::<CpuGrad, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
    let mut training = Vec::new();
    // The first pass is a warm-up (first-touch page faults of a 4 GiB heap), not measured.
    let passes = [
        GradientCheckpointing::Off,
        GradientCheckpointing::Off,
        GradientCheckpointing::PerLayer,
    ];
    for (pass, checkpointing) in passes.into_iter().enumerate() {
        HEAP.reset_peak_usage();
        let before = HEAP.current_usage();
        let start = Instant::now();
        let targets = ids.clone();
        let backward = loss_and_gradients(
            &model,
            ids.clone(),
            mask.clone(),
            positions.clone(),
            checkpointing,
            |head| {
                let [rows, seq] = targets.dims();
                let next = targets.slice([0..rows, 1..seq]);
                let loss = head
                    .token_log_probs(0, next, 1.0, false)
                    .expect("a causal LM")
                    .log_probs
                    .sum()
                    .neg();
                (loss, ())
            },
        );
        if pass > 0 {
            training.push((
                checkpointing,
                start.elapsed().as_secs_f64(),
                HEAP.peak_usage() - before,
            ));
        }
        drop(backward);
    }

    // Generation: 32-token prompts, `new_tokens` greedy tokens each; one prompt with and without
    // the cache, and 8 prompts at once with it.
    let inference = random_model::<Cpu>(&config, &device);
    let prompt = |offset: u32| -> Vec<u32> { (0..32).map(|i| 100 + offset + i * 7).collect() };
    let runs: [(&str, &str, usize, bool); 3] = [
        (
            "generation, KV cache",
            "generation_cache_tokens_per_s",
            1,
            true,
        ),
        (
            "generation, recomputing",
            "generation_recompute_tokens_per_s",
            1,
            false,
        ),
        (
            "generation, KV cache, batch 8",
            "generation_cache_batch8_tokens_per_s",
            8,
            true,
        ),
    ];
    let mut timings = Vec::new();
    for (label, key, batch, use_cache) in runs {
        let settings = GenerationConfig {
            max_new_tokens: new_tokens,
            use_cache,
            ..GenerationConfig::default()
        };
        let prompts: Vec<Vec<u32>> = (0..batch as u32).map(|b| prompt(b * 3)).collect();
        let start = Instant::now();
        let out = generate(&inference, &prompts, &settings, &device);
        let tokens: usize = out.tokens.iter().map(Vec::len).sum();
        timings.push((label, key, tokens, start.elapsed().as_secs_f64()));
    }

    let torch = text_arg("--python").map(|python| {
        let output = std::process::Command::new(python)
            .arg("examples/anchors/torch_model_bench.py")
            .args(["--new-tokens", &new_tokens.to_string()])
            .args(["--layers", &config.num_layers.to_string()])
            .args(["--shape", &shape])
            .output()
            .expect("the anchor's Python runs");
        assert!(output.status.success(), "the transformers anchor failed");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("one JSON object")
    });
    let theirs = |key: &str| -> String {
        torch
            .as_ref()
            .and_then(|t| t.get(key)?.as_f64())
            .map_or(String::new(), |v| format!("{v:.2}"))
    };
    let ratio = |ours: f64, key: &str| -> String {
        torch
            .as_ref()
            .and_then(|t| t.get(key)?.as_f64())
            .map_or(String::new(), |v| format!("{:.2}×", ours / v))
    };
    println!(
        "| work | tokens | seconds | tokens/s | peak heap | transformers tokens/s | Temper ÷ transformers speed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (checkpointing, seconds, peak) in training {
        let label = match checkpointing {
            GradientCheckpointing::Off => "forward + backward",
            GradientCheckpointing::PerLayer => "forward + backward, per-layer checkpointing",
        };
        let key = match checkpointing {
            GradientCheckpointing::Off => "forward_backward_tokens_per_s",
            GradientCheckpointing::PerLayer => "forward_backward_checkpointed_tokens_per_s",
        };
        let speed = seq as f64 / seconds;
        println!(
            "| {label}, seq {seq} | {seq} | {seconds:.2} | {speed:.1} | {:.2} GiB | {} | {} |",
            gib(peak),
            theirs(key),
            ratio(speed, key)
        );
    }
    for (label, key, tokens, seconds) in timings {
        let speed = tokens as f64 / seconds;
        println!(
            "| {label} | {tokens} | {seconds:.2} | {speed:.2} | | {} | {} |",
            theirs(key),
            ratio(speed, key)
        );
    }
}
