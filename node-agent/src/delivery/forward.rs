//! `forward`: everything goes to one target (usually an upstream); when it fails, a local
//! model may answer instead, marked as a fallback.

use super::service::{Service, Target};
use super::{Answer, Backend, Delivery};
use crate::error::RequestError;
use crate::learn::lock;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use idn_contract::confidence::Confidence;

impl<B: Backend> Delivery<'_, B> {
    pub(super) async fn forward(
        &self,
        service: &Service,
        to: &Target,
        fallback: Option<&Target>,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let confidence = Confidence::default();
        let failure = match self.ask(service, to, inputs, context, &confidence).await {
            Ok(answer) => {
                if let Some(store) = &service.hard_examples {
                    lock(store).offer(context.request_id.as_deref(), inputs, &answer, None);
                }
                return Ok(answer);
            }
            Err(failure) => failure,
        };
        let Some(fallback) = fallback else {
            return Err(failure);
        };
        self.tolerate(service, failure)?;
        let mut answer = self
            .ask(service, fallback, inputs, context, &confidence)
            .await?;
        answer.fall_back(0..answer.items.len());
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{Reply, Script, failures, rows};
    use crate::error::RequestError;
    use idn_contract::provenance::Decision;

    fn script(policy: &str) -> Script {
        Script::new(&format!(
            "upstreams: [{{name: cloud, url: 'http://cloud:8000'}}]
services:
  - name: mnist
    onUpstreamFailure: {policy}
    strategy: {{forward: {{to: {{upstream: cloud}}, fallbackModel: small}}}}
  - name: bare
    strategy: {{forward: {{to: {{upstream: cloud}}}}}}"
        ))
        .model("small", rows(&[[0.6, 0.4], [0.3, 0.7]]))
    }

    #[tokio::test]
    async fn every_upstream_answer_is_forwarded() {
        let script = script("fallback").upstream("cloud", rows(&[[0.0, 1.0], [1.0, 0.0]]));
        let answer = script.deliver("mnist", 2).await.unwrap();
        assert_eq!(answer.probs, [0.0, 1.0, 1.0, 0.0]);
        assert!(
            answer
                .items
                .iter()
                .all(|i| i.decision == Decision::Forwarded)
        );
        assert_eq!(script.calls(), [("cloud/mnist".to_owned(), vec![0, 1])]);
    }

    #[tokio::test]
    async fn each_upstream_failure_falls_back_to_the_local_model() {
        for (kind, failure) in failures("cloud") {
            let script = script("fallback").upstream("cloud", Reply::Fail(failure));
            let answer = script.deliver("mnist", 2).await.unwrap();
            assert_eq!(answer.probs, [0.6, 0.4, 0.3, 0.7], "{kind}");
            for item in &answer.items {
                assert_eq!(item.decision, Decision::Fallback, "{kind}");
                assert_eq!((item.node.as_str(), item.model.as_str()), ("edge", "small"));
            }
            let line = format!("idn_upstream_errors_total{{upstream=\"cloud\",kind=\"{kind}\"}} 1");
            assert!(script.metrics().contains(&line), "{line}");
        }
    }

    #[tokio::test]
    async fn the_fail_policy_returns_the_upstream_error() {
        for (kind, failure) in failures("cloud") {
            let script = script("fail").upstream("cloud", Reply::Fail(failure.clone()));
            let err = script.deliver("mnist", 2).await.unwrap_err();
            assert_eq!(err, RequestError::Upstream(failure), "{kind}");
            assert_eq!(script.calls().len(), 1, "{kind}: no local model ran");
        }
    }

    #[tokio::test]
    async fn without_a_fallback_model_the_error_is_returned() {
        let (_, failure) = failures("cloud").remove(0);
        let script = script("fallback").upstream("cloud", Reply::Fail(failure.clone()));
        let err = script.deliver("bare", 2).await.unwrap_err();
        assert_eq!(err, RequestError::Upstream(failure));
    }
}
