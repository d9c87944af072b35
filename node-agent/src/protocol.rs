//! The Open Inference Protocol (v2) wire format: JSON requests and responses, with the binary
//! tensor data extension (a JSON header of `Inference-Header-Content-Length` bytes followed by
//! raw little-endian tensor data) that tritonclient uses by default.
//!
//! Decoding is strict and every failure is an [`ApiError`] whose message names the field, so a
//! client learns what to fix.

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::tensor::{DataType, Tensor, TensorData};

/// Header announcing the length of the JSON part of a body that carries binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Free-form OIP parameters.
pub type Parameters = Map<String, Value>;

/// A request error in OIP form: a status code and `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The OIP error body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "error": self.message }))
            .expect("a string map serializes")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

/// An output the client asked for, and whether it wants it as binary data.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
}

/// A decoded inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: Parameters,
    pub inputs: Vec<Tensor>,
    /// Outputs asked for; empty means every default output of the model.
    pub outputs: Vec<RequestedOutput>,
    /// Binary encoding for outputs not listed in `outputs` (`binary_data_output`).
    pub binary_output: bool,
}

/// An inference response, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub parameters: Parameters,
    pub outputs: Vec<Tensor>,
}

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
                            let capacity = shape.as_deref().map_or(0, capacity_hint);
                            WireData::Decoded(
                                map.next_value_seed(TypedData { datatype, capacity })?,
                            )
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

/// Elements to reserve for a declared shape; bounded, because the shape is the client's word
/// and the body limit, not the shape, bounds what arrives.
fn capacity_hint(shape: &[i64]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .unwrap_or(0)
        .min(1 << 20)
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

/// Splits a body into its JSON header and binary part.
fn split_body<'b>(
    body: &'b [u8],
    header_length: Option<&str>,
) -> Result<(&'b [u8], &'b [u8]), ApiError> {
    let Some(value) = header_length else {
        return Ok((body, &[]));
    };
    let length: usize = value.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Inference-Header-Content-Length: {value:?} is not a byte count"
        ))
    })?;
    if length > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length: {length} exceeds the body size {}",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// Decodes an inference request body; `header_length` is the value of
/// `Inference-Header-Content-Length`, when present.
pub fn decode_request(body: &[u8], header_length: Option<&str>) -> Result<InferRequest, ApiError> {
    let (json, binary) = split_body(body, header_length)?;
    let wire: WireRequest = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("malformed inference request: {e}")))?;
    if wire.inputs.is_empty() {
        return Err(ApiError::bad_request(
            "inputs: at least one input is required",
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
        .collect::<Result<_, ApiError>>()?;
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
) -> Result<InferResponse, ApiError> {
    let (json, binary) = split_body(body, header_length)?;
    let wire: WireResponseIn = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("malformed inference response: {e}")))?;
    Ok(InferResponse {
        model_name: wire.model_name,
        model_version: wire.model_version.unwrap_or_default(),
        id: wire.id,
        parameters: wire.parameters,
        outputs: decode_tensors(wire.outputs, binary, "outputs")?,
    })
}

fn flag(parameters: &Parameters, key: &str) -> Result<bool, ApiError> {
    match parameters.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad_request(format!(
            "parameters.{key}: expected a boolean, got {other}"
        ))),
    }
}

/// Decodes wire tensors, taking binary data from `binary` in order.
fn decode_tensors(
    wire: Vec<WireTensor>,
    mut binary: &[u8],
    field: &str,
) -> Result<Vec<Tensor>, ApiError> {
    let mut tensors = Vec::with_capacity(wire.len());
    for (i, w) in wire.into_iter().enumerate() {
        let at = format!("{field}[{i}] ({:?})", w.name);
        let datatype = DataType::parse(&w.datatype).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{at}: datatype {:?} is not supported (supported: {})",
                w.datatype,
                DataType::SUPPORTED.trim_end()
            ))
        })?;
        let shape = w
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "{at}: shape {:?} has a negative dimension",
                    w.shape
                ))
            })?;
        let expected = Tensor::shape_elements(&shape)
            .ok_or_else(|| ApiError::bad_request(format!("{at}: shape {shape:?} is too large")))?;
        let data = match (binary_size(&w.parameters, &at)?, w.data) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "{at}: has both data and parameters.binary_data_size"
                )));
            }
            (Some(size), None) => {
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "{at}: binary_data_size {size} exceeds the {} bytes of binary data left",
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_le_bytes(datatype, bytes).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{at}: binary_data_size {size} is not a multiple of the {datatype} element size {}",
                        datatype.element_size()
                    ))
                })?
            }
            (None, Some(WireData::Decoded(data))) => data,
            (None, Some(WireData::Raw(raw))) => {
                let typed = TypedData {
                    datatype,
                    capacity: expected.min(1 << 20),
                };
                typed
                    .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                    .map_err(|e| ApiError::bad_request(format!("{at}: {e}")))?
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "{at}: has neither data nor parameters.binary_data_size"
                )));
            }
        };
        if data.len() != expected {
            return Err(ApiError::bad_request(format!(
                "{at}: shape {shape:?} needs {expected} elements, data has {}",
                data.len()
            )));
        }
        tensors.push(Tensor {
            name: w.name,
            shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data are not claimed by any {field} binary_data_size",
            binary.len()
        )));
    }
    Ok(tensors)
}

