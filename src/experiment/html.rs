//! The scenario report as one self-contained HTML file: the table, and two charts drawn as
//! inline SVG (no script, no font or style from the network): each scenario's uplift with its
//! 95% interval, and each scenario's cumulative conversion curves, treatment against its
//! comparison group, over the days since enrollment. Pure: data in, a string out.

use super::report::{label, ScenarioResult};
pub use crate::store::ConversionDays;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const TREATMENT: &str = "#1f6feb";
const COMPARISON: &str = "#d4731c";

/// The whole page. `title` goes into the heading (e.g. the shop's name and the period), `note`
/// under it (what a back-test's figures can and cannot say); amounts are written in
/// `currency`; scenarios are shown by their `names` with the id beside.
pub fn render(
    title: &str,
    note: Option<&str>,
    report: &[ScenarioResult],
    curves: &[ConversionDays],
    currency: &str,
    names: &HashMap<String, String>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,\"Hiragino Sans\",\"Hiragino Kaku Gothic ProN\",\"Noto Sans CJK JP\",\"Noto Sans JP\",\"Yu Gothic\",Meiryo,sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.verdict{{margin:4px 0;font-size:14px}}\
         h2{{margin-top:32px}}svg{{background:#fff}}</style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    if let Some(note) = note {
        let _ = write!(
            out,
            "<p class=\"verdict\"><strong>{}</strong></p>",
            esc(note)
        );
    }
    out.push_str(&summary_table(report, currency, names));
    if let Some(line) = super::report::open_line(report, names) {
        let _ = write!(out, "<p class=\"verdict\">{}</p>", esc(&line));
    }
    for line in super::report::recommended_lines(report, names) {
        let _ = write!(out, "<p class=\"verdict\">{}</p>", esc(&line));
    }
    out.push_str(&funnel_table(report, names));
    out.push_str("<h2>Uplift in the repeat rate, with 95% intervals</h2>");
    out.push_str(&uplift_chart(report, names, &ChartWords::english()));
    out.push_str("<h2>Cumulative conversion since enrollment</h2>");
    out.push_str(&curve_charts(report, curves, names, &ChartWords::english()));
    out.push_str("</body></html>\n");
    out
}

fn summary_table(
    report: &[ScenarioResult],
    currency: &str,
    names: &HashMap<String, String>,
) -> String {
    let mut t = String::from(
        "<table><tr><th>scenario</th><th>enrolled</th><th>treated</th><th>held out</th>\
         <th>control</th><th>sent</th><th>rate treated</th><th>rate compared</th>\
         <th>uplift (points)</th><th>95% CI</th><th>p-value</th><th>incremental revenue</th></tr>",
    );
    for r in report {
        let u = r.uplift.as_ref();
        let cell = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&label(names, &r.scenario)),
            r.enrolled,
            r.treatment,
            r.held_out,
            r.control,
            r.messages_sent,
            cell(u.map(|u| format!("{:.1}%", u.rate_treatment * 100.0))),
            cell(u.map(|u| format!("{:.1}%", u.rate_holdout * 100.0))),
            cell(u.map(|u| format!("{:+.1}", u.absolute * 100.0))),
            cell(u.map(|u| format!(
                "{:+.1} to {:+.1}",
                u.absolute_low * 100.0,
                u.absolute_high * 100.0
            ))),
            cell(u.map(|u| format!("{:.4}", u.p_value))),
            cell(r.incremental_revenue.map(|x| {
                let money = |v: f64| crate::domain::format_money(v.round() as i64, currency);
                match r.incremental_revenue_low.zip(r.incremental_revenue_high) {
                    Some((l, h)) => format!("{} ({} to {})", money(x), money(l), money(h)),
                    None => money(x),
                }
            })),
        );
    }
    t.push_str("</table>");
    for r in report {
        let _ = write!(
            t,
            "<p class=\"verdict\"><b>{}</b>: {}</p>",
            esc(&label(names, &r.scenario)),
            esc(&r.verdict)
        );
    }
    t
}

