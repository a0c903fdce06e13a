//! The fused burn-flex RMSNorm, SwiGLU and RoPE held to their plain-op twins, forward and
//! backward, over random shapes (odd widths, single rows, strided inputs), and checked for the
//! same bits whatever the thread count.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use proptest::prelude::*;
use temper_kernels::{plain, rms_norm, rope, swiglu};

mod common;
use common::Rng;

type Ad = Autodiff<Flex>;

/// Reproducible values in (−2, 2) from `seed` alone.
fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<Ad, D> {
    let values = Rng::seeded(seed).values(shape.iter().product(), 2.0);
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<const D: usize>(t: Tensor<Ad, D>) -> Vec<f32> {
    t.inner().into_data().to_vec::<f32>().expect("f32 data")
}

/// `|a − b| ≤ 1e-5 · max(1, |b|)` elementwise.
fn assert_close(what: &str, ours: &[f32], plain: &[f32]) {
    assert_eq!(ours.len(), plain.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(plain).enumerate() {
        let tolerance = 1e-5 * b.abs().max(1.0);
        assert!(
            (a - b).abs() <= tolerance,
            "{what}[{i}]: fused {a} vs plain {b}"
        );
    }
}

/// Runs `op` fused and plain on fresh leaves, backpropagates `Σ out ⊙ w`, and compares the
/// outputs and the gradients of every input.
fn check<const D: usize, const N: usize>(
    inputs: [Tensor<Ad, D>; N],
    weights: Tensor<Ad, D>,
    fused: impl Fn(&[Tensor<Ad, D>; N]) -> Tensor<Ad, D>,
    plain: impl Fn(&[Tensor<Ad, D>; N]) -> Tensor<Ad, D>,
) {
    let run = |op: &dyn Fn(&[Tensor<Ad, D>; N]) -> Tensor<Ad, D>| {
        let leaves = inputs.clone().map(|t| t.detach().require_grad());
        let out = op(&leaves);
        let grads = (out.clone() * weights.clone()).sum().backward();
        let input_grads: Vec<Vec<f32>> = leaves
            .iter()
            .map(|leaf| {
                leaf.grad(&grads)
                    .expect("every input gets a gradient")
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            })
            .collect();
        (values(out), input_grads)
    };
    let (fused_out, fused_grads) = run(&fused);
    let (plain_out, plain_grads) = run(&plain);
    assert_close("output", &fused_out, &plain_out);
    for (i, (a, b)) in fused_grads.iter().zip(&plain_grads).enumerate() {
        assert_close(&format!("gradient of input {i}"), a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn rms_norm_matches_plain(rows in 1usize..9, width in 1usize..70, seed in 0u64..1000) {
        let x = random([rows, 2, width], seed);
        let w = random([1, 1, width], seed + 1);
        let weights = random([rows, 2, width], seed + 2);
        let norm = |f: fn(Tensor<Ad, 3>, Tensor<Ad, 1>, f64) -> Tensor<Ad, 3>| {
            move |t: &[Tensor<Ad, 3>; 2]| f(t[0].clone(), t[1].clone().reshape([width]), 1e-6)
        };
        check([x, w], weights, norm(rms_norm), norm(plain::rms_norm));
    }

    #[test]
    fn swiglu_matches_plain(rows in 1usize..9, width in 1usize..70, seed in 0u64..1000) {
        let gate = random([rows, width], seed).mul_scalar(4.0);
        let up = random([rows, width], seed + 1);
        let weights = random([rows, width], seed + 2);
        check(
            [gate, up],
            weights,
            |t| swiglu(t[0].clone(), t[1].clone()),
            |t| plain::swiglu(t[0].clone(), t[1].clone()),
        );
    }

    #[test]
    fn rope_matches_plain(
        batch in 1usize..3,
        seq in 1usize..7,
        heads in 1usize..4,
        half in 1usize..9,
        transposed in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dim = 2 * half;
        // A strided view as the model would pass one (heads and positions swapped).
        let x = if transposed {
            random([batch, heads, seq, dim], seed).swap_dims(1, 2)
        } else {
            random([batch, seq, heads, dim], seed)
        };
        let angles = random([batch, seq, half], seed + 1);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2);
        let (cos, sin) = (angles.clone().cos().detach(), angles.sin().detach());
        let weights = random([batch, seq, heads, dim], seed + 2);
        let (c, s) = (cos.clone(), sin.clone());
        check(
            [x],
            weights,
            move |t| rope(t[0].clone(), cos.clone(), sin.clone()),
            move |t| plain::rope(t[0].clone(), c.clone(), s.clone()),
        );
    }
}

/// The same bits with one thread as with two, for every kernel of this file.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let run = || {
        let x = random([64, 300], 7).require_grad();
        let w = random([300], 8).require_grad();
        let gate = random([64, 300], 9).require_grad();
        let y = swiglu(rms_norm(x.clone(), w.clone(), 1e-6), gate.clone());
        let grads = y.clone().sum().backward();
        let mut bits = values(y);
        for leaf in [x, gate] {
            bits.extend(
                leaf.grad(&grads)
                    .unwrap()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
        bits.extend(w.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap());
        bits.into_iter().map(f32::to_bits).collect::<Vec<u32>>()
    };
    let pool = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run);
    let two = pool(2).install(run);
    assert_eq!(one, two);
    assert_eq!(run(), two);
}
