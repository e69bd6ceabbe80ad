//! What a template and a condition can see: the customer with a summary of their orders, the
//! triggering order and its items, the shop's settings, the variables of a manual trigger,
//! the unsubscribe URL and `now`. The field lists here are what `rebuy check` accepts.

use crate::clock::from_millis;
use crate::store::{CustomerRow, OrderRow, METRICS_COLUMNS};
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
    "metrics",
    "event",
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
    "segments",
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
    /// The named segments the customer is in (as of their last evaluation), sorted.
    pub segments: Vec<String>,
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

/// The fields under `metrics`: the stored metrics columns (docs/metrics.md) but the
/// customer's id; all none before the first refresh.
pub const METRICS_FIELDS: &[&str] = METRICS_COLUMNS.split_at(1).1;

/// The `metrics` object of a context: the stored row, or every field none. A minijinja object
/// read field by field when a template asks, so that a message whose templates never mention
/// `metrics` pays nothing for it.
pub fn metrics_view(row: Option<&crate::store::MetricsRow>) -> minijinja::Value {
    minijinja::Value::from_object(MetricsObject(row.cloned()))
}

#[derive(Debug)]
struct MetricsObject(Option<crate::store::MetricsRow>);

impl minijinja::value::Object for MetricsObject {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        use minijinja::Value;
        let name = key.as_str()?;
        if !METRICS_FIELDS.contains(&name) {
            return None;
        }
        let Some(r) = &self.0 else {
            return Some(Value::from(()));
        };
        let opt_f = |v: Option<f64>| v.map_or(Value::from(()), Value::from);
        Some(match name {
            "as_of" => Value::from(r.as_of.as_str()),
            "orders" => Value::from(r.orders),
            "first_order" => Value::from(r.first_order.as_str()),
            "last_order" => Value::from(r.last_order.as_str()),
            "days_since_last" => Value::from(r.days_since_last),
            "tenure_days" => Value::from(r.tenure_days),
            "total_spent" => Value::from(r.total_spent),
            "average_order_value" => Value::from(r.average_order_value),
            "frequency" => Value::from(r.frequency),
            "recency" => Value::from(r.recency),
            "t" => Value::from(r.t),
            "monetary" => Value::from(r.monetary),
            "r_score" => Value::from(r.r_score),
            "f_score" => Value::from(r.f_score),
            "m_score" => Value::from(r.m_score),
            "rfm_segment" => Value::from(r.rfm_segment.as_str()),
            "p_alive" => opt_f(r.p_alive),
            "expected_purchases_30d" => opt_f(r.expected_purchases_30d),
            "expected_purchases_90d" => opt_f(r.expected_purchases_90d),
            "predicted_clv" => opt_f(r.predicted_clv),
            "expected_next_order" => r
                .expected_next_order
                .as_deref()
                .map_or(Value::from(()), Value::from),
            _ => return None,
        })
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(METRICS_FIELDS)
    }
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
    /// The customer's stored metrics, RFM scores, segment and predictions.
    pub metrics: minijinja::Value,
    /// The custom event that started an `event` scenario: `id`, `name`, `at`, `properties`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
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
            segments: c.segments.clone(),
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
    let none = serde_json::json!({});
    sample_context_with(shop, unsubscribe_url, SAMPLE_ITEMS, &none, none.clone())
}

/// The line items of the sample order: one lotion.
pub const SAMPLE_ITEMS: &str = r#"[{"sku":"SKU-1","name":"しっとり化粧水","category":"lotion","quantity":1,"unit_price":3980}]"#;

/// [`sample_context`] with the sample order's line items given as JSON (`"[]"`: an order
/// imported without items, which a template must also render), the customer's attributes
/// and the enrollment's `vars` (a manual trigger's `--var`s).
pub fn sample_context_with(
    shop: &BTreeMap<String, String>,
    unsubscribe_url: &str,
    items: &str,
    attributes: &serde_json::Value,
    vars: serde_json::Value,
) -> minijinja::Value {
    // A fixed instant: what a check sees does not depend on when it runs.
    let now = from_millis(1_767_225_600_000); // 2026-01-01T00:00:00Z
    let customer = CustomerRow {
        id: "SAMPLE".into(),
        email: "sample@example.jp".into(),
        name: "山田 花子".into(),
        timezone: Some("Asia/Tokyo".into()),
        locale: Some("ja".into()),
        attributes: attributes.to_string(),
        orders_count: 1,
        total_spent: 3980,
        currency: Some("JPY".into()),
        first_order_at: Some(crate::clock::to_millis(now)),
        last_order_at: Some(crate::clock::to_millis(now)),
        marketing_consent: Some(1),
        consent_at: None,
        metrics: None,
        segments: Vec::new(),
    };
    let order = OrderRow {
        id: "SAMPLE-1".into(),
        customer_id: "SAMPLE".into(),
        placed_at: crate::clock::to_millis(now),
        total: 3980,
        currency: "JPY".into(),
        items: items.into(),
    };
    let event = vars.get("event").cloned();
    minijinja::Value::from_serialize(MessageContext {
        event,
        customer: CustomerView::new(&customer, chrono_tz::Asia::Tokyo, now),
        order: Some(OrderView::new(&order)),
        shop,
        vars,
        scenario: context_name("sample", "sample"),
        step: Some(context_name("sample", "sample")),
        unsubscribe_url: unsubscribe_url.to_string(),
        now: now.to_rfc3339(),
        metrics: metrics_view(Some(&sample_metrics())),
    })
}

/// Made-up metrics for the sample customer.
fn sample_metrics() -> crate::store::MetricsRow {
    crate::store::MetricsRow {
        customer_id: "SAMPLE".into(),
        as_of: "2026-01-01".into(),
        orders: 3,
        first_order: "2025-06-01".into(),
        last_order: "2025-12-01".into(),
        days_since_last: 31,
        tenure_days: 214,
        total_spent: 11940,
        average_order_value: 3980.0,
        frequency: 2,
        recency: 183,
        t: 214,
        monetary: 3980.0,
        r_score: 4,
        f_score: 4,
        m_score: 3,
        rfm_segment: "loyal".into(),
        p_alive: Some(0.82),
        expected_purchases_30d: Some(0.31),
        expected_purchases_90d: Some(0.88),
        predicted_clv: Some(14_200.0),
        expected_next_order: Some("2026-02-10".into()),
    }
}
