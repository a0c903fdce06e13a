//! `temper verify`: score responses with the verifiers of temper-verifiers and summarise.
//!
//! Rows are open-instruct RLVR rows with a `response` (`{messages, ground_truth, dataset,
//! response}`, optionally `finish_reason`) or IFEval rows (`{prompt, instruction_id_list,
//! kwargs, response}`). Each row prints `{"index", "verifier", "score", "details"}`; then a
//! summary: accuracy and mean score per verifier, and for IFEval rows the official report's
//! prompt- and instruction-level accuracy, strict and loose. With `--json`, stdout holds only
//! JSON: one object per row, then `{"summary": ...}`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use clap::Args;
use rayon::prelude::*;
use serde_json::{Value, json};
use temper_data::{Example, Format};
use temper_verifiers::ifeval::report::{Report, Summary};
use temper_verifiers::{Following, FormatReward, Instructions, Registry, Row, Shaping};

use crate::Outcome;

#[derive(Args)]
pub struct VerifyArgs {
    /// JSON Lines of RLVR rows (with `response`) or IFEval rows.
    #[arg(long)]
    data: PathBuf,
    /// Print only JSON on stdout: one object per row, then a summary object.
    #[arg(long)]
    json: bool,
    /// Skip (and count) invalid rows instead of exiting 1.
    #[arg(long)]
    skip_invalid: bool,
    /// open-instruct's --verification_reward: the shaped reward is score × this.
    #[arg(long, default_value_t = 10.0)]
    verification_reward: f64,
    /// Add this reward when a response has R1's `</think> <answer>...</answer>` format.
    #[arg(long)]
    r1_format_reward: Option<f64>,
    /// With --r1-format-reward: count the verifiable reward only when the format matches,
    /// instead of adding the format reward.
    #[arg(long, requires = "r1_format_reward")]
    r1_format_required: bool,
    /// Reward of a response whose `finish_reason` is not "stop" (truncated).
    #[arg(long)]
    non_stop_penalty: Option<f64>,
}

/// One row, parsed.
enum Task {
    Rlvr {
        response: String,
        ground_truths: Vec<Value>,
        datasets: Vec<String>,
        finished: bool,
    },
    IfEval {
        response: String,
        ids: Vec<String>,
        kwargs: Vec<Value>,
    },
}

/// What one row came to.
struct Scored {
    verifier: String,
    score: f64,
    reward: Option<f64>,
    details: Value,
    ifeval: Option<(Vec<String>, Following)>,
}

struct BadRow {
    line: usize,
    field: String,
    message: String,
}

