//! LoRA: a PEFT adapter gives transformers + PEFT's logits and greedy tokens; merged equals
//! unmerged; adapters off equal the base model; fresh adapters change nothing and train alone.

mod common;

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use common::{
    B, anchor_logits, case, logits_for, matrix_i64, model_dir, token_rows, worst_attended,
};
use temper_model::{
    CausalLm, GenerationConfig, LoraConfig, add_lora, generate, load_adapter, load_model,
    merge_adapters, set_adapters_enabled,
};

fn qwen3_with_adapter() -> CausalLm<B> {
    let (_, base) = load_model(&model_dir("qwen3"), &Default::default()).unwrap();
    let (config, model) =
        load_adapter(base, &model_dir("qwen3").join("lora"), &Default::default()).unwrap();
    assert_eq!(
        (config.rank, config.alpha, config.use_rslora),
        (4, 8.0, true)
    );
    model
}

fn worst_against(model: &CausalLm<B>, anchor: &str, case_name: &str) -> f32 {
    let case = case(case_name);
    let (dims, ours) = logits_for(model, &case);
    let (_, theirs) = anchor_logits(anchor);
    worst_attended(
        &ours,
        &theirs,
        dims[2],
        &matrix_i64(&case["attention_mask"]),
    )
}

#[test]
fn peft_adapter_matches_transformers_and_peft() {
    let model = qwen3_with_adapter();
    let worst = worst_against(&model, "qwen3_lora", "qwen3_lora");
    assert!(worst <= 1e-4, "adapter logits differ by {worst}");
    let case = case("qwen3_lora");
    let prompt: Vec<Vec<u32>> = token_rows(&case["greedy_prompt"]);
    let config = GenerationConfig {
        max_new_tokens: 20,
        pad_token_id: 2040,
        ..GenerationConfig::default()
    };
    let expected: Vec<Vec<u32>> = token_rows(&case["greedy_tokens"]);
    assert_eq!(
        generate(&model, &prompt, &config, &Default::default()).tokens,
        expected
    );
}

#[test]
fn merged_equals_unmerged_and_disabled_equals_base() {
    let model = qwen3_with_adapter();
    let (_, unmerged) = logits_for(&model, &case("qwen3_lora"));
    let merged_model = merge_adapters(qwen3_with_adapter());
    let (dims, merged) = logits_for(&merged_model, &case("qwen3_lora"));
    let mask = matrix_i64(&case("qwen3_lora")["attention_mask"]);
    let worst = worst_attended(&merged, &unmerged, dims[2], &mask);
    assert!(worst <= 1e-5, "merged differs from unmerged by {worst}");

    let mut switched_off = qwen3_with_adapter();
    set_adapters_enabled(&mut switched_off, false);
    let worst = worst_against(&switched_off, "qwen3", "qwen3");
    assert!(
        worst <= 1e-4,
        "adapters off differ from the base by {worst}"
    );
}

#[test]
fn fresh_adapters_change_nothing_and_are_all_that_trains() {
    type G = Autodiff<B>;
    let device = Default::default();
    let (_, base) = load_model::<G>(&model_dir("olmo2"), &device).unwrap();
    let config = LoraConfig {
        rank: 2,
        alpha: 4.0,
        ..LoraConfig::default()
    };
    let (_, plain) = load_model::<G>(&model_dir("olmo2"), &device).unwrap();
    let model = add_lora(base, &config, &device);
    let ids = Tensor::<G, 2, burn::tensor::Int>::from_ints([[5, 6, 7, 8]], &device);
    let mask = Tensor::<G, 2>::ones([1, 4], &device);
    let positions = Tensor::<G, 2, burn::tensor::Int>::from_ints([[0, 1, 2, 3]], &device);
    let with = model.forward(ids.clone(), mask.clone(), positions.clone());
    let without = plain.forward(ids, mask, positions);
    let difference: f32 = (with.clone() - without).abs().max().into_scalar();
    assert_eq!(difference, 0.0, "B starts at zero");

    let grads = with.sum().backward();
    let projection = &model.layers[0].self_attn.q_proj;
    assert!(
        projection.linear.weight.grad(&grads).is_none(),
        "base weights are frozen"
    );
    assert!(
        model.embed_tokens.weight.grad(&grads).is_none(),
        "embeddings are frozen"
    );
    let lora = projection.lora.as_ref().unwrap();
    assert!(lora.b.grad(&grads).is_some(), "the adapter trains");
}

#[test]
fn an_adapter_for_another_shape_is_an_error() {
    let (_, base) = load_model::<B>(&model_dir("llama"), &Default::default()).unwrap();
    let error = load_adapter(base, &model_dir("qwen3").join("lora"), &Default::default())
        .expect_err("qwen3's adapter does not fit llama");
    assert!(error.to_string().contains("lora_A"), "{error}");
}
