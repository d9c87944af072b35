//! `idn simulate`: INFIDA against its baselines on a synthetic network and trace, with the same
//! pure placement code the nodes are meant to run (idn-placement's simulation core).
//!
//! This module turns flags into a [`Scenario`]; [`report`] turns the run into a table (markdown
//! and CSV) and plots.

mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use idn_placement::network::{Model, TaskId};
use idn_placement::simulate::{
    self, Bursts, Hindsight, Level, PolicyKind, Scenario, Tier, Topology, Workload,
};

const MIB: u64 = 1 << 20;

/// Arguments of `idn simulate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  idn simulate                                        # 1,011-node tree, 10^6 requests, stationary
  idn simulate --shift-at 500000 --out results/shift  # popularity reversed half-way
  idn simulate --topology geant --fanout 0,6,7 --burst-gap 20000 --burst-intensity 2")]
pub struct Args {
    /// The network: a tree of tiers (the paper's shape), a random tree, or a GEANT-like
    /// research network of 22 points of presence with access trees below each.
    #[arg(long, value_enum, default_value = "tree")]
    pub topology: TopologyKind,
    /// Tree: children per node of each tier, from the root's children down. GEANT: the first
    /// is ignored (the points of presence), the others hang access tiers below each.
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "10,10,9"
    )]
    pub fanout: Vec<usize>,
    /// Random tree: its nodes below the root.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Budget of a node of each tier (or depth), MiB, from the top down.
    #[arg(
        long,
        value_name = "MIB,...",
        value_delimiter = ',',
        default_value = "4096,1024,256"
    )]
    pub budgets_mib: Vec<u64>,
    /// Latency from a node of each tier (or depth) to its parent, ms, from the top down.
    #[arg(
        long,
        value_name = "MS,...",
        value_delimiter = ',',
        default_value = "60,20,5"
    )]
    pub latencies_ms: Vec<f64>,
    /// Tasks (services).
    #[arg(long, default_value_t = 10)]
    pub tasks: usize,
    /// Models per task, from small, fast and inaccurate to large, slow and accurate.
    #[arg(long, default_value_t = 3)]
    pub models_per_task: usize,
    /// Requests in the trace.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Update periods the trace is cut into.
    #[arg(long, default_value_t = 100)]
    pub periods: u64,
    /// The loaded sets may change every R update periods.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub redraw: u64,
    /// INFIDA's step size (MiB per millisecond-request of gain).
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    /// Milliseconds of latency one unit of inaccuracy is worth.
    #[arg(long, default_value_t = 200.0)]
    pub alpha_ms: f64,
    /// Exponent of the tasks' Zipf popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Reverse the tasks' popularity ranks from this request on.
    #[arg(long, value_name = "REQUEST")]
    pub shift_at: Option<u64>,
    /// Bursts (shot noise): mean requests between the starts of two bursts [default: no bursts]
    #[arg(long, value_name = "REQUESTS")]
    pub burst_gap: Option<f64>,
    /// Bursts: requests over which a burst's rate decays by e.
    #[arg(long, value_name = "REQUESTS", default_value_t = 5_000.0)]
    pub burst_decay: f64,
    /// Bursts: a burst's rate at its start, as a multiple of the base rate of all requests.
    #[arg(long, default_value_t = 1.0)]
    pub burst_intensity: f64,
    /// Policies to run beside the static optimum.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "repository-only,greedy,lru,infida"
    )]
    pub policies: Vec<PolicyArg>,
    /// How to find the best static placement in hindsight: exhaustively when small enough,
    /// else the lazy greedy (auto); or force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub hindsight: HindsightArg,
    /// Periods left out of the "after warm-up" column [default: a tenth of the periods]
    #[arg(long, value_name = "PERIODS")]
    pub warm_up: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write simulate.{md,csv} and gain.svg, regret.svg here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyKind {
    Tree,
    Random,
    Geant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    RepositoryOnly,
    Greedy,
    Lru,
    Infida,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HindsightArg {
    Auto,
    Exhaustive,
    Greedy,
}

impl Args {
    /// The scenario the flags describe; every flag that is out of range is named.
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut problems = vec![];
        if self.tasks == 0 || self.models_per_task == 0 {
            problems.push("--tasks and --models-per-task must be positive".to_owned());
        }
        if self.periods == 0 || self.periods > self.requests.max(1) {
            problems.push(format!(
                "--periods {}: must be between 1 and --requests ({})",
                self.periods, self.requests
            ));
        }
        if self.redraw == 0 {
            problems.push("--redraw 0: must be positive".to_owned());
        }
        if self.budgets_mib.len() != self.latencies_ms.len() {
            problems.push(format!(
                "--budgets-mib has {} tiers and --latencies-ms {}: give one of each per tier",
                self.budgets_mib.len(),
                self.latencies_ms.len()
            ));
        }
        let tiers_needed = match self.topology {
            TopologyKind::Tree | TopologyKind::Geant => self.fanout.len(),
            TopologyKind::Random => 1,
        };
        if self.budgets_mib.len() < tiers_needed {
            problems.push(format!(
                "--budgets-mib has {} tiers: --fanout needs {tiers_needed}",
                self.budgets_mib.len()
            ));
        }
        if !positive(self.eta) {
            problems.push(format!("--eta {}: must be positive", self.eta));
        }
        if self.burst_gap.is_some_and(|gap| !positive(gap)) || !positive(self.burst_decay) {
            problems.push("--burst-gap and --burst-decay must be positive".to_owned());
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n  "));
        }
        let levels: Vec<Level> = self
            .budgets_mib
            .iter()
            .zip(&self.latencies_ms)
            .map(|(&budget, &latency)| Level {
                budget_bytes: budget * MIB,
                uplink_latency_ms: latency,
            })
            .collect();
        let tiers: Vec<Tier> = self
            .fanout
            .iter()
            .zip(&levels)
            .map(|(&fanout, level)| Tier {
                fanout,
                budget_bytes: level.budget_bytes,
                uplink_latency_ms: level.uplink_latency_ms,
            })
            .collect();
        let topology = match self.topology {
            TopologyKind::Tree => Topology::Tree(tiers),
            TopologyKind::Random => Topology::RandomTree {
                nodes: self.nodes,
                levels,
                seed: self.seed,
            },
            TopologyKind::Geant => Topology::Research {
                pop_budget_bytes: levels[0].budget_bytes,
                access: tiers[1..].to_vec(),
            },
        };
        Ok(Scenario {
            catalog: catalog(self.tasks, self.models_per_task),
            topology,
            alpha_ms: self.alpha_ms,
            requests: self.requests,
            period_requests: self.requests.div_ceil(self.periods),
            redraw_periods: self.redraw,
            workload: Workload {
                zipf_exponent: self.zipf,
                shift_at: self.shift_at,
                bursts: self.burst_gap.map(|gap| Bursts {
                    mean_gap_requests: gap,
                    decay_requests: self.burst_decay,
                    intensity: self.burst_intensity,
                }),
            },
            eta: self.eta,
            policies: self
                .policies
                .iter()
                .map(|p| match p {
                    PolicyArg::RepositoryOnly => PolicyKind::RepositoryOnly,
                    PolicyArg::Greedy => PolicyKind::Greedy,
                    PolicyArg::Lru => PolicyKind::Lru,
                    PolicyArg::Infida => PolicyKind::Infida,
                })
                .collect(),
            hindsight: match self.hindsight {
                HindsightArg::Auto => None,
                HindsightArg::Exhaustive => Some(Hindsight::Exhaustive),
                HindsightArg::Greedy => Some(Hindsight::LazyGreedy),
            },
            seed: self.seed,
        })
    }
}

