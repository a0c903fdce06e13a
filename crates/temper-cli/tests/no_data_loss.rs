//! Commands that once destroyed data or ran on mismatched inputs with exit 0, each reproduced
//! as it was found: an export over its own checkpoint, two runs into one directory, a run or
//! `init` over its input, a resume of another run's checkpoint, and a tokenizer larger than
//! the model.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{repo, temper};

const MODEL: &str = "fixtures/models/qwen2";
const PAIRS: &str = "fixtures/data/trl_preference.jsonl";
const SFT: &str = "fixtures/data/alpaca.jsonl";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

/// A copy of the bundled model in `to`.
fn copy_model(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(repo().join(MODEL)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to.to_path_buf()
}

/// Every file of `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn train(command: &str, model: &Path, data: &str, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--model",
        model.to_str().unwrap(),
        "--data",
        data,
        "--output",
        output.to_str().unwrap(),
        "--quiet",
        "--per-device-train-batch-size",
        "2",
    ];
    args.extend_from_slice(extra);
    temper(&args)
}

#[test]
fn export_refuses_an_output_that_is_contains_or_lies_inside_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = copy_model(&dir.path().join("run/checkpoint-3"));
    let before = snapshot(&checkpoint);
    let export = |output: &Path| {
        temper(&[
            "export",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
    };
    let spellings = [
        checkpoint.clone(),
        checkpoint.join("../checkpoint-3"),
        dir.path().join("run"),
        checkpoint.join("exported"),
    ];
    for output in spellings {
        let run = export(&output);
        assert_eq!(
            code(&run),
            Some(2),
            "{}: {}",
            output.display(),
            stderr(&run)
        );
        assert!(stderr(&run).contains("checkpoint"), "{}", stderr(&run));
        assert_eq!(snapshot(&checkpoint), before, "{}", output.display());
    }
    // Elsewhere it exports, whole.
    let out = dir.path().join("exported");
    let run = export(&out);
    assert_eq!(code(&run), Some(0), "{}", stderr(&run));
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(checkpoint.join("model.safetensors")).unwrap()
    );
    assert!(!out.join(".export.partial").exists());
}

#[test]
fn a_second_run_into_a_directory_in_use_exits_2_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // The lock a running `temper` holds, taken here by this process.
    let mut lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out.join(".temper.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    writeln!(lock, "{}", std::process::id()).unwrap();
    let model = repo().join(MODEL);
    let run = train("sft", &model, SFT, &out, &["--max-steps", "1"]);
    assert_eq!(code(&run), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&run)
    );
    assert!(!out.join("metrics.jsonl").exists());
    drop(lock);
    let run = train("sft", &model, SFT, &out, &["--max-steps", "1"]);
    assert_eq!(code(&run), Some(0), "{}", stderr(&run));
}

#[test]
fn a_run_never_writes_over_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(&dir.path().join("model"));
    let before = snapshot(&model);
    for output in [model.clone(), model.join("../model")] {
        let run = train("sft", &model, SFT, &output, &["--max-steps", "1"]);
        assert_eq!(code(&run), Some(2), "{}", stderr(&run));
        assert!(stderr(&run).contains("is the model"), "{}", stderr(&run));
        assert_eq!(snapshot(&model), before);
    }
}

#[test]
fn init_refuses_an_existing_model_and_a_tokenizer_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("fixtures/gen/task_base_config.json");
    let tokenizer = repo().join("fixtures/tokenizer");
    let init = |tokenizer: &Path, output: &Path| {
        temper(&[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
    };
    let existing = copy_model(&dir.path().join("existing"));
    let before = snapshot(&existing);
    let run = init(&tokenizer, &existing);
    assert_eq!(code(&run), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("not empty"), "{}", stderr(&run));
    assert_eq!(snapshot(&existing), before);

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for missing in [empty, dir.path().join("missing")] {
        let output = dir.path().join("new");
        let run = init(&missing, &output);
        assert_eq!(code(&run), Some(2), "{}", stderr(&run));
        assert!(
            stderr(&run).contains(missing.to_str().unwrap()),
            "{}",
            stderr(&run)
        );
        assert!(!output.exists());
    }

    let output = dir.path().join("made");
    let run = init(&tokenizer, &output);
    assert_eq!(code(&run), Some(0), "{}", stderr(&run));
    let names: Vec<String> = snapshot(&output).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"model.safetensors".to_string()),
        "{names:?}"
    );
    let hidden: Vec<&String> = names.iter().filter(|n| n.starts_with('.')).collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(std::fs::read_dir(&output).unwrap().count(), names.len());
}

