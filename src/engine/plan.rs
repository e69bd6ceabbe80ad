//! The trigger and goal state machine for new orders, as a pure function: given the orders
//! seen in one batch (oldest first), the customers' existing enrollments and a way to evaluate
//! conditions, it decides which enrollments start and which reach their goal.

use crate::scenario::{Reentry, Scenario};
use crate::store::{EnrollmentLite, EventRow, GoalHit, NewEnrollment, OrderEvent, SegmentEvent};
use std::collections::HashMap;

/// Evaluates the parts of a scenario that need the message context.
pub trait Judge {
    /// Whether the order's customer is in the scenario's audience (true without an audience).
    fn audience(&mut self, s: &Scenario, order: &OrderEvent) -> bool;
    /// Whether the order satisfies the scenario's goal condition (true without one).
    fn goal(&mut self, s: &Scenario, order: &OrderEvent) -> bool;
    /// When the first step of a new enrollment triggered by `order` is due (unix ms).
    fn first_due(&mut self, s: &Scenario, order: &OrderEvent) -> i64;
    /// The variables a new enrollment starts with (JSON); none by default.
    fn vars(&mut self, _s: &Scenario, _order: &OrderEvent) -> String {
        "{}".into()
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct OrderPlan {
    pub enrollments: Vec<NewEnrollment>,
    pub goals: Vec<GoalHit>,
}

impl OrderPlan {
    /// Goals the plan reaches: by stored enrollments, and by new ones at once.
    pub fn goals_reached(&self) -> u64 {
        let at_once = self
            .enrollments
            .iter()
            .filter(|e| e.goal_reached_at.is_some());
        (self.goals.len() + at_once.count()) as u64
    }
}

/// One enrollment as the planner tracks it: stored (`id`) or planned in this batch (`new`).
struct Tracked {
    id: Option<i64>,
    new: Option<usize>,
    scenario_id: String,
    order_id: Option<String>,
    state: String,
    triggered_at: i64,
    goal_deadline: Option<i64>,
    goal_reached: bool,
}

/// Plans what a batch of new orders does. `lookback_start`: orders placed before it reach
/// goals but start nothing (a history import must not mail every past customer).
pub fn plan_orders(
    scenarios: &[Scenario],
    orders: &[OrderEvent],
    existing: Vec<EnrollmentLite>,
    now: i64,
    lookback_start: i64,
    judge: &mut impl Judge,
) -> OrderPlan {
    // Each customer's enrollments, stored and planned: lookups stay O(1) per order.
    let mut tracked = by_customer(existing);
    let mut plan = OrderPlan::default();
    for order in orders {
        let mine = tracked.entry(order.customer_id.clone()).or_default();
        reach_goals(scenarios, order, mine, &mut plan, now, judge);
        if order.placed_at < lookback_start {
            continue;
        }
        for s in scenarios
            .iter()
            .filter(|s| s.enabled && s.trigger.fires_on_order(order.nth))
        {
            if !may_enter(s, order.placed_at, mine) || !judge.audience(s, order) {
                continue;
            }
            let first_due = judge.first_due(s, order);
            let mut e = new_enrollment(
                s,
                &order.customer_id,
                &order.id,
                Some(&order.id),
                order.placed_at,
                now,
                first_due,
            );
            e.vars = judge.vars(s, order);
            mine.push(planned(&e, Some(plan.enrollments.len())));
            plan.enrollments.push(e);
        }
    }
    plan
}

/// A trigger that fired without an order (a segment change, a predicted next order): which
/// scenario, for whom, when, and the key that makes it fire once.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired<'a> {
    pub scenario: &'a Scenario,
    pub customer_id: String,
    pub at: i64,
    pub key: String,
    /// What the enrollment keeps for its templates (`{"event": …}`); None: nothing.
    pub vars: Option<String>,
}

/// Plans which enrollments a list of fired triggers (oldest first) starts. `admit` says
/// whether the customer is in the scenario's audience and, if so, when the first step is
/// due. Triggers before `lookback_start` start nothing.
pub fn plan_fired(
    fired: &[Fired],
    existing: Vec<EnrollmentLite>,
    now: i64,
    lookback_start: i64,
    mut admit: impl FnMut(&Fired) -> Option<i64>,
) -> Vec<NewEnrollment> {
    let mut tracked = by_customer(existing);
    let mut out = Vec::new();
    for f in fired.iter().filter(|f| f.at >= lookback_start) {
        let s = f.scenario;
        let mine = tracked.entry(f.customer_id.clone()).or_default();
        if !s.enabled || !may_enter(s, f.at, mine) {
            continue;
        }
        let Some(first_due) = admit(f) else {
            continue;
        };
        let mut e = new_enrollment(s, &f.customer_id, &f.key, None, f.at, now, first_due);
        if let Some(v) = &f.vars {
            e.vars = v.clone();
        }
        mine.push(planned(&e, None));
        out.push(e);
    }
    out
}

/// The triggers a page of segment membership changes fires: `segment_entered` /
/// `segment_exited` scenarios of that segment, keyed by the event.
pub fn segment_triggers<'a>(scenarios: &'a [Scenario], events: &[SegmentEvent]) -> Vec<Fired<'a>> {
    let mut out = Vec::new();
    for e in events {
        for s in scenarios.iter().filter(|s| {
            s.trigger
                .segment()
                .is_some_and(|(r, entered)| r.name == e.segment && entered == e.entered)
        }) {
            out.push(Fired {
                scenario: s,
                customer_id: e.customer_id.clone(),
                at: e.at,
                key: format!("segment:{}", e.seq),
                vars: None,
            });
        }
    }
    out
}

