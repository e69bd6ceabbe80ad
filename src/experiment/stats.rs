//! The statistics of a treatment-against-holdout comparison of two proportions: Wilson score
//! intervals for each rate, Newcombe's hybrid score interval for their difference (the absolute
//! uplift), a log-scale interval for their ratio (the relative uplift), the pooled two-proportion
//! z-test, and the sample size that would detect an effect at a given power. Pure functions.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for 80% power (one-sided quantile 0.8).
pub const Z_POWER80: f64 = 0.841_621_233_572_914_3;

/// Standard normal cumulative distribution.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// A proportion's 95% Wilson score interval (Newcombe 1998a, method 3). None for n = 0.
pub fn wilson(x: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = Z95 * Z95;
    let centre = p + z2 / (2.0 * n);
    let spread = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denom = 1.0 + z2 / n;
    Some(((centre - spread) / denom, (centre + spread) / denom))
}

/// The two groups compared: conversions and sizes of treatment (1) and holdout (2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoProportions {
    pub x1: u64,
    pub n1: u64,
    pub x2: u64,
    pub n2: u64,
}

/// What the report says of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Uplift {
    pub rate_treatment: f64,
    pub rate_holdout: f64,
    /// p1 − p2 and its 95% interval (Newcombe's hybrid score method).
    pub absolute: f64,
    pub absolute_low: f64,
    pub absolute_high: f64,
    /// p1 / p2 − 1 and its 95% interval (log method); None when the holdout converted nobody.
    pub relative: Option<f64>,
    pub relative_low: Option<f64>,
    pub relative_high: Option<f64>,
    /// Two-sided p-value of the pooled two-proportion z-test.
    pub p_value: f64,
    /// Whether the interval of the difference excludes zero.
    pub significant: bool,
    /// Treatment customers needed (with the same holdout share) to detect the observed
    /// difference at 80% power and 5% significance; None when the difference is zero.
    pub needed_treatment: Option<u64>,
    pub needed_holdout: Option<u64>,
}

impl TwoProportions {
    pub fn p1(&self) -> f64 {
        self.x1 as f64 / self.n1 as f64
    }

    pub fn p2(&self) -> f64 {
        self.x2 as f64 / self.n2 as f64
    }

    /// The difference p1 − p2 with Newcombe's (1998b, method 10) hybrid score interval.
    pub fn difference(&self) -> Option<(f64, f64, f64)> {
        let (l1, u1) = wilson(self.x1, self.n1)?;
        let (l2, u2) = wilson(self.x2, self.n2)?;
        let (p1, p2) = (self.p1(), self.p2());
        let d = p1 - p2;
        let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
        let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
        Some((d, low, high))
    }

    /// The ratio p1 / p2 with the log-scale (Katz) 95% interval; None when either group has
    /// no conversion.
    pub fn ratio(&self) -> Option<(f64, f64, f64)> {
        if self.x1 == 0 || self.x2 == 0 {
            return None;
        }
        let rr = self.p1() / self.p2();
        let se = ((1.0 - self.p1()) / self.x1 as f64 + (1.0 - self.p2()) / self.x2 as f64).sqrt();
        Some((rr, rr * (-Z95 * se).exp(), rr * (Z95 * se).exp()))
    }

    /// The two-sided p-value of the pooled two-proportion z-test (equal to Pearson's
    /// chi-square test of the 2×2 table without continuity correction).
    pub fn p_value(&self) -> Option<f64> {
        if self.n1 == 0 || self.n2 == 0 {
            return None;
        }
        let (n1, n2) = (self.n1 as f64, self.n2 as f64);
        let pooled = (self.x1 + self.x2) as f64 / (n1 + n2);
        let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
        if se == 0.0 {
            return Some(1.0);
        }
        let z = (self.p1() - self.p2()) / se;
        Some(2.0 * normal_cdf(-z.abs()))
    }

    /// Everything the report shows; None when a group is empty.
    pub fn uplift(&self) -> Option<Uplift> {
        let (d, low, high) = self.difference()?;
        let ratio = self.ratio();
        let needed = needed_sample(self.p1(), self.p2(), self.n2 as f64 / self.n1 as f64);
        Some(Uplift {
            rate_treatment: self.p1(),
            rate_holdout: self.p2(),
            absolute: d,
            absolute_low: low,
            absolute_high: high,
            relative: ratio.map(|r| r.0 - 1.0),
            relative_low: ratio.map(|r| r.1 - 1.0),
            relative_high: ratio.map(|r| r.2 - 1.0),
            p_value: self.p_value()?,
            significant: low > 0.0 || high < 0.0,
            needed_treatment: needed.map(|n| n.0),
            needed_holdout: needed.map(|n| n.1),
        })
    }
}

