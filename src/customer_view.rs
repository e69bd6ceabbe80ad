//! One customer as support staff see them ("why did I get this e-mail?"): profile, consent
//! and suppression, metrics and RFM segment, named segments, orders, events, enrollments with
//! their steps, and every message with the scenario that sent it; times in the customer's
//! zone. The API's `GET /v1/customers/{id}` and `rebuy customer show` both print this.

use crate::clock::from_millis;
use crate::scenario::Scenario;
use crate::store::{EnrollmentView, OutboxRow, Store, TrackingRow};
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The orders (and events) shown with a customer, newest first.
const ORDERS_SHOWN: i64 = 100;

/// A stored instant as RFC 3339 in the shop's zone.
pub fn local(ms: Option<i64>, zone: Tz) -> Option<String> {
    ms.map(|m| from_millis(m).with_timezone(&zone).to_rfc3339())
}

/// A message's clicks and opens (when tracking is on): the first of each kind, people and
/// bots apart.
fn tracking_view(m: &OutboxRow, tracking: &[TrackingRow], zone: Tz) -> Vec<Value> {
    tracking
        .iter()
        .filter(|t| t.outbox_id == m.id)
        .map(|t| {
            json!({
                "kind": t.kind,
                "at": local(Some(t.at), zone),
                "counted": t.counted,
                "url": t.url,
                "note": t.note,
            })
        })
        .collect()
}

pub fn message_view(m: &OutboxRow, zone: Tz) -> Value {
    json!({
        "id": m.id,
        "status": m.status,
        "scenario": m.scenario_id,
        "step": m.step_id,
        "variant": m.variant,
        "enrollment_id": m.enrollment_id,
        "transactional": m.transactional != 0,
        "to": m.to_email,
        "subject": m.subject,
        "message_id": m.message_id,
        "due_at": local(Some(m.due_at), zone),
        "sent_at": local(m.sent_at, zone),
        "expires_at": local(m.expires_at, zone),
        "attempts": m.attempts,
        "last_error": m.last_error,
    })
}

pub fn enrollment_view(e: &EnrollmentView, steps: Option<&[String]>, zone: Tz) -> Value {
    json!({
        "id": e.id,
        "scenario": e.scenario_id,
        "state": e.state,
        "arm": e.arm,
        "order_id": e.order_id,
        "vars": serde_json::from_str::<Value>(&e.vars).unwrap_or_default(),
        "steps": steps,
        // Only an active enrollment waits on a step.
        "next_step": match (&e.next_step_id, e.state.as_str()) {
            (_, state) if state != "active" => None,
            (Some(id), _) => Some(id.clone()),
            (None, _) => steps.and_then(|s| s.get(usize::try_from(e.next_step).ok()?)).cloned(),
        },
        "next_due_at": local(e.next_due_at, zone),
        "triggered_at": local(Some(e.triggered_at), zone),
        "goal_reached_at": local(e.goal_reached_at, zone),
        "goal_order_id": e.goal_order_id,
        "ended_at": local(e.ended_at, zone),
        "end_reason": e.end_reason,
    })
}

/// The view of the customer `id` (or e-mail address); `default_zone` for customers without one.
pub async fn customer_view(
    store: &Store,
    scenarios: &[Scenario],
    default_zone: Tz,
    id: &str,
) -> anyhow::Result<Value> {
    let c = store.find_customer_with_metrics(id).await?;
    let zone = c
        .timezone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(default_zone);
    // What the send would find: the address's entry, or the person's wish recorded for them.
    let found = store
        .suppressions_for(std::slice::from_ref(&c.email), std::slice::from_ref(&c.id))
        .await?;
    let suppressed = crate::delivery::suppression_for(
        found.by_email.values().next().copied(),
        &[found.by_customer.get(&c.id).copied()],
        false,
    );
    let orders = store.customer_orders(&c.id, ORDERS_SHOWN).await?;
    let enrollments = store.customer_enrollments(&c.id).await?;
    let messages = store.customer_messages(&c.id).await?;
    let events = store.customer_events(&c.id, ORDERS_SHOWN).await?;
    let tracking = store.customer_tracking(&c.id).await?;
    let steps: BTreeMap<&str, Vec<String>> = scenarios
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.steps.iter().map(|st| st.id.clone()).collect(),
            )
        })
        .collect();
    let metrics = c.metrics.as_deref();
    Ok(json!({
        "id": c.id,
        "email": c.email,
        "name": c.name,
        "timezone": c.timezone,
        "locale": c.locale,
        "attributes": serde_json::from_str::<Value>(&c.attributes).unwrap_or_default(),
        "consent": {
            "marketing": c.marketing_consent.map(|v| v != 0),
            "at": local(c.consent_at, zone),
            "suppressed": suppressed.map(|k| k.as_str()),
        },
        "orders_count": c.orders_count,
        "total_spent": c.total_spent,
        "currency": c.currency,
        "first_order_at": local(c.first_order_at, zone),
        "last_order_at": local(c.last_order_at, zone),
        "rfm_segment": metrics.map(|m| m.rfm_segment.clone()),
        "metrics": metrics,
        "segments": c.segments,
        "orders": orders.iter().map(|o| json!({
            "id": o.id,
            "placed_at": local(Some(o.placed_at), zone),
            "total": o.total,
            "currency": o.currency,
            "items": serde_json::from_str::<Value>(&o.items).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "events": events.iter().map(|e| json!({
            "id": e.id,
            "name": e.name,
            "at": local(Some(e.at), zone),
            "properties": serde_json::from_str::<Value>(&e.properties).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "enrollments": enrollments.iter().map(|e| enrollment_view(e, steps.get(e.scenario_id.as_str()).map(Vec::as_slice), zone)).collect::<Vec<_>>(),
        "messages": messages.iter().map(|m| {
            let mut v = message_view(m, zone);
            v["tracking"] = tracking_view(m, &tracking, zone).into();
            v
        }).collect::<Vec<_>>(),
    }))
}
