//! OIP v2 over gRPC: an agent's models and services answer as over REST, bad calls get the
//! right status code and a message naming the field, and links between agents speak gRPC with
//! the same fallback, deadline and token semantics as REST links.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use idn_node_agent::wire::grpc::proto;
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::model_infer_request::InferInputTensor;
use proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

/// `config` also serving gRPC on an ephemeral port.
fn with_grpc(
    mut config: idn_contract::config::NodeAgentConfig,
) -> idn_contract::config::NodeAgentConfig {
    config.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    config
}

/// A client without tonic's channel, whose own timer would end a call at its `grpc-timeout`
/// before the server's answer arrives: what the server answers is seen.
fn untimed_client(
    agent: &TestAgent,
) -> GrpcInferenceServiceClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin = format!("http://{}", agent.grpc_addr.unwrap())
        .parse()
        .unwrap();
    GrpcInferenceServiceClient::with_origin(http, origin)
}

async fn client(agent: &TestAgent) -> Client {
    let addr = agent.grpc_addr.expect("the agent serves gRPC");
    Client::connect(format!("http://{addr}")).await.unwrap()
}

fn grpc_url(agent: &TestAgent) -> String {
    format!("http://{}", agent.grpc_addr.unwrap())
}

fn input(images: &[Vec<f32>]) -> InferInputTensor {
    InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![images.len() as i64, PIXELS as i64],
        ..Default::default()
    }
}

/// A request with the images as raw little-endian bytes, as tritonclient sends them.
fn raw_request(model: &str, images: &[Vec<f32>]) -> ModelInferRequest {
    let bytes: Vec<u8> = images
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![input(images)],
        raw_input_contents: vec![bytes.into()],
        ..Default::default()
    }
}

/// The same with typed contents.
fn typed_request(model: &str, images: &[Vec<f32>]) -> ModelInferRequest {
    let mut tensor = input(images);
    tensor.contents = Some(InferTensorContents {
        fp32_contents: images.iter().flatten().copied().collect(),
        ..Default::default()
    });
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![tensor],
        ..Default::default()
    }
}

/// The first output's FP32 data, from whichever encoding the response used.
fn output(response: &ModelInferResponse) -> Vec<f32> {
    match response.raw_output_contents.first() {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        None => response.outputs[0]
            .contents
            .as_ref()
            .unwrap()
            .fp32_contents
            .clone(),
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5)
}

/// A response parameter as JSON (provenance arrays arrive as JSON text).
fn parameter(response: &ModelInferResponse, key: &str) -> Value {
    use proto::infer_parameter::ParameterChoice;
    match response
        .parameters
        .get(key)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(ParameterChoice::StringParam(s)) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        Some(ParameterChoice::BoolParam(b)) => b.into(),
        Some(ParameterChoice::Int64Param(n)) => n.into(),
        Some(ParameterChoice::Uint64Param(n)) => n.into(),
        Some(ParameterChoice::DoubleParam(x)) => x.into(),
        None => Value::Null,
    }
}

