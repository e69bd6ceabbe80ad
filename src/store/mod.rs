//! The database: opening it, migrations, and every SQL statement rebuy runs. Nothing outside
//! this module writes SQL. Statements use `$n` placeholders, `ON CONFLICT` and `RETURNING` and
//! no SQLite-only functions, so that the same text serves PostgreSQL; where the two differ
//! (JSON aggregation, bulk reads) the statement is picked by `Store::backend`.

mod api;
mod bulk;
mod copy;
mod customers;
mod enrollments;
mod events;
mod experiments;
mod metrics;
mod orders;
mod orders_load;
mod outbox;
mod products;
mod segments;
mod simulation;
mod sql;
mod status;
mod suppressions;
mod team_mail;
mod tracking;
mod users;
mod workers;

pub use api::{KeyClaim, TokenRow};
pub use copy::{CopyRefused, TableCopy, SIMULATION_SOURCE};
pub use customers::{CustomerRow, NewCustomer};
pub use enrollments::{
    DueEnrollment, EndWhich, EndedEnrollment, EnrollmentLite, EnrollmentView, GoalHit,
    NewEnrollment, StepAdvance, GOAL_REACHED,
};
pub use events::{EventRow, EventsStored, NewEvent};
pub use experiments::{
    ArmCounts, ConversionDays, EnrollmentOutcome, OpenCount, Period, RecommendedCounts, StepCounts,
    TouchCounts, VariantDecision, VariantOutcome,
};
pub use metrics::{ChangedOutcome, ChangedPage, MetricsRow, RfmGroup, METRICS_COLUMNS};
pub use orders::{MovedOrder, Moves, NewOrder, OrderEvent, OrderRow, UpsertOutcome};
pub use orders_load::{LoadOutcome, OrderLoad};
pub use outbox::{
    Bounce, Content, NewOutbox, OutboxRow, OutboxStatus, Recorded, RetryTarget, Withheld,
};
pub use products::Product;
pub use segments::{MembershipChange, SegmentEvent};
pub use simulation::{is_simulation_file, Sends, SimulationSource, BODY_SAMPLE};
pub(crate) use sql::QueryBuilder;
pub use status::{FlowStatus, ScenarioStatus, Stall};
pub use suppressions::{Suppression, SuppressionKind, Suppressions};
pub use team_mail::TeamMailRow;
pub use tracking::{TrackedMessage, TrackingCounts, TrackingHit, TrackingRow};
pub use users::{AuditRow, CustomerHit, Picked, SessionRow, UserRow};
pub use workers::{Presence, WorkerRow};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Executor as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The database type every statement is written for: sqlx's `Any`, which hands each
/// statement to the backend the store was opened on (SQLite or PostgreSQL).
pub type Db = sqlx::Any;

/// The PostgreSQL advisory lock `write_tx` takes ("rebuy" in ASCII).
const WRITE_LOCK: i64 = 0x0072_6562_7579;

/// Rows per multi-row statement: well under SQLite's 32,766 bound values.
pub const BATCH: usize = 500;

/// Rows per multi-row statement of `columns` bound values each on `backend`: [`BATCH`] on
/// SQLite (measured best there); on PostgreSQL as many as its 65,535 bound values allow, up to
/// 2,000, since each statement is a round trip to the server.
pub(crate) fn batch(backend: Backend, columns: usize) -> usize {
    match backend {
        Backend::Sqlite => BATCH,
        Backend::Postgres => (60_000 / columns.max(1)).clamp(1, 2_000),
    }
}

