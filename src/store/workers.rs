//! Several workers on one database: each one's heartbeat row, the PostgreSQL session locks that
//! say a worker is alive and which one leads (a dead process's connection closes and frees
//! them), and the schedule of the periodic jobs only the leader runs.

use super::{Result, Store, Target};
use sqlx::Connection as _;

/// The class of rebuy's two-key advisory locks ("rebu" in ASCII); key 0 is the leader's, each
/// worker's own is its owner's hash (never 0).
const LOCK_CLASS: i64 = 0x7265_6275;

/// A worker as `rebuy status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
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
    leading: bool,
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
    /// Connects and takes the worker's own lock.
    async fn connect(url: &str, key: i64) -> Result<sqlx::AnyConnection> {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        sqlx::query(&format!("SELECT pg_advisory_lock({LOCK_CLASS}, {key})"))
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }

    /// Whether this worker leads now: takes the leader's lock when it is free, and checks that
    /// the connection holding the locks is still up (a lost connection loses them: the worker
    /// reconnects, takes its own lock again, and leads only if the leader's is free).
    pub async fn lead(&mut self) -> Result<bool> {
        if let Some(conn) = &mut self.conn {
            if conn.ping().await.is_err() {
                self.conn = None;
                self.leading = false;
            }
        }
        if self.conn.is_none() {
            self.conn = Some(Self::connect(&self.url, self.key).await?);
        }
        if !self.leading {
            let conn = self.conn.as_mut().expect("connected above");
            let (got,): (i64,) = sqlx::query_as(&format!(
                "SELECT CAST(CASE WHEN pg_try_advisory_lock({LOCK_CLASS}, 0) THEN 1 ELSE 0 END AS BIGINT)"
            ))
            .fetch_one(conn)
            .await?;
            self.leading = got == 1;
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
        let conn = Presence::connect(url, key).await?;
        Ok(Some(Presence {
            url: url.clone(),
            key,
            conn: Some(conn),
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

    /// Removes worker `owner`'s row (a clean stop, or a dead worker once dealt with).
    pub async fn forget_worker(&self, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
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

    /// Records that `owner` started job `name` at `at` (`rebuy status` and the logs tell
    /// which worker ran it).
    pub async fn job_started(&self, name: &str, owner: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE job_schedule SET started_at = $1, started_by = $2 WHERE name = $3")
            .bind(at)
            .bind(owner)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
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
             next_at = excluded.next_at, \
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
