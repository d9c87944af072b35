//! A node's scaling objects: a HorizontalPodAutoscaler when the node asks for autoscaling, and
//! a PodDisruptionBudget when it may run more than one replica, so that a drain or an upgrade
//! of the cluster never takes all of a node's replicas at once. Pure, like the rest of
//! rendering.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use crate::resources::NodeSpec;

/// CPU use an autoscaler keeps when the node names none, in percent of the request.
const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// The autoscaler of the node's Deployment (named like it, in `meta`), if the node asks for one.
pub fn autoscaler(meta: &ObjectMeta, node: &NodeSpec) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = node.autoscaling.as_ref()?;
    let cpu = MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(
                    autoscaling
                        .target_cpu_utilization
                        .unwrap_or(DEFAULT_CPU_UTILIZATION),
                ),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    };
    Some(HorizontalPodAutoscaler {
        metadata: meta.clone(),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: meta.name.clone().unwrap_or_default(),
            },
            min_replicas: Some(autoscaling.min()),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![cpu]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// A budget letting one of the node's pods be evicted at a time, if it may run several.
pub fn disruption_budget(
    meta: &ObjectMeta,
    node: &NodeSpec,
    selector: BTreeMap<String, String>,
) -> Option<PodDisruptionBudget> {
    node.may_replicate().then(|| PodDisruptionBudget {
        metadata: meta.clone(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::AutoscalingSpec;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("mnist-edge".to_owned()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_autoscaled_node_gets_an_autoscaler_on_its_deployment() {
        let node = NodeSpec {
            autoscaling: Some(AutoscalingSpec {
                min_replicas: None,
                max_replicas: 4,
                target_cpu_utilization: Some(60),
            }),
            ..NodeSpec::default()
        };
        let hpa = autoscaler(&meta(), &node).unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "mnist-edge");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 4));
        let metrics = spec.metrics.unwrap();
        let target = &metrics[0].resource.as_ref().unwrap().target;
        assert_eq!(target.average_utilization, Some(60));
        assert!(disruption_budget(&meta(), &node, BTreeMap::new()).is_some());
    }

    #[test]
    fn a_single_replica_gets_neither() {
        let node = NodeSpec::default();
        assert!(autoscaler(&meta(), &node).is_none());
        assert!(disruption_budget(&meta(), &node, BTreeMap::new()).is_none());
        let two = NodeSpec {
            replicas: Some(2),
            ..NodeSpec::default()
        };
        let budget = disruption_budget(&meta(), &two, BTreeMap::new()).unwrap();
        assert_eq!(
            budget.spec.unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
    }
}
