//! The targets digest: a cron job mails the LTV targets' figures, with a PNG chart shown
//! inline, to the team through a real SMTP server on loopback; one mail per address per run,
//! each recorded in `team_mail`; the run repeated after a restart sends nothing again; an
//! address the server refuses is recorded `failed` while the others get theirs.

use crate::helpers::*;
use mail_parser::MimeHeaders;
use rebuy::config::{DigestConfig, JobConfig};

const TARGETS: &str = "targets:\n  - id: aov-up\n    name: AOV +10%\n    metric: aov\n    baseline: { from: 2026-01-01, to: 2026-06-30 }\n    goal: +10%\n    deadline: 2027-06-30\n";

/// Monday 09:00 in Tokyo, in `lang`, to `to`.
fn digest_job(to: &[&str]) -> rebuy::daemon::Job {
    let yaml = format!(
        "name: weekly-digest\ncron: \"0 9 * * 1\"\nrefresh_metrics: false\ndigest:\n  lang: en\n  to: [{}]\n",
        to.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
    );
    let config: JobConfig = serde_saphyr::from_str(&yaml).unwrap();
    assert!(config
        .digest
        .as_ref()
        .is_some_and(|d: &DigestConfig| d.to.len() == to.len()));
    let schedule = rebuy::config::parse_cron("0 9 * * 1").unwrap();
    rebuy::daemon::Job::new(config, schedule, chrono_tz::Asia::Tokyo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_digest_reaches_each_address_once_with_its_figures_and_chart() {
    let smtp = SmtpServer::start();
    smtp.reject_recipient("bounce");
    let mut shop = TestShop::new(&[("targets.yaml", TARGETS)], &[], Some(&smtp));
    shop.config.default_timezone = None;
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    // Baseline (January to June): ¥3,000 and ¥5,000, ¥4,000 an order; goal ¥4,400; now
    // (the 181 days to today): ¥4,200, half way.
    add_orders(
        &store,
        &[
            order("O1", "C1", "2026-02-01T03:00:00Z", 3000),
            order("O2", "C2", "2026-03-01T03:00:00Z", 5000),
            order("O3", "C1", "2026-11-10T03:00:00Z", 4200),
        ],
    )
    .await;
    let team = [
        "team@shop.example",
        "Aki <aki@shop.example>",
        "bounce@shop.example",
    ];
    let mut daemon = shop.daemon(&store).await;
    assert_eq!(daemon.engine.targets().len(), 1, "the targets file is read");
    daemon.jobs.push(digest_job(&team));
    // The first cycle schedules: Monday 7 December, 09:00 in Tokyo.
    daemon.run_once(utc("2026-12-06T12:00:00Z")).await.unwrap();
    assert!(smtp.received().is_empty());
    daemon.run_once(utc("2026-12-07T00:00:00Z")).await.unwrap();

    let got = smtp.received();
    assert_eq!(got.len(), 2, "two addresses accepted, one refused");
    let mut to: Vec<_> = got.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["aki@shop.example", "team@shop.example"]);
    for mail in &got {
        let m = mail.parsed();
        assert_eq!(
            m.subject(),
            Some("はだまる Skincare: LTV targets, 2026-12-07")
        );
        let html = m.body_html(0).unwrap();
        let text = m.body_text(0).unwrap();
        for part in [&html, &text] {
            for figure in ["¥4,000", "¥4,400", "¥4,200", "50%", "AOV +10%"] {
                assert!(part.contains(figure), "{figure} in {part}");
            }
        }
        assert!(html.contains("src=\"cid:targets-chart\""), "{html}");
        let chart = m
            .attachments()
            .find(|a| a.is_content_type("image", "png"))
            .expect("a PNG part");
        assert_eq!(chart.content_id(), Some("targets-chart"));
        let png = chart.contents();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 500, "a drawn chart, not an empty image");
    }
    let rows = store.team_mail(10).await.unwrap();
    let mut states: Vec<_> = rows
        .iter()
        .map(|r| (r.recipient.as_str(), r.state.as_str()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("Aki <aki@shop.example>", "sent"),
            ("bounce@shop.example", "failed"),
            ("team@shop.example", "sent")
        ]
    );
    let failed = rows.iter().find(|r| r.state == "failed").unwrap();
    assert!(
        failed.error.as_deref().unwrap_or_default().contains("550"),
        "{failed:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r.slot == utc("2026-12-07T00:00:00Z").timestamp_millis()));

    // A restart just before 09:00 and the same run again: nothing is sent twice.
    drop(daemon);
    let mut again = shop.daemon(&store).await;
    again.jobs.push(digest_job(&team));
    again.run_once(utc("2026-12-06T23:59:00Z")).await.unwrap();
    again.run_once(utc("2026-12-07T00:00:30Z")).await.unwrap();
    assert_eq!(smtp.received().len(), 2);
    assert_eq!(store.team_mail(10).await.unwrap().len(), 3);

    // The next week's run is a new one.
    again.run_once(utc("2026-12-14T00:00:00Z")).await.unwrap();
    assert_eq!(smtp.received().len(), 4);
    store.close().await;
}
