//! A back-test's fast path: the tick replayed with the engine's state in memory. The same
//! trigger and goal planner (`plan_orders`) and the same step logic (`advance_one`, rendering
//! included) as `tick`, fed from memory instead of the database: the customers and the
//! period's orders are loaded once, enrollments live in maps, messages are written in large
//! batches and enrollments once at the end. `rebuy simulate` uses it when no enabled scenario
//! needs what only the database has (see [`Engine::replayable`]); `tests/it/simulate.rs` holds
//! it equal to a live run.

use super::{blocked, distinct, plan_orders, ContextJudge, Engine, TickReport, PAGE};
use crate::clock::to_millis;
use crate::scenario::Trigger;
use crate::store::{
    CustomerRow, DueEnrollment, EnrollmentLite, GoalHit, NewEnrollment, NewOutbox, OrderEvent,
    OrderRow, OutboxStatus, StepAdvance, Store, SuppressionKind,
};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

/// Messages a back-test's replay holds before it writes them.
pub const REPLAY_BATCH: usize = 20_000;

/// Batches queued for writing at most: past that, the ticks wait for the writer (memory).
const QUEUED: usize = 32;

/// The back-test's state between ticks.
pub struct Replay {
    customers: Vec<CustomerRow>,
    customer_at: HashMap<String, u32>,
    /// The period's orders by (time, id), released as the virtual clock passes them.
    orders: Vec<OrderRow>,
    order_at: HashMap<String, usize>,
    released: usize,
    /// Enrollments by id − 1, and whether each is written.
    enrollments: Vec<NewEnrollment>,
    written: Vec<bool>,
    /// Ended enrollments by the time after which nothing can change them any more (their goal
    /// window's end), to be written then: most are written beside the ticks, not at the end.
    settling: BinaryHeap<Reverse<(i64, usize)>>,
    /// The scenarios with a goal (an enrollment of one that completed can still reach it).
    with_goal: HashSet<String>,
    /// The enrollments' secondary indexes, dropped while the replay writes them.
    indexes: Vec<(String, String)>,
    by_customer: HashMap<String, Vec<usize>>,
    /// (next due time, id) of the active enrollments.
    due: BTreeSet<(i64, i64)>,
    /// Suppressed addresses (lower case).
    suppressions: HashMap<String, SuppressionKind>,
    /// Person-level entries by customer id (they follow a change of address).
    wishes: HashMap<String, SuppressionKind>,
    /// The customers whose simulated mail keeps its body (`None`: all).
    body_sample: Option<HashSet<String>>,
    /// Messages not yet written, with the virtual time of the tick that made them.
    unwritten: Vec<(i64, Vec<NewOutbox>)>,
    unwritten_rows: usize,
    /// Messages held before they are written.
    batch: usize,
    /// The last write queued, which runs after those before it: the database is written
    /// beside the ticks, which read nothing from it.
    writing: Option<tokio::task::JoinHandle<Result<()>>>,
    /// One permit per batch that may be queued.
    queue: std::sync::Arc<tokio::sync::Semaphore>,
    /// Messages that stand in for a delivery (queued ones).
    pub simulated: u64,
    /// Per scenario: those messages, the customers they went to, the first and last send.
    sends: BTreeMap<String, (i64, HashSet<u32>, i64, i64)>,
}

