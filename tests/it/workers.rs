//! Several workers on one database (both backends): they share the queue without sending a
//! message twice, the frequency cap holds exactly across them, one of them leads and runs the
//! jobs once, another takes over when it is gone, and each leaves a heartbeat.

use crate::helpers::*;

/// [`five_scenarios_capped`] with customers `C0..n`, each with a first order at `AT`.
async fn capped_shop(
    smtp: &SmtpServer,
    customers: usize,
    batch: u32,
) -> (TestShop, rebuy::store::Store) {
    let shop = five_scenarios_capped(smtp, batch);
    let store = shop.store().await;
    let ids: Vec<String> = (0..customers).map(|i| format!("C{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    add_customers(&store, &ids).await;
    let orders: Vec<_> = ids
        .iter()
        .map(|c| order(&format!("O-{c}"), c, AT, 1000))
        .collect();
    add_orders(&store, &orders).await;
    (shop, store)
}

const AT: &str = "2026-11-02T03:00:00Z";

#[tokio::test]
async fn a_customers_marketing_mail_is_claimed_by_one_worker_at_a_time() {
    let smtp = SmtpServer::start();
    let (shop, store) = capped_shop(&smtp, 2, 10).await;
    let daemon = shop.daemon(&store).await;
    let now = utc(AT);
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 10);
    let ms = now.timestamp_millis();
    let lease = ms + 600_000;
    // Worker A takes one message; worker B then gets the other customer's five, none of the
    // first customer's while A holds one of them.
    let a = store.claim_ready("1-a", ms, lease, 1).await.unwrap();
    assert_eq!(a.len(), 1);
    let b = store.claim_ready("2-b", ms, lease, 100).await.unwrap();
    assert_eq!(b.len(), 5, "{b:?}");
    assert!(b.iter().all(|r| r.customer_id != a[0].customer_id));
    // A itself may take more of its customer's.
    let more = store.claim_ready("1-a", ms, lease, 100).await.unwrap();
    assert_eq!(more.len(), 4);
    assert!(more.iter().all(|r| r.customer_id == a[0].customer_id));
}

#[tokio::test]
async fn three_workers_at_once_send_each_message_once_and_the_cap_holds_exactly() {
    let smtp = SmtpServer::start();
    let customers = 30;
    let (shop, store) = capped_shop(&smtp, customers, 3).await;
    let app = shop.app();
    let daemon = shop.daemon(&store).await;
    let now = utc(AT);
    assert_eq!(
        daemon.engine.tick(now).await.unwrap().queued,
        5 * customers as u64
    );
    let workers: Vec<_> = (0..3).map(|_| app.deliverer(&store).unwrap()).collect();
    // Rounds at once until nothing is left to claim.
    for _ in 0..20 {
        let (a, b, c) = tokio::join!(
            workers[0].run_once(now),
            workers[1].run_once(now),
            workers[2].run_once(now)
        );
        let claimed = a.unwrap().claimed + b.unwrap().claimed + c.unwrap().claimed;
        if claimed == 0 {
            break;
        }
    }
    let received = smtp.received();
    let mut ids: Vec<String> = received
        .iter()
        .map(|m| m.parsed().message_id().unwrap().to_string())
        .collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a message went out twice");
    let mut per_customer = std::collections::BTreeMap::<String, usize>::new();
    for m in &received {
        *per_customer.entry(m.to.join(",")).or_default() += 1;
    }
    assert_eq!(per_customer.len(), customers, "{per_customer:?}");
    assert!(
        per_customer.values().all(|n| *n == 2),
        "the cap is 2 per customer: {per_customer:?}"
    );
    let rows = store.outbox_rows().await.unwrap();
    let sent = rows.iter().filter(|r| r.status == "sent").count();
    let waiting = rows.iter().filter(|r| r.status == "queued").count();
    assert_eq!((sent, waiting), (2 * customers, 3 * customers));
}

fn nightly() -> rebuy::daemon::Job {
    let config = rebuy::config::JobConfig {
        name: "nightly".into(),
        cron: serde_saphyr::from_str::<rebuy::config::JobConfig>(
            "name: nightly\ncron: \"0 3 * * *\"\n",
        )
        .unwrap()
        .cron,
        import_customers: None,
        import_orders: None,
        refresh_metrics: true,
        digest: None,
    };
    let schedule = rebuy::config::parse_cron("0 3 * * *").unwrap();
    rebuy::daemon::Job::new(config, schedule, chrono_tz::Asia::Tokyo)
}

#[tokio::test]
async fn one_worker_leads_and_runs_the_job_once_and_another_takes_over_when_it_is_gone() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    add_customers(&store, &["C1"]).await;
    add_orders(&store, &[order("O1", "C1", "2026-11-01T01:00:00Z", 1000)]).await;
    let mut a = shop.daemon(&store).await;
    let mut b = shop.daemon(&store).await;
    a.jobs.push(nightly());
    b.jobs.push(nightly());

    // The first cycle of each: A comes first and leads; the job is only scheduled.
    let first = utc("2026-11-01T12:00:00Z");
    assert_eq!(a.run_once(first).await.unwrap().jobs_run, 0);
    assert_eq!(b.run_once(first).await.unwrap().jobs_run, 0);
    let workers = rebuy::delivery::workers(&store).await.unwrap();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.alive == Some(true)), "{workers:?}");
    let leaders: Vec<_> = workers.iter().filter(|w| w.row.leader).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].row.owner, a.deliverer.owner());
    assert_eq!(workers[0].row.heartbeat_at, first.timestamp_millis());

    // 03:00 in Tokyo (18:00 UTC): the job runs once, on the leader, whoever asks first.
    let due = utc("2026-11-01T18:00:00Z");
    assert_eq!(b.run_once(due).await.unwrap().jobs_run, 0);
    assert_eq!(a.run_once(due).await.unwrap().jobs_run, 1);
    assert_eq!(a.run_once(due).await.unwrap().jobs_run, 0);
    assert_eq!(b.run_once(due).await.unwrap().jobs_run, 0);

    // The next night A starts the job and dies before it ends (what SIGKILL leaves: the run
    // started, its next time not moved). B takes the lead and runs it, once.
    let next = utc("2026-11-02T18:00:00Z");
    assert!(store
        .take_job_run(
            "nightly",
            next.timestamp_millis(),
            a.deliverer.owner(),
            next.timestamp_millis(),
            None
        )
        .await
        .unwrap());
    let gone = a.deliverer.owner().to_string();
    drop(a);
    let mut runs = 0;
    for _ in 0..50 {
        runs += b.run_once(next).await.unwrap().jobs_run;
        if runs > 0 {
            break;
        }
        // On PostgreSQL the server frees the dead session's locks a moment later.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(runs, 1, "the new leader runs the job the dead one left");
    assert_eq!(b.run_once(next).await.unwrap().jobs_run, 0);
    use futures::TryStreamExt as _;
    let metrics: Vec<_> = store.metrics_rows().try_collect().await.unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].as_of, "2026-11-03", "the refresh ran for Nov 3");
    let workers = rebuy::delivery::workers(&store).await.unwrap();
    let me = workers
        .iter()
        .find(|w| w.row.owner == b.deliverer.owner())
        .unwrap();
    assert!(me.row.leader);
    assert!(
        workers.iter().all(|w| w.row.owner != gone),
        "the dead leader's row is gone: {workers:?}"
    );
}

