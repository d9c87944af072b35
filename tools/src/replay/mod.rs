//! Replaying a labelled stream against services over OIP v2: one request per item and service,
//! at a given concurrency or rate, recording each answer's class, latency and provenance, and,
//! if asked, telling the node each item's true label.
//!
//! [`stream`] makes the requests (repeated, shuffled, shifting at some point), [`window`]
//! computes figures per window of requests, [`inputs`] checks a sample against what a node
//! says of a service before anything is sent, [`feedback`] posts true labels, and
//! [`hindsight`] sets each service's cost against the best fixed threshold in hindsight.

#[cfg(test)]
mod fake;
pub mod feedback;
pub mod hindsight;
pub mod inputs;
pub mod stream;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use idn_contract::confidence::argmax;
use idn_contract::provenance;
use idn_node_agent::wire::{Parameters, encode_request};
use serde_json::Value;

pub use stream::Stream;

/// How the stream is sent.
#[derive(Debug, Clone)]
pub struct Load {
    /// Requests in flight at once (closed loop).
    pub concurrency: usize,
    /// Stream items per second (open loop), each sent to every target at once; `None` sends
    /// as fast as the concurrency allows.
    pub rate: Option<f64>,
    /// Class names of the service's output, in order; `None`: `"0"`, `"1"`, …
    pub labels: Option<Vec<String>>,
}

/// A service requests are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    infer: String,
    /// Where true labels are posted, when they are.
    feedback: Option<String>,
}

impl Target {
    /// Service `service` of the node whose OIP v2 API is at `base` (`http://host:port`),
    /// posting true labels to its feedback endpoint if `feedback`.
    pub fn new(base: &str, service: &str, feedback: bool) -> Self {
        let model = format!("{}/v2/models/{service}", base.trim_end_matches('/'));
        Target {
            infer: format!("{model}/infer"),
            feedback: feedback.then(|| format!("{model}/feedback")),
        }
    }

    /// The inference URL.
    pub fn url(&self) -> &str {
        &self.infer
    }
}

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The item's class name.
    pub label: String,
    /// Name of the class answered, or the error that replaced the answer.
    pub answer: Result<String, String>,
    pub latency: Duration,
    /// Node that answered (`idn_node`), when the response says.
    pub node: Option<String>,
    /// How it was answered (`idn_decision`).
    pub decision: Option<String>,
    /// Whether the node took the true label, when it was posted (only after an answer).
    pub feedback: Option<Result<(), String>>,
}

/// Figures over all outcomes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub requests: usize,
    pub errors: usize,
    /// Share of all requests answered with the right class.
    pub accuracy: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Share of requests answered by each node, in first-seen order.
    #[serde(serialize_with = "as_map")]
    pub answered_by: Vec<(String, f64)>,
    /// Share of answers that were degraded fallbacks.
    pub fallback: f64,
}

/// One service's summary, as scripts read it (`idn replay --output json`).
#[derive(Debug, serde::Serialize)]
pub struct Report<'a> {
    pub service: &'a str,
    #[serde(flatten)]
    pub summary: Summary,
}

fn as_map<S: serde::Serializer>(pairs: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends every request of `stream` to every target, interleaved item by item (request `n` goes
/// to each target before request `n + 1` goes to any), so that the targets see the same
/// conditions; `progress` is called after each answer. The outcomes are per target, in stream
/// order.
pub async fn replay(
    targets: &[Target],
    stream: Arc<Stream>,
    load: &Load,
    progress: impl Fn() + Send + Sync + 'static,
) -> Vec<Vec<Outcome>> {
    let jobs = stream.len() * targets.len();
    let shared = Arc::new((client(), targets.to_vec(), progress));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers = (0..load.concurrency.max(1)).map(|_| {
        let shared = Arc::clone(&shared);
        let next = Arc::clone(&next);
        let rate = load.rate;
        let labels = load.labels.clone();
        let stream = Arc::clone(&stream);
        tokio::spawn(async move {
            let (client, targets, progress) = &*shared;
            let mut outcomes = Vec::new();
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    return outcomes;
                }
                let (n, target) = (job / targets.len(), &targets[job % targets.len()]);
                if let Some(rate) = rate {
                    // Open loop: item n leaves at n / rate, whatever the answers before it.
                    let due = start + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let outcome = send(client, target, &stream, labels.as_deref(), n).await;
                outcomes.push((job, outcome));
                progress();
            }
        })
    });
    let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(jobs);
    for worker in futures_util::future::join_all(workers).await {
        outcomes.extend(worker.expect("replay workers do not panic"));
    }
    outcomes.sort_by_key(|(job, _)| *job);
    let mut per_target = vec![Vec::with_capacity(stream.len()); targets.len()];
    for (job, outcome) in outcomes {
        per_target[job % targets.len()].push(outcome);
    }
    per_target
}

/// Sends request `n` to `target`, names the class answered after `labels` (default: its
/// index), and posts the true label if the target takes feedback.
async fn send(
    client: &HttpClient,
    target: &Target,
    stream: &Stream,
    labels: Option<&[String]>,
    n: usize,
) -> Outcome {
    // Feedback refers to the request by its id, unique in the stream.
    let id = match target.feedback {
        Some(_) => format!("replay-{n}"),
        None => n.to_string(),
    };
    let body = encode_request(Some(&id), &Parameters::new(), &stream.inputs(n), &[], false);
    let start = Instant::now();
    let result = post(client, &target.infer, body.bytes).await;
    let latency = start.elapsed();
    let label = stream.label(n).to_owned();
    let value = match result {
        Ok(value) => value,
        Err(error) => {
            return Outcome {
                label,
                answer: Err(error),
                latency,
                node: None,
                decision: None,
                feedback: None,
            };
        }
    };
    let probs: Vec<f32> = value["outputs"][0]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|p| p as f32)
                .collect()
        })
        .unwrap_or_default();
    let text = |key: &str| value["parameters"][key].as_str().map(str::to_owned);
    let feedback = match &target.feedback {
        Some(url) => Some(feedback::post(client, url, &id, &label, labels).await),
        None => None,
    };
    Outcome {
        answer: if probs.is_empty() {
            Err("no probabilities in the response".to_owned())
        } else {
            Ok(class_name(argmax(&probs), labels))
        },
        label,
        latency,
        node: text(provenance::NODE),
        decision: text(provenance::DECISION),
        feedback,
    }
}

