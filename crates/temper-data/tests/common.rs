//! Paths shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use temper_data::ChatTokenizer;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("fixtures").join(relative)
}

/// The bundled byte-level BPE tokenizer with its Qwen2.5 chat template.
pub fn fixture_tokenizer() -> ChatTokenizer {
    ChatTokenizer::from_dir(&fixture("tokenizer"), None).expect("fixture tokenizer loads")
}
