//! Logits and completion log-probs of every family against transformers 5.23 on the fixture
//! checkpoints (`fixtures/gen/model_parity.py`), in f32 on burn-ndarray.

mod common;

use common::{B, anchor_logits, case, logits_for, matrix_i64, model_dir, worst_attended};
use temper_model::{CausalLm, load_model};

fn check_family(name: &str) {
    let case = case(name);
    let (_, model): (_, CausalLm<B>) =
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
