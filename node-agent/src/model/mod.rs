//! Models: ONNX models loaded through ONNX Runtime, their signatures, and the pool of worker
//! threads that runs them off the async reactor.

pub mod ort_library;
pub mod pool;
pub mod runtime;
mod signature;

pub use signature::{Signature, TensorSpec};
