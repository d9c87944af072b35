//! Plots as SVG, written by hand: a few hundred bytes of markup need no plotting library.

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
        let _ = writeln!(
            out,
            "<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">accuracy</text>",
            (y0 + y1) / 2.0
        );
    }
}

/// Accuracy against latency (log scale), one labelled point each.
pub fn accuracy_latency(points: &[Point], title: &str) -> String {
    let frame = Frame::around(points);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        (W - RIGHT + LEFT) / 2.0,
        escape(title)
    );
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
