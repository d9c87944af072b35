//! Calibrating a cascade: choosing its confidence thresholds from a labelled sample.
//!
//! A cascade of k models answers an item at tier i when that tier's confidence is ≥ τ_i and
//! forwards it to tier i + 1 otherwise; the last tier answers everything it gets. Given every
//! model's class probabilities for the whole sample (computed once, elsewhere), [`score`] reduces
//! each tier to two facts per item (its confidence and whether its answer is right), and
//! [`calibrate`] searches τ_1 … τ_{k-1} for a [`Goal`], optionally weighing the latency of the
//! links between tiers.
//!
//! Everything here is pure (no files, no models), so the search is tested on hand-made
//! matrices.
//!
//! # The search
//!
//! Only the order of confidences matters on a sample, so tier i's candidate cut-offs are its
//! distinct confidence values (plus "answer all" and "forward all"): cut-off `c` answers the
//! items whose confidence is among the `c` largest distinct values. The last non-last tier is
//! swept in one pass over its items sorted by confidence, updating the counts incrementally;
//! the tiers before it are enumerated. That is O(n) per combination of the earlier tiers'
//! cut-offs: exact and fast for 2 and 3 tiers (≈ n² steps for 3); for more tiers the earlier
//! tiers' candidates are thinned to evenly spaced ranks to stay within [`WORK_BUDGET`] and the
//! result says it is not exhaustive.
//!
//! The link latency a choice costs, Σ_i reached(tier i + 1) × L_i, is a sum over tiers of counts
//! the search already keeps, so it is computed alongside them and every candidate is still
//! compared exactly.
//!
//! The reported τ is then chosen inside the interval of values that give the same result on
//! the sample (above the largest confidence the tier forwards, at most the smallest it
//! answers), as the shortest decimal there: 0.93 rather than 0.9312734, readable in a manifest
//! and not sitting exactly on an observed confidence.

use idn_contract::confidence::{Confidence, argmax};
use serde::Serialize;

pub mod gate;
pub mod guarantee;
pub mod holdout;
mod search;

use search::calibrate_within;
pub use search::tau_between;

/// Most item-steps the search may take (combinations of earlier tiers' cut-offs × items), so
/// that three tiers on 10⁴ items (10⁸ steps: about 0.4 s in a release build, 5 s in a debug
/// one) stay exhaustive.
pub const WORK_BUDGET: usize = 120_000_000;

/// What the thresholds must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Goal {
    /// Accuracy ≥ ratio × the last tier's accuracy alone. Among the thresholds that reach it:
    /// fewest requests reaching the last tier, then fewest forwards overall, then highest
    /// accuracy. With link latencies: lowest expected link latency, then highest accuracy,
    /// then fewest reaching the last tier, then fewest forwards.
    MinAccuracyRatio(f64),
    /// At most this fraction of requests reaching the last tier. Among the thresholds that
    /// meet it: highest accuracy, then fewest reaching the last tier, then fewest forwards.
    /// Link latencies, when given, are only reported.
    MaxLastTier(f64),
}

