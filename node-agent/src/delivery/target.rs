//! Asking one target for an answer to a whole (sub-)batch: a model of this node, another of
//! its services, or a service at an upstream. Each answered item gets its provenance here.

use super::answer::{batch_size, probabilities};
use super::service::{Service, Target, TargetKind};
use super::{Answer, Backend, Delivery, UpstreamCall};
use crate::error::{RequestError, UpstreamError};
use crate::wire::context::RequestContext;
use crate::wire::provenance::{self, Provenance};
use crate::wire::tensor::Tensor;
use crate::wire::{InferResponse, Parameters};
use idn_contract::confidence::Confidence;
use idn_contract::provenance::Decision;

impl<B: Backend> Delivery<'_, B> {
    /// Asks `target`, on behalf of `service`, for an answer to every item of `inputs`, in the
    /// service's classes; `confidence` scores the items (as the target answered them).
    pub(super) async fn ask(
        &self,
        service: &Service,
        target: &Target,
        inputs: &[Tensor],
        context: &RequestContext,
        confidence: &Confidence,
    ) -> Result<Answer, RequestError> {
        let answer = match &target.kind {
            TargetKind::Model { index, output } => {
                let tensor = self
                    .backend
                    .run_model(*index, output, inputs, context.deadline)
                    .await?;
                let (classes, probs) = probabilities(tensor, batch_size(inputs))
                    .map_err(|e| RequestError::Internal(format!("model {:?}: {e}", target.name)))?;
                let path = self.path_here(context);
                let items = confidence
                    .scores(&probs, classes)
                    .into_iter()
                    .map(|score| Provenance {
                        node: self.node.to_owned(),
                        model: target.name.clone(),
                        decision: Decision::Served,
                        confidence: score,
                        path: path.clone(),
                    })
                    .collect();
                Answer {
                    classes,
                    probs,
                    items,
                }
            }
            TargetKind::Service(index) => {
                self.apply(&self.services[*index], inputs, context).await?
            }
            TargetKind::Upstream {
                index,
                upstream,
                service: remote,
            } => {
                let call = UpstreamCall {
                    upstream: *index,
                    service: remote,
                    output: &service.config.output,
                };
                self.ask_upstream(upstream, call, inputs, context, confidence)
                    .await?
            }
        };
        target.columns.map(&target.name, answer)
    }

    /// Calls upstream `upstream`, counting the call (or its failure), and reads its answer.
    async fn ask_upstream(
        &self,
        upstream: &str,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        context: &RequestContext,
        confidence: &Confidence,
    ) -> Result<Answer, RequestError> {
        let items = batch_size(inputs);
        let answered = self
            .backend
            .call_upstream(call, inputs, context)
            .await
            .and_then(|(response, elapsed)| {
                self.metrics.observe_upstream(upstream, elapsed);
                upstream_answer(upstream, call.output, response, items)
            });
        let (model, parameters, classes, probs) = answered.map_err(|e| {
            self.metrics.count_upstream_error(upstream, &e);
            RequestError::Upstream(e)
        })?;
        let default = Provenance {
            node: upstream.to_owned(),
            model,
            decision: Decision::Served,
            confidence: f64::NAN,
            path: [self.path_here(context), vec![upstream.to_owned()]].concat(),
        };
        let mut items = provenance::decode(&parameters, items, &default);
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
}

/// The answering model, provenance parameters and probabilities `(classes, data)` of an
/// upstream's response for `items` items; invalid when it lacks the service's output or that
/// output is not one row of probabilities per item.
fn upstream_answer(
    upstream: &str,
    output: &str,
    response: InferResponse,
    items: usize,
) -> Result<(String, Parameters, usize, Vec<f32>), UpstreamError> {
    let invalid = |message: String| UpstreamError::Invalid {
        upstream: upstream.to_owned(),
        message,
    };
    let tensor = response
        .outputs
        .into_iter()
        .find(|t| t.name == output)
        .ok_or_else(|| invalid(format!("no output {output:?} in the response")))?;
    let (classes, probs) = probabilities(tensor, items).map_err(invalid)?;
    Ok((response.model_name, response.parameters, classes, probs))
}

#[cfg(test)]
mod tests {
    use super::super::script::{Reply, Script, rows};
    use crate::error::{RequestError, UpstreamError};
    use idn_contract::provenance::Decision;

    fn script() -> Script {
        Script::new(
            "upstreams: [{name: cloud, url: 'http://cloud:8000'}]
services:
  - name: mnist
    strategy: {forward: {to: {upstream: cloud, service: digits}}}
  - name: local
    strategy: {local: {model: small}}",
        )
    }

    #[tokio::test]
    async fn an_upstream_reports_its_provenance_and_served_becomes_forwarded() {
        let cloud = Reply::Answer {
            probs: vec![vec![0.2, 0.8], vec![0.9, 0.1]],
            parameters: serde_json::json!({
                "idn_node": ["cloud", "deep"],
                "idn_decision": ["served", "fallback"],
                "idn_path": [["cloud"], ["cloud", "deep"]],
            }),
        };
        let script = script().upstream("cloud", cloud);
        let answer = script.deliver_from(&["access"], "mnist", 2).await.unwrap();
        assert_eq!(script.calls(), [("cloud/digits".to_owned(), vec![0, 1])]);
        let [forwarded, fallback] = &answer.items[..] else {
            panic!("{answer:?}")
        };
        assert_eq!(forwarded.node, "cloud");
        assert_eq!(forwarded.decision, Decision::Forwarded);
        assert_eq!(fallback.node, "deep");
        assert_eq!(
            fallback.decision,
            Decision::Fallback,
            "a fallback upstream stays one"
        );
        assert!((forwarded.confidence - 0.8).abs() < 1e-6, "scored here");
        assert_eq!(forwarded.model, "cloud-model");
        assert_eq!(fallback.path, ["cloud", "deep"], "the upstream's path");
    }

    #[tokio::test]
    async fn a_plain_oip_upstream_is_named_by_its_link() {
        let script = script().upstream("cloud", rows(&[[0.5, 0.5]]));
        let answer = script.deliver_from(&["access"], "mnist", 1).await.unwrap();
        let item = &answer.items[0];
        assert_eq!(item.node, "cloud");
        assert_eq!(item.path, ["access", "edge", "cloud"]);
        assert_eq!(item.decision, Decision::Forwarded);
    }

    #[tokio::test]
    async fn an_upstream_answer_without_the_service_output_is_invalid() {
        let script = script().upstream("cloud", Reply::WrongOutput);
        let err = script.deliver("mnist", 1).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::Upstream(UpstreamError::Invalid {
                upstream: "cloud".into(),
                message: "no output \"probs\" in the response".into()
            })
        );
        let metrics = script.metrics();
        assert!(
            metrics.contains("idn_upstream_errors_total{upstream=\"cloud\",kind=\"invalid\"} 1")
        );
        assert!(metrics.contains("idn_upstream_duration_seconds_count{upstream=\"cloud\"} 1"));
    }

    #[tokio::test]
    async fn a_model_output_that_is_not_probabilities_is_internal() {
        let script = script().model("small", Reply::WrongOutput);
        let err = script.deliver("local", 1).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::Internal(
                "model \"small\": output \"logits\" is INT64 [1, 1], expected FP32 [1, classes]"
                    .into()
            )
        );
    }
}
