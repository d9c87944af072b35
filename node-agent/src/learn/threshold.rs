//! A threshold that learns its τ online (`threshold.adapt`). Per item the cost is the forward
//! cost when forwarded and alpha when served locally with a wrong answer. Whether a local
//! answer was right is learned from the forward target's answer to forwarded items (and to
//! explored ones: confident items forwarded at a small rate) and, with `feedback: labels`,
//! from labels clients post by request id.

use std::time::Duration;

use idn_contract::config::{AdaptConfig, AdaptMethod, FeedbackSource};
use serde::{Deserialize, Serialize};

use super::Grid;
use super::hedge::Hedge;
use super::lcb::Lcb;
use super::ledger::Ledger;
use super::pending::Pending;
use crate::error::RequestError;

/// Largest importance weight given to one verdict, so a rare exploration cannot swamp
/// everything learned before it.
const MAX_IMPORTANCE: f64 = 100.0;
/// Weight of the newest latency in the forward cost's moving average.
const COST_SMOOTHING: f64 = 0.1;

#[derive(Debug)]
pub(crate) struct ThresholdLearner {
    config: AdaptConfig,
    /// The configured τ: where learning starts, and what `lcb` uses without evidence.
    tau: f64,
    deadline: Duration,
    grid: Grid,
    learned: Learned,
    rng: fastrand::Rng,
    /// Locally served items waiting for their label, by request id.
    pending: Pending<Waiting>,
}

/// Everything a replica learned: what is exported, seeded and kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Learned {
    pub policy: Policy,
    pub ledger: Ledger,
    /// Moving average of the forward target's latency as a share of the deadline.
    pub measured_cost: Option<f64>,
    /// Verdicts learned from, by where they came from.
    pub upstream_verdicts: u64,
    pub label_verdicts: u64,
    /// Confident items forwarded to keep verdicts coming.
    pub explored: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Policy {
    Hedge(Hedge),
    Lcb(Lcb),
}

/// The decision on one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Choice {
    pub forward: bool,
    /// Probability that it was forwarded (exploration included).
    pub probability: f64,
    /// Forwarded only to learn: the policy alone would have served it.
    pub explored: bool,
}

/// What became of a batch the learner chose for.
pub(crate) struct Settled<'a> {
    pub scores: &'a [f64],
    pub choices: &'a [Choice],
    /// The local answer's class, per item.
    pub local: &'a [usize],
    /// The forward target's class for each forwarded item it answered itself (not a
    /// fallback); none for the others.
    pub verdicts: &'a [Option<usize>],
    pub classes: usize,
    /// How long the forward call took, when there was one that answered.
    pub latency: Option<Duration>,
    pub request_id: Option<&'a str>,
}

/// A request's items that were served locally, waiting for labels.
#[derive(Debug)]
struct Waiting {
    classes: usize,
    /// Per item: its score, local class and forward probability, when it waits.
    items: Vec<Option<(f64, usize, f64)>>,
}

/// Figures for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Snapshot {
    pub tau: f64,
    pub regret: f64,
    pub cost: f64,
    pub forward_cost: f64,
    pub upstream_verdicts: u64,
    pub label_verdicts: u64,
    pub explored: u64,
    pub waiting: usize,
}

impl ThresholdLearner {
    pub(crate) fn new(config: &AdaptConfig, tau: f64, deadline: Duration) -> Self {
        let grid = Grid {
            points: config.grid,
        };
        let policy = match config.method {
            AdaptMethod::Hedge => Policy::Hedge(Hedge::new(grid, tau)),
            AdaptMethod::Lcb => Policy::Lcb(Lcb::new(grid.points)),
        };
        ThresholdLearner {
            tau,
            deadline,
            grid,
            learned: Learned {
                policy,
                ledger: Ledger::new(grid.points),
                measured_cost: None,
                upstream_verdicts: 0,
                label_verdicts: 0,
                explored: 0,
            },
            rng: config
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            pending: Pending::new(config.pending),
            config: config.clone(),
        }
    }

    /// The cost of forwarding one item now.
    fn forward_cost(&self) -> f64 {
        self.config
            .forward_cost
            .or(self.learned.measured_cost)
            .unwrap_or(0.0)
    }

