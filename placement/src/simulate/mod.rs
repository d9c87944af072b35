//! A deterministic simulation of placement policies on a tree of tiers: the core of
//! `idn simulate`.
//!
//! The root is the repository and holds every model of the catalog permanently; each tier below
//! it gives every node of the tier above `fanout` children with one budget and one uplink
//! latency. Requests enter at the leaves (uniformly) and travel toward the root; their task
//! follows a Zipf law over tasks, whose ranks are reversed at `shift_at` requests. Requests are
//! grouped into periods of `period_requests`; each period every policy is scored on the
//! placement it holds, then sees the period's requests and chooses the next placement, which it
//! may load only every `redraw_periods` periods.
//!
//! The whole trace is drawn first: the best static placement in hindsight ([`hindsight`]) needs
//! it, and it is every policy's regret comparator. The policies are in [`policy`].

mod hindsight;
mod policy;

pub use hindsight::{EXHAUSTIVE_LIMIT, Hindsight};
pub use policy::{GREEDY_DECAY, PolicyKind};

use crate::gain::relaxed_gain;
use crate::network::{Model, ModelId, Network, Node, NodeId, RequestType, Route, ServingOrder};
use crate::{Error, Knapsack, Result};
use hindsight::{Problem, best_static};
use policy::{Run, new_models};

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
    /// Requests per update period.
    pub period_requests: u64,
    /// The loaded sets may change every this many update periods (1: every period).
    pub redraw_periods: u64,
    pub zipf_exponent: f64,
    /// The request index at which task popularity ranks are reversed.
    pub shift_at: Option<u64>,
    /// INFIDA's step size, in MiB per millisecond-request.
    pub eta: f64,
    /// The online policies to run.
    pub policies: Vec<PolicyKind>,
    /// How to find the static optimum; `None`: exhaustively when there are at most
    /// [`EXHAUSTIVE_LIMIT`] placements, else by the lazy greedy.
    pub hindsight: Option<Hindsight>,
    pub seed: u64,
}

/// What one policy did, period by period.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyReport {
    pub name: &'static str,
    /// Cost saved against the repository, per period, in millisecond-requests.
    pub gain: Vec<f64>,
    /// Models loaded: for a policy that redraws, present in a placement and absent from the
    /// one before; for the LRU, each load on a miss; for the static optimum, its placement.
    pub loads: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub nodes: usize,
    /// What serving every request at the repository costs, per period.
    pub repository_cost: Vec<f64>,
    /// The best static placement in hindsight, held from the first period on.
    pub static_optimum: PolicyReport,
    /// How it was found.
    pub hindsight: Hindsight,
    pub policies: Vec<PolicyReport>,
}

impl Report {
    /// The regret after each period: the static optimum's cumulative gain minus the policy's.
    pub fn regret(&self, policy: &PolicyReport) -> Vec<f64> {
        let mut total = 0.0;
        self.static_optimum
            .gain
            .iter()
            .zip(&policy.gain)
            .map(|(best, got)| {
                total += best - got;
                total
            })
            .collect()
    }
}

/// The request types of the tree (leaf × task, index `leaf * tasks + task`) and their orders.
pub(crate) struct Tree {
    pub orders: Vec<ServingOrder>,
    pub tasks: usize,
}

fn build(scenario: &Scenario) -> Result<(Network, Tree)> {
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
    Ok((network, Tree { orders, tasks }))
}

/// A period's requests: (request type, count) for every type that had any.
type Demands = Vec<(usize, f64)>;

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

/// The whole trace: per period, the request types in arrival order.
fn draw_trace(scenario: &Scenario, tree: &Tree) -> Vec<Vec<u32>> {
    let leaves = tree.orders.len() / tree.tasks;
    let cdf = zipf_cdf(tree.tasks, scenario.zipf_exponent);
    let mut rng = fastrand::Rng::with_seed(scenario.seed);
    let mut periods = vec![];
    let mut sent = 0;
    while sent < scenario.requests {
        let period = scenario.period_requests.min(scenario.requests - sent);
        let arrivals = (sent..sent + period)
            .map(|i| {
                let rank = zipf_rank(&cdf, rng.f64());
                let shifted = scenario.shift_at.is_some_and(|at| i >= at);
                let task = if shifted { tree.tasks - 1 - rank } else { rank };
                (rng.usize(0..leaves) * tree.tasks + task) as u32
            })
            .collect();
        periods.push(arrivals);
        sent += period;
    }
    periods
}

