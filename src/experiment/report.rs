//! The scenario report as data: per scenario, enrollments per arm, the repeat (conversion) rate
//! of treatment against its comparison group (the scenario's holdout, or the shop-wide control
//! group when the scenario has no holdout), the uplift with its interval and test, revenue per
//! enrolled customer and the incremental revenue, and each step's funnel. Built from counts the
//! store has already grouped; no I/O.

use super::stats::{mean_difference, Sums, TwoProportions, Uplift};
use crate::scenario::Scenario;
use crate::store::{
    ArmCounts, EnrollmentOutcome, OpenCount, RecommendedCounts, StepCounts, TouchCounts,
    TrackingCounts, VariantDecision,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub enrolled: i64,
    pub treatment: i64,
    pub held_out: i64,
    pub control: i64,
    pub messages_sent: i64,
    pub converted_treatment: i64,
    pub converted_comparison: i64,
    /// `holdout`, `control`, or None when the scenario has neither.
    pub compared_with: Option<String>,
    pub uplift: Option<Uplift>,
    /// Conversion revenue per enrolled customer (minor units), treatment and comparison.
    pub revenue_per_treated: f64,
    pub revenue_per_comparison: Option<f64>,
    /// (revenue per treated − revenue per comparison customer) × treated, and its 95%
    /// interval (Welch's, over each customer's conversion revenue).
    pub incremental_revenue: Option<f64>,
    pub incremental_revenue_low: Option<f64>,
    pub incremental_revenue_high: Option<f64>,
    /// Enrollments left out because their goal window is still open at the report's date.
    pub still_open: i64,
    /// Orders credited to the scenario's messages by last touch, and their revenue.
    pub attributed_orders: i64,
    pub attributed_revenue: i64,
    /// Whether the difference is both significant and backed by enough conversions
    /// (`MIN_CELL` in every cell): what the verdict calls an effect.
    pub conclusive: bool,
    /// One sentence: what the numbers say (in English).
    pub verdict: String,
    /// The same as the kind of answer and its figures, for the pages' languages.
    #[serde(skip)]
    pub judged: Verdict,
    pub steps: Vec<StepFunnel>,
    /// Per variant of each step that has variants, against the same comparison group.
    pub variants: Vec<VariantResult>,
    /// Steps whose winner was picked automatically.
    pub decisions: Vec<VariantDecision>,
    /// For a scenario whose mail recommends products: who bought one of them.
    pub recommended: Option<RecommendedResult>,
}

/// "Bought a recommended product within the goal window": treated customers (their mail
/// showed the products) against the comparison group (what their mail would have shown).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendedResult {
    pub treated_shown: i64,
    pub treated_bought: i64,
    pub comparison_shown: i64,
    pub comparison_bought: i64,
    /// The rates' difference with its 95% interval; None without a comparison group.
    pub uplift: Option<Uplift>,
}

/// Adds "bought a recommended product" to each scenario row that has counts for it, compared
/// with the row's own comparison group.
pub fn add_recommended(report: &mut [ScenarioResult], counts: &[RecommendedCounts]) {
    for r in report.iter_mut() {
        let arm = |name: &str| {
            counts
                .iter()
                .find(|c| c.scenario_id == r.scenario && c.arm == name)
        };
        let Some(t) = arm("treatment") else { continue };
        let c = r.compared_with.as_deref().and_then(arm);
        let uplift = c.and_then(|c| {
            TwoProportions {
                x1: t.bought as u64,
                n1: t.shown as u64,
                x2: c.bought as u64,
                n2: c.shown as u64,
            }
            .uplift()
        });
        r.recommended = Some(RecommendedResult {
            treated_shown: t.shown,
            treated_bought: t.bought,
            comparison_shown: c.map_or(0, |c| c.shown),
            comparison_bought: c.map_or(0, |c| c.bought),
            uplift,
        });
    }
}

