//! Each format and its field variants, parsed into the common types; and detection.

use serde_json::{Value, json};
use temper_data::formats::detect;
use temper_data::{DetectError, Example, Format, Message, Preference, Role, SftExample, Turns};

fn parse(format: Format, record: Value) -> Vec<Example> {
    format
        .parse(&record)
        .unwrap_or_else(|e| panic!("{format}: {e}"))
}

fn parse_err(format: Format, record: Value) -> String {
    format
        .parse(&record)
        .expect_err("record should be invalid")
        .to_string()
}

fn chat(examples: &[Example]) -> (&[Message], usize) {
    match &examples[0] {
        Example::Sft(SftExample::Chat {
            messages,
            completion_start,
            ..
        }) => (messages, *completion_start),
        other => panic!("expected a chat example, got {other:?}"),
    }
}

fn pair(example: &Example) -> (&[Message], &[Message], &[Message]) {
    match example {
        Example::Preference(Preference::Chat {
            prompt,
            chosen,
            rejected,
            ..
        }) => (prompt, chosen, rejected),
        other => panic!("expected a chat pair, got {other:?}"),
    }
}

#[test]
fn alpaca_joins_instruction_and_input_and_keeps_system_and_history() {
    let examples = parse(
        Format::Alpaca,
        json!({"instruction": "Translate", "input": "Hi", "output": "Salut", "system": "Be brief.",
               "history": [["Q1", "A1"]]}),
    );
    let (messages, start) = chat(&examples);
    assert_eq!(
        messages,
        [
            Message::system("Be brief."),
            Message::user("Q1"),
            Message::assistant("A1"),
            Message::user("Translate\nHi"),
            Message::assistant("Salut"),
        ]
    );
    assert_eq!(start, 0);
    let plain_examples = parse(Format::Alpaca, json!({"instruction": "Add", "output": "2"}));
    let (plain, _) = chat(&plain_examples);
    assert_eq!(plain, [Message::user("Add"), Message::assistant("2")]);
}

#[test]
fn alpaca_multi_turn_conversations() {
    let examples = parse(
        Format::Alpaca,
        json!({"system": "S", "conversations": [
            {"instruction": "a", "input": "", "output": "b"},
            {"instruction": "c", "input": "d", "output": "e"}]}),
    );
    let (messages, _) = chat(&examples);
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(messages[3].content, "c\nd");
}

#[test]
fn alpaca_preference_gives_one_pair() {
    let examples = parse(
        Format::AlpacaPreference,
        json!({"instruction": "Add 1 and 1", "input": "", "chosen": "2", "rejected": "3"}),
    );
    let (prompt, chosen, rejected) = pair(&examples[0]);
    assert_eq!(prompt, [Message::user("Add 1 and 1")]);
    assert_eq!(chosen, [Message::assistant("2")]);
    assert_eq!(rejected, [Message::assistant("3")]);
}

#[test]
fn sharegpt_roles_system_and_tools() {
    let examples = parse(
        Format::ShareGpt,
        json!({"system": "S", "tools": "[{\"name\": \"add\"}]", "conversations": [
            {"from": "human", "value": "1+1?"},
            {"from": "function_call", "value": "{\"name\": \"add\", \"arguments\": {\"a\": 1}}"},
            {"from": "observation", "value": "2"},
            {"from": "gpt", "value": "2."},
            {"from": "user", "value": "thanks"},
            {"from": "assistant", "value": "welcome"}]}),
    );
    let Example::Sft(SftExample::Chat {
        messages, tools, ..
    }) = &examples[0]
    else {
        panic!()
    };
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(
        messages[2].tool_calls.as_ref().unwrap()[0]["function"]["name"],
        "add"
    );
    assert_eq!(tools.as_ref().unwrap(), &vec![json!({"name": "add"})]);
}

