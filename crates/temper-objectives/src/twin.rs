//! Every formula again as scalar `f64` code that reads like the paper.
//!
//! These twins are the specification the tensor code is tested against (`tests/properties.rs`)
//! and the quickest way to read what a loss does. Inputs are per-sequence values: `logp_c` is a
//! policy's summed log-probability of the chosen completion, `ref_c` the reference model's,
//! `n_c` its number of completion tokens; the same with `_r` for the rejected one.
//! Nothing here is fast; nothing here allocates beyond the returned vectors.

use std::f64::consts::LN_2;

/// `log σ(x)`, stable for large |x|.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// `σ(x)`.
pub fn sigmoid(x: f64) -> f64 {
    log_sigmoid(x).exp()
}

/// `log(1 − eˣ)` for `x < 0`, split at `−ln 2` (Mächler 2012).
pub fn log1mexp(x: f64) -> f64 {
    if x < -LN_2 {
        (-x.exp()).ln_1p()
    } else {
        (-x.exp_m1()).ln()
    }
}

/// Token counts of zero count as one, as TRL's `clamp(min=1)`: an empty completion averages to 0.
pub fn at_least_one(tokens: f64) -> f64 {
    tokens.max(1.0)
}

/// The DPO implicit reward of one completion: `β · (log π(y|x) − log π_ref(y|x))`.
pub fn implicit_reward(beta: f64, logp: f64, ref_logp: f64) -> f64 {
    beta * (logp - ref_logp)
}

/// One preference pair's inputs, as the loss functions below read them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub logp_c: f64,
    pub logp_r: f64,
    pub ref_c: f64,
    pub ref_r: f64,
    pub n_c: f64,
    pub n_r: f64,
}

impl Pair {
    /// The DPO margin `h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))`.
    pub fn margin(&self) -> f64 {
        (self.logp_c - self.ref_c) - (self.logp_r - self.ref_r)
    }

    /// The margin of per-token averaged log-ratios, `h̄` (IPO, length-normalised DPO).
    pub fn margin_per_token(&self) -> f64 {
        (self.logp_c - self.ref_c) / at_least_one(self.n_c)
            - (self.logp_r - self.ref_r) / at_least_one(self.n_r)
    }

    /// The pair with chosen and rejected exchanged.
    pub fn swapped(&self) -> Pair {
        Pair {
            logp_c: self.logp_r,
            logp_r: self.logp_c,
            ref_c: self.ref_r,
            ref_r: self.ref_c,
            n_c: self.n_r,
            n_r: self.n_c,
        }
    }
}

/// DPO (Rafailov et al. 2023, eq. 7): `−log σ(β h)`.
pub fn sigmoid_loss(beta: f64, p: &Pair) -> f64 {
    -log_sigmoid(beta * p.margin())
}

/// SLiC hinge (Zhao et al. 2023): `max(0, 1 − β h)`.
pub fn hinge_loss(beta: f64, p: &Pair) -> f64 {
    (1.0 - beta * p.margin()).max(0.0)
}

/// IPO (Azar et al. 2023, eq. 17) on per-token averaged log-ratios, as TRL and the IPO authors:
/// `(h̄ − 1/(2β))²` with `h̄ = (log π(y_c) − log π_ref(y_c))/|y_c| − (…)/|y_r|`.
pub fn ipo_loss(beta: f64, p: &Pair) -> f64 {
    let h = (p.logp_c - p.ref_c) / at_least_one(p.n_c) - (p.logp_r - p.ref_r) / at_least_one(p.n_r);
    (h - 1.0 / (2.0 * beta)).powi(2)
}

/// Robust DPO (Chowdhury et al. 2024) with flip rate ε:
/// `(−(1−ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε)`.
pub fn robust_loss(beta: f64, label_smoothing: f64, p: &Pair) -> f64 {
    let z = beta * p.margin();
    (-(1.0 - label_smoothing) * log_sigmoid(z) + label_smoothing * log_sigmoid(-z))
        / (1.0 - 2.0 * label_smoothing)
}

