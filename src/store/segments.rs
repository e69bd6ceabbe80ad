//! Segment membership: evaluating a compiled segment condition over every customer in one
//! statement, keeping the members and writing each change of membership as an event, all in
//! one transaction; and reading those events for the tick.

use super::enrollments::{insert_enrollments, move_named_cursor};
use super::{Db, NewEnrollment, Result, Store};
use crate::segment::{Bind, SqlCondition};
use std::collections::HashMap;

/// What one evaluation of a segment changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MembershipChange {
    pub members: u64,
    pub entered: u64,
    pub exited: u64,
    /// The first evaluation of a segment: members are recorded, no events are written.
    pub baseline: bool,
}

/// A change of membership, as the tick reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SegmentEvent {
    pub seq: i64,
    pub segment: String,
    pub customer_id: String,
    #[sqlx(try_from = "super::Flag")]
    pub entered: bool,
    pub at: i64,
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Float(f) => q.bind(*f),
            Bind::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// The ids of the members of the named or RFM segment `$1`.
pub(super) const MEMBERS_OF: &str = "SELECT customer_id FROM segment_members WHERE segment = $1 \
     UNION SELECT customer_id FROM customer_metrics WHERE rfm_segment = $1";

impl Store {
    /// The ids of the customers matching `cond`, sorted (one query; for tests and tools).
    pub async fn segment_query(&self, cond: &SqlCondition) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT c.id FROM customers c LEFT JOIN customer_metrics m ON m.customer_id = c.id \
             WHERE {} ORDER BY c.id",
            cond.sql
        );
        let rows = bind_all(sqlx::query(&sql), &cond.binds)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| sqlx::Row::get(r, 0)).collect())
    }

    /// Evaluates segments (name, compiled condition) over every customer and stores the
    /// results, one transaction per segment: for each, the members, an `entered` event per
    /// customer who was not a member, an `exited` event per member who no longer is. The first
    /// evaluation of a segment only records its members (a new segment must not fire for
    /// everyone already in it). The incremental refresh evaluates only the changed customers,
    /// inside its own transaction (`evaluate_scoped`, from `Store::apply_changed_page`).
    pub async fn evaluate_segments(
        &self,
        segments: &[(&str, &SqlCondition)],
        as_of: &str,
        now: i64,
    ) -> Result<Vec<MembershipChange>> {
        let mut out = Vec::with_capacity(segments.len());
        for (name, cond) in segments {
            let mut tx = self.write_tx().await?;
            prepare_temp(&mut tx, None).await?;
            out.push(evaluate_in(&mut tx, name, cond, as_of, now).await?);
            tx.commit().await?;
        }
        Ok(out)
    }

    /// The customers of a named segment or, failing that, of an RFM segment (as of the last
    /// refresh).
    pub async fn members_of(&self, name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(MEMBERS_OF)
            .bind(name)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The mean predicted 12-month CLV (minor units) of a named or RFM segment's customers, or
    /// of every customer with metrics; None without any.
    pub async fn mean_predicted_clv(&self, segment: Option<&str>) -> Result<Option<f64>> {
        Ok(sqlx::query_scalar(
            "SELECT AVG(m.predicted_clv) FROM customer_metrics m WHERE $1 IS NULL \
             OR m.rfm_segment = $1 \
             OR m.customer_id IN (SELECT customer_id FROM segment_members WHERE segment = $1)",
        )
        .bind(segment)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Each named segment's size per evaluated day, oldest first: (segment, day, members).
    pub async fn segment_history(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT segment, as_of, members FROM segment_history ORDER BY segment, as_of",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The members of a segment, sorted.
    pub async fn segment_members(&self, name: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT customer_id FROM segment_members WHERE segment = $1 ORDER BY customer_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Each of `ids`' segments, by customer (names sorted).
    pub async fn segments_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(super::BATCH) {
            let mut qb = super::QueryBuilder::<Db>::new(
                self.backend(),
                "SELECT customer_id, segment FROM segment_members WHERE customer_id IN ",
            );
            super::push_in_list(&mut qb, chunk);
            qb.push(" ORDER BY customer_id, segment");
            let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(&self.pool).await?;
            for (c, s) in rows {
                out.entry(c).or_default().push(s);
            }
        }
        Ok(out)
    }

    /// Every membership, by customer then segment (to merge with `metrics_rows`).
    pub fn memberships(
        &self,
    ) -> impl futures::Stream<Item = std::result::Result<(String, String), sqlx::Error>> + '_ {
        sqlx::query_as(
            "SELECT customer_id, segment FROM segment_members ORDER BY customer_id, segment",
        )
        .fetch(&self.pool)
    }

    pub async fn segment_cursor(&self) -> Result<i64> {
        self.int_setting("segment_cursor").await
    }

    /// Up to `limit` membership changes after `cursor`, oldest first.
    pub async fn segment_events_after(&self, cursor: i64, limit: i64) -> Result<Vec<SegmentEvent>> {
        Ok(sqlx::query_as(
            "SELECT seq, segment, customer_id, CASE WHEN kind = 'entered' THEN 1 ELSE 0 END AS entered, at FROM segment_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the enrollments triggers without an order started and, if given, moves the
    /// cursor kept under `cursor.0` from `cursor.1` to `cursor.2`, in one transaction. `None`
    /// if an overlapping tick moved it first (nothing is written then).
    pub async fn apply_fired(
        &self,
        new: &[NewEnrollment],
        cursor: Option<(&str, i64, i64)>,
    ) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let created = insert_enrollments(&mut tx, new).await?;
        if let Some((key, from, to)) = cursor {
            if !move_named_cursor(&mut tx, key, from, to).await? {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(created))
    }
}

/// Evaluates `segments` for the customers `ids` only, inside `tx`: everyone else's
/// membership stays as it was, except that a segment never evaluated before is evaluated in
/// full.
///
/// The segments evaluated before are done together (`scoped_changes`): each condition fills
/// `scope_now` with its matches among the scope, then one statement each writes every
/// segment's entries and exits as events, removes the exits and adds the entries, and one each
/// records the counts: about eight statements plus one per segment, where one segment at a time
/// took nine each (21 against 117 for 13 segments).
pub(super) async fn evaluate_scoped(
    tx: &mut sqlx::Transaction<'static, Db>,
    segments: &[(&str, &SqlCondition)],
    ids: &[String],
    as_of: &str,
    now: i64,
) -> Result<Vec<MembershipChange>> {
    prepare_temp(tx, Some(ids)).await?;
    let known: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT segment, members FROM segment_evaluations")
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
    let scoped: Vec<(i64, &str, &SqlCondition)> = (0i64..)
        .zip(segments)
        .filter(|(_, (name, _))| known.contains_key(*name))
        .map(|(pos, (name, cond))| (pos, *name, *cond))
        .collect();
    let started = std::time::Instant::now();
    let changed = scoped_changes(tx, &scoped, now).await?;
    tracing::debug!(
        segments = scoped.len(),
        secs = started.elapsed().as_secs_f64(),
        "segments evaluated for the changed customers"
    );
    let mut out = Vec::with_capacity(segments.len());
    let mut counts = Vec::new();
    for (name, cond) in segments {
        let Some(before) = known.get(*name) else {
            out.push(evaluate_in(tx, name, cond, as_of, now).await?);
            continue;
        };
        let (entered, exited) = changed.get(*name).copied().unwrap_or((0, 0));
        let members = before + entered as i64 - exited as i64;
        counts.push((*name, members));
        out.push(MembershipChange {
            members: members as u64,
            entered,
            exited,
            baseline: false,
        });
    }
    record_counts(tx, &counts, as_of, now).await?;
    Ok(out)
}

/// The scoped evaluation of `segments` (position in the definitions, name, condition), all
/// known before: their matches among the scope's copies (`prepare_temp`) compared with the
/// scope's memberships (`scope_members`), the changes written as events (in the segments'
/// order, entries before exits, by customer, as one segment at a time wrote them) and to
/// `segment_members`. Returns each segment's (entered, exited).
async fn scoped_changes(
    tx: &mut sqlx::Transaction<'static, Db>,
    segments: &[(i64, &str, &SqlCondition)],
    now: i64,
) -> Result<HashMap<String, (u64, u64)>> {
    let mut out = HashMap::new();
    if segments.is_empty() {
        return Ok(out);
    }
    let text = match super::backend_of(tx) {
        super::Backend::Sqlite => "TEXT",
        super::Backend::Postgres => "TEXT COLLATE \"C\"",
    };
    for statement in [
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS scope_now (pos BIGINT NOT NULL, \
             segment {text} NOT NULL, customer_id {text} NOT NULL, \
             PRIMARY KEY (segment, customer_id))"
        ),
        "DELETE FROM scope_now".to_string(),
    ] {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    for (pos, name, cond) in segments {
        // The condition's placeholders are $1..$n; the position and the name follow them.
        let n = cond.binds.len();
        let fill = format!(
            "INSERT INTO scope_now (pos, segment, customer_id) SELECT ${}, ${}, c.id \
             FROM scope_customers c LEFT JOIN scope_metrics m ON m.customer_id = c.id WHERE {}",
            n + 1,
            n + 2,
            cond.sql
        );
        bind_all(sqlx::query(&fill), &cond.binds)
            .bind(*pos)
            .bind(*name)
            .execute(&mut **tx)
            .await?;
    }
    const ENTERED: &str = "FROM scope_now n WHERE NOT EXISTS (SELECT 1 FROM scope_members s \
         WHERE s.segment = n.segment AND s.customer_id = n.customer_id)";
    const EXITED: &str = "WHERE NOT EXISTS (SELECT 1 FROM scope_now n \
         WHERE n.segment = s.segment AND n.customer_id = s.customer_id)";
    let mut qb = super::QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "INSERT INTO segment_events (segment, customer_id, kind, at) \
         SELECT x.segment, x.customer_id, x.kind, ",
    );
    qb.push_bind(now);
    qb.push(format!(
        " FROM (SELECT n.pos AS pos, 0 AS k, n.segment AS segment, n.customer_id AS customer_id, \
         'entered' AS kind {ENTERED} UNION ALL \
         SELECT g.column2, 1, s.segment, s.customer_id, 'exited' FROM scope_members s JOIN "
    ));
    push_evaluated(&mut qb, segments);
    qb.push(format!(
        " ON g.column1 = s.segment {EXITED}) AS x ORDER BY x.pos, x.k, x.customer_id \
         RETURNING segment, kind"
    ));
    let events: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut **tx).await?;
    for (segment, kind) in events {
        let counts: &mut (u64, u64) = out.entry(segment).or_default();
        match kind.as_str() {
            "entered" => counts.0 += 1,
            _ => counts.1 += 1,
        }
    }
    let mut qb = super::QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "DELETE FROM segment_members WHERE (customer_id, segment) IN \
         (SELECT s.customer_id, s.segment FROM scope_members s JOIN ",
    );
    push_evaluated(&mut qb, segments);
    qb.push(format!(" ON g.column1 = s.segment {EXITED})"));
    qb.build().execute(&mut **tx).await?;
    sqlx::query(&format!(
        "INSERT INTO segment_members (segment, customer_id, since) \
         SELECT n.segment, n.customer_id, $1 {ENTERED} ON CONFLICT (customer_id, segment) DO NOTHING"
    ))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(out)
}

/// `segments` as a table `g` of (name, position): memberships of segments not evaluated here
/// (removed from the definitions, or new) are not exits, so exits are looked for among these.
fn push_evaluated<'a>(
    qb: &mut super::QueryBuilder<'a, Db>,
    segments: &'a [(i64, &'a str, &'a SqlCondition)],
) {
    qb.push("(");
    qb.push_values(segments, |mut b, (pos, name, _)| {
        b.push_bind(*name).push_bind(*pos);
    });
    qb.push(") AS g");
}

/// Records each segment's count of members after an evaluation as of `as_of`: the latest
/// (`segment_evaluations`) and the day's (`segment_history`).
async fn record_counts(
    tx: &mut sqlx::Transaction<'static, Db>,
    counts: &[(&str, i64)],
    as_of: &str,
    now: i64,
) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut qb = super::QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "INSERT INTO segment_evaluations (segment, as_of, evaluated_at, members) ",
    );
    qb.push_values(counts, |mut b, (name, members)| {
        b.push_bind(*name)
            .push_bind(as_of)
            .push_bind(now)
            .push_bind(*members);
    });
    qb.push(
        " ON CONFLICT (segment) DO UPDATE SET as_of = excluded.as_of, \
         evaluated_at = excluded.evaluated_at, members = excluded.members",
    );
    qb.build().execute(&mut **tx).await?;
    let mut qb = super::QueryBuilder::<Db>::new(
        super::backend_of(tx),
        "INSERT INTO segment_history (segment, as_of, members, evaluated_at) ",
    );
    qb.push_values(counts, |mut b, (name, members)| {
        b.push_bind(*name)
            .push_bind(as_of)
            .push_bind(*members)
            .push_bind(now);
    });
    qb.push(
        " ON CONFLICT (segment, as_of) DO UPDATE SET \
         members = excluded.members, evaluated_at = excluded.evaluated_at",
    );
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Gives PostgreSQL's planner the statistics of freshly filled temporary `tables`: autovacuum
/// never analyzes them, and without statistics the planner guesses their size. Together with
/// `random_page_cost = 1.1` (docs/deploy.md) the scope's 10,000 customers are then copied by
/// index lookups, not by reading every customer in a hash join (0.40 s against 0.09 s).
async fn analyze_on_postgres(tx: &mut sqlx::Transaction<'static, Db>, tables: &str) -> Result<()> {
    if super::backend_of(tx) == super::Backend::Postgres {
        sqlx::query(&format!("ANALYZE {tables}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Empties the temporary tables of this connection (`segment_now`: who matches now;
/// `segment_scope`: whom to look at) and fills the scope.
async fn prepare_temp(
    tx: &mut sqlx::Transaction<'static, Db>,
    scope: Option<&[String]>,
) -> Result<()> {
    // Text compares byte by byte in both, as the stored tables do.
    let text = match super::backend_of(tx) {
        super::Backend::Sqlite => "TEXT",
        super::Backend::Postgres => "TEXT COLLATE \"C\"",
    };
    for table in ["segment_now", "segment_scope"] {
        sqlx::query(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {table} (customer_id {text} PRIMARY KEY)"
        ))
        .execute(&mut **tx)
        .await?;
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut **tx)
            .await?;
    }
    let Some(scope) = scope else {
        return Ok(());
    };
    for chunk in scope.chunks(super::batch(super::backend_of(tx), 1)) {
        let mut qb = super::QueryBuilder::<Db>::new(
            super::backend_of(tx),
            "INSERT INTO segment_scope (customer_id) ",
        );
        qb.push_values(chunk, |mut b, id| {
            b.push_bind(id);
        });
        qb.push(" ON CONFLICT (customer_id) DO NOTHING");
        qb.build().execute(&mut **tx).await?;
    }
    analyze_on_postgres(tx, "segment_scope").await?;
    // The scope's customers and metrics copied once, so that each segment's condition reads
    // a few thousand local rows instead of as many lookups in the million-row tables. The
    // scope is the outer loop of the copy: SQLite keeps a CROSS JOIN's left table outside
    // (it has no statistics on a temporary table to choose well by itself).
    // SQLite names the temporary schema of an index; PostgreSQL puts it beside its table.
    let temp = match super::backend_of(tx) {
        super::Backend::Sqlite => "temp.",
        super::Backend::Postgres => "",
    };
    for (copy, table, key) in [
        ("scope_customers", "customers", "id"),
        ("scope_metrics", "customer_metrics", "customer_id"),
    ] {
        for statement in [
            format!("CREATE TEMP TABLE IF NOT EXISTS {copy} AS SELECT * FROM {table} WHERE 1 = 0"),
            format!("CREATE INDEX IF NOT EXISTS {temp}{copy}_key ON {copy} ({key})"),
            format!("DELETE FROM {copy}"),
            format!(
                "INSERT INTO {copy} SELECT t.* FROM segment_scope sc CROSS JOIN {table} t \
                 WHERE t.{key} = sc.customer_id"
            ),
        ] {
            sqlx::query(&statement).execute(&mut **tx).await?;
        }
    }
    // The scope's memberships of every segment, read once (one key range per customer):
    // each segment then finds its entries and exits among these local rows and writes only
    // the changes, instead of probing its members once per scope customer.
    for statement in [
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS scope_members (segment {text} NOT NULL, \
             customer_id {text} NOT NULL, PRIMARY KEY (segment, customer_id))"
        ),
        "DELETE FROM scope_members".to_string(),
        "INSERT INTO scope_members (segment, customer_id) SELECT s.segment, s.customer_id \
         FROM segment_scope sc CROSS JOIN segment_members s WHERE s.customer_id = sc.customer_id"
            .to_string(),
    ] {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    analyze_on_postgres(tx, "scope_customers, scope_metrics, scope_members").await
}

/// One segment's evaluation over every customer inside `tx` (see `Store::evaluate_segments`);
/// the members are then exactly `segment_now`.
async fn evaluate_in(
    tx: &mut sqlx::Transaction<'static, Db>,
    name: &str,
    cond: &SqlCondition,
    as_of: &str,
    now: i64,
) -> Result<MembershipChange> {
    let known: Option<(i64,)> =
        sqlx::query_as("SELECT members FROM segment_evaluations WHERE segment = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let baseline = known.is_none();
    sqlx::query("DELETE FROM segment_now")
        .execute(&mut **tx)
        .await?;
    // The condition's placeholders are $1..$n; it is the only bound text here.
    let fill = format!(
        "INSERT INTO segment_now (customer_id) SELECT c.id FROM customers c \
         LEFT JOIN customer_metrics m ON m.customer_id = c.id WHERE {}",
        cond.sql
    );
    bind_all(sqlx::query(&fill), &cond.binds)
        .execute(&mut **tx)
        .await?;
    let (entered, exited) = record_changes(tx, name, baseline, now).await?;
    let (members,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM segment_now")
        .fetch_one(&mut **tx)
        .await?;
    record_counts(tx, &[(name, members)], as_of, now).await?;
    Ok(MembershipChange {
        members: members as u64,
        entered,
        exited,
        baseline,
    })
}

/// A full evaluation's membership changes: events (unless it is the baseline), then the
/// members replaced by `segment_now`. Returns (entered, exited).
async fn record_changes(
    tx: &mut sqlx::Transaction<'static, Db>,
    name: &str,
    baseline: bool,
    now: i64,
) -> Result<(u64, u64)> {
    let (mut entered, mut exited) = (0, 0);
    if !baseline {
        entered = sqlx::query(
            "INSERT INTO segment_events (segment, customer_id, kind, at) \
             SELECT $1, n.customer_id, 'entered', $2 FROM segment_now n WHERE NOT EXISTS \
             (SELECT 1 FROM segment_members s WHERE s.segment = $1 AND s.customer_id = n.customer_id) \
             ORDER BY n.customer_id",
        )
        .bind(name)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        exited = sqlx::query(
            "INSERT INTO segment_events (segment, customer_id, kind, at) \
             SELECT $1, s.customer_id, 'exited', $2 FROM segment_members s WHERE s.segment = $1 \
             AND NOT EXISTS (SELECT 1 FROM segment_now n WHERE n.customer_id = s.customer_id) \
             ORDER BY s.customer_id",
        )
        .bind(name)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    sqlx::query(
        "DELETE FROM segment_members WHERE segment = $1 AND NOT EXISTS \
         (SELECT 1 FROM segment_now n WHERE n.customer_id = segment_members.customer_id)",
    )
    .bind(name)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO segment_members (segment, customer_id, since) \
         SELECT $1, customer_id, $2 FROM segment_now WHERE true \
         ON CONFLICT (customer_id, segment) DO NOTHING",
    )
    .bind(name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((entered, exited))
}
