//! `temper eval` on a slice of the bundled task's held-out prompts with its tiny base model
//! (fixtures/models/task-base): the summary and the per-row file agree with each other, with
//! temper-train's `evaluate_policy` (the trainers' held-out evaluation) and with `temper verify`
//! reading the rows back; IFEval rows get IFEval's four accuracies; bad input exits 1 or 2 with
//! one error line.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use common::{json_lines, repo, temper, temper_into_closed_pipe};
use serde_json::{Value, json};
use temper_data::tokenize::tokenize;
use temper_data::{ChatTokenizer, TokenizeOptions, TokenizedSet, dataset};
use temper_model::load_model;
use temper_train::rewards::Rewards;
use temper_train::rl::evaluate_policy;
use temper_train::rollout::{Prompts, Stops};
use temper_verifiers::Shaping;

const MODEL: &str = "fixtures/models/task-base";
const PROMPTS: &str = "fixtures/task/rlvr_eval.jsonl";
/// The first rows of the held-out prompts: the base model follows 7 of these 24 constraints.
const ROWS: usize = 24;

/// The first `ROWS` rows of the held-out prompts, in a file of their own.
fn slice(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(PROMPTS)).unwrap();
    let lines: Vec<&str> = text.lines().take(ROWS).collect();
    let path = dir.join("slice.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The one summary object `--json` prints, after checking the run succeeded.
fn summary(output: &std::process::Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = json_lines(output);
    assert_eq!(lines.len(), 1, "--json prints one object");
    lines.remove(0)
}

/// `evaluate_policy` on the slice, as a trainer with `verification_reward` 10 calls it.
fn library_metrics(data: &Path, max_new_tokens: usize, batch_size: usize) -> Vec<(String, f64)> {
    let dir = repo().join(MODEL);
    let (config, model) = load_model::<Flex>(&dir, &Default::default()).unwrap();
    let tokenizer = ChatTokenizer::from_dir(&dir, None).unwrap();
    let data = dataset::load(data, None, false).unwrap();
    let tokenized = data
        .examples
        .iter()
        .map(|example| {
            tokenize(&tokenizer, &example, &TokenizeOptions::default())
                .unwrap()
                .tokenized
        })
        .collect();
    let tokenized = TokenizedSet::new(tokenized).unwrap();
    let prompts = Prompts::from_examples(&data.examples, &tokenized);
    assert_eq!(prompts.rows.len(), ROWS);
    let rewards = Rewards::verifiers(Shaping {
        verification_reward: 10.0,
        ..Shaping::unscaled()
    });
    let pad_id = tokenizer
        .pad_id()
        .or_else(|| tokenizer.eos_id().ok())
        .unwrap();
    let stops = Stops::of_model(&dir, &config, &tokenizer, pad_id);
    evaluate_policy(
        &model,
        &prompts,
        &rewards,
        &tokenizer,
        &stops,
        max_new_tokens,
        batch_size,
    )
    .unwrap()
}

#[test]
fn eval_is_the_trainers_evaluation_with_its_rows_written_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let rows_path = dir.path().join("rows.jsonl");
    let output = temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "32",
        "--batch-size",
        "5",
        "--json",
        "--output",
        text(&rows_path),
    ]);
    let summary = summary(&output);
    for key in [
        "model",
        "data",
        "rows",
        "skipped",
        "accuracy",
        "reward",
        "verifiers",
        "ifeval",
        "metrics",
        "generation",
        "completion_tokens",
        "seconds",
        "generation_seconds",
        "tokens_per_second",
    ] {
        assert!(summary.get(key).is_some(), "no `{key}` in {summary}");
    }
    assert_eq!(summary["rows"], ROWS);
    assert_eq!(summary["skipped"], 0);
    assert_eq!(summary["ifeval"], Value::Null, "no IFEval rows here");
    assert_eq!(summary["generation"]["max_new_tokens"], 32);
    assert_eq!(summary["generation"]["decoding"]["do_sample"], false);
    let accuracy = summary["accuracy"].as_f64().unwrap();
    assert!(close(accuracy, 7.0 / ROWS as f64), "accuracy {accuracy}");
    assert!(summary["tokens_per_second"].as_f64().unwrap() > 0.0);

    // The same numbers as the trainers' held-out evaluation of this model on these rows.
    let expected = library_metrics(&data, 32, 5);
    let metrics = summary["metrics"].as_object().unwrap();
    assert_eq!(metrics.len(), expected.len(), "{metrics:?} vs {expected:?}");
    for (name, value) in &expected {
        let got = metrics[name].as_f64().unwrap();
        assert!(
            close(got, *value),
            "{name}: temper eval {got}, evaluate_policy {value}"
        );
    }
    let verifier = &summary["verifiers"]["ifeval_old"];
    assert_eq!(verifier["rows"], ROWS);
    assert!(close(verifier["accuracy"].as_f64().unwrap(), accuracy));

    // One line per row, in order, and the summary is what they add up to.
    let rows = read_rows(&rows_path);
    assert_eq!(rows.len(), ROWS);
    let mut correct = 0;
    let (mut reward, mut tokens) = (0.0, 0);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i);
        assert_eq!(row["dataset"], "ifeval_old");
        assert!(row["messages"].is_array() && row["ground_truth"].is_string());
        assert!(row["response"].is_string());
        assert_eq!(row["finish_reason"], "stop");
        assert_eq!(row["rewards"]["ifeval_old"], row["reward"]);
        correct += usize::from(row["correct"].as_bool().unwrap());
        reward += row["reward"].as_f64().unwrap();
        tokens += row["completion_tokens"].as_u64().unwrap();
    }
    assert!(close(correct as f64 / ROWS as f64, accuracy));
    assert!(close(
        reward / ROWS as f64,
        summary["reward"].as_f64().unwrap()
    ));
    assert_eq!(summary["completion_tokens"], tokens);

    // `temper verify` reads the rows back and finds the same accuracy.
    let verified = json_lines(&temper(&["verify", "--data", text(&rows_path), "--json"]));
    let verified = &verified.last().unwrap()["summary"];
    assert_eq!(verified["invalid"], 0);
    let again = verified["verifiers"]["ifeval_old"]["accuracy"]
        .as_f64()
        .unwrap();
    assert!(close(again, accuracy), "verify {again}, eval {accuracy}");
}

