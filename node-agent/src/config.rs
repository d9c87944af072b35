//! The node-agent config file: the contract between the operator (which renders it into a
//! ConfigMap) and the agent (which reads it at start-up).
//!
//! The contract is versioned by `apiVersion`/`kind` like a Kubernetes object, camelCase on the
//! wire, and strict: an unknown field is an error, because a typo there would silently change
//! behaviour. [`NodeAgentConfig::validate`] returns every problem with its field path.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::confidence::Confidence;
use crate::{Error, Result};

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
}

/// Authentication of calls to this node's inference endpoints (health, metadata and metrics
/// stay open for probes and scrapers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the bearer token callers must present (`Authorization: Bearer ...`).
    pub token_file: PathBuf,
}

/// A link from this node to another node: where it is and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name strategies use to refer to this upstream.
    pub name: String,
    /// Base URL of its OIP v2 API, e.g. `http://cloud-0.idn.svc:8000`, or `https://...` for an
    /// upstream reached over TLS (another cluster).
    pub url: String,
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

/// Where a strategy sends (part of) a request: exactly one of a local model, a local service,
/// or an upstream (whose service defaults to the calling service's name).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// A model loaded at this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// An upstream of this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A service: at the upstream when `upstream` is set, else at this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
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
    /// Confidence threshold τ in [0, 1].
    pub tau: f64,
    /// How confidence is computed.
    #[serde(default)]
    pub confidence: Confidence,
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
    /// Seconds a client may take to send a request body; slower bodies get 408.
    pub read_timeout_seconds: u64,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub drain_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_size: 1024,
            queue_depth: 256,
            inference_threads: 0,
            read_timeout_seconds: 30,
            drain_timeout_seconds: 30,
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

fn default_version() -> String {
    "1".to_owned()
}

