//! The DPO family: losses on policy and reference log-probs of chosen/rejected pairs, with TRL's
//! `loss_type` names, formulas and metrics. Each formula is one function over `[B]` tensors;
//! [`dpo_loss`] combines several with weights (TRL's `loss_weights`; RPO is `sigmoid` + `sft`).
//! The f64 twins are in [`crate::reference`]; `docs/objectives.md` cites each paper.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{ObjectiveError, check_setting};
use crate::logprobs::{PairLogProbs, SequenceLogProbs};
use crate::metrics::{LossOutput, Metrics};
use crate::stable::{log_sigmoid, sigmoid};

/// A preference loss, by TRL's `loss_type` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreferenceLoss {
    /// DPO: `−log σ(βh)`.
    Sigmoid,
    /// SLiC: `max(0, 1 − βh)`.
    Hinge,
    /// IPO on per-token averaged log-ratios: `(h̄ − 1/(2β))²`.
    Ipo,
    /// Robust DPO with flip rate `label_smoothing`.
    Robust,
    /// BCO on pairs.
    BcoPair,
    /// SPPO with hard labels.
    SppoHard,
    /// NCA on pairs.
    NcaPair,
    /// APO when chosen beats the model's own outputs.
    ApoZero,
    /// APO when chosen is worse than the model's own outputs.
    ApoDown,
    /// EXO on pairs (needs `label_smoothing > 0`).
    ExoPair,
    /// DiscoPOP's log-ratio modulated loss.
    Discopop,
    /// AOT, paired: sorted policy log-ratios against sorted reference log-ratios.
    Aot,
    /// AOT, unpaired: sorted chosen against sorted rejected log-ratios (TRL 1.x `aot_unpaired`).
    AotPair,
    /// Length-normalised DPO (Tülu 3's `dpo_norm`).
    SigmoidNorm,
    /// NLL of the chosen completions, token mean over the batch (RPO's and MPO's SFT term).
    Sft,
}

impl PreferenceLoss {
    /// Every loss, in TRL's documentation order.
    pub const ALL: [PreferenceLoss; 15] = [
        Self::Sigmoid,
        Self::Hinge,
        Self::Ipo,
        Self::Robust,
        Self::BcoPair,
        Self::SppoHard,
        Self::NcaPair,
        Self::ApoZero,
        Self::ApoDown,
        Self::ExoPair,
        Self::Discopop,
        Self::Aot,
        Self::AotPair,
        Self::SigmoidNorm,
        Self::Sft,
    ];

    /// The name: TRL's, except `aot_pair`, which TRL 1.x calls `aot_unpaired` (both parse).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sigmoid => "sigmoid",
            Self::Hinge => "hinge",
            Self::Ipo => "ipo",
            Self::Robust => "robust",
            Self::BcoPair => "bco_pair",
            Self::SppoHard => "sppo_hard",
            Self::NcaPair => "nca_pair",
            Self::ApoZero => "apo_zero",
            Self::ApoDown => "apo_down",
            Self::ExoPair => "exo_pair",
            Self::Discopop => "discopop",
            Self::Aot => "aot",
            Self::AotPair => "aot_pair",
            Self::SigmoidNorm => "sigmoid_norm",
            Self::Sft => "sft",
        }
    }
}

impl PreferenceLoss {
    /// Other names users bring from elsewhere: `dpo` (sigmoid), `dpo_norm` (open-instruct's
    /// length-normalised DPO), `aot_unpaired` (TRL 1.x's name for `aot_pair`).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Sigmoid => &["dpo"],
            Self::SigmoidNorm => &["dpo_norm"],
            Self::AotPair => &["aot_unpaired"],
            _ => &[],
        }
    }
}

impl fmt::Display for PreferenceLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PreferenceLoss {
    type Err = ObjectiveError;

    /// TRL's names, plus the [aliases](PreferenceLoss::aliases).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == name || l.aliases().contains(&name))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|l| l.name()).collect();
                ObjectiveError::UnknownLoss(name.to_string(), names.join(", "))
            })
    }
}

