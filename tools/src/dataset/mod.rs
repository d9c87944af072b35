//! Labelled samples: items whose features are typed tensors, each with a label naming one of the
//! sample's classes.
//!
//! Three formats are read, one module each: the raw `u8` pairs of `examples/data` ([`raw`]),
//! NumPy `.npy`/`.npz` arrays ([`numpy`]) and JSON lines of OIP input tensors ([`jsonl`]).
//! Whatever the format, a [`Dataset`] holds every input as one batch tensor of shape
//! `[items, ...]` and every label as an index into its class names, so a model's answer is
//! matched to a label by class name ([`Dataset::class_map`]), not by position.
//!
//! [`shift`] transforms image-like items, for streams whose traffic changes.
//!
//! Everything that can be checked without a model is checked on loading (counts, labels in
//! range); [`Dataset::fit`] checks the inputs against a model's signature, so that bad data
//! fails naming its file before any request is sent.

mod jsonl;
mod numpy;
mod raw;
pub mod shift;

use std::path::{Path, PathBuf};

use idn_node_agent::model::Signature;
use idn_node_agent::wire::tensor::Tensor;

pub use raw::{DEFAULT_IMAGES, DEFAULT_LABELS, MNIST_FEATURES};

/// Where a sample is read from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Raw `u8` features ([`MNIST_FEATURES`] per item, scaled to FP32 `byte / 255`) and one
    /// `u8` label per item.
    Raw { images: &'a Path, labels: &'a Path },
    /// A `.npy` array of features `[items, ...]` and a `.npy` array of integer labels `[items]`.
    Npy {
        features: &'a Path,
        labels: &'a Path,
    },
    /// A `.npz` archive with the features and labels as `x` and `y` (or `features` and
    /// `labels`), and optionally the class names as `classes`.
    Npz(&'a Path),
    /// JSON lines, one item each: `{"inputs": [OIP input tensors], "label": 3}`.
    JsonLines(&'a Path),
}

/// Why a sample cannot be read or used; every variant names the file at fault.
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
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{features} holds {items} items but {labels} holds {labels_len} labels")]
    CountMismatch {
        features: PathBuf,
        items: usize,
        labels: PathBuf,
        labels_len: usize,
    },
    #[error("{path}: label {label} of item {item} is not one of the {classes} classes {names}")]
    Label {
        path: PathBuf,
        item: usize,
        label: i64,
        classes: usize,
        names: String,
    },
    #[error("{path} does not fit model {model}: {message}")]
    Fit {
        path: PathBuf,
        model: PathBuf,
        message: String,
    },
}

