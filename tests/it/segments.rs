//! Named segments over a real database: each operator of the condition language on a small
//! hand-made shop whose members are written out, the SQL form against the Rust reference over
//! random shops, and membership changes turned into `segment_entered` enrollments exactly once.

use crate::helpers::*;
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rebuy::refresh::{evaluate_segments, refresh};
use rebuy::segment::eval::{matches, FactEvent, FactOrder, Facts};
use rebuy::segment::{compile_for, lang, Window};
use rebuy::store::{NewCustomer, NewEvent, NewOrder, Store};
use std::collections::BTreeMap;

const ZONE: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

fn bought(id: &str, customer: &str, date: &str, items: &[(&str, &str)], total: i64) -> NewOrder {
    // Noon in Tokyo.
    let mut o = order(id, customer, &format!("{date}T03:00:00Z"), total);
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(sku, category)| {
            serde_json::json!({"sku": sku, "name": sku, "category": category, "quantity": 1, "unit_price": total})
        })
        .collect();
    o.items = serde_json::Value::Array(items).to_string();
    o
}

/// A shop in which every condition below has members that can be worked out by hand.
/// As of 2026-11-20 (Tokyo):
/// - A: gold, age 34, locale ja; lotion 06-01, cleansing 10-01, lotion 11-15 (3 orders)
/// - B: silver; cleansing 05-01, and an order on 11-21, after the as-of date
/// - C: no attributes; serum on 11-19 and 11-20
/// - D: gold, no orders
/// - E: lotion 2025-01-10 and 2025-02-10
async fn hand_made_shop(store: &Store) -> Vec<NewOrder> {
    let mut a = customer(
        "A",
        "a@example.jp",
        "A",
        "Asia/Tokyo",
        r#"{"plan":"gold","age":34}"#,
    );
    a.locale = Some("ja".into());
    let customers: Vec<NewCustomer> = vec![
        a,
        customer(
            "B",
            "b@example.jp",
            "B",
            "Asia/Tokyo",
            r#"{"plan":"silver"}"#,
        ),
        customer("C", "c@example.jp", "C", "Asia/Tokyo", "{}"),
        customer("D", "d@example.jp", "D", "Asia/Tokyo", r#"{"plan":"gold"}"#),
        customer("E", "e@example.jp", "E", "Asia/Tokyo", "{}"),
    ];
    store.upsert_customers(&customers, 0).await.unwrap();
    let orders = vec![
        bought("A1", "A", "2026-06-01", &[("LO-01", "lotion")], 3000),
        bought("A2", "A", "2026-10-01", &[("CL-02", "cleansing")], 2000),
        bought(
            "A3",
            "A",
            "2026-11-15",
            &[("LO-01", "lotion"), ("CL-02", "cleansing")],
            5000,
        ),
        bought("B1", "B", "2026-05-01", &[("CL-02", "cleansing")], 2000),
        bought("B2", "B", "2026-11-21", &[("LO-01", "lotion")], 3000),
        bought("C1", "C", "2026-11-19", &[("SE-03", "serum")], 8000),
        bought("C2", "C", "2026-11-20", &[("SE-03", "serum")], 8000),
        bought("E1", "E", "2025-01-10", &[("LO-01", "lotion")], 3000),
        bought("E2", "E", "2025-02-10", &[("LO-01", "lotion")], 3000),
    ];
    add_orders(store, &orders).await;
    orders
}

/// A custom event at noon in Tokyo on `date`.
fn event(customer: &str, name: &str, date: &str, n: usize) -> NewEvent {
    NewEvent {
        id: format!("{customer}-{name}-{date}-{n}"),
        customer_id: customer.into(),
        name: name.into(),
        at: rebuy::clock::to_millis(utc(&format!("{date}T03:00:00Z"))),
        properties: "{}".into(),
    }
}

/// The events of the hand-made shop: A viewed a product three times in the week before the
/// as-of date and filled a cart; B viewed once in the week, and once after the as-of date; C
/// viewed twice in October.
fn hand_made_events() -> Vec<NewEvent> {
    vec![
        event("A", "product_viewed", "2026-11-15", 0),
        event("A", "product_viewed", "2026-11-17", 0),
        event("A", "product_viewed", "2026-11-20", 0),
        event("A", "cart_added", "2026-11-20", 0),
        event("B", "product_viewed", "2026-11-14", 0),
        event("B", "product_viewed", "2026-11-21", 0),
        event("C", "product_viewed", "2026-10-01", 0),
        event("C", "product_viewed", "2026-10-01", 1),
    ]
}

/// The members of `condition` by the SQL form, and by the Rust reference.
async fn members_both_ways(
    store: &Store,
    (orders, events): (&[NewOrder], &[NewEvent]),
    condition: &str,
    as_of: NaiveDate,
) -> (Vec<String>, Vec<String>) {
    let cond = lang::parse(condition).unwrap_or_else(|e| panic!("{condition}: {e:?}"));
    let window = Window::new(as_of, ZONE);
    let by_sql = store
        .segment_query(&compile_for(&cond, &window, store.segment_dialect()))
        .await
        .unwrap();
    let ids = all_customer_ids(store).await;
    let customers = store.customers_with_metrics(&ids).await.unwrap();
    let mut by_rust: Vec<String> = customers
        .values()
        .filter(|c| {
            let mine = fact_orders(orders, &c.id);
            let did: Vec<FactEvent> = events
                .iter()
                .filter(|e| e.customer_id == c.id)
                .map(|e| FactEvent {
                    name: e.name.clone(),
                    at: e.at,
                })
                .collect();
            let facts = Facts {
                customer: c,
                metrics: c.metrics.as_deref(),
                orders: &mine,
                events: &did,
            };
            matches(&cond, &facts, &window)
        })
        .map(|c| c.id.clone())
        .collect();
    by_rust.sort();
    (by_sql, by_rust)
}

async fn all_customer_ids(store: &Store) -> Vec<String> {
    let everyone = lang::parse("customer.orders_count >= 0").unwrap();
    let window = Window::new(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(), ZONE);
    store
        .segment_query(&compile_for(&everyone, &window, store.segment_dialect()))
        .await
        .unwrap()
}

fn fact_orders(orders: &[NewOrder], customer: &str) -> Vec<FactOrder> {
    orders
        .iter()
        .filter(|o| o.customer_id == customer)
        .map(|o| {
            let items: Vec<serde_json::Value> = serde_json::from_str(&o.items).unwrap();
            let field = |k: &str| -> Vec<String> {
                items
                    .iter()
                    .map(|i| i[k].as_str().unwrap_or_default().to_string())
                    .collect()
            };
            FactOrder {
                placed_at: o.placed_at,
                skus: field("sku"),
                categories: field("category"),
            }
        })
        .collect()
}

#[tokio::test]
async fn each_operator_selects_the_members_worked_out_by_hand() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let orders = hand_made_shop(&store).await;
    let events = hand_made_events();
    store.insert_events(&events, 0).await.unwrap();
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    refresh(&store, as_of, ZONE, 0, &[], &|_| {}).await.unwrap();
    let cases: &[(&str, &[&str])] = &[
        // metrics; a customer without metrics (D) never matches a comparison...
        ("orders >= 2", &["A", "C", "E"]),
        ("orders < 2", &["B"]),
        // ...so its negation does
        ("not orders >= 2", &["B", "D"]),
        ("days_since_last <= 30", &["A", "C"]),
        ("last_order >= '2026-11-01'", &["A", "C"]),
        ("total_spent == 16000", &["C"]),
        ("average_order_value > 3000.5", &["A", "C"]),
        // the models need more history than five customers: no prediction matches
        ("p_alive < 0.5", &[]),
        ("not p_alive < 0.5", &["A", "B", "C", "D", "E"]),
        // customer columns and attributes
        ("customer.orders_count == 0", &["D"]),
        ("customer.locale == 'ja'", &["A"]),
        ("customer.attributes.plan == 'gold'", &["A", "D"]),
        ("customer.attributes.plan != 'gold'", &["B"]),
        (
            "customer.attributes.plan in ['gold', 'silver']",
            &["A", "B", "D"],
        ),
        ("customer.attributes.age >= 30", &["A"]),
        // purchase history
        ("bought(sku: 'LO-01')", &["A", "E"]),
        ("bought(category: 'lotion', within: 30d)", &["A"]),
        ("bought(category: 'cleansing', within: 60d)", &["A"]),
        (
            "bought(category: 'cleansing') and not bought(category: 'lotion')",
            &["B"],
        ),
        ("bought(sku: 'SE-03', within: 1d)", &["C"]),
        // the share of orders with the category: A 2 of 3, E 2 of 2; B and C none of theirs;
        // D has no order, so no share at all
        ("affinity(category: 'lotion') > 0.5", &["A", "E"]),
        ("affinity(category: 'lotion') == 0", &["B", "C"]),
        ("affinity(category: 'lotion', within: 30d) >= 1", &["A"]),
        ("not affinity(category: 'serum') > 0.5", &["A", "B", "D", "E"]),
        ("ordered_within(7d)", &["A", "C"]),
        // B's order of 11-21 is after the as-of date
        ("ordered_within(1d)", &["C"]),
        ("no_order_within(180d)", &["B", "D", "E"]),
        ("orders_within(365d) >= 2", &["A", "C"]),
        ("orders_within(30d) == 1", &["A"]),
        // custom events; B's second view is after the as-of date
        (
            "did(event: 'product_viewed', within: 7d, count: '>= 3')",
            &["A"],
        ),
        ("did(event: 'product_viewed', within: 7d)", &["A", "B"]),
        ("did(event: 'product_viewed', count: 2)", &["A", "C"]),
        (
            "did(event: 'product_viewed', count: '== 0')",
            &["D", "E"],
        ),
        (
            "did(event: 'product_viewed', within: 30d, count: '< 3') and not did(event: 'cart_added')",
            &["B", "C", "D", "E"],
        ),
        // and, or, not, parentheses
        (
            "(orders >= 2 or customer.orders_count == 0) and not ordered_within(7d)",
            &["D", "E"],
        ),
        (
            "orders >= 3 or customer.attributes.plan == 'silver'",
            &["A", "B"],
        ),
    ];
    for (condition, expected) in cases {
        let (by_sql, by_rust) =
            members_both_ways(&store, (&orders, &events), condition, as_of).await;
        assert_eq!(by_sql, *expected, "SQL: {condition}");
        assert_eq!(by_rust, *expected, "Rust: {condition}");
    }
}

