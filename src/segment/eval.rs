//! A segment condition evaluated directly in Rust over one customer's facts. The daemon uses
//! the SQL form ([`super::sql`]); this one is the reference it is tested against, and what
//! `explain`-style tools can use for a single customer. Both follow SQLite's rules: a missing
//! value makes a comparison false, numbers order before text, text compares byte by byte.

use super::fields::Field;
use super::lang::{Cond, ItemKey, Lit};
use super::Window;
use crate::store::{CustomerRow, MetricsRow};
use std::cmp::Ordering;

/// An order as the evaluation needs it.
#[derive(Debug, Clone)]
pub struct FactOrder {
    pub placed_at: i64,
    pub skus: Vec<String>,
    pub categories: Vec<String>,
}

/// A custom event as the evaluation needs it.
#[derive(Debug, Clone)]
pub struct FactEvent {
    pub name: String,
    pub at: i64,
}

/// Everything a condition can read about one customer.
pub struct Facts<'a> {
    pub customer: &'a CustomerRow,
    pub metrics: Option<&'a MetricsRow>,
    pub orders: &'a [FactOrder],
    pub events: &'a [FactEvent],
}

/// A value as SQLite sees it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    Text(String),
}

fn compare(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Val::Text(x), Val::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Val::Num(_), Val::Text(_)) => Ordering::Less,
        (Val::Text(_), Val::Num(_)) => Ordering::Greater,
    }
}

fn lit(l: &Lit) -> Val {
    match l {
        Lit::Int(i) => Val::Num(*i as f64),
        Lit::Float(f) => Val::Num(*f),
        Lit::Text(s) => Val::Text(s.clone()),
        Lit::Bool(b) => Val::Num(f64::from(u8::from(*b))),
    }
}

/// Whether the customer described by `facts` matches `cond` at `window`.
pub fn matches(cond: &Cond, facts: &Facts, window: &Window) -> bool {
    match cond {
        Cond::And(parts) => parts.iter().all(|p| matches(p, facts, window)),
        Cond::Or(parts) => parts.iter().any(|p| matches(p, facts, window)),
        Cond::Not(inner) => !matches(inner, facts, window),
        Cond::Compare { field, op, value } => {
            value_of(field, facts).is_some_and(|v| op.holds(compare(&v, &lit(value))))
        }
        Cond::In { field, values } => value_of(field, facts).is_some_and(|v| {
            values
                .iter()
                .any(|l| compare(&v, &lit(l)) == Ordering::Equal)
        }),
        Cond::Bought { by, value, within } => orders_in(facts, window, *within).any(|o| match by {
            ItemKey::Sku => o.skus.contains(value),
            ItemKey::Category => o.categories.contains(value),
        }),
        Cond::Affinity {
            category,
            within,
            op,
            share,
        } => {
            let (mut with_items, mut with_category) = (0u64, 0u64);
            for o in orders_in(facts, window, *within).filter(|o| !o.skus.is_empty()) {
                with_items += 1;
                with_category += u64::from(o.categories.contains(category));
            }
            with_items > 0
                && op.holds(
                    (with_category as f64 / with_items as f64)
                        .partial_cmp(share)
                        .unwrap_or(Ordering::Equal),
                )
        }
        Cond::OrderedWithin(days) => orders_in(facts, window, Some(*days)).next().is_some(),
        Cond::OrdersWithin { days, op, n } => {
            let count = orders_in(facts, window, Some(*days)).count() as i64;
            op.holds(count.cmp(n))
        }
        Cond::Did {
            event,
            within,
            op,
            n,
        } => {
            let since = within.map(|d| window.since_ms(d)).unwrap_or(i64::MIN);
            let count = facts
                .events
                .iter()
                .filter(|e| &e.name == event && e.at >= since && e.at < window.end_ms)
                .count() as i64;
            op.holds(count.cmp(n))
        }
    }
}

fn orders_in<'a>(
    facts: &'a Facts,
    window: &'a Window,
    days: Option<i64>,
) -> impl Iterator<Item = &'a FactOrder> + 'a {
    let since = days.map(|d| window.since_ms(d)).unwrap_or(i64::MIN);
    facts
        .orders
        .iter()
        .filter(move |o| o.placed_at >= since && o.placed_at < window.end_ms)
}

fn value_of(field: &Field, facts: &Facts) -> Option<Val> {
    match field {
        Field::Metric(name) => facts.metrics.and_then(|m| metric(m, name)),
        Field::Customer(name) => customer(facts.customer, name),
        Field::Attribute(key) => {
            let attrs: serde_json::Value = serde_json::from_str(&facts.customer.attributes).ok()?;
            match attrs.get(key)? {
                serde_json::Value::String(s) => Some(Val::Text(s.clone())),
                serde_json::Value::Number(n) => n.as_f64().map(Val::Num),
                serde_json::Value::Bool(b) => Some(Val::Num(f64::from(u8::from(*b)))),
                _ => None,
            }
        }
    }
}

fn num(v: impl Into<f64>) -> Option<Val> {
    Some(Val::Num(v.into()))
}

fn metric(m: &MetricsRow, name: &str) -> Option<Val> {
    let text = |s: &str| Some(Val::Text(s.to_string()));
    match name {
        "orders" => num(m.orders as f64),
        "first_order" => text(&m.first_order),
        "last_order" => text(&m.last_order),
        "days_since_last" => num(m.days_since_last as f64),
        "tenure_days" => num(m.tenure_days as f64),
        "total_spent" => num(m.total_spent as f64),
        "average_order_value" => num(m.average_order_value),
        "frequency" => num(m.frequency as f64),
        "recency" => num(m.recency as f64),
        "t" => num(m.t as f64),
        "monetary" => num(m.monetary),
        "r_score" => num(m.r_score as f64),
        "f_score" => num(m.f_score as f64),
        "m_score" => num(m.m_score as f64),
        "rfm_segment" => text(&m.rfm_segment),
        "p_alive" => m.p_alive.map(Val::Num),
        "expected_purchases_30d" => m.expected_purchases_30d.map(Val::Num),
        "expected_purchases_90d" => m.expected_purchases_90d.map(Val::Num),
        "predicted_clv" => m.predicted_clv.map(Val::Num),
        "expected_next_order" => m.expected_next_order.as_deref().and_then(text),
        _ => None,
    }
}

fn customer(c: &CustomerRow, name: &str) -> Option<Val> {
    let text = |s: &Option<String>| s.clone().map(Val::Text);
    match name {
        "orders_count" => num(c.orders_count as f64),
        "total_spent" => num(c.total_spent as f64),
        "locale" => text(&c.locale),
        "timezone" => text(&c.timezone),
        "currency" => text(&c.currency),
        "marketing_consent" => c.marketing_consent.map(|v| Val::Num(v as f64)),
        _ => None,
    }
}
