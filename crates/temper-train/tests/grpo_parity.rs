//! GRPO against TRL 1.16's own `GRPOTrainer` on fixed rollouts (`fixtures/gen/grpo_parity.py`):
//! the tiny random Llama policy, two prompts × 4 completions per round, completions and rewards
//! fixed by the fixture (generation replaced), everything downstream — prompt tokenisation,
//! advantages, log-probs at the sampling temperature, old and reference log-probs, the clipped
//! surrogate with the k3 KL, the loss aggregation, clipping, AdamW, the schedule and every
//! logged metric — computed by each side. Three runs: DAPO with KL and clip-higher over rounds
//! reused twice, GRPO with batch-scaled rewards, BNPO with unscaled rewards and KL. Advantages,
//! loss, grad norm and metrics agree within 1e-4 relative (1e-7 absolute for the loss, which
//! is rounding noise where it is 0 by construction).

mod common;

use std::cell::Cell;

use burn::backend::{Autodiff, Flex};
use common::{ids, parity_fixture, parity_prompts, root};
use serde_json::Value;
use temper_data::ChatTokenizer;
use temper_model::load_model;
use temper_objectives::grpo::RewardScaling;
use temper_train::config::GrpoLoss;
use temper_train::grpo::{GrpoSettings, GrpoTrainer, RlInputs};
use temper_train::rewards::{FnReward, RewardInput, Rewards};
use temper_train::rollout::{Sampling, Stops};
use temper_train::{ScheduleKind, Trainer, TrainingArgs};

type Ad = Autodiff<Flex>;

fn fixture() -> Value {
    parity_fixture("trl_grpo_runs.json")
}

fn close(what: &str, ours: f64, theirs: f64, relative: f64, absolute: f64) {
    let tolerance = absolute + relative * theirs.abs();
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: temper {ours} vs TRL {theirs}"
    );
}

