//! Building responses: JSON bodies, and the one place an error becomes its status and OIP
//! error body.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::error::{RequestError, UpstreamError};

pub(super) type Body = Full<Bytes>;

pub(super) fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static headers are valid")
}

/// The HTTP status of an error kind: the one mapping from kinds to HTTP.
pub fn http_status(error: &RequestError) -> StatusCode {
    match error {
        RequestError::Invalid(_) => StatusCode::BAD_REQUEST,
        RequestError::NotFound(_) => StatusCode::NOT_FOUND,
        RequestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RequestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        RequestError::Overloaded { .. } | RequestError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RequestError::Routing(_) => StatusCode::LOOP_DETECTED,
        RequestError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        RequestError::Mismatch(_) => StatusCode::BAD_GATEWAY,
        RequestError::Upstream(e) => match e {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // The upstream's refusal reaches the client as it was, so the entry node reports
            // the loop like the node that found it.
            _ if e.is_routing_error() => StatusCode::LOOP_DETECTED,
            _ if e.is_overload() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
    }
}

/// An error as OIP answers it: its status and `{"error": message}`.
pub(super) fn error_response(error: &RequestError) -> Response<Body> {
    json_response(
        http_status(error),
        serde_json::json!({ "error": error.to_string() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: StatusCode) -> RequestError {
        RequestError::Upstream(UpstreamError::Status {
            upstream: "cloud".into(),
            status,
            message: "no".into(),
        })
    }

    fn grpc_upstream(code: tonic::Code) -> RequestError {
        RequestError::Upstream(UpstreamError::GrpcStatus {
            upstream: "cloud".into(),
            code,
            message: "no".into(),
        })
    }

    #[test]
    fn each_kind_has_the_status_clients_have_always_seen() {
        let cases = [
            (RequestError::Invalid("x".into()), 400),
            (RequestError::NotFound("x".into()), 404),
            (RequestError::Unauthorized("x"), 401),
            (
                RequestError::MethodNotAllowed {
                    method: "GET".into(),
                    path: "/".into(),
                    allowed: "POST".into(),
                },
                405,
            ),
            (RequestError::BodyTooLarge { limit_bytes: 1 }, 413),
            (
                RequestError::BodyTimeout {
                    timeout: std::time::Duration::from_secs(1),
                },
                408,
            ),
            (RequestError::Overloaded { queue_depth: 1 }, 503),
            (RequestError::Unavailable("x".into()), 503),
            (RequestError::Internal("x".into()), 500),
            (RequestError::Routing("x".into()), 508),
            (RequestError::DeadlineExceeded("x".into()), 504),
            (RequestError::Mismatch("x".into()), 502),
            (
                RequestError::Upstream(UpstreamError::Timeout {
                    upstream: "cloud".into(),
                    timeout_ms: 1,
                }),
                504,
            ),
            (
                RequestError::Upstream(UpstreamError::Unreachable {
                    upstream: "cloud".into(),
                    message: "x".into(),
                }),
                502,
            ),
            (
                RequestError::Upstream(UpstreamError::Invalid {
                    upstream: "cloud".into(),
                    message: "x".into(),
                }),
                502,
            ),
            (upstream(StatusCode::LOOP_DETECTED), 508),
            (upstream(StatusCode::SERVICE_UNAVAILABLE), 503),
            (upstream(StatusCode::TOO_MANY_REQUESTS), 503),
            (upstream(StatusCode::UNAUTHORIZED), 502),
            (grpc_upstream(tonic::Code::FailedPrecondition), 508),
            (grpc_upstream(tonic::Code::Unavailable), 503),
            (grpc_upstream(tonic::Code::ResourceExhausted), 503),
            (grpc_upstream(tonic::Code::NotFound), 502),
        ];
        for (error, status) in cases {
            assert_eq!(http_status(&error).as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn the_error_body_is_the_message() {
        let response = error_response(&RequestError::BodyTooLarge { limit_bytes: 4096 });
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = response.into_body();
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(body))
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(
            &bytes[..],
            br#"{"error":"request body exceeds the limit of 4096 bytes"}"#
        );
    }
}
