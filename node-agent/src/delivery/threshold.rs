//! `threshold`: the local answer stands for items whose confidence reaches τ; the others are
//! forwarded as one sub-batch and spliced back in order. When the forward target fails, the
//! unsure items keep their local answer, marked as a fallback. With `adapt`, a learner decides
//! each item instead of the fixed τ and learns from what came back.

use idn_contract::confidence::argmax;
use idn_contract::provenance::Decision;
use tokio::time::Instant;

use super::answer::select_rows;
use super::service::{Service, Threshold};
use super::{Answer, Backend, Delivery};
use crate::error::RequestError;
use crate::learn::examples::LocalAnswer;
use crate::learn::lock;
use crate::learn::threshold::Settled;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;

impl<B: Backend> Delivery<'_, B> {
    pub(super) async fn threshold(
        &self,
        service: &Service,
        threshold: &Threshold,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        let confidence = &threshold.confidence;
        let mut answer = self
            .ask(service, &threshold.local, inputs, context, confidence)
            .await?;
        self.metrics
            .observe_confidence(self.node, service.name(), &answer.items);
        // With a learner, it decides each item; its inputs are built only then.
        let learning = threshold.learner.as_ref().map(|learner| {
            let scores: Vec<f64> = answer.items.iter().map(|i| i.confidence).collect();
            let choices = lock(learner).choose(&scores);
            (learner, scores, choices)
        });
        let unsure: Vec<usize> = match &learning {
            Some((_, _, choices)) => (0..choices.len()).filter(|&r| choices[r].forward).collect(),
            None => answer.rows_below(threshold.tau),
        };
        let local: Vec<usize> = if learning.is_some() || service.hard_examples.is_some() {
            answer
                .probs
                .chunks_exact(answer.classes)
                .map(argmax)
                .collect()
        } else {
            Vec::new()
        };
        let mut verdicts = learning.as_ref().map(|_| vec![None; local.len()]);
        let mut latency = None;
        if !unsure.is_empty() {
            let sub_batch = select_rows(inputs, &unsure);
            let started = Instant::now();
            match self
                .ask(service, &threshold.forward, &sub_batch, context, confidence)
                .await
            {
                Ok(forwarded) if forwarded.classes != answer.classes => {
                    return Err(RequestError::Mismatch(format!(
                        "{} answered {} classes, {} answered {}",
                        threshold.forward.name,
                        forwarded.classes,
                        threshold.local.name,
                        answer.classes
                    )));
                }
                Ok(mut forwarded) => {
                    latency = Some(started.elapsed());
                    forwarded.forwarded_within(self.node);
                    if let Some(verdicts) = &mut verdicts {
                        for (j, &row) in unsure.iter().enumerate() {
                            verdicts[row] = upstream_verdict(&forwarded, j);
                        }
                    }
                    if let Some(store) = &service.hard_examples {
                        let replaced = |r: usize| LocalAnswer {
                            class: local[r],
                            confidence: answer.items[r].confidence,
                        };
                        let replaced: Vec<LocalAnswer> =
                            unsure.iter().map(|&r| replaced(r)).collect();
                        let id = context.request_id.as_deref();
                        lock(store).offer(id, &sub_batch, &forwarded, Some(&replaced));
                    }
                    answer.splice(&unsure, forwarded);
                }
                Err(failure) => {
                    self.tolerate(service, failure)?;
                    answer.fall_back(unsure);
                }
            }
        }
        if let Some((learner, scores, choices)) = &learning {
            let (verdicts, explored) = lock(learner).settle(&Settled {
                scores,
                choices,
                local: &local,
                verdicts: verdicts.as_deref().unwrap_or_default(),
                classes: answer.classes,
                latency,
                request_id: context.request_id.as_deref(),
            });
            self.metrics
                .count_learning(self.node, service.name(), "upstream", verdicts, explored);
        }
        Ok(answer)
    }
}

/// The class the forward target answered for item `j` of its sub-batch, unless that answer
/// is itself a fallback (a degraded answer says nothing about the local one).
fn upstream_verdict(forwarded: &Answer, j: usize) -> Option<usize> {
    let c = forwarded.classes;
    (forwarded.items[j].decision != Decision::Fallback)
        .then(|| argmax(&forwarded.probs[j * c..(j + 1) * c]))
}

#[cfg(test)]
mod tests {
    use super::super::script::{Reply, Script, failures, rows, timeout};
    use crate::error::RequestError;
    use idn_contract::provenance::Decision;

    const LOCAL: [[f32; 2]; 5] = [
        [0.95, 0.05],
        [0.3, 0.7],
        [0.01, 0.99],
        [0.5, 0.5],
        [0.85, 0.15],
    ];

    fn script(policy: &str) -> Script {
        Script::new(&format!(
            "upstreams: [{{name: cloud, url: 'http://cloud:8000'}}]
services:
  - name: mnist
    onUpstreamFailure: {policy}
    strategy: {{threshold: {{local: {{model: small}}, forward: {{upstream: cloud}}, tau: 0.8}}}}"
        ))
        .model("small", rows(&LOCAL))
    }

