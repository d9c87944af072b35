//! A scripted node for delivery tests: its models and upstreams answer from a script, so the
//! strategies run without ONNX Runtime or HTTP.
//!
//! Each input row carries its row id, so a target answers by id (wherever the row travelled in
//! a sub-batch) and the script records which rows each target was asked about.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;

use super::{Answer, Backend, Delivery, Service, UpstreamCall, resolve};
use crate::error::{RequestError, UpstreamError};
use crate::metrics::Metrics;
use crate::ratelog::RateLimited;
use crate::wire::context::RequestContext;
use crate::wire::tensor::{Tensor, TensorData};
use crate::wire::{InferResponse, Parameters};
use idn_contract::config::NodeAgentConfig;

/// The node's name in every scripted test.
const NODE: &str = "edge";

/// How a scripted target answers.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    /// Row `i` of the batch is answered with `probs[i]`; an upstream adds `parameters`.
    Answer {
        probs: Vec<Vec<f32>>,
        parameters: serde_json::Value,
    },
    /// An upstream failure.
    Fail(UpstreamError),
    /// A model that cannot answer.
    Error(RequestError),
    /// An output that is not the probabilities asked for.
    WrongOutput,
    /// Answers after this long (tokio time).
    After(Duration, Box<Reply>),
    /// Never answers.
    Hang,
}

/// Answers row `i` with `probs[i]`.
pub(super) fn rows<const C: usize>(probs: &[[f32; C]]) -> Reply {
    Reply::Answer {
        probs: probs.iter().map(|row| row.to_vec()).collect(),
        parameters: serde_json::json!({}),
    }
}

/// Whether two rows of probabilities agree up to rounding.
pub(super) fn close(actual: &[f32], expected: &[f32]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, b)| (a - b).abs() < 1e-6)
}

pub(super) fn timeout(upstream: &str) -> UpstreamError {
    UpstreamError::Timeout {
        upstream: upstream.into(),
        timeout_ms: 300,
    }
}

pub(super) fn unreachable(upstream: &str) -> UpstreamError {
    UpstreamError::Unreachable {
        upstream: upstream.into(),
        message: "connection refused".into(),
    }
}

fn status(upstream: &str, status: StatusCode) -> UpstreamError {
    UpstreamError::Status {
        upstream: upstream.into(),
        status,
        message: status.to_string(),
    }
}

pub(super) fn loop_detected(upstream: &str) -> UpstreamError {
    status(upstream, StatusCode::LOOP_DETECTED)
}

/// One failure of each kind a fallback may hide, with its metric label.
pub(super) fn failures(upstream: &str) -> Vec<(&'static str, UpstreamError)> {
    let invalid = UpstreamError::Invalid {
        upstream: upstream.into(),
        message: "not OIP".into(),
    };
    let failures = vec![
        timeout(upstream),
        unreachable(upstream),
        status(upstream, StatusCode::SERVICE_UNAVAILABLE),
        status(upstream, StatusCode::INTERNAL_SERVER_ERROR),
        invalid,
    ];
    failures.into_iter().map(|e| (e.kind(), e)).collect()
}

/// A node whose services come from a config fragment and whose targets answer from a script.
pub(super) struct Script {
    config: NodeAgentConfig,
    services: Vec<Service>,
    replies: HashMap<String, Reply>,
    /// Each target asked (model, or `upstream/service`) and the row ids it was asked about.
    calls: Mutex<Vec<(String, Vec<usize>)>>,
    metrics: Metrics,
    failures: RateLimited,
}

impl Script {
    /// A node with models `small`, `mid` and `big` and the services and upstreams of `yaml`.
    pub(super) fn new(yaml: &str) -> Self {
        let config = NodeAgentConfig::from_yaml(&format!(
            "apiVersion: idn.dev/v1alpha1
kind: NodeAgentConfig
node: {NODE}
models:
  - {{name: small, path: small.onnx, inputs: [x], outputs: [probs]}}
  - {{name: mid, path: mid.onnx, inputs: [x], outputs: [probs]}}
  - {{name: big, path: big.onnx, inputs: [x], outputs: [probs]}}
{yaml}"
        ))
        .unwrap();
        let services = resolve(&config).unwrap();
        Script {
            config,
            services,
            replies: HashMap::new(),
            calls: Mutex::default(),
            metrics: Metrics::default(),
            failures: RateLimited::default(),
        }
    }

    /// Names the classes of model `name`'s answers.
    pub(super) fn labels(mut self, name: &str, labels: &[&str]) -> Self {
        let model = self.config.models.iter_mut().find(|m| m.name == name);
        model.expect("a scripted model").labels = labels.iter().map(|&l| l.into()).collect();
        self.services = resolve(&self.config).unwrap();
        self
    }

    pub(super) fn model(self, name: &str, reply: Reply) -> Self {
        self.reply(name, reply)
    }

    pub(super) fn upstream(self, name: &str, reply: Reply) -> Self {
        self.reply(name, reply)
    }

    fn reply(mut self, name: &str, reply: Reply) -> Self {
        self.replies.insert(name.to_owned(), reply);
        self
    }

