//! The inference endpoint: authorize, read the body, decode, answer from a model or a service,
//! encode; and the request metrics around it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use super::response::{Body, error_response, http_status};
use crate::error::RequestError;
use crate::node::Node;
use crate::wire::context::RequestContext;
use crate::wire::provenance;
use crate::wire::tensor::{Tensor, TensorData};
use crate::wire::{self, InferRequest, InferResponse};
use idn_contract::config::ServiceConfig;

/// Reads the whole body, refusing one over `limit` bytes or one that does not arrive in time,
/// so a slow or oversized client cannot hold memory or a connection.
async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<(http::request::Parts, Bytes), RequestError> {
    let too_large = || RequestError::BodyTooLarge { limit_bytes: limit };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| RequestError::BodyTimeout { timeout })?;
    match collected {
        Ok(body) => Ok((parts, body.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(RequestError::Invalid(format!(
            "cannot read request body: {e}"
        ))),
    }
}

pub(super) async fn infer(
    node: &Arc<Node>,
    name: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Response<Body> {
    let timer = node.metrics.request_started();
    let response = run_infer(node, name, version, request)
        .instrument(tracing::debug_span!("infer", model = %name))
        .await
        .unwrap_or_else(|e| {
            if http_status(&e).is_server_error() {
                tracing::warn!(model = %name, kind = e.kind(), error = %e, "inference failed");
            } else {
                tracing::debug!(model = %name, kind = e.kind(), error = %e, "inference request refused");
            }
            error_response(&e)
        });
    let served = node.serves(name).then_some(name);
    timer.finish(served, response.status().as_u16());
    response
}

/// Refuses a call without the node's bearer token, when one is configured.
fn authorize(node: &Node, headers: &http::HeaderMap) -> Result<(), RequestError> {
    let Some(token) = &node.token else {
        return Ok(());
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(RequestError::Unauthorized("invalid bearer token")),
        None => Err(RequestError::Unauthorized(
            "this node requires an Authorization: Bearer token",
        )),
    }
}

/// Compares secrets without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn run_infer(
    node: &Arc<Node>,
    name: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    authorize(node, request.headers())?;
    let service = node.service(name);
    let model = match service {
        Some(_) => None,
        None => {
            let (index, model) = node.model(name, version)?;
            Node::ready_signature(name, model)?;
            Some(index)
        }
    };
    let limits = &node.config.limits;
    let (parts, body) = read_body(
        request,
        limits.max_body_bytes,
        Duration::from_secs(limits.read_timeout_seconds),
    )
    .await?;
    let header_length = parts
        .headers
        .get(wire::HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let request = wire::decode_request(&body, header_length)?;
    let response = match (service, model) {
        (Some(service), _) => infer_service(node, service, &parts.headers, &request).await?,
        (None, Some(index)) => infer_model(node, index, &request).await?,
        (None, None) => unreachable!("a name is a service or a model"),
    };
    let encoded = wire::encode_response(&response, |output| {
        request
            .outputs
            .iter()
            .find(|o| o.name == output)
            .map_or(request.binary_output, |o| o.binary)
    });
    let mut builder = Response::builder().status(StatusCode::OK);
    builder = match encoded.header_length {
        Some(n) => builder
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(wire::HEADER_LENGTH, n),
        None => builder.header(CONTENT_TYPE, "application/json"),
    };
    Ok(builder
        .body(Full::new(encoded.bytes))
        .expect("headers are valid"))
}

async fn infer_model(
    node: &Node,
    index: usize,
    request: &InferRequest,
) -> Result<InferResponse, RequestError> {
    let model = &node.models[index];
    let name = &model.config.name;
    let signature = Node::ready_signature(name, model)?;
    let outputs: Vec<String> = if request.outputs.is_empty() {
        model.config.outputs.clone()
    } else {
        request
            .outputs
            .iter()
            .map(|o| {
                signature
                    .output(&o.name)
                    .map(|s| s.name.clone())
                    .ok_or_else(|| {
                        RequestError::Invalid(format!(
                            "model {name:?} has no output {:?} (outputs: {})",
                            o.name,
                            signature
                                .outputs
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let inference = node
        .run_model(index, request.inputs.clone(), outputs)
        .await?;
    Ok(InferResponse {
        model_name: name.clone(),
        model_version: model.config.version.clone(),
        id: request.id.clone(),
        parameters: wire::Parameters::new(),
        outputs: inference.outputs,
    })
}

async fn infer_service(
    node: &Node,
    service: &ServiceConfig,
    headers: &http::HeaderMap,
    request: &InferRequest,
) -> Result<InferResponse, RequestError> {
    if let Some(other) = request.outputs.iter().find(|o| o.name != service.output) {
        return Err(RequestError::Invalid(format!(
            "service {:?} has no output {:?} (outputs: {})",
            service.name, other.name, service.output
        )));
    }
    let mut context = RequestContext::from_request(
        headers,
        &request.parameters,
        Duration::from_millis(service.deadline_ms),
    )?;
    if context.request_id.is_none() {
        context.request_id = request.id.clone();
    }
    let answer = node.deliver(service, &request.inputs, &context).await?;
    let mut parameters = wire::Parameters::new();
    provenance::encode(&answer.items, &mut parameters);
    Ok(InferResponse {
        model_name: service.name.clone(),
        model_version: "1".to_owned(),
        id: request.id.clone(),
        parameters,
        outputs: vec![Tensor {
            name: service.output.clone(),
            shape: vec![answer.items.len(), answer.classes],
            data: TensorData::Fp32(answer.probs),
        }],
    })
}
