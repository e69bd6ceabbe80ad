//! `rebuy demo`: a sample skincare shop of generated customers with realistic repeat-purchase
//! behaviour, run through the shipped scenarios over 90 simulated days with a manual clock.
//! Mail goes to `.eml` files; nothing needs a server. The generator is seeded, so a run is
//! reproducible.

use crate::clock::{to_millis, Clock, ManualClock};
use crate::config::Config;
use crate::daemon::{Daemon, Job};
use crate::import::ImportOptions;
use crate::render::ItemView;
use crate::store::{NewCustomer, NewOrder, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The sample scenarios and templates that ship, written into a folder that has none.
pub const SAMPLES: &[(&str, &str)] = &[
    (
        "scenarios/first-purchase.yaml",
        include_str!("../scenarios/first-purchase.yaml"),
    ),
    (
        "scenarios/cross-sell.yaml",
        include_str!("../scenarios/cross-sell.yaml"),
    ),
    (
        "scenarios/support-follow-up.yaml",
        include_str!("../scenarios/support-follow-up.yaml"),
    ),
    (
        "scenarios/segments.yaml",
        include_str!("../scenarios/segments.yaml"),
    ),
    (
        "scenarios/targets.yaml",
        include_str!("../scenarios/targets.yaml"),
    ),
    (
        "scenarios/win-back.yaml",
        include_str!("../scenarios/win-back.yaml"),
    ),
    (
        "scenarios/abandoned-cart.yaml",
        include_str!("../scenarios/abandoned-cart.yaml"),
    ),
    (
        "templates/cart_reminder.mjml",
        include_str!("../templates/cart_reminder.mjml"),
    ),
    (
        "templates/cart_reminder.txt",
        include_str!("../templates/cart_reminder.txt"),
    ),
    (
        "templates/winback.mjml",
        include_str!("../templates/winback.mjml"),
    ),
    (
        "templates/winback.txt",
        include_str!("../templates/winback.txt"),
    ),
    (
        "templates/_footer.html",
        include_str!("../templates/_footer.html"),
    ),
    (
        "templates/_footer.txt",
        include_str!("../templates/_footer.txt"),
    ),
    (
        "templates/thanks.mjml",
        include_str!("../templates/thanks.mjml"),
    ),
    (
        "templates/thanks.txt",
        include_str!("../templates/thanks.txt"),
    ),
    (
        "templates/howto.mjml",
        include_str!("../templates/howto.mjml"),
    ),
    (
        "templates/howto.txt",
        include_str!("../templates/howto.txt"),
    ),
    (
        "templates/replenish.mjml",
        include_str!("../templates/replenish.mjml"),
    ),
    (
        "templates/replenish.txt",
        include_str!("../templates/replenish.txt"),
    ),
    (
        "templates/cross_sell.mjml",
        include_str!("../templates/cross_sell.mjml"),
    ),
    (
        "templates/cross_sell.txt",
        include_str!("../templates/cross_sell.txt"),
    ),
    (
        "templates/_recommended.html",
        include_str!("../templates/_recommended.html"),
    ),
    (
        "templates/_recommended.txt",
        include_str!("../templates/_recommended.txt"),
    ),
    (
        "templates/_recommended.mjml",
        include_str!("../templates/_recommended.mjml"),
    ),
    (
        "templates/support_apology.mjml",
        include_str!("../templates/support_apology.mjml"),
    ),
    (
        "templates/support_apology.txt",
        include_str!("../templates/support_apology.txt"),
    ),
    (
        "templates/support_check_in.mjml",
        include_str!("../templates/support_check_in.mjml"),
    ),
    (
        "templates/support_check_in.txt",
        include_str!("../templates/support_check_in.txt"),
    ),
];

/// Writes the samples into `dir` unless it already has a `scenarios/` folder.
pub fn write_samples(dir: &Path) -> Result<bool> {
    if dir.join("scenarios").exists() {
        return Ok(false);
    }
    for (path, text) in SAMPLES {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("sample paths have a folder"))?;
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(true)
}

/// The shop's catalogue: sku, name, category, price in yen.
const PRODUCTS: &[(&str, &str, &str, i64)] = &[
    ("CL-01", "ミルククレンジング", "cleansing", 2980),
    ("CL-02", "オイルクレンジング", "cleansing", 3280),
    ("LO-01", "しっとり化粧水", "lotion", 3980),
    ("LO-02", "さっぱり化粧水", "lotion", 3580),
    ("SE-01", "ビタミンC美容液", "serum", 5980),
    ("CR-01", "保湿クリーム", "cream", 4580),
    ("SU-01", "UVミルク SPF50", "sunscreen", 2480),
];

/// The catalogue as the shop would import it (`rebuy import products`): what the cross-sell
/// mail's recommended products show.
pub fn catalog(shop_url: &str) -> Vec<crate::store::Product> {
    PRODUCTS
        .iter()
        .map(|(sku, name, category, price)| crate::store::Product {
            sku: sku.to_string(),
            name: name.to_string(),
            category: category.to_string(),
            price: Some(*price),
            url: Some(format!("{shop_url}/products/{sku}")),
            image_url: Some(format!("{shop_url}/images/{sku}.jpg")),
            in_stock: true,
            active: true,
            brand: None,
            size: None,
            upgrade_of: None,
        })
        .collect()
}

const FAMILY: &[&str] = &[
    "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田",
];
const GIVEN: &[&str] = &[
    "花子",
    "陽子",
    "彩",
    "美咲",
    "結衣",
    "恵",
    "由美",
    "真理",
    "健",
    "翔太",
    "愛",
    "さくら",
];
const ZONES: &[(&str, f64)] = &[
    ("Asia/Tokyo", 0.85),
    ("America/Los_Angeles", 0.10),
    ("Europe/London", 0.05),
];

/// A generated shop: customers and their orders over a period.
pub struct Shop {
    pub customers: Vec<NewCustomer>,
    pub orders: Vec<NewOrder>,
}

/// Generates `n` customers whose first orders fall between 60 days before `start` and 85 days
/// after it. About 45% never come back; the others reorder every ~30 days (a bottle lasts a
/// month) with some spread and a chance of stopping after each order.
pub fn generate_shop(n: usize, start: DateTime<Utc>, days: i64, seed: u64) -> Shop {
    let mut rng = StdRng::seed_from_u64(seed);
    let end = start + Duration::days(days);
    let mut customers = Vec::with_capacity(n);
    let mut orders = Vec::new();
    for i in 0..n {
        let id = format!("C{:06}", i + 1);
        let zone = pick_zone(rng.random());
        let name = format!(
            "{} {}",
            FAMILY[rng.random_range(0..FAMILY.len())],
            GIVEN[rng.random_range(0..GIVEN.len())]
        );
        customers.push(NewCustomer {
            id: id.clone(),
            email: format!("customer{}@example.jp", i + 1),
            name,
            timezone: Some(zone.to_string()),
            locale: Some(if zone == "Asia/Tokyo" { "ja" } else { "en" }.to_string()),
            attributes: format!(
                "{{\"source\":\"{}\"}}",
                if rng.random_bool(0.6) {
                    "web"
                } else {
                    "amazon"
                }
            ),
            // Nine in ten agreed to marketing mail when they signed up.
            marketing_consent: Some(rng.random_bool(0.9)),
            consent_at: Some(to_millis(start - Duration::days(90))),
        });
        let mut at = start + Duration::minutes(rng.random_range(-60 * 1440..85 * 1440));
        let repeater = rng.random_bool(0.55);
        let mut k = 0;
        while at < end {
            k += 1;
            orders.push(order(&mut rng, &format!("O{:06}-{k}", i + 1), &id, at));
            if !repeater || rng.random_bool(0.25) {
                break;
            }
            at += Duration::hours(rng.random_range(20 * 24..45 * 24));
        }
    }
    orders.sort_by_key(|o| o.placed_at);
    Shop { customers, orders }
}

fn pick_zone(x: f64) -> &'static str {
    let mut acc = 0.0;
    for (z, p) in ZONES {
        acc += p;
        if x < acc {
            return z;
        }
    }
    "Asia/Tokyo"
}

