//! Back-tests: the stored order history replayed through the scenarios with a virtual clock,
//! in a database of its own. Orders before the period are history; the period's orders are
//! released as they were placed, one tick at a time. Replayed in memory (`engine::Replay`) when
//! the scenarios allow it, or else written through the same upsert the importer uses and
//! ticked by the engine as the daemon would; either way, whatever it enqueues is marked
//! `simulated` at its due time instead of being sent. Nothing is sent and the shop's database
//! is only read.

use crate::clock::to_millis;
use crate::engine::{Engine, Replay};
use crate::refresh::{refresh, refresh_sku_intervals};
use crate::store::{SimulationSource, Store};
use anyhow::Result;
use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `simulate` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulationRun {
    pub source: SimulationSource,
    /// Replayed in memory (`engine::Replay`) rather than ticked over the database.
    pub replayed: bool,
    /// A replay's count of its simulated messages (see `Store::simulated_sends`, which the
    /// ticked way reads instead).
    #[serde(skip)]
    pub sends: Option<crate::store::Sends>,
    pub ticks: u64,
    pub enrolled: u64,
    pub simulated: u64,
    /// Nightly metric and segment refreshes run (only when a scenario needs them).
    pub refreshes: u64,
    pub secs: f64,
    /// Where the time went: copying the shop's orders (replayed: none, the copy is written
    /// while the replay loads), releasing orders (replayed: loading the customers and orders),
    /// refreshes, ticks, marking (replayed: waiting for the last writes).
    pub copy_secs: f64,
    pub release_secs: f64,
    pub refresh_secs: f64,
    pub tick_secs: f64,
    pub mark_secs: f64,
}

/// The shop a back-test copies from: its SQLite file and how many customers were copied. For
/// a PostgreSQL shop the file is a copy of what a back-test reads, removed with the last
/// `Shop` that holds it.
#[derive(Debug, Clone)]
pub struct Shop {
    pub file: String,
    pub customers: i64,
    _copy: Option<Arc<ShopCopy>>,
}

/// A SQLite copy of a PostgreSQL shop's tables that a back-test reads
/// ([`crate::store::SIMULATION_SOURCE`]); its files are removed on drop.
#[derive(Debug)]
struct ShopCopy {
    file: PathBuf,
}

impl Drop for ShopCopy {
    fn drop(&mut self) {
        remove_database(&self.file);
    }
}

/// Removes a SQLite database and its journal files, if there.
fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Copies from the PostgreSQL shop at `url` the tables a back-test reads into a new SQLite
/// file beside `out` (`<out>.source.db`), in one snapshot of the shop, checking counts and
/// checksums on both sides.
async fn copy_postgres_shop(url: &str, out: &Path) -> Result<ShopCopy> {
    let copy = ShopCopy {
        file: out.with_extension("source.db"),
    };
    remove_database(&copy.file);
    // Read-only: no migrations are applied to the live shop (an older schema is refused by
    // the copy, naming what is missing).
    let shop = Store::open_read_only(url).await?;
    // A shop file like any other (WAL): the replay opens it read-only, as it opens a SQLite shop.
    let target = Store::open(&copy.file.display().to_string()).await?;
    let copied = shop
        .copy_tables_to(&target, Some(crate::store::SIMULATION_SOURCE), |_| {})
        .await?;
    target.close().await;
    shop.close().await;
    let tables = copied.map_err(|refused| {
        anyhow::anyhow!("cannot copy the PostgreSQL shop for the back-test: {refused}")
    })?;
    if let Some(t) = tables.iter().find(|t| !t.matches()) {
        anyhow::bail!(
            "the back-test's copy of table {} does not match the shop ({} rows, checksum {}; the copy has {} rows, checksum {}); run it again",
            t.table,
            t.source_rows,
            t.source_checksum,
            t.target_rows,
            t.target_checksum
        );
    }
    Ok(copy)
}

/// The simulation's database at `path`, made anew (an old one is removed), with the shop's
/// customers, suppression list and unsubscribe secret copied from `source` (the shop's SQLite
/// file, or its PostgreSQL URL: then through a checked SQLite copy beside `path`);
/// `simulate` copies the orders, in the way its mode reads them. Simulated mail keeps its
/// rendered body for a sample of customers (`store::BODY_SAMPLE`), or for all with
/// `keep_bodies`. Build the engine on it after this: it reads the shop's unsubscribe secret
/// from it.
pub async fn prepare(
    path: &Path,
    source: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    keep_bodies: bool,
) -> Result<(Store, Shop)> {
    remove_database(path);
    let copy = if crate::store::is_postgres(source) {
        Some(Arc::new(copy_postgres_shop(source, path).await?))
    } else {
        None
    };
    let file = copy
        .as_ref()
        .map_or_else(|| source.to_string(), |c| c.file.display().to_string());
    let store = Store::open_scratch(&path.display().to_string()).await?;
    let customers = store
        .copy_shop_for_simulation(&file, (to_millis(from), to_millis(to)), keep_bodies)
        .await?;
    let shop = Shop {
        file,
        customers,
        _copy: copy,
    };
    Ok((store, shop))
}

