//! Configs of every supported family, with the fields their hub models use, and the
//! errors of broken ones.

use temper_model::rope::{default_frequencies, inverse_frequencies};
use temper_model::{ConfigError, Family, ModelConfig, NormPlacement, QkNorm};

fn config(extra: &str) -> String {
    format!(
        r#"{{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, {extra}}}"#
    )
}

#[test]
fn every_family_resolves_with_transformers_defaults() {
    let llama = ModelConfig::from_json(&config(r#""model_type": "llama", "eos_token_id": [7, 9]"#))
        .unwrap();
    assert_eq!(llama.family, Family::Llama);
    assert_eq!(
        (llama.head_dim, llama.rms_norm_eps, llama.rope_theta),
        (8, 1e-6, 10_000.0)
    );
    assert_eq!(llama.eos_token_ids, vec![7, 9]);
    assert!(!llama.attention_bias && !llama.tie_word_embeddings);
    assert_eq!(llama.qk_norm, QkNorm::None);

    let qwen2 = ModelConfig::from_json(&config(
        r#""model_type": "qwen2", "tie_word_embeddings": true, "eos_token_id": 5"#,
    ))
    .unwrap();
    assert!(qwen2.attention_bias && !qwen2.output_bias && qwen2.tie_word_embeddings);
    assert_eq!(qwen2.layer_windows, vec![None; 3]);

    let qwen3 = ModelConfig::from_json(&config(r#""model_type": "qwen3""#)).unwrap();
    assert_eq!((qwen3.head_dim, qwen3.qk_norm), (128, QkNorm::PerHead));

    let mistral =
        ModelConfig::from_json(&config(r#""model_type": "mistral", "sliding_window": 16"#))
            .unwrap();
    assert_eq!(mistral.layer_windows, vec![Some(16); 3]);

    let olmo2 = ModelConfig::from_json(&config(r#""model_type": "olmo2""#)).unwrap();
    assert_eq!(
        (olmo2.norm_placement, olmo2.qk_norm, olmo2.rms_norm_eps),
        (NormPlacement::Post, QkNorm::AllHeads, 1e-5)
    );
}

#[test]
fn qwen_sliding_windows_start_at_max_window_layers() {
    let qwen = ModelConfig::from_json(&config(
        r#""model_type": "qwen2", "use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1"#,
    ))
    .unwrap();
    assert_eq!(qwen.layer_windows, vec![None, Some(8), Some(8)]);
    let off =
        ModelConfig::from_json(&config(r#""model_type": "qwen2", "sliding_window": 8"#)).unwrap();
    assert_eq!(off.layer_windows, vec![None; 3]);
}

#[test]
fn llama3_rope_scaling_reads_both_spellings_and_matches_transformers() {
    let old = config(
        r#""model_type": "llama", "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
            "rope_type": "llama3"}"#,
    );
    let new = config(
        r#""model_type": "llama", "rope_parameters": {"rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
            "rope_type": "llama3"}"#,
    );
    let old = ModelConfig::from_json(&old).unwrap();
    assert_eq!(old, ModelConfig::from_json(&new).unwrap());
    let scaled = inverse_frequencies(&old);
    let base = default_frequencies(500000.0, 8);
    // Wavelengths 2π/f ≈ [6.3, 167, 4443, 118000] against 64/4 = 16 and 64/1 = 64: the first
    // is kept, the rest divided by 8.
    assert_eq!(scaled[0], base[0]);
    for i in 1..4 {
        assert_eq!(scaled[i], base[i] / 8.0);
    }
    // With an original context of 512 the second wavelength (167) lies between 128 and 512 and
    // is interpolated. Values from transformers 5.23 `_compute_llama3_parameters` (float32).
    let mut wide = old.clone();
    wide.rope_scaling
        .as_mut()
        .unwrap()
        .original_max_position_embeddings = 512;
    let expected = [
        1.0,
        0.02734413370490074,
        0.00017677668074611574,
        6.647869668086059e-06,
    ];
    for (ours, theirs) in inverse_frequencies(&wide).iter().zip(expected) {
        assert!((ours - theirs).abs() <= 1e-6 * theirs, "{ours} vs {theirs}");
    }
}

#[test]
fn broken_configs_are_clear_errors() {
    let unknown = ModelConfig::from_json(&config(r#""model_type": "gpt2""#)).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "unsupported model_type `gpt2`; supported: llama, qwen2, qwen3, mistral, olmo2"
    );
    assert_eq!(
        ModelConfig::from_json(&config(r#""x": 1"#)).unwrap_err(),
        ConfigError::MissingModelType
    );
    let gqa = ModelConfig::from_json(&config(
        r#""model_type": "llama", "num_key_value_heads": 3"#,
    ))
    .unwrap_err();
    assert!(gqa.to_string().contains("num_key_value_heads"), "{gqa}");
    let act = ModelConfig::from_json(&config(r#""model_type": "llama", "hidden_act": "gelu""#))
        .unwrap_err();
    assert!(act.to_string().contains("hidden_act"), "{act}");
    let rope = ModelConfig::from_json(&config(
        r#""model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 2.0}"#,
    ))
    .unwrap_err();
    assert!(rope.to_string().contains("yarn"), "{rope}");
    assert!(matches!(
        ModelConfig::from_json("{"),
        Err(ConfigError::Json(_))
    ));
    let missing = ModelConfig::from_json(r#"{"model_type": "qwen2"}"#).unwrap_err();
    assert!(missing.to_string().contains("is missing"), "{missing}");
    // Heads that do not divide the hidden size once read as "`head_dim` is missing".
    let uneven = ModelConfig::from_json(
        r#"{"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 3}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        uneven.contains("num_attention_heads") && uneven.contains("must divide hidden_size (32)"),
        "{uneven}"
    );
}

#[test]
fn configs_written_by_transformers_resolve() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models");
    let read = |name: &str| {
        let text =
            std::fs::read_to_string(format!("{dir}/{name}/config.json")).expect("fixture config");
        ModelConfig::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let llama = read("llama");
    assert_eq!((llama.rope_theta, llama.head_dim), (500000.0, 4));
    assert_eq!(
        llama.rope_scaling.unwrap().original_max_position_embeddings,
        16
    );
    let qwen2 = read("qwen2");
    assert!(qwen2.tie_word_embeddings && qwen2.attention_bias);
    assert_eq!(qwen2.rope_theta, 1000000.0);
    assert_eq!(read("qwen3").head_dim, 8);
    assert_eq!(read("mistral").layer_windows, vec![Some(4); 2]);
    let olmo2 = read("olmo2");
    assert_eq!(
        (olmo2.norm_placement, olmo2.eos_token_ids.clone()),
        (NormPlacement::Post, vec![2042])
    );
}

#[test]
fn a_config_past_any_model_is_refused_before_anything_is_sized_by_it() {
    // A billion layers once built a per-layer list of a billion entries (20 GB and climbing);
    // billion-wide layers once aborted on a failed allocation.
    let sized = |hidden: usize, layers: usize| {
        format!(
            r#"{{"model_type": "llama", "vocab_size": 64, "hidden_size": {hidden},
                "intermediate_size": {hidden}, "num_hidden_layers": {layers},
                "num_attention_heads": 4, "num_key_value_heads": 2}}"#
        )
    };
    for (hidden, layers) in [(32, 1_000_000_000), (1_000_000_000, 3)] {
        match ModelConfig::from_json(&sized(hidden, layers)) {
            Err(ConfigError::TooLarge { parameters }) => {
                assert!(parameters > temper_model::MAX_PARAMETERS)
            }
            other => panic!("hidden {hidden}, layers {layers}: {other:?}"),
        }
    }
    let fits = ModelConfig::from_json(&config(r#""model_type": "llama""#)).unwrap();
    let per_layer = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 48;
    assert_eq!(fits.parameter_count(), 64 * 32 * 2 + 3 * per_layer);
}
