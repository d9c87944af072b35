//! Inference, whichever protocol carries it: admit (token, name, readiness), answer from a
//! model or by a service's strategy, and the request metrics around it; and the REST endpoint
//! on top (read the body, decode, answer, encode). The gRPC service reuses all but the body.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::{Instrument, Span};

use super::response::{Body, error_response, http_status};
use crate::delivery::Service;
use crate::error::RequestError;
use crate::model::Model;
use crate::node::{Node, Served};
use crate::trace;
use crate::wire::context::RequestContext;
use crate::wire::provenance;
use crate::wire::tensor::{Tensor, TensorData};
use crate::wire::{self, InferRequest, InferResponse};

/// Reads the whole body, refusing one over `limit` bytes or one that does not arrive in time,
/// so a slow or oversized client cannot hold memory or a connection.
pub(super) async fn read_body(
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

/// Counts and logs one inference request, whichever protocol carried it: by model and by the
/// HTTP status of its outcome (gRPC codes map from the same error kinds).
/// `span` is the request's (`trace::request_span`).
pub(super) async fn observed<T>(
    node: &Node,
    name: &str,
    span: Span,
    answer: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    let timer = node.metrics().request_started();
    let result = answer.instrument(span.clone()).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => {
            let status = http_status(e);
            // Counted by status in the metrics; server errors are logged as a summary.
            let summary = status
                .is_server_error()
                .then(|| node.failures().admit(e.kind()))
                .flatten();
            match summary {
                Some(left_out) => {
                    tracing::warn!(model = %name, kind = e.kind(), error = %e, left_out, "inference failed");
                }
                None => {
                    tracing::debug!(model = %name, kind = e.kind(), error = %e, "inference request failed");
                }
            }
            status
        }
    };
    trace::record_status(&span, status);
    timer.finish(node.serves(name).then_some(name), status.as_u16());
    result
}

/// Admits a request to `name`: the caller's token (`authorization: Bearer ...` in `headers`),
/// the model or service, and a model that can serve, all before the request's data is read.
pub(super) fn admit<'n>(
    node: &'n Node,
    headers: &HeaderMap,
    name: &str,
    version: Option<&str>,
) -> Result<Served<'n>, RequestError> {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    node.check_token(token)?;
    let served = node.lookup(name, version)?;
    if let Served::Model(_, model) = served {
        model.ready_signature()?;
    }
    Ok(served)
}

/// Answers a decoded request from a model or by a service's strategy; `headers` carry the
/// request context (path, deadline, request id, trace). A model takes the request's inputs.
pub(super) async fn answer(
    node: &Node,
    served: Served<'_>,
    request: &mut InferRequest,
    headers: &HeaderMap,
) -> Result<InferResponse, RequestError> {
    match served {
        Served::Service(service) => infer_service(node, service, headers, request).await,
        Served::Model(index, model) => {
            let inputs = std::mem::take(&mut request.inputs);
            infer_model(node, index, model, inputs, request).await
        }
    }
}

/// The REST inference endpoint.
pub(super) async fn infer(
    node: &Arc<Node>,
    name: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Response<Body> {
    let span = trace::request_span(&node.config().node, name, "rest", request.headers());
    observed(node, name, span, run_infer(node, name, version, request))
        .await
        .unwrap_or_else(|e| error_response(&e))
}

async fn run_infer(
    node: &Arc<Node>,
    name: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    let served = admit(node, request.headers(), name, version)?;
    let limits = &node.config().limits;
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
    let mut request = wire::decode_request(&body, header_length)?;
    let response = answer(node, served, &mut request, &parts.headers).await?;
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

/// Runs model `index` on `inputs`, for the outputs `request` asks (default: the model's).
async fn infer_model(
    node: &Node,
    index: usize,
    model: &Model,
    inputs: Vec<Tensor>,
    request: &InferRequest,
) -> Result<InferResponse, RequestError> {
    let name = model.name();
    let signature = model.ready_signature()?;
    let outputs: Vec<String> = if request.outputs.is_empty() {
        model.config().outputs.clone()
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
    // A model request has no deadline of its own: its job is dropped if the caller goes away.
    let inference = node.infer(index, inputs, outputs, None).await?;
    Ok(InferResponse {
        model_name: name.to_owned(),
        model_version: model.config().version.clone(),
        id: request.id.clone(),
        parameters: wire::Parameters::new(),
        outputs: inference.outputs,
    })
}

/// Answers `request` by the service's strategy, with the provenance of every item.
async fn infer_service(
    node: &Node,
    service: &Service,
    headers: &http::HeaderMap,
    request: &InferRequest,
) -> Result<InferResponse, RequestError> {
    let config = &service.config;
    if let Some(other) = request.outputs.iter().find(|o| o.name != config.output) {
        return Err(RequestError::Invalid(format!(
            "service {:?} has no output {:?} (outputs: {})",
            config.name, other.name, config.output
        )));
    }
    let mut context = RequestContext::from_request(
        headers,
        &request.parameters,
        Duration::from_millis(config.deadline_ms),
    )?;
    if context.request_id.is_none() {
        context.request_id = request.id.clone();
    }
    let answer = node
        .delivery()
        .deliver(service, &request.inputs, &context)
        .await?;
    trace::record_answer(&answer.items);
    let mut parameters = wire::Parameters::new();
    provenance::encode(&answer.items, &mut parameters);
    Ok(InferResponse {
        model_name: config.name.clone(),
        model_version: "1".to_owned(),
        id: request.id.clone(),
        parameters,
        outputs: vec![Tensor {
            name: config.output.clone(),
            shape: vec![answer.items.len(), answer.classes],
            data: TensorData::Fp32(answer.probs),
        }],
    })
}
