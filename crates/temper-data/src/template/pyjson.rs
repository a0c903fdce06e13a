//! `tojson` as transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent)`. minijinja's own `tojson` escapes HTML
//! characters and separates items with "," rather than ", ", which would change rendered
//! prompts, so the filter is replaced.

use std::io;

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter, Serializer};

/// The `tojson` filter: `value | tojson` or `value | tojson(indent=2)`.
pub(crate) fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // transformers' signature also takes these; they change nothing we support.
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let text = python_json_dumps(&value, indent)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(text))
}

/// `json.dumps(value, ensure_ascii=False, indent=indent)`.
pub fn python_json_dumps<T: Serialize + ?Sized>(
    value: &T,
    indent: Option<usize>,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    match indent {
        None => value.serialize(&mut Serializer::with_formatter(&mut out, PythonCompact))?,
        Some(width) => {
            let spaces = vec![b' '; width];
            value.serialize(&mut Serializer::with_formatter(
                &mut out,
                PrettyFormatter::with_indent(&spaces),
            ))?
        }
    }
    // serde_json writes only UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Python's default separators: ", " between items, ": " after keys.
struct PythonCompact;

impl Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let value = json!({"name": "get_weather", "parameters": {"city": "Zürich <\"x\">", "list": [1, 2.5, null, true]}, "e": {}});
        assert_eq!(
            python_json_dumps(&value, None).unwrap(),
            r#"{"name": "get_weather", "parameters": {"city": "Zürich <\"x\">", "list": [1, 2.5, null, true]}, "e": {}}"#
        );
        assert_eq!(
            python_json_dumps(&json!({"a": [1, {"b": "\n\u{1}"}], "c": []}), Some(2)).unwrap(),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"\\n\\u0001\"\n    }\n  ],\n  \"c\": []\n}"
        );
    }
}
