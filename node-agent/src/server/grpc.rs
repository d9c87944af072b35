//! The OIP v2 gRPC server (`inference.GRPCInferenceService`, tonic over HTTP/2), beside REST on
//! its own port. Requests are admitted and answered by the same code as REST ([`super::infer`]),
//! with the call's metadata as its headers (token, request context, `grpc-timeout`); and
//! [`grpc_code`] is the one place an error kind becomes a gRPC status code.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tonic::codegen::{Service, StdError as BoxError};
use tonic::{Code, Request, Response, Status};

use super::connection::{Timeouts, Tracked};
use super::infer::{admit, answer, observed};
use super::metadata::{self, EXTENSIONS, Metadata};
use super::tls;
use crate::error::{RequestError, UpstreamError};
use crate::model::TensorSpec;
use crate::node::Node;
use crate::trace;
use crate::wire::grpc::{self, proto};
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The gRPC status code of an error kind: the one mapping from kinds to gRPC.
pub fn grpc_code(error: &RequestError) -> Code {
    match error {
        RequestError::Invalid(_) => Code::InvalidArgument,
        RequestError::NotFound(_) => Code::NotFound,
        RequestError::Unauthorized(_) => Code::Unauthenticated,
        RequestError::MethodNotAllowed { .. } => Code::Unimplemented,
        RequestError::BodyTooLarge { .. } | RequestError::Overloaded { .. } => {
            Code::ResourceExhausted
        }
        RequestError::BodyTimeout { .. } | RequestError::DeadlineExceeded(_) => {
            Code::DeadlineExceeded
        }
        RequestError::Unavailable(_) => Code::Unavailable,
        RequestError::Internal(_) | RequestError::Mismatch(_) => Code::Internal,
        // A topology error: the system is not in a state to route this request.
        RequestError::Routing(_) => Code::FailedPrecondition,
        RequestError::Upstream(e) => match e {
            UpstreamError::Timeout { .. } => Code::DeadlineExceeded,
            _ if e.is_routing_error() => Code::FailedPrecondition,
            // What HTTP calls a bad gateway or an overloaded upstream.
            _ => Code::Unavailable,
        },
    }
}

fn status(error: &RequestError) -> Status {
    Status::new(grpc_code(error), error.to_string())
}

