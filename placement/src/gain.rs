//! The gain of a placement, its concave relaxation and a supergradient of it.
//!
//! For one request type with `r` requests in a period and candidates `1..=K` in increasing cost
//! `C_1 ≤ … ≤ C_K` (the last a repository model), candidate `k` can take `l_k = min(r, L_k)`
//! requests (`L_k` its capacity) when it is held. Requests go to the cheapest held candidate
//! with capacity left, so the first `k` candidates serve `z_k = min(r, Σ_{k' ≤ k} l_k' x_k')`
//! of them and the cost of the period is `Σ_k C_k (z_k − z_{k−1})`. Against serving all `r` at
//! the repository (cost `C_K r`) the gain is, summing by parts,
//!
//! `G(x) = Σ_{k < K} (C_{k+1} − C_k) · min(r, Σ_{k' ≤ k} l_k' x_k')`.
//!
//! The same expression with the fractional allocation `y` in place of `x` is the concave
//! relaxation: a positive sum of minima of linear functions. It equals `G` at integral points,
//! is at least `E[G(x)]` for any random `x` with marginals `y` (Jensen), and at most
//! `E[G(x)] / (1 − 1/e)` when `x` is drawn independently or with negative correlation, as
//! DepRound does.
//!
//! A supergradient, with respect to the slot of candidate `κ`, is
//! `l_κ · (C_{K*} − C_κ)⁺`, where `K*` is the first candidate at which the fractional capacity
//! `Σ_{k' ≤ k} l_k' y_k'` reaches `r`: the candidate that serves the last request in the
//! fractional sense. `C_{K*}` depends on the allocation of every node of the route; it is the one
//! number the route reports back to the nodes that requests of this type passed through
//! ([`marginal_cost`]), after which each node forms its own part ([`add_subgradient`]).

use crate::network::{Candidate, ServingOrder};

/// How much of a candidate is held: its slot's value in `y`, or 1 for a repository model.
fn held(c: &Candidate, y: &[Vec<f64>]) -> f64 {
    c.slot.map_or(1.0, |slot| y[c.node.0][slot])
}

/// The concave relaxation of the gain of `count` requests of one type, with the fractional
/// allocation `y` (per node, per slot). At a 0/1 allocation it is the gain itself.
pub fn relaxed_gain(order: &ServingOrder, count: f64, y: &[Vec<f64>]) -> f64 {
    let mut capacity = 0.0;
    let mut gain = 0.0;
    for pair in order.candidates.windows(2) {
        capacity += pair[0].capacity.min(count) * held(&pair[0], y);
        gain += (pair[1].cost - pair[0].cost) * capacity.min(count);
    }
    gain
}

/// `C_{K*}`: the cost of the first candidate at which the fractional capacity reaches `count`.
/// This is what the nodes of the route report back along the response.
pub fn marginal_cost(order: &ServingOrder, count: f64, y: &[Vec<f64>]) -> f64 {
    let mut capacity = 0.0;
    order
        .candidates
        .iter()
        .find(|c| {
            capacity += c.capacity.min(count) * held(c, y);
            capacity >= count
        })
        .or(order.candidates.last())
        .map_or(0.0, |c| c.cost)
}

