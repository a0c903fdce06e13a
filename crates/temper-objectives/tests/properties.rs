//! Properties of every loss on the single-precision backend (ndarray; CUDA with `--features
//! cuda`): the tensor code equals its f64 twin, the symmetries and limits the papers state hold,
//! and extreme or empty inputs give finite losses and gradients.
//!
//! "Equal" is `|ours − twin| ≤ 1e-5 · max(|ours|, |twin|) + 1e-6`: relative, with an absolute
//! floor for losses that are themselves near zero, where f32 rounding of the inputs dominates.

mod common;

use burn::tensor::{Tensor, backend::Backend};
use common::{
    Single, SingleGrad, close, pair_tensors, reference_dpo_loss, row, scalar, t1, t2, values,
};
use proptest::prelude::*;
use temper_objectives::grpo::{
    Aggregation, GrpoConfig, GrpoInputs, RewardScaling, aggregate, group_advantages, grpo_loss,
    k3_kl,
};
use temper_objectives::kto::{KtoConfig, KtoLoss, kto_loss};
use temper_objectives::logprobs::{token_log_probs, token_log_probs_chunked, token_stats};
use temper_objectives::orpo::{OrpoNll, orpo_loss};
use temper_objectives::ppo::{
    KlEstimator, gae, masked_whiten, ppo_policy_loss, ppo_value_loss, shape_rewards,
};
use temper_objectives::preference::{
    DpoConfig, PreferenceLoss, discopop_loss, dpo_loss, exo_pair_loss, hinge_loss, ipo_loss,
    logit_metrics, robust_loss, sigmoid_loss, sigmoid_norm_loss,
};
use temper_objectives::reward::reward_model_loss;
use temper_objectives::sft::sft_loss;
use temper_objectives::sft::token_metrics;
use temper_objectives::simpo::{SimpoConfig, simpo_loss};
use temper_objectives::twin::{self, Pair};
use temper_objectives::{PairLogProbs, SequenceLogProbs};

const REL: f64 = 1e-5;
const ABS: f64 = 1e-6;

/// The absolute error a loss of `β·margin` may carry from the margin's f32 arithmetic: the
/// four log-probs cancel (−59.7 + 23.5 + 36.6 − 1.7), so the margin is only as exact as a few
/// f32 ulps of the largest of them, whatever its own size.
fn margin_slack(pair: &Pair, beta: f64) -> f64 {
    let largest = [pair.logp_c, pair.logp_r, pair.ref_c, pair.ref_r]
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()));
    8.0 * f32::EPSILON as f64 * largest * beta.max(1.0)
}

/// The absolute error a batch loss may carry from its margins' f32 arithmetic: each pair's
/// [`margin_slack`], averaged as the loss averages, and amplified by robust DPO's
/// `1/(1 − 2ε)` — near `ε = ½` its two large terms cancel to a small loss.
fn batch_slack(loss: PreferenceLoss, config: &DpoConfig, pairs: &[Pair]) -> f64 {
    let mean = pairs
        .iter()
        .map(|p| margin_slack(p, config.beta))
        .sum::<f64>()
        / pairs.len() as f64;
    match loss {
        PreferenceLoss::Robust => mean / (1.0 - 2.0 * config.label_smoothing),
        _ => mean,
    }
}

/// Rounds to f32 so the twin sees exactly the tensor's inputs.
fn f32ed(x: f64) -> f64 {
    x as f32 as f64
}

fn pair_strategy(min_logp: f64) -> impl Strategy<Value = Pair> {
    (
        min_logp..0.0,
        min_logp..0.0,
        min_logp..0.0,
        min_logp..0.0,
        1u32..64,
        1u32..64,
    )
        .prop_map(|(c, r, rc, rr, nc, nr)| Pair {
            logp_c: f32ed(c),
            logp_r: f32ed(r),
            ref_c: f32ed(rc),
            ref_r: f32ed(rr),
            n_c: nc as f64,
            n_r: nr as f64,
        })
}

fn pairs_strategy() -> impl Strategy<Value = Vec<Pair>> {
    prop::collection::vec(pair_strategy(-60.0), 1..8)
}

fn config_for(loss: PreferenceLoss, beta: f64, smoothing: f64) -> DpoConfig {
    let label_smoothing = match loss {
        PreferenceLoss::ExoPair => smoothing.max(1e-3),
        PreferenceLoss::Robust | PreferenceLoss::Aot | PreferenceLoss::AotPair => smoothing,
        _ => 0.0,
    };
    DpoConfig {
        label_smoothing,
        ..DpoConfig::single(loss, beta)
    }
}

