//! The binary tensor data extension that tritonclient uses by default: a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw little-endian tensor data, one
//! tensor after the other in the order the header lists them.

use serde_json::{Value, json};

use super::message::Parameters;
use super::tensor::{DataType, TensorData};
use crate::error::RequestError;

/// Header announcing the length of the JSON part of a body that carries binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON header and binary part.
pub(super) fn split_body<'b>(
    body: &'b [u8],
    header_length: Option<&str>,
) -> Result<(&'b [u8], BinaryData<'b>), RequestError> {
    let Some(value) = header_length else {
        return Ok((body, BinaryData { rest: &[] }));
    };
    let length: usize = value.trim().parse().map_err(|_| {
        RequestError::Invalid(format!(
            "Inference-Header-Content-Length: {value:?} is not a byte count"
        ))
    })?;
    if length > body.len() {
        return Err(RequestError::Invalid(format!(
            "Inference-Header-Content-Length: {length} exceeds the body size {}",
            body.len()
        )));
    }
    let (json, rest) = body.split_at(length);
    Ok((json, BinaryData { rest }))
}

/// The binary part of a body, taken tensor by tensor in header order.
pub(super) struct BinaryData<'b> {
    rest: &'b [u8],
}

impl BinaryData<'_> {
    /// The next `size` bytes as data of `datatype`, for the tensor described by `at`.
    pub(super) fn take(
        &mut self,
        size: usize,
        datatype: DataType,
        at: &str,
    ) -> Result<TensorData, RequestError> {
        if size > self.rest.len() {
            return Err(RequestError::Invalid(format!(
                "{at}: binary_data_size {size} exceeds the {} bytes of binary data left",
                self.rest.len()
            )));
        }
        let (bytes, rest) = self.rest.split_at(size);
        self.rest = rest;
        TensorData::from_le_bytes(datatype, bytes).ok_or_else(|| {
            RequestError::Invalid(format!(
                "{at}: binary_data_size {size} is not a multiple of the {datatype} element size {}",
                datatype.element_size()
            ))
        })
    }

    /// Refuses bytes that no tensor of `field` claimed: a client that miscounted would
    /// otherwise get an answer to data it did not mean to send.
    pub(super) fn finish(self, field: &str) -> Result<(), RequestError> {
        if self.rest.is_empty() {
            return Ok(());
        }
        Err(RequestError::Invalid(format!(
            "{} bytes of binary data are not claimed by any {field} binary_data_size",
            self.rest.len()
        )))
    }
}

/// The `binary_data_size` a tensor's parameters announce, if any.
pub(super) fn binary_size(
    parameters: &Parameters,
    at: &str,
) -> Result<Option<usize>, RequestError> {
    match parameters.get("binary_data_size") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                RequestError::Invalid(format!(
                    "{at}: parameters.binary_data_size: {v} is not a byte count"
                ))
            }),
    }
}

/// Appends `data` to the binary tail; returns the tensor parameters announcing it.
pub(super) fn append(data: &TensorData, tail: &mut Vec<u8>) -> Value {
    let start = tail.len();
    data.write_le_bytes(tail);
    json!({ "binary_data_size": tail.len() - start })
}

#[cfg(test)]
mod tests {
    use crate::wire::decode::decode_request;
    use crate::wire::tensor::TensorData;

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
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
