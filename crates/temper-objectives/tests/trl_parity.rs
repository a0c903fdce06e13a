//! Losses and metrics against TRL 1.16's own loss code on fixed inputs
//! (`fixtures/parity/objectives.json`, from `fixtures/gen/objectives_parity.py`), in float64,
//! within 1e-6 relative.

mod common;

use common::{Exact, assert_close, ints2, reference_dpo_loss, scalar, t1, t2, values};
use serde_json::Value;
use temper_objectives::grpo::{
    Aggregation, GrpoConfig, GrpoInputs, RewardScaling, group_advantages, grpo_loss,
};
use temper_objectives::kto::{KtoConfig, KtoLoss, kto_kl, kto_loss};
use temper_objectives::logprobs::{
    next_token_targets, token_log_probs, token_log_probs_chunked, token_stats,
};
use temper_objectives::orpo::{OrpoNll, orpo_loss};
use temper_objectives::preference::{DpoConfig, PreferenceLoss, dpo_loss};
use temper_objectives::reward::reward_model_loss;
use temper_objectives::sft::sft_loss;
use temper_objectives::simpo::{SimpoConfig, simpo_loss};
use temper_objectives::twin::Pair;
use temper_objectives::{LossOutput, PairLogProbs, SequenceLogProbs};

const TOLERANCE: f64 = 1e-6;

fn cases(kind: &str) -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/parity/objectives.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture present");
    let document: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let found: Vec<Value> = document["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["kind"] == kind)
        .cloned()
        .collect();
    assert!(!found.is_empty(), "no {kind} cases in the fixture");
    found
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("rows").iter().map(floats).collect()
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Metrics TRL logs beside the loss that come from the model's logits (the fixture's stand-in
/// model returns zeros); ours come from `logit_metrics` / `token_metrics`, tested elsewhere.
const LOGIT_METRICS: [&str; 3] = ["logits/chosen", "logits/rejected", "mean_token_accuracy"];

/// Every other anchor metric must be reported under the same name, with the same value.
fn assert_metrics(label: &str, ours: &LossOutput<Exact>, anchor: &Value) {
    let ours: Vec<(&str, f64)> = ours.metrics.to_f64();
    for (name, theirs) in anchor.as_object().expect("metrics object") {
        if LOGIT_METRICS.contains(&name.as_str()) {
            continue;
        }
        let (_, value) = ours
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{label}: TRL logs `{name}`, we do not"));
        assert_close(
            &format!("{label} {name}"),
            *value,
            number(theirs),
            TOLERANCE,
        );
    }
}

fn pair_log_probs(case: &Value, prefix: &str) -> PairLogProbs<Exact> {
    let tokens = |side: &str| match case.get(format!("{side}_tokens")) {
        Some(v) => t1(&floats(v)),
        None => t1(&vec![
            1.0;
            floats(&case[format!("{prefix}{side}_logps")]).len()
        ]),
    };
    PairLogProbs::new(
        t1(&floats(&case[format!("{prefix}chosen_logps")])),
        tokens("chosen"),
        t1(&floats(&case[format!("{prefix}rejected_logps")])),
        tokens("rejected"),
    )
    .expect("shapes agree")
}

#[test]
fn token_log_probs_entropy_and_sft_loss_match_trl_and_transformers() {
    for case in cases("tokens") {
        let logits_rows = matrix(
            &case["logits"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|b| b.as_array().unwrap().clone())
                .collect(),
        );
        let [batch, seq] = [
            case["labels"].as_array().unwrap().len(),
            case["labels"][0].as_array().unwrap().len(),
        ];
        let vocab = logits_rows[0].len();
        let flat: Vec<f64> = logits_rows.into_iter().flatten().collect();
        let logits = t1::<Exact>(&flat).reshape([batch, seq, vocab]);
        let labels: Vec<Vec<i64>> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect();
        let mask: Vec<Vec<f64>> = labels
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&l| if l == -100 { 0.0 } else { 1.0 })
                    .collect()
            })
            .collect();
        let (logits, targets, mask) = next_token_targets(logits, ints2(&labels), t2(&mask));

        let expected = matrix(&case["token_logps"]).concat();
        let plain = values(token_log_probs(logits.clone(), targets.clone(), mask.clone()).unwrap());
        let chunked = values(
            token_log_probs_chunked(logits.clone(), targets.clone(), mask.clone(), 2).unwrap(),
        );
        for (i, e) in expected.iter().enumerate() {
            assert_close(&format!("token log-prob {i}"), plain[i], *e, TOLERANCE);
            assert_close(
                &format!("chunked token log-prob {i}"),
                chunked[i],
                *e,
                TOLERANCE,
            );
        }

        let stats = token_stats(logits, targets, mask.clone(), Some(3)).unwrap();
        let entropy = values(stats.entropy);
        let mask_flat = values(mask.clone());
        for (i, e) in matrix(&case["entropy"]).concat().iter().enumerate() {
            assert_close(
                &format!("entropy {i}"),
                entropy[i],
                e * mask_flat[i],
                TOLERANCE,
            );
        }

        let per_token = t2::<Exact>(&matrix(&case["token_logps"]));
        let plain = sft_loss(per_token.clone(), mask.clone(), None).unwrap();
        assert_close(
            "sft loss",
            scalar(plain.loss),
            number(&case["sft_loss"]),
            TOLERANCE,
        );
        let accumulated =
            sft_loss(per_token, mask, Some(number(&case["num_items_in_batch"]))).unwrap();
        assert_close(
            "sft loss under gradient accumulation",
            scalar(accumulated.loss),
            number(&case["sft_loss_accumulated"]),
            TOLERANCE,
        );
    }
}

