//! Holdouts, the control group and the scenario report, through the real engine, a real SQLite
//! file and the real SMTP server on loopback: held-out customers get nothing but convert like
//! everyone else, assignments survive restarts, and a known effect is measured.

use crate::helpers::*;
use chrono::Duration;
use rand::{Rng, SeedableRng};
use rebuy::experiment::{arm, Arm};
use rebuy::reports::scenario_report;
use std::collections::{BTreeMap, BTreeSet};

const THANKS: &str = r#"
id: thanks
trigger: first_order
holdout: 25%
goal: { event: order_placed, within: 30d }
steps:
  - id: thank-you
    wait: 1d
    send: { template: t, subject: "thank you {{ customer.id }}" }
  - id: reminder
    wait: 5d
    send: { template: t, subject: "reminder {{ customer.id }}" }
"#;

const TEMPLATES: &[(&str, &str)] = &[
    ("t.html", "<p>{{ step.id }}</p>"),
    ("t.txt", "{{ step.id }}"),
];

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("C{i:04}")).collect()
}

async fn shop_with_first_orders(
    scenarios: &[(&str, &str)],
    n: usize,
    smtp: Option<&SmtpServer>,
) -> (TestShop, Vec<String>) {
    let shop = TestShop::new(scenarios, TEMPLATES, smtp);
    let store = shop.store().await;
    let customers = ids(n);
    add_customers(
        &store,
        &customers.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let orders: Vec<_> = customers
        .iter()
        .map(|c| order(&format!("F-{c}"), c, "2026-11-02T03:00:00Z", 3000))
        .collect();
    add_orders(&store, &orders).await;
    store.close().await;
    (shop, customers)
}

#[tokio::test]
async fn held_out_customers_get_nothing_convert_like_the_others_and_keep_their_arm_across_restarts()
{
    let smtp = SmtpServer::start();
    let (shop, customers) =
        shop_with_first_orders(&[("thanks.yaml", THANKS)], 160, Some(&smtp)).await;
    // Every third customer orders again on day 3, between the two steps.
    let again: BTreeSet<String> = customers.iter().step_by(3).cloned().collect();
    let mut now = utc("2026-11-02T04:00:00Z");
    let end = utc("2026-11-12T00:00:00Z");
    let mut store = shop.store().await;
    let mut daemon = shop.daemon(&store).await;
    while now <= end {
        if now == utc("2026-11-05T04:00:00Z") {
            let orders: Vec<_> = again
                .iter()
                .map(|c| order(&format!("A-{c}"), c, "2026-11-05T03:00:00Z", 5000))
                .collect();
            add_orders(&store, &orders).await;
        }
        if now == utc("2026-11-04T04:00:00Z") {
            // A restart: a new process assigns nobody anew.
            store.close().await;
            store = shop.store().await;
            daemon = shop.daemon(&store).await;
        }
        daemon.engine.tick(now).await.unwrap();
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::hours(6);
    }

    let expected_held: BTreeSet<String> = customers
        .iter()
        .filter(|c| arm("thanks", c, 0.25, 0.0, true) == Arm::Holdout)
        .cloned()
        .collect();
    // 25% of 160 = 40, sd 5.5.
    assert!(
        (18..=62).contains(&expected_held.len()),
        "{}",
        expected_held.len()
    );

    let rows = store.outbox_rows().await.unwrap();
    let held: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.status == "held_out")
        .map(|r| r.customer_id.clone())
        .collect();
    assert_eq!(
        held, expected_held,
        "the recorded holdout is the hashed one, across the restart"
    );
    // Held-out enrollments go through the same steps at the same times; nothing of theirs is
    // queued or sent.
    for r in rows
        .iter()
        .filter(|r| expected_held.contains(&r.customer_id))
    {
        assert_eq!(r.status, "held_out", "{r:?}");
        assert!(r.html.is_empty() && r.sent_at.is_none());
    }
    let due: BTreeMap<&str, BTreeSet<i64>> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.step_id.as_str()).or_default().insert(r.due_at);
        m
    });
    assert!(
        due.values().all(|d| d.len() == 1),
        "one due time per step for both arms: {due:?}"
    );

    // Checked against what the SMTP server received.
    let received: Vec<String> = smtp.received().iter().flat_map(|r| r.to.clone()).collect();
    for c in &expected_held {
        let address = format!("{c}@example.jp");
        assert!(
            !received.iter().any(|to| to.contains(&address)),
            "{c} is held out but got mail"
        );
    }
    let treated = customers.len() - expected_held.len();
    let reordered_treated = again.iter().filter(|c| !expected_held.contains(*c)).count();
    // Everyone treated got the thank-you; only those who did not order again got the reminder.
    assert_eq!(received.len(), treated + (treated - reordered_treated));

    let report = scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(7),
    )
    .await
    .unwrap();
    let r = &report[0];
    assert_eq!(
        (r.treatment as usize, r.held_out as usize),
        (treated, expected_held.len())
    );
    assert_eq!(r.converted_treatment as usize, reordered_treated);
    assert_eq!(
        r.converted_comparison as usize,
        again.iter().filter(|c| expected_held.contains(*c)).count(),
        "held-out customers convert exactly like the others"
    );
    assert_eq!(r.compared_with.as_deref(), Some("holdout"));
    assert_eq!(
        r.revenue_per_treated,
        5000.0 * reordered_treated as f64 / treated as f64
    );
    let thank_you = r.steps.iter().find(|s| s.step == "thank-you").unwrap();
    assert_eq!(
        (thank_you.sent as usize, thank_you.held_out as usize),
        (treated, expected_held.len())
    );
    assert_eq!(thank_you.converted_after as usize, reordered_treated);
    // Last touch: each treated reorder (day 3) follows its thank-you (day 1) within 7 days;
    // held-out customers' orders follow no message and are credited to nothing.
    assert_eq!(
        (
            thank_you.attributed_orders as usize,
            thank_you.attributed_revenue as usize
        ),
        (reordered_treated, 5000 * reordered_treated)
    );
    assert_eq!(r.attributed_orders as usize, reordered_treated);
    let short = scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(1),
    )
    .await
    .unwrap();
    assert_eq!(
        short[0].attributed_orders, 0,
        "day 3 is outside a 1-day window"
    );
    let reminder = r.steps.iter().find(|s| s.step == "reminder").unwrap();
    assert_eq!(reminder.sent as usize, treated - reordered_treated);

    // A corrected import of the converting orders (a partial refund) changes the revenue the
    // report credits to the conversions.
    let corrected: Vec<_> = again
        .iter()
        .map(|c| order(&format!("A-{c}"), c, "2026-11-05T03:00:00Z", 4200))
        .collect();
    add_orders(&store, &corrected).await;
    let report = scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(7),
    )
    .await
    .unwrap();
    assert_eq!(
        report[0].revenue_per_treated,
        4200.0 * reordered_treated as f64 / treated as f64
    );
    store.close().await;
}

