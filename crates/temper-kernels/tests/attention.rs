//! The fused burn-flex attention held to its plain-op twin, forward and backward, over random
//! shapes (grouped-query heads, KV-cache queries, decoding, padding that leaves some queries
//! with no visible key, sliding windows, strided inputs, K/V read in place from a longer
//! cache), and checked for the same bits run to run and whatever the thread count.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use proptest::prelude::*;
use temper_kernels::{AttentionMask, attention, plain};

mod common;
use common::Rng;

type Ad = Autodiff<Flex>;

/// One attention call's shapes and data.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    queries: usize,
    keys: usize,
    kv_heads: usize,
    n_rep: usize,
    dim: usize,
    window: Option<usize>,
    /// Leading padding of each batch row (a row may be all padding).
    leading: Vec<usize>,
    seed: u64,
    /// Whether `q` is a strided view (`[B, H, T, D]` data with dims 1 and 2 swapped).
    strided_q: bool,
}

impl Case {
    fn heads(&self) -> usize {
        self.kv_heads * self.n_rep
    }

    /// 1 for a token, 0 for padding: the leading padding, then a hole now and then.
    fn padding(&self) -> Vec<f32> {
        let mut rng = Rng(self.seed ^ 0x9e37_79b9);
        let mut padding = Vec::with_capacity(self.batch * self.keys);
        for &leading in &self.leading {
            for j in 0..self.keys {
                let hole = rng.next_f32() < -0.6;
                padding.push(if j < leading || hole { 0.0 } else { 1.0 });
            }
        }
        padding
    }
}

/// The inputs of a case on backend `B`: `(q, k, v, weight of the loss, mask)`, with `q`, `k`
/// and `v` leaves (made to require grad by `leaf`). `q` is stored `[B, H, T, D]` when the case
/// asks for a strided view: [`query`] turns it into the `[B, T, H, D]` view.
#[allow(clippy::type_complexity)]
fn inputs<B: Backend>(
    case: &Case,
    leaf: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> (
    Tensor<B, 4>,
    Tensor<B, 4>,
    Tensor<B, 4>,
    Tensor<B, 4>,
    AttentionMask<B>,
) {
    let device = Default::default();
    let mut rng = Rng(case.seed);
    let (b, tq, tk, hq, hk, d) = (
        case.batch,
        case.queries,
        case.keys,
        case.heads(),
        case.kv_heads,
        case.dim,
    );
    let tensor = |values: Vec<f32>, shape: [usize; 4]| {
        Tensor::<B, 4>::from_data(TensorData::new(values, shape), &device)
    };
    let q = if case.strided_q {
        leaf(tensor(rng.values(b * tq * hq * d, 2.0), [b, hq, tq, d]))
    } else {
        leaf(tensor(rng.values(b * tq * hq * d, 2.0), [b, tq, hq, d]))
    };
    let k = leaf(tensor(rng.values(b * tk * hk * d, 2.0), [b, tk, hk, d]));
    let v = leaf(tensor(rng.values(b * tk * hk * d, 1.0), [b, tk, hk, d]));
    let weight = tensor(rng.values(b * tq * hq * d, 1.0), [b, tq, hq, d]);
    let padding = Tensor::<B, 2>::from_data(TensorData::new(case.padding(), [b, tk]), &device);
    let mask = AttentionMask {
        padding,
        window: case.window,
    };
    (q, k, v, weight, mask)
}

/// `q` as attention takes it: the leaf itself, or a strided view of it.
fn query<B: Backend>(case: &Case, q: &Tensor<B, 4>) -> Tensor<B, 4> {
    if case.strided_q {
        q.clone().swap_dims(1, 2)
    } else {
        q.clone()
    }
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32 data")
}

/// `|fused − plain| ≤ 1e-5 · max(1, |plain|)` element by element.
fn assert_close(name: &str, fused: &[f32], plain: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(fused.len(), plain.len(), "{} lengths", name);
    for (i, (&a, &b)) in fused.iter().zip(plain).enumerate() {
        prop_assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{}[{}]: fused {} vs plain {}",
            name,
            i,
            a,
            b
        );
    }
    Ok(())
}

/// `t` `[B, T, H, D]` as the first `T` positions of a buffer with three more (filled with a
/// value attention must never read).
fn cache_prefix(t: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
    let [b, tk, hk, d] = t.dims();
    let beyond = Tensor::full([b, 3, hk, d], 1e30, &t.device());
    Tensor::cat(vec![t, beyond], 1).slice([0..b, 0..tk, 0..hk, 0..d])
}

