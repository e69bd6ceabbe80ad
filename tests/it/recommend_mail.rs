//! `recommend()` in mail, through the real engine and a real SQLite file: the products reach
//! the message and its row, held-out customers keep what their mail would have shown, nothing
//! the customer bought (even since the model learnt) is offered, a preview equals what is
//! sent, and the report measures a known effect of the recommendations with its interval.

use crate::helpers::*;
use chrono::Duration;
use rand::{Rng, SeedableRng};
use rebuy::experiment::{arm, Arm};
use rebuy::reports::scenario_report;
use rebuy::store::{NewOrder, Product};

const SUGGEST: &str = r#"
id: suggest
trigger: first_order
holdout: 50%
goal: { event: order_placed, within: 20d }
steps:
  - id: picks
    wait: 1d
    send: { template: picks, subject: "for {{ customer.id }}" }
"#;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "picks.html",
        "<ul>{% for p in recommend(customer, n=2) %}<li>{{ p.sku }} {{ p.name }}{% if p.price is not none %} {{ p.price | money }}{% endif %}</li>{% endfor %}</ul>",
    ),
    (
        "picks.txt",
        "{% for p in recommend(customer, n=2) %}{{ p.sku }}\n{% endfor %}",
    ),
];

fn item_order(id: &str, customer: &str, at: &str, skus: &[&str]) -> NewOrder {
    let items: Vec<String> = skus
        .iter()
        .map(|s| {
            format!(
                r#"{{"sku":"{s}","name":"{s}","category":"skin","quantity":1,"unit_price":1000}}"#
            )
        })
        .collect();
    NewOrder {
        items: format!("[{}]", items.join(",")),
        ..order(id, customer, at, 1000 * skus.len() as i64)
    }
}

fn product(sku: &str, name: &str, price: i64) -> Product {
    Product {
        sku: sku.into(),
        name: name.into(),
        category: "skin".into(),
        price: Some(price),
        url: Some(format!("https://hadamaru.example/p/{sku}")),
        image_url: None,
        in_stock: true,
        active: true,
        brand: None,
        size: None,
        upgrade_of: None,
    }
}

