//! Per-layer activation checkpointing changes no gradient: every family, tied and untied heads,
//! a reward model's score head (alone or beside LoRA adapters), LoRA adapters over a frozen base,
//! and LoRA dropout (whose masks the recomputation replays).

mod common;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use common::{B, case, floats, ints, matrix_i64, model_dir, root};
use temper_model::{
    Backward, CausalLm, GradientCheckpointing, LoraConfig, ScoreHeadInit, add_lora,
    last_token_rewards, load_adapter, load_model, load_reward_model, loss_and_gradients,
};

type Ad = Autodiff<B>;

/// Every float parameter's id and whether it trains.
#[derive(Default)]
struct Parameters(Vec<(ParamId, bool)>);

impl ModuleVisitor<Ad> for Parameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
        self.0.push((param.id, param.is_require_grad()));
    }
}

/// The recorded batch of a parity case, on the autodiff backend.
fn batch(name: &str) -> (Tensor<Ad, 2, Int>, Tensor<Ad, 2>, Tensor<Ad, 2, Int>) {
    let case = case(name);
    (
        Tensor::from_inner(ints(&matrix_i64(&case["input_ids"]))),
        Tensor::from_inner(floats(&matrix_i64(&case["attention_mask"]))),
        Tensor::from_inner(ints(&matrix_i64(&case["position_ids"]))),
    )
}

/// Mean log-likelihood of each attended input token (a loss that reaches every logit row).
fn pass(
    model: &CausalLm<Ad>,
    name: &str,
    checkpointing: GradientCheckpointing,
) -> Backward<Ad, ()> {
    let (ids, mask, positions) = batch(name);
    let labels = ids.clone().unsqueeze_dim::<3>(2);
    let weights = mask.clone();
    loss_and_gradients(model, ids, mask, positions, checkpointing, |head| {
        let picked = log_softmax(head.logits(), 2)
            .gather(2, labels)
            .squeeze_dim::<2>(2);
        let count = weights.clone().sum();
        ((picked * weights).sum().neg() / count, ())
    })
}

/// Flattened gradient of one parameter, if it has one.
fn gradient(gradients: &GradientsParams, id: ParamId) -> Option<Vec<f32>> {
    let as_vec = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap();
    gradients.get::<B, 2>(id).map(as_vec).or_else(|| {
        gradients
            .get::<B, 1>(id)
            .map(|t| t.into_data().to_vec().unwrap())
    })
}

/// Asserts both passes give the same loss and, for every trainable parameter, the same
/// gradient (within 1e-5 of the gradient's largest entry); returns how many were compared.
fn assert_same(model: &CausalLm<Ad>, off: Backward<Ad, ()>, per_layer: Backward<Ad, ()>) -> usize {
    let (a, b) = (off.loss.into_scalar(), per_layer.loss.into_scalar());
    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "loss {a} vs {b}");
    let mut parameters = Parameters::default();
    model.visit(&mut parameters);
    let mut compared = 0;
    for (id, trains) in parameters.0 {
        let (x, y) = (
            gradient(&off.gradients, id),
            gradient(&per_layer.gradients, id),
        );
        assert_eq!(
            x.is_some(),
            trains,
            "plain pass: gradient iff the parameter trains"
        );
        assert_eq!(
            y.is_some(),
            trains,
            "checkpointed pass: gradient iff the parameter trains"
        );
        let (Some(x), Some(y)) = (x, y) else { continue };
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let worst = x
            .iter()
            .zip(&y)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{id:?}: differs by {worst} (largest {scale})"
        );
        compared += 1;
    }
    compared
}

#[test]
fn checkpointing_changes_no_gradient_in_any_family() {
    for family in ["llama", "qwen2", "qwen3", "mistral", "olmo2"] {
        let (config, model) = load_model::<Ad>(&model_dir(family), &Default::default()).unwrap();
        let off = pass(&model, family, GradientCheckpointing::Off);
        let per_layer = pass(&model, family, GradientCheckpointing::PerLayer);
        let compared = assert_same(&model, off, per_layer);
        // Embeddings, head unless tied, final norm, and per layer 2 norms + 7 projections.
        let minimum = 2 + usize::from(!config.tie_word_embeddings) + 9 * config.num_layers;
        assert!(
            compared >= minimum,
            "{family}: {compared} gradients compared"
        );
    }
}

