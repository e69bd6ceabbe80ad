//! The daemon loop around the engine: on each cycle it runs the cron jobs that are due (imports,
//! then a metrics refresh), ticks
//! the engine and delivers what is ready. A failing cycle is logged and the next one runs; a
//! shutdown signal is honoured between cycles, so nothing is left half-recorded.

use crate::clock::Clock;
use crate::config::JobConfig;
use crate::delivery::{Deliverer, DeliveryReport};
use crate::engine::{Engine, TickReport};
use crate::import::{import_customers, import_orders, ImportOptions};
use crate::refresh::{refresh, refresh_changed, refresh_sku_intervals};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{error, info, info_span, Instrument};

/// A cron job and when it next runs. Its schedule is read in the shop's time zone, so
/// "30 2 * * *" means 02:30 where the shop is.
pub struct Job {
    pub config: JobConfig,
    pub schedule: cron::Schedule,
    zone: chrono_tz::Tz,
}

impl Job {
    pub fn new(config: JobConfig, schedule: cron::Schedule, zone: chrono_tz::Tz) -> Self {
        Self {
            config,
            schedule,
            zone,
        }
    }

    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&now.with_timezone(&self.zone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

pub struct Daemon {
    pub engine: Engine,
    pub deliverer: Deliverer,
    pub jobs: Vec<Job>,
    pub import: ImportOptions,
    /// The shop's words for jobs with a `digest` (the targets are the engine's).
    pub digest: crate::digest::DigestSettings,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CycleReport {
    pub jobs_run: u32,
    pub tick: TickReport,
    pub delivery: DeliveryReport,
}

impl CycleReport {
    /// Whether the cycle did anything a person would want to read about.
    pub fn busy(&self) -> bool {
        let (t, d) = (&self.tick, &self.delivery);
        self.jobs_run > 0
            || t.enrolled + t.goals_reached + t.queued + t.skipped + t.failed > 0
            || d.claimed > 0
    }

    /// Logs the cycle as fields (one per count): at info when it did something, at debug
    /// when it was idle.
    pub fn log(&self) {
        let (t, d) = (&self.tick, &self.delivery);
        if !self.busy() {
            tracing::debug!(orders_seen = t.orders_seen, "idle cycle");
            return;
        }
        info!(
            jobs_run = self.jobs_run,
            orders_seen = t.orders_seen,
            enrolled = t.enrolled,
            goals_reached = t.goals_reached,
            queued = t.queued,
            skipped = t.skipped,
            not_rendered = t.failed,
            completed = t.completed,
            claimed = d.claimed,
            sent = d.sent,
            retried = d.retried,
            failed = d.failed,
            unknown = d.unknown,
            suppressed = t.suppressed + d.suppressed,
            skipped_at_send = d.skipped,
            expired = d.expired,
            "cycle"
        );
    }
}

impl Daemon {
    /// One cycle at `now`: the heartbeat, due jobs (on the leader only), a tick, a delivery
    /// round. The tick and the round are safe on every worker at once (compare-and-set
    /// writes, claims with leases); the jobs run once, on whichever worker leads.
    pub async fn run_once(&mut self, now: DateTime<Utc>) -> anyhow::Result<CycleReport> {
        let mut report = CycleReport::default();
        let leading = self.deliverer.lead().await?;
        self.deliverer.heartbeat(now, leading).await?;
        if leading {
            for i in 0..self.jobs.len() {
                if let Some(slot) = self.job_due(i, now).await? {
                    if self.run_scheduled(i, slot, now).await? {
                        report.jobs_run += 1;
                    }
                }
            }
        }
        let started = std::time::Instant::now();
        report.tick = self.engine.tick(now).await?;
        let ticked = started.elapsed().as_secs_f64();
        report.delivery = self.deliverer.run_once(now).await?;
        let delivered = started.elapsed().as_secs_f64() - ticked;
        crate::telemetry::record_cycle(ticked, delivered, &report.delivery);
        Ok(report)
    }

    /// The time job `i` was due at, if it is due. Its schedule is kept in the database, so
    /// that whichever worker leads runs it once; a job seen for the first time (or whose
    /// schedule changed) is only scheduled, and a run missed while no worker led is made up
    /// once at the next cycle.
    async fn job_due(&self, i: usize, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let job = &self.jobs[i];
        let store = self.engine.store();
        let (name, schedule) = (&job.config.name, job.config.cron.value.as_str());
        match store.job_next(name, schedule).await? {
            Some(at) => Ok(DateTime::from_timestamp_millis(at).filter(|at| *at <= now)),
            None => {
                if let Some(next) = job.next_after(now) {
                    let next = next.timestamp_millis();
                    store.schedule_job(name, schedule, next, None).await?;
                }
                Ok(None)
            }
        }
    }

    /// Runs job `i` for its `slot`, if this worker can take the run (returns whether it ran),
    /// and schedules its next run once it has ended (a failed run is logged, and waits for its
    /// next time). A worker that dies mid-job leaves it due: the next leader runs it again.
    async fn run_scheduled(
        &self,
        i: usize,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let job = &self.jobs[i];
        let store = self.engine.store();
        let (name, schedule) = (&job.config.name, job.config.cron.value.as_str());
        let now_ms = now.timestamp_millis();
        let me = self.deliverer.owner();
        // A run another worker started and has not ended is its own, unless that worker has
        // gone: then the run is taken over (a job can run again after its leader died mid-run).
        let holder = store.job_holder(name).await?;
        if let Some(other) = holder.as_deref().filter(|h| *h != me) {
            if !self.deliverer.gone(other).await? {
                return Ok(false);
            }
        }
        let slot_ms = slot.timestamp_millis();
        if !store
            .take_job_run(name, slot_ms, me, now_ms, holder.as_deref())
            .await?
        {
            return Ok(false);
        }
        if let Err(e) = self.run_job(i, slot, now).await {
            error!(job = %name, error = %crate::diagnostic::explained(&e), "job failed");
        }
        // The next run after the one just made, never one already past.
        let next = job.next_after(now.max(slot)).map(|t| t.timestamp_millis());
        let next = next.unwrap_or(i64::MAX);
        store
            .schedule_job(name, schedule, next, Some(now_ms))
            .await?;
        Ok(true)
    }

    /// Job `i`'s imports and refresh, then its digest.
    async fn run_job(
        &self,
        i: usize,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let job = &self.jobs[i].config;
        async {
            self.import_and_refresh(i, now).await?;
            if let Some(digest) = &job.digest {
                let store = self.engine.store();
                let r = crate::digest::send(
                    store,
                    &self.deliverer,
                    &self.digest,
                    self.engine.targets(),
                    digest,
                    crate::digest::DigestRun {
                        job: &job.name,
                        slot,
                        now,
                    },
                )
                .await?;
                info!(
                    sent = r.sent,
                    failed = r.failed,
                    already = r.already,
                    "digest mailed"
                );
            }
            Ok(())
        }
        .instrument(info_span!("job", name = %job.name))
        .await
    }

    async fn import_and_refresh(&self, i: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
        let job = &self.jobs[i].config;
        let store = self.engine.store();
        {
            if let Some(f) = &job.import_customers {
                let r = import_customers(store, f, &self.import, now).await?;
                info!(
                    inserted = r.inserted,
                    updated = r.updated,
                    rejected = r.rejected.len(),
                    "customers imported"
                );
            }
            if let Some(f) = &job.import_orders {
                let r = import_orders(store, f, &self.import, now).await?;
                info!(
                    inserted = r.inserted,
                    updated = r.updated,
                    rejected = r.rejected.len(),
                    "orders imported"
                );
            }
            if job.refresh_metrics {
                let zone = self.jobs[i].zone;
                let as_of = now.with_timezone(&zone).date_naive();
                let segments = self.engine.segments();
                let imported = job.import_customers.is_some() || job.import_orders.is_some();
                // After an import only the customers it touched are recomputed; a job
                // without imports (the nightly one) moves everyone to the new day.
                if imported {
                    let now_ms = now.timestamp_millis();
                    if let Some(r) = refresh_changed(store, as_of, zone, now_ms, segments).await? {
                        info!(
                            customers = r.customers,
                            secs = r.secs,
                            "metrics of changed customers refreshed"
                        );
                        return Ok(());
                    }
                }
                let r = refresh(
                    store,
                    as_of,
                    zone,
                    now.timestamp_millis(),
                    self.engine.segments(),
                    &|_| {},
                )
                .await?;
                info!(
                    customers = r.customers,
                    bgnbd = r.bgnbd.is_ok(),
                    gamma_gamma = r.gamma_gamma.is_ok(),
                    "metrics refreshed"
                );
                if self.engine.uses_replenish() {
                    let skus = refresh_sku_intervals(store, as_of, zone).await?;
                    info!(skus, "repeat intervals refreshed");
                }
            }
            Ok(())
        }
    }

    /// Cycles every `interval`, or at once when `wake` is notified (orders arrived over HTTP),
    /// until `shutdown` turns true. Errors are logged, never fatal, except one: the database
    /// file deleted or replaced under the daemon (it would go on writing into a file nobody
    /// else reads: an unsubscription recorded by another command would be lost to it). Then
    /// it stops, and says so; returns whether it stopped for that.
    pub async fn run(
        mut self,
        clock: Arc<dyn Clock>,
        interval: std::time::Duration,
        mut shutdown: watch::Receiver<bool>,
        wake: Arc<tokio::sync::Notify>,
        mut reloads: tokio::sync::mpsc::UnboundedReceiver<Engine>,
    ) -> Stopped {
        let file = self.engine.store().file_identity();
        loop {
            // Scenarios reloaded (SIGHUP) take over between cycles, never inside one.
            while let Ok(engine) = reloads.try_recv() {
                self.engine = engine;
            }
            if file.is_some() && self.engine.store().file_identity() != file {
                error!(
                    "the database file was deleted or replaced while rebuy ran; stopping so that nothing is written where no other command reads (restart rebuy run)"
                );
                self.deliverer.leave().await;
                return Stopped::DatabaseReplaced;
            }
            let now = clock.now();
            match self.run_once(now).await {
                Ok(r) => r.log(),
                Err(e) => {
                    error!(error = %crate::diagnostic::explained(&e), "cycle failed; retrying on the next tick")
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.deliverer.leave().await;
        info!("stopped cleanly");
        Stopped::Asked
    }
}

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A shutdown signal.
    Asked,
    /// Its database file was deleted or replaced.
    DatabaseReplaced,
}

/// A channel that turns true on the first SIGINT or SIGTERM: the daemon claims nothing more,
/// lets the sends in flight finish (each bounded by the SMTP timeout), records them and stops.
/// A second signal exits at once (status 130): messages handed over by then are settled by the
/// next start (`unknown` if they may have gone out, the rest back in the queue).
pub fn shutdown_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            error!("cannot listen for SIGINT and SIGTERM; stop rebuy with SIGKILL");
            return;
        };
        let mut asked = false;
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if asked {
                error!(
                    "{name} again: exiting now; messages handed over are settled at the next start"
                );
                std::process::exit(130);
            }
            asked = true;
            info!("{name}: claiming nothing more, finishing the sends in flight, then stopping (a second signal exits at once)");
            let _ = tx.send(true);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cron_line_is_read_in_the_shops_time_zone() {
        let config = JobConfig {
            name: "n".into(),
            cron: serde_saphyr::from_str::<JobConfig>("name: n\ncron: \"30 2 * * *\"\n")
                .unwrap()
                .cron,
            import_customers: None,
            import_orders: None,
            refresh_metrics: false,
            digest: None,
        };
        let job = Job::new(
            config,
            crate::config::parse_cron("30 2 * * *").unwrap(),
            chrono_tz::Asia::Tokyo,
        );
        let now = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        // 02:30 in Tokyo is 17:30 UTC the day before.
        assert_eq!(
            job.next_after(now).unwrap().to_rfc3339(),
            "2026-11-01T17:30:00+00:00"
        );
    }
}
