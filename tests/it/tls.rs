//! TLS and AUTH against a real SMTP server (mailin-embedded with a self-signed certificate):
//! STARTTLS with a trusted private CA and AUTH PLAIN delivers; an untrusted certificate or a
//! wrong password sends nothing and keeps the message queued for a retry; TLS from the first
//! byte (port 465 style) delivers through a TLS front.

use crate::helpers::*;
use rebuy::config::TlsMode;
use rebuy::delivery::DeliveryReport;
use rebuy::store::Store;

const ONE_STEP: &str = r#"
id: thanks
trigger: first_order
steps:
  - id: thanks
    wait: 1h
    send: { template: t, subject: "ありがとうございました" }
"#;

/// A shop sending to `server` on `localhost` with STARTTLS as `shop`, password `password`.
fn shop(server: &SmtpServer, password: &str, trust: Option<&std::path::Path>) -> TestShop {
    let mut shop = TestShop::new(
        &[("thanks.yaml", ONE_STEP)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        Some(server),
    );
    let password_file = shop.file("smtp-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let smtp = &mut shop.config.delivery.smtp;
    smtp.host = "localhost".into();
    smtp.tls = TlsMode::Starttls;
    smtp.username = Some("shop".into());
    smtp.password_env = "REBUY_TEST_UNSET_PASSWORD".into();
    smtp.password_file = Some(password_file);
    smtp.ca_file = trust.map(|p| p.to_path_buf());
    shop
}

/// Two customers with a first order, one tick and one delivery round: what the round did.
async fn deliver_to_two_customers(shop: &TestShop) -> (Store, DeliveryReport) {
    let store = shop.store().await;
    two_customers(&store).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    (store, r)
}

async fn two_customers(store: &Store) {
    let list = [
        customer("c1", "aoi@example.jp", "青井", "Asia/Tokyo", "{}"),
        customer("c2", "ren@example.jp", "蓮", "Asia/Tokyo", "{}"),
    ];
    store.upsert_customers(&list, 0).await.unwrap();
    add_orders(
        store,
        &[
            order("O1", "c1", "2026-11-01T01:00:00Z", 1000),
            order("O2", "c2", "2026-11-01T01:00:00Z", 1000),
        ],
    )
    .await;
}

#[tokio::test]
async fn starttls_with_a_trusted_private_ca_and_auth_delivers_every_message() {
    let certs = tempfile::tempdir().unwrap();
    let server = SmtpServer::start_secure(certs.path(), "shop", "s3cret");
    let shop = shop(&server, "s3cret", Some(&certs.path().join("cert.pem")));
    let (_, r) = deliver_to_two_customers(&shop).await;
    assert_eq!((r.sent, r.retried, r.failed), (2, 0, 0));
    let received = server.received();
    assert_eq!(received.len(), 2);
    // The server allows AUTH only over TLS: an authenticated session is an encrypted one.
    assert!(received.iter().all(|m| m.user.as_deref() == Some("shop")));
}

#[tokio::test]
async fn a_certificate_nobody_vouches_for_is_refused_and_nothing_goes_out() {
    let certs = tempfile::tempdir().unwrap();
    let server = SmtpServer::start_secure(certs.path(), "shop", "s3cret");
    let shop = shop(&server, "s3cret", None);
    let (store, r) = deliver_to_two_customers(&shop).await;
    assert_eq!((r.sent, r.retried), (0, 2));
    assert!(server.received().is_empty());
    for row in store.outbox_rows().await.unwrap() {
        assert_eq!(row.status, "queued");
        let error = row.last_error.unwrap();
        assert!(error.contains("TLS handshake"), "{error}");
        assert!(error.to_lowercase().contains("certificate"), "{error}");
    }
}

#[tokio::test]
async fn a_wrong_password_keeps_the_mail_queued_with_the_servers_answer() {
    let certs = tempfile::tempdir().unwrap();
    let server = SmtpServer::start_secure(certs.path(), "shop", "s3cret");
    let shop = shop(&server, "wrong", Some(&certs.path().join("cert.pem")));
    let (store, r) = deliver_to_two_customers(&shop).await;
    assert_eq!((r.sent, r.retried, r.failed), (0, 2, 0));
    assert!(server.received().is_empty());
    for row in store.outbox_rows().await.unwrap() {
        assert_eq!(row.status, "queued");
        let error = row.last_error.unwrap();
        assert!(
            error.contains("refused the session") && error.contains("535"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn tls_from_the_first_byte_delivers_through_a_tls_front() {
    let certs = tempfile::tempdir().unwrap();
    let (server, tls_port) = SmtpServer::start_behind_tls(certs.path()).await;
    let mut shop = shop(&server, "unused", Some(&certs.path().join("cert.pem")));
    let smtp = &mut shop.config.delivery.smtp;
    smtp.port = tls_port;
    smtp.tls = TlsMode::Tls;
    smtp.username = None;
    let (_, r) = deliver_to_two_customers(&shop).await;
    assert_eq!((r.sent, r.retried, r.failed), (2, 0, 0), "{r:?}");
    assert_eq!(server.received().len(), 2);
}
