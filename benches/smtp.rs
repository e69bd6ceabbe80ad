//! SMTP throughput into a real sink on loopback (Postfix's `smtp-sink`, started by
//! `scripts/bench-smtp.sh`): messages queued by the engine, then delivered by the deliverer
//! over rebuy's own pool of pipelined SMTP sessions; the send phase is timed. Run with
//! `cargo bench --bench smtp -- PORT MESSAGES POOL [WORKERS]`. With `REBUY_BENCH_POSTGRES` set
//! to a PostgreSQL server's URL the shop is a fresh database there, and WORKERS deliverers
//! (each with POOL connections, as separate `rebuy run` workers would have) share it.

use chrono::{Duration, TimeZone, Utc};
use rebuy::cli::App;
use rebuy::config::{Config, TlsMode, TransportKind};
use rebuy::store::{NewCustomer, NewOrder};
use std::time::Instant;

/// The same allocator as the `rebuy` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCENARIO: &str = "id: s\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ customer.name }}様、ご購入ありがとうございました\" }\n";

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let port = *args.first().unwrap_or(&2525) as u16;
    let n = *args.get(1).unwrap_or(&2000) as usize;
    let pool = *args.get(2).unwrap_or(&1) as u32;
    let workers = (*args.get(3).unwrap_or(&1)).max(1) as usize;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(port, n, pool, workers))
}

async fn run(port: u16, n: usize, pool: u32, workers: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();
    std::fs::create_dir_all(p.join("scenarios"))?;
    std::fs::create_dir_all(p.join("templates"))?;
    std::fs::write(p.join("scenarios/s.yaml"), SCENARIO)?;
    std::fs::write(
        p.join("templates/t.html"),
        "<p>{{ customer.name }}様</p><p>{{ order.total | money }}</p><p>{{ shop.name }} / {{ shop.address }} / {{ shop.contact }} / <a href=\"{{ unsubscribe_url }}\">配信停止</a></p>",
    )?;
    std::fs::write(
        p.join("templates/t.txt"),
        "{{ customer.name }}様\n{{ order.total | money }}\n{{ shop.name }} / {{ shop.address }} / {{ shop.contact }} / {{ unsubscribe_url }}\n",
    )?;
    let server = std::env::var("REBUY_BENCH_POSTGRES").ok();
    let database = match &server {
        Some(server) => {
            rebuy::store::create_postgres_database(
                server,
                &format!("rebuy_bench_{}", std::process::id()),
            )
            .await?
        }
        None => p.join("b.db").display().to_string(),
    };
    let mut config = Config {
        database,
        scenarios_dir: p.join("scenarios"),
        templates_dir: p.join("templates"),
        marketing: rebuy::config::MarketingConfig::off(),
        ..Config::default()
    };
    config.delivery.transport = TransportKind::Smtp;
    config.unsubscribe.base_url = "https://hadamaru.example/unsubscribe".into();
    config.delivery.smtp.host = "127.0.0.1".into();
    config.delivery.smtp.port = port;
    config.delivery.smtp.tls = TlsMode::None;
    config.delivery.smtp.pool_size = pool;
    config.delivery.batch_size = 1000;
    let app = App::from_config(config).map_err(|d| anyhow::anyhow!("{}", d[0]))?;
    let store = app.store_or_create().await?;
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let customers: Vec<NewCustomer> = (0..n)
        .map(|i| NewCustomer {
            id: format!("C{i}"),
            email: format!("c{i}@example.jp"),
            name: format!("顧客 {i}"),
            timezone: None,
            locale: None,
            attributes: "{}".into(),
            marketing_consent: Some(true),
            consent_at: None,
        })
        .collect();
    store.upsert_customers(&customers, 0).await?;
    let orders: Vec<NewOrder> = (0..n)
        .map(|i| NewOrder {
            id: format!("O{i}"),
            customer_id: format!("C{i}"),
            placed_at: start.timestamp_millis(),
            total: 3980,
            currency: "JPY".into(),
            items: "[]".into(),
        })
        .collect();
    let outcome = store.upsert_orders(&orders).await?;
    store.refresh_order_aggregates(&outcome.touched).await?;
    let engine = app
        .engine(&store)
        .await?
        .map_err(|d| anyhow::anyhow!("{}", d[0]))?;
    let now = start + Duration::hours(1);
    let r = engine.tick(now).await?;
    let deliverers = (0..workers)
        .map(|_| app.deliverer(&store))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t = Instant::now();
    let rounds = futures::future::try_join_all(deliverers.iter().map(|d| d.run_once(now))).await?;
    let secs = t.elapsed().as_secs_f64();
    let (sent, retried, failed) = rounds.iter().fold((0, 0, 0), |(s, r, f), d| {
        (s + d.sent, r + d.retried, f + d.failed)
    });
    let backend = if server.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("smtp: {} queued, {sent} sent, {retried} retried, {failed} failed in {secs:.2} s by {workers} worker(s) on {backend}, each with a pool of {pool} = {:.0} messages/s", r.queued, sent as f64 / secs);
    store.close().await;
    Ok(())
}
