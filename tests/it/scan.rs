//! The tick reads new orders in two ways (in order of arrival, or customer by customer when
//! most of the history is new). Both must decide exactly the same: the same enrollments,
//! goals and messages, over a generated shop fed in bulk and then day by day. A customer
//! pass cut short and done again must change nothing.

use crate::helpers::*;
use chrono::Duration;
use rebuy::clock::to_millis;
use rebuy::demo::{demo_start, generate_shop, Shop};
use rebuy::engine::OrderScan;
use rebuy::store::Store;
use sqlx::sqlite::SqlitePool;

/// Scenarios without any condition: the tick counts an order's position only as far as the
/// triggers need.
const PLAIN: &[(&str, &str)] = &[
    (
        "third.yaml",
        r#"
id: third
trigger: { nth_order: 3 }
goal: { event: order_placed, within: 20d }
steps:
  - { id: a, wait: 2d, send: { template: t, subject: "a" } }
  - { id: b, wait: 5d, at: "09:30", send: { template: t, subject: "b" } }
"#,
    ),
    (
        "every.yaml",
        r#"
id: every
trigger: order_placed
reentry: 30d
steps:
  - { id: a, wait: 1d, at: "10:00", send: { template: t, subject: "a" } }
"#,
    ),
    (
        "first.yaml",
        r#"
id: first
trigger: first_order
goal: { event: order_placed, within: 45d }
steps:
  - { id: a, wait: 1d, send: { template: t, subject: "a" } }
  - { id: b, wait: 25d, send: { template: t, subject: "b" } }
"#,
    ),
];

const TEMPLATES: &[(&str, &str)] = &[
    ("t.html", "<p>{{ step.id }}</p>"),
    ("t.txt", "{{ step.id }}"),
];

type Files = Vec<(String, String)>;

/// The sample scenarios and templates that ship in the repository (audiences and goal
/// conditions that read the whole order).
fn samples() -> (Files, Files) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |dir: &str| {
        let mut files: Vec<(String, String)> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    (read("scenarios"), read("templates"))
}

type EnrollmentDump = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Everything the tick decided, in a comparable form.
async fn dump(shop: &TestShop) -> (Vec<String>, Vec<String>) {
    let pool = SqlitePool::connect(&format!("sqlite://{}", shop.config.database))
        .await
        .unwrap();
    let enrollments: Vec<EnrollmentDump> = sqlx::query_as(
        "SELECT scenario_id, customer_id, trigger_key, state, next_step, next_due_at, \
             goal_reached_at, goal_order_id FROM enrollments \
             ORDER BY scenario_id, customer_id, trigger_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let messages: Vec<(String, String, String, i64, String, i64)> = sqlx::query_as(
        "SELECT e.scenario_id, e.customer_id, e.trigger_key, o.step_index, o.status, o.due_at \
         FROM outbox o JOIN enrollments e ON e.id = o.enrollment_id \
         ORDER BY e.scenario_id, e.customer_id, e.trigger_key, o.step_index",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    (
        enrollments.iter().map(|r| format!("{r:?}")).collect(),
        messages.iter().map(|r| format!("{r:?}")).collect(),
    )
}

/// Feeds `shop` into a fresh store: everything before day 60 at once, then a day at a time,
/// ticking with `scan` after each feed. Returns the store's test shop for inspection.
async fn run(
    scenarios: &[(&str, &str)],
    templates: &[(&str, &str)],
    shop: &Shop,
    scan: OrderScan,
) -> TestShop {
    let test = TestShop::new(scenarios, templates, None);
    let store = test.store().await;
    store.upsert_customers(&shop.customers, 0).await.unwrap();
    let daemon = test.daemon(&store).await;
    let engine = daemon.engine.with_order_scan(scan);
    let start = demo_start();
    let mut fed = 0;
    for day in 60..=120 {
        let now = start + Duration::days(day);
        let upto = shop
            .orders
            .partition_point(|o| o.placed_at <= to_millis(now));
        add_orders(&store, &shop.orders[fed..upto]).await;
        fed = upto;
        engine.tick(now).await.unwrap();
    }
    assert_eq!(fed, shop.orders.len(), "the whole shop was fed");
    store.close().await;
    test
}

async fn same_decisions(scenarios: &[(&str, &str)], templates: &[(&str, &str)]) {
    let shop = generate_shop(300, demo_start(), 120, 11);
    let arrival = dump(&run(scenarios, templates, &shop, OrderScan::ByArrival).await).await;
    let customer = dump(&run(scenarios, templates, &shop, OrderScan::ByCustomer).await).await;
    assert!(arrival.0.len() > 100, "enrollments: {}", arrival.0.len());
    assert!(arrival.1.len() > 100, "messages: {}", arrival.1.len());
    assert!(
        arrival.0.iter().any(|e| e.contains("\"goal\"")),
        "some customers reached a goal"
    );
    assert_eq!(arrival.0, customer.0, "enrollments differ");
    assert_eq!(arrival.1, customer.1, "messages differ");
}

#[tokio::test]
async fn both_scans_decide_the_same_without_conditions() {
    crate::sqlite_only!("it reads the SQLite file with a pool of its own");
    same_decisions(PLAIN, TEMPLATES).await;
}

#[tokio::test]
async fn both_scans_decide_the_same_for_the_sample_scenarios() {
    crate::sqlite_only!("it reads the SQLite file with a pool of its own");
    let (s, t) = samples();
    let s: Vec<(&str, &str)> = s.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let t: Vec<(&str, &str)> = t.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    same_decisions(&s, &t).await;
}

#[tokio::test]
async fn a_customer_pass_done_again_changes_nothing() {
    crate::sqlite_only!("it reads the SQLite file with a pool of its own");
    let shop = generate_shop(200, demo_start(), 120, 5);
    let test = TestShop::new(PLAIN, TEMPLATES, None);
    let store: Store = test.store().await;
    store.upsert_customers(&shop.customers, 0).await.unwrap();
    add_orders(&store, &shop.orders).await;
    let engine = test
        .daemon(&store)
        .await
        .engine
        .with_order_scan(OrderScan::ByCustomer);
    let now = demo_start() + Duration::days(120);
    let first = engine.tick(now).await.unwrap();
    assert!(first.enrolled > 100, "{first:?}");
    let before = dump(&test).await;

    // As if the process had died before moving the cursor: the pass runs again.
    let pool = SqlitePool::connect(&format!("sqlite://{}", test.config.database))
        .await
        .unwrap();
    sqlx::query("UPDATE settings SET value = '0' WHERE key = 'order_cursor'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let again = engine.tick(now).await.unwrap();
    assert_eq!(again.enrolled, 0, "{again:?}");
    assert_eq!(again.queued, 0, "{again:?}");
    assert_eq!(dump(&test).await, before);
}
