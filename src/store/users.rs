//! The people who sign in to the pages (`users`), their sessions, the audit log of what they
//! did, and the search box's look-up of customers.

use super::{Result, Store, StoreError};
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub lang: Option<String>,
    pub timezone: Option<String>,
    pub created_at: i64,
}

/// A signed-in session: who, and the token its forms must carry.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub csrf: String,
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub user_name: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// Where a preview's random customer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picked {
    /// Enrolled in the scenario (its audience accepted them).
    Enrolled,
    /// A member of the segment the scenario's audience names (no one is enrolled yet).
    Segment,
    /// Any customer (no one is enrolled and the audience names no segment).
    Anyone,
}

/// One hit of the search box.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct CustomerHit {
    pub id: String,
    pub email: String,
    pub name: String,
    pub orders_count: i64,
    pub total_spent: i64,
    pub currency: Option<String>,
    /// How it matched: `id`, `email`, `order`, `name`.
    pub matched: String,
}

const USER_COLUMNS: &str = "name, role, password_hash, lang, timezone, created_at";

impl Store {
    /// Adds a user; an existing name is refused (`StoreError::NotFound` is not used: the
    /// caller gets false).
    pub async fn add_user(&self, user: &UserRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO users (name, role, password_hash, lang, timezone, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.name)
        .bind(&user.role)
        .bind(&user.password_hash)
        .bind(&user.lang)
        .bind(&user.timezone)
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets a user's password hash, and signs them out everywhere.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user '{name}'")));
        }
        sqlx::query("DELETE FROM ui_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user and their sessions; false if there was none.
    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Sets a user's language (`en`, `ja`, or None for the browser's).
    pub async fn set_user_lang(&self, name: &str, lang: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET lang = $2 WHERE name = $1")
            .bind(name)
            .bind(lang)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a new session (expired ones are swept at the same time).
    pub async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (token_hash, user_name, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session with this token hash, with its user.
    pub async fn session(&self, token_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT u.name, u.role, u.password_hash, u.lang, u.timezone, u.created_at, s.csrf \
             FROM ui_sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends one line to the audit log.
    pub async fn audit(
        &self,
        at: i64,
        user: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, user_name, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(at)
        .bind(user)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` lines of the audit log, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, user_name, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Customers whose id, e-mail address or order id is `q`, then those whose name or e-mail
    /// address starts with it; at most `limit`, each once. Every branch is an index look-up.
    pub async fn search_customers(&self, q: &str, limit: i64) -> Result<Vec<CustomerHit>> {
        let q = q.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        // The first character past every string that starts with `q`.
        let past = "\u{10FFFF}";
        let upper = format!("{q}{past}");
        // E-mail addresses in any case, through the index `customers_email` on `lower(email)`.
        // Both backends lower-case ASCII letters only there (PostgreSQL's column is
        // `COLLATE "C"`), so the address asked for is lower-cased the same way here.
        let lower = crate::domain::email_lookup_key(q);
        // A Japanese keyboard types a full-width space (U+3000) between family and given name;
        // names are stored with either: the name is looked up with the other space as well.
        let other = if q.contains('\u{3000}') {
            q.replace('\u{3000}', " ")
        } else {
            q.replace(' ', "\u{3000}")
        };
        let other_upper = format!("{other}{past}");
        let hits: Vec<CustomerHit> = sqlx::query_as(
            "SELECT c.id, c.email, c.name, c.orders_count, c.total_spent, c.currency, m.matched \
             FROM (\
               SELECT id AS cid, 'id' AS matched, 0 AS rank FROM customers WHERE id = $1 \
               UNION ALL SELECT customer_id, 'order', 1 FROM orders WHERE id = $1 \
               UNION ALL SELECT id, 'email', 2 FROM customers WHERE lower(email) = $5 \
               UNION ALL SELECT * FROM (SELECT id, 'name', 3 FROM customers \
                 WHERE name >= $1 AND name < $2 ORDER BY name LIMIT $3) AS n \
               UNION ALL SELECT * FROM (SELECT id, 'name', 3 FROM customers \
                 WHERE name >= $6 AND name < $7 ORDER BY name LIMIT $3) AS w \
               UNION ALL SELECT * FROM (SELECT id, 'email', 4 FROM customers \
                 WHERE lower(email) >= $5 AND lower(email) < ($5 || $4) \
                 ORDER BY lower(email) LIMIT $3) AS e \
             ) m JOIN customers c ON c.id = m.cid ORDER BY m.rank, c.name, c.id",
        )
        .bind(q)
        .bind(&upper)
        .bind(limit)
        .bind(past)
        .bind(&lower)
        .bind(&other)
        .bind(&other_upper)
        .fetch_all(&self.pool)
        .await?;
        // Names typed without their space, when the look-ups above left room.
        let spaced = match hits.len() < usize::try_from(limit).unwrap_or(0) {
            true => self.names_spaced(q, limit).await?,
            false => Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        Ok(hits
            .into_iter()
            .chain(spaced)
            .filter(|h| seen.insert(h.id.clone()))
            .take(usize::try_from(limit).unwrap_or(0))
            .collect())
    }

    /// Names that start with `q` once a space is put between two of its characters
    /// (`domain::spaced_name_variants`): each variant one range of the index on `name`.
    async fn names_spaced(&self, q: &str, limit: i64) -> Result<Vec<CustomerHit>> {
        let variants = crate::domain::spaced_name_variants(q);
        if variants.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = super::QueryBuilder::<super::Db>::new(
            self.backend(),
            "SELECT id, email, name, orders_count, total_spent, currency, 'name' AS matched \
             FROM customers WHERE ",
        );
        for (i, v) in variants.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("(name >= ");
            qb.push_bind(v.clone());
            qb.push(" AND name < ");
            qb.push_bind(format!("{v}\u{10FFFF}"));
            qb.push(")");
        }
        qb.push(" ORDER BY name, id LIMIT ");
        qb.push_bind(limit);
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// A customer picked by `pick` (a random number) for a scenario's preview: among those
    /// enrolled in `scenario` when there are any, else among the members of its audience's
    /// `segment` (named or RFM) when it names one, else among all; with where it came from.
    /// None when there is no customer to pick.
    pub async fn random_customer(
        &self,
        scenario: &str,
        segment: Option<&str>,
        pick: u64,
    ) -> Result<Option<(String, Picked)>> {
        if let Some(c) = self.random_enrolled(scenario, pick).await? {
            return Ok(Some((c, Picked::Enrolled)));
        }
        if let Some(seg) = segment {
            return Ok(self
                .random_member(seg, pick)
                .await?
                .map(|c| (c, Picked::Segment)));
        }
        Ok(self.random_any(pick).await?.map(|c| (c, Picked::Anyone)))
    }

    async fn random_enrolled(&self, scenario: &str, pick: u64) -> Result<Option<String>> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(id), max(id) FROM enrollments WHERE scenario_id = $1")
                .bind(scenario)
                .fetch_one(&self.pool)
                .await?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(None);
        };
        let at = lo + nth_of(pick, hi - lo + 1).unwrap_or(0);
        Ok(sqlx::query_scalar(
            "SELECT customer_id FROM enrollments WHERE scenario_id = $1 AND id >= $2 ORDER BY id LIMIT 1",
        )
        .bind(scenario)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn random_member(&self, segment: &str, pick: u64) -> Result<Option<String>> {
        use super::segments::MEMBERS_OF;
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM ({MEMBERS_OF}) AS members"))
            .bind(segment)
            .fetch_one(&self.pool)
            .await?;
        let Some(skip) = nth_of(pick, n) else {
            return Ok(None);
        };
        Ok(sqlx::query_scalar(&format!(
            "{MEMBERS_OF} ORDER BY customer_id LIMIT 1 OFFSET $2"
        ))
        .bind(segment)
        .bind(skip)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn random_any(&self, pick: u64) -> Result<Option<String>> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(&self.pool)
            .await?;
        let Some(skip) = nth_of(pick, n) else {
            return Ok(None);
        };
        Ok(
            sqlx::query_scalar("SELECT id FROM customers ORDER BY id LIMIT 1 OFFSET $1")
                .bind(skip)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// Which of `n` rows the random number `pick` chooses (0-based); None when there are none.
fn nth_of(pick: u64, n: i64) -> Option<i64> {
    let n = u64::try_from(n).ok().filter(|n| *n > 0)?;
    i64::try_from(pick % n).ok()
}
