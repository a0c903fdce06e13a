//! Learning-rate schedules as `transformers.get_scheduler` defines them: the rate for optimizer
//! step `k` (0-based) is `peak · λ(k)`, with linear warmup `λ(k) = k / warmup` first.

use std::f64::consts::PI;

/// The `lr_scheduler_type` values supported, in transformers' spelling.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The peak throughout; transformers ignores warmup for it.
    Constant,
    /// Warmup, then the peak.
    ConstantWithWarmup,
    /// Warmup, then linear decay to 0 at the last step.
    Linear,
    /// Warmup, then half a cosine down to 0.
    Cosine,
}

/// A schedule over a run of `total_steps` optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// Warmup steps from a ratio of the run, as transformers' `get_warmup_steps` rounds it up.
    pub fn warmup_from_ratio(ratio: f64, total_steps: usize) -> usize {
        (ratio * total_steps as f64).ceil() as usize
    }

    /// The rate of optimizer step `step` (0-based: the first update uses `learning_rate(0)`).
    pub fn learning_rate(&self, step: usize) -> f64 {
        self.peak * self.factor(step)
    }

    fn factor(&self, step: usize) -> f64 {
        let (step, warmup, total) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if self.kind != ScheduleKind::Constant && step < warmup {
            return step / warmup.max(1.0);
        }
        let progress = (step - warmup) / (total - warmup).max(1.0);
        match self.kind {
            ScheduleKind::Constant | ScheduleKind::ConstantWithWarmup => 1.0,
            ScheduleKind::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
            ScheduleKind::Cosine => (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
        }
    }
}