#[test]
fn sharegpt_accepts_role_and_content_keys() {
    let examples = parse(
        Format::ShareGpt,
        json!({"conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    );
    assert_eq!(
        chat(&examples).0,
        [Message::user("a"), Message::assistant("b")]
    );
}

#[test]
fn sharegpt_preference_llama_factory_style() {
    let examples = parse(
        Format::ShareGptPreference,
        json!({"conversations": [{"from": "human", "value": "q"}],
               "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}),
    );
    let (prompt, chosen, rejected) = pair(&examples[0]);
    assert_eq!(
        (
            prompt.len(),
            chosen[0].content.as_str(),
            rejected[0].content.as_str()
        ),
        (1, "good", "bad")
    );
}

#[test]
fn labelled_candidates_give_a_pair_per_turn_with_chosen_history() {
    let examples = parse(
        Format::ShareGptLabelled,
        json!({"conversations": [
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "good1", "label": "chosen"},
            {"from": "gpt", "value": "bad1", "label": "rejected"},
            {"from": "human", "value": "q2"},
            [{"from": "gpt", "value": "bad2", "label": "rejected"},
             {"from": "gpt", "value": "good2", "label": "chosen"},
             {"from": "gpt", "value": "worse2", "label": "rejected"}]]}),
    );
    assert_eq!(examples.len(), 2);
    let (prompt, chosen, rejected) = pair(&examples[1]);
    assert_eq!(
        prompt,
        [
            Message::user("q1"),
            Message::assistant("good1"),
            Message::user("q2")
        ]
    );
    assert_eq!(
        (chosen[0].content.as_str(), rejected[0].content.as_str()),
        ("good2", "bad2")
    );
}

#[test]
fn trl_standard_and_conversational_variants() {
    assert_eq!(
        parse(Format::TrlText, json!({"text": "hello"})),
        [Example::Sft(SftExample::Text {
            text: "hello".into()
        })]
    );
    assert_eq!(
        parse(
            Format::TrlPromptCompletion,
            json!({"prompt": "a", "completion": " b"})
        ),
        [Example::Sft(SftExample::Completion {
            prompt: "a".into(),
            completion: " b".into()
        })]
    );
    let examples = parse(
        Format::TrlPromptCompletion,
        json!({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}),
    );
    assert_eq!(
        chat(&examples),
        (&[Message::user("a"), Message::assistant("b")][..], 1)
    );
    assert_eq!(
        parse(
            Format::TrlPreference,
            json!({"prompt": "p", "chosen": " c", "rejected": " r"})
        ),
        [Example::Preference(Preference::Text {
            prompt: "p".into(),
            chosen: " c".into(),
            rejected: " r".into()
        })]
    );
    let examples = parse(
        Format::TrlMessages,
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                             {"role": "assistant", "content": "c"}]}),
    );
    assert_eq!(chat(&examples).0[0].content, "ab");
}

#[test]
fn implicit_prompt_is_the_shared_prefix() {
    let examples = parse(
        Format::TrlImplicitPreference,
        json!({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                          {"role": "user", "content": "q2"}, {"role": "assistant", "content": "good"}],
               "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "bad"}]}),
    );
    let (prompt, chosen, rejected) = pair(&examples[0]);
    assert_eq!(prompt.len(), 3);
    assert_eq!(
        (chosen, rejected),
        (
            &[Message::assistant("good")][..],
            &[Message::assistant("bad")][..]
        )
    );
    let text = parse(
        Format::TrlImplicitPreference,
        json!({"chosen": "Sky is blue", "rejected": "Sky is red"}),
    );
    assert_eq!(
        text,
        [Example::Preference(Preference::Text {
            prompt: "Sky is".into(),
            chosen: " blue".into(),
            rejected: " red".into()
        })]
    );
    let error = parse_err(
        Format::TrlImplicitPreference,
        json!({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
               "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "b"}]}),
    );
    assert!(
        error.contains("must share their prompt and differ from an assistant message on"),
        "{error}"
    );
}

#[test]
fn rlvr_rows_keep_ground_truth_datasets_and_extra_columns() {
    let examples = parse(
        Format::OpenInstructRlvr,
        json!({"messages": [{"role": "user", "content": "1+1?"}], "ground_truth": ["2"], "dataset": ["gsm8k", "math"], "id": 7}),
    );
    let Example::Rlvr(rlvr) = &examples[0] else {
        panic!()
    };
    assert_eq!(rlvr.ground_truth, Some(json!(["2"])));
    assert_eq!(rlvr.datasets, ["gsm8k", "math"]);
    assert_eq!(rlvr.extra["id"], 7);
    let examples = parse(
        Format::TrlPromptOnly,
        json!({"prompt": "2+2=", "answer": "4"}),
    );
    let Example::Rlvr(rlvr) = &examples[0] else {
        panic!()
    };
    assert_eq!(rlvr.prompt, Turns::Text("2+2=".into()));
    assert_eq!(rlvr.extra["answer"], "4");
}

#[test]
fn detection_picks_exactly_one_format() {
    let cases = [
        (
            json!({"instruction": "a", "input": "", "output": "b"}),
            Format::Alpaca,
        ),
        (
            json!({"conversations": [{"instruction": "a", "output": "b"}]}),
            Format::Alpaca,
        ),
        (
            json!({"instruction": "a", "chosen": "b", "rejected": "c"}),
            Format::AlpacaPreference,
        ),
        (
            json!({"conversations": [{"from": "human", "value": "a"}]}),
            Format::ShareGpt,
        ),
        (
            json!({"conversations": [], "chosen": {}, "rejected": {}}),
            Format::ShareGptPreference,
        ),
        (
            json!({"conversations": [{"from": "gpt", "value": "a", "label": "chosen"}]}),
            Format::ShareGptLabelled,
        ),
        (json!({"text": "a", "id": 1}), Format::TrlText),
        (json!({"messages": []}), Format::TrlMessages),
        (
            json!({"prompt": "a", "completion": "b"}),
            Format::TrlPromptCompletion,
        ),
        (
            json!({"prompt": "a", "chosen": "b", "rejected": "c"}),
            Format::TrlPreference,
        ),
        (
            json!({"chosen": [], "rejected": []}),
            Format::TrlImplicitPreference,
        ),
        (
            json!({"messages": [], "ground_truth": "1", "dataset": "gsm8k"}),
            Format::OpenInstructRlvr,
        ),
        (json!({"prompt": "a", "answer": "b"}), Format::TrlPromptOnly),
    ];
    for (record, expected) in cases {
        assert_eq!(detect(&record), Ok(expected), "{record}");
    }
    assert_eq!(
        detect(&json!({"question": "a"})),
        Err(DetectError::NoMatch {
            fields: vec!["question".into()]
        })
    );
    assert!(matches!(
        detect(&json!({"prompt": "a", "messages": [], "ground_truth": "1"})),
        Err(DetectError::Ambiguous { candidates, .. }) if candidates == [Format::OpenInstructRlvr, Format::TrlPromptOnly]
    ));
    assert_eq!(detect(&json!([1])), Err(DetectError::NotAnObject));
}

#[test]
fn field_errors_name_the_field() {
    let cases = [
        (
            Format::TrlMessages,
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}),
            "field `messages[1].role`: unknown role `bot` (expected system, user, assistant or tool)",
        ),
        (
            Format::TrlMessages,
            json!({"messages": [{"role": "user", "content": "a"}]}),
            "field `messages`: ends with a user message; the last message must be the assistant's",
        ),
        (
            Format::TrlMessages,
            json!({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}),
            "field `messages[0].content`: expected a string, found a number",
        ),
        (
            Format::TrlPreference,
            json!({"prompt": "p", "chosen": " a", "rejected": " a"}),
            "field `rejected`: identical to `chosen`",
        ),
        (
            Format::TrlPreference,
            json!({"prompt": [{"role": "user", "content": "a"}], "chosen": [{"role": "user", "content": "b"}], "rejected": [{"role": "assistant", "content": "c"}]}),
            "field `chosen[0].role`: a completion must start with an assistant message, found user",
        ),
        (
            Format::Alpaca,
            json!({"instruction": "a", "output": " "}),
            "field `output`: completion is empty",
        ),
        (
            Format::Alpaca,
            json!({"instruction": "a", "output": "b", "history": [["q"]]}),
            "field `history[0]`: expected [prompt, response], found 1 items",
        ),
        (
            Format::ShareGpt,
            json!({"conversations": [{"from": "gpt", "value": "a"}]}),
            "field `conversations[0].role`: assistant message at the start: roles out of order",
        ),
        (
            Format::ShareGptPreference,
            json!({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}}),
            "field `rejected`: missing",
        ),
        (
            Format::OpenInstructRlvr,
            json!({"messages": [{"role": "user", "content": "q"}], "ground_truth": "1", "dataset": 5}),
            "field `dataset`: expected a verifier name or a list of names, found a number",
        ),
        (
            Format::TrlText,
            json!(["not", "an", "object"]),
            "expected an object, found an array",
        ),
    ];
    for (format, record, expected) in cases {
        assert_eq!(parse_err(format, record), expected);
    }
}

#[test]
fn string_prompt_beside_whole_conversations_takes_the_shared_prefix() {
    // UltraFeedback-binarized / Tülu 3 rows, as TRL's maybe_extract_prompt reads them.
    let record = json!({"prompt": "What is 2 + 2?",
        "chosen": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "5"}]});
    assert_eq!(detect(&record), Ok(Format::TrlPreference));
    let examples = parse(Format::TrlPreference, record);
    let (prompt, chosen, rejected) = pair(&examples[0]);
    assert_eq!(prompt, [Message::user("What is 2 + 2?")]);
    assert_eq!(
        (chosen[0].content.as_str(), rejected[0].content.as_str()),
        ("4", "5")
    );
}

