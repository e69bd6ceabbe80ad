//! End to end: scenario -> enrollment -> rendered mail -> a real SMTP server on loopback.

use crate::helpers::*;
use rebuy::delivery::Unsubscriber;

const FIRST: &str = r#"
id: first-purchase
name: 初回購入フォロー
trigger: first_order
steps:
  - id: thanks
    send: { template: thanks, subject: "{{ customer.name }}様、ご購入ありがとうございました" }
"#;

const SUPPORT: &str = r#"
id: support
trigger: manual
transactional: true
vars: [case_id]
steps:
  - id: apology
    send: { template: apology, subject: "{{ vars.case_id }}: our apologies" }
"#;

const THANKS_HTML: &str = "<p>{{ customer.name }}様</p><p>{{ customer.attributes.nickname | default(\"\") }}</p><p>合計 {{ order.total | money }}</p><a href=\"{{ unsubscribe_url }}\">配信停止</a>";
const THANKS_TXT: &str = "{{ customer.name }}様\n{{ customer.attributes.nickname | default(\"\") }}\n合計 {{ order.total | money }}\n{{ order.placed_at | date('%Y年%m月%d日') }}\n";

/// A shop with one customer `C1` at `email` who placed order `O1` at 01:00Z on Nov 1.
async fn one_order(shop: &TestShop, email: &str) -> (rebuy::store::Store, rebuy::daemon::Daemon) {
    let store = shop.store().await;
    store
        .upsert_customers(&[customer("C1", email, "A", "Asia/Tokyo", "{}")], 0)
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "C1", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    (store, daemon)
}

fn shop(smtp: &SmtpServer) -> TestShop {
    TestShop::new(
        &[("first.yaml", FIRST), ("support.yaml", SUPPORT)],
        &[
            ("thanks.html", THANKS_HTML),
            ("thanks.txt", THANKS_TXT),
            (
                "apology.html",
                "<p>Sorry, {{ customer.name }} ({{ vars.case_id }})</p>",
            ),
            (
                "apology.txt",
                "Sorry, {{ customer.name }} ({{ vars.case_id }})",
            ),
        ],
        Some(smtp),
    )
}

#[tokio::test]
async fn a_first_order_thank_you_arrives_as_multipart_with_a_japanese_subject_and_unsubscribe_headers(
) {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    let nickname = r#"{"nickname":"<script>alert(1)</script>"}"#;
    store
        .upsert_customers(
            &[customer(
                "C1",
                "hanako@example.jp",
                "山田 花子",
                "Asia/Tokyo",
                nickname,
            )],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "C1", "2026-11-01T01:00:00Z", 3980)]).await;
    let mut daemon = shop.daemon(&store).await;

    let report = daemon.run_once(utc("2026-11-01T02:00:00Z")).await.unwrap();
    assert_eq!(
        (
            report.tick.enrolled,
            report.tick.queued,
            report.delivery.sent
        ),
        (1, 1, 1)
    );

    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec!["hanako@example.jp".to_string()]);
    assert_eq!(got[0].from, "hello@hadamaru.example");
    let m = got[0].parsed();
    assert_eq!(
        m.subject(),
        Some("山田 花子様、ご購入ありがとうございました")
    );
    assert!(m
        .header_raw("Content-Type")
        .unwrap()
        .contains("multipart/alternative"));
    assert_eq!((m.text_body_count(), m.html_body_count()), (1, 1));
    let text = m.body_text(0).unwrap();
    let html = m.body_html(0).unwrap();
    assert!(
        text.contains("合計 ¥3,980") && text.contains("2026年11月01日"),
        "{text}"
    );
    assert!(
        text.contains("<script>alert(1)</script>"),
        "plain text is not escaped: {text}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;") && !html.contains("<script>"),
        "{html}"
    );

    let secret = store.setting("unsubscribe_secret").await.unwrap().unwrap();
    let signer = Unsubscriber::new("https://hadamaru.example/unsubscribe", secret.as_bytes());
    let expected = format!("<{}>", signer.url("C1"));
    assert_eq!(
        m.header_raw("List-Unsubscribe").map(str::trim),
        Some(expected.as_str())
    );
    assert_eq!(
        m.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );

    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(format!("<{}>", m.message_id().unwrap()), rows[0].message_id);
    assert_eq!(
        m.header_raw("Date")
            .map(|d| chrono::DateTime::parse_from_rfc2822(d.trim())
                .unwrap()
                .to_utc()),
        Some(utc("2026-11-01T02:00:00Z"))
    );
}

