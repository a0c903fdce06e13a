//! A `.safetensors` file: header length, JSON header, offsets and dtypes, then every tensor
//! read as f32. Any bytes give tensors or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_model::weights::WeightFiles;

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("temper-fuzz-st-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.safetensors");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let Ok(checkpoint) = WeightFiles::open_file(&path) else {
        return;
    };
    let names: Vec<String> = checkpoint.tensors().keys().cloned().collect();
    for name in names {
        let _ = checkpoint.read_f32(&name);
    }
});
