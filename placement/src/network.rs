//! The placement problem: a catalog of models per task, nodes with budgets, repository models,
//! and the request types (a task and the fixed route its requests travel toward a repository).

use crate::{Error, Knapsack, Result};

/// Index of a task (service) in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub usize);

/// Index of a model in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub usize);

/// Index of a node in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One model of the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub task: TaskId,
    /// What the model takes of a node's budget while loaded.
    pub size_bytes: u64,
    /// Share of requests it answers correctly, in [0, 1].
    pub accuracy: f64,
    pub inference_latency_ms: f64,
    /// Requests one loaded copy serves in a period. Repository copies are not bounded (see
    /// [`Candidate::capacity`]).
    pub capacity: u32,
}

/// One node: the budget its placed models share and the models it holds permanently.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Node {
    pub budget_bytes: u64,
    /// Repository models: always loaded, outside the budget, never moved by INFIDA.
    pub permanent: Vec<ModelId>,
}

/// The route requests of one type travel: `nodes[0]` is where they enter, each later node one
/// hop further toward a repository, `hop_latency_ms[j]` the latency from `nodes[j]` to
/// `nodes[j + 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub nodes: Vec<NodeId>,
    pub hop_latency_ms: Vec<f64>,
}

/// A request type of the paper: a task and its route.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestType {
    pub task: TaskId,
    pub route: Route,
}

/// The catalog, the nodes and the weight of inaccuracy against latency.
#[derive(Clone, Debug)]
pub struct Network {
    catalog: Vec<Model>,
    nodes: Vec<Node>,
    /// Milliseconds of latency one unit of inaccuracy is worth: the paper's α.
    alpha_ms: f64,
    /// Per node, the models INFIDA may place there: every model of the catalog that is not
    /// permanent at the node and fits its budget alone. A slot of the node's allocation is an
    /// index into this list.
    slots: Vec<Vec<ModelId>>,
}

/// One way to serve a request type: a model on a node of its route, with its cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub node: NodeId,
    /// The node's position on the route: requests served here passed through positions
    /// `0..=hop`.
    pub hop: usize,
    /// The node's allocation slot, or `None` for a repository model (always held).
    pub slot: Option<usize>,
    pub model: ModelId,
    /// Latency to reach the node + inference latency + α·(1 − accuracy).
    pub cost: f64,
    /// Requests it can serve in a period; unbounded for a repository model, since the paper's
    /// repositories serve whatever reaches them.
    pub capacity: f64,
}

/// The candidates of one request type in increasing cost, ending with the cheapest repository
/// model: no request is ever served past it, so candidates beyond it never matter.
#[derive(Clone, Debug, PartialEq)]
pub struct ServingOrder {
    pub candidates: Vec<Candidate>,
}

