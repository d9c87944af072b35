//! Encoding OIP v2 messages: requests to upstreams and responses to clients, each tensor as
//! JSON numbers or in the binary tensor data extension.

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::binary;
use super::message::{EncodedBody, InferResponse, Parameters};
use super::tensor::{Tensor, TensorData};

/// A tensor as sent: request inputs and response outputs share the shape.
#[derive(Serialize)]
struct WireOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_data"
    )]
    data: Option<&'a TensorData>,
}

fn serialize_data<S: Serializer>(data: &Option<&TensorData>, s: S) -> Result<S::Ok, S::Error> {
    match data.expect("skipped when None") {
        TensorData::Bool(v) => v.serialize(s),
        TensorData::Uint8(v) => v.serialize(s),
        TensorData::Int8(v) => v.serialize(s),
        TensorData::Int32(v) => v.serialize(s),
        TensorData::Int64(v) => v.serialize(s),
        TensorData::Fp32(v) => v.serialize(s),
        TensorData::Fp64(v) => v.serialize(s),
    }
}

#[derive(Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    parameters: &'a Parameters,
    outputs: Vec<WireOutput<'a>>,
}

#[derive(Serialize)]
struct WireRequestOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    parameters: &'a Parameters,
    inputs: Vec<WireOutput<'a>>,
    outputs: Vec<WireRequestedOutputOut<'a>>,
}

#[derive(Serialize)]
struct WireRequestedOutputOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

/// Wire form of `tensors`; those for which `binary(name)` holds go as binary data appended
/// to `tail`.
fn wire_tensors<'t>(
    tensors: &'t [Tensor],
    binary: impl Fn(&str) -> bool,
    tail: &mut Vec<u8>,
) -> Vec<WireOutput<'t>> {
    tensors
        .iter()
        .map(|t| {
            let as_binary = binary(&t.name);
            let parameters = as_binary.then(|| binary::append(&t.data, tail));
            WireOutput {
                name: &t.name,
                datatype: t.data.datatype().as_str(),
                shape: &t.shape,
                parameters,
                data: (!as_binary).then_some(&t.data),
            }
        })
        .collect()
}

/// One tensor as an OIP v2 JSON object (name, datatype, shape, data).
pub(crate) fn tensor_json(tensor: &Tensor) -> Value {
    let mut no_tail = Vec::new();
    let wire = wire_tensors(std::slice::from_ref(tensor), |_| false, &mut no_tail);
    serde_json::to_value(&wire[0]).expect("tensors serialize")
}

/// The JSON header followed by the binary tail, if any.
fn body(wire: &impl Serialize, tail: Vec<u8>) -> EncodedBody {
    let mut bytes = serde_json::to_vec(wire).expect("OIP messages serialize");
    let header_length = (!tail.is_empty()).then_some(bytes.len());
    bytes.extend_from_slice(&tail);
    EncodedBody {
        bytes: Bytes::from(bytes),
        header_length,
    }
}

/// Encodes an inference request asking for `outputs` (for calls to upstreams); with `binary`,
/// tensors travel in the binary tensor data extension both ways, sparing the JSON encoding and
/// parsing of every number.
pub fn encode_request(
    id: Option<&str>,
    parameters: &Parameters,
    inputs: &[Tensor],
    outputs: &[&str],
    binary: bool,
) -> EncodedBody {
    let mut tail = Vec::new();
    let wire = WireRequestOut {
        id,
        parameters,
        inputs: wire_tensors(inputs, |_| binary, &mut tail),
        outputs: outputs
            .iter()
            .map(|&name| WireRequestedOutputOut {
                name,
                parameters: binary.then(|| serde_json::json!({ "binary_data": true })),
            })
            .collect(),
    };
    body(&wire, tail)
}

/// Encodes a response; `binary(name)` says whether an output goes as binary data.
pub fn encode_response(response: &InferResponse, binary: impl Fn(&str) -> bool) -> EncodedBody {
    let mut tail = Vec::new();
    let wire = WireResponse {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: response.id.as_deref(),
        parameters: &response.parameters,
        outputs: wire_tensors(&response.outputs, binary, &mut tail),
    };
    body(&wire, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode::{decode_request, decode_response};
    use crate::wire::message::RequestedOutput;

    #[test]
    fn requests_round_trip_through_encode_and_decode() {
        let inputs = vec![Tensor {
            name: "input".into(),
            shape: vec![2, 2],
            data: TensorData::Fp32(vec![0.0, 0.5, 1.0, 1.5]),
        }];
        for binary in [false, true] {
            let body = encode_request(Some("r"), &Parameters::new(), &inputs, &["probs"], binary);
            assert_eq!(body.header_length.is_some(), binary);
            let length = body.header_length.map(|n| n.to_string());
            let decoded = decode_request(&body.bytes, length.as_deref()).unwrap();
            assert_eq!(decoded.inputs, inputs);
            assert_eq!(decoded.id.as_deref(), Some("r"));
            let requested = RequestedOutput {
                name: "probs".into(),
                binary,
            };
            assert_eq!(decoded.outputs, [requested]);
        }
    }

    #[test]
    fn responses_decode_from_json_and_binary() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            parameters: Parameters::new(),
            outputs: vec![Tensor {
                name: "probs".into(),
                shape: vec![1, 2],
                data: TensorData::Fp32(vec![0.25, 0.75]),
            }],
        };
        for binary in [false, true] {
            let body = encode_response(&response, |_| binary);
            let length = body.header_length.map(|n| n.to_string());
            assert_eq!(
                decode_response(&body.bytes, length.as_deref()).unwrap(),
                response
            );
        }
        let err = decode_response(b"<html>", None).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed inference response"),
            "{err}"
        );
    }

    #[test]
    fn responses_encode_as_json_or_binary() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("42".into()),
            parameters: Parameters::new(),
            outputs: vec![Tensor {
                name: "probs".into(),
                shape: vec![1, 2],
                data: TensorData::Fp32(vec![0.25, 0.75]),
            }],
        };
        let json = encode_response(&response, |_| false);
        assert_eq!(json.header_length, None);
        let value: Value = serde_json::from_slice(&json.bytes).unwrap();
        assert_eq!(value["id"], "42");
        assert_eq!(value["outputs"][0]["data"], serde_json::json!([0.25, 0.75]));

        let binary = encode_response(&response, |_| true);
        let n = binary.header_length.unwrap();
        let value: Value = serde_json::from_slice(&binary.bytes[..n]).unwrap();
        assert_eq!(value["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(value["outputs"][0].get("data").is_none());
        assert_eq!(&binary.bytes[n..n + 4], &0.25f32.to_le_bytes());
    }
}