#[tokio::test]
async fn recommended_products_reach_the_mail_and_the_report_measures_their_known_effect() {
    let shop = TestShop::new(&[("suggest.yaml", SUGGEST)], TEMPLATES, None);
    let store = shop.store().await;
    // Long ago (before the trigger's look-back): lotion buyers also bought the serum (most)
    // and the cream (some); the sunscreen is bought alone, by many.
    let old: Vec<String> = (0..60).map(|i| format!("OLD{i:02}")).collect();
    let sun: Vec<String> = (0..40).map(|i| format!("SUN{i:02}")).collect();
    let new: Vec<String> = (0..1600).map(|i| format!("C{i:04}")).collect();
    let all: Vec<&str> = old
        .iter()
        .chain(&sun)
        .chain(&new)
        .map(String::as_str)
        .collect();
    add_customers(&store, &all).await;
    let mut history = Vec::new();
    for (i, c) in old.iter().enumerate() {
        let skus: &[&str] = if i % 3 == 2 {
            &["LO-01", "CR-01"]
        } else {
            &["LO-01", "SE-01"]
        };
        history.push(item_order(
            &format!("H-{c}"),
            c,
            "2025-06-01T03:00:00Z",
            skus,
        ));
    }
    for c in &sun {
        history.push(item_order(
            &format!("S-{c}"),
            c,
            "2025-07-01T03:00:00Z",
            &["SU-01"],
        ));
    }
    add_orders(&store, &history).await;
    store
        .upsert_products(
            &[
                product("LO-01", "しっとり化粧水", 3980),
                product("SE-01", "美容液", 5980),
                product("CR-01", "保湿クリーム", 4580),
                product("SU-01", "UVミルク", 2480),
            ],
            0,
        )
        .await
        .unwrap();
    // The new customers' first orders: a lotion; one of them bought the serum with it.
    let firsts: Vec<NewOrder> = new
        .iter()
        .map(|c| {
            let skus: &[&str] = if c == "C0000" {
                &["LO-01", "SE-01"]
            } else {
                &["LO-01"]
            };
            item_order(&format!("F-{c}"), c, "2026-11-02T03:00:00Z", skus)
        })
        .collect();
    add_orders(&store, &firsts).await;
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-11-02T04:00:00Z"))
        .await
        .unwrap();

    // What a preview shows on the sending day is what is sent that day.
    let send_time = utc("2026-11-03T04:00:00Z");
    let treated = new
        .iter()
        .find(|c| *c != "C0000" && arm("suggest", c, 0.5, 0.0, true) == Arm::Treatment)
        .unwrap();
    let preview = daemon
        .engine
        .preview("suggest", "picks", treated, Default::default(), send_time)
        .await
        .unwrap();
    assert_eq!(preview.recommended, ["SE-01", "CR-01"]);
    assert!(
        preview
            .html
            .contains("<li>SE-01 美容液 ¥5,980</li><li>CR-01 保湿クリーム ¥4,580</li>"),
        "{}",
        preview.html
    );
    daemon.engine.tick(send_time).await.unwrap();
    daemon.deliverer.run_once(send_time).await.unwrap();

    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), new.len(), "one message row per new customer");
    for r in &rows {
        let expected = if r.customer_id == "C0000" {
            // It bought the serum: the cream first, then what is popular it lacks.
            r#"["CR-01","SU-01"]"#
        } else {
            r#"["SE-01","CR-01"]"#
        };
        assert_eq!(r.recommended.as_deref(), Some(expected), "{r:?}");
        if r.status == "held_out" {
            assert!(
                r.html.is_empty(),
                "a held-out row keeps the list, not the mail"
            );
        } else {
            assert_eq!(r.status, "sent");
        }
    }
    let sent = rows.iter().find(|r| &r.customer_id == treated).unwrap();
    assert_eq!(sent.html, preview.html, "the preview is what was sent");

    // Treated customers buy the serum with probability 0.30, held-out ones 0.15; everyone may
    // buy an unrecommended lotion again, which does not count.
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let later: Vec<NewOrder> = new
        .iter()
        .filter_map(|c| {
            let p = if arm("suggest", c, 0.5, 0.0, true) == Arm::Holdout {
                0.15
            } else {
                0.30
            };
            if rng.random_bool(p) {
                Some(item_order(
                    &format!("A-{c}"),
                    c,
                    "2026-11-10T03:00:00Z",
                    &["SE-01"],
                ))
            } else if rng.random_bool(0.2) {
                Some(item_order(
                    &format!("A-{c}"),
                    c,
                    "2026-11-10T03:00:00Z",
                    &["LO-01"],
                ))
            } else {
                None
            }
        })
        .collect();
    add_orders(&store, &later).await;
    // One more purchase of the serum after the goal window: never counted.
    add_orders(
        &store,
        &[item_order(
            "LATE",
            "C0001",
            "2026-12-20T03:00:00Z",
            &["SE-01"],
        )],
    )
    .await;
    daemon
        .engine
        .tick(utc("2026-11-30T04:00:00Z"))
        .await
        .unwrap();
    let period = rebuy::store::Period {
        as_of: utc("2026-11-30T04:00:00Z").timestamp_millis(),
        ..rebuy::store::Period::EVERYTHING
    };
    let report = scenario_report(&store, &[], period, None, Duration::days(7))
        .await
        .unwrap();
    let m = report[0]
        .recommended
        .as_ref()
        .expect("the mail recommended");
    assert_eq!(m.treated_shown + m.comparison_shown, new.len() as i64);
    let u = m.uplift.as_ref().expect("both arms");
    assert!(u.absolute_low < 0.15 && 0.15 < u.absolute_high, "{u:?}");
    assert!((u.absolute - 0.15).abs() < 0.05, "{u:?}");
    assert!(u.significant, "{u:?}");
    store.close().await;
}

