//! `temper score`, `temper generate` and `temper chat` on the bundled tiny Qwen2 checkpoint
//! (fixtures/models/qwen2, which carries the bundled tokenizer): output shapes, determinism,
//! agreement with the library, exit codes.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{json_lines, repo, temper};

const MODEL: &str = "fixtures/models/qwen2";

#[test]
fn score_prints_one_object_per_example_in_order() {
    let pairs = temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/data/trl_preference.jsonl",
        "--json",
        "--batch-size",
        "2",
    ]);
    assert_eq!(
        pairs.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pairs.stderr)
    );
    let rows = json_lines(&pairs);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i);
        assert!(row["chosen_logp"].as_f64().unwrap() < 0.0);
        assert!(row["rejected_tokens"].as_u64().unwrap() > 0);
    }
    // Batching does not change the numbers.
    let one_by_one = json_lines(&temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/data/trl_preference.jsonl",
        "--json",
        "--batch-size",
        "1",
    ]));
    for (a, b) in rows.iter().zip(&one_by_one) {
        let (x, y) = (
            a["chosen_logp"].as_f64().unwrap(),
            b["chosen_logp"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-3, "{x} vs {y}");
    }
    let sft = json_lines(&temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/data/alpaca.jsonl",
        "--json",
    ]));
    assert_eq!(sft.len(), 4);
    assert!(
        sft.iter()
            .all(|r| r["logp"].as_f64().unwrap() < 0.0 && r["tokens"].as_u64().unwrap() > 0)
    );
}

#[test]
fn generate_is_greedy_at_temperature_zero_seeded_otherwise_and_stops_at_stop_strings() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            MODEL,
            "--prompt",
            "Hello there",
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = temper(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        json_lines(&output).remove(0)
    };
    let greedy = run(&["--max-new-tokens", "6"]);
    assert_eq!(greedy["tokens"].as_array().unwrap().len(), 6);
    assert!(greedy["prompt_tokens"].as_u64().unwrap() > 0 && greedy["text"].is_string());
    assert_eq!(run(&["--max-new-tokens", "6"]), greedy);
    let sampled = run(&[
        "--max-new-tokens",
        "6",
        "--temperature",
        "1.0",
        "--seed",
        "5",
    ]);
    assert_eq!(
        run(&[
            "--max-new-tokens",
            "6",
            "--temperature",
            "1.0",
            "--seed",
            "5"
        ]),
        sampled
    );
    let chat = run(&["--max-new-tokens", "6", "--chat"]);
    assert!(
        chat["prompt_tokens"].as_u64().unwrap() > greedy["prompt_tokens"].as_u64().unwrap(),
        "the template adds tokens"
    );

    // A stop string that never appears changes nothing; one from the greedy text stops early
    // and is kept.
    let longer = run(&["--max-new-tokens", "12"]);
    assert_eq!(
        run(&["--max-new-tokens", "12", "--stop", "never-generated"]),
        longer
    );
    let text = longer["text"].as_str().unwrap().to_string();
    let stop: String = text.chars().take(3).collect();
    assert!(
        !stop.trim().is_empty(),
        "greedy text starts with something: {text:?}"
    );
    let early = run(&["--max-new-tokens", "12", "--stop", &stop]);
    assert!(early["tokens"].as_array().unwrap().len() < 12, "{early}");
    assert!(early["text"].as_str().unwrap().contains(&stop));
}

#[test]
fn chat_answers_each_line_and_quits_on_an_empty_one() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_temper"))
        .args(["chat", "--model", MODEL, "--max-new-tokens", "4"])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi\nand again\n\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        2,
        "one reply per line"
    );
}

#[test]
fn bad_models_and_data_are_one_line_errors() {
    let missing = temper(&[
        "generate",
        "--model",
        "fixtures/models/nope",
        "--prompt",
        "x",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let bad_data = temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/bad/missing_field.jsonl",
    ]);
    assert_eq!(
        bad_data.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad_data.stderr)
    );
    let prompts = temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/data/trl_prompt_only.jsonl",
    ]);
    assert_eq!(prompts.status.code(), Some(2));
}

