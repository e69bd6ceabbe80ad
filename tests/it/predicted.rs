//! Triggers timed by prediction: `replenish` (the shop's typical repeat interval of a SKU,
//! computed by the refresh) and `expected_next_order` (the BG/NBD model's predicted next
//! order), over a real database and the real tick.

use crate::helpers::*;
use chrono::NaiveDate;
use futures::TryStreamExt;
use rebuy::refresh::refresh;
use rebuy::store::{NewOrder, Store};

const ZONE: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

fn with_sku(id: &str, customer: &str, at: &str, sku: &str) -> NewOrder {
    let mut o = order(id, customer, at, 3000);
    o.items = format!(
        r#"[{{"sku":"{sku}","name":"{sku}","category":"c","quantity":1,"unit_price":3000}}]"#
    );
    o
}

#[tokio::test]
async fn replenish_is_timed_by_the_skus_typical_repeat_interval() {
    let scenario = "id: refill\ntrigger: { replenish: -3d }\nreentry: always\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ vars.sku }} every {{ vars.interval_days }} days\" }\n";
    let shop = TestShop::new(
        &[("refill.yaml", scenario)],
        &[
            ("t.html", "<p>{{ vars.sku }}</p>"),
            ("t.txt", "{{ vars.sku }}"),
        ],
        None,
    );
    let store = shop.store().await;
    let mut customers = vec![customer("Z", "z@example.jp", "Z", "Asia/Tokyo", "{}")];
    let mut history = Vec::new();
    // Five customers bought LO-01 twice, 28 to 32 days apart (median 30); one bought SE-01
    // twice (one pair: too few to trust).
    for (i, gap) in [28, 30, 30, 31, 32].iter().enumerate() {
        let id = format!("H{i}");
        customers.push(customer(
            &id,
            &format!("{id}@example.jp"),
            &id,
            "Asia/Tokyo",
            "{}",
        ));
        let first = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        let second = first + chrono::Duration::days(*gap);
        history.push(with_sku(
            &format!("{id}-1"),
            &id,
            &format!("{first}T03:00:00Z"),
            "LO-01",
        ));
        history.push(with_sku(
            &format!("{id}-2"),
            &id,
            &format!("{second}T03:00:00Z"),
            "LO-01",
        ));
    }
    history.push(with_sku("H0-3", "H0", "2025-09-01T03:00:00Z", "SE-01"));
    history.push(with_sku("H0-4", "H0", "2025-10-01T03:00:00Z", "SE-01"));
    store.upsert_customers(&customers, 0).await.unwrap();
    add_orders(&store, &history).await;
    let daemon = shop.daemon(&store).await;
    // The history is old: ticking over it starts nothing new (lookback), and the intervals
    // come from the refresh.
    daemon
        .engine
        .tick(utc("2026-02-27T00:00:00Z"))
        .await
        .unwrap();
    let as_of = NaiveDate::from_ymd_opt(2026, 2, 27).unwrap();
    refresh(&store, as_of, ZONE, 0, &[], &|_| {}).await.unwrap();
    let skus = rebuy::refresh::refresh_sku_intervals(&store, as_of, ZONE)
        .await
        .unwrap();
    assert_eq!(skus, 1);
    assert_eq!(store.sku_intervals().await.unwrap().get("LO-01"), Some(&30));
    let before: usize = count_enrollments(&store, "refill").await;
    // Z buys LO-01 (runs out in 30 days) and SE-01 (no interval known) separately.
    add_orders(
        &store,
        &[
            with_sku("Z1", "Z", "2026-03-01T03:00:00Z", "LO-01"),
            with_sku("Z2", "Z", "2026-03-02T03:00:00Z", "SE-01"),
        ],
    )
    .await;
    daemon
        .engine
        .tick(utc("2026-03-02T04:00:00Z"))
        .await
        .unwrap();
    let mine: Vec<_> = store
        .enrollments_for_customers(&["Z".into()])
        .await
        .unwrap();
    assert_eq!(
        mine.len(),
        1,
        "only the order with a known interval enrolls"
    );
    assert_eq!(mine[0].order_id.as_deref(), Some("Z1"));
    assert_eq!(count_enrollments(&store, "refill").await, before + 1);
    // Due 30 days after the order, less 3: 2026-03-28 at the order's time of day.
    assert!(
        daemon
            .engine
            .tick(utc("2026-03-28T02:59:00Z"))
            .await
            .unwrap()
            .queued
            == 0
    );
    let r = daemon
        .engine
        .tick(utc("2026-03-28T03:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.queued, 1);
    let subjects: Vec<String> = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.customer_id == "Z")
        .map(|r| r.subject)
        .collect();
    assert_eq!(subjects, vec!["LO-01 every 30 days".to_string()]);
}

async fn count_enrollments(store: &Store, scenario: &str) -> usize {
    let ids: Vec<String> = store
        .metrics_rows()
        .map_ok(|r| r.customer_id)
        .try_collect()
        .await
        .unwrap_or_default();
    let mut ids = ids;
    ids.extend(["Z".to_string()]);
    store
        .enrollments_for_customers(&ids)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.scenario_id == scenario)
        .count()
}