/// Settings of [`dpo_loss`]; the defaults are TRL's `DPOConfig` defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DpoConfig {
    /// The KL strength β (IPO's τ).
    pub beta: f64,
    /// Flip rate ε of `robust`, `aot`, `aot_pair`; the target `[1−ε, ε]` of `exo_pair`.
    pub label_smoothing: f64,
    /// DiscoPOP's temperature τ.
    pub discopop_tau: f64,
    /// The losses and their weights; the total is `Σ wᵢ · mean(lossᵢ)`.
    pub losses: Vec<(PreferenceLoss, f64)>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            label_smoothing: 0.0,
            discopop_tau: 0.05,
            losses: vec![(PreferenceLoss::Sigmoid, 1.0)],
        }
    }
}

impl DpoConfig {
    /// One loss with weight 1.
    pub fn single(loss: PreferenceLoss, beta: f64) -> Self {
        Self {
            beta,
            losses: vec![(loss, 1.0)],
            ..Self::default()
        }
    }

    /// RPO (Pang et al. 2024): DPO plus `alpha` times the chosen NLL.
    pub fn rpo(beta: f64, alpha: f64) -> Self {
        Self {
            beta,
            losses: vec![(PreferenceLoss::Sigmoid, 1.0), (PreferenceLoss::Sft, alpha)],
            ..Self::default()
        }
    }

    /// Checks every setting a chosen loss reads, as TRL does at start-up.
    pub fn validate(&self) -> Result<(), ObjectiveError> {
        check_setting("beta", self.beta, self.beta > 0.0, "β must be > 0")?;
        if self.losses.is_empty() {
            return Err(ObjectiveError::Batch("no preference loss chosen".into()));
        }
        let uses = |wanted: &[PreferenceLoss]| self.losses.iter().any(|(l, _)| wanted.contains(l));
        let eps = self.label_smoothing;
        check_setting(
            "label_smoothing",
            eps,
            (0.0..0.5).contains(&eps) || !uses(&[PreferenceLoss::Robust]),
            "robust DPO needs 0 <= label_smoothing < 0.5",
        )?;
        check_setting(
            "label_smoothing",
            eps,
            (eps > 0.0 && eps < 1.0) || !uses(&[PreferenceLoss::ExoPair]),
            "exo_pair needs 0 < label_smoothing < 1 (e.g. 1e-3)",
        )?;
        check_setting(
            "label_smoothing",
            eps,
            (0.0..=1.0).contains(&eps),
            "label smoothing is a probability",
        )?;
        check_setting(
            "discopop_tau",
            self.discopop_tau,
            self.discopop_tau > 0.0 || !uses(&[PreferenceLoss::Discopop]),
            "DiscoPOP's τ must be > 0",
        )?;
        for (_, weight) in &self.losses {
            check_setting("loss weight", *weight, true, "weights are finite")?;
        }
        Ok(())
    }
}

/// The log-ratios every formula reads, `[B]` each.
#[derive(Clone, Debug)]
pub struct LogRatios<B: Backend> {
    /// `log π(y_c) − log π_ref(y_c)`.
    pub chosen: Tensor<B, 1>,
    /// `log π(y_r) − log π_ref(y_r)`.
    pub rejected: Tensor<B, 1>,
}

impl<B: Backend> LogRatios<B> {
    pub fn new(policy: &PairLogProbs<B>, reference: &PairLogProbs<B>) -> Self {
        Self {
            chosen: policy.chosen.sum.clone() - reference.chosen.sum.clone(),
            rejected: policy.rejected.sum.clone() - reference.rejected.sum.clone(),
        }
    }

    /// The DPO margin `h`.
    pub fn margin(&self) -> Tensor<B, 1> {
        self.chosen.clone() - self.rejected.clone()
    }

    /// The margin of per-token averaged log-ratios (IPO, `sigmoid_norm`).
    pub fn normalized_margin(&self, policy: &PairLogProbs<B>) -> Tensor<B, 1> {
        let per_token = |ratio: &Tensor<B, 1>, seq: &SequenceLogProbs<B>| {
            ratio.clone() / seq.tokens.clone().clamp_min(1.0)
        };
        per_token(&self.chosen, &policy.chosen) - per_token(&self.rejected, &policy.rejected)
    }
}