#[test]
fn greedy_results_do_not_depend_on_the_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let run = |batch: &str, rows: &Path| {
        summary(&temper(&[
            "eval",
            "--model",
            MODEL,
            "--data",
            text(&data),
            "--max-new-tokens",
            "32",
            "--batch-size",
            batch,
            "--json",
            "--output",
            text(rows),
        ]))
    };
    let (one, all) = (dir.path().join("one.jsonl"), dir.path().join("all.jsonl"));
    let by_one = run("1", &one);
    let together = run("24", &all);
    assert_eq!(by_one["accuracy"], together["accuracy"]);
    let responses = |path: &Path| -> Vec<Value> {
        read_rows(path)
            .into_iter()
            .map(|row| row["response"].clone())
            .collect()
    };
    assert_eq!(responses(&one), responses(&all));
}

#[test]
fn completions_cut_off_at_the_token_limit_are_length_finished() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let rows_path = dir.path().join("rows.jsonl");
    let summary = summary(&temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "4",
        "--json",
        "--output",
        text(&rows_path),
    ]));
    let rows = read_rows(&rows_path);
    let cut = rows
        .iter()
        .filter(|row| row["finish_reason"] == "length")
        .count();
    assert!(cut > 0);
    assert!(
        rows.iter()
            .all(|row| row["completion_tokens"].as_u64() <= Some(4))
    );
    let ratio = summary["metrics"]["completions/clipped_ratio"]
        .as_f64()
        .unwrap();
    assert!(close(ratio, cut as f64 / ROWS as f64));
    // The limit is the trainers' `max_completion_length`.
    for (name, value) in library_metrics(&data, 4, 8) {
        let got = summary["metrics"][&name].as_f64().unwrap();
        assert!(
            close(got, value),
            "{name}: temper eval {got}, evaluate_policy {value}"
        );
    }
}

