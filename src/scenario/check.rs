//! `rebuy check`: loads every scenario file and cross-checks it against the templates it uses
//! and the context they will see. All problems are collected, each with its location.

use super::check_items::{unknown_item_fields, with_noting_items, Noted};
use super::{parse_scenario, Expr, Scenario, SegmentRef, Trigger};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::render::{
    part_names, Renderer, CONTEXT_ROOTS, CUSTOMER_FIELDS, METRICS_FIELDS, ORDER_FIELDS,
};
use crate::segment::{check_reference, is_segment_file, parse_segments, Segment};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The outcome of loading a scenario folder: the valid scenarios, a renderer with all of them
/// compiled in, and every problem found.
pub struct CheckReport {
    pub scenarios: Vec<Scenario>,
    /// The named segments of the segment files in the same folder.
    pub segments: Vec<Segment>,
    /// The LTV targets of the targets files in the same folder (`docs/pages.md`).
    pub targets: Vec<crate::targets::Target>,
    pub renderer: Renderer,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
}

/// The `*.yaml`/`*.yml` files of a folder, sorted.
pub fn scenario_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads and checks every scenario in `scenarios_dir` against `templates_dir`.
pub fn check_all(
    scenarios_dir: &Path,
    templates_dir: &Path,
    shop: &BTreeMap<String, String>,
) -> CheckReport {
    let mut diagnostics = Vec::new();
    let mut scenarios = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut targets: Vec<crate::targets::Target> = Vec::new();
    let currency = shop
        .get("currency")
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "JPY".into());
    let files = match scenario_files(scenarios_dir) {
        Ok(f) => f,
        Err(e) => {
            diagnostics.push(
                Diagnostic::new(
                    &scenarios_dir.display().to_string(),
                    1,
                    1,
                    format!("cannot read the scenario folder: {e}"),
                )
                .with_hint("set scenarios_dir in the config, or create the folder"),
            );
            Vec::new()
        }
    };
    for file in &files {
        let path = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => match crate::yaml::parse(&path, &text) {
                Ok(doc) if is_segment_file(&doc) => {
                    let (found, diags) = parse_segments(&path, &text, &doc);
                    for s in found {
                        match segments.iter().find(|o| o.name == s.name) {
                            Some(first) => diagnostics.push(Diagnostic::new(
                                &path,
                                s.line,
                                1,
                                format!("segment '{}' is also defined in {}", s.name, first.path),
                            )),
                            None => segments.push(s),
                        }
                    }
                    diagnostics.extend(diags);
                }
                Ok(doc) if crate::targets::is_target_file(&doc) => {
                    let (found, diags) = crate::targets::parse_targets(&path, &doc, &currency);
                    for t in found {
                        match targets.iter().find(|o| o.id == t.id) {
                            Some(first) => diagnostics.push(Diagnostic::new(
                                &path,
                                t.line,
                                1,
                                format!("target '{}' is also defined in {}", t.id, first.path),
                            )),
                            None => targets.push(t),
                        }
                    }
                    diagnostics.extend(diags);
                }
                _ => match parse_scenario(&path, &text) {
                    Ok(s) => scenarios.push(s),
                    Err(d) => diagnostics.extend(d),
                },
            },
            Err(e) => diagnostics.push(Diagnostic::new(&path, 1, 1, format!("cannot read: {e}"))),
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for s in &scenarios {
        if let Some(first) = seen.insert(s.id.clone(), s.path.clone()) {
            diagnostics.push(Diagnostic::new(
                &s.path,
                1,
                1,
                format!("scenario id '{}' is also used by {first}", s.id),
            ));
        }
    }
    for s in &scenarios {
        check_segment_refs(s, &segments, &mut diagnostics);
    }
    for t in &targets {
        check_target_segment(t, &segments, &mut diagnostics);
    }
    let mut renderer = Renderer::new(templates_dir);
    let mut checked_templates = HashSet::new();
    // Templates calling recommend() are checked against a made-up shop; the engine installs
    // what it learns from the real one, so the sample is taken out again.
    renderer
        .recommendations()
        .install(crate::recommend_view::Learned::sample());
    for s in &scenarios {
        check_scenario(
            s,
            &mut renderer,
            shop,
            &mut checked_templates,
            &mut diagnostics,
        );
    }
    renderer.recommendations().clear();
    CheckReport {
        scenarios,
        segments,
        targets,
        renderer,
        diagnostics,
        files: files.len(),
    }
}

