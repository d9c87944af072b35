//! Prometheus metrics of the node-agent, served at `/metrics` in OpenMetrics text format.
//!
//! Label values come only from the config (model names) and status codes, never from request
//! paths, so a client cannot grow the number of series. Call sites say what happened
//! (`record_decisions`, `observe_upstream`, ...); the label plumbing stays here.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::error::UpstreamError;
use crate::wire::provenance::Provenance;
use idn_contract::provenance::Decision;

/// Model label used for requests that name no configured model.
const UNKNOWN_MODEL: &str = "_unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    status: u16,
}

/// Labels of service-level series: the node and the service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    node: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    node: String,
    service: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    node: String,
    service: String,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    node: String,
    service: String,
    member: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

type HistogramFamily<L = ModelLabels> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Inference requests answered, by model and HTTP status.
    requests: Family<RequestLabels, Counter>,
    /// Time from request received to response ready, by model.
    request_duration: HistogramFamily,
    /// Time spent in ONNX Runtime, by model.
    inference_duration: HistogramFamily,
    /// Inference requests being processed.
    in_flight: Gauge,
    /// 1 when the model is loaded and serving, 0 otherwise.
    model_ready: Family<ModelLabels, Gauge>,
    /// Batch items answered by a service, by decision: the per-node serving counts that
    /// serving-rate-aware federated training weighs nodes by.
    decisions: Family<DecisionLabels, Counter>,
    /// Confidence of the local answer of each item a service decided on: the distribution
    /// that tells which (harder) items a node passes upstream.
    confidence: HistogramFamily<ServiceLabels>,
    /// Share of a service's items forwarded upstream since start.
    forward_ratio: Family<ServiceLabels, FloatGauge>,
    /// Duration of calls to each upstream (emulated link delay included).
    upstream_duration: HistogramFamily<UpstreamLabels>,
    /// Failed upstream calls, by upstream and kind (timeout, unreachable, overloaded, status,
    /// invalid).
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Ensemble members queried per request.
    ensemble_members: HistogramFamily<ServiceLabels>,
    /// What learning services learned (set when scraped, from the learners).
    learning: Learning,
}

/// Series of services that learn (`threshold.adapt`, `ensemble.learn`, `hardExamples`).
struct Learning {
    tau: Family<ServiceLabels, FloatGauge>,
    regret: Family<ServiceLabels, FloatGauge>,
    cost: Family<ServiceLabels, FloatGauge>,
    forward_cost: Family<ServiceLabels, FloatGauge>,
    verdicts: Family<VerdictLabels, Counter>,
    explored: Family<ServiceLabels, Counter>,
    waiting: Family<ServiceLabels, Gauge>,
    weights: Family<MemberLabels, FloatGauge>,
    hard_examples: Family<ServiceLabels, Gauge>,
}

/// What a learning service reports when scraped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LearnedFigures {
    pub tau: f64,
    pub regret: f64,
    pub cost: f64,
    pub forward_cost: f64,
}

