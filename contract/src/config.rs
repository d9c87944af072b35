//! The node-agent config file: the contract between the operator (which renders it into a
//! ConfigMap) and the agent (which reads it at start-up).
//!
//! The contract is versioned by `apiVersion`/`kind` like a Kubernetes object, camelCase on the
//! wire, and strict: an unknown field is an error, because a typo there would silently change
//! behaviour. [`NodeAgentConfig::validate`] returns every problem with its field path.

mod classes;
mod learning;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::confidence::Confidence;
pub use learning::{AdaptConfig, AdaptMethod, FeedbackSource, HardExamplesConfig, WeightLearning};

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid YAML for NodeAgentConfig: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path} is invalid:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The only `apiVersion` this agent understands.
pub const API_VERSION: &str = "idn.dev/v1alpha1";
/// The `kind` of the config document.
pub const KIND: &str = "NodeAgentConfig";

/// Configuration of one node of an inference delivery network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAgentConfig {
    /// Always `idn.dev/v1alpha1`.
    pub api_version: String,
    /// Always `NodeAgentConfig`.
    pub kind: String,
    /// Name of this node, unique in its IDN; reported in responses and metrics.
    pub node: String,
    /// Tier the node belongs to (e.g. `access`, `edge`, `regional`, `cloud`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Address the OIP v2 HTTP server listens on, e.g. `0.0.0.0:8000`; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address the OIP v2 gRPC server (`inference.GRPCInferenceService`) listens on, e.g.
    /// `0.0.0.0:8001`; none: the node speaks REST only. Port 0 picks a free port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    /// Resource limits of the request path.
    #[serde(default)]
    pub limits: Limits,
    /// Models loaded at this node (the node's placement).
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// Other nodes (or any OIP v2 server) this node may send requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Services this node offers: names clients call, each answered by a strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceConfig>,
    /// Bearer token required on inference calls to this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Serve both ports (REST and gRPC) over TLS with this certificate; none: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// File where the node keeps what its services learned (`threshold.adapt`,
    /// `ensemble.learn`): read at start, written while serving and on shutdown, so learned
    /// state survives a restart with a changed config. Relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_state_file: Option<PathBuf>,
}

/// Authentication of calls to this node's inference endpoints (health, metadata and metrics
/// stay open for probes and scrapers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the bearer token callers must present (`Authorization: Bearer ...`).
    pub token_file: PathBuf,
}

/// The certificate the node serves its ports with. Read once at start: a renewed certificate
/// takes a restart (the operator's pods restart when their Secret is replaced, not renewed in
/// place).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate chain, the node's certificate first (`tls.crt` of a
    /// `kubernetes.io/tls` Secret). Relative to the config file.
    pub cert_file: PathBuf,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1; `tls.key`). Relative
    /// to the config file.
    pub key_file: PathBuf,
}

/// A link from this node to another node: where it is and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name strategies use to refer to this upstream.
    pub name: String,
    /// Base URL of its OIP v2 API, e.g. `http://cloud-0.idn.svc:8000`, or `https://...` for an
    /// upstream reached over TLS (another cluster); for `protocol: grpc`, its gRPC port.
    pub url: String,
    /// How the link speaks OIP v2: `rest` (HTTP/1.1 with JSON, or binary tensors with
    /// `binaryData`) or `grpc` (HTTP/2, tensors as raw bytes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: Protocol,
    /// PEM bundle of the CAs that sign an `https` upstream's certificate; default: the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one call, in milliseconds; the request deadline may cut it shorter.
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// File holding the bearer token sent to this upstream; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Send tensors and receive outputs in the binary tensor data extension (idn and Triton
    /// servers support it) instead of JSON numbers: less CPU on both sides of the link.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary_data: bool,
    /// Emulated link latency added to every call, in milliseconds (for local runs and tests,
    /// where there is no real network between tiers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Names of the classes the upstream's answers hold, column by column; lets strategies
    /// match its answers to their service's classes by name. None: its columns are taken to be
    /// the service's classes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// The flavour of OIP v2 a link speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Rest,
    Grpc,
}