/// A target's segment is a named segment or an RFM segment.
fn check_target_segment(
    t: &crate::targets::Target,
    segments: &[Segment],
    diags: &mut Vec<Diagnostic>,
) {
    let Some(name) = &t.segment else {
        return;
    };
    if crate::metrics::SEGMENTS.contains(&name.as_str()) {
        return;
    }
    diags.extend(check_reference(name, segments, &t.path, t.line, 1));
}

/// Every segment a scenario names (trigger, audience) must be defined.
fn check_segment_refs(s: &Scenario, segments: &[Segment], diags: &mut Vec<Diagnostic>) {
    let refs: Vec<&SegmentRef> = s
        .trigger
        .segment()
        .map(|(r, _)| r)
        .into_iter()
        .chain(s.audience_segment.as_ref())
        .collect();
    for r in refs {
        diags.extend(check_reference(&r.name, segments, &s.path, r.line, r.col));
    }
}

fn check_scenario(
    s: &Scenario,
    renderer: &mut Renderer,
    shop: &BTreeMap<String, String>,
    checked: &mut HashSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let before = diags.len();
    let mut exprs: Vec<(&str, &Expr)> = Vec::new();
    if let Some(a) = &s.audience {
        exprs.push(("audience", a));
    }
    if let Some(c) = s.goal.as_ref().and_then(|g| g.condition.as_ref()) {
        exprs.push(("goal condition", c));
    }
    for step in &s.steps {
        if let Some(c) = &step.condition {
            exprs.push(("step condition", c));
        }
    }
    for (what, e) in exprs {
        match renderer.env().compile_expression(&e.source) {
            Ok(compiled) => {
                let used = compiled.undeclared_variables(true);
                let unknown = unknown_variables(&used, s, shop);
                if unknown.is_empty() {
                    check_condition_runs(s, what, e, &used, renderer, shop, diags);
                }
                for (var, msg, hint) in unknown {
                    let d = Diagnostic::new(&s.path, e.line, e.col, format!("{what} uses {msg}"));
                    diags.push(add_hint(d, hint.or(Some(format!("in '{var}'")))));
                }
            }
            Err(err) => diags.push(Diagnostic::new(
                &s.path,
                e.line,
                e.col,
                format!("{what}: {}", crate::render::describe(&err)),
            )),
        }
    }
    for step in &s.steps {
        for (key, send) in step.sends() {
            check_subject(s, &key, &send.subject, renderer, shop, diags);
            check_template(
                s,
                &send.template,
                (send.template_line, send.template_col),
                renderer,
                shop,
                checked,
                diags,
            );
        }
    }
    // The legal footer, then rendering, are checked on templates that are otherwise sound.
    if !s.transactional && diags.len() == before {
        check_footer(s, renderer, shop, diags);
    }
    if diags.len() == before {
        check_renders(s, renderer, shop, checked, diags);
    }
    if diags.iter().all(|d| d.path != s.path) {
        if let Err(e) = renderer.add_scenario(s) {
            diags.push(Diagnostic::new(&s.path, 1, 1, crate::render::describe(&e)));
        }
    }
}

fn check_subject(
    s: &Scenario,
    step: &str,
    subject: &Expr,
    renderer: &Renderer,
    shop: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    match renderer.env().template_from_str(&subject.source) {
        Ok(t) => {
            for (var, msg, hint) in unknown_variables(&t.undeclared_variables(true), s, shop) {
                let d = Diagnostic::new(
                    &s.path,
                    subject.line,
                    subject.col,
                    format!("subject of step '{step}' uses {msg}"),
                );
                diags.push(add_hint(d, hint.or(Some(format!("in '{var}'")))));
            }
        }
        Err(e) => diags.push(Diagnostic::new(
            &s.path,
            subject.line,
            subject.col,
            format!("subject of step '{step}': {}", crate::render::describe(&e)),
        )),
    }
}

