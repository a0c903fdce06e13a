//! Exact resume: six DPO steps straight equal three steps, a checkpoint, a fresh process's
//! worth of loading (model from the HF directory, optimizer and step from the checkpoint), and
//! three more steps, metric for metric and bit for bit on the CPU. A partial checkpoint left by
//! a killed write never hides the last complete one.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use common::{pairs, qwen2, tokenized};
use temper_model::load_model;
use temper_objectives::preference::{DpoConfig, PreferenceLoss};
use temper_train::Trainer;
use temper_train::checkpoint::{TrainerState, Weights, load_training_state, save_checkpoint};
use temper_train::{
    Objective, OfflineTrainer, Reference, ScheduleKind, StepLog, TrainingArgs, reference_scores,
};

type Ad = Autodiff<Flex>;

fn base() -> PathBuf {
    qwen2()
}

fn trainer(model_dir: &Path) -> OfflineTrainer<Ad> {
    let device = Default::default();
    let (examples, pad) = tokenized("trl_preference_standard.jsonl");
    // The reference is the base model in both runs.
    let (_, reference) = load_model::<Ad>(&base(), &device).unwrap();
    let reference = reference_scores(&reference.valid(), &pairs(&examples), 4, &device);
    let (_, model) = load_model::<Ad>(model_dir, &device).unwrap();
    let args = TrainingArgs {
        max_steps: Some(6),
        per_device_train_batch_size: 2,
        learning_rate: 5e-3,
        lr_scheduler_type: ScheduleKind::Cosine,
        warmup_steps: 1,
        ..TrainingArgs::default()
    };
    let objective = Objective::Dpo(DpoConfig::single(PreferenceLoss::Sigmoid, 0.1));
    OfflineTrainer::new(
        model,
        objective,
        args,
        examples,
        Reference::Precomputed(reference),
        pad,
        device,
    )
    .unwrap()
}

fn run(trainer: &mut OfflineTrainer<Ad>, steps: usize) -> Vec<StepLog> {
    (0..steps).map(|_| trainer.step().unwrap()).collect()
}

fn save(trainer: &OfflineTrainer<Ad>, output: &Path) -> PathBuf {
    let state = TrainerState {
        global_step: trainer.steps_done(),
        unlogged: Vec::new(),
        origin: None,
    };
    let base = base();
    let weights = Weights::Full { base_dir: &base };
    save_checkpoint(trainer, weights, &state, &serde_json::json!({}), output).unwrap()
}

#[test]
fn resuming_from_a_checkpoint_equals_the_straight_run() {
    let straight = run(&mut trainer(&base()), 6);

    let output = tempfile::tempdir().unwrap();
    let mut first = trainer(&base());
    let mut logs = run(&mut first, 3);
    let checkpoint = save(&first, output.path());
    assert_eq!(checkpoint, output.path().join("checkpoint-3"));
    drop(first);

    let mut resumed = trainer(&checkpoint);
    resumed.load_state(&checkpoint).unwrap();
    logs.extend(run(&mut resumed, 3));
    assert_eq!(logs, straight);
}

#[test]
fn a_killed_write_leaves_the_last_checkpoint_loadable() {
    let output = tempfile::tempdir().unwrap();
    let mut trainer = trainer(&base());
    run(&mut trainer, 2);
    let saved = save(&trainer, output.path());
    // A write of checkpoint-3 that died half-way: its partial directory holds a truncated file.
    let partial = output.path().join(".checkpoint-3.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("model.safetensors"), b"trunc").unwrap();
    assert!(!output.path().join("checkpoint-3").exists());
    let (_, model) = load_model::<Ad>(&saved, &Default::default()).unwrap();
    let (_, state) = load_training_state::<Flex>(&saved, &Default::default()).unwrap();
    assert_eq!(state.global_step, 2);
    assert_eq!(model.layers.len(), trainer.model().layers.len());
    // The next save of step 3 replaces the debris.
    run(&mut trainer, 1);
    let next = save(&trainer, output.path());
    assert!(next.ends_with("checkpoint-3") && !partial.exists());
    load_model::<Ad>(&next, &Default::default()).unwrap();
}
