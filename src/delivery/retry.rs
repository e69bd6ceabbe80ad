//! The retry policy for transient failures: exponential backoff with jitter, up to a number of
//! attempts. Pure, so it is tested without a clock or a server.

use chrono::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempts` attempts, or `None` when attempts are
    /// used up. `jitter` in [0, 1) spreads retries by up to a quarter of the delay.
    pub fn next_delay(&self, attempts: u32, jitter: f64) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self.base.num_milliseconds().saturating_mul(1_i64 << exp);
        let capped = raw.min(self.max.num_milliseconds());
        let spread = (capped as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as i64;
        Some(Duration::milliseconds(capped + spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stop_at_the_limit() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::minutes(1),
            max: Duration::minutes(5),
        };
        let d: Vec<i64> = (1..5)
            .map(|a| p.next_delay(a, 0.0).unwrap().num_minutes())
            .collect();
        assert_eq!(d, [1, 2, 4, 5]);
        assert_eq!(p.next_delay(5, 0.0), None);
        assert_eq!(p.next_delay(1, 0.999).unwrap().num_seconds(), 74);
    }
}