fn check_template(
    s: &Scenario,
    template: &str,
    at: (u64, u64),
    renderer: &Renderer,
    shop: &BTreeMap<String, String>,
    checked: &mut HashSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let dir = renderer.templates_dir();
    let [html, text] = part_names(template);
    let mjml = crate::render::mjml_name(template);
    let html_file = [&html, &mjml].into_iter().find(|n| dir.join(n).is_file());
    let text_file = dir.join(&text).is_file().then_some(&text);
    if html_file.is_none() {
        let what = match text_file {
            None => format!(
                "unknown template '{template}': neither {html} (or {mjml}) nor {text} exists in {}",
                dir.display()
            ),
            Some(_) => format!(
                "template '{template}' has no {html} (or {mjml}) in {}",
                dir.display()
            ),
        };
        diags.push(add_hint(
            Diagnostic::new(&s.path, at.0, at.1, what),
            template_hint(dir, template),
        ));
    }
    // Without a text part, the text is made from the HTML: nothing to check.
    let names: Vec<String> = html_file.into_iter().chain(text_file).cloned().collect();
    for name in names {
        let file = dir.join(&name);
        let shown = file.display().to_string();
        let source = match std::fs::read(&file).map(|b| crate::render::template_text(&name, b)) {
            Ok(Ok(source)) => source,
            Ok(Err((line, col, why))) => {
                if checked.insert(name.clone()) {
                    diags.push(Diagnostic::new(&shown, line, col, why));
                }
                continue;
            }
            Err(_) => continue,
        };
        // A template shared by several scenarios is checked for syntax once, but its variables
        // are checked against each scenario's context.
        match renderer.env().get_template(&name) {
            Ok(t) => {
                // `range`, `namespace` and the other global functions are not variables.
                let mut used = t.undeclared_variables(true);
                for (global, _) in renderer.env().globals() {
                    used.retain(|v| v.split('.').next() != Some(global));
                }
                for (var, msg, hint) in unknown_variables(&used, s, shop) {
                    let (line, col) = find(&source, &var);
                    let d =
                        Diagnostic::new(&shown, line, col, format!("{msg} (scenario '{}')", s.id));
                    diags.push(add_hint(d, hint));
                }
            }
            Err(e) if checked.insert(name.clone()) => {
                let detail = e.detail().unwrap_or("invalid syntax");
                // The end of the file is where minijinja noticed; the opening tag is where
                // the mistake is.
                let d = match unclosed_block(&source).filter(|_| detail.contains("end of input")) {
                    Some((line, col, kw)) => Diagnostic::new(
                        &shown,
                        line,
                        col,
                        format!("template syntax error: {{% {kw} %}} opened here is never closed (add {{% end{kw} %}})"),
                    ),
                    None => {
                        let (line, col) = error_position(&source, &e);
                        Diagnostic::new(&shown, line, col, format!("template syntax error: {detail}"))
                    }
                };
                diags.push(d);
            }
            Err(_) => {}
        }
    }
}

/// What every marketing mail must show (Japan's Act on Specified Electronic Mail): the
/// sender's name, postal address and contact address, from the config's `shop`.
const SENDER_KEYS: &[(&str, &str)] = &[
    ("name", "the sender's name"),
    ("address", "the sender's postal address"),
    ("contact", "a contact address"),
];

/// The unsubscribe link `check` renders into a sample message to see that it is shown.
const SAMPLE_UNSUBSCRIBE: &str = "https://rebuy.check/unsubscribe-sample";

