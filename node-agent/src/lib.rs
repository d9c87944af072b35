//! idn node-agent: the data plane of an inference delivery network. It serves the ONNX models
//! of one node over the Open Inference Protocol (v2) and answers its services by their delivery
//! strategies, alone or with other nodes.
//!
//! The folders follow the request path: [`wire`] decodes an OIP request into tensors and reads
//! its context, `delivery` applies the service's strategy, [`model`] checks the inputs against a
//! model's signature and runs it off the async reactor, and [`wire`] encodes the answer with its
//! provenance. [`server`] wires the steps to HTTP routes and maps [`error::RequestError`] kinds
//! to statuses; [`node`] holds what a request needs, built once at start-up.
//!
//! Public are what the tools and the bench use: [`node::Node`], [`server`]'s `bind`, `serve`
//! and `local_addr`, [`model::Model`] and [`model::InferencePool`], tensors and the OIP codec.

mod delivery;
pub mod error;
mod learn;
pub mod metrics;
pub mod model;
pub mod node;
mod ratelog;
pub mod server;
mod trace;
pub mod wire;

pub use error::{Error, Result};
