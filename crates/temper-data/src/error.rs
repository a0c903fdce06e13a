//! Error types. A bad record is a [`RecordError`] that names the file, the line (JSONL) or
//! record index (JSON arrays, Parquet rows) and the field; whole-file problems are
//! [`DataError`]s.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A problem with one field of one record, before its location is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// A path into the record, e.g. `conversations[2].from`; empty for the record as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field path, e.g. `from` inside `conversations[2]`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = match (parent.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => parent.to_string(),
            (false, false) if self.field.starts_with('[') => format!("{parent}{}", self.field),
            (false, false) => format!("{parent}.{}", self.field),
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "field `{}`: {}", self.field, self.message)
        }
    }
}

/// Where a record sits in its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordLocation {
    pub file: String,
    /// 1-based line, for JSONL; `None` for JSON arrays and Parquet.
    pub line: Option<u64>,
    /// 0-based index of the record in the file.
    pub record: u64,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: record {}", self.file, line, self.record),
            None => write!(f, "{}: record {}", self.file, self.record),
        }
    }
}

/// A record that cannot be used, with everything needed to find and fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub file: String,
    pub line: Option<u64>,
    pub record: u64,
    /// Empty when the record as a whole is at fault (e.g. it is not valid JSON).
    pub field: String,
    pub message: String,
}

impl RecordError {
    pub fn new(location: &RecordLocation, error: FieldError) -> Self {
        RecordError {
            file: location.file.clone(),
            line: location.line,
            record: location.record,
            field: error.field,
            message: error.message,
        }
    }

    pub fn location(&self) -> RecordLocation {
        RecordLocation {
            file: self.file.clone(),
            line: self.line,
            record: self.record,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = FieldError::new(self.field.clone(), self.message.clone());
        write!(f, "{}: {}", self.location(), field)
    }
}

impl std::error::Error for RecordError {}

/// Whole-file and setup errors: the data cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Detection { path: PathBuf, message: String },
    #[error("{path}: Parquet support is not compiled in (enable the `parquet` feature)")]
    ParquetDisabled { path: PathBuf },
    #[error("{} invalid record(s); first: {}", errors.len(), errors.first().map(ToString::to_string).unwrap_or_default())]
    InvalidRecords { errors: Vec<RecordError> },
}
