//! Loading never holds the file and the model twice: peak heap while loading stays within 1.3×
//! the model's f32 size (the file is memory-mapped; tensors are converted one at a time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::NdArray;
use temper_model::{ModelConfig, SaveOptions, load_model, random_model, save_model};

/// Counts live and peak heap bytes of this test binary.
struct PeakCounter;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakCounter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: PeakCounter = PeakCounter;

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

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (_, model) = load_model::<B>(saved.path(), &Default::default()).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let held = LIVE.load(Ordering::Relaxed) - before;
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
