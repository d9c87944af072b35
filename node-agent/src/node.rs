//! A running node: its config, its models, the pool that runs them, its services resolved
//! against them, its upstreams and its metrics. Everything a request handler needs, built once
//! at start-up.

mod learning;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::delivery::upstream::{self, Upstreams};
use crate::delivery::{self, Backend, Delivery, Service, UpstreamCall};
use crate::error::{Error, RequestError, Result, UpstreamError};
use crate::metrics::Metrics;
use crate::model::ort_library;
use crate::model::{Inference, InferencePool, Model};
use crate::ratelog::RateLimited;
use crate::server::tls::server_config;
use crate::trace;
use crate::wire::InferResponse;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use idn_contract::config::NodeAgentConfig;

/// One node of an inference delivery network, running: shared by every request handler.
pub struct Node {
    config: NodeAgentConfig,
    models: Vec<Model>,
    model_index: HashMap<String, usize>,
    services: Vec<Service>,
    pool: InferencePool,
    upstreams: Upstreams,
    /// Token callers must present, when `auth` is configured.
    token: Option<String>,
    /// The certificate the ports are served with, when `tls` is configured.
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: Metrics,
    /// Set on SIGTERM: the node reports not ready while it lets its clients move away.
    draining: AtomicBool,
    /// Where failures that repeat per request are logged, a line per kind and interval.
    failures: RateLimited,
}

