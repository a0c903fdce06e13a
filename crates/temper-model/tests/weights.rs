//! Opening the fixture models' weights (single file, sharded, bf16) and the errors of broken ones.

use std::path::{Path, PathBuf};

use safetensors::Dtype;
use temper_model::weights::expected_tensors;
use temper_model::{ModelConfig, WeightFiles, WeightsError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn config_of(dir: &Path) -> ModelConfig {
    ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn every_fixture_models_weights_match_its_config() {
    for name in ["llama", "qwen2", "qwen3", "mistral", "olmo2"] {
        let dir = fixture(name);
        let files = WeightFiles::open(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        files
            .verify(&config_of(&dir))
            .unwrap_or_else(|e| panic!("{e}"));
        let expected = expected_tensors(&config_of(&dir));
        assert_eq!(files.tensors().len(), expected.len(), "{name}");
        for (tensor, stored) in files.tensors() {
            let bytes = files.bytes(tensor).unwrap();
            let elements: usize = stored.shape.iter().product();
            assert_eq!(
                bytes.len(),
                elements * stored.dtype.bitsize() / 8,
                "{name} {tensor}"
            );
        }
    }
    let sharded = WeightFiles::open(&fixture("llama")).unwrap();
    assert_eq!(
        sharded.tensors().values().map(|t| t.file).max(),
        Some(2),
        "three shards"
    );
    let bf16 = WeightFiles::open(&fixture("qwen2")).unwrap();
    assert!(bf16.tensors().values().all(|t| t.dtype == Dtype::BF16));
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, out.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    out
}

#[test]
fn broken_weight_files_are_named_errors() {
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        WeightFiles::open(empty.path()),
        Err(WeightsError::NotFound { .. })
    ));

    let truncated = copy_fixture("mistral");
    let file = truncated.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    let error = WeightFiles::open(truncated.path())
        .err()
        .expect("truncated file is an error");
    assert!(matches!(error, WeightsError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("model.safetensors"), "{error}");

    // A config that wants a wider MLP and an extra layer: wrong shapes and missing tensors.
    let dir = fixture("olmo2");
    let mut config = config_of(&dir);
    config.intermediate_size += 1;
    config.num_layers += 1;
    config.layer_windows.push(None);
    let error = WeightFiles::open(&dir)
        .unwrap()
        .verify(&config)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing model.layers.2.mlp.down_proj.weight"),
        "{error}"
    );
    assert!(
        error.contains("model.layers.0.mlp.gate_proj.weight is [32, 16], expected [33, 16]"),
        "{error}"
    );

    // A config without q/k norms: those tensors are unexpected.
    let mut config = config_of(&dir);
    config.qk_norm = temper_model::QkNorm::None;
    let error = WeightFiles::open(&dir)
        .unwrap()
        .verify(&config)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unexpected model.layers.0.self_attn.k_norm.weight"),
        "{error}"
    );

    let bad_index = copy_fixture("llama");
    std::fs::write(
        bad_index.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "../x"}}"#,
    )
    .unwrap();
    assert!(matches!(
        WeightFiles::open(bad_index.path()),
        Err(WeightsError::Index { .. })
    ));

    // A shard that is a directory once failed as "No such device" (mapping a directory).
    let shard_dir = copy_fixture("llama");
    std::fs::create_dir(shard_dir.path().join("shard.safetensors")).unwrap();
    std::fs::write(
        shard_dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "shard.safetensors"}}"#,
    )
    .unwrap();
    let error = WeightFiles::open(shard_dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("a directory, not a file"), "{error}");
}
