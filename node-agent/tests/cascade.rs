//! Cooperative inference across three agents on loopback, wired access → edge → cloud over the
//! example models: cascades, mixed batches, ensembles, fallbacks, routing errors, deadlines,
//! tokens and propagated headers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use serde_json::json;

const TAU_ACCESS: f64 = 0.9;
const TAU_EDGE: f64 = 0.8;

/// Starts cloud, then edge (threshold → cloud, binary tensor data), then access (threshold →
/// edge, JSON).
async fn three_tiers(cloud_extra: &str) -> (TestAgent, TestAgent, TestAgent) {
    let cloud = TestAgent::start(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        &format!("services:\n  - name: mnist\n    strategy: {{local: {{model: mnist-cnn}}}}\n{cloud_extra}"),
    ))
    .await;
    let edge = TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: 'http://{}', binaryData: true}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: {TAU_EDGE}}}}}",
            cloud.addr
        ),
    ))
    .await;
    let access = TestAgent::start(with_yaml(
        tier_config("access", "mnist-linear"),
        &format!(
            "upstreams: [{{name: edge, url: 'http://{}'}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-linear}}, forward: {{upstream: edge}}, tau: {TAU_ACCESS}}}}}",
            edge.addr
        ),
    ))
    .await;
    (access, edge, cloud)
}

fn max_probability(row: &[f32]) -> f64 {
    f64::from(row.iter().copied().fold(0.0, f32::max))
}

#[tokio::test]
async fn cascade_matches_the_offline_computation_on_the_sample() {
    let (access, edge, cloud) = three_tiers("").await;
    let (images, labels) = sample();
    let refs = [
        reference("mnist-linear"),
        reference("mnist-mlp"),
        reference("mnist-cnn"),
    ];
    let row = |tier: usize, i: usize| &refs[tier][i * CLASSES..(i + 1) * CLASSES];
    let mut correct = 0;
    let mut offline_correct = 0;
    let mut answered_at = [0usize; 3];
    // Batches of 50 mix items answered at every tier; each is decided on its own.
    for (batch, start) in images.chunks(50).zip((0..).step_by(50)) {
        let reply = access
            .post_json("/v2/models/mnist/infer", &infer_body(batch))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        let got = probs(&reply);
        let nodes = per_item(&body, "idn_node", batch.len());
        let decisions = per_item(&body, "idn_decision", batch.len());
        let hops = per_item(&body, "idn_hops", batch.len());
        for j in 0..batch.len() {
            let i = start + j;
            let (c0, c1) = (max_probability(row(0, i)), max_probability(row(1, i)));
            // Items within float noise of a threshold may go either way.
            if (c0 - TAU_ACCESS).abs() < 1e-5 || (c1 - TAU_EDGE).abs() < 1e-5 {
                continue;
            }
            let tier = if c0 >= TAU_ACCESS {
                0
            } else if c1 >= TAU_EDGE {
                1
            } else {
                2
            };
            answered_at[tier] += 1;
            assert_eq!(nodes[j], ["access", "edge", "cloud"][tier], "item {i}");
            assert_eq!(
                decisions[j],
                if tier == 0 { "served" } else { "forwarded" },
                "item {i}"
            );
            assert_eq!(hops[j], tier, "item {i}");
            let answer = &got[j * CLASSES..(j + 1) * CLASSES];
            assert!(
                answer
                    .iter()
                    .zip(row(tier, i))
                    .all(|(a, b)| (a - b).abs() <= 1e-5),
                "item {i}"
            );
            correct += usize::from(argmax(answer) == usize::from(labels[i]));
            offline_correct += usize::from(argmax(row(tier, i)) == usize::from(labels[i]));
        }
    }
    assert_eq!(correct, offline_correct);
    assert!(
        answered_at.iter().all(|&n| n > 0),
        "every tier answers some items: {answered_at:?}"
    );
    let metrics = String::from_utf8(access.get("/metrics").await.body.to_vec()).unwrap();
    let served = format!(
        "idn_decisions_total{{node=\"access\",service=\"mnist\",decision=\"served\"}} {}",
        answered_at[0]
    );
    assert!(metrics.contains(&served), "{served} not in\n{metrics}");
    assert!(metrics.contains("idn_confidence_count{node=\"access\",service=\"mnist\"} 1000"));
    assert!(metrics.contains("idn_upstream_duration_seconds_count{upstream=\"edge\"} 20"));
    for agent in [access, edge, cloud] {
        agent.stop().await;
    }
}

