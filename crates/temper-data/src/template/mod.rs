//! Hugging Face chat templates, rendered with minijinja as transformers renders them with
//! Jinja2: `trim_blocks` and `lstrip_blocks` on, loop controls, the `raise_exception` and
//! `strftime_now` globals, Python's string and dict methods, transformers' `tojson`, and the
//! tokenizer's special tokens (`bos_token`, `eos_token`, ...) in the context.

mod builtin;
mod pyjson;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::Value as JinjaValue;
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;
use serde_json::Value;

use crate::types::Message;

/// A template for tokenizers that ship none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinTemplate {
    ChatMl,
    Llama3,
}

impl BuiltinTemplate {
    pub fn source(self) -> &'static str {
        match self {
            BuiltinTemplate::ChatMl => builtin::CHATML,
            BuiltinTemplate::Llama3 => builtin::LLAMA3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltinTemplate::ChatMl => "chatml",
            BuiltinTemplate::Llama3 => "llama3",
        }
    }
}

impl std::str::FromStr for BuiltinTemplate {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "chatml" => Ok(BuiltinTemplate::ChatMl),
            "llama3" => Ok(BuiltinTemplate::Llama3),
            other => Err(format!(
                "unknown built-in template `{other}` (expected chatml or llama3)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template failed: {0}")]
    Render(String),
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    environment: Environment<'static>,
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// Steps one render may take (minijinja's fuel): real templates take a few hundred per
/// message, so this renders conversations of tens of thousands of turns, and stops a template
/// whose loops would never end (`range(100000)` nested) within seconds.
pub const RENDER_STEPS: u64 = 50_000_000;

impl ChatTemplate {
    /// Compiles `source`. `special_tokens` maps names such as `bos_token` to their text; only
    /// tokens the tokenizer defines are given, as in transformers.
    pub fn new(
        source: &str,
        special_tokens: BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let mut environment = Environment::new();
        environment.set_trim_blocks(true);
        environment.set_lstrip_blocks(true);
        environment.set_keep_trailing_newline(false);
        environment.set_fuel(Some(RENDER_STEPS));
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_filter("tojson", pyjson::tojson);
        environment.add_function("raise_exception", raise_exception);
        environment.add_function("strftime_now", strftime_now);
        environment
            .add_template_owned(TEMPLATE_NAME, without_generation_tags(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            environment,
            special_tokens,
        })
    }

    pub fn builtin(template: BuiltinTemplate, special_tokens: BTreeMap<String, String>) -> Self {
        // ok: the built-in sources are constants, compiled by this module's tests.
        Self::new(template.source(), special_tokens).expect("built-in templates compile")
    }

    /// Renders a conversation as `tokenizer.apply_chat_template(messages, tools=tools,
    /// add_generation_prompt=..., tokenize=False)` does.
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with(
            messages,
            tools,
            add_generation_prompt,
            &serde_json::Map::new(),
        )
    }

    /// [`render`](Self::render) with extra template variables (transformers'
    /// `**template_kwargs`, e.g. `enable_thinking`). Messages may be any serialisable list.
    pub fn render_with<M: Serialize + ?Sized>(
        &self,
        messages: &M,
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, Value>,
    ) -> Result<String, TemplateError> {
        let mut context: BTreeMap<String, JinjaValue> = self
            .special_tokens
            .iter()
            .map(|(name, text)| (name.clone(), JinjaValue::from(text.as_str())))
            .collect();
        for (key, value) in extra {
            context.insert(key.clone(), JinjaValue::from_serialize(value));
        }
        context.insert("messages".into(), JinjaValue::from_serialize(messages));
        context.insert(
            "tools".into(),
            tools.map_or(JinjaValue::from(()), JinjaValue::from_serialize),
        );
        context.insert(
            "add_generation_prompt".into(),
            JinjaValue::from(add_generation_prompt),
        );
        let template = self
            .environment
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        template.render(context).map_err(|e| {
            TemplateError::Render(match e.kind() {
                ErrorKind::OutOfFuel => format!(
                    "it ran {RENDER_STEPS} steps without finishing (a loop that never ends?)"
                ),
                _ => describe(&e),
            })
        })
    }
}

/// transformers' `raise_exception(message)`: the template rejects the conversation.
fn raise_exception(message: String) -> Result<JinjaValue, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `strftime_now(format)`: the local time, formatted as Python's strftime does.
fn strftime_now(format: String) -> Result<String, Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: bad format `{format}`"),
        )
    })?;
    Ok(out)
}

