//! Plots as SVG, written by hand: a few hundred bytes of markup need no plotting library
//! (`raster` turns them into PNG).

use std::fmt::Write as _;

/// One labelled point of an accuracy/latency plot.
pub struct Point<'a> {
    pub label: &'a str,
    pub latency_ms: f64,
    pub accuracy_percent: f64,
    /// Drawn in the first colour (blue) rather than the second (orange).
    pub highlighted: bool,
}

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// The plot area: latency on a log scale over whole decades, accuracy over whole percents.
struct Frame {
    x_lo: f64,
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
}

impl Frame {
    fn around(points: &[Point]) -> Frame {
        let latencies = points.iter().map(|p| p.latency_ms.max(1e-3));
        let (lo, hi) = latencies.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let accuracies = points.iter().map(|p| p.accuracy_percent);
        let (a_lo, a_hi) =
            accuracies.fold((f64::MAX, f64::MIN), |(lo, hi), a| (lo.min(a), hi.max(a)));
        Frame {
            x_lo: lo.log10().floor(),
            x_hi: hi.log10().ceil().max(lo.log10().floor() + 1.0),
            y_lo: (a_lo - 0.5).floor(),
            y_hi: (a_hi + 0.5).ceil(),
        }
    }

    fn x(&self, ms: f64) -> f64 {
        LEFT + (ms.max(1e-3).log10() - self.x_lo) / (self.x_hi - self.x_lo) * (W - LEFT - RIGHT)
    }

    fn y(&self, accuracy: f64) -> f64 {
        TOP + (self.y_hi - accuracy) / (self.y_hi - self.y_lo) * (H - TOP - BOTTOM)
    }

    /// The box, the grid lines with their labels, and the axis titles.
    fn draw_axes(&self, out: &mut String) {
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let _ = writeln!(
            out,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
            x1 - x0,
            y1 - y0
        );
        for decade in (self.x_lo as i32)..=(self.x_hi as i32) {
            let ms = 10f64.powi(decade);
            let px = self.x(ms);
            let _ = writeln!(
                out,
                "<line x1=\"{px:.1}\" y1=\"{y0}\" x2=\"{px:.1}\" y2=\"{y1}\" stroke=\"#ddd\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{ms}</text>",
                y1 + 16.0
            );
        }
        let step = if self.y_hi - self.y_lo > 6.0 {
            2.0
        } else {
            1.0
        };
        let mut acc = self.y_lo;
        while acc <= self.y_hi {
            let py = self.y(acc);
            let _ = writeln!(
                out,
                "<line x1=\"{x0}\" y1=\"{py:.1}\" x2=\"{x1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{acc}%</text>",
                x0 - 6.0,
                py + 4.0
            );
            acc += step;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">mean latency (ms, log scale)</text>",
            (x0 + x1) / 2.0,
            H - 18.0
        );
        y_title(out, "accuracy");
    }
}

/// The title of the vertical axis, along it.
fn y_title(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (TOP + H - BOTTOM) / 2.0,
        escape(title)
    );
}

/// Accuracy against latency (log scale), one labelled point each.
pub fn accuracy_latency(points: &[Point], title: &str) -> String {
    let frame = Frame::around(points);
    let mut out = open(title);
    frame.draw_axes(&mut out);
    for point in points {
        let (px, py) = (frame.x(point.latency_ms), frame.y(point.accuracy_percent));
        let color = if point.highlighted {
            "#1f6fb4"
        } else {
            "#d0542c"
        };
        let _ = writeln!(
            out,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"5\" fill=\"{color}\"/>"
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            px + 8.0,
            py + 4.0,
            escape(point.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The document's start: size, white background, title.
fn open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        (W - RIGHT + LEFT) / 2.0,
        escape(title)
    )
}

/// One line of a plot over requests.
pub struct Series<'a> {
    pub label: &'a str,
    /// (request, value), in request order.
    pub points: Vec<(f64, f64)>,
    /// Index into the palette: series of one service share a colour.
    pub color: usize,
    pub dashed: bool,
}

const PALETTE: [&str; 6] = [
    "#1f6fb4", "#d0542c", "#2e8b3e", "#8c4fb0", "#b08a1c", "#555555",
];

/// The vertical axis of a plot over requests.
pub enum YAxis<'a> {
    /// Shares in 0–1, drawn as 0–100%.
    Shares,
    /// Values, over the series' range (zero included) rounded out to ticks, with this title.
    Values(&'a str),
}

/// A vertical axis's range and labelled ticks.
struct Scale<'a> {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
    title: Option<&'a str>,
}

