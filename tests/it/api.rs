//! The HTTP API through its router, without a port (tower `oneshot`), on a real SQLite file:
//! tokens and scopes, ingest with the import's rules and all-or-nothing batches,
//! idempotency, problem+json refusals, follow-ups, the customer view and the read side.

use crate::helpers::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use rebuy::clock::ManualClock;
use rebuy::http::{new_token, Api, Limits, Scope};
use rebuy::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const FIRST: &str = r#"
id: welcome
trigger: first_order
steps:
  - id: thanks
    send: { template: t, subject: "Thank you {{ customer.name }}" }
"#;

const SUPPORT: &str = r#"
id: apology
trigger: manual
transactional: true
vars: [case_id]
steps:
  - id: sorry
    send: { template: sorry, subject: "About case {{ vars.case_id }}" }
"#;

const SHOPIFY_SECRET: &str = "rebuy-test-secret";

/// A real `orders/create` body (see tests/fixtures/shopify/README.md), byte for byte.
const SHOPIFY_ORDER: &[u8] = include_bytes!("../fixtures/shopify/orders-create.json");

struct Server {
    router: axum::Router,
    store: Store,
    shop: TestShop,
    clock: ManualClock,
    wake: Arc<tokio::sync::Notify>,
    tokens: std::collections::HashMap<Scope, String>,
    engine: Arc<rebuy::engine::Engine>,
}

/// The API over `store`, with the engine of `shop`'s scenarios, on `clock`.
pub(crate) async fn api_on(
    shop: &TestShop,
    store: &Store,
    clock: &ManualClock,
    shopify_secret: Option<Vec<u8>>,
) -> Arc<Api> {
    let app = shop.app();
    Arc::new(Api {
        store: store.clone(),
        engine: Arc::new(std::sync::RwLock::new(Arc::new(
            app.engine(store).await.unwrap().unwrap(),
        ))),
        clock: Arc::new(clock.clone()),
        wake: Arc::new(tokio::sync::Notify::new()),
        zone: chrono_tz::Asia::Tokyo,
        attribution_window: chrono::Duration::days(30),
        shopify_secret,
        writer: rebuy::http::IngestWriter::start(store.clone()),
        request_timeout: std::time::Duration::from_secs(30),
    })
}

/// A shop with the shipped abandoned-cart scenario, without its holdout so that every
/// customer is treated, and its templates; it sends to `smtp`.
pub(crate) fn abandoned_cart_shop(smtp: &SmtpServer) -> TestShop {
    let scenario = include_str!("../../scenarios/abandoned-cart.yaml").replace("holdout: 10%", "");
    TestShop::new(
        &[("abandoned-cart.yaml", &scenario)],
        &[
            (
                "cart_reminder.mjml",
                include_str!("../../templates/cart_reminder.mjml"),
            ),
            (
                "cart_reminder.txt",
                include_str!("../../templates/cart_reminder.txt"),
            ),
            ("_footer.html", include_str!("../../templates/_footer.html")),
            ("_footer.txt", include_str!("../../templates/_footer.txt")),
        ],
        Some(smtp),
    )
}

async fn server_with(limits: Limits) -> Server {
    let shop = TestShop::new(
        &[("welcome.yaml", FIRST), ("apology.yaml", SUPPORT)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
            ("sorry.html", "<p>{{ vars.case_id }}</p>"),
            ("sorry.txt", "{{ vars.case_id }}"),
        ],
        None,
    );
    let store = shop.store().await;
    let clock = ManualClock::new(utc("2026-11-02T03:00:00Z"));
    let api = api_on(
        &shop,
        &store,
        &clock,
        Some(SHOPIFY_SECRET.as_bytes().to_vec()),
    )
    .await;
    let wake = api.wake.clone();
    let engine = api.engine();
    let mut tokens = std::collections::HashMap::new();
    for scope in [Scope::Ingest, Scope::Support, Scope::Read, Scope::Admin] {
        let (token, hash) = new_token();
        store
            .insert_token(scope.as_str(), scope.as_str(), &hash, 0)
            .await
            .unwrap();
        tokens.insert(scope, token);
    }
    let router = rebuy::http::router(api, axum::Router::new(), &limits);
    Server {
        router,
        store,
        shop,
        clock,
        wake,
        tokens,
        engine,
    }
}

pub(crate) fn limits() -> Limits {
    Limits {
        max_body: 64 * 1024,
        max_connections: 16,
        header_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(30),
    }
}

async fn server() -> Server {
    server_with(limits()).await
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
}

impl Server {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        scope: Option<Scope>,
        body: Option<&str>,
        key: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(s) = scope {
            req = req.header("authorization", format!("Bearer {}", self.tokens[&s]));
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(body.unwrap_or_default().to_string()))
            .unwrap();
        send(&self.router, req).await
    }

    async fn post(&self, uri: &str, scope: Scope, body: &Value) -> Answer {
        self.call("POST", uri, Some(scope), Some(&body.to_string()), None)
            .await
    }
}

