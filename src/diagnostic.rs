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
    /// `path:line:col: message`, or `path: message` for a problem of the file as a whole (line
    /// 0: it cannot be read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path, self.message)?,
            _ => write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.col, self.message
            )?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A command line that names something unusable as asked (a folder where a file is wanted, a
/// file whose format it cannot tell): exit 2, like clap's usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What is wrong with `text` as an identifier (a scenario, step, segment or target id: ASCII
/// letters, digits, `-` and `_`, as it names things in URLs, commands and the database), or
/// `None` when it is one.
pub fn identifier_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("is empty".into());
    }
    let bad = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))?;
    let what = if bad.is_whitespace() {
        "a space".to_string()
    } else {
        format!("'{bad}'")
    };
    Some(format!(
        "'{text}' has {what}; an id holds only ASCII letters, digits, '-' and '_'"
    ))
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

    #[test]
    fn an_identifier_s_problem_names_the_character_it_cannot_hold() {
        assert_eq!(identifier_problem("first-purchase_2"), None);
        assert_eq!(identifier_problem("").as_deref(), Some("is empty"));
        let jp = identifier_problem("初回").unwrap();
        assert!(jp.contains("'初回' has '初'"), "{jp}");
        assert!(!jp.contains("empty"), "{jp}");
        let spaced = identifier_problem("win back").unwrap();
        assert!(spaced.contains("has a space"), "{spaced}");
    }

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
