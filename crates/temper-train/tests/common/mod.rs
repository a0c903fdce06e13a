//! Fixture access shared by the trainer tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use temper_data::tokenize::{TokenizedPair, tokenize};
use temper_data::{ChatTokenizer, TokenizeOptions, Tokenized, dataset};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled tiny Qwen2 model (with the bundled tokenizer).
pub fn qwen2() -> PathBuf {
    root().join("fixtures/models/qwen2")
}

/// A `fixtures/data` file tokenised with the Qwen2 fixture's tokenizer, and its pad id.
pub fn tokenized(file: &str) -> (Vec<Tokenized>, u32) {
    let tokenizer = ChatTokenizer::from_dir(&qwen2(), None).unwrap();
    let data = dataset::load(&root().join("fixtures/data").join(file), None, false).unwrap();
    let examples = data
        .examples
        .iter()
        .map(|e| {
            tokenize(&tokenizer, e, &TokenizeOptions::default())
                .unwrap()
                .tokenized
        })
        .collect();
    (examples, tokenizer.pad_id().unwrap_or(0))
}

/// The pairs of preference examples.
pub fn pairs(examples: &[Tokenized]) -> Vec<TokenizedPair> {
    examples
        .iter()
        .map(|e| match e {
            Tokenized::Pair(pair) => pair.clone(),
            _ => panic!("preference data"),
        })
        .collect()
}