/// A random condition over the fields and functions a random shop below can exercise.
fn random_condition(rng: &mut StdRng, depth: u32) -> String {
    if depth < 2 && rng.random_bool(0.35) {
        let word = if rng.random_bool(0.5) { "and" } else { "or" };
        let a = random_condition(rng, depth + 1);
        let b = random_condition(rng, depth + 1);
        let joined = format!("({a} {word} {b})");
        return if rng.random_bool(0.2) {
            format!("not {joined}")
        } else {
            joined
        };
    }
    let ops = ["<", "<=", ">", ">=", "==", "!="];
    let op = ops[rng.random_range(0..ops.len())];
    let eq = ["==", "!="][rng.random_range(0..2)];
    let sku = ["S1", "S2", "S3", "S4"][rng.random_range(0..4)];
    let category = ["lotion", "serum", "soap"][rng.random_range(0..3)];
    let days = [1, 7, 30, 90, 365][rng.random_range(0..5)];
    let event = ["viewed", "cart"][rng.random_range(0..2)];
    match rng.random_range(0..20) {
        18 => format!(
            "affinity(category: '{category}', within: {days}d) {op} 0.{}",
            rng.random_range(0..10)
        ),
        19 => format!(
            "affinity(category: '{category}') {op} {}",
            rng.random_range(0..2)
        ),
        0 => format!("orders {op} {}", rng.random_range(0..5)),
        1 => format!("days_since_last {op} {}", rng.random_range(0..400)),
        2 => format!("average_order_value {op} {}.5", rng.random_range(500..6000)),
        3 => format!("r_score {op} {}", rng.random_range(1..6)),
        4 => format!("f_score {op} {}", rng.random_range(1..6)),
        5 => format!(
            "rfm_segment {eq} \"{}\"",
            rebuy::metrics::SEGMENTS[rng.random_range(0..10)]
        ),
        6 => format!("last_order {op} '2026-{:02}-15'", rng.random_range(1..12)),
        7 => format!("p_alive {op} 0.{}", rng.random_range(1..10)),
        8 => format!("customer.attributes.plan {eq} 'gold'"),
        9 => format!("customer.attributes.age {op} {}", rng.random_range(20..60)),
        10 => format!("customer.locale {eq} 'ja'"),
        11 => format!("bought(sku: '{sku}')"),
        12 => format!("bought(category: '{category}', within: {days}d)"),
        13 => format!("ordered_within({days}d)"),
        14 => format!("no_order_within({days}d)"),
        15 => format!(
            "did(event: '{event}', within: {days}d, count: '{op} {}')",
            rng.random_range(0..4)
        ),
        16 => format!("did(event: '{event}')"),
        _ => format!("orders_within({days}d) {op} {}", rng.random_range(0..4)),
    }
}

