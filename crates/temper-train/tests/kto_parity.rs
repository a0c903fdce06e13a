//! KTO against TRL 1.16's `KTOTrainer` (`fixtures/gen/kto_parity.py`): 8 unpaired records read
//! and tokenised by temper-data, KL completions paired as TRL pairs them, and three optimizer
//! steps of batches of 4 in dataset order (lr 1e-3 constant, max_grad_norm 1, float32), for the
//! `kto` and `apo_zero_unpaired` losses, and `kto` in batches of 3 (a short last batch of 2,
//! paired within itself). The logged loss, `kl`, `rewards/*`, `logps/*`,
//! `entropy` and gradient norm of every step match within 1e-3 relative (the gradient norm
//! 5e-3), `logits/*` within 1e-4 absolute.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use common::{ids, parity_fixture, root};
use temper_data::tokenize::tokenize;
use temper_data::{ChatTokenizer, TokenizeOptions, Tokenized, TokenizedSet, dataset};
use temper_model::load_model;
use temper_objectives::kto::{KtoConfig, KtoLoss};
use temper_train::{Objective, OfflineTrainer, Reference, reference_scores};

type Ad = Autodiff<Flex>;

/// The fixture's records as temper-data reads and tokenises them, KL completions paired.
fn examples(policy_dir: &std::path::Path, batch_size: usize) -> TokenizedSet {
    let data = dataset::load(
        &root().join("fixtures/parity/train/unpaired.jsonl"),
        None,
        false,
    )
    .unwrap();
    let tokenizer = ChatTokenizer::from_dir(policy_dir, None).unwrap();
    let options = TokenizeOptions {
        max_length: Some(1024),
        ..TokenizeOptions::default()
    };
    let tokenized: Vec<Tokenized> = data
        .examples
        .iter()
        .map(|example| tokenize(&tokenizer, &example, &options).unwrap().tokenized)
        .collect();
    let mut set = TokenizedSet::new(tokenized).unwrap();
    set.pair_kl_completions(batch_size, Some(1024));
    set
}

fn check(name: &str) {
    let fixture = parity_fixture("trl_kto_runs.json");
    let run = fixture["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap();
    let policy_dir = root().join(fixture["policy"].as_str().unwrap());
    let reference_dir = root().join(fixture["reference"].as_str().unwrap());
    let batch_size = run["args"]["per_device_train_batch_size"].as_u64().unwrap() as usize;
    let examples = examples(&policy_dir, batch_size);

    // The ids and KL pairing TRL's preprocessing produced.
    let TokenizedSet::Unpaired(ours) = &examples else {
        panic!("unpaired data")
    };
    let theirs = run["tokenized"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (i, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(ours.prompt_ids, ids(&theirs["prompt_ids"]), "record {i}");
        assert_eq!(
            ours.completion_ids,
            ids(&theirs["completion_ids"]),
            "record {i}"
        );
        assert_eq!(
            ours.desirable,
            theirs["label"].as_bool().unwrap(),
            "record {i}"
        );
        if !theirs["kl_completion_ids"].is_null() {
            assert_eq!(
                ours.kl_completion_ids,
                ids(&theirs["kl_completion_ids"]),
                "record {i}"
            );
        }
    }

    let args = &run["args"];
    let number = |key: &str| args[key].as_f64().unwrap();
    let loss = match args["loss_type"].as_str().unwrap() {
        "kto" => KtoLoss::Kto,
        _ => KtoLoss::ApoZeroUnpaired,
    };
    let objective = Objective::Kto(KtoConfig {
        beta: number("beta"),
        desirable_weight: number("desirable_weight"),
        undesirable_weight: number("undesirable_weight"),
        loss,
    });
    let device = Default::default();
    let (_, policy) = load_model::<Ad>(&policy_dir, &device).unwrap();
    let (_, reference) = load_model::<Ad>(&reference_dir, &device).unwrap();
    let reference = Reference::Precomputed(reference_scores(
        &reference.valid(),
        &examples.as_pairs().unwrap(),
        8,
        &device,
    ));
    let pad = 2040;
    let mut trainer = OfflineTrainer::new(
        policy,
        objective,
        temper_train::TrainingArgs {
            per_device_train_batch_size: batch_size,
            ..common::trl_parity_args()
        },
        examples,
        reference,
        pad,
        device,
    )
    .unwrap();
    let mut worst = (0.0, String::new());
    for expected in run["steps"].as_array().unwrap() {
        let log = trainer.step().unwrap();
        let mut ours: Vec<(String, f64)> = log.metrics.clone();
        ours.push(("loss".into(), log.loss));
        ours.push(("grad_norm".into(), log.grad_norm));
        let mut compared = Vec::new();
        for (metric, value) in ours {
            let Some(theirs) = expected[&metric].as_f64() else {
                continue;
            };
            let relative = (value - theirs).abs() / theirs.abs().max(1e-6);
            let (tolerance, absolute) = match metric.as_str() {
                "grad_norm" => (5e-3, 1e-7),
                // Means of logits that nearly cancel: absolute.
                m if m.starts_with("logits/") => (1e-3, 1e-4),
                // A KL clamped at 0 by both.
                _ if theirs == 0.0 => (0.0, 1e-7),
                _ => (1e-3, 1e-7),
            };
            assert!(
                relative <= tolerance || (value - theirs).abs() <= absolute,
                "{name} step {}: {metric} = {value}, TRL {theirs}",
                log.step
            );
            if relative > worst.0 && !metric.starts_with("logits/") && theirs != 0.0 {
                worst = (relative, format!("step {} {metric}", log.step));
            }
            compared.push(metric);
        }
        for metric in [
            "loss",
            "grad_norm",
            "kl",
            "rewards/chosen",
            "rewards/rejected",
            "logps/chosen",
            "logits/chosen",
            "entropy",
        ] {
            // TRL logs a side's metrics only when the batch has such completions.
            assert!(
                expected.get(metric).is_none() || compared.iter().any(|m| m == metric),
                "{name} step {}: {metric} not compared",
                log.step
            );
        }
        if name == "kto_batch_3" && log.step == 3 {
            let kl = expected["kl"].as_f64().unwrap();
            assert!(kl > 0.0, "the short last batch's KL term is exercised");
        }
        if name == "kto" {
            assert!(
                expected["kl"].as_f64().unwrap() > 0.0,
                "the KL term is exercised"
            );
        }
    }
    eprintln!(
        "{name}: worst relative difference {:.2e} ({})",
        worst.0, worst.1
    );
}

#[test]
fn kto_matches_trl() {
    check("kto");
}

#[test]
fn apo_zero_unpaired_matches_trl() {
    check("apo_zero_unpaired");
}

#[test]
fn kto_with_a_short_last_batch_matches_trl() {
    check("kto_batch_3");
}
