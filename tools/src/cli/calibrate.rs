//! `idn calibrate`: run every model of a cascade over a labelled sample once, then search the
//! thresholds that meet a target and print them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use idn_contract::confidence::{Confidence, ConfidenceMetric};
use idn_contract::names::is_model_name;

use super::{OutputFormat, SampleArgs};
use idn_contract::confidence::{Features, Gate};

use crate::calibrate::guarantee::{self, Promise};
use crate::calibrate::holdout::Scoring;
use crate::calibrate::{self, Goal, TierProbs, TierScores, gate, holdout};
use crate::certificate;
use crate::dataset::{Dataset, numbered_classes};
use crate::inference::{Probabilities, SampleModel};
use crate::report::{Report, gate_lines, metric_name};

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
    /// Learn the confidence instead of using --metric: for each tier but the last, a logistic
    /// gate over maxProbability, margin and entropy, fitted on the sample to predict that the
    /// tier's answer is right; the thresholds then apply to the gate's score. With --splits the
    /// gate is fitted on each split's calibration part and compared with --metric.
    #[arg(long, value_enum, value_name = "KIND")]
    pub gate: Option<GateKind>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub promise: PromiseArgs,
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
    /// Name of the models' input, for samples that do not name it (raw, .npy, .npz).
    #[arg(long, value_name = "NAME", default_value = "input")]
    pub input: String,
    /// The class names of a model's outputs, in output order, when they are not 0, 1, …:
    /// MODEL=NAME,NAME,... with MODEL the file stem (e.g. mnist-cnn=0,1,2,3,4,5,6,7,8,9);
    /// repeat per model. Answers are matched to the sample's labels by these names.
    #[arg(long = "model-labels", value_name = "MODEL=NAME,...")]
    pub model_labels: Vec<String>,
    /// Name of the models' probability output ([items, classes]).
    #[arg(long, value_name = "NAME", default_value = "probs")]
    pub output_name: String,
}

/// A learned confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GateKind {
    /// sigmoid(bias + w1 p1 + w2 (p1 − p2) + w3 (1 − H(p)/log C)), by penalised logistic
    /// regression.
    Logistic,
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
    /// Reach at least this accuracy on unseen traffic (e.g. 0.97) with probability
    /// --confidence: the cheapest thresholds of a fixed τ grid whose exact lower bound on
    /// accuracy meets it (see docs/calibrate.md, "Calibration with a guarantee").
    #[arg(long, value_name = "ACCURACY", requires = "confidence")]
    pub min_accuracy: Option<f64>,
}