#[tokio::test]
async fn models_answer_over_grpc_as_over_rest() {
    let agent = TestAgent::start(with_grpc(example_config())).await;
    let mut grpc = client(&agent).await;
    let live = grpc.server_live(proto::ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    let ready = grpc
        .server_ready(proto::ServerReadyRequest {})
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    let server = grpc
        .server_metadata(proto::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.name, "idn-node-agent");
    let metadata = grpc
        .model_metadata(proto::ModelMetadataRequest {
            name: "mnist-mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.platform, "onnxruntime_onnx");
    assert_eq!(metadata.inputs[0].name, "input");
    assert_eq!(metadata.inputs[0].datatype, "FP32");
    assert_eq!(metadata.inputs[0].shape, [-1, PIXELS as i64]);
    let model_ready = grpc
        .model_ready(proto::ModelReadyRequest {
            name: "mnist-cnn".into(),
            version: "1".into(),
        })
        .await
        .unwrap();
    assert!(model_ready.into_inner().ready);

    let (images, _) = sample();
    let batch = &images[..8];
    for model in ["mnist-linear", "mnist-mlp", "mnist-cnn"] {
        let reference = &reference(model)[..8 * CLASSES];
        let mut raw = raw_request(model, batch);
        raw.id = "req-7".into();
        let answer = grpc.model_infer(raw).await.unwrap().into_inner();
        assert_eq!(answer.id, "req-7", "the request id is echoed");
        assert_eq!(
            (answer.model_name.as_str(), answer.model_version.as_str()),
            (model, "1")
        );
        assert_eq!(answer.outputs[0].name, "probs");
        assert_eq!(answer.outputs[0].shape, [8, CLASSES as i64]);
        assert_eq!(answer.raw_output_contents.len(), 1, "raw in, raw out");
        assert!(close(&output(&answer), reference), "{model}");

        let typed = grpc
            .model_infer(typed_request(model, batch))
            .await
            .unwrap()
            .into_inner();
        assert!(typed.raw_output_contents.is_empty(), "typed in, typed out");
        assert!(close(&output(&typed), reference), "{model}");
    }
    let rest = agent
        .post_json("/v2/models/mnist-mlp/infer", &infer_body(batch))
        .await;
    let grpc_answer = grpc
        .model_infer(raw_request("mnist-mlp", batch))
        .await
        .unwrap();
    assert_eq!(
        probs(&rest),
        output(grpc_answer.get_ref()),
        "the same numbers as REST"
    );

    let metrics = String::from_utf8(agent.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_requests_total{model=\"mnist-mlp\",status=\"200\"} 4"),
        "gRPC and REST requests count alike:\n{metrics}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn bad_calls_get_the_right_code_and_a_message_naming_the_field() {
    let mut config = with_grpc(example_config());
    config.limits.max_body_bytes = 64 * 1024;
    let agent = TestAgent::start(config).await;
    let mut grpc = client(&agent).await;
    let (images, _) = sample();
    let one = &images[..1];

    let mut short = raw_request("mnist-mlp", one);
    short.raw_input_contents[0] = short.raw_input_contents[0].slice(..400);
    let mut odd = raw_request("mnist-mlp", one);
    odd.raw_input_contents[0] = odd.raw_input_contents[0].slice(..403);
    let mut fp16 = raw_request("mnist-mlp", one);
    fp16.inputs[0].datatype = "FP16".into();
    let mut both = typed_request("mnist-mlp", one);
    both.raw_input_contents = raw_request("mnist-mlp", one).raw_input_contents;
    let mut none = raw_request("mnist-mlp", one);
    none.raw_input_contents.clear();
    let mut wrong_field = typed_request("mnist-mlp", one);
    wrong_field.inputs[0].contents = Some(InferTensorContents {
        int_contents: vec![0; PIXELS],
        ..Default::default()
    });
    let mut extra_raw = raw_request("mnist-mlp", one);
    extra_raw
        .raw_input_contents
        .push(extra_raw.raw_input_contents[0].clone());
    let mut negative = raw_request("mnist-mlp", one);
    negative.inputs[0].shape = vec![-1, PIXELS as i64];
    let mut wrong_name = raw_request("mnist-mlp", one);
    wrong_name.inputs[0].name = "pixels".into();
    let mut unknown_version = raw_request("mnist-mlp", one);
    unknown_version.model_version = "9".into();
    let too_large = raw_request("mnist-mlp", &images[..64]);
    let cases = [
        (
            short,
            Code::InvalidArgument,
            "inputs[0] (\"input\"): shape [1, 784] needs 784 elements, data has 100",
        ),
        (
            odd,
            Code::InvalidArgument,
            "raw_input_contents[0] has 403 bytes, not a multiple of the FP32 element size 4",
        ),
        (
            fp16,
            Code::InvalidArgument,
            "datatype \"FP16\" is not supported",
        ),
        (
            both,
            Code::InvalidArgument,
            "has both contents and raw_input_contents[0]; use one encoding",
        ),
        (
            none,
            Code::InvalidArgument,
            "has no data: give contents or raw_input_contents",
        ),
        (
            wrong_field,
            Code::InvalidArgument,
            "datatype FP32 takes its data in contents.fp32_contents, not contents.int_contents",
        ),
        (
            extra_raw,
            Code::InvalidArgument,
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (negative, Code::InvalidArgument, "has a negative dimension"),
        (wrong_name, Code::InvalidArgument, "pixels"),
        (raw_request("mnist-xl", one), Code::NotFound, "mnist-xl"),
        (unknown_version, Code::NotFound, "version"),
        (too_large, Code::OutOfRange, "message length too large"),
    ];
    for (request, code, message) in cases {
        let status = grpc.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(message),
            "{message:?} not in {status:?}"
        );
    }
    let unknown = grpc
        .model_ready(proto::ModelReadyRequest {
            name: "mnist-xl".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let answer = grpc.model_infer(raw_request("mnist-mlp", one)).await;
    assert!(answer.is_ok(), "the connection still serves after refusals");
    let metrics = String::from_utf8(agent.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_requests_total{model=\"mnist-mlp\",status=\"400\"}"),
        "refusals are counted by the HTTP status of their kind:\n{metrics}"
    );
    agent.stop().await;
}

/// cloud ← edge ← access, each link over gRPC; every agent also serves REST.
async fn grpc_cascade() -> (TestAgent, TestAgent, TestAgent) {
    let service = |model: &str, upstream: &str| {
        format!(
            "services:\n  - name: mnist\n    strategy: {{threshold: {{local: {{model: {model}}}, forward: {{upstream: {upstream}}}, tau: 0.9}}}}"
        )
    };
    let cloud = TestAgent::start(with_grpc(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        "services: [{name: mnist, strategy: {local: {model: mnist-cnn}}}]",
    )))
    .await;
    let edge = TestAgent::start(with_grpc(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: '{}', protocol: grpc}}]\n{}",
            grpc_url(&cloud),
            service("mnist-mlp", "cloud")
        ),
    )))
    .await;
    let access = TestAgent::start(with_grpc(with_yaml(
        tier_config("access", "mnist-linear"),
        &format!(
            "upstreams: [{{name: edge, url: '{}', protocol: grpc}}]\n{}",
            grpc_url(&edge),
            service("mnist-linear", "edge")
        ),
    )))
    .await;
    (access, edge, cloud)
}