impl DatasetError {
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DatasetError::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// A labelled sample held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The file the features come from, named in errors.
    pub source: PathBuf,
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// One batch tensor `[items, ...]` per model input. An empty name stands for the model's
    /// only input, for formats that do not name it ([`Dataset::name_inputs`]).
    pub inputs: Vec<Tensor>,
    /// One label per item, an index into `classes`.
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Reads a sample; `classes` names the labels `0, 1, …` (default: the sample's own class
    /// names if it has some, else `"0"` to the largest label).
    pub fn load(source: Source<'_>, classes: Option<Vec<String>>) -> Result<Self, DatasetError> {
        let read = Read::from(source)?;
        let classes = classes.or(read.classes);
        Dataset::new(
            read.features_path,
            read.inputs,
            read.labels_path,
            &read.labels,
            classes,
        )
    }

    /// Assembles a sample, checking that every input has one row per label and every label
    /// names a class.
    fn new(
        source: PathBuf,
        inputs: Vec<Tensor>,
        labels_path: PathBuf,
        labels: &[i64],
        classes: Option<Vec<String>>,
    ) -> Result<Self, DatasetError> {
        if labels.is_empty() {
            return Err(DatasetError::Empty { path: labels_path });
        }
        if let Some(input) = inputs
            .iter()
            .find(|t| t.shape.first() != Some(&labels.len()))
        {
            return Err(DatasetError::CountMismatch {
                features: source,
                items: input.shape.first().copied().unwrap_or(1),
                labels: labels_path,
                labels_len: labels.len(),
            });
        }
        let classes = classes.unwrap_or_else(|| {
            let count = labels.iter().copied().max().unwrap_or(0).max(0) + 1;
            (0..count).map(|c| c.to_string()).collect()
        });
        let labels = labels
            .iter()
            .enumerate()
            .map(|(item, &label)| {
                usize::try_from(label)
                    .ok()
                    .filter(|&l| l < classes.len())
                    .ok_or_else(|| DatasetError::Label {
                        path: labels_path.clone(),
                        item,
                        label,
                        classes: classes.len(),
                        names: format!("{classes:?}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Dataset {
            source,
            classes,
            inputs,
            labels,
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

    /// Keeps only the first `items` items.
    pub fn truncate(&mut self, items: usize) {
        if items >= self.len() {
            return;
        }
        let rows: Vec<usize> = (0..items).collect();
        self.inputs = self.inputs.iter().map(|t| t.select_rows(&rows)).collect();
        self.labels.truncate(items);
    }

    /// Names an unnamed input after the model's only input, `names` being the inputs the
    /// model is loaded with.
    pub fn name_inputs(&mut self, names: &[String]) -> Result<(), DatasetError> {
        let Some(unnamed) = self.inputs.iter_mut().find(|t| t.name.is_empty()) else {
            return Ok(());
        };
        let [name] = names else {
            return Err(DatasetError::invalid(
                &self.source,
                format!(
                    "the features name no input, and the model has {} inputs ({}); give them as \
                     JSON lines naming each input",
                    names.len(),
                    names.join(", ")
                ),
            ));
        };
        unnamed.name = name.clone();
        Ok(())
    }

    /// Checks the inputs (names, datatypes, shapes) against the signature of the model at
    /// `model`.
    pub fn fit(&self, model: &Path, signature: &Signature) -> Result<(), DatasetError> {
        signature
            .check_inputs(&model.display().to_string(), &self.inputs, usize::MAX)
            .map_err(|e| DatasetError::Fit {
                path: self.source.clone(),
                model: model.to_owned(),
                message: e.to_string(),
            })
    }

    /// The inputs of item `i`, each of shape `[1, ...]`: one request's worth.
    pub fn item(&self, i: usize) -> Vec<Tensor> {
        self.inputs.iter().map(|t| t.select_rows(&[i])).collect()
    }

    /// For each of a model's class labels, the sample's class of that name, if it has one.
    pub fn class_map(&self, model_labels: &[String]) -> Vec<Option<usize>> {
        model_labels
            .iter()
            .map(|label| self.classes.iter().position(|c| c == label))
            .collect()
    }
}

/// The class names a model without labels is taken to have: `"0"` … `"classes - 1"`.
pub fn numbered_classes(classes: usize) -> Vec<String> {
    (0..classes).map(|c| c.to_string()).collect()
}

/// What a format reader produces, before the checks every format shares.
#[derive(Debug)]
struct Read {
    features_path: PathBuf,
    inputs: Vec<Tensor>,
    labels_path: PathBuf,
    labels: Vec<i64>,
    classes: Option<Vec<String>>,
}

impl Read {
    fn from(source: Source<'_>) -> Result<Self, DatasetError> {
        match source {
            Source::Raw { images, labels } => raw::read(images, labels),
            Source::Npy { features, labels } => numpy::read_npy(features, labels),
            Source::Npz(path) => numpy::read_npz(path),
            Source::JsonLines(path) => jsonl::read(path),
        }
    }
}

/// Reads a whole file, naming it on failure.
fn read_file(path: &Path) -> Result<Vec<u8>, DatasetError> {
    std::fs::read(path).map_err(|error| DatasetError::Read {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use idn_node_agent::wire::tensor::TensorData;

    fn sample(labels: &[i64], classes: Option<&[&str]>) -> Result<Dataset, DatasetError> {
        let input = Tensor {
            name: String::new(),
            shape: vec![labels.len(), 2],
            data: TensorData::Int64((0..2 * labels.len() as i64).collect()),
        };
        Dataset::new(
            "x.npy".into(),
            vec![input],
            "y.npy".into(),
            labels,
            classes.map(|c| c.iter().map(|s| s.to_string()).collect()),
        )
    }

    #[test]
    fn classes_default_to_numbers_up_to_the_largest_label() {
        let dataset = sample(&[2, 0, 1, 2], None).unwrap();
        assert_eq!(dataset.classes, ["0", "1", "2"]);
        assert_eq!(dataset.labels, [2, 0, 1, 2]);
        assert_eq!(dataset.len(), 4);
    }

    #[test]
    fn labels_out_of_range_are_named() {
        let err = sample(&[0, 3], Some(&["cat", "dog"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"y.npy: label 3 of item 1 is not one of the 2 classes ["cat", "dog"]"#
        );
        let err = sample(&[-1], None).unwrap_err().to_string();
        assert!(err.starts_with("y.npy: label -1 of item 0"), "{err}");
        assert_eq!(sample(&[], None).unwrap_err().to_string(), "y.npy is empty");
    }

    #[test]
    fn counts_must_agree() {
        let input = Tensor {
            name: "x".into(),
            shape: vec![3, 1],
            data: TensorData::Fp32(vec![0.0; 3]),
        };
        let err =
            Dataset::new("x.npy".into(), vec![input], "y.npy".into(), &[0, 1], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.npy holds 3 items but y.npy holds 2 labels"
        );
    }

    #[test]
    fn classes_are_matched_by_name() {
        let dataset = sample(&[0, 1, 2], Some(&["cat", "dog", "owl"])).unwrap();
        let model: Vec<String> = ["owl", "cat", "fox"].map(String::from).into();
        assert_eq!(dataset.class_map(&model), [Some(2), Some(0), None]);
    }

    #[test]
    fn items_truncation_and_naming() {
        let mut dataset = sample(&[0, 1, 1], None).unwrap();
        assert_eq!(dataset.item(1)[0].shape, [1, 2]);
        assert_eq!(dataset.item(1)[0].data, TensorData::Int64(vec![2, 3]));
        dataset.truncate(2);
        assert_eq!(dataset.len(), 2);
        assert_eq!(dataset.inputs[0].shape, [2, 2]);
        let two = ["a".to_owned(), "b".to_owned()];
        let err = dataset.clone().name_inputs(&two).unwrap_err().to_string();
        assert!(
            err.starts_with("x.npy: the features name no input, and the model has 2 inputs (a, b)")
        );
        dataset.name_inputs(&two[..1]).unwrap();
        assert_eq!(dataset.inputs[0].name, "a");
    }
}