/// Renders each step's subject, HTML and text for a sample order with line items and for one
/// imported without them (a CSV of orders has none), and reports what renders for the first
/// but fails for the second, where: a template that indexes `order.items[0]` unguarded fails
/// at send time for such orders. What fails for the sample too is judged only when it fails
/// alike with the sampled values as text and as numbers (and is not an undefined value):
/// made-up values (an attribute read as a number, say) could be the reason otherwise, and a
/// false refusal would stop the daemon.
fn check_renders(
    s: &Scenario,
    renderer: &Renderer,
    shop: &BTreeMap<String, String>,
    checked: &mut HashSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let which = "an order without line items";
    for (key, send) in s.steps.iter().flat_map(|step| step.sends()) {
        // The `vars` and customer attributes the step reads are given sample values: a person
        // passes the first with `rebuy trigger --var`, the shop's import the second, and
        // `check` cannot know them.
        let used = used_names(
            renderer,
            &send.subject.source,
            &renderer.parts(&send.template),
        );
        let sample = |items: &str| sample_context(s, &used, shop, items);
        let (with, without) = (sample(crate::render::SAMPLE_ITEMS), sample("[]"));
        let numbers = sample_context_of(s, &used, shop, crate::render::SAMPLE_ITEMS, true);
        let with_both = (&with, &numbers);
        let noted = Noted::default();
        let items_of = |supplied: &BTreeSet<String>| with_noting_items(&with, &noted, supplied);
        let item_fields = items_of(&BTreeSet::new()).1;
        let misread = |t: &minijinja::Template<'_, '_>| {
            unknown_item_fields(
                |supplied| crate::render::bounded_render(t, &items_of(supplied).0),
                &noted,
            )
        };
        let subject = renderer.env().template_from_str(&send.subject.source);
        if let Ok(t) = subject {
            if let Some(fields) = misread(&t) {
                let what = format!("subject of step '{key}'");
                let at = (s.path.as_str(), send.subject.line, send.subject.col);
                diags.push(item_misread(at, &what, &fields, &item_fields));
            } else if let Some(why) = crate::render::bounded_render(&t, &with)
                .ok()
                .and_then(|subject| crate::render::sendable_subject(&subject).err())
                // Too long for the sample's short values is too long for anyone; empty for
                // the sample (a customer in no segment) may not be.
                .filter(|why| why.0.contains("characters long"))
            {
                diags.push(Diagnostic::new(
                    &s.path,
                    send.subject.line,
                    send.subject.col,
                    format!("subject of step '{key}' for the sample customer: {}", why.0),
                ));
            } else if let Some((e, when)) = render_failure(&t, with_both, &without, which) {
                diags.push(
                    Diagnostic::new(
                        &s.path,
                        send.subject.line,
                        send.subject.col,
                        format!(
                            "subject of step '{key}' fails to render{when}: {}",
                            crate::render::describe(&e)
                        ),
                    )
                    .with_hint(render_hint(&e, &when)),
                );
            }
        }
        for part in renderer.parts(&send.template) {
            let Ok(t) = renderer.env().get_template(&part) else {
                continue; // reported by check_template
            };
            if part.ends_with(".mjml") {
                check_mjml(renderer, &part, &t, &with, checked, diags);
            }
            if let Some(fields) = misread(&t) {
                if checked.insert(format!("render {part}")) {
                    let file = renderer.templates_dir().join(&part);
                    let first = fields.iter().next().map_or("", String::as_str);
                    let (line, col) = t
                        .source()
                        .find(&format!(".{first}"))
                        .map_or((1, 1), |at| line_col(t.source(), at + 1));
                    let file = file.display().to_string();
                    let what = format!("{part} (step '{key}' of scenario '{}')", s.id);
                    diags.push(item_misread(
                        (&file, line, col),
                        &what,
                        &fields,
                        &item_fields,
                    ));
                }
                continue;
            }
            let Some((e, when)) = render_failure(&t, with_both, &without, which) else {
                continue;
            };
            if !checked.insert(format!("render {part}")) {
                continue; // a template shared by several steps is reported once
            }
            let file = renderer.templates_dir().join(&part);
            let detail = e
                .detail()
                .map_or_else(|| e.kind().to_string(), str::to_string);
            diags.push(
                Diagnostic::new(
                    &file.display().to_string(),
                    e.line().unwrap_or(1) as u64,
                    1,
                    format!(
                        "{part} (step '{key}' of scenario '{}') fails to render{when}: {detail}",
                        s.id
                    ),
                )
                .with_hint(render_hint(&e, &when)),
            );
        }
    }
}

/// A diagnostic at (path, line, column) for `what` reading fields no line item has.
fn item_misread(
    (path, line, col): (&str, u64, u64),
    what: &str,
    fields: &BTreeSet<String>,
    item_fields: &[String],
) -> Diagnostic {
    let names: Vec<String> = fields.iter().map(|f| format!("'{f}'")).collect();
    let known: Vec<&str> = item_fields.iter().map(String::as_str).collect();
    let message = format!(
        "{what} reads {} of an order's line item, which no item has (an item has {}): every message whose order has items would fail",
        names.join(", "),
        known.join(", ")
    );
    let first = fields.iter().next().map_or("", String::as_str);
    let hint = match did_you_mean(first, &known) {
        Some(near) => format!("did you mean '{near}'?"),
        None => {
            "read one of the item's fields, or guard it: {% if item.gift is defined %}…{% endif %}"
                .into()
        }
    };
    Diagnostic::new(path, line, col, message).with_hint(hint)
}