/// Conservative DPO (cDPO, Mitchell 2023): `−(1−ε) log σ(βh) − ε log σ(−βh)`.
pub fn cdpo_loss(beta: f64, label_smoothing: f64, margin: f64) -> f64 {
    let z = beta * margin;
    -(1.0 - label_smoothing) * log_sigmoid(z) - label_smoothing * log_sigmoid(-z)
}

/// BCO on pairs (Jung et al. 2024), as TRL: `−log σ(r_c) − log σ(−r_r)` with `r = β·log-ratio`.
pub fn bco_pair_loss(beta: f64, p: &Pair) -> f64 {
    let r_c = implicit_reward(beta, p.logp_c, p.ref_c);
    let r_r = implicit_reward(beta, p.logp_r, p.ref_r);
    -log_sigmoid(r_c) - log_sigmoid(-r_r)
}

/// SPPO with hard preferences (Wu et al. 2024, eq. 4.7 with P = 1 / 0):
/// `(ρ_c − 1/(2β))² + (ρ_r + 1/(2β))²` with `ρ` the log-ratios.
pub fn sppo_hard_loss(beta: f64, p: &Pair) -> f64 {
    let rho_c = p.logp_c - p.ref_c;
    let rho_r = p.logp_r - p.ref_r;
    (rho_c - 0.5 / beta).powi(2) + (rho_r + 0.5 / beta).powi(2)
}

/// NCA on pairs (Chen et al. 2024): `−log σ(r_c) − ½ log σ(−r_c) − ½ log σ(−r_r)`.
pub fn nca_pair_loss(beta: f64, p: &Pair) -> f64 {
    let r_c = implicit_reward(beta, p.logp_c, p.ref_c);
    let r_r = implicit_reward(beta, p.logp_r, p.ref_r);
    -log_sigmoid(r_c) - 0.5 * log_sigmoid(-r_c) - 0.5 * log_sigmoid(-r_r)
}

/// APO-zero (D'Oosterlinck et al. 2024, eq. 7): `(1 − σ(r_c)) + σ(r_r)`.
pub fn apo_zero_loss(beta: f64, p: &Pair) -> f64 {
    let r_c = implicit_reward(beta, p.logp_c, p.ref_c);
    let r_r = implicit_reward(beta, p.logp_r, p.ref_r);
    (1.0 - sigmoid(r_c)) + sigmoid(r_r)
}

/// APO-down (eq. 8): `σ(r_c) + (1 − σ(r_c − r_r))`.
pub fn apo_down_loss(beta: f64, p: &Pair) -> f64 {
    let r_c = implicit_reward(beta, p.logp_c, p.ref_c);
    let r_r = implicit_reward(beta, p.logp_r, p.ref_r);
    sigmoid(r_c) + (1.0 - sigmoid(r_c - r_r))
}

/// EXO on pairs (Ji et al. 2024, eq. 16), KL from the model's pair distribution to `[1−ε, ε]`:
/// `σ(βh)(log σ(βh) − log(1−ε)) + σ(−βh)(log σ(−βh) − log ε)`.
pub fn exo_pair_loss(beta: f64, label_smoothing: f64, p: &Pair) -> f64 {
    let z = beta * p.margin();
    let (log_q_w, log_q_l) = (log_sigmoid(z), log_sigmoid(-z));
    log_q_w.exp() * (log_q_w - (-label_smoothing).ln_1p())
        + log_q_l.exp() * (log_q_l - label_smoothing.ln())
}

/// DiscoPOP (Chris Lu et al. 2024, eq. 5): a blend of the logistic and exponential losses,
/// `(1 − σ(βh/τ))·(−log σ(βh)) + σ(βh/τ)·e^{−βh}`.
pub fn discopop_loss(beta: f64, tau: f64, p: &Pair) -> f64 {
    let z = beta * p.margin();
    let modulation = sigmoid(z / tau);
    (1.0 - modulation) * -log_sigmoid(z) + modulation * (-z).exp()
}

/// Length-normalised DPO (Tülu 3's `dpo_norm`, TRL's `sigmoid_norm`):
/// `−log σ(β · (ρ_c/|y_c| − ρ_r/|y_r|))`.
pub fn sigmoid_norm_loss(beta: f64, p: &Pair) -> f64 {
    let h = (p.logp_c - p.ref_c) / at_least_one(p.n_c) - (p.logp_r - p.ref_r) / at_least_one(p.n_r);
    -log_sigmoid(beta * h)
}

