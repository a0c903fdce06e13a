//! Multi-turn SFT with every assistant turn trained, under the real chat templates of
//! fixtures/templates (Qwen2.5, Qwen3, Llama 3.1, Mistral, OLMo 2, Gemma 3, SmolLM2) paired with
//! the bundled tokenizer. Some of them render a turn differently once later turns follow
//! (Qwen3 writes `<think>` blocks only after the last user message; Mistral writes the system
//! message into the last user turn): those turns are located in the single rendering of the
//! whole conversation instead of by prefixes, and the others keep TRL's prefix spans exactly.

mod common;

use std::path::Path;

use serde_json::{Value, json};
use temper_data::tokenize::{TokenizedSequence, tokenize};
use temper_data::{
    ChatTokenizer, Example, LossMask, Message, SftExample, TokenizeOptions, Tokenized,
};

const TEMPLATES: [&str; 7] = [
    "qwen2.5", "qwen3", "llama3.1", "mistral", "olmo2", "gemma3", "smollm2",
];

/// The bundled tokenizer with a real template and that model's bos/eos.
fn tokenizer(name: &str) -> ChatTokenizer {
    let path = common::fixture(&format!("templates/{name}.json"));
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let config = json!({
        "chat_template": spec["chat_template"],
        "bos_token": spec["bos_token"],
        "eos_token": spec["eos_token"],
    });
    let inner =
        tokenizers::Tokenizer::from_file(common::fixture("tokenizer/tokenizer.json")).unwrap();
    ChatTokenizer::from_parts(
        inner,
        &config,
        None,
        None,
        Path::new("tokenizer_config.json"),
    )
    .unwrap()
}

/// What each template writes after an assistant turn's content (the turn's last trained text).
fn end_of_turn(name: &str) -> &'static str {
    match name {
        "qwen2.5" | "qwen3" | "smollm2" => "<|im_end|>\n",
        "llama3.1" => "<|eot_id|>",
        "mistral" => "</s>",
        "olmo2" => "<|endoftext|>",
        "gemma3" => "<end_of_turn>\n",
        other => panic!("no end of turn for {other}"),
    }
}

fn reasoning(content: &str, reasoning: &str) -> Message {
    let mut message = Message::assistant(content);
    message.reasoning_content = Some(reasoning.to_string());
    message
}

fn sequence(
    tokenizer: &ChatTokenizer,
    messages: &[Message],
    mask: LossMask,
) -> Result<TokenizedSequence, String> {
    let example = Example::Sft(SftExample::Chat {
        messages: messages.to_vec(),
        completion_start: 0,
        tools: None,
    });
    let options = TokenizeOptions {
        loss_mask: mask,
        ..TokenizeOptions::default()
    };
    let outcome = tokenize(tokenizer, &example, &options).map_err(|e| e.to_string())?;
    match outcome.tokenized {
        Tokenized::Sequence(sequence) => Ok(sequence),
        other => panic!("not a sequence: {other:?}"),
    }
}

/// Each run of trained tokens, decoded.
fn trained_runs(tokenizer: &ChatTokenizer, sequence: &TokenizedSequence) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut previous = false;
    for (&id, &trained) in sequence.input_ids.iter().zip(&sequence.loss_mask) {
        match (trained, previous) {
            (true, true) => runs.last_mut().unwrap().push(id),
            (true, false) => runs.push(vec![id]),
            _ => {}
        }
        previous = trained;
    }
    runs.iter()
        .map(|ids| tokenizer.decode(ids, false).unwrap())
        .collect()
}

fn render(tokenizer: &ChatTokenizer, messages: &[Message], generation_prompt: bool) -> String {
    tokenizer
        .template(false)
        .unwrap()
        .render(messages, None, generation_prompt)
        .unwrap()
}

const ANSWERS: [&str; 3] = [
    "Emma has 12 + 7 = 19 apples.",
    "Then she has 19 - 4 = 15 apples left.",
    "15 = 12 + 7 - 4.",
];

/// A conversation of three answered questions, with a system message or without.
fn conversation(system: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    if system {
        messages.push(Message::system("You are a careful math tutor."));
    }
    let questions = [
        "Emma has 12 apples and buys 7 more. How many?",
        "And if she gives 4 to Ben?",
        "Write that as one equation.",
    ];
    for (question, answer) in questions.into_iter().zip(ANSWERS) {
        messages.push(Message::user(question));
        messages.push(Message::assistant(answer));
    }
    messages
}

/// Text a template may write between the generation prompt and a turn's content: Mistral's
/// space, and Qwen3's `<think>` block on the turn after the last user message.
fn allowed_lead(lead: &str) -> bool {
    ["", " ", "<think>\n\n</think>\n\n"].contains(&lead)
}

