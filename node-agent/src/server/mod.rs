//! The OIP v2 servers. REST: one routing function (`route`), handlers returning
//! `Result<_, RequestError>`, and one place ([`http_status`]) that turns an error kind into its
//! HTTP status, beside the OIP error body. gRPC ([`grpc`]) on its own port, answered by the
//! same inference code, with its own one place for status codes ([`grpc_code`]).

mod connection;
mod grpc;
mod infer;
mod learning;
mod metadata;
mod response;
mod route;
pub(crate) mod tls;

pub use grpc::grpc_code;
pub use response::http_status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use idn_contract::config::NodeAgentConfig;
use idn_telemetry::exposition;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::ratelog::RateLimited;
use connection::{Activity, Timeouts, Tracked};
use response::{Body, error_response, json_response};
use route::Route;
use tls::Stream;

/// Serves one request: routes it and turns errors into OIP error responses.
async fn handle(node: Arc<Node>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let result = match route::route(request.method(), &path) {
        Ok(Route::Live) => Ok(json_response(StatusCode::OK, json!({ "live": true }))),
        Ok(Route::Ready) => Ok(metadata::server_ready(&node)),
        Ok(Route::ServerMetadata) => Ok(metadata::server_metadata(&node)),
        Ok(Route::Metrics) => {
            node.report_learning();
            let accept = request.headers().get(http::header::ACCEPT);
            let (content_type, body) = exposition::negotiate(
                node.metrics().encode(),
                accept.and_then(|a| a.to_str().ok()),
            );
            Ok(Response::builder()
                .header(CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("static headers are valid"))
        }
        Ok(Route::ModelMetadata(name, version)) => metadata::model_metadata(&node, name, version),
        Ok(Route::ModelReady(name, version)) => metadata::model_ready(&node, name, version),
        Ok(Route::Infer(name, version)) => {
            let name = name.to_owned();
            let version = version.map(str::to_owned);
            return infer::infer(&node, &name, version.as_deref(), request).await;
        }
        Ok(Route::Feedback(name)) => {
            let name = name.to_owned();
            learning::feedback(&node, &name, request).await
        }
        Ok(Route::Learned(name)) => {
            let name = name.to_owned();
            learning::learned(&node, &name, request).await
        }
        Ok(Route::HardExamples(name)) => learning::hard_examples(&node, name, &request),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// The sockets a node serves on: REST always, gRPC when the config has `grpcListen`.
pub struct Listeners {
    rest: TcpListener,
    grpc: Option<TcpListener>,
}

impl Listeners {
    /// Listeners bound by the caller (one that chose its ports before planning the nodes).
    pub fn new(rest: TcpListener, grpc: Option<TcpListener>) -> Self {
        Listeners { rest, grpc }
    }

    /// The address REST is served on.
    pub fn rest_addr(&self) -> SocketAddr {
        local_addr(&self.rest)
    }

    /// The address gRPC is served on, when it is.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(local_addr)
    }
}

/// Binds the configured listen addresses.
pub async fn bind(config: &NodeAgentConfig) -> Result<Listeners> {
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.to_string(),
                source,
            })
    };
    Ok(Listeners {
        rest: listen(config.listen).await?,
        grpc: match config.grpc_listen {
            Some(addr) => Some(listen(addr).await?),
            None => None,
        },
    })
}

