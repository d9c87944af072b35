//! Delivery: what a node does with a request to one of its services. Each strategy decides,
//! item by item, which targets (local models, local services, upstream services) answer, and
//! every answered item carries its provenance.

use std::future::Future;
use std::pin::Pin;

mod combine;
pub mod upstream;

use combine::Accumulator;

use crate::error::{RequestError, UpstreamError};
use crate::node::Node;
use crate::wire::context::RequestContext;
use crate::wire::provenance::{self, Provenance};
use crate::wire::tensor::{Tensor, TensorData};
use idn_contract::confidence::Confidence;
use idn_contract::config::{
    EnsembleMode, EnsembleStrategy, FailurePolicy, ForwardStrategy, ServiceConfig, StrategyConfig,
    Target, ThresholdStrategy,
};
use idn_contract::provenance::Decision;

/// A batch answered: class probabilities (items × classes) and each item's provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub classes: usize,
    pub probs: Vec<f32>,
    pub items: Vec<Provenance>,
}

impl Answer {
    /// Replaces the items at `rows` by the items of `other`, in order.
    fn splice(&mut self, rows: &[usize], other: Answer) {
        let c = self.classes;
        for (j, &row) in rows.iter().enumerate() {
            self.probs[row * c..(row + 1) * c].copy_from_slice(&other.probs[j * c..(j + 1) * c]);
        }
        for (&row, item) in rows.iter().zip(other.items) {
            self.items[row] = item;
        }
    }
}

type Delivery<'a> = Pin<Box<dyn Future<Output = Result<Answer, RequestError>> + Send + 'a>>;

/// The batch size of checked inputs (they share their first dimension).
fn batch_size(inputs: &[Tensor]) -> usize {
    inputs.first().map_or(0, Tensor::batch_size)
}

fn select_rows(inputs: &[Tensor], rows: &[usize]) -> Vec<Tensor> {
    inputs.iter().map(|t| t.select_rows(rows)).collect()
}

/// A probability output as `(classes, data)`: FP32 of shape `[items, classes]`.
fn probabilities(tensor: Tensor, items: usize) -> Result<(usize, Vec<f32>), String> {
    match (tensor.shape.as_slice(), tensor.data) {
        ([n, classes], TensorData::Fp32(data)) if *n == items && *classes > 0 => {
            Ok((*classes, data))
        }
        (shape, data) => Err(format!(
            "output {:?} is {} {shape:?}, expected FP32 [{items}, classes]",
            tensor.name,
            data.datatype()
        )),
    }
}

impl Node {
    /// Answers a request to a service, recording its decisions in the metrics.
    pub async fn deliver(
        &self,
        service: &ServiceConfig,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        context.check_route(&self.config.node, service.max_hops)?;
        let n = batch_size(inputs);
        if inputs.iter().any(|t| t.batch_size() != n) {
            return Err(RequestError::Invalid(
                "inputs of a service request must share their first (batch) dimension".into(),
            ));
        }
        let answer = self.apply(service, inputs, context).await?;
        self.metrics
            .record_decisions(&self.config.node, &service.name, &answer.items);
        Ok(answer)
    }