/// The slice's constraints as IFEval rows (`fixtures/task/README.md` maps each to its IFEval
/// instruction).
fn ifeval_rows(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(PROMPTS)).unwrap();
    let mut lines = Vec::new();
    for (key, line) in text.lines().take(ROWS).enumerate() {
        let row: Value = serde_json::from_str(line).unwrap();
        let truth: Value = serde_json::from_str(row["ground_truth"].as_str().unwrap()).unwrap();
        let (id, kwargs) = match row["constraint"].as_str().unwrap() {
            "end_phrase" => (
                "startend:end_checker",
                json!({"end_phrase": truth["end_phrase"]}),
            ),
            "quotation" => ("startend:quotation", json!({})),
            "lowercase" => ("change_case:english_lowercase", json!({})),
            "postscript" => (
                "detectable_content:postscript",
                json!({"postscript_marker": truth["postscript_marker"]}),
            ),
            "no_comma" => ("punctuation:no_comma", json!({})),
            "title" => ("detectable_format:title", json!({})),
            other => panic!("constraint {other}"),
        };
        let prompt = &row["messages"][0]["content"];
        lines.push(
            json!({"key": key, "prompt": prompt, "instruction_id_list": [id], "kwargs": [kwargs]})
                .to_string(),
        );
    }
    let path = dir.join("ifeval.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn ifeval_rows_get_the_four_official_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let data = ifeval_rows(dir.path());
    let rows_path = dir.path().join("rows.jsonl");
    let summary = summary(&temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "32",
        "--json",
        "--output",
        text(&rows_path),
    ]));
    assert_eq!(summary["verifiers"]["ifeval"]["rows"], ROWS);
    let ifeval = &summary["ifeval"];
    assert_eq!(ifeval["prompts"], ROWS);
    assert_eq!(ifeval["instructions"], ROWS);
    let rows = read_rows(&rows_path);
    assert_eq!(rows.len(), ROWS);
    let followed = rows
        .iter()
        .filter(|row| row["ifeval"]["follow_all_strict"] == true)
        .count();
    let strict = ifeval["prompt_level_strict"].as_f64().unwrap();
    assert!(close(strict, followed as f64 / ROWS as f64));
    assert!(strict > 0.0, "the base model follows some of them");
    // The rows are IFEval's input_response_data: `temper verify` reports the same accuracies.
    let verified = json_lines(&temper(&["verify", "--data", text(&rows_path), "--json"]));
    let verified = &verified.last().unwrap()["summary"]["ifeval"];
    for key in [
        "prompt_level_strict",
        "prompt_level_loose",
        "instruction_level_strict",
        "instruction_level_loose",
    ] {
        assert_eq!(verified[key], ifeval[key], "{key}");
    }
}

#[test]
fn the_text_summary_names_accuracy_and_speed() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let output = temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "32",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("ifeval_old"), "{stdout}");
    assert!(stdout.contains("accuracy 0.2917"), "{stdout}");
    assert!(stdout.contains("tokens/s"), "{stdout}");
    // A closed stdout ends the command quietly.
    let closed = temper_into_closed_pipe(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "8",
    ]);
    assert_eq!(closed.status.code(), Some(0));
}

/// Runs `temper eval` on `data` (extra arguments after it) and returns the exit code and the
/// stderr lines.
fn failing(data: &str, extra: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut args = vec!["eval", "--model", MODEL, "--data", data, "--json"];
    args.extend_from_slice(extra);
    let output = temper(&args);
    assert!(output.stdout.is_empty(), "nothing on stdout when it fails");
    let stderr = String::from_utf8(output.stderr).unwrap();
    (
        output.status.code(),
        stderr.lines().map(str::to_string).collect(),
    )
}