#[tokio::test]
async fn a_support_follow_up_started_twice_with_one_key_is_sent_once_without_unsubscribe_headers() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer(
                "C9",
                "ken@example.com",
                "Ken",
                "America/New_York",
                "{}",
            )],
            0,
        )
        .await
        .unwrap();
    let mut daemon = shop.daemon(&store).await;
    let now = utc("2026-11-10T12:00:00Z");
    let mut vars = serde_json::Map::new();
    vars.insert("case_id".into(), "CASE-42".into());
    let first = daemon
        .engine
        .trigger_manual(
            "support",
            "ken@example.com",
            vars.clone(),
            Some("CASE-42"),
            now,
        )
        .await
        .unwrap();
    let second = daemon
        .engine
        .trigger_manual("support", "C9", vars, Some("CASE-42"), now)
        .await
        .unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.enrollment_id, second.enrollment_id);

    daemon.run_once(now).await.unwrap();
    daemon.run_once(now).await.unwrap();
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    let m = got[0].parsed();
    assert_eq!(m.subject(), Some("CASE-42: our apologies"));
    assert!(
        m.header_raw("List-Unsubscribe").is_none(),
        "transactional mail has no unsubscribe header"
    );
}

#[tokio::test]
async fn a_permanent_rejection_fails_that_message_and_the_others_still_go() {
    let smtp = SmtpServer::start();
    smtp.reject_recipient("bounce@");
    let shop = shop(&smtp);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("C1", "bounce@example.jp", "A", "Asia/Tokyo", "{}"),
                customer("C2", "fine@example.jp", "B", "Asia/Tokyo", "{}"),
            ],
            0,
        )
        .await
        .unwrap();
    add_orders(
        &store,
        &[
            order("O1", "C1", "2026-11-01T01:00:00Z", 1000),
            order("O2", "C2", "2026-11-01T01:00:00Z", 1000),
        ],
    )
    .await;
    let mut daemon = shop.daemon(&store).await;
    let r = daemon.run_once(utc("2026-11-01T02:00:00Z")).await.unwrap();
    assert_eq!((r.delivery.sent, r.delivery.failed), (1, 1));
    let rows = store.outbox_rows().await.unwrap();
    let bounced = rows.iter().find(|r| r.customer_id == "C1").unwrap();
    assert_eq!(bounced.status, "failed");
    assert!(
        bounced.last_error.as_deref().unwrap().contains("550"),
        "{:?}",
        bounced.last_error
    );
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_server_that_is_down_gets_the_message_later_with_backoff() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let smtp = SmtpServer::start();
    let mut shop = shop(&smtp);
    shop.config.delivery.smtp.port = port; // nothing listens here yet
    let (store, mut daemon) = one_order(&shop, "a@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    let r = daemon.run_once(t0).await.unwrap();
    assert_eq!((r.delivery.sent, r.delivery.retried), (0, 1));
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 1));
    assert!(row.last_error.is_some());

    // Not retried before the backoff has passed, then sent once the server is back.
    let r = daemon
        .run_once(t0 + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(r.delivery.claimed, 0);
    let back = SmtpServer::start();
    shop.config.delivery.smtp.port = back.port;
    let mut daemon = shop.daemon(&store).await;
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(r.delivery.sent, 1);
    assert_eq!(back.received().len(), 1);
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 2));
}

#[tokio::test]
async fn a_451_reply_is_retried_with_backoff_and_sent_once_the_server_accepts() {
    let smtp = SmtpServer::start();
    smtp.defer_recipient("busy@");
    let shop = shop(&smtp);
    let (store, mut daemon) = one_order(&shop, "busy@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    let r = daemon.run_once(t0).await.unwrap();
    assert_eq!(
        (r.delivery.sent, r.delivery.retried, r.delivery.failed),
        (0, 1, 0)
    );
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 1));
    assert!(
        row.last_error.as_deref().unwrap().contains("451"),
        "{:?}",
        row.last_error
    );

    // Still deferred at the second attempt (after the 1-minute backoff), then accepted.
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(r.delivery.retried, 1);
    smtp.clear_rules();
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(r.delivery.sent, 1);
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 3));
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn transient_failures_give_up_after_the_configured_attempts() {
    let smtp = SmtpServer::start();
    smtp.defer_recipient("busy@");
    let mut shop = shop(&smtp);
    shop.config.delivery.max_attempts = 2;
    let (store, mut daemon) = one_order(&shop, "busy@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    daemon.run_once(t0).await.unwrap();
    let r = daemon
        .run_once(t0 + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(r.delivery.failed, 1);
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 2));
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 2 attempts"),
        "{:?}",
        row.last_error
    );
}

