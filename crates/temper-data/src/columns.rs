//! Column mapping, as LLaMA-Factory's `dataset_info.json` `columns` gives it: which field of a
//! record holds each field a format reads (`prompt=problem` reads `problem` as `prompt`), and,
//! for ShareGPT data, which keys and role names its messages use (`tags`).

use serde_json::{Map, Value};

/// How a record is rewritten before its format is detected or read: fields dropped, then
/// `field ← column` renames, then ShareGPT messages' keys and roles renamed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    renames: Vec<(String, String)>,
    /// Fields left out of every record (LLaMA-Factory reads `system`, `history` and `tools`
    /// only when its entry names their column).
    dropped: Vec<String>,
    tags: Option<ShareGptTags>,
}

/// The keys and role names of ShareGPT messages (LLaMA-Factory's `tags`); the defaults are
/// the ones Temper's ShareGPT reader knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareGptTags {
    pub role: String,
    pub content: String,
    pub user: String,
    pub assistant: String,
    pub observation: String,
    pub function: String,
    pub system: String,
}

impl Default for ShareGptTags {
    fn default() -> Self {
        ShareGptTags {
            role: "from".into(),
            content: "value".into(),
            user: "human".into(),
            assistant: "gpt".into(),
            observation: "observation".into(),
            function: "function_call".into(),
            system: "system".into(),
        }
    }
}

/// The record fields that hold ShareGPT messages.
const MESSAGE_FIELDS: [&str; 3] = ["conversations", "chosen", "rejected"];

impl ShareGptTags {
    /// One message with the default keys and role names, so Temper's reader knows it.
    fn rename(&self, message: &mut Value) {
        let Value::Object(message) = message else {
            return;
        };
        move_key(message, &self.role, "from");
        move_key(message, &self.content, "value");
        if let Some(Value::String(role)) = message.get_mut("from") {
            let renamed = [
                (&self.user, "human"),
                (&self.assistant, "gpt"),
                (&self.observation, "observation"),
                (&self.function, "function_call"),
                (&self.system, "system"),
            ]
            .into_iter()
            .find(|(tag, _)| *tag == role);
            if let Some((_, name)) = renamed {
                *role = name.to_string();
            }
        }
    }

    /// Every message of `record`'s message fields renamed. As in LLaMA-Factory, a first
    /// message with the system role replaces the record's `system` field.
    fn apply(&self, record: &mut Map<String, Value>) {
        for field in MESSAGE_FIELDS {
            match record.get_mut(field) {
                Some(Value::Array(messages)) => messages.iter_mut().for_each(|m| self.rename(m)),
                Some(message @ Value::Object(_)) => self.rename(message),
                _ => {}
            }
        }
        let opens_with_system = record
            .get("conversations")
            .and_then(|c| c.get(0))
            .and_then(|m| m.get("from"))
            .is_some_and(|role| role == "system");
        if opens_with_system {
            record.remove("system");
        }
    }
}

fn move_key(object: &mut Map<String, Value>, from: &str, to: &str) {
    if from != to
        && let Some(value) = object.remove(from)
    {
        object.insert(to.to_string(), value);
    }
}

