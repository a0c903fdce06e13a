//! PPO with a value head and GAE, as TRL's `PPOTrainer` runs it (RLHF with a reward model, or
//! Tülu 3's RLVR with the verifiers): one completion per prompt, per-token rewards of
//! `−kl_coef · KL` plus the score at the last token, GAE advantages (whitened) and returns,
//! then `num_ppo_epochs × num_mini_batches` updates of the policy (clipped surrogate) and the
//! value model (clipped value loss) together.

/// How the per-token KL penalty is estimated (TRL's `kl_estimator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlEstimator {
    /// `logp − ref` (unbiased, may be negative per token).
    K1,
    /// `e^{ref − logp} − (ref − logp) − 1` (unbiased, never negative).
    K3,
}

/// PPO's settings (TRL's `PPOConfig` names and defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct PpoSettings {
    pub sampling: crate::rollout::Sampling,
    pub num_ppo_epochs: usize,
    pub num_mini_batches: usize,
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub cliprange: f64,
    pub vf_coef: f64,
    pub cliprange_value: f64,
    pub gamma: f64,
    pub lam: f64,
    pub whiten_rewards: bool,
    /// Subtracted from the score of a completion that did not end at eos.
    pub missing_eos_penalty: Option<f64>,
}
