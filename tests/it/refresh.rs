//! The stored metrics refresh over a real database: the CDNOW sample imported as a shop
//! (orders at noon, Tokyo time, amounts in cents) gives the reference's summary and RFM scores
//! for every customer, stores the model fits, and exports one streamed row per customer; a shop
//! with too little history is refreshed without predictions and says why.

use crate::helpers::*;
use chrono::NaiveDate;
use futures::TryStreamExt;
use rebuy::refresh::refresh;
use rebuy::store::{MetricsRow, NewOrder, Store};
use std::collections::BTreeMap;

pub async fn cdnow_shop(store: &Store) {
    let orders = cdnow_rows("cdnow_sample_orders.csv");
    let mut ids: Vec<String> = orders.iter().map(|r| r["customer_id"].clone()).collect();
    ids.sort();
    ids.dedup();
    let customers: Vec<_> = ids
        .iter()
        .map(|id| customer(id, &format!("c{id}@example.com"), id, "Asia/Tokyo", "{}"))
        .collect();
    store.upsert_customers(&customers, 0).await.unwrap();
    let orders: Vec<NewOrder> = orders
        .iter()
        .map(|r| {
            // Noon in Tokyo is 03:00 UTC the same day.
            let mut o = order(
                &r["order_id"],
                &r["customer_id"],
                &format!("{}T03:00:00Z", r["ordered_at"]),
                0,
            );
            o.total = (r["amount"].parse::<f64>().unwrap() * 100.0).round() as i64;
            o.currency = "USD".into();
            o
        })
        .collect();
    add_orders(store, &orders).await;
}

async fn stored(store: &Store) -> BTreeMap<String, MetricsRow> {
    store
        .metrics_rows()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.customer_id.clone(), r))
        .collect()
}

#[tokio::test]
async fn a_refresh_of_the_cdnow_shop_stores_the_reference_metrics_for_every_customer() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    cdnow_shop(&store).await;
    let as_of = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    let report = refresh(&store, as_of, chrono_tz::Asia::Tokyo, 0, &[], &|_| {})
        .await
        .unwrap();
    assert_eq!((report.customers, report.orders), (2357, 6919));
    let bg = report.bgnbd.as_ref().unwrap();
    assert!((bg.r - 0.25356104359918297).abs() < 1e-4 * 0.2536, "{bg:?}");
    let rows = stored(&store).await;
    assert_eq!(rows.len(), 2357);
    for want in cdnow_rows("cdnow_sample_summary_oracle.csv") {
        let got = &rows[&want["customer_id"]];
        let f = |k: &str| want[k].parse::<f64>().unwrap();
        assert_eq!(
            (got.frequency as f64, got.recency as f64, got.t as f64),
            (f("frequency"), f("recency"), f("T")),
            "customer {}",
            got.customer_id
        );
        // Cents here, dollars in the reference.
        assert!((got.monetary - f("monetary_value") * 100.0).abs() < 1e-7);
        assert!(got.p_alive.is_some() && got.predicted_clv.is_some());
    }
    for want in cdnow_rows("cdnow_sample_rfm_oracle.csv") {
        let got = &rows[&want["customer_id"]];
        let score = |k: &str| want[k].parse::<i64>().unwrap();
        assert_eq!(
            (got.r_score, got.f_score, got.m_score),
            (score("R"), score("F"), score("M")),
            "customer {}",
            got.customer_id
        );
        assert_eq!(got.days_since_last, score("recency_days"));
        assert_eq!(got.orders, score("orders"));
        assert_eq!(
            got.rfm_segment,
            rebuy::metrics::segment(got.r_score as u8, got.f_score as u8, got.orders as u32)
        );
    }
    let fits = store.model_fits().await.unwrap();
    let names: Vec<&str> = fits.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["bgnbd", "gamma_gamma", "rfm_cuts"]);
    assert_eq!(
        fits[1].2, 1139,
        "Gamma-Gamma on the customers with a paid repeat purchase"
    );
    assert_eq!(report.segments.iter().map(|(_, n)| n).sum::<usize>(), 2357);

    // A second refresh a year later replaces every row.
    let later = NaiveDate::from_ymd_opt(1999, 6, 30).unwrap();
    refresh(&store, later, chrono_tz::Asia::Tokyo, 0, &[], &|_| {})
        .await
        .unwrap();
    let rows = stored(&store).await;
    assert_eq!(rows.len(), 2357);
    assert!(rows.values().all(|r| r.as_of == "1999-06-30"));
    assert_eq!(rows["1"].days_since_last, 200 + 365);
}

