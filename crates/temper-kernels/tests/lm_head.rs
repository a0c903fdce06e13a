//! The fused LM head (burn-flex) against its plain twin, forward and backward, for both weight
//! layouts (an embedding `[V, H]`, an untied head's `[H, V]` seen through its transpose), over
//! one chunk and several; and its bits under one thread and two.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use proptest::prelude::*;
use temper_kernels::{HeadLogProbs, lm_head_log_probs, plain};

type Ad = Autodiff<Flex>;

/// A small deterministic generator (SplitMix64) for the test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn values(&mut self, len: usize, amplitude: f32) -> Vec<f32> {
        (0..len).map(|_| self.unit() * amplitude).collect()
    }

    /// Labels in `[0, V)`, with `−100` and `V` (outside the vocabulary) now and then.
    fn labels(&mut self, n: usize, vocab: usize) -> Vec<i64> {
        (0..n)
            .map(|_| match self.next() % 8 {
                0 => -100,
                1 => vocab as i64,
                _ => (self.next() % vocab as u64) as i64,
            })
            .collect()
    }
}

/// One test problem.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    h: usize,
    v: usize,
    scale: f64,
    /// The weight is stored `[H, V]` and passed transposed.
    transposed: bool,
    hidden: Vec<f32>,
    /// `[V, H]`, or `[H, V]` when `transposed`.
    weight: Vec<f32>,
    labels: Vec<i64>,
    /// Weights of the log-probabilities in the loss.
    loss_weights: Vec<f32>,
}

impl Case {
    fn new(n: usize, h: usize, v: usize, scale: f64, transposed: bool, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut case = Case {
            n,
            h,
            v,
            scale,
            transposed,
            hidden: rng.values(n * h, 2.0),
            weight: rng.values(v * h, 1.0),
            labels: rng.labels(n, v),
            loss_weights: rng.values(n, 1.0),
        };
        // A random label is rarely the arg-max: make it so at every third position, so that
        // `is_top1` is 1 there (up to near ties).
        for i in (0..n).step_by(3) {
            case.labels[i] = case.argmax(i) as i64;
        }
        case
    }

    /// The head weight's element `(token, j)`, whatever the layout.
    fn weight_at(&self, token: usize, j: usize) -> f32 {
        if self.transposed {
            self.weight[j * self.v + token]
        } else {
            self.weight[token * self.h + j]
        }
    }

    /// The arg-max of position `i`'s logits (in f64).
    fn argmax(&self, i: usize) -> usize {
        let logit = |token: usize| -> f64 {
            (0..self.h)
                .map(|j| {
                    f64::from(self.hidden[i * self.h + j]) * f64::from(self.weight_at(token, j))
                })
                .sum()
        };
        (0..self.v)
            .map(logit)
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (token, z)| {
                if z > best.1 { (token, z) } else { best }
            })
            .0
    }

    /// `(hidden [N, H], weight leaf, weight as [V, H], labels)` on backend `B`.
    #[allow(clippy::type_complexity)]
    fn tensors<B: burn::tensor::backend::Backend>(
        &self,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1, Int>) {
        let device = Default::default();
        let hidden = Tensor::from_data(
            TensorData::new(self.hidden.clone(), [self.n, self.h]),
            &device,
        );
        let shape = if self.transposed {
            [self.h, self.v]
        } else {
            [self.v, self.h]
        };
        let weight = Tensor::from_data(TensorData::new(self.weight.clone(), shape), &device);
        let labels = Tensor::from_data(TensorData::new(self.labels.clone(), [self.n]), &device);
        (hidden, weight, labels)
    }

    /// The weight leaf as the head sees it, `[V, H]`.
    fn as_head<B: burn::tensor::backend::Backend>(&self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        if self.transposed {
            weight.transpose()
        } else {
            weight
        }
    }
}

fn floats<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

/// `|a − b| ≤ 1e-5 · max(1, |b|)` elementwise.
fn assert_close(what: &str, fused: &[f32], plain: &[f32]) {
    assert_eq!(fused.len(), plain.len(), "{what}: lengths");
    for (i, (&a, &b)) in fused.iter().zip(plain).enumerate() {
        let tolerance = 1e-5 * b.abs().max(1.0);
        assert!(
            (a - b).abs() <= tolerance,
            "{what}[{i}]: fused {a} vs plain {b} (difference {})",
            (a - b).abs()
        );
    }
}

