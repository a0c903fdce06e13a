//! Chat messages in the OpenAI / TRL shape (`{"role", "content"}`), and the rules every
//! conversation must follow whatever format it came from.

use serde_json::Value;

use super::fields::{
    Object, array, as_object, element, optional, optional_str, required, type_name,
};
use crate::error::FieldError;
use crate::types::{ContentGiven, Message, Role};

pub(crate) fn parse_role(name: &str, field: &str) -> Result<Role, FieldError> {
    match name {
        "system" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" => Ok(Role::Tool),
        other => Err(FieldError::new(
            field,
            format!("unknown role `{other}` (expected system, user, assistant or tool)"),
        )),
    }
}

/// A message's text and reasoning, as a dataset gives them.
#[derive(Default)]
struct Content {
    text: Option<String>,
    reasoning: Option<String>,
}

/// Message content: a string, or a list of parts (OpenAI's and LLaMA-Factory's): `text` parts
/// (`{"type": "text", "text" | "value": ...}`) are joined into the text, `reasoning` parts into
/// the reasoning. Null is allowed for assistant messages that only call tools.
fn parse_content(value: Option<&Value>, field: &str) -> Result<Content, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(Content::default()),
        Some(Value::String(text)) => Ok(Content {
            text: Some(text.clone()),
            reasoning: None,
        }),
        Some(Value::Array(parts)) => {
            let (mut text, mut reasoning) = (String::new(), None::<String>);
            for (i, part) in parts.iter().enumerate() {
                let path = element(field, i);
                let object = as_object(part, &path)?;
                let kind = optional_str(object, "type").map_err(|e| e.within(&path))?;
                let key = if object.contains_key("text") {
                    "text"
                } else {
                    "value"
                };
                let part_text = required(object, key).map_err(|e| e.within(&path))?;
                let part_text = part_text.as_str().ok_or_else(|| {
                    FieldError::new(
                        format!("{path}.{key}"),
                        format!("expected a string, found {}", type_name(part_text)),
                    )
                })?;
                match kind {
                    Some("text") | None => text.push_str(part_text),
                    Some("reasoning") => reasoning.get_or_insert_default().push_str(part_text),
                    Some(other) => {
                        return Err(FieldError::new(
                            path,
                            format!(
                                "content part of type `{other}` is not supported (text and \
                                 reasoning only)"
                            ),
                        ));
                    }
                }
            }
            Ok(Content {
                text: Some(text),
                reasoning,
            })
        }
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

/// A message's `loss_weight`: 0 or 1 (the loss mask is per token, trained or not).
fn parse_loss_weight(object: &Object, field: &str) -> Result<Option<f64>, FieldError> {
    let Some(value) = optional(object, "loss_weight") else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(weight) if weight == 0.0 || weight == 1.0 => Ok(Some(weight)),
        _ => Err(FieldError::new(
            format!("{field}.loss_weight"),
            format!("expected 0 or 1, found {value}"),
        )),
    }
}

/// One `{"role", "content", ...}` message.
pub(crate) fn parse_message(value: &Value, field: &str) -> Result<Message, FieldError> {
    let object = as_object(value, field)?;
    let role_value = required(object, "role").map_err(|e| e.within(field))?;
    let role_name = role_value.as_str().ok_or_else(|| {
        FieldError::new(
            format!("{field}.role"),
            format!("expected a string, found {}", type_name(role_value)),
        )
    })?;
    let role = parse_role(role_name, &format!("{field}.role"))?;
    let content_field = format!("{field}.content");
    let tool_calls = match optional(object, "tool_calls") {
        None => None,
        Some(calls) => Some(array(calls, &format!("{field}.tool_calls"))?.clone()),
    };
    let parsed = parse_content(object.get("content"), &content_field)?;
    let (content, content_given) = match parsed.text {
        Some(content) => (content, ContentGiven::Text),
        None if object.contains_key("content") && tool_calls.is_some() => {
            (String::new(), ContentGiven::Null)
        }
        None if tool_calls.is_some() => (String::new(), ContentGiven::Absent),
        None if object.contains_key("content") => {
            return Err(FieldError::new(content_field, "is null"));
        }
        None => return Err(FieldError::new(content_field, "missing")),
    };
    let name = optional_str(object, "name").map_err(|e| e.within(field))?;
    let tool_call_id = optional_str(object, "tool_call_id").map_err(|e| e.within(field))?;
    let reasoning_field = optional_str(object, "reasoning_content").map_err(|e| e.within(field))?;
    Ok(Message {
        role,
        content,
        content_given,
        tool_calls,
        name: name.map(str::to_string),
        tool_call_id: tool_call_id.map(str::to_string),
        reasoning_content: parsed.reasoning.or(reasoning_field.map(str::to_string)),
        loss_weight: parse_loss_weight(object, field)?,
    })
}

