//! A deterministic simulation of placement policies: the core of `idn simulate`.
//!
//! The network ([`topology`]) is a tree rooted at the repository, which holds every model of the
//! catalog permanently; requests enter at the nodes without children and travel toward the
//! root. Their tasks follow a trace ([`trace`]): Zipf popularity, a shift, bursts. Requests are
//! grouped into periods of `period_requests`; each period every policy is scored on the
//! placement it holds, then sees the period's requests and chooses the next placement, which it
//! may load only every `redraw_periods` periods.
//!
//! The whole trace is drawn first: the best static placement in hindsight ([`hindsight`]) needs
//! it, and it is every policy's regret comparator. The policies are in [`policy`].

mod hindsight;
mod policy;
mod topology;
mod trace;

pub use hindsight::{EXHAUSTIVE_LIMIT, Hindsight};
pub use policy::{GREEDY_DECAY, PolicyKind};
pub use topology::{GEANT_LINKS, Level, Topology};
pub use trace::{Bursts, Workload};

use crate::gain::relaxed_gain;
use crate::network::{
    Model, ModelId, Network, Node, NodeId, RequestType, Route, ServingOrder, TaskId,
};
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
    pub topology: Topology,
    pub alpha_ms: f64,
    pub requests: u64,
    /// Requests per update period.
    pub period_requests: u64,
    /// The loaded sets may change every this many update periods (1: every period).
    pub redraw_periods: u64,
    pub workload: Workload,
    /// INFIDA's step size, in MiB per millisecond-request.
    pub eta: f64,
    /// The online policies to run.
    pub policies: Vec<PolicyKind>,
    /// How to find the static optimum; `None`: exhaustively when there are at most
    /// [`EXHAUSTIVE_LIMIT`] placements, else by the lazy greedy.
    pub hindsight: Option<Hindsight>,
    pub seed: u64,
}

/// Frank–Wolfe steps of the static optimum's upper bound.
const UPPER_BOUND_ITERATIONS: usize = 30;

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
    pub requests: u64,
    /// What serving every request at the repository costs, per period.
    pub repository_cost: Vec<f64>,
    /// The best static placement in hindsight, held from the first period on.
    pub static_optimum: PolicyReport,
    /// How it was found.
    pub hindsight: Hindsight,
    /// At least every static placement's total gain: the optimum's itself when the search was
    /// exhaustive, a bound from the relaxation when it was the lazy greedy.
    pub optimum_upper_bound: f64,
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

/// The request types (entry × task, index `entry * tasks + task`) and their serving orders.
pub(crate) struct Types {
    pub orders: Vec<ServingOrder>,
    pub tasks: usize,
}

fn build(scenario: &Scenario) -> Result<(Network, Types)> {
    let layout = scenario.topology.layout();
    let mut nodes: Vec<Node> = layout
        .budget_bytes
        .iter()
        .map(|&budget_bytes| Node {
            budget_bytes,
            permanent: vec![],
        })
        .collect();
    nodes[0].permanent = (0..scenario.catalog.len()).map(ModelId).collect();
    let Some(tasks) = scenario.catalog.iter().map(|m| m.task.0 + 1).max() else {
        return Err(Error::Invalid("scenario.catalog: no model".into()));
    };
    let network = Network::new(scenario.catalog.clone(), nodes, scenario.alpha_ms)?;
    let entries = layout.entries();
    let mut orders = Vec::with_capacity(entries.len() * tasks);
    for &entry in &entries {
        let mut route = Route {
            nodes: vec![NodeId(entry)],
            hop_latency_ms: vec![],
        };
        let mut v = entry;
        while let Some(parent) = layout.parent[v] {
            route.hop_latency_ms.push(layout.uplink_latency_ms[v]);
            route.nodes.push(NodeId(parent));
            v = parent;
        }
        for task in 0..tasks {
            orders.push(network.serving_order(&RequestType {
                task: TaskId(task),
                route: route.clone(),
            })?);
        }
    }
    Ok((network, Types { orders, tasks }))
}

