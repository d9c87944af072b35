//! Hold-out evaluation of guaranteed calibration: split the scored sample at random into a
//! calibration part and a test part, choose thresholds on the first (guaranteed and plain, on
//! the same grid), and check on the second whether the target held and what it cost.
//!
//! With a learned gate the gate is fitted on the calibration part of each split too, so the
//! test part is never seen before the test.

use std::borrow::Cow;

use idn_contract::confidence::Features;

use super::gate::gated;
use super::guarantee::{Promise, certify, cheapest_on_sample};
use super::{CalibrateError, Outcome, TierScores, evaluate};

/// How the items of a split get their confidences.
#[derive(Debug, Clone, Copy)]
pub enum Scoring<'a> {
    /// Fixed scores of a metric, the same for every split.
    Fixed(&'a [TierScores]),
    /// A gate per tier but the last, fitted on each split's calibration part.
    Gate {
        /// Per tier, per item, the gate's inputs.
        features: &'a [Vec<Features>],
        /// Right/wrong per item (and the last tier's scores).
        scores: &'a [TierScores],
        /// The tiers' names, for errors.
        names: &'a [String],
    },
}

impl Scoring<'_> {
    fn items(&self) -> usize {
        match self {
            Scoring::Fixed(scores) | Scoring::Gate { scores, .. } => {
                scores.first().map_or(0, |s| s.correct.len())
            }
        }
    }

    /// Every item's scores, learning only from the items `calibration`.
    fn scores(&self, calibration: &[usize]) -> Result<Cow<'_, [TierScores]>, CalibrateError> {
        match *self {
            Scoring::Fixed(scores) => Ok(Cow::Borrowed(scores)),
            Scoring::Gate {
                features,
                scores,
                names,
            } => Ok(Cow::Owned(gated(features, scores, names, calibration)?.1)),
        }
    }
}

/// One way of choosing thresholds on the calibration part, as it fared on the test part.
#[derive(Debug, Clone, PartialEq)]
pub struct Tested {
    pub taus: Vec<Option<f64>>,
    /// Accuracy on the test part.
    pub accuracy: f64,
    /// Whether that accuracy reaches the target.
    pub held: bool,
    /// Expected link latency per request (ms) when links are given, else the fraction of
    /// requests reaching the last tier, on the test part.
    pub cost: f64,
    /// Fraction of the test part reaching each tier after the first.
    pub reached: Vec<f64>,
}

/// One random split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The guaranteed choice and its bound; `None` when nothing could be certified.
    pub guaranteed: Option<(Tested, f64)>,
    /// The plain choice; `None` when no candidate reaches the target on the calibration part.
    pub plain: Option<Tested>,
}

/// Items in the test part of `items` for a hold-out fraction.
pub fn test_items(items: usize, holdout: f64) -> usize {
    (items as f64 * holdout).round() as usize
}

/// `count` seeded random splits holding out `holdout` of the items for testing. The splits
/// depend only on the number of items and the seed, so two scorings of one sample are tested on
/// the same splits.
pub fn splits(
    scoring: Scoring<'_>,
    promise: Promise,
    link_latency_ms: Option<&[f64]>,
    holdout: f64,
    count: usize,
    seed: u64,
) -> Result<Vec<Split>, CalibrateError> {
    let items = scoring.items();
    let test = test_items(items, holdout);
    if !(holdout > 0.0 && holdout < 1.0) || test == 0 || test == items {
        return Err(CalibrateError::Goal(format!(
            "hold-out fraction {holdout} of {items} items must leave both parts non-empty"
        )));
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            let mut order: Vec<usize> = (0..items).collect();
            rng.shuffle(&mut order);
            let (test_rows, calibration_rows) = order.split_at(test);
            let scores = scoring.scores(calibration_rows)?;
            let calibration = subset(&scores, calibration_rows);
            let test = subset(&scores, test_rows);
            let tested = |outcome: &Outcome| {
                let taus = outcome.taus();
                let on_test = evaluate(&test, &taus);
                Tested {
                    accuracy: on_test.accuracy(),
                    held: on_test.accuracy() >= promise.target,
                    cost: match link_latency_ms {
                        Some(links) => on_test.link_latency(links),
                        None => on_test.last_reached() as f64 / on_test.items as f64,
                    },
                    reached: on_test.tiers[1..]
                        .iter()
                        .map(|t| t.reached as f64 / on_test.items as f64)
                        .collect(),
                    taus,
                }
            };
            let guaranteed = certify(&calibration, promise, link_latency_ms)?
                .choice
                .ok()
                .map(|c| (tested(&c.outcome), c.bound));
            let plain = cheapest_on_sample(&calibration, promise.target, link_latency_ms)
                .map(|o| tested(&o));
            Ok(Split { guaranteed, plain })
        })
        .collect()
}

