//! The networks a run can use, each reduced to what the policies see: a tree rooted at the
//! repository (node 0, which holds every model and has no budget), each node with its budget and
//! the latency to its parent. Requests enter at the nodes without children and travel toward the
//! root, so a node's route is its path to the root.
//!
//! - [`Topology::Tree`]: the paper's shape, a tree of tiers.
//! - [`Topology::RandomTree`]: a random recursive tree whose depth is bounded by its tiers.
//! - [`Topology::Research`]: a research network like GÉANT: [`GEANT_LINKS`] between 22 points of
//!   presence, the repository at one of them, each other point of presence reaching it along its
//!   shortest path, and a tree of access tiers below every point of presence.

use super::Tier;

/// A tier without a shape: what a node at some depth of a random tree takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub budget_bytes: u64,
    /// Latency from a node of this level to its parent (before the random tree's jitter).
    pub uplink_latency_ms: f64,
}

/// The network of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    /// From the root's children down to the leaves.
    Tree(Vec<Tier>),
    /// `nodes` nodes below the root, each attached in turn to a node chosen uniformly among
    /// those already there whose depth is below `levels.len()`. A node at depth `d` takes
    /// `levels[d − 1]`'s budget, and its uplink latency times a uniform factor in [0.5, 1.5).
    RandomTree {
        nodes: usize,
        levels: Vec<Level>,
        seed: u64,
    },
    /// The points of presence of [`GEANT_LINKS`] (each with `pop_budget_bytes`, the repository's
    /// with none) and, below each, the access tiers.
    Research {
        pop_budget_bytes: u64,
        access: Vec<Tier>,
    },
}

/// A research network like GÉANT's European core: 22 points of presence (0 Frankfurt, where the
/// repository is, 1 Amsterdam, 2 London, 3 Paris, 4 Geneva, 5 Milan, 6 Vienna, 7 Prague, 8
/// Poznań, 9 Budapest, 10 Madrid, 11 Lisbon, 12 Brussels, 13 Dublin, 14 Copenhagen, 15
/// Stockholm, 16 Athens, 17 Ljubljana, 18 Zagreb, 19 Bucharest, 20 Sofia, 21 Luxembourg) and
/// links with their one-way latency in ms, about 1 ms per 100 km of great-circle distance. The
/// shape is GÉANT-like, not GÉANT's actual map.
pub const GEANT_LINKS: [(usize, usize, f64); 32] = [
    (0, 1, 3.6),
    (0, 3, 4.8),
    (0, 4, 4.6),
    (0, 7, 4.1),
    (0, 6, 6.0),
    (0, 14, 6.8),
    (0, 8, 6.5),
    (0, 21, 1.9),
    (1, 2, 3.6),
    (1, 12, 1.7),
    (1, 14, 6.2),
    (2, 3, 3.4),
    (2, 13, 4.6),
    (3, 12, 2.6),
    (3, 10, 10.5),
    (3, 4, 4.1),
    (10, 11, 5.0),
    (4, 5, 2.5),
    (5, 6, 6.2),
    (5, 17, 3.9),
    (17, 18, 1.2),
    (18, 9, 3.0),
    (6, 9, 2.2),
    (6, 7, 2.5),
    (7, 8, 4.0),
    (14, 15, 5.2),
    (9, 19, 6.4),
    (19, 20, 3.0),
    (20, 16, 5.3),
    (5, 16, 15.0),
    (21, 12, 1.9),
    (2, 10, 12.6),
];

/// Points of presence of [`GEANT_LINKS`].
const GEANT_POPS: usize = 22;

/// The tree the policies see: per node its parent (none for the root), the latency to it and
/// its budget.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Layout {
    pub parent: Vec<Option<usize>>,
    pub uplink_latency_ms: Vec<f64>,
    pub budget_bytes: Vec<u64>,
}

impl Layout {
    fn with_root() -> Self {
        Self {
            parent: vec![None],
            uplink_latency_ms: vec![0.0],
            budget_bytes: vec![0],
        }
    }

    fn push(&mut self, parent: usize, budget_bytes: u64, uplink_latency_ms: f64) -> usize {
        self.parent.push(Some(parent));
        self.uplink_latency_ms.push(uplink_latency_ms);
        self.budget_bytes.push(budget_bytes);
        self.parent.len() - 1
    }

    /// Hangs `tiers` below each of `tops`, fanout by fanout.
    fn hang(&mut self, tops: Vec<usize>, tiers: &[Tier]) {
        let mut above = tops;
        for tier in tiers {
            let mut next = Vec::with_capacity(above.len() * tier.fanout);
            for &parent in &above {
                for _ in 0..tier.fanout {
                    next.push(self.push(parent, tier.budget_bytes, tier.uplink_latency_ms));
                }
            }
            above = next;
        }
    }

    /// The nodes where requests enter: those without children, in index order.
    pub fn entries(&self) -> Vec<usize> {
        let mut has_child = vec![false; self.parent.len()];
        for p in self.parent.iter().flatten() {
            has_child[*p] = true;
        }
        (0..self.parent.len()).filter(|&v| !has_child[v]).collect()
    }
}

