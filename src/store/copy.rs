//! Copying a whole shop from one database to another (`rebuy db copy`): each table's rows read
//! in key order inside one snapshot of the source, inserted into the target in one
//! transaction, and a checksum per table computed on each side (the target's read back after
//! the commit).

use super::sql::QueryBuilder;
use super::{Backend, Result, Store, StoreError};
use futures::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

/// Tables that hold a process's state, not the shop's: not copied.
const NOT_COPIED: &[&str] = &["workers"];

/// Tables the migrations (or a first start) fill: replaced by the source's rows.
const FILLED_BY_MIGRATIONS: &[&str] = &["settings", "job_schedule"];

/// How a column's values are read and written: the four kinds both backends store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

/// A table as the copy sees it: its columns (name and kind), the columns it is ordered by, and
/// its identity column (PostgreSQL), whose sequence is moved past the copied ids.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<(String, Kind)>,
    pub key: Vec<String>,
    identity: Option<String>,
}

/// One value in transit.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What the copy did to one table: the rows and checksum on each side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_checksum: String,
    pub target_checksum: String,
}

impl TableCopy {
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_checksum == self.target_checksum
    }
}

/// Why a copy was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum CopyRefused {
    #[error("the target already holds data ({0} rows in table {1}); copy into an empty database (a new PostgreSQL database, or a SQLite file that does not exist yet)")]
    TargetNotEmpty(u64, String),
    #[error("table {table} has no column {column} in the source database; open the source once with this rebuy version (it applies the migrations), then copy again")]
    MissingColumn { table: String, column: String },
    #[error("table {0} is not in the source database; open the source once with this rebuy version (it applies the migrations), then copy again")]
    MissingTable(String),
    #[error("{count} values in {table}.{column} of the source are not numbers (SQLite stores any value in any column); fix them, then copy again")]
    NotANumber {
        table: String,
        column: String,
        count: i64,
    },
    #[error("the source has {0}, which the target does not know: the target was made by another rebuy version; copy with the version that made the source")]
    Unknown(String),
    #[error("{count} rows of {table} in the source belong to no customer (customer_id not in customers); import those customers into the source, or delete the rows, then copy again")]
    Orphans { table: String, count: i64 },
}

/// The tables a back-test reads from the shop's database (`Store::copy_shop_for_simulation`
/// and the order copies): what a PostgreSQL shop hands to a back-test's SQLite copy.
pub const SIMULATION_SOURCE: &[&str] = &["customers", "orders", "suppressions", "settings"];

/// Tables whose rows must belong to a stored customer but carry no foreign key on every
/// backend (PostgreSQL drops it for speed: migration `postgres/0003`): a copy checks them.
const OWNED_BY_CUSTOMERS: [&str; 2] = ["orders", "customer_metrics"];

/// The running checksum of a table's rows: SHA-256 over each value with its kind.
#[derive(Default)]
struct Checksum {
    hash: Sha256,
    rows: u64,
}

impl Checksum {
    fn add(&mut self, row: &[Value]) {
        for v in row {
            match v {
                Value::Null => self.hash.update([0u8]),
                Value::Int(i) => {
                    self.hash.update([1u8]);
                    self.hash.update(i.to_be_bytes());
                }
                Value::Real(f) => {
                    self.hash.update([2u8]);
                    self.hash.update(f.to_bits().to_be_bytes());
                }
                Value::Text(t) => {
                    self.hash.update([3u8]);
                    self.hash.update((t.len() as u64).to_be_bytes());
                    self.hash.update(t.as_bytes());
                }
                Value::Blob(b) => {
                    self.hash.update([4u8]);
                    self.hash.update((b.len() as u64).to_be_bytes());
                    self.hash.update(b);
                }
            }
        }
        self.rows += 1;
    }

    fn finish(self) -> (u64, String) {
        let digest = self.hash.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        (self.rows, hex)
    }
}

