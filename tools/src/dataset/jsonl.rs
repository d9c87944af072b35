//! JSON lines of OIP inputs: one item per line, `{"inputs": [...], "label": 3}`, the inputs
//! as an OIP v2 inference request gives them (name, datatype, shape with a first dimension of
//! 1, data). Blank lines are skipped. Every line must give the same inputs with the same
//! datatypes and shapes; they are stacked into one batch tensor per input.

use std::path::Path;

use idn_node_agent::wire::decode_request;
use idn_node_agent::wire::tensor::Tensor;
use serde_json::Value;

use super::{DatasetError, Read, read_file};

pub(super) fn read(path: &Path) -> Result<Read, DatasetError> {
    parse(&read_file(path)?, path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<Read, DatasetError> {
    let mut inputs: Vec<Tensor> = Vec::new();
    let mut labels = Vec::new();
    let lines = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty());
    for (index, line) in lines {
        let at =
            |message: String| DatasetError::invalid(path, format!("line {}: {message}", index + 1));
        let value: Value =
            serde_json::from_slice(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let label = value
            .get("label")
            .and_then(Value::as_i64)
            .ok_or_else(|| at("needs an integer \"label\"".to_owned()))?;
        let request = decode_request(line, None).map_err(|e| at(e.to_string()))?;
        if let Some(t) = request.inputs.iter().find(|t| t.shape.first() != Some(&1)) {
            return Err(at(format!(
                "input {:?} has shape {:?}; one line is one item, shape [1, ...]",
                t.name, t.shape
            )));
        }
        if inputs.is_empty() {
            inputs = request.inputs;
        } else {
            stack(&mut inputs, request.inputs).map_err(at)?;
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Read {
        features_path: path.to_owned(),
        inputs,
        labels_path: path.to_owned(),
        labels,
        classes: None,
    })
}

/// Appends one item's inputs to the batches, which they must match in names, datatypes and
/// item shapes.
fn stack(batches: &mut [Tensor], item: Vec<Tensor>) -> Result<(), String> {
    let names = |ts: &[Tensor]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    if item.len() != batches.len()
        || item
            .iter()
            .any(|t| !batches.iter().any(|b| b.name == t.name))
    {
        return Err(format!(
            "inputs {:?} differ from the first line's {:?}",
            names(&item),
            names(batches)
        ));
    }
    for tensor in item {
        let batch = batches
            .iter_mut()
            .find(|b| b.name == tensor.name)
            .expect("names checked");
        if tensor.shape[1..] != batch.shape[1..] {
            let mut first = batch.shape.clone();
            first[0] = 1;
            return Err(format!(
                "input {:?} has shape {:?}, the first line's has {first:?}",
                tensor.name, tensor.shape
            ));
        }
        if !batch.data.append(&tensor.data) {
            return Err(format!(
                "input {:?} is {}, the first line's is {}",
                tensor.name,
                tensor.data.datatype(),
                batch.data.datatype()
            ));
        }
        batch.shape[0] += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use idn_node_agent::wire::tensor::TensorData;

    fn load(text: &str) -> Result<Read, String> {
        parse(text.as_bytes(), Path::new("s.jsonl")).map_err(|e| e.to_string())
    }

    #[test]
    fn lines_are_stacked_per_input() {
        let read = load(concat!(
            r#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]},"#,
            r#" {"name": "b", "shape": [1], "datatype": "FP32", "data": [0.5]}], "label": 1}"#,
            "\n\n",
            r#"{"label": 0, "inputs": [{"name": "b", "shape": [1], "datatype": "FP32", "data": [1.5]},"#,
            r#" {"name": "a", "shape": [1, 2], "datatype": "INT64", "data": [3, 4]}]}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(read.labels, [1, 0]);
        assert_eq!(read.inputs[0].name, "a");
        assert_eq!(read.inputs[0].shape, [2, 2]);
        assert_eq!(read.inputs[0].data, TensorData::Int64(vec![1, 2, 3, 4]));
        assert_eq!(read.inputs[1].data, TensorData::Fp32(vec![0.5, 1.5]));
    }

    #[test]
    fn bad_lines_are_named() {
        let line = |datatype: &str, shape: &str, label: &str| {
            format!(
                r#"{{"inputs": [{{"name": "a", "shape": {shape}, "datatype": "{datatype}", "data": [1, 2]}}]{label}}}"#
            )
        };
        let good = line("INT64", "[1, 2]", r#", "label": 0"#);
        let two = |second: String| load(&format!("{good}\n{second}\n")).unwrap_err();
        assert_eq!(
            two(line("INT64", "[1, 2]", "")),
            r#"s.jsonl: line 2: needs an integer "label""#
        );
        assert_eq!(
            two(line("INT32", "[1, 2]", r#", "label": 0"#)),
            r#"s.jsonl: line 2: input "a" is INT32, the first line's is INT64"#
        );
        assert_eq!(
            two(line("INT64", "[2, 1]", r#", "label": 0"#)),
            r#"s.jsonl: line 2: input "a" has shape [2, 1]; one line is one item, shape [1, ...]"#
        );
        assert!(two("{".to_owned()).starts_with("s.jsonl: line 2: not JSON"));
        assert_eq!(load("\n").unwrap_err(), "s.jsonl is empty");
    }
}