/// Forward on Flex: log-probs and statistics of the fused kernel equal the plain twin's.
fn check_forward(case: &Case, stats: bool) {
    let (hidden, weight, labels) = case.tensors::<Flex>();
    let weight = case.as_head(weight);
    let fused = lm_head_log_probs(
        hidden.clone(),
        weight.clone(),
        labels.clone(),
        case.scale,
        stats,
    );
    let plain = plain::lm_head_log_probs(hidden.clone(), weight.clone(), labels, case.scale, stats);
    let fused_lp = floats(fused.log_probs);
    assert_close("log_probs", &fused_lp, &floats(plain.log_probs));
    for (lp, &label) in fused_lp.iter().zip(&case.labels) {
        if !(0..case.v as i64).contains(&label) {
            assert_eq!(*lp, 0.0, "a label outside the vocabulary gives 0");
        }
    }
    match (fused.stats, plain.stats) {
        (None, None) => assert!(!stats),
        (Some(f), Some(p)) => {
            assert!(stats);
            assert_close("entropy", &floats(f.entropy), &floats(p.entropy));
            assert_close("mean_logit", &floats(f.mean_logit), &floats(p.mean_logit));
            // Top-1 may differ only on a near tie (the two products round differently).
            let logits = floats(hidden.matmul(weight.transpose()).mul_scalar(case.scale));
            let (fused_top1, plain_top1) = (floats(f.is_top1), floats(p.is_top1));
            assert!(plain_top1.contains(&1.0), "the case has top-1 labels");
            for i in 0..case.n {
                if fused_top1[i] == plain_top1[i] {
                    continue;
                }
                // A near tie: the label's logit and another one both within rounding of the max.
                let row = &logits[i * case.v..(i + 1) * case.v];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let tolerance = 1e-5 * max.abs().max(1.0);
                let label = case.labels[i];
                let target = if (0..case.v as i64).contains(&label) {
                    label as usize
                } else {
                    0
                };
                let near_top = row.iter().filter(|&&z| max - z <= tolerance).count();
                assert!(
                    max - row[target] <= tolerance && near_top >= 2,
                    "is_top1[{i}]: fused {} vs plain {} without a near tie",
                    fused_top1[i],
                    plain_top1[i]
                );
            }
        }
        _ => panic!("stats asked for: {stats}, but only one path returned them"),
    }
}

/// `(log_probs, d hidden, d weight leaf)` of `Σ w·log_probs` under `Autodiff<Flex>`.
fn gradients(case: &Case, fused: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (hidden, weight, labels) = case.tensors::<Ad>();
    let (hidden, weight) = (hidden.require_grad(), weight.require_grad());
    let head = case.as_head(weight.clone());
    let HeadLogProbs { log_probs, .. } = if fused {
        lm_head_log_probs(hidden.clone(), head, labels, case.scale, false)
    } else {
        plain::lm_head_log_probs(hidden.clone(), head, labels, case.scale, false)
    };
    let w = Tensor::<Ad, 1>::from_data(
        TensorData::new(case.loss_weights.clone(), [case.n]),
        &Default::default(),
    );
    let grads = (log_probs.clone() * w).sum().backward();
    let dhidden = hidden.grad(&grads).expect("hidden has a gradient");
    let dweight = weight.grad(&grads).expect("weight has a gradient");
    assert_eq!(dweight.dims(), weight.dims());
    (floats(log_probs.inner()), floats(dhidden), floats(dweight))
}

fn check_backward(case: &Case) {
    let (fused_lp, fused_dh, fused_dw) = gradients(case, true);
    let (plain_lp, plain_dh, plain_dw) = gradients(case, false);
    assert_close("log_probs (autodiff)", &fused_lp, &plain_lp);
    assert_close("dhidden", &fused_dh, &plain_dh);
    assert_close("dweight", &fused_dw, &plain_dw);
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        1usize..40,
        1usize..24,
        2usize..300,
        prop_oneof![Just(1.0), Just(1.0 / 0.7)],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, h, v, scale, transposed, seed)| Case::new(n, h, v, scale, transposed, seed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn fused_head_equals_plain_twin(case in case_strategy(), stats in any::<bool>()) {
        check_forward(&case, stats);
        check_backward(&case);
    }
}

