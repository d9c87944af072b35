//! Decoding OIP v2 messages: requests from clients and responses from upstreams, strictly.
//! Every failure is a [`RequestError::Invalid`] whose message names the field, so a client learns what to
//! fix.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::binary::{self, BinaryData};
use super::data::{self, TypedData};
use super::message::{InferRequest, InferResponse, Parameters, RequestedOutput};
use super::tensor::{DataType, Tensor, TensorData};
use crate::error::RequestError;

/// A tensor as it arrives on the wire.
struct WireTensor<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    parameters: Parameters,
    data: Option<WireData<'a>>,
}

/// JSON tensor data: decoded while parsing when `datatype` comes before `data` (the usual
/// order, and one pass over the numbers), else kept raw until the datatype is known.
enum WireData<'a> {
    Decoded(TensorData),
    Raw(&'a RawValue),
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum WireTensorField {
    Name,
    Shape,
    Datatype,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTensor<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireTensorVisitor(std::marker::PhantomData))
    }
}

struct WireTensorVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for WireTensorVisitor<'a> {
    type Value = WireTensor<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor object with name, shape, datatype and data")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut name, mut shape, mut datatype, mut parameters, mut data) =
            (None, None::<Vec<i64>>, None::<String>, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                WireTensorField::Name => name = Some(map.next_value()?),
                WireTensorField::Shape => shape = Some(map.next_value()?),
                WireTensorField::Datatype => datatype = Some(map.next_value()?),
                WireTensorField::Parameters => parameters = Some(map.next_value()?),
                WireTensorField::Data => {
                    data = Some(match datatype.as_deref().and_then(DataType::parse) {
                        Some(datatype) => {
                            let typed = TypedData::for_shape(datatype, shape.as_deref());
                            WireData::Decoded(map.next_value_seed(typed)?)
                        }
                        None => WireData::Raw(map.next_value()?),
                    })
                }
                WireTensorField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(WireTensor {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            parameters: parameters.unwrap_or_default(),
            data,
        })
    }
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    #[serde(borrow)]
    inputs: Vec<WireTensor<'a>>,
    #[serde(default)]
    outputs: Vec<WireRequestedOutput>,
}

#[derive(Deserialize)]
struct WireRequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
struct WireResponseIn<'a> {
    model_name: String,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    #[serde(borrow)]
    outputs: Vec<WireTensor<'a>>,
}

/// Decodes an inference request body; `header_length` is the value of
/// `Inference-Header-Content-Length`, when present.
pub fn decode_request(
    body: &[u8],
    header_length: Option<&str>,
) -> Result<InferRequest, RequestError> {
    let (json, binary) = binary::split_body(body, header_length)?;
    let wire: WireRequest = serde_json::from_slice(json)
        .map_err(|e| RequestError::Invalid(format!("malformed inference request: {e}")))?;
    if wire.inputs.is_empty() {
        return Err(RequestError::Invalid(
            "inputs: at least one input is required".into(),
        ));
    }
    let binary_output = flag(&wire.parameters, "binary_data_output")?;
    let inputs = decode_tensors(wire.inputs, binary, "inputs")?;
    let outputs = wire
        .outputs
        .into_iter()
        .map(|o| {
            let binary = match o.parameters.get("binary_data") {
                None => binary_output,
                Some(_) => flag(&o.parameters, "binary_data")?,
            };
            Ok(RequestedOutput {
                name: o.name,
                binary,
            })
        })
        .collect::<Result<_, RequestError>>()?;
    Ok(InferRequest {
        id: wire.id,
        parameters: wire.parameters,
        inputs,
        outputs,
        binary_output,
    })
}

/// Decodes an inference response body (from an upstream).
pub fn decode_response(
    body: &[u8],
    header_length: Option<&str>,
) -> Result<InferResponse, RequestError> {
    let (json, binary) = binary::split_body(body, header_length)?;
    let wire: WireResponseIn = serde_json::from_slice(json)
        .map_err(|e| RequestError::Invalid(format!("malformed inference response: {e}")))?;
    Ok(InferResponse {
        model_name: wire.model_name,
        model_version: wire.model_version.unwrap_or_default(),
        id: wire.id,
        parameters: wire.parameters,
        outputs: decode_tensors(wire.outputs, binary, "outputs")?,
    })
}

fn flag(parameters: &Parameters, key: &str) -> Result<bool, RequestError> {
    match parameters.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(RequestError::Invalid(format!(
            "parameters.{key}: expected a boolean, got {other}"
        ))),
    }
}

/// The datatype, shape and element count a tensor declares, checked: a supported datatype and
/// a shape without negative dimensions whose element count fits in memory.
pub(super) fn tensor_header(
    at: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(DataType, Vec<usize>, usize), RequestError> {
    let parsed = DataType::parse(datatype).ok_or_else(|| {
        RequestError::Invalid(format!(
            "{at}: datatype {datatype:?} is not supported (supported: {})",
            DataType::SUPPORTED.trim_end()
        ))
    })?;
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            RequestError::Invalid(format!("{at}: shape {shape:?} has a negative dimension"))
        })?;
    let expected = Tensor::shape_elements(&dims)
        .ok_or_else(|| RequestError::Invalid(format!("{at}: shape {dims:?} is too large")))?;
    Ok((parsed, dims, expected))
}

