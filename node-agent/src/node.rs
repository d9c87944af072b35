//! A running node: its config, its models, the pool that runs them, its upstreams and its
//! metrics. Everything a request handler needs, built once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use crate::delivery::upstream::{self, Upstreams};
use crate::error::{RequestError, Result};
use crate::metrics::Metrics;
use crate::model::Signature;
use crate::model::ort_library;
use crate::model::pool::{Inference, InferencePool};
use crate::model::runtime::{Model, ModelState};
use crate::wire::tensor::Tensor;
use idn_contract::config::{NodeAgentConfig, ServiceConfig};

pub struct Node {
    pub config: NodeAgentConfig,
    pub models: Vec<Model>,
    model_index: HashMap<String, usize>,
    pool: InferencePool,
    pub upstreams: Upstreams,
    /// Token callers must present, when `auth` is configured.
    pub token: Option<String>,
    pub metrics: Metrics,
}

impl Node {
    /// Loads every model (a model that fails is kept as unavailable), reads token files and
    /// starts the pool. Fails only when ONNX Runtime or a token file cannot be loaded.
    pub fn start(config: NodeAgentConfig) -> Result<Arc<Node>> {
        ort_library::environment()?;
        let token = config
            .auth
            .as_ref()
            .map(|auth| upstream::read_token(&auth.token_file))
            .transpose()?;
        let upstreams = Upstreams::new(&config.upstreams, config.limits.max_body_bytes)?;
        let models: Vec<Model> = config.models.iter().cloned().map(Model::load).collect();
        let metrics = Metrics::default();
        for model in &models {
            match &model.state {
                ModelState::Ready { .. } => {
                    tracing::info!(model = %model.config.name, "model ready")
                }
                ModelState::Unavailable { reason } => {
                    tracing::error!(model = %model.config.name, %reason, "model not ready")
                }
            }
            metrics.set_model_ready(&model.config.name, model.is_ready());
        }
        let threads = match config.limits.inference_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = InferencePool::start(&models, threads, config.limits.queue_depth);
        let model_index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.config.name.clone(), i))
            .collect();
        Ok(Arc::new(Node {
            config,
            models,
            model_index,
            pool,
            upstreams,
            token,
            metrics,
        }))
    }

    /// Ready when at least one model serves, or the node only forwards: one broken model must
    /// not take the node out of its Service while the rest works (per-model readiness tells
    /// which).
    pub fn is_ready(&self) -> bool {
        self.models.iter().any(Model::is_ready) || self.models.is_empty()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.config.services.iter().find(|s| s.name == name)
    }

    /// Whether `name` is a model or service of this node (a metric label may be used for it).
    pub fn serves(&self, name: &str) -> bool {
        self.model_index.contains_key(name) || self.service(name).is_some()
    }

    /// A model by name and optional version; 404 naming what this node serves otherwise.
    pub fn model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(usize, &Model), RequestError> {
        let i = *self.model_index.get(name).ok_or_else(|| {
            let served: Vec<&str> = self
                .models
                .iter()
                .map(|m| m.config.name.as_str())
                .chain(self.config.services.iter().map(|s| s.name.as_str()))
                .collect();
            RequestError::NotFound(format!(
                "model {name:?} is not served by node {:?} (models and services: {})",
                self.config.node,
                served.join(", ")
            ))
        })?;
        let model = &self.models[i];
        match version {
            Some(v) if v != model.config.version => Err(RequestError::NotFound(format!(
                "model {name:?} has no version {v:?} (versions: {})",
                model.config.version
            ))),
            _ => Ok((i, model)),
        }
    }

    /// The signature of a model that is ready; 503 with the reason otherwise.
    pub fn ready_signature<'m>(
        name: &str,
        model: &'m Model,
    ) -> Result<&'m Signature, RequestError> {
        match &model.state {
            ModelState::Ready { signature, .. } => Ok(signature),
            ModelState::Unavailable { reason } => Err(RequestError::Unavailable(format!(
                "model {name:?} is not ready: {reason}"
            ))),
        }
    }

    /// Checks inputs against a model and runs it on the pool, recording the inference time.
    pub async fn run_model(
        &self,
        index: usize,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
    ) -> Result<Inference, RequestError> {
        let model = &self.models[index];
        let name = &model.config.name;
        Self::ready_signature(name, model)?.check_inputs(
            name,
            &inputs,
            self.config.limits.max_batch_size,
        )?;
        let inference = self.pool.infer(index, inputs, outputs).await?;
        self.metrics.observe_inference(name, inference.elapsed);
        Ok(inference)
    }
}
