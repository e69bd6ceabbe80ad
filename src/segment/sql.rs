//! A segment condition compiled to one SQL `WHERE` fragment over `customers c LEFT JOIN
//! customer_metrics m`, with every value bound (`$1`, `$2`, … in order of appearance), never
//! pasted into the text. Field and column names come only from the fixed lists in `fields`.
//!
//! Every comparison is wrapped in `(…) IS TRUE`, so a missing value (no metrics yet, no model)
//! makes it false instead of NULL, and `not` of it true: two-valued logic, the same as
//! [`super::eval`].

use super::fields::Field;
use super::lang::{Cond, Lit, Op};
use super::Window;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// The SQL a condition is written in. The two differ in reading JSON: a customer's attributes
/// (SQLite's `json_extract` with a path; on PostgreSQL the `jsonb` value by its type, numbers
/// and flags before text as SQLite and the reference in `eval` order them) and an order's line
/// items (`json_each`; `json_array_elements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Sqlite,
    Postgres,
}

/// A compiled condition: `sql` refers to `c` (customers) and `m` (customer_metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCondition {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Compiles `cond` for SQLite, reading purchase-history windows from `window`.
pub fn compile(cond: &Cond, window: &Window) -> SqlCondition {
    compile_for(cond, window, Dialect::Sqlite)
}

/// Compiles `cond` in `dialect`, reading purchase-history windows from `window`.
pub fn compile_for(cond: &Cond, window: &Window, dialect: Dialect) -> SqlCondition {
    let mut c = Compiler {
        sql: String::new(),
        binds: Vec::new(),
        window,
        dialect,
    };
    c.cond(cond);
    SqlCondition {
        sql: c.sql,
        binds: c.binds,
    }
}

struct Compiler<'a> {
    sql: String,
    binds: Vec<Bind>,
    window: &'a Window,
    dialect: Dialect,
}