/// One line per scenario with recommendations: the share of treated customers who bought a
/// recommended product, against the comparison group, with the difference's interval.
pub fn recommended_lines(
    report: &[ScenarioResult],
    names: &HashMap<String, String>,
) -> Vec<String> {
    let pct = |x: i64, n: i64| 100.0 * x as f64 / n.max(1) as f64;
    report
        .iter()
        .filter_map(|r| {
            let m = r.recommended.as_ref()?;
            let treated = format!(
                "{}: {:.1}% of {} treated customers bought a product their mail recommended",
                label(names, &r.scenario),
                pct(m.treated_bought, m.treated_shown),
                m.treated_shown
            );
            Some(match &m.uplift {
                Some(u) => format!(
                    "{treated}, against {:.1}% of {} held out for what their mail would have shown ({:+.1} points, 95% CI {:+.1} to {:+.1})",
                    pct(m.comparison_bought, m.comparison_shown),
                    m.comparison_shown,
                    100.0 * u.absolute,
                    100.0 * u.absolute_low,
                    100.0 * u.absolute_high
                ),
                None => format!("{treated} (no comparison group to compare with)"),
            })
        })
        .collect()
}

/// One variant of one step: the treatment enrollments assigned to it (whether or not they
/// reached the step: intent to treat), their conversions, and the uplift over the comparison
/// group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    pub step: String,
    pub variant: String,
    pub enrolled: i64,
    pub converted: i64,
    pub rate: f64,
    pub revenue_per_enrolled: f64,
    pub uplift: Option<Uplift>,
    /// Whether it is the step's decided winner.
    pub winner: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepFunnel {
    pub step: String,
    pub variant: Option<String>,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub held_out: i64,
    pub converted_after: i64,
    /// Messages opened (the pixel, or a click) and clicked by a person (bots left out); 0
    /// without tracking.
    pub opened: i64,
    pub clicked: i64,
    /// Orders credited to this step's messages by last touch, and their revenue.
    pub attributed_orders: i64,
    pub attributed_revenue: i64,
}

/// Assembles the report from the grouped counts.
pub fn build(
    arms: &[ArmCounts],
    steps: &[StepCounts],
    touches: &[TouchCounts],
    tracking: &[TrackingCounts],
) -> Vec<ScenarioResult> {
    let mut by_scenario: BTreeMap<&str, Vec<&ArmCounts>> = BTreeMap::new();
    for a in arms {
        by_scenario
            .entry(a.scenario_id.as_str())
            .or_default()
            .push(a);
    }
    by_scenario
        .into_iter()
        .map(|(id, arms)| {
            let mine: Vec<&StepCounts> = steps.iter().filter(|s| s.scenario_id == id).collect();
            let mut r = scenario_result(id, &arms, &mine);
            for f in &mut r.steps {
                let variant = f.variant.as_deref().unwrap_or("");
                if let Some(t) = touches
                    .iter()
                    .find(|t| t.scenario_id == id && t.step_id == f.step && t.variant == variant)
                {
                    f.attributed_orders = t.orders;
                    f.attributed_revenue = t.revenue;
                }
                if let Some(t) = tracking
                    .iter()
                    .find(|t| t.scenario_id == id && t.step_id == f.step && t.variant == variant)
                {
                    f.opened = t.opened;
                    f.clicked = t.clicked;
                }
            }
            r.attributed_orders = r.steps.iter().map(|s| s.attributed_orders).sum();
            r.attributed_revenue = r.steps.iter().map(|s| s.attributed_revenue).sum();
            r
        })
        .chain(control_group_row(arms))
        .collect()
}

/// The name of the shop-wide control group's row.
pub const CONTROL_ROW: &str = "(control group: all marketing scenarios)";