const RECEIPT: &str = r#"
id: receipt
trigger: order_placed
transactional: true
steps:
  - id: receipt
    wait: 0d
    send: { template: t, subject: "receipt" }
"#;

const PROMO: &str = r#"
id: promo
trigger: first_order
steps:
  - id: promo
    wait: 1d
    send: { template: t, subject: "promo" }
"#;

#[tokio::test]
async fn the_control_group_gets_transactional_mail_but_no_marketing() {
    let (shop, customers) = shop_with_first_orders(
        &[("receipt.yaml", RECEIPT), ("promo.yaml", PROMO)],
        200,
        None,
    )
    .await;
    let store = shop.store().await;
    let mut app = shop.app();
    app.resolved.control_group = 0.2;
    let engine = app.engine(&store).await.unwrap().unwrap();
    engine.tick(utc("2026-11-04T00:00:00Z")).await.unwrap();
    let rows = store.outbox_rows().await.unwrap();
    let control: BTreeSet<&String> = customers
        .iter()
        .filter(|c| rebuy::experiment::in_control_group(c, 0.2))
        .collect();
    assert!((20..=60).contains(&control.len()), "{}", control.len());
    for r in &rows {
        let expected = if r.scenario_id == "promo" && control.contains(&r.customer_id) {
            "held_out"
        } else {
            "queued"
        };
        assert_eq!(r.status, expected, "{} {}", r.scenario_id, r.customer_id);
    }
    assert_eq!(rows.len(), 400, "both scenarios enrolled everyone");
    let report = scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        Some("promo"),
        Duration::days(7),
    )
    .await
    .unwrap();
    assert_eq!(
        report.len(),
        2,
        "the scenario and the shop-wide control-group row"
    );
    assert_eq!(report[0].control as usize, control.len());
    assert_eq!(report[0].compared_with.as_deref(), Some("control"));
    assert_eq!(report[1].scenario, rebuy::experiment::report::CONTROL_ROW);
    assert_eq!(report[1].control as usize, control.len());
    store.close().await;
}

