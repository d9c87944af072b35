//! Building responses: JSON bodies, and the one place an error becomes its status and OIP
//! error body.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::error::ApiError;

pub(super) type Body = Full<Bytes>;

pub(super) fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static headers are valid")
}

pub(super) fn error_response(error: &ApiError) -> Response<Body> {
    Response::builder()
        .status(error.status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(error.body())))
        .expect("static headers are valid")
}