/// Options of guaranteed calibration (--min-accuracy).
#[derive(Debug, Clone, clap::Args)]
pub struct PromiseArgs {
    /// Probability that --min-accuracy holds on unseen traffic from the sample's distribution.
    #[arg(long, value_name = "PROBABILITY", requires = "min_accuracy")]
    pub confidence: Option<f64>,
    /// Hold out this fraction of the sample at random, choose thresholds on the rest and report
    /// whether the target held on the held-out part (guaranteed and plain).
    #[arg(long, value_name = "FRACTION", requires = "min_accuracy")]
    pub holdout: Option<f64>,
    /// Number of random hold-out splits [default: 1; with --splits alone, --holdout 0.5].
    #[arg(long, value_name = "K", requires = "min_accuracy")]
    pub splits: Option<usize>,
    /// Seed of the random splits.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl TargetArgs {
    /// The goal; clap's group already asks for exactly one of the two flags.
    fn goal(&self) -> anyhow::Result<Goal> {
        match (self.min_accuracy_ratio, self.max_last_tier) {
            (Some(ratio), _) => Ok(Goal::MinAccuracyRatio(ratio)),
            (None, Some(fraction)) => Ok(Goal::MaxLastTier(fraction)),
            (None, None) => bail!("give --min-accuracy-ratio, --max-last-tier or --min-accuracy"),
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
    let link_latency_ms = (!args.link_latency_ms.is_empty()).then_some(&args.link_latency_ms[..]);
    let confidence = Confidence {
        metric: args.metric,
        temperature: args.temperature,
        gate: None,
    };
    let mut dataset = args.sample.load()?;
    let (models, outputs, classes) = model_outputs(args, &mut dataset)?;
    let tiers: Vec<TierProbs<'_>> = models
        .iter()
        .zip(&outputs)
        .zip(&classes)
        .map(|((model, output), classes)| TierProbs {
            name: &model.name,
            probs: &output.values,
            classes,
        })
        .collect();
    let scores = calibrate::score(&tiers, &dataset.labels, &confidence)?;
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let features = args.gate.map(|_| gate::features(&tiers, &confidence));
    if let Some(promise) = promise(args) {
        return guaranteed(args, &scores, features.as_deref(), promise, &names);
    }
    let (gates, scores) = fit_on_all(features.as_deref(), scores, &names)?;
    let goal = args.target.goal()?;
    let calibration =
        calibrate::calibrate(&scores, goal, link_latency_ms).context("calibrating")?;
    let upstreams = if args.upstreams.is_empty() {
        names[1..].to_vec()
    } else {
        args.upstreams.clone()
    };
    let reported = if gates.is_empty() {
        confidence
    } else {
        Confidence {
            metric: ConfidenceMetric::Logistic,
            ..confidence
        }
    };
    let report = Report::new(&calibration, &names, &upstreams, reported, &gates);
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

/// With a learned confidence, the gates fitted on the whole sample and the scores they give;
/// otherwise no gate and the scores unchanged.
fn fit_on_all(
    features: Option<&[Vec<Features>]>,
    scores: Vec<TierScores>,
    names: &[String],
) -> anyhow::Result<(Vec<Gate>, Vec<TierScores>)> {
    let Some(features) = features else {
        return Ok((Vec::new(), scores));
    };
    let all: Vec<usize> = (0..scores[0].correct.len()).collect();
    Ok(gate::gated(features, &scores, names, &all)?)
}

/// The promise of guaranteed calibration, when --min-accuracy asks for one.
fn promise(args: &Args) -> Option<Promise> {
    Some(Promise {
        target: args.target.min_accuracy?,
        confidence: args.promise.confidence?,
    })
}

/// Guaranteed calibration on the whole sample, or on random hold-out splits of it; fails (with
/// exit status 1) when nothing can be certified on the whole sample. With `features`, the
/// confidence is a gate fitted on the calibration items, and on splits it is compared with
/// --metric.
fn guaranteed(
    args: &Args,
    scores: &[TierScores],
    features: Option<&[Vec<Features>]>,
    promise: Promise,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    let link_latency_ms = (!args.link_latency_ms.is_empty()).then_some(&args.link_latency_ms[..]);
    let p = &args.promise;
    if p.holdout.is_some() || p.splits.is_some() {
        let holdout = p.holdout.unwrap_or(0.5);
        let count = p.splits.unwrap_or(1);
        let run =
            |scoring| holdout::splits(scoring, promise, link_latency_ms, holdout, count, p.seed);
        let fixed = run(Scoring::Fixed(scores))?;
        let learned = features
            .map(|features| {
                run(Scoring::Gate {
                    features,
                    scores,
                    names,
                })
            })
            .transpose()?;
        let items = scores[0].correct.len();
        let test = holdout::test_items(items, holdout);
        let latency = link_latency_ms.is_some();
        let shown = learned.as_deref().unwrap_or(&fixed);
        print!(
            "{}",
            certificate::splits(shown, promise.target, test, items - test, latency)
        );
        if let Some(learned) = &learned {
            let metric = metric_name(args.metric);
            let scorings = [
                (metric.as_str(), &fixed[..]),
                ("logistic gate", &learned[..]),
            ];
            print!(
                "\n{}",
                certificate::comparison(scorings, names, promise.target, latency)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (gates, scores) = fit_on_all(features, scores.to_vec(), names)?;
    let result = guarantee::certify(&scores, promise, link_latency_ms)?;
    print!(
        "{}",
        certificate::guaranteed(&result, names, link_latency_ms)
    );
    let fitted: Vec<(String, Gate)> = names.iter().cloned().zip(gates).collect();
    print!("{}", gate_lines(&fitted));
    if result.choice.is_err() {
        eprintln!("error: the sample is too small to promise the target at this confidence");
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
    match promise(args) {
        Some(promise) => promise.validate()?,
        None => args.target.goal()?.validate()?,
    }
    if args.target.min_accuracy.is_some() && args.output != OutputFormat::Table {
        bail!("--min-accuracy prints a table only; drop --output");
    }
    if let Some(holdout) = args.promise.holdout
        && !(holdout > 0.0 && holdout < 1.0)
    {
        bail!("--holdout {holdout} must be in (0, 1)");
    }
    if args.promise.splits == Some(0) {
        bail!("--splits must be at least 1");
    }
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

/// Per class of a model, the sample's class of the same name.
type ClassMap = Vec<Option<usize>>;

/// Every model's outputs on the sample, computed once (the search only re-reads them), checked
/// to have distinct names, with each model's classes matched to the sample's by name.
fn model_outputs(
    args: &Args,
    dataset: &mut Dataset,
) -> anyhow::Result<(Vec<SampleModel>, Vec<Probabilities>, Vec<ClassMap>)> {
    dataset.name_inputs(std::slice::from_ref(&args.input))?;
    let inputs: Vec<String> = dataset.inputs.iter().map(|t| t.name.clone()).collect();
    let models = args
        .models
        .iter()
        .map(|path| SampleModel::load(path, &inputs, &args.output_name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = HashSet::new();
    if let Some(twice) = models.iter().find(|m| !names.insert(m.name.as_str())) {
        bail!(
            "two models are named {:?} (the file stem); strategies refer to models by name, so \
             the names must differ",
            twice.name
        );
    }
    let mut labels = model_labels(&args.model_labels)?;
    if let Some(unknown) = labels.keys().find(|name| !names.contains(name.as_str())) {
        bail!("--model-labels {unknown}: no --model has that file stem");
    }
    let outputs = models
        .iter()
        .map(|model| model.probabilities(dataset))
        .collect::<Result<Vec<_>, _>>()?;
    let classes = models
        .iter()
        .zip(&outputs)
        .map(|(model, output)| {
            let labels = labels
                .remove(&model.name)
                .unwrap_or_else(|| numbered_classes(output.classes));
            if labels.len() != output.classes {
                bail!(
                    "--model-labels {}: {} names for {} classes",
                    model.name,
                    labels.len(),
                    output.classes
                );
            }
            let map = dataset.class_map(&labels);
            if map.iter().all(Option::is_none) {
                bail!(
                    "{} knows none of the sample's classes (its classes: {}; the sample's: {}); \
                     name them with --model-labels or --classes",
                    model.path.display(),
                    labels.join(","),
                    dataset.classes.join(",")
                );
            }
            Ok(map)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((models, outputs, classes))
}

/// `--model-labels` by model name.
fn model_labels(values: &[String]) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let mut labels = HashMap::new();
    for value in values {
        let Some((model, names)) = value.split_once('=') else {
            bail!("--model-labels {value:?}: expected MODEL=NAME,NAME,...");
        };
        let names: Vec<String> = names.split(',').map(str::to_owned).collect();
        if labels.insert(model.to_owned(), names).is_some() {
            bail!("--model-labels names {model} twice");
        }
    }
    Ok(labels)
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
