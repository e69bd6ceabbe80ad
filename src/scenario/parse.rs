//! Located YAML -> `Scenario`. Every problem in a file is collected as a `Diagnostic`; a file
//! with problems yields no scenario.

use super::{
    AutoWinner, Expr, Goal, Reentry, Scenario, SegmentRef, Send, Step, Trigger, VarDecl, Variant,
};
use crate::diagnostic::Diagnostic;
use crate::domain::{parse_duration, parse_local_time};
use crate::yaml::{expect_str, MapReader, Node, Value};
use chrono::Duration;

const SCENARIO_KEYS: &[&str] = &[
    "id",
    "name",
    "enabled",
    "trigger",
    "audience",
    "reentry",
    "goal",
    "transactional",
    "when_capped",
    "holdout",
    "expires",
    "vars",
    "steps",
];
const VAR_KEYS: &[&str] = &["name", "required", "example"];
const STEP_KEYS: &[&str] = &[
    "id",
    "wait",
    "at",
    "expires",
    "if",
    "send",
    "variants",
    "auto_winner",
];
const VARIANT_KEYS: &[&str] = &["id", "weight", "wait", "template", "subject"];
const AUTO_WINNER_KEYS: &[&str] = &["min_sample", "confidence"];
const SEND_KEYS: &[&str] = &["template", "subject"];
const GOAL_KEYS: &[&str] = &["event", "within", "if"];
const AUDIENCE_KEYS: &[&str] = &["segment", "if"];
const TRIGGERS: &[&str] = &[
    "order_placed",
    "first_order",
    "nth_order",
    "manual",
    "segment_entered",
    "segment_exited",
    "expected_next_order",
    "replenish",
    "next_purchase_due",
    "event",
];

/// Parses one scenario file's text. `Err` holds every problem found.
pub fn parse_scenario(path: &str, text: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let doc = crate::yaml::parse(path, text).map_err(|d| vec![d])?;
    let mut diags = Vec::new();
    let scenario = read_scenario(path, &doc, &mut diags);
    match scenario {
        Some(s) if diags.is_empty() => Ok(s),
        _ => Err(diags),
    }
}

fn read_scenario(path: &str, doc: &Node, diags: &mut Vec<Diagnostic>) -> Option<Scenario> {
    let mut m = MapReader::new(path, doc, "a scenario", diags)?;
    let id = m
        .require("id", doc, diags)
        .and_then(|n| read_id(path, n, "id", diags));
    let name = match m.get("name") {
        Some(n) => expect_str(path, n, "name", diags).map(str::to_string),
        None => id.clone(),
    };
    let enabled = m
        .get("enabled")
        .map(|n| read_bool(path, n, "enabled", diags))
        .unwrap_or(true);
    let transactional = m
        .get("transactional")
        .map(|n| read_bool(path, n, "transactional", diags))
        .unwrap_or(false);
    let skip_when_capped = match m.get("when_capped") {
        None => false,
        Some(n) => match expect_str(path, n, "when_capped", diags) {
            Some("wait") => false,
            Some("skip") => true,
            Some(other) => {
                diags.push(n.diag(
                    path,
                    format!("'when_capped' must be wait or skip, found '{other}'"),
                ));
                false
            }
            None => false,
        },
    };
    let holdout = m
        .get("holdout")
        .and_then(|n| read_share(path, n, "holdout", diags))
        .unwrap_or(0.0);
    let trigger = m
        .require("trigger", doc, diags)
        .and_then(|n| read_trigger(path, n, diags));
    let (audience, audience_segment) = m
        .get("audience")
        .map(|n| read_audience(path, n, diags))
        .unwrap_or_default();
    if holdout > 0.0 && trigger == Some(Trigger::Manual) {
        if let Some(n) = m.get("holdout") {
            diags.push(
                n.diag(path, "'holdout' does not apply to a manual scenario: a person asked for each enrollment")
                    .with_hint("remove it, or measure an automatic scenario instead"),
            );
        }
    }
    let reentry = match m.get("reentry") {
        Some(n) => read_reentry(path, n, diags),
        None if trigger == Some(Trigger::Manual) => Some(Reentry::Always),
        None => Some(Reentry::Never),
    };
    let goal = m.get("goal").and_then(|n| read_goal(path, n, diags));
    let expires = m.get("expires").and_then(|n| read_expires(path, n, diags));
    let vars = match m.get("vars") {
        Some(n) if trigger.as_ref().is_some_and(|t| *t != Trigger::Manual) => {
            diags.push(
                n.diag(path, "'vars' are declared only by manual scenarios")
                    .with_hint("a person passes them with `rebuy trigger … --var name=value`"),
            );
            Vec::new()
        }
        Some(n) => read_vars(path, n, diags),
        None => Vec::new(),
    };
    let steps = m
        .require("steps", doc, diags)
        .and_then(|n| read_steps(path, n, diags));
    m.finish(SCENARIO_KEYS, diags);
    Some(Scenario {
        id: id?,
        name: name?,
        path: path.to_string(),
        enabled,
        trigger: trigger?,
        audience,
        audience_segment,
        reentry: reentry?,
        goal,
        transactional,
        skip_when_capped,
        holdout,
        control_group: 0.0,
        expires,
        vars,
        steps: steps?,
    })
}