/// DPO: `−log σ(β h)`.
pub fn sigmoid_loss<B: Backend>(beta: f64, margin: Tensor<B, 1>) -> Tensor<B, 1> {
    log_sigmoid(margin.mul_scalar(beta)).neg()
}

/// SLiC hinge: `max(0, 1 − β h)`.
pub fn hinge_loss<B: Backend>(beta: f64, margin: Tensor<B, 1>) -> Tensor<B, 1> {
    margin.mul_scalar(-beta).add_scalar(1.0).clamp_min(0.0)
}

/// IPO: `(h̄ − 1/(2β))²` on the per-token averaged margin.
pub fn ipo_loss<B: Backend>(beta: f64, normalized_margin: Tensor<B, 1>) -> Tensor<B, 1> {
    normalized_margin.sub_scalar(1.0 / (2.0 * beta)).square()
}

/// Conservative DPO: `−(1−ε) log σ(βh) − ε log σ(−βh)` (also AOT's and SimPO's smoothing).
pub fn cdpo_loss<B: Backend>(
    beta: f64,
    label_smoothing: f64,
    margin: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let z = margin.mul_scalar(beta);
    log_sigmoid(z.clone()).mul_scalar(-(1.0 - label_smoothing))
        - log_sigmoid(z.neg()).mul_scalar(label_smoothing)
}

/// Robust DPO: `(−(1−ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε)`, unbiased under label flips.
pub fn robust_loss<B: Backend>(
    beta: f64,
    label_smoothing: f64,
    margin: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let z = margin.mul_scalar(beta);
    (log_sigmoid(z.clone()).mul_scalar(-(1.0 - label_smoothing))
        + log_sigmoid(z.neg()).mul_scalar(label_smoothing))
    .div_scalar(1.0 - 2.0 * label_smoothing)
}

/// BCO on pairs: `−log σ(r_c) − log σ(−r_r)` with `r = β·log-ratio`.
pub fn bco_pair_loss<B: Backend>(beta: f64, ratios: &LogRatios<B>) -> Tensor<B, 1> {
    log_sigmoid(ratios.chosen.clone().mul_scalar(beta)).neg()
        - log_sigmoid(ratios.rejected.clone().mul_scalar(-beta))
}

/// SPPO (hard labels): `(ρ_c − 1/(2β))² + (ρ_r + 1/(2β))²`.
pub fn sppo_hard_loss<B: Backend>(beta: f64, ratios: &LogRatios<B>) -> Tensor<B, 1> {
    ratios.chosen.clone().sub_scalar(0.5 / beta).square()
        + ratios.rejected.clone().add_scalar(0.5 / beta).square()
}

/// NCA on pairs: `−log σ(r_c) − ½ log σ(−r_c) − ½ log σ(−r_r)`.
pub fn nca_pair_loss<B: Backend>(beta: f64, ratios: &LogRatios<B>) -> Tensor<B, 1> {
    let r_c = ratios.chosen.clone().mul_scalar(beta);
    let r_r = ratios.rejected.clone().mul_scalar(beta);
    log_sigmoid(r_c.clone()).neg()
        - log_sigmoid(r_c.neg()).mul_scalar(0.5)
        - log_sigmoid(r_r.neg()).mul_scalar(0.5)
}

/// APO-zero: `(1 − σ(r_c)) + σ(r_r)`.
pub fn apo_zero_loss<B: Backend>(beta: f64, ratios: &LogRatios<B>) -> Tensor<B, 1> {
    // 1 − σ(x) = σ(−x), exact in the tail where 1 − σ(x) cancels.
    sigmoid(ratios.chosen.clone().mul_scalar(-beta))
        + sigmoid(ratios.rejected.clone().mul_scalar(beta))
}

/// APO-down: `σ(r_c) + (1 − σ(r_c − r_r))`.
pub fn apo_down_loss<B: Backend>(beta: f64, ratios: &LogRatios<B>) -> Tensor<B, 1> {
    sigmoid(ratios.chosen.clone().mul_scalar(beta)) + sigmoid(ratios.margin().mul_scalar(-beta))
}

