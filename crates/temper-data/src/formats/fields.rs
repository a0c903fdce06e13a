//! Typed access to a record's fields with errors that name the field.

use serde_json::{Map, Value};

use crate::error::FieldError;

pub(crate) type Object = Map<String, Value>;

pub(crate) fn as_object<'a>(value: &'a Value, field: &str) -> Result<&'a Object, FieldError> {
    value.as_object().ok_or_else(|| {
        FieldError::new(
            field,
            format!("expected an object, found {}", type_name(value)),
        )
    })
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A present, non-null field.
pub(crate) fn required<'a>(object: &'a Object, key: &str) -> Result<&'a Value, FieldError> {
    match object.get(key) {
        None => Err(FieldError::new(key, "missing")),
        Some(Value::Null) => Err(FieldError::new(key, "is null")),
        Some(value) => Ok(value),
    }
}

/// A field that may be absent or null.
pub(crate) fn optional<'a>(object: &'a Object, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

pub(crate) fn string<'a>(value: &'a Value, field: &str) -> Result<&'a str, FieldError> {
    value.as_str().ok_or_else(|| {
        FieldError::new(
            field,
            format!("expected a string, found {}", type_name(value)),
        )
    })
}

pub(crate) fn required_str<'a>(object: &'a Object, key: &str) -> Result<&'a str, FieldError> {
    string(required(object, key)?, key)
}

pub(crate) fn optional_str<'a>(
    object: &'a Object,
    key: &str,
) -> Result<Option<&'a str>, FieldError> {
    optional(object, key).map(|v| string(v, key)).transpose()
}

/// A string that must hold something besides whitespace.
pub(crate) fn non_empty<'a>(text: &'a str, field: &str, what: &str) -> Result<&'a str, FieldError> {
    if text.trim().is_empty() {
        Err(FieldError::new(field, format!("{what} is empty")))
    } else {
        Ok(text)
    }
}

pub(crate) fn array<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>, FieldError> {
    value.as_array().ok_or_else(|| {
        FieldError::new(
            field,
            format!("expected an array, found {}", type_name(value)),
        )
    })
}

/// `name[index]`, the path of an array element.
pub(crate) fn element(field: &str, index: usize) -> String {
    format!("{field}[{index}]")
}

/// Tool schemas: a list, or a JSON string holding one (LLaMA-Factory stores them as strings).
pub(crate) fn tools(object: &Object, key: &str) -> Result<Option<Vec<Value>>, FieldError> {
    let Some(value) = optional(object, key) else {
        return Ok(None);
    };
    let parsed;
    let list = match value {
        Value::String(text) if text.trim().is_empty() => return Ok(None),
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| FieldError::new(key, format!("not valid JSON: {e}")))?;
            &parsed
        }
        other => other,
    };
    match list {
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Array(items) => Ok(Some(items.clone())),
        Value::Object(_) => Ok(Some(vec![list.clone()])),
        other => Err(FieldError::new(
            key,
            format!(
                "expected a list of tool schemas, found {}",
                type_name(other)
            ),
        )),
    }
}
