//! Marketing limits at send time, with the injected clock and the real SMTP server: quiet
//! hours hold in each customer's zone, the frequency cap holds across scenarios (waiting or
//! skipping as each scenario says), and transactional mail ignores both.

use crate::helpers::*;
use chrono::{DateTime, Duration, Timelike, Utc};
use rebuy::config::{CapConfig, QuietHoursConfig};

const WELCOME: &str = r#"
id: welcome
trigger: first_order
steps:
  - { id: a1, send: { template: t, subject: "M welcome 1" } }
  - { id: a2, wait: 1h, expires: 14d, send: { template: t, subject: "M welcome 2" } }
"#;

const EVERY: &str = r#"
id: every
trigger: order_placed
reentry: always
when_capped: skip
steps:
  - { id: b1, send: { template: t, subject: "M every" } }
"#;

const SUPPORT: &str = r#"
id: support
trigger: manual
transactional: true
steps:
  - { id: s1, send: { template: t, subject: "T support" } }
"#;

fn date_of(m: &Received) -> DateTime<Utc> {
    DateTime::parse_from_rfc2822(m.parsed().header_raw("Date").unwrap().trim())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn quiet_hours_and_the_frequency_cap_hold_across_scenarios_and_zones() {
    let smtp = SmtpServer::start();
    let mut shop = TestShop::new(
        &[
            ("welcome.yaml", WELCOME),
            ("every.yaml", EVERY),
            ("support.yaml", SUPPORT),
        ],
        &[
            ("t.html", "<p>{{ step.id }}</p>"),
            ("t.txt", "{{ step.id }}"),
        ],
        Some(&smtp),
    );
    shop.config.marketing.cap = Some(CapConfig {
        max: 2,
        per: spanned("7d"),
    });
    shop.config.marketing.quiet_hours = Some(QuietHoursConfig {
        from: spanned("21:00"),
        to: spanned("08:00"),
    });
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("TK", "tk@example.jp", "T", "Asia/Tokyo", "{}"),
                customer("NY", "ny@example.com", "N", "America/New_York", "{}"),
            ],
            0,
        )
        .await
        .unwrap();
    let daemon = shop.daemon(&store).await;
    // 03:00Z on Nov 2 is noon in Tokyo and 22:00 on Nov 1 in New York (quiet there).
    let start = utc("2026-11-02T03:00:00Z");
    add_orders(
        &store,
        &[
            order("O1", "TK", "2026-11-02T03:00:00Z", 1000),
            order("O2", "NY", "2026-11-02T03:00:00Z", 1000),
        ],
    )
    .await;
    let mut now = start;
    for hour in 0..(10 * 24) {
        if hour == 1 {
            daemon
                .engine
                .trigger_manual("support", "TK", Default::default(), None, now)
                .await
                .unwrap();
        }
        if hour == 2 {
            add_orders(&store, &[order("O3", "TK", "2026-11-02T05:00:00Z", 1000)]).await;
        }
        daemon.engine.tick(now).await.unwrap();
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::hours(1);
    }

    let got = smtp.received();
    let of = |to: &str| -> Vec<(String, DateTime<Utc>)> {
        got.iter()
            .filter(|m| m.to[0] == to)
            .map(|m| (m.parsed().subject().unwrap().to_string(), date_of(m)))
            .collect()
    };
    let mut tk = of("tk@example.jp");
    tk.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let ny = of("ny@example.com");
    let zone = |to: &str| match to {
        "tk@example.jp" => chrono_tz::Asia::Tokyo,
        _ => chrono_tz::America::New_York,
    };
    for (to, list) in [("tk@example.jp", &tk), ("ny@example.com", &ny)] {
        for (subject, at) in list.iter().filter(|(s, _)| s.starts_with('M')) {
            let h = at.with_timezone(&zone(to)).hour();
            assert!(
                (8..21).contains(&h),
                "{to}: '{subject}' at {h}:00 local, in quiet hours"
            );
        }
        // Never more than 2 marketing messages in any 7-day window.
        let marketing: Vec<DateTime<Utc>> = list
            .iter()
            .filter(|(s, _)| s.starts_with('M'))
            .map(|(_, at)| *at)
            .collect();
        for a in &marketing {
            let window = marketing
                .iter()
                .filter(|b| **b >= *a && **b < *a + Duration::days(7))
                .count();
            assert!(
                window <= 2,
                "{to}: {window} marketing mails within 7 days of {a}"
            );
        }
    }
    // Tokyo: welcome 1 and every (first order) at noon; the support note at once despite the
    // cap; the second order's `every` skipped (when_capped: skip); welcome 2 waited a week.
    let subjects: Vec<&str> = tk.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        ["M every", "M welcome 1", "T support", "M welcome 2"],
        "{tk:?}"
    );
    assert_eq!(tk[2].1, start + Duration::hours(1));
    assert!(tk[3].1 >= start + Duration::days(7), "{:?}", tk[3]);
    let rows = store.outbox_rows().await.unwrap();
    // A message deferred by quiet hours and then sent keeps no error: "sent" and "quiet hours"
    // side by side would read as a failure.
    for r in rows.iter().filter(|r| r.status == "sent") {
        assert_eq!(r.last_error, None, "{r:?}");
    }
    let skipped = rows
        .iter()
        .find(|r| r.customer_id == "TK" && r.status == "skipped")
        .expect("the capped `every` message is skipped");
    assert!(skipped
        .last_error
        .as_deref()
        .unwrap()
        .contains("frequency cap"));
    // New York: nothing during its night; the first two at 08:00 local (13:00Z), the third
    // when the cap frees a slot a week later.
    let mut ny = ny;
    ny.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let ny_rows: Vec<_> = rows.iter().filter(|r| r.customer_id == "NY").collect();
    assert_eq!(ny.len(), 3, "{ny:?}\n{ny_rows:#?}");
    assert_eq!(ny[0].1, utc("2026-11-02T13:00:00Z"));
    assert_eq!(ny[1].1, utc("2026-11-02T13:00:00Z"));
    assert!(ny[2].1 >= ny[0].1 + Duration::days(7), "{ny:?}");
}

#[tokio::test]
async fn the_cap_holds_when_batches_are_checked_before_the_last_ones_outcomes_are_written() {
    // Five marketing scenarios for one customer, one message per claimed batch: the next
    // batch is claimed and checked while the one before is still being sent and recorded.
    let smtp = SmtpServer::start();
    let shop = five_scenarios_capped(&smtp, 1);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer("TK", "tk@example.jp", "T", "Asia/Tokyo", "{}")],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "TK", "2026-11-02T03:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-02T03:00:00Z");
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 5);
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.claimed, r.sent), (5, 2), "{r:?}");
    assert_eq!(smtp.received().len(), 2);
    let waiting = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "queued")
        .count();
    assert_eq!(waiting, 3);
}