/// Group sizes that detect a difference between rates `p1` and `p2` at 80% power with a
/// two-sided 5% test, the second group `ratio` times the first (Fleiss, Levin & Paik 2003,
/// eq. 4.19, without continuity correction). None when the rates are equal or the ratio is 0.
pub fn needed_sample(p1: f64, p2: f64, ratio: f64) -> Option<(u64, u64)> {
    let d = (p1 - p2).abs();
    if d < 1e-12 || ratio <= 0.0 || !ratio.is_finite() {
        return None;
    }
    let pbar = (p1 + ratio * p2) / (1.0 + ratio);
    let a = Z95 * (pbar * (1.0 - pbar) * (1.0 + 1.0 / ratio)).sqrt();
    let b = Z_POWER80 * (p1 * (1.0 - p1) + p2 * (1.0 - p2) / ratio).sqrt();
    let n1 = ((a + b) / d).powi(2).ceil();
    Some((n1 as u64, (n1 * ratio).ceil() as u64))
}

/// One sample summed: its size, the sum of its values and the sum of their squares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    pub n: u64,
    pub sum: f64,
    pub squares: f64,
}

impl Sums {
    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// The sample variance (n − 1 in the denominator), never negative from rounding.
    fn variance(&self) -> f64 {
        let n = self.n as f64;
        ((self.squares - n * self.mean() * self.mean()) / (n - 1.0)).max(0.0)
    }
}