async fn random_shop(store: &Store, rng: &mut StdRng) -> (Vec<NewOrder>, Vec<NewEvent>) {
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    let mut events = Vec::new();
    for i in 0..40 {
        let id = format!("C{i:02}");
        let mut attrs = serde_json::Map::new();
        match rng.random_range(0..4) {
            0 => {}
            1 => {
                attrs.insert("plan".into(), "gold".into());
            }
            2 => {
                attrs.insert("plan".into(), "silver".into());
            }
            _ => {
                // a number where text is expected: SQLite orders numbers before text
                attrs.insert("plan".into(), 7.into());
            }
        }
        match rng.random_range(0..3) {
            0 => {}
            1 => {
                attrs.insert("age".into(), rng.random_range(18..70).into());
            }
            _ => {
                attrs.insert("age".into(), "unknown".into());
            }
        }
        let mut c = customer(
            &id,
            &format!("{id}@example.jp"),
            &id,
            "Asia/Tokyo",
            &serde_json::Value::Object(attrs).to_string(),
        );
        c.locale = [None, Some("ja"), Some("en")][rng.random_range(0..3)].map(String::from);
        customers.push(c);
        for k in 0..rng.random_range(0..6) {
            // Around the as-of date, some after it.
            let date = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap()
                + chrono::Duration::days(rng.random_range(0..90));
            let name = ["viewed", "cart"][rng.random_range(0..2)];
            events.push(event(&id, name, &date.to_string(), k));
        }
        for k in 0..rng.random_range(0..7) {
            // From two years before the as-of date to a week after it.
            let date = NaiveDate::from_ymd_opt(2024, 11, 20).unwrap()
                + chrono::Duration::days(rng.random_range(0..737));
            let items: Vec<(&str, &str)> = (0..rng.random_range(1..3))
                .map(|_| {
                    (
                        ["S1", "S2", "S3", "S4"][rng.random_range(0..4)],
                        ["lotion", "serum", "soap"][rng.random_range(0..3)],
                    )
                })
                .collect();
            orders.push(bought(
                &format!("{id}-{k}"),
                &id,
                &date.to_string(),
                &items,
                rng.random_range(500..9000),
            ));
        }
    }
    store.upsert_customers(&customers, 0).await.unwrap();
    add_orders(store, &orders).await;
    store.insert_events(&events, 0).await.unwrap();
    (orders, events)
}