/// The shop-wide control group against everyone else: the enrollments of every scenario that
/// has control-group enrollments, treatment against control, pooled. None without a control
/// group.
fn control_group_row(arms: &[ArmCounts]) -> Option<ScenarioResult> {
    let with_control: Vec<&str> = arms
        .iter()
        .filter(|a| a.arm == "control")
        .map(|a| a.scenario_id.as_str())
        .collect();
    if with_control.is_empty() {
        return None;
    }
    let pooled = |arm: &str| {
        let mine = arms
            .iter()
            .filter(|a| a.arm == arm && with_control.contains(&a.scenario_id.as_str()));
        mine.fold(
            ArmCounts {
                scenario_id: CONTROL_ROW.into(),
                arm: arm.into(),
                enrolled: 0,
                converted: 0,
                revenue: 0,
                revenue_squares: 0.0,
            },
            |mut acc, a| {
                acc.enrolled += a.enrolled;
                acc.converted += a.converted;
                acc.revenue += a.revenue;
                acc.revenue_squares += a.revenue_squares;
                acc
            },
        )
    };
    let (treatment, control) = (pooled("treatment"), pooled("control"));
    Some(scenario_result(CONTROL_ROW, &[&treatment, &control], &[]))
}

/// The row of a scenario all of whose enrollments are still inside their goal window.
pub fn only_open(open: &OpenCount) -> ScenarioResult {
    let mut r = scenario_result(&open.scenario_id, &[], &[]);
    r.still_open = open.open;
    r.judged = Verdict::AllOpen { open: open.open };
    r.verdict = r.judged.english();
    r
}

fn scenario_result(id: &str, arms: &[&ArmCounts], steps: &[&StepCounts]) -> ScenarioResult {
    let arm = |name: &str| arms.iter().find(|a| a.arm == name).copied();
    let zero = ArmCounts {
        scenario_id: id.to_string(),
        arm: String::new(),
        enrolled: 0,
        converted: 0,
        revenue: 0,
        revenue_squares: 0.0,
    };
    let treatment = arm("treatment").unwrap_or(&zero);
    let (compared_with, comparison) = match (arm("holdout"), arm("control")) {
        (Some(h), _) => (Some("holdout"), Some(h)),
        (None, Some(c)) => (Some("control"), Some(c)),
        (None, None) => (None, None),
    };
    let uplift = comparison.and_then(|c| {
        TwoProportions {
            x1: treatment.converted as u64,
            n1: treatment.enrolled as u64,
            x2: c.converted as u64,
            n2: c.enrolled as u64,
        }
        .uplift()
    });
    let smallest_cell = comparison.map_or(0, |c| {
        [
            treatment.converted,
            treatment.enrolled - treatment.converted,
            c.converted,
            c.enrolled - c.converted,
        ]
        .into_iter()
        .min()
        .unwrap_or(0)
    });
    let per = |a: &ArmCounts| a.revenue as f64 / a.enrolled.max(1) as f64;
    let revenue_per_comparison = comparison.filter(|c| c.enrolled > 0).map(per);
    let incremental_revenue =
        revenue_per_comparison.map(|r| (per(treatment) - r) * treatment.enrolled as f64);
    let sums = |a: &ArmCounts| Sums {
        n: a.enrolled.max(0) as u64,
        sum: a.revenue as f64,
        squares: a.revenue_squares,
    };
    let incremental = comparison
        .and_then(|c| mean_difference(sums(treatment), sums(c)))
        .map(|(_, low, high)| {
            let n = treatment.enrolled as f64;
            (low * n, high * n)
        });
    let judged = verdict(
        compared_with,
        uplift.as_ref(),
        smallest_cell,
        treatment.enrolled,
        comparison.map_or(0, |c| c.enrolled),
    );
    ScenarioResult {
        scenario: id.to_string(),
        enrolled: arms.iter().map(|a| a.enrolled).sum(),
        treatment: treatment.enrolled,
        held_out: arm("holdout").map_or(0, |a| a.enrolled),
        control: arm("control").map_or(0, |a| a.enrolled),
        messages_sent: steps.iter().map(|s| s.sent).sum(),
        converted_treatment: treatment.converted,
        converted_comparison: comparison.map_or(0, |c| c.converted),
        compared_with: compared_with.map(str::to_string),
        conclusive: uplift.as_ref().is_some_and(|u| u.significant) && smallest_cell >= MIN_CELL,
        verdict: judged.english(),
        judged,
        uplift,
        revenue_per_treated: per(treatment),
        revenue_per_comparison,
        incremental_revenue,
        incremental_revenue_low: incremental.map(|i| i.0),
        incremental_revenue_high: incremental.map(|i| i.1),
        still_open: 0,
        attributed_orders: 0,
        attributed_revenue: 0,
        variants: Vec::new(),
        decisions: Vec::new(),
        recommended: None,
        steps: steps.iter().map(|s| funnel(s)).collect(),
    }
}

