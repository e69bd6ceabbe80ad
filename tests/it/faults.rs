//! SMTP faults, against the fault-injecting server: every fault ends in the right state after
//! the right number of attempts, the server accepts each message at most once, and delivery
//! keeps going through a server that is down at start or cannot do TLS.

use crate::fault_server::{Fault, FaultServer, Stage};
use crate::helpers::*;
use chrono::Duration;
use rebuy::config::{TlsMode, TransportKind};
use rebuy::store::{OutboxRow, Store};
use std::collections::HashMap;
use std::time::Duration as Wait;

// Delivery rounds here come a day apart, so the lateness limit is set well beyond them.
const ONE_STEP: &str = r#"
id: thanks
trigger: first_order
expires: 30d
steps:
  - id: thanks
    wait: 1h
    send: { template: t, subject: "ありがとうございました" }
"#;

fn shop(port: u16, tls: TlsMode) -> TestShop {
    let mut shop = TestShop::new(
        &[("thanks.yaml", ONE_STEP)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        None,
    );
    let d = &mut shop.config.delivery;
    d.transport = TransportKind::Smtp;
    d.smtp.host = "127.0.0.1".into();
    d.smtp.port = port;
    d.smtp.tls = tls;
    d.smtp.pool_size = 3;
    d.smtp.timeout_secs = 1;
    d.max_attempts = 3;
    shop
}

/// Customers `local@example.jp`, each with a first order at 01:00Z on Nov 1.
async fn customers(store: &Store, locals: &[&str]) {
    let list: Vec<_> = locals
        .iter()
        .map(|l| customer(l, &format!("{l}@example.jp"), l, "Asia/Tokyo", "{}"))
        .collect();
    store.upsert_customers(&list, 0).await.unwrap();
    let orders: Vec<_> = locals
        .iter()
        .map(|l| order(&format!("O-{l}"), l, "2026-11-01T01:00:00Z", 1000))
        .collect();
    add_orders(store, &orders).await;
}

async fn by_recipient(store: &Store) -> HashMap<String, OutboxRow> {
    store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.to_email.split('@').next().unwrap().to_string(), r))
        .collect()
}

#[tokio::test]
async fn each_fault_ends_in_its_state_after_the_right_attempts_and_nothing_arrives_twice() {
    let server = FaultServer::start().await;
    fault_matrix(&server).await;
    assert_eq!(server.grouped(), 0, "no PIPELINING offered, none used");
}

#[tokio::test]
async fn each_fault_ends_the_same_way_when_the_server_pipelines() {
    let server = FaultServer::pipelining().await;
    fault_matrix(&server).await;
    assert!(
        server.grouped() >= 13,
        "MAIL, RCPT and DATA go in one write"
    );
}

