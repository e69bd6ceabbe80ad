//! The BG/NBD model (Fader, Hardie and Lee 2005): purchases at a Poisson rate while alive,
//! dropping out after any purchase with some probability; rates vary by gamma(r, alpha),
//! dropout probabilities by beta(a, b). Fitted by maximum likelihood over (frequency, recency,
//! T) in days, no penalty, as the reference library does.

use super::optimize::{maximize, maximize_smooth, sum_in_parallel};
use super::special::{digamma, ln_gamma, ln_hyp2f1};
use super::Summary;
use serde::Serialize;

/// Below these a fit says more about noise than about the shop.
pub const MIN_CUSTOMERS: usize = 30;
pub const MIN_REPEAT_CUSTOMERS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// The log-likelihood of the data at these parameters.
    pub log_likelihood: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("too little history to fit the {model} model: {why}")]
    TooLittleHistory { model: &'static str, why: String },
    #[error(
        "the {model} model could not be fitted: the likelihood has no finite maximum from the data"
    )]
    NoMaximum { model: &'static str },
    #[error("the {model} model cannot use this history: {why}")]
    Unusable { model: &'static str, why: String },
}

impl BgNbd {
    /// Fits the model to customers' summaries.
    pub fn fit(customers: &[Summary]) -> Result<BgNbd, FitError> {
        let repeaters = customers.iter().filter(|s| s.frequency > 0.0).count();
        if customers.len() < MIN_CUSTOMERS || repeaters < MIN_REPEAT_CUSTOMERS {
            return Err(FitError::TooLittleHistory {
                model: "BG/NBD",
                why: format!(
                    "{} customers of whom {repeaters} bought again; it needs at least {MIN_CUSTOMERS} customers and {MIN_REPEAT_CUSTOMERS} who bought again",
                    customers.len()
                ),
            });
        }
        let data = Grouped::new(customers).ok_or_else(|| FitError::Unusable {
            model: "BG/NBD",
            why: "frequency, recency and T must be whole numbers of days from 0 to 2,097,151"
                .into(),
        })?;
        let mean_t = customers.iter().map(|s| s.t).sum::<f64>() / customers.len() as f64;
        let start = [1.0, mean_t.max(1.0), 1.0, 1.0];
        // Quasi-Newton on the analytic gradient first (tens of evaluations); the simplex,
        // which needs no gradient, if that does not converge.
        let smooth = |p: &[f64]| {
            let (v, g) = data.value_and_gradient(p[0], p[1], p[2], p[3]);
            (v, g.to_vec())
        };
        let ll = |p: &[f64]| data.log_likelihood(p[0], p[1], p[2], p[3]);
        let (p, log_likelihood) = maximize_smooth(smooth, customers.len(), &start)
            .or_else(|| maximize(ll, customers.len(), &start))
            .ok_or(FitError::NoMaximum { model: "BG/NBD" })?;
        Ok(BgNbd {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
            log_likelihood,
        })
    }

    /// The probability that the customer is still buying (1 without a repeat purchase).
    pub fn p_alive(&self, s: &Summary) -> f64 {
        if s.frequency == 0.0 {
            return 1.0;
        }
        let (x, tx, t) = (s.frequency, s.recency, s.t);
        let log_div = (self.r + x) * ((self.alpha + t) / (self.alpha + tx)).ln()
            + (self.a / (self.b + x - 1.0)).ln();
        1.0 / (1.0 + log_div.exp())
    }

    /// Expected purchases in the next `days` days, given the customer's history (eq. 10).
    pub fn expected_purchases(&self, days: f64, s: &Summary) -> f64 {
        if days <= 0.0 {
            return 0.0;
        }
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let (x, tx, t) = (s.frequency, s.recency, s.t);
        let z = days / (alpha + t + days);
        let ln_hyp = ln_hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - (ln_hyp + (r + x) * ((alpha + t) / (alpha + t + days)).ln()).exp();
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + t) / (alpha + tx)).powf(r + x)
        } else {
            1.0
        };
        first * second / denominator
    }

    /// The day, counted from the end of observation, by which the customer is expected to
    /// have made one more purchase (the expectation reaches 1); None if not within
    /// `horizon` days.
    pub fn days_to_next_purchase(&self, s: &Summary, horizon: u32) -> Option<u32> {
        if self.expected_purchases(f64::from(horizon), s) < 1.0 {
            return None;
        }
        // The smallest whole day with an expectation of at least 1.
        let (mut lo, mut hi) = (0u32, horizon);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.expected_purchases(f64::from(mid), s) < 1.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }
}

/// The data of a fit, grouped: customers with the same (frequency, recency, T) are one term
/// with a weight, and each distinct frequency, recency and T is one entry of a table, so that
/// one evaluation of the likelihood computes a log-gamma per distinct frequency and a
/// logarithm per distinct day count, not per customer.
struct Grouped {
    xs: Vec<f64>,
    txs: Vec<f64>,
    ts: Vec<f64>,
    /// (index in xs, index in txs, index in ts, customers)
    groups: Vec<(u32, u32, u32, f64)>,
}

