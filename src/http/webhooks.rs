//! `POST /v1/webhooks/shopify/orders`: Shopify's `orders/create` and `orders/paid` (and
//! `orders/updated`), verified by `X-Shopify-Hmac-Sha256` over the raw body with the shop's
//! secret before anything is read, mapped (`import::shopify`) and stored through the import's
//! validation and upserts. Shopify re-sends a webhook until it gets a 2xx and disables one that
//! keeps failing, so an order that cannot be mapped (no e-mail address) is answered 200 with
//! the reason and logged, not refused; a forged one is refused and stores nothing.

use super::problem::Problem;
use super::{body_problem, Api, Body, Reply};
use crate::clock::to_millis;
use crate::import::shopify::map_order;
use crate::import::{order_from_record, parse_customer, Record};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::Arc;

const TOPICS: &[&str] = &["orders/create", "orders/paid", "orders/updated"];

/// Whether `signature` (base64, as Shopify sends it) is the HMAC-SHA256 of `body` under
/// `secret`; compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature Shopify would send for `body` (for tests and for trying it out with curl).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The payload's order id for a message (it was mapped, so it is there).
fn mapped_id(payload: &serde_json::Value) -> String {
    match payload.get("id") {
        Some(serde_json::Value::String(id)) => id.trim().to_string(),
        Some(id) => id.to_string(),
        None => String::new(),
    }
}

fn ignored(reason: String) -> Reply {
    tracing::warn!(%reason, "Shopify webhook ignored");
    Json(json!({ "ignored": reason })).into_response()
}

#[utoipa::path(
    post, path = "/v1/webhooks/shopify/orders", tag = "webhooks",
    request_body(content = Object, description = "Shopify's orders/create, orders/paid or orders/updated payload, byte for byte"),
    params(
        ("X-Shopify-Hmac-Sha256" = String, Header, description = "base64 HMAC-SHA256 of the body under the app's client secret"),
        ("X-Shopify-Topic" = Option<String>, Header, description = "orders/create, orders/paid or orders/updated"),
    ),
    responses(
        (status = 200, description = "stored, or ignored with the reason (`ignored`)", body = Object),
        (status = 404, description = "webhooks are not set up (no secret)", body = super::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn shopify_orders(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply, Problem> {
    let Some(secret) = api.shopify_secret.as_deref() else {
        return Err(Problem::not_found(
            "Shopify webhooks are not set up: set REBUY_SHOPIFY_SECRET (or shopify.secret_file) to the app's client secret",
        ));
    };
    let bytes = body.map_err(|e| body_problem(&e))?;
    let signature = headers
        .get("x-shopify-hmac-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !verify(secret, &bytes, signature) {
        tracing::warn!("Shopify webhook with a missing or wrong signature refused");
        return Err(Problem::new(StatusCode::UNAUTHORIZED, "invalid signature")
            .detail("X-Shopify-Hmac-Sha256 does not match the body under the configured secret"));
    }
    let topic = headers
        .get("x-shopify-topic")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !TOPICS.contains(&topic.as_str()) {
        return Ok(ignored(format!(
            "topic '{topic}' is not one rebuy takes ({})",
            TOPICS.join(", ")
        )));
    }
    let payload = crate::strict_json::parse(&bytes)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "not JSON").detail(format!("{e}")))?;
    let mapped = match map_order(&payload, topic == "orders/create") {
        Ok(m) => m,
        Err(e) => return Ok(ignored(e.0)),
    };
    let record = |fields: serde_json::Map<String, serde_json::Value>| Record {
        line: 0,
        fields: fields.into_iter().collect(),
    };
    // Shopify would re-send a refused order for two days and then turn the webhook off: an
    // order rebuy cannot take is answered 200 with the reason, and logged.
    let customer = match parse_customer(&record(mapped.customer), api.zone, api.clock.now()) {
        Ok(c) => c,
        Err(e) => return Ok(ignored(format!("customer: {}", e.message))),
    };
    let order = match order_from_record(&record(mapped.order), api.zone, api.clock.now()) {
        Ok(o) => o,
        Err(e) => {
            return Ok(ignored(format!(
                "order {}: {}",
                mapped_id(&payload),
                e.message
            )))
        }
    };
    let now = to_millis(api.clock.now());
    let customers = api.store.upsert_customers(&[customer], now).await?;
    // Shopify's order ids are the shop's own: a customer changed on `orders/updated` is a
    // correction (a guest order linked to an account), so the order moves; a follow-up planned
    // from it for the former customer then ends without mail (its queued mail is cancelled with
    // the move; a step not yet queued is ended by the engine).
    let orders = api
        .store
        .upsert_orders_with(
            std::slice::from_ref(&order),
            crate::store::Moves::Allow { now },
        )
        .await?;
    api.wake.notify_one();
    tracing::info!(order = %order.id, %topic, "Shopify order stored");
    Ok(Json(json!({
        "order_id": order.id,
        "customer_id": order.customer_id,
        "customer": if customers.0 > 0 { "inserted" } else if customers.1 > 0 { "updated" } else { "unchanged" },
        "order": if orders.inserted > 0 { "inserted" } else if orders.updated > 0 { "updated" } else { "unchanged" },
    }))
    .into_response())
}
