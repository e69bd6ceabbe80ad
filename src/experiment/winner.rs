//! Picking a step's winning variant: once every variant has enough decided messages, the best
//! conversion rate wins if it beats each other variant in a two-proportion test at the
//! configured confidence, Bonferroni-corrected for the number of comparisons. Pure.

use super::stats::TwoProportions;

/// One variant's decided messages and the conversions after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm<'a> {
    pub variant: &'a str,
    pub sent: u64,
    pub converted: u64,
}

/// The winner and a sentence saying why, or None while the evidence is not there. `variants`
/// is how many variants the step declares: one that has sent nothing yet blocks a decision.
pub fn pick_winner(
    arms: &[Arm],
    variants: usize,
    min_sample: u64,
    confidence: f64,
) -> Option<(String, String)> {
    if arms.len() < variants.max(2) || arms.iter().any(|a| a.sent < min_sample) {
        return None;
    }
    let rate = |a: &Arm| a.converted as f64 / a.sent as f64;
    let best = arms.iter().max_by(|a, b| rate(a).total_cmp(&rate(b)))?;
    let alpha = (1.0 - confidence) / (arms.len() - 1) as f64;
    let mut worst_p: f64 = 0.0;
    for other in arms.iter().filter(|a| a.variant != best.variant) {
        let t = TwoProportions {
            x1: best.converted,
            n1: best.sent,
            x2: other.converted,
            n2: other.sent,
        };
        let p = t.p_value()?;
        if rate(best) <= rate(other) || p >= alpha {
            return None;
        }
        worst_p = worst_p.max(p);
    }
    let rates: Vec<String> = arms
        .iter()
        .map(|a| format!("{} {:.1}% of {}", a.variant, 100.0 * rate(a), a.sent))
        .collect();
    Some((
        best.variant.to_string(),
        format!(
            "{} won: {}; p = {:.2e} < {:.4} ({:.0}% confidence over {} comparison(s))",
            best.variant,
            rates.join(", "),
            worst_p,
            alpha,
            confidence * 100.0,
            arms.len() - 1
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(variant: &str, sent: u64, converted: u64) -> Arm<'_> {
        Arm {
            variant,
            sent,
            converted,
        }
    }

    #[test]
    fn a_clear_winner_with_enough_messages_wins() {
        let (w, why) =
            pick_winner(&[arm("a", 2000, 360), arm("b", 2000, 480)], 2, 1000, 0.95).unwrap();
        assert_eq!(w, "b");
        assert!(
            why.starts_with("b won: a 18.0% of 2000, b 24.0% of 2000"),
            "{why}"
        );
    }

    #[test]
    fn too_few_messages_a_missing_variant_or_a_close_race_decide_nothing() {
        assert_eq!(
            pick_winner(&[arm("a", 900, 100), arm("b", 2000, 480)], 2, 1000, 0.95),
            None
        );
        assert_eq!(pick_winner(&[arm("b", 2000, 480)], 2, 1000, 0.95), None);
        assert_eq!(
            pick_winner(&[arm("a", 2000, 360), arm("b", 2000, 480)], 3, 1000, 0.95),
            None
        );
        assert_eq!(
            pick_winner(&[arm("a", 2000, 400), arm("b", 2000, 410)], 2, 1000, 0.95),
            None
        );
    }

    #[test]
    fn with_three_variants_the_best_must_beat_both_at_the_corrected_level() {
        // b beats a clearly but c only at p = 0.034: enough alone, not above 0.05 / 2.
        let arms = [
            arm("a", 2000, 360),
            arm("b", 2000, 480),
            arm("c", 2000, 424),
        ];
        assert_eq!(pick_winner(&arms, 3, 1000, 0.95), None);
        assert_eq!(pick_winner(&arms[1..], 2, 1000, 0.95).unwrap().0, "b");
        let arms = [
            arm("a", 2000, 360),
            arm("b", 2000, 480),
            arm("c", 2000, 380),
        ];
        assert_eq!(pick_winner(&arms, 3, 1000, 0.95).unwrap().0, "b");
    }
}