/// The triggers a page of custom events fires: the `event` scenarios of each event's name,
/// keyed by the event's id; the enrollment keeps the event (`event` in templates).
pub fn event_triggers<'a>(scenarios: &'a [Scenario], events: &[EventRow]) -> Vec<Fired<'a>> {
    let mut out = Vec::new();
    for e in events {
        let matching = scenarios
            .iter()
            .filter(|s| s.trigger.event() == Some(e.name.as_str()));
        for s in matching {
            let event = serde_json::json!({ "event": event_view(e) });
            out.push(Fired {
                scenario: s,
                customer_id: e.customer_id.clone(),
                at: e.at,
                key: format!("event:{}", e.id),
                vars: Some(event.to_string()),
            });
        }
    }
    out
}

/// An event as templates see it: `id`, `name`, `at` (UTC, whole seconds, as `now`) and
/// `properties`.
pub fn event_view(e: &EventRow) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "name": e.name,
        "at": crate::clock::from_millis(e.at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "properties": serde_json::from_str::<serde_json::Value>(&e.properties).unwrap_or_default(),
    })
}

fn from_stored(e: EnrollmentLite) -> Tracked {
    Tracked {
        id: Some(e.id),
        new: None,
        scenario_id: e.scenario_id,
        order_id: e.order_id,
        state: e.state,
        triggered_at: e.triggered_at,
        goal_deadline: e.goal_deadline,
        goal_reached: e.goal_reached_at.is_some(),
    }
}

/// Whether a customer may start a new pass through `s` with a trigger at `at`.
fn may_enter(s: &Scenario, at: i64, mine: &[Tracked]) -> bool {
    let mut previous = mine.iter().filter(|t| t.scenario_id == s.id);
    match &s.reentry {
        Reentry::Always => true,
        Reentry::Never => previous.next().is_none(),
        Reentry::After(d) => previous.all(|t| t.triggered_at + d.num_milliseconds() <= at),
    }
}

/// The trigger key that makes the unique constraint enforce the re-entry rule.
pub fn trigger_key(s: &Scenario, order_or_key: &str) -> String {
    match s.reentry {
        Reentry::Never => "once".into(),
        _ => order_or_key.to_string(),
    }
}

/// Each customer's stored enrollments, as the planner tracks them.
fn by_customer(existing: Vec<EnrollmentLite>) -> HashMap<String, Vec<Tracked>> {
    let mut tracked: HashMap<String, Vec<Tracked>> = HashMap::new();
    for e in existing {
        tracked
            .entry(e.customer_id.clone())
            .or_default()
            .push(from_stored(e));
    }
    tracked
}

