//! `ensemble`: members are queried cheapest first, one by one on the items still unsure
//! (sequential), or all at once (parallel); their answers are merged per item by the
//! [`combine`](super::combine) rule.

use futures_util::future::join_all;

use super::answer::{batch_size, select_rows};
use super::combine::Accumulator;
use super::service::{Ensemble, Service};
use super::{Answer, Backend, Delivery};
use crate::error::RequestError;
use crate::learn::lock;
use crate::learn::weights::Votes;
use crate::wire::context::RequestContext;
use crate::wire::provenance::Provenance;
use crate::wire::tensor::Tensor;
use idn_contract::confidence::argmax;
use idn_contract::config::EnsembleMode;
use idn_contract::provenance::Decision;

impl<B: Backend> Delivery<'_, B> {
    pub(super) async fn ensemble(
        &self,
        service: &Service,
        ensemble: &Ensemble,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        // Labels can only be matched to a request the client can name.
        let learning = ensemble.learner.as_ref().zip(context.request_id.as_deref());
        let mut gathered = Gathered::new(ensemble, batch_size(inputs), learning.is_some());
        match ensemble.mode {
            EnsembleMode::Sequential => {
                self.sequential(service, ensemble, inputs, context, &mut gathered)
                    .await?
            }
            EnsembleMode::Parallel => {
                self.parallel(service, ensemble, inputs, context, &mut gathered)
                    .await?
            }
        }
        self.metrics
            .observe_ensemble(self.node, service.name(), gathered.queried);
        if let Some((learner, id)) = learning {
            let votes = Votes {
                classes: gathered
                    .accumulator
                    .as_ref()
                    .map_or(0, Accumulator::classes),
                items: gathered.votes.take().unwrap_or_default(),
            };
            lock(learner).settle(id, votes);
        }
        gathered.into_answer(self.node, self.path_here(context))
    }

    /// Queries members in order, each on the items not yet confident; stops when none is left,
    /// the budget of members is spent or the deadline has passed.
    async fn sequential(
        &self,
        service: &Service,
        ensemble: &Ensemble,
        inputs: &[Tensor],
        context: &RequestContext,
        gathered: &mut Gathered<'_>,
    ) -> Result<(), RequestError> {
        let mut active: Vec<usize> = (0..gathered.items).collect();
        let budget = ensemble.members.iter().take(ensemble.max_members);
        for (index, member) in budget.enumerate() {
            if active.is_empty() || context.remaining().is_zero() {
                break;
            }
            gathered.queried += 1;
            let sub_batch = select_rows(inputs, &active);
            match self
                .ask(
                    service,
                    &member.target,
                    &sub_batch,
                    context,
                    &ensemble.confidence,
                )
                .await
            {
                Ok(answer) => gathered.merge(index, &active, answer)?,
                Err(failure) => {
                    gathered.last_failure = Some(self.tolerate(service, failure)?);
                    continue;
                }
            }
            if let Some(tau) = ensemble.tau {
                active.retain(|&row| gathered.confidence(row) < tau);
            }
        }
        Ok(())
    }

    /// Queries every member on the whole batch at once and merges what arrives before the
    /// deadline.
    async fn parallel(
        &self,
        service: &Service,
        ensemble: &Ensemble,
        inputs: &[Tensor],
        context: &RequestContext,
        gathered: &mut Gathered<'_>,
    ) -> Result<(), RequestError> {
        let all: Vec<usize> = (0..gathered.items).collect();
        let calls = ensemble.members.iter().map(|member| async move {
            let call = self.ask(
                service,
                &member.target,
                inputs,
                context,
                &ensemble.confidence,
            );
            tokio::time::timeout(context.remaining(), call).await
        });
        for (index, result) in join_all(calls).await.into_iter().enumerate() {
            gathered.queried += 1;
            match result {
                Ok(Ok(answer)) => gathered.merge(index, &all, answer)?,
                Ok(Err(failure)) => {
                    gathered.last_failure = Some(self.tolerate(service, failure)?);
                }
                Err(_) => {} // past the deadline: merged without it
            }
        }
        Ok(())
    }
}