fn bad(line: usize, field: &str, message: impl std::fmt::Display) -> BadRow {
    BadRow {
        line,
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn text_field(
    object: &serde_json::Map<String, Value>,
    line: usize,
    field: &str,
) -> Result<String, BadRow> {
    match object.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(bad(line, field, "must be a string")),
        None => Err(bad(line, field, "missing")),
    }
}

fn parse_row(text: &str, line: usize) -> Result<Task, BadRow> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(line, "", format!("not JSON: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(bad(line, "", "a row must be a JSON object"));
    };
    let response = text_field(object, line, "response")?;
    if object.contains_key("instruction_id_list") {
        let ids = object["instruction_id_list"]
            .as_array()
            .and_then(|ids| {
                ids.iter()
                    .map(|id| id.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(line, "instruction_id_list", "must be a list of strings"))?;
        let kwargs = match object.get("kwargs") {
            Some(Value::Array(kwargs)) => kwargs.clone(),
            Some(_) => return Err(bad(line, "kwargs", "must be a list")),
            None => return Err(bad(line, "kwargs", "missing")),
        };
        text_field(object, line, "prompt")?;
        return Ok(Task::IfEval {
            response,
            ids,
            kwargs,
        });
    }
    let examples = Format::OpenInstructRlvr
        .parse(&value)
        .map_err(|e| bad(line, &e.field, e.message))?;
    let Some(Example::Rlvr(prompt)) = examples.into_iter().next() else {
        return Err(bad(line, "", "not an RLVR row"));
    };
    let ground_truth = prompt.ground_truth.unwrap_or(Value::Null);
    // open-instruct: a list ground truth pairs with a list of datasets, element by element.
    let ground_truths = match ground_truth {
        Value::Array(items)
            if !items.is_empty() && (prompt.datasets.len() > 1 || items.len() == 1) =>
        {
            items
        }
        other => vec![other],
    };
    if ground_truths.len() != prompt.datasets.len() {
        return Err(bad(
            line,
            "ground_truth",
            format!(
                "{} ground truths for {} datasets",
                ground_truths.len(),
                prompt.datasets.len()
            ),
        ));
    }
    let finished = match object.get("finish_reason") {
        None | Some(Value::Null) => true,
        Some(Value::String(reason)) => reason == "stop",
        Some(_) => return Err(bad(line, "finish_reason", "must be a string")),
    };
    Ok(Task::Rlvr {
        response,
        ground_truths,
        datasets: prompt.datasets,
        finished,
    })
}

fn score(
    task: &Task,
    registry: &Registry,
    shaping: &Shaping,
    line: usize,
) -> Result<Scored, BadRow> {
    match task {
        Task::Rlvr {
            response,
            ground_truths,
            datasets,
            finished,
        } => {
            let row = Row {
                response,
                ground_truths,
                datasets,
                finished: *finished,
            };
            let scored = registry.score(&row, shaping).map_err(|e| {
                let field = match e {
                    temper_verifiers::VerifyError::UnknownVerifier(_) => "dataset",
                    _ => "ground_truth",
                };
                bad(line, field, e)
            })?;
            let verifier = scored
                .parts
                .iter()
                .map(|p| p.verifier)
                .collect::<Vec<_>>()
                .join("+");
            let details = if scored.parts.len() == 1 {
                scored.parts[0].verdict.details.clone()
            } else {
                json!(scored.parts)
            };
            Ok(Scored {
                verifier,
                score: scored.score,
                reward: Some(scored.reward),
                details,
                ifeval: None,
            })
        }
        Task::IfEval {
            response,
            ids,
            kwargs,
        } => {
            let instructions =
                Instructions::new(ids, kwargs).map_err(|e| bad(line, "kwargs", e))?;
            let following = instructions.following(response);
            let followed = following.strict.iter().filter(|&&f| f).count();
            let score = if ids.is_empty() {
                0.0
            } else {
                followed as f64 / ids.len() as f64
            };
            let details = json!({
                "instruction_id_list": ids,
                "strict": following.strict,
                "loose": following.loose,
                "follow_all_strict": following.strict.iter().all(|&f| f),
                "follow_all_loose": following.loose.iter().all(|&f| f),
            });
            Ok(Scored {
                verifier: "ifeval_official".to_string(),
                score,
                reward: None,
                details,
                ifeval: Some((ids.clone(), following)),
            })
        }
    }
}

/// Scored rows summed up per verifier (rows, accuracy, mean of a value: `temper verify`'s
/// score, `temper eval`'s reward), and IFEval's official report over the IFEval rows among
/// them: the summary both commands print.
#[derive(Default)]
pub struct Tally {
    /// verifier → (rows, rows correct, sum of the value)
    per_verifier: BTreeMap<String, (usize, usize, f64)>,
    report: Report,
}

impl Tally {
    /// One row scored by `verifier` (several joined with `+`).
    pub fn add(&mut self, verifier: &str, correct: bool, value: f64) {
        let entry = self.per_verifier.entry(verifier.to_string()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(correct);
        entry.2 += value;
    }

    /// One IFEval row's verdicts, for the official report.
    pub fn add_ifeval(&mut self, ids: &[String], following: &Following) {
        self.report.add(ids, following);
    }

    /// `{verifier: {"rows", "accuracy", value_key}}`.
    pub fn verifiers_json(&self, value_key: &str) -> BTreeMap<&String, Value> {
        self.per_verifier
            .iter()
            .map(|(name, &(rows, correct, total))| {
                let mut entry = json!({"rows": rows, "accuracy": correct as f64 / rows as f64});
                entry[value_key] = json!(total / rows as f64);
                (name, entry)
            })
            .collect()
    }

    /// IFEval's four accuracies (and per instruction), when IFEval rows were added.
    pub fn ifeval(&self) -> Option<Summary> {
        (!self.report.is_empty()).then(|| self.report.summary())
    }

    /// The per-verifier table, its value column headed `value_name`, then IFEval's report.
    pub fn print(&self, value_name: &str) {
        crate::out!(
            "{:<24} {:>6} {:>9} {:>11}",
            "verifier",
            "rows",
            "accuracy",
            value_name
        );
        for (name, &(rows, correct, total)) in &self.per_verifier {
            crate::out!(
                "{name:<24} {rows:>6} {:>9.4} {:>11.4}",
                correct as f64 / rows as f64,
                total / rows as f64
            );
        }
        if let Some(summary) = &self.ifeval() {
            crate::out!(
                "\nIFEval ({} prompts, {} instructions)   strict    loose",
                summary.prompts,
                summary.instructions
            );
            crate::out!(
                "prompt-level accuracy              {:>8.4} {:>8.4}",
                summary.prompt_level_strict,
                summary.prompt_level_loose
            );
            crate::out!(
                "instruction-level accuracy         {:>8.4} {:>8.4}",
                summary.instruction_level_strict,
                summary.instruction_level_loose
            );
        }
    }
}

pub fn run(args: VerifyArgs) -> Outcome {
    let file = match File::open(&args.data) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {}: {e}", args.data.display());
            return Outcome::Failure;
        }
    };
    let name = args.data.display().to_string();
    let mut lines = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        match line {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => lines.push((index + 1, line)),
            Err(e) => {
                eprintln!("error: {name}:{}: {e}", index + 1);
                return Outcome::Failure;
            }
        }
    }
    let shaping = Shaping {
        verification_reward: args.verification_reward,
        format: args.r1_format_reward.map(|reward| FormatReward {
            reward,
            additive: !args.r1_format_required,
        }),
        non_stop_penalty: args.non_stop_penalty,
    };
    let registry = Registry::default();
    let results: Vec<Result<Scored, BadRow>> = lines
        .par_iter()
        .map(|(line, text)| {
            parse_row(text, *line).and_then(|task| score(&task, &registry, &shaping, *line))
        })
        .collect();

    let mut invalid = 0;
    let mut tally = Tally::default();
    for (index, result) in results.into_iter().enumerate() {
        let scored = match result {
            Ok(scored) => scored,
            Err(row) => {
                invalid += 1;
                let field = if row.field.is_empty() {
                    String::new()
                } else {
                    format!(" field `{}`:", row.field)
                };
                eprintln!("error: {name}:{}:{field} {}", row.line, row.message);
                continue;
            }
        };
        tally.add(&scored.verifier, scored.score >= 1.0, scored.score);
        if let Some((ids, following)) = &scored.ifeval {
            tally.add_ifeval(ids, following);
        }
        let mut object = json!({"index": index, "verifier": scored.verifier, "score": scored.score, "details": scored.details});
        if let Some(reward) = scored.reward {
            object["reward"] = json!(reward);
        }
        if args.json {
            crate::out!("{object}");
        } else {
            crate::out!(
                "#{index:<5} {:<16} score {:.3}",
                scored.verifier,
                scored.score
            );
        }
    }
    if args.json {
        let summary = json!({"summary": {"file": name, "rows": lines.len(), "invalid": invalid, "verifiers": tally.verifiers_json("mean_score"), "ifeval": tally.ifeval()}});
        crate::out!("{summary}");
    } else {
        crate::out!("\n{name}: {} rows, {invalid} invalid", lines.len());
        tally.print("mean score");
    }
    if lines.is_empty() {
        eprintln!("error: {name}: no rows");
        return Outcome::Invalid;
    }
    if invalid > 0 && !args.skip_invalid {
        Outcome::Invalid
    } else {
        Outcome::Success
    }
}