/// Which database a store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file (or memory) on this machine: the default.
    Sqlite,
    /// A PostgreSQL 15+ server, which several workers can share.
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    /// No customer has this id or address, or (`shared`) several share the address.
    #[error("not found: {}", no_customer(given, *shared))]
    NoCustomer { given: String, shared: bool },
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
    /// `database:` names a file that is not a SQLite database (a CSV, a config file).
    #[error("{0} is not a SQLite database; check `database:` in the config (or REBUY_DATABASE): it names rebuy's database file, or a postgres:// URL")]
    NotSqlite(String),
    /// `database:` looks like a PostgreSQL URL with a typo (`postgres//host/db`).
    #[error("database '{0}' looks like a PostgreSQL URL but is not one; write it as postgres://user@host/database")]
    BadUrl(String),
    /// What the store was asked cannot be done on this backend (a back-test's scratch copy is
    /// always a SQLite file).
    #[error("{0}")]
    Unsupported(String),
}

fn no_customer(given: &str, shared: bool) -> String {
    if shared {
        format!("several customers share the e-mail '{given}'; use the customer id")
    } else {
        format!("no customer with id or e-mail '{given}'")
    }
}

impl StoreError {
    /// What was not found, for a "not found" answer; `None` for every other error.
    pub fn not_found(&self) -> Option<String> {
        match self {
            StoreError::NotFound(what) => Some(what.clone()),
            StoreError::NoCustomer { given, shared } => Some(no_customer(given, *shared)),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where a store's database is and how its connections are set up.
#[derive(Debug, Clone)]
enum Target {
    Sqlite(SqliteTarget),
    /// The server's URL as given (`postgres://…`).
    Postgres(String),
}

/// A SQLite database: its file (never in memory: see `parse`), whether it may be created or written, and
/// the `PRAGMA`s each connection runs when it opens.
#[derive(Debug, Clone)]
struct SqliteTarget {
    file: PathBuf,
    /// The options of a `sqlite:` URL (after `?`), which SQLite reads after rebuy's own.
    options: Option<String>,
    create: bool,
    read_only: bool,
    pragmas: Vec<(&'static str, String)>,
}

impl SqliteTarget {
    /// The database at `target` (a path or `sqlite:` URL): created if missing, WAL, a busy
    /// timeout, foreign keys, a 256 MiB page cache (a ceiling, not an allocation) and in-memory
    /// temporaries: the tick and imports touch indexes at random.
    fn parse(target: &str) -> Result<Self> {
        // A plain path is a file name as it is: read as a URL, `?`, `#` or `%` in it would not be.
        let in_memory = target.is_empty()
            || target.starts_with(':')
            || target.starts_with("sqlite::memory:")
            || target.contains("mode=memory");
        if in_memory {
            // sqlx's `Any` opens each connection from the URL anew: each would get a database
            // of its own.
            return Err(StoreError::Unsupported(
                "an in-memory SQLite database cannot be shared by rebuy's connections; \
                 give `database:` a file (a temporary folder will do)"
                    .into(),
            ));
        }
        let file = if target.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(target)?;
            options.get_filename().to_path_buf()
        } else {
            PathBuf::from(target)
        };
        let file = real_path(&file)?;
        let options = target
            .strip_prefix("sqlite:")
            .and_then(|url| url.split_once('?'))
            .map(|(_, options)| options.to_string());
        Ok(Self {
            file,
            options,
            create: true,
            read_only: false,
            pragmas: vec![
                ("busy_timeout", "10000".into()),
                ("journal_mode", "WAL".into()),
                ("foreign_keys", "ON".into()),
                ("synchronous", "NORMAL".into()),
                ("cache_size", "-262144".into()),
                ("temp_store", "memory".into()),
            ],
        })
    }

    /// Sets (or replaces) one `PRAGMA`.
    fn pragma(mut self, name: &'static str, value: &str) -> Self {
        match self.pragmas.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.pragmas.push((name, value.to_string())),
        }
        self
    }

    /// The URL sqlx opens: the absolute file name with every byte a URL would read specially
    /// escaped (SQLite's URL parser unescapes it).
    fn url(&self) -> String {
        const ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'.')
            .remove(b'-')
            .remove(b'_');
        let file = &self.file;
        let mode = match (self.read_only, self.create) {
            (true, _) => "ro",
            (false, true) => "rwc",
            (false, false) => "rw",
        };
        let name = percent_encoding::percent_encode(file.as_os_str().as_encoded_bytes(), ESCAPE);
        match &self.options {
            Some(options) => format!("sqlite://{name}?mode={mode}&{options}"),
            None => format!("sqlite://{name}?mode={mode}"),
        }
    }

    /// The statements each new connection runs first.
    fn setup(&self) -> String {
        self.pragmas
            .iter()
            .map(|(name, value)| format!("PRAGMA {name} = {value};"))
            .collect()
    }
}

/// `file` as an absolute path through its real folder: a URL reads `..` by its text, which a
/// symbolic link makes another folder than the file system's.
fn real_path(file: &std::path::Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(file)
        .map_err(|e| StoreError::Missing(format!("{}: {e}", file.display())))?;
    let (Some(folder), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Ok(absolute);
    };
    Ok(match std::fs::canonicalize(folder) {
        Ok(folder) => folder.join(name),
        // A missing folder: SQLite will say so when it opens the file.
        Err(_) => absolute,
    })
}

impl Target {
    fn parse(target: &str) -> Result<Self> {
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            Ok(Target::Postgres(target.to_string()))
        } else if looks_like_a_url(target) {
            Err(StoreError::BadUrl(target.to_string()))
        } else {
            Ok(Target::Sqlite(SqliteTarget::parse(target)?))
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

/// `postgres//host/db`, `postgresql:/host`, `postgress://host`: meant as a URL, not a file
/// name (a SQLite URL, `sqlite:…`, is one; `postgres/rebuy.db`, a file in a folder, is not).
fn looks_like_a_url(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("sqlite:") {
        return false;
    }
    lower.contains("://")
        || ["postgres:", "postgresql:", "postgres//", "postgresql//"]
            .iter()
            .any(|p| lower.starts_with(p))
}

/// Whether opening a SQLite file failed because it is not a database (SQLite's code 26,
/// `SQLITE_NOTADB`). Asked of SQLite itself on a connection of its own: the file is never
/// opened behind SQLite's back, since closing any other descriptor of a database file would
/// drop the locks this process's connections hold on it (POSIX advisory locks are per process).
fn is_not_a_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("26"))
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// How it was opened, for `lean` and `for_server`.
    target: Target,
}

/// Whether a database target names a PostgreSQL server rather than a SQLite file.
pub fn is_postgres(target: &str) -> bool {
    matches!(Target::parse(target), Ok(Target::Postgres(_)))
}

/// `target` fit to print: a PostgreSQL URL's password (in its user part or its `password=`
/// option) shown as `***`; anything else as it is.
pub fn redacted(target: &str) -> String {
    if !is_postgres(target) {
        return target.to_string();
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return target.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        _ => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let options: Vec<String> = query
                .split('&')
                .map(|o| match o.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => o.to_string(),
                })
                .collect();
            format!("{path}?{}", options.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A file of rebuy's own for the shop at `target`, ending in `.{extension}`: beside a SQLite
/// shop's file (`rebuy.db` → `rebuy.{extension}`); for a PostgreSQL shop, which has no file,
/// in `folder`, named after the database (`rebuy-<database>.{extension}`).
pub fn file_beside(target: &str, folder: &Path, extension: &str) -> PathBuf {
    match Target::parse(target) {
        Ok(Target::Sqlite(sqlite)) => sqlite.file.with_extension(extension),
        // A path rebuy cannot open says so when it is opened; this is only a name.
        Err(_) => PathBuf::from(target).with_extension(extension),
        Ok(Target::Postgres(url)) => {
            // The database's name only: never the URL's user, password or host.
            let database = sqlx::postgres::PgConnectOptions::from_str(&url)
                .ok()
                .and_then(|o| o.get_database().map(str::to_owned))
                .unwrap_or_default();
            let name: String = database
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                .collect();
            let name = if name.is_empty() {
                "postgres".into()
            } else {
                name
            };
            folder.join(format!("rebuy-{name}.{extension}"))
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `target`, a SQLite path or `sqlite:` URL
    /// (WAL mode with a busy timeout) or a `postgres://` URL, and applies the migrations of its
    /// backend (`migrations/sqlite/` or `migrations/postgres/`).
    pub async fn open(target: &str) -> Result<Self> {
        Self::connect(Target::parse(target)?, 4, true).await
    }

    /// Opens the database at `target`, which must exist already (see `StoreError::Missing`).
    pub async fn open_existing(target: &str) -> Result<Self> {
        let mut parsed = Target::parse(target)?;
        if let Target::Sqlite(sqlite) = &mut parsed {
            if !sqlite.file.exists() {
                return Err(StoreError::Missing(sqlite.file.display().to_string()));
            }
            sqlite.create = false;
        }
        Self::connect(parsed, 4, true).await
    }

    /// Opens the database at `target` to read only, as it is (no migrations): a back-test
    /// reads the shop's this way while it copies it.
    pub async fn open_read_only(target: &str) -> Result<Self> {
        let mut parsed = Target::parse(target)?;
        if let Target::Sqlite(sqlite) = &mut parsed {
            sqlite.create = false;
            sqlite.read_only = true;
            // A reader cannot change the file's journal mode (a file in the rollback-journal
            // mode would refuse every connection); it reads either.
            sqlite.pragmas.retain(|(name, _)| *name != "journal_mode");
        }
        Self::connect_with(parsed, 2, false, true).await
    }

    /// Opens a scratch database (a back-test's), which only this process uses and which a
    /// failed run simply makes anew: one connection, whose page cache is never invalidated by
    /// another; no rollback journal and no write-ahead log (each page is written once; a
    /// year's replay ran 1.5× slower with the journal kept in memory, which copies every page
    /// a bulk write touches); nothing synced to disk; no foreign-key checks (a replay writes
    /// its messages before the enrollments they belong to, which it writes at the end in their
    /// final state); long statements not logged. Always a SQLite file.
    pub async fn open_scratch(target: &str) -> Result<Self> {
        let sqlite = SqliteTarget::parse(target)?
            .pragma("synchronous", "OFF")
            .pragma("journal_mode", "OFF")
            .pragma("foreign_keys", "OFF");
        Self::connect_with(Target::Sqlite(sqlite), 1, true, true).await
    }

    /// Which backend this store speaks to.
    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    /// The SQL segment conditions must be compiled in for this store.
    pub fn segment_dialect(&self) -> crate::segment::Dialect {
        match self.backend() {
            Backend::Sqlite => crate::segment::Dialect::Sqlite,
            Backend::Postgres => crate::segment::Dialect::Postgres,
        }
    }

    /// A pool of `connections` on `target`, migrated first when `migrate`.
    async fn connect(target: Target, connections: u32, migrate: bool) -> Result<Self> {
        Self::connect_with(target, connections, migrate, false).await
    }

    /// [`Store::connect`]; `quiet` for passes that read or write a million rows on purpose:
    /// no "slow statement" warnings.
    async fn connect_with(
        target: Target,
        connections: u32,
        migrate: bool,
        quiet: bool,
    ) -> Result<Self> {
        install_drivers();
        let pool = match &target {
            Target::Sqlite(sqlite) => {
                let mut options = AnyConnectOptions::from_str(&sqlite.url())?;
                if quiet {
                    options = options.disable_statement_logging();
                }
                let setup = std::sync::Arc::new(sqlite.setup());
                // One connection of its own first: a file that is not a database is told at
                // once (the pool would retry for 30 s, logging each failure).
                let mut probe =
                    <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options).await?;
                let ready = probe.execute(setup.as_str()).await;
                sqlx::Connection::close(probe).await?;
                match ready {
                    Err(e) if is_not_a_database(&e) => {
                        return Err(StoreError::NotSqlite(sqlite.file.display().to_string()))
                    }
                    other => other?,
                };
                AnyPoolOptions::new()
                    .max_connections(connections)
                    .after_connect(move |conn, _| {
                        let setup = setup.clone();
                        Box::pin(async move {
                            conn.execute(setup.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Target::Postgres(url) => {
                let mut options = AnyConnectOptions::from_str(url)?;
                if quiet {
                    options = options.disable_statement_logging();
                }
                // One connection of its own first: a server that is not there, or that refuses
                // the role, is told at once with its reason (the pool would retry for 30 s and
                // then say only that it timed out).
                sqlx::Connection::close(
                    <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options).await?,
                )
                .await?;
                AnyPoolOptions::new()
                    .max_connections(connections.max(8))
                    .connect_with(options)
                    .await?
            }
        };
        if migrate {
            match target.backend() {
                Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
                Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
            }
        }
        Ok(Self { pool, target })
    }

    /// The same database for a long-running server (`rebuy run`, `rebuy serve`). On SQLite
    /// its connections never checkpoint the write-ahead log themselves (SQLite's default makes
    /// whichever commit crosses 1,000 pages copy them into the database and sync it, a stall
    /// of up to a few hundred milliseconds for the requests waiting on that commit); a task of
    /// its own checkpoints every 100 ms instead, passively (it never blocks a writer), until the
    /// store is closed. PostgreSQL checkpoints by itself.
    pub async fn for_server(self) -> Result<Self> {
        let Target::Sqlite(sqlite) = &self.target else {
            return Ok(self);
        };
        let target = Target::Sqlite(sqlite.clone().pragma("wal_autocheckpoint", "0"));
        let server = Self::connect(target, 4, false).await?;
        self.pool.close().await;
        let checkpointer = server.pool.clone();
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
        Ok(server)
    }

    /// A second handle on the same database with two connections for passes that read or
    /// write everything once (the metrics refresh, segment evaluation); on SQLite with a
    /// 16 MiB page cache per connection and temporary tables on disk: a big cache only holds
    /// pages they will not read again. Close it when done.
    pub async fn lean(&self) -> Result<Self> {
        let target = match &self.target {
            Target::Sqlite(sqlite) => Target::Sqlite(
                sqlite
                    .clone()
                    .pragma("cache_size", "-16384")
                    .pragma("temp_store", "file"),
            ),
            postgres => postgres.clone(),
        };
        Self::connect_with(target, 2, false, true).await
    }

    /// A transaction that takes the write lock at once (SQLite's `BEGIN IMMEDIATE`), for
    /// writes that read first: a deferred transaction that read before another writer
    /// committed could not upgrade to a writer. On PostgreSQL the same: one transaction-level
    /// advisory lock (`WRITE_LOCK`) held until commit, so that these writers take turns as on
    /// SQLite, and a `seq` (orders, events) is committed in the order it was handed out, which
    /// the engine's cursors rely on.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Db>> {
        match self.backend() {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Which file the database is now (device and inode), to notice it being deleted or
    /// replaced under a running process; `None` for a database in memory or a missing file.
    pub fn file_identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(self.file()?).ok()?;
        Some((meta.dev(), meta.ino()))
    }

    /// The PostgreSQL server's URL, for a database on one.
    pub fn server_url(&self) -> Option<&str> {
        match &self.target {
            Target::Postgres(url) => Some(url),
            Target::Sqlite(_) => None,
        }
    }

    /// The database's file: none for one in memory or on a server.
    pub fn file(&self) -> Option<PathBuf> {
        match &self.target {
            Target::Sqlite(sqlite) => Some(sqlite.file.clone()),
            Target::Postgres(_) => None,
        }
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

/// A flag as the schema stores it, a whole number 0 or 1 (PostgreSQL has no implicit cast
/// between integers and booleans; `Any` decodes no integer as `bool`). Fields read with
/// `#[sqlx(try_from = "Flag")]` are plain `bool`s; bind `i64::from(flag)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag(bool);

impl sqlx::Type<Db> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<Db>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Db>>::compatible(ty) || <bool as sqlx::Type<Db>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Db> for Flag {
    fn decode(
        value: sqlx::any::AnyValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        match <i64 as sqlx::Decode<Db>>::decode(value.clone()) {
            Ok(n) => Ok(Flag(n != 0)),
            Err(_) => Ok(Flag(<bool as sqlx::Decode<Db>>::decode(value)?)),
        }
    }
}

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
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

/// `sql` for `backend`: the store's statements use SQLite's JSON functions, which PostgreSQL
/// has under other names (`json_agg`, `json_build_array`; the result is cast to text in both).
pub(crate) fn dialect(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    match backend {
        Backend::Sqlite => std::borrow::Cow::Borrowed(sql),
        Backend::Postgres => std::borrow::Cow::Owned(
            sql.replace("json_group_array(", "json_agg(")
                .replace("json_array(", "json_build_array(")
                .replace("json_extract(a, '$[0]')", "(a->0)")
                .replace("json_extract(a, '$[1]')", "(a->1)")
                .replace("json_extract(a, '$[2]')", "(a->2)")
                .replace("json_extract(a, '$[3]')", "(a->3)"),
        ),
    }
}

/// The backend `conn` speaks to.
pub(crate) fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    match conn.backend_name() {
        "PostgreSQL" => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// Creates database `name` on the PostgreSQL server at `server` (a URL whose role may create
/// databases), dropping one of that name first; returns its URL. For tests, benchmarks and
/// the kill loop, which each want a fresh database.
pub async fn create_postgres_database(server: &str, name: &str) -> Result<String> {
    use sqlx::Connection as _;
    if name.contains('"') {
        return Err(StoreError::Unsupported(format!(
            "a database name with a quote: {name}"
        )));
    }
    let (server_part, query) = match server.split_once('?') {
        Some((s, q)) => (s, format!("?{q}")),
        None => (server, String::new()),
    };
    let Some((base, _)) = server_part.rsplit_once('/') else {
        return Err(StoreError::Unsupported(format!(
            "not a postgres:// URL ending in /database: {}",
            server.split('@').next_back().unwrap_or_default()
        )));
    };
    let mut conn = sqlx::PgConnection::connect(server).await?;
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::raw_sql(&statement).execute(&mut conn).await?;
    }
    Ok(format!("{base}/{name}{query}"))
}

/// Decodes a page that a query returned as one JSON array (see `Store::orders_after`).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Decode(e.to_string()))
}

/// Makes sqlx's `Any` able to open SQLite and PostgreSQL, and applies `configure_sqlite`,
/// once, before the first connection.
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        configure_sqlite();
        sqlx::any::install_default_drivers();
    });
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_mistyped_postgres_url_is_told_from_a_file_name() {
        for url in [
            "postgres//localhost/rebuy",
            "postgresql:/host/db",
            "postgress://h/db",
            "mysql://h/db",
        ] {
            assert!(super::looks_like_a_url(url), "{url}");
        }
        for file in [
            "rebuy.db",
            "postgres/rebuy.db",
            "./data/shop.db",
            "sqlite://rebuy.db",
            "sqlite:rebuy.db",
        ] {
            assert!(!super::looks_like_a_url(file), "{file}");
        }
    }

    use super::*;

    #[test]
    fn a_statement_stays_under_each_backends_bound_value_limit() {
        for columns in 1..=40 {
            assert_eq!(batch(Backend::Sqlite, columns), BATCH);
            let rows = batch(Backend::Postgres, columns);
            assert!(
                (1..=2_000).contains(&rows),
                "{columns} columns: {rows} rows"
            );
            assert!(rows * columns <= 65_535, "{columns} columns: {rows} rows");
        }
        assert_eq!(batch(Backend::Postgres, 6), 2_000);
        assert_eq!(batch(Backend::Postgres, 40), 1_500);
    }

    #[test]
    fn a_file_name_reaches_sqlite_as_it_is_and_url_options_come_after_rebuys() {
        let name = "/tmp/a b?c#d%41é.db";
        let url = SqliteTarget::parse(name).unwrap().url();
        let read = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap();
        assert_eq!(read.get_filename(), std::path::Path::new(name), "{url}");

        let url = SqliteTarget::parse("sqlite:/tmp/x.db?immutable=true")
            .unwrap()
            .url();
        assert_eq!(url, "sqlite:///tmp/x.db?mode=rwc&immutable=true");
        assert!(matches!(
            SqliteTarget::parse(":memory:"),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn every_sqlite_connection_runs_every_pragma() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db").display().to_string())
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            for (pragma, want) in [
                ("PRAGMA synchronous", 1),
                ("PRAGMA foreign_keys", 1),
                ("PRAGMA busy_timeout", 10_000),
                ("PRAGMA cache_size", -262_144),
                ("PRAGMA temp_store", 2),
            ] {
                let got: i64 = sqlx::query_scalar(pragma)
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(got, want, "{pragma}");
            }
        }
    }

    #[test]
    fn a_postgres_url_is_postgres_and_anything_else_sqlite() {
        assert!(is_postgres("postgres://u:p@localhost/shop"));
        assert!(is_postgres("postgresql://localhost/shop"));
        assert!(!is_postgres("rebuy.db"));
        assert!(!is_postgres("sqlite:rebuy.db"));
    }

    #[test]
    fn a_postgres_password_is_never_printed() {
        assert_eq!(
            redacted("postgres://rebuy:hunter2@db.example:5432/shop?sslmode=require"),
            "postgres://rebuy:***@db.example:5432/shop?sslmode=require"
        );
        assert_eq!(
            redacted("postgresql://rebuy@db.example/shop?sslmode=require&Password=hunter2"),
            "postgresql://rebuy@db.example/shop?sslmode=require&Password=***"
        );
        // An `@` in the password itself: the host is what follows the last one.
        assert_eq!(
            redacted("postgres://rebuy:a@b:c@db.example/shop"),
            "postgres://rebuy:***@db.example/shop"
        );
        assert_eq!(redacted("postgres://db.example"), "postgres://db.example");
        assert_eq!(redacted("shop:a@b.db"), "shop:a@b.db");
    }

    #[test]
    fn a_shops_own_files_go_beside_its_database_or_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shop.db");
        let folder = Path::new("/etc/rebuy");
        assert_eq!(
            file_beside(&db.display().to_string(), folder, "simulation.db"),
            real_path(&db).unwrap().with_extension("simulation.db")
        );
        assert_eq!(
            file_beside(
                "postgres://u:p@db.example:5432/hadamaru?sslmode=require",
                folder,
                "backtest.db"
            ),
            folder.join("rebuy-hadamaru.backtest.db")
        );
        // Nothing of the URL but a plain name reaches the file name.
        assert_eq!(
            file_beside("postgresql://u:p@db.example/x%20y.z", folder, "backtest.db"),
            folder.join("rebuy-xyz.backtest.db")
        );
        // Without a database in the URL: never its user, password or host.
        let bare = file_beside(
            "postgres://rebuy:hunter2@db.internal",
            folder,
            "backtest.db",
        );
        let bare = bare.display().to_string();
        assert!(
            !bare.contains("hunter2") && !bare.contains("internal"),
            "{bare}"
        );
    }

    #[test]
    fn json_aggregation_is_renamed_for_postgres_only() {
        let sql = "SELECT CAST(COALESCE(json_group_array(json_array(a, b)), '[]') AS TEXT)";
        assert_eq!(dialect(Backend::Sqlite, sql), sql);
        assert_eq!(
            dialect(Backend::Postgres, sql),
            "SELECT CAST(COALESCE(json_agg(json_build_array(a, b)), '[]') AS TEXT)"
        );
    }
}
