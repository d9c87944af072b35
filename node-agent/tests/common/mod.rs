//! Test helpers: the example config, the MNIST sample, an agent on an ephemeral port and a
//! minimal HTTP client.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use idn_contract::config::NodeAgentConfig;
use idn_node_agent::node::Node;
use idn_node_agent::server;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SAMPLES: usize = 1000;
pub const PIXELS: usize = 784;
pub const CLASSES: usize = 10;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example config (three models), listening on an ephemeral loopback port.
pub fn example_config() -> NodeAgentConfig {
    let mut config =
        NodeAgentConfig::load(&repo_root().join("examples/node-agent/mnist.yaml")).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// The 1000-image MNIST sample: images as pixel/255 rows, and labels.
pub fn sample() -> (Vec<Vec<f32>>, Vec<u8>) {
    let data = repo_root().join("examples/data");
    let pixels = std::fs::read(data.join("mnist-test-1000.images.u8")).unwrap();
    let labels = std::fs::read(data.join("mnist-test-1000.labels.u8")).unwrap();
    let images = pixels
        .chunks_exact(PIXELS)
        .map(|row| row.iter().map(|&p| f32::from(p) / 255.0).collect())
        .collect();
    (images, labels)
}

/// Probabilities Python onnxruntime gave for the sample (rows of 10).
pub fn reference(model: &str) -> Vec<f32> {
    let path = repo_root().join(format!("examples/data/reference/{model}.probs.f32"));
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// An agent serving on 127.0.0.1 with an ephemeral port, in this process.
pub struct TestAgent {
    pub addr: SocketAddr,
    /// Where it serves gRPC, when its config has `grpcListen`.
    pub grpc_addr: Option<SocketAddr>,
    pub node: Arc<Node>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestAgent {
    pub async fn start(config: NodeAgentConfig) -> Self {
        let listeners = server::bind(&config).await.unwrap();
        let addr = listeners.rest_addr();
        let grpc_addr = listeners.grpc_addr();
        let node = Node::start(config).unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::serve(Arc::clone(&node), listeners, async {
            let _ = rx.await;
        }));
        TestAgent {
            addr,
            grpc_addr,
            node,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap();
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.addr, Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_accepting(&self, path: &str, accept: &str) -> Reply {
        let accept = ("accept", accept.to_owned());
        send(self.addr, Method::GET, path, &[accept], Bytes::new()).await
    }

    /// Posts a JSON header followed by binary tensor data, as the binary extension frames it.
    pub async fn post_binary(&self, path: &str, header: &serde_json::Value, tail: &[u8]) -> Reply {
        let header = header.to_string();
        let length = header.len().to_string();
        let mut body = header.into_bytes();
        body.extend_from_slice(tail);
        send(
            self.addr,
            Method::POST,
            path,
            &[("inference-header-content-length", length)],
            Bytes::from(body),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        send(
            self.addr,
            Method::POST,
            path,
            &[("content-type", "application/json".into())],
            Bytes::from(body.to_string()),
        )
        .await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of an OIP error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

/// Sends one request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(stream, addr, method, path, headers, body)
        .await
        .unwrap()
}

/// Sends one request over https on a fresh connection, trusting only the CA of `ca_pem`.
pub async fn send_tls(
    addr: SocketAddr,
    ca_pem: &str,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap();
    exchange(stream, addr, method, path, headers, body)
        .await
        .unwrap()
}

/// One request and its response over `stream`; the error when the exchange fails.
pub async fn exchange(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<Reply, hyper::Error> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = sender
        .send_request(request.body(Full::new(body)).unwrap())
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// An OIP JSON request for a batch of images.
pub fn infer_body(images: &[Vec<f32>]) -> serde_json::Value {
    let data: Vec<f32> = images.iter().flatten().copied().collect();
    serde_json::json!({
        "inputs": [{ "name": "input", "shape": [images.len(), PIXELS], "datatype": "FP32", "data": data }]
    })
}

/// The `probs` output of a JSON response, flat.
pub fn probs(reply: &Reply) -> Vec<f32> {
    let json = reply.json();
    let output = &json["outputs"][0];
    assert_eq!(output["name"], "probs");
    output["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// A per-item parameter of a response: the array, or the single value repeated.
pub fn per_item(body: &Value, key: &str, n: usize) -> Vec<Value> {
    match &body["parameters"][key] {
        Value::Array(items)
            if items.len() == n && (key != "idn_path" || items.iter().all(Value::is_array)) =>
        {
            items.clone()
        }
        single => vec![single.clone(); n],
    }
}

/// The example config reduced to one model, as one tier of an IDN.
pub fn tier_config(node: &str, model: &str) -> NodeAgentConfig {
    let mut config = example_config();
    config.node = node.to_owned();
    config.models.retain(|m| m.name == model);
    config
}

/// An agent serving `model` as node `node`, with the services and upstreams of `yaml`.
pub async fn start_tier(node: &str, model: &str, yaml: &str) -> TestAgent {
    TestAgent::start(with_yaml(tier_config(node, model), yaml)).await
}

/// An edge (mnist-mlp) whose service `mnist` forwards every item to the REST upstream at `addr`.
pub fn edge_forwarding_all(addr: impl std::fmt::Display, timeout_ms: u64) -> NodeAgentConfig {
    with_yaml(
        tier_config("edge", "mnist-mlp"),
        &format!(
            "upstreams: [{{name: cloud, url: 'http://{addr}', timeoutMs: {timeout_ms}}}]
services:
  - name: mnist
    strategy: {{threshold: {{local: {{model: mnist-mlp}}, forward: {{upstream: cloud}}, tau: 1.0}}}}"
        ),
    )
}

/// Parses a YAML fragment of config (services, upstreams) into `config`.
pub fn with_yaml(mut config: NodeAgentConfig, yaml: &str) -> NodeAgentConfig {
    let extra: NodeAgentConfig = NodeAgentConfig::from_yaml(&format!(
        "apiVersion: idn.dev/v1alpha1\nkind: NodeAgentConfig\nnode: x\n{yaml}"
    ))
    .unwrap();
    config.upstreams.extend(extra.upstreams);
    config.services.extend(extra.services);
    config.auth = extra.auth.or(config.auth);
    let problems = config.validate();
    assert!(problems.is_empty(), "{problems:?}");
    config
}

/// How a fake upstream answers.
#[derive(Clone, Copy)]
pub enum Fake {
    /// 200 with a body that is not an OIP response.
    Garbage,
    /// Never answers.
    Hang,
    /// A valid OIP response with uniform probabilities over 10 classes, no provenance.
    Uniform,
}

/// A plain HTTP server standing in for an upstream; records the headers it receives.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub headers: Arc<std::sync::Mutex<Vec<HeaderMap>>>,
}

impl FakeUpstream {
    pub async fn start(behaviour: Fake) -> Self {
        Self::serve(behaviour, None).await
    }

    /// The same over TLS, with a certificate for 127.0.0.1 signed by a fresh CA; returns the
    /// CA's PEM too.
    pub async fn start_tls(behaviour: Fake) -> (Self, String) {
        let (acceptor, ca) = tls_acceptor(&[]);
        (Self::serve(behaviour, Some(acceptor)).await, ca)
    }

    async fn serve(behaviour: Fake, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let headers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&headers);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = Arc::clone(&seen);
                let service = hyper::service::service_fn(
                    move |request: Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            seen.lock().unwrap().push(request.headers().clone());
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let items = serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["inputs"][0]["shape"][0].as_u64())
                                .unwrap_or(1) as usize;
                            let text = match behaviour {
                            Fake::Garbage => "<html>busy</html>".to_owned(),
                            Fake::Hang => {
                                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                                unreachable!()
                            }
                            Fake::Uniform => serde_json::json!({
                                "model_name": "plain",
                                "outputs": [{"name": "probs", "datatype": "FP32", "shape": [items, CLASSES], "data": vec![0.1; items * CLASSES]}]
                            })
                            .to_string(),
                        };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(text),
                            )))
                        }
                    },
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            // A client that refuses the certificate ends the handshake.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        FakeUpstream { addr, headers }
    }
}

/// A certificate for 127.0.0.1 signed by a fresh CA.
pub struct TestCert {
    pub ca_pem: String,
    pub cert: rustls::pki_types::CertificateDer<'static>,
    pub cert_pem: String,
    key: rcgen::KeyPair,
}

impl TestCert {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        TestCert {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key,
        }
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir`, as a mounted Secret holds them.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), self.key_pem()).unwrap();
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).unwrap();
    }
}

/// A TLS acceptor with a certificate for 127.0.0.1 signed by a fresh CA, offering `alpn`;
/// and the CA's PEM.
fn tls_acceptor(alpn: &[&[u8]]) -> (tokio_rustls::TlsAcceptor, String) {
    let cert = TestCert::new();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.cert.clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key.serialize_der().into()),
    )
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.ca_pem,
    )
}

/// Terminates TLS (HTTP/2 by ALPN) in front of `target`, as an ingress or a mesh would in
/// front of an agent's gRPC port; returns its address and the CA's PEM.
pub async fn tls_proxy(target: SocketAddr) -> (SocketAddr, String) {
    let (acceptor, ca) = tls_acceptor(&[b"h2"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut agent = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut agent).await;
            });
        }
    });
    (addr, ca)
}

/// A loopback address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
