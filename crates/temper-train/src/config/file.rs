//! Config files: a `.yaml`/`.yml`, `.toml` or `.json` table of keys, with every non-finite
//! number refused where the file's own syntax has one.

use std::path::{Path, PathBuf};

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
}

/// The `key → value` table of a `.yaml`/`.yml`, `.toml` or `.json` config file.
pub fn read_config_file(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let syntax = |reason: String| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        reason,
    };
    // YAML and TOML are read as themselves first: they have NaN and infinities, which JSON
    // has not, and the conversion would quietly turn such a value into "unset".
    let value: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            let native: yaml_serde::Value =
                yaml_serde::from_str(&text).map_err(|e| syntax(e.to_string()))?;
            refuse_non_finite(yaml_floats(&native, ""), path)?;
            serde_json::to_value(native).map_err(|e| syntax(e.to_string()))?
        }
        Some("toml") => {
            let native: toml::Table =
                toml::from_str(&text).map_err(|e| syntax(e.message().to_string()))?;
            let floats = native
                .iter()
                .flat_map(|(key, value)| toml_floats(value, key))
                .collect();
            refuse_non_finite(floats, path)?;
            serde_json::to_value(native).map_err(|e| syntax(e.to_string()))?
        }
        Some("json") => serde_json::from_str(&text).map_err(|e| syntax(e.to_string()))?,
        _ => {
            return Err(syntax(
                "a config file ends in .yaml, .yml, .toml or .json".to_string(),
            ));
        }
    };
    match value {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        _ => Err(syntax("the file is not a table of keys".to_string())),
    }
}

/// Every float of a YAML value with the key it sits under.
fn yaml_floats(value: &yaml_serde::Value, key: &str) -> Vec<(String, f64)> {
    match value {
        yaml_serde::Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map(|f| (key.to_string(), f))
            .into_iter()
            .collect(),
        yaml_serde::Value::Sequence(items) => {
            items.iter().flat_map(|v| yaml_floats(v, key)).collect()
        }
        yaml_serde::Value::Mapping(map) => map
            .iter()
            .flat_map(|(k, v)| yaml_floats(v, k.as_str().unwrap_or(key)))
            .collect(),
        yaml_serde::Value::Tagged(tagged) => yaml_floats(&tagged.value, key),
        _ => Vec::new(),
    }
}

/// Every float of a TOML value with the key it sits under.
fn toml_floats(value: &toml::Value, key: &str) -> Vec<(String, f64)> {
    match value {
        toml::Value::Float(f) => vec![(key.to_string(), *f)],
        toml::Value::Array(items) => items.iter().flat_map(|v| toml_floats(v, key)).collect(),
        toml::Value::Table(table) => table.iter().flat_map(|(k, v)| toml_floats(v, k)).collect(),
        _ => Vec::new(),
    }
}

/// Refuses the first value that is not a finite number, naming its key.
fn refuse_non_finite(floats: Vec<(String, f64)>, path: &Path) -> Result<(), ConfigFileError> {
    match floats.into_iter().find(|(_, f)| !f.is_finite()) {
        Some((key, value)) => Err(ConfigFileError::Syntax {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be a finite number, not {value}"),
        }),
        None => Ok(()),
    }
}