/// EXO on pairs: `σ(βh)(log σ(βh) − log(1−ε)) + σ(−βh)(log σ(−βh) − log ε)`.
pub fn exo_pair_loss<B: Backend>(
    beta: f64,
    label_smoothing: f64,
    margin: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let z = margin.mul_scalar(beta);
    let log_q_w = log_sigmoid(z.clone());
    let log_q_l = log_sigmoid(z.neg());
    log_q_w.clone().exp() * log_q_w.sub_scalar((-label_smoothing).ln_1p())
        + log_q_l.clone().exp() * log_q_l.sub_scalar(label_smoothing.ln())
}

/// DiscoPOP: `(1 − σ(βh/τ))·(−log σ(βh)) + σ(βh/τ)·e^{−βh}`.
pub fn discopop_loss<B: Backend>(beta: f64, tau: f64, margin: Tensor<B, 1>) -> Tensor<B, 1> {
    let z = margin.mul_scalar(beta);
    let logistic = log_sigmoid(z.clone()).neg();
    // 1 − σ(z/τ) = σ(−z/τ), exact in the tail.
    let logistic_weight = sigmoid(z.clone().div_scalar(-tau));
    // σ(z/τ)·e^{−z} as one exponent: e^{−z} alone overflows f32 for z < −88, where the weight
    // underflows to 0 and the product would be 0·∞. This overflows only where the value does.
    let weighted_exponential = (log_sigmoid(z.clone().div_scalar(tau)) - z).exp();
    logistic_weight * logistic + weighted_exponential
}

/// Length-normalised DPO: `−log σ(β h̄)` on the per-token averaged margin.
pub fn sigmoid_norm_loss<B: Backend>(beta: f64, normalized_margin: Tensor<B, 1>) -> Tensor<B, 1> {
    sigmoid_loss(beta, normalized_margin)
}

/// AOT: sorts `a` and `b` over the batch, matches them by rank, and applies cDPO to `a − b`.
/// Paired AOT passes policy and reference log-ratios `log π(y_c) − log π(y_r)`; unpaired AOT
/// passes chosen and rejected log-ratios. Gradients flow through the sort's permutation.
pub fn aot_loss<B: Backend>(
    beta: f64,
    label_smoothing: f64,
    a: Tensor<B, 1>,
    b: Tensor<B, 1>,
) -> Tensor<B, 1> {
    cdpo_loss(beta, label_smoothing, sorted(a) - sorted(b))
}

fn sorted<B: Backend>(values: Tensor<B, 1>) -> Tensor<B, 1> {
    let (_, order) = values.clone().detach().sort_with_indices(0);
    values.gather(0, order)
}

/// The chosen NLL as TRL's `sft` loss type: `−Σ log π(y_c) / Σ |y_c|` over the batch (a
/// scalar `[1]`; 0 for an empty batch of tokens).
pub fn chosen_nll<B: Backend>(chosen: &SequenceLogProbs<B>) -> Tensor<B, 1> {
    chosen.sum.clone().sum().neg() / chosen.tokens.clone().sum().clamp_min(1.0)
}