/// A scenario whose steps give its messages a variant and a lateness limit.
const EVERY_FIELD: &str = r#"
id: fields
trigger: first_order
steps:
  - id: a
    expires: 30d
    variants:
      - { id: left, weight: 50 }
      - { id: right, weight: 50 }
    send: { template: t, subject: "A {{ customer.id }}" }
"#;

#[tokio::test]
async fn a_claimed_message_reads_as_the_stored_one_field_for_field() {
    // The claim hands its rows over as JSON (one value a row), the rest of the store reads
    // them column by column: both must give the same message, every optional field set.
    let templates = [("t.html", "<p>{{ customer.name }}</p>"), ("t.txt", "hi")];
    let shop = TestShop::new(&[("fields.yaml", EVERY_FIELD)], &templates, None);
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    let orders = [order("O1", "C1", AT, 1000), order("O2", "C2", AT, 1000)];
    add_orders(&store, &orders).await;
    let daemon = shop.daemon(&store).await;
    let now = utc(AT);
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 2);
    let ms = now.timestamp_millis();
    // The first fails and is sent again by hand with new content and a recommendation.
    let first = store.claim_ready("w", ms, ms + 60_000, 1).await.unwrap();
    let failed = rebuy::store::Recorded::failed(first[0].id, "550 \"no\" \\ 宛先".into());
    store.record_outcomes("w", ms, &[failed]).await.unwrap();
    let content = rebuy::store::Content {
        subject: "件名 \"quoted\"",
        html: "<p class=\"x\">\n\ttab</p>",
        text: "line\r\nnext",
        to_email: "c1@example.jp",
        to_name: "顧客 一",
        recommended: Some(r#"["SKU-1","SKU-2"]"#),
    };
    assert!(store
        .requeue_rendered(first[0].id, &content, ms)
        .await
        .unwrap());
    let mut claimed = store.claim_ready("w", ms, ms + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // A retry keeps its error (a requeue by hand drops it): the other is deferred with one and
    // claimed again, so that a claimed row carries every optional field too.
    let other = claimed.iter().find(|r| r.id != first[0].id).unwrap().id;
    let deferred = rebuy::store::Recorded::retry(other, "451 \"later\" \\ 宛先".into(), ms);
    store.record_outcomes("w", ms, &[deferred]).await.unwrap();
    let again = store.claim_ready("w", ms, ms + 60_000, 10).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
    for row in &claimed {
        let stored_then = serde_json::to_value(row).unwrap();
        if row.id != other {
            let stored = store.outbox_row(row.id).await.unwrap().unwrap();
            assert_eq!(stored_then, serde_json::to_value(&stored).unwrap());
        }
    }
    for row in &again {
        let stored = store.outbox_row(row.id).await.unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(row).unwrap(),
            serde_json::to_value(&stored).unwrap()
        );
    }
    claimed.retain(|r| r.id != other);
    claimed.extend(again);
    // Every optional field was set on one of them.
    assert!(claimed.iter().any(|r| r.recommended.is_some()));
    assert!(claimed.iter().any(|r| r.last_error.is_some()));
    assert!(claimed
        .iter()
        .any(|r| r.variant.is_some() && r.expires_at.is_some()));
    store.close().await;
}

