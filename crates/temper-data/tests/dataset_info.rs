//! LLaMA-Factory's `dataset_info.json` (fixtures/data/dataset_info/, made by
//! fixtures/gen/make_datasets.py): each dataset there holds the records of another fixture
//! under other column names, keys and role names, and read through its entry gives the same
//! examples; and the column mapping that turns a math file into RLVR rows.

mod common;

use common::fixture;
use temper_data::columns::Columns;
use temper_data::dataset::{Dataset, load, load_mapped};
use temper_data::dataset_info::{DatasetInfo, resolve};
use temper_data::{DataKind, Examples, Format};

fn by_name(name: &str) -> (Format, Dataset) {
    let entries = resolve(&fixture("data/dataset_info"), &[name]).unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.files.len(), 1);
    let dataset = load_mapped(&entry.files[0], Some(entry.format), &entry.columns, false).unwrap();
    (entry.format, dataset)
}

#[test]
fn each_dataset_reads_as_its_original() {
    let cases = [
        ("instructions", Format::Alpaca, "data/alpaca.jsonl", 4),
        ("chats", Format::ShareGpt, "data/sharegpt.json", 3),
        (
            "pairs",
            Format::AlpacaPreference,
            "data/alpaca_preference.jsonl",
            3,
        ),
    ];
    for (name, format, original, count) in cases {
        let (resolved, mapped) = by_name(name);
        assert_eq!(resolved, format, "{name}");
        let original = load(&fixture(original), Some(format), false).unwrap();
        assert_eq!(mapped.examples.len(), count, "{name}");
        assert_eq!(mapped.examples, original.examples, "{name}");
    }
}

/// Without the entry's mapping the same files do not read: the mapping is what makes them.
#[test]
fn the_mapping_is_needed() {
    let dir = fixture("data/dataset_info");
    assert!(load(&dir.join("instructions.jsonl"), Some(Format::Alpaca), false).is_err());
    // Role names other than ShareGPT's and OpenAI's are refused without the tags.
    assert!(load(&dir.join("chats.json"), Some(Format::ShareGpt), false).is_err());
    // A `--columns` mapping gives what the entry gives.
    let columns = Columns::parse(
        &[
            "instruction=question",
            "input=context",
            "output=answer",
            "system=persona",
            "history=turns",
        ]
        .map(String::from),
    )
    .unwrap();
    let mapped = load_mapped(&dir.join("instructions.jsonl"), None, &columns, false).unwrap();
    assert_eq!(mapped.examples, by_name("instructions").1.examples);
}

#[test]
fn names_list_in_order() {
    let info = DatasetInfo::read(&fixture("data/dataset_info")).unwrap();
    assert_eq!(
        info.names().collect::<Vec<_>>(),
        ["instructions", "chats", "pairs"]
    );
    let entries = info.entries(&["pairs, instructions"]).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["pairs", "instructions"]);
}

/// Issue 16's example: `problem` and `answer` columns, mapped to `prompt` and `ground_truth`,
/// are TRL prompt-only rows (detected) with their ground truth; other columns travel along.
#[test]
fn a_math_file_becomes_rlvr_rows() {
    let columns = Columns::parse(&["prompt=problem".into(), "ground_truth=answer".into()]).unwrap();
    let dataset = load_mapped(&fixture("data/math_problems.jsonl"), None, &columns, false).unwrap();
    let format = dataset.format.unwrap();
    assert_eq!(
        (format.format, format.detected),
        (Format::TrlPromptOnly, true)
    );
    assert_eq!(dataset.kind(), Some(DataKind::Rlvr));
    let Examples::Rlvr(rows) = &dataset.examples else {
        panic!("RLVR rows")
    };
    let truths: Vec<_> = rows
        .iter()
        .map(|r| r.ground_truth.clone().unwrap())
        .collect();
    assert_eq!(truths, ["42", "\\frac{5}{6}", "8"]);
    assert_eq!(rows[0].extra.get("level"), Some(&serde_json::json!(1)));
    // Unmapped, the file is no format Temper knows.
    assert!(load(&fixture("data/math_problems.jsonl"), None, false).is_err());
}
