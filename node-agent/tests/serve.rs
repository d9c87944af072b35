//! The agent on a real socket: every OIP endpoint, real models, the 1000-image sample, and
//! every bad input the issue names.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use serde_json::json;

const INFER: &str = "/v2/models/mnist-mlp/infer";

#[tokio::test]
async fn health_and_metadata_endpoints() {
    let agent = TestAgent::start(example_config()).await;
    assert_eq!(agent.get("/v2/health/live").await.status, StatusCode::OK);
    assert_eq!(agent.get("/v2/health/ready").await.status, StatusCode::OK);

    let server = agent.get("/v2").await.json();
    assert_eq!(server["name"], "idn-node-agent");
    assert_eq!(server["extensions"], json!(["binary_tensor_data"]));

    for path in ["/v2/models/mnist-cnn", "/v2/models/mnist-cnn/versions/1"] {
        let meta = agent.get(path).await;
        assert_eq!(meta.status, StatusCode::OK);
        let meta = meta.json();
        assert_eq!(meta["name"], "mnist-cnn");
        assert_eq!(meta["versions"], json!(["1"]));
        assert_eq!(meta["platform"], "onnxruntime_onnx");
        assert_eq!(
            meta["inputs"],
            json!([{"name": "input", "datatype": "FP32", "shape": [-1, 784]}])
        );
        assert_eq!(
            meta["outputs"],
            json!([{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}])
        );
        assert_eq!(meta["parameters"]["labels"][9], "9");
        assert_eq!(
            meta["parameters"]["sha256"],
            "af1626189ab8d487d0549afa5da47936e5963e055c8c35c4c60cad0cd98929a6"
        );
    }
    for path in [
        "/v2/models/mnist-mlp/ready",
        "/v2/models/mnist-mlp/versions/1/ready",
    ] {
        assert_eq!(agent.get(path).await.status, StatusCode::OK);
    }
    agent.stop().await;
}

#[tokio::test]
async fn unknown_models_and_versions_are_404() {
    let agent = TestAgent::start(example_config()).await;
    let cases = [
        (
            Method::GET,
            "/v2/models/resnet",
            "model \"resnet\" is not served by node \"demo\"",
        ),
        (
            Method::GET,
            "/v2/models/mnist-mlp/versions/2",
            "has no version \"2\"",
        ),
        (Method::GET, "/v2/models/resnet/ready", "is not served"),
        (Method::POST, "/v2/models/resnet/infer", "is not served"),
        (
            Method::POST,
            "/v2/models/mnist-mlp/versions/7/infer",
            "has no version \"7\"",
        ),
        (Method::GET, "/v1/models", "no route"),
    ];
    for (method, path, expected) in cases {
        let reply = send(agent.addr, method, path, &[], Bytes::from_static(b"{}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            reply.error().contains(expected),
            "{path}: {}",
            reply.error()
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn outputs_match_python_onnxruntime_on_the_sample() {
    let agent = TestAgent::start(example_config()).await;
    let (images, labels) = sample();
    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("examples/models/metrics.json")).unwrap(),
    )
    .unwrap();
    for model in ["mnist-linear", "mnist-mlp", "mnist-cnn"] {
        let expected = reference(model);
        let mut correct = 0;
        for (i, image) in images.iter().enumerate() {
            let reply = agent
                .post_json(
                    &format!("/v2/models/{model}/infer"),
                    &infer_body(std::slice::from_ref(image)),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK);
            let got = probs(&reply);
            let want = &expected[i * CLASSES..(i + 1) * CLASSES];
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-5,
                    "{model} image {i}: {got:?} != {want:?}"
                );
            }
            correct += usize::from(argmax(&got) == usize::from(labels[i]));
        }
        let accuracy = correct as f64 / SAMPLES as f64;
        let published = metrics[format!("{model}.onnx")]["accuracy_sample_1000"]
            .as_f64()
            .unwrap();
        assert_eq!(
            accuracy, published,
            "{model} accuracy differs from examples/models"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn batches_ids_nested_data_and_requested_outputs() {
    let agent = TestAgent::start(example_config()).await;
    let (images, _) = sample();
    let batch = &images[..8];
    let reply = agent.post_json(INFER, &infer_body(batch)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let batched = probs(&reply);
    assert_eq!(reply.json()["outputs"][0]["shape"], json!([8, 10]));
    let reference = reference("mnist-mlp");
    for (g, w) in batched.iter().zip(&reference[..8 * CLASSES]) {
        assert!((g - w).abs() <= 1e-5);
    }

    let nested = json!({
        "id": "req-42",
        "parameters": {"tag": "x"},
        "inputs": [{"name": "input", "shape": [2, 784], "datatype": "FP32", "data": [batch[0], batch[1]]}],
        "outputs": [{"name": "probs"}]
    });
    let reply = agent.post_json(INFER, &nested).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["id"], "req-42");
    assert_eq!(body["model_name"], "mnist-mlp");
    assert_eq!(body["model_version"], "1");
    assert_eq!(probs(&reply), batched[..2 * CLASSES]);
    agent.stop().await;
}

#[tokio::test]
async fn binary_tensor_data_in_and_out() {
    let agent = TestAgent::start(example_config()).await;
    let (images, _) = sample();
    let header = json!({
        "inputs": [{"name": "input", "shape": [2, 784], "datatype": "FP32", "parameters": {"binary_data_size": 2 * 784 * 4}}],
        "outputs": [{"name": "probs", "parameters": {"binary_data": true}}]
    });
    let tail: Vec<u8> = images[..2]
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let reply = agent.post_binary(INFER, &header, &tail).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json_len: usize = reply.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&reply.body[..json_len]).unwrap();
    assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], 80);
    let got: Vec<f32> = reply.body[json_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want = &reference("mnist-mlp")[..20];
    assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1e-5));
    agent.stop().await;
}

