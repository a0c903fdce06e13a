//! Validating a data file as training would use it: every record parsed and, with a
//! tokenizer, tokenised, with counts, the errors, and token-length statistics.

use std::ops::ControlFlow;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::columns::Columns;
use crate::dataset::{CHUNK_RECORDS, ParsedRecord, ResolvedFormat, read_parsed_chunks};
use crate::error::{DataError, FieldError, RecordError};
use crate::formats::Format;
use crate::stats::{LengthStats, LengthSummary};
use crate::tokenize::{TokenizeError, TokenizeOptions, Tokenized, tokenize};
use crate::tokenizer::{ChatTokenizer, TokenizerError};
use crate::types::DataKind;

/// What `temper data check` reports for one file.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub file: String,
    /// `None` when the file held no readable record.
    pub format: Option<String>,
    pub detected: bool,
    pub kind: Option<DataKind>,
    pub records: u64,
    /// Training examples produced (pairs, for preference data) by the valid records.
    pub examples: u64,
    pub invalid: u64,
    pub errors: Vec<RecordError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenReport>,
}

/// Token statistics over the valid examples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TokenReport {
    /// Prompt lengths (preference and RLVR data, prompt-completion SFT data).
    pub prompt: Option<LengthSummary>,
    /// Completion lengths: chosen and rejected answers, or trained tokens of SFT examples.
    pub completion: Option<LengthSummary>,
    /// Whole sequences as the model sees them (prompt + answer).
    pub sequence: Option<LengthSummary>,
    pub trained_tokens: u64,
    pub truncated_prompts: u64,
    pub truncated_sequences: u64,
    /// Examples whose prompt ids are not a prefix of prompt + answer's: the answer starts where
    /// the two diverge, as TRL 1.16 (which warns once).
    pub merged_prompts: u64,
}

/// The token lengths of one record's examples: gathered in parallel, tallied in file order.
#[derive(Default)]
struct RecordLengths {
    prompts: Vec<usize>,
    completions: Vec<usize>,
    sequences: Vec<usize>,
    trained_tokens: u64,
    truncated_prompts: u64,
    truncated_sequences: u64,
    merged_prompts: u64,
}

impl RecordLengths {
    fn add(&mut self, tokenized: &Tokenized) {
        match tokenized {
            Tokenized::Sequence(s) => {
                if s.prompt_len > 0 {
                    self.prompts.push(s.prompt_len);
                }
                let trained = s.trained_tokens();
                self.completions.push(trained);
                self.sequences.push(s.input_ids.len());
                self.trained_tokens += trained as u64;
            }
            Tokenized::Pair(p) => {
                self.prompts.push(p.prompt_ids.len());
                for answer in [&p.chosen_ids, &p.rejected_ids] {
                    self.completions.push(answer.len());
                    self.sequences.push(p.prompt_ids.len() + answer.len());
                    self.trained_tokens += answer.len() as u64;
                }
            }
            Tokenized::Unpaired(u) => {
                self.prompts.push(u.prompt_ids.len());
                self.completions.push(u.completion_ids.len());
                self.sequences
                    .push(u.prompt_ids.len() + u.completion_ids.len());
                self.trained_tokens += u.completion_ids.len() as u64;
            }
            Tokenized::Prompt(p) => {
                self.prompts.push(p.prompt_ids.len());
                self.sequences.push(p.prompt_ids.len());
            }
        }
    }
}

#[derive(Default)]
struct TokenTally {
    prompt: LengthStats,
    completion: LengthStats,
    sequence: LengthStats,
    trained_tokens: u64,
    truncated_prompts: u64,
    truncated_sequences: u64,
    merged_prompts: u64,
}

impl TokenTally {
    fn add(&mut self, record: &RecordLengths) {
        record.prompts.iter().for_each(|&l| self.prompt.add(l));
        record
            .completions
            .iter()
            .for_each(|&l| self.completion.add(l));
        record.sequences.iter().for_each(|&l| self.sequence.add(l));
        self.trained_tokens += record.trained_tokens;
        self.truncated_prompts += record.truncated_prompts;
        self.truncated_sequences += record.truncated_sequences;
        self.merged_prompts += record.merged_prompts;
    }

