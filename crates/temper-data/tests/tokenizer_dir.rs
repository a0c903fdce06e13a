//! Loading a Hugging Face tokenizer directory: named template lists, `chat_template.jinja`,
//! special tokens written as AddedToken objects, a tokenizer without a template, and
//! transformers' `strftime_now`.

mod common;

use std::path::Path;

use serde_json::{Value, json};
use temper_data::check::{CheckError, check_file};
use temper_data::tokenize::{tokenize, tokenize_all};
use temper_data::{
    ChatTokenizer, Example, Format, Message, TokenizeOptions, TokenizerError, synthetic,
};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A tokenizer directory with the fixture tokenizer.json and the given config (and jinja file).
fn directory(config: Value, jinja: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixture("tokenizer/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    if let Some(source) = jinja {
        std::fs::write(dir.path().join("chat_template.jinja"), source).unwrap();
    }
    dir
}

fn render(tokenizer: &ChatTokenizer, tools: bool) -> String {
    let tool_list = [json!({"name": "add"})];
    tokenizer
        .template(tools)
        .unwrap()
        .render(
            &[Message::user("hi")],
            tools.then_some(&tool_list[..]),
            false,
        )
        .unwrap()
}

#[test]
fn named_templates_pick_default_or_tool_use_or_the_named_one() {
    let config = json!({
        "eos_token": {"content": "<|im_end|>", "special": true},
        "chat_template": [{"name": "default", "template": CHATML}, {"name": "tool_use", "template": "TOOLS {{ tools | length if tools else 0 }}"}],
    });
    let dir = directory(config, None);
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    assert_eq!(
        render(&tokenizer, false),
        "<|im_start|>user\nhi<|im_end|>\n"
    );
    assert_eq!(render(&tokenizer, true), "TOOLS 1");
    assert_eq!(
        tokenizer.eos_id().unwrap(),
        tokenizer.inner().token_to_id("<|im_end|>").unwrap()
    );
    let named = ChatTokenizer::from_dir(dir.path(), Some("tool_use")).unwrap();
    assert_eq!(render(&named, false), "TOOLS 0");
    let Err(TokenizerError::UnknownTemplate { available, .. }) =
        ChatTokenizer::from_dir(dir.path(), Some("rag"))
    else {
        panic!("an unknown template name is an error")
    };
    assert_eq!(available, "default, tool_use");
}

#[test]
fn chat_template_jinja_takes_precedence() {
    let dir = directory(
        json!({"chat_template": "CONFIG"}),
        Some("JINJA {{ messages | length }}"),
    );
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    assert_eq!(render(&tokenizer, false), "JINJA 1");
}

#[test]
fn conversational_data_needs_a_template() {
    let dir = directory(json!({"eos_token": "<|im_end|>"}), None);
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    assert!(!tokenizer.has_template());
    let error = check_file(
        &common::fixture("data/trl_messages.jsonl"),
        None,
        Some(&tokenizer),
        &TokenizeOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            CheckError::Tokenizer {
                source: TokenizerError::NoTemplate,
                ..
            }
        ),
        "{error}"
    );
    // Plain-text data needs no template.
    let report = check_file(
        &common::fixture("data/trl_text.jsonl"),
        None,
        Some(&tokenizer),
        &TokenizeOptions::default(),
    )
    .unwrap();
    assert_eq!(report.invalid, 0);
    let mut with_builtin = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    with_builtin.use_builtin_template(temper_data::BuiltinTemplate::ChatMl);
    let report = check_file(
        &common::fixture("data/trl_messages.jsonl"),
        None,
        Some(&with_builtin),
        &TokenizeOptions::default(),
    )
    .unwrap();
    assert_eq!((report.examples, report.invalid), (3, 0));
}

#[test]
fn missing_tokenizer_files_are_errors_naming_the_path() {
    let error = ChatTokenizer::from_dir(Path::new("/nonexistent/tokenizer"), None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/tokenizer/tokenizer.json: "),
        "{error}"
    );
}

#[test]
fn strftime_now_formats_the_current_date() {
    let dir = directory(
        json!({"chat_template": "{{ strftime_now('%Y') }}|{{ strftime_now('%d %b %Y') }}"}),
        None,
    );
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    let text = render(&tokenizer, false);
    let (year, date) = text.split_once('|').unwrap();
    assert_eq!(year.len(), 4);
    assert!(year.chars().all(|c| c.is_ascii_digit()));
    assert!(date.ends_with(year) && date.len() == 11, "{date}");
}