#[tokio::test]
async fn a_product_bought_since_the_model_learnt_is_never_offered() {
    let shop = TestShop::new(&[("suggest.yaml", SUGGEST)], TEMPLATES, None);
    let store = shop.store().await;
    add_customers(&store, &["A", "B", "C", "D"]).await;
    let orders: Vec<NewOrder> = ["A", "B", "C"]
        .iter()
        .map(|c| {
            item_order(
                &format!("H-{c}"),
                c,
                "2025-01-01T03:00:00Z",
                &["LO-01", "SE-01"],
            )
        })
        .chain([item_order("F-D", "D", "2026-11-02T03:00:00Z", &["LO-01"])])
        .collect();
    add_orders(&store, &orders).await;
    let daemon = shop.daemon(&store).await;
    let morning = utc("2026-11-03T00:00:00Z");
    daemon.engine.tick(morning).await.unwrap();
    let before = daemon
        .engine
        .preview("suggest", "picks", "D", Default::default(), morning)
        .await
        .unwrap();
    assert_eq!(before.recommended, ["SE-01"]);
    // The same day, after the model learnt: D buys the serum.
    add_orders(
        &store,
        &[item_order("G-D", "D", "2026-11-03T01:00:00Z", &["SE-01"])],
    )
    .await;
    let noon = morning + Duration::hours(3);
    daemon.engine.tick(noon).await.unwrap();
    let after = daemon
        .engine
        .preview("suggest", "picks", "D", Default::default(), noon)
        .await
        .unwrap();
    assert!(after.recommended.is_empty(), "{:?}", after.recommended);
    store.close().await;
}

const NEXT: &str = r#"
id: next
trigger: { next_purchase_due: -3d }
steps:
  - id: nudge
    send: { template: next, subject: "{{ vars.next_sku }} after {{ vars.sku }}, {{ vars.interval_days }} days" }
"#;

#[tokio::test]
async fn next_purchase_due_times_the_mail_by_what_customers_buy_next_and_when() {
    let shop = TestShop::new(
        &[("next.yaml", NEXT)],
        &[
            ("next.html", "<p>{{ vars.next_sku }}</p>"),
            ("next.txt", "{{ vars.next_sku }}"),
        ],
        None,
    );
    let store = shop.store().await;
    let old: Vec<String> = (0..30).map(|i| format!("OLD{i:02}")).collect();
    let mut ids: Vec<&str> = old.iter().map(String::as_str).collect();
    ids.extend(["NEW", "SOAP"]);
    add_customers(&store, &ids).await;
    // Long ago: a cleanser, then 30 days later (20 customers) a lotion, or 10 days later (10) a
    // cream; nobody bought anything after soap.
    let mut history = Vec::new();
    for (i, c) in old.iter().enumerate() {
        history.push(item_order(
            &format!("H-{c}"),
            c,
            "2025-03-01T03:00:00Z",
            &["CL-01"],
        ));
        let (at, sku) = if i < 20 {
            ("2025-03-31T03:00:00Z", "LO-01")
        } else {
            ("2025-03-11T03:00:00Z", "CR-01")
        };
        history.push(item_order(&format!("N-{c}"), c, at, &[sku]));
    }
    add_orders(&store, &history).await;
    add_orders(
        &store,
        &[
            item_order("O-NEW", "NEW", "2026-11-02T03:00:00Z", &["CL-01"]),
            item_order("O-SOAP", "SOAP", "2026-11-02T03:00:00Z", &["SOAP-1"]),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-11-02T04:00:00Z"))
        .await
        .unwrap();
    let due = daemon
        .engine
        .store()
        .due_enrollments(i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(
        due.len(),
        1,
        "only the cleanser has a product that follows: {due:?}"
    );
    let e = &due[0];
    assert_eq!(e.customer_id, "NEW");
    // 30 days after the order, less the 3 of the offset; the lotion is what most bought next.
    assert_eq!(
        e.next_due_at,
        utc("2026-11-29T03:00:00Z").timestamp_millis()
    );
    let vars: serde_json::Value = serde_json::from_str(&e.vars).unwrap();
    assert_eq!(
        vars,
        serde_json::json!({"sku": "CL-01", "next_sku": "LO-01", "interval_days": 30})
    );
    daemon
        .engine
        .tick(utc("2026-11-29T04:00:00Z"))
        .await
        .unwrap();
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].subject, "LO-01 after CL-01, 30 days");
    store.close().await;
}
