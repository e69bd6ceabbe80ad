//! The engine benchmark (issue: "The engine, end to end"): 100,000 customers and 500,000
//! orders, then import rate, one tick that enrolls every eligible customer in a three-step
//! scenario, render rate, and file-transport send rate. Run with
//! `cargo bench --bench engine` (optionally `-- CUSTOMERS ORDERS`). Not a test: it reports.
//! With `REBUY_BENCH_POSTGRES` set to a PostgreSQL server's URL the shop is a fresh database
//! there instead of a SQLite file.

use chrono::{Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rebuy::cli::App;
use rebuy::config::Config;
use rebuy::import::{import_customers, import_orders, ImportOptions};
use rebuy::render::{context_name, CustomerView, MessageContext, OrderView};
use std::io::Write;
use std::time::Instant;

/// The same allocator as the `rebuy` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCENARIO: &str = r#"
id: bench
trigger: first_order
goal: { event: order_placed, within: 60d }
# The step tick below runs a year after the first orders: every step is due, none expired.
expires: 800d
steps:
  - id: one
    wait: 400d
    at: "10:00"
    send: { template: t, subject: "{{ customer.name }}様、ご購入ありがとうございました" }
  - id: two
    wait: 6d
    send: { template: t, subject: "{{ order.items[0].name if order.items else '商品' }}の上手な使い方" }
  - id: three
    wait: 18d
    send: { template: t, subject: "そろそろ{{ order.items[0].name if order.items else '商品' }}が切れる頃ではありませんか" }
"#;

const HTML: &str = "<p>{{ customer.name }}様</p><table>{% for i in order.items %}<tr><td>{{ i.name }}</td><td>{{ (i.unit_price * i.quantity) | money }}</td></tr>{% endfor %}</table><p>合計 {{ order.total | money }}（{{ order.placed_at | date('%Y年%m月%d日') }}）</p><p>{{ shop.name }} / {{ shop.address }} / {{ shop.contact }}</p><a href=\"{{ unsubscribe_url }}\">配信停止</a>";
const TXT: &str = "{{ customer.name }}様\n{% for i in order.items %}- {{ i.name }} {{ (i.unit_price * i.quantity) | money }}\n{% endfor %}合計 {{ order.total | money }}\n{{ shop.name }} / {{ shop.address }} / {{ shop.contact }}\n{{ unsubscribe_url }}\n";

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let customers = *args.first().unwrap_or(&100_000);
    let orders = *args.get(1).unwrap_or(&500_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(customers, orders))
}

