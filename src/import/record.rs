//! One input record (a CSV row, a JSON Lines line, an API body's element) and its fields by
//! name, as every importer and the API read them.

use serde_json::Value;
use std::sync::Arc;

/// One input record: its line (or index in a request), and its fields by column name.
pub struct Record {
    pub line: u64,
    pub fields: Fields,
}

/// A record's fields by name. A short list, not a map: a record has a handful of fields, each
/// read a few times, and a CSV row's names are its header's, shared rather than copied per row
/// (the reader of a 5-million-row file spent a quarter of its time building and searching a
/// map per row). A name given twice keeps its last value, as a map built from the same pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(Arc<str>, Value)>);

impl Fields {
    /// The value of `key`, if the record has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every field once (a name given twice: its last value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !self.0[i + 1..].iter().any(|(later, _)| later == k))
            .map(|(_, (k, v))| (&**k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a field under a name shared with other records (a CSV header's).
    pub fn push(&mut self, key: Arc<str>, value: Value) {
        self.0.push((key, value));
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// The fields as one JSON object.
    pub fn to_object(&self) -> Value {
        Value::Object(
            self.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
}

impl FromIterator<(String, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(pairs: I) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<serde_json::Map<String, Value>> for Fields {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_given_twice_keeps_its_last_value_everywhere() {
        let f: Fields = [
            ("a".to_string(), json!("1")),
            ("b".to_string(), json!("2")),
            ("a".to_string(), json!("3")),
        ]
        .into_iter()
        .collect();
        assert_eq!(f.get("a"), Some(&json!("3")));
        assert!(f.contains_key("b") && !f.contains_key("c"));
        let mut all: Vec<_> = f.iter().collect();
        all.sort_by_key(|(k, _)| *k);
        assert_eq!(all, [("a", &json!("3")), ("b", &json!("2"))]);
        assert_eq!(f.to_object(), json!({"a": "3", "b": "2"}));
    }
}
