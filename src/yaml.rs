//! YAML parsed into a tree whose every node knows its line and column, so that validators can
//! point at the exact place of a semantic problem (an unknown key, a bad duration) and report
//! all problems of a file, not only the first. serde-saphyr does the parsing.

use crate::diagnostic::Diagnostic;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A YAML value with its location.
#[derive(Debug, Clone)]
pub struct Node {
    pub line: u64,
    pub col: u64,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type, for messages such as "expected a string, found a list".
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar as text, for places that accept `3d` as well as `3` (numbers) or `true`.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn diag(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(path, self.line, self.col, message)
    }
}

/// Parses a YAML document; a syntax error becomes one located diagnostic.
pub fn parse(path: &str, text: &str) -> Result<Node, Diagnostic> {
    let spanned: Result<Spanned<Value>, _> = serde_saphyr::from_str(text);
    match spanned {
        Ok(s) => Ok(Node {
            line: s.referenced.line(),
            col: s.referenced.column(),
            value: s.value,
        }),
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let message = in_users_words(bare_message(&e.to_string()));
            let (line, col) = if is_about_tabs(&message) {
                tab_at_or_after(text, line).unwrap_or((line, col))
            } else {
                (line, col)
            };
            Err(Diagnostic::new(
                path,
                line,
                col,
                format!("invalid YAML: {message}"),
            ))
        }
    }
}

fn node(s: Spanned<Value>) -> Node {
    Node {
        line: s.referenced.line(),
        col: s.referenced.column(),
        value: s.value,
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Value>, Spanned<Value>>()? {
            entries.push((node(k), node(v)));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping being read by a validator: it hands out known keys and, at the end, reports every
/// key nobody asked for as unknown (with a "did you mean" hint).
pub struct MapReader<'a> {
    path: &'a str,
    entries: Vec<(&'a Node, &'a Node, bool)>,
}

impl<'a> MapReader<'a> {
    /// Reads `node` as a mapping, or reports that it is not one.
    pub fn new(
        path: &'a str,
        node: &'a Node,
        what: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(Self {
                path,
                entries: entries.iter().map(|(k, v)| (k, v, false)).collect(),
            }),
            _ => {
                diags.push(node.diag(
                    path,
                    format!("{what} must be a mapping, found {}", node.type_name()),
                ));
                None
            }
        }
    }

    /// The value under `key`, if present; marks the key as known.
    pub fn get(&mut self, key: &str) -> Option<&'a Node> {
        self.entries.iter_mut().find_map(|(k, v, seen)| {
            if k.as_str() == Some(key) {
                *seen = true;
                Some(*v)
            } else {
                None
            }
        })
    }

    /// The value under `key`, or a "missing key" diagnostic at `parent`.
    pub fn require(
        &mut self,
        key: &str,
        parent: &Node,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<&'a Node> {
        let found = self.get(key);
        if found.is_none() {
            diags.push(parent.diag(self.path, format!("missing required key '{key}'")));
        }
        found
    }

    /// Every key that no `get` asked for, as an "unknown key" diagnostic.
    pub fn finish(self, known: &[&str], diags: &mut Vec<Diagnostic>) {
        for (k, _, seen) in self.entries {
            if seen {
                continue;
            }
            let name = k.scalar_text().unwrap_or_default();
            let mut d = k.diag(self.path, format!("unknown key '{name}'"));
            d = match crate::diagnostic::did_you_mean(&name, known) {
                Some(s) => d.with_hint(format!("did you mean '{s}'?")),
                None => d.with_hint(format!("known keys here: {}", known.join(", "))),
            };
            diags.push(d);
        }
    }
}

/// Reads a string scalar or reports the wrong type.
pub fn expect_str<'a>(
    path: &str,
    node: &'a Node,
    key: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a str> {
    let s = node.as_str();
    if s.is_none() {
        diags.push(node.diag(
            path,
            format!("'{key}' must be a string, found {}", node.type_name()),
        ));
    }
    s
}

