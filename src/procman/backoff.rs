//! The restart schedule of a crashing app: 1 s, 2, 4, 8 ... capped at 60 s, and
//! back to 1 s once an instance has run healthy for 30 s.
//!
//! Pure arithmetic, kept apart from the supervisor so the schedule is
//! table-tested without processes or clocks.

use std::time::Duration;

/// The first restart delay.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long an instance must stay healthy for the schedule to start over.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// Where one app instance is in its restart schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The delay before the next start. `healthy_for` is how long the process
    /// that just ended had been healthy without a break (zero if never): a
    /// long enough run starts the schedule over.
    pub fn next_delay(&mut self, healthy_for: Duration) -> Duration {
        if healthy_for >= BACKOFF_RESET_AFTER {
            self.next = BACKOFF_FIRST;
        }
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Runs the schedule over (healthy time, expected delay) steps.
    fn run(steps: &[(u64, u64)]) {
        let mut b = Backoff::default();
        for (i, &(healthy, want)) in steps.iter().enumerate() {
            assert_eq!(b.next_delay(secs(healthy)), secs(want), "step {i}");
        }
    }

    #[test]
    fn doubles_from_one_second() {
        run(&[(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (0, 32)]);
    }

    #[test]
    fn caps_at_sixty_seconds() {
        run(&[
            (0, 1),
            (0, 2),
            (0, 4),
            (0, 8),
            (0, 16),
            (0, 32),
            (0, 60),
            (0, 60),
            (0, 60),
        ]);
    }

    #[test]
    fn thirty_healthy_seconds_reset_it() {
        run(&[(0, 1), (0, 2), (0, 4), (30, 1), (0, 2)]);
    }

    #[test]
    fn a_shorter_healthy_run_does_not_reset_it() {
        run(&[(0, 1), (0, 2), (29, 4), (10, 8)]);
    }

    #[test]
    fn reset_from_the_cap() {
        run(&[
            (0, 1),
            (0, 2),
            (0, 4),
            (0, 8),
            (0, 16),
            (0, 32),
            (0, 60),
            (3600, 1),
        ]);
    }
}
