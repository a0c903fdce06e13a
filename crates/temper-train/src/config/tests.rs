//! The configuration's own tests; the CLI's flags are tested in temper-cli.

use super::*;
use crate::objective::Objective;
use crate::schedule::ScheduleKind;
use temper_objectives::preference::PreferenceLoss;

fn minimal() -> TrainConfig {
    TrainConfig {
        model: Some("m".into()),
        data: Some(vec!["d.jsonl".into()]),
        output_dir: Some("out".into()),
        ..TrainConfig::default()
    }
}

#[test]
fn defaults_are_trls() {
    let settings = minimal().resolve(TrainerKind::Dpo).unwrap();
    assert_eq!(settings.args.learning_rate, 1e-6);
    assert_eq!(settings.args.per_device_train_batch_size, 8);
    assert_eq!(settings.args.lr_scheduler_type, ScheduleKind::Linear);
    assert_eq!(settings.logging_steps, 10);
    assert_eq!(settings.save_steps, 500);
    let Method::Objective(Objective::Dpo(dpo)) = settings.method else {
        panic!("a DPO run")
    };
    assert_eq!(dpo.beta, 0.1);
    assert_eq!(dpo.losses, vec![(PreferenceLoss::Sigmoid, 1.0)]);
    assert_eq!(
        minimal()
            .resolve(TrainerKind::Sft)
            .unwrap()
            .args
            .learning_rate,
        2e-5
    );
}

fn from_file(name: &str, text: &str) -> Result<TrainConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let map = read_config_file(&path).map_err(|e| e.to_string())?;
    TrainConfig::from_map(map).map_err(|e| e.to_string())
}

#[test]
fn files_of_each_syntax_read_alike() {
    let yaml = from_file(
        "c.yaml",
        "learning_rate: 1e-6\nloss_type: [sigmoid, sft]\nuse_peft: true\n",
    )
    .unwrap();
    let toml = from_file(
        "c.toml",
        "learning_rate = 1e-6\nloss_type = [\"sigmoid\", \"sft\"]\nuse_peft = true\n",
    )
    .unwrap();
    assert_eq!(yaml, toml);
    assert_eq!(yaml.learning_rate, Some(1e-6));
}

/// The library once refused the `backend` key of the files the docs show (only the CLI
/// took it out); it takes the same files as the command.
#[test]
fn the_library_takes_the_commands_backend_key() {
    let text = "model: m\ndata: d.jsonl\noutput_dir: out\nbackend: cuda\n";
    let config = from_file("c.yaml", text).unwrap();
    assert_eq!(config.backend, Some(ComputeBackend::Cuda));
    assert!(config.resolve(TrainerKind::Sft).is_ok());
    let error = from_file("c.yaml", "backend: tpu\n").unwrap_err();
    assert!(error.starts_with("backend: "), "{error}");
}

#[test]
fn unknown_keys_and_wrong_kinds_are_named() {
    let error = from_file("c.yaml", "learning_rate: 1e-3\nlerning_rate: 2\n").unwrap_err();
    assert_eq!(error, "lerning_rate: unknown key");
    let error = from_file("c.toml", "bta = 0.1\n").unwrap_err();
    assert_eq!(error, "bta: unknown key");
    let error = from_file("c.yaml", "beta: high\n").unwrap_err();
    assert!(error.starts_with("beta: "), "{error}");
    let error = from_file("c.yaml", "- a list\n").unwrap_err();
    assert!(error.contains("not a table"), "{error}");
}

