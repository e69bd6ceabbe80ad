//! Several workers on one database: each one's heartbeat row, the PostgreSQL session locks that
//! say a worker is alive and which one leads (a dead process's connection closes and frees
//! them), and the schedule of the periodic jobs only the leader runs.

use super::{Result, Store, Target};
use sqlx::Connection as _;

/// The class of rebuy's two-key advisory locks ("rebu" in ASCII); key 0 is the leader's, each
/// worker's own is its owner's hash (never 0).
const LOCK_CLASS: i64 = 0x7265_6275;

/// A worker as `rebuy status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct WorkerRow {
    pub owner: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    #[sqlx(try_from = "super::Flag")]
    pub leader: bool,
}

/// A worker's hold on a PostgreSQL database for the life of its process: one connection of its
/// own, holding a session lock named after the worker (others read it in `pg_locks` to know it
/// is alive) and, once it leads, the leader's lock.
pub struct Presence {
    url: String,
    key: i64,
    conn: Option<sqlx::AnyConnection>,
    /// Whether the connection holds this worker's own lock (after a reconnect the server may
    /// not have ended the old session yet, which still holds it).
    held: bool,
    leading: bool,
}

/// How long a statement on the locks' connection may take before it counts as lost.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `what` within `LOCK_TIMEOUT`, or a timeout error.
async fn timed<T>(what: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(LOCK_TIMEOUT, what)
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut.into()))
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("key", &self.key)
            .field("leading", &self.leading)
            .finish_non_exhaustive()
    }
}

/// The lock key of `owner`: a stable 31-bit hash (FNV-1a), never the leader's 0.
fn owner_key(owner: &str) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in owner.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h & 0x7fff_ffff).max(1)
}

impl Presence {
    /// Tries to take the lock `(LOCK_CLASS, key)` on `conn`, without waiting.
    async fn try_lock(conn: &mut sqlx::AnyConnection, key: i64) -> Result<bool> {
        let (got,): (i64,) = sqlx::query_as(&format!(
            "SELECT CAST(CASE WHEN pg_try_advisory_lock({LOCK_CLASS}, {key}) THEN 1 ELSE 0 END AS BIGINT)"
        ))
        .fetch_one(conn)
        .await?;
        Ok(got == 1)
    }