    fn apply<'a>(
        &'a self,
        service: &'a ServiceConfig,
        inputs: &'a [Tensor],
        context: &'a RequestContext,
    ) -> Delivery<'a> {
        Box::pin(async move {
            match &service.strategy {
                StrategyConfig::Local(target) => {
                    self.target(service, target, inputs, context, &Confidence::default())
                        .await
                }
                StrategyConfig::Forward(forward) => {
                    self.forward(service, forward, inputs, context).await
                }
                StrategyConfig::Threshold(threshold) => {
                    self.threshold(service, threshold, inputs, context).await
                }
                StrategyConfig::Ensemble(ensemble) => {
                    self.ensemble(service, ensemble, inputs, context).await
                }
            }
        })
    }

    /// `forward`: everything goes to the target; a failed upstream falls back to the local
    /// model when one is configured and the policy allows.
    async fn forward(
        &self,
        service: &ServiceConfig,
        forward: &ForwardStrategy,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let confidence = Confidence::default();
        match self
            .target(service, &forward.to, inputs, context, &confidence)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(failure) => {
                let Some(model) = &forward.fallback_model else {
                    return Err(failure);
                };
                self.may_fall_back(service, &failure)?;
                let target = Target::Model(model.clone());
                let mut answer = self
                    .target(service, &target, inputs, context, &confidence)
                    .await?;
                answer
                    .items
                    .iter_mut()
                    .for_each(|item| item.decision = Decision::Fallback);
                Ok(answer)
            }
        }
    }

    /// `threshold`: the local answer stands for items whose confidence reaches τ; the others
    /// are forwarded as one sub-batch and spliced back in order.
    async fn threshold(
        &self,
        service: &ServiceConfig,
        threshold: &ThresholdStrategy,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let mut answer = self
            .target(
                service,
                &threshold.local,
                inputs,
                context,
                &threshold.confidence,
            )
            .await?;
        self.metrics
            .observe_confidence(&self.config.node, &service.name, &answer.items);
        let unsure: Vec<usize> = (0..answer.items.len())
            .filter(|&i| answer.items[i].confidence < threshold.tau)
            .collect();
        if unsure.is_empty() {
            return Ok(answer);
        }
        let sub_batch = select_rows(inputs, &unsure);
        match self
            .target(
                service,
                &threshold.forward,
                &sub_batch,
                context,
                &threshold.confidence,
            )
            .await
        {
            Ok(upstream) => answer.splice(&unsure, upstream),
            Err(failure) => {
                self.may_fall_back(service, &failure)?;
                for &row in &unsure {
                    answer.items[row].decision = Decision::Fallback;
                }
            }
        }
        Ok(answer)
    }

    /// `ensemble`: members are queried cheapest first (sequential) or all at once (parallel)
    /// and their answers merged per item.
    async fn ensemble(
        &self,
        service: &ServiceConfig,
        ensemble: &EnsembleStrategy,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let n = batch_size(inputs);
        let mut order: Vec<usize> = (0..ensemble.members.len()).collect();
        order.sort_by(|&a, &b| {
            ensemble.members[a]
                .cost
                .total_cmp(&ensemble.members[b].cost)
        });
        let confidence = &ensemble.confidence;
        let mut accumulator: Option<Accumulator> = None;
        let mut last_failure = None;
        let mut queried = 0;
        let merge = |accumulator: &mut Option<Accumulator>,
                     member: usize,
                     rows: &[usize],
                     answer: Answer| {
            let acc = accumulator
                .get_or_insert_with(|| Accumulator::new(ensemble.combine, n, answer.classes));
            if acc.classes() != answer.classes {
                return Err(RequestError::Mismatch(format!(
                    "ensemble member {} answered {} classes, another answered {}",
                    ensemble.members[member].target.display_name(),
                    answer.classes,
                    acc.classes()
                )));
            }
            acc.add(
                member,
                ensemble.members[member].weight,
                rows,
                &answer.probs,
                confidence,
            );
            Ok(())
        };
        match ensemble.mode {
            EnsembleMode::Sequential => {
                let budget = ensemble.max_members.unwrap_or(order.len());
                let mut active: Vec<usize> = (0..n).collect();
                for &member in order.iter().take(budget) {
                    if active.is_empty() || context.remaining().is_zero() {
                        break;
                    }
                    queried += 1;
                    let sub_batch = select_rows(inputs, &active);
                    let target = &ensemble.members[member].target;
                    match self
                        .target(service, target, &sub_batch, context, confidence)
                        .await
                    {
                        Ok(answer) => merge(&mut accumulator, member, &active, answer)?,
                        Err(failure) => {
                            self.may_fall_back(service, &failure)?;
                            last_failure = Some(failure);
                            continue;
                        }
                    }
                    if let (Some(tau), Some(acc)) = (ensemble.tau, &accumulator) {
                        active.retain(|&row| confidence.score(&acc.combined(row)) < tau);
                    }
                }
            }
            EnsembleMode::Parallel => {
                let all: Vec<usize> = (0..n).collect();
                let calls = order.iter().map(|&member| async move {
                    let target = &ensemble.members[member].target;
                    let call = self.target(service, target, inputs, context, confidence);
                    let result = tokio::time::timeout(context.remaining(), call).await;
                    (member, result)
                });
                for (member, result) in futures_util::future::join_all(calls).await {
                    queried += 1;
                    match result {
                        Ok(Ok(answer)) => merge(&mut accumulator, member, &all, answer)?,
                        Ok(Err(failure)) => {
                            self.may_fall_back(service, &failure)?;
                            last_failure = Some(failure);
                        }
                        Err(_) => {} // past the deadline: merged without it
                    }
                }
            }
        }
        self.metrics
            .observe_ensemble(&self.config.node, &service.name, queried);
        let Some(acc) = accumulator else {
            return Err(last_failure.unwrap_or_else(|| {
                RequestError::DeadlineExceeded(
                    "no ensemble member answered before the deadline".into(),
                )
            }));
        };
        let mut probs = Vec::with_capacity(n * acc.classes());
        let items = (0..n)
            .map(|row| {
                let combined = acc.combined(row);
                let item = Provenance {
                    node: self.config.node.clone(),
                    model: acc.members[row]
                        .iter()
                        .map(|&m| ensemble.members[m].target.display_name())
                        .collect::<Vec<_>>()
                        .join("+"),
                    decision: Decision::Ensembled,
                    confidence: confidence.score(&combined),
                    path: self.path_here(context),
                };
                probs.extend(combined);
                item
            })
            .collect();
        Ok(Answer {
            classes: acc.classes(),
            probs,
            items,
        })
    }

    /// Whether a failed target may be replaced by a local (degraded) answer: only upstream
    /// failures other than routing errors, and only when the service's policy says so.
    fn may_fall_back(
        &self,
        service: &ServiceConfig,
        failure: &RequestError,
    ) -> Result<(), RequestError> {
        match failure {
            RequestError::Upstream(e)
                if service.on_upstream_failure == FailurePolicy::Fallback
                    && !e.is_routing_error() =>
            {
                tracing::warn!(service = %service.name, error = %e, "upstream failed; answering locally");
                Ok(())
            }
            other => Err(other.clone()),
        }
    }

    /// Asks one target for an answer to the whole batch `inputs`.
    fn target<'a>(
        &'a self,
        service: &'a ServiceConfig,
        target: &'a Target,
        inputs: &'a [Tensor],
        context: &'a RequestContext,
        confidence: &'a Confidence,
    ) -> Delivery<'a> {
        Box::pin(async move {
            match target {
                Target::Model(model) => self.local_model(model, inputs, context, confidence).await,
                Target::Upstream {
                    upstream,
                    service: remote,
                } => {
                    let remote = remote.as_deref().unwrap_or(&service.name);
                    self.upstream(service, upstream, remote, inputs, context, confidence)
                        .await
                }
                Target::Service(name) => {
                    let other = self.service(name).expect("validated at load");
                    self.apply(other, inputs, context).await
                }
            }
        })
    }

    async fn local_model(
        &self,
        name: &str,
        inputs: &[Tensor],
        context: &RequestContext,
        confidence: &Confidence,
    ) -> Result<Answer, RequestError> {
        let (index, model) = self.model(name, None)?;
        let output = model.config.outputs[0].clone();
        let n = batch_size(inputs);
        let inference = self.run_model(index, inputs.to_vec(), vec![output]).await?;
        let tensor = inference
            .outputs
            .into_iter()
            .next()
            .expect("one output asked");
        let (classes, probs) = probabilities(tensor, n)
            .map_err(|e| RequestError::Internal(format!("model {name:?}: {e}")))?;
        let path = self.path_here(context);
        let items = confidence
            .scores(&probs, classes)
            .into_iter()
            .map(|score| Provenance {
                node: self.config.node.clone(),
                model: name.to_owned(),
                decision: Decision::Served,
                confidence: score,
                path: path.clone(),
            })
            .collect();
        Ok(Answer {
            classes,
            probs,
            items,
        })
    }

    async fn upstream(
        &self,
        service: &ServiceConfig,
        upstream: &str,
        remote: &str,
        inputs: &[Tensor],
        context: &RequestContext,
        confidence: &Confidence,
    ) -> Result<Answer, RequestError> {
        let n = batch_size(inputs);
        let result = self
            .upstreams
            .infer(
                upstream,
                remote,
                &service.output,
                inputs,
                context,
                &self.config.node,
            )
            .await
            .and_then(|(response, elapsed)| {
                self.metrics.observe_upstream(upstream, elapsed);
                let invalid = |message: String| UpstreamError::Invalid {
                    upstream: upstream.to_owned(),
                    message,
                };
                let tensor = response
                    .outputs
                    .into_iter()
                    .find(|t| t.name == service.output)
                    .ok_or_else(|| {
                        invalid(format!("no output {:?} in the response", service.output))
                    })?;
                let (classes, probs) = probabilities(tensor, n).map_err(invalid)?;
                Ok((response.model_name, response.parameters, classes, probs))
            });
        let (model, parameters, classes, probs) = result.map_err(|e| {
            self.metrics.count_upstream_error(upstream, &e);
            RequestError::Upstream(e)
        })?;
        let mut path = self.path_here(context);
        path.push(upstream.to_owned());
        let default = Provenance {
            node: upstream.to_owned(),
            model,
            decision: Decision::Served,
            confidence: f64::NAN,
            path,
        };
        let mut items = provenance::decode(&parameters, n, &default);
        for (item, row) in items.iter_mut().zip(probs.chunks_exact(classes)) {
            if item.confidence.is_nan() {
                item.confidence = confidence.score(row);
            }
            // Served upstream is forwarded from here; other decisions say more and stay.
            if item.decision == Decision::Served {
                item.decision = Decision::Forwarded;
            }
        }
        Ok(Answer {
            classes,
            probs,
            items,
        })
    }

    /// The request's path up to and including this node.
    fn path_here(&self, context: &RequestContext) -> Vec<String> {
        let mut path = context.path.clone();
        path.push(self.config.node.clone());
        path
    }
}