#[tokio::test]
async fn the_sql_form_selects_exactly_whom_the_rust_reference_selects_on_random_shops() {
    let mut rng = StdRng::seed_from_u64(20261124);
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let mut compared = 0;
    let mut nonempty = 0;
    for _ in 0..6 {
        let shop = TestShop::new(&[], &[], None);
        let store = shop.store().await;
        let (orders, events) = random_shop(&store, &mut rng).await;
        refresh(&store, as_of, ZONE, 0, &[], &|_| {}).await.unwrap();
        for _ in 0..80 {
            let condition = random_condition(&mut rng, 0);
            let (by_sql, by_rust) =
                members_both_ways(&store, (&orders, &events), &condition, as_of).await;
            assert_eq!(by_sql, by_rust, "{condition}");
            compared += 1;
            nonempty += usize::from(!by_sql.is_empty() && by_sql.len() < 40);
        }
    }
    // The generator must produce conditions that split shops, not only all-or-nothing ones.
    assert!(nonempty * 2 > compared, "{nonempty} of {compared}");
}

const SEGMENTS: &str = "segments:\n  - name: recent\n    where: ordered_within(30d)\n";
const WELCOME_BACK: &str = "id: back\ntrigger: { segment_entered: recent }\nreentry: always\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ customer.segments | join(',') }}\" }\n";

