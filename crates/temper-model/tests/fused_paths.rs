//! The fused paths on real models: on every family's fixture, the fused LM-head log-probs
//! (and their statistics) equal the plain log-softmax-and-gather on the same hidden states, and
//! a LoRA model's loss and adapter gradients through every fused kernel (burn-flex) equal those
//! of the plain ops (burn-ndarray).

mod common;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{case, matrix_i64, model_dir};
use temper_kernels::{AutodiffKernelBackend, KernelBackend, lm_head_log_probs, plain};
use temper_model::{
    CausalLm, GradientCheckpointing, LoraConfig, add_lora, load_model, loss_and_gradients,
};

const FAMILIES: [&str; 5] = ["llama", "qwen2", "qwen3", "mistral", "olmo2"];

/// A recorded case's ids, mask and positions on backend `K`.
fn inputs<K: KernelBackend>(name: &str) -> (Tensor<K, 2, Int>, Tensor<K, 2>, Tensor<K, 2, Int>) {
    let case = case(name);
    let device = Default::default();
    let rows = |key: &str| matrix_i64(&case[key]);
    let int = |rows: Vec<Vec<i64>>| {
        let shape = [rows.len(), rows[0].len()];
        Tensor::<K, 2, Int>::from_data(TensorData::new(rows.concat(), shape), &device)
    };
    let mask = rows("attention_mask");
    let shape = [mask.len(), mask[0].len()];
    let flat: Vec<f32> = mask.concat().into_iter().map(|x| x as f32).collect();
    (
        int(rows("input_ids")),
        Tensor::from_data(TensorData::new(flat, shape), &device),
        int(rows("position_ids")),
    )
}

fn values<K: KernelBackend, const D: usize>(t: Tensor<K, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// `|a − b| ≤ tolerance · max(1, |b|)` elementwise.
fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tolerance: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * b.abs().max(1.0),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn fused_lm_head_log_probs_equal_the_plain_path_on_every_family() {
    for name in FAMILIES {
        let (_, model): (_, CausalLm<Flex>) =
            load_model(&model_dir(name), &Default::default()).unwrap();
        let (ids, mask, positions) = inputs::<Flex>(name);
        let head = model.head_input(ids.clone(), mask, positions);
        let weight = head.lm_head_weight().expect("a causal LM");
        let [rows, seq, width] = head.hidden.dims();
        let hidden = head
            .hidden
            .clone()
            .slice([0..rows, 0..seq - 1, 0..width])
            .reshape([rows * (seq - 1), width]);
        let labels = ids.slice([0..rows, 1..seq]).reshape([rows * (seq - 1)]);
        for scale in [1.0, 1.0 / 0.7] {
            let fused =
                lm_head_log_probs(hidden.clone(), weight.clone(), labels.clone(), scale, true);
            let reference = plain::lm_head_log_probs(
                hidden.clone(),
                weight.clone(),
                labels.clone(),
                scale,
                true,
            );
            let (ours, theirs) = (fused.stats.unwrap(), reference.stats.unwrap());
            assert_close(
                &format!("{name} log-probs"),
                &values(fused.log_probs),
                &values(reference.log_probs),
                1e-5,
            );
            assert_close(
                &format!("{name} entropy"),
                &values(ours.entropy),
                &values(theirs.entropy),
                1e-5,
            );
            assert_close(
                &format!("{name} mean logit"),
                &values(ours.mean_logit),
                &values(theirs.mean_logit),
                1e-5,
            );
            assert_eq!(values(ours.is_top1), values(theirs.is_top1), "{name} top-1");
        }
    }
}

/// Every LoRA parameter's gradient, in visiting order.
fn lora_gradients<A: AutodiffBackend, M: AutodiffModule<A>>(
    model: &M,
    gradients: &burn::optim::GradientsParams,
) -> Vec<Vec<f32>> {
    struct Collect<'a> {
        gradients: &'a burn::optim::GradientsParams,
        found: Vec<Vec<f32>>,
    }
    impl<A: AutodiffBackend> ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.gradients.get::<A::InnerBackend, D>(param.id) {
                self.found
                    .push(g.into_data().convert::<f32>().to_vec().unwrap());
            }
        }
    }
    let mut collect = Collect {
        gradients,
        found: Vec::new(),
    };
    model.visit(&mut collect);
    collect.found
}

/// The next-token loss of a LoRA model on a recorded case, and its adapters' gradients.
fn lora_pass<A: AutodiffKernelBackend>(name: &str) -> (f32, Vec<Vec<f32>>) {
    let device = Default::default();
    let (_, base): (_, CausalLm<A>) = load_model(&model_dir(name), &device).unwrap();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let model = add_lora(base, &config, &device).map(&mut SameAdapters);
    let (ids, mask, positions) = inputs::<A>(name);
    let [rows, seq] = ids.dims();
    let targets = ids.clone().slice([0..rows, 1..seq]);
    let weights = mask.clone().slice([0..rows, 1..seq]);
    let backward = loss_and_gradients(
        &model,
        ids,
        mask,
        positions,
        GradientCheckpointing::Off,
        |head| {
            let tokens = head.token_log_probs(0, targets, 1.0, false).unwrap();
            ((tokens.log_probs * weights).sum().neg(), ())
        },
    );
    let loss = values(backward.loss)[0];
    (loss, lora_gradients(&model, &backward.gradients))
}

/// Sets every trainable parameter (the adapters) to the same fixed values on every backend, B
/// nonzero (LoRA's B starts at zero, which would leave A without a gradient).
struct SameAdapters;

impl<A: AutodiffBackend> burn::module::ModuleMapper<A> for SameAdapters {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        if !param.is_require_grad() {
            return param;
        }
        param.map(|t| {
            let shape = t.shape();
            let fixed: Vec<f32> = (0..shape.num_elements())
                .map(|i| ((i * 7919 % 2001) as f32 / 1000.0 - 1.0) * 0.05)
                .collect();
            Tensor::from_data(TensorData::new(fixed, shape), &t.device()).require_grad()
        })
    }
}

#[test]
fn lora_gradients_through_the_fused_kernels_equal_the_plain_ops() {
    for name in ["llama", "qwen3"] {
        let (fused_loss, fused) = lora_pass::<Autodiff<Flex>>(name);
        let (plain_loss, plain) = lora_pass::<Autodiff<NdArray<f32>>>(name);
        assert!(!fused.is_empty(), "{name}: adapters have gradients");
        assert_close(&format!("{name} loss"), &[fused_loss], &[plain_loss], 1e-5);
        assert_eq!(fused.len(), plain.len());
        for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
            let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            // Relative to the tensor's largest gradient: the two backends multiply in
            // different orders, so a tiny entry can differ in its leading digits.
            let scaled = |v: &[f32]| v.iter().map(|x| x / scale.max(1e-12)).collect::<Vec<_>>();
            assert_close(
                &format!("{name} adapter gradient {i}"),
                &scaled(a),
                &scaled(b),
                1e-4,
            );
        }
    }
}
