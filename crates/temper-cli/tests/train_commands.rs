//! `temper sft|dpo|kto|orpo|simpo` on the bundled tiny Qwen2 checkpoint: exact resume from a
//! checkpoint through the command, LoRA outputs, the NaN guard, evaluation only, the reference
//! cache, and errors that name the key or record without touching what a run wrote.

mod common;

use std::path::Path;
use std::process::Output;

use common::{json_lines, temper};
use serde_json::Value;

const MODEL: &str = "fixtures/models/qwen2";
const PAIRS: &str = "fixtures/data/trl_preference.jsonl";
const SFT: &str = "fixtures/data/alpaca.jsonl";
const PROMPTS: &str = "fixtures/parity/train/rlvr.jsonl";
const UNPAIRED: &str = "fixtures/parity/train/unpaired.jsonl";

fn ok(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `temper COMMAND` on the bundled model, quiet, with small-run defaults that `extra` may
/// replace.
fn train(command: &str, data: &str, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--model",
        MODEL,
        "--data",
        data,
        "--output",
        output.to_str().unwrap(),
        "--quiet",
    ];
    for (flag, value) in [
        ("--learning-rate", "5e-3"),
        ("--per-device-train-batch-size", "2"),
        ("--logging-steps", "1"),
    ] {
        if !extra.contains(&flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    args.extend_from_slice(extra);
    temper(&args)
}

fn metrics(output: &Path) -> String {
    std::fs::read_to_string(output.join("metrics.jsonl")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        } else if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        }
    }
}

/// Runs 6 steps straight (checkpoints every 3), then continues a copy of the run's step-3
/// checkpoint and its first `rows_before` metrics rows plus one row past the checkpoint (as a
/// run killed after saving it would be left; resuming drops that row), and checks the metrics
/// files are byte-identical. Returns the resumed run's directory (inside `dir`).
fn resume_matches(
    dir: &Path,
    command: &str,
    data: &str,
    extra: &[&str],
    rows_before: usize,
) -> std::path::PathBuf {
    let straight = dir.join("straight");
    let mut args = vec!["--max-steps", "6", "--save-steps", "3"];
    args.extend_from_slice(extra);
    ok(&train(command, data, &straight, &args));

    let resumed = dir.join("resumed");
    let checkpoint = resumed.join("checkpoint-3");
    copy_dir(&straight.join("checkpoint-3"), &checkpoint);
    let straight_metrics = metrics(&straight);
    let kept: Vec<&str> = straight_metrics.lines().take(rows_before + 1).collect();
    std::fs::write(resumed.join("metrics.jsonl"), kept.join("\n") + "\n").unwrap();
    args.extend_from_slice(&["--resume-from-checkpoint", checkpoint.to_str().unwrap()]);
    ok(&train(command, data, &resumed, &args));
    assert_eq!(metrics(&resumed), straight_metrics, "{command} {extra:?}");
    resumed
}

/// [`resume_matches`] with a row every step and a cosine schedule.
fn resume_matches_every_step(command: &str, data: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--lr-scheduler-type", "cosine"];
    args.extend_from_slice(extra);
    let resumed = resume_matches(dir.path(), command, data, &args, 3);
    assert_eq!(metrics(&resumed).lines().count(), 6);
}

