//! The learning endpoints (idn extensions beside OIP v2), each on a service:
//! `POST /v2/models/{service}/feedback` takes labels for answers by request id;
//! `GET|PUT /v2/models/{service}/learned` exports and seeds what the service learned;
//! `GET|DELETE /v2/models/{service}/hard-examples` reads and drains its hard-example store.
//! They take the node's bearer token like inference: they change state or hold inputs.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::infer::read_body;
use super::response::{Body, json_response};
use crate::delivery::Service;
use crate::error::RequestError;
use crate::learn::lock;
use crate::learn::state::ServiceState;
use crate::node::{Node, Served};

/// Labels for one answer: the request's id and one class index per item (null: unknown).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Feedback {
    id: String,
    labels: Vec<Option<usize>>,
}

pub(super) async fn feedback(
    node: &Node,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    let service = service(node, &request, name)?;
    let feedback: Feedback = parse(node, request, "{\"id\": \"...\", \"labels\": [3]}").await?;
    let accepted = service.label(&feedback.id, &feedback.labels)?;
    node.metrics()
        .count_learning(&node.config().node, name, "label", accepted, 0);
    Ok(json_response(
        StatusCode::OK,
        json!({ "accepted": accepted }),
    ))
}

pub(super) async fn learned(
    node: &Node,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    let service = service(node, &request, name)?;
    if request.method() == Method::PUT {
        let state: ServiceState = parse(node, request, "the body of a GET on this path").await?;
        service.seed(state).map_err(RequestError::Invalid)?;
        tracing::info!(service = %name, "learned state seeded");
    }
    let state = service.learned().ok_or_else(|| {
        RequestError::NotFound(format!(
            "service {name:?} does not learn (no threshold.adapt or ensemble.learn)"
        ))
    })?;
    let value = serde_json::to_value(state).expect("learned state serializes");
    Ok(json_response(StatusCode::OK, value))
}

pub(super) fn hard_examples(
    node: &Node,
    name: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    let service = service(node, request, name)?;
    let store = service.hard_examples.as_ref().ok_or_else(|| {
        RequestError::NotFound(format!(
            "service {name:?} keeps no hard examples (no hardExamples in its config)"
        ))
    })?;
    let contents = lock(store).contents(request.method() == Method::DELETE);
    let value = serde_json::to_value(contents).expect("hard examples serialize");
    Ok(json_response(StatusCode::OK, value))
}

/// The service a learning endpoint names, once the caller's token is checked.
fn service<'n>(
    node: &'n Node,
    request: &Request<Incoming>,
    name: &str,
) -> Result<&'n Service, RequestError> {
    match super::infer::admit(node, request.headers(), name, None)? {
        Served::Service(service) => Ok(service),
        Served::Model(..) => Err(RequestError::NotFound(format!(
            "{name:?} is a model; feedback, learned state and hard examples belong to services"
        ))),
    }
}

/// Reads a JSON body of type `T`; a body that is not one is a 400 showing what is expected.
async fn parse<T: for<'de> Deserialize<'de>>(
    node: &Node,
    request: Request<Incoming>,
    expected: &str,
) -> Result<T, RequestError> {
    let limits = &node.config().limits;
    let timeout = Duration::from_secs(limits.read_timeout_seconds);
    let (_, body) = read_body(request, limits.max_body_bytes, timeout).await?;
    serde_json::from_slice(&body)
        .map_err(|e| RequestError::Invalid(format!("invalid body: {e} (expected {expected})")))
}
