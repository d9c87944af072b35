//! The operator's HTTP endpoints: `/metrics` for Prometheus, `/healthz` and `/readyz` for
//! the kubelet.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use idn_telemetry::exposition;
use tokio::net::TcpListener;

use crate::metrics::OperatorMetrics;

/// What the endpoints report.
pub struct Health {
    pub metrics: Arc<OperatorMetrics>,
    /// Set once the operator has a working API client (a standby replica is ready too: it is
    /// doing its job, which is to wait for the lease).
    pub ready: AtomicBool,
}

fn respond(health: &Health, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => {
            let accept = request.headers().get(http::header::ACCEPT);
            let (content_type, body) = exposition::negotiate(
                health.metrics.encode(),
                accept.and_then(|a| a.to_str().ok()),
            );
            (StatusCode::OK, content_type, body)
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok".to_owned()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok".to_owned())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting".to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_owned()),
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

/// Serves the endpoints on `listener` for as long as the process runs.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let health = Arc::clone(&health);
        let service = service_fn(move |request| {
            let response = respond(&health, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}
