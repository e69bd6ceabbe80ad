//! Rendering: the minijinja environment (templates from `templates/`, strict undefined
//! variables, HTML auto-escaping for `.html` templates), the context a message sees, and
//! conditions, which are minijinja expressions over the same context.

mod context;
mod filters;
pub(crate) use filters::NOT_A_DATE_FORMAT;
mod mail_html;
mod recommend;

pub use mail_html::{
    from_mjml, inline_css, precompile, to_text, unknown_elements, MjmlError, MJML_ELEMENTS,
};
pub use recommend::{recording, Recommendations};

pub use context::{
    context_name, metrics_view, sample_context, sample_context_with, CustomerView, ItemView,
    MessageContext, NameRef, OrderView, CONTEXT_ROOTS, CUSTOMER_FIELDS, METRICS_FIELDS,
    ORDER_FIELDS, SAMPLE_ITEMS,
};

use crate::scenario::{Expr, Scenario};
use minijinja::{Environment, UndefinedBehavior, Value};
use std::path::{Path, PathBuf};

/// A subject, an HTML part and a plain-text part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The SKUs its `recommend()` calls returned, in order.
    pub recommended: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// The template environment with every scenario's subjects and conditions compiled in.
pub struct Renderer {
    env: Environment<'static>,
    templates_dir: PathBuf,
    recommendations: Recommendations,
    /// Each step template's part files (`parts`), found once when its scenario is added, so
    /// that a render never looks for a missing `.txt` on disk.
    parts_of: std::collections::HashMap<String, Vec<String>>,
    /// MJML parts made HTML once when their scenario was added (`mail_html::precompile`): the
    /// name of that HTML template, by the MJML part's.
    compiled: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("templates_dir", &self.templates_dir)
            .finish()
    }
}

/// Template names a step uses: `<template>.html` and `<template>.txt`.
pub fn part_names(template: &str) -> [String; 2] {
    [format!("{template}.html"), format!("{template}.txt")]
}

/// The MJML form of a step's HTML part: `<template>.mjml`, used when there is no `.html`.
pub fn mjml_name(template: &str) -> String {
    format!("{template}.mjml")
}

fn subject_name(scenario: &str, step: &str) -> String {
    format!("@subject/{scenario}/{step}")
}

fn condition_name(scenario: &str, key: &str) -> String {
    format!("@if/{scenario}/{key}")
}

/// The instructions one render may execute. A real mail template with a loop over a few dozen
/// items takes some thousands; a nested loop over a long string runs out long before it hangs
/// the tick, and the render fails with a reason instead.
pub const FUEL: u64 = 2_000_000;

/// The most one rendered part (subject, HTML or text) may hold. Gmail clips a mail at 102 KB;
/// anything near this bound is a template mistake, not a message.
pub const MAX_OUTPUT: usize = 1 << 20;

