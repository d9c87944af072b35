//! The OIP v2 HTTP server: one routing function (`route`), handlers returning
//! `Result<_, RequestError>`, and one place ([`http_status`]) that turns an error kind into its
//! HTTP status, beside the OIP error body.

mod infer;
mod metadata;
mod response;
mod route;

pub use response::http_status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use idn_contract::config::NodeAgentConfig;
use idn_telemetry::exposition;
use serde_json::json;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::node::Node;
use response::{Body, error_response, json_response};
use route::Route;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one request: routes it and turns errors into OIP error responses.
async fn handle(node: Arc<Node>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let result = match route::route(request.method(), &path) {
        Ok(Route::Live) => Ok(json_response(StatusCode::OK, json!({ "live": true }))),
        Ok(Route::Ready) => Ok(metadata::server_ready(&node)),
        Ok(Route::ServerMetadata) => Ok(metadata::server_metadata(&node)),
        Ok(Route::Metrics) => {
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
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Binds the configured listen address.
pub async fn bind(config: &NodeAgentConfig) -> Result<TcpListener> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.to_string(),
            source,
        })
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish (up to the configured drain timeout).
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let node = Arc::clone(&node);
        let service = service_fn(move |request| {
            let node = Arc::clone(&node);
            async move { Ok::<_, std::convert::Infallible>(handle(node, request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drain = Duration::from_secs(node.config().limits.drain_timeout_seconds);
    tracing::info!(connections = graceful.count(), "draining");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}

/// The address a listener is bound to, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