    /// Whether this worker leads now: takes the leader's lock when it is free, and checks that
    /// the connection holding the locks is still up (a lost connection loses them: the worker
    /// reconnects, takes its own lock again, and leads only if the leader's is free). Each
    /// statement is bounded by `LOCK_TIMEOUT`; nothing here waits for a lock.
    pub async fn lead(&mut self) -> Result<bool> {
        if let Some(conn) = &mut self.conn {
            if timed(async { Ok(conn.ping().await?) }).await.is_err() {
                self.conn = None;
                self.held = false;
                self.leading = false;
            }
        }
        if self.conn.is_none() {
            let url = self.url.clone();
            self.conn =
                Some(timed(async move { Ok(sqlx::AnyConnection::connect(&url).await?) }).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        if !self.held {
            self.held = timed(Self::try_lock(conn, self.key)).await?;
        }
        if !self.leading {
            self.leading = timed(Self::try_lock(conn, 0)).await?;
        }
        Ok(self.leading)
    }

    /// Closes the connection, which frees both locks (a clean stop).
    pub async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

impl Store {
    /// On PostgreSQL, the presence of worker `owner` (its lock taken); `None` on SQLite, where
    /// a worker's lock is a file beside the database.
    pub async fn presence(&self, owner: &str) -> Result<Option<Presence>> {
        let Target::Postgres(url) = &self.target else {
            return Ok(None);
        };
        let key = owner_key(owner);
        let mut conn = timed(async { Ok(sqlx::AnyConnection::connect(url).await?) }).await?;
        let held = timed(Presence::try_lock(&mut conn, key)).await?;
        Ok(Some(Presence {
            url: url.clone(),
            key,
            conn: Some(conn),
            held,
            leading: false,
        }))
    }

    /// On PostgreSQL, whether worker `owner` is alive (its session lock is held); `None` on
    /// SQLite.
    pub async fn worker_alive(&self, owner: &str) -> Result<Option<bool>> {
        if !matches!(self.target, Target::Postgres(_)) {
            return Ok(None);
        }
        let (n,): (i64,) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND objsubid = 2 AND CAST(classid AS BIGINT) = $1 \
             AND CAST(objid AS BIGINT) = $2 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(LOCK_CLASS)
        .bind(owner_key(owner))
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(n > 0))
    }

    /// Records that worker `w` is alive at `w.heartbeat_at` (and whether it leads).
    pub async fn heartbeat(&self, w: &WorkerRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (owner, host, pid, started_at, heartbeat_at, leader) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, leader = excluded.leader",
        )
        .bind(&w.owner)
        .bind(&w.host)
        .bind(w.pid)
        .bind(w.started_at)
        .bind(w.heartbeat_at)
        .bind(i64::from(w.leader))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes worker `owner`'s row (a clean stop, or a dead worker once dealt with), and keeps
    /// it as the last worker that stopped, so that `rebuy status` can say when mail last had
    /// a daemon.
    pub async fn forget_worker(&self, owner: &str) -> Result<()> {
        // On PostgreSQL a transaction of its own, not the store's write lock: a stopping
        // worker must not wait behind a long write of another (systemd's stop timeout would
        // kill it first). SQLite's writes are short, and need `BEGIN IMMEDIATE`.
        let mut tx = match self.backend() {
            super::Backend::Sqlite => self.write_tx().await?,
            super::Backend::Postgres => self.pool.begin().await?,
        };
        let row: Option<WorkerRow> = sqlx::query_as(
            "SELECT owner, host, pid, started_at, heartbeat_at, leader FROM workers \
             WHERE owner = $1",
        )
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(w) = row {
            let json =
                serde_json::to_string(&w).map_err(|e| super::StoreError::Decode(e.to_string()))?;
            // The newest heartbeat wins: a stale row removed after a live one changes nothing.
            let kept: Option<(String,)> =
                sqlx::query_as("SELECT value FROM settings WHERE key = 'last_worker'")
                    .fetch_optional(&mut *tx)
                    .await?;
            let newer = kept
                .and_then(|(v,)| serde_json::from_str::<WorkerRow>(&v).ok())
                .is_none_or(|k| k.heartbeat_at <= w.heartbeat_at);
            if newer {
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ('last_worker', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(json)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("DELETE FROM workers WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last worker that stopped (see [`Store::forget_worker`]), if one ever did.
    pub async fn last_worker(&self) -> Result<Option<WorkerRow>> {
        Ok(self
            .setting("last_worker")
            .await?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Every worker that has left a heartbeat, most recent first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        Ok(sqlx::query_as(
            "SELECT owner, host, pid, started_at, heartbeat_at, leader FROM workers \
             ORDER BY heartbeat_at DESC, owner",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When job `name` runs next, if it has been scheduled with `schedule` (a job whose
    /// schedule changed is scheduled afresh).
    pub async fn job_next(&self, name: &str, schedule: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT next_at FROM job_schedule WHERE name = $1 AND schedule = $2")
                .bind(name)
                .bind(schedule)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(at,)| at))
    }

    /// The worker that started job `name`'s current run and has not ended it, if any.
    pub async fn job_holder(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT started_by FROM job_schedule WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(by,)| by))
    }

    /// Takes job `name`'s run due at `slot` for `owner`, if it is still due at that time and
    /// still held by `previous` (none, or a worker that has gone): compare-and-set, so two
    /// workers never take one run.
    pub async fn take_job_run(
        &self,
        name: &str,
        slot: i64,
        owner: &str,
        now: i64,
        previous: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE job_schedule SET started_by = $1, started_at = $2 \
             WHERE name = $3 AND next_at = $4 AND COALESCE(started_by, '') = $5",
        )
        .bind(owner)
        .bind(now)
        .bind(name)
        .bind(slot)
        .bind(previous.unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Schedules job `name` next at `next_at`; `finished_at`: when its run ended, if it ran.
    pub async fn schedule_job(
        &self,
        name: &str,
        schedule: &str,
        next_at: i64,
        finished_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_schedule (name, schedule, next_at, finished_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, \
             next_at = excluded.next_at, started_by = NULL, \
             finished_at = COALESCE(excluded.finished_at, job_schedule.finished_at)",
        )
        .bind(name)
        .bind(schedule)
        .bind(next_at)
        .bind(finished_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_keys_are_stable_positive_and_never_the_leaders() {
        assert_eq!(owner_key("1234-5678"), owner_key("1234-5678"));
        assert_ne!(owner_key("1234-5678"), owner_key("1234-5679"));
        for owner in ["", "a", "1-2", "999999-4294967295"] {
            let k = owner_key(owner);
            assert!((1..=0x7fff_ffff).contains(&k), "{owner}: {k}");
        }
    }
}
