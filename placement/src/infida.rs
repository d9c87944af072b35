//! One INFIDA period at one node.
//!
//! The node holds a fractional allocation `y` in its budget set. At the end of a period it has
//! a supergradient `g` of the relaxed gain (from [`crate::gain`]); it then
//! 1. takes a mirror-ascent step in the dual space of `Φ(y) = Σ s_m y_m ln y_m`:
//!    `∇Φ(z) = ∇Φ(y) + η g`, that is `z_m = y_m · exp(η g_m / s_m)`;
//! 2. projects `z` back onto the budget set ([`Knapsack::project`]);
//! 3. draws the set of models it loads for the next period with DepRound
//!    ([`crate::rounding::dep_round`]), whose marginals are the new `y`.
//!
//! Sizes are in MiB, so `η` is in MiB per unit of gain (milliseconds of cost saved, summed over
//! requests).

use crate::Knapsack;
use crate::rounding::dep_round;

/// A dual step of more than e^MAX_EXPONENT is cut there so `z` stays finite: such a step pins
/// the slot at 1 after the projection unless several slots take one at once.
const MAX_EXPONENT: f64 = 300.0;

/// A node's fractional allocation, one value per slot.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeState {
    y: Vec<f64>,
}

impl NodeState {
    /// The minimiser of `Φ` over the budget set, where INFIDA starts: every slot at
    /// `min(1/e, b / Σ s)` (stationarity of `Φ` makes all slots equal; `1/e` is `Φ`'s own
    /// minimum).
    pub fn initial(knapsack: &Knapsack) -> Self {
        let total: f64 = knapsack.sizes_mib.iter().sum();
        let level = (-1.0f64).exp().min(knapsack.budget_mib / total);
        Self {
            y: vec![level; knapsack.sizes_mib.len()],
        }
    }

    pub fn allocation(&self) -> &[f64] {
        &self.y
    }

    /// The period's update from the observed supergradient `g`, and the set of slots to load
    /// next, drawn from the new state: [`Self::step`] then [`Self::draw`].
    pub fn period(
        &self,
        knapsack: &Knapsack,
        g: &[f64],
        eta: f64,
        rng: &mut fastrand::Rng,
    ) -> (Self, Vec<usize>) {
        let next = self.step(knapsack, g, eta);
        let set = next.draw(knapsack, rng);
        (next, set)
    }

    /// Mirror ascent along `g` and the projection back onto the budget set. A node whose loaded
    /// set may change less often than it updates takes several steps between draws.
    pub fn step(&self, knapsack: &Knapsack, g: &[f64], eta: f64) -> Self {
        let z: Vec<f64> = self
            .y
            .iter()
            .zip(g)
            .zip(&knapsack.sizes_mib)
            .map(|((y, g), s)| y * (eta * g / s).min(MAX_EXPONENT).exp())
            .collect();
        Self {
            y: knapsack.project(&z),
        }
    }