/// A condition that compiles must also run: one that fails whatever the customer (`| lenght`)
/// would be false for everyone, and nobody would ever be enrolled, with only a warning in the
/// log to say why.
fn check_condition_runs(
    s: &Scenario,
    what: &str,
    e: &Expr,
    used: &HashSet<String>,
    renderer: &Renderer,
    shop: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    let source = format!("{{% if {} %}}1{{% endif %}}", e.source);
    let Ok(t) = renderer.env().template_from_str(&source) else {
        return; // the expression compiled; its error is reported above
    };
    let ctx = sample_context(s, used, shop, crate::render::SAMPLE_ITEMS);
    if let Err(err) = crate::render::bounded_render(&t, &ctx) {
        if crate::render::fails_for_anyone(&err) {
            let d = Diagnostic::new(
                &s.path,
                e.line,
                e.col,
                format!(
                    "{what} fails for every customer: {}",
                    crate::render::describe(&err)
                ),
            );
            diags.push(d.with_hint(render_hint(&err, "")));
        }
    }
}

/// The sample customer and order (with `items`, a JSON array) for what a scenario's template
/// or condition reads: the `vars`, customer attributes and event properties it uses get
/// sample values, since a person, the shop's import or the shop's events give them.
fn sample_context(
    s: &Scenario,
    used: &HashSet<String>,
    shop: &BTreeMap<String, String>,
    items: &str,
) -> minijinja::Value {
    sample_context_of(s, used, shop, items, false)
}

/// `sample_context` with `numbers`: every sampled value (vars, attributes, properties) the
/// number 1 instead of text, to tell a failure of the template from one of the samples.
fn sample_context_of(
    s: &Scenario,
    used: &HashSet<String>,
    shop: &BTreeMap<String, String>,
    items: &str,
    numbers: bool,
) -> minijinja::Value {
    let sample_values = |used: &HashSet<String>, prefix: &str| sample_values(used, prefix, numbers);
    let mut vars = sample_values(used, "vars.");
    if let Some(name) = s.trigger.event() {
        // An event's properties are whatever the shop sends: each one read gets a value.
        vars["event"] = serde_json::json!({
            "id": "SAMPLE-EVENT",
            "name": name,
            "at": "2026-01-01T00:00:00+00:00",
            "properties": sample_values(used, "event.properties."),
        });
    }
    let attributes = sample_values(used, "customer.attributes.");
    crate::render::sample_context_with(shop, SAMPLE_UNSUBSCRIBE, items, &attributes, vars)
}

/// What to do about a render failure: for one that strikes every customer, by its kind; for
/// one that strikes an order without items, guard what the order may lack.
fn render_hint(e: &minijinja::Error, when: &str) -> String {
    use minijinja::ErrorKind;
    // minijinja says "filter mony is unknown", "test strng is unknown", "recomend is unknown".
    let named = |what: &str, known: &[&str]| {
        let detail = e.detail().unwrap_or_default();
        let name = detail
            .split(" is unknown")
            .next()
            .and_then(|s| s.split_whitespace().last())
            .unwrap_or_default()
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
        match did_you_mean(name, known) {
            Some(near) => format!("did you mean '{near}'?"),
            None => format!("see the {what}s rebuy knows in docs/scenarios.md"),
        }
    };
    match e.kind() {
        ErrorKind::UnknownFilter => named("filter", crate::render::FILTERS),
        ErrorKind::UnknownTest => named("test", crate::render::TESTS),
        ErrorKind::UnknownFunction => named("function", crate::render::FUNCTIONS),
        _ if e
            .detail()
            .is_some_and(|d| d.contains(crate::render::NOT_A_DATE_FORMAT)) =>
        {
            "write the format with % directives: \"%Y-%m-%d\", \"%H:%M\", \"%Y年%m月%d日\"; %% is a percent sign".into()
        }
        _ if when.contains("sample customer") => {
            "it fails whatever the customer's data: fix the expression, then try it with `rebuy preview`".into()
        }
        _ if !when.is_empty() => {
            "guard what an order may lack, e.g. {% if order.items %}…{% else %}…{% endif %}".into()
        }
        ErrorKind::TemplateNotFound => "check the name given to {% include %} or {% extends %}: it is a file in the templates folder".into(),
        _ => "a loop runs too long or prints too much for one mail: bound it, e.g. {% for i in order.items[:20] %}".into(),
    }
}