#[tokio::test]
async fn too_little_history_refreshes_without_predictions_and_says_why() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    add_customers(&store, &["A", "B"]).await;
    add_orders(
        &store,
        &[
            order("O1", "A", "2026-11-01T03:00:00Z", 1000),
            order("O2", "A", "2026-11-10T03:00:00Z", 3000),
            order("O3", "B", "2026-11-05T03:00:00Z", 2000),
        ],
    )
    .await;
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let report = refresh(&store, as_of, chrono_tz::Asia::Tokyo, 0, &[], &|_| {})
        .await
        .unwrap();
    let why = report.bgnbd.unwrap_err().to_string();
    assert!(why.contains("2 customers of whom 1 bought again"), "{why}");
    let rows = stored(&store).await;
    let a = &rows["A"];
    assert_eq!(
        (a.orders, a.total_spent, a.frequency, a.recency, a.t),
        (2, 4000, 1, 9, 19)
    );
    assert_eq!(
        (a.first_order.as_str(), a.last_order.as_str()),
        ("2026-11-01", "2026-11-10")
    );
    assert_eq!(a.average_order_value, 2000.0);
    assert_eq!(a.p_alive, None);
    assert_eq!(a.predicted_clv, None);
    let fits = store.model_fits().await.unwrap();
    let names: Vec<&str> = fits.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["rfm_cuts"], "no model, only the RFM cuts");
}

#[tokio::test]
async fn the_ltv_report_of_the_cdnow_shop_adds_up_to_what_the_orders_say() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    cdnow_shop(&store).await;
    let as_of = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    refresh(&store, as_of, chrono_tz::Asia::Tokyo, 0, &[], &|_| {})
        .await
        .unwrap();
    let (segments, cohorts) = rebuy::reports::ltv_report(&store, as_of, chrono_tz::Asia::Tokyo)
        .await
        .unwrap();

    // The same figures straight from the CSV, per first-order month.
    let end = day("1998-06-30");
    let mut by_customer: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for r in cdnow_rows("cdnow_sample_orders.csv") {
        let cents = (r["amount"].parse::<f64>().unwrap() * 100.0).round() as i64;
        by_customer
            .entry(r["customer_id"].clone())
            .or_default()
            .push((day(&r["ordered_at"]), cents));
    }
    let mut expect: BTreeMap<String, (u64, i64, u64, i64, u64)> = BTreeMap::new();
    for orders in by_customer.values() {
        let first = orders.iter().map(|o| o.0).min().unwrap();
        let last = orders.iter().map(|o| o.0).max().unwrap();
        let month = (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(first))
            .format("%Y-%m")
            .to_string();
        let e = expect.entry(month).or_default();
        e.0 += 1;
        e.1 += orders.iter().map(|o| o.1).sum::<i64>();
        e.2 += orders.len() as u64;
        e.3 += orders
            .iter()
            .filter(|o| o.0 - first < 90)
            .map(|o| o.1)
            .sum::<i64>();
        e.4 += u64::from(end - last < 365);
    }
    assert_eq!(cohorts.len(), 3);
    for c in &cohorts {
        let (n, revenue, orders, first_90, active) = expect[&c.group];
        assert_eq!(
            (c.customers, c.revenue as i64, c.orders),
            (n, revenue, orders),
            "{}",
            c.group
        );
        // Everyone first ordered in 1997: every window has run out, for everyone.
        assert_eq!(c.observed_customers, [n, n, n]);
        assert!((c.revenue_within[0].unwrap() - first_90 as f64 / n as f64).abs() < 1e-6);
        assert!((c.annual_retention.unwrap() - active as f64 / n as f64).abs() < 1e-12);
        assert!(c.ltv.unwrap() > 0.0);
    }
    // The segments cover every customer once.
    assert_eq!(segments.iter().map(|s| s.customers).sum::<u64>(), 2357);
    assert_eq!(
        segments.iter().map(|s| s.revenue).sum::<f64>() as i64,
        cohorts.iter().map(|c| c.revenue).sum::<f64>() as i64
    );
}

