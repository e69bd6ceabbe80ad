//! Special functions the models need: the log-gamma function (libm) and the Gauss
//! hypergeometric function 2F1 by its power series.

pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// 2F1(a, b; c; z) for 0 <= z < 1, by its power series; for z > 0.5 through Euler's
/// transformation 2F1(a, b; c; z) = (1 - z)^(c - a - b) 2F1(c - a, c - b; c; z), which keeps the
/// terms from growing. Returns its logarithm, so that large values do not overflow.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if z > 0.5 {
        return (c - a - b) * (1.0 - z).ln() + series(c - a, c - b, c, z).ln();
    }
    series(a, b, c, z).ln()
}

fn series(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..100_000 {
        let k = f64::from(k);
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= sum.abs() * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypergeometric_values_match_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.01_f64, 0.3, 0.6, 0.9] {
            let want: f64 = -(1.0_f64 - z).ln() / z;
            let got = ln_hyp2f1(1.0, 1.0, 2.0, z).exp();
            assert!((got - want).abs() < 1e-12 * want, "{z}: {got} vs {want}");
        }
        // 2F1(a, b; b; z) = (1 - z)^-a
        let got = ln_hyp2f1(2.5, 3.0, 3.0, 0.7).exp();
        assert!((got - 0.3f64.powf(-2.5)).abs() < 1e-10);
        assert_eq!(ln_hyp2f1(3.0, 4.0, 5.0, 0.0), 0.0);
    }

    #[test]
    fn log_gamma_is_the_factorial_on_integers() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-14);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
    }
}
