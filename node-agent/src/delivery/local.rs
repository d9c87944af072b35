//! `local`: one target answers everything (usually a model of this node).

use super::service::{Service, Target};
use super::{Answer, Backend, Delivery};
use crate::error::RequestError;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use idn_contract::confidence::Confidence;

impl<B: Backend> Delivery<'_, B> {
    pub(super) async fn local(
        &self,
        service: &Service,
        target: &Target,
        inputs: &[Tensor],
        context: &RequestContext,
    ) -> Result<Answer, RequestError> {
        self.ask(service, target, inputs, context, &Confidence::default())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{Script, rows};
    use idn_contract::provenance::Decision;

    #[tokio::test]
    async fn a_local_model_serves_each_item_with_its_provenance() {
        let script = Script::new("services: [{name: mnist, strategy: {local: {model: small}}}]")
            .model("small", rows(&[[0.7, 0.3], [0.1, 0.9]]));
        let answer = script.deliver_from(&["access"], "mnist", 2).await.unwrap();
        assert_eq!(answer.classes, 2);
        assert_eq!(answer.probs, [0.7, 0.3, 0.1, 0.9]);
        for (item, confidence) in answer.items.iter().zip([0.7, 0.9]) {
            assert_eq!(item.node, "edge");
            assert_eq!(item.model, "small");
            assert_eq!(item.decision, Decision::Served);
            assert!((item.confidence - confidence).abs() < 1e-6, "{item:?}");
            assert_eq!(item.path, ["access", "edge"]);
        }
        assert_eq!(script.calls(), [("small".to_owned(), vec![0, 1])]);
    }
}