impl Goal {
    /// Checks the goal's number, so that a typo fails before any model runs.
    pub fn validate(self) -> Result<(), CalibrateError> {
        match self {
            Goal::MinAccuracyRatio(ratio) if !(ratio.is_finite() && ratio > 0.0) => {
                Err(CalibrateError::Goal(format!(
                    "minimum accuracy ratio {ratio} must be a finite number > 0"
                )))
            }
            Goal::MaxLastTier(fraction) if !(0.0..=1.0).contains(&fraction) => {
                Err(CalibrateError::Goal(format!(
                    "maximum fraction reaching the last tier {fraction} must be in [0, 1]"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Checks link latencies (ms, one per link between consecutive tiers) for a cascade of `tiers`
/// tiers, so that a typo fails before any model runs.
pub fn validate_link_latency(link_latency_ms: &[f64], tiers: usize) -> Result<(), CalibrateError> {
    if link_latency_ms.len() + 1 != tiers {
        return Err(CalibrateError::LinkLatency(format!(
            "{tiers} tiers have {} links, got {} link latencies",
            tiers.saturating_sub(1),
            link_latency_ms.len()
        )));
    }
    if let Some(bad) = link_latency_ms
        .iter()
        .find(|l| !(l.is_finite() && **l >= 0.0))
    {
        return Err(CalibrateError::LinkLatency(format!(
            "link latency {bad} ms must be a finite number ≥ 0"
        )));
    }
    Ok(())
}

/// Σ counts\[i\] × latency\[i\], summed in link order: the same float for the same counts
/// wherever it is computed (search, [`Outcome`], tests).
fn weigh(counts: impl IntoIterator<Item = usize>, link_latency_ms: &[f64]) -> f64 {
    counts
        .into_iter()
        .zip(link_latency_ms)
        .fold(0.0, |total, (count, latency)| {
            total + count as f64 * latency
        })
}

/// One tier's model outputs on the sample.
#[derive(Debug, Clone, Copy)]
pub struct TierProbs<'a> {
    /// The model's name, for errors.
    pub name: &'a str,
    /// Class probabilities, `[items, classes]` row-major.
    pub probs: &'a [f32],
    /// Per class of the model, the sample's class of the same name, if any: answers are
    /// matched to labels by name, so models may order their classes differently or know only
    /// some of them.
    pub classes: &'a [Option<usize>],
}

/// What the search needs of one tier: per item, its confidence and whether its answer is right.
#[derive(Debug, Clone, PartialEq)]
pub struct TierScores {
    pub confidence: Vec<f64>,
    pub correct: Vec<bool>,
}

/// Why calibration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrateError {
    #[error("a cascade needs at least two models, got {0}")]
    TooFewTiers(usize),
    #[error("the sample is empty")]
    EmptySample,
    #[error("the outputs have no class")]
    NoClass,
    #[error("{name}: {len} probabilities are not {items} items × {classes} classes")]
    Shape {
        name: String,
        len: usize,
        items: usize,
        classes: usize,
    },
    #[error(
        "{name}: item {item} is not a probability distribution ({detail}); calibration needs softmax outputs"
    )]
    NotProbabilities {
        name: String,
        item: usize,
        detail: String,
    },
    #[error("temperature {0} must be a finite number > 0")]
    Temperature(f64),
    #[error("{0}")]
    Goal(String),
    #[error("{0}")]
    LinkLatency(String),
    #[error("gate of {name}: {error}")]
    Gate { name: String, error: gate::FitError },
}

/// How a tier treats the items that reach it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Answer when confidence ≥ τ, else forward.
    Threshold(f64),
    /// Forward every item: no τ ≤ 1 does it, because some confidences are exactly 1.
    ForwardAll,
    /// The last tier: answer every item.
    Last,
}

/// What one tier does on the sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TierOutcome {
    pub rule: Rule,
    /// Items reaching the tier.
    pub reached: usize,
    /// Items the tier answers.
    pub answered: usize,
    /// Items the tier answers correctly.
    pub correct: usize,
    /// Items the tier's model gets right when it answers the whole sample alone.
    pub correct_alone: usize,
}

/// What a cascade does on the sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub items: usize,
    pub tiers: Vec<TierOutcome>,
}

impl Outcome {
    /// Items the cascade answers correctly.
    pub fn correct(&self) -> usize {
        self.tiers.iter().map(|t| t.correct).sum()
    }

    /// Fraction of items answered correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.items as f64
    }

    /// Items reaching the last tier.
    pub fn last_reached(&self) -> usize {
        self.tiers.last().map_or(0, |t| t.reached)
    }

    /// Expected link latency per request (ms): Σ_i (fraction reaching tier i + 1) × latency of
    /// link i, the link from tier i to tier i + 1.
    ///
    /// # Panics
    /// When `link_latency_ms` does not have one entry per link.
    pub fn link_latency(&self, link_latency_ms: &[f64]) -> f64 {
        assert_eq!(
            link_latency_ms.len() + 1,
            self.tiers.len(),
            "one latency per link"
        );
        self.link_latency_total(link_latency_ms) / self.items as f64
    }

    /// Link latency summed over all items (ms).
    fn link_latency_total(&self, link_latency_ms: &[f64]) -> f64 {
        weigh(self.tiers[1..].iter().map(|t| t.reached), link_latency_ms)
    }

    /// The thresholds, one per non-last tier (`None`: forward all).
    pub fn taus(&self) -> Vec<Option<f64>> {
        self.tiers
            .iter()
            .filter_map(|t| match t.rule {
                Rule::Threshold(tau) => Some(Some(tau)),
                Rule::ForwardAll => Some(None),
                Rule::Last => None,
            })
            .collect()
    }
}

/// The result of [`calibrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub goal: Goal,
    /// Latency (ms) of each link between consecutive tiers, when given.
    pub link_latency_ms: Option<Vec<f64>>,
    /// Whether the thresholds meet the goal; when not, `outcome` is the closest found.
    pub feasible: bool,
    /// Whether every distinct confidence of every tier was tried.
    pub exhaustive: bool,
    pub outcome: Outcome,
}