/// A new enrollment in `s` for a trigger at `at` (`key`: the order id, or the event's key).
fn new_enrollment(
    s: &Scenario,
    customer_id: &str,
    key: &str,
    order_id: Option<&str>,
    at: i64,
    now: i64,
    first_due: i64,
) -> NewEnrollment {
    NewEnrollment {
        scenario_id: s.id.clone(),
        customer_id: customer_id.to_string(),
        trigger_key: trigger_key(s, key),
        order_id: order_id.map(str::to_string),
        vars: "{}".into(),
        state: "active".into(),
        next_step: 0,
        next_step_id: s.steps.first().map(|st| st.id.clone()),
        next_due_at: Some(first_due),
        triggered_at: at,
        enrolled_at: now,
        goal_deadline: goal_deadline(s, at),
        goal_reached_at: None,
        goal_order_id: None,
        goal_revenue: None,
        ended_at: None,
        arm: s.arm_of(customer_id).as_str(),
    }
}

/// A planned enrollment as the planner tracks it; `new`: its index in the plan, if goals
/// reached later in the same batch must update it.
fn planned(e: &NewEnrollment, new: Option<usize>) -> Tracked {
    Tracked {
        id: None,
        new,
        scenario_id: e.scenario_id.clone(),
        order_id: e.order_id.clone(),
        state: e.state.clone(),
        triggered_at: e.triggered_at,
        goal_deadline: e.goal_deadline,
        goal_reached: false,
    }
}

/// The end of the goal window for a trigger at `triggered_at`, if the goal has one.
pub fn goal_deadline(s: &Scenario, triggered_at: i64) -> Option<i64> {
    s.goal
        .as_ref()?
        .within
        .map(|w| triggered_at + w.num_milliseconds())
}

