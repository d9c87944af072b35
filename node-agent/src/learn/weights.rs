//! Ensemble member weights learned online from labels (`ensemble.learn`): weighted majority
//! (Littlestone & Warmuth 1994) in its Hedge form on the 0-1 loss — each member that answered
//! an item wrongly has its weight multiplied by exp(−learningRate) — with a fixed share so a
//! member that lost its weight can regain it. A badly calibrated or off-distribution member
//! fades without anyone editing a manifest.

use idn_contract::config::WeightLearning;
use serde::{Deserialize, Serialize};

use super::pending::Pending;
use super::threshold::check_labels;
use crate::error::RequestError;

#[derive(Debug)]
pub(crate) struct WeightLearner {
    config: WeightLearning,
    learned: LearnedWeights,
    /// Each request's member answers, waiting for labels.
    pending: Pending<Votes>,
}

/// What is exported, seeded and kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LearnedWeights {
    /// Members by name, cheapest first: the order of `weights`.
    pub members: Vec<String>,
    /// Current weights, summing to the number of members.
    pub weights: Vec<f64>,
    /// Labelled items learned from.
    pub labels: u64,
    /// Member answers that were wrong, per member.
    pub mistakes: Vec<u64>,
}

/// The classes members answered for each item of one request: `(member, class)` pairs.
#[derive(Debug)]
pub(crate) struct Votes {
    pub classes: usize,
    pub items: Vec<Vec<(usize, usize)>>,
}

impl WeightLearner {
    /// Starts from the configured weights of `members` (name, weight), cheapest first.
    pub(crate) fn new(config: &WeightLearning, members: &[(String, f64)]) -> Self {
        let mut learned = LearnedWeights {
            members: members.iter().map(|(name, _)| name.clone()).collect(),
            weights: members.iter().map(|(_, w)| *w).collect(),
            labels: 0,
            mistakes: vec![0; members.len()],
        };
        normalise(&mut learned.weights);
        WeightLearner {
            config: config.clone(),
            learned,
            pending: Pending::new(config.pending),
        }
    }

    pub(crate) fn weights(&self) -> &[f64] {
        &self.learned.weights
    }

    /// Keeps what the members of request `id` answered until its labels arrive.
    pub(crate) fn settle(&mut self, id: &str, votes: Votes) {
        self.pending.insert(id, votes);
    }

    /// Learns from the labels of request `id`, one per item (none where unknown); returns how
    /// many items it learned from.
    pub(crate) fn label(
        &mut self,
        id: &str,
        labels: &[Option<usize>],
    ) -> Result<usize, RequestError> {
        let votes = self.pending.take(id).ok_or_else(|| {
            RequestError::NotFound(format!(
                "no answer with id {id:?} is waiting for labels here (already labelled, or dropped as the oldest)"
            ))
        })?;
        if let Err(e) = check_labels(labels, votes.items.len(), votes.classes) {
            self.pending.insert(id, votes);
            return Err(e);
        }
        let penalty = (-self.config.learning_rate).exp();
        let mut learned = 0;
        for (answers, label) in votes.items.iter().zip(labels) {
            let Some(label) = label else { continue };
            for &(member, class) in answers {
                if class != *label {
                    self.learned.weights[member] *= penalty;
                    self.learned.mistakes[member] += 1;
                }
            }
            share(&mut self.learned.weights, self.config.forgetting);
            normalise(&mut self.learned.weights);
            self.learned.labels += 1;
            learned += 1;
        }
        Ok(learned)
    }

    pub(crate) fn export(&self) -> LearnedWeights {
        self.learned.clone()
    }

    /// Starts from weights learned elsewhere; refused unless they are for the same members.
    pub(crate) fn seed(&mut self, learned: LearnedWeights) -> Result<(), String> {
        if learned.members != self.learned.members
            || learned.weights.len() != learned.members.len()
            || learned.mistakes.len() != learned.members.len()
        {
            return Err(format!(
                "the state is for members {:?}; this ensemble has {:?}",
                learned.members, self.learned.members
            ));
        }
        self.learned = learned;
        Ok(())
    }

    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }
}

fn share(weights: &mut [f64], fraction: f64) {
    let mean = weights.iter().sum::<f64>() / weights.len() as f64;
    weights
        .iter_mut()
        .for_each(|w| *w = (1.0 - fraction) * *w + fraction * mean);
}

/// Scales the weights to sum to their count (a weight of 1 is an average member); all-zero
/// weights become equal.
fn normalise(weights: &mut [f64]) {
    let total: f64 = weights.iter().sum();
    let n = weights.len() as f64;
    if total > 0.0 && total.is_finite() {
        weights.iter_mut().for_each(|w| *w *= n / total);
    } else {
        weights.iter_mut().for_each(|w| *w = 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner() -> WeightLearner {
        let config: WeightLearning =
            serde_norway::from_str("{learningRate: 0.5, forgetting: 0.0}").unwrap();
        WeightLearner::new(&config, &[("small".into(), 1.0), ("big".into(), 1.0)])
    }

    #[test]
    fn a_member_that_is_wrong_loses_weight() {
        let mut learner = learner();
        for i in 0..10 {
            let id = format!("r{i}");
            // small answers 3, big answers 5; the label is 5.
            learner.settle(
                &id,
                Votes {
                    classes: 10,
                    items: vec![vec![(0, 3), (1, 5)]],
                },
            );
            assert_eq!(learner.label(&id, &[Some(5)]), Ok(1));
        }
        let w = learner.weights();
        assert!(w[1] > 100.0 * w[0], "{w:?}");
        assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-9);
        assert_eq!(learner.export().mistakes, [10, 0]);
    }

    #[test]
    fn members_that_did_not_answer_an_item_keep_their_weight() {
        let mut learner = learner();
        learner.settle(
            "r",
            Votes {
                classes: 10,
                items: vec![vec![(0, 3)], vec![(0, 3), (1, 4)]],
            },
        );
        assert_eq!(learner.label("r", &[None, Some(3)]), Ok(1));
        let w = learner.weights();
        assert!(w[0] > w[1], "{w:?}");
        assert!(matches!(
            learner.label("r", &[None, Some(3)]),
            Err(RequestError::NotFound(_))
        ));
    }

    #[test]
    fn seeding_needs_the_same_members() {
        let mut learner = learner();
        let mut state = learner.export();
        state.weights = vec![0.5, 1.5];
        learner.seed(state.clone()).unwrap();
        assert_eq!(learner.weights(), [0.5, 1.5]);
        state.members = vec!["other".into(), "big".into()];
        assert!(learner.seed(state).unwrap_err().contains("\"other\""));
    }
}