#[tokio::test]
async fn a_message_claimed_by_a_sender_that_died_before_sending_it_goes_back_to_the_queue() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let (store, mut daemon) = one_order(&shop, "a@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(t0).await.unwrap();
    // Claimed (and checked) while another batch was sending; the sender died before its turn.
    let ms = t0.timestamp_millis();
    let claimed = store
        .claim_ready("dead-worker", ms, ms + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Nobody else may start it while the claim is alive.
    assert!(store
        .start_sending("someone-else", ms, ms + 60_000, &[claimed[0].id])
        .await
        .unwrap()
        .is_empty());
    let r = daemon
        .run_once(t0 + chrono::Duration::seconds(30))
        .await
        .unwrap();
    if on_postgres() {
        // On PostgreSQL a sender is alive only while it holds its session lock, and this one
        // holds none: its claim goes back at once, and nothing can have gone out.
        assert_eq!((r.delivery.claimed, r.delivery.sent), (1, 1));
    } else {
        // On SQLite a sender that left no lock file cannot be told dead: its claim waits for
        // its lease. Once that has expired, it is sent, once, as a first attempt.
        assert_eq!((r.delivery.claimed, r.delivery.sent), (0, 0));
        let r = daemon
            .run_once(t0 + chrono::Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!((r.delivery.sent, r.delivery.unknown), (1, 0));
    }
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 1));
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_message_whose_sender_died_mid_send_becomes_unknown_and_is_not_sent_again() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let (store, mut daemon) = one_order(&shop, "a@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(t0).await.unwrap();
    // A deliverer claims the message, starts sending it and dies before recording the outcome.
    let ms = t0.timestamp_millis();
    let claimed = store
        .claim_ready("dead-worker", ms, ms + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let started = store
        .start_sending("dead-worker", ms, ms + 60_000, &[claimed[0].id])
        .await
        .unwrap();
    assert_eq!(started, [claimed[0].id]);

    let r = daemon
        .run_once(t0 + chrono::Duration::seconds(30))
        .await
        .unwrap();
    if on_postgres() {
        // A sender without its PostgreSQL session lock is dead: what it was sending is flagged
        // at once (its journal, if any, is not on this machine).
        assert_eq!((r.delivery.claimed, r.delivery.unknown), (0, 1));
    } else {
        // While the lease runs, nobody touches it; once it has expired, it is flagged.
        assert_eq!((r.delivery.claimed, r.delivery.unknown), (0, 0));
        let r = daemon
            .run_once(t0 + chrono::Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!((r.delivery.claimed, r.delivery.unknown), (0, 1));
    }
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!(row.status, "unknown");
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .contains("may or may not have been delivered"));
    daemon
        .run_once(t0 + chrono::Duration::hours(5))
        .await
        .unwrap();
    assert!(
        smtp.received().is_empty(),
        "an unknown message is never re-sent silently"
    );
    assert_eq!(
        store.scenario_status().await.unwrap()["first-purchase"].unknown,
        1
    );
}

#[tokio::test]
async fn messages_are_dkim_signed_when_a_key_is_configured_and_a_bad_key_is_named() {
    let smtp = SmtpServer::start();
    let mut shop = shop(&smtp);
    // An Ed25519 seed (32 bytes, base64), in a file as the config wants it.
    let key = shop.file("dkim.key");
    std::fs::write(&key, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    shop.config.delivery.dkim = Some(rebuy::config::DkimSettings {
        selector: "rebuy".into(),
        domain: "hadamaru.example".into(),
        key_file: key.clone(),
        algorithm: rebuy::config::DkimAlgorithm::Ed25519,
    });
    let (store, daemon) = one_order(&shop, "hanako@example.jp").await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    assert_eq!(daemon.deliverer.run_once(now).await.unwrap().sent, 1);
    let got = smtp.received();
    let m = got[0].parsed();
    let sig = m
        .header_raw("DKIM-Signature")
        .expect("a DKIM-Signature header");
    let sig: String = sig.split_whitespace().collect();
    for part in [
        "v=1",
        "a=ed25519-sha256",
        "d=hadamaru.example",
        "s=rebuy",
        "bh=",
        "b=",
    ] {
        assert!(sig.contains(part), "{part} in {sig}");
    }
    assert!(sig.to_ascii_lowercase().contains("message-id"), "{sig}");

    // A key that is not one is refused before anything is sent, naming the file.
    std::fs::write(&key, "not a key").unwrap();
    let err = shop
        .app()
        .deliverer(&store)
        .err()
        .expect("a bad key is refused");
    assert!(
        err.to_string().contains("dkim.key") && err.to_string().contains("not a valid"),
        "{err}"
    );
}

#[tokio::test]
async fn crlf_in_names_and_subjects_cannot_inject_headers_or_recipients() {
    let smtp = SmtpServer::start();
    let shop = TestShop::new(
        &[(
            "first.yaml",
            "id: first\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ customer.attributes.topic }}\" }\n",
        )],
        &[("t.html", "<p>{{ customer.name }}</p>"), ("t.txt", "{{ customer.name }}")],
        Some(&smtp),
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer(
                "C1",
                "hanako@example.jp",
                "Hanako\r\nBcc: thief@evil.example",
                "Asia/Tokyo",
                r#"{"topic":"Hello\r\nBcc: thief@evil.example\r\nX-Injected: yes"}"#,
            )],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "C1", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    assert_eq!(daemon.deliverer.run_once(now).await.unwrap().sent, 1);
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].to,
        ["hanako@example.jp"],
        "the envelope has one recipient"
    );
    let m = got[0].parsed();
    assert!(m.header_raw("Bcc").is_none());
    assert!(m.header_raw("X-Injected").is_none());
    let raw = String::from_utf8_lossy(&got[0].data);
    let headers = raw.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Injected:")),
        "{headers}"
    );
    assert!(m.subject().unwrap().contains("Hello"), "{:?}", m.subject());
}