/// GRPO with rounds used for two steps each and a KL term: the step-3 checkpoint falls inside
/// a round, so resuming needs the round it saved (completions, rewards, old and reference
/// log-probs) as well as the model. The prompts ask for lowercase answers, which the random
/// model's samples sometimes are: rewards vary within groups, so every step updates the model.
#[test]
fn grpo_resumed_inside_a_round_equals_the_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lowercase.jsonl");
    let row = |question: &str| {
        serde_json::json!({
            "messages": [{"role": "user", "content": question}],
            "ground_truth": "{\"func_name\": \"validate_lowercase\"}",
            "dataset": "ifeval_old",
        })
        .to_string()
    };
    std::fs::write(
        &data,
        format!("{}\n{}\n", row("Describe the sea."), row("What is a cat?")),
    )
    .unwrap();
    let data = data.to_str().unwrap();
    let args = [
        "--num-generations",
        "2",
        "--per-device-train-batch-size",
        "4",
        "--max-completion-length",
        "6",
        "--num-iterations",
        "2",
        "--beta",
        "0.04",
        "--eval-data",
        PROMPTS,
    ];
    let resumed = resume_matches(dir.path(), "grpo", data, &args, 3);
    assert!(
        dir.path()
            .join("straight/checkpoint-3/rollouts.json")
            .is_file()
    );
    // At a round's end (num_iterations 1) the next round is new, and `num_tokens` counts on.
    let boundary = tempfile::tempdir().unwrap();
    let mut at_boundary = args.to_vec();
    at_boundary[7] = "1";
    resume_matches(boundary.path(), "grpo", data, &at_boundary, 3);
    let rows = metrics(&resumed);
    let moved = rows
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|row| row["grad_norm"].as_f64().is_some_and(|g| g > 0.0))
        .count();
    assert_eq!(moved, 6, "every step updates the model: {rows}");
    let first: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    for key in [
        "reward",
        "reward_std",
        "kl",
        "entropy",
        "clip_ratio/region_mean",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    assert!(rows.contains("eval_accuracy"), "{rows}");
}

/// PPO with two passes over each round: the step-3 checkpoint falls inside a round and holds
/// the value model and its optimizer besides the policy.
#[test]
fn ppo_resumed_inside_a_round_equals_the_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--per-device-train-batch-size",
        "2",
        "--max-completion-length",
        "6",
        "--num-ppo-epochs",
        "2",
        "--eval-data",
        PROMPTS,
    ];
    let resumed = resume_matches(dir.path(), "ppo", PROMPTS, &args, 3);
    let checkpoint = dir.path().join("straight/checkpoint-3");
    assert!(checkpoint.join("rollouts.json").is_file());
    assert!(
        checkpoint
            .join("value_model/optimizer.safetensors")
            .is_file()
    );
    let rows = metrics(&resumed);
    let first: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    for key in [
        "objective/kl",
        "objective/scores",
        "loss/policy_avg",
        "loss/value_avg",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    assert!(rows.contains("eval_accuracy"), "{rows}");
}

