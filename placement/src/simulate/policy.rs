//! The online policies a run compares, each with the state it carries between periods.
//!
//! - Repository-only: nothing placed; the reference every gain is measured against (gain 0).
//! - Greedy (**our baseline, not the paper's**): each node ranks its models by the cost they
//!   would have saved on the requests that actually reached it (those not served below it),
//!   averaged over periods with decay [`GREEDY_DECAY`], per MiB, and fills its budget in that
//!   order. It uses what a node can see, like INFIDA, but coordinates with no other node.
//! - LRU, ModelMesh-like: a request that no placed model served (it went to the repository)
//!   makes one node of its route load the task's model that is cheapest at that node: the
//!   nearest node with room for it, else the node whose least recently used model is the oldest
//!   on the route, which evicts its models in least-recently-used order until the new one fits
//!   (size-weighted LRU: the cache is counted in bytes). A load is immediate for the requests
//!   after the one that caused it. Placements change request by request, so the redraw period
//!   does not apply to it.
//! - INFIDA: every node one mirror-ascent step per period, a DepRound draw every redraw period.

use super::{Demands, Types};
use crate::Knapsack;
use crate::gain::{add_subgradient, marginal_cost, relaxed_gain};
use crate::infida::NodeState;
use crate::network::ServingOrder;

/// Weight of the past in the greedy's per-model scores.
pub const GREEDY_DECAY: f64 = 0.8;

/// A policy a run can compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    RepositoryOnly,
    Greedy,
    Lru,
    Infida,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::RepositoryOnly,
        PolicyKind::Greedy,
        PolicyKind::Lru,
        PolicyKind::Infida,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::RepositoryOnly => "repository-only",
            PolicyKind::Greedy => "greedy",
            PolicyKind::Lru => "lru",
            PolicyKind::Infida => "infida",
        }
    }
}

enum State {
    RepositoryOnly,
    Greedy { scores: Vec<Vec<f64>> },
    Lru(Lru),
    Infida { states: Vec<NodeState> },
}

/// Per node, the models an LRU cache holds and, per slot, the requests of this period during
/// which it held a model it has since evicted; per request type and candidate, the requests
/// served this period (against its capacity).
struct Lru {
    held: Vec<Vec<Cached>>,
    evicted_time: Vec<Vec<f64>>,
    served: Vec<Vec<f64>>,
}

/// A model in a node's LRU cache, with the request indices at which it was loaded and last
/// used.
#[derive(Clone, Copy)]
struct Cached {
    slot: usize,
    loaded_at: u64,
    last_used: u64,
}

/// Where a request falls: its index, and the first index and length of its period.
#[derive(Clone, Copy)]
struct Clock {
    now: u64,
    period_start: u64,
    period_len: u64,
}

/// One policy through a run: its state, the placement it holds (0/1 per node and slot), its
/// own draws, and what it did so far.
pub(super) struct Run {
    pub kind: PolicyKind,
    state: State,
    x: Vec<Vec<f64>>,
    rng: fastrand::Rng,
    pub gain: Vec<f64>,
    pub loads: u64,
}

