//! Loading never holds the file and the model twice: peak heap while loading stays within 1.3×
//! the model's f32 size (the file is memory-mapped; tensors are converted one at a time).

use burn::backend::NdArray;
use peak_alloc::PeakAlloc;
use temper_model::{ModelConfig, SaveOptions, load_model, random_model, save_model};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

type B = NdArray<f32>;

#[test]
fn loading_peaks_below_1_3_times_the_model() {
    // Proportions of a real model: the embedding about a tenth of the parameters.
    let json = r#"{"model_type": "llama", "vocab_size": 2048, "hidden_size": 256,
        "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "tie_word_embeddings": true}"#;
    let config = ModelConfig::from_json(json).unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("config.json"), json).unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let model = random_model::<B>(&config, &Default::default());
        save_model(&model, source.path(), saved.path(), &SaveOptions::default()).unwrap();
    }
    let file_bytes = std::fs::metadata(saved.path().join("model.safetensors"))
        .unwrap()
        .len() as usize;

    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    let (_, model) = load_model::<B>(saved.path(), &Default::default()).unwrap();
    let peak = HEAP.peak_usage() - before;
    let held = HEAP.current_usage() - before;
    drop(model);
    let ratio = peak as f64 / file_bytes as f64;
    eprintln!("loading peak: {peak} bytes, {ratio:.3}× the {file_bytes}-byte model");
    assert!(
        held as f64 >= 0.95 * file_bytes as f64,
        "the model holds its weights: {held} of {file_bytes}"
    );
    assert!(
        ratio <= 1.3,
        "peak {peak} bytes is {ratio:.2}× the {file_bytes}-byte model"
    );
}