/// A reward model trained by `temper rm` (here the TRL parity fixture's) as a reward source
/// beside the verifiers, for GRPO, and for PPO also as the value model's start; a causal LM is
/// refused as a reward model.
#[test]
fn a_reward_model_rewards_grpo_and_ppo() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "fixtures/models/train/policy";
    let reward = "fixtures/models/train/reward";
    for (command, extra) in [
        (
            "grpo",
            &[
                "--num-generations",
                "2",
                "--per-device-train-batch-size",
                "4",
            ][..],
        ),
        (
            "ppo",
            &["--per-device-train-batch-size", "2", "--save-steps", "1"][..],
        ),
    ] {
        let output = dir.path().join(command);
        let mut args = vec![
            command,
            "--model",
            policy,
            "--data",
            PROMPTS,
            "--output",
            output.to_str().unwrap(),
            "--quiet",
            "--reward-model",
            reward,
            "--max-steps",
            "2",
            "--max-completion-length",
            "4",
            "--logging-steps",
            "1",
        ];
        args.extend_from_slice(extra);
        ok(&temper(&args));
        let rows = metrics(&output);
        let first: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
        if command == "grpo" {
            for key in ["rewards/reward_model/mean", "rewards/ifeval_old/mean"] {
                assert!(first.get(key).is_some(), "{key} missing from {first}");
            }
        } else {
            assert!(first.get("objective/scores").is_some(), "{first}");
            assert!(
                output
                    .join("checkpoint-1/value_model/config.json")
                    .is_file()
            );
        }
    }
    let refused = temper(&[
        "grpo",
        "--model",
        policy,
        "--data",
        PROMPTS,
        "--output",
        dir.path().join("refused").to_str().unwrap(),
        "--reward-model",
        policy,
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a reward model"), "{stderr}");
}

#[test]
fn grpo_refuses_groups_that_do_not_divide_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let output = train(
        "grpo",
        PROMPTS,
        dir.path(),
        &[
            "--num-generations",
            "3",
            "--per-device-train-batch-size",
            "4",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("num_generations"), "{stderr}");
    let output = train("grpo", SFT, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("trains on rlvr data"), "{stderr}");

    let unknown = dir.path().join("unknown.jsonl");
    std::fs::write(
        &unknown,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"ground_truth\": \"1\", \"dataset\": \"nope\"}\n",
    )
    .unwrap();
    let output = train(
        "grpo",
        unknown.to_str().unwrap(),
        &dir.path().join("u"),
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("record 0: dataset: no verifier is called `nope`"),
        "{stderr}"
    );
}

#[test]
fn dpo_resumed_from_a_checkpoint_equals_the_straight_run() {
    resume_matches_every_step("dpo", PAIRS, &[]);
}

#[test]
fn lora_sft_with_dropout_resumes_exactly_across_a_logging_window() {
    // Rows every 2 steps: the checkpoint at step 3 carries step 3 into the row of step 4.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--logging-steps",
        "2",
        "--use-peft",
        "--lora-dropout",
        "0.2",
        "--lora-target-modules",
        "all-linear",
    ];
    let resumed = resume_matches(dir.path(), "sft", SFT, &args, 1);
    assert_eq!(metrics(&resumed).lines().count(), 3);
    let straight = dir.path().join("straight");
    // The final output is a PEFT adapter directory with the tokenizer.
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
    ] {
        assert!(resumed.join(file).is_file(), "{file}");
    }
    assert!(!resumed.join("model.safetensors").exists());

    // Exported, a checkpoint loses its training state; merged, it is a plain model whose
    // scores differ from the base model's.
    let checkpoint = straight.join("checkpoint-6");
    let adapter = dir.path().join("adapter");
    ok(&temper(&[
        "export",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--output",
        adapter.to_str().unwrap(),
    ]));
    assert!(adapter.join("adapter_model.safetensors").is_file());
    assert!(!adapter.join("optimizer.safetensors").exists());
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert!(
        config["base_model_name_or_path"]
            .as_str()
            .unwrap()
            .ends_with("qwen2")
    );
    let merged = dir.path().join("merged");
    ok(&temper(&[
        "export",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--output",
        merged.to_str().unwrap(),
        "--merge-lora",
    ]));
    assert!(merged.join("model.safetensors").is_file());
    let score = |model: &Path| {
        let run = temper(&[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--data",
            PAIRS,
            "--json",
        ]);
        ok(&run);
        json_lines(&run)
    };
    assert_ne!(score(&merged), score(&common::repo().join(MODEL)));
    // A full checkpoint has nothing to merge.
    let full = dir.path().join("full");
    ok(&train("sft", SFT, &full, &["--max-steps", "1"]));
    let refused = temper(&[
        "export",
        "--checkpoint",
        full.join("checkpoint-1").to_str().unwrap(),
        "--output",
        dir.path().join("x").to_str().unwrap(),
        "--merge-lora",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("not a LoRA checkpoint"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn orpo_simpo_and_reward_models_resume_exactly() {
    resume_matches_every_step("orpo", PAIRS, &[]);
    resume_matches_every_step("simpo", PAIRS, &["--cpo-alpha", "0.5"]);
    resume_matches_every_step("rm", PAIRS, &["--center-rewards-coefficient", "0.01"]);
}

/// KTO resumes exactly, logs TRL's `kl`, takes preference pairs (split in two), and its
/// unpaired data is refused by the SFT trainer rather than read as SFT.
#[test]
fn kto_resumes_exactly_and_unpaired_data_is_not_sft_data() {
    resume_matches_every_step("kto", UNPAIRED, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kto");
    ok(&train("kto", UNPAIRED, &out, &["--max-steps", "2"]));
    for line in metrics(&out).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        for key in ["loss", "kl", "rewards/chosen", "logps/rejected", "entropy"] {
            assert!(row.get(key).is_some(), "{key} in {row}");
        }
    }
    let paired = train(
        "kto",
        PAIRS,
        &dir.path().join("paired"),
        &["--max-steps", "1"],
    );
    ok(&paired);
    let sft = train(
        "sft",
        UNPAIRED,
        &dir.path().join("sft"),
        &["--max-steps", "1"],
    );
    assert_eq!(sft.status.code(), Some(1), "{}", stderr(&sft));
    assert!(
        stderr(&sft).contains("trains on sft data; this file holds unpaired records"),
        "{}",
        stderr(&sft)
    );
}

#[test]
fn a_reward_model_saves_as_sequence_classification_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rm");
    ok(&train(
        "rm",
        PAIRS,
        &out,
        &[
            "--max-steps",
            "3",
            "--eval-data",
            PAIRS,
            "--eval-steps",
            "2",
        ],
    ));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "Qwen2ForSequenceClassification");
    let rows: Vec<Value> = metrics(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows[0]["accuracy"].is_number() && rows[0]["margin"].is_number());
    assert!(rows.iter().any(|row| row["eval_accuracy"].is_number()));

    let plot = temper(&["plot", out.to_str().unwrap()]);
    ok(&plot);
    let files: Vec<String> = String::from_utf8_lossy(&plot.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert!(files.iter().any(|f| f.ends_with("loss.png")), "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{file}");
    }
    // A metrics file that is not JSON is a one-line error naming the line.
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"step\": 1, \"loss\": 0.5}\nnot json\n").unwrap();
    let plot = temper(&["plot", broken.to_str().unwrap()]);
    assert_eq!(plot.status.code(), Some(1));
    assert!(
        stderr(&plot).contains("broken.jsonl:2"),
        "{}",
        stderr(&plot)
    );
}