impl NodeAgentConfig {
    /// Reads, parses and validates a config file; relative model paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_yaml(&text).map_err(|message| Error::ConfigParse {
            path: path.to_owned(),
            message,
        })?;
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(Error::ConfigInvalid {
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
    pub fn from_yaml(text: &str) -> std::result::Result<Self, String> {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem of the config, each prefixed by its field path; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.api_version != API_VERSION {
            problems.push(format!(
                "apiVersion: {:?} is not supported (expected {API_VERSION:?})",
                self.api_version
            ));
        }
        if self.kind != KIND {
            problems.push(format!("kind: {:?} is not {KIND:?}", self.kind));
        }
        if !is_dns_label(&self.node) {
            problems.push(format!(
                "node: {:?} must be a DNS label (lowercase letters, digits, '-', at most 63)",
                self.node
            ));
        }
        self.limits.validate(&mut problems);
        let mut names = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let field = format!("models[{i}]");
            if !names.insert(model.name.as_str()) {
                problems.push(format!("{field}.name: {:?} is declared twice", model.name));
            }
            model.validate(&field, &mut problems);
        }
        self.validate_upstreams(&mut problems);
        self.validate_services(&mut problems);
        problems
    }

    fn validate_upstreams(&self, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let field = format!("upstreams[{i}]");
            if !names.insert(upstream.name.as_str()) {
                problems.push(format!(
                    "{field}.name: {:?} is declared twice",
                    upstream.name
                ));
            }
            if !is_model_name(&upstream.name) {
                problems.push(format!(
                    "{field}.name: {:?} must use only letters, digits, '-', '_' and '.'",
                    upstream.name
                ));
            }
            let uri = upstream.url.parse::<http::Uri>().ok();
            let scheme = uri.as_ref().and_then(|u| u.scheme_str());
            let has_host = uri
                .as_ref()
                .and_then(|u| u.host())
                .is_some_and(|h| !h.is_empty());
            if !matches!(scheme, Some("http" | "https")) || !has_host {
                problems.push(format!(
                    "{field}.url: {:?} must be an http:// or https:// URL with a host",
                    upstream.url
                ));
            } else if upstream.ca_file.is_some() && scheme != Some("https") {
                problems.push(format!(
                    "{field}.caFile: only an https:// upstream uses a CA"
                ));
            }
            if upstream.timeout_ms == 0 {
                problems.push(format!("{field}.timeoutMs: must be at least 1"));
            }
        }
    }

    fn validate_services(&self, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let field = format!("services[{i}]");
            if !names.insert(service.name.as_str()) {
                problems.push(format!(
                    "{field}.name: {:?} is declared twice",
                    service.name
                ));
            }
            if !is_model_name(&service.name) {
                problems.push(format!(
                    "{field}.name: {:?} must use only letters, digits, '-', '_' and '.'",
                    service.name
                ));
            }
            if self.models.iter().any(|m| m.name == service.name) {
                problems.push(format!(
                    "{field}.name: {:?} is also a model name; clients could not tell them apart",
                    service.name
                ));
            }
            if service.deadline_ms == 0 {
                problems.push(format!("{field}.deadlineMs: must be at least 1"));
            }
            if service.max_hops == 0 {
                problems.push(format!("{field}.maxHops: must be at least 1"));
            }
            self.validate_strategy(&service.strategy, &format!("{field}.strategy"), problems);
        }
        if let Some(cycle) = self.service_cycle() {
            problems.push(format!("services: forwarding cycle {}", cycle.join(" -> ")));
        }
    }

    fn validate_strategy(
        &self,
        strategy: &StrategyConfig,
        field: &str,
        problems: &mut Vec<String>,
    ) {
        match strategy {
            StrategyConfig::Local(target) => {
                self.validate_target(target, &format!("{field}.local"), problems)
            }
            StrategyConfig::Forward(forward) => {
                self.validate_target(&forward.to, &format!("{field}.forward.to"), problems);
                if let Some(model) = &forward.fallback_model {
                    self.validate_model_ref(
                        model,
                        &format!("{field}.forward.fallbackModel"),
                        problems,
                    );
                }
            }
            StrategyConfig::Threshold(threshold) => {
                let field = format!("{field}.threshold");
                self.validate_target(&threshold.local, &format!("{field}.local"), problems);
                self.validate_target(&threshold.forward, &format!("{field}.forward"), problems);
                validate_unit(threshold.tau, &format!("{field}.tau"), problems);
                validate_confidence(&threshold.confidence, &field, problems);
            }
            StrategyConfig::Ensemble(ensemble) => {
                let field = format!("{field}.ensemble");
                if ensemble.members.is_empty() {
                    problems.push(format!(
                        "{field}.members: an ensemble needs at least one member"
                    ));
                }
                for (i, member) in ensemble.members.iter().enumerate() {
                    let at = format!("{field}.members[{i}]");
                    self.validate_target(&member.target, &at, problems);
                    if !(member.weight.is_finite() && member.weight >= 0.0) {
                        problems.push(format!(
                            "{at}.weight: {} must be a finite number ≥ 0",
                            member.weight
                        ));
                    }
                    if !member.cost.is_finite() {
                        problems.push(format!("{at}.cost: {} must be finite", member.cost));
                    }
                }
                if let Some(tau) = ensemble.tau {
                    validate_unit(tau, &format!("{field}.tau"), problems);
                }
                if ensemble.max_members == Some(0) {
                    problems.push(format!("{field}.maxMembers: must be at least 1"));
                }
                validate_confidence(&ensemble.confidence, &field, problems);
            }
        }
    }

    fn validate_model_ref(&self, model: &str, field: &str, problems: &mut Vec<String>) {
        if !self.models.iter().any(|m| m.name == model) {
            problems.push(format!("{field}: unknown model {model:?}"));
        }
    }

    fn validate_target(&self, target: &Target, field: &str, problems: &mut Vec<String>) {
        match (&target.model, &target.upstream, &target.service) {
            (Some(model), None, None) => self.validate_model_ref(model, &format!("{field}.model"), problems),
            (None, Some(upstream), _) => {
                if !self.upstreams.iter().any(|u| &u.name == upstream) {
                    problems.push(format!("{field}.upstream: unknown upstream {upstream:?}"));
                }
            }
            (None, None, Some(service)) => {
                if !self.services.iter().any(|s| &s.name == service) {
                    problems.push(format!("{field}.service: unknown service {service:?}"));
                }
            }
            _ => problems.push(format!(
                "{field}: give exactly one of model, service, or upstream (with an optional service)"
            )),
        }
    }

    /// A cycle of local service references (`service: x` targets), if any.
    fn service_cycle(&self) -> Option<Vec<String>> {
        fn visit<'a>(
            config: &'a NodeAgentConfig,
            name: &'a str,
            stack: &mut Vec<&'a str>,
            done: &mut HashSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(start) = stack.iter().position(|&s| s == name) {
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            if !done.insert(name) {
                return None;
            }
            let service = config.services.iter().find(|s| s.name == name)?;
            stack.push(name);
            for target in service.strategy.targets() {
                if let (None, None, Some(next)) = (&target.model, &target.upstream, &target.service)
                    && let Some(cycle) = visit(config, next, stack, done)
                {
                    return Some(cycle);
                }
            }
            stack.pop();
            None
        }
        let mut done = HashSet::new();
        self.services
            .iter()
            .find_map(|s| visit(self, &s.name, &mut Vec::new(), &mut done))
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

fn validate_unit(value: f64, field: &str, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&value) {
        problems.push(format!("{field}: {value} is outside [0, 1]"));
    }
}