#[tokio::test]
async fn a_claimed_batch_comes_in_due_order_whatever_order_the_database_returns() {
    // The sender keeps the frequency cap in batch order, so a batch out of order could send a
    // customer's later step and hold back the earlier one. Each deferral below rewrites its
    // row, so PostgreSQL stores them 3, 1, 4, 5, 2 and its `RETURNING` tends to follow that.
    let smtp = SmtpServer::start();
    let (shop, store) = capped_shop(&smtp, 1, 10).await;
    let daemon = shop.daemon(&store).await;
    let now = utc(AT);
    assert_eq!(daemon.engine.tick(now).await.unwrap().queued, 5);
    let ms = now.timestamp_millis();
    let first = store.claim_ready("w", ms, ms + 60_000, 10).await.unwrap();
    let mut ids: Vec<i64> = first.iter().map(|r| r.id).collect();
    ids.sort();
    // Deferred to times in reverse order: the claim picks by that time, the batch goes by due.
    for i in [2, 0, 3, 4, 1] {
        let at = ms + 60_000 - 1_000 * i as i64;
        let later = rebuy::store::Recorded::deferred(ids[i], "cap".into(), at);
        assert_eq!(store.record_outcomes("w", ms, &[later]).await.unwrap(), 1);
    }
    let again = store
        .claim_ready("w", ms + 120_000, ms + 180_000, 10)
        .await
        .unwrap();
    let got: Vec<i64> = again.iter().map(|r| r.id).collect();
    assert_eq!(got, ids);
    store.close().await;
}