/// A reminder still waiting for its retry when the customer orders again is not sent: the goal
/// cancels it (it was "time to order again", and they have).
#[tokio::test]
async fn a_queued_reminder_is_cancelled_when_the_customer_reaches_the_goal() {
    let smtp = SmtpServer::start();
    smtp.defer_recipient("busy@");
    let remind = r#"
id: remind
trigger: first_order
goal: { event: order_placed, within: 30d }
steps:
  - id: remind
    send: { template: thanks, subject: "そろそろ" }
"#;
    let shop = TestShop::new(
        &[("remind.yaml", remind)],
        &[("thanks.html", THANKS_HTML), ("thanks.txt", THANKS_TXT)],
        Some(&smtp),
    );
    let (store, mut daemon) = one_order(&shop, "busy@example.jp").await;
    let t0 = utc("2026-11-01T02:00:00Z");
    let r = daemon.run_once(t0).await.unwrap();
    assert_eq!((r.delivery.sent, r.delivery.retried), (0, 1));

    // They order again while the reminder waits for its retry; the server accepts again.
    add_orders(&store, &[order("O2", "C1", "2026-11-01T02:30:00Z", 2000)]).await;
    smtp.clear_rules();
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!((r.tick.goals_reached, r.delivery.sent), (1, 0));
    assert!(smtp.received().is_empty(), "the reminder went out");
    let row = &store.outbox_rows().await.unwrap()[0];
    assert_eq!(row.status, "cancelled");
    assert_eq!(
        row.last_error.as_deref(),
        Some(rebuy::store::GOAL_REACHED),
        "the message says why it was not sent"
    );
    // And it stays so.
    daemon
        .run_once(t0 + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(smtp.received().is_empty());
}

/// The goal lands while a sender holds the reminder, and that attempt is deferred (or the
/// sender gives it back unsent): the message goes back to the queue cancelled, not waiting for
/// a retry that would remind a customer who has ordered.
#[tokio::test]
async fn a_reminder_held_by_a_sender_when_the_goal_lands_is_cancelled_when_put_back() {
    let smtp = SmtpServer::start();
    let remind = "id: remind\ntrigger: first_order\ngoal: { event: order_placed, within: 30d }\nsteps:\n  - id: remind\n    send: { template: thanks, subject: \"そろそろ\" }\n";
    let shop = TestShop::new(
        &[("remind.yaml", remind)],
        &[("thanks.html", THANKS_HTML), ("thanks.txt", THANKS_TXT)],
        Some(&smtp),
    );
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    add_orders(
        &store,
        &[
            order("O1", "C1", "2026-11-01T01:00:00Z", 1000),
            order("O2", "C2", "2026-11-01T01:00:00Z", 1000),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    let t0 = now.timestamp_millis();
    daemon.engine.tick(now).await.unwrap();
    let claimed = store.claim_ready("w1", t0, t0 + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // Both customers order while the sender holds their reminders.
    let goals: Vec<rebuy::store::GoalHit> = claimed
        .iter()
        .map(|m| rebuy::store::GoalHit {
            enrollment_id: m.enrollment_id,
            order_id: format!("again-{}", m.customer_id),
            placed_at: t0,
            revenue: 2000,
        })
        .collect();
    store
        .apply_order_batch(&[], &goals, None, t0, true)
        .await
        .unwrap();
    // One attempt is deferred by the server; the other is given back unsent (a stalled round).
    let retry = rebuy::store::Recorded::retry(claimed[0].id, "451 try later".into(), t0 + 60_000);
    store.record_outcomes("w1", t0, &[retry]).await.unwrap();
    store.release_unsent("w1", t0, &[]).await.unwrap();
    for row in store.outbox_rows().await.unwrap() {
        assert_eq!(
            (row.status.as_str(), row.last_error.as_deref()),
            ("cancelled", Some(rebuy::store::GOAL_REACHED)),
            "{}",
            row.customer_id
        );
    }
    // And nothing is left to send.
    assert!(store
        .claim_ready("w1", t0 + 120_000, t0 + 180_000, 10)
        .await
        .unwrap()
        .is_empty());
}
