//! Logits and completion log-probs of every family against transformers 5.23 on the fixture
//! models (`fixtures/gen/model_parity.py`), in f32 on burn-flex (the default backend, with
//! temper-kernels' fused kernels) and on burn-ndarray (plain tensor ops).

mod common;

use burn::backend::NdArray;
use common::{B, anchor_logits, case, logits_for, matrix_i64, model_dir, worst_attended};
use temper_kernels::KernelBackend;
use temper_model::{CausalLm, load_model};

fn check_family(name: &str) {
    check_family_on::<B>(name);
}

fn check_family_on<K: KernelBackend>(name: &str) {
    let case = case(name);
    let (_, model): (_, CausalLm<K>) =
        load_model(&model_dir(name), &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (dims, ours) = logits_for(&model, &case);
    let (shape, theirs) = anchor_logits(name);
    assert_eq!(shape, dims);
    let (seq, vocab) = (dims[1], dims[2]);
    let mask = matrix_i64(&case["attention_mask"]);
    let worst = worst_attended(&ours, &theirs, vocab, &mask);
    assert!(worst <= 1e-4, "{name}: logits differ by up to {worst}");

    // Completion log-prob sums: token t+1 scored by the logits at t, over the completion mask.
    let ids = matrix_i64(&case["input_ids"]);
    let completion = matrix_i64(&case["completion_mask"]);
    let expected: Vec<f64> = case["completion_logps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (b, (row_ids, row_completion)) in ids.iter().zip(&completion).enumerate() {
        let mut sum = 0.0f64;
        for t in (1..seq).filter(|t| row_completion[*t] != 0) {
            let row = &ours[(b * seq + t - 1) * vocab..(b * seq + t) * vocab];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|x| (*x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            sum += row[row_ids[t] as usize] as f64 - lse;
        }
        assert!(
            (sum - expected[b]).abs() <= 1e-3,
            "{name} row {b}: {sum} vs {}",
            expected[b]
        );
    }
}

#[test]
fn llama_sharded_with_llama3_rope_matches_transformers() {
    check_family("llama");
}

#[test]
fn qwen2_bf16_tied_matches_transformers() {
    check_family("qwen2");
}

#[test]
fn qwen3_matches_transformers() {
    check_family("qwen3");
}

#[test]
fn mistral_sliding_window_matches_transformers() {
    check_family("mistral");
}

#[test]
fn olmo2_matches_transformers() {
    check_family("olmo2");
}

/// The parity subset on burn-ndarray: every family's logits and completion log-probs.
#[test]
fn every_family_matches_transformers_on_ndarray() {
    for name in ["llama", "qwen2", "qwen3", "mistral", "olmo2"] {
        check_family_on::<NdArray<f32>>(name);
    }
}

#[test]
fn scoring_in_batches_matches_transformers_completion_log_probs() {
    use temper_model::{ScoredSequence, score_sequences};
    let case = case("olmo2");
    let (_, model): (_, CausalLm<B>) =
        load_model(&model_dir("olmo2"), &Default::default()).unwrap();
    // Row 0 is unpadded in the fixture; score it alone and beside a shorter sequence.
    let ids: Vec<u32> = matrix_i64(&case["input_ids"])[0]
        .iter()
        .map(|t| *t as u32)
        .collect();
    let scored: Vec<bool> = matrix_i64(&case["completion_mask"])[0]
        .iter()
        .map(|m| *m == 1)
        .collect();
    let sequence = ScoredSequence {
        ids: ids.clone(),
        scored: scored.clone(),
    };
    let short = ScoredSequence {
        ids: ids[..5].to_vec(),
        scored: vec![false, true, true, true, true],
    };
    let results = score_sequences(
        &model,
        &[sequence.clone(), short, sequence],
        2,
        &Default::default(),
    );
    let expected = case["completion_logps"][0].as_f64().unwrap();
    for (sum, count) in [results[0], results[2]] {
        assert!((sum - expected).abs() <= 1e-3, "{sum} vs {expected}");
        assert_eq!(count, 4);
    }
    assert_eq!(results[1].1, 4);
}
