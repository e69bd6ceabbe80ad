//! LTV targets (seed article: "set a numeric LTV goal, e.g. +20% in a year, per segment, and
//! check the KPIs regularly"): a YAML file beside the scenarios with `targets:` at the top,
//! read with every problem located, and the pure measures over purchase histories: the value
//! of a metric over a window of days, for the baseline and now; and every target measured
//! over the store (for the targets page and the digest mail).

use crate::diagnostic::Diagnostic;
use crate::metrics::{day_number, Purchase};
use crate::yaml::{expect_str, MapReader, Node, Value};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::HashSet;

/// What a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Revenue per customer in the 365 days from their first order (first order included),
    /// over the customers whose first order falls in the window.
    Ltv12m,
    /// Of the customers whose first order falls in the window, the share who ordered again on
    /// a later day within 90 days.
    RepeatRate90d,
    /// Revenue per order, over the orders placed in the window.
    Aov,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ltv_12m" => Some(Metric::Ltv12m),
            "repeat_rate_90d" => Some(Metric::RepeatRate90d),
            "aov" => Some(Metric::Aov),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Ltv12m => "ltv_12m",
            Metric::RepeatRate90d => "repeat_rate_90d",
            Metric::Aov => "aov",
        }
    }

    /// Days after a window's end until its value is final (a customer's 12 months, or 90 days).
    pub fn settles_after(self) -> i64 {
        match self {
            Metric::Ltv12m => 365,
            Metric::RepeatRate90d => 90,
            Metric::Aov => 0,
        }
    }

    /// Whether values are money (minor units) rather than a share.
    pub fn is_money(self) -> bool {
        self != Metric::RepeatRate90d
    }
}

/// Where a target wants the metric to be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// A change from the baseline: `+20%` is 0.20.
    Relative(f64),
    /// A value: minor units for money, a share (0.35) for a rate.
    Absolute(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub metric: Metric,
    /// A named segment or an RFM segment; None: every customer.
    pub segment: Option<String>,
    pub baseline_from: NaiveDate,
    pub baseline_to: NaiveDate,
    pub goal: Goal,
    pub deadline: NaiveDate,
    pub path: String,
    pub line: u64,
}

impl Target {
    /// The goal as a value, given the baseline's.
    pub fn goal_value(&self, baseline: f64) -> f64 {
        match self.goal {
            Goal::Relative(r) => baseline * (1.0 + r),
            Goal::Absolute(v) => v,
        }
    }
}

const FILE_KEYS: &[&str] = &["targets"];
const TARGET_KEYS: &[&str] = &[
    "id", "name", "metric", "segment", "baseline", "goal", "deadline",
];
const METRICS: &[&str] = &["ltv_12m", "repeat_rate_90d", "aov"];

/// Whether a parsed YAML file is a targets file (a mapping with `targets:`).
pub fn is_target_file(doc: &Node) -> bool {
    matches!(&doc.value, Value::Map(entries) if entries.iter().any(|(k, _)| k.as_str() == Some("targets")))
}

/// Reads a targets file; money goals are in the shop's `currency` (`12000` is ¥12,000).
/// Every problem is collected.
pub fn parse_targets(path: &str, doc: &Node, currency: &str) -> (Vec<Target>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut out: Vec<Target> = Vec::new();
    let Some(mut file) = MapReader::new(path, doc, "a targets file", &mut diags) else {
        return (out, diags);
    };
    let list = file.require("targets", doc, &mut diags);
    file.finish(FILE_KEYS, &mut diags);
    let Some(list) = list else {
        return (out, diags);
    };
    let Value::Seq(items) = &list.value else {
        diags.push(list.diag(path, "'targets' must be a list").with_hint(
            "write `targets:` and under it `- id: ...` items with metric, baseline, goal and deadline",
        ));
        return (out, diags);
    };
    for item in items {
        if let Some(t) = read_target(path, item, currency, &mut diags) {
            if out.iter().any(|o| o.id == t.id) {
                diags.push(item.diag(path, format!("target '{}' is defined twice", t.id)));
                continue;
            }
            out.push(t);
        }
    }
    (out, diags)
}

