//! One input record (a CSV row, a JSON Lines line, an API body's element) and its fields by
//! name, as every importer and the API read them.

use serde_json::Value;
use std::cmp::Ordering;
use std::sync::Arc;

/// One input record: its line (or index in a request), and its fields by column name.
pub struct Record {
    pub line: u64,
    pub fields: Fields,
}

/// A record's fields by name: a list kept sorted by name (`by_name`), read one by one when short
/// and searched by halves when wide. Not a map per record: a CSV row's names are its header's,
/// shared rather than copied per row, and put in order by a permutation worked out once per
/// chunk of rows (the reader of a 5-million-row file spent a quarter of its time building and
/// searching a `BTreeMap` per row). A name given twice keeps its last value, as a map built
/// from the same pairs does.
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(Arc<str>, Value)>);

impl Fields {
    /// The value of `key`, if the record has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        // A few fields (the usual record): one look at each, from the last, is quickest.
        if self.0.len() <= 16 {
            return self
                .0
                .iter()
                .rev()
                .find(|(k, _)| &**k == key)
                .map(|(_, v)| v);
        }
        // Past the last entry named `key` (or where it would be).
        let end = self
            .0
            .partition_point(|(k, _)| by_name(k, key) != Ordering::Greater);
        let (k, v) = self.0.get(end.checked_sub(1)?)?;
        (&**k == key).then_some(v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every field once (a name given twice: its last value), in `by_name`'s order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        let later = self.0.iter().skip(1).map(|(k, _)| Some(k)).chain([None]);
        self.0
            .iter()
            .zip(later)
            .filter(|((k, _), next)| *next != Some(k))
            .map(|((k, v), _)| (&**k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a field named as a CSV header's column; names must come in order (see
    /// `header_order`), a repeated one after its earlier columns.
    pub fn push(&mut self, key: Arc<str>, value: Value) {
        debug_assert!(self
            .0
            .last()
            .is_none_or(|(k, _)| by_name(k, &key) != Ordering::Greater));
        self.0.push((key, value));
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
}

/// The order in which to read a header's columns so that their names come sorted (stable: a
/// repeated name's columns keep theirs), for `Fields::push`.
pub fn header_order(names: &[Arc<str>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|a, b| by_name(&names[*a], &names[*b]));
    order
}

/// The order of the names: shorter first, then by their bytes. Names of different lengths
/// are told apart without reading them (most look-ups: `total` among `order_id`,
/// `customer_id`…), where comparing their bytes was a sixth of the reader's time.
fn by_name(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl FromIterator<(String, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(pairs: I) -> Self {
        let mut all: Vec<(Arc<str>, Value)> =
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
        // Stable: of a name given twice, the later stays later, and is the one read.
        all.sort_by(|a, b| by_name(&a.0, &b.0));
        Self(all)
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
            ("b".to_string(), json!("2")),
            ("a".to_string(), json!("1")),
            ("c".to_string(), json!("4")),
            ("a".to_string(), json!("3")),
        ]
        .into_iter()
        .collect();
        assert_eq!(f.get("a"), Some(&json!("3")));
        assert_eq!(f.get("c"), Some(&json!("4")));
        assert!(f.contains_key("b") && !f.contains_key("0") && !f.contains_key("d"));
        let all: Vec<_> = f.iter().collect();
        assert_eq!(
            all,
            [("a", &json!("3")), ("b", &json!("2")), ("c", &json!("4"))]
        );
        assert!(Fields::default().get("a").is_none());
    }

    #[test]
    fn a_wide_record_is_searched_as_a_short_one() {
        let f: Fields = (0..40)
            .map(|i| (format!("col{i}"), json!(i)))
            .chain([("col7".to_string(), json!("last"))])
            .collect();
        assert_eq!(f.get("col7"), Some(&json!("last")));
        assert_eq!(f.get("col39"), Some(&json!(39)));
        assert!(f.get("col40").is_none() && f.get("a").is_none());
        assert_eq!(f.iter().count(), 40);
    }

    #[test]
    fn a_header_read_in_its_order_gives_the_same_fields_as_its_pairs() {
        let names: Vec<Arc<str>> = ["sku", "b", "sku", "a"].map(Arc::from).to_vec();
        let cells = ["x", "1", "y", "2"];
        let mut pushed = Fields::default();
        for i in header_order(&names) {
            pushed.push(names[i].clone(), json!(cells[i]));
        }
        let collected: Fields = names
            .iter()
            .zip(cells)
            .map(|(n, c)| (n.to_string(), json!(c)))
            .collect();
        assert_eq!(pushed.get("sku"), Some(&json!("y")));
        assert_eq!(
            pushed.iter().collect::<Vec<_>>(),
            collected.iter().collect::<Vec<_>>()
        );
    }
}