#[tokio::test]
async fn ensembles_stop_early_when_confident_and_use_every_member_when_not() {
    let cloud = TestAgent::start(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        "services: [{name: mnist, strategy: {local: {model: mnist-cnn}}}]",
    ))
    .await;
    let ensemble = |tau: &str| {
        format!(
            "upstreams: [{{name: cloud, url: 'http://{}'}}]
services:
  - name: vote
    strategy:
      ensemble:
        members: [{{upstream: cloud, service: mnist, cost: 10}}, {{model: mnist-mlp, cost: 1}}]
        combine: mean
        {tau}",
            cloud.addr
        )
    };
    let (images, _) = sample();
    let batch = &images[..40];
    let (mlp, cnn) = (reference("mnist-mlp"), reference("mnist-cnn"));

    let edge = TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &ensemble("tau: 0.95"),
    ))
    .await;
    let reply = edge
        .post_json("/v2/models/vote/infer", &infer_body(batch))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let got = probs(&reply);
    let members = per_item(&body, "idn_model", batch.len());
    let mut early = 0;
    for (i, member) in members.iter().enumerate() {
        let row = |r: &[f32]| r[i * CLASSES..(i + 1) * CLASSES].to_vec();
        let expected: Vec<f32> = if max_probability(&row(&mlp)) >= 0.95 {
            early += 1;
            assert_eq!(
                member, "mnist-mlp",
                "item {i}: cheapest member first, then stop"
            );
            row(&mlp)
        } else {
            assert_eq!(member, "mnist-mlp+cloud/mnist", "item {i}");
            row(&mlp)
                .iter()
                .zip(row(&cnn))
                .map(|(a, b)| (a + b) / 2.0)
                .collect()
        };
        assert!(
            got[i * CLASSES..(i + 1) * CLASSES]
                .iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() <= 1e-5)
        );
    }
    assert!(
        early > 0 && early < batch.len(),
        "the batch mixes early stops and full queries ({early})"
    );
    assert_eq!(per_item(&body, "idn_decision", 1)[0], "ensembled");
    edge.stop().await;

    let edge = TestAgent::start(with_yaml(tier_config("edge", "mnist-mlp"), &ensemble(""))).await;
    let body = edge
        .post_json("/v2/models/vote/infer", &infer_body(batch))
        .await
        .json();
    assert_eq!(
        body["parameters"]["idn_model"], "mnist-mlp+cloud/mnist",
        "without τ every member answers"
    );
    let metrics = String::from_utf8(edge.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_ensemble_members_queried_sum{node=\"edge\",service=\"vote\"} 2.0"),
        "{metrics}"
    );
    edge.stop().await;
    cloud.stop().await;
}

#[tokio::test]
async fn parallel_ensembles_merge_what_arrives_before_the_deadline() {
    let hang = FakeUpstream::start(Fake::Hang).await;
    let edge = TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: slow, url: 'http://{}'}}]
services:
  - name: vote
    deadlineMs: 200
    strategy: {{ensemble: {{mode: parallel, combine: vote, members: [{{model: mnist-mlp}}, {{upstream: slow}}]}}}}",
            hang.addr
        ),
    ))
    .await;
    let (images, _) = sample();
    let reply = edge
        .post_json("/v2/models/vote/infer", &infer_body(&images[..4]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["parameters"]["idn_model"], "mnist-mlp");
    assert_eq!(
        body["parameters"]["idn_confidence"], 1.0,
        "one vote is a unanimous vote"
    );
    edge.stop().await;
}

/// An edge node whose threshold forwards unsure items to `upstream`.
async fn edge_forwarding_to(upstream: &str, extra: &str) -> TestAgent {
    TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: 'http://{upstream}', timeoutMs: 300}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}
{extra}"
        ),
    ))
    .await
}

#[tokio::test]
async fn failing_upstreams_give_a_degraded_local_answer() {
    let (images, _) = sample();
    let batch = &images[..5];
    let local = reference("mnist-mlp");
    let down = closed_port().await.to_string();
    let garbage = FakeUpstream::start(Fake::Garbage).await.addr.to_string();
    let hang = FakeUpstream::start(Fake::Hang).await.addr.to_string();
    for (upstream, kind) in [
        (down, "unreachable"),
        (garbage, "invalid"),
        (hang, "timeout"),
    ] {
        let edge = edge_forwarding_to(&upstream, "").await;
        let reply = edge
            .post_json("/v2/models/mnist/infer", &infer_body(batch))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{kind}");
        let body = reply.json();
        assert_eq!(body["parameters"]["idn_decision"], "fallback", "{kind}");
        assert_eq!(body["parameters"]["idn_degraded"], true);
        assert_eq!(body["parameters"]["idn_node"], "edge");
        let got = probs(&reply);
        assert!(
            got.iter()
                .zip(&local[..5 * CLASSES])
                .all(|(a, b)| (a - b).abs() <= 1e-5),
            "{kind}"
        );
        let metrics = String::from_utf8(edge.get("/metrics").await.body.to_vec()).unwrap();
        let line = format!("idn_upstream_errors_total{{upstream=\"cloud\",kind=\"{kind}\"}} 1");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
        edge.stop().await;
    }
}

