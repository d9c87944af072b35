//! The spans a request leaves at this node, for trace export (`idn_telemetry::init`): one per
//! request (`infer`), continuing the trace its `traceparent` names, with what answered it; and
//! one per call to an upstream (`upstream`), whose ids the call passes on, so that the
//! upstream's `infer` span is its child. At debug level, so that with export off they cost what
//! the log filter costs.

use http::StatusCode;
use idn_telemetry::trace::SpanIds;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::error::UpstreamError;
use crate::wire::provenance::Provenance;

/// The span of a request to model or service `name` of node `node`, arrived over `protocol`
/// with `headers`.
pub(crate) fn request_span(
    node: &str,
    name: &str,
    protocol: &'static str,
    headers: &http::HeaderMap,
) -> Span {
    let span = tracing::debug_span!(
        "infer",
        otel.kind = "server",
        otel.status_code = Empty,
        node,
        model = name,
        protocol,
        status = Empty,
        batch_size = Empty,
        decision = Empty,
        confidence = Empty,
        answered_by = Empty,
    );
    idn_telemetry::trace::set_remote_parent(&span, headers);
    span
}

/// Records on the current (request) span how a service answered: the batch size and, for the
/// first item, the decision, its confidence and the node that answered.
pub(crate) fn record_answer(items: &[Provenance]) {
    let span = Span::current();
    // Integers as i64: the OpenTelemetry layer would record a u64 as text.
    span.record("batch_size", items.len() as i64);
    if let Some(first) = items.first() {
        span.record("decision", first.decision.as_str());
        span.record("confidence", first.confidence);
        span.record("answered_by", first.node.as_str());
    }
}

/// Records the status of the response to the request of `span`.
pub(crate) fn record_status(span: &Span, status: StatusCode) {
    span.record("status", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Runs `call` to service `service` of upstream `upstream` in a span of its own, recording how
/// it ended: `ok` or the error's kind.
pub(crate) async fn upstream_call<T>(
    upstream: &str,
    service: &str,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let span = tracing::debug_span!(
        "upstream",
        otel.kind = "client",
        otel.status_code = Empty,
        upstream,
        service,
        outcome = Empty,
    );
    let result = call.instrument(span.clone()).await;
    match &result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => span
            .record("outcome", e.kind())
            .record("otel.status_code", "ERROR"),
    };
    result
}

/// The ids of the current span, for the `traceparent` of a call, when spans are exported.
pub(crate) fn current_span_ids() -> Option<SpanIds> {
    idn_telemetry::trace::span_ids(&Span::current())
}
