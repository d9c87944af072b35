//! The wire under clients that misbehave and failures that repeat: connections that send
//! nothing, half a handshake or part of a message are closed by the configured limits, running
//! out of descriptors or hitting a failure on every request does not flood the log, and an
//! idle connection does not keep the agent from stopping. The limits are set short here; what
//! is asserted is that the agent lets go, within a bound far above them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idn_contract::config::NodeAgentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Far above every limit configured here: reaching it means the agent held on.
const LET_GO: Duration = Duration::from_secs(20);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const MAX_STREAMS: u32 = 7;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// One model, gRPC beside REST, and one-second connection limits and pings.
fn short_limits() -> NodeAgentConfig {
    let mut config = tier_config("edge", "mnist-mlp");
    config.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    let limits = &mut config.limits;
    limits.header_read_timeout_seconds = 1;
    limits.idle_timeout_seconds = 1;
    limits.read_timeout_seconds = 1;
    limits.max_concurrent_streams = MAX_STREAMS;
    limits.keepalive_interval_seconds = 1;
    limits.keepalive_timeout_seconds = 1;
    config
}

/// Reads until the agent closes the connection, returning what it sent; panics if it holds on.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    timeout(LET_GO, async {
        let mut buf = [0u8; 4096];
        // A reset is a close as well.
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the connection is still open after {LET_GO:?}"));
    received
}

/// The HTTP/2 frames in `bytes`, as (type, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let end = (9 + length).min(bytes.len());
        frames.push((bytes[3], bytes[9..end].to_vec()));
        bytes = &bytes[end..];
    }
    frames
}

/// The value of SETTINGS_MAX_CONCURRENT_STREAMS in the first SETTINGS frame.
fn max_concurrent_streams(received: &[u8]) -> Option<u32> {
    let (_, settings) = frames(received)
        .into_iter()
        .find(|(kind, _)| *kind == 0x4)?;
    settings
        .chunks_exact(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes(s[2..].try_into().unwrap()))
}

#[tokio::test]
async fn grpc_connections_that_never_send_a_request_are_closed() {
    let agent = TestAgent::start(short_limits()).await;
    let addr = agent.grpc_addr.unwrap();
    for (what, sent) in [
        ("nothing", &b""[..]),
        ("half the preface", &PREFACE[..10]),
        ("the preface without SETTINGS", PREFACE),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let received = read_until_closed(&mut stream, what).await;
        if sent == PREFACE {
            assert_eq!(
                max_concurrent_streams(&received),
                Some(MAX_STREAMS),
                "the server's SETTINGS announce the configured cap on streams"
            );
        }
    }
    // The agent still serves.
    assert_eq!(agent.get("/v2/health/live").await.status, 200);
    agent.stop().await;
}