#[test]
fn merged_lora_output_is_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = train(
        "dpo",
        PAIRS,
        &out,
        &["--max-steps", "2", "--use-peft", "--merge-lora", "--json"],
    );
    ok(&run);
    let summary = &json_lines(&run)[0];
    assert_eq!(summary["steps"], 2);
    assert!(out.join("model.safetensors").is_file());
    assert!(!out.join("adapter_config.json").exists());
    // The merged model scores the data (it loads as any HF directory).
    ok(&temper(&[
        "score",
        "--model",
        out.to_str().unwrap(),
        "--data",
        PAIRS,
        "--json",
    ]));
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = train(
        "dpo",
        PAIRS,
        &out,
        &["--max-steps", "4", "--learning-rate", "1e30"],
    );
    assert_eq!(run.status.code(), Some(1));
    let error = stderr(&run);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains("is NaN") || error.contains("inf"), "{error}");
    assert!(error.contains("trl_preference.jsonl: record "), "{error}");
    let step: usize = error
        .split("step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The state before the failed update is saved, and every row logged before it is kept.
    assert!(
        out.join(format!("checkpoint-{}", step - 1)).is_dir(),
        "{error}"
    );
    assert_eq!(metrics(&out).lines().count(), step - 1);
}

#[test]
fn max_steps_zero_evaluates_the_initial_model_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = train(
        "dpo",
        PAIRS,
        &out,
        &["--max-steps", "0", "--eval-data", PAIRS, "--json"],
    );
    ok(&run);
    let summary = &json_lines(&run)[0];
    assert_eq!(summary["steps"], 0);
    assert_eq!(summary["final_model"], Value::Null);
    // Against itself as reference, the initial policy's DPO loss is ln 2.
    let loss = summary["eval"]["eval_loss"].as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-5, "{loss}");
    let rows: Vec<Value> = metrics(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["step"], 0);
    assert!(rows[0]["eval_rewards/margins"].is_number());
}

