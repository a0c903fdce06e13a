//! `temper data check --json` on every bundled fixture: exact counts, format and exit code.

mod common;

use common::{json_lines, temper};
use serde_json::Value;

/// (file, format, kind, records, examples)
const FIXTURES: &[(&str, &str, &str, u64, u64)] = &[
    ("fixtures/data/alpaca.jsonl", "alpaca", "sft", 4, 4),
    ("fixtures/data/alpaca_multiturn.json", "alpaca", "sft", 2, 2),
    (
        "fixtures/data/alpaca_preference.jsonl",
        "alpaca-preference",
        "preference",
        3,
        3,
    ),
    ("fixtures/data/sharegpt.json", "sharegpt", "sft", 3, 3),
    (
        "fixtures/data/sharegpt_preference.jsonl",
        "sharegpt-preference",
        "preference",
        3,
        3,
    ),
    (
        "fixtures/data/sharegpt_labelled.jsonl",
        "sharegpt-labelled",
        "preference",
        2,
        3,
    ),
    ("fixtures/data/trl_text.jsonl", "trl-text", "sft", 3, 3),
    (
        "fixtures/data/trl_messages.jsonl",
        "trl-messages",
        "sft",
        3,
        3,
    ),
    (
        "fixtures/data/trl_prompt_completion.jsonl",
        "trl-prompt-completion",
        "sft",
        3,
        3,
    ),
    (
        "fixtures/data/trl_prompt_completion_standard.jsonl",
        "trl-prompt-completion",
        "sft",
        3,
        3,
    ),
    (
        "fixtures/data/trl_preference.jsonl",
        "trl-preference",
        "preference",
        3,
        3,
    ),
    (
        "fixtures/data/trl_preference_standard.jsonl",
        "trl-preference",
        "preference",
        3,
        3,
    ),
    (
        "fixtures/data/trl_preference.parquet",
        "trl-preference",
        "preference",
        3,
        3,
    ),
    (
        "fixtures/data/trl_implicit_preference.jsonl",
        "trl-implicit-preference",
        "preference",
        3,
        3,
    ),
    (
        "fixtures/data/openinstruct_rlvr.jsonl",
        "openinstruct-rlvr",
        "rlvr",
        3,
        3,
    ),
    (
        "fixtures/data/trl_prompt_only.jsonl",
        "trl-prompt-only",
        "rlvr",
        3,
        3,
    ),
];

#[test]
fn every_fixture_checks_clean_with_exact_counts() {
    for with_tokenizer in [false, true] {
        for &(file, format, kind, records, examples) in FIXTURES {
            let mut args = vec!["data", "check", file, "--json"];
            if with_tokenizer {
                args.extend(["--tokenizer", "fixtures/tokenizer"]);
            }
            let output = temper(&args);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{file}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let reports = json_lines(&output);
            assert_eq!(reports.len(), 1);
            let report = &reports[0];
            assert_eq!(report["format"], format, "{file}");
            assert_eq!(report["detected"], true, "{file}");
            assert_eq!(report["kind"], kind, "{file}");
            assert_eq!(report["records"], records, "{file}");
            assert_eq!(report["examples"], examples, "{file}");
            assert_eq!(report["invalid"], 0, "{file}");
            assert_eq!(report["errors"], Value::Array(vec![]), "{file}");
            assert_eq!(report.get("tokens").is_some(), with_tokenizer, "{file}");
        }
    }
}

