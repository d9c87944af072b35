//! Hold-out evaluation of guaranteed calibration: split the scored sample at random into a
//! calibration part and a test part, choose thresholds on the first (guaranteed and plain, on
//! the same grid), and check on the second whether the target held and what it cost.

use super::guarantee::{Promise, certify, cheapest_on_sample};
use super::{CalibrateError, Outcome, TierScores, evaluate};

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

/// `count` seeded random splits holding out `holdout` of the items for testing.
pub fn splits(
    scores: &[TierScores],
    promise: Promise,
    link_latency_ms: Option<&[f64]>,
    holdout: f64,
    count: usize,
    seed: u64,
) -> Result<Vec<Split>, CalibrateError> {
    let items = scores.first().map_or(0, |s| s.correct.len());
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
            let calibration = subset(scores, calibration_rows);
            let test = subset(scores, test_rows);
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
        let a = splits(&scores(2000), promise, None, 0.5, 5, 7).unwrap();
        let b = splits(&scores(2000), promise, None, 0.5, 5, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for split in &a {
            let (tested, bound) = split.guaranteed.as_ref().unwrap();
            assert!(tested.held && bound >= &0.95);
            // Forwarding the unsure quarter is the only way to the target.
            assert!((tested.cost - 0.25).abs() < 0.05, "{}", tested.cost);
            assert_eq!(tested.accuracy, 1.0);
        }
    }

    #[test]
    fn too_few_items_leave_nothing_certified() {
        let promise = Promise {
            target: 0.95,
            confidence: 0.95,
        };
        let s = splits(&scores(40), promise, None, 0.5, 3, 1).unwrap();
        assert!(s.iter().all(|split| split.guaranteed.is_none()));
        assert!(s.iter().all(|split| split.plain.is_some()));
        assert!(splits(&scores(40), promise, None, 1.0, 3, 1).is_err());
        assert!(splits(&scores(40), promise, None, 0.001, 3, 1).is_err());
    }
}
