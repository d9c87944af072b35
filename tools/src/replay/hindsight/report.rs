//! The hindsight figures as text (markdown, CSV, plain sentences) and plots.

use std::fmt::Write as _;

use super::{Hindsight, Recovery, Segment, ServiceReport};
use crate::plot::{self, Series, YAxis};

/// What the figures are of, for titles and sentences.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Model names of the two tiers.
    pub local: &'a str,
    pub upstream: &'a str,
    pub requests: usize,
    /// Where the stream changes, and what to.
    pub shift: Option<(usize, &'a str)>,
    /// Relative distance to the best fixed policy that counts as close (0.1: 10 %).
    pub tolerance: f64,
}

/// The best fixed policies, each service against them, and what that says, as markdown.
pub fn summary(h: &Hindsight, services: &[(String, ServiceReport)], ctx: &Context) -> String {
    let mut out = format!(
        "Two tiers: `{}` at the entry node, `{}` for what it forwards; a forward costs {}, a \
         wrong answer {}. {} requests{}.\n\n",
        ctx.local,
        ctx.upstream,
        h.costs.forward,
        h.costs.alpha,
        ctx.requests,
        ctx.shift
            .map(|(at, what)| format!(", {what} from request {at} on"))
            .unwrap_or_default()
    );
    out.push_str(
        "| segment | requests | best fixed τ | cost per item | accuracy | forwarded | never forward | always forward |\n\
         |---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for s in &h.segments {
        let _ = writeln!(
            out,
            "| {} | {}-{} | {} | {:.4} | {:.2}% | {:.1}% | {:.4} | {:.4} |",
            s.part,
            s.requests.start,
            s.requests.end.saturating_sub(1),
            s.best.fixed,
            s.best.cost_per_item,
            s.best.accuracy * 100.0,
            s.best.forwarded * 100.0,
            s.never.cost_per_item,
            s.always.cost_per_item
        );
    }
    let before = if h.shift_at.is_some() {
        "before the shift vs its best"
    } else {
        "vs the best"
    };
    let _ = write!(
        out,
        "\n| service | cost per item | regret | regret / best's cost | {before} | recovery |\n\
         |---|--:|--:|--:|--:|---|\n"
    );
    for (name, r) in services {
        let _ = writeln!(
            out,
            "| {name} | {:.4} | {:.2} | {} | {} | {} |",
            r.cost_per_item,
            r.regret,
            r.regret_share.map_or("n/a".to_owned(), signed_percent),
            excess(r.before_cost_per_item, h.before().best.cost_per_item)
                .map_or("n/a".to_owned(), signed_percent),
            match r.recovery {
                None => "no shift".to_owned(),
                Some(Recovery::After(n)) => format!("{n} requests"),
                Some(Recovery::Not) => "not recovered".to_owned(),
            }
        );
    }
    out.push('\n');
    for sentence in sentences(h, services, ctx) {
        let _ = writeln!(out, "- {sentence}");
    }
    out
}

/// The summary, then every window of every service.
pub fn markdown(h: &Hindsight, services: &[(String, ServiceReport)], ctx: &Context) -> String {
    let mut out = format!(
        "# Against the best fixed threshold in hindsight\n\n{}\n## Windows\n\n\
         Cost per item of each service and of the best fixed τ of each request's segment; \
         regret is cumulative, against the whole stream's best fixed τ ({}).\n\n\
         | requests | service | cost per item | best fixed τ's | cumulative regret |\n\
         |---|---|--:|--:|--:|\n",
        summary(h, services, ctx),
        h.whole().best.fixed
    );
    for (i, window) in services[0].1.windows.iter().enumerate() {
        let shifted = if h.shift_at.is_some_and(|at| window.start >= at) {
            " (shifted)"
        } else {
            ""
        };
        for (name, r) in services {
            let w = &r.windows[i];
            let _ = writeln!(
                out,
                "| {}-{}{shifted} | {name} | {:.4} | {:.4} | {:.2} |",
                w.start,
                w.end - 1,
                w.cost,
                w.best,
                w.regret
            );
        }
    }
    out
}

