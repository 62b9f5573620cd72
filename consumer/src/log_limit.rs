//! Bounded-rate logging for events a bad producer can make frequent (dead
//! letters): every event is counted in a metric, but at most `max` lines
//! per `window` are logged, and the next logged line says how many were not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct RateLimit {
    window: Duration,
    max: u32,
    /// (window start, lines logged in it, events not logged since the last line)
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl RateLimit {
    pub(crate) const fn new(window: Duration, max: u32) -> Self {
        Self { window, max, state: Mutex::new((None, 0, 0)) }
    }

    /// `Some(suppressed)` if this event may be logged (with the count of
    /// events not logged before it), `None` if it must not.
    pub(crate) fn allow(&self) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else { return None };
        let now = Instant::now();
        if state.0.is_none_or(|start| now.duration_since(start) >= self.window) {
            (state.0, state.1) = (Some(now), 0);
        }
        if state.1 >= self.max {
            state.2 += 1;
            return None;
        }
        state.1 += 1;
        Some(std::mem::take(&mut state.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_at_most_max_per_window_and_reports_what_it_skipped() {
        let limit = RateLimit::new(Duration::from_secs(3600), 3);
        let allowed: Vec<Option<u64>> = (0..10).map(|_| limit.allow()).collect();
        assert_eq!(&allowed[..3], &[Some(0), Some(0), Some(0)]);
        assert!(allowed[3..].iter().all(Option::is_none));
        let zero = RateLimit::new(Duration::ZERO, 1);
        assert_eq!(zero.allow(), Some(0));
        assert_eq!(zero.allow(), Some(0), "a new window every call");
    }
}