impl Renderer {
    pub fn new(templates_dir: &Path) -> Self {
        let mut env = Environment::new();
        env.set_loader(loader(templates_dir.to_path_buf()));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // MJML is markup: what it prints is escaped like HTML.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".mjml") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::default_auto_escape_callback(name)
            }
        });
        filters::register(&mut env);
        let recommendations = Recommendations::default();
        recommend::register(&mut env, &recommendations);
        Self {
            env,
            templates_dir: templates_dir.to_path_buf(),
            recommendations,
            parts_of: Default::default(),
            compiled: Default::default(),
        }
    }

    pub fn env(&self) -> &Environment<'static> {
        &self.env
    }

    pub fn templates_dir(&self) -> &Path {
        &self.templates_dir
    }

    /// The file of a step's HTML part: `<template>.html`, else `<template>.mjml` when only that
    /// exists.
    pub fn html_part(&self, template: &str) -> String {
        let [html, _] = part_names(template);
        let mjml = mjml_name(template);
        if !self.exists(&html) && self.exists(&mjml) {
            mjml
        } else {
            html
        }
    }

    /// Whether a template exists: compiled in, or a file (with a syntax error or not: a broken
    /// part must fail the render, not be taken for a missing one).
    fn exists(&self, name: &str) -> bool {
        match self.env.get_template(name) {
            Ok(_) => true,
            Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => false,
            Err(_) => true,
        }
    }

    /// The part files a step has: its HTML part (or MJML), and its text part when there is one
    /// (without, the text is made from the HTML).
    pub fn parts(&self, template: &str) -> Vec<String> {
        if let Some(parts) = self.parts_of.get(template) {
            return parts.clone();
        }
        self.find_parts(template)
    }

    fn find_parts(&self, template: &str) -> Vec<String> {
        let [_, text] = part_names(template);
        let mut parts = vec![self.html_part(template)];
        if self.exists(&text) {
            parts.push(text);
        }
        parts
    }

    /// Makes `recommend()` read `slot` (shared with other renderers of the process).
    pub fn share_recommendations(&mut self, slot: &Recommendations) {
        self.recommendations = slot.clone();
        recommend::register(&mut self.env, slot);
    }

    /// What `recommend()` in templates reads; the engine installs what it learnt.
    pub fn recommendations(&self) -> &Recommendations {
        &self.recommendations
    }

    /// Whether a step of `scenarios` calls `recommend()`, in its subject, its parts or what
    /// they include: then the engine learns once a shop day, and renders held-out steps too,
    /// to keep what they would have recommended. Templates no scenario uses do not count.
    pub fn uses_recommend(&self, scenarios: &[Scenario]) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        for s in scenarios {
            for step in &s.steps {
                for (key, send) in step.sends() {
                    todo.push(subject_name(&s.id, &key));
                    todo.extend(self.parts(&send.template));
                }
            }
        }
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Ok(t) = self.env.get_template(&name) else {
                continue;
            };
            let source = t.source();
            if calls_recommend(source) {
                return true;
            }
            todo.extend(included(source));
        }
        false
    }

    /// Compiles a scenario's subjects and conditions into the environment, so that rendering
    /// and evaluating never parse again. A condition becomes `{% if … %}1{% endif %}`, which lets
    /// the environment cache it like any template.
    pub fn add_scenario(&mut self, s: &Scenario) -> Result<(), minijinja::Error> {
        for step in &s.steps {
            for (key, send) in step.sends() {
                self.env
                    .add_template_owned(subject_name(&s.id, &key), send.subject.source.clone())?;
                let parts = self.find_parts(&send.template);
                self.compile_mjml(&parts[0]);
                self.parts_of.insert(send.template.clone(), parts);
            }
            if let Some(c) = &step.condition {
                self.add_condition(&s.id, &format!("step/{}", step.id), c)?;
            }
        }
        if let Some(a) = &s.audience {
            self.add_condition(&s.id, "audience", a)?;
        }
        if let Some(c) = s.goal.as_ref().and_then(|g| g.condition.as_ref()) {
            self.add_condition(&s.id, "goal", c)?;
        }
        Ok(())
    }

    fn add_condition(
        &mut self,
        scenario: &str,
        key: &str,
        expr: &Expr,
    ) -> Result<(), minijinja::Error> {
        let source = format!("{{% if {} %}}1{{% endif %}}", expr.source);
        self.env
            .add_template_owned(condition_name(scenario, key), source)
    }

    /// Evaluates a compiled condition (`audience`, `goal` or `step/<id>`) against a context.
    pub fn condition(&self, scenario: &str, key: &str, ctx: &Value) -> Result<bool, RenderError> {
        let name = condition_name(scenario, key);
        let t = self
            .env
            .get_template(&name)
            .map_err(|e| RenderError(format!("condition {key} of scenario {scenario}: {e}")))?;
        let out = bounded_render(&t, ctx).map_err(|e| {
            RenderError(format!(
                "condition {key} of scenario {scenario}: {}",
                describe(&e)
            ))
        })?;
        Ok(out == "1")
    }

    /// Renders one step of a scenario for a context; `step` is the key of its send
    /// (`Step::sends`: the step id, or `step#variant`).
    pub fn render_step(
        &self,
        scenario: &str,
        step: &str,
        template: &str,
        ctx: &Value,
    ) -> Result<Rendered, RenderError> {
        let found;
        let names: &[String] = match self.parts_of.get(template) {
            Some(parts) => parts,
            None => {
                found = self.find_parts(template);
                &found
            }
        };
        let html_name = &names[0];
        let compiled = self.compiled.get(html_name);
        let (parts, recommended) = recording(|| {
            Ok::<_, RenderError>((
                self.render_named(&subject_name(scenario, step), ctx)?,
                match compiled {
                    // A failure is told at its line of the MJML file, not of the HTML made.
                    Some(c) => self
                        .render_named(c, ctx)
                        .or_else(|e| self.render_named(html_name, ctx).and(Err(e)))?,
                    None => self.render_named(html_name, ctx)?,
                },
                match names.get(1) {
                    Some(text_name) => Some(self.render_named(text_name, ctx)?),
                    None => None,
                },
            ))
        });
        let (subject, html, text) = parts?;
        let html = if compiled.is_some() {
            html
        } else if html_name.ends_with(".mjml") {
            from_mjml(&html).map_err(|e| RenderError(format!("{html_name}: MJML {e}")))?
        } else {
            inline_css(&html)
        };
        let text = text.unwrap_or_else(|| to_text(&html));
        let subject = sendable_subject(&subject)?;
        Ok(Rendered {
            subject,
            html,
            text,
            recommended,
        })
    }

    /// Makes an MJML part HTML once, when its template tags allow (`mail_html::precompile`);
    /// otherwise it is made HTML per message.
    fn compile_mjml(&mut self, name: &str) {
        if !name.ends_with(".mjml") || self.compiled.contains_key(name) {
            return;
        }
        let Some(html) = self
            .env
            .get_template(name)
            .ok()
            .and_then(|t| mail_html::precompile(t.source()))
        else {
            return;
        };
        let compiled = format!("@compiled/{name}.html");
        if self.env.add_template_owned(compiled.clone(), html).is_ok() {
            self.compiled.insert(name.to_string(), compiled);
        }
    }

    fn render_named(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| RenderError(describe(&e)))?;
        bounded_render(&t, ctx).map_err(|e| RenderError(describe_in(&e, name, t.source())))
    }
}

