//! The bad-input corpus (fixtures/bad/, made by fixtures/gen/make_datasets.py): each file's
//! exact error lines, naming file, line or record, and field.

mod common;

use temper_data::check::{CheckError, check_file};
use temper_data::{DataError, TokenizeOptions};

/// (file, with the fixture tokenizer, expected error lines)
const CASES: &[(&str, bool, &[&str])] = &[
    (
        "bad_json.jsonl",
        false,
        &["bad_json.jsonl:2: record 1: invalid JSON at column 19: trailing comma"],
    ),
    (
        "broken_array.json",
        false,
        &[
            "broken_array.json: record 2: invalid JSON at line 4 column 19: expected `,` or `}`; the rest of the file cannot be read",
        ],
    ),
    (
        "missing_field.jsonl",
        false,
        &["missing_field.jsonl:2: record 1: field `rejected`: missing"],
    ),
    (
        "mistyped_field.jsonl",
        false,
        &["mistyped_field.jsonl:1: record 0: field `output`: expected a string, found a number"],
    ),
    (
        "empty_conversation.jsonl",
        false,
        &["empty_conversation.jsonl:2: record 1: field `messages`: empty conversation"],
    ),
    (
        "unknown_role.jsonl",
        false,
        &[
            "unknown_role.jsonl:1: record 0: field `conversations[1].from`: unknown role `robot` (expected human, user, gpt, assistant, system, observation, tool or function_call)",
        ],
    ),
    (
        "roles_out_of_order.jsonl",
        false,
        &[
            "roles_out_of_order.jsonl:1: record 0: field `messages[1].role`: user message after a user message: roles out of order",
            "roles_out_of_order.jsonl:2: record 1: field `messages[0].role`: assistant message at the start: roles out of order",
        ],
    ),
    (
        "identical_answers.jsonl",
        false,
        &["identical_answers.jsonl:1: record 0: field `rejected`: identical to `chosen`"],
    ),
    (
        "empty_completion.jsonl",
        false,
        &["empty_completion.jsonl:1: record 0: field `completion`: completion is empty"],
    ),
    (
        "non_utf8.jsonl",
        false,
        &["non_utf8.jsonl:2: record 1: not valid UTF-8 (bad byte at column 14)"],
    ),
    (
        "mixed_styles.jsonl",
        false,
        &[
            "mixed_styles.jsonl:1: record 0: field `completion`: prompt is a message list but completion is a string; use one style for all fields",
        ],
    ),
    (
        "unlabelled_candidates.jsonl",
        false,
        &[
            "unlabelled_candidates.jsonl:1: record 0: field `conversations[1]`: labelled turn has no rejected candidate",
        ],
    ),
    (
        "rlvr_missing_dataset.jsonl",
        false,
        &["rlvr_missing_dataset.jsonl:1: record 0: field `dataset`: missing"],
    ),
];

#[test]
fn every_bad_record_is_named_exactly() {
    let tokenizer = common::fixture_tokenizer();
    let bad = common::fixture("bad");
    for &(file, with_tokenizer, expected) in CASES {
        let path = bad.join(file);
        let report = check_file(
            &path,
            None,
            with_tokenizer.then_some(&tokenizer),
            &TokenizeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let prefix = format!("{}/", bad.display());
        let lines: Vec<String> = report
            .errors
            .iter()
            .map(|e| e.to_string().replace(&prefix, ""))
            .collect();
        assert_eq!(lines, expected, "{file}");
        assert_eq!(report.invalid as usize, expected.len(), "{file}");
    }
}

#[test]
fn undetectable_files_name_the_fields_and_candidates() {
    for (file, message) in [
        (
            "ambiguous.jsonl",
            "cannot tell the format: fields [instruction, output, conversations] fit several formats: alpaca, sharegpt; pass --format to choose",
        ),
        (
            "unknown_format.jsonl",
            "cannot tell the format: no known format has the fields [question, answer]; pass --format",
        ),
    ] {
        let error = check_file(
            &common::fixture("bad").join(file),
            None,
            None,
            &TokenizeOptions::default(),
        )
        .unwrap_err();
        let CheckError::Data(DataError::Detection { message: text, .. }) = error else {
            panic!("{file}: {error}")
        };
        assert!(text.ends_with(message), "{file}: {text}");
        assert!(text.contains(":1: record 0: "), "{file}: {text}");
    }
}

#[test]
fn skip_invalid_keeps_the_good_records() {
    let path = common::fixture("bad/bad_json.jsonl");
    let data = temper_data::dataset::load(&path, None, true).unwrap();
    assert_eq!(
        (data.records, data.examples.len(), data.skipped.len()),
        (3, 2, 1)
    );
    assert_eq!(data.record_of_example, vec![0, 2]);
    let Err(DataError::InvalidRecords { errors }) = temper_data::dataset::load(&path, None, false)
    else {
        panic!("invalid records must fail the load")
    };
    assert_eq!(errors.len(), 1);
}

#[test]
fn a_byte_order_mark_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        (
            "bom.jsonl",
            "\u{feff}{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
        ),
        ("bom.json", "\u{feff}[{\"text\": \"a\"}, {\"text\": \"b\"}]"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let report = check_file(&path, None, None, &TokenizeOptions::default()).unwrap();
        assert_eq!(
            (report.records, report.examples, report.invalid),
            (2, 2, 0),
            "{name}"
        );
    }
}
