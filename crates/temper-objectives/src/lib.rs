//! The loss math of post-training, generic over Burn backends.
//!
//! Per-token log-probs from logits ([`logprobs`]), SFT cross-entropy ([`sft`]), the DPO family
//! with TRL's `loss_type` names ([`preference`]), SimPO ([`simpo`]), ORPO ([`orpo`]), KTO
//! ([`kto`]), the Bradley–Terry reward-model loss ([`reward`]), GRPO ([`grpo`]) and PPO's
//! critic side ([`ppo`]). Each loss returns its metrics beside it, under TRL's names. Every
//! formula also exists as plain `f64` code in [`twin`], which the property tests hold the
//! tensor code to. Nothing here depends on a model: any Burn project can use it.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::Tensor;
//! use temper_objectives::logprobs::PairLogProbs;
//! use temper_objectives::preference::{DpoConfig, dpo_loss};
//!
//! type B = NdArray;
//! let device = Default::default();
//! let t = |v: [f32; 2]| Tensor::<B, 1>::from_floats(v, &device);
//! let policy = PairLogProbs::new(t([-10.0, -12.0]), t([5.0, 6.0]), t([-14.0, -11.0]), t([7.0, 4.0]))?;
//! let reference = PairLogProbs::new(t([-11.0, -12.0]), t([5.0, 6.0]), t([-13.0, -11.0]), t([7.0, 4.0]))?;
//! let out = dpo_loss(&DpoConfig::default(), &policy, &reference)?;
//! let loss: f32 = out.loss.into_scalar();
//! assert!(loss < std::f32::consts::LN_2); // the first pair already prefers chosen
//! # Ok::<(), temper_objectives::ObjectiveError>(())
//! ```

pub mod error;
pub mod grpo;
pub mod kto;
pub mod logprobs;
pub mod metrics;
pub mod orpo;
pub mod ppo;
pub mod preference;
pub mod reward;
pub mod sft;
pub mod simpo;
pub mod stable;
pub mod twin;

pub use error::ObjectiveError;
pub use logprobs::{PairLogProbs, SequenceLogProbs};
pub use metrics::{LossOutput, Metrics};
