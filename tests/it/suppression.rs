//! The suppression list, against the real SMTP server: checked again at send time, an
//! unsubscribe stops marketing but not transactional mail, a hard bounce stops everything.

use crate::helpers::*;
use rebuy::store::SuppressionKind;

const FIRST: &str = r#"
id: first
trigger: first_order
steps:
  - id: thanks
    send: { template: t, subject: "thanks" }
"#;

const COUPON: &str = r#"
id: coupon
trigger: manual
steps:
  - id: offer
    send: { template: t, subject: "your coupon" }
  - id: expiring
    wait: 5d
    send: { template: t, subject: "your coupon expires soon" }
"#;

const SUPPORT: &str = r#"
id: support
trigger: manual
transactional: true
steps:
  - id: note
    send: { template: t, subject: "about your order" }
"#;

fn shop(smtp: &SmtpServer) -> TestShop {
    TestShop::new(
        &[
            ("first.yaml", FIRST),
            ("support.yaml", SUPPORT),
            ("coupon.yaml", COUPON),
        ],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        Some(smtp),
    )
}

fn recipients(smtp: &SmtpServer) -> Vec<String> {
    smtp.received().iter().flat_map(|r| r.to.clone()).collect()
}

#[tokio::test]
async fn an_address_suppressed_after_its_message_was_queued_gets_nothing() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("C1", "Gone@Example.jp", "A", "Asia/Tokyo", "{}"),
                customer("C2", "stay@example.jp", "B", "Asia/Tokyo", "{}"),
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
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    let tick = daemon.engine.tick(now).await.unwrap();
    assert_eq!(tick.queued, 2);
    // Unsubscribed between queueing and sending (any case of the address).
    store
        .suppress(
            "gone@example.jp",
            SuppressionKind::Unsubscribe,
            "link",
            Some("C1"),
            0,
        )
        .await
        .unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.suppressed), (1, 1));
    assert_eq!(recipients(&smtp), ["stay@example.jp"]);
    let rows = store.outbox_rows().await.unwrap();
    let gone = rows.iter().find(|r| r.customer_id == "C1").unwrap();
    assert_eq!(gone.status, "suppressed");
    assert!(gone.last_error.as_deref().unwrap().contains("unsubscribe"));
}

#[tokio::test]
async fn an_unsubscribe_under_a_new_address_stops_mail_queued_for_the_old_one() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    let before = |email: &str| customer("K", email, "K", "Asia/Tokyo", "{}");
    store
        .upsert_customers(&[before("old@example.jp")], 0)
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "K", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon
        .engine
        .trigger_manual("support", "K", Default::default(), None, now)
        .await
        .unwrap();
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 2);
    // The shop changes the address; the customer unsubscribes with the link of the new one
    // (the unsubscribe page suppresses the customer's address now).
    store
        .upsert_customers(&[before("new@example.jp")], 0)
        .await
        .unwrap();
    store
        .suppress(
            "new@example.jp",
            SuppressionKind::Unsubscribe,
            "link",
            Some("K"),
            0,
        )
        .await
        .unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.suppressed), (1, 1), "{r:?}");
    // The thank-you (marketing) is stopped; the support note (transactional) still goes.
    let got: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m.parsed().subject().unwrap().to_string())
        .collect();
    assert_eq!(got, ["about your order"]);
    let rows = store.outbox_rows().await.unwrap();
    let thanks = rows.iter().find(|r| r.subject == "thanks").unwrap();
    assert_eq!(thanks.status, "suppressed");
    assert!(thanks
        .last_error
        .as_deref()
        .unwrap()
        .contains("unsubscribe"));
}

#[tokio::test]
async fn an_unsubscribe_follows_the_customer_to_the_address_they_give_next() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    let with = |email: &str| customer("L", email, "L", "Asia/Tokyo", "{}");
    store
        .upsert_customers(&[with("old@example.jp")], 0)
        .await
        .unwrap();
    // Unsubscribed with the link of the old address (recorded for the customer), then the shop
    // imports a new address.
    store
        .suppress(
            "old@example.jp",
            SuppressionKind::Unsubscribe,
            "unsubscribe link",
            Some("L"),
            0,
        )
        .await
        .unwrap();
    store
        .upsert_customers(&[with("new@example.jp")], 0)
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "L", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon
        .engine
        .trigger_manual("support", "L", Default::default(), None, now)
        .await
        .unwrap();
    let tick = daemon.engine.tick(now).await.unwrap();
    // The thank-you is not queued for the new address; the support note still is.
    assert_eq!((tick.queued, tick.suppressed), (1, 1), "{tick:?}");
    daemon.deliverer.run_once(now).await.unwrap();
    let got: Vec<(String, String)> = smtp
        .received()
        .iter()
        .map(|m| (m.to[0].clone(), m.parsed().subject().unwrap().to_string()))
        .collect();
    assert_eq!(got, [("new@example.jp".into(), "about your order".into())]);
    // Support sees it too: the customer page says what the send finds.
    let view = rebuy::customer_view::customer_view(&store, &[], chrono_tz::Asia::Tokyo, "L")
        .await
        .unwrap();
    assert_eq!(view["consent"]["suppressed"], "unsubscribe", "{view}");
}