#[tokio::test]
async fn failing_upstreams_give_the_configured_error() {
    let (images, _) = sample();
    let down = closed_port().await.to_string();
    let hang = FakeUpstream::start(Fake::Hang).await.addr.to_string();
    for (upstream, status, message) in [
        (
            down,
            StatusCode::BAD_GATEWAY,
            "upstream \"cloud\" is unreachable",
        ),
        (
            hang,
            StatusCode::GATEWAY_TIMEOUT,
            "did not answer within 300 ms",
        ),
    ] {
        let edge = edge_forwarding_to(&upstream, "    onUpstreamFailure: fail").await;
        let reply = edge
            .post_json("/v2/models/mnist/infer", &infer_body(&images[..2]))
            .await;
        assert_eq!(reply.status, status);
        assert!(reply.error().contains(message), "{}", reply.error());
        edge.stop().await;
    }
}

#[tokio::test]
async fn deadlines_are_honoured_and_propagated() {
    let hang = FakeUpstream::start(Fake::Hang).await;
    let edge = TestAgent::start(edge_forwarding_all(hang.addr, 60000)).await;
    let (images, _) = sample();
    let started = Instant::now();
    let reply = send(
        edge.addr,
        Method::POST,
        "/v2/models/mnist/infer",
        &[("idn-deadline-ms", "150".into())],
        Bytes::from(infer_body(&images[..1]).to_string()),
    )
    .await;
    // The upstream never answers and its own timeout is a minute: only the deadline ends it.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["parameters"]["idn_decision"], "fallback");
    let seen = hang.headers.lock().unwrap()[0].clone();
    let budget: u64 = seen["idn-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(
        budget <= 150,
        "the upstream gets the remaining budget, not more: {budget}"
    );

    let mut body = infer_body(&images[..1]);
    body["parameters"] = json!({"deadline_ms": 100});
    let reply = edge.post_json("/v2/models/mnist/infer", &body).await;
    assert_eq!(reply.json()["parameters"]["idn_decision"], "fallback");
    edge.stop().await;
}

#[tokio::test]
async fn any_oip_server_can_be_an_upstream_and_context_headers_travel() {
    let plain = FakeUpstream::start(Fake::Uniform).await;
    let edge = edge_forwarding_to(&plain.addr.to_string(), "").await;
    let (images, _) = sample();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut body = infer_body(&images[..3]);
    body["id"] = json!("req-7");
    let reply = send(
        edge.addr,
        Method::POST,
        "/v2/models/mnist/infer",
        &[("traceparent", trace.into())],
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["id"], "req-7");
    assert_eq!(
        body["parameters"]["idn_node"], "cloud",
        "an upstream without provenance is named by its link"
    );
    assert_eq!(body["parameters"]["idn_model"], "plain");
    assert_eq!(body["parameters"]["idn_path"], json!(["edge", "cloud"]));
    assert_eq!(body["parameters"]["idn_decision"], "forwarded");
    assert!(probs(&reply).iter().all(|&p| (p - 0.1).abs() < 1e-6));
    let seen = plain.headers.lock().unwrap()[0].clone();
    assert_eq!(seen["idn-path"], "edge");
    assert_eq!(seen["x-request-id"], "req-7");
    let forwarded = seen["traceparent"].to_str().unwrap();
    assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && forwarded != trace);
    edge.stop().await;
}

