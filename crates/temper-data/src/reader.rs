//! Reading raw records from disk: JSON Lines, JSON arrays and Parquet, all streamed so that
//! memory does not grow with the file.
//!
//! Each record arrives as a `serde_json::Value` with its [`RecordLocation`]; a record that is
//! not valid JSON (or not UTF-8) arrives as a [`RecordError`] and reading goes on with the next
//! line. A JSON array cannot be resynchronised after a syntax error, so reading such a file
//! stops at the first broken element.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::{DataError, FieldError, RecordError, RecordLocation};

/// How a data file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileLayout {
    JsonLines,
    JsonArray,
    Parquet,
}

/// One record as read from disk.
pub struct RawRecord {
    pub location: RecordLocation,
    pub value: Result<Value, RecordError>,
}

/// Picks the layout from the extension, or from the first byte for `.json` files (Hugging
/// Face ships JSON Lines under `.json` as often as arrays).
pub fn detect_layout(path: &Path) -> Result<FileLayout, DataError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("parquet") => return Ok(FileLayout::Parquet),
        Some("jsonl") | Some("ndjson") => return Ok(FileLayout::JsonLines),
        _ => {}
    }
    let mut reader = open_buffered(path)?;
    loop {
        let buffer = reader.fill_buf().map_err(|source| io_error(path, source))?;
        if buffer.is_empty() {
            return Ok(FileLayout::JsonLines);
        }
        match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) if buffer[i] == b'[' => return Ok(FileLayout::JsonArray),
            Some(i) if buffer.starts_with(b"PAR1") && i == 0 => return Ok(FileLayout::Parquet),
            Some(_) => return Ok(FileLayout::JsonLines),
            None => {
                let consumed = buffer.len();
                reader.consume(consumed);
            }
        }
    }
}

/// Calls `on_record` for each record of `path`, in file order, until it says stop.
pub fn read_records(
    path: &Path,
    on_record: &mut dyn FnMut(RawRecord) -> ControlFlow<()>,
) -> Result<(), DataError> {
    match detect_layout(path)? {
        FileLayout::JsonLines => read_json_lines(path, on_record),
        FileLayout::JsonArray => read_json_array(path, on_record),
        FileLayout::Parquet => read_parquet(path, on_record),
    }
}

/// A buffered reader past the UTF-8 byte order mark that files saved by some Windows tools
/// start with (JSON has no use for it).
fn open_buffered(path: &Path) -> Result<BufReader<File>, DataError> {
    let mut reader = BufReader::with_capacity(1 << 16, open(path)?);
    let starts_with_mark = reader
        .fill_buf()
        .map_err(|source| io_error(path, source))?
        .starts_with(b"\xEF\xBB\xBF");
    if starts_with_mark {
        reader.consume(3);
    }
    Ok(reader)
}

fn open(path: &Path) -> Result<File, DataError> {
    File::open(path).map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

fn read_json_lines(
    path: &Path,
    on_record: &mut dyn FnMut(RawRecord) -> ControlFlow<()>,
) -> Result<(), DataError> {
    let file_name = display_name(path);
    let mut reader = open_buffered(path)?;
    let mut line = Vec::new();
    let mut line_number = 0u64;
    let mut record = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| io_error(path, source))?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let location = RecordLocation {
            file: file_name.clone(),
            line: Some(line_number),
            record,
        };
        record += 1;
        let value = parse_line(&line).map_err(|e| RecordError::new(&location, e));
        if on_record(RawRecord { location, value }).is_break() {
            return Ok(());
        }
    }
}

fn parse_line(line: &[u8]) -> Result<Value, FieldError> {
    let text = std::str::from_utf8(line).map_err(|e| {
        FieldError::new(
            "",
            format!(
                "not valid UTF-8 (bad byte at column {})",
                e.valid_up_to() + 1
            ),
        )
    })?;
    serde_json::from_str(text.trim_end_matches(['\n', '\r'])).map_err(|e| {
        FieldError::new(
            "",
            format!(
                "invalid JSON at column {}: {}",
                e.column(),
                strip_position(&e)
            ),
        )
    })
}

