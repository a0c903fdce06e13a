//! ShareGPT (LLaMA-Factory's `sharegpt` formatting): `conversations: [{from, value}]` with
//! `from` in human/user, gpt/assistant, system, observation/tool and function_call, plus an
//! optional top-level `system` and `tools`. Messages may also use `role`/`content` keys.
//!
//! Preference data comes in two styles:
//! - LLaMA-Factory's: `conversations` is the prompt, `chosen` and `rejected` are one message each;
//! - labelled candidates: assistant turns offer several candidates, each with `"label":
//!   "chosen"` or `"rejected"`, either as an array in place of one message or as consecutive
//!   labelled messages. Each labelled turn yields one pair (the first chosen against the first
//!   rejected candidate); its prompt is the history with the chosen answers of earlier turns.

use serde_json::{Value, json};

use super::fields::{
    Object, array, as_object, element, non_empty, optional_str, required, string, tools, type_name,
};
use super::messages::{Ending, check_answer, check_conversation, check_listed_conversation};
use crate::error::FieldError;
use crate::types::{Example, Message, Preference, Role, SftExample};

/// Does any message of `conversations` carry a `label`, or offer candidates as an array?
pub(crate) fn has_labelled_candidates(value: &Value) -> bool {
    value.as_array().is_some_and(|items| {
        items.iter().any(|item| {
            item.is_array() || item.as_object().is_some_and(|m| m.contains_key("label"))
        })
    })
}

pub(crate) fn parse_sft(object: &Object) -> Result<Vec<Example>, FieldError> {
    let messages = conversation(object)?;
    check_record_conversation(object, &messages, Ending::Assistant)?;
    Ok(vec![Example::Sft(SftExample::Chat {
        messages,
        completion_start: 0,
        tools: tools(object, "tools")?,
    })])
}

pub(crate) fn parse_preference(object: &Object) -> Result<Vec<Example>, FieldError> {
    let prompt = conversation(object)?;
    check_record_conversation(object, &prompt, Ending::AwaitingAnswer)?;
    let chosen = vec![parse_message(required(object, "chosen")?, "chosen")?];
    let rejected = vec![parse_message(required(object, "rejected")?, "rejected")?];
    check_answer(&prompt, &chosen, "chosen")?;
    check_answer(&prompt, &rejected, "rejected")?;
    if chosen == rejected {
        return Err(FieldError::new("rejected", "identical to `chosen`"));
    }
    Ok(vec![Example::Preference(Preference::Chat {
        prompt,
        chosen,
        rejected,
        tools: tools(object, "tools")?,
    })])
}

pub(crate) fn parse_labelled(object: &Object) -> Result<Vec<Example>, FieldError> {
    let tools = tools(object, "tools")?;
    let items = array(required(object, "conversations")?, "conversations")?;
    let mut history = system_prompt(object)?;
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let path = element("conversations", i);
        // Gather one turn's candidates: an array element, or a run of labelled messages.
        let candidates: Vec<(String, &Value)> = if let Some(group) = items[i].as_array() {
            i += 1;
            group
                .iter()
                .enumerate()
                .map(|(j, c)| (element(&path, j), c))
                .collect()
        } else if is_labelled(&items[i]) {
            let start = i;
            while i < items.len() && is_labelled(&items[i]) {
                i += 1;
            }
            (start..i)
                .map(|j| (element("conversations", j), &items[j]))
                .collect()
        } else {
            history.push(parse_message(&items[i], &path)?);
            i += 1;
            continue;
        };
        let (chosen, rejected) = pick_candidates(&candidates, &path)?;
        check_conversation(&history, "conversations", Ending::AwaitingAnswer)?;
        check_answer(&history, std::slice::from_ref(&chosen), &path)?;
        check_answer(&history, std::slice::from_ref(&rejected), &path)?;
        if chosen.content == rejected.content && chosen.tool_calls == rejected.tool_calls {
            return Err(FieldError::new(
                path,
                "chosen candidate identical to the rejected one",
            ));
        }
        pairs.push(Example::Preference(Preference::Chat {
            prompt: history.clone(),
            chosen: vec![chosen.clone()],
            rejected: vec![rejected],
            tools: tools.clone(),
        }));
        history.push(chosen);
    }
    if pairs.is_empty() {
        return Err(FieldError::new(
            "conversations",
            "no turn has labelled candidates",
        ));
    }
    Ok(pairs)
}

/// A message with a label (`"label": null`, as Parquet and `to_json` exports write for
/// unlabelled turns, is no label).
fn is_labelled(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|m| m.get("label"))
        .is_some_and(|label| !label.is_null())
}

