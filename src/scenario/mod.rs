//! Scenarios as validated data: what triggers an enrollment, who is in the audience, when a
//! customer may enter again, the goal on which they leave, and the ordered steps that send.
//! `parse` turns located YAML into these types; `check` cross-checks them against templates.

mod check;
mod check_items;
pub mod edits;
mod parse;

pub use check::{check_all, scenario_files, CheckReport};
pub use parse::parse_scenario;

use chrono::{Duration, NaiveTime};

/// An expression (minijinja syntax) with the place it was written, for located errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub source: String,
    pub line: u64,
    pub col: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Every order.
    OrderPlaced,
    /// A customer's first order.
    FirstOrder,
    /// A customer's N-th order (1-based).
    NthOrder(u32),
    /// Started by a person: `rebuy trigger`.
    Manual,
    /// A customer joined the named segment (a change found by a segment evaluation).
    SegmentEntered(SegmentRef),
    /// A customer left the named segment.
    SegmentExited(SegmentRef),
    /// The customer's predicted next order (`expected_next_order`, from the BG/NBD model)
    /// shifted by this much: `-3d` fires three days before it.
    ExpectedNextOrder(Duration),
    /// An order, timed from when its items typically run out: the shop's median interval
    /// between repeat purchases of the same SKU, shifted by this much (`-3d`).
    Replenish(Duration),
    /// An order, timed from when customers typically place their next order with the product
    /// most bought next after one of its items (learnt from the shop's orders), shifted by
    /// this much (`-3d`).
    NextPurchaseDue(Duration),
    /// A custom event of this name (`cart_added`), posted to `/v1/events` or imported.
    Event(String),
}

/// A segment named in a scenario, with where it was written (for `rebuy check`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRef {
    pub name: String,
    pub line: u64,
    pub col: u64,
}

impl Trigger {
    pub fn name(&self) -> String {
        match self {
            Trigger::OrderPlaced => "order_placed".into(),
            Trigger::FirstOrder => "first_order".into(),
            Trigger::NthOrder(n) => format!("nth_order: {n}"),
            Trigger::Manual => "manual".into(),
            Trigger::SegmentEntered(r) => format!("segment_entered: {}", r.name),
            Trigger::SegmentExited(r) => format!("segment_exited: {}", r.name),
            Trigger::ExpectedNextOrder(d) => format!("expected_next_order: {}", signed(*d)),
            Trigger::Replenish(d) => format!("replenish: {}", signed(*d)),
            Trigger::NextPurchaseDue(d) => format!("next_purchase_due: {}", signed(*d)),
            Trigger::Event(name) => format!("event: {name}"),
        }
    }

    /// Whether an enrollment it starts has a triggering order (`order` in templates).
    pub fn has_order(&self) -> bool {
        !matches!(
            self,
            Trigger::SegmentEntered(_)
                | Trigger::SegmentExited(_)
                | Trigger::ExpectedNextOrder(_)
                | Trigger::Event(_)
        )
    }

    /// The segment whose change fires this trigger, and whether it fires on entering.
    pub fn segment(&self) -> Option<(&SegmentRef, bool)> {
        match self {
            Trigger::SegmentEntered(r) => Some((r, true)),
            Trigger::SegmentExited(r) => Some((r, false)),
            _ => None,
        }
    }

    /// The custom event that fires this trigger, if it is one.
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::Event(name) => Some(name),
            _ => None,
        }
    }

    /// Whether an order that is its customer's `nth` fires this trigger.
    pub fn fires_on_order(&self, nth: i64) -> bool {
        match self {
            Trigger::OrderPlaced => true,
            Trigger::FirstOrder => nth == 1,
            Trigger::Replenish(_) | Trigger::NextPurchaseDue(_) => true,
            Trigger::NthOrder(n) => nth == i64::from(*n),
            Trigger::Manual
            | Trigger::SegmentEntered(_)
            | Trigger::SegmentExited(_)
            | Trigger::ExpectedNextOrder(_)
            | Trigger::Event(_) => false,
        }
    }
}

