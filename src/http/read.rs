//! The read side: `GET /v1/status` (the figures of `rebuy status`), `GET /v1/scenarios`,
//! `GET /v1/reports/scenarios` (the JSON of `rebuy report scenarios --format json`), and
//! `/healthz` and `/readyz` for the load balancer.

use super::auth::{authorize, Scope};
use super::problem::{FieldError, Problem};
use super::{Api, Reply};
use crate::clock::to_millis;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

#[utoipa::path(
    get, path = "/v1/status", tag = "read",
    responses((status = 200, description = "the same figures as rebuy status", body = Object)),
    security(("bearer" = []))
)]
pub async fn status(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Read).await?;
    let view = crate::status::status_view(&api.store, api.zone)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(view).into_response())
}

#[utoipa::path(
    get, path = "/v1/scenarios", tag = "read",
    responses((status = 200, description = "the loaded scenarios and their steps", body = Object)),
    security(("bearer" = []))
)]
pub async fn scenarios(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Read).await?;
    let list: Vec<serde_json::Value> = api.engine().scenarios()
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "name": s.name,
                "file": s.path,
                "enabled": s.enabled,
                "trigger": s.trigger.name(),
                "transactional": s.transactional,
                "holdout": s.holdout,
                "vars": s.vars.iter().map(|v| json!({"name": v.name, "required": v.required})).collect::<Vec<_>>(),
                "steps": s.steps.iter().map(|st| json!({
                    "id": st.id,
                    "templates": st.sends().into_iter().map(|(k, send)| json!({"key": k, "template": send.template})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "scenarios": list })).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    scenario: Option<String>,
    /// Only enrollments triggered on or after this day (YYYY-MM-DD, the shop's zone).
    #[param(value_type = Option<String>, format = Date)]
    since: Option<String>,
    /// The report as it stood at the end of this day (YYYY-MM-DD, the shop's zone); default now.
    #[param(value_type = Option<String>, format = Date)]
    as_of: Option<String>,
    /// Also count enrollments whose goal window is still open (default false).
    #[param(value_type = Option<bool>)]
    include_open: Option<String>,
}

/// The report query's values, each read with its own name in what is wrong (400).
struct ReportPeriod {
    since: Option<chrono::NaiveDate>,
    as_of: Option<chrono::NaiveDate>,
    include_open: bool,
}

impl ReportQuery {
    fn period(&self) -> Result<ReportPeriod, Problem> {
        let mut errors = Vec::new();
        let mut day = |name: &str, text: &Option<String>| {
            let text = text.as_deref()?;
            let parsed = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d");
            if parsed.is_err() {
                errors.push(FieldError {
                    at: format!("?{name}"),
                    message: format!(
                        "'{text}' is not a day; write it as YYYY-MM-DD, e.g. 2026-04-01"
                    ),
                });
            }
            parsed.ok()
        };
        let since = day("since", &self.since);
        let as_of = day("as_of", &self.as_of);
        let include_open = match self.include_open.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                errors.push(FieldError {
                    at: "?include_open".into(),
                    message: format!("'{other}' is neither true nor false"),
                });
                false
            }
        };
        if !errors.is_empty() {
            return Err(Problem {
                errors,
                ..Problem::new(StatusCode::BAD_REQUEST, "invalid query")
            });
        }
        Ok(ReportPeriod {
            since,
            as_of,
            include_open,
        })
    }
}

#[utoipa::path(
    get, path = "/v1/reports/scenarios", tag = "read",
    params(ReportQuery),
    responses(
        (status = 200, description = "the same JSON as rebuy report scenarios --format json", body = Vec<Object>),
        (status = 400, description = "an invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`scenario` is not loaded and has no enrollments in the period", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn scenario_report(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Reply, Problem> {
    authorize(&api.store, &headers, Scope::Read).await?;
    let Query(q) = query.map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid query").detail(e.body_text())
    })?;
    let period = q.period()?;
    let since = period
        .since
        .map_or(i64::MIN, |d| crate::clock::start_of_day(d, api.zone));
    let as_of = match period.as_of {
        Some(d) => crate::clock::start_of_day(d + chrono::Days::new(1), api.zone) - 1,
        None => to_millis(api.clock.now()),
    };
    let counted = crate::store::Period {
        since,
        as_of,
        include_open: period.include_open,
    };
    let report = crate::reports::scenario_report(
        &api.store,
        api.engine().scenarios(),
        counted,
        q.scenario.as_deref(),
        api.attribution_window,
    )
    .await?;
    if let Some(why) = q
        .scenario
        .as_deref()
        .filter(|_| report.is_empty())
        .and_then(|id| crate::reports::unknown_scenario(id, api.engine().scenarios()))
    {
        return Err(Problem::not_found(why));
    }
    Ok(Json(report).into_response())
}

/// `GET /metrics`: Prometheus's text format. No token (like `/healthz`): keep it behind the
/// reverse proxy, or off the public listener.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus's text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(api): State<Arc<Api>>) -> Reply {
    let Some(handle) = crate::telemetry::handle() else {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no metrics")
            .detail("another metrics recorder is installed in this process")
            .into_response();
    };
    match api.store.outbox_counts().await {
        Ok(counts) => crate::telemetry::set_outbox(&counts),
        Err(e) => tracing::warn!(error = %e, "cannot count the outbox for /metrics"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process runs", body = Object)))]
pub async fn healthz() -> Reply {
    Json(json!({ "status": "ok" })).into_response()
}

/// Ready when the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "the database answers", body = Object)))]
pub async fn readyz(State(api): State<Arc<Api>>) -> Reply {
    match api.store.flow_status().await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not ready")
                .detail("the database does not answer")
                .into_response()
        }
    }
}