#[tokio::test]
async fn templates_see_the_customers_metrics_once_they_are_refreshed() {
    // The tick comes 19 days after the first order: a lateness limit that allows it.
    const SCENARIO: &str = "id: s\ntrigger: first_order\nexpires: 30d\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ metrics.rfm_segment }}\" }\n";
    let shop = TestShop::new(
        &[("s.yaml", SCENARIO)],
        &[
            ("t.html", "<p>{{ metrics.rfm_segment }} R{{ metrics.r_score }} {{ metrics.orders }}</p>"),
            ("t.txt", "{% if metrics.p_alive is none %}no prediction{% endif %} next: {{ metrics.expected_next_order }}"),
        ],
        None,
    );
    let store = shop.store().await;
    store
        .upsert_customers(&[customer("A", "a@example.jp", "A", "Asia/Tokyo", "{}")], 0)
        .await
        .unwrap();
    add_orders(
        &store,
        &[
            order("O1", "A", "2026-11-01T03:00:00Z", 1000),
            order("O2", "A", "2026-11-10T03:00:00Z", 3000),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-20T03:00:00Z");
    // Before any refresh every metric is empty, and templates still render.
    let before = daemon
        .engine
        .preview("s", "a", "A", Default::default(), now)
        .await
        .unwrap();
    assert!(before.text.contains("no prediction"), "{}", before.text);
    refresh(
        &store,
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        chrono_tz::Asia::Tokyo,
        0,
        &[],
        &|_| {},
    )
    .await
    .unwrap();
    let after = daemon
        .engine
        .preview("s", "a", "A", Default::default(), now)
        .await
        .unwrap();
    // One customer: R and F tie at the top; two orders, recent: champions.
    assert_eq!(after.subject, "champions");
    assert!(after.html.contains("champions R5 2"), "{}", after.html);
    // The tick renders with them too.
    daemon.engine.tick(now).await.unwrap();
    let queued = store.outbox_rows().await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].subject, "champions");
}

