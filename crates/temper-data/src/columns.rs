//! Column mapping, as LLaMA-Factory's `dataset_info.json` `columns` gives it: which field of a
//! record holds each field a format reads (`prompt=problem` reads `problem` as `prompt`).

use serde_json::Value;

/// `field ← column` renames, applied to every record before its format is detected or read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns(Vec<(String, String)>);

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
        Ok(Columns(renames))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `record` with each mapped column moved to its field (a record that is not an object, or
    /// lacks the column, is left as it is).
    pub fn apply(&self, record: &mut Value) {
        let Value::Object(object) = record else {
            return;
        };
        // Taken out first, so that `a=b, b=a` swaps rather than loses a value.
        let moved: Vec<(&String, Value)> = self
            .0
            .iter()
            .filter_map(|(field, column)| object.remove(column).map(|value| (field, value)))
            .collect();
        for (field, value) in moved {
            object.insert(field.clone(), value);
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
}