/// AOT (Melnyk et al. 2024), paired form as TRL's `aot`: the batch's policy log-ratios
/// `log π(y_c) − log π(y_r)` and reference log-ratios are each sorted, then matched by rank and
/// scored by cDPO. Returns one loss per rank.
pub fn aot_losses(beta: f64, label_smoothing: f64, pairs: &[Pair]) -> Vec<f64> {
    let policy: Vec<f64> = pairs.iter().map(|p| p.logp_c - p.logp_r).collect();
    let reference: Vec<f64> = pairs.iter().map(|p| p.ref_c - p.ref_r).collect();
    ranked_cdpo(beta, label_smoothing, policy, reference)
}

/// AOT unpaired (TRL's `aot_unpaired`, formerly `aot_pair`): the chosen and the rejected
/// log-ratios `log π − log π_ref` are each sorted, matched by rank, and scored by cDPO.
pub fn aot_pair_losses(beta: f64, label_smoothing: f64, pairs: &[Pair]) -> Vec<f64> {
    let chosen: Vec<f64> = pairs.iter().map(|p| p.logp_c - p.ref_c).collect();
    let rejected: Vec<f64> = pairs.iter().map(|p| p.logp_r - p.ref_r).collect();
    ranked_cdpo(beta, label_smoothing, chosen, rejected)
}

fn ranked_cdpo(beta: f64, label_smoothing: f64, mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    a.iter()
        .zip(&b)
        .map(|(x, y)| cdpo_loss(beta, label_smoothing, x - y))
        .collect()
}

/// The NLL term of RPO and of TRL's `sft` loss type: the mean negative log-probability over
/// every chosen completion token in the batch, `−Σ log π(y_c) / Σ |y_c|`.
pub fn chosen_nll(pairs: &[Pair]) -> f64 {
    let logp: f64 = pairs.iter().map(|p| p.logp_c).sum();
    let tokens: f64 = pairs.iter().map(|p| p.n_c).sum();
    -logp / at_least_one(tokens)
}

/// SimPO (Meng et al. 2024, eq. 6), reference-free on average log-probs, with TRL's CPO label
/// smoothing: `z = β·(log π(y_c)/|y_c| − log π(y_r)/|y_r|) − γ`, loss `−(1−ε) log σ(z) − ε log σ(−z)`.
pub fn simpo_loss(beta: f64, gamma: f64, label_smoothing: f64, p: &Pair) -> f64 {
    let avg_c = p.logp_c / at_least_one(p.n_c);
    let avg_r = p.logp_r / at_least_one(p.n_r);
    cdpo_loss(1.0, label_smoothing, beta * (avg_c - avg_r) - gamma)
}

/// ORPO's caps the average log-probability below 0, where odds are infinite.
pub const ORPO_MAX_AVG_LOGP: f64 = -1e-7;

/// ORPO (Hong et al. 2024, eqs. 4 and 7), log odds of the average log-probs:
/// `log odds(y) = log p − log(1 − p)` with `log p = log π(y)/|y|`; returns
/// `(log σ(log odds(y_c) − log odds(y_r)), log odds(y_c) − log odds(y_r))`.
pub fn orpo_log_odds(p: &Pair) -> (f64, f64) {
    let avg_c = (p.logp_c / at_least_one(p.n_c)).min(ORPO_MAX_AVG_LOGP);
    let avg_r = (p.logp_r / at_least_one(p.n_r)).min(ORPO_MAX_AVG_LOGP);
    let log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r));
    (log_sigmoid(log_odds), log_odds)
}

/// LLaMA-Factory's ORPO NLL: the mean over pairs of `−log π(y_c)/|y_c|`.
pub fn orpo_completion_nll(pairs: &[Pair]) -> f64 {
    mean(pairs.iter().map(|p| -p.logp_c / at_least_one(p.n_c)))
}

/// ORPO's loss: `NLL − λ · mean(log σ(log odds ratio))`, with `nll` computed by the caller over
/// the span it chooses (TRL: prompt and completion tokens; LLaMA-Factory: completion tokens).
pub fn orpo_loss(beta: f64, nll: f64, pairs: &[Pair]) -> f64 {
    let ratio = mean(pairs.iter().map(|p| orpo_log_odds(p).0));
    nll - beta * ratio
}