#[test]
fn out_of_range_and_foreign_keys_are_named() {
    let cases = [
        (
            TrainConfig {
                learning_rate: Some(-1.0),
                ..minimal()
            },
            "learning_rate",
        ),
        (
            TrainConfig {
                per_device_train_batch_size: Some(0),
                ..minimal()
            },
            "per_device_train_batch_size",
        ),
        (
            TrainConfig {
                loss_type: Some(vec![
                    LossType::Preference(PreferenceLoss::Ipo),
                    LossType::Grpo(GrpoLoss::Dapo),
                ]),
                ..minimal()
            },
            "loss_type",
        ),
        (
            TrainConfig {
                loss_weights: Some(vec![1.0, 2.0]),
                ..minimal()
            },
            "loss_weights",
        ),
        (
            TrainConfig {
                warmup_ratio: Some(1.5),
                ..minimal()
            },
            "warmup_ratio",
        ),
        (
            TrainConfig {
                lora_r: Some(8),
                ..minimal()
            },
            "lora_r",
        ),
        (
            TrainConfig {
                eval_steps: Some(5),
                ..minimal()
            },
            "eval_steps",
        ),
        (
            TrainConfig {
                simpo_gamma: Some(1.0),
                ..minimal()
            },
            "simpo_gamma",
        ),
        (
            TrainConfig {
                model: None,
                ..minimal()
            },
            "model",
        ),
    ];
    for (config, key) in cases {
        let error = config.resolve(TrainerKind::Dpo).unwrap_err();
        assert_eq!(error.key, key, "{error}");
    }
}

#[test]
fn flags_override_the_file() {
    let file: TrainConfig =
        yaml_serde::from_str("learning_rate: 1.0e-3\nbeta: 0.5\nloss_type: [sigmoid, sft]\n")
            .unwrap();
    let flags = TrainConfig {
        beta: Some(0.2),
        ..TrainConfig::default()
    };
    let merged = file.overridden_by(&flags);
    assert_eq!(merged.beta, Some(0.2));
    assert_eq!(merged.learning_rate, Some(1e-3));
    assert_eq!(
        merged.loss_type,
        Some(vec![
            LossType::Preference(PreferenceLoss::Sigmoid),
            LossType::Preference(PreferenceLoss::Sft)
        ])
    );
}

#[test]
fn rpo_alpha_adds_the_chosen_nll() {
    let settings = TrainConfig {
        rpo_alpha: Some(0.5),
        ..minimal()
    }
    .resolve(TrainerKind::Dpo)
    .unwrap();
    let Method::Objective(Objective::Dpo(dpo)) = settings.method else {
        panic!("a DPO run")
    };
    assert_eq!(
        dpo.losses,
        vec![(PreferenceLoss::Sigmoid, 1.0), (PreferenceLoss::Sft, 0.5)]
    );
}

const TABLE_BEGIN: &str = "<!-- keys: written from config/keys.rs; TEMPER_BLESS=1 cargo test -p temper-train rewrites it -->\n";
const TABLE_END: &str = "<!-- keys: end -->";

/// docs/training.md's key table is the one the declarations write.
#[test]
fn the_docs_key_table_is_the_declarations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/training.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = text.find(TABLE_BEGIN).expect("the table's begin marker") + TABLE_BEGIN.len();
    let end = text.find(TABLE_END).expect("the table's end marker");
    let written = key_table();
    if std::env::var_os("TEMPER_BLESS").is_some() {
        let updated = format!("{}{written}{}", &text[..begin], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text[begin..end] == written,
        "docs/training.md's key table differs from the declarations; rerun with TEMPER_BLESS=1"
    );
}

/// Every key has a doc (its `--help` text) and every default reads as text for each trainer.
#[test]
fn every_key_is_documented() {
    use clap::Args;
    let command = TrainConfig::augment_args(clap::Command::new("temper"));
    for key in TrainConfig::KEYS {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == key.name)
            .unwrap_or_else(|| panic!("`{}` has no flag", key.name));
        assert!(arg.get_help().is_some(), "`{}` has no doc", key.name);
        assert!(!key.trainers.is_empty(), "`{}` has no trainer", key.name);
        for kind in key.trainers {
            assert!(!(key.default)(*kind).is_empty(), "`{}`'s default", key.name);
        }
    }
    assert_eq!(command.get_arguments().count(), TrainConfig::KEYS.len());
}