/// A signed duration as written: `-3d`, `2d`.
fn signed(d: Duration) -> String {
    let sign = if d < Duration::zero() { "-" } else { "" };
    let abs = d.abs();
    if abs.num_seconds() % 86_400 == 0 {
        format!("{sign}{}d", abs.num_days())
    } else {
        format!("{sign}{}h", abs.num_hours())
    }
}

/// A variable a manual scenario declares.
#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    pub name: String,
    /// `trigger` and `preview` refuse to go without it (default true).
    pub required: bool,
    /// A sample value, shown in messages and used by `check` to render.
    pub example: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reentry {
    /// A customer enters this scenario at most once.
    Never,
    /// Every trigger starts a new enrollment.
    Always,
    /// A new enrollment may start this long after the previous one started.
    After(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// How long after the trigger the goal counts; `None` for as long as the enrollment lasts.
    pub within: Option<Duration>,
    /// An optional condition on the goal order (`order.total >= 3000`).
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    /// Template base name: `templates/<name>.html` and `templates/<name>.txt`.
    pub template: String,
    pub template_line: u64,
    pub template_col: u64,
    /// The subject, itself a template.
    pub subject: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub wait: Duration,
    pub at: Option<NaiveTime>,
    /// How late this step may still be sent (`expires: 3d`); the scenario's, else the
    /// config's, when unset.
    pub expires: Option<Duration>,
    pub condition: Option<Expr>,
    pub send: Send,
    /// Weighted A/B variants; empty for a plain step. Each has its own send and wait (the
    /// step's, unless the variant sets them).
    pub variants: Vec<Variant>,
    /// Give new enrollments the winning variant once one has won.
    pub auto_winner: Option<AutoWinner>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub id: String,
    pub weight: f64,
    pub wait: Duration,
    pub send: Send,
}

/// When a step picks its winner: every variant has at least `min_sample` decided messages
/// (whose goal window is over), and the best one beats each other one at `confidence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoWinner {
    pub min_sample: u64,
    pub confidence: f64,
}

impl Step {
    /// Every send of the step with the key its subject is compiled under: the step's own
    /// (`step-id`), then each variant's (`step-id#variant-id`).
    pub fn sends(&self) -> Vec<(String, &Send)> {
        let mut out = vec![(self.id.clone(), &self.send)];
        for v in &self.variants {
            out.push((variant_key(&self.id, &v.id), &v.send));
        }
        out
    }

    /// The variant `customer` gets, if the step has variants: the decided winner for
    /// enrollments made at or after the decision, else the hashed draw.
    pub fn variant_for(
        &self,
        scenario: &str,
        customer: &str,
        enrolled_at: i64,
        decision: Option<(&str, i64)>,
    ) -> Option<&Variant> {
        if let Some((winner, _)) = decision.filter(|d| enrolled_at >= d.1) {
            if let Some(v) = self.variants.iter().find(|v| v.id == winner) {
                return Some(v);
            }
        }
        let weights: Vec<f64> = self.variants.iter().map(|v| v.weight).collect();
        crate::experiment::variant(scenario, &self.id, customer, &weights)
            .map(|i| &self.variants[i])
    }

    /// The wait before this step for `customer` (their variant's, if it sets one).
    pub fn wait_for(&self, variant: Option<&Variant>) -> Duration {
        variant.map_or(self.wait, |v| v.wait)
    }
}

