//! PPO (`PpoTrainer`) on the tiny train policy and the two RLVR prompts: the round's per-token
//! rewards, GAE advantages and returns against an independent f64 computation, the first
//! update's policy loss, learning a simple reward, and resuming inside a round.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Int, Tensor, TensorData};
use common::{parity_prompts, root};
use temper_data::ChatTokenizer;
use temper_model::{CausalLm, ScoreHeadInit, load_model, load_reward_model};
use temper_objectives::twin;
use temper_train::Trainer;
use temper_train::checkpoint::{TrainerState, Weights, save_checkpoint};
use temper_train::grpo::{Prompts, RlInputs};
use temper_train::ppo::{KlEstimator, PpoSettings, PpoTrainer};
use temper_train::rewards::{FnReward, RewardInput, Rewards};
use temper_train::rollout::{Sampling, Stops};
use temper_train::{ScheduleKind, StepLog, TrainingArgs};

type Ad = Autodiff<Flex>;
type Inner = Flex;

const EOS: u32 = 2042;
const PAD: u32 = 2040;

fn policy_dir() -> std::path::PathBuf {
    root().join("fixtures/models/train/policy")
}

fn settings(max_completion_length: usize) -> PpoSettings {
    PpoSettings {
        sampling: Sampling {
            num_generations: 1,
            max_completion_length,
            temperature: 0.7,
            top_p: None,
            top_k: None,
            repetition_penalty: 1.0,
        },
        num_ppo_epochs: 1,
        num_mini_batches: 1,
        kl_coef: 0.05,
        kl_estimator: KlEstimator::K1,
        cliprange: 0.2,
        vf_coef: 0.1,
        cliprange_value: 0.2,
        gamma: 1.0,
        lam: 0.95,
        whiten_rewards: false,
        missing_eos_penalty: None,
    }
}

fn args(max_steps: usize, per_device: usize, accumulation: usize) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(max_steps),
        per_device_train_batch_size: per_device,
        gradient_accumulation_steps: accumulation,
        learning_rate: 1e-3,
        lr_scheduler_type: ScheduleKind::Constant,
        max_grad_norm: 1.0,
        seed: 7,
        ..TrainingArgs::default()
    }
}

fn value_model() -> CausalLm<Ad> {
    let init = ScoreHeadInit {
        num_labels: 1,
        pad_token_id: Some(PAD),
        seed: 7,
    };
    load_reward_model::<Ad>(&policy_dir(), &init, &Default::default())
        .unwrap()
        .1
}

fn trainer(
    settings: PpoSettings,
    args: TrainingArgs,
    prompts: Prompts,
    rewards: Rewards,
    policy: CausalLm<Ad>,
) -> PpoTrainer<Ad> {
    let device = Default::default();
    let tokenizer = ChatTokenizer::from_dir(&policy_dir(), None).unwrap();
    let reference = load_model::<Inner>(&policy_dir(), &device).unwrap().1;
    let inputs = RlInputs {
        prompts,
        rewards,
        reference: Some(reference),
        tokenizer,
        stops: Stops {
            eos_token_ids: vec![EOS],
            pad_token_id: PAD,
        },
    };
    PpoTrainer::new(policy, value_model(), settings, args, inputs, device)
        .unwrap()
        .with_value_model_source(policy_dir())
}

fn metric(log: &StepLog, name: &str) -> f64 {
    log.metrics
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not logged: {:?}", log.metrics))
        .1
}