/// Whether `x` is a number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// `models` models per task, the same for every task: from 50 MiB, 2 ms, 70 % accurate and 50
/// requests per period up to 800 MiB, 25 ms, 93 % and 200, geometrically in size, latency and
/// capacity (with three: 50, 200 and 800 MiB).
fn catalog(tasks: usize, models: usize) -> Vec<Model> {
    let mut catalog = Vec::with_capacity(tasks * models);
    for task in 0..tasks {
        for j in 0..models {
            let f = if models > 1 {
                j as f64 / (models - 1) as f64
            } else {
                0.0
            };
            catalog.push(Model {
                task: TaskId(task),
                size_bytes: (50.0 * 16f64.powf(f)).round() as u64 * MIB,
                accuracy: 0.70 + 0.23 * f.powf(0.7),
                inference_latency_ms: 2.0 * 12.5f64.powf(f),
                capacity: (50.0 * 4f64.powf(f)).round() as u32,
            });
        }
    }
    catalog
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario()?;
    let started = Instant::now();
    let result = simulate::run(&scenario).context("simulating")?;
    let elapsed = started.elapsed();
    let periods = result.repository_cost.len() as u64;
    let warm_up = args.warm_up.unwrap_or(periods / 10).min(periods - 1);
    let shift_period = args
        .shift_at
        .map(|at| at.div_ceil(scenario.period_requests));
    let rows = report::rows(&result, warm_up, shift_period);
    let markdown = report::markdown(&rows, &result, warm_up, shift_period);
    println!(
        "{} nodes, {} requests in {periods} periods of {}, in {:.2} s",
        result.nodes,
        args.requests,
        scenario.period_requests,
        elapsed.as_secs_f64()
    );
    print!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let shift = shift_period.map(|_| args.shift_at.unwrap_or(0) as usize);
        let files = [
            ("simulate.md", markdown),
            ("simulate.csv", report::csv(&rows)),
            (
                "gain.svg",
                report::gain_svg(&result, scenario.period_requests, shift),
            ),
            (
                "regret.svg",
                report::regret_svg(&result, scenario.period_requests, shift),
            ),
        ];
        for (file, text) in files {
            let path = out.join(file);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &str) -> Args {
        let cli = Cli::try_parse_from(format!("idn simulate {line}").split_whitespace()).unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate");
        };
        *args
    }

    #[test]
    fn the_defaults_are_the_issues_target_scenario() {
        let s = args("").scenario().unwrap();
        assert_eq!(s.catalog.len(), 30);
        let sizes: Vec<u64> = s.catalog[..3].iter().map(|m| m.size_bytes / MIB).collect();
        assert_eq!(sizes, [50, 200, 800]);
        assert_eq!((s.requests, s.period_requests), (1_000_000, 10_000));
        let Topology::Tree(tiers) = &s.topology else {
            panic!("a tree");
        };
        let fanouts: Vec<usize> = tiers.iter().map(|t| t.fanout).collect();
        assert_eq!(fanouts, [10, 10, 9]);
        assert_eq!(s.policies, PolicyKind::ALL);
        assert_eq!(s.hindsight, None);
    }

    #[test]
    fn flags_reach_the_scenario() {
        let s = args(
            "--topology geant --fanout 0,2 --budgets-mib 512,128 --latencies-ms 9,3 \
             --burst-gap 100 --shift-at 50 --requests 1000 --periods 10 --redraw 2 \
             --policies infida,lru --hindsight greedy --eta 0.5",
        )
        .scenario()
        .unwrap();
        let Topology::Research {
            pop_budget_bytes,
            access,
        } = &s.topology
        else {
            panic!("geant");
        };
        assert_eq!(*pop_budget_bytes, 512 * MIB);
        assert_eq!((access.len(), access[0].fanout), (1, 2));
        assert_eq!(s.workload.shift_at, Some(50));
        assert_eq!(s.workload.bursts.as_ref().unwrap().mean_gap_requests, 100.0);
        assert_eq!((s.period_requests, s.redraw_periods), (100, 2));
        assert_eq!(s.policies, [PolicyKind::Infida, PolicyKind::Lru]);
        assert_eq!(s.hindsight, Some(Hindsight::LazyGreedy));
    }

    #[test]
    fn every_bad_flag_is_named() {
        let err = args("--periods 0 --redraw 0 --eta=-1 --budgets-mib 1,2")
            .scenario()
            .unwrap_err()
            .to_string();
        for part in [
            "--periods 0",
            "--redraw 0",
            "--eta -1",
            "--budgets-mib has 2 tiers",
        ] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }
}