/// An HTTP/2 frame: its 9-byte header and `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = length[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A HEADERS block of literal fields (HPACK, not indexed, not Huffman-coded).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        // A literal field without indexing, with a new name.
        block.push(0);
        for text in [name, value] {
            block.push(u8::try_from(text.len()).unwrap());
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

#[tokio::test]
async fn a_grpc_peer_that_stops_answering_pings_is_closed_with_a_call_open() {
    let mut config = short_limits();
    // Neither the idle nor the read timeout may close it first: the call stays open.
    config.limits.idle_timeout_seconds = 600;
    config.limits.read_timeout_seconds = 600;
    let agent = TestAgent::start(config).await;
    let mut stream = TcpStream::connect(agent.grpc_addr.unwrap()).await.unwrap();
    let headers = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/inference.GRPCInferenceService/ModelInfer"),
        (":authority", "agent"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    let mut opening = PREFACE.to_vec();
    opening.extend(frame(0x4, 0, 0, &[]));
    // HEADERS with END_HEADERS and without END_STREAM: a call whose message is still to come.
    opening.extend(frame(0x1, 0x4, 1, &headers));
    stream.write_all(&opening).await.unwrap();
    // Reading without ever answering a ping.
    let received = read_until_closed(&mut stream, "a call open, pings unanswered").await;
    assert!(
        frames(&received).iter().any(|(kind, _)| *kind == 0x6),
        "the agent pinged"
    );
    agent.stop().await;
}

/// An HTTP/2 connection to `addr`, and a task that ends when the agent closes it.
async fn http2(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<BoxBody>,
    tokio::task::JoinHandle<()>,
) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    (
        sender,
        tokio::spawn(async move {
            let _ = connection.await;
        }),
    )
}

/// A call of gRPC method `method` with `body` (length-prefixed messages).
fn grpc_call(method: &str, body: BoxBody) -> http::Request<BoxBody> {
    http::Request::post(format!(
        "http://agent/inference.GRPCInferenceService/{method}"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap()
}

#[tokio::test]
async fn a_grpc_message_announced_but_not_sent_is_refused_and_idle_connections_close() {
    let agent = TestAgent::start(short_limits()).await;
    let (mut sender, connection) = http2(agent.grpc_addr.unwrap()).await;
    // A message announced as 1 MB, of which 95 bytes arrive; the stream stays open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let mut message = vec![0u8];
    message.extend_from_slice(&(1u32 << 20).to_be_bytes());
    message.extend_from_slice(&[0u8; 95]);
    tx.send(Ok(Frame::data(Bytes::from(message))))
        .await
        .unwrap();
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let response = timeout(LET_GO, sender.send_request(grpc_call("ModelInfer", body)))
        .await
        .expect("the agent answers a partial message")
        .unwrap();
    let headers = response.headers().clone();
    let trailers = timeout(LET_GO, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let status = trailers.get("grpc-status").or(headers.get("grpc-status"));
    assert_eq!(
        status.map(|s| s.to_str().unwrap()),
        Some("4"),
        "DEADLINE_EXCEEDED: {headers:?} {trailers:?}"
    );
    drop(tx);
    // With no call in flight, the connection is closed.
    timeout(LET_GO, connection)
        .await
        .expect("the idle connection is closed")
        .unwrap();
    agent.stop().await;
}

/// A stream of the frames `rx` receives.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A loopback port free at the time of asking.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether /v2/health/live at `addr` answers 200 (on a connection of its own).
async fn live(addr: SocketAddr) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n")
            .await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply.starts_with(b"HTTP/1.1 200"))
    };
    matches!(timeout(Duration::from_secs(2), probe).await, Ok(Ok(true)))
}

/// Waits until /v2/health/live at `addr` answers; panics after [`LET_GO`].
async fn until_live(addr: SocketAddr, what: &str) {
    let answered = timeout(LET_GO, async {
        while !live(addr).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(answered.is_ok(), "{what}: /v2/health/live does not answer");
}

/// The agent binary serving a config, with its output in a log file; killed when dropped.
struct Process {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Process {
    /// Starts the agent on `config` (whose listen addresses must be fixed ports), with at most
    /// `descriptors` open files, and waits until it is live.
    async fn start(config: &NodeAgentConfig, descriptors: u32, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("idn-wire-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("agent.yaml");
        std::fs::write(&config_path, serde_norway::to_string(config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = std::process::Command::new("prlimit")
            .arg(format!("--nofile={descriptors}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_idn-node-agent"))
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prlimit (util-linux) runs the agent");
        let process = Process { child, dir };
        until_live(config.listen, "at start").await;
        process
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap()
    }

    fn log_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("agent.log")).unwrap().len()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn out_of_descriptors_the_agent_backs_off_and_answers_again() {
    let mut config = short_limits();
    config.listen = free_port();
    let grpc = free_port();
    config.grpc_listen = Some(grpc);
    // Accepted connections stay open while the test holds them.
    config.limits.header_read_timeout_seconds = 60;
    config.limits.idle_timeout_seconds = 60;
    let agent = Process::start(&config, 64, "descriptors").await;

    // More connections than the agent has descriptors, fewer than its listen queue holds.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(grpc).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logged = agent.log_bytes();
    drop(held);
    until_live(config.listen, "after the connections closed").await;
    let log = agent.log();
    assert!(
        log.contains("accept failed"),
        "the agent ran out of descriptors: {log}"
    );
    assert!(
        logged < 64 * 1024,
        "out of descriptors for 3 s, the agent logged {logged} bytes"
    );
}

#[tokio::test]
async fn failures_that_repeat_per_request_are_counted_and_logged_once() {
    let mut config = edge_forwarding_all(closed_port().await, 300);
    let mut absent = config.models[0].clone();
    absent.name = "absent".into();
    absent.path = repo_root().join("absent.onnx");
    config.models.push(absent);
    config.listen = free_port();
    let agent = Process::start(&config, 1024, "failures").await;
    let (images, _) = sample();
    let body = Bytes::from(infer_body(&images[..1]).to_string());
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        for (path, status) in [
            ("/v2/models/absent/infer", 503),
            ("/v2/models/mnist/infer", 200),
        ] {
            let reply = send(config.listen, http::Method::POST, path, &[], body.clone()).await;
            assert_eq!(reply.status, status, "{path}");
        }
    }
    let metrics = send(
        config.listen,
        http::Method::GET,
        "/metrics",
        &[],
        Bytes::new(),
    )
    .await;
    let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
    for line in [
        format!("idn_requests_total{{model=\"absent\",status=\"503\"}} {REQUESTS}"),
        format!("idn_upstream_errors_total{{upstream=\"cloud\",kind=\"unreachable\"}} {REQUESTS}"),
    ] {
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    let log = agent.log();
    for line in ["inference failed", "upstream failed"] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} in\n{log}");
    }
}

#[tokio::test]
async fn stopping_closes_idle_connections_at_once() {
    let mut config = short_limits();
    // Far beyond the bound: only the shutdown can close these connections in time.
    config.limits.header_read_timeout_seconds = 600;
    config.limits.idle_timeout_seconds = 600;
    config.limits.drain_timeout_seconds = 600;
    let agent = TestAgent::start(config).await;
    let grpc = agent.grpc_addr.unwrap();
    // REST: a connection that sent nothing, and one kept alive after a request.
    let silent = TcpStream::connect(agent.addr).await.unwrap();
    let mut kept_alive = TcpStream::connect(agent.addr).await.unwrap();
    kept_alive
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: agent\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    kept_alive.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    // gRPC: a connection that sent half the preface, and one that made a call.
    let mut half = TcpStream::connect(grpc).await.unwrap();
    half.write_all(&PREFACE[..10]).await.unwrap();
    let (mut sender, called) = http2(grpc).await;
    let empty_message = Full::new(Bytes::from_static(&[0; 5]))
        .map_err(|never| match never {})
        .boxed();
    let live = sender
        .send_request(grpc_call("ServerLive", empty_message))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    timeout(LET_GO, agent.stop())
        .await
        .expect("stopping does not wait for idle connections");
    timeout(LET_GO, called)
        .await
        .expect("the gRPC client is sent away")
        .unwrap();
    for (mut stream, what) in [
        (silent, "REST, silent"),
        (kept_alive, "REST, kept alive"),
        (half, "gRPC, half a preface"),
    ] {
        read_until_closed(&mut stream, what).await;
    }
}