/// Output and the gradients of `Σ attention(q, k, v)·w` wrt q, k and v, fused or plain.
fn run_autodiff(case: &Case, fused: bool) -> [Vec<f32>; 4] {
    let (q, k, v, weight, mask) = inputs::<Ad>(case, |t| t.require_grad());
    let out = if fused {
        attention(query(case, &q), k.clone(), v.clone(), &mask)
    } else {
        plain::attention(query(case, &q), k.clone(), v.clone(), &mask)
    };
    let grads = (out.clone() * weight).sum().backward();
    let grad = |t: &Tensor<Ad, 4>| to_vec(t.grad(&grads).expect("a gradient"));
    [to_vec(out), grad(&q), grad(&k), grad(&v)]
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    // Forward on Flex itself.
    let (q, k, v, _, mask) = inputs::<Flex>(case, |t| t);
    let q = query(case, &q);
    let fused = to_vec(attention(q.clone(), k.clone(), v.clone(), &mask));
    let reference = to_vec(plain::attention(q.clone(), k.clone(), v.clone(), &mask));
    assert_close("out", &fused, &reference)?;
    // K and V as the first Tk positions of longer buffers, as a decoding KV cache holds them:
    // read in place, the same bits.
    let (cached_k, cached_v) = (cache_prefix(k), cache_prefix(v));
    if case.batch > 1 {
        let layout = cached_k.clone().into_primitive().tensor();
        prop_assert!(!layout.layout().is_contiguous(), "a strided view");
    }
    prop_assert_eq!(to_vec(attention(q, cached_k, cached_v, &mask)), fused);
    // Forward and backward under Autodiff.
    let fused = run_autodiff(case, true);
    let reference = run_autodiff(case, false);
    for (name, (f, p)) in ["autodiff out", "dq", "dk", "dv"]
        .iter()
        .zip(fused.iter().zip(&reference))
    {
        assert_close(name, f, p)?;
    }
    Ok(())
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..=2, 1usize..=12, 0usize..3),
        (3usize..=17, 1usize..=2, 1usize..=3),
        prop::option::of(1usize..=6),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_flat_map(
            |((batch, keys, mode), (dim, kv_heads, n_rep), window, seed, strided_q)| {
                let queries = match mode {
                    0 => Just(keys).boxed(),
                    1 => Just(1).boxed(),
                    _ => (1..=keys).boxed(),
                };
                (queries, prop::collection::vec(0..=keys, batch)).prop_map(
                    move |(queries, leading)| Case {
                        batch,
                        queries,
                        keys,
                        kv_heads,
                        n_rep,
                        dim,
                        window,
                        leading,
                        seed,
                        strided_q,
                    },
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fused_attention_matches_plain(case in case()) {
        check_case(&case)?;
    }
}

/// Shapes past one query block (64 rows), a KV cache, decoding with grouped heads, and batch
/// rows whose first queries see no key.
fn larger_cases() -> Vec<Case> {
    let base = Case {
        batch: 2,
        queries: 150,
        keys: 150,
        kv_heads: 2,
        n_rep: 3,
        dim: 16,
        window: None,
        leading: vec![0, 7],
        seed: 7,
        strided_q: false,
    };
    vec![
        base.clone(),
        Case {
            window: Some(40),
            seed: 8,
            strided_q: true,
            ..base.clone()
        },
        Case {
            queries: 70,
            keys: 200,
            leading: vec![140, 3],
            seed: 9,
            ..base.clone()
        },
        Case {
            queries: 1,
            keys: 300,
            n_rep: 4,
            window: Some(100),
            leading: vec![5, 300],
            seed: 10,
            ..base
        },
    ]
}

#[test]
fn fused_attention_matches_plain_on_larger_shapes() {
    for case in larger_cases() {
        if let Err(error) = check_case(&case) {
            panic!("{case:?}: {error}");
        }
    }
}

#[test]
fn fused_attention_is_bitwise_deterministic_across_runs_and_thread_counts() {
    let in_pool = |threads: usize, case: &Case| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(|| run_autodiff(case, true))
    };
    let bits =
        |values: [Vec<f32>; 4]| values.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    for case in larger_cases() {
        let first = bits(run_autodiff(&case, true));
        assert_eq!(
            first,
            bits(run_autodiff(&case, true)),
            "{case:?}: run to run"
        );
        assert_eq!(first, bits(in_pool(1, &case)), "{case:?}: one thread");
        assert_eq!(first, bits(in_pool(2, &case)), "{case:?}: two threads");
    }
}
