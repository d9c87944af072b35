//! A threshold on a learned gate (`confidence: {metric: logistic, gate: ...}`) over the example
//! models: the agent applies the gate per item exactly as computed offline.

mod common;

use common::*;
use http::StatusCode;
use idn_contract::confidence::{Confidence, ConfidenceMetric, Gate};

/// Coefficients of the kind `idn calibrate --gate logistic` fits for the linear model.
const GATE: Gate = Gate {
    bias: -2.0,
    top1: 1.5,
    margin: 2.8,
    entropy: 1.7,
};
const TAU: f64 = 0.95;
const TEMPERATURE: f64 = 1.5;

/// `name{node="access",service="mnist"} value` from the access node's metrics.
fn metric(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{node=\"access\",service=\"mnist\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} not in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_threshold_on_a_logistic_gate_decides_each_item_as_offline() {
    let edge = start_tier(
        "edge",
        "mnist-mlp",
        "services: [{name: mnist, strategy: {local: {model: mnist-mlp}}}]",
    )
    .await;
    let access = start_tier(
        "access",
        "mnist-linear",
        &format!(
            "upstreams: [{{name: edge, url: 'http://{}'}}]
services:
  - name: mnist
    strategy:
      threshold:
        local: {{model: mnist-linear}}
        forward: {{upstream: edge}}
        tau: {TAU}
        confidence:
          metric: logistic
          temperature: {TEMPERATURE}
          gate: {{bias: {}, top1: {}, margin: {}, entropy: {}}}",
            edge.addr, GATE.bias, GATE.top1, GATE.margin, GATE.entropy
        ),
    )
    .await;
    let confidence = Confidence {
        metric: ConfidenceMetric::Logistic,
        temperature: TEMPERATURE,
        gate: Some(GATE),
    };
    let plain = Confidence {
        gate: None,
        metric: ConfidenceMetric::MaxProbability,
        ..confidence
    };
    let (images, _) = sample();
    let linear = reference("mnist-linear");
    let rows: Vec<&[f32]> = linear.chunks_exact(CLASSES).collect();
    let (mut served, mut checked, mut unlike_max_probability) = (0, 0, 0);
    let mut offline_sum = 0.0;
    for (batch, start) in images.chunks(100).zip((0..).step_by(100)) {
        let reply = access
            .post_json("/v2/models/mnist/infer", &infer_body(batch))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error());
        let body = reply.json();
        let nodes = per_item(&body, "idn_node", batch.len());
        for (j, node) in nodes.iter().enumerate() {
            let row = rows[start + j];
            let score = confidence.score(row);
            offline_sum += score;
            // Items within float noise of τ may go either way.
            if (score - TAU).abs() < 1e-5 {
                continue;
            }
            checked += 1;
            let local = score >= TAU;
            served += usize::from(local);
            unlike_max_probability += usize::from(local != (plain.score(row) >= TAU));
            assert_eq!(
                node,
                if local { "access" } else { "edge" },
                "item {}",
                start + j
            );
        }
    }
    assert!(checked > 990, "{checked}");
    assert!(
        served > 100 && served < checked - 100,
        "both tiers answer: {served} of {checked} served"
    );
    // The gate decides differently from a max-probability threshold at the same τ.
    assert!(unlike_max_probability > 50, "{unlike_max_probability}");
    // The confidences the agent observed are the gate's scores.
    let metrics = String::from_utf8(access.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&metrics, "idn_confidence_count"), 1000.0);
    let observed = metric(&metrics, "idn_confidence_sum");
    assert!(
        (observed - offline_sum).abs() < 1e-3,
        "{observed} {offline_sum}"
    );
    access.stop().await;
    edge.stop().await;
}
