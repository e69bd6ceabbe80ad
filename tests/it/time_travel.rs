//! Time travel with an injected clock: weeks of ticks in milliseconds, against the real SMTP
//! server. Steps arrive at the right local time in two zones, a false condition skips a step,
//! a repeat order ends the scenario, and repeated or overlapping ticks never send twice.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashSet};

const THREE: &str = r#"
id: three
trigger: first_order
goal: { event: order_placed, within: 60d }
steps:
  - id: one
    wait: 1d
    at: "10:00"
    send: { template: t, subject: "one {{ customer.id }}" }
  - id: two
    wait: 2d
    at: "10:00"
    if: "customer.attributes.vip == 'yes'"
    send: { template: t, subject: "two {{ customer.id }}" }
  - id: three
    wait: 3d
    at: "18:00"
    send: { template: t, subject: "three {{ customer.id }}" }
"#;

fn date_of(m: &mail_parser::Message) -> DateTime<Utc> {
    chrono::DateTime::parse_from_rfc2822(m.header_raw("Date").unwrap().trim())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn three_steps_arrive_at_local_times_skip_on_condition_stop_on_goal_and_never_twice() {
    let smtp = SmtpServer::start();
    let shop = TestShop::new(
        &[("three.yaml", THREE)],
        &[
            ("t.html", "<p>{{ step.id }}</p>"),
            ("t.txt", "{{ step.id }}"),
        ],
        Some(&smtp),
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer(
                    "TOKYO",
                    "tokyo@example.jp",
                    "T",
                    "Asia/Tokyo",
                    r#"{"vip":"yes"}"#,
                ),
                customer(
                    "NY",
                    "ny@example.com",
                    "N",
                    "America/New_York",
                    r#"{"vip":"no"}"#,
                ),
                customer(
                    "BACK",
                    "back@example.jp",
                    "B",
                    "Asia/Tokyo",
                    r#"{"vip":"yes"}"#,
                ),
            ],
            0,
        )
        .await
        .unwrap();
    // 03:00Z on Nov 2 is 12:00 in Tokyo and 22:00 on Nov 1 in New York (EST since Nov 1).
    add_orders(
        &store,
        &[
            order("O1", "TOKYO", "2026-11-02T03:00:00Z", 1000),
            order("O2", "NY", "2026-11-02T03:00:00Z", 1000),
            order("O3", "BACK", "2026-11-02T03:00:00Z", 1000),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;

    let mut now = utc("2026-11-02T03:30:00Z");
    let end = utc("2026-11-12T00:00:00Z");
    while now <= end {
        if now == utc("2026-11-04T00:00:00Z") {
            // BACK orders again after step one: the goal ends the scenario for them.
            add_orders(&store, &[order("O4", "BACK", "2026-11-03T23:00:00Z", 2000)]).await;
        }
        // Two overlapping ticks, then a repeated one, then delivery twice.
        let (a, b) = tokio::join!(daemon.engine.tick(now), daemon.engine.tick(now));
        a.unwrap();
        b.unwrap();
        daemon.engine.tick(now).await.unwrap();
        daemon.deliverer.run_once(now).await.unwrap();
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::minutes(30);
    }

    let got = smtp.received();
    let mut by_subject: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for r in &got {
        let m = r.parsed();
        let subject = m.subject().unwrap().to_string();
        assert!(
            by_subject.insert(subject.clone(), date_of(&m)).is_none(),
            "sent twice: {subject}"
        );
    }
    let expected: BTreeMap<String, DateTime<Utc>> = [
        // Tokyo: 10:00 JST next day, 10:00 JST two days later, 18:00 JST three days later.
        ("one TOKYO", "2026-11-03T01:00:00Z"),
        ("two TOKYO", "2026-11-05T01:00:00Z"),
        ("three TOKYO", "2026-11-08T09:00:00Z"),
        // New York: 10:00 EST on Nov 2, step two skipped (not a VIP), 18:00 EST on Nov 7.
        ("one NY", "2026-11-02T15:00:00Z"),
        ("three NY", "2026-11-07T23:00:00Z"),
        // BACK got step one, then ordered again and left.
        ("one BACK", "2026-11-03T01:00:00Z"),
    ]
    .into_iter()
    .map(|(s, t)| (s.to_string(), utc(t)))
    .collect();
    assert_eq!(by_subject, expected);

    let ids: HashSet<String> = got
        .iter()
        .map(|r| r.parsed().message_id().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), got.len());

    let rows = store.outbox_rows().await.unwrap();
    let skipped: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.status == "skipped")
        .map(|r| (r.customer_id.as_str(), r.step_id.as_str()))
        .collect();
    assert_eq!(skipped, [("NY", "two")]);
    assert_eq!(rows.iter().filter(|r| r.status == "sent").count(), 6);
    let status = store.scenario_status().await.unwrap();
    let s = &status["three"];
    assert_eq!(
        (s.enrolled, s.completed, s.reached_goal, s.sent, s.skipped),
        (3, 2, 1, 6, 1)
    );
}