/// Adds the per-variant results of `s` to its report row: each treatment enrollment is given
/// the variant it was assigned (the hashed draw, or the winner for enrollments made after the
/// decision), and each variant is compared with the row's comparison group.
pub fn add_variants(
    r: &mut ScenarioResult,
    s: &Scenario,
    outcomes: &[EnrollmentOutcome],
    decisions: &[VariantDecision],
    comparison: Option<(u64, u64)>,
) {
    for step in s.steps.iter().filter(|st| !st.variants.is_empty()) {
        let decision = decisions
            .iter()
            .find(|d| d.scenario_id == s.id && d.step_id == step.id);
        let mut counts: BTreeMap<&str, (i64, i64, i64)> = step
            .variants
            .iter()
            .map(|v| (v.id.as_str(), (0, 0, 0)))
            .collect();
        let winner = decision.map(|d| (d.winner.as_str(), d.decided_at));
        for o in outcomes {
            if let Some(v) = step.variant_for(&s.id, &o.customer_id, o.enrolled_at, winner) {
                let c = counts.entry(v.id.as_str()).or_default();
                c.0 += 1;
                c.1 += i64::from(o.converted);
                c.2 += o.revenue;
            }
        }
        for v in &step.variants {
            let (enrolled, converted, revenue) = counts[v.id.as_str()];
            let uplift = comparison.and_then(|(x2, n2)| {
                TwoProportions {
                    x1: converted as u64,
                    n1: enrolled as u64,
                    x2,
                    n2,
                }
                .uplift()
            });
            r.variants.push(VariantResult {
                step: step.id.clone(),
                variant: v.id.clone(),
                enrolled,
                converted,
                rate: converted as f64 / enrolled.max(1) as f64,
                revenue_per_enrolled: revenue as f64 / enrolled.max(1) as f64,
                uplift,
                winner: decision.is_some_and(|d| d.winner == v.id),
            });
        }
        r.decisions.extend(decision.cloned());
    }
}

fn funnel(s: &StepCounts) -> StepFunnel {
    StepFunnel {
        step: s.step_id.clone(),
        variant: (!s.variant.is_empty()).then(|| s.variant.clone()),
        queued: s.queued,
        sent: s.sent,
        failed: s.failed,
        held_out: s.held_out,
        converted_after: s.converted_after,
        opened: 0,
        clicked: 0,
        attributed_orders: 0,
        attributed_revenue: 0,
    }
}

/// Scenario ids with their names, for people: `初回購入フォロー (first-purchase)`.
pub fn scenario_names(scenarios: &[Scenario]) -> HashMap<String, String> {
    scenarios
        .iter()
        .filter(|s| !s.name.trim().is_empty() && s.name != s.id)
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect()
}

