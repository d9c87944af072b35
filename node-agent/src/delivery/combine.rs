//! Merging ensemble members' class probabilities, item by item. Pure: the delivery layer
//! decides whom to query; this decides what their answers add up to.

use idn_contract::confidence::{Confidence, argmax};
use idn_contract::config::Combine;

/// Running combination of the answers received so far for each item.
pub(super) struct Accumulator {
    combine: Combine,
    classes: usize,
    /// Weighted sums (mean, weighted mean), vote counts (vote) or the best answer
    /// (most confident), per item.
    sums: Vec<f64>,
    /// Total weight per item (most confident: the best confidence so far).
    weights: Vec<f64>,
    /// Members that answered each item, by index.
    members: Vec<Vec<usize>>,
}

impl Accumulator {
    pub(super) fn new(combine: Combine, items: usize, classes: usize) -> Self {
        Accumulator {
            combine,
            classes,
            sums: vec![0.0; items * classes],
            weights: vec![
                if combine == Combine::MostConfident {
                    -1.0
                } else {
                    0.0
                };
                items
            ],
            members: vec![Vec::new(); items],
        }
    }

    pub(super) fn classes(&self) -> usize {
        self.classes
    }

    /// Adds member `member`'s answer `probs` (rows × classes) for the items `rows`.
    pub(super) fn add(
        &mut self,
        member: usize,
        weight: f64,
        rows: &[usize],
        probs: &[f32],
        confidence: &Confidence,
    ) {
        let c = self.classes;
        for (row, answer) in rows.iter().zip(probs.chunks_exact(c)) {
            let sums = &mut self.sums[row * c..(row + 1) * c];
            match self.combine {
                Combine::Mean | Combine::WeightedMean => {
                    let w = if self.combine == Combine::Mean {
                        1.0
                    } else {
                        weight
                    };
                    sums.iter_mut()
                        .zip(answer)
                        .for_each(|(s, &p)| *s += w * f64::from(p));
                    self.weights[*row] += w;
                }
                Combine::Vote => {
                    sums[argmax(answer)] += weight;
                    self.weights[*row] += weight;
                }
                Combine::MostConfident => {
                    let score = confidence.score(answer);
                    if score > self.weights[*row] {
                        sums.iter_mut()
                            .zip(answer)
                            .for_each(|(s, &p)| *s = f64::from(p));
                        self.weights[*row] = score;
                    }
                }
            }
            self.members[*row].push(member);
        }
    }

    /// The members that answered item `row`, in the order they were added.
    pub(super) fn members(&self, row: usize) -> &[usize] {
        &self.members[row]
    }

    /// The combined probabilities of one item (uniform when nothing was added).
    pub(super) fn combined(&self, row: usize) -> Vec<f32> {
        let sums = &self.sums[row * self.classes..(row + 1) * self.classes];
        let total = match self.combine {
            Combine::MostConfident => 1.0,
            _ => self.weights[row],
        };
        if total <= 0.0 {
            return vec![1.0 / self.classes as f32; self.classes];
        }
        sums.iter().map(|&s| (s / total) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: [usize; 2] = [0, 1];

    fn run(combine: Combine, answers: &[(f64, [f32; 4])]) -> Vec<f32> {
        let mut acc = Accumulator::new(combine, 2, 2);
        for (i, (weight, probs)) in answers.iter().enumerate() {
            acc.add(i, *weight, &ROWS, probs, &Confidence::default());
        }
        (0..2).flat_map(|r| acc.combined(r)).collect()
    }

    #[test]
    fn mean_and_weighted_mean() {
        let answers = [(1.0, [0.9, 0.1, 0.2, 0.8]), (3.0, [0.5, 0.5, 0.6, 0.4])];
        assert_eq!(run(Combine::Mean, &answers), [0.7, 0.3, 0.4, 0.6]);
        let weighted = run(Combine::WeightedMean, &answers);
        let expected = [0.6, 0.4, 0.5, 0.5];
        assert!(
            weighted
                .iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() < 1e-6),
            "{weighted:?}"
        );
    }

    #[test]
    fn weighted_vote_gives_vote_shares() {
        let answers = [
            (1.0, [0.9, 0.1, 0.9, 0.1]),
            (1.0, [0.4, 0.6, 0.9, 0.1]),
            (2.0, [0.3, 0.7, 0.8, 0.2]),
        ];
        assert_eq!(run(Combine::Vote, &answers), [0.25, 0.75, 1.0, 0.0]);
    }

    #[test]
    fn most_confident_keeps_the_surest_answer() {
        let answers = [(1.0, [0.6, 0.4, 0.1, 0.9]), (1.0, [0.95, 0.05, 0.3, 0.7])];
        assert_eq!(
            run(Combine::MostConfident, &answers),
            [0.95, 0.05, 0.1, 0.9]
        );
    }

    #[test]
    fn members_are_recorded_per_item() {
        let mut acc = Accumulator::new(Combine::Mean, 3, 2);
        acc.add(0, 1.0, &[0, 1, 2], &[0.5; 6], &Confidence::default());
        acc.add(1, 1.0, &[2], &[0.5; 2], &Confidence::default());
        assert_eq!(acc.members, [vec![0], vec![0], vec![0, 1]]);
    }
}