impl<'a> YAxis<'a> {
    fn scale(&self, series: &[Series]) -> Scale<'a> {
        match *self {
            YAxis::Shares => Scale {
                lo: 0.0,
                hi: 1.0,
                ticks: (0..=5)
                    .map(|tick| (f64::from(tick) / 5.0, format!("{}%", tick * 20)))
                    .collect(),
                title: None,
            },
            YAxis::Values(title) => {
                let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
                let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
                let step = round_step(if hi > lo { (hi - lo) / 5.0 } else { 1.0 });
                let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
                let decimals = (-step.log10()).ceil().max(0.0) as usize;
                Scale {
                    lo: first as f64 * step,
                    hi: last.max(first + 1) as f64 * step,
                    ticks: (first..=last.max(first + 1))
                        .map(|k| (k as f64 * step, format!("{:.decimals$}", k as f64 * step)))
                        .collect(),
                    title: Some(title),
                }
            }
        }
    }
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least `x` (> 0).
fn round_step(x: f64) -> f64 {
    let power = 10f64.powi(x.log10().floor() as i32);
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// Values over requests `0..requests` on `axis`, one line per series with a legend, and a
/// vertical line at `marker` (request, label) when given.
pub fn over_requests(
    series: &[Series],
    requests: usize,
    marker: Option<(usize, &str)>,
    axis: &YAxis,
    title: &str,
) -> String {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let scale = axis.scale(series);
    let x = |r: f64| x0 + r / requests.max(1) as f64 * (x1 - x0);
    let y = |v: f64| y1 - (v - scale.lo) / (scale.hi - scale.lo) * (y1 - y0);
    let mut out = open(title);
    let _ = writeln!(
        out,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        x1 - x0,
        y1 - y0
    );
    for (value, label) in &scale.ticks {
        let py = y(*value);
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{py:.1}\" x2=\"{x1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            x0 - 6.0,
            py + 4.0,
        );
    }
    if let Some(title) = scale.title {
        y_title(&mut out, title);
    }
    let step = tick_step(requests);
    for r in (0..=requests).step_by(step) {
        let px = x(r as f64);
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{y0}\" x2=\"{px:.1}\" y2=\"{y1}\" stroke=\"#eee\"/>\n\
             <text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{r}</text>",
            y1 + 16.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">request</text>",
        (x0 + x1) / 2.0,
        H - 18.0
    );
    if let Some((at, label)) = marker {
        let px = x(at as f64);
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{y0}\" x2=\"{px:.1}\" y2=\"{y1}\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            px + 4.0,
            y0 + 14.0,
            escape(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[s.color % PALETTE.len()];
        let dash = if s.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(r, v)| format!("{:.1},{:.1}", x(r), y(v)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
            points.join(" ")
        );
        let ly = y0 + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\n\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            x1 + 12.0,
            x1 + 36.0,
            x1 + 42.0,
            ly + 4.0,
            escape(s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A round step giving at most ten ticks over `0..=n`.
fn tick_step(n: usize) -> usize {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if n / (step * m) <= 10 {
                return step * m;
            }
        }
        step *= 10;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(7), 1);
        assert_eq!(tick_step(100), 10);
        assert_eq!(tick_step(1000), 100);
        assert_eq!(tick_step(3000), 500);
        assert_eq!(tick_step(12_000), 2000);
    }

    #[test]
    fn lines_legend_and_marker_are_drawn() {
        let series = [
            Series {
                label: "a <accuracy>",
                points: vec![(50.0, 1.0), (150.0, 0.5)],
                color: 0,
                dashed: false,
            },
            Series {
                label: "a forwarded",
                points: vec![(50.0, 0.0), (150.0, 0.25)],
                color: 0,
                dashed: true,
            },
        ];
        let svg = over_requests(
            &series,
            200,
            Some((100, "shift: invert")),
            &YAxis::Shares,
            "t",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("points=\"187.5,40.0 422.5,210.0\""), "{svg}");
        assert!(svg.contains("a &lt;accuracy&gt;"));
        assert!(svg.contains(">shift: invert</text>"));
        assert_eq!(
            svg.matches("stroke-dasharray=\"6 4\"").count(),
            2,
            "line and legend"
        );
    }

    #[test]
    fn a_value_axis_is_rounded_out_to_ticks_and_includes_zero() {
        let series = [Series {
            label: "regret",
            points: vec![(0.0, -0.3), (100.0, 1.7)],
            color: 0,
            dashed: false,
        }];
        let scale = YAxis::Values("cumulative regret").scale(&series);
        assert_eq!((scale.lo, scale.hi), (-0.5, 2.0));
        let labels: Vec<&str> = scale.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["-0.5", "0.0", "0.5", "1.0", "1.5", "2.0"]);
        let flat = [Series {
            points: vec![(0.0, 0.0)],
            ..series[0]
        }];
        let scale = YAxis::Values("cost").scale(&flat);
        assert_eq!((scale.lo, scale.hi, scale.ticks.len()), (0.0, 1.0, 2));
        let svg = over_requests(&series, 100, None, &YAxis::Values("cumulative regret"), "t");
        assert!(svg.contains(">cumulative regret</text>"), "{svg}");
        assert!(svg.contains("points=\"70.0,352.8 540.0,80.8\""), "{svg}");
        assert_eq!(
            (round_step(0.3), round_step(0.04), round_step(7.0)),
            (0.5, 0.05, 10.0)
        );
    }
}