/// Reduces each tier's probabilities to confidences and right/wrong (its most probable class
/// has the label's name), checking that every tier has one row of probabilities per label.
pub fn score(
    tiers: &[TierProbs<'_>],
    labels: &[usize],
    confidence: &Confidence,
) -> Result<Vec<TierScores>, CalibrateError> {
    if !(confidence.temperature.is_finite() && confidence.temperature > 0.0) {
        return Err(CalibrateError::Temperature(confidence.temperature));
    }
    let items = labels.len();
    tiers
        .iter()
        .map(|tier| {
            let classes = tier.classes.len();
            if classes == 0 {
                return Err(CalibrateError::NoClass);
            }
            if tier.probs.len() != items * classes {
                return Err(CalibrateError::Shape {
                    name: tier.name.to_owned(),
                    len: tier.probs.len(),
                    items,
                    classes,
                });
            }
            check_probabilities(tier, classes)?;
            Ok(TierScores {
                confidence: confidence.scores(tier.probs, classes),
                correct: tier
                    .probs
                    .chunks_exact(classes)
                    .zip(labels)
                    .map(|(row, &label)| tier.classes[argmax(row)] == Some(label))
                    .collect(),
            })
        })
        .collect()
}

/// Confidence metrics read probabilities; logits or garbage would give meaningless thresholds
/// without any error, so they are refused here.
fn check_probabilities(tier: &TierProbs<'_>, classes: usize) -> Result<(), CalibrateError> {
    for (item, row) in tier.probs.chunks_exact(classes).enumerate() {
        let fail = |detail: String| CalibrateError::NotProbabilities {
            name: tier.name.to_owned(),
            item,
            detail,
        };
        if let Some(p) = row.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(fail(format!("value {p} is outside [0, 1]")));
        }
        let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
        // float32 softmax rows sum to 1 within a few ulps per class.
        if (sum - 1.0).abs() > 1e-3 {
            return Err(fail(format!("the row sums to {sum}")));
        }
    }
    Ok(())
}

/// Runs the cascade with thresholds `taus` (one per non-last tier, `None`: forward all) on the
/// scored sample.
///
/// # Panics
/// When `taus` does not have one entry per non-last tier.
pub fn evaluate(scores: &[TierScores], taus: &[Option<f64>]) -> Outcome {
    assert_eq!(taus.len() + 1, scores.len(), "one τ per non-last tier");
    let items = scores.first().map_or(0, |s| s.correct.len());
    let mut reaching: Vec<usize> = (0..items).collect();
    let tiers = scores
        .iter()
        .enumerate()
        .map(|(i, tier)| {
            let rule = match taus.get(i) {
                None => Rule::Last,
                Some(None) => Rule::ForwardAll,
                Some(Some(tau)) => Rule::Threshold(*tau),
            };
            let (answered, forwarded): (Vec<usize>, Vec<usize>) =
                reaching.iter().partition(|&&item| match rule {
                    Rule::Last => true,
                    Rule::ForwardAll => false,
                    Rule::Threshold(tau) => tier.confidence[item] >= tau,
                });
            let outcome = TierOutcome {
                rule,
                reached: reaching.len(),
                answered: answered.len(),
                correct: answered.iter().filter(|&&item| tier.correct[item]).count(),
                correct_alone: tier.correct.iter().filter(|&&c| c).count(),
            };
            reaching = forwarded;
            outcome
        })
        .collect();
    Outcome { items, tiers }
}

/// Searches thresholds meeting `goal` (see the module documentation). `link_latency_ms`, one
/// per link between consecutive tiers, makes a [`Goal::MinAccuracyRatio`] minimise the expected
/// link latency rather than the requests reaching the last tier.
pub fn calibrate(
    scores: &[TierScores],
    goal: Goal,
    link_latency_ms: Option<&[f64]>,
) -> Result<Calibration, CalibrateError> {
    calibrate_within(scores, goal, link_latency_ms, WORK_BUDGET)
}

#[cfg(test)]
mod tests {
    use super::search::{Key, Objective};
    use super::*;

    /// A tier from (confidence, correct) pairs.
    fn tier(items: &[(f64, bool)]) -> TierScores {
        TierScores {
            confidence: items.iter().map(|&(c, _)| c).collect(),
            correct: items.iter().map(|&(_, r)| r).collect(),
        }
    }

    /// (correct, reaching the last tier, forwards overall, link latency summed over the items).
    type Counts = (usize, usize, usize, f64);