/// Evaluates the segments as of `day` at 15:00 UTC (midnight in Tokyo) and ticks then;
/// returns what the evaluation changed.
async fn evaluate_and_tick(
    shop: &TestShop,
    store: &Store,
    daemon: &rebuy::daemon::Daemon,
    day: &str,
) -> (u64, u64) {
    let now = format!("{day}T15:00:00Z");
    let changed = evaluate(shop, store, day, &now).await;
    daemon.engine.tick(utc(&now)).await.unwrap();
    changed
}

async fn evaluate(shop: &TestShop, store: &Store, as_of: &str, now: &str) -> (u64, u64) {
    let report = shop.app().check();
    let changes = evaluate_segments(
        store,
        &report.segments,
        NaiveDate::parse_from_str(as_of, "%Y-%m-%d").unwrap(),
        ZONE,
        utc(now).timestamp_millis(),
    )
    .await
    .unwrap();
    (changes[0].1.entered, changes[0].1.exited)
}

#[tokio::test]
async fn segment_entered_fires_once_per_entry_and_again_after_a_return() {
    let shop = TestShop::new(
        &[("segments.yaml", SEGMENTS), ("back.yaml", WELCOME_BACK)],
        &[("t.html", "<p>hi</p>"), ("t.txt", "hi")],
        None,
    );
    let store = shop.store().await;
    add_customers(&store, &["A", "B"]).await;
    add_orders(&store, &[order("A1", "A", "2026-01-05T03:00:00Z", 1000)]).await;
    let daemon = shop.daemon(&store).await;
    let enrolled = || async {
        store
            .enrollments_for_customers(&["A".into(), "B".into()])
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.scenario_id == "back")
            .map(|e| e.customer_id)
            .collect::<Vec<_>>()
    };
    // The first evaluation is a baseline: A is a member, nothing fires.
    assert_eq!(
        evaluate_and_tick(&shop, &store, &daemon, "2026-01-10").await,
        (0, 0)
    );
    assert!(enrolled().await.is_empty());
    // B orders: B enters; one enrollment.
    add_orders(&store, &[order("B1", "B", "2026-01-11T03:00:00Z", 1000)]).await;
    assert_eq!(
        evaluate_and_tick(&shop, &store, &daemon, "2026-01-11").await,
        (1, 0)
    );
    assert_eq!(enrolled().await, vec!["B".to_string()]);
    // Unchanged membership, evaluated again and ticked again: nothing new.
    assert_eq!(
        evaluate_and_tick(&shop, &store, &daemon, "2026-01-12").await,
        (0, 0)
    );
    daemon
        .engine
        .tick(utc("2026-01-12T16:00:00Z"))
        .await
        .unwrap();
    assert_eq!(enrolled().await, vec!["B".to_string()]);
    // A month on both have left (two exits, no enrollment)...
    assert_eq!(
        evaluate_and_tick(&shop, &store, &daemon, "2026-02-20").await,
        (0, 2)
    );
    assert_eq!(enrolled().await.len(), 1);
    // ...and A comes back: A enters and, with `reentry: always`, is enrolled.
    add_orders(&store, &[order("A2", "A", "2026-02-21T03:00:00Z", 1000)]).await;
    assert_eq!(
        evaluate_and_tick(&shop, &store, &daemon, "2026-02-21").await,
        (1, 0)
    );
    let mut who = enrolled().await;
    who.sort();
    assert_eq!(who, vec!["A".to_string(), "B".to_string()]);
    // The mail sees the segment names.
    let report = daemon
        .engine
        .tick(utc("2026-02-22T15:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        report.queued, 0,
        "both were queued when due at their triggers"
    );
    let subjects: Vec<String> = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert_eq!(subjects, vec!["recent".to_string(), "recent".to_string()]);
    // One size per segment per evaluated day, for the segments page's trend.
    let recent: Vec<(String, i64)> = store
        .segment_history()
        .await
        .unwrap()
        .into_iter()
        .filter(|(segment, _, _)| segment == "recent")
        .map(|(_, day, n)| (day, n))
        .collect();
    assert_eq!(
        recent,
        [
            ("2026-01-10", 1),
            ("2026-01-11", 2),
            ("2026-01-12", 2),
            ("2026-02-20", 0),
            ("2026-02-21", 1)
        ]
        .map(|(d, n)| (d.to_string(), n))
    );
}

