//! A node's budget set and the Bregman projection onto it.
//!
//! The set is `{y : 0 ≤ y ≤ 1, Σ s_m y_m ≤ b}` over the node's slots. The mirror map is the
//! size-weighted negative entropy `Φ(y) = Σ s_m y_m ln y_m`, whose Bregman divergence is
//! `D(y, z) = Σ s_m (y_m ln(y_m / z_m) − y_m + z_m)`. Its KKT conditions give the projection of
//! a positive `z` in closed form up to one scalar: `y = min(1, β z)` with `β = 1` when
//! `min(1, z)` already fits, and otherwise the `β ∈ (0, 1)` at which the budget is exactly met
//! (the sizes cancel out of the stationarity condition because `Φ` carries them). `β` is found
//! by sorting `z` once: O(n log n).

/// A node's slot sizes and budget, in MiB: the unit the step size is expressed in. Sizes that
/// are whole bytes stay exact (a division by a power of two), so a drawn set's budget check is
/// exact too.
#[derive(Clone, Debug, PartialEq)]
pub struct Knapsack {
    pub sizes_mib: Vec<f64>,
    pub budget_mib: f64,
}

const MIB: f64 = (1u64 << 20) as f64;

impl Knapsack {
    pub fn from_bytes(sizes_bytes: impl IntoIterator<Item = u64>, budget_bytes: u64) -> Self {
        Self {
            sizes_mib: sizes_bytes.into_iter().map(|s| s as f64 / MIB).collect(),
            budget_mib: budget_bytes as f64 / MIB,
        }
    }

    /// The size of a set of slots.
    pub fn used_mib(&self, slots: &[usize]) -> f64 {
        slots.iter().map(|&m| self.sizes_mib[m]).sum()
    }

