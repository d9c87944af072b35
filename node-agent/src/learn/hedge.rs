//! Hedge over a grid of thresholds, for hierarchical inference: each candidate τ is an
//! expert; an item of confidence p is forwarded with the weight of the candidates that would
//! forward it (τ > p). After Moothedath, Champati & Gross, "Online Algorithms for
//! Hierarchical Inference in Deep Learning applications at the Edge" (2023), and Al-Atat et
//! al., Hedge-HI (2024): exponential weights, with the local answer's loss known only for
//! items whose verdict arrives, importance-weighted by the probability that it did. A
//! fixed share of the weight (Herbster & Warmuth 1998) keeps every candidate reachable, so
//! the learner follows traffic that changes.

use serde::{Deserialize, Serialize};

use super::Grid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hedge {
    /// Weight of each candidate τ_k, summing to 1.
    pub weights: Vec<f64>,
}

impl Hedge {
    /// Half the weight on the candidate nearest `tau` (where the strategy starts), half
    /// spread evenly: a prior that starts from the configured τ yet costs the regret bound
    /// only ln(2·points).
    pub(crate) fn new(grid: Grid, tau: f64) -> Self {
        let n = grid.points;
        let mut weights = vec![0.5 / n as f64; n];
        let nearest = (tau.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize;
        weights[nearest] += 0.5;
        Hedge { weights }
    }

    /// Probability that an item with this split is forwarded: the weight of `[split, ..)`.
    pub(crate) fn forward_probability(&self, split: usize) -> f64 {
        self.weights[split..].iter().sum::<f64>().clamp(0.0, 1.0)
    }

    /// Multiplies the weights by exp(−rate · loss): `local` for candidates serving the item,
    /// `forward` for the others.
    pub(crate) fn update(&mut self, split: usize, local: f64, forward: f64, rate: f64) {
        let (serving, forwarding) = self.weights.split_at_mut(split);
        for (part, loss) in [(serving, local), (forwarding, forward)] {
            if loss != 0.0 {
                let factor = (-rate * loss).exp();
                part.iter_mut().for_each(|w| *w *= factor);
            }
        }
        self.normalise();
    }

    /// Shares `fraction` of the weight evenly among all candidates (fixed share).
    pub(crate) fn share(&mut self, fraction: f64) {
        if fraction > 0.0 {
            let even = fraction / self.weights.len() as f64;
            self.weights
                .iter_mut()
                .for_each(|w| *w = (1.0 - fraction) * *w + even);
        }
    }

    /// The weighted median candidate: where the forward probability crosses one half.
    pub(crate) fn median(&self, grid: Grid) -> f64 {
        let mut total = 0.0;
        for (k, w) in self.weights.iter().enumerate() {
            total += w;
            if total >= 0.5 {
                return grid.tau(k);
            }
        }
        1.0
    }

    fn normalise(&mut self) {
        let total: f64 = self.weights.iter().sum();
        if total > 0.0 && total.is_finite() {
            self.weights.iter_mut().for_each(|w| *w /= total);
        } else {
            // Every weight underflowed (no sharing, long losses): start even again.
            let even = 1.0 / self.weights.len() as f64;
            self.weights.iter_mut().for_each(|w| *w = even);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: Grid = Grid { points: 11 };

    #[test]
    fn it_starts_from_the_configured_tau() {
        let hedge = Hedge::new(GRID, 0.8);
        assert!((hedge.median(GRID) - 0.8).abs() < 1e-12);
        let total: f64 = hedge.weights.iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
        // An item at 0.75 is forwarded by τ = 0.8 and above: half plus 3/11 of the rest.
        let p = hedge.forward_probability(GRID.split(0.75));
        assert!((p - (0.5 + 3.0 * 0.5 / 11.0)).abs() < 1e-12, "{p}");
    }

    #[test]
    fn costly_forwards_move_the_weight_down_and_wrong_local_answers_up() {
        let mut hedge = Hedge::new(GRID, 0.5);
        for _ in 0..200 {
            hedge.update(GRID.split(0.55), 0.0, 1.0, 0.5);
        }
        assert!(hedge.median(GRID) <= 0.5, "{}", hedge.median(GRID));
        for _ in 0..400 {
            hedge.update(GRID.split(0.85), 1.0, 0.0, 0.5);
        }
        assert!(hedge.median(GRID) > 0.85, "{}", hedge.median(GRID));
    }

    #[test]
    fn a_shared_fraction_keeps_every_candidate_reachable() {
        let mut hedge = Hedge::new(GRID, 0.0);
        for _ in 0..10_000 {
            hedge.update(1, 0.0, 50.0, 1.0);
            hedge.share(0.01);
        }
        assert!(hedge.weights.iter().all(|&w| w >= 0.01 / 11.0 * 0.99));
    }
}