/// Each step's funnel: sent, opened, clicked (people only), converted after the message.
fn funnel_table(report: &[ScenarioResult], names: &HashMap<String, String>) -> String {
    if report.iter().all(|r| r.steps.is_empty()) {
        return String::new();
    }
    let mut t = String::from(
        "<h2>Steps: sent, opened, clicked</h2><table><tr><th>scenario</th><th>step</th>\
         <th>variant</th><th>sent</th><th>opened</th><th>clicked</th><th>click rate</th>\
         <th>converted after</th></tr>",
    );
    let rate = |n: i64, of: i64| {
        if of > 0 {
            format!("{:.1}%", n as f64 / of as f64 * 100.0)
        } else {
            "–".into()
        }
    };
    for r in report {
        for s in &r.steps {
            let _ = write!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&label(names, &r.scenario)),
                esc(&s.step),
                esc(s.variant.as_deref().unwrap_or("–")),
                s.sent,
                s.opened,
                s.clicked,
                rate(s.clicked, s.sent),
                s.converted_after,
            );
        }
    }
    t.push_str("</table>");
    t
}

/// One row per scenario with an uplift: a dot at the estimate, a bar over the interval, a
/// dashed line at zero.
pub fn uplift_chart(
    report: &[ScenarioResult],
    names: &HashMap<String, String>,
    words: &ChartWords,
) -> String {
    let rows: Vec<(String, f64, f64, f64, bool)> = report
        .iter()
        .filter_map(|r| {
            let u = r.uplift.as_ref()?;
            Some((
                label(names, &r.scenario),
                u.absolute,
                u.absolute_low,
                u.absolute_high,
                r.conclusive,
            ))
        })
        .collect();
    if rows.is_empty() {
        return format!("<p>{}</p>", esc(&words.no_groups));
    }
    let (label_w, row_h, top) = (270.0, 34.0, 24.0);
    let height = top + row_h * rows.len() as f64 + 30.0;
    let lo = rows.iter().map(|r| r.2).fold(0.0f64, f64::min);
    let hi = rows.iter().map(|r| r.3).fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.1).max(0.005);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |v: f64| label_w + (v - lo) / (hi - lo) * (WIDTH - label_w - 20.0);
    let mut s = svg_open(WIDTH, height, &words.uplift_title);
    let zero = x(0.0);
    let _ = write!(
        s,
        "<line x1=\"{zero:.1}\" y1=\"{:.1}\" x2=\"{zero:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{zero:.1}\" y=\"14\" font-size=\"11\" text-anchor=\"middle\">0</text>",
        top - 6.0,
        height - 24.0
    );
    for (i, (name, est, low, high, significant)) in rows.iter().enumerate() {
        let y = top + row_h * (i as f64 + 0.5);
        // Blue where the report calls it an effect; grey where it is too early to tell.
        let colour = if *significant { TREATMENT } else { "#777" };
        let _ = write!(
            s,
            "<text x=\"8\" y=\"{:.1}\" font-size=\"13\"><title>{}</title>{}</text>\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{:+.1} {}</text>",
            y + 4.0,
            esc(name),
            esc(&shorten(name, LABEL_UNITS)),
            x(*low),
            x(*high),
            x(*est),
            x(*est),
            y - 8.0,
            est * 100.0,
            esc(&words.points)
        );
    }
    axis_ticks(&mut s, lo, hi, &x, height - 10.0);
    s.push_str("</svg>");
    s
}

/// About how many half-width characters fit left of the uplift chart at 13 px.
const LABEL_UNITS: usize = 38;

