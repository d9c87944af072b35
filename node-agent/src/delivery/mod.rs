//! Delivery: what a node does with a request to one of its services. Each strategy decides,
//! item by item, which targets (local models, local services, upstream services) answer, and
//! every answered item carries its provenance.
//!
//! A strategy is a file: [`local`], [`forward`], [`threshold`], [`ensemble`]. They ask targets
//! for answers through [`target`], which reaches models and upstreams through a [`Backend`]: the
//! node with its inference pool and upstream client, or a script in tests.

mod answer;
mod classes;
mod combine;
mod ensemble;
mod forward;
mod local;
mod service;
mod target;
mod threshold;
pub(crate) mod upstream;

#[cfg(test)]
mod script;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) use answer::Answer;
use service::Strategy;
pub(crate) use service::{Service, resolve};

use crate::error::{RequestError, UpstreamError};
use crate::metrics::Metrics;
use crate::ratelog::RateLimited;
use crate::wire::InferResponse;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use idn_contract::config::FailurePolicy;

/// What strategies need from the node: its models and its upstreams, by the indices services
/// were resolved to.
pub(crate) trait Backend: Sync {
    /// Runs model `model` on `inputs` (checked against its signature first) and returns its
    /// output `output`; not run when `deadline` passes before a worker is free.
    fn run_model(
        &self,
        model: usize,
        output: &str,
        inputs: &[Tensor],
        deadline: Instant,
    ) -> impl Future<Output = Result<Tensor, RequestError>> + Send;

    /// Makes `call` for `inputs`; returns the response and how long the call took.
    fn call_upstream(
        &self,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> impl Future<Output = Result<(InferResponse, Duration), UpstreamError>> + Send;
}

/// One call to an upstream: which one (by index), the service asked there, the output wanted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamCall<'a> {
    pub upstream: usize,
    pub service: &'a str,
    pub output: &'a str,
}

/// The delivery of one node: its name, its resolved services, what answers for it and where
/// it counts what happened.
pub(crate) struct Delivery<'a, B> {
    pub node: &'a str,
    pub services: &'a [Service],
    pub backend: &'a B,
    pub metrics: &'a Metrics,
    pub failures: &'a RateLimited,
}

/// An answer on its way. Boxed because a service may send to another service of the node,
/// which makes the strategies recursive.
type Pending<'a> = Pin<Box<dyn Future<Output = Result<Answer, RequestError>> + Send + 'a>>;

impl<B: Backend> Delivery<'_, B> {
    /// Answers a request to a service, recording its decisions in the metrics.
    pub(crate) async fn deliver(
        &self,
        service: &Service,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        context.check_route(self.node, service.config.max_hops)?;
        let n = answer::batch_size(inputs);
        if inputs.iter().any(|t| t.batch_size() != n) {
            return Err(RequestError::Invalid(
                "inputs of a service request must share their first (batch) dimension".into(),
            ));
        }
        let answer = self.apply(service, inputs, context).await?;
        self.metrics
            .record_decisions(self.node, service.name(), &answer.items);
        Ok(answer)
    }

    /// Answers `inputs` by the service's strategy.
    fn apply<'a>(
        &'a self,
        service: &'a Service,
        inputs: &'a [Tensor],
        context: &'a RequestContext,
    ) -> Pending<'a> {
        Box::pin(async move {
            match &service.strategy {
                Strategy::Local(target) => self.local(service, target, inputs, context).await,
                Strategy::Forward { to, fallback } => {
                    self.forward(service, to, fallback.as_ref(), inputs, context)
                        .await
                }
                Strategy::Threshold(threshold) => {
                    self.threshold(service, threshold, inputs, context).await
                }
                Strategy::Ensemble(ensemble) => {
                    self.ensemble(service, ensemble, inputs, context).await
                }
            }
        })
    }

    /// Whether a failed target may be replaced by a local (degraded) answer: only upstream
    /// failures other than routing errors, and only when the service's policy says so. Hands
    /// the failure back when it may; returns it as the error when it may not.
    fn tolerate(
        &self,
        service: &Service,
        failure: RequestError,
    ) -> Result<RequestError, RequestError> {
        match &failure {
            RequestError::Upstream(e)
                if service.config.on_upstream_failure == FailurePolicy::Fallback
                    && !e.is_routing_error() =>
            {
                // Counted per upstream and kind in the metrics; logged as a summary.
                if let Some(left_out) = self.failures.admit("fallback") {
                    tracing::warn!(service = %service.name(), error = %e, left_out, "upstream failed; answering locally");
                }
                Ok(failure)
            }
            _ => Err(failure),
        }
    }

    /// The request's path up to and including this node.
    fn path_here(&self, context: &RequestContext) -> Vec<String> {
        let mut path = context.path.clone();
        path.push(self.node.to_owned());
        path
    }
}