#[tokio::test]
async fn an_unsubscribe_stops_marketing_but_not_transactional_mail_and_a_bounce_stops_both() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("U", "unsub@example.jp", "U", "Asia/Tokyo", "{}"),
                customer("B", "bounced@example.jp", "B", "Asia/Tokyo", "{}"),
            ],
            0,
        )
        .await
        .unwrap();
    store
        .suppress(
            "unsub@example.jp",
            SuppressionKind::Unsubscribe,
            "",
            Some("U"),
            0,
        )
        .await
        .unwrap();
    store
        .suppress(
            "bounced@example.jp",
            SuppressionKind::Bounce,
            "550",
            Some("B"),
            0,
        )
        .await
        .unwrap();
    add_orders(
        &store,
        &[
            order("O1", "U", "2026-11-01T01:00:00Z", 1000),
            order("O2", "B", "2026-11-01T01:00:00Z", 1000),
        ],
    )
    .await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    for c in ["U", "B"] {
        daemon
            .engine
            .trigger_manual("support", c, Default::default(), None, now)
            .await
            .unwrap();
    }
    let tick = daemon.engine.tick(now).await.unwrap();
    // Checked at enqueue: the two marketing messages and the bounced transactional one.
    assert_eq!((tick.queued, tick.suppressed), (1, 3), "{tick:?}");
    daemon.deliverer.run_once(now).await.unwrap();
    let got: Vec<(String, String)> = smtp
        .received()
        .iter()
        .map(|r| (r.to[0].clone(), r.parsed().subject().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        [("unsub@example.jp".into(), "about your order".into())]
    );
}

#[tokio::test]
async fn a_hard_bounce_puts_the_address_on_the_list_with_its_reason() {
    let smtp = SmtpServer::start();
    smtp.reject_recipient("nobody@");
    let shop = shop(&smtp);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer("N", "nobody@example.jp", "N", "Asia/Tokyo", "{}")],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "N", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!(r.failed, 1);
    let list = store.suppressions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].email.as_str(),
            list[0].kind.as_str(),
            list[0].customer_id.as_deref()
        ),
        ("nobody@example.jp", "bounce", Some("N"))
    );
    assert!(list[0].reason.contains("550"), "{}", list[0].reason);

    // Later mail, transactional too, is not even queued.
    daemon
        .engine
        .trigger_manual("support", "N", Default::default(), None, now)
        .await
        .unwrap();
    let tick = daemon.engine.tick(now).await.unwrap();
    assert_eq!((tick.queued, tick.suppressed), (0, 1));
    // An unsubscribe does not weaken a bounce.
    assert!(!store
        .suppress(
            "nobody@example.jp",
            SuppressionKind::Unsubscribe,
            "",
            None,
            0
        )
        .await
        .unwrap());
    assert_eq!(store.suppressions().await.unwrap()[0].kind, "bounce");
}

#[tokio::test]
async fn marketing_goes_only_to_customers_who_consented_and_a_withdrawal_stops_queued_mail() {
    let smtp = SmtpServer::start();
    let shop = shop(&smtp);
    let store = shop.store().await;
    let mut never = customer("N", "never@example.jp", "N", "Asia/Tokyo", "{}");
    never.marketing_consent = None;
    let mut refused = customer("R", "refused@example.jp", "R", "Asia/Tokyo", "{}");
    refused.marketing_consent = Some(false);
    let yes = customer("Y", "yes@example.jp", "Y", "Asia/Tokyo", "{}");
    let later = customer("L", "later@example.jp", "L", "Asia/Tokyo", "{}");
    store
        .upsert_customers(&[never, refused, yes, later.clone()], 0)
        .await
        .unwrap();
    let orders: Vec<_> = ["N", "R", "Y", "L"]
        .iter()
        .map(|c| order(&format!("O{c}"), c, "2026-11-01T01:00:00Z", 1000))
        .collect();
    add_orders(&store, &orders).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    for c in ["N", "R"] {
        daemon
            .engine
            .trigger_manual("support", c, Default::default(), None, now)
            .await
            .unwrap();
    }
    let tick = daemon.engine.tick(now).await.unwrap();
    // Marketing for Y and L; the two without consent skipped; their support notes queued.
    assert_eq!((tick.queued, tick.skipped), (4, 2), "{tick:?}");
    // L withdraws consent after the message was queued.
    let mut withdrawn = later;
    withdrawn.marketing_consent = Some(false);
    store.upsert_customers(&[withdrawn], 1).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.skipped), (3, 1), "{r:?}");
    let mut got: Vec<(String, String)> = smtp
        .received()
        .iter()
        .map(|m| (m.to[0].clone(), m.parsed().subject().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "never@example.jp".to_string(),
                "about your order".to_string()
            ),
            ("refused@example.jp".into(), "about your order".into()),
            ("yes@example.jp".into(), "thanks".into()),
        ]
    );
    let rows = store.outbox_rows().await.unwrap();
    let l = rows.iter().find(|r| r.customer_id == "L").unwrap();
    assert_eq!(l.status, "skipped");
    assert!(l
        .last_error
        .as_deref()
        .unwrap()
        .contains("no marketing consent"));
}