/// A service: the name clients call (e.g. `mnist`), answered by a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name clients use in `/v2/models/{name}/infer`; must differ from every model name.
    pub name: String,
    /// Name of the probability output the service returns.
    #[serde(default = "default_service_output")]
    pub output: String,
    /// The rule applied to each request.
    // A one-key map (`threshold: {...}`) in YAML as in JSON, rather than a YAML tag.
    #[serde(with = "serde_norway::with::singleton_map")]
    pub strategy: StrategyConfig,
    /// Time budget of a request when the caller gives none (`idn-deadline-ms` header or
    /// `deadline_ms` parameter), in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Most nodes a request may visit after this one; beyond it the request is refused.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
    /// What to answer when an upstream fails, times out or is overloaded.
    #[serde(default)]
    pub on_upstream_failure: FailurePolicy,
    /// Keep a sample of the items forwarded, with the forward target's answer, readable at
    /// `/v2/models/{service}/hard-examples`; off by default (it stores clients' inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_examples: Option<HardExamplesConfig>,
    /// Names of the classes the service answers in, column by column; every target's answer is
    /// matched to them by name. Default: the classes of the strategy's first target (the local
    /// target, the forward target, threshold's local, the cheapest ensemble member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What a service does when an upstream cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum FailurePolicy {
    /// Answer with the best local result, marked `fallback` (degraded).
    #[default]
    Fallback,
    /// Answer with the upstream's error (502, or 504 on timeout).
    Fail,
}

/// Where a strategy sends (part of) a request: a local model, a local service, or a service at
/// an upstream (by default the calling service's name). In YAML it is a map with exactly one of
/// `model`, `service` or `upstream` (which may name a `service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TargetFields", into = "TargetFields")]
pub enum Target {
    /// A model loaded at this node.
    Model(String),
    /// A service of this node.
    Service(String),
    /// An upstream of this node, and the service to call there.
    Upstream {
        upstream: String,
        service: Option<String>,
    },
}

impl Target {
    /// The name provenance reports for it: the model, the local service, or `upstream/service`.
    pub fn display_name(&self) -> String {
        match self {
            Target::Model(name) | Target::Service(name) => name.clone(),
            Target::Upstream {
                upstream,
                service: Some(service),
            } => format!("{upstream}/{service}"),
            Target::Upstream { upstream, .. } => upstream.clone(),
        }
    }
}

/// The wire shape of a [`Target`]: three optional names, of which validation at parse time
/// keeps the combinations that mean something.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
}

impl TryFrom<TargetFields> for Target {
    type Error = &'static str;

    fn try_from(fields: TargetFields) -> Result<Self, Self::Error> {
        match (fields.model, fields.upstream, fields.service) {
            (Some(model), None, None) => Ok(Target::Model(model)),
            (None, None, Some(service)) => Ok(Target::Service(service)),
            (None, Some(upstream), service) => Ok(Target::Upstream { upstream, service }),
            _ => Err("give exactly one of model, service, or upstream (with an optional service)"),
        }
    }
}

impl From<Target> for TargetFields {
    fn from(target: Target) -> Self {
        match target {
            Target::Model(model) => TargetFields {
                model: Some(model),
                ..TargetFields::default()
            },
            Target::Service(service) => TargetFields {
                service: Some(service),
                ..TargetFields::default()
            },
            Target::Upstream { upstream, service } => TargetFields {
                upstream: Some(upstream),
                service,
                ..TargetFields::default()
            },
        }
    }
}

/// The rule a service applies to each request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StrategyConfig {
    /// Answer from one target (usually a local model).
    Local(Target),
    /// Pass every request to a target (usually an upstream), optionally with a local model to
    /// fall back on.
    Forward(ForwardStrategy),
    /// Serve locally when confident, else forward: each batch item is decided on its own.
    Threshold(ThresholdStrategy),
    /// Combine several members' answers.
    Ensemble(EnsembleStrategy),
}

