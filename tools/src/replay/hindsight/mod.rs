//! The best fixed threshold in hindsight for a two-tier cascade, and each replayed service's
//! cost against it: regret over the stream and, after a shift, how long the service takes to
//! come back to the new best.
//!
//! An item costs `forward` when the entry node forwards it and `alpha` when the answer it gets
//! is wrong: a fixed τ forwards the items whose local confidence is below τ, which are then
//! answered by the upstream model. [`items`] runs both models over the stream, [`report`]
//! presents the figures.

pub mod items;
pub mod report;

use std::fmt;
use std::ops::Range;

use idn_contract::provenance::Decision;

use super::Outcome;

/// What a forward and a wrong answer cost, per item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Cost of a wrong answer (or an error).
    pub alpha: f64,
    /// Cost of forwarding an item upstream.
    pub forward: f64,
}

/// What the two tiers make of one request, by class name.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The local model's largest probability.
    pub confidence: f64,
    pub local: String,
    pub upstream: String,
    pub label: String,
}

/// A fixed policy of the entry node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fixed {
    Never,
    /// Forward when the local confidence is below τ.
    Tau(f64),
    Always,
}

impl Fixed {
    /// Never forward, τ = 0.00, 0.01, …, 1.00, always forward: in this order, so that ties go
    /// to the policy that forwards least.
    pub fn grid() -> Vec<Fixed> {
        std::iter::once(Fixed::Never)
            .chain((0..=100).map(|t| Fixed::Tau(f64::from(t) / 100.0)))
            .chain(std::iter::once(Fixed::Always))
            .collect()
    }

    pub fn forwards(self, confidence: f64) -> bool {
        match self {
            Fixed::Never => false,
            Fixed::Tau(tau) => confidence < tau,
            Fixed::Always => true,
        }
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fixed::Never => f.write_str("never forward"),
            Fixed::Tau(tau) => write!(f, "{tau:.2}"),
            Fixed::Always => f.write_str("always forward"),
        }
    }
}

impl Item {
    /// Whether `fixed` forwards this item, and whether the answer it then gets is right.
    fn under(&self, fixed: Fixed) -> (bool, bool) {
        let forwarded = fixed.forwards(self.confidence);
        let answer = if forwarded {
            &self.upstream
        } else {
            &self.local
        };
        (forwarded, *answer == self.label)
    }

    /// The item's cost under `fixed`: `forward + alpha·[upstream wrong]` when forwarded,
    /// `alpha·[local wrong]` otherwise.
    pub fn cost(&self, fixed: Fixed, costs: Costs) -> f64 {
        let (forwarded, right) = self.under(fixed);
        cost(forwarded, right, costs)
    }
}

fn cost(forwarded: bool, right: bool, costs: Costs) -> f64 {
    let forward = if forwarded { costs.forward } else { 0.0 };
    let wrong = if right { 0.0 } else { costs.alpha };
    forward + wrong
}

/// A service's realized cost of one request: `forward` if the entry node forwarded it
/// (`idn_decision` `forwarded`), plus `alpha` if the answer was wrong or an error.
pub fn service_cost(outcome: &Outcome, costs: Costs) -> f64 {
    let forwarded = outcome.decision.as_deref() == Some(Decision::Forwarded.as_str());
    let right = outcome.answer.as_ref().is_ok_and(|a| *a == outcome.label);
    cost(forwarded, right, costs)
}

/// A fixed policy's figures over some requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub fixed: Fixed,
    pub cost_per_item: f64,
    pub accuracy: f64,
    pub forwarded: f64,
}

pub fn evaluate(items: &[Item], fixed: Fixed, costs: Costs) -> Evaluation {
    let n = items.len().max(1) as f64;
    let (mut cost_sum, mut right, mut forwarded) = (0.0, 0, 0);
    for item in items {
        let (f, r) = item.under(fixed);
        cost_sum += cost(f, r, costs);
        right += usize::from(r);
        forwarded += usize::from(f);
    }
    Evaluation {
        fixed,
        cost_per_item: cost_sum / n,
        accuracy: right as f64 / n,
        forwarded: forwarded as f64 / n,
    }
}

/// The cheapest policy of [`Fixed::grid`] on `items`, the first of the grid on a tie.
pub fn best(items: &[Item], costs: Costs) -> Evaluation {
    Fixed::grid()
        .into_iter()
        .map(|fixed| evaluate(items, fixed, costs))
        .reduce(|best, e| {
            if e.cost_per_item < best.cost_per_item {
                e
            } else {
                best
            }
        })
        .expect("the grid is not empty")
}