#[test]
fn invalid_records_exit_one_unless_skipped() {
    let output = temper(&[
        "data",
        "check",
        "fixtures/bad/roles_out_of_order.jsonl",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = &json_lines(&output)[0];
    assert_eq!(
        (
            report["records"].as_u64(),
            report["invalid"].as_u64(),
            report["examples"].as_u64()
        ),
        (Some(2), Some(2), Some(0))
    );
    let error = &report["errors"][0];
    assert_eq!(error["file"], "fixtures/bad/roles_out_of_order.jsonl");
    assert_eq!(error["line"], 1);
    assert_eq!(error["record"], 0);
    assert_eq!(error["field"], "messages[1].role");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 2, "one line per error: {stderr}");

    let skipped = temper(&[
        "data",
        "check",
        "fixtures/bad/roles_out_of_order.jsonl",
        "--json",
        "--skip-invalid",
    ]);
    assert_eq!(skipped.status.code(), Some(0));
}

#[test]
fn json_array_errors_have_no_line() {
    let output = temper(&["data", "check", "fixtures/bad/broken_array.json", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = &json_lines(&output)[0];
    assert_eq!(report["errors"][0]["line"], Value::Null);
    assert_eq!(report["errors"][0]["record"], 2);
    assert_eq!(report["records"], 3);
}

#[test]
fn ambiguous_input_names_the_candidates() {
    let output = temper(&["data", "check", "fixtures/bad/ambiguous.jsonl", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let objects = json_lines(&output);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["format"], Value::Null);
    assert!(
        objects[0]["error"]
            .as_str()
            .unwrap()
            .contains("alpaca, sharegpt")
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("fit several formats: alpaca, sharegpt"),
        "{stderr}"
    );
}

#[test]
fn empty_files_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let output = temper(&["data", "check", empty.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_lines(&output)[0]["records"], 0);
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(
        temper(&["data", "check", "fixtures/data/nope.jsonl"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        temper(&[
            "data",
            "check",
            "fixtures/data/trl_text.jsonl",
            "--format",
            "csv"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(temper(&["data", "frobnicate"]).status.code(), Some(2));
}

#[test]
fn render_marks_trained_spans_and_gives_labels() {
    let output = temper(&[
        "data",
        "render",
        "fixtures/data/trl_preference.jsonl",
        "--tokenizer",
        "fixtures/tokenizer",
        "--index",
        "2",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("<|im_start|>assistant\n⟦¡Hola!<|im_end|>\n⟧"),
        "{text}"
    );
    assert!(text.contains("⟦Hello!<|im_end|>\n⟧"), "{text}");

    let output = temper(&[
        "data",
        "render",
        "fixtures/data/trl_messages.jsonl",
        "--tokenizer",
        "fixtures/tokenizer",
        "--index",
        "2",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let rendered = &json_lines(&output)[0];
    let sequence = &rendered["examples"][0]["sequences"][0];
    let ids = sequence["input_ids"].as_array().unwrap();
    let labels = sequence["labels"].as_array().unwrap();
    assert_eq!(ids.len(), labels.len());
    assert!(labels.iter().zip(ids).all(|(l, id)| l == -100 || l == id));
    assert!(labels.iter().any(|l| l == -100) && labels.iter().any(|l| l != -100));
}

/// `data check --max-length` once passed what the trainers refuse: a limit of 0, and records
/// that truncation leaves with nothing to train.
#[test]
fn data_check_refuses_what_the_trainers_refuse() {
    let args = |limit: &'static str| {
        [
            "data",
            "check",
            "fixtures/data/trl_preference.jsonl",
            "--tokenizer",
            "fixtures/models/qwen2",
            "--max-length",
            limit,
        ]
    };
    let output = temper(&args("8"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("record 0: a completion is empty (after truncation to max_length?)"),
        "{stderr}"
    );
    let output = temper(&args("0"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be at least 1"));
}

#[test]
fn a_record_far_past_max_length_is_refused_before_it_is_tokenised() {
    // A 50 MB record with --max-length 64 once took 5 GB and 25 s to tokenise, to keep 64
    // tokens. Past 1 MiB and four times what max_length keeps, it is refused; below, truncated.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, words: usize| {
        let path = dir.path().join(name);
        let row = serde_json::json!({"prompt": "Say it.", "completion": "word ".repeat(words)});
        std::fs::write(&path, format!("{row}\n")).unwrap();
        path
    };
    let tokenizer = common::repo().join("fixtures/tokenizer");
    let check = |path: &std::path::Path| {
        temper(&[
            "data",
            "check",
            path.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--max-length",
            "16",
            "--json",
        ])
    };
    let huge = check(&write("huge.jsonl", 600_000));
    assert_eq!(huge.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&huge.stderr);
    assert!(
        stderr.contains("record 0") && stderr.contains("max_length"),
        "{stderr}"
    );

    let long = check(&write("long.jsonl", 40_000));
    assert_eq!(
        long.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );
    let summary = &json_lines(&long)[0];
    assert_eq!(summary["tokens"]["truncated_sequences"], 1, "{summary}");
}

/// `--columns` reads a file's own field names as a format's, as the trainers' `columns` does.
#[test]
fn columns_map_fields_for_check_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("qa.jsonl");
    std::fs::write(&data, "{\"question\": \"2 + 2 =\", \"response\": \" 4\"}\n").unwrap();
    let data = data.to_str().unwrap();
    let unmapped = temper(&["data", "check", data]);
    assert_eq!(unmapped.status.code(), Some(1));
    let mapped = temper(&[
        "data",
        "check",
        data,
        "--columns",
        "prompt=question,completion=response",
        "--json",
    ]);
    assert_eq!(
        mapped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&mapped.stderr)
    );
    let rows = json_lines(&mapped);
    assert_eq!(rows[0]["format"], "trl-prompt-completion");
    let bad = temper(&["data", "check", data, "--columns", "prompt"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .starts_with("error: --columns: `prompt` is not field=column"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `--dataset` reads LLaMA-Factory's `dataset_info.json`: each name's file with its entry's
/// format and columns, giving the counts of the fixture it renames.
#[test]
fn dataset_names_check_through_dataset_info() {
    let checked = temper(&[
        "data",
        "check",
        "--dataset",
        "instructions,chats,pairs",
        "--dataset-dir",
        "fixtures/data/dataset_info",
        "--json",
    ]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let rows = json_lines(&checked);
    let seen: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["format"].as_str().unwrap().to_string(),
                r["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("alpaca".to_string(), 4),
            ("sharegpt".to_string(), 3),
            ("alpaca-preference".to_string(), 3)
        ]
    );
    let unknown = temper(&[
        "data",
        "check",
        "--dataset",
        "nope",
        "--dataset-dir",
        "fixtures/data/dataset_info",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).starts_with(
            "error: fixtures/data/dataset_info/dataset_info.json: dataset `nope`: not defined here"
        ),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let rendered = temper(&[
        "data",
        "render",
        "--dataset",
        "chats",
        "--dataset-dir",
        "fixtures/data/dataset_info",
        "--tokenizer",
        "fixtures/tokenizer",
        "--index",
        "1",
    ]);
    assert_eq!(
        rendered.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("Is 97 prime?"));
}
