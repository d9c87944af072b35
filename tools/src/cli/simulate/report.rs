//! What `idn simulate` reports: per policy, its time-averaged gain as a share of the static
//! optimum's (over the whole run, after warm-up, after the shift), the share of the repository's
//! cost it saved, its regret per request and the models it loaded; a table in markdown and CSV,
//! and plots over requests.

use std::fmt::Write as _;

use idn_placement::simulate::{PolicyReport, Report};

use crate::plot::{self, Series};

/// One policy's line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub policy: &'static str,
    /// Its gain over the static optimum's, summed over the whole run.
    pub vs_optimum: f64,
    /// Its gain over the upper bound of every static placement's, over the whole run: at most
    /// its ratio to the true static optimum, whichever way that optimum was found.
    pub vs_upper_bound: f64,
    /// The same over the periods from the end of the warm-up on.
    pub after_warm_up: f64,
    /// The same over the periods from the shift on, when there is one.
    pub after_shift: Option<f64>,
    /// Its gain as a share of what serving everything at the repository costs.
    pub saved: f64,
    /// The regret at the end over the requests: milliseconds per request.
    pub regret_ms_per_request: f64,
    pub loads: u64,
}

fn ratio(policy: &PolicyReport, optimum: &PolicyReport, from: usize) -> f64 {
    let got: f64 = policy.gain[from..].iter().sum();
    let best: f64 = optimum.gain[from..].iter().sum();
    if best > 0.0 { got / best } else { f64::NAN }
}

/// The static optimum first, then the policies in the order they ran.
pub fn rows(report: &Report, warm_up: u64, shift_period: Option<u64>) -> Vec<Row> {
    let optimum = &report.static_optimum;
    let cost: f64 = report.repository_cost.iter().sum();
    let requests = report.requests as f64;
    all(report)
        .map(|p| Row {
            policy: p.name,
            vs_optimum: ratio(p, optimum, 0),
            vs_upper_bound: p.gain.iter().sum::<f64>() / report.optimum_upper_bound,
            after_warm_up: ratio(p, optimum, warm_up as usize),
            after_shift: shift_period.map(|s| ratio(p, optimum, (s as usize).min(p.gain.len()))),
            saved: p.gain.iter().sum::<f64>() / cost,
            regret_ms_per_request: report.regret(p).last().copied().unwrap_or(0.0) / requests,
            loads: p.loads,
        })
        .collect()
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The table in markdown, under a line that says how the static optimum was found.
pub fn markdown(rows: &[Row], report: &Report, warm_up: u64, shift_period: Option<u64>) -> String {
    let mut out = format!(
        "Static optimum in hindsight: {}. Gains are time-averaged and divided by the static \
         optimum's over the same periods; no static placement gains more than {:.1} % of it \
         (an upper bound from the relaxation), hence the column \"gain / bound\".\n\n\
         | policy | gain / optimum | gain / bound | after warm-up (period ≥ {warm_up}) |",
        report.hindsight.name(),
        100.0 * report.optimum_upper_bound / report.static_optimum.gain.iter().sum::<f64>()
    );
    if let Some(s) = shift_period {
        let _ = write!(out, " after the shift (period ≥ {s}) |");
    }
    out.push_str(
        " repository cost saved | regret, ms per request | models loaded |\n|---|--:|--:|",
    );
    if shift_period.is_some() {
        out.push_str("--:|");
    }
    out.push_str("--:|--:|--:|\n");
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            r.policy,
            percent(r.vs_optimum),
            percent(r.vs_upper_bound),
            percent(r.after_warm_up)
        );
        if shift_period.is_some() {
            let shifted = r.after_shift.map_or(String::new(), percent);
            let _ = write!(out, " {shifted} |");
        }
        let _ = writeln!(
            out,
            " {} | {:.2} | {} |",
            percent(r.saved),
            r.regret_ms_per_request,
            r.loads
        );
    }
    out
}

/// The table as CSV; shares as fractions, an empty cell where there is no shift.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "policy,gain_vs_optimum,gain_vs_upper_bound,after_warm_up,after_shift,repository_cost_saved,\
         regret_ms_per_request,loads\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.4},{:.4},{:.4},{},{:.4},{:.3},{}",
            r.policy,
            r.vs_optimum,
            r.vs_upper_bound,
            r.after_warm_up,
            r.after_shift.map_or(String::new(), |s| format!("{s:.4}")),
            r.saved,
            r.regret_ms_per_request,
            r.loads
        );
    }
    out
}

/// The static optimum, then the policies.
fn all(report: &Report) -> impl Iterator<Item = &PolicyReport> {
    [&report.static_optimum].into_iter().chain(&report.policies)
}

