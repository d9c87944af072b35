//! Learning while serving, on real models over real HTTP: an adapting threshold learns from
//! its upstream's verdicts and from labels; learned state is exported, seeded and survives a
//! restart; ensembles learn member weights; forwarded items land in the hard-example store.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use idn_contract::config::NodeAgentConfig;
use serde_json::{Value, json};

async fn cloud() -> TestAgent {
    TestAgent::start(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        "services: [{name: mnist, strategy: {local: {model: mnist-cnn}}}]",
    ))
    .await
}

/// The access tier (logistic regression) with a threshold towards `cloud`, adapting by
/// `adapt`, plus `extra` service settings.
fn access_config(cloud: &TestAgent, adapt: &str, extra: &str) -> NodeAgentConfig {
    with_yaml(
        tier_config("access", "mnist-linear"),
        &format!(
            "upstreams: [{{name: cloud, url: 'http://{}', binaryData: true}}]
services:
  - name: mnist
    {extra}
    strategy:
      threshold: {{local: {{model: mnist-linear}}, forward: {{upstream: cloud}}, tau: 0.0, adapt: {adapt}}}",
            cloud.addr
        ),
    )
}

/// Sends the sample's images `range` one request each, with ids `r<i>`; returns the answers.
async fn replay(agent: &TestAgent, range: std::ops::Range<usize>) -> Vec<usize> {
    let (images, _) = sample();
    let mut answers = Vec::new();
    for i in range {
        let mut body = infer_body(&images[i..=i]);
        body["id"] = json!(format!("r{i}"));
        let reply = agent.post_json("/v2/models/mnist/infer", &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error());
        answers.push(argmax(&probs(&reply)));
    }
    answers
}

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} not in {metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn request(agent: &TestAgent, method: Method, path: &str, body: &Value) -> Reply {
    let headers = [("content-type", "application/json".to_owned())];
    send(
        agent.addr,
        method,
        path,
        &headers,
        Bytes::from(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn an_adapting_threshold_learns_from_its_upstreams_verdicts() {
    let cloud = cloud().await;
    // Starting at τ = 0 (everything local), with a wrong answer worth 20 forwards.
    let access = TestAgent::start(access_config(
        &cloud,
        "{method: hedge, alpha: 1, forwardCost: 0.05, seed: 1}",
        "",
    ))
    .await;
    let answers = replay(&access, 0..600).await;
    let metrics = access.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    let labels = "{node=\"access\",service=\"mnist\"";
    let tau = metric(&metrics, &format!("idn_learned_tau{labels}}}"));
    assert!(tau > 0.5, "learned τ {tau}");
    let verdicts = metric(
        &metrics,
        &format!("idn_learning_verdicts_total{labels},source=\"upstream\"}}"),
    );
    assert!(verdicts > 50.0, "{verdicts}");
    assert!(metric(&metrics, &format!("idn_explored_total{labels}}}")) > 0.0);
    assert!(metric(&metrics, &format!("idn_learned_forward_cost{labels}}}")) == 0.05);

    // Having learned, the cascade answers better than the access model alone.
    let (_, truth) = sample();
    let linear = reference("mnist-linear");
    let late = 300..600;
    let right = |answer: &dyn Fn(usize) -> usize| {
        late.clone()
            .filter(|&i| answer(i) == usize::from(truth[i]))
            .count()
    };
    let cascade = right(&|i| answers[i]);
    let alone = right(&|i| argmax(&linear[i * CLASSES..(i + 1) * CLASSES]));
    assert!(
        cascade > alone + 10,
        "cascade {cascade}, access alone {alone}"
    );
}

#[tokio::test]
async fn labels_posted_by_request_id_teach_and_bad_feedback_is_refused() {
    let cloud = cloud().await;
    let access = TestAgent::start(access_config(
        &cloud,
        "{method: lcb, feedback: labels, exploration: 0, seed: 1}",
        "",
    ))
    .await;
    // τ = 0 and no evidence yet: served locally, waiting for its label.
    replay(&access, 0..1).await;
    let feedback = "/v2/models/mnist/feedback";
    let (_, truth) = sample();
    let label = json!({"id": "r0", "labels": [truth[0]]});

    let wrong_count = request(
        &access,
        Method::POST,
        feedback,
        &json!({"id": "r0", "labels": [1, 2]}),
    )
    .await;
    assert_eq!(wrong_count.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_count
            .error()
            .contains("2 labels for an answer of 1 items"),
        "{}",
        wrong_count.error()
    );
    let out_of_range = request(
        &access,
        Method::POST,
        feedback,
        &json!({"id": "r0", "labels": [10]}),
    )
    .await;
    assert!(
        out_of_range.error().contains("label 10 is not a class"),
        "{}",
        out_of_range.error()
    );
    let malformed = request(
        &access,
        Method::POST,
        feedback,
        &json!({"id": "r0", "label": 3}),
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(
        malformed.error().contains("expected {\"id\""),
        "{}",
        malformed.error()
    );

    let accepted = request(&access, Method::POST, feedback, &label).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.error());
    assert_eq!(accepted.json(), json!({"accepted": 1}));
    let again = request(&access, Method::POST, feedback, &label).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.error().contains("\"r0\""), "{}", again.error());

    let model = request(
        &access,
        Method::POST,
        "/v2/models/mnist-linear/feedback",
        &label,
    )
    .await;
    assert_eq!(model.status, StatusCode::NOT_FOUND);
    let unknown = request(&access, Method::POST, "/v2/models/other/feedback", &label).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let static_cloud = request(&cloud, Method::POST, feedback, &label).await;
    assert_eq!(static_cloud.status, StatusCode::BAD_REQUEST);
    assert!(
        static_cloud.error().contains("does not learn from labels"),
        "{}",
        static_cloud.error()
    );

    let metrics = access.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(
            "idn_learning_verdicts_total{node=\"access\",service=\"mnist\",source=\"label\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn learned_state_is_exported_seeded_and_survives_a_restart() {
    let cloud = cloud().await;
    let dir = std::env::temp_dir().join(format!("idn-learning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("learned.json");
    let adapt = "{method: hedge, forwardCost: 0.05, seed: 2}";
    let mut config = access_config(&cloud, adapt, "");
    config.learned_state_file = Some(file.clone());
    let first = TestAgent::start(config.clone()).await;
    replay(&first, 0..100).await;
    let learned = first.get("/v2/models/mnist/learned").await;
    assert_eq!(learned.status, StatusCode::OK);
    let state = learned.json();
    assert!(
        state["threshold"]["policy"]["hedge"]["weights"]
            .as_array()
            .unwrap()
            .len()
            == 101
    );
    first.stop().await;

    // A restart with a changed config (another deadline) resumes from the file.
    config.services[0].deadline_ms = 2000;
    let second = TestAgent::start(config).await;
    assert_eq!(second.get("/v2/models/mnist/learned").await.json(), state);

    // Another replica is seeded over HTTP; a state that does not fit is refused.
    let fresh = TestAgent::start(access_config(&cloud, adapt, "")).await;
    let seeded = request(&fresh, Method::PUT, "/v2/models/mnist/learned", &state).await;
    assert_eq!(seeded.status, StatusCode::OK, "{}", seeded.error());
    assert_eq!(fresh.get("/v2/models/mnist/learned").await.json(), state);
    let lcb = TestAgent::start(access_config(&cloud, "{method: lcb}", "")).await;
    let refused = request(&lcb, Method::PUT, "/v2/models/mnist/learned", &state).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.error().contains("learns by lcb"),
        "{}",
        refused.error()
    );
    let garbage = request(
        &lcb,
        Method::PUT,
        "/v2/models/mnist/learned",
        &json!({"x": 1}),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let not_learning = cloud.get("/v2/models/mnist/learned").await;
    assert_eq!(not_learning.status, StatusCode::NOT_FOUND);

    std::fs::write(&file, "not json").unwrap();
    let mut broken = access_config(&cloud, adapt, "");
    broken.learned_state_file = Some(file);
    let err = idn_node_agent::node::Node::start(broken).err().unwrap();
    assert!(err.to_string().contains("is not valid"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn ensembles_learn_member_weights_from_labels() {
    let mut config = example_config();
    config.node = "edge".into();
    let edge = TestAgent::start(with_yaml(
        config,
        "services:
  - name: mnist
    strategy:
      ensemble:
        members: [{model: mnist-linear}, {model: mnist-cnn}]
        combine: weightedMean
        mode: parallel
        learn: {learningRate: 0.2}",
    ))
    .await;
    let (_, truth) = sample();
    for (i, label) in truth.iter().enumerate().take(300) {
        replay(&edge, i..i + 1).await;
        let label = json!({"id": format!("r{i}"), "labels": [label]});
        let reply = request(&edge, Method::POST, "/v2/models/mnist/feedback", &label).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.error());
    }
    let state = edge.get("/v2/models/mnist/learned").await.json();
    let weights: Vec<f64> = state["ensemble"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert!(weights[1] > 5.0 * weights[0], "{state}");
    let metrics = edge.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    let cnn = metric(
        &metrics,
        "idn_ensemble_weight{node=\"edge\",service=\"mnist\",member=\"mnist-cnn\"}",
    );
    assert!((cnn - weights[1]).abs() < 1e-9);
}

#[tokio::test]
async fn forwarded_items_are_kept_with_the_upstreams_answer() {
    let cloud = cloud().await;
    let mut config = access_config(&cloud, "null", "hardExamples: {capacity: 5}");
    let strategy = &mut config.services[0].strategy;
    if let idn_contract::config::StrategyConfig::Threshold(t) = strategy {
        t.tau = 1.0; // forward everything
    }
    let access = TestAgent::start(config).await;
    replay(&access, 0..8).await;
    let path = "/v2/models/mnist/hard-examples";
    let kept = access.get(path).await.json();
    let examples = kept["examples"].as_array().unwrap();
    assert_eq!((examples.len(), kept["offered"].as_u64()), (5, Some(8)));
    let cnn = reference("mnist-cnn");
    for (example, i) in examples.iter().zip(3..8) {
        assert_eq!(example["id"], format!("r{i}"));
        assert_eq!(example["answer"]["node"], "cloud");
        let class = argmax(&cnn[i * CLASSES..(i + 1) * CLASSES]);
        assert_eq!(example["answer"]["class"], class);
        assert_eq!(example["inputs"][0]["shape"], json!([1, PIXELS]));
        assert!(example["local"]["confidence"].as_f64().unwrap() < 1.0);
    }
    let drained = request(&access, Method::DELETE, path, &json!(null))
        .await
        .json();
    assert_eq!(drained["examples"].as_array().unwrap().len(), 5);
    assert_eq!(access.get(path).await.json()["examples"], json!([]));
    let none = cloud.get(path).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(
        none.error().contains("keeps no hard examples"),
        "{}",
        none.error()
    );
}