impl Replay {
    /// Starts copying the orders of the shop's SQLite file `shop` placed by the end of the
    /// period into the simulation database of `engine` (which the replay reads nothing from),
    /// and meanwhile loads from the shop itself the customers as they were at the period's
    /// start, the period's orders and the suppression list. Returns the state and how many
    /// orders came before the period and in it.
    pub async fn load(
        engine: &Engine,
        shop: &str,
        (from, to): (i64, i64),
        batch: usize,
    ) -> Result<(Self, (i64, i64))> {
        let store = engine.store();
        let body_sample = store.body_sample().await?;
        let indexes = store.drop_enrollment_indexes().await?;
        let file = shop.to_string();
        let copy = chain(None, store, move |s| async move {
            s.copy_orders_for_replay(&file, from, to).await.map(|_| ())
        });
        let source = Store::open_read_only(shop).await?;
        let customers = source.customers_as_of(from).await?;
        let orders = source.orders_between(from, to).await?;
        let suppressions = source.all_suppressions().await?;
        let wishes = source.all_suppressed_customers().await?;
        source.close().await;
        let history = customers.iter().map(|c| c.orders_count).sum();
        let period = orders.len() as i64;
        let mut customer_at = HashMap::with_capacity(customers.len());
        customer_at.extend(
            customers
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id.clone(), i as u32)),
        );
        let mut order_at = HashMap::with_capacity(orders.len());
        order_at.extend(orders.iter().enumerate().map(|(i, o)| (o.id.clone(), i)));
        let with_goal = engine
            .scenarios
            .iter()
            .filter(|s| s.goal.is_some())
            .map(|s| s.id.clone())
            .collect();
        let state = Self {
            customers,
            customer_at,
            orders,
            order_at,
            released: 0,
            enrollments: Vec::new(),
            written: Vec::new(),
            settling: BinaryHeap::new(),
            with_goal,
            indexes,
            by_customer: HashMap::new(),
            due: BTreeSet::new(),
            suppressions,
            wishes,
            body_sample,
            unwritten: Vec::new(),
            unwritten_rows: 0,
            batch,
            writing: Some(copy),
            queue: std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUED)),
            simulated: 0,
            sends: BTreeMap::new(),
        };
        Ok((state, (history, period)))
    }

    fn customer(&self, id: &str) -> Option<&CustomerRow> {
        Some(&self.customers[*self.customer_at.get(id)? as usize])
    }

    fn customer_mut(&mut self, id: &str) -> Option<&mut CustomerRow> {
        Some(&mut self.customers[*self.customer_at.get(id)? as usize])
    }

    /// Queues the messages held so far for writing if there are many of them (or `all`),
    /// with the enrollments that nothing can change after `now`: they are written after the
    /// writes queued before, while the ticks go on (unless `QUEUED` batches already wait).
    /// A write that failed is reported here, at once.
    pub async fn flush(&mut self, store: &Store, now: i64, all: bool) -> Result<()> {
        if self.writing.as_ref().is_some_and(|w| w.is_finished()) {
            self.wait().await?;
        }
        if self.unwritten_rows == 0 || (!all && self.unwritten_rows < self.batch) {
            return Ok(());
        }
        let permit = self.queue.clone().acquire_owned().await?;
        let batch = std::mem::take(&mut self.unwritten);
        self.unwritten_rows = 0;
        let settled = self.settled(now);
        self.writing = Some(chain(self.writing.take(), store, |s| async move {
            let written = s.write_replayed(&batch, &settled).await;
            drop(permit);
            written
        }));
        // Let the writer start, on a runtime of one thread too.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// The enrollments not yet written that nothing can change after `now`, with their ids.
    fn settled(&mut self, now: i64) -> Vec<(i64, NewEnrollment)> {
        let mut out = Vec::new();
        while let Some(&Reverse((at, i))) = self.settling.peek() {
            if at >= now {
                break;
            }
            self.settling.pop();
            if !std::mem::replace(&mut self.written[i], true) {
                out.push((i as i64 + 1, self.enrollments[i].clone()));
            }
        }
        out
    }

    /// Queues enrollment `i`, which just ended at `now`, to be written once nothing can change
    /// it: at once, or after its goal window if it completed without reaching a goal it has
    /// (never before the end if that window has no end).
    fn ended(&mut self, i: usize, now: i64) {
        let e = &self.enrollments[i];
        let at = match e.state.as_str() {
            "active" => return,
            "completed"
                if e.goal_reached_at.is_none() && self.with_goal.contains(&e.scenario_id) =>
            {
                match e.goal_deadline {
                    Some(deadline) => deadline,
                    None => return,
                }
            }
            _ => now,
        };
        self.settling.push(Reverse((at, i)));
    }

    async fn wait(&mut self) -> Result<()> {
        match self.writing.take() {
            Some(w) => w.await?,
            None => Ok(()),
        }
    }

    /// Writes everything left: messages, then the enrollments, and builds the enrollments'
    /// indexes.
    pub async fn finish(mut self, store: &Store, now: i64) -> Result<()> {
        self.flush(store, now, true).await?;
        self.wait().await?;
        let written = std::mem::take(&mut self.written);
        let rows: Vec<(i64, NewEnrollment)> = std::mem::take(&mut self.enrollments)
            .into_iter()
            .zip(written)
            .enumerate()
            .filter(|(_, (_, written))| !written)
            .map(|(i, (e, _))| (i as i64 + 1, e))
            .collect();
        store
            .write_replayed_enrollments(&rows, &self.indexes)
            .await?;
        Ok(())
    }

    /// Releases the orders placed by `now` as an import would: each customer's aggregates
    /// move, and each order becomes the event the tick reads, with its position among its
    /// customer's orders (capped like `orders_after`).
    fn release(&mut self, now: i64, nth_cap: Option<i64>) -> Vec<OrderEvent> {
        let upto =
            self.released + self.orders[self.released..].partition_point(|o| o.placed_at <= now);
        let mut events = Vec::with_capacity(upto - self.released);
        for i in self.released..upto {
            let o = &self.orders[i];
            let (customer_id, placed_at, total) = (o.customer_id.clone(), o.placed_at, o.total);
            let (id, currency) = (o.id.clone(), o.currency.clone());
            // An order of an unknown customer is not seen (the tick joins customers).
            let Some(c) = self.customer_mut(&customer_id) else {
                continue;
            };
            c.orders_count += 1;
            c.total_spent += total;
            c.first_order_at = Some(c.first_order_at.map_or(placed_at, |f| f.min(placed_at)));
            c.last_order_at = Some(c.last_order_at.map_or(placed_at, |l| l.max(placed_at)));
            // Orders come by (time, id): this one is the customer's latest.
            c.currency = Some(currency);
            events.push(OrderEvent {
                seq: i as i64 + 1,
                id,
                customer_id,
                placed_at,
                total,
                nth: nth_cap.map_or(c.orders_count, |cap| c.orders_count.min(cap + 1)),
                timezone: c.timezone.clone(),
            });
        }
        self.released = upto;
        events
    }

    fn lites(&self, customers: &[String]) -> Vec<EnrollmentLite> {
        customers
            .iter()
            .filter_map(|c| self.by_customer.get(c))
            .flatten()
            .map(|&i| {
                let e = &self.enrollments[i];
                EnrollmentLite {
                    id: i as i64 + 1,
                    scenario_id: e.scenario_id.clone(),
                    customer_id: e.customer_id.clone(),
                    order_id: e.order_id.clone(),
                    state: e.state.clone(),
                    triggered_at: e.triggered_at,
                    goal_deadline: e.goal_deadline,
                    goal_reached_at: e.goal_reached_at,
                }
            })
            .collect()
    }

    /// New enrollments; a duplicate trigger is ignored, as the unique key does.
    fn enroll(&mut self, new: Vec<NewEnrollment>, now: i64) -> u64 {
        let mut created = 0;
        for e in new {
            // The unique key (scenario, customer, trigger key), among the customer's own.
            let mine = self.by_customer.get(&e.customer_id).into_iter().flatten();
            let taken = mine
                .map(|&i| &self.enrollments[i])
                .any(|x| x.scenario_id == e.scenario_id && x.trigger_key == e.trigger_key);
            if taken {
                continue;
            }
            let index = self.enrollments.len();
            if e.state == "active" {
                if let Some(at) = e.next_due_at {
                    self.due.insert((at, index as i64 + 1));
                }
            }
            self.by_customer
                .entry(e.customer_id.clone())
                .or_default()
                .push(index);
            self.enrollments.push(e);
            self.written.push(false);
            self.ended(index, now);
            created += 1;
        }
        created
    }

    /// Goals reached by existing enrollments (`apply_order_batch`'s update, row by row).
    fn reach(&mut self, goals: &[GoalHit], now: i64) {
        for g in goals {
            let Some(e) = self.enrollments.get_mut(g.enrollment_id as usize - 1) else {
                continue;
            };
            if e.goal_reached_at.is_some() {
                continue;
            }
            e.goal_reached_at = Some(g.placed_at);
            e.goal_order_id = Some(g.order_id.clone());
            e.goal_revenue = Some(g.revenue);
            if e.state == "active" {
                if let Some(at) = e.next_due_at {
                    self.due.remove(&(at, g.enrollment_id));
                }
                e.state = "goal".into();
                e.next_due_at = None;
                e.ended_at = Some(now);
            }
            // Ended now, or completed and now past changing.
            self.ended(g.enrollment_id as usize - 1, now);
        }
    }

    fn due_enrollment(&self, id: i64) -> DueEnrollment {
        let e = &self.enrollments[id as usize - 1];
        DueEnrollment {
            id,
            scenario_id: e.scenario_id.clone(),
            customer_id: e.customer_id.clone(),
            order_id: e.order_id.clone(),
            vars: e.vars.clone(),
            next_step: e.next_step,
            next_step_id: e.next_step_id.clone(),
            next_due_at: e.next_due_at.unwrap_or_default(),
            triggered_at: e.triggered_at,
            enrolled_at: e.enrolled_at,
            arm: e.arm.to_string(),
        }
    }

    /// Applies a step's result (`apply_steps`' compare-and-set); returns whether it won and
    /// the step's message.
    fn advance(&mut self, a: StepAdvance, now: i64) -> (bool, Option<NewOutbox>) {
        let e = &mut self.enrollments[a.enrollment_id as usize - 1];
        if e.next_step != a.expected_step || e.state != "active" {
            return (false, None);
        }
        if let Some(at) = e.next_due_at {
            self.due.remove(&(at, a.enrollment_id));
        }
        e.next_step = a.next_step;
        e.next_step_id = a.next_step_id;
        e.next_due_at = a.next_due_at;
        e.state = a.state.into();
        e.ended_at = (a.state != "active").then_some(now);
        if let (true, Some(at)) = (a.state == "active", a.next_due_at) {
            self.due.insert((at, a.enrollment_id));
        }
        self.ended(a.enrollment_id as usize - 1, now);
        (true, a.outbox)
    }

    fn cancel(&mut self, id: i64, now: i64) {
        let e = &mut self.enrollments[id as usize - 1];
        if let Some(at) = e.next_due_at.take() {
            self.due.remove(&(at, id));
        }
        e.state = "cancelled".into();
        e.ended_at = Some(now);
        self.ended(id as usize - 1, now);
    }

    /// Per scenario: messages simulated, customers reached, first and last send time (as
    /// `Store::simulated_sends` reads them from the database).
    pub fn sends(&self) -> crate::store::Sends {
        self.sends
            .iter()
            .map(|(s, (n, customers, first, last))| {
                (s.clone(), *n, customers.len() as i64, *first, *last)
            })
            .collect()
    }

    fn hold(&mut self, now: i64, mut messages: Vec<NewOutbox>) {
        if messages.is_empty() {
            return;
        }
        for m in messages
            .iter_mut()
            .filter(|m| m.status == OutboxStatus::Queued)
        {
            if let Some(sample) = &self.body_sample {
                if !sample.contains(&m.customer_id) {
                    m.html = String::new();
                    m.body_text = String::new();
                }
            }
            self.simulated += 1;
            let customer = self
                .customer_at
                .get(&m.customer_id)
                .copied()
                .unwrap_or(u32::MAX);
            let entry = self
                .sends
                .entry(m.scenario_id.clone())
                .or_insert_with(|| (0, HashSet::new(), m.due_at, m.due_at));
            entry.0 += 1;
            entry.1.insert(customer);
            entry.2 = entry.2.min(m.due_at);
            entry.3 = entry.3.max(m.due_at);
        }
        self.unwritten_rows += messages.len();
        self.unwritten.push((now, messages));
    }
}

