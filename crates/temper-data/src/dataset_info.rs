//! LLaMA-Factory's `dataset_info.json`: a file whose keys name datasets, each entry giving its
//! data file (`file_name`, relative to the file's directory), its `formatting` (`alpaca` or
//! `sharegpt`), whether it is preference data (`ranking`), which column holds each of
//! LLaMA-Factory's fields (`columns`) and, for ShareGPT, the keys and role names of its
//! messages (`tags`). A name resolves to the files, the Temper [`Format`] and the [`Columns`]
//! that read them as LLaMA-Factory would:
//!
//! | `formatting` | `ranking` | `columns.kto_tag` | format                |
//! |--------------|-----------|-------------------|-----------------------|
//! | `alpaca`     | false     |                   | `alpaca`              |
//! | `alpaca`     | true      |                   | `alpaca-preference`   |
//! | `sharegpt`   | false     |                   | `sharegpt`            |
//! | `sharegpt`   | true      |                   | `sharegpt-preference` |
//! | `sharegpt`   | any       | given             | `trl-unpaired`        |
//!
//! Only local files are read: entries naming a hub (`hf_hub_url`, `ms_hub_url`, ...) are
//! refused, as are fields that would change what LLaMA-Factory reads but Temper cannot
//! (`num_samples`, image/video/audio columns, Alpaca `tools` and `kto_tag`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::columns::{Columns, ShareGptTags};
use crate::formats::{Format, type_name};

/// The file a dataset directory holds.
pub const FILE_NAME: &str = "dataset_info.json";

/// What is wrong with a `dataset_info.json`, or with one of its entries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{message}", file.display(), dataset.as_ref().map(|name| format!("dataset `{name}`: ")).unwrap_or_default())]
pub struct DatasetInfoError {
    pub file: PathBuf,
    /// The entry at fault, when the error is about one.
    pub dataset: Option<String>,
    pub message: String,
}

impl DatasetEntry {
    /// Each of the entry's files with the format and columns it is read with.
    pub fn into_files(self) -> impl Iterator<Item = (PathBuf, Format, Columns)> {
        let (format, columns) = (self.format, self.columns);
        self.files
            .into_iter()
            .map(move |file| (file, format, columns.clone()))
    }
}

/// A parsed `dataset_info.json`.
#[derive(Clone, Debug)]
pub struct DatasetInfo {
    file: PathBuf,
    entries: Map<String, Value>,
}

/// One dataset, ready to load.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetEntry {
    pub name: String,
    /// `file_name` under the directory; a folder gives each of its files, by name.
    pub files: Vec<PathBuf>,
    pub format: Format,
    pub columns: Columns,
}

/// LLaMA-Factory's fields an entry may hold.
const ENTRY_FIELDS: [&str; 15] = [
    "file_name",
    "formatting",
    "ranking",
    "columns",
    "tags",
    "file_sha1",
    "split",
    "subset",
    "folder",
    "num_samples",
    "hf_hub_url",
    "ms_hub_url",
    "om_hub_url",
    "script_url",
    "cloud_file_name",
];

/// Where LLaMA-Factory would fetch the data from instead of `file_name`.
const REMOTE_FIELDS: [&str; 5] = [
    "hf_hub_url",
    "ms_hub_url",
    "om_hub_url",
    "script_url",
    "cloud_file_name",
];

const COLUMN_FIELDS: [&str; 13] = [
    "prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
    "audios", "chosen", "rejected", "kto_tag",
];

const TAG_FIELDS: [&str; 7] = [
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "observation_tag",
    "function_tag",
    "system_tag",
];