/// Whether the engine's scenarios need metrics and segments refreshed every night: segment
/// triggers and audiences, predicted next orders, `replenish`.
pub fn needs_nightly_refresh(engine: &Engine) -> bool {
    engine.uses_replenish()
        || engine.scenarios().iter().any(|s| {
            s.trigger.segment().is_some()
                || s.audience_segment.is_some()
                || matches!(s.trigger, crate::scenario::Trigger::ExpectedNextOrder(_))
        })
}

/// How the period is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In memory when the scenarios allow it (`Engine::replayable`), ticking otherwise.
    Auto,
    /// In memory when the scenarios allow it, writing whenever `batch` messages are held
    /// (`Auto` writes every 20,000; tests write often, to see the writes beside the ticks).
    Replay { batch: usize },
    /// Always the engine's own `tick` over the simulation database, hour by hour.
    Ticks,
}

impl Mode {
    /// Messages a replay holds before it writes them, if this mode replays.
    fn batch(self) -> Option<usize> {
        match self {
            Mode::Auto => Some(crate::engine::REPLAY_BATCH),
            Mode::Replay { batch } => Some(batch.max(1)),
            Mode::Ticks => None,
        }
    }
}

/// Replays `[from, to]` on `engine`, whose store `prepare` made from `shop`, ticking every
/// `step`. `on_tick(done, total)` reports progress.
pub async fn simulate(
    engine: &Engine,
    shop: Shop,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
    zone: Tz,
    on_tick: impl FnMut(u64, u64),
) -> Result<SimulationRun> {
    simulate_with(Mode::Auto, engine, shop, (from, to), step, zone, on_tick).await
}

/// `simulate`, in the given mode.
pub async fn simulate_with(
    mode: Mode,
    engine: &Engine,
    shop: Shop,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    step: Duration,
    zone: Tz,
    on_tick: impl FnMut(u64, u64),
) -> Result<SimulationRun> {
    let started = std::time::Instant::now();
    let total = ((to - from).num_milliseconds() / step.num_milliseconds().max(1)).max(0) as u64;
    let batch = mode.batch().filter(|_| engine.replayable());
    let replayed = batch.is_some();
    let t = std::time::Instant::now();
    let store = engine.store();
    let (from_ms, to_ms) = (to_millis(from), to_millis(to));
    // A replay copies them while it loads (see `Replay::load`).
    let (history_orders, period_orders) = if replayed {
        (0, 0)
    } else {
        store
            .copy_orders_for_ticks(&shop.file, from_ms, to_ms)
            .await?
    };
    let mut run = SimulationRun {
        source: SimulationSource {
            customers: shop.customers,
            history_orders,
            period_orders,
        },
        replayed,
        sends: None,
        ticks: 0,
        enrolled: 0,
        simulated: 0,
        refreshes: 0,
        secs: 0.0,
        copy_secs: t.elapsed().as_secs_f64(),
        release_secs: 0.0,
        refresh_secs: 0.0,
        tick_secs: 0.0,
        mark_secs: 0.0,
    };
    if let Some(batch) = batch {
        replay(
            engine,
            shop,
            &mut run,
            (from, to),
            step,
            (total, batch),
            on_tick,
        )
        .await?;
    } else {
        // The orders are copied: a PostgreSQL shop's SQLite copy goes now.
        drop(shop);
        ticks(engine, &mut run, (from, to), step, zone, total, on_tick).await?;
    }
    run.secs = started.elapsed().as_secs_f64();
    Ok(run)
}

