//! The step loop on the bundled tiny Qwen2 model and fixture data: DPO against a copy of the
//! policy starts at ln 2 with zero rewards and then separates chosen from rejected; SFT lowers
//! its loss; batches are the same for the same step and seed; bad settings and data are errors.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use common::{pairs, qwen2, tokenized as examples};
use temper_model::load_model;
use temper_objectives::preference::{DpoConfig, PreferenceLoss};
use temper_train::Trainer;
use temper_train::{
    Objective, OfflineTrainer, Reference, ReferenceScores, ScheduleKind, TrainingArgs,
    reference_scores,
};

type Ad = Autodiff<Flex>;

fn args(steps: usize) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(steps),
        per_device_train_batch_size: 2,
        learning_rate: 1e-2,
        lr_scheduler_type: ScheduleKind::Constant,
        ..TrainingArgs::default()
    }
}

#[test]
fn dpo_against_its_own_copy_starts_at_ln2_and_learns_the_preference() {
    let device = Default::default();
    let (_, model) = load_model::<Ad>(&qwen2(), &device).unwrap();
    let (examples, pad_id) = examples("trl_preference_standard.jsonl");
    let reference = reference_scores(&model.valid(), &pairs(&examples), 4, &device);
    let objective = Objective::Dpo(DpoConfig::single(PreferenceLoss::Sigmoid, 0.1));
    let mut trainer = OfflineTrainer::new(
        model,
        objective,
        args(8),
        examples,
        Reference::Precomputed(reference),
        pad_id,
        device,
    )
    .unwrap();
    let first = trainer.step().unwrap();
    assert!(
        (first.loss - std::f64::consts::LN_2).abs() < 1e-5,
        "{}",
        first.loss
    );
    let metric = |log: &temper_train::StepLog, name: &str| {
        log.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap()
    };
    assert!(metric(&first, "rewards/margins").abs() < 1e-5);
    assert!(first.grad_norm > 0.0 && first.learning_rate == 1e-2);
    let mut last = first;
    while trainer.steps_done() < trainer.total_steps() {
        last = trainer.step().unwrap();
    }
    assert!(last.loss < 0.5, "DPO loss after 8 steps: {}", last.loss);
    assert!(metric(&last, "rewards/margins") > 0.5, "{:?}", last.metrics);
    for name in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "logits/chosen",
        "logits/rejected",
    ] {
        assert!(last.metrics.iter().any(|(n, _)| n == name), "{name} logged");
    }
}

#[test]
fn sft_lowers_the_completion_loss() {
    let device = Default::default();
    let (_, model) = load_model::<Ad>(&qwen2(), &device).unwrap();
    let (examples, pad_id) = examples("trl_prompt_completion_standard.jsonl");
    let mut trainer = OfflineTrainer::new(
        model,
        Objective::Sft,
        args(10),
        examples,
        Reference::None,
        pad_id,
        device,
    )
    .unwrap();
    let first = trainer.step().unwrap();
    let mut last = first.clone();
    while trainer.steps_done() < trainer.total_steps() {
        last = trainer.step().unwrap();
    }
    assert!(
        last.loss < 0.7 * first.loss,
        "{} -> {}",
        first.loss,
        last.loss
    );
    assert!(last.metrics.iter().any(|(n, _)| n == "mean_token_accuracy"));
}

#[test]
fn batches_depend_on_the_step_and_seed_only() {
    let device = Default::default();
    let (examples, pad_id) = examples("trl_prompt_completion_standard.jsonl");
    let make = |seed| {
        let (_, model) = load_model::<Ad>(&qwen2(), &device).unwrap();
        let args = TrainingArgs { seed, ..args(6) };
        OfflineTrainer::new(
            model,
            Objective::Sft,
            args,
            examples.clone(),
            Reference::None,
            pad_id,
            device,
        )
        .unwrap()
    };
    let (a, b) = (make(1), make(1));
    for step in 0..6 {
        assert_eq!(a.micro_batches(step), b.micro_batches(step));
    }
    // Every epoch covers every example once.
    let per_epoch = examples.len().div_ceil(2);
    let mut seen: Vec<usize> = (0..per_epoch)
        .flat_map(|s| a.micro_batches(s))
        .flatten()
        .collect();
    seen.sort();
    assert_eq!(seen, (0..examples.len()).collect::<Vec<_>>());
}

#[test]
fn mismatched_data_and_settings_are_errors() {
    let device = Default::default();
    let (_, model) = load_model::<Ad>(&qwen2(), &device).unwrap();
    let (sft, pad_id) = examples("trl_prompt_completion_standard.jsonl");
    let objective = Objective::Dpo(DpoConfig::single(PreferenceLoss::Sigmoid, 0.1));
    let error = OfflineTrainer::new(
        model.clone(),
        objective.clone(),
        args(1),
        sft,
        Reference::None,
        pad_id,
        device,
    )
    .err()
    .unwrap();
    assert!(
        error.to_string()
            == "this objective trains on preference pairs; the data holds SFT sequences",
        "{error}"
    );
    let (pairs_data, _) = examples("trl_preference_standard.jsonl");
    let missing: Vec<ReferenceScores> = Vec::new();
    let error = OfflineTrainer::new(
        model.clone(),
        objective,
        args(1),
        pairs_data,
        Reference::Precomputed(missing),
        pad_id,
        device,
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("reference scores"), "{error}");
    let bad = TrainingArgs {
        per_device_train_batch_size: 0,
        ..args(1)
    };
    let (sft, _) = examples("trl_prompt_completion_standard.jsonl");
    assert!(
        OfflineTrainer::new(
            model,
            Objective::Sft,
            bad,
            sft,
            Reference::None,
            pad_id,
            device
        )
        .is_err()
    );
}