#[tokio::test]
async fn bad_requests_get_400_with_the_reason() {
    let agent = TestAgent::start(example_config()).await;
    let input = |shape: serde_json::Value, datatype: &str, data: serde_json::Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let zeros = |n: usize| json!(vec![0.0; n]);
    let cases = [
        (
            input(json!([1, 783]), "FP32", zeros(783)),
            "shape [1, 783] does not match the model's [-1, 784]",
        ),
        (
            input(json!([784]), "FP32", zeros(784)),
            "does not match the model's",
        ),
        (
            input(json!([1, 784]), "FP64", zeros(784)),
            "datatype FP64 does not match the model's FP32",
        ),
        (
            input(json!([1, 784]), "FP32", zeros(700)),
            "needs 784 elements, data has 700",
        ),
        (
            input(json!([1, 784]), "FP16", zeros(784)),
            "datatype \"FP16\" is not supported",
        ),
        (
            json!({"inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32", "data": zeros(784)}]}),
            "has no input \"image\"",
        ),
        (json!({"inputs": []}), "at least one input"),
        (json!({"outputs": []}), "missing field `inputs`"),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": zeros(784)}], "outputs": [{"name": "logits"}]}),
            "has no output \"logits\"",
        ),
        (
            input(json!([2000, 784]), "FP32", zeros(2000 * 784)),
            "batch size 2000 exceeds the limit 1024",
        ),
    ];
    for (body, expected) in cases {
        let reply = agent.post_json(INFER, &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{expected}");
        assert!(
            reply.error().contains(expected),
            "{expected}: {}",
            reply.error()
        );
    }

    let raw_cases: [(&[u8], Option<&str>, &str); 4] = [
        (b"{\"inputs\": [", None, "malformed inference request"),
        (b"not json", None, "malformed inference request"),
        (
            b"{\"inputs\":[]}",
            Some("banana"),
            "Inference-Header-Content-Length: \"banana\"",
        ),
        (b"{\"inputs\":[]}", Some("999"), "exceeds the body size"),
    ];
    for (body, header_length, expected) in raw_cases {
        let headers: Vec<(&str, String)> = header_length
            .map(|h| vec![("inference-header-content-length", h.to_owned())])
            .unwrap_or_default();
        let reply = send(
            agent.addr,
            Method::POST,
            INFER,
            &headers,
            Bytes::from_static(body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{expected}");
        assert!(
            reply.error().contains(expected),
            "{expected}: {}",
            reply.error()
        );
    }
    let wrong_method = agent.get(INFER).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    agent.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let mut config = example_config();
    config.limits.max_body_bytes = 4096;
    let agent = TestAgent::start(config).await;
    let (images, _) = sample();
    let reply = agent.post_json(INFER, &infer_body(&images[..1])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.error().contains("exceeds the limit of 4096 bytes"),
        "{}",
        reply.error()
    );
    // The agent stays usable for requests under the limit.
    let small = json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "parameters": {"binary_data_size": 3136}}]});
    let reply = agent.post_binary(INFER, &small, &[0; 3136]).await;
    assert_eq!(reply.status, StatusCode::OK);
    agent.stop().await;
}

