//! Delivery rounds that must end: thousands of small rounds in a row, and a round stuck in
//! its transport, which the watchdog abandons without losing or doubling a message.

use crate::helpers::*;
use chrono::Duration;
use std::time::Duration as Wait;

const NOW: &str = r#"
id: thanks
trigger: first_order
steps:
  - id: thanks
    send: { template: t, subject: "ありがとうございました" }
"#;

fn shop() -> TestShop {
    TestShop::new(
        &[("thanks.yaml", NOW)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        None,
    )
}

/// The delivery cycle once hung for good about once in a hundred runs (every thread idle,
/// some hand-off never woken). A few thousand small rounds in a row, each with several claims,
/// marks and records, must each end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_small_rounds_each_end() {
    let mut shop = shop();
    shop.config.delivery.batch_size = 2;
    let store = shop.store().await;
    let ids: Vec<String> = (0..3000).map(|i| format!("C{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    add_customers(&store, &refs).await;
    // Three first orders a minute for a thousand minutes.
    let t0 = utc("2026-11-01T00:00:00Z");
    let orders: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = (t0 + Duration::seconds(i as i64 * 20)).to_rfc3339();
            order(&format!("O{i}"), c, &at, 1000)
        })
        .collect();
    add_orders(&store, &orders).await;
    let mut daemon = shop.daemon(&store).await;
    for minute in 1..=1000 {
        let now = t0 + Duration::minutes(minute);
        let cycle = tokio::time::timeout(Wait::from_secs(30), daemon.run_once(now)).await;
        let report = cycle
            .unwrap_or_else(|_| panic!("round {minute} did not end in 30 s"))
            .unwrap();
        assert_eq!(report.delivery.sent, report.tick.queued, "round {minute}");
    }
    let sent = std::fs::read_dir(shop.file("outbox")).unwrap().count();
    assert_eq!(sent, 3000);
}

/// A transport that never answers (here a FIFO nobody reads, as a hung network mount would
/// behave): the watchdog abandons the round, says so in the status, puts the messages that
/// never reached the transport back in the queue and leaves the one handed over in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_round_is_abandoned_reported_and_loses_or_doubles_nothing() {
    let shop = shop();
    let store = shop.store().await;
    add_customers(&store, &["a", "b", "c"]).await;
    add_orders(
        &store,
        &[
            order("O1", "a", "2026-11-01T00:00:00Z", 1000),
            order("O2", "b", "2026-11-01T00:00:01Z", 1000),
            order("O3", "c", "2026-11-01T00:00:02Z", 1000),
        ],
    )
    .await;
    let mut daemon = shop.daemon(&store).await;
    daemon.deliverer = shop
        .app()
        .deliverer(&store)
        .unwrap()
        .with_stall_limit(Wait::from_millis(500));
    let now = utc("2026-11-01T01:00:00Z");
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 3);
    let first = store.outbox_rows().await.unwrap()[0].id;
    let outbox = shop.file("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let fifo = outbox.join(format!(".{first}.eml.tmp"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());

    let err = tokio::time::timeout(Wait::from_secs(20), daemon.deliverer.run_once(now))
        .await
        .expect("the watchdog ends the round")
        .unwrap_err();
    assert!(err.to_string().contains("no progress"), "{err}");
    let rows = store.outbox_rows().await.unwrap();
    let states: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r.status.as_str(), r.attempts))
        .collect();
    assert_eq!(states, [("sending", 1), ("queued", 0), ("queued", 0)]);
    let flow = store.flow_status().await.unwrap();
    assert!(flow.stalled.unwrap().said.contains("made no progress"));

    // The transport comes back: the stuck write completes (the message did go out).
    let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap());
    assert!(!reader.join().unwrap().is_empty());
    // The next round sends the two returned messages; the one in doubt is flagged once its
    // lease has run out, never sent again.
    let later = now + Duration::minutes(20);
    let r = daemon.deliverer.run_once(later).await.unwrap();
    assert_eq!((r.sent, r.unknown), (2, 1));
    let rows = store.outbox_rows().await.unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(states, ["unknown", "sent", "sent"]);
}