#[test]
fn both_weight_layouts_at_fixed_sizes() {
    for transposed in [false, true] {
        for scale in [1.0, 1.0 / 0.7] {
            let case = Case::new(37, 19, 293, scale, transposed, 7);
            check_forward(&case, true);
            check_backward(&case);
        }
    }
}

/// On a tie the first arg-max counts: with the top token's weight row copied into the other
/// vocabulary tile (64 positions take two tiles of 65 536 entries), the later of the two is not
/// the top-1 and the first is.
#[test]
fn ties_take_the_first_arg_max() {
    let (n, h, v) = (64, 8, 100_000);
    for transposed in [false, true] {
        let mut case = Case::new(n, h, v, 1.0, transposed, 17);
        let (row, _) = case.hidden.split_at_mut(2 * h);
        let (first, second) = row.split_at_mut(h);
        second.copy_from_slice(first);
        // The top token and a copy of its weight row, one in each vocabulary tile.
        let top = case.argmax(0);
        let (first, later, copy) = if top < 65_536 {
            (top, v - 1, v - 1)
        } else {
            (0, top, 0)
        };
        for j in 0..h {
            let value = case.weight_at(top, j);
            let index = if transposed {
                j * v + copy
            } else {
                copy * h + j
            };
            case.weight[index] = value;
        }
        case.labels[0] = later as i64;
        case.labels[1] = first as i64;
        let (hidden, weight, labels) = case.tensors::<Flex>();
        let weight = case.as_head(weight);
        let fused = lm_head_log_probs(hidden.clone(), weight.clone(), labels.clone(), 1.0, true);
        let plain = plain::lm_head_log_probs(hidden, weight, labels, 1.0, true);
        let fused_top1 = floats(fused.stats.unwrap().is_top1);
        let plain_top1 = floats(plain.stats.unwrap().is_top1);
        assert_eq!(plain_top1[..2], [0.0, 1.0], "the plain twin");
        assert_eq!(fused_top1[..2], [0.0, 1.0], "the fused kernel");
        check_backward(&case);
    }
}

/// At Qwen's vocabulary 200 positions take eight vocabulary tiles (of 20 971 entries).
#[test]
fn several_vocabulary_tiles_equal_plain_twin() {
    for transposed in [false, true] {
        let case = Case::new(200, 8, 151_936, 1.0 / 0.7, transposed, 11);
        check_forward(&case, true);
        check_backward(&case);
    }
}

/// 1030 positions take two blocks of positions (1024 and 6), each over five vocabulary tiles
/// (of 4096 entries); with every label inside the vocabulary and every gradient non-zero, no
/// position is skipped in the backward; with some zero gradients, those are.
#[test]
fn several_position_blocks_equal_plain_twin() {
    let mut case = Case::new(1030, 4, 20_000, 1.0 / 0.7, true, 13);
    for i in (0..case.n).filter(|i| i % 3 != 0) {
        case.labels[i] = (i * 7919 % 20_000) as i64;
    }
    for w in &mut case.loss_weights {
        if *w == 0.0 {
            *w = 0.5;
        }
    }
    check_forward(&case, true);
    check_backward(&case);
    for w in case.loss_weights.iter_mut().step_by(3) {
        *w = 0.0;
    }
    check_backward(&case);
}

/// Every output bit under one thread equals its counterpart under two.
#[test]
fn bits_do_not_depend_on_thread_count() {
    let run = |threads: usize, case: &Case| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (hidden, weight, labels) = case.tensors::<Flex>();
            let out = lm_head_log_probs(hidden, case.as_head(weight), labels, case.scale, true);
            let stats = out.stats.expect("stats asked for");
            let (lp, dh, dw) = gradients(case, true);
            [
                floats(out.log_probs),
                floats(stats.entropy),
                floats(stats.is_top1),
                floats(stats.mean_logit),
                lp,
                dh,
                dw,
            ]
            .map(|values| values.into_iter().map(f32::to_bits).collect::<Vec<_>>())
        })
    };
    for (transposed, n, v) in [
        (false, 120, 151_936),
        (true, 64, 151_936),
        (false, 1030, 20_000),
    ] {
        let case = Case::new(n, 32, v, 1.0 / 0.7, transposed, 23);
        let one = run(1, &case);
        let two = run(2, &case);
        for (i, (a, b)) in one.iter().zip(&two).enumerate() {
            assert!(
                a == b,
                "output {i} differs between one and two threads (transposed: {transposed})"
            );
        }
    }
}