/// KTO (Ethayarajh et al. 2024): desirable `λ_D(1 − σ(β(ρ − z₀)))`, undesirable
/// `λ_U(1 − σ(β(z₀ − ρ)))`, with `ρ` the log-ratio and `z₀` the detached KL estimate
/// `max(0, mean(log π(y'|x) − log π_ref(y'|x)))` over mismatched completions `y'`.
pub fn kto_losses(
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
    kl: f64,
    samples: &[(f64, f64, bool)],
) -> Vec<f64> {
    // TRL concatenates desirable losses first, then undesirable ones.
    let desirable = samples.iter().filter(|s| s.2).map(|&(logp, ref_logp, _)| {
        desirable_weight * (1.0 - sigmoid(beta * ((logp - ref_logp) - kl)))
    });
    let undesirable = samples.iter().filter(|s| !s.2).map(|&(logp, ref_logp, _)| {
        undesirable_weight * (1.0 - sigmoid(beta * (kl - (logp - ref_logp))))
    });
    desirable.chain(undesirable).collect()
}

/// KTO's KL estimate: `max(0, mean(log π(y'|x) − log π_ref(y'|x)))`.
pub fn kto_kl(kl_logps: &[f64], ref_kl_logps: &[f64]) -> f64 {
    mean(kl_logps.iter().zip(ref_kl_logps).map(|(a, b)| a - b)).max(0.0)
}

/// Bradley–Terry reward-model loss (InstructGPT; Llama 2's margin; Eisenstein et al.'s
/// centering): `mean(−log σ(r_c − r_r − m)) + c · mean((r_c + r_r)²)`.
pub fn reward_model_loss(chosen: &[f64], rejected: &[f64], margin: &[f64], center: f64) -> f64 {
    let bt = mean(
        chosen
            .iter()
            .zip(rejected)
            .zip(margin)
            .map(|((c, r), m)| -log_sigmoid(c - r - m)),
    );
    bt + center * mean(chosen.iter().zip(rejected).map(|(c, r)| (c + r).powi(2)))
}

/// The mean of a sequence, 0 when empty.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Unbiased (Bessel-corrected) standard deviation, as `torch.std`; 0 for fewer than two values.
pub fn std_unbiased(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values.iter().copied());
    let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// How GRPO scales centred rewards (TRL's `scale_rewards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum RewardScaling {
    /// Divide by the std of the prompt's group (GRPO).
    Group,
    /// Divide by the std of the whole batch.
    Batch,
    /// Do not divide (Dr. GRPO).
    None,
}

/// GRPO advantages (Shao et al. 2024): `A_i = (r_i − mean_group(r)) / (std + 1e-4)` with the
/// std of the group, of the whole batch, or no scaling (Dr. GRPO).
pub fn grpo_advantages(rewards: &[f64], group_size: usize, scaling: RewardScaling) -> Vec<f64> {
    let batch_std = std_unbiased(rewards);
    rewards
        .chunks(group_size)
        .flat_map(|group| {
            let m = mean(group.iter().copied());
            let scale = match scaling {
                RewardScaling::Group => std_unbiased(group) + 1e-4,
                RewardScaling::Batch => batch_std + 1e-4,
                RewardScaling::None => 1.0,
            };
            group.iter().map(move |r| (r - m) / scale)
        })
        .collect()
}

/// The cap on a per-token log-ratio before it is exponentiated (e^20 ≈ 5·10⁸), in the k3
/// estimator and the importance ratio: far past it f32 overflows to inf and gradients to NaN.
/// TRL does not cap; the two agree wherever the log-ratio is below 20.
pub const MAX_LOG_RATIO: f64 = 20.0;

/// The k3 estimator of KL(π ‖ π_ref) per token (Schulman 2020): `e^d − d − 1` with
/// `d = ref − logp` capped at 20 (only the exponentiated side can overflow).
pub fn k3_kl(logp: f64, ref_logp: f64) -> f64 {
    let d = (ref_logp - logp).min(MAX_LOG_RATIO);
    d.exp() - d - 1.0
}

