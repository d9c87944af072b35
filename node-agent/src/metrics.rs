//! Prometheus metrics of the node-agent, served at `/metrics` in OpenMetrics text format.
//!
//! Label values come only from the config (model names) and status codes, never from request
//! paths, so a client cannot grow the number of series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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

type HistogramFamily = Family<ModelLabels, Histogram, fn() -> Histogram>;

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
}

/// 10 µs to ~5 s: single-sample inference on small models is in the microseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-6, 2.0, 20))
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
        Metrics {
            registry,
            requests,
            request_duration,
            inference_duration,
            in_flight,
            model_ready,
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

/// Content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