/// Refuses data whose element count is not the one the shape needs.
pub(super) fn check_elements(
    at: &str,
    shape: &[usize],
    expected: usize,
    elements: usize,
) -> Result<(), RequestError> {
    if elements == expected {
        return Ok(());
    }
    Err(RequestError::Invalid(format!(
        "{at}: shape {shape:?} needs {expected} elements, data has {elements}"
    )))
}

/// Decodes wire tensors, taking binary data from `binary` in order.
fn decode_tensors(
    wire: Vec<WireTensor>,
    mut binary: BinaryData,
    field: &str,
) -> Result<Vec<Tensor>, RequestError> {
    let mut tensors = Vec::with_capacity(wire.len());
    for (i, w) in wire.into_iter().enumerate() {
        let at = format!("{field}[{i}] ({:?})", w.name);
        let (datatype, shape, expected) = tensor_header(&at, &w.datatype, &w.shape)?;
        let data = match (binary::binary_size(&w.parameters, &at)?, w.data) {
            (Some(_), Some(_)) => {
                return Err(RequestError::Invalid(format!(
                    "{at}: has both data and parameters.binary_data_size"
                )));
            }
            (Some(size), None) => binary.take(size, datatype, &at)?,
            (None, Some(WireData::Decoded(data))) => data,
            (None, Some(WireData::Raw(raw))) => data::decode_raw(raw, datatype, expected)
                .map_err(|e| RequestError::Invalid(format!("{at}: {e}")))?,
            (None, None) => {
                return Err(RequestError::Invalid(format!(
                    "{at}: has neither data nor parameters.binary_data_size"
                )));
            }
        };
        check_elements(&at, &shape, expected, data.len())?;
        tensors.push(Tensor {
            name: w.name,
            shape,
            data,
        });
    }
    binary.finish(field)?;
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Result<InferRequest, RequestError> {
        decode_request(body.as_bytes(), None)
    }

    fn message(body: &str) -> String {
        match decode(body).unwrap_err() {
            RequestError::Invalid(message) => message,
            other => panic!("not an invalid request: {other:?}"),
        }
    }

    #[test]
    fn nested_and_flat_json_data_decode_alike() {
        let flat = decode(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3.5,4]}]}"#,
        )
        .unwrap();
        let nested = decode(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3.5,4]]}]}"#,
        )
        .unwrap();
        assert_eq!(flat.inputs, nested.inputs);
        assert_eq!(
            flat.inputs[0].data,
            TensorData::Fp32(vec![1.0, 2.0, 3.5, 4.0])
        );
    }

    #[test]
    fn data_before_datatype_decodes_alike() {
        let usual =
            decode(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1,2]}]}"#)
                .unwrap();
        let data_first =
            decode(r#"{"inputs":[{"data":[1,2],"shape":[2],"name":"x","datatype":"INT32"}]}"#)
                .unwrap();
        assert_eq!(usual.inputs, data_first.inputs);
        let msg =
            message(r#"{"inputs":[{"data":[1.5],"shape":[1],"name":"x","datatype":"INT32"}]}"#);
        assert!(msg.contains("data: invalid type: floating point"), "{msg}");
        let msg = message(r#"{"inputs":[{"shape":[1],"datatype":"INT32","data":[1]}]}"#);
        assert!(msg.contains("missing field `name`"), "{msg}");
    }

    #[test]
    fn every_datatype_decodes_from_json() {
        let cases = [
            ("BOOL", "[true,false]", TensorData::Bool(vec![true, false])),
            ("UINT8", "[0,255]", TensorData::Uint8(vec![0, 255])),
            ("INT8", "[-128,127]", TensorData::Int8(vec![-128, 127])),
            ("INT32", "[-5,7]", TensorData::Int32(vec![-5, 7])),
            (
                "INT64",
                "[-9007199254740993,1]",
                TensorData::Int64(vec![-9007199254740993, 1]),
            ),
            ("FP32", "[0.25,-1]", TensorData::Fp32(vec![0.25, -1.0])),
            ("FP64", "[1e-300,2]", TensorData::Fp64(vec![1e-300, 2.0])),
        ];
        for (datatype, data, expected) in cases {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{datatype}","data":{data}}}]}}"#
            );
            assert_eq!(
                decode(&body).unwrap().inputs[0].data,
                expected,
                "{datatype}"
            );
        }
    }

    #[test]
    fn id_parameters_and_requested_outputs_are_kept() {
        let req = decode(
            r#"{"id":"r-1","parameters":{"binary_data_output":true,"k":1},
            "inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[3]}],
            "outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":false}}]}"#,
        )
        .unwrap();
        assert_eq!(req.id.as_deref(), Some("r-1"));
        assert_eq!(req.parameters["k"], 1);
        assert!(req.binary_output);
        assert_eq!(
            req.outputs,
            [
                RequestedOutput {
                    name: "a".into(),
                    binary: true
                },
                RequestedOutput {
                    name: "b".into(),
                    binary: false
                }
            ]
        );
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases = [
            ("{", "malformed inference request"),
            (r#"{"inputs":[]}"#, "at least one input"),
            (
                r#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","data":["a","b"]}]}"#,
                "datatype \"BYTES\" is not supported",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
                "negative dimension",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "needs 3 elements, data has 2",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
                "data: invalid type: floating point",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[256]}]}"#,
                "data: invalid value: integer `256`",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["1"]}]}"#,
                "data: invalid type: string",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
                "neither data nor",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"parameters":{"binary_data_output":"yes"}}"#,
                "expected a boolean",
            ),
        ];
        for (body, expected) in cases {
            let msg = message(body);
            assert!(msg.contains(expected), "{body}: {msg}");
        }
    }
}