#[tokio::test]
async fn a_known_effect_is_measured_with_an_interval_that_contains_it() {
    // Half held out; treated customers order again within the goal window with probability
    // 0.24, held-out ones with 0.18: a true uplift of 6 points.
    let half = THANKS.replace("holdout: 25%", "holdout: 50%");
    let (shop, customers) =
        shop_with_first_orders(&[("thanks.yaml", half.as_str())], 3000, None).await;
    let store = shop.store().await;
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-11-02T04:00:00Z"))
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let orders: Vec<_> = customers
        .iter()
        .filter(|c| {
            let p = if arm("thanks", c, 0.5, 0.0, true) == Arm::Holdout {
                0.18
            } else {
                0.24
            };
            rng.random_bool(p)
        })
        .map(|c| order(&format!("A-{c}"), c, "2026-11-12T03:00:00Z", 4000))
        .collect();
    add_orders(&store, &orders).await;
    daemon
        .engine
        .tick(utc("2026-11-12T04:00:00Z"))
        .await
        .unwrap();
    let report = scenario_report(
        &store,
        &[],
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(7),
    )
    .await
    .unwrap();
    let u = report[0].uplift.expect("both arms have customers");
    assert!(u.absolute_low < 0.06 && 0.06 < u.absolute_high, "{u:?}");
    assert!((u.absolute - 0.06).abs() < 0.03, "{u:?}");
    assert!(
        (u.rate_holdout - 0.18).abs() < 0.03 && (u.rate_treatment - 0.24).abs() < 0.03,
        "{u:?}"
    );
    store.close().await;
}

const REMIND: &str = r#"
id: remind
trigger: first_order
holdout: 20%
goal: { event: order_placed, within: 3d }
steps:
  - id: nudge
    wait: 1d
    variants:
      - { id: a, weight: 50 }
      - { id: b, weight: 50, wait: 2d, template: t2, subject: "B {{ customer.id }}" }
    auto_winner: { min_sample: 30, confidence: 95% }
    send: { template: t, subject: "A {{ customer.id }}" }
"#;

