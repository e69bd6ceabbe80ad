//! Delivery: claims queued outbox rows with a lease, sends each outside any transaction and
//! records its outcome in a short statement of its own: sent, retried later with backoff
//! (transient failure), failed (permanent failure, or attempts used up), or unknown (the
//! connection failed after the data was sent).

mod limits;
mod mailer;
pub mod message;
mod owner;
mod retry;
mod session;
mod smtp;
mod unsubscribe;
mod worker;

pub use limits::{cap_free_at, quiet_until, suppression_for, withheld, Limits};
pub use mailer::{Mailer, SendError};
pub use retry::RetryPolicy;
pub use session::parse_reply_line;
pub use unsubscribe::Unsubscriber;
pub use worker::{workers, WorkerView};

use crate::clock::to_millis;
use crate::domain::{mask_email, mask_emails_in};
use crate::reasons::Reason;
use crate::store::{Bounce, OutboxRow, OutboxStatus, Recorded, Stall, Store, Withheld};
use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;
use lettre::Message;
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
    /// Sending is paused until then (milliseconds since the epoch): the server asked to slow
    /// down. Nothing was claimed this round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<i64>,
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

/// The time inside a delivery round: the round's given instant plus the time that has passed
/// since it began (tokio's clock, which tests can pause). Claims, leases, outcomes and retry
/// times each take it when they happen, not the round's start: a long round must not make a
/// lease shorter or a retry sooner than configured.
#[derive(Debug, Clone, Copy)]
struct RoundClock {
    start: DateTime<Utc>,
    began: tokio::time::Instant,
}

impl RoundClock {
    fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            began: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.start + Duration::from_std(self.began.elapsed()).unwrap_or_default()
    }

    fn millis(&self) -> i64 {
        to_millis(self.now())
    }
}

/// Why a round was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("delivery made no progress for {} s (no claim, no send, no outcome recorded); the round was abandoned and its unsent claims returned to the queue", .0.as_secs())]
pub struct Stalled(pub std::time::Duration);

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
    /// A round that makes no progress for this long is abandoned and reported.
    stall_limit: std::time::Duration,
    /// Turns true when the process is asked to stop: the round claims, marks and hands over
    /// nothing more, lets the sends in flight finish and puts the rest back in the queue.
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// On PostgreSQL, this process's presence (its session lock, and the leader's once it
    /// leads), taken before its first claim; see `worker.rs`.
    presence: tokio::sync::Mutex<Option<crate::store::Presence>>,
    /// When this process first showed itself (its heartbeat row's `started_at`).
    joined_at: std::sync::OnceLock<i64>,
}