#[tokio::test]
async fn a_cascade_over_grpc_links_answers_like_rest_with_per_item_provenance() {
    let (access, edge, cloud) = grpc_cascade().await;
    let (images, _) = sample();
    let batch = &images[..64];
    let mut grpc = client(&access).await;
    let answer = grpc
        .model_infer(raw_request("mnist", batch))
        .await
        .unwrap()
        .into_inner();
    let rest = access
        .post_json("/v2/models/mnist/infer", &infer_body(batch))
        .await;
    assert_eq!(rest.status, StatusCode::OK);
    let rest_body = rest.json();
    assert!(
        close(&output(&answer), &probs(&rest)),
        "gRPC and REST give the same answer"
    );
    for key in [
        "idn_node",
        "idn_decision",
        "idn_path",
        "idn_hops",
        "idn_degraded",
    ] {
        assert_eq!(
            parameter(&answer, key),
            rest_body["parameters"][key],
            "{key}"
        );
    }
    let nodes = parameter(&answer, "idn_node");
    let nodes: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for node in ["access", "edge", "cloud"] {
        assert!(
            nodes.contains(&node),
            "64 images reach every tier: {nodes:?}"
        );
    }
    assert_eq!(parameter(&answer, "idn_degraded"), false);
    for agent in [access, edge, cloud] {
        agent.stop().await;
    }
}

/// An edge whose threshold forwards every item to `url` over gRPC.
async fn edge_forwarding_over_grpc(url: &str, extra: &str) -> TestAgent {
    TestAgent::start(with_grpc(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: '{url}', protocol: grpc, timeoutMs: 300}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}
{extra}"
        ),
    )))
    .await
}

/// A TCP server that accepts connections and never answers: a hung upstream.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