fn binary_size(parameters: &Parameters, at: &str) -> Result<Option<usize>, ApiError> {
    match parameters.get("binary_data_size") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{at}: parameters.binary_data_size: {v} is not a byte count"
                ))
            }),
    }
}

/// Typed data of one tensor, flat or nested to any depth.
struct TypedData {
    datatype: DataType,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for TypedData {
    type Value = TensorData;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<TensorData, D::Error> {
        let mut data = TensorData::with_capacity(self.datatype, self.capacity);
        macro_rules! flatten {
            ($($variant:ident),+) => {
                match &mut data {
                    $(TensorData::$variant(v) => FlattenInto(v).deserialize(deserializer),)+
                }
            };
        }
        flatten!(Bool, Uint8, Int8, Int32, Int64, Fp32, Fp64)
            .map_err(|e| de::Error::custom(format_args!("data: {e}")))?;
        Ok(data)
    }
}

/// Pushes every scalar of a (possibly nested) JSON array into a vector, checking each against
/// the element type (an out-of-range or fractional integer is an error, not a silent cast).
struct FlattenInto<'v, T>(&'v mut Vec<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for FlattenInto<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> FlattenInto<'_, T> {
    fn push<E: de::Error, V: IntoDeserializer<'de, E>>(self, value: V) -> Result<(), E> {
        self.0.push(T::deserialize(value.into_deserializer())?);
        Ok(())
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for FlattenInto<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers or booleans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlattenInto(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(v)
    }
}

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
            let parameters = as_binary.then(|| {
                let start = tail.len();
                t.data.write_le_bytes(tail);
                serde_json::json!({ "binary_data_size": tail.len() - start })
            });
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

/// An encoded body: the bytes, and the JSON header length when binary data follows it.
pub struct EncodedBody {
    pub bytes: Bytes,
    pub header_length: Option<usize>,
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

    fn decode(body: &str) -> Result<InferRequest, ApiError> {
        decode_request(body.as_bytes(), None)
    }

    fn message(body: &str) -> String {
        let err = decode(body).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        err.message
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
    fn binary_inputs_are_read_in_order() {
        let header = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"b","shape":[1],"datatype":"INT32","data":[9]},{"name":"c","shape":[3],"datatype":"UINT8","parameters":{"binary_data_size":3}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2f32).to_le_bytes());
        body.extend_from_slice(&[1, 2, 3]);
        let req = decode_request(&body, Some(&header.len().to_string())).unwrap();
        assert_eq!(req.inputs[0].data, TensorData::Fp32(vec![1.5, -2.0]));
        assert_eq!(req.inputs[1].data, TensorData::Int32(vec![9]));
        assert_eq!(req.inputs[2].data, TensorData::Uint8(vec![1, 2, 3]));
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

    #[test]
    fn malformed_binary_requests_say_what_is_wrong() {
        let header = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let short = header.as_bytes().to_vec();
        let cases: [(&[u8], &str, &str); 4] = [
            (&short, "abc", "is not a byte count"),
            (&short, "100000", "exceeds the body size"),
            (&short, &header.len().to_string(), "exceeds the 0 bytes of binary data left"),
            (b"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}xyz", "66", "3 bytes of binary data are not claimed"),
        ];
        for (body, length, expected) in cases {
            let err = decode_request(body, Some(length)).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

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
            err.message.starts_with("malformed inference response"),
            "{}",
            err.message
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
