//! A run's models: the policy at the start (fresh LoRA adapters, a fresh score head, or a
//! checkpoint), the reference model or its cached log-probs, PPO's value model, and RL runs'
//! reward model.

use std::path::{Path, PathBuf};

use temper_data::tokenize::TokenizedPair;
use temper_data::{ChatTokenizer, TokenizedSet};
use temper_kernels::{AutodiffKernelBackend, KernelBackend};
use temper_model::{
    CausalLm, HeadKind, ModelConfig, ScoreHeadInit, add_lora, load_adapter, load_model,
    load_reward_model,
};
use temper_verifiers::shaping::Shaping;

use super::data::LoadedData;
use super::{ReferenceOrigin, RunError};
use crate::config::{RunSettings, TrainerKind};
use crate::grpo::Prompts;
use crate::objective::Objective;
use crate::progress::{Display, Progress};
use crate::reference::{Reference, ReferenceCache, cache_key, reference_scores};
use crate::rewards::{RewardModel, Rewards};
use crate::rollout::Stops;

pub(super) fn model_error(dir: &Path, error: impl std::fmt::Display) -> RunError {
    RunError::Model(format!("{}: {error}", dir.display()))
}

/// Reference scores for `examples` from the cache, or scored now and stored.
pub(super) fn precomputed_reference<B: AutodiffKernelBackend>(
    reference_dir: &Path,
    pairs: &[TokenizedPair],
    settings: &RunSettings,
    progress: &Progress,
    device: &B::Device,
) -> Result<(Reference<B::InnerBackend>, ReferenceOrigin), RunError> {
    let cache = ReferenceCache::new(&settings.reference_cache_dir);
    let key = cache_key(reference_dir, pairs)?;
    if let Some(scores) = cache.load(&key, pairs.len())? {
        return Ok((
            Reference::Precomputed(scores),
            ReferenceOrigin::Cached(cache.path(&key)),
        ));
    }
    progress.message(&format!(
        "scoring {} pairs with the reference model {}",
        pairs.len(),
        reference_dir.display()
    ));
    let (_, model) = load_model::<B::InnerBackend>(reference_dir, device)
        .map_err(|e| model_error(reference_dir, e))?;
    let batch = settings.per_device_eval_batch_size * 2;
    let scores = reference_scores(&model, pairs, batch, device);
    let path = cache.store(&key, &scores)?;
    Ok((
        Reference::Precomputed(scores),
        ReferenceOrigin::Computed(path),
    ))
}

/// The policy at the start of the run: resumed from a checkpoint, or the model with fresh
/// adapters for a LoRA run. A reward model run turns a causal LM into a reward model with a
/// fresh, seeded score head (or continues one) and reads rewards at `pad_id`'s rule.
pub(super) fn initial_model<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    pad_id: u32,
    device: &B::Device,
) -> Result<CausalLm<B>, RunError> {
    let load = |dir: &Path| -> Result<CausalLm<B>, RunError> {
        let loaded = if settings.kind == TrainerKind::Reward {
            let init = ScoreHeadInit {
                num_labels: 1,
                pad_token_id: Some(pad_id),
                seed: settings.args.seed,
            };
            load_reward_model::<B>(dir, &init, device)
        } else {
            load_model::<B>(dir, device)
        };
        loaded
            .map(|(_, model)| model)
            .map_err(|e| model_error(dir, e))
    };
    match (&settings.resume_from_checkpoint, &settings.peft) {
        (Some(checkpoint), Some(_)) => load_adapter(load(&settings.model)?, checkpoint, device)
            .map(|(_, model)| model)
            .map_err(|e| model_error(checkpoint, e)),
        (Some(checkpoint), None) => load(checkpoint),
        (None, Some(peft)) => {
            let base = load(&settings.model)?;
            B::seed(device, settings.args.seed);
            Ok(add_lora(base, &peft.lora, device))
        }
        (None, None) => load(&settings.model),
    }
}

/// An RL run's reward sources: the verifiers the rows name, and the reward model when one is
/// given; a run with neither would learn nothing and is refused.
pub(super) fn reward_sources<B: KernelBackend>(
    settings: &RunSettings,
    prompts: &Prompts,
    pad_id: u32,
    device: &B::Device,
) -> Result<Rewards, RunError> {
    if settings.rewards.reward_model.is_none() && prompts.rows.iter().all(|r| r.datasets.is_empty())
    {
        return Err(RunError::Data(
            "no rewards: the rows name no verifier (open-instruct's `dataset` column) and no reward_model is given".into(),
        ));
    }
    let shaping = Shaping {
        verification_reward: settings.rewards.verification_reward,
        ..Shaping::unscaled()
    };
    let mut rewards = Rewards::verifiers(shaping);
    rewards.non_stop_penalty = settings.rewards.non_stop_penalty;
    if let Some(dir) = &settings.rewards.reward_model {
        let config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| model_error(dir, e))
            .and_then(|text| ModelConfig::from_json(&text).map_err(|e| model_error(dir, e)))?;
        if !matches!(config.head, HeadKind::SequenceClassification { .. }) {
            return Err(model_error(
                dir,
                "reward_model: a causal LM, not a reward model (train one with `temper rm`)",
            ));
        }
        let init = ScoreHeadInit {
            num_labels: 1,
            pad_token_id: Some(pad_id),
            seed: 0,
        };
        let (_, model) =
            load_reward_model::<B>(dir, &init, device).map_err(|e| model_error(dir, e))?;
        rewards.sources.push((
            Box::new(RewardModel {
                model,
                batch_size: settings.per_device_eval_batch_size,
                device: device.clone(),
            }),
            1.0,
        ));
    }
    Ok(rewards)
}