    /// The set of slots to load, drawn with DepRound from this state.
    pub fn draw(&self, knapsack: &Knapsack, rng: &mut fastrand::Rng) -> Vec<usize> {
        dep_round(knapsack, &self.y, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gain::{add_subgradient, marginal_cost, relaxed_gain};
    use crate::network::{NodeId, fixtures};

    #[test]
    fn the_initial_state_minimises_the_mirror_map_and_a_zero_step_keeps_it() {
        let roomy = Knapsack {
            sizes_mib: vec![1.0, 2.0],
            budget_mib: 10.0,
        };
        let tight = Knapsack {
            sizes_mib: vec![1.0, 2.0, 3.0],
            budget_mib: 1.5,
        };
        assert_eq!(NodeState::initial(&roomy).y, vec![(-1.0f64).exp(); 2]);
        assert_eq!(NodeState::initial(&tight).y, vec![0.25; 3]);
        let mut rng = fastrand::Rng::with_seed(1);
        for k in [roomy, tight] {
            let start = NodeState::initial(&k);
            let (next, set) = start.period(&k, &vec![0.0; k.sizes_mib.len()], 0.5, &mut rng);
            assert_eq!(next, start);
            assert!(k.used_mib(&set) <= k.budget_mib);
        }
    }

    #[test]
    fn a_step_favours_gain_per_mib_and_stays_in_the_budget_set() {
        let k = Knapsack {
            sizes_mib: vec![1.0, 2.0, 2.0],
            budget_mib: 2.0,
        };
        let mut rng = fastrand::Rng::with_seed(2);
        // Equal gain on slots 0 and 1: slot 0 is half the size, so it gains twice as fast.
        let (next, set) = NodeState::initial(&k).period(&k, &[1.0, 1.0, 0.0], 1.0, &mut rng);
        let y = next.allocation();
        assert!(y[0] > y[1] && y[1] > y[2], "{y:?}");
        let used: f64 = y.iter().zip(&k.sizes_mib).map(|(y, s)| y * s).sum();
        assert!(used <= k.budget_mib + 1e-12);
        assert!(k.used_mib(&set) <= k.budget_mib);
    }

    #[test]
    fn an_overwhelming_gain_stays_finite_and_pins_its_slot() {
        let k = Knapsack {
            sizes_mib: vec![1.0, 1.0],
            budget_mib: 1.0,
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let (next, set) = NodeState::initial(&k).period(&k, &[1e9, 0.0], 1.0, &mut rng);
        assert_eq!(next.allocation()[0], 1.0);
        assert!(next.allocation()[1] < 1e-100);
        assert_eq!(set, vec![0]);
    }

    #[test]
    fn sets_drawn_by_dep_round_gain_between_one_minus_one_over_e_and_one_times_the_relaxation() {
        // The guarantee's rounding step: E[G(x)] ≥ (1 − 1/e)·G̃(y) for x drawn by DepRound from
        // a y in the budget sets (negative correlation), and E[G(x)] ≤ G̃(y) since G̃ is concave,
        // increasing and E[x] ≤ y. Estimated over 20,000 draws per state.
        let (network, requests) = fixtures::line();
        let orders: Vec<_> = requests
            .iter()
            .map(|r| network.serving_order(r).unwrap())
            .collect();
        let knapsacks: Vec<Knapsack> = (0..network.node_count())
            .map(|v| network.knapsack(NodeId(v)))
            .collect();
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..5 {
            let y: Vec<Vec<f64>> = knapsacks
                .iter()
                .map(|k| {
                    let z: Vec<f64> = k.sizes_mib.iter().map(|_| 2.0 * rng.f64()).collect();
                    k.project(&z)
                })
                .collect();
            let counts = [f64::from(rng.u32(1..20)), f64::from(rng.u32(1..20))];
            let gain = |x: &[Vec<f64>]| -> f64 {
                orders
                    .iter()
                    .zip(counts)
                    .map(|(o, r)| relaxed_gain(o, r, x))
                    .sum()
            };
            let draws = 20_000;
            let mut total = 0.0;
            for _ in 0..draws {
                let x: Vec<Vec<f64>> = knapsacks
                    .iter()
                    .zip(&y)
                    .map(|(k, y)| {
                        let mut x = vec![0.0; y.len()];
                        for slot in dep_round(k, y, &mut rng) {
                            x[slot] = 1.0;
                        }
                        x
                    })
                    .collect();
                total += gain(&x);
            }
            let (mean, relaxed) = (total / f64::from(draws), gain(&y));
            assert!(mean <= relaxed * 1.01, "{mean} > {relaxed}");
            assert!(
                mean >= (1.0 - (-1.0f64).exp()) * relaxed,
                "{mean} ≪ {relaxed}"
            );
        }
    }

    #[test]
    fn on_stationary_demand_the_nodes_reach_the_best_static_placement() {
        let (network, requests) = fixtures::line();
        let demands: Vec<_> = requests
            .iter()
            .zip([12.0, 4.0])
            .map(|(r, count)| (network.serving_order(r).unwrap(), count))
            .collect();
        let knapsacks: Vec<Knapsack> = (0..network.node_count())
            .map(|v| network.knapsack(NodeId(v)))
            .collect();
        let mut states: Vec<NodeState> = knapsacks.iter().map(NodeState::initial).collect();
        let mut rng = fastrand::Rng::with_seed(4);
        let periods = 1000;
        let mut drawn_gain = 0.0;
        for t in 0..periods {
            let y: Vec<Vec<f64>> = states.iter().map(|s| s.y.clone()).collect();
            let mut g: Vec<Vec<f64>> = y.iter().map(|y| vec![0.0; y.len()]).collect();
            for (order, count) in &demands {
                add_subgradient(order, *count, marginal_cost(order, *count, &y), &mut g);
            }
            let mut x: Vec<Vec<f64>> = y.iter().map(|y| vec![0.0; y.len()]).collect();
            for (v, state) in states.iter_mut().enumerate() {
                let (next, set) = state.period(&knapsacks[v], &g[v], 0.02, &mut rng);
                *state = next;
                for slot in set {
                    x[v][slot] = 1.0;
                }
            }
            if t >= periods / 2 {
                drawn_gain += demands
                    .iter()
                    .map(|(o, r)| relaxed_gain(o, *r, &x))
                    .sum::<f64>();
            }
        }
        let best = fixtures::feasible_placements(&network)
            .iter()
            .map(|x| {
                demands
                    .iter()
                    .map(|(o, r)| relaxed_gain(o, *r, x))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let average = drawn_gain / f64::from(periods / 2);
        assert!(best > 0.0);
        assert!(average >= 0.95 * best, "{average} < 0.95 × {best}");
    }
}