    /// A batch of `n` rows, each holding its id.
    pub(super) fn batch(n: usize) -> Vec<Tensor> {
        Self::rows(&(0..n).collect::<Vec<_>>())
    }

    fn rows(ids: &[usize]) -> Vec<Tensor> {
        vec![Tensor {
            name: "x".into(),
            shape: vec![ids.len(), 1],
            data: TensorData::Fp32(ids.iter().map(|&i| i as f32).collect()),
        }]
    }

    /// The context of a request that passed through `path`, with the service's deadline.
    pub(super) fn context(&self, path: &[&str]) -> RequestContext {
        RequestContext {
            path: path.iter().map(|&n| n.to_owned()).collect(),
            deadline: tokio::time::Instant::now() + Duration::from_millis(100),
            request_id: None,
            trace: None,
        }
    }

    pub(super) async fn deliver(&self, service: &str, n: usize) -> Result<Answer, RequestError> {
        self.deliver_from(&[], service, n).await
    }

    /// A batch of the rows `ids`, as if a caller had picked them.
    pub(super) async fn deliver_rows(
        &self,
        service: &str,
        ids: &[usize],
    ) -> Result<Answer, RequestError> {
        self.deliver_inputs(service, &Self::rows(ids), &self.context(&[]))
            .await
    }

    pub(super) async fn deliver_from(
        &self,
        path: &[&str],
        service: &str,
        n: usize,
    ) -> Result<Answer, RequestError> {
        self.deliver_inputs(service, &Self::batch(n), &self.context(path))
            .await
    }

    pub(super) async fn deliver_inputs(
        &self,
        service: &str,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let service = self
            .services
            .iter()
            .find(|s| s.name() == service)
            .unwrap_or_else(|| panic!("no service {service}"));
        let delivery = Delivery {
            node: NODE,
            services: &self.services,
            backend: self,
            metrics: &self.metrics,
            failures: &self.failures,
        };
        delivery.deliver(service, inputs, context).await
    }

    pub(super) fn calls(&self) -> Vec<(String, Vec<usize>)> {
        self.calls.lock().unwrap().clone()
    }

    /// The metrics exposition.
    pub(super) fn metrics(&self) -> String {
        self.metrics.encode()
    }

    /// Plays `name`'s reply to the rows of `inputs`: their probabilities as output `output`,
    /// and the parameters an upstream adds.
    async fn play(
        &self,
        name: &str,
        asked: String,
        output: &str,
        inputs: &[Tensor],
    ) -> Result<(Tensor, Parameters), RequestError> {
        let TensorData::Fp32(ids) = &inputs[0].data else {
            panic!("scripted inputs hold row ids")
        };
        let ids: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
        self.calls.lock().unwrap().push((asked, ids.clone()));
        let mut reply = self
            .replies
            .get(name)
            .unwrap_or_else(|| panic!("no reply for {name}"));
        loop {
            match reply {
                Reply::After(delay, then) => {
                    tokio::time::sleep(*delay).await;
                    reply = then;
                }
                Reply::Hang => std::future::pending::<()>().await,
                Reply::Fail(e) => return Err(RequestError::Upstream(e.clone())),
                Reply::Error(e) => return Err(e.clone()),
                Reply::WrongOutput => {
                    let tensor = Tensor {
                        name: "logits".into(),
                        shape: vec![ids.len(), 1],
                        data: TensorData::Int64(vec![0; ids.len()]),
                    };
                    return Ok((tensor, Parameters::new()));
                }
                Reply::Answer { probs, parameters } => {
                    let classes = probs[0].len();
                    let data = ids.iter().flat_map(|&id| probs[id].clone()).collect();
                    let tensor = Tensor {
                        name: output.into(),
                        shape: vec![ids.len(), classes],
                        data: TensorData::Fp32(data),
                    };
                    let serde_json::Value::Object(parameters) = parameters.clone() else {
                        panic!("parameters are an object")
                    };
                    return Ok((tensor, parameters));
                }
            }
        }
    }
}

impl Backend for Script {
    async fn run_model(
        &self,
        model: usize,
        output: &str,
        inputs: &[Tensor],
        _deadline: tokio::time::Instant,
    ) -> Result<Tensor, RequestError> {
        let name = &self.config.models[model].name;
        let (tensor, _) = self.play(name, name.clone(), output, inputs).await?;
        Ok(tensor)
    }

    async fn call_upstream(
        &self,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        _context: &RequestContext,
    ) -> Result<(InferResponse, Duration), UpstreamError> {
        let name = &self.config.upstreams[call.upstream].name;
        let asked = format!("{name}/{}", call.service);
        let played = self.play(name, asked, call.output, inputs).await;
        let (tensor, parameters) = played.map_err(|e| match e {
            RequestError::Upstream(e) => e,
            other => panic!("an upstream fails with Reply::Fail, not {other:?}"),
        })?;
        let response = InferResponse {
            model_name: format!("{name}-model"),
            model_version: "1".into(),
            id: None,
            parameters,
            outputs: vec![tensor],
        };
        Ok((response, Duration::from_millis(1)))
    }
}