    /// Every combination of thresholds from a grid of `steps` + 1 values in [0, 1] plus
    /// "forward all", evaluated directly: the slow reference the search must match in counts.
    fn brute_force(
        scores: &[TierScores],
        goal: Goal,
        links: Option<&[f64]>,
        steps: u32,
    ) -> Option<Counts> {
        let grid: Vec<Option<f64>> = (0..=steps)
            .map(|i| Some(f64::from(i) / f64::from(steps)))
            .chain([None])
            .collect();
        let objective =
            Objective::new(goal, links.is_some(), scores[0].correct.len(), scores).unwrap();
        let zeros = vec![0.0; scores.len() - 1];
        let links = links.unwrap_or(&zeros);
        let mut best: Option<Key> = None;
        let mut taus = vec![Some(0.0); scores.len() - 1];
        let mut stack = vec![0usize; scores.len() - 1];
        loop {
            for (slot, &i) in taus.iter_mut().zip(&stack) {
                *slot = grid[i];
            }
            let outcome = evaluate(scores, &taus);
            // The latency straight from its definition, Σ_i reached(tier i + 1) × L_i.
            let mut latency = 0.0;
            for (tier, link) in outcome.tiers[1..].iter().zip(links) {
                latency += tier.reached as f64 * link;
            }
            let key = Key {
                correct: outcome.correct(),
                last: outcome.last_reached(),
                hops: outcome.tiers[1..].iter().map(|t| t.reached).sum(),
                latency,
            };
            if objective.feasible(key) && best.is_none_or(|b| objective.prefers(key, b)) {
                best = Some(key);
            }
            // Next combination, like an odometer.
            let mut position = 0;
            loop {
                if position == stack.len() {
                    return best.map(|k| (k.correct, k.last, k.hops, k.latency));
                }
                stack[position] += 1;
                if stack[position] < grid.len() {
                    break;
                }
                stack[position] = 0;
                position += 1;
            }
        }
    }

    fn counts(calibration: &Calibration) -> Counts {
        let outcome = &calibration.outcome;
        let links = calibration
            .link_latency_ms
            .clone()
            .unwrap_or_else(|| vec![0.0; outcome.tiers.len() - 1]);
        (
            outcome.correct(),
            outcome.last_reached(),
            outcome.tiers[1..].iter().map(|t| t.reached).sum(),
            outcome.link_latency_total(&links),
        )
    }

    /// A two-tier cascade: the small model is right when confident except at 0.6.
    fn two_tiers() -> Vec<TierScores> {
        vec![
            tier(&[
                (0.95, true),
                (0.9, true),
                (0.8, true),
                (0.6, false),
                (0.5, true),
                (0.3, false),
            ]),
            tier(&[
                (1.0, true),
                (1.0, true),
                (1.0, true),
                (1.0, true),
                (1.0, false),
                (1.0, true),
            ]),
        ]
    }

    #[test]
    fn two_tiers_min_accuracy_ratio() {
        // The big model alone: 5 of 6. Ratio 1 needs 5 correct. Answering all but 0.3 gives
        // 4 + 1 = 5 with one item forwarded (the wrong 0.6 is offset by 0.3 being forwarded);
        // stopping above 0.6 gives 3 + 2 = 5 with three forwarded.
        let c = calibrate(&two_tiers(), Goal::MinAccuracyRatio(1.0), None).unwrap();
        assert!(c.feasible && c.exhaustive);
        assert_eq!(c.outcome.correct(), 5);
        assert_eq!(c.outcome.last_reached(), 1);
        assert_eq!(c.outcome.taus(), [Some(0.4)]);
        assert_eq!(c.outcome.tiers[0].answered, 5);
        assert_eq!(c.outcome.tiers[0].correct_alone, 4);
        assert_eq!(c.outcome.tiers[1].correct_alone, 5);

        // Ratio 0.8 needs 4 correct, which answering everything locally gives.
        let c = calibrate(&two_tiers(), Goal::MinAccuracyRatio(0.8), None).unwrap();
        assert_eq!(c.outcome.last_reached(), 0);
        assert_eq!(c.outcome.correct(), 4);
        assert_eq!(c.outcome.taus(), [Some(0.0)]);
    }

    #[test]
    fn two_tiers_max_last_tier() {
        // At most 2 of 6 forwarded: forwarding 0.3 gives 4 + 1 = 5 correct, forwarding 0.3
        // and 0.5 gives 3 + 1 = 4 (0.5 is right here, wrong above).
        let c = calibrate(&two_tiers(), Goal::MaxLastTier(2.0 / 6.0), None).unwrap();
        assert!(c.feasible);
        assert_eq!(c.outcome.correct(), 5);
        assert_eq!(c.outcome.last_reached(), 1);
        assert_eq!(c.outcome.taus(), [Some(0.4)]);

        // Nothing may reach the last tier: answer everything.
        let c = calibrate(&two_tiers(), Goal::MaxLastTier(0.0), None).unwrap();
        assert_eq!(c.outcome.taus(), [Some(0.0)]);
        assert_eq!(c.outcome.correct(), 4);
    }

    #[test]
    fn ties_in_the_preference_keep_the_fewest_forwards() {
        // Forwarding 0.4 or not gives the same accuracy (wrong in both tiers): keep it local.
        let scores = vec![
            tier(&[(0.9, true), (0.4, false), (0.2, false)]),
            tier(&[(1.0, true), (1.0, false), (1.0, true)]),
        ];
        let c = calibrate(&scores, Goal::MaxLastTier(1.0), None).unwrap();
        assert_eq!(c.outcome.correct(), 2);
        assert_eq!(c.outcome.last_reached(), 1);
        assert_eq!(c.outcome.taus(), [Some(0.3)]);
    }

