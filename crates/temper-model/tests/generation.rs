//! Greedy generation against transformers' `generate` on the fixture checkpoints (20 tokens, one
//! prompt and a left-padded batch), KV-cache decoding against full recomputation, and sampling
//! being seedable.

mod common;

use common::{B, case, model_dir, token_rows};
use serde_json::Value;
use temper_model::{CausalLm, Decoding, GenerationConfig, generate, load_model};

fn load(name: &str) -> (CausalLm<B>, Value) {
    let (_, model) = load_model(&model_dir(name), &Default::default()).unwrap();
    (model, case(name))
}

fn greedy(use_cache: bool) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: 20,
        pad_token_id: 2040,
        use_cache,
        ..GenerationConfig::default()
    }
}

#[test]
fn greedy_generation_matches_transformers_for_every_family() {
    for name in ["llama", "qwen2", "qwen3", "mistral", "olmo2"] {
        let (model, case) = load(name);
        let single = generate(
            &model,
            &token_rows(&case["greedy_prompt"]),
            &greedy(true),
            &Default::default(),
        );
        assert_eq!(
            single.tokens,
            token_rows(&case["greedy_tokens"]),
            "{name}: single prompt"
        );
        // The batch: the same prompt, and its last four tokens left-padded by two.
        let prompts: Vec<Vec<u32>> = token_rows(&case["greedy_batch_prompt"])
            .into_iter()
            .zip(token_rows(&case["greedy_batch_mask"]))
            .map(|(ids, mask)| {
                ids.into_iter()
                    .zip(mask)
                    .filter(|(_, m)| *m == 1)
                    .map(|(t, _)| t)
                    .collect()
            })
            .collect();
        let batch = generate(&model, &prompts, &greedy(true), &Default::default());
        assert_eq!(
            batch.tokens,
            token_rows(&case["greedy_batch_tokens"]),
            "{name}: left-padded batch"
        );
    }
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    for name in ["llama", "mistral", "olmo2"] {
        let (model, case) = load(name);
        let prompts = vec![token_rows(&case["greedy_prompt"])[0].clone(), vec![5, 6, 7]];
        let sample = |use_cache| GenerationConfig {
            decoding: Decoding::Sample {
                temperature: 0.8,
                top_k: Some(50),
                top_p: Some(0.9),
            },
            seed: 7,
            ..greedy(use_cache)
        };
        let cached = generate(&model, &prompts, &sample(true), &Default::default());
        let full = generate(&model, &prompts, &sample(false), &Default::default());
        assert_eq!(cached.tokens, full.tokens, "{name}");
        for (a, b) in cached
            .log_probs
            .iter()
            .flatten()
            .zip(full.log_probs.iter().flatten())
        {
            assert!((a - b).abs() <= 1e-4, "{name}: log-prob {a} vs {b}");
        }
    }
}

#[test]
fn sampling_is_seeded_and_stops_at_eos() {
    let (model, case) = load("qwen3");
    let prompt = token_rows(&case["greedy_prompt"]);
    let config = |seed| GenerationConfig {
        decoding: Decoding::Sample {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        },
        seed,
        ..greedy(true)
    };
    let a = generate(&model, &prompt, &config(1), &Default::default());
    assert_eq!(
        a,
        generate(&model, &prompt, &config(1), &Default::default())
    );
    assert_ne!(
        a.tokens,
        generate(&model, &prompt, &config(2), &Default::default()).tokens
    );
    assert!(a.log_probs[0].iter().all(|l| *l <= 0.0 && l.is_finite()));

    // Stop at the third greedy token by declaring it an eos id.
    let expected = token_rows(&case["greedy_tokens"])[0].clone();
    let stop = GenerationConfig {
        eos_token_ids: vec![expected[2]],
        ..greedy(true)
    };
    let stopped = generate(&model, &prompt, &stop, &Default::default());
    let first = expected.iter().position(|t| *t == expected[2]).unwrap();
    assert_eq!(stopped.tokens[0], expected[..=first].to_vec());
    assert!(stopped.stopped_at_eos[0]);
}
