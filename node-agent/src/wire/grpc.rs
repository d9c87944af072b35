//! The OIP v2 gRPC messages (`inference.GRPCInferenceService`, generated from
//! `proto/grpc_predict_v2.proto`) and their conversion to and from the agent's own
//! [`InferRequest`] and [`InferResponse`], so that both protocols meet the same strategies.
//!
//! Tensor data comes either typed (`contents`) or as little-endian bytes (`raw_input_contents`),
//! never both; a response answers in the encoding of its request. Parameters are scalars in
//! gRPC: a non-scalar value (an idn per-item provenance array) travels as JSON text.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use super::decode::{check_elements, tensor_header};
use super::message::{InferRequest, InferResponse, Parameters, RequestedOutput};
use super::tensor::{DataType, Tensor, TensorData};
use crate::error::RequestError;

/// The generated messages, server and client.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::infer_parameter::ParameterChoice;
use proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

/// Decodes a ModelInfer request; every failure names the field.
pub(crate) fn decode_request(request: ModelInferRequest) -> Result<InferRequest, RequestError> {
    let raw = !request.raw_input_contents.is_empty();
    let wire = request.inputs.into_iter().map(|t| WireTensor {
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
        contents: t.contents,
    });
    let inputs = decode_tensors(wire, request.raw_input_contents, "inputs")?;
    let outputs = request
        .outputs
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            binary: raw,
        })
        .collect();
    Ok(InferRequest {
        id: non_empty(request.id),
        parameters: parameters_in(request.parameters),
        inputs,
        outputs,
        binary_output: raw,
    })
}

/// Decodes a ModelInfer response (from an upstream).
pub(crate) fn decode_response(response: ModelInferResponse) -> Result<InferResponse, RequestError> {
    let wire = response.outputs.into_iter().map(|t| WireTensor {
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
        contents: t.contents,
    });
    Ok(InferResponse {
        outputs: decode_tensors(wire, response.raw_output_contents, "outputs")?,
        model_name: response.model_name,
        model_version: response.model_version,
        id: non_empty(response.id),
        parameters: parameters_in(response.parameters),
    })
}

/// Encodes a ModelInfer request with raw tensor contents (for an upstream).
pub(crate) fn encode_request(
    model: &str,
    id: Option<&str>,
    inputs: &[Tensor],
    outputs: &[&str],
) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_owned(),
        id: id.unwrap_or_default().to_owned(),
        inputs: inputs
            .iter()
            .map(|t| proto::model_infer_request::InferInputTensor {
                name: t.name.clone(),
                datatype: t.data.datatype().as_str().to_owned(),
                shape: shape_out(&t.shape),
                ..Default::default()
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(
                |&name| proto::model_infer_request::InferRequestedOutputTensor {
                    name: name.to_owned(),
                    ..Default::default()
                },
            )
            .collect(),
        raw_input_contents: inputs.iter().map(|t| raw_bytes(&t.data)).collect(),
        ..Default::default()
    }
}

/// Encodes a response: raw contents when `raw` (the request sent raw contents), typed
/// otherwise.
pub(crate) fn encode_response(response: InferResponse, raw: bool) -> ModelInferResponse {
    let mut raw_output_contents = Vec::new();
    let outputs = response
        .outputs
        .into_iter()
        .map(|t| {
            let datatype = t.data.datatype().as_str().to_owned();
            let contents = if raw {
                raw_output_contents.push(raw_bytes(&t.data));
                None
            } else {
                Some(contents(t.data))
            };
            proto::model_infer_response::InferOutputTensor {
                name: t.name,
                datatype,
                shape: shape_out(&t.shape),
                parameters: HashMap::new(),
                contents,
            }
        })
        .collect();
    ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters: parameters_out(response.parameters),
        outputs,
        raw_output_contents,
    }
}

/// A tensor as either message carries it.
struct WireTensor {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
}

