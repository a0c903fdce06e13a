//! docs/training.md's table of keys, written from the declarations: each key's trainers,
//! default and TRL note from [`TrainConfig::KEYS`], its meaning from its doc comment (which
//! is also its `--help` text).

use clap::Args;

use super::{KeySpec, TrainConfig, TrainerKind};

/// The markdown table of every key.
pub fn key_table() -> String {
    let command = TrainConfig::augment_args(clap::Command::new("temper"));
    let mut table = String::from(
        "| key | trainers | default | TRL 1.16 / transformers 5.23 | meaning |\n\
         |---|---|---|---|---|\n",
    );
    for key in TrainConfig::KEYS {
        let arg = command.get_arguments().find(|arg| arg.get_id() == key.name);
        let mut meaning = arg
            .and_then(|arg| arg.get_long_help().or(arg.get_help()))
            .map(|help| {
                help.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        // An enum key's names, which `--help` lists on its own.
        let names: Vec<String> = arg
            .map(|arg| arg.get_possible_values())
            .unwrap_or_default()
            .iter()
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        if !names.is_empty() && names != ["`true`", "`false`"] {
            meaning.push_str(&format!("; one of {}", names.join(", ")));
        }
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            key.name,
            trainers(key),
            defaults(key),
            key.trl,
            meaning
        ));
    }
    table
}

/// Empty for every trainer, else the commands.
fn trainers(key: &KeySpec) -> String {
    if key.trainers.len() == TrainerKind::ALL.len() {
        return String::new();
    }
    let commands: Vec<&str> = key.trainers.iter().map(|kind| kind.command()).collect();
    commands.join(", ")
}

/// One default, or each trainer's where they differ: "sft `2e-5`; dpo, orpo `1e-6`".
fn defaults(key: &KeySpec) -> String {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for kind in key.trainers {
        let default = (key.default)(*kind);
        match groups.iter_mut().find(|(text, _)| *text == default) {
            Some((_, commands)) => commands.push(kind.command()),
            None => groups.push((default, vec![kind.command()])),
        }
    }
    if let [(default, _)] = groups.as_slice() {
        return default.clone();
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(default, commands)| format!("{} {default}", commands.join(", ")))
        .collect();
    parts.join("; ")
}
