//! Merging ensemble members' class probabilities, item by item. Pure: the delivery layer
//! decides whom to query; this decides what their answers add up to.

use idn_contract::confidence::{Confidence, argmax};
use idn_contract::config::Combine;

use super::answer::renormalise;

/// Running combination of the answers received so far for each item. Answers arrive in the
/// service's classes; a member that knows only some of them says which (`known`).
pub(super) struct Accumulator {
    combine: Combine,
    classes: usize,
    /// Weighted sums (means), vote counts (vote) or the kept answer (most confident),
    /// items × classes.
    sums: Vec<f64>,
    /// Means: the weight of the members that knew each class, items × classes. Vote: the
    /// weight of the voters, per item. Most confident: the best confidence so far, per item.
    weights: Vec<f64>,
    /// Items a member answered knowing only some classes: their means are renormalised.
    partial: Vec<bool>,
    /// Members that answered each item, by index.
    members: Vec<Vec<usize>>,
}

impl Accumulator {
    pub(super) fn new(combine: Combine, items: usize, classes: usize) -> Self {
        let (weights, start) = match combine {
            Combine::Mean | Combine::WeightedMean => (items * classes, 0.0),
            Combine::Vote => (items, 0.0),
            Combine::MostConfident => (items, -1.0),
        };
        Accumulator {
            combine,
            classes,
            sums: vec![0.0; items * classes],
            weights: vec![start; weights],
            partial: vec![false; items],
            members: vec![Vec::new(); items],
        }
    }

    pub(super) fn classes(&self) -> usize {
        self.classes
    }

    /// Adds member `member`'s answer `probs` (rows × classes) for the items `rows`; `known`:
    /// the classes the member knows, when it does not know every one. A member adds only to
    /// the classes it knows: to their means, and its vote goes to the likeliest of them.
    pub(super) fn add(
        &mut self,
        member: usize,
        weight: f64,
        rows: &[usize],
        probs: &[f32],
        known: Option<&[bool]>,
        confidence: &Confidence,
    ) {
        let c = self.classes;
        let knows = |class: usize| known.is_none_or(|k| k[class]);
        for (&row, answer) in rows.iter().zip(probs.chunks_exact(c)) {
            let sums = &mut self.sums[row * c..(row + 1) * c];
            match self.combine {
                Combine::Mean | Combine::WeightedMean => {
                    let w = if self.combine == Combine::Mean {
                        1.0
                    } else {
                        weight
                    };
                    let weights = &mut self.weights[row * c..(row + 1) * c];
                    for class in (0..c).filter(|&k| knows(k)) {
                        sums[class] += w * f64::from(answer[class]);
                        weights[class] += w;
                    }
                    self.partial[row] |= known.is_some();
                }
                Combine::Vote => {
                    sums[vote(answer, known)] += weight;
                    self.weights[row] += weight;
                }
                Combine::MostConfident => {
                    let score = confidence.score(answer);
                    if score > self.weights[row] {
                        sums.iter_mut()
                            .zip(answer)
                            .for_each(|(s, &p)| *s = f64::from(p));
                        self.weights[row] = score;
                    }
                }
            }
            self.members[row].push(member);
        }
    }

    /// The members that answered item `row`, in the order they were added.
    pub(super) fn members(&self, row: usize) -> &[usize] {
        &self.members[row]
    }

    /// The combined probabilities of one item (uniform when nothing was added).
    pub(super) fn combined(&self, row: usize) -> Vec<f32> {
        let c = self.classes;
        let sums = &self.sums[row * c..(row + 1) * c];
        let uniform = || vec![1.0 / c as f32; c];
        match self.combine {
            Combine::Mean | Combine::WeightedMean => {
                let weights = &self.weights[row * c..(row + 1) * c];
                if weights.iter().all(|&w| w <= 0.0) {
                    return uniform();
                }
                // Each class is the mean over the members that know it.
                let mut combined: Vec<f32> = sums
                    .iter()
                    .zip(weights)
                    .map(|(&s, &w)| if w > 0.0 { (s / w) as f32 } else { 0.0 })
                    .collect();
                if self.partial[row] {
                    renormalise(&mut combined);
                }
                combined
            }
            Combine::Vote if self.weights[row] > 0.0 => sums
                .iter()
                .map(|&s| (s / self.weights[row]) as f32)
                .collect(),
            Combine::MostConfident if self.weights[row] >= 0.0 => {
                sums.iter().map(|&s| s as f32).collect()
            }
            Combine::Vote | Combine::MostConfident => uniform(),
        }
    }
}