/// What a send needs, shared by the tasks that send in parallel.
struct Sender {
    mailer: Mailer,
    from: Mailbox,
    policy: RetryPolicy,
    /// The global send rate (`delivery.rate_per_second`), if any.
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// When the server asked to slow down (421, 454) during the current round, in
    /// milliseconds since the epoch; 0 when it did not.
    throttled_at: std::sync::atomic::AtomicI64,
    /// How long the rest of the queue waits after such a reply.
    pause: Duration,
    /// DKIM signing, when configured.
    dkim: Option<lettre::message::dkim::DkimConfig>,
    /// Messages handed to the mailer whose outcome is not recorded yet: after a stall only
    /// the others may go back to the queue.
    handed: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Addresses the server refused for good during this round.
    bounced: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This process's lock and journal beside the database, and their folder.
    files: Option<(owner::OwnerFiles, std::path::PathBuf)>,
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
    /// Failed because the server refused the address for good: suppressed with the outcome.
    Bounced(String),
    /// Not sent: the address was refused for good moments ago.
    Suppressed(String),
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
            store,
            sender: Arc::new(Sender {
                mailer,
                from,
                policy,
                limiter,
                throttled_at: std::sync::atomic::AtomicI64::new(0),
                pause: pacing.throttle_pause,
                dkim: None,
                handed: Default::default(),
                bounced: Default::default(),
                files: None,
            }),
            owner: format!("{}-{}", std::process::id(), rand::random::<u32>()),
            lease,
            batch: batch.max(1),
            concurrency,
            limits: Limits::default(),
            default_zone: chrono_tz::Asia::Tokyo,
            writing: tokio::sync::Mutex::new(()),
            stall_limit: std::time::Duration::from_secs(600),
            stop: None,
            presence: tokio::sync::Mutex::new(None),
            joined_at: std::sync::OnceLock::new(),
        }
    }

    /// The shop's sender address (`shop.from`).
    pub fn from(&self) -> &Mailbox {
        &self.sender.from
    }

    /// Sends a mail to the shop's team (the targets digest) over the same transport: not a
    /// customer's mail, so it has no outbox row, cap or suppression; the caller records it.
    pub async fn send_to_team(&self, name: &str, message: &Message) -> Result<(), SendError> {
        self.sender.mailer.send_as(name, message).await
    }

    /// Stops rounds early when `stop` turns true (a shutdown signal): nothing more is claimed
    /// or handed over, the sends in flight finish (each bounded by the SMTP timeout) and are
    /// recorded, and what was claimed but not handed over goes back to the queue.
    pub fn with_stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// How long a round may go without progress before it is abandoned and reported
    /// (`delivery.stall_secs`).
    pub fn with_stall_limit(mut self, limit: std::time::Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// Signs every message with DKIM. Call before the first delivery.
    pub fn with_dkim(mut self, dkim: lettre::message::dkim::DkimConfig) -> Self {
        Arc::get_mut(&mut self.sender)
            .expect("with_dkim is called before any delivery")
            .dkim = Some(dkim);
        self
    }

    /// Keeps a lock for this process's life and a journal of the messages it hands to the
    /// transport in a folder beside the database (`<database>-senders`; for PostgreSQL in the
    /// machine's temporary folder, see `worker::senders_dir`), so that after a crash
    /// the next process puts back at once what this one had claimed but not handed over, and
    /// flags only the rest. Call before the first delivery; without it (a database in memory)
    /// a dead sender's messages wait for its lease.
    pub fn with_owner_files(mut self) -> anyhow::Result<Self> {
        let Some(dir) = worker::senders_dir(&self.store) else {
            return Ok(self);
        };
        let files = owner::OwnerFiles::create(&dir, &self.owner).map_err(|e| {
            anyhow::anyhow!("cannot create the sender's lock in {}: {e}", dir.display())
        })?;
        Arc::get_mut(&mut self.sender)
            .expect("with_owner_files is called before any delivery")
            .files = Some((files, dir));
        Ok(self)
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
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.transactional == 0)
            .map(|r| r.customer_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Every message's customer: a person's wish (unsubscribe, manual) follows them across
        // a change of address, recorded for them or on the address they have now.
        let everyone: Vec<String> = rows
            .iter()
            .map(|r| r.customer_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let customers = self.store.customers_by_ids(&everyone).await?;
        let emails: Vec<String> = rows
            .iter()
            .map(|r| r.to_email.clone())
            .chain(customers.values().map(|c| c.email.clone()))
            .collect();
        let found = self.store.suppressions_for(&emails, &everyone).await?;
        let (suppressed, wishes) = (found.by_email, found.by_customer);
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
            let of = |email: &str| suppressed.get(&email.trim().to_lowercase()).copied();
            let suppression = suppression_for(
                of(&row.to_email),
                &[
                    customer.and_then(|c| of(&c.email)),
                    wishes.get(&row.customer_id).copied(),
                ],
                transactional,
            );
            let consents = customer.is_some_and(|c| c.consents());
            if let Some((status, why)) = withheld(suppression, transactional, consents, false) {
                let why = why.to_string();
                let outcome = match status {
                    OutboxStatus::Suppressed => Recorded::suppressed(row.id, why),
                    _ => Recorded::skipped(row.id, why),
                };
                // As when the step is withheld at queueing (the engine): no later step may
                // follow a mail the customer never received.
                let why = Reason::StepWithheld {
                    step: row.step_id.clone(),
                };
                held.push(outcome.ending_enrollment(Withheld {
                    enrollment_id: row.enrollment_id,
                    step_index: row.step_index,
                    why: why.to_string(),
                }));
                continue;
            }
            if let Some(limit) = row.expires_at.filter(|x| now_ms > *x) {
                let late = crate::domain::format_duration(Duration::milliseconds(now_ms - limit));
                let why = Reason::PastLimit { late }.to_string();
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
                    let why = Reason::QuietHours {
                        zone: zone.to_string(),
                        until: until
                            .with_timezone(&zone)
                            .format("%Y-%m-%d %H:%M %:z")
                            .to_string(),
                    }
                    .to_string();
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
                    let (max, days) = (max, per.num_days());
                    held.push(if row.skip_when_capped != 0 {
                        let why = Reason::CapSkipped { max, days };
                        Recorded::skipped(row.id, why.to_string())
                    } else {
                        let why = Reason::CapWaiting { max, days };
                        Recorded::deferred(row.id, why.to_string(), free)
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

    /// Sends everything that is ready by `now`, unless a throttling pause is still running.
    /// A round that makes no progress for the stall limit is abandoned: logged as an error,
    /// kept for `rebuy status`, its unsent claims put back in the queue at once.
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<DeliveryReport> {
        self.be_present().await?;
        let unknown =
            self.recover_dead(now).await? + self.store.expire_leases(to_millis(now)).await?;
        if let Some(until) = self.paused_until(now).await? {
            return Ok(DeliveryReport {
                unknown,
                paused_until: Some(until),
                ..Default::default()
            });
        }
        let progress = std::sync::atomic::AtomicU64::new(0);
        let clock = RoundClock::new(now);
        let mut report = tokio::select! {
            r = self.round(clock, &progress) => r?,
            stalled = self.watchdog(&progress) => return Err(self.abandon(stalled, clock).await.into()),
        };
        report.unknown += unknown;
        if self.stopping() {
            // Claimed or marked, never handed over: back in the queue for the next process.
            let back = self.put_back_unsent(to_millis(now)).await?;
            info!(
                back,
                "stopping: the messages not handed over are back in the queue"
            );
        }
        self.forget_handed();
        let throttled = self.sender.throttled_at.swap(0, Ordering::SeqCst);
        if throttled != 0 {
            let until = throttled + self.sender.pause.num_milliseconds();
            // Kept in the database: the pause holds across rounds, restarts and processes.
            self.store.pause_delivery(until).await?;
            report.paused_until = Some(until);
        }
        Ok(report)
    }

    /// Puts this sender's claimed and marked messages back in the queue, except those handed
    /// to the transport and not recorded yet (they may have gone out: they stay `sending`).
    async fn put_back_unsent(&self, at: i64) -> crate::store::Result<u64> {
        let handed: Vec<i64> = {
            let handed = self.sender.handed.lock().expect("not poisoned");
            handed.iter().copied().collect()
        };
        self.store.release_unsent(&self.owner, at, &handed).await
    }

    /// Deals with the messages of senders whose process has died at once, without waiting for
    /// their leases: those they may have handed to the transport become `unknown`, the rest go
    /// back to the queue. Returns how many became `unknown`. A sender is dead when its lock is
    /// free: its file beside a SQLite database, its session lock on PostgreSQL (where its
    /// journal is read when it is on this machine; otherwise everything it was sending is in
    /// doubt). Dead workers' heartbeat rows go too.
    async fn recover_dead(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        let dir = self.sender.files.as_ref().map(|(_, dir)| dir);
        if dir.is_none() && self.store.backend() != crate::store::Backend::Postgres {
            return Ok(0);
        }
        let mut unknown = 0;
        for other in self.store.other_senders(&self.owner).await? {
            let Some(handed) = self.dead(&other, dir).await? else {
                continue;
            };
            let sending = self.store.sending_by(&other).await?;
            let in_doubt: Vec<i64> = match &handed {
                Some(h) => sending.into_iter().filter(|id| h.contains(id)).collect(),
                None => sending,
            };
            let (n, requeued) = self
                .store
                .recover_dead_sender(&other, to_millis(now), &in_doubt)
                .await?;
            // A crash recovered is worth the operator's eye; one that left nothing is not.
            if n + requeued > 0 {
                warn!(sender = %other, unknown = n, requeued, "a sender's process had stopped: {requeued} message(s) it had not handed over are back in the queue, {n} it may have sent are marked unknown");
            } else {
                info!(sender = %other, "a sender's process had stopped with nothing in hand");
            }
            if let Some(dir) = dir {
                owner::forget(dir, &other);
            }
            self.store.forget_worker(&other).await?;
            unknown += n;
        }
        for w in self.store.workers().await? {
            // A live worker writes its row again at its next cycle: removing one too many is
            // harmless.
            if w.owner != self.owner && self.gone(&w.owner).await? {
                self.store.forget_worker(&w.owner).await?;
                if let Some(dir) = dir {
                    owner::forget(dir, &w.owner);
                }
            }
        }
        Ok(unknown)
    }

    /// If sender `other` is dead, what it handed to the transport (`None` inside: not known,
    /// so everything it was sending is in doubt); `None` while it is alive or cannot be told.
    pub(super) async fn dead(
        &self,
        other: &str,
        dir: Option<&std::path::PathBuf>,
    ) -> anyhow::Result<Option<Option<std::collections::HashSet<i64>>>> {
        let local = dir.map(|d| owner::probe(d, other));
        Ok(match (self.store.worker_alive(other).await?, local) {
            // Its process holds its lock file on this machine: alive, whatever the server says
            // (a lost connection frees the session lock of a process that still sends).
            (_, Some(owner::Previous::Alive)) | (Some(true), _) => None,
            // Its process is gone (its lock file is free): its journal says what it handed over.
            (_, Some(owner::Previous::Dead { handed })) => Some(handed),
            // PostgreSQL, a worker of another machine whose session lock is free: it may still
            // be sending, so all it marked `sending` is in doubt (never put back), and its claims
            // go back (it can no longer start them: the claim is compare-and-set).
            (Some(false), _) => Some(None),
            (None, _) => None,
        })
    }

    /// Empties this process's journal once nothing it handed over is waiting to be recorded.
    fn forget_handed(&self) {
        let Some((files, _)) = &self.sender.files else {
            return;
        };
        if self.sender.handed.lock().expect("not poisoned").is_empty() {
            if let Err(e) = files.reset() {
                warn!(error = %e, "cannot empty the sender's journal");
            }
        }
    }

    /// The end of a throttling pause still running at `now`, if any.
    async fn paused_until(&self, now: DateTime<Utc>) -> anyhow::Result<Option<i64>> {
        let until = self.store.paused_until().await?;
        Ok(until.filter(|u| *u > to_millis(now)))
    }

    /// Resolves once `progress` has not moved for the stall limit.
    async fn watchdog(&self, progress: &std::sync::atomic::AtomicU64) -> Stalled {
        let check = (self.stall_limit / 8).max(std::time::Duration::from_millis(10));
        let (mut seen, mut since) = (progress.load(Ordering::SeqCst), tokio::time::Instant::now());
        loop {
            tokio::time::sleep(check).await;
            let now = progress.load(Ordering::SeqCst);
            if now != seen {
                (seen, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= self.stall_limit {
                return Stalled(self.stall_limit);
            }
        }
    }

    /// After a stall: the round's messages that never reached the mailer go back to the queue
    /// (those handed over stay `sending` and become `unknown` when their lease runs out: they
    /// may have gone out), and the stall is logged and kept for `rebuy status`.
    async fn abandon(&self, stalled: Stalled, clock: RoundClock) -> Stalled {
        let said = stalled.to_string();
        tracing::error!(stall_secs = stalled.0.as_secs(), "{said}");
        let at = clock.millis();
        let bounded = std::time::Duration::from_secs(10);
        let cleanup = async {
            self.put_back_unsent(at).await?;
            self.store.record_stall(&Stall { at, said }).await
        };
        match tokio::time::timeout(bounded, cleanup).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot record the stall"),
            Err(_) => warn!("cannot record the stall: the database did not answer in 10 s"),
        }
        stalled
    }

    /// One round: one loop claims and checks batch after batch while the sends of the one
    /// before are still under way; sends run `concurrency` at a time, each a task of its own
    /// (building messages and talking SMTP use every core); their outcomes go to one recorder
    /// that writes whatever has arrived in one short transaction (group commit: no waiting,
    /// and no lock contention between concurrent writers). Every claim, mark and record moves
    /// `progress`.
    async fn round(
        &self,
        clock: RoundClock,
        progress: &std::sync::atomic::AtomicU64,
    ) -> anyhow::Result<DeliveryReport> {
        self.sender.throttled_at.store(0, Ordering::SeqCst);
        self.sender.bounced.lock().expect("not poisoned").clear();
        self.sender.mailer.new_round();
        let moved = || progress.fetch_add(1, Ordering::SeqCst);
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
                    if next.is_empty() || self.stopping() {
                        break;
                    }
                    let Ok(slot) = slices.reserve().await else {
                        return Ok(());
                    };
                    slot.send(self.start_sending(next, clock).await?);
                    moved();
                }
            }
            anyhow::Ok(())
        };
        let claim = {
            let outcomes = outcomes.clone();
            async move {
                let mut claimed = 0;
                let mut granted = HashMap::new();
                // After a throttling reply the rest waits for the pause to end; on a
                // shutdown nothing more is claimed.
                while !self.sender.throttled() && !self.stopping() {
                    // Claim only when there is room for the batch: at most one waits.
                    let Ok(slot) = batches.reserve().await else {
                        break;
                    };
                    let writing = self.writing.lock().await;
                    let at = clock.now();
                    let rows = self
                        .store
                        .claim_ready(
                            &self.owner,
                            to_millis(at),
                            to_millis(at + self.lease),
                            i64::from(self.batch),
                        )
                        .await?;
                    drop(writing);
                    moved();
                    if rows.is_empty() {
                        break;
                    }
                    claimed += rows.len() as u64;
                    let (rows, held) = self.hold_back(rows, at, &mut granted).await?;
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
                    if self.stopping() {
                        break;
                    }
                    let (sender, tx) = (self.sender.clone(), outcomes.clone());
                    tasks.spawn(async move {
                        let outcome = sender.send_paced(&row, clock).await;
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
            tokio::join!(claim, mark, send, self.record(recorder, clock, &moved));
        marked?;
        let mut report = DeliveryReport {
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
    /// them back in the queue), with a lease that runs from now, and keeps only the rows that
    /// are now `sending` under this lease.
    async fn start_sending(
        &self,
        rows: Vec<OutboxRow>,
        clock: RoundClock,
    ) -> anyhow::Result<Vec<OutboxRow>> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let started = {
            let _writing = self.writing.lock().await;
            let now = clock.now();
            let lease_until = to_millis(now + self.lease);
            self.store
                .start_sending(&self.owner, to_millis(now), lease_until, &ids)
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
        clock: RoundClock,
        moved: &impl Fn() -> u64,
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
                .record_outcomes(&self.owner, clock.millis(), &batch)
                .await?;
            moved();
            {
                let mut handed = self.sender.handed.lock().expect("not poisoned");
                for r in &batch {
                    handed.remove(&r.id);
                }
            }
            statuses.extend(batch.drain(..).map(|r| r.status));
        }
        Ok(statuses)
    }
}

impl Sender {
    /// Sends one message at the global rate, unless the server asked to slow down, and says
    /// what to record.
    async fn send_paced(&self, row: &OutboxRow, clock: RoundClock) -> Recorded {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        if self.throttled() {
            let at = to_millis(clock.now() + self.pause);
            let why = Reason::SlowDown.to_string();
            return Recorded::deferred(row.id, why, at);
        }
        // The batch was checked against the suppression list when it was claimed; an address
        // refused since, in this round, is not tried again.
        let address = row.to_email.trim().to_lowercase();
        if self
            .bounced
            .lock()
            .expect("not poisoned")
            .contains(&address)
        {
            return Recorded::suppressed(row.id, Reason::BouncedThisRound.to_string());
        }
        let span = info_span!("message", message_id = row.id, scenario = %row.scenario_id, step = %row.step_id);
        self.handed.lock().expect("not poisoned").insert(row.id);
        // Noted before the hand-over: if this process dies, the next one knows this message
        // may have gone out. A message that cannot be noted is not sent.
        if let Some((files, dir)) = &self.files {
            if let Err(e) = files.handed(row.id) {
                self.handed.lock().expect("not poisoned").remove(&row.id);
                let why = format!(
                    "not tried: cannot write the sender's journal in {}: {e}",
                    dir.display()
                );
                warn!("{why}");
                return Recorded::deferred(row.id, why, to_millis(clock.now()));
            }
        }
        let outcome = self.send_one(row, clock).instrument(span).await;
        recorded(row, outcome, clock.now())
    }

    /// Whether the server asked to slow down during this round.
    fn throttled(&self) -> bool {
        self.throttled_at.load(Ordering::SeqCst) != 0
    }

    /// Remembers the first throttling reply of the round: the pause runs from it.
    fn throttle(&self, at: DateTime<Utc>) {
        let _ = self.throttled_at.compare_exchange(
            0,
            to_millis(at).max(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    async fn send_one(&self, row: &OutboxRow, clock: RoundClock) -> Outcome {
        let now = clock.now();
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
                self.throttle(clock.now());
                let delay = self.pause.max(
                    self.policy
                        .next_delay(row.attempts as u32, rand::random())
                        .unwrap_or(self.pause),
                );
                Outcome::Retry(e, delay)
            }
            Err(SendError::Bounced(e)) => {
                warn!(error = %mask_emails_in(&e), "the address was refused permanently; it is suppressed");
                self.bounced
                    .lock()
                    .expect("not poisoned")
                    .insert(row.to_email.trim().to_lowercase());
                Outcome::Bounced(e)
            }
            Err(SendError::AlreadyRefused(why)) => Outcome::Suppressed(why),
            Err(SendError::NotTried { why, paused }) => {
                if paused {
                    self.throttle(clock.now());
                    Outcome::Deferred(why, self.pause)
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
                        Outcome::Failed(format!(
                            "{} {} attempts: {e}",
                            crate::reasons::GAVE_UP,
                            row.attempts
                        ))
                    }
                }
            }
        }
    }
}

fn recorded(row: &OutboxRow, outcome: Outcome, now: DateTime<Utc>) -> Recorded {
    let id = row.id;
    match outcome {
        Outcome::Sent => Recorded::sent(id, to_millis(now)),
        Outcome::Retry(e, delay) => Recorded::retry(id, e, to_millis(now + delay)),
        Outcome::Deferred(e, delay) => Recorded::deferred(id, e, to_millis(now + delay)),
        Outcome::Failed(e) => Recorded::failed(id, e),
        Outcome::Suppressed(why) => Recorded::suppressed(id, why),
        Outcome::Bounced(reason) => Recorded::bounced(
            id,
            Bounce {
                email: row.to_email.clone(),
                customer_id: row.customer_id.clone(),
                reason,
            },
        ),
        Outcome::Unknown(e) => Recorded::unknown(id, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_round_clock_moves_on_with_the_time_that_passes_in_the_round() {
        let start = DateTime::parse_from_rfc3339("2026-11-01T03:00:00Z")
            .unwrap()
            .to_utc();
        let clock = RoundClock::new(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(std::time::Duration::from_secs(700)).await;
        assert_eq!(clock.now(), start + Duration::seconds(700));
    }
}