/// `text` cut to `units` (a CJK or other wide character counts two) with an ellipsis.
fn shorten(text: &str, units: usize) -> String {
    let width = |c: char| if c.is_ascii() { 1 } else { 2 };
    if text.chars().map(width).sum::<usize>() <= units {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 1;
    for c in text.chars() {
        if used + width(c) > units {
            break;
        }
        used += width(c);
        out.push(c);
    }
    out.push('…');
    out
}

fn axis_ticks(s: &mut String, lo: f64, hi: f64, x: &impl Fn(f64) -> f64, y: f64) {
    let step = nice_step((hi - lo) * 100.0 / 6.0) / 100.0;
    let mut v = (lo / step).ceil() * step;
    while v <= hi {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">{:+.1}</text>",
            x(v),
            v * 100.0
        );
        v += step;
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The cumulative conversion chart of each scenario of `report` that has curves.
pub fn curve_charts(
    report: &[ScenarioResult],
    curves: &[ConversionDays],
    names: &HashMap<String, String>,
    words: &ChartWords,
) -> String {
    let by_scenario = group_curves(curves);
    let mut out = String::new();
    for r in report {
        let Some(arms) = by_scenario.get(r.scenario.as_str()) else {
            continue;
        };
        let comparison = r.compared_with.as_deref().unwrap_or("holdout");
        out.push_str(&curve_chart(
            &label(names, &r.scenario),
            arms,
            comparison,
            words,
        ));
    }
    out
}

fn group_curves(curves: &[ConversionDays]) -> BTreeMap<&str, Vec<&ConversionDays>> {
    let mut m: BTreeMap<&str, Vec<&ConversionDays>> = BTreeMap::new();
    for c in curves {
        m.entry(c.scenario.as_str()).or_default().push(c);
    }
    m
}

/// Cumulative share converted by day, as (day, share) steps.
pub fn cumulative(c: &ConversionDays) -> Vec<(i64, f64)> {
    let mut total = 0;
    let mut out = vec![(0, 0.0)];
    for (day, n) in &c.days {
        total += n;
        out.push((*day, total as f64 / c.enrolled.max(1) as f64));
    }
    out
}

/// The words of the charts, in the CLI's English or a page's language.
#[derive(Debug, Clone)]
pub struct ChartWords {
    pub no_groups: String,
    pub uplift_title: String,
    /// The unit after an uplift: "pts".
    pub points: String,
    /// A curve chart's title, with `{scenario}`.
    pub conversion_of: String,
    pub days_since: String,
    pub treatment: String,
    pub holdout: String,
    pub control: String,
}

impl ChartWords {
    pub fn english() -> Self {
        Self {
            no_groups: "No scenario has a holdout or control group yet.".into(),
            uplift_title: "Uplift per scenario with 95% confidence intervals".into(),
            points: "pts".into(),
            conversion_of: "Cumulative conversion of {scenario}".into(),
            days_since: "days since enrollment".into(),
            treatment: "treatment".into(),
            holdout: "holdout".into(),
            control: "control".into(),
        }
    }

    /// An arm's name in these words.
    fn arm<'a>(&'a self, arm: &'a str) -> &'a str {
        match arm {
            "treatment" => &self.treatment,
            "holdout" => &self.holdout,
            "control" => &self.control,
            other => other,
        }
    }
}

/// A curve's points, colour and arm name.
type Series<'a> = (Vec<(i64, f64)>, &'a str, &'a str);

fn curve_chart(
    scenario: &str,
    arms: &[&ConversionDays],
    comparison: &str,
    words: &ChartWords,
) -> String {
    let shown: Vec<(&ConversionDays, &str)> = arms
        .iter()
        .filter_map(|c| match c.arm.as_str() {
            "treatment" => Some((*c, TREATMENT)),
            a if a == comparison => Some((*c, COMPARISON)),
            _ => None,
        })
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let series: Vec<Series> = shown
        .iter()
        .map(|(c, colour)| (cumulative(c), *colour, words.arm(&c.arm)))
        .collect();
    let max_day = series
        .iter()
        .flat_map(|(p, _, _)| p.iter().map(|q| q.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_share = series
        .iter()
        .flat_map(|(p, _, _)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.1;
    let (left, top, w, h) = (50.0, 30.0, WIDTH - 70.0, 200.0);
    let x = |d: f64| left + d / max_day * w;
    let y = |v: f64| top + h - v / max_share * h;
    let mut s = svg_open(
        WIDTH,
        top + h + 40.0,
        &words.conversion_of.replace("{scenario}", scenario),
    );
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>\
         <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"#888\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}: {max_day:.0}</text>\
         <text x=\"4\" y=\"{:.1}\" font-size=\"10\">{:.0}%</text><text x=\"4\" y=\"{:.1}\" font-size=\"10\">0%</text>",
        esc(scenario),
        top + h,
        left + w,
        top + h,
        top + h,
        left + w,
        top + h + 28.0,
        esc(&words.days_since),
        top + 4.0,
        max_share * 100.0,
        top + h,
    );
    // Labelled day ticks, at most about eight, on a step people count in.
    let step = day_step(max_day as i64);
    let mut day = 0;
    while day as f64 <= max_day {
        let px = x(day as f64);
        let _ = write!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{day}</text>",
            top + h,
            top + h + 4.0,
            top + h + 15.0,
        );
        day += step;
    }
    for (i, (points, colour, arm)) in series.iter().enumerate() {
        let mut path = String::new();
        let mut last = 0.0;
        for (j, (day, share)) in points.iter().enumerate() {
            let (px, py) = (x(*day as f64), y(*share));
            if j == 0 {
                let _ = write!(path, "M{px:.1},{py:.1}");
            } else {
                let _ = write!(path, " H{px:.1} V{py:.1}");
            }
            last = *share;
        }
        let _ = write!(path, " H{:.1}", x(max_day));
        let _ = write!(
            s,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{} {:.1}%</text>",
            left + w - 170.0,
            top + 8.0 + 16.0 * i as f64,
            left + w - 154.0,
            top + 13.0 + 16.0 * i as f64,
            esc(arm),
            last * 100.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The spacing of day ticks that gives at most about eight over `max_day` days.
fn day_step(max_day: i64) -> i64 {
    [1, 2, 5, 7, 14, 30, 60, 90, 180, 365]
        .into_iter()
        .find(|s| max_day / s <= 8)
        .unwrap_or(730)
}

fn svg_open(w: f64, h: f64, label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    )
}

fn esc(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::build_report;
    use crate::store::{ArmCounts, StepCounts, TrackingCounts};

    fn arm(a: &str, enrolled: i64, converted: i64) -> ArmCounts {
        ArmCounts {
            scenario_id: "thanks<&>".into(),
            arm: a.into(),
            enrolled,
            converted,
            revenue: 0,
            revenue_squares: 0.0,
        }
    }

    #[test]
    fn the_page_is_self_contained_and_draws_both_charts() {
        let step = StepCounts {
            scenario_id: "thanks<&>".into(),
            step_index: 0,
            step_id: "thanks".into(),
            variant: String::new(),
            queued: 0,
            sent: 800,
            failed: 0,
            held_out: 100,
            other: 0,
            converted_after: 150,
        };
        let clicks = TrackingCounts {
            scenario_id: "thanks<&>".into(),
            step_id: "thanks".into(),
            variant: String::new(),
            opened: 400,
            clicked: 100,
        };
        let report = build_report(
            &[arm("treatment", 900, 216), arm("holdout", 100, 18)],
            &[step],
            &[],
            &[clicks],
        );
        let curves = vec![
            ConversionDays {
                scenario: "thanks<&>".into(),
                arm: "treatment".into(),
                enrolled: 900,
                days: vec![(3, 100), (10, 116)],
            },
            ConversionDays {
                scenario: "thanks<&>".into(),
                arm: "holdout".into(),
                enrolled: 100,
                days: vec![(5, 18)],
            },
        ];
        let html = render("Shop", None, &report, &curves, "JPY", &HashMap::new());
        // The curve chart's day axis is labelled (days 0 to 10: every 2 days).
        assert!(html.contains(">0</text>") && html.contains(">10</text>"));
        assert_eq!((day_step(10), day_step(60), day_step(365)), (2, 7, 60));
        // A font that has Japanese, before the generic one: no boxes for a Japanese title.
        assert!(html.contains("\"Noto Sans CJK JP\""));
        // Nothing to fetch: no script, no linked file, no URL in the styles.
        for fetch in ["<script", "src=", "href=", "url(", "@import"] {
            assert!(!html.contains(fetch), "{fetch}");
        }
        assert_eq!(
            html.matches("<svg").count(),
            2,
            "uplift chart and one curve chart"
        );
        assert!(html.contains("thanks&lt;&amp;&gt;"), "names are escaped");
        assert!(
            html.contains("treatment 24.0%") && html.contains("holdout 18.0%"),
            "final shares"
        );
        assert!(html.contains("+6.0 pts"));
        // By name with the id beside, everywhere a scenario is shown; long labels are cut in
        // the chart (the whole label stays in its tooltip).
        let long = "初回購入のお客様へのサンキューメールと使い方のご案内".to_string();
        let names = HashMap::from([("thanks<&>".to_string(), long.clone())]);
        let named = render("Shop", Some("a note"), &report, &curves, "JPY", &names);
        assert!(named.contains("<strong>a note</strong>"));
        let full = format!("{long} (thanks&lt;&amp;&gt;)");
        // Table, funnel, verdict, tooltip and curve chart title.
        assert!(named.matches(&full).count() >= 5, "{named}");
        assert!(named.contains(&format!("{}…", &long.chars().take(18).collect::<String>())));
        assert_eq!(shorten("win-back", 38), "win-back");
        assert!(
            html.contains("<td>800</td><td>400</td><td>100</td><td>12.5%</td><td>150</td>"),
            "the step's funnel with its click rate"
        );
    }

    #[test]
    fn cumulative_shares_add_up_by_day() {
        let c = ConversionDays {
            scenario: "s".into(),
            arm: "treatment".into(),
            enrolled: 10,
            days: vec![(1, 2), (4, 3)],
        };
        assert_eq!(cumulative(&c), vec![(0, 0.0), (1, 0.2), (4, 0.5)]);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(0.04), 0.05);
    }
}