/// Enum-valued keys take their names from files and flags alike, and refuse others by key.
#[test]
fn enum_keys_are_enums() {
    let config = from_file(
        "c.yaml",
        "lr_scheduler_type: cosine\nloss_mask: all_assistant\ntruncation_mode: keep_end\n\
         data_format: trl-preference\nloss_type: [dpo_norm, sft]\n",
    )
    .unwrap();
    assert_eq!(config.lr_scheduler_type, Some(ScheduleKind::Cosine));
    assert_eq!(config.loss_mask, Some(temper_data::LossMask::AllAssistant));
    assert_eq!(
        config.truncation_mode,
        Some(temper_data::TruncationSide::KeepEnd)
    );
    assert_eq!(
        config.loss_type,
        Some(vec![
            LossType::Preference(PreferenceLoss::SigmoidNorm),
            LossType::Preference(PreferenceLoss::Sft)
        ])
    );
    let error = from_file("c.yaml", "loss_mask: completion_only\n").unwrap_err();
    assert!(
        error.starts_with("loss_mask: unknown variant `completion_only`"),
        "{error}"
    );
    let error = from_file("c.yaml", "kl_estimator: k2\n").unwrap_err();
    assert!(error.starts_with("kl_estimator: "), "{error}");
    // A loss type of the other trainer is named as such.
    let error = TrainConfig {
        loss_type: Some(vec![LossType::Grpo(GrpoLoss::Dapo)]),
        ..minimal()
    }
    .resolve(TrainerKind::Dpo)
    .unwrap_err();
    assert_eq!(error.key, "loss_type");
    assert!(
        error.reason.contains("not a loss type of `temper dpo`"),
        "{error}"
    );
}

/// The library's `TrainingArgs` defaults are the keys' own: what a run resolves to when it
/// gives only the required keys, for every trainer.
#[test]
fn library_defaults_are_the_declared_ones() {
    for kind in TrainerKind::ALL {
        let resolved = minimal().resolve(kind).unwrap();
        assert_eq!(
            crate::TrainingArgs::for_trainer(kind),
            resolved.args,
            "{}",
            kind.command()
        );
        let defaults = KeyValues::defaults(kind);
        assert_eq!(defaults.learning_rate, kind.default_learning_rate());
        assert!(defaults.model.as_os_str().is_empty() && defaults.data.is_empty());
    }
    assert_eq!(crate::TrainingArgs::default().learning_rate, 2e-5);
}

/// A bad item of a list key is named with what is wrong (an untagged one-or-many enum once
/// said only that nothing matched), and a key the trainer does not take is refused before any
/// other key is checked.
#[test]
fn list_items_and_foreign_keys_are_named_first() {
    let error = from_file("c.yaml", "loss_type: sigmod\n").unwrap_err();
    assert!(
        error.starts_with("loss_type: `sigmod` is not a loss type (one of sigmoid, hinge"),
        "{error}"
    );
    let error = from_file("c.yaml", "loss_type: [sigmoid, sigmod]\n").unwrap_err();
    assert!(error.contains("`sigmod` is not a loss type"), "{error}");
    let error = from_file("c.yaml", "data: 3\n").unwrap_err();
    assert!(
        error.starts_with("data: invalid type: integer `3`"),
        "{error}"
    );
    let only_beta = TrainConfig {
        beta: Some(0.1),
        ..TrainConfig::default()
    };
    let error = only_beta.resolve(TrainerKind::Sft).unwrap_err();
    assert_eq!(error.to_string(), "beta: not an option of `temper sft`");
}

