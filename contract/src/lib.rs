//! idn contract: what crosses a boundary between the operator, the node-agent and the tools.
//!
//! [`config`] is the node-agent config the operator renders and the agent reads, with its
//! validation; [`confidence`] the scores strategies threshold (the CRDs embed its types);
//! [`names`] the names and labels several crates must spell alike; [`graph`] the cycle
//! search both the agent's config and the operator's planning need. No I/O beyond reading a
//! config file, no async runtime, no HTTP stack, no Kubernetes client.

pub mod confidence;
pub mod config;
pub mod graph;
pub mod names;
pub mod provenance;

pub use config::ConfigError;
