//! What a template and a condition can see: the customer with a summary of their orders, the
//! triggering order and its items, the shop's settings, the variables of a manual trigger,
//! the unsubscribe URL and `now`. The field lists here are what `rebuy check` accepts.

use crate::clock::from_millis;
use crate::store::{CustomerRow, OrderRow};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Top-level names of the context.
pub const CONTEXT_ROOTS: &[&str] = &[
    "customer",
    "order",
    "shop",
    "vars",
    "scenario",
    "step",
    "unsubscribe_url",
    "now",
];
pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "email",
    "name",
    "timezone",
    "locale",
    "attributes",
    "orders_count",
    "total_spent",
    "currency",
    "first_order_at",
    "last_order_at",
    "days_since_last_order",
];
pub const ORDER_FIELDS: &[&str] = &[
    "id",
    "placed_at",
    "total",
    "currency",
    "items",
    "items_count",
];

#[derive(Debug, Clone, Serialize)]
pub struct CustomerView {
    pub id: String,
    pub email: String,
    pub name: String,
    /// The customer's zone, or the configured default.
    pub timezone: String,
    pub locale: Option<String>,
    pub attributes: serde_json::Value,
    pub orders_count: i64,
    pub total_spent: i64,
    pub currency: Option<String>,
    pub first_order_at: Option<String>,
    pub last_order_at: Option<String>,
    pub days_since_last_order: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemView {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub category: String,
    pub quantity: i64,
    pub unit_price: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub placed_at: String,
    pub total: i64,
    pub currency: String,
    pub items: Vec<ItemView>,
    pub items_count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameRef {
    pub id: String,
    pub name: String,
}

/// The whole context of one message or condition.
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext<'a> {
    pub customer: CustomerView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderView>,
    pub shop: &'a BTreeMap<String, String>,
    pub vars: serde_json::Value,
    pub scenario: NameRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<NameRef>,
    pub unsubscribe_url: String,
    pub now: String,
}

fn iso(ms: i64) -> String {
    from_millis(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl CustomerView {
    /// The customer as of `now`; `orders_count` may be overridden to count only the orders up
    /// to a triggering one.
    pub fn new(c: &CustomerRow, zone: Tz, now: DateTime<Utc>) -> Self {
        Self {
            id: c.id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            timezone: zone.name().to_string(),
            locale: c.locale.clone(),
            attributes: serde_json::from_str(&c.attributes)
                .unwrap_or(serde_json::Value::Object(Default::default())),
            orders_count: c.orders_count,
            total_spent: c.total_spent,
            currency: c.currency.clone(),
            first_order_at: c.first_order_at.map(iso),
            last_order_at: c.last_order_at.map(iso),
            days_since_last_order: c
                .last_order_at
                .map(|t| (now - from_millis(t)).num_days().max(0)),
        }
    }
}

impl OrderView {
    pub fn new(o: &OrderRow) -> Self {
        let items: Vec<ItemView> = serde_json::from_str(&o.items).unwrap_or_default();
        Self {
            id: o.id.clone(),
            placed_at: iso(o.placed_at),
            total: o.total,
            currency: o.currency.clone(),
            items_count: items.iter().map(|i| i.quantity).sum(),
            items,
        }
    }
}

/// `{ id, name }` for the scenario and step in the context.
pub fn context_name(id: &str, name: &str) -> NameRef {
    NameRef {
        id: id.to_string(),
        name: name.to_string(),
    }
}

/// A context with a made-up customer and order, for checking what templates render.
pub fn sample_context(shop: &BTreeMap<String, String>, unsubscribe_url: &str) -> minijinja::Value {
    // A fixed instant: what a check sees does not depend on when it runs.
    let now = from_millis(1_767_225_600_000); // 2026-01-01T00:00:00Z
    let customer = CustomerRow {
        id: "SAMPLE".into(),
        email: "sample@example.jp".into(),
        name: "山田 花子".into(),
        timezone: Some("Asia/Tokyo".into()),
        locale: Some("ja".into()),
        attributes: "{}".into(),
        orders_count: 1,
        total_spent: 3980,
        currency: Some("JPY".into()),
        first_order_at: Some(crate::clock::to_millis(now)),
        last_order_at: Some(crate::clock::to_millis(now)),
        marketing_consent: Some(1),
        consent_at: None,
    };
    let order = OrderRow {
        id: "SAMPLE-1".into(),
        customer_id: "SAMPLE".into(),
        placed_at: crate::clock::to_millis(now),
        total: 3980,
        currency: "JPY".into(),
        items: r#"[{"sku":"SKU-1","name":"しっとり化粧水","category":"lotion","quantity":1,"unit_price":3980}]"#.into(),
    };
    minijinja::Value::from_serialize(MessageContext {
        customer: CustomerView::new(&customer, chrono_tz::Asia::Tokyo, now),
        order: Some(OrderView::new(&order)),
        shop,
        vars: serde_json::json!({}),
        scenario: context_name("sample", "sample"),
        step: Some(context_name("sample", "sample")),
        unsubscribe_url: unsubscribe_url.to_string(),
        now: now.to_rfc3339(),
    })
}