    #[tokio::test]
    async fn a_mixed_batch_is_split_by_confidence_and_reassembled_in_order() {
        // The upstream answers by row id, so a row spliced into the wrong place shows.
        let cloud = [[0.0, 1.0], [0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]];
        let script = script("fallback").upstream("cloud", rows(&cloud));
        let answer = script.deliver("mnist", 5).await.unwrap();
        assert_eq!(
            script.calls(),
            [
                ("small".to_owned(), vec![0, 1, 2, 3, 4]),
                ("cloud/mnist".to_owned(), vec![1, 3])
            ]
        );
        let expected = [LOCAL[0], cloud[1], LOCAL[2], cloud[3], LOCAL[4]];
        assert_eq!(answer.probs, expected.concat());
        let decisions: Vec<Decision> = answer.items.iter().map(|i| i.decision).collect();
        use Decision::{Forwarded, Served};
        assert_eq!(decisions, [Served, Forwarded, Served, Forwarded, Served]);
        assert_eq!(answer.items[1].node, "cloud");
        assert_eq!(answer.items[1].path, ["edge", "cloud"]);
        assert_eq!(answer.items[2].path, ["edge"]);
    }

    #[tokio::test]
    async fn a_confident_batch_stays_local() {
        let script = script("fallback").upstream("cloud", Reply::Hang);
        let answer = script.deliver_rows("mnist", &[0, 2]).await.unwrap();
        assert!(answer.items.iter().all(|i| i.decision == Decision::Served));
        assert_eq!(script.calls(), [("small".to_owned(), vec![0, 2])]);
    }

    #[tokio::test]
    async fn unsure_items_keep_their_local_answer_when_the_upstream_fails() {
        for (kind, failure) in failures("cloud") {
            let script = script("fallback").upstream("cloud", Reply::Fail(failure));
            let answer = script.deliver("mnist", 5).await.unwrap();
            assert_eq!(answer.probs, LOCAL.concat(), "{kind}");
            let decisions: Vec<Decision> = answer.items.iter().map(|i| i.decision).collect();
            use Decision::{Fallback, Served};
            assert_eq!(
                decisions,
                [Served, Fallback, Served, Fallback, Served],
                "{kind}"
            );
        }
    }

    #[tokio::test]
    async fn the_fail_policy_returns_the_upstream_error() {
        let script = script("fail").upstream("cloud", Reply::Fail(timeout("cloud")));
        let err = script.deliver("mnist", 5).await.unwrap_err();
        assert_eq!(err, RequestError::Upstream(timeout("cloud")));
    }

    #[tokio::test]
    async fn an_upstream_with_other_classes_does_not_fit() {
        let script = script("fallback").upstream("cloud", rows(&[[0.2, 0.3, 0.5]; 5]));
        let err = script.deliver("mnist", 5).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::Mismatch("cloud answered 3 classes, small answered 2".into())
        );
    }

    #[tokio::test]
    async fn items_forwarded_to_another_model_of_the_node_are_forwarded() {
        let script = Script::new(
            "services:
  - name: mnist
    strategy: {threshold: {local: {model: small}, forward: {model: big}, tau: 0.8}}",
        )
        .model("small", rows(&LOCAL))
        .model("big", rows(&[[0.0, 1.0]; 5]));
        let answer = script.deliver_from(&["access"], "mnist", 5).await.unwrap();
        let decisions: Vec<Decision> = answer.items.iter().map(|i| i.decision).collect();
        use Decision::{Forwarded, Served};
        assert_eq!(decisions, [Served, Forwarded, Served, Forwarded, Served]);
        let big = &answer.items[1];
        assert_eq!((big.node.as_str(), big.model.as_str()), ("edge", "big"));
        assert_eq!(
            big.path,
            ["access", "edge", "edge"],
            "the hop within the node"
        );
        assert_eq!(big.hops(), 2);
        assert_eq!(answer.items[0].path, ["access", "edge"]);
        let metrics = script.metrics();
        for line in [
            "idn_decisions_total{node=\"edge\",service=\"mnist\",decision=\"forwarded\"} 2",
            "idn_forward_ratio{node=\"edge\",service=\"mnist\"} 0.4",
        ] {
            assert!(metrics.contains(line), "{line} not in\n{metrics}");
        }
    }

    #[tokio::test]
    async fn a_forward_answer_is_matched_to_the_local_classes_by_name() {
        let script = Script::new(
            "upstreams: [{name: cloud, url: 'http://cloud:8000', labels: [no, yes]}]
services:
  - name: mnist
    strategy: {threshold: {local: {model: small}, forward: {upstream: cloud}, tau: 0.8}}",
        )
        .labels("small", &["yes", "no"])
        .model("small", rows(&LOCAL))
        .upstream(
            "cloud",
            rows(&[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]]),
        );
        let answer = script.deliver("mnist", 5).await.unwrap();
        let expected = [LOCAL[0], [0.8, 0.2], LOCAL[2], [0.6, 0.4], LOCAL[4]];
        assert_eq!(answer.probs, expected.concat());
    }
}