fn dpo_value<B: Backend>(config: &DpoConfig, pairs: &[Pair]) -> f64 {
    let (policy, reference) = pair_tensors::<B>(pairs);
    scalar(dpo_loss(config, &policy, &reference).expect("valid").loss)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_preference_loss_equals_its_f64_twin(
        pairs in pairs_strategy(), beta in 0.01f64..1.0, smoothing in 0.0f64..0.4,
    ) {
        for loss in PreferenceLoss::ALL {
            let config = config_for(loss, f32ed(beta), f32ed(smoothing));
            let ours = dpo_value::<Single>(&config, &pairs);
            let twin = reference_dpo_loss(&config, &pairs);
            let slack = batch_slack(loss, &config, &pairs);
            prop_assert!(close(ours, twin, REL, ABS + slack), "{loss}: tensor {ours} vs twin {twin}");
        }
    }

    #[test]
    fn swapping_chosen_and_rejected_negates_the_margin_and_maps_loss_m_to_loss_minus_m(
        pairs in pairs_strategy(), beta in 0.01f64..1.0,
    ) {
        let swapped: Vec<Pair> = pairs.iter().map(Pair::swapped).collect();
        let config = DpoConfig::single(PreferenceLoss::Sigmoid, f32ed(beta));
        let (policy, reference) = pair_tensors::<Single>(&pairs);
        let (policy_s, reference_s) = pair_tensors::<Single>(&swapped);
        let out = dpo_loss(&config, &policy, &reference).unwrap();
        let out_s = dpo_loss(&config, &policy_s, &reference_s).unwrap();
        let margin = |o: &temper_objectives::LossOutput<Single>| scalar(o.metrics.get("rewards/margins").unwrap().clone());
        prop_assert!(close(margin(&out_s), -margin(&out), REL, ABS));
        // Per pair: the loss of the swapped pair is the loss at the negated margin.
        for (p, s) in pairs.iter().zip(&swapped) {
            let m = t1::<Single>(&[-p.margin()]);
            let at_minus_m = scalar(sigmoid_loss(config.beta, m));
            let swapped_loss = dpo_value::<Single>(&config, std::slice::from_ref(s));
            let slack = margin_slack(p, config.beta);
            prop_assert!(close(swapped_loss, at_minus_m, REL, ABS + slack));
        }
        // Every loss that reads only the (averaged) margin: the swapped pair's loss is that
        // loss's formula at the negated margin.
        let beta = f32ed(beta);
        for (p, s) in pairs.iter().zip(&swapped) {
            let minus_m = || t1::<Single>(&[-p.margin()]);
            let averaged = p.margin_per_token();
            let minus_averaged = || t1::<Single>(&[-averaged]);
            let at_minus_m = [
                (PreferenceLoss::Hinge, hinge_loss(beta, minus_m())),
                (PreferenceLoss::Robust, robust_loss(beta, 0.1, minus_m())),
                (PreferenceLoss::ExoPair, exo_pair_loss(beta, 0.1, minus_m())),
                (PreferenceLoss::Discopop, discopop_loss(beta, 0.05, minus_m())),
                (PreferenceLoss::Ipo, ipo_loss(beta, minus_averaged())),
                (PreferenceLoss::SigmoidNorm, sigmoid_norm_loss(beta, minus_averaged())),
            ];
            for (loss, expected) in at_minus_m {
                let swapped_loss = dpo_value::<Single>(&config_for(loss, beta, 0.1), std::slice::from_ref(s));
                let expected = scalar(expected);
                let slack = margin_slack(p, beta);
                prop_assert!(
                    close(swapped_loss, expected, REL, ABS + slack),
                    "{loss}: {swapped_loss} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn losses_that_raise_chosen_likelihood_have_nonpositive_chosen_gradients(
        pairs in pairs_strategy(), beta in 0.01f64..1.0,
    ) {
        let raising = [
            PreferenceLoss::Sigmoid, PreferenceLoss::Hinge, PreferenceLoss::Robust,
            PreferenceLoss::BcoPair, PreferenceLoss::ApoZero, PreferenceLoss::SigmoidNorm,
            PreferenceLoss::Sft, PreferenceLoss::Aot, PreferenceLoss::AotPair,
        ];
        for loss in raising {
            let config = config_for(loss, f32ed(beta), 0.0);
            let grads = chosen_gradient(&pairs, |policy, reference| {
                dpo_loss(&config, policy, reference).unwrap().loss
            });
            prop_assert!(grads.iter().all(|g| *g <= 0.0 && g.is_finite()), "{loss}: {grads:?}");
        }
        let simpo = SimpoConfig::default();
        let grads = chosen_gradient(&pairs, |policy, _| simpo_loss(&simpo, policy).unwrap().loss);
        prop_assert!(grads.iter().all(|g| *g <= 0.0), "simpo: {grads:?}");
        let grads = chosen_gradient(&pairs, |policy, _| {
            orpo_loss(0.1, policy, OrpoNll::Completion).unwrap().loss
        });
        prop_assert!(grads.iter().all(|g| *g <= 0.0), "orpo: {grads:?}");
    }

    #[test]
    fn losses_and_gradients_are_finite_down_to_minus_1e4_and_for_empty_masks(
        pairs in prop::collection::vec(pair_strategy(-1e4), 1..6),
        empty in prop::collection::vec(any::<bool>(), 6),
        beta in 0.01f64..1.0,
    ) {
        let pairs: Vec<Pair> = pairs
            .iter()
            .zip(&empty)
            .map(|(p, e)| if *e { Pair { n_c: 0.0, logp_c: 0.0, ref_c: 0.0, ..*p } } else { *p })
            .collect();
        for loss in PreferenceLoss::ALL {
            let config = config_for(loss, f32ed(beta), 0.1);
            let mut value = 0.0;
            let grads = chosen_gradient(&pairs, |policy, reference| {
                let loss = dpo_loss(&config, policy, reference).unwrap().loss;
                value = scalar(loss.clone().inner());
                loss
            });
            prop_assert!(value.is_finite(), "{loss}: loss {value}");
            prop_assert!(grads.iter().all(|g| g.is_finite()), "{loss}: {grads:?}");
        }
        let grads = chosen_gradient(&pairs, |policy, _| simpo_loss(&SimpoConfig::default(), policy).unwrap().loss);
        prop_assert!(grads.iter().all(|g| g.is_finite()), "simpo: {grads:?}");
        let grads = chosen_gradient(&pairs, |policy, _| orpo_loss(0.1, policy, OrpoNll::Completion).unwrap().loss);
        prop_assert!(grads.iter().all(|g| g.is_finite()), "orpo: {grads:?}");
    }

    #[test]
    fn kto_reward_and_grpo_are_finite_down_to_minus_1e4(
        logps in prop::collection::vec((-1e4f64..0.0, -1e4f64..0.0, -1e4f64..0.0, any::<bool>()), 2..8),
        advantage in -3.0f64..3.0,
    ) {
        let col = |f: fn(&(f64, f64, f64, bool)) -> f64| logps.iter().map(|x| f32ed(f(x))).collect::<Vec<_>>();
        let (a, b, c) = (col(|x| x.0), col(|x| x.1), col(|x| x.2));
        let labels: Vec<bool> = logps.iter().map(|x| x.3).collect();
        let policy = t1::<SingleGrad>(&a).require_grad();
        let kto = kto_loss(&KtoConfig::default(), policy.clone(), t1(&b), &labels, Some(t1(&[5.0]))).unwrap().loss;
        let rm = reward_model_loss(policy.clone(), t1(&b), None, Some(0.01)).unwrap().loss;
        let grpo = grpo_loss(
            &GrpoConfig { beta: 0.04, ..GrpoConfig::default() },
            &GrpoInputs {
                logps: policy.clone().reshape([1, a.len()]),
                old_logps: Some(row(&b)),
                ref_logps: Some(row(&c)),
                mask: t2(&[vec![1.0; a.len()]]),
                advantages: t1(&[advantage]),
            },
        ).unwrap().loss;
        for (name, loss) in [("kto", kto), ("reward", rm), ("grpo", grpo)] {
            let value = scalar(loss.clone().inner());
            let grads = values::<Single, 1>(policy.grad(&loss.backward()).unwrap());
            prop_assert!(value.is_finite() && grads.iter().all(|g| g.is_finite()), "{name}: {value} {grads:?}");
        }
    }

    #[test]
    fn length_normalised_losses_are_unchanged_when_a_sequence_is_duplicated(
        chosen in prop::collection::vec(-8.0f64..0.0, 1..12),
        rejected in prop::collection::vec(-8.0f64..0.0, 1..12),
        ref_shift in -2.0f64..2.0,
    ) {
        // One pair from per-token log-probs; the reference is the policy shifted per token.
        let build = |copies: usize| {
            let sequence = |tokens: &[f64], shift: f64| {
                let repeated: Vec<f64> = (0..copies).flat_map(|_| tokens.iter().map(|t| f32ed(t + shift))).collect();
                let mask = vec![1.0; repeated.len()];
                SequenceLogProbs::<Single>::from_tokens(t2(&[repeated]), t2(&[mask]))
            };
            let policy = PairLogProbs { chosen: sequence(&chosen, 0.0), rejected: sequence(&rejected, 0.0) };
            let reference = PairLogProbs { chosen: sequence(&chosen, ref_shift / 10.0), rejected: sequence(&rejected, -ref_shift / 10.0) };
            (policy, reference)
        };
        let (once_p, once_r) = build(1);
        let (twice_p, twice_r) = build(2);
        for loss in [PreferenceLoss::SigmoidNorm, PreferenceLoss::Ipo] {
            let config = DpoConfig::single(loss, 0.3);
            let once = scalar(dpo_loss(&config, &once_p, &once_r).unwrap().loss);
            let twice = scalar(dpo_loss(&config, &twice_p, &twice_r).unwrap().loss);
            prop_assert!(close(once, twice, REL, ABS), "{loss}: {once} vs {twice}");
        }
        let simpo = |p: &PairLogProbs<Single>| scalar(simpo_loss(&SimpoConfig::default(), p).unwrap().loss);
        prop_assert!(close(simpo(&once_p), simpo(&twice_p), REL, ABS));
        let orpo = |p: &PairLogProbs<Single>| scalar(orpo_loss(0.1, p, OrpoNll::Completion).unwrap().loss);
        prop_assert!(close(orpo(&once_p), orpo(&twice_p), REL, ABS));
    }

    #[test]
    fn simpo_and_orpo_equal_their_twins(pairs in pairs_strategy(), beta in 0.1f64..3.0, gamma in 0.0f64..2.0) {
        let (policy, _) = pair_tensors::<Single>(&pairs);
        let config = SimpoConfig { beta: f32ed(beta), gamma: f32ed(gamma), label_smoothing: 0.0 };
        let ours = scalar(simpo_loss(&config, &policy).unwrap().loss);
        let twin = twin::mean(pairs.iter().map(|p| twin::simpo_loss(config.beta, config.gamma, 0.0, p)));
        prop_assert!(close(ours, twin, REL, ABS), "simpo {ours} vs {twin}");

        // LLaMA-Factory's NLL: per-sequence completion averages, then the batch mean.
        let lambda = f32ed(beta / 10.0);
        let ours = scalar(orpo_loss(lambda, &policy, OrpoNll::Completion).unwrap().loss);
        let twin = twin::orpo_loss(lambda, twin::orpo_completion_nll(&pairs), &pairs);
        prop_assert!(close(ours, twin, REL, ABS), "orpo (completion NLL) {ours} vs {twin}");

        // TRL's NLL: one token mean over prompt and completion of every chosen sequence.
        let prompt: Vec<(f64, f64)> = pairs.iter().map(|p| (f32ed(p.logp_r / 3.0), p.n_r)).collect();
        let full = SequenceLogProbs::<Single> {
            sum: t1(&pairs.iter().zip(&prompt).map(|(p, q)| f32ed(p.logp_c + q.0)).collect::<Vec<_>>()),
            tokens: t1(&pairs.iter().zip(&prompt).map(|(p, q)| p.n_c + q.1).collect::<Vec<_>>()),
        };
        let ours = scalar(orpo_loss(lambda, &policy, OrpoNll::PromptAndCompletion(&full)).unwrap().loss);
        let full_logps: Vec<f64> = values(full.sum.clone());
        let full_tokens: f64 = values(full.tokens.clone()).iter().sum();
        let twin = twin::orpo_loss(lambda, twin::sft_loss(&full_logps, full_tokens), &pairs);
        prop_assert!(close(ours, twin, REL, ABS), "orpo (prompt and completion NLL) {ours} vs {twin}");
    }

    #[test]
    fn kto_equals_its_twin(
        samples in prop::collection::vec((-60.0f64..0.0, -60.0f64..0.0, any::<bool>()), 1..10),
        kl in 0.0f64..3.0, weights in (0.5f64..2.0, 0.5f64..2.0),
    ) {
        let samples: Vec<(f64, f64, bool)> = samples.iter().map(|&(a, b, d)| (f32ed(a), f32ed(b), d)).collect();
        let config = KtoConfig { beta: 0.1, desirable_weight: f32ed(weights.0), undesirable_weight: f32ed(weights.1), loss: KtoLoss::Kto };
        let logps = t1::<Single>(&samples.iter().map(|s| s.0).collect::<Vec<_>>());
        let refs = t1::<Single>(&samples.iter().map(|s| s.1).collect::<Vec<_>>());
        let labels: Vec<bool> = samples.iter().map(|s| s.2).collect();
        let kl = f32ed(kl);
        let ours = scalar(kto_loss(&config, logps, refs, &labels, Some(t1(&[kl]))).unwrap().loss);
        let twin = twin::mean(twin::kto_losses(0.1, config.desirable_weight, config.undesirable_weight, kl, &samples));
        prop_assert!(close(ours, twin, REL, ABS), "{ours} vs {twin}");
    }

    #[test]
    fn reward_model_loss_equals_its_twin(
        rewards in prop::collection::vec((-20.0f64..20.0, -20.0f64..20.0, 0.0f64..2.0), 1..10),
        center in 0.0f64..0.1,
    ) {
        let col = |f: fn(&(f64, f64, f64)) -> f64| rewards.iter().map(|r| f32ed(f(r))).collect::<Vec<_>>();
        let (c, r, m) = (col(|x| x.0), col(|x| x.1), col(|x| x.2));
        let center = f32ed(center);
        let ours = scalar(reward_model_loss(t1::<Single>(&c), t1(&r), Some(t1(&m)), Some(center)).unwrap().loss);
        let twin = twin::reward_model_loss(&c, &r, &m, center);
        prop_assert!(close(ours, twin, REL, ABS), "{ours} vs {twin}");
    }

    #[test]
    fn grpo_advantages_sum_to_zero_per_group_and_equal_their_twin(
        groups in 1usize..5, size in 1usize..6, seed in prop::collection::vec(0.0f64..1.0, 30),
    ) {
        let rewards: Vec<f64> = (0..groups * size).map(|i| f32ed((seed[i % seed.len()] * 4.0).round() / 2.0)).collect();
        for scaling in [RewardScaling::Group, RewardScaling::Batch, RewardScaling::None] {
            let ours = values(group_advantages(t1::<Single>(&rewards), size, scaling).unwrap());
            let twin = twin::grpo_advantages(&rewards, size, scaling);
            for (a, b) in ours.iter().zip(&twin) {
                prop_assert!(close(*a, *b, REL, 1e-4), "{scaling:?}: {a} vs {b}");
            }
            for group in ours.chunks(size) {
                let sum: f64 = group.iter().sum();
                let scale = group.iter().map(|a| a.abs()).fold(1.0, f64::max);
                prop_assert!(sum.abs() <= 1e-5 * scale * size as f64, "{scaling:?}: group sums to {sum}");
            }
        }
    }

    #[test]
    fn grpo_loss_equals_its_twin_for_every_aggregation(
        rows in prop::collection::vec(prop::collection::vec((-5.0f64..0.0, -0.5f64..0.5, -0.5f64..0.5, any::<bool>()), 5), 1..6),
        advantages in prop::collection::vec(-2.0f64..2.0, 6),
        beta in prop_oneof![Just(0.0), 0.01f64..0.2],
        eps_high in 0.1f64..0.4,
        bias_corrected in any::<bool>(),
    ) {
        let logps: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|t| f32ed(t.0)).collect()).collect();
        let old: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|t| f32ed(t.0 + t.1)).collect()).collect();
        let reference_logps: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|t| f32ed(t.0 + t.2)).collect()).collect();
        let mask: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|t| if t.3 { 1.0 } else { 0.0 }).collect()).collect();
        let advantages: Vec<f64> = advantages[..rows.len()].iter().map(|a| f32ed(*a)).collect();
        let eps_high = f32ed(eps_high);
        for aggregation in [Aggregation::Grpo, Aggregation::Bnpo, Aggregation::DrGrpo { max_completion_length: 8 }, Aggregation::Dapo { total_tokens: 11.0 }] {
            let config = GrpoConfig { beta: f32ed(beta), epsilon_low: 0.2, epsilon_high: eps_high, aggregation, bias_corrected_kl: bias_corrected };
            let inputs = GrpoInputs {
                logps: t2::<Single>(&logps),
                old_logps: Some(t2(&old)),
                ref_logps: Some(t2(&reference_logps)),
                mask: t2(&mask),
                advantages: t1(&advantages),
            };
            let ours = scalar(grpo_loss(&config, &inputs).unwrap().loss);
            let settings = twin::GrpoSettings {
                beta: config.beta, eps_low: 0.2, eps_high, bias_corrected_kl: bias_corrected,
            };
            let per_token: Vec<Vec<f64>> = (0..rows.len())
                .map(|i| (0..5).map(|t| {
                    let token = twin::GrpoToken {
                        logp: logps[i][t], old_logp: old[i][t], ref_logp: reference_logps[i][t], advantage: advantages[i],
                    };
                    twin::grpo_token_loss(&token, &settings)
                }).collect())
                .collect();
            let twin = twin::aggregate(&per_token, &mask, aggregation);
            prop_assert!(close(ours, twin, REL, ABS), "{aggregation:?}: {ours} vs {twin}");
        }
    }

    #[test]
    fn k3_kl_is_nonnegative_and_equals_its_twin(logp in -1e4f64..0.0, reference_logp in -1e4f64..0.0) {
        let (a, b) = (f32ed(logp), f32ed(reference_logp));
        let ours = values(k3_kl(t1::<Single>(&[a]), t1(&[b])))[0];
        prop_assert!(ours >= 0.0 && ours.is_finite());
        let twin = twin::k3_kl(a, b);
        prop_assert!(close(ours, twin, REL, ABS), "{ours} vs {twin}");
    }

    #[test]
    fn gae_and_value_loss_equal_their_twins(
        steps in prop::collection::vec((-1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0), 1..12),
        gamma in 0.9f64..1.0, lambda in 0.8f64..1.0, clip in 0.0f64..0.5,
    ) {
        let col = |f: fn(&(f64, f64, f64, f64)) -> f64| steps.iter().map(|s| f32ed(f(s))).collect::<Vec<_>>();
        let (rewards, values_now, old_values, _) = (col(|s| s.0), col(|s| s.1), col(|s| s.2), col(|s| s.3));
        let (gamma, lambda, clip) = (f32ed(gamma), f32ed(lambda), f32ed(clip));
        let (adv, ret) = gae(row::<Single>(&rewards), row(&values_now), gamma, lambda).unwrap();
        let (twin_adv, twin_ret) = twin::gae(&rewards, &values_now, gamma, lambda);
        for (a, b) in values(adv).iter().zip(&twin_adv).chain(values(ret.clone()).iter().zip(&twin_ret)) {
            prop_assert!(close(*a, *b, 1e-4, 1e-5), "{a} vs {b}");
        }
        let mask = vec![1.0; steps.len()];
        let ours = scalar(ppo_value_loss(row::<Single>(&values_now), row(&old_values), ret, row(&mask), clip).unwrap().loss);
        let twin = twin::mean((0..steps.len()).map(|t| twin::ppo_value_loss(values_now[t], old_values[t], twin_ret[t], clip)));
        prop_assert!(close(ours, twin, 1e-4, 1e-5), "{ours} vs {twin}");
        let partial: Vec<f64> = steps.iter().map(|s| (s.3 > -0.5) as u8 as f64).collect();
        for (shift_mean, mask) in [(true, &mask), (false, &partial)] {
            let white = values(masked_whiten(row::<Single>(&rewards), row(mask), shift_mean));
            let twin = twin::masked_whiten(&rewards, mask, shift_mean);
            for (a, b) in white.iter().zip(&twin) {
                prop_assert!(close(*a, *b, 1e-4, 1e-4), "whiten: {a} vs {b}");
            }
        }
    }

    #[test]
    fn ppo_policy_loss_and_reward_shaping_equal_their_twins(
        tokens in prop::collection::vec((-8.0f64..0.0, -8.0f64..0.0, -2.0f64..2.0, 0.0f64..3.0), 1..12),
        clip in 0.05f64..0.5, kl_coef in 0.0f64..0.5, score in -2.0f64..2.0, k3 in any::<bool>(),
        whiten in any::<bool>(),
    ) {
        let col = |f: fn(&(f64, f64, f64, f64)) -> f64| tokens.iter().map(|t| f32ed(f(t))).collect::<Vec<_>>();
        let (logps, old, advantages, entropy) = (col(|t| t.0), col(|t| t.1), col(|t| t.2), col(|t| t.3));
        let (clip, kl_coef, score) = (f32ed(clip), f32ed(kl_coef), f32ed(score));
        let n = tokens.len();
        let mask = vec![1.0; n];
        let output = ppo_policy_loss(
            row::<Single>(&logps), row(&old), row(&advantages), row(&entropy), row(&mask), clip,
        ).unwrap();
        let twins: Vec<_> = (0..n).map(|t| twin::ppo_policy_token(logps[t], old[t], advantages[t], clip)).collect();
        let metric = |name: &str| scalar(output.metrics.get(name).unwrap().clone());
        let expected = [
            ("loss/policy_avg", twin::mean(twins.iter().map(|t| t.loss))),
            ("policy/approxkl_avg", twin::mean(twins.iter().map(|t| t.approx_kl))),
            ("policy/clipfrac_avg", twin::mean(twins.iter().map(|t| t.clipped as u8 as f64))),
            ("policy/entropy_avg", twin::mean(entropy.iter().copied())),
            ("val/ratio", twin::mean(twins.iter().map(|t| t.ratio))),
        ];
        prop_assert!(close(scalar(output.loss), expected[0].1, 1e-4, 1e-5));
        for (name, twin) in expected {
            // A ratio on the clip boundary may round to either side in f32: a token's worth.
            let slack = if name == "policy/clipfrac_avg" { 1.0 / n as f64 } else { 0.0 };
            prop_assert!(close(metric(name), twin, 1e-4, 1e-5 + slack), "{name}: {} vs {twin}", metric(name));
        }

        let at_end: Vec<f64> = (0..n).map(|t| if t + 1 == n { score } else { 0.0 }).collect();
        let estimator = if k3 { KlEstimator::K3 } else { KlEstimator::K1 };
        let shaped = shape_rewards(row::<Single>(&logps), row(&old), row(&at_end), row(&mask), kl_coef, estimator, whiten).unwrap();
        let mut twin = twin::shaped_rewards(&logps, &old, score, kl_coef, k3);
        if whiten {
            twin = twin::masked_whiten(&twin, &mask, false);
        }
        for (a, b) in values(shaped.rewards).iter().zip(&twin) {
            prop_assert!(close(*a, *b, 1e-4, 1e-4), "rewards: {a} vs {b}");
        }
    }

    #[test]
    fn token_log_probs_equal_their_twin_and_chunking_changes_nothing(
        batch in 1usize..3, seq in 1usize..7, vocab in 2usize..17,
        seed in prop::collection::vec(-30.0f64..30.0, 3 * 7 * 17),
        labels_seed in prop::collection::vec(0usize..1000, 21),
        chunk in 1usize..8,
    ) {
        let logits: Vec<f64> = seed[..batch * seq * vocab].iter().map(|x| f32ed(*x)).collect();
        let labels: Vec<Vec<i64>> = (0..batch).map(|b| (0..seq).map(|t| (labels_seed[b * 7 + t] % vocab) as i64).collect()).collect();
        let mask: Vec<Vec<f64>> = (0..batch).map(|b| (0..seq).map(|t| ((labels_seed[b * 7 + t] / vocab) % 3 != 0) as u8 as f64).collect()).collect();
        let logits_t = t1::<Single>(&logits).reshape([batch, seq, vocab]);
        let plain = values(token_log_probs(logits_t.clone(), common::ints2(&labels), t2(&mask)).unwrap());
        let chunked = values(token_log_probs_chunked(logits_t, common::ints2(&labels), t2(&mask), chunk).unwrap());
        for b in 0..batch {
            for t in 0..seq {
                let row = &logits[(b * seq + t) * vocab..(b * seq + t + 1) * vocab];
                let twin = mask[b][t] * twin::token_log_prob(row, labels[b][t] as usize);
                let i = b * seq + t;
                prop_assert!(close(plain[i], twin, REL, 1e-5), "{} vs {twin}", plain[i]);
                // Same arithmetic on a slice; SIMD paths may round the last bit differently.
                prop_assert!(close(plain[i], chunked[i], REL, 1e-6), "{} vs {}", plain[i], chunked[i]);
            }
        }
    }

    #[test]
    fn token_statistics_and_their_metrics_equal_their_twins(
        seq in 1usize..6, vocab in 2usize..9,
        seed in prop::collection::vec(-10.0f64..10.0, 2 * 6 * 9),
        labels_seed in prop::collection::vec(0usize..1000, 12),
    ) {
        // Two rows: row 0 is "chosen", row 1 "rejected".
        let logits: Vec<f64> = seed[..2 * seq * vocab].iter().map(|x| f32ed(*x)).collect();
        let label = |b: usize, t: usize| (labels_seed[b * 6 + t] % vocab) as i64;
        let kept = |b: usize, t: usize| ((labels_seed[b * 6 + t] / vocab) % 4 != 0) as u8 as f64;
        let labels: Vec<Vec<i64>> = (0..2).map(|b| (0..seq).map(|t| label(b, t)).collect()).collect();
        let mask: Vec<Vec<f64>> = (0..2).map(|b| (0..seq).map(|t| kept(b, t)).collect()).collect();
        let stats = token_stats(t1::<Single>(&logits).reshape([2, seq, vocab]), common::ints2(&labels), t2(&mask), Some(2)).unwrap();
        let (entropy, top1, mean_logit) = (values(stats.entropy.clone()), values(stats.is_top1.clone()), values(stats.mean_logit.clone()));
        let (mut twin_top1, mut twin_entropy, mut twin_logits, mut tokens) = (0.0, 0.0, [0.0; 2], [0.0; 2]);
        for b in 0..2 {
            for t in 0..seq {
                let i = b * seq + t;
                let row = &logits[i * vocab..(i + 1) * vocab];
                let best = (0..vocab).fold(0, |best, v| if row[v] > row[best] { v } else { best });
                let is_top1 = mask[b][t] * (best as i64 == labels[b][t]) as u8 as f64;
                let mean = mask[b][t] * twin::mean(row.iter().copied());
                let h = mask[b][t] * twin::entropy(row);
                prop_assert!(close(entropy[i], h, 1e-4, 1e-5), "entropy {} vs {h}", entropy[i]);
                prop_assert!(close(mean_logit[i], mean, REL, ABS));
                // Ties in the arg-max may break either way; only distinct maxima are compared.
                let ties = row.iter().filter(|x| **x == row[best]).count();
                if ties == 1 {
                    prop_assert_eq!(top1[i], is_top1);
                }
                twin_top1 += top1[i];
                twin_entropy += h;
                twin_logits[b] += mean;
                tokens[b] += mask[b][t];
            }
        }
        let all_tokens = (tokens[0] + tokens[1]).max(1.0);
        let metric = |m: &temper_objectives::Metrics<Single>, name: &str| scalar(m.get(name).unwrap().clone());
        let token = token_metrics(&stats, &t2(&mask));
        prop_assert!(close(metric(&token, "mean_token_accuracy"), twin_top1 / all_tokens, REL, ABS));
        prop_assert!(close(metric(&token, "entropy"), twin_entropy / all_tokens, 1e-4, 1e-5));
        let side = |x: &Tensor<Single, 2>, b: usize| x.clone().slice([b..b + 1, 0..seq]);
        let logit = logit_metrics(side(&stats.mean_logit, 0), side(&t2(&mask), 0), side(&stats.mean_logit, 1), side(&t2(&mask), 1));
        prop_assert!(close(metric(&logit, "logits/chosen"), twin_logits[0] / tokens[0].max(1.0), REL, ABS));
        prop_assert!(close(metric(&logit, "logits/rejected"), twin_logits[1] / tokens[1].max(1.0), REL, ABS));
    }

    #[test]
    fn pair_batches_split_chosen_first(
        sums in prop::collection::vec(-50.0f64..0.0, 1..6),
    ) {
        let n = sums.len();
        let both: Vec<f64> = sums.iter().chain(sums.iter().map(|s| s - 1.0).collect::<Vec<_>>().iter()).map(|x| f32ed(*x)).collect();
        let tokens: Vec<f64> = (0..2 * n).map(|i| i as f64).collect();
        let pairs = SequenceLogProbs::<Single> { sum: t1(&both), tokens: t1(&tokens) }.split_pairs().unwrap();
        prop_assert_eq!(values(pairs.chosen.sum), both[..n].to_vec());
        prop_assert_eq!(values(pairs.rejected.sum), both[n..].to_vec());
        prop_assert_eq!(values(pairs.rejected.tokens), tokens[n..].to_vec());
        let odd = SequenceLogProbs::<Single> { sum: t1(&both[..2 * n - 1]), tokens: t1(&tokens[..2 * n - 1]) };
        prop_assert!(odd.split_pairs().is_err());
    }

    #[test]
    fn sft_loss_equals_its_twin_and_accumulates_like_one_batch(
        micro in prop::collection::vec(prop::collection::vec((-10.0f64..0.0, any::<bool>()), 4), 1..5),
    ) {
        let rows = |m: &Vec<(f64, bool)>| (
            vec![m.iter().map(|t| if t.1 { f32ed(t.0) } else { 0.0 }).collect::<Vec<_>>()],
            vec![m.iter().map(|t| t.1 as u8 as f64).collect::<Vec<_>>()],
        );
        let total: f64 = micro.iter().flatten().filter(|t| t.1).count() as f64;
        let accumulated: f64 = micro
            .iter()
            .map(|m| {
                let (lp, mask) = rows(m);
                scalar(sft_loss(t2::<Single>(&lp), t2(&mask), Some(total)).unwrap().loss)
            })
            .sum();
        let all: Vec<f64> = micro.iter().flatten().filter(|t| t.1).map(|t| f32ed(t.0)).collect();
        let twin = twin::sft_loss(&all, total);
        prop_assert!(close(accumulated, twin, REL, ABS), "{accumulated} vs {twin}");
    }
}