#[tokio::test]
async fn an_incremental_refresh_recomputes_only_the_customers_whose_orders_changed() {
    use rebuy::metrics::{BgNbd, Purchase, Summary};
    use rebuy::refresh::refresh_changed;
    let segments_yaml = "segments:\n  - name: this-week\n    where: ordered_within(7d)\n  - name: few-orders\n    where: orders <= 2\n";
    let doc = rebuy::yaml::parse("s.yaml", segments_yaml).unwrap();
    let (segments, _) = rebuy::segment::parse_segments("s.yaml", segments_yaml, &doc);
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let as_of = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    let zone = chrono_tz::Asia::Tokyo;
    // Before any full refresh there is nothing to score against.
    assert!(refresh_changed(&store, as_of, zone, 0, &segments)
        .await
        .unwrap()
        .is_none());
    cdnow_shop(&store).await;
    refresh(&store, as_of, zone, 0, &segments, &|_| {})
        .await
        .unwrap();
    let before = stored(&store).await;
    let in_week = store.segment_members("this-week").await.unwrap();
    assert!(!in_week.is_empty());
    // Three known customers and a new one order on the last day.
    store
        .upsert_customers(
            &[customer(
                "NEW",
                "new@example.com",
                "NEW",
                "Asia/Tokyo",
                "{}",
            )],
            0,
        )
        .await
        .unwrap();
    let changed = ["1", "2", "10", "NEW"];
    let new_orders: Vec<NewOrder> = changed
        .iter()
        .map(|c| {
            let mut o = order(&format!("late-{c}"), c, "1998-06-30T03:00:00Z", 2500);
            o.currency = "USD".into();
            o
        })
        .collect();
    add_orders(&store, &new_orders).await;
    let r = refresh_changed(&store, as_of, zone, 1, &segments)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.customers, r.removed), (4, 0));
    let after = stored(&store).await;
    assert_eq!(after.len(), before.len() + 1);
    for (id, row) in &before {
        if !changed.contains(&id.as_str()) {
            assert_eq!(after[id], *row, "{id} is untouched");
        }
    }
    // The changed rows: their summary from all their orders, R = 5 (they bought on the
    // as-of day), predictions from the stored model.
    let fits = store.model_fits().await.unwrap();
    let params = &fits.iter().find(|f| f.0 == "bgnbd").unwrap().1;
    let model: BgNbd = serde_json::from_str(params).unwrap();
    let end = day("1998-06-30");
    for id in changed {
        let row = &after[id];
        let mut purchases: Vec<Purchase> = cdnow_rows("cdnow_sample_orders.csv")
            .iter()
            .filter(|o| o["customer_id"] == id)
            .map(|o| Purchase {
                day: day(&o["ordered_at"]),
                amount: (o["amount"].parse::<f64>().unwrap() * 100.0).round(),
            })
            .collect();
        purchases.push(Purchase {
            day: end,
            amount: 2500.0,
        });
        let s = Summary::of(&purchases, end).unwrap();
        assert_eq!(
            (row.orders, row.frequency, row.recency, row.t),
            (
                i64::from(s.orders),
                s.frequency as i64,
                s.recency as i64,
                s.t as i64
            ),
            "{id}"
        );
        assert_eq!(row.r_score, 5, "{id}");
        assert_eq!(row.last_order, "1998-06-30");
        assert!(
            (row.p_alive.unwrap() - model.p_alive(&s)).abs() < 1e-12,
            "{id}"
        );
    }
    // Only they can have entered the segment; everyone else's membership is as it was.
    let members = store.segment_members("this-week").await.unwrap();
    let mut expected = in_week.clone();
    let entering: Vec<String> = changed
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !in_week.contains(c))
        .collect();
    expected.extend(entering.iter().cloned());
    expected.sort();
    assert_eq!(members, expected);
    assert!(!entering.is_empty());
    assert_eq!(r.named_segments[0].1.entered as usize, entering.len());
    assert_eq!(r.named_segments[0].1.exited, 0);
    // A changed customer whose new order takes them past two orders leaves `few-orders`;
    // nobody else does.
    let leaving: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|c| before.get(*c).is_some_and(|b| b.orders <= 2) && after[*c].orders > 2)
        .collect();
    assert!(!leaving.is_empty());
    assert_eq!(r.named_segments[1].1.exited as usize, leaving.len());
    let few = store.segment_members("few-orders").await.unwrap();
    let expected_few = before.values().filter(|b| b.orders <= 2).count() - leaving.len()
        + usize::from(after["NEW"].orders <= 2);
    assert_eq!(few.len(), expected_few);
    assert!(leaving.iter().all(|c| !few.contains(&c.to_string())));
    // The member counts it reports (kept from the last count, not counted again) are the
    // stored memberships.
    assert_eq!(r.named_segments[0].1.members as usize, members.len());
    assert_eq!(r.named_segments[1].1.members as usize, few.len());
    // The changes are written as events in the segments' order, each segment's entries before
    // its exits, by customer (the full refresh before was the baseline: no events).
    let events: Vec<(String, String, bool)> = store
        .segment_events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.segment, e.customer_id, e.entered))
        .collect();
    let mut expected_events: Vec<(String, String, bool)> = Vec::new();
    let mut entering = entering.clone();
    entering.sort();
    expected_events.extend(
        entering
            .iter()
            .map(|c| ("this-week".into(), c.clone(), true)),
    );
    expected_events.push(("few-orders".into(), "NEW".into(), true));
    let mut leaving: Vec<String> = leaving.iter().map(|c| c.to_string()).collect();
    leaving.sort();
    expected_events.extend(
        leaving
            .iter()
            .map(|c| ("few-orders".into(), c.clone(), false)),
    );
    assert_eq!(events, expected_events);
    // Nothing is left to do.
    let again = refresh_changed(&store, as_of, zone, 2, &segments)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.customers, 0);
    // A segment no longer defined is left as it was: its members among the changed customers
    // do not exit it.
    let few_before = store.segment_members("few-orders").await.unwrap();
    assert!(few_before.contains(&"NEW".to_string()));
    add_orders(
        &store,
        &[order("later-NEW", "NEW", "1998-06-30T04:00:00Z", 900)],
    )
    .await;
    add_orders(
        &store,
        &[order("later-NEW-2", "NEW", "1998-06-30T05:00:00Z", 900)],
    )
    .await;
    let only_week = refresh_changed(&store, as_of, zone, 3, &segments[..1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_week.customers, 1);
    assert_eq!(
        store.segment_members("few-orders").await.unwrap(),
        few_before
    );
    let later = store.segment_events_after(0, 1000).await.unwrap();
    assert_eq!(
        later.len(),
        expected_events.len(),
        "no event for NEW: {later:?}"
    );
}