    /// Decides each item: forward or serve locally.
    pub(crate) fn choose(&mut self, scores: &[f64]) -> Vec<Choice> {
        let cost = self.forward_cost();
        scores
            .iter()
            .map(|&score| {
                let leaning = match &self.learned.policy {
                    Policy::Hedge(hedge) => hedge.forward_probability(self.grid.split(score)),
                    Policy::Lcb(lcb) => {
                        let local = lcb.serves_locally(score, self.tau, self.config.alpha, cost);
                        if local { 0.0 } else { 1.0 }
                    }
                };
                let epsilon = self.config.exploration;
                let explore = self.rng.f64() < epsilon;
                let policy_forwards = self.rng.f64() < leaning;
                Choice {
                    forward: explore || policy_forwards,
                    probability: epsilon + (1.0 - epsilon) * leaning,
                    explored: explore && !policy_forwards,
                }
            })
            .collect()
    }

    /// Learns from a batch it chose for: the forward cost it paid and the verdicts that came
    /// back; with label feedback, the locally served items wait for their labels. Returns
    /// the verdicts learned from and the items explored.
    pub(crate) fn settle(&mut self, batch: &Settled) -> (usize, usize) {
        let (mut verdicts, mut explored) = (0, 0);
        if let Some(latency) = batch.latency {
            let share = latency.as_secs_f64() / self.deadline.as_secs_f64().max(1e-9);
            self.learned.measured_cost = Some(match self.learned.measured_cost {
                Some(cost) => (1.0 - COST_SMOOTHING) * cost + COST_SMOOTHING * share,
                None => share,
            });
        }
        let cost = self.forward_cost();
        let labels = self.config.feedback == FeedbackSource::Labels;
        let mut waiting = Vec::with_capacity(batch.scores.len());
        for (row, (&score, choice)) in batch.scores.iter().zip(batch.choices).enumerate() {
            self.charge_forward(score, choice.probability, cost);
            explored += usize::from(choice.explored);
            let verdict = batch.verdicts[row].filter(|_| choice.forward);
            let local = batch.local[row];
            if let Some(class) = verdict {
                // Without labels, a forwarded item is the only kind whose verdict arrives.
                let importance = if labels {
                    1.0
                } else {
                    1.0 / choice.probability
                };
                self.observe(score, choice.probability, class != local, importance);
                verdicts += 1;
            }
            waiting.push((labels && !choice.forward).then_some((score, local, choice.probability)));
            if let Policy::Hedge(hedge) = &mut self.learned.policy {
                hedge.share(self.config.forgetting());
            }
        }
        if let Some(id) = batch.request_id
            && waiting.iter().any(Option::is_some)
        {
            let classes = batch.classes;
            self.pending.insert(
                id,
                Waiting {
                    classes,
                    items: waiting,
                },
            );
        }
        self.learned.upstream_verdicts += verdicts as u64;
        self.learned.explored += explored as u64;
        (verdicts, explored)
    }

    /// Learns from the labels a client posts for request `id`, one per batch item (none for
    /// an item it does not know); returns how many items it learned from.
    pub(crate) fn label(
        &mut self,
        id: &str,
        labels: &[Option<usize>],
    ) -> Result<usize, RequestError> {
        if self.config.feedback != FeedbackSource::Labels {
            return Err(RequestError::Invalid(
                "this service learns from its upstream's answers only (threshold.adapt.feedback: upstream); labels are not used".into(),
            ));
        }
        let waiting = self.pending.take(id).ok_or_else(|| not_waiting(id))?;
        if let Err(e) = check_labels(labels, waiting.items.len(), waiting.classes) {
            self.pending.insert(id, waiting);
            return Err(e);
        }
        let mut learned = 0;
        for (item, label) in waiting.items.iter().zip(labels) {
            if let (Some((score, class, probability)), Some(label)) = (item, label) {
                self.observe(*score, *probability, label != class, 1.0);
                self.learned.label_verdicts += 1;
                learned += 1;
            }
        }
        Ok(learned)
    }

