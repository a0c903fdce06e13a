//! Numerically stable element-wise functions the losses are built from.
//!
//! Burn's own `log_sigmoid` computes `log(1 + e^{-x})` without `log1p`, which rounds to 0 for
//! `x > 17` in f32 (a relative error of 100% on a loss of 1e-8), and it has no `expm1` for
//! `log1mexp`. These are written from both-branch-safe pieces: each branch only ever sees inputs
//! on its own side, so no masked-out branch can overflow and poison a gradient with NaN.

use burn::tensor::{Tensor, backend::Backend};

/// `log σ(x)`: `−log1p(e^{−x})` for `x ≥ 0`, `x − log1p(eˣ)` for `x < 0`.
/// Exact gradient `σ(−x)` everywhere, including `σ(0) = ½` at zero.
pub fn log_sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let negative = x.clone().lower_elem(0.0);
    let x_pos = x.clone().mask_fill(negative.clone(), 0.0);
    let x_neg = x.mask_fill(negative.clone().bool_not(), 0.0);
    let pos_branch = x_pos.neg().exp().log1p().neg();
    let neg_branch = x_neg.clone() - x_neg.exp().log1p();
    pos_branch.mask_where(negative, neg_branch)
}

/// `σ(x) = exp(log σ(x))`, accurate in both tails.
pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    log_sigmoid(x).exp()
}

/// `log(1 − eˣ)` for `x < 0` (Mächler 2012): `log1p(−eˣ)` below `−ln 2`, `log(−expm1(x))` above,
/// with `expm1(x) = 2t / (1 − t)`, `t = tanh(x/2)`, accurate near 0 where `1 − eˣ` cancels.
/// Callers keep `x < 0`; at `x = 0` the value is `−∞`.
pub fn log1mexp<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let far = x.clone().lower_elem(-std::f64::consts::LN_2);
    let x_far = x.clone().mask_fill(far.clone().bool_not(), -1.0);
    let x_near = x.mask_fill(far.clone(), -0.5);
    let far_branch = x_far.exp().neg().log1p();
    let t = x_near.div_scalar(2.0).tanh();
    let minus_expm1 = t.clone().mul_scalar(-2.0) / t.neg().add_scalar(1.0);
    minus_expm1.log().mask_where(far, far_branch)
}