async fn fault_matrix(server: &FaultServer) {
    let t = |s, c| Fault::Reply(s, c);
    let script: &[(&str, Vec<Fault>)] = &[
        ("t451", vec![t(Stage::Rcpt, 451), t(Stage::Rcpt, 451)]),
        ("t421", vec![t(Stage::Rcpt, 421)]),
        ("t450", vec![t(Stage::Data, 450)]),
        ("t452", vec![t(Stage::EndOfData, 452)]),
        ("p550", vec![t(Stage::Rcpt, 550)]),
        ("p553", vec![t(Stage::Rcpt, 553)]),
        // A bad sequence of commands is the session's problem, not the address's.
        ("s503", vec![t(Stage::Rcpt, 503)]),
        ("dropdata", vec![Fault::Drop(Stage::Data)]),
        ("droprcpt", vec![Fault::Drop(Stage::Rcpt)]),
        ("lost", vec![Fault::Drop(Stage::EndOfData)]),
        (
            "slowend",
            vec![Fault::Delay(Stage::EndOfData, Wait::from_secs(3))],
        ),
        (
            "slowrcpt",
            vec![Fault::Delay(Stage::Rcpt, Wait::from_secs(3))],
        ),
        ("gaveup", vec![t(Stage::Rcpt, 451); 5]),
        ("fine", vec![]),
    ];
    for (local, faults) in script {
        server.script(&format!("{local}@example.jp"), faults);
    }
    let shop = shop(server.port, TlsMode::None);
    let store = shop.store().await;
    let locals: Vec<&str> = script.iter().map(|(l, _)| *l).collect();
    customers(&store, &locals).await;
    let daemon = shop.daemon(&store).await;
    let mut now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    // Five delivery rounds a day apart: every retry is due by the next one.
    for _ in 0..5 {
        let r = daemon.deliverer.run_once(now).await.unwrap();
        if std::env::var("DEBUG_FAULTS").is_ok() {
            eprintln!("{r:?}");
            for row in store.outbox_rows().await.unwrap() {
                eprintln!(
                    "  {} {} {} {:?}",
                    row.to_email, row.status, row.attempts, row.last_error
                );
            }
        }
        now += Duration::days(1);
    }

    let rows = by_recipient(&store).await;
    let expect: &[(&str, &str, i64)] = &[
        ("t451", "sent", 3),
        ("t421", "sent", 2),
        ("t450", "sent", 2),
        ("t452", "sent", 2),
        ("p550", "failed", 1),
        ("p553", "failed", 1),
        ("s503", "sent", 2),
        ("dropdata", "sent", 2),
        ("droprcpt", "sent", 2),
        ("lost", "unknown", 1),
        ("slowend", "unknown", 1),
        ("slowrcpt", "sent", 2),
        ("gaveup", "failed", 3),
        ("fine", "sent", 1),
    ];
    for (local, status, attempts) in expect {
        let r = &rows[*local];
        assert_eq!(
            (r.status.as_str(), r.attempts),
            (*status, *attempts),
            "{local}: {:?}",
            r.last_error
        );
    }
    assert!(rows["p550"].last_error.as_deref().unwrap().contains("550"));
    assert!(rows["gaveup"]
        .last_error
        .as_deref()
        .unwrap()
        .contains("gave up after 3 attempts"));
    assert!(rows["lost"]
        .last_error
        .as_deref()
        .unwrap()
        .contains("after the message was sent"));
    // The refused addresses are suppressed, with the message that bounced; the others are not.
    let suppressed: Vec<(String, String)> = store
        .suppressions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.email, s.reason))
        .collect();
    let mut emails: Vec<&str> = suppressed.iter().map(|(e, _)| e.as_str()).collect();
    emails.sort();
    assert_eq!(emails, ["p550@example.jp", "p553@example.jp"]);
    let p550 = rows["p550"].id;
    let reason = &suppressed
        .iter()
        .find(|(e, _)| e.starts_with("p550"))
        .unwrap()
        .1;
    assert!(reason.contains(&format!("(message {p550})")), "{reason}");

    // What the server accepted: every sent message once, the unknown ones once (their data
    // arrived), nothing for the failed ones, nothing twice.
    let accepted = server.accepted();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for to in &accepted {
        *counts
            .entry(to.split('@').next().unwrap().to_string())
            .or_default() += 1;
    }
    for (local, status, _) in expect {
        let want = match *status {
            "sent" | "unknown" => 1,
            _ => 0,
        };
        assert_eq!(counts.get(*local).copied().unwrap_or(0), want, "{local}");
    }
    assert_eq!(
        server.transactions("lost@example.jp"),
        1,
        "unknown is never retried"
    );
}

/// A free port with nobody listening.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_server_down_at_start_delays_mail_and_nothing_is_lost() {
    let port = free_port();
    let shop = shop(port, TlsMode::None);
    let store = shop.store().await;
    customers(&store, &["early"]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.retried), (0, 1));
    let row = &by_recipient(&store).await["early"];
    assert_eq!(row.status, "queued");
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .contains("cannot connect"));
    // Status tells this waiting message from one merely not due yet, with why.
    let flow = store.flow_status().await.unwrap();
    assert_eq!((flow.queued, flow.retrying), (1, 1));
    assert!(flow.retry_error.unwrap().contains("cannot connect"));

    let server = FaultServer::start_on(port).await;
    let r = daemon
        .deliverer
        .run_once(now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(r.sent, 1);
    assert_eq!(server.accepted(), ["early@example.jp"]);
    assert_eq!(store.flow_status().await.unwrap().retrying, 0);
}

