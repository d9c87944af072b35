//! A REST link: OIP v2 over HTTP/1.1 keep-alive (TLS for https), JSON or binary tensors.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Call, error_chain, read_ca_file};
use crate::error::{Result, UpstreamError};
use crate::wire::{self, InferResponse, Parameters};
use idn_contract::config::UpstreamConfig;

pub(super) struct RestLink {
    base: String,
    binary_data: bool,
    max_body_bytes: usize,
    /// Keep-alive connections to this upstream (TLS for https, with its own trusted CAs).
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl RestLink {
    pub(super) fn new(config: &UpstreamConfig, max_body_bytes: usize) -> Result<Self> {
        Ok(RestLink {
            base: config.url.trim_end_matches('/').to_owned(),
            binary_data: config.binary_data,
            max_body_bytes,
            client: client(config.ca_file.as_deref())?,
        })
    }

    pub(super) async fn infer(&self, call: Call<'_>) -> Result<InferResponse, UpstreamError> {
        let upstream = call.upstream;
        let request = self.request(&call)?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| UpstreamError::Unreachable {
                    upstream: upstream.to_owned(),
                    message: error_chain(None, &e),
                })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| UpstreamError::Invalid {
                upstream: upstream.to_owned(),
                message: format!("cannot read the body: {e}"),
            })?
            .to_bytes();
        answer(upstream, &parts, &body)
    }

    /// The OIP request for `call`, with the request context's headers and the token.
    fn request(&self, call: &Call<'_>) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let body = wire::encode_request(
            call.request_id,
            &Parameters::new(),
            call.inputs,
            &[call.output],
            self.binary_data,
        );
        let url = format!("{}/v2/models/{}/infer", self.base, call.service);
        let mut request = Request::post(url).header(CONTENT_TYPE, "application/json");
        if let Some(length) = body.header_length {
            request = request.header(wire::HEADER_LENGTH, length);
        }
        for (header, value) in &call.headers {
            request = request.header(*header, value);
        }
        request
            .body(Full::new(body.bytes))
            .map_err(|e| UpstreamError::Invalid {
                upstream: call.upstream.to_owned(),
                message: format!("cannot build the request: {e}"),
            })
    }
}

/// The decoded response of a call that succeeded; the upstream's status and error message
/// otherwise.
fn answer(
    upstream: &str,
    parts: &http::response::Parts,
    body: &[u8],
) -> Result<InferResponse, UpstreamError> {
    if !parts.status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        return Err(UpstreamError::Status {
            upstream: upstream.to_owned(),
            status: parts.status,
            message,
        });
    }
    let header_length = parts
        .headers
        .get(wire::HEADER_LENGTH)
        .and_then(|v| v.to_str().ok());
    wire::decode_response(body, header_length).map_err(|e| UpstreamError::Invalid {
        upstream: upstream.to_owned(),
        message: e.to_string(),
    })
}

/// A pooled client speaking http, and https trusting the CAs of `ca_file` (else the system's).
fn client(
    ca_file: Option<&std::path::Path>,
) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_file(path)?.certs {
                roots.add(cert).map_err(|e| crate::error::Error::CaFile {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            }
        }
        // An unreadable system certificate is skipped: the others still verify.
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}