/// Renders with the output bounded by `MAX_OUTPUT` (the fuel bounds the time).
pub fn bounded_render(
    t: &minijinja::Template<'_, '_>,
    ctx: &Value,
) -> Result<String, minijinja::Error> {
    let mut out = Bounded(Vec::new());
    // A panic inside a filter (a bug of rebuy's or of minijinja's) fails this message with a
    // reason; it must never take the daemon down and again at every start.
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.render_captured_to(ctx, &mut out).map(|_| ())
    }))
    .unwrap_or_else(|panic| {
        let said = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("the renderer failed on this template ({said}); simplify the expression and report it"),
        ))
    });
    match rendered {
        // minijinja writes whole `str`s, so the output is UTF-8: checked (fast), not copied.
        Ok(_) => Ok(String::from_utf8(out.0)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Err(e) if out.0.len() >= MAX_OUTPUT => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "the output passed {} KiB, {OUTPUT_BOUND} ({e})",
                MAX_OUTPUT / 1024
            ),
        )),
        Err(e) => Err(e),
    }
}

/// The filters a template may use: rebuy's (`money`, `date`, a bounded `replace`) and
/// minijinja's own, for `rebuy check`'s "did you mean".
pub const FILTERS: &[&str] = &[
    "money",
    "date",
    "replace",
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
    "urlencode",
];

/// The tests (`is …`) a template may use: minijinja's.
pub const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "true",
    "false",
    "boolean",
    "number",
    "integer",
    "float",
    "string",
    "sequence",
    "mapping",
    "iterable",
    "odd",
    "even",
    "divisibleby",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "startingwith",
    "endingwith",
    "lower",
    "upper",
    "safe",
    "escaped",
    "sameas",
];

/// The functions a template may call: rebuy's `recommend` and minijinja's own.
pub const FUNCTIONS: &[&str] = &["recommend", "range", "dict", "namespace", "debug"];

/// Whether a render error would strike every customer, whatever their data: a missing or
/// unreadable included template, a filter, test or function that does not exist (a typo:
/// `| mony`), or a template that exhausts the fuel or the output bound.
pub fn fails_for_anyone(e: &minijinja::Error) -> bool {
    use minijinja::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::OutOfFuel
            | ErrorKind::TemplateNotFound
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
    ) || e.detail().is_some_and(|d| {
        d.contains(OUTPUT_BOUND) || d.contains(NOT_UTF8) || d.contains(filters::NOT_A_DATE_FORMAT)
    })
}