fn qwen3_with_adapter(dropout: f64) -> CausalLm<Ad> {
    let device = Default::default();
    let (_, base) = load_model::<Ad>(&model_dir("qwen3"), &device).unwrap();
    let (_, mut model) = load_adapter(base, &model_dir("qwen3").join("lora"), &device).unwrap();
    for layer in model.layers.iter_mut() {
        for (_, projection) in layer.projections_mut() {
            if let Some(lora) = projection.lora.as_mut() {
                lora.dropout.prob = dropout;
            }
        }
    }
    model
}

#[test]
fn checkpointing_changes_no_adapter_gradient() {
    let model = qwen3_with_adapter(0.0);
    let off = pass(&model, "qwen3", GradientCheckpointing::Off);
    let per_layer = pass(&model, "qwen3", GradientCheckpointing::PerLayer);
    // Only the adapters train: two matrices on each of 7 projections in 2 layers.
    assert_eq!(assert_same(&model, off, per_layer), 28);
}

#[test]
fn the_recomputation_replays_lora_dropout() {
    let model = qwen3_with_adapter(0.5);
    let device = Default::default();
    Ad::seed(&device, 7);
    let off = pass(&model, "qwen3", GradientCheckpointing::Off);
    Ad::seed(&device, 7);
    let per_layer = pass(&model, "qwen3", GradientCheckpointing::PerLayer);
    let without_dropout = pass(
        &qwen3_with_adapter(0.0),
        "qwen3",
        GradientCheckpointing::Off,
    );
    let (with, without) = (
        off.loss.clone().into_scalar(),
        without_dropout.loss.into_scalar(),
    );
    assert!(
        (with - without).abs() > 1e-4,
        "dropout is active: {with} vs {without}"
    );
    assert_eq!(assert_same(&model, off, per_layer), 28);
}

/// The reward fixture's batch through a reward model: the mean of the rows' rewards (each row's
/// score at its last token).
fn reward_pass(model: &CausalLm<Ad>, checkpointing: GradientCheckpointing) -> Backward<Ad, ()> {
    let text =
        std::fs::read_to_string(root().join("fixtures/parity/train/reward_scores.json")).unwrap();
    let case: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Tensor<Ad, 2, Int> = Tensor::from_inner(ints(&matrix_i64(&case["input_ids"])));
    let mask: Tensor<Ad, 2> = Tensor::from_inner(floats(&matrix_i64(&case["attention_mask"])));
    let positions = Tensor::from_inner(ints(&matrix_i64(&case["position_ids"])));
    let (row_ids, row_mask) = (ids.clone(), mask.clone());
    loss_and_gradients(model, ids, mask, positions, checkpointing, move |head| {
        let rewards = last_token_rewards(head.logits(), row_ids, row_mask, Some(2040)).unwrap();
        (rewards.mean(), ())
    })
}

#[test]
fn checkpointing_changes_no_reward_model_gradient() {
    let device = Default::default();
    let (config, model) = load_reward_model::<Ad>(
        &model_dir("train/reward"),
        &ScoreHeadInit::default(),
        &device,
    )
    .unwrap();
    let off = reward_pass(&model, GradientCheckpointing::Off);
    let per_layer = reward_pass(&model, GradientCheckpointing::PerLayer);
    // Embeddings, score head, final norm, and per layer 2 norms + 7 projections.
    assert_eq!(
        assert_same(&model, off, per_layer),
        3 + 9 * config.num_layers
    );
    // With LoRA: the adapters and the score head train.
    let adapted = add_lora(model, &LoraConfig::default(), &device);
    let off = reward_pass(&adapted, GradientCheckpointing::Off);
    let per_layer = reward_pass(&adapted, GradientCheckpointing::PerLayer);
    assert_eq!(
        assert_same(&adapted, off, per_layer),
        1 + 14 * config.num_layers
    );
}
