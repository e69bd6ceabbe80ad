//! The unsubscribe endpoint over real HTTP on loopback: the link in a real mail's
//! `List-Unsubscribe` header works with a one-click POST and no session, a forged or altered
//! token is refused, a GET never unsubscribes, and an unsubscribed address gets nothing
//! afterwards even though its message was already queued.

use crate::helpers::*;
use rebuy::clock::SystemClock;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEEKLY: &str = r#"
id: weekly
trigger: first_order
steps:
  - id: one
    send: { template: t, subject: "one" }
  - id: two
    wait: 1d
    send: { template: t, subject: "two" }
"#;

fn limits() -> rebuy::http::Limits {
    rebuy::http::Limits::from(&rebuy::config::HttpConfig::default())
}

/// One HTTP/1.1 request; returns the status code and the body.
async fn http(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The path and query of the `List-Unsubscribe` link in a received message.
fn link_of(m: &Received) -> String {
    let header = m
        .parsed()
        .header_raw("List-Unsubscribe")
        .unwrap()
        .trim()
        .to_string();
    let url = header.trim_start_matches('<').trim_end_matches('>');
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

#[tokio::test]
async fn one_click_from_a_real_mail_unsubscribes_and_forgeries_are_refused() {
    let smtp = SmtpServer::start();
    let shop = TestShop::new(
        &[("weekly.yaml", WEEKLY)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        Some(&smtp),
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("C1", "hanako@example.jp", "花子", "Asia/Tokyo", "{}"),
                customer("C2", "ken@example.com", "Ken", "Asia/Tokyo", "{}"),
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
    daemon.engine.tick(now).await.unwrap();
    daemon.deliverer.run_once(now).await.unwrap();
    let first = smtp.received();
    assert_eq!(first.len(), 2);

    let app = shop.app();
    let router = rebuy::http::unsubscribe::router(
        store.clone(),
        app.unsubscriber(&store).await.unwrap(),
        "はだまる",
        Arc::new(SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(rebuy::http::serve(listener, router, limits(), stop));

    let hanako = first
        .iter()
        .find(|m| m.to[0] == "hanako@example.jp")
        .unwrap();
    let link = link_of(hanako);
    assert!(link.starts_with("/unsubscribe?c=C1&t="), "{link}");
    let token = link.rsplit_once("t=").unwrap().1.to_string();

    // Forged, altered, missing: refused, nothing stored.
    let forged = "/unsubscribe?c=C1&t=0123456789abcdef0123456789abcdef";
    let altered = format!("/unsubscribe?c=C2&t={token}");
    // A parameter given twice (a link mangled by a mail client) gets the same page, never the
    // framework's words.
    let twice = format!("{link}&t={token}");
    for target in [
        forged,
        &altered,
        "/unsubscribe?c=C1",
        "/unsubscribe",
        &twice,
    ] {
        assert_eq!(http(port, "POST", target, "").await.0, 403, "{target}");
        let (status, page) = http(port, "GET", target, "").await;
        assert_eq!(status, 403, "{target}");
        assert!(page.contains("このリンクは無効です"), "{target}: {page}");
    }
    // A GET (what a link scanner does) only asks.
    let (status, page) = http(port, "GET", &link, "").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<form method=\"post\">") && page.contains("はだまる"),
        "{page}"
    );
    assert!(store.suppressions().await.unwrap().is_empty());

    // RFC 8058 one-click: a POST with that body, no cookie, no session.
    let (status, page) = http(port, "POST", &link, "List-Unsubscribe=One-Click").await;
    assert_eq!(status, 200, "{page}");
    let list = store.suppressions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].email.as_str(),
            list[0].kind.as_str(),
            list[0].customer_id.as_deref()
        ),
        ("hanako@example.jp", "unsubscribe", Some("C1"))
    );

    // Step two: Hanako's was queued like Ken's, only Ken's goes out.
    let later = now + chrono::Duration::days(1);
    let tick = daemon.engine.tick(later).await.unwrap();
    assert_eq!(tick.queued + tick.suppressed, 2);
    daemon.deliverer.run_once(later).await.unwrap();
    let got: Vec<String> = smtp.received()[2..]
        .iter()
        .map(|m| m.to[0].clone())
        .collect();
    assert_eq!(got, ["ken@example.com"]);
}

#[tokio::test]
async fn idle_connections_are_dropped_and_cannot_starve_the_server_which_stops_gracefully() {
    let shop = TestShop::new(
        &[("weekly.yaml", WEEKLY)],
        &[("t.html", "<p>x</p>"), ("t.txt", "x")],
        None,
    );
    let store = shop.store().await;
    let router = rebuy::http::unsubscribe::router(
        store.clone(),
        shop.app().unsubscriber(&store).await.unwrap(),
        "shop",
        Arc::new(SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = rebuy::http::Limits {
        max_connections: 4,
        header_timeout: std::time::Duration::from_secs(1),
        ..limits()
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(rebuy::http::serve(listener, router, limits, stop));
    // Many clients that connect and send nothing (or half a request line).
    let mut idle = Vec::new();
    for i in 0..12 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if i % 2 == 0 {
            c.write_all(b"GET /unsub").await.unwrap();
        }
        idle.push(c);
    }
    // A real request still gets its answer: idle ones are dropped after the header timeout.
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        http(port, "GET", "/unsubscribe?c=x&t=y", ""),
    )
    .await
    .expect("served despite 12 idle connections");
    assert_eq!(answered.0, 403);
    let mut first = idle.remove(0);
    let mut buf = Vec::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        first.read_to_end(&mut buf),
    )
    .await
    .expect("the server closed the idle connection");
    assert!(n.is_ok());
    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stops on the signal")
        .unwrap();
}
