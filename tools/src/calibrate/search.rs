//! The exact search behind [`calibrate`](super::calibrate): cut-offs over each tier's ranked
//! confidences, the last non-last tier swept in one pass, and the τ that reproduces the chosen
//! cut-offs (see the parent module's documentation).

use std::cmp::{Ordering, Reverse};

use super::{CalibrateError, Calibration, Goal, TierScores, evaluate, validate_link_latency};

/// [`calibrate`] with a work budget of `budget` item-steps.
pub(super) fn calibrate_within(
    scores: &[TierScores],
    goal: Goal,
    link_latency_ms: Option<&[f64]>,
    budget: usize,
) -> Result<Calibration, CalibrateError> {
    if scores.len() < 2 {
        return Err(CalibrateError::TooFewTiers(scores.len()));
    }
    let items = scores[0].correct.len();
    if items == 0 {
        return Err(CalibrateError::EmptySample);
    }
    assert!(
        scores
            .iter()
            .all(|s| s.correct.len() == items && s.confidence.len() == items),
        "every tier scores every item"
    );
    if let Some(links) = link_latency_ms {
        validate_link_latency(links, scores.len())?;
    }
    let objective = Objective::new(goal, link_latency_ms.is_some(), items, scores)?;
    // Without latencies every choice costs 0 and the objectives ignore the cost.
    let links = link_latency_ms.map_or_else(|| vec![0.0; scores.len() - 1], <[f64]>::to_vec);
    let rankings: Vec<Ranking> = scores[..scores.len() - 1]
        .iter()
        .map(|s| Ranking::new(&s.confidence))
        .collect();
    let (candidates, exhaustive) = outer_candidates(&rankings, items, budget);

    let mut search = Search {
        scores,
        rankings: &rankings,
        candidates: &candidates,
        links: &links,
        objective,
        cutoffs: vec![0; rankings.len()],
        best: None,
        closest: None,
    };
    let all = vec![true; items];
    search.descend(0, &all, items, Prefix::default());

    let feasible = search.best.is_some();
    let (key, cutoffs) = search
        .best
        .or(search.closest)
        .expect("the search tries at least one combination");
    let taus = thresholds(scores, &rankings, &cutoffs);
    let outcome = evaluate(scores, &taus);
    debug_assert_eq!(
        (
            outcome.correct(),
            outcome.last_reached(),
            outcome.link_latency_total(&links)
        ),
        (key.correct, key.last, key.latency),
        "the chosen τs reproduce the searched cut-offs"
    );
    Ok(Calibration {
        goal,
        link_latency_ms: link_latency_ms.map(<[f64]>::to_vec),
        feasible,
        exhaustive,
        outcome,
    })
}

/// Counts that decide between two choices of thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Key {
    /// Items answered correctly.
    pub(super) correct: usize,
    /// Items reaching the last tier.
    pub(super) last: usize,
    /// Forwards overall: the sum of the items reaching tiers 2…k.
    pub(super) hops: usize,
    /// Link latency summed over the items (ms): Σ_i reached(tier i + 1) × L_i, by [`weigh`](super::weigh).
    pub(super) latency: f64,
}

/// A [`Goal`] in counts, with the orders it prefers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Objective {
    MinLast { need_correct: usize },
    MinLatency { need_correct: usize },
    MaxAccuracy { allowed_last: usize },
}

impl Objective {
    pub(super) fn new(
        goal: Goal,
        weigh_latency: bool,
        items: usize,
        scores: &[TierScores],
    ) -> Result<Self, CalibrateError> {
        // A tiny slack so that e.g. a ratio of 1.0 accepts exactly the last tier's accuracy
        // despite the rounding of ratio × count.
        const SLACK: f64 = 1e-9;
        goal.validate()?;
        match goal {
            Goal::MinAccuracyRatio(ratio) => {
                let last = scores.last().expect("at least two tiers");
                let alone = last.correct.iter().filter(|&&c| c).count();
                let need_correct = (ratio * alone as f64 - SLACK).ceil().max(0.0) as usize;
                Ok(if weigh_latency {
                    Objective::MinLatency { need_correct }
                } else {
                    Objective::MinLast { need_correct }
                })
            }
            Goal::MaxLastTier(fraction) => Ok(Objective::MaxAccuracy {
                allowed_last: (fraction * items as f64 + SLACK).floor() as usize,
            }),
        }
    }

    pub(super) fn feasible(self, key: Key) -> bool {
        match self {
            Objective::MinLast { need_correct } | Objective::MinLatency { need_correct } => {
                key.correct >= need_correct
            }
            Objective::MaxAccuracy { allowed_last } => key.last <= allowed_last,
        }
    }

    /// Whether `a` is preferred to `b` among feasible choices.
    pub(super) fn prefers(self, a: Key, b: Key) -> bool {
        let order = match self {
            Objective::MinLast { .. } => {
                (a.last, a.hops, Reverse(a.correct)).cmp(&(b.last, b.hops, Reverse(b.correct)))
            }
            Objective::MinLatency { .. } => a.latency.total_cmp(&b.latency).then_with(|| {
                (Reverse(a.correct), a.last, a.hops).cmp(&(Reverse(b.correct), b.last, b.hops))
            }),
            Objective::MaxAccuracy { .. } => {
                (Reverse(a.correct), a.last, a.hops).cmp(&(Reverse(b.correct), b.last, b.hops))
            }
        };
        order == Ordering::Less
    }