/// `forward`: every request goes to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardStrategy {
    /// Where requests go.
    pub to: Target,
    /// Local model answering (degraded) when `to` fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_model: Option<String>,
}

/// `threshold`: answer from `local` when its confidence ≥ `tau`, else from `forward`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdStrategy {
    /// The cheap first opinion (usually a local model).
    pub local: Target,
    /// Where low-confidence items go (usually an upstream).
    pub forward: Target,
    /// Confidence threshold τ in [0, 1]; with `adapt`, the τ used until something is learned.
    pub tau: f64,
    /// How confidence is computed.
    #[serde(default)]
    pub confidence: Confidence,
    /// Learn τ online instead of keeping it fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt: Option<AdaptConfig>,
}

/// `ensemble`: combine members' class probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnsembleStrategy {
    /// Members, each a target with a weight and a query cost.
    pub members: Vec<EnsembleMember>,
    /// How answers are merged.
    #[serde(default)]
    pub combine: Combine,
    /// Query members one by one (cheapest first, stopping when confident) or all at once.
    #[serde(default)]
    pub mode: EnsembleMode,
    /// Sequential mode stops for an item once the combined confidence reaches τ; without τ
    /// every member is queried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Most members queried per request (sequential mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<usize>,
    /// How confidence is computed.
    #[serde(default)]
    pub confidence: Confidence,
    /// Learn the members' weights online from labels, starting from `weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<WeightLearning>,
}

/// One ensemble member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnsembleMember {
    #[serde(flatten)]
    pub target: Target,
    /// Weight in `weightedMean` and `vote`.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Relative cost of a query; sequential mode queries cheaper members first.
    #[serde(default)]
    pub cost: f64,
    /// Names of the classes an upstream member answers, column by column, when they differ
    /// from its upstream's `labels` (a model's classes are its labels, a service's its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// How ensemble answers are merged, per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Combine {
    /// Mean of the members' probabilities.
    #[default]
    Mean,
    /// Weighted mean of the probabilities.
    WeightedMean,
    /// Weighted majority vote; the answer is the vote shares.
    Vote,
    /// The answer of the most confident member.
    MostConfident,
}

/// Order of ensemble queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum EnsembleMode {
    /// Cheapest member first; stop when confident, out of budget or out of time.
    #[default]
    Sequential,
    /// All members at once; merge what arrives before the deadline.
    Parallel,
}

/// Limits of the request path. Every limit answers a client error or an overload status instead
/// of growing memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest accepted batch (first dimension of an input).
    pub max_batch_size: usize,
    /// Inference requests that may wait for a worker; beyond it the agent answers 503.
    pub queue_depth: usize,
    /// Inference worker threads; 0 means one per available core.
    pub inference_threads: usize,
    /// Seconds a client may take to send a request body (over gRPC, a call's message); slower
    /// bodies get 408 (DEADLINE_EXCEEDED).
    pub read_timeout_seconds: u64,
    /// Seconds a new connection may take to send its first request's headers (REST: every
    /// request's headers); a connection that sends nothing, or half a handshake, is closed.
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in flight before it is closed
    /// (GOAWAY over HTTP/2); clients reconnect when they next need it.
    pub idle_timeout_seconds: u64,
    /// Seconds between HTTP/2 pings on a gRPC connection, to find peers that went away.
    pub keepalive_interval_seconds: u64,
    /// Seconds a gRPC peer has to answer a ping before its connection is closed.
    pub keepalive_timeout_seconds: u64,
    /// Calls open at once on one gRPC connection; beyond it the client is refused new streams.
    pub max_concurrent_streams: u32,
    /// Seconds to let in-flight requests finish after SIGTERM; idle connections close at once.
    pub drain_timeout_seconds: u64,
    /// Seconds to go on serving after SIGTERM before the listeners close, reporting not ready
    /// and asking each HTTP/1.1 client to reconnect (`Connection: close`): behind a load
    /// balancer or a Kubernetes Service, the time for traffic to move to other replicas, so that
    /// no request meets a closed listener or races a closing keep-alive connection.
    pub drain_delay_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_size: 1024,
            queue_depth: 256,
            inference_threads: 0,
            read_timeout_seconds: 30,
            header_read_timeout_seconds: 30,
            idle_timeout_seconds: 300,
            keepalive_interval_seconds: 60,
            keepalive_timeout_seconds: 20,
            max_concurrent_streams: 128,
            drain_timeout_seconds: 30,
            drain_delay_seconds: 0,
        }
    }
}