    #[test]
    fn equal_confidences_move_together() {
        // No τ separates the two 0.8 items, so answering one of them is not a choice.
        let scores = vec![
            tier(&[(0.8, true), (0.8, false), (0.1, false)]),
            tier(&[(1.0, true), (1.0, true), (1.0, true)]),
        ];
        // Two of three may be forwarded, but forwarding the wrong 0.8 means forwarding the
        // right one too: the choices are 0.1 alone (1 + 1 correct) or all three (3 correct,
        // over the limit).
        let c = calibrate(&scores, Goal::MaxLastTier(2.0 / 3.0), None).unwrap();
        assert_eq!(c.outcome.correct(), 2);
        assert_eq!(c.outcome.last_reached(), 1);
    }

    #[test]
    fn forward_all_when_confidences_reach_one() {
        // The small model is confidently wrong at 1.0; ratio 1 needs everything forwarded,
        // which no τ ≤ 1 does.
        let scores = vec![
            tier(&[(1.0, false), (0.5, true)]),
            tier(&[(0.9, true), (0.9, true)]),
        ];
        let c = calibrate(&scores, Goal::MinAccuracyRatio(1.0), None).unwrap();
        assert!(c.feasible);
        assert_eq!(c.outcome.taus(), [None]);
        assert_eq!(c.outcome.tiers[0].rule, Rule::ForwardAll);
        assert_eq!(c.outcome.last_reached(), 2);
        // Below 1 a τ of 1 forwards everything.
        let scores = vec![
            tier(&[(0.99, false), (0.5, true)]),
            tier(&[(0.9, true), (0.9, true)]),
        ];
        let c = calibrate(&scores, Goal::MinAccuracyRatio(1.0), None).unwrap();
        assert_eq!(c.outcome.taus(), [Some(1.0)]);
    }

    #[test]
    fn an_unreachable_goal_reports_the_closest() {
        // No cascade beats the last tier by 50 %: the closest is the most accurate one.
        let c = calibrate(&two_tiers(), Goal::MinAccuracyRatio(1.5), None).unwrap();
        assert!(!c.feasible);
        assert_eq!(c.outcome.correct(), 5);
        // Here a cascade beats its last tier: 3 tier-1 answers right plus 0.1 forwarded right.
        let scores = vec![
            tier(&[(0.9, true), (0.8, true), (0.1, false)]),
            tier(&[(1.0, false), (1.0, false), (1.0, true)]),
        ];
        let c = calibrate(&scores, Goal::MinAccuracyRatio(3.0), None).unwrap();
        assert!(c.feasible, "3 correct = 3 × the last tier's 1");
        assert_eq!(c.outcome.correct(), 3);
        let c = calibrate(&scores, Goal::MinAccuracyRatio(3.5), None).unwrap();
        assert!(!c.feasible);
        assert_eq!(c.outcome.correct(), 3);
    }

    #[test]
    fn three_tiers_known_answer() {
        // Tier 1 is right above 0.7, tier 2 right above 0.6, tier 3 always right.
        let scores = vec![
            tier(&[
                (0.9, true),
                (0.8, true),
                (0.6, false),
                (0.5, false),
                (0.4, false),
            ]),
            tier(&[
                (0.9, false),
                (0.9, false),
                (0.7, true),
                (0.65, true),
                (0.2, false),
            ]),
            tier(&[(1.0, true); 5]),
        ];
        let c = calibrate(&scores, Goal::MinAccuracyRatio(1.0), None).unwrap();
        assert!(c.feasible);
        assert_eq!(c.outcome.correct(), 5);
        assert_eq!(c.outcome.last_reached(), 1);
        assert_eq!(c.outcome.taus(), [Some(0.7), Some(0.4)]);
        let reached: Vec<usize> = c.outcome.tiers.iter().map(|t| t.reached).collect();
        let answered: Vec<usize> = c.outcome.tiers.iter().map(|t| t.answered).collect();
        assert_eq!(reached, [5, 3, 1]);
        assert_eq!(answered, [2, 2, 1]);

        // Nothing to the last tier: best is tier 1 for 0.9/0.8, tier 2 for the rest (2 + 2).
        let c = calibrate(&scores, Goal::MaxLastTier(0.0), None).unwrap();
        assert_eq!(c.outcome.correct(), 4);
        assert_eq!(c.outcome.last_reached(), 0);
        assert_eq!(c.outcome.taus(), [Some(0.7), Some(0.0)]);
    }

