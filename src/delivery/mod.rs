//! Delivery: claims queued outbox rows with a lease, sends each outside any transaction and
//! records its outcome in a short statement of its own: sent, retried later with backoff
//! (transient failure), failed (permanent failure, or attempts used up), or unknown (the
//! connection failed after the data was sent).

mod limits;
mod mailer;
pub mod message;
mod retry;
mod session;
mod smtp;
mod unsubscribe;

pub use limits::{cap_free_at, quiet_until, withheld, Limits};
pub use mailer::{Mailer, SendError};
pub use retry::RetryPolicy;
pub use unsubscribe::Unsubscriber;

use crate::clock::to_millis;
use crate::domain::{mask_email, mask_emails_in};
use crate::store::{OutboxRow, OutboxStatus, Recorded, Store, SuppressionKind};
use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::{info, info_span, warn, Instrument};

/// What one delivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    pub claimed: u64,
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub unknown: u64,
    pub suppressed: u64,
    /// Marketing messages not sent: no consent (any more), or the frequency cap with
    /// `when_capped: skip`.
    pub skipped: u64,
    /// Not sent: later than their lateness limit.
    pub expired: u64,
}

/// Claimed messages are marked `sending` this many per message in flight at a time (16 per
/// SMTP connection), just ahead of their sends: a crash leaves at most two such slices and the
/// sends in flight `unknown`; the rest of a claimed batch goes back to the queue. Smaller
/// slices mean more writes, which cost throughput.
const SLICE_PER_SEND: usize = 8;
/// The recorder commits at most this many outcomes at once...
const RECORD_BATCH: usize = 1000;
/// ...and waits this long after the first for others to arrive. A crash in that window leaves
/// those messages `unknown` (their lease runs out), as any crash between send and record does.
const RECORD_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

pub struct Deliverer {
    store: Store,
    sender: Arc<Sender>,
    owner: String,
    lease: Duration,
    batch: u32,
    concurrency: usize,
    limits: Limits,
    default_zone: chrono_tz::Tz,
    /// Claiming and recording take turns: both write, and SQLite answers a second writer by
    /// making it sleep and retry, which stalls sending far longer than waiting here.
    writing: tokio::sync::Mutex<()>,
}

/// What a send needs, shared by the tasks that send in parallel.
struct Sender {
    store: Store,
    mailer: Mailer,
    from: Mailbox,
    policy: RetryPolicy,
    /// The global send rate (`delivery.rate_per_second`), if any.
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// Set when the server asked to slow down (421, 454) during the current round.
    throttled: std::sync::atomic::AtomicBool,
    /// How long the rest of the queue waits after such a reply.
    pause: Duration,
    /// DKIM signing, when configured.
    dkim: Option<lettre::message::dkim::DkimConfig>,
}

/// Pacing: a global rate, and the pause after a throttling reply.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub rate_per_second: Option<u32>,
    pub throttle_pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            rate_per_second: None,
            throttle_pause: Duration::seconds(60),
        }
    }
}

enum Outcome {
    Sent,
    Retry(String, Duration),
    /// Not tried: back to the queue after this long, no attempt counted.
    Deferred(String, Duration),
    Failed(String),
    Unknown(String),
}