#[test]
fn resuming_checks_the_trainer_and_model_and_sets_later_checkpoints_aside() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join(MODEL);
    let out = dir.path().join("run");
    let run = train(
        "dpo",
        &model,
        PAIRS,
        &out,
        &["--max-steps", "2", "--save-steps", "1"],
    );
    assert_eq!(code(&run), Some(0), "{}", stderr(&run));
    let first = out.join("checkpoint-1");
    let resume = [
        "--max-steps",
        "2",
        "--resume-from-checkpoint",
        first.to_str().unwrap(),
    ];

    let run = train("sft", &model, SFT, &out, &resume);
    assert_eq!(code(&run), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("`temper dpo`"), "{}", stderr(&run));

    // The same architecture with another setting is another model.
    let other = copy_model(&dir.path().join("other"));
    let config = std::fs::read_to_string(other.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["rms_norm_eps"] = serde_json::json!(1e-3);
    std::fs::write(other.join("config.json"), config.to_string()).unwrap();
    let run = train("dpo", &other, PAIRS, &out, &resume);
    assert_eq!(code(&run), Some(1), "{}", stderr(&run));
    let error = stderr(&run);
    assert!(
        error.contains("different model") && error.contains("other"),
        "{error}"
    );

    let abandoned = std::fs::read(out.join("checkpoint-2/model.safetensors")).unwrap();
    let run = train("dpo", &model, PAIRS, &out, &resume);
    assert_eq!(code(&run), Some(0), "{}", stderr(&run));
    let aside: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("abandoned-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(aside[0].join("checkpoint-2/model.safetensors")).unwrap(),
        abandoned
    );
    assert!(out.join("checkpoint-2/model.safetensors").is_file());
}

#[test]
fn a_tokenizer_larger_than_the_model_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(&dir.path().join("model"));
    let path = model.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let added = tokenizer["added_tokens"].as_array_mut().unwrap();
    for id in 2048..2051 {
        added.push(serde_json::json!({
            "id": id, "content": format!("<|extra_{id}|>"), "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true
        }));
    }
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    for command in ["sft", "dpo"] {
        let data = if command == "sft" { SFT } else { PAIRS };
        let out = dir.path().join(command);
        let run = train(command, &model, data, &out, &["--max-steps", "1"]);
        assert_eq!(code(&run), Some(2), "{command}: {}", stderr(&run));
        assert!(
            stderr(&run)
                .contains("the tokenizer has 2051 tokens but the model's vocab_size is 2048"),
            "{}",
            stderr(&run)
        );
    }
}

#[test]
fn init_refuses_a_model_too_large_to_hold_before_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = repo().join("fixtures/tokenizer");
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("fixtures/gen/task_base_config.json")).unwrap(),
    )
    .unwrap();
    // A billion layers: past any model (exit 1). A thousand layers 8192 wide: terabytes of f32,
    // more than any machine this runs on has (exit 2). Both refused in milliseconds.
    for (layers, hidden, expected, says) in [
        (1_000_000_000u64, None, 1, "more than any model"),
        (1_000, Some(8192u64), 2, "GB available"),
    ] {
        let mut config = base.clone();
        config["num_hidden_layers"] = layers.into();
        if let Some(hidden) = hidden {
            config["hidden_size"] = hidden.into();
            config["intermediate_size"] = (4 * hidden).into();
        }
        let path = dir.path().join(format!("config-{layers}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let output = dir.path().join(format!("out-{layers}"));
        let run = temper(&[
            "init",
            "--config",
            path.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(code(&run), Some(expected), "{}", stderr(&run));
        assert!(stderr(&run).contains(says), "{}", stderr(&run));
        assert!(!output.exists());
    }
}
