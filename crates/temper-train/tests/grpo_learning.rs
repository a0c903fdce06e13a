//! A tiny model learns a verifiable task from reward alone: the random Llama of the parity
//! fixtures, asked eight questions whose rows name open-instruct's `validate_lowercase`
//! verifier, starts with about two completions in three written all in lower case; 30 seeded
//! GRPO steps through the whole run (`temper grpo`'s path: data, template, sampling, the
//! verifiers, advantages, updates, metrics.jsonl) bring the reward close to 1.

mod common;

use burn::backend::{Autodiff, Flex};
use common::root;
use serde_json::{Value, json};
use temper_train::progress::Display;
use temper_train::schedule::ScheduleKind;
use temper_train::{TrainConfig, TrainerKind, run};

#[test]
fn reward_rises_when_the_verifier_is_the_only_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lowercase.jsonl");
    let questions = [
        "Describe the sea.",
        "What is a cat?",
        "Tell me about bread.",
        "Why is the sky blue?",
        "Name a fruit.",
        "How do birds fly?",
        "What is rain?",
        "Say something nice.",
    ];
    let rows: Vec<String> = questions
        .iter()
        .map(|q| {
            json!({
                "messages": [{"role": "user", "content": q}],
                "ground_truth": "{\"func_name\": \"validate_lowercase\"}",
                "dataset": "ifeval_old",
            })
            .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let output = dir.path().join("run");
    let config = TrainConfig {
        model: Some(root().join("fixtures/models/train/policy")),
        data: Some(vec![data]),
        output_dir: Some(output.clone()),
        num_generations: Some(8),
        per_device_train_batch_size: Some(32),
        max_completion_length: Some(8),
        learning_rate: Some(2e-2),
        lr_scheduler_type: Some(ScheduleKind::Constant),
        max_steps: Some(30),
        logging_steps: Some(1),
        verification_reward: Some(1.0),
        ..TrainConfig::default()
    };
    let settings = config.resolve(TrainerKind::Grpo).unwrap();
    run::<Autodiff<Flex>>(&settings, Display::Quiet, &Default::default()).unwrap();

    let text = std::fs::read_to_string(output.join("metrics.jsonl")).unwrap();
    let rewards: Vec<f64> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["reward"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(rewards.len(), 30);
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&rewards[..5]), mean(&rewards[25..]));
    assert!(
        last > first + 0.2 && last > 0.9,
        "reward over the first 5 steps {first:.3}, over the last 5 {last:.3}: {rewards:?}"
    );
}