/// The round's advantages and returns against TRL's formulas in f64 (`temper_objectives::
/// reference`), from the log-probs and values it stored; the values against a forward pass of
/// each unpadded sequence; the first update's policy loss against −mean(advantages).
fn check_round(kl_estimator: KlEstimator, whiten_rewards: bool, gamma: f64, lam: f64) {
    let tokenizer = ChatTokenizer::from_dir(&policy_dir(), None).unwrap();
    let prompts = parity_prompts(&tokenizer);
    let settings = PpoSettings {
        kl_estimator,
        whiten_rewards,
        gamma,
        lam,
        missing_eos_penalty: Some(0.25),
        ..settings(8)
    };
    let reward = FnReward::new("fixed", |input: &RewardInput<'_>| {
        Some(if input.finished { 1.0 } else { 0.5 })
    });
    let rewards = Rewards::new(vec![(Box::new(reward), 1.0)]);
    let policy = load_model::<Ad>(&policy_dir(), &Default::default())
        .unwrap()
        .1;
    // Two micro-batches of one completion: the policy loss is the mean of per-row means.
    let mut trainer = trainer(
        settings.clone(),
        args(1, 1, 2),
        prompts.clone(),
        rewards,
        policy,
    );
    let order = trainer.round_prompts(0);
    let completions: Vec<(usize, Vec<u32>, bool)> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            if k == 0 {
                (i, vec![5, 17, 300, EOS], true)
            } else {
                (i, vec![9, 100, 33, 44, 77, 1000], false)
            }
        })
        .collect();
    trainer.set_round_completions(completions).unwrap();
    let round = trainer.round().unwrap().clone();

    // Values: the value model's output at the positions predicting each completion token.
    let value_model = trainer.value_model().valid();
    for r in &round.rollouts {
        let ids: Vec<i64> = r
            .rollout
            .prompt_ids
            .iter()
            .chain(&r.rollout.completion_ids)
            .map(|&t| i64::from(t))
            .collect();
        let n = ids.len();
        let device = Default::default();
        let input = Tensor::<Inner, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let mask = Tensor::<Inner, 2>::ones([1, n], &device);
        let positions = Tensor::<Inner, 1, Int>::arange(0..n as i64, &device).reshape([1, n]);
        let scores: Vec<f32> = value_model
            .forward(input, mask, positions)
            .into_data()
            .to_vec()
            .unwrap();
        let p = r.rollout.prompt_ids.len();
        for (t, v) in r.values.iter().enumerate() {
            assert!(
                (f64::from(*v) - f64::from(scores[p - 1 + t])).abs() < 1e-4,
                "value {t}: {v} vs {}",
                scores[p - 1 + t]
            );
        }
    }

    // Per-token rewards, GAE and whitening in f64.
    let mut all_rewards: Vec<Vec<f64>> = Vec::new();
    for r in &round.rollouts {
        let expected_score = if r.rollout.finished { 1.0 } else { 0.5 - 0.25 };
        assert!((r.rollout.reward - expected_score).abs() < 1e-12);
        let logps = r.rollout.old_logps.as_ref().unwrap();
        let refs = r.rollout.ref_logps.as_ref().unwrap();
        let mut row: Vec<f64> = logps
            .iter()
            .zip(refs)
            .map(|(&l, &q)| {
                let (l, q) = (f64::from(l), f64::from(q));
                let kl = match kl_estimator {
                    KlEstimator::K1 => l - q,
                    KlEstimator::K3 => (q - l).exp() - (q - l) - 1.0,
                };
                -0.05 * kl
            })
            .collect();
        *row.last_mut().unwrap() += r.rollout.reward;
        all_rewards.push(row);
    }
    if whiten_rewards {
        let flat: Vec<f64> = all_rewards.iter().flatten().copied().collect();
        let whitened = twin::masked_whiten(&flat, &vec![1.0; flat.len()], false);
        let mut at = 0;
        for row in &mut all_rewards {
            for x in row.iter_mut() {
                *x = whitened[at];
                at += 1;
            }
        }
    }
    let mut raw_advantages = Vec::new();
    for (r, rewards) in round.rollouts.iter().zip(&all_rewards) {
        let values: Vec<f64> = r.values.iter().map(|&v| f64::from(v)).collect();
        let (advantages, returns) = twin::gae(rewards, &values, gamma, lam);
        for (t, (ours, theirs)) in r.returns.iter().zip(&returns).enumerate() {
            assert!(
                (f64::from(*ours) - theirs).abs() < 1e-5,
                "return {t}: {ours} vs {theirs}"
            );
        }
        raw_advantages.push(advantages);
    }
    let flat: Vec<f64> = raw_advantages.iter().flatten().copied().collect();
    let whitened = twin::masked_whiten(&flat, &vec![1.0; flat.len()], true);
    let ours: Vec<f64> = round
        .rollouts
        .iter()
        .flat_map(|r| r.advantages.iter().map(|&a| f64::from(a)))
        .collect();
    for (t, (a, b)) in ours.iter().zip(&whitened).enumerate() {
        assert!((a - b).abs() < 1e-5, "advantage {t}: {a} vs {b}");
    }

    // The first update: ratio 1, so the clipped surrogate is −A per token.
    let log = trainer.step().unwrap();
    let expected = round
        .rollouts
        .iter()
        .map(|r| {
            -r.advantages.iter().map(|&a| f64::from(a)).sum::<f64>() / r.advantages.len() as f64
        })
        .sum::<f64>()
        / round.rollouts.len() as f64;
    let policy_loss = metric(&log, "loss/policy_avg");
    assert!(
        (policy_loss - expected).abs() < 1e-5,
        "loss/policy_avg {policy_loss} vs {expected}"
    );
    assert!(metric(&log, "policy/approxkl_avg").abs() < 1e-10);
    assert_eq!(metric(&log, "policy/clipfrac_avg"), 0.0);
    assert!((metric(&log, "val/ratio") - 1.0).abs() < 1e-6);
    assert!((log.loss - (policy_loss + 0.1 * metric(&log, "loss/value_avg"))).abs() < 1e-5);
    assert_eq!(metric(&log, "val/num_eos_tokens"), 1.0);
    assert_eq!(metric(&log, "completions/mean_length"), 5.0);
    assert!((metric(&log, "objective/scores") - 0.625).abs() < 1e-12);
    let (mut records, mut order) = (log.records.clone(), order);
    records.sort_unstable();
    order.sort_unstable();
    assert_eq!(records, order);
}