/// Runs `job` on a handle of `store` as a task of its own, once `after` is done (and not if
/// it failed).
fn chain<F, Fut>(
    after: Option<tokio::task::JoinHandle<Result<()>>>,
    store: &Store,
    job: F,
) -> tokio::task::JoinHandle<Result<()>>
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = crate::store::Result<()>> + Send + 'static,
{
    let store = store.clone();
    tokio::spawn(async move {
        if let Some(after) = after {
            after.await??;
        }
        Ok(job(store).await?)
    })
}

/// One due step's inputs: scenario, enrollment, customer, order, why it is withheld.
type Step<'a> = (
    &'a crate::scenario::Scenario,
    &'a DueEnrollment,
    &'a CustomerRow,
    Option<&'a OrderRow>,
    Option<(OutboxStatus, String)>,
);

impl Engine {
    /// `advance_one` for each step, in order, on every core: rendering is most of a replay's
    /// own time.
    fn advance_all(&self, steps: Vec<Step>, now: DateTime<Utc>) -> Vec<StepAdvance> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        if threads == 1 || steps.len() < 64 {
            return steps
                .into_iter()
                .map(|(s, e, c, o, blocked)| self.advance_one(s, e, c, o, blocked, now))
                .collect();
        }
        let chunk = steps.len().div_ceil(threads);
        let mut parts: Vec<Vec<Step>> = Vec::new();
        let mut steps = steps.into_iter().peekable();
        while steps.peek().is_some() {
            parts.push(steps.by_ref().take(chunk).collect());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    scope.spawn(move || {
                        part.into_iter()
                            .map(|(s, e, c, o, blocked)| self.advance_one(s, e, c, o, blocked, now))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a rendering thread panicked"))
                .collect()
        })
    }

