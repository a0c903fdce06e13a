//! Training over Burn with the semantics of PyTorch and Hugging Face's Trainer, so that a run
//! here can be checked step for step against TRL.
//!
//! Work in progress (issue 6). Today: AdamW as `torch.optim.AdamW` computes it, with weight
//! decay skipped for biases and norm weights as the Trainer does ([`optimizer`]); the learning
//! rate schedules of `transformers.get_scheduler` ([`schedule`]); clipping by the global
//! gradient norm as `torch.nn.utils.clip_grad_norm_` ([`clip`]); parameter names and their
//! gradients ([`parameters`]).
//!
//! ```
//! use temper_train::schedule::{Schedule, ScheduleKind};
//!
//! let schedule = Schedule { kind: ScheduleKind::Linear, peak: 1e-3, warmup_steps: 2, total_steps: 10 };
//! assert_eq!(schedule.learning_rate(0), 0.0); // transformers' first warmup step has lr 0
//! assert_eq!(schedule.learning_rate(2), 1e-3);
//! ```

pub mod clip;
pub mod optimizer;
pub mod parameters;
pub mod schedule;

pub use clip::clip_global_norm;
pub use optimizer::{AdamW, AdamWConfig, OptimizerStateError};
pub use schedule::{Schedule, ScheduleKind};