/// The clipped surrogate per token (PPO, with DAPO's asymmetric ε):
/// `−min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A)` with `ρ = e^{logp − old}` (log-ratio capped at 20).
pub fn clipped_surrogate(
    logp: f64,
    old_logp: f64,
    advantage: f64,
    eps_low: f64,
    eps_high: f64,
) -> f64 {
    let ratio = importance_ratio(logp, old_logp);
    let clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high);
    -(ratio * advantage).min(clipped * advantage)
}

/// `π(y_t)/π_old(y_t) = e^{logp − old}`, the log-ratio capped at [`MAX_LOG_RATIO`].
pub fn importance_ratio(logp: f64, old_logp: f64) -> f64 {
    (logp - old_logp).min(MAX_LOG_RATIO).exp()
}

/// How per-token GRPO losses become one number (TRL's `loss_type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    /// Mean over each sequence's tokens, then over sequences (the GRPO paper).
    Grpo,
    /// Mean over all tokens of the batch.
    Bnpo,
    /// Sum over tokens divided by `batch × max_completion_length` (Dr. GRPO).
    DrGrpo { max_completion_length: usize },
    /// Sum over tokens divided by the token count of the whole accumulated batch (DAPO).
    Dapo { total_tokens: f64 },
}

/// Aggregates per-token losses `[sequence][token]` under a 0/1 mask.
pub fn aggregate(per_token: &[Vec<f64>], mask: &[Vec<f64>], aggregation: Aggregation) -> f64 {
    let sums: Vec<f64> = per_token
        .iter()
        .zip(mask)
        .map(|(l, m)| l.iter().zip(m).map(|(a, b)| a * b).sum())
        .collect();
    let counts: Vec<f64> = mask.iter().map(|m| m.iter().sum()).collect();
    let total: f64 = sums.iter().sum();
    match aggregation {
        Aggregation::Grpo => mean(sums.iter().zip(&counts).map(|(s, c)| s / at_least_one(*c))),
        Aggregation::Bnpo => total / at_least_one(counts.iter().sum()),
        Aggregation::DrGrpo {
            max_completion_length,
        } => total / (per_token.len() * max_completion_length) as f64,
        Aggregation::Dapo { total_tokens } => total / at_least_one(total_tokens),
    }
}

/// One completion token as GRPO sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrpoToken {
    pub logp: f64,
    pub old_logp: f64,
    pub ref_logp: f64,
    pub advantage: f64,
}

/// GRPO's settings: KL weight β, the clip range, and TRL's `use_bias_correction_kl`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrpoSettings {
    pub beta: f64,
    pub eps_low: f64,
    pub eps_high: f64,
    pub bias_corrected_kl: bool,
}

/// GRPO's per-token loss before aggregation: the clipped surrogate plus `β · KL`, where TRL's
/// `use_bias_correction_kl` weighs the KL by the importance ratio.
pub fn grpo_token_loss(token: &GrpoToken, settings: &GrpoSettings) -> f64 {
    let GrpoToken {
        logp,
        old_logp,
        ref_logp,
        advantage,
    } = *token;
    let GrpoSettings {
        beta,
        eps_low,
        eps_high,
        bias_corrected_kl,
    } = *settings;
    let surrogate = clipped_surrogate(logp, old_logp, advantage, eps_low, eps_high);
    if beta == 0.0 {
        return surrogate;
    }
    let kl = k3_kl(logp, ref_logp);
    let weight = if bias_corrected_kl {
        importance_ratio(logp, old_logp)
    } else {
        1.0
    };
    surrogate + beta * kl * weight
}

/// Generalised advantage estimation (Schulman et al. 2016) over one sequence of per-token rewards
/// and values: `δ_t = r_t + γV_{t+1} − V_t`, `A_t = δ_t + γλA_{t+1}`, with `V_T = 0`.
/// Returns `(advantages, returns = advantages + values)`.
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut advantages = vec![0.0; n];
    let mut next_advantage = 0.0;
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_value - values[t];
        next_advantage = delta + gamma * lambda * next_advantage;
        advantages[t] = next_advantage;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Whitening over the unmasked positions, as TRL's `masked_whiten`: `(x − μ)/sqrt(σ² + 1e-8)`
