//! TRL's dataset formats: `{text}`, `{messages}`, `{prompt, completion}` and
//! `{prompt, chosen, rejected}`, each as plain strings ("standard") or message lists
//! ("conversational"); and the implicit-prompt preference form, where chosen and rejected are
//! whole conversations sharing a prefix (open-instruct's format); and the unpaired preference
//! format KTO trains on.

use serde_json::Value;

use super::fields::{Object, non_empty, required, string, tools};
use super::messages::{Ending, check_answer, check_conversation, parse_messages};
use crate::error::FieldError;
use crate::types::{Example, Message, Preference, Role, SftExample, Turns, Unpaired};

pub(crate) fn parse_text(object: &Object) -> Result<Vec<Example>, FieldError> {
    let text = non_empty(string(required(object, "text")?, "text")?, "text", "text")?;
    Ok(vec![Example::Sft(SftExample::Text {
        text: text.to_string(),
    })])
}

pub(crate) fn parse_messages_record(object: &Object) -> Result<Vec<Example>, FieldError> {
    let messages = parse_messages(required(object, "messages")?, "messages")?;
    check_conversation(&messages, "messages", Ending::Assistant)?;
    Ok(vec![Example::Sft(SftExample::Chat {
        messages,
        completion_start: 0,
        tools: tools(object, "tools")?,
    })])
}

pub(crate) fn parse_prompt_completion(object: &Object) -> Result<Vec<Example>, FieldError> {
    let prompt = turns(required(object, "prompt")?, "prompt")?;
    let completion = turns(required(object, "completion")?, "completion")?;
    let example = match (prompt, completion) {
        (Turns::Text(prompt), Turns::Text(completion)) => {
            non_empty(&completion, "completion", "completion")?;
            SftExample::Completion { prompt, completion }
        }
        (Turns::Messages(prompt), Turns::Messages(completion)) => {
            check_conversation(&prompt, "prompt", Ending::AwaitingAnswer)?;
            check_answer(&prompt, &completion, "completion")?;
            let completion_start = prompt.len();
            SftExample::Chat {
                messages: prompt.into_iter().chain(completion).collect(),
                completion_start,
                tools: tools(object, "tools")?,
            }
        }
        (prompt, _) => return Err(mixed_styles("completion", &prompt)),
    };
    Ok(vec![Example::Sft(example)])
}

pub(crate) fn parse_preference(object: &Object) -> Result<Vec<Example>, FieldError> {
    let prompt = turns(required(object, "prompt")?, "prompt")?;
    let chosen = turns(required(object, "chosen")?, "chosen")?;
    let rejected = turns(required(object, "rejected")?, "rejected")?;
    let preference = match (prompt, chosen, rejected) {
        (Turns::Text(prompt), Turns::Text(chosen), Turns::Text(rejected)) => {
            text_pair(prompt, chosen, rejected)?
        }
        (Turns::Messages(prompt), Turns::Messages(chosen), Turns::Messages(rejected)) => {
            check_conversation(&prompt, "prompt", Ending::AwaitingAnswer)?;
            chat_pair(prompt, chosen, rejected, tools(object, "tools")?)?
        }
        // UltraFeedback-binarized and Tülu 3 rows: a string prompt beside whole conversations.
        // TRL's `maybe_extract_prompt` then takes the prompt from the conversations.
        (Turns::Text(_), Turns::Messages(chosen), Turns::Messages(rejected))
            if chosen.first().is_some_and(|m| m.role != Role::Assistant) =>
        {
            implicit_chat_pair(chosen, rejected, tools(object, "tools")?)?
        }
        (prompt, chosen, _) => {
            let field = if same_style(&prompt, &chosen) {
                "rejected"
            } else {
                "chosen"
            };
            return Err(mixed_styles(field, &prompt));
        }
    };
    Ok(vec![Example::Preference(preference)])
}

