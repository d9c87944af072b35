//! Errors: what stops the agent from starting ([`Error`]), and why a request gets no answer
//! ([`RequestError`], by kind, with [`UpstreamError`] for what an upstream did).
//!
//! Request errors carry no protocol status: the wire, model and delivery layers say what went
//! wrong, and only the server decides which status a kind is (`server::http_status`), so that
//! another protocol (gRPC) maps the same kinds to its own codes in one place too.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

/// Errors that stop the agent from starting. Request-level failures are [`RequestError`]s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] idn_contract::ConfigError),
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    /// The node's TLS certificate or key cannot be used.
    #[error("cannot serve TLS with {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("{0}")]
    OrtLibrary(String),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("upstream {upstream}: invalid url: {message}")]
    UpstreamUrl { upstream: String, message: String },
    /// The learned-state file cannot be read.
    #[error("{0}")]
    LearnedState(String),
    /// A strategy names a model, service or upstream the node does not have.
    #[error("node {node}: {}", problems.join("; "))]
    Unresolved { node: String, problems: Vec<String> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a request gets no answer, by kind; each message says what failed, with which input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The request does not fit the protocol, the model's signature or the service.
    #[error("{0}")]
    Invalid(String),
    /// No such route, model, version or service at this node.
    #[error("{0}")]
    NotFound(String),
    /// The node's bearer token is missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
    #[error("request body exceeds the limit of {limit_bytes} bytes")]
    BodyTooLarge { limit_bytes: usize },
    #[error("request body not received within {} s", timeout.as_secs())]
    BodyTimeout { timeout: Duration },
    /// The inference queue is full: the request is refused at once rather than held in memory.
    #[error(
        "overloaded: the inference queue is full ({queue_depth} requests waiting); retry later"
    )]
    Overloaded { queue_depth: usize },
    /// The node cannot answer now: a model that is not ready, an agent shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// Inference failed, or a model answered outside its signature.
    #[error("{0}")]
    Internal(String),
    /// The request would loop or exceed its hop limit: a topology error, which no fallback
    /// hides.
    #[error("{0}")]
    Routing(String),
    /// The deadline passed before anything could answer.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// An upstream gave no usable answer and the service does not fall back.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Answers that cannot be merged, e.g. ensemble members with different numbers of classes.
    #[error("{0}")]
    Mismatch(String),
}

impl RequestError {
    /// The kind, as logs and metrics name it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RequestError::Invalid(_) => "invalid",
            RequestError::NotFound(_) => "not_found",
            RequestError::Unauthorized(_) => "unauthorized",
            RequestError::MethodNotAllowed { .. } => "method_not_allowed",
            RequestError::BodyTooLarge { .. } => "body_too_large",
            RequestError::BodyTimeout { .. } => "body_timeout",
            RequestError::Overloaded { .. } => "overloaded",
            RequestError::Unavailable(_) => "unavailable",
            RequestError::Internal(_) => "internal",
            RequestError::Routing(_) => "routing",
            RequestError::DeadlineExceeded(_) => "deadline_exceeded",
            RequestError::Upstream(_) => "upstream",
            RequestError::Mismatch(_) => "mismatch",
        }
    }
}

/// Why an upstream call gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream:?} did not answer within {timeout_ms} ms")]
    Timeout { upstream: String, timeout_ms: u128 },
    #[error("upstream {upstream:?} is unreachable: {message}")]
    Unreachable { upstream: String, message: String },
    /// The upstream answered with an error status (its own, over HTTP).
    #[error("upstream {upstream:?} answered {status}: {message}")]
    Status {
        upstream: String,
        status: StatusCode,
        message: String,
    },
    /// The upstream answered with an error status over gRPC.
    #[error("upstream {upstream:?} answered gRPC {code:?}: {message}")]
    GrpcStatus {
        upstream: String,
        code: tonic::Code,
        message: String,
    },
    #[error("upstream {upstream:?} sent an invalid answer: {message}")]
    Invalid { upstream: String, message: String },
}

impl UpstreamError {
    /// Metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Unreachable { .. } => "unreachable",
            _ if self.is_overload() => "overloaded",
            _ if self.is_refusal() => "unauthorized",
            UpstreamError::Status { .. } | UpstreamError::GrpcStatus { .. } => "status",
            UpstreamError::Invalid { .. } => "invalid",
        }
    }

    /// A loop or hop-limit refusal is a topology error: it is reported, never hidden behind a
    /// fallback answer.
    pub(crate) fn is_routing_error(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => *status == StatusCode::LOOP_DETECTED,
            // How an idn node answers a routing error over gRPC (`server::grpc_code`).
            UpstreamError::GrpcStatus { code, .. } => *code == tonic::Code::FailedPrecondition,
            _ => false,
        }
    }

    /// The upstream refused this node's credentials (no token, a wrong one): a misconfigured
    /// link, which no retry mends.
    fn is_refusal(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN
            }
            UpstreamError::GrpcStatus { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                )
            }
            _ => false,
        }
    }

    /// The upstream refused for lack of capacity (and may answer a retry later).
    pub(crate) fn is_overload(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                *status == StatusCode::SERVICE_UNAVAILABLE
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            UpstreamError::GrpcStatus { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                )
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_credential_is_its_own_kind() {
        let status = |status| UpstreamError::Status {
            upstream: "cloud".into(),
            status,
            message: "no".into(),
        };
        let grpc = |code| UpstreamError::GrpcStatus {
            upstream: "cloud".into(),
            code,
            message: "no".into(),
        };
        for error in [
            status(StatusCode::UNAUTHORIZED),
            status(StatusCode::FORBIDDEN),
            grpc(tonic::Code::Unauthenticated),
            grpc(tonic::Code::PermissionDenied),
        ] {
            assert_eq!(error.kind(), "unauthorized", "{error:?}");
        }
        assert_eq!(status(StatusCode::NOT_FOUND).kind(), "status");
        assert_eq!(grpc(tonic::Code::NotFound).kind(), "status");
    }
}
