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
        problems
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
