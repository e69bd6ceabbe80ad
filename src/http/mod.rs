//! The HTTP server of `rebuy run` and `rebuy serve` (axum on hyper): the `/v1` API, health,
//! and the unsubscribe page, with a connection cap, a header timeout, a request timeout and a
//! body limit on every route, and a graceful stop that lets requests in flight finish.

mod auth;
mod ingest;
pub mod openapi;
mod problem;
mod read;

mod support;
pub mod tracking;
pub mod unsubscribe;
mod webhooks;
mod writer;

pub use auth::{hash_token, new_token, Scope};
pub use ingest::{Ingested, MAX_BATCH};
pub use problem::{FieldError, Problem};
pub use webhooks::sign as sign_shopify;
pub use writer::IngestWriter;

use crate::clock::{to_millis, Clock};
use crate::config::HttpConfig;
use crate::engine::Engine;
use crate::store::{KeyClaim, Store};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono_tz::Tz;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};

/// The engine the handlers use; `rebuy run` swaps in a new one when the scenarios are
/// reloaded (SIGHUP).
pub type SharedEngine = Arc<std::sync::RwLock<Arc<Engine>>>;

/// What the API's handlers share.
pub struct Api {
    pub store: Store,
    pub engine: SharedEngine,
    pub clock: Arc<dyn Clock>,
    /// Woken when orders arrive, so that the daemon ticks at once.
    pub wake: Arc<Notify>,
    /// The shop's time zone: for local times in records, and for times in replies.
    pub zone: Tz,
    /// How long after a message an order counts for the scenario report.
    pub attribution_window: chrono::Duration,
    /// The Shopify app's client secret, which signs its webhooks; None: not taken.
    pub shopify_secret: Option<Vec<u8>>,
    /// Commits the orders and events of concurrent requests together.
    pub writer: IngestWriter,
    /// `http.request_timeout_secs`: after it (and a margin) an unanswered idempotency key is free.
    pub request_timeout: Duration,
}

impl Api {
    /// The engine of the scenarios loaded now.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().expect("not poisoned").clone()
    }
}

/// A request body, or why it could not be read (too large: 413).
pub type Body = Result<Bytes, BytesRejection>;
pub type Reply = Response;

/// The server's bounds, from `http:` in the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl From<&HttpConfig> for Limits {
    fn from(c: &HttpConfig) -> Self {
        Self {
            max_body: usize::try_from(c.max_body_bytes).unwrap_or(usize::MAX),
            max_connections: usize::try_from(c.max_connections).unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(c.header_timeout_secs),
            request_timeout: Duration::from_secs(c.request_timeout_secs),
        }
    }
}

/// Every route: the API under `/v1`, `/healthz`, `/readyz`, and `extra` (the unsubscribe
/// page). Anything else is a 404 problem.
pub fn router(api: Arc<Api>, extra: Router, limits: &Limits) -> Router {
    let v1 = Router::new()
        .route("/v1/customers", post(ingest::post_customers))
        .route("/v1/products", post(ingest::post_products))
        .route("/v1/customers/{id}", get(support::customer))
        .route(
            "/v1/customers/{id}/recommendations",
            get(support::recommendations),
        )
        .route("/v1/orders", post(ingest::post_orders))
        .route("/v1/events", post(ingest::post_events))
        .route(
            "/v1/webhooks/shopify/orders",
            post(webhooks::shopify_orders),
        )
        .route("/v1/followups", post(support::start_followup))
        .route("/v1/followups/preview", get(support::preview))
        .route("/v1/messages/{id}/cancel", post(support::cancel_message))
        .route("/v1/scenarios", get(read::scenarios))
        .route("/v1/status", get(read::status))
        .route("/v1/reports/scenarios", get(read::scenario_report))
        .route("/healthz", get(read::healthz))
        .route("/metrics", get(read::metrics))
        .route("/readyz", get(read::readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::page))
        .with_state(api);
    let timeout = limits.request_timeout;
    v1.merge(extra)
        .layer(axum::middleware::from_fn(track))
        .fallback(|| async { Problem::not_found("no such route; see docs/api.md") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(axum::middleware::from_fn(move |req, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "timed out")
                    .detail("the request took longer than http.request_timeout_secs; it may or may not have been applied: send it again (with the same Idempotency-Key) a few seconds later")
                    .into_response(),
            }
        }))
        .layer(axum::middleware::from_fn(catch_panic))
}

/// A handler that panics (a bug) answers 500 with a problem body and is logged, instead of
/// dropping the connection without a word; the server goes on either way.
async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures::FutureExt;
    let route = req.uri().path().to_string();
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(route = %route, panic = %what, "a request handler panicked (a bug in rebuy); answered 500");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                .detail("rebuy failed on this request (a bug, logged); nothing of it may have been stored: send it again, and report it if it repeats")
                .into_response()
        }
    }
}

