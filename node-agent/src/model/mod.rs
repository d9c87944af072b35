//! Models: ONNX models loaded through ONNX Runtime, their signatures, and the pool of worker
//! threads that runs them off the async reactor.

pub(crate) mod ort_library;
mod pool;
mod runtime;
mod signature;

pub use pool::{Inference, InferencePool};
pub use runtime::{Model, ModelSession};
pub use signature::{Signature, TensorSpec};

/// A model's config for tests: file `{name}.onnx`, input `input`, output `probs`, no labels.
#[cfg(test)]
fn test_config(name: &str) -> idn_contract::config::ModelConfig {
    idn_contract::config::ModelConfig {
        name: name.into(),
        version: "1".into(),
        path: format!("{name}.onnx").into(),
        sha256: None,
        inputs: vec!["input".into()],
        outputs: vec!["probs".into()],
        labels: Vec::new(),
    }
}
