//! Back-tests: `simulate` over a stored history enqueues exactly what a live daemon, fed the
//! same orders as they arrived and ticking at the same times, would have enqueued; and the
//! shop's own database is left as it was.

use crate::helpers::*;
use chrono::Duration;
use rand::{Rng, SeedableRng};
use rebuy::simulate::Mode;
use rebuy::store::{NewOrder, Store};
use std::collections::BTreeSet;

const THANKS: &str = r#"
id: thanks
trigger: first_order
holdout: 20%
goal: { event: order_placed, within: 30d }
steps:
  - id: thank-you
    wait: 1d
    at: "10:00"
    send: { template: t, subject: "thanks {{ customer.id }} {{ order.total }}" }
  - id: reminder
    wait: 10d
    if: "customer.orders_count == 1"
    send: { template: t, subject: "reminder {{ customer.id }}" }
"#;

const BIG: &str = r#"
id: big-order
trigger: order_placed
audience: "order.total >= 5000"
reentry: always
steps:
  - id: vip
    wait: 2h
    send: { template: t, subject: "vip {{ order.id }}" }
"#;

/// 80 customers; some with history well before the period, and orders at random hours over
/// the 40 days of the period.
fn shop_orders() -> Vec<NewOrder> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let start = utc("2026-03-01T00:00:00Z");
    let mut orders = Vec::new();
    for c in 0..80 {
        let id = format!("C{c:03}");
        if c % 4 == 0 {
            let at = start - Duration::days(40 + rng.random_range(0..100));
            orders.push(order(&format!("H-{id}"), &id, &at.to_rfc3339(), 3000));
        }
        for k in 0..rng.random_range(1..4) {
            let at = start + Duration::minutes(rng.random_range(0..40 * 24 * 60));
            let total = [1500, 3000, 6000][rng.random_range(0..3)];
            orders.push(order(&format!("O-{id}-{k}"), &id, &at.to_rfc3339(), total));
        }
    }
    orders.sort_by_key(|o| o.placed_at);
    orders
}

type Row = (String, String, String, i64, String, String, String);

async fn rows(store: &Store) -> BTreeSet<Row> {
    store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let status = if r.status == "simulated" {
                "queued".to_string()
            } else {
                r.status
            };
            (
                r.scenario_id,
                r.customer_id,
                r.step_id,
                r.due_at,
                r.subject,
                r.html,
                status,
            )
        })
        .collect()
}

/// Two customers on the shop's suppression list (a bounce stops everything, an unsubscribe
/// marketing mail): a back-test withholds their mail as the shop would.
async fn suppress_two(store: &Store) {
    use rebuy::store::SuppressionKind;
    for (email, kind) in [
        ("C004@example.jp", SuppressionKind::Bounce),
        ("C009@example.jp", SuppressionKind::Unsubscribe),
    ] {
        store.suppress(email, kind, "test", None, 0).await.unwrap();
    }
}

/// Every enrollment but its id, which depends on the order of writes.
async fn enrollments(store: &Store) -> BTreeSet<String> {
    store
        .enrollments_in_customer_range("", None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            format!(
                "{} {} {:?} {} {} {:?} {:?}",
                e.scenario_id,
                e.customer_id,
                e.order_id,
                e.state,
                e.triggered_at,
                e.goal_deadline,
                e.goal_reached_at
            )
        })
        .collect()
}

/// Every customer's order aggregates, and how many orders are stored.
async fn aggregates(store: &Store) -> (Vec<String>, i64) {
    let customers = store.all_customers().await.unwrap();
    let rows = customers
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {:?} {:?} {:?}",
                c.id, c.orders_count, c.total_spent, c.currency, c.first_order_at, c.last_order_at
            )
        })
        .collect();
    let orders = customers.iter().map(|c| c.orders_count).sum();
    (rows, orders)
}