#[test]
fn every_assistant_turn_is_trained_under_every_real_template() {
    for name in TEMPLATES {
        let tokenizer = tokenizer(name);
        let end = end_of_turn(name);
        for system in [false, true] {
            let messages = conversation(system);
            for mask in [LossMask::Completion, LossMask::AllAssistant] {
                let sequence = sequence(&tokenizer, &messages, mask)
                    .unwrap_or_else(|e| panic!("{name} system={system} {mask:?}: {e}"));
                let runs = trained_runs(&tokenizer, &sequence);
                assert_eq!(runs.len(), 3, "{name} system={system} {mask:?}: {runs:?}");
                for (run, answer) in runs.iter().zip(ANSWERS) {
                    let lead = run.strip_suffix(&format!("{answer}{end}"));
                    assert!(
                        lead.is_some_and(allowed_lead),
                        "{name} system={system} {mask:?}: trained {run:?}, answer {answer:?}"
                    );
                }
            }
            let sequence = sequence(&tokenizer, &messages, LossMask::LastTurn).unwrap();
            let runs = trained_runs(&tokenizer, &sequence);
            assert_eq!(runs.len(), 1, "{name} system={system}: {runs:?}");
            assert!(
                runs[0].ends_with(&format!("{}{end}", ANSWERS[2])),
                "{runs:?}"
            );
        }
    }
}

/// Where a template keeps earlier turns as they were, the mask is TRL's, computed here the
/// old way: each turn from the end of `template(messages[..i], add_generation_prompt)` to the
/// end of `template(messages[..=i])`, both token prefixes of the whole.
#[test]
fn templates_that_keep_earlier_turns_get_the_prefix_spans() {
    let mut compared = Vec::new();
    for name in TEMPLATES {
        let tokenizer = tokenizer(name);
        for system in [false, true] {
            let messages = conversation(system);
            let ids = |messages: &[Message], generation_prompt: bool| {
                let text = render(&tokenizer, messages, generation_prompt);
                tokenizer.encode(&text, false).unwrap()
            };
            let whole = ids(&messages, false);
            let mut expected = vec![false; whole.len()];
            let mut prefixes_hold = true;
            for i in (1..messages.len()).filter(|&i| i % 2 == usize::from(!system)) {
                let start = ids(&messages[..i], true);
                let through = ids(&messages[..=i], false);
                prefixes_hold &= whole.starts_with(&start) && whole.starts_with(&through);
                if prefixes_hold {
                    expected[start.len()..through.len()].fill(true);
                }
            }
            if !prefixes_hold {
                continue;
            }
            let sequence = sequence(&tokenizer, &messages, LossMask::AllAssistant).unwrap();
            assert_eq!(sequence.input_ids, whole, "{name} system={system}");
            assert_eq!(sequence.loss_mask, expected, "{name} system={system}");
            compared.push((name, system));
        }
    }
    // Qwen3 rewrites earlier turns, Mistral moves the system message; the rest keep them.
    for name in ["qwen2.5", "llama3.1", "olmo2", "gemma3", "smollm2"] {
        for system in [false, true] {
            assert!(compared.contains(&(name, system)), "{compared:?}");
        }
    }
    assert!(!compared.contains(&("qwen3", false)), "{compared:?}");
    assert!(!compared.contains(&("mistral", true)), "{compared:?}");
}

/// Qwen3 drops the reasoning of an assistant turn once a user message follows it: the first
/// turn's rendering through it is no prefix of the whole, yet both turns are trained, each on
/// its text as the whole conversation renders it.
#[test]
fn qwen3_turns_whose_reasoning_is_dropped_are_trained_as_rendered() {
    let tokenizer = tokenizer("qwen3");
    let messages = vec![
        Message::user("Emma has 12 apples and buys 7 more. How many?"),
        reasoning(ANSWERS[0], "12 plus 7 is 19."),
        Message::user("And if she gives 4 to Ben?"),
        reasoning(ANSWERS[1], "19 minus 4 is 15."),
    ];
    let whole = render(&tokenizer, &messages, false);
    let through_first = render(&tokenizer, &messages[..2], false);
    assert!(through_first.contains("<think>\n12 plus 7 is 19.\n</think>"));
    assert!(!whole.starts_with(&through_first), "{whole}");
    assert!(!whole.contains("12 plus 7"), "{whole}");

    for mask in [LossMask::Completion, LossMask::AllAssistant] {
        let sequence = sequence(&tokenizer, &messages, mask).unwrap();
        assert_eq!(tokenizer.decode(&sequence.input_ids, false).unwrap(), whole);
        assert_eq!(
            trained_runs(&tokenizer, &sequence),
            [
                format!("{}<|im_end|>\n", ANSWERS[0]),
                format!(
                    "<think>\n19 minus 4 is 15.\n</think>\n\n{}<|im_end|>\n",
                    ANSWERS[1]
                ),
            ],
            "{mask:?}"
        );
    }
}