    /// Four items, one error allowed (ratio 0.75 of the last tier's 4 correct). It can be spent
    /// at tier 1, answering the wrong b so that only d goes on (reached 1, 1), or at tier 2,
    /// answering the wrong d so that nothing reaches tier 3 (reached 3, 0).
    fn spend_an_error() -> Vec<TierScores> {
        vec![
            tier(&[(0.9, true), (0.8, false), (0.7, true), (0.1, false)]),
            tier(&[(0.95, true), (0.9, true), (0.8, true), (0.7, false)]),
            tier(&[(1.0, true); 4]),
        ]
    }

    fn reached(c: &Calibration) -> Vec<usize> {
        c.outcome.tiers.iter().map(|t| t.reached).collect()
    }

    #[test]
    fn link_latency_decides_where_requests_stop() {
        let scores = spend_an_error();
        let goal = Goal::MinAccuracyRatio(0.75);
        // Fewest reaching the last tier: spend the error at tier 2.
        let fewest_last = calibrate(&scores, goal, None).unwrap();
        assert_eq!(reached(&fewest_last), [4, 3, 0]);
        assert_eq!(fewest_last.outcome.taus(), [Some(0.9), Some(0.0)]);

        // A cheap first link agrees: 3 × 5 = 15 ms against 1 × 5 + 1 × 40 = 45 ms.
        let cheap_first = calibrate(&scores, goal, Some(&[5.0, 40.0])).unwrap();
        assert!(cheap_first.feasible && cheap_first.exhaustive);
        assert_eq!(cheap_first.outcome, fewest_last.outcome);
        assert_eq!(cheap_first.outcome.link_latency(&[5.0, 40.0]), 15.0 / 4.0);

        // A costly first link does not: 1 × 40 + 1 × 5 = 45 ms against 3 × 40 = 120 ms.
        let links = [40.0, 5.0];
        let costly_first = calibrate(&scores, goal, Some(&links)).unwrap();
        assert!(costly_first.feasible);
        assert_eq!(reached(&costly_first), [4, 1, 1]);
        assert_eq!(costly_first.outcome.correct(), 3);
        assert_eq!(costly_first.outcome.taus(), [Some(0.4), Some(1.0)]);
        assert_eq!(costly_first.outcome.link_latency(&links), 45.0 / 4.0);
        assert_eq!(costly_first.link_latency_ms.as_deref(), Some(&links[..]));
        // Without the error budget (ratio 1) every answer must be right: tier 1 can answer only
        // a (b is wrong and above c), tier 2 b and c, and d goes to tier 3.
        let exact = calibrate(&scores, Goal::MinAccuracyRatio(1.0), Some(&links)).unwrap();
        assert_eq!(exact.outcome.correct(), 4);
        assert_eq!(reached(&exact), [4, 3, 1]);
        assert_eq!(exact.outcome.link_latency(&links), (3.0 * 40.0 + 5.0) / 4.0);
    }

    #[test]
    fn equal_link_latency_prefers_accuracy_then_fewer_reaching_the_last_tier() {
        let scores = spend_an_error();
        let goal = Goal::MinAccuracyRatio(0.75);
        // Free links: every choice costs 0, so the most accurate wins (4 correct: only d, wrong
        // at tiers 1 and 2, must reach tier 3), with the fewest at tier 3 and then the fewest
        // forwards: tier 1 answers a, tier 2 b and c.
        let free = calibrate(&scores, goal, Some(&[0.0, 0.0])).unwrap();
        assert_eq!(free.outcome.correct(), 4);
        assert_eq!(reached(&free), [4, 3, 1]);
        assert_eq!(free.outcome.link_latency(&[0.0, 0.0]), 0.0);
        // Only the first link costs: fewest reaching tier 2 (1, by answering a, b and c at tier
        // 1), even though that spends the error there and sends d on to tier 3.
        let first = calibrate(&scores, goal, Some(&[10.0, 0.0])).unwrap();
        assert_eq!(reached(&first), [4, 1, 1]);
        assert_eq!(first.outcome.correct(), 3);
        // Two tiers: latency is proportional to the requests reaching the last tier, so the
        // choice is the fewest-last one.
        let two = two_tiers();
        for ratio in [0.8, 1.0] {
            let goal = Goal::MinAccuracyRatio(ratio);
            let plain = calibrate(&two, goal, None).unwrap();
            let timed = calibrate(&two, goal, Some(&[7.0])).unwrap();
            assert_eq!(timed.outcome, plain.outcome);
            let last = plain.outcome.last_reached() as f64;
            assert_eq!(timed.outcome.link_latency(&[7.0]), last * 7.0 / 6.0);
        }
    }

