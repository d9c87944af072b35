//! The `idn` command line: one module per subcommand, plus the arguments several share.
//!
//! Adding a subcommand is a variant of [`Command`], a module with its `Args` and `run`, and a
//! line in [`Cli::run`].

pub mod calibrate;
pub mod crds;
pub mod render;
pub mod replay;
mod simulate;
pub mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use anyhow::bail;

use crate::dataset::{DEFAULT_IMAGES, DEFAULT_LABELS, Dataset, DatasetError, Source};

/// idn: tools for an inference delivery network.
#[derive(Debug, Parser)]
#[command(name = "idn", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Choose a cascade's confidence thresholds from a labelled sample.
    Calibrate(Box<calibrate::Args>),
    /// Print the CustomResourceDefinitions (YAML).
    Crds(crds::Args),
    /// Print the Kubernetes objects the operator would create for some manifests.
    Render(render::Args),
    /// Send a labelled sample to a service (or compare strategies) and report accuracy and latency.
    Replay(Box<replay::Args>),
    /// Simulate INFIDA's adaptive placement against its baselines on a synthetic network.
    Simulate(Box<simulate::Args>),
    /// Run a whole network on this machine from its manifests.
    Up(up::Args),
}

impl Cli {
    /// Runs the chosen subcommand; the exit code says whether it reached its goal.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Calibrate(args) => calibrate::run(&args),
            Command::Crds(args) => crds::run(&args),
            Command::Render(args) => render::run(&args),
            Command::Replay(args) => replay::run(&args),
            Command::Simulate(args) => simulate::run(&args),
            Command::Up(args) => up::run(&args),
        }
    }
}

/// A labelled sample: the raw `examples/data` pair by default, or `--data` (see
/// `docs/calibrate.md`, "Data formats").
#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    /// Features of the sample, raw u8, 784 per item, scaled to FP32 byte/255 [default: examples/data/mnist-test-1000.images.u8]
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    pub images: Option<PathBuf>,
    /// Labels of the sample: one u8 per item with --images, a .npy array of integers with a .npy --data [default: examples/data/mnist-test-1000.labels.u8]
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// The sample in another format, by extension: .npy (features [items, ...], any OIP dtype; labels from --labels), .npz (arrays x and y, or features and labels, and optionally classes) or .jsonl (one {"inputs": [OIP tensors], "label": N} per line)
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Names of the classes the labels 0, 1, … stand for, comma-separated; answers are matched to labels by these names [default: the .npz's classes, else 0 to the largest label]
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub classes: Vec<String>,
}

impl SampleArgs {
    /// Reads the sample; the defaults are relative to the current directory.
    pub fn load(&self) -> anyhow::Result<Dataset> {
        let classes = (!self.classes.is_empty()).then(|| self.classes.clone());
        if let Some(data) = &self.data {
            let extension = data.extension().and_then(|e| e.to_str()).unwrap_or("");
            let source = match (extension, &self.labels) {
                ("npy", Some(labels)) => Source::Npy {
                    features: data,
                    labels,
                },
                ("npy", None) => bail!("--data {}: a .npy sample needs --labels", data.display()),
                ("npz" | "jsonl", Some(_)) => bail!(
                    "--data {}: a .{extension} sample holds its labels; drop --labels",
                    data.display()
                ),
                ("npz", None) => Source::Npz(data),
                ("jsonl", None) => Source::JsonLines(data),
                _ => bail!(
                    "--data {}: the extension must be .npy, .npz or .jsonl",
                    data.display()
                ),
            };
            return Ok(Dataset::load(source, classes)?);
        }
        let images = self.images.as_deref().unwrap_or(Path::new(DEFAULT_IMAGES));
        let labels = self.labels.as_deref().unwrap_or(Path::new(DEFAULT_LABELS));
        Dataset::load(Source::Raw { images, labels }, classes).map_err(|error| {
            // The usual cause of a missing default file is running outside the repository root.
            let defaulted = match &error {
                DatasetError::Read { path, .. } => {
                    (self.images.is_none() && path == Path::new(DEFAULT_IMAGES))
                        || (self.labels.is_none() && path == Path::new(DEFAULT_LABELS))
                }
                _ => false,
            };
            let error = anyhow::Error::new(error);
            if defaulted {
                error.context(
                    "reading the example sample (the default paths are relative to the current \
                     directory: run from the repository root or pass --images and --labels)",
                )
            } else {
                error
            }
        })
    }
}

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Table,
    /// YAML, for manifests.
    Yaml,
    /// JSON, for scripts.
    Json,
}
