//! `DeliveryStrategy`: a reusable rule a node applies to each request of a service.
//!
//! A strategy names roles, not places: "the node's model" and "the node's upstream link" are
//! bound per node by the service that uses it (see `NodeServiceSpec`), so one strategy serves
//! every tier of a cascade.

use idn_contract::confidence::Confidence;
use idn_contract::config::{
    AdaptConfig, Combine, EnsembleMode, FailurePolicy, HardExamplesConfig, WeightLearning,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A delivery strategy: exactly one of `local`, `forward`, `threshold`, `ensemble`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "idn.dev",
    version = "v1alpha1",
    kind = "DeliveryStrategy",
    namespaced,
    shortname = "dstrat",
    category = "idn",
    doc = "A reusable rule a node applies to each request of a service",
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.local), has(self.forward), has(self.threshold), has(self.ensemble)].filter(x, x).size() == 1").message("give exactly one of local, forward, threshold or ensemble"))]
pub struct DeliveryStrategySpec {
    /// Answer from the node's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalStrategy>,
    /// Pass every request to the node's upstream link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardStrategy>,
    /// Answer from the node's model when its confidence reaches `tau`, else forward to the
    /// upstream link; each batch item is decided on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdStrategy>,
    /// Combine several members' answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleStrategy>,
    /// Time budget of a request when the caller gives none, in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub deadline_ms: Option<u64>,
    /// Most nodes a request may visit after the entry node (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_hops: Option<usize>,
    /// On upstream error, timeout or overload: answer with the best local result (`fallback`,
    /// the default) or return the error (`fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_upstream_failure: Option<FailurePolicy>,
    /// Keep a bounded sample of the items forwarded, with the upstream's answer, readable at
    /// the node's `/v2/models/{service}/hard-examples`; off by default (it stores inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_examples: Option<HardExamplesConfig>,
    /// Names of the classes the service answers in; answers of models and links are matched to
    /// them by name (an InferenceModel's `labels`, a link's `labels`). Default: the classes of
    /// the strategy's first target (the node's model, or the cheapest ensemble member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// `local` takes no parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LocalStrategy {}

/// Parameters of `forward`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ForwardStrategy {
    /// Answer (degraded) from the node's model when the upstream fails.
    #[serde(default)]
    pub fallback_to_model: bool,
}

/// Parameters of `threshold`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdStrategy {
    /// Confidence threshold τ in [0, 1]: items whose local confidence is below go upstream.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tau: f64,
    /// How confidence is computed (maxProbability, margin, entropy, or a logistic gate over
    /// the three; temperature).
    #[serde(default)]
    pub confidence: Confidence,
    /// Learn τ online (hedge or lcb) from the upstream's verdicts and clients' labels;
    /// `tau` is then where it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt: Option<AdaptConfig>,
}

/// Parameters of `ensemble`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnsembleStrategy {
    /// Members whose answers are combined.
    #[schemars(length(min = 1))]
    pub members: Vec<EnsembleMember>,
    /// mean, weightedMean, vote or mostConfident.
    #[serde(default)]
    pub combine: Combine,
    /// sequential (cheapest first, stop when confident) or parallel (all at once).
    #[serde(default)]
    pub mode: EnsembleMode,
    /// Sequential mode stops for an item once the combined confidence reaches τ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tau: Option<f64>,
    /// Most members queried per request in sequential mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_members: Option<usize>,
    /// How confidence is computed.
    #[serde(default)]
    pub confidence: Confidence,
    /// Learn the members' weights online from clients' labels (needs weightedMean or vote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<WeightLearning>,
}

/// An ensemble member: an InferenceModel placed on the node, or one of the node's links.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.model) != has(self.link)").message("give exactly one of model or link"))]
pub struct EnsembleMember {
    /// An InferenceModel placed on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A link of the node; the member is the same service at the other end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Weight in weightedMean and vote (default 1).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
    /// Relative query cost; sequential mode asks cheaper members first.
    #[serde(default)]
    pub cost: f64,
}

fn default_weight() -> f64 {
    1.0
}
