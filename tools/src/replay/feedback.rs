//! Label feedback: after each answer, the true label of the request's item is posted to the
//! service (`POST /v2/models/{service}/feedback`, `{"id": ..., "labels": [class index]}`), so
//! that a node which learns online can use it. A refusal is counted, never fatal.

use serde_json::json;

use super::{HttpClient, Outcome};

/// The class index `label` is posted as: its position among the service's output labels, or
/// else the label itself read as an integer.
pub fn class_index(label: &str, labels: Option<&[String]>) -> Option<usize> {
    labels
        .and_then(|l| l.iter().position(|c| c == label))
        .or_else(|| label.parse().ok())
}

/// Checks that every class of the stream has a class index, before anything is sent.
pub fn check_classes<'a>(
    classes: impl IntoIterator<Item = &'a str>,
    labels: Option<&[String]>,
) -> Result<(), String> {
    match classes
        .into_iter()
        .find(|c| class_index(c, labels).is_none())
    {
        Some(class) => Err(format!(
            "feedback posts class indices, and class {class:?} is neither one of the output \
             labels ({}) nor an integer; name the classes with --output-labels",
            labels.map(|l| l.join(", ")).unwrap_or_default()
        )),
        None => Ok(()),
    }
}

/// Posts the true `label` of request `id` to `url`; `Err` says why the node did not take it.
pub(super) async fn post(
    client: &HttpClient,
    url: &str,
    id: &str,
    label: &str,
    labels: Option<&[String]>,
) -> Result<(), String> {
    let class =
        class_index(label, labels).ok_or_else(|| format!("label {label:?} has no class index"))?;
    let body = json!({ "id": id, "labels": [class] }).to_string();
    let answer = super::post(client, url, body.into()).await?;
    match answer["accepted"].as_u64() {
        Some(1) => Ok(()),
        Some(n) => Err(format!("the node accepted {n} labels of 1")),
        None => Err(format!("no \"accepted\" count in the answer {answer}")),
    }
}

/// Labels posted, how many were refused, and the first refusal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    pub sent: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

pub fn tally(outcomes: &[Outcome]) -> Tally {
    outcomes
        .iter()
        .filter_map(|o| o.feedback.as_ref())
        .fold(Tally::default(), |mut t, result| {
            t.sent += 1;
            if let Err(e) = result {
                t.failed += 1;
                t.first_error.get_or_insert_with(|| e.clone());
            }
            t
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dataset::Dataset;
    use crate::replay::fake::FakeNode;
    use crate::replay::{Load, Stream, Target, client, replay};
    use idn_node_agent::wire::tensor::{Tensor, TensorData};
    use serde_json::Value;

    #[test]
    fn class_indices_come_from_the_output_labels_or_the_label() {
        let names: Vec<String> = ["cat", "dog"].map(String::from).into();
        assert_eq!(class_index("dog", Some(&names)), Some(1));
        assert_eq!(class_index("7", None), Some(7));
        assert_eq!(class_index("owl", Some(&names)), None);
        assert!(check_classes(["0", "1"], None).is_ok());
        let err = check_classes(["cat", "owl"], Some(&names)).unwrap_err();
        assert!(
            err.starts_with("feedback posts class indices, and class \"owl\" is neither one of the output labels (cat, dog)"),
            "{err}"
        );
    }

    /// A node accepting feedback for even request numbers and refusing the others.
    async fn node() -> FakeNode {
        FakeNode::start(|_, path, body| {
            if path.ends_with("/infer") {
                let probs = [0.1, 0.9];
                return (200, json!({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": probs}], "parameters": {"idn_node": "access", "idn_decision": "served"}}));
            }
            let id = body["id"].as_str().unwrap_or("");
            let n: usize = id.trim_start_matches("replay-").parse().unwrap_or(1);
            if n.is_multiple_of(2) {
                (200, json!({"accepted": 1}))
            } else {
                (404, json!({"error": format!("no request {id}")}))
            }
        })
        .await
    }

    #[tokio::test]
    async fn posts_the_class_index_and_reports_refusals() {
        let node = node().await;
        let url = format!("{}/v2/models/m/feedback", node.base);
        let names: Vec<String> = ["cat", "dog"].map(String::from).into();
        let client = client();
        assert_eq!(
            post(&client, &url, "replay-0", "dog", Some(&names)).await,
            Ok(())
        );
        assert_eq!(
            post(&client, &url, "replay-1", "cat", Some(&names)).await,
            Err("404 Not Found: no request replay-1".to_owned())
        );
        assert_eq!(
            node.bodies("/v2/models/m/feedback"),
            [
                json!({"id": "replay-0", "labels": [1]}),
                json!({"id": "replay-1", "labels": [0]})
            ]
        );
        let unreachable = "http://127.0.0.1:1/v2/models/m/feedback";
        assert!(
            post(&client, unreachable, "replay-0", "0", None)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_replay_with_feedback_labels_every_answered_request() {
        let node = node().await;
        let sample = Dataset {
            source: "x.npy".into(),
            classes: vec!["0".into(), "1".into()],
            inputs: vec![Tensor {
                name: "input".into(),
                shape: vec![3, 1],
                data: TensorData::Fp32(vec![0.0, 1.0, 2.0]),
            }],
            labels: vec![1, 0, 1],
        };
        let load = Load {
            concurrency: 2,
            rate: None,
            labels: None,
        };
        let targets = [Target::new(&node.base, "m", true)];
        let stream = Arc::new(Stream::plain(Arc::new(sample)));
        let outcomes = replay(&targets, stream, &load, || {}).await.remove(0);
        let tally = tally(&outcomes);
        assert_eq!((tally.sent, tally.failed), (3, 1));
        assert_eq!(
            tally.first_error.as_deref(),
            Some("404 Not Found: no request replay-1")
        );
        let mut posted: Vec<Value> = node.bodies("/v2/models/m/feedback");
        posted.sort_by_key(|b| b["id"].as_str().unwrap().to_owned());
        assert_eq!(
            posted,
            [
                json!({"id": "replay-0", "labels": [1]}),
                json!({"id": "replay-1", "labels": [0]}),
                json!({"id": "replay-2", "labels": [1]})
            ]
        );
        let mut ids: Vec<Value> = node
            .bodies("/v2/models/m/infer")
            .iter()
            .map(|b| b["id"].clone())
            .collect();
        ids.sort_by_key(|v| v.to_string());
        assert_eq!(ids, ["replay-0", "replay-1", "replay-2"]);
    }
}
