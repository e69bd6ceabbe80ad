//! The offline evaluation on the UCI Online Retail transactions, straight from their CSV (for
//! tuning; `rebuy recommend evaluate` does the same over a shop's stored orders).
//! Usage: cargo run --release --example recommend_uci -- online_retail.csv 2011-09-01 [K]

use rebuy::recommend::Histories;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("online_retail.csv");
    let split =
        chrono::NaiveDate::parse_from_str(args.get(2).map_or("2011-09-01", |s| s), "%Y-%m-%d")?;
    let k: usize = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let mut h = Histories::default();
    let mut rdr = csv::Reader::from_path(path)?;
    for row in rdr.records() {
        let row = row?;
        let (sku, at, customer) = (&row[1], &row[5], &row[6]);
        // Products only: postage, fees and manual lines have codes without a digit first.
        if !sku.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let day = chrono::NaiveDate::parse_from_str(&at[..10], "%Y-%m-%d")?;
        h.add(customer, sku, rebuy::metrics::day_number(day));
    }
    let h = h.finish();
    let started = std::time::Instant::now();
    let mut params = rebuy::recommend::Params::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("HALF_LIFE") {
        params.half_life_days = (v > 0.0).then_some(v);
    }
    if let Some(v) = env("SHRINK") {
        params.shrink = v;
    }
    if let Some(v) = env("NEXT") {
        params.next_weight = v as f32;
    }
    if let Some(v) = env("MAX_ITEMS") {
        params.max_items = v as usize;
    }
    if let Some(v) = env("DAMP") {
        params.damp_heavy_buyers = v > 0.0;
    }
    let r = rebuy::recommend::evaluate::evaluate_with(
        &h,
        rebuy::metrics::day_number(split),
        k,
        &|_| true,
        &rebuy::recommend::model::Catalog::default(),
        params,
    );
    println!("{}", serde_json::to_string_pretty(&r)?);
    eprintln!("{:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