#[test]
fn the_reference_cache_is_reused_by_later_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let summary = |name: &str| {
        let run = train(
            "dpo",
            PAIRS,
            &dir.path().join(name),
            &[
                "--max-steps",
                "1",
                "--json",
                "--reference-cache-dir",
                cache.to_str().unwrap(),
            ],
        );
        ok(&run);
        json_lines(&run)[0].clone()
    };
    let first = summary("first");
    assert_eq!(first["reference"]["source"], "computed");
    let second = summary("second");
    assert_eq!(second["reference"]["source"], "cache");
    assert_eq!(second["reference"]["file"], first["reference"]["file"]);
    assert_eq!(second["train"], first["train"]);

    // Scoring the reference every step instead gives the same losses (step 2: after the
    // first update the policy is no longer its own reference).
    let two_steps = |name: &str, extra: &[&str]| {
        let mut args = vec!["--max-steps", "2", "--json"];
        args.extend_from_slice(extra);
        let run = train("dpo", PAIRS, &dir.path().join(name), &args);
        ok(&run);
        json_lines(&run)[0].clone()
    };
    let cached = two_steps("cached", &[]);
    let per_step = two_steps("per-step", &["--precompute-ref-log-probs", "false"]);
    assert_eq!(per_step["reference"]["source"], "per_step");
    let (a, b) = (
        per_step["train"]["loss"].as_f64().unwrap(),
        cached["train"]["loss"].as_f64().unwrap(),
    );
    assert!((b - std::f64::consts::LN_2).abs() > 1e-3, "{b}");
    assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("run.yaml");
    let cases = [
        (
            "learning_rate: 1.0e-3\nlerning_rate: 2\n",
            "lerning_rate: unknown key",
        ),
        ("beta: -1\n", "beta: must be"),
        ("loss_type: sigmod\n", "loss_type:"),
        (
            "simpo_gamma: 1\n",
            "simpo_gamma: not an option of `temper dpo`",
        ),
        ("backend: tpu\n", "backend:"),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let run = train("dpo", PAIRS, &out, &["--config", config.to_str().unwrap()]);
        assert_eq!(run.status.code(), Some(1), "{text}");
        let error = stderr(&run);
        assert!(
            error.starts_with(&format!("error: {expected}")),
            "{text}: {error}"
        );
        assert_eq!(error.lines().count(), 1);
    }
    // Values that are not finite numbers name their key; they once read as "unset" and ran
    // with the default, exit 0.
    for (name, text) in [
        ("run.yaml", "learning_rate: .nan\n"),
        ("run.yaml", "loss_weights: [1.0, .inf]\n"),
        ("run.toml", "learning_rate = inf\n"),
    ] {
        let config = dir.path().join(name);
        std::fs::write(&config, text).unwrap();
        let run = train("dpo", PAIRS, &out, &["--config", config.to_str().unwrap()]);
        assert_eq!(run.status.code(), Some(1), "{text}");
        let error = stderr(&run);
        assert!(error.contains("must be a finite number"), "{text}: {error}");
        assert_eq!(error.lines().count(), 1);
    }
    // As flags too, checked as the file's values are.
    for value in ["nan", "inf", "NaN"] {
        let run = train("dpo", PAIRS, &out, &["--learning-rate", value]);
        assert_eq!(run.status.code(), Some(1), "{value}");
        assert!(
            stderr(&run).starts_with("error: learning_rate: must be a finite number"),
            "{}",
            stderr(&run)
        );
    }
    // A negative number is a value, with or without `=`, and is checked as one.
    for flags in [
        ["--weight-decay", "-0.5"],
        ["--weight-decay=-0.5", "--max-steps=1"],
    ] {
        let run = train("dpo", PAIRS, &out, &flags);
        assert_eq!(run.status.code(), Some(1), "{flags:?}: {}", stderr(&run));
        assert!(
            stderr(&run).starts_with("error: weight_decay: must be"),
            "{}",
            stderr(&run)
        );
    }
    // A flag overrides the file.
    std::fs::write(&config, "beta: -1\nmax_steps: 1\n").unwrap();
    ok(&train(
        "dpo",
        PAIRS,
        &out,
        &["--config", config.to_str().unwrap(), "--beta", "0.5"],
    ));
}