/// Half precision is for the CUDA build; the CPU build says so and exits 2.
#[cfg(not(feature = "cuda"))]
#[test]
fn half_precision_on_the_cpu_build_is_a_usage_error() {
    let output = temper(&[
        "generate", "--model", MODEL, "--prompt", "Hi", "--dtype", "bf16",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--dtype bf16") && stderr.contains("cuda"),
        "{stderr}"
    );
}

/// Sampling settings transformers refuses were once accepted and sampled with.
#[test]
fn sampling_settings_transformers_refuses_are_errors_naming_the_flag() {
    let cases = [
        (["--temperature", "-1"], "--temperature: must be > 0"),
        (["--temperature", "nan"], "--temperature: must be > 0"),
        (["--top-p", "0"], "--top-p: must be in (0, 1]"),
        (["--top-p", "2"], "--top-p: must be in (0, 1]"),
        (
            ["--repetition-penalty", "0"],
            "--repetition-penalty: must be > 0",
        ),
        (
            ["--repetition-penalty", "-1"],
            "--repetition-penalty: must be > 0",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["generate", "--model", MODEL, "--prompt", "hi"];
        args.extend_from_slice(&["--max-new-tokens", "2"]);
        args.extend_from_slice(&flags);
        let output = temper(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!("error: {expected}, not {}", flags[1].replace("nan", "NaN"))
        );
    }
}

/// `score` on an empty file, or with `--batch-size 0`, once printed nothing and exited 0.
#[test]
fn score_refuses_an_empty_file_and_a_zero_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let output = temper(&["score", "--model", MODEL, "--data", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no records to score"));
    let output = temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        "fixtures/data/trl_preference.jsonl",
        "--batch-size",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--batch-size: must be at least 1"));
}

/// A prompt past the model's positions once ran until the kernel killed it (14.8k tokens:
/// 7.6 GB, 82 s); `score` had no limit at all.
#[test]
fn sequences_past_the_models_positions_are_refused_early() {
    // The bundled model has 128 positions.
    let long = "hello ".repeat(200);
    let output = temper(&[
        "generate",
        "--model",
        MODEL,
        "--prompt",
        &long,
        "--max-new-tokens",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("more than the model's max_position_embeddings (128)"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("long.jsonl");
    let record = serde_json::json!({"prompt": "hi", "completion": long});
    std::fs::write(&data, format!("{record}\n")).unwrap();
    let output = temper(&["score", "--model", MODEL, "--data", data.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(": record 0 is") && stderr.contains("(128)"),
        "{stderr}"
    );
}

/// `temper score` tokenises as the trainers and `temper data` do, with their options, and names
/// a record it cannot tokenise by file and record.
#[test]
fn score_takes_the_tokenisation_options() {
    let score = |extra: &[&str]| {
        let mut args = vec![
            "score",
            "--model",
            MODEL,
            "--data",
            "fixtures/data/alpaca.jsonl",
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = temper(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        json_lines(&output)
    };
    let tokens = |rows: &[serde_json::Value]| -> Vec<u64> {
        rows.iter().map(|r| r["tokens"].as_u64().unwrap()).collect()
    };
    let completion = tokens(&score(&[]));
    let every_token = tokens(&score(&["--loss-mask", "prompt"]));
    assert!(
        completion.iter().zip(&every_token).all(|(c, e)| c < e),
        "{completion:?} vs {every_token:?}"
    );
    let short = tokens(&score(&["--loss-mask", "prompt", "--max-length", "4"]));
    assert!(short.iter().all(|&t| t <= 3), "{short:?}");

    // The second record is far longer than `--max-length` keeps (over 1 MiB): refused by name.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("long.jsonl");
    let long = "word ".repeat(250_000);
    std::fs::write(
        &data,
        format!("{{\"text\": \"fine\"}}\n{{\"text\": \"{long}\"}}\n"),
    )
    .unwrap();
    let output = temper(&[
        "score",
        "--model",
        MODEL,
        "--data",
        data.to_str().unwrap(),
        "--max-length",
        "8",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let named = format!("error: {}: record 1: ", data.display());
    assert!(stderr.starts_with(&named), "{stderr}");
}
