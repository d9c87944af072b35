//! What a model takes and gives: the signature read from its graph, checked once against the
//! config at load and against every request's inputs.

use crate::error::RequestError;
use crate::wire::tensor::{DataType, Tensor};
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

/// The config names the graph's inputs and default outputs; a mismatch is a deployment error
/// worth catching at load time rather than on the first request.
pub(super) fn check_config(config: &ModelConfig, signature: &Signature) -> Result<(), String> {
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
    // Labels name the classes of the first default output.
    let first = config.outputs.first().and_then(|o| signature.output(o));
    if let Some(first) = first
        && !config.labels.is_empty()
    {
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
    pub(crate) fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// Checks request inputs against the signature: every graph input present once, with the
    /// model's datatype and a shape that fits, and a batch no larger than `max_batch_size`.
    pub fn check_inputs(
        &self,
        model: &str,
        inputs: &[Tensor],
        max_batch_size: usize,
    ) -> Result<(), RequestError> {
        for tensor in inputs {
            let spec = self
                .inputs
                .iter()
                .find(|s| s.name == tensor.name)
                .ok_or_else(|| {
                    RequestError::Invalid(format!(
                        "model {model:?} has no input {:?} (inputs: {})",
                        tensor.name,
                        self.input_names()
                    ))
                })?;
            if inputs.iter().filter(|t| t.name == tensor.name).count() > 1 {
                return Err(RequestError::Invalid(format!(
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
            return Err(RequestError::Invalid(format!(
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
    fn check(&self, tensor: &Tensor, max_batch_size: usize) -> Result<(), RequestError> {
        let datatype = tensor.data.datatype();
        if datatype != self.datatype {
            return Err(RequestError::Invalid(format!(
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
            return Err(RequestError::Invalid(format!(
                "input {:?}: shape {:?} does not match the model's {:?} (-1 is any size)",
                self.name, tensor.shape, self.shape
            )));
        }
        if tensor.batch_size() > max_batch_size {
            return Err(RequestError::Invalid(format!(
                "input {:?}: batch size {} exceeds the limit {max_batch_size}",
                self.name,
                tensor.batch_size()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tensor::TensorData;

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
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn config_names_must_match_the_graph() {
        let mut config = crate::model::test_config("m");
        config.labels = vec!["a".into(), "b".into()];
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