fn run(name: &str) {
    let fixture = fixture();
    let run = &fixture["runs"][name];
    let config = &run["config"];
    let policy_dir = root().join("fixtures/models/train/policy");
    let tokenizer = ChatTokenizer::from_dir(&policy_dir, None).unwrap();
    let prompts = parity_prompts(&tokenizer);
    let rounds = run["rounds"].as_array().unwrap();
    // TRL's template and ours give the same prompt ids.
    for row in rounds.iter().flat_map(|r| r["rows"].as_array().unwrap()) {
        let index = row["prompt_index"].as_u64().unwrap() as usize;
        assert_eq!(
            prompts.ids[index],
            ids(&row["prompt_ids"]),
            "prompt {index}"
        );
    }

    // The fixed rewards, handed out in the order the rounds are scored.
    let all_rewards: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r["rows"].as_array().unwrap())
        .map(|row| row["reward"].as_f64().unwrap())
        .collect();
    let scored = Cell::new(0);
    let fixed = FnReward::new("fixed", move |_: &RewardInput<'_>| {
        let i = scored.get();
        scored.set(i + 1);
        Some(all_rewards[i])
    });
    let f = |key: &str| config[key].as_f64().unwrap();
    let u = |key: &str| config[key].as_u64().unwrap() as usize;
    let beta = f("beta");
    let loss_type = match config["loss_type"].as_str().unwrap() {
        "grpo" => GrpoLoss::Grpo,
        "bnpo" => GrpoLoss::Bnpo,
        "dr_grpo" => GrpoLoss::DrGrpo,
        _ => GrpoLoss::Dapo,
    };
    let settings = GrpoSettings {
        sampling: Sampling {
            num_generations: u("num_generations"),
            max_completion_length: u("max_completion_length"),
            temperature: f("temperature"),
            top_p: None,
            top_k: None,
            repetition_penalty: 1.0,
        },
        beta,
        epsilon_low: f("epsilon_low"),
        epsilon_high: f("epsilon_high"),
        loss_type,
        bias_corrected_kl: config["use_bias_correction_kl"].as_bool().unwrap(),
        scale_rewards: match config["scale_rewards"].as_str().unwrap() {
            "group" => RewardScaling::Group,
            "batch" => RewardScaling::Batch,
            _ => RewardScaling::None,
        },
        num_iterations: u("num_iterations"),
    };
    let args = TrainingArgs {
        max_steps: Some(u("max_steps")),
        per_device_train_batch_size: u("per_device_train_batch_size"),
        gradient_accumulation_steps: u("gradient_accumulation_steps"),
        learning_rate: f("learning_rate"),
        lr_scheduler_type: ScheduleKind::Linear,
        max_grad_norm: f("max_grad_norm"),
        seed: 42,
        ..TrainingArgs::default()
    };
    let device = Default::default();
    let (_, model) = load_model::<Ad>(&policy_dir, &device).unwrap();
    let reference = (beta != 0.0).then(|| load_model::<Flex>(&policy_dir, &device).unwrap().1);
    let rewards = Rewards::new(vec![(Box::new(fixed), 1.0)]);
    let inputs = RlInputs {
        prompts,
        rewards,
        reference,
        tokenizer,
        stops: Stops {
            eos_token_ids: vec![2042],
            pad_token_id: 2040,
        },
    };
    let mut trainer = GrpoTrainer::<Ad>::new(model, settings, args, inputs, device).unwrap();

    let iterations = u("num_iterations");
    for (step, expected) in run["log_history"].as_array().unwrap().iter().enumerate() {
        if step % iterations == 0 {
            let round = &rounds[step / iterations];
            let completions = round["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    let completion = ids(&row["completion_ids"]);
                    let finished = completion.last() == Some(&2042);
                    (
                        row["prompt_index"].as_u64().unwrap() as usize,
                        completion,
                        finished,
                    )
                })
                .collect();
            trainer.set_round_completions(completions).unwrap();
            let advantages: Vec<f64> = trainer
                .round()
                .unwrap()
                .rollouts
                .iter()
                .map(|r| r.advantage)
                .collect();
            for (i, row) in round["rows"].as_array().unwrap().iter().enumerate() {
                let what = format!("{name} round {} advantage {i}", step / iterations);
                close(
                    &what,
                    advantages[i],
                    row["advantage"].as_f64().unwrap(),
                    1e-5,
                    1e-6,
                );
            }
        }
        let log = trainer.step().unwrap();
        let at = |what: &str| format!("{name} step {}: {what}", step + 1);
        // A loss that is 0 by construction (ratio 1, no KL) is rounding noise on both sides.
        close(
            &at("loss"),
            log.loss,
            expected["loss"].as_f64().unwrap(),
            1e-4,
            1e-7,
        );
        close(
            &at("grad_norm"),
            log.grad_norm,
            expected["grad_norm"].as_f64().unwrap(),
            1e-4,
            1e-7,
        );
        close(
            &at("learning_rate"),
            log.learning_rate,
            expected["learning_rate"].as_f64().unwrap(),
            1e-9,
            0.0,
        );
        let expected = expected.as_object().unwrap();
        for (key, value) in expected {
            if matches!(
                key.as_str(),
                "loss" | "grad_norm" | "learning_rate" | "step" | "epoch"
            ) {
                continue;
            }
            let ours = log
                .metrics
                .iter()
                .find(|(n, _)| n == key)
                .unwrap_or_else(|| panic!("{}: no metric {key}; have {:?}", at(""), log.metrics))
                .1;
            close(&at(key), ours, value.as_f64().unwrap(), 1e-4, 1e-6);
        }
        for (key, _) in &log.metrics {
            assert!(
                expected.contains_key(key),
                "{}: TRL does not log {key}",
                at("")
            );
        }
    }
}

#[test]
fn dapo_with_kl_and_clip_higher_over_reused_rounds_matches_trl() {
    run("dapo_kl");
}

#[test]
fn grpo_with_batch_scaled_rewards_matches_trl() {
    run("grpo_batch");
}

#[test]
fn bnpo_with_unscaled_rewards_and_kl_matches_trl() {
    run("bnpo_none");
}
