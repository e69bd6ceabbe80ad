//! What support tools need: `GET /v1/customers/{id}` (everything about one customer, and
//! every message with the scenario that sent it: "why did I get this e-mail?"),
//! `POST /v1/followups` to start a manual scenario, `GET /v1/followups/preview` to see it
//! first, and `POST /v1/messages/{id}/cancel`.

use super::auth::{authorize, Scope};
use super::problem::{FieldError, Problem};
use super::{idempotent, Api, Body, Reply};
use crate::clock::to_millis;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "support",
    params(("id" = String, Path, description = "the customer's id or e-mail address")),
    responses(
        (status = 200, description = "profile, consent, metrics, segments, orders, events, enrollments and messages", body = Object),
        (status = 404, description = "no such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn customer(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Support).await?;
    let view =
        crate::customer_view::customer_view(&api.store, api.engine().scenarios(), api.zone, &id)
            .await?;
    Ok(Json(view).into_response())
}

/// The query of `GET /v1/customers/{id}/recommendations`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecommendQuery {
    /// `cross_sell` (default), `next` or `upsell`.
    #[param(value_type = Option<String>)]
    kind: Option<RecommendKind>,
    /// How many products, 1 to 50 (default 5).
    n: Option<usize>,
    /// Learn from the orders up to the end of this day (YYYY-MM-DD, the shop's zone); default today.
    #[param(value_type = Option<String>, format = Date)]
    as_of: Option<chrono::NaiveDate>,
}

/// The list kinds, as the API spells them.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecommendKind {
    CrossSell,
    Next,
    Upsell,
}

#[utoipa::path(
    get, path = "/v1/customers/{id}/recommendations", tag = "support",
    params(("id" = String, Path, description = "the customer's id or e-mail address"), RecommendQuery),
    responses(
        (status = 200, description = "the products, each with its reason (as rebuy recommend --format json)", body = Object),
        (status = 400, description = "an invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn recommendations(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RecommendQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Reply, Problem> {
    use crate::recommend::model::Kind;
    authorize(&api.store, &headers, Scope::Support).await?;
    let Query(q) = query.map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid query").detail(e.body_text())
    })?;
    let n = q.n.unwrap_or(5);
    if !(1..=50).contains(&n) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid query")
            .detail(format!("n must be from 1 to 50, found {n}")));
    }
    let kind = match q.kind.unwrap_or(RecommendKind::CrossSell) {
        RecommendKind::CrossSell => Kind::CrossSell,
        RecommendKind::Next => Kind::Next,
        RecommendKind::Upsell => Kind::Upsell,
    };
    let today = api.clock.now().with_timezone(&api.zone).date_naive();
    // Without a day asked for, the model the daemon learnt today for its mail, when it has one:
    // the lists the mail shows, at no cost; otherwise learnt for this request.
    let shared = api
        .engine()
        .renderer()
        .recommendations()
        .current()
        .filter(|l| q.as_of.is_none() && l.through() == today);
    let view = match shared {
        Some(learned) => {
            crate::recommend_view::recommendations_from(&api.store, &learned, &id, kind, n).await?
        }
        None => {
            let as_of = q.as_of.unwrap_or(today);
            crate::recommend_view::recommendations(&api.store, api.zone, &id, kind, n, as_of)
                .await?
        }
    };
    Ok(Json(view).into_response())
}

/// The body of `POST /v1/followups`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Followup {
    /// A manual scenario's id.
    scenario: String,
    /// The customer's id or e-mail address.
    customer: String,
    /// The scenario's `vars`, for its templates.
    #[serde(default)]
    #[schema(value_type = Object)]
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
#[utoipa::path(
    post, path = "/v1/followups", tag = "support",
    request_body(content = Followup),
    params(("Idempotency-Key" = Option<String>, Header, description = "a request sent again with the same key gets the first reply (Idempotent-Replayed: true)")),
    responses(
        (status = 201, description = "started", body = Object),
        (status = 200, description = "already started with this Idempotency-Key", body = Object),
        (status = 404, description = "no such scenario or customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
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
                    // A number is text as typed; null stays null (a required variable given as
                    // null is missing), and a list, an object or true is refused by the
                    // scenario's check rather than printed as JSON.
                    Value::Number(n) => (k, Value::String(n.to_string())),
                    other => (k, other),
                })
                .collect();
            let out = api
                .engine()
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
#[utoipa::path(
    get, path = "/v1/followups/preview", tag = "support",
    params(
        ("scenario" = String, Query, description = "a manual scenario's id"),
        ("customer" = String, Query, description = "the customer's id or e-mail address"),
        ("step" = Option<String>, Query, description = "the step; the first when absent"),
    ),
    responses(
        (status = 200, description = "the step rendered for the customer, sent to no one", body = Object),
        (status = 404, description = "no such scenario, step or customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a missing, unknown or repeated parameter, or the step cannot be rendered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn preview(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(given): Query<Vec<(String, String)>>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Support).await?;
    let mut errors = Vec::new();
    // A parameter given twice (two values for one variable) is refused, not half-read.
    let mut q = BTreeMap::new();
    for (k, v) in given {
        let at = format!("?{k}");
        if q.contains_key(&k) && !errors.iter().any(|e: &FieldError| e.at == at) {
            errors.push(FieldError {
                at,
                message: format!("'{k}' is given twice; give it once"),
            });
        }
        q.insert(k, v);
    }
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
            .engine()
            .scenarios()
            .iter()
            .find(|s| s.id == scenario)
            .and_then(|s| s.steps.first())
            .map(|st| st.id.clone())
            .ok_or_else(|| Problem::not_found(format!("no scenario '{scenario}'")))?,
    };
    let r = api
        .engine()
        .preview(&scenario, &step, &customer, vars, api.clock.now())
        .await?;
    Ok(Json(json!({ "scenario": scenario, "step": step, "subject": r.subject, "text": r.text, "html": r.html }))
        .into_response())
}

/// Cancels one queued message; a message already sent (or otherwise settled) gets 409.
#[utoipa::path(
    post, path = "/v1/messages/{id}/cancel", tag = "support",
    params(("id" = i64, Path, description = "the message's id")),
    responses(
        (status = 200, description = "cancelled: the message as it is now", body = Object),
        (status = 400, description = "the id is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such message", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the message is not queued", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_message(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Reply, Problem> {
    let token = authorize(&api.store, &headers, Scope::Support).await?;
    let Path(id) = id.map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid message id").detail(
            "a message id is a whole number, as `rebuy outbox list` and /v1/customers/{id} show it",
        )
    })?;
    let now = to_millis(api.clock.now());
    let by = crate::reasons::Reason::CancelledBy {
        by: format!("the API (token '{}')", token.name),
    };
    let cancelled = api.store.cancel(Some(id), None, &by, now).await?;
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
    Ok(Json(crate::customer_view::message_view(&row, api.zone)).into_response())
}