#[tokio::test]
async fn variants_are_drawn_by_weight_recorded_sent_as_written_and_the_winner_takes_new_enrollments(
) {
    let smtp = SmtpServer::start();
    let shop = TestShop::new(
        &[("remind.yaml", REMIND)],
        &[
            ("t.html", "a"),
            ("t.txt", "a"),
            ("t2.html", "b"),
            ("t2.txt", "b"),
        ],
        Some(&smtp),
    );
    let store = shop.store().await;
    let first = ids(200);
    add_customers(
        &store,
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let orders: Vec<_> = first
        .iter()
        .map(|c| order(&format!("F-{c}"), c, "2026-11-02T03:00:00Z", 3000))
        .collect();
    add_orders(&store, &orders).await;
    let daemon = shop.daemon(&store).await;
    let mut now = utc("2026-11-02T04:00:00Z");
    while now <= utc("2026-11-05T22:00:00Z") {
        if now == utc("2026-11-04T10:00:00Z") {
            // Everyone sent variant b orders again, inside the 3-day goal window; nobody else.
            let b: Vec<_> = store
                .outbox_rows()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.status == "sent" && r.variant.as_deref() == Some("b"))
                .map(|r| {
                    order(
                        &format!("A-{}", r.customer_id),
                        &r.customer_id,
                        "2026-11-04T09:00:00Z",
                        4000,
                    )
                })
                .collect();
            add_orders(&store, &b).await;
        }
        daemon.engine.tick(now).await.unwrap();
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::hours(6);
    }

    // Recorded as drawn: the hash of scenario, step and customer with weights 50/50; variant
    // b waits 2 days instead of 1 and is rendered from its own template and subject.
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 200);
    for r in &rows {
        let drawn = ["a", "b"]
            [rebuy::experiment::variant("remind", "nudge", &r.customer_id, &[50.0, 50.0]).unwrap()];
        assert_eq!(r.variant.as_deref(), Some(drawn), "{}", r.customer_id);
        let due = if drawn == "a" {
            "2026-11-03T03:00:00Z"
        } else {
            "2026-11-04T03:00:00Z"
        };
        assert_eq!(r.due_at, utc(due).timestamp_millis(), "{}", r.customer_id);
    }
    let b_share = rows
        .iter()
        .filter(|r| r.variant.as_deref() == Some("b"))
        .count();
    assert!(
        (70..=130).contains(&b_share),
        "50% of 200 within 4 sd: {b_share}"
    );
    for m in smtp.received() {
        let m = m.parsed();
        let subject = m.subject().unwrap().to_string();
        let customer = subject.split_whitespace().nth(1).unwrap();
        let row = rows.iter().find(|r| r.customer_id == customer).unwrap();
        let expected = if row.variant.as_deref() == Some("a") {
            "A"
        } else {
            "B"
        };
        assert!(
            subject.starts_with(expected),
            "{subject} for variant {:?}",
            row.variant
        );
        assert!(
            m.body_text(0)
                .unwrap()
                .starts_with(&expected.to_lowercase()),
            "the variant's own template"
        );
    }

    // The windows closed on Nov 5 at 03:00: b converted every time, a never: b won.
    let decisions = store.variant_decisions().await.unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(
        (decisions[0].step_id.as_str(), decisions[0].winner.as_str()),
        ("nudge", "b")
    );
    assert_eq!(
        decisions[0].decided_at,
        utc("2026-11-05T04:00:00Z").timestamp_millis()
    );
    assert!(
        decisions[0].detail.starts_with("b won: a 0.0% of"),
        "{}",
        decisions[0].detail
    );

    // New enrollments from then on get the winner.
    let later = (200..260).map(|i| format!("C{i:04}")).collect::<Vec<_>>();
    add_customers(
        &store,
        &later.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let orders: Vec<_> = later
        .iter()
        .map(|c| order(&format!("F-{c}"), c, "2026-11-06T03:00:00Z", 3000))
        .collect();
    add_orders(&store, &orders).await;
    daemon
        .engine
        .tick(utc("2026-11-08T04:00:00Z"))
        .await
        .unwrap();
    let rows = store.outbox_rows().await.unwrap();
    let late: Vec<_> = rows
        .iter()
        .filter(|r| later.contains(&r.customer_id))
        .collect();
    assert_eq!(late.len(), 60);
    assert!(
        late.iter().all(|r| r.variant.as_deref() == Some("b")),
        "{late:?}"
    );

    // The report, per variant: every treated enrollment counted once, the winner marked.
    let scenarios = shop.app().check().scenarios;
    let report = scenario_report(
        &store,
        &scenarios,
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(7),
    )
    .await
    .unwrap();
    let r = &report[0];
    let per: BTreeMap<&str, i64> = r
        .variants
        .iter()
        .map(|v| (v.variant.as_str(), v.enrolled))
        .collect();
    assert_eq!(per.values().sum::<i64>(), r.treatment);
    assert!(r.variants.iter().any(|v| v.variant == "b" && v.winner));
    let a = r.variants.iter().find(|v| v.variant == "a").unwrap();
    assert_eq!((a.converted, a.rate), (0, 0.0));
    assert_eq!(r.decisions.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn the_report_counts_closed_goal_windows_by_default_and_says_how_many_are_still_open() {
    use rebuy::store::Period;
    // 40 first orders on 2 November (windows close on 2 December), 20 on 20 November (they
    // close on 20 December); 10 of the early customers order again on 25 November.
    let (shop, early) = shop_with_first_orders(&[("thanks.yaml", THANKS)], 40, None).await;
    let store = shop.store().await;
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-11-02T04:00:00Z"))
        .await
        .unwrap();
    let late: Vec<String> = (0..20).map(|i| format!("L{i:03}")).collect();
    add_customers(&store, &late.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut orders: Vec<_> = late
        .iter()
        .map(|c| order(&format!("F-{c}"), c, "2026-11-20T03:00:00Z", 3000))
        .collect();
    orders.extend(
        early
            .iter()
            .take(10)
            .map(|c| order(&format!("A-{c}"), c, "2026-11-25T03:00:00Z", 5000)),
    );
    add_orders(&store, &orders).await;
    daemon
        .engine
        .tick(utc("2026-11-25T04:00:00Z"))
        .await
        .unwrap();
    let report = |period: Period| {
        let store = &store;
        async move {
            let r = scenario_report(store, &[], period, None, Duration::days(7))
                .await
                .unwrap();
            assert_eq!(r.len(), 1, "{r:?}");
            r.into_iter().next().unwrap()
        }
    };
    let ms = |s: &str| utc(s).timestamp_millis();

    // By default only the closed windows: the early 40, 10 of whom converted; 20 still open.
    let closed = report(Period::closed(i64::MIN, ms("2026-12-05T00:00:00Z"))).await;
    assert_eq!((closed.enrolled, closed.still_open), (40, 20));
    assert_eq!(closed.converted_treatment + closed.converted_comparison, 10);
    let converted_revenue = closed.revenue_per_treated * closed.treatment as f64
        + closed.revenue_per_comparison.unwrap_or(0.0)
            * (closed.enrolled - closed.treatment) as f64;
    assert!(
        (converted_revenue - 10.0 * 5000.0).abs() < 1e-6,
        "{converted_revenue}"
    );

    // Everything: all 60, none left out.
    let all = report(Period::EVERYTHING).await;
    assert_eq!((all.enrolled, all.still_open), (60, 0));

    // As of 22 November with the open windows: all 60 enrolled by then, no conversion yet.
    let earlier = report(Period {
        since: i64::MIN,
        as_of: ms("2026-11-22T00:00:00Z"),
        include_open: true,
    })
    .await;
    assert_eq!(earlier.enrolled, 60);
    assert_eq!(
        earlier.converted_treatment + earlier.converted_comparison,
        0
    );

    // As of 22 November, closed windows only: nothing has closed, and the row says so.
    let none = report(Period::closed(i64::MIN, ms("2026-11-22T00:00:00Z"))).await;
    assert_eq!((none.enrolled, none.still_open), (0, 60));
    assert!(
        none.verdict
            .starts_with("Too early to tell: all 60 enrollments"),
        "{}",
        none.verdict
    );
    store.close().await;
}

#[tokio::test]
async fn a_holdout_that_drew_nobody_yet_is_said_so_not_asked_for() {
    // One first order, from a customer the 25% holdout does not draw.
    let who = (0..100)
        .map(|i| format!("C{i:04}"))
        .find(|c| arm("thanks", c, 0.25, 0.0, true) == Arm::Treatment)
        .unwrap();
    let shop = TestShop::new(&[("thanks.yaml", THANKS)], TEMPLATES, None);
    let store = shop.store().await;
    add_customers(&store, &[who.as_str()]).await;
    add_orders(&store, &[order("F-1", &who, "2026-11-02T03:00:00Z", 3000)]).await;
    let engine = shop.app().engine(&store).await.unwrap().unwrap();
    engine.tick(utc("2026-11-02T04:00:00Z")).await.unwrap();
    let report = scenario_report(
        &store,
        engine.scenarios(),
        rebuy::store::Period::EVERYTHING,
        None,
        Duration::days(7),
    )
    .await
    .unwrap();
    assert_eq!(report[0].held_out, 0);
    assert_eq!(
        report[0].judged.key(),
        "holdout_empty",
        "{}",
        report[0].verdict
    );
    assert!(
        report[0].verdict.contains("holds 25% out"),
        "{}",
        report[0].verdict
    );
    assert!(
        !report[0].verdict.contains("set `holdout"),
        "{}",
        report[0].verdict
    );
    store.close().await;
}
