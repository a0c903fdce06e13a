//! # temper-data
//!
//! Records → conversations → token ids with loss masks → padded batches, for post-training
//! language models. Knows nothing of tensors, so it serves any project that only prepares data.
//!
//! - [`formats`]: Alpaca, ShareGPT (SFT and two preference styles), TRL (text, messages,
//!   prompt-completion, preference, implicit prompt), open-instruct and TRL RLVR rows, with
//!   `--format auto` detection.
//! - [`reader`]: JSON Lines and JSON arrays streamed; Parquet as Hugging Face ships it.
//! - [`template`]: Hugging Face Jinja chat templates rendered as transformers renders them.
//! - [`tokenize`]: TRL 1.16's tokenisation (an answer starts where the prompt's ids and the whole's diverge), loss masks and truncation.
//! - [`batch`] and [`packing`]: padded batches, seeded and length-grouped order, SFT packing.
//! - [`check`]: what `temper data check` reports.
//!
//! ```no_run
//! use std::path::Path;
//! use temper_data::{ChatTokenizer, TokenizeOptions, dataset, tokenize};
//!
//! let data = dataset::load(Path::new("pairs.jsonl"), None, false)?; // format auto-detected
//! let tokenizer = ChatTokenizer::from_dir(Path::new("tokenizer/"), None)?;
//! for example in data.examples.iter() {
//!     let outcome = tokenize::tokenize(&tokenizer, &example, &TokenizeOptions::default())?;
//!     println!("{:?}", outcome.tokenized);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod check;
pub mod columns;
pub mod dataset;
pub mod dataset_info;
pub mod error;
pub mod formats;
pub mod mixture;
pub mod packing;
pub mod pieces;
pub mod reader;
pub mod stats;
pub mod synthetic;
pub mod template;
pub mod tokenize;
pub mod tokenizer;
pub mod types;

pub use error::{DataError, FieldError, RecordError, RecordLocation};
pub use formats::{DetectError, Format, FormatChoice};
pub use template::{BuiltinTemplate, ChatTemplate, TemplateError};
pub use tokenize::{LossMask, TokenizeOptions, Tokenized, TokenizedSet, TruncationSide};
pub use tokenizer::{ChatTokenizer, TokenizerError};
pub use types::{
    AsExample, ContentGiven, DataKind, Example, ExampleRef, Examples, Message, MixedKinds,
    Preference, RlvrPrompt, Role, SftExample, Turns, Unpaired,
};