/// Once every attempt is used up while the relay is down, status does not read "nothing
/// waiting" alone: it counts the failures since the last send, with the last error, until a
/// message goes out again.
#[tokio::test]
async fn failures_for_good_since_the_last_send_are_in_the_flow_until_mail_goes_again() {
    let port = free_port();
    let shop = shop(port, TlsMode::None);
    let store = shop.store().await;
    customers(&store, &["early"]).await;
    let daemon = shop.daemon(&store).await;
    let mut now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    for _ in 0..20 {
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::days(1);
    }
    assert_eq!(by_recipient(&store).await["early"].status, "failed");
    let flow = store.flow_status().await.unwrap();
    assert_eq!(
        (flow.queued, flow.retrying, flow.failed_since_sent),
        (0, 0, 1)
    );
    assert!(flow.failed_error.unwrap().contains("cannot connect"));

    // The relay is back and another message goes out: the old failure stops counting.
    let _server = FaultServer::start_on(port).await;
    let later = customer("later", "later@example.jp", "later", "Asia/Tokyo", "{}");
    store.upsert_customers(&[later], 0).await.unwrap();
    let placed = (now - Duration::hours(1)).to_rfc3339();
    add_orders(&store, &[order("O-later", "later", &placed, 1000)]).await;
    daemon.engine.tick(now).await.unwrap();
    assert_eq!(daemon.deliverer.run_once(now).await.unwrap().sent, 1);
    assert_eq!(store.flow_status().await.unwrap().failed_since_sent, 0);
}

#[tokio::test]
async fn a_server_without_starttls_fails_the_tls_requirement_clearly_and_sends_nothing_in_clear() {
    let server = FaultServer::start().await;
    let shop = shop(server.port, TlsMode::Starttls);
    let store = shop.store().await;
    customers(&store, &["secure"]).await;
    let daemon = shop.daemon(&store).await;
    let mut now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    for _ in 0..4 {
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::days(1);
    }
    let row = &by_recipient(&store).await["secure"];
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 3));
    assert!(
        row.last_error.as_deref().unwrap().contains("STARTTLS"),
        "{:?}",
        row.last_error
    );
    assert!(server.accepted().is_empty());
    assert_eq!(server.transactions("secure@example.jp"), 0);
}

