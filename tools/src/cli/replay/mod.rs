//! `idn replay`: send a labelled sample to a service and report accuracy, latency and where
//! requests were answered; with `--compare`, do so for several strategies of a network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use idn_telemetry::{self as telemetry, LogFormat};
use indicatif::{ProgressBar, ProgressStyle};

use super::SampleArgs;
use super::up::NetworkArgs;
use crate::compare::{self, Variant};
use crate::dataset::Dataset;
use crate::local::LocalNetwork;
use crate::replay::{self, Load, Summary};

/// Arguments of `idn replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  idn replay --url http://127.0.0.1:8101                     # against `idn up -f examples/mnist/`
  idn replay --compare -f examples/mnist/ --out results/     # strategies side by side")]
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
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Send only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Requests per second (open loop) instead of as fast as the concurrency allows.
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
    /// Directory for the comparison's table (markdown, CSV) and plot (SVG).
    #[arg(long, default_value = "idn-compare")]
    pub out: PathBuf,
    /// Name of the service's input, for samples that do not name it (raw, .npy, .npz).
    #[arg(long, value_name = "NAME", default_value = "input")]
    pub input: String,
    /// Class names of the service's output, in order, comma-separated; answers are matched to
    /// the sample's labels by these names [default: 0, 1, …]
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub output_labels: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let _telemetry = telemetry::init(LogFormat::Text, "warn", "idn");
    let mut sample = args.sample.load()?;
    if let Some(limit) = args.limit {
        sample.truncate(limit);
    }
    sample.name_inputs(std::slice::from_ref(&args.input))?;
    let sample = Arc::new(sample);
    let load = Load {
        concurrency: args.concurrency,
        rate: args.rate,
        labels: (!args.output_labels.is_empty()).then(|| args.output_labels.clone()),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if args.compare {
        return runtime.block_on(compare(args, &args.network, sample, &load));
    }
    let url = format!(
        "{}/v2/models/{}/infer",
        args.url.trim_end_matches('/'),
        args.service
    );
    let summary = runtime.block_on(send(&url, sample, &load, &args.service))?;
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

async fn send(
    url: &str,
    sample: Arc<Dataset>,
    load: &Load,
    label: &str,
) -> anyhow::Result<Summary> {
    let bar = ProgressBar::new(sample.len() as u64).with_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let tick = bar.clone();
    let outcomes = replay::replay(url, sample, load, move || tick.inc(1)).await;
    bar.finish_and_clear();
    let summary = replay::summarize(&outcomes);
    if summary.errors == summary.requests {
        let first = outcomes
            .iter()
            .find_map(|o| o.answer.clone().err())
            .unwrap_or_default();
        bail!("every request to {url} failed, e.g.: {first}");
    }
    Ok(summary)
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
        let url = format!("http://{addr}/v2/models/{}/infer", args.service);
        let summary = send(&url, Arc::clone(&sample), load, &name).await;
        running.stop().await;
        results.push((name, summary?));
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let title = format!(
        "{}: accuracy vs mean latency ({} requests each)",
        network.spec.nodes.len().to_string()
            + "-node network "
            + &kube::ResourceExt::name_any(&network),
        sample.len()
    );
    for (file, text) in [
        (
            "compare.md",
            format!("{table}\n{}\n", verdict.unwrap_or_default()),
        ),
        ("compare.csv", compare::csv(&results, &chain)),
        ("compare.svg", compare::svg(&results, &title)),
    ] {
        let path = args.out.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {}/compare.{{md,csv,svg}}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
