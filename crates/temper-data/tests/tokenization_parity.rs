//! TRL tokenisation against ids from transformers with the fixture tokenizer
//! (fixtures/parity/tokenization.jsonl, made by fixtures/gen/tokenization_parity.py): plain
//! encodes, conversational prompt/completion (template with and without the generation
//! prompt), standard prompt/completion (special tokens, eos), and records whose prompt ids are
//! not a prefix of the whole's, where the completion starts where the two diverge (TRL 1.16's
//! `common_prefix_length` rule, applied here to transformers' ids).

mod common;

use serde_json::Value;
use temper_data::tokenize::tokenize;
use temper_data::{Example, Message, Preference, SftExample, TokenizeOptions, Tokenized};

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn ids_match_transformers_and_merged_prompts_start_the_completion_where_ids_diverge() {
    let tokenizer = common::fixture_tokenizer();
    let text = std::fs::read_to_string(common::fixture("parity/tokenization.jsonl")).unwrap();
    let (mut matched, mut merged) = (0, 0);
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
        let prompt_len = prompt_ids
            .iter()
            .zip(&full_ids)
            .take_while(|(a, b)| a == b)
            .count();
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
        let outcome = tokenize(&tokenizer, &example, &TokenizeOptions::default())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            outcome.prompt_merged,
            prompt_len < prompt_ids.len(),
            "{case}"
        );
        merged += usize::from(outcome.prompt_merged);
        let Tokenized::Sequence(sequence) = outcome.tokenized else {
            panic!("{case}: not a sequence")
        };
        let mut expected = full_ids.clone();
        if row["kind"] == "standard" {
            expected.push(row["eos_token_id"].as_u64().unwrap() as u32);
        }
        assert_eq!(sequence.input_ids, expected, "{case}");
        assert_eq!(sequence.prompt_len, prompt_len, "{case}");
        let trained: Vec<bool> = (0..expected.len()).map(|i| i >= prompt_len).collect();
        assert_eq!(sequence.loss_mask, trained, "{case}");
        matched += 1;
    }
    assert!(
        matched >= 10 && merged >= 2,
        "matched {matched}, merged {merged}"
    );
}

/// A plain-string pair whose prompt ends inside a token ("... app" + "les ..."): as TRL 1.16's
/// DPO tokenisation, the prompt keeps the ids it shares with both wholes, each answer is the
/// rest of its whole plus eos, and prompt + answer is exactly the whole's ids.
#[test]
fn a_pair_whose_prompt_ends_inside_a_token_starts_its_answers_where_the_ids_diverge() {
    let tokenizer = common::fixture_tokenizer();
    let (prompt, chosen, rejected) = ("Emma buys more app", "les at the market.", "les today.");
    let example = Example::Preference(Preference::Text {
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
    });
    let outcome = tokenize(&tokenizer, &example, &TokenizeOptions::default()).unwrap();
    assert!(outcome.prompt_merged);
    let Tokenized::Pair(pair) = outcome.tokenized else {
        panic!("not a pair")
    };
    let prompt_ids = tokenizer.encode(prompt, true).unwrap();
    assert!(pair.prompt_ids.len() < prompt_ids.len());
    assert!(prompt_ids.starts_with(&pair.prompt_ids));
    let eos = tokenizer.eos_id().unwrap();
    for (answer, ids) in [(chosen, &pair.chosen_ids), (rejected, &pair.rejected_ids)] {
        let mut whole = tokenizer
            .encode(&format!("{prompt}{answer}"), true)
            .unwrap();
        whole.push(eos);
        let joined: Vec<u32> = pair.prompt_ids.iter().chain(ids).copied().collect();
        assert_eq!(joined, whole, "{answer}");
    }
    // A prompt on a token boundary is untouched.
    let example = Example::Preference(Preference::Text {
        prompt: "Emma buys more apples".into(),
        chosen: " at the market.".into(),
        rejected: " today.".into(),
    });
    let outcome = tokenize(&tokenizer, &example, &TokenizeOptions::default()).unwrap();
    assert!(!outcome.prompt_merged);
    let Tokenized::Pair(pair) = outcome.tokenized else {
        panic!("not a pair")
    };
    assert_eq!(
        pair.prompt_ids,
        tokenizer.encode("Emma buys more apples", true).unwrap()
    );
}

/// An unpaired completion (KTO) is truncated as a pair's side: the prompt keeps its end under
/// `max_prompt_length`, prompt + completion keeps its start under `max_length`.
#[test]
fn an_unpaired_completion_is_truncated_as_a_pair_side() {
    let tokenizer = common::fixture_tokenizer();
    let example = Example::Unpaired(temper_data::Unpaired::Text {
        prompt: "Emma buys more apples at the market today".into(),
        completion: " and she pays with a note.".into(),
        desirable: true,
    });
    let whole = tokenize(&tokenizer, &example, &TokenizeOptions::default()).unwrap();
    let Tokenized::Unpaired(whole) = whole.tokenized else {
        panic!("not unpaired")
    };
    let options = TokenizeOptions {
        max_prompt_length: Some(3),
        max_length: Some(5),
        ..TokenizeOptions::default()
    };
    let cut = tokenize(&tokenizer, &example, &options).unwrap();
    assert!(cut.truncation.prompt && cut.truncation.sequence);
    let Tokenized::Unpaired(cut) = cut.tokenized else {
        panic!("not unpaired")
    };
    assert_eq!(
        cut.prompt_ids,
        whole.prompt_ids[whole.prompt_ids.len() - 3..]
    );
    assert_eq!(cut.completion_ids, whole.completion_ids[..2]);
}