impl Grouped {
    /// None when a value is not a whole number of days in `0..2^21` (5,700 years), which a
    /// summary of real orders never has.
    fn new(customers: &[Summary]) -> Option<Self> {
        // Each (frequency, recency, T) packed into one integer, sorted, and counted by runs:
        // several times faster than hashing a million triples.
        const BITS: u32 = 21;
        let day = |v: f64| {
            (v >= 0.0 && v < f64::from(1u32 << BITS) && v.fract() == 0.0).then_some(v as u64)
        };
        let mut keys = customers
            .iter()
            .map(|s| {
                Some((day(s.frequency)? << (2 * BITS)) | (day(s.recency)? << BITS) | day(s.t)?)
            })
            .collect::<Option<Vec<u64>>>()?;
        keys.sort_unstable();
        let mask = (1u64 << BITS) - 1;
        let unpack = |k: u64| {
            [
                (k >> (2 * BITS)) as usize,
                ((k >> BITS) & mask) as usize,
                (k & mask) as usize,
            ]
        };
        // Per coordinate, a table from a day count to its index among the distinct ones.
        let mut tables: [Vec<u32>; 3] = Default::default();
        for k in keys.iter().copied() {
            for (table, v) in tables.iter_mut().zip(unpack(k)) {
                if table.len() <= v {
                    table.resize(v + 1, 0);
                }
                table[v] = 1;
            }
        }
        let mut values: [Vec<f64>; 3] = Default::default();
        for (table, values) in tables.iter_mut().zip(&mut values) {
            for (v, slot) in table.iter_mut().enumerate() {
                if *slot == 1 {
                    *slot = values.len() as u32;
                    values.push(v as f64);
                }
            }
        }
        let groups = keys
            .chunk_by(|p, q| p == q)
            .map(|run| {
                let [x, tx, t] = unpack(run[0]);
                (tables[0][x], tables[1][tx], tables[2][t], run.len() as f64)
            })
            .collect();
        let [xs, txs, ts] = values;
        Some(Grouped {
            xs,
            txs,
            ts,
            groups,
        })
    }

    fn log_likelihood(&self, r: f64, alpha: f64, a: f64, b: f64) -> f64 {
        let shared = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
        // Per distinct frequency: the terms that depend on it alone.
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let a12 = ln_gamma(r + x) + shared + ln_gamma(b + x) - ln_gamma(a + b + x);
                let a4 = if x > 0.0 {
                    a.ln() - (b + x - 1.0).ln()
                } else {
                    f64::NEG_INFINITY
                };
                (a12, a4, r + x)
            })
            .collect();
        let ln_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let ln_tx: Vec<f64> = self.txs.iter().map(|tx| (alpha + tx).ln()).collect();
        self.groups
            .iter()
            .map(|&(x, tx, t, n)| {
                let (a12, a4, rx) = per_x[x as usize];
                let a3 = -rx * ln_t[t as usize];
                let total = if a4.is_finite() {
                    log_add_exp(a3, a4 - rx * ln_tx[tx as usize])
                } else {
                    a3
                };
                n * (a12 + total)
            })
            .sum()
    }
}

impl Grouped {
    /// The log-likelihood and its gradient in (r, alpha, a, b), summed over the groups on
    /// the machine's cores.
    fn value_and_gradient(&self, r: f64, alpha: f64, a: f64, b: f64) -> (f64, [f64; 4]) {
        let shared = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
        let (dg_r, dg_ab, dg_b) = (digamma(r), digamma(a + b), digamma(b));
        // Per distinct frequency: the terms that depend on it alone, and their derivatives.
        let per_x: Vec<PerX> = self
            .xs
            .iter()
            .map(|&x| PerX {
                a12: ln_gamma(r + x) + shared + ln_gamma(b + x) - ln_gamma(a + b + x),
                d_a12: [
                    digamma(r + x) - dg_r + alpha.ln(),
                    r / alpha,
                    dg_ab - digamma(a + b + x),
                    dg_ab - dg_b + digamma(b + x) - digamma(a + b + x),
                ],
                a4: if x > 0.0 {
                    Some(a.ln() - (b + x - 1.0).ln())
                } else {
                    None
                },
                inv_bx1: 1.0 / (b + x - 1.0),
                rx: r + x,
            })
            .collect();
        let ln_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let inv_t: Vec<f64> = self.ts.iter().map(|t| 1.0 / (alpha + t)).collect();
        let ln_tx: Vec<f64> = self.txs.iter().map(|tx| (alpha + tx).ln()).collect();
        let inv_tx: Vec<f64> = self.txs.iter().map(|tx| 1.0 / (alpha + tx)).collect();
        let part = |groups: &[(u32, u32, u32, f64)]| {
            let mut value = 0.0;
            let mut grad = [0.0; 4];
            for &(x, tx, t, n) in groups {
                let px = &per_x[x as usize];
                let (t, tx) = (t as usize, tx as usize);
                let u = -px.rx * ln_t[t];
                let (l, d) = match px.a4 {
                    Some(a4) => {
                        let v = a4 - px.rx * ln_tx[tx];
                        // ln(e^u + e^v) and the weight e^v / (e^u + e^v), one exp for both.
                        let d = v - u;
                        let e = (-d.abs()).exp();
                        let (l, wv) = if d > 0.0 {
                            (v + e.ln_1p(), 1.0 / (1.0 + e))
                        } else {
                            (u + e.ln_1p(), e / (1.0 + e))
                        };
                        let wu = 1.0 - wv;
                        (
                            l,
                            [
                                -(wu * ln_t[t] + wv * ln_tx[tx]),
                                -px.rx * (wu * inv_t[t] + wv * inv_tx[tx]),
                                wv / a,
                                -wv * px.inv_bx1,
                            ],
                        )
                    }
                    None => (u, [-ln_t[t], -px.rx * inv_t[t], 0.0, 0.0]),
                };
                value += n * (px.a12 + l);
                for k in 0..4 {
                    grad[k] += n * (px.d_a12[k] + d[k]);
                }
            }
            (value, grad)
        };
        sum_in_parallel(&self.groups, part)
    }
}

