//! Training over Burn with the semantics of PyTorch and Hugging Face's Trainer, so that a run
//! here can be checked step for step against TRL.
//!
//! A run ([`run::run`], what `temper sft|dpo|orpo|simpo|rm|grpo|ppo` call) goes from a configuration
//! with TRL's keys ([`config`]) to a trained model: data tokenised with the model's template,
//! the shared step loop ([`trainer`]: seeded batches, gradient accumulation, clipping, AdamW,
//! schedule, TRL's metrics) for SFT, the DPO family, ORPO, SimPO and reward models
//! ([`objective`]), DPO's reference log-probs scored once and cached on disk or scored every
//! step ([`reference`]), evaluation, `metrics.jsonl` ([`metrics`]), a progress bar
//! ([`progress`]), atomic checkpoints and exact resume ([`checkpoint`]), an output directory one run writes
//! at a time and never over its inputs ([`output`]), LoRA, and the final
//! HF directory or PEFT adapter ([`export`]). Reinforcement learning (`temper grpo|ppo`) runs
//! on the same loop: completions sampled on the policy's own weights ([`rollout`]), rewarded by
//! the verifiers rows name, a Rust function or a reward model ([`rewards`]), and trained with
//! GRPO ([`grpo`]) or PPO with a value model ([`ppo`]). Underneath: AdamW as `torch.optim.AdamW`
//! computes it, with the Trainer's decay groups ([`optimizer`]); the schedules of
//! `transformers.get_scheduler` ([`schedule`]); clipping by the global gradient norm as
//! `torch.nn.utils.clip_grad_norm_` ([`clip`]); parameter names ([`parameters`]); held-out
//! comparisons of models: [`heldout`]. A run's charts are drawn by the temper-plot crate.
//!
//! ```
//! use temper_train::schedule::{Schedule, ScheduleKind};
//!
//! let schedule = Schedule { kind: ScheduleKind::Linear, peak: 1e-3, warmup_steps: 2, total_steps: 10 };
//! assert_eq!(schedule.learning_rate(0), 0.0); // transformers' first warmup step has lr 0
//! assert_eq!(schedule.learning_rate(2), 1e-3);
//! ```

pub mod batch;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod engine;
pub mod export;
pub mod grpo;
pub mod heldout;
pub mod metrics;
pub mod objective;
pub mod offline;
pub mod optimizer;
pub mod output;
pub mod parameters;
pub mod ppo;
pub mod progress;
pub mod reference;
pub mod rewards;
pub mod rl;
pub mod rollout;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use clip::clip_global_norm;
pub use config::{ComputeBackend, ConfigError, RunSettings, TrainConfig, TrainerKind};
pub use engine::{MicroBatchLoss, UpdateEngine};
pub use objective::{NllSpan, Objective};
pub use offline::OfflineTrainer;
pub use optimizer::{AdamW, AdamWConfig, OptimizerStateError};
pub use reference::{Reference, ReferenceCache, ReferenceScores, reference_scores};
pub use run::{RunError, RunReport, run};
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{StepLog, TrainError, Trainer, TrainingArgs};
