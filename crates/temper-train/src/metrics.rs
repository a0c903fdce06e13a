//! `OUTPUT/metrics.jsonl`: one JSON object per line, `{"step", "epoch", "loss",
//! "learning_rate", "grad_norm", ...}` with the objective's metrics under TRL's names, and
//! evaluation rows with every metric prefixed `eval_`. Each line is flushed as it is written,
//! so a killed run keeps every row it logged.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::trainer::StepLog;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// The run's metrics file, open for appending rows.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `output_dir/metrics.jsonl`. A run resumed at `resumed_step` keeps the rows up to
    /// that step and drops the later ones (the resumed run logs them again); a new run
    /// (`None`) starts an empty file.
    pub fn open(output_dir: &Path, resumed_step: Option<usize>) -> std::io::Result<Self> {
        let path = output_dir.join(METRICS_FILE);
        let kept = match resumed_step {
            Some(step) if path.exists() => rows_up_to(&path, step)?,
            _ => Vec::new(),
        };
        // The kept rows go to a new file that replaces the old one only once it is on disk: a
        // process killed here leaves the old file whole.
        let staged = output_dir.join(format!(".{METRICS_FILE}.partial"));
        let mut file = File::create(&staged)?;
        for line in kept {
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        std::fs::rename(&staged, &path)?;
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, row: &Map<String, Value>) -> std::io::Result<()> {
        writeln!(self.file, "{}", Value::Object(row.clone()))?;
        self.file.flush()
    }
}

/// The lines of `path` whose `step` is at most `step`.
fn rows_up_to(path: &Path, step: usize) -> std::io::Result<Vec<String>> {
    let mut kept = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        let row_step = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|row| row["step"].as_u64());
        if row_step.is_some_and(|s| s as usize <= step) {
            kept.push(line);
        }
    }
    Ok(kept)
}

/// The row of a logging window: the mean loss and metrics of its steps, the last step's
/// learning rate and gradient norm (transformers logs the latest `grad_norm`), its step and
/// epoch.
pub fn train_row(window: &[StepLog]) -> Map<String, Value> {
    let mut row = Map::new();
    let Some(last) = window.last() else {
        return row;
    };
    let count = window.len() as f64;
    row.insert("step".into(), json!(last.step));
    row.insert("epoch".into(), json!(last.epoch));
    row.insert(
        "loss".into(),
        json!(window.iter().map(|log| log.loss).sum::<f64>() / count),
    );
    row.insert("learning_rate".into(), json!(last.learning_rate));
    row.insert("grad_norm".into(), json!(last.grad_norm));
    // Every metric any step of the window logged (RL logs a round's metrics with its first
    // step only), each averaged over the steps that logged it, as TRL averages its lists.
    let mut names: Vec<&String> = Vec::new();
    for (name, _) in window.iter().flat_map(|log| &log.metrics) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let values: Vec<f64> = window
            .iter()
            .filter_map(|log| log.metrics.iter().find(|(n, _)| n == name).map(|m| m.1))
            .collect();
        row.insert(
            name.clone(),
            json!(values.iter().sum::<f64>() / values.len() as f64),
        );
    }
    row
}

/// An evaluation row: `step`, `epoch`, and each metric as `eval_<name>`.
pub fn eval_row(step: usize, epoch: f64, metrics: &[(String, f64)]) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("step".into(), json!(step));
    row.insert("epoch".into(), json!(epoch));
    for (name, value) in metrics {
        row.insert(format!("eval_{name}"), json!(value));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(step: usize, loss: f64, accuracy: f64) -> StepLog {
        StepLog {
            step,
            epoch: step as f64 / 4.0,
            loss,
            learning_rate: 1e-3 / step as f64,
            grad_norm: step as f64,
            metrics: vec![("rewards/accuracies".into(), accuracy)],
            records: vec![],
        }
    }

    #[test]
    fn a_window_averages_losses_and_metrics_and_keeps_the_last_rate() {
        let row = train_row(&[log(1, 1.0, 0.5), log(2, 0.5, 1.0)]);
        assert_eq!(row["step"], json!(2));
        assert_eq!(row["loss"], json!(0.75));
        assert_eq!(row["rewards/accuracies"], json!(0.75));
        assert_eq!(row["learning_rate"], json!(5e-4));
        assert_eq!(row["grad_norm"], json!(2.0));
        let eval = eval_row(2, 0.5, &[("loss".into(), 0.7)]);
        assert_eq!(eval["eval_loss"], json!(0.7));
    }

    #[test]
    fn a_metric_only_some_steps_log_is_averaged_over_those() {
        let mut first = log(1, 1.0, 0.5);
        first.metrics.push(("reward".into(), 3.0));
        let row = train_row(&[first, log(2, 0.5, 1.0), log(3, 0.5, 1.0)]);
        assert_eq!(row["reward"], json!(3.0));
        assert_eq!(row["rewards/accuracies"], json!(2.5 / 3.0));
    }

    #[test]
    fn resuming_drops_the_rows_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut metrics = MetricsLog::open(dir.path(), None).unwrap();
        for step in 1..=4 {
            metrics.write(&train_row(&[log(step, 1.0, 1.0)])).unwrap();
        }
        drop(metrics);
        let metrics = MetricsLog::open(dir.path(), Some(2)).unwrap();
        let text = std::fs::read_to_string(metrics.path()).unwrap();
        let steps: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2]);
    }
}
