//! Models: ONNX models loaded through ONNX Runtime, their signatures, and the pool of worker
//! threads that runs them off the async reactor.

pub(crate) mod ort_library;
mod pool;
mod runtime;
mod signature;

pub use pool::{Inference, InferencePool};
pub use runtime::{Model, ModelSession};
pub use signature::{Signature, TensorSpec};