    /// Whether a back-test can replay this engine in memory: no enabled scenario needs the
    /// nightly refresh (segment triggers and audiences, predicted next orders, `replenish`) or
    /// the database's running tallies (automatic variant winners).
    pub fn replayable(&self) -> bool {
        !self.uses_replenish()
            && !self.learns
            && !self.scenarios.iter().filter(|s| s.enabled).any(|s| {
                s.trigger.segment().is_some()
                    || s.audience_segment.is_some()
                    || matches!(s.trigger, Trigger::ExpectedNextOrder(_))
                    || s.steps.iter().any(|st| st.auto_winner.is_some())
            })
    }

    /// One tick at `now` over the replay's state: what `tick` does after the orders placed
    /// by `now` were imported, with every queued message delivered at once as simulated.
    pub fn replay_tick(&self, r: &mut Replay, now: DateTime<Utc>) -> TickReport {
        let mut report = TickReport::default();
        let events = r.release(to_millis(now), self.nth_cap());
        if !events.is_empty() {
            self.replay_orders(r, events, now, &mut report);
        }
        self.replay_due(r, now, &mut report);
        report
    }

    /// `plan_and_apply` over memory.
    fn replay_orders(
        &self,
        r: &mut Replay,
        events: Vec<OrderEvent>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) {
        let now_ms = to_millis(now);
        let lookback_start = to_millis(now - self.settings.trigger_lookback);
        let ids = distinct(events.iter().map(|o| o.customer_id.clone()));
        let (customers, full): (HashMap<String, CustomerRow>, HashMap<String, OrderRow>) =
            if self.needs_context() {
                (
                    ids.iter()
                        .filter_map(|id| r.customer(id).map(|c| (id.clone(), c.clone())))
                        .collect(),
                    events
                        .iter()
                        .filter_map(|o| r.order_at.get(&o.id))
                        .map(|&i| (r.orders[i].id.clone(), r.orders[i].clone()))
                        .collect(),
                )
            } else {
                Default::default()
            };
        let intervals = HashMap::new();
        let mut judge = ContextJudge {
            engine: self,
            customers: &customers,
            orders: &full,
            intervals: &intervals,
            now,
        };
        let existing = r.lites(&ids);
        let plan = plan_orders(
            &self.scenarios,
            &events,
            existing,
            now_ms,
            lookback_start,
            &mut judge,
        );
        report.orders_seen += events.len() as u64;
        report.goals_reached += plan.goals_reached();
        report.enrolled += r.enroll(plan.enrollments, now_ms);
        r.reach(&plan.goals, now_ms);
    }

