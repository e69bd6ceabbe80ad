//! How long a product lasts, from the shop's own history: for each SKU, the days between a
//! customer's consecutive purchases of it (same-day purchases are one), and the median of
//! those intervals once enough customers have bought it twice.

use std::collections::HashMap;

/// Repeat pairs a SKU needs before its interval is trusted.
pub const MIN_PAIRS: usize = 5;

/// The typical interval between repeat purchases of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkuInterval {
    pub sku: String,
    /// The median interval in days, rounded to the nearest day (halves up).
    pub median_days: i64,
    /// How many repeat pairs it is the median of.
    pub pairs: usize,
}

/// Collects intervals customer by customer.
#[derive(Debug, Default)]
pub struct RepeatIntervals {
    by_sku: HashMap<String, Vec<u32>>,
}

impl RepeatIntervals {
    /// Adds one customer's orders, oldest first: each order's day and the SKUs in it.
    pub fn add_customer<S: AsRef<str>>(&mut self, orders: &[(i64, Vec<S>)]) {
        let mut last: HashMap<&str, i64> = HashMap::new();
        for (day, skus) in orders {
            for sku in skus {
                let sku = sku.as_ref();
                match last.get(sku) {
                    Some(prev) if day > prev => {
                        self.by_sku
                            .entry(sku.to_string())
                            .or_default()
                            .push((day - prev) as u32);
                    }
                    Some(_) => continue, // the same day (or an item listed twice)
                    None => {}
                }
                last.insert(sku, *day);
            }
        }
    }

    /// The SKUs with at least `min_pairs` repeat pairs, by SKU.
    pub fn typical(self, min_pairs: usize) -> Vec<SkuInterval> {
        let mut out: Vec<SkuInterval> = self
            .by_sku
            .into_iter()
            .filter(|(_, v)| v.len() >= min_pairs.max(1))
            .map(|(sku, mut v)| {
                v.sort_unstable();
                let n = v.len();
                // Twice the median, so that an even count's midpoint stays an integer.
                let twice = if n % 2 == 1 {
                    2 * i64::from(v[n / 2])
                } else {
                    i64::from(v[n / 2 - 1]) + i64::from(v[n / 2])
                };
                SkuInterval {
                    sku,
                    median_days: (twice + 1) / 2,
                    pairs: n,
                }
            })
            .collect();
        out.sort_by(|a, b| a.sku.cmp(&b.sku));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_per_customer_and_sku_and_ignore_same_day_repeats() {
        let mut r = RepeatIntervals::default();
        r.add_customer(&[
            (0, vec!["A", "B"]),
            (0, vec!["A"]),
            (30, vec!["A"]),
            (50, vec!["B", "A"]),
        ]);
        r.add_customer(&[(100, vec!["A"]), (128, vec!["A"])]);
        let t = r.typical(1);
        // A: 30, 20 (first customer), 28 (second): median 28. B: 50.
        assert_eq!(
            t,
            vec![
                SkuInterval {
                    sku: "A".into(),
                    median_days: 28,
                    pairs: 3
                },
                SkuInterval {
                    sku: "B".into(),
                    median_days: 50,
                    pairs: 1
                },
            ]
        );
    }

    #[test]
    fn an_even_count_takes_the_midpoint_and_too_few_pairs_give_nothing() {
        let mut r = RepeatIntervals::default();
        for gap in [20, 25, 30, 41] {
            r.add_customer(&[(0, vec!["A"]), (gap, vec!["A"])]);
        }
        assert_eq!(r.typical(5), vec![]);
        let mut r = RepeatIntervals::default();
        for gap in [20, 25, 30, 41] {
            r.add_customer(&[(0, vec!["A"]), (gap, vec!["A"])]);
        }
        // (25 + 30) / 2 = 27.5, rounded up.
        assert_eq!(r.typical(4)[0].median_days, 28);
    }
}