/// What an ensemble's members answered so far.
struct Gathered<'e> {
    ensemble: &'e Ensemble,
    items: usize,
    /// Made with the first answer, which tells the number of classes.
    accumulator: Option<Accumulator>,
    /// The failure to report when no member answers at all.
    last_failure: Option<RequestError>,
    queried: usize,
    /// The learned member weights when the ensemble learns them (else each member's own).
    learned_weights: Option<Vec<f64>>,
    /// Per item, the class each member answered, when a weight learner waits for labels.
    votes: Option<Vec<Vec<(usize, usize)>>>,
}

impl<'e> Gathered<'e> {
    fn new(ensemble: &'e Ensemble, items: usize, keep_votes: bool) -> Self {
        Gathered {
            ensemble,
            items,
            accumulator: None,
            last_failure: None,
            queried: 0,
            learned_weights: ensemble
                .learner
                .as_ref()
                .map(|learner| lock(learner).weights().to_vec()),
            votes: keep_votes.then(|| vec![Vec::new(); items]),
        }
    }

    /// Adds member `member`'s answer for the items `rows`.
    fn merge(&mut self, member: usize, rows: &[usize], answer: Answer) -> Result<(), RequestError> {
        let ensemble = self.ensemble;
        let items = self.items;
        let accumulator = self
            .accumulator
            .get_or_insert_with(|| Accumulator::new(ensemble.combine, items, answer.classes));
        if accumulator.classes() != answer.classes {
            return Err(RequestError::Mismatch(format!(
                "ensemble member {} answered {} classes, another answered {}",
                ensemble.members[member].target.name,
                answer.classes,
                accumulator.classes()
            )));
        }
        let known = ensemble.members[member].target.columns.known();
        let weight = self
            .learned_weights
            .as_ref()
            .map_or(ensemble.members[member].weight, |w| w[member]);
        accumulator.add(
            member,
            weight,
            rows,
            &answer.probs,
            known,
            &ensemble.confidence,
        );
        if let Some(votes) = &mut self.votes {
            for (&row, probs) in rows.iter().zip(answer.probs.chunks_exact(answer.classes)) {
                votes[row].push((member, argmax(probs)));
            }
        }
        Ok(())
    }

    /// The combined confidence of item `row` so far.
    fn confidence(&self, row: usize) -> f64 {
        self.accumulator.as_ref().map_or(f64::NEG_INFINITY, |acc| {
            self.ensemble.confidence.score(&acc.combined(row))
        })
    }

