//! The engine: one `tick(now)` enrolls customers whose trigger fired, lets customers leave on
//! their goal, advances enrollments whose next step is due (conditions, rendering) and puts the
//! resulting messages in the outbox. Time is always given, never read.

mod plan;
mod replay;
mod rerender;
mod schedule;

pub use plan::{
    event_triggers, plan_fired, plan_orders, segment_triggers, trigger_key, Fired, Judge, OrderPlan,
};
pub use replay::{Replay, REPLAY_BATCH};
pub use rerender::RetryOutcome;
pub use schedule::due_at;

use crate::clock::{from_millis, to_millis};
use crate::delivery::{withheld, Unsubscriber};
use crate::domain::parse_timezone;
use crate::experiment::Arm;
use crate::reasons::Reason;
use crate::render::context_name as name_ref;
use crate::render::{CustomerView, MessageContext, OrderView, Rendered, Renderer};
use crate::scenario::{variant_key, Scenario, Step, Trigger, Variant};
use crate::segment::Segment;
use crate::store::{
    CustomerRow, DueEnrollment, NewEnrollment, NewOutbox, OrderEvent, OrderRow, OutboxStatus,
    StepAdvance, Store,
};
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use minijinja::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use tracing::{info_span, warn, Instrument};

/// Orders and enrollments handled per database round trip and transaction. Larger pages
/// mean fewer, cheaper commits (SQLite rewrites every page a transaction touched).
const PAGE: i64 = 50000;

/// How the tick reads new orders. `Auto` (the default) picks by how much of the history is
/// new; the others exist so that tests and benchmarks can pin one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderScan {
    #[default]
    Auto,
    ByArrival,
    ByCustomer,
}

/// A request the engine cannot act on because of what was asked (an unknown scenario or
/// step, a scenario that cannot be started by hand): the caller's input is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    pub orders_seen: u64,
    pub enrolled: u64,
    pub goals_reached: u64,
    pub queued: u64,
    pub skipped: u64,
    pub suppressed: u64,
    pub failed: u64,
    pub completed: u64,
}

impl TickReport {
    /// Counts a step's outcome: its message's status, and whether the enrollment completed.
    fn count(&mut self, a: &StepAdvance) {
        match a.outbox.as_ref().map(|o| o.status) {
            Some(OutboxStatus::Queued) => self.queued += 1,
            Some(OutboxStatus::Skipped) => self.skipped += 1,
            Some(OutboxStatus::Suppressed) => self.suppressed += 1,
            Some(OutboxStatus::Failed) => self.failed += 1,
            _ => {}
        }
        if a.state == "completed" {
            self.completed += 1;
        }
    }
}

/// Why a step of `s` for `c` is not queued (suppressed address, no marketing consent), from
/// the suppressions of the addresses at hand (lower case) and the person-level ones recorded
/// for the customers (`wishes`, by customer id: they follow a change of address).
fn blocked(
    suppressed: &HashMap<String, crate::store::SuppressionKind>,
    wishes: &HashMap<String, crate::store::SuppressionKind>,
    s: &Scenario,
    c: &CustomerRow,
) -> Option<(OutboxStatus, String)> {
    let suppression = crate::delivery::suppression_for(
        suppressed.get(&c.email.trim().to_lowercase()).copied(),
        &[wishes.get(&c.id).copied()],
        s.transactional,
    );
    withheld(suppression, s.transactional, c.consents(), true)
        .map(|(status, why)| (status, why.to_string()))
}

/// Settings the engine needs besides scenarios and the store.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub shop: BTreeMap<String, String>,
    pub default_timezone: Tz,
    pub trigger_lookback: Duration,
    pub unsubscribe: Unsubscriber,
    /// The shop-wide control group's share (0 without one).
    pub control_group: f64,
    /// How late a step may still be sent when neither it nor its scenario says (`expires`).
    pub step_expiry: Duration,
    /// Rewrites the links of HTML mail to tracked redirects; None: tracking is off.
    pub tracking: Option<crate::tracking::Tracker>,
}

pub struct Engine {
    store: Store,
    scenarios: Vec<Scenario>,
    renderer: Renderer,
    settings: EngineSettings,
    from_domain: String,
    order_scan: OrderScan,
    /// A back-test's engine: what it queues counts as sent at once, so a step is never late
    /// (lateness is only the size of the virtual tick) and a goal cancels nothing queued.
    back_test: bool,
    segments: Vec<Segment>,
    /// The LTV targets of `targets.yaml` (loaded, and reloaded on SIGHUP, with the scenarios).
    targets: Vec<crate::targets::Target>,
    /// Each (scenario, step)'s automatic winner and when it was decided, as of the last tick.
    decisions: std::sync::RwLock<HashMap<(String, String), (String, i64)>>,
    /// When the undecided `auto_winner` steps were last looked at: at most once an hour, so
    /// that their grouped query over the outbox stays off most ticks.
    winners_checked_at: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Whether a template calls `recommend()`: then held-out steps are rendered too, to keep
    /// what they would have recommended.
    uses_recommend: bool,
    /// Whether recommendations are learnt once a shop day: a template calls `recommend()`, or
    /// a scenario is triggered by `next_purchase_due`.
    learns: bool,
}

/// The outcome of `rebuy trigger`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManualOutcome {
    pub enrollment_id: i64,
    pub created: bool,
    pub first_step: String,
    pub due_at: String,
}

impl Engine {
    pub fn new(
        store: Store,
        scenarios: Vec<Scenario>,
        renderer: Renderer,
        settings: EngineSettings,
    ) -> Self {
        let from_domain = settings
            .shop
            .get("from")
            .and_then(|f| f.parse::<lettre::message::Mailbox>().ok())
            .map(|m| m.email.domain().to_string())
            .unwrap_or_else(|| "localhost".into());
        let scenarios: Vec<Scenario> = scenarios
            .into_iter()
            .map(|mut s| {
                s.control_group = if s.transactional {
                    0.0
                } else {
                    settings.control_group
                };
                s
            })
            .collect();
        let uses_recommend = renderer.uses_recommend(&scenarios);
        let learns = uses_recommend
            || scenarios
                .iter()
                .any(|s| s.enabled && matches!(s.trigger, Trigger::NextPurchaseDue(_)));
        Self {
            uses_recommend,
            learns,
            store,
            scenarios,
            renderer,
            settings,
            from_domain,
            order_scan: OrderScan::Auto,
            back_test: false,
            segments: Vec::new(),
            targets: Vec::new(),
            decisions: Default::default(),
            winners_checked_at: Default::default(),
        }
    }

