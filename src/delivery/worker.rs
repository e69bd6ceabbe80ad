//! This process as one of several workers on a database: its presence (the lock that tells the
//! others it is alive, taken before its first claim), whether it leads (runs the jobs that
//! must run once), and the heartbeat `rebuy status` lists.

use super::{owner, Deliverer};
use crate::store::{Backend, Store, WorkerRow};
use chrono::{DateTime, Utc};

/// The folder of the senders' locks and journals: beside a SQLite database (`<file>-senders`);
/// for a PostgreSQL database, in this machine's temporary folder under a name drawn from its
/// URL (a journal is trusted only within the boot that wrote it, and only workers on the same
/// machine can read it: the others learn a death from the server and treat all that worker
/// was sending as in doubt).
pub(super) fn senders_dir(store: &Store) -> Option<std::path::PathBuf> {
    if let Some(url) = store.server_url() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // One folder per user (made private by `OwnerFiles::create`): another account can
        // neither block nor rewrite this one's journals.
        use std::os::unix::fs::MetadataExt as _;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        return Some(
            std::env::temp_dir()
                .join(format!("rebuy-senders-{uid}"))
                .join(format!("{h:016x}")),
        );
    }
    let mut dir = store.file()?.into_os_string();
    dir.push("-senders");
    Some(dir.into())
}

/// A worker as `rebuy status` and `GET /v1/status` show it: its last heartbeat, and whether
/// its lock says it is alive (`None`: it cannot be told from here).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerView {
    #[serde(flatten)]
    pub row: WorkerRow,
    pub alive: Option<bool>,
}

/// Every worker that has left a heartbeat on `store`, with whether it is alive: its session
/// lock on PostgreSQL, its lock file beside a SQLite database (none: stopped).
pub async fn workers(store: &Store) -> anyhow::Result<Vec<WorkerView>> {
    let dir = senders_dir(store);
    let mut out = Vec::new();
    for row in store.workers().await? {
        let alive = match store.worker_alive(&row.owner).await? {
            Some(alive) => Some(alive),
            // SQLite: every worker is on this machine, so one without a held lock file has
            // stopped.
            None => dir
                .as_deref()
                .map(|d| matches!(owner::probe(d, &row.owner), owner::Previous::Alive)),
        };
        out.push(WorkerView { row, alive });
    }
    Ok(out)
}

impl Deliverer {
    /// This sender's name in the outbox's leases and in the workers' list.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// On PostgreSQL, takes this process's session lock before its first claim, so that no
    /// other worker takes it for dead while it sends. (On SQLite the lock is the file that
    /// `with_owner_files` made.)
    pub(super) async fn be_present(&self) -> anyhow::Result<()> {
        if self.store.backend() != Backend::Postgres {
            return Ok(());
        }
        let mut presence = self.presence.lock().await;
        if presence.is_none() {
            *presence = self.store.presence(&self.owner).await?;
        }
        Ok(())
    }

    /// Whether this process leads the workers on its database now: on PostgreSQL the holder
    /// of the leader's session lock, on SQLite of `leader.lock` beside the database (a
    /// deliverer without files, as in some tests, leads alone). A leader that dies frees its
    /// lock with its process, and the next worker to ask takes over.
    pub async fn lead(&self) -> anyhow::Result<bool> {
        self.be_present().await?;
        if let Some(presence) = self.presence.lock().await.as_mut() {
            return Ok(presence.lead().await?);
        }
        Ok(match &self.sender.files {
            Some((files, _)) => files.lead(),
            None => true,
        })
    }

    /// Whether worker `other` has stopped: dead by its lock (see `dead`), or, on SQLite,
    /// where every worker shares this machine, without a lock file at all.
    pub async fn gone(&self, other: &str) -> anyhow::Result<bool> {
        let dir = self.sender.files.as_ref().map(|(_, dir)| dir);
        if self.dead(other, dir).await?.is_some() {
            return Ok(true);
        }
        Ok(self.store.backend() == Backend::Sqlite
            && dir.is_some_and(|d| matches!(owner::probe(d, other), owner::Previous::Unknown)))
    }

    /// Leaves this worker's heartbeat at `now` (and whether it leads) for `rebuy status`.
    pub async fn heartbeat(&self, now: DateTime<Utc>, leading: bool) -> anyhow::Result<()> {
        let now = now.timestamp_millis();
        let started_at = *self.joined_at.get_or_init(|| now);
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.store
            .heartbeat(&WorkerRow {
                owner: self.owner.clone(),
                host,
                pid: i64::from(std::process::id()),
                started_at,
                heartbeat_at: now,
                leader: leading,
            })
            .await?;
        Ok(())
    }

    /// A clean stop: removes the heartbeat row and lets go of the presence (and leadership).
    pub async fn leave(&self) {
        if let Err(e) = self.store.forget_worker(&self.owner).await {
            tracing::warn!(error = %e, "cannot remove this worker's heartbeat");
        }
        if let Some(presence) = self.presence.lock().await.take() {
            presence.close().await;
        }
    }
}