/// Sends one request through the router; its status, headers and JSON body (null if none).
pub(crate) async fn send(router: &axum::Router, req: Request<Body>) -> Answer {
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn is_problem(a: &Answer) -> bool {
    a.headers.get("content-type").map(|v| v.to_str().unwrap()) == Some("application/problem+json")
}

const AYA: &str = r#"{"id": "c1", "email": "aya@example.jp", "name": "Aya", "timezone": "Asia/Tokyo", "marketing_consent": true}"#;

#[tokio::test]
async fn without_a_valid_token_of_the_right_scope_nothing_is_stored() {
    let s = server().await;
    let none = s.call("POST", "/v1/customers", None, Some(AYA), None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(is_problem(&none));
    assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"rebuy\"");
    let mut forged = Request::builder()
        .method("POST")
        .uri("/v1/customers")
        .header("authorization", "Bearer rbk_not-a-real-token")
        .body(Body::from(AYA))
        .unwrap();
    forged
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    assert_eq!(
        s.router.clone().oneshot(forged).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The scheme's name in any case (RFC 9110): `bearer` is `Bearer`.
    let lower = Request::builder()
        .uri("/v1/customers/c1")
        .header(
            "authorization",
            format!("bearer {}", s.tokens[&Scope::Support]),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        s.router.clone().oneshot(lower).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "authorized, and nobody is there yet"
    );
    for scope in [Scope::Read, Scope::Support] {
        let wrong = s
            .call("POST", "/v1/customers", Some(scope), Some(AYA), None)
            .await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{scope:?}");
        assert!(wrong.json["detail"]
            .as_str()
            .unwrap()
            .contains("needs ingest"));
    }
    let read = s
        .call("GET", "/v1/customers/c1", Some(Scope::Ingest), None, None)
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert!(s.store.all_customers().await.unwrap().is_empty());
    // A revoked token stops working.
    let ok = s
        .call("POST", "/v1/customers", Some(Scope::Admin), Some(AYA), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(s.store.revoke_token("admin", 1).await.unwrap());
    let revoked = s
        .call("GET", "/v1/status", Some(Scope::Admin), None, None)
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn records_are_upserted_as_an_import_does_and_a_resent_request_changes_nothing() {
    let s = server().await;
    let a = s
        .post(
            "/v1/customers",
            Scope::Ingest,
            &serde_json::from_str(AYA).unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json,
        json!({"records": 1, "inserted": 1, "updated": 0, "unchanged": 0})
    );
    let batch = json!({"customers": [
        {"id": "c2", "email": "ken@example.com", "attributes": {"skin": "dry"}},
        {"id": "c3", "email": "mei@example.jp"}
    ]});
    assert_eq!(
        s.post("/v1/customers", Scope::Ingest, &batch).await.json["inserted"],
        2
    );
    assert_eq!(
        s.post("/v1/customers", Scope::Ingest, &batch).await.json["unchanged"],
        2
    );

    let order = json!({"order_id": "o1", "customer_id": "c1", "placed_at": "2026-11-01 10:15",
        "currency": "JPY", "items": [{"sku": "LOTION", "quantity": 2, "unit_price": 1990}]});
    let first = s.post("/v1/orders", Scope::Ingest, &order).await;
    assert_eq!(
        first.json,
        json!({"records": 1, "inserted": 1, "updated": 0, "unchanged": 0})
    );
    let again = s.post("/v1/orders", Scope::Ingest, &order).await;
    assert_eq!(
        again.json["unchanged"], 1,
        "the same order again changes nothing and says so"
    );
    let stored = s.store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        stored.total, 3980,
        "the total is the items' sum when not given"
    );
    // A local time is the shop's zone: 10:15 in Tokyo.
    assert_eq!(
        rebuy::clock::from_millis(stored.placed_at).to_rfc3339(),
        "2026-11-01T01:15:00+00:00"
    );
    let c = s.store.find_customer("c1").await.unwrap();
    assert_eq!(
        (c.orders_count, c.total_spent),
        (1, 3980),
        "aggregates commit with the order"
    );
}

#[tokio::test]
async fn an_invalid_record_refuses_the_whole_batch_and_names_every_field() {
    let s = server().await;
    s.post(
        "/v1/customers",
        Scope::Ingest,
        &serde_json::from_str(AYA).unwrap(),
    )
    .await;
    let batch = json!({"orders": [
        {"order_id": "ok", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 100},
        {"order_id": "bad-date", "customer_id": "c1", "placed_at": "yesterday", "currency": "JPY", "total": 100},
        {"order_id": "typo", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "totl": 100},
        {"order_id": "stranger", "customer_id": "nobody", "placed_at": "2026-11-01", "currency": "JPY", "total": 1},
        {"order_id": "items", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY",
         "items": [{"sku": "A", "unit_price": 1}, {"sku": "B", "quantity": 0, "unit_price": 1}]},
        {"order_id": "ok", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 100},
        {"order_id": {"a": 1}, "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 1},
        {"order_id": "list", "customer_id": ["c1"], "placed_at": "2026-11-01", "currency": "JPY", "total": 1},
        {"order_id": true, "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 1},
        {"order_id": "minus", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY",
         "items": [{"sku": "A", "unit_price": -500}]},
        {"order_id": "never", "customer_id": "c1", "placed_at": "0000-01-01", "currency": "JPY", "total": 1},
        {"order_id": "x".repeat(256), "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 1},
        {"order_id": "long", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY",
         "items": [{"sku": "A", "name": {"ja": "名"}, "unit_price": 1}]},
        {"order_id": "yes", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "J".repeat(4097), "total": 1},
        {"order_id": "nothing", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY"},
        {"order_id": "nul", "customer_id": "c\u{0}1", "placed_at": "2026-11-01", "currency": "JPY", "total": 1}
    ]});
    let r = s.post("/v1/orders", Scope::Ingest, &batch).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(is_problem(&r));
    assert_eq!(r.json["title"], "invalid order");
    let at: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "/orders/1/placed_at",
            "/orders/2/total",
            "/orders/2/totl",
            "/orders/3/customer_id",
            "/orders/4/items/1/quantity",
            "/orders/5/order_id",
            "/orders/6/order_id",
            "/orders/7/customer_id",
            "/orders/8/order_id",
            "/orders/10/placed_at",
            "/orders/11/order_id",
            "/orders/12/items/0/name",
            "/orders/13/currency",
            "/orders/14/total",
            "/orders/15/customer_id"
        ],
        "{}",
        r.json
    );
    assert!(r.json["errors"][2]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean 'total'"));
    assert_eq!(
        s.store.count_orders().await.unwrap(),
        0,
        "nothing of the batch is stored"
    );

    let not_json = s
        .call(
            "POST",
            "/v1/orders",
            Some(Scope::Ingest),
            Some("{\"order_id\": "),
            None,
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.json["detail"].as_str().unwrap().contains("line 1"));
    // A key given twice is refused, not read as its last value.
    let twice = s
        .call(
            "POST",
            "/v1/orders",
            Some(Scope::Ingest),
            Some(r#"{"order_id": "t2", "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 100, "total": 100000}"#),
            None,
        )
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.json);
    assert_eq!(twice.json["title"], "duplicate key");
    assert!(twice.json["detail"]
        .as_str()
        .unwrap()
        .contains("the key 'total' is given twice"));
    assert_eq!(s.store.count_orders().await.unwrap(), 0);
    let unknown = s
        .call("GET", "/v1/nothing", Some(Scope::Admin), None, None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(is_problem(&unknown));
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_stores_nothing() {
    let s = server_with(Limits {
        max_body: 2048,
        ..limits()
    })
    .await;
    s.post(
        "/v1/customers",
        Scope::Ingest,
        &serde_json::from_str(AYA).unwrap(),
    )
    .await;
    let orders: Vec<Value> = (0..40)
        .map(|i| json!({"order_id": format!("o{i}"), "customer_id": "c1", "placed_at": "2026-11-01", "currency": "JPY", "total": 100}))
        .collect();
    let r = s
        .post("/v1/orders", Scope::Ingest, &json!({ "orders": orders }))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_problem(&r));
    assert_eq!(s.store.count_orders().await.unwrap(), 0);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_reply_and_refuses_another_body() {
    let s = server().await;
    let body = AYA.to_string();
    let first = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(&body),
            Some("k-1"),
        )
        .await;
    assert_eq!(first.json["inserted"], 1);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let replay = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(&body),
            Some("k-1"),
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.json, first.json, "the first reply, not a new count");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let other = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(&body.replace("Aya", "Ayaka")),
            Some("k-1"),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.store.find_customer("c1").await.unwrap().name, "Aya");
    // A refusal is replayed as a refusal.
    let bad = r#"{"id": "c9"}"#;
    let refused = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(bad),
            Some("k-2"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(bad),
            Some("k-2"),
        )
        .await;
    assert_eq!((again.status, &again.json), (refused.status, &refused.json));
    // Keys are kept for a while, then forgotten: the same key then runs the request again.
    assert_eq!(s.store.prune_keys(i64::MAX).await.unwrap(), 2);
    let fresh = s
        .call(
            "POST",
            "/v1/customers",
            Some(Scope::Ingest),
            Some(&body),
            Some("k-1"),
        )
        .await;
    assert!(fresh.headers.get("idempotent-replayed").is_none());
    assert_eq!(fresh.json["unchanged"], 1);
}

#[tokio::test]
async fn an_order_by_api_wakes_the_daemon_and_becomes_a_mail_the_customer_view_explains() {
    let s = server().await;
    s.post(
        "/v1/customers",
        Scope::Ingest,
        &serde_json::from_str(AYA).unwrap(),
    )
    .await;
    let woken = s.wake.clone();
    let waiter = tokio::spawn(async move { woken.notified().await });
    let order = json!({"order_id": "o1", "customer_id": "c1", "placed_at": "2026-11-02T02:00:00Z", "currency": "JPY", "total": 3980});
    assert_eq!(
        s.post("/v1/orders", Scope::Ingest, &order).await.status,
        StatusCode::OK
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("the daemon is woken")
        .unwrap();

    let daemon = s.shop.daemon(&s.store).await;
    let now = s.clock.advance(chrono::Duration::minutes(1));
    daemon.engine.tick(now).await.unwrap();
    daemon.deliverer.run_once(now).await.unwrap();

    let view = s
        .call(
            "GET",
            "/v1/customers/aya@example.jp",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.json);
    let v = &view.json;
    assert_eq!(v["id"], "c1");
    assert_eq!(v["consent"]["marketing"], true);
    assert_eq!(v["orders"][0]["id"], "o1");
    assert_eq!(
        v["orders"][0]["placed_at"], "2026-11-02T11:00:00+09:00",
        "times in the customer's zone"
    );
    assert_eq!(v["enrollments"][0]["scenario"], "welcome");
    assert_eq!(v["enrollments"][0]["steps"], json!(["thanks"]));
    let m = &v["messages"][0];
    assert_eq!(
        (
            m["scenario"].as_str(),
            m["step"].as_str(),
            m["status"].as_str()
        ),
        (Some("welcome"), Some("thanks"), Some("sent"))
    );
    assert_eq!(m["subject"], "Thank you Aya");
    // A sent message cannot be cancelled; an unknown one is 404.
    let id = m["id"].as_i64().unwrap();
    let sent = s
        .call(
            "POST",
            &format!("/v1/messages/{id}/cancel"),
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(sent.status, StatusCode::CONFLICT);
    let missing = s
        .call(
            "POST",
            "/v1/messages/999/cancel",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let nobody = s
        .call(
            "GET",
            "/v1/customers/nobody",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);

    // The read side says the same as `rebuy status`.
    let status = s
        .call("GET", "/v1/status", Some(Scope::Read), None, None)
        .await;
    let welcome = status.json["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["scenario"] == "welcome")
        .unwrap()
        .clone();
    assert_eq!(
        (welcome["enrolled"].as_i64(), welcome["sent"].as_i64()),
        (Some(1), Some(1))
    );
    // Its times are in the shop's zone, like the CLI's.
    let last_sent = status.json["flow"]["last_sent_at"].as_str().unwrap();
    assert!(last_sent.ends_with("+09:00"), "{last_sent}");
    let report = s
        .call(
            "GET",
            "/v1/reports/scenarios",
            Some(Scope::Read),
            None,
            None,
        )
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.json[0]["scenario"], "welcome", "{}", report.json);
    // A misspelt scenario is not an empty report.
    let typo = s
        .call(
            "GET",
            "/v1/reports/scenarios?scenario=welcom",
            Some(Scope::Read),
            None,
            None,
        )
        .await;
    assert_eq!(typo.status, StatusCode::NOT_FOUND, "{}", typo.json);
    assert!(typo.json["detail"]
        .as_str()
        .unwrap()
        .contains("did you mean 'welcome'?"));
    // A day that is not one is named with its parameter, not in a parser's words.
    let bad = s
        .call(
            "GET",
            "/v1/reports/scenarios?since=2026-13-01&include_open=maybe",
            Some(Scope::Read),
            None,
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.json);
    assert_eq!(bad.json["errors"][0]["at"], "?since", "{}", bad.json);
    assert!(bad.json["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("'2026-13-01' is not a day"));
    assert_eq!(bad.json["errors"][1]["at"], "?include_open", "{}", bad.json);
    // Operations: Prometheus text with the outbox by state and requests by route pattern.
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let r = s.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains("rebuy_outbox_messages{status=\"sent\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "rebuy_http_requests_total{route=\"/v1/customers/{id}\",method=\"GET\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        !text.contains("aya@example.jp"),
        "no path with an id or address as a label"
    );
    let list = s
        .call("GET", "/v1/scenarios", Some(Scope::Read), None, None)
        .await;
    let ids: Vec<&str> = list.json["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["apology", "welcome"]);
}

#[tokio::test]
async fn a_follow_up_starts_once_per_key_is_previewed_first_and_its_message_can_be_cancelled() {
    let s = server().await;
    s.post(
        "/v1/customers",
        Scope::Ingest,
        &serde_json::from_str(AYA).unwrap(),
    )
    .await;
    let preview = s
        .call(
            "GET",
            "/v1/followups/preview?scenario=apology&customer=c1&var.case_id=CASE-7",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.json);
    assert_eq!(preview.json["subject"], "About case CASE-7");
    let missing_var = s
        .call(
            "GET",
            "/v1/followups/preview?scenario=apology&customer=c1",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(
        missing_var.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing_var.json
    );
    // Two values for one variable: refused, not one of them kept.
    let twice = s
        .call(
            "GET",
            "/v1/followups/preview?scenario=apology&customer=c1&var.case_id=A&var.case_id=B",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(
        twice.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        twice.json
    );
    assert_eq!(
        twice.json["errors"][0]["at"], "?var.case_id",
        "{}",
        twice.json
    );

    // A required variable given as null or blanks is missing, not a half-filled subject; a
    // list, an object or true would be printed as JSON in the mail; a novel overflows it.
    let long = format!(r#"{{"case_id": "{}"}}"#, "x".repeat(1001));
    for (vars, said) in [
        (r#"{"case_id": null}"#.to_string(), "'case_id' is empty"),
        (r#"{"case_id": " "}"#.to_string(), "'case_id' is empty"),
        (
            r#"{"case_id": []}"#.to_string(),
            "variable 'case_id' must be text or a number, found []",
        ),
        (
            r#"{"case_id": false}"#.to_string(),
            "must be text or a number, found false",
        ),
        (
            long,
            "variable 'case_id' is 1001 characters long; at most 1000",
        ),
    ] {
        let body = format!(r#"{{"scenario": "apology", "customer": "c1", "vars": {vars}}}"#);
        let bad = s
            .call(
                "POST",
                "/v1/followups",
                Some(Scope::Support),
                Some(&body),
                None,
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{vars}");
        assert!(bad.json.to_string().contains(said), "{}", bad.json);
    }

    let body = r#"{"scenario": "apology", "customer": "c1", "vars": {"case_id": "CASE-7"}}"#;
    let first = s
        .call(
            "POST",
            "/v1/followups",
            Some(Scope::Support),
            Some(body),
            Some("CASE-7"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let double = s
        .call(
            "POST",
            "/v1/followups",
            Some(Scope::Support),
            Some(body),
            Some("CASE-7"),
        )
        .await;
    assert_eq!(double.json["enrollment_id"], first.json["enrollment_id"]);
    let unknown_field = s
        .call(
            "POST",
            "/v1/followups",
            Some(Scope::Support),
            Some(r#"{"scenario": "apology", "customer": "c1", "varz": {}}"#),
            None,
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown_field.json["errors"][0]["at"], "/varz");

    // Its message is queued by the tick and cancelled by support before it goes.
    let daemon = s.shop.daemon(&s.store).await;
    let now = s.clock.advance(chrono::Duration::minutes(1));
    daemon.engine.tick(now).await.unwrap();
    let view = s
        .call("GET", "/v1/customers/c1", Some(Scope::Support), None, None)
        .await;
    let id = view.json["messages"][0]["id"].as_i64().unwrap();
    assert_eq!(view.json["messages"][0]["status"], "queued");
    let cancelled = s
        .call(
            "POST",
            &format!("/v1/messages/{id}/cancel"),
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.json["status"], "cancelled");
    daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!(
        s.store.outbox_row(id).await.unwrap().unwrap().status,
        "cancelled"
    );
}

impl Server {
    async fn shopify(&self, body: &[u8], signature: &str, topic: &str) -> Answer {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/webhooks/shopify/orders")
            .header("x-shopify-hmac-sha256", signature)
            .header("x-shopify-topic", topic)
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .unwrap();
        send(&self.router, req).await
    }
}

#[tokio::test]
async fn a_signed_shopify_order_is_stored_as_customer_and_order_and_a_forged_one_is_not() {
    let s = server().await;
    // The signature the fixture's README computed with openssl, independently of rebuy.
    let signature = "/M1+MmaC/fqNbCa3jGuhgA70juoC+3ZsCnYonaVvE9Q=";
    assert_eq!(
        rebuy::http::sign_shopify(SHOPIFY_SECRET.as_bytes(), SHOPIFY_ORDER),
        signature
    );

    // Forged: another secret, an altered body, no signature at all.
    let other = rebuy::http::sign_shopify(b"someone-elses-secret", SHOPIFY_ORDER);
    let mut altered = SHOPIFY_ORDER.to_vec();
    let at = altered.windows(5).position(|w| w == b"63.40").unwrap();
    altered[at] = b'9';
    for (body, sig) in [
        (SHOPIFY_ORDER, other.as_str()),
        (&altered[..], signature),
        (SHOPIFY_ORDER, ""),
    ] {
        let r = s.shopify(body, sig, "orders/create").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(is_problem(&r));
    }
    assert!(s.store.all_customers().await.unwrap().is_empty());
    assert_eq!(s.store.count_orders().await.unwrap(), 0);
    // Signed, but a key twice: refused, not read as its last value.
    let twice = br#"{"id": 1, "id": 2, "currency": "JPY", "email": "a@b.c"}"#;
    let sig = rebuy::http::sign_shopify(SHOPIFY_SECRET.as_bytes(), twice);
    let r = s.shopify(twice, &sig, "orders/create").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(s.store.count_orders().await.unwrap(), 0);

    let r = s.shopify(SHOPIFY_ORDER, signature, "orders/create").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["order"], "inserted");
    let order = s.store.order("7301928475610293847").await.unwrap().unwrap();
    assert_eq!(
        (
            order.customer_id.as_str(),
            order.total,
            order.currency.as_str()
        ),
        ("6839201746352", 6340, "EUR")
    );
    let items: Value = serde_json::from_str(&order.items).unwrap();
    assert_eq!(items[0]["sku"], "COF-ESP-250");
    assert_eq!(
        (
            items[0]["quantity"].as_i64(),
            items[0]["unit_price"].as_i64()
        ),
        (Some(2), Some(1420))
    );
    assert_eq!(items[0]["name"], "Espresso beans 250g");
    let c = s.store.find_customer("6839201746352").await.unwrap();
    assert_eq!(
        (c.email.as_str(), c.name.as_str(), c.marketing_consent),
        ("ada.lovelace@example.org", "Ada Lovelace", Some(1))
    );

    // orders/paid for the same order (Shopify sends both, and re-sends): nothing changes.
    let paid = s.shopify(SHOPIFY_ORDER, signature, "orders/paid").await;
    assert_eq!(
        (paid.json["order"].as_str(), paid.json["customer"].as_str()),
        (Some("unchanged"), Some("unchanged"))
    );
    let other_topic = s.shopify(SHOPIFY_ORDER, signature, "products/create").await;
    assert!(other_topic.json["ignored"]
        .as_str()
        .unwrap()
        .contains("products/create"));
    assert_eq!(s.store.count_orders().await.unwrap(), 1);
}

#[tokio::test]
async fn orders_committed_together_behave_as_if_sent_one_after_the_other() {
    let s = server().await;
    add_customers(&s.store, &["c1", "c2"]).await;
    let v1 = order("o1", "c1", "2026-11-01T00:00:00Z", 100);
    let v2 = order("o1", "c1", "2026-11-01T00:00:00Z", 200);
    let other = order("o2", "c2", "2026-11-01T00:00:00Z", 50);
    let outcomes = s
        .store
        .upsert_order_groups(&[std::slice::from_ref(&v1), &[v2.clone(), other], &[v2]])
        .await
        .unwrap();
    let counts: Vec<(u64, u64)> = outcomes.iter().map(|o| (o.inserted, o.updated)).collect();
    assert_eq!(counts, [(1, 0), (1, 1), (0, 0)]);
    assert_eq!(s.store.order("o1").await.unwrap().unwrap().total, 200);
    let c1 = s.store.find_customer("c1").await.unwrap();
    assert_eq!((c1.orders_count, c1.total_spent), (1, 200));

    // Through the writer, from concurrent requests: every order stored, each answered once.
    let writer = rebuy::http::IngestWriter::start(s.store.clone());
    let requests = (0..50).map(|i| {
        let w = writer.clone();
        let o = order(
            &format!("w{i}"),
            if i % 2 == 0 { "c1" } else { "c2" },
            "2026-11-02T00:00:00Z",
            10,
        );
        tokio::spawn(async move { w.write_orders(vec![o]).await.unwrap().inserted })
    });
    let inserted: u64 = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(inserted, 50);
    assert_eq!(s.store.count_orders().await.unwrap(), 52);
    let c2 = s.store.find_customer("c2").await.unwrap();
    assert_eq!((c2.orders_count, c2.total_spent), (26, 50 + 25 * 10));
}

/// An order id stored for one customer, posted for another (two sources that reuse order
/// numbers), is refused at its `customer_id`: the order stays where it is, and mail planned
/// from it never shows the other customer's order.
#[tokio::test]
async fn an_order_posted_for_another_customer_than_its_stored_one_is_refused() {
    let s = server().await;
    add_customers(&s.store, &["v1", "v2"]).await;
    let first = json!({"order_id": "vo1", "customer_id": "v1", "placed_at": "2026-11-01", "currency": "JPY", "total": 1111});
    let r = s.post("/v1/orders", Scope::Ingest, &first).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let batch = json!({"orders": [
        {"order_id": "vo2", "customer_id": "v2", "placed_at": "2026-11-01", "currency": "JPY", "total": 5},
        {"order_id": "vo1", "customer_id": "v2", "placed_at": "2026-11-01", "currency": "JPY", "total": 2222}
    ]});
    let r = s.post("/v1/orders", Scope::Ingest, &batch).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);
    assert!(is_problem(&r));
    assert_eq!(
        r.json["errors"][0]["at"], "/orders/1/customer_id",
        "{:?}",
        r.json
    );
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("order 'vo1' is stored for customer 'v1', not 'v2'"),
        "{:?}",
        r.json
    );
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("other 1 order(s) were written"),
        "{:?}",
        r.json
    );
    let kept = s.store.order("vo1").await.unwrap().unwrap();
    assert_eq!((kept.customer_id.as_str(), kept.total), ("v1", 1111));
    let v1 = s.store.find_customer("v1").await.unwrap();
    assert_eq!((v1.orders_count, v1.total_spent), (1, 1111));
    assert!(s.store.order("vo2").await.unwrap().is_some());
}

#[tokio::test]
async fn an_abandoned_cart_posted_as_an_event_is_reminded_unless_an_order_came_in() {
    let smtp = SmtpServer::start();
    let shop = abandoned_cart_shop(&smtp);
    let store = shop.store().await;
    let t0 = utc("2026-11-02T03:00:00Z");
    let clock = ManualClock::new(t0);
    let (token, hash) = new_token();
    store.insert_token("shop", "admin", &hash, 0).await.unwrap();
    let api = api_on(&shop, &store, &clock, None).await;
    let router = rebuy::http::router(api, axum::Router::new(), &limits());
    let post = |uri: &'static str, body: Value| {
        let router = router.clone();
        let token = token.clone();
        async move {
            let req = Request::builder()
                .method("POST")
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let a = send(&router, req).await;
            (a.status, a.json)
        }
    };
    let customers = json!({"customers": [
        {"id": "c1", "email": "aya@example.jp", "name": "佐藤 彩", "marketing_consent": true},
        {"id": "c2", "email": "ken@example.jp", "name": "田中 健", "marketing_consent": true},
        {"id": "c3", "email": "mei@example.jp", "name": "鈴木 芽衣", "marketing_consent": true}
    ]});
    assert_eq!(post("/v1/customers", customers).await.0, StatusCode::OK);
    let cart = |c: &str| {
        json!({"customer": c, "name": "cart_added", "at": "2026-11-02T12:00:00+09:00",
        "properties": {"items": [{"sku": "LOTION", "name": "しっとり化粧水"}], "value": 3980}})
    };
    let (status, body) = post("/v1/events", json!({"events": [cart("c1"), cart("c2")]})).await;
    assert_eq!(
        (status, body["inserted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );
    // The same event again (a retry of the shop's site): stored once.
    let (_, again) = post("/v1/events", cart("c1")).await;
    assert_eq!(again["unchanged"], 1);
    // An id given again for another event is refused with the rest of its request.
    let viewed = |id: &str, sku: &str| json!({"id": id, "customer": "c2", "name": "product_viewed", "at": "2026-11-02T11:00:00+09:00", "properties": {"sku": sku}});
    assert_eq!(
        post("/v1/events", viewed("v-1", "LOTION")).await.0,
        StatusCode::OK
    );
    let before = store.count_events().await.unwrap();
    let (status, taken) = post(
        "/v1/events",
        json!({"events": [viewed("v-2", "SOAP"), viewed("v-1", "SOAP")]}),
    )
    .await;
    assert_eq!(
        (status, taken["errors"][0]["at"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/events/1/id")),
        "{taken}"
    );
    assert!(
        taken["errors"][0]["message"].as_str().unwrap().starts_with(
            "event id 'v-1' is already stored for another event ('product_viewed' of customer 'c2'"
        ),
        "{taken}"
    );
    assert_eq!(
        store.count_events().await.unwrap(),
        before,
        "v-2 is not stored either"
    );
    let (status, bad) = post(
        "/v1/events",
        json!({"customer": "c1", "name": "cart added", "at": "2026-11-02"}),
    )
    .await;
    assert_eq!(
        (status, bad["errors"][0]["at"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/name"))
    );

    let (status, dup) = post("/v1/events", json!({"events": [cart("c3"), cart("c3")]})).await;
    assert_eq!(
        (status, dup["errors"][0]["at"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/events/1/id"))
    );
    // Mei fills a cart and orders half an hour later, both before the daemon's next tick.
    assert_eq!(post("/v1/events", cart("c3")).await.0, StatusCode::OK);
    let mei = json!({"order_id": "o3", "customer_id": "c3", "placed_at": "2026-11-02T12:30:00+09:00", "currency": "JPY", "total": 3980});
    assert_eq!(post("/v1/orders", mei).await.0, StatusCode::OK);

    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(t0 + chrono::Duration::minutes(31))
        .await
        .unwrap();
    daemon.deliverer.run_once(t0).await.unwrap();
    assert!(smtp.received().is_empty(), "nothing before the two hours");
    assert_eq!(
        store.customer_enrollments("c3").await.unwrap()[0].state,
        "goal"
    );

    // Support previews the reminder with the customer's own cart.
    let req = Request::builder()
        .uri("/v1/followups/preview?scenario=abandoned-cart&customer=c1")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(&router, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    let preview = answer.json;
    assert!(
        preview["text"].as_str().unwrap().contains("しっとり化粧水"),
        "{preview}"
    );

    // Ken orders an hour later.
    let later = clock.advance(chrono::Duration::hours(1));
    let order = json!({"order_id": "o1", "customer_id": "c2", "placed_at": later.to_rfc3339(), "currency": "JPY", "total": 3980});
    assert_eq!(post("/v1/orders", order).await.0, StatusCode::OK);
    daemon.engine.tick(later).await.unwrap();

    let due = clock.advance(chrono::Duration::minutes(61));
    daemon.engine.tick(due).await.unwrap();
    daemon.deliverer.run_once(due).await.unwrap();
    let mail = smtp.received();
    assert_eq!(mail.len(), 1, "only the customer who did not order");
    assert_eq!(mail[0].to, ["aya@example.jp"]);
    let text = mail[0].parsed().body_text(0).unwrap().to_string();
    assert!(
        text.contains("しっとり化粧水") && text.contains("¥3,980"),
        "{text}"
    );
    let view = store.customer_enrollments("c2").await.unwrap();
    assert_eq!(view[0].state, "goal", "{view:?}");
}

#[tokio::test]
async fn every_documented_route_is_served_and_the_document_needs_no_token() {
    let s = server().await;
    let doc = s.call("GET", "/openapi.json", None, None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.json["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{paths:?}");
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{id}", "1");
            let a = s
                .call(
                    &method.to_uppercase(),
                    &uri,
                    Some(Scope::Admin),
                    Some("{}"),
                    None,
                )
                .await;
            let unrouted = a.status == StatusCode::METHOD_NOT_ALLOWED
                || a.json["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("no such route"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {:?}",
                a.json
            );
        }
    }
    let page = s.call("GET", "/docs", None, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn a_cart_that_arrives_after_its_order_is_not_reminded() {
    let smtp = SmtpServer::start();
    let shop = abandoned_cart_shop(&smtp);
    let store = shop.store().await;
    let customers = [
        customer("c1", "aya@example.jp", "佐藤 彩", "Asia/Tokyo", "{}"),
        customer("c2", "ken@example.jp", "田中 健", "Asia/Tokyo", "{}"),
    ];
    store.upsert_customers(&customers, 0).await.unwrap();
    let daemon = shop.daemon(&store).await;
    // Aya orders at 12:30 and the daemon handles the order.
    let t0 = utc("2026-11-02T03:30:00Z");
    store
        .upsert_orders(&[order("o1", "c1", "2026-11-02T03:30:00Z", 3980)])
        .await
        .unwrap();
    daemon.engine.tick(t0).await.unwrap();
    // Only then does the shop's site post her cart of 12:00, and Ken's of the same time.
    let cart = |c: &str| rebuy::store::NewEvent {
        id: format!("cart-{c}"),
        customer_id: c.into(),
        name: "cart_added".into(),
        at: rebuy::clock::to_millis(utc("2026-11-02T03:00:00Z")),
        properties: r#"{"value": 3980}"#.into(),
    };
    store
        .insert_events(&[cart("c1"), cart("c2")], 0)
        .await
        .unwrap();
    let later = t0 + chrono::Duration::minutes(10);
    daemon.engine.tick(later).await.unwrap();
    let aya = store.customer_enrollments("c1").await.unwrap();
    assert_eq!(
        (aya[0].state.as_str(), aya[0].goal_order_id.as_deref()),
        ("goal", Some("o1")),
        "{aya:?}"
    );
    let due = later + chrono::Duration::hours(2);
    daemon.engine.tick(due).await.unwrap();
    daemon.deliverer.run_once(due).await.unwrap();
    let mail = smtp.received();
    assert_eq!(mail.len(), 1, "Ken only: Aya had bought");
    assert_eq!(mail[0].to, ["ken@example.jp"]);
}

#[tokio::test]
async fn products_are_upserted_like_an_import_and_a_bad_one_is_named_by_its_place() {
    let s = server().await;
    let batch = json!({"products": [
        {"sku": "LOTION", "name": "化粧水", "category": "lotion", "price": 3980},
        {"sku": "LOTION-L", "name": "化粧水 L", "category": "lotion", "price": 6980,
         "upgrade_of": "LOTION", "in_stock": false, "url": "https://shop.example/lotion-l"},
    ]});
    let a = s.post("/v1/products", Scope::Ingest, &batch).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(
        a.json,
        json!({"records": 2, "inserted": 2, "updated": 0, "unchanged": 0})
    );
    let again = s.post("/v1/products", Scope::Ingest, &batch).await;
    assert_eq!(again.json["unchanged"], 2, "{}", again.json);
    let stored = s.store.products().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(!stored[1].in_stock && stored[1].upgrade_of.as_deref() == Some("LOTION"));

    let bad = json!({"products": [
        {"sku": "A", "price": 100},
        {"sku": "B", "price": "12.50"},
        {"sku": "C", "colour": "red"},
    ]});
    let r = s.post("/v1/products", Scope::Ingest, &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let at: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        ["/products/1/price", "/products/2/colour"],
        "{}",
        r.json
    );
    assert_eq!(
        s.store.products().await.unwrap().len(),
        2,
        "nothing of a refused batch is stored"
    );
    let wrong = s.post("/v1/products", Scope::Read, &batch).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_customers_recommendations_come_with_their_reasons() {
    let s = server().await;
    let customers = json!({"customers": [
        {"id": "r1", "email": "r1@example.jp"},
        {"id": "r2", "email": "r2@example.jp"},
        {"id": "r3", "email": "r3@example.jp"},
    ]});
    assert_eq!(
        s.post("/v1/customers", Scope::Ingest, &customers)
            .await
            .status,
        StatusCode::OK
    );
    let item = |sku: &str| json!({"sku": sku, "unit_price": 1000});
    let orders = json!({"orders": [
        {"order_id": "ro1", "customer_id": "r1", "placed_at": "2026-10-01T10:00:00+09:00", "currency": "JPY", "items": [item("CLEANSER"), item("LOTION")]},
        {"order_id": "ro2", "customer_id": "r2", "placed_at": "2026-10-02T10:00:00+09:00", "currency": "JPY", "items": [item("CLEANSER"), item("LOTION")]},
        {"order_id": "ro3", "customer_id": "r3", "placed_at": "2026-10-03T10:00:00+09:00", "currency": "JPY", "items": [item("CLEANSER")]},
    ]});
    let posted = s.post("/v1/orders", Scope::Ingest, &orders).await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.json);
    let got = s
        .call(
            "GET",
            "/v1/customers/r3/recommendations?n=3&as_of=2026-10-31",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.json);
    assert_eq!(got.json["products"][0]["sku"], "LOTION", "{}", got.json);
    assert_eq!(
        got.json["products"][0]["why"],
        "bought together with CLEANSER"
    );
    assert!(got.json["products"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["sku"] != "CLEANSER"));
    for (uri, status) in [
        (
            "/v1/customers/nobody/recommendations",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/customers/r3/recommendations?kind=sideways",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/customers/r3/recommendations?n=500",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = s.call("GET", uri, Some(Scope::Support), None, None).await;
        assert_eq!(r.status, status, "{uri}: {}", r.json);
    }
    // With the daemon's model of today installed, a request without a day gets its lists (as
    // of the day before), the ones the mail shows, without learning again.
    let today = rebuy::clock::Clock::now(&s.clock)
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive();
    let yesterday = today.pred_opt().unwrap();
    let learned = rebuy::recommend_view::Learned::load_until(
        &s.store,
        chrono_tz::Asia::Tokyo,
        yesterday,
        today,
    )
    .await
    .unwrap();
    s.engine.renderer().recommendations().install(learned);
    let shared = s
        .call(
            "GET",
            "/v1/customers/r3/recommendations?n=3",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.json);
    assert_eq!(
        shared.json["as_of"],
        yesterday.to_string(),
        "{}",
        shared.json
    );
    assert_eq!(shared.json["products"][0]["sku"], "LOTION");
    let asked = s
        .call(
            "GET",
            "/v1/customers/r3/recommendations?n=3&as_of=2026-10-31",
            Some(Scope::Support),
            None,
            None,
        )
        .await;
    assert_eq!(
        asked.json["as_of"], "2026-10-31",
        "a day asked for is learnt for"
    );
    let r = s
        .call(
            "GET",
            "/v1/customers/r3/recommendations",
            Some(Scope::Ingest),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