impl Compiler<'_> {
    /// Binds `b` and writes its placeholder.
    fn bind(&mut self, b: Bind) {
        let placeholder = self.bound(b);
        self.sql.push_str(&placeholder);
    }

    /// Binds `b` and returns its placeholder, to be written where the value is needed.
    fn bound(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    fn lit(&mut self, l: &Lit) {
        self.bind(match l {
            Lit::Int(i) => Bind::Int(*i),
            Lit::Float(f) => Bind::Float(*f),
            Lit::Text(s) => Bind::Text(s.clone()),
            Lit::Bool(b) => Bind::Int(i64::from(*b)),
        });
    }

    fn field(&mut self, f: &Field) {
        match f {
            Field::Metric(col) => self.sql.push_str(&format!("m.{col}")),
            Field::Customer(col) => self.sql.push_str(&format!("c.{col}")),
            Field::Attribute(key) => match self.dialect {
                Dialect::Sqlite => {
                    self.sql.push_str("json_extract(c.attributes, ");
                    self.bind(Bind::Text(format!("$.\"{key}\"")));
                    self.sql.push(')');
                }
                // Compared by `attribute_compare` instead.
                Dialect::Postgres => unreachable!("attributes on PostgreSQL"),
            },
        }
    }

    fn join(&mut self, parts: &[Cond], word: &str) {
        self.sql.push('(');
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(word);
            }
            self.cond(p);
        }
        self.sql.push(')');
    }

    /// A customer's attribute `key` on PostgreSQL: the `jsonb` value (its key bound once, the
    /// placeholder used wherever the value is).
    fn attribute(&mut self, key: &str) -> String {
        let placeholder = self.bound(Bind::Text(key.to_string()));
        format!("(CAST(c.attributes AS jsonb) -> {placeholder})")
    }

    /// `attribute op value` as the reference compares: a number with a number, text with text
    /// byte by byte, a flag as 0 or 1, numbers before text; anything else (missing, null, an
    /// object) false.
    fn attribute_compare(&mut self, attribute: &str, op: Op, value: &Lit) {
        let op = op.sql();
        let number = format!("CAST({attribute} #>> '{{}}' AS DOUBLE PRECISION)");
        let flag = format!("(CASE WHEN {attribute} = 'true'::jsonb THEN 1 ELSE 0 END)");
        let text = format!("(({attribute} #>> '{{}}') COLLATE \"C\")");
        self.sql
            .push_str(&format!("((CASE jsonb_typeof({attribute}) WHEN "));
        if let Lit::Text(_) = value {
            self.sql.push_str(&format!("'string' THEN {text} {op} "));
            self.lit(value);
            // A number or flag sorts before any text.
            self.sql.push_str(&format!(
                " WHEN 'number' THEN 0 {op} 1 WHEN 'boolean' THEN 0 {op} 1 END) IS TRUE)"
            ));
        } else {
            self.sql.push_str(&format!("'number' THEN {number} {op} "));
            self.lit(value);
            self.sql
                .push_str(&format!(" WHEN 'boolean' THEN {flag} {op} "));
            self.lit(value);
            self.sql
                .push_str(&format!(" WHEN 'string' THEN 1 {op} 0 END) IS TRUE)"));
        }
    }

    /// The line items of order `o`, one row `j` each.
    fn line_items(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "json_each(o.items) j",
            Dialect::Postgres => "json_array_elements(CAST(o.items AS json)) j",
        }
    }

    /// A line item's `key` (a fixed name), as text.
    fn item_field(&self, key: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json_extract(j.value, '$.{key}')"),
            Dialect::Postgres => format!("(j.value ->> '{key}')"),
        }
    }

    /// `o.placed_at` within the last `days` days of the window (or before its end).
    fn placed_within(&mut self, days: Option<i64>) {
        if let Some(d) = days {
            self.sql.push_str(" AND o.placed_at >= ");
            self.bind(Bind::Int(self.window.since_ms(d)));
        }
        self.sql.push_str(" AND o.placed_at < ");
        self.bind(Bind::Int(self.window.end_ms));
    }

    fn cond(&mut self, cond: &Cond) {
        match cond {
            Cond::And(parts) => self.join(parts, " AND "),
            Cond::Or(parts) => self.join(parts, " OR "),
            Cond::Not(inner) => {
                self.sql.push_str("(NOT ");
                self.cond(inner);
                self.sql.push(')');
            }
            Cond::Compare {
                field: Field::Attribute(key),
                op,
                value,
            } if self.dialect == Dialect::Postgres => {
                let attribute = self.attribute(key);
                self.attribute_compare(&attribute, *op, value);
            }
            Cond::In {
                field: Field::Attribute(key),
                values,
            } if self.dialect == Dialect::Postgres => {
                let attribute = self.attribute(key);
                self.sql.push_str("(FALSE");
                for v in values {
                    self.sql.push_str(" OR ");
                    self.attribute_compare(&attribute, Op::Eq, v);
                }
                self.sql.push(')');
            }
            Cond::Compare { field, op, value } => {
                self.sql.push('(');
                self.field(field);
                self.sql.push_str(&format!(" {} ", op.sql()));
                self.lit(value);
                self.sql.push_str(") IS TRUE");
            }
            Cond::In { field, values } => {
                self.sql.push('(');
                self.field(field);
                self.sql.push_str(" IN (");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.lit(v);
                }
                self.sql.push_str(")) IS TRUE");
            }
            Cond::Bought { by, value, within } => {
                // One range per customer (orders_customer, which holds `has_items`: an order
                // without items is skipped without reading its row), then the items.
                self.sql.push_str(&format!(
                    "EXISTS (SELECT 1 FROM orders o, {} WHERE o.customer_id = c.id \
                     AND o.has_items = 1",
                    self.line_items()
                ));
                self.placed_within(*within);
                self.sql
                    .push_str(&format!(" AND {} = ", self.item_field(by.json_key())));
                self.bind(Bind::Text(value.clone()));
                self.sql.push(')');
            }
            Cond::Affinity {
                category,
                within,
                op,
                share,
            } => {
                // The customer's orders with items (one range of orders_customer), and the
                // share of them with an item of the category; NULL (no match) without any.
                self.sql.push_str(&format!(
                    "((SELECT CAST(COUNT(CASE WHEN EXISTS (SELECT 1 FROM {} \
                     WHERE {} = ",
                    self.line_items(),
                    self.item_field("category")
                ));
                self.bind(Bind::Text(category.clone()));
                self.sql.push_str(
                    ") THEN 1 END) AS DOUBLE PRECISION) / NULLIF(COUNT(*), 0) FROM orders o \
                     WHERE o.customer_id = c.id AND o.has_items = 1",
                );
                self.placed_within(*within);
                self.sql.push_str(&format!(") {} ", op.sql()));
                self.bind(Bind::Float(*share));
                self.sql.push_str(") IS TRUE");
            }
            Cond::OrderedWithin(days) => {
                self.sql
                    .push_str("EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id");
                self.placed_within(Some(*days));
                self.sql.push(')');
            }
            Cond::OrdersWithin { days, op, n } => {
                self.sql
                    .push_str("((SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id");
                self.placed_within(Some(*days));
                self.sql.push_str(&format!(") {} ", op.sql()));
                self.bind(Bind::Int(*n));
                self.sql.push(')');
            }
            Cond::Did {
                event,
                within,
                op,
                n,
            } => {
                // One range of the events_customer index (customer_id, name, at).
                self.sql.push_str(
                    "((SELECT COUNT(*) FROM events ev WHERE ev.customer_id = c.id AND ev.name = ",
                );
                self.bind(Bind::Text(event.clone()));
                if let Some(d) = within {
                    self.sql.push_str(" AND ev.at >= ");
                    self.bind(Bind::Int(self.window.since_ms(*d)));
                }
                self.sql.push_str(" AND ev.at < ");
                self.bind(Bind::Int(self.window.end_ms));
                self.sql.push_str(&format!(") {} ", op.sql()));
                self.bind(Bind::Int(*n));
                self.sql.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::lang::parse;

    #[test]
    fn values_are_bound_never_pasted() {
        let w = Window::new(
            chrono::NaiveDate::from_ymd_opt(2024, 3, 31).unwrap(),
            chrono_tz::UTC,
        );
        let c = parse(
            "customer.attributes.plan == \"x'; DROP TABLE customers; --\" or p_alive < 0.3 and bought(sku: 'A', within: 30d)",
        )
        .unwrap();
        let s = compile(&c, &w);
        assert!(!s.sql.contains("DROP"), "{}", s.sql);
        assert!(!s.sql.contains("0.3"), "{}", s.sql);
        assert_eq!(s.binds.len(), 6, "{:?}", s.binds);
        assert_eq!(s.binds[3], Bind::Int(w.since_ms(30)));
        assert_eq!(s.binds[5], Bind::Text("A".into()));
    }
}
