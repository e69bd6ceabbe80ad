//! Recommendations from stored orders, through the real binary and a real SQLite file: the
//! offline evaluation on a slice of real orders (UCI Online Retail, tests/fixtures/online-retail)
//! where rebuy's lists must beat popularity clearly and plain cosine co-occurrence, and one
//! customer's list with its reasons.

use std::path::Path;

fn rebuy(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = crate::helpers::binary()
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn shop() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/online-retail");
    std::fs::write(
        dir.path().join("rebuy.yaml"),
        "default_timezone: Europe/London\n",
    )
    .unwrap();
    for f in ["customers", "orders"] {
        let file = fixtures.join(format!("{f}.csv"));
        let (ok, _, err) = rebuy(
            dir.path(),
            &["import", f, file.to_str().unwrap(), "--no-progress"],
        );
        assert!(ok, "{err}");
    }
    dir
}

/// The JSON of `rebuy recommend 13408 --as-of 2011-12-31 --n 5` with `extra` arguments.
fn list_13408(dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec![
        "recommend",
        "13408",
        "--n",
        "5",
        "--as-of",
        "2011-12-31",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = rebuy(dir, &args);
    assert!(ok, "{err}");
    let r = serde_json::from_str(&out).unwrap();
    (out, r)
}

#[test]
fn on_real_orders_rebuy_beats_popularity_and_plain_cosine() {
    let dir = shop();
    let (ok, out, err) = rebuy(
        dir.path(),
        &[
            "recommend",
            "evaluate",
            "--split-at",
            "2011-09-01",
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let map = |who: &str| r[who]["map"].as_f64().unwrap();
    let hits = |who: &str| r[who]["hit_rate"].as_f64().unwrap();
    assert!(r["customers"].as_u64().unwrap() >= 250, "{r}");
    assert!(map("rebuy") > 1.5 * map("popularity"), "{r}");
    assert!(map("rebuy") >= map("cosine"), "{r}");
    assert!(
        hits("rebuy") > hits("popularity") && hits("rebuy") >= hits("cosine"),
        "{r}"
    );

    // A split outside the orders is refused with a reason, not an empty table.
    let (ok, _, err) = rebuy(
        dir.path(),
        &["recommend", "evaluate", "--split-at", "2030-01-01"],
    );
    assert!(!ok && err.contains("pick a day inside the orders"), "{err}");
}

#[test]
fn one_customers_list_leaves_out_what_they_bought_and_says_why() {
    let dir = shop();
    let (out, r) = list_13408(dir.path(), &[]);
    let products = r["products"].as_array().unwrap();
    assert_eq!(products.len(), 5, "{r}");
    let orders = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/online-retail/orders.csv"),
    )
    .unwrap();
    let bought: std::collections::HashSet<&str> = orders
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[1] == "13408")
        .map(|f| f[4])
        .collect();
    for p in products {
        let sku = p["sku"].as_str().unwrap();
        assert!(!bought.contains(sku), "{sku} was bought already");
        assert_eq!(p["reason"], "bought_together", "{p}");
        assert!(bought.contains(p["because"].as_str().unwrap()), "{p}");
    }
    assert_eq!(products[0]["score"].as_f64(), Some(1.0));
    // The same day gives the same list.
    let (again, _) = list_13408(dir.path(), &[]);
    assert_eq!(out, again);
}

#[test]
fn the_catalog_keeps_out_products_out_of_stock_or_inactive_and_names_its_bad_rows() {
    let dir = shop();
    let list = |dir: &Path| {
        list_13408(dir, &[]).1["products"]
            .as_array()
            .unwrap()
            .clone()
    };
    let before = list(dir.path());
    let (first, second) = (
        before[0]["sku"].as_str().unwrap().to_string(),
        before[1]["sku"].as_str().unwrap().to_string(),
    );
    // Every product of the orders, the first of the list out of stock, the second inactive.
    let orders = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/online-retail/orders.csv"),
    )
    .unwrap();
    let skus: std::collections::BTreeSet<&str> = orders
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    let mut csv = String::from("sku,name,price,in_stock,active,url\n");
    for s in &skus {
        let (stock, active) = (*s != first, *s != second);
        csv.push_str(&format!(
            "{s},Product {s},450,{stock},{active},https://shop.example/p/{s}\n"
        ));
    }
    std::fs::write(dir.path().join("products.csv"), csv).unwrap();
    let (ok, out, err) = rebuy(
        dir.path(),
        &["import", "products", "products.csv", "--no-progress"],
    );
    assert!(ok, "{out}{err}");
    let after = list(dir.path());
    assert_eq!(after.len(), 5);
    for p in &after {
        assert!(
            p["sku"] != first.as_str() && p["sku"] != second.as_str(),
            "{p}"
        );
        let sku = p["sku"].as_str().unwrap();
        assert_eq!(p["name"], format!("Product {sku}"));
        assert_eq!(p["product"]["url"], format!("https://shop.example/p/{sku}"));
    }
    // A bad row is named by its line, and the others are stored.
    std::fs::write(
        dir.path().join("bad.csv"),
        "sku,name,price\nA1,Good,100\nA2,Bad,12.50\n",
    )
    .unwrap();
    let (ok, out, err) = rebuy(
        dir.path(),
        &["import", "products", "bad.csv", "--no-progress"],
    );
    assert!(!ok);
    assert!(
        format!("{out}{err}").contains("bad.csv:3")
            && format!("{out}{err}").contains("minor units"),
        "{out}{err}"
    );
}

