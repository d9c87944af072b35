//! The options that turn a sample into a stream of requests: repeats, shuffling, and a shift.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::SampleArgs;
use crate::dataset::Dataset;
use crate::dataset::shift::Transform;
use crate::replay::stream::{Order, Shift, Stream};

/// How the sample becomes a stream (without these options: every item once, in order).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Passes over the sample, for a stream K times as long from a small sample: every item
    /// then repeats K times.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat: u64,
    /// Send each pass in its own random order (seeded by --seed).
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of --shuffle and of a noise shift.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Request (counted from 0) from which the stream changes to --shift or --shift-to.
    #[arg(long, value_name = "N", requires = "shift_kind")]
    pub shift_at: Option<usize>,
    /// What the items change to: rotate:DEG (counter-clockwise), noise:SIGMA (Gaussian, sigma in
    /// the 0-1 range), blur:RADIUS (Gaussian, sigma in pixels) or invert. Needs image-like items
    /// ([H,W], [1,H,W], [H,W,1] or a flat square such as 784) of UINT8 (0-255) or FP32/FP64 (0-1).
    #[arg(long, value_name = "SPEC", requires = "shift_at", group = "shift_kind")]
    pub shift: Option<Transform>,
    /// A second sample the stream changes to: .npy (with --shift-labels), .npz, .jsonl, or raw
    /// u8 images (any other extension, with --shift-labels); its items follow the stream's order.
    #[arg(long, value_name = "FILE", requires = "shift_at", group = "shift_kind")]
    pub shift_to: Option<PathBuf>,
    /// Labels of --shift-to, for a .npy or raw sample.
    #[arg(long, value_name = "FILE", requires = "shift_to")]
    pub shift_labels: Option<PathBuf>,
}

impl StreamArgs {
    /// The stream of `base`; a second sample is read as `sample` reads the first (same class
    /// names) and its inputs named `input`.
    pub fn stream(
        &self,
        base: Dataset,
        sample: &SampleArgs,
        input: &str,
    ) -> anyhow::Result<Stream> {
        let order = Order {
            repeat: self.repeat as usize,
            shuffle: self.shuffle,
            seed: self.seed,
        };
        let shift = match (self.shift_at, self.shift, &self.shift_to) {
            (Some(at), Some(transform), _) => Some((at, Shift::Transform(transform))),
            (Some(at), None, Some(file)) => {
                let mut to = self.second_sample(file, sample)?;
                to.name_inputs(&[input.to_owned()])?;
                Some((at, Shift::Dataset(Arc::new(to))))
            }
            _ => None,
        };
        Ok(Stream::new(Arc::new(base), order, shift)?)
    }

    /// What the stream says it changes to, for reports.
    pub fn describe(&self) -> Option<String> {
        match (self.shift, &self.shift_to) {
            (Some(transform), _) => Some(format!("shift: {transform}")),
            (None, Some(file)) => Some(format!(
                "shift to {}",
                file.file_name().unwrap_or_default().to_string_lossy()
            )),
            _ => None,
        }
    }

    fn second_sample(
        &self,
        file: &std::path::Path,
        sample: &SampleArgs,
    ) -> anyhow::Result<Dataset> {
        let by_extension = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("npy" | "npz" | "jsonl")
        );
        if !by_extension && self.shift_labels.is_none() {
            anyhow::bail!(
                "--shift-to {}: raw u8 images need --shift-labels",
                file.display()
            );
        }
        SampleArgs {
            images: (!by_extension).then(|| file.to_owned()),
            data: by_extension.then(|| file.to_owned()),
            labels: self.shift_labels.clone(),
            classes: sample.classes.clone(),
        }
        .load()
    }
}