#[tokio::test]
async fn failing_grpc_upstreams_give_a_degraded_local_answer() {
    let (images, _) = sample();
    let batch = &images[..5];
    let local = &reference("mnist-mlp")[..5 * CLASSES];
    let down = format!("http://{}", closed_port().await);
    // An HTTP/1 server answering garbage, where an HTTP/2 gRPC server should be.
    let garbage = format!("http://{}", FakeUpstream::start(Fake::Garbage).await.addr);
    let hang = format!("http://{}", silent_server().await);
    for (url, kind) in [
        (down, "unreachable"),
        (garbage, "unreachable"),
        (hang, "timeout"),
    ] {
        let edge = edge_forwarding_over_grpc(&url, "").await;
        let mut grpc = client(&edge).await;
        let answer = grpc
            .model_infer(raw_request("mnist", batch))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(parameter(&answer, "idn_decision"), "fallback", "{kind}");
        assert_eq!(parameter(&answer, "idn_degraded"), true, "{kind}");
        assert!(close(&output(&answer), local), "{kind}");
        let metrics = String::from_utf8(edge.get("/metrics").await.body.to_vec()).unwrap();
        let line = format!("idn_upstream_errors_total{{upstream=\"cloud\",kind=\"{kind}\"}} 1");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
        edge.stop().await;
    }
}

#[tokio::test]
async fn grpc_status_codes_cross_links_and_deadlines_are_honoured() {
    let (images, _) = sample();
    let one = &images[..1];
    // The upstream refuses: its NOT_FOUND reaches the client as the link's failure.
    let cloud = TestAgent::start(with_grpc(tier_config("cloud", "mnist-cnn"))).await;
    let edge = edge_forwarding_over_grpc(&grpc_url(&cloud), "    onUpstreamFailure: fail").await;
    let status = client(&edge)
        .await
        .model_infer(raw_request("mnist", one))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("upstream \"cloud\" answered gRPC NotFound"),
        "{status:?}"
    );
    edge.stop().await;
    cloud.stop().await;

    // The caller's grpc-timeout is the request's deadline, cut short before the link's own.
    let hang = format!("http://{}", silent_server().await);
    let edge = TestAgent::start(with_grpc(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: '{hang}', protocol: grpc, timeoutMs: 60000}}]
services:
  - name: mnist
    deadlineMs: 60000
    onUpstreamFailure: fail
    strategy: {{forward: {{to: {{upstream: cloud}}}}}}"
        ),
    )))
    .await;
    let mut request = tonic::Request::new(raw_request("mnist", one));
    request.set_timeout(Duration::from_millis(200));
    let status = untimed_client(&edge)
        .model_infer(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    edge.stop().await;

    // ... and passed on to the next hop as the remaining budget.
    let recorder = FakeUpstream::start(Fake::Uniform).await;
    let edge = TestAgent::start(with_grpc(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: 'http://{}'}}]
services:
  - name: mnist
    strategy: {{forward: {{to: {{upstream: cloud}}}}}}",
            recorder.addr
        ),
    )))
    .await;
    let mut request = tonic::Request::new(raw_request("mnist", one));
    request.set_timeout(Duration::from_millis(700));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-42".parse().unwrap());
    client(&edge).await.model_infer(request).await.unwrap();
    let seen = recorder.headers.lock().unwrap()[0].clone();
    let budget: u64 = seen["idn-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!(budget <= 700, "{budget}");
    assert_eq!(seen["x-request-id"], "grpc-42");
    assert_eq!(seen["idn-path"], "edge");
    edge.stop().await;
}

