//! The model runtime: loading ONNX models through ONNX Runtime, their signatures, checking
//! requests against a signature, and running a session.
//!
//! A model that cannot be loaded (missing file, wrong sha256, not an ONNX graph, names that do
//! not match the config) is kept as [`ModelState::Unavailable`] with the reason, so the agent
//! serves its other models and reports why this one is not ready.

use std::sync::Arc;

use idn_contract::names::sha256_hex;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::{DynValue, TensorElementType, ValueType};

use crate::ort_library;
use crate::protocol::ApiError;
use crate::tensor::{DataType, Tensor, TensorData};
use idn_contract::config::ModelConfig;

/// Name, datatype and shape of a graph input or output; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// Inputs and outputs of a loaded model, in graph order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// Whether a model can serve, and what a worker needs to open a session on it.
#[derive(Debug, Clone)]
pub enum ModelState {
    Ready {
        signature: Signature,
        bytes: Arc<[u8]>,
    },
    Unavailable {
        reason: String,
    },
}

/// A model of this node: its config and what loading it gave.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub state: ModelState,
}

impl Model {
    /// Loads a model; failures become [`ModelState::Unavailable`].
    pub fn load(config: ModelConfig) -> Self {
        let state = match load_checked(&config) {
            Ok((signature, bytes)) => ModelState::Ready { signature, bytes },
            Err(reason) => ModelState::Unavailable { reason },
        };
        Model { config, state }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, ModelState::Ready { .. })
    }

    pub fn signature(&self) -> Option<&Signature> {
        match &self.state {
            ModelState::Ready { signature, .. } => Some(signature),
            ModelState::Unavailable { .. } => None,
        }
    }
}

fn load_checked(config: &ModelConfig) -> Result<(Signature, Arc<[u8]>), String> {
    let path = config.path.display();
    let bytes = std::fs::read(&config.path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if let Some(expected) = &config.sha256 {
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "sha256 of {path} is {actual}, the config expects {expected}"
            ));
        }
    }
    let session = open_session(&bytes).map_err(|e| format!("cannot load {path}: {e}"))?;
    let signature = Signature {
        inputs: specs(session.inputs().iter().map(|o| (o.name(), o.dtype())))?,
        outputs: specs(session.outputs().iter().map(|o| (o.name(), o.dtype())))?,
    };
    check_config(config, &signature)?;
    Ok((signature, bytes.into()))
}

/// Opens a session; each inference worker holds its own, single-threaded, so that the pool's
/// size alone decides how many cores inference uses.
pub fn open_session(bytes: &[u8]) -> Result<Session, String> {
    let environment = ort_library::environment().map_err(|e| e.to_string())?;
    let open = || -> ort::Result<Session> {
        Session::builder(environment)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_memory(bytes)
    };
    open().map_err(|e| e.to_string())
}

fn specs<'a>(
    outlets: impl Iterator<Item = (&'a str, &'a ValueType)>,
) -> Result<Vec<TensorSpec>, String> {
    outlets
        .map(|(name, dtype)| match dtype {
            ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                name: name.to_owned(),
                datatype: datatype(*ty).ok_or_else(|| {
                    format!("tensor {name:?} has element type {ty}, which the agent does not serve")
                })?,
                shape: shape.to_vec(),
            }),
            other => Err(format!("{name:?} is a {other}, not a tensor")),
        })
        .collect()
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
    })
}

/// The config names the graph's inputs and default outputs; a mismatch is a deployment error
/// worth catching at load time rather than on the first request.
fn check_config(config: &ModelConfig, signature: &Signature) -> Result<(), String> {
    let names = |specs: &[TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let graph_inputs = names(&signature.inputs);
    let mut declared = config.inputs.clone();
    declared.sort();
    let mut graph_sorted = graph_inputs.clone();
    graph_sorted.sort();
    if declared != graph_sorted {
        return Err(format!(
            "config inputs {:?} do not match the graph inputs {graph_inputs:?}",
            config.inputs
        ));
    }
    let graph_outputs = names(&signature.outputs);
    if let Some(missing) = config.outputs.iter().find(|o| !graph_outputs.contains(o)) {
        return Err(format!(
            "config output {missing:?} is not a graph output (graph outputs: {graph_outputs:?})"
        ));
    }
    if !config.labels.is_empty() {
        let first = signature.output(&config.outputs[0]).expect("checked above");
        let classes = first.shape.last().copied().unwrap_or(1);
        if classes >= 0 && classes as usize != config.labels.len() {
            return Err(format!(
                "{} labels given, output {:?} has {classes} classes",
                config.labels.len(),
                first.name
            ));
        }
    }
    Ok(())
}

impl Signature {
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// Checks request inputs against the signature: every graph input present once, with the
    /// model's datatype and a shape that fits, and a batch no larger than `max_batch_size`.
    pub fn check_inputs(
        &self,
        model: &str,
        inputs: &[Tensor],
        max_batch_size: usize,
    ) -> Result<(), ApiError> {
        for tensor in inputs {
            let spec = self
                .inputs
                .iter()
                .find(|s| s.name == tensor.name)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "model {model:?} has no input {:?} (inputs: {})",
                        tensor.name,
                        self.input_names()
                    ))
                })?;
            if inputs.iter().filter(|t| t.name == tensor.name).count() > 1 {
                return Err(ApiError::bad_request(format!(
                    "input {:?} is given more than once",
                    tensor.name
                )));
            }
            spec.check(tensor, max_batch_size)?;
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|s| !inputs.iter().any(|t| t.name == s.name))
        {
            return Err(ApiError::bad_request(format!(
                "input {:?} is missing (model {model:?} needs: {})",
                missing.name,
                self.input_names()
            )));
        }
        Ok(())
    }

    fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl TensorSpec {
    fn check(&self, tensor: &Tensor, max_batch_size: usize) -> Result<(), ApiError> {
        let datatype = tensor.data.datatype();
        if datatype != self.datatype {
            return Err(ApiError::bad_request(format!(
                "input {:?}: datatype {datatype} does not match the model's {}",
                self.name, self.datatype
            )));
        }
        let fits = tensor.shape.len() == self.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, &want)| want < 0 || got as i64 == want);
        if !fits {
            return Err(ApiError::bad_request(format!(
                "input {:?}: shape {:?} does not match the model's {:?} (-1 is any size)",
                self.name, tensor.shape, self.shape
            )));
        }
        if tensor.batch_size() > max_batch_size {
            return Err(ApiError::bad_request(format!(
                "input {:?}: batch size {} exceeds the limit {max_batch_size}",
                self.name,
                tensor.batch_size()
            )));
        }
        Ok(())
    }
}