#[test]
fn bad_data_names_the_record_and_an_earlier_run_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&train("dpo", PAIRS, &out, &["--max-steps", "1"]));
    let before = metrics(&out);

    // A new run into the same directory is refused; nothing of the first run changes.
    let again = train("dpo", PAIRS, &out, &["--max-steps", "1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("holds an earlier run"),
        "{}",
        stderr(&again)
    );
    assert_eq!(metrics(&out), before);

    let bad = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(common::repo().join(PAIRS)).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(
        &bad,
        format!("{first}\n{{\"prompt\": \"hi\", \"chosen\": \"a\"}}\n"),
    )
    .unwrap();
    let run = train(
        "dpo",
        bad.to_str().unwrap(),
        &dir.path().join("other"),
        &["--max-steps", "1"],
    );
    assert_eq!(run.status.code(), Some(1));
    let error = stderr(&run);
    assert!(
        error.contains("bad.jsonl:2") && error.contains("rejected"),
        "{error}"
    );
    assert!(!dir.path().join("other").join("metrics.jsonl").exists());
    // Skipping invalid records trains on the rest and reports them.
    let run = train(
        "dpo",
        bad.to_str().unwrap(),
        &dir.path().join("skipping"),
        &["--max-steps", "1", "--skip-invalid", "--json"],
    );
    ok(&run);
    let summary = &json_lines(&run)[0];
    assert_eq!(summary["skipped"], 1);
    assert_eq!(summary["train_examples"], 1);

    // A file that cannot be read at all (a Parquet file cut short) is exit 2, as `temper data
    // check` says of it; it was exit 1 here.
    let parquet =
        std::fs::read(common::repo().join("fixtures/data/trl_preference.parquet")).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &parquet[..300]).unwrap();
    let run = train(
        "dpo",
        cut.to_str().unwrap(),
        &dir.path().join("cut"),
        &["--max-steps", "1"],
    );
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let check = temper(&["data", "check", cut.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(2));
    // A missing file is an I/O error (exit 2); truncation that leaves no completion is a bad
    // record (exit 1).
    let run = train(
        "dpo",
        "no/such.jsonl",
        &dir.path().join("missing"),
        &["--max-steps", "1"],
    );
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let run = train(
        "dpo",
        PAIRS,
        &dir.path().join("short"),
        &["--max-steps", "1", "--max-length", "4"],
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("record 0: a completion is empty"),
        "{}",
        stderr(&run)
    );

    // Overwriting deletes the earlier run's checkpoints and metrics first.
    std::fs::create_dir(out.join("checkpoint-9")).unwrap();
    ok(&train(
        "dpo",
        PAIRS,
        &out,
        &[
            "--max-steps",
            "2",
            "--save-steps",
            "1",
            "--overwrite-output-dir",
        ],
    ));
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("checkpoint-"))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(metrics(&out).lines().count(), 2);
    // Resuming from the final checkpoint has nothing left to do and writes nothing.
    let before = metrics(&out);
    let last = out.join("checkpoint-2");
    ok(&train(
        "dpo",
        PAIRS,
        &out,
        &[
            "--max-steps",
            "2",
            "--resume-from-checkpoint",
            last.to_str().unwrap(),
        ],
    ));
    assert_eq!(metrics(&out), before);

    // SFT data for a preference trainer.
    let run = train("orpo", SFT, &dir.path().join("orpo"), &["--max-steps", "1"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("trains on preference data"));
}

