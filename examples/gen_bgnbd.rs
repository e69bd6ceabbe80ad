//! Generates a shop whose customers buy as a BG/NBD process (and spend as Gamma-Gamma), for the
//! metrics benchmark: `customers.csv` and `orders.csv` in rebuy's import format, and
//! `transactions.csv` (customer_id,date,amount) for the Python reference.
//!
//! cargo run --release --example gen_bgnbd -- DIR CUSTOMERS SEED

use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().map(String::as_str).unwrap_or("bench-data"));
    let n: u64 = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(7);
    std::fs::create_dir_all(&dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Purchase rates per day ~ gamma(r, 1/alpha); dropout after a purchase ~ beta(a, b);
    // spend per order ~ gamma(p, 1/nu) with nu ~ gamma(q, 1/v) (yen).
    let rate = Gamma::new(1.2, 1.0 / 40.0)?;
    let dropout = Beta::new(1.3, 3.0)?;
    let nu = Gamma::new(4.0, 1.0 / 18_000.0)?;
    let span_days = 730.0;
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
    let mut customers = std::io::BufWriter::new(std::fs::File::create(dir.join("customers.csv"))?);
    let mut orders = std::io::BufWriter::new(std::fs::File::create(dir.join("orders.csv"))?);
    let mut tx = std::io::BufWriter::new(std::fs::File::create(dir.join("transactions.csv"))?);
    writeln!(customers, "id,email,name,marketing_consent")?;
    writeln!(orders, "order_id,customer_id,placed_at,currency,total")?;
    writeln!(tx, "customer_id,date,amount")?;
    let mut order_id = 0u64;
    for c in 0..n {
        let id = format!("C{c:07}");
        writeln!(
            customers,
            "{id},{}@example.jp,customer {c},yes",
            id.to_lowercase()
        )?;
        let lambda: f64 = rate.sample(&mut rng);
        let p: f64 = dropout.sample(&mut rng);
        let spend = Gamma::new(3.0, 1.0 / nu.sample(&mut rng))?;
        let mut t: f64 = rng.random_range(0.0..365.0);
        let gap = Exp::new(lambda.max(1e-9))?;
        let first = order_id + 1;
        loop {
            order_id += 1;
            let day = start + chrono::Duration::days(t as i64);
            let secs = rng.random_range(0..86_400);
            let amount = (spend.sample(&mut rng) as i64).max(100);
            writeln!(
                orders,
                "O{order_id},{id},{}T{:02}:{:02}:{:02}+09:00,JPY,{amount}",
                day,
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )?;
            writeln!(tx, "{id},{day},{amount}")?;
            // BG/NBD: the customer may drop out after each repeat purchase (not the first).
            if order_id > first && rng.random::<f64>() < p {
                break;
            }
            t += gap.sample(&mut rng);
            if t >= span_days {
                break;
            }
        }
    }
    eprintln!("{n} customers, {order_id} orders in {}", dir.display());
    Ok(())
}