/// Counts a request under its route's pattern, never its path (which holds ids).
async fn track(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let r = next.run(req).await;
    crate::telemetry::record_request(
        &route,
        &method,
        r.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    r
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets the requests in flight
/// finish (for up to the request timeout). At most `max_connections` are served at once;
/// a client that sends no complete headers within the header timeout is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = hyper_util::service::TowerToHyperService::new(router);
    loop {
        // A free slot first, then a connection: beyond the cap, clients wait in the kernel's
        // queue and cost no file descriptor here.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still running after the request timeout");
    }
}

/// Runs an API request: checks the token's scope, reads the JSON body, and with an
/// `Idempotency-Key` header answers a repeated request with the first one's reply
/// (`Idempotent-Replayed: true`) instead of doing it again. The same key with another body is
/// refused (422); while the first request runs, a second gets 409.
pub async fn idempotent<F, Fut>(
    api: &Arc<Api>,
    headers: &HeaderMap,
    route: &str,
    need: Scope,
    body: Body,
    handle: F,
) -> Reply
where
    F: FnOnce(Arc<Api>, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), Problem>>,
{
    let token = match auth::authorize(&api.store, headers, need).await {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    let bytes = match body {
        Ok(b) => b,
        Err(e) => return body_problem(&e).into_response(),
    };
    let json = match crate::strict_json::parse(&bytes) {
        Ok(j) => j,
        // A key given twice: the JSON is well-formed, the record is not.
        Err(e) if e.is_data() => {
            return Problem::new(StatusCode::BAD_REQUEST, "duplicate key")
                .detail(e.to_string())
                .into_response()
        }
        Err(e) => {
            return Problem::new(StatusCode::BAD_REQUEST, "not JSON")
                .detail(format!(
                    "the body is not valid JSON: {e} (line {}, column {})",
                    e.line(),
                    e.column()
                ))
                .into_response()
        }
    };
    let key = match idempotency_key(headers) {
        Ok(k) => k,
        Err(p) => return p.into_response(),
    };
    let Some(key) = key else {
        return finish(handle(api.clone(), json).await, false);
    };
    let scope = format!("{route}:{}", token.id);
    let hash = hex::encode(Sha256::digest(&bytes));
    let now = to_millis(api.clock.now());
    // A request that never answered (it timed out, or the process died) frees its key after
    // the request timeout and a margin: the retry then runs, which the upserts make safe.
    let stale = i64::try_from((api.request_timeout + Duration::from_secs(5)).as_millis())
        .unwrap_or(i64::MAX);
    match api.store.claim_key(&scope, &key, &hash, now, stale).await {
        Err(e) => return Problem::from(e).into_response(),
        Ok(KeyClaim::Answered {
            request_hash,
            status,
            body,
        }) => {
            if request_hash != hash {
                return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency key reused")
                    .detail(format!("Idempotency-Key '{key}' was used for a different body; use a new key for a new request"))
                    .into_response();
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let value = serde_json::from_str(&body).unwrap_or_default();
            let outcome = if status.is_success() {
                Ok((status, value))
            } else {
                Err(serde_json::from_value::<StoredProblem>(value)
                    .map(|p| p.into_problem(status))
                    .unwrap_or_else(|_| Problem::new(status, "refused")))
            };
            return finish(outcome, true);
        }
        Ok(KeyClaim::InFlight) => {
            return Problem::new(StatusCode::CONFLICT, "request in progress")
                .detail(format!("a request with Idempotency-Key '{key}' is still being handled; try again in a moment"))
                .into_response()
        }
        Ok(KeyClaim::Fresh) => {}
    }
    let outcome = handle(api.clone(), json).await;
    let (status, stored) = match &outcome {
        Ok((s, v)) => (*s, v.to_string()),
        Err(p) => (p.status, serde_json::to_string(p).unwrap_or_default()),
    };
    if let Err(e) = api
        .store
        .answer_key(&scope, &key, status.as_u16(), &stored)
        .await
    {
        tracing::error!(error = %e, "cannot record the reply to an idempotent request");
    }
    finish(outcome, false)
}

/// A stored refusal, read back for a replay.
#[derive(serde::Deserialize)]
struct StoredProblem {
    title: String,
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<StoredField>,
}

#[derive(serde::Deserialize)]
struct StoredField {
    at: String,
    message: String,
}

impl StoredProblem {
    fn into_problem(self, status: StatusCode) -> Problem {
        Problem {
            detail: self.detail,
            errors: self
                .errors
                .into_iter()
                .map(|f| FieldError {
                    at: f.at,
                    message: f.message,
                })
                .collect(),
            ..Problem::new(status, self.title)
        }
    }
}

fn finish(outcome: Result<(StatusCode, serde_json::Value), Problem>, replayed: bool) -> Reply {
    let mut r = match outcome {
        Ok((status, value)) => (status, axum::Json(value)).into_response(),
        Err(p) => p.into_response(),
    };
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= 255 => Ok(Some(k.trim().to_string())),
        _ => Err(
            Problem::new(StatusCode::BAD_REQUEST, "invalid Idempotency-Key")
                .detail("the Idempotency-Key header must be 1 to 255 printable ASCII characters (spaces around it are dropped)"),
        ),
    }
}

/// A body that could not be read: too large (413) or cut off.
pub(crate) fn body_problem(e: &BytesRejection) -> Problem {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(status, "body too large")
            .detail("the body is larger than http.max_body_bytes; send fewer records per request")
    } else {
        Problem::new(status, "unreadable body").detail(e.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_a_problem_and_the_router_goes_on() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("bug");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(catch_panic));
        let get = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app.clone().oneshot(get("/boom")).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = app.oneshot(get("/fine")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