/// An MJML part rendered for the sample customer must be MJML that mrml accepts; what it
/// refuses is reported at its line (of the rendered sample, which is the template's own line
/// unless a tag above it printed several lines).
fn check_mjml(
    renderer: &Renderer,
    part: &str,
    t: &minijinja::Template<'_, '_>,
    ctx: &minijinja::Value,
    checked: &mut HashSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let file = renderer.templates_dir().join(part);
    for (line, name) in crate::render::unknown_elements(t.source()) {
        if checked.insert(format!("mjml {part} {name}")) {
            let hint = match did_you_mean(&name, &crate::render::MJML_ELEMENTS) {
                Some(near) => format!("did you mean <{near}>? mrml would put the raw tag, without its layout, into every mail"),
                None => "see https://documentation.mjml.io for the elements; mrml would put the raw tag, without its layout, into every mail".into(),
            };
            diags.push(
                Diagnostic::new(
                    &file.display().to_string(),
                    line as u64,
                    1,
                    format!("<{name}> is not an MJML element"),
                )
                .with_hint(hint),
            );
        }
    }
    let Ok(out) = crate::render::bounded_render(t, ctx) else {
        return; // render failures are reported below
    };
    if let Err(e) = crate::render::from_mjml(&out) {
        if checked.insert(format!("mjml {part}")) {
            diags.push(
                Diagnostic::new(
                    &file.display().to_string(),
                    e.line as u64,
                    1,
                    format!("invalid MJML: {}", e.message),
                )
                .with_hint(
                    "see https://documentation.mjml.io for the elements and where each may be",
                ),
            );
        }
    }
}

/// Why a template fails for any customer (`when` is empty: a missing `{% include %}`, a loop
/// that exhausts the fuel or the output bound of a real send), or only for the one described
/// by `which` (an order without items).
fn render_failure(
    t: &minijinja::Template<'_, '_>,
    (with, numbers): (&minijinja::Value, &minijinja::Value),
    without: &minijinja::Value,
    which: &str,
) -> Option<(minijinja::Error, String)> {
    match crate::render::bounded_render(t, with) {
        Err(e) if crate::render::fails_for_anyone(&e) => Some((e, String::new())),
        // Failing alike (same error, same line) with the sampled values as text and as
        // numbers: the template's own fault (`1 // 0`, `customer.name.foo`), not a sample's.
        Err(e) if same_failure(&e, crate::render::bounded_render(t, numbers)) => {
            Some((e, " for the sample customer".to_string()))
        }
        Err(_) => None,
        Ok(_) => crate::render::bounded_render(t, without)
            .err()
            .map(|e| (e, format!(" for {which}"))),
    }
}

/// Whether `other` failed as `e` did: the same kind of error, on the same line, saying the same.
/// Never an undefined value: a sample is flat (`skin.type` is one key), so a real attribute
/// read as `customer.attributes.skin.type` is undefined in both samples.
fn same_failure(e: &minijinja::Error, other: Result<String, minijinja::Error>) -> bool {
    e.kind() != minijinja::ErrorKind::UndefinedError
        && other
            .err()
            .is_some_and(|o| (o.kind(), o.line(), o.detail()) == (e.kind(), e.line(), e.detail()))
}

/// The variables (dotted paths) a subject and its templates read.
fn used_names(renderer: &Renderer, subject: &str, parts: &[String]) -> HashSet<String> {
    let mut used: HashSet<String> = renderer
        .env()
        .template_from_str(subject)
        .map(|t| t.undeclared_variables(true))
        .unwrap_or_default();
    for part in parts {
        if let Ok(t) = renderer.env().get_template(part) {
            used.extend(t.undeclared_variables(true));
        }
    }
    used
}

/// Each used name under `prefix` (e.g. `vars.`), with a sample value.
fn sample_values(used: &HashSet<String>, prefix: &str, numbers: bool) -> serde_json::Value {
    let values: serde_json::Map<String, serde_json::Value> = used
        .iter()
        .filter_map(|v| v.strip_prefix(prefix))
        .map(|name| {
            let value = match numbers {
                true => serde_json::Value::from(1),
                false => format!("SAMPLE-{name}").into(),
            };
            (name.to_string(), value)
        })
        .collect();
    serde_json::Value::Object(values)
}