#[tokio::test]
async fn loops_and_hop_limits_give_a_clear_error() {
    // a forwards to b and b to a: the request comes back to a.
    let b_port = closed_port().await;
    let a = TestAgent::start(with_yaml(
        tier_config("a", "mnist-mlp"),
        &format!("upstreams: [{{name: b, url: 'http://{b_port}'}}]\nservices: [{{name: mnist, strategy: {{forward: {{to: {{upstream: b}}}}}}}}]"),
    ))
    .await;
    let mut b_config = with_yaml(
        tier_config("b", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: a, url: 'http://{}'}}]\nservices: [{{name: mnist, strategy: {{forward: {{to: {{upstream: a}}, fallbackModel: mnist-mlp}}}}}}]",
            a.addr
        ),
    );
    b_config.listen = b_port;
    let b = TestAgent::start(b_config).await;
    let (images, _) = sample();
    let reply = a
        .post_json("/v2/models/mnist/infer", &infer_body(&images[..1]))
        .await;
    assert_eq!(reply.status, StatusCode::LOOP_DETECTED);
    assert!(
        reply.error().contains("forwarding loop: a -> b -> a"),
        "{}",
        reply.error()
    );
    a.stop().await;
    b.stop().await;

    let (access, edge, cloud) = three_tiers("    maxHops: 1").await;
    let unsure: Vec<Vec<f32>> = {
        let linear = reference("mnist-linear");
        let mlp = reference("mnist-mlp");
        (0..SAMPLES)
            .filter(|&i| {
                max_probability(&linear[i * CLASSES..(i + 1) * CLASSES]) < TAU_ACCESS - 0.01
                    && max_probability(&mlp[i * CLASSES..(i + 1) * CLASSES]) < TAU_EDGE - 0.01
            })
            .map(|i| images[i].clone())
            .take(1)
            .collect()
    };
    let reply = access
        .post_json("/v2/models/mnist/infer", &infer_body(&unsure))
        .await;
    assert_eq!(reply.status, StatusCode::LOOP_DETECTED);
    assert!(
        reply
            .error()
            .contains("hop limit 1 exceeded: access -> edge -> cloud"),
        "{}",
        reply.error()
    );
    for agent in [access, edge, cloud] {
        agent.stop().await;
    }
}

#[tokio::test]
async fn a_configured_bearer_token_is_required() {
    let dir = std::env::temp_dir().join(format!("idn-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let cloud = TestAgent::start(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        &format!("auth: {{tokenFile: {}}}\nservices: [{{name: mnist, strategy: {{local: {{model: mnist-cnn}}}}}}]", token.display()),
    ))
    .await;
    let (images, _) = sample();
    let body = Bytes::from(infer_body(&images[..1]).to_string());
    let call = |auth: Option<&'static str>| {
        let body = body.clone();
        let addr = cloud.addr;
        async move {
            let headers: Vec<(&str, String)> = auth
                .map(|a| vec![("authorization", a.to_owned())])
                .unwrap_or_default();
            send(addr, Method::POST, "/v2/models/mnist/infer", &headers, body).await
        }
    };
    assert_eq!(call(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(Some("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(Some("Bearer s3cret")).await.status, StatusCode::OK);
    assert_eq!(
        cloud.get("/v2/health/ready").await.status,
        StatusCode::OK,
        "probes stay open"
    );

    let upstream = |token_line: &str| {
        format!(
            "upstreams: [{{name: cloud, url: 'http://{}'{token_line}}}]
services:
  - name: mnist
    onUpstreamFailure: fail
    strategy: {{forward: {{to: {{upstream: cloud}}}}}}",
            cloud.addr
        )
    };
    let with_token = TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &upstream(&format!(", tokenFile: {}", token.display())),
    ))
    .await;
    let reply = with_token
        .post_json("/v2/models/mnist/infer", &infer_body(&images[..1]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let without =
        TestAgent::start(with_yaml(tier_config("edge", "mnist-mlp"), &upstream(""))).await;
    let reply = without
        .post_json("/v2/models/mnist/infer", &infer_body(&images[..1]))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.error().contains("answered 401 Unauthorized"),
        "{}",
        reply.error()
    );
    for agent in [with_token, without, cloud] {
        agent.stop().await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let (upstream, ca_pem) = FakeUpstream::start_tls(Fake::Uniform).await;
    let dir = std::env::temp_dir().join(format!("idn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let (images, _) = sample();
    let edge = |ca_line: String| {
        with_yaml(
            tier_config("edge", "mnist-mlp"),
            &format!(
                "upstreams: [{{name: cloud, url: 'https://{}'{ca_line}}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}",
                upstream.addr
            ),
        )
    };
    let trusted = TestAgent::start(edge(format!(", caFile: {}", ca.display()))).await;
    let reply = trusted
        .post_json("/v2/models/mnist/infer", &infer_body(&images[..2]))
        .await;
    assert_eq!(reply.json()["parameters"]["idn_decision"], "forwarded");
    assert!(probs(&reply).iter().all(|&p| (p - 0.1).abs() < 1e-6));
    trusted.stop().await;

    // Without the CA, the system roots do not trust the certificate: the local answer stands.
    let untrusted = TestAgent::start(edge(String::new())).await;
    let reply = untrusted
        .post_json("/v2/models/mnist/infer", &infer_body(&images[..2]))
        .await;
    assert_eq!(reply.json()["parameters"]["idn_decision"], "fallback");
    let metrics = String::from_utf8(untrusted.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_upstream_errors_total{upstream=\"cloud\",kind=\"unreachable\"} 1"),
        "{metrics}"
    );
    untrusted.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
