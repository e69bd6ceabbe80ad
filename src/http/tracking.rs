//! The tracking routes: `GET <path>/c/{message}/{sig}?u=TARGET` records a click and redirects,
//! `GET <path>/o/{message}/{sig}.gif` records an open and answers a 1×1 GIF. No token: the
//! signature is the key, and a link whose target or message was altered is refused (403), so
//! the redirect cannot send anyone elsewhere. A HEAD, or a hit within a second of delivery, is
//! recorded as a bot and not counted.

use crate::clock::{from_millis, to_millis, Clock};
use crate::store::{Store, TrackingHit};
use crate::tracking::{bot_reason, Kind, Tracker};
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

struct Ctx {
    store: Store,
    tracker: Tracker,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, serde::Deserialize)]
struct Target {
    u: Option<String>,
}

/// The smallest transparent GIF (1×1).
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn router(store: Store, tracker: Tracker, clock: Arc<dyn Clock>) -> Router {
    let path = tracker.path();
    let ctx = Arc::new(Ctx {
        store,
        tracker,
        clock,
    });
    Router::new()
        .route(&format!("{path}/c/{{message}}/{{sig}}"), get(click))
        .route(&format!("{path}/o/{{message}}/{{file}}"), get(open))
        .with_state(ctx)
}

async fn click(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    Path((message, sig)): Path<(String, String)>,
    Query(q): Query<Target>,
) -> Response {
    let Some(target) =
        q.u.filter(|u| ctx.tracker.verify(Kind::Click, &message, u, &sig))
    else {
        return refused();
    };
    record(
        &ctx,
        Kind::Click,
        &message,
        Some(&target),
        method == Method::HEAD,
    )
    .await;
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Redirect::to(&target),
    )
        .into_response()
}

async fn open(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    Path((message, file)): Path<(String, String)>,
) -> Response {
    let sig = file.strip_suffix(".gif").unwrap_or_default();
    if !ctx.tracker.verify(Kind::Open, &message, "", sig) {
        return refused();
    }
    record(&ctx, Kind::Open, &message, None, method == Method::HEAD).await;
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PIXEL,
    )
        .into_response()
}

/// Records the hit once per message and kind. A failure is logged and the customer still gets
/// where they were going: a lost count is better than a broken link.
async fn record(ctx: &Ctx, kind: Kind, message: &str, url: Option<&str>, head: bool) {
    let now = ctx.clock.now();
    let found = match ctx.store.tracked_message(message).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            tracing::info!(
                message,
                kind = kind.as_str(),
                "a tracked link of a message no longer stored"
            );
            return;
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot look up a tracked message");
            return;
        }
    };
    let since_sent = found.sent_at.map(|s| now - from_millis(s));
    let bot = bot_reason(head, since_sent);
    let hit = TrackingHit {
        outbox_id: found.id,
        kind: kind.as_str(),
        at: to_millis(now),
        url,
        bot,
    };
    match ctx.store.record_tracking(&hit).await {
        Ok(first) => {
            crate::telemetry::record_tracking(kind.as_str(), bot.is_none(), first);
            tracing::debug!(message, kind = kind.as_str(), bot, first, "tracked");
        }
        Err(err) => tracing::error!(error = %err, "cannot record a click or open"),
    }
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>403</title></head><body>\
             <p>このリンクは無効です。メールに記載のリンクをそのままお使いください。<br>\
             This link is not valid; please use the link from the e-mail as it is.</p></body></html>",
        ),
    )
        .into_response()
}
