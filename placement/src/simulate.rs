//! A deterministic simulation of placement policies on a tree of tiers: the core `idn simulate`
//! is meant to call.
//!
//! The root is the repository and holds every model of the catalog permanently; each tier below
//! it gives every node of the tier above `fanout` children with one budget and one uplink
//! latency. Requests enter at the leaves (uniformly) and travel toward the root; their task
//! follows a Zipf law over tasks, whose ranks are reversed at `shift_at` requests. Requests are
//! grouped into periods of `period_requests`; each period every policy is scored on the
//! placement it holds, then sees the period's requests and chooses the next placement.
//!
//! Policies: repository-only (the reference every gain is measured against, so its gain is 0),
//! a local greedy, and INFIDA. The greedy is **our baseline**, not the paper's: each node ranks
//! its models by the cost they would have saved on the requests that actually reached it
//! (those not served below it), averaged over periods with decay [`GREEDY_DECAY`], per MiB, and
//! fills its budget in that order. It uses what a node can see, like INFIDA, but coordinates
//! with no other node.

use crate::gain::{add_subgradient, marginal_cost, relaxed_gain};
use crate::infida::NodeState;
use crate::network::{Model, ModelId, Network, Node, NodeId, RequestType, Route, ServingOrder};
use crate::{Error, Knapsack, Result};

/// Weight of the past in the greedy's per-model scores.
pub const GREEDY_DECAY: f64 = 0.8;

/// One tier of the tree below the root.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    /// Children of each node of the tier above.
    pub fanout: usize,
    pub budget_bytes: u64,
    /// Latency from a node of this tier to its parent.
    pub uplink_latency_ms: f64,
}

/// Everything a run depends on; the same scenario gives the same report.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub catalog: Vec<Model>,
    /// From the root's children down to the leaves.
    pub tiers: Vec<Tier>,
    pub alpha_ms: f64,
    pub requests: u64,
    pub period_requests: u64,
    pub zipf_exponent: f64,
    /// The request index at which task popularity ranks are reversed.
    pub shift_at: Option<u64>,
    /// INFIDA's step size, in MiB per millisecond-request.
    pub eta: f64,
    pub seed: u64,
}

/// What one policy did, period by period.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyReport {
    pub name: &'static str,
    /// Cost saved against the repository, per period, in millisecond-requests.
    pub gain: Vec<f64>,
    /// Models loaded (present in a period's placement and absent from the one before).
    pub loads: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub nodes: usize,
    /// What serving every request at the repository costs, per period.
    pub repository_cost: Vec<f64>,
    pub policies: Vec<PolicyReport>,
}

/// The tree, its request types (leaf × task, index `leaf * tasks + task`) and their orders.
struct Tree {
    network: Network,
    orders: Vec<ServingOrder>,
    tasks: usize,
}

fn build(scenario: &Scenario) -> Result<Tree> {
    let everything: Vec<ModelId> = (0..scenario.catalog.len()).map(ModelId).collect();
    let mut nodes = vec![Node {
        budget_bytes: 0,
        permanent: everything,
    }];
    // Per node, the route from it to the root.
    let mut routes = vec![Route {
        nodes: vec![NodeId(0)],
        hop_latency_ms: vec![],
    }];
    let mut tier_nodes = vec![0];
    for tier in &scenario.tiers {
        let mut next = Vec::with_capacity(tier_nodes.len() * tier.fanout);
        for &parent in &tier_nodes {
            for _ in 0..tier.fanout {
                let v = nodes.len();
                nodes.push(Node {
                    budget_bytes: tier.budget_bytes,
                    permanent: vec![],
                });
                let up: &Route = &routes[parent];
                let mut route = Route {
                    nodes: vec![NodeId(v)],
                    hop_latency_ms: vec![tier.uplink_latency_ms],
                };
                route.nodes.extend(&up.nodes);
                route.hop_latency_ms.extend(&up.hop_latency_ms);
                routes.push(route);
                next.push(v);
            }
        }
        tier_nodes = next;
    }
    let Some(tasks) = scenario.catalog.iter().map(|m| m.task.0 + 1).max() else {
        return Err(Error::Invalid("scenario.catalog: no model".into()));
    };
    let network = Network::new(scenario.catalog.clone(), nodes, scenario.alpha_ms)?;
    let mut orders = Vec::with_capacity(tier_nodes.len() * tasks);
    for &leaf in &tier_nodes {
        for task in 0..tasks {
            orders.push(network.serving_order(&RequestType {
                task: crate::network::TaskId(task),
                route: routes[leaf].clone(),
            })?);
        }
    }
    Ok(Tree {
        network,
        orders,
        tasks,
    })
}

/// A period's requests: (request type, count) for every type that had any.
type Demands = Vec<(usize, f64)>;

enum Policy {
    RepositoryOnly,
    Greedy { scores: Vec<Vec<f64>> },
    Infida { states: Vec<NodeState> },
}

struct Run {
    policy: Policy,
    /// The placement held this period, 0/1 per node and slot.
    x: Vec<Vec<f64>>,
    report: PolicyReport,
}