async fn run(n_customers: usize, n_orders: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();
    std::fs::create_dir_all(p.join("scenarios"))?;
    std::fs::create_dir_all(p.join("templates"))?;
    std::fs::write(p.join("scenarios/bench.yaml"), SCENARIO)?;
    std::fs::write(p.join("templates/t.html"), HTML)?;
    std::fs::write(p.join("templates/t.txt"), TXT)?;
    let start = Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap();
    let now = start + Duration::days(366);
    generate(p, n_customers, n_orders, start)?;

    let database = match std::env::var("REBUY_BENCH_POSTGRES") {
        Ok(server) => {
            rebuy::store::create_postgres_database(
                &server,
                &format!("rebuy_bench_{}", std::process::id()),
            )
            .await?
        }
        Err(_) => p.join("bench.db").display().to_string(),
    };
    println!(
        "database: {}",
        if database.contains("://") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let mut config = Config {
        database,
        scenarios_dir: p.join("scenarios"),
        templates_dir: p.join("templates"),
        marketing: rebuy::config::MarketingConfig::off(),
        ..Config::default()
    };
    config.delivery.file_dir = p.join("outbox");
    config.delivery.batch_size = 2000;
    let mut app = App::from_config(config).map_err(|d| anyhow::anyhow!("{}", d[0]))?;
    app.resolved.trigger_lookback = Duration::days(400);
    let store = app.store_or_create().await?;
    let opts = ImportOptions {
        format: None,
        default_timezone: chrono_tz::Asia::Tokyo,
        progress: false,
        bulk: true,
        move_orders: false,
    };

    println!("rebuy engine benchmark: {n_customers} customers, {n_orders} orders (one CSV row each), SQLite in a temp folder");
    let t = Instant::now();
    let c = import_customers(&store, &p.join("customers.csv"), &opts, now).await?;
    let tc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let o = import_orders(&store, &p.join("orders.csv"), &opts, now).await?;
    let to = t.elapsed().as_secs_f64();
    assert!(c.rejected.is_empty() && o.rejected.is_empty());
    println!(
        "import customers: {} rows in {tc:.2} s = {:.0} rows/s",
        c.records,
        c.records as f64 / tc
    );
    println!(
        "import orders:    {} rows in {to:.2} s = {:.0} rows/s",
        o.records,
        o.records as f64 / to
    );
    println!(
        "import total:     {} rows in {:.2} s = {:.0} rows/s",
        c.records + o.records,
        tc + to,
        (c.records + o.records) as f64 / (tc + to)
    );

    let engine = app
        .engine(&store)
        .await?
        .map_err(|d| anyhow::anyhow!("{}", d[0]))?;
    let t = Instant::now();
    let r = engine.tick(now).await?;
    let tt = t.elapsed().as_secs_f64();
    println!(
        "enrolling tick:   {} orders seen, {} enrolled in {tt:.2} s",
        r.orders_seen, r.enrolled
    );

    if std::env::var_os("REBUY_BENCH_QUICK").is_some() {
        return Ok(());
    }
    // Render rate: the renderer alone, on real customers and orders from the store.
    let shop = app.config.shop.clone();
    let ids: Vec<String> = (1..=20_000.min(n_customers))
        .map(|i| format!("C{i:07}"))
        .collect();
    let cust = store.customers_by_ids(&ids).await?;
    let mut contexts = Vec::new();
    for id in &ids {
        let Some(c) = cust.get(id) else { continue };
        let Some(order) = store.latest_order(id, now.timestamp_millis()).await? else {
            continue;
        };
        contexts.push(minijinja::Value::from_serialize(MessageContext {
            customer: CustomerView::new(c, chrono_tz::Asia::Tokyo, now),
            order: Some(OrderView::new(&order)),
            shop: &shop,
            vars: serde_json::Value::Null,
            scenario: context_name("bench", "bench"),
            step: Some(context_name("one", "one")),
            unsubscribe_url: format!("https://shop.example/unsubscribe?c={id}&t=0123456789abcdef"),
            now: now.to_rfc3339(),
            metrics: rebuy::render::metrics_view(c.metrics.as_deref()),
            event: None,
        }));
    }
    let t = Instant::now();
    let mut bytes = 0;
    for ctx in &contexts {
        let m = engine.renderer().render_step("bench", "one", "t", ctx)?;
        bytes += m.html.len() + m.text.len() + m.subject.len();
    }
    let tr = t.elapsed().as_secs_f64();
    println!("render:           {} messages (subject + HTML + text, {} KB) in {tr:.2} s = {:.0} messages/s", contexts.len(), bytes / 1024, contexts.len() as f64 / tr);

    // The step tick: everyone's first step is due; render and queue all of them.
    let later = now + Duration::days(401);
    let t = Instant::now();
    let r = engine.tick(later).await?;
    let ts = t.elapsed().as_secs_f64();
    println!(
        "step tick:        {} messages rendered and queued in {ts:.2} s = {:.0} messages/s",
        r.queued,
        r.queued as f64 / ts
    );

    let deliverer = app.deliverer(&store)?;
    let t = Instant::now();
    let d = deliverer.run_once(later).await?;
    let td = t.elapsed().as_secs_f64();
    println!("file transport:   {} messages written as .eml and recorded in {td:.2} s = {:.0} messages/s", d.sent, d.sent as f64 / td);
    Ok(())
}

/// Writes customers.csv and orders.csv: customers' first orders spread over a year, the rest
/// of the orders falling on random customers (so about 60% of customers order again).
fn generate(
    dir: &std::path::Path,
    customers: usize,
    orders: usize,
    start: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut c = std::io::BufWriter::new(std::fs::File::create(dir.join("customers.csv"))?);
    writeln!(c, "id,email,name,timezone,locale,source,marketing_consent")?;
    for i in 1..=customers {
        let zone = if i % 10 == 0 {
            "America/New_York"
        } else {
            "Asia/Tokyo"
        };
        writeln!(
            c,
            "C{i:07},customer{i}@example.jp,顧客 {i},{zone},ja,web,true"
        )?;
    }
    c.flush()?;
    let mut rows: Vec<(i64, usize)> = Vec::with_capacity(orders);
    for i in 0..orders {
        let customer = if i < customers {
            i + 1
        } else {
            rng.random_range(1..=customers)
        };
        rows.push((rng.random_range(0..365 * 24 * 60), customer));
    }
    rows.sort();
    let mut o = std::io::BufWriter::new(std::fs::File::create(dir.join("orders.csv"))?);
    writeln!(
        o,
        "order_id,customer_id,placed_at,currency,total,sku,name,category,quantity,unit_price"
    )?;
    for (i, (minute, customer)) in rows.iter().enumerate() {
        let at = (start + Duration::minutes(*minute)).to_rfc3339();
        writeln!(
            o,
            "O{i:08},C{customer:07},{at},JPY,3980,LO-01,しっとり化粧水,lotion,1,3980"
        )?;
    }
    o.flush()?;
    Ok(())
}
