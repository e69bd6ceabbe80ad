//! Click and open tracking through the real router, a real SQLite file and a real SMTP server
//! on loopback, with the manual clock: links in the HTML part become signed redirects, a click
//! is recorded once, an altered link is refused, a bot's prefetch is kept but not counted, and
//! the scenario report shows the click rate.

use crate::api::{abandoned_cart_shop, api_on, limits, send};
use crate::helpers::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use rebuy::clock::ManualClock;
use rebuy::http::new_token;
use serde_json::{json, Value};
use std::sync::Arc;

const BASE: &str = "https://mail.shop.example";

/// The first tracked link of an HTML part, as a path the router takes.
fn tracked_path(html: &str, kind: &str) -> String {
    let start = html
        .find(&format!("{BASE}/t/{kind}/"))
        .unwrap_or_else(|| panic!("no /t/{kind}/ link in {html}"));
    let rest = &html[start + BASE.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn get(router: &axum::Router, method: &str, path: &str) -> (StatusCode, Option<String>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let a = send(router, req).await;
    let location = a
        .headers
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (a.status, location)
}

#[tokio::test]
async fn clicks_are_recorded_once_altered_links_refused_bots_not_counted() {
    let smtp = SmtpServer::start();
    let mut shop = abandoned_cart_shop(&smtp);
    shop.config.tracking.base_url = Some(BASE.into());
    shop.config.tracking.open_pixel = true;
    let store = shop.store().await;
    let app = shop.app();
    let t0 = utc("2026-11-02T03:00:00Z");
    let clock = ManualClock::new(t0);
    let (token, hash) = new_token();
    store.insert_token("shop", "admin", &hash, 0).await.unwrap();
    let api = api_on(&shop, &store, &clock, None).await;
    let tracker = app.tracker(&store).await.unwrap().expect("tracking is on");
    let pages = rebuy::http::tracking::router(store.clone(), tracker, Arc::new(clock.clone()));
    let router = rebuy::http::router(api, pages, &limits());
    let post = |uri: &'static str, body: Value| {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        send(&router, req)
    };
    let customers = json!({"customers": [
        {"id": "c1", "email": "aya@example.jp", "name": "佐藤 彩", "marketing_consent": true},
        {"id": "c2", "email": "ken@example.jp", "name": "田中 健", "marketing_consent": true}
    ]});
    assert_eq!(
        post("/v1/customers", customers).await.status,
        StatusCode::OK
    );
    let cart_url = "https://shop.example/cart?token=abc&ref=mail";
    let cart = |c: &str| {
        json!({"customer": c, "name": "cart_added", "at": "2026-11-02T12:00:00+09:00",
        "properties": {"items": [{"sku": "LOTION", "name": "しっとり化粧水"}], "value": 3980,
        "cart_url": cart_url}})
    };
    let events = json!({"events": [cart("c1"), cart("c2")]});
    assert_eq!(post("/v1/events", events).await.status, StatusCode::OK);

    let daemon = shop.daemon(&store).await;
    daemon.engine.tick(t0).await.unwrap();
    let due = clock.advance(chrono::Duration::minutes(121));
    daemon.engine.tick(due).await.unwrap();
    daemon.deliverer.run_once(due).await.unwrap();
    let mail = smtp.received();
    assert_eq!(mail.len(), 2);
    let html_of = |to: &str| {
        let m = mail.iter().find(|m| m.to == [to]).unwrap();
        let parsed = m.parsed();
        (
            parsed.body_html(0).unwrap().to_string(),
            parsed.body_text(0).unwrap().to_string(),
        )
    };
    let (aya_html, aya_text) = html_of("aya@example.jp");
    let (ken_html, _) = html_of("ken@example.jp");
    // The text part keeps the link as written; the unsubscribe link is never redirected.
    assert!(aya_text.contains(cart_url), "{aya_text}");
    assert!(!aya_text.contains("/t/c/"), "{aya_text}");
    assert!(aya_html.contains("unsubscribe?c=c1&amp;t="), "{aya_html}");
    assert_eq!(aya_html.matches("/t/c/").count(), 1, "{aya_html}");
    let aya_click = tracked_path(&aya_html, "c");
    let ken_click = tracked_path(&ken_html, "c");

    // A scanner follows Ken's link the moment the mail arrives, and a link checker sends a
    // HEAD: both still reach the shop, neither is counted.
    assert_eq!(
        get(&router, "GET", &ken_click).await,
        (StatusCode::SEE_OTHER, Some(cart_url.into()))
    );
    assert_eq!(
        get(&router, "HEAD", &aya_click).await.0,
        StatusCode::SEE_OTHER
    );

    // Aya clicks ten minutes later, twice: recorded once, with the first click's time.
    let click_at = clock.advance(chrono::Duration::minutes(10));
    for _ in 0..2 {
        assert_eq!(
            get(&router, "GET", &aya_click).await,
            (StatusCode::SEE_OTHER, Some(cart_url.into()))
        );
        clock.advance(chrono::Duration::minutes(1));
    }
    // The pixel records an open.
    let pixel = tracked_path(&aya_html, "o");
    assert_eq!(get(&router, "GET", &pixel).await.0, StatusCode::OK);

    // Altered links are refused: another target, another message, a bad signature.
    let elsewhere = aya_click.replace(
        &rebuy::domain::percent_encode(cart_url),
        &rebuy::domain::percent_encode("https://evil.example/"),
    );
    assert_ne!(elsewhere, aya_click);
    let (ken_msg, aya_msg) = (
        ken_click.split('/').nth(3).unwrap(),
        aya_click.split('/').nth(3).unwrap(),
    );
    let moved = aya_click.replace(aya_msg, ken_msg);
    let mut forged = aya_click.clone();
    let sig_at = forged.find('?').unwrap() - 1;
    let flipped = if &forged[sig_at..=sig_at] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(sig_at..=sig_at, flipped);
    for bad in [&elsewhere, &moved, &forged] {
        assert_eq!(
            get(&router, "GET", bad).await,
            (StatusCode::FORBIDDEN, None),
            "{bad}"
        );
    }

    // A genuine link of a message no longer stored (a restored backup) still takes the
    // customer where it said, and records nothing.
    let signer = app.tracker(&store).await.unwrap().unwrap();
    let gone = signer.click_url("9.0.0@shop.example", cart_url);
    assert_eq!(
        get(&router, "GET", &gone[BASE.len()..]).await,
        (StatusCode::SEE_OTHER, Some(cart_url.into()))
    );

    let aya = store.customer_tracking("c1").await.unwrap();
    let counted: Vec<_> = aya.iter().filter(|t| t.counted).collect();
    assert_eq!(counted.len(), 2, "one click and one open: {aya:?}");
    let click = counted.iter().find(|t| t.kind == "click").unwrap();
    assert_eq!(click.at, rebuy::clock::to_millis(click_at));
    assert_eq!(click.url.as_deref(), Some(cart_url));
    assert!(aya
        .iter()
        .any(|t| !t.counted && t.note.as_deref().unwrap().contains("HEAD")));
    let ken = store.customer_tracking("c2").await.unwrap();
    assert_eq!(ken.len(), 1);
    assert!(!ken[0].counted && ken[0].note.as_deref().unwrap().contains("second"));

    // The report: two sent, one opened and clicked by a person.
    let report = rebuy::reports::scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        None,
        chrono::Duration::days(7),
    )
    .await
    .unwrap();
    let step = &report[0].steps[0];
    assert_eq!((step.sent, step.opened, step.clicked), (2, 1, 1));
    let html =
        rebuy::experiment::html::render("Shop", None, &report, &[], "JPY", &Default::default());
    assert!(
        html.contains("<td>2</td><td>1</td><td>1</td><td>50.0%</td>"),
        "{html}"
    );

    // Support sees it on the customer.
    let view = rebuy::customer_view::customer_view(&store, &[], chrono_tz::Asia::Tokyo, "c1")
        .await
        .unwrap();
    let kinds: Vec<_> = view["messages"][0]["tracking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["kind"].as_str().unwrap(), t["counted"].as_bool().unwrap()))
        .collect();
    assert_eq!(kinds, [("click", true), ("click", false), ("open", true)]);
}