impl Deliverer {
    pub fn new(
        store: Store,
        mailer: Mailer,
        from: Mailbox,
        policy: RetryPolicy,
        batch: u32,
        lease: Duration,
        pacing: Pacing,
    ) -> Self {
        let limiter = pacing
            .rate_per_second
            .and_then(std::num::NonZeroU32::new)
            .map(|r| {
                // Evenly spaced, no bursts: providers count per second.
                let quota = governor::Quota::per_second(r).allow_burst(std::num::NonZeroU32::MIN);
                governor::RateLimiter::direct(quota)
            });
        let concurrency = mailer.concurrency();
        Self {
            store: store.clone(),
            sender: Arc::new(Sender {
                store,
                mailer,
                from,
                policy,
                limiter,
                throttled: std::sync::atomic::AtomicBool::new(false),
                pause: pacing.throttle_pause,
                dkim: None,
            }),
            owner: format!("{}-{}", std::process::id(), rand::random::<u32>()),
            lease,
            batch: batch.max(1),
            concurrency,
            limits: Limits::default(),
            default_zone: chrono_tz::Asia::Tokyo,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Signs every message with DKIM. Call before the first delivery.
    pub fn with_dkim(mut self, dkim: lettre::message::dkim::DkimConfig) -> Self {
        Arc::get_mut(&mut self.sender)
            .expect("with_dkim is called before any delivery")
            .dkim = Some(dkim);
        self
    }

    /// Marketing limits (frequency cap, quiet hours) and the zone of customers without one.
    pub fn with_limits(mut self, limits: Limits, default_zone: chrono_tz::Tz) -> Self {
        self.limits = limits;
        self.default_zone = default_zone;
        self
    }

    /// Checks a claimed batch again at send time: suppression and consent may have changed
    /// since the messages were queued, and the marketing limits apply now. Returns the rows
    /// that may go now, and the recorded outcomes of those that must wait or do not go.
    ///
    /// `granted` holds the marketing messages this round let go so far, by customer (id,
    /// time): their outcomes may not be recorded yet when the next batch is checked, and the
    /// frequency cap must count them all the same.
    async fn hold_back(
        &self,
        rows: Vec<OutboxRow>,
        now: DateTime<Utc>,
        granted: &mut HashMap<String, Vec<(i64, i64)>>,
    ) -> anyhow::Result<(Vec<OutboxRow>, Vec<Recorded>)> {
        let emails: Vec<String> = rows.iter().map(|r| r.to_email.clone()).collect();
        let suppressed = self.store.suppressed(&emails).await?;
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.transactional == 0)
            .map(|r| r.customer_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let customers = if ids.is_empty() {
            Default::default()
        } else {
            self.store.customers_by_ids(&ids).await?
        };
        let now_ms = to_millis(now);
        let mut recent = match self.limits.cap {
            Some((_, per)) => {
                self.store
                    .recent_marketing_sends(&ids, now_ms - per.num_milliseconds())
                    .await?
            }
            None => Default::default(),
        };
        let (mut go, mut held) = (Vec::with_capacity(rows.len()), Vec::new());
        for row in rows {
            let transactional = row.transactional != 0;
            let customer = customers.get(&row.customer_id);
            let suppression = suppressed.get(&row.to_email.trim().to_lowercase()).copied();
            let consents = customer.is_some_and(|c| c.consents());
            if let Some((status, why)) = withheld(suppression, transactional, consents) {
                let why = format!("not sent: {why}");
                held.push(match status {
                    OutboxStatus::Suppressed => Recorded::suppressed(row.id, why),
                    _ => Recorded::skipped(row.id, why),
                });
                continue;
            }
            if let Some(limit) = row.expires_at.filter(|x| now_ms > *x) {
                let late = crate::domain::format_duration(Duration::milliseconds(now_ms - limit));
                let why = format!("not sent: {late} past its lateness limit (expires)");
                held.push(Recorded::expired(row.id, why));
                continue;
            }
            if transactional {
                go.push(row);
                continue;
            }
            let zone = customer
                .and_then(|c| c.timezone.as_deref())
                .and_then(|z| crate::domain::parse_timezone(z).ok())
                .unwrap_or(self.default_zone);
            if let Some((from, to)) = self.limits.quiet {
                if let Some(until) = quiet_until(now, zone, from, to) {
                    let why = format!(
                        "quiet hours in the customer's zone ({zone}) until {}",
                        until.with_timezone(&zone).format("%Y-%m-%d %H:%M")
                    );
                    held.push(Recorded::deferred(row.id, why, to_millis(until)));
                    continue;
                }
            }
            if let Some((max, per)) = self.limits.cap {
                let mine = granted.entry(row.customer_id.clone()).or_default();
                let mut sent = recent.remove(&row.customer_id).unwrap_or_default();
                sent.retain(|(id, _)| !mine.iter().any(|(m, _)| m == id));
                let times: Vec<i64> = sent.iter().chain(mine.iter()).map(|(_, at)| *at).collect();
                if let Some(free) = cap_free_at(&times, now_ms, max, per) {
                    let cap = format!(
                        "frequency cap: {max} marketing messages per {} days",
                        per.num_days()
                    );
                    held.push(if row.skip_when_capped != 0 {
                        Recorded::skipped(row.id, format!("skipped by the {cap}"))
                    } else {
                        Recorded::deferred(row.id, format!("waiting for the {cap}"), free)
                    });
                    continue;
                }
                mine.extend(sent);
                mine.push((row.id, now_ms));
            }
            go.push(row);
        }
        Ok((go, held))
    }

    /// Sends everything that is ready by `now`. One loop claims and checks batch after batch
    /// while the sends of the one before are still under way; sends run `concurrency` at a
    /// time, each a task of its own (building messages and talking SMTP use every core); their
    /// outcomes go to one recorder that writes whatever has arrived in one short transaction
    /// (group commit: no waiting, and no lock contention between concurrent writers).
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<DeliveryReport> {
        let unknown = self.store.expire_leases(to_millis(now)).await?;
        self.sender.throttled.store(false, Ordering::SeqCst);
        self.sender.mailer.resume();
        let (outcomes, recorder) = tokio::sync::mpsc::unbounded_channel();
        // One batch waits while another is sent: claiming never stalls the sends. Batches are
        // marked `sending` a few messages at a time just ahead of the sends, so a crash leaves
        // only those `unknown`; the rest of a claimed batch goes back to the queue.
        let (batches, mut claimed_rx) = tokio::sync::mpsc::channel::<Vec<OutboxRow>>(1);
        let (slices, mut ready) = tokio::sync::mpsc::channel::<Vec<OutboxRow>>(1);
        let slice = self.concurrency * SLICE_PER_SEND;
        let mark = async move {
            while let Some(rows) = claimed_rx.recv().await {
                let mut rows = rows.into_iter();
                loop {
                    let next: Vec<OutboxRow> = rows.by_ref().take(slice).collect();
                    if next.is_empty() {
                        break;
                    }
                    let Ok(slot) = slices.reserve().await else {
                        return Ok(());
                    };
                    slot.send(self.start_sending(next, now).await?);
                }
            }
            anyhow::Ok(())
        };
        let claim = {
            let outcomes = outcomes.clone();
            async move {
                let mut claimed = 0;
                let mut granted = HashMap::new();
                // After a throttling reply the rest waits for the next round.
                while !self.sender.throttled.load(Ordering::SeqCst) {
                    // Claim only when there is room for the batch: at most one waits.
                    let Ok(slot) = batches.reserve().await else {
                        break;
                    };
                    let writing = self.writing.lock().await;
                    let rows = self
                        .store
                        .claim_ready(
                            &self.owner,
                            to_millis(now),
                            to_millis(now + self.lease),
                            i64::from(self.batch),
                        )
                        .await?;
                    drop(writing);
                    if rows.is_empty() {
                        break;
                    }
                    claimed += rows.len() as u64;
                    let (rows, held) = self.hold_back(rows, now, &mut granted).await?;
                    for h in held {
                        let _ = outcomes.send(h);
                    }
                    slot.send(rows);
                }
                anyhow::Ok(claimed)
            }
        };
        let send = async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
            let mut tasks = tokio::task::JoinSet::new();
            while let Some(rows) = ready.recv().await {
                for row in rows {
                    let permit = limit.clone().acquire_owned().await.expect("never closed");
                    let (sender, tx) = (self.sender.clone(), outcomes.clone());
                    tasks.spawn(async move {
                        let outcome = sender.send_paced(&row, now).await;
                        // The recorder outlives every send; a closed channel means it
                        // failed, and its error is reported below.
                        let _ = tx.send(outcome);
                        drop(permit);
                    });
                    while tasks.try_join_next().is_some() {}
                }
            }
            drop(outcomes);
            while tasks.join_next().await.is_some() {}
        };
        let (claimed, marked, (), recorded) =
            tokio::join!(claim, mark, send, self.record(recorder, now));
        marked?;
        let mut report = DeliveryReport {
            unknown,
            claimed: claimed?,
            ..Default::default()
        };
        for r in recorded? {
            match r {
                OutboxStatus::Sent => report.sent += 1,
                OutboxStatus::Queued => report.retried += 1,
                OutboxStatus::Unknown => report.unknown += 1,
                OutboxStatus::Suppressed => report.suppressed += 1,
                OutboxStatus::Skipped => report.skipped += 1,
                OutboxStatus::Expired => report.expired += 1,
                _ => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// Marks checked messages `sending` just before their sends begin (until then a crash puts
    /// them back in the queue), and keeps only the rows that are now `sending` under this lease.
    async fn start_sending(
        &self,
        rows: Vec<OutboxRow>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let started = {
            let _writing = self.writing.lock().await;
            self.store
                .start_sending(&self.owner, to_millis(now), &ids)
                .await?
        };
        let started: std::collections::HashSet<i64> = started.into_iter().collect();
        Ok(rows
            .into_iter()
            .filter(|r| started.contains(&r.id))
            .collect())
    }

    /// Writes outcomes as they arrive, each batch in one transaction; returns their statuses.
    async fn record(
        &self,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Recorded>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<OutboxStatus>> {
        let mut statuses = Vec::new();
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            // Let more outcomes arrive: one commit for many saves more than the wait costs.
            tokio::time::sleep(RECORD_LINGER).await;
            while batch.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let _writing = self.writing.lock().await;
            self.store
                .record_outcomes(&self.owner, to_millis(now), &batch)
                .await?;
            statuses.extend(batch.drain(..).map(|r| r.status));
        }
        Ok(statuses)
    }
}

impl Sender {
    /// Sends one message at the global rate, unless the server asked to slow down, and says
    /// what to record.
    async fn send_paced(&self, row: &OutboxRow, now: DateTime<Utc>) -> Recorded {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        if self.throttled.load(Ordering::SeqCst) {
            let at = to_millis(now + self.pause);
            let why = "deferred: the server asked to slow down".to_string();
            return Recorded::deferred(row.id, why, at);
        }
        let span = info_span!("message", message_id = row.id, scenario = %row.scenario_id, step = %row.step_id);
        recorded(row.id, self.send_one(row, now).instrument(span).await, now)
    }

    async fn send_one(&self, row: &OutboxRow, now: DateTime<Utc>) -> Outcome {
        let mut message = match message::build(row, &self.from, now) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        match self.mailer.send(row.id, &message).await {
            Ok(()) => {
                info!(to = %mask_email(&row.to_email), "sent");
                Outcome::Sent
            }
            Err(SendError::Permanent(e)) => {
                warn!(error = %mask_emails_in(&e), "permanent failure");
                Outcome::Failed(e)
            }
            Err(SendError::Throttled(e)) => {
                warn!(error = %mask_emails_in(&e), pause_secs = self.pause.num_seconds(), "the server asks to slow down; sending pauses");
                self.throttled.store(true, Ordering::SeqCst);
                let delay = self.pause.max(
                    self.policy
                        .next_delay(row.attempts as u32, rand::random())
                        .unwrap_or(self.pause),
                );
                Outcome::Retry(e, delay)
            }
            Err(SendError::Bounced(e)) => {
                warn!(error = %mask_emails_in(&e), "the address was refused permanently; it is suppressed");
                let suppressed = self
                    .store
                    .suppress(
                        &row.to_email,
                        SuppressionKind::Bounce,
                        &e,
                        Some(&row.customer_id),
                        to_millis(now),
                    )
                    .await;
                if let Err(err) = suppressed {
                    warn!(error = %err, "could not add the address to the suppression list");
                }
                Outcome::Failed(e)
            }
            Err(SendError::NotTried { why, paused }) => {
                if paused {
                    self.throttled.store(true, Ordering::SeqCst);
                    Outcome::Deferred(format!("deferred: {why}"), self.pause)
                } else {
                    Outcome::Deferred(format!("not tried: {why}"), Duration::zero())
                }
            }
            Err(SendError::Unknown(e)) => {
                warn!(error = %mask_emails_in(&e), "outcome unknown; flagged, not retried (`rebuy outbox retry` re-sends it)");
                Outcome::Unknown(e)
            }
            Err(SendError::Transient(e)) => {
                match self.policy.next_delay(row.attempts as u32, rand::random()) {
                    Some(delay) => {
                        warn!(error = %mask_emails_in(&e), attempts = row.attempts, "transient failure; will retry");
                        Outcome::Retry(e, delay)
                    }
                    None => {
                        warn!(error = %mask_emails_in(&e), attempts = row.attempts, "transient failure; attempts used up");
                        Outcome::Failed(format!("gave up after {} attempts: {e}", row.attempts))
                    }
                }
            }
        }
    }
}

fn recorded(id: i64, outcome: Outcome, now: DateTime<Utc>) -> Recorded {
    match outcome {
        Outcome::Sent => Recorded::sent(id, to_millis(now)),
        Outcome::Retry(e, delay) => Recorded::retry(id, e, to_millis(now + delay)),
        Outcome::Deferred(e, delay) => Recorded::deferred(id, e, to_millis(now + delay)),
        Outcome::Failed(e) => Recorded::failed(id, e),
        Outcome::Unknown(e) => Recorded::unknown(id, e),
    }
}
