//! Calibration with a guarantee: thresholds whose accuracy on unseen traffic from the sample's
//! distribution is at least a target, with a stated probability over the draw of the sample.
//!
//! This is learn-then-test. Every candidate of a τ grid fixed before the data is seen
//! ([`TAU_GRID`] for each non-last tier) is a hypothesis "its accuracy is below the target".
//! A candidate is certified when the exact (Clopper–Pearson) lower bound on its accuracy,
//! computed at level δ / m for m candidates, reaches the target: by Bonferroni the chance that
//! any candidate is certified wrongly is at most δ = 1 − confidence, so the cheapest certified
//! candidate meets the target with probability ≥ confidence.
//!
//! Bonferroni rather than fixed-sequence testing: fixed-sequence testing spends no correction
//! but needs one order of the candidates fixed in advance and stops at the first failure. With
//! two tiers the natural order (τ from high to low) would do, but with three or more there is
//! no single order, and fixing one path would forbid combinations the cost may prefer. On a
//! grid of m = 144 (three tiers) the correction costs ln m ≈ 5 in the bound's exponent, a few
//! tenths of a percent of accuracy at a thousand items.

use statrs::function::beta::inv_beta_reg;

use super::{CalibrateError, Outcome, TierScores, evaluate};

/// τ values tried at each non-last tier, besides "forward all". Fixed in advance: a grid drawn
/// from the sample would void the guarantee.
pub const TAU_GRID: [f64; 11] = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999];

/// The exact one-sided lower confidence bound on a success probability after `successes` of
/// `trials`: the largest p with P(Binomial(trials, p) ≥ successes) ≤ `alpha`, the `alpha`
/// quantile of Beta(successes, trials − successes + 1).
pub fn clopper_pearson_lower(successes: usize, trials: usize, alpha: f64) -> f64 {
    assert!(successes <= trials, "{successes} successes of {trials}");
    if successes == 0 {
        return 0.0;
    }
    let (k, n) = (successes as f64, trials as f64);
    inv_beta_reg(k, n - k + 1.0, alpha)
}

/// What a guaranteed calibration asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promise {
    /// Accuracy to hold on unseen traffic.
    pub target: f64,
    /// Probability that it holds, over the draw of the sample (e.g. 0.95).
    pub confidence: f64,
}

impl Promise {
    pub fn validate(self) -> Result<(), CalibrateError> {
        if !(self.target > 0.0 && self.target < 1.0) {
            return Err(CalibrateError::Goal(format!(
                "minimum accuracy {} must be in (0, 1)",
                self.target
            )));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(CalibrateError::Goal(format!(
                "confidence {} must be in (0, 1)",
                self.confidence
            )));
        }
        Ok(())
    }
}

/// A candidate evaluated on the sample, with its lower bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub outcome: Outcome,
    /// Lower bound on its accuracy at level δ / m.
    pub bound: f64,
}

impl Candidate {
    /// What choosing it costs, to be minimised: expected link latency when links are given,
    /// else the requests reaching the last tier; then forwards overall.
    fn cost(&self, link_latency_ms: Option<&[f64]>) -> (f64, usize) {
        let outcome = &self.outcome;
        let hops = outcome.tiers[1..].iter().map(|t| t.reached).sum();
        match link_latency_ms {
            Some(links) => (outcome.link_latency(links), hops),
            None => (outcome.last_reached() as f64, hops),
        }
    }
}

/// The result of [`certify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Guaranteed {
    pub promise: Promise,
    /// Candidates tested (m).
    pub candidates: usize,
    /// Level each bound is computed at: (1 − confidence) / m.
    pub alpha: f64,
    /// The cheapest certified candidate, or `Err` with the candidate of highest bound when
    /// none is certified.
    pub choice: Result<Candidate, Candidate>,
    /// The highest bound any candidate could get on this many items (all of them right).
    pub best_possible: f64,
}

