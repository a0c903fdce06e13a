//! Properties: arbitrary input never panics a parser; loss masks select exactly the
//! completion; batching and packing keep every example's content and order.

mod common;

use std::io::Write;

use proptest::prelude::*;
use serde_json::Value;
use temper_data::batch::{collate_packed, collate_pairs, collate_sequences};
use temper_data::check::check_file;
use temper_data::formats::detect;
use temper_data::packing::pack;
use temper_data::tokenize::{TokenizedPair, TokenizedSequence, tokenize};
use temper_data::{
    BuiltinTemplate, Example, Format, LossMask, Message, Preference, SftExample, TokenizeOptions,
    Tokenized,
};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "human",
            "gpt",
            "chosen",
            "rejected",
            "function_call",
            "observation"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop::sample::select(vec![
        "instruction",
        "input",
        "output",
        "system",
        "history",
        "conversations",
        "from",
        "value",
        "role",
        "content",
        "text",
        "messages",
        "prompt",
        "completion",
        "chosen",
        "rejected",
        "label",
        "ground_truth",
        "dataset",
        "tools",
        "tool_calls",
        "name",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|pairs| Value::Object(
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn write_temp(bytes: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    file.write_all(bytes).unwrap();
    file
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_never_panic_any_format(record in arbitrary_json()) {
        let _ = detect(&record);
        for format in Format::ALL {
            let _ = format.parse(&record);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for suffix in [".jsonl", ".json", ".parquet"] {
            let file = write_temp(&bytes, suffix);
            let _ = check_file(file.path(), None, None, &TokenizeOptions::default());
            let _ = check_file(file.path(), Some(Format::TrlMessages), None, &TokenizeOptions::default());
        }
    }

    #[test]
    fn mangled_json_lines_never_panic(records in prop::collection::vec(arbitrary_json(), 1..6), cut in 0usize..400, flip in any::<u8>()) {
        let mut bytes: Vec<u8> = records.iter().flat_map(|r| format!("{r}\n").into_bytes()).collect();
        if !bytes.is_empty() {
            let at = cut % bytes.len();
            bytes[at] ^= flip;
        }
        let file = write_temp(&bytes, ".jsonl");
        let tokenizer = common::fixture_tokenizer();
        let _ = check_file(file.path(), None, Some(&tokenizer), &TokenizeOptions::default());
    }
}

/// Message text that cannot contain special tokens. It starts with a visible character: a
/// leading newline would merge with the template's own newline before it, and then no prompt
/// is a token prefix (TRL rejects such records too).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9 ,.?!é\n]{0,39}"
}

fn trained_text(tokenizer: &temper_data::ChatTokenizer, sequence: &TokenizedSequence) -> String {
    let ids: Vec<u32> = sequence
        .input_ids
        .iter()
        .zip(&sequence.loss_mask)
        .filter(|&(_, &m)| m)
        .map(|(&id, _)| id)
        .collect();
    tokenizer.decode(&ids, false).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// With ChatML, the trained tokens of a conversation are exactly each trained assistant
    /// answer followed by `<|im_end|>\n`.
    #[test]
    fn masks_select_exactly_the_assistant_answers(turns in prop::collection::vec((text(), text()), 1..4), system in proptest::option::of(text())) {
        let mut tokenizer = common::fixture_tokenizer();
        tokenizer.use_builtin_template(BuiltinTemplate::ChatMl);
        let mut messages: Vec<Message> = system.into_iter().map(Message::system).collect();
        for (question, answer) in &turns {
            messages.push(Message::user(question.clone()));
            messages.push(Message::assistant(answer.clone()));
        }
        let all: String = turns.iter().map(|(_, a)| format!("{a}<|im_end|>\n")).collect();
        let last = format!("{}<|im_end|>\n", turns.last().unwrap().1);
        for (mask, start, expected) in [
            (LossMask::Completion, 0, all.clone()),
            (LossMask::AllAssistant, messages.len() - 1, all.clone()),
            (LossMask::LastTurn, 0, last.clone()),
            (LossMask::Completion, messages.len() - 1, last.clone()),
        ] {
            let example = Example::Sft(SftExample::Chat { messages: messages.clone(), completion_start: start, tools: None });
            let options = TokenizeOptions { loss_mask: mask, ..Default::default() };
            let Tokenized::Sequence(sequence) = tokenize(&tokenizer, &example, &options).unwrap().tokenized else { panic!() };
            prop_assert_eq!(trained_text(&tokenizer, &sequence), expected);
        }
        let example = Example::Sft(SftExample::Chat { messages: messages.clone(), completion_start: 0, tools: None });
        let options = TokenizeOptions { loss_mask: LossMask::Prompt, ..Default::default() };
        let Tokenized::Sequence(sequence) = tokenize(&tokenizer, &example, &options).unwrap().tokenized else { panic!() };
        prop_assert!(sequence.loss_mask.iter().all(|&m| m));
    }

    /// Preference completions are the answers; the prompt ids are shared.
    #[test]
    fn pair_completions_are_the_answers(question in text(), chosen in text(), rejected in text()) {
        prop_assume!(chosen != rejected);
        let mut tokenizer = common::fixture_tokenizer();
        tokenizer.use_builtin_template(BuiltinTemplate::ChatMl);
        let example = Example::Preference(Preference::Chat {
            prompt: vec![Message::user(question.clone())],
            chosen: vec![Message::assistant(chosen.clone())],
            rejected: vec![Message::assistant(rejected.clone())],
            tools: None,
        });
        let Tokenized::Pair(pair) = tokenize(&tokenizer, &example, &TokenizeOptions::default()).unwrap().tokenized else { panic!() };
        prop_assert_eq!(tokenizer.decode(&pair.prompt_ids, false).unwrap(), format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"));
        prop_assert_eq!(tokenizer.decode(&pair.chosen_ids, false).unwrap(), format!("{chosen}<|im_end|>\n"));
        prop_assert_eq!(tokenizer.decode(&pair.rejected_ids, false).unwrap(), format!("{rejected}<|im_end|>\n"));
    }
}

fn sequences() -> impl Strategy<Value = Vec<TokenizedSequence>> {
    prop::collection::vec(
        prop::collection::vec((1u32..5000, any::<bool>()), 1..40).prop_map(|tokens| {
            TokenizedSequence {
                input_ids: tokens.iter().map(|t| t.0).collect(),
                loss_mask: tokens.iter().map(|t| t.1).collect(),
                prompt_len: 0,
            }
        }),
        1..12,
    )
}

proptest! {
    #[test]
    fn collation_keeps_rows_in_order(seqs in sequences()) {
        let refs: Vec<&TokenizedSequence> = seqs.iter().collect();
        let batch = collate_sequences(&refs, 0);
        prop_assert_eq!(batch.rows, seqs.len());
        for (row, s) in seqs.iter().enumerate() {
            let span = row * batch.seq_len..row * batch.seq_len + s.input_ids.len();
            prop_assert_eq!(&batch.input_ids[span.clone()], &s.input_ids[..]);
            let mask: Vec<bool> = batch.loss_mask[span.clone()].iter().map(|&m| m == 1).collect();
            prop_assert_eq!(mask, s.loss_mask.clone());
            let tail = span.end..(row + 1) * batch.seq_len;
            prop_assert!(batch.attention_mask[tail.clone()].iter().all(|&a| a == 0));
            prop_assert!(batch.loss_mask[tail].iter().all(|&m| m == 0));
        }
    }

    #[test]
    fn pair_collation_is_chosen_then_rejected(seqs in sequences()) {
        let pairs: Vec<TokenizedPair> = seqs.windows(2).map(|w| TokenizedPair {
            prompt_ids: w[0].input_ids.clone(), chosen_ids: w[1].input_ids.clone(), rejected_ids: w[0].input_ids.clone(),
        }).collect();
        prop_assume!(!pairs.is_empty());
        let refs: Vec<&TokenizedPair> = pairs.iter().collect();
        let batch = collate_pairs(&refs, 0);
        prop_assert_eq!(batch.rows, 2 * pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            for (row, answer) in [(i, &p.chosen_ids), (i + pairs.len(), &p.rejected_ids)] {
                let expected: Vec<u32> = p.prompt_ids.iter().chain(answer).copied().collect();
                let start = row * batch.seq_len;
                prop_assert_eq!(&batch.input_ids[start..start + expected.len()], &expected[..]);
                let trained = batch.loss_mask[start..start + batch.seq_len].iter().filter(|&&m| m == 1).count();
                prop_assert_eq!(trained, answer.len());
            }
        }
    }

    #[test]
    fn packing_keeps_every_example_whole_and_apart(seqs in sequences(), max_length in 40usize..100) {
        let packing = pack(&seqs, max_length);
        let mut seen: Vec<usize> = packing.rows.iter().flat_map(|r| r.examples.clone()).collect();
        seen.sort();
        prop_assert_eq!(seen, (0..seqs.len()).collect::<Vec<_>>());
        for row in &packing.rows {
            prop_assert!(row.input_ids.len() <= max_length);
            for (segment, &example) in row.examples.iter().enumerate() {
                let span = row.boundaries[segment]..row.boundaries[segment + 1];
                prop_assert_eq!(&row.input_ids[span.clone()], &seqs[example].input_ids[..]);
                prop_assert_eq!(&row.loss_mask[span.clone()], &seqs[example].loss_mask[..]);
                prop_assert_eq!(row.position_ids[span.start], 0);
            }
        }
        let refs: Vec<_> = packing.rows.iter().collect();
        let batch = collate_packed(&refs, 0);
        for (r, row) in packing.rows.iter().enumerate() {
            let segments = &batch.segment_ids[r * batch.seq_len..r * batch.seq_len + row.input_ids.len()];
            prop_assert_eq!(segments.iter().copied().max(), Some(row.examples.len() as u32));
        }
    }
}