/// Adds the supergradient of `count` requests of one type to `g` (per node, per slot), given
/// the `marginal_cost` the route reported. Each node's part reads only the candidates on that
/// node, so a node can form it alone from the requests that passed through it.
///
/// Where `Σ l y` equals `count` exactly the relaxation has a kink; taking `min(r, ·)`'s slope
/// there as 0 (the candidate at the kink is `K*` itself) keeps this a valid supergradient.
pub fn add_subgradient(order: &ServingOrder, count: f64, marginal_cost: f64, g: &mut [Vec<f64>]) {
    for c in order
        .candidates
        .iter()
        .take_while(|c| c.cost < marginal_cost)
    {
        if let Some(slot) = c.slot {
            g[c.node.0][slot] += c.capacity.min(count) * (marginal_cost - c.cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Network, NodeId, fixtures};

    /// Serves the requests one at a time, each at the cheapest held model of its route that has
    /// capacity left, and returns the cost saved against sending every one to the repository.
    fn brute_force_gain(order: &ServingOrder, count: u32, x: &[Vec<f64>]) -> f64 {
        let mut left: Vec<f64> = order.candidates.iter().map(|c| c.capacity).collect();
        let repository_cost = order.candidates.last().unwrap().cost;
        let mut saved = 0.0;
        for _ in 0..count {
            let (k, c) = order
                .candidates
                .iter()
                .enumerate()
                .filter(|(k, c)| held(c, x) == 1.0 && left[*k] >= 1.0)
                .min_by(|a, b| a.1.cost.total_cmp(&b.1.cost))
                .expect("the repository always has room");
            left[k] -= 1.0;
            saved += repository_cost - c.cost;
        }
        saved
    }

    #[test]
    fn the_gain_at_every_feasible_integral_placement_equals_serving_request_by_request() {
        let (network, requests) = fixtures::line();
        let orders: Vec<_> = requests
            .iter()
            .map(|r| network.serving_order(r).unwrap())
            .collect();
        let mut checked = 0;
        for x in fixtures::feasible_placements(&network) {
            for (order, counts) in orders.iter().zip([[0, 3, 7, 14], [1, 5, 9, 30]]) {
                for count in counts {
                    let expected = brute_force_gain(order, count, &x);
                    let gain = relaxed_gain(order, f64::from(count), &x);
                    assert!(
                        (gain - expected).abs() < 1e-9,
                        "{gain} != {expected} at {x:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} cases");
    }

    fn random_fractional(network: &Network, rng: &mut fastrand::Rng) -> Vec<Vec<f64>> {
        (0..network.node_count())
            .map(|v| network.slots(NodeId(v)).iter().map(|_| rng.f64()).collect())
            .collect()
    }

    #[test]
    fn the_relaxation_bounds_the_expected_gain_of_independent_rounding_from_both_sides() {
        // E[G(x)] ≤ G̃(y) by Jensen; E[G(x)] ≥ (1 − 1/e)·G̃(y) since every l_k ≤ r. The
        // expectation is exact: a sum over all 2^10 allocations weighted by their probability.
        let (network, requests) = fixtures::line();
        let mut rng = fastrand::Rng::with_seed(7);
        let allocations = fixtures::all_allocations(&network);
        for _ in 0..20 {
            let y = random_fractional(&network, &mut rng);
            for request in &requests {
                let order = network.serving_order(request).unwrap();
                let count = f64::from(rng.u32(1..20));
                let expected: f64 = allocations
                    .iter()
                    .map(|x| {
                        let p: f64 = x
                            .iter()
                            .zip(&y)
                            .flat_map(|(xs, ys)| xs.iter().zip(ys))
                            .map(|(x, y)| if *x == 1.0 { *y } else { 1.0 - y })
                            .product();
                        p * relaxed_gain(&order, count, x)
                    })
                    .sum();
                let relaxed = relaxed_gain(&order, count, &y);
                assert!(expected <= relaxed + 1e-9, "{expected} > {relaxed}");
                assert!(
                    expected >= (1.0 - (-1.0f64).exp()) * relaxed - 1e-9,
                    "{expected} < (1 − 1/e)·{relaxed}"
                );
            }
        }
    }

    #[test]
    fn the_relaxation_is_concave_along_random_segments() {
        let (network, requests) = fixtures::line();
        let order = network.serving_order(&requests[1]).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let (a, b) = (
                random_fractional(&network, &mut rng),
                random_fractional(&network, &mut rng),
            );
            let t = rng.f64();
            let mid: Vec<Vec<f64>> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .map(|(a, b)| t * a + (1.0 - t) * b)
                        .collect()
                })
                .collect();
            let count = 9.0;
            let chord =
                t * relaxed_gain(&order, count, &a) + (1.0 - t) * relaxed_gain(&order, count, &b);
            assert!(relaxed_gain(&order, count, &mid) >= chord - 1e-9);
        }
    }

    fn supergradient(order: &ServingOrder, count: f64, y: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut g: Vec<Vec<f64>> = y.iter().map(|y| vec![0.0; y.len()]).collect();
        add_subgradient(order, count, marginal_cost(order, count, y), &mut g);
        g
    }

    #[test]
    fn the_subgradient_matches_central_differences_where_the_relaxation_is_smooth() {
        let (network, requests) = fixtures::line();
        let mut rng = fastrand::Rng::with_seed(3);
        let h = 1e-6;
        let mut compared = 0;
        for _ in 0..50 {
            let y = random_fractional(&network, &mut rng);
            for request in &requests {
                let order = network.serving_order(request).unwrap();
                let count = f64::from(rng.u32(1..20));
                let g = supergradient(&order, count, &y);
                for v in 0..y.len() {
                    for slot in 0..y[v].len() {
                        let at = |delta: f64| {
                            let mut y = y.clone();
                            y[v][slot] += delta;
                            relaxed_gain(&order, count, &y)
                        };
                        let (up, down) = ((at(h) - at(0.0)) / h, (at(0.0) - at(-h)) / h);
                        if (up - down).abs() > 1e-4 * (1.0 + up.abs()) {
                            continue; // a kink within h: no derivative to compare with
                        }
                        let central = (at(h) - at(-h)) / (2.0 * h);
                        assert!(
                            (g[v][slot] - central).abs() < 1e-4 * (1.0 + central.abs()),
                            "slot {slot} of node {v}: {} vs {central}",
                            g[v][slot]
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 500, "only {compared} smooth points");
    }

    #[test]
    fn the_subgradient_is_a_supergradient_everywhere_including_at_kinks() {
        let (network, requests) = fixtures::line();
        let order = network.serving_order(&requests[0]).unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        // A kink: the cheapest candidate alone covers the count exactly.
        let first = &order.candidates[0];
        let mut kink = random_fractional(&network, &mut rng);
        kink[first.node.0][first.slot.unwrap()] = 0.6;
        let count = 0.6 * first.capacity;
        let mut points = vec![(kink, count)];
        for _ in 0..30 {
            points.push((
                random_fractional(&network, &mut rng),
                f64::from(rng.u32(1..20)),
            ));
        }
        for (y, count) in points {
            let g = supergradient(&order, count, &y);
            let at_y = relaxed_gain(&order, count, &y);
            for _ in 0..50 {
                let other = random_fractional(&network, &mut rng);
                let linear: f64 = g
                    .iter()
                    .flatten()
                    .zip(other.iter().flatten().zip(y.iter().flatten()))
                    .map(|(g, (o, y))| g * (o - y))
                    .sum();
                assert!(relaxed_gain(&order, count, &other) <= at_y + linear + 1e-9);
            }
        }
    }
}