/// What a name in a request path is at this node.
pub(crate) enum Served<'n> {
    Service(&'n Service),
    /// A model, with its index in the pool.
    Model(usize, &'n Model),
}

impl Node {
    /// Resolves the services, loads every model (a model that fails is kept as unavailable),
    /// reads token files and the TLS certificate, and starts the pool. Fails when ONNX Runtime,
    /// a token file or the certificate cannot be loaded, or when a strategy names a model,
    /// service or upstream the node lacks.
    pub fn start(config: NodeAgentConfig) -> Result<Arc<Node>> {
        ort_library::environment()?;
        let services = delivery::resolve(&config).map_err(|problems| Error::Unresolved {
            node: config.node.clone(),
            problems,
        })?;
        let token = config
            .auth
            .as_ref()
            .map(|auth| upstream::read_token(&auth.token_file))
            .transpose()?;
        let tls = config.tls.as_ref().map(server_config).transpose()?;
        let upstreams = Upstreams::new(&config.upstreams, config.limits.max_body_bytes)?;
        let models: Vec<Model> = config.models.iter().cloned().map(Model::load).collect();
        let metrics = Metrics::default();
        for model in &models {
            match model.readiness() {
                Ok(_) => tracing::info!(model = %model.name(), "model ready"),
                Err(reason) => tracing::error!(model = %model.name(), %reason, "model not ready"),
            }
            metrics.set_model_ready(model.name(), model.is_ready());
        }
        let threads = match config.limits.inference_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = InferencePool::start(&models, threads, config.limits.queue_depth);
        let model_index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name().to_owned(), i))
            .collect();
        learning::seed(&services, config.learned_state_file.as_deref())?;
        Ok(Arc::new(Node {
            config,
            models,
            model_index,
            services,
            pool,
            upstreams,
            token,
            tls,
            metrics,
            draining: AtomicBool::new(false),
            failures: RateLimited::default(),
        }))
    }

    /// The config the node runs: its name, tier, limits, models and services.
    pub fn config(&self) -> &NodeAgentConfig {
        &self.config
    }

    /// The certificate the node serves its ports with, when it serves TLS.
    pub(crate) fn tls(&self) -> Option<&rustls::ServerConfig> {
        self.tls.as_deref()
    }

    /// Each model that is not ready, with the reason.
    pub fn unready_models(&self) -> impl Iterator<Item = (&str, &str)> {
        self.models
            .iter()
            .filter_map(|m| Some((m.name(), m.readiness().err()?)))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ready when at least one model serves, or the node only forwards: one broken model must
    /// not take the node out of its Service while the rest works (per-model readiness tells
    /// which).
    pub(crate) fn is_ready(&self) -> bool {
        !self.is_draining() && (self.models.iter().any(Model::is_ready) || self.models.is_empty())
    }

    /// From now on the node reports not ready (the server drains it).
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name() == name)
    }

    /// Whether `name` is a model or service of this node (a metric label may be used for it).
    pub(crate) fn serves(&self, name: &str) -> bool {
        self.model_index.contains_key(name) || self.service(name).is_some()
    }

    /// The service or model a request names; not found, naming what this node serves,
    /// otherwise.
    pub(crate) fn lookup(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Served<'_>, RequestError> {
        if let Some(service) = self.service(name) {
            return Ok(Served::Service(service));
        }
        let (index, model) = self.model(name, version)?;
        Ok(Served::Model(index, model))
    }

    /// A model by name and optional version; not found, naming what this node serves,
    /// otherwise.
    pub(crate) fn model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(usize, &Model), RequestError> {
        let i = *self.model_index.get(name).ok_or_else(|| {
            let served: Vec<&str> = self
                .models
                .iter()
                .map(Model::name)
                .chain(self.services.iter().map(Service::name))
                .collect();
            RequestError::NotFound(format!(
                "model {name:?} is not served by node {:?} (models and services: {})",
                self.config.node,
                served.join(", ")
            ))
        })?;
        let model = &self.models[i];
        match version {
            Some(v) if v != model.config().version => Err(RequestError::NotFound(format!(
                "model {name:?} has no version {v:?} (versions: {})",
                model.config().version
            ))),
            _ => Ok((i, model)),
        }
    }

    /// Refuses a call without the node's bearer token, when one is configured.
    pub(crate) fn check_token(&self, presented: Option<&str>) -> Result<(), RequestError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(RequestError::Unauthorized("invalid bearer token")),
            None => Err(RequestError::Unauthorized(
                "this node requires an Authorization: Bearer token",
            )),
        }
    }

    /// Checks inputs against a model and runs it on the pool (unless `deadline` passes while
    /// it waits), recording the inference time.
    pub(crate) async fn infer(
        &self,
        index: usize,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Inference, RequestError> {
        let model = &self.models[index];
        let name = model.name();
        model
            .ready_signature()?
            .check_inputs(name, &inputs, self.config.limits.max_batch_size)?;
        let inference = self.pool.infer(index, inputs, outputs, deadline).await?;
        self.metrics.observe_inference(name, inference.elapsed);
        Ok(inference)
    }

    /// Where failures that repeat per request are logged.
    pub(crate) fn failures(&self) -> &RateLimited {
        &self.failures
    }

    /// The node's delivery: its services answered by their strategies, with this node's
    /// models and upstreams.
    pub(crate) fn delivery(&self) -> Delivery<'_, Node> {
        Delivery {
            node: &self.config.node,
            services: &self.services,
            backend: self,
            metrics: &self.metrics,
            failures: &self.failures,
        }
    }
}

/// The node answers for its strategies with its inference pool and its upstream client.
impl Backend for Node {
    async fn run_model(
        &self,
        model: usize,
        output: &str,
        inputs: &[Tensor],
        deadline: Instant,
    ) -> Result<Tensor, RequestError> {
        let inference = self
            .infer(
                model,
                inputs.to_vec(),
                vec![output.to_owned()],
                Some(deadline),
            )
            .await?;
        inference.outputs.into_iter().next().ok_or_else(|| {
            RequestError::Internal(format!("model #{model} returned no output {output:?}"))
        })
    }

    async fn call_upstream(
        &self,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<(InferResponse, Duration), UpstreamError> {
        let upstream = &self.config.upstreams[call.upstream].name;
        let infer = self
            .upstreams
            .infer(call, inputs, context, &self.config.node);
        trace::upstream_call(upstream, call.service, infer).await
    }
}

/// Compares secrets without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
