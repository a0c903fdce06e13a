//! The fused burn-flex AdamW update held to its plain-op twin: the same bits for every element
//! over random lengths (odd ones included), steps, learning rates and weight decays, whether
//! its buffers are updated in place (held once: checked by address) or copied (held elsewhere
//! too).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use proptest::prelude::*;
use temper_kernels::{AdamWState, AdamWStep, KernelBackend, adamw_update, plain};

mod common;
use common::Rng;

/// Reproducible values in (−scale, scale) from `seed` alone.
fn random(len: usize, seed: u64, scale: f32) -> Tensor<Flex, 1> {
    let values = Rng::seeded(seed).values(len, scale);
    Tensor::from_data(TensorData::new(values, [len]), &Default::default())
}

fn bits(t: Tensor<Flex, 1>) -> Vec<u32> {
    let values = t.into_data().to_vec::<f32>().expect("f32 data");
    values.iter().map(|v| v.to_bits()).collect()
}

/// Where the tensor's elements live (the handle taken for this is dropped at once).
fn address(t: &Tensor<Flex, 1>) -> usize {
    t.clone().into_primitive().tensor().bytes().as_ptr() as usize
}

/// The fused kernel itself (not [`adamw_update`], which would fall back to the plain twin
/// unnoticed if the kernel declined).
fn fused(state: AdamWState<Flex>, gradient: Tensor<Flex, 1>, step: &AdamWStep) -> AdamWState<Flex> {
    let kernels = Flex::fused_kernels().expect("burn-flex has fused kernels");
    let raw = |t: Tensor<Flex, 1>| t.into_primitive().tensor();
    let tensor = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    let (parameter, exp_avg, exp_avg_sq) = (kernels.adamw)(
        raw(state.parameter),
        raw(gradient),
        raw(state.exp_avg),
        raw(state.exp_avg_sq),
        step,
    )
    .expect("the kernel takes f32 tensors of one length");
    AdamWState {
        parameter: tensor(parameter),
        exp_avg: tensor(exp_avg),
        exp_avg_sq: tensor(exp_avg_sq),
    }
}

/// A state whose moments look like a few steps in: `exp_avg` of either sign, `exp_avg_sq`
/// non-negative (zero included, as at the first step).
fn state(len: usize, seed: u64) -> AdamWState<Flex> {
    AdamWState {
        parameter: random(len, seed, 2.0),
        exp_avg: random(len, seed + 1, 0.1),
        exp_avg_sq: random(len, seed + 2, 0.01).abs(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn fused_adamw_equals_its_plain_twin_bit_for_bit(
        len in 1usize..40_000,
        seed in 0u64..1_000,
        step in 1u64..2_000,
        lr in 1e-7f64..1e-2,
        weight_decay in prop_oneof![Just(0.0f64), 0.0f64..0.1],
        shared in any::<bool>(),
    ) {
        let settings = AdamWStep {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            step,
        };
        let gradient = random(len, seed + 3, 1.0);
        let expected = plain::adamw_update(state(len, seed), gradient.clone(), &settings);
        let input = state(len, seed);
        // Held elsewhere too, the buffers must be copied, not written through.
        let kept = shared.then(|| input.clone());
        let before = address(&input.parameter);
        let ours = fused(input, gradient.clone(), &settings);
        prop_assert_eq!(address(&ours.parameter) == before, !shared, "in place exactly when held once");
        prop_assert_eq!(bits(ours.parameter), bits(expected.parameter.clone()));
        prop_assert_eq!(bits(ours.exp_avg), bits(expected.exp_avg));
        prop_assert_eq!(bits(ours.exp_avg_sq), bits(expected.exp_avg_sq));
        // The public entry point takes the fused kernel on burn-flex.
        let public = adamw_update(state(len, seed), gradient, &settings);
        prop_assert_eq!(bits(public.parameter), bits(expected.parameter));
        if let Some(kept) = kept {
            let original = state(len, seed);
            prop_assert_eq!(bits(kept.parameter), bits(original.parameter));
            prop_assert_eq!(bits(kept.exp_avg), bits(original.exp_avg));
            prop_assert_eq!(bits(kept.exp_avg_sq), bits(original.exp_avg_sq));
        }
    }
}