#[tokio::test]
async fn a_back_test_enqueues_what_a_live_run_over_the_same_orders_would_have() {
    let templates = [
        ("t.html", "<p>{{ step.id }} {{ customer.name }}</p>"),
        ("t.txt", "{{ step.id }}"),
    ];
    let scenarios = [("thanks.yaml", THANKS), ("big.yaml", BIG)];
    let orders = shop_orders();
    let ids: Vec<String> = (0..80).map(|c| format!("C{c:03}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let from = utc("2026-03-01T00:00:00Z");
    let to = utc("2026-04-20T00:00:00Z");
    let step = Duration::hours(1);

    // Live: rebuy installed on Mar 1 with the history imported, then the orders arrive as they
    // are placed and the daemon ticks every hour.
    let live = TestShop::new(&scenarios, &templates, None);
    let live_store = live.store().await;
    add_customers(&live_store, &id_refs).await;
    suppress_two(&live_store).await;
    let (history, period): (Vec<NewOrder>, Vec<NewOrder>) = orders
        .iter()
        .cloned()
        .partition(|o| o.placed_at < from.timestamp_millis());
    add_orders(&live_store, &history).await;
    let mut app = live.app();
    app.resolved.trigger_lookback = Duration::days(3);
    let engine = app.engine(&live_store).await.unwrap().unwrap();
    let mut now = from;
    let mut next = 0;
    while now <= to {
        let upto = period.partition_point(|o| o.placed_at <= now.timestamp_millis());
        if upto > next {
            add_orders(&live_store, &period[next..upto]).await;
            next = upto;
        }
        engine.tick(now).await.unwrap();
        // Its deliverer: what the tick queued is sent at once (marked as a back-test marks it),
        // so a later goal finds nothing waiting, as in a daemon whose mail flows.
        live_store
            .mark_simulated(now.timestamp_millis(), false)
            .await
            .unwrap();
        now += step;
    }
    let live_rows = rows(&live_store).await;
    assert!(
        live_rows.iter().any(|r| r.6 == "suppressed"),
        "the suppressed customers had mail withheld"
    );

    // The back-test: every order already stored in the shop's database.
    let shop = TestShop::new(&scenarios, &templates, None);
    let store = shop.store().await;
    add_customers(&store, &id_refs).await;
    suppress_two(&store).await;
    add_orders(&store, &orders).await;
    // An order after the period, which the back-test must not see.
    let late = (to + Duration::days(5)).to_rfc3339();
    add_orders(&store, &[order("LATE-C001", "C001", &late, 9900)]).await;
    // The same unsubscribe secret as the live shop, so the rendered footers match too.
    let secret = live_store.setting("unsubscribe_secret").await.unwrap();
    if let Some(s) = secret {
        store.set_setting("unsubscribe_secret", &s).await.unwrap();
    }
    let before = store.outbox_rows().await.unwrap().len();
    let live_enrollments = enrollments(&live_store).await;
    // Replayed with the default batch (written at the end here), replayed writing after every
    // tick that made a message (messages and ended enrollments beside the ticks), and ticked.
    for mode in [Mode::Auto, Mode::Replay { batch: 1 }, Mode::Ticks] {
        let sim_path = shop.file(&format!("sim-{mode:?}.db"));
        // 80 customers: every body is kept (see `store::BODY_SAMPLE`) and compared.
        let (sim, copied) =
            rebuy::simulate::prepare(&sim_path, &shop.config.database, (from, to), false)
                .await
                .unwrap();
        let mut app = shop.app();
        app.resolved.trigger_lookback = Duration::days(3);
        let sim_engine = app.engine(&sim).await.unwrap().unwrap().for_back_test();
        let mut ticks = Vec::new();
        let run = rebuy::simulate::simulate_with(
            mode,
            &sim_engine,
            copied,
            (from, to),
            step,
            chrono_tz::Asia::Tokyo,
            |done, total| ticks.push((done, total)),
        )
        .await
        .unwrap();
        // These scenarios need nothing only the database has: by default they are replayed in
        // memory; `Ticks` runs the engine's own tick over the simulation database.
        assert_eq!(run.replayed, mode != Mode::Ticks);
        // A replay counts its sends as it goes, as the database counts them afterwards.
        if let Some(sends) = &run.sends {
            assert_eq!(*sends, sim.simulated_sends().await.unwrap());
            assert!(sends.iter().all(|s| s.1 > 0 && s.2 > 0 && s.3 <= s.4));
        }
        assert_eq!(run.source.customers, 80);
        assert_eq!(run.source.history_orders as usize, history.len());
        assert_eq!(run.source.period_orders as usize, period.len());
        assert_eq!(
            ticks.last().map(|t| t.0),
            Some(run.ticks.min(ticks.last().unwrap().1))
        );

        let sim_rows = rows(&sim).await;
        assert!(live_rows.len() > 60, "a real workload: {}", live_rows.len());
        let only_sim: Vec<_> = sim_rows
            .difference(&live_rows)
            .map(|r| (&r.0, &r.1, &r.2, r.3, &r.4, &r.6))
            .collect();
        let only_live: Vec<_> = live_rows
            .difference(&sim_rows)
            .map(|r| (&r.0, &r.1, &r.2, r.3, &r.4, &r.6))
            .collect();
        assert!(
            only_sim.is_empty() && only_live.is_empty(),
            "{mode:?}: the back-test enqueued what the live run did: only simulated {only_sim:?}; only live {only_live:?}"
        );
        // And left the enrollments a live run left: arms, goals, states.
        assert_eq!(enrollments(&sim).await, live_enrollments, "{mode:?}");
        // And the orders and the customers' aggregates over them.
        assert_eq!(
            aggregates(&sim).await,
            aggregates(&live_store).await,
            "{mode:?}"
        );
        // Held-out steps are recorded, nothing simulated is left queued, nothing was sent.
        let statuses: BTreeSet<String> = sim
            .outbox_rows()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect();
        assert!(
            statuses.contains("simulated") && statuses.contains("held_out"),
            "{statuses:?}"
        );
        assert!(
            !statuses.contains("queued") && !statuses.contains("sent"),
            "{statuses:?}"
        );
        // The shop's database is untouched.
        assert_eq!(store.outbox_rows().await.unwrap().len(), before);
        assert!(!store.is_simulation().await.unwrap() && sim.is_simulation().await.unwrap());

        // The report reads the simulated sends like real ones.
        let report = rebuy::reports::scenario_report(
            &sim,
            sim_engine.scenarios(),
            rebuy::store::Period {
                since: from.timestamp_millis(),
                ..rebuy::store::Period::EVERYTHING
            },
            None,
            Duration::days(7),
        )
        .await
        .unwrap();
        let thanks = report.iter().find(|r| r.scenario == "thanks").unwrap();
        let simulated_thanks = sim_rows
            .iter()
            .filter(|r| r.0 == "thanks" && r.6 == "queued")
            .count() as i64;
        assert_eq!(thanks.messages_sent, simulated_thanks);
        assert!(thanks.held_out > 0);
        sim.close().await;
        // A PostgreSQL shop's SQLite copy goes with the back-test that read it.
        assert!(!sim_path.with_extension("source.db").exists());
    }
    store.close().await;
    live_store.close().await;
}

/// A thank-you a day after a customer's first order.
const FIRST_THANKS: &str = r#"
id: thanks
trigger: first_order
steps:
  - id: thank-you
    wait: 1d
    send: { template: t, subject: "thanks {{ customer.id }}" }
"#;

/// A shop with the one scenario `yaml` (id `thanks`) and its template `t`.
fn thanks_shop(yaml: &str) -> TestShop {
    let templates = [("t.html", "<p>{{ customer.name }}</p>"), ("t.txt", "hi")];
    TestShop::new(&[("thanks.yaml", yaml)], &templates, None)
}

/// A shop of 2,500 customers, each with a first order in the period, through a thank-you
/// scenario: simulated in both ways, with bodies kept for the sample or for everyone.
async fn simulate_sample(shop: &TestShop, mode: Mode, keep_bodies: bool) -> (Store, Vec<Row>) {
    let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-03-10T00:00:00Z"));
    let path = shop.file(&format!("sim-{mode:?}-{keep_bodies}.db"));
    let (sim, copied) =
        rebuy::simulate::prepare(&path, &shop.config.database, (from, to), keep_bodies)
            .await
            .unwrap();
    let engine = shop.app().engine(&sim).await.unwrap().unwrap();
    let step = Duration::hours(1);
    let zone = chrono_tz::Asia::Tokyo;
    rebuy::simulate::simulate_with(mode, &engine, copied, (from, to), step, zone, |_, _| {})
        .await
        .unwrap();
    let rows = rows(&sim).await.into_iter().collect();
    (sim, rows)
}

#[tokio::test]
async fn simulated_mail_keeps_its_body_for_a_sample_of_customers_unless_asked_for_all() {
    let shop = thanks_shop(FIRST_THANKS);
    let store = shop.store().await;
    let n = 2 * rebuy::store::BODY_SAMPLE as usize + 500;
    let ids: Vec<String> = (0..n).map(|c| format!("C{c:05}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    add_customers(&store, &id_refs).await;
    let orders: Vec<NewOrder> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let at = utc("2026-03-01T01:00:00Z") + Duration::minutes(i as i64 % 5000);
            order(&format!("O-{id}"), id, &at.to_rfc3339(), 3000)
        })
        .collect();
    add_orders(&store, &orders).await;
    // A secret of the shop's own, so that every copy renders the same unsubscribe links.
    store
        .set_setting("unsubscribe_secret", "0123456789abcdef")
        .await
        .unwrap();
    store.close().await;

    let (sim, replayed) = simulate_sample(&shop, Mode::Auto, false).await;
    assert_eq!(replayed.len(), n, "one thank-you each");
    let sample = sim
        .body_sample()
        .await
        .unwrap()
        .expect("a sample by default");
    // One customer in two (2,500 / 1,000 rounds down to 2), by their order in the table.
    assert_eq!(sample.len(), n / 2);
    for r in &replayed {
        assert_eq!(
            r.4,
            format!("thanks {}", r.1),
            "every message keeps its subject"
        );
        assert_eq!(
            r.5.is_empty(),
            !sample.contains(&r.1),
            "the body is kept exactly for the sample: {r:?}"
        );
    }
    // The ticked way keeps the same bodies.
    let (_, ticked) = simulate_sample(&shop, Mode::Ticks, false).await;
    let differ = ticked.iter().zip(&replayed).filter(|(a, b)| a != b).count();
    assert!(
        ticked.len() == replayed.len() && differ == 0,
        "{differ} rows differ"
    );
    // --keep-bodies keeps them all, both ways.
    for mode in [Mode::Auto, Mode::Ticks] {
        let (sim, all) = simulate_sample(&shop, mode, true).await;
        assert!(sim.body_sample().await.unwrap().is_none());
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|r| r.5.contains(&r.1)), "{mode:?}");
    }
}

