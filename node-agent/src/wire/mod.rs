//! The wire: what a request looks like on its way in and out of a node. The Open Inference
//! Protocol (v2) codec (messages, JSON decoding, the binary tensor data extension, encoding),
//! typed tensors, per-item provenance in response parameters, and the request context that
//! travels from node to node; the same messages over gRPC in [`grpc`].

mod binary;
pub(crate) mod context;
mod data;
mod decode;
mod encode;
pub mod grpc;
mod message;
pub(crate) mod provenance;
pub mod tensor;

pub(crate) use binary::HEADER_LENGTH;
pub use decode::decode_request;
pub(crate) use decode::decode_response;
pub use encode::encode_request;
pub use encode::encode_response;
pub(crate) use encode::tensor_json;
pub use message::{EncodedBody, InferRequest, InferResponse, Parameters, RequestedOutput};
