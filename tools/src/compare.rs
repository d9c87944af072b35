//! Strategy comparison: variants of a network that differ only in their delivery strategies
//! (always local, always the last tier, threshold cascades at several τ, an ensemble), and the
//! table and plot of their accuracy against latency.

use std::fmt::Write as _;

use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::plot::{self, Point};
use crate::replay::Summary;
use idn_operator::manifests::Manifests;
use idn_operator::resources::{
    DeliveryStrategy, DeliveryStrategySpec, EnsembleMember, EnsembleStrategy, ForwardStrategy,
    InferenceDeliveryNetwork, LocalStrategy, NodeSpec,
};

/// A named variant of the manifests.
pub struct Variant {
    pub name: String,
    pub manifests: Manifests,
}

/// The nodes a request to `service` at the entry node can travel through, following each
/// node's link for that service.
pub fn chain<'a>(
    network: &'a InferenceDeliveryNetwork,
    entry: &str,
    service: &str,
) -> Vec<&'a NodeSpec> {
    let mut chain: Vec<&NodeSpec> = Vec::new();
    let mut at = network.spec.nodes.iter().find(|n| n.name == entry);
    while let Some(node) = at {
        if chain.iter().any(|n| n.name == node.name) {
            break;
        }
        chain.push(node);
        let next = node
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.link.as_ref())
            .and_then(|link| node.links.iter().find(|l| &l.name == link))
            .and_then(|l| l.node.as_ref());
        at = next.and_then(|n| network.spec.nodes.iter().find(|o| &o.name == n));
    }
    chain
}

/// Gives `node`'s `service` a new strategy, added to the manifests under a derived name.
fn rebind(
    manifests: &mut Manifests,
    variant: &str,
    node: &str,
    service: &str,
    spec: DeliveryStrategySpec,
) {
    let namespace = manifests.networks[0].namespace();
    let name = format!("compare-{variant}-{node}");
    manifests.strategies.push(DeliveryStrategy {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace,
            ..ObjectMeta::default()
        },
        spec,
    });
    let network = &mut manifests.networks[0];
    if let Some(s) = network
        .spec
        .nodes
        .iter_mut()
        .find(|n| n.name == node)
        .and_then(|n| n.services.iter_mut().find(|s| s.name == service))
    {
        s.strategy = name;
    }
}

/// The variants compared: the network as declared, the entry node alone, everything forwarded
/// to the last node, threshold cascades at each of `taus`, and an ensemble of the entry node's
/// model with its upstream. `manifests` holds one network, whose `entry` node serves `service`.
pub fn variants(manifests: &Manifests, entry: &str, service: &str, taus: &[f64]) -> Vec<Variant> {
    let network = &manifests.networks[0];
    let chain: Vec<NodeSpec> = chain(network, entry, service)
        .into_iter()
        .cloned()
        .collect();
    let mut variants = vec![Variant {
        name: "declared".to_owned(),
        manifests: manifests.clone(),
    }];
    // A variant gives `nodes` (their `service`) the strategy `spec`.
    let mut variant = |name: String, nodes: &[NodeSpec], spec: DeliveryStrategySpec| {
        let mut copy = manifests.clone();
        for node in nodes {
            rebind(&mut copy, &name, &node.name, service, spec.clone());
        }
        variants.push(Variant {
            name,
            manifests: copy,
        });
    };
    let (first, last) = (&chain[0], &chain[chain.len() - 1]);
    let local = DeliveryStrategySpec {
        local: Some(LocalStrategy {}),
        ..Default::default()
    };
    variant(
        format!("local-{}", first.name),
        std::slice::from_ref(first),
        local,
    );
    if chain.len() < 2 {
        return variants;
    }
    let forwarding = &chain[..chain.len() - 1];
    let forward = DeliveryStrategySpec {
        forward: Some(ForwardStrategy {
            fallback_to_model: false,
        }),
        ..Default::default()
    };
    variant(format!("always-{}", last.name), forwarding, forward);
    for &tau in taus {
        let threshold = DeliveryStrategySpec {
            threshold: Some(idn_operator::resources::ThresholdStrategy {
                tau,
                confidence: Default::default(),
                adapt: None,
            }),
            ..Default::default()
        };
        variant(format!("cascade-{tau}"), forwarding, threshold);
    }
    let bound = first.services.iter().find(|s| s.name == service);
    if let Some((model, link)) = bound.and_then(|b| b.model.clone().zip(b.link.clone())) {
        let ensemble = DeliveryStrategySpec {
            ensemble: Some(local_and_upstream(model, link)),
            ..Default::default()
        };
        variant(
            format!("ensemble-{}", first.name),
            std::slice::from_ref(first),
            ensemble,
        );
    }
    variants
}

/// An ensemble of a node's model (queried first) and its upstream, stopping when confident.
fn local_and_upstream(model: String, link: String) -> EnsembleStrategy {
    let member = |model: Option<String>, link: Option<String>, cost: f64| EnsembleMember {
        model,
        link,
        weight: 1.0,
        cost,
    };
    EnsembleStrategy {
        members: vec![
            member(Some(model), None, 0.0),
            member(None, Some(link), 1.0),
        ],
        combine: Default::default(),
        mode: Default::default(),
        tau: Some(0.9),
        max_members: None,
        confidence: Default::default(),
        learn: None,
    }
}

