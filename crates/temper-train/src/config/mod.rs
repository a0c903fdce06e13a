//! A training run's configuration, with TRL's and transformers' key names: what a `--config`
//! file holds (snake_case keys) and what the command's flags set (kebab-case).
//!
//! Every key is declared once, in `keys.rs`: that declaration makes [`TrainConfig`] (the keys
//! as given: flags, files, `training_config.json`), [`KeyValues`] (each key's value for one
//! trainer, defaulted and checked) and [`TrainConfig::KEYS`] (the trainers that take each key
//! and its default, for `--help` and docs/training.md's key table). [`TrainConfig::resolve`]
//! then checks the relations between keys and builds the typed [`RunSettings`] a run uses;
//! every error names its key.

mod checks;
mod declare;
mod file;
mod keys;
mod loss_type;
mod resolve;
mod table;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use temper_data::DataKind;

pub use declare::{Fallback, KeySpec};
pub use file::{ConfigFileError, read_config_file};
pub use keys::{KeyValues, TrainConfig};
pub use loss_type::{GrpoLoss, LossType};
pub use resolve::{DataFile, Method, PeftSettings, RewardSettings, RunSettings, Take};
pub use table::key_table;

/// Which trainer a run is: the `temper` subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainerKind {
    Sft,
    Dpo,
    Orpo,
    Simpo,
    /// A reward model (`temper rm`, TRL's RewardTrainer).
    Reward,
    /// GRPO on prompts, rewarded by verifiers or a reward model (TRL's GRPOTrainer).
    Grpo,
    /// PPO with a value model (TRL's PPOTrainer).
    Ppo,
    /// KTO on unpaired completions judged desirable or not (TRL's KTOTrainer).
    Kto,
}

impl TrainerKind {
    pub const ALL: [TrainerKind; 8] = [
        TrainerKind::Sft,
        TrainerKind::Dpo,
        TrainerKind::Orpo,
        TrainerKind::Simpo,
        TrainerKind::Reward,
        TrainerKind::Grpo,
        TrainerKind::Ppo,
        TrainerKind::Kto,
    ];

    pub fn command(self) -> &'static str {
        match self {
            TrainerKind::Sft => "sft",
            TrainerKind::Dpo => "dpo",
            TrainerKind::Orpo => "orpo",
            TrainerKind::Simpo => "simpo",
            TrainerKind::Reward => "rm",
            TrainerKind::Grpo => "grpo",
            TrainerKind::Ppo => "ppo",
            TrainerKind::Kto => "kto",
        }
    }

    /// TRL's default learning rate of this trainer's config class.
    pub fn default_learning_rate(self) -> f64 {
        match self {
            TrainerKind::Sft => 2e-5,
            TrainerKind::Dpo | TrainerKind::Orpo | TrainerKind::Simpo | TrainerKind::Kto => 1e-6,
            TrainerKind::Reward => 1e-4,
            TrainerKind::Grpo => 1e-6,
            TrainerKind::Ppo => 3e-6,
        }
    }

    /// The kind of data this trainer reads.
    pub fn data_kind(self) -> DataKind {
        match self {
            TrainerKind::Sft => DataKind::Sft,
            TrainerKind::Grpo | TrainerKind::Ppo => DataKind::Rlvr,
            TrainerKind::Kto => DataKind::Unpaired,
            _ => DataKind::Preference,
        }
    }

    /// Whether the trainer learns from rewards on its own completions (GRPO, PPO).
    pub fn is_rl(self) -> bool {
        matches!(self, TrainerKind::Grpo | TrainerKind::Ppo)
    }
}

/// The compute backend the `temper` command runs a configuration on. The library runs on the
/// backend its caller instantiates [`crate::run`] with; it takes the key so that one config
/// file serves both, and records it with the run's configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ComputeBackend {
    /// burn-flex on the CPU, with temper's fused kernels.
    #[default]
    Flex,
    /// burn-ndarray on the CPU (plain tensor ops).
    Ndarray,
    /// burn-cuda (the CUDA build of temper).
    Cuda,
}

/// A key with a value out of range, of the wrong kind, or not for this trainer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl TrainConfig {
    /// The declaration of `name`.
    pub fn key(name: &str) -> Option<&'static KeySpec> {
        Self::KEYS.iter().find(|key| key.name == name)
    }

    /// A configuration from `key → value` pairs (a parsed config file); an unknown key or a
    /// value of the wrong kind is an error naming the key.
    pub fn from_map(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, ConfigError> {
        for (key, value) in &map {
            if Self::key(key).is_none() {
                return Err(bad(key, "unknown key"));
            }
            // One key at a time, so a type error is attributed to its key.
            let single = serde_json::Map::from_iter([(key.clone(), value.clone())]);
            serde_json::from_value::<TrainConfig>(serde_json::Value::Object(single))
                .map_err(|e| bad(key, e.to_string()))?;
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| bad("config", e.to_string()))
    }
}