    fn report(&self) -> TokenReport {
        TokenReport {
            prompt: self.prompt.summary(),
            completion: self.completion.summary(),
            sequence: self.sequence.summary(),
            trained_tokens: self.trained_tokens,
            truncated_prompts: self.truncated_prompts,
            truncated_sequences: self.truncated_sequences,
            merged_prompts: self.merged_prompts,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{file}: {source}")]
    Tokenizer {
        file: String,
        #[source]
        source: TokenizerError,
    },
}

/// Checks one file. With a tokenizer, records are also tokenised as training would do it, and
/// a record whose tokenisation fails (e.g. its prompt is not a token prefix) is invalid.
pub fn check_file(
    path: &Path,
    format: Option<Format>,
    tokenizer: Option<&ChatTokenizer>,
    options: &TokenizeOptions,
) -> Result<CheckReport, CheckError> {
    check_file_mapped(path, format, &Columns::default(), tokenizer, options)
}

/// [`check_file`] with each record's `columns` renamed first, as the trainers read it.
pub fn check_file_mapped(
    path: &Path,
    format: Option<Format>,
    columns: &Columns,
    tokenizer: Option<&ChatTokenizer>,
    options: &TokenizeOptions,
) -> Result<CheckReport, CheckError> {
    let file = path.display().to_string();
    let mut report = CheckReport {
        file: file.clone(),
        format: None,
        detected: false,
        kind: None,
        records: 0,
        examples: 0,
        invalid: 0,
        errors: Vec::new(),
        tokens: None,
    };
    let mut tally = TokenTally::default();
    let mut setup_error = None;
    let resolved: Option<ResolvedFormat> =
        read_parsed_chunks(path, format, columns, CHUNK_RECORDS, &mut |chunk| {
            let outcomes: Vec<RecordOutcome> = chunk
                .into_par_iter()
                .map(|parsed| check_record(parsed, tokenizer, options))
                .collect();
            for outcome in outcomes {
                report.records += 1;
                match outcome {
                    RecordOutcome::Valid { examples, tokens } => {
                        report.examples += examples;
                        if let Some(tokens) = tokens {
                            tally.add(&tokens);
                        }
                    }
                    RecordOutcome::Invalid(error) => {
                        report.invalid += 1;
                        report.errors.push(error);
                    }
                    RecordOutcome::Unusable(error) => {
                        setup_error = Some(error);
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        })?;
    if let Some(source) = setup_error {
        return Err(CheckError::Tokenizer { file, source });
    }
    if let Some(resolved) = resolved {
        report.format = Some(resolved.format.name().to_string());
        report.detected = resolved.detected;
        report.kind = Some(resolved.format.kind());
    }
    if tokenizer.is_some() {
        report.tokens = Some(tally.report());
    }
    Ok(report)
}

enum RecordOutcome {
    Valid {
        examples: u64,
        tokens: Option<RecordLengths>,
    },
    Invalid(RecordError),
    /// The tokenizer cannot handle this data at all (no chat template, no eos): the check stops.
    Unusable(TokenizerError),
}

fn check_record(
    parsed: ParsedRecord,
    tokenizer: Option<&ChatTokenizer>,
    options: &TokenizeOptions,
) -> RecordOutcome {
    let examples = match parsed.examples {
        Ok(examples) => examples,
        Err(error) => return RecordOutcome::Invalid(error),
    };
    let Some(tokenizer) = tokenizer else {
        return RecordOutcome::Valid {
            examples: examples.len() as u64,
            tokens: None,
        };
    };
    let mut tokens = RecordLengths::default();
    for example in &examples {
        match tokenize(tokenizer, example, options) {
            Ok(outcome) => {
                if let Some(reason) = outcome.tokenized.nothing_to_train() {
                    let error = FieldError::new("", reason);
                    return RecordOutcome::Invalid(RecordError::new(&parsed.location, error));
                }
                tokens.add(&outcome.tokenized);
                tokens.truncated_prompts += u64::from(outcome.truncation.prompt);
                tokens.truncated_sequences += u64::from(outcome.truncation.sequence);
                tokens.merged_prompts += u64::from(outcome.prompt_merged);
            }
            Err(TokenizeError::Record(error)) => {
                return RecordOutcome::Invalid(RecordError::new(&parsed.location, error));
            }
            Err(TokenizeError::Setup(error)) => return RecordOutcome::Unusable(error),
        }
    }
    RecordOutcome::Valid {
        examples: examples.len() as u64,
        tokens: Some(tokens),
    }
}