#[tokio::test]
async fn an_audience_segment_limits_an_order_trigger_to_its_members() {
    let segments = "segments:\n  - name: gold\n    where: customer.attributes.plan == 'gold'\n";
    let scenario = "id: s\ntrigger: order_placed\naudience: { segment: gold }\nsteps:\n  - id: a\n    send: { template: t, subject: x }\n";
    let shop = TestShop::new(
        &[("segments.yaml", segments), ("s.yaml", scenario)],
        &[("t.html", "<p>hi</p>"), ("t.txt", "hi")],
        None,
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("G", "g@example.jp", "G", "Asia/Tokyo", r#"{"plan":"gold"}"#),
                customer(
                    "S",
                    "s@example.jp",
                    "S",
                    "Asia/Tokyo",
                    r#"{"plan":"silver"}"#,
                ),
            ],
            0,
        )
        .await
        .unwrap();
    evaluate(&shop, &store, "2026-03-01", "2026-03-01T00:00:00Z").await;
    add_orders(
        &store,
        &[
            order("G1", "G", "2026-03-01T03:00:00Z", 1000),
            order("S1", "S", "2026-03-01T03:00:00Z", 1000),
        ],
    )
    .await;
    // A preview's random customer before anyone is enrolled: from the audience's segment.
    use rebuy::store::Picked;
    for pick in 0..6 {
        assert_eq!(
            store
                .random_customer("s", Some("gold"), pick)
                .await
                .unwrap(),
            Some(("G".to_string(), Picked::Segment))
        );
    }
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-03-01T04:00:00Z"))
        .await
        .unwrap();
    let who: Vec<String> = store
        .enrollments_for_customers(&["G".into(), "S".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.customer_id)
        .collect();
    assert_eq!(who, vec!["G".to_string()]);
    // Once enrolled, from the enrolled; a scenario with neither: anyone, each in turn.
    assert_eq!(
        store.random_customer("s", Some("gold"), 7).await.unwrap(),
        Some(("G".to_string(), Picked::Enrolled))
    );
    let mut anyone = Vec::new();
    for pick in 0..2 {
        let (c, from) = store
            .random_customer("t", None, pick)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, Picked::Anyone);
        anyone.push(c);
    }
    anyone.sort();
    assert_eq!(anyone, ["G", "S"]);
    assert_eq!(
        store.random_customer("t", Some("nobody"), 0).await.unwrap(),
        None
    );
}

