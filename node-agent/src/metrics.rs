//! Prometheus metrics of the node-agent, served at `/metrics` in OpenMetrics text format.
//!
//! Label values come only from the config (model names) and status codes, never from request
//! paths, so a client cannot grow the number of series.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Model label used for requests that name no configured model.
pub const UNKNOWN_MODEL: &str = "_unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub status: u16,
}

/// Labels of service-level series: the node and the service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub node: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub node: String,
    pub service: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub kind: &'static str,
}

type HistogramFamily<L = ModelLabels> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Inference requests answered, by model and HTTP status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request received to response ready, by model.
    pub request_duration: HistogramFamily,
    /// Time spent in ONNX Runtime, by model.
    pub inference_duration: HistogramFamily,
    /// Inference requests being processed.
    pub in_flight: Gauge,
    /// 1 when the model is loaded and serving, 0 otherwise.
    pub model_ready: Family<ModelLabels, Gauge>,
    /// Batch items answered by a service, by decision: the per-node serving counts that
    /// serving-rate-aware federated training weighs nodes by.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Confidence of the local answer of each item a service decided on: the distribution
    /// that tells which (harder) items a node passes upstream.
    pub confidence: HistogramFamily<ServiceLabels>,
    /// Share of a service's items forwarded upstream since start.
    pub forward_ratio: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    /// Duration of calls to each upstream (emulated link delay included).
    pub upstream_duration: HistogramFamily<UpstreamLabels>,
    /// Failed upstream calls, by upstream and kind (timeout, unreachable, overloaded, status,
    /// invalid).
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Ensemble members queried per request.
    pub ensemble_members: HistogramFamily<ServiceLabels>,
}

/// 10 µs to ~5 s: single-sample inference on small models is in the microseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-6, 2.0, 20))
}

/// Confidence in [0, 1], in steps of 0.05.
fn confidence_histogram() -> Histogram {
    Histogram::new(linear_buckets(0.05, 0.05, 20))
}

fn members_histogram() -> Histogram {
    Histogram::new(linear_buckets(1.0, 1.0, 8))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("idn");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Inference requests answered, by model and HTTP status",
            requests.clone(),
        );
        let request_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from request received to response ready, by model",
            Unit::Seconds,
            request_duration.clone(),
        );
        let inference_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "inference_duration",
            "Time spent running the model in ONNX Runtime, by model",
            Unit::Seconds,
            inference_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Inference requests being processed",
            in_flight.clone(),
        );
        let model_ready = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "model_ready",
            "1 when the model is loaded and serving, 0 otherwise",
            model_ready.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Batch items answered by a service, by decision (served, forwarded, ensembled, fallback)",
            decisions.clone(),
        );
        let confidence: HistogramFamily<ServiceLabels> =
            Family::new_with_constructor(confidence_histogram);
        registry.register(
            "confidence",
            "Confidence of the local answer of each item a service decided on",
            confidence.clone(),
        );
        let forward_ratio = Family::<ServiceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "forward_ratio",
            "Share of a service's items forwarded upstream since start",
            forward_ratio.clone(),
        );
        let upstream_duration: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "upstream_duration",
            "Duration of calls to an upstream, emulated link delay included",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream calls, by upstream and kind",
            upstream_errors.clone(),
        );
        let ensemble_members: HistogramFamily<ServiceLabels> =
            Family::new_with_constructor(members_histogram);
        registry.register(
            "ensemble_members_queried",
            "Ensemble members queried per request",
            ensemble_members.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            inference_duration,
            in_flight,
            model_ready,
            decisions,
            confidence,
            forward_ratio,
            upstream_duration,
            upstream_errors,
            ensemble_members,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
