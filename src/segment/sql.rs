//! A segment condition compiled to one SQL `WHERE` fragment over `customers c LEFT JOIN
//! customer_metrics m`, with every value bound (`$1`, `$2`, … in order of appearance), never
//! pasted into the text. Field and column names come only from the fixed lists in `fields`.
//!
//! Every comparison is wrapped in `(…) IS TRUE`, so a missing value (no metrics yet, no model)
//! makes it false instead of NULL, and `not` of it true: two-valued logic, the same as
//! [`super::eval`].

use super::fields::Field;
use super::lang::{Cond, Lit};
use super::Window;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A compiled condition: `sql` refers to `c` (customers) and `m` (customer_metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCondition {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Compiles `cond`, reading purchase-history windows from `window`.
pub fn compile(cond: &Cond, window: &Window) -> SqlCondition {
    let mut c = Compiler {
        sql: String::new(),
        binds: Vec::new(),
        window,
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
}

impl Compiler<'_> {
    fn bind(&mut self, b: Bind) {
        self.binds.push(b);
        self.sql.push_str(&format!("${}", self.binds.len()));
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
            Field::Attribute(key) => {
                self.sql.push_str("json_extract(c.attributes, ");
                self.bind(Bind::Text(format!("$.\"{key}\"")));
                self.sql.push(')');
            }
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
                self.sql.push_str(
                    "EXISTS (SELECT 1 FROM orders o, json_each(o.items) j WHERE o.customer_id = c.id \
                     AND o.has_items = 1",
                );
                self.placed_within(*within);
                self.sql.push_str(&format!(
                    " AND json_extract(j.value, '$.{}') = ",
                    by.json_key()
                ));
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
                self.sql.push_str(
                    "((SELECT CAST(COUNT(CASE WHEN EXISTS (SELECT 1 FROM json_each(o.items) j \
                     WHERE json_extract(j.value, '$.category') = ",
                );
                self.bind(Bind::Text(category.clone()));
                self.sql.push_str(
                    ") THEN 1 END) AS REAL) / NULLIF(COUNT(*), 0) FROM orders o \
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
