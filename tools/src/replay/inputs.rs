//! Checking a sample against what a node says of a service (OIP model metadata) before any
//! request is sent, so that bad data fails once, naming its file, rather than on every request.
//!
//! A model's metadata lists its inputs, and so does a service's: those of the first model of
//! the node its strategy asks. A service that lists none (one that forwards, with at most a
//! fallback model) names its strategy, so the sample is checked against the local models the
//! strategy uses, each read from its own metadata.

use std::path::PathBuf;

use idn_node_agent::model::{Signature, TensorSpec};
use idn_node_agent::wire::tensor::DataType;
use serde_json::Value;

use super::{HttpClient, get};
use crate::dataset::{Dataset, DatasetError};

/// What the check could compare the sample with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The sample fits the inputs of these models (the service itself, or its local models).
    Models(Vec<String>),
    /// Nothing to compare with, and why.
    Unknown(String),
}

/// Checks every sample against service (or model) `service` of the node at `base`.
pub async fn check(base: &str, service: &str, samples: &[&Dataset]) -> anyhow::Result<Checked> {
    let client = super::client();
    let url = |name: &str| format!("{}/v2/models/{name}", base.trim_end_matches('/'));
    let metadata = read(&client, &url(service)).await?;
    let local = if has_inputs(&metadata) {
        vec![(service.to_owned(), metadata)]
    } else {
        let models = local_models(&metadata["parameters"]["strategy"]);
        if models.is_empty() {
            return Ok(Checked::Unknown(format!(
                "{} lists no inputs and its strategy uses no model of this node",
                url(service)
            )));
        }
        let mut local = Vec::new();
        for model in models {
            let metadata = read(&client, &url(&model)).await?;
            local.push((model, metadata));
        }
        local
    };
    let mut checked = Vec::new();
    for (model, metadata) in &local {
        let at = url(model);
        if let Some(reason) = metadata["reason"].as_str() {
            return Ok(Checked::Unknown(format!("{at} is not ready: {reason}")));
        }
        let signature = signature(metadata).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        for sample in samples {
            fits(sample, model, &at, &signature)?;
        }
        checked.push(model.clone());
    }
    Ok(Checked::Models(checked))
}

async fn read(client: &HttpClient, url: &str) -> anyhow::Result<Value> {
    get(client, url)
        .await
        .map_err(|e| anyhow::anyhow!("reading the metadata at {url}: {e}"))
}

fn has_inputs(metadata: &Value) -> bool {
    metadata["inputs"].as_array().is_some_and(|a| !a.is_empty())
}

/// Whether one request's worth of `sample` (an item, batch 1) fits `signature`.
fn fits(
    sample: &Dataset,
    model: &str,
    url: &str,
    signature: &Signature,
) -> Result<(), DatasetError> {
    signature
        .check_inputs(model, &sample.item(0), 1)
        .map_err(|e| DatasetError::Fit {
            path: sample.source.clone(),
            model: PathBuf::from(url),
            message: e.to_string(),
        })
}