impl DatasetInfo {
    /// Reads `dir/dataset_info.json`.
    pub fn read(dir: &Path) -> Result<DatasetInfo, DatasetInfoError> {
        let file = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&file).map_err(|e| DatasetInfoError {
            file: file.clone(),
            dataset: None,
            message: format!("cannot read: {e}"),
        })?;
        DatasetInfo::parse(&file, &text)
    }

    /// `text` as the contents of `file` (whose directory `file_name`s are relative to).
    pub fn parse(file: &Path, text: &str) -> Result<DatasetInfo, DatasetInfoError> {
        let error = |message: String| DatasetInfoError {
            file: file.to_path_buf(),
            dataset: None,
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| error(format!("not valid JSON: {e}")))?;
        match value {
            Value::Object(entries) => Ok(DatasetInfo {
                file: file.to_path_buf(),
                entries,
            }),
            other => Err(error(format!(
                "expected an object whose keys name datasets, found {}",
                type_name(&other)
            ))),
        }
    }

    /// The dataset names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entry `name`, checked and resolved.
    pub fn entry(&self, name: &str) -> Result<DatasetEntry, DatasetInfoError> {
        let error = |message: String| DatasetInfoError {
            file: self.file.clone(),
            dataset: Some(name.to_string()),
            message,
        };
        let Some(entry) = self.entries.get(name) else {
            let names: Vec<&str> = self.names().take(10).collect();
            let more = if self.entries.len() > names.len() {
                ", ..."
            } else {
                ""
            };
            return Err(error(format!(
                "not defined here (it defines: {}{more})",
                names.join(", ")
            )));
        };
        let dir = self.file.parent().unwrap_or(Path::new(""));
        resolve_entry(name, entry, dir).map_err(error)
    }

    /// The entries of LLaMA-Factory's `dataset` value: comma-separated names (each item may
    /// hold several), in order.
    pub fn entries<S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<Vec<DatasetEntry>, DatasetInfoError> {
        let names = split_names(names).map_err(|message| DatasetInfoError {
            file: self.file.clone(),
            dataset: None,
            message,
        })?;
        names.iter().map(|name| self.entry(name)).collect()
    }
}

/// `a,b` and `[a, b]` alike: every name, trimmed; an empty one is an error.
pub fn split_names<S: AsRef<str>>(names: &[S]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in names {
        for name in item.as_ref().split(',') {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("empty dataset name in `{}`", item.as_ref()));
            }
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err("no dataset named".to_string());
    }
    Ok(out)
}

/// `names` looked up in `dir/dataset_info.json`.
pub fn resolve<S: AsRef<str>>(
    dir: &Path,
    names: &[S],
) -> Result<Vec<DatasetEntry>, DatasetInfoError> {
    DatasetInfo::read(dir)?.entries(names)
}

fn resolve_entry(name: &str, entry: &Value, dir: &Path) -> Result<DatasetEntry, String> {
    let entry = entry
        .as_object()
        .ok_or_else(|| format!("expected an object, found {}", type_name(entry)))?;
    check_known(entry, &ENTRY_FIELDS, "")?;
    if let Some(remote) = REMOTE_FIELDS.iter().find(|f| is_set(entry, f)) {
        return Err(format!(
            "`{remote}` names remote data; Temper reads local files (give `file_name` only)"
        ));
    }
    for hub_only in ["subset", "folder"] {
        if is_set(entry, hub_only) {
            return Err(format!(
                "`{hub_only}` applies to hub datasets; Temper reads local files"
            ));
        }
    }
    if is_set(entry, "num_samples") {
        return Err("`num_samples` is not supported (LLaMA-Factory samples it at random)".into());
    }
    if let Some(split) = optional_str(entry, "split")?
        && split != "train"
    {
        return Err(format!(
            "`split`: a local file has only the `train` split, found `{split}`"
        ));
    }
    let file_name = optional_str(entry, "file_name")?
        .filter(|f| !f.is_empty())
        .ok_or("`file_name` is required")?;
    let sharegpt = match optional_str(entry, "formatting")? {
        None | Some("alpaca") => false,
        Some("sharegpt") => true,
        Some(other) => {
            return Err(format!(
                "`formatting`: expected alpaca or sharegpt, found `{other}`"
            ));
        }
    };
    let ranking = match entry.get("ranking") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(ranking)) => *ranking,
        Some(other) => {
            return Err(format!(
                "`ranking`: expected true or false, found {}",
                type_name(other)
            ));
        }
    };
    let columns = string_map(entry, "columns", &COLUMN_FIELDS)?;
    let column = |field: &str| {
        columns
            .iter()
            .find(|(key, _)| key == field)
            .map(|(_, column)| column.clone())
    };
    for media in ["images", "videos", "audios"] {
        if column(media).is_some() {
            return Err(format!(
                "`columns.{media}`: multimodal data is not supported"
            ));
        }
    }
    // LLaMA-Factory's field → Temper's field of the format; fields read only when named.
    let (mapping, optional, format): (&[(&str, &str)], &[&str], Format) = if sharegpt {
        let format = if column("kto_tag").is_some() {
            Format::TrlUnpaired
        } else if ranking {
            Format::ShareGptPreference
        } else {
            Format::ShareGpt
        };
        (
            &[
                ("messages", "conversations"),
                ("system", "system"),
                ("tools", "tools"),
                ("chosen", "chosen"),
                ("rejected", "rejected"),
                ("kto_tag", "kto_tag"),
            ],
            &["system", "tools"],
            format,
        )
    } else {
        for unread in ["tools", "kto_tag"] {
            if column(unread).is_some() {
                return Err(format!(
                    "`columns.{unread}`: Temper reads it with `formatting: sharegpt` only"
                ));
            }
        }
        let format = if ranking {
            Format::AlpacaPreference
        } else {
            Format::Alpaca
        };
        (
            &[
                ("prompt", "instruction"),
                ("query", "input"),
                ("response", "output"),
                ("history", "history"),
                ("system", "system"),
                ("chosen", "chosen"),
                ("rejected", "rejected"),
            ],
            &["system", "history"],
            format,
        )
    };
    let renames = mapping
        .iter()
        .filter_map(|(theirs, ours)| column(theirs).map(|column| (ours.to_string(), column)))
        .filter(|(field, column)| field != column)
        .collect();
    let dropped = optional
        .iter()
        .filter(|field| column(field).is_none())
        .map(|field| field.to_string())
        .collect();
    let tags = if sharegpt {
        let given = string_map(entry, "tags", &TAG_FIELDS)?;
        let mut tags = ShareGptTags::default();
        for (key, value) in given {
            let slot = match key.as_str() {
                "role_tag" => &mut tags.role,
                "content_tag" => &mut tags.content,
                "user_tag" => &mut tags.user,
                "assistant_tag" => &mut tags.assistant,
                "observation_tag" => &mut tags.observation,
                "function_tag" => &mut tags.function,
                _ => &mut tags.system,
            };
            *slot = value;
        }
        if tags.role == tags.content {
            return Err(format!(
                "`tags`: role_tag and content_tag are both `{}`",
                tags.role
            ));
        }
        Some(tags)
    } else {
        None
    };
    let path = dir.join(file_name);
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| format!("`file_name`: cannot list {}: {e}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            // Data files only, as LLaMA-Factory reads a folder: not a README or `.gitattributes`.
            .filter(|p| p.is_file() && is_data_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "`file_name`: {} holds no .json, .jsonl or .parquet files",
                path.display()
            ));
        }
        files
    } else {
        vec![path]
    };
    Ok(DatasetEntry {
        name: name.to_string(),
        files,
        format,
        columns: Columns::new(renames, dropped, tags),
    })
}

