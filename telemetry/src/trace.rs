//! Spans across processes: the remote parent a request names in its W3C `traceparent`, and the
//! ids of a span to name in the `traceparent` of a call to the next process. Both do nothing
//! while traces are not exported (see [`crate::init`]).

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C ids of an exported span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

/// Makes the span `headers` name in their `traceparent` (and `tracestate`) the parent of
/// `span`; call it before `span` is first entered.
pub fn set_remote_parent(span: &Span, headers: &http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no exporting layer sees the span: there is nothing to link then.
        let _ = span.set_parent(parent);
    }
}

/// The ids of `span` as exported, if it is.
pub fn span_ids(span: &Span) -> Option<SpanIds> {
    let context = span.context();
    let ids = context.span().span_context().clone();
    ids.is_valid().then(|| SpanIds {
        trace_id: u128::from_be_bytes(ids.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(ids.span_id().to_bytes()),
        sampled: ids.is_sampled(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_span_continues_the_remote_trace_and_gives_its_own_id() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
            let span = tracing::info_span!("infer");
            set_remote_parent(&span, &headers);
            let ids = span_ids(&span).expect("an exported span has ids");
            assert_eq!(ids.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
            assert_ne!(ids.span_id, 0x00f067aa0ba902b7);
            assert!(ids.sampled);
            drop(span);
        });
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            u64::from_be_bytes(spans[0].parent_span_id.to_bytes()),
            0x00f067aa0ba902b7
        );
    }

    #[test]
    fn nothing_is_exported_without_the_layer() {
        let span = tracing::info_span!("infer");
        set_remote_parent(&span, &http::HeaderMap::new());
        assert_eq!(span_ids(&span), None);
    }
}
