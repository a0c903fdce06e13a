//! A data file read as examples: records are streamed from disk in chunks, the format is
//! resolved on the first record (or given), and chunks are parsed in parallel.

use std::ops::ControlFlow;
use std::path::Path;

use rayon::prelude::*;

use crate::columns::Columns;
use crate::error::{DataError, FieldError, RecordError, RecordLocation};
use crate::formats::{Format, detect};
use crate::reader::{RawRecord, read_records};
use crate::types::{DataKind, Example, Examples, unpaired_order};

/// Records handed to the parser at a time: large enough to keep every core busy, small
/// enough that memory stays flat.
pub const CHUNK_RECORDS: usize = 4096;

/// The format of a file and how it was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedFormat {
    pub format: Format,
    /// True when `--format auto` picked it from the fields of the first record.
    pub detected: bool,
}

/// One record's examples, or why it has none.
pub struct ParsedRecord {
    pub location: RecordLocation,
    pub examples: Result<Vec<Example>, RecordError>,
}

/// Streams `path` in chunks of parsed records. `format` is `None` for auto-detection. Returns
/// the format used (`None` when the file held no readable record to detect it from).
pub fn read_parsed_chunks(
    path: &Path,
    format: Option<Format>,
    columns: &Columns,
    chunk_records: usize,
    on_chunk: &mut dyn FnMut(Vec<ParsedRecord>) -> ControlFlow<()>,
) -> Result<Option<ResolvedFormat>, DataError> {
    let mut resolved = format.map(|format| ResolvedFormat {
        format,
        detected: false,
    });
    let mut pending: Vec<RawRecord> = Vec::with_capacity(chunk_records);
    let mut detection_error = None;
    let mut stopped = false;
    read_records(path, &mut |mut raw| {
        if let Ok(value) = &mut raw.value {
            columns.apply(value);
        }
        if resolved.is_none()
            && let Ok(value) = &raw.value
        {
            match detect(value) {
                Ok(format) => {
                    resolved = Some(ResolvedFormat {
                        format,
                        detected: true,
                    })
                }
                Err(error) => {
                    detection_error =
                        Some(format!("{}: cannot tell the format: {error}", raw.location));
                    return ControlFlow::Break(());
                }
            }
        }
        pending.push(raw);
        if pending.len() >= chunk_records {
            let chunk = parse_chunk(resolved.map(|r| r.format), std::mem::take(&mut pending));
            if on_chunk(chunk).is_break() {
                stopped = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(message) = detection_error {
        return Err(DataError::Detection {
            path: path.to_path_buf(),
            message,
        });
    }
    if !stopped && !pending.is_empty() {
        let _ = on_chunk(parse_chunk(resolved.map(|r| r.format), pending));
    }
    Ok(resolved)
}

fn parse_chunk(format: Option<Format>, records: Vec<RawRecord>) -> Vec<ParsedRecord> {
    records
        .into_par_iter()
        .map(|raw| {
            let examples = raw.value.and_then(|value| {
                // A value exists only once a format is resolved (detection runs on the first).
                let format = format.ok_or_else(|| {
                    RecordError::new(&raw.location, FieldError::new("", "no format"))
                })?;
                format
                    .parse(&value)
                    .map_err(|e| RecordError::new(&raw.location, e))
            });
            ParsedRecord {
                location: raw.location,
                examples,
            }
        })
        .collect()
}

/// A whole file's examples, in file order.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub format: Option<ResolvedFormat>,
    pub records: u64,
    pub examples: Examples,
    /// The record index each example came from (a labelled record can give several).
    pub record_of_example: Vec<u64>,
    /// Records skipped as invalid (only with `skip_invalid`).
    pub skipped: Vec<RecordError>,
}

impl Dataset {
    pub fn kind(&self) -> Option<DataKind> {
        self.format.map(|_| self.examples.kind())
    }

    /// Only the examples at `indices`, in that order (a mixture's share of the file).
    pub fn keep(&mut self, indices: &[usize]) {
        let mut kept = Examples::empty(self.examples.kind());
        let examples = indices
            .iter()
            .filter_map(|&i| self.examples.get(i).map(|e| e.to_example()));
        // Examples of one set are of one kind.
        let _ = kept.extend(examples);
        self.record_of_example = indices
            .iter()
            .filter_map(|&i| self.record_of_example.get(i).copied())
            .collect();
        self.examples = kept;
    }

    /// Preference pairs as unpaired data, as TRL's `KTOTrainer` reads paired data (see
    /// [`Examples::into_unpaired`]); each completion keeps its record. Other data is unchanged.
    pub fn unpair(&mut self) {
        if !matches!(self.examples, Examples::Preference(_)) {
            return;
        }
        let pairs = std::mem::replace(&mut self.examples, Examples::empty(DataKind::Unpaired));
        self.record_of_example = unpaired_order(pairs.len())
            .map(|(pair, _)| self.record_of_example[pair])
            .collect();
        if let Some(unpaired) = pairs.into_unpaired() {
            self.examples = Examples::Unpaired(unpaired);
        }
    }
}

/// Loads every example of `path`. Invalid records fail the load, reporting all of them,
/// unless `skip_invalid`, which drops and counts them.
pub fn load(path: &Path, format: Option<Format>, skip_invalid: bool) -> Result<Dataset, DataError> {
    load_mapped(path, format, &Columns::default(), skip_invalid)
}

/// [`load`] with each record's `columns` renamed first (LLaMA-Factory's column mapping).
pub fn load_mapped(
    path: &Path,
    format: Option<Format>,
    columns: &Columns,
    skip_invalid: bool,
) -> Result<Dataset, DataError> {
    let mut examples = Vec::new();
    let mut dataset = Dataset {
        format: None,
        records: 0,
        examples: Examples::empty(DataKind::Sft),
        record_of_example: Vec::new(),
        skipped: Vec::new(),
    };
    dataset.format = read_parsed_chunks(path, format, columns, CHUNK_RECORDS, &mut |chunk| {
        for parsed in chunk {
            dataset.records += 1;
            match parsed.examples {
                Ok(parsed_examples) => {
                    dataset.record_of_example.extend(std::iter::repeat_n(
                        parsed.location.record,
                        parsed_examples.len(),
                    ));
                    examples.extend(parsed_examples);
                }
                Err(error) => dataset.skipped.push(error),
            }
        }
        ControlFlow::Continue(())
    })?;
    if !skip_invalid && !dataset.skipped.is_empty() {
        return Err(DataError::InvalidRecords {
            errors: std::mem::take(&mut dataset.skipped),
        });
    }
    // One format per file, and each format's parser makes examples of its kind.
    let kind = dataset.format.map_or(DataKind::Sft, |f| f.format.kind());
    let mut typed = Examples::empty(kind);
    if let Err(mixed) = typed.extend(examples) {
        return Err(DataError::Detection {
            path: path.to_path_buf(),
            message: format!("{mixed} (a file of {} data)", kind.as_str()),
        });
    }
    dataset.examples = typed;
    Ok(dataset)
}
