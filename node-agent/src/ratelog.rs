//! Logging for a failure that can repeat many times a second (a refused accept, a full queue,
//! an upstream that is down): at most one line per interval and kind, which says how many
//! occurrences it left out. Metrics count every occurrence; the line explains them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a repeating failure is logged at most.
const INTERVAL: Duration = Duration::from_secs(10);

/// Repeating failures by kind: whether an occurrence gets a log line.
#[derive(Debug, Default)]
pub(crate) struct RateLimited {
    kinds: Mutex<HashMap<&'static str, State>>,
}

#[derive(Debug, Default)]
struct State {
    last_logged: Option<Instant>,
    left_out: u64,
}

impl RateLimited {
    /// `Some(n)` when this occurrence of `kind` is to be logged, `n` being the occurrences of
    /// `kind` left out since its previous line; `None` when it is left out.
    pub(crate) fn admit(&self, kind: &'static str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        let state = kinds.entry(kind).or_default();
        if state
            .last_logged
            .is_some_and(|last| now.duration_since(last) < INTERVAL)
        {
            state.left_out += 1;
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_kind_counts_the_occurrences_left_out() {
        let log = RateLimited::default();
        let start = Instant::now();
        assert_eq!(log.admit_at("a", start), Some(0));
        for i in 1..=5 {
            assert_eq!(log.admit_at("a", start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.admit_at("b", start + Duration::from_millis(6)), Some(0));
        assert_eq!(log.admit_at("a", start + INTERVAL), Some(5));
        assert_eq!(log.admit_at("a", start + INTERVAL), None);
        assert_eq!(log.admit_at("a", start + INTERVAL * 3), Some(1));
    }
}