impl Learning {
    fn register(registry: &mut Registry) -> Self {
        let mut gauge = |name: &str, help: &str| {
            let family = Family::<ServiceLabels, FloatGauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let tau = gauge(
            "learned_tau",
            "Threshold a learning service applies now (hedge: its weighted median; lcb: where it starts serving locally)",
        );
        let regret = gauge(
            "learned_regret",
            "Estimated cumulative cost of a learning threshold beyond the best fixed threshold in hindsight",
        );
        let cost = gauge(
            "learned_cost",
            "Estimated cumulative cost of a learning threshold's decisions",
        );
        let forward_cost = gauge(
            "learned_forward_cost",
            "Cost a learning threshold charges per forwarded item now",
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "learning_verdicts",
            "Verdicts on local answers a service learned from, by source (upstream, label)",
            verdicts.clone(),
        );
        let explored = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "explored",
            "Confident items a learning threshold forwarded to keep learning",
            explored.clone(),
        );
        let waiting = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "labels_waiting",
            "Answered requests waiting for labels",
            waiting.clone(),
        );
        let weights = Family::<MemberLabels, FloatGauge>::default();
        registry.register(
            "ensemble_weight",
            "Learned weight of an ensemble member (1 is an average member)",
            weights.clone(),
        );
        let hard_examples = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "hard_examples",
            "Forwarded items a service keeps in its hard-example store",
            hard_examples.clone(),
        );
        Learning {
            tau,
            regret,
            cost,
            forward_cost,
            verdicts,
            explored,
            waiting,
            weights,
            hard_examples,
        }
    }
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
    // One registration per family, kept in one function: the registration order is the order
    // of the exposition, which scrapers and dashboards have seen since the first version.
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
        let forward_ratio = Family::<ServiceLabels, FloatGauge>::default();
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
        let learning = Learning::register(&mut registry);
        Metrics {
            learning,
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
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Inference requests being processed now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// An inference request begins: it counts as in flight until its timer is dropped.
    pub(crate) fn request_started(&self) -> RequestTimer<'_> {
        self.in_flight.inc();
        RequestTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub(crate) fn set_model_ready(&self, model: &str, ready: bool) {
        self.model_ready
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .set(i64::from(ready));
    }

    pub(crate) fn observe_inference(&self, model: &str, elapsed: Duration) {
        self.inference_duration
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The confidence of each local answer a service's strategy decided on.
    pub(crate) fn observe_confidence(&self, node: &str, service: &str, items: &[Provenance]) {
        let histogram = self
            .confidence
            .get_or_create(&service_labels(node, service));
        items
            .iter()
            .for_each(|item| histogram.observe(item.confidence));
    }

    pub(crate) fn observe_ensemble(&self, node: &str, service: &str, members_queried: usize) {
        self.ensemble_members
            .get_or_create(&service_labels(node, service))
            .observe(members_queried as f64);
    }

    /// A call to an upstream that answered, however long it took.
    pub(crate) fn observe_upstream(&self, upstream: &str, elapsed: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn count_upstream_error(&self, upstream: &str, error: &UpstreamError) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                upstream: upstream.to_owned(),
                kind: error.kind(),
            })
            .inc();
    }

    /// Counts each item's decision and updates the service's forward ratio.
    pub(crate) fn record_decisions(&self, node: &str, service: &str, items: &[Provenance]) {
        let labels = |decision: Decision| DecisionLabels {
            node: node.to_owned(),
            service: service.to_owned(),
            decision: decision.as_str(),
        };
        for decision in Decision::ALL {
            let count = items.iter().filter(|i| i.decision == decision).count();
            if count > 0 {
                self.decisions
                    .get_or_create(&labels(decision))
                    .inc_by(count as u64);
            }
        }
        let count = |d| self.decisions.get_or_create(&labels(d)).get();
        let total: u64 = Decision::ALL.into_iter().map(count).sum();
        if total > 0 {
            self.forward_ratio
                .get_or_create(&service_labels(node, service))
                .set(count(Decision::Forwarded) as f64 / total as f64);
        }
    }
}

/// Learning, as it happens and as scraped.
impl Metrics {
    /// Verdicts a service learned from (`source`: upstream or label) and items it explored.
    pub(crate) fn count_learning(
        &self,
        node: &str,
        service: &str,
        source: &'static str,
        verdicts: usize,
        explored: usize,
    ) {
        if verdicts > 0 {
            self.learning
                .verdicts
                .get_or_create(&VerdictLabels {
                    node: node.to_owned(),
                    service: service.to_owned(),
                    source,
                })
                .inc_by(verdicts as u64);
        }
        if explored > 0 {
            self.learning
                .explored
                .get_or_create(&service_labels(node, service))
                .inc_by(explored as u64);
        }
    }

    pub(crate) fn set_learned(&self, node: &str, service: &str, figures: LearnedFigures) {
        let labels = service_labels(node, service);
        let l = &self.learning;
        l.tau.get_or_create(&labels).set(figures.tau);
        l.regret.get_or_create(&labels).set(figures.regret);
        l.cost.get_or_create(&labels).set(figures.cost);
        l.forward_cost
            .get_or_create(&labels)
            .set(figures.forward_cost);
    }