/// The first chosen and the first rejected candidate of a turn.
fn pick_candidates(
    candidates: &[(String, &Value)],
    turn: &str,
) -> Result<(Message, Message), FieldError> {
    let mut chosen = None;
    let mut rejected = None;
    for (path, candidate) in candidates {
        let message = parse_message(candidate, path)?;
        if message.role != Role::Assistant {
            return Err(FieldError::new(
                path.clone(),
                format!(
                    "a candidate must be an assistant message, found {}",
                    message.role.as_str()
                ),
            ));
        }
        let label_value =
            required(as_object(candidate, path)?, "label").map_err(|e| e.within(path))?;
        let label_path = format!("{path}.label");
        match string(label_value, &label_path)? {
            "chosen" => {
                chosen.get_or_insert(message);
            }
            "rejected" => {
                rejected.get_or_insert(message);
            }
            other => {
                return Err(FieldError::new(
                    label_path,
                    format!("unknown label `{other}` (expected chosen or rejected)"),
                ));
            }
        }
    }
    match (chosen, rejected) {
        (Some(c), Some(r)) => Ok((c, r)),
        (None, _) => Err(FieldError::new(
            turn,
            "labelled turn has no chosen candidate",
        )),
        (_, None) => Err(FieldError::new(
            turn,
            "labelled turn has no rejected candidate",
        )),
    }
}

/// Conversation rules, with errors naming indices of the record's own `conversations` list
/// (the top-level system prompt, when there is one, comes before it).
fn check_record_conversation(
    object: &Object,
    messages: &[Message],
    ending: Ending,
) -> Result<(), FieldError> {
    let offset = system_prompt(object)?.len();
    check_listed_conversation(messages, offset, "conversations", "system", ending)
}

/// The top-level system prompt followed by the messages of `conversations`.
fn conversation(object: &Object) -> Result<Vec<Message>, FieldError> {
    let mut messages = system_prompt(object)?;
    let items = array(required(object, "conversations")?, "conversations")?;
    for (i, item) in items.iter().enumerate() {
        messages.push(parse_message(item, &element("conversations", i))?);
    }
    Ok(messages)
}

fn system_prompt(object: &Object) -> Result<Vec<Message>, FieldError> {
    Ok(optional_str(object, "system")?
        .filter(|s| !s.is_empty())
        .map(Message::system)
        .into_iter()
        .collect())
}

/// `{from, value}` (or `{role, content}`) with ShareGPT's role names.
fn parse_message(value: &Value, field: &str) -> Result<Message, FieldError> {
    let object = as_object(value, field)?;
    let (role_key, content_key) = if object.contains_key("from") || !object.contains_key("role") {
        ("from", "value")
    } else {
        ("role", "content")
    };
    let role_value = required(object, role_key).map_err(|e| e.within(field))?;
    let role_path = format!("{field}.{role_key}");
    let content_path = format!("{field}.{content_key}");
    let content_value = required(object, content_key).map_err(|e| e.within(field))?;
    let content = content_value.as_str().ok_or_else(|| {
        FieldError::new(
            content_path.clone(),
            format!("expected a string, found {}", type_name(content_value)),
        )
    })?;
    let message = match string(role_value, &role_path)? {
        "human" | "user" => Message::user(content),
        "gpt" | "assistant" => Message::assistant(content),
        "system" => Message::system(content),
        "observation" | "tool" => Message::tool(content),
        "function_call" => function_call(
            non_empty(content, &content_path, "function call")?,
            &content_path,
        )?,
        other => {
            return Err(FieldError::new(
                role_path,
                format!(
                    "unknown role `{other}` (expected human, user, gpt, assistant, system, observation, tool or function_call)"
                ),
            ));
        }
    };
    Ok(message)
}

/// LLaMA-Factory stores a call as JSON text `{"name", "arguments"}` (or a list of them); chat
/// templates expect OpenAI-style `tool_calls` on an assistant message.
fn function_call(text: &str, field: &str) -> Result<Message, FieldError> {
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| FieldError::new(field, format!("function call is not valid JSON: {e}")))?;
    let calls = match parsed {
        Value::Array(calls) => calls,
        single => vec![single],
    };
    let mut tool_calls = Vec::with_capacity(calls.len());
    for call in &calls {
        let call = call
            .as_object()
            .filter(|c| c.get("name").is_some_and(Value::is_string))
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "function call must be {\"name\": ..., \"arguments\": ...}",
                )
            })?;
        let arguments = match call.get("arguments") {
            Some(Value::String(text)) => {
                serde_json::from_str(text).unwrap_or(Value::String(text.clone()))
            }
            Some(other) => other.clone(),
            None => json!({}),
        };
        tool_calls.push(
            json!({"type": "function", "function": {"name": call["name"], "arguments": arguments}}),
        );
    }
    let mut message = Message::assistant("");
    message.tool_calls = Some(tool_calls);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_call_becomes_tool_calls() {
        let message = function_call(r#"{"name": "add", "arguments": "{\"a\": 1}"}"#, "v").unwrap();
        assert_eq!(
            message.tool_calls.unwrap()[0],
            json!({"type": "function", "function": {"name": "add", "arguments": {"a": 1}}})
        );
    }

    #[test]
    fn function_call_must_name_a_function() {
        let error = function_call(r#"{"arguments": {}}"#, "v").unwrap_err();
        assert_eq!(error.field, "v");
    }
}