/// The key a variant's subject is compiled under.
pub fn variant_key(step: &str, variant: &str) -> String {
    format!("{step}#{variant}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub id: String,
    pub name: String,
    /// The file the scenario came from, for messages.
    pub path: String,
    pub enabled: bool,
    pub trigger: Trigger,
    /// A condition the customer must meet when the trigger fires.
    pub audience: Option<Expr>,
    /// A segment the customer must be a member of when the trigger fires
    /// (`audience: { segment: NAME }`).
    pub audience_segment: Option<SegmentRef>,
    pub reentry: Reentry,
    pub goal: Option<Goal>,
    pub transactional: bool,
    /// What a step does when the marketing frequency cap is reached: wait for a free slot
    /// (`when_capped: wait`, the default) or skip the message (`skip`).
    pub skip_when_capped: bool,
    /// The share of enrollments held out (`holdout: 10%`): tracked, sent nothing.
    pub holdout: f64,
    /// The shop-wide control group's share, set from the configuration when the engine loads
    /// a marketing scenario (0 for transactional ones).
    pub control_group: f64,
    /// The lateness limit of its steps that set none (`expires: 3d`); unset: the config's.
    pub expires: Option<Duration>,
    /// The variables a manual scenario takes (`rebuy trigger --var name=value`).
    pub vars: Vec<VarDecl>,
    pub steps: Vec<Step>,
}

/// The most characters a manual scenario's variable may hold (a case id, a note).
pub const MAX_VAR: usize = 1_000;

impl Scenario {
    /// Refuses variables a manual scenario does not declare, required ones not given, and
    /// values that are not one piece of text or a number of at most `MAX_VAR` characters,
    /// each by name.
    pub fn check_vars(
        &self,
        given: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let names: Vec<&str> = self.vars.iter().map(|v| v.name.as_str()).collect();
        let mut problems = Vec::new();
        for key in given.keys() {
            if !names.contains(&key.as_str()) {
                let hint = match crate::diagnostic::did_you_mean(key, &names) {
                    Some(m) => format!(" (did you mean '{m}'?)"),
                    None => String::new(),
                };
                problems.push(format!("unknown variable '{key}'{hint}"));
            }
        }
        // A value is text or a number, as a person types it: a list, an object or true would
        // be printed as its JSON in the mail.
        for (key, x) in given {
            let problem = match x {
                serde_json::Value::String(s) if s.chars().count() > MAX_VAR => Some(format!(
                    "variable '{key}' is {} characters long; at most {MAX_VAR}",
                    s.chars().count()
                )),
                serde_json::Value::String(s) if s.contains('\0') => {
                    Some(format!("variable '{key}' contains a NUL character"))
                }
                serde_json::Value::Array(_)
                | serde_json::Value::Object(_)
                | serde_json::Value::Bool(_) => Some(format!(
                    "variable '{key}' must be text or a number, found {x}"
                )),
                _ => None,
            };
            problems.extend(problem);
        }
        // A required variable given as nothing, "" or blanks would be a half-filled mail.
        let blank = |x: &serde_json::Value| match x {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.trim().is_empty(),
            _ => false,
        };
        for v in self.vars.iter().filter(|v| v.required) {
            let example = v.example.as_deref().unwrap_or("…");
            match given.get(&v.name) {
                None => problems.push(format!(
                    "missing variable '{}' (--var {}={example})",
                    v.name, v.name
                )),
                Some(x) if blank(x) => problems.push(format!(
                    "variable '{}' is empty; it is required (--var {}={example})",
                    v.name, v.name
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let declared = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        Err(format!(
            "scenario '{}': {}; it takes: {declared}",
            self.id,
            problems.join("; ")
        ))
    }

    /// How late `step` may still be sent: its own limit, else the scenario's, else `default`.
    pub fn expiry_of(&self, step: &Step, default: Duration) -> Duration {
        step.expires.or(self.expires).unwrap_or(default)
    }

    /// Whether a customer in `segments` (their segment names) is in the audience's segment,
    /// if it names one.
    pub fn in_audience_segment(&self, segments: &[String]) -> bool {
        self.audience_segment
            .as_ref()
            .is_none_or(|r| segments.contains(&r.name))
    }

    /// The arm a customer enrolled by an automatic trigger gets (manual enrollments, asked
    /// for by a person, are always treatment).
    pub fn arm_of(&self, customer: &str) -> crate::experiment::Arm {
        if self.trigger == Trigger::Manual {
            return crate::experiment::Arm::Treatment;
        }
        crate::experiment::arm(
            &self.id,
            customer,
            self.holdout,
            self.control_group,
            !self.transactional,
        )
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}