#[tokio::test]
async fn a_tick_repeated_many_times_at_once_enrolls_and_queues_once() {
    let shop = TestShop::new(
        &[("three.yaml", THREE)],
        &[("t.html", "x"), ("t.txt", "x")],
        None,
    );
    let store = shop.store().await;
    let customers: Vec<_> = (0..50)
        .map(|i| {
            customer(
                &format!("C{i}"),
                &format!("c{i}@example.jp"),
                "X",
                "Asia/Tokyo",
                "{}",
            )
        })
        .collect();
    store.upsert_customers(&customers, 0).await.unwrap();
    let orders: Vec<_> = (0..50)
        .map(|i| {
            order(
                &format!("O{i}"),
                &format!("C{i}"),
                "2026-11-02T03:00:00Z",
                1000,
            )
        })
        .collect();
    add_orders(&store, &orders).await;
    let daemon = std::sync::Arc::new(shop.daemon(&store).await);
    let now = utc("2026-11-04T00:00:00Z");
    let ticks: Vec<_> = (0..8)
        .map(|_| {
            let d = daemon.clone();
            tokio::spawn(async move { d.engine.tick(now).await.unwrap() })
        })
        .collect();
    let mut enrolled = 0;
    let mut queued = 0;
    for t in ticks {
        let r = t.await.unwrap();
        enrolled += r.enrolled;
        queued += r.queued;
    }
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 50, "one outbox row per enrollment and step");
    assert_eq!(enrolled, 50);
    assert!(
        queued >= 50,
        "every tick that rendered reports it; only one row each is stored"
    );
    let status = store.scenario_status().await.unwrap();
    assert_eq!((status["three"].enrolled, status["three"].queued), (50, 50));
}

const SERIES: &str = r#"
id: series
trigger: first_order
steps:
  - id: thanks
    wait: 1d
    send: { template: t, subject: "thanks" }
  - id: howto
    wait: 6d
    send: { template: t, subject: "howto" }
  - id: refill
    wait: 23d
    expires: 30d
    send: { template: t, subject: "refill" }
"#;

#[tokio::test]
async fn a_daemon_started_36_days_late_records_stale_steps_as_expired_and_sends_the_rest() {
    let smtp = SmtpServer::start();
    let shop = TestShop::new(
        &[("series.yaml", SERIES)],
        &[
            ("t.html", "<p>{{ step.id }}</p>"),
            ("t.txt", "{{ step.id }}"),
        ],
        Some(&smtp),
    );
    let store = shop.store().await;
    add_customers(&store, &["LATE", "QUEUED"]).await;
    add_orders(
        &store,
        &[
            order("O1", "LATE", "2026-11-01T00:00:00Z", 1000),
            order("O2", "QUEUED", "2026-11-01T00:00:00Z", 1000),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;
    let start = utc("2026-11-01T01:00:00Z");
    daemon.engine.tick(start).await.unwrap();

    // QUEUED's thanks is queued on time, but the relay is not reached for five days: the
    // deliverer refuses it then (4 days past its 3-day limit).
    let day1 = start + Duration::days(1);
    daemon.engine.tick(day1).await.unwrap();
    let mut rows = store.outbox_rows().await.unwrap();
    rows.retain(|r| r.customer_id == "LATE");
    let by = rebuy::reasons::Reason::CancelledBy { by: "test".into() };
    store.cancel(Some(rows[0].id), None, &by, 0).await.unwrap();
    let report = daemon
        .deliverer
        .run_once(start + Duration::days(5))
        .await
        .unwrap();
    assert_eq!((report.expired, report.sent), (1, 0), "{report:?}");

    // The daemon is off until day 37: thanks (36 days late) and howto (30 days late) expire;
    // the refill reminder (7 days late, limit 30d) still goes.
    let late = start + Duration::days(37);
    daemon.engine.tick(late).await.unwrap();
    daemon.deliverer.run_once(late).await.unwrap();
    let by_step: BTreeMap<(String, String), (String, Option<String>)> = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| ((r.customer_id, r.step_id), (r.status, r.last_error)))
        .collect();
    let status = |c: &str, s: &str| by_step[&(c.to_string(), s.to_string())].clone();
    assert_eq!(status("QUEUED", "thanks").0, "expired");
    assert!(status("QUEUED", "thanks")
        .1
        .unwrap()
        .contains("past its lateness limit"));
    assert_eq!(
        status("LATE", "thanks").0,
        "cancelled",
        "cancelled above, by hand"
    );
    assert_eq!(status("LATE", "howto").0, "expired");
    assert!(
        status("LATE", "howto")
            .1
            .unwrap()
            .contains("30d 1h late, over the step's limit of 3d"),
        "{:?}",
        status("LATE", "howto")
    );
    assert_eq!(status("LATE", "refill").0, "sent");
    assert_eq!(status("QUEUED", "howto").0, "expired");
    assert_eq!(status("QUEUED", "refill").0, "sent");
    let subjects: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m.parsed().subject().unwrap_or_default().to_string())
        .collect();
    assert_eq!(subjects, ["refill", "refill"]);
    let counts = store.scenario_status().await.unwrap();
    assert_eq!(counts["series"].expired, 3);
}

#[tokio::test]
async fn a_back_test_engine_sends_late_steps_because_its_lateness_is_only_the_tick_size() {
    let shop = TestShop::new(
        &[("series.yaml", SERIES)],
        &[
            ("t.html", "<p>{{ step.id }}</p>"),
            ("t.txt", "{{ step.id }}"),
        ],
        None,
    );
    let store = shop.store().await;
    add_customers(&store, &["A"]).await;
    add_orders(&store, &[order("O1", "A", "2026-11-01T00:00:00Z", 1000)]).await;
    let engine = shop.daemon(&store).await.engine.for_back_test();
    let start = utc("2026-11-01T01:00:00Z");
    engine.tick(start).await.unwrap();
    engine.tick(start + Duration::days(37)).await.unwrap();
    let statuses: Vec<String> = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, ["queued", "queued", "queued"]);
}