fn date(path: &str, node: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<NaiveDate> {
    let parsed = node
        .scalar_text()
        .and_then(|t| NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").ok());
    if parsed.is_none() {
        diags.push(
            node.diag(path, format!("'{key}' must be a date"))
                .with_hint("write it as YYYY-MM-DD, e.g. 2026-12-31"),
        );
    }
    parsed
}

fn percent(s: &str) -> Option<f64> {
    s.strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
        .map(|p| p / 100.0)
}

/// `+20%`, `-5%` (relative), `35%` (a rate), or a number (money in the shop's currency).
fn goal(
    path: &str,
    node: &Node,
    metric: Option<Metric>,
    currency: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Goal> {
    let text = node.scalar_text().unwrap_or_default();
    let t = text.trim();
    let parsed = if t.starts_with(['+', '-']) {
        percent(t).map(Goal::Relative)
    } else if let Some(p) = percent(t) {
        (metric == Some(Metric::RepeatRate90d) && (0.0..=1.0).contains(&p))
            .then_some(Goal::Absolute(p))
    } else {
        let scale = 10f64.powi(crate::domain::minor_digits(currency) as i32);
        t.replace(',', "")
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0 && metric.is_none_or(Metric::is_money))
            .map(|v| Goal::Absolute(v * scale))
    };
    if parsed.is_none() {
        diags.push(
            node.diag(path, format!("cannot read the goal '{t}'"))
                .with_hint("write a change from the baseline (+20%), a rate for repeat_rate_90d (35%), or an amount in the shop's currency for ltv_12m and aov (12000)"),
        );
    }
    parsed
}

fn identifier(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let s = expect_str(path, n, "id", diags)?;
    let problem = crate::diagnostic::identifier_problem(s);
    if let Some(problem) = &problem {
        diags.push(
            n.diag(path, format!("the target id {problem}"))
                .with_hint("e.g. ltv-plus-20; a title in Japanese goes in `name:`"),
        );
    }
    problem.is_none().then(|| s.to_string())
}

fn metric(path: &str, n: &Node, diags: &mut Vec<Diagnostic>) -> Option<Metric> {
    let s = expect_str(path, n, "metric", diags)?;
    let found = Metric::parse(s);
    if found.is_none() {
        let d = n.diag(path, format!("unknown metric '{s}'"));
        diags.push(match crate::diagnostic::did_you_mean(s, METRICS) {
            Some(x) => d.with_hint(format!("did you mean '{x}'?")),
            None => d.with_hint(format!("metrics: {}", METRICS.join(", "))),
        });
    }
    found
}

fn baseline(path: &str, b: &Node, diags: &mut Vec<Diagnostic>) -> Option<(NaiveDate, NaiveDate)> {
    let mut r = MapReader::new(path, b, "'baseline'", diags)?;
    let from = r
        .require("from", b, diags)
        .and_then(|n| date(path, n, "from", diags));
    let to = r
        .require("to", b, diags)
        .and_then(|n| date(path, n, "to", diags));
    r.finish(&["from", "to"], diags);
    let (from, to) = (from?, to?);
    if to < from {
        diags.push(
            b.diag(path, "the baseline ends before it starts")
                .with_hint("baseline: { from: 2025-01-01, to: 2025-12-31 }"),
        );
        return None;
    }
    Some((from, to))
}

fn read_target(
    path: &str,
    item: &Node,
    currency: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Target> {
    let mut m = MapReader::new(path, item, "a target", diags)?;
    let id = m
        .require("id", item, diags)
        .and_then(|n| identifier(path, n, diags));
    let name = m
        .get("name")
        .and_then(|n| expect_str(path, n, "name", diags))
        .map(str::to_string);
    let metric = m
        .require("metric", item, diags)
        .and_then(|n| metric(path, n, diags));
    let segment = m
        .get("segment")
        .and_then(|n| expect_str(path, n, "segment", diags))
        .map(str::to_string);
    let baseline = m
        .require("baseline", item, diags)
        .and_then(|b| baseline(path, b, diags));
    let goal = m
        .require("goal", item, diags)
        .and_then(|n| goal(path, n, metric, currency, diags));
    let deadline = m
        .require("deadline", item, diags)
        .and_then(|n| date(path, n, "deadline", diags));
    m.finish(TARGET_KEYS, diags);
    let (id, (baseline_from, baseline_to), deadline) = (id?, baseline?, deadline?);
    if deadline <= baseline_to {
        diags.push(item.diag(
            path,
            format!("target '{id}': the deadline {deadline} is not after the baseline"),
        ));
        return None;
    }
    Some(Target {
        name: name.unwrap_or_else(|| id.clone()),
        id,
        metric: metric?,
        segment,
        baseline_from,
        baseline_to,
        goal: goal?,
        deadline,
        path: path.to_string(),
        line: item.line,
    })
}

/// A metric's running value over a window of day numbers (`from..=to`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub metric: Metric,
    pub from: i64,
    pub to: i64,
    sum: f64,
    count: u64,
}

impl Measure {
    pub fn new(metric: Metric, from: i64, to: i64) -> Self {
        Self {
            metric,
            from,
            to,
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds one customer's purchases (ascending by day).
    pub fn add(&mut self, purchases: &[Purchase]) {
        let Some(first) = purchases.first() else {
            return;
        };
        let window = self.from..=self.to;
        match self.metric {
            Metric::Aov => {
                for p in purchases.iter().filter(|p| window.contains(&p.day)) {
                    self.sum += p.amount;
                    self.count += 1;
                }
            }
            _ if !window.contains(&first.day) => {}
            Metric::Ltv12m => {
                self.sum += purchases
                    .iter()
                    .take_while(|p| p.day < first.day + 365)
                    .map(|p| p.amount)
                    .sum::<f64>();
                self.count += 1;
            }
            Metric::RepeatRate90d => {
                let again = purchases
                    .iter()
                    .any(|p| p.day > first.day && p.day <= first.day + 90);
                self.sum += f64::from(u8::from(again));
                self.count += 1;
            }
        }
    }

    /// The value, or None when the window has nobody (or no order).
    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Customers (or orders, for `aov`) counted.
    pub fn counted(&self) -> u64 {
        self.count
    }
}

/// The window that measures `metric` "now" on day `today`: as long as the baseline's, ending
/// on the last day whose value is final.
pub fn now_window(metric: Metric, baseline_days: i64, today: i64) -> (i64, i64) {
    let to = today - metric.settles_after();
    (to - baseline_days + 1, to)
}

/// Days between "now" and the earlier value the trend compares with.
const TREND_DAYS: i64 = 91;

/// One target's measured values (minor units for money, shares for rates).
pub struct Measured {
    pub target: Target,
    pub baseline: Option<f64>,
    pub now: Option<f64>,
    pub earlier: Option<f64>,
    pub forecast: Option<f64>,
    pub now_from: i64,
    pub now_to: i64,
}

/// Every target measured, as of `as_of`.
pub struct Figures {
    pub as_of: i64,
    pub targets: Vec<Measured>,
}

/// The three windows of a target: baseline, now, a quarter before now.
fn measures(t: &Target, today: i64) -> [Measure; 3] {
    let (from, to) = (day_number(t.baseline_from), day_number(t.baseline_to));
    let (now_from, now_to) = now_window(t.metric, to - from + 1, today);
    [
        Measure::new(t.metric, from, to),
        Measure::new(t.metric, now_from, now_to),
        Measure::new(t.metric, now_from - TREND_DAYS, now_to - TREND_DAYS),
    ]
}

/// Every target measured as of `now` in `zone`: one pass over every customer's purchases (and
/// a look-up of segment members and predicted CLV) for all of them.
pub async fn measure_all(
    store: &crate::store::Store,
    zone: chrono_tz::Tz,
    all_targets: &[Target],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Figures> {
    let today = day_number(now.with_timezone(&zone).date_naive());
    let mut members: Vec<Option<HashSet<String>>> = Vec::new();
    for t in all_targets.iter() {
        members.push(match &t.segment {
            Some(s) => Some(store.members_of(s).await?.into_iter().collect()),
            None => None,
        });
    }
    let mut all: Vec<[Measure; 3]> = all_targets.iter().map(|t| measures(t, today)).collect();
    if !all.is_empty() {
        crate::refresh::each_customer(store, zone, &|_| {}, |id, purchases: &[Purchase]| {
            for (m, who) in all.iter_mut().zip(&members) {
                if who.as_ref().is_none_or(|w| w.contains(&id)) {
                    m.iter_mut().for_each(|x| x.add(purchases));
                }
            }
        })
        .await?;
    }
    let mut targets = Vec::new();
    for (t, [base, now_m, earlier]) in all_targets.iter().zip(all) {
        // A model that could not predict (no orders in its window) leaves no forecast, not
        // an infinite or undefined one.
        let forecast = match t.metric {
            Metric::Ltv12m => store.mean_predicted_clv(t.segment.as_deref()).await?,
            _ => None,
        }
        .filter(|f| f.is_finite());
        targets.push(Measured {
            target: t.clone(),
            baseline: base.value(),
            now: now_m.value(),
            earlier: earlier.value(),
            forecast,
            now_from: now_m.from,
            now_to: now_m.to,
        });
    }
    Ok(Figures {
        as_of: crate::clock::to_millis(now),
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        crate::yaml::parse("targets.yaml", text).unwrap()
    }

    const GOOD: &str = "targets:\n  - id: ltv-up\n    name: LTV +20% in a year\n    metric: ltv_12m\n    baseline: { from: 2025-01-01, to: 2025-12-31 }\n    goal: +20%\n    deadline: 2026-12-31\n  - id: loyal-repeat\n    metric: repeat_rate_90d\n    segment: loyal\n    baseline: { from: 2025-07-01, to: 2025-09-30 }\n    goal: 35%\n    deadline: 2026-06-30\n  - id: aov\n    metric: aov\n    baseline: { from: 2025-10-01, to: 2025-12-31 }\n    goal: 5000\n    deadline: 2026-03-31\n";

    #[test]
    fn a_targets_file_is_read_whole() {
        let d = doc(GOOD);
        assert!(is_target_file(&d));
        let (t, diags) = parse_targets("targets.yaml", &d, "JPY");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].goal, Goal::Relative(0.2));
        assert!((t[0].goal_value(10_000.0) - 12_000.0).abs() < 1e-9);
        assert_eq!(t[1].segment.as_deref(), Some("loyal"));
        assert_eq!(t[1].goal, Goal::Absolute(0.35));
        assert_eq!(t[2].goal, Goal::Absolute(5000.0));
        let (usd, _) = parse_targets("targets.yaml", &d, "USD");
        assert_eq!(
            usd[2].goal,
            Goal::Absolute(500_000.0),
            "money goals in major units"
        );
        assert_eq!(t[0].name, "LTV +20% in a year");
        assert_eq!(t[2].name, "aov");
    }

    #[test]
    fn every_problem_is_located() {
        let text = "targets:\n  - id: x\n    metric: ltv12m\n    baseline: { from: 2025-01-01, to: 2024-12-31 }\n    goal: lots\n    deadline: soon\n    colour: red\n";
        let (t, diags) = parse_targets("targets.yaml", &doc(text), "JPY");
        assert!(t.is_empty());
        let all = diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("targets.yaml:3:") && all.contains("unknown metric 'ltv12m'"),
            "{all}"
        );
        assert!(all.contains("did you mean 'ltv_12m'"), "{all}");
        assert!(all.contains("ends before it starts"), "{all}");
        assert!(all.contains("cannot read the goal 'lots'"), "{all}");
        assert!(all.contains("'deadline' must be a date"), "{all}");
        assert!(all.contains("unknown key 'colour'"), "{all}");
        let rate_as_money = "targets:\n  - id: r\n    metric: repeat_rate_90d\n    baseline: { from: 2025-01-01, to: 2025-03-31 }\n    goal: 5000\n    deadline: 2026-01-01\n";
        let (_, diags) = parse_targets("t.yaml", &doc(rate_as_money), "JPY");
        assert_eq!(diags.len(), 1, "{diags:?}");
        let not_a_list = "targets: 3\n";
        let (_, diags) = parse_targets("t.yaml", &doc(not_a_list), "JPY");
        assert!(diags[0].to_string().contains("must be a list"));
    }

    fn buys(days: &[(i64, f64)]) -> Vec<Purchase> {
        days.iter()
            .map(|&(day, amount)| Purchase { day, amount })
            .collect()
    }

    #[test]
    fn the_measures_count_by_hand() {
        let a = buys(&[(10, 1000.0), (50, 500.0), (400, 9999.0)]);
        let b = buys(&[(20, 2000.0)]);
        let late = buys(&[(200, 700.0), (250, 300.0)]);
        let mut ltv = Measure::new(Metric::Ltv12m, 0, 99);
        let mut rep = Measure::new(Metric::RepeatRate90d, 0, 99);
        let mut aov = Measure::new(Metric::Aov, 0, 99);
        for c in [&a, &b, &late] {
            ltv.add(c);
            rep.add(c);
            aov.add(c);
        }
        // a: 1000 + 500 in its first year (day 400 is past it); b: 2000. `late` starts after.
        assert_eq!(ltv.value(), Some(1750.0));
        assert_eq!(rep.value(), Some(0.5));
        assert_eq!(rep.counted(), 2);
        // Orders in the window: 1000, 500, 2000.
        assert!((aov.value().unwrap() - 3500.0 / 3.0).abs() < 1e-9);
        assert_eq!(Measure::new(Metric::Aov, 0, 1).value(), None);
        assert_eq!(now_window(Metric::Ltv12m, 365, 1000), (271, 635));
        assert_eq!(now_window(Metric::Aov, 90, 1000), (911, 1000));
    }
}