/// A manual scenario's `vars:`, each `{ name, required?, example? }` or just a name.
fn read_vars(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Vec<VarDecl> {
    let Value::Seq(items) = &n.value else {
        diags.push(n.diag(
            path,
            format!("'vars' must be a list, found {}", n.type_name()),
        ));
        return Vec::new();
    };
    let mut out: Vec<VarDecl> = Vec::new();
    for item in items {
        let decl = if item.as_str().is_some() {
            read_id(path, item, "vars", diags).map(|name| VarDecl {
                name,
                required: true,
                example: None,
            })
        } else {
            read_var(path, item, diags)
        };
        let Some(decl) = decl else { continue };
        if out.iter().any(|d| d.name == decl.name) {
            diags.push(item.diag(path, format!("variable '{}' is declared twice", decl.name)));
            continue;
        }
        out.push(decl);
    }
    out
}

fn read_var(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<VarDecl> {
    let mut m = MapReader::new(path, n, "a variable", diags)?;
    let name = m
        .require("name", n, diags)
        .and_then(|i| read_id(path, i, "name", diags));
    let required = match m.get("required") {
        Some(r) => match &r.value {
            Value::Bool(b) => *b,
            _ => {
                diags.push(r.diag(path, "'required' must be true or false"));
                true
            }
        },
        None => true,
    };
    let example = m.get("example").and_then(|e| e.scalar_text());
    m.finish(VAR_KEYS, diags);
    Some(VarDecl {
        name: name?,
        required,
        example,
    })
}

/// A lateness limit: a positive duration.
fn read_expires(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let d = read_duration(path, n, "expires", diags)?;
    if d <= Duration::zero() {
        diags.push(n.diag(path, "'expires' must be longer than 0").with_hint(
            "how late a step may still be sent, such as 3d; leave it out for the default",
        ));
        return None;
    }
    Some(d)
}

fn read_id(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let text = n.scalar_text();
    let problem = match text.as_deref() {
        Some(t) => crate::diagnostic::identifier_problem(t),
        None => Some("must be a text, not a list or a map".into()),
    };
    if let Some(problem) = problem {
        diags.push(
            n.diag(path, format!("'{key}': {problem}"))
                .with_hint(match key {
                    // A scenario's or a step's own id: its title goes beside it.
                    "id" => {
                        "e.g. first-purchase; a title in Japanese or with spaces goes in `name:`"
                    }
                    _ => "e.g. first-purchase",
                }),
        );
        return None;
    }
    text
}

/// A percentage (`10%`) as a share in 0..1; a located problem otherwise.
fn read_share(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match n.scalar_text().map(|t| crate::domain::parse_share(&t)) {
        Some(Ok(share)) => Some(share),
        Some(Err(e)) => {
            diags.push(n.diag(path, format!("'{key}': {e}")));
            None
        }
        None => {
            diags.push(n.diag(path, format!("'{key}' must be a percentage such as 10%")));
            None
        }
    }
}

fn read_bool(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> bool {
    match n.value {
        Value::Bool(b) => b,
        _ => {
            diags.push(n.diag(
                path,
                format!("'{key}' must be true or false, found {}", n.type_name()),
            ));
            false
        }
    }
}

fn read_expr(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Expr> {
    let source = expect_str(path, n, key, diags)?;
    Some(Expr {
        source: source.to_string(),
        line: n.line,
        col: n.col,
    })
}

fn read_duration(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let Some(text) = n.scalar_text() else {
        diags.push(n.diag(
            path,
            format!(
                "'{key}' must be a duration such as 3d, found {}",
                n.type_name()
            ),
        ));
        return None;
    };
    match parse_duration(&text) {
        Ok(d) if d >= Duration::zero() => Some(d),
        Ok(_) => None,
        Err(e) => {
            diags.push(n.diag(path, e));
            None
        }
    }
}

fn read_trigger(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Trigger> {
    let unknown = |name: &str, n: &Node, diags: &mut Vec<Diagnostic>| {
        let mut d = n.diag(path, format!("unknown trigger '{name}'"));
        d = match crate::diagnostic::did_you_mean(name, TRIGGERS) {
            Some(s) => d.with_hint(format!("did you mean '{s}'?")),
            None => d.with_hint(format!("triggers: {}", TRIGGERS.join(", "))),
        };
        diags.push(d);
    };
    match &n.value {
        Value::Str(s) => {
            match s.as_str() {
                "order_placed" => Some(Trigger::OrderPlaced),
                "first_order" => Some(Trigger::FirstOrder),
                "manual" => Some(Trigger::Manual),
                "nth_order" => {
                    diags.push(
                        n.diag(path, "'nth_order' needs a number")
                            .with_hint("write `trigger: { nth_order: 2 }`"),
                    );
                    None
                }
                name @ ("expected_next_order" | "replenish" | "next_purchase_due") => {
                    diags.push(n.diag(path, format!("'{name}' needs an offset")).with_hint(
                        format!("write `trigger: {{ {name}: -3d }}` (three days before)"),
                    ));
                    None
                }
                "event" => {
                    diags.push(
                        n.diag(path, "'event' needs the event's name")
                            .with_hint("write `trigger: { event: cart_added }`"),
                    );
                    None
                }
                name @ ("segment_entered" | "segment_exited") => {
                    diags.push(
                        n.diag(path, format!("'{name}' needs a segment name"))
                            .with_hint(format!("write `trigger: {{ {name}: at-risk }}`")),
                    );
                    None
                }
                other => {
                    unknown(other, n, diags);
                    None
                }
            }
        }
        Value::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            match k.as_str() {
                Some("nth_order") => match v.value {
                    Value::Int(i) if i >= 1 && i <= i64::from(u32::MAX) => {
                        Some(Trigger::NthOrder(i as u32))
                    }
                    _ => {
                        diags.push(v.diag(path, "'nth_order' must be a whole number of 1 or more"));
                        None
                    }
                },
                Some("segment_entered") => {
                    read_segment_ref(path, v, "segment_entered", diags).map(Trigger::SegmentEntered)
                }
                Some("segment_exited") => {
                    read_segment_ref(path, v, "segment_exited", diags).map(Trigger::SegmentExited)
                }
                Some("expected_next_order") => read_offset(path, v, "expected_next_order", diags)
                    .map(Trigger::ExpectedNextOrder),
                Some("replenish") => {
                    read_offset(path, v, "replenish", diags).map(Trigger::Replenish)
                }
                Some("next_purchase_due") => {
                    read_offset(path, v, "next_purchase_due", diags).map(Trigger::NextPurchaseDue)
                }
                Some("event") => match &v.value {
                    Value::Str(name) if crate::domain::valid_event_name(name) => {
                        Some(Trigger::Event(name.clone()))
                    }
                    _ => {
                        diags.push(
                            v.diag(
                                path,
                                "an event name is 1 to 64 letters, digits, '_', '-' or '.'",
                            )
                            .with_hint("write `trigger: { event: cart_added }`"),
                        );
                        None
                    }
                },
                Some(name @ ("order_placed" | "first_order" | "manual")) => {
                    diags.push(
                        k.diag(path, format!("'{name}' takes no value"))
                            .with_hint(format!("write `trigger: {name}`")),
                    );
                    None
                }
                other => {
                    unknown(other.unwrap_or("?"), k, diags);
                    None
                }
            }
        }
        _ => {
            diags.push(
                n.diag(
                    path,
                    format!("'trigger' must be a trigger name, found {}", n.type_name()),
                )
                .with_hint(format!("triggers: {}", TRIGGERS.join(", "))),
            );
            None
        }
    }
}

/// `audience: "condition"` or `audience: { segment: NAME, if: "condition" }`.
fn read_audience(
    path: &str,
    n: &Node,
    diags: &mut Vec<Diagnostic>,
) -> (Option<Expr>, Option<SegmentRef>) {
    if let Value::Map(_) = n.value {
        let Some(mut m) = MapReader::new(path, n, "'audience'", diags) else {
            return (None, None);
        };
        let segment = m
            .get("segment")
            .and_then(|s| read_segment_ref(path, s, "segment", diags));
        let condition = m.get("if").and_then(|c| read_expr(path, c, "if", diags));
        m.finish(AUDIENCE_KEYS, diags);
        if segment.is_none() && condition.is_none() {
            diags.push(
                n.diag(path, "'audience' needs a segment or an if condition")
                    .with_hint("write `audience: { segment: at-risk }`"),
            );
        }
        return (condition, segment);
    }
    (read_expr(path, n, "audience", diags), None)
}

fn read_segment_ref(
    path: &str,
    n: &Node,
    key: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<SegmentRef> {
    let name = read_id(path, n, key, diags)?;
    Some(SegmentRef {
        name,
        line: n.line,
        col: n.col,
    })
}

/// A signed duration: `-3d` (before), `2d` or `+2d` (after), `0d`.
fn read_offset(path: &str, n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let hint = format!("write `{key}: -3d` for three days before, `0d` for the day itself");
    let Some(text) = n.scalar_text() else {
        diags.push(
            n.diag(
                path,
                format!(
                    "'{key}' must be an offset such as -3d, found {}",
                    n.type_name()
                ),
            )
            .with_hint(hint),
        );
        return None;
    };
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(&text)),
    };
    match parse_duration(rest) {
        Ok(d) => Some(d * sign),
        Err(e) => {
            diags.push(n.diag(path, e).with_hint(hint));
            None
        }
    }
}

fn read_reentry(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Reentry> {
    match n.as_str() {
        Some("never") => Some(Reentry::Never),
        Some("always") => Some(Reentry::Always),
        _ => {
            let d = read_duration(path, n, "reentry", diags);
            if let Some(last) = diags.last_mut().filter(|_| d.is_none()) {
                last.hint = Some("reentry is 'never', 'always' or a duration such as 90d".into());
            }
            d.map(Reentry::After)
        }
    }
}

fn read_goal(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Goal> {
    let mut m = MapReader::new(path, n, "'goal'", diags)?;
    if let Some(event) = m.require("event", n, diags) {
        if event.as_str() != Some("order_placed") {
            diags.push(event.diag(path, "the only goal event is 'order_placed'"));
        }
    }
    let within = m
        .get("within")
        .and_then(|w| read_duration(path, w, "within", diags));
    let condition = m.get("if").and_then(|c| read_expr(path, c, "if", diags));
    m.finish(GOAL_KEYS, diags);
    Some(Goal { within, condition })
}

fn read_steps(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Vec<Step>> {
    let Value::Seq(items) = &n.value else {
        diags.push(n.diag(
            path,
            format!("'steps' must be a list, found {}", n.type_name()),
        ));
        return None;
    };
    if items.is_empty() {
        diags.push(n.diag(path, "a scenario needs at least one step"));
        return None;
    }
    let before = diags.len();
    let steps: Vec<Option<Step>> = items.iter().map(|s| read_step(path, s, diags)).collect();
    let mut seen = std::collections::HashSet::new();
    for (item, step) in items.iter().zip(&steps) {
        if let Some(step) = step {
            if !seen.insert(step.id.clone()) {
                diags.push(item.diag(
                    path,
                    format!("step id '{}' is used twice in this scenario", step.id),
                ));
            }
        }
    }
    if diags.len() > before {
        return None;
    }
    steps.into_iter().collect()
}

fn read_step(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Step> {
    let mut m = MapReader::new(path, n, "a step", diags)?;
    let id = m
        .require("id", n, diags)
        .and_then(|i| read_id(path, i, "id", diags));
    let wait = match m.get("wait") {
        Some(w) => read_duration(path, w, "wait", diags),
        None => Some(Duration::zero()),
    };
    let at = match m.get("at") {
        Some(a) => match a.scalar_text().map(|t| parse_local_time(&t)) {
            Some(Ok(t)) => Some(Some(t)),
            Some(Err(e)) => {
                diags.push(a.diag(path, e));
                None
            }
            None => {
                diags.push(a.diag(path, "'at' must be a time such as \"10:00\""));
                None
            }
        },
        None => Some(None),
    };
    let expires = m.get("expires").and_then(|e| read_expires(path, e, diags));
    let condition = m.get("if").and_then(|c| read_expr(path, c, "if", diags));
    let send = m
        .require("send", n, diags)
        .and_then(|s| read_send(path, s, diags));
    let variants = match (m.get("variants"), &send, wait) {
        (Some(v), Some(send), Some(wait)) => read_variants(path, v, send, wait, diags)?,
        _ => Vec::new(),
    };
    let auto_winner = m
        .get("auto_winner")
        .and_then(|a| read_auto_winner(path, a, diags));
    if auto_winner.is_some() && variants.is_empty() {
        if let Some(a) = m.get("auto_winner") {
            diags.push(a.diag(path, "'auto_winner' needs 'variants' on the same step"));
        }
    }
    m.finish(STEP_KEYS, diags);
    Some(Step {
        id: id?,
        wait: wait?,
        at: at?,
        expires,
        condition,
        send: send?,
        variants,
        auto_winner,
    })
}

/// A step's `variants:` list; each variant inherits the step's template, subject and wait.
fn read_variants(
    path: &str,
    n: &Node,
    send: &Send,
    wait: Duration,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Variant>> {
    let Value::Seq(items) = &n.value else {
        diags.push(n.diag(
            path,
            format!("'variants' must be a list, found {}", n.type_name()),
        ));
        return None;
    };
    if items.len() < 2 {
        diags.push(n.diag(path, "'variants' needs at least two variants to compare"));
        return None;
    }
    let mut out = Vec::new();
    for item in items {
        let mut m = MapReader::new(path, item, "a variant", diags)?;
        let id = m
            .require("id", item, diags)
            .and_then(|i| read_id(path, i, "id", diags));
        let weight = m.require("weight", item, diags).and_then(|w| {
            match w.scalar_text().map(|t| t.parse::<f64>()) {
                Some(Ok(x)) if x > 0.0 && x.is_finite() => Some(x),
                _ => {
                    diags.push(w.diag(path, "'weight' must be a positive number, such as 50"));
                    None
                }
            }
        });
        let wait = match m.get("wait") {
            Some(w) => read_duration(path, w, "wait", diags),
            None => Some(wait),
        };
        let mut vsend = send.clone();
        if let Some(t) = m.get("template") {
            vsend.template = read_id(path, t, "template", diags).unwrap_or_default();
            (vsend.template_line, vsend.template_col) = (t.line, t.col);
        }
        if let Some(s) = m.get("subject") {
            if let Some(e) = read_expr(path, s, "subject", diags) {
                vsend.subject = e;
            }
        }
        m.finish(VARIANT_KEYS, diags);
        if let (Some(id), Some(weight), Some(wait)) = (id, weight, wait) {
            if out.iter().any(|v: &Variant| v.id == id) {
                diags.push(item.diag(
                    path,
                    format!("variant id '{id}' is used twice in this step"),
                ));
            }
            out.push(Variant {
                id,
                weight,
                wait,
                send: vsend,
            });
        }
    }
    Some(out)
}

fn read_auto_winner(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<AutoWinner> {
    let mut m = MapReader::new(path, n, "'auto_winner'", diags)?;
    let min_sample = m.require("min_sample", n, diags).and_then(|s| {
        match s.scalar_text().map(|t| t.parse::<u64>()) {
            Some(Ok(x)) if x > 0 => Some(x),
            _ => {
                diags.push(s.diag(
                    path,
                    "'min_sample' must be a whole number of messages, such as 1000",
                ));
                None
            }
        }
    });
    let confidence = match m.get("confidence") {
        None => Some(0.95),
        Some(c) => read_share(path, c, "confidence", diags),
    };
    m.finish(AUTO_WINNER_KEYS, diags);
    Some(AutoWinner {
        min_sample: min_sample?,
        confidence: confidence?,
    })
}

fn read_send(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Send> {
    let mut m = MapReader::new(path, n, "'send'", diags)?;
    let template = m.require("template", n, diags);
    let template_name = template.and_then(|t| read_id(path, t, "template", diags));
    let subject = m
        .require("subject", n, diags)
        .and_then(|s| read_expr(path, s, "subject", diags));
    m.finish(SEND_KEYS, diags);
    let template = template?;
    Some(Send {
        template: template_name?,
        template_line: template.line,
        template_col: template.col,
        subject: subject?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        // Any text, or any text made of scenario-like lines, is a scenario or located errors:
        // never a panic, never a place outside the text.
        #[test]
        fn any_text_is_a_scenario_or_located_errors(text in proptest::prop_oneof![
            "\\PC{0,200}",
            proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("id: x".to_string()),
                proptest::strategy::Just("trigger: first_order".to_string()),
                proptest::strategy::Just("steps:".to_string()),
                proptest::strategy::Just("  - id: a".to_string()),
                proptest::strategy::Just("    wait: 3d".to_string()),
                proptest::strategy::Just("    send: { template: t, subject: s }".to_string()),
                "[ -~]{0,30}",
            ], 0..12).prop_map(|l| l.join("\n")),
        ]) {
            let lines = text.lines().count() as u64 + 1;
            if let Err(diags) = parse_scenario("p.yaml", &text) {
                proptest::prop_assert!(!diags.is_empty());
                for d in diags {
                    proptest::prop_assert!(d.line >= 1 && d.line <= lines + 1, "{} outside {} lines", d, lines);
                    proptest::prop_assert!(!d.message.is_empty());
                }
            }
        }
    }

    const GOOD: &str = r#"
id: first-purchase
name: 初回購入フォロー
trigger: first_order
audience: "order.total >= 1000"
reentry: never
goal: { event: order_placed, within: 60d }
steps:
  - id: thanks
    wait: 1d
    at: "10:00"
    send: { template: thanks, subject: "{{ customer.name }}様、ご購入ありがとうございました" }
  - id: replenish
    wait: 23d
    if: "customer.orders_count == 1"
    send: { template: replenish, subject: "そろそろ" }
"#;

    #[test]
    fn a_good_scenario_parses_into_its_parts() {
        let s = parse_scenario("s.yaml", GOOD).unwrap();
        assert_eq!(s.id, "first-purchase");
        assert_eq!(s.trigger, Trigger::FirstOrder);
        assert_eq!(s.reentry, Reentry::Never);
        assert_eq!(s.goal.unwrap().within, Some(Duration::days(60)));
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].at.unwrap().to_string(), "10:00:00");
        assert_eq!(s.steps[1].wait, Duration::days(23));
        assert_eq!(s.steps[1].condition.as_ref().unwrap().line, 15);
    }

    #[test]
    fn every_problem_in_a_file_is_reported_with_its_place() {
        let bad = "id: x\ntrigger: frist_order\nsteps:\n  - id: a\n    wiat: 3d\n    send: { template: t, subject: s }\n  - id: b\n    wait: 3x\n    at: \"25:00\"\n    send: { template: t }\n";
        let diags = parse_scenario("bad.yaml", bad).unwrap_err();
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        let all = text.join("\n");
        assert!(
            all.contains(
                "bad.yaml:2:10: unknown trigger 'frist_order'\n  hint: did you mean 'first_order'?"
            ),
            "{all}"
        );
        assert!(
            all.contains("bad.yaml:5:5: unknown key 'wiat'\n  hint: did you mean 'wait'?"),
            "{all}"
        );
        assert!(all.contains("bad.yaml:8:11: bad duration '3x'"), "{all}");
        assert!(all.contains("bad.yaml:9:9: bad time '25:00'"), "{all}");
        assert!(
            all.contains("bad.yaml:10:11: missing required key 'subject'"),
            "{all}"
        );
        assert_eq!(diags.len(), 5, "{all}");
    }

    /// Every problem `parse_scenario` finds in `yaml`, one per line.
    fn errors(yaml: &str) -> String {
        let d = parse_scenario("s.yaml", yaml).unwrap_err();
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_holdout_is_a_share_and_bad_ones_are_located() {
        let s =
            parse_scenario("s.yaml", &GOOD.replace("reentry: never", "holdout: 12.5%")).unwrap();
        assert_eq!(s.holdout, 0.125);
        assert_eq!(parse_scenario("s.yaml", GOOD).unwrap().holdout, 0.0);
        let all = errors(&GOOD.replace("reentry: never", "holdout: 10"));
        assert!(
            all.starts_with("s.yaml:6:10: 'holdout': bad share '10': no '%'"),
            "{all}"
        );
        let all = errors(&GOOD.replace("reentry: never", "holdout: 0%"));
        assert!(
            all.starts_with("s.yaml:6:10: 'holdout': bad share '0%'"),
            "{all}"
        );
        let manual = GOOD
            .replace("trigger: first_order", "trigger: manual")
            .replace("reentry: never", "holdout: 10%");
        let all = errors(&manual);
        assert!(
            all.contains("s.yaml:6:10: 'holdout' does not apply to a manual scenario"),
            "{all}"
        );
    }

    #[test]
    fn variants_inherit_the_step_and_bad_ones_are_located() {
        let with = |variants: &str| {
            GOOD.replace(
                "    if: \"customer.orders_count == 1\"\n",
                &format!("    if: \"customer.orders_count == 1\"\n{variants}"),
            )
        };
        let ok = with("    variants:\n      - { id: a, weight: 3 }\n      - { id: b, weight: 1, wait: 20d, subject: \"B\" }\n    auto_winner: { min_sample: 500 }\n");
        let s = parse_scenario("s.yaml", &ok).unwrap();
        let step = &s.steps[1];
        assert_eq!(step.variants.len(), 2);
        assert_eq!(
            (
                step.variants[0].wait,
                step.variants[0].send.template.as_str()
            ),
            (Duration::days(23), "replenish")
        );
        assert_eq!(
            (
                step.variants[1].wait,
                step.variants[1].send.subject.source.as_str()
            ),
            (Duration::days(20), "B")
        );
        assert_eq!(
            step.auto_winner,
            Some(AutoWinner {
                min_sample: 500,
                confidence: 0.95
            })
        );
        assert_eq!(
            step.sends()
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["replenish", "replenish#a", "replenish#b"]
        );
        let all = errors(&with("    variants:\n      - { id: a, weight: 1 }\n"));
        assert!(
            all.contains("s.yaml:17:7: 'variants' needs at least two variants"),
            "{all}"
        );
        let all = errors(&with("    variants:\n      - { id: a, weight: -1 }\n      - { id: b, wieght: 1 }\n    auto_winner: { min_sample: 10, confidence: 95 }\n"));
        assert!(
            all.contains("s.yaml:17:26: 'weight' must be a positive number"),
            "{all}"
        );
        assert!(all.contains("s.yaml:18:18: unknown key 'wieght'"), "{all}");
        assert!(
            all.contains("s.yaml:19:48: 'confidence': bad share '95': no '%'"),
            "{all}"
        );
        let all = errors(&with("    auto_winner: { min_sample: 10 }\n"));
        assert!(
            all.contains("'auto_winner' needs 'variants' on the same step"),
            "{all}"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let diags = parse_scenario(
            "t.yaml",
            "id: x\ntrigger: manual\ntransactional: yes please\nsteps: 3\n",
        )
        .unwrap_err();
        let all: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert!(
            all[0].contains("t.yaml:3:16: 'transactional' must be true or false, found a string"),
            "{all:?}"
        );
        assert!(
            all[1].contains("t.yaml:4:8: 'steps' must be a list, found a number"),
            "{all:?}"
        );
    }

    #[test]
    fn manual_scenarios_allow_reentry_by_default() {
        let bad = parse_scenario("c.yaml", "id: c\ntrigger: first_order\nwhen_capped: later\nsteps:\n  - id: a\n    send: { template: t, subject: s }\n").unwrap_err();
        assert!(
            bad[0]
                .to_string()
                .contains("c.yaml:3:14: 'when_capped' must be wait or skip, found 'later'"),
            "{}",
            bad[0]
        );
        let s = parse_scenario("m.yaml", "id: m\ntrigger: manual\ntransactional: true\nsteps:\n  - id: a\n    send: { template: t, subject: s }\n").unwrap();
        assert_eq!(s.reentry, Reentry::Always);
        assert!(s.transactional);
        assert_eq!(s.steps[0].wait, Duration::zero());
    }

    #[test]
    fn nth_order_takes_a_number() {
        let s = parse_scenario("n.yaml", "id: n\ntrigger: { nth_order: 2 }\nsteps:\n  - id: a\n    send: { template: t, subject: s }\n").unwrap();
        assert_eq!(s.trigger, Trigger::NthOrder(2));
        assert!(s.trigger.fires_on_order(2) && !s.trigger.fires_on_order(1));
    }
}
