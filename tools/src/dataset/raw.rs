//! The raw format of `examples/data`: one file of `u8` features (item `i` is bytes
//! `[i*784, (i+1)*784)`) and one file of `u8` labels, one byte per item.
//!
//! Features are scaled to FP32 as `byte / 255`, the input convention of the example models,
//! and shaped `[items, 784]`. The number of items is not stored anywhere: it is inferred from
//! the file sizes, and the two files must agree, so a truncated or mismatched pair is caught
//! before any model runs.

use std::path::Path;

use idn_node_agent::wire::tensor::{Tensor, TensorData};

use super::{DatasetError, Read, read_file};

/// Features per item of the example MNIST sample (28 × 28 pixels).
pub const MNIST_FEATURES: usize = 784;
/// The example sample's images, relative to the repository root.
pub const DEFAULT_IMAGES: &str = "examples/data/mnist-test-1000.images.u8";
/// The example sample's labels, relative to the repository root.
pub const DEFAULT_LABELS: &str = "examples/data/mnist-test-1000.labels.u8";

pub(super) fn read(images: &Path, labels: &Path) -> Result<Read, DatasetError> {
    parse(&read_file(images)?, images, &read_file(labels)?, labels)
}

/// The two files' contents; the paths only name them in errors.
fn parse(
    image_bytes: &[u8],
    images: &Path,
    label_bytes: &[u8],
    labels: &Path,
) -> Result<Read, DatasetError> {
    for (bytes, path) in [(image_bytes, images), (label_bytes, labels)] {
        if bytes.is_empty() {
            return Err(DatasetError::Empty {
                path: path.to_owned(),
            });
        }
    }
    if !image_bytes.len().is_multiple_of(MNIST_FEATURES) {
        return Err(DatasetError::invalid(
            images,
            format!(
                "{} bytes are not a multiple of {MNIST_FEATURES} (one item is {MNIST_FEATURES} bytes)",
                image_bytes.len()
            ),
        ));
    }
    let input = Tensor {
        name: String::new(),
        shape: vec![image_bytes.len() / MNIST_FEATURES, MNIST_FEATURES],
        data: TensorData::Fp32(image_bytes.iter().map(|&b| f32::from(b) / 255.0).collect()),
    };
    Ok(Read {
        features_path: images.to_owned(),
        inputs: vec![input],
        labels_path: labels.to_owned(),
        labels: label_bytes.iter().map(|&l| i64::from(l)).collect(),
        classes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Dataset, Source};
    use super::*;

    fn load(images: &[u8], labels: &[u8]) -> Result<Dataset, DatasetError> {
        let read = parse(
            images,
            Path::new("x.images.u8"),
            labels,
            Path::new("x.labels.u8"),
        )?;
        Dataset::new(
            read.features_path,
            read.inputs,
            read.labels_path,
            &read.labels,
            None,
        )
    }

    #[test]
    fn items_are_inferred_from_the_sizes_and_scaled() {
        let mut images = vec![0u8; 3 * MNIST_FEATURES];
        images[1] = 255;
        images[MNIST_FEATURES] = 51;
        let dataset = load(&images, &[7, 1, 3]).unwrap();
        assert_eq!(dataset.len(), 3);
        assert_eq!(dataset.inputs[0].shape, [3, MNIST_FEATURES]);
        let TensorData::Fp32(values) = &dataset.item(1)[0].data else {
            panic!("FP32 features")
        };
        assert_eq!(values[0], 0.2);
        assert_eq!(dataset.labels, [7, 1, 3]);
        assert_eq!(dataset.classes.len(), 8);
    }

    #[test]
    fn pixels_match_the_model_convention_exactly() {
        // The models were fed float32(pixel) / float32(255); any other rounding would move
        // confidences and so thresholds.
        let bytes: Vec<u8> = (0..MNIST_FEATURES).map(|i| (i % 256) as u8).collect();
        let dataset = load(&bytes, &[0]).unwrap();
        let TensorData::Fp32(values) = &dataset.inputs[0].data else {
            panic!("FP32 features")
        };
        for (b, x) in bytes.iter().zip(values) {
            assert_eq!(*x, *b as f32 / 255f32);
        }
    }

    #[test]
    fn wrong_sizes_are_reported_with_the_file() {
        let err = load(&[0; 7], &[0, 0]).unwrap_err().to_string();
        assert_eq!(
            err,
            "x.images.u8: 7 bytes are not a multiple of 784 (one item is 784 bytes)"
        );
        let err = load(&[0; 2 * MNIST_FEATURES], &[0, 0, 0])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.images.u8 holds 2 items but x.labels.u8 holds 3 labels"
        );
        let err = load(&[0; 6], &[]).unwrap_err().to_string();
        assert_eq!(err, "x.labels.u8 is empty");
        let err = load(&[], &[1]).unwrap_err().to_string();
        assert_eq!(err, "x.images.u8 is empty");
    }

    #[test]
    fn a_missing_file_is_named() {
        let missing = Path::new("no/such/dir/images.u8");
        let source = Source::Raw {
            images: missing,
            labels: missing,
        };
        let err = Dataset::load(source, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read no/such/dir/images.u8: "),
            "{err}"
        );
    }

    #[test]
    fn the_example_sample_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let source = Source::Raw {
            images: &root.join(DEFAULT_IMAGES),
            labels: &root.join(DEFAULT_LABELS),
        };
        let dataset = Dataset::load(source, None).unwrap();
        assert_eq!(dataset.len(), 1000);
        assert_eq!(dataset.classes, super::super::numbered_classes(10));
    }
}
