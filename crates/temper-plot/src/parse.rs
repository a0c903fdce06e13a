//! Reading `metrics.jsonl`: per metric, its training and evaluation points. No I/O, so it
//! can be tested on its own.

use std::collections::BTreeMap;

use serde_json::Value;

/// A line of `metrics.jsonl` that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based, as an editor counts.
    pub line: usize,
    pub reason: String,
}

/// One logged value: the optimizer step it was logged at and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub step: f64,
    pub value: f64,
}

/// A metric's points from training rows (`loss`) and from evaluation rows (`eval_loss`), each
/// sorted by step with one point per step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    pub train: Vec<Point>,
    pub eval: Vec<Point>,
}

/// Every numeric metric of a run, by its name without the `eval_` prefix, so that a metric's
/// training and evaluation values travel together and end up on the same axes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    pub metrics: BTreeMap<String, Metric>,
    /// Rows without a numeric `step` (a summary row, say): nothing to place them at, so skipped.
    pub rows_without_step: usize,
}

/// Parses the contents of a `metrics.jsonl` file.
///
/// Each non-blank line must be a JSON object; its numeric `step` places it on the x axis, and
/// every other finite number in it is a metric value (keys starting with `eval_` are the
/// evaluation values of the metric named by the rest). `epoch` is not a metric here: it is
/// another x axis, not something to watch. Strings, booleans, nulls (serde_json writes a NaN as
/// null) and missing keys are simply absent from the series. When a step appears twice, as it
/// does after resuming from a checkpoint (the resumed run logs again the steps after the
/// checkpoint), the later row wins: it belongs to the run that went on.
pub fn parse_metrics(bytes: &[u8]) -> Result<RunMetrics, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut run = RunMetrics::default();
    for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line_number = index + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row: Value = serde_json::from_slice(line).map_err(|error| ParseError {
            line: line_number,
            reason: json_reason(&error),
        })?;
        let Value::Object(row) = row else {
            return Err(ParseError {
                line: line_number,
                reason: format!("expected a JSON object, found {}", json_kind(&row)),
            });
        };
        let Some(step) = row.get("step").and_then(Value::as_f64) else {
            run.rows_without_step += 1;
            continue;
        };
        for (key, value) in &row {
            if key == "step" || key == "epoch" {
                continue;
            }
            let Some(value) = value.as_f64().filter(|value| value.is_finite()) else {
                continue;
            };
            let metric = match key.strip_prefix("eval_") {
                Some(name) if !name.is_empty() => {
                    &mut run.metrics.entry(name.into()).or_default().eval
                }
                _ => &mut run.metrics.entry(key.clone()).or_default().train,
            };
            metric.push(Point { step, value });
        }
    }
    for metric in run.metrics.values_mut() {
        last_per_step(&mut metric.train);
        last_per_step(&mut metric.eval);
    }
    Ok(run)
}

/// Sorts by step and keeps the last-logged point of each step (the sort is stable, so "last"
/// is the order of the file).
fn last_per_step(points: &mut Vec<Point>) {
    points.sort_by(|a, b| a.step.total_cmp(&b.step));
    let mut kept: Vec<Point> = Vec::with_capacity(points.len());
    for point in points.drain(..) {
        match kept.last_mut() {
            Some(last) if last.step == point.step => *last = point,
            _ => kept.push(point),
        }
    }
    *points = kept;
}

/// serde_json's message without its " at line 1 column N" tail (each line is parsed alone, so
/// its line is always 1 and would contradict the file's line number).
fn json_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let tail = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&tail).unwrap_or(&message);
    format!("not valid JSON: {message} (column {})", error.column())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