/// A scenario as a person reads it: its name with the id beside, or the id alone.
pub fn label(names: &HashMap<String, String>, id: &str) -> String {
    match names.get(id) {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

/// The line under the table that says which enrollments were left out because their goal
/// window is still open, or None when none was.
pub fn open_line(report: &[ScenarioResult], names: &HashMap<String, String>) -> Option<String> {
    let open: Vec<String> = report
        .iter()
        .filter(|r| r.still_open > 0)
        .map(|r| {
            format!(
                "{} {}",
                label(names, &r.scenario),
                crate::domain::group_thousands(r.still_open as u64)
            )
        })
        .collect();
    let total: i64 = report.iter().map(|r| r.still_open).sum();
    (total > 0).then(|| {
        format!(
            "Not counted yet: {} enrollments whose goal window is still open ({}). They count once it closes; `--include-open` counts them now, `--as-of DATE` shows an earlier day.",
            crate::domain::group_thousands(total as u64),
            open.join(", ")
        )
    })
}

/// Fewer conversions (or non-conversions) than this in an arm and no test is trusted: the
/// classic rule that a 2×2 table's cells need about 5 for the normal approximation.
pub const MIN_CELL: i64 = 5;

/// What the numbers say, as the kind of answer and its figures; `english()` (and the pages'
/// words in each language) make the sentence a marketer can act on. `smallest_cell`: the
/// fewest conversions or non-conversions in either arm.
pub fn verdict(
    compared_with: Option<&str>,
    uplift: Option<&Uplift>,
    smallest_cell: i64,
    treated: i64,
    compared: i64,
) -> Verdict {
    let Some(group) = compared_with else {
        return Verdict::NoGroup;
    };
    let group = group.to_string();
    let Some(u) = uplift else {
        return Verdict::NobodyYet { group };
    };
    let stats = Interval {
        low: u.absolute_low * 100.0,
        high: u.absolute_high * 100.0,
        p: u.p_value,
    };
    if smallest_cell < MIN_CELL {
        return Verdict::TooEarly { treated };
    }
    if u.significant {
        return Verdict::Effect {
            works: u.absolute > 0.0,
            rate_treated: u.rate_treatment,
            rate_compared: u.rate_holdout,
            points: u.absolute.abs() * 100.0,
            group,
            stats,
        };
    }
    // A narrow interval around zero is an answer too: whatever the effect is, it is small.
    let widest = u.absolute_low.abs().max(u.absolute_high.abs());
    if widest < NARROW {
        return Verdict::NoEffect {
            widest: widest * 100.0,
            stats,
        };
    }
    // A change smaller than NARROW is not worth waiting for: below it, say what seeing a
    // change of NARROW would take (the observed 0.1 points would need millions).
    let (target, needed) = if u.absolute.abs() < NARROW && treated > 0 && compared > 0 {
        let ratio = compared as f64 / treated as f64;
        let towards = if u.absolute < 0.0 { -NARROW } else { NARROW };
        let needed = super::stats::needed_sample(
            (u.rate_holdout + towards).clamp(0.0, 1.0),
            u.rate_holdout,
            ratio,
        );
        (NARROW, needed)
    } else {
        (u.absolute, u.needed_treatment.zip(u.needed_holdout))
    };
    match needed {
        Some((t, h)) => Verdict::NotYet {
            compared,
            group,
            more: t.saturating_sub(treated.max(0) as u64)
                + h.saturating_sub(compared.max(0) as u64),
            points: target.abs() * 100.0,
            needed_treated: t,
            needed_compared: h,
            stats,
        },
        None => Verdict::NoDifference {
            group,
            treated,
            stats,
        },
    }
}

/// The 95% interval of the uplift in points, and the test's p-value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub p: f64,
}

/// The kinds of answer the scenario report gives, with the figures each one states.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Verdict {
    /// The scenario holds no one out and there is no control group.
    #[default]
    NoGroup,
    NobodyYet {
        group: String,
    },
    /// The scenario holds `share` out, but nobody has been held out yet (too few enrollments).
    HoldoutEmpty {
        share: String,
        treated: i64,
    },
    /// Fewer than `MIN_CELL` in a cell.
    TooEarly {
        treated: i64,
    },
    /// Every enrollment is still inside its goal window.
    AllOpen {
        open: i64,
    },
    /// A manual scenario: nothing is held out.
    Manual,
    /// A significant difference: more (`works`) or fewer bought again.
    Effect {
        works: bool,
        rate_treated: f64,
        rate_compared: f64,
        points: f64,
        group: String,
        stats: Interval,
    },
    /// The interval rules out a change larger than `widest` points.
    NoEffect {
        widest: f64,
        stats: Interval,
    },
    /// Not significant yet: how many more enrollments would show a change of `points`.
    NotYet {
        compared: i64,
        group: String,
        more: u64,
        points: f64,
        needed_treated: u64,
        needed_compared: u64,
        stats: Interval,
    },
    NoDifference {
        group: String,
        treated: i64,
        stats: Interval,
    },
}

