//! idn node-agent: serves ONNX models over the Open Inference Protocol (v2) and, in later
//! layers, applies delivery strategies across nodes.
//!
//! The request path is a pipeline of plain steps, one module each:
//! [`protocol`] decodes an OIP request into [`tensor::Tensor`]s, [`runtime`] checks them against
//! the model's signature, [`pool`] runs the model off the async reactor, and [`protocol`] encodes
//! the answer. [`server`] wires the steps to HTTP routes; [`config`] is the contract the operator
//! renders.

pub mod context;
pub mod delivery;
pub mod ensemble;
pub mod metrics;
pub mod node;
pub mod ort_library;
pub mod pool;
pub mod protocol;
pub mod provenance;
pub mod runtime;
pub mod server;
pub mod tensor;
pub mod upstream;

use std::path::PathBuf;

/// Errors that stop the agent from starting. Request-level failures are [`server::ApiError`]s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] idn_contract::ConfigError),
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("{0}")]
    OrtLibrary(String),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