/// The counts per type of one period's arrivals, in type order.
fn demands(arrivals: &[u32], counts: &mut [u32]) -> Demands {
    for &t in arrivals {
        counts[t as usize] += 1;
    }
    let mut types: Vec<usize> = arrivals.iter().map(|&t| t as usize).collect();
    types.sort_unstable();
    types.dedup();
    types
        .into_iter()
        .map(|t| (t, f64::from(std::mem::take(&mut counts[t]))))
        .collect()
}

/// Runs the static optimum and every policy of the scenario over its trace.
pub fn run(scenario: &Scenario) -> Result<Report> {
    if scenario.period_requests == 0 || scenario.redraw_periods == 0 {
        return Err(Error::Invalid(format!(
            "scenario: period_requests ({}) and redraw_periods ({}) must be positive",
            scenario.period_requests, scenario.redraw_periods
        )));
    }
    let (network, tree) = build(scenario)?;
    let knapsacks: Vec<Knapsack> = (0..network.node_count())
        .map(|v| network.knapsack(NodeId(v)))
        .collect();
    let arrivals = draw_trace(scenario, &tree);
    let mut counts = vec![0u32; tree.orders.len()];
    let trace: Vec<Demands> = arrivals.iter().map(|a| demands(a, &mut counts)).collect();

    let (hindsight, best) = best_static(
        &Problem::new(&tree.orders, &knapsacks, &trace),
        scenario.hindsight,
    );
    let gain_of = |x: &[Vec<f64>], demands: &Demands| -> f64 {
        demands
            .iter()
            .map(|&(t, c)| relaxed_gain(&tree.orders[t], c, x))
            .sum()
    };
    let empty: Vec<Vec<f64>> = best.iter().map(|x| vec![0.0; x.len()]).collect();
    let static_optimum = PolicyReport {
        name: "static-optimum",
        gain: trace.iter().map(|d| gain_of(&best, d)).collect(),
        loads: new_models(&empty, &best),
    };
    let repository_cost = trace
        .iter()
        .map(|d| {
            d.iter()
                .map(|&(t, c)| c * tree.orders[t].candidates.last().map_or(0.0, |r| r.cost))
                .sum()
        })
        .collect();

    let mut runs: Vec<Run> = scenario
        .policies
        .iter()
        .map(|&kind| Run::new(kind, &tree, &knapsacks, scenario.seed))
        .collect();
    let mut first_request = 0;
    for (p, (arrivals, demands)) in arrivals.iter().zip(&trace).enumerate() {
        let redraw = (p as u64 + 1).is_multiple_of(scenario.redraw_periods);
        for run in &mut runs {
            run.period(
                &tree,
                &knapsacks,
                (arrivals, demands),
                first_request,
                scenario.eta,
                redraw,
            );
        }
        first_request += arrivals.len() as u64;
    }
    Ok(Report {
        nodes: network.node_count(),
        repository_cost,
        static_optimum,
        hindsight,
        policies: runs
            .into_iter()
            .map(|r| PolicyReport {
                name: r.kind.name(),
                gain: r.gain,
                loads: r.loads,
            })
            .collect(),
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
            redraw_periods: 1,
            zipf_exponent: 1.0,
            shift_at,
            eta: 1.0,
            policies: PolicyKind::ALL.to_vec(),
            hindsight: None,
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
        assert_eq!(report.hindsight, Hindsight::LazyGreedy);
        let names: Vec<&str> = report.policies.iter().map(|p| p.name).collect();
        assert_eq!(names, ["repository-only", "greedy", "lru", "infida"]);
        assert!(report.policies[0].gain.iter().all(|g| *g == 0.0));
        assert_eq!(report.policies[0].loads, 0);
        assert!(report.static_optimum.loads > 0);
        for p in report.policies.iter().chain([&report.static_optimum]) {
            assert_eq!(p.gain.len(), 10);
            // No gain exceeds serving every request at zero cost.
            assert!(
                p.gain
                    .iter()
                    .zip(&report.repository_cost)
                    .all(|(g, c)| *g <= *c)
            );
        }
        // Nothing is placed before the first period by the policies that redraw.
        assert_eq!(report.policies[1].gain[0], 0.0);
        assert_eq!(report.policies[3].gain[0], 0.0);
        // Regret is the running sum of the differences.
        let infida = &report.policies[3];
        let regret = report.regret(infida);
        let last: f64 =
            report.static_optimum.gain.iter().sum::<f64>() - infida.gain.iter().sum::<f64>();
        assert!((regret[9] - last).abs() <= 1e-9 * last.abs().max(1.0));
        assert_eq!(regret[0], report.static_optimum.gain[0]);
    }

    #[test]
    fn a_policy_runs_the_same_whichever_run_beside_it() {
        let mut s = scenario([2, 2, 2], 10_000, None);
        let all = run(&s).unwrap();
        s.policies = vec![PolicyKind::Infida];
        let alone = run(&s).unwrap();
        assert_eq!(alone.policies[0], all.policies[3]);
        assert_eq!(alone.static_optimum, all.static_optimum);
    }

    #[test]
    fn a_longer_redraw_period_loads_fewer_models() {
        let mut s = scenario([2, 3, 4], 40_000, None);
        s.period_requests = 500;
        let every = run(&s).unwrap();
        s.redraw_periods = 8;
        let eighth = run(&s).unwrap();
        // The greedy's placement drifts slowly (its scores decay over periods); INFIDA draws
        // afresh each time, so its loads fall with the number of draws.
        for (p, factor) in [(1, 1), (3, 4)] {
            let (a, b) = (every.policies[p].loads, eighth.policies[p].loads);
            assert!(
                b * factor < a,
                "{}: {b} loads redrawing every 8 periods, {a} every period",
                every.policies[p].name
            );
        }
        // The LRU loads on misses, whatever the redraw period.
        assert_eq!(every.policies[2], eighth.policies[2]);
    }

    #[test]
    fn a_zero_period_is_refused() {
        let mut s = scenario([1, 1, 1], 10, None);
        s.redraw_periods = 0;
        let err = run(&s).unwrap_err();
        assert!(err.to_string().contains("redraw_periods (0)"), "{err}");
    }

    #[test]
    fn on_a_small_tree_the_static_optimum_is_exact_and_no_policy_beats_it_by_much() {
        let mut s = scenario([1, 1, 1], 20_000, None);
        // Two tasks, small budgets: few enough placements for the exhaustive search.
        s.catalog.truncate(6);
        for (tier, budget) in s.tiers.iter_mut().zip([250, 200, 50]) {
            tier.budget_bytes = budget * MIB;
        }
        let report = run(&s).unwrap();
        assert_eq!(report.hindsight, Hindsight::Exhaustive);
        let best: f64 = report.static_optimum.gain.iter().sum();
        let mut greedy = s.clone();
        greedy.hindsight = Some(Hindsight::LazyGreedy);
        let lower: f64 = run(&greedy).unwrap().static_optimum.gain.iter().sum();
        assert!(lower <= best + 1e-9 && lower >= (1.0 - (-1.0f64).exp()) * best);
        for p in &report.policies {
            // A policy that changes its placement can beat a fixed one, but not by much on a
            // stationary trace.
            let regret = *report.regret(p).last().unwrap();
            assert!(regret >= -0.05 * best, "{}: {regret}", p.name);
        }
    }

    #[test]
    fn infida_nears_the_static_optimum_on_stationary_demand_and_passes_the_greedy_after_a_shift() {
        let stationary = run(&scenario([2, 3, 4], 200_000, None)).unwrap();
        let best = mean_after(&stationary.static_optimum, 50, 100);
        let infida = mean_after(&stationary.policies[3], 50, 100);
        assert!(
            infida >= 0.95 * best,
            "stationary: {infida} < 0.95 × {best}"
        );
        let shifted = run(&scenario([2, 3, 4], 200_000, Some(100_000))).unwrap();
        let after = |p: usize| mean_after(&shifted.policies[p], 60, 100);
        assert!(
            after(3) > after(1),
            "after the shift: infida {} ≤ greedy {}",
            after(3),
            after(1)
        );
        assert!(
            after(3) > after(2),
            "after the shift: infida {} ≤ lru {}",
            after(3),
            after(2)
        );
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
