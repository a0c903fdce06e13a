//! TRL tokenisation against ids from transformers with the fixture tokenizer
//! (fixtures/parity/tokenization.jsonl, made by fixtures/gen/tokenization_parity.py): plain
//! encodes, conversational prompt/completion (template with and without the generation
//! prompt), standard prompt/completion (special tokens, eos), and the prefix check.

mod common;

use serde_json::Value;
use temper_data::tokenize::tokenize;
use temper_data::{Example, Message, SftExample, TokenizeOptions, Tokenized};

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn ids_match_transformers_and_prefix_failures_are_invalid() {
    let tokenizer = common::fixture_tokenizer();
    let text = std::fs::read_to_string(common::fixture("parity/tokenization.jsonl")).unwrap();
    let (mut matched, mut rejected) = (0, 0);
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let case = row["case"].as_str().unwrap();
        if row["kind"] == "encode" {
            assert_eq!(
                tokenizer
                    .encode(row["text"].as_str().unwrap(), false)
                    .unwrap(),
                ids(&row["ids"]),
                "{case}"
            );
            continue;
        }
        let prompt_ids = ids(&row["prompt_ids"]);
        let full_ids = ids(&row["full_ids"]);
        let is_prefix = full_ids.starts_with(&prompt_ids);
        let example = if row["kind"] == "conversational" {
            let prompt: Vec<Message> = serde_json::from_value(row["prompt"].clone()).unwrap();
            let completion: Vec<Message> =
                serde_json::from_value(row["completion"].clone()).unwrap();
            Example::Sft(SftExample::Chat {
                completion_start: prompt.len(),
                messages: prompt.into_iter().chain(completion).collect(),
                tools: None,
            })
        } else {
            Example::Sft(SftExample::Completion {
                prompt: row["prompt"].as_str().unwrap().into(),
                completion: row["completion"].as_str().unwrap().into(),
            })
        };
        let outcome = tokenize(&tokenizer, &example, &TokenizeOptions::default());
        if !is_prefix {
            let error = outcome.expect_err(case).to_string();
            assert!(error.contains("not a prefix"), "{case}: {error}");
            rejected += 1;
            continue;
        }
        let Tokenized::Sequence(sequence) =
            outcome.unwrap_or_else(|e| panic!("{case}: {e}")).tokenized
        else {
            panic!("{case}: not a sequence")
        };
        let mut expected = full_ids.clone();
        if row["kind"] == "standard" {
            expected.push(row["eos_token_id"].as_u64().unwrap() as u32);
        }
        assert_eq!(sequence.input_ids, expected, "{case}");
        assert_eq!(sequence.prompt_len, prompt_ids.len(), "{case}");
        let trained: Vec<bool> = (0..expected.len()).map(|i| i >= prompt_ids.len()).collect();
        assert_eq!(sequence.loss_mask, trained, "{case}");
        matched += 1;
    }
    assert!(
        matched >= 10 && rejected >= 2,
        "matched {matched}, rejected {rejected}"
    );
}
