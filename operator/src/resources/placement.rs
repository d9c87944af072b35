//! `ModelPlacement`: which models are loaded at which node of a network.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Which models each node of an inference delivery network loads.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "idn.dev",
    version = "v1alpha1",
    kind = "ModelPlacement",
    namespaced,
    shortname = "mp",
    category = "idn",
    doc = "Which models each node of an inference delivery network loads",
    printcolumn = r#"{"name": "Network", "type": "string", "jsonPath": ".spec.network"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelPlacementSpec {
    /// Name of the InferenceDeliveryNetwork (same namespace) this placement is for.
    #[schemars(length(min = 1))]
    pub network: String,
    /// Models per node.
    pub nodes: Vec<NodePlacement>,
}

/// The models one node loads.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacement {
    /// A node of the network.
    pub node: String,
    /// InferenceModel names (same namespace).
    pub models: Vec<String>,
}