/// Renders each step's HTML and text of a marketing scenario for a sample customer and checks
/// that the sender's identity and the unsubscribe link are in both.
fn check_footer(
    s: &Scenario,
    renderer: &Renderer,
    shop: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut required: Vec<(&str, String)> = Vec::new();
    for (key, what) in SENDER_KEYS {
        match shop.get(*key).filter(|v| !v.trim().is_empty()) {
            Some(v) => required.push((what, v.clone())),
            None => diags.push(
                Diagnostic::new(&s.path, 1, 1, format!("marketing scenario '{}' needs shop.{key} in the config: {what} must be in every marketing mail", s.id))
                    .with_hint("set it under `shop:` in rebuy.yaml, or mark the scenario `transactional: true` if it is not marketing"),
            ),
        }
    }
    required.push((
        "the unsubscribe link ({{ unsubscribe_url }})",
        SAMPLE_UNSUBSCRIBE.into(),
    ));
    let ctx = crate::render::sample_context(shop, SAMPLE_UNSUBSCRIBE);
    for (key, send) in s.steps.iter().flat_map(|step| step.sends()) {
        // One problem per step: what is missing, and from which parts.
        let mut missing: Vec<&str> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        for part in renderer.parts(&send.template) {
            let escape = !part.ends_with(".txt");
            let Ok(out) = renderer
                .env()
                .get_template(&part)
                .and_then(|t| t.render(&ctx))
            else {
                continue; // rendering problems are reported by check_template
            };
            for (what, value) in &required {
                let shown = if escape {
                    minijinja::HtmlEscape(value).to_string()
                } else {
                    value.clone()
                };
                if !out.contains(&shown) && !out.contains(value.as_str()) {
                    if !missing.contains(what) {
                        missing.push(what);
                    }
                    if !parts.contains(&part) {
                        parts.push(part.clone());
                    }
                }
            }
        }
        if missing.is_empty() {
            continue;
        }
        let (verb, parts) = match parts.as_slice() {
            [one] => ("does", one.clone()),
            many => ("do", many.join(" and ")),
        };
        diags.push(
            Diagnostic::new(
                &s.path,
                send.template_line,
                send.template_col,
                format!(
                    "marketing mail must show {}, but {parts} (step '{key}') {verb} not",
                    and_list(&missing)
                ),
            )
            .with_hint("include the shop footer, e.g. {% include \"_footer.html\" %} / {% include \"_footer.txt\" %}"),
        );
    }
}

/// The innermost block tag (`{% if %}`, `{% for %}`, …) left open at the end of `source`:
/// its line, column and keyword.
fn unclosed_block(source: &str) -> Option<(u64, u64, String)> {
    const BLOCKS: [&str; 8] = [
        "if", "for", "macro", "block", "with", "filter", "call", "raw",
    ];
    let mut open: Vec<(u64, u64, String)> = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    while let Some(start) = rest.find("{%") {
        let at = offset + start;
        let inner = &rest[start + 2..];
        let end = inner.find("%}")?;
        let word = inner[..end]
            .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
            .split_whitespace()
            .next()
            .unwrap_or_default();
        if BLOCKS.contains(&word) {
            let line = source[..at].matches('\n').count() as u64 + 1;
            let col = (at - source[..at].rfind('\n').map_or(0, |n| n + 1)) as u64 + 1;
            open.push((line, col, word.to_string()));
        } else if let Some(kw) = word.strip_prefix("end") {
            if let Some(i) = open.iter().rposition(|(_, _, k)| k == kw) {
                open.truncate(i);
            }
        }
        offset = at + 2 + end + 2;
        rest = &source[offset..];
    }
    open.pop()
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn add_hint(d: Diagnostic, hint: Option<String>) -> Diagnostic {
    match hint {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

fn template_hint(dir: &Path, template: &str) -> Option<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_string))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // The template's own name (its .txt is there, its .html is not) is no near miss.
    let refs: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != template)
        .collect();
    match did_you_mean(template, &refs) {
        Some(m) => Some(format!("did you mean '{m}'?")),
        None => Some(format!(
            "a step's template '{template}' needs {template}.html (or {template}.mjml), and {template}.txt unless the text is to be made from the HTML, in {}",
            dir.display()
        )),
    }
}

/// Line and column (1-based) of a minijinja error in its source.
fn error_position(source: &str, e: &minijinja::Error) -> (u64, u64) {
    if let Some(range) = e.range() {
        return line_col(source, range.start);
    }
    (e.line().unwrap_or(1) as u64, 1)
}

fn line_col(source: &str, offset: usize) -> (u64, u64) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0) as u64
        + 1;
    (line, col)
}

/// Where a variable path first appears in a template, or 1:1.
fn find(source: &str, var: &str) -> (u64, u64) {
    source
        .find(var)
        .map(|o| line_col(source, o))
        .unwrap_or((1, 1))
}