/// The terms of a distinct frequency (see `Grouped::value_and_gradient`).
struct PerX {
    a12: f64,
    d_a12: [f64; 4],
    a4: Option<f64>,
    inv_bx1: f64,
    rx: f64,
}

fn log_add_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u > v { (u, v) } else { (v, u) };
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` customers; customer `i` orders `orders(i)` times, every `gap(i)` days from day 0,
    /// observed to day `end(i)`.
    fn shop(
        n: usize,
        orders: impl Fn(usize) -> usize,
        gap: impl Fn(usize) -> usize,
        end: impl Fn(usize) -> usize,
    ) -> Vec<Summary> {
        (0..n)
            .map(|i| {
                let bought: Vec<super::super::Purchase> = (0..orders(i))
                    .map(|k| super::super::Purchase {
                        day: (k * gap(i)) as i64,
                        amount: 10.0,
                    })
                    .collect();
                Summary::of(&bought, end(i) as i64).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let customers = shop(200, |i| i % 5 + 1, |i| 7 + i % 11, |i| 100 + i % 37);
        let data = Grouped::new(&customers).unwrap();
        let p = [0.8, 12.0, 0.7, 2.5];
        let (v, g) = data.value_and_gradient(p[0], p[1], p[2], p[3]);
        assert!((v - data.log_likelihood(p[0], p[1], p[2], p[3])).abs() < 1e-9 * v.abs());
        for k in 0..4 {
            let h = 1e-6 * p[k];
            let (mut up, mut down) = (p, p);
            up[k] += h;
            down[k] -= h;
            let numeric = (data.log_likelihood(up[0], up[1], up[2], up[3])
                - data.log_likelihood(down[0], down[1], down[2], down[3]))
                / (2.0 * h);
            assert!(
                (g[k] - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
                "{k}: {} vs {numeric}",
                g[k]
            );
        }
    }

    #[test]
    fn grouping_counts_every_customer_once() {
        let customers = shop(500, |i| i % 4 + 1, |i| 3 + i % 5, |i| 40 + i % 3);
        let p = [0.8, 12.0, 0.7, 2.5];
        let grouped = Grouped::new(&customers).unwrap();
        assert!(
            grouped.groups.len() < customers.len(),
            "some customers share a group"
        );
        let one_by_one: f64 = customers
            .iter()
            .map(|c| {
                Grouped::new(&[*c])
                    .unwrap()
                    .log_likelihood(p[0], p[1], p[2], p[3])
            })
            .sum();
        let together = grouped.log_likelihood(p[0], p[1], p[2], p[3]);
        assert!(
            (together - one_by_one).abs() < 1e-9 * one_by_one.abs(),
            "{together} vs {one_by_one}"
        );
    }

    #[test]
    fn a_summary_that_is_not_whole_days_is_refused() {
        let mut customers = vec![
            Summary::of(
                &[
                    super::super::Purchase {
                        day: 0,
                        amount: 1.0
                    },
                    super::super::Purchase {
                        day: 5,
                        amount: 1.0
                    }
                ],
                10
            )
            .unwrap();
            40
        ];
        customers[3].t = 10.5;
        let err = BgNbd::fit(&customers).unwrap_err();
        assert!(matches!(err, FitError::Unusable { .. }), "{err}");
    }

    #[test]
    fn too_little_history_is_refused_with_the_numbers() {
        let one = Summary::of(
            &[super::super::Purchase {
                day: 0,
                amount: 1.0,
            }],
            10,
        )
        .unwrap();
        let err = BgNbd::fit(&vec![one; 5]).unwrap_err();
        assert!(
            err.to_string()
                .contains("5 customers of whom 0 bought again"),
            "{err}"
        );
    }
}