/// An ONNX model loaded at this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelConfig {
    /// Name clients use in `/v2/models/{name}`.
    pub name: String,
    /// Version reported and accepted in `/v2/models/{name}/versions/{version}`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Path of the `.onnx` file; relative paths are relative to the config file.
    pub path: PathBuf,
    /// Expected sha256 of the file (hex); a mismatch makes the model not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Graph inputs the model is called with; each must exist in the ONNX graph.
    pub inputs: Vec<String>,
    /// Graph outputs returned by default; each must exist in the ONNX graph.
    pub outputs: Vec<String>,
    /// Class labels, one per element of the last dimension of the first output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8000))
}

fn default_upstream_timeout_ms() -> u64 {
    1000
}

fn default_service_output() -> String {
    "probs".to_owned()
}

fn default_deadline_ms() -> u64 {
    1000
}

fn default_max_hops() -> usize {
    8
}

fn default_weight() -> f64 {
    1.0
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn default_version() -> String {
    "1".to_owned()
}

impl NodeAgentConfig {
    /// Reads, parses and validates a config file; relative paths of models, the learned-state
    /// file and the TLS files are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for model in &mut config.models {
            if model.path.is_relative() {
                model.path = base.join(&model.path);
            }
        }
        let files = config.learned_state_file.iter_mut().chain(
            config
                .tls
                .iter_mut()
                .flat_map(|tls| [&mut tls.cert_file, &mut tls.key_file]),
        );
        for file in files.filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
        Ok(config)
    }

    /// Names of the services the node offers.
    pub fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
    }

    /// Names of the models the node loads.
    pub fn model_names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }

    /// Parses a config document without validating it.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }
}