#[test]
fn round_advantages_and_returns_match_an_f64_computation() {
    check_round(KlEstimator::K1, false, 1.0, 0.95);
}

#[test]
fn round_with_k3_whitened_rewards_and_discounting() {
    check_round(KlEstimator::K3, true, 0.9, 0.8);
}

/// Share of completion tokens in the lower half of the vocabulary.
fn low_share(input: &RewardInput<'_>) -> Option<f64> {
    let n = input.completion_ids.len().max(1) as f64;
    Some(input.completion_ids.iter().filter(|&&t| t < 1024).count() as f64 / n)
}

#[test]
fn ppo_learns_a_simple_reward() {
    let tokenizer = ChatTokenizer::from_dir(&policy_dir(), None).unwrap();
    let base = parity_prompts(&tokenizer);
    // Each prompt 16 times: rounds of 32 completions.
    let mut prompts = Prompts {
        rows: Vec::new(),
        ids: Vec::new(),
    };
    for _ in 0..16 {
        prompts.rows.extend(base.rows.iter().cloned());
        prompts.ids.extend(base.ids.iter().cloned());
    }
    // One-token completions: the first token's distribution given each prompt is what the
    // policy must move (from the random model's near-uniform one).
    let len = 1;
    let settings = PpoSettings {
        sampling: Sampling {
            temperature: 1.0,
            ..settings(len).sampling
        },
        num_ppo_epochs: 2,
        ..settings(len)
    };
    let rewards = Rewards::new(vec![(Box::new(FnReward::new("low", low_share)), 1.0)]);
    let policy = load_model::<Ad>(&policy_dir(), &Default::default())
        .unwrap()
        .1;
    // Ten rounds of 32 completions, two updates each, lr 1e-3.
    let steps = 20;
    let batch = prompts.ids.len();
    let mut trainer = trainer(settings, args(steps, batch, 1), prompts, rewards, policy);
    let mut round_rewards = Vec::new();
    for _ in 0..steps {
        let log = trainer.step().unwrap();
        if let Some((_, r)) = log.metrics.iter().find(|(n, _)| n == "reward") {
            round_rewards.push(*r);
        }
    }
    let first = round_rewards[..2].iter().sum::<f64>() / 2.0;
    let last = round_rewards[round_rewards.len() - 2..].iter().sum::<f64>() / 2.0;
    eprintln!("round rewards: {round_rewards:?}");
    assert!(
        last > first + 0.15,
        "reward did not rise: first rounds {first}, last rounds {last} ({round_rewards:?})"
    );
}

fn run(trainer: &mut PpoTrainer<Ad>, steps: usize) -> Vec<StepLog> {
    (0..steps).map(|_| trainer.step().unwrap()).collect()
}

fn resumable(policy: CausalLm<Ad>) -> PpoTrainer<Ad> {
    let tokenizer = ChatTokenizer::from_dir(&policy_dir(), None).unwrap();
    let settings = PpoSettings {
        num_ppo_epochs: 2,
        num_mini_batches: 2,
        ..settings(6)
    };
    let rewards = Rewards::new(vec![(Box::new(FnReward::new("low", low_share)), 1.0)]);
    trainer(
        settings,
        args(6, 1, 1),
        parity_prompts(&tokenizer),
        rewards,
        policy,
    )
}

#[test]
fn resuming_inside_a_round_equals_the_straight_run() {
    let device = Default::default();
    let load = |dir: &Path| load_model::<Ad>(dir, &device).unwrap().1;
    let mut straight = resumable(load(&policy_dir()));
    let expected = run(&mut straight, 6);

    let output = tempfile::tempdir().unwrap();
    let mut first = resumable(load(&policy_dir()));
    let mut logs = run(&mut first, 3);
    let state = TrainerState {
        global_step: 3,
        unlogged: Vec::new(),
        origin: None,
    };
    let checkpoint = save_checkpoint(
        &first,
        Weights::Full {
            base_dir: &policy_dir(),
        },
        &state,
        &serde_json::json!({}),
        output.path(),
    )
    .unwrap();
    drop(first);

    let mut resumed = resumable(load(&checkpoint));
    resumed.load_state(&checkpoint).unwrap();
    assert!(resumed.round().is_some(), "the round under way is saved");
    logs.extend(run(&mut resumed, 3));
    assert_eq!(logs, expected);
}
