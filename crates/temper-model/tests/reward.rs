//! Reward models (a score head in place of the LM head): a `LlamaForSequenceClassification`
//! model gives transformers' per-position and pooled scores (`fixtures/gen/reward_parity.py`),
//! a causal LM becomes a fresh reward model with its decoder unchanged, saved reward models load
//! back as what they were, and LoRA keeps the score head trainable and saves it as PEFT's
//! `SEQ_CLS` does.

mod common;

use burn::backend::Autodiff;
use burn::tensor::{Int, Tensor, TensorData};
use common::{B, floats, ints, matrix_i64, model_dir, root};
use serde_json::Value;
use temper_model::{
    CausalLm, HeadKind, HeadRef, LoadError, LoraConfig, ModelConfig, SaveOptions, ScoreHeadInit,
    WeightFiles, add_lora, last_token_indices, last_token_rewards, last_token_scores, load_adapter,
    load_model, load_reward_model, random_model, save_adapter, save_model,
};

fn case() -> Value {
    let text =
        std::fs::read_to_string(root().join("fixtures/parity/train/reward_scores.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn reward_dir() -> std::path::PathBuf {
    model_dir("train/reward")
}

fn values(tensor: Tensor<B, 2>) -> Vec<f32> {
    tensor.into_data().to_vec().unwrap()
}

#[test]
fn sequence_classification_model_matches_transformers() {
    let case = case();
    let (config, model): (ModelConfig, CausalLm<B>) = load_reward_model(
        &reward_dir(),
        &ScoreHeadInit::default(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        config.head,
        HeadKind::SequenceClassification { num_labels: 1 }
    );
    assert_eq!(config.pad_token_id, Some(2040));
    assert!(matches!(model.head(), HeadRef::Score(_)) && model.num_labels() == Some(1));

    let (ids, mask, positions) = (
        matrix_i64(&case["input_ids"]),
        matrix_i64(&case["attention_mask"]),
        matrix_i64(&case["position_ids"]),
    );
    let scores = model.forward(ints(&ids), floats(&mask), ints(&positions));
    let [batch, seq, labels] = scores.dims();
    assert_eq!((batch, seq, labels), (ids.len(), ids[0].len(), 1));
    let ours: Vec<f32> = scores.clone().into_data().to_vec().unwrap();
    let theirs: Vec<f32> = case["scores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .flat_map(|position| position.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let attended = mask.iter().flatten();
    let worst = ours
        .iter()
        .zip(&theirs)
        .zip(attended)
        .filter(|(_, m)| **m != 0)
        .map(|((a, b), _)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "per-position scores differ by {worst}");

    // transformers' pooling: the rightmost non-pad token (row 3 ends with a real pad-id token).
    let indices: Vec<i64> = last_token_indices(ints(&ids), floats(&mask), Some(2040))
        .into_data()
        .convert::<i64>()
        .to_vec()
        .unwrap();
    let expected: Vec<i64> = case["pooled_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(indices, expected);
    let pooled = values(
        model
            .sequence_scores(ints(&ids), floats(&mask), ints(&positions))
            .unwrap(),
    );
    let worst_pooled = pooled
        .iter()
        .zip(case["pooled"].as_array().unwrap())
        .map(|(a, b)| (a - b[0].as_f64().unwrap() as f32).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst_pooled <= 1e-4,
        "pooled scores differ by {worst_pooled}"
    );
    let rewards: Vec<f32> = last_token_rewards(scores, ints(&ids), floats(&mask), Some(2040))
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(rewards, pooled);
    eprintln!("reward scores vs transformers: per position {worst:.2e}, pooled {worst_pooled:.2e}");
}

#[test]
fn last_token_rules() {
    let device = Default::default();
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![5i64, 6, 7, 0, 5, 6, 0, 0, 0, 0, 0, 0], [3, 4]),
        &device,
    );
    let mask = Tensor::<B, 2>::from_data(
        TensorData::new(
            vec![1.0f32, 1., 1., 0., 1., 1., 1., 0., 0., 0., 0., 0.],
            [3, 4],
        ),
        &device,
    );
    let at = |pad| -> Vec<i64> {
        last_token_indices(ids.clone(), mask.clone(), pad)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap()
    };
    // Pad id 0: row 1's third token is a real 0, skipped as transformers skips it. No pad id:
    // the last attended token. A row with nothing attended reads position 0.
    assert_eq!(at(Some(0)), vec![2, 1, 0]);
    assert_eq!(at(None), vec![2, 2, 0]);

    let scores = Tensor::<B, 1, Int>::arange(0..24, &device)
        .float()
        .reshape([3, 4, 2]);
    let pooled = values(last_token_scores(
        scores.clone(),
        ids.clone(),
        mask.clone(),
        None,
    ));
    assert_eq!(pooled, vec![4.0, 5.0, 12.0, 13.0, 16.0, 17.0]);
    let refused = last_token_rewards(scores, ids, mask, None).unwrap_err();
    assert_eq!(refused.0, 2);
}

#[test]
fn labels_come_from_architectures_and_id2label() {
    let base = std::fs::read_to_string(reward_dir().join("config.json")).unwrap();
    let mut value: Value = serde_json::from_str(&base).unwrap();
    let head = |v: &Value| ModelConfig::from_json(&v.to_string()).unwrap().head;
    assert_eq!(
        head(&value),
        HeadKind::SequenceClassification { num_labels: 1 }
    );
    value["id2label"] = serde_json::json!({"0": "bad", "1": "good", "2": "great"});
    assert_eq!(
        head(&value),
        HeadKind::SequenceClassification { num_labels: 3 }
    );
    value.as_object_mut().unwrap().remove("id2label");
    assert_eq!(
        head(&value),
        HeadKind::SequenceClassification { num_labels: 2 }
    );
    value["num_labels"] = serde_json::json!(4);
    assert_eq!(
        head(&value),
        HeadKind::SequenceClassification { num_labels: 4 }
    );
    value["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    assert_eq!(head(&value), HeadKind::LanguageModel);
    value["architectures"] = serde_json::json!(["LlamaForSequenceClassification"]);
    value["id2label"] = serde_json::json!({});
    assert!(ModelConfig::from_json(&value.to_string()).is_err());
    // An unusable pad id never stops a model from loading.
    value["id2label"] = serde_json::json!({"0": "LABEL_0"});
    value["pad_token_id"] = serde_json::json!(-1);
    assert_eq!(
        ModelConfig::from_json(&value.to_string())
            .unwrap()
            .pad_token_id,
        None
    );
}

#[test]
fn load_model_refuses_a_reward_model_and_reward_models_must_match_the_label_count() {
    let device = Default::default();
    match load_model::<B>(&reward_dir(), &device) {
        Err(error @ LoadError::NotCausalLm { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("(LlamaForSequenceClassification)"),
                "{message}"
            );
            // Once it named an internal function (load_reward_model) to a command-line user.
            assert!(
                message.contains("`reward_model` in `temper grpo|ppo`"),
                "{message}"
            );
            assert!(!message.contains("load_"), "{message}");
        }
        other => panic!("expected NotCausalLm, got {:?}", other.map(|_| ())),
    }
    let two = ScoreHeadInit {
        num_labels: 2,
        ..ScoreHeadInit::default()
    };
    assert!(matches!(
        load_reward_model::<B>(&reward_dir(), &two, &device),
        Err(LoadError::Labels {
            found: 1,
            wanted: 2,
            ..
        })
    ));
    let none = ScoreHeadInit {
        num_labels: 0,
        ..ScoreHeadInit::default()
    };
    assert!(matches!(
        load_reward_model::<B>(&model_dir("train/policy"), &none, &device),
        Err(LoadError::NoLabels)
    ));
}

/// Every decoder tensor of a model, by HF name, as saved.
fn decoder_tensors(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let files = WeightFiles::open(dir).unwrap();
    files
        .tensors()
        .keys()
        .filter(|name| name.starts_with("model."))
        .map(|name| (name.clone(), files.read_f32(name).unwrap().0))
        .collect()
}

#[test]
fn a_causal_lm_becomes_a_fresh_reward_model_that_saves_and_loads_back() {
    let device = Default::default();
    let policy = model_dir("train/policy");
    let init = ScoreHeadInit {
        num_labels: 64,
        pad_token_id: Some(7),
        seed: 3,
    };
    let (config, model): (_, CausalLm<B>) = load_reward_model(&policy, &init, &device).unwrap();
    assert_eq!(
        config.head,
        HeadKind::SequenceClassification { num_labels: 64 }
    );
    assert_eq!(config.pad_token_id, Some(7));
    let score = model.score_head().unwrap();
    assert_eq!(
        (score.weight.dims(), score.pad_token_id),
        ([32, 64], Some(7))
    );
    assert!(matches!(model.head(), HeadRef::Score(_)));
    // transformers' initialisation: N(0, initializer_range²), seeded.
    let weights: Vec<f32> = score.weight.val().into_data().to_vec().unwrap();
    let n = weights.len() as f64;
    let mean = weights.iter().map(|&w| w as f64).sum::<f64>() / n;
    let std = (weights
        .iter()
        .map(|&w| (w as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    assert!(
        mean.abs() < 0.002 && (std - 0.02).abs() < 0.002,
        "{mean} {std}"
    );
    let (_, again): (_, CausalLm<B>) = load_reward_model(&policy, &init, &device).unwrap();
    let reseeded = ScoreHeadInit { seed: 4, ..init };
    let (_, other): (_, CausalLm<B>) = load_reward_model(&policy, &reseeded, &device).unwrap();
    let head = |m: &CausalLm<B>| values(m.score_head().unwrap().weight.val());
    assert_eq!(head(&again), weights);
    assert_ne!(head(&other), weights);

    // Saved: transformers' sequence-classification layout and config; the decoder untouched.
    let out = tempfile::tempdir().unwrap();
    save_model(&model, &policy, out.path(), &SaveOptions::default()).unwrap();
    let saved = WeightFiles::open(out.path()).unwrap();
    assert!(saved.tensors().contains_key("score.weight"));
    assert!(!saved.tensors().contains_key("lm_head.weight"));
    assert_eq!(saved.tensors()["score.weight"].shape, vec![64, 32]);
    assert_eq!(decoder_tensors(out.path()), decoder_tensors(&policy));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["architectures"],
        serde_json::json!(["LlamaForSequenceClassification"])
    );
    assert_eq!(json["id2label"].as_object().unwrap().len(), 64);
    assert_eq!(json["id2label"]["10"], "LABEL_10");
    assert_eq!(json["label2id"]["LABEL_10"], 10);
    assert_eq!(json["pad_token_id"], 7);
    let (reloaded_config, reloaded): (_, CausalLm<B>) =
        load_reward_model(out.path(), &init, &device).unwrap();
    assert_eq!(reloaded_config, config);
    assert_eq!(head(&reloaded), weights);
    let ids = vec![vec![5i64, 6, 7, 8], vec![9, 10, 0, 0]];
    let mask = vec![vec![1i64, 1, 1, 1], vec![1, 1, 0, 0]];
    let positions = vec![vec![0i64, 1, 2, 3], vec![0, 1, 0, 0]];
    let run = |m: &CausalLm<B>| {
        values(
            m.sequence_scores(ints(&ids), floats(&mask), ints(&positions))
                .unwrap(),
        )
    };
    assert_eq!(run(&reloaded), run(&model));
    // The causal LM itself gives logits over the vocabulary, and no sequence scores.
    let (_, lm) = load_model::<B>(&policy, &device).unwrap();
    assert!(
        lm.sequence_scores(ints(&ids), floats(&mask), ints(&positions))
            .is_none()
    );
    assert_eq!(
        lm.forward(ints(&ids), floats(&mask), ints(&positions))
            .dims(),
        [2, 4, 2048]
    );
}

#[test]
fn random_models_follow_the_head_of_their_config() {
    let text = std::fs::read_to_string(reward_dir().join("config.json")).unwrap();
    let config = ModelConfig::from_json(&text).unwrap();
    let model = random_model::<B>(&config, &Default::default());
    assert_eq!(model.num_labels(), Some(1));
    assert!(matches!(model.head(), HeadRef::Score(_)));
}

#[test]
fn lora_trains_the_score_head_and_saves_it_as_peft_seq_cls() {
    type Ad = Autodiff<B>;
    let device = Default::default();
    let (_, model) =
        load_reward_model::<Ad>(&reward_dir(), &ScoreHeadInit::default(), &device).unwrap();
    let adapted = add_lora(model, &LoraConfig::default(), &device);
    assert!(adapted.score_head().unwrap().weight.is_require_grad());
    assert!(!adapted.embed_tokens.weight.is_require_grad());
    let out = tempfile::tempdir().unwrap();
    save_adapter(
        &adapted,
        &LoraConfig::default(),
        "LlamaForSequenceClassification",
        out.path(),
    )
    .unwrap();
    let saved = WeightFiles::open_file(&out.path().join("adapter_model.safetensors")).unwrap();
    assert_eq!(
        saved.tensors()["base_model.model.score.weight"].shape,
        vec![1, 32]
    );
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(
        config["modules_to_save"],
        serde_json::json!(["classifier", "score"])
    );

    // Loading puts the saved head back, trainable.
    let (_, fresh) = load_reward_model::<Ad>(
        &model_dir("train/policy"),
        &ScoreHeadInit::default(),
        &device,
    )
    .unwrap();
    let (_, loaded) = load_adapter(fresh, out.path(), &device).unwrap();
    let head = |m: &CausalLm<Ad>| -> Vec<f32> {
        m.score_head()
            .unwrap()
            .weight
            .val()
            .into_data()
            .to_vec()
            .unwrap()
    };
    assert_eq!(head(&loaded), head(&adapted));
    assert!(loaded.score_head().unwrap().weight.is_require_grad());
    // A causal LM has no head for those weights: a typed error, not a silent drop.
    let (_, lm) = load_model::<Ad>(&model_dir("train/policy"), &device).unwrap();
    assert!(load_adapter(lm, out.path(), &device).is_err());
}
