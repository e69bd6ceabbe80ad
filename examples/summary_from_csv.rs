//! The summary step like for like with the reference library's
//! `summary_data_from_transaction_data`: the same transactions CSV is read into memory first
//! (untimed, as `pd.read_csv` is untimed in scripts/lifetimes_reference.py), then the timed part
//! does what the Python function does: parse the dates, group the rows by customer, and compute
//! frequency, recency, T and monetary value, with rebuy's own `Summary::of`. Prints one JSON
//! object with the time and a checksum of the summaries.
//!
//! cargo run --release --example summary_from_csv -- TRANSACTIONS.csv END_DATE

use chrono::{Datelike, NaiveDate};
use rebuy::metrics::{Purchase, Summary};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .map(String::as_str)
        .unwrap_or("transactions.csv");
    let end = NaiveDate::parse_from_str(
        args.get(1).map(String::as_str).unwrap_or("2025-12-31"),
        "%Y-%m-%d",
    )?;
    let t = Instant::now();
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    for r in csv::Reader::from_path(path)?.deserialize() {
        rows.push(r?);
    }
    let read_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let end_day = i64::from(end.num_days_from_ce());
    // Each customer id gets a dense index (one hash lookup per row), the rows are bucketed by
    // that index (a counting sort), and each bucket is summarised.
    let mut index: HashMap<&str, u32, BuildHasherDefault<Fnv>> =
        HashMap::with_capacity_and_hasher(rows.len() / 4, Default::default());
    let mut keyed: Vec<(u32, Purchase)> = Vec::with_capacity(rows.len());
    // Exports usually list a customer's rows together: a row of the same customer as the row
    // before reuses its index without a lookup (any order still gives the same result).
    let mut last: Option<(&str, u32)> = None;
    for (customer, date, amount) in &rows {
        let i = match last {
            Some((c, i)) if c == customer => i,
            _ => {
                let next = index.len() as u32;
                *index.entry(customer.as_str()).or_insert(next)
            }
        };
        last = Some((customer.as_str(), i));
        let day = i64::from(parse_day(date)?.num_days_from_ce());
        keyed.push((
            i,
            Purchase {
                day,
                amount: *amount,
            },
        ));
    }
    let mut starts = vec![0usize; index.len() + 1];
    for (i, _) in &keyed {
        starts[*i as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut fill = starts.clone();
    let mut grouped = vec![
        Purchase {
            day: 0,
            amount: 0.0
        };
        keyed.len()
    ];
    for (i, p) in &keyed {
        grouped[fill[*i as usize]] = *p;
        fill[*i as usize] += 1;
    }
    let summaries: Vec<Summary> = starts
        .windows(2)
        .filter_map(|w| Summary::of(&grouped[w[0]..w[1]], end_day))
        .collect();
    let summary_secs = t.elapsed().as_secs_f64();

    let frequency: f64 = summaries.iter().map(|s| s.frequency).sum();
    let monetary: f64 = summaries.iter().map(|s| s.monetary).sum();
    println!(
        "{}",
        serde_json::json!({
            "read_csv_secs": read_secs,
            "summary_secs": summary_secs,
            "customers": summaries.len(),
            "sum_frequency": frequency,
            "sum_monetary": monetary,
        })
    );
    Ok(())
}

/// `YYYY-MM-DD`, as the reference is given it.
fn parse_day(s: &str) -> anyhow::Result<NaiveDate> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) {
            if let Some(date) = NaiveDate::from_ymd_opt(y as i32, m, d) {
                return Ok(date);
            }
        }
    }
    anyhow::bail!("not a YYYY-MM-DD date: {s:?}")
}

/// FNV-1a: short keys, no adversary; std's SipHash costs more than the rest of the grouping.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