fn order(rng: &mut StdRng, id: &str, customer: &str, at: DateTime<Utc>) -> NewOrder {
    let lines = rng.random_range(1..=3);
    let mut items: Vec<ItemView> = Vec::new();
    for _ in 0..lines {
        let (sku, name, category, price) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
        if items.iter().any(|i| i.sku == sku) {
            continue;
        }
        items.push(ItemView {
            sku: sku.into(),
            name: name.into(),
            category: category.into(),
            quantity: rng.random_range(1..=2),
            unit_price: price,
        });
    }
    NewOrder {
        id: id.to_string(),
        customer_id: customer.to_string(),
        placed_at: to_millis(at),
        total: items.iter().map(|i| i.quantity * i.unit_price).sum(),
        currency: "JPY".into(),
        items: serde_json::to_string(&items).expect("items serialize"),
    }
}

/// What the demo did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub customers: usize,
    pub orders: usize,
    pub mails_written: u64,
    pub days: i64,
}

/// The demo's simulated start: 2026-08-01 00:00 in Tokyo.
pub fn demo_start() -> DateTime<Utc> {
    chrono_tz::Asia::Tokyo
        .with_ymd_and_hms(2026, 8, 1, 0, 0, 0)
        .single()
        .expect("valid date")
        .with_timezone(&Utc)
}

