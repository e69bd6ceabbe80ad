//! The summary step like for like with the reference library's
//! `summary_data_from_transaction_data`: the same transactions CSV is read into memory first
//! (untimed, as `pd.read_csv` is untimed in scripts/lifetimes_reference.py), then the timed part
//! does what the Python function does: parse the dates, group the rows by customer, and compute
//! frequency, recency, T and monetary value, with rebuy's own `Summary::of`. Then both fits on
//! those summaries, as the reference times its fitters. Prints one JSON object with the times,
//! the fitted parameters and a checksum of the summaries. Each step runs `REPEAT` times
//! (default 3); the figures are the medians, the single runs are listed beside them.
//!
//! cargo run --release --example summary_from_csv -- TRANSACTIONS.csv END_DATE

use chrono::{Datelike, NaiveDate};

/// The binary's allocator, so the comparison measures what `rebuy` would do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use rebuy::metrics::{BgNbd, GammaGamma, Purchase, Summary};
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

    let end_day = i64::from(end.num_days_from_ce());
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    // Each step `REPEAT` times (3 unless set), as scripts/lifetimes_reference.py times the
    // reference: this machine varies by ±30% from run to run, and the median says more.
    let mut summary_secs = Vec::new();
    let mut summaries = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        summaries = summarise_rows(&rows, end_day)?;
        summary_secs.push(t.elapsed().as_secs_f64());
    }
    // The fits, timed as the reference times `BetaGeoFitter.fit` and `GammaGammaFitter.fit`:
    // on the summaries already in memory.
    let (mut bgnbd_secs, mut gamma_gamma_secs) = (Vec::new(), Vec::new());
    let (mut bgnbd, mut gamma_gamma) = (None, None);
    for _ in 0..repeat {
        let t = Instant::now();
        bgnbd = Some(BgNbd::fit(&summaries)?);
        bgnbd_secs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        gamma_gamma = Some(GammaGamma::fit(&summaries)?);
        gamma_gamma_secs.push(t.elapsed().as_secs_f64());
    }

    let frequency: f64 = summaries.iter().map(|s| s.frequency).sum();
    let monetary: f64 = summaries.iter().map(|s| s.monetary).sum();
    println!(
        "{}",
        serde_json::json!({
            "read_csv_secs": read_secs,
            "summary_secs": median(&summary_secs),
            "summary_runs": summary_secs,
            "bgnbd_fit_secs": median(&bgnbd_secs),
            "bgnbd_fit_runs": bgnbd_secs,
            "bgnbd": bgnbd,
            "gamma_gamma_fit_secs": median(&gamma_gamma_secs),
            "gamma_gamma_fit_runs": gamma_gamma_secs,
            "gamma_gamma": gamma_gamma,
            "customers": summaries.len(),
            "sum_frequency": frequency,
            "sum_monetary": monetary,
        })
    );
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The timed step: dates parsed, rows grouped by customer, each customer summarised. Exports
/// list a customer's rows together, and then each run of rows is a customer, summarised as it
/// is read, on both cores; a customer whose rows are not together sends it all the general
/// way (`summarise_any_order`), with the same result.
fn summarise_rows(rows: &[(String, String, f64)], end_day: i64) -> anyhow::Result<Vec<Summary>> {
    // Halves that do not cut a customer's run.
    let mut half = rows.len() / 2;
    while half > 0 && half < rows.len() && rows[half].0 == rows[half - 1].0 {
        half += 1;
    }
    let (first, second) = rows.split_at(half);
    let (a, b) = std::thread::scope(|scope| {
        let b = scope.spawn(|| summarise_runs(second, end_day));
        (
            summarise_runs(first, end_day),
            b.join().expect("a summariser panicked"),
        )
    });
    match (a?, b?) {
        (Some((mut summaries, seen)), Some((more, other))) => {
            let (small, large) = if seen.len() < other.len() {
                (&seen, &other)
            } else {
                (&other, &seen)
            };
            if small.iter().any(|c| large.contains(c)) {
                return summarise_any_order(rows, end_day);
            }
            summaries.extend(more);
            Ok(summaries)
        }
        _ => summarise_any_order(rows, end_day),
    }
}

type Seen<'a> = std::collections::HashSet<&'a str, BuildHasherDefault<Fnv>>;

/// Each run of one customer's rows summarised, and the customers seen; None as soon as a
/// customer comes back after another's rows.
fn summarise_runs(
    rows: &[(String, String, f64)],
    end_day: i64,
) -> anyhow::Result<Option<(Vec<Summary>, Seen<'_>)>> {
    let mut seen = Seen::with_capacity_and_hasher(rows.len() / 4, Default::default());
    let mut summaries = Vec::with_capacity(rows.len() / 4);
    let mut run: Vec<Purchase> = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let customer = rows[start].0.as_str();
        if !seen.insert(customer) {
            return Ok(None);
        }
        run.clear();
        let mut end = start;
        while end < rows.len() && rows[end].0 == customer {
            run.push(Purchase {
                day: parse_day(&rows[end].1)?,
                amount: rows[end].2,
            });
            end += 1;
        }
        summaries.extend(Summary::of(&run, end_day));
        start = end;
    }
    Ok(Some((summaries, seen)))
}

