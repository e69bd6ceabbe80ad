//! RFM quintile scores, tie-consistent: each value's average percentile rank (equal values
//! share the mean of their ranks) is cut at 0.2, 0.4, 0.6 and 0.8, so equal values always share
//! a score and a score may be empty.

/// Which end of the scale scores 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Larger values score higher (frequency, money).
    HigherIsBetter,
    /// Smaller values score higher (days since the last order: the most recent buyers get 5).
    LowerIsBetter,
}

/// Scores 1 to 5 for `values`, in their order.
pub fn quintiles(values: &[f64], direction: Direction) -> Vec<u8> {
    let n = values.len();
    let key = |i: usize| match direction {
        Direction::HigherIsBetter => values[i],
        Direction::LowerIsBetter => -values[i],
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| key(i).total_cmp(&key(j)));
    let mut scores = vec![0u8; n];
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && key(order[end]) == key(order[start]) {
            end += 1;
        }
        // Twice the average 1-based rank of the tie group, and the smallest k with
        // rank / n <= k / 5, in integers so that boundaries are exact.
        let twice_rank = (start + 1 + end) as u64;
        let k = (twice_rank * 5).div_ceil(2 * n as u64).clamp(1, 5) as u8;
        for &i in &order[start..end] {
            scores[i] = k;
        }
        start = end;
    }
    scores
}

/// Where the scores of one full scoring begin: for each score 1 to 5, the smallest key (the
/// value, negated when lower is better) that got it. A value scored later against these cuts
/// (an incremental refresh) gets the score its value would have shared with the stored ones.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cuts {
    pub higher_is_better: bool,
    pub starts: [Option<f64>; 5],
}

impl Cuts {
    /// The cuts of `scores` (from [`quintiles`] over `values`).
    pub fn of(values: &[f64], scores: &[u8], direction: Direction) -> Self {
        let higher = direction == Direction::HigherIsBetter;
        let mut starts = [None; 5];
        for (v, s) in values.iter().zip(scores) {
            let key = if higher { *v } else { -*v };
            let slot: &mut Option<f64> = &mut starts[usize::from(s - 1)];
            *slot = Some(slot.map_or(key, |m: f64| m.min(key)));
        }
        Self {
            higher_is_better: higher,
            starts,
        }
    }

    /// The score of `value`: the highest score whose first key it reaches (1 below all).
    pub fn score(&self, value: f64) -> u8 {
        let key = if self.higher_is_better { value } else { -value };
        (1..=5u8)
            .rev()
            .find(|k| self.starts[usize::from(k - 1)].is_some_and(|start| key >= start))
            .unwrap_or(1)
    }
}

/// The usual RFM segments, by R and F score and, for customers with one order, by R alone
/// (one-order customers all tie on F, so their F score is whatever the tie lands on, and
/// "new" must not depend on that). M refines within them and is left to custom segments.
///
/// One order: R5 new, R4 promising, R3 need attention, R2 hibernating, R1 lost. More orders:
///
/// | R \\ F | 1–3 | 4 | 5 |
/// |---|---|---|---|
/// | 5 | potential loyalists | champions | champions |
/// | 4 | potential loyalists | loyal | loyal |
/// | 3 | need attention | loyal | loyal |
/// | 2 | hibernating (F1–2), at risk (F3) | at risk | can't lose |
/// | 1 | lost (F1–2), at risk (F3) | at risk | can't lose |
pub fn segment(r: u8, f: u8, orders: u32) -> &'static str {
    if orders <= 1 {
        return match r {
            5 => "new",
            4 => "promising",
            3 => "need attention",
            2 => "hibernating",
            _ => "lost",
        };
    }
    match (r, f) {
        (5, 4..) => "champions",
        (3 | 4, 4..) => "loyal",
        (4 | 5, _) => "potential loyalists",
        (3, _) => "need attention",
        (_, 5..) => "can't lose",
        (_, 3 | 4) => "at risk",
        (2, _) => "hibernating",
        _ => "lost",
    }
}

/// The segments `segment` names, best first.
pub const SEGMENTS: [&str; 10] = [
    "champions",
    "loyal",
    "potential loyalists",
    "new",
    "promising",
    "need attention",
    "at risk",
    "can't lose",
    "hibernating",
    "lost",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_give_every_scored_value_its_own_score_and_order_new_values_between_them() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % 40
        };
        for direction in [Direction::HigherIsBetter, Direction::LowerIsBetter] {
            let values: Vec<f64> = (0..500).map(|_| next() as f64).collect();
            let scores = quintiles(&values, direction);
            let cuts = Cuts::of(&values, &scores, direction);
            for (v, s) in values.iter().zip(&scores) {
                assert_eq!(cuts.score(*v), *s, "{v} {direction:?}");
            }
            // Beyond the ends: the best and the worst score.
            let (best, worst) = match direction {
                Direction::HigherIsBetter => (1000.0, -1.0),
                Direction::LowerIsBetter => (-1.0, 1000.0),
            };
            assert_eq!((cuts.score(best), cuts.score(worst)), (5, 1));
        }
    }

    #[test]
    fn ten_distinct_values_fill_each_quintile_twice() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            quintiles(&v, Direction::HigherIsBetter),
            [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(
            quintiles(&v, Direction::LowerIsBetter),
            [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
        );
    }

    #[test]
    fn every_cell_has_one_of_the_ten_segments_and_each_segment_has_one() {
        let mut seen = std::collections::BTreeSet::new();
        for orders in [1, 2] {
            for r in 1..=5 {
                for f in 1..=5 {
                    let s = segment(r, f, orders);
                    assert!(SEGMENTS.contains(&s), "{r}{f}: {s}");
                    seen.insert(s);
                }
            }
        }
        assert_eq!(seen.len(), SEGMENTS.len());
        assert_eq!(segment(5, 5, 9), "champions");
        assert_eq!(segment(4, 5, 9), "loyal");
        assert_eq!(segment(5, 2, 2), "potential loyalists");
        assert_eq!(segment(1, 5, 9), "can't lose");
        assert_eq!(segment(2, 4, 3), "at risk");
        assert_eq!(segment(1, 2, 2), "lost");
        // A recent first order is "new" whatever F score the tie among one-order customers got.
        assert_eq!(segment(5, 2, 1), "new");
        assert_eq!(segment(4, 3, 1), "promising");
    }

    #[test]
    fn ties_share_a_score() {
        // Ranks 1..4 average to 2.5 of 5 (0.5): all four score 3; the fifth 5.
        assert_eq!(
            quintiles(&[1.0, 1.0, 1.0, 1.0, 9.0], Direction::HigherIsBetter),
            [3, 3, 3, 3, 5]
        );
    }
}