impl Verdict {
    /// The key of the sentence in the pages' words (`verdict.<key>`).
    pub fn key(&self) -> &'static str {
        match self {
            Verdict::NoGroup => "no_group",
            Verdict::NobodyYet { .. } => "nobody_yet",
            Verdict::HoldoutEmpty { .. } => "holdout_empty",
            Verdict::TooEarly { .. } => "too_early",
            Verdict::AllOpen { .. } => "all_open",
            Verdict::Manual => "manual",
            Verdict::Effect { works: true, .. } => "works",
            Verdict::Effect { works: false, .. } => "hurts",
            Verdict::NoEffect { .. } => "no_effect",
            Verdict::NotYet { .. } => "not_yet",
            Verdict::NoDifference { .. } => "no_difference",
        }
    }

    /// The figures the sentence names, written out (the comparison group as it is called in
    /// the data: `holdout` or `control`; the caller may translate it).
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let n = |x: i64| crate::domain::group_thousands(x.max(0) as u64);
        let u = crate::domain::group_thousands;
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        let pts = |x: f64| format!("{x:.1}");
        let stats = |i: &Interval| {
            vec![
                ("low", format!("{:+.1}", i.low)),
                ("high", format!("{:+.1}", i.high)),
                ("p", p_text(i.p)),
            ]
        };
        let mut v = match self {
            Verdict::NoGroup | Verdict::Manual => vec![],
            Verdict::NobodyYet { group } => vec![("group", group.clone())],
            Verdict::HoldoutEmpty { share, treated } => {
                vec![("share", share.clone()), ("treated", n(*treated))]
            }
            Verdict::TooEarly { treated } => vec![("treated", n(*treated))],
            Verdict::AllOpen { open } => vec![("open", n(*open))],
            Verdict::Effect {
                rate_treated,
                rate_compared,
                points,
                group,
                stats: s,
                ..
            } => [
                vec![
                    ("rate_treated", pct(*rate_treated)),
                    ("rate_compared", pct(*rate_compared)),
                    ("points", pts(*points)),
                    ("group", group.clone()),
                ],
                stats(s),
            ]
            .concat(),
            Verdict::NoEffect { widest, stats: s } => {
                [vec![("widest", pts(*widest))], stats(s)].concat()
            }
            Verdict::NotYet {
                compared,
                group,
                more,
                points,
                needed_treated,
                needed_compared,
                stats: s,
            } => [
                vec![
                    ("compared", n(*compared)),
                    ("group", group.clone()),
                    ("more", u(*more)),
                    ("points", pts(*points)),
                    ("needed_treated", u(*needed_treated)),
                    ("needed_compared", u(*needed_compared)),
                ],
                stats(s),
            ]
            .concat(),
            Verdict::NoDifference {
                group,
                treated,
                stats: s,
            } => [
                vec![("group", group.clone()), ("treated", n(*treated))],
                stats(s),
            ]
            .concat(),
        };
        v.push(("min_cell", MIN_CELL.to_string()));
        v
    }

    /// The sentence in English, as the CLI prints it.
    pub fn english(&self) -> String {
        let mut text = ENGLISH
            .iter()
            .find(|(k, _)| *k == self.key())
            .map_or("", |(_, t)| t)
            .to_string();
        for (name, value) in self.values() {
            text = text.replace(&format!("{{{name}}}"), &value);
        }
        text
    }
}