    /// Charges the forward side of one item: candidates that forward it pay `cost`, the
    /// learner pays it with the probability it forwarded.
    fn charge_forward(&mut self, score: f64, probability: f64, cost: f64) {
        let split = self.grid.split(score);
        self.learned
            .ledger
            .charge(split, 0.0, cost, probability * cost);
        if let Policy::Hedge(hedge) = &mut self.learned.policy {
            hedge.update(split, 0.0, cost, self.config.hedge_rate());
        }
    }

    /// Learns one verdict on a local answer at `score`: candidates that serve it pay alpha
    /// when it was wrong, weighted by `importance` (1 / the probability it was observed).
    fn observe(&mut self, score: f64, probability: f64, wrong: bool, importance: f64) {
        let split = self.grid.split(score);
        let loss = if wrong {
            self.config.alpha * importance.min(MAX_IMPORTANCE)
        } else {
            0.0
        };
        let own = (1.0 - probability) * loss;
        self.learned.ledger.charge(split, loss, 0.0, own);
        match &mut self.learned.policy {
            Policy::Hedge(hedge) => hedge.update(split, loss, 0.0, self.config.hedge_rate()),
            Policy::Lcb(lcb) => lcb.observe(score, !wrong, self.config.forgetting()),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let cost = self.forward_cost();
        let tau = match &self.learned.policy {
            Policy::Hedge(hedge) => hedge.median(self.grid),
            Policy::Lcb(lcb) => lcb.effective_tau(self.tau, self.config.alpha, cost),
        };
        Snapshot {
            tau,
            regret: self.learned.ledger.regret(),
            cost: self.learned.ledger.own,
            forward_cost: cost,
            upstream_verdicts: self.learned.upstream_verdicts,
            label_verdicts: self.learned.label_verdicts,
            explored: self.learned.explored,
            waiting: self.pending.len(),
        }
    }

    pub(crate) fn export(&self) -> Learned {
        self.learned.clone()
    }

    /// Starts from what another replica (or an earlier run) learned; refused when it was
    /// learned by another method or over another grid.
    pub(crate) fn seed(&mut self, learned: Learned) -> Result<(), String> {
        let points = self.grid.points;
        let fits = match (&self.learned.policy, &learned.policy) {
            (Policy::Hedge(_), Policy::Hedge(h)) => h.weights.len() == points,
            (Policy::Lcb(_), Policy::Lcb(l)) => l.seen.len() == points && l.right.len() == points,
            _ => false,
        };
        if !fits || learned.ledger.thresholds.len() != points {
            return Err(format!(
                "the state was learned by another method or grid; this service learns by {} over {points} thresholds",
                self.method_name()
            ));
        }
        self.learned = learned;
        Ok(())
    }

    fn method_name(&self) -> &'static str {
        match self.learned.policy {
            Policy::Hedge(_) => "hedge",
            Policy::Lcb(_) => "lcb",
        }
    }
}

fn not_waiting(id: &str) -> RequestError {
    RequestError::NotFound(format!(
        "no answer with id {id:?} is waiting for labels here (never served locally, already labelled, or dropped as the oldest)"
    ))
}

