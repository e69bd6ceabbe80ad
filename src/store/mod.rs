//! The database: opening it, migrations, and every SQL statement rebuy runs. Nothing outside
//! this module writes SQL. Statements use `$n` placeholders, `ON CONFLICT` and `RETURNING` and
//! no SQLite-only functions, so that the same text serves PostgreSQL.

mod api;
mod bulk;
mod customers;
mod enrollments;
mod events;
mod experiments;
mod metrics;
mod orders;
mod outbox;
mod products;
mod segments;
mod simulation;
mod status;
mod suppressions;
mod team_mail;
mod tracking;
mod users;

pub use api::{KeyClaim, TokenRow};
pub use customers::{CustomerRow, NewCustomer};
pub use enrollments::{
    DueEnrollment, EndWhich, EnrollmentLite, EnrollmentView, GoalHit, NewEnrollment, StepAdvance,
};
pub use events::{EventRow, NewEvent};
pub use experiments::{
    ArmCounts, ConversionDays, EnrollmentOutcome, OpenCount, Period, RecommendedCounts, StepCounts,
    TouchCounts, VariantDecision, VariantOutcome,
};
pub use metrics::{ChangedOutcome, ChangedPage, MetricsRow, RfmGroup, METRICS_COLUMNS};
pub use orders::{NewOrder, OrderEvent, OrderRow, UpsertOutcome};
pub use outbox::{Bounce, Content, NewOutbox, OutboxRow, OutboxStatus, Recorded, RetryTarget};
pub use products::Product;
pub use segments::{MembershipChange, SegmentEvent};
pub use simulation::{Sends, SimulationSource, BODY_SAMPLE};
pub use status::{FlowStatus, ScenarioStatus, Stall};
pub use suppressions::{Suppression, SuppressionKind};
pub use team_mail::TeamMailRow;
pub use tracking::{TrackedMessage, TrackingCounts, TrackingHit, TrackingRow};
pub use users::{AuditRow, CustomerHit, Picked, SessionRow, UserRow};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// The backend in use; PostgreSQL joins it in the scale-out issue.
pub type Db = Sqlite;