#[test]
fn bad_input_exits_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (code, lines) = failing("no/such/file.jsonl", &[]);
    assert_eq!((code, lines.len()), (Some(2), 1), "{lines:?}");
    assert!(lines[0].starts_with("error: no/such/file.jsonl"));

    let (code, lines) = failing(PROMPTS, &["--batch-size", "0"]);
    assert_eq!((code, lines.len()), (Some(2), 1), "{lines:?}");
    assert!(lines[0].contains("--batch-size"));

    // TRL prompt rows that name no verifier.
    let unverified = write("unverified.jsonl", "{\"prompt\": \"What is 2 + 2?\"}\n");
    let (code, lines) = failing(&unverified, &[]);
    assert_eq!((code, lines.len()), (Some(1), 1), "{lines:?}");
    assert!(lines[0].contains("record 0") && lines[0].contains("names no verifier"));

    let rows = "{\"messages\": [{\"role\": \"user\", \"content\": \"2 + 2?\"}], \"ground_truth\": \"4\", \"dataset\": \"nope\"}\n\
                {\"messages\": [{\"role\": \"user\", \"content\": \"2 + 2?\"}], \"ground_truth\": \"4\", \"dataset\": \"gsm8k\"}\n";
    let unknown = write("unknown.jsonl", rows);
    let (code, lines) = failing(&unknown, &[]);
    assert_eq!((code, lines.len()), (Some(1), 1), "{lines:?}");
    assert!(lines[0].contains("no verifier is called `nope`"));
    // --skip-invalid evaluates the rest.
    let output = temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        &unknown,
        "--json",
        "--skip-invalid",
        "--max-new-tokens",
        "8",
    ]);
    let skipped = summary(&output);
    assert_eq!(
        (skipped["rows"].clone(), skipped["skipped"].clone()),
        (json!(1), json!(1))
    );

    // A ground truth its verifier cannot read is found before anything is generated.
    let bad_truth = write(
        "bad_truth.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"ground_truth\": \"not a dict\", \"dataset\": \"ifeval_old\"}\n",
    );
    let (code, lines) = failing(&bad_truth, &[]);
    assert_eq!((code, lines.len()), (Some(1), 1), "{lines:?}");
    assert!(lines[0].contains("ifeval_old"));

    let (code, lines) = failing("fixtures/task/sft_eval.jsonl", &[]);
    assert_eq!((code, lines.len()), (Some(1), 1), "{lines:?}");

    let (code, lines) = failing(PROMPTS, &["--temperature", "-1"]);
    assert_eq!((code, lines.len()), (Some(1), 1), "{lines:?}");
}

/// `temper grpo` with no steps evaluates the initial model on its `eval_data`: its `eval_*`
/// metrics are `temper eval`'s, at the same limit and batch size.
#[test]
fn a_trainer_run_logs_the_same_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let run = dir.path().join("run");
    let trained = summary(&temper(&[
        "grpo",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--output",
        text(&run),
        "--max-steps",
        "0",
        "--eval-data",
        text(&data),
        "--max-completion-length",
        "12",
        "--per-device-eval-batch-size",
        "5",
        "--quiet",
        "--json",
    ]));
    let evaluated = summary(&temper(&[
        "eval",
        "--model",
        MODEL,
        "--data",
        text(&data),
        "--max-new-tokens",
        "12",
        "--batch-size",
        "5",
        "--json",
    ]));
    let logged = trained["eval"].as_object().unwrap();
    let metrics = evaluated["metrics"].as_object().unwrap();
    assert_eq!(logged.len(), metrics.len(), "{logged:?} vs {metrics:?}");
    for (name, value) in metrics {
        assert_eq!(logged[&format!("eval_{name}")], *value, "{name}");
    }
    assert!(metrics["completions/clipped_ratio"].as_f64().unwrap() > 0.0);
}