/// Every combination of [`TAU_GRID`] values and "forward all" for the non-last tiers.
pub fn candidates(tiers: usize) -> Vec<Vec<Option<f64>>> {
    let values: Vec<Option<f64>> = TAU_GRID.iter().copied().map(Some).chain([None]).collect();
    (1..tiers).fold(vec![Vec::new()], |combinations, _| {
        combinations
            .iter()
            .flat_map(|prefix| {
                values.iter().map(move |&tau| {
                    let mut next = prefix.clone();
                    next.push(tau);
                    next
                })
            })
            .collect()
    })
}

/// Tests every candidate on the scored sample and picks the cheapest certified one.
pub fn certify(
    scores: &[TierScores],
    promise: Promise,
    link_latency_ms: Option<&[f64]>,
) -> Result<Guaranteed, CalibrateError> {
    promise.validate()?;
    if scores.len() < 2 {
        return Err(CalibrateError::TooFewTiers(scores.len()));
    }
    let items = scores[0].correct.len();
    if items == 0 {
        return Err(CalibrateError::EmptySample);
    }
    if let Some(links) = link_latency_ms {
        super::validate_link_latency(links, scores.len())?;
    }
    let grid = candidates(scores.len());
    let alpha = (1.0 - promise.confidence) / grid.len() as f64;
    let evaluated: Vec<Candidate> = grid
        .iter()
        .map(|taus| {
            let outcome = evaluate(scores, taus);
            let bound = clopper_pearson_lower(outcome.correct(), items, alpha);
            Candidate { outcome, bound }
        })
        .collect();
    let cheapest = evaluated
        .iter()
        .filter(|c| c.bound >= promise.target)
        .min_by(|a, b| {
            let (ca, cb) = (a.cost(link_latency_ms), b.cost(link_latency_ms));
            ca.0.total_cmp(&cb.0)
                .then(ca.1.cmp(&cb.1))
                .then(b.bound.total_cmp(&a.bound))
        });
    let choice = match cheapest {
        Some(c) => Ok(c.clone()),
        None => Err(evaluated
            .iter()
            .max_by(|a, b| a.bound.total_cmp(&b.bound))
            .expect("at least one candidate")
            .clone()),
    };
    Ok(Guaranteed {
        promise,
        candidates: grid.len(),
        alpha,
        choice,
        best_possible: clopper_pearson_lower(items, items, alpha),
    })
}

