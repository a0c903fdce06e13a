//! `temper eval`: one completion of each prompt of a file (greedy, or sampled), rewarded by the
//! verifiers each row names, summarised per verifier and, for IFEval rows, by IFEval's four
//! official accuracies. The generation and rewards are temper-train's held-out evaluation
//! ([`evaluate_completions`], the code behind the trainers' `eval_accuracy`), on the model
//! directory's stops and padding as the RL trainers take them.
//!
//! Rows: open-instruct RLVR rows (`{messages, ground_truth, dataset}`), TRL prompt rows with
//! `ground_truth` and `dataset` columns, and IFEval rows (`{prompt, instruction_id_list,
//! kwargs}`), whose prompt is one user message and which the `ifeval` verifier scores. With
//! `--output FILE`, each row is written back with `response`, `finish_reason` and what the
//! verifiers made of it: a file `temper verify` reads again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{Map, Value, json};
use temper_data::columns::Columns;
use temper_data::tokenize::tokenize;
use temper_data::{
    DataError, DataKind, Example, FormatChoice, Message, RlvrPrompt, TokenizeOptions, Tokenized,
    Turns, dataset,
};
use temper_kernels::KernelBackend;
use temper_model::{Decoding, GenerationConfig};
use temper_train::TrainError;
use temper_train::rewards::{RewardInput, Rewards};
use temper_train::rl::{EvaluatedCompletion, evaluate_completions, greedy_evaluation};
use temper_train::rollout::{Prompts, Stops};
use temper_verifiers::ifeval::IfEvalVerifier;
use temper_verifiers::{Instructions, Registry, Shaping};

