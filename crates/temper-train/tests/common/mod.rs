//! Fixture access shared by the trainer tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use temper_data::batch::BatchOrder;
use temper_data::tokenize::{TokenizedPair, tokenize};
use temper_data::{ChatTokenizer, TokenizeOptions, TokenizedSet, dataset};
use temper_train::{ScheduleKind, TrainingArgs};

/// A parity fixture from `fixtures/parity/train`.
pub fn parity_fixture(name: &str) -> serde_json::Value {
    let path = root().join("fixtures/parity/train").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON list of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled tiny Qwen2 model (with the bundled tokenizer).
pub fn qwen2() -> PathBuf {
    root().join("fixtures/models/qwen2")
}

/// A `fixtures/data` file tokenised with the Qwen2 fixture's tokenizer, and its pad id.
pub fn tokenized(file: &str) -> (TokenizedSet, u32) {
    let tokenizer = ChatTokenizer::from_dir(&qwen2(), None).unwrap();
    let examples = tokenize_file(&tokenizer, &root().join("fixtures/data").join(file));
    (examples, tokenizer.pad_id().unwrap_or(0))
}

/// Every example of a data file, tokenised with default options.
pub fn tokenize_file(tokenizer: &ChatTokenizer, path: &Path) -> TokenizedSet {
    let data = dataset::load(path, None, false).unwrap();
    let examples = data
        .examples
        .iter()
        .map(|e| {
            tokenize(tokenizer, &e, &TokenizeOptions::default())
                .unwrap()
                .tokenized
        })
        .collect();
    TokenizedSet::new(examples).unwrap()
}

/// The prompts of the GRPO and PPO fixtures (`fixtures/parity/train/rlvr.jsonl`), tokenised
/// with `tokenizer`.
pub fn parity_prompts(tokenizer: &ChatTokenizer) -> temper_train::grpo::Prompts {
    let path = root().join("fixtures/parity/train/rlvr.jsonl");
    let data = dataset::load(&path, None, false).unwrap();
    let prompts = temper_train::grpo::Prompts::from_examples(
        &data.examples,
        &tokenize_file(tokenizer, &path),
    );
    assert_eq!(prompts.rows.len(), data.examples.len(), "RLVR rows");
    prompts
}

/// The settings of the TRL parity runs (`fixtures/gen/train_parity.py`): 3 steps, one batch of
/// 4 in file order, lr 1e-3 constant, max_grad_norm 1, weight decay 0.
pub fn trl_parity_args() -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(3),
        per_device_train_batch_size: 4,
        learning_rate: 1e-3,
        lr_scheduler_type: ScheduleKind::Constant,
        max_grad_norm: 1.0,
        batch_order: BatchOrder::Sequential,
        ..TrainingArgs::default()
    }
}

/// The pairs of preference examples.
pub fn pairs(examples: &TokenizedSet) -> Vec<TokenizedPair> {
    match examples {
        TokenizedSet::Pairs(pairs) => pairs.clone(),
        _ => panic!("preference data"),
    }
}