/// The plain counterpart on the same grid: the cheapest candidate whose accuracy on the
/// sample itself reaches the target (no bound), if any.
pub fn cheapest_on_sample(
    scores: &[TierScores],
    target: f64,
    link_latency_ms: Option<&[f64]>,
) -> Option<Outcome> {
    let items = scores.first().map_or(0, |s| s.correct.len());
    candidates(scores.len())
        .iter()
        .map(|taus| Candidate {
            outcome: evaluate(scores, taus),
            bound: f64::NAN,
        })
        .filter(|c| c.outcome.correct() as f64 >= target * items as f64)
        .min_by(|a, b| {
            let (ca, cb) = (a.cost(link_latency_ms), b.cost(link_latency_ms));
            ca.0.total_cmp(&cb.0)
                .then(ca.1.cmp(&cb.1))
                .then(b.outcome.correct().cmp(&a.outcome.correct()))
        })
        .map(|c| c.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn clopper_pearson_matches_known_values() {
        // The two-sided 95 % interval of 9 of 10 is [0.5550, 0.9975]: its lower end is the
        // one-sided bound at 0.025.
        assert!(
            close(clopper_pearson_lower(9, 10, 0.025), 0.5550),
            "{}",
            clopper_pearson_lower(9, 10, 0.025)
        );
        // All right: the bound solves p^n = α.
        assert!(close(
            clopper_pearson_lower(10, 10, 0.05),
            0.05f64.powf(0.1)
        ));
        assert!(close(
            clopper_pearson_lower(500, 500, 0.01),
            0.01f64.powf(1.0 / 500.0)
        ));
        // Two-sided 95 % interval of 50 of 100: [0.3983, 0.6017].
        assert!(close(clopper_pearson_lower(50, 100, 0.025), 0.3983));
        assert_eq!(clopper_pearson_lower(0, 10, 0.05), 0.0);
        // Tighter with more items, looser at a smaller level.
        assert!(clopper_pearson_lower(990, 1000, 0.05) > clopper_pearson_lower(99, 100, 0.05));
        assert!(clopper_pearson_lower(99, 100, 0.001) < clopper_pearson_lower(99, 100, 0.05));
    }

    #[test]
    fn the_grid_covers_every_combination() {
        assert_eq!(candidates(2).len(), 12);
        let three = candidates(3);
        assert_eq!(three.len(), 144);
        assert!(three.contains(&vec![Some(0.9), None]));
        assert!(three.iter().all(|c| c.len() == 2));
    }

    /// Two tiers: the first right when its confidence is ≥ 0.9 (`right_above` of its items),
    /// the last always right.
    fn two_tiers(items: usize, wrong_below: usize) -> Vec<TierScores> {
        vec![
            TierScores {
                confidence: (0..items)
                    .map(|i| if i < wrong_below { 0.55 } else { 0.97 })
                    .collect(),
                correct: (0..items).map(|i| i >= wrong_below).collect(),
            },
            TierScores {
                confidence: vec![1.0; items],
                correct: vec![true; items],
            },
        ]
    }

    #[test]
    fn the_cheapest_certified_candidate_is_chosen() {
        let scores = two_tiers(1000, 300);
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let g = certify(&scores, promise, None).unwrap();
        assert_eq!(g.candidates, 12);
        assert!(close(g.alpha, 0.05 / 12.0));
        let chosen = g.choice.unwrap();
        // τ ∈ (0.55, 0.97] forwards exactly the 300 unsure items: all right, bound ≈ 0.9966.
        assert_eq!(chosen.outcome.correct(), 1000);
        assert_eq!(chosen.outcome.last_reached(), 300);
        assert!(close(
            chosen.bound,
            clopper_pearson_lower(1000, 1000, g.alpha)
        ));
        // Answering everything at tier 1 (70 % right) is cheaper but not certified.
        let plain = cheapest_on_sample(&scores, 0.95, None).unwrap();
        assert_eq!(plain.last_reached(), 300);
        assert_eq!(
            cheapest_on_sample(&scores, 0.65, None)
                .unwrap()
                .last_reached(),
            0
        );
    }

    #[test]
    fn a_small_sample_is_refused_with_the_best_bound() {
        let scores = two_tiers(40, 0);
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let g = certify(&scores, promise, None).unwrap();
        // 40 of 40 right bounds accuracy only at (0.05 / 12)^(1/40) ≈ 0.872.
        assert!(close(g.best_possible, (0.05f64 / 12.0).powf(1.0 / 40.0)));
        let best = g.choice.unwrap_err();
        assert_eq!(best.outcome.correct(), 40);
        assert!(best.bound < 0.95);
    }

    #[test]
    fn link_latency_is_the_cost_when_given() {
        let scores = two_tiers(1000, 300);
        let promise = Promise {
            target: 0.9,
            confidence: 0.9,
        };
        let g = certify(&scores, promise, Some(&[10.0])).unwrap();
        let chosen = g.choice.unwrap();
        assert_eq!(chosen.outcome.link_latency(&[10.0]), 3.0);
    }

    #[test]
    fn bad_promises_are_refused() {
        let scores = two_tiers(10, 0);
        for (target, confidence) in [(1.0, 0.9), (0.0, 0.9), (0.9, 1.0), (0.9, f64::NAN)] {
            let promise = Promise { target, confidence };
            assert!(matches!(
                certify(&scores, promise, None),
                Err(CalibrateError::Goal(_))
            ));
        }
    }
}
