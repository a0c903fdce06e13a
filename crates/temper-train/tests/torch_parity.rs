//! AdamW, schedules and global-norm clipping against PyTorch and transformers' Trainer
//! (`fixtures/gen/optimizer_parity.py`): six steps with the Trainer's decay groups, a linear
//! schedule with warmup and clipping that acts on some steps; every parameter after every step
//! within 1e-6. The optimizer state saved after three steps and loaded again continues the run
//! unchanged.

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde_json::Value;
use temper_train::parameters::{decays, parameters};
use temper_train::{AdamW, AdamWConfig, Schedule, ScheduleKind, TrainingArgs, clip_global_norm};

type Ad = Autodiff<NdArray<f32>>;
type Inner = NdArray<f32>;

#[derive(Module, Debug)]
struct Projection<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
}

/// The names of the fixture's torch module.
#[derive(Module, Debug)]
struct Toy<B: Backend> {
    proj: Projection<B>,
    final_norm: Param<Tensor<B, 1>>,
    embed: Param<Tensor<B, 2>>,
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/parity/optimizer.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn shape(run: &Value, name: &str) -> Vec<usize> {
    run["shapes"][name]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: Vec<usize>) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn toy(run: &Value) -> Toy<Ad> {
    let param = |name: &str| floats(&run["initial"][name]);
    Toy {
        proj: Projection {
            weight: Param::from_tensor(tensor(param("proj.weight"), shape(run, "proj.weight"))),
            bias: Param::from_tensor(tensor(param("proj.bias"), shape(run, "proj.bias"))),
        },
        final_norm: Param::from_tensor(tensor(param("final_norm"), shape(run, "final_norm"))),
        embed: Param::from_tensor(tensor(param("embed"), shape(run, "embed"))),
    }
}

/// The fixture's gradients of one step, registered under the toy's parameter ids.
fn gradients(model: &Toy<Ad>, run: &Value, step: &Value) -> GradientsParams {
    let mut gradients = GradientsParams::new();
    for info in parameters::<Ad, _>(model) {
        let values = floats(&step["gradients"][&info.name]);
        match info.shape.len() {
            1 => gradients.register::<Inner, 1>(info.id, tensor(values, shape(run, &info.name))),
            _ => gradients.register::<Inner, 2>(info.id, tensor(values, shape(run, &info.name))),
        }
    }
    gradients
}

fn values(model: &Toy<Ad>) -> Vec<(String, Vec<f32>)> {
    let flat = |t: Tensor<Ad, 2>| t.into_data().to_vec::<f32>().unwrap();
    let flat1 = |t: Tensor<Ad, 1>| t.into_data().to_vec::<f32>().unwrap();
    vec![
        ("proj.weight".into(), flat(model.proj.weight.val())),
        ("proj.bias".into(), flat1(model.proj.bias.val())),
        ("final_norm".into(), flat1(model.final_norm.val())),
        ("embed".into(), flat(model.embed.val())),
    ]
}

/// Runs steps `range` of the fixture from `model` and `optimizer`, checking each step.
fn run_steps(
    run: &Value,
    range: std::ops::Range<usize>,
    mut model: Toy<Ad>,
    mut optimizer: AdamW<Inner>,
) -> (Toy<Ad>, AdamW<Inner>) {
    let schedule = Schedule {
        kind: ScheduleKind::Linear,
        peak: run["learning_rate"].as_f64().unwrap(),
        warmup_steps: run["warmup_steps"].as_u64().unwrap() as usize,
        total_steps: run["steps"].as_array().unwrap().len(),
    };
    for index in range {
        let step = &run["steps"][index];
        let mut grads = gradients(&model, run, step);
        let norm =
            clip_global_norm::<Ad, _>(&model, &mut grads, run["max_grad_norm"].as_f64().unwrap());
        let expected_norm = step["grad_norm"].as_f64().unwrap();
        assert!(
            (norm - expected_norm).abs() <= 1e-5 * expected_norm,
            "step {index}: norm {norm} vs {expected_norm}"
        );
        let lr = schedule.learning_rate(index);
        let expected_lr = step["learning_rate"].as_f64().unwrap();
        assert!(
            (lr - expected_lr).abs() <= 1e-12,
            "step {index}: lr {lr} vs {expected_lr}"
        );
        model = optimizer.step(model, grads, lr);
        for (name, ours) in values(&model) {
            let theirs = floats(&step["parameters"][&name]);
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "step {index} {name}: {a} vs {b}"
                );
            }
        }
    }
    (model, optimizer)
}

fn config(run: &Value) -> AdamWConfig {
    AdamWConfig {
        weight_decay: run["weight_decay"].as_f64().unwrap(),
        ..TrainingArgs::default().optimizer
    }
}

#[test]
fn adamw_with_clipping_and_schedule_matches_torch() {
    let run = &fixture()["adamw"];
    run_steps(run, 0..6, toy(run), AdamW::new(config(run)));
}

#[test]
fn saved_optimizer_state_continues_the_run() {
    let run = &fixture()["adamw"];
    let (model, optimizer) = run_steps(run, 0..3, toy(run), AdamW::new(config(run)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    optimizer.save(&path).unwrap();
    let loaded = AdamW::<Inner>::load(&path, &Default::default()).unwrap();
    assert_eq!(loaded.config, optimizer.config);
    run_steps(run, 3..6, model, loaded);
}

#[test]
fn weight_decay_skips_biases_and_norms_as_the_trainer_does() {
    let run = &fixture()["adamw"];
    let expected: Vec<&str> = run["decay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let mut ours: Vec<String> = parameters::<Ad, _>(&toy(run))
        .into_iter()
        .map(|info| info.name)
        .filter(|name| decays(name))
        .collect();
    ours.sort();
    assert_eq!(ours, expected);
    // The model's own names: projections and embeddings decay, norms and biases do not.
    assert!(decays("layers.0.self_attn.q_proj.linear.weight"));
    assert!(decays("layers.3.mlp.down_proj.lora.a"));
    assert!(decays("embed_tokens.weight"));
    for name in [
        "layers.0.attention_norm.weight",
        "layers.1.self_attn.q_norm.weight",
        "norm.weight",
        "layers.0.self_attn.q_proj.linear.bias",
    ] {
        assert!(!decays(name), "{name}");
    }
}

#[test]
fn schedules_match_transformers() {
    let fixture = fixture();
    let schedules = &fixture["schedules"];
    for (name, rates) in schedules["rates"].as_object().unwrap() {
        let schedule = Schedule {
            kind: <ScheduleKind as clap::ValueEnum>::from_str(name, false).unwrap(),
            peak: schedules["peak"].as_f64().unwrap(),
            warmup_steps: schedules["warmup_steps"].as_u64().unwrap() as usize,
            total_steps: schedules["total_steps"].as_u64().unwrap() as usize,
        };
        for (step, expected) in rates.as_array().unwrap().iter().enumerate() {
            let expected = expected.as_f64().unwrap();
            let ours = schedule.learning_rate(step);
            assert!(
                (ours - expected).abs() <= 1e-15,
                "{name} step {step}: {ours} vs {expected}"
            );
        }
    }
}