/// A located turn is the assistant's, never a user message with the same text; reasoning
/// written into the content (`<think>...</think>answer`) is dropped as the template drops it.
#[test]
fn qwen3_located_turns_are_the_assistants() {
    let tokenizer = tokenizer("qwen3");
    let messages = vec![
        Message::user("Yes"),
        Message::assistant("Yes"),
        Message::user("No"),
        Message::assistant("<think>\nsaying no\n</think>\n\nNo"),
        Message::user("Maybe"),
        Message::assistant("Maybe"),
    ];
    let sequence = sequence(&tokenizer, &messages, LossMask::AllAssistant).unwrap();
    assert_eq!(
        trained_runs(&tokenizer, &sequence),
        [
            "Yes<|im_end|>\n",
            "No<|im_end|>\n",
            "<think>\n\n</think>\n\nMaybe<|im_end|>\n",
        ]
    );
    let untrained: Vec<u32> = sequence
        .input_ids
        .iter()
        .zip(&sequence.loss_mask)
        .filter(|&(_, &m)| !m)
        .map(|(&id, _)| id)
        .collect();
    let untrained = tokenizer.decode(&untrained, false).unwrap();
    assert!(
        untrained.starts_with("<|im_start|>user\nYes<|im_end|>\n<|im_start|>assistant\n"),
        "{untrained}"
    );
}

/// Mistral writes the system message into the last user turn, so no turn's prompt is a
/// prefix of the whole conversation (where the system message is dropped): each turn is
/// found in the whole, and a turn weighted 0 stays untrained.
#[test]
fn mistral_turns_are_found_when_the_system_message_moves() {
    let tokenizer = tokenizer("mistral");
    let mut messages = conversation(true);
    let prompt = render(&tokenizer, &messages[..2], true);
    assert!(
        !render(&tokenizer, &messages, false).starts_with(&prompt),
        "{prompt}"
    );
    messages[4].loss_weight = Some(0.0);
    let sequence = sequence(&tokenizer, &messages, LossMask::Completion).unwrap();
    let runs = trained_runs(&tokenizer, &sequence);
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (run, answer) in runs.iter().zip([ANSWERS[0], ANSWERS[2]]) {
        assert_eq!(run.trim_start(), format!("{answer}</s>"));
    }
}

/// A ShareGPT conversation with a tool call (`function_call`), its result (`observation`) and
/// the tools offered renders through the real templates that take tools, with every assistant
/// turn trained: the call's name and its result are in the sequence, and the call and the
/// final answer are trained (Qwen3's call turn, rendered with a `<think>` block only when it
/// is last, is located in the whole rendering).
#[test]
fn sharegpt_tool_turns_render_through_real_templates_with_tools() {
    let record = json!({"tools": "[{\"type\": \"function\", \"function\": {\"name\": \"add\", \"description\": \"Add two numbers\", \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}, \"b\": {\"type\": \"number\"}}}}}]",
        "conversations": [
            {"from": "human", "value": "What is 17 + 25?"},
            {"from": "function_call", "value": "{\"name\": \"add\", \"arguments\": {\"a\": 17, \"b\": 25}}"},
            {"from": "observation", "value": "42"},
            {"from": "gpt", "value": "It is 42."}]});
    let examples = temper_data::Format::ShareGpt.parse(&record).unwrap();
    let options = TokenizeOptions {
        loss_mask: LossMask::AllAssistant,
        ..TokenizeOptions::default()
    };
    // The templates that render tool calls (SmolLM2's, Gemma 3's and OLMo 2's do not).
    for name in ["qwen2.5", "qwen3", "llama3.1"] {
        let tokenizer = tokenizer(name);
        let outcome =
            tokenize(&tokenizer, &examples[0], &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Tokenized::Sequence(sequence) = outcome.tokenized else {
            panic!("{name}: not a sequence")
        };
        let text = tokenizer.decode(&sequence.input_ids, false).unwrap();
        assert!(
            text.contains("add") && text.contains("42"),
            "{name}: {text}"
        );
        let trained: Vec<u32> = sequence
            .input_ids
            .iter()
            .zip(&sequence.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(&id, _)| id)
            .collect();
        let trained = tokenizer.decode(&trained, false).unwrap();
        assert!(trained.contains("It is 42."), "{name}: trained {trained:?}");
        // The tool call is an assistant turn: trained too.
        assert!(trained.contains("\"add\""), "{name}: trained {trained:?}");
    }
}

/// A rewritten turn whose content also occurs in its end-of-turn markup (`im` in
/// `<|im_end|>`) is found where the content ends, right before the end of turn.
#[test]
fn content_that_also_occurs_in_the_end_of_turn_markup_is_found_before_it() {
    let tokenizer = tokenizer("qwen3");
    let messages = vec![
        Message::user("Say the word."),
        reasoning("im", "A short word."),
        Message::user("Again?"),
        reasoning("end", "Another."),
    ];
    let sequence = sequence(&tokenizer, &messages, LossMask::AllAssistant).unwrap();
    assert_eq!(
        trained_runs(&tokenizer, &sequence),
        [
            "im<|im_end|>\n".to_string(),
            "<think>\nAnother.\n</think>\n\nend<|im_end|>\n".to_string(),
        ]
    );
}