/// Chosen and rejected hold the whole conversation; the prompt is their shared prefix.
pub(crate) fn parse_implicit_preference(object: &Object) -> Result<Vec<Example>, FieldError> {
    let chosen = turns(required(object, "chosen")?, "chosen")?;
    let rejected = turns(required(object, "rejected")?, "rejected")?;
    let preference = match (chosen, rejected) {
        (Turns::Messages(chosen), Turns::Messages(rejected)) => {
            implicit_chat_pair(chosen, rejected, tools(object, "tools")?)?
        }
        (Turns::Text(chosen), Turns::Text(rejected)) => {
            let split = shared_prefix_len(&chosen, &rejected);
            let prompt = chosen[..split].to_string();
            text_pair(
                prompt,
                chosen[split..].to_string(),
                rejected[split..].to_string(),
            )?
        }
        (Turns::Messages(_), Turns::Text(_)) => {
            return Err(FieldError::new(
                "rejected",
                "chosen is a message list but rejected is a string",
            ));
        }
        (Turns::Text(_), Turns::Messages(_)) => {
            return Err(FieldError::new(
                "rejected",
                "chosen is a string but rejected is a message list",
            ));
        }
    };
    Ok(vec![Example::Preference(preference)])
}

/// Whole conversations sharing a prefix: the prompt is that prefix, the answers what follows
/// from the first message where they differ, which must be the assistant's on both sides.
fn implicit_chat_pair(
    chosen: Vec<Message>,
    rejected: Vec<Message>,
    tools: Option<Vec<Value>>,
) -> Result<Preference, FieldError> {
    check_conversation(&chosen, "chosen", Ending::Assistant)?;
    check_conversation(&rejected, "rejected", Ending::Assistant)?;
    let shared = chosen
        .iter()
        .zip(&rejected)
        .take_while(|(c, r)| c == r)
        .count();
    if shared == chosen.len() && shared == rejected.len() {
        return Err(FieldError::new("rejected", "identical to `chosen`"));
    }
    let answers_start_with_assistant = [&chosen, &rejected]
        .iter()
        .all(|side| side.get(shared).is_some_and(|m| m.role == Role::Assistant));
    if shared == 0 || !answers_start_with_assistant {
        return Err(FieldError::new(
            "rejected",
            format!(
                "chosen and rejected must share their prompt and differ from an assistant message on (they first differ at message {shared})"
            ),
        ));
    }
    let prompt = chosen[..shared].to_vec();
    chat_pair(
        prompt,
        chosen[shared..].to_vec(),
        rejected[shared..].to_vec(),
        tools,
    )
}

/// TRL's `extract_prompt` for strings: the longest shared prefix, stepping back one character
/// when the split would otherwise swallow the space before the answers.
fn shared_prefix_len(chosen: &str, rejected: &str) -> usize {
    let mut split = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, c), r)| c != r)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| chosen.len().min(rejected.len()));
    if split > 0 && chosen[..split].ends_with(' ') {
        split -= 1;
    }
    split
}

fn text_pair(prompt: String, chosen: String, rejected: String) -> Result<Preference, FieldError> {
    non_empty(&chosen, "chosen", "chosen answer")?;
    non_empty(&rejected, "rejected", "rejected answer")?;
    if chosen == rejected {
        return Err(FieldError::new("rejected", "identical to `chosen`"));
    }
    Ok(Preference::Text {
        prompt,
        chosen,
        rejected,
    })
}

fn chat_pair(
    prompt: Vec<Message>,
    chosen: Vec<Message>,
    rejected: Vec<Message>,
    tools: Option<Vec<Value>>,
) -> Result<Preference, FieldError> {
    check_answer(&prompt, &chosen, "chosen")?;
    check_answer(&prompt, &rejected, "rejected")?;
    if chosen == rejected {
        return Err(FieldError::new("rejected", "identical to `chosen`"));
    }
    Ok(Preference::Chat {
        prompt,
        chosen,
        rejected,
        tools,
    })
}

/// A plain string or a message list.
pub(crate) fn turns(value: &Value, field: &str) -> Result<Turns, FieldError> {
    match value {
        Value::String(text) => Ok(Turns::Text(text.clone())),
        Value::Array(_) => Ok(Turns::Messages(parse_messages(value, field)?)),
        other => Err(FieldError::new(
            field,
            format!(
                "expected a string or a list of messages, found {}",
                super::fields::type_name(other)
            ),
        )),
    }
}