/// Which part of the stream a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    BeforeShift,
    AfterShift,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Whole => "whole stream",
            Part::BeforeShift => "before the shift",
            Part::AfterShift => "after the shift",
        })
    }
}

/// A part of the stream with its best fixed policy, and the two extremes for scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub part: Part,
    pub requests: Range<usize>,
    pub best: Evaluation,
    pub never: Evaluation,
    pub always: Evaluation,
}

impl Segment {
    fn of(part: Part, items: &[Item], requests: Range<usize>, costs: Costs) -> Segment {
        let items = &items[requests.clone()];
        Segment {
            part,
            best: best(items, costs),
            never: evaluate(items, Fixed::Never, costs),
            always: evaluate(items, Fixed::Always, costs),
            requests,
        }
    }
}

/// The whole stream, then the parts before and after the shift when there is one.
pub fn segments(items: &[Item], shift_at: Option<usize>, costs: Costs) -> Vec<Segment> {
    let mut segments = vec![Segment::of(Part::Whole, items, 0..items.len(), costs)];
    if let Some(at) = shift_at {
        segments.push(Segment::of(Part::BeforeShift, items, 0..at, costs));
        segments.push(Segment::of(Part::AfterShift, items, at..items.len(), costs));
    }
    segments
}

/// `service[..=n] − reference[..=n]` summed, for every request `n`.
pub fn regret(service: &[f64], reference: &[f64]) -> Vec<f64> {
    service
        .iter()
        .zip(reference)
        .scan(0.0, |total, (s, r)| {
            *total += s - r;
            Some(*total)
        })
        .collect()
}

/// A service's figures over requests `start..end`.
#[derive(Debug, Clone, PartialEq)]
pub struct CostWindow {
    pub start: usize,
    pub end: usize,
    /// The service's cost per item.
    pub cost: f64,
    /// The cost per item of the best fixed policy of each request's segment.
    pub best: f64,
    /// The cumulative regret at the window's last request.
    pub regret: f64,
}

/// Windows of `size` requests (the last may be shorter) over per-request series of equal
/// length.
pub fn cost_windows(service: &[f64], best: &[f64], regret: &[f64], size: usize) -> Vec<CostWindow> {
    let size = size.max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (0..service.len())
        .step_by(size)
        .map(|start| {
            let end = (start + size).min(service.len());
            CostWindow {
                start,
                end,
                cost: mean(&service[start..end]),
                best: mean(&best[start..end]),
                regret: regret[end - 1],
            }
        })
        .collect()
}

/// When a service came back to the best fixed policy after a shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Requests after the shift from which every window stays within the tolerance.
    After(usize),
    /// The last window after the shift is still outside it (or there is no such window).
    Not,
}

/// The first window starting at or after `at` from which every window's cost stays within
/// `tolerance` (relative) of its best; windows that start before `at` are not judged.
pub fn recovery(windows: &[CostWindow], at: usize, tolerance: f64) -> Recovery {
    // A hair of slack, so that a service equal to the best is within even after rounding.
    let within = |w: &CostWindow| w.cost <= w.best * (1.0 + tolerance) + 1e-12;
    let after: Vec<&CostWindow> = windows.iter().filter(|w| w.start >= at).collect();
    let outside = after.iter().rposition(|w| !within(w));
    let first = match outside {
        Some(last_outside) => after.get(last_outside + 1),
        None => after.first(),
    };
    match first {
        Some(w) => Recovery::After(w.start - at),
        None => Recovery::Not,
    }
}

/// The best fixed policies of a stream, and the per-request costs services are set against.
#[derive(Debug, Clone)]
pub struct Hindsight {
    pub costs: Costs,
    pub shift_at: Option<usize>,
    /// The whole stream, then before and after the shift.
    pub segments: Vec<Segment>,
    /// Per request, the cost of the whole stream's best policy.
    whole: Vec<f64>,
    /// Per request, the cost of its own segment's best policy.
    segment_best: Vec<f64>,
}

/// One service against the best fixed policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub windows: Vec<CostWindow>,
    /// Over the whole stream.
    pub cost_per_item: f64,
    /// Total regret against the whole stream's best policy.
    pub regret: f64,
    /// `regret` as a share of that policy's total cost; `None` when that cost is zero.
    pub regret_share: Option<f64>,
    /// Cost per item before the shift (over the whole stream when there is none).
    pub before_cost_per_item: f64,
    /// After a shift, when the service came back within the tolerance.
    pub recovery: Option<Recovery>,
}