impl Run {
    pub fn new(kind: PolicyKind, types: &Types, knapsacks: &[Knapsack], seed: u64) -> Self {
        let empty: Vec<Vec<f64>> = knapsacks
            .iter()
            .map(|k| vec![0.0; k.sizes_mib.len()])
            .collect();
        let state = match kind {
            PolicyKind::RepositoryOnly => State::RepositoryOnly,
            PolicyKind::Greedy => State::Greedy {
                scores: empty.clone(),
            },
            PolicyKind::Lru => State::Lru(Lru {
                held: vec![vec![]; knapsacks.len()],
                evicted_time: empty.clone(),
                served: types
                    .orders
                    .iter()
                    .map(|o| vec![0.0; o.candidates.len()])
                    .collect(),
            }),
            PolicyKind::Infida => State::Infida {
                states: knapsacks.iter().map(NodeState::initial).collect(),
            },
        };
        Self {
            kind,
            state,
            x: empty,
            // Each policy draws from its own stream, so its run does not depend on which others
            // run beside it.
            rng: fastrand::Rng::with_seed(
                seed ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            gain: vec![],
            loads: 0,
        }
    }

    /// Serves one period's requests (`arrivals` in order, `demands` their counts per type),
    /// records the gain, and chooses the placement of the next period; `redraw` says whether
    /// the loaded set may change now. `first_request` numbers the period's first arrival.
    pub fn period(
        &mut self,
        types: &Types,
        knapsacks: &[Knapsack],
        (arrivals, demands): (&[u32], &Demands),
        first_request: u64,
        eta: f64,
        redraw: bool,
    ) {
        if let State::Lru(lru) = &mut self.state {
            let mut gain = 0.0;
            for (i, &t) in arrivals.iter().enumerate() {
                let t = t as usize;
                let clock = Clock {
                    now: first_request + i as u64,
                    period_start: first_request,
                    period_len: arrivals.len() as u64,
                };
                gain += lru.serve(
                    &types.orders[t],
                    t,
                    &mut self.x,
                    knapsacks,
                    clock,
                    &mut self.loads,
                );
            }
            for &(t, _) in demands {
                lru.served[t].fill(0.0);
            }
            lru.evicted_time.iter_mut().for_each(|v| v.fill(0.0));
            self.gain.push(gain);
            return;
        }
        self.gain.push(
            demands
                .iter()
                .map(|&(t, c)| relaxed_gain(&types.orders[t], c, &self.x))
                .sum(),
        );
        let mut next: Vec<Vec<f64>> = self.x.iter().map(|x| vec![0.0; x.len()]).collect();
        match &mut self.state {
            State::RepositoryOnly | State::Lru(_) => return,
            State::Greedy { scores } => {
                for s in scores.iter_mut().flatten() {
                    *s *= GREEDY_DECAY;
                }
                for &(t, count) in demands {
                    add_reached_savings(&types.orders[t], count, &self.x, scores);
                }
                if !redraw {
                    return;
                }
                for (v, k) in knapsacks.iter().enumerate() {
                    fill_by_score_per_mib(k, &scores[v], &mut next[v]);
                }
            }
            State::Infida { states } => {
                let y: Vec<Vec<f64>> = states.iter().map(|s| s.allocation().to_vec()).collect();
                let mut g: Vec<Vec<f64>> = y.iter().map(|y| vec![0.0; y.len()]).collect();
                for &(t, count) in demands {
                    let order = &types.orders[t];
                    add_subgradient(order, count, marginal_cost(order, count, &y), &mut g);
                }
                for (v, state) in states.iter_mut().enumerate() {
                    *state = state.step(&knapsacks[v], &g[v], eta);
                }
                if !redraw {
                    return;
                }
                for (v, state) in states.iter().enumerate() {
                    for slot in state.draw(&knapsacks[v], &mut self.rng) {
                        next[v][slot] = 1.0;
                    }
                }
            }
        }
        self.loads += new_models(&self.x, &next);
        self.x = next;
    }
}

/// Models present in `next` and absent from `x`.
pub(super) fn new_models(x: &[Vec<f64>], next: &[Vec<f64>]) -> u64 {
    next.iter()
        .flatten()
        .zip(x.iter().flatten())
        .filter(|(new, old)| **new == 1.0 && **old == 0.0)
        .count() as u64
}

impl Lru {
    /// Serves one request of type `t` at the cheapest held candidate with capacity left and
    /// returns the cost saved against the repository; a request the repository served makes
    /// one node of its route load a model (see the module's documentation).
    ///
    /// Capacity is a rate: by the `j`-th request of a period, a model held for `h` of those
    /// requests has served at most `capacity · h / period` requests of one type. A model held
    /// all along serves `min(r, capacity)` of a type that arrives evenly, as the other
    /// policies are scored; a cache that swaps models within a period serves no more than the
    /// time each was held allows.
    fn serve(
        &mut self,
        order: &ServingOrder,
        t: usize,
        x: &mut [Vec<f64>],
        knapsacks: &[Knapsack],
        clock: Clock,
        loads: &mut u64,
    ) -> f64 {
        let Some(repository) = order.candidates.last() else {
            return 0.0;
        };
        for (k, c) in order.candidates.iter().enumerate() {
            let Some(slot) = c.slot else {
                break;
            };
            if x[c.node.0][slot] == 0.0 {
                continue;
            }
            let Some(entry) = self.held[c.node.0].iter_mut().find(|e| e.slot == slot) else {
                continue;
            };
            let since = entry.loaded_at.max(clock.period_start);
            let held_for = self.evicted_time[c.node.0][slot] + (clock.now + 1 - since) as f64;
            if self.served[t][k] < c.capacity * held_for / clock.period_len as f64 {
                self.served[t][k] += 1.0;
                entry.last_used = clock.now;
                return repository.cost - c.cost;
            }
        }
        // A miss: per node of the route, its cheapest model of the task, if not held already.
        let mut best_at: Vec<Option<(usize, usize)>> = vec![None; repository.hop + 1];
        for c in &order.candidates {
            if let Some(slot) = c.slot
                && best_at[c.hop].is_none()
            {
                best_at[c.hop] = Some((c.node.0, slot));
            }
        }
        let eligible: Vec<(usize, usize)> = best_at
            .into_iter()
            .flatten()
            .filter(|&(v, slot)| x[v][slot] == 0.0)
            .collect();
        let used = |v: usize, held: &[Cached]| {
            held.iter()
                .map(|e| knapsacks[v].sizes_mib[e.slot])
                .sum::<f64>()
        };
        let fits = |&(v, slot): &(usize, usize)| {
            used(v, &self.held[v]) + knapsacks[v].sizes_mib[slot] <= knapsacks[v].budget_mib
        };
        let oldest =
            |&(v, _): &(usize, usize)| self.held[v].iter().map(|e| e.last_used).min().unwrap_or(0);
        let Some((v, slot)) = eligible
            .iter()
            .find(|e| fits(e))
            .or_else(|| eligible.iter().min_by_key(|e| oldest(e)))
            .copied()
        else {
            return 0.0;
        };
        let held = &mut self.held[v];
        held.sort_by_key(|e| e.last_used);
        while used(v, held) + knapsacks[v].sizes_mib[slot] > knapsacks[v].budget_mib {
            let evicted = held.remove(0);
            x[v][evicted.slot] = 0.0;
            let since = evicted.loaded_at.max(clock.period_start);
            self.evicted_time[v][evicted.slot] += (clock.now - since) as f64;
        }
        held.push(Cached {
            slot,
            loaded_at: clock.now,
            last_used: clock.now,
        });
        x[v][slot] = 1.0;
        *loads += 1;
        0.0
    }
}

/// Adds, for each model on the route, the cost it would have saved on the requests that reached
/// its node under placement `x` (at most its capacity of them).
fn add_reached_savings(order: &ServingOrder, count: f64, x: &[Vec<f64>], scores: &mut [Vec<f64>]) {
    let Some(repository) = order.candidates.last() else {
        return;
    };
    // Requests served at each hop under x, cheapest held candidate first.
    let hops = order
        .candidates
        .iter()
        .map(|c| c.hop + 1)
        .max()
        .unwrap_or(0);
    let mut served_at = vec![0.0; hops];
    let mut left = count;
    for c in &order.candidates {
        let held = c.slot.map_or(1.0, |slot| x[c.node.0][slot]);
        let served = left.min(c.capacity.min(count) * held);
        served_at[c.hop] += served;
        left -= served;
    }
    for c in &order.candidates {
        if let Some(slot) = c.slot {
            let reached: f64 = served_at[c.hop..].iter().sum();
            scores[c.node.0][slot] += reached.min(c.capacity) * (repository.cost - c.cost);
        }
    }
}

fn fill_by_score_per_mib(k: &Knapsack, scores: &[f64], x: &mut [f64]) {
    let mut by_value: Vec<usize> = (0..scores.len()).filter(|&m| scores[m] > 0.0).collect();
    by_value
        .sort_by(|&a, &b| (scores[b] / k.sizes_mib[b]).total_cmp(&(scores[a] / k.sizes_mib[a])));
    let mut used = 0.0;
    for m in by_value {
        if used + k.sizes_mib[m] <= k.budget_mib {
            used += k.sizes_mib[m];
            x[m] = 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NodeId, fixtures};

    /// The fixture's line (edge budget 2 MiB, regional 3 MiB; models of 1, 2, 3 MiB per task),
    /// ready for the LRU.
    fn line() -> (Types, Vec<Knapsack>) {
        let (network, requests) = fixtures::line();
        let knapsacks = (0..network.node_count())
            .map(|v| network.knapsack(NodeId(v)))
            .collect();
        let orders = requests
            .iter()
            .map(|r| network.serving_order(r).unwrap())
            .collect();
        (Types { orders, tasks: 2 }, knapsacks)
    }

    #[test]
    fn the_lru_loads_on_a_miss_then_serves_and_evicts_the_least_recently_used_by_size() {
        let (types, knapsacks) = line();
        let mut run = Run::new(PolicyKind::Lru, &types, &knapsacks, 1);
        let held = |run: &Run| -> Vec<Vec<usize>> {
            run.x
                .iter()
                .map(|x| (0..x.len()).filter(|&s| x[s] == 1.0).collect())
                .collect()
        };
        // Task 0 misses: the edge (nearest, with room) loads task 0's model that is cheapest
        // there (the medium one, slot 1: 5 + 100·0.15 = 20 < 2 + 30).
        run.period(&types, &knapsacks, (&[0], &vec![(0, 1.0)]), 0, 1.0, true);
        assert_eq!((run.gain[0], run.loads), (0.0, 1));
        assert_eq!(held(&run)[0], vec![1]);
        // Then task 0 is served at the edge (62 − 20 saved), and task 1 misses: the edge is full
        // (2 of 2 MiB), so the regional node loads task 1's model cheapest there, the large one
        // (slot 5: 5 + 12 + 100·0.05 = 22).
        run.period(
            &types,
            &knapsacks,
            (&[0, 1], &vec![(0, 1.0), (1, 1.0)]),
            1,
            1.0,
            true,
        );
        assert!((run.gain[1] - 42.0).abs() < 1e-9 && run.loads == 2);
        assert_eq!(held(&run), vec![vec![1], vec![5], vec![]]);
        // Nine requests of task 0: eight fill the edge model's capacity, the ninth misses. The
        // edge already holds its best model; the region's best for task 0 (its large model,
        // 3 MiB) needs the whole budget, so the task-1 model, the region's least recently used,
        // is evicted.
        run.period(&types, &knapsacks, (&[0; 9], &vec![(0, 9.0)]), 3, 1.0, true);
        assert!((run.gain[2] - 8.0 * 42.0).abs() < 1e-9 && run.loads == 3);
        assert_eq!(held(&run), vec![vec![1], vec![2], vec![]]);
        for (v, k) in knapsacks.iter().enumerate() {
            assert!(k.used_mib(&held(&run)[v]) <= k.budget_mib);
        }
    }

    #[test]
    fn infida_and_greedy_change_their_placement_only_when_they_may_redraw() {
        let (types, knapsacks) = line();
        for kind in [PolicyKind::Greedy, PolicyKind::Infida] {
            let mut run = Run::new(kind, &types, &knapsacks, 2);
            let demands = vec![(0, 20.0), (1, 5.0)];
            run.period(&types, &knapsacks, (&[], &demands), 0, 1.0, false);
            assert_eq!(run.loads, 0, "{kind:?}");
            assert!(run.x.iter().flatten().all(|x| *x == 0.0));
            run.period(&types, &knapsacks, (&[], &demands), 25, 1.0, true);
            assert!(run.loads > 0, "{kind:?}");
        }
    }
}