impl Topology {
    pub(super) fn layout(&self) -> Layout {
        let mut layout = Layout::with_root();
        match self {
            Topology::Tree(tiers) => layout.hang(vec![0], tiers),
            Topology::RandomTree {
                nodes,
                levels,
                seed,
            } => {
                let mut rng = fastrand::Rng::with_seed(*seed);
                let mut depth = vec![0];
                // Nodes that may still take a child: those above the deepest level.
                let mut open = if levels.is_empty() { vec![] } else { vec![0] };
                for _ in 0..*nodes {
                    if open.is_empty() {
                        break;
                    }
                    let parent = open[rng.usize(0..open.len())];
                    let d = depth[parent] + 1;
                    let level = &levels[d - 1];
                    let latency = level.uplink_latency_ms * (0.5 + rng.f64());
                    let v = layout.push(parent, level.budget_bytes, latency);
                    depth.push(d);
                    if d < levels.len() {
                        open.push(v);
                    }
                }
            }
            Topology::Research {
                pop_budget_bytes,
                access,
            } => {
                for (parent, latency) in shortest_path_tree(GEANT_POPS, &GEANT_LINKS)
                    .into_iter()
                    .skip(1)
                {
                    layout.push(parent, *pop_budget_bytes, latency);
                }
                layout.hang((0..GEANT_POPS).collect(), access);
            }
        }
        layout
    }
}

/// Dijkstra from node 0 over undirected `links`: per node, its next hop toward 0 and the
/// latency of that link (node 0: itself and 0). Ties go to the lower-numbered parent, so the
/// tree is deterministic.
fn shortest_path_tree(nodes: usize, links: &[(usize, usize, f64)]) -> Vec<(usize, f64)> {
    let mut distance = vec![f64::INFINITY; nodes];
    let mut hop = vec![(0, 0.0); nodes];
    let mut done = vec![false; nodes];
    distance[0] = 0.0;
    for _ in 0..nodes {
        let Some(u) = (0..nodes)
            .filter(|&u| !done[u] && distance[u].is_finite())
            .min_by(|&a, &b| distance[a].total_cmp(&distance[b]))
        else {
            break;
        };
        done[u] = true;
        for &(a, b, latency) in links {
            let v = match (a == u, b == u) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            let through = distance[u] + latency;
            if !done[v] && (through < distance[v] || (through == distance[v] && u < hop[v].0)) {
                distance[v] = through;
                hop[v] = (u, latency);
            }
        }
    }
    hop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(fanout: usize) -> Tier {
        Tier {
            fanout,
            budget_bytes: 1,
            uplink_latency_ms: 1.0,
        }
    }

    /// The latency from `v` to the root along the layout's parents.
    fn to_root(layout: &Layout, mut v: usize) -> f64 {
        let mut total = 0.0;
        while let Some(p) = layout.parent[v] {
            total += layout.uplink_latency_ms[v];
            v = p;
        }
        total
    }

    #[test]
    fn a_tree_of_tiers_has_its_fanouts_and_its_leaves_as_entries() {
        let layout = Topology::Tree(vec![tier(2), tier(3)]).layout();
        assert_eq!(layout.parent.len(), 1 + 2 + 6);
        assert_eq!(layout.entries(), (3..9).collect::<Vec<_>>());
        assert_eq!(layout.parent[3], Some(1));
        assert_eq!(to_root(&layout, 8), 2.0);
    }

    #[test]
    fn a_random_tree_is_seeded_and_bounded_in_depth() {
        let levels = vec![
            Level {
                budget_bytes: 3,
                uplink_latency_ms: 10.0,
            },
            Level {
                budget_bytes: 2,
                uplink_latency_ms: 4.0,
            },
        ];
        let random = |seed| {
            Topology::RandomTree {
                nodes: 200,
                levels: levels.clone(),
                seed,
            }
            .layout()
        };
        let layout = random(5);
        assert_eq!(layout, random(5));
        assert_ne!(layout, random(6));
        assert_eq!(layout.parent.len(), 201);
        for v in 1..layout.parent.len() {
            let parent = layout.parent[v].unwrap();
            let depth = if parent == 0 { 1 } else { 2 };
            assert_eq!(layout.parent[parent].is_none(), depth == 1);
            let level = &levels[depth - 1];
            assert_eq!(layout.budget_bytes[v], level.budget_bytes);
            let latency = layout.uplink_latency_ms[v];
            assert!((0.5..1.5).contains(&(latency / level.uplink_latency_ms)));
        }
        // Every entry is a leaf; some sit at depth 1 (no child drawn), most at depth 2.
        assert!(layout.entries().len() > 100);
    }

    #[test]
    fn the_research_network_routes_each_point_of_presence_along_its_shortest_path() {
        let layout = Topology::Research {
            pop_budget_bytes: 7,
            access: vec![tier(2)],
        }
        .layout();
        assert_eq!(layout.parent.len(), 22 + 44);
        assert_eq!(layout.budget_bytes[0], 0);
        assert!(layout.budget_bytes[1..22].iter().all(|b| *b == 7));
        assert_eq!(layout.entries(), (22..66).collect::<Vec<_>>());
        // Against a Bellman–Ford relaxation of every link: each point of presence's path to
        // Frankfurt is a shortest one.
        let mut best = [f64::INFINITY; 22];
        best[0] = 0.0;
        for _ in 0..22 {
            for &(a, b, l) in &GEANT_LINKS {
                best[a] = best[a].min(best[b] + l);
                best[b] = best[b].min(best[a] + l);
            }
        }
        for (v, shortest) in best.iter().enumerate() {
            assert!((to_root(&layout, v) - shortest).abs() < 1e-9, "{v}");
        }
        // Lisbon reaches Frankfurt through Madrid and Paris.
        assert_eq!(layout.parent[11], Some(10));
        assert_eq!(layout.parent[10], Some(3));
        assert_eq!(layout.parent[3], Some(0));
    }
}
