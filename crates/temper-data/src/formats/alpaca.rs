//! Alpaca (LLaMA-Factory's `alpaca` formatting): `instruction`, `input`, `output`, optional
//! `system` and `history`; the multi-turn form keeps a list of such turns in `conversations`;
//! the preference form has `chosen` and `rejected` in place of `output`.
//!
//! The user turn is `instruction` and `input` joined by a newline, as LLaMA-Factory does.

use serde_json::Value;

use super::fields::{
    Object, array, as_object, element, non_empty, optional_str, required_str, string,
};
use super::messages::{Ending, check_conversation};
use crate::error::FieldError;
use crate::types::{Example, Message, Preference, SftExample};

/// Does `conversations` hold Alpaca turns (rather than ShareGPT messages)?
pub(crate) fn is_turn_list(value: &Value) -> bool {
    value
        .as_array()
        .and_then(|items| items.first())
        .and_then(Value::as_object)
        .is_some_and(|turn| turn.contains_key("instruction"))
}

pub(crate) fn parse_sft(object: &Object) -> Result<Vec<Example>, FieldError> {
    let mut messages = system_and_history(object)?;
    if let Some(turns) = object.get("conversations").filter(|v| !v.is_null()) {
        for (i, turn) in array(turns, "conversations")?.iter().enumerate() {
            let path = element("conversations", i);
            let turn = as_object(turn, &path)?;
            messages.push(Message::user(user_turn(turn).map_err(|e| e.within(&path))?));
            let output = non_empty(
                required_str(turn, "output").map_err(|e| e.within(&path))?,
                &format!("{path}.output"),
                "completion",
            )?;
            messages.push(Message::assistant(output));
        }
        if messages.is_empty() {
            return Err(FieldError::new("conversations", "empty conversation"));
        }
    } else {
        messages.push(Message::user(user_turn(object)?));
        let output = non_empty(required_str(object, "output")?, "output", "completion")?;
        messages.push(Message::assistant(output));
    }
    check_conversation(&messages, "conversations", Ending::Assistant)
        .map_err(|e| relabel(e, "output"))?;
    Ok(vec![Example::Sft(SftExample::Chat {
        messages,
        completion_start: 0,
        tools: None,
    })])
}

pub(crate) fn parse_preference(object: &Object) -> Result<Vec<Example>, FieldError> {
    let mut prompt = system_and_history(object)?;
    prompt.push(Message::user(user_turn(object)?));
    let chosen = non_empty(required_str(object, "chosen")?, "chosen", "chosen answer")?;
    let rejected = non_empty(
        required_str(object, "rejected")?,
        "rejected",
        "rejected answer",
    )?;
    if chosen == rejected {
        return Err(FieldError::new("rejected", "identical to `chosen`"));
    }
    check_conversation(&prompt, "history", Ending::AwaitingAnswer)?;
    Ok(vec![Example::Preference(Preference::Chat {
        prompt,
        chosen: vec![Message::assistant(chosen)],
        rejected: vec![Message::assistant(rejected)],
        tools: None,
    })])
}

/// `instruction` + "\n" + `input` (when input is not empty).
fn user_turn(object: &Object) -> Result<String, FieldError> {
    let instruction = required_str(object, "instruction")?;
    let input = optional_str(object, "input")?.unwrap_or("");
    let text = match (instruction.is_empty(), input.is_empty()) {
        (false, false) => format!("{instruction}\n{input}"),
        (false, true) => instruction.to_string(),
        (true, false) => input.to_string(),
        (true, true) => {
            return Err(FieldError::new(
                "instruction",
                "instruction and input are both empty",
            ));
        }
    };
    Ok(text)
}

/// The optional system prompt and `history: [[prompt, response], ...]`.
fn system_and_history(object: &Object) -> Result<Vec<Message>, FieldError> {
    let mut messages = Vec::new();
    if let Some(system) = optional_str(object, "system")?.filter(|s| !s.is_empty()) {
        messages.push(Message::system(system));
    }
    let Some(history) = object.get("history").filter(|v| !v.is_null()) else {
        return Ok(messages);
    };
    for (i, pair) in array(history, "history")?.iter().enumerate() {
        let path = element("history", i);
        let pair = array(pair, &path)?;
        if pair.len() != 2 {
            return Err(FieldError::new(
                path,
                format!("expected [prompt, response], found {} items", pair.len()),
            ));
        }
        let prompt = string(&pair[0], &element(&path, 0))?;
        let response = non_empty(
            string(&pair[1], &element(&path, 1))?,
            &element(&path, 1),
            "response",
        )?;
        messages.push(Message::user(prompt));
        messages.push(Message::assistant(response));
    }
    Ok(messages)
}

/// Conversation checks speak of message indices that Alpaca records do not have; name the
/// Alpaca field instead when the error is about the answer.
fn relabel(error: FieldError, field: &str) -> FieldError {
    if error.field.ends_with(".content") && error.message == "empty assistant message" {
        FieldError::new(field, "completion is empty")
    } else {
        error
    }
}
