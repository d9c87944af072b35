//! The OIP v2 HTTP server: one routing function, handlers returning `Result<_, ApiError>`, and
//! one place ([`into_response`]) that turns an error into its status and OIP error body.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use idn_contract::names::OPENMETRICS_CONTENT_TYPE;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::metrics::{self, ModelLabels, RequestLabels};
use crate::node::Node;
use crate::protocol::{self, ApiError, InferRequest, InferResponse};
use crate::provenance;
use crate::runtime::{ModelState, TensorSpec};
use crate::tensor::{Tensor, TensorData};
use crate::{Error, Result};
use idn_contract::config::{NodeAgentConfig, ServiceConfig};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A matched route.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Live,
    Ready,
    ServerMetadata,
    Metrics,
    ModelMetadata(&'a str, Option<&'a str>),
    ModelReady(&'a str, Option<&'a str>),
    Infer(&'a str, Option<&'a str>),
}

/// Matches method and path segments to a route.
fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (route, allowed) = match segments.as_slice() {
        ["v2", "health", "live"] => (Route::Live, Method::GET),
        ["v2", "health", "ready"] => (Route::Ready, Method::GET),
        ["v2"] => (Route::ServerMetadata, Method::GET),
        ["metrics"] => (Route::Metrics, Method::GET),
        ["v2", "models", name, rest @ ..] => {
            let (version, rest) = match rest {
                ["versions", v, rest @ ..] => (Some(*v), rest),
                _ => (None, rest),
            };
            match rest {
                [] => (Route::ModelMetadata(name, version), Method::GET),
                ["ready"] => (Route::ModelReady(name, version), Method::GET),
                ["infer"] => (Route::Infer(name, version), Method::POST),
                _ => return Err(ApiError::not_found(format!("no route for {path}"))),
            }
        }
        _ => return Err(ApiError::not_found(format!("no route for {path}"))),
    };
    if *method != allowed {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}; use {allowed}"),
        ));
    }
    Ok(route)
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static headers are valid")
}

fn into_response(error: &ApiError) -> Response<Body> {
    Response::builder()
        .status(error.status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(error.body())))
        .expect("static headers are valid")
}

/// Serves one request: routes it and turns errors into OIP error responses.
async fn handle(node: Arc<Node>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let result = match route(request.method(), &path) {
        Ok(Route::Live) => Ok(json_response(StatusCode::OK, json!({ "live": true }))),
        Ok(Route::Ready) => Ok(server_ready(&node)),
        Ok(Route::ServerMetadata) => Ok(server_metadata(&node)),
        Ok(Route::Metrics) => Ok(Response::builder()
            .header(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)
            .body(Full::new(Bytes::from(node.metrics.encode())))
            .expect("static headers are valid")),
        Ok(Route::ModelMetadata(name, version)) => model_metadata(&node, name, version),
        Ok(Route::ModelReady(name, version)) => model_ready(&node, name, version),
        Ok(Route::Infer(name, version)) => {
            let name = name.to_owned();
            let version = version.map(str::to_owned);
            return infer(&node, &name, version.as_deref(), request).await;
        }
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| into_response(&e))
}

fn server_ready(node: &Node) -> Response<Body> {
    let ready = node.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    json_response(status, json!({ "ready": ready }))
}

fn server_metadata(node: &Node) -> Response<Body> {
    json_response(
        StatusCode::OK,
        json!({
            "name": "idn-node-agent",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
            "node": node.config.node,
            "tier": node.config.tier,
        }),
    )
}

fn specs_json(specs: &[TensorSpec]) -> serde_json::Value {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape }))
        .collect()
}

fn model_metadata(
    node: &Node,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if let Some(service) = node.service(name) {
        return Ok(service_metadata(service));
    }
    let (_, model) = node.model(name, version)?;
    let mut body = json!({
        "name": model.config.name,
        "versions": [model.config.version],
        "platform": "onnxruntime_onnx",
    });
    match &model.state {
        ModelState::Ready { signature, .. } => {
            body["inputs"] = specs_json(&signature.inputs);
            body["outputs"] = specs_json(&signature.outputs);
            body["state"] = json!("READY");
        }
        ModelState::Unavailable { reason } => {
            body["inputs"] = json!([]);
            body["outputs"] = json!([]);
            body["state"] = json!("UNAVAILABLE");
            body["reason"] = json!(reason);
        }
    }
    if !model.config.labels.is_empty() {
        body["parameters"] = json!({ "labels": model.config.labels });
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

fn model_ready(node: &Node, name: &str, version: Option<&str>) -> Result<Response<Body>, ApiError> {
    if node.service(name).is_some() {
        return Ok(json_response(
            StatusCode::OK,
            json!({ "name": name, "ready": true }),
        ));
    }
    let (_, model) = node.model(name, version)?;
    Ok(match &model.state {
        ModelState::Ready { .. } => {
            json_response(StatusCode::OK, json!({ "name": name, "ready": true }))
        }
        // OIP: a 4xx status means "not ready".
        ModelState::Unavailable { reason } => json_response(
            StatusCode::BAD_REQUEST,
            json!({ "name": name, "ready": false, "error": format!("model {name:?} is not ready: {reason}") }),
        ),
    })
}

/// Reads the whole body, refusing one over `limit` bytes (413) or one that does not arrive in
/// time (408), so a slow or oversized client cannot hold memory or a connection.
async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<(http::request::Parts, Bytes), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
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
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {} s", timeout.as_secs()),
            )
        })?;
    match collected {
        Ok(body) => Ok((parts, body.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read request body: {e}"
        ))),
    }
}