/// Runs the shop through `daemon` hour by hour for `days`, feeding each hour's orders in
/// before the tick, as a nightly import or a webhook would. `on_day` reports progress.
pub async fn simulate(
    daemon: &mut Daemon,
    store: &Store,
    shop: &Shop,
    clock: &ManualClock,
    days: i64,
    mut on_day: impl FnMut(i64),
) -> Result<u64> {
    let start = clock.now();
    let mut next = shop
        .orders
        .partition_point(|o| o.placed_at < to_millis(start));
    feed(store, &shop.orders[..next]).await?;
    let mut mails = 0;
    for hour in 1..=days * 24 {
        let now = clock.advance(Duration::hours(1));
        let upto = shop
            .orders
            .partition_point(|o| o.placed_at <= to_millis(now));
        feed(store, &shop.orders[next..upto]).await?;
        next = upto;
        let report = daemon.run_once(now).await?;
        mails += report.delivery.sent;
        if hour % 24 == 0 {
            on_day(hour / 24);
        }
    }
    Ok(mails)
}

async fn feed(store: &Store, orders: &[NewOrder]) -> Result<()> {
    if orders.is_empty() {
        return Ok(());
    }
    store.upsert_orders(orders).await?;
    Ok(())
}

/// Sets up the demo's folder, store and daemon; the caller drives `simulate`.
pub async fn prepare(
    dir: &Path,
    customers: usize,
    days: i64,
    seed: u64,
) -> Result<(crate::app::App, Store, Daemon, Shop, ManualClock)> {
    write_samples(dir)?;
    let db = dir.join("rebuy-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let outbox = dir.join("outbox");
    if let Ok(entries) = std::fs::read_dir(&outbox) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "eml") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut config = Config {
        database: db.display().to_string(),
        scenarios_dir: dir.join("scenarios"),
        templates_dir: dir.join("templates"),
        ..Config::default()
    };
    config.delivery.file_dir = outbox;
    config.unsubscribe.base_url = "https://hadamaru.example/unsubscribe".into();
    config
        .shop
        .insert("name".into(), "はだまる Skincare".into());
    config.shop.insert(
        "from".into(),
        "はだまる Skincare <hello@hadamaru.example>".into(),
    );
    config
        .shop
        .insert("url".into(), "https://hadamaru.example".into());
    config
        .shop
        .insert("address".into(), "東京都渋谷区神南1-2-3".into());
    config
        .shop
        .insert("contact".into(), "support@hadamaru.example".into());
    let mut app = crate::app::App::from_config(config)
        .map_err(|d| anyhow::anyhow!("demo config: {}", d[0]))?;
    // Orders are fed in hour by hour, so only the history before the start is older than
    // this: it must not enroll anyone.
    app.resolved.trigger_lookback = Duration::hours(2);
    let store = app.store_or_create().await?;
    let start = demo_start();
    let shop = generate_shop(customers, start, days, seed);
    store
        .upsert_customers(&shop.customers, to_millis(start))
        .await?;
    store
        .upsert_products(&catalog("https://hadamaru.example"), to_millis(start))
        .await?;
    let engine = app.engine(&store).await?.map_err(|d| {
        let lines: Vec<String> = d.iter().map(|x| x.to_string()).collect();
        anyhow::anyhow!(
            "the scenarios in {} have problems:\n{}",
            dir.join("scenarios").display(),
            lines.join("\n")
        )
    })?;
    let deliverer = app.deliverer(&store)?;
    // A refresh every night at 03:00, as a shop would schedule it: metrics, RFM and the
    // named segments, whose changes start the win-back scenario.
    let nightly = "name: nightly-refresh\ncron: \"0 3 * * *\"\nrefresh_metrics: true\n";
    let config: crate::config::JobConfig = serde_saphyr::from_str(nightly)?;
    let schedule = crate::config::parse_cron(config.cron.value.as_str())
        .map_err(|e| anyhow::anyhow!("demo cron: {e}"))?;
    let mut jobs = vec![Job::new(config, schedule, app.resolved.default_timezone)];
    // The LTV targets' digest to the team, Mondays at 09:00, in Japanese.
    let digest = "name: weekly-digest\ncron: \"0 9 * * 1\"\nrefresh_metrics: false\ndigest:\n  lang: ja\n  to: [\"チーム <team@hadamaru.example>\"]\n";
    let config: crate::config::JobConfig = serde_saphyr::from_str(digest)?;
    let schedule = crate::config::parse_cron(config.cron.value.as_str())
        .map_err(|e| anyhow::anyhow!("demo cron: {e}"))?;
    jobs.push(Job::new(config, schedule, app.resolved.default_timezone));
    let import = ImportOptions {
        format: None,
        default_timezone: app.resolved.default_timezone,
        progress: false,
        bulk: false,
        move_orders: false,
    };
    let daemon = Daemon {
        engine,
        deliverer,
        jobs,
        import,
        digest: app.digest_settings(),
    };
    Ok((app, store, daemon, shop, ManualClock::new(start)))
}