impl Run {
    fn new(name: &'static str, policy: Policy, empty: &[Vec<f64>]) -> Self {
        Self {
            policy,
            x: empty.to_vec(),
            report: PolicyReport {
                name,
                gain: vec![],
                loads: 0,
            },
        }
    }

    fn next_placement(
        &mut self,
        tree: &Tree,
        knapsacks: &[Knapsack],
        demands: &Demands,
        rng: &mut fastrand::Rng,
        eta: f64,
    ) -> Vec<Vec<f64>> {
        let mut next: Vec<Vec<f64>> = self.x.iter().map(|x| vec![0.0; x.len()]).collect();
        match &mut self.policy {
            Policy::RepositoryOnly => {}
            Policy::Greedy { scores } => {
                for s in scores.iter_mut().flatten() {
                    *s *= GREEDY_DECAY;
                }
                for &(t, count) in demands {
                    add_reached_savings(&tree.orders[t], count, &self.x, scores);
                }
                for (v, k) in knapsacks.iter().enumerate() {
                    fill_by_score_per_mib(k, &scores[v], &mut next[v]);
                }
            }
            Policy::Infida { states } => {
                let y: Vec<Vec<f64>> = states.iter().map(|s| s.allocation().to_vec()).collect();
                let mut g: Vec<Vec<f64>> = y.iter().map(|y| vec![0.0; y.len()]).collect();
                for &(t, count) in demands {
                    let order = &tree.orders[t];
                    add_subgradient(order, count, marginal_cost(order, count, &y), &mut g);
                }
                for (v, state) in states.iter_mut().enumerate() {
                    let (updated, set) = state.period(&knapsacks[v], &g[v], eta, rng);
                    *state = updated;
                    for slot in set {
                        next[v][slot] = 1.0;
                    }
                }
            }
        }
        next
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

/// Task popularity: cumulative Zipf weights, to draw from with one uniform number.
fn zipf_cdf(tasks: usize, exponent: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=tasks).map(|r| (r as f64).powf(-exponent)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// The rank whose cumulative weight first reaches `u` (uniform in [0, 1)).
fn zipf_rank(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&p| p < u).min(cdf.len() - 1)
}

/// Runs every policy over the scenario's trace.
pub fn run(scenario: &Scenario) -> Result<Report> {
    let tree = build(scenario)?;
    let network = &tree.network;
    let knapsacks: Vec<Knapsack> = (0..network.node_count())
        .map(|v| network.knapsack(NodeId(v)))
        .collect();
    let empty: Vec<Vec<f64>> = knapsacks
        .iter()
        .map(|k| vec![0.0; k.sizes_mib.len()])
        .collect();
    let mut runs = vec![
        Run::new("repository-only", Policy::RepositoryOnly, &empty),
        Run::new(
            "greedy",
            Policy::Greedy {
                scores: empty.clone(),
            },
            &empty,
        ),
        Run::new(
            "infida",
            Policy::Infida {
                states: knapsacks.iter().map(NodeState::initial).collect(),
            },
            &empty,
        ),
    ];
    let leaves = tree.orders.len() / tree.tasks;
    let cdf = zipf_cdf(tree.tasks, scenario.zipf_exponent);
    let mut trace = fastrand::Rng::with_seed(scenario.seed);
    let mut rounding = fastrand::Rng::with_seed(scenario.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut counts = vec![0u32; tree.orders.len()];
    let mut repository_cost = vec![];
    let mut sent = 0;
    while sent < scenario.requests {
        let period = scenario.period_requests.min(scenario.requests - sent);
        for i in sent..sent + period {
            let rank = zipf_rank(&cdf, trace.f64());
            let shifted = scenario.shift_at.is_some_and(|at| i >= at);
            let task = if shifted { tree.tasks - 1 - rank } else { rank };
            counts[trace.usize(0..leaves) * tree.tasks + task] += 1;
        }
        sent += period;
        let demands: Demands = counts
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(t, c)| (t, f64::from(std::mem::take(c))))
            .collect();
        repository_cost.push(
            demands
                .iter()
                .map(|&(t, c)| c * tree.orders[t].candidates.last().map_or(0.0, |r| r.cost))
                .sum(),
        );
        for run in &mut runs {
            let gain = demands
                .iter()
                .map(|&(t, c)| relaxed_gain(&tree.orders[t], c, &run.x))
                .sum();
            run.report.gain.push(gain);
            let next = run.next_placement(&tree, &knapsacks, &demands, &mut rounding, scenario.eta);
            run.report.loads += next
                .iter()
                .flatten()
                .zip(run.x.iter().flatten())
                .filter(|(new, old)| **new == 1.0 && **old == 0.0)
                .count() as u64;
            run.x = next;
        }
    }
    Ok(Report {
        nodes: network.node_count(),
        repository_cost,
        policies: runs.into_iter().map(|r| r.report).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::TaskId;

    const MIB: u64 = 1 << 20;

    /// Ten tasks, three models each (small, medium, large), on a tree of `fanout` per tier.
    fn scenario(fanout: [usize; 3], requests: u64, shift_at: Option<u64>) -> Scenario {
        let mut catalog = vec![];
        for task in 0..10 {
            for (size, accuracy, latency, capacity) in [
                (50, 0.70, 2.0, 50),
                (200, 0.85, 8.0, 100),
                (800, 0.93, 25.0, 200),
            ] {
                catalog.push(Model {
                    task: TaskId(task),
                    size_bytes: size * MIB,
                    accuracy,
                    inference_latency_ms: latency,
                    capacity,
                });
            }
        }
        let tier = |fanout, budget, latency| Tier {
            fanout,
            budget_bytes: budget * MIB,
            uplink_latency_ms: latency,
        };
        Scenario {
            catalog,
            tiers: vec![
                tier(fanout[0], 4096, 60.0),
                tier(fanout[1], 1024, 20.0),
                tier(fanout[2], 256, 5.0),
            ],
            alpha_ms: 200.0,
            requests,
            period_requests: 2_000,
            zipf_exponent: 1.0,
            shift_at,
            eta: 1.0,
            seed: 42,
        }
    }

    fn mean_after(report: &PolicyReport, from: usize, to: usize) -> f64 {
        report.gain[from..to].iter().sum::<f64>() / (to - from) as f64
    }

    #[test]
    fn task_ranks_follow_the_zipf_law() {
        let cdf = zipf_cdf(4, 1.0);
        // Weights 1, 1/2, 1/3, 1/4 over 25/12.
        let expected = [12.0 / 25.0, 6.0 / 25.0, 4.0 / 25.0, 3.0 / 25.0];
        let mut rng = fastrand::Rng::with_seed(6);
        let mut counts = [0u32; 4];
        let draws = 100_000;
        for _ in 0..draws {
            counts[zipf_rank(&cdf, rng.f64())] += 1;
        }
        for (c, p) in counts.iter().zip(expected) {
            let freq = f64::from(*c) / f64::from(draws);
            assert!((freq - p).abs() < 5.0 * (p * (1.0 - p) / f64::from(draws)).sqrt());
        }
    }

    #[test]
    fn a_scenario_without_models_is_refused() {
        let mut s = scenario([1, 1, 1], 10, None);
        s.catalog.clear();
        let err = run(&s).unwrap_err();
        assert!(
            err.to_string().contains("scenario.catalog: no model"),
            "{err}"
        );
    }

    #[test]
    fn a_run_is_deterministic_and_its_report_adds_up() {
        let s = scenario([2, 3, 4], 20_000, Some(10_000));
        let report = run(&s).unwrap();
        assert_eq!(report, run(&s).unwrap());
        assert_eq!(report.nodes, 1 + 2 + 6 + 24);
        assert_eq!(report.repository_cost.len(), 10);
        let names: Vec<&str> = report.policies.iter().map(|p| p.name).collect();
        assert_eq!(names, ["repository-only", "greedy", "infida"]);
        assert!(report.policies[0].gain.iter().all(|g| *g == 0.0));
        assert_eq!(report.policies[0].loads, 0);
        for p in &report.policies[1..] {
            assert_eq!(p.gain.len(), 10);
            // Nothing is placed before the first period, and no gain exceeds serving every
            // request at zero cost.
            assert_eq!(p.gain[0], 0.0);
            assert!(
                p.gain
                    .iter()
                    .zip(&report.repository_cost)
                    .all(|(g, c)| g <= c)
            );
        }
    }

    #[test]
    fn infida_nears_the_greedy_on_stationary_demand_and_passes_it_after_a_shift() {
        let periods = |report: &Report, from: usize, to: usize| {
            let [_, greedy, infida] = &report.policies[..] else {
                panic!("three policies");
            };
            (mean_after(greedy, from, to), mean_after(infida, from, to))
        };
        let stationary = run(&scenario([2, 3, 4], 200_000, None)).unwrap();
        let (greedy, infida) = periods(&stationary, 50, 100);
        assert!(
            infida >= 0.95 * greedy,
            "stationary: {infida} < 0.95 × {greedy}"
        );
        let shifted = run(&scenario([2, 3, 4], 200_000, Some(100_000))).unwrap();
        let (greedy, infida) = periods(&shifted, 60, 100);
        assert!(infida > greedy, "after the shift: {infida} ≤ {greedy}");
    }

    /// The scale target of `idn simulate`: run with `cargo test --release -p idn-placement --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a release-mode timing run"]
    fn a_thousand_nodes_and_a_million_requests_in_under_a_minute() {
        let mut s = scenario([10, 10, 9], 1_000_000, Some(500_000));
        s.period_requests = 10_000;
        let started = std::time::Instant::now();
        let report = run(&s).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(report.nodes, 1011);
        for p in &report.policies {
            let total: f64 = p.gain.iter().sum();
            let cost: f64 = report.repository_cost.iter().sum();
            eprintln!(
                "{:>16}: gain {:.1} % of the repository's cost, {} loads",
                p.name,
                100.0 * total / cost,
                p.loads
            );
        }
        eprintln!("{elapsed:?}");
        assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
    }
}