/// The verdicts in English (the pages' `verdict.*` words in en.json say the same; a test
/// holds them together).
pub const ENGLISH: &[(&str, &str)] = &[
    ("no_group", "no comparison group: set `holdout: 10%` on the scenario to measure its effect"),
    ("nobody_yet", "nobody enrolled in treatment or {group} yet"),
    ("holdout_empty", "nobody held out yet: the scenario holds {share} out, and its {treated} enrollments so far drew no one for the holdout; wait for more"),
    ("too_early", "Too early to tell: fewer than {min_cell} customers in one group bought again (or did not), so no figure in the table is reliable yet, the p-value included ({treated} treated so far)."),
    ("all_open", "Too early to tell: all {open} enrollments are still inside their goal window, and a window counts once it has closed (`--include-open` counts them now)."),
    ("manual", "a manual scenario: every enrollment was asked for by a person, so none is held out and there is nothing to compare with"),
    ("works", "It works: {rate_treated} of the customers who got the mails bought again, against {rate_compared} of the {group}: {points} points more (95% CI {low} to {high} points, p {p})."),
    ("hurts", "It hurts: {rate_treated} of the customers who got the mails bought again, against {rate_compared} of the {group}: {points} points fewer (95% CI {low} to {high} points, p {p})."),
    ("no_effect", "No effect worth having: the interval rules out a change larger than {widest} points either way (95% CI {low} to {high} points, p {p})."),
    ("not_yet", "No clear effect yet: {compared} customers in the {group} so far; about {more} more enrollments are needed to see a change of {points} points (95% CI {low} to {high} points, p {p}; about {needed_treated} treated and {needed_compared} in the {group} in all)."),
    ("no_difference", "No difference from the {group} so far ({treated} treated; 95% CI {low} to {high} points, p {p})."),
];