/// Variables used that the scenario's context does not have: (variable, message, hint).
fn unknown_variables(
    used: &HashSet<String>,
    s: &Scenario,
    shop: &BTreeMap<String, String>,
) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    let mut used: Vec<&String> = used.iter().collect();
    used.sort();
    let shop_keys: Vec<&str> = shop.keys().map(String::as_str).collect();
    for var in used {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default();
        let field = parts.next();
        let unknown = |what: &str, name: &str, known: &[&str]| {
            let hint = did_you_mean(name, known).map(|m| format!("did you mean '{m}'?"));
            (var.clone(), format!("undefined variable '{what}'"), hint)
        };
        if !CONTEXT_ROOTS.contains(&root) {
            out.push(unknown(var, root, CONTEXT_ROOTS));
            continue;
        }
        match (root, field) {
            ("vars", Some("sku" | "interval_days") | None)
                if matches!(s.trigger, Trigger::Replenish(_)) => {}
            ("vars", Some("sku" | "next_sku" | "interval_days") | None)
                if matches!(s.trigger, Trigger::NextPurchaseDue(_)) => {}
            ("vars", Some(f))
                if s.trigger == Trigger::Manual && !s.vars.iter().any(|v| v.name == f) =>
            {
                let names: Vec<&str> = s.vars.iter().map(|v| v.name.as_str()).collect();
                let (v, m, h) = unknown(var, f, &names);
                out.push((
                    v,
                    m,
                    h.or(Some(format!(
                        "declare it in the scenario: vars: [{{ name: {f}, required: true, example: … }}]"
                    ))),
                ));
            }
            ("vars", _) if s.trigger != Trigger::Manual => out.push((
                var.clone(),
                format!("'{var}', but only manual scenarios have vars (and replenish ones vars.sku, vars.interval_days; next_purchase_due ones also vars.next_sku)"),
                Some("pass values with `rebuy trigger … --var key=value` in a scenario with `trigger: manual`".into()),
            )),
            ("event", _) if s.trigger.event().is_none() => out.push((
                var.clone(),
                format!("'{var}', but only a scenario with `trigger: {{ event: … }}` has an event"),
                Some("read what the customer did from customer.* and metrics.*, or trigger the scenario by the event".into()),
            )),
            ("event", Some(f)) if !["id", "name", "at", "properties"].contains(&f) => {
                out.push(unknown(var, f, &["id", "name", "at", "properties"]))
            }
            ("order", _) if !s.trigger.has_order() => out.push((
                var.clone(),
                format!("'{var}', but a {} scenario has no triggering order", s.trigger.name()),
                Some("use customer.* and metrics.* here (customer.last_order_at, metrics.last_order)".into()),
            )),
            ("customer", Some(f)) if !CUSTOMER_FIELDS.contains(&f) => {
                let (v, m, h) = unknown(var, f, CUSTOMER_FIELDS);
                out.push((v, m, h.or(Some(format!("free attributes are under customer.attributes.{f}")))));
            }
            ("order", Some(f)) if !ORDER_FIELDS.contains(&f) => out.push(unknown(var, f, ORDER_FIELDS)),
            ("metrics", Some(f)) if !METRICS_FIELDS.contains(&f) => {
                out.push(unknown(var, f, METRICS_FIELDS))
            }
            ("shop", Some(f)) if !shop.contains_key(f) => {
                let (v, m, h) = unknown(var, f, &shop_keys);
                out.push((v, m, h.or(Some(format!("add '{f}' under shop: in the config")))));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_template_with_only_its_text_part_is_told_what_it_needs_not_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ping.txt"), "hi").unwrap();
        std::fs::write(dir.path().join("pong.html"), "hi").unwrap();
        let hint = super::template_hint(dir.path(), "ping").unwrap();
        assert!(
            hint.starts_with("did you mean 'pong'?") || hint.contains("needs ping.html"),
            "{hint}"
        );
        assert!(!hint.contains("'ping'?"), "{hint}");
    }

    #[test]
    fn an_unclosed_block_is_found_where_it_opened() {
        let src =
            "<p>{% if a %}\n{% for x in xs %}{{ x }}{% endfor %}\n  {%- if b %}\nhi\n{% endif %}\n";
        assert_eq!(super::unclosed_block(src), Some((1, 4, "if".into())));
        assert_eq!(super::unclosed_block("{% if a %}{% endif %}"), None);
        assert_eq!(super::and_list(&["a", "b", "c"]), "a, b and c");
    }
}