#[derive(serde::Deserialize)]
struct CronLine {
    cron: serde_saphyr::Spanned<String>,
}

fn job(name: &str, import_orders: Option<std::path::PathBuf>) -> rebuy::daemon::Job {
    let config = rebuy::config::JobConfig {
        name: name.into(),
        cron: serde_saphyr::from_str::<CronLine>("cron: \"0 3 * * *\"")
            .unwrap()
            .cron,
        import_customers: None,
        import_orders,
        refresh_metrics: true,
        digest: None,
    };
    let schedule = rebuy::config::parse_cron("0 3 * * *").unwrap();
    rebuy::daemon::Job::new(config, schedule, chrono_tz::Asia::Tokyo)
}

#[tokio::test]
async fn the_daemon_refreshes_incrementally_after_an_import_and_in_full_on_a_plain_job() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    let orders = shop.file("orders.csv");
    let header = "order_id,customer_id,placed_at,currency,total\n";
    std::fs::write(
        &orders,
        format!(
            "{header}O1,C1,2026-11-01T01:00:00Z,JPY,1000\nO2,C2,2026-11-01T01:00:00Z,JPY,1000\n"
        ),
    )
    .unwrap();
    let mut daemon = shop.daemon(&store).await;
    daemon.jobs.push(job("import", Some(orders.clone())));
    let as_of = |rows: &BTreeMap<String, MetricsRow>| {
        rows.values()
            .map(|r| (r.customer_id.clone(), r.as_of.clone(), r.orders))
            .collect::<Vec<_>>()
    };
    // The first run schedules; 03:00 Tokyo on Nov 2 is 18:00 UTC on Nov 1.
    daemon.run_once(utc("2026-11-01T12:00:00Z")).await.unwrap();
    daemon.run_once(utc("2026-11-01T18:00:00Z")).await.unwrap();
    // No full refresh stored yet: the first one is full.
    assert_eq!(
        as_of(&stored(&store).await),
        [
            ("C1".into(), "2026-11-02".into(), 1),
            ("C2".into(), "2026-11-02".into(), 1)
        ]
    );
    // A day later the file has one more order, for C1: only C1 is recomputed.
    std::fs::write(
        &orders,
        format!("{header}O1,C1,2026-11-01T01:00:00Z,JPY,1000\nO2,C2,2026-11-01T01:00:00Z,JPY,1000\nO3,C1,2026-11-02T01:00:00Z,JPY,2000\n"),
    )
    .unwrap();
    daemon.run_once(utc("2026-11-02T18:00:00Z")).await.unwrap();
    assert_eq!(
        as_of(&stored(&store).await),
        [
            ("C1".into(), "2026-11-03".into(), 2),
            ("C2".into(), "2026-11-02".into(), 1)
        ]
    );
    // A job without imports (the nightly refresh) moves everyone to the new day.
    daemon.jobs = vec![job("nightly", None)];
    daemon.run_once(utc("2026-11-03T12:00:00Z")).await.unwrap();
    daemon.run_once(utc("2026-11-03T18:00:00Z")).await.unwrap();
    assert_eq!(
        as_of(&stored(&store).await),
        [
            ("C1".into(), "2026-11-04".into(), 2),
            ("C2".into(), "2026-11-04".into(), 1)
        ]
    );
}