#[tokio::test]
async fn a_shop_whose_database_path_has_url_characters_is_opened_and_back_tested() {
    let mut shop = thanks_shop(FIRST_THANKS);
    // A folder name a URL would cut short at `?` or `#`, or decode at `%`.
    let dir = shop.path().join("shop #1?a=%41");
    std::fs::create_dir_all(&dir).unwrap();
    shop.config.database = dir.join("rebuy.db").display().to_string();
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    let orders = [
        order("H1", "C1", "2026-02-01T01:00:00Z", 3000),
        order("O1", "C2", "2026-03-02T01:00:00Z", 3000),
    ];
    add_orders(&store, &orders).await;
    store.close().await;
    assert!(
        dir.join("rebuy.db").exists(),
        "the file is where the path says"
    );

    let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-03-10T00:00:00Z"));
    let sim_path = dir.join("sim #2.db");
    let (sim, copied) =
        rebuy::simulate::prepare(&sim_path, &shop.config.database, (from, to), false)
            .await
            .unwrap();
    let engine = shop.app().engine(&sim).await.unwrap().unwrap();
    let run = rebuy::simulate::simulate(
        &engine,
        copied,
        from,
        to,
        Duration::hours(1),
        chrono_tz::Asia::Tokyo,
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(run.replayed);
    assert_eq!(
        (run.source.history_orders, run.source.period_orders),
        (1, 1)
    );
    let sent: Vec<Row> = rows(&sim).await.into_iter().collect();
    assert_eq!(sent.len(), 1, "C2's first order is thanked: {sent:?}");
    assert_eq!(sent[0].1, "C2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_writes_fail_fails_with_the_error() {
    let every_order = r#"
id: thanks
trigger: order_placed
reentry: always
steps:
  - id: thank-you
    wait: 1h
    send: { template: t, subject: "thanks {{ customer.id }}" }
"#;
    let shop = thanks_shop(every_order);
    let store = shop.store().await;
    add_customers(&store, &["C1"]).await;
    let orders: Vec<NewOrder> = (0..30)
        .map(|d| {
            let at = utc("2026-03-01T01:00:00Z") + Duration::days(d);
            order(&format!("O{d}"), "C1", &at.to_rfc3339(), 3000)
        })
        .collect();
    add_orders(&store, &orders).await;
    store.close().await;

    let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-03-31T00:00:00Z"));
    let path = shop.file("sim.db");
    let (sim, copied) = rebuy::simulate::prepare(&path, &shop.config.database, (from, to), false)
        .await
        .unwrap();
    // The disk "fills up": every message write fails from now on.
    on_sqlite_file(
        &path.display().to_string(),
        "CREATE TRIGGER full BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .await;
    let engine = shop.app().engine(&sim).await.unwrap().unwrap();
    let mut done = 0;
    let err = rebuy::simulate::simulate_with(
        Mode::Replay { batch: 1 },
        &engine,
        copied,
        (from, to),
        Duration::hours(1),
        chrono_tz::Asia::Tokyo,
        |d, _| done = d,
    )
    .await
    .expect_err("the failed write is reported");
    assert!(format!("{err:#}").contains("disk full"), "{err:#}");
    // Reported at the first flush after it failed, which is before the month's end on any
    // machine but a very slow one (not asserted: the writer runs beside the ticks).
    eprintln!("the failed write stopped the replay after {done} of 720 ticks");
}

#[tokio::test]
async fn a_shop_file_without_a_write_ahead_log_is_back_tested() {
    crate::sqlite_only!("it changes the SQLite file's journal mode");
    let shop = thanks_shop(FIRST_THANKS);
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    let placed =
        [("O1", "C1"), ("O2", "C2")].map(|(o, c)| order(o, c, "2026-03-02T01:00:00Z", 3000));
    add_orders(&store, &placed).await;
    store.close().await;
    // A shop file in the rollback-journal mode (restored from a copy made by another tool):
    // a reader cannot switch it to WAL, and the replay reads the shop through one.
    on_sqlite_file(&shop.config.database, "PRAGMA journal_mode = DELETE").await;
    let (from, to) = (utc("2026-03-01T00:00:00Z"), utc("2026-03-10T00:00:00Z"));
    let path = shop.file("sim.db");
    let (sim, copied) = rebuy::simulate::prepare(&path, &shop.config.database, (from, to), false)
        .await
        .unwrap();
    let engine = shop.app().engine(&sim).await.unwrap().unwrap();
    let run = rebuy::simulate::simulate_with(
        Mode::Replay { batch: 1 },
        &engine,
        copied,
        (from, to),
        Duration::hours(1),
        chrono_tz::Asia::Tokyo,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(run.simulated, 2, "{run:?}");
    sim.close().await;
}

/// Runs `sql` on the SQLite file at `path` through a connection of its own, outside rebuy.
async fn on_sqlite_file(path: &str, sql: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}