async fn infer(
    node: &Arc<Node>,
    name: &str,
    version: Option<&str>,
    request: Request<Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let known = node.serves(name);
    let label = if known { name } else { metrics::UNKNOWN_MODEL };
    node.metrics.in_flight.inc();
    let response = run_infer(node, name, version, request)
        .instrument(tracing::debug_span!("infer", model = %name))
        .await
        .unwrap_or_else(|e| {
            if e.status.is_server_error() {
                tracing::warn!(model = %name, error = %e, "inference failed");
            } else {
                tracing::debug!(model = %name, error = %e, "inference request refused");
            }
            into_response(&e)
        });
    node.metrics.in_flight.dec();
    node.metrics
        .requests
        .get_or_create(&RequestLabels {
            model: label.to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    if known {
        node.metrics
            .request_duration
            .get_or_create(&ModelLabels {
                model: label.to_owned(),
            })
            .observe(start.elapsed().as_secs_f64());
    }
    response
}

/// Refuses a call without the node's bearer token, when one is configured.
fn authorize(node: &Node, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &node.token else {
        return Ok(());
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid bearer token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
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
) -> Result<Response<Body>, ApiError> {
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
        .get(protocol::HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let request = protocol::decode_request(&body, header_length)?;
    let response = match (service, model) {
        (Some(service), _) => infer_service(node, service, &parts.headers, &request).await?,
        (None, Some(index)) => infer_model(node, index, &request).await?,
        (None, None) => unreachable!("a name is a service or a model"),
    };
    let encoded = protocol::encode_response(&response, |output| {
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
            .header(protocol::HEADER_LENGTH, n),
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
) -> Result<InferResponse, ApiError> {
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
                        ApiError::bad_request(format!(
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
        parameters: protocol::Parameters::new(),
        outputs: inference.outputs,
    })
}

async fn infer_service(
    node: &Node,
    service: &ServiceConfig,
    headers: &http::HeaderMap,
    request: &InferRequest,
) -> Result<InferResponse, ApiError> {
    if let Some(other) = request.outputs.iter().find(|o| o.name != service.output) {
        return Err(ApiError::bad_request(format!(
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
    let mut parameters = protocol::Parameters::new();
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

/// Binds the configured listen address.
pub async fn bind(config: &NodeAgentConfig) -> Result<TcpListener> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.to_string(),
            source,
        })
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish (up to the configured drain timeout).
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let node = Arc::clone(&node);
        let service = service_fn(move |request| {
            let node = Arc::clone(&node);
            async move { Ok::<_, std::convert::Infallible>(handle(node, request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drain = Duration::from_secs(node.config.limits.drain_timeout_seconds);
    tracing::info!(connections = graceful.count(), "draining");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}

/// The address a listener is bound to, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_oip_paths() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(route(&get, "/v2/health/live"), Ok(Route::Live));
        assert_eq!(route(&get, "/v2/health/ready"), Ok(Route::Ready));
        assert_eq!(route(&get, "/v2"), Ok(Route::ServerMetadata));
        assert_eq!(route(&get, "/metrics"), Ok(Route::Metrics));
        assert_eq!(
            route(&get, "/v2/models/m"),
            Ok(Route::ModelMetadata("m", None))
        );
        assert_eq!(
            route(&get, "/v2/models/m/versions/2"),
            Ok(Route::ModelMetadata("m", Some("2")))
        );
        assert_eq!(
            route(&get, "/v2/models/m/ready"),
            Ok(Route::ModelReady("m", None))
        );
        assert_eq!(
            route(&post, "/v2/models/m/versions/1/infer"),
            Ok(Route::Infer("m", Some("1")))
        );
    }

    #[test]
    fn unknown_paths_and_wrong_methods_are_refused() {
        assert_eq!(
            route(&Method::GET, "/v1/models/m").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&Method::GET, "/v2/models/m/explain")
                .unwrap_err()
                .status,
            StatusCode::NOT_FOUND
        );
        let wrong = route(&Method::GET, "/v2/models/m/infer").unwrap_err();
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(wrong.message.contains("use POST"), "{}", wrong.message);
        assert_eq!(
            route(&Method::POST, "/v2/health/live").unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
