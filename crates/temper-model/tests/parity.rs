//! Logits and completion log-probs of every family against transformers 5.23 on the fixture
//! checkpoints (`fixtures/gen/model_parity.py`), in f32 on burn-ndarray.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;
use temper_model::{CausalLm, Checkpoint, load_model};

type B = NdArray<f32>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn case(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(format!("fixtures/parity/models/{name}.json")))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn anchor_logits(name: &str) -> (Vec<usize>, Vec<f32>) {
    let dir = root().join("fixtures/parity/models");
    let checkpoint_dir = tempfile_with(&dir.join(format!("{name}.safetensors")));
    let checkpoint = Checkpoint::open(checkpoint_dir.path()).unwrap();
    let stored = &checkpoint.tensors()["logits"];
    let bytes = checkpoint.bytes("logits").unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (stored.shape.clone(), values)
}

/// `Checkpoint` opens directories; put the logits file where it looks.
fn tempfile_with(file: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(file, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn matrix_i64(v: &Value) -> Vec<Vec<i64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect()
}

fn ints(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), &Default::default())
}

fn floats(rows: &[Vec<i64>]) -> Tensor<B, 2> {
    let shape = [rows.len(), rows[0].len()];
    let flat: Vec<f32> = rows.concat().into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, shape), &Default::default())
}

fn check_family(name: &str) {
    let case = case(name);
    let (_, model): (_, CausalLm<B>) = load_model(
        &root().join(format!("fixtures/models/{name}")),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let ids = matrix_i64(&case["input_ids"]);
    let mask = matrix_i64(&case["attention_mask"]);
    let positions = matrix_i64(&case["position_ids"]);
    let logits = model.forward(ints(&ids), floats(&mask), ints(&positions));
    let [batch, seq, vocab] = logits.dims();
    let ours: Vec<f32> = logits.into_data().to_vec().unwrap();
    let (shape, theirs) = anchor_logits(name);
    assert_eq!(shape, vec![batch, seq, vocab]);
    // Rows of logits, one per token; transformers' logits at padding positions mean nothing.
    let attended = mask.iter().flatten().map(|m| *m != 0);
    let worst = ours
        .chunks(vocab)
        .zip(theirs.chunks(vocab))
        .zip(attended)
        .filter(|(_, attended)| *attended)
        .flat_map(|((a, b), _)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "{name}: logits differ by up to {worst}");

    // Completion log-prob sums: token t+1 scored by the logits at t, over the completion mask.
    let completion = matrix_i64(&case["completion_mask"]);
    let expected: Vec<f64> = case["completion_logps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for b in 0..batch {
        let mut sum = 0.0f64;
        for t in 1..seq {
            if completion[b][t] == 0 {
                continue;
            }
            let row = &ours[(b * seq + t - 1) * vocab..(b * seq + t) * vocab];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|x| (*x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            sum += row[ids[b][t] as usize] as f64 - lse;
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