/// Rows per multi-row statement: well under SQLite's 32,766 bound values.
pub const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// From a bulk read on a connection of its own (see `bulk`).
    #[error("database error: {0}")]
    Read(#[from] rusqlite::Error),
    #[error("unexpected data from the database: {0}")]
    Decode(String),
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Only `import`, `run` and `init` create a database; every other command refuses a
    /// missing one rather than quietly working on a new, empty file.
    #[error("no database at {0}; check `database:` in the config (paths are relative to the config file) or create it with `rebuy init`")]
    Missing(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The connection options of the SQLite database at `target` (a path or `sqlite://` URL):
/// created if missing, WAL, a busy timeout, foreign keys.
fn options(target: &str) -> Result<SqliteConnectOptions> {
    // A plain path is a file name as it is: read as a URL, `?`, `#` or `%` in it would not be.
    let options = if target.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(target)?
    } else {
        SqliteConnectOptions::new().filename(target)
    };
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // A 256 MiB page cache (a ceiling, not an allocation) and in-memory temporaries: the
        // tick and imports touch indexes at random.
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory"))
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// How it was opened, for `lean`.
    options: SqliteConnectOptions,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `target` (a path or `sqlite://` URL)
    /// in WAL mode with a busy timeout, and applies the migrations in `migrations/`.
    pub async fn open(target: &str) -> Result<Self> {
        Self::connect(options(target)?, 4).await
    }

    /// Opens the database at `target`, which must exist already (see `StoreError::Missing`).
    pub async fn open_existing(target: &str) -> Result<Self> {
        let options = options(target)?;
        let file = options.get_filename();
        let in_memory = file.as_os_str().is_empty() || file.to_string_lossy().starts_with(':');
        if !in_memory && !file.exists() {
            return Err(StoreError::Missing(file.display().to_string()));
        }
        Self::connect(options.create_if_missing(false), 4).await
    }

    /// Opens the SQLite database at `target` to read only, as it is (no migrations): a
    /// back-test reads the shop's this way while it copies it.
    pub async fn open_read_only(target: &str) -> Result<Self> {
        let options = options(target)?.create_if_missing(false).read_only(true);
        Self::bulk(options).await
    }

    /// Opens a scratch database (a back-test's), which only this process uses and which a
    /// failed run simply makes anew: one connection, whose page cache is never invalidated by
    /// another; no rollback journal and no write-ahead log (each page is written once; a
    /// year's replay ran 1.5× slower with the journal kept in memory, which copies every page
    /// a bulk write touches); nothing synced to disk; no foreign-key checks (a replay writes
    /// its messages before the enrollments they belong to, which it writes at the end in their
    /// final state); long statements not logged.
    pub async fn open_scratch(target: &str) -> Result<Self> {
        let options = options(target)?
            .synchronous(SqliteSynchronous::Off)
            .journal_mode(SqliteJournalMode::Off)
            .foreign_keys(false);
        // Copying a shop reads and writes millions of rows on purpose: no "slow statement"
        // warnings.
        Self::connect(sqlx::ConnectOptions::disable_statement_logging(options), 1).await
    }

    async fn connect(options: SqliteConnectOptions, connections: u32) -> Result<Self> {
        configure_sqlite();
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, options })
    }

    /// The same database for a long-running server (`rebuy run`, `rebuy serve`): its
    /// connections never checkpoint the write-ahead log themselves (SQLite's default makes
    /// whichever commit crosses 1,000 pages copy them into the database and sync it, a stall
    /// of up to a few hundred milliseconds for the requests waiting on that commit); a task of
    /// its own checkpoints every 100 ms instead, passively (it never blocks a writer), until the
    /// store is closed.
    pub async fn for_server(self) -> Result<Self> {
        let options = self.options.clone().pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        self.pool.close().await;
        let checkpointer = pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !checkpointer.is_closed() {
                every.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&checkpointer)
                    .await
                {
                    if !checkpointer.is_closed() {
                        tracing::warn!(error = %e, "cannot checkpoint the write-ahead log");
                    }
                }
            }
        });
        Ok(Self { pool, options })
    }

    /// A second handle on the same database with a 16 MiB page cache per connection, two
    /// connections and temporary tables on disk, for passes that read or write everything
    /// once (the metrics refresh, segment evaluation): a big cache only holds pages they will
    /// not read again. Close it when done.
    pub async fn lean(&self) -> Result<Self> {
        let options = self
            .options
            .clone()
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "file");
        Self::bulk(options).await
    }

    /// Two connections with `options`, without migrations, for statements that read or write
    /// a million rows on purpose: no "slow statement" warnings.
    async fn bulk(options: SqliteConnectOptions) -> Result<Self> {
        let options = sqlx::ConnectOptions::disable_statement_logging(options);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        Ok(Self { pool, options })
    }

    /// A transaction that takes the write lock at once (SQLite's `BEGIN IMMEDIATE`), for
    /// writes that read first: a deferred transaction that read before another writer
    /// committed could not upgrade to a writer. The one backend-specific statement; with
    /// PostgreSQL a plain `BEGIN` does.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Which file the database is now (device and inode), to notice it being deleted or
    /// replaced under a running process; `None` for a database in memory or a missing file.
    pub fn file_identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(self.file()?).ok()?;
        Some((meta.dev(), meta.ino()))
    }

    /// The database's file, unless it lives in memory.
    pub fn file(&self) -> Option<std::path::PathBuf> {
        let file = self.options.get_filename();
        let name = file.to_string_lossy();
        (!name.is_empty() && !name.starts_with(':')).then(|| file.to_path_buf())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let v: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|(v,)| v))
    }

    /// A setting holding a whole number (a cursor, a count): 0 when unset or unreadable.
    pub async fn int_setting(&self, key: &str) -> Result<i64> {
        Ok(self
            .setting(key)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Stores `value` under `key`, replacing any value.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores `value` under `key` unless a value is there already; returns the stored value.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self
            .setting(key)
            .await?
            .unwrap_or_else(|| value.to_string()))
    }
}

/// Appends `(…, …)` with one bound value per id: for `WHERE x IN` lists.
pub(crate) fn push_in_list<'a, S: AsRef<str> + 'a>(
    qb: &mut QueryBuilder<'a, Db>,
    ids: impl IntoIterator<Item = &'a S>,
) {
    qb.push("(");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id.as_ref());
    }
    sep.push_unseparated(")");
}

/// Decodes a page that a query returned as one JSON array (see `Store::orders_after`).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Decode(e.to_string()))
}

/// Process-wide SQLite settings, applied once before the first connection: no memory
/// statistics, which otherwise take a global mutex on every allocation SQLite makes (about 5%
/// of an import's time under `perf`). Has no effect if SQLite was already initialised.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection is opened by this process
        // (sqlx opens them only in `connect_with` below); SQLite documents it as safe then,
        // and it returns SQLITE_MISUSE, changing nothing, if SQLite is already initialised.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0);
        }
    });
}
