//! The running account that makes regret visible: the estimated cumulative cost of every
//! candidate threshold, had it decided every item so far, beside the learner's own. Their
//! difference is the regret against the best fixed τ in hindsight.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    /// Estimated cumulative cost of the learner's own decisions.
    pub own: f64,
    /// Estimated cumulative cost of each candidate threshold.
    pub thresholds: Vec<f64>,
}

impl Ledger {
    pub(crate) fn new(points: usize) -> Self {
        Ledger {
            own: 0.0,
            thresholds: vec![0.0; points],
        }
    }

    /// Charges one item: `local` to the candidates that serve it (`[0, split)`), `forward`
    /// to those that forward it, and `own` to the learner.
    pub(crate) fn charge(&mut self, split: usize, local: f64, forward: f64, own: f64) {
        let (serving, forwarding) = self.thresholds.split_at_mut(split);
        if local != 0.0 {
            serving.iter_mut().for_each(|c| *c += local);
        }
        if forward != 0.0 {
            forwarding.iter_mut().for_each(|c| *c += forward);
        }
        self.own += own;
    }

    /// The candidate with the lowest cost so far and that cost.
    pub(crate) fn best(&self) -> (usize, f64) {
        self.thresholds
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |best, (k, c)| if c < best.1 { (k, c) } else { best },
            )
    }

    /// Own cost minus the best candidate's.
    pub(crate) fn regret(&self) -> f64 {
        self.own - self.best().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_candidate_pays_for_its_own_decision() {
        let mut ledger = Ledger::new(3);
        ledger.charge(1, 2.0, 0.5, 0.5);
        ledger.charge(2, 0.0, 0.5, 0.5);
        assert_eq!(ledger.thresholds, [2.0, 0.5, 1.0]);
        assert_eq!(ledger.best(), (1, 0.5));
        assert_eq!(ledger.regret(), 0.5);
    }
}
