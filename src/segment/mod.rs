//! Named segments: YAML files (`segments:` at the top, beside the scenarios) whose `where:`
//! conditions are parsed by `lang`, compiled to bound SQL by `sql` (membership over all
//! customers is one query) and evaluated in Rust by `eval` (the reference the SQL is tested
//! against). Membership is kept by the store; its changes fire `segment_entered/exited`.

pub mod eval;
pub mod fields;
pub mod lang;
pub mod sql;

pub use lang::{Cond, LangError};
pub use sql::{compile, compile_for, Bind, Dialect, SqlCondition};

use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::yaml::{expect_str, MapReader, Node, Value};
use chrono::NaiveDate;
use chrono_tz::Tz;

/// A named, validated segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub description: String,
    pub condition: Cond,
    /// The condition as written, for messages and `rebuy segments`.
    pub source: String,
    pub path: String,
    pub line: u64,
}

/// The purchase-history window of an evaluation: orders count up to the end of the as-of day
/// (in the shop's zone); "within N days" is the N calendar days ending with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The start of the day after the as-of date (unix ms).
    pub end_ms: i64,
    as_of: NaiveDate,
    zone: Tz,
}

impl Window {
    pub fn new(as_of: NaiveDate, zone: Tz) -> Self {
        Self {
            end_ms: crate::clock::start_of_day(as_of + chrono::Duration::days(1), zone),
            as_of,
            zone,
        }
    }

    /// The start of the `days`-day window ending with the as-of date.
    pub fn since_ms(&self, days: i64) -> i64 {
        crate::clock::start_of_day(self.as_of - chrono::Duration::days(days - 1), self.zone)
    }
}

const FILE_KEYS: &[&str] = &["segments"];
const SEGMENT_KEYS: &[&str] = &["name", "description", "where"];

/// Whether a parsed YAML file is a segment file (a mapping with `segments:`), not a scenario.
pub fn is_segment_file(doc: &Node) -> bool {
    match &doc.value {
        Value::Map(entries) => entries.iter().any(|(k, _)| k.as_str() == Some("segments")),
        _ => false,
    }
}

/// Reads a segment file. `text` is the file's text, used to place errors inside quoted
/// conditions exactly. Every problem is collected.
pub fn parse_segments(path: &str, text: &str, doc: &Node) -> (Vec<Segment>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut out = Vec::new();
    let Some(mut file) = MapReader::new(path, doc, "a segment file", &mut diags) else {
        return (out, diags);
    };
    let list = file.require("segments", doc, &mut diags);
    file.finish(FILE_KEYS, &mut diags);
    let Some(list) = list else {
        return (out, diags);
    };
    let Value::Seq(items) = &list.value else {
        diags.push(list.diag(path, "'segments' must be a list").with_hint(
            "write `segments:` and under it `- name: ...` items with a `where:` condition",
        ));
        return (out, diags);
    };
    for item in items {
        if let Some(s) = read_segment(path, text, item, &mut diags) {
            if out.iter().any(|o: &Segment| o.name == s.name) {
                diags.push(item.diag(path, format!("segment '{}' is defined twice", s.name)));
                continue;
            }
            out.push(s);
        }
    }
    (out, diags)
}

fn read_segment(
    path: &str,
    text: &str,
    item: &Node,
    diags: &mut Vec<Diagnostic>,
) -> Option<Segment> {
    let mut m = MapReader::new(path, item, "a segment", diags)?;
    let name = m.require("name", item, diags).and_then(|n| {
        let s = expect_str(path, n, "name", diags)?;
        let problem = crate::diagnostic::identifier_problem(s);
        if let Some(problem) = &problem {
            diags.push(
                n.diag(path, format!("the segment name {problem}"))
                    .with_hint("e.g. at-risk; say more in `description:`"),
            );
        }
        problem.is_none().then(|| s.to_string())
    });
    let description = m
        .get("description")
        .and_then(|n| expect_str(path, n, "description", diags))
        .unwrap_or_default()
        .to_string();
    let condition = m.require("where", item, diags).and_then(|n| {
        let source = expect_str(path, n, "where", diags)?;
        match lang::parse(source) {
            Ok(c) => Some((c, source.to_string())),
            Err(e) => {
                diags.push(locate(path, text, n, &e));
                None
            }
        }
    });
    m.finish(SEGMENT_KEYS, diags);
    let (condition, source) = condition?;
    Some(Segment {
        name: name?,
        description,
        condition,
        source,
        path: path.to_string(),
        line: item.line,
    })
}

/// Turns an error at an offset of a condition into `path:line:col`: the scalar's own column,
/// plus one when it is quoted, plus the offset (conditions are written on one line).
fn locate(path: &str, text: &str, node: &Node, e: &LangError) -> Diagnostic {
    let line = text
        .lines()
        .nth(node.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let start = line.chars().nth(node.col.saturating_sub(1) as usize);
    let quoted = matches!(start, Some('"' | '\''));
    let prefix = node
        .as_str()
        .map(|s| s[..e.offset.min(s.len())].chars().count())
        .unwrap_or(0);
    let col = node.col + u64::from(quoted) + prefix as u64;
    let d = Diagnostic::new(
        path,
        node.line,
        col,
        format!("segment condition: {}", e.message),
    );
    match &e.hint {
        Some(h) => d.with_hint(h.clone()),
        None => d,
    }
}

/// Checks that a segment name used by a scenario exists; the diagnostic points at `path`,
/// `line`, `col` (where the scenario names it).
pub fn check_reference(
    name: &str,
    segments: &[Segment],
    path: &str,
    line: u64,
    col: u64,
) -> Option<Diagnostic> {
    if segments.iter().any(|s| s.name == name) {
        return None;
    }
    let names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
    let d = Diagnostic::new(path, line, col, format!("no segment '{name}'"));
    Some(match did_you_mean(name, &names) {
        Some(m) => d.with_hint(format!("did you mean '{m}'?")),
        None if names.is_empty() => d.with_hint(
            "define it in a segment file (a YAML file with `segments:`), see docs/segments.md",
        ),
        None => d.with_hint(format!("segments: {}", names.join(", "))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Vec<Segment>, Vec<Diagnostic>) {
        let doc = crate::yaml::parse("s.yaml", text).unwrap();
        parse_segments("s.yaml", text, &doc)
    }

    #[test]
    fn errors_inside_a_condition_are_placed_at_the_token() {
        let (ok, diags) = parse_text(
            "segments:\n  - name: vip\n    where: \"p_alive < 0.3 and predicted_cvl >= 20000\"\n  - name: lapsed\n    where: no_order_within(90)\n    colour: red\n",
        );
        assert!(ok.is_empty());
        let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown[0],
            "s.yaml:3:31: segment condition: unknown field 'predicted_cvl'\n  hint: did you mean 'predicted_clv'?"
        );
        assert!(
            shown[1].starts_with("s.yaml:5:28: segment condition: expected a number of days"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("s.yaml:6:5: unknown key 'colour'"),
            "{}",
            shown[2]
        );
    }

    #[test]
    fn a_window_covers_whole_days_in_the_shop_zone() {
        let w = Window::new(
            NaiveDate::from_ymd_opt(2024, 3, 31).unwrap(),
            chrono_tz::Asia::Tokyo,
        );
        // 2024-04-01 00:00 in Tokyo is 2024-03-31 15:00 UTC.
        assert_eq!(w.end_ms, 1_711_897_200_000);
        assert_eq!(w.end_ms - w.since_ms(1), 86_400_000);
        assert_eq!(w.end_ms - w.since_ms(30), 30 * 86_400_000);
    }
}