#[tokio::test]
async fn a_broken_model_is_not_ready_while_the_others_serve() {
    let dir = std::env::temp_dir().join(format!("idn-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not an onnx graph").unwrap();
    let mut config = example_config();
    let template = config.models[1].clone();
    let mut missing = template.clone();
    missing.name = "missing".into();
    missing.path = dir.join("absent.onnx");
    let mut tampered = template.clone();
    tampered.name = "tampered".into();
    tampered.sha256 = Some("0".repeat(64));
    let mut broken = template.clone();
    broken.name = "corrupt".into();
    broken.path = corrupt;
    broken.sha256 = None;
    config.models.extend([missing, tampered, broken]);
    let agent = TestAgent::start(config).await;

    let cases = [
        ("missing", "cannot read"),
        ("tampered", "the config expects 0000"),
        ("corrupt", "cannot load"),
    ];
    for (model, reason) in cases {
        let ready = agent.get(&format!("/v2/models/{model}/ready")).await;
        assert_eq!(ready.status, StatusCode::BAD_REQUEST, "{model}");
        let meta = agent.get(&format!("/v2/models/{model}")).await.json();
        assert_eq!(meta["state"], "UNAVAILABLE");
        assert!(
            meta["reason"].as_str().unwrap().contains(reason),
            "{model}: {}",
            meta["reason"]
        );
        let (images, _) = sample();
        let reply = agent
            .post_json(
                &format!("/v2/models/{model}/infer"),
                &infer_body(&images[..1]),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.error().contains("is not ready"), "{}", reply.error());
    }
    assert_eq!(agent.get("/v2/health/ready").await.status, StatusCode::OK);
    let (images, _) = sample();
    assert_eq!(
        agent
            .post_json(INFER, &infer_body(&images[..1]))
            .await
            .status,
        StatusCode::OK
    );
    let metrics = String::from_utf8(agent.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_model_ready{model=\"tampered\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("idn_model_ready{model=\"mnist-mlp\"} 1"));
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn metrics_count_requests_by_model_and_status() {
    let agent = TestAgent::start(example_config()).await;
    let (images, _) = sample();
    for _ in 0..3 {
        assert_eq!(
            agent
                .post_json(INFER, &infer_body(&images[..1]))
                .await
                .status,
            StatusCode::OK
        );
    }
    agent.post_json(INFER, &json!({"inputs": []})).await;
    agent.post_json("/v2/models/nope/infer", &json!({})).await;
    // Prometheus asks for OpenMetrics; curl and promtool get the classic text format.
    let classic = agent.get("/metrics").await;
    assert_eq!(
        classic.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let classic = String::from_utf8(classic.body.to_vec()).unwrap();
    assert!(
        classic.contains("# TYPE idn_requests_total counter\n"),
        "{classic}"
    );
    let reply = agent
        .get_accepting("/metrics", "application/openmetrics-text;version=1.0.0")
        .await;
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for line in [
        "idn_requests_total{model=\"mnist-mlp\",status=\"200\"} 3",
        "idn_requests_total{model=\"mnist-mlp\",status=\"400\"} 1",
        "idn_requests_total{model=\"_unknown\",status=\"404\"} 1",
        "idn_request_duration_seconds_count{model=\"mnist-mlp\"} 4",
        "idn_inference_duration_seconds_count{model=\"mnist-mlp\"} 3",
        "idn_requests_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let agent = TestAgent::start(example_config()).await;
    let (images, _) = sample();
    // A large CNN batch keeps a worker busy while shutdown begins.
    let batch: Vec<Vec<f32>> = images.iter().cycle().take(1024).cloned().collect();
    let body = infer_body(&batch).to_string();
    let addr = agent.addr;
    let in_flight = tokio::spawn(async move {
        send(
            addr,
            Method::POST,
            "/v2/models/mnist-cnn/infer",
            &[],
            Bytes::from(body),
        )
        .await
    });
    while agent.node.metrics().in_flight() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    agent.stop().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outputs"][0]["shape"], json!([1024, 10]));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn shutdown_serves_through_the_drain_delay_not_ready_and_closing_each_connection() {
    let mut config = example_config();
    config.limits.drain_delay_seconds = 2;
    let agent = TestAgent::start(config).await;
    let addr = agent.addr;
    let ready = agent.get("/v2/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(ready.headers.get("connection").is_none());
    let stopping = tokio::spawn(agent.stop());
    let not_ready = loop {
        let reply = send(addr, Method::GET, "/v2/health/ready", &[], Bytes::new()).await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    // Draining: still answering, but not ready, and every connection closed after its answer.
    assert_eq!(not_ready.json()["ready"], false);
    let (images, _) = sample();
    let body = infer_body(&images[..2]).to_string();
    let reply = send(
        addr,
        Method::POST,
        "/v2/models/mnist-mlp/infer",
        &[],
        Bytes::from(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["connection"], "close");
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open after the delay"
    );
}

#[tokio::test]
async fn a_full_inference_queue_refuses_at_once_with_503() {
    use idn_node_agent::model::{InferencePool, Model};
    use idn_node_agent::wire::tensor::{Tensor, TensorData};

    let models: Vec<Model> = example_config()
        .models
        .into_iter()
        .map(Model::load)
        .collect();
    let cnn = models.iter().position(|m| m.name() == "mnist-cnn").unwrap();
    // One worker and room for one waiting job: a large CNN batch keeps the worker busy while
    // the other requests arrive.
    let pool = InferencePool::start(&models, 1, 1);
    let batch = Tensor {
        name: "input".into(),
        shape: vec![1024, PIXELS],
        data: TensorData::Fp32(vec![0.0; 1024 * PIXELS]),
    };
    let calls = (0..4).map(|_| pool.infer(cnn, vec![batch.clone()], vec!["probs".into()], None));
    let results = futures_util::future::join_all(calls).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    // At most one job runs and one waits (fewer when the worker had not yet taken the first).
    assert!(
        refused.len() >= 2 && refused.len() < results.len(),
        "{} refused",
        refused.len()
    );
    for error in refused {
        assert_eq!(
            idn_node_agent::server::http_status(error),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(
            error.to_string().contains("the inference queue is full"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_services_metadata_lists_the_inputs_of_the_model_it_asks_first() {
    let agent = TestAgent::start(with_yaml(
        tier_config("edge", "mnist-mlp"),
        "upstreams: [{name: cloud, url: 'http://127.0.0.1:9'}]
services:
  - {name: cascade, strategy: {threshold: {local: {model: mnist-mlp}, forward: {upstream: cloud}, tau: 0.9}}}
  - {name: relay, strategy: {forward: {to: {upstream: cloud}}}}",
    ))
    .await;
    let cascade = agent.get("/v2/models/cascade").await.json();
    assert_eq!(cascade["platform"], "idn_service");
    assert_eq!(
        cascade["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 784]}])
    );
    let relay = agent.get("/v2/models/relay").await.json();
    assert_eq!(
        relay["inputs"],
        json!([]),
        "a forward names no model of this node"
    );
    agent.stop().await;
}