/// The name of output class `class`: its entry in `labels`, else its index.
pub fn class_name(class: usize, labels: Option<&[String]>) -> String {
    labels
        .and_then(|l| l.get(class).cloned())
        .unwrap_or_else(|| class.to_string())
}

/// POSTs a JSON body; the answer's JSON, or the status and the OIP error message.
async fn post(client: &HttpClient, url: &str, body: Bytes) -> Result<Value, String> {
    let request = Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid request");
    exchange(client, request).await
}

/// GETs a JSON document, as [`post`] does.
async fn get(client: &HttpClient, url: &str) -> Result<Value, String> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    exchange(client, request).await
}

async fn exchange(client: &HttpClient, request: Request<Full<Bytes>>) -> Result<Value, String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid response: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            value["error"].as_str().unwrap_or("")
        ));
    }
    Ok(value)
}

/// Accuracy, latency percentiles and where requests were answered.
pub fn summarize(outcomes: &[Outcome]) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut answered_by: Vec<(String, f64)> = Vec::new();
    for outcome in outcomes.iter().filter(|o| o.answer.is_ok()) {
        let node = outcome.node.clone().unwrap_or_else(|| "?".to_owned());
        match answered_by.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1.0,
            None => answered_by.push((node, 1.0)),
        }
    }
    answered_by.iter_mut().for_each(|(_, count)| *count /= n);
    Summary {
        requests: outcomes.len(),
        errors: outcomes.iter().filter(|o| o.answer.is_err()).count(),
        accuracy: outcomes
            .iter()
            .filter(|o| o.answer.as_ref().is_ok_and(|c| *c == o.label))
            .count() as f64
            / n,
        mean_ms: latencies.iter().sum::<f64>() / n,
        p50_ms: percentile(0.50),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
        answered_by,
        fallback: outcomes
            .iter()
            .filter(|o| o.decision.as_deref() == Some("fallback"))
            .count() as f64
            / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: u8, answer: Result<u8, &str>, ms: u64, node: &str) -> Outcome {
        Outcome {
            label: label.to_string(),
            answer: answer.map(|c| c.to_string()).map_err(str::to_owned),
            latency: Duration::from_millis(ms),
            node: Some(node.into()),
            decision: Some("served".into()),
            feedback: None,
        }
    }

    #[test]
    fn summary_counts_accuracy_latency_and_nodes() {
        let outcomes = [
            outcome(1, Ok(1), 1, "access"),
            outcome(2, Ok(3), 2, "access"),
            outcome(3, Ok(3), 3, "edge"),
            outcome(4, Err("502"), 10, "-"),
        ];
        let summary = summarize(&outcomes);
        assert_eq!(summary.requests, 4);
        assert_eq!(summary.errors, 1);
        assert_eq!(summary.accuracy, 0.5);
        assert_eq!(summary.mean_ms, 4.0);
        assert_eq!(summary.p50_ms, 2.0);
        assert_eq!(summary.p99_ms, 10.0);
        assert_eq!(
            summary.answered_by,
            [("access".to_owned(), 0.5), ("edge".to_owned(), 0.25)]
        );
        let report = serde_json::to_value(Report {
            service: "mnist",
            summary,
        })
        .unwrap();
        assert_eq!(report["service"], "mnist");
        assert_eq!(report["meanMs"], 4.0);
        assert_eq!(
            report["answeredBy"],
            serde_json::json!({"access": 0.5, "edge": 0.25})
        );
    }
}