/// Serves REST, and gRPC when bound (each over TLS when the node has a certificate), until
/// `shutdown` resolves; then goes on serving for the drain delay (not ready, every HTTP/1.1
/// answer with `Connection: close`, so that clients move to other replicas without a request
/// meeting a closed listener or a closing connection), then stops accepting and lets
/// in-flight requests finish (up to the drain timeout). Learned state is saved while serving
/// and once more after the drain.
pub async fn serve(node: Arc<Node>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let shutdown = {
        let node = Arc::clone(&node);
        let delay = Duration::from_secs(node.config().limits.drain_delay_seconds);
        async move {
            shutdown.await;
            node.start_draining();
            if !delay.is_zero() {
                tracing::info!(
                    delay_seconds = delay.as_secs(),
                    "draining: not ready, closing connections as they answer"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
    .shared();
    let saver = node
        .keeps_learned_state()
        .then(|| tokio::spawn(keep_saving(Arc::clone(&node))));
    let rest = serve_rest(Arc::clone(&node), listeners.rest, shutdown.clone());
    match listeners.grpc {
        Some(listener) => {
            tokio::join!(rest, grpc::serve(Arc::clone(&node), listener, shutdown));
        }
        None => rest.await,
    }
    if let Some(saver) = saver {
        saver.abort();
        node.save_learned();
    }
}

/// How often learned state is written while serving.
const SAVE_INTERVAL: Duration = Duration::from_secs(10);

async fn keep_saving(node: Arc<Node>) {
    let mut interval = tokio::time::interval(SAVE_INTERVAL);
    interval.tick().await;
    loop {
        interval.tick().await;
        let node = Arc::clone(&node);
        // Writing a file blocks; keep it off the request threads.
        let _ = tokio::task::spawn_blocking(move || node.save_learned()).await;
    }
}

async fn serve_rest(node: Arc<Node>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let limits = &node.config().limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_seconds));
    let drain = Duration::from_secs(limits.drain_timeout_seconds);
    let timeouts = Timeouts::new(limits);
    let tls = node.tls().map(|config| tls::acceptor(config, b"http/1.1"));
    accept(
        listener,
        tls,
        shutdown,
        drain,
        timeouts,
        move |io, activity| {
            let node = Arc::clone(&node);
            let service = service_fn(move |request| {
                let node = Arc::clone(&node);
                let in_flight = activity.start();
                async move {
                    let draining = node.is_draining();
                    let mut response = handle(node, request).await;
                    if draining {
                        response.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response.map(|b| Tracked::new(b, in_flight)))
                }
            });
            builder.serve_connection(io, service)
        },
    )
    .await;
}

/// The pause after a failed accept, doubled on each further failure up to the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` (completing each one's TLS handshake, with `tls`),
/// serving each with `serve` (which counts its requests in the connection's [`Activity`])
/// under `timeouts`, until `shutdown` resolves; then stops accepting and lets open
/// connections finish, up to `drain`.
async fn accept<C>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    timeouts: Timeouts,
    serve: impl Fn(TokioIo<Stream>, Arc<Activity>) -> C + Send + Sync + 'static,
) where
    C: GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display,
{
    let serve = Arc::new(serve);
    // Each connection holds a receiver: the sender tells them to close, and sees them gone.
    let (closing, watcher) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let failures = RateLimited::default();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, the next accept fails at once as well: retrying
                    // without a pause spins a core and starves the connections being served.
                    if let Some(left_out) = failures.admit("accept") {
                        tracing::warn!(error = %e, left_out, retry_in = ?backoff, "accept failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let _ = stream.set_nodelay(true);
        let (serve, tls, watcher) = (Arc::clone(&serve), tls.clone(), watcher.clone());
        // The handshake runs in the connection's task: a slow client holds no one else up.
        tokio::spawn(async move {
            let stream = match &tls {
                Some(acceptor) => match tls::handshake(acceptor, stream).await {
                    Some(stream) => stream,
                    None => return,
                },
                None => Stream::Plain(stream),
            };
            let activity = Arc::new(Activity::default());
            let connection = serve(TokioIo::new(stream), Arc::clone(&activity));
            if let Err(e) = connection::drive(connection, &activity, timeouts, watcher).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    let addr = local_addr(&listener);
    drop(listener);
    drop(watcher);
    tracing::info!(%addr, connections = closing.receiver_count(), "draining");
    let _ = closing.send(());
    if tokio::time::timeout(drain, closing.closed()).await.is_err() {
        tracing::warn!(%addr, "drain timeout reached; closing remaining connections");
    }
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
