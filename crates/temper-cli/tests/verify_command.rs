//! `temper verify` on the conformance fixtures and on bad rows: the reference's verdicts and
//! IFEval report, JSON-only stdout, one stderr line per bad row, exit codes.

mod common;

use common::{json_lines, repo, temper};
use serde_json::Value;

fn fixture_rows(name: &str) -> Vec<Value> {
    std::fs::read_to_string(repo().join("fixtures/verifiers").join(name))
        .expect("fixture")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect()
}

#[test]
fn ifeval_rows_give_the_official_report() {
    let output = temper(&[
        "verify",
        "--data",
        "fixtures/verifiers/ifeval.jsonl",
        "--json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let summary = &lines.last().expect("a summary")["summary"];
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("fixtures/verifiers/ifeval_report.json"))
            .expect("report"),
    )
    .expect("JSON");
    for key in [
        "prompts",
        "instructions",
        "prompt_level_strict",
        "instruction_level_strict",
        "prompt_level_loose",
        "instruction_level_loose",
    ] {
        assert_eq!(summary["ifeval"][key], expected[key], "{key}");
    }
    assert_eq!(lines.len(), 501);
    assert_eq!(lines[0]["verifier"], "ifeval_official");
}

#[test]
fn rlvr_rows_score_as_the_references() {
    for name in ["gsm8k.jsonl", "ifeval_old.jsonl", "rlvr_ifeval.jsonl"] {
        let output = temper(&[
            "verify",
            "--data",
            &format!("fixtures/verifiers/{name}"),
            "--json",
        ]);
        assert_eq!(output.status.code(), Some(0), "{name}");
        let lines = json_lines(&output);
        for (row, printed) in fixture_rows(name).iter().zip(&lines) {
            assert_eq!(
                printed["score"].as_f64(),
                row["score"].as_f64(),
                "{name}: {row}"
            );
            assert_eq!(
                printed["reward"].as_f64(),
                row["score"].as_f64().map(|s| s * 10.0),
                "{name}"
            );
        }
        assert!(lines.last().expect("summary")["summary"]["verifiers"].is_object());
    }
}

#[test]
fn bad_rows_are_reported_by_line_and_field() {
    let output = temper(&[
        "verify",
        "--data",
        "fixtures/bad/verify_rows.jsonl",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr.clone()).expect("UTF-8");
    for expected in [
        "fixtures/bad/verify_rows.jsonl:2: not JSON",
        "fixtures/bad/verify_rows.jsonl:3: field `dataset`: no verifier named `nope`",
        "fixtures/bad/verify_rows.jsonl:4: field `kwargs`: unknown IFEval instruction id `x:y`",
        "fixtures/bad/verify_rows.jsonl:5: field `response`: missing",
    ] {
        assert!(stderr.contains(expected), "{expected} not in\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), 4);
    let lines = json_lines(&output);
    assert_eq!(lines.last().expect("summary")["summary"]["invalid"], 4);

    let skipped = temper(&[
        "verify",
        "--data",
        "fixtures/bad/verify_rows.jsonl",
        "--skip-invalid",
        "--json",
    ]);
    assert_eq!(skipped.status.code(), Some(0));
    assert_eq!(json_lines(&skipped).len(), 2);
}

#[test]
fn shaping_flags_and_errors() {
    let output = temper(&["verify", "--data", "fixtures/verifiers/format.jsonl"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "format rows are not RLVR rows"
    );
    let missing = temper(&["verify", "--data", "fixtures/verifiers/no_such_file.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
    let usage = temper(&["verify"]);
    assert_eq!(usage.status.code(), Some(2));
    let scaled = temper(&[
        "verify",
        "--data",
        "fixtures/verifiers/gsm8k.jsonl",
        "--json",
        "--verification-reward",
        "1",
        "--non-stop-penalty=-1",
    ]);
    let first = &json_lines(&scaled)[0];
    assert_eq!(first["reward"], first["score"]);
    let human = temper(&["verify", "--data", "fixtures/verifiers/math.jsonl"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("mean score"));
}

/// A reader that stops reading (`| head -1`) once made these commands panic on the broken pipe.
#[test]
fn a_closed_output_pipe_ends_each_command_quietly() {
    let commands: [&[&str]; 3] = [
        &[
            "verify",
            "--data",
            "fixtures/verifiers/ifeval.jsonl",
            "--json",
        ],
        &["data", "check", "fixtures/data/alpaca.jsonl", "--json"],
        &[
            "data",
            "render",
            "fixtures/data/trl_preference.jsonl",
            "--tokenizer",
            "fixtures/tokenizer",
            "--json",
        ],
    ];
    for args in commands {
        let output = common::temper_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