impl StrategyConfig {
    /// Every target the strategy may send to.
    pub fn targets(&self) -> Vec<&Target> {
        match self {
            StrategyConfig::Local(target) => vec![target],
            StrategyConfig::Forward(forward) => vec![&forward.to],
            StrategyConfig::Threshold(threshold) => vec![&threshold.local, &threshold.forward],
            StrategyConfig::Ensemble(ensemble) => {
                ensemble.members.iter().map(|m| &m.target).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
apiVersion: idn.dev/v1alpha1
kind: NodeAgentConfig
node: edge-0
tier: edge
listen: 127.0.0.1:0
models:
  - name: mnist-mlp
    path: mnist-mlp.onnx
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
    inputs: [input]
    outputs: [probs]
    labels: ["0", "1"]
"#;

    #[test]
    fn valid_config_parses_with_defaults() {
        let config = NodeAgentConfig::from_yaml(VALID).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.models[0].version, "1");
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let text = VALID.replace("tier: edge", "tier: edge\nlimit: {}");
        let err = NodeAgentConfig::from_yaml(&text).unwrap_err();
        assert!(err.contains("unknown field `limit`"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let text = VALID
            .replace("idn.dev/v1alpha1", "idn.dev/v9")
            .replace("node: edge-0", "node: Edge_0")
            .replace("sha256: 0000", "sha256: zz00")
            .replace("inputs: [input]", "inputs: []")
            .replace(
                "listen: 127.0.0.1:0",
                "listen: 127.0.0.1:0\nlimits: {queueDepth: 0, idleTimeoutSeconds: 0}",
            );
        let problems = NodeAgentConfig::from_yaml(&text).unwrap().validate();
        let expected = [
            "apiVersion:",
            "node:",
            "limits.queueDepth:",
            "limits.idleTimeoutSeconds:",
            "models[0].sha256:",
            "models[0].inputs:",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:?}");
        for (problem, prefix) in problems.iter().zip(expected) {
            assert!(problem.starts_with(prefix), "{problem} !~ {prefix}");
        }
    }

    const STRATEGIES: &str = r#"
upstreams:
  - name: cloud
    url: http://127.0.0.1:9000
services:
  - name: mnist
    strategy:
      threshold:
        local: {model: mnist-mlp}
        forward: {upstream: cloud}
        tau: 0.9
        confidence: {metric: margin, temperature: 1.5}
  - name: vote
    strategy:
      ensemble:
        members: [{model: mnist-mlp, cost: 1}, {upstream: cloud, service: mnist, weight: 2, cost: 10}]
        combine: weightedMean
        tau: 0.8
"#;

    fn with_strategies(extra: &str) -> NodeAgentConfig {
        NodeAgentConfig::from_yaml(&format!("{VALID}{extra}")).unwrap()
    }

    #[test]
    fn strategies_parse_and_validate() {
        let config = with_strategies(STRATEGIES);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let StrategyConfig::Threshold(t) = &config.services[0].strategy else {
            panic!("not a threshold")
        };
        assert_eq!(
            t.confidence.metric,
            crate::confidence::ConfidenceMetric::Margin
        );
        assert_eq!(config.services[0].deadline_ms, 1000);
        assert_eq!(
            config.services[0].on_upstream_failure,
            FailurePolicy::Fallback
        );
    }

    #[test]
    fn bad_strategies_are_rejected_naming_the_field() {
        let cases = [
            (
                "forward: {upstream: cloud}",
                "forward: {upstream: edge}",
                "services[0].strategy.threshold.forward.upstream: unknown upstream \"edge\"",
            ),
            (
                "local: {model: mnist-mlp}",
                "local: {model: resnet}",
                "services[0].strategy.threshold.local.model: unknown model \"resnet\"",
            ),
            (
                "tau: 0.9",
                "tau: 1.3",
                "services[0].strategy.threshold.tau: 1.3 is outside [0, 1]",
            ),
            (
                "temperature: 1.5",
                "temperature: 0",
                "services[0].strategy.threshold.confidence.temperature: 0 must be",
            ),
            (
                "metric: margin",
                "metric: logistic",
                "services[0].strategy.threshold.confidence.gate: the logistic metric needs its \
                 coefficients",
            ),
            (
                "temperature: 1.5}",
                "gate: {bias: 0, top1: 1, margin: 1, entropy: 1}}",
                "services[0].strategy.threshold.confidence.gate: only the logistic metric reads a \
                 gate",
            ),
            (
                "metric: margin, temperature: 1.5",
                "metric: logistic, gate: {bias: .inf, top1: 1, margin: .nan, entropy: 1}",
                "services[0].strategy.threshold.confidence.gate.bias: inf must be finite",
            ),
            (
                "metric: margin, temperature: 1.5",
                "metric: logistic, gate: {bias: .inf, top1: 1, margin: .nan, entropy: 1}",
                "services[0].strategy.threshold.confidence.gate.margin: NaN must be finite",
            ),
            (
                "tau: 0.8",
                "tau: 0.8\n        confidence: {metric: logistic}",
                "services[1].strategy.ensemble.confidence.gate: the logistic metric needs",
            ),
            (
                "members: [{model: mnist-mlp, cost: 1}, {upstream: cloud, service: mnist, weight: 2, cost: 10}]",
                "members: []",
                "services[1].strategy.ensemble.members: an ensemble needs at least one member",
            ),
            (
                "url: http://127.0.0.1:9000",
                "url: ftp://cloud",
                "upstreams[0].url: \"ftp://cloud\" must be an http:// or https:// URL",
            ),
            (
                "url: http://127.0.0.1:9000",
                "url: http://127.0.0.1:9000\n    caFile: ca.pem",
                "upstreams[0].caFile: only an https:// upstream uses a CA",
            ),
            (
                "name: vote",
                "name: mnist-mlp",
                "services[1].name: \"mnist-mlp\" is also a model name",
            ),
        ];
        for (from, to, expected) in cases {
            let config = with_strategies(&STRATEGIES.replace(from, to));
            let problems = config.validate();
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_threshold_on_a_logistic_gate_validates() {
        let gated = STRATEGIES.replace(
            "confidence: {metric: margin, temperature: 1.5}",
            "confidence: {metric: logistic, gate: {bias: -8, top1: 4, margin: 6, entropy: 2}}",
        );
        let config = with_strategies(&gated);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let StrategyConfig::Threshold(t) = &config.services[0].strategy else {
            panic!("not a threshold")
        };
        let gate = t.confidence.gate.expect("a gate");
        assert_eq!(gate.coefficients(), [-8.0, 4.0, 6.0, 2.0]);
        assert_eq!(t.confidence.temperature, 1.0);
    }

    #[test]
    fn a_target_naming_two_kinds_is_rejected_where_it_stands() {
        let text = format!(
            "{VALID}{}",
            STRATEGIES.replace(
                "local: {model: mnist-mlp}",
                "local: {model: mnist-mlp, upstream: cloud}"
            )
        );
        let err = NodeAgentConfig::from_yaml(&text).unwrap_err();
        assert!(
            err.contains("services[0].strategy.threshold")
                && err.contains("give exactly one of model, service, or upstream"),
            "{err}"
        );
    }

    #[test]
    fn forwarding_cycles_between_local_services_are_rejected() {
        let cycle = r#"
services:
  - name: a
    strategy: {threshold: {local: {model: mnist-mlp}, forward: {service: b}, tau: 0.5}}
  - name: b
    strategy: {forward: {to: {service: a}}}
"#;
        let problems = with_strategies(cycle).validate();
        assert_eq!(problems, ["services: forwarding cycle a -> b -> a"]);
    }

    #[test]
    fn duplicate_model_names_are_rejected() {
        let config = NodeAgentConfig::from_yaml(VALID).unwrap();
        let mut twice = config.clone();
        twice.models.push(config.models[0].clone());
        let problems = twice.validate();
        assert_eq!(
            problems,
            ["models[1].name: \"mnist-mlp\" is declared twice"]
        );
    }

    #[test]
    fn load_resolves_relative_paths_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("idn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.yaml");
        let text = format!("{VALID}tls: {{certFile: tls/tls.crt, keyFile: /etc/tls/tls.key}}\n");
        std::fs::write(&file, text).unwrap();
        let config = NodeAgentConfig::load(&file).unwrap();
        assert_eq!(config.models[0].path, dir.join("mnist-mlp.onnx"));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, dir.join("tls/tls.crt"));
        assert_eq!(tls.key_file, Path::new("/etc/tls/tls.key"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tls_names_both_files() {
        let err =
            NodeAgentConfig::from_yaml(&format!("{VALID}tls: {{certFile: tls.crt}}")).unwrap_err();
        assert!(err.contains("missing field `keyFile`"), "{err}");
        let err = NodeAgentConfig::from_yaml(&format!(
            "{VALID}tls: {{certFile: a, keyFile: b, caFile: c}}"
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `caFile`"), "{err}");
        let config =
            NodeAgentConfig::from_yaml(&format!("{VALID}tls: {{certFile: '', keyFile: b}}"))
                .unwrap();
        assert_eq!(config.validate(), ["tls.certFile: must name a file"]);
    }
}
