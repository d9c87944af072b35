//! The custom resources of group `idn.dev`, version `v1alpha1`.
//!
//! Users declare models ([`InferenceModel`]), reusable strategies ([`DeliveryStrategy`]), the
//! topology ([`InferenceDeliveryNetwork`]) and the placement of models on nodes
//! ([`ModelPlacement`]); the controller renders them into node-agent objects.

mod model;
mod network;
mod placement;
mod strategy;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use model::*;
pub use network::*;
pub use placement::*;
pub use strategy::*;

/// Every CRD of idn, in the order `idn crds` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        InferenceModel::crd(),
        DeliveryStrategy::crd(),
        InferenceDeliveryNetwork::crd(),
        ModelPlacement::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_norway::to_string(crd).expect("CRDs serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}
