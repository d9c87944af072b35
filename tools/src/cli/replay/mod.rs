//! `idn replay`: send a labelled sample (or a stream that shifts) to one or several services
//! and report accuracy, latency and where requests were answered, overall and per window; with
//! `--compare`, do so for several strategies of a network.

mod hindsight;
mod stream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use idn_telemetry::{self as telemetry, LogFormat};
use indicatif::{ProgressBar, ProgressStyle};

use super::up::NetworkArgs;
use super::{OutputFormat, SampleArgs};
use crate::compare::{self, Variant};
use crate::dataset::Dataset;
use crate::local::LocalNetwork;
use crate::raster;
use crate::replay::inputs::{self, Checked};
use crate::replay::window::{self, Window};
use crate::replay::{self, Load, Outcome, Stream, Summary, Target, feedback};
use hindsight::{HindsightArgs, Prepared};
use stream::StreamArgs;

/// Arguments of `idn replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  idn replay --url http://127.0.0.1:8101                     # against `idn up -f examples/mnist/`
  idn replay --compare -f examples/mnist/ --out results/     # strategies side by side
  idn replay --repeat 3 --shuffle --shift-at 1500 --shift rotate:30 --window 100 --out shift/
  idn replay --services mnist,mnist-linear --shift-at 1000 --shift rotate:30 --window 100 \
    --hindsight examples/models/mnist-linear.onnx,examples/models/mnist-mlp.onnx --forward-cost 0.1")]