fn validate_confidence(confidence: &Confidence, field: &str, problems: &mut Vec<String>) {
    if !(confidence.temperature.is_finite() && confidence.temperature > 0.0) {
        problems.push(format!(
            "{field}.confidence.temperature: {} must be a finite number > 0",
            confidence.temperature
        ));
    }
}

impl Limits {
    fn validate(&self, problems: &mut Vec<String>) {
        for (field, value) in [
            ("limits.maxBodyBytes", self.max_body_bytes),
            ("limits.maxBatchSize", self.max_batch_size),
            ("limits.queueDepth", self.queue_depth),
        ] {
            if value == 0 {
                problems.push(format!("{field}: must be at least 1"));
            }
        }
    }
}

impl ModelConfig {
    fn validate(&self, field: &str, problems: &mut Vec<String>) {
        if !is_model_name(&self.name) {
            problems.push(format!(
                "{field}.name: {:?} must be non-empty and use only letters, digits, '-', '_' and '.'",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.contains('/') {
            problems.push(format!(
                "{field}.version: {:?} must be non-empty without '/'",
                self.version
            ));
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            problems.push(format!(
                "{field}.sha256: {sha:?} is not 64 hexadecimal digits"
            ));
        }
        for (list, names) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            if names.is_empty() {
                problems.push(format!("{field}.{list}: at least one name is required"));
            }
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Model and service names appear in URL paths, so they stay within one path segment.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
                "listen: 127.0.0.1:0\nlimits: {queueDepth: 0}",
            );
        let problems = NodeAgentConfig::from_yaml(&text).unwrap().validate();
        let expected = [
            "apiVersion:",
            "node:",
            "limits.queueDepth:",
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
                "members: [{model: mnist-mlp, cost: 1}, {upstream: cloud, service: mnist, weight: 2, cost: 10}]",
                "members: []",
                "services[1].strategy.ensemble.members: an ensemble needs at least one member",
            ),
            (
                "local: {model: mnist-mlp}",
                "local: {model: mnist-mlp, upstream: cloud}",
                "services[0].strategy.threshold.local: give exactly one of",
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
    fn load_resolves_model_paths_against_the_config_directory() {
        let dir = std::env::temp_dir().join(format!("idn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.yaml");
        std::fs::write(&file, VALID).unwrap();
        let config = NodeAgentConfig::load(&file).unwrap();
        assert_eq!(config.models[0].path, dir.join("mnist-mlp.onnx"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
