//! The recommendations benchmark at a million customers: a generated shop (20,000 products in
//! families of 20, Zipf-like popularity, each customer loyal to a few families; about 5 orders
//! each) learnt as the engine learns it once a shop day (`Learned::from_parts`: the model, the
//! catalog's filter and facts), then `Learned::list` for 100,000 customers as a template's
//! `recommend(customer, n=3)` asks for them. Prints seconds, peak memory and µs per list.
//! Usage: cargo run --release --example bench_recommend -- [CUSTOMERS] [PRODUCTS] [SEED]

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rebuy::recommend::model::Kind;
use rebuy::recommend::Histories;
use rebuy::recommend_view::Learned;
use rebuy::store::Product;
use std::collections::HashMap;
use std::time::Instant;

/// The process's peak resident memory so far (VmHWM), in MB.
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts the peak over (Linux: the process's VmHWM back to its current RSS).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (customers, products, seed) = (arg(1, 1_000_000), arg(2, 20_000), arg(3, 7));
    // STORE_ONLY=1 with STORE=path (written by an earlier run): only the learning from the
    // store, in a process that holds nothing else, so that its peak memory is the learning's.
    if let (Ok(path), Ok(_)) = (std::env::var("STORE"), std::env::var("STORE_ONLY")) {
        return store_only(&path, products);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let as_of = NaiveDate::from_ymd_opt(2025, 12, 31).expect("a date");
    let last = rebuy::metrics::day_number(as_of);
    let families = (products / 20).max(1);
    // Zipf-like: the family of rank r is drawn with weight 1 / (r + 1).
    let weights: Vec<f64> = (0..families).map(|r| 1.0 / (r as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let family = |rng: &mut StdRng| {
        let x: f64 = rng.random();
        cumulative
            .partition_point(|c| *c < x)
            .min(families as usize - 1) as u64
    };
    let started = Instant::now();
    let mut h = Histories::default();
    let mut orders = 0u64;
    for c in 0..customers {
        let id = format!("C{c:07}");
        let loyal: Vec<u64> = (0..3).map(|_| family(&mut rng)).collect();
        let n = 1 + (-(1.0 - rng.random::<f64>()).ln() * 4.0) as u64; // about 5 on average
        let mut day = last - rng.random_range(0..730);
        for _ in 0..n.min(60) {
            orders += 1;
            for _ in 0..rng.random_range(1..=3) {
                let f = if rng.random_bool(0.8) {
                    loyal[rng.random_range(0..loyal.len())]
                } else {
                    family(&mut rng)
                };
                let p = f * 20 + rng.random_range(0..20).min(products - 1 - f * 20);
                h.add(&id, &format!("P{p:05}"), day.min(last));
            }
            day += rng.random_range(7..90);
        }
    }
    let h = h.finish();
    let catalog = catalog(products);
    let purchases: usize = h.customers.iter().map(|(_, b)| b.len()).sum();
    println!(
        "generated {customers} customers, {orders} orders, {purchases} distinct purchases (customer, product, day), {products} products in {:.1} s; peak so far {:.0} MB",
        started.elapsed().as_secs_f64(),
        peak_mb()
    );
    // STORE=path: the same shop written to a SQLite file (once), to time the learning from
    // the store, reading every order's items, as the engine does each shop day.
    let store_path = std::env::var("STORE").ok();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(path) = &store_path {
        if !std::path::Path::new(path).exists() {
            let started = Instant::now();
            runtime.block_on(write_store(path, &h))?;
            println!(
                "wrote the shop to {path} in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let before = peak_mb();
    let started = Instant::now();
    let learned = std::sync::Arc::new(Learned::from_parts(
        h,
        HashMap::new(),
        catalog.clone(),
        as_of,
    ));
    let learn_secs = started.elapsed().as_secs_f64();
    let after = peak_mb();
    println!(
        "learn: {learn_secs:.2} s; peak {after:.0} MB ({:.0} MB over the histories it learnt from)",
        after - before
    );
    let sample = 100_000.min(customers);
    let ids: Vec<String> = (0..sample)
        .map(|_| format!("C{:07}", rng.random_range(0..customers)))
        .collect();
    for kind in [Kind::CrossSell, Kind::Upsell, Kind::Next] {
        let mut times: Vec<f64> = Vec::with_capacity(ids.len());
        let mut shown = 0usize;
        for id in &ids {
            let t = Instant::now();
            shown += learned.list(id, kind, 3, None).len();
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let p99 = times[times.len() * 99 / 100];
        println!(
            "recommend n=3 {kind:?}: {mean:.1} µs mean, {:.1} µs median, {p99:.1} µs p99 per customer over {sample} customers ({:.2} products each)",
            times[times.len() / 2],
            shown as f64 / sample as f64
        );
    }
    // Between two learnings each tick reads the orders stored since (by seq): 10,000 new orders
    // of 10,000 customers in a real SQLite file.
    let dir = tempfile::tempdir()?;
    let read = runtime.block_on(async {
        let store = rebuy::store::Store::open(&dir.path().join("since.db").display().to_string()).await?;
        // The day after the one learnt as of: what the next shop day brings the model.
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(3, 0, 0))
            .expect("a time")
            .and_utc()
            .timestamp_millis();
        let people: Vec<rebuy::store::NewCustomer> = (0..10_000)
            .map(|i| plain_customer(format!("C{:07}", i * 97 % customers)))
            .collect();
        store.upsert_customers(&people, at).await?;
        store.upsert_products(&catalog, 0).await?;
        let orders: Vec<rebuy::store::NewOrder> = people
            .iter()
            .enumerate()
            .map(|(i, c)| rebuy::store::NewOrder {
                id: format!("N{i}"),
                customer_id: c.id.clone(),
                placed_at: at,
                total: 3000,
                currency: "JPY".into(),
                items: format!(
                    r#"[{{"sku":"P{:05}","name":"x","quantity":1,"unit_price":3000}},{{"sku":"P{:05}","name":"y","quantity":1,"unit_price":1000}}]"#,
                    i % products as usize,
                    (i * 7) % products as usize
                ),
            })
            .collect();
        store.upsert_orders(&orders).await?;
        let started = Instant::now();
        let read = learned.catch_up(&store, chrono_tz::UTC).await?;
        let secs = started.elapsed().as_secs_f64();
        let next_day = as_of.succ_opt().expect("a day");
        let started = Instant::now();
        let advanced = learned.advance(&store, chrono_tz::UTC, next_day, next_day).await?;
        let advance_secs = started.elapsed().as_secs_f64();
        assert!(advanced, "the next day is in the sums' period");
        store.close().await;
        anyhow::Ok((read, secs, advance_secs))
    })?;
    println!(
        "incremental update: 10,000 new orders read and taken in (their customers' sums replaced) in {:.0} ms ({} purchases); the model brought to the next day with them in {:.0} ms; {:.0} ms in all; peak {:.0} MB",
        read.1 * 1000.0,
        read.0,
        read.2 * 1000.0,
        (read.1 + read.2) * 1000.0,
        peak_mb()
    );
    drop(learned);
    if let Some(path) = store_path {
        let before = peak_mb();
        let started = Instant::now();
        let learned = runtime.block_on(async {
            let store = rebuy::store::Store::open(&path).await?;
            store.upsert_products(&catalog, 0).await?;
            let read = Instant::now();
            let mut rows = 0u64;
            store.for_each_order_items(|_, _, _| rows += 1).await?;
            println!(
                "  of which reading {rows} orders' rows: {:.2} s",
                read.elapsed().as_secs_f64()
            );
            let parsed = Instant::now();
            let (h, _) = rebuy::recommend_view::histories(&store, chrono_tz::UTC).await?;
            println!(
                "  of which reading, parsing the items and numbering them: {:.2} s ({} customers)",
                parsed.elapsed().as_secs_f64(),
                h.customers.len()
            );
            drop(h);
            reset_peak();
            let (rss, loading) = (peak_mb(), Instant::now());
            let learned = Learned::load(&store, chrono_tz::UTC, as_of).await?;
            println!(
                "  Learned::load alone (read, parse, number, learn): {:.2} s; peak {:.0} MB over the {rss:.0} MB before it",
                loading.elapsed().as_secs_f64(),
                peak_mb() - rss
            );
            store.close().await;
            anyhow::Ok(learned)
        })?;
        println!(
            "learn from the store (the three passes above, each reading every order): {:.2} s; peak {:.0} MB ({} customers)",
            started.elapsed().as_secs_f64(),
            peak_mb().max(before),
            learned.customers()
        );
    }
    Ok(())
}

/// Writes the generated shop into a SQLite file: its customers, and one order per customer
/// and day with that day's products as line items.
async fn write_store(path: &str, h: &Histories) -> anyhow::Result<()> {
    let store = rebuy::store::Store::open(path).await?;
    for chunk in h.customers.chunks(50_000) {
        let people: Vec<rebuy::store::NewCustomer> = chunk
            .iter()
            .map(|(id, _)| plain_customer(id.clone()))
            .collect();
        store.upsert_customers(&people, 0).await?;
        let mut orders = Vec::new();
        for (id, bought) in chunk {
            for day in bought.chunk_by(|a, b| a.day == b.day) {
                let items: Vec<String> = day
                    .iter()
                    .map(|b| {
                        format!(
                            r#"{{"sku":"{}","name":"x","quantity":1,"unit_price":1000}}"#,
                            h.skus[b.sku as usize]
                        )
                    })
                    .collect();
                let date = rebuy::metrics::date_of_day(day[0].day());
                orders.push(rebuy::store::NewOrder {
                    id: format!("{id}-{}", day[0].day),
                    customer_id: id.clone(),
                    placed_at: date
                        .and_hms_opt(3, 0, 0)
                        .expect("a time")
                        .and_utc()
                        .timestamp_millis(),
                    total: 1000 * day.len() as i64,
                    currency: "JPY".into(),
                    items: format!("[{}]", items.join(",")),
                });
            }
        }
        for part in orders.chunks(20_000) {
            store.upsert_orders(part).await?;
        }
    }
    store.close().await;
    Ok(())
}

/// A customer with an id and an address, nothing else.
fn plain_customer(id: String) -> rebuy::store::NewCustomer {
    rebuy::store::NewCustomer {
        email: format!("{}@example.jp", id.to_lowercase()),
        id,
        name: String::new(),
        timezone: None,
        locale: None,
        attributes: "{}".into(),
        marketing_consent: None,
        consent_at: None,
    }
}

/// The generated shop's catalog: families of 20 products, one in 50 out of stock.
fn catalog(products: u64) -> Vec<Product> {
    (0..products)
        .map(|p| Product {
            sku: format!("P{p:05}"),
            name: format!("product {p}"),
            category: format!("family {}", p / 20),
            price: Some(1000 + (p % 20) as i64 * 500),
            url: Some(format!("https://shop.example/p/{p}")),
            image_url: None,
            in_stock: p % 50 != 0,
            active: true,
            brand: None,
            size: None,
            upgrade_of: None,
        })
        .collect()
}

/// Learns from the shop in the SQLite file at `path`, as the engine does each shop day, and
/// prints the time and the process's peak memory.
fn store_only(path: &str, products: u64) -> anyhow::Result<()> {
    let as_of = NaiveDate::from_ymd_opt(2025, 12, 31).expect("a date");
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let learned = runtime.block_on(async {
        let store = rebuy::store::Store::open(path).await?;
        store.upsert_products(&catalog(products), 0).await?;
        let learned = Learned::load(&store, chrono_tz::UTC, as_of).await?;
        store.close().await;
        anyhow::Ok(learned)
    })?;
    println!(
        "Learned::load from {path} (read, parse, number, learn): {:.2} s; process peak {:.0} MB ({} customers)",
        started.elapsed().as_secs_f64(),
        peak_mb(),
        learned.customers()
    );
    Ok(())
}
