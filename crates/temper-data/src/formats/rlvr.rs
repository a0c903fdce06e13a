//! Prompts for reinforcement learning with verifiable rewards: open-instruct's
//! `{messages, ground_truth, dataset}` rows, and TRL's prompt-only `{prompt, ...}` rows whose
//! other columns are passed to reward functions.

use serde_json::Value;

use super::fields::{Object, array, element, required, string, type_name};
use super::messages::{Ending, check_conversation, parse_messages};
use super::trl::turns;
use crate::error::FieldError;
use crate::types::{Example, RlvrPrompt, Turns};

pub(crate) fn parse_open_instruct(object: &Object) -> Result<Vec<Example>, FieldError> {
    let messages = parse_messages(required(object, "messages")?, "messages")?;
    check_conversation(&messages, "messages", Ending::AwaitingAnswer)?;
    let ground_truth = required(object, "ground_truth")?.clone();
    let datasets = dataset_names(required(object, "dataset")?)?;
    let extra = object
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "messages" | "ground_truth" | "dataset"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(vec![Example::Rlvr(RlvrPrompt {
        prompt: Turns::Messages(messages),
        ground_truth: Some(ground_truth),
        datasets,
        extra,
    })])
}

pub(crate) fn parse_prompt_only(object: &Object) -> Result<Vec<Example>, FieldError> {
    let prompt = turns(required(object, "prompt")?, "prompt")?;
    match &prompt {
        Turns::Text(text) if text.trim().is_empty() => {
            return Err(FieldError::new("prompt", "prompt is empty"));
        }
        Turns::Text(_) => {}
        Turns::Messages(messages) => {
            check_conversation(messages, "prompt", Ending::AwaitingAnswer)?
        }
    }
    let ground_truth = object.get("ground_truth").filter(|v| !v.is_null()).cloned();
    let datasets = match object.get("dataset").filter(|v| !v.is_null()) {
        Some(value) => dataset_names(value)?,
        None => Vec::new(),
    };
    let extra = object
        .iter()
        .filter(|(key, _)| key.as_str() != "prompt")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(vec![Example::Rlvr(RlvrPrompt {
        prompt,
        ground_truth,
        datasets,
        extra,
    })])
}

/// `dataset` is one name or a list of names (a row scored by several verifiers).
fn dataset_names(value: &Value) -> Result<Vec<String>, FieldError> {
    let names: Vec<String> = match value {
        Value::String(name) => vec![name.clone()],
        Value::Array(_) => array(value, "dataset")?
            .iter()
            .enumerate()
            .map(|(i, name)| string(name, &element("dataset", i)).map(str::to_string))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(FieldError::new(
                "dataset",
                format!(
                    "expected a verifier name or a list of names, found {}",
                    type_name(other)
                ),
            ));
        }
    };
    if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
        return Err(FieldError::new("dataset", "names no verifier"));
    }
    Ok(names)
}