#[test]
fn bad_segment_files_and_references_get_located_errors() {
    let segments = "segments:\n  - name: vip\n    where: \"p_alive < 0.3 and predicted_cvl >= 20000\"\n  - name: typed\n    where: \"rfm_segment == 3\"\n  - name: ok\n    where: orders >= 2\n";
    let scenario = "id: s\ntrigger: { segment_entered: vipp }\naudience: { segment: nobody }\nsteps:\n  - id: a\n    send: { template: t, subject: x }\n";
    let shop = TestShop::new(
        &[("segments.yaml", segments), ("s.yaml", scenario)],
        &[("t.html", "<p>hi</p>"), ("t.txt", "hi")],
        None,
    );
    let report = shop.app().check();
    let shown: BTreeMap<String, String> = report
        .diagnostics
        .iter()
        .map(|d| {
            let file = std::path::Path::new(&d.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            (
                format!("{file}:{}:{}", d.line, d.col),
                format!("{} / {}", d.message, d.hint.clone().unwrap_or_default()),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("segments.yaml:3:31", "segment condition: unknown field 'predicted_cvl' / did you mean 'predicted_clv'?"),
        ("segments.yaml:5:28", "segment condition: 'rfm_segment' is text, found 3 / compare it with quoted text, e.g. == 'ja'"),
        ("s.yaml:2:29", "no segment 'vipp' / segments: ok"),
        ("s.yaml:3:22", "no segment 'nobody' / segments: ok"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(shown, expected);
    // The valid segment is kept, the broken ones are not.
    let names: Vec<&str> = report.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["ok"]);
}

#[tokio::test]
async fn the_shipped_rfm_segments_select_exactly_the_customers_of_each_rfm_segment() {
    const SHIPPED: &str = include_str!("../../scenarios/segments.yaml");
    let doc = rebuy::yaml::parse("segments.yaml", SHIPPED).unwrap();
    let (segments, diags) = rebuy::segment::parse_segments("segments.yaml", SHIPPED, &doc);
    assert!(diags.is_empty(), "{diags:?}");
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    crate::refresh::cdnow_shop(&store).await;
    let as_of = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    let report = refresh(&store, as_of, ZONE, 0, &segments, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.named_segments.len(), segments.len());
    let mut by_rfm: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, m) in all_metrics(&store).await {
        by_rfm.entry(m).or_default().push(id);
    }
    let mut covered = 0;
    for name in rebuy::metrics::SEGMENTS {
        let shipped = match name {
            "can't lose" => "cant-lose".to_string(),
            other => other.replace(' ', "-"),
        };
        let members = store.segment_members(&shipped).await.unwrap();
        let expected = by_rfm.get(name).cloned().unwrap_or_default();
        assert_eq!(members, expected, "{name}");
        covered += members.len();
    }
    assert_eq!(covered, 2357, "every CDNOW customer is in one RFM segment");
}

async fn all_metrics(store: &Store) -> Vec<(String, String)> {
    use futures::TryStreamExt;
    store
        .metrics_rows()
        .map_ok(|r| (r.customer_id, r.rfm_segment))
        .try_collect()
        .await
        .unwrap()
}

#[test]
fn check_flags_the_order_in_a_scenario_that_has_no_triggering_order() {
    let segments = "segments:\n  - name: lapsed\n    where: no_order_within(90d)\n";
    let no_order = "id: s\ntrigger: { segment_entered: lapsed }\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ order.id }}\" }\n";
    let refill = "id: r\ntrigger: { replenish: -3d }\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ vars.sku }} {{ order.id }}\" }\n";
    let shop = TestShop::new(
        &[
            ("segments.yaml", segments),
            ("s.yaml", no_order),
            ("r.yaml", refill),
        ],
        &[("t.html", "<p>hi</p>"), ("t.txt", "hi")],
        None,
    );
    let messages: Vec<String> = shop
        .app()
        .check()
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    // The segment-triggered one has no order; the replenish one has its order and its vars.
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0]
            .contains("'order.id', but a segment_entered: lapsed scenario has no triggering order"),
        "{messages:?}"
    );
}
