//! DepRound (Gandhi, Khuller, Parthasarathy, Srinivasan, JACM 2006), weighted by model size.
//!
//! While two slots `i`, `j` are fractional, move mass between them along the direction that
//! keeps `s_i y_i + s_j y_j` fixed, by the largest step that keeps both in [0, 1], up or down
//! with the probabilities that keep `E[y_i]` and `E[y_j]` unchanged. Each move makes at least
//! one of them integral, so after at most n − 1 moves at most one slot is fractional; every
//! value is a martingale along the way, so the marginals are those of the input.
//!
//! The last fractional slot `f` is where the weighted case differs from the unweighted one: the
//! rest of the set is then integral and uses `Σ s y − s_f y_f`, so rounding `f` up may overflow
//! the budget by up to `s_f (1 − y_f)`. We round it up with probability `y_f` only when it fits,
//! else down: the budget is never exceeded, and the marginals are exact whenever the last slot
//! fits — always with equal sizes and a budget that is a whole number of them (Gandhi et al.'s
//! setting), or whenever the budget has one model's size of slack. Otherwise that slot's
//! marginal is biased down. Either way every set drawn uses at least `Σ s y − s_f` of the budget,
//! since the moves keep `Σ s y` fixed. To make the bias rare, the smallest model is paired last.

use crate::Knapsack;

/// Values this close to 0 or 1 count as integral: what floating point leaves of an exact move.
const INTEGRAL: f64 = 1e-12;

/// Draws the slots to load from the fractional allocation `y`; returned in increasing order.
pub fn dep_round(knapsack: &Knapsack, y: &[f64], rng: &mut fastrand::Rng) -> Vec<usize> {
    let sizes = &knapsack.sizes_mib;
    let mut x: Vec<f64> = y.iter().map(|y| snap(*y)).collect();
    let mut fractional: Vec<usize> = (0..x.len()).filter(|&m| is_fractional(x[m])).collect();
    // Pairs are taken from the back: the smallest model is paired last, so it is the likeliest
    // to be the one left fractional.
    fractional.sort_by(|&a, &b| sizes[a].total_cmp(&sizes[b]).then(a.cmp(&b)));
    while let [.., j, i] = fractional[..] {
        let ratio = sizes[i] / sizes[j];
        // Raising y_i by t lowers y_j by t·ratio, and the reverse.
        let up = (1.0 - x[i]).min(x[j] / ratio);
        let down = x[i].min((1.0 - x[j]) / ratio);
        let t = if rng.f64() * (up + down) < down {
            up
        } else {
            -down
        };
        x[i] = snap(x[i] + t);
        x[j] = snap(x[j] - t * ratio);
        fractional.retain(|&m| is_fractional(x[m]));
    }
    let mut set: Vec<usize> = (0..x.len()).filter(|&m| x[m] == 1.0).collect();
    if let [last] = fractional[..] {
        let fits = knapsack.used_mib(&set) + sizes[last] <= knapsack.budget_mib;
        if fits && rng.f64() < x[last] {
            set.push(last);
            set.sort_unstable();
        }
    }
    set
}

fn snap(y: f64) -> f64 {
    if y < INTEGRAL {
        0.0
    } else if y > 1.0 - INTEGRAL {
        1.0
    } else {
        y
    }
}

fn is_fractional(y: f64) -> bool {
    y > 0.0 && y < 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAWS: u32 = 100_000;

    /// Draws `DRAWS` sets, checks each against the budget, and returns the empirical marginals.
    fn marginals(k: &Knapsack, y: &[f64], seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut counts = vec![0u32; y.len()];
        for _ in 0..DRAWS {
            let set = dep_round(k, y, &mut rng);
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{set:?}");
            assert!(
                k.used_mib(&set) <= k.budget_mib,
                "{set:?} exceeds the budget"
            );
            for m in set {
                counts[m] += 1;
            }
        }
        counts
            .into_iter()
            .map(|c| f64::from(c) / f64::from(DRAWS))
            .collect()
    }

    /// Five standard deviations of an empirical frequency over `DRAWS` draws (at most 0.0079):
    /// a seeded run either always passes or always fails.
    fn tolerance(p: f64) -> f64 {
        5.0 * (p * (1.0 - p) / f64::from(DRAWS)).sqrt() + 1e-9
    }

    #[test]
    fn with_equal_sizes_the_marginals_are_the_fractional_state() {
        let k = Knapsack {
            sizes_mib: vec![1.0; 7],
            budget_mib: 3.0,
        };
        // Σ y = 2.65: two or three models each draw, never four.
        let y = [0.9, 0.05, 0.5, 0.3, 0.4, 0.2, 0.3];
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..1000 {
            let n = dep_round(&k, &y, &mut rng).len();
            assert!(n == 2 || n == 3, "{n} models drawn");
        }
        for (p, y) in marginals(&k, &y, 1).iter().zip(y) {
            assert!((p - y).abs() <= tolerance(y), "marginal {p} for {y}");
        }
    }

    #[test]
    fn with_unequal_sizes_and_a_model_of_slack_the_marginals_are_exact() {
        let k = Knapsack {
            sizes_mib: vec![4.0, 1.0, 2.0, 3.0, 2.5],
            budget_mib: 10.0,
        };
        // Σ s y = 5.95 ≤ 10 − 4.
        let y = [0.4, 0.75, 0.6, 0.35, 0.3];
        for (p, y) in marginals(&k, &y, 2).iter().zip(y) {
            assert!((p - y).abs() <= tolerance(y), "marginal {p} for {y}");
        }
    }

    #[test]
    fn with_a_tight_budget_it_never_overflows_and_loses_at_most_one_model() {
        let k = Knapsack {
            sizes_mib: vec![4.0, 1.0, 2.0, 3.0, 2.5],
            budget_mib: 6.0,
        };
        let y = [0.5, 0.8, 0.6, 0.3, 0.28]; // Σ s y = 5.9
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..10_000 {
            let used = k.used_mib(&dep_round(&k, &y, &mut rng));
            assert!((5.9 - 4.0 - 1e-9..=6.0).contains(&used), "uses {used}");
        }
        for (p, y) in marginals(&k, &y, 3).iter().zip(y) {
            assert!(*p <= y + tolerance(y), "marginal {p} above {y}");
        }
    }

    #[test]
    fn integral_input_is_returned_as_is() {
        let k = Knapsack {
            sizes_mib: vec![1.0, 2.0, 3.0],
            budget_mib: 4.0,
        };
        let mut rng = fastrand::Rng::with_seed(4);
        assert_eq!(dep_round(&k, &[1.0, 0.0, 1.0], &mut rng), vec![0, 2]);
        assert_eq!(dep_round(&k, &[0.0; 3], &mut rng), Vec::<usize>::new());
    }
}
