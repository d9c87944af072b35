//! idn operator: the custom resources, the pure planning and rendering that turn them into
//! Kubernetes objects, and the controller that applies those objects and reports status.
//!
//! [`resources`] holds the CRD types and [`manifests`] reads them from files; [`plan`] binds a
//! network's nodes, strategies and models into node-agent configs and [`render`] turns each
//! plan into a ConfigMap, Deployment and Service, with `scaling`'s autoscaler and disruption
//! budget where the node asks for them (all pure, shared with `idn render` and
//! `idn up`); [`controller`] reconciles, writing `conditions`; [`leader`] holds the Lease;
//! [`metrics`] and [`endpoints`] serve `/metrics`, `/healthz` and `/readyz`.

mod conditions;
pub mod controller;
pub mod endpoints;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod resources;
mod scaling;