/// Decodes tensors whose data is in their `contents` or, when `raw` is not empty, in `raw`
/// (one entry per tensor, in order).
fn decode_tensors(
    wire: impl ExactSizeIterator<Item = WireTensor>,
    raw: Vec<Bytes>,
    field: &str,
) -> Result<Vec<Tensor>, RequestError> {
    let raw_field = format!("raw_{}_contents", field.trim_end_matches('s'));
    if !raw.is_empty() && raw.len() != wire.len() {
        return Err(RequestError::Invalid(format!(
            "{raw_field} has {} entries for {} {field}",
            raw.len(),
            wire.len()
        )));
    }
    let mut raw = raw.into_iter();
    wire.enumerate()
        .map(|(i, w)| {
            let at = format!("{field}[{i}] ({:?})", w.name);
            let (datatype, shape, expected) = tensor_header(&at, &w.datatype, &w.shape)?;
            let data = match (w.contents, raw.next()) {
                (Some(c), Some(_)) if !filled(&c).is_empty() => {
                    return Err(RequestError::Invalid(format!(
                        "{at}: has both contents and {raw_field}[{i}]; use one encoding"
                    )));
                }
                (_, Some(bytes)) => {
                    TensorData::from_le_bytes(datatype, &bytes).ok_or_else(|| {
                        RequestError::Invalid(format!(
                            "{at}: {raw_field}[{i}] has {} bytes, not a multiple of the {datatype} \
                         element size {}",
                            bytes.len(),
                            datatype.element_size()
                        ))
                    })?
                }
                (Some(c), None) => typed_data(datatype, c, &at)?,
                (None, None) => {
                    return Err(RequestError::Invalid(format!(
                        "{at}: has no data: give contents or {raw_field}"
                    )));
                }
            };
            check_elements(&at, &shape, expected, data.len())?;
            Ok(Tensor {
                name: w.name,
                shape,
                data,
            })
        })
        .collect()
}

/// The `contents` fields that hold data.
fn filled(c: &InferTensorContents) -> Vec<&'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .filter_map(|(name, empty)| (!empty).then_some(name))
    .collect()
}

/// The `contents` field that carries `datatype`.
fn contents_field(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "bool_contents",
        DataType::Uint8 => "uint_contents",
        DataType::Int8 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
    }
}

/// Typed data from its `contents` field; data in a field of another datatype is refused.
fn typed_data(
    datatype: DataType,
    c: InferTensorContents,
    at: &str,
) -> Result<TensorData, RequestError> {
    let field = contents_field(datatype);
    if let Some(other) = filled(&c).into_iter().find(|f| *f != field) {
        return Err(RequestError::Invalid(format!(
            "{at}: datatype {datatype} takes its data in contents.{field}, not contents.{other}"
        )));
    }
    let out_of_range = || {
        RequestError::Invalid(format!(
            "{at}: contents.{field} has a value out of range for {datatype}"
        ))
    };
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(c.uint_contents).ok_or_else(out_of_range)?),
        DataType::Int8 => TensorData::Int8(narrow(c.int_contents).ok_or_else(out_of_range)?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
    })
}

/// Narrows the wider integers protobuf carries small ones in; `None` when one does not fit.
fn narrow<W, N: TryFrom<W>>(values: Vec<W>) -> Option<Vec<N>> {
    values.into_iter().map(|v| N::try_from(v).ok()).collect()
}

fn contents(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::Uint8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::Int8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::Int32(v) => c.int_contents = v,
        TensorData::Int64(v) => c.int64_contents = v,
        TensorData::Fp32(v) => c.fp32_contents = v,
        TensorData::Fp64(v) => c.fp64_contents = v,
    }
    c
}

fn raw_bytes(data: &TensorData) -> Bytes {
    let mut out = Vec::new();
    data.write_le_bytes(&mut out);
    Bytes::from(out)
}

fn shape_out(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn parameters_in(parameters: HashMap<String, InferParameter>) -> Parameters {
    parameters
        .into_iter()
        .map(|(key, p)| {
            let value = match p.parameter_choice {
                None => Value::Null,
                Some(ParameterChoice::BoolParam(b)) => b.into(),
                Some(ParameterChoice::Int64Param(n)) => n.into(),
                Some(ParameterChoice::Uint64Param(n)) => n.into(),
                Some(ParameterChoice::DoubleParam(x)) => x.into(),
                // A JSON array is how a non-scalar value crosses gRPC (see parameters_out).
                Some(ParameterChoice::StringParam(s)) if s.starts_with('[') => {
                    serde_json::from_str(&s).unwrap_or(Value::String(s))
                }
                Some(ParameterChoice::StringParam(s)) => s.into(),
            };
            (key, value)
        })
        .collect()
}

fn parameters_out(parameters: Parameters) -> HashMap<String, InferParameter> {
    parameters
        .into_iter()
        .map(|(key, value)| {
            let choice = match value {
                Value::Bool(b) => ParameterChoice::BoolParam(b),
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => ParameterChoice::Int64Param(i),
                    (None, Some(u)) => ParameterChoice::Uint64Param(u),
                    _ => ParameterChoice::DoubleParam(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => ParameterChoice::StringParam(s),
                other => ParameterChoice::StringParam(other.to_string()),
            };
            let parameter = InferParameter {
                parameter_choice: Some(choice),
            };
            (key, parameter)
        })
        .collect()
}