    /// The merged answer, each item naming the members that answered it; the last failure
    /// (or the deadline) when none did.
    fn into_answer(self, node: &str, path: Vec<String>) -> Result<Answer, RequestError> {
        let Some(acc) = self.accumulator else {
            return Err(self.last_failure.unwrap_or_else(|| {
                RequestError::DeadlineExceeded(
                    "no ensemble member answered before the deadline".into(),
                )
            }));
        };
        let members = &self.ensemble.members;
        let mut probs = Vec::with_capacity(self.items * acc.classes());
        let items = (0..self.items)
            .map(|row| {
                let combined = acc.combined(row);
                let names: Vec<&str> = acc
                    .members(row)
                    .iter()
                    .map(|&m| members[m].target.name.as_str())
                    .collect();
                let item = Provenance {
                    node: node.to_owned(),
                    model: names.join("+"),
                    decision: Decision::Ensembled,
                    confidence: self.ensemble.confidence.score(&combined),
                    path: path.clone(),
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::script::{Reply, Script, close, rows, timeout, unreachable};
    use crate::error::RequestError;
    use crate::server::http_status;
    use idn_contract::provenance::Decision;

    /// Three members listed out of cost order: `big` (cost 10), `small` (1), `mid` (5).
    fn script(strategy: &str) -> Script {
        Script::new(&format!(
            "upstreams: [{{name: big, url: 'http://cloud:8000'}}]
services:
  - name: vote
    deadlineMs: 100
    strategy:
      ensemble:
        members: [{{upstream: big, cost: 10}}, {{model: small, cost: 1}}, {{model: mid, cost: 5}}]
        {strategy}"
        ))
    }

    fn members(answer: &super::Answer) -> Vec<&str> {
        answer.items.iter().map(|i| i.model.as_str()).collect()
    }

    #[tokio::test]
    async fn sequential_members_go_cheapest_first_and_stop_at_tau() {
        let script = script("tau: 0.8")
            .model("small", rows(&[[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]]))
            .model("mid", rows(&[[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]))
            .upstream("big", rows(&[[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]));
        let answer = script.deliver("vote", 3).await.unwrap();
        assert_eq!(
            script.calls(),
            [
                ("small".to_owned(), vec![0, 1, 2]),
                ("mid".to_owned(), vec![1, 2]),
                ("big/vote".to_owned(), vec![2]),
            ]
        );
        assert_eq!(members(&answer), ["small", "small+mid", "small+mid+big"]);
        let expected = [0.9, 0.1, 0.85, 0.15, 2.0 / 3.0, 1.0 / 3.0];
        assert!(
            answer
                .probs
                .iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() < 1e-6),
            "{:?}",
            answer.probs
        );
        assert!(
            answer
                .items
                .iter()
                .all(|i| i.decision == Decision::Ensembled)
        );
        assert!(
            script
                .metrics()
                .contains("idn_ensemble_members_queried_sum{node=\"edge\",service=\"vote\"} 3.0")
        );
    }

    #[tokio::test]
    async fn max_members_caps_the_members_queried() {
        let script = script("maxMembers: 2")
            .model("small", rows(&[[0.6, 0.4]]))
            .model("mid", rows(&[[0.4, 0.6]]))
            .upstream("big", Reply::Hang);
        let answer = script.deliver("vote", 1).await.unwrap();
        assert_eq!(members(&answer), ["small+mid"]);
        assert_eq!(answer.probs, [0.5, 0.5]);
    }

    #[tokio::test]
    async fn a_failed_member_is_skipped_under_the_fallback_policy() {
        let script = script("combine: vote")
            .model("small", rows(&[[0.6, 0.4]]))
            .model("mid", rows(&[[0.4, 0.6]]))
            .upstream("big", Reply::Fail(unreachable("big")));
        let answer = script.deliver("vote", 1).await.unwrap();
        assert_eq!(members(&answer), ["small+mid"]);
        assert_eq!(answer.probs, [0.5, 0.5], "one vote each");
    }

    #[tokio::test]
    async fn a_failed_member_is_the_error_under_the_fail_policy() {
        let script = Script::new(
            "upstreams: [{name: big, url: 'http://cloud:8000'}]
services:
  - name: vote
    onUpstreamFailure: fail
    strategy: {ensemble: {members: [{model: small}, {upstream: big}]}}",
        )
        .model("small", rows(&[[0.6, 0.4]]))
        .upstream("big", Reply::Fail(timeout("big")));
        let err = script.deliver("vote", 1).await.unwrap_err();
        assert_eq!(err, RequestError::Upstream(timeout("big")));
    }

    #[tokio::test]
    async fn when_every_member_fails_the_last_failure_is_returned() {
        let script = Script::new(
            "upstreams: [{name: a, url: 'http://a:8000'}, {name: b, url: 'http://b:8000'}]
services:
  - name: vote
    strategy: {ensemble: {members: [{upstream: a}, {upstream: b}]}}",
        )
        .upstream("a", Reply::Fail(timeout("a")))
        .upstream("b", Reply::Fail(unreachable("b")));
        let err = script.deliver("vote", 1).await.unwrap_err();
        assert_eq!(err, RequestError::Upstream(unreachable("b")));
    }

    #[tokio::test]
    async fn a_local_member_error_is_never_hidden() {
        let not_ready = RequestError::Unavailable("model \"small\" is not ready".into());
        let script = script("")
            .model("small", Reply::Error(not_ready.clone()))
            .model("mid", rows(&[[0.4, 0.6]]))
            .upstream("big", rows(&[[0.4, 0.6]]));
        assert_eq!(script.deliver("vote", 1).await.unwrap_err(), not_ready);
        assert_eq!(script.calls().len(), 1);
    }

    #[tokio::test]
    async fn parallel_members_answer_the_whole_batch_and_merge() {
        let script = script("mode: parallel\n        combine: weightedMean")
            .model("small", rows(&[[1.0, 0.0], [0.0, 1.0]]))
            .model("mid", rows(&[[0.0, 1.0], [0.0, 1.0]]))
            .upstream("big", Reply::Fail(unreachable("big")));
        let answer = script.deliver("vote", 2).await.unwrap();
        let mut calls = script.calls();
        calls.sort();
        assert_eq!(
            calls,
            [
                ("big/vote".to_owned(), vec![0, 1]),
                ("mid".to_owned(), vec![0, 1]),
                ("small".to_owned(), vec![0, 1]),
            ]
        );
        assert_eq!(answer.probs, [0.5, 0.5, 0.0, 1.0]);
        assert_eq!(members(&answer), ["small+mid", "small+mid"]);
        assert!(
            script
                .metrics()
                .contains("idn_ensemble_members_queried_sum{node=\"edge\",service=\"vote\"} 3.0"),
            "a member that failed was queried"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_members_late_for_the_deadline_are_left_out() {
        let script = script("mode: parallel")
            .model("small", rows(&[[0.6, 0.4]]))
            .model(
                "mid",
                Reply::After(Duration::from_millis(150), Box::new(rows(&[[0.0, 1.0]]))),
            )
            .upstream("big", Reply::Hang);
        let answer = script.deliver("vote", 1).await.unwrap();
        assert_eq!(members(&answer), ["small"]);
        assert_eq!(answer.probs, [0.6, 0.4]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_member_before_the_deadline_is_a_deadline_error() {
        let script = script("mode: parallel")
            .model("small", Reply::Hang)
            .model("mid", Reply::Hang)
            .upstream("big", Reply::Hang);
        let err = script.deliver("vote", 1).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::DeadlineExceeded(
                "no ensemble member answered before the deadline".into()
            )
        );
        assert_eq!(http_status(&err).as_u16(), 504);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_stops_a_sequential_ensemble() {
        // The cheapest member takes longer than the 100 ms budget: nobody is asked after it.
        let slow = Reply::After(Duration::from_millis(120), Box::new(rows(&[[0.6, 0.4]])));
        let spent = script("")
            .model("small", slow)
            .model("mid", rows(&[[0.0, 1.0]]))
            .upstream("big", rows(&[[0.0, 1.0]]));
        let answer = spent.deliver("vote", 1).await.unwrap();
        assert_eq!(members(&answer), ["small"]);
        assert_eq!(spent.calls().len(), 1);

        // A request that arrives with no time left asks nobody.
        let script = script("")
            .model("small", rows(&[[0.6, 0.4]]))
            .model("mid", rows(&[[0.0, 1.0]]))
            .upstream("big", rows(&[[0.0, 1.0]]));
        let mut context = script.context(&[]);
        context.deadline = tokio::time::Instant::now();
        let err = script
            .deliver_inputs("vote", &Script::batch(1), &context)
            .await
            .unwrap_err();
        assert!(matches!(err, RequestError::DeadlineExceeded(_)), "{err:?}");
        assert!(script.calls().is_empty());
    }

    #[tokio::test]
    async fn members_with_different_classes_do_not_fit() {
        let script = script("")
            .model("small", rows(&[[0.6, 0.4]]))
            .model("mid", rows(&[[0.2, 0.3, 0.5]]))
            .upstream("big", rows(&[[0.0, 1.0]]));
        let err = script.deliver("vote", 1).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::Mismatch(
                "ensemble member mid answered 3 classes, another answered 2".into()
            )
        );
        assert_eq!(http_status(&err).as_u16(), 502);
    }

    /// An ensemble of model `small` (classes a, b, c) and upstream `cloud`, whose classes are
    /// named by `labels`.
    fn named(combine: &str, labels: &str) -> Script {
        Script::new(&format!(
            "upstreams: [{{name: cloud, url: 'http://cloud:8000', labels: {labels}}}]
services:
  - name: vote
    strategy: {{ensemble: {{members: [{{model: small}}, {{upstream: cloud}}], combine: {combine}}}}}"
        ))
        .labels("small", &["a", "b", "c"])
        .model("small", rows(&[[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    }

    #[tokio::test]
    async fn members_with_reversed_labels_combine_like_aligned_ones() {
        let cloud = [[0.1, 0.1, 0.8], [0.5, 0.4, 0.1]];
        let reversed = cloud.map(|[a, b, c]| [c, b, a]);
        for combine in ["mean", "weightedMean", "vote", "mostConfident"] {
            let aligned = named(combine, "[a, b, c]").upstream("cloud", rows(&cloud));
            let permuted = named(combine, "[c, b, a]").upstream("cloud", rows(&reversed));
            let expected = aligned.deliver("vote", 2).await.unwrap();
            assert_eq!(
                permuted.deliver("vote", 2).await.unwrap(),
                expected,
                "{combine}"
            );
        }
        let mean = named("mean", "[c, b, a]").upstream("cloud", rows(&reversed));
        let probs = mean.deliver("vote", 2).await.unwrap().probs;
        let expected = [0.35, 0.2, 0.45, 0.35, 0.3, 0.35];
        assert!(close(&probs, &expected), "{probs:?}");
    }

    #[tokio::test]
    async fn a_member_knowing_some_classes_adds_to_those() {
        // Ten classes at the node; the upstream knows 0 to 4 only.
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let digits: Vec<&str> = digits.iter().map(String::as_str).collect();
        let script = Script::new(
            "upstreams: [{name: cloud, url: 'http://cloud:8000', labels: ['4', '3', '2', '1', '0']}]
services:
  - name: vote
    strategy: {ensemble: {members: [{model: small}, {upstream: cloud}]}}",
        )
        .labels("small", &digits)
        .model("small", rows(&[[0.1; 10]]))
        .upstream("cloud", rows(&[[0.0, 0.0, 0.0, 0.0, 1.0]]));
        let answer = script.deliver("vote", 1).await.unwrap();
        assert_eq!(answer.classes, 10);
        // Class 0: (0.1 + 1) / 2; classes 1 to 4: 0.1 / 2; classes 5 to 9: 0.1 (small alone).
        let raw = [0.55, 0.05, 0.05, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1];
        let sum: f32 = raw.iter().sum();
        assert!(
            close(&answer.probs, &raw.map(|p| p / sum)),
            "{:?}",
            answer.probs
        );
    }

    #[tokio::test]
    async fn a_member_answering_other_columns_than_its_labels_does_not_fit() {
        let script = named("mean", "[c, b, a]").upstream("cloud", rows(&[[0.5, 0.5]; 2]));
        let err = script.deliver("vote", 2).await.unwrap_err();
        assert_eq!(
            err,
            RequestError::Mismatch("cloud answered 2 classes, 3 are named for it".into())
        );
        assert_eq!(http_status(&err).as_u16(), 502);
    }
}
