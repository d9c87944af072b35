//! What a node learns while it serves, per replica: a threshold's τ from whether its local
//! answers were right ([`threshold`], by [`hedge`] or [`lcb`]), an ensemble's member weights
//! from labels ([`weights`]), and a sample of the items it forwarded ([`examples`]). Pure
//! state machines: strategies lock them for a moment per batch, never across an await.

pub(crate) mod examples;
mod hedge;
mod lcb;
mod ledger;
mod pending;
pub(crate) mod state;
pub(crate) mod threshold;
pub(crate) mod weights;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) use examples::HardExamples;
pub(crate) use threshold::ThresholdLearner;
pub(crate) use weights::WeightLearner;

/// Candidate thresholds τ_k = k / (points − 1), k = 0..points, evenly spaced in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    pub points: usize,
}

impl Grid {
    pub(crate) fn tau(self, k: usize) -> f64 {
        k as f64 / (self.points - 1) as f64
    }

    /// How many candidates serve an item of confidence `score` locally (τ_k ≤ score): those
    /// are `[0, split)`, the others forward it.
    pub(crate) fn split(self, score: f64) -> usize {
        // The epsilon keeps a score equal to a grid point on its local side despite rounding.
        let below = (score.clamp(0.0, 1.0) * (self.points - 1) as f64 + 1e-9).floor();
        (below as usize + 1).min(self.points)
    }
}

/// Locks a learner; a panic elsewhere leaves its state usable (every update is complete
/// before the next begins).
pub(crate) fn lock<T>(learner: &Mutex<T>) -> MutexGuard<'_, T> {
    learner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::Grid;

    #[test]
    fn a_score_on_a_grid_point_is_served_by_that_threshold() {
        let grid = Grid { points: 101 };
        assert_eq!(grid.split(0.0), 1);
        assert_eq!(grid.split(0.29), 30, "τ = 0.29 serves a score of 0.29");
        assert_eq!(grid.split(0.295), 30);
        assert_eq!(grid.split(1.0), 101);
        assert!((grid.tau(29) - 0.29).abs() < 1e-12);
    }
}
