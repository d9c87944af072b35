//! Figures per window of consecutive requests, to see a service react when its traffic
//! changes: accuracy, the share forwarded upstream, the share of fallbacks, mean latency.

use std::fmt::Write as _;

use idn_contract::provenance::Decision;

use super::Outcome;
use crate::plot::{self, Series};

/// The figures of requests `start..end` of one service; shares are of all requests in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub accuracy: f64,
    /// Share answered upstream rather than at the entry node (`idn_decision` `forwarded`).
    pub forwarded: f64,
    /// Share answered by a local fallback after an upstream failed.
    pub fallback: f64,
    pub errors: usize,
    pub mean_ms: f64,
}

/// Windows of `size` requests over `outcomes` (in stream order); the last may be shorter.
pub fn windows(outcomes: &[Outcome], size: usize) -> Vec<Window> {
    outcomes
        .chunks(size.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let n = chunk.len() as f64;
            let share =
                |f: &dyn Fn(&Outcome) -> bool| chunk.iter().filter(|o| f(o)).count() as f64 / n;
            let decided =
                |d: Decision| move |o: &Outcome| o.decision.as_deref() == Some(d.as_str());
            Window {
                start: i * size.max(1),
                end: i * size.max(1) + chunk.len(),
                accuracy: share(&|o| o.answer.as_ref().is_ok_and(|c| *c == o.label)),
                forwarded: share(&decided(Decision::Forwarded)),
                fallback: share(&decided(Decision::Fallback)),
                errors: chunk.iter().filter(|o| o.answer.is_err()).count(),
                mean_ms: chunk
                    .iter()
                    .map(|o| o.latency.as_secs_f64() * 1e3)
                    .sum::<f64>()
                    / n,
            }
        })
        .collect()
}

/// The windows of each service as a markdown table, a row per window and service.
pub fn markdown(series: &[(String, Vec<Window>)], shift_at: Option<usize>) -> String {
    let mut out = String::from(
        "| requests | service | accuracy | forwarded | fallback | errors | mean ms |\n\
         |---|---|--:|--:|--:|--:|--:|\n",
    );
    for (start, rows) in by_window(series) {
        let shifted = if shift_at.is_some_and(|at| start >= at) {
            " (shifted)"
        } else {
            ""
        };
        for (service, w) in rows {
            let _ = writeln!(
                out,
                "| {}-{}{shifted} | {service} | {:.2}% | {:.1}% | {:.1}% | {} | {:.2} |",
                w.start,
                w.end - 1,
                w.accuracy * 100.0,
                w.forwarded * 100.0,
                w.fallback * 100.0,
                w.errors,
                w.mean_ms
            );
        }
    }
    out
}

/// The windows of each service as CSV.
pub fn csv(series: &[(String, Vec<Window>)], shift_at: Option<usize>) -> String {
    let mut out =
        String::from("start,end,shifted,service,accuracy,forwarded,fallback,errors,mean_ms\n");
    for (start, rows) in by_window(series) {
        let shifted = shift_at.is_some_and(|at| start >= at);
        for (service, w) in rows {
            let _ = writeln!(
                out,
                "{},{},{shifted},{service},{:.4},{:.4},{:.4},{},{:.3}",
                w.start, w.end, w.accuracy, w.forwarded, w.fallback, w.errors, w.mean_ms
            );
        }
    }
    out
}

/// Accuracy (solid) and forwarded share (dashed) over the stream's `requests` as SVG, a colour
/// per service, each window drawn at its middle; `shift` marks where the stream changes.
pub fn svg(
    series: &[(String, Vec<Window>)],
    requests: usize,
    shift: Option<(usize, &str)>,
    title: &str,
) -> String {
    let labels: Vec<(String, String)> = series
        .iter()
        .map(|(name, _)| (format!("{name} accuracy"), format!("{name} forwarded")))
        .collect();
    let middle = |w: &Window| (w.start + w.end) as f64 / 2.0;
    let lines: Vec<Series> = series
        .iter()
        .zip(&labels)
        .enumerate()
        .flat_map(|(color, ((_, windows), (accuracy, forwarded)))| {
            [
                Series {
                    label: accuracy,
                    points: windows.iter().map(|w| (middle(w), w.accuracy)).collect(),
                    color,
                    dashed: false,
                },
                Series {
                    label: forwarded,
                    points: windows.iter().map(|w| (middle(w), w.forwarded)).collect(),
                    color,
                    dashed: true,
                },
            ]
        })
        .collect();
    plot::over_requests(&lines, requests, shift, &plot::YAxis::Shares, title)
}

/// The windows grouped by their first request, services in the order given.
fn by_window(series: &[(String, Vec<Window>)]) -> Vec<(usize, Vec<(&str, &Window)>)> {
    let count = series.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
    (0..count)
        .map(|i| {
            let rows: Vec<(&str, &Window)> = series
                .iter()
                .filter_map(|(name, w)| w.get(i).map(|w| (name.as_str(), w)))
                .collect();
            (rows.first().map_or(0, |(_, w)| w.start), rows)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(right: bool, decision: &str, ms: u64) -> Outcome {
        Outcome {
            label: "1".into(),
            answer: Ok(if right { "1" } else { "2" }.into()),
            latency: Duration::from_millis(ms),
            node: Some("access".into()),
            decision: Some(decision.into()),
            feedback: None,
        }
    }

    #[test]
    fn windows_count_accuracy_forwards_fallbacks_and_latency() {
        let mut outcomes = vec![
            outcome(true, "served", 1),
            outcome(true, "forwarded", 3),
            outcome(false, "served", 2),
            outcome(true, "fallback", 6),
            outcome(true, "forwarded", 10),
        ];
        outcomes[2].answer = Err("502".into());
        let w = windows(&outcomes, 2);
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0],
            Window {
                start: 0,
                end: 2,
                accuracy: 1.0,
                forwarded: 0.5,
                fallback: 0.0,
                errors: 0,
                mean_ms: 2.0
            }
        );
        assert_eq!((w[1].accuracy, w[1].fallback, w[1].errors), (0.5, 0.5, 1));
        assert_eq!((w[2].start, w[2].end, w[2].forwarded), (4, 5, 1.0));
    }

    #[test]
    fn tables_hold_a_row_per_window_and_service() {
        let a = windows(
            &[outcome(true, "served", 1), outcome(false, "forwarded", 3)],
            1,
        );
        let b = windows(
            &[outcome(false, "served", 2), outcome(true, "served", 4)],
            1,
        );
        let series = vec![("static".to_owned(), a), ("online".to_owned(), b)];
        let table = markdown(&series, Some(1));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[2],
            "| 0-0 | static | 100.00% | 0.0% | 0.0% | 0 | 1.00 |"
        );
        assert_eq!(
            lines[5],
            "| 1-1 (shifted) | online | 100.00% | 0.0% | 0.0% | 0 | 4.00 |"
        );
        let svg = svg(&series, 2, Some((1, "shift")), "t");
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains(">online forwarded</text>"));
        let csv = csv(&series, Some(1));
        assert_eq!(
            csv.lines().nth(2).unwrap(),
            "0,1,false,online,0.0000,0.0000,0.0000,0,2.000"
        );
        assert_eq!(
            csv.lines().nth(3).unwrap(),
            "1,2,true,static,0.0000,1.0000,0.0000,0,3.000"
        );
    }
}