/// Templates are files below the templates folder, read as UTF-8: a file that is not (saved
/// as Shift_JIS by an older editor) is refused naming the file and its first bad byte, so
/// `rebuy check` and every message that uses it say which file to fix.
fn loader(
    dir: PathBuf,
) -> impl Fn(&str) -> Result<Option<String>, minijinja::Error> + Send + Sync + 'static {
    move |name| {
        let Some(path) = template_path(&dir, name) else {
            return Ok(None);
        };
        let unreadable =
            |why: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, why);
        match std::fs::read(&path) {
            Ok(bytes) => template_text(name, bytes)
                .map(Some)
                .map_err(|(_, _, why)| unreadable(why)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || path.is_dir() => Ok(None),
            Err(e) => Err(unreadable(format!("cannot read template {name}: {e}"))),
        }
    }
}

/// The file of template `name` below `dir`; None for a name that would leave it (`..`), name
/// a hidden file, or hold a backslash.
fn template_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut path = dir.to_path_buf();
    for part in name.split('/') {
        if part.is_empty() || part.starts_with('.') || part.contains('\\') {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// Said of a template file that is not UTF-8.
const NOT_UTF8: &str = "is not UTF-8";

/// A template file's text, or where its first byte that is not UTF-8 is (line, column) and
/// what to do.
pub fn template_text(name: &str, bytes: Vec<u8>) -> Result<String, (u64, u64, String)> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&good[start..]).chars().count() as u64 + 1;
        let byte = e.as_bytes()[good.len()];
        (
            line,
            col,
            format!(
                "{name} {NOT_UTF8} (byte 0x{byte:02X} at line {line}, column {col}): save it as \
                 UTF-8 (from Shift_JIS: iconv -f SHIFT_JIS -t UTF-8)"
            ),
        )
    })
}

pub(crate) const OUTPUT_BOUND: &str = "the most one part may hold";