impl Network {
    /// Checks that every model and node index is in range, accuracies lie in [0, 1] and sizes
    /// are positive (the mirror step and the rounding divide by them).
    pub fn new(catalog: Vec<Model>, nodes: Vec<Node>, alpha_ms: f64) -> Result<Self> {
        for (m, model) in catalog.iter().enumerate() {
            if model.size_bytes == 0 {
                return Err(Error::Invalid(format!(
                    "catalog[{m}].size_bytes: must be positive"
                )));
            }
            if !(0.0..=1.0).contains(&model.accuracy) {
                return Err(Error::Invalid(format!(
                    "catalog[{m}].accuracy: {} is outside [0, 1]",
                    model.accuracy
                )));
            }
        }
        for (v, node) in nodes.iter().enumerate() {
            if let Some(m) = node.permanent.iter().find(|m| m.0 >= catalog.len()) {
                return Err(Error::Invalid(format!(
                    "nodes[{v}].permanent: model {} is not in the catalog",
                    m.0
                )));
            }
        }
        let slots = nodes
            .iter()
            .map(|node| {
                (0..catalog.len())
                    .map(ModelId)
                    .filter(|m| {
                        !node.permanent.contains(m) && catalog[m.0].size_bytes <= node.budget_bytes
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            catalog,
            nodes,
            alpha_ms,
            slots,
        })
    }

    pub fn model(&self, m: ModelId) -> &Model {
        &self.catalog[m.0]
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The models INFIDA may place at `v`, one per allocation slot.
    pub fn slots(&self, v: NodeId) -> &[ModelId] {
        &self.slots[v.0]
    }

    /// The node's budget set, over its slots.
    pub fn knapsack(&self, v: NodeId) -> Knapsack {
        Knapsack::from_bytes(
            self.slots[v.0].iter().map(|m| self.catalog[m.0].size_bytes),
            self.nodes[v.0].budget_bytes,
        )
    }

    /// The cost of serving a request with model `m` after `path_latency_ms` of travel.
    pub fn cost(&self, m: ModelId, path_latency_ms: f64) -> f64 {
        let model = &self.catalog[m.0];
        path_latency_ms + model.inference_latency_ms + self.alpha_ms * (1.0 - model.accuracy)
    }

    /// The candidates of a request type sorted by cost (ties: earlier node on the route, then
    /// lower model index), cut after the cheapest repository model. Fails when the route holds
    /// no repository model of the task: its requests could not be served at all.
    pub fn serving_order(&self, request: &RequestType) -> Result<ServingOrder> {
        let route = &request.route;
        if route.hop_latency_ms.len() + 1 != route.nodes.len() {
            return Err(Error::Invalid(format!(
                "route through {} nodes has {} hop latencies",
                route.nodes.len(),
                route.hop_latency_ms.len()
            )));
        }
        let mut candidates = Vec::new();
        let mut reach_ms = 0.0;
        for (j, &v) in route.nodes.iter().enumerate() {
            let node = self.nodes.get(v.0).ok_or_else(|| {
                Error::Invalid(format!("route node {} is not in the network", v.0))
            })?;
            if j > 0 {
                reach_ms += route.hop_latency_ms[j - 1];
            }
            let placed = self.slots[v.0]
                .iter()
                .enumerate()
                .map(|(slot, &m)| (Some(slot), m));
            let held = node.permanent.iter().map(|&m| (None, m));
            for (slot, m) in placed.chain(held) {
                let model = &self.catalog[m.0];
                if model.task != request.task {
                    continue;
                }
                candidates.push(Candidate {
                    node: v,
                    hop: j,
                    slot,
                    model: m,
                    cost: self.cost(m, reach_ms),
                    capacity: match slot {
                        Some(_) => f64::from(model.capacity),
                        None => f64::INFINITY,
                    },
                });
            }
        }
        // A stable sort keeps route order, then slot order, among equal costs.
        candidates.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        let Some(last) = candidates.iter().position(|c| c.slot.is_none()) else {
            return Err(Error::Invalid(format!(
                "no node on the route {:?} holds a repository model of task {}",
                route.nodes.iter().map(|v| v.0).collect::<Vec<_>>(),
                request.task.0
            )));
        };
        candidates.truncate(last + 1);
        Ok(ServingOrder { candidates })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Three tiers on one route: an edge (budget 2 units), a regional node (budget 3), the cloud
    /// repository holding the large model of each of two tasks. Per task a small, a medium and a
    /// large model; sizes 1, 2, 3 units of 1 MB.
    pub fn line() -> (Network, Vec<RequestType>) {
        const MB: u64 = 1 << 20;
        let mut catalog = Vec::new();
        for task in 0..2 {
            for (size, accuracy, latency, capacity) in
                [(1, 0.70, 2.0, 5), (2, 0.85, 5.0, 8), (3, 0.95, 12.0, 100)]
            {
                catalog.push(Model {
                    task: TaskId(task),
                    size_bytes: size * MB,
                    accuracy,
                    inference_latency_ms: latency,
                    capacity,
                });
            }
        }
        let nodes = vec![
            Node {
                budget_bytes: 2 * MB,
                permanent: vec![],
            },
            Node {
                budget_bytes: 3 * MB,
                permanent: vec![],
            },
            Node {
                budget_bytes: 0,
                permanent: vec![ModelId(2), ModelId(5)],
            },
        ];
        let network = Network::new(catalog, nodes, 100.0).expect("valid fixture");
        let requests = (0..2)
            .map(|task| RequestType {
                task: TaskId(task),
                route: Route {
                    nodes: vec![NodeId(0), NodeId(1), NodeId(2)],
                    hop_latency_ms: vec![5.0, 40.0],
                },
            })
            .collect();
        (network, requests)
    }

    /// Every 0/1 allocation of the network's slots, feasible or not.
    pub fn all_allocations(network: &Network) -> Vec<Vec<Vec<f64>>> {
        let slots: Vec<usize> = network.slots.iter().map(Vec::len).collect();
        let bits: usize = slots.iter().sum();
        (0..1u32 << bits)
            .map(|mask| {
                let mut offset = 0;
                slots
                    .iter()
                    .map(|&n| {
                        offset += n;
                        (offset - n..offset)
                            .map(|b| f64::from((mask >> b) & 1))
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// The allocations of [`all_allocations`] that fit every node's budget.
    pub fn feasible_placements(network: &Network) -> Vec<Vec<Vec<f64>>> {
        let fits = |x: &Vec<Vec<f64>>| {
            x.iter().enumerate().all(|(v, x)| {
                let used: u64 = network.slots[v]
                    .iter()
                    .zip(x)
                    .filter(|(_, held)| **held == 1.0)
                    .map(|(m, _)| network.catalog[m.0].size_bytes)
                    .sum();
                used <= network.nodes[v].budget_bytes
            })
        };
        all_allocations(network).into_iter().filter(fits).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_order_is_sorted_by_cost_and_ends_at_the_cheapest_repository_model() {
        let (network, requests) = fixtures::line();
        let order = network.serving_order(&requests[0]).unwrap();
        let costs: Vec<f64> = order.candidates.iter().map(|c| c.cost).collect();
        assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
        let last = order.candidates.last().unwrap();
        assert_eq!(
            (last.node, last.slot, last.model),
            (NodeId(2), None, ModelId(2))
        );
        assert!(last.capacity.is_infinite());
        // Only task-0 models; the edge cannot hold the large model (3 MB > 2 MB).
        assert!(order.candidates.iter().all(|c| c.model.0 < 3));
        assert!(
            !order
                .candidates
                .iter()
                .any(|c| c.node == NodeId(0) && c.model == ModelId(2))
        );
        // Edge small model: 0 ms of travel + 2 ms + 100·0.30.
        let edge_small = order
            .candidates
            .iter()
            .find(|c| c.node == NodeId(0) && c.model == ModelId(0))
            .unwrap();
        assert!((edge_small.cost - 32.0).abs() < 1e-12);
        // Cloud large model: 45 ms + 12 ms + 100·0.05.
        assert!((last.cost - 62.0).abs() < 1e-12);
    }

    #[test]
    fn a_route_without_a_repository_model_of_its_task_is_refused() {
        let (network, mut requests) = fixtures::line();
        requests[0].route.nodes.pop();
        requests[0].route.hop_latency_ms.pop();
        let err = network.serving_order(&requests[0]).unwrap_err();
        assert!(
            err.to_string().contains("no node on the route [0, 1]"),
            "{err}"
        );
    }

    #[test]
    fn bad_indices_and_accuracies_are_refused_with_their_field() {
        let (network, _) = fixtures::line();
        let mut catalog: Vec<Model> = (0..3).map(|m| network.model(ModelId(m)).clone()).collect();
        catalog[1].accuracy = 1.5;
        let err = Network::new(catalog.clone(), vec![], 1.0).unwrap_err();
        assert!(
            err.to_string().contains("catalog[1].accuracy: 1.5"),
            "{err}"
        );
        catalog[1].accuracy = 0.5;
        let node = Node {
            budget_bytes: 1,
            permanent: vec![ModelId(7)],
        };
        let err = Network::new(catalog, vec![node], 1.0).unwrap_err();
        assert!(
            err.to_string().contains("nodes[0].permanent: model 7"),
            "{err}"
        );
    }
}