/// A field that is present and not null.
fn is_set(entry: &Map<String, Value>, field: &str) -> bool {
    entry.get(field).is_some_and(|v| !v.is_null())
}

fn optional_str<'a>(entry: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!(
            "`{field}`: expected a string, found {}",
            type_name(other)
        )),
    }
}

/// An object of strings whose keys are among `known` (null values: not given).
fn string_map(
    entry: &Map<String, Value>,
    field: &str,
    known: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let object = match entry.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(format!(
                "`{field}`: expected an object, found {}",
                type_name(other)
            ));
        }
    };
    check_known(object, known, field)?;
    let mut pairs = Vec::new();
    for (key, value) in object {
        match value {
            Value::Null => {}
            Value::String(text) if !text.is_empty() => pairs.push((key.clone(), text.clone())),
            other => {
                return Err(format!(
                    "`{field}.{key}`: expected a non-empty string, found {}",
                    type_name(other)
                ));
            }
        }
    }
    Ok(pairs)
}

fn check_known(object: &Map<String, Value>, known: &[&str], within: &str) -> Result<(), String> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => {
            let path = if within.is_empty() {
                unknown.clone()
            } else {
                format!("{within}.{unknown}")
            };
            Err(format!(
                "unknown field `{path}` (expected one of: {})",
                known.join(", ")
            ))
        }
    }
}