/// The difference of two means, `a − b`, and its 95% interval by Welch's normal approximation
/// (each sample's own variance; revenue per customer is mostly zeros and a few large orders,
/// so with the hundreds a report needs the mean is normal enough). None with fewer than two
/// in either sample.
pub fn mean_difference(a: Sums, b: Sums) -> Option<(f64, f64, f64)> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let d = a.mean() - b.mean();
    let se = (a.variance() / a.n as f64 + b.variance() / b.n as f64).sqrt();
    Some((d, d - Z95 * se, d + Z95 * se))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_newcombes_worked_examples() {
        // Newcombe (1998a), Statistics in Medicine 17:857-872, Table I, method 3.
        let (l, u) = wilson(81, 263).unwrap();
        assert!(close(l, 0.2553, 5e-5) && close(u, 0.3662, 5e-5), "{l} {u}");
        let (l, u) = wilson(15, 148).unwrap();
        assert!(close(l, 0.0624, 5e-5) && close(u, 0.1605, 5e-5), "{l} {u}");
        let (l, u) = wilson(0, 20).unwrap();
        assert!(close(l, 0.0, 5e-5) && close(u, 0.1611, 5e-5), "{l} {u}");
    }

    #[test]
    fn the_difference_interval_matches_newcombes_worked_examples() {
        // Newcombe (1998b), Statistics in Medicine 17:873-890, Table II, method 10.
        let cases = [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((6, 7, 2, 7), (0.0582, 0.8062)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ];
        for ((x1, n1, x2, n2), (lo, hi)) in cases {
            let (_, l, u) = TwoProportions { x1, n1, x2, n2 }.difference().unwrap();
            assert!(
                close(l, lo, 5e-5) && close(u, hi, 5e-5),
                "{x1}/{n1} − {x2}/{n2}: {l} {u}"
            );
        }
    }

    #[test]
    fn the_p_value_is_pearsons_chi_square_test() {
        // 56/70 against 48/80: Pearson's chi-square n(ad − bc)² / (row and column totals)
        // = 150 · (56·32 − 14·48)² / (70 · 80 · 104 · 46) = 7.0234 on 1 df, p = 0.008045.
        let t = TwoProportions {
            x1: 56,
            n1: 70,
            x2: 48,
            n2: 80,
        };
        let p = t.p_value().unwrap();
        let chi2: f64 =
            150.0 * (56.0f64 * 32.0 - 14.0 * 48.0).powi(2) / (70.0 * 80.0 * 104.0 * 46.0);
        assert!(close(chi2, 7.0234, 1e-4));
        assert!(
            close(p, 2.0 * normal_cdf(-chi2.sqrt()), 1e-12) && close(p, 0.008045, 1e-6),
            "{p}"
        );
        // No difference at all: p = 1.
        let same = TwoProportions {
            x1: 20,
            n1: 100,
            x2: 10,
            n2: 50,
        };
        assert!(close(same.p_value().unwrap(), 1.0, 1e-12));
        // 18% of 2,000 against 24% of 2,000: pooled 0.21, z = −0.06 / 0.012881 = −4.6583,
        // p = 3.188e-6.
        let big = TwoProportions {
            x1: 360,
            n1: 2000,
            x2: 480,
            n2: 2000,
        };
        assert!(
            close(big.p_value().unwrap(), 3.188e-6, 0.001e-6),
            "{}",
            big.p_value().unwrap()
        );
    }

    #[test]
    fn the_sample_size_matches_the_fleiss_formula_example() {
        // Fleiss, Levin & Paik (2003), §4.2: 0.65 against 0.85, equal groups, 5% two-sided,
        // 80% power: 73 per group without the continuity correction.
        assert_eq!(needed_sample(0.65, 0.85, 1.0), Some((73, 73)));
        // Smaller holdout: more in total, the holdout a tenth of treatment.
        let (t, h) = needed_sample(0.18, 0.24, 0.1).unwrap();
        assert!(h * 10 >= t && t > needed_sample(0.18, 0.24, 1.0).unwrap().0);
        assert_eq!(needed_sample(0.2, 0.2, 1.0), None);
    }

    #[test]
    fn the_ratio_interval_is_the_log_method() {
        // 30/100 against 20/100: RR 1.5, se of ln RR sqrt(0.7/30 + 0.8/20) = 0.2517.
        let (rr, l, u) = TwoProportions {
            x1: 30,
            n1: 100,
            x2: 20,
            n2: 100,
        }
        .ratio()
        .unwrap();
        assert!(close(rr, 1.5, 1e-12));
        assert!(close(l, 1.5 * (-Z95 * 0.251_661).exp(), 1e-4), "{l}");
        assert!(close(u, 1.5 * (Z95 * 0.251_661).exp(), 1e-4), "{u}");
        assert!(TwoProportions {
            x1: 3,
            n1: 10,
            x2: 0,
            n2: 10
        }
        .ratio()
        .is_none());
    }

    #[test]
    fn the_mean_difference_is_welchs_interval() {
        // a = [0, 0, 10, 20], b = [0, 5, 5]: means 7.5 and 3.33, variances 91.67 and 8.33,
        // standard error sqrt(91.67 / 4 + 8.33 / 3) = 5.0690.
        let a = Sums {
            n: 4,
            sum: 30.0,
            squares: 500.0,
        };
        let b = Sums {
            n: 3,
            sum: 10.0,
            squares: 50.0,
        };
        let (d, l, u) = mean_difference(a, b).unwrap();
        assert!(close(d, 4.166_667, 1e-5));
        assert!(close(l, 4.166_667 - Z95 * 5.068_968_8, 1e-4), "{l}");
        assert!(close(u, 4.166_667 + Z95 * 5.068_968_8, 1e-4), "{u}");
        assert_eq!(
            mean_difference(
                Sums {
                    n: 1,
                    sum: 1.0,
                    squares: 1.0
                },
                b
            ),
            None
        );
    }

    #[test]
    fn the_mean_difference_interval_covers_a_null_effect_in_95_percent_of_shops() {
        // Revenue per enrolled customer: 20% buy again, for 1,000 to 30,000 (minor units).
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut sample = |n: u64| {
            let mut s = Sums {
                n,
                sum: 0.0,
                squares: 0.0,
            };
            for _ in 0..n {
                if rng.random_bool(0.2) {
                    let v = rng.random_range(1_000.0..30_000.0);
                    s.sum += v;
                    s.squares += v * v;
                }
            }
            s
        };
        let shops = 2000;
        let mut covered = 0;
        for _ in 0..shops {
            let (t, h) = (sample(1800), sample(200));
            let (_, l, u) = mean_difference(t, h).unwrap();
            covered += usize::from(l <= 0.0 && 0.0 <= u);
        }
        let share = covered as f64 / shops as f64;
        assert!((0.92..=0.98).contains(&share), "coverage {share}");
    }

    #[test]
    fn the_difference_interval_covers_a_null_effect_in_95_percent_of_shops() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let shops = 4000;
        let mut covered = 0;
        for _ in 0..shops {
            let (n1, n2, p) = (1800u64, 200u64, 0.18);
            let x1 = (0..n1).filter(|_| rng.random_bool(p)).count() as u64;
            let x2 = (0..n2).filter(|_| rng.random_bool(p)).count() as u64;
            let (_, l, u) = TwoProportions { x1, n1, x2, n2 }.difference().unwrap();
            covered += usize::from(l <= 0.0 && 0.0 <= u);
        }
        let share = covered as f64 / shops as f64;
        assert!((0.92..=0.98).contains(&share), "coverage {share}");
    }
}