fn version(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

struct Grpc {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        let ready = self.node.is_ready();
        Ok(Response::new(proto::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let readiness = metadata::readiness(&self.node, &request.name, version(&request.version))
            .map_err(|e| status(&e))?;
        let ready = readiness.is_ok();
        Ok(Response::new(proto::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: "idn-node-agent".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: EXTENSIONS.map(str::to_owned).to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let metadata = metadata::metadata(&self.node, &request.name, version(&request.version))
            .map_err(|e| status(&e))?;
        Ok(Response::new(metadata_message(metadata)))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let headers = metadata.into_headers();
        let node = &self.node;
        let name = message.model_name.clone();
        let version = version(&message.model_version).map(str::to_owned);
        let span = trace::request_span(&node.config().node, &name, "grpc", &headers);
        let answered = observed(node, &name, span, async {
            let served = admit(node, &headers, &name, version.as_deref())?;
            let mut request = grpc::decode_request(message)?;
            let response = answer(node, served, &mut request, &headers).await?;
            Ok(grpc::encode_response(response, request.binary_output))
        });
        answered.await.map(Response::new).map_err(|e| status(&e))
    }
}

/// OIP's gRPC metadata has no parameters: a model's labels and sha256 are for REST clients.
fn metadata_message(metadata: Metadata) -> proto::ModelMetadataResponse {
    let tensors = |specs: Vec<TensorSpec>| {
        specs
            .into_iter()
            .map(|s| proto::model_metadata_response::TensorMetadata {
                name: s.name,
                datatype: s.datatype.as_str().to_owned(),
                shape: s.shape,
            })
            .collect()
    };
    proto::ModelMetadataResponse {
        name: metadata.name,
        versions: metadata.versions,
        platform: metadata.platform.to_owned(),
        inputs: tensors(metadata.inputs),
        outputs: tensors(metadata.outputs),
    }
}

/// Serves gRPC (HTTP/2) on `listener` until `shutdown` resolves, then lets in-flight calls
/// finish (up to the configured drain timeout). On hyper directly rather than tonic's server,
/// whose own `grpc-timeout` timer would answer CANCELLED where the caller's deadline passed:
/// here the deadline is the request's, and passing it is DEADLINE_EXCEEDED. The connection
/// limits are REST's ([`super::connection`]), with HTTP/2 pings to find peers that went away,
/// a cap on a connection's open streams, and a call's message read within the read timeout.
pub(super) async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = &node.config().limits;
    let drain = Duration::from_secs(limits.drain_timeout_seconds);
    let read_timeout = Duration::from_secs(limits.read_timeout_seconds);
    let service = GrpcInferenceServiceServer::new(Grpc {
        node: Arc::clone(&node),
    })
    .max_decoding_message_size(limits.max_body_bytes)
    .max_encoding_message_size(limits.max_body_bytes);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(limits.keepalive_interval_seconds))
        .keep_alive_timeout(Duration::from_secs(limits.keepalive_timeout_seconds))
        .max_concurrent_streams(limits.max_concurrent_streams);
    let timeouts = Timeouts::new(limits);
    let tls = node.tls().map(|config| tls::acceptor(config, b"h2"));
    super::accept(
        listener,
        tls,
        shutdown,
        drain,
        timeouts,
        move |io, activity| {
            let service = service.clone();
            let calls = service_fn(move |request: http::Request<Incoming>| {
                let in_flight = activity.start();
                let request = request.map(|body| ReadDeadline::new(body, read_timeout));
                let mut service = service.clone();
                async move {
                    let response = service.call(request).await?;
                    Ok::<_, Infallible>(response.map(|b| Tracked::new(b, in_flight)))
                }
            });
            builder.serve_connection(io, calls)
        },
    )
    .await;
}

/// A call's body, which must arrive whole within the read timeout: a client that announces a
/// message and sends part of it gets DEADLINE_EXCEEDED instead of holding a stream.
struct ReadDeadline {
    body: Incoming,
    timeout: Duration,
    expiry: Pin<Box<Sleep>>,
}

impl ReadDeadline {
    fn new(body: Incoming, timeout: Duration) -> Self {
        ReadDeadline {
            body,
            timeout,
            expiry: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for ReadDeadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        ready!(self.expiry.as_mut().poll(cx));
        let timeout = self.timeout;
        // tonic answers a body error that is a Status with that status.
        Poll::Ready(Some(Err(Box::new(status(&RequestError::BodyTimeout {
            timeout,
        })))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn each_kind_has_its_grpc_code() {
        let upstream = |status| {
            RequestError::Upstream(UpstreamError::Status {
                upstream: "cloud".into(),
                status,
                message: "no".into(),
            })
        };
        let grpc_upstream = |code| {
            RequestError::Upstream(UpstreamError::GrpcStatus {
                upstream: "cloud".into(),
                code,
                message: "no".into(),
            })
        };
        let cases = [
            (RequestError::Invalid("x".into()), Code::InvalidArgument),
            (RequestError::NotFound("x".into()), Code::NotFound),
            (RequestError::Unauthorized("x"), Code::Unauthenticated),
            (
                RequestError::BodyTooLarge { limit_bytes: 1 },
                Code::ResourceExhausted,
            ),
            (
                RequestError::Overloaded { queue_depth: 1 },
                Code::ResourceExhausted,
            ),
            (RequestError::Unavailable("x".into()), Code::Unavailable),
            (RequestError::Internal("x".into()), Code::Internal),
            (RequestError::Mismatch("x".into()), Code::Internal),
            (RequestError::Routing("x".into()), Code::FailedPrecondition),
            (
                RequestError::DeadlineExceeded("x".into()),
                Code::DeadlineExceeded,
            ),
            (
                RequestError::Upstream(UpstreamError::Timeout {
                    upstream: "cloud".into(),
                    timeout_ms: 1,
                }),
                Code::DeadlineExceeded,
            ),
            (
                upstream(StatusCode::LOOP_DETECTED),
                Code::FailedPrecondition,
            ),
            (upstream(StatusCode::SERVICE_UNAVAILABLE), Code::Unavailable),
            (upstream(StatusCode::BAD_REQUEST), Code::Unavailable),
            (
                grpc_upstream(Code::FailedPrecondition),
                Code::FailedPrecondition,
            ),
            (grpc_upstream(Code::NotFound), Code::Unavailable),
        ];
        for (error, code) in cases {
            assert_eq!(grpc_code(&error), code, "{error:?}");
        }
    }
}