#[test]
fn parallel_tokenisation_keeps_input_order() {
    let tokenizer = common::fixture_tokenizer();
    let examples: Vec<Example> = synthetic::preference_records(300, 1)
        .iter()
        .flat_map(|r| Format::TrlPreference.parse(r).unwrap())
        .collect();
    let options = TokenizeOptions::default();
    let parallel: Vec<_> = tokenize_all(&tokenizer, &examples, &options)
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    let sequential: Vec<_> = examples
        .iter()
        .map(|e| tokenize(&tokenizer, e, &options).unwrap())
        .collect();
    assert_eq!(parallel, sequential);
}

/// Piece-wise encoding (split at added tokens, each piece once per example, ASCII pieces past
/// the NFC normaliser) gives exactly the ids of encoding the whole text.
#[test]
fn piecewise_chat_encoding_equals_whole_text_encoding() {
    let tokenizer = common::fixture_tokenizer();
    let template = tokenizer.template(false).unwrap();
    let mut texts: Vec<String> = synthetic::preference_records(200, 5)
        .iter()
        .flat_map(|r| Format::TrlPreference.parse(r).unwrap())
        .flat_map(|example| {
            let Example::Preference(temper_data::Preference::Chat { prompt, chosen, .. }) = example
            else {
                unreachable!()
            };
            let whole: Vec<Message> = prompt.iter().chain(&chosen).cloned().collect();
            [
                template.render(&prompt, None, true).unwrap(),
                template.render(&whole, None, false).unwrap(),
            ]
        })
        .collect();
    texts.extend(
        [
            "Café déjà vu: naïve Straße, 数学の問題 😀<|im_end|>\n<|im_start|>e\u{301} vs é, Å vs Å",
            "<|im_start|><|im_start|>x<|endoftext|><|im_end|>",
            "  \n\t<|eot_id|> tail  ",
            "",
            "<|im_start| not special <| im_end |>",
        ]
        .map(String::from),
    );
    let mut memo = temper_data::pieces::PieceMemo::default();
    for text in &texts {
        assert_eq!(
            tokenizer.encode_chat(text, &mut memo).unwrap(),
            tokenizer.encode(text, false).unwrap(),
            "{text:?}"
        );
    }
}

/// A tokenizer whose added tokens strip whitespace is encoded whole (piece-wise would differ).
#[test]
fn stripping_added_tokens_fall_back_to_whole_text_encoding() {
    let dir = directory(json!({"eos_token": "<|im_end|>"}), None);
    let path = dir.path().join("tokenizer.json");
    let mut tokenizer_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for token in tokenizer_json["added_tokens"].as_array_mut().unwrap() {
        token["lstrip"] = json!(true);
    }
    std::fs::write(&path, tokenizer_json.to_string()).unwrap();
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    let text = "a  <|im_end|> b";
    let mut memo = temper_data::pieces::PieceMemo::default();
    assert_eq!(
        tokenizer.encode_chat(text, &mut memo).unwrap(),
        tokenizer.encode(text, false).unwrap()
    );
}

/// Truncation saved with a tokenizer is switched off on every way in (transformers ignores it).
#[test]
fn saved_truncation_never_cuts_ids() {
    let mut inner =
        tokenizers::Tokenizer::from_file(common::fixture("tokenizer/tokenizer.json")).unwrap();
    inner
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 3,
            ..Default::default()
        }))
        .unwrap();
    let tokenizer = ChatTokenizer::from_parts(
        inner,
        &json!({}),
        None,
        None,
        Path::new("tokenizer_config.json"),
    )
    .unwrap();
    assert!(
        tokenizer
            .encode("a sentence with well over three tokens", false)
            .unwrap()
            .len()
            > 3
    );
}

/// A `chat_template` that is neither a string nor a list once read as "no chat template".
#[test]
fn a_chat_template_of_the_wrong_type_is_named() {
    for template in [json!(42), json!({"default": CHATML}), json!(true)] {
        let dir = directory(json!({"chat_template": template}), None);
        let error = ChatTokenizer::from_dir(dir.path(), None)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("chat_template must be a string or a list of named templates"),
            "{error}"
        );
    }
}

