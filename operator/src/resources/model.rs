//! `InferenceModel`: an ONNX artifact, where to get it, its interface and what it costs.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An ONNX model that nodes of an inference delivery network can load.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "idn.dev",
    version = "v1alpha1",
    kind = "InferenceModel",
    namespaced,
    shortname = "im",
    category = "idn",
    doc = "An ONNX model that nodes of an inference delivery network can load",
    printcolumn = r#"{"name": "Accuracy", "type": "number", "jsonPath": ".spec.metrics.accuracy"}"#,
    printcolumn = r#"{"name": "Latency(us)", "type": "number", "jsonPath": ".spec.metrics.latencyMicros"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceModelSpec {
    /// Where the ONNX file comes from.
    pub source: ModelSource,
    /// Graph inputs the model is called with.
    #[serde(default = "default_inputs")]
    #[schemars(length(min = 1))]
    pub inputs: Vec<String>,
    /// Graph outputs returned; the first is the class probabilities strategies use.
    #[serde(default = "default_outputs")]
    #[schemars(length(min = 1))]
    pub outputs: Vec<String>,
    /// Class labels, one per element of the last dimension of the first output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Measured quality and cost, for people choosing strategies and for placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ModelMetrics>,
}

fn default_inputs() -> Vec<String> {
    vec!["input".to_owned()]
}

fn default_outputs() -> Vec<String> {
    vec!["probs".to_owned()]
}

/// Where a model file comes from: exactly one of `url`, `volume` or `image`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.url), has(self.volume), has(self.image)].filter(x, x).size() == 1").message("give exactly one of url, volume or image"))]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)").message("a url source needs its sha256"))]
pub struct ModelSource {
    /// An http(s) URL, downloaded by an init container before the node-agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// sha256 of the file (64 hex digits); the node-agent refuses to serve a file that does not
    /// match. Required with `url`, recommended always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// A file on a persistent volume claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeModelSource>,
    /// A file in an OCI image, mounted as an image volume (Kubernetes ≥ 1.33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageModelSource>,
}

/// A model file on a persistent volume claim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeModelSource {
    /// Name of the PersistentVolumeClaim, in the model's namespace.
    #[schemars(length(min = 1))]
    pub claim_name: String,
    /// Path of the `.onnx` file inside the volume.
    #[schemars(length(min = 1))]
    pub path: String,
}

/// A model file inside an OCI image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageModelSource {
    /// Image reference, e.g. `registry.example.com/models/mnist:1`.
    #[schemars(length(min = 1))]
    pub reference: String,
    /// Path of the `.onnx` file inside the image.
    #[schemars(length(min = 1))]
    pub path: String,
}

/// What a model was measured to achieve.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetrics {
    /// Accuracy on the evaluation set, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub accuracy: Option<f64>,
    /// Single-sample inference latency, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub latency_micros: Option<f64>,
    /// Memory the loaded model needs, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}