impl Hindsight {
    pub fn new(items: &[Item], shift_at: Option<usize>, costs: Costs) -> Self {
        let segments = segments(items, shift_at, costs);
        let per_request = |fixed: Fixed, range: Range<usize>| {
            items[range].iter().map(move |item| item.cost(fixed, costs))
        };
        let whole = per_request(segments[0].best.fixed, 0..items.len()).collect();
        let segment_best = segments
            .iter()
            .skip(usize::from(segments.len() > 1))
            .flat_map(|s| per_request(s.best.fixed, s.requests.clone()))
            .collect();
        Hindsight {
            costs,
            shift_at,
            segments,
            whole,
            segment_best,
        }
    }

    /// The whole stream's best.
    pub fn whole(&self) -> &Segment {
        &self.segments[0]
    }

    /// The part before the shift, or the whole stream when there is none.
    pub fn before(&self) -> &Segment {
        self.segments.get(1).unwrap_or(&self.segments[0])
    }

    pub fn after(&self) -> Option<&Segment> {
        self.segments.get(2)
    }

    /// The service whose outcomes (one per request, in stream order) are `outcomes`, in
    /// windows of `size`.
    pub fn service(&self, outcomes: &[Outcome], size: usize, tolerance: f64) -> ServiceReport {
        let costs: Vec<f64> = outcomes
            .iter()
            .map(|o| service_cost(o, self.costs))
            .collect();
        let regret = regret(&costs, &self.whole);
        let windows = cost_windows(&costs, &self.segment_best, &regret, size);
        let total = regret.last().copied().unwrap_or(0.0);
        let best_total: f64 = self.whole.iter().sum();
        let before = &costs[self.before().requests.clone()];
        ServiceReport {
            cost_per_item: costs.iter().sum::<f64>() / costs.len().max(1) as f64,
            regret: total,
            regret_share: (best_total > 0.0).then(|| total / best_total),
            before_cost_per_item: before.iter().sum::<f64>() / before.len().max(1) as f64,
            recovery: self.shift_at.map(|at| recovery(&windows, at, tolerance)),
            windows,
        }
    }
}

/// Items and outcomes for the tests of this module and [`report`].
#[cfg(test)]
mod fixtures {
    use super::{Costs, Item, Outcome};
    use std::time::Duration;

    pub const COSTS: Costs = Costs {
        alpha: 1.0,
        forward: 0.25,
    };

    fn answer(right: bool) -> String {
        if right { "1" } else { "2" }.to_owned()
    }

    /// An item of label "1".
    pub fn item(confidence: f64, local_right: bool, upstream_right: bool) -> Item {
        Item {
            confidence,
            local: answer(local_right),
            upstream: answer(upstream_right),
            label: "1".into(),
        }
    }