/// One line per policy (the static optimum dashed), a point per period at its last request:
/// `values[i][t]` for the `i`-th of [`all`] in period `t`; the shift marked.
fn plot(
    report: &Report,
    period_requests: u64,
    values: Vec<Vec<f64>>,
    shift: Option<usize>,
    (axis, title): (&str, &str),
) -> String {
    let series: Vec<Series> = all(report)
        .zip(values)
        .enumerate()
        .map(|(color, (p, values))| Series {
            label: p.name,
            points: values
                .into_iter()
                .enumerate()
                .map(|(t, v)| (((t as u64 + 1) * period_requests) as f64, v))
                .collect(),
            color,
            dashed: color == 0,
        })
        .collect();
    plot::over_requests(
        &series,
        report.requests as usize,
        shift.map(|at| (at, "shift")),
        &plot::YAxis::Values(axis),
        title,
    )
}

/// Each period's gain divided by the static optimum's in that period.
pub fn gain_svg(report: &Report, period_requests: u64, shift: Option<usize>) -> String {
    let optimum = &report.static_optimum.gain;
    let values = all(report)
        .map(|p| {
            p.gain
                .iter()
                .zip(optimum)
                .map(|(got, best)| if *best > 0.0 { got / best } else { 0.0 })
                .collect()
        })
        .collect();
    let titles = (
        "gain / static optimum",
        "Gain per period over the static optimum's",
    );
    plot(report, period_requests, values, shift, titles)
}

/// The regret so far over the requests so far: how far, per request, each policy is behind
/// the static optimum.
pub fn regret_svg(report: &Report, period_requests: u64, shift: Option<usize>) -> String {
    let values = all(report)
        .map(|p| {
            report
                .regret(p)
                .into_iter()
                .enumerate()
                .map(|(t, r)| r / ((t as u64 + 1) * period_requests) as f64)
                .collect()
        })
        .collect();
    let titles = (
        "regret, ms per request",
        "Time-averaged regret against the static optimum",
    );
    plot(report, period_requests, values, shift, titles)
}

#[cfg(test)]
mod tests {
    use idn_placement::simulate::Hindsight;

    use super::*;

    fn report() -> Report {
        let policy = |name, gain: [f64; 4], loads| PolicyReport {
            name,
            gain: gain.to_vec(),
            loads,
        };
        Report {
            nodes: 3,
            requests: 400,
            repository_cost: vec![100.0; 4],
            static_optimum: policy("static-optimum", [50.0, 50.0, 40.0, 40.0], 2),
            hindsight: Hindsight::Exhaustive,
            optimum_upper_bound: 200.0,
            policies: vec![policy("infida", [0.0, 45.0, 40.0, 44.0], 7)],
        }
    }

    #[test]
    fn rows_divide_by_the_optimum_over_the_same_periods() {
        let rows = rows(&report(), 1, Some(2));
        assert_eq!(rows[0].vs_optimum, 1.0);
        assert_eq!(rows[0].regret_ms_per_request, 0.0);
        let infida = &rows[1];
        assert_eq!(infida.vs_optimum, 129.0 / 180.0);
        assert_eq!(infida.vs_upper_bound, 129.0 / 200.0);
        assert_eq!(infida.after_warm_up, 129.0 / 130.0);
        assert_eq!(infida.after_shift, Some(84.0 / 80.0));
        assert_eq!(infida.saved, 129.0 / 400.0);
        assert_eq!(infida.regret_ms_per_request, 51.0 / 400.0);
        assert_eq!(infida.loads, 7);
    }

    #[test]
    fn the_tables_say_how_the_optimum_was_found_and_hold_every_row() {
        let report = report();
        let rows = rows(&report, 1, Some(2));
        let md = markdown(&rows, &report, 1, Some(2));
        assert!(md.starts_with("Static optimum in hindsight: exhaustive search (exact)."));
        assert!(
            md.contains("| infida | 71.7 % | 64.5 % | 99.2 % | 105.0 % | 32.2 % | 0.13 | 7 |"),
            "{md}"
        );
        let csv = csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.contains("\ninfida,0.7167,0.6450,0.9923,1.0500,0.3225,0.128,7\n"),
            "{csv}"
        );
        let without_shift = markdown(&rows, &report, 1, None);
        assert!(!without_shift.contains("shift"));
    }

    #[test]
    fn the_plots_draw_a_line_per_policy_and_the_optimum() {
        let report = report();
        for svg in [
            gain_svg(&report, 100, Some(200)),
            regret_svg(&report, 100, None),
        ] {
            assert!(svg.starts_with("<svg"));
            assert_eq!(svg.matches("<polyline").count(), 2);
        }
    }
}
