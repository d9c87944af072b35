//! OIP v2 inference messages as the agent handles them, between decoding and encoding.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::tensor::Tensor;

/// Free-form OIP parameters.
pub type Parameters = Map<String, Value>;

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

/// An encoded body: the bytes, and the JSON header length when binary data follows it.
pub struct EncodedBody {
    pub bytes: Bytes,
    pub header_length: Option<usize>,
}