#[tokio::test]
async fn expected_next_order_fires_once_per_prediction_at_its_offset() {
    let scenario = "id: soon\ntrigger: { expected_next_order: -3d }\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ metrics.expected_next_order }}\" }\n";
    let shop = TestShop::new(
        &[("soon.yaml", scenario)],
        &[("t.html", "<p>x</p>"), ("t.txt", "x")],
        None,
    );
    let store = shop.store().await;
    crate::refresh::cdnow_shop(&store).await;
    let daemon = shop.daemon(&store).await;
    // The CDNOW history itself is long past: the first tick starts nothing from it.
    daemon
        .engine
        .tick(utc("1998-06-30T00:00:00Z"))
        .await
        .unwrap();
    let as_of = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    refresh(&store, as_of, ZONE, 0, &[], &|_| {}).await.unwrap();
    let rows: Vec<(String, String)> = store
        .metrics_rows()
        .try_filter_map(|r| async move { Ok(r.expected_next_order.map(|d| (r.customer_id, d))) })
        .try_collect()
        .await
        .unwrap();
    assert!(rows.len() > 100, "{} predictions", rows.len());
    let now = utc("1998-07-20T00:00:00Z");
    let lookback = shop.app().resolved.trigger_lookback;
    // Fires when the start of the predicted day (Tokyo), less three days, is within the
    // lookback before now.
    let mut expected: Vec<String> = rows
        .iter()
        .filter(|(_, d)| {
            let day = NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
            let at = rebuy::clock::from_millis(rebuy::clock::start_of_day(day, ZONE))
                - chrono::Duration::days(3);
            at <= now && at >= now - lookback
        })
        .map(|(c, _)| c.clone())
        .collect();
    expected.sort();
    assert!(
        !expected.is_empty() && expected.len() < rows.len(),
        "{}",
        expected.len()
    );
    let enrolled = || async {
        let ids: Vec<String> = rows.iter().map(|(c, _)| c.clone()).collect();
        let mut who: Vec<String> = store
            .enrollments_for_customers(&ids)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.scenario_id == "soon")
            .map(|e| e.customer_id)
            .collect();
        who.sort();
        who
    };
    let first = daemon.engine.tick(now).await.unwrap();
    assert_eq!(enrolled().await, expected);
    assert_eq!(first.enrolled as usize, expected.len());
    // Later the same day, and on the next day: nothing fires twice.
    let again = daemon
        .engine
        .tick(now + chrono::Duration::hours(5))
        .await
        .unwrap();
    assert_eq!(again.enrolled, 0);
    let next_day = daemon
        .engine
        .tick(now + chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(enrolled().await.len() >= expected.len());
    assert_eq!(
        enrolled().await.len(),
        expected.len() + next_day.enrolled as usize,
        "the next day adds only the customers whose day came"
    );
}
