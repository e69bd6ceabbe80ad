//! The Gamma-Gamma model of spend per purchase (Fader, Hardie and Lee 2005b): each customer's
//! purchase values are gamma(p, nu) with nu varying by gamma(q, v). Fitted on customers with a
//! repeat purchase and a positive monetary value, as the reference library does.

use super::bgnbd::{FitError, MIN_REPEAT_CUSTOMERS};
use super::optimize::{maximize, maximize_smooth, sum_in_parallel};
use super::special::{digamma, ln_gamma};
use super::Summary;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
    /// The customers it was fitted on.
    pub customers: usize,
}

impl GammaGamma {
    pub fn fit(customers: &[Summary]) -> Result<GammaGamma, FitError> {
        let data: Vec<(f64, f64)> = customers
            .iter()
            .filter(|s| s.frequency > 0.0 && s.monetary > 0.0)
            .map(|s| (s.frequency, s.monetary))
            .collect();
        if data.len() < MIN_REPEAT_CUSTOMERS {
            return Err(FitError::TooLittleHistory {
                model: "Gamma-Gamma",
                why: format!(
                    "{} customers bought again for more than nothing; it needs at least {MIN_REPEAT_CUSTOMERS}",
                    data.len()
                ),
            });
        }
        let mean = data.iter().map(|(_, m)| m).sum::<f64>() / data.len() as f64;
        let prepared = Prepared::new(&data);
        let start = [1.0, 1.0, mean];
        let smooth = |p: &[f64]| {
            let (v, g) = prepared.value_and_gradient(p[0], p[1], p[2]);
            (v, g.to_vec())
        };
        let ll = |p: &[f64]| prepared.log_likelihood(p[0], p[1], p[2]);
        let (p, _) = maximize_smooth(smooth, data.len(), &start)
            .or_else(|| maximize(ll, data.len(), &start))
            .ok_or(FitError::NoMaximum {
                model: "Gamma-Gamma",
            })?;
        Ok(GammaGamma {
            p: p[0],
            q: p[1],
            v: p[2],
            customers: data.len(),
        })
    }

    /// The expected value of the customer's purchases: the population mean shrunk towards
    /// their own mean by how many repeat purchases back it.
    pub fn expected_average_value(&self, frequency: f64, monetary: f64) -> f64 {
        let w = self.p * frequency / (self.p * frequency + self.q - 1.0);
        let population = self.v * self.p / (self.q - 1.0);
        (1.0 - w) * population + w * monetary
    }
}

/// The data of a fit with what does not depend on the parameters computed once: the distinct
/// frequencies (a log-gamma each per evaluation) and each customer's ln m.
struct Prepared {
    xs: Vec<f64>,
    /// (index in xs, m, ln m)
    customers: Vec<(usize, f64, f64)>,
}

impl Prepared {
    fn new(data: &[(f64, f64)]) -> Self {
        let mut xs: Vec<f64> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let customers = data
            .iter()
            .map(|&(x, m)| {
                let i = *index.entry(x as i64).or_insert_with(|| {
                    xs.push(x);
                    xs.len() - 1
                });
                (i, m, m.ln())
            })
            .collect();
        Prepared { xs, customers }
    }

    /// The log-likelihood and its gradient in (p, q, v), summed on the machine's cores.
    fn value_and_gradient(&self, p: f64, q: f64, v: f64) -> (f64, [f64; 3]) {
        let shared = -ln_gamma(q) + q * v.ln();
        let (dg_q, ln_v) = (digamma(q), v.ln());
        // Per distinct frequency: (value, d/dp, d/dq) of the terms that depend on it alone.
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let dg_pxq = digamma(p * x + q);
                (
                    ln_gamma(p * x + q) - ln_gamma(p * x) + shared + p * x * x.ln(),
                    x * (dg_pxq - digamma(p * x) + x.ln()),
                    dg_pxq - dg_q + ln_v,
                )
            })
            .collect();
        let part = |customers: &[(usize, f64, f64)]| {
            let mut value = 0.0;
            let mut grad = [0.0; 3];
            for &(i, m, ln_m) in customers {
                let x = self.xs[i];
                let (base, d_p, d_q) = per_x[i];
                let xmv = x * m + v;
                let ln_xmv = xmv.ln();
                value += base + (p * x - 1.0) * ln_m - (p * x + q) * ln_xmv;
                grad[0] += d_p + x * ln_m - x * ln_xmv;
                grad[1] += d_q - ln_xmv;
                grad[2] += q / v - (p * x + q) / xmv;
            }
            (value, grad)
        };
        sum_in_parallel(&self.customers, part)
    }

    fn log_likelihood(&self, p: f64, q: f64, v: f64) -> f64 {
        let shared = -ln_gamma(q) + q * v.ln();
        let per_x: Vec<f64> = self
            .xs
            .iter()
            .map(|&x| ln_gamma(p * x + q) - ln_gamma(p * x) + shared + p * x * x.ln())
            .collect();
        self.customers
            .iter()
            .map(|&(i, m, ln_m)| {
                let x = self.xs[i];
                per_x[i] + (p * x - 1.0) * ln_m - (p * x + q) * (x * m + v).ln()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_matches_finite_differences() {
        let data: Vec<(f64, f64)> = (1..300)
            .map(|i| ((i % 7 + 1) as f64, 1000.0 + (i * 37 % 500) as f64))
            .collect();
        let prepared = Prepared::new(&data);
        let p = [2.5, 3.5, 900.0];
        let (v, g) = prepared.value_and_gradient(p[0], p[1], p[2]);
        assert!((v - prepared.log_likelihood(p[0], p[1], p[2])).abs() < 1e-9 * v.abs());
        for k in 0..3 {
            let h = 1e-6 * p[k];
            let (mut up, mut down) = (p, p);
            up[k] += h;
            down[k] -= h;
            let numeric = (prepared.log_likelihood(up[0], up[1], up[2])
                - prepared.log_likelihood(down[0], down[1], down[2]))
                / (2.0 * h);
            assert!(
                (g[k] - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
                "{k}: {} vs {numeric}",
                g[k]
            );
        }
    }
}