/// An interval inside ±2 points rules out any effect a shop would act on.
const NARROW: f64 = 0.02;

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("= {p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(arm: &str, enrolled: i64, converted: i64, revenue: i64) -> ArmCounts {
        ArmCounts {
            scenario_id: "s".into(),
            arm: arm.into(),
            enrolled,
            converted,
            revenue,
            revenue_squares: 0.0,
        }
    }

    #[test]
    fn treatment_is_compared_with_the_holdout_and_revenue_scales_to_the_treated() {
        let r = &build(
            &[
                arm("treatment", 900, 216, 2_160_000),
                arm("holdout", 100, 18, 144_000),
            ],
            &[],
            &[],
            &[],
        )[0];
        assert_eq!((r.enrolled, r.treatment, r.held_out), (1000, 900, 100));
        assert_eq!(r.compared_with.as_deref(), Some("holdout"));
        let u = r.uplift.unwrap();
        assert!((u.absolute - 0.06).abs() < 1e-12);
        assert!((r.revenue_per_treated - 2400.0).abs() < 1e-9);
        assert_eq!(r.revenue_per_comparison, Some(1440.0));
        assert!((r.incremental_revenue.unwrap() - 960.0 * 900.0).abs() < 1e-6);
        assert!(
            r.verdict
                .starts_with("No clear effect yet: 100 customers in the holdout so far; about "),
            "{}",
            r.verdict
        );
    }

    #[test]
    fn incremental_revenue_has_welchs_interval_scaled_to_the_treated() {
        // 216 of 900 treated bought for 10,000 each; 18 of 100 held out for 8,000 each.
        let mut t = arm("treatment", 900, 216, 2_160_000);
        t.revenue_squares = 216.0 * 10_000.0 * 10_000.0;
        let mut h = arm("holdout", 100, 18, 144_000);
        h.revenue_squares = 18.0 * 8_000.0 * 8_000.0;
        let r = &build(&[t, h], &[], &[], &[])[0];
        let (low, high) = (
            r.incremental_revenue_low.unwrap(),
            r.incremental_revenue_high.unwrap(),
        );
        assert!((low - 263_972.5).abs() < 1.0, "{low}");
        assert!((high - 1_464_027.5).abs() < 1.0, "{high}");
        let none = &build(&[arm("treatment", 10, 1, 100)], &[], &[], &[])[0];
        assert_eq!(none.incremental_revenue_low, None);
    }

    #[test]
    fn without_a_holdout_the_control_group_is_the_comparison_and_without_either_it_says_so() {
        let r = &build(
            &[arm("treatment", 10, 1, 0), arm("control", 10, 1, 0)],
            &[],
            &[],
            &[],
        )[0];
        assert_eq!(r.compared_with.as_deref(), Some("control"));
        let r = &build(&[arm("treatment", 10, 1, 0)], &[], &[], &[])[0];
        assert_eq!(r.uplift, None);
        assert!(r.verdict.contains("holdout: 10%"));
    }

    #[test]
    fn the_control_group_is_also_reported_against_everyone_else_over_all_scenarios() {
        let mut arms = vec![arm("treatment", 900, 200, 0), arm("control", 50, 5, 0)];
        let mut other = vec![arm("treatment", 100, 30, 0), arm("control", 10, 2, 0)];
        for a in &mut other {
            a.scenario_id = "other".into();
        }
        arms.extend(other);
        let report = build(&arms, &[], &[], &[]);
        let all = report.iter().find(|r| r.scenario == CONTROL_ROW).unwrap();
        assert_eq!(
            (
                all.treatment,
                all.control,
                all.converted_treatment,
                all.converted_comparison
            ),
            (1000, 60, 230, 7)
        );
        assert_eq!(all.compared_with.as_deref(), Some("control"));
        assert!(build(&[arm("treatment", 9, 1, 0)], &[], &[], &[])
            .iter()
            .all(|r| r.scenario != CONTROL_ROW));
    }

    #[test]
    fn a_clear_effect_is_called_with_its_interval() {
        let r = &build(
            &[
                arm("treatment", 9000, 2160, 0),
                arm("holdout", 1000, 180, 0),
            ],
            &[],
            &[],
            &[],
        )[0];
        assert!(
            r.verdict.starts_with(
                "It works: 24.0% of the customers who got the mails bought again, against 18.0% of the holdout: 6.0 points more (95% CI +3.4 to +8.4 points, p < 0.001)"
            ),
            "{}",
            r.verdict
        );
    }
    #[test]
    fn a_narrow_interval_around_zero_says_what_it_rules_out() {
        let r = &build(
            &[
                arm("treatment", 90_000, 18_000, 0),
                arm("holdout", 10_000, 2_000, 0),
            ],
            &[],
            &[],
            &[],
        )[0];
        assert!(
            r.verdict.starts_with("No effect worth having: the interval rules out a change larger than 0.8 points either way"),
            "{}",
            r.verdict
        );
    }

    #[test]
    fn a_tiny_observed_change_is_sized_for_a_change_worth_having() {
        // 10.0% against 10.1%: detecting 0.1 points would take millions; the verdict sizes
        // a 2-point change instead.
        let r = &build(
            &[arm("treatment", 1000, 100, 0), arm("holdout", 1000, 101, 0)],
            &[],
            &[],
            &[],
        )[0];
        assert!(
            r.verdict.contains("to see a change of 2.0 points"),
            "{}",
            r.verdict
        );
        let more: String = r
            .verdict
            .split("about ")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        let more: u64 = more.parse().unwrap();
        assert!((1_000..20_000).contains(&more), "{}", r.verdict);
    }

    #[test]
    fn one_conversion_is_not_called_an_effect() {
        // 0 of 102 treated against 1 of 8 held out: the interval excludes zero, but a single
        // conversion proves nothing.
        let r = &build(
            &[arm("treatment", 102, 0, 0), arm("holdout", 8, 1, 0)],
            &[],
            &[],
            &[],
        )[0];
        assert!(r.uplift.unwrap().significant);
        assert!(r.verdict.starts_with("Too early to tell"), "{}", r.verdict);
    }
}
