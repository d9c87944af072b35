//! The `idn` command line: one module per subcommand, plus the arguments several share.
//!
//! Adding a subcommand is a variant of [`Command`], a module with its `Args` and `run`, and a
//! line in [`Cli::run`].

pub mod calibrate;
pub mod crds;
pub mod render;
pub mod replay;
pub mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::dataset::{DEFAULT_IMAGES, DEFAULT_LABELS, Dataset, DatasetError, MNIST_FEATURES};

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
    Calibrate(calibrate::Args),
    /// Print the CustomResourceDefinitions (YAML).
    Crds(crds::Args),
    /// Print the Kubernetes objects the operator would create for some manifests.
    Render(render::Args),
    /// Send a labelled sample to a service (or compare strategies) and report accuracy and latency.
    Replay(replay::Args),
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
            Command::Up(args) => up::run(&args),
        }
    }
}

/// A labelled sample in the raw `examples/data` format.
#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    /// Features of the sample, raw u8, 784 per item [default: examples/data/mnist-test-1000.images.u8]
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Labels of the sample, one u8 per item [default: examples/data/mnist-test-1000.labels.u8]
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

impl SampleArgs {
    /// Reads the sample; the defaults are relative to the current directory.
    pub fn load(&self) -> anyhow::Result<Dataset> {
        let images = self.images.as_deref().unwrap_or(Path::new(DEFAULT_IMAGES));
        let labels = self.labels.as_deref().unwrap_or(Path::new(DEFAULT_LABELS));
        Dataset::load(images, labels, MNIST_FEATURES).map_err(|error| {
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