/// `--temperature` samples, and a seed fixes the samples.
#[test]
fn sampled_evaluation_is_fixed_by_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let run = |seed: &str, rows: &Path| {
        summary(&temper(&[
            "eval",
            "--model",
            MODEL,
            "--data",
            text(&data),
            "--max-new-tokens",
            "16",
            "--temperature",
            "1.0",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
            "--output",
            text(rows),
        ]))
    };
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let first = run("3", &a);
    let again = run("3", &b);
    assert_eq!(first["generation"]["decoding"]["do_sample"], true);
    assert_eq!(first["metrics"], again["metrics"]);
    assert_eq!(read_rows(&a), read_rows(&b));
}

/// The example: a file of `problem` and `answer` columns becomes verifiable rows
/// through `--columns` and `--verifier`; without a verifier its rows are refused.
#[test]
fn mapped_columns_and_a_named_verifier_make_verifiable_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("problems.jsonl");
    std::fs::write(
        &data,
        "{\"problem\": \"What is 2 + 3?\", \"answer\": \"5\"}\n{\"problem\": \"What is 4 + 4?\", \"answer\": \"8\"}\n",
    )
    .unwrap();
    let columns = ["--columns", "prompt=problem,ground_truth=answer"];
    let mut args = vec!["--max-new-tokens", "8", "--verifier", "gsm8k"];
    args.extend_from_slice(&columns);
    let mut full = vec!["eval", "--model", MODEL, "--data", text(&data), "--json"];
    full.extend_from_slice(&args);
    let result = summary(&temper(&full));
    assert_eq!(result["verifiers"]["gsm8k"]["rows"], 2, "{result}");
    let (code, lines) = failing(text(&data), &columns);
    assert_eq!(code, Some(1));
    assert!(lines[0].contains("names no verifier"), "{lines:?}");
}

/// `--output` naming the `--data` file is refused before anything is written, and an unknown
/// `--verifier` is one usage error, not one per row.
#[test]
fn the_data_file_is_never_the_output_and_unknown_verifiers_are_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let before = std::fs::read(&data).unwrap();
    let (code, lines) = failing(text(&data), &["--output", text(&data)]);
    assert_eq!(code, Some(2));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("is the --data file"), "{lines:?}");
    assert_eq!(
        std::fs::read(&data).unwrap(),
        before,
        "the data file is untouched"
    );
    let (code, lines) = failing(text(&data), &["--verifier", "nope"]);
    assert_eq!(code, Some(2));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("no verifier is called `nope`"),
        "{lines:?}"
    );
}

/// open-instruct `ifeval` RLVR rows get IFEval's four accuracies from their ground truth's
/// instructions: the same as the equivalent google/IFEval rows.
#[test]
fn open_instruct_ifeval_rows_get_the_four_official_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let ifeval = ifeval_rows(dir.path());
    let rows: Vec<String> = std::fs::read_to_string(&ifeval)
        .unwrap()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let truth =
                json!({"instruction_id": row["instruction_id_list"], "kwargs": row["kwargs"]});
            json!({"messages": [{"role": "user", "content": row["prompt"]}],
                   "ground_truth": truth.to_string(), "dataset": "ifeval"})
            .to_string()
        })
        .collect();
    let rlvr = dir.path().join("rlvr.jsonl");
    std::fs::write(&rlvr, rows.join("\n") + "\n").unwrap();
    let run = |data: &Path| {
        summary(&temper(&[
            "eval",
            "--model",
            MODEL,
            "--data",
            text(data),
            "--max-new-tokens",
            "32",
            "--json",
        ]))
    };
    let (from_ifeval, from_rlvr) = (run(&ifeval), run(&rlvr));
    assert_eq!(from_rlvr["ifeval"]["prompts"], ROWS, "{from_rlvr}");
    for key in [
        "prompt_level_strict",
        "prompt_level_loose",
        "instruction_level_strict",
        "instruction_level_loose",
    ] {
        assert_eq!(
            from_rlvr["ifeval"][key], from_ifeval["ifeval"][key],
            "{key}"
        );
    }
}