/// Every window of every service as CSV.
pub fn csv(h: &Hindsight, services: &[(String, ServiceReport)]) -> String {
    let mut out =
        String::from("start,end,shifted,service,cost_per_item,best_cost_per_item,regret\n");
    for (i, window) in services[0].1.windows.iter().enumerate() {
        let shifted = h.shift_at.is_some_and(|at| window.start >= at);
        for (name, r) in services {
            let w = &r.windows[i];
            let _ = writeln!(
                out,
                "{},{},{shifted},{name},{:.6},{:.6},{:.6}",
                w.start, w.end, w.cost, w.best, w.regret
            );
        }
    }
    out
}

/// Cumulative regret over requests, a line per service, from 0 at request 0.
pub fn regret_svg(h: &Hindsight, services: &[(String, ServiceReport)], ctx: &Context) -> String {
    let lines: Vec<Series> = services
        .iter()
        .enumerate()
        .map(|(color, (name, r))| Series {
            label: name,
            points: std::iter::once((0.0, 0.0))
                .chain(r.windows.iter().map(|w| (w.end as f64, w.regret)))
                .collect(),
            color,
            dashed: false,
        })
        .collect();
    let title = format!(
        "cumulative regret against the best fixed τ in hindsight ({})",
        h.whole().best.fixed
    );
    plot::over_requests(
        &lines,
        ctx.requests,
        ctx.shift,
        &YAxis::Values("cumulative regret"),
        &title,
    )
}

/// Cost per item per window, a solid line per service, and the best fixed τ of each segment
/// dashed.
pub fn cost_svg(h: &Hindsight, services: &[(String, ServiceReport)], ctx: &Context) -> String {
    let middle = |start: usize, end: usize| (start + end) as f64 / 2.0;
    let mut lines: Vec<Series> = services
        .iter()
        .enumerate()
        .map(|(color, (name, r))| Series {
            label: name,
            points: r
                .windows
                .iter()
                .map(|w| (middle(w.start, w.end), w.cost))
                .collect(),
            color,
            dashed: false,
        })
        .collect();
    lines.push(Series {
        label: "best fixed τ",
        points: services[0]
            .1
            .windows
            .iter()
            .map(|w| (middle(w.start, w.end), w.best))
            .collect(),
        // The palette's last colour, grey, whatever the number of services.
        color: 5,
        dashed: true,
    });
    let title = format!(
        "cost per item per window (forward {}, wrong answer {})",
        h.costs.forward, h.costs.alpha
    );
    plot::over_requests(
        &lines,
        ctx.requests,
        ctx.shift,
        &YAxis::Values("cost per item"),
        &title,
    )
}

/// What the figures say of each service, in plain words: how close it is to the best fixed τ
/// before the shift (or over the stream), and whether and when it comes back after it.
pub fn sentences(
    h: &Hindsight,
    services: &[(String, ServiceReport)],
    ctx: &Context,
) -> Vec<String> {
    let tolerance = format!("{}%", ctx.tolerance * 100.0);
    let mut out = Vec::new();
    for (name, r) in services {
        let before = h.before();
        let when = if h.shift_at.is_some() {
            "Before the shift"
        } else {
            "Over the stream"
        };
        let verdict = match excess(r.before_cost_per_item, before.best.cost_per_item) {
            Some(share) if share > 0.0 => format!(
                "{} more, {} the {tolerance} tolerance",
                percent(share),
                if share <= ctx.tolerance {
                    "within"
                } else {
                    "outside"
                }
            ),
            Some(share) if share < 0.0 => format!("{} less", percent(-share)),
            _ if r.before_cost_per_item <= before.best.cost_per_item => "the same".to_owned(),
            _ => "more, where the best fixed τ costs nothing".to_owned(),
        };
        out.push(format!(
            "{when}, {name} costs {:.4} per item and the best fixed τ ({}) {:.4}: {verdict}.",
            r.before_cost_per_item, before.best.fixed, before.best.cost_per_item
        ));
        if let (Some(recovery), Some(after), Some((at, _))) = (r.recovery, h.after(), ctx.shift) {
            out.push(recovered(name, recovery, after, at, &tolerance));
        }
    }
    out
}