#[test]
fn sharegpt_errors_name_the_records_own_indices() {
    let error = parse_err(
        Format::ShareGpt,
        json!({"system": "S", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}),
    );
    assert_eq!(
        error,
        "field `conversations[1].role`: user message after a user message: roles out of order"
    );
    let error = parse_err(
        Format::Alpaca,
        json!({"conversations": [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": ""}]}),
    );
    assert_eq!(
        error,
        "field `conversations[1].output`: completion is empty"
    );
}

#[test]
fn labelled_candidates_must_say_something_and_null_labels_are_no_labels() {
    let error = parse_err(
        Format::ShareGptLabelled,
        json!({"conversations": [{"from": "human", "value": "q"},
            [{"from": "gpt", "value": "a", "label": "chosen"}, {"from": "gpt", "value": " ", "label": "rejected"}]]}),
    );
    assert!(error.contains("empty assistant message"), "{error}");
    let record = json!({"conversations": [{"from": "human", "value": "q", "label": null},
        {"from": "gpt", "value": "a", "label": "chosen"}, {"from": "gpt", "value": "b", "label": "rejected"}]});
    assert_eq!(detect(&record), Ok(Format::ShareGptLabelled));
    assert_eq!(parse(Format::ShareGptLabelled, record).len(), 1);
}

/// A loaded file's examples are of its format's kind, in the type: one vector of SFT
/// examples, preference pairs or RLVR prompts.
#[test]
fn a_loaded_file_is_a_vector_of_one_kind() {
    use temper_data::{DataKind, Examples, dataset};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data");
    for (file, kind) in [
        ("alpaca.jsonl", DataKind::Sft),
        ("sharegpt_labelled.jsonl", DataKind::Preference),
        ("trl_preference.parquet", DataKind::Preference),
        ("openinstruct_rlvr.jsonl", DataKind::Rlvr),
    ] {
        let data = dataset::load(&root.join(file), None, false).unwrap();
        assert_eq!(data.examples.kind(), kind, "{file}");
        assert_eq!(data.examples.iter().count(), data.examples.len(), "{file}");
        assert!(data.examples.iter().all(|e| e.kind() == kind), "{file}");
    }
    // Examples of two kinds do not make one set; the error names the first stranger.
    let sft = parse(Format::TrlText, json!({"text": "hi"})).remove(0);
    let pair = parse(
        Format::TrlPreference,
        json!({"prompt": "p", "chosen": "a", "rejected": "b"}),
    )
    .remove(0);
    let mixed = Examples::new(vec![sft.clone(), sft, pair]).unwrap_err();
    assert_eq!(mixed.index, 2);
}