/// Message content as parts (OpenAI's `text`, LLaMA-Factory's `value`, `reasoning`) and
/// LLaMA-Factory's per-message `loss_weight`: the parts' text is joined, the reasoning reaches
/// the template as `reasoning_content`, and an assistant turn weighted 0 is not trained.
#[test]
fn content_parts_reasoning_and_loss_weight() {
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let dir = directory(
        json!({"eos_token": "<|im_end|>", "chat_template": template}),
        None,
    );
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    let record = json!({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "value": "there"}]},
        {"role": "assistant", "content": [{"type": "reasoning", "text": "greet"}, {"type": "text", "text": "Hello"}], "loss_weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again", "loss_weight": 1}
    ]});
    let examples = Format::TrlMessages.parse(&record).unwrap();
    let Example::Sft(temper_data::SftExample::Chat { messages, .. }) = &examples[0] else {
        panic!("a conversation")
    };
    assert_eq!(messages[0].content, "Hi there");
    assert_eq!(messages[1].content, "Hello");
    assert_eq!(messages[1].reasoning_content.as_deref(), Some("greet"));
    let rendered = tokenizer
        .template(false)
        .unwrap()
        .render(messages, None, false)
        .unwrap();
    assert!(rendered.contains("<think>greet</think>Hello"), "{rendered}");

    let trained_text = |mask: temper_data::LossMask| {
        let options = TokenizeOptions {
            loss_mask: mask,
            ..TokenizeOptions::default()
        };
        let outcome = tokenize(&tokenizer, &examples[0], &options).unwrap();
        let temper_data::Tokenized::Sequence(sequence) = outcome.tokenized else {
            panic!("a sequence")
        };
        let ids: Vec<u32> = sequence
            .input_ids
            .iter()
            .zip(&sequence.loss_mask)
            .filter(|(_, trained)| **trained)
            .map(|(id, _)| *id)
            .collect();
        tokenizer.decode(&ids, false).unwrap()
    };
    // The weighted-0 turn is left out of every mask, `prompt` (every token) included.
    for mask in [
        temper_data::LossMask::Completion,
        temper_data::LossMask::AllAssistant,
        temper_data::LossMask::Prompt,
    ] {
        let text = trained_text(mask);
        assert!(text.contains("Hello again"), "{mask:?}: {text}");
        assert!(!text.contains("greet"), "{mask:?}: {text}");
    }

    let bad = json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y", "loss_weight": 0.5}
    ]});
    let error = Format::TrlMessages.parse(&bad).unwrap_err().to_string();
    assert!(error.contains("messages[1].loss_weight"), "{error}");
    assert!(error.contains("expected 0 or 1"), "{error}");
}

/// A tool-calling message reaches the template with `content` as the record gave it: an empty
/// string stays a string (Qwen3's template adds it to other strings), `null` stays none, and
/// no key stays undefined, as transformers hands dataset messages over.
#[test]
fn tool_call_messages_keep_their_content_key() {
    let template = "{% for m in messages %}{% if m.content is none %}{{ m.role }}:<null>{% elif m.content is defined %}{{ m.role + ':' + m.content }}{% else %}{{ m.role }}:<absent>{% endif %}|{% endfor %}";
    let dir = directory(
        json!({"eos_token": "<|im_end|>", "chat_template": template}),
        None,
    );
    let tokenizer = ChatTokenizer::from_dir(dir.path(), None).unwrap();
    let call = json!([{"type": "function", "function": {"name": "f", "arguments": {}}}]);
    let record = json!({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": call},
        {"role": "tool", "content": "1"},
        {"role": "assistant", "content": null, "tool_calls": call},
        {"role": "tool", "content": "2"},
        {"role": "assistant", "tool_calls": call},
        {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "done"}
    ]});
    let examples = Format::TrlMessages.parse(&record).unwrap();
    let Example::Sft(temper_data::SftExample::Chat { messages, .. }) = &examples[0] else {
        panic!("a conversation")
    };
    let rendered = tokenizer
        .template(false)
        .unwrap()
        .render(messages, None, false)
        .unwrap();
    assert_eq!(
        rendered,
        "user:go|assistant:|tool:1|assistant:<null>|tool:2|assistant:<absent>|tool:3|assistant:done|"
    );
}
