//! Running a model over a whole sample, once, through the node-agent runtime: the same ONNX
//! Runtime build and session settings that serve requests, so the tools see the outputs the
//! agent will see.

use std::path::{Path, PathBuf};

use idn_contract::config::ModelConfig;
use idn_contract::names::is_model_name;
use idn_node_agent::error::RequestError;
use idn_node_agent::model::{Model, Signature};
use idn_node_agent::wire::tensor::{Tensor, TensorData};

use crate::dataset::{Dataset, DatasetError};

/// Why a model cannot be run over a sample; every variant names the model file.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(
        "{path}: the file name must give a model name (letters, digits, '-', '_' and '.'), got {stem:?}"
    )]
    Name { path: PathBuf, stem: String },
    #[error("{path} cannot be used: {reason}")]
    Unavailable { path: PathBuf, reason: String },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Data(DatasetError),
    /// `reason` says what failed ("inference failed: ...").
    #[error("{path}: {reason}")]
    Run { path: PathBuf, reason: String },
    #[error("{path}: output {output:?} {problem}")]
    Output {
        path: PathBuf,
        output: String,
        problem: String,
    },
}

/// A loaded model with the input it is fed and the output read from it.
#[derive(Debug)]
pub struct SampleModel {
    /// The file stem, the name strategies refer to the model by.
    pub name: String,
    pub path: PathBuf,
    model: Model,
}

/// One model's outputs for a whole sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities {
    /// Elements per item (the last dimension of the output).
    pub classes: usize,
    /// `[items, classes]` row-major.
    pub values: Vec<f32>,
}

impl Probabilities {
    /// One row of probabilities per item.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(self.classes.max(1))
    }
}

impl SampleModel {
    /// Loads `path`, checking that `inputs` are its inputs and `output` one of its outputs.
    pub fn load(path: &Path, inputs: &[String], output: &str) -> Result<Self, InferenceError> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_model_name(&stem) {
            return Err(InferenceError::Name {
                path: path.to_owned(),
                stem,
            });
        }
        let model = Model::load(ModelConfig {
            name: stem.clone(),
            version: "1".to_owned(),
            path: path.to_owned(),
            sha256: None,
            inputs: inputs.to_vec(),
            outputs: vec![output.to_owned()],
            labels: Vec::new(),
        });
        if let Err(reason) = model.readiness() {
            return Err(InferenceError::Unavailable {
                path: path.to_owned(),
                reason: reason.to_owned(),
            });
        }
        Ok(SampleModel {
            name: stem,
            path: path.to_owned(),
            model,
        })
    }

    /// The model's signature (it is loaded, or [`SampleModel::load`] would have failed).
    pub fn signature(&self) -> &Signature {
        self.model
            .readiness()
            .expect("a loaded model has a signature")
    }

    /// Runs the whole sample as one batch and returns the output, checked to be one row per
    /// item. The sample's inputs are first checked against the signature, naming its file.
    pub fn probabilities(&self, dataset: &Dataset) -> Result<Probabilities, InferenceError> {
        dataset
            .fit(&self.path, self.signature())
            .map_err(InferenceError::Data)?;
        self.run(dataset.inputs.clone())
    }

    /// Runs one batch, a tensor `[items, ...]` per input, and returns the output, checked to
    /// be one row per item.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Probabilities, InferenceError> {
        let path = || self.path.clone();
        let items = inputs
            .first()
            .and_then(|t| t.shape.first())
            .copied()
            .unwrap_or(0);
        let config = self.model.config();
        let output = &config.outputs[0];
        let tensor = self
            .model
            .infer_once(inputs, std::slice::from_ref(output))
            .map_err(|e| match e {
                RequestError::Invalid(message) => InferenceError::Input {
                    path: path(),
                    message,
                },
                RequestError::Unavailable(reason) => InferenceError::Unavailable {
                    path: path(),
                    reason,
                },
                other => InferenceError::Run {
                    path: path(),
                    reason: other.to_string(),
                },
            })?
            .pop()
            .expect("one output asked, one returned");
        let problem = |problem: String| InferenceError::Output {
            path: path(),
            output: output.clone(),
            problem,
        };
        let [rows, classes] = tensor.shape[..] else {
            return Err(problem(format!(
                "has shape {:?}, expected [{items}, classes]",
                tensor.shape
            )));
        };
        if rows != items {
            return Err(problem(format!("has {rows} rows for {items} items")));
        }
        let values = match tensor.data {
            TensorData::Fp32(values) => values,
            // Confidences are computed in f64 from f32 probabilities either way.
            TensorData::Fp64(values) => values.into_iter().map(|v| v as f32).collect(),
            other => {
                return Err(problem(format!(
                    "is {}, expected FP32 probabilities",
                    other.datatype()
                )));
            }
        };
        Ok(Probabilities { classes, values })
    }
}
