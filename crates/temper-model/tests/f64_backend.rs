//! A model computing in another float type than its f32 RoPE tables: on burn-ndarray f64 the
//! rotary angles are cast to the model's type (the path bf16 and f16 take on CUDA). Its own
//! test binary: burn keeps one default float type per device for the whole process, so f32 and
//! f64 models of burn-ndarray cannot share one.

mod common;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use common::{anchor_logits, case, matrix_i64, model_dir, worst_attended};
use temper_model::load_model;

type F64 = NdArray<f64>;

#[test]
fn a_model_in_f64_matches_transformers() {
    let case = case("llama");
    let (_, model) = load_model::<F64>(&model_dir("llama"), &Default::default()).unwrap();
    let tensor = |key: &str| {
        let rows = matrix_i64(&case[key]);
        TensorData::new(rows.concat(), [rows.len(), rows[0].len()])
    };
    let device = Default::default();
    let logits = model.forward(
        Tensor::<F64, 2, Int>::from_data(tensor("input_ids"), &device),
        Tensor::<F64, 2>::from_data(tensor("attention_mask").convert::<f64>(), &device),
        Tensor::<F64, 2, Int>::from_data(tensor("position_ids"), &device),
    );
    let vocab = logits.dims()[2];
    let ours: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
    let (_, theirs) = anchor_logits("llama");
    let worst = worst_attended(&ours, &theirs, vocab, &matrix_i64(&case["attention_mask"]));
    assert!(worst <= 1e-4, "f64 logits differ by up to {worst}");
}