/// The class a member votes for: its likeliest among those it knows.
fn vote(answer: &[f32], known: Option<&[bool]>) -> usize {
    let Some(known) = known else {
        return argmax(answer);
    };
    let masked: Vec<f32> = answer
        .iter()
        .zip(known)
        .map(|(&p, &k)| if k { p } else { f32::NEG_INFINITY })
        .collect();
    argmax(&masked)
}

#[cfg(test)]
mod tests {
    use super::super::script::close;
    use super::*;

    const ROWS: [usize; 2] = [0, 1];

    fn run(combine: Combine, answers: &[(f64, [f32; 4])]) -> Vec<f32> {
        let mut acc = Accumulator::new(combine, 2, 2);
        for (i, (weight, probs)) in answers.iter().enumerate() {
            acc.add(i, *weight, &ROWS, probs, None, &Confidence::default());
        }
        (0..2).flat_map(|r| acc.combined(r)).collect()
    }

    #[test]
    fn mean_and_weighted_mean() {
        let answers = [(1.0, [0.9, 0.1, 0.2, 0.8]), (3.0, [0.5, 0.5, 0.6, 0.4])];
        assert_eq!(run(Combine::Mean, &answers), [0.7, 0.3, 0.4, 0.6]);
        let weighted = run(Combine::WeightedMean, &answers);
        let expected = [0.6, 0.4, 0.5, 0.5];
        assert!(close(&weighted, &expected), "{weighted:?}");
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
        acc.add(0, 1.0, &[0, 1, 2], &[0.5; 6], None, &Confidence::default());
        acc.add(1, 1.0, &[2], &[0.5; 2], None, &Confidence::default());
        assert_eq!(acc.members, [vec![0], vec![0], vec![0, 1]]);
    }

    /// One item over three classes: a member that knows every class, then one that knows only
    /// classes 0 and 1 (its answer already in the service's columns, 0 for class 2).
    fn partial(combine: Combine, weights: [f64; 2]) -> Vec<f32> {
        let mut acc = Accumulator::new(combine, 1, 3);
        let confidence = Confidence::default();
        acc.add(0, weights[0], &[0], &[0.2, 0.2, 0.6], None, &confidence);
        let known = [true, true, false];
        acc.add(
            1,
            weights[1],
            &[0],
            &[0.9, 0.1, 0.0],
            Some(&known),
            &confidence,
        );
        acc.combined(0)
    }

    #[test]
    fn means_average_each_class_over_the_members_that_know_it_and_renormalise() {
        // Class means 0.55, 0.15, 0.6 (the second member does not know class 2); sum 1.3.
        let mean = partial(Combine::Mean, [1.0, 1.0]);
        assert!(
            close(&mean, &[0.55 / 1.3, 0.15 / 1.3, 0.6 / 1.3]),
            "{mean:?}"
        );
        // Weighted 1:3: class 0 (0.2 + 2.7) / 4, class 1 (0.2 + 0.3) / 4, class 2 alone 0.6.
        let weighted = partial(Combine::WeightedMean, [1.0, 3.0]);
        let raw = [0.725, 0.125, 0.6];
        let sum: f32 = raw.iter().sum();
        assert!(close(&weighted, &raw.map(|p| p / sum)), "{weighted:?}");
    }

    #[test]
    fn a_vote_goes_to_the_likeliest_class_the_member_knows() {
        let mut acc = Accumulator::new(Combine::Vote, 1, 3);
        let confidence = Confidence::default();
        acc.add(0, 1.0, &[0], &[0.2, 0.2, 0.6], None, &confidence);
        // All its mass on classes the service lacks: still a vote for one it knows.
        let known = [false, true, true];
        acc.add(1, 3.0, &[0], &[0.0, 0.0, 0.0], Some(&known), &confidence);
        assert_eq!(acc.combined(0), [0.0, 0.75, 0.25]);
        assert_eq!(partial(Combine::Vote, [1.0, 1.0]), [0.5, 0.0, 0.5]);
    }

    #[test]
    fn the_most_confident_member_wins_on_the_classes_it_knows() {
        // 0.9 beats 0.6: the partial member's answer is kept, 0 for the class it lacks.
        assert_eq!(partial(Combine::MostConfident, [1.0, 1.0]), [0.9, 0.1, 0.0]);
    }

    #[test]
    fn an_item_nobody_answered_is_uniform() {
        for combine in [Combine::Mean, Combine::Vote, Combine::MostConfident] {
            let acc = Accumulator::new(combine, 1, 4);
            assert_eq!(acc.combined(0), [0.25; 4], "{combine:?}");
        }
    }
}