    pub fn outcome(right: bool, decision: &str) -> Outcome {
        Outcome {
            label: "1".into(),
            answer: Ok(answer(right)),
            latency: Duration::from_millis(1),
            node: None,
            decision: Some(decision.into()),
            feedback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{COSTS, item, outcome};
    use super::*;

    #[test]
    fn a_fixed_tau_forwards_below_it_and_pays_for_the_answer_it_gets() {
        let unsure = item(0.4, false, true);
        assert_eq!(unsure.cost(Fixed::Tau(0.5), COSTS), 0.25);
        assert_eq!(
            unsure.cost(Fixed::Tau(0.4), COSTS),
            1.0,
            "0.4 is not below 0.4"
        );
        assert_eq!(unsure.cost(Fixed::Never, COSTS), 1.0);
        let both_wrong = item(0.9, false, false);
        assert_eq!(both_wrong.cost(Fixed::Always, COSTS), 1.25);
        assert!(!Fixed::Tau(1.0).forwards(1.0));
        assert!(Fixed::Always.forwards(1.0));
        let grid = Fixed::grid();
        assert_eq!(grid.len(), 103);
        assert_eq!(
            (grid[0], grid[1], grid[102]),
            (Fixed::Never, Fixed::Tau(0.0), Fixed::Always)
        );
        assert_eq!(grid[58].to_string(), "0.57");
    }

    #[test]
    fn the_best_tau_forwards_exactly_the_items_worth_forwarding() {
        // Wrong locally below 0.6 (and right upstream), right above it.
        let items: Vec<Item> = [0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
            .iter()
            .map(|&c| item(c, c > 0.6, true))
            .collect();
        let best = best(&items, COSTS);
        // Any τ in (0.5, 0.65] forwards the three wrong ones; the grid's first is 0.51.
        assert_eq!(best.fixed, Fixed::Tau(0.51));
        assert_eq!(best.cost_per_item, 0.75 / 6.0);
        assert_eq!((best.accuracy, best.forwarded), (1.0, 0.5));
        // Forwarding costing more than a mistake: never forward.
        let dear = Costs {
            alpha: 1.0,
            forward: 2.0,
        };
        assert_eq!(super::best(&items, dear).fixed, Fixed::Never);
    }

    #[test]
    fn segments_have_their_own_best() {
        // Before the shift the local model is always right; after it always wrong, which over
        // the whole stream makes forwarding everything (0.25 per item) cheaper than 4 mistakes.
        let items: Vec<Item> = (0..10).map(|i| item(0.7, i < 6, true)).collect();
        let segments = segments(&items, Some(6), COSTS);
        let parts: Vec<(Part, Range<usize>, Fixed)> = segments
            .iter()
            .map(|s| (s.part, s.requests.clone(), s.best.fixed))
            .collect();
        assert_eq!(
            parts,
            [
                (Part::Whole, 0..10, Fixed::Tau(0.71)),
                (Part::BeforeShift, 0..6, Fixed::Never),
                (Part::AfterShift, 6..10, Fixed::Tau(0.71)),
            ]
        );
        assert_eq!(segments[2].always.cost_per_item, 0.25);
        assert_eq!(segments[0].never.cost_per_item, 0.4);
    }

    #[test]
    fn regret_accumulates_the_difference() {
        assert_eq!(regret(&[1.0, 0.0, 0.5], &[0.5, 0.5, 0.5]), [0.5, 0.0, 0.0]);
    }

    fn windows(costs: &[f64], best: f64) -> Vec<CostWindow> {
        costs
            .iter()
            .enumerate()
            .map(|(i, &cost)| CostWindow {
                start: i * 10,
                end: i * 10 + 10,
                cost,
                best,
                regret: 0.0,
            })
            .collect()
    }

    #[test]
    fn recovery_is_the_first_window_after_which_the_cost_stays_close() {
        // Shift at 20: windows from 20 on are judged, the one at 40 dips in and out again.
        let series = windows(&[0.1, 0.1, 0.5, 0.3, 0.2, 0.4, 0.21, 0.19, 0.2], 0.2);
        assert_eq!(recovery(&series, 20, 0.1), Recovery::After(40));
        assert_eq!(recovery(&series, 20, 1.0), Recovery::After(10));
        let never = windows(&[0.1, 0.5, 0.3, 0.25], 0.2);
        assert_eq!(recovery(&never, 10, 0.1), Recovery::Not);
        assert_eq!(recovery(&windows(&[0.2], 0.2), 0, 0.0), Recovery::After(0));
        assert_eq!(recovery(&windows(&[0.2], 0.2), 5, 0.0), Recovery::Not);
    }

    #[test]
    fn a_service_is_set_against_the_best_fixed_tau() {
        // The local model is right before the shift at 4 and wrong after; upstream always right.
        let items: Vec<Item> = (0..8).map(|i| item(0.9, i < 4, true)).collect();
        let hindsight = Hindsight::new(&items, Some(4), COSTS);
        // Whole stream: always forwarding (8 × 0.25 = 2) beats never (4 mistakes = 4).
        assert_eq!(hindsight.whole().best.fixed, Fixed::Tau(0.91));
        assert_eq!(hindsight.before().best.fixed, Fixed::Never);
        // A service that serves locally until request 6, then forwards.
        let outcomes: Vec<Outcome> = (0..8)
            .map(|i| match i {
                0..4 => outcome(true, "served"),
                4..6 => outcome(false, "served"),
                _ => outcome(true, "forwarded"),
            })
            .collect();
        let report = hindsight.service(&outcomes, 2, 0.1);
        assert_eq!(report.cost_per_item, 2.5 / 8.0);
        // Its 2.5 against the whole stream's best 2.0.
        assert_eq!(report.regret, 0.5);
        assert_eq!(report.regret_share, Some(0.25));
        assert_eq!(report.before_cost_per_item, 0.0);
        let costs: Vec<(f64, f64, f64)> = report
            .windows
            .iter()
            .map(|w| (w.cost, w.best, w.regret))
            .collect();
        assert_eq!(
            costs,
            [
                (0.0, 0.0, -0.5),
                (0.0, 0.0, -1.0),
                (1.0, 0.25, 0.5),
                (0.25, 0.25, 0.5)
            ]
        );
        assert_eq!(report.recovery, Some(Recovery::After(2)));
        let mut error = outcome(true, "forwarded");
        error.answer = Err("502".into());
        assert_eq!(service_cost(&error, COSTS), 1.25);
    }
}