#[test]
fn upsell_offers_the_catalogs_upgrade_of_what_the_customer_bought() {
    let dir = shop();
    // Customer 13408's most recent product gets a bigger version that nobody has bought yet.
    let (_, out, _) = rebuy(
        dir.path(),
        &["customer", "show", "13408", "--format", "json"],
    );
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    let last_sku = view["orders"][0]["items"][0]["sku"]
        .as_str()
        .expect("the latest order has items")
        .to_string();
    std::fs::write(
        dir.path().join("products.csv"),
        format!(
            "sku,name,category,price,upgrade_of\n{last_sku},Small,gifts,300,\n{last_sku}-XL,Big,gifts,900,{last_sku}\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = rebuy(
        dir.path(),
        &["import", "products", "products.csv", "--no-progress"],
    );
    assert!(ok, "{out}{err}");
    let (_, r) = list_13408(dir.path(), &["--kind", "upsell"]);
    assert_eq!(r["products"][0]["sku"], format!("{last_sku}-XL"), "{r}");
    assert_eq!(r["products"][0]["reason"], "upgrade_of");
    assert_eq!(r["products"][0]["because"], last_sku.as_str());
}

/// What the recommendations learn from is read on a connection of its own, in batches of a
/// few MB: every order with line items, in arrival order, after the seq asked for, across
/// batch boundaries, none without items, nothing twice.
#[tokio::test]
async fn every_order_with_items_is_read_once_in_arrival_order() {
    use crate::helpers::{add_customers, add_orders, order, TestShop};
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    add_customers(&store, &["c1", "c2"]).await;
    // About 1 KB per order: 6,000 orders are more than one batch.
    let long = "化".repeat(300);
    let orders: Vec<_> = (0..6_000)
        .map(|i| {
            let mut o = order(
                &format!("o{i}"),
                ["c1", "c2"][i % 2],
                "2026-01-05T10:00:00Z",
                100,
            );
            o.placed_at += i as i64;
            o.items = if i % 1000 == 7 {
                "[]".into()
            } else {
                format!(r#"[{{"sku":"S{i}","name":"{long}","quantity":1,"unit_price":100}}]"#)
            };
            o
        })
        .collect();
    add_orders(&store, &orders).await;
    let mut seen = Vec::new();
    let last = store
        .for_each_order_items(|customer, at, items| {
            seen.push((customer.to_string(), at, items.len()))
        })
        .await
        .unwrap();
    let expected: Vec<_> = orders
        .iter()
        .filter(|o| o.items != "[]")
        .map(|o| (o.customer_id.clone(), o.placed_at, o.items.len()))
        .collect();
    assert_eq!(seen.len(), 5_994);
    assert!(seen == expected, "orders read differ from those stored");
    assert_eq!(last, 6_000);
    let mut after = Vec::new();
    let last = store
        .for_each_order_items_after(5_990, |_, at, _| after.push(at))
        .await
        .unwrap();
    assert_eq!(last, 6_000);
    assert_eq!(
        after,
        orders[5_990..]
            .iter()
            .map(|o| o.placed_at)
            .collect::<Vec<_>>()
    );
    let nothing = store
        .for_each_order_items_after(6_000, |_, _, _| panic!("nothing is after the last"))
        .await
        .unwrap();
    assert_eq!(nothing, 6_000);
}

/// The engine learns once, then brings the model to each new day with the orders stored since:
/// every customer's lists of every kind must be those of a model learnt afresh from the store
/// that day, to the bit (scores included), and today's purchases must leave the lists at once.
#[tokio::test]
async fn a_model_brought_to_the_next_day_equals_one_learnt_afresh() {
    use crate::helpers::{add_customers, add_orders, order, TestShop};
    use chrono::NaiveDate;
    use rand::{Rng, SeedableRng};
    use rebuy::recommend::model::Kind;
    use rebuy::recommend_view::Learned;
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let ids: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    add_customers(&store, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let catalog: Vec<rebuy::store::Product> = (0..20)
        .map(|p| rebuy::store::Product {
            sku: format!("p{p}"),
            name: format!("product {p}"),
            category: format!("family {}", p / 5),
            price: Some(1000 + p * 100),
            url: None,
            image_url: None,
            in_stock: p != 3,
            active: true,
            brand: None,
            size: None,
            upgrade_of: (p % 5 == 4).then(|| format!("p{}", p - 1)),
        })
        .collect();
    store.upsert_products(&catalog, 0).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut seq = 0;
    let mut orders = |days: std::ops::Range<u32>, n: usize| {
        (0..n)
            .map(|_| {
                seq += 1;
                let day = rng.random_range(days.clone());
                let at = format!("2026-03-{day:02}T03:00:00Z");
                let mut o = order(&format!("o{seq}"), &ids[rng.random_range(0..60)], &at, 100);
                let items: Vec<String> = (0..rng.random_range(1..4))
                    .map(|_| {
                        format!(
                            r#"{{"sku":"p{}","quantity":1,"unit_price":100}}"#,
                            rng.random_range(0..22)
                        )
                    })
                    .collect();
                o.items = format!("[{}]", items.join(","));
                o
            })
            .collect::<Vec<_>>()
    };
    let (first, later) = (orders(1..11, 200), orders(2..13, 120));
    let zone = chrono_tz::UTC;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    add_orders(&store, &first).await;
    let learned = std::sync::Arc::new(
        Learned::load_until(&store, zone, day(9), day(10))
            .await
            .unwrap(),
    );
    add_orders(&store, &later).await;
    assert!(learned.catch_up(&store, zone).await.unwrap() > 0);
    assert!(learned
        .advance(&store, zone, day(11), day(12))
        .await
        .unwrap());
    assert_eq!(learned.as_of(), day(11));
    let fresh = Learned::load_until(&store, zone, day(11), day(12))
        .await
        .unwrap();
    let mut shown = 0;
    for id in &ids {
        for kind in [Kind::CrossSell, Kind::Next, Kind::Upsell] {
            let (a, b) = (
                learned.list(id, kind, 5, None),
                fresh.list(id, kind, 5, None),
            );
            assert_eq!(a, b, "{id} {kind:?}");
            shown += a.len();
        }
    }
    assert!(shown > 300, "{shown}");
    // What was bought on the 12th (after the day learnt as of) is off its buyer's lists.
    let twelfth = crate::helpers::utc("2026-03-12T00:00:00Z").timestamp_millis();
    let o = later.iter().find(|o| o.placed_at >= twelfth).unwrap();
    let sku: serde_json::Value = serde_json::from_str(&o.items).unwrap();
    let sku = sku[0]["sku"].as_str().unwrap();
    for kind in [Kind::CrossSell, Kind::Next, Kind::Upsell] {
        assert!(learned
            .list(&o.customer_id, kind, 20, None)
            .iter()
            .all(|p| p.sku != sku));
    }
    // An order changed in place keeps its seq, so an update would miss the change: the next
    // day learns afresh.
    let mut edited = first[0].clone();
    edited.items = r#"[{"sku":"p1","quantity":1,"unit_price":100}]"#.into();
    add_orders(&store, &[edited]).await;
    assert!(!learned
        .advance(&store, zone, day(12), day(13))
        .await
        .unwrap());
    // A later period cannot be reached by an update: the engine learns afresh then.
    assert!(!learned
        .advance(&store, zone, day(11) + chrono::Duration::days(64), day(12))
        .await
        .unwrap());
}
