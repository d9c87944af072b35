//! `idn calibrate`: run every model of a cascade over a labelled sample once, then search the
//! thresholds that meet a target and print them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use idn_contract::confidence::{Confidence, ConfidenceMetric};
use idn_contract::names::is_model_name;

use super::{OutputFormat, SampleArgs};
use crate::calibrate::{self, Goal, TierProbs};
use crate::dataset::Dataset;
use crate::inference::{Probabilities, SampleModel};
use crate::report::Report;

/// Confidence metrics, spelled as in the node-agent config.
const METRICS: [&str; 3] = ["maxProbability", "margin", "entropy"];

/// Arguments of `idn calibrate`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Example (from the repository root):
  idn calibrate --model examples/models/mnist-linear.onnx \\
    --model examples/models/mnist-mlp.onnx --model examples/models/mnist-cnn.onnx \\
    --min-accuracy-ratio 0.99 --link-latency-ms 5,40")]
pub struct Args {
    /// An ONNX model of the cascade; repeat in cascade order, nearest the user first (the last
    /// answers everything it gets). Its file stem names it in the strategies.
    #[arg(long = "model", value_name = "ONNX", required = true)]
    pub models: Vec<PathBuf>,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// How confidence is computed from a model's probabilities.
    #[arg(
        long,
        default_value = "maxProbability",
        value_parser = PossibleValuesParser::new(METRICS).try_map(|s| parse_metric(&s))
    )]
    pub metric: ConfidenceMetric,
    /// Temperature T > 0 applied to the probabilities before scoring (1: unchanged).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Latency of each link between consecutive tiers in milliseconds, comma-separated in
    /// cascade order (e.g. 5,40: 5 ms from the first tier to the second, 40 ms from the second
    /// to the third). With --min-accuracy-ratio the thresholds then minimise the expected link
    /// latency per request instead of the requests reaching the last tier; with
    /// --max-last-tier it is only reported.
    #[arg(long, value_name = "MS,...", value_delimiter = ',')]
    pub link_latency_ms: Vec<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// The upstream each tier but the last forwards to, as its node-agent config names it;
    /// repeat in cascade order (e.g. --upstream edge-0 --upstream cloud-0). Default: the next
    /// tier's model name.
    #[arg(long = "upstream", value_name = "NAME")]
    pub upstreams: Vec<String>,
    /// Name of the models' input tensor ([items, 784] FP32).
    #[arg(long, value_name = "NAME", default_value = "input")]
    pub input: String,
    /// Name of the models' probability output ([items, classes]).
    #[arg(long, value_name = "NAME", default_value = "probs")]
    pub output_name: String,
}

/// The target: exactly one.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Reach at least this fraction of the last model's accuracy (e.g. 0.99) with the fewest
    /// requests reaching the last tier.
    #[arg(long, value_name = "RATIO")]
    pub min_accuracy_ratio: Option<f64>,
    /// Let at most this fraction of requests reach the last tier (e.g. 0.10), with the highest
    /// accuracy.
    #[arg(long, value_name = "FRACTION")]
    pub max_last_tier: Option<f64>,
}

impl TargetArgs {
    /// The goal; clap's group already asks for exactly one of the two flags.
    fn goal(&self) -> anyhow::Result<Goal> {
        match (self.min_accuracy_ratio, self.max_last_tier) {
            (Some(ratio), _) => Ok(Goal::MinAccuracyRatio(ratio)),
            (None, Some(fraction)) => Ok(Goal::MaxLastTier(fraction)),
            (None, None) => bail!("give --min-accuracy-ratio or --max-last-tier"),
        }
    }
}

/// The metric as the node-agent config spells it, so the two cannot disagree.
fn parse_metric(name: &str) -> Result<ConfidenceMetric, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
}

