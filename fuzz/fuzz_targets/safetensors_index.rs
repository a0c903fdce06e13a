//! A sharded checkpoint's `model.safetensors.index.json` beside one valid shard: any index
//! gives a checkpoint or an error naming the file, never a panic or a read outside the
//! directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_model::weights::WeightFiles;

/// A shard holding one f32 tensor `w` of shape [2].
fn shard() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    bytes
}

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("temper-fuzz-index-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err()
        || std::fs::write(dir.join("model-00001-of-00001.safetensors"), shard()).is_err()
        || std::fs::write(dir.join("model.safetensors.index.json"), bytes).is_err()
    {
        return;
    }
    if let Ok(checkpoint) = WeightFiles::open(&dir) {
        let names: Vec<String> = checkpoint.tensors().keys().cloned().collect();
        for name in names {
            let _ = checkpoint.read_f32(&name);
        }
    }
});
