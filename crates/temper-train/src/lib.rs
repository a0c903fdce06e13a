//! Training over Burn with the semantics of PyTorch and Hugging Face's Trainer, so that a run
//! here can be checked step for step against TRL.
//!
//! Work in progress (issue 6). Today: the shared step loop ([`trainer`]: seeded batches,
//! gradient accumulation, clipping, AdamW, schedule, TRL's metrics) for SFT, the DPO family,
//! ORPO, SimPO and reward models ([`objective`]), with reference log-probs computed up front; AdamW as
//! `torch.optim.AdamW` computes it, with weight decay skipped for biases and norm weights as
//! the Trainer does ([`optimizer`]); the learning rate schedules of `transformers.get_scheduler`
//! ([`schedule`]); clipping by the global gradient norm as `torch.nn.utils.clip_grad_norm_`
//! ([`clip`]); parameter names and their gradients ([`parameters`]). Checkpointing, resuming,
//! evaluation, metrics files and the commands are still to come.
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
pub mod export;
pub mod heldout;
pub mod metrics;
pub mod objective;
pub mod optimizer;
pub mod parameters;
pub mod plot;
pub mod progress;
pub mod reference;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use clip::clip_global_norm;
pub use config::{ConfigError, RunSettings, TrainConfig, TrainerKind};
pub use objective::{NllSpan, Objective};
pub use optimizer::{AdamW, AdamWConfig, OptimizerStateError};
pub use reference::{Reference, ReferenceCache, ReferenceScores, reference_scores};
pub use run::{RunError, RunReport, run};
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{StepLog, TrainError, Trainer, TrainingArgs};
