//! Request traces: which task each request asks for and where it enters, drawn from a seed.
//!
//! - Per-task Zipf popularity: rank `k` (from 1) has weight `k^−s`; task `k − 1` has rank `k`.
//! - A popularity shift: from request `shift_at` on, the ranks are reversed (the least popular
//!   task becomes the most popular).
//! - Bursts, as shot noise (the temporal-locality model of Traverso et al., "Temporal locality
//!   in today's content caching", SIGCOMM CCR 2013, applied to tasks): bursts start at
//!   exponentially distributed gaps (mean `mean_gap_requests`), each on a task drawn uniformly,
//!   and add to the base rate of requests a rate of `intensity` times the base rate, decaying
//!   as `exp(−age / decay_requests)`. A request belongs to the bursts with probability
//!   `Σ w / (1 + Σ w)` over their current weights `w`, and then to one of them in proportion to
//!   its weight. **Chosen:** a burst's requests enter at uniformly chosen entries, like the
//!   others: it is a task's popularity that bursts, not a region's.
//!
//! Requests enter at a uniformly chosen entry node.

/// A trace's shape; with the seed, it fixes every request.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub zipf_exponent: f64,
    /// The request index at which task popularity ranks are reversed.
    pub shift_at: Option<u64>,
    pub bursts: Option<Bursts>,
}

/// Shot-noise bursts (see the module's documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Bursts {
    pub mean_gap_requests: f64,
    pub decay_requests: f64,
    /// A burst's rate at its start, as a multiple of the base rate of all requests.
    pub intensity: f64,
}

/// A burst's weight below this share of its intensity is dropped.
const BURST_FLOOR: f64 = 1e-3;

/// Cumulative Zipf weights, to draw a rank from with one uniform number.
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

/// A burst in progress: its task and the request at which it started.
struct Burst {
    task: usize,
    start: u64,
}

/// The requests' tasks, one at a time.
struct Tasks<'a> {
    workload: &'a Workload,
    tasks: usize,
    cdf: Vec<f64>,
    bursts: Vec<Burst>,
    next_burst: f64,
}

impl<'a> Tasks<'a> {
    fn new(workload: &'a Workload, tasks: usize, rng: &mut fastrand::Rng) -> Self {
        let mut this = Self {
            workload,
            tasks,
            cdf: zipf_cdf(tasks, workload.zipf_exponent),
            bursts: vec![],
            next_burst: f64::INFINITY,
        };
        if let Some(b) = &workload.bursts {
            this.next_burst = exponential(rng, b.mean_gap_requests);
        }
        this
    }

    fn task(&mut self, i: u64, rng: &mut fastrand::Rng) -> usize {
        if let Some(b) = &self.workload.bursts {
            while self.next_burst <= i as f64 {
                self.bursts.push(Burst {
                    task: rng.usize(0..self.tasks),
                    start: self.next_burst as u64,
                });
                self.next_burst += exponential(rng, b.mean_gap_requests);
            }
            let weight = |burst: &Burst| {
                b.intensity * (-((i - burst.start) as f64) / b.decay_requests).exp()
            };
            self.bursts
                .retain(|burst| weight(burst) >= BURST_FLOOR * b.intensity);
            let total: f64 = self.bursts.iter().map(weight).sum();
            let u = rng.f64() * (1.0 + total);
            if u >= 1.0 {
                let mut left = u - 1.0;
                for burst in &self.bursts {
                    left -= weight(burst);
                    if left < 0.0 {
                        return burst.task;
                    }
                }
            }
        }
        let rank = zipf_rank(&self.cdf, rng.f64());
        let shifted = self.workload.shift_at.is_some_and(|at| i >= at);
        if shifted { self.tasks - 1 - rank } else { rank }
    }
}

fn exponential(rng: &mut fastrand::Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.f64()).ln()
}

