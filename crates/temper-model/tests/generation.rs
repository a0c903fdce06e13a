//! Greedy generation against transformers' `generate` on the fixture models (20 tokens, one
//! prompt and a left-padded batch), KV-cache decoding against full recomputation (also when
//! the cache outgrows its buffers), and sampling being seedable.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{B, case, model_dir, token_rows};
use serde_json::Value;
use temper_model::{CausalLm, Decoding, GenerationConfig, KvCache, generate, load_model};

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

/// A cache with no room reserved (`KvCache::new`) grows while it is fed a left-padded batch a
/// chunk at a time (5 positions, then 1, 1, …, so its buffers are reallocated at 10 and 20);
/// every token's logits equal those of one forward pass over everything.
#[test]
fn a_growing_kv_cache_equals_one_forward_pass() {
    for name in ["llama", "qwen3"] {
        let (model, case) = load(name);
        let prompt = token_rows(&case["greedy_prompt"])[0].clone();
        let total = prompt.len();
        let pad = 3;
        let ids: Vec<i64> = prompt
            .iter()
            .chain(&vec![2040; pad])
            .chain(&prompt[..total - pad])
            .map(|t| *t as i64)
            .collect();
        let mask: Vec<f32> = (0..2 * total)
            .map(|i| {
                if i >= total && i < total + pad {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let positions: Vec<i64> = (0..total as i64)
            .chain((0..total as i64).map(|p| (p - pad as i64).max(0)))
            .collect();
        let device = Default::default();
        let ints = |values: &[i64], width| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(values.to_vec(), [2, width]), &device)
        };
        let columns = |values: &[i64], range: std::ops::Range<usize>| -> Vec<i64> {
            (0..2)
                .flat_map(|r| values[r * total + range.start..r * total + range.end].to_vec())
                .collect()
        };
        let full_mask =
            Tensor::<B, 2>::from_data(TensorData::new(mask.clone(), [2, total]), &device);
        let full: Vec<f32> = model
            .forward(ints(&ids, total), full_mask, ints(&positions, total))
            .into_data()
            .to_vec()
            .unwrap();
        let vocab = full.len() / (2 * total);

        let mut cache = KvCache::new(model.layers.len());
        let mut start = 0;
        for end in std::iter::once(5).chain(6..=total) {
            let seen: Vec<f32> = (0..2)
                .flat_map(|r| mask[r * total..r * total + end].to_vec())
                .collect();
            let logits: Vec<f32> = model
                .forward_cached(
                    ints(&columns(&ids, start..end), end - start),
                    Tensor::from_data(TensorData::new(seen, [2, end]), &device),
                    ints(&columns(&positions, start..end), end - start),
                    &mut cache,
                )
                .into_data()
                .to_vec()
                .unwrap();
            for r in 0..2 {
                // Padding positions see no key; their (unused) outputs depend on how many
                // keys exist, so only tokens are compared.
                for (i, p) in (start..end)
                    .enumerate()
                    .filter(|(_, p)| mask[r * total + p] > 0.0)
                {
                    let ours = &logits[(r * (end - start) + i) * vocab..][..vocab];
                    let theirs = &full[(r * total + p) * vocab..][..vocab];
                    for (a, b) in ours.iter().zip(theirs) {
                        assert!(
                            (a - b).abs() <= 1e-4,
                            "{name}: row {r} position {p}: {a} vs {b}"
                        );
                    }
                }
            }
            assert_eq!(cache.len(), end);
            start = end;
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
