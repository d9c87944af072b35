//! TLS on the agent's ports: REST and gRPC served with the configured certificate, a plain
//! call to a TLS port refused with a word, a certificate that cannot be used stopping the
//! start, and a cascade between agents over https where the upstream requires a token.

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use idn_contract::config::TlsConfig;
use idn_node_agent::node::Node;
use idn_node_agent::wire::grpc::proto;
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tls_files(dir: &std::path::Path) -> TlsConfig {
    TlsConfig {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
    }
}

/// `node` serving `model` on REST and gRPC over TLS, with the services of `yaml`.
async fn tls_tier(node: &str, model: &str, tls: TlsConfig, yaml: &str) -> TestAgent {
    let mut config = with_yaml(tier_config(node, model), yaml);
    config.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    config.tls = Some(tls);
    TestAgent::start(config).await
}

#[tokio::test]
async fn rest_and_grpc_are_served_over_tls() {
    let dir = scratch("tls-serve");
    let cert = TestCert::new();
    cert.write(&dir);
    let agent = tls_tier("cloud", "mnist-cnn", tls_files(&dir), "").await;
    let (images, _) = sample();
    let https = |method, path: &'static str, body: Bytes| {
        send_tls(agent.addr, &cert.ca_pem, method, path, &[], body)
    };

    let ready = https(Method::GET, "/v2/health/ready", Bytes::new()).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "the probe's path answers over https"
    );
    let body = Bytes::from(infer_body(&images[..3]).to_string());
    let reply = https(Method::POST, "/v2/models/mnist-cnn/infer", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    let expected = reference("mnist-cnn");
    assert!(
        probs(&reply)
            .iter()
            .zip(&expected[..3 * CLASSES])
            .all(|(a, b)| (a - b).abs() <= 1e-5)
    );

    // Plain HTTP to the TLS port: told so, and the port keeps serving https.
    let plain = agent.get("/v2/health/ready").await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(
        plain.error().contains("this port serves HTTPS"),
        "{plain:?}"
    );
    let ready = https(Method::GET, "/v2/health/live", Bytes::new()).await;
    assert_eq!(ready.status, StatusCode::OK);

    // gRPC over TLS (HTTP/2 by ALPN), verified against the same CA.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert.ca_pem));
    let channel = Endpoint::from_shared(format!("https://{}", agent.grpc_addr.unwrap()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let ready = client
        .server_ready(proto::ServerReadyRequest {})
        .await
        .unwrap();
    assert!(ready.into_inner().ready);

    // A client that does not trust the CA gets no answer.
    let untrusted =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(TestCert::new().ca_pem));
    let refused = Endpoint::from_shared(format!("https://{}", agent.grpc_addr.unwrap()))
        .unwrap()
        .tls_config(untrusted)
        .unwrap()
        .connect()
        .await;
    assert!(refused.is_err());
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_start() {
    let dir = scratch("tls-bad");
    let cert = TestCert::new();
    cert.write(&dir);
    // A key that is not the certificate's.
    std::fs::write(dir.join("other.key"), TestCert::new().key_pem()).unwrap();
    let cases = [
        ("nothing.crt", "tls.key", "nothing.crt", "No such file"),
        (
            "tls.crt",
            "other.key",
            "other.key",
            "the key is not that of the certificate",
        ),
        // A key where the certificate should be.
        (
            "tls.key",
            "tls.key",
            "tls.key",
            "no certificate in the file",
        ),
    ];
    for (cert_file, key_file, blamed, reason) in cases {
        let mut config = tier_config("cloud", "mnist-cnn");
        config.tls = Some(TlsConfig {
            cert_file: dir.join(cert_file),
            key_file: dir.join(key_file),
        });
        let error = Node::start(config)
            .err()
            .expect("the start fails")
            .to_string();
        let prefix = format!("cannot serve TLS with {}: ", dir.join(blamed).display());
        assert!(
            error.starts_with(&prefix) && error.contains(reason),
            "{cert_file}, {key_file}: {error}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_cascade_over_https_sends_the_token_the_upstream_requires() {
    let dir = scratch("tls-cascade");
    let cert = TestCert::new();
    cert.write(&dir);
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    std::fs::write(dir.join("wrong"), "guess\n").unwrap();
    let cloud = tls_tier(
        "cloud",
        "mnist-cnn",
        tls_files(&dir),
        &format!(
            "auth: {{tokenFile: {}}}\nservices: [{{name: mnist, strategy: {{local: {{model: mnist-cnn}}}}}}]",
            dir.join("token").display()
        ),
    )
    .await;
    let (images, _) = sample();
    let batch = &images[..4];
    for (protocol, addr) in [("rest", cloud.addr), ("grpc", cloud.grpc_addr.unwrap())] {
        let edge = |token: &str| {
            with_yaml(
                tier_config("edge", "mnist-mlp"),
                &format!(
                    "upstreams: [{{name: cloud, url: 'https://{addr}', protocol: {protocol}, caFile: {ca}, tokenFile: {token}}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}",
                    ca = dir.join("ca.crt").display(),
                    token = dir.join(token).display(),
                ),
            )
        };
        let trusted = TestAgent::start(edge("token")).await;
        let reply = trusted
            .post_json("/v2/models/mnist/infer", &infer_body(batch))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{protocol}");
        let body = reply.json();
        assert_eq!(
            body["parameters"]["idn_decision"], "forwarded",
            "{protocol}"
        );
        assert_eq!(body["parameters"]["idn_node"], "cloud", "{protocol}");
        let expected = reference("mnist-cnn");
        assert!(
            probs(&reply)
                .iter()
                .zip(&expected[..4 * CLASSES])
                .all(|(a, b)| (a - b).abs() <= 1e-5),
            "{protocol}: the answers are the cloud model's"
        );
        trusted.stop().await;

        // A wrong token: the refusal is counted as such, and the local answer stands.
        let refused = TestAgent::start(edge("wrong")).await;
        let reply = refused
            .post_json("/v2/models/mnist/infer", &infer_body(batch))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{protocol}");
        let body = reply.json();
        assert_eq!(body["parameters"]["idn_decision"], "fallback", "{protocol}");
        assert_eq!(body["parameters"]["idn_node"], "edge", "{protocol}");
        let metrics = String::from_utf8(refused.get("/metrics").await.body.to_vec()).unwrap();
        let line = "idn_upstream_errors_total{upstream=\"cloud\",kind=\"unauthorized\"} 1";
        assert!(
            metrics.contains(line),
            "{protocol}: {line} not in\n{metrics}"
        );
        refused.stop().await;
    }
    cloud.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
