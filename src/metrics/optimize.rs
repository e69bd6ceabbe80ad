//! Maximum likelihood fitting over the logarithms of the parameters (which keeps them
//! positive): argmin's L-BFGS on an analytic gradient (`maximize_smooth`, tens of evaluations,
//! the likelihood summed on every core by `sum_in_parallel`), and argmin's Nelder-Mead
//! (`maximize`), restarted from its best point until a restart no longer improves, for when
//! L-BFGS does not converge.

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

/// A point (log-parameters), the cost there and its gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);
/// A point (log-parameters) and the cost there.
type Found = (Vec<f64>, f64);

/// The negated log-likelihood per observation with its gradient, both in the logarithms of
/// the parameters. The last evaluation is kept: argmin asks for the cost and the gradient at
/// the same point separately, and one pass computes both.
struct Smooth<F> {
    value_and_gradient: F,
    scale: f64,
    last: std::sync::Mutex<Option<Evaluated>>,
    /// The first point found where the gradient vanishes (see `GRADIENT_TOLERANCE`); finding
    /// one ends the run at once.
    done: std::sync::Arc<std::sync::Mutex<Option<Found>>>,
}

/// The gradient per observation (in log-parameters) below which a fit has converged: what
/// moves a parameter by about 1e-7 relative. Smaller gradients cannot be reached reliably:
/// the likelihood's own rounding hides the decrease a step would make, and the line search
/// then spends dozens of evaluations bisecting noise.
const GRADIENT_TOLERANCE: f64 = 1e-7;

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Smooth<F> {
    fn eval(&self, log_params: &[f64]) -> (f64, Vec<f64>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, cost, grad)) = last.as_ref() {
            if at.as_slice() == log_params {
                return (*cost, grad.clone());
            }
        }
        let params: Vec<f64> = log_params.iter().map(|l| l.exp()).collect();
        let (ll, g) = (self.value_and_gradient)(&params);
        let out = if ll.is_finite() && g.iter().all(|d| d.is_finite()) {
            // d(-ll/n)/d(ln p) = -p · dll/dp / n
            let grad = g
                .iter()
                .zip(&params)
                .map(|(d, p)| -d * p / self.scale)
                .collect();
            (-ll / self.scale, grad)
        } else {
            (f64::INFINITY, vec![0.0; params.len()])
        };
        *last = Some((log_params.to_vec(), out.0, out.1.clone()));
        out
    }

    /// `eval`, or an error that stops the solver once the gradient has vanished.
    fn checked(&self, log_params: &[f64]) -> Result<(f64, Vec<f64>), Error> {
        let (cost, grad) = self.eval(log_params);
        if cost.is_finite() && grad.iter().all(|g| g.abs() < GRADIENT_TOLERANCE) {
            let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            done.get_or_insert((log_params.to_vec(), cost));
            return Err(Error::msg("converged"));
        }
        Ok((cost, grad))
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Smooth<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<f64, Error> {
        self.checked(p).map(|(cost, _)| cost)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> argmin::core::Gradient for Smooth<F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, Error> {
        self.checked(p).map(|(_, grad)| grad)
    }
}

/// Like [`maximize`], for a likelihood that also gives its gradient: L-BFGS with a
/// Moré-Thuente line search in the logarithms of the parameters. None if it does not
/// converge to a point where the gradient vanishes (the caller falls back to the simplex).
pub fn maximize_smooth(
    value_and_gradient: impl Fn(&[f64]) -> (f64, Vec<f64>),
    observations: usize,
    start: &[f64],
) -> Option<(Vec<f64>, f64)> {
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;
    let scale = observations.max(1) as f64;
    let done = std::sync::Arc::new(std::sync::Mutex::new(None));
    let problem = || Smooth {
        value_and_gradient: &value_and_gradient,
        scale,
        last: std::sync::Mutex::new(None),
        done: done.clone(),
    };
    let converged = |done: &std::sync::Mutex<Option<(Vec<f64>, f64)>>| {
        let found = done.lock().unwrap_or_else(|e| e.into_inner()).clone();
        found.map(|(at, cost): (Vec<f64>, f64)| {
            (at.iter().map(|l| l.exp()).collect(), -cost * scale)
        })
    };
    let mut at: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    // A line search that steps out of the model's domain (an infinite likelihood) ends a run
    // early; the next run starts from the best point so far with a fresh curvature estimate.
    for _ in 0..5 {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
            .with_tolerance_grad(GRADIENT_TOLERANCE)
            .ok()?
            .with_tolerance_cost(0.0)
            .ok()?;
        let result = Executor::new(problem(), solver)
            .configure(|s| s.param(at.clone()).max_iters(200))
            .run();
        if let Some(found) = converged(&done) {
            return Some(found);
        }
        let result = result.ok()?;
        let state = result.state();
        let best = state.get_best_param()?.clone();
        let (cost, _) = problem().eval(&best);
        if !cost.is_finite() {
            return None;
        }
        if best == at {
            return None;
        }
        at = best;
    }
    None
}

/// `part` over halves (or more) of `items` on scoped threads, the results added up.
pub fn sum_in_parallel<T: Sync, const N: usize>(
    items: &[T],
    part: impl Fn(&[T]) -> (f64, [f64; N]) + Sync,
) -> (f64, [f64; N]) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if threads == 1 || items.len() < 50_000 {
        return part(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| scope.spawn(|| part(c)))
            .collect();
        let mut total = (0.0, [0.0; N]);
        for h in handles {
            let (v, g) = h.join().expect("a likelihood part panicked");
            total.0 += v;
            for (t, d) in total.1.iter_mut().zip(g) {
                *t += d;
            }
        }
        total
    })
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