impl Columns {
    /// `field=column` pairs; an empty side, or a field named twice, is an error naming the pair.
    pub fn parse(pairs: &[String]) -> Result<Columns, String> {
        let mut renames: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let (field, column) = pair
                .split_once('=')
                .filter(|(field, column)| !field.is_empty() && !column.is_empty())
                .ok_or_else(|| format!("`{pair}` is not field=column"))?;
            if renames.iter().any(|(known, _)| known == field) {
                return Err(format!("`{field}` is mapped twice"));
            }
            renames.push((field.to_string(), column.to_string()));
        }
        Ok(Columns {
            renames,
            ..Columns::default()
        })
    }

    /// `renames` (`field ← column`) after dropping `dropped` fields (those a rename reads
    /// are kept), with ShareGPT `tags` when given.
    pub fn new(
        renames: Vec<(String, String)>,
        dropped: Vec<String>,
        tags: Option<ShareGptTags>,
    ) -> Columns {
        let dropped = dropped
            .into_iter()
            .filter(|field| !renames.iter().any(|(_, column)| column == field))
            .collect();
        Columns {
            renames,
            dropped,
            tags: tags.filter(|tags| *tags != ShareGptTags::default()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.renames.is_empty() && self.dropped.is_empty() && self.tags.is_none()
    }

    /// `field ← column` renames, in order.
    pub fn renames(&self) -> &[(String, String)] {
        &self.renames
    }

    /// `record` with dropped fields removed, each mapped column moved to its field and
    /// ShareGPT messages renamed (a record that is not an object, or lacks the column, is
    /// left as it is).
    pub fn apply(&self, record: &mut Value) {
        let Value::Object(object) = record else {
            return;
        };
        for field in &self.dropped {
            object.remove(field);
        }
        // Taken out first, so that `a=b, b=a` swaps rather than loses a value.
        let moved: Vec<(&String, Value)> = self
            .renames
            .iter()
            .filter_map(|(field, column)| object.remove(column).map(|value| (field, value)))
            .collect();
        for (field, value) in moved {
            object.insert(field.clone(), value);
        }
        if let Some(tags) = &self.tags {
            tags.apply(object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_renamed_before_reading() {
        let columns =
            Columns::parse(&["prompt=problem".into(), "ground_truth=answer".into()]).unwrap();
        let mut record = json!({"problem": "1+1?", "answer": "2", "id": 7});
        columns.apply(&mut record);
        assert_eq!(
            record,
            json!({"prompt": "1+1?", "ground_truth": "2", "id": 7})
        );
        let swap = Columns::parse(&["a=b".into(), "b=a".into()]).unwrap();
        let mut record = json!({"a": 1, "b": 2});
        swap.apply(&mut record);
        assert_eq!(record, json!({"a": 2, "b": 1}));
        assert!(
            Columns::parse(&["prompt".into()])
                .unwrap_err()
                .contains("field=column")
        );
        assert!(
            Columns::parse(&["a=b".into(), "a=c".into()])
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn sharegpt_tags_rename_keys_and_roles() {
        let tags = ShareGptTags {
            role: "role".into(),
            content: "content".into(),
            user: "user".into(),
            assistant: "assistant".into(),
            ..ShareGptTags::default()
        };
        let columns = Columns::new(
            vec![("conversations".into(), "messages".into())],
            vec!["tools".into()],
            Some(tags),
        );
        let mut record = json!({
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
            ],
            "chosen": {"role": "assistant", "content": "a"},
            "tools": "[]",
            "system": "S",
        });
        columns.apply(&mut record);
        assert_eq!(
            record,
            json!({
                "conversations": [
                    {"from": "human", "value": "hi"},
                    {"from": "gpt", "value": "yo"},
                ],
                "chosen": {"from": "gpt", "value": "a"},
                "system": "S",
            })
        );
        // A first system message replaces the record's `system` field.
        let mut record = json!({
            "messages": [{"role": "system", "content": "T"}, {"role": "user", "content": "q"}],
            "system": "S",
        });
        columns.apply(&mut record);
        assert_eq!(
            record,
            json!({"conversations": [{"from": "system", "value": "T"}, {"from": "human", "value": "q"}]})
        );
        // Default tags change nothing; a dropped field that a rename reads is kept.
        let plain = Columns::new(
            vec![("system".into(), "tools".into())],
            vec!["tools".into(), "history".into()],
            Some(ShareGptTags::default()),
        );
        let mut record = json!({"tools": "t", "history": [], "conversations": [{"from": "human", "value": "q"}]});
        plain.apply(&mut record);
        assert_eq!(
            record,
            json!({"system": "t", "conversations": [{"from": "human", "value": "q"}]})
        );
    }
}