/// The comparison as a markdown table; `nodes` orders the "answered at" columns.
pub fn markdown(results: &[(String, Summary)], nodes: &[String]) -> String {
    let mut out = String::from("| strategy | accuracy | mean ms | p50 ms | p95 ms | p99 ms |");
    for node in nodes {
        let _ = write!(out, " at {node} |");
    }
    out.push_str("\n|---|--:|--:|--:|--:|--:|");
    out.push_str(&"--:|".repeat(nodes.len()));
    for (name, s) in results {
        let _ = write!(
            out,
            "\n| {name} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.accuracy * 100.0,
            s.mean_ms,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms
        );
        for node in nodes {
            let _ = write!(out, " {:.1}% |", answered(s, node) * 100.0);
        }
    }
    out.push('\n');
    out
}

/// The comparison as CSV.
pub fn csv(results: &[(String, Summary)], nodes: &[String]) -> String {
    let mut out = String::from("strategy,requests,errors,accuracy,mean_ms,p50_ms,p95_ms,p99_ms");
    for node in nodes {
        let _ = write!(out, ",answered_at_{node}");
    }
    for (name, s) in results {
        let _ = write!(
            out,
            "\n{name},{},{},{:.4},{:.3},{:.3},{:.3},{:.3}",
            s.requests, s.errors, s.accuracy, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms
        );
        for node in nodes {
            let _ = write!(out, ",{:.4}", answered(s, node));
        }
    }
    out.push('\n');
    out
}

fn answered(summary: &Summary, node: &str) -> f64 {
    summary
        .answered_by
        .iter()
        .find(|(n, _)| n == node)
        .map_or(0.0, |(_, f)| *f)
}

/// The cheapest cascade within `ratio` of the `reference` variant's accuracy, and its mean
/// latency as a fraction of the reference's.
pub fn best_within<'a>(
    results: &'a [(String, Summary)],
    reference: &str,
    ratio: f64,
) -> Option<(&'a str, f64, f64)> {
    let (_, base) = results.iter().find(|(n, _)| n == reference)?;
    results
        .iter()
        .filter(|(n, s)| {
            (n.starts_with("cascade") || n == "declared") && s.accuracy >= ratio * base.accuracy
        })
        .min_by(|a, b| a.1.mean_ms.total_cmp(&b.1.mean_ms))
        .map(|(n, s)| {
            (
                n.as_str(),
                s.accuracy / base.accuracy,
                s.mean_ms / base.mean_ms,
            )
        })
}

/// Accuracy against mean latency (log scale), one labelled point per strategy, as SVG:
/// cascades (and the declared strategy) in blue, the other strategies in orange.
pub fn svg(results: &[(String, Summary)], title: &str) -> String {
    let points: Vec<Point> = results
        .iter()
        .map(|(name, s)| Point {
            label: name,
            latency_ms: s.mean_ms,
            accuracy_percent: s.accuracy * 100.0,
            highlighted: name.starts_with("cascade") || name == "declared",
        })
        .collect();
    plot::accuracy_latency(&points, title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example() -> Manifests {
        Manifests::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist")]).unwrap()
    }

    fn summary(accuracy: f64, mean_ms: f64) -> Summary {
        Summary {
            requests: 100,
            errors: 0,
            accuracy,
            mean_ms,
            p50_ms: mean_ms,
            p95_ms: mean_ms,
            p99_ms: mean_ms,
            answered_by: vec![("access".into(), 1.0)],
            fallback: 0.0,
        }
    }

    #[test]
    fn the_chain_follows_each_node_link_for_the_service() {
        let manifests = example();
        let names: Vec<&str> = chain(&manifests.networks[0], "access", "mnist")
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(names, ["access", "edge", "cloud"]);
    }

    #[test]
    fn variants_rebind_only_the_strategies() {
        let manifests = example();
        let variants = variants(&manifests, "access", "mnist", &[0.9]);
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "declared",
                "local-access",
                "always-cloud",
                "cascade-0.9",
                "ensemble-access"
            ]
        );
        let always = &variants[2].manifests;
        let strategy_of = |m: &Manifests, node: usize| {
            m.networks[0].spec.nodes[node].services[0].strategy.clone()
        };
        assert_eq!(strategy_of(always, 0), "compare-always-cloud-access");
        assert_eq!(strategy_of(always, 1), "compare-always-cloud-edge");
        assert_eq!(
            strategy_of(always, 2),
            "serve-local",
            "the last node keeps answering"
        );
        let forward = always
            .strategies
            .iter()
            .find(|s| s.name_any() == "compare-always-cloud-edge")
            .unwrap();
        assert!(forward.spec.forward.is_some());
    }

    #[test]
    fn best_cascade_is_the_fastest_within_the_accuracy_ratio() {
        let results = vec![
            ("always-cloud".to_owned(), summary(0.99, 45.0)),
            ("cascade-0.5".to_owned(), summary(0.95, 1.0)),
            ("cascade-0.9".to_owned(), summary(0.985, 4.0)),
            ("cascade-0.99".to_owned(), summary(0.99, 9.0)),
        ];
        let (name, ratio, latency) = best_within(&results, "always-cloud", 0.99).unwrap();
        assert_eq!(name, "cascade-0.9");
        assert!((ratio - 0.985 / 0.99).abs() < 1e-9);
        assert!((latency - 4.0 / 45.0).abs() < 1e-9);
    }

    #[test]
    fn outputs_hold_every_strategy() {
        let results = vec![
            ("cascade-0.9".to_owned(), summary(0.98, 4.0)),
            ("always-cloud".to_owned(), summary(0.99, 45.0)),
        ];
        let nodes = vec!["access".to_owned()];
        assert!(
            markdown(&results, &nodes)
                .contains("| cascade-0.9 | 98.00% | 4.00 | 4.00 | 4.00 | 4.00 | 100.0% |")
        );
        assert!(
            csv(&results, &nodes)
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("always-cloud,100,0,0.9900,45.000")
        );
        let svg = svg(&results, "MNIST <3 tiers>");
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("MNIST &lt;3 tiers&gt;"));
    }
}