#[tokio::test]
async fn a_configured_bearer_token_is_required_over_grpc_and_sent_on_grpc_links() {
    let dir = std::env::temp_dir().join(format!("idn-grpc-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let cloud = TestAgent::start(with_grpc(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        &format!(
            "auth: {{tokenFile: {}}}\nservices: [{{name: mnist, strategy: {{local: {{model: mnist-cnn}}}}}}]",
            token.display()
        ),
    )))
    .await;
    let (images, _) = sample();
    let mut grpc = client(&cloud).await;
    let call = |auth: Option<&str>| {
        let mut request = tonic::Request::new(raw_request("mnist", &images[..1]));
        if let Some(auth) = auth {
            request
                .metadata_mut()
                .insert("authorization", auth.parse().unwrap());
        }
        request
    };
    for auth in [None, Some("Bearer wrong")] {
        let status = grpc.model_infer(call(auth)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{auth:?}");
    }
    assert!(grpc.model_infer(call(Some("Bearer s3cret"))).await.is_ok());
    assert!(
        grpc.server_ready(proto::ServerReadyRequest {})
            .await
            .is_ok(),
        "health stays open"
    );
    let edge = edge_forwarding_over_grpc(&grpc_url(&cloud), "    onUpstreamFailure: fail").await;
    let status = client(&edge)
        .await
        .model_infer(raw_request("mnist", &images[..1]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("answered gRPC Unauthenticated"),
        "{status:?}"
    );
    assert!(status.message().contains("Bearer token"), "{status:?}");
    edge.stop().await;
    let mut config = with_grpc(with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: '{}', protocol: grpc, tokenFile: {}}}]
services:
  - name: mnist
    onUpstreamFailure: fail
    strategy: {{forward: {{to: {{upstream: cloud}}}}}}",
            grpc_url(&cloud),
            token.display()
        ),
    ));
    config.node = "edge-with-token".into();
    let edge = TestAgent::start(config).await;
    let answer = client(&edge)
        .await
        .model_infer(raw_request("mnist", &images[..1]))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    edge.stop().await;
    cloud.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn https_grpc_upstreams_are_verified_against_the_configured_ca() {
    let cloud = TestAgent::start(with_grpc(with_yaml(
        tier_config("cloud", "mnist-cnn"),
        "services: [{name: mnist, strategy: {local: {model: mnist-cnn}}}]",
    )))
    .await;
    let (proxy, ca_pem) = tls_proxy(cloud.grpc_addr.unwrap()).await;
    let dir = std::env::temp_dir().join(format!("idn-grpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let (images, _) = sample();
    let edge = |ca_line: String| {
        with_grpc(with_yaml(
            tier_config("edge", "mnist-mlp"),
            &format!(
                "upstreams: [{{name: cloud, url: 'https://{proxy}', protocol: grpc{ca_line}}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}"
            ),
        ))
    };
    let trusted = TestAgent::start(edge(format!(", caFile: {}", ca.display()))).await;
    let answer = client(&trusted)
        .await
        .model_infer(raw_request("mnist", &images[..2]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parameter(&answer, "idn_decision"), "forwarded");
    assert_eq!(parameter(&answer, "idn_node"), "cloud");
    assert!(close(
        &output(&answer),
        &reference("mnist-cnn")[..2 * CLASSES]
    ));
    trusted.stop().await;

    // Without the CA, the system roots do not trust the certificate: the local answer stands.
    let untrusted = TestAgent::start(edge(String::new())).await;
    let answer = client(&untrusted)
        .await
        .model_infer(raw_request("mnist", &images[..2]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parameter(&answer, "idn_decision"), "fallback");
    let metrics = String::from_utf8(untrusted.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("idn_upstream_errors_total{upstream=\"cloud\",kind=\"unreachable\"} 1"),
        "{metrics}"
    );
    untrusted.stop().await;
    cloud.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unusable_ca_file_stops_the_agent_at_start_for_either_link() {
    let dir = std::env::temp_dir().join(format!("idn-bad-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.join("missing.pem");
    for protocol in ["rest", "grpc"] {
        for (file, message) in [
            (&empty, "no certificate in the file"),
            (&missing, "No such file"),
        ] {
            let config = with_yaml(
                tier_config("edge", "mnist-mlp"),
                &format!(
                    "upstreams: [{{name: cloud, url: 'https://127.0.0.1:1', protocol: {protocol}, caFile: {}}}]",
                    file.display()
                ),
            );
            let error = idn_node_agent::node::Node::start(config)
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("cannot use CA file"), "{protocol}: {error}");
            assert!(error.contains(message), "{protocol}: {error}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
