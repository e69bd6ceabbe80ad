//! Maximum likelihood fitting: argmin's Nelder-Mead over the logarithms of the parameters
//! (which keeps them positive), restarted from its best point until a restart no longer
//! improves the likelihood, which takes it to the maximum far more precisely than one run.

use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::neldermead::NelderMead;

/// The negated log-likelihood divided by the number of observations, so that the simplex's
/// tolerance means the same for ten customers and for a million (a sum of a million terms has
/// no digits left at 1e-13).
struct Negated<F> {
    log_likelihood: F,
    scale: f64,
}

impl<F: Fn(&[f64]) -> f64> CostFunction for Negated<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, log_params: &Self::Param) -> Result<f64, Error> {
        let params: Vec<f64> = log_params.iter().map(|l| l.exp()).collect();
        let ll = (self.log_likelihood)(&params);
        // Outside the model's domain (overflow, NaN): as bad as it gets.
        Ok(if ll.is_finite() {
            -ll / self.scale
        } else {
            f64::INFINITY
        })
    }
}

/// The parameters (all positive) that maximise `log_likelihood` (a sum over `observations`),
/// starting from `start`, and the maximum. None if no finite likelihood was found.
pub fn maximize(
    log_likelihood: impl Fn(&[f64]) -> f64,
    observations: usize,
    start: &[f64],
) -> Option<(Vec<f64>, f64)> {
    let scale = observations.max(1) as f64;
    let cost = Negated {
        log_likelihood,
        scale,
    };
    let mut best: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let mut best_cost = cost.cost(&best).ok()?;
    let mut step = 0.5;
    for _ in 0..10 {
        let mut simplex = vec![best.clone()];
        for i in 0..best.len() {
            let mut v = best.clone();
            v[i] += step;
            simplex.push(v);
        }
        let solver = NelderMead::new(simplex).with_sd_tolerance(1e-14).ok()?;
        let run = Negated {
            log_likelihood: &cost.log_likelihood,
            scale,
        };
        let result = Executor::new(run, solver)
            .configure(|s| s.max_iters(5_000))
            .run()
            .ok()?;
        let state = result.state();
        let (Some(param), found) = (state.get_best_param(), state.get_best_cost()) else {
            return None;
        };
        let improved = best_cost - found;
        if found < best_cost {
            best = param.clone();
            best_cost = found;
        }
        if improved.abs() <= 1e-13 * best_cost.abs().max(1.0) {
            break;
        }
        step = (step * 0.5).max(0.01);
    }
    best_cost
        .is_finite()
        .then(|| (best.iter().map(|l| l.exp()).collect(), -best_cost * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_maximum_of_a_smooth_function() {
        // Maximum at (2, 0.5).
        let f = |p: &[f64]| -((p[0] - 2.0).powi(2) + 10.0 * (p[1] - 0.5).powi(2));
        let (p, v) = maximize(f, 1, &[1.0, 1.0]).unwrap();
        assert!(
            (p[0] - 2.0).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6,
            "{p:?}"
        );
        assert!(v.abs() < 1e-10);
    }
}