/// Runs checked inputs through a session and returns the named outputs, in the order asked.
pub fn run(
    session: &mut Session,
    signature: &Signature,
    inputs: Vec<Tensor>,
    outputs: &[String],
) -> Result<Vec<Tensor>, String> {
    let values = inputs
        .into_iter()
        .map(|t| Ok((t.name.clone(), to_ort(t)?)))
        .collect::<ort::Result<Vec<(String, DynValue)>>>()
        .map_err(|e| e.to_string())?;
    let results = session.run(values).map_err(|e| e.to_string())?;
    outputs
        .iter()
        .map(|name| {
            let spec = signature
                .output(name)
                .ok_or_else(|| format!("no output {name:?}"))?;
            let value = results
                .get(name)
                .ok_or_else(|| format!("ONNX Runtime returned no {name:?}"))?;
            from_ort(name, spec.datatype, value).map_err(|e| e.to_string())
        })
        .collect()
}

fn to_ort(tensor: Tensor) -> ort::Result<DynValue> {
    let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
    macro_rules! value {
        ($($variant:ident),+) => {
            match tensor.data {
                $(TensorData::$variant(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn()),+
            }
        };
    }
    Ok(value!(Bool, Uint8, Int8, Int32, Int64, Fp32, Fp64))
}

fn from_ort(name: &str, datatype: DataType, value: &DynValue) -> ort::Result<Tensor> {
    macro_rules! extract {
        ($($variant:ident: $elem:ty),+) => {
            match datatype {
                $(DataType::$variant => {
                    let (shape, data) = value.try_extract_tensor::<$elem>()?;
                    (shape.iter().map(|&d| d as usize).collect(), TensorData::$variant(data.to_vec()))
                }),+
            }
        };
    }
    let (shape, data) =
        extract!(Bool: bool, Uint8: u8, Int8: i8, Int32: i32, Int64: i64, Fp32: f32, Fp64: f64);
    Ok(Tensor {
        name: name.to_owned(),
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature() -> Signature {
        Signature {
            inputs: vec![TensorSpec {
                name: "input".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 4],
            }],
            outputs: vec![TensorSpec {
                name: "probs".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            }],
        }
    }

    fn tensor(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor {
            name: name.into(),
            shape,
            data,
        }
    }

    #[test]
    fn matching_inputs_pass() {
        let ok = tensor("input", vec![3, 4], TensorData::Fp32(vec![0.0; 12]));
        assert_eq!(signature().check_inputs("m", &[ok], 8), Ok(()));
    }

    #[test]
    fn mismatched_inputs_are_rejected_with_the_reason() {
        let cases = [
            (
                vec![tensor("input", vec![1, 3], TensorData::Fp32(vec![0.0; 3]))],
                "shape [1, 3] does not match the model's [-1, 4]",
            ),
            (
                vec![tensor("input", vec![4], TensorData::Fp32(vec![0.0; 4]))],
                "does not match",
            ),
            (
                vec![tensor("input", vec![1, 4], TensorData::Fp64(vec![0.0; 4]))],
                "datatype FP64 does not match the model's FP32",
            ),
            (
                vec![tensor("other", vec![1, 4], TensorData::Fp32(vec![0.0; 4]))],
                "has no input \"other\"",
            ),
            (vec![], "input \"input\" is missing"),
            (
                vec![tensor("input", vec![9, 4], TensorData::Fp32(vec![0.0; 36]))],
                "batch size 9 exceeds the limit 8",
            ),
        ];
        for (inputs, expected) in cases {
            let err = signature().check_inputs("m", &inputs, 8).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn config_names_must_match_the_graph() {
        let mut config = ModelConfig {
            name: "m".into(),
            version: "1".into(),
            path: "m.onnx".into(),
            sha256: None,
            inputs: vec!["input".into()],
            outputs: vec!["probs".into()],
            labels: vec!["a".into(), "b".into()],
        };
        assert_eq!(check_config(&config, &signature()), Ok(()));
        config.labels.push("c".into());
        assert!(
            check_config(&config, &signature())
                .unwrap_err()
                .contains("3 labels given")
        );
        config.outputs = vec!["logits".into()];
        assert!(
            check_config(&config, &signature())
                .unwrap_err()
                .contains("\"logits\" is not a graph output")
        );
        config.inputs = vec!["x".into()];
        assert!(
            check_config(&config, &signature())
                .unwrap_err()
                .contains("do not match the graph inputs")
        );
    }
}