/// Where the run's model stops its completions, and its padding.
pub(super) fn model_stops(
    model_dir: &Path,
    tokenizer: &ChatTokenizer,
    pad_id: u32,
) -> Result<Stops, RunError> {
    let config = std::fs::read_to_string(model_dir.join("config.json"))
        .map_err(|e| model_error(model_dir, e))
        .and_then(|text| ModelConfig::from_json(&text).map_err(|e| model_error(model_dir, e)))?;
    Ok(Stops::of_model(model_dir, &config, tokenizer, pad_id))
}

/// The reference model of an RL run with a KL term: `ref_model`, else the initial policy (the
/// base, without adapters, for LoRA).
pub(super) fn rl_reference<B: KernelBackend>(
    settings: &RunSettings,
    device: &B::Device,
) -> Result<CausalLm<B>, RunError> {
    let dir = settings.ref_model.as_ref().unwrap_or(&settings.model);
    load_model::<B>(dir, device)
        .map(|(_, model)| model)
        .map_err(|e| model_error(dir, e))
}

/// The reference log-probs of an offline run, for its training and its evaluation examples.
pub(super) struct References<B: KernelBackend> {
    pub(super) train: Reference<B>,
    pub(super) eval: Reference<B>,
    pub(super) origin: Option<ReferenceOrigin>,
}

/// What `objective` compares against: nothing, the reference model's log-probs scored once
/// (from the cache, or scored now and stored), or the reference model itself, scored every step.
pub(super) fn objective_references<B: AutodiffKernelBackend>(
    objective: &Objective,
    settings: &RunSettings,
    train: &LoadedData,
    eval: Option<&LoadedData>,
    display: Display,
    device: &B::Device,
) -> Result<References<B::InnerBackend>, RunError> {
    let reference_dir = settings.ref_model.as_ref().unwrap_or(&settings.model);
    if !objective.needs_reference() {
        return Ok(References {
            train: Reference::None,
            eval: Reference::None,
            origin: None,
        });
    }
    if settings.precompute_ref_log_probs {
        // Messages before the progress bar exists go out as lines.
        let progress = match display {
            Display::Quiet => Progress::new(Display::Quiet, 0, 0),
            _ => Progress::new(Display::Lines, 0, 0),
        };
        // KTO's examples are scored as (prompt, completion, KL completion) rows.
        let score = |examples: &TokenizedSet| match examples.as_pairs() {
            Some(pairs) => {
                precomputed_reference::<B>(reference_dir, &pairs, settings, &progress, device)
            }
            None => Err(RunError::Data(
                "a reference model scores preference pairs; the data holds none".into(),
            )),
        };
        let (train, origin) = score(&train.examples)?;
        let eval = match eval {
            Some(eval) => score(&eval.examples)?.0,
            None => Reference::None,
        };
        return Ok(References {
            train,
            eval,
            origin: Some(origin),
        });
    }
    let (_, model) = load_model::<B::InnerBackend>(reference_dir, device)
        .map_err(|e| model_error(reference_dir, e))?;
    Ok(References {
        train: Reference::Model(Box::new(model.clone())),
        eval: Reference::Model(Box::new(model)),
        origin: Some(ReferenceOrigin::PerStep),
    })
}

/// PPO's value model, trained in full, and the directory it came from: `value_model`, else the
/// reward model, else the policy's own directory, with a fresh seeded score head on a causal
/// LM.
pub(super) fn value_model<B: AutodiffKernelBackend>(
    settings: &RunSettings,
    pad_id: u32,
    device: &B::Device,
) -> Result<(CausalLm<B>, PathBuf), RunError> {
    let dir = settings
        .value_model
        .as_ref()
        .or(settings.rewards.reward_model.as_ref())
        .unwrap_or(&settings.model)
        .clone();
    let init = ScoreHeadInit {
        num_labels: 1,
        pad_token_id: Some(pad_id),
        seed: settings.args.seed,
    };
    let (_, model) =
        load_reward_model::<B>(&dir, &init, device).map_err(|e| model_error(&dir, e))?;
    Ok((model, dir))
}