/// The scores of the items `rows`, in that order.
fn subset(scores: &[TierScores], rows: &[usize]) -> Vec<TierScores> {
    scores
        .iter()
        .map(|s| TierScores {
            confidence: rows.iter().map(|&r| s.confidence[r]).collect(),
            correct: rows.iter().map(|&r| s.correct[r]).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tier 1 right on 3 of every 4 items, always confident on those; the last always right.
    fn scores(items: usize) -> Vec<TierScores> {
        vec![
            TierScores {
                confidence: (0..items)
                    .map(|i| if i % 4 == 0 { 0.55 } else { 0.97 })
                    .collect(),
                correct: (0..items).map(|i| i % 4 != 0).collect(),
            },
            TierScores {
                confidence: vec![1.0; items],
                correct: vec![true; items],
            },
        ]
    }

    #[test]
    fn splits_are_seeded_and_the_promise_holds_on_a_clean_cascade() {
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let sample = scores(2000);
        let a = splits(Scoring::Fixed(&sample), promise, None, 0.5, 5, 7).unwrap();
        let b = splits(Scoring::Fixed(&sample), promise, None, 0.5, 5, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for split in &a {
            let (tested, bound) = split.guaranteed.as_ref().unwrap();
            assert!(tested.held && bound >= &0.95);
            // Forwarding the unsure quarter is the only way to the target.
            assert!((tested.cost - 0.25).abs() < 0.05, "{}", tested.cost);
            assert_eq!(tested.reached, [tested.cost]);
            assert_eq!(tested.accuracy, 1.0);
        }
    }

    #[test]
    fn too_few_items_leave_nothing_certified() {
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let sample = scores(40);
        let fixed = Scoring::Fixed(&sample);
        let s = splits(fixed, promise, None, 0.5, 3, 1).unwrap();
        assert!(s.iter().all(|split| split.guaranteed.is_none()));
        assert!(s.iter().all(|split| split.plain.is_some()));
        assert!(splits(fixed, promise, None, 1.0, 3, 1).is_err());
        assert!(splits(fixed, promise, None, 0.001, 3, 1).is_err());
    }

    /// Tier 1 right exactly on the items whose first feature is high, while its fixed
    /// confidence says nothing (always 0.5).
    fn uninformed(items: usize) -> (Vec<TierScores>, Vec<Vec<Features>>) {
        let top1 = |i: usize| (i % 10) as f64 / 10.0;
        let scores = vec![
            TierScores {
                confidence: vec![0.5; items],
                correct: (0..items).map(|i| top1(i) >= 0.3).collect(),
            },
            TierScores {
                confidence: vec![1.0; items],
                correct: vec![true; items],
            },
        ];
        let features = vec![(0..items).map(|i| [top1(i), 0.0, 0.0]).collect(); 2];
        (scores, features)
    }

    #[test]
    fn a_gate_learns_on_the_calibration_part_what_a_fixed_score_misses() {
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let (scores, features) = uninformed(2000);
        let names = ["a".to_owned(), "b".to_owned()];
        let gate = Scoring::Gate {
            features: &features,
            scores: &scores,
            names: &names,
        };
        let fixed = splits(Scoring::Fixed(&scores), promise, None, 0.5, 3, 9).unwrap();
        let learned = splits(gate, promise, None, 0.5, 3, 9).unwrap();
        for (fixed, learned) in fixed.iter().zip(&learned) {
            // The fixed score can only forward everything; the gate forwards the 30 % wrong.
            let (fixed, _) = fixed.guaranteed.as_ref().unwrap();
            let (learned, _) = learned.guaranteed.as_ref().unwrap();
            assert_eq!(fixed.reached, [1.0]);
            assert!((learned.reached[0] - 0.3).abs() < 0.05, "{learned:?}");
            assert_eq!(learned.accuracy, 1.0);
        }
    }

    #[test]
    fn a_gate_that_cannot_be_fitted_on_a_split_fails_the_run() {
        let promise = Promise {
            target: 0.9,
            confidence: 0.9,
        };
        let (mut scores, features) = uninformed(100);
        scores[0].correct = vec![true; 100];
        let names = ["a".to_owned(), "b".to_owned()];
        let gate = Scoring::Gate {
            features: &features,
            scores: &scores,
            names: &names,
        };
        let error = splits(gate, promise, None, 0.5, 2, 1).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("gate of a: the model is right on all 50")
        );
    }
}