/// A list of messages; `field` names the list.
pub(crate) fn parse_messages(value: &Value, field: &str) -> Result<Vec<Message>, FieldError> {
    let items = array(value, field)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_message(item, &element(field, i)))
        .collect()
}

/// How a message list must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A whole conversation to train on: ends with the assistant.
    Assistant,
    /// A prompt awaiting an answer: ends with the user or a tool result.
    AwaitingAnswer,
}

/// The rules of a well-formed conversation: an optional system message first, then the user,
/// then user and assistant turns alternating; tool results follow an assistant message (or
/// other tool results) and are answered by the assistant. Assistant messages say something.
pub(crate) fn check_conversation(
    messages: &[Message],
    field: &str,
    ending: Ending,
) -> Result<(), FieldError> {
    if messages.is_empty() {
        return Err(FieldError::new(field, "empty conversation"));
    }
    let mut previous: Option<Role> = None;
    for (i, message) in messages.iter().enumerate() {
        let path = element(field, i);
        let allowed = matches!(
            (previous, message.role),
            (None, Role::System | Role::User)
                | (Some(Role::System), Role::User)
                | (Some(Role::User), Role::Assistant)
                | (Some(Role::Assistant), Role::User | Role::Tool)
                | (Some(Role::Tool), Role::Tool | Role::Assistant)
        );
        if !allowed {
            let after = match previous {
                None => "at the start".to_string(),
                Some(role) => format!("after a {} message", role.as_str()),
            };
            return Err(FieldError::new(
                format!("{path}.role"),
                format!(
                    "{} message {after}: roles out of order",
                    message.role.as_str()
                ),
            ));
        }
        if message.role == Role::Assistant
            && message.content.trim().is_empty()
            && message
                .tool_calls
                .as_ref()
                .is_none_or(|calls| calls.is_empty())
        {
            return Err(FieldError::new(
                format!("{path}.content"),
                "empty assistant message",
            ));
        }
        previous = Some(message.role);
    }
    let last = messages[messages.len() - 1].role;
    match (ending, last) {
        (Ending::Assistant, Role::Assistant) => Ok(()),
        (Ending::AwaitingAnswer, Role::User | Role::Tool) => Ok(()),
        (Ending::Assistant, role) => Err(FieldError::new(
            field,
            format!(
                "ends with a {} message; the last message must be the assistant's",
                role.as_str()
            ),
        )),
        (Ending::AwaitingAnswer, role) => Err(FieldError::new(
            field,
            format!(
                "ends with a {} message; a prompt must end with the user or a tool",
                role.as_str()
            ),
        )),
    }
}

/// An answer continuing a prompt: assistant messages (with tool results between them).
pub(crate) fn check_answer(
    prompt: &[Message],
    answer: &[Message],
    field: &str,
) -> Result<(), FieldError> {
    if answer.is_empty() {
        return Err(FieldError::new(field, "empty completion"));
    }
    if answer[0].role != Role::Assistant {
        return Err(FieldError::new(
            format!("{field}[0].role"),
            format!(
                "a completion must start with an assistant message, found {}",
                answer[0].role.as_str()
            ),
        ));
    }
    let whole: Vec<Message> = prompt.iter().chain(answer).cloned().collect();
    check_listed_conversation(&whole, prompt.len(), field, "prompt", Ending::Assistant)
}

/// [`check_conversation`] for messages whose first `offset` come from elsewhere in the record
/// (a top-level system prompt, the prompt before an answer) and the rest from the list
/// `field`: errors name the list's own indices, or `before` for the leading messages.
pub(crate) fn check_listed_conversation(
    messages: &[Message],
    offset: usize,
    field: &str,
    before: &str,
    ending: Ending,
) -> Result<(), FieldError> {
    check_conversation(messages, "", ending).map_err(|error| {
        let index = error
            .field
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(index, tail)| Some((index.parse::<usize>().ok()?, tail)));
        match index {
            Some((i, tail)) if i >= offset => {
                FieldError::new(format!("{field}[{}]{tail}", i - offset), error.message)
            }
            Some(_) => FieldError::new(before, error.message),
            None => FieldError::new(field, error.message),
        }
    })
}
