//! Health, readiness and metadata endpoints: what a probe, a scraper or a client asks before
//! it sends inferences.

use http::Response;
use http::StatusCode;
use serde_json::json;

use super::response::{Body, json_response};
use crate::error::RequestError;
use crate::model::TensorSpec;
use crate::node::{Node, Served};
use idn_contract::config::ServiceConfig;

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
            "extensions": ["binary_tensor_data"],
            "node": node.config().node,
            "tier": node.config().tier,
        }),
    )
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
    let model = match node.lookup(name, version)? {
        Served::Service(service) => return Ok(service_metadata(&service.config)),
        Served::Model(_, model) => model,
    };
    let config = model.config();
    let mut body = json!({
        "name": config.name,
        "versions": [config.version],
        "platform": "onnxruntime_onnx",
    });
    match model.readiness() {
        Ok(signature) => {
            body["inputs"] = specs_json(&signature.inputs);
            body["outputs"] = specs_json(&signature.outputs);
            body["state"] = json!("READY");
        }
        Err(reason) => {
            body["inputs"] = json!([]);
            body["outputs"] = json!([]);
            body["state"] = json!("UNAVAILABLE");
            body["reason"] = json!(reason);
        }
    }
    if !config.labels.is_empty() {
        body["parameters"] = json!({ "labels": config.labels });
    }
    Ok(json_response(StatusCode::OK, body))
}

/// Metadata of a service: its strategy decides which model answers, so only the output is
/// fixed; inputs are those of the models behind it.
fn service_metadata(service: &ServiceConfig) -> Response<Body> {
    json_response(
        StatusCode::OK,
        json!({
            "name": service.name,
            "versions": ["1"],
            "platform": "idn_service",
            "inputs": [],
            "outputs": [{"name": service.output, "datatype": "FP32", "shape": [-1, -1]}],
            "parameters": {"strategy": service.strategy},
        }),
    )
}

pub(super) fn model_ready(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Body>, RequestError> {
    let model = match node.lookup(name, version)? {
        Served::Service(_) => {
            return Ok(json_response(
                StatusCode::OK,
                json!({ "name": name, "ready": true }),
            ));
        }
        Served::Model(_, model) => model,
    };
    Ok(match model.readiness() {
        Ok(_) => json_response(StatusCode::OK, json!({ "name": name, "ready": true })),
        // OIP: a 4xx status means "not ready".
        Err(reason) => json_response(
            StatusCode::BAD_REQUEST,
            json!({ "name": name, "ready": false, "error": format!("model {name:?} is not ready: {reason}") }),
        ),
    })
}
