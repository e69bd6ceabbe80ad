//! Deterministic assignment: a customer's arm in a scenario (treatment, the scenario's holdout,
//! or the shop-wide control group) and a step's variant, from a hash of the names involved, so
//! the same customer gets the same answer in every process, after every restart.

use sha2::{Digest, Sha256};

/// Where an enrollment stands in the experiment; recorded on the enrollment when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Gets the scenario's messages.
    Treatment,
    /// The scenario's holdout: tracked like treatment, sent nothing.
    Holdout,
    /// The shop-wide control group: sent no marketing at all.
    Control,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Holdout => "holdout",
            Arm::Control => "control",
        }
    }

    pub fn parse(s: &str) -> Arm {
        match s {
            "holdout" => Arm::Holdout,
            "control" => Arm::Control,
            _ => Arm::Treatment,
        }
    }

    /// Whether this arm's enrollments are sent messages.
    pub fn sends(self) -> bool {
        self == Arm::Treatment
    }
}

/// A number in [0, 1) fixed by `parts` (SHA-256 of the parts joined by NUL).
pub fn unit(parts: &[&str]) -> f64 {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a customer is in the shop-wide control group of `share` (0 to 1).
pub fn in_control_group(customer: &str, share: f64) -> bool {
    share > 0.0 && unit(&["control-group", customer]) < share
}

/// The arm of `customer` in `scenario`: the control group first (marketing scenarios only),
/// then the scenario's holdout of `holdout` (0 to 1). The two draws are independent.
pub fn arm(scenario: &str, customer: &str, holdout: f64, control: f64, marketing: bool) -> Arm {
    if marketing && in_control_group(customer, control) {
        Arm::Control
    } else if holdout > 0.0 && unit(&["holdout", scenario, customer]) < holdout {
        Arm::Holdout
    } else {
        Arm::Treatment
    }
}

/// The index of the variant `customer` gets at `step` of `scenario`, drawn with `weights`
/// (positive). None without weights.
pub fn variant(scenario: &str, step: &str, customer: &str, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if weights.is_empty() || total <= 0.0 {
        return None;
    }
    let mut point = unit(&["variant", scenario, step, customer]) * total;
    for (i, w) in weights.iter().enumerate() {
        if point < *w {
            return Some(i);
        }
        point -= w;
    }
    Some(weights.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("C{i:06}")).collect()
    }

    #[test]
    fn the_same_inputs_always_give_the_same_arm() {
        for c in customers(200) {
            let a = arm("win-back", &c, 0.1, 0.05, true);
            assert_eq!(a, arm("win-back", &c, 0.1, 0.05, true));
        }
        // A fixed value (Python: sha256(b"holdout\0win-back\0C000001"), first 53 bits): a change
        // of the hash would move customers between arms of running experiments.
        assert_eq!(
            unit(&["holdout", "win-back", "C000001"]),
            0.248_494_487_002_653_86
        );
        assert_ne!(unit(&["ab", "c"]), unit(&["a", "bc"]));
    }

    #[test]
    fn shares_are_within_sampling_error_of_the_configured_ones() {
        let n = 20_000.0;
        let all = customers(20_000);
        let held = all
            .iter()
            .filter(|c| arm("s", c, 0.1, 0.0, true) == Arm::Holdout)
            .count();
        // 0.1 ± 4 standard errors (sd = sqrt(n p q) = 42).
        assert!(
            (held as f64 - 0.1 * n).abs() < 4.0 * (n * 0.1 * 0.9f64).sqrt(),
            "{held}"
        );
        let control = all
            .iter()
            .filter(|c| arm("s", c, 0.0, 0.05, true) == Arm::Control)
            .count();
        assert!(
            (control as f64 - 0.05 * n).abs() < 4.0 * (n * 0.05 * 0.95f64).sqrt(),
            "{control}"
        );
        let weights = [50.0, 30.0, 20.0];
        let mut counts = [0usize; 3];
        for c in &all {
            counts[variant("s", "reminder", c, &weights).unwrap()] += 1;
        }
        for (count, w) in counts.iter().zip(weights) {
            let p = w / 100.0;
            assert!(
                (*count as f64 - p * n).abs() < 4.0 * (n * p * (1.0 - p)).sqrt(),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn transactional_scenarios_ignore_the_control_group_and_holdouts_differ_per_scenario() {
        let all = customers(2_000);
        assert!(all
            .iter()
            .all(|c| arm("receipt", c, 0.0, 0.5, false) == Arm::Treatment));
        let a: Vec<bool> = all
            .iter()
            .map(|c| arm("one", c, 0.5, 0.0, true) == Arm::Holdout)
            .collect();
        let b: Vec<bool> = all
            .iter()
            .map(|c| arm("two", c, 0.5, 0.0, true) == Arm::Holdout)
            .collect();
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(
            (800..1200).contains(&same),
            "holdouts of two scenarios are independent: {same}"
        );
    }
}