/// A visible `.json`, `.jsonl` or `.parquet` file.
fn is_data_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let data = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "json" | "jsonl" | "parquet"));
    !hidden && data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(entries: Value) -> DatasetInfo {
        DatasetInfo::parse(Path::new("d/dataset_info.json"), &entries.to_string()).unwrap()
    }

    fn error(entry: Value) -> String {
        info(json!({"x": entry}))
            .entry("x")
            .unwrap_err()
            .to_string()
    }

    /// A folder's data files are read in name order; other files in it are not.
    #[test]
    fn a_folder_gives_its_data_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("shards");
        std::fs::create_dir(&folder).unwrap();
        for name in [
            "b.json",
            "a.jsonl",
            "README.md",
            ".hidden.jsonl",
            "c.parquet",
        ] {
            std::fs::write(folder.join(name), "").unwrap();
        }
        let text = json!({"x": {"file_name": "shards"}}).to_string();
        std::fs::write(dir.path().join("dataset_info.json"), text).unwrap();
        let entries = resolve(dir.path(), &["x"]).unwrap();
        let names: Vec<_> = entries[0]
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.jsonl", "b.json", "c.parquet"]);
    }

    #[test]
    fn formatting_and_ranking_choose_the_format() {
        let cases = [
            (json!({"file_name": "a.json"}), Format::Alpaca),
            (
                json!({"file_name": "a.json", "ranking": true}),
                Format::AlpacaPreference,
            ),
            (
                json!({"file_name": "a.json", "formatting": "sharegpt"}),
                Format::ShareGpt,
            ),
            (
                json!({"file_name": "a.json", "formatting": "sharegpt", "ranking": true}),
                Format::ShareGptPreference,
            ),
            (
                json!({"file_name": "a.json", "formatting": "sharegpt", "columns": {"kto_tag": "label"}}),
                Format::TrlUnpaired,
            ),
        ];
        for (entry, format) in cases {
            let resolved = info(json!({"x": entry})).entry("x").unwrap();
            assert_eq!(resolved.format, format);
            assert_eq!(resolved.files, vec![PathBuf::from("d/a.json")]);
        }
    }

    #[test]
    fn columns_map_to_the_format_fields() {
        let entry = info(json!({"math": {
            "file_name": "m.jsonl",
            "columns": {"prompt": "problem", "query": "input", "response": "solution", "system": "sys"},
        }}))
        .entry("math")
        .unwrap();
        let mut record =
            json!({"problem": "1+1?", "solution": "2", "sys": "S", "history": [["a", "b"]]});
        entry.columns.apply(&mut record);
        // `history` is not named, so LLaMA-Factory does not read it.
        assert_eq!(
            record,
            json!({"instruction": "1+1?", "output": "2", "system": "S"})
        );
        let parsed = Format::Alpaca.parse(&record).unwrap();
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn errors_name_the_file_the_dataset_and_the_field() {
        assert_eq!(
            error(json!({"file_name": "a", "formatting": "openai"})),
            "d/dataset_info.json: dataset `x`: `formatting`: expected alpaca or sharegpt, found `openai`"
        );
        let cases = [
            (json!({}), "`file_name` is required"),
            (
                json!({"file_name": 3}),
                "`file_name`: expected a string, found a number",
            ),
            (
                json!({"file_name": "a", "ranking": "yes"}),
                "`ranking`: expected true or false",
            ),
            (
                json!({"file_name": "a", "colums": {}}),
                "unknown field `colums`",
            ),
            (
                json!({"file_name": "a", "columns": {"answer": "b"}}),
                "unknown field `columns.answer`",
            ),
            (
                json!({"file_name": "a", "columns": {"prompt": 1}}),
                "`columns.prompt`: expected a non-empty string",
            ),
            (
                json!({"file_name": "a", "formatting": "sharegpt", "tags": {"role": "r"}}),
                "unknown field `tags.role`",
            ),
            (
                json!({"file_name": "a", "formatting": "sharegpt", "tags": {"role_tag": "value"}}),
                "role_tag and content_tag are both `value`",
            ),
            (
                json!({"hf_hub_url": "org/data"}),
                "`hf_hub_url` names remote data",
            ),
            (
                json!({"file_name": "a", "num_samples": 5}),
                "`num_samples` is not supported",
            ),
            (
                json!({"file_name": "a", "split": "test"}),
                "only the `train` split",
            ),
            (
                json!({"file_name": "a", "columns": {"images": "img"}}),
                "multimodal data is not supported",
            ),
            (
                json!({"file_name": "a", "columns": {"kto_tag": "tag"}}),
                "with `formatting: sharegpt` only",
            ),
            (json!(["a"]), "expected an object, found an array"),
        ];
        for (entry, expected) in cases {
            let message = error(entry.clone());
            assert!(
                message.starts_with("d/dataset_info.json: dataset `x`: ")
                    && message.contains(expected),
                "{entry}: {message}"
            );
        }
        let defined = info(json!({"a": {"file_name": "a"}, "b": {"file_name": "b"}}));
        assert_eq!(
            defined.entries(&["a, c"]).unwrap_err().to_string(),
            "d/dataset_info.json: dataset `c`: not defined here (it defines: a, b)"
        );
        assert!(
            defined
                .entries(&["a,,b"])
                .unwrap_err()
                .message
                .contains("empty dataset name")
        );
        let names: Vec<String> = defined
            .entries(&["b ,a", "b"])
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["b", "a", "b"]);
        let not_object = DatasetInfo::parse(Path::new("i.json"), "[]").unwrap_err();
        assert_eq!(
            not_object.to_string(),
            "i.json: expected an object whose keys name datasets, found an array"
        );
        assert!(
            DatasetInfo::read(Path::new("no/such/dir"))
                .unwrap_err()
                .to_string()
                .starts_with("no/such/dir/dataset_info.json: cannot read")
        );
    }
}
