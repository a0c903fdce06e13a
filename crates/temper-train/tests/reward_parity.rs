//! Three optimizer steps of `Objective::Reward` against TRL 1.16's `RewardTrainer`
//! (`fixtures/gen/reward_parity.py`): the `LlamaForSequenceClassification` fixture (the train
//! policy with TRL's seeded score head), the 4 records of `preference.jsonl` in one batch of 4,
//! lr 1e-3 constant, max_grad_norm 1, weight decay 0, float32. The records are tokenised by
//! temper-data (prompt + answer, as for DPO), which gives the ids TRL's own preprocessing gave
//! (the whole `prompt + answer + eos` text per side). The loss, `accuracy`, `margin`,
//! `min/mean/max_reward` of every step match within 1e-3 relative, with and without
//! `center_rewards_coefficient`.

mod common;

use burn::backend::{Autodiff, Flex};
use common::{ids, parity_fixture, root};
use serde_json::Value;
use temper_data::{ChatTokenizer, TokenizedSet};
use temper_model::{ScoreHeadInit, load_model, load_reward_model};
use temper_train::{Objective, OfflineTrainer, Reference, TrainError, TrainingArgs};

type Ad = Autodiff<Flex>;

fn fixture() -> Value {
    parity_fixture("trl_reward_runs.json")
}

/// `preference.jsonl` tokenised by temper-data with the policy's tokenizer, checked against the
/// ids TRL's RewardTrainer tokenised each side to.
fn examples(fixture: &Value) -> TokenizedSet {
    let tokenizer =
        ChatTokenizer::from_dir(&root().join("fixtures/models/train/policy"), None).unwrap();
    let examples = common::tokenize_file(
        &tokenizer,
        &root().join("fixtures/parity/train/preference.jsonl"),
    );
    let trl = fixture["tokenized"].as_array().unwrap();
    assert_eq!(examples.len(), trl.len());
    let TokenizedSet::Pairs(pairs) = &examples else {
        panic!("preference data")
    };
    for (pair, theirs) in pairs.iter().zip(trl) {
        let side = |answer: &[u32]| -> Vec<u32> {
            pair.prompt_ids.iter().chain(answer).copied().collect()
        };
        assert_eq!(side(&pair.chosen_ids), ids(&theirs["chosen_ids"]));
        assert_eq!(side(&pair.rejected_ids), ids(&theirs["rejected_ids"]));
    }
    examples
}

/// The largest relative difference over every step's loss and reward metrics, and over the
/// gradient norms.
fn worst_difference(run: &Value) -> ((f64, String), f64) {
    let fixture = fixture();
    let device = Default::default();
    let (config, model) = load_reward_model::<Ad>(
        &root().join("fixtures/models/train/reward"),
        &ScoreHeadInit::default(),
        &device,
    )
    .unwrap();
    let pad = fixture["tokenizer"]["pad_token_id"].as_u64().unwrap() as u32;
    assert_eq!(run["model_pad_token_id"].as_u64(), Some(u64::from(pad)));
    assert_eq!(config.pad_token_id, Some(pad));
    let objective = Objective::Reward {
        center_rewards_coefficient: run["args"]["center_rewards_coefficient"].as_f64(),
    };
    objective.check_model(&model).unwrap();
    let args = common::trl_parity_args();
    let mut trainer = OfflineTrainer::new(
        model,
        objective,
        args,
        examples(&fixture),
        Reference::None,
        pad,
        device,
    )
    .unwrap();
    let mut worst = (0.0, String::new());
    let mut worst_grad_norm = 0.0f64;
    for expected in run["steps"].as_array().unwrap() {
        let log = trainer.step().unwrap();
        let mut ours = log.metrics.clone();
        ours.push(("loss".into(), log.loss));
        ours.push(("grad_norm".into(), log.grad_norm));
        ours.push(("learning_rate".into(), log.learning_rate));
        let mut compared = Vec::new();
        for (name, value) in ours {
            let theirs = expected[&name]
                .as_f64()
                .unwrap_or_else(|| panic!("TRL logs no `{name}`"));
            let relative = (value - theirs).abs() / theirs.abs().max(1e-6);
            // As in trl_parity.rs: Adam's first steps amplify float noise in the gradient norm.
            let tolerance = if name == "grad_norm" { 5e-3 } else { 1e-3 };
            assert!(
                relative <= tolerance || (value - theirs).abs() <= 1e-7,
                "{} step {}: {name} = {value}, TRL {theirs}",
                run["name"],
                log.step
            );
            if name == "grad_norm" {
                worst_grad_norm = worst_grad_norm.max(relative);
            } else if relative > worst.0 {
                worst = (relative, format!("step {} {name}", log.step));
            }
            compared.push(name);
        }
        for name in [
            "loss",
            "grad_norm",
            "accuracy",
            "margin",
            "min_reward",
            "mean_reward",
            "max_reward",
        ] {
            assert!(compared.iter().any(|n| n == name), "{name} compared");
        }
    }
    (worst, worst_grad_norm)
}

fn check(name: &str) {
    let fixture = fixture();
    let run = fixture["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap();
    let ((worst, at), grad_norm) = worst_difference(run);
    eprintln!(
        "{name}: worst relative difference {worst:.2e} ({at}); gradient norm {grad_norm:.2e}"
    );
}

#[test]
fn reward_matches_trl() {
    check("reward");
}

#[test]
fn reward_with_centering_matches_trl() {
    check("reward_center_0.01");
}

#[test]
fn the_objective_refuses_a_model_with_the_wrong_head() {
    let device = Default::default();
    let reward = Objective::Reward {
        center_rewards_coefficient: None,
    };
    let (_, lm) = load_model::<Ad>(&root().join("fixtures/models/train/policy"), &device).unwrap();
    assert!(reward.check_model(&lm).is_err());
    assert!(Objective::Sft.check_model(&lm).is_ok());
    // The trainer refuses it before any step.
    let refused = OfflineTrainer::new(
        lm,
        reward.clone(),
        TrainingArgs::default(),
        examples(&fixture()),
        Reference::None,
        0,
        device,
    );
    assert!(matches!(refused, Err(TrainError::Objective(_))));
    let two = ScoreHeadInit {
        num_labels: 2,
        ..ScoreHeadInit::default()
    };
    let (_, classifier) =
        load_reward_model::<Ad>(&root().join("fixtures/models/train/policy"), &two, &device)
            .unwrap();
    assert!(reward.check_model(&classifier).is_err());
    assert!(Objective::Sft.check_model(&classifier).is_err());
}