    #[test]
    fn an_unreachable_goal_with_latency_reports_the_most_accurate_then_fastest() {
        let scores = spend_an_error();
        // 5 correct of 4 is impossible: the closest is 4 correct, the cheapest of those (as
        // with ratio 1: 3 × 40 + 1 × 5 ms, not 4 × 40 + 1 × 5 by forwarding a too).
        let c = calibrate(&scores, Goal::MinAccuracyRatio(1.25), Some(&[40.0, 5.0])).unwrap();
        assert!(!c.feasible);
        assert_eq!(c.outcome.correct(), 4);
        assert_eq!(reached(&c), [4, 3, 1]);
    }

    #[test]
    fn bad_link_latencies_are_refused() {
        let scores = spend_an_error();
        let goal = Goal::MinAccuracyRatio(0.9);
        let error = |links: &[f64]| {
            calibrate(&scores, goal, Some(links))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(&[5.0]), "3 tiers have 2 links, got 1 link latencies");
        assert_eq!(
            error(&[5.0, 4.0, 3.0]),
            "3 tiers have 2 links, got 3 link latencies"
        );
        assert_eq!(
            error(&[5.0, -1.0]),
            "link latency -1 ms must be a finite number ≥ 0"
        );
        assert!(error(&[f64::INFINITY, 1.0]).starts_with("link latency inf ms"));
        assert!(error(&[f64::NAN, 1.0]).starts_with("link latency NaN ms"));
        assert_eq!(validate_link_latency(&[0.0, 1.5], 3), Ok(()));
    }

