//! Special functions the models need: the log-gamma function (libm) and the Gauss
//! hypergeometric function 2F1 by its power series.

pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// 2F1(a, b; c; z) for 0 <= z < 1, by its power series; for z > 0.5 through Euler's
/// transformation 2F1(a, b; c; z) = (1 - z)^(c - a - b) 2F1(c - a, c - b; c; z), which keeps the
/// terms from growing. Returns its logarithm, so that large values do not overflow.
/// The digamma function ψ(x) = d/dx ln Γ(x), for x > 0: the recurrence ψ(x) = ψ(x+1) − 1/x up
/// to x ≥ 10, then the asymptotic series to x⁻¹⁰ (the next term is below 3e-14 there).
pub fn digamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 10.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv2
        * (1.0 / 12.0
            - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 / 132.0))));
    result + x.ln() - 0.5 * inv - series
}

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
    fn digamma_matches_known_values() {
        let euler = 0.577_215_664_901_532_9;
        for (x, want) in [
            (1.0, -euler),
            (0.5, -euler - 2.0 * std::f64::consts::LN_2),
            (10.0, 2.251_752_589_066_721),
        ] {
            assert!(
                (digamma(x) - want).abs() < 1e-13,
                "{x}: {} vs {want}",
                digamma(x)
            );
        }
    }

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
