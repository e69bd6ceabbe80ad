//! Statements built from pieces with bound values. sqlx's `QueryBuilder` writes `?` for every
//! value under the `Any` driver, which PostgreSQL does not read; this one numbers them `$1`,
//! `$2`, … for a PostgreSQL statement and writes `?` for a SQLite one: SQLite looks a numbered
//! parameter up by name in a list, so a multi-row insert of 5,000 `$n` values spent 80% of its
//! time binding them (the engine's import ran 5× slower). Each builder is told the backend of
//! the store or connection its statement runs on, so a process with both (`rebuy db copy`, a
//! back-test of a PostgreSQL shop) numbers only the PostgreSQL ones. Its methods are the subset
//! of sqlx's the store uses, with the same names and meaning.

use super::{Backend, Db};
use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::{Arguments as _, Encode, FromRow, Type};
use std::fmt::{Display, Write as _};
use std::marker::PhantomData;

/// A statement being written, with its bound values.
pub(crate) struct QueryBuilder<'args, D = Db> {
    sql: String,
    arguments: AnyArguments<'args>,
    bound: usize,
    /// `$n` rather than `?`.
    numbered: bool,
    backend: PhantomData<D>,
}

impl<'args> QueryBuilder<'args, Db> {
    /// A statement for `backend` that starts with `init`.
    pub fn new(backend: Backend, init: impl Into<String>) -> Self {
        Self {
            sql: init.into(),
            arguments: AnyArguments::default(),
            bound: 0,
            numbered: backend == Backend::Postgres,
            backend: PhantomData,
        }
    }

    /// A statement for `backend` that starts with `init`, written in the store's SQL and
    /// translated for the backend (`store::dialect`).
    pub fn in_dialect(backend: Backend, init: &str) -> Self {
        Self::new(backend, super::dialect(backend, init).into_owned())
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: impl Display) -> &mut Self {
        // Writing into a String cannot fail.
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Appends the placeholder of a new bound value (`$n`).
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'args + Encode<'args, Db> + Type<Db>,
    {
        // `Any` encodes each of the types the store binds (integers, floats, text, their
        // options) without fail; sqlx's own builder makes the same assumption.
        self.arguments
            .add(value)
            .expect("a value of a type the Any driver encodes");
        self.bound += 1;
        if self.numbered {
            let _ = write!(self.sql, "${}", self.bound);
        } else {
            self.sql.push('?');
        }
        self
    }

    /// A list whose items `separator` separates.
    pub fn separated<Sep: Display>(&mut self, separator: Sep) -> Separated<'_, 'args, Db, Sep> {
        Separated {
            builder: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (…), (…)`, one parenthesised tuple per item, whose values `push_tuple`
    /// pushes (separated by commas).
    pub fn push_values<I, F>(&mut self, tuples: I, mut push_tuple: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'args, Db, &'static str>, I::Item),
    {
        self.push("VALUES ");
        let mut rows = self.separated(", ");
        for tuple in tuples {
            rows.push("(");
            push_tuple(rows.builder.separated(", "), tuple);
            rows.push_unseparated(")");
        }
        rows.builder
    }

    /// The statement, to run.
    pub fn build(&mut self) -> Query<'_, Db, AnyArguments<'_>> {
        sqlx::query_with(&self.sql, std::mem::take(&mut self.arguments))
    }

    /// The statement, to run, its rows read as `T`.
    pub fn build_query_as<T>(&mut self) -> QueryAs<'_, Db, T, AnyArguments<'_>>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as_with(&self.sql, std::mem::take(&mut self.arguments))
    }

    /// The text so far.
    #[allow(dead_code)]
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// Items of a list being appended to a [`QueryBuilder`], `separator` between them.
pub(crate) struct Separated<'qb, 'args, D, Sep> {
    builder: &'qb mut QueryBuilder<'args, D>,
    separator: Sep,
    first: bool,
}

impl<'args, Sep: Display> Separated<'_, 'args, Db, Sep> {
    fn separate(&mut self) {
        if !self.first {
            self.builder.push(&self.separator);
        }
        self.first = false;
    }

    /// Appends SQL text as the next item.
    pub fn push(&mut self, sql: impl Display) -> &mut Self {
        self.separate();
        self.builder.push(sql);
        self
    }

    /// Appends SQL text to the current item.
    pub fn push_unseparated(&mut self, sql: impl Display) -> &mut Self {
        self.builder.push(sql);
        self
    }

    /// Appends a bound value as the next item.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'args + Encode<'args, Db> + Type<Db>,
    {
        self.separate();
        self.builder.push_bind(value);
        self
    }

    /// Appends a bound value to the current item.
    pub fn push_bind_unseparated<T>(&mut self, value: T) -> &mut Self
    where
        T: 'args + Encode<'args, Db> + Type<Db>,
    {
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbered_in_the_order_they_are_pushed() {
        let mut qb = QueryBuilder::<Db>::new(Backend::Postgres, "INSERT INTO t (a, b) ");
        qb.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        qb.push(" WHERE c IN ");
        let mut list = qb.separated(", ");
        list.push_unseparated("(");
        list.push_bind(3_i64).push_bind(4_i64);
        list.push_unseparated(")");
        assert_eq!(
            qb.sql(),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c IN ($5, $6)"
        );
    }

    #[test]
    fn sqlite_values_are_anonymous() {
        let mut qb = QueryBuilder::<Db>::new(Backend::Sqlite, "INSERT INTO t (a, b) ");
        qb.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        assert_eq!(qb.sql(), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
    }
}
