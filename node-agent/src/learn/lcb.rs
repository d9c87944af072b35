//! A lower-confidence-bound rule for hierarchical inference, after Chattopadhyay, Sutar,
//! Champati & Moharir, HI-LCB (2025): the probability that the local answer is right grows
//! with its confidence, so the items seen in the confidence bins at and below an item's bin
//! bound its bin's accuracy from below. An item is served locally when even that lower
//! bound makes a local answer cheaper than forwarding: alpha · (1 − LCB) ≤ forward cost.
//! Each bin discounts its own counts as its verdicts arrive, so the rule follows traffic that
//! changes while a bin that rarely hears a verdict (one served locally) keeps its evidence.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Lcb {
    /// Verdicts seen per confidence bin (discounted).
    pub seen: Vec<f64>,
    /// Of those, local answers that were right.
    pub right: Vec<f64>,
    /// Verdicts seen in all, undiscounted: the round count of the confidence level.
    pub verdicts: u64,
}

impl Lcb {
    pub(crate) fn new(bins: usize) -> Self {
        Lcb {
            seen: vec![0.0; bins],
            right: vec![0.0; bins],
            verdicts: 0,
        }
    }

    fn bin(&self, score: f64) -> usize {
        let bins = self.seen.len();
        ((score.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)
    }

    /// The best lower bound on the local accuracy at `score`: the highest Wilson bound (at
    /// level 1 − 1/t) over the pools of bins `[j, bin]`; none before any verdict there.
    pub(crate) fn lower_bound(&self, score: f64) -> Option<f64> {
        let z2 = 2.0 * (self.verdicts.max(3) as f64).ln();
        let (mut n, mut r) = (0.0, 0.0);
        let mut best: Option<f64> = None;
        for j in (0..=self.bin(score)).rev() {
            n += self.seen[j];
            r += self.right[j];
            if n > 0.0 {
                let bound = wilson_lower(r / n, n, z2);
                best = Some(best.map_or(bound, |b| b.max(bound)));
            }
        }
        best
    }

    /// Whether an item of confidence `score` is served locally; `tau` decides until a
    /// verdict bounds its accuracy.
    pub(crate) fn serves_locally(&self, score: f64, tau: f64, alpha: f64, cost: f64) -> bool {
        match self.lower_bound(score) {
            Some(lcb) => alpha * (1.0 - lcb) <= cost,
            None => score >= tau,
        }
    }

    /// Counts one verdict at `score`, discounting what its bin saw before by `forgetting`.
    pub(crate) fn observe(&mut self, score: f64, right: bool, forgetting: f64) {
        let b = self.bin(score);
        let keep = 1.0 - forgetting;
        self.seen[b] *= keep;
        self.right[b] *= keep;
        self.seen[b] += 1.0;
        self.right[b] += f64::from(u8::from(right));
        self.verdicts += 1;
    }

    /// The lowest bin edge from which every higher bin is served locally (1 when none is).
    pub(crate) fn effective_tau(&self, tau: f64, alpha: f64, cost: f64) -> f64 {
        let bins = self.seen.len();
        let mut edge = 1.0;
        for b in (0..bins).rev() {
            let centre = (b as f64 + 0.5) / bins as f64;
            if !self.serves_locally(centre, tau, alpha, cost) {
                break;
            }
            edge = b as f64 / bins as f64;
        }
        edge
    }
}

/// Wilson's score interval's lower end for `p` right out of `n`, with z² = `z2`: tight near
/// 0 and 1, where a serving decision is made.
fn wilson_lower(p: f64, n: f64, z2: f64) -> f64 {
    let centre = p + z2 / (2.0 * n);
    let spread = (z2 * (p * (1.0 - p) / n + z2 / (4.0 * n * n))).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_tau_decides_until_there_is_evidence() {
        let lcb = Lcb::new(10);
        assert!(lcb.serves_locally(0.95, 0.9, 1.0, 0.05));
        assert!(!lcb.serves_locally(0.85, 0.9, 1.0, 0.05));
    }

    #[test]
    fn enough_right_answers_make_a_bin_local_and_mistakes_take_it_back() {
        let mut lcb = Lcb::new(10);
        for _ in 0..400 {
            lcb.observe(0.95, true, 0.0);
        }
        let bound = lcb.lower_bound(0.95).unwrap();
        assert!(bound > 0.95 && bound < 1.0, "{bound}");
        assert!(lcb.serves_locally(0.95, 1.0, 1.0, 0.05));
        // Lower bins borrow nothing from higher ones.
        assert_eq!(lcb.lower_bound(0.5), None);
        for _ in 0..40 {
            lcb.observe(0.95, false, 0.0);
        }
        assert!(!lcb.serves_locally(0.95, 1.0, 1.0, 0.05));
    }

    #[test]
    fn pooling_lower_bins_tightens_the_bound() {
        let mut lcb = Lcb::new(10);
        for _ in 0..100 {
            lcb.observe(0.85, true, 0.0);
            lcb.observe(0.95, true, 0.0);
        }
        let pooled = lcb.lower_bound(0.95).unwrap();
        let alone = wilson_lower(1.0, 100.0, 2.0 * 200f64.ln());
        assert!(pooled > alone, "{pooled} vs {alone}");
        assert!((lcb.effective_tau(1.0, 1.0, 0.1) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn discounting_forgets_a_bins_old_verdicts_as_new_ones_arrive() {
        let mut lcb = Lcb::new(10);
        lcb.observe(0.55, true, 0.01);
        for _ in 0..1000 {
            lcb.observe(0.95, true, 0.01);
        }
        assert!(lcb.seen[9] < 101.0, "{}", lcb.seen[9]);
        assert_eq!(
            lcb.seen[5], 1.0,
            "a bin without new verdicts keeps its evidence"
        );
    }
}
