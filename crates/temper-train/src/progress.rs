//! What a run shows while it works: on a terminal, a progress bar (step, loss, rate, ETA)
//! with messages printed above it; otherwise (a log file, CI) one plain line per metrics row.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

/// How progress is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Display {
    /// A bar when stderr is a terminal, lines otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

/// Progress of one run of `total` steps on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: usize,
    first_step: usize,
    started: Instant,
}

impl Progress {
    /// Starts showing a run of `total` steps, `done` of which are already done (a resume).
    pub fn new(display: Display, total: usize, done: usize) -> Self {
        let use_bar = display == Display::Auto && std::io::stderr().is_terminal();
        let bar = use_bar.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30} step {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}, {per_sec}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(done as u64);
            bar.reset_eta();
            bar
        });
        Self {
            bar,
            lines: display != Display::Quiet && !use_bar,
            total,
            first_step: done,
            started: Instant::now(),
        }
    }

    /// One optimizer step is done.
    pub fn step(&self, step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    /// A metrics row was written: lines mode prints it.
    pub fn row(&self, row: &Map<String, Value>) {
        if !self.lines {
            return;
        }
        let step = row.get("step").and_then(Value::as_u64).unwrap_or(0) as usize;
        let fields: Vec<String> = row
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "step" | "epoch"))
            .map(|(key, value)| match value.as_f64() {
                Some(number) => format!("{key} {}", short(number)),
                None => format!("{key} {value}"),
            })
            .collect();
        let done = step.saturating_sub(self.first_step);
        let pace = if done > 0 {
            let per_step = self.started.elapsed().as_secs_f64() / done as f64;
            let left = per_step * self.total.saturating_sub(step) as f64;
            format!(" ({per_step:.2} s/step, ETA {left:.0} s)")
        } else {
            String::new()
        };
        eprintln!("step {step}/{}  {}{pace}", self.total, fields.join("  "));
    }

    /// A message for the user (a checkpoint saved, an evaluation started).
    pub fn message(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.lines => eprintln!("{text}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// A number in a few characters: fixed-point in the usual range, scientific outside it.
fn short(number: f64) -> String {
    let magnitude = number.abs();
    if number == 0.0 || (1e-3..1e4).contains(&magnitude) {
        format!("{number:.4}")
    } else {
        format!("{number:.3e}")
    }
}