/// `temper KIND --help` lists that trainer's keys only, each ending with its default there.
#[test]
fn each_trainers_help_shows_its_keys_and_their_defaults() {
    let help = |command: &str| {
        let output = temper(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8(output.stdout).unwrap()
    };
    let sft = help("sft");
    assert!(sft.contains("--loss-mask <LOSS_MASK>"), "{sft}");
    assert!(!sft.contains("--beta"), "{sft}");
    assert!(!sft.contains("--kl-coef"), "{sft}");
    assert!(sft.contains("Peak learning rate [default: 2e-5]"), "{sft}");
    assert!(sft.contains("[required]"), "{sft}");
    let ppo = help("ppo");
    assert!(ppo.contains("--kl-coef <KL_COEF>"), "{ppo}");
    assert!(!ppo.contains("--loss-mask"), "{ppo}");
    assert!(ppo.contains("in tokens [default: 53]"), "{ppo}");
    assert!(help("grpo").contains("in tokens [default: 512]"));
    // A hidden key is still refused by name, not by clap.
    let run = temper(&[
        "sft", "--beta", "0.1", "--model", "m", "--data", "d", "--output", "o",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        stderr(&run).trim(),
        "error: beta: not an option of `temper sft`"
    );
}

/// open-instruct's `dataset_mixer_list`: each file with a fraction (with a `.`) or a count of its
/// examples, in place of `data`; the counts are open-instruct's.
#[test]
fn dataset_mixer_list_takes_a_share_of_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, mixture: &str| {
        let out = dir.path().join(name);
        let output = temper(&[
            "sft",
            "--model",
            MODEL,
            "--dataset-mixer-list",
            mixture,
            "--output",
            out.to_str().unwrap(),
            "--max-steps",
            "1",
            "--quiet",
            "--json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{mixture}: {}",
            stderr(&output)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["train_examples"].as_u64().unwrap()
    };
    // alpaca.jsonl holds 4 examples, trl_text.jsonl 3.
    let text = "fixtures/data/trl_text.jsonl";
    assert_eq!(run("count", &format!("{SFT},3,{text},1.0")), 3 + 3);
    assert_eq!(run("fraction", &format!("{SFT},0.5")), 2);
    assert_eq!(run("upsampled", &format!("{SFT},2.5")), 10);
    // Not both, and pairs only.
    let both = train(
        "sft",
        SFT,
        &dir.path().join("both"),
        &["--dataset-mixer-list", "x,1"],
    );
    assert_eq!(both.status.code(), Some(1));
    assert!(
        stderr(&both).starts_with("error: dataset_mixer_list: replaces data"),
        "{}",
        stderr(&both)
    );
    let odd = temper(&[
        "sft",
        "--dataset-mixer-list",
        "a,1,b",
        "--output",
        "o",
        "--model",
        "m",
    ]);
    assert_eq!(odd.status.code(), Some(1));
    assert!(
        stderr(&odd).starts_with("error: dataset_mixer_list: 3 items"),
        "{}",
        stderr(&odd)
    );
}

/// `columns` maps a file's own field names onto a format's (LLaMA-Factory's column mapping).
#[test]
fn columns_rename_record_fields_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("qa.jsonl");
    std::fs::write(
        &data,
        "{\"question\": \"2 + 2 =\", \"response\": \" 4\"}\n{\"question\": \"3 + 3 =\", \"response\": \" 6\"}\n",
    )
    .unwrap();
    let data = data.to_str().unwrap();
    let unmapped = train("sft", data, &dir.path().join("a"), &["--max-steps", "1"]);
    assert_eq!(unmapped.status.code(), Some(1));
    assert!(
        stderr(&unmapped).contains("cannot tell the format"),
        "{}",
        stderr(&unmapped)
    );
    let extra = [
        "--max-steps",
        "1",
        "--columns",
        "prompt=question,completion=response",
        "--json",
    ];
    let mapped = train("sft", data, &dir.path().join("b"), &extra);
    assert_eq!(mapped.status.code(), Some(0), "{}", stderr(&mapped));
    let report: Value = serde_json::from_slice(&mapped.stdout).unwrap();
    assert_eq!(report["train_examples"], 2);
    let bad = train("sft", data, &dir.path().join("c"), &["--columns", "prompt"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).starts_with("error: columns: `prompt` is not field=column"),
        "{}",
        stderr(&bad)
    );
}