#[test]
fn sigmoid_loss_at_zero_margin_is_ln_2_with_gradient_minus_beta_over_2() {
    let beta = 0.1;
    let pair = Pair {
        logp_c: -12.0,
        logp_r: -15.0,
        ref_c: -12.0,
        ref_r: -15.0,
        n_c: 4.0,
        n_r: 5.0,
    };
    let config = DpoConfig::single(PreferenceLoss::Sigmoid, beta);
    let value = dpo_value::<Single>(&config, &[pair]);
    assert!(close(value, std::f64::consts::LN_2, 1e-7, 0.0), "{value}");
    let grads = chosen_gradient(&[pair], |policy, reference| {
        dpo_loss(&config, policy, reference).unwrap().loss
    });
    assert!(close(grads[0], -beta / 2.0, 1e-6, 0.0), "{grads:?}");
}

#[test]
fn empty_batches_and_bad_settings_are_errors_or_defined_values_never_nan() {
    let empty = t2::<Single>(&[vec![0.0; 3]]);
    let loss = sft_loss(empty.clone(), empty.clone(), None).unwrap().loss;
    assert_eq!(scalar(loss), 0.0);
    let kto = kto_loss(&KtoConfig::default(), t1::<Single>(&[]), t1(&[]), &[], None).unwrap();
    assert_eq!(scalar(kto.loss), 0.0);
    let (policy, reference) = pair_tensors::<Single>(&[Pair {
        logp_c: -1.0,
        logp_r: -2.0,
        ref_c: -1.0,
        ref_r: -2.0,
        n_c: 1.0,
        n_r: 1.0,
    }]);
    for bad in [
        DpoConfig::single(PreferenceLoss::Sigmoid, 0.0),
        DpoConfig {
            label_smoothing: 0.5,
            ..DpoConfig::single(PreferenceLoss::Robust, 0.1)
        },
        DpoConfig::single(PreferenceLoss::ExoPair, 0.1),
        DpoConfig {
            losses: vec![],
            ..DpoConfig::default()
        },
    ] {
        assert!(dpo_loss(&bad, &policy, &reference).is_err(), "{bad:?}");
    }
    assert!(group_advantages(t1::<Single>(&[1.0, 2.0, 3.0]), 2, RewardScaling::Group).is_err());
    let none = t1::<Single>(&[]);
    let empty_pairs =
        PairLogProbs::new(none.clone(), none.clone(), none.clone(), none.clone()).unwrap();
    assert!(dpo_loss(&DpoConfig::default(), &empty_pairs, &empty_pairs).is_err());
    assert!(simpo_loss(&SimpoConfig::default(), &empty_pairs).is_err());
    assert!(orpo_loss(0.1, &empty_pairs, OrpoNll::Completion).is_err());
    assert!(reward_model_loss(none.clone(), none.clone(), None, None).is_err());
    let no_rows = Tensor::<Single, 2>::zeros([0, 3], &Default::default());
    let inputs = GrpoInputs {
        logps: no_rows.clone(),
        old_logps: None,
        ref_logps: None,
        mask: no_rows,
        advantages: none.clone(),
    };
    assert!(grpo_loss(&GrpoConfig::default(), &inputs).is_err());
    let mismatched = PairLogProbs::<Single> {
        chosen: policy.chosen.clone(),
        rejected: SequenceLogProbs {
            sum: t1(&[1.0, 2.0]),
            tokens: t1(&[1.0, 1.0]),
        },
    };
    assert!(dpo_loss(&DpoConfig::default(), &mismatched, &reference).is_err());
    assert!("dpo_norm".parse::<PreferenceLoss>() == Ok(PreferenceLoss::SigmoidNorm));
    assert!("nope".parse::<PreferenceLoss>().is_err());
    let one = t2::<Single>(&[vec![-1.0, -2.0]]);
    let mask = t2::<Single>(&[vec![1.0, 0.0]]);
    assert!(close(
        scalar(aggregate(one, mask, Aggregation::Bnpo)),
        -1.0,
        1e-7,
        0.0
    ));
}

/// Runs `loss` on the autodiff backend and returns d loss / d (policy chosen log-prob), per pair.
fn chosen_gradient(
    pairs: &[Pair],
    mut loss: impl FnMut(&PairLogProbs<SingleGrad>, &PairLogProbs<SingleGrad>) -> Tensor<SingleGrad, 1>,
) -> Vec<f64> {
    let (mut policy, reference) = pair_tensors::<SingleGrad>(pairs);
    policy.chosen.sum = policy.chosen.sum.require_grad();
    let value = loss(&policy, &reference);
    let grads = value.backward();
    let grad = policy
        .chosen
        .sum
        .grad(&grads)
        .expect("chosen log-probs are tracked");
    values::<Single, 1>(grad)
}
