//! The Gamma-Gamma model of spend per purchase (Fader, Hardie and Lee 2005b): each customer's
//! purchase values are gamma(p, nu) with nu varying by gamma(q, v). Fitted on customers with a
//! repeat purchase and a positive monetary value, as the reference library does.

use super::bgnbd::{FitError, MIN_REPEAT_CUSTOMERS};
use super::optimize::maximize;
use super::special::ln_gamma;
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
        let ll = |p: &[f64]| prepared.log_likelihood(p[0], p[1], p[2]);
        let (p, _) = maximize(ll, data.len(), &[1.0, 1.0, mean]).ok_or(FitError::NoMaximum {
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