/// The whole trace: per period of `period_requests`, the request types (`entry · tasks + task`)
/// in arrival order.
pub(super) fn draw(
    workload: &Workload,
    entries: usize,
    tasks: usize,
    (requests, period_requests): (u64, u64),
    seed: u64,
) -> Vec<Vec<u32>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut task_of = Tasks::new(workload, tasks, &mut rng);
    let mut periods = vec![];
    let mut sent = 0;
    while sent < requests {
        let period = period_requests.min(requests - sent);
        let arrivals = (sent..sent + period)
            .map(|i| {
                let task = task_of.task(i, &mut rng);
                (rng.usize(0..entries) * tasks + task) as u32
            })
            .collect();
        periods.push(arrivals);
        sent += period;
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stationary() -> Workload {
        Workload {
            zipf_exponent: 1.0,
            shift_at: None,
            bursts: None,
        }
    }

    /// Per task, its share of the requests in `periods[range]`.
    fn shares(periods: &[Vec<u32>], tasks: usize) -> Vec<f64> {
        let mut counts = vec![0.0; tasks];
        let mut total = 0.0;
        for &t in periods.iter().flatten() {
            counts[t as usize % tasks] += 1.0;
            total += 1.0;
        }
        counts.iter().map(|c| c / total).collect()
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
    fn a_trace_is_seeded_and_its_entries_uniform() {
        let w = stationary();
        let a = draw(&w, 5, 3, (10_000, 1_000), 9);
        assert_eq!(a, draw(&w, 5, 3, (10_000, 1_000), 9));
        assert_ne!(a, draw(&w, 5, 3, (10_000, 1_000), 10));
        assert_eq!(a.len(), 10);
        let mut per_entry = [0.0; 5];
        for &t in a.iter().flatten() {
            per_entry[t as usize / 3] += 1.0;
        }
        // 10^4 draws over 5 entries: within 5σ of 2,000 each.
        assert!(per_entry.iter().all(|c| (c - 2000.0f64).abs() < 5.0 * 40.0));
    }

    #[test]
    fn a_shift_reverses_the_ranks() {
        let mut w = stationary();
        w.shift_at = Some(50_000);
        let periods = draw(&w, 1, 4, (100_000, 10_000), 3);
        let before = shares(&periods[..5], 4);
        let after = shares(&periods[5..], 4);
        assert!(before[0] > 0.45 && before[3] < 0.14, "{before:?}");
        assert!(after[3] > 0.45 && after[0] < 0.14, "{after:?}");
    }

    #[test]
    fn bursts_add_the_share_shot_noise_predicts_and_come_and_go() {
        let mut w = stationary();
        w.zipf_exponent = 0.0;
        // A burst every 20,000 requests that carries intensity · decay = 2 · 5,000 extra
        // requests: the bursts' share of all requests is 10,000 / 30,000 on average.
        w.bursts = Some(Bursts {
            mean_gap_requests: 20_000.0,
            decay_requests: 5_000.0,
            intensity: 2.0,
        });
        let tasks = 50;
        let periods = draw(&w, 1, tasks, (2_000_000, 10_000), 4);
        // Without bursts every task has 1/50 of each period. A period's most requested task
        // exceeds 1/50 by the bursts' share when one is on, and falls back when none is.
        let peaks: Vec<f64> = periods
            .iter()
            .map(|p| {
                let s = shares(std::slice::from_ref(p), tasks);
                s.iter().cloned().fold(0.0, f64::max)
            })
            .collect();
        let high = peaks.iter().filter(|p| **p > 0.15).count();
        let calm = peaks.iter().filter(|p| **p < 0.035).count();
        assert!(
            high > 10 && calm > 10,
            "{high} bursting periods, {calm} calm"
        );
        // A period's excess over uniform is about the share of its requests the bursts took:
        // on average `E[Σw / (1 + Σw)]`, below `E[Σw] / (1 + ...)`: `E[Σw]` = 0.5 here, so
        // the excess lies below 1/3 and well above the sampling noise (about 0.03).
        let excess: f64 = periods
            .iter()
            .map(|p| {
                let s = shares(std::slice::from_ref(p), tasks);
                s.iter().map(|s| (s - 1.0 / 50.0).max(0.0)).sum::<f64>()
            })
            .sum::<f64>()
            / periods.len() as f64;
        assert!(excess > 0.1 && excess < 1.0 / 3.0, "{excess}");
    }
}