    /// Whether `a` is nearer the goal than `b` when nothing is feasible.
    fn nearer(self, a: Key, b: Key) -> bool {
        let order = match self {
            Objective::MinLast { .. } => {
                (Reverse(a.correct), a.last, a.hops).cmp(&(Reverse(b.correct), b.last, b.hops))
            }
            Objective::MinLatency { .. } => Reverse(a.correct)
                .cmp(&Reverse(b.correct))
                .then_with(|| a.latency.total_cmp(&b.latency))
                .then_with(|| (a.last, a.hops).cmp(&(b.last, b.hops))),
            Objective::MaxAccuracy { .. } => {
                (a.last, Reverse(a.correct), a.hops).cmp(&(b.last, Reverse(b.correct), b.hops))
            }
        };
        order == Ordering::Less
    }
}

/// What the tiers before the one being chosen add up to.
#[derive(Debug, Clone, Copy, Default)]
struct Prefix {
    /// Items they answer correctly.
    correct: usize,
    /// Forwards they make.
    hops: usize,
    /// Link latency of those forwards (ms, summed over the items).
    latency: f64,
}

/// A tier's items ordered by confidence.
struct Ranking {
    /// Per item, the index of its confidence among the distinct values, largest first.
    rank: Vec<u32>,
    /// Items by increasing rank.
    order: Vec<u32>,
    /// Per position of `order`, whether the next item has another rank (or there is none).
    group_ends: Vec<bool>,
    /// Number of distinct confidence values.
    distinct: u32,
}

impl Ranking {
    fn new(confidence: &[f64]) -> Self {
        let mut order: Vec<u32> = (0..confidence.len() as u32).collect();
        order.sort_by(|&a, &b| confidence[b as usize].total_cmp(&confidence[a as usize]));
        let mut rank = vec![0; confidence.len()];
        let mut distinct = 0;
        let mut previous = None;
        for &item in &order {
            let value = confidence[item as usize];
            if previous != Some(value) {
                distinct += 1;
                previous = Some(value);
            }
            rank[item as usize] = distinct - 1;
        }
        let group_ends = (0..order.len())
            .map(|p| {
                order
                    .get(p + 1)
                    .is_none_or(|&next| rank[next as usize] != rank[order[p] as usize])
            })
            .collect();
        Ranking {
            rank,
            order,
            group_ends,
            distinct,
        }
    }

    /// Whether cut-off `cutoff` answers `item` (it is among the `cutoff` most confident values).
    fn answers(&self, cutoff: u32, item: usize) -> bool {
        self.rank[item] < cutoff
    }
}

/// Cut-offs tried for each tier before the last non-last one (which is swept), and whether
/// they are all of them.
fn outer_candidates(rankings: &[Ranking], items: usize, budget: usize) -> (Vec<Vec<u32>>, bool) {
    let outer = &rankings[..rankings.len() - 1];
    let full: f64 = outer.iter().map(|r| f64::from(r.distinct) + 1.0).product();
    let affordable = (budget / items.max(1)).max(1) as f64;
    if full <= affordable {
        let all = outer.iter().map(|r| (0..=r.distinct).collect()).collect();
        return (all, true);
    }
    // Each earlier tier gets the same number of evenly spaced ranks, always including
    // "forward all" (0) and "answer all" (distinct).
    let per_tier = affordable.powf(1.0 / outer.len() as f64).floor().max(2.0) as u32;
    let thinned = outer
        .iter()
        .map(|r| {
            let mut cutoffs: Vec<u32> = (0..per_tier)
                .map(|j| {
                    (f64::from(j) * f64::from(r.distinct) / f64::from(per_tier - 1)).round() as u32
                })
                .collect();
            cutoffs.dedup();
            cutoffs
        })
        .collect();
    (thinned, false)
}

struct Search<'a> {
    scores: &'a [TierScores],
    rankings: &'a [Ranking],
    candidates: &'a [Vec<u32>],
    /// Latency of each link (ms; zeros when not given).
    links: &'a [f64],
    objective: Objective,
    /// Cut-offs of the combination being tried, one per non-last tier.
    cutoffs: Vec<u32>,
    best: Option<(Key, Vec<u32>)>,
    closest: Option<(Key, Vec<u32>)>,
}