    /// The named segments the refresh evaluates (scenarios refer to them by name).
    pub fn with_segments(mut self, segments: Vec<Segment>) -> Self {
        self.segments = segments;
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The LTV targets the pages and the digest measure.
    pub fn with_targets(mut self, targets: Vec<crate::targets::Target>) -> Self {
        self.targets = targets;
        self
    }

    pub fn targets(&self) -> &[crate::targets::Target] {
        &self.targets
    }

    /// The engine of a back-test, which replays a daemon that ran without a break, ticked at
    /// the simulation's step, its messages sent as they are queued: every step is sent however
    /// late its tick comes, and a goal cancels no message (each was sent when queued).
    pub fn for_back_test(mut self) -> Self {
        self.back_test = true;
        self
    }

    /// Whether steps later than their `expires` are recorded `expired` (not in back-tests).
    fn lateness(&self) -> bool {
        !self.back_test
    }

    /// Pins how new orders are read (see [`OrderScan`]).
    pub fn with_order_scan(mut self, scan: OrderScan) -> Self {
        self.order_scan = scan;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    pub fn scenario(&self, id: &str) -> Result<&Scenario> {
        self.scenarios.iter().find(|s| s.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.scenarios.iter().map(|s| s.id.as_str()).collect();
            InputError(format!("no scenario '{id}'; scenarios: {}", ids.join(", "))).into()
        })
    }

    fn has_variants(&self) -> bool {
        self.scenarios
            .iter()
            .any(|s| s.steps.iter().any(|st| !st.variants.is_empty()))
    }

    /// Records the winner of each `auto_winner` step that has none yet and now has one; new
    /// enrollments get it from the next tick on.
    async fn decide_winners(&self, now: DateTime<Utc>) -> Result<()> {
        {
            let mut last = self.winners_checked_at.lock().expect("winner check lock");
            if last.is_some_and(|t| now - t < Duration::hours(1) && now >= t) {
                return Ok(());
            }
            *last = Some(now);
        }
        for s in self.scenarios.iter().filter(|s| s.enabled) {
            for step in &s.steps {
                let Some(rule) = step.auto_winner else {
                    continue;
                };
                let key = (s.id.clone(), step.id.clone());
                if self
                    .decisions
                    .read()
                    .expect("decisions lock")
                    .contains_key(&key)
                {
                    continue;
                }
                let outcomes = self
                    .store
                    .variant_outcomes(&s.id, &step.id, to_millis(now))
                    .await?;
                let arms: Vec<crate::experiment::winner::Arm> = outcomes
                    .iter()
                    .filter(|o| step.variants.iter().any(|v| v.id == o.variant))
                    .map(|o| crate::experiment::winner::Arm {
                        variant: &o.variant,
                        sent: o.sent as u64,
                        converted: o.converted as u64,
                    })
                    .collect();
                let picked = crate::experiment::pick_winner(
                    &arms,
                    step.variants.len(),
                    rule.min_sample,
                    rule.confidence,
                );
                let Some((winner, detail)) = picked else {
                    continue;
                };
                let decision = crate::store::VariantDecision {
                    scenario_id: s.id.clone(),
                    step_id: step.id.clone(),
                    winner: winner.clone(),
                    decided_at: to_millis(now),
                    detail: detail.clone(),
                };
                if self.store.record_variant_decision(&decision).await? {
                    tracing::info!(scenario = %s.id, step = %step.id, %winner, %detail, "variant winner decided; new enrollments get it");
                }
            }
        }
        Ok(())
    }

    async fn load_decisions(&self) -> Result<()> {
        if !self.has_variants() {
            return Ok(());
        }
        let rows = self.store.variant_decisions().await?;
        let mut d = self.decisions.write().expect("decisions lock");
        d.clear();
        for r in rows {
            d.insert((r.scenario_id, r.step_id), (r.winner, r.decided_at));
        }
        Ok(())
    }

    /// The variant of `step` that `customer`, enrolled at `enrolled_at`, gets (None for a step
    /// without variants).
    fn variant_of<'a>(
        &self,
        s: &Scenario,
        step: &'a Step,
        customer: &str,
        enrolled_at: i64,
    ) -> Option<&'a Variant> {
        if step.variants.is_empty() {
            return None;
        }
        let d = self.decisions.read().expect("decisions lock");
        let decision = d
            .get(&(s.id.clone(), step.id.clone()))
            .map(|(w, at)| (w.as_str(), *at));
        step.variant_for(&s.id, customer, enrolled_at, decision)
    }

    /// The wait before `step` for `customer` (their variant's, if it has variants).
    fn wait_of(&self, s: &Scenario, step: &Step, customer: &str, enrolled_at: i64) -> Duration {
        step.wait_for(self.variant_of(s, step, customer, enrolled_at))
    }

    fn zone(&self, c: &CustomerRow) -> Tz {
        self.zone_named(c.timezone.as_deref())
    }

    fn zone_named(&self, name: Option<&str>) -> Tz {
        name.and_then(|z| parse_timezone(z).ok())
            .unwrap_or(self.settings.default_timezone)
    }

    /// One pass of the engine at `now`. Running it twice, or twice at once, changes nothing the
    /// second time: unique keys and compare-and-set updates make every write idempotent.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport> {
        let span = info_span!("tick", now = %now.to_rfc3339());
        async {
            let mut report = TickReport::default();
            self.load_decisions().await?;
            // Before the orders: a `next_purchase_due` trigger times its mail by what is learnt.
            self.learn_recommendations(now).await;
            // Events before orders: an order that arrived in the same tick as the cart it
            // settles must find the enrollment the cart started, and reach its goal.
            self.process_events(now, &mut report).await?;
            self.process_orders(now, &mut report).await?;
            self.process_segment_events(now, &mut report).await?;
            self.process_predictions(now, &mut report).await?;
            self.advance_due(now, &mut report).await?;
            self.decide_winners(now).await?;
            // The daemon logs the whole cycle at info; the tick's own line is detail.
            tracing::debug!(
                orders_seen = report.orders_seen,
                enrolled = report.enrolled,
                goals_reached = report.goals_reached,
                queued = report.queued,
                "tick done"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Reads the orders that arrived since the last tick, enrolls and lets customers reach
    /// their goals. Small batches are read in order of arrival; when most of the history is
    /// new (a first start, a bulk import) it is read customer by customer instead, which
    /// turns a random index lookup per order into one sequential pass.
    async fn process_orders(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<()> {
        let cursor = self.store.order_cursor().await?;
        let last = self.store.max_order_seq().await?;
        if last <= cursor {
            return Ok(());
        }
        let by_customer = match self.order_scan {
            OrderScan::Auto => (last - cursor) * 4 >= last,
            OrderScan::ByArrival => false,
            OrderScan::ByCustomer => true,
        };
        if by_customer {
            self.orders_by_customer((cursor, last), now, report).await
        } else {
            self.orders_by_arrival(cursor, now, report).await
        }
    }

    /// Pages of orders in order of arrival; each page moves the cursor in its own
    /// transaction.
    async fn orders_by_arrival(
        &self,
        mut cursor: i64,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<()> {
        loop {
            let orders = self
                .store
                .orders_after(cursor, PAGE, self.nth_cap())
                .await?;
            let Some(last) = orders.iter().map(|o| o.seq).max() else {
                return Ok(());
            };
            let ids = distinct(orders.iter().map(|o| o.customer_id.clone()));
            let existing = self.store.enrollments_for_customers(&ids).await?;
            if self
                .plan_and_apply(orders, existing, Some((cursor, last)), None, now, report)
                .await?
            {
                cursor = last;
            } else {
                // An overlapping tick took this page; carry on from where it got to.
                cursor = self.store.order_cursor().await?;
            }
        }
    }

    /// Pages of customers, each with all its orders in `seqs`; the cursor moves once at the
    /// end. A pass cut short (a crash) is simply done again: unique keys and compare-and-set
    /// goals make every write idempotent.
    async fn orders_by_customer(
        &self,
        seqs: (i64, i64),
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<()> {
        let mut after = String::new();
        loop {
            let upto = self.store.customer_page_end(&after, PAGE).await?;
            let orders = self
                .store
                .new_orders_of_customers(&after, upto.as_deref(), seqs)
                .await?;
            if !orders.is_empty() {
                let existing = self
                    .store
                    .enrollments_in_customer_range(&after, upto.as_deref())
                    .await?;
                self.plan_and_apply(orders, existing, None, None, now, report)
                    .await?;
            }
            match upto {
                Some(upto) => after = upto,
                None => break,
            }
        }
        self.store.move_order_cursor(seqs.0, seqs.1).await?;
        Ok(())
    }

    /// Plans a page of new orders against the customers' enrollments and writes the result
    /// (moving the cursor if given). Returns false if an overlapping tick moved the cursor
    /// first, in which case nothing was written.
    /// Plans a page of orders and applies it (moving `cursor` with it). `starts_from`: orders
    /// placed before it start nothing (default: the trigger lookback; `i64::MAX` to reach
    /// goals only).
    async fn plan_and_apply(
        &self,
        mut orders: Vec<OrderEvent>,
        existing: Vec<crate::store::EnrollmentLite>,
        cursor: Option<(i64, i64)>,
        starts_from: Option<i64>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<bool> {
        let now_ms = to_millis(now);
        let lookback_start =
            starts_from.unwrap_or_else(|| to_millis(now - self.settings.trigger_lookback));
        // A page is planned in time order.
        orders.sort_by(|a, b| (a.placed_at, &a.id).cmp(&(b.placed_at, &b.id)));
        // Customers and full orders (with items) are loaded only when some condition needs
        // the message context.
        let (customers, full) = if self.needs_context() {
            let ids = distinct(orders.iter().map(|o| o.customer_id.clone()));
            let order_ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
            (
                self.store.customers_with_metrics(&ids).await?,
                self.store.orders_by_ids(&order_ids).await?,
            )
        } else {
            Default::default()
        };
        let intervals = if self.uses_replenish() {
            self.store.sku_intervals().await?
        } else {
            HashMap::new()
        };
        let mut judge = ContextJudge {
            engine: self,
            customers: &customers,
            orders: &full,
            intervals: &intervals,
            now,
        };
        let plan = plan_orders(
            &self.scenarios,
            &orders,
            existing,
            now_ms,
            lookback_start,
            &mut judge,
        );
        let Some(created) = self
            .store
            .apply_order_batch(
                &plan.enrollments,
                &plan.goals,
                cursor,
                now_ms,
                !self.back_test,
            )
            .await?
        else {
            return Ok(false);
        };
        if starts_from.is_none() {
            report.orders_seen += orders.len() as u64;
        }
        report.enrolled += created;
        report.goals_reached += plan.goals_reached();
        Ok(true)
    }

    /// Reads the segment membership changes written since the last tick (by refreshes) and
    /// starts the `segment_entered` / `segment_exited` enrollments they fire. Each page
    /// moves the segment cursor in the transaction that records its enrollments.
    async fn process_segment_events(
        &self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<()> {
        let now_ms = to_millis(now);
        let lookback_start = to_millis(now - self.settings.trigger_lookback);
        let mut cursor = self.store.segment_cursor().await?;
        loop {
            let events = self.store.segment_events_after(cursor, PAGE).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            let fired: Vec<&Scenario> = self
                .scenarios
                .iter()
                .filter(|s| s.enabled && s.trigger.segment().is_some())
                .collect();
            let ids = distinct(events.iter().map(|e| e.customer_id.clone()));
            let (existing, customers) = if fired.is_empty() {
                Default::default()
            } else {
                (
                    self.store.enrollments_for_customers(&ids).await?,
                    self.store.customers_with_metrics(&ids).await?,
                )
            };
            let triggers = segment_triggers(&self.scenarios, &events);
            let new = plan_fired(&triggers, existing, now_ms, lookback_start, |f| {
                self.admit(f, customers.get(&f.customer_id)?, now)
            });
            let moved = Some(("segment_cursor", cursor, last));
            match self.store.apply_fired(&new, moved).await? {
                Some(created) => {
                    report.enrolled += created;
                    cursor = last;
                }
                None => cursor = self.store.segment_cursor().await?,
            }
        }
    }

    /// Starts `trigger: { event: … }` enrollments for the custom events that arrived since the
    /// last tick (`event_cursor`), as segment changes start theirs. Without such a scenario the
    /// cursor still moves, so that a scenario added later starts only from new events.
    async fn process_events(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<()> {
        let now_ms = to_millis(now);
        let lookback_start = to_millis(now - self.settings.trigger_lookback);
        let mut cursor = self.store.event_cursor().await?;
        loop {
            let events = self.store.events_after(cursor, PAGE).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            let triggers = event_triggers(&self.scenarios, &events);
            let ids = distinct(triggers.iter().map(|f| f.customer_id.clone()));
            let (existing, customers) = if ids.is_empty() {
                Default::default()
            } else {
                (
                    self.store.enrollments_for_customers(&ids).await?,
                    self.store.customers_with_metrics(&ids).await?,
                )
            };
            let new = plan_fired(&triggers, existing, now_ms, lookback_start, |f| {
                self.admit(f, customers.get(&f.customer_id)?, now)
            });
            match self
                .store
                .apply_fired(&new, Some(("event_cursor", cursor, last)))
                .await?
            {
                Some(created) => {
                    report.enrolled += created;
                    cursor = last;
                    self.catch_up_goals(&new, now, report).await?;
                }
                None => cursor = self.store.event_cursor().await?,
            }
        }
    }

    /// Goals reached before their enrollment existed. An event that arrives after the order
    /// that settles it (a cart posted late, yesterday's events imported today) starts an
    /// enrollment whose goal order the tick has already handled; without this it would remind
    /// a customer who has bought. The orders already handled (up to the order cursor) of these
    /// customers, placed since the earliest new trigger, are planned again: they start nothing
    /// and reach only goals not reached yet.
    async fn catch_up_goals(
        &self,
        new: &[crate::store::NewEnrollment],
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<()> {
        let with_goal: Vec<&crate::store::NewEnrollment> = new
            .iter()
            .filter(|e| {
                self.scenarios
                    .iter()
                    .any(|s| s.id == e.scenario_id && s.goal.is_some())
            })
            .collect();
        let Some(since) = with_goal.iter().map(|e| e.triggered_at).min() else {
            return Ok(());
        };
        let ids = distinct(with_goal.iter().map(|e| e.customer_id.clone()));
        let upto = self.store.order_cursor().await?;
        let orders = self.store.handled_orders_since(&ids, since, upto).await?;
        if orders.is_empty() {
            return Ok(());
        }
        let existing = self.store.enrollments_for_customers(&ids).await?;
        self.plan_and_apply(orders, existing, None, Some(i64::MAX), now, report)
            .await?;
        Ok(())
    }

    /// Starts `expected_next_order` enrollments: once per shop-local day and per metrics
    /// refresh, finds the customers whose predicted next order, shifted by each scenario's
    /// offset, falls between the trigger lookback and now. The predicted date is the key: a
    /// prediction fires once; a new date (after a refresh) may fire again if `reentry` allows.
    async fn process_predictions(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<()> {
        let offsets: Vec<(&Scenario, Duration)> = self
            .scenarios
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| match s.trigger {
                Trigger::ExpectedNextOrder(d) => Some((s, d)),
                _ => None,
            })
            .collect();
        // Without such a scenario the tick asks the database nothing here.
        if offsets.is_empty() {
            return Ok(());
        }
        let Some(as_of) = self.store.metrics_as_of().await? else {
            return Ok(());
        };
        let zone = self.settings.default_timezone;
        let marker = format!("{}|{as_of}", now.with_timezone(&zone).date_naive());
        if self.store.setting("next_order_scan").await?.as_deref() == Some(marker.as_str()) {
            return Ok(());
        }
        let lookback_start = now - self.settings.trigger_lookback;
        let date = |t: DateTime<Utc>| t.with_timezone(&zone).date_naive();
        let from = offsets.iter().map(|(_, d)| date(lookback_start - *d)).min();
        let to = offsets.iter().map(|(_, d)| date(now - *d)).max();
        let (Some(from), Some(to)) = (from, to) else {
            return Ok(());
        };
        let rows = self
            .store
            .expected_orders_between(&from.to_string(), &to.to_string())
            .await?;
        let mut fired = Vec::new();
        for (customer_id, day) in &rows {
            let Ok(day) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
                continue;
            };
            for (s, offset) in &offsets {
                let at = from_millis(crate::clock::start_of_day(day, zone)) + *offset;
                if at >= lookback_start && at <= now {
                    fired.push(Fired {
                        scenario: s,
                        customer_id: customer_id.clone(),
                        at: to_millis(at),
                        key: format!("next:{day}"),
                        vars: None,
                    });
                }
            }
        }
        fired.sort_by_key(|f| f.at);
        let ids = distinct(fired.iter().map(|f| f.customer_id.clone()));
        let existing = self.store.enrollments_for_customers(&ids).await?;
        let customers = self.store.customers_with_metrics(&ids).await?;
        let new = plan_fired(
            &fired,
            existing,
            to_millis(now),
            to_millis(lookback_start),
            |f| self.admit(f, customers.get(&f.customer_id)?, now),
        );
        if let Some(created) = self.store.apply_fired(&new, None).await? {
            report.enrolled += created;
        }
        self.store.set_setting("next_order_scan", &marker).await?;
        Ok(())
    }

    /// Whether customer `c` is in `s`'s audience (segment and condition) for a trigger at
    /// `at` that has no order, and if so when the first step is due.
    fn admit(&self, f: &Fired, c: &CustomerRow, now: DateTime<Utc>) -> Option<i64> {
        let (s, at) = (f.scenario, f.at);
        if !s.in_audience_segment(&c.segments) {
            return None;
        }
        if s.audience.is_some() {
            // An event scenario's audience sees its event (`event.properties.value >= 5000`).
            let vars = f
                .vars
                .as_deref()
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or(serde_json::Value::Null);
            let ctx = self.context(s, None, c, None, vars, None, now);
            if !self.condition_holds(s, "audience", &ctx, &c.id) {
                return None;
            }
        }
        let first = &s.steps[0];
        Some(to_millis(due_at(
            from_millis(at),
            self.wait_of(s, first, &c.id, to_millis(now)),
            first.at,
            self.zone(c),
        )))
    }

    /// Evaluates one of `s`'s conditions; one that fails to evaluate counts as false and is
    /// logged (with `about`: the order or customer it was evaluated for).
    fn condition_holds(&self, s: &Scenario, key: &str, ctx: &Value, about: &str) -> bool {
        self.renderer
            .condition(&s.id, key, ctx)
            .unwrap_or_else(|e| {
                warn!(scenario = %s.id, about, error = %e, "condition failed; treated as false");
                false
            })
    }

    /// How far an order's position needs counting: up to the largest `nth_order` in use, or
    /// exactly when a condition may read `customer.orders_count`.
    fn nth_cap(&self) -> Option<i64> {
        if self.needs_context() {
            return None;
        }
        let cap = self
            .scenarios
            .iter()
            .filter(|s| s.enabled)
            .map(|s| match s.trigger {
                Trigger::FirstOrder => 1,
                Trigger::NthOrder(n) => i64::from(n),
                _ => 0,
            });
        Some(cap.max().unwrap_or(0))
    }

    /// Whether an enabled scenario has a `replenish` trigger (which needs the SKU intervals).
    pub fn uses_replenish(&self) -> bool {
        self.scenarios
            .iter()
            .any(|s| s.enabled && matches!(s.trigger, Trigger::Replenish(_)))
    }

    /// Whether any audience or goal condition (or a `replenish` trigger, which reads the
    /// items) needs customers and orders in full.
    fn needs_context(&self) -> bool {
        self.uses_replenish()
            || self.scenarios.iter().any(|s| {
                matches!(s.trigger, Trigger::NextPurchaseDue(_))
                    || s.audience.is_some()
                    || s.audience_segment.is_some()
                    || s.goal.as_ref().is_some_and(|g| g.condition.is_some())
            })
    }

    async fn advance_due(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<()> {
        let now_ms = to_millis(now);
        loop {
            let due = self.store.due_enrollments(now_ms, PAGE).await?;
            if due.is_empty() {
                return Ok(());
            }
            let customers = self
                .store
                .customers_with_metrics(&distinct(due.iter().map(|e| e.customer_id.clone())))
                .await?;
            let orders = self
                .store
                .orders_by_ids(&distinct(due.iter().filter_map(|e| e.order_id.clone())))
                .await?;
            let emails: Vec<String> = customers.values().map(|c| c.email.clone()).collect();
            let ids: Vec<String> = customers.keys().cloned().collect();
            let found = self.store.suppressions_for(&emails, &ids).await?;
            let (suppressed, wishes) = (found.by_email, found.by_customer);
            let mut advances = Vec::with_capacity(due.len());
            for e in &due {
                let span = info_span!("step", enrollment_id = e.id, scenario = %e.scenario_id,
                    step = tracing::field::Empty, step_index = e.next_step);
                let _guard = span.enter();
                let Some(s) = self.scenarios.iter().find(|s| s.id == e.scenario_id) else {
                    warn!("scenario no longer exists; the enrollment is cancelled");
                    self.store.cancel_enrollment(e.id, now_ms).await?;
                    continue;
                };
                if let Some(step) = usize::try_from(e.next_step)
                    .ok()
                    .and_then(|i| s.steps.get(i))
                {
                    span.record("step", step.id.as_str());
                }
                let Some(c) = customers.get(&e.customer_id) else {
                    continue;
                };
                let order = e.order_id.as_ref().and_then(|id| orders.get(id));
                // An order moved to another customer (`rebuy import --move-orders`) since this
                // enrollment began: its mail would show someone else's order.
                if let Some(o) = order.filter(|o| o.customer_id != e.customer_id) {
                    warn!(order = %o.id, "the enrollment's order now belongs to another customer; the enrollment ends");
                    let why = Reason::OrderMoved {
                        order: o.id.clone(),
                    };
                    advances.push(ends_without_mail(e, "cancelled", Some(why.to_string())));
                    continue;
                }
                let blocked = blocked(&suppressed, &wishes, s, c);
                advances.push(self.advance_one(s, e, c, order, blocked, now));
            }
            for a in &advances {
                report.count(a);
            }
            let won = self.store.apply_steps(&advances, now_ms).await?;
            if won == 0 {
                return Ok(());
            }
        }
    }

    /// Decides what the due step of one enrollment produces and where the enrollment goes next.
    fn advance_one(
        &self,
        s: &Scenario,
        e: &DueEnrollment,
        c: &CustomerRow,
        order: Option<&OrderRow>,
        blocked: Option<(OutboxStatus, String)>,
        now: DateTime<Utc>,
    ) -> StepAdvance {
        let next_step = e.next_step + 1;
        let index = match &e.next_step_id {
            Some(id) => match s.step_index(id) {
                Some(i) => i,
                // Removed from the scenario while the customer waited on it: no guess at what
                // would replace it; the enrollment ends, saying why.
                None => {
                    warn!(step = %id, "the step this enrollment waits on was removed from the scenario; the enrollment ends");
                    let why = Reason::StepRemoved { step: id.clone() };
                    return ends_without_mail(e, "cancelled", Some(why.to_string()));
                }
            },
            None => e.next_step as usize,
        };
        let Some(step) = s.steps.get(index) else {
            return ends_without_mail(e, "completed", None);
        };
        let vars: serde_json::Value = serde_json::from_str(&e.vars).unwrap_or_default();
        let ctx = self.context(s, Some(&step.id), c, order, vars, None, now);
        let mut outbox = self.outbox_row(s, e, c, &ctx);
        let variant = self.variant_of(s, step, &c.id, e.enrolled_at);
        let (send_key, send) = match variant {
            Some(v) => (variant_key(&step.id, &v.id), &v.send),
            None => (step.id.clone(), &step.send),
        };
        outbox.variant = variant.map(|v| v.id.clone());
        let limit = s.expiry_of(step, self.settings.step_expiry);
        outbox.expires_at = self
            .lateness()
            .then(|| e.next_due_at.checked_add(limit.num_milliseconds()))
            .flatten();
        let held_out = Arm::parse(&e.arm) != Arm::Treatment;
        let withheld = blocked.is_some();
        let late = to_millis(now).saturating_sub(e.next_due_at);
        let expired = self.lateness() && late > limit.num_milliseconds();
        let condition = match &step.condition {
            _ if blocked.is_some() || held_out => Ok(false),
            Some(_) => self
                .renderer
                .condition(&s.id, &format!("step/{}", step.id), &ctx),
            None => Ok(true),
        };
        // A late step is `expired` only if it would have been sent: a false condition is
        // still `skipped`.
        let passed = matches!(condition, Ok(true));
        match condition.and_then(|ok| {
            if ok && !expired {
                self.renderer
                    .render_step(&s.id, &send_key, &send.template, &ctx)
                    .map(Some)
            } else {
                Ok(None)
            }
        }) {
            Ok(Some(r)) => {
                outbox.recommended = recommended_json(&r.recommended);
                outbox.status = OutboxStatus::Queued;
                outbox.subject = r.subject;
                outbox.html = self.tracked(r.html, &outbox.message_id, &outbox.unsubscribe_url);
                outbox.body_text = r.text;
            }
            Ok(None) if expired && passed => {
                outbox.status = OutboxStatus::Expired;
                let why = Reason::LateStep {
                    late: crate::domain::format_duration(Duration::milliseconds(late)),
                    limit: crate::domain::format_duration(limit),
                };
                outbox.last_error = Some(why.to_string());
            }
            Ok(None) if held_out => {
                // Only where the mail would have gone: a held-out row of a customer who could
                // not be mailed (suppressed, no consent, too late) is no comparison.
                if blocked.is_none() && !expired {
                    outbox.recommended =
                        self.would_recommend(s, step, &send_key, &send.template, &ctx);
                }
                outbox.status = OutboxStatus::HeldOut;
                let why = Reason::HeldOut { arm: e.arm.clone() };
                outbox.last_error = Some(why.to_string());
            }
            Ok(None) => match blocked {
                Some((status, why)) => {
                    outbox.status = status;
                    outbox.last_error = Some(why);
                }
                None => outbox.status = OutboxStatus::Skipped,
            },
            Err(err) => {
                warn!(error = %err, "step could not be rendered; the message is marked failed");
                outbox.status = OutboxStatus::Failed;
                outbox.last_error = Some(err.to_string());
            }
        }
        outbox.step_index = e.next_step;
        outbox.step_id = step.id.clone();
        outbox.due_at = e.next_due_at;
        // A step that could not be mailed ends the enrollment: should the suppression be
        // lifted or consent given later, the next step ("your coupon expires soon") would
        // follow a mail the customer never received. Held-out customers end the same way, so
        // that both arms keep the same later steps. `completed`, not `cancelled`: an order
        // inside the goal window still counts as the goal reached, so that a customer who
        // unsubscribed stays in the experiment's comparison as enrolled (intent to treat).
        if withheld && s.steps.get(index + 1).is_some() {
            let why = Reason::StepWithheld {
                step: step.id.clone(),
            };
            return StepAdvance {
                outbox: Some(outbox),
                ..ends_without_mail(e, "completed", Some(why.to_string()))
            };
        }
        let (state, next_due_at) = match s.steps.get(index + 1) {
            Some(next) => (
                "active",
                Some(to_millis(due_at(
                    from_millis(e.next_due_at),
                    self.wait_of(s, next, &c.id, e.enrolled_at),
                    next.at,
                    self.zone(c),
                ))),
            ),
            None => ("completed", None),
        };
        StepAdvance {
            enrollment_id: e.id,
            expected_step: e.next_step,
            next_step,
            next_step_id: s.steps.get(index + 1).map(|n| n.id.clone()),
            next_due_at,
            state,
            end_reason: None,
            outbox: Some(outbox),
        }
    }

    /// A rendered HTML part with its links tracked, when tracking is on.
    pub(crate) fn tracked(&self, html: String, message_id: &str, unsubscribe_url: &str) -> String {
        match &self.settings.tracking {
            Some(t) => t.rewrite(&html, message_id, unsubscribe_url),
            None => html,
        }
    }

    /// The message of a step before it is rendered; its unsubscribe link is the one `ctx`
    /// (the step's template context) shows, signed once.
    fn outbox_row(
        &self,
        s: &Scenario,
        e: &DueEnrollment,
        c: &CustomerRow,
        ctx: &Value,
    ) -> NewOutbox {
        NewOutbox {
            enrollment_id: e.id,
            step_index: 0,
            step_id: String::new(),
            scenario_id: s.id.clone(),
            customer_id: c.id.clone(),
            transactional: s.transactional,
            skip_when_capped: s.skip_when_capped,
            status: OutboxStatus::Queued,
            to_email: c.email.clone(),
            to_name: c.name.clone(),
            subject: String::new(),
            html: String::new(),
            body_text: String::new(),
            unsubscribe_url: if s.transactional {
                String::new()
            } else {
                ctx.get_attr("unsubscribe_url")
                    .ok()
                    .and_then(|u| u.as_str().map(str::to_string))
                    .unwrap_or_else(|| self.settings.unsubscribe.url(&c.id))
            },
            message_id: format!(
                "<{}.{}.{:016x}@{}>",
                e.id,
                e.next_step,
                rand::random::<u64>(),
                self.from_domain
            ),
            due_at: e.next_due_at,
            last_error: None,
            variant: None,
            expires_at: None,
            recommended: None,
        }
    }

    /// The context a template or condition sees.
    #[allow(clippy::too_many_arguments)]
    fn context(
        &self,
        s: &Scenario,
        step: Option<&str>,
        c: &CustomerRow,
        order: Option<&OrderRow>,
        vars: serde_json::Value,
        orders_count: Option<i64>,
        now: DateTime<Utc>,
    ) -> Value {
        let mut customer = CustomerView::new(c, self.zone(c), now);
        if let Some(n) = orders_count {
            customer.orders_count = n;
        }
        let step_name = step.map(|id| name_ref(id, id));
        let event = s.trigger.event().and_then(|_| vars.get("event").cloned());
        Value::from_serialize(MessageContext {
            event,
            customer,
            order: order.map(OrderView::new),
            shop: &self.settings.shop,
            vars,
            scenario: name_ref(&s.id, &s.name),
            step: step_name,
            unsubscribe_url: self.settings.unsubscribe.url(&c.id),
            now: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            metrics: crate::render::metrics_view(c.metrics.as_deref()),
        })
    }

    /// Starts a manual scenario for one customer. With `key`, a repeated call finds the
    /// enrollment the first one made and changes nothing.
    pub async fn trigger_manual(
        &self,
        scenario_id: &str,
        customer: &str,
        vars: serde_json::Map<String, serde_json::Value>,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ManualOutcome> {
        let s = self.scenario(scenario_id)?;
        if s.trigger != Trigger::Manual {
            return Err(InputError(format!(
                "scenario '{}' has trigger {}; only scenarios with `trigger: manual` can be started by hand",
                s.id,
                s.trigger.name()
            ))
            .into());
        }
        s.check_vars(&vars).map_err(InputError)?;
        let c = self.store.find_customer(customer).await?;
        let order = self.store.latest_order(&c.id, to_millis(now)).await?;
        let key = key
            .map(|k| format!("key:{k}"))
            .unwrap_or_else(|| format!("manual:{}:{:016x}", to_millis(now), rand::random::<u64>()));
        let first = &s.steps[0];
        let due = due_at(
            now,
            self.wait_of(s, first, &c.id, to_millis(now)),
            first.at,
            self.zone(&c),
        );
        let at = to_millis(now);
        let e = NewEnrollment {
            scenario_id: s.id.clone(),
            customer_id: c.id.clone(),
            trigger_key: trigger_key(s, &key),
            order_id: order.map(|o| o.id),
            vars: serde_json::Value::Object(vars).to_string(),
            state: "active".into(),
            next_step: 0,
            next_step_id: Some(first.id.clone()),
            next_due_at: Some(to_millis(due)),
            triggered_at: at,
            enrolled_at: at,
            goal_deadline: plan::goal_deadline(s, at),
            goal_reached_at: None,
            goal_order_id: None,
            goal_revenue: None,
            ended_at: None,
            arm: s.arm_of(&c.id).as_str(),
        };
        let (enrollment_id, created) = self.store.insert_enrollment(&e).await?;
        Ok(ManualOutcome {
            enrollment_id,
            created,
            first_step: first.id.clone(),
            // In the shop's zone, like every time the CLI and the API show.
            due_at: due
                .with_timezone(&self.settings.default_timezone)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        })
    }

    /// The same follow-up already running: an active enrollment of the manual scenario for this
    /// customer with exactly these variables, started under another key than `key` (a second
    /// tab, the form sent again from a new preview). Its id and when it was enrolled.
    pub async fn running_followup(
        &self,
        scenario_id: &str,
        customer: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        key: &str,
    ) -> Result<Option<(i64, i64)>> {
        let s = self.scenario(scenario_id)?;
        let c = self.store.find_customer(customer).await?;
        let vars = serde_json::Value::Object(vars.clone()).to_string();
        let key = trigger_key(s, &format!("key:{key}"));
        Ok(self
            .store
            .active_enrollment_like(&s.id, &c.id, &vars, &key)
            .await?)
    }

    /// Renders a step for a customer without sending or recording anything. The triggering
    /// order is the customer's latest; `vars` stand in for a manual trigger's variables.
    pub async fn preview(
        &self,
        scenario_id: &str,
        step_id: &str,
        customer: &str,
        vars: serde_json::Map<String, serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<Rendered> {
        let s = self.scenario(scenario_id)?;
        let step = s.steps.iter().find(|st| st.id == step_id).ok_or_else(|| {
            let ids: Vec<&str> = s.steps.iter().map(|st| st.id.as_str()).collect();
            anyhow::Error::from(InputError(format!(
                "scenario '{}' has no step '{step_id}'; steps: {}",
                s.id,
                ids.join(", ")
            )))
        })?;
        if s.trigger == Trigger::Manual {
            s.check_vars(&vars).map_err(InputError)?;
        }
        let c = self.store.find_customer_with_metrics(customer).await?;
        let order = self.store.latest_order(&c.id, to_millis(now)).await?;
        let mut vars = serde_json::Value::Object(vars);
        if let Some(name) = s.trigger.event() {
            // An event scenario is previewed with the customer's latest such event.
            let latest = self.store.customer_events(&c.id, 1_000).await?;
            let Some(e) = latest.iter().find(|e| e.name == name) else {
                return Err(InputError(format!(
                    "customer '{}' has no '{name}' event to preview scenario '{}' with; post one to /v1/events first",
                    c.id, s.id
                ))
                .into());
            };
            vars["event"] = plan::event_view(e);
        }
        self.learn_recommendations(now).await;
        let ctx = self.context(s, Some(&step.id), &c, order.as_ref(), vars, None, now);
        // What does not render is the template's or this customer's data's fault: said as
        // input (exit 1, 422), with the likely cause when the customer has no order.
        self.renderer
            .render_step(&s.id, &step.id, &step.send.template, &ctx)
            .map_err(|e| {
                let said = e.to_string();
                let why = match order {
                    None if said.contains("'order") || said.contains("order.") => {
                        "; the customer has no order yet, and this step reads one"
                    }
                    _ => "",
                };
                InputError(format!(
                    "step '{}' of '{}' does not render for customer '{}': {said}{why}",
                    step.id, s.id, c.id
                ))
                .into()
            })
    }

    /// When a template calls `recommend()` or a scenario is triggered by `next_purchase_due`:
    /// learns from the stored orders once a shop day (at its first tick: as of the day before,
    /// so that a preview, a restart and the HTTP server give the lists the mail gives), and on
    /// every tick reads the orders stored since, so that nothing a customer bought today is
    /// recommended to them. A failure is logged and the last model kept: mail that does not
    /// recommend goes on (a template that calls `recommend()` with nothing learnt fails with
    /// the reason, and is retried with `rebuy outbox retry`).
    pub async fn learn_recommendations(&self, now: DateTime<Utc>) {
        if !self.learns {
            return;
        }
        let zone = self.settings.default_timezone;
        let today = now.with_timezone(&zone).date_naive();
        let slot = self.renderer.recommendations();
        let current = slot.current();
        if let Some(l) = &current {
            if l.through() == today {
                if let Err(e) = l.catch_up(&self.store, zone).await {
                    warn!(error = %crate::diagnostic::explained(&e), "the orders stored since the recommendations were learnt could not be read");
                }
                return;
            }
        }
        let started = std::time::Instant::now();
        let yesterday = today.pred_opt().unwrap_or(today);
        if let Some(l) = current {
            match l.advance(&self.store, zone, yesterday, today).await {
                Ok(true) => {
                    tracing::info!(
                        as_of = %yesterday,
                        customers = l.customers(),
                        secs = started.elapsed().as_secs_f64(),
                        "recommendations brought to the new day with the orders since"
                    );
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(
                    error = %crate::diagnostic::explained(&e),
                    "recommendations could not be brought to the new day; learning afresh"
                ),
            }
        }
        match crate::recommend_view::Learned::load_until(&self.store, zone, yesterday, today).await
        {
            Ok(learned) => {
                tracing::info!(
                    as_of = %yesterday,
                    customers = learned.customers(),
                    secs = started.elapsed().as_secs_f64(),
                    "recommendations learnt"
                );
                slot.install(learned);
            }
            Err(e) => warn!(
                error = %crate::diagnostic::explained(&e),
                "recommendations could not be learnt; the last ones are kept"
            ),
        }
    }

    /// What a held-out step would have recommended, had it been sent (its condition true and
    /// its render fine), for the report's "bought a recommended product".
    fn would_recommend(
        &self,
        s: &Scenario,
        step: &crate::scenario::Step,
        send_key: &str,
        template: &str,
        ctx: &Value,
    ) -> Option<String> {
        if !self.uses_recommend {
            return None;
        }
        let passes = match &step.condition {
            Some(_) => self
                .renderer
                .condition(&s.id, &format!("step/{}", step.id), ctx)
                .unwrap_or(false),
            None => true,
        };
        if !passes {
            return None;
        }
        let r = self
            .renderer
            .render_step(&s.id, send_key, template, ctx)
            .ok()?;
        recommended_json(&r.recommended)
    }
}

/// Evaluates audience and goal conditions with the real context; an error counts as "no" and
/// is logged.
struct ContextJudge<'a> {
    engine: &'a Engine,
    customers: &'a HashMap<String, CustomerRow>,
    orders: &'a HashMap<String, OrderRow>,
    /// SKU → typical days between repeat purchases (for `replenish`).
    intervals: &'a HashMap<String, i64>,
    now: DateTime<Utc>,
}

impl ContextJudge<'_> {
    /// For a `next_purchase_due` trigger: what customers buy next after one of the order's
    /// items, and when (from what the engine learnt); None without a learnt model or a product
    /// that follows.
    fn next_purchase(&self, order: &OrderEvent) -> Option<crate::recommend_view::NextPurchase> {
        let full = self.orders.get(&order.id)?;
        let items: Vec<crate::render::ItemView> = serde_json::from_str(&full.items).ok()?;
        let skus: Vec<String> = items.into_iter().map(|i| i.sku).collect();
        self.engine
            .renderer
            .recommendations()
            .current()?
            .next_purchase(&skus)
    }

    /// For a `replenish` trigger: the order's item that runs out first, and after how many
    /// days (its SKU's typical repeat interval); None if no item has one.
    fn runs_out_first(&self, order: &OrderEvent) -> Option<(String, i64)> {
        let full = self.orders.get(&order.id)?;
        let items: Vec<crate::render::ItemView> = serde_json::from_str(&full.items).ok()?;
        items
            .into_iter()
            .filter_map(|i| self.intervals.get(&i.sku).map(|d| (i.sku, *d)))
            .min_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
    }

    fn eval(&self, s: &Scenario, key: &str, event: &OrderEvent) -> bool {
        let (Some(c), Some(order)) = (
            self.customers.get(&event.customer_id),
            self.orders.get(&event.id),
        ) else {
            return false;
        };
        let ctx = self.engine.context(
            s,
            None,
            c,
            Some(order),
            serde_json::Value::Null,
            Some(event.nth),
            self.now,
        );
        self.engine.condition_holds(s, key, &ctx, &order.id)
    }
}

impl Judge for ContextJudge<'_> {
    fn audience(&mut self, s: &Scenario, order: &OrderEvent) -> bool {
        if matches!(s.trigger, Trigger::Replenish(_)) && self.runs_out_first(order).is_none() {
            return false;
        }
        if matches!(s.trigger, Trigger::NextPurchaseDue(_)) && self.next_purchase(order).is_none() {
            return false;
        }
        let in_segment = s.audience_segment.is_none()
            || self
                .customers
                .get(&order.customer_id)
                .is_some_and(|c| s.in_audience_segment(&c.segments));
        in_segment && (s.audience.is_none() || self.eval(s, "audience", order))
    }

    fn goal(&mut self, s: &Scenario, order: &OrderEvent) -> bool {
        s.goal.as_ref().and_then(|g| g.condition.as_ref()).is_none() || self.eval(s, "goal", order)
    }

    fn first_due(&mut self, s: &Scenario, order: &OrderEvent) -> i64 {
        let zone = self.engine.zone_named(order.timezone.as_deref());
        let first = &s.steps[0];
        let mut from = from_millis(order.placed_at);
        if let Trigger::Replenish(offset) = s.trigger {
            if let Some((_, days)) = self.runs_out_first(order) {
                from = from + Duration::days(days) + offset;
            }
        }
        if let Trigger::NextPurchaseDue(offset) = s.trigger {
            if let Some(next) = self.next_purchase(order) {
                from = from + Duration::days(next.days) + offset;
            }
        }
        let wait = self
            .engine
            .wait_of(s, first, &order.customer_id, to_millis(self.now));
        to_millis(due_at(from, wait, first.at, zone))
    }

    fn vars(&mut self, s: &Scenario, order: &OrderEvent) -> String {
        match &s.trigger {
            Trigger::Replenish(_) => match self.runs_out_first(order) {
                Some((sku, days)) => {
                    serde_json::json!({ "sku": sku, "interval_days": days }).to_string()
                }
                None => "{}".into(),
            },
            Trigger::NextPurchaseDue(_) => match self.next_purchase(order) {
                Some(n) => serde_json::json!({
                    "sku": n.after,
                    "next_sku": n.next,
                    "interval_days": n.days,
                })
                .to_string(),
                None => "{}".into(),
            },
            _ => "{}".into(),
        }
    }
}

fn distinct(ids: impl Iterator<Item = String>) -> Vec<String> {
    let set: HashSet<String> = ids.collect();
    set.into_iter().collect()
}
/// The enrollment ends at its due step without a message: `completed` past the last step,
/// `cancelled` with `reason` when its step is gone.
fn ends_without_mail(
    e: &DueEnrollment,
    state: &'static str,
    reason: Option<String>,
) -> StepAdvance {
    StepAdvance {
        enrollment_id: e.id,
        expected_step: e.next_step,
        next_step: e.next_step + 1,
        next_step_id: None,
        next_due_at: None,
        state,
        end_reason: reason,
        outbox: None,
    }
}

/// The SKUs a render recommended as stored with its message: a JSON array, None for none.
fn recommended_json(skus: &[String]) -> Option<String> {
    (!skus.is_empty()).then(|| serde_json::to_string(skus).unwrap_or_default())
}