/// Labels must be one per item and name one of the answer's classes.
pub(crate) fn check_labels(
    labels: &[Option<usize>],
    items: usize,
    classes: usize,
) -> Result<(), RequestError> {
    if labels.len() != items {
        return Err(RequestError::Invalid(format!(
            "{} labels for an answer of {items} items; give one per item (null for unknown)",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().flatten().find(|&&l| l >= classes) {
        return Err(RequestError::Invalid(format!(
            "label {bad} is not a class of the answer (0..{classes})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> AdaptConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    const DEADLINE: Duration = Duration::from_millis(100);

    /// A stream where the local answer is right exactly when its confidence is ≥ 0.7: the
    /// best fixed τ is 0.7 whenever a wrong answer costs more than a forward.
    fn stream(learner: &mut ThresholdLearner, items: usize, rng: &mut fastrand::Rng) {
        for _ in 0..items {
            let score = rng.f64();
            let choices = learner.choose(&[score]);
            let upstream = 1;
            let local = if score >= 0.7 { 1 } else { 0 };
            learner.settle(&Settled {
                scores: &[score],
                choices: &choices,
                local: &[local],
                verdicts: &[Some(upstream)],
                classes: 2,
                latency: choices[0].forward.then_some(Duration::from_millis(10)),
                request_id: None,
            });
        }
    }

    #[test]
    fn hedge_finds_the_best_threshold_with_low_regret() {
        let mut learner = ThresholdLearner::new(
            &config("{method: hedge, alpha: 1, seed: 7, grid: 21, forgetting: 0}"),
            0.5,
            DEADLINE,
        );
        stream(&mut learner, 20_000, &mut fastrand::Rng::with_seed(1));
        let snapshot = learner.snapshot();
        assert!((snapshot.tau - 0.7).abs() <= 0.05, "{snapshot:?}");
        assert!((snapshot.forward_cost - 0.1).abs() < 1e-9, "{snapshot:?}");
        // The best τ pays 0.1 for each of the ~70 % items below it.
        let best = learner.learned.ledger.best().1;
        assert!(snapshot.regret < 0.1 * best, "{snapshot:?} against {best}");
        assert!(snapshot.explored > 0);
    }

    #[test]
    fn lcb_learns_where_local_answers_are_right() {
        let mut learner = ThresholdLearner::new(
            &config("{method: lcb, alpha: 1, seed: 7, grid: 20, forgetting: 0}"),
            0.2,
            DEADLINE,
        );
        stream(&mut learner, 5000, &mut fastrand::Rng::with_seed(2));
        let tau = learner.snapshot().tau;
        assert!((0.7..=0.8).contains(&tau), "{tau}");
    }

    #[test]
    fn labels_teach_about_items_served_locally() {
        let mut learner = ThresholdLearner::new(
            &config("{method: lcb, feedback: labels, exploration: 0, seed: 1, grid: 10}"),
            0.5,
            DEADLINE,
        );
        let choices = learner.choose(&[0.95, 0.1]);
        assert!(!choices[0].forward && choices[1].forward);
        learner.settle(&Settled {
            scores: &[0.95, 0.1],
            choices: &choices,
            local: &[3, 3],
            verdicts: &[None, Some(4)],
            classes: 10,
            latency: Some(Duration::from_millis(5)),
            request_id: Some("r1"),
        });
        assert_eq!(learner.snapshot().waiting, 1);
        let wrong_count = learner.label("r1", &[Some(3)]).unwrap_err();
        assert!(
            matches!(wrong_count, RequestError::Invalid(_)),
            "{wrong_count:?}"
        );
        let out_of_range = learner.label("r1", &[Some(10), None]).unwrap_err();
        assert!(
            out_of_range.to_string().contains("label 10"),
            "{out_of_range}"
        );
        assert_eq!(learner.label("r1", &[Some(3), Some(4)]), Ok(1));
        let snapshot = learner.snapshot();
        assert_eq!(
            (snapshot.label_verdicts, snapshot.upstream_verdicts),
            (1, 1)
        );
        assert!(matches!(
            learner.label("r1", &[Some(3), None]),
            Err(RequestError::NotFound(_))
        ));
    }

    #[test]
    fn upstream_feedback_refuses_labels() {
        let mut learner = ThresholdLearner::new(&config("{method: hedge}"), 0.5, DEADLINE);
        let err = learner.label("r1", &[Some(1)]).unwrap_err();
        assert!(err.to_string().contains("feedback: upstream"), "{err}");
    }

    #[test]
    fn state_is_exported_and_seeded_only_where_it_fits() {
        let mut learner =
            ThresholdLearner::new(&config("{method: hedge, seed: 3, grid: 21}"), 0.5, DEADLINE);
        stream(&mut learner, 300, &mut fastrand::Rng::with_seed(3));
        let state = learner.export();
        let mut fresh =
            ThresholdLearner::new(&config("{method: hedge, seed: 3, grid: 21}"), 0.9, DEADLINE);
        fresh.seed(state.clone()).unwrap();
        assert_eq!(fresh.snapshot(), learner.snapshot());
        let mut other = ThresholdLearner::new(&config("{method: lcb, grid: 21}"), 0.9, DEADLINE);
        let err = other.seed(state).unwrap_err();
        assert!(err.contains("lcb over 21"), "{err}");
    }
}