#[cfg(test)]
mod tests {
    use super::script::{Reply, Script, loop_detected, rows};
    use crate::error::RequestError;
    use crate::server::http_status;
    use idn_contract::provenance::Decision;

    const LOCAL: &str = "
services:
  - name: mnist
    maxHops: 2
    strategy: {local: {model: small}}
  - name: alias
    strategy: {local: {service: mnist}}";

    #[tokio::test]
    async fn loops_and_hop_limits_are_refused_before_any_target_runs() {
        let script = Script::new(LOCAL).model("small", rows(&[[0.9, 0.1]]));
        let looped = script
            .deliver_from(&["access", "edge"], "mnist", 1)
            .await
            .unwrap_err();
        assert_eq!(
            looped,
            RequestError::Routing("forwarding loop: access -> edge -> edge".into())
        );
        let limited = script
            .deliver_from(&["a", "b", "c"], "mnist", 1)
            .await
            .unwrap_err();
        assert_eq!(
            limited,
            RequestError::Routing("hop limit 2 exceeded: a -> b -> c -> edge".into())
        );
        assert_eq!(http_status(&limited).as_u16(), 508);
        assert!(script.calls().is_empty());
        assert!(script.deliver_from(&["a", "b"], "mnist", 1).await.is_ok());
    }

    #[tokio::test]
    async fn inputs_of_a_service_request_share_their_batch() {
        let script = Script::new(LOCAL).model("small", rows(&[[0.9, 0.1]]));
        let mut inputs = Script::batch(2);
        inputs.push(Script::batch(3).remove(0));
        let err = script
            .deliver_inputs("mnist", &inputs, &script.context(&[]))
            .await
            .unwrap_err();
        assert!(matches!(err, RequestError::Invalid(_)), "{err:?}");
        assert!(script.calls().is_empty());
    }

    #[tokio::test]
    async fn a_service_target_answers_through_the_other_service() {
        let script = Script::new(LOCAL).model("small", rows(&[[0.9, 0.1], [0.2, 0.8]]));
        let answer = script.deliver("alias", 2).await.unwrap();
        assert_eq!(answer.probs, [0.9, 0.1, 0.2, 0.8]);
        assert!(answer.items.iter().all(|i| i.model == "small"));
        let metrics = script.metrics();
        assert!(
            metrics.contains(
                "idn_decisions_total{node=\"edge\",service=\"alias\",decision=\"served\"} 2"
            ),
            "{metrics}"
        );
        assert!(!metrics.contains("service=\"mnist\",decision"), "{metrics}");
    }

    #[tokio::test]
    async fn decisions_and_the_forward_ratio_are_counted_per_service() {
        let script = Script::new(
            "upstreams: [{name: cloud, url: 'http://cloud:8000'}]
services:
  - name: mnist
    strategy: {threshold: {local: {model: small}, forward: {upstream: cloud}, tau: 0.8}}",
        )
        .model(
            "small",
            rows(&[[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.95, 0.05]]),
        )
        .upstream("cloud", rows(&[[0.0, 1.0]; 4]));
        script.deliver("mnist", 4).await.unwrap();
        let metrics = script.metrics();
        for decision in Decision::ALL {
            let count = match decision {
                Decision::Served | Decision::Forwarded => 2,
                _ => 0,
            };
            let line = format!(
                "idn_decisions_total{{node=\"edge\",service=\"mnist\",decision=\"{}\"}} {count}",
                decision.as_str()
            );
            assert!(metrics.contains(&line), "{line} not in {metrics}");
        }
        assert!(metrics.contains("idn_forward_ratio{node=\"edge\",service=\"mnist\"} 0.5"));
        assert!(metrics.contains("idn_confidence_count{node=\"edge\",service=\"mnist\"} 4"));
    }

    #[tokio::test]
    async fn a_routing_error_from_the_upstream_is_reported_even_with_a_fallback() {
        let script = Script::new(
            "upstreams: [{name: cloud, url: 'http://cloud:8000'}]
services:
  - name: forward
    strategy: {forward: {to: {upstream: cloud}, fallbackModel: small}}
  - name: threshold
    strategy: {threshold: {local: {model: small}, forward: {upstream: cloud}, tau: 1.0}}
  - name: ensemble
    strategy: {ensemble: {members: [{model: small}, {upstream: cloud}]}}",
        )
        .model("small", rows(&[[0.6, 0.4]]))
        .upstream("cloud", Reply::Fail(loop_detected("cloud")));
        for service in ["forward", "threshold", "ensemble"] {
            let err = script.deliver(service, 1).await.unwrap_err();
            assert_eq!(
                err,
                RequestError::Upstream(loop_detected("cloud")),
                "{service}"
            );
            assert_eq!(http_status(&err).as_u16(), 508, "{service}");
        }
    }
}