impl Search<'_> {
    /// Tries every candidate cut-off of tier `tier` for the items `reaching` it (`reached` of
    /// them), given what the tiers before did (`before`).
    fn descend(&mut self, tier: usize, reaching: &[bool], reached: usize, before: Prefix) {
        if tier + 1 == self.rankings.len() {
            return self.sweep(tier, reaching, reached, before);
        }
        let ranking = &self.rankings[tier];
        let right = &self.scores[tier].correct;
        // Candidates ascend, so each item moves from "forwarded" to "answered" once: O(n) for
        // the whole loop rather than per candidate.
        let mut next = reaching.to_vec();
        let (mut forwarded, mut answered_right) = (reached, 0);
        let mut position = 0;
        for &cutoff in &self.candidates[tier] {
            while let Some(&item) = ranking.order.get(position) {
                let item = item as usize;
                if !ranking.answers(cutoff, item) {
                    break;
                }
                if next[item] {
                    next[item] = false;
                    forwarded -= 1;
                    answered_right += usize::from(right[item]);
                }
                position += 1;
            }
            self.cutoffs[tier] = cutoff;
            let prefix = Prefix {
                correct: before.correct + answered_right,
                hops: before.hops + forwarded,
                latency: before.latency + forwarded as f64 * self.links[tier],
            };
            self.descend(tier + 1, &next, forwarded, prefix);
        }
    }

    /// Tries every cut-off of the last non-last tier in one pass: lowering it one distinct
    /// value at a time moves that value's items from the last tier to this one.
    fn sweep(&mut self, tier: usize, reaching: &[bool], reached: usize, before: Prefix) {
        let ranking = &self.rankings[tier];
        let here = &self.scores[tier].correct;
        let last = &self.scores[tier + 1].correct;
        let mut answered = 0;
        let mut right_here = 0;
        let mut right_last = reaching.iter().zip(last).filter(|&(&r, &l)| r && l).count();
        let link = self.links[tier];
        let consider = |search: &mut Self, cutoff: u32, answered: usize, right: usize| {
            let to_last = reached - answered;
            search.cutoffs[tier] = cutoff;
            // The cost of this cut-off is computed afresh from the prefix, not accumulated
            // along the sweep, so that equal counts always give the same float.
            search.consider(Key {
                correct: before.correct + right,
                last: to_last,
                hops: before.hops + to_last,
                latency: before.latency + to_last as f64 * link,
            });
        };
        consider(self, 0, 0, right_last);
        for (&item, &group_ends) in ranking.order.iter().zip(&ranking.group_ends) {
            let item = item as usize;
            if reaching[item] {
                answered += 1;
                right_here += usize::from(here[item]);
                right_last -= usize::from(last[item]);
            }
            if group_ends {
                // Cut-off rank + 1 answers every rank up to this one.
                let cutoff = ranking.rank[item] + 1;
                consider(self, cutoff, answered, right_here + right_last);
            }
        }
    }

    fn consider(&mut self, key: Key) {
        let objective = self.objective;
        if objective.feasible(key) {
            let better = self
                .best
                .as_ref()
                .is_none_or(|(best, _)| objective.prefers(key, *best));
            if better {
                self.best = Some((key, self.cutoffs.clone()));
            }
        } else if self.best.is_none() {
            // Only needed while nothing is feasible, to say how near the goal one can get.
            let better = self
                .closest
                .as_ref()
                .is_none_or(|(closest, _)| objective.nearer(key, *closest));
            if better {
                self.closest = Some((key, self.cutoffs.clone()));
            }
        }
    }
}

/// The τ of each non-last tier that reproduces the cut-offs on the sample, chosen inside the
/// gap between the confidences the tier forwards and those it answers (among items reaching
/// it; items that never reach a tier do not constrain its τ).
fn thresholds(scores: &[TierScores], rankings: &[Ranking], cutoffs: &[u32]) -> Vec<Option<f64>> {
    let items = scores[0].confidence.len();
    let mut reaching = vec![true; items];
    rankings
        .iter()
        .zip(cutoffs)
        .zip(scores)
        .map(|((ranking, &cutoff), tier)| {
            let mut forwarded_max: Option<f64> = None;
            let mut answered_min: Option<f64> = None;
            for (item, reaches) in reaching.iter_mut().enumerate() {
                if !*reaches {
                    continue;
                }
                let value = tier.confidence[item];
                if ranking.answers(cutoff, item) {
                    answered_min = Some(answered_min.map_or(value, |m| m.min(value)));
                    *reaches = false;
                } else {
                    forwarded_max = Some(forwarded_max.map_or(value, |m| m.max(value)));
                }
            }
            match (forwarded_max, answered_min) {
                (None, _) => Some(0.0),
                (Some(lo), Some(hi)) => Some(tau_between(lo, hi)),
                (Some(lo), None) if lo < 1.0 => Some(tau_between(lo, 1.0)),
                (Some(_), None) => None,
            }
        })
        .collect()
}

/// A τ with `lo < τ ≤ hi`: the decimal with the fewest digits there, nearest the middle.
pub fn tau_between(lo: f64, hi: f64) -> f64 {
    debug_assert!(lo < hi, "{lo} < {hi}");
    for digits in 0..=17 {
        let scale = 10f64.powi(digits);
        let first = (lo * scale).floor() + 1.0;
        let last = (hi * scale).floor();
        if first > last {
            continue;
        }
        let middle = ((lo + hi) / 2.0 * scale).round().clamp(first, last);
        // Division can round across a bound; check in the same f64 comparisons the agent uses.
        for k in [middle, first, last] {
            let tau = k / scale;
            if lo < tau && tau <= hi {
                return tau;
            }
        }
    }
    hi
}