pub struct Args {
    /// Base URL of the entry node's OIP v2 API.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8101",
        conflicts_with = "compare"
    )]
    pub url: String,
    /// Service (or model) the sample is sent to.
    #[arg(long, default_value = "mnist")]
    pub service: String,
    /// Several services (or models) of the node at --url, comma-separated: each gets the same
    /// stream, interleaved item by item so that they see the same conditions.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', conflicts_with_all = ["service", "compare"])]
    pub services: Vec<String>,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub hindsight: HindsightArgs,
    /// Report per window of W consecutive requests (accuracy, share forwarded upstream, share of
    /// fallbacks, mean latency): a table on the terminal, and windows.{md,csv,svg,png} in --out.
    #[arg(long, value_name = "W", conflicts_with = "compare", value_parser = clap::value_parser!(u64).range(1..))]
    pub window: Option<u64>,
    /// After each answer, post the item's true label to the service
    /// (POST /v2/models/{service}/feedback); each request then has the id replay-<n>.
    #[arg(long, conflicts_with = "compare")]
    pub feedback: bool,
    /// Send only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Items per second (open loop, each sent to every service at once) instead of as fast as the
    /// concurrency allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Compare strategies: run each variant of the network from `-f` on loopback in turn.
    #[arg(long)]
    pub compare: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Entry node for --compare [default: the network's first node].
    #[arg(long)]
    pub entry: Option<String>,
    /// Thresholds of the cascades compared.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])]
    pub taus: Vec<f64>,
    /// Directory for the tables (markdown, CSV) and plot (SVG, PNG) of --compare [default:
    /// idn-compare] or --window [default: idn-replay].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Name of the service's input, for samples that do not name it (raw, .npy, .npz).
    #[arg(long, value_name = "NAME", default_value = "input")]
    pub input: String,
    /// Class names of the service's output, in order, comma-separated; answers are matched to
    /// the sample's labels by these names [default: 0, 1, …]
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub output_labels: Vec<String>,
    /// How the summary is printed: json and yaml give one object per service (service,
    /// requests, errors, accuracy, latencies in ms, the share answered at each node, fallback)
    /// for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, conflicts_with = "compare")]
    pub output: OutputFormat,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // usvg warns of every text it cannot draw without fonts; the PNG step says it once.
    let _telemetry = telemetry::init(LogFormat::Text, "warn,usvg=error", "idn");
    let mut sample = args.sample.load()?;
    if let Some(limit) = args.limit {
        sample.truncate(limit);
    }
    sample.name_inputs(std::slice::from_ref(&args.input))?;
    let load = Load {
        concurrency: args.concurrency,
        rate: args.rate,
        labels: (!args.output_labels.is_empty()).then(|| args.output_labels.clone()),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if args.compare {
        return runtime.block_on(compare(args, &args.network, Arc::new(sample), &load));
    }
    let stream = Arc::new(args.stream.stream(sample, &args.sample, &args.input)?);
    if args.feedback {
        let classes = stream
            .samples()
            .flat_map(|s| s.classes.iter().map(String::as_str));
        feedback::check_classes(classes, load.labels.as_deref()).map_err(anyhow::Error::msg)?;
    }
    let hindsight = args.hindsight.prepare(&stream, load.labels.as_deref())?;
    runtime.block_on(replay_services(args, stream, &load, hindsight.as_ref()))
}

/// Checks the sample against each service, sends the stream and reports.
async fn replay_services(
    args: &Args,
    stream: Arc<Stream>,
    load: &Load,
    hindsight: Option<&Prepared>,
) -> anyhow::Result<ExitCode> {
    let services = if args.services.is_empty() {
        std::slice::from_ref(&args.service)
    } else {
        args.services.as_slice()
    };
    let samples: Vec<_> = stream.samples().collect();
    for service in services {
        if let Checked::Unknown(why) = inputs::check(&args.url, service, &samples).await? {
            eprintln!("note: the sample's inputs are not checked before sending: {why}");
        }
    }
    let targets: Vec<Target> = services
        .iter()
        .map(|s| Target::new(&args.url, s, args.feedback))
        .collect();
    let label = services.join(",");
    let outcomes = send(&targets, stream.clone(), load, &label).await?;
    let summaries = services
        .iter()
        .zip(&outcomes)
        .map(|(service, outcomes)| (service.as_str(), replay::summarize(outcomes), outcomes));
    match args.output {
        OutputFormat::Table => {
            for (service, summary, outcomes) in summaries {
                if services.len() > 1 {
                    println!("service    {service}");
                }
                print_summary(&summary);
                if args.feedback {
                    print_feedback(&feedback::tally(outcomes));
                }
            }
        }
        format => {
            let reports: Vec<_> = summaries
                .map(|(service, summary, _)| replay::Report { service, summary })
                .collect();
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", serde_norway::to_string(&reports)?);
            }
        }
    }
    if let Some(size) = args.window {
        let series: Vec<(String, Vec<Window>)> = services
            .iter()
            .zip(&outcomes)
            .map(|(s, o)| (s.clone(), window::windows(o, size as usize)))
            .collect();
        let out = args.out.clone().unwrap_or_else(|| "idn-replay".into());
        let shift = args.stream.describe();
        write_windows(&out, &series, &stream, shift.as_deref())?;
        if let Some(hindsight) = hindsight {
            hindsight.report(
                services,
                &outcomes,
                size as usize,
                &stream,
                shift.as_deref(),
                &out,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays `stream` to every target behind a progress bar; fails if every request to a target
/// failed.
async fn send(
    targets: &[Target],
    stream: Arc<Stream>,
    load: &Load,
    label: &str,
) -> anyhow::Result<Vec<Vec<Outcome>>> {
    let bar = ProgressBar::new((stream.len() * targets.len()) as u64).with_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let tick = bar.clone();
    let outcomes = replay::replay(targets, stream, load, move || tick.inc(1)).await;
    bar.finish_and_clear();
    for (target, outcomes) in targets.iter().zip(&outcomes) {
        if outcomes.iter().all(|o| o.answer.is_err()) {
            let first = outcomes
                .iter()
                .find_map(|o| o.answer.clone().err())
                .unwrap_or_default();
            bail!("every request to {} failed, e.g.: {first}", target.url());
        }
    }
    Ok(outcomes)
}

fn print_summary(s: &Summary) {
    println!("requests   {} ({} errors)", s.requests, s.errors);
    println!("accuracy   {:.2}%", s.accuracy * 100.0);
    println!(
        "latency    mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms
    );
    for (node, share) in &s.answered_by {
        println!("answered   {:>6.2}% at {node}", share * 100.0);
    }
    if s.fallback > 0.0 {
        println!(
            "degraded   {:.2}% (upstream failed; local fallback)",
            s.fallback * 100.0
        );
    }
}

fn print_feedback(t: &feedback::Tally) {
    println!("feedback   {} labels posted, {} refused", t.sent, t.failed);
    if let Some(error) = &t.first_error {
        println!("           first refusal: {error}");
    }
}

/// The windows as a table on the terminal and as files in `out`.
fn write_windows(
    out: &Path,
    series: &[(String, Vec<Window>)],
    stream: &Stream,
    shift: Option<&str>,
) -> anyhow::Result<()> {
    let shift_at = stream.shift_at();
    let table = window::markdown(series, shift_at);
    println!("\n{table}");
    let title = format!(
        "accuracy (solid) and share forwarded (dashed) over {} requests",
        stream.len()
    );
    let marker = shift_at.zip(shift);
    let svg = window::svg(series, stream.len(), marker, &title);
    let png = png(&svg, "windows")?;
    write_files(
        out,
        vec![
            ("windows.md", table.into_bytes()),
            ("windows.csv", window::csv(series, shift_at).into_bytes()),
            ("windows.svg", svg.into_bytes()),
            ("windows.png", png),
        ],
    )?;
    println!("wrote {}/windows.{{md,csv,svg,png}}", out.display());
    Ok(())
}

/// The PNG of `svg`, saying when it has no text; `stem` names the files.
fn png(svg: &str, stem: &str) -> anyhow::Result<Vec<u8>> {
    let png = raster::png(svg)?;
    if !png.has_text {
        eprintln!(
            "note: no font is installed, so {stem}.png has no text ({stem}.svg has it); \
             install one, e.g. fonts-dejavu-core"
        );
    }
    Ok(png.bytes)
}

/// Writes each (file name, bytes) into `out`, creating it if needed.
fn write_files(out: &Path, files: Vec<(&str, Vec<u8>)>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (file, bytes) in files {
        let path = out.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn compare(
    args: &Args,
    network_args: &NetworkArgs,
    sample: Arc<Dataset>,
    load: &Load,
) -> anyhow::Result<ExitCode> {
    let (manifests, network) = network_args.load()?;
    let mut manifests =
        manifests.in_namespace(&kube::ResourceExt::namespace(&network).unwrap_or_default());
    manifests.networks = vec![network.clone()];
    let entry = args
        .entry
        .clone()
        .unwrap_or_else(|| network.spec.nodes[0].name.clone());
    let chain: Vec<String> = compare::chain(&network, &entry, &args.service)
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let options = network_args.options(0);
    let mut results = Vec::new();
    for Variant { name, manifests } in
        compare::variants(&manifests, &entry, &args.service, &args.taus)
    {
        let running = LocalNetwork::start(&manifests, &manifests.networks[0], &options)
            .await
            .with_context(|| format!("variant {name}"))?;
        let addr = running.node(&entry).context("the entry node runs")?.addr;
        let target = Target::new(&format!("http://{addr}"), &args.service, false);
        let stream = Arc::new(Stream::plain(Arc::clone(&sample)));
        let outcomes = send(&[target], stream, load, &name).await;
        running.stop().await;
        results.push((name, replay::summarize(&outcomes?[0])));
    }
    let table = compare::markdown(&results, &chain);
    println!("{table}");
    let reference = format!("always-{}", chain.last().expect("a chain has its entry"));
    let verdict = compare::best_within(&results, &reference, 0.99).map(|(name, accuracy, latency)| {
        format!("best cascade within 99% of {reference}'s accuracy: {name}, at {:.1}% of its accuracy and {:.1}% of its mean latency", accuracy * 100.0, latency * 100.0)
    });
    if let Some(line) = &verdict {
        println!("{line}");
    }
    let out = args.out.clone().unwrap_or_else(|| "idn-compare".into());
    let title = format!(
        "{}: accuracy vs mean latency ({} requests each)",
        network.spec.nodes.len().to_string()
            + "-node network "
            + &kube::ResourceExt::name_any(&network),
        sample.len()
    );
    write_files(
        &out,
        vec![
            (
                "compare.md",
                format!("{table}\n{}\n", verdict.unwrap_or_default()).into_bytes(),
            ),
            ("compare.csv", compare::csv(&results, &chain).into_bytes()),
            ("compare.svg", compare::svg(&results, &title).into_bytes()),
        ],
    )?;
    println!("wrote {}/compare.{{md,csv,svg}}", out.display());
    Ok(ExitCode::SUCCESS)
}
