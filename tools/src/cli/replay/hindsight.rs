//! The options that set each replayed service against the best fixed threshold in hindsight of
//! a two-tier cascade, and the files that report it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::inference::SampleModel;
use crate::replay::hindsight::report::{self, Context};
use crate::replay::hindsight::{Costs, Hindsight, ServiceReport, items};
use crate::replay::{Outcome, Stream};

/// The cascade and the costs of `--hindsight`.
#[derive(Debug, Clone, clap::Args)]
pub struct HindsightArgs {
    /// Set each service against the best fixed threshold in hindsight of a two-tier cascade:
    /// the entry node's model and the model that answers what it forwards, both run here over
    /// every request sent. Cost per item: --forward-cost when forwarded, plus --alpha when the
    /// answer is wrong. Writes hindsight.{md,csv} and plots of regret and of cost per window
    /// to --out.
    #[arg(
        long,
        value_name = "LOCAL.onnx,UPSTREAM.onnx",
        value_delimiter = ',',
        requires_all = ["forward_cost", "window"],
        conflicts_with = "compare"
    )]
    pub hindsight: Vec<PathBuf>,
    /// Cost of a wrong answer (or an error), with --hindsight.
    #[arg(long, value_name = "A", default_value_t = 1.0)]
    pub alpha: f64,
    /// Cost of forwarding an item upstream, with --hindsight.
    #[arg(long, value_name = "C", requires = "hindsight")]
    pub forward_cost: Option<f64>,
    /// After a shift, a service has recovered from the request on which its cost per window
    /// stays within this share (0.1: 10 %) of the post-shift best fixed threshold's.
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    pub recovery_tolerance: f64,
    /// Name of the --hindsight models' probability output ([items, classes]).
    #[arg(long, value_name = "NAME", default_value = "probs")]
    pub output_name: String,
}

/// Both tiers' answers to the stream, ready to set services against.
#[derive(Debug)]
pub struct Prepared {
    hindsight: Hindsight,
    local: String,
    upstream: String,
    tolerance: f64,
}

impl HindsightArgs {
    /// With --hindsight, loads both models and runs them over every request of `stream`,
    /// naming classes after `labels` as the replay names answers.
    pub fn prepare(
        &self,
        stream: &Stream,
        labels: Option<&[String]>,
    ) -> anyhow::Result<Option<Prepared>> {
        if self.hindsight.is_empty() {
            return Ok(None);
        }
        let [local, upstream] = &self.hindsight[..] else {
            bail!(
                "--hindsight takes two models, LOCAL.onnx,UPSTREAM.onnx; got {}",
                self.hindsight.len()
            );
        };
        let costs = Costs {
            alpha: non_negative("--alpha", self.alpha)?,
            forward: non_negative("--forward-cost", self.forward_cost.unwrap_or_default())?,
        };
        let tolerance = non_negative("--recovery-tolerance", self.recovery_tolerance)?;
        let base = stream
            .samples()
            .next()
            .expect("a stream has its base sample");
        let inputs: Vec<String> = base.inputs.iter().map(|t| t.name.clone()).collect();
        let load = |path: &Path| SampleModel::load(path, &inputs, &self.output_name);
        let (local, upstream) = (load(local)?, load(upstream)?);
        let start = Instant::now();
        let items = items::items(stream, &local, &upstream, labels)?;
        println!(
            "hindsight  {} and {} run over the {} requests in {:.1} s",
            local.name,
            upstream.name,
            items.len(),
            start.elapsed().as_secs_f64()
        );
        Ok(Some(Prepared {
            hindsight: Hindsight::new(&items, stream.shift_at(), costs),
            local: local.name,
            upstream: upstream.name,
            tolerance,
        }))
    }
}

fn non_negative(flag: &str, value: f64) -> anyhow::Result<f64> {
    if !(value.is_finite() && value >= 0.0) {
        bail!("{flag} {value}: must be a number >= 0");
    }
    Ok(value)
}

impl Prepared {
    /// Sets each service's outcomes against the best fixed policies, in windows of `size`:
    /// the summary on the terminal, the tables and plots in `out`.
    pub fn report(
        &self,
        services: &[String],
        outcomes: &[Vec<Outcome>],
        size: usize,
        stream: &Stream,
        shift: Option<&str>,
        out: &Path,
    ) -> anyhow::Result<()> {
        let reports: Vec<(String, ServiceReport)> = services
            .iter()
            .zip(outcomes)
            .map(|(s, o)| (s.clone(), self.hindsight.service(o, size, self.tolerance)))
            .collect();
        let ctx = Context {
            local: &self.local,
            upstream: &self.upstream,
            requests: stream.len(),
            shift: stream.shift_at().zip(shift),
            tolerance: self.tolerance,
        };
        let h = &self.hindsight;
        println!("\n{}", report::summary(h, &reports, &ctx));
        let regret = report::regret_svg(h, &reports, &ctx);
        let cost = report::cost_svg(h, &reports, &ctx);
        super::write_files(
            out,
            vec![
                (
                    "hindsight.md",
                    report::markdown(h, &reports, &ctx).into_bytes(),
                ),
                ("hindsight.csv", report::csv(h, &reports).into_bytes()),
                (
                    "hindsight-regret.png",
                    super::png(&regret, "hindsight-regret")?,
                ),
                ("hindsight-regret.svg", regret.into_bytes()),
                ("hindsight-cost.png", super::png(&cost, "hindsight-cost")?),
                ("hindsight-cost.svg", cost.into_bytes()),
            ],
        )
        .with_context(|| "writing the hindsight report")?;
        println!(
            "wrote {}/hindsight.{{md,csv}}, hindsight-regret.{{svg,png}}, hindsight-cost.{{svg,png}}",
            out.display()
        );
        Ok(())
    }
}