fn recovered(
    name: &str,
    recovery: Recovery,
    after: &Segment,
    at: usize,
    tolerance: &str,
) -> String {
    let against = format!(
        "within {tolerance} of the post-shift best fixed τ's ({}, {:.4} per item)",
        after.best.fixed, after.best.cost_per_item
    );
    match recovery {
        Recovery::After(n) => format!(
            "After the shift, {name}'s windowed cost stays {against} from request {} on: it \
             recovers {n} requests after the shift.",
            at + n
        ),
        Recovery::Not => format!(
            "After the shift, {name}'s windowed cost does not stay {against} to the end of the \
             stream: not recovered."
        ),
    }
}

/// How much more `cost` is than `best`, as a share of `best`; `None` when `best` is zero.
fn excess(cost: f64, best: f64) -> Option<f64> {
    (best > 0.0).then(|| (cost - best) / best)
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn signed_percent(share: f64) -> String {
    format!("{:+.1}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::super::Item;
    use super::super::fixtures::{COSTS, item, outcome};
    use super::*;
    use crate::replay::Outcome;

    #[test]
    fn the_report_answers_in_tables_sentences_and_plots() {
        // Local right before the shift at 4, wrong after; upstream always right.
        let items: Vec<Item> = (0..8).map(|i| item(0.9, i < 4, true)).collect();
        let h = Hindsight::new(&items, Some(4), COSTS);
        let late: Vec<Outcome> = (0..8)
            .map(|i| {
                outcome(
                    !(4..6).contains(&i),
                    if i < 6 { "served" } else { "forwarded" },
                )
            })
            .collect();
        let stuck: Vec<Outcome> = (0..8).map(|i| outcome(i < 4, "served")).collect();
        let services = vec![
            ("late".to_owned(), h.service(&late, 2, 0.1)),
            ("stuck".to_owned(), h.service(&stuck, 2, 0.1)),
        ];
        let ctx = Context {
            local: "small",
            upstream: "big",
            requests: 8,
            shift: Some((4, "shift: invert")),
            tolerance: 0.1,
        };
        let md = markdown(&h, &services, &ctx);
        assert!(
            md.contains(
                "| after the shift | 4-7 | 0.91 | 0.2500 | 100.00% | 100.0% | 1.0000 | 0.2500 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| late | 0.3125 | 0.50 | +25.0% | n/a | 2 requests |"),
            "{md}"
        );
        assert!(
            md.contains("| stuck | 0.5000 | 2.00 | +100.0% | n/a | not recovered |"),
            "{md}"
        );
        assert!(
            md.contains("it recovers 2 requests after the shift"),
            "{md}"
        );
        assert!(
            md.contains("| 6-7 (shifted) | stuck | 1.0000 | 0.2500 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("Before the shift, late costs 0.0000 per item and the best fixed τ (never forward) 0.0000: the same."),
            "{md}"
        );
        let csv = csv(&h, &services);
        assert_eq!(csv.lines().count(), 1 + 8);
        assert_eq!(
            csv.lines().nth(6).unwrap(),
            "4,6,true,stuck,1.000000,0.250000,0.500000"
        );
        let regret = regret_svg(&h, &services, &ctx);
        assert_eq!(regret.matches("<polyline").count(), 2);
        assert!(regret.contains(">shift: invert</text>"));
        let cost = cost_svg(&h, &services, &ctx);
        assert_eq!(cost.matches("<polyline").count(), 3);
        assert!(cost.contains(">best fixed τ</text>"));
    }

    #[test]
    fn the_sentence_before_the_shift_says_how_far_from_the_best() {
        let items: Vec<Item> = (0..4).map(|i| item(0.9, i < 2, true)).collect();
        // Best: forward all, 0.25 per item; the service forwards all but one right answer.
        let h = Hindsight::new(&items, None, COSTS);
        let outcomes: Vec<Outcome> = (0..4)
            .map(|i| outcome(true, if i == 0 { "served" } else { "forwarded" }))
            .collect();
        let services = vec![("s".to_owned(), h.service(&outcomes, 4, 0.05))];
        let ctx = Context {
            local: "small",
            upstream: "big",
            requests: 4,
            shift: None,
            tolerance: 0.05,
        };
        assert_eq!(
            sentences(&h, &services, &ctx),
            [
                "Over the stream, s costs 0.1875 per item and the best fixed τ (0.91) 0.2500: 25.0% less."
            ]
        );
    }
}