/// The shop with one customer, M, who consented.
async fn shop_with_m(smtp: &SmtpServer) -> (TestShop, rebuy::store::Store) {
    let shop = shop(smtp);
    let store = shop.store().await;
    store
        .upsert_customers(&[customer("M", "m@example.jp", "M", "Asia/Tokyo", "{}")], 0)
        .await
        .unwrap();
    (shop, store)
}

/// M unsubscribes by the link in a mail.
async fn unsubscribe_m(store: &rebuy::store::Store) {
    store
        .suppress(
            "m@example.jp",
            SuppressionKind::Unsubscribe,
            "unsubscribe link",
            Some("M"),
            0,
        )
        .await
        .unwrap();
}

/// The daemon, and the two-step coupon follow-up started for M at the returned time.
async fn coupon_started(
    shop: &TestShop,
    store: &rebuy::store::Store,
) -> (rebuy::daemon::Daemon, chrono::DateTime<chrono::Utc>) {
    let daemon = shop.daemon(store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon
        .engine
        .trigger_manual("coupon", "M", Default::default(), None, now)
        .await
        .unwrap();
    (daemon, now)
}

/// M's follow-up ended `completed` (goals still count), saying its offer could not be mailed.
async fn assert_ended_as_withheld(store: &rebuy::store::Store) {
    let e = &store.customer_enrollments("M").await.unwrap()[0];
    assert_eq!(e.state, "completed", "goals still count for it");
    assert!(
        e.end_reason
            .as_deref()
            .is_some_and(|r| r.contains("step 'offer' could not be mailed")),
        "{:?}",
        e.end_reason
    );
}

#[tokio::test]
async fn a_follow_up_whose_step_was_withheld_ends_instead_of_resuming_half_way() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_m(&smtp).await;
    unsubscribe_m(&store).await;
    let (daemon, now) = coupon_started(&shop, &store).await;
    let tick = daemon.engine.tick(now).await.unwrap();
    assert_eq!((tick.queued, tick.suppressed), (0, 1), "{tick:?}");
    // Support removes the suppression before the second step is due.
    store.unsuppress_person("m@example.jp", "M").await.unwrap();
    let later = now + chrono::Duration::days(6);
    let tick = daemon.engine.tick(later).await.unwrap();
    assert_eq!(
        tick.queued, 0,
        "the reminder of a coupon never sent: {tick:?}"
    );
    daemon.deliverer.run_once(later).await.unwrap();
    assert!(recipients(&smtp).is_empty());
    assert_ended_as_withheld(&store).await;
    // The withheld step keeps its row, with why it was not sent.
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "suppressed");
}

#[tokio::test]
async fn a_step_withheld_at_send_time_ends_its_follow_up_too() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_m(&smtp).await;
    let (daemon, now) = coupon_started(&shop, &store).await;
    let tick = daemon.engine.tick(now).await.unwrap();
    assert_eq!(tick.queued, 1, "{tick:?}");
    // Unsubscribed between queueing and sending: the offer is withheld by the sender.
    unsubscribe_m(&store).await;
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.suppressed), (0, 1));
    assert_ended_as_withheld(&store).await;
    // Support removes the suppression before the reminder is due: it does not go.
    store.unsuppress_person("m@example.jp", "M").await.unwrap();
    let later = now + chrono::Duration::days(6);
    let tick = daemon.engine.tick(later).await.unwrap();
    assert_eq!(
        tick.queued, 0,
        "the reminder of a coupon never sent: {tick:?}"
    );
    daemon.deliverer.run_once(later).await.unwrap();
    assert!(recipients(&smtp).is_empty());
    assert_eq!(store.outbox_rows().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_step_withheld_at_send_time_cancels_its_later_step_already_queued() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_m(&smtp).await;
    let (daemon, now) = coupon_started(&shop, &store).await;
    daemon.engine.tick(now).await.unwrap();
    // The offer is held back (the frequency cap, quiet hours, a relay down) past the
    // reminder's due time, so the reminder is queued before the offer goes.
    let later = now + chrono::Duration::days(6);
    let tick = daemon.engine.tick(later).await.unwrap();
    assert_eq!(tick.queued, 1, "{tick:?}");
    unsubscribe_m(&store).await;
    // The sender comes to the offer alone (the reminder is not due at its clock yet).
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.suppressed), (0, 1));
    // Support lifts the suppression: the reminder of a coupon never sent must not go.
    store.unsuppress_person("m@example.jp", "M").await.unwrap();
    daemon.deliverer.run_once(later).await.unwrap();
    assert!(recipients(&smtp).is_empty());
    let rows = store.outbox_rows().await.unwrap();
    let reminder = rows.iter().find(|r| r.step_id == "expiring").unwrap();
    assert_eq!(reminder.status, "cancelled");
    assert!(
        reminder
            .last_error
            .as_deref()
            .is_some_and(|r| r.contains("step 'offer' could not be mailed")),
        "{:?}",
        reminder.last_error
    );
}
