//! Saving: every tensor written back with HF's name, shape and value (f32 and bf16 fixtures),
//! transformers' `format: pt` metadata, sharding with an index, the copied files, and the saved
//! model loading to the same logits. Adapters: PEFT key names and a load round trip.

mod common;

use common::{B, case, floats, ints, logits_for, matrix_i64, model_dir, worst_attended};
use temper_model::{
    CausalLm, LoraConfig, SaveDtype, SaveOptions, ScoreHeadInit, WeightFiles, add_lora,
    add_score_head, load_adapter, load_model, load_reward_model, save_adapter, save_model,
};

fn reread(dir: &std::path::Path) -> WeightFiles {
    WeightFiles::open(dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn saved_models_hold_the_same_tensors_and_load_to_the_same_logits() {
    for (name, dtype) in [
        ("llama", SaveDtype::F32),
        ("qwen2", SaveDtype::Bf16),
        ("qwen3", SaveDtype::F32),
        ("mistral", SaveDtype::F32),
        ("olmo2", SaveDtype::F32),
    ] {
        let (_, model) = load_model::<B>(&model_dir(name), &Default::default()).unwrap();
        let out = tempfile::tempdir().unwrap();
        save_model(
            &model,
            &model_dir(name),
            out.path(),
            &SaveOptions {
                dtype,
                ..SaveOptions::default()
            },
        )
        .unwrap();
        let original = reread(&model_dir(name));
        let saved = reread(out.path());
        assert_eq!(
            saved.tensors().keys().collect::<Vec<_>>(),
            original.tensors().keys().collect::<Vec<_>>(),
            "{name}: names"
        );
        for tensor in original.tensors().keys() {
            assert_eq!(
                saved.read_f32(tensor).unwrap(),
                original.read_f32(tensor).unwrap(),
                "{name} {tensor}"
            );
        }
        let header = std::fs::read(out.path().join("model.safetensors")).unwrap();
        let header = String::from_utf8_lossy(&header[8..200.min(header.len())]).to_string();
        assert!(
            header.contains(r#""__metadata__":{"format":"pt"}"#),
            "{name}: {header}"
        );
        if name == "qwen2" {
            assert!(
                out.path().join("tokenizer.json").is_file()
                    && out.path().join("generation_config.json").is_file()
            );
        }
        let (_, reloaded) = load_model::<B>(out.path(), &Default::default()).unwrap();
        let (dims, a) = logits_for(&model, &case(name));
        let (_, b) = logits_for(&reloaded, &case(name));
        assert_eq!(
            worst_attended(&a, &b, dims[2], &matrix_i64(&case(name)["attention_mask"])),
            0.0,
            "{name}"
        );
    }
}

#[test]
fn large_models_are_sharded_with_an_index() {
    let (_, model) = load_model::<B>(&model_dir("olmo2"), &Default::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let options = SaveOptions {
        max_shard_bytes: 100_000,
        ..SaveOptions::default()
    };
    save_model(&model, &model_dir("olmo2"), out.path(), &options).unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shards: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(shards.len() >= 3, "{shards:?}");
    assert!(shards.contains("model-00001-of-00003.safetensors") || shards.len() > 3);
    let saved = reread(out.path());
    assert_eq!(
        saved.tensors().len(),
        reread(&model_dir("olmo2")).tensors().len()
    );
}

#[test]
fn adapters_save_under_peft_names_and_load_back() {
    let device = Default::default();
    let (_, base) = load_model::<B>(&model_dir("qwen3"), &device).unwrap();
    let (config, model) = load_adapter(base, &model_dir("qwen3").join("lora"), &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_adapter(&model, &config, "Qwen3ForCausalLM", out.path()).unwrap();
    let original =
        WeightFiles::open_file(&model_dir("qwen3").join("lora/adapter_model.safetensors")).unwrap();
    let saved = WeightFiles::open_file(&out.path().join("adapter_model.safetensors")).unwrap();
    assert_eq!(
        saved.tensors().keys().collect::<Vec<_>>(),
        original.tensors().keys().collect::<Vec<_>>()
    );
    for tensor in original.tensors().keys() {
        assert_eq!(
            saved.read_f32(tensor).unwrap(),
            original.read_f32(tensor).unwrap(),
            "{tensor}"
        );
    }
    let (_, base) = load_model::<B>(&model_dir("qwen3"), &device).unwrap();
    let (reread_config, _) = load_adapter(base, out.path(), &device).unwrap();
    assert_eq!(reread_config, config);

    // A model with adapters is not saved as a full model by accident.
    let (_, base) = load_model::<B>(&model_dir("qwen3"), &device).unwrap();
    let with_fresh = add_lora(base, &LoraConfig::default(), &device);
    let refused = save_model(
        &with_fresh,
        &model_dir("qwen3"),
        out.path(),
        &SaveOptions::default(),
    );
    assert!(refused.is_err());
}

/// Temper's pooled scores (`sequence_scores`) of a fixed right-padded batch, written beside a
/// saved reward model for `check_saved.py` to hold transformers' `logits` to.
fn write_reward_scores(model: &CausalLm<B>, dir: &std::path::Path) {
    let ids = vec![
        vec![562i64, 423, 220, 20, 470, 2042],
        vec![40, 1157, 13, 2042, 2040, 2040],
        vec![695, 423, 220, 23, 470, 13],
    ];
    let mask = vec![vec![1i64; 6], vec![1, 1, 1, 1, 0, 0], vec![1; 6]];
    let positions = vec![
        vec![0i64, 1, 2, 3, 4, 5],
        vec![0, 1, 2, 3, 0, 0],
        vec![0, 1, 2, 3, 4, 5],
    ];
    let scores = model
        .sequence_scores(ints(&ids), floats(&mask), ints(&positions))
        .unwrap();
    let [batch, labels] = scores.dims();
    let flat: Vec<f32> = scores.into_data().to_vec().unwrap();
    let pooled: Vec<&[f32]> = flat.chunks(labels).collect();
    assert_eq!(pooled.len(), batch);
    let json = serde_json::json!({
        "input_ids": ids, "attention_mask": mask, "position_ids": positions, "pooled": pooled,
    });
    std::fs::write(dir.join("temper_scores.json"), json.to_string()).unwrap();
}

/// Writes every family saved by Temper (and the qwen3 adapter) under `$TEMPER_SAVED_DIR` for
/// `fixtures/gen/check_saved.py`, which loads them with transformers and PEFT and compares
/// logits with the fixtures: `TEMPER_SAVED_DIR=/tmp/saved cargo test -p temper-model --test
/// save -- --ignored`. Also reward models: the `LlamaForSequenceClassification` fixture saved
/// again, the qwen2 fixture (tied embeddings, bf16) made a two-label classifier, and a PEFT
/// `SEQ_CLS` adapter with a new score head, each with Temper's pooled scores beside it.
#[test]
#[ignore = "writes files for the Python round-trip check"]
fn write_saved_models_for_transformers() {
    let root =
        std::path::PathBuf::from(std::env::var("TEMPER_SAVED_DIR").expect("TEMPER_SAVED_DIR"));
    for (name, dtype, shard) in [
        ("llama", SaveDtype::F32, 100_000),
        ("qwen2", SaveDtype::Bf16, usize::MAX),
        ("qwen3", SaveDtype::F32, usize::MAX),
        ("mistral", SaveDtype::F16, usize::MAX),
        ("olmo2", SaveDtype::F32, usize::MAX),
    ] {
        let (_, model) = load_model::<B>(&model_dir(name), &Default::default()).unwrap();
        let options = SaveOptions {
            dtype,
            max_shard_bytes: shard,
        };
        save_model(&model, &model_dir(name), &root.join(name), &options).unwrap();
    }
    let (_, base) = load_model::<B>(&model_dir("qwen3"), &Default::default()).unwrap();
    let (config, model) =
        load_adapter(base, &model_dir("qwen3").join("lora"), &Default::default()).unwrap();
    save_adapter(
        &model,
        &config,
        "Qwen3ForCausalLM",
        &root.join("qwen3_lora"),
    )
    .unwrap();

    let device = Default::default();
    let reward_dir = model_dir("train/reward");
    let (_, reward) =
        load_reward_model::<B>(&reward_dir, &ScoreHeadInit::default(), &device).unwrap();
    save_model(
        &reward,
        &reward_dir,
        &root.join("reward"),
        &SaveOptions::default(),
    )
    .unwrap();
    write_reward_scores(&reward, &root.join("reward"));

    let two_labels = ScoreHeadInit {
        num_labels: 2,
        pad_token_id: Some(2040),
        seed: 5,
    };
    let (_, classifier) =
        load_reward_model::<B>(&model_dir("qwen2"), &two_labels, &device).unwrap();
    let options = SaveOptions {
        dtype: SaveDtype::F32,
        ..SaveOptions::default()
    };
    let out = root.join("qwen2_classifier");
    save_model(&classifier, &model_dir("qwen2"), &out, &options).unwrap();
    write_reward_scores(&classifier, &out);

    // A new score head (std 0.5 so it differs clearly from the base's) and fresh adapters.
    let lora = LoraConfig::default();
    let reseeded = ScoreHeadInit {
        seed: 9,
        ..ScoreHeadInit::default()
    };
    let adapted = add_lora(
        add_score_head(reward, &reseeded, 0.5, &device),
        &lora,
        &device,
    );
    let out = root.join("reward_lora");
    save_adapter(&adapted, &lora, "LlamaForSequenceClassification", &out).unwrap();
    write_reward_scores(&adapted, &out);
}