/// Error text with minijinja's cause chain, on one line.
fn describe(error: &Error) -> String {
    let mut text = match error.kind() {
        ErrorKind::InvalidOperation => error.detail().unwrap_or("invalid operation").to_string(),
        _ => error.to_string(),
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// transformers' `{% generation %}...{% endgeneration %}` marks assistant spans for its
/// `return_assistant_tokens_mask`; Temper finds those spans itself, so the tags become no-op
/// blocks (keeping their whitespace control).
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        // The closing marker after the opening one: in `{%}` the `%` is shared, not a tag.
        let Some(end) = tag[2..].find("%}").map(|at| at + 2) else {
            break;
        };
        let inner = &tag[2..end];
        let (left, body, right) = split_trim_markers(inner);
        let replacement = match body {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(keyword) => {
                out.push_str("{%");
                out.push_str(left);
                out.push(' ');
                out.push_str(keyword);
                out.push(' ');
                out.push_str(right);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits `- body -` into its whitespace-control markers and the trimmed body.
fn split_trim_markers(inner: &str) -> (&str, &str, &str) {
    let left = if inner.starts_with(['-', '+']) {
        &inner[..1]
    } else {
        ""
    };
    let right = if inner.len() > left.len() && inner.ends_with(['-', '+']) {
        &inner[inner.len() - 1..]
    } else {
        ""
    };
    let body = inner[left.len()..inner.len() - right.len()].trim();
    (left, body, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("bos_token".to_string(), "<s>".to_string()),
            ("eos_token".to_string(), "</s>".to_string()),
        ])
    }

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let template = ChatTemplate::builtin(BuiltinTemplate::ChatMl, tokens());
        let text = template.render(&[Message::user("Hi")], None, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_trims_content_and_starts_with_bos() {
        let template = ChatTemplate::builtin(BuiltinTemplate::Llama3, tokens());
        let text = template
            .render(
                &[Message::user(" Hi \n"), Message::assistant("Yo")],
                None,
                false,
            )
            .unwrap();
        assert_eq!(
            text,
            "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
        );
    }

    /// Found by `fuzz/run.sh` (chat_template): `{%}` once panicked on a slice whose end came
    /// before its start while generation tags were rewritten.
    #[test]
    fn a_tag_marker_sharing_its_percent_sign_is_a_syntax_error_not_a_panic() {
        for source in ["{%}", "x{%}y{% endgeneration %}", "{%-}"] {
            assert!(ChatTemplate::new(source, tokens()).is_err(), "{source}");
        }
    }

    /// A template whose loops would run for hours once never returned.
    #[test]
    fn a_runaway_template_stops_and_a_long_conversation_does_not() {
        let runaway = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            tokens(),
        )
        .unwrap();
        let error = runaway
            .render(&[Message::user("x")], None, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("steps without finishing"), "{error}");
        let long: Vec<Message> = (0..20_000)
            .map(|i| match i % 2 {
                0 => Message::user("question"),
                _ => Message::assistant("answer"),
            })
            .collect();
        let chatml = ChatTemplate::builtin(BuiltinTemplate::ChatMl, tokens());
        let text = chatml.render(&long, None, false).unwrap();
        assert_eq!(text.matches("<|im_start|>").count(), 20_000);
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let template =
            ChatTemplate::new("{{ raise_exception('roles must alternate') }}", tokens()).unwrap();
        let error = template
            .render(&[Message::user("x")], None, false)
            .unwrap_err();
        assert!(
            error.to_string().contains("roles must alternate"),
            "{error}"
        );
    }

    #[test]
    fn generation_tags_become_plain_blocks() {
        let source = "{% for m in messages %}{%- generation -%} {{ m.content }} {%- endgeneration %}{% endfor %}";
        assert_eq!(
            without_generation_tags(source),
            "{% for m in messages %}{%- if true -%} {{ m.content }} {%- endif %}{% endfor %}"
        );
        let template = ChatTemplate::new(source, tokens()).unwrap();
        assert_eq!(
            template.render(&[Message::user("a")], None, false).unwrap(),
            "a"
        );
    }

    #[test]
    fn python_methods_and_trailing_newline_follow_jinja2() {
        let template =
            ChatTemplate::new("{{ messages[0].content.strip().upper() }}\n", tokens()).unwrap();
        assert_eq!(
            template
                .render(&[Message::user("  hi ")], None, false)
                .unwrap(),
            "HI"
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(
            ChatTemplate::new("{% if %}", tokens()),
            Err(TemplateError::Syntax(_))
        ));
    }
}