/// with the unbiased masked variance; `shift_mean = false` adds `μ` back.
pub fn masked_whiten(values: &[f64], mask: &[f64], shift_mean: bool) -> Vec<f64> {
    let count: f64 = mask.iter().sum();
    let mu = values.iter().zip(mask).map(|(v, m)| v * m).sum::<f64>() / at_least_one(count);
    let biased = values
        .iter()
        .zip(mask)
        .map(|(v, m)| (v - mu).powi(2) * m)
        .sum::<f64>()
        / at_least_one(count);
    let variance = biased * count / at_least_one(count - 1.0);
    let scale = 1.0 / (variance + 1e-8).sqrt();
    values
        .iter()
        .map(|v| (v - mu) * scale + if shift_mean { 0.0 } else { mu })
        .collect()
}

/// TRL's per-token PPO rewards of one completion: `−kl_coef · KL_t` (k1: `logp − ref`; k3:
/// [`k3_kl`]) on every token, plus `score` on the last. Whitening, when asked, is
/// [`masked_whiten`] over the whole round with the mean kept.
pub fn shaped_rewards(
    logps: &[f64],
    ref_logps: &[f64],
    score: f64,
    kl_coef: f64,
    k3: bool,
) -> Vec<f64> {
    let n = logps.len();
    logps
        .iter()
        .zip(ref_logps)
        .enumerate()
        .map(|(t, (&logp, &ref_logp))| {
            let kl = if k3 {
                k3_kl(logp, ref_logp)
            } else {
                logp - ref_logp
            };
            -kl_coef * kl + if t + 1 == n { score } else { 0.0 }
        })
        .collect()
}

/// One completion token as PPO's policy loss sees it, with what TRL logs of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PpoPolicyToken {
    /// [`clipped_surrogate`] with the symmetric clip range.
    pub loss: f64,
    /// `½(logp − old)²`, averaged into `policy/approxkl_avg`.
    pub approx_kl: f64,
    /// Whether the clipped term is the one taken (`policy/clipfrac_avg`).
    pub clipped: bool,
    /// [`importance_ratio`] (`val/ratio`).
    pub ratio: f64,
}

/// PPO's policy loss of one token: the loss and metrics TRL averages over completion tokens.
pub fn ppo_policy_token(logp: f64, old_logp: f64, advantage: f64, clip: f64) -> PpoPolicyToken {
    let ratio = importance_ratio(logp, old_logp);
    let unclipped = -(ratio * advantage);
    let clipped = -(ratio.clamp(1.0 - clip, 1.0 + clip) * advantage);
    PpoPolicyToken {
        loss: clipped_surrogate(logp, old_logp, advantage, clip, clip),
        approx_kl: 0.5 * (logp - old_logp).powi(2),
        clipped: clipped > unclipped,
        ratio,
    }
}

/// PPO's clipped value loss per token: `½ max((V − R)², (clip(V, V_old ± ε) − R)²)`.
pub fn ppo_value_loss(value: f64, old_value: f64, ret: f64, clip: f64) -> f64 {
    let clipped = value.clamp(old_value - clip, old_value + clip);
    0.5 * (value - ret).powi(2).max((clipped - ret).powi(2))
}

/// Masked cross-entropy: `−Σ log p(token) / N` with `N` the unmasked tokens of the whole
/// accumulated batch.
pub fn sft_loss(token_logps: &[f64], total_tokens: f64) -> f64 {
    -token_logps.iter().sum::<f64>() / at_least_one(total_tokens)
}

/// `log Σ exp(x)`, stable.
pub fn log_sum_exp(logits: &[f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// The log-probability of `label` under `softmax(logits)`.
pub fn token_log_prob(logits: &[f64], label: usize) -> f64 {
    logits[label] - log_sum_exp(logits)
}

/// The entropy of `softmax(logits)`: `−Σ p log p`.
pub fn entropy(logits: &[f64]) -> f64 {
    let lse = log_sum_exp(logits);
    -logits
        .iter()
        .map(|x| (x - lse).exp() * (x - lse))
        .sum::<f64>()
}
