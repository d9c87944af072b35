//! Health, readiness and metadata endpoints: what a probe, a scraper or a client asks before
//! it sends inferences.

use http::Response;
use http::StatusCode;
use serde_json::json;

use super::response::{Body, json_response};
use crate::error::RequestError;
use crate::model::TensorSpec;
use crate::node::{Node, Served};
use crate::wire::tensor::DataType;
use idn_contract::config::{ServiceConfig, Target};

pub(super) fn server_ready(node: &Node) -> Response<Body> {
    let ready = node.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    json_response(status, json!({ "ready": ready }))
}

pub(super) fn server_metadata(node: &Node) -> Response<Body> {
    json_response(
        StatusCode::OK,
        json!({
            "name": "idn-node-agent",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": EXTENSIONS,
            "node": node.config().node,
            "tier": node.config().tier,
        }),
    )
}

/// Extensions of the protocol this server speaks, as server metadata lists them.
pub(super) const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

/// What OIP says of a model or a service, before a protocol encodes it.
pub(super) struct Metadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Why a model is not ready; its inputs and outputs are unknown then.
    pub unready: Option<String>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// The metadata of model or service `name`.
pub(super) fn metadata(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Metadata, RequestError> {
    let model = match node.lookup(name, version)? {
        Served::Service(service) => return Ok(service_metadata(node, &service.config)),
        Served::Model(_, model) => model,
    };
    let config = model.config();
    let (inputs, outputs, unready) = match model.readiness() {
        Ok(signature) => (signature.inputs.clone(), signature.outputs.clone(), None),
        Err(reason) => (Vec::new(), Vec::new(), Some(reason.to_owned())),
    };
    let mut parameters = serde_json::Map::new();
    if !config.labels.is_empty() {
        parameters.insert("labels".into(), json!(config.labels));
    }
    // The revision: a client that rolled out a new file waits until the node reports it.
    if let Some(sha256) = &config.sha256 {
        parameters.insert("sha256".into(), json!(sha256));
    }
    Ok(Metadata {
        name: config.name.clone(),
        versions: vec![config.version.clone()],
        platform: "onnxruntime_onnx",
        inputs,
        outputs,
        unready,
        parameters,
    })
}

/// Metadata of a service: its strategy decides which model answers, so only the output is
/// fixed; the inputs are those of the first model of this node the strategy asks (every
/// target of a service takes the same inputs), none when it only forwards.
fn service_metadata(node: &Node, service: &ServiceConfig) -> Metadata {
    let mut parameters = serde_json::Map::new();
    parameters.insert("strategy".into(), json!(service.strategy));
    let inputs = service
        .strategy
        .targets()
        .into_iter()
        .find_map(|target| match target {
            Target::Model(model) => node.model(model, None).ok()?.1.readiness().ok(),
            _ => None,
        })
        .map(|signature| signature.inputs.clone())
        .unwrap_or_default();
    Metadata {
        name: service.name.clone(),
        versions: vec!["1".to_owned()],
        platform: "idn_service",
        inputs,
        outputs: vec![TensorSpec {
            name: service.output.clone(),
            datatype: DataType::Fp32,
            shape: vec![-1, -1],
        }],
        unready: None,
        parameters,
    }
}

/// Whether model or service `name` can answer: a service always can, a model once loaded;
/// the error says why not.
pub(super) fn readiness(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Result<(), RequestError>, RequestError> {
    Ok(match node.lookup(name, version)? {
        Served::Service(_) => Ok(()),
        Served::Model(_, model) => model.ready_signature().map(|_| ()),
    })
}

fn specs_json(specs: &[TensorSpec]) -> serde_json::Value {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape }))
        .collect()
}

pub(super) fn model_metadata(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Body>, RequestError> {
    let metadata = metadata(node, name, version)?;
    let mut body = json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": specs_json(&metadata.inputs),
        "outputs": specs_json(&metadata.outputs),
    });
    // A service has no state of its own: what answers it is decided per request.
    if metadata.platform != "idn_service" {
        body["state"] = json!(if metadata.unready.is_some() {
            "UNAVAILABLE"
        } else {
            "READY"
        });
    }
    if let Some(reason) = metadata.unready {
        body["reason"] = json!(reason);
    }
    if !metadata.parameters.is_empty() {
        body["parameters"] = metadata.parameters.into();
    }
    Ok(json_response(StatusCode::OK, body))
}

pub(super) fn model_ready(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Body>, RequestError> {
    Ok(match readiness(node, name, version)? {
        Ok(()) => json_response(StatusCode::OK, json!({ "name": name, "ready": true })),
        // OIP: a 4xx status means "not ready".
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            json!({ "name": name, "ready": false, "error": e.to_string() }),
        ),
    })
}
