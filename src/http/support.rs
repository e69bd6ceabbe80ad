//! What support tools need: `GET /v1/customers/{id}` (everything about one customer, and
//! every message with the scenario that sent it: "why did I get this e-mail?"),
//! `POST /v1/followups` to start a manual scenario, `GET /v1/followups/preview` to see it
//! first, and `POST /v1/messages/{id}/cancel`.

use super::auth::{authorize, Scope};
use super::problem::{FieldError, Problem};
use super::{idempotent, Api, Body, Reply};
use crate::clock::{from_millis, to_millis};
use crate::store::{EnrollmentView, OutboxRow};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The orders (and events) shown with a customer, newest first.
const ORDERS_SHOWN: i64 = 100;

/// A stored instant as RFC 3339 in the shop's zone.
fn local(ms: Option<i64>, zone: Tz) -> Option<String> {
    ms.map(|m| from_millis(m).with_timezone(&zone).to_rfc3339())
}

fn message_view(m: &OutboxRow, zone: Tz) -> Value {
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

fn enrollment_view(e: &EnrollmentView, steps: Option<&[String]>, zone: Tz) -> Value {
    json!({
        "id": e.id,
        "scenario": e.scenario_id,
        "state": e.state,
        "arm": e.arm,
        "order_id": e.order_id,
        "vars": serde_json::from_str::<Value>(&e.vars).unwrap_or_default(),
        "steps": steps,
        "next_step": steps.and_then(|s| s.get(usize::try_from(e.next_step).ok()?)),
        "next_due_at": local(e.next_due_at, zone),
        "triggered_at": local(Some(e.triggered_at), zone),
        "goal_reached_at": local(e.goal_reached_at, zone),
        "goal_order_id": e.goal_order_id,
        "ended_at": local(e.ended_at, zone),
        "end_reason": e.end_reason,
    })
}

pub async fn customer(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Support).await?;
    let c = api.store.find_customer_with_metrics(&id).await?;
    let zone = c
        .timezone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(api.zone);
    let suppressed = api.store.suppressed(std::slice::from_ref(&c.email)).await?;
    let orders = api.store.customer_orders(&c.id, ORDERS_SHOWN).await?;
    let enrollments = api.store.customer_enrollments(&c.id).await?;
    let messages = api.store.customer_messages(&c.id).await?;
    let events = api.store.customer_events(&c.id, ORDERS_SHOWN).await?;
    let steps: BTreeMap<&str, Vec<String>> = api
        .engine
        .scenarios()
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.steps.iter().map(|st| st.id.clone()).collect(),
            )
        })
        .collect();
    let metrics = c.metrics.as_deref();
    Ok(Json(json!({
        "id": c.id,
        "email": c.email,
        "name": c.name,
        "timezone": c.timezone,
        "locale": c.locale,
        "attributes": serde_json::from_str::<Value>(&c.attributes).unwrap_or_default(),
        "consent": {
            "marketing": c.marketing_consent.map(|v| v != 0),
            "at": local(c.consent_at, zone),
            "suppressed": suppressed.values().next().map(|k| k.as_str()),
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
        "messages": messages.iter().map(|m| message_view(m, zone)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The body of `POST /v1/followups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Followup {
    scenario: String,
    customer: String,
    #[serde(default)]
    vars: Map<String, Value>,
}

fn followup(json: Value) -> Result<Followup, Problem> {
    serde_json::from_value(json).map_err(|e| {
        let message = e.to_string();
        // serde names the field in backquotes: "unknown field `varz`", "missing field `customer`".
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains(" field `"));
        Problem::invalid(
            "invalid follow-up",
            vec![FieldError {
                at: format!("/{}", named.unwrap_or_default()),
                message,
            }],
        )
    })
}

/// Starts a manual scenario for one customer. The `Idempotency-Key` header is also the
/// enrollment's key: a double click, or the same key from another tool, starts it once. 201
/// when it started; 200 when another token (another tool) had started it with that key; a
/// repeat with the same token replays the first reply (201, `Idempotent-Replayed: true`).
pub async fn start_followup(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Reply {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    idempotent(
        &api,
        &headers,
        "followups",
        Scope::Support,
        body,
        |api, json| async move {
            let f = followup(json)?;
            let vars = f
                .vars
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, Value::String(s)),
                    other => (k, Value::String(other.to_string())),
                })
                .collect();
            let out = api
                .engine
                .trigger_manual(
                    &f.scenario,
                    &f.customer,
                    vars,
                    key.as_deref(),
                    api.clock.now(),
                )
                .await?;
            api.wake.notify_one();
            let status = if out.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, serde_json::to_value(out).unwrap_or_default()))
        },
    )
    .await
}

/// `?scenario=…&customer=…&step=…&var.case_id=…`: the step rendered for the customer, sent to
/// no one and recorded nowhere. Without `step`, the first.
pub async fn preview(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Support).await?;
    let mut errors = Vec::new();
    let mut vars = Map::new();
    for (k, v) in &q {
        match k.strip_prefix("var.") {
            Some(name) => {
                vars.insert(name.to_string(), Value::String(v.clone()));
            }
            None if ["scenario", "customer", "step"].contains(&k.as_str()) => {}
            None => errors.push(FieldError {
                at: format!("?{k}"),
                message: format!("unknown parameter '{k}'; variables are passed as var.NAME=VALUE"),
            }),
        }
    }
    let need = |k: &str, errors: &mut Vec<FieldError>| {
        let v = q.get(k).cloned();
        if v.is_none() {
            errors.push(FieldError {
                at: format!("?{k}"),
                message: format!("missing '{k}'"),
            });
        }
        v.unwrap_or_default()
    };
    let (scenario, customer) = (need("scenario", &mut errors), need("customer", &mut errors));
    if !errors.is_empty() {
        return Err(Problem::invalid("invalid preview", errors));
    }
    let step = match q.get("step") {
        Some(s) => s.clone(),
        None => api
            .engine
            .scenarios()
            .iter()
            .find(|s| s.id == scenario)
            .and_then(|s| s.steps.first())
            .map(|st| st.id.clone())
            .ok_or_else(|| Problem::not_found(format!("no scenario '{scenario}'")))?,
    };
    let r = api
        .engine
        .preview(&scenario, &step, &customer, vars, api.clock.now())
        .await?;
    Ok(Json(json!({ "scenario": scenario, "step": step, "subject": r.subject, "text": r.text, "html": r.html }))
        .into_response())
}

/// Cancels one queued message; a message already sent (or otherwise settled) gets 409.
pub async fn cancel_message(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Support).await?;
    let Path(id) = id.map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid message id").detail(
            "a message id is a whole number, as `rebuy outbox list` and /v1/customers/{id} show it",
        )
    })?;
    let now = to_millis(api.clock.now());
    let cancelled = api.store.cancel(Some(id), None, now).await?;
    let Some(row) = api.store.outbox_row(id).await? else {
        return Err(Problem::not_found(format!("no message {id}")));
    };
    if cancelled.is_empty() && row.status != "cancelled" {
        return Err(
            Problem::new(StatusCode::CONFLICT, "not cancellable").detail(format!(
                "message {id} is {}; only a queued message can be cancelled",
                row.status
            )),
        );
    }
    Ok(Json(message_view(&row, api.zone)).into_response())
}