/// serde_json appends "at line L column C" to its messages; we report positions ourselves.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn read_json_array(
    path: &Path,
    on_record: &mut dyn FnMut(RawRecord) -> ControlFlow<()>,
) -> Result<(), DataError> {
    let file_name = display_name(path);
    let reader = open_buffered(path)?;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let mut state = ArrayState {
        file: file_name.clone(),
        next_record: 0,
        stopped: false,
        on_record,
    };
    let outcome = (&mut state).deserialize(&mut deserializer);
    if state.stopped {
        return Ok(());
    }
    let error = match outcome.and_then(|()| deserializer.end()) {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    if error.is_io() && !is_utf8_error(&error) {
        return Err(DataError::Unreadable {
            path: path.to_path_buf(),
            message: strip_position(&error),
        });
    }
    // A syntax error inside the array: report it against the element being read, then stop.
    let location = RecordLocation {
        file: file_name,
        line: None,
        record: state.next_record,
    };
    let message = if is_utf8_error(&error) {
        "not valid UTF-8".to_string()
    } else {
        format!(
            "invalid JSON at line {} column {}: {}; the rest of the file cannot be read",
            error.line(),
            error.column(),
            strip_position(&error)
        )
    };
    let value = Err(RecordError::new(&location, FieldError::new("", message)));
    let _ = (state.on_record)(RawRecord { location, value });
    Ok(())
}

fn is_utf8_error(error: &serde_json::Error) -> bool {
    error.to_string().contains("invalid unicode code point")
}

struct ArrayState<'a> {
    file: String,
    next_record: u64,
    stopped: bool,
    on_record: &'a mut dyn FnMut(RawRecord) -> ControlFlow<()>,
}

impl<'de> DeserializeSeed<'de> for &mut ArrayState<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &mut ArrayState<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let location = RecordLocation {
                file: self.file.clone(),
                line: None,
                record: self.next_record,
            };
            self.next_record += 1;
            if (self.on_record)(RawRecord {
                location,
                value: Ok(value),
            })
            .is_break()
            {
                self.stopped = true;
                return Err(serde::de::Error::custom("stopped by caller"));
            }
        }
        Ok(())
    }
}

#[cfg(feature = "parquet")]
fn read_parquet(
    path: &Path,
    on_record: &mut dyn FnMut(RawRecord) -> ControlFlow<()>,
) -> Result<(), DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let unreadable = |message: String| DataError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let file_name = display_name(path);
    let file = open(path)?;
    // The parquet crate may panic on corrupt input; user input must never crash us.
    let reader = guard(|| SerializedFileReader::new(file))
        .map_err(|message| unreadable(format!("not a readable Parquet file: {message}")))?
        .map_err(|e| unreadable(format!("not a readable Parquet file: {e}")))?;
    let rows = guard(|| reader.get_row_iter(None))
        .map_err(|message| unreadable(format!("unreadable Parquet rows: {message}")))?
        .map_err(|e| unreadable(format!("unreadable Parquet rows: {e}")))?;
    let mut rows = rows.into_iter();
    let mut record = 0u64;
    loop {
        let next = match guard(|| rows.next()) {
            Ok(next) => next,
            Err(message) => return Err(unreadable(format!("corrupt Parquet data: {message}"))),
        };
        let Some(row) = next else { return Ok(()) };
        let location = RecordLocation {
            file: file_name.clone(),
            line: None,
            record,
        };
        record += 1;
        let value = match row {
            Ok(row) => Ok(row.to_json_value()),
            Err(e) => Err(RecordError::new(
                &location,
                FieldError::new("", format!("unreadable Parquet row: {e}")),
            )),
        };
        if on_record(RawRecord { location, value }).is_break() {
            return Ok(());
        }
    }
}

#[cfg(feature = "parquet")]
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the Parquet reader failed".to_string())
    })
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(
    path: &Path,
    _on_record: &mut dyn FnMut(RawRecord) -> ControlFlow<()>,
) -> Result<(), DataError> {
    Err(DataError::ParquetDisabled {
        path: path.to_path_buf(),
    })
}