fn same_style(a: &Turns, b: &Turns) -> bool {
    matches!(
        (a, b),
        (Turns::Text(_), Turns::Text(_)) | (Turns::Messages(_), Turns::Messages(_))
    )
}

fn mixed_styles(field: &str, prompt: &Turns) -> FieldError {
    let (prompt_style, other_style) = match prompt {
        Turns::Text(_) => ("a string", "a message list"),
        Turns::Messages(_) => ("a message list", "a string"),
    };
    FieldError::new(
        field,
        format!(
            "prompt is {prompt_style} but {field} is {other_style}; use one style for all fields"
        ),
    )
}

/// TRL's unpaired preference format (KTO): `{prompt, completion, label}`, standard or
/// conversational, or a whole conversation (`messages`, or LLaMA-Factory's ShareGPT
/// `conversations`) whose final assistant turns are the completion; the boolean `label` (or
/// LLaMA-Factory's `kto_tag`) says whether the completion is desirable.
pub(crate) fn parse_unpaired(object: &Object) -> Result<Vec<Example>, FieldError> {
    let desirable = unpaired_label(object)?;
    let tools = tools(object, "tools")?;
    let whole = |messages: Vec<Message>, field: &str| -> Result<Unpaired, FieldError> {
        let start = messages
            .iter()
            .rposition(|m| m.role != Role::Assistant)
            .map_or(0, |i| i + 1);
        if start == 0 || start == messages.len() {
            return Err(FieldError::new(
                field,
                "the conversation must end with assistant turns after a prompt",
            ));
        }
        let mut prompt = messages;
        let completion = prompt.split_off(start);
        Ok(Unpaired::Chat {
            prompt,
            completion,
            desirable,
            tools: tools.clone(),
        })
    };
    let unpaired = if object.contains_key("prompt") {
        let prompt = turns(required(object, "prompt")?, "prompt")?;
        let completion = turns(required(object, "completion")?, "completion")?;
        match (prompt, completion) {
            (Turns::Text(prompt), Turns::Text(completion)) => {
                non_empty(&completion, "completion", "completion")?;
                Unpaired::Text {
                    prompt,
                    completion,
                    desirable,
                }
            }
            (Turns::Messages(prompt), Turns::Messages(completion)) => {
                check_conversation(&prompt, "prompt", Ending::AwaitingAnswer)?;
                check_answer(&prompt, &completion, "completion")?;
                Unpaired::Chat {
                    prompt,
                    completion,
                    desirable,
                    tools,
                }
            }
            (prompt, _) => return Err(mixed_styles("completion", &prompt)),
        }
    } else if object.contains_key("conversations") {
        let Some(Example::Sft(SftExample::Chat { messages, .. })) =
            super::sharegpt::parse_sft(object)?.pop()
        else {
            return Err(FieldError::new("conversations", "not a conversation"));
        };
        whole(messages, "conversations")?
    } else {
        let messages = parse_messages(required(object, "messages")?, "messages")?;
        check_conversation(&messages, "messages", Ending::Assistant)?;
        whole(messages, "messages")?
    };
    Ok(vec![Example::Unpaired(unpaired)])
}

/// The record's `label` (TRL) or `kto_tag` (LLaMA-Factory): a boolean.
fn unpaired_label(object: &Object) -> Result<bool, FieldError> {
    let key = if object.contains_key("label") {
        "label"
    } else {
        "kto_tag"
    };
    match required(object, key)? {
        Value::Bool(label) => Ok(*label),
        other => Err(FieldError::new(
            key,
            format!(
                "expected a boolean (true: desirable), found {}",
                super::fields::type_name(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_prompt_split_keeps_the_space_with_the_answer() {
        let chosen = "The sky is blue";
        let rejected = "The sky is green";
        let split = shared_prefix_len(chosen, rejected);
        assert_eq!(&chosen[..split], "The sky is");
        assert_eq!(&chosen[split..], " blue");
    }

    #[test]
    fn string_prompt_split_respects_char_boundaries() {
        let split = shared_prefix_len("héllo wörld", "héllo wärld");
        assert_eq!(&"héllo wörld"[..split], "héllo w");
    }
}
