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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ties_share_a_score() {
        // Ranks 1..4 average to 2.5 of 5 (0.5): all four score 3; the fifth 5.
        assert_eq!(
            quintiles(&[1.0, 1.0, 1.0, 1.0, 9.0], Direction::HigherIsBetter),
            [3, 3, 3, 3, 5]
        );
    }
}