/// LLaMA-Factory's `dataset` + `dataset_dir`: the names' files, each read with its entry's
/// format and columns, as `data` + `data_format` + `columns` would read them.
#[test]
fn dataset_names_resolve_through_dataset_info() {
    use temper_data::dataset::load_mapped;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data/dataset_info");
    let named = TrainConfig {
        data: None,
        dataset: Some(vec!["instructions".into()]),
        dataset_dir: Some(dir.clone()),
        ..minimal()
    }
    .resolve(TrainerKind::Sft)
    .unwrap();
    let given = TrainConfig {
        data: Some(vec![dir.join("instructions.jsonl")]),
        data_format: Some(temper_data::FormatChoice::Given(
            temper_data::Format::Alpaca,
        )),
        columns: Some(
            [
                "instruction=question",
                "input=context",
                "output=answer",
                "system=persona",
                "history=turns",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..minimal()
    }
    .resolve(TrainerKind::Sft)
    .unwrap();
    assert_eq!(named.data.len(), 1);
    assert_eq!(named.data[0].path, given.data[0].path);
    assert_eq!(named.data[0].format, Some(temper_data::Format::Alpaca));
    let load =
        |file: &DataFile| load_mapped(&file.path, file.format, &file.columns, false).unwrap();
    let (named_examples, given_examples) =
        (load(&named.data[0]).examples, load(&given.data[0]).examples);
    assert_eq!(named_examples.len(), 4);
    assert_eq!(named_examples, given_examples);
    // Several names, comma-separated, in order, each with its own format.
    let several = TrainConfig {
        data: None,
        dataset: Some(vec!["pairs,chats".into()]),
        dataset_dir: Some(dir.clone()),
        ..minimal()
    }
    .resolve(TrainerKind::Dpo)
    .unwrap();
    let formats: Vec<_> = several
        .data
        .iter()
        .map(|f| f.format.unwrap().name())
        .collect();
    assert_eq!(formats, ["alpaca-preference", "sharegpt"]);

    let error = |config: TrainConfig| config.resolve(TrainerKind::Sft).unwrap_err().to_string();
    let with_names = TrainConfig {
        data: None,
        dataset: Some(vec!["instructions".into()]),
        dataset_dir: Some(dir.clone()),
        ..minimal()
    };
    let message = error(TrainConfig {
        dataset: Some(vec!["nope".into()]),
        ..with_names.clone()
    });
    assert!(
        message.contains("dataset_info.json: dataset `nope`: not defined here"),
        "{message}"
    );
    let message = error(TrainConfig {
        data: Some(vec!["d.jsonl".into()]),
        ..with_names.clone()
    });
    assert!(message.contains("give one of them"), "{message}");
    let message = error(TrainConfig {
        columns: Some(vec!["prompt=q".into()]),
        ..with_names.clone()
    });
    assert!(
        message.contains("data_format and columns go with data"),
        "{message}"
    );
    let message = error(TrainConfig {
        dataset_dir: Some(dir),
        ..minimal()
    });
    assert!(message.contains("needs dataset"), "{message}");
    // `dataset_dir` defaults to `data`, as in LLaMA-Factory.
    let message = error(TrainConfig {
        dataset_dir: None,
        ..with_names
    });
    assert!(
        message.contains("data/dataset_info.json: cannot read"),
        "{message}"
    );
}

/// LLaMA-Factory's `eval_dataset`: evaluation files through `dataset_info.json`, each read with
/// its entry's format and columns, in place of `eval_data`.
#[test]
fn eval_dataset_names_resolve_through_dataset_info() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data/dataset_info");
    let with_eval = TrainConfig {
        eval_dataset: Some(vec!["instructions".into()]),
        dataset_dir: Some(dir.clone()),
        eval_steps: Some(1),
        ..minimal()
    };
    let settings = with_eval.clone().resolve(TrainerKind::Sft).unwrap();
    assert_eq!(settings.eval_data.len(), 1);
    assert_eq!(settings.eval_data[0].path, dir.join("instructions.jsonl"));
    assert_eq!(
        settings.eval_data[0].format,
        Some(temper_data::Format::Alpaca)
    );
    let message = TrainConfig {
        eval_data: Some(vec!["e.jsonl".into()]),
        ..with_eval
    }
    .resolve(TrainerKind::Sft)
    .unwrap_err()
    .to_string();
    assert!(message.contains("replaces eval_data"), "{message}");
}

/// A YAML `dataset: a,b` is one string holding both names.
#[test]
fn dataset_key_reads_from_files() {
    let config = from_file(
        "c.yaml",
        "dataset: instructions, pairs\ndataset_dir: fixtures\n",
    )
    .unwrap();
    assert_eq!(
        config.dataset,
        Some(vec!["instructions, pairs".to_string()])
    );
    assert_eq!(config.dataset_dir, Some("fixtures".into()));
    let error = TrainConfig {
        data: None,
        dataset: Some(vec![" ,pairs".into()]),
        ..minimal()
    }
    .resolve(TrainerKind::Sft)
    .unwrap_err()
    .to_string();
    assert!(error.contains("dataset: empty dataset name"), "{error}");
}
