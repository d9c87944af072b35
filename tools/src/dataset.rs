//! Labelled samples in the raw format of `examples/data`: one file of `u8` features (item `i`
//! is bytes `[i*features, (i+1)*features)`) and one file of `u8` labels, one byte per item.
//!
//! Features are scaled to `f32` as `byte / 255`, the input convention of the example models.
//! The number of items is not stored anywhere: it is inferred from the file sizes, and the two
//! files must agree, so a truncated or mismatched pair is caught before any model runs.

use std::path::{Path, PathBuf};

/// Features per item of the example MNIST sample (28 × 28 pixels).
pub const MNIST_FEATURES: usize = 784;
/// The example sample's images, relative to the repository root.
pub const DEFAULT_IMAGES: &str = "examples/data/mnist-test-1000.images.u8";
/// The example sample's labels, relative to the repository root.
pub const DEFAULT_LABELS: &str = "examples/data/mnist-test-1000.labels.u8";

/// Why a sample cannot be read; every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    // The I/O error is part of the message rather than a `source`, so that it is printed
    // once however the error is displayed.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("{path} has {len} bytes, not a multiple of {features} (one item is {features} bytes)")]
    Truncated {
        path: PathBuf,
        len: usize,
        features: usize,
    },
    #[error("{images} holds {items} items but {labels} holds {labels_len} labels")]
    CountMismatch {
        images: PathBuf,
        items: usize,
        labels: PathBuf,
        labels_len: usize,
    },
}

/// A labelled sample held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features per item.
    pub features: usize,
    /// `[items, features]` row-major, each value `byte / 255`.
    pub inputs: Vec<f32>,
    /// One label per item.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Reads a sample from its feature and label files.
    pub fn load(images: &Path, labels: &Path, features: usize) -> Result<Self, DatasetError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| DatasetError::Read {
                path: path.to_owned(),
                error,
            })
        };
        Self::from_bytes(&read(images)?, images, &read(labels)?, labels, features)
    }

    /// Builds a sample from the two files' contents; the paths only name them in errors.
    pub fn from_bytes(
        image_bytes: &[u8],
        images: &Path,
        label_bytes: &[u8],
        labels: &Path,
        features: usize,
    ) -> Result<Self, DatasetError> {
        for (bytes, path) in [(image_bytes, images), (label_bytes, labels)] {
            if bytes.is_empty() {
                return Err(DatasetError::Empty {
                    path: path.to_owned(),
                });
            }
        }
        if features == 0 || !image_bytes.len().is_multiple_of(features) {
            return Err(DatasetError::Truncated {
                path: images.to_owned(),
                len: image_bytes.len(),
                features,
            });
        }
        let items = image_bytes.len() / features;
        if items != label_bytes.len() {
            return Err(DatasetError::CountMismatch {
                images: images.to_owned(),
                items,
                labels: labels.to_owned(),
                labels_len: label_bytes.len(),
            });
        }
        Ok(Dataset {
            features,
            inputs: image_bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
            labels: label_bytes.to_vec(),
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the sample has no item (never true for a loaded sample).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The features of item `i`.
    pub fn input(&self, i: usize) -> &[f32] {
        &self.inputs[i * self.features..(i + 1) * self.features]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(images: &[u8], labels: &[u8], features: usize) -> Result<Dataset, DatasetError> {
        Dataset::from_bytes(
            images,
            Path::new("x.images.u8"),
            labels,
            Path::new("x.labels.u8"),
            features,
        )
    }

    #[test]
    fn items_are_inferred_from_the_sizes_and_scaled() {
        let dataset = parse(&[0, 255, 51, 102, 0, 0], &[7, 1, 3], 2).unwrap();
        assert_eq!(dataset.len(), 3);
        assert_eq!(dataset.input(0), [0.0, 1.0]);
        assert_eq!(dataset.input(1), [0.2, 0.4]);
        assert_eq!(dataset.labels, [7, 1, 3]);
    }

    #[test]
    fn pixels_match_the_model_convention_exactly() {
        // The models were fed float32(pixel) / float32(255); any other rounding would move
        // confidences and so thresholds.
        let bytes: Vec<u8> = (0..=255).collect();
        let dataset = parse(&bytes, &[0], 256).unwrap();
        for (b, x) in bytes.iter().zip(dataset.input(0)) {
            assert_eq!(*x, *b as f32 / 255f32);
        }
    }

    #[test]
    fn wrong_sizes_are_reported_with_the_file() {
        let err = parse(&[0; 7], &[0, 0], 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "x.images.u8 has 7 bytes, not a multiple of 3 (one item is 3 bytes)"
        );
        let err = parse(&[0; 6], &[0, 0, 0], 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "x.images.u8 holds 2 items but x.labels.u8 holds 3 labels"
        );
        let err = parse(&[0; 6], &[], 3).unwrap_err().to_string();
        assert_eq!(err, "x.labels.u8 is empty");
        let err = parse(&[], &[1], 3).unwrap_err().to_string();
        assert_eq!(err, "x.images.u8 is empty");
    }

    #[test]
    fn a_missing_file_is_named() {
        let missing = Path::new("no/such/dir/images.u8");
        let err = Dataset::load(missing, missing, MNIST_FEATURES).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read no/such/dir/images.u8: "),
            "{err}"
        );
    }

    #[test]
    fn the_example_sample_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dataset = Dataset::load(
            &root.join(DEFAULT_IMAGES),
            &root.join(DEFAULT_LABELS),
            MNIST_FEATURES,
        )
        .unwrap();
        assert_eq!(dataset.len(), 1000);
        assert!(dataset.labels.iter().all(|&l| l < 10));
    }
}
