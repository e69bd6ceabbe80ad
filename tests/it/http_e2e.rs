//! The real binary as a service: `rebuy run` on port 0 with a real SQLite file and a real SMTP
//! server on loopback. An order posted by a signed Shopify webhook becomes a sent mail at once
//! (the tick interval is an hour: the webhook wakes it); a wrong token, a forged signature, an
//! oversized body and a malformed record are each refused with their status and store
//! nothing; SIGTERM stops it cleanly.

use crate::helpers::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "e2e-shopify-secret-0123456789";

fn rebuy(dir: &Path) -> Command {
    let mut c = crate::helpers::binary();
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env(
            "REBUY_UNSUBSCRIBE_SECRET",
            "e2e-unsubscribe-secret-0123456789",
        )
        .env("REBUY_SHOPIFY_SECRET", SECRET);
    c
}

fn token(dir: &Path, scope: &str) -> String {
    let o = rebuy(dir)
        .args(["token", "create", "--scope", scope, "--name", scope])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Starts `rebuy run` (or `serve`) and returns it with the address it listens on (from its
/// JSON log).
fn start(dir: &Path, command: &str) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = rebuy(dir)
        .args([command, "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "serving HTTP" {
            let addr = v["fields"]["addr"].as_str().unwrap().to_string();
            return (child, addr, rx);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("rebuy run did not start serving");
}

/// One HTTP/1.1 request; the status and the body as JSON.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A server that refuses early may close before the whole body is written.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_order_becomes_a_sent_mail_and_bad_requests_store_nothing() {
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("scenarios")).unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("scenarios/thanks.yaml"),
        "id: thanks\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: thanks\n    send: { template: thanks, subject: \"Thank you, {{ customer.name }}\" }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("templates/thanks.html"),
        "<p>{{ order.total | money }}</p>",
    )
    .unwrap();
    std::fs::write(d.join("templates/thanks.txt"), "{{ order.total | money }}").unwrap();
    std::fs::write(
        d.join("rebuy.yaml"),
        format!(
            "tick_interval: 1h\nunsubscribe: {{ base_url: https://hadamaru.example/unsubscribe }}\nhttp:\n  listen: 127.0.0.1:0\n  max_body_bytes: 65536\n\
             delivery:\n  transport: smtp\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none, timeout_secs: 5 }}\n",
            smtp.port
        ),
    )
    .unwrap();
    assert!(rebuy(d).arg("init").status().unwrap().success());
    let ingest = token(d, "ingest");
    let (mut child, addr, log) = start(d, "run");
    let bearer = format!("Bearer {ingest}");
    let auth = [("Authorization", bearer.as_str())];

    // Refusals, each storing nothing.
    let customer = br#"{"id": "c1", "email": "aya@example.jp", "name": "Aya"}"#;
    let (status, p) = request(
        &addr,
        "POST",
        "/v1/customers",
        &[("Authorization", "Bearer rbk_wrong")],
        customer,
    )
    .await;
    assert_eq!(status, 401, "{p}");
    let big = vec![b' '; 70_000];
    let (status, _) = request(&addr, "POST", "/v1/customers", &auth, &big).await;
    assert_eq!(status, 413);
    let (status, p) = request(
        &addr,
        "POST",
        "/v1/customers",
        &auth,
        br#"{"id": "c1", "email": "not an address"}"#,
    )
    .await;
    assert_eq!(
        (status, p["errors"][0]["at"].as_str()),
        (422, Some("/email")),
        "{p}"
    );
    let now = chrono::Utc::now().to_rfc3339();
    let fixture = include_str!("../fixtures/shopify/orders-create.json")
        .replace("2024-03-14T09:26:53+00:00", &now);
    let (status, _) = request(
        &addr,
        "POST",
        "/v1/webhooks/shopify/orders",
        &[
            (
                "X-Shopify-Hmac-Sha256",
                &rebuy::http::sign_shopify(b"not-the-secret", fixture.as_bytes()),
            ),
            ("X-Shopify-Topic", "orders/create"),
        ],
        fixture.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    let store = rebuy::store::Store::open_existing(&d.join("rebuy.db").display().to_string())
        .await
        .unwrap();
    assert!(store.all_customers().await.unwrap().is_empty());
    assert_eq!(store.count_orders().await.unwrap(), 0);

    // A signed webhook: stored, and mailed without waiting for the hourly tick.
    let signature = rebuy::http::sign_shopify(SECRET.as_bytes(), fixture.as_bytes());
    let (status, p) = request(
        &addr,
        "POST",
        "/v1/webhooks/shopify/orders",
        &[
            ("X-Shopify-Hmac-Sha256", &signature),
            ("X-Shopify-Topic", "orders/create"),
        ],
        fixture.as_bytes(),
    )
    .await;
    assert_eq!(
        (status, p["order"].as_str()),
        (200, Some("inserted")),
        "{p}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.received().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mail = smtp.received();
    assert_eq!(mail.len(), 1, "the order became one mail");
    assert_eq!(mail[0].to, ["ada.lovelace@example.org"]);
    assert!(mail[0].parsed().subject().unwrap().contains("Ada Lovelace"));
    assert!(
        mail[0].parsed().body_text(0).unwrap().contains("€63.40"),
        "{:?}",
        mail[0].parsed().body_text(0)
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(smtp.received().len(), 1, "sent once");
    store.close().await;

    // The cycles are logged as fields a log pipeline can sum, not as a Rust debug string.
    let lines: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let cycles: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "cycle")
        .collect();
    let sum = |k: &str| -> u64 { cycles.iter().filter_map(|c| c["fields"][k].as_u64()).sum() };
    assert_eq!((sum("enrolled"), sum("sent")), (1, 1), "{cycles:?}");
    assert!(!lines.iter().any(|l| l.to_string().contains("Report {")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuy_serve_answers_the_api_alone_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("scenarios")).unwrap();
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(d.join("rebuy.yaml"), "http:\n  listen: 127.0.0.1:0\n").unwrap();
    assert!(rebuy(d).arg("init").status().unwrap().success());
    let read = format!("Bearer {}", token(d, "read"));
    let (mut child, addr, _log) = start(d, "serve");
    assert_eq!(request(&addr, "GET", "/healthz", &[], b"").await.0, 200);
    let (status, body) =
        request(&addr, "GET", "/v1/status", &[("Authorization", &read)], b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["scenarios"].is_array(), "{body}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