fn reach_goals(
    scenarios: &[Scenario],
    order: &OrderEvent,
    mine: &mut [Tracked],
    plan: &mut OrderPlan,
    now: i64,
    judge: &mut impl Judge,
) {
    for t in mine.iter_mut().filter(|t| !t.goal_reached) {
        let Some(s) = scenarios.iter().find(|s| s.id == t.scenario_id) else {
            continue;
        };
        let in_window = order.placed_at >= t.triggered_at
            && t.goal_deadline.is_none_or(|d| order.placed_at <= d);
        let counts = matches!(t.state.as_str(), "active" | "completed")
            && s.goal.is_some()
            && t.order_id.as_deref() != Some(order.id.as_str())
            && in_window;
        if !counts || !judge.goal(s, order) {
            continue;
        }
        t.goal_reached = true;
        match (t.id, t.new) {
            (Some(id), _) => plan.goals.push(GoalHit {
                enrollment_id: id,
                order_id: order.id.clone(),
                placed_at: order.placed_at,
                revenue: order.total,
            }),
            (None, Some(i)) => {
                let e = &mut plan.enrollments[i];
                e.goal_reached_at = Some(order.placed_at);
                e.goal_order_id = Some(order.id.clone());
                e.goal_revenue = Some(order.total);
                if e.state == "active" {
                    e.state = "goal".into();
                    e.next_due_at = None;
                    e.ended_at = Some(now);
                }
            }
            (None, None) => {}
        }
        if t.state == "active" {
            t.state = "goal".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_scenario;

    struct Yes;
    impl Judge for Yes {
        fn audience(&mut self, _: &Scenario, o: &OrderEvent) -> bool {
            o.timezone.as_deref() == Some("big")
        }
        fn goal(&mut self, _: &Scenario, _: &OrderEvent) -> bool {
            true
        }
        fn first_due(&mut self, _: &Scenario, o: &OrderEvent) -> i64 {
            o.placed_at + 100
        }
    }

    fn scenario(extra: &str) -> Scenario {
        let text = format!("id: s\ntrigger: first_order\n{extra}\nsteps:\n  - id: a\n    send: {{ template: t, subject: x }}\n");
        parse_scenario("s.yaml", &text).unwrap()
    }

    fn order(id: &str, customer: &str, at: i64, nth: i64, total: i64) -> OrderEvent {
        // The test judge reads the audience off the zone field: "big" orders are in it.
        OrderEvent {
            seq: 0,
            id: id.into(),
            customer_id: customer.into(),
            placed_at: at,
            total,
            nth,
            timezone: Some(if total >= 1000 { "big" } else { "small" }.into()),
        }
    }

    #[test]
    fn a_first_order_in_the_audience_enrolls_and_others_do_not() {
        let s = [scenario("")];
        let orders = [
            order("o1", "c1", 1000, 1, 5000),
            order("o2", "c2", 1000, 1, 500),
            order("o3", "c3", 1000, 2, 5000),
        ];
        let plan = plan_orders(&s, &orders, vec![], 2000, 0, &mut Yes);
        assert_eq!(plan.enrollments.len(), 1);
        let e = &plan.enrollments[0];
        assert_eq!(
            (
                e.customer_id.as_str(),
                e.trigger_key.as_str(),
                e.next_due_at
            ),
            ("c1", "once", Some(1100))
        );
    }

    #[test]
    fn a_repeat_order_in_the_same_batch_reaches_the_goal() {
        let s = [scenario("goal: { event: order_placed, within: 30d }")];
        let orders = [
            order("o1", "c1", 1000, 1, 5000),
            order("o2", "c1", 5000, 2, 100),
        ];
        let plan = plan_orders(&s, &orders, vec![], 9000, 0, &mut Yes);
        let e = &plan.enrollments[0];
        assert_eq!(
            (e.state.as_str(), e.goal_order_id.as_deref(), e.next_due_at),
            ("goal", Some("o2"), None)
        );
    }

    #[test]
    fn an_order_after_the_goal_window_does_not_count() {
        let s = [scenario("goal: { event: order_placed, within: 1d }")];
        let day = 86_400_000;
        let orders = [
            order("o1", "c1", 0, 1, 5000),
            order("o2", "c1", 2 * day, 2, 100),
        ];
        let plan = plan_orders(&s, &orders, vec![], 3 * day, 0, &mut Yes);
        assert_eq!(plan.enrollments[0].state, "active");
    }

    #[test]
    fn a_stored_enrollment_reaches_its_goal_once() {
        let s = [scenario("goal: { event: order_placed }")];
        let stored = EnrollmentLite {
            id: 7,
            scenario_id: "s".into(),
            customer_id: "c1".into(),
            order_id: Some("o1".into()),
            state: "active".into(),
            triggered_at: 0,
            goal_deadline: None,
            goal_reached_at: None,
        };
        let orders = [order("o2", "c1", 10, 2, 100), order("o3", "c1", 20, 3, 100)];
        let plan = plan_orders(&s, &orders, vec![stored], 30, 0, &mut Yes);
        assert_eq!(
            plan.goals,
            vec![GoalHit {
                enrollment_id: 7,
                order_id: "o2".into(),
                placed_at: 10,
                revenue: 100
            }]
        );
    }

    #[test]
    fn reentry_never_and_after_a_duration() {
        let never = scenario("");
        let mut again = scenario("reentry: 10d");
        again.trigger = crate::scenario::Trigger::OrderPlaced;
        let day = 86_400_000;
        let orders = [
            order("o1", "c1", 0, 1, 5000),
            order("o2", "c1", 5 * day, 2, 5000),
            order("o3", "c1", 11 * day, 3, 5000),
        ];
        let plan = plan_orders(&[again], &orders, vec![], 12 * day, 0, &mut Yes);
        let keys: Vec<&str> = plan
            .enrollments
            .iter()
            .map(|e| e.trigger_key.as_str())
            .collect();
        assert_eq!(keys, ["o1", "o3"]);
        let plan = plan_orders(&[never], &orders, vec![], 12 * day, 0, &mut Yes);
        assert_eq!(plan.enrollments.len(), 1);
    }

    #[test]
    fn a_disabled_scenario_enrolls_nobody() {
        let mut s = scenario("");
        s.enabled = false;
        let plan = plan_orders(
            &[s],
            &[order("o1", "c1", 10, 1, 5000)],
            vec![],
            100,
            0,
            &mut Yes,
        );
        assert!(plan.enrollments.is_empty());
    }

    #[test]
    fn orders_older_than_the_lookback_start_nothing() {
        let s = [scenario("")];
        let plan = plan_orders(
            &s,
            &[order("o1", "c1", 10, 1, 5000)],
            vec![],
            100,
            50,
            &mut Yes,
        );
        assert!(plan.enrollments.is_empty());
    }

    fn plan_segment_events(
        scenarios: &[Scenario],
        events: &[SegmentEvent],
        existing: Vec<EnrollmentLite>,
        now: i64,
        lookback_start: i64,
        mut admit: impl FnMut(&Scenario, &Fired) -> Option<i64>,
    ) -> Vec<NewEnrollment> {
        let fired = segment_triggers(scenarios, events);
        plan_fired(&fired, existing, now, lookback_start, |f| {
            admit(f.scenario, f)
        })
    }

    fn segment_scenario(trigger: &str, reentry: &str) -> Scenario {
        let text = format!("id: w\ntrigger: {{ {trigger}: at-risk }}\nreentry: {reentry}\nsteps:\n  - id: a\n    send: {{ template: t, subject: x }}\n");
        parse_scenario("w.yaml", &text).unwrap()
    }

    fn event(seq: i64, customer: &str, segment: &str, entered: bool, at: i64) -> SegmentEvent {
        SegmentEvent {
            seq,
            segment: segment.into(),
            customer_id: customer.into(),
            entered,
            at,
        }
    }

    const DAY: i64 = 86_400_000;

    fn planned(s: &Scenario, events: &[SegmentEvent]) -> Vec<(String, String)> {
        plan_segment_events(std::slice::from_ref(s), events, vec![], 0, 0, |_, e| {
            Some(e.at + 1)
        })
        .into_iter()
        .map(|e| (e.customer_id, e.trigger_key))
        .collect()
    }

    #[test]
    fn segment_entered_fires_on_entering_that_segment_only() {
        let s = segment_scenario("segment_entered", "always");
        let events = [
            event(1, "A", "at-risk", true, DAY),
            event(2, "B", "at-risk", false, DAY),
            event(3, "C", "lost", true, DAY),
        ];
        assert_eq!(planned(&s, &events), vec![("A".into(), "segment:1".into())]);
        let s = segment_scenario("segment_exited", "always");
        assert_eq!(planned(&s, &events), vec![("B".into(), "segment:2".into())]);
    }

    #[test]
    fn re_entering_a_segment_fires_again_only_if_reentry_allows() {
        let back_after = |days: i64| {
            [
                event(1, "A", "at-risk", true, DAY),
                event(2, "A", "at-risk", false, 2 * DAY),
                event(3, "A", "at-risk", true, (1 + days) * DAY),
            ]
        };
        assert_eq!(
            planned(
                &segment_scenario("segment_entered", "never"),
                &back_after(40)
            )
            .len(),
            1
        );
        assert_eq!(
            planned(
                &segment_scenario("segment_entered", "always"),
                &back_after(5)
            )
            .len(),
            2
        );
        assert_eq!(
            planned(&segment_scenario("segment_entered", "30d"), &back_after(10)).len(),
            1
        );
        assert_eq!(
            planned(&segment_scenario("segment_entered", "30d"), &back_after(40)).len(),
            2
        );
    }

    #[test]
    fn segment_events_respect_the_audience_and_the_lookback() {
        let s = segment_scenario("segment_entered", "always");
        let events = [
            event(1, "A", "at-risk", true, DAY),
            event(2, "B", "at-risk", true, 5 * DAY),
        ];
        let only_b =
            plan_segment_events(std::slice::from_ref(&s), &events, vec![], 0, 0, |_, e| {
                (e.customer_id == "B").then_some(e.at)
            });
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].next_due_at, Some(5 * DAY));
        let recent = plan_segment_events(
            std::slice::from_ref(&s),
            &events,
            vec![],
            0,
            3 * DAY,
            |_, e| Some(e.at),
        );
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].customer_id, "B");
    }
}