/// The period in memory (`engine::Replay`): the times are loading (`release_secs`), ticking
/// (`tick_secs`) and writing (`mark_secs`).
async fn replay(
    engine: &Engine,
    shop: Shop,
    run: &mut SimulationRun,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    step: Duration,
    (total, batch): (u64, usize),
    mut on_tick: impl FnMut(u64, u64),
) -> Result<()> {
    let store = engine.store();
    let t = std::time::Instant::now();
    let (mut state, (history, period)) =
        Replay::load(engine, &shop.file, (to_millis(from), to_millis(to)), batch).await?;
    // The shop's orders are still being copied beside the replay (`Replay::load`): a
    // PostgreSQL shop's SQLite copy goes when this returns, after the last writes.
    run.source.history_orders = history;
    run.source.period_orders = period;
    run.release_secs = t.elapsed().as_secs_f64();
    let mut now = from;
    while now <= to {
        let t = std::time::Instant::now();
        run.enrolled += engine.replay_tick(&mut state, now).enrolled;
        run.tick_secs += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        state.flush(store, to_millis(now), false).await?;
        run.mark_secs += t.elapsed().as_secs_f64();
        run.ticks += 1;
        on_tick(run.ticks.min(total), total);
        now += step;
    }
    let t = std::time::Instant::now();
    run.simulated = state.simulated;
    run.sends = Some(state.sends());
    state.finish(store, to_millis(to)).await?;
    run.mark_secs += t.elapsed().as_secs_f64();
    Ok(())
}

/// The period ticked by the engine over the simulation database, as a live daemon would.
async fn ticks(
    engine: &Engine,
    run: &mut SimulationRun,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    step: Duration,
    zone: Tz,
    total: u64,
    mut on_tick: impl FnMut(u64, u64),
) -> Result<()> {
    let store = engine.store();
    let nightly = needs_nightly_refresh(engine);
    let sampled = store.body_sample().await?.is_some();
    let mut released = to_millis(from) - 1;
    let mut now = from;
    while now <= to {
        let t = std::time::Instant::now();
        release(store, released, to_millis(now)).await?;
        released = to_millis(now);
        run.release_secs += t.elapsed().as_secs_f64();
        if nightly && crosses_three_am(now, step, zone) {
            let t = std::time::Instant::now();
            nightly_refresh(engine, now, zone).await?;
            run.refreshes += 1;
            run.refresh_secs += t.elapsed().as_secs_f64();
        }
        let t = std::time::Instant::now();
        let tick = engine.tick(now).await?;
        run.enrolled += tick.enrolled;
        run.tick_secs += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        run.simulated += store.mark_simulated(to_millis(now), sampled).await?;
        run.mark_secs += t.elapsed().as_secs_f64();
        run.ticks += 1;
        on_tick(run.ticks.min(total), total);
        now += step;
    }
    Ok(())
}

/// Releases the orders placed in (`after`, `upto`] as an import would write them.
async fn release(store: &Store, after: i64, upto: i64) -> Result<()> {
    let orders = store.pending_orders(after, upto).await?;
    if orders.is_empty() {
        return Ok(());
    }
    store.upsert_orders(&orders).await?;
    Ok(())
}

/// Whether the tick at `now` is the first at or after 03:00 local time of its day.
fn crosses_three_am(now: DateTime<Utc>, step: Duration, zone: Tz) -> bool {
    let local = now.with_timezone(&zone);
    let prev = (now - step).with_timezone(&zone);
    let three = |t: &DateTime<Tz>| t.hour() >= 3;
    local.date_naive() != prev.date_naive() && three(&local)
        || local.date_naive() == prev.date_naive() && three(&local) && !three(&prev)
}

/// The nightly job of a live shop: metrics, RFM, predictions, segments (and SKU intervals).
async fn nightly_refresh(engine: &Engine, now: DateTime<Utc>, zone: Tz) -> Result<()> {
    let store = engine.store();
    let as_of = now.with_timezone(&zone).date_naive();
    refresh(
        store,
        as_of,
        zone,
        to_millis(now),
        engine.segments(),
        &|_| {},
    )
    .await?;
    if engine.uses_replenish() {
        refresh_sku_intervals(store, as_of, zone).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nightly_refresh_runs_once_a_day_at_the_first_tick_from_three() {
        let zone = chrono_tz::Asia::Tokyo;
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap(); // 09:00 JST
        let step = Duration::hours(1);
        let hits: Vec<DateTime<Utc>> = (0..72)
            .map(|h| start + Duration::hours(h))
            .filter(|t| crosses_three_am(*t, step, zone))
            .collect();
        // 03:00 JST is 18:00 UTC the day before.
        let expected: Vec<DateTime<Utc>> = [
            "2026-01-01T18:00:00Z",
            "2026-01-02T18:00:00Z",
            "2026-01-03T18:00:00Z",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(hits, expected);
        // Daily ticks at midnight UTC (09:00 JST) refresh every day.
        let daily = Duration::days(1);
        assert!((1..5).all(|d| crosses_three_am(start + Duration::days(d), daily, zone)));
    }
}
