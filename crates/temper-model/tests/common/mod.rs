//! Fixture access shared by the model tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;
use temper_model::{CausalLm, WeightFiles};

pub type B = Flex;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model_dir(name: &str) -> PathBuf {
    root().join("fixtures/models").join(name)
}

/// The recorded inputs and outputs of `fixtures/parity/models/{name}.json`.
pub fn case(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(format!("fixtures/parity/models/{name}.json")))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// transformers' logits `[batch, seq, vocab]`, flattened, with their shape.
pub fn anchor_logits(name: &str) -> (Vec<usize>, Vec<f32>) {
    let file = root().join(format!("fixtures/parity/models/{name}.safetensors"));
    let files = WeightFiles::open_file(&file).unwrap();
    let (values, shape) = files.read_f32("logits").unwrap();
    (shape, values)
}

pub fn matrix_i64(v: &Value) -> Vec<Vec<i64>> {
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

/// Rows of token ids.
pub fn token_rows(v: &Value) -> Vec<Vec<u32>> {
    matrix_i64(v)
        .into_iter()
        .map(|row| row.into_iter().map(|t| t as u32).collect())
        .collect()
}

pub fn ints(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), &Default::default())
}

pub fn floats(rows: &[Vec<i64>]) -> Tensor<B, 2> {
    let shape = [rows.len(), rows[0].len()];
    let flat: Vec<f32> = rows.concat().into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, shape), &Default::default())
}

/// Our logits for a recorded case, flattened.
pub fn logits_for<K: temper_kernels::KernelBackend>(
    model: &CausalLm<K>,
    case: &Value,
) -> (Vec<usize>, Vec<f32>) {
    let ids = matrix_i64(&case["input_ids"]);
    let mask = matrix_i64(&case["attention_mask"]);
    let positions = matrix_i64(&case["position_ids"]);
    let device = Default::default();
    let int = |rows: &[Vec<i64>]| {
        let shape = [rows.len(), rows[0].len()];
        Tensor::<K, 2, Int>::from_data(TensorData::new(rows.concat(), shape), &device)
    };
    let attention = Tensor::<K, 2>::from_data(floats(&mask).into_data(), &device);
    let logits = model.forward(int(&ids), attention, int(&positions));
    (logits.dims().to_vec(), logits.into_data().to_vec().unwrap())
}

/// The largest difference between two flattened logit tensors over attended positions
/// (transformers' logits at padding positions mean nothing).
pub fn worst_attended(ours: &[f32], theirs: &[f32], vocab: usize, mask: &[Vec<i64>]) -> f32 {
    let attended = mask.iter().flatten().map(|m| *m != 0);
    ours.chunks(vocab)
        .zip(theirs.chunks(vocab))
        .zip(attended)
        .filter(|(_, attended)| *attended)
        .flat_map(|((a, b), _)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max)
}