    #[test]
    fn the_search_matches_brute_force() {
        // Pseudo-random cascades of 2 to 4 tiers whose confidences lie on the brute force's grid
        // (two decimals, one for 4 tiers to keep it quick), where the grid is exhaustive.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |modulus: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % modulus
        };
        // Cases where weighing the links changes the thresholds chosen: the cross-check must
        // cover some, or it would only show that latency is ignored consistently.
        let mut changed_by_latency = 0;
        for case in 0..90 {
            let tiers = 2 + case % 3;
            let steps = if tiers == 4 { 10 } else { 100 };
            let items = 1 + next(12) as usize;
            let scores: Vec<TierScores> = (0..tiers)
                .map(|_| TierScores {
                    confidence: (0..items)
                        .map(|_| next(u64::from(steps) + 1) as f64 / f64::from(steps))
                        .collect(),
                    correct: (0..items).map(|_| next(3) > 0).collect(),
                })
                .collect();
            // Whole milliseconds, so that equal latencies are equal floats: sometimes a free
            // link, sometimes equal links, otherwise anything up to 50 ms.
            let links: Vec<f64> = (1..tiers)
                .map(|_| match next(4) {
                    0 => 0.0,
                    1 => 10.0,
                    _ => next(51) as f64,
                })
                .collect();
            for goal in [
                Goal::MinAccuracyRatio(0.9),
                Goal::MinAccuracyRatio(1.0),
                Goal::MinAccuracyRatio(1.2),
                Goal::MaxLastTier(0.0),
                Goal::MaxLastTier(0.25),
                Goal::MaxLastTier(0.5),
            ] {
                for links in [None, Some(links.as_slice())] {
                    let c = calibrate(&scores, goal, links).unwrap();
                    let expected = brute_force(&scores, goal, links, steps);
                    let at = format!("case {case} {goal:?} {links:?}");
                    assert_eq!(c.feasible, expected.is_some(), "{at}");
                    if let Some(expected) = expected {
                        assert_eq!(counts(&c), expected, "{at} {scores:?}");
                    }
                    // The reported τs reproduce the reported outcome.
                    assert_eq!(evaluate(&scores, &c.outcome.taus()), c.outcome, "{at}");
                }
                // Latencies change the choice only with a minimum accuracy ratio.
                let timed = calibrate(&scores, goal, Some(&links)).unwrap().outcome;
                let plain = calibrate(&scores, goal, None).unwrap().outcome;
                if matches!(goal, Goal::MaxLastTier(_)) {
                    assert_eq!(timed, plain, "case {case} {goal:?}");
                } else if timed != plain {
                    changed_by_latency += 1;
                }
            }
        }
        assert!(changed_by_latency >= 10, "{changed_by_latency}");
    }

    #[test]
    fn four_tiers_beyond_the_budget_are_thinned_and_still_consistent() {
        let items = 2_000;
        let scores: Vec<TierScores> = (0..4)
            .map(|t| TierScores {
                confidence: (0..items)
                    .map(|i| ((i * (7 + t) + t) % 9973) as f64 / 9973.0)
                    .collect(),
                correct: (0..items).map(|i| (i + t) % 5 != 0).collect(),
            })
            .collect();
        let c = calibrate_within(&scores, Goal::MaxLastTier(0.1), None, 1_000_000).unwrap();
        assert!(!c.exhaustive);
        assert!(c.feasible);
        assert!(c.outcome.last_reached() <= items / 10);
        assert_eq!(evaluate(&scores, &c.outcome.taus()), c.outcome);
    }

    #[test]
    fn score_reduces_probabilities() {
        let linear = [0.7f32, 0.2, 0.1, 0.1, 0.1, 0.8];
        let cnn = [0.0f32, 1.0, 0.0, 0.0, 0.0, 1.0];
        let same = [Some(0), Some(1), Some(2)];
        let tiers = [
            TierProbs {
                name: "linear",
                probs: &linear,
                classes: &same,
            },
            TierProbs {
                name: "cnn",
                probs: &cnn,
                classes: &same,
            },
        ];
        let scores = score(&tiers, &[0, 2], &Confidence::default()).unwrap();
        assert_eq!(scores[0].correct, [true, true]);
        assert_eq!(scores[1].correct, [false, true]);
        assert!((scores[0].confidence[0] - 0.7).abs() < 1e-6);
        assert_eq!(scores[1].confidence, [1.0, 1.0]);
    }

    #[test]
    fn answers_are_matched_to_labels_by_class_name() {
        // A model ordering the sample's classes 2, 0 and one that knows only class 1 and a
        // class the sample does not have.
        let reordered = [0.9f32, 0.1, 0.2, 0.8];
        let partial = [0.6f32, 0.4, 0.3, 0.7];
        let tiers = [
            TierProbs {
                name: "reordered",
                probs: &reordered,
                classes: &[Some(2), Some(0)],
            },
            TierProbs {
                name: "partial",
                probs: &partial,
                classes: &[Some(1), None],
            },
        ];
        let scores = score(&tiers, &[2, 1], &Confidence::default()).unwrap();
        assert_eq!(scores[0].correct, [true, false]);
        assert_eq!(scores[1].correct, [false, false]);
    }

    #[test]
    fn bad_inputs_are_named() {
        let ok = [0.5f32, 0.5];
        let short = [1.0f32];
        let logits = [3.0f32, -1.0];
        let unnormalised = [0.5f32, 0.4];
        let two = [Some(0), Some(1)];
        let run = |probs: &[f32], labels: &[usize]| {
            let tiers = [
                TierProbs {
                    name: "m",
                    probs: &ok,
                    classes: &two,
                },
                TierProbs {
                    name: "big",
                    probs,
                    classes: &two,
                },
            ];
            score(&tiers, labels, &Confidence::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            run(&short, &[0]),
            "big: 1 probabilities are not 1 items × 2 classes"
        );
        assert!(run(&logits, &[0]).starts_with(
            "big: item 0 is not a probability distribution (value 3 is outside [0, 1])"
        ));
        assert!(run(&unnormalised, &[0]).contains("the row sums to 0.9"));
        let hot = Confidence {
            temperature: 0.0,
            ..Confidence::default()
        };
        let tiers = [TierProbs {
            name: "m",
            probs: &ok,
            classes: &two,
        }];
        assert_eq!(
            score(&tiers, &[0], &hot).unwrap_err(),
            CalibrateError::Temperature(0.0)
        );
    }

    #[test]
    fn bad_goals_and_cascades_are_refused() {
        let scores = two_tiers();
        for goal in [
            Goal::MinAccuracyRatio(0.0),
            Goal::MinAccuracyRatio(f64::NAN),
            Goal::MaxLastTier(1.5),
            Goal::MaxLastTier(-0.1),
        ] {
            assert!(matches!(
                calibrate(&scores, goal, None),
                Err(CalibrateError::Goal(_))
            ));
        }
        assert_eq!(
            calibrate(&scores[..1], Goal::MaxLastTier(0.1), None).unwrap_err(),
            CalibrateError::TooFewTiers(1)
        );
        let empty = vec![tier(&[]), tier(&[])];
        assert_eq!(
            calibrate(&empty, Goal::MaxLastTier(0.1), None).unwrap_err(),
            CalibrateError::EmptySample
        );
    }

    #[test]
    fn tau_is_a_short_decimal_inside_the_gap() {
        assert_eq!(tau_between(0.12, 0.98), 0.6);
        assert_eq!(tau_between(0.8999, 0.99995), 0.9);
        assert_eq!(tau_between(0.91234, 0.91567), 0.914);
        assert_eq!(tau_between(0.5, 1.0), 1.0);
        assert_eq!(tau_between(0.0, 0.05), 0.03);
        // Adjacent f32 values still get a τ strictly above the lower one.
        let lo = f64::from(0.99999994f32);
        let tau = tau_between(lo, 1.0);
        assert!(lo < tau && tau <= 1.0, "{tau}");
        let hi = f64::from(0.9f32);
        let lo = f64::from(f32::from_bits(0.9f32.to_bits() - 1));
        let tau = tau_between(lo, hi);
        assert!(lo < tau && tau <= hi, "{tau}");
    }
}