    /// The Bregman projection of `z` (every entry ≥ 0) onto the budget set.
    pub fn project(&self, z: &[f64]) -> Vec<f64> {
        let sizes = &self.sizes_mib;
        let capped: Vec<f64> = z.iter().map(|z| z.min(1.0)).collect();
        let used: f64 = capped.iter().zip(sizes).map(|(y, s)| y * s).sum();
        if used <= self.budget_mib {
            return capped;
        }
        let mut by_z: Vec<usize> = (0..z.len()).collect();
        by_z.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
        // Walk the number k of entries pinned at 1 (the k largest z) upward; the first k whose β
        // leaves the (k+1)-th largest at or below 1 and the k-th at or above 1 is the solution
        // (an entry at exactly 1 is the same point pinned or free, which rounding can produce).
        let mut free_mass: f64 = by_z.iter().map(|&m| sizes[m] * z[m]).sum();
        let mut pinned_size = 0.0;
        let mut beta = 0.0;
        for (k, &m) in by_z.iter().enumerate() {
            beta = ((self.budget_mib - pinned_size) / free_mass).max(0.0);
            let pinned_ok = k == 0 || beta * z[by_z[k - 1]] >= 1.0;
            if pinned_ok && beta * z[m] <= 1.0 {
                break;
            }
            free_mass -= sizes[m] * z[m];
            pinned_size += sizes[m];
        }
        z.iter().map(|z| (beta * z).min(1.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn divergence(k: &Knapsack, y: &[f64], z: &[f64]) -> f64 {
        y.iter()
            .zip(z)
            .zip(&k.sizes_mib)
            .map(|((y, z), s)| {
                let entropy = if *y > 0.0 { y * (y / z).ln() } else { 0.0 };
                s * (entropy - y + z)
            })
            .sum()
    }

    /// The KKT conditions of `min D(y, z)` over the budget set, written with `β = e^{−λ}` (λ the
    /// budget's multiplier): feasibility, `y = min(1, β z)` for one `β ∈ (0, 1]`, and a tight
    /// budget whenever `β < 1` (complementary slackness).
    fn assert_kkt(k: &Knapsack, z: &[f64], y: &[f64]) {
        assert!(y.iter().all(|y| (0.0..=1.0).contains(y)), "{y:?}");
        let used: f64 = y.iter().zip(&k.sizes_mib).map(|(y, s)| y * s).sum();
        assert!(
            used <= k.budget_mib * (1.0 + 1e-12) + 1e-12,
            "{used} > {}",
            k.budget_mib
        );
        let beta = y
            .iter()
            .zip(z)
            .filter(|(y, _)| **y < 1.0)
            .map(|(y, z)| y / z)
            .next()
            .unwrap_or(1.0);
        assert!(beta > 0.0 && beta <= 1.0 + 1e-12, "β = {beta}");
        for (y, z) in y.iter().zip(z) {
            assert!(
                (y - (beta * z).min(1.0)).abs() < 1e-9,
                "{y} != min(1, {beta}·{z})"
            );
        }
        if beta < 1.0 - 1e-12 {
            assert!(
                (used - k.budget_mib).abs() < 1e-9,
                "slack budget with β = {beta}"
            );
        }
    }

    fn random_case(rng: &mut fastrand::Rng, n: usize) -> (Knapsack, Vec<f64>) {
        let sizes_mib: Vec<f64> = (0..n).map(|_| f64::from(rng.u32(1..8))).collect();
        let total: f64 = sizes_mib.iter().sum();
        let k = Knapsack {
            budget_mib: (rng.f64() * total).max(0.5),
            sizes_mib,
        };
        let z = (0..n).map(|_| rng.f64() * 2.0 + 1e-3).collect();
        (k, z)
    }

    #[test]
    fn the_projection_meets_the_kkt_conditions_on_random_instances() {
        let mut rng = fastrand::Rng::with_seed(1);
        for n in 1..12 {
            for _ in 0..200 {
                let (k, z) = random_case(&mut rng, n);
                assert_kkt(&k, &z, &k.project(&z));
            }
        }
    }

    #[test]
    fn the_projection_handles_ties_and_a_point_already_inside() {
        let k = Knapsack {
            sizes_mib: vec![2.0, 2.0, 2.0, 1.0],
            budget_mib: 3.0,
        };
        let tied = [3.0, 3.0, 3.0, 0.5];
        assert_kkt(&k, &tied, &k.project(&tied));
        let inside = [0.5, 0.25, 0.0, 0.5];
        assert_eq!(k.project(&inside), inside);
    }

    /// Minimises the divergence over a grid of the budget set, then over a finer grid around the
    /// best point.
    fn grid_minimum(k: &Knapsack, z: &[f64]) -> Vec<f64> {
        let mut best = (f64::INFINITY, vec![0.0; z.len()]);
        let mut search = |centre: &[f64], radius: f64, step: f64| {
            let steps = (2.0 * radius / step).round() as usize;
            let axis = |c: f64, i: usize| (c - radius + i as f64 * step).clamp(0.0, 1.0);
            let mut point = vec![0.0; z.len()];
            let total = (steps + 1).pow(z.len() as u32);
            for mut index in 0..total {
                for (d, p) in point.iter_mut().enumerate() {
                    *p = axis(centre[d], index % (steps + 1));
                    index /= steps + 1;
                }
                let used: f64 = point.iter().zip(&k.sizes_mib).map(|(y, s)| y * s).sum();
                if used <= k.budget_mib {
                    let d = divergence(k, &point, z);
                    if d < best.0 {
                        best = (d, point.clone());
                    }
                }
            }
            best.1.clone()
        };
        let coarse = search(&vec![0.5; z.len()], 0.5, 0.01);
        search(&coarse, 0.01, 0.0002)
    }

    #[test]
    fn the_projection_is_the_minimum_a_grid_search_finds() {
        let mut rng = fastrand::Rng::with_seed(2);
        for n in [2, 3] {
            for _ in 0..4 {
                let (k, z) = random_case(&mut rng, n);
                let y = k.project(&z);
                let grid = grid_minimum(&k, &z);
                let (ours, theirs) = (divergence(&k, &y, &z), divergence(&k, &grid, &z));
                assert!(
                    ours <= theirs + 1e-9,
                    "D = {ours} above the grid's {theirs}"
                );
                // Few grid points lie on the budget's face, where the minimum usually is, so the
                // grid's best point is only near it; the divergence above is the sharp check.
                for (a, b) in y.iter().zip(&grid) {
                    assert!((a - b).abs() < 1e-2, "{y:?} vs grid {grid:?}");
                }
            }
        }
    }
}