/// A period's requests: (request type, count) for every type that had any.
type Demands = Vec<(usize, f64)>;

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
    let (network, types) = build(scenario)?;
    let knapsacks: Vec<Knapsack> = (0..network.node_count())
        .map(|v| network.knapsack(NodeId(v)))
        .collect();
    let arrivals = trace::draw(
        &scenario.workload,
        types.orders.len() / types.tasks,
        types.tasks,
        (scenario.requests, scenario.period_requests),
        scenario.seed,
    );
    let mut counts = vec![0u32; types.orders.len()];
    let trace: Vec<Demands> = arrivals.iter().map(|a| demands(a, &mut counts)).collect();

    let problem = Problem::new(&types.orders, &knapsacks, &trace);
    let (hindsight, best) = best_static(&problem, scenario.hindsight);
    let gain_of = |x: &[Vec<f64>], demands: &Demands| -> f64 {
        demands
            .iter()
            .map(|&(t, c)| relaxed_gain(&types.orders[t], c, x))
            .sum()
    };
    let empty: Vec<Vec<f64>> = best.iter().map(|x| vec![0.0; x.len()]).collect();
    let static_optimum = PolicyReport {
        name: "static-optimum",
        gain: trace.iter().map(|d| gain_of(&best, d)).collect(),
        loads: new_models(&empty, &best),
    };
    let optimum_upper_bound = match hindsight {
        Hindsight::Exhaustive => static_optimum.gain.iter().sum(),
        Hindsight::LazyGreedy => problem.upper_bound(&best, UPPER_BOUND_ITERATIONS),
    };
    let repository_cost = trace
        .iter()
        .map(|d| {
            d.iter()
                .map(|&(t, c)| c * types.orders[t].candidates.last().map_or(0.0, |r| r.cost))
                .sum()
        })
        .collect();

    let mut runs: Vec<Run> = scenario
        .policies
        .iter()
        .map(|&kind| Run::new(kind, &types, &knapsacks, scenario.seed))
        .collect();
    let mut first_request = 0;
    for (p, (arrivals, demands)) in arrivals.iter().zip(&trace).enumerate() {
        let redraw = (p as u64 + 1).is_multiple_of(scenario.redraw_periods);
        for run in &mut runs {
            run.period(
                &types,
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
        requests: scenario.requests,
        repository_cost,
        static_optimum,
        hindsight,
        optimum_upper_bound,
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
            topology: Topology::Tree(vec![
                tier(fanout[0], 4096, 60.0),
                tier(fanout[1], 1024, 20.0),
                tier(fanout[2], 256, 5.0),
            ]),
            alpha_ms: 200.0,
            requests,
            period_requests: 2_000,
            redraw_periods: 1,
            workload: Workload {
                zipf_exponent: 1.0,
                shift_at,
                bursts: None,
            },
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
        let lower: f64 = report.static_optimum.gain.iter().sum();
        assert!(report.optimum_upper_bound >= lower);
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
        let Topology::Tree(tiers) = &mut s.topology else {
            unreachable!("the fixture is a tree of tiers");
        };
        for (tier, budget) in tiers.iter_mut().zip([250, 200, 50]) {
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
    fn every_topology_runs_with_a_bursty_trace_and_no_policy_beats_the_optimum_by_much() {
        let mib = |m: u64| m * MIB;
        let topologies = [
            Topology::RandomTree {
                nodes: 60,
                levels: vec![
                    Level {
                        budget_bytes: mib(1024),
                        uplink_latency_ms: 40.0,
                    },
                    Level {
                        budget_bytes: mib(256),
                        uplink_latency_ms: 5.0,
                    },
                ],
                seed: 3,
            },
            Topology::Research {
                pop_budget_bytes: mib(1024),
                access: vec![Tier {
                    fanout: 2,
                    budget_bytes: mib(256),
                    uplink_latency_ms: 5.0,
                }],
            },
        ];
        for topology in topologies {
            let mut s = scenario([1, 1, 1], 40_000, None);
            s.topology = topology;
            s.workload.bursts = Some(Bursts {
                mean_gap_requests: 5_000.0,
                decay_requests: 2_000.0,
                intensity: 1.0,
            });
            let report = run(&s).unwrap();
            assert_eq!(report, run(&s).unwrap());
            let best: f64 = report.static_optimum.gain.iter().sum();
            assert!(best > 0.0);
            for p in &report.policies {
                let regret = *report.regret(p).last().unwrap();
                assert!(
                    regret >= -0.05 * best,
                    "{:?} {}: {regret}",
                    s.topology,
                    p.name
                );
            }
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
        let best: f64 = report.static_optimum.gain.iter().sum();
        for p in [&report.static_optimum].into_iter().chain(&report.policies) {
            let total: f64 = p.gain.iter().sum();
            let cost: f64 = report.repository_cost.iter().sum();
            eprintln!(
                "{:>16}: gain {:.1} % of the repository's cost, {:.1} % of the static optimum's, {} loads",
                p.name,
                100.0 * total / cost,
                100.0 * total / best,
                p.loads
            );
        }
        eprintln!("{elapsed:?}");
        assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
    }
}
