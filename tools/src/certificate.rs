//! Text for people of a guaranteed calibration ([`crate::calibrate::guarantee`]) and of its
//! hold-out splits ([`crate::calibrate::holdout`]).

use std::fmt::Write as _;

use crate::calibrate::Outcome;
use crate::calibrate::guarantee::Guaranteed;
use crate::calibrate::holdout::{Split, Tested};
use crate::table::{Align, render};

fn percent(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// τs as `name τ=0.9, name forward all`.
fn taus(names: &[String], taus: &[Option<f64>]) -> String {
    names
        .iter()
        .zip(taus)
        .map(|(name, tau)| match tau {
            Some(tau) => format!("{name} τ={tau}"),
            None => format!("{name} forwards all"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The promise, the thresholds chosen, their bound, forward rates and link latency; or why
/// nothing could be promised.
pub fn guaranteed(g: &Guaranteed, names: &[String], link_latency_ms: Option<&[f64]>) -> String {
    let mut out = String::new();
    let items = match &g.choice {
        Ok(c) | Err(c) => &c.outcome,
    }
    .items;
    let _ = writeln!(
        out,
        "promise: accuracy ≥ {} on unseen traffic with probability ≥ {}",
        percent(g.promise.target),
        g.promise.confidence
    );
    let _ = writeln!(
        out,
        "test:    {} candidates (τ grid per tier), Clopper–Pearson bounds at level {:.3e} each \
         (Bonferroni), {items} items",
        g.candidates, g.alpha
    );
    match &g.choice {
        Ok(chosen) => {
            let o = &chosen.outcome;
            let _ = writeln!(out, "result:  {}", taus(names, &o.taus()));
            let _ = writeln!(
                out,
                "         accuracy {} on the sample, lower bound {}",
                percent(o.accuracy()),
                percent(chosen.bound)
            );
            out += &forwards(o, names);
            if let Some(links) = link_latency_ms {
                let _ = writeln!(
                    out,
                    "         expected link latency {:.2} ms per request",
                    o.link_latency(links)
                );
            }
        }
        Err(best) => {
            let _ = writeln!(
                out,
                "REFUSED: no candidate can be certified. The highest bound is {} ({}, {} right on \
                 the sample); with {items} items even a perfect cascade is bounded at {}. Use more \
                 items, a lower --min-accuracy or a lower --confidence.",
                percent(best.bound),
                taus(names, &best.outcome.taus()),
                percent(best.outcome.accuracy()),
                percent(g.best_possible),
            );
        }
    }
    out
}

/// The share of requests reaching each tier after the first.
fn forwards(o: &Outcome, names: &[String]) -> String {
    let reach: Vec<String> = o.tiers[1..]
        .iter()
        .zip(&names[1..])
        .map(|(t, name)| {
            format!(
                "{} reach {name}",
                percent(t.reached as f64 / o.items as f64)
            )
        })
        .collect();
    format!("         forwarded: {}\n", reach.join(", "))
}

/// One row per split and how often the promise held, guaranteed beside plain.
pub fn splits(
    splits: &[Split],
    target: f64,
    test_items: usize,
    calibration_items: usize,
    latency: bool,
) -> String {
    let cost = |c: f64| {
        if latency {
            format!("{c:.2} ms")
        } else {
            percent(c)
        }
    };
    let fmt_taus = |taus: &[Option<f64>]| {
        taus.iter()
            .map(|t| t.map_or("fwd".to_owned(), |t| t.to_string()))
            .collect::<Vec<_>>()
            .join("/")
    };
    let rows: Vec<Vec<String>> = splits
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut row = vec![(i + 1).to_string()];
            match &s.guaranteed {
                Some((t, bound)) => row.extend([
                    fmt_taus(&t.taus),
                    percent(*bound),
                    percent(t.accuracy),
                    yes(t.held),
                    cost(t.cost),
                ]),
                None => row.extend(["refused".into(), "".into(), "".into(), "".into(), "".into()]),
            }
            match &s.plain {
                Some(t) => row.extend([
                    fmt_taus(&t.taus),
                    percent(t.accuracy),
                    yes(t.held),
                    cost(t.cost),
                ]),
                None => row.extend(["none".into(), "".into(), "".into(), "".into()]),
            }
            row
        })
        .collect();
    let cost_title = if latency { "link ms" } else { "to last" };
    let r = Align::Right;
    let mut out = format!(
        "{} random splits: choose on {calibration_items} items, test on {test_items}; target {}\n",
        splits.len(),
        percent(target)
    );
    out += &render(
        &[
            ("split", r),
            ("guaranteed τ", Align::Left),
            ("bound", r),
            ("test acc", r),
            ("held", Align::Left),
            (cost_title, r),
            ("plain τ", Align::Left),
            ("test acc", r),
            ("held", Align::Left),
            (cost_title, r),
        ],
        &rows,
    );
    let n = splits.len();
    let guaranteed: Vec<_> = splits
        .iter()
        .filter_map(|s| s.guaranteed.as_ref())
        .collect();
    let plain: Vec<_> = splits.iter().filter_map(|s| s.plain.as_ref()).collect();
    let held_g = guaranteed.iter().filter(|(t, _)| t.held).count();
    let held_p = plain.iter().filter(|t| t.held).count();
    let _ = writeln!(
        out,
        "guaranteed: target held on the test part in {held_g} of {n} splits ({}), refused in {}",
        percent(held_g as f64 / n as f64),
        n - guaranteed.len()
    );
    let _ = writeln!(
        out,
        "plain:      target held on the test part in {held_p} of {n} splits ({}), no choice in {}",
        percent(held_p as f64 / n as f64),
        n - plain.len()
    );
    // The cost of the guarantee, over the splits where both chose.
    let both: Vec<(f64, f64)> = splits
        .iter()
        .filter_map(|s| Some((s.guaranteed.as_ref()?.0.cost, s.plain.as_ref()?.cost)))
        .collect();
    if !both.is_empty() {
        let mean = |f: fn(&(f64, f64)) -> f64| both.iter().map(f).sum::<f64>() / both.len() as f64;
        let (g, p) = (mean(|b| b.0), mean(|b| b.1));
        let what = if latency {
            "mean expected link latency on the test part"
        } else {
            "mean share reaching the last tier on the test part"
        };
        let _ = writeln!(
            out,
            "cost:       {what}: guaranteed {}, plain {} ({:+.1}%), over {} splits",
            cost(g),
            cost(p),
            if p > 0.0 { (g / p - 1.0) * 100.0 } else { 0.0 },
            both.len()
        );
    }
    out
}

fn yes(held: bool) -> String {
    if held { "yes" } else { "NO" }.to_owned()
}

/// Two confidences chosen and tested on the same splits, guaranteed and plain each: how often
/// the target held, and mean test accuracy, share reaching each later tier and cost over the
/// splits where a choice was made.
pub fn comparison(
    scorings: [(&str, &[Split]); 2],
    names: &[String],
    target: f64,
    latency: bool,
) -> String {
    let mut rows = Vec::new();
    for (label, splits) in scorings {
        let guaranteed: Vec<&Tested> = splits
            .iter()
            .filter_map(|s| s.guaranteed.as_ref().map(|(t, _)| t))
            .collect();
        let plain: Vec<&Tested> = splits.iter().filter_map(|s| s.plain.as_ref()).collect();
        for (choice, tested) in [("guaranteed", guaranteed), ("plain", plain)] {
            let mean = |f: &dyn Fn(&Tested) -> f64| {
                tested.iter().map(|t| f(t)).sum::<f64>() / tested.len() as f64
            };
            let mut row = vec![
                label.to_owned(),
                choice.to_owned(),
                format!(
                    "{} / {}",
                    tested.iter().filter(|t| t.held).count(),
                    splits.len()
                ),
                (splits.len() - tested.len()).to_string(),
            ];
            if tested.is_empty() {
                row.extend(std::iter::repeat_n(
                    String::new(),
                    names.len() + usize::from(latency),
                ));
            } else {
                row.push(percent(mean(&|t| t.accuracy)));
                row.extend((0..names.len() - 1).map(|i| percent(mean(&|t| t.reached[i]))));
                if latency {
                    row.push(format!("{:.2} ms", mean(&|t| t.cost)));
                }
            }
            rows.push(row);
        }
    }
    let r = Align::Right;
    let reach: Vec<String> = names[1..].iter().map(|n| format!("reach {n}")).collect();
    let mut columns = vec![
        ("confidence", Align::Left),
        ("choice", Align::Left),
        ("held", r),
        ("no choice", r),
        ("test acc", r),
    ];
    columns.extend(reach.iter().map(|n| (n.as_str(), r)));
    if latency {
        columns.push(("link ms", r));
    }
    let mut out = format!(
        "on the same {} splits, target {} (means over the splits with a choice):\n",
        scorings[0].1.len(),
        percent(target)
    );
    out += &render(&columns, &rows);
    out
}