#[test]
fn every_trl_dpo_loss_type_and_combination_matches() {
    let mut seen = Vec::new();
    for case in cases("dpo") {
        let names: Vec<&str> = case["loss_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let weights = floats(&case["weights"]);
        let config = DpoConfig {
            beta: number(&case["beta"]),
            label_smoothing: number(&case["label_smoothing"]),
            discopop_tau: number(&case["discopop_tau"]),
            losses: names
                .iter()
                .zip(&weights)
                .map(|(n, w)| (n.parse::<PreferenceLoss>().expect("TRL name parses"), *w))
                .collect(),
        };
        let policy = pair_log_probs(&case, "");
        let reference = PairLogProbs::new(
            t1(&floats(&case["ref_chosen_logps"])),
            t1(&floats(&case["chosen_tokens"])),
            t1(&floats(&case["ref_rejected_logps"])),
            t1(&floats(&case["rejected_tokens"])),
        )
        .unwrap();
        let label = names.join("+");
        let out = dpo_loss(&config, &policy, &reference).expect("valid config");
        assert_close(
            &format!("{label} loss"),
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics(&label, &out, &case["metrics"]);
        assert_close(
            &format!("{label} reference twin"),
            reference_dpo(&config, &case),
            number(&case["loss"]),
            TOLERANCE,
        );
        seen.extend(config.losses.iter().map(|(l, _)| *l));
    }
    for loss in PreferenceLoss::ALL {
        assert!(seen.contains(&loss), "{loss} has no TRL fixture");
    }
}

/// The same case through the f64 twins, so the twin module is anchored too.
fn reference_dpo(config: &DpoConfig, case: &Value) -> f64 {
    let get = |k: &str| floats(&case[k]);
    let (c, r, rc, rr, nc, nr) = (
        get("chosen_logps"),
        get("rejected_logps"),
        get("ref_chosen_logps"),
        get("ref_rejected_logps"),
        get("chosen_tokens"),
        get("rejected_tokens"),
    );
    let pairs: Vec<Pair> = (0..c.len())
        .map(|i| Pair {
            logp_c: c[i],
            logp_r: r[i],
            ref_c: rc[i],
            ref_r: rr[i],
            n_c: nc[i],
            n_r: nr[i],
        })
        .collect();
    reference_dpo_loss(config, &pairs)
}

#[test]
fn orpo_matches_trl() {
    for case in cases("orpo") {
        let policy = pair_log_probs(&case, "");
        let nll = number(&case["nll"]);
        let full = SequenceLogProbs {
            sum: t1::<Exact>(&[-nll]),
            tokens: t1(&[1.0]),
        };
        let out = orpo_loss(
            number(&case["beta"]),
            &policy,
            OrpoNll::PromptAndCompletion(&full),
        )
        .unwrap();
        assert_close(
            "orpo loss",
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics("orpo", &out, &case["metrics"]);
    }
}

#[test]
fn simpo_matches_trl_cpo() {
    for case in cases("simpo") {
        let config = SimpoConfig {
            beta: number(&case["beta"]),
            gamma: number(&case["gamma"]),
            label_smoothing: number(&case["label_smoothing"]),
        };
        let out = simpo_loss(&config, &pair_log_probs(&case, "")).unwrap();
        assert_close(
            "simpo loss",
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics("simpo", &out, &case["metrics"]);
    }
}

#[test]
fn kto_matches_trl() {
    for case in cases("kto") {
        let loss = match case["loss_type"].as_str().unwrap() {
            "kto" => KtoLoss::Kto,
            _ => KtoLoss::ApoZeroUnpaired,
        };
        let config = KtoConfig {
            beta: number(&case["beta"]),
            desirable_weight: number(&case["desirable_weight"]),
            undesirable_weight: number(&case["undesirable_weight"]),
            loss,
        };
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let kl = kto_kl(
            t1::<Exact>(&floats(&case["kl_logps"])),
            t1(&floats(&case["ref_kl_logps"])),
        )
        .unwrap();
        let out = kto_loss(
            &config,
            t1(&floats(&case["logps"])),
            t1(&floats(&case["ref_logps"])),
            &labels,
            Some(kl),
        )
        .unwrap();
        assert_close(
            "kto loss",
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics("kto", &out, &case["metrics"]);
    }
}

#[test]
fn reward_model_loss_matches_trl() {
    for case in cases("reward") {
        let margin = case["margin"]
            .as_array()
            .map(|_| t1::<Exact>(&floats(&case["margin"])));
        let center = case["center_rewards_coefficient"].as_f64();
        let out = reward_model_loss(
            t1(&floats(&case["chosen"])),
            t1(&floats(&case["rejected"])),
            margin,
            center,
        )
        .unwrap();
        assert_close(
            "reward loss",
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics("reward", &out, &case["metrics"]);
    }
}

#[test]
fn grpo_advantages_losses_and_metrics_match_trl() {
    for case in cases("grpo") {
        let scaling = match case["scale_rewards"].as_str().unwrap() {
            "group" => RewardScaling::Group,
            "batch" => RewardScaling::Batch,
            _ => RewardScaling::None,
        };
        let group = case["group_size"].as_u64().unwrap() as usize;
        let advantages = values(
            group_advantages(t1::<Exact>(&floats(&case["rewards"])), group, scaling).unwrap(),
        );
        for (i, e) in floats(&case["advantages"]).iter().enumerate() {
            assert_close(&format!("advantage {i}"), advantages[i], *e, TOLERANCE);
        }
        let loss_type = case["loss_type"].as_str().unwrap();
        let aggregation = match loss_type {
            "grpo" => Aggregation::Grpo,
            "bnpo" => Aggregation::Bnpo,
            "dr_grpo" => Aggregation::DrGrpo {
                max_completion_length: case["max_completion_length"].as_u64().unwrap() as usize,
            },
            _ => Aggregation::Dapo {
                total_tokens: number(&case["num_items_in_batch"]),
            },
        };
        let config = GrpoConfig {
            beta: number(&case["beta"]),
            epsilon_low: number(&case["epsilon_low"]),
            epsilon_high: number(&case["epsilon_high"]),
            aggregation,
            bias_corrected_kl: case["bias_corrected_kl"].as_bool().unwrap(),
        };
        let inputs = GrpoInputs {
            logps: t2(&matrix(&case["logps"])),
            old_logps: Some(t2(&matrix(&case["old_logps"]))),
            ref_logps: Some(t2(&matrix(&case["ref_logps"]))),
            mask: t2(&matrix(&case["mask"])),
            advantages: t1(&advantages),
        };
        let out = grpo_loss(&config, &inputs).unwrap();
        assert_close(
            &format!("{loss_type} loss"),
            scalar(out.loss.clone()),
            number(&case["loss"]),
            TOLERANCE,
        );
        assert_metrics(loss_type, &out, &case["metrics"]);
    }
}
