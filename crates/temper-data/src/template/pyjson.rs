//! `tojson` as transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent)`. minijinja's own `tojson` escapes HTML
//! characters and separates items with "," rather than ", ", which would change rendered
//! prompts, so the filter is replaced.

use std::io;

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// The `tojson` filter: `value | tojson`, with transformers' keyword arguments `indent`,
/// `separators`, `sort_keys` and `ensure_ascii`.
pub(crate) fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let invalid =
        |message: String| Error::new(ErrorKind::InvalidOperation, format!("tojson: {message}"));
    let indent: Option<usize> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let separators = match separators.as_deref() {
        None => None,
        Some([item, key]) => Some((item.clone(), key.clone())),
        Some(other) => {
            return Err(invalid(format!(
                "separators must be (item, key), got {} strings",
                other.len()
            )));
        }
    };
    let mut json = serde_json::to_value(&value).map_err(|e| invalid(e.to_string()))?;
    if sort_keys.unwrap_or(false) {
        sort_object_keys(&mut json);
    }
    let mut text =
        python_json_dumps(&json, indent, separators).map_err(|e| invalid(e.to_string()))?;
    if ensure_ascii.unwrap_or(false) {
        text = escape_non_ascii(&text);
    }
    Ok(Value::from_safe_string(text))
}

/// `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)`: Python's
/// default separators are ", " and ": " without indent, "," and ": " with it.
pub(crate) fn python_json_dumps<T: Serialize + ?Sized>(
    value: &T,
    indent: Option<usize>,
    separators: Option<(String, String)>,
) -> Result<String, serde_json::Error> {
    let (item, key) = separators.unwrap_or_else(|| match indent {
        None => (", ".into(), ": ".into()),
        Some(_) => (",".into(), ": ".into()),
    });
    let mut out = Vec::new();
    let formatter = PythonFormatter {
        item: item.into_bytes(),
        key: key.into_bytes(),
        indent: indent.map(|width| vec![b' '; width]),
        depth: 0,
        has_items: false,
    };
    value.serialize(&mut Serializer::with_formatter(&mut out, formatter))?;
    // serde_json writes only UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

fn sort_object_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> =
                std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut inner) in entries {
                sort_object_keys(&mut inner);
                map.insert(key, inner);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_object_keys),
        _ => {}
    }
}

/// `ensure_ascii=True`: every non-ASCII character as `\uXXXX` (UTF-16, as Python writes it).
/// Non-ASCII characters only occur inside JSON strings, so the text can be rewritten whole.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Python's `json.dumps` layout: configurable separators; with an indent, one item per line.
struct PythonFormatter {
    item: Vec<u8>,
    key: Vec<u8>,
    indent: Option<Vec<u8>>,
    depth: usize,
    has_items: bool,
}

impl PythonFormatter {
    fn newline<W: ?Sized + io::Write>(&self, writer: &mut W) -> io::Result<()> {
        if let Some(indent) = &self.indent {
            writer.write_all(b"\n")?;
            for _ in 0..self.depth {
                writer.write_all(indent)?;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + io::Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_items = false;
        writer.write_all(bracket)
    }

    fn close<W: ?Sized + io::Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_items {
            self.newline(writer)?;
        }
        self.has_items = true;
        writer.write_all(bracket)
    }

    fn next_item<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if !first {
            writer.write_all(&self.item)?;
        }
        self.has_items = true;
        self.newline(writer)
    }
}

impl Formatter for PythonFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.next_item(writer, first)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.next_item(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(&self.key)
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
            python_json_dumps(&value, None, None).unwrap(),
            r#"{"name": "get_weather", "parameters": {"city": "Zürich <\"x\">", "list": [1, 2.5, null, true]}, "e": {}}"#
        );
        assert_eq!(
            python_json_dumps(&json!({"a": [1, {"b": "\n\u{1}"}], "c": []}), Some(2), None)
                .unwrap(),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"\\n\\u0001\"\n    }\n  ],\n  \"c\": []\n}"
        );
    }

    #[test]
    fn keyword_arguments_follow_python() {
        let env = {
            let mut env = minijinja::Environment::new();
            env.add_filter("tojson", tojson);
            env
        };
        let render = |source: &str| {
            env.render_str(
                source,
                minijinja::context! { v => json!({"b": "é😀", "a": [1, 2]}) },
            )
            .unwrap()
        };
        assert_eq!(
            render("{{ v | tojson(sort_keys=true) }}"),
            r#"{"a": [1, 2], "b": "é😀"}"#
        );
        assert_eq!(
            render("{{ v | tojson(ensure_ascii=true) }}"),
            r#"{"b": "\u00e9\ud83d\ude00", "a": [1, 2]}"#
        );
        assert_eq!(
            render("{{ v | tojson(separators=[',', ':']) }}"),
            r#"{"b":"é😀","a":[1,2]}"#
        );
        assert_eq!(
            render("{{ v | tojson(indent=1, separators=[';', '=']) }}"),
            "{\n \"b\"=\"é😀\";\n \"a\"=[\n  1;\n  2\n ]\n}"
        );
    }
}
