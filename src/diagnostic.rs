//! A located problem in a user's file: `path:line:col: message`, with an optional hint.
//! Validators collect every problem they find instead of stopping at the first. Also how an
//! error and its causes are told in one line (`explained`).

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: String,
    pub line: u64,
    pub col: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(path: &str, line: u64, col: u64, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            line,
            col,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.col, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// An error and its causes in one line, as `{:#}` prints them but each cause only when its
/// text is not already said: many errors carry their cause's text in their own (thiserror's
/// `"…: {0}"` beside `#[from]`, sqlx's I/O errors), and `{:#}` then said it two or three times.
pub fn explained(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("database error: {0}")]
        Db(#[from] std::io::Error),
    }

    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = anyhow::Error::from(Outer::from(io)).context("cannot open the database 'x'");
        assert_eq!(
            explained(&e),
            "cannot open the database 'x': database error: Connection refused"
        );
        let e = anyhow::anyhow!("the cause").context("what failed");
        assert_eq!(explained(&e), "what failed: the cause");
    }

    #[test]
    fn a_diagnostic_prints_its_location_first() {
        let d = Diagnostic::new("scenarios/a.yaml", 12, 5, "unknown key 'wiat'")
            .with_hint("did you mean 'wait'?");
        assert_eq!(
            d.to_string(),
            "scenarios/a.yaml:12:5: unknown key 'wiat'\n  hint: did you mean 'wait'?"
        );
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(
            did_you_mean("wiat", &["wait", "at", "if", "send"]),
            Some("wait")
        );
        assert_eq!(did_you_mean("zzzzzz", &["wait", "at"]), None);
    }
}
