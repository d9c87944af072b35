//! idn placement: INFIDA (Si Salem, Castellano, Neglia, Pianese, Araldo, "Toward Inference
//! Delivery Networks: Distributing Machine Learning With Optimality Guarantees", IEEE/ACM ToN
//! 32(1), 2024, arXiv 2105.02510), the online policy by which each node of an inference
//! delivery network chooses the models it holds, as pure functions: no I/O, no clock, every
//! random draw from a seeded generator the caller owns.
//!
//! - [`network`]: the problem: catalog, nodes, budgets, repository models, request types and
//!   the cost of serving one with a given model.
//! - [`gain`]: the gain of a placement against the repository, its concave relaxation and a
//!   supergradient, split into what a route reports back and what each node adds.
//! - [`projection`]: a node's budget set and the Bregman projection onto it.
//! - [`rounding`]: DepRound, the draw of the set a node loads.
//! - [`infida`]: one period of one node: mirror ascent, projection, draw.
//! - [`simulate`]: the policies on a tree of tiers over a synthetic trace, deterministic.
//!
//! What follows the paper and what was chosen is in this crate's README.

pub mod gain;
pub mod infida;
pub mod network;
pub mod projection;
pub mod rounding;
pub mod simulate;

pub use projection::Knapsack;

/// What went wrong, with the input it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid placement problem: {0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