    pub(crate) fn set_waiting(&self, node: &str, service: &str, waiting: usize) {
        self.learning
            .waiting
            .get_or_create(&service_labels(node, service))
            .set(waiting as i64);
    }

    pub(crate) fn set_weights(
        &self,
        node: &str,
        service: &str,
        members: &[String],
        weights: &[f64],
    ) {
        for (member, &weight) in members.iter().zip(weights) {
            self.learning
                .weights
                .get_or_create(&MemberLabels {
                    node: node.to_owned(),
                    service: service.to_owned(),
                    member: member.clone(),
                })
                .set(weight);
        }
    }

    pub(crate) fn set_hard_examples(&self, node: &str, service: &str, kept: usize) {
        self.learning
            .hard_examples
            .get_or_create(&service_labels(node, service))
            .set(kept as i64);
    }
}

fn service_labels(node: &str, service: &str) -> ServiceLabels {
    ServiceLabels {
        node: node.to_owned(),
        service: service.to_owned(),
    }
}

/// An inference request in flight; dropping it (answered or abandoned) ends that.
pub(crate) struct RequestTimer<'m> {
    metrics: &'m Metrics,
    start: Instant,
}

impl RequestTimer<'_> {
    /// Counts the answered request by model and status; `model` is `None` for a name this
    /// node does not serve, which is counted under one label and not timed.
    pub(crate) fn finish(self, model: Option<&str>, status: u16) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                model: model.unwrap_or(UNKNOWN_MODEL).to_owned(),
                status,
            })
            .inc();
        if let Some(model) = model {
            self.metrics
                .request_duration
                .get_or_create(&ModelLabels {
                    model: model.to_owned(),
                })
                .observe(self.start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(decision: Decision, confidence: f64) -> Provenance {
        Provenance {
            node: "n".into(),
            model: "m".into(),
            decision,
            confidence,
            path: vec!["n".into()],
        }
    }

    /// Samples of a family in a fixed order (a family keeps its series in a hash map), and the
    /// request duration rounded (it is measured, not given).
    fn normalized(exposition: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut samples: Vec<String> = Vec::new();
        for line in exposition.lines() {
            let line = match line.strip_prefix("idn_request_duration_seconds_sum{model=\"m\"} ") {
                Some(value) => format!(
                    "idn_request_duration_seconds_sum{{model=\"m\"}} {:.1}",
                    value.parse::<f64>().unwrap()
                ),
                None => line.to_owned(),
            };
            if line.starts_with('#') {
                samples.sort();
                lines.append(&mut samples);
                lines.push(line);
            } else {
                samples.push(line);
            }
        }
        lines
    }

    #[test]
    fn the_exposition_keeps_its_names_labels_and_help_texts() {
        let metrics = Metrics::default();
        let mut timer = metrics.request_started();
        timer.start -= Duration::from_millis(500);
        timer.finish(Some("m"), 200);
        metrics.observe_inference("m", Duration::from_millis(250));
        metrics.set_model_ready("m", true);
        let local = [item(Decision::Served, 0.5), item(Decision::Served, 0.95)];
        metrics.observe_confidence("n", "s", &local);
        let mut answered = local.to_vec();
        answered.push(item(Decision::Forwarded, 0.7));
        metrics.record_decisions("n", "s", &answered);
        metrics.observe_upstream("u", Duration::from_millis(125));
        let timeout = UpstreamError::Timeout {
            upstream: "u".into(),
            timeout_ms: 1,
        };
        metrics.count_upstream_error("u", &timeout);
        metrics.observe_ensemble("n", "s", 2);
        assert_eq!(
            normalized(&metrics.encode()),
            normalized(include_str!("../tests/golden/metrics.txt"))
        );
    }

    #[test]
    fn an_abandoned_request_leaves_the_in_flight_count() {
        let metrics = Metrics::default();
        let timer = metrics.request_started();
        assert_eq!(metrics.in_flight(), 1);
        drop(timer);
        assert_eq!(metrics.in_flight(), 0);
        assert!(!metrics.encode().contains("idn_requests_total{"));
    }
}
