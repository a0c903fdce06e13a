//! Backends and small helpers shared by the objective tests.
#![allow(dead_code)]

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use temper_objectives::preference::{DpoConfig, PreferenceLoss};
use temper_objectives::twin::{self, Pair};

/// Double precision on the CPU: the TRL fixtures were computed in float64.
pub type Exact = burn::backend::NdArray<f64>;

/// The backend the property tests run on: ndarray, or CUDA with `--features cuda`.
#[cfg(not(feature = "cuda"))]
pub type Single = burn::backend::NdArray<f32>;
#[cfg(feature = "cuda")]
pub type Single = burn::backend::Cuda<f32, i32>;

/// [`Single`] with gradients.
pub type SingleGrad = burn::backend::Autodiff<Single>;

pub fn t1<B: Backend>(values: &[f64]) -> Tensor<B, 1> {
    let data = TensorData::new(values.to_vec(), [values.len()]).convert::<B::FloatElem>();
    Tensor::from_data(data, &Default::default())
}

pub fn t2<B: Backend>(rows: &[Vec<f64>]) -> Tensor<B, 2> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let data = TensorData::new(flat, [rows.len(), cols]).convert::<B::FloatElem>();
    Tensor::from_data(data, &Default::default())
}

/// A one-row matrix `[1, len]`.
pub fn row<B: Backend>(values: &[f64]) -> Tensor<B, 2> {
    t1::<B>(values).reshape([1, values.len()])
}

pub fn ints2<B: Backend>(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    let data = TensorData::new(flat, [rows.len(), cols]).convert::<B::IntElem>();
    Tensor::from_data(data, &Default::default())
}

pub fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("float data")
}

pub fn scalar<B: Backend>(tensor: Tensor<B, 1>) -> f64 {
    let v = values(tensor);
    assert_eq!(v.len(), 1, "expected a scalar");
    v[0]
}

/// `|a − b| ≤ rel · max(|a|, |b|) + abs`.
pub fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

#[track_caller]
pub fn assert_close(what: &str, ours: f64, theirs: f64, rel: f64) {
    assert!(
        close(ours, theirs, rel, 1e-12),
        "{what}: ours {ours} vs anchor {theirs} (relative tolerance {rel})"
    );
}

/// A DPO configuration's loss through the f64 twins: `Σ wᵢ · mean(lossᵢ)`.
pub fn reference_dpo_loss(config: &DpoConfig, pairs: &[Pair]) -> f64 {
    let (beta, eps) = (config.beta, config.label_smoothing);
    let each = |f: &dyn Fn(&Pair) -> f64| twin::mean(pairs.iter().map(f));
    config
        .losses
        .iter()
        .map(|(loss, weight)| {
            weight
                * match loss {
                    PreferenceLoss::Sigmoid => each(&|p| twin::sigmoid_loss(beta, p)),
                    PreferenceLoss::Hinge => each(&|p| twin::hinge_loss(beta, p)),
                    PreferenceLoss::Ipo => each(&|p| twin::ipo_loss(beta, p)),
                    PreferenceLoss::Robust => each(&|p| twin::robust_loss(beta, eps, p)),
                    PreferenceLoss::BcoPair => each(&|p| twin::bco_pair_loss(beta, p)),
                    PreferenceLoss::SppoHard => each(&|p| twin::sppo_hard_loss(beta, p)),
                    PreferenceLoss::NcaPair => each(&|p| twin::nca_pair_loss(beta, p)),
                    PreferenceLoss::ApoZero => each(&|p| twin::apo_zero_loss(beta, p)),
                    PreferenceLoss::ApoDown => each(&|p| twin::apo_down_loss(beta, p)),
                    PreferenceLoss::ExoPair => each(&|p| twin::exo_pair_loss(beta, eps, p)),
                    PreferenceLoss::Discopop => {
                        each(&|p| twin::discopop_loss(beta, config.discopop_tau, p))
                    }
                    PreferenceLoss::Aot => twin::mean(twin::aot_losses(beta, eps, pairs)),
                    PreferenceLoss::AotPair => twin::mean(twin::aot_pair_losses(beta, eps, pairs)),
                    PreferenceLoss::SigmoidNorm => each(&|p| twin::sigmoid_norm_loss(beta, p)),
                    PreferenceLoss::Sft => twin::chosen_nll(pairs),
                }
        })
        .sum()
}

/// Pairs as tensors on backend `B`.
pub fn pair_tensors<B: Backend>(
    pairs: &[Pair],
) -> (
    temper_objectives::PairLogProbs<B>,
    temper_objectives::PairLogProbs<B>,
) {
    let col = |f: fn(&Pair) -> f64| t1::<B>(&pairs.iter().map(f).collect::<Vec<_>>());
    let policy = temper_objectives::PairLogProbs::new(
        col(|p| p.logp_c),
        col(|p| p.n_c),
        col(|p| p.logp_r),
        col(|p| p.n_r),
    )
    .expect("same shapes");
    let reference = temper_objectives::PairLogProbs::new(
        col(|p| p.ref_c),
        col(|p| p.n_c),
        col(|p| p.ref_r),
        col(|p| p.n_r),
    )
    .expect("same shapes");
    (policy, reference)
}