/// The kind of a column from its SQLite declared type (SQLite's affinity rules) or its
/// PostgreSQL data type.
fn kind_of(declared: &str) -> Kind {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Kind::Int
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Kind::Text
    } else if t.contains("BLOB") || t.contains("BYTEA") {
        Kind::Blob
    } else if t.contains("REAL")
        || t.contains("FLOA")
        || t.contains("DOUB")
        || t.contains("NUMERIC")
    {
        Kind::Real
    } else {
        Kind::Text
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Store {
    /// The shop's tables in the order they were created (which foreign keys follow), each
    /// with its columns and key.
    pub async fn tables(&self) -> Result<Vec<Table>> {
        let names: Vec<(String,)> = match self.backend() {
            Backend::Sqlite => {
                sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' \
                     AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY rowid",
                )
                .fetch_all(&self.pool)
                .await?
            }
            Backend::Postgres => {
                sqlx::query_as(
                    "SELECT CAST(c.relname AS TEXT) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relkind = 'r' \
                     AND c.relname NOT LIKE '\\_sqlx%' ORDER BY c.oid",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut tables = Vec::with_capacity(names.len());
        for (name,) in names {
            tables.push(self.table(&name).await?);
        }
        Ok(tables)
    }

    async fn table(&self, name: &str) -> Result<Table> {
        match self.backend() {
            Backend::Sqlite => {
                let cols: Vec<(String, String, i64)> =
                    sqlx::query_as("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                        .bind(name)
                        .fetch_all(&self.pool)
                        .await?;
                let mut key: Vec<(i64, String)> = cols
                    .iter()
                    .filter(|(_, _, pk)| *pk > 0)
                    .map(|(n, _, pk)| (*pk, n.clone()))
                    .collect();
                key.sort();
                Ok(Table {
                    name: name.to_string(),
                    columns: cols
                        .iter()
                        .map(|(n, t, _)| (n.clone(), kind_of(t)))
                        .collect(),
                    key: key.into_iter().map(|(_, n)| n).collect(),
                    identity: None,
                })
            }
            Backend::Postgres => {
                // Generated columns are left out, as SQLite's table_info leaves them out.
                let cols: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT), CAST(is_identity AS TEXT) \
                     FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND table_name = $1 AND is_generated <> 'ALWAYS' ORDER BY ordinal_position",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                let key: Vec<(String,)> = sqlx::query_as(
                    "SELECT CAST(a.attname AS TEXT) FROM pg_index i JOIN pg_attribute a \
                     ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = CAST($1 AS regclass) AND i.indisprimary \
                     ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)",
                )
                .bind(quoted(name))
                .fetch_all(&self.pool)
                .await?;
                Ok(Table {
                    name: name.to_string(),
                    columns: cols
                        .iter()
                        .map(|(n, t, _)| (n.clone(), kind_of(t)))
                        .collect(),
                    key: key.into_iter().map(|(k,)| k).collect(),
                    identity: cols
                        .iter()
                        .find(|(_, _, identity)| identity == "YES")
                        .map(|(n, _, _)| n.clone()),
                })
            }
        }
    }

    /// On SQLite, the first numeric column of `table` (as the target types it) that holds
    /// values a cast would change (text, say): the copy would not be the same.
    async fn wrong_types(&self, table: &Table) -> Result<Option<CopyRefused>> {
        if self.backend() != Backend::Sqlite || NOT_COPIED.contains(&table.name.as_str()) {
            return Ok(None);
        }
        for (column, kind) in &table.columns {
            let allowed = match kind {
                Kind::Int => "('integer', 'null')",
                Kind::Real => "('real', 'integer', 'null')",
                Kind::Text | Kind::Blob => continue,
            };
            let (count,): (i64,) = sqlx::query_as(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE typeof({}) NOT IN {allowed}",
                quoted(&table.name),
                quoted(column)
            ))
            .fetch_one(&self.pool)
            .await?;
            if count > 0 {
                return Ok(Some(CopyRefused::NotANumber {
                    table: table.name.clone(),
                    column: column.clone(),
                    count,
                }));
            }
        }
        Ok(None)
    }

    /// The statement that reads `table` (as the target knows it) from this database, each
    /// column cast to its kind, in key order (all columns when it has no key).
    fn select(&self, table: &Table) -> String {
        let cast = |kind: Kind| match (self.backend(), kind) {
            (Backend::Sqlite, Kind::Int) => "INTEGER",
            (Backend::Sqlite, Kind::Real) => "REAL",
            (Backend::Sqlite, Kind::Text) => "TEXT",
            (Backend::Sqlite, Kind::Blob) => "BLOB",
            (Backend::Postgres, Kind::Int) => "BIGINT",
            (Backend::Postgres, Kind::Real) => "DOUBLE PRECISION",
            (Backend::Postgres, Kind::Text) => "TEXT",
            (Backend::Postgres, Kind::Blob) => "BYTEA",
        };
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(c, k)| format!("CAST({} AS {})", quoted(c), cast(*k)))
            .collect();
        let order: Vec<String> = if table.key.is_empty() {
            (1..=table.columns.len()).map(|i| i.to_string()).collect()
        } else {
            table.key.iter().map(|k| quoted(k)).collect()
        };
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            quoted(&table.name),
            order.join(", ")
        )
    }

    /// Copies every table of this database into `target`, which must be empty (freshly
    /// migrated), in one transaction on the target and one snapshot of this database; then
    /// reads the target back. `progress` is told each table as it is done.
    pub async fn copy_to(
        &self,
        target: &Store,
        progress: impl FnMut(&TableCopy),
    ) -> Result<std::result::Result<Vec<TableCopy>, CopyRefused>> {
        self.copy_tables_to(target, None, progress).await
    }

    /// `copy_to` of the tables named in `only` (all with `None`): a back-test's copy of a
    /// PostgreSQL shop into a SQLite file takes [`SIMULATION_SOURCE`].
    pub async fn copy_tables_to(
        &self,
        target: &Store,
        only: Option<&[&str]>,
        mut progress: impl FnMut(&TableCopy),
    ) -> Result<std::result::Result<Vec<TableCopy>, CopyRefused>> {
        let wanted = |name: &str| only.is_none_or(|o| o.contains(&name));
        let source_tables: Vec<String> = self
            .tables()
            .await?
            .into_iter()
            .map(|t| t.name)
            .filter(|n| wanted(n))
            .collect();
        let target_tables: Vec<Table> = target
            .tables()
            .await?
            .into_iter()
            .filter(|t| wanted(&t.name))
            .collect();
        // Nothing of the source may be left behind unseen.
        for name in &source_tables {
            let Some(t) = target_tables.iter().find(|t| &t.name == name) else {
                if NOT_COPIED.contains(&name.as_str()) {
                    continue;
                }
                return Ok(Err(CopyRefused::Unknown(format!("table {name}"))));
            };
            let source = self.table(name).await?;
            if let Some((column, _)) = source
                .columns
                .iter()
                .find(|(c, _)| !t.columns.iter().any(|(x, _)| x == c))
            {
                return Ok(Err(CopyRefused::Unknown(format!("column {name}.{column}"))));
            }
        }
        let mut tables = Vec::new();
        for t in &target_tables {
            if let Some(refused) = self.wrong_types(t).await? {
                return Ok(Err(refused));
            }
        }
        for t in target_tables {
            if NOT_COPIED.contains(&t.name.as_str()) {
                continue;
            }
            if !source_tables.contains(&t.name) {
                return Ok(Err(CopyRefused::MissingTable(t.name)));
            }
            let source = self.table(&t.name).await?;
            if let Some((column, _)) = t
                .columns
                .iter()
                .find(|(c, _)| !source.columns.iter().any(|(s, _)| s == c))
            {
                return Ok(Err(CopyRefused::MissingColumn {
                    table: t.name.clone(),
                    column: column.clone(),
                }));
            }
            tables.push(t);
        }
        let mut source = self.pool.begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *source)
                .await?;
        }
        let mut tx = target.write_tx().await?;
        if target.backend() == Backend::Sqlite {
            // A SQLite table rebuilt by a later migration comes later in the catalogue than the
            // tables that refer to it: the references are checked at the commit.
            sqlx::query("PRAGMA defer_foreign_keys = ON")
                .execute(&mut *tx)
                .await?;
        }
        // Checked under the target's write lock, so that nothing slips in before the copy.
        for t in &tables {
            if FILLED_BY_MIGRATIONS.contains(&t.name.as_str()) {
                continue;
            }
            let (n,): (i64,) = sqlx::query_as(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {}",
                quoted(&t.name)
            ))
            .fetch_one(&mut *tx)
            .await?;
            if n > 0 {
                return Ok(Err(CopyRefused::TargetNotEmpty(n as u64, t.name.clone())));
            }
        }
        let mut sums = Vec::with_capacity(tables.len());
        for t in &tables {
            if FILLED_BY_MIGRATIONS.contains(&t.name.as_str()) {
                sqlx::query(&format!("DELETE FROM {}", quoted(&t.name)))
                    .execute(&mut *tx)
                    .await?;
            }
            let mut sum = Checksum::default();
            let sql = self.select(t);
            let mut rows = sqlx::query(&sql).fetch(&mut *source);
            let per_batch = (30_000 / t.columns.len().max(1)).clamp(1, 500);
            let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_batch);
            while let Some(row) = rows.try_next().await? {
                let values = read_row(&row, &t.columns)?;
                sum.add(&values);
                batch.push(values);
                if batch.len() == per_batch {
                    insert(&mut tx, t, &batch).await?;
                    batch.clear();
                }
            }
            drop(rows);
            if !batch.is_empty() {
                insert(&mut tx, t, &batch).await?;
            }
            if let (Some(identity), Backend::Postgres) = (&t.identity, target.backend()) {
                sqlx::query(&format!(
                    "SELECT CAST(setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false) AS BIGINT)",
                    c = quoted(identity),
                    t = quoted(&t.name)
                ))
                .bind(quoted(&t.name))
                .bind(identity)
                .execute(&mut *tx)
                .await?;
            }
            sums.push(sum.finish());
        }
        if let Some(refused) = orphans(&mut tx).await? {
            return Ok(Err(refused));
        }
        tx.commit().await?;
        source.rollback().await?;
        let mut out = Vec::with_capacity(tables.len());
        for (t, (source_rows, source_checksum)) in tables.iter().zip(sums) {
            let (target_rows, target_checksum) = target.checksum(t).await?;
            let copy = TableCopy {
                table: t.name.clone(),
                source_rows,
                target_rows,
                source_checksum,
                target_checksum,
            };
            progress(&copy);
            out.push(copy);
        }
        Ok(Ok(out))
    }

    /// Every row of table `name`, each value as text (`NULL` for none), in key order: for
    /// comparing two databases row by row.
    pub async fn rows_of(&self, name: &str) -> Result<Vec<Vec<String>>> {
        let table = self.table(name).await?;
        let sql = self.select(&table);
        let mut out = Vec::new();
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            out.push(
                read_row(&row, &table.columns)?
                    .into_iter()
                    .map(|v| match v {
                        Value::Null => "NULL".to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Real(f) => format!("{f:?}"),
                        Value::Text(t) => t,
                        Value::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    /// The rows and checksum of `table` here.
    async fn checksum(&self, table: &Table) -> Result<(u64, String)> {
        let mut sum = Checksum::default();
        let sql = self.select(table);
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            sum.add(&read_row(&row, &table.columns)?);
        }
        Ok(sum.finish())
    }
}

fn read_row(row: &sqlx::any::AnyRow, columns: &[(String, Kind)]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(columns.len());
    for (i, (_, kind)) in columns.iter().enumerate() {
        let v = match kind {
            Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
            Kind::Real => row.try_get::<Option<f64>, _>(i)?.map(Value::Real),
            Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            Kind::Blob => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Blob),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, super::Db>,
    table: &Table,
    rows: &[Vec<Value>],
) -> Result<()> {
    let columns: Vec<String> = table.columns.iter().map(|(c, _)| quoted(c)).collect();
    let mut qb = QueryBuilder::new(
        super::backend_of(tx),
        format!(
            "INSERT INTO {} ({}) ",
            quoted(&table.name),
            columns.join(", ")
        ),
    );
    qb.push_values(rows, |mut b, row| {
        for (v, (_, kind)) in row.iter().zip(&table.columns) {
            match (v, kind) {
                (Value::Int(i), _) => b.push_bind(*i),
                (Value::Real(f), _) => b.push_bind(*f),
                (Value::Text(t), _) => b.push_bind(t.clone()),
                (Value::Blob(x), _) => b.push_bind(x.clone()),
                (Value::Null, Kind::Int) => b.push_bind(None::<i64>),
                (Value::Null, Kind::Real) => b.push_bind(None::<f64>),
                (Value::Null, Kind::Text) => b.push_bind(None::<String>),
                (Value::Null, Kind::Blob) => b.push_bind(None::<Vec<u8>>),
            };
        }
    });
    qb.build()
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::Decode(format!("copying into table {}: {e}", table.name)))?;
    Ok(())
}

/// The first table of [`OWNED_BY_CUSTOMERS`] with rows whose customer is not stored, in the
/// copy not yet committed. SQLite checks foreign keys only on connections that turn them on
/// (the `sqlite3` shell does not), so a source file can hold such rows; PostgreSQL would take
/// them silently.
async fn orphans(tx: &mut sqlx::AnyConnection) -> Result<Option<CopyRefused>> {
    for table in OWNED_BY_CUSTOMERS {
        let (count,): (i64,) = sqlx::query_as(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table} t \
             WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = t.customer_id)"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if count > 0 {
            return Ok(Some(CopyRefused::Orphans {
                table: table.to_string(),
                count,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_kinds_follow_the_declared_types_of_both_backends() {
        for (t, k) in [
            ("INTEGER", Kind::Int),
            ("bigint", Kind::Int),
            ("TEXT", Kind::Text),
            ("text", Kind::Text),
            ("character varying", Kind::Text),
            ("REAL", Kind::Real),
            ("double precision", Kind::Real),
            ("BLOB", Kind::Blob),
            ("bytea", Kind::Blob),
            ("", Kind::Text),
        ] {
            assert_eq!(kind_of(t), k, "{t}");
        }
    }

    #[test]
    fn the_checksum_tells_kinds_values_and_boundaries_apart() {
        let sum = |rows: &[Vec<Value>]| {
            let mut c = Checksum::default();
            for r in rows {
                c.add(r);
            }
            c.finish()
        };
        let a = sum(&[vec![Value::Text("ab".into()), Value::Text("c".into())]]);
        let b = sum(&[vec![Value::Text("a".into()), Value::Text("bc".into())]]);
        assert_ne!(a, b);
        assert_ne!(sum(&[vec![Value::Int(1)]]), sum(&[vec![Value::Real(1.0)]]));
        assert_ne!(sum(&[vec![Value::Null]]), sum(&[vec![Value::Int(0)]]));
        assert_eq!(sum(&[vec![Value::Int(7)]]), sum(&[vec![Value::Int(7)]]));
        assert_eq!(sum(&[vec![Value::Int(7)]]).0, 1);
    }
}