/// The inputs a model's metadata lists (outputs are not needed to send requests).
fn signature(metadata: &Value) -> Result<Signature, String> {
    let specs = metadata["inputs"]
        .as_array()
        .ok_or("the metadata lists no inputs")?;
    let inputs = specs
        .iter()
        .map(|spec| {
            let name = spec["name"].as_str().ok_or("an input has no name")?;
            let datatype = spec["datatype"].as_str().unwrap_or("");
            let datatype = DATATYPES
                .into_iter()
                .find(|d| d.as_str() == datatype)
                .ok_or_else(|| {
                    format!("input {name:?} has datatype {datatype:?}, which idn does not send")
                })?;
            let shape = spec["shape"]
                .as_array()
                .and_then(|dims| dims.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
                .ok_or_else(|| format!("input {name:?} has no integer shape"))?;
            Ok(TensorSpec {
                name: name.to_owned(),
                datatype,
                shape,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Signature {
        inputs,
        outputs: Vec::new(),
    })
}

/// Every datatype a sample can hold.
const DATATYPES: [DataType; 7] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Int8,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp32,
    DataType::Fp64,
];

/// The models of this node a strategy (as a service's metadata gives it) sends items to: its
/// `model` targets and its `fallbackModel`, in order, once each.
fn local_models(strategy: &Value) -> Vec<String> {
    let mut models: Vec<String> = Vec::new();
    let mut stack = vec![strategy];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter().rev() {
                    match (key.as_str(), v.as_str()) {
                        ("model" | "fallbackModel", Some(name)) => {
                            if !models.iter().any(|m| m == name) {
                                models.push(name.to_owned());
                            }
                        }
                        _ => stack.push(v),
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::fake::FakeNode;
    use idn_node_agent::wire::tensor::{Tensor, TensorData};
    use serde_json::json;

    fn sample(shape: Vec<usize>, data: TensorData) -> Dataset {
        Dataset {
            source: "x.npz/x".into(),
            classes: vec!["0".into()],
            inputs: vec![Tensor {
                name: "input".into(),
                shape,
                data,
            }],
            labels: vec![0, 0],
        }
    }

    fn flat() -> Dataset {
        sample(vec![2, 4], TensorData::Fp32(vec![0.0; 8]))
    }

    /// A node with model `linear` (input FP32 [-1, 4]), service `cascade` using it, and
    /// service `relay` that only forwards.
    async fn node() -> FakeNode {
        FakeNode::start(|_, path, _| match path {
            "/v2/models/linear" => (200, json!({"name": "linear", "platform": "onnxruntime_onnx", "state": "READY",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []})),
            "/v2/models/cascade" => (200, json!({"name": "cascade", "platform": "idn_service", "inputs": [],
                "parameters": {"strategy": {"threshold": {"local": {"model": "linear"}, "forward": {"upstream": "edge"}, "tau": 0.9}}}})),
            "/v2/models/relay" => (200, json!({"name": "relay", "platform": "idn_service", "inputs": [],
                "parameters": {"strategy": {"forward": {"to": {"upstream": "edge"}}}}})),
            _ => (404, json!({"error": format!("no model {path}")})),
        })
        .await
    }

    #[test]
    fn a_strategy_names_its_local_models_once_each() {
        let strategy = json!({"ensemble": {"members": [
            {"model": "a", "weight": 1.0}, {"upstream": "edge"}, {"model": "b"}, {"model": "a"}]}});
        assert_eq!(local_models(&strategy), ["a", "b"]);
        let forward = json!({"forward": {"to": {"upstream": "edge"}, "fallbackModel": "small"}});
        assert_eq!(local_models(&forward), ["small"]);
        assert!(local_models(&json!({"local": {"service": "other"}})).is_empty());
    }

    #[test]
    fn metadata_without_usable_inputs_is_named() {
        let bad = json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1]}]});
        assert_eq!(
            signature(&bad).unwrap_err(),
            "input \"x\" has datatype \"BYTES\", which idn does not send"
        );
        let bad = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": ["n"]}]});
        assert_eq!(
            signature(&bad).unwrap_err(),
            "input \"x\" has no integer shape"
        );
    }

    #[tokio::test]
    async fn a_service_is_checked_against_its_local_model() {
        let node = node().await;
        let checked = check(&node.base, "cascade", &[&flat()]).await.unwrap();
        assert_eq!(checked, Checked::Models(vec!["linear".into()]));
        assert_eq!(
            check(&node.base, "linear", &[&flat()]).await.unwrap(),
            Checked::Models(vec!["linear".into()])
        );
        let Checked::Unknown(why) = check(&node.base, "relay", &[&flat()]).await.unwrap() else {
            panic!("a forwarding service names no model")
        };
        assert!(
            why.ends_with(
                "/v2/models/relay lists no inputs and its strategy uses no model of this node"
            ),
            "{why}"
        );
    }

    async fn refusal(node: &FakeNode, service: &str, samples: &[&Dataset]) -> String {
        check(&node.base, service, samples)
            .await
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn what_does_not_fit_is_named_before_sending() {
        let node = node().await;
        let wide = sample(vec![2, 5], TensorData::Fp32(vec![0.0; 10]));
        let err = refusal(&node, "cascade", &[&flat(), &wide]).await;
        assert_eq!(
            err,
            format!(
                "x.npz/x does not fit model {}/v2/models/linear: input \"input\": shape [1, 5] does \
                 not match the model's [-1, 4] (-1 is any size)",
                node.base
            )
        );
        let bytes = sample(vec![2, 4], TensorData::Uint8(vec![0; 8]));
        let err = refusal(&node, "linear", &[&bytes]).await;
        assert!(
            err.ends_with("input \"input\": datatype UINT8 does not match the model's FP32"),
            "{err}"
        );
        let mut renamed = flat();
        renamed.inputs[0].name = "pixels".into();
        let err = refusal(&node, "linear", &[&renamed]).await;
        assert!(
            err.contains("has no input \"pixels\" (inputs: input)"),
            "{err}"
        );
        let err = refusal(&node, "nope", &[&flat()]).await;
        assert_eq!(
            err,
            format!(
                "reading the metadata at {}/v2/models/nope: 404 Not Found: no model /v2/models/nope",
                node.base
            )
        );
    }
}