/// One loss's per-pair values `[B]` (the `sft` term is the same scalar for every pair).
pub fn per_pair_loss<B: Backend>(
    loss: PreferenceLoss,
    config: &DpoConfig,
    policy: &PairLogProbs<B>,
    reference: &PairLogProbs<B>,
) -> Tensor<B, 1> {
    let beta = config.beta;
    let eps = config.label_smoothing;
    let ratios = LogRatios::new(policy, reference);
    match loss {
        PreferenceLoss::Sigmoid => sigmoid_loss(beta, ratios.margin()),
        PreferenceLoss::Hinge => hinge_loss(beta, ratios.margin()),
        PreferenceLoss::Ipo => ipo_loss(beta, ratios.normalized_margin(policy)),
        PreferenceLoss::Robust => robust_loss(beta, eps, ratios.margin()),
        PreferenceLoss::BcoPair => bco_pair_loss(beta, &ratios),
        PreferenceLoss::SppoHard => sppo_hard_loss(beta, &ratios),
        PreferenceLoss::NcaPair => nca_pair_loss(beta, &ratios),
        PreferenceLoss::ApoZero => apo_zero_loss(beta, &ratios),
        PreferenceLoss::ApoDown => apo_down_loss(beta, &ratios),
        PreferenceLoss::ExoPair => exo_pair_loss(beta, eps, ratios.margin()),
        PreferenceLoss::Discopop => discopop_loss(beta, config.discopop_tau, ratios.margin()),
        PreferenceLoss::Aot => aot_loss(
            beta,
            eps,
            policy.chosen.sum.clone() - policy.rejected.sum.clone(),
            reference.chosen.sum.clone() - reference.rejected.sum.clone(),
        ),
        PreferenceLoss::AotPair => aot_loss(beta, eps, ratios.chosen, ratios.rejected),
        PreferenceLoss::SigmoidNorm => sigmoid_norm_loss(beta, ratios.normalized_margin(policy)),
        PreferenceLoss::Sft => chosen_nll(&policy.chosen).expand([policy.len()]),
    }
}

/// The weighted sum `Σ wᵢ · mean(lossᵢ)` of the configured losses, with TRL's DPO metrics:
/// `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins` (rewards are
/// `β · log-ratio`), `logps/chosen`, `logps/rejected` (summed log-probs), batch means.
pub fn dpo_loss<B: Backend>(
    config: &DpoConfig,
    policy: &PairLogProbs<B>,
    reference: &PairLogProbs<B>,
) -> Result<LossOutput<B>, ObjectiveError> {
    config.validate()?;
    policy.check()?;
    policy.check_matches(reference)?;
    let reference = reference.detach();
    let loss = config
        .losses
        .iter()
        .map(|&(kind, weight)| {
            per_pair_loss(kind, config, policy, &reference)
                .mean()
                .mul_scalar(weight)
        })
        .reduce(|a, b| a + b)
        .expect("validate() rejects an empty loss list");
    let ratios = LogRatios::new(policy, &reference);
    let mut metrics = reward_metrics(
        ratios.chosen.mul_scalar(config.beta),
        ratios.rejected.mul_scalar(config.beta),
    );
    metrics.push("logps/chosen", policy.chosen.sum.clone());
    metrics.push("logps/rejected", policy.rejected.sum.clone());
    Ok(LossOutput { loss, metrics })
}

/// `rewards/chosen`, `rewards/rejected`, `rewards/accuracies` (share of pairs with chosen >
/// rejected, strictly) and `rewards/margins`, from per-pair rewards `[B]`.
pub fn reward_metrics<B: Backend>(chosen: Tensor<B, 1>, rejected: Tensor<B, 1>) -> Metrics<B> {
    let chosen = chosen.detach();
    let rejected = rejected.detach();
    let mut metrics = Metrics::new();
    metrics.push("rewards/chosen", chosen.clone());
    metrics.push("rewards/rejected", rejected.clone());
    metrics.push(
        "rewards/accuracies",
        chosen.clone().greater(rejected.clone()).float(),
    );
    metrics.push("rewards/margins", chosen - rejected);
    metrics
}

/// TRL's `logits/chosen` and `logits/rejected`: the mean logit over every completion token of
/// each side, from per-token mean logits `[B, T]` (zero where masked) and the masks.
pub fn logit_metrics<B: Backend>(
    chosen_mean_logit: Tensor<B, 2>,
    chosen_mask: Tensor<B, 2>,
    rejected_mean_logit: Tensor<B, 2>,
    rejected_mask: Tensor<B, 2>,
) -> Metrics<B> {
    let mut metrics = Metrics::new();
    metrics.push(
        "logits/chosen",
        chosen_mean_logit.sum() / chosen_mask.sum().clamp_min(1.0),
    );
    metrics.push(
        "logits/rejected",
        rejected_mean_logit.sum() / rejected_mask.sum().clamp_min(1.0),
    );
    metrics
}