/// [`summarise_rows`] for rows in any order.
fn summarise_any_order(
    rows: &[(String, String, f64)],
    end_day: i64,
) -> anyhow::Result<Vec<Summary>> {
    // Two cores, as rebuy's refresh uses them: one parses the dates while the other gives each
    // customer id a dense index (one hash lookup per row); the rows are then bucketed by that
    // index (a counting sort) and the buckets summarised in halves.
    let (days, index) = std::thread::scope(|scope| {
        let days = scope.spawn(|| {
            rows.iter()
                .map(|(_, date, _)| parse_day(date))
                .collect::<anyhow::Result<Vec<i64>>>()
        });
        let index = customer_index(rows);
        (days.join().expect("the date parser panicked"), index)
    });
    let days = days?;
    let customers = index.iter().max().map_or(0, |i| *i as usize + 1);
    let mut starts = vec![0usize; customers + 1];
    for i in &index {
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
        rows.len()
    ];
    for ((i, day), (_, _, amount)) in index.iter().zip(&days).zip(rows) {
        let slot = &mut fill[*i as usize];
        grouped[*slot] = Purchase {
            day: *day,
            amount: *amount,
        };
        *slot += 1;
    }
    let summarise = |bounds: &[usize], grouped: &[Purchase]| -> Vec<Summary> {
        bounds
            .windows(2)
            .filter_map(|w| Summary::of(&grouped[w[0]..w[1]], end_day))
            .collect()
    };
    let half = customers / 2;
    Ok(std::thread::scope(|scope| {
        let second = scope.spawn(|| summarise(&starts[half..], &grouped));
        let mut first = summarise(&starts[..=half], &grouped);
        first.extend(second.join().expect("a summariser panicked"));
        first
    }))
}

/// Each row's customer as a dense index, in order of first appearance.
fn customer_index(rows: &[(String, String, f64)]) -> Vec<u32> {
    let mut index: HashMap<&str, u32, BuildHasherDefault<Fnv>> =
        HashMap::with_capacity_and_hasher(rows.len() / 4, Default::default());
    // Exports usually list a customer's rows together: a row of the same customer as the row
    // before reuses its index without a lookup (any order still gives the same result).
    let mut last: Option<(&str, u32)> = None;
    rows.iter()
        .map(|(customer, _, _)| {
            let i = match last {
                Some((c, i)) if c == customer => i,
                _ => {
                    let next = index.len() as u32;
                    *index.entry(customer.as_str()).or_insert(next)
                }
            };
            last = Some((customer.as_str(), i));
            i
        })
        .collect()
}

/// `YYYY-MM-DD`, as the reference is given it, as a day number (days from the common era).
fn parse_day(s: &str) -> anyhow::Result<i64> {
    match parse_ymd(s) {
        Some((y, m, d)) if is_date(y, m, d) => Ok(days_from_civil(y, m, d)),
        _ => anyhow::bail!("not a YYYY-MM-DD date: {s:?}"),
    }
}

fn parse_ymd(s: &str) -> Option<(i64, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    Some((i64::from(num(0..4)?), num(5..7)?, num(8..10)?))
}

fn is_date(y: i64, m: u32, d: u32) -> bool {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let len = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=len).contains(&d)
}

/// Days from 0001-01-01 (day 1), chrono's `num_days_from_ce`, by Howard Hinnant's
/// `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + 719_163
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_agree_with_chrono_for_every_day_of_three_centuries() {
        let mut day = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        while day.year() < 2200 {
            let text = day.format("%Y-%m-%d").to_string();
            assert_eq!(
                parse_day(&text).unwrap(),
                i64::from(day.num_days_from_ce()),
                "{text}"
            );
            day = day.succ_opt().unwrap();
        }
    }

    fn rows(list: &[(&str, &str, f64)]) -> Vec<(String, String, f64)> {
        list.iter()
            .map(|(c, d, a)| (c.to_string(), d.to_string(), *a))
            .collect()
    }

    #[test]
    fn rows_together_or_apart_give_the_same_summaries() {
        let end = parse_day("2025-12-31").unwrap();
        let together = rows(&[
            ("A", "2025-01-01", 10.0),
            ("A", "2025-01-01", 5.0),
            ("A", "2025-02-01", 7.0),
            ("B", "2025-03-01", 1.0),
            ("C", "2025-01-05", 3.0),
            ("C", "2025-06-05", 4.0),
            ("C", "2026-01-05", 9.0),
            ("D", "2026-02-01", 2.0),
        ]);
        let fast = summarise_rows(&together, end).unwrap();
        assert_eq!(fast, summarise_any_order(&together, end).unwrap());
        assert_eq!(fast.len(), 3, "D ordered after the end");
        assert_eq!(
            (fast[0].frequency, fast[0].monetary, fast[0].total),
            (1.0, 7.0, 22.0)
        );
        // A's rows apart, in both halves: the general way, the same summaries.
        let mut apart = together.clone();
        apart.swap(1, 6);
        let mut general = summarise_rows(&apart, end).unwrap();
        let key = |s: &Summary| (s.first_day, s.orders);
        general.sort_by_key(key);
        let mut expected = fast.clone();
        expected.sort_by_key(key);
        assert_eq!(general, expected);
        // Together within each half, but A in both halves.
        let split = rows(&[
            ("A", "2025-01-01", 10.0),
            ("A", "2025-02-01", 7.0),
            ("B", "2025-03-01", 1.0),
            ("B", "2025-03-02", 1.0),
            ("A", "2025-04-01", 5.0),
            ("C", "2025-01-05", 3.0),
        ]);
        let a = &summarise_rows(&split, end).unwrap()[0];
        assert_eq!((a.frequency, a.orders, a.total), (2.0, 3, 22.0));
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2025-02-29",
            "2024-02-30",
            "2025-13-01",
            "2025-00-10",
            "2025-04-31",
            "2025-1-01",
            "2025/01/01",
            "20250101xx",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert!(parse_day("2024-02-29").is_ok());
    }
}