#[tokio::test]
async fn a_throttling_reply_pauses_the_queue_and_drops_nothing() {
    let server = FaultServer::start().await;
    server.script("a0@example.jp", &[Fault::Reply(Stage::Rcpt, 421)]);
    let mut shop = shop(server.port, TlsMode::None);
    shop.config.delivery.smtp.pool_size = 1;
    shop.config.delivery.throttle_pause_secs = 600;
    let store = shop.store().await;
    let locals = ["a0", "b", "c", "d", "e"];
    customers(&store, &locals).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    // The throttled message is retried later; the messages behind it wait, unsent and with no
    // attempt counted; nothing was dropped. With one connection two messages are handed over
    // at once, in no set order: at most one other may have gone out before the 421.
    assert!(
        r.sent <= 1 && r.sent + r.retried == 5 && r.failed == 0,
        "{r:?}"
    );
    let rows = by_recipient(&store).await;
    assert_eq!(
        (rows["a0"].status.as_str(), rows["a0"].attempts),
        ("queued", 1)
    );
    let waiting: Vec<_> = locals[1..]
        .iter()
        .filter(|l| rows[**l].status == "queued")
        .collect();
    assert_eq!(waiting.len() as u64, 4 - r.sent);
    for l in waiting {
        let row = &rows[*l];
        assert_eq!(row.attempts, 0, "{l}");
        assert!(row.last_error.as_deref().unwrap().contains("slow down"));
    }
    assert_eq!(server.accepted().len() as u64, r.sent);
    // Within the pause nothing is tried again.
    let r = daemon
        .deliverer
        .run_once(now + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(r.claimed, 0);
    let r = daemon
        .deliverer
        .run_once(now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        r.sent + rows.values().filter(|r| r.status == "sent").count() as u64,
        5
    );
    assert_eq!(server.accepted().len(), 5);
}

#[tokio::test]
async fn the_global_send_rate_is_respected() {
    let server = FaultServer::start().await;
    let mut shop = shop(server.port, TlsMode::None);
    shop.config.delivery.rate_per_second = Some(20);
    let store = shop.store().await;
    let locals: Vec<String> = (0..11).map(|i| format!("r{i}")).collect();
    let locals: Vec<&str> = locals.iter().map(String::as_str).collect();
    customers(&store, &locals).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let started = std::time::Instant::now();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!(r.sent, 11);
    // 11 sends at 20/s, evenly spaced: at least 10 intervals of 50 ms.
    assert!(
        started.elapsed() >= Wait::from_millis(480),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_failed_tls_handshake_is_retried_then_failed_and_nothing_goes_in_clear() {
    // The fault server speaks plain SMTP; implicit TLS (port 465 style) cannot handshake.
    let server = FaultServer::start().await;
    let shop = shop(server.port, TlsMode::Tls);
    let store = shop.store().await;
    customers(&store, &["wrapped"]).await;
    let daemon = shop.daemon(&store).await;
    let mut now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    for _ in 0..4 {
        daemon.deliverer.run_once(now).await.unwrap();
        now += Duration::days(1);
    }
    let row = &by_recipient(&store).await["wrapped"];
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("failed", 3),
        "{:?}",
        row.last_error
    );
    assert!(server.accepted().is_empty());
    assert_eq!(server.transactions("wrapped@example.jp"), 0);
}

#[tokio::test]
async fn a_deliberate_retry_resends_a_failed_or_unknown_message_in_its_own_row() {
    let server = FaultServer::start().await;
    server.script("lost@example.jp", &[Fault::Drop(Stage::EndOfData)]);
    server.script("refused@example.jp", &[Fault::Reply(Stage::Data, 554)]);
    let shop = shop(server.port, TlsMode::None);
    let store = shop.store().await;
    customers(&store, &["lost", "refused"]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    daemon.deliverer.run_once(now).await.unwrap();
    let before = by_recipient(&store).await;
    assert_eq!(before["lost"].status, "unknown");
    assert_eq!(before["refused"].status, "failed");

    // `--all-failed` takes the failed one only; an unknown one needs its id.
    let later = now + Duration::hours(1);
    let retry = |ids: Vec<i64>, all: bool| {
        let engine = &daemon.engine;
        async move { engine.retry(&ids, all, later).await.unwrap().requeued }
    };
    assert_eq!(retry(vec![], true).await, [before["refused"].id]);
    assert_eq!(by_recipient(&store).await["lost"].status, "unknown");
    assert_eq!(
        retry(vec![before["lost"].id], false).await,
        [before["lost"].id]
    );
    let requeued = by_recipient(&store).await;
    for l in ["lost", "refused"] {
        assert_eq!(
            (requeued[l].status.as_str(), requeued[l].attempts),
            ("queued", 0),
            "{l}"
        );
        assert!(before[l].last_error.is_some(), "{l}");
        assert_eq!(
            requeued[l].last_error, None,
            "{l}: a queued row does not show the last attempt's error"
        );
    }

    daemon.deliverer.run_once(later).await.unwrap();
    let after = by_recipient(&store).await;
    assert_eq!(store.outbox_rows().await.unwrap().len(), 2, "no new rows");
    for l in ["lost", "refused"] {
        assert_eq!(after[l].status, "sent", "{l}");
        assert_eq!(
            after[l].message_id, before[l].message_id,
            "{l} keeps its Message-ID"
        );
    }
    // The unknown one had in fact arrived: a deliberate re-send delivers it a second time,
    // which is why rebuy never does that by itself.
    let accepted = server.accepted();
    assert_eq!(
        accepted.iter().filter(|a| a.starts_with("lost@")).count(),
        2
    );
    assert_eq!(
        accepted
            .iter()
            .filter(|a| a.starts_with("refused@"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_makes_only_its_own_message_unknown_when_the_next_one_was_pipelined_behind_it(
) {
    // One pipelining connection, two messages handed over together: the second one's MAIL,
    // RCPT and DATA go out behind the first one's data. The first one's answer never comes:
    // it is `unknown` (its data went out); the second was never sent and says so.
    use rebuy::delivery::{Mailer, SendError};
    let server = FaultServer::pipelining().await;
    server.script(
        "slow@example.jp",
        &[Fault::Delay(Stage::EndOfData, Wait::from_secs(3))],
    );
    let mut cfg = rebuy::config::SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        tls: TlsMode::None,
        pool_size: 1,
        timeout_secs: 1,
        ..Default::default()
    };
    cfg.username = None;
    let mailer = Mailer::smtp(&cfg, None).unwrap();
    let message = |to: &str| {
        lettre::Message::builder()
            .from("shop@example.jp".parse().unwrap())
            .to(to.parse().unwrap())
            .subject("hello")
            .body("hello".to_string())
            .unwrap()
    };
    let (slow, next) = (message("slow@example.jp"), message("next@example.jp"));
    let (a, b) = tokio::join!(mailer.send(1, &slow), mailer.send(2, &next));
    assert!(matches!(a, Err(SendError::Unknown(_))), "{a:?}");
    // Only a message written behind another one's data can be "not tried".
    assert!(
        matches!(b, Err(SendError::NotTried { paused: false, .. })),
        "{b:?}"
    );
    assert_eq!(server.accepted(), ["slow@example.jp"]);
    // The connection is replaced and the next message goes through.
    mailer.send(3, &next).await.unwrap();
    assert_eq!(server.accepted(), ["slow@example.jp", "next@example.jp"]);
}

#[tokio::test]
async fn a_reply_line_without_end_is_cut_off_and_costs_only_its_own_message() {
    let server = FaultServer::start().await;
    server.script("flood@example.jp", &[Fault::Endless(Stage::Rcpt)]);
    let shop = shop(server.port, TlsMode::None);
    let store = shop.store().await;
    customers(&store, &["flood", "fine"]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    daemon.deliverer.run_once(now).await.unwrap();
    let rows = by_recipient(&store).await;
    let flood = &rows["flood"];
    assert!(
        flood
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("reply line longer than")),
        "{flood:?}"
    );
    assert_eq!(flood.status, "queued", "a network fault is retried");
    assert_eq!(rows["fine"].status, "sent");
    // The server behaves at the retry: the message goes out once.
    daemon
        .deliverer
        .run_once(now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(by_recipient(&store).await["flood"].status, "sent");
    assert_eq!(server.transactions("flood@example.jp"), 2);
}

#[tokio::test]
async fn a_throttling_pause_holds_for_its_whole_length_across_rounds_and_restarts() {
    let server = FaultServer::start().await;
    server.script("a0@example.jp", &[Fault::Reply(Stage::Rcpt, 421)]);
    let mut shop = shop(server.port, TlsMode::None);
    shop.config.delivery.smtp.pool_size = 1;
    shop.config.delivery.throttle_pause_secs = 600;
    // One message a claim: most of the queue is not even claimed when the 421 comes.
    shop.config.delivery.batch_size = 1;
    let store = shop.store().await;
    let locals = ["a0", "b", "c", "d", "e", "f"];
    customers(&store, &locals).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let first = daemon.deliverer.run_once(now).await.unwrap();
    let paused = first.paused_until.expect("the round says it paused");
    assert!(paused >= (now + Duration::minutes(10)).timestamp_millis());
    let gone = server.accepted().len();
    assert!(gone <= 1, "at most the message handed over with a0: {gone}");
    // A minute later, and in a restarted daemon: nothing is claimed, nothing goes out.
    let restarted = shop.daemon(&store).await;
    let r = restarted
        .deliverer
        .run_once(now + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!((r.claimed, r.paused_until), (0, Some(paused)));
    assert_eq!(server.accepted().len(), gone);
    let flow = store.flow_status().await.unwrap();
    assert_eq!(flow.paused_until, Some(paused));
    // After the pause everything goes, once.
    let mut at = now + Duration::minutes(11);
    while store.flow_status().await.unwrap().queued > 0 {
        restarted.deliverer.run_once(at).await.unwrap();
        at += Duration::minutes(11);
        assert!(at < now + Duration::days(1), "the queue never drained");
    }
    let mut accepted = server.accepted();
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 6);
    assert_eq!(server.accepted().len(), 6);
}

#[tokio::test]
async fn a_lease_runs_from_its_claim_so_a_long_round_keeps_its_messages_from_a_second_sender() {
    let server = FaultServer::start().await;
    let locals: Vec<String> = (0..24).map(|i| format!("m{i:02}")).collect();
    for l in &locals {
        let slow = Fault::Delay(Stage::Rcpt, Wait::from_millis(250));
        server.script(&format!("{l}@example.jp"), &[slow]);
    }
    let mut shop = shop(server.port, TlsMode::None);
    shop.config.delivery.smtp.pool_size = 1;
    shop.config.delivery.batch_size = 2;
    // A round of 24 slow sends two at a time lasts about 3 s: longer than the lease.
    shop.config.delivery.lease_secs = 2;
    let store = shop.store().await;
    let locals: Vec<&str> = locals.iter().map(String::as_str).collect();
    customers(&store, &locals).await;
    let live = shop.daemon(&store).await;
    let t0 = utc("2026-11-01T03:00:00Z");
    live.engine.tick(t0).await.unwrap();
    // A second daemon on the same database starts its rounds meanwhile, on the same clock:
    // each begins by flagging the messages whose sender's lease ran out.
    let started = std::time::Instant::now();
    let watcher = async {
        while started.elapsed() < Wait::from_secs(4) {
            let now = t0 + Duration::from_std(started.elapsed()).unwrap();
            store.expire_leases(now.timestamp_millis()).await.unwrap();
            tokio::time::sleep(Wait::from_millis(100)).await;
        }
    };
    let (r, ()) = tokio::join!(live.deliverer.run_once(t0), watcher);
    r.unwrap();
    let rows = by_recipient(&store).await;
    for l in &locals {
        assert_eq!(rows[*l].status, "sent", "{l}: {:?}", rows[*l].last_error);
    }
    let mut accepted = server.accepted();
    assert_eq!(accepted.len(), 24);
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 24);
}

const TWO_SCENARIOS: &[(&str, &str)] = &[
    ("thanks.yaml", "id: thanks\ntrigger: first_order\nsteps:\n  - id: t\n    send: { template: t, subject: \"ありがとう\" }\n"),
    ("welcome.yaml", "id: welcome\ntrigger: first_order\nsteps:\n  - id: w\n    send: { template: t, subject: \"ようこそ\" }\n"),
];

#[tokio::test]
async fn an_address_refused_in_a_round_is_not_tried_again_in_that_round_and_is_suppressed_with_the_outcome(
) {
    let server = FaultServer::start().await;
    // Refused once; a second transaction would be accepted, and counted.
    server.script("x@example.jp", &[Fault::Reply(Stage::Rcpt, 550)]);
    let mut shop = TestShop::new(
        TWO_SCENARIOS,
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        None,
    );
    let base = self::shop(server.port, TlsMode::None);
    shop.config.delivery = base.config.delivery.clone();
    shop.config.delivery.smtp.pool_size = 1;
    let store = shop.store().await;
    customers(&store, &["x", "a", "b", "c"]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 8);
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.failed, r.suppressed), (6, 1, 1), "{r:?}");
    assert_eq!(server.transactions("x@example.jp"), 1);
    assert!(!server.accepted().iter().any(|to| to.starts_with("x@")));
    let x: Vec<String> = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.customer_id == "x")
        .map(|r| r.status)
        .collect();
    assert_eq!(x, ["failed", "suppressed"]);
    let list = store.suppressions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].email, "x@example.jp");
}

#[tokio::test]
async fn an_address_beyond_ascii_is_not_sent_to_a_server_without_smtputf8_and_not_suppressed() {
    let server = FaultServer::start().await;
    server.without_smtputf8();
    let shop = shop(server.port, TlsMode::None);
    let store = shop.store().await;
    let list = [customer("y", "山田@example.jp", "山田", "Asia/Tokyo", "{}")];
    store.upsert_customers(&list, 0).await.unwrap();
    add_orders(&store, &[order("O-y", "y", "2026-11-01T01:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let r = daemon.deliverer.run_once(now).await.unwrap();
    assert_eq!((r.sent, r.failed), (0, 1));
    let row = &store.outbox_rows().await.unwrap()[0];
    assert!(row.last_error.as_deref().unwrap().contains("SMTPUTF8"));
    assert_eq!(server.transactions("山田@example.jp"), 0);
    assert!(store.suppressions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_shutdown_stops_a_long_round_after_the_sends_in_flight_and_loses_nothing() {
    let server = FaultServer::start().await;
    let locals: Vec<String> = (0..400).map(|i| format!("s{i:03}")).collect();
    for l in &locals {
        let slow = Fault::Delay(Stage::Rcpt, Wait::from_millis(100));
        server.script(&format!("{l}@example.jp"), &[slow]);
    }
    let mut shop = shop(server.port, TlsMode::None);
    shop.config.delivery.smtp.pool_size = 1;
    let store = shop.store().await;
    let locals: Vec<&str> = locals.iter().map(String::as_str).collect();
    customers(&store, &locals).await;
    let mut daemon = shop.daemon(&store).await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    daemon.deliverer = shop.app().deliverer(&store).unwrap().with_stop(stopping);
    let now = utc("2026-11-01T03:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    // The whole round would take about 20 s (400 sends of 100 ms, two at a time).
    let started = std::time::Instant::now();
    let signal = async {
        tokio::time::sleep(Wait::from_millis(500)).await;
        stop.send(true).unwrap();
    };
    let (r, ()) = tokio::join!(daemon.deliverer.run_once(now), signal);
    let r = r.unwrap();
    assert!(
        started.elapsed() < Wait::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(r.sent > 0 && r.sent < 100, "{r:?}");
    let rows = store.outbox_rows().await.unwrap();
    let sent = rows.iter().filter(|r| r.status == "sent").count();
    let queued: Vec<_> = rows.iter().filter(|r| r.status == "queued").collect();
    assert_eq!(
        sent + queued.len(),
        400,
        "every message sent or back in the queue"
    );
    assert!(queued.iter().all(|r| r.attempts == 0));
    assert_eq!(server.accepted().len(), sent);
}