/// Runs `idn calibrate`; fails (exit 1) when no thresholds meet the target, after printing the
/// closest found.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    check(args)?;
    let goal = args.target.goal()?;
    let link_latency_ms = (!args.link_latency_ms.is_empty()).then_some(&args.link_latency_ms[..]);
    let confidence = Confidence {
        metric: args.metric,
        temperature: args.temperature,
    };
    let dataset = args.sample.load()?;
    let (models, outputs) = model_outputs(args, &dataset)?;
    let classes = outputs[0].classes;
    let tiers: Vec<TierProbs<'_>> = models
        .iter()
        .zip(&outputs)
        .map(|(model, output)| TierProbs {
            name: &model.name,
            probs: &output.values,
        })
        .collect();
    let scores = calibrate::score(&tiers, classes, &dataset.labels, &confidence)?;
    let calibration =
        calibrate::calibrate(&scores, goal, link_latency_ms).context("calibrating")?;
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let upstreams = if args.upstreams.is_empty() {
        names[1..].to_vec()
    } else {
        args.upstreams.clone()
    };
    let report = Report::new(&calibration, &names, &upstreams, confidence);
    print!(
        "{}",
        match args.output {
            OutputFormat::Table => report.to_table(),
            OutputFormat::Yaml => report.to_yaml(),
            OutputFormat::Json => report.to_json(),
        }
    );
    if !report.feasible {
        eprintln!("error: no thresholds meet the target; the output shows the closest found");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The usage errors that need no model run, so that a typo fails at once.
fn check(args: &Args) -> anyhow::Result<()> {
    if args.models.len() < 2 {
        bail!(
            "a cascade needs at least two models (--model, in cascade order), got {}",
            args.models.len()
        );
    }
    if !args.upstreams.is_empty() && args.upstreams.len() + 1 != args.models.len() {
        bail!(
            "--upstream names where each tier but the last forwards: {} models need {}, got {}",
            args.models.len(),
            args.models.len() - 1,
            args.upstreams.len()
        );
    }
    if let Some(bad) = args.upstreams.iter().find(|u| !is_model_name(u)) {
        bail!("--upstream {bad:?}: use only letters, digits, '-', '_' and '.'");
    }
    args.target.goal()?.validate()?;
    if !args.link_latency_ms.is_empty() {
        calibrate::validate_link_latency(&args.link_latency_ms, args.models.len())
            .context("--link-latency-ms")?;
    }
    if !(args.temperature.is_finite() && args.temperature > 0.0) {
        bail!(
            "--temperature {} must be a finite number > 0",
            args.temperature
        );
    }
    Ok(())
}

/// Every model's outputs on the sample, computed once (the search only re-reads them), checked
/// to have distinct names and the same classes.
fn model_outputs(
    args: &Args,
    dataset: &Dataset,
) -> anyhow::Result<(Vec<SampleModel>, Vec<Probabilities>)> {
    let models = args
        .models
        .iter()
        .map(|path| SampleModel::load(path, &args.input, &args.output_name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = HashSet::new();
    if let Some(twice) = models.iter().find(|m| !names.insert(m.name.as_str())) {
        bail!(
            "two models are named {:?} (the file stem); strategies refer to models by name, so \
             the names must differ",
            twice.name
        );
    }
    let outputs = models
        .iter()
        .map(|model| model.probabilities(dataset))
        .collect::<Result<Vec<_>, _>>()?;
    let classes = outputs[0].classes;
    if let Some((model, other)) = models
        .iter()
        .zip(&outputs)
        .find(|(_, o)| o.classes != classes)
    {
        bail!(
            "{} has {} classes but {} has {classes}; a cascade's models must share their classes",
            model.path.display(),
            other.classes,
            models[0].path.display()
        );
    }
    Ok((models, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_metric_name_is_the_node_agent_spelling() {
        for name in METRICS {
            let metric = parse_metric(name).unwrap();
            assert_eq!(serde_json::to_value(metric).unwrap(), name);
        }
    }

    #[test]
    fn exactly_one_target_is_required() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["idn", "calibrate", "--model", "a.onnx", "--model", "b.onnx"];
            argv.extend(extra);
            crate::cli::Cli::try_parse_from(argv)
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--min-accuracy-ratio", "0.99", "--max-last-tier", "0.1"]).is_err());
        let cli = parse(&["--max-last-tier", "0.1", "--metric", "entropy"]).unwrap();
        let crate::cli::Command::Calibrate(args) = cli.command else {
            panic!("parsed as another subcommand")
        };
        assert_eq!(args.target.goal().unwrap(), Goal::MaxLastTier(0.1));
        assert_eq!(args.metric, ConfidenceMetric::Entropy);
        assert_eq!(args.output, OutputFormat::Table);
        assert!(parse(&["--max-last-tier", "0.1", "--metric", "max"]).is_err());
    }

    #[test]
    fn link_latencies_are_comma_separated() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["idn", "calibrate", "--model", "a.onnx", "--model", "b.onnx"];
            argv.extend(["--min-accuracy-ratio", "0.99"]);
            argv.extend(extra);
            match crate::cli::Cli::try_parse_from(argv)?.command {
                crate::cli::Command::Calibrate(args) => Ok::<_, clap::Error>(args.link_latency_ms),
                _ => panic!("parsed as another subcommand"),
            }
        };
        assert_eq!(parse(&[]).unwrap(), Vec::<f64>::new());
        assert_eq!(parse(&["--link-latency-ms", "5,40"]).unwrap(), [5.0, 40.0]);
        assert_eq!(parse(&["--link-latency-ms", "0.5"]).unwrap(), [0.5]);
        assert!(parse(&["--link-latency-ms", "5ms"]).is_err());
    }
}