/// The parser's messages that name its own settings, said as what to fix in the file.
fn in_users_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest).trim();
        return format!("the key '{key}' is given twice; keep one");
    }
    if message.starts_with("budget breached") {
        return "the file is too large or expands too far (aliases repeating aliases); rebuy \
                reads at most 250,000 values from one file"
            .into();
    }
    if is_about_tabs(message) {
        return format!("{message} (indent with spaces, not tabs)");
    }
    message.to_string()
}

fn is_about_tabs(message: &str) -> bool {
    message.contains("found a tab") || message.contains("tab character")
}

/// The first tab in a line's indentation from `line` on (1-based line and column): the parser
/// places a tab at the end of what came before it, often the line above.
fn tab_at_or_after(text: &str, line: u64) -> Option<(u64, u64)> {
    let from = usize::try_from(line.max(1) - 1).ok()?;
    text.lines().enumerate().skip(from).find_map(|(i, l)| {
        let indent = l.len() - l.trim_start_matches([' ', '\t']).len();
        l[..indent]
            .find('\t')
            .map(|at| (i as u64 + 1, at as u64 + 1))
    })
}

/// The parser's words for a problem without the place it puts in front ("error: line 3 column
/// 3: …"): rebuy prints the place itself, as `path:line:col:`.
pub fn bare_message(text: &str) -> &str {
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.strip_prefix("line ") {
        Some(rest) if rest.contains(" column ") => rest.split_once(": ").map_or(first, |(_, m)| m),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tab_in_the_indentation_is_placed_on_its_own_line() {
        let text = "id: a\nsteps:\n  - wait: 3d\n\t- wait: 4d\n";
        let e = parse("t.yaml", text).unwrap_err();
        assert!(e.message.contains("not tabs"), "{e:?}");
        assert_eq!((e.line, e.col), (4, 1), "{e:?}");
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = parse("t.yaml", "id: a\nsteps:\n  - wait: 3d\n    wiat: 4d\n").unwrap();
        let Value::Map(entries) = &doc.value else {
            panic!("not a map")
        };
        let (_, steps) = &entries[1];
        let Value::Seq(items) = &steps.value else {
            panic!("not a seq")
        };
        let Value::Map(step) = &items[0].value else {
            panic!("not a map")
        };
        let (key, value) = &step[1];
        assert_eq!((key.line, key.col), (4, 5));
        assert_eq!(value.as_str(), Some("4d"));
    }

    #[test]
    fn the_parsers_own_settings_are_not_what_a_user_is_told() {
        let e = parse("s.yaml", "id: a\nid: b\n").unwrap_err().to_string();
        assert!(e.contains("the key 'id' is given twice; keep one"), "{e}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let e = parse("s.yaml", bomb).unwrap_err().to_string();
        assert!(e.contains("too large or expands too far"), "{e}");
        assert!(!e.contains("Nodes"), "{e}");
    }

    #[test]
    fn a_syntax_error_is_located() {
        let err = parse("t.yaml", "id: a\nsteps: [\n").unwrap_err();
        assert_eq!(err.path, "t.yaml");
        assert!(err.line >= 2, "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn unknown_keys_are_all_reported_with_a_hint() {
        let doc = parse("t.yaml", "wiat: 3d\nsend: x\nfoo: 1\n").unwrap();
        let mut diags = vec![];
        let mut m = MapReader::new("t.yaml", &doc, "a step", &mut diags).unwrap();
        m.get("send");
        m.finish(&["wait", "send", "at"], &mut diags);
        assert_eq!(diags.len(), 2);
        assert_eq!(
            diags[0].to_string(),
            "t.yaml:1:1: unknown key 'wiat'\n  hint: did you mean 'wait'?"
        );
        assert_eq!((diags[1].line, diags[1].col), (3, 1));
    }
}