    /// `advance_due` over memory.
    fn replay_due(&self, r: &mut Replay, now: DateTime<Utc>, report: &mut TickReport) {
        let now_ms = to_millis(now);
        let mut messages = Vec::new();
        loop {
            let page: Vec<i64> = r
                .due
                .iter()
                .take_while(|(at, _)| *at <= now_ms)
                .take(PAGE as usize)
                .map(|(_, id)| *id)
                .collect();
            if page.is_empty() {
                break;
            }
            let due: Vec<DueEnrollment> = page.iter().map(|&id| r.due_enrollment(id)).collect();
            let gone: Vec<i64> = due
                .iter()
                .filter(|e| !self.scenarios.iter().any(|s| s.id == e.scenario_id))
                .map(|e| e.id)
                .collect();
            for id in gone {
                r.cancel(id, now_ms);
            }
            let steps: Vec<Step> = due
                .iter()
                .filter_map(|e| {
                    let s = self.scenarios.iter().find(|s| s.id == e.scenario_id)?;
                    let c = r.customer(&e.customer_id)?;
                    let order = e
                        .order_id
                        .as_ref()
                        .and_then(|id| r.order_at.get(id))
                        .map(|&i| &r.orders[i]);
                    Some((s, e, c, order, blocked(&r.suppressions, &r.wishes, s, c)))
                })
                .collect();
            let advances = self.advance_all(steps, now);
            let mut won = 0;
            for a in advances {
                report.count(&a);
                let (applied, message) = r.advance(a, now_ms);
                won += u64::from(applied);
                messages.extend(message);
            }
            if won == 0 {
                break;
            }
        }
        r.hold(now_ms, messages);
    }
}