use crate::Outcome;
use crate::backend::{BackendArgs, with_backend};
use crate::model::{SamplingArgs, open};
use crate::verify::Tally;

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct EvalArgs {
    /// Hugging Face model directory (config.json, safetensors, tokenizer files).
    #[arg(long)]
    model: PathBuf,
    /// Prompts with verifiers: open-instruct RLVR rows, TRL prompt rows with `ground_truth`
    /// and `dataset`, or IFEval rows (JSON Lines, JSON or Parquet).
    #[arg(long)]
    data: PathBuf,
    /// Dataset format, or auto to pick it from the fields of the first record.
    #[arg(long, value_enum, default_value_t)]
    format: FormatChoice,
    /// Which field of each record holds a format's field: `field=column` pairs (the trainers'
    /// `columns`).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// The verifiers of rows that name none in a `dataset` column (the RL trainers'
    /// `verifier`), e.g. `math` for a file of `problem`/`answer` columns read with
    /// `--columns prompt=problem,ground_truth=answer`.
    #[arg(long, value_delimiter = ',')]
    verifier: Vec<String>,
    /// Prompts generated together (the trainers' `per_device_eval_batch_size`).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Each verifier's score times this (open-instruct's `verification_reward`, the RL
    /// trainers' key): the scale of `reward`, not of accuracy.
    #[arg(long, default_value_t = 10.0)]
    verification_reward: f64,
    /// The whole reward of a completion cut off before eos (open-instruct's
    /// `non_stop_penalty_value`).
    #[arg(long)]
    non_stop_penalty: Option<f64>,
    /// Write each row with its `response`, `finish_reason`, `reward`, `correct` and per-verifier
    /// `rewards` to this JSON Lines file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Skip (and count) rows that cannot be evaluated instead of exiting 1.
    #[arg(long)]
    skip_invalid: bool,
    /// Print only the summary, as one JSON object, on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// One row to evaluate: where it came from, the row as the file gave it, and IFEval's
/// instructions when it is an IFEval row.
struct EvalRow {
    origin: String,
    record: u64,
    original: RlvrPrompt,
    ifeval: Option<(Vec<String>, Instructions)>,
}

fn usage(message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    Outcome::Failure
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `FILE.partial` beside `FILE`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn invalid(message: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {message}");
    Outcome::Invalid
}

pub fn run(args: EvalArgs) -> Outcome {
    with_backend!(args.backend, B => run_on::<B>(args))
}

fn run_on<B: KernelBackend>(args: EvalArgs) -> Outcome {
    if args.batch_size == 0 {
        return usage("--batch-size: must be at least 1");
    }
    if args.sampling.max_new_tokens == 0 {
        return usage("--max-new-tokens: must be at least 1");
    }
    if let Err(message) = args.sampling.check() {
        return invalid(message);
    }
    if !args.verification_reward.is_finite() {
        return invalid("--verification-reward: must be a finite number");
    }
    if args.non_stop_penalty.is_some_and(|p| !p.is_finite()) {
        return invalid("--non-stop-penalty: must be a finite number");
    }
    let columns = match Columns::parse(&args.columns) {
        Ok(columns) => columns,
        Err(reason) => return usage(format!("--columns: {reason}")),
    };
    let registry = Registry::default();
    if let Some(unknown) = args.verifier.iter().find(|v| registry.get(v).is_err()) {
        return usage(format!(
            "--verifier: no verifier is called `{unknown}` (known: {})",
            registry.names().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(output) = &args.output
        && same_file(output, &args.data)
    {
        return usage(format!(
            "--output: {} is the --data file; writing it would destroy the rows",
            output.display()
        ));
    }
    let (config, model, tokenizer) = match open::<B>(&args.model) {
        Ok(opened) => opened,
        Err(message) => return usage(message),
    };
    // The rewards as the RL trainers make them from their keys.
    let mut rewards = Rewards::verifiers(Shaping {
        verification_reward: args.verification_reward,
        ..Shaping::unscaled()
    });
    rewards.non_stop_penalty = args.non_stop_penalty;

    let loaded = match dataset::load_mapped(
        &args.data,
        args.format.format(),
        &columns,
        args.skip_invalid,
    ) {
        Ok(loaded) => loaded,
        Err(DataError::InvalidRecords { errors }) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            return Outcome::Invalid;
        }
        Err(
            error @ (DataError::Io { .. }
            | DataError::Unreadable { .. }
            | DataError::ParquetDisabled { .. }),
        ) => return usage(error),
        Err(error) => return invalid(error),
    };
    let mut skipped: Vec<String> = loaded.skipped.iter().map(ToString::to_string).collect();
    if let Some(kind) = loaded.kind().filter(|kind| *kind != DataKind::Rlvr) {
        return invalid(format!(
            "{}: `temper eval` generates from prompts (RLVR rows); this file holds {} records",
            args.data.display(),
            kind.as_str()
        ));
    }

    // Each row checked as the trainers check theirs, and its ground truth tried on an empty
    // completion, so that a row the verifiers cannot score stops the command before generating.
    let mut rows: Vec<EvalRow> = Vec::new();
    let mut prompts = Prompts::default();
    let mut bad = Vec::new();
    for (index, example) in loaded.examples.iter().enumerate() {
        let record = loaded
            .record_of_example
            .get(index)
            .copied()
            .unwrap_or_default();
        let origin = format!("{}: record {record}", args.data.display());
        let Example::Rlvr(mut original) = example.to_example() else {
            continue;
        };
        // An IFEval row names its instructions instead: `prepare` gives it the `ifeval` verifier.
        if !original.extra.contains_key("instruction_id_list") {
            original.or_verifiers(&args.verifier);
        }
        match prepare(&original, &registry) {
            Ok((row, ifeval)) => {
                let example = Example::Rlvr(row);
                let ids = match tokenize(&tokenizer, &example, &TokenizeOptions::default())
                    .map(|outcome| outcome.tokenized)
                {
                    Ok(Tokenized::Prompt(prompt)) => prompt.prompt_ids,
                    Ok(_) => {
                        bad.push(format!("{origin}: not a prompt"));
                        continue;
                    }
                    Err(error) => {
                        bad.push(format!("{origin}: {error}"));
                        continue;
                    }
                };
                if let Err(error) = config.check_positions("the prompt", ids.len()) {
                    bad.push(format!("{origin}: {error}"));
                    continue;
                }
                let Example::Rlvr(row) = example else {
                    continue;
                };
                let input = RewardInput {
                    row: &row,
                    completion: "",
                    prompt_ids: &ids,
                    completion_ids: &[],
                    finished: true,
                };
                if let Err(error) = rewards.score(&[input]) {
                    bad.push(format!("{origin}: {}", error.reason));
                    continue;
                }
                prompts.rows.push(row);
                prompts.ids.push(ids);
                rows.push(EvalRow {
                    origin,
                    record,
                    original,
                    ifeval,
                });
            }
            Err(reason) => bad.push(format!("{origin}: {reason}")),
        }
    }
    if !bad.is_empty() {
        if !args.skip_invalid {
            for line in &bad {
                eprintln!("error: {line}");
            }
            return Outcome::Invalid;
        }
        for line in &bad {
            eprintln!("skipped: {line}");
        }
        skipped.extend(bad);
    }
    if rows.is_empty() {
        return invalid(format!("{}: no rows to evaluate", args.data.display()));
    }

    let pad_id = tokenizer
        .pad_id()
        .or_else(|| tokenizer.eos_id().ok())
        .unwrap_or(0);
    let stops = Stops::of_model(&args.model, &config, &tokenizer, pad_id);
    // Generation ends where the model's positions do: the longest prompt sets how many new
    // tokens every prompt may have.
    let longest = prompts.ids.iter().map(Vec::len).max().unwrap_or(0);
    let room = config.max_position_embeddings.saturating_sub(longest);
    let max_new_tokens = args.sampling.max_new_tokens.min(room);
    if max_new_tokens == 0 {
        return invalid(format!(
            "{}: the longest prompt ({longest} tokens) fills the model's positions \
             (max_position_embeddings {}): no room for a completion",
            args.data.display(),
            config.max_position_embeddings
        ));
    }
    if max_new_tokens < args.sampling.max_new_tokens {
        eprintln!(
            "note: --max-new-tokens {}: {max_new_tokens} new tokens fit after the longest prompt \
             ({longest} tokens; max_position_embeddings {}); generating at most {max_new_tokens}",
            args.sampling.max_new_tokens, config.max_position_embeddings
        );
    }
    let generation = GenerationConfig {
        decoding: args.sampling.decoding(),
        repetition_penalty: args.sampling.repetition_penalty,
        seed: args.sampling.seed,
        ..greedy_evaluation(&stops, max_new_tokens)
    };

    // Rows go to FILE.partial, moved over FILE once all are written: a failed or interrupted
    // run leaves an earlier FILE as it was.
    let mut output = match &args.output {
        Some(path) => {
            let partial = partial_path(path);
            match File::create(&partial) {
                Ok(file) => Some((path, partial, BufWriter::new(file))),
                Err(e) => return usage(format!("{}: {e}", partial.display())),
            }
        }
        None => None,
    };

    let started = Instant::now();
    let evaluation = match evaluate_completions(
        &model,
        &prompts,
        &rewards,
        &tokenizer,
        &generation,
        args.batch_size,
    ) {
        Ok(evaluation) => evaluation,
        Err(TrainError::Record { index, reason }) => {
            let origin = rows.get(index).map_or("", |row| row.origin.as_str());
            return invalid(format!("{origin}: {reason}"));
        }
        Err(error) => return usage(error),
    };
    let seconds = started.elapsed().as_secs_f64();

    let mut tally = Tally::default();
    for (completion, row) in evaluation.completions.iter().zip(&rows) {
        let verifiers: Vec<&str> = completion.parts.keys().map(String::as_str).collect();
        tally.add(
            &verifiers.join("+"),
            completion.correct == Some(true),
            completion.reward,
        );
        let following = row
            .ifeval
            .as_ref()
            .map(|(ids, instructions)| (ids, instructions.following(&completion.text)));
        if let Some((ids, following)) = &following {
            tally.add_ifeval(ids, following);
        }
        if let Some((_, partial, file)) = &mut output {
            let line = row_record(row, completion, &following);
            if let Err(e) = writeln!(file, "{line}") {
                return usage(format!("{}: {e}", partial.display()));
            }
        }
    }
    if let Some((path, partial, file)) = output {
        let written = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&partial, path));
        if let Err(e) = written {
            return usage(format!("{}: {e}", path.display()));
        }
    }

    let metric = |name: &str| {
        evaluation
            .metrics
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    };
    let completion_tokens: usize = evaluation
        .completions
        .iter()
        .map(|c| c.completion_ids.len())
        .sum();
    let generation_seconds = evaluation.generation.as_secs_f64();
    let tokens_per_second = completion_tokens as f64 / generation_seconds.max(1e-9);
    let decoding = match generation.decoding {
        Decoding::Greedy => json!({"do_sample": false}),
        Decoding::Sample {
            temperature,
            top_k,
            top_p,
        } => json!({"do_sample": true, "temperature": temperature, "top_k": top_k,
                    "top_p": top_p, "seed": args.sampling.seed}),
    };
    let metrics: Map<String, Value> = evaluation
        .metrics
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let summary = json!({
        "model": args.model.display().to_string(),
        "data": args.data.display().to_string(),
        "rows": rows.len(),
        "skipped": skipped.len(),
        "accuracy": metric("accuracy"),
        "reward": metric("reward"),
        "verifiers": tally.verifiers_json("mean_reward"),
        "ifeval": tally.ifeval(),
        "metrics": metrics,
        "generation": {
            "max_new_tokens": max_new_tokens,
            "batch_size": args.batch_size,
            "repetition_penalty": args.sampling.repetition_penalty,
            "decoding": decoding,
        },
        "completion_tokens": completion_tokens,
        "seconds": seconds,
        "generation_seconds": generation_seconds,
        "tokens_per_second": tokens_per_second,
    });
    if args.json {
        crate::out!("{summary}");
        return Outcome::Success;
    }
    let how = match generation.decoding {
        Decoding::Greedy => "greedy".to_string(),
        Decoding::Sample { temperature, .. } => {
            format!(
                "sampled (temperature {temperature}, seed {})",
                args.sampling.seed
            )
        }
    };
    crate::out!(
        "{} on {}: {} rows ({} skipped), {how}, at most {max_new_tokens} new tokens, batches of {}",
        args.model.display(),
        args.data.display(),
        rows.len(),
        skipped.len(),
        args.batch_size
    );
    crate::out!("");
    tally.print("mean reward");
    crate::out!("");
    crate::out!(
        "accuracy {:.4}   reward {:.4}   mean completion length {:.1} tokens   cut off {:.1}%",
        metric("accuracy").unwrap_or(0.0),
        metric("reward").unwrap_or(0.0),
        metric("completions/mean_length").unwrap_or(0.0),
        metric("completions/clipped_ratio").unwrap_or(0.0) * 100.0
    );
    crate::out!(
        "time {seconds:.1} s (generation {generation_seconds:.1} s, {completion_tokens} tokens, \
         {tokens_per_second:.1} tokens/s)"
    );
    if let Some(path) = &args.output {
        crate::out!("rows written to {}", path.display());
    }
    Outcome::Success
}

/// The row as the verifiers see it (an IFEval row becomes one user message scored by the
/// `ifeval` verifier, with its instructions kept for the official report), or why it cannot be
/// evaluated.
#[allow(clippy::type_complexity)]
fn prepare(
    row: &RlvrPrompt,
    registry: &Registry,
) -> Result<(RlvrPrompt, Option<(Vec<String>, Instructions)>), String> {
    if row.datasets.is_empty()
        && let Some(ids) = row.extra.get("instruction_id_list")
    {
        let ids: Vec<String> = ids
            .as_array()
            .and_then(|ids| {
                ids.iter()
                    .map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .ok_or("instruction_id_list: must be a list of strings")?;
        let kwargs = match row.extra.get("kwargs") {
            Some(Value::Array(kwargs)) => kwargs.clone(),
            Some(_) => return Err("kwargs: must be a list".into()),
            None => return Err("kwargs: missing".into()),
        };
        let instructions = Instructions::new(&ids, &kwargs).map_err(|e| format!("kwargs: {e}"))?;
        let prompt = match &row.prompt {
            Turns::Text(text) => Turns::Messages(vec![Message::user(text.clone())]),
            messages => messages.clone(),
        };
        let scored = RlvrPrompt {
            prompt,
            ground_truth: Some(json!({"instruction_id": ids, "kwargs": kwargs})),
            datasets: vec!["ifeval".to_string()],
            extra: row.extra.clone(),
        };
        return Ok((scored, Some((ids, instructions))));
    }
    if row.datasets.is_empty() {
        return Err(
            "dataset: the row names no verifier (open-instruct's `dataset` column) and is not an \
             IFEval row (`instruction_id_list`, `kwargs`)"
                .into(),
        );
    }
    if let Some(unknown) = row.datasets.iter().find(|d| registry.get(d).is_err()) {
        return Err(format!(
            "dataset: no verifier is called `{unknown}` (known: {})",
            registry.names().collect::<Vec<_>>().join(", ")
        ));
    }
    // An open-instruct `ifeval` row: its ground truth's instructions give IFEval's report too.
    let ifeval = match (row.datasets.as_slice(), &row.ground_truth) {
        ([name], Some(truth)) if registry.get(name).is_ok_and(|v| v.name() == "ifeval") => {
            Some(IfEvalVerifier::instructions(truth).map_err(|e| format!("ground_truth: {e}"))?)
        }
        _ => None,
    };
    Ok((row.clone(), ifeval))
}

/// One line of `--output`: the row's own columns, then what the model answered and what the
/// verifiers made of it.
fn row_record(
    row: &EvalRow,
    completion: &EvaluatedCompletion,
    following: &Option<(&Vec<String>, temper_verifiers::Following)>,
) -> Value {
    let original = &row.original;
    let mut object = Map::new();
    object.insert("index".into(), json!(completion.prompt_index));
    object.insert("record".into(), json!(row.record));
    match &original.prompt {
        Turns::Messages(messages) => {
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            object.insert("messages".into(), Value::Array(messages));
        }
        Turns::Text(text) => {
            object.insert("prompt".into(), json!(text));
        }
    }
    if let Some(truth) = &original.ground_truth {
        object.insert("ground_truth".into(), truth.clone());
    }
    match original.datasets.as_slice() {
        [] => {}
        [one] => {
            object.insert("dataset".into(), json!(one));
        }
        many => {
            object.insert("dataset".into(), json!(many));
        }
    }
    for (key, value) in &original.extra {
        object.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let finish_reason = if completion.finished {
        "stop"
    } else {
        "length"
    };
    for (key, value) in [
        ("response", json!(completion.text)),
        ("finish_reason", json!(finish_reason)),
        ("completion_tokens", json!(completion.completion_ids.len())),
        ("reward", json!(completion.reward)),
        ("correct", json!(completion.correct)),
        ("rewards", json!(completion.parts)),
    ] {
        object.insert(key.into(), value);
    }
    if let Some((_, following)) = following {
        object.insert(
            "ifeval".into(),
            json!({
                "strict": following.strict,
                "loose": following.loose,
                "follow_all_strict": following.strict.iter().all(|&f| f),
                "follow_all_loose": following.loose.iter().all(|&f| f),
            }),
        );
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(extra: Value, datasets: &[&str]) -> RlvrPrompt {
        let Value::Object(extra) = extra else {
            panic!("an object")
        };
        RlvrPrompt {
            prompt: Turns::Text("Say hi.".into()),
            ground_truth: None,
            datasets: datasets.iter().map(|d| d.to_string()).collect(),
            extra,
        }
    }

    #[test]
    fn an_ifeval_row_is_a_user_message_scored_by_ifeval() {
        let registry = Registry::default();
        let ifeval = row(
            json!({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}),
            &[],
        );
        let (scored, instructions) = prepare(&ifeval, &registry).unwrap();
        assert_eq!(scored.datasets, ["ifeval"]);
        assert!(matches!(&scored.prompt, Turns::Messages(m) if m.len() == 1));
        assert_eq!(instructions.unwrap().0, ["punctuation:no_comma"]);
    }

    #[test]
    fn rows_without_a_known_verifier_are_refused() {
        let registry = Registry::default();
        assert!(
            prepare(&row(json!({}), &[]), &registry)
                .unwrap_err()
                .contains("names no verifier")
        );
        assert!(
            prepare(&row(json!({}), &["nope"]), &registry)
                .unwrap_err()
                .contains("no verifier is called `nope`")
        );
        assert!(prepare(&row(json!({}), &["GSM8K"]), &registry).is_ok());
    }
}