/// A writer that refuses to grow past `MAX_OUTPUT`.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            self.0.resize(MAX_OUTPUT, 0);
            return Err(std::io::Error::other("output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a template's source calls `recommend` (`recommend(`, `recommend (`).
fn calls_recommend(source: &str) -> bool {
    source.match_indices("recommend").any(|(at, word)| {
        let before = source[..at].chars().next_back();
        let after = source[at + word.len()..].trim_start();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.starts_with('(')
    })
}

/// The names a template's `include`, `extends`, `import` and `from` tags give (literal names
/// only): the templates whose source it runs.
fn included(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for tag in ["include", "extends", "import", "from"] {
        for rest in source.split(tag).skip(1) {
            let rest = rest.trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let rest = &rest[1..];
            if let Some(end) = rest.find(quote) {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

/// The most characters a subject may have: a mail server refuses a header line over 998
/// bytes, and one long word (no space to fold at) would make one.
pub const MAX_SUBJECT: usize = 500;

/// A rendered subject made one line, or why it cannot be sent: empty, or longer than
/// `MAX_SUBJECT` (the message fails with this reason rather than at the mail server).
pub(crate) fn sendable_subject(rendered: &str) -> Result<String, RenderError> {
    let subject = one_line(rendered);
    let n = subject.chars().count();
    if n == 0 {
        return Err(RenderError(
            "the subject is empty once rendered: give every message a subject".into(),
        ));
    }
    if n > MAX_SUBJECT {
        return Err(RenderError(format!(
            "the subject is {n} characters long once rendered; at most {MAX_SUBJECT} (mail servers refuse longer header lines)"
        )));
    }
    Ok(subject)
}

/// A subject is a header: line breaks and other control characters become spaces, so that no
/// customer data can inject a header.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A render error as `where:line: detail: 'the expression'`, so that an undefined value
/// names the variable; `name` is the template's (a step's subject is called that).
fn describe_in(e: &minijinja::Error, name: &str, source: &str) -> String {
    let base = describe(e);
    let place = if let Some(rest) = name.strip_prefix("@subject/") {
        let step = rest.split_once('/').map_or(rest, |(_, step)| step);
        format!("subject of step '{step}': ")
    } else {
        String::new()
    };
    let expr = e
        .range()
        .and_then(|r| source.get(r))
        .map(str::trim)
        .filter(|x| !x.is_empty() && x.len() <= 120);
    match expr {
        Some(x) if !base.contains(x) => format!("{place}{base}: '{x}'"),
        _ => format!("{place}{base}"),
    }
}

/// A minijinja error as `name:line: detail`.
pub fn describe(e: &minijinja::Error) -> String {
    let place = match (e.name(), e.line()) {
        // A template made from a string (a subject) is placed by its caller, not as
        // minijinja's "<string>".
        (Some(n), Some(l)) if !n.starts_with('@') && n != "<string>" => format!("{n}:{l}: "),
        _ => String::new(),
    };
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    format!("{place}{detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_error_names_the_undefined_variable_and_where_it_is() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("gift.txt", "Hello\n{{ vars.case_id }}!")
            .unwrap();
        let t = env.get_template("gift.txt").unwrap();
        let e = t.render(minijinja::context! { vars => minijinja::context! {} });
        let said = describe_in(&e.unwrap_err(), "gift.txt", t.source());
        assert_eq!(said, "gift.txt:2: undefined value: 'vars.case_id'");
        let subject = env.template_from_str("{{ x | mony }}");
        let e = subject.and_then(|t| t.render(minijinja::context! {}));
        let said = describe(&e.unwrap_err());
        assert!(!said.contains("<string>"), "{said}");
        env.add_template("@subject/first/thanks", "{{ nick }}")
            .unwrap();
        let t = env.get_template("@subject/first/thanks").unwrap();
        let said = describe_in(&t.render(()).unwrap_err(), t.name(), t.source());
        assert_eq!(said, "subject of step 'thanks': undefined value: 'nick'");
    }

    fn bounded_env() -> minijinja::Environment<'static> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(FUEL));
        filters::register(&mut env);
        env
    }

    #[test]
    fn every_filter_test_and_function_check_suggests_exists() {
        let renderer = Renderer::new(std::path::Path::new("."));
        let env = renderer.env();
        let unknown = |source: String| match env.render_str(&source, minijinja::context! {}) {
            Err(e) => matches!(
                e.kind(),
                minijinja::ErrorKind::UnknownFilter
                    | minijinja::ErrorKind::UnknownTest
                    | minijinja::ErrorKind::UnknownFunction
            ),
            Ok(_) => false,
        };
        for f in FILTERS {
            assert!(!unknown(format!("{{{{ 1 | {f} }}}}")), "filter {f}");
        }
        for t in TESTS {
            assert!(!unknown(format!("{{{{ 1 is {t} }}}}")), "test {t}");
        }
        for f in FUNCTIONS {
            assert!(!unknown(format!("{{{{ {f}() }}}}")), "function {f}");
        }
        assert!(
            unknown("{{ 1 | mony }}".into()),
            "the check itself can fail"
        );
    }

    #[test]
    fn a_runaway_template_fails_with_a_reason_instead_of_hanging() {
        let env = bounded_env();
        let name = "x".repeat(200_000);
        let ctx = minijinja::context! { name => name };
        let nested = env
            .template_from_str("{% for a in name %}{% for b in name %}.{% endfor %}{% endfor %}")
            .unwrap();
        let e = bounded_render(&nested, &ctx).unwrap_err();
        assert_eq!(e.kind(), minijinja::ErrorKind::OutOfFuel);
        assert!(fails_for_anyone(&e));
        let squared = env
            .template_from_str("{{ name | replace('', name) }}")
            .unwrap();
        let e = bounded_render(&squared, &ctx).unwrap_err();
        assert!(
            describe(&e).contains("replace would build more than"),
            "{e}"
        );
        let long = env
            .template_from_str("{% for i in range(60) %}{{ name }}{% endfor %}")
            .unwrap();
        let e = bounded_render(&long, &ctx).unwrap_err();
        assert!(fails_for_anyone(&e), "{e}");
        // An ordinary template renders as before.
        let fine = env
            .template_from_str("{{ name[:3] | replace('x', 'y') }}")
            .unwrap();
        assert_eq!(bounded_render(&fine, &ctx).unwrap(), "yyy");
    }

    #[test]
    fn a_call_of_recommend_is_found_through_includes_imports_and_extends() {
        assert!(calls_recommend("{% set p = recommend(customer) %}"));
        assert!(calls_recommend("{{ recommend (customer, n=2) }}"));
        assert!(!calls_recommend("{{ recommended }} we recommend you"));
        assert!(!calls_recommend("{{ not_recommend(x) }}"));
        let source = r#"{% extends "base.html" %}{% import 'm.html' as m %}{% from "p.html" import x %}{% include "_r.html" %}"#;
        let mut names = included(source);
        names.sort();
        assert_eq!(names, ["_r.html", "base.html", "m.html", "p.html"]);
    }

    /// A scenario of one step per template, and a renderer that has added it.
    fn renderer_with(dir: &Path, templates: &[(&str, &str)]) -> Renderer {
        let mut yaml = String::from("id: s\ntrigger: first_order\ntransactional: true\nsteps:\n");
        for (i, (name, body)) in templates.iter().enumerate() {
            std::fs::write(dir.join(name), body).unwrap();
            let stem = name.trim_end_matches(".mjml");
            yaml.push_str(&format!(
                "  - id: s{i}\n    wait: {i}d\n    send: {{ template: {stem}, subject: \"x\" }}\n"
            ));
        }
        let scenario = crate::scenario::parse_scenario("s.yaml", &yaml).unwrap();
        let mut r = Renderer::new(dir);
        r.add_scenario(&scenario).unwrap();
        r
    }

    #[test]
    fn an_mjml_part_with_tags_only_in_text_is_made_once_and_sends_the_same_mail() {
        let dir = tempfile::tempdir().unwrap();
        let once = "<mjml><mj-body><mj-section><mj-column><mj-text><p>{{ customer.name }}様</p>{% for i in order.items %}<p>{{ i.name }}</p>{% endfor %}</mj-text><mj-button href=\"{{ shop.url }}\">見る</mj-button></mj-column></mj-section></mj-body></mjml>";
        let looped = "<mjml><mj-body><mj-section>{% for i in order.items %}<mj-column><mj-text>{{ i.name }}</mj-text></mj-column>{% endfor %}</mj-section></mj-body></mjml>";
        let typo = "<mjml><mj-body><mj-section><mj-column>\n<mj-text>\n{{ customer.nmae }}</mj-text></mj-column></mj-section></mj-body></mjml>";
        let r = renderer_with(
            dir.path(),
            &[
                ("once.mjml", once),
                ("looped.mjml", looped),
                ("typo.mjml", typo),
            ],
        );
        assert!(r.compiled.contains_key("once.mjml"));
        assert!(
            !r.compiled.contains_key("looped.mjml"),
            "its columns are a loop"
        );
        let shop = std::collections::BTreeMap::from([(
            "url".to_string(),
            "https://s.example".to_string(),
        )]);
        let ctx = sample_context(&shop, "https://s.example/u");
        let sent = r.render_step("s", "s0", "once", &ctx).unwrap();
        let per_message = from_mjml(
            &r.env
                .get_template("once.mjml")
                .unwrap()
                .render(&ctx)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(sent.text, to_text(&per_message));
        // The same link (made once it stays escaped as the template printed it; per message
        // mrml writes it decoded: the same attribute to a mail client).
        let href = "href=\"https://s.example\"";
        for html in [&sent.html, &per_message] {
            assert!(html_escape::decode_html_entities(html).contains(href));
        }
        // A failure is told at its line of the MJML file, not of the HTML made from it.
        let e = r
            .render_step("s", "s2", "typo", &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("typo.mjml:3") && !e.contains("@compiled"), "{e}");
    }

    #[test]
    fn subjects_cannot_carry_line_breaks() {
        assert_eq!(one_line("Hello\r\nBcc: x@y.z"), "Hello Bcc: x@y.z");
        assert_eq!(one_line("  そろそろ\t化粧水が  "), "そろそろ 化粧水が");
    }

    #[test]
    fn an_empty_or_overlong_subject_fails_its_message_with_the_reason() {
        assert!(sendable_subject(" \n ")
            .unwrap_err()
            .0
            .contains("the subject is empty"));
        let long = "x".repeat(MAX_SUBJECT + 1);
        assert!(sendable_subject(&long)
            .unwrap_err()
            .0
            .contains("501 characters long"));
        assert_eq!(
            sendable_subject(&"あ".repeat(MAX_SUBJECT))
                .unwrap()
                .chars()
                .count(),
            MAX_SUBJECT
        );
    }
}
